"""Driving an OCI runtime (runc or crun): the program that turns a bundle into a running container.

The runtime's command line is the same for runc and crun. A container goes through::

    create --bundle B --pid-file P ID   namespaces, mounts and cgroup made; ``runc init`` waits
    start ID                            the user's process is exec'd in place of ``runc init``
    state ID                            JSON: status (created/running/paused/stopped), pid, bundle
    kill [--all] ID SIG                 signal the init (or every process)
    pause / resume ID                   freeze / thaw the cgroup
    exec --process F ID                 run another process inside the namespaces
    delete [--force] ID                 forget it, remove its cgroup

The runtime keeps its own state (a directory per container) under ``--root``; every call here passes
``--root <PORTSIDE_ROOT>/run/runtime`` so portside's containers never mix with another tool's.

Errors come back as the runtime's one-line message with its log decorations stripped; "container does
not exist" becomes :class:`NotFound`. When ``create`` fails because the command is missing or cannot be
executed, the error is :class:`CommandNotFound` (exit 127) or :class:`CannotInvoke` (exit 126), which
is how Docker reports those cases.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from portside.engine.errors import CannotInvoke, CommandNotFound, NotFound, RuntimeFailure

from .cgroups import CgroupLayout

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    import builtins
    import subprocess
    from typing import IO, Any, Sequence, Union

    Stdio = Union[int, IO[Any], None]


#: ``subprocess.DEVNULL``, without importing subprocess (a start never calls the runtime here).
DEVNULL = -3

_LOGRUS_MSG = r'msg="((?:[^"\\]|\\.)*)"'


def clean_message(text: str) -> str:
    """The runtime's last error message without its log noise (``time=… level=error msg="…"``).

    Accepts plain stderr, logrus text lines and ``--log-format json`` lines.
    """
    import re

    message = ""
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except ValueError:
                message = line
                continue
            if doc.get("level") in ("error", "fatal", "panic"):
                message = str(doc.get("msg", ""))
            continue
        m = re.search(_LOGRUS_MSG, line) if "msg=" in line else None
        if m and "level=" in line:
            if "level=warn" in line or "level=info" in line or "level=debug" in line:
                continue
            message = m.group(1).encode().decode("unicode_escape")
        else:
            message = line
    return message


def _cannot_exec(low: str) -> bool:
    """Whether a (lower-cased) runtime message says the container's command could not be run:
    runc's ``exec: "x": ...``, crun's ``executable file `x` not found in $PATH``, ``open
    executable: ...`` and ``exec container process `x`: ...``."""
    return ("exec:" in low or low.startswith("executable file `") or "open executable" in low
            or "exec container process" in low)


def classify_error(message: str, container_id: str = "") -> Exception:
    """Map a runtime error message onto the engine's error tree.

    ``exec: "x": executable file not found`` (crun: ``executable file `x` not found in $PATH``)
    → :class:`CommandNotFound` (127), ``exec: "x": permission denied`` (crun: ``open executable:
    Permission denied``, or ``Operation not permitted`` for a directory) → :class:`CannotInvoke`
    (126), ``container does not exist`` →
    :class:`NotFound`, anything else → :class:`RuntimeFailure`.
    """
    low = message.lower()
    if _cannot_exec(low):
        if "not found" in low or "no such file or directory" in low:
            return CommandNotFound(message)
        if "permission denied" in low or "operation not permitted" in low \
                or "exec format error" in low or "is a directory" in low:
            return CannotInvoke(message)
    if "does not exist" in low or "container not found" in low:
        return NotFound(f"No such container: {container_id}" if container_id else message)
    return RuntimeFailure(message or "OCI runtime failed")


class OCIRuntime:
    """One OCI runtime binary (runc or crun) with portside's state root.

    Args:
        name: ``"runc"`` or ``"crun"``.
        path: absolute path of the binary.
        state_root: the runtime's ``--root`` (created when missing).
        options: global options given on every call, before ``--root`` (crun's
            ``--cgroup-manager=disabled``; see :mod:`.runtimes`).
    """

    def __init__(self, name: str, path: str, state_root: Path,
                 options: tuple[str, ...] = ()) -> None:
        self.name = name
        self.path = path
        self.state_root = Path(state_root)
        self.options = tuple(options)
        self.state_root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def __repr__(self) -> str:
        return (f"OCIRuntime({self.name!r}, {self.path!r}, root={str(self.state_root)!r}"
                + (f", options={self.options!r})" if self.options else ")"))

    @classmethod
    def detect(cls, preferred: str | None = None,
               state_root: Path = Path("/var/lib/portside/run/runtime")) -> "OCIRuntime":
        """Find an OCI runtime that is installed and works on this host.

        ``preferred`` (a name or a path) is tried first. Otherwise crun is preferred on a pure
        cgroup v2 host (it starts faster) and runc elsewhere: crun does not handle v1/v2 hybrid hosts
        without extra configuration.

        Raises:
            RuntimeFailure: neither runtime is usable (or the preferred one is missing).
        """
        if preferred:
            path = preferred if os.path.isabs(preferred) else shutil.which(preferred)
            if not path or not _works(path, state_root):
                raise RuntimeFailure(f"OCI runtime not found or not working: {preferred}")
            return cls(os.path.basename(path), path, state_root)
        layout = CgroupLayout.detect()
        order = ["crun", "runc"] if layout == CgroupLayout.V2 else ["runc", "crun"]
        for name in order:
            path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}")
                                          else None)
            if path and _works(path, state_root):
                return cls(name, path, state_root)
        raise RuntimeFailure("no OCI runtime found: install runc or crun")

    # ---- plumbing -------------------------------------------------------------------------

    def command(self, *args: str) -> list[str]:
        """The argv of a runtime call with the global options (``--root``) in front."""
        return [self.path, *self.options, "--root", str(self.state_root), *args]

    def _call(self, *args: str, container_id: str = "", timeout: float = 60) -> str:
        import subprocess

        try:
            proc = subprocess.run(self.command(*args), stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeFailure(f"{self.name} {args[0]} timed out") from exc
        if proc.returncode != 0:
            raise classify_error(clean_message(proc.stderr) or f"{self.name} {args[0]} failed",
                                 container_id)
        return proc.stdout

    # ---- verbs ----------------------------------------------------------------------------

    def create(self, container_id: str, bundle: Path, *, pid_file: Path,
               console_socket: Path | None = None,
               stdio: Sequence[Stdio] = (DEVNULL, DEVNULL, DEVNULL)) -> None:
        """Create the container (``runtime create``): everything but the user's process.

        Args:
            container_id: the runtime's id for it.
            bundle: directory with ``config.json`` and the rootfs.
            pid_file: where the runtime writes the init's host pid.
            console_socket: for ``process.terminal``: a listening unix socket that receives the
                pty master.
            stdio: stdin, stdout, stderr handed to the container (files, fds or DEVNULL).

        Raises:
            CommandNotFound, CannotInvoke: the command cannot be run (127, 126).
            RuntimeFailure: anything else; the message is the runtime's.
        """
        import subprocess
        import tempfile

        with tempfile.NamedTemporaryFile(prefix="runtime-log-", suffix=".json") as log:
            args = ["--log", log.name, "--log-format", "json", "create", "--bundle", str(bundle),
                    "--pid-file", str(pid_file)]
            if console_socket is not None:
                args += ["--console-socket", str(console_socket)]
            proc = subprocess.run(self.command(*args, container_id), stdin=stdio[0],
                                  stdout=stdio[1], stderr=stdio[2])
            if proc.returncode != 0:
                message = clean_message(Path(log.name).read_text(errors="replace"))
                raise classify_error(message or f"{self.name} create failed", container_id)

    def start(self, container_id: str) -> None:
        """Run the user's process of a created container (``runtime start``)."""
        self._call("start", container_id, container_id=container_id)

    def state(self, container_id: str) -> dict[str, Any] | None:
        """The runtime's state JSON for the container, or None when it does not know it."""
        try:
            out = self._call("state", container_id, container_id=container_id)
        except NotFound:
            return None
        try:
            return json.loads(out)
        except ValueError as exc:
            raise RuntimeFailure(f"{self.name} state: bad JSON for {container_id}") from exc

    def list(self) -> list[dict[str, Any]]:
        """Every container the runtime knows under our root."""
        out = self._call("list", "--format", "json")
        return json.loads(out or "null") or []

    def kill(self, container_id: str, sig: int | str = "TERM", all: bool = False) -> None:
        """Send a signal (a number, ``"KILL"`` or ``"SIGKILL"``) to the init or, with ``all``, to
        every process of the container.

        Raises:
            NotFound: no such container. RuntimeFailure: the runtime refused (e.g. not running).
        """
        if all and "--cgroup-manager=disabled" in self.options:
            # crun without a cgroup (rootless, see runtimes.py) looks for --all's processes in
            # the cgroup it does not have and signals none (a stop's SIGKILL left the container
            # running). The container has its own pid namespace: its processes die with init.
            all = False
        args = ["kill"] + (["--all"] if all else []) + [container_id, str(sig)]
        self._call(*args, container_id=container_id)

    def delete(self, container_id: str, force: bool = False) -> None:
        """Forget the container; with ``force``, kill it first if it still runs.

        Raises:
            NotFound: the runtime does not know it.
        """
        self._call("delete", *(["--force"] if force else []), container_id,
                   container_id=container_id)

    def update(self, container_id: str, args: Sequence[str]) -> None:
        """Change a running container's cgroup limits (``runtime update`` with its flags:
        ``--memory``, ``--memory-swap``, ``--cpu-quota``, ``--cpu-share``, ``--pids-limit``…).

        Raises:
            NotFound: no such container. RuntimeFailure: the runtime or the kernel refused.
        """
        self._call("update", *args, container_id, container_id=container_id)

    def pause(self, container_id: str) -> None:
        """Freeze every process of the container."""
        self._call("pause", container_id, container_id=container_id)

    def resume(self, container_id: str) -> None:
        """Thaw a paused container."""
        self._call("resume", container_id, container_id=container_id)

    def ps(self, container_id: str) -> builtins.list[int]:
        """Host pids of the container's processes (rootless without a cgroup, the processes in
        its init's pid namespace)."""
        try:
            out = self._call("ps", "--format", "json", container_id, container_id=container_id)
        except RuntimeFailure:
            from portside.engine.rootless import has_cgroups

            if has_cgroups():
                raise
            from portside.engine.rootless.procs import pid_namespace_members

            state = self.state(container_id) or {}
            if not state.get("pid"):
                raise
            return pid_namespace_members(int(state["pid"]))
        return sorted(json.loads(out or "null") or [])

    def exec(self, container_id: str, process: dict[str, Any], *, detach: bool = False,
             tty: bool = False, pid_file: Path | None = None,
             console_socket: Path | None = None,
             stdio: Sequence[Stdio] = (None, None, None)) -> subprocess.Popen[bytes]:
        """Start another process in the container (``runtime exec --process``).

        Args:
            process: an OCI ``process`` object (see :func:`spec.exec_process`).
            detach: return once the process started; otherwise the runtime stays its parent and
                the returned Popen's exit status is the process's.
            tty: give the process a terminal (``process.terminal``); without ``console_socket`` and
                without ``detach`` the runtime relays the pty through its own stdio.
            pid_file: where to write the process's host pid.
            stdio: stdin, stdout, stderr of the runtime (and so of the process when no tty).

        Returns:
            the runtime process; ``wait()`` gives the exit status (125 is the runtime's own error).
        """
        import subprocess

        data = json.dumps(dict(process, terminal=tty)).encode()
        # The runtime reads the process from a pipe it inherits (no file to make and remove);
        # one too big for the pipe's buffer goes through a temporary file.
        pipe_r, name = _process_pipe(data)
        if pipe_r < 0:
            import tempfile

            fd, name = tempfile.mkstemp(prefix="exec-", suffix=".json")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        args = ["exec", "--process", name]
        if detach:
            args.append("--detach")
        if pid_file is not None:
            args += ["--pid-file", str(pid_file)]
        if console_socket is not None:
            args += ["--console-socket", str(console_socket)]
        try:
            proc = subprocess.Popen(self.command(*args, container_id), stdin=stdio[0],
                                    stdout=stdio[1], stderr=stdio[2],
                                    pass_fds=(pipe_r,) if pipe_r >= 0 else ())
            if detach:
                proc.wait()
        finally:
            if pipe_r >= 0:
                os.close(pipe_r)
            elif detach:
                os.unlink(name)
        if not detach and pipe_r < 0:
            # The runtime reads the file before it forks; removing it after start-up is safe, but
            # we do not know when that is: unlink once the runtime exits, from a finalizer.
            _unlink_later(proc, name)
        return proc


def _process_pipe(data: bytes) -> tuple[int, str]:
    """A pipe holding all of ``data`` and the path a child that inherits its read end opens it
    by (``/proc/self/fd/N``); ``(-1, "")`` when the pipe's buffer cannot take it all."""
    r, w = os.pipe()
    try:
        os.set_blocking(w, False)
        written = os.write(w, data)
    except BlockingIOError:
        written = 0
    finally:
        os.close(w)
    if written != len(data):
        os.close(r)
        return -1, ""
    if r < 3:  # a caller with closed stdio: the child's stdin/out/err would replace it
        import fcntl

        try:
            moved = fcntl.fcntl(r, fcntl.F_DUPFD_CLOEXEC, 3)
        finally:
            os.close(r)
        r = moved
    return r, f"/proc/self/fd/{r}"


def _unlink_later(proc: subprocess.Popen[bytes], name: str) -> None:
    original_wait = proc.wait

    def wait(timeout: float | None = None) -> int:
        code = original_wait(timeout)
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass
        return code

    proc.wait = wait  # type: ignore[method-assign]


def _works(path: str, state_root: Path | None = None) -> bool:
    """True when ``path --version`` runs: the binary exists and can execute on this host.

    A binary that ran once is remembered in ``state_root`` under its identity (inode, size,
    modification time), so a command does not pay ~10 ms for running ``--version`` again; a
    replaced or upgraded binary is tried anew.
    """
    try:
        st = os.stat(path)
    except OSError:
        return False
    if not os.access(path, os.X_OK):
        return False
    identity = f"{path}\n{st.st_ino} {st.st_size} {st.st_mtime_ns}\n"
    stamp = Path(state_root) / f".{os.path.basename(path)}-works" if state_root else None
    if stamp is not None:
        try:
            if stamp.read_text() == identity:
                return True
        except (OSError, UnicodeDecodeError):
            pass
    import subprocess

    try:
        ok = subprocess.run([path, "--version"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
    if ok and stamp is not None:
        try:
            stamp.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = stamp.with_name(stamp.name + f".{os.getpid()}")
            tmp.write_text(identity)
            os.replace(tmp, stamp)
        except OSError:
            pass  # a read-only state folder: the check runs each time
    return ok
