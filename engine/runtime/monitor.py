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

Starting it is split in two so the interpreter's start-up overlaps the caller's own work:
:func:`launch_monitor` starts the process (``python3 -S -I -c BOOT portside-monitor ID``: no
site-packages, no portside imports, the code loaded from this file's cached bytecode) while the
caller still mounts the root filesystem and writes the bundle; :meth:`MonitorLaunch.go` then hands
it its configuration and waits for the container to start. The caller may keep the handle to learn
of the exit without polling (:meth:`MonitorLaunch.wait_exit`, :meth:`MonitorLaunch.wait_done`).
:func:`spawn_monitor` does both at once.

The monitor imports only modules built into the interpreter (``_json``, ``_socket``, ``_signal``,
``_struct``, ``select``; ``_ctypes`` for prctl), which keeps its start fast and its RSS near 10 MB.

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

import _signal
import _socket
import _struct

try:
    from _json import encode_basestring_ascii as _quote
    from _json import make_scanner as _make_scanner
except ImportError:  # an interpreter without json's C accelerator
    _make_scanner = None
    from json.encoder import encode_basestring_ascii as _quote

FRAME = _struct.Struct(">BxxxI")
OUT_STDOUT, OUT_STDERR, OUT_EXIT = 1, 2, 3
IN_STDIN, IN_CLOSE, IN_RESIZE = 0, 1, 2
#: A line longer than this is logged in pieces (partial entries), as Docker's json-file does.
MAX_LINE = 16 * 1024
READ_SIZE = 64 * 1024
#: At most this much output is kept for the first attach client (see _Monitor.early).
EARLY_LIMIT = 1 << 20
PR_SET_CHILD_SUBREAPER = 36
#: The word in the monitor's command line that names it for ps and for leak checks in tests.
MARKER = "portside-monitor"

# Imports this module from its cached bytecode (a script given by path would be compiled on every
# start: ~10 ms), then runs the monitor (see _main).
_BOOT = "import sys; sys.path.insert(0, %r); import monitor; monitor._main(sys.argv)"


# =============================================================================================
# JSON without the json package (which imports re, enum and more: ~15 ms of start-up)


class _JSONContext:
    """The settings json's C scanner reads from a decoder: plain types, strict strings."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float
    memo = {}


if _make_scanner is not None:
    _scan = _make_scanner(_JSONContext())

    def _loads(text):
        """Decode one compact JSON document (ValueError when it is not one)."""
        text = text.strip()
        try:
            value, end = _scan(text, 0)
        except StopIteration:
            raise ValueError("not a JSON document") from None
        if end != len(text):
            raise ValueError("extra data after the JSON document")
        return value
else:
    from json import loads as _loads


def _dumps(value):
    """Encode str, int, float, bool, None, lists and dicts of them (json.dumps's output)."""
    if isinstance(value, str):
        return _quote(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(_quote(str(k)) + ": " + _dumps(v) for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_dumps(v) for v in value) + "]"
    raise TypeError("cannot encode %s as JSON" % type(value).__name__)


# =============================================================================================
# caller side (runs inside the engine; may import portside lazily)


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
        os.makedirs(str(state_dir), exist_ok=True)
        cfg_r, self._cfg_w = os.pipe()
        self._sync_r, sync_w = os.pipe()
        mlog = os.open(os.path.join(str(state_dir), "monitor.log"),
                       os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.set_inheritable(cfg_r, True)
            os.set_inheritable(sync_w, True)
            here = os.path.dirname(os.path.abspath(__file__))
            argv = [sys.executable, "-S", "-I", "-c", _BOOT % here, MARKER, container_id,
                    str(cfg_r), str(sync_w)]
            # posix_spawn, not subprocess: no Python-level fork work in a big engine process.
            # The monitor closes every other descriptor it may inherit first thing.
            self._first = os.posix_spawn(
                sys.executable, argv, os.environ,
                file_actions=[(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, mlog, 1),
                              (os.POSIX_SPAWN_DUP2, mlog, 2)],
                setsid=True, setsigdef=(_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP,
                                        _signal.SIGPIPE, _signal.SIGCHLD))
        except BaseException:
            os.close(self._cfg_w)
            os.close(self._sync_r)
            raise
        finally:
            for fd in (cfg_r, sync_w, mlog, null):
                os.close(fd)

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
           cgroup_path=None, timeout: float = 60.0) -> int:
        """Hand the monitor its configuration and return its pid once the container started.

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
            "bundle": str(bundle), "state_dir": str(state_dir), "log": str(log_path),
            "tty": bool(tty), "stdin": bool(stdin_open), "attach": str(attach_socket),
            "exit_file": str(exit_file), "on_exit": [str(a) for a in on_exit or []],
            "watch_lock": str(watch_lock) if watch_lock else None,
            "cgroup": str(cgroup_path) if cgroup_path else None,
        }
        data = _dumps(config).encode()
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
            _wait_gone(int(reply["pid"]))  # so a failed start leaves no process behind
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
        """Abandon a launch before :meth:`go`: the monitor exits without starting anything."""
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


def launch_monitor(container_id: str, state_dir) -> MonitorLaunch:
    """Start the monitor process of a container before its bundle is ready.

    Args:
        container_id: the runtime id of the container (it names the process, for
            :func:`~.lifecycle.process_alive`).
        state_dir: the monitor's folder (made here); its ``monitor.log`` gets the monitor's own
            errors.

    Returns:
        the handle; call :meth:`MonitorLaunch.go` or :meth:`MonitorLaunch.cancel`.
    """
    return MonitorLaunch(container_id, state_dir)


def spawn_monitor(*, runtime_path: str, runtime_root, container_id: str, bundle, state_dir,
                  log_path, tty: bool, stdin_open: bool, attach_socket, exit_file,
                  on_exit=None, watch_lock=None, cgroup_path=None, timeout: float = 60.0) -> int:
    """Start the monitor of one container and return its pid once the container has started.

    Args:
        runtime_path: the runc/crun binary.
        runtime_root: the runtime's ``--root``.
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
                         watch_lock=watch_lock, cgroup_path=cgroup_path, timeout=timeout)
    finally:
        launch.close()


def _wait_gone(pid, timeout=5.0):
    """Wait until ``pid`` (not our child) has exited: gone from /proc or a zombie."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/stat" % pid) as f:
                if f.read().rpartition(")")[2].split()[0] == "Z":
                    return
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return
        time.sleep(0.005)


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
                buf += chunk
                while len(buf) >= FRAME.size:
                    kind, length = FRAME.unpack_from(buf)
                    if len(buf) < FRAME.size + length:
                        break
                    payload = buf[FRAME.size:FRAME.size + length]
                    buf = buf[FRAME.size + length:]
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


# =============================================================================================
# monitor side (runs as `python3 -S -I -c BOOT portside-monitor ID CFG_FD SYNC_FD`; builtins only)


def _rfc3339(ns):
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + ".%09dZ" % frac


def _set_subreaper():
    """``prctl(PR_SET_CHILD_SUBREAPER, 1)`` through ``_ctypes`` (the ctypes package costs ms)."""
    import _ctypes

    class _Int(_ctypes._SimpleCData):
        _type_ = "i"

    class _Func(_ctypes.CFuncPtr):
        _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
        _restype_ = _Int

    class _Libc:
        _handle = _ctypes.dlopen(None)

    if _Func(("prctl", _Libc))(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(_ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def _new_socket(fd=None):
    if fd is None:
        return _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    return _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fd)


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class _Monitor:
    def __init__(self, cfg, sync_fd):
        self.cfg = cfg
        self.sync_fd = sync_fd   # to the caller; closed once the runtime has deleted the container
        self.statuses = {}       # pid -> wait status of reaped children
        self.clients = []        # attached sockets
        # Output framed before the first client attached, replayed to it: `run -t` attaches
        # just after the start, and a fast container would otherwise print into the void.
        self.early = []
        self.early_size = 0
        self.attached_once = False
        self.client_bufs = {}
        self.partial = {OUT_STDOUT: b"", OUT_STDERR: b""}
        self.log_fd = -1
        self.stdin_w = -1

    # ---- children -----------------------------------------------------------------------

    def reap(self, block_for=None):
        """Collect exited children; with ``block_for``, wait until that pid has exited."""
        while True:
            if block_for is not None and block_for in self.statuses:
                return self.statuses[block_for]
            try:
                pid, status = os.waitpid(-1, 0 if block_for is not None else os.WNOHANG)
            except ChildProcessError:
                return self.statuses.get(block_for) if block_for is not None else None
            except InterruptedError:
                continue
            if pid == 0:
                return None
            self.statuses[pid] = status

    def spawn(self, argv, stdio=(None, None, None)):
        """Start ``argv`` with ``stdio`` (fds; None: /dev/null) and default signal handling.
        Every other descriptor of the monitor is close-on-exec, so none leaks into it."""
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            return os.posix_spawn(
                argv[0], argv, os.environ,
                file_actions=[(os.POSIX_SPAWN_DUP2, null if fd is None else fd, target)
                              for target, fd in enumerate(stdio)],
                setsigdef=(_signal.SIGCHLD, _signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP,
                           _signal.SIGPIPE))
        finally:
            os.close(null)

    def runtime(self, *args):
        c = self.cfg
        return [c["runtime"], "--root", c["root"], *args]

    def run(self, argv, stdio=(None, None, None)):
        status = self.reap(block_for=self.spawn(argv, stdio))
        return os.waitstatus_to_exitcode(status)

    def notify(self, message):
        """One line to the caller; it may have gone (a detached start)."""
        if self.sync_fd < 0:
            return
        try:
            os.write(self.sync_fd, (_dumps(message) + "\n").encode())
        except OSError:
            pass

    # ---- output -------------------------------------------------------------------------

    def log(self, kind, data, final=False):
        """Write complete lines of ``data`` to the log; keep an unfinished line unless final."""
        ns = time.time_ns()
        stamp = _rfc3339(ns)
        stream = "stderr" if kind == OUT_STDERR else "stdout"
        data = self.partial[kind] + data
        out = []
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                break
            while nl + 1 - start > MAX_LINE:
                out.append((data[start:start + MAX_LINE]))
                start += MAX_LINE
            out.append(data[start:nl + 1])
            start = nl + 1
        rest = data[start:]
        while len(rest) > MAX_LINE:
            out.append(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        if final and rest:
            out.append(rest)
            rest = b""
        self.partial[kind] = rest
        if not out:
            return
        # Hand-assembled (same bytes as json.dumps of the dict): the C string escaper alone is
        # several times faster than building and dumping a dict per line.
        tail = ',"stream":"%s","time":"%s"}\n' % (stream, stamp)
        blob = "".join(['{"log":' + _quote(piece.decode("utf-8", "surrogateescape")) + tail
                        for piece in out]).encode("ascii")
        while blob:
            n = os.write(self.log_fd, blob)
            blob = blob[n:]

    def broadcast(self, kind, payload):
        frame = FRAME.pack(kind, len(payload)) + payload
        if not self.attached_once and kind != OUT_EXIT and self.early_size < EARLY_LIMIT:
            self.early.append(frame)
            self.early_size += len(frame)
        for client in list(self.clients):
            try:
                client.sendall(frame)
            except OSError:
                self.drop(client)

    def drop(self, client):
        if client in self.clients:
            self.clients.remove(client)
        self.client_bufs.pop(client, None)
        client.close()

    def client_input(self, client):
        try:
            chunk = client.recv(READ_SIZE)
        except OSError:
            chunk = b""
        if not chunk:
            self.drop(client)
            return
        buf = self.client_bufs.get(client, b"") + chunk
        while len(buf) >= FRAME.size:
            kind, length = FRAME.unpack_from(buf)
            if len(buf) < FRAME.size + length:
                break
            payload = buf[FRAME.size:FRAME.size + length]
            buf = buf[FRAME.size + length:]
            if kind == IN_STDIN and self.stdin_w >= 0:
                try:
                    while payload:
                        payload = payload[os.write(self.stdin_w, payload):]
                except OSError:
                    self.close_stdin()
            elif kind == IN_CLOSE:
                self.close_stdin()
            elif kind == IN_RESIZE and self.cfg["tty"] and self.stdin_w >= 0:
                import fcntl
                import termios
                rows, cols = _struct.unpack(">HH", payload[:4])
                fcntl.ioctl(self.stdin_w, termios.TIOCSWINSZ,
                            _struct.pack("HHHH", rows, cols, 0, 0))
        self.client_bufs[client] = buf

    def close_stdin(self):
        # With a tty stdin and stdout are the same master fd: closing it would lose the output.
        if self.stdin_w >= 0 and not self.cfg["tty"]:
            os.close(self.stdin_w)
            self.stdin_w = -1

    # ---- lifecycle ----------------------------------------------------------------------

    def fail(self, message):
        low = message.lower()
        code = 125
        if "exec:" in low and ("not found" in low or "no such file" in low):
            code = 127  # Docker's "command not found"
        elif "exec:" in low and ("permission denied" in low or "exec format" in low):
            code = 126  # Docker's "cannot invoke"
        self.write_exit(code, error=message)
        self.run(self.runtime("delete", "--force", self.cfg["id"]))
        self.notify({"error": message, "pid": os.getpid()})
        os._exit(1)

    def write_exit(self, code, error="", oom=False):
        path = self.cfg["exit_file"]
        tmp = path + ".tmp"
        ns = time.time_ns()
        doc = _dumps({"exit_code": code, "finished_at": _rfc3339(ns), "finished_at_ns": ns,
                      "oom_killed": oom, "error": error})
        with open(tmp, "w") as f:
            f.write(doc)
        os.replace(tmp, path)

    def runtime_error(self, log_path):
        message = ""
        try:
            with open(log_path) as f:
                for line in f:
                    try:
                        doc = _loads(line)
                    except ValueError:
                        continue
                    if isinstance(doc, dict) and doc.get("level") in ("error", "fatal"):
                        message = doc.get("msg", "")
        except OSError:
            pass
        return message

    def oom_killed(self):
        """Whether the kernel OOM-killed a process of the container's cgroup (cheap file reads)."""
        cg = self.cfg.get("cgroup")
        if not cg:
            try:
                with open(os.path.join(self.cfg["bundle"], "config.json")) as f:
                    cg = _loads(f.read()).get("linux", {}).get("cgroupsPath", "")
            except (OSError, ValueError, AttributeError):
                return False
        if not cg.startswith("/"):
            return False
        for path, key in (("/sys/fs/cgroup/memory" + cg + "/memory.oom_control", "oom_kill"),
                          ("/sys/fs/cgroup" + cg + "/memory.events", "oom_kill")):
            try:
                with open(path) as f:
                    for line in f:
                        name, _, value = line.partition(" ")
                        if name == key and int(value) > 0:
                            return True
            except (OSError, ValueError):
                continue
        return False

    def main(self):
        c = self.cfg
        _set_subreaper()

        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        _signal.set_wakeup_fd(wake_w)
        _signal.signal(_signal.SIGCHLD, lambda *_: None)
        for s in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
            _signal.signal(s, _signal.SIG_IGN)

        self.log_fd = os.open(c["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        pid_file = os.path.join(c["state_dir"], "init.pid")
        rt_log = os.path.join(c["state_dir"], "runtime.log")
        for stale in (pid_file, rt_log):
            _unlink(stale)
        # `run --detach` is create and start in one runtime process (one Go start-up less).
        run = ["--log", rt_log, "--log-format", "json", "run", "--detach", "--bundle",
               c["bundle"], "--pid-file", pid_file]
        # Listen before the container runs: a client may attach as soon as we report.
        _unlink(c["attach"])
        listener = _new_socket()
        listener.bind(c["attach"])
        listener.listen(8)
        outputs = {}  # fd -> stream kind
        if c["tty"]:
            csock_path = os.path.join(c["state_dir"], "console.sock")
            _unlink(csock_path)
            csock = _new_socket()
            csock.bind(csock_path)
            csock.listen(1)
            pid = self.spawn(self.runtime(*run, "--console-socket", csock_path, c["id"]))
            master = -1
            while master < 0 and pid not in self.statuses:
                ready, _, _ = select.select([csock, wake_r], [], [], 1.0)
                if csock in ready:
                    master = _receive_fd(csock)
                if wake_r in ready:
                    _drain(wake_r)
                self.reap()
            csock.close()
            _unlink(csock_path)
            code = os.waitstatus_to_exitcode(self.reap(block_for=pid))
            if code != 0 or master < 0:
                listener.close()
                _unlink(c["attach"])
                self.fail(self.runtime_error(rt_log) or "runtime start failed")
            os.set_inheritable(master, False)
            self.stdin_w = master
            outputs[master] = OUT_STDOUT
        else:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            if c["stdin"]:
                in_r, self.stdin_w = os.pipe()
            else:
                in_r = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            code = self.run(self.runtime(*run, c["id"]), (in_r, out_w, err_w))
            for fd in (in_r, out_w, err_w):
                os.close(fd)
            if code != 0:
                listener.close()
                _unlink(c["attach"])
                self.fail(self.runtime_error(rt_log) or "runtime start failed")
            outputs[out_r] = OUT_STDOUT
            outputs[err_r] = OUT_STDERR
        with open(pid_file) as f:
            init_pid = int(f.read().strip())
        self.notify({"ok": True, "pid": os.getpid(), "init_pid": init_pid})

        # ---- copy loop ----
        exit_deadline = None
        while outputs or init_pid not in self.statuses:
            if init_pid in self.statuses and exit_deadline is None:
                # Init is gone, so the pid namespace is gone; give the pipes a moment to drain.
                exit_deadline = time.monotonic() + 2.0
            if exit_deadline is not None and time.monotonic() > exit_deadline:
                break
            rlist = [*outputs, wake_r, listener, *self.clients]
            try:
                ready, _, _ = select.select(rlist, [], [], 0.5)
            except InterruptedError:
                continue
            for r in ready:
                if r is wake_r:
                    _drain(wake_r)
                elif r is listener:
                    client = _new_socket(listener._accept()[0])
                    client.settimeout(5.0)  # a stuck client is dropped, not the container
                    self.clients.append(client)
                    if not self.attached_once:
                        self.attached_once = True
                        early, self.early = self.early, []
                        try:
                            client.sendall(b"".join(early))
                        except OSError:
                            self.drop(client)
                elif r in outputs:
                    try:
                        data = os.read(r, READ_SIZE)
                    except OSError:  # EIO: the pty's other side is closed
                        data = b""
                    kind = outputs[r]
                    if not data:
                        self.log(kind, b"", final=True)
                        del outputs[r]
                        if r != self.stdin_w:
                            os.close(r)
                        continue
                    self.log(kind, data)
                    self.broadcast(kind, data)
                else:
                    self.client_input(r)
            self.reap()
        for kind in (OUT_STDOUT, OUT_STDERR):
            self.log(kind, b"", final=True)

        status = self.reap(block_for=init_pid)
        exit_code = os.waitstatus_to_exitcode(status) if status is not None else 255
        if exit_code < 0:
            exit_code = 128 - exit_code  # killed by signal N: 128+N, like a shell
        oom = self.oom_killed()
        self.write_exit(exit_code, oom=oom)
        exit_doc = {"exit_code": exit_code, "oom_killed": oom}
        self.notify(exit_doc)
        listener.close()
        _unlink(c["attach"])
        self.broadcast(OUT_EXIT, _dumps(exit_doc).encode())
        for client in list(self.clients):
            self.drop(client)
        os.close(self.log_fd)
        self.run(self.runtime("delete", "--force", c["id"]))
        if self.sync_fd >= 0:
            os.close(self.sync_fd)  # the caller's "done": the runtime has forgotten it
            self.sync_fd = -1
        if c["on_exit"] and not _watched(c.get("watch_lock")):
            _signal.set_wakeup_fd(-1)
            for s in (_signal.SIGCHLD, _signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
                _signal.signal(s, _signal.SIG_DFL)
            try:
                os.execvp(c["on_exit"][0], c["on_exit"])
            except OSError as exc:
                print("on_exit failed:", exc, file=sys.stderr)
                sys.exit(1)


def _receive_fd(csock):
    """Accept the runtime's connection on the console socket and return the fd it sends."""
    conn = _new_socket(csock._accept()[0])
    try:
        _msg, ancdata, _flags, _addr = conn.recvmsg(4096, _socket.CMSG_SPACE(4))
    finally:
        conn.close()
    for level, kind, data in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS and len(data) >= 4:
            return _struct.unpack("i", data[:4])[0]
    return -1


def _watched(path):
    """Whether a foreground caller still holds the watch lock: it cleans up after the container
    itself, so the monitor's cleanup process is not needed. A caller that died released it."""
    if not path:
        return False
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _drain(fd):
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _main(argv):
    """The monitor process: ``argv`` is ``[-c, portside-monitor, ID, CFG_FD, SYNC_FD]``."""
    # Second fork: the process the caller started exits now; the monitor is reparented to init
    # (or a subreaper above the caller) and, not being a session leader, never gets a terminal.
    if os.fork() > 0:
        os._exit(0)
    cfg_fd, sync_fd = int(argv[3]), int(argv[4])
    # Nothing the caller happened to leave inheritable may stay open here for the container's
    # lifetime (it could hold a pipe open that somebody reads to the end).
    low, high = sorted((cfg_fd, sync_fd))
    os.closerange(3, low)
    os.closerange(low + 1, high)
    os.closerange(high + 1, 1 << 20)
    os.set_inheritable(sync_fd, False)
    data = b""
    while True:
        chunk = os.read(cfg_fd, 65536)
        if not chunk:
            break
        data += chunk
    os.close(cfg_fd)
    if not data:
        os._exit(0)  # the caller gave up before the start
    os.chdir("/")
    os.umask(0o022)
    _Monitor(_loads(data.decode()), sync_fd).main()
    os._exit(0)  # nothing is buffered; skip the interpreter's shutdown
