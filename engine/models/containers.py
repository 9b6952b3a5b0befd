"""Containers: the ``Container`` model (Docker's ``container inspect`` JSON) and its collection.

The collection follows docker-py: ``engine.containers.run("busybox", "echo hi")``,
``.create(...)``, ``.get("web")``, ``.list(all=True, filters={"status": ["exited"]})``,
``.prune()``. A :class:`Container` holds ``attrs`` (the inspect document) and has the verbs
(``start``, ``stop``, ``logs``, ``exec_run``, ``commit``…); each verb goes through
:class:`~portside.engine.runtime.lifecycle.Lifecycle`, which refreshes the state first, so ``attrs``
after ``reload()`` is always the truth.

Importing this module also tells the rest of the engine about containers: images they use cannot be
removed (:func:`~portside.engine.models.images.images_in_use` asks their store), and ``info``,
``system df`` and ``system check`` count and repair
them. (Garbage collection keeps their images' layers through the image store's static table of
roots, :data:`~portside.engine.image.schema.GC_ROOTS`.)
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path

from ..errors import ContainerExit, EngineError, InvalidArgument, NotFound
from ..runtime.containers import ContainerRecord, ContainerStore, network_mode
from .resource import Collection, Model
from .system import register_check, register_df, register_info

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    import builtins
    from typing import Any, BinaryIO, Callable, Iterator, Literal, Mapping, Sequence, overload


#: State keys that are portside's own bookkeeping, not Docker's.
_PRIVATE_STATE = ("StartedAtTs", "FinishedAtTs", "ManuallyStopped", "RestartCount")


def _rfc3339(ts: float) -> str:
    from ..image.oci import rfc3339

    return rfc3339(ts)


class Container(Model):
    """One container. ``attrs`` is Docker's ``container inspect`` document, made when first read
    (verbs need only the id), or the ``/containers/json`` summary for ``list(sparse=True)``."""

    def __init__(self, attrs: dict[str, Any] | None, collection: Any,
                 record: ContainerRecord | None = None) -> None:
        self._attrs = attrs
        self.collection = collection
        self._rec = record

    @property
    def attrs(self) -> dict[str, Any]:
        if self._attrs is None:
            assert self._rec is not None
            self._attrs = self.collection.inspect(self._rec)
        return self._attrs

    @attrs.setter
    def attrs(self, value: dict[str, Any]) -> None:
        self._attrs = value

    @property
    def id(self) -> str:
        return self._rec.id if self._rec is not None else self.attrs["Id"]

    @property
    def name(self) -> str:
        if self._rec is not None:
            return self._rec.name
        names = self.attrs.get("Names")
        return (names[0] if names else self.attrs["Name"]).lstrip("/")

    @property
    def status(self) -> str:
        if self._rec is not None:
            return self._rec.status
        state = self.attrs["State"]
        return state if isinstance(state, str) else state["Status"]

    @property
    def labels(self) -> dict[str, str]:
        if self._rec is not None:
            return self._rec.config.get("Labels") or {}
        return (self.attrs.get("Config") or self.attrs).get("Labels") or {}

    @property
    def image(self):
        return self.collection.engine.images.get(self._record().image_id)

    @property
    def lc(self):
        return self.collection.lifecycle

    def _record(self) -> ContainerRecord:
        return self._rec if self._rec is not None else self.collection.store.resolve(self.id)

    def reload(self) -> None:
        fresh = self.collection.get(self.id)
        self._rec, self._attrs = fresh._rec, None

    def _done(self, rec: ContainerRecord) -> "Container":
        self._rec, self._attrs = rec, None
        return self

    # ---- verbs ----------------------------------------------------------------------------
    def start(self) -> "Container":
        return self._done(self.lc.start(self.id))

    def stop(self, timeout: int | None = None, signal: str | int | None = None) -> "Container":
        """Docker's ``stop``: ``signal`` (default: its StopSignal, else SIGTERM), then SIGKILL
        after ``timeout`` seconds (default: its StopTimeout, else 10)."""
        if signal is not None:
            from ..runtime.signals import parse_signal

            parse_signal(signal)  # refused before anything is stopped
        return self._done(self.lc.stop(self.id, timeout, signal_=signal))

    def restart(self, timeout: int | None = None) -> "Container":
        return self._done(self.lc.restart(self.id, timeout))

    def kill(self, signal: str | int = "KILL") -> "Container":
        return self._done(self.lc.kill(self.id, signal))

    def pause(self) -> "Container":
        return self._done(self.lc.pause(self.id))

    def unpause(self) -> "Container":
        return self._done(self.lc.unpause(self.id))

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until it stops; returns ``{"StatusCode": n, "Error": None}`` (docker-py's)."""
        code = self.lc.wait(self.id, timeout)
        return {"StatusCode": code, "Error": None}

    def remove(self, force: bool = False, v: bool = False) -> None:
        self.lc.remove(self.id, force=force, volumes=v)

    def rename(self, name: str) -> None:
        self._done(self.lc.rename(self.id, name))

    def ports(self) -> dict[str, list[dict[str, str]]]:
        """The bindings in force while it runs (random host ports resolved), else those it
        asked for: ``{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}``."""
        return published_ports(self.collection._refreshed(self._record()))

    def update(self, *, mem_limit: int | str | None = None,
               memswap_limit: int | str | None = None, cpu_shares: int | None = None,
               nano_cpus: int | None = None, pids_limit: int | None = None,
               restart_policy: dict[str, Any] | None = None) -> dict[str, Any]:
        """Docker's ``update`` (docker-py's keywords, plus the API's ``NanoCpus`` and
        ``PidsLimit``): new limits for a created or running container, applied to its cgroup at
        once when it runs, and a new restart policy. A value left None is kept.

        Args:
            mem_limit: bytes, or a size (``"512m"``). memswap_limit: memory plus swap, -1 for
                unlimited swap. cpu_shares: relative CPU weight. nano_cpus: 10⁹ per CPU.
            pids_limit: most tasks (0 or -1: no limit).
            restart_policy: ``{"Name": "on-failure", "MaximumRetryCount": 3}``.
        Returns:
            ``{"Warnings": [...]}``, as Docker's API answers.
        Raises:
            InvalidArgument, Conflict: values or combinations Docker refuses (its messages).
            RuntimeFailure: the kernel refused the limits (nothing changed).
        """
        from ..runtime.update import update
        from ..units import parse_size

        change: dict[str, Any] = {}
        if mem_limit is not None:
            change["Memory"] = mem_limit if isinstance(mem_limit, int) else parse_size(mem_limit)
        if memswap_limit is not None:
            change["MemorySwap"] = _swap(memswap_limit)
        if cpu_shares is not None:
            change["CpuShares"] = int(cpu_shares)
        if nano_cpus is not None:
            change["NanoCpus"] = int(nano_cpus)
        if pids_limit is not None:
            change["PidsLimit"] = int(pids_limit)
        if restart_policy is not None:
            change["RestartPolicy"] = dict(restart_policy)
        rec, warnings = update(self.lc, self.id, change)
        self._done(rec)
        return {"Warnings": warnings}

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
        """The container's output. ``stream``/``follow`` give an iterator of (stream, bytes);
        ``stop`` (a callable) ends a follow early, e.g. when the reader has gone away.
        ``since``/``until``: unix times, or Docker's text forms (an RFC 3339 time, a duration
        ago such as ``10m``).

        Raises:
            InvalidArgument: a ``tail`` that is not a number (or ``all``).
        """
        from ..runtime.logs import read_logs

        rec = self._record()
        paths = self.lc.paths(rec)
        if tail in (None, "all") or str(tail) == "-1":
            tail_n = None
        elif str(tail).lstrip("-").isdigit():
            tail_n = int(tail)
        else:
            raise InvalidArgument(f"invalid tail value: {tail}")
        def running() -> bool:
            if stop is not None and stop():
                return False
            fresh = self.collection.store.get_by_id(rec.id)
            if fresh is None:
                return False
            return fresh.status in ("running", "paused", "restarting") and \
                not paths.exit_file.exists() and self.lc.monitor_alive(fresh)

        entries = read_logs(paths.log, tail=tail_n, since=parse_time_arg(since),
                            until=parse_time_arg(until), follow=follow,
                            is_running=running, timestamps=timestamps)
        wanted = {s for s, ok in (("stdout", stdout), ("stderr", stderr)) if ok}
        selected = ((s, d) for s, d, _t in entries if s in wanted)
        if stream or follow:
            return selected
        return b"".join(d for _s, d in selected)

    def attach(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None,
               stderr: BinaryIO | None = None, *, detach_keys: str | None = None,
               tty_size: tuple[int, int] | None = None) -> int | None:
        """Stay attached until it exits (its status) or the caller detaches (None); see
        :meth:`portside.engine.models.interface.Container.attach`."""
        from ..errors import IncorrectState
        from ..runtime.monitor import attach

        keys = parse_detach_keys(detach_keys)
        lc = self.lc
        rec = lc.refresh(self._record())
        if rec.status != "running":
            raise IncorrectState("You cannot attach to a stopped container, start it first")
        paths = lc.paths(rec)
        if rec.config.get("Tty"):
            code = _attach_tty(lc, rec, stdin, stdout, keys, tty_size)
        else:
            feed = stdin if rec.config.get("OpenStdin") else None
            code = attach(paths.attach_socket, feed, stdout, stderr, detach_keys=keys)
        if code is None or code < 0:
            if paths.exit_file.exists():
                return lc.wait(rec.id)
            return None
        return code

    def top(self, ps_args: str = "") -> dict[str, Any]:
        """Docker's ``top``: ``{"Titles": [...], "Processes": [[...], ...]}``."""
        rec = self.lc.refresh(self._record())
        if rec.status not in ("running", "paused"):
            from ..errors import IncorrectState

            raise IncorrectState(f"container {rec.name} is not running")
        pids = self.lc.runtime_of(rec).ps(rec.id)
        return process_table(pids)

    def stats(self) -> dict[str, Any]:
        """One sample of the container's cgroup counters (memory, cpu, pids)."""
        from ..runtime.cgroups import Cgroup, cgroup_path_for

        rec = self.lc.refresh(self._record())
        cg = Cgroup(cgroup_path_for(rec.id))
        out: dict[str, Any] = {"id": rec.id, "name": "/" + rec.name, "read": _rfc3339(time.time()),
                               "memory_stats": {}, "cpu_stats": {}, "pids_stats": {}}
        if rec.status in ("running", "paused") and cg.exists():
            for key, fn in (("usage", cg.memory_usage), ("limit", cg.memory_limit)):
                try:
                    out["memory_stats"][key] = fn()
                except Exception:  # noqa: BLE001 - a controller may be missing on this host
                    pass
            try:
                out["cpu_stats"]["cpu_usage"] = {"total_usage": cg.cpu_usage_ns()}
            except Exception:  # noqa: BLE001
                pass
            try:
                out["pids_stats"]["current"] = cg.pids_current()
            except Exception:  # noqa: BLE001
                pass
        return out

    def exec_run(self, cmd: str | Sequence[str], *, stdout: bool = True, stderr: bool = True,
                 stdin: bool = False, tty: bool = False, detach: bool = False,
                 socket: bool = False,
                 environment: Sequence[str] | Mapping[str, str] | None = None,
                 workdir: str | None = None, user: str | None = "",
                 privileged: bool = False) -> tuple[int | None, Any]:
        """Run a command in the container (docker-py's shape): ``(exit_code, output)``; with
        ``detach`` ``(None, b"")``; with ``socket`` ``(None, ExecStream)``, its standard streams
        as pipes (``stdin`` open when asked for) -- see :mod:`portside.engine.models.streams`."""
        import shlex
        import subprocess

        argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
        env = _env_list(environment)
        if socket:
            from .streams import ProcessStream

            proc = self.lc.exec_run(self.id, argv, tty=tty, env=env, workdir=workdir or "",
                                    user=user or "",
                                    stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            return None, ProcessStream(proc)
        proc = self.lc.exec_run(self.id, argv, detach=detach, tty=tty, env=env,
                                workdir=workdir or "", user=user or "",
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE if not detach else subprocess.DEVNULL,
                                stderr=(subprocess.STDOUT if stderr else subprocess.DEVNULL)
                                if not detach else subprocess.DEVNULL)
        if detach:
            proc.wait()
            return None, b""
        out = b""
        if proc.stdout:
            with proc.stdout:
                out = proc.stdout.read()
        code = proc.wait()
        return code, out if stdout else b""

    def exec_attached(self, cmd: Sequence[str], stdin: BinaryIO | None, stdout: BinaryIO,
                      stderr: BinaryIO, *, tty: bool = False,
                      environment: Sequence[str] | None = None,
                      workdir: str = "", user: str = "", detach: bool = False) -> int:
        """Run ``cmd`` with the caller's streams as its standard streams (``portside exec``):
        descriptors are handed to the runtime as they are, other streams are copied. Returns its
        status (126/127 when it cannot be run); with ``detach`` 0 once it started, else 126."""
        import subprocess

        if not cmd:
            raise InvalidArgument("exec requires at least 2 arguments")
        pumps: list[Any] = []
        if detach:
            io_args = (subprocess.DEVNULL, subprocess.DEVNULL, subprocess.DEVNULL)
        else:
            io_args = (_stdio(stdin, "r", pumps) if stdin is not None else subprocess.DEVNULL,
                       _stdio(stdout, "w", pumps), _stdio(stderr, "w", pumps))
        proc = self.lc.exec_run(self.id, list(cmd), detach=detach, tty=tty,
                                env=_env_list(environment), workdir=workdir, user=user,
                                stdin=io_args[0], stdout=io_args[1], stderr=io_args[2])
        _start_pumps(proc, pumps)
        try:
            code = proc.wait()
        finally:
            _join_pumps(pumps)
        if detach:
            return 0 if code == 0 else 126
        return code

    def commit(self, repository: str | None = None, tag: str | None = None, *,
               message: str = "", author: str = "", changes: Sequence[str] | str = (),
               pause: bool = True):
        from ..runtime.commit import commit

        ref = f"{repository}:{tag}" if repository and tag else repository
        image_id = commit(self.lc, self._record(), repository=ref, author=author,
                          message=message,
                          changes=[changes] if isinstance(changes, str) else list(changes),
                          pause=pause)
        return self.collection.engine.images.get(image_id)

    def diff(self) -> list[dict[str, Any]]:
        """Docker's ``diff``: ``[{"Path": p, "Kind": 0|1|2}]`` (0 changed, 1 added, 2 deleted)."""
        from ..runtime.commit import diff

        kinds = {"C": 0, "A": 1, "D": 2}
        return [{"Path": p, "Kind": kinds[k]} for k, p in diff(self.lc, self._record())]

    def export(self, out: BinaryIO) -> None:
        from ..runtime.commit import export

        export(self.lc, self._record(), out)

    def get_archive(self, path: str, out: BinaryIO, *,
                    follow_links: bool = False) -> dict[str, Any]:
        """Write a tar of ``path`` to ``out``; returns Docker's stat (name, size, mode).

        ``follow_links``: a final symbolic link is followed inside the container (``cp -L``):
        the tar holds its target's content under the link's name, and the stat is the target's.
        """
        from ..runtime.cp import write_archive

        if not path.startswith("/"):
            path = "/" + path
        with self.collection.container_fs(self.id) as fs:
            st = write_archive(fs, path, out, follow=follow_links)
        return {"name": os.path.basename(path.rstrip("/")) or "/", "size": st.st_size,
                "mode": st.st_mode, "mtime": _rfc3339(st.st_mtime)}

    def put_archive(self, path: str, data: BinaryIO | bytes) -> bool:
        """Extract a tar (bytes or stream) into the container directory ``path``."""
        import io

        from ..runtime.cp import extract_archive

        if not path.startswith("/"):
            path = "/" + path
        stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
        with self.collection.container_fs(self.id) as fs:
            extract_archive(fs, path, stream)
        return True

    def copy_out(self, src: str, dest: str, *, archive: bool = False,
                 follow_links: bool = False) -> None:
        """``cp [-L] CONTAINER:SRC DEST`` (Docker's placement rules); ``follow_links``: a final
        symbolic link in SRC is followed inside the container."""
        from ..runtime.cp import copy_out

        if not src.startswith("/"):
            src = "/" + src
        with self.collection.container_fs(self.id) as fs:
            copy_out(fs, src, dest, archive=archive, follow=follow_links)

    def copy_in(self, src: str, dest: str, *, follow_links: bool = False) -> None:
        """``cp [-L] SRC CONTAINER:DEST`` (Docker's placement rules); ``follow_links``: a link SRC
        on the caller's machine is followed and its target copied under the link's name."""
        from ..runtime.cp import copy_in

        if not dest.startswith("/"):
            dest = "/" + dest
        with self.collection.container_fs(self.id) as fs:
            copy_in(fs, src, dest, follow=follow_links)


def parse_detach_keys(text: str | None) -> bytes:
    """Docker's ``--detach-keys`` (``ctrl-p,ctrl-q``, ``a``) → the byte sequence.

    Raises:
        InvalidArgument: a key Docker does not know.
    """
    if text is None:
        text = "ctrl-p,ctrl-q"
    out = bytearray()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("ctrl-") and len(part) == 6:
            ch = part[5]
            if ch == "@":
                out.append(0)
            elif ch in "[\\]^_":
                out.append(0x1b + "[\\]^_".index(ch))
            else:
                out.append(ord(ch.lower()) - ord("a") + 1)
        elif len(part) == 1:
            out.append(ord(part))
        else:
            raise InvalidArgument(f"invalid detach keys: {text}")
    return bytes(out)


def published_ports(rec: ContainerRecord) -> dict[str, list[dict]]:
    """Port key -> host bindings: the ones in force while the container runs (random host ports
    resolved), else the ones it asked for."""
    live = (rec.extra.get("NetworkSettings") or {}).get("Ports")
    if live is not None and rec.status in ("running", "paused"):
        return live
    return rec.host_config.get("PortBindings") or {}


def _stdio(stream: Any, mode: str, pumps: list) -> Any:
    """What to hand the runtime for a caller's stream: its descriptor when it has one, else a
    pipe whose other end a thread copies (noted in ``pumps``)."""
    import subprocess

    try:
        fd = stream.fileno()
        os.fstat(fd)
        if hasattr(stream, "flush"):
            stream.flush()
        return fd
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        pumps.append((mode, stream))
        return subprocess.PIPE


def _start_pumps(proc: Any, pumps: list) -> None:
    import threading

    threads = []
    outs = [s for s in (proc.stdout, proc.stderr) if s is not None]
    for mode, stream in pumps:
        if mode == "r":
            src, dst = stream, proc.stdin

            def feed(src: Any = src, dst: Any = dst) -> None:
                try:
                    for chunk in iter(lambda: src.read(65536), b""):
                        dst.write(chunk)
                        dst.flush()
                except (OSError, ValueError):
                    pass
                finally:
                    dst.close()

            threads.append(threading.Thread(target=feed, name="feed", daemon=True))
        else:
            src = outs.pop(0)

            def copy(src: Any = src, dst: Any = stream) -> None:
                try:
                    for chunk in iter(lambda: src.read1(65536), b""):
                        dst.write(chunk)
                        dst.flush()
                except (OSError, ValueError):
                    pass
                finally:
                    src.close()

            threads.append(threading.Thread(target=copy, name="copy", daemon=True))
    for thread in threads:
        thread.start()
    pumps[:] = threads


def _join_pumps(threads: list) -> None:
    # the output copies end with the process; the input feed may wait on the caller's stream
    for thread in threads:
        if thread.name == "copy":
            thread.join(timeout=5)


def _attach_tty(lc: Any, rec: ContainerRecord, stdin: Any, out: Any, keys: bytes,
                tty_size: tuple[int, int] | None) -> int | None:
    """Attach to a container with a terminal: one output stream. Returns the exit status, -1
    when it ended before we could attach (its output then comes from the log), None after
    detaching."""
    from ..runtime.logs import follow_output
    from ..runtime.monitor import attach

    paths = lc.paths(rec)
    try:
        code = attach(paths.attach_socket, stdin, out, out, detach_keys=keys, resize=tty_size)
    except (NotFound, ConnectionError, FileNotFoundError):
        follow_output(paths.log, paths.exit_file, _writer(out, out))
        code = -1
    if code is None and not paths.exit_file.exists():
        return None  # detached with the detach keys
    return code


def _writer(out: Any, err: Any):
    """A ``(stream, data)`` callback writing to binary ``out``/``err`` and flushing."""
    def write(stream: str, data: bytes) -> None:
        target = err if stream == "stderr" else out
        if target is not None:
            target.write(data)
            target.flush()
    return write


def parse_time_arg(text: str | float | None, now: float | None = None) -> float | None:
    """``--since``/``--until``: a unix time, an RFC 3339 time, or a duration (``10m``, ``1h30m``)
    ago (see :func:`portside.engine.units.parse_timestamp`); a number is a unix time already.

    Raises:
        InvalidArgument: none of those.
    """
    if text is None or text == "":
        return None
    if isinstance(text, (int, float)):
        return float(text)
    from ..units import parse_timestamp

    return parse_timestamp(text, now)


def _port_number(text: str) -> int | str | None:
    """A port as Docker's summary gives it: a number, None when none is known yet (a random
    host port of a container that is not running), the text for a range."""
    if not text:
        return None
    return int(text) if text.isdigit() else text


def _command_line(argv: list[str]) -> str:
    """The command as one line, a word with spaces quoted (Docker's ``ps --no-trunc``)."""
    import shlex

    return " ".join(shlex.quote(a) if " " in a else a for a in argv)


def status_text(rec: ContainerRecord, now: float | None = None) -> str:
    """Docker's STATUS column: ``Up 3 seconds``, ``Exited (0) 2 seconds ago``, ``Created``."""
    from ..units import human_duration

    now = now or time.time()
    st = rec.state
    status = rec.status
    if status in ("running", "paused"):
        text = "Up " + human_duration(now - (st.get("StartedAtTs") or now))
        return text + (" (Paused)" if status == "paused" else "")
    if status == "restarting":
        return (f"Restarting ({st.get('ExitCode', 0)}) "
                f"{human_duration(now - (st.get('FinishedAtTs') or now))} ago")
    if status == "exited":
        return (f"Exited ({st.get('ExitCode', 0)}) "
                f"{human_duration(now - (st.get('FinishedAtTs') or now))} ago")
    if status == "removing":
        return "Removal In Progress"
    if status == "dead":
        return "Dead"
    return "Created"


def _env_list(env: Sequence[str] | Mapping[str, str] | None) -> list[str]:
    """``KEY=VALUE`` strings from docker-py's list or mapping form."""
    if env is None:
        return []
    if hasattr(env, "items"):  # a mapping
        return [f"{k}={v}" for k, v in env.items()]
    return list(env)


def process_table(pids: list[int]) -> dict[str, Any]:
    """``ps -ef``-like rows for host pids: UID PID PPID C STIME TTY TIME CMD."""
    import pwd

    titles = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    hz = os.sysconf("SC_CLK_TCK")
    try:
        boot = float(next(ln for ln in Path("/proc/stat").read_text().splitlines()
                          if ln.startswith("btime")).split()[1])
    except (OSError, StopIteration):
        boot = 0.0
    rows = []
    for pid in pids:
        try:
            stat_fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace").strip()
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            continue
        ppid = stat_fields[1]
        cpu_s = (int(stat_fields[11]) + int(stat_fields[12])) // hz
        start = boot + int(stat_fields[19]) / hz
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
        rows.append([user, str(pid), ppid, "0", time.strftime("%H:%M", time.localtime(start)),
                     "?", time.strftime("%H:%M:%S", time.gmtime(cpu_s)), cmd])
    return {"Titles": titles, "Processes": rows}


class ContainerCollection(Collection):
    """``engine.containers``: create, run, get, list and prune containers."""

    model = Container

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self.store = ContainerStore(engine.db, engine.root)

    @property
    def lifecycle(self):
        return self.engine.lifecycle

    # ---- reading ----------------------------------------------------------------------------
    def inspect(self, rec: ContainerRecord) -> dict[str, Any]:
        """Docker's ``container inspect`` document for a record."""
        cfg = rec.config
        paths = self.store.paths(rec.id)
        state = {k: v for k, v in rec.state.items() if k not in _PRIVATE_STATE}
        state["Running"] = rec.status in ("running", "paused")
        state["Paused"] = rec.status == "paused"
        state["Restarting"] = rec.status == "restarting"
        state["Dead"] = rec.status == "dead"
        args = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
        mounts = [{k: m.get(k) for k in ("Type", "Name", "Source", "Destination", "Driver", "Mode",
                                          "RW", "Propagation") if k in m} for m in rec.mounts]
        up = rec.status in ("running", "paused")
        hc = dict(rec.host_config)
        mode = network_mode(hc)
        ports = {p: None for p in (cfg.get("ExposedPorts") or {})}
        return {
            "Id": rec.id,
            "Created": _rfc3339(rec.created),
            "Path": args[0] if args else "",
            "Args": args[1:],
            "State": state,
            "Image": rec.image_id,
            "ResolvConfPath": str(paths.etc_file("resolv.conf")),
            "HostnamePath": str(paths.etc_file("hostname")),
            "HostsPath": str(paths.etc_file("hosts")),
            "LogPath": str(paths.log),
            "Name": "/" + rec.name,
            "RestartCount": int(rec.state.get("RestartCount", 0)),
            "Driver": "overlay",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": None,
            "HostConfig": hc,
            "GraphDriver": {"Name": "overlay", "Data": self._graph_data(rec)},
            "Mounts": mounts,
            "Config": cfg,
            "NetworkSettings": _network_settings(rec, mode, ports, up),
            "GPUs": rec.extra.get("GPUs") or [],
        }

    def _graph_data(self, rec: ContainerRecord) -> dict[str, Any]:
        paths = self.store.paths(rec.id)
        try:
            image = self.engine.image_store.get(rec.image_id)
            lowers = ":".join(str(p) for p in [paths.init,  # Docker's <id>-init layer comes first
                                               *self.engine.image_store.rootfs_lowers(image)])
        except NotFound:
            lowers = ""
        return {"LowerDir": lowers, "UpperDir": str(paths.upper), "MergedDir": str(paths.rootfs),
                "WorkDir": str(paths.work)}

    def _refreshed(self, rec: ContainerRecord) -> ContainerRecord:
        """The record with its true state. Readers (ps, inspect, the side panel) take the
        container's lock only when the state must change, and then act on a record read under
        the lock: a copy read earlier may be stale (a restart policy just started a new run).
        A stopped container costs one ``stat`` (a start killed half-way left a marker)."""
        if rec.status not in ("running", "paused", "restarting"):
            from ..runtime.interrupted import pending

            if not pending(self.store.paths(rec.id)):
                return rec  # (without importing the lifecycle: ps -a stays cheap)
            lc = self.lifecycle
            with self.store.lock(rec.id, blocking=False) as held:
                if not held:
                    return rec  # being started right now: shown as it was
                fresh = self.store.get_by_id(rec.id)
                if fresh is not None:
                    fresh = lc.settle(fresh)  # the starter died: finish its job
                if fresh is None:
                    raise NotFound(f"No such container: {rec.name}")  # it was --rm
                return lc.refresh(fresh)
        from ..runtime import freeze

        lc = self.lifecycle
        if lc.monitor_alive(rec) and (rec.status == "restarting"
                                      or not lc.paths(rec).exit_file.exists()
                                      and not freeze.suspicious(lc, rec)):
            return rec  # nothing to record: its monitor lives, no exit, no freeze to settle
        with self.store.lock(rec.id):
            fresh = self.store.get_by_id(rec.id)
            if fresh is None:
                return rec  # removed meanwhile (--rm)
            return lc.refresh(fresh)

    def get(self, name: str, *, size: bool = False) -> Container:
        """The container with that name, id or unique id prefix; ``size`` adds ``SizeRw``.

        Raises:
            NotFound: no such container.
        """
        rec = self._refreshed(self.store.resolve(name))
        container = Container(None, self, rec)
        if size:
            container.attrs["SizeRw"] = _dir_size(self.store.paths(rec.id).upper)
        return container

    def records(self, *, all: bool = False, filters: Mapping[str, list[str]] | None = None,
                limit: int | None = None) -> list[ContainerRecord]:
        """Records (state refreshed), newest first, filtered like ``ps``."""
        filters = {k: v for k, v in (filters or {}).items()}
        out = []
        image_ids: dict[str, str | None] = {}
        for rec in self.store.list():
            try:
                rec = self._refreshed(rec)
            except NotFound:
                continue  # removed meanwhile
            if not all and not filters.get("status") and rec.status not in ("running", "paused",
                                                                              "restarting"):
                continue
            if not _matches(self, rec, filters, image_ids):
                continue
            out.append(rec)
        if limit is not None and limit >= 0:
            out = out[:limit]
        return out

    def list(self, *, all: bool = False, filters: Mapping[str, list[str]] | None = None,
             limit: int | None = None, before: str | None = None,
             since: str | None = None, sparse: bool = False, size: bool = False
             ) -> list[Container]:
        """Containers, newest first; by default only running ones (``all`` for every one).
        ``filters`` as Docker's: status, name, id, ancestor, label, exited, before, since,
        volume. With ``sparse``, each one's ``attrs`` is Docker's ``/containers/json`` summary
        (what ``ps`` shows), ``SizeRw`` included with ``size``."""
        filters = dict(filters or {})
        if before:
            filters.setdefault("before", []).append(before)
        if since:
            filters.setdefault("since", []).append(since)
        recs = self.records(all=all, filters=filters, limit=limit)
        if sparse:
            return [Container(self.summary(r, size=size), self, r) for r in recs]
        out = [Container(None, self, r) for r in recs]
        if size:
            for c in out:
                c.attrs["SizeRw"] = _dir_size(self.store.paths(c.id).upper)
        return out

    def summary(self, rec: ContainerRecord, *, size: bool = False) -> dict[str, Any]:
        """Docker's ``/containers/json`` entry for a record, plus portside's ``Path``, ``Args``,
        ``GPUs`` and ``Created`` to the fraction of a second."""
        cfg = rec.config
        argv = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
        ports = []
        bindings = published_ports(rec)
        for key, binds in sorted(bindings.items()):
            private, _, proto = key.partition("/")
            for b in binds or []:
                ports.append({"IP": b.get("HostIp") or "0.0.0.0",
                              "PrivatePort": _port_number(private),
                              "PublicPort": _port_number(b.get("HostPort") or ""),
                              "Type": proto or "tcp"})
        for key in sorted(cfg.get("ExposedPorts") or {}):
            if key not in bindings:
                private, _, proto = key.partition("/")
                ports.append({"PrivatePort": _port_number(private), "Type": proto or "tcp"})
        live = rec.extra.get("NetworkSettings") or {}
        out = {
            "Id": rec.id, "Names": ["/" + rec.name], "Image": cfg.get("Image") or rec.image_id,
            "ImageID": rec.image_id, "Command": _command_line(argv), "Path": argv[0] if argv
            else "", "Args": argv[1:], "Created": rec.created, "State": rec.status,
            "Status": status_text(rec), "Ports": ports, "Labels": cfg.get("Labels") or {},
            "Mounts": [{k: m.get(k) for k in ("Type", "Name", "Source", "Destination", "Driver",
                                               "Mode", "RW", "Propagation") if k in m}
                       for m in rec.mounts],
            "HostConfig": {"NetworkMode": network_mode(rec.host_config)},
            "NetworkSettings": {"Networks": {name: dict(ep) for name, ep in
                                             (live.get("Networks") or {}).items()}},
            "GPUs": rec.extra.get("GPUs") or [],
        }
        if size:
            out["SizeRw"] = _dir_size(self.store.paths(rec.id).upper)
        return out

    # ---- writing ----------------------------------------------------------------------------
    def _image_for(self, config: dict[str, Any], locked: bool | None) -> dict[str, Any]:
        """``config`` with its image resolved through the lock when one is enforced."""
        image = config.get("Image")
        if not image:
            return config
        resolved = self.engine.images.resolve_locked(image, locked)
        return config if resolved == image else dict(config, Image=resolved)

    def create_from(self, config: Mapping[str, Any], host_config: Mapping[str, Any], *,
                    name: str | None = None, locked: bool | None = None,
                    container_id: str | None = None) -> Container:
        """Create from Docker-shaped ``Config``/``HostConfig`` documents (what the CLI builds);
        the image resolves through ``portside.lock`` when it is enforced (``locked``, or
        ``locked = true`` in it). ``container_id``: the id to give it (one whose monitor was
        launched ahead)."""
        config = self._image_for(dict(config), locked)
        rec = self.lifecycle.create(config, dict(host_config), name=name,
                                    container_id=container_id)
        return Container(None, self, rec)

    def create(self, image: str, command: str | Sequence[str] | None = None, *,
               locked: bool | None = None, **kwargs: Any) -> Container:
        """docker-py's ``containers.create``: name, environment, entrypoint, working_dir, user,
        hostname, labels, volumes, tty, stdin_open, auto_remove, network_mode, privileged,
        cap_add, cap_drop, read_only, shm_size, mem_limit, memswap_limit, nano_cpus, cpu_shares,
        pids_limit, group_add, restart_policy, stop_signal, device_requests (as ``gpus``)."""
        config, host_config, name = docker_py_kwargs(image, command, kwargs)
        return self.create_from(config, host_config, name=name, locked=locked)

    def run(self, image: str, command: str | Sequence[str] | None = None, *,
            detach: bool = False,
            remove: bool = False, stdout: bool = True, stderr: bool = False,
            locked: bool | None = None, **kwargs: Any) -> Container | bytes:
        """docker-py's ``containers.run``: with ``detach`` the running Container; otherwise the
        output once it exits.

        Raises:
            ContainerExit: it exited non-zero (the status is the exception's ``exit_code``).
        """
        import io

        config, host_config, name = docker_py_kwargs(
            image, command, dict(kwargs, auto_remove=remove and detach))
        if detach:
            started = self.run_from(config, host_config, name=name, detach=True, locked=locked)
            assert isinstance(started, Container)
            return started
        out, err = io.BytesIO(), io.BytesIO()
        made: list[Container] = []
        code = self.run_from(config, host_config, name=name, locked=locked, stdout=out,
                             stderr=err, on_created=made.append)
        assert not isinstance(code, Container)
        data = (out.getvalue() if stdout else b"") + (err.getvalue() if stderr else b"")
        if remove and made:
            with contextlib.suppress(NotFound):
                made[0].remove(force=True)
        if code:
            tail = (out.getvalue() + err.getvalue())[-200:]
            raise ContainerExit(code, f"container {made[0].name if made else image} exited "
                                      f"with {code}: {tail.decode(errors='replace').strip()}")
        return data

    if TYPE_CHECKING:
        @overload
        def run_from(self, config: Mapping[str, Any], host_config: Mapping[str, Any], *,
                     name: str | None = None, detach: Literal[True], locked: bool | None = None,
                     stdin: BinaryIO | None = None, stdout: BinaryIO | None = None,
                     stderr: BinaryIO | None = None, detach_keys: str | None = None,
                     tty_size: tuple[int, int] | None = None,
                     on_created: Callable[[Container], None] | None = None) -> Container: ...

        @overload
        def run_from(self, config: Mapping[str, Any], host_config: Mapping[str, Any], *,
                     name: str | None = None, detach: Literal[False] = False,
                     locked: bool | None = None, stdin: BinaryIO | None = None,
                     stdout: BinaryIO | None = None, stderr: BinaryIO | None = None,
                     detach_keys: str | None = None, tty_size: tuple[int, int] | None = None,
                     on_created: Callable[[Container], None] | None = None) -> int | None: ...

    def run_from(self, config: Mapping[str, Any], host_config: Mapping[str, Any], *,
                 name: str | None = None, detach: bool = False, locked: bool | None = None,
                 stdin: BinaryIO | None = None, stdout: BinaryIO | None = None,
                 stderr: BinaryIO | None = None, detach_keys: str | None = None,
                 tty_size: tuple[int, int] | None = None,
                 on_created: Callable[[Container], None] | None = None
                 ) -> Container | int | None:
        """``docker run``: create from ``Config``/``HostConfig``, start, and (unless
        ``detach``) stay with the container until it exits; see
        :meth:`portside.engine.models.interface.ContainerCollection.run_from`."""
        from ..runtime.containers import new_container_id

        keys = parse_detach_keys(detach_keys)
        lc = self.lifecycle
        config = self._image_for(dict(config), locked)
        # The monitor's interpreter starts now, while the container is created and its bundle
        # written: its start-up is off the critical path.
        launch = lc.launch_monitor(new_container_id())
        try:
            rec = lc.create(config, dict(host_config), name=name,
                            container_id=launch.container_id)
            container = Container(None, self, rec)
            if on_created is not None:
                on_created(container)
        except BaseException:
            lc.cancel_launch(launch)
            raise
        if detach:
            try:
                container._done(lc.start(rec, launch=launch))
            except EngineError:
                if rec.host_config.get("AutoRemove"):  # the monitor would remove it; it never ran
                    with contextlib.suppress(EngineError):
                        lc.remove(rec.id, force=True)
                raise
            return container
        return self._attached(rec, stdin, stdout, stderr, keys, tty_size, launch=launch)

    def start_attached(self, name: str, stdin: BinaryIO | None, stdout: BinaryIO,
                       stderr: BinaryIO, *, detach_keys: str | None = None,
                       tty_size: tuple[int, int] | None = None) -> int | None:
        """``docker start -a [-i]``: start and stay attached, as :meth:`run_from` does."""
        keys = parse_detach_keys(detach_keys)
        return self._attached(self.store.resolve(name), stdin, stdout, stderr, keys, tty_size)

    def _attached(self, rec: ContainerRecord, stdin: Any, stdout: Any, stderr: Any,
                  keys: bytes, tty_size: tuple[int, int] | None, launch: Any = None
                  ) -> int | None:
        """Start ``rec`` and stay until it exits: output streamed, stdin fed; returns the exit
        status, or None when the caller detached."""
        import threading

        from ..runtime.logs import follow_output

        lc = self.lifecycle
        interactive = stdin is not None
        tty = bool(rec.config.get("Tty"))
        try:
            # without stdin or a terminal nobody can detach: this process sees the exit and
            # cleans up after it, and the monitor needs no cleanup process of its own
            rec = lc.start(rec, watched=not (interactive or tty), launch=launch)
        except EngineError:
            if rec.host_config.get("AutoRemove"):
                with contextlib.suppress(EngineError):
                    lc.remove(rec.id, force=True)
            raise
        paths = lc.paths(rec)
        try:
            if tty:
                code = _attach_tty(lc, rec, stdin, stdout, keys, tty_size)
                if code is None:
                    lc.unwatch(rec.id)
                    return None
            else:
                if interactive:
                    from ..runtime.monitor import attach

                    def feed() -> None:
                        try:
                            attach(paths.attach_socket, stdin, None, None, detach_keys=b"")
                        except (EngineError, OSError):
                            pass

                    threading.Thread(target=feed, daemon=True).start()
                # the log, not the attach stream: nothing written before we could connect is
                # lost, and stdout and stderr stay apart
                follow_output(paths.log, paths.exit_file, _writer(stdout, stderr),
                              wake=lc.exit_fd(rec.id))
        except KeyboardInterrupt:
            # ^C, or a notebook's interrupt: stop the container, as Docker's signal proxy would,
            # and clean up after it before giving the interrupt back
            lc.interrupt_foreground(rec)
            raise
        return lc.finish_foreground(rec)

    def prune(self, filters: Mapping[str, builtins.list[str]] | None = None) -> dict[str, Any]:
        """Remove every stopped container; returns ``{"ContainersDeleted", "SpaceReclaimed"}``.

        ``filters``: Docker's ``until``, ``label`` and ``label!`` (see
        :class:`~portside.engine.models.filters.PruneFilters`), and ``ps``'s own filters."""
        from .filters import PruneFilters

        wanted = PruneFilters({k: v for k, v in (filters or {}).items()
                               if k in ("until", "label!")})
        rest = {k: v for k, v in (filters or {}).items() if k not in ("until", "label!")}
        deleted, reclaimed = [], 0
        for rec in self.records(all=True, filters=rest):
            if rec.status in ("running", "paused", "restarting"):
                continue
            if not wanted.prunes(rec.created, rec.config.get("Labels")):
                continue
            reclaimed += _dir_size(self.store.paths(rec.id).upper)
            try:
                self.lifecycle.remove(rec.id)
            except NotFound:
                continue
            deleted.append(rec.id)
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def container_fs(self, ref: str):
        """Context manager: the container's :class:`~portside.engine.runtime.cp.ContainerFS`
        (its rootfs mounted for the moment if it is stopped)."""
        import contextlib

        from ..runtime.cp import ContainerFS

        rec = self.store.resolve(ref)
        lc = self.lifecycle

        @contextlib.contextmanager
        def opened():
            with lc.rootfs(rec) as root:
                paths = lc.paths(rec)
                live = rec.extra.get("EtcFiles") or {}
                mounts = []
                for n in ("hostname", "hosts", "resolv.conf"):
                    source = live.get(f"/etc/{n}")
                    if source and Path(source).exists():
                        mounts.append((f"/etc/{n}", source))
                    elif paths.etc_file(n).exists():
                        mounts.append((f"/etc/{n}", str(paths.etc_file(n))))
                mounts += [(m["Destination"], m["Source"]) for m in rec.mounts
                           if m.get("Source") and m.get("Destination")]
                readonly = tuple(m["Destination"] for m in rec.mounts
                                 if m.get("Destination") and m.get("RW") is False)
                yield ContainerFS(Path(root), mounts, readonly,
                                  bool(rec.host_config.get("ReadonlyRootfs")), rec.name)

        return opened()


def docker_py_kwargs(image: str, command: str | Sequence[str] | None,
                     kw: dict[str, Any]) -> tuple[dict, dict, str | None]:
    """Map docker-py's keyword arguments onto ``Config``/``HostConfig``."""
    import shlex

    unknown = set(kw) - {
        "name", "environment", "entrypoint", "working_dir", "user", "hostname", "labels",
        "volumes", "tty", "stdin_open", "auto_remove", "network_mode", "network", "privileged",
        "cap_add", "cap_drop", "read_only", "shm_size", "mem_limit", "nano_cpus", "pids_limit",
        "restart_policy", "stop_signal", "gpus", "devices", "volumes_from", "mounts",
        "stop_timeout", "extra_hosts", "dns", "ulimits", "group_add", "memswap_limit",
        "cpu_shares", "runtime"}
    if unknown:
        raise InvalidArgument(f"unsupported container option(s): {', '.join(sorted(unknown))}")
    cmd = shlex.split(command) if isinstance(command, str) else (list(command) if command else None)
    entry = kw.get("entrypoint")
    if isinstance(entry, str):
        entry = shlex.split(entry) or [""]
    labels = kw.get("labels") or {}
    if isinstance(labels, list):
        labels = {k: "" for k in labels}
    config: dict[str, Any] = {
        "Image": image, "Cmd": cmd, "Entrypoint": entry, "Env": _env_list(kw.get("environment")),
        "WorkingDir": kw.get("working_dir") or "", "User": kw.get("user") or "",
        "Hostname": kw.get("hostname") or "", "Labels": labels, "Tty": bool(kw.get("tty")),
        "OpenStdin": bool(kw.get("stdin_open")), "StopSignal": kw.get("stop_signal") or "",
    }
    if kw.get("stop_timeout") is not None:
        config["StopTimeout"] = int(kw["stop_timeout"])
    vols = kw.get("volumes") or []
    binds: list[str] = []
    if isinstance(vols, dict):
        for src, spec in vols.items():
            binds.append(f"{src}:{spec['bind']}" + (f":{spec['mode']}" if spec.get("mode") else ""))
    else:
        binds = list(vols)
    shm = kw.get("shm_size")
    mem = kw.get("mem_limit")
    from ..units import parse_size

    restart = kw.get("restart_policy") or {"Name": "no", "MaximumRetryCount": 0}
    host_config: dict[str, Any] = {
        "Binds": binds or None, "AutoRemove": bool(kw.get("auto_remove")),
        "NetworkMode": kw.get("network_mode") or kw.get("network") or "default",
        "Privileged": bool(kw.get("privileged")), "CapAdd": kw.get("cap_add"),
        "CapDrop": kw.get("cap_drop"), "ReadonlyRootfs": bool(kw.get("read_only")),
        "ShmSize": (parse_size(shm) if isinstance(shm, str) else shm) or 64 * 1024**2,
        "Memory": (parse_size(mem) if isinstance(mem, str) else mem) or 0,
        "MemorySwap": _swap(kw.get("memswap_limit")),
        "NanoCpus": int(kw.get("nano_cpus") or 0), "PidsLimit": kw.get("pids_limit"),
        "CpuShares": int(kw.get("cpu_shares") or 0),
        "GroupAdd": [str(g) for g in kw.get("group_add") or []] or None,
        "RestartPolicy": restart, "VolumesFrom": kw.get("volumes_from"),
        "Mounts": kw.get("mounts"), "ExtraHosts": [f"{h}:{ip}" for h, ip in
                                                   (kw.get("extra_hosts") or {}).items()],
        "Dns": kw.get("dns") or [],
    }
    if kw.get("gpus"):
        host_config["Gpus"] = kw["gpus"]
    if kw.get("runtime"):
        host_config["Runtime"] = kw["runtime"]
    return config, host_config, kw.get("name")


def _swap(value: int | str | None) -> int:
    """docker-py's ``memswap_limit``: bytes, a size, or -1 (unlimited swap)."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    from ..units import parse_size

    return -1 if value.strip() == "-1" else parse_size(value)


def _dir_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                pass
    return total


def _matches(coll: ContainerCollection, rec: ContainerRecord, filters: dict[str, list[str]],
             image_ids: dict[str, str | None]) -> bool:
    for key, values in filters.items():
        if key == "status":
            if rec.status not in values:
                return False
        elif key == "name":
            if not any(re.search(v, rec.name) for v in values):
                return False
        elif key == "id":
            if not any(rec.id.startswith(v) for v in values):
                return False
        elif key == "label":
            labels = rec.config.get("Labels") or {}
            for item in values:
                k, eq, v = item.partition("=")
                if k not in labels or (eq and labels[k] != v):
                    return False
        elif key == "ancestor":
            ok = False
            for v in values:
                if v not in image_ids:
                    try:
                        image_ids[v] = coll.engine.image_store.resolve_id(v)
                    except (NotFound, InvalidArgument):
                        image_ids[v] = None
                if image_ids[v] == rec.image_id or rec.config.get("Image") == v:
                    ok = True
            if not ok:
                return False
        elif key == "exited":
            if rec.status != "exited" or str(rec.state.get("ExitCode")) not in values:
                return False
        elif key in ("before", "since"):
            other = coll.store.resolve(values[0])
            if key == "before" and not rec.created < other.created:
                return False
            if key == "since" and not rec.created > other.created:
                return False
        elif key == "volume":
            if not any(m.get("Name") in values or m.get("Destination") in values
                       or m.get("Source") in values for m in rec.mounts):
                return False
        elif key in ("network", "health", "is-task", "publish", "expose"):
            continue
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
    return True


def _network_settings(rec: ContainerRecord, mode: str, ports: dict, up: bool) -> dict[str, Any]:
    """Docker's NetworkSettings: the live addresses and ports while the container runs."""
    live = rec.extra.get("NetworkSettings") if up else None
    networks: dict[str, Any] = {}
    if live:
        for name, ep in (live.get("Networks") or {}).items():
            networks[name] = {"NetworkID": "", "EndpointID": "", "Gateway": "",
                              "IPAddress": ep.get("IPAddress", ""), "IPPrefixLen": 0,
                              "MacAddress": ep.get("MacAddress", "")}
        ports = dict(ports, **(live.get("Ports") or {}))
    elif mode != "host":
        networks[mode] = {"NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "",
                          "IPPrefixLen": 0, "MacAddress": ""}
    first: dict[str, Any] = next(iter(networks.values()), {})
    return {"Bridge": "", "SandboxID": "", "SandboxKey": (live or {}).get("SandboxKey") or "",
            "Ports": ports, "IPAddress": first.get("IPAddress", ""), "IPPrefixLen": 0,
            "Gateway": "", "MacAddress": first.get("MacAddress", ""), "Networks": networks}


# ----------------------------------------------------------------------------------- registrations

def _info(engine) -> dict[str, int]:
    recs = engine.containers.records(all=True)
    running = sum(1 for r in recs if r.status == "running")
    paused = sum(1 for r in recs if r.status == "paused")
    return {"Containers": len(recs), "ContainersRunning": running, "ContainersPaused": paused,
            "ContainersStopped": len(recs) - running - paused}


def _df(engine) -> dict[str, Any]:
    recs = engine.containers.records(all=True)
    sizes = {r.id: _dir_size(engine.containers.store.paths(r.id).upper) for r in recs}
    active = [r for r in recs if r.status in ("running", "paused")]
    total = sum(sizes.values())
    return {"Type": "Containers", "TotalCount": len(recs), "Active": len(active), "Size": total,
            "Reclaimable": total - sum(sizes[r.id] for r in active)}


def _check(engine, repair: bool) -> tuple[list[str], list[str]]:
    """Containers whose monitor died (a problem), and mounts, cgroups, runtime state and
    folders nobody owns (garbage)."""
    from ..runtime.cgroups import Cgroup, cgroup_path_for
    from ..runtime.lifecycle import _mounted

    coll = engine.containers
    lc = coll.lifecycle
    problems: list[str] = []
    garbage: list[str] = []
    cdir = Path(engine.root) / "containers"
    # in one write transaction: a `create` makes its folder and record in one, so a folder
    # seen here without a record is nobody's
    with engine.db.transaction():
        records = coll.store.list()
        folders = [d for d in cdir.iterdir()] if cdir.is_dir() else []
    known = {rec.id for rec in records}
    from ..runtime.interrupted import pending

    for rec in records:
        try:
            rec = coll._refreshed(rec)  # settles a start whose process died
        except NotFound:
            continue
        if pending(lc.paths(rec)):
            continue  # being started right now: what it has mounted is its own
        if rec.status in ("running", "paused") and not lc.monitor_alive(rec):
            problems.append(f"container {rec.short_id}: its monitor is gone")
            if repair:
                lc.stop(rec.id, timeout=0)
        elif rec.status not in ("running", "paused", "restarting"):
            if _mounted(lc.paths(rec).rootfs):
                garbage.append(f"container {rec.short_id}: rootfs still mounted")
                if repair:
                    lc.finalize(rec)
    leftovers = []
    for runtime in lc.runtimes_in_use():
        try:
            # build-… containers belong to builds (see store.leftovers for a dead build's)
            leftovers += [(runtime, c) for c in runtime.list() if c.get("id") not in known
                          and not c.get("id", "").startswith("build-")]
        except Exception:  # noqa: BLE001 - no runtime state yet
            pass
    for runtime, c in leftovers:
        garbage.append(f"runtime container {c['id'][:12]} has no record")
        if repair:
            try:
                runtime.delete(c["id"], force=True)
            except Exception:  # noqa: BLE001
                pass
            cg = Cgroup(cgroup_path_for(c["id"]))
            if cg.exists():
                cg.remove()
    for d in folders:
        if d.name not in known:
            garbage.append(f"container folder {d.name[:12]} has no record")
            if repair:
                rootfs = d / "rootfs"
                if _mounted(rootfs):
                    lc.mounter.unmount(rootfs, lazy=True)
                import shutil

                shutil.rmtree(d, ignore_errors=True)
    return problems, garbage


register_info("containers", _info)
register_df("containers", _df)
register_check("containers", _check)
