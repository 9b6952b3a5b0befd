"""The keeper: a Slurm batch job's script that runs one container on its node.

``portside slurm keeper`` reads the container's spec (JSON, on stdin: the batch script holds it
as a here-document) and, with the node's portside store:

1. makes sure the image is there: it already is, or it is pulled from the context's registry, or
   the client streams it in (``portside slurm node prepare`` over ``srun``) while the keeper waits;
2. maps the GPUs Slurm allocated (:mod:`.gpus`) onto ``--gpus device=…``, labels the container
   with its job and node, creates it with the id the client chose, and starts it;
3. holds the job while the container lives: when the container exits, the keeper copies its log
   to the client's folder (when the node can write there), removes it and exits with its status,
   which ends the job; when Slurm signals the job (``scancel``, the time limit: SIGTERM, then
   SIGKILL ``KillWait`` seconds later) it stops the container (its stop signal, then SIGKILL after
   its ``--stop-timeout``, 10 s by default) and removes it. SIGUSR1/SIGUSR2 (``sbatch --signal``)
   are passed on to the container.

Progress is written to a small status file in the node's store,
``<root>/slurm/jobs/<job>.json`` (``{"state": "image"|"starting"|"running"|"failed", …}``), which
``node prepare`` reads to tell the client when the container runs or why it could not start.
Messages go to stderr, which is the job's output file.

Runc's containers live in cgroups Slurm does not track, so a keeper killed outright (SIGKILL, a
node's OOM killer) leaves its container running: ``portside slurm epilog`` (:mod:`.epilog`) is the
site's net for that case.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from ..errors import EngineError, NotFound

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any

#: Labels every Slurm container carries on its node (the epilog finds containers by the first).
JOB_LABEL = "io.portside.slurm.job"
NODE_LABEL = "io.portside.slurm.node"
#: How long the keeper waits for an image the client streams in.
IMAGE_TIMEOUT = 900.0


def status_path(root: str | os.PathLike, job: str) -> Path:
    return Path(root) / "slurm" / "jobs" / f"{job}.json"


def write_status(root: str | os.PathLike, job: str, **fields: Any) -> None:
    """Replace the job's status file (atomically: readers never see half of it)."""
    path = status_path(root, job)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(dict(fields, time=time.time())))
    os.replace(tmp, path)


def watch_path(root: str | os.PathLike, job: str) -> Path:
    """Present while a client waits for the job's status (the keeper then lingers on failure
    until the client has read it)."""
    return Path(root) / "slurm" / "jobs" / f"{job}.watch"


def read_status(root: str | os.PathLike, job: str) -> dict[str, Any] | None:
    try:
        return json.loads(status_path(root, job).read_text())
    except (FileNotFoundError, ValueError):
        return None


def _say(msg: str) -> None:
    sys.stderr.write(f"portside keeper: {msg}\n")
    sys.stderr.flush()


class Keeper:
    """One run of the keeper (see the module's description)."""

    def __init__(self, spec: dict[str, Any], env: dict[str, str] | None = None) -> None:
        self.spec = spec
        self.env = dict(os.environ if env is None else env)
        self.job = self.env.get("SLURM_JOB_ID", "")
        self.node = self.env.get("SLURMD_NODENAME", "")
        self.signals: list[int] = []
        self._wake_r = self._wake_w = -1
        self.engine: Any = None

    # ------------------------------------------------------------------ signals
    def _install_signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._wake_w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1,
                    signal.SIGUSR2):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.signals.append(signum)

    @property
    def terminating(self) -> bool:
        return any(s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP) for s in self.signals)

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._wake_r, 64):
                pass

    # ------------------------------------------------------------------ status
    def status(self, state: str, **fields: Any) -> None:
        if self.engine is not None and self.job:
            with contextlib.suppress(OSError):
                write_status(self.engine.root, self.job, state=state, pid=os.getpid(),
                             node=self.node, container=self.spec["id"], **fields)

    # ------------------------------------------------------------------ steps
    def run(self) -> int:
        """Everything; returns the job's exit status (the container's, or 125 when it could not
        start: the reason is in the status file and the job's output)."""
        self._install_signals()
        from ..api import Engine

        try:
            self.engine = Engine(root=self.spec.get("root") or None)
            return self._run()
        finally:
            if self.engine is not None:
                with contextlib.suppress(OSError):
                    status_path(self.engine.root, self.job).unlink()
                with contextlib.suppress(OSError):
                    watch_path(self.engine.root, self.job).unlink()
                self.engine.close()

    def _run(self) -> int:
        try:
            self.status("image")
            image = self._ensure_image()
            if image is None or self.terminating:
                return 128 + signal.SIGTERM
            self.status("starting")
            rec = self._create()
            if self.terminating:
                self._remove(rec.id)
                return 128 + signal.SIGTERM
            self._start(rec)
        except EngineError as exc:
            return self._failed(str(exc), exc.exit_code)
        except Exception as exc:  # a bug of ours: still one line where the user looks
            return self._failed(f"internal error: {type(exc).__name__}: {exc}", 125)
        return self._hold(rec)

    def _failed(self, message: str, code: int) -> int:
        """Report a container that could not start. When a client is waiting for the news
        (``node prepare`` left its watch file), give it a moment to read it: the job, and the
        client's step with it, end when the keeper exits."""
        _say(message)
        self.status("failed", error=message, code=code)
        watch = watch_path(self.engine.root, self.job)
        deadline = time.monotonic() + 5
        while watch.exists() and time.monotonic() < deadline and not self.terminating:
            self._sleep(0.02)
        return code

    def _ensure_image(self) -> Any:
        """The image, once the node has it (tagged as the user named it); None when a signal
        ended the wait."""
        images = self.engine.images
        image_id = self.spec["image"]
        ref = (self.spec.get("config") or {}).get("Image") or image_id
        pull = self.spec.get("pull")
        deadline = time.monotonic() + float(self.spec.get("image_timeout") or IMAGE_TIMEOUT)
        announced = False
        while True:
            try:
                image = images.get(image_id)
                break
            except NotFound:
                pass
            if pull:
                _say(f"pulling {pull}")
                images.pull(pull)
                image = images.get(image_id)  # NotFound: the registry had something else
                break
            if not announced:
                _say(f"waiting for image {image_id[:19]} to arrive on {self.node}")
                announced = True
            if self.terminating:
                return None
            if time.monotonic() > deadline:
                raise NotFound(f"image {ref} never arrived on node {self.node} "
                               f"(waited {IMAGE_TIMEOUT:g} s)")
            self._sleep(0.05)
        if ref != image_id and not ref.startswith("sha256:"):
            try:
                current = images.get(ref).id
            except (NotFound, EngineError):
                current = None
            if current != image.id:
                images.tag(image.id, ref)
        return image

    def _sleep(self, seconds: float) -> None:
        import select

        select.select([self._wake_r], [], [], seconds)
        self._drain_wake()

    def _host_config(self) -> dict[str, Any]:
        hc = dict(self.spec.get("host_config") or {})
        count = int(self.spec.get("gpus") or 0)
        hc.pop("DeviceRequests", None)
        hc.pop("Gpus", None)
        if count:
            from .gpus import allocated_indices, device_ids, gpus_value, node_gpu_files

            indices = allocated_indices(self.env)
            if indices is None:
                from ..errors import GPUError

                raise GPUError(f"Slurm gave job {self.job} no GPUs (SLURM_JOB_GPUS is unset)")
            files = node_gpu_files(self.node, self.env) if self.node else []
            cdi = self.engine.config.cdi_spec_dirs
            ids = device_ids(indices[:count] if len(indices) >= count else indices, files,
                             cdi_dirs=cdi)
            hc["Gpus"] = gpus_value(ids)
            hc["DeviceRequests"] = [{"Driver": "nvidia", "Count": 0, "DeviceIDs": ids,
                                     "Capabilities": [["gpu"]], "Options": {},
                                     "Request": hc["Gpus"]}]
            _say(f"GPUs {','.join(str(i) for i in indices)} of {self.node} -> --gpus "
                 f"{hc['Gpus']}")
        return hc

    def _create(self):
        config = json.loads(json.dumps(self.spec.get("config") or {}))
        labels = dict(config.get("Labels") or {})
        labels[JOB_LABEL] = self.job
        labels[NODE_LABEL] = self.node
        config["Labels"] = labels
        host_config = self._host_config()
        lc = self.engine.containers.lifecycle
        cid = self.spec["id"]
        # A container of this id left on the node by an earlier job of the same record (the
        # client restarts an exited container with a new job) goes first.
        stale = lc.store.get_by_id(cid)
        if stale is not None:
            _say(f"removing the container {cid[:12]} an earlier job left here")
            lc.remove(stale.id, force=True, volumes=True)
        self.launch = lc.launch_monitor(cid)
        try:
            return lc.create(config, host_config, name=self.spec.get("name"), container_id=cid)
        except BaseException:
            lc.cancel_launch(self.launch)
            raise

    def _start(self, rec) -> None:
        lc = self.engine.containers.lifecycle
        try:
            rec = lc.start(rec, watched=True, launch=self.launch)
        except BaseException:
            with contextlib.suppress(EngineError):
                lc.remove(rec.id, force=True, volumes=True)
            raise
        try:
            attrs = self.engine.containers.get(rec.id).attrs
        except EngineError:
            attrs = {}
        self.status("running", started=(attrs.get("State") or {}).get("StartedAt"),
                    gpus=attrs.get("GPUs"), attrs=attrs)
        _say(f"container {rec.name} ({rec.id[:12]}) runs on {self.node}, job {self.job}")

    def _hold(self, rec) -> int:
        """Wait for the container's end or for Slurm's signal; returns the exit status."""
        import select
        import threading

        lc = self.engine.containers.lifecycle
        done_r, done_w = os.pipe2(os.O_CLOEXEC)
        result: dict[str, Any] = {}

        def waiter() -> None:
            try:
                result["code"] = lc.wait(rec.id)
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                result["error"] = exc
            finally:
                os.write(done_w, b"x")

        threading.Thread(target=waiter, daemon=True).start()
        try:
            while True:
                ready, _, _ = select.select([done_r, self._wake_r], [], [])
                if self._wake_r in ready:
                    self._drain_wake()
                pending, self.signals = self.signals, []
                for sig in pending:
                    if sig in (signal.SIGUSR1, signal.SIGUSR2):
                        with contextlib.suppress(EngineError):
                            lc.kill(rec.id, sig)
                if any(s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP) for s in pending):
                    name = signal.Signals(pending[-1]).name
                    _say(f"{name}: stopping and removing {rec.name}")
                    self._stop(rec.id)
                    self._copy_log(rec)
                    self._remove(rec.id)
                    return 128 + signal.SIGTERM
                if done_r in ready:
                    break
        finally:
            lc.unwatch(rec.id)
        code = int(result.get("code", 125))
        if "error" in result:
            _say(f"waiting for {rec.name}: {result['error']}")
        _say(f"container {rec.name} exited with {code}")
        self._copy_log(rec)
        self._remove(rec.id)
        return code

    def _copy_log(self, rec) -> None:
        """Leave the container's log where the client keeps its records, for ``logs`` after the
        job has ended (only where the nodes can write there: a shared home, or this host)."""
        target = self.spec.get("log_copy")
        if not target:
            return
        lc = self.engine.containers.lifecycle
        try:
            source = lc.paths(lc.store.get_by_id(rec.id) or rec).log
            tmp = Path(target + f".tmp{os.getpid()}")
            import shutil

            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        except OSError:
            pass

    def _stop(self, cid: str) -> None:
        with contextlib.suppress(EngineError):
            self.engine.containers.lifecycle.stop(cid)

    def _remove(self, cid: str) -> None:
        lc = self.engine.containers.lifecycle
        try:
            lc.remove(cid, force=True, volumes=True)
        except NotFound:
            pass
        except EngineError as exc:
            _say(f"removing {cid[:12]}: {exc}")


def main(stdin=None, env: dict[str, str] | None = None) -> int:
    """``portside slurm keeper``: the spec is JSON on stdin."""
    stream = stdin if stdin is not None else sys.stdin
    text = stream.read()
    try:
        spec = json.loads(text)
    except ValueError:
        _say("the batch script did not hand over a container spec")
        return 125
    return Keeper(spec, env).run()
