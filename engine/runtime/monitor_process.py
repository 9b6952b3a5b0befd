"""The monitor process itself (see :mod:`.monitor` for what it does and how it is started).

It runs as ``python3 -S -I -c BOOT portside-monitor ID CFG_FD SYNC_FD``, outside the engine, and
imports only modules built into the interpreter: ``posix`` rather than ``os`` (whose import
costs milliseconds: ``_collections_abc``, ``posixpath``), ``_json``, ``_struct``, ``_signal``;
``_socket``, ``select`` and ``_ctypes`` are imported once the runtime runs, where they cost
nothing. That keeps its start fast (it is on the critical path of every ``run``) and its RSS
near 8 MB.

:mod:`.monitor` (the engine's side) shares its protocol constants and JSON helpers from here; so
this module must import as ``portside.engine.runtime.monitor_process`` as well as top-level
``monitor_process``: no relative imports.
"""

import posix
import sys
import time

import _signal
import _struct

TYPE_CHECKING = False  # annotations only: the monitor imports nothing it does not run
if TYPE_CHECKING:
    from typing import Any, Callable

_make_scanner: "Any"
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
DEVNULL = "/dev/null"


def split_frames(buf):
    """The complete frames at the start of ``buf`` as (kind, payload) pairs, and what is left
    of ``buf`` (a frame still arriving). Both ends of the attach socket read with it."""
    frames = []
    while len(buf) >= FRAME.size:
        kind, length = FRAME.unpack_from(buf)
        if len(buf) < FRAME.size + length:
            break
        frames.append((kind, buf[FRAME.size:FRAME.size + length]))
        buf = buf[FRAME.size + length:]
    return frames, buf


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
    memo: dict = {}


loads: "Callable[[Any], Any]"
if _make_scanner is not None:
    _scan = _make_scanner(_JSONContext())

    def loads(text):
        """Decode one JSON document (ValueError when it is not one)."""
        text = text.strip()
        try:
            value, end = _scan(text, 0)
        except StopIteration:
            raise ValueError("not a JSON document") from None
        if end != len(text):
            raise ValueError("extra data after the JSON document")
        return value
else:
    from json import loads  # type: ignore[assignment]


def dumps(value):
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
        return "{" + ", ".join(_quote(str(k)) + ": " + dumps(v) for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(dumps(v) for v in value) + "]"
    raise TypeError("cannot encode %s as JSON" % type(value).__name__)


# =============================================================================================
# the monitor


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
    import _socket

    if fd is None:
        return _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    return _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fd)


def _unlink(path):
    try:
        posix.unlink(path)
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
        self.helper_pid = 0      # the network helper (see start_net_helper)
        self.helper_exit = -1    # our end of slirp4netns's --exit-fd pipe
        self.helper_dying = 0    # killed, not reaped yet

    # ---- children -----------------------------------------------------------------------

    def reap(self, block_for=None):
        """Collect exited children; with ``block_for``, wait until that pid has exited."""
        while True:
            if block_for is not None and block_for in self.statuses:
                return self.statuses[block_for]
            try:
                pid, status = posix.waitpid(-1, 0 if block_for is not None else posix.WNOHANG)
            except ChildProcessError:
                return self.statuses.get(block_for) if block_for is not None else None
            except InterruptedError:
                continue
            if pid == 0:
                return None
            self.statuses[pid] = status

    def spawn(self, argv, stdio=(None, None, None), extra=None):
        """Start ``argv`` with ``stdio`` (fds; None: /dev/null) and default signal handling.
        Every other descriptor of the monitor is close-on-exec, so none leaks into it, except
        ``extra`` ({number in the child: fd here}; the fds here must be above every number)."""
        null = posix.open(DEVNULL, posix.O_RDWR | posix.O_CLOEXEC)
        try:
            return posix.posix_spawn(
                argv[0], argv, posix.environ,
                file_actions=[(posix.POSIX_SPAWN_DUP2, null if fd is None else fd, target)
                              for target, fd in [*enumerate(stdio), *(extra or {}).items()]],
                setsigdef=(_signal.SIGCHLD, _signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP,
                           _signal.SIGPIPE))
        finally:
            posix.close(null)

    def runtime(self, *args):
        c = self.cfg
        return [c["runtime"], *c.get("options", ()), "--root", c["root"], *args]

    def run(self, argv, stdio=(None, None, None)):
        status = self.reap(block_for=self.spawn(argv, stdio))
        return posix.waitstatus_to_exitcode(status)

    def notify(self, message):
        """One line to the caller; it may have gone (a detached start)."""
        if self.sync_fd < 0:
            return
        try:
            posix.write(self.sync_fd, (dumps(message) + "\n").encode())
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
            n = posix.write(self.log_fd, blob)
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
        frames, self.client_bufs[client] = split_frames(self.client_bufs.get(client, b"") + chunk)
        for kind, payload in frames:
            if kind == IN_STDIN and self.stdin_w >= 0:
                try:
                    while payload:
                        payload = payload[posix.write(self.stdin_w, payload):]
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

    def close_stdin(self):
        # With a tty stdin and stdout are the same master fd: closing it would lose the output.
        if self.stdin_w >= 0 and not self.cfg["tty"]:
            posix.close(self.stdin_w)
            self.stdin_w = -1

    # ---- the network helper (see portside.engine.network.usermode) ----------------------

    def start_net_helper(self, h):
        """Start the user-mode network helper of the container's namespace, wait until it is
        ready and publish the ports; a failure fails the start (``self.fail``)."""
        import fcntl
        import select

        log = posix.open(h["log"], posix.O_WRONLY | posix.O_CREAT | posix.O_TRUNC |
                         posix.O_CLOEXEC, 0o600)
        try:
            if h["driver"] == "slirp4netns":
                # moved above 2-4, so that placing them at 3 and 4 in the child clobbers neither
                moved = []
                for fd in _pipes(2):
                    moved.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10))
                    posix.close(fd)
                ready_r, ready_w, exit_r, exit_w = moved
                self.helper_exit = exit_w  # closing it (or dying) makes slirp4netns exit
                pid = self.spawn(h["argv"], (None, None, log), {3: ready_w, 4: exit_r})
                posix.close(ready_w)
                posix.close(exit_r)
                self.helper_pid = pid
                ready, _, _ = select.select([ready_r], [], [], 10.0)
                ok = bool(ready) and posix.read(ready_r, 1) == b"1"
                posix.close(ready_r)
                if not ok:
                    self.fail(self.helper_error(h))
                _write_text(h["pid_file"], "%d\n" % pid)
                for fwd in h.get("ports") or []:
                    reply = _api_call(h["api"], {"execute": "add_hostfwd", "arguments": fwd})
                    if not isinstance(reply, dict) or "error" in reply:
                        self.fail("cannot publish %s:%d/%s: the port is in use on the host (%s)"
                                  % (fwd["host_addr"], fwd["host_port"], fwd["proto"],
                                     _api_error(reply)))
            else:
                # pasta goes to the background once the namespace is ready (its first process
                # exits, and, we being a subreaper, the one that stays becomes our child)
                code = posix.waitstatus_to_exitcode(
                    self.reap(block_for=self.spawn(h["argv"], (None, None, log))))
                try:
                    with open(h["pid_file"]) as f:
                        self.helper_pid = int(f.read().strip() or 0)
                except (OSError, ValueError):
                    self.helper_pid = 0
                if code != 0 or not self.helper_pid:
                    self.fail(self.helper_error(h))
        finally:
            posix.close(log)

    def helper_error(self, h):
        last = ""
        try:
            with open(h["log"], errors="replace") as f:
                for line in f:
                    if line.strip():
                        last = line.strip()
        except OSError:
            pass
        message = "%s failed to start%s" % (h["driver"], ": " + last if last else "")
        if "/dev/net/tun" in last:
            message += " (/dev/net/tun must be readable and writable by the user)"
        return message

    def stop_net_helper(self, wait=True):
        """Stop the network helper (and with ``wait``, reap it); idempotent. SIGKILL: the
        container is gone and the helper has nothing to save (slirp4netns takes ~10 ms to notice
        its --exit-fd). Its death takes the kernel 10-20 ms more (it unregisters the tap
        device), which is why the end of a run does not wait for it before saying "done"."""
        pid = self.helper_pid
        if self.helper_exit >= 0:
            posix.close(self.helper_exit)
            self.helper_exit = -1
        if pid:
            self.helper_pid = 0
            self.helper_dying = pid
            try:
                posix.kill(pid, _signal.SIGKILL)
            except ProcessLookupError:
                pass
            h = self.cfg.get("net_helper") or {}
            if h.get("pid_file"):
                _unlink(h["pid_file"])
        if wait:
            self.reap_net_helper()

    def reap_net_helper(self):
        """Wait for a helper :meth:`stop_net_helper` killed."""
        pid, self.helper_dying = self.helper_dying, 0
        while pid and pid not in self.statuses:
            try:
                got, status = posix.waitpid(pid, 0)
            except ChildProcessError:
                break  # not our child: gone, or reaped already
            except InterruptedError:
                continue
            self.statuses[got] = status

    # ---- lifecycle ----------------------------------------------------------------------

    def fail(self, message):
        low = message.lower()
        code = 125
        # runc's `exec: "x": ...`; crun's "executable file `x` not found in $PATH", "open
        # executable: ..." and "exec container process `x`: ..."
        cannot_exec = ("exec:" in low or low.startswith("executable file `")
                       or "open executable" in low or "exec container process" in low)
        if cannot_exec and ("not found" in low or "no such file" in low):
            code = 127  # Docker's "command not found"
        elif cannot_exec and ("permission denied" in low or "operation not permitted" in low
                              or "exec format" in low or "is a directory" in low):
            code = 126  # Docker's "cannot invoke" (as oci.classify_error, which it cannot import)
        self.write_exit(code, error=message)
        self.run(self.runtime("delete", "--force", self.cfg["id"]))
        self.stop_net_helper()
        self.notify({"error": message, "pid": posix.getpid()})
        posix._exit(1)

    #: What each runtime keeps in a stopped container's state folder when it made no cgroup.
    STATE_FILES = {"runc": ("state.json",), "crun": ("status", "config.json", "seccomp.bpf")}

    def forget(self):
        """Delete the stopped container from the runtime. With no cgroup and no hooks (rootless
        without a delegated cgroup) that is only its state folder, removed here without starting
        the runtime once more (~5-10 ms of every short run); anything unexpected in it, and every
        other case, goes to the runtime's own ``delete``."""
        c = self.cfg
        known = self.STATE_FILES.get(c["runtime"].rpartition("/")[2], ())
        if c.get("forget_by_removal") and known:
            state = c["root"] + "/" + c["id"]
            try:
                names = posix.listdir(state)
                for name in names:
                    if name not in known:
                        raise OSError(name)
                for name in names:
                    posix.unlink(state + "/" + name)
                posix.rmdir(state)
                return
            except OSError:
                pass
        self.run(self.runtime("delete", "--force", c["id"]))

    def keep_seccomp(self, dest):
        """Link the seccomp program crun compiled for this start into its cache (see
        ``portside.engine.runtime.seccomp_cache``): the next start of the same profile hands
        it back instead of compiling it again. Nothing happens when that fails."""
        c = self.cfg
        tmp = "%s.%d" % (dest, posix.getpid())
        try:
            posix.link(c["root"] + "/" + c["id"] + "/seccomp.bpf", tmp)
            posix.rename(tmp, dest)
        except OSError:
            _unlink(tmp)

    def write_exit(self, code, error="", oom=False):
        path = self.cfg["exit_file"]
        tmp = path + ".tmp"
        ns = time.time_ns()
        doc = dumps({"exit_code": code, "finished_at": _rfc3339(ns), "finished_at_ns": ns,
                      "oom_killed": oom, "error": error})
        with open(tmp, "w") as f:
            f.write(doc)
        posix.replace(tmp, path)

    def runtime_error(self, log_path):
        message = ""
        try:
            with open(log_path) as f:
                for line in f:
                    try:
                        doc = loads(line)
                    except ValueError:
                        continue
                    if isinstance(doc, dict) and doc.get("level") in ("error", "fatal"):
                        message = doc.get("msg", "")
        except OSError:
            pass
        # "runc run failed: ..." reads as it did when create and start were two calls (and as
        # Docker's "runc create failed: ...").
        head, sep, rest = message.partition(" run failed: ")
        if sep and " " not in head:
            message = head + " create failed: " + rest
        return message

    def oom_killed(self):
        """Whether the kernel OOM-killed a process of the container's cgroup (cheap file reads)."""
        cg = self.cfg.get("cgroup")
        if not cg:
            try:
                with open(self.cfg["bundle"] + "/config.json") as f:
                    cg = loads(f.read()).get("linux", {}).get("cgroupsPath", "")
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
        _set_subreaper()  # before the runtime runs: its orphaned init must come to us
        pid_file = c["state_dir"] + "/init.pid"
        rt_log = c["state_dir"] + "/runtime.log"
        for stale in (pid_file, rt_log):
            _unlink(stale)
        if c.get("net_helper"):
            self.start_net_helper(c["net_helper"])  # the namespace is ready before the runtime
        # `run --detach` is create and start in one runtime process (one Go start-up less).
        run = self.runtime("--log", rt_log, "--log-format", "json", "run", "--detach",
                           "--bundle", c["bundle"], "--pid-file", pid_file)
        outputs = {}  # fd -> stream kind
        if c["tty"]:
            csock_path = c["state_dir"] + "/console.sock"
            _unlink(csock_path)
            csock = _new_socket()
            csock.bind(csock_path)
            csock.listen(1)
            pid = self.spawn([*run, "--console-socket", csock_path, c["id"]])
        else:
            out_r, out_w = posix.pipe()
            err_r, err_w = posix.pipe()
            if c["stdin"]:
                in_r, self.stdin_w = posix.pipe()
            else:
                in_r = posix.open(DEVNULL, posix.O_RDONLY | posix.O_CLOEXEC)
            pid = self.spawn([*run, c["id"]], (in_r, out_w, err_w))
            for fd in (in_r, out_w, err_w):
                posix.close(fd)
            outputs[out_r] = OUT_STDOUT
            outputs[err_r] = OUT_STDERR

        # The rest of the set-up overlaps the runtime's work (tens of milliseconds).
        import select

        wake_r, wake_w = posix.pipe()
        posix.set_blocking(wake_w, False)
        posix.set_blocking(wake_r, False)
        _signal.set_wakeup_fd(wake_w)
        _signal.signal(_signal.SIGCHLD, lambda *_: None)
        for s in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
            _signal.signal(s, _signal.SIG_IGN)
        self.log_fd = posix.open(c["log"], posix.O_WRONLY | posix.O_APPEND | posix.O_CREAT |
                                 posix.O_CLOEXEC, 0o640)
        # Listen before reporting the start: a client may attach as soon as we report.
        _unlink(c["attach"])
        listener = _new_socket()
        listener.bind(c["attach"])
        listener.listen(8)

        if c["tty"]:
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
            code = posix.waitstatus_to_exitcode(self.reap(block_for=pid))
            if code == 0 and master >= 0:
                posix.set_inheritable(master, False)
                self.stdin_w = master
                outputs[master] = OUT_STDOUT
        else:
            code = posix.waitstatus_to_exitcode(self.reap(block_for=pid))
        if code != 0 or not outputs:
            listener.close()
            _unlink(c["attach"])
            self.fail(self.runtime_error(rt_log) or "runtime start failed")
        with open(pid_file) as f:
            init_pid = int(f.read().strip())
        self.notify({"ok": True, "pid": posix.getpid(), "init_pid": init_pid})
        if c.get("seccomp_cache"):
            self.keep_seccomp(c["seccomp_cache"])

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
                        data = posix.read(r, READ_SIZE)
                    except OSError:  # EIO: the pty's other side is closed
                        data = b""
                    kind = outputs[r]
                    if not data:
                        self.log(kind, b"", final=True)
                        del outputs[r]
                        if r != self.stdin_w:
                            posix.close(r)
                        continue
                    self.log(kind, data)
                    self.broadcast(kind, data)
                else:
                    self.client_input(r)
            self.reap()
        for kind in (OUT_STDOUT, OUT_STDERR):
            self.log(kind, b"", final=True)

        status = self.reap(block_for=init_pid)
        exit_code = posix.waitstatus_to_exitcode(status) if status is not None else 255
        if exit_code < 0:
            exit_code = 128 - exit_code  # killed by signal N: 128+N, like a shell
        oom = self.oom_killed()
        self.write_exit(exit_code, oom=oom)
        exit_doc = {"exit_code": exit_code, "oom_killed": oom}
        self.notify(exit_doc)
        listener.close()
        _unlink(c["attach"])
        self.broadcast(OUT_EXIT, dumps(exit_doc).encode())
        for client in list(self.clients):
            self.drop(client)
        posix.close(self.log_fd)
        self.forget()
        self.stop_net_helper(wait=False)
        if self.sync_fd >= 0:
            posix.close(self.sync_fd)  # the caller's "done": the runtime has forgotten it
            self.sync_fd = -1
        self.reap_net_helper()
        if c["on_exit"] and not _watched(c.get("watch_lock")):
            _signal.set_wakeup_fd(-1)
            for s in (_signal.SIGCHLD, _signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
                _signal.signal(s, _signal.SIG_DFL)
            try:
                _execvp(c["on_exit"])
            except OSError as exc:
                print("on_exit failed:", exc, file=sys.stderr)
                sys.exit(1)


def _pipes(count):
    fds = []
    for _ in range(count):
        fds.extend(posix.pipe())
    return fds


def _write_text(path, text):
    fd = posix.open(path, posix.O_WRONLY | posix.O_CREAT | posix.O_TRUNC | posix.O_CLOEXEC, 0o600)
    try:
        posix.write(fd, text.encode())
    finally:
        posix.close(fd)


def _api_call(path, request, timeout=5.0):
    """One request to slirp4netns's API socket; its JSON reply (None when there was none)."""
    sock = _new_socket()
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(dumps(request).encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        return None
    finally:
        sock.close()
    try:
        return loads(data.decode(errors="replace"))
    except ValueError:
        return None


def _api_error(reply):
    if isinstance(reply, dict) and isinstance(reply.get("error"), dict):
        return str(reply["error"].get("desc") or "refused")
    return "no answer from slirp4netns"


def _execvp(argv):
    """``os.execvp`` without the os module: ``argv[0]`` looked up in ``$PATH`` unless a path."""
    if "/" in argv[0]:
        posix.execv(argv[0], argv)
    path = posix.environ.get(b"PATH", b"/usr/local/bin:/usr/bin:/bin").decode()
    error = FileNotFoundError(2, "No such file or directory", argv[0])
    for folder in path.split(":"):
        try:
            posix.execv((folder or ".") + "/" + argv[0], argv)
        except (FileNotFoundError, NotADirectoryError, PermissionError) as exc:
            error = exc
    raise error


def _receive_fd(csock):
    """Accept the runtime's connection on the console socket and return the fd it sends."""
    import _socket

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
        fd = posix.open(path, posix.O_RDWR | posix.O_CREAT | posix.O_CLOEXEC, 0o600)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        posix.close(fd)
    return False


def _drain(fd):
    try:
        while posix.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _forget_folder(path):
    try:
        names = posix.listdir(path)
        if names == ["monitor.log"] and posix.stat(path + "/monitor.log").st_size == 0:
            posix.unlink(path + "/monitor.log")
            posix.rmdir(path)
    except OSError:
        pass


def _main(argv):
    """The monitor process: ``argv`` is ``[-c, portside-monitor, ID, CFG_FD, SYNC_FD, DIR]``."""
    # Second fork: the process the caller started exits now; the monitor is reparented to init
    # (or a subreaper above the caller) and, not being a session leader, never gets a terminal.
    if posix.fork() > 0:
        posix._exit(0)
    cfg_fd, sync_fd = int(argv[3]), int(argv[4])
    # Nothing the caller happened to leave inheritable may stay open here for the container's
    # lifetime (it could hold a pipe open that somebody reads to the end).
    low, high = sorted((cfg_fd, sync_fd))
    posix.closerange(3, low)
    posix.closerange(low + 1, high)
    posix.closerange(high + 1, 1 << 20)
    posix.set_inheritable(sync_fd, False)
    data = b""
    while True:
        chunk = posix.read(cfg_fd, 65536)
        if not chunk:
            break
        data += chunk
    posix.close(cfg_fd)
    if not data:
        # the caller gave up before the start (cancelled, or killed: then nobody else would
        # clean up): our folder goes too, unless something else is in it (a container's). A
        # cancelling caller waits for our exit, so no new launch can be using it meanwhile.
        if len(argv) > 5:
            _forget_folder(argv[5])
        posix._exit(0)
    posix.chdir("/")
    posix.umask(0o022)
    _Monitor(loads(data.decode()), sync_fd).main()
    posix._exit(0)  # nothing is buffered; skip the interpreter's shutdown
