"""The engine object of a Slurm context: the model API answered by jobs on a cluster.

:class:`SlurmEngine` has what the fronts use of an engine (``containers``, ``images``…). Its
containers are records on the client (:mod:`.records`) tied to Slurm jobs:

==================  ==========================================================================
verb                what happens
==================  ==========================================================================
``create``          a record only (``created``); nothing is asked of Slurm yet
``start``/``run``   ``sbatch`` of a keeper job named after the container, ``--gres=gpu:N``,
                    ``-c``/``--mem`` from ``--cpus``/``-m``; once Slurm has placed it, the image
                    is made present on the node and the keeper starts the container. A job that
                    must wait leaves the container ``created`` with Slurm's reason (``Pending
                    (Resources)``); it starts when Slurm runs the job
``exec``, ``logs``, ``srun --overlap --jobid J -w NODE -u portside …`` on the container's node
``top``, ``stats``,
``inspect``, ``cp``,
``stop``, ``kill``,
``pause``…
``rm -f``           kills the container and cancels its job
``ps``/``list``     the records, reconciled with one ``squeue``: a job that ended or vanished
                    shows its container as exited (``rm`` works on it)
==================  ==========================================================================

After the job has ended the node's copy of the container is gone (the keeper removes it); the
record keeps the last state and, where the node could write it, the container's log.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import time

from ..errors import (Conflict, EngineError, IncorrectState, InvalidArgument, NotFound,
                      SchedulerError, Unsupported)
from ..models import composed
from ..models.resource import Collection, Model
from .cluster import (HOPELESS_REASONS, REASON_TEXT, Job, Slurm, exit_code_of, gpu_count,
                      require_running)
from .options import SlurmOptions
from .records import RecordStore

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    import builtins
    from typing import Any, BinaryIO, Callable, Iterator, Literal, Mapping, Sequence, overload

    from ..models.interface import EngineAPI, ExecStream
    from .system import SlurmSystem

#: How long ``start`` waits for Slurm's first decision about a new job (the controller looks at
#: a batch job in its next scheduling pass, which comes within about a second).
DECISION_TIMEOUT = 15.0
#: How long ``rm -f``/``stop`` wait for a job to end once its container is gone.
END_TIMEOUT = 30.0


def portside_argv() -> list[str]:
    """How to run this portside on a node: the ``portside`` program beside this interpreter (a
    virtual environment on a shared file system, as clusters install software), else this
    interpreter with ``-m portside.engine``."""
    exe = os.environ.get("PORTSIDE_SLURM_PROGRAM")
    if exe:
        return shlex.split(exe)
    here = os.path.join(os.path.dirname(sys.executable), "portside")
    if os.access(here, os.X_OK):
        return [here]
    return [sys.executable, "-m", "portside.engine"]


def _rfc3339(ts: float | None) -> str:
    from ..image.oci import rfc3339

    return rfc3339(ts) if ts else "0001-01-01T00:00:00Z"


class _Unavailable:
    """A collection a Slurm context does not have (each node has its own): every use is one
    line saying so."""

    def __init__(self, what: str, hint: str = "name them in run (-v NAME:/path, --net …) and "
                                              "they are made on the node") -> None:
        self._what = what
        self._hint = hint

    def __getattr__(self, name: str) -> Any:
        raise Unsupported(f"{self._what} are per node in a Slurm context: {self._hint}")


class SlurmEngine:
    """The model API over a Slurm cluster.

    Args:
        options: the context's settings.
        state_dir: where the client keeps its records (per context).
        local: the engine holding the images (built and pulled where the notebook runs);
            default: the local engine.
        env: the environment for Slurm's commands (default: this process's).
        name: the context's name (for messages).
    """

    def __init__(self, options: SlurmOptions, state_dir: str | os.PathLike, *,
                 local: Any = None, env: dict[str, str] | None = None,
                 name: str = "slurm") -> None:
        self.options = options
        self.name = name
        self.slurm = Slurm(options, env)
        self.records = RecordStore(state_dir)
        self._local = local
        self._own_local = local is None
        self._containers: SlurmContainerCollection | None = None
        self._system: SlurmSystem | None = None

    @property
    def local(self) -> Any:
        """The local engine (where images are built and pulled), made on first use.

        Never one that joins a rootless user's namespace in this process, even in the
        ``portside`` program: Slurm's commands, run from here, send the caller's uid, which
        slurmctld checks against munge's credential (the user's uid on the host), so in the
        namespace, where the user is 0, every ``sbatch`` and ``srun`` would be refused (and
        ``squeue -u`` would ask for root's jobs). Rootless, the images come through an engine
        process that joined it instead (:func:`portside.engine.api.local_engine`)."""
        if self._local is None:
            from ..api import local_engine

            self._local = local_engine(program=False)
        return self._local

    @property
    def images(self) -> Any:
        """Images live where the notebook runs; they are shipped to a node when a container
        starts there."""
        return self.local.images

    @property
    def builds(self) -> Any:
        return self.local.builds

    @property
    def containers(self) -> SlurmContainerCollection:
        if self._containers is None:
            self._containers = SlurmContainerCollection(self)
        return self._containers

    volumes = property(lambda self: _Unavailable("volumes"))
    networks = property(lambda self: _Unavailable("networks"))

    @property
    def system(self) -> SlurmSystem:
        """``version``, ``info`` and ``events`` of the context (:mod:`.system`); what concerns
        one store is refused in one line."""
        if self._system is None:
            from .system import SlurmSystem

            self._system = SlurmSystem(self)
        return self._system

    def close(self, **kwargs: Any) -> None:
        """Release the local engine when this object made it (one handed in stays open)."""
        if self._local is not None and self._own_local:
            self._local.close(**kwargs)

    # ------------------------------------------------------------------ the node's portside
    def node_env(self) -> dict[str, str]:
        """The environment for jobs and steps: the node's portside must use the node's store
        and the default (local) context, whatever the client's are."""
        env = dict(self.slurm.env)
        env.pop("PORTSIDE_ROOT", None)
        env["PORTSIDE_CONTEXT"] = "default"
        if self.options.root:
            env["PORTSIDE_ROOT"] = self.options.root
        return env

    def node_argv(self, *args: str) -> list[str]:
        return [*portside_argv(), *args]


class SlurmContainer(Model):
    """A container of a Slurm context; ``attrs`` is Docker's inspect document plus ``Slurm``
    (``JobId``, ``Node``, ``Gres``, ``State``, ``Reason``, ``Elapsed``)."""

    @property
    def name(self) -> str:
        return self.attrs["Name"].lstrip("/")

    @property
    def status(self) -> str:
        return self.attrs["State"]["Status"]

    @property
    def labels(self) -> dict[str, str]:
        return self.attrs["Config"].get("Labels") or {}

    @property
    def image(self) -> Any:
        return self.collection.engine.images.get(self.attrs["Image"])

    @property
    def job(self) -> str:
        return (self.attrs.get("Slurm") or {}).get("JobId") or ""

    @property
    def node(self) -> str:
        return (self.attrs.get("Slurm") or {}).get("Node") or ""

    def reload(self) -> None:
        self.attrs = self.collection.get(self.id).attrs

    # ---- the job's lifetime --------------------------------------------------------------------
    def start(self) -> SlurmContainer:
        self.attrs = self.collection._start(self.id)
        return self

    def stop(self, timeout: int | None = None, signal: str | int | None = None
             ) -> SlurmContainer:
        self.attrs = self.collection._stop(self.id, timeout, signal)
        return self

    def restart(self, timeout: int | None = None) -> SlurmContainer:
        rec, job = self.collection._live(self.id)
        if job is not None and job.running:
            self.collection._call(rec, job, "restart", {"timeout": timeout})
            self.reload()
            return self
        return self.start()

    def kill(self, signal: str | int = "KILL") -> SlurmContainer:
        rec, job = self.collection._live(self.id)
        self.collection._call(rec, require_running(job, rec["Name"]), "kill",
                              {"signal": signal})
        self.reload()
        return self

    def pause(self) -> SlurmContainer:
        rec, job = self.collection._live(self.id)
        self.collection._call(rec, require_running(job, rec["Name"]), "pause", {})
        self.reload()
        return self

    def unpause(self) -> SlurmContainer:
        rec, job = self.collection._live(self.id)
        self.collection._call(rec, require_running(job, rec["Name"]), "unpause", {})
        self.reload()
        return self

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until the container's job has ended; ``{"StatusCode": n, "Error": None}``."""
        coll = self.collection
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            rec, job = coll._live(self.id)
            if rec["State"]["Status"] not in ("running", "created") or (
                    rec["State"]["Status"] == "created" and not rec.get("Job")):
                self.attrs = coll.inspect(rec, job)
                return {"StatusCode": int(rec["State"].get("ExitCode") or 0), "Error": None}
            if deadline is not None and time.monotonic() > deadline:
                from ..errors import RuntimeFailure

                raise RuntimeFailure(f"timed out waiting for container {rec['Name']}")
            time.sleep(0.1)

    def remove(self, force: bool = False, v: bool = False) -> None:
        self.collection._remove(self.id, force=force)

    def rename(self, name: str) -> None:
        self.attrs = self.collection._rename(self.id, name)

    # ---- on the node --------------------------------------------------------------------------
    if TYPE_CHECKING:
        @overload
        def logs(self, *, stdout: bool = True, stderr: bool = True, stream: Literal[True],
                 timestamps: bool = False, tail: int | str | None = None,
                 since: float | str | None = None, until: float | str | None = None,
                 follow: bool = False, stop: Callable[[], bool] | None = None
                 ) -> Iterator[tuple[str, bytes]]: ...

        @overload
        def logs(self, *, stdout: bool = True, stderr: bool = True, stream: bool = False,
                 timestamps: bool = False, tail: int | str | None = None,
                 since: float | str | None = None, until: float | str | None = None,
                 follow: bool = False, stop: Callable[[], bool] | None = None
                 ) -> bytes | Iterator[tuple[str, bytes]]: ...

    def logs(self, *, stdout: bool = True, stderr: bool = True, stream: bool = False,
             timestamps: bool = False, tail: int | str | None = None,
             since: float | str | None = None, until: float | str | None = None,
             follow: bool = False, stop: Callable[[], bool] | None = None
             ) -> bytes | Iterator[tuple[str, bytes]]:
        """The container's output: from its node while the job runs, else from the copy the
        keeper left in the client's folder (when the node could write there)."""
        entries = self.collection._logs(self.id, timestamps=timestamps, tail=tail, since=since,
                                        until=until, follow=follow, stop=stop)
        wanted = {s for s, ok in (("stdout", stdout), ("stderr", stderr)) if ok}
        selected = ((s, d) for s, d in entries if s in wanted)
        if stream or follow:
            return selected
        return b"".join(d for _s, d in selected)

    def top(self, ps_args: str = "") -> dict[str, Any]:
        rec, job = self.collection._live(self.id)
        return self.collection._call(rec, require_running(job, rec["Name"]), "top", {})

    def stats(self) -> dict[str, Any]:
        rec, job = self.collection._live(self.id)
        return self.collection._call(rec, require_running(job, rec["Name"]), "stats", {})

    def diff(self) -> list[dict[str, Any]]:
        rec, job = self.collection._live(self.id)
        return self.collection._call(rec, require_running(job, rec["Name"]), "diff", {})

    def exec_run(self, cmd: str | Sequence[str], *, stdout: bool = True, stderr: bool = True,
                 stdin: bool = False, tty: bool = False, detach: bool = False,
                 socket: bool = False,
                 environment: Sequence[str] | Mapping[str, str] | None = None,
                 workdir: str | None = None, user: str = ""
                 ) -> tuple[int | None, bytes | ExecStream]:
        """Run a command in the container on its node; ``(exit_code, output)``, or with
        ``socket`` ``(None, ExecStream)``: the process's pipes over ``srun -u`` (what the
        notebook's agent speaks through)."""
        from ..models.containers import _env_list

        if tty:
            raise InvalidArgument("exec -t: a Slurm context gives no terminal; leave -t out")
        argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
        env = _env_list(environment)
        if socket:
            from ..models.streams import ProcessStream

            return None, ProcessStream(self.exec_popen(
                argv, user=user or None, workdir=workdir or None, env=env or None,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        proc = self.exec_popen(argv, user=user or None, workdir=workdir or None, env=env or None,
                               detach=detach, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT if stderr else subprocess.DEVNULL)
        pipe = proc.stdout
        assert pipe is not None  # (stdout=PIPE)
        with pipe:
            out = pipe.read()
        code = proc.wait()
        if detach:
            return None, b""
        return code, out if stdout else b""

    def exec_popen(self, argv: list[str], *, user: str | None = None, workdir: str | None = None,
                   env: list[str] | None = None, tty: bool = False, detach: bool = False,
                   stdin: Any = None, stdout: Any = None, stderr: Any = None) -> subprocess.Popen:
        """Start ``argv`` in the container with pipes, over ``srun -u`` (no pty: the agent's
        frames pass through unchanged)."""
        rec, job = self.collection._live(self.id)
        job = require_running(job, rec["Name"])
        args = ["exec"]
        if stdin is not None and stdin is not subprocess.DEVNULL:
            args.append("-i")
        if detach:
            args.append("-d")
        for item in env or []:
            args += ["-e", item]
        if workdir:
            args += ["-w", workdir]
        if user:
            args += ["-u", user]
        coll = self.collection
        return coll.engine.slurm.popen(job.id, job.node,
                                       coll.engine.node_argv(*coll._root_args(), *args,
                                                             rec["Id"], *argv),
                                       silent=True, stdin=stdin, stdout=stdout, stderr=stderr,
                                       env=coll.engine.node_env())

    def get_archive(self, path: str, out: BinaryIO, *,
                    follow_links: bool = False) -> dict[str, Any]:
        """Write a tar of ``path`` (in the container, on its node) to ``out``; ``follow_links``
        follows a final link inside the container (the node's ``cp -L``)."""
        rec, job = self.collection._live(self.id)
        job = require_running(job, rec["Name"])
        coll = self.collection
        follow = ["-L"] if follow_links else []
        proc = coll.engine.slurm.popen(job.id, job.node, coll.engine.node_argv(
            *coll._root_args(), "cp", *follow, f"{rec['Id']}:{path}", "-"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=coll.engine.node_env())
        size = 0
        with proc.stdout:
            for chunk in iter(lambda: proc.stdout.read(1 << 20), b""):
                out.write(chunk)
                size += len(chunk)
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        if proc.wait() != 0:
            raise _node_error(err, f"cp {rec['Name']}:{path}", proc.returncode)
        return {"name": os.path.basename(path.rstrip("/")) or "/", "size": size}

    def put_archive(self, path: str, data: BinaryIO | bytes) -> bool:
        """Extract a tar (bytes or stream) into the directory ``path`` of the container."""
        rec, job = self.collection._live(self.id)
        job = require_running(job, rec["Name"])
        coll = self.collection
        proc = coll.engine.slurm.popen(job.id, job.node, coll.engine.node_argv(
            *coll._root_args(), "cp", "-", f"{rec['Id']}:{path}"), stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=coll.engine.node_env())
        try:
            if isinstance(data, (bytes, bytearray)):
                proc.stdin.write(data)
            else:
                for chunk in iter(lambda: data.read(1 << 20), b""):
                    proc.stdin.write(chunk)
        except BrokenPipeError:
            pass
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        if proc.wait() != 0:
            raise _node_error(err, f"cp into {rec['Name']}:{path}", proc.returncode)
        return True

    def attach(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None,
               stderr: BinaryIO | None = None, *, detach_keys: str | None = None,
               tty_size: tuple[int, int] | None = None) -> int | None:
        """Its output from now on until it exits (its status); no input, no terminal."""
        return composed.attach(self, stdin, stdout, stderr)

    def exec_attached(self, cmd: Sequence[str], stdin: BinaryIO | None, stdout: BinaryIO,
                      stderr: BinaryIO, *, tty: bool = False,
                      environment: Sequence[str] | None = None, workdir: str = "",
                      user: str = "", detach: bool = False) -> int:
        """``portside exec`` with the caller's streams, over ``srun -u``."""
        return composed.exec_attached(self, cmd, stdin, stdout, stderr, tty=tty,
                                      environment=environment, workdir=workdir, user=user,
                                      detach=detach)

    def ports(self) -> dict[str, list[dict[str, str]]]:
        return composed.ports(self.attrs)

    def update(self, *, mem_limit: int | str | None = None,
               memswap_limit: int | str | None = None, cpu_shares: int | None = None,
               nano_cpus: int | None = None, pids_limit: int | None = None,
               restart_policy: dict[str, Any] | None = None) -> dict[str, Any]:
        """``update`` of a running container: the node's engine applies the limits (inside the
        job's own, which Slurm keeps). A container not running on a node has no engine to ask;
        its limits are the job's request (``--cpus``/``-m`` at ``run``)."""
        rec, job = self.collection._live(self.id)
        if job is None or not job.running:
            raise InvalidArgument(f"update: container {rec['Name']} is not running on a node; "
                                  "in a Slurm context only a running container's limits change")
        change = {k: v for k, v in (("mem_limit", mem_limit), ("memswap_limit", memswap_limit),
                                    ("cpu_shares", cpu_shares), ("nano_cpus", nano_cpus),
                                    ("pids_limit", pids_limit),
                                    ("restart_policy", restart_policy)) if v is not None}
        result = self.collection._call(rec, job, "update", change)
        self.reload()
        return dict(result)

    def copy_out(self, src: str, dest: str, *, archive: bool = False,
                 follow_links: bool = False) -> None:
        raise InvalidArgument(f"cp {self.name}:{src} {dest}: in a Slurm context copy through "
                              f"a tar stream: cp {self.name}:{src} - | tar -x")

    def copy_in(self, src: str, dest: str, *, follow_links: bool = False) -> None:
        raise InvalidArgument(f"cp {src} {self.name}:{dest}: in a Slurm context copy through "
                              f"a tar stream: tar -c {src} | cp - {self.name}:{dest}")

    def commit(self, *args: Any, **kwargs: Any) -> Any:
        raise InvalidArgument(f"commit: container {self.name} lives on node {self.node or '?'}; "
                              "build images where the notebook runs")

    def export(self, out: BinaryIO) -> None:
        raise InvalidArgument(f"export: container {self.name} lives on node {self.node or '?'}; "
                              "use cp CONTAINER:/ - instead")


def _node_error(stderr: str, what: str, code: int | None = None) -> EngineError:
    """The error a node's portside printed (``Error: …``), as an engine error."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for line in reversed(lines):
        if line.startswith("Error: "):
            msg = line[len("Error: "):]
            if msg.startswith("no such container") or msg.startswith("No such"):
                return NotFound(msg)
            exc = EngineError(msg)
            if code:
                exc.exit_code = code
            return exc
    return SchedulerError(f"{what}: {lines[-1] if lines else f'srun exited with {code}'}")


class SlurmContainerCollection(Collection):
    """``engine.containers`` of a Slurm context."""

    model = SlurmContainer

    def __init__(self, engine: SlurmEngine) -> None:
        super().__init__(engine)
        self.store = engine.records
        self.slurm = engine.slurm

    # ------------------------------------------------------------------ reading
    def inspect(self, rec: dict[str, Any], job: Job | None = None,
                node_attrs: dict[str, Any] | None = None) -> dict[str, Any]:
        """Docker's inspect document for a record (the node's own document when given, with
        the record's Slurm section added)."""
        slurm = dict(rec.get("Slurm") or {})
        slurm.update({"JobId": rec.get("Job") or "", "Node": rec.get("Node") or "",
                      "Gres": f"gpu:{rec['Gpus']}" if rec.get("Gpus") else ""})
        if job is not None:
            slurm.update({"State": job.state, "Reason": job.reason, "Elapsed": job.elapsed,
                          "StartTime": _rfc3339(job.started) if job.started else ""})
        if node_attrs is None and rec.get("Attrs"):
            # the node's document as the keeper last reported it, with today's state
            node_attrs = dict(rec["Attrs"], State=dict(rec["State"]), Name="/" + rec["Name"])
        if node_attrs:
            attrs = dict(node_attrs)
            attrs["Slurm"] = slurm
            return attrs
        cfg = rec["Config"]
        args = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
        return {
            "Id": rec["Id"],
            "Created": _rfc3339(rec.get("Created")),
            "Path": args[0] if args else "",
            "Args": args[1:],
            "State": dict(rec["State"]),
            "Image": rec.get("Image") or "",
            "Name": "/" + rec["Name"],
            "RestartCount": 0,
            "Driver": "overlay",
            "Platform": "linux",
            "HostConfig": rec["HostConfig"],
            "Config": cfg,
            "Mounts": [],
            "NetworkSettings": {"Networks": {}, "Ports": {}, "IPAddress": ""},
            "GPUs": rec.get("GPUs") or [],
            "Slurm": slurm,
        }

    def _reconcile(self, rec: dict[str, Any], job: Job | None) -> dict[str, Any]:
        """Bring a record's state in line with its job (saved when it changed); returns it."""
        state = rec["State"]
        before = json.dumps([state, rec.get("Node"), rec.get("Slurm")], sort_keys=True)
        jid = rec.get("Job")
        if not jid:
            return rec
        if job is not None:
            rec.setdefault("Slurm", {}).update(
                State=job.state, Reason=job.reason, Elapsed=job.elapsed,
                StartTime=_rfc3339(job.started) if job.started else "")
            if job.node:
                rec["Node"] = job.node
        if job is not None and job.pending:
            state.update(Status="created", Running=False)
            rec.pop("Attrs", None)
        elif job is not None and job.running:
            # the job runs; the container does once somebody has seen it on the node (the
            # start hand-shake, or _confirm): until then the image may still be on its way
            if rec.get("Attrs"):
                state.update(Status="running", Running=True)
            elif state.get("Status") == "exited" and state.get("Error"):
                pass  # its start failed and the node said why: the job is ending
            else:
                state.update(Status="created", Running=False)
        elif state.get("Status") in ("created", "running") or state.get("Running"):
            # the job has ended (or vanished): so has the container
            code = None
            if job is not None:
                try:
                    detail = self.slurm.detail(jid)
                except SchedulerError:
                    detail = None
                code = exit_code_of(detail or {})
                if job.state == "CANCELLED" and code in (None, 0):
                    code = 128 + 15
                if job.state == "TIMEOUT" and code in (None, 0):
                    code = 128 + 15
            else:
                rec.setdefault("Slurm", {})["State"] = "GONE"
            state.update(Status="exited", Running=False, Paused=False, Pid=0,
                         ExitCode=255 if code is None else code,
                         FinishedAt=_rfc3339(time.time()))
            if code is None:
                state["Error"] = f"Slurm job {jid} vanished before its end was seen"
            elif code and not rec.get("Attrs"):
                # it never started: the keeper said why in the job's output (when readable)
                note = self._keeper_note(jid)
                if note:
                    state["Error"] = note
            elif job is not None and job.state not in ("COMPLETED", "FAILED"):
                state["Error"] = f"Slurm job {jid} ended: {job.state}" + (
                    f" ({job.reason})" if job.reason else "")
        after = json.dumps([state, rec.get("Node"), rec.get("Slurm")], sort_keys=True)
        if after != before:
            if state["Status"] == "exited" and rec["HostConfig"].get("AutoRemove"):
                self.store.delete(rec)
                rec["_removed"] = True
            else:
                self.store.save(rec)
        return rec

    def _keeper_note(self, job: str) -> str:
        """The keeper's last message in the job's output file ('' when there is none)."""
        try:
            lines = self.store.job_output(job).read_text(errors="replace").splitlines()
        except OSError:
            return ""
        notes = [ln[len("portside keeper: "):] for ln in lines
                 if ln.startswith("portside keeper: ")]
        return notes[-1] if notes else ""

    def _live(self, ref: str) -> tuple[dict[str, Any], Job | None]:
        """The record of ``ref`` reconciled with its job, and the job."""
        rec = self.store.resolve(ref)
        job = self.slurm.job(rec["Job"]) if rec.get("Job") else None
        return self._reconcile(rec, job), job

    def get(self, name: str, *, size: bool = False) -> SlurmContainer:
        """The container of that name, id or id prefix; while it runs, the node's inspect
        document with ``Slurm`` added. (``size``: not known here; no ``SizeRw``.)"""
        rec, job = self._live(name)
        if rec.get("_removed"):
            raise NotFound(f"No such container: {name}")
        node_attrs = None
        if job is not None and job.running:
            node_attrs = self._confirm(rec, job)
        return SlurmContainer(self.inspect(rec, job, node_attrs), self)

    def _confirm(self, rec: dict[str, Any], job: Job) -> dict[str, Any] | None:
        """The node's inspect document of a container whose job runs (None while the keeper
        has not created it, or once it is gone); the first sighting marks the record
        running."""
        try:
            attrs = self._call(rec, job, "inspect", {})
        except (NotFound, IncorrectState, SchedulerError):
            # the keeper has not created it yet, or removed it already and the job is
            # ending: the record says what is known
            return None
        if not rec.get("Attrs"):
            rec["Attrs"] = attrs
            rec["Node"] = job.node
            rec["State"].update(Status="running", Running=True, **{
                k: v for k, v in (attrs.get("State") or {}).items() if k in ("Pid", "StartedAt")})
            self.store.save(rec)
        rec["State"].update(Status="running", Running=True)
        return attrs

    def list(self, *, all: bool = False, filters: Mapping[str, list[str]] | None = None,
             limit: int | None = None, before: str | None = None,
             since: str | None = None, sparse: bool = False,
             size: bool = False) -> list[SlurmContainer]:
        """The context's containers, newest first (running and pending ones; ``all`` adds the
        exited), from the records and one ``squeue``; with ``sparse`` each ``attrs`` is the
        ``/containers/json`` summary (what ``ps`` shows)."""
        records = self.store.list()
        ids = [r["Job"] for r in records if r.get("Job")]
        jobs = self.slurm.jobs(ids) if ids else {}
        out = []
        for rec in records:
            job = jobs.get(rec.get("Job") or "")
            rec = self._reconcile(rec, job)
            if rec.get("_removed"):
                continue
            if job is not None and job.running and not rec.get("Attrs"):
                self._confirm(rec, job)  # started since the last look? (one srun, once)
            if not all and not (filters or {}).get("status") and not _active(rec):
                continue
            if not _matches(rec, filters or {}):
                continue
            attrs = self.inspect(rec, job)
            out.append(SlurmContainer(composed.summary(attrs) if sparse else attrs, self))
        if limit is not None and limit >= 0:
            out = out[:limit]
        return out

    # ------------------------------------------------------------------ creating
    def create_from(self, config: Mapping[str, Any], host_config: Mapping[str, Any], *,
                    name: str | None = None, locked: bool | None = None,
                    container_id: str | None = None) -> SlurmContainer:
        """A new container record from Docker-shaped ``Config``/``HostConfig`` (what the CLI
        builds); the image must exist where the notebook runs, and resolves through
        ``portside.lock`` when it is enforced (``locked``, or ``locked = true`` in it), as with
        the local engine."""
        from ..runtime.containers import new_container_id, new_state
        from ..runtime.names import random_name, validate_name

        image_ref = config.get("Image") or ""
        if not image_ref:
            raise InvalidArgument("an image name is required")
        image = self.engine.images.get(self.engine.images.resolve_locked(image_ref, locked))
        gpus = gpu_count(host_config.get("Gpus"))
        if host_config.get("CDIDevices"):
            raise InvalidArgument("--device with a CDI name: in a Slurm context ask for GPUs "
                                  "with --gpus N; Slurm chooses which")
        if (host_config.get("RestartPolicy") or {}).get("Name", "no") not in ("no", ""):
            raise InvalidArgument("--restart: a Slurm job ends with its container; resubmit "
                                  "with start instead")
        taken = {r["Name"] for r in self.store.list()}
        name = validate_name(name) if name else random_name(lambda n: n in taken)
        rec = {"Id": container_id or new_container_id(), "Name": name, "Created": time.time(),
               "Config": dict(config), "HostConfig": dict(host_config), "Image": image.id,
               "Job": "", "Node": "", "Gpus": gpus, "State": new_state(), "Slurm": {},
               "Context": self.engine.options.to_text()}
        self.store.claim(rec)
        return SlurmContainer(self.inspect(rec), self)

    def create(self, image: str, command: str | Sequence[str] | None = None, *,
               locked: bool | None = None, **kwargs: Any) -> SlurmContainer:
        """docker-py's ``containers.create`` (the same keyword arguments as the local one)."""
        from ..models.containers import docker_py_kwargs

        config, host_config, name = docker_py_kwargs(image, command, kwargs)
        return self.create_from(config, host_config, name=name, locked=locked)

    def run(self, image: str, command: str | Sequence[str] | None = None, *,
            detach: bool = False, remove: bool = False, stdout: bool = True,
            stderr: bool = False, locked: bool | None = None,
            **kwargs: Any) -> SlurmContainer | bytes:
        """docker-py's ``containers.run``: with ``detach`` the container once its job is running
        or pending; otherwise its output once it exited.

        Raises:
            ContainerExit: it exited non-zero. SchedulerError: Slurm refused the job.
        """
        from ..errors import ContainerExit
        from ..models.containers import docker_py_kwargs

        config, host_config, name = docker_py_kwargs(
            image, command, dict(kwargs, auto_remove=remove and detach))
        container = self.create_from(config, host_config, name=name, locked=locked)
        try:
            container.start()
        except BaseException:
            # as ``docker run -d`` and this context's CLI (composed.run_from): a container
            # whose start failed stays (created, or exited with the node's reason), unless
            # it was to be removed anyway
            if remove and detach:
                self._forget(container.id)
            raise
        if detach:
            return container
        code = container.wait()["StatusCode"]
        out = container.logs(stdout=stdout, stderr=stderr)
        assert isinstance(out, bytes)  # (not streamed)
        if remove:
            container.remove(force=True)
        if code != 0:
            raise ContainerExit(code, f"container {container.name} exited with {code}: "
                                      f"{out[-200:].decode(errors='replace').strip()}")
        return out

    if TYPE_CHECKING:
        @overload
        def run_from(self, config: Mapping[str, Any], host_config: Mapping[str, Any], *,
                     name: str | None = None, detach: Literal[True], locked: bool | None = None,
                     stdin: BinaryIO | None = None, stdout: BinaryIO | None = None,
                     stderr: BinaryIO | None = None, detach_keys: str | None = None,
                     tty_size: tuple[int, int] | None = None,
                     on_created: Callable[[Any], None] | None = None) -> SlurmContainer: ...

        @overload
        def run_from(self, config: Mapping[str, Any], host_config: Mapping[str, Any], *,
                     name: str | None = None, detach: Literal[False] = False,
                     locked: bool | None = None, stdin: BinaryIO | None = None,
                     stdout: BinaryIO | None = None, stderr: BinaryIO | None = None,
                     detach_keys: str | None = None, tty_size: tuple[int, int] | None = None,
                     on_created: Callable[[Any], None] | None = None) -> int | None: ...

    def run_from(self, config: Mapping[str, Any], host_config: Mapping[str, Any], *,
                 name: str | None = None, detach: bool = False, locked: bool | None = None,
                 stdin: BinaryIO | None = None, stdout: BinaryIO | None = None,
                 stderr: BinaryIO | None = None, detach_keys: str | None = None,
                 tty_size: tuple[int, int] | None = None,
                 on_created: Callable[[Any], None] | None = None
                 ) -> SlurmContainer | int | None:
        """``portside run``: create the record and submit its job; in the foreground, wait
        while Slurm queues it, then follow its output to ``stdout``/``stderr`` until it exits,
        the last of it from the log the keeper left (a step following it ends with the job);
        no input, no terminal (see :mod:`portside.engine.models.composed`)."""
        if detach or not host_config.get("AutoRemove"):
            return composed.run_from(self, config, host_config, name=name, detach=detach,
                                     locked=locked, stdin=stdin, stdout=stdout, stderr=stderr,
                                     on_created=on_created, ready=self._until_running,
                                     catch_up=True)
        # --rm in the foreground: the record (and the log the keeper leaves with it) stays
        # until the output is read, then goes, as run(remove=True) does
        made: list[SlurmContainer] = []

        def created(container: SlurmContainer) -> None:
            made.append(container)
            if on_created is not None:
                on_created(container)

        try:
            return composed.run_from(self, config, dict(host_config, AutoRemove=False),
                                     name=name, locked=locked, stdin=stdin, stdout=stdout,
                                     stderr=stderr, on_created=created,
                                     ready=self._until_running, catch_up=True)
        finally:
            for container in made:
                with contextlib.suppress(NotFound):
                    container.remove(force=True)

    def start_attached(self, name: str, stdin: BinaryIO | None, stdout: BinaryIO,
                       stderr: BinaryIO, *, detach_keys: str | None = None,
                       tty_size: tuple[int, int] | None = None) -> int | None:
        """``portside start -a``: as the foreground :meth:`run_from`."""
        return composed.start_attached(self, name, stdin, stdout, stderr,
                                       ready=self._until_running, catch_up=True)

    def prune(self, filters: Mapping[str, builtins.list[str]] | None = None
              ) -> dict[str, Any]:
        """``container prune``: the records of containers whose job has ended."""
        return composed.prune(self, filters)

    def _until_running(self, container: Any) -> None:
        """Block while the container's job waits in Slurm's queue, or runs but its keeper has
        not created the container yet (its output would not be on the node to follow)."""
        while True:
            rec, job = self._live(container.id)
            if job is None or not job.active:
                return
            if job.running and job.node and (rec.get("Attrs")
                                             or self._confirm(rec, job) is not None):
                return
            time.sleep(0.2)

    def _forget(self, container_id: str) -> None:
        rec = self.store.get(container_id)
        if rec is not None:
            if rec.get("Job"):
                self.slurm.cancel(rec["Job"])
            self.store.delete(rec)

    # ------------------------------------------------------------------ the job
    def _root_args(self) -> builtins.list[str]:
        return ["--root", self.engine.options.root] if self.engine.options.root else []

    def _script(self, rec: dict[str, Any], spec: dict[str, Any]) -> str:
        delimiter = "PORTSIDE_SPEC_" + os.urandom(8).hex()
        argv = " ".join(shlex.quote(a) for a in self.engine.node_argv("slurm", "keeper"))
        return (f"#!/bin/sh\n# portside: container {rec['Name']} ({rec['Id'][:12]}), "
                f"image {rec['Config'].get('Image')}\n"
                f"exec {argv} <<'{delimiter}'\n{json.dumps(spec)}\n{delimiter}\n")

    def _start(self, ref: str) -> dict[str, Any]:
        rec, job = self._live(ref)
        if job is not None and job.active:
            if job.pending:
                return self.inspect(rec, job)  # it starts when Slurm runs it
            raise IncorrectState(f"container {rec['Name']} is already running (job {job.id} on "
                                 f"{job.node})")
        return self._submit(rec)

    def _submit(self, rec: dict[str, Any]) -> dict[str, Any]:
        """Submit the keeper job of ``rec``, then start the container as soon as Slurm places
        it (see the module's table)."""
        from ..runtime.containers import new_state
        from .epilog import comment_for
        from .ship import registry_ref

        opts = self.engine.options
        hc = rec["HostConfig"]
        image = self.engine.images.get(rec["Image"])
        pull = registry_ref(self.engine.images, image, rec["Config"].get("Image") or "",
                            opts.registry) if opts.registry else None
        spec = {"id": rec["Id"], "name": rec["Name"], "config": rec["Config"],
                "host_config": hc, "image": image.id, "pull": pull,
                "root": opts.root, "gpus": rec.get("Gpus") or 0,
                "log_copy": str(self.store.log_copy(rec["Id"]))}
        nano = int(hc.get("NanoCpus") or 0)
        cpus = -(-nano // 1_000_000_000) if nano else None
        mem = int(hc.get("Memory") or 0)
        mem_mb = -(-mem // (1024 * 1024)) if mem else None
        self.store._ensure()
        job = self.slurm.submit(self._script(rec, spec), name=rec["Name"],
                                gpus=rec.get("Gpus") or 0, cpus=cpus, mem_mb=mem_mb,
                                output=str(self.store.job_output("%j")),
                                comment=comment_for(opts.root), workdir="/",
                                env=self.engine.node_env())
        rec.update(Job=job, Node="", State=new_state(), Slurm={"State": "PENDING"})
        rec.pop("Attrs", None)
        self.store.save(rec)
        try:
            placed = self._decision(rec)
        except BaseException:
            # interrupted while Slurm decides: the job must not start the container later,
            # behind the caller's back (it stays created, as a refused start leaves it)
            self.slurm.cancel(job)
            rec.update(Job="", Slurm={"State": "CANCELLED"})
            self.store.save(rec)
            raise
        if placed is not None and placed.pending and placed.reason in HOPELESS_REASONS:
            self.slurm.cancel(job)
            rec.update(Job="", Slurm={"State": "CANCELLED", "Reason": placed.reason})
            self.store.save(rec)
            why = REASON_TEXT.get(placed.reason)
            raise SchedulerError(f"Slurm cannot start container {rec['Name']}: job {job} "
                                 f"pending ({placed.reason})" + (f": {why}" if why else ""))
        if placed is not None and placed.running:
            self._prepare(rec, placed)
        elif placed is not None and placed.pending and not pull:
            self._spawn_shipper(rec)
        rec, job2 = self._live(rec["Id"])
        return self.inspect(rec, job2)

    def _decision(self, rec: dict[str, Any], timeout: float = DECISION_TIMEOUT) -> Job | None:
        """Wait for Slurm's first decision about the job: running on a node, pending for a
        reason it gives, or ended. Returns the job (None: it vanished)."""
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            job = self.slurm.job(rec["Job"])
            if job is None or job.running and job.node or job.considered or not job.active:
                return job
            if time.monotonic() > deadline:
                return job
            time.sleep(delay)
            delay = min(delay * 1.5, 0.05)

    def _prepare(self, rec: dict[str, Any], job: Job) -> None:
        """The start hand-shake with the node (:func:`.node.prepare`): ship the image when the
        node lacks it, then wait for the keeper's word. Raises the keeper's error when the
        container could not start."""
        from .ship import prepare_on_node

        status = prepare_on_node(self.engine, rec, job)
        if status.get("state") == "running":
            state = rec["State"]
            state.update(Status="running", Running=True, StartedAt=status.get("started") or
                         _rfc3339(time.time()))
            rec["Node"] = job.node
            if status.get("gpus"):
                rec["GPUs"] = status["gpus"]
            if status.get("attrs"):
                rec["Attrs"] = status["attrs"]
                state.update({k: v for k, v in status["attrs"]["State"].items()
                              if k in ("Pid", "StartedAt")})
            self.store.save(rec)
            return
        error = status.get("error") or "the container did not start"
        rec["State"].update(Status="exited", Running=False, Error=error,
                            ExitCode=int(status.get("code") or 125))
        self.store.save(rec)
        exc = EngineError(f"container {rec['Name']} (job {job.id} on {job.node}): {error}")
        exc.exit_code = int(status.get("code") or 125)
        raise exc

    def _spawn_shipper(self, rec: dict[str, Any]) -> None:
        """A pending job whose node is not known yet: a small background process ships the
        image once Slurm places the job (the keeper waits for it), then exits."""
        log = open(self.store.dir / "jobs" / f"{rec['Job']}.ship.log", "ab")
        try:
            # setsid -f: the helper is nobody's child here (no zombie in a long-lived kernel)
            subprocess.run(["setsid", "-f", *portside_argv(), "--root",
                            str(self.engine.local.root), "slurm", "ship", "--state",
                            str(self.store.dir), rec["Id"]], stdin=subprocess.DEVNULL,
                           stdout=log, stderr=log, env=self.slurm.env, close_fds=True,
                           check=False, timeout=30)
        finally:
            log.close()

    def ship_when_placed(self, container_id: str, poll: float = 0.5) -> int:
        """``portside slurm ship``: wait for the container's job to run, then do the start
        hand-shake; returns 0 (or 1 when the job ended first)."""
        while True:
            rec = self.store.get(container_id)
            if rec is None or not rec.get("Job"):
                return 1
            job = self.slurm.job(rec["Job"])
            if job is None or not job.active:
                return 1
            if job.running and job.node:
                try:
                    self._prepare(rec, job)
                except EngineError as exc:
                    sys.stderr.write(f"portside slurm ship: {exc}\n")
                    return 1
                return 0
            time.sleep(poll)

    def _call(self, rec: dict[str, Any], job: Job, op: str, kwargs: dict[str, Any]) -> Any:
        """One model method on the node's engine (``portside slurm node call``)."""
        from .node import raise_answer

        request = json.dumps({"op": op, "id": rec["Id"], "kwargs": kwargs}).encode()
        proc = self._step(job, ["slurm", "node", "call"], request, f"{op} {rec['Name']}")
        lines = [ln for ln in proc.stdout.decode(errors="replace").splitlines() if ln.strip()]
        try:
            answer = json.loads(lines[-1])
        except (IndexError, ValueError):
            raise _node_error(proc.stderr.decode(errors="replace"), f"{op} {rec['Name']}",
                              proc.returncode) from None
        return raise_answer(answer)

    def _step(self, job: Job, args: builtins.list[str], input: bytes | None, what: str,
              timeout: float = 600) -> subprocess.CompletedProcess:
        argv = self.slurm.srun_argv(job.id, job.node,
                                    self.engine.node_argv(*self._root_args(), *args))
        try:
            return subprocess.run(argv, input=input, capture_output=True, timeout=timeout,
                                  env=self.engine.node_env(),
                                  stdin=None if input is not None else subprocess.DEVNULL)
        except FileNotFoundError:
            raise SchedulerError("srun not found: Slurm's client commands are needed for a "
                                 "Slurm context") from None
        except subprocess.TimeoutExpired:
            raise SchedulerError(f"{what}: the node did not answer in {timeout:g} s") from None

    def _stop(self, ref: str, timeout: int | None,
              signal: str | int | None = None) -> dict[str, Any]:
        rec, job = self._live(ref)
        if job is None or not job.active:
            return self.inspect(rec, job)
        if job.pending:
            # not started yet: leave it created, without its job
            self.slurm.cancel(job.id)
            rec.update(Job="", Slurm={"State": "CANCELLED"})
            self.store.save(rec)
            return self.inspect(rec)
        if job.running and job.node:
            try:
                self._call(rec, job, "stop", {"timeout": timeout} if signal is None
                           else {"timeout": timeout, "signal": signal})
            except NotFound:
                pass  # the keeper removed it meanwhile
        self._wait_job_end(rec, cancel_after=END_TIMEOUT)
        rec, job = self._live(ref)
        return self.inspect(rec, job)

    def _wait_job_end(self, rec: dict[str, Any], cancel_after: float) -> None:
        """Wait for the job to end (its keeper exits once the container is gone); cancel it
        after ``cancel_after`` seconds, then wait for that."""
        deadline = time.monotonic() + cancel_after
        cancelled = False
        while True:
            job = self.slurm.job(rec["Job"])
            if job is None or not job.active:
                return
            if time.monotonic() > deadline:
                if cancelled:
                    return
                self.slurm.cancel(job.id)
                cancelled = True
                deadline = time.monotonic() + cancel_after
            time.sleep(0.05)

    def _remove(self, ref: str, *, force: bool) -> None:
        rec, job = self._live(ref)
        if job is not None and (job.running or job.pending):
            if not force:
                raise Conflict(f"You cannot remove a {rec['State']['Status']} container "
                               f"{rec['Id']}. Stop the container before attempting removal or "
                               "force remove")
            if job.running and job.node:
                try:
                    self._call(rec, job, "kill", {"signal": "KILL"})
                except EngineError:
                    pass  # not created yet, or gone already: cancelling the job settles it
            self.slurm.cancel(job.id)
            self._wait_job_end(rec, cancel_after=END_TIMEOUT)
        self.store.delete(rec)

    def _rename(self, ref: str, name: str) -> dict[str, Any]:
        from ..runtime.names import validate_name

        name = validate_name(name)
        rec, job = self._live(ref)
        with self.store.lock():
            for other in self.store.list():
                if other["Name"] == name and other["Id"] != rec["Id"]:
                    raise Conflict(f'the container name "/{name}" is already in use')
            if job is not None and job.running and job.node:
                self._call(rec, job, "rename", {"name": name})
            rec["Name"] = name
            self.store.save(rec, locked=True)
        return self.inspect(rec, job)

    def _logs(self, ref: str, *, timestamps: bool, tail: int | str | None,
              since: float | str | None, until: float | str | None, follow: bool,
              stop: Any) -> Iterator[tuple[str, bytes]]:
        rec, job = self._live(ref)
        if job is not None and job.running and job.node and \
                rec["State"].get("Status") == "running":
            return self._node_logs(rec, job, timestamps=timestamps, tail=tail, since=since,
                                   until=until, follow=follow, stop=stop)
        from ..models.containers import parse_time_arg
        from ..runtime.logs import read_logs

        path = self.store.log_copy(rec["Id"])
        tail_n = None if tail in (None, "all") else int(tail)
        return ((s, d) for s, d, _t in read_logs(path, tail=tail_n, since=parse_time_arg(since),
                                                 until=parse_time_arg(until),
                                                 timestamps=timestamps))

    def _node_logs(self, rec: dict[str, Any], job: Job, *, timestamps: bool,
                   tail: int | str | None, since: float | str | None,
                   until: float | str | None, follow: bool,
                   stop: Any) -> Iterator[tuple[str, bytes]]:
        import selectors

        args = ["logs"]
        if follow:
            args.append("-f")
        if timestamps:
            args.append("-t")
        if tail not in (None, "all"):
            args += ["--tail", str(int(tail))]
        if since is not None:
            args += ["--since", str(since)]
        if until is not None:
            args += ["--until", str(until)]
        # following, the step ends with the job: srun's own words about that are not the
        # container's stderr (-Q -Q), nor are slurmstepd's (see _step_notices)
        proc = self.engine.slurm.popen(job.id, job.node, self.engine.node_argv(
            *self._root_args(), *args, rec["Id"]), silent=follow, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.engine.node_env())

        def entries() -> Iterator[tuple[str, bytes]]:
            sel = selectors.DefaultSelector()
            sel.register(proc.stdout, selectors.EVENT_READ, "stdout")
            sel.register(proc.stderr, selectors.EVENT_READ, "stderr")
            open_ = 2
            try:
                while open_:
                    if stop is not None and stop():
                        break
                    for key, _ in sel.select(timeout=0.25):
                        data = os.read(key.fd, 1 << 16)
                        if not data:
                            sel.unregister(key.fileobj)
                            open_ -= 1
                            continue
                        if follow and key.data == "stderr":
                            data = _step_notices(data)
                            if not data:
                                continue
                        yield key.data, data
            finally:
                sel.close()
                if proc.poll() is None:
                    proc.terminate()
                for f in (proc.stdout, proc.stderr):
                    f.close()
                proc.wait()

        return entries()


def _step_notices(data: bytes) -> bytes:
    """``data`` (a following step's stderr) less the lines slurmstepd writes into a step as it
    ends it: a job whose keeper exits non-zero (the container's status) has FAILED, and Slurm
    tells its remaining steps so (``slurmstepd-node1: error: *** STEP 7.1 ON node1 FAILED
    (non-zero exit code or other failure mode) ***``), as it does on a cancel or a time limit.
    Each is one write of one whole line, so it is whole in one read; a line of the
    container's own that merely looks alike would have to start with ``slurmstepd``."""
    import re

    if b"slurmstepd" not in data:
        return data
    return re.sub(rb"(?m)^slurmstepd(?:-[^:\s]+)?: error: \*\*\* (?:STEP|JOB) \S+ ON \S+ "
                  rb"[^\n]*\*\*\*\n?", b"", data)


def _active(rec: dict[str, Any]) -> bool:
    """Listed by a plain ``ps``: running, or waiting in Slurm's queue to run."""
    status = rec["State"]["Status"]
    return status == "running" or (status == "created" and bool(rec.get("Job")))


def _matches(rec: dict[str, Any], filters: Mapping[str, list[str]]) -> bool:
    import re

    for key, values in filters.items():
        if key == "status":
            if rec["State"]["Status"] not in values:
                return False
        elif key == "name":
            if not any(re.search(v, rec["Name"]) for v in values):
                return False
        elif key == "id":
            if not any(rec["Id"].startswith(v) for v in values):
                return False
        elif key == "label":
            labels = rec["Config"].get("Labels") or {}
            for item in values:
                k, eq, v = item.partition("=")
                if k not in labels or (eq and labels[k] != v):
                    return False
        elif key == "ancestor":
            if not any(v in (rec["Config"].get("Image"), rec.get("Image")) for v in values):
                return False
        elif key == "exited":
            if rec["State"]["Status"] != "exited" or \
                    str(rec["State"].get("ExitCode")) not in values:
                return False
        elif key in ("network", "health", "is-task", "publish", "expose", "volume", "before",
                     "since"):
            continue
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
    return True


if TYPE_CHECKING:
    def _answers_the_model_api(engine: SlurmEngine) -> EngineAPI:
        """For the type checker: a Slurm context answers the written-down model API (what it
        cannot do, it refuses in one line: see the module's description)."""
        return engine
