"""The per-container monitor: the small process that makes a container outlive ``portside run -d``.

Docker keeps a daemon (containerd + a shim per container) to hold each container's stdio and collect
its exit status. portside has no daemon; instead one monitor process runs per container, detached
from the caller (new session, double fork, reparented to init), which:

1. marks itself a *child subreaper* (``PR_SET_CHILD_SUBREAPER``): ``runc run --detach`` exits once
   the container runs, and its init process, orphaned, is re-parented to the monitor instead of
   pid 1, so the monitor can ``waitpid`` it and learn the exit status;
2. runs the container with pipes as stdio (or, with a tty, receives the pty master through
   ``--console-socket``), and tells the caller "started" (or the runtime's error) over a pipe;
3. copies stdout and stderr into the log (one JSON entry per line, see :mod:`.logs`) and to every
   client attached on its unix socket, and feeds stdin from the client;
4. when the init exits, writes the exit status atomically to ``exit_file`` and tells the caller,
   runs ``runtime delete``, and finally ``exec``s ``on_exit`` (e.g. the engine's ``--rm``
   cleanup) or exits.

A container on a user-mode network (a rootless container's default network) has its network
helper (slirp4netns or pasta) started by the monitor before the runtime and stopped by it after
the runtime's delete, so the helper lives exactly as long as the container (see
:mod:`portside.engine.network.usermode`).

Starting it is split in two so the interpreter's start-up overlaps the caller's own work:
:func:`launch_monitor` starts the process (``python3 -S -I -c BOOT portside-monitor ID``: no
site-packages, no portside imports, the code of :mod:`.monitor_process` loaded from its cached
bytecode) while the caller still creates the container and writes the bundle; :meth:`MonitorLaunch.go` then hands
it its configuration and waits for the container to start. The caller may keep the handle to learn
of the exit without polling (:meth:`MonitorLaunch.wait_exit`, :meth:`MonitorLaunch.wait_done`).
:func:`spawn_monitor` does both at once.

The monitor imports only modules built into the interpreter, which keeps its start fast and its
RSS near 8 MB (see :mod:`.monitor_process`). This module is the engine's side of it.

Attach protocol (unix stream socket). Monitor → client frames: ``struct ">BxxxI"`` header (kind,
length) then payload; kind 1 stdout, 2 stderr, 3 exit (payload is the exit JSON). Client → monitor:
same header; kind 0 stdin bytes, 1 close stdin, 2 resize (payload ``">HH"`` rows, cols).

Caller pipe protocol (monitor → caller, one JSON document per line): ``{"ok": true, "pid": P,
"init_pid": I}`` once the container runs, or ``{"error": MSG, "pid": P}`` when it could not start;
then ``{"exit_code": N, "oom_killed": B}`` when it exited; end of file once the runtime has
deleted it (and the monitor exits or becomes ``on_exit``).
"""

import os
import select
import sys
import time

from .monitor_process import (FRAME, IN_CLOSE, IN_RESIZE, IN_STDIN, MARKER, OUT_EXIT, OUT_STDERR,
                              READ_SIZE, split_frames)
from .monitor_process import dumps as _dumps
from .monitor_process import loads as _loads

# Imports the monitor's module from its cached bytecode (a script given by path would be
# compiled on every start: ~10 ms), then runs it (see monitor_process._main).
_BOOT = ("import sys; sys.path.insert(0, %r); import monitor_process; "
         "monitor_process._main(sys.argv)")


class MonitorLaunch:
    """A monitor process started ahead of its container (see :func:`launch_monitor`).

    Call :meth:`go` once the bundle is written, or :meth:`cancel` when the start is abandoned.
    After :meth:`go`, the handle can wait for the container's exit without polling; :meth:`close`
    it when done (the monitor carries on without it).
    """

    def __init__(self, container_id, state_dir):
        self.container_id = container_id
        self.pid = 0            # the monitor's pid, once it has said so
        self.init_pid = 0       # the container's init (host pid), once it runs
        self.exit = None        # the exit message, once it came
        self._buf = b""
        self._eof = False
        self._sent = False      # go() handed over the configuration
        self._cfg_w = self._sync_r = -1
        self._first = 0         # the process started here (it forks the monitor and exits)
        os.makedirs(str(state_dir), exist_ok=True)
        opened = []
        try:
            # Above 0-2 (a caller may have closed its stdio): the dup2s below must not hit them.
            cfg_r, cfg_w = (_above_stdio(fd, opened) for fd in os.pipe())
            sync_r, sync_w = (_above_stdio(fd, opened) for fd in os.pipe())
            mlog = _above_stdio(os.open(os.path.join(str(state_dir), "monitor.log"),
                                        os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                                        0o644), opened)
            null = _above_stdio(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), opened)
            import _signal as signal  # the constants, without the signal module's enums

            os.set_inheritable(cfg_r, True)
            os.set_inheritable(sync_w, True)
            here = os.path.dirname(os.path.abspath(__file__))
            argv = [sys.executable, "-S", "-I", "-c", _BOOT % here, MARKER, container_id,
                    str(cfg_r), str(sync_w), str(state_dir)]
            # posix_spawn, not subprocess: no Python-level fork work in a big engine process.
            # The monitor closes every other descriptor it may inherit first thing.
            self._first = os.posix_spawn(
                sys.executable, argv, os.environ,
                file_actions=[(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, mlog, 1),
                              (os.POSIX_SPAWN_DUP2, mlog, 2)],
                setsid=True, setsigdef=(signal.SIGINT, signal.SIGTERM, signal.SIGHUP,
                                        signal.SIGPIPE, signal.SIGCHLD))
        except BaseException:
            for fd in opened:
                os.close(fd)
            raise
        for fd in (cfg_r, sync_w, mlog, null):
            os.close(fd)
        self._cfg_w, self._sync_r = cfg_w, sync_r

    def __del__(self):
        # A handle dropped without go() or cancel(): the monitor sees the end of its
        # configuration pipe and exits instead of waiting for ever.
        try:
            self.close()
        except (OSError, AttributeError):
            pass

    def fileno(self):
        """The pipe the monitor reports on: readable when a message or the end arrives."""
        return self._sync_r

    def _reap_first(self):
        if self._first:
            try:
                os.waitpid(self._first, 0)
            except ChildProcessError:
                pass
            self._first = 0

    def _line(self, timeout):
        """The next message (a dict), None at the end, or TimeoutError after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buf:
            if self._eof or self._sync_r < 0:
                return None
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._sync_r], [], [], left)
            if not ready:
                raise TimeoutError("monitor did not answer")
            chunk = os.read(self._sync_r, 65536)
            if not chunk:
                self._eof = True
                if self._buf:  # a message without its newline: the monitor died writing it
                    self._buf = b""
                return None
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        try:
            return _loads(line.decode())
        except ValueError:
            return {}

    def go(self, *, runtime_path, runtime_root, bundle, state_dir, log_path, tty: bool,
           stdin_open: bool, attach_socket, exit_file, on_exit=None, watch_lock=None,
           cgroup_path=None, forget_by_removal: bool = False, net_helper=None,
           runtime_options=(), seccomp_cache=None, timeout: float = 60.0) -> int:
        """Hand the monitor its configuration and return its pid once the container started.

        ``forget_by_removal``: once the container stopped, the monitor removes its runtime state
        folder instead of running the runtime's ``delete`` (only right without a cgroup and
        without hooks, which ``delete`` would act on: rootless without delegation).
        ``seccomp_cache``: where to keep the seccomp program crun compiled for this start
        (see :mod:`.seccomp_cache`), or None.

        The arguments are :func:`spawn_monitor`'s. The handle stays open (see :meth:`wait_exit`)
        until :meth:`close`.

        Raises:
            CommandNotFound, CannotInvoke: the command is missing (127) or not executable (126).
            RuntimeFailure: the runtime could not create or start the container.
        """
        from portside.engine.errors import RuntimeFailure

        if len(os.fsencode(str(attach_socket))) >= 108:
            self.cancel()
            raise RuntimeFailure(f"attach socket path too long: {attach_socket}")
        config = {
            "runtime": str(runtime_path), "root": str(runtime_root), "id": self.container_id,
            "options": [str(o) for o in runtime_options],
            "seccomp_cache": str(seccomp_cache) if seccomp_cache else None,
            "bundle": str(bundle), "state_dir": str(state_dir), "log": str(log_path),
            "tty": bool(tty), "stdin": bool(stdin_open), "attach": str(attach_socket),
            "exit_file": str(exit_file), "on_exit": [str(a) for a in on_exit or []],
            "watch_lock": str(watch_lock) if watch_lock else None,
            "cgroup": str(cgroup_path) if cgroup_path else None,
            "forget_by_removal": bool(forget_by_removal),
            "net_helper": net_helper,
        }
        data = _dumps(config).encode()
        self._sent = True
        try:
            while data:
                data = data[os.write(self._cfg_w, data):]
        except BrokenPipeError:
            pass  # it died before reading: reported below as "exited before the start"
        finally:
            os.close(self._cfg_w)
            self._cfg_w = -1
        try:
            reply = self._line(timeout)
        except TimeoutError:
            self.close()
            raise RuntimeFailure(f"container {self.container_id} did not start in "
                                 f"{timeout:.0f}s") from None
        finally:
            self._reap_first()
        reply = reply or {}
        if reply.get("ok"):
            self.pid = int(reply["pid"])
            self.init_pid = int(reply.get("init_pid") or 0)
            return self.pid
        try:
            self._line(10.0)  # the end: the monitor has cleaned up and is exiting
        except TimeoutError:
            pass
        if reply.get("pid"):
            from portside.engine.process import wait_gone

            wait_gone(int(reply["pid"]))  # so a failed start leaves no process behind
        self.close()
        from portside.engine.runtime.oci import classify_error

        message = reply.get("error") or "monitor exited before the container started"
        raise classify_error(message, self.container_id)

    def wait_exit(self, timeout=None):
        """Block until the container exited; returns the exit message (``exit_code``,
        ``oom_killed``), or None when the monitor ended without one (it was killed).

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
        """
        while self.exit is None:
            msg = self._line(timeout)
            if msg is None:
                return None
            if "exit_code" in msg:
                self.exit = msg
        return self.exit

    def wait_done(self, timeout=None) -> bool:
        """Block until the monitor is done (the runtime has deleted the container); False when
        ``timeout`` seconds passed first."""
        try:
            while self._line(timeout) is not None:
                pass
        except TimeoutError:
            return False
        return True

    def cancel(self):
        """Abandon a launch: before :meth:`go`, the monitor exits without starting anything
        (waited for here); after it (``go`` was interrupted), only the handle is closed: the
        caller's clean-up deletes the container, and the monitor then ends by itself."""
        if not self._sent:
            if self._cfg_w >= 0:
                os.close(self._cfg_w)
                self._cfg_w = -1
            try:
                self._line(10.0)  # end of file once the monitor has exited
            except TimeoutError:
                pass
        self._reap_first()
        self.close()

    def close(self):
        """Stop listening to the monitor (it carries on)."""
        if self._cfg_w >= 0:
            os.close(self._cfg_w)
            self._cfg_w = -1
        if self._sync_r >= 0:
            os.close(self._sync_r)
            self._sync_r = -1
        self._reap_first()


def _above_stdio(fd: int, opened: list) -> int:
    """``fd``, moved above 0-2 if it is one of them (close-on-exec); noted in ``opened``."""
    if fd < 3:
        import fcntl

        try:
            moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
        finally:
            os.close(fd)
        fd = moved
    opened.append(fd)
    return fd


def launch_monitor(container_id: str, state_dir) -> MonitorLaunch:
    """Start the monitor process of a container before its bundle is ready.

    Args:
        container_id: the runtime id of the container (it names the process, for
            :func:`~portside.engine.process.process_alive`).
        state_dir: the monitor's folder (made here); its ``monitor.log`` gets the monitor's own
            errors.

    Returns:
        the handle; call :meth:`MonitorLaunch.go` or :meth:`MonitorLaunch.cancel`.
    """
    return MonitorLaunch(container_id, state_dir)


def spawn_monitor(*, runtime_path: str, runtime_root, container_id: str, bundle, state_dir,
                  log_path, tty: bool, stdin_open: bool, attach_socket, exit_file,
                  on_exit=None, watch_lock=None, cgroup_path=None, net_helper=None,
                  runtime_options=(), timeout: float = 60.0) -> int:
    """Start the monitor of one container and return its pid once the container has started.

    Args:
        runtime_path: the runc/crun binary.
        runtime_root: the runtime's ``--root``.
        runtime_options: global options before ``--root`` on every runtime call.
        container_id: the runtime id of the container.
        bundle: the OCI bundle (``config.json`` + rootfs); ``process.terminal`` must match ``tty``.
        state_dir: a directory for the monitor's files (pid file, console socket, runtime log).
        log_path: the container's JSON log file (appended to).
        tty: the container has a terminal: its output is one stream, read from a pty.
        stdin_open: keep a stdin pipe open for attach clients (``-i``); otherwise stdin is /dev/null.
        attach_socket: the unix socket path clients attach to (under 108 bytes).
        exit_file: where the exit status JSON is written when the container exits.
        on_exit: argv run (exec'd) by the monitor after the container is gone, e.g. ``--rm``.
        watch_lock: a file; while some process holds an flock on it, the monitor skips
            ``on_exit`` (a foreground ``run`` that cleans up itself).
        cgroup_path: the spec's ``linux.cgroupsPath``, where the monitor looks for an OOM kill
            (read from the bundle when not given).
        net_helper: the user-mode network helper to start before the container and stop after
            it (:func:`portside.engine.network.usermode.attach`'s result), or None.
        timeout: seconds to wait for the container to start.

    Returns:
        the monitor's pid.

    Raises:
        CommandNotFound, CannotInvoke: the command is missing (127) or not executable (126).
        RuntimeFailure: the runtime could not create or start the container.
    """
    launch = launch_monitor(container_id, state_dir)
    try:
        return launch.go(runtime_path=runtime_path, runtime_root=runtime_root, bundle=bundle,
                         state_dir=state_dir, log_path=log_path, tty=tty, stdin_open=stdin_open,
                         attach_socket=attach_socket, exit_file=exit_file, on_exit=on_exit,
                         watch_lock=watch_lock, cgroup_path=cgroup_path,
                         net_helper=net_helper, runtime_options=runtime_options,
                         timeout=timeout)
    finally:
        launch.close()


def attach(attach_socket, stdin, stdout, stderr, *, detach_keys: bytes = b"\x10\x11",
           resize=None):
    """Attach to a running container's monitor: stream output out and stdin in.

    Args:
        attach_socket: the monitor's unix socket.
        stdin: a binary file (or fd) to read input from, or None for no input.
        stdout, stderr: binary files the container's streams are written to.
        detach_keys: typing this sequence detaches instead of being sent (default ctrl-p ctrl-q).
        resize: optional ``(rows, cols)`` to set the container's terminal size first.

    Returns:
        the container's exit status (int) when it exited while attached, or None after detaching
        (or when the monitor went away).

    Raises:
        NotFound: nobody listens on the socket (the container is not running).
    """
    import _socket
    import _struct

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(str(attach_socket))
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        from portside.engine.errors import NotFound
        raise NotFound(f"container is not running: {attach_socket}") from exc
    in_fd = None
    if stdin is not None:
        in_fd = stdin if isinstance(stdin, int) else stdin.fileno()
    if resize:
        payload = _struct.pack(">HH", *resize)
        sock.sendall(FRAME.pack(IN_RESIZE, len(payload)) + payload)
    buf = b""
    matched = 0  # how many bytes of detach_keys the input has matched so far
    try:
        while True:
            fds = [sock] + ([in_fd] if in_fd is not None else [])
            ready, _, _ = select.select(fds, [], [])
            if in_fd is not None and in_fd in ready:
                data = os.read(in_fd, READ_SIZE)
                if not data:
                    sock.sendall(FRAME.pack(IN_CLOSE, 0))
                    in_fd = None
                else:
                    send = bytearray()
                    for byte in data:
                        if detach_keys and byte == detach_keys[matched]:
                            matched += 1
                            if matched == len(detach_keys):
                                if send:
                                    sock.sendall(FRAME.pack(IN_STDIN, len(send)) + bytes(send))
                                return None
                            continue
                        if matched:  # a false start: the held-back keys were real input
                            send += detach_keys[:matched]
                            matched = 0
                        send.append(byte)
                    if send:
                        sock.sendall(FRAME.pack(IN_STDIN, len(send)) + bytes(send))
            if sock in ready:
                chunk = sock.recv(READ_SIZE)
                if not chunk:
                    return None
                frames, buf = split_frames(buf + chunk)
                for kind, payload in frames:
                    if kind == OUT_EXIT:
                        return int(_loads(payload.decode()).get("exit_code", 0))
                    target = stderr if kind == OUT_STDERR else stdout
                    if target is not None:
                        target.write(payload)
                        target.flush()
    finally:
        sock.close()


def read_exit(exit_file):
    """The exit record the monitor wrote (``exit_code``, ``finished_at``, ``oom_killed``), or None."""
    try:
        with open(str(exit_file)) as f:
            return _loads(f.read())
    except FileNotFoundError:
        return None
