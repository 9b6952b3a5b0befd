"""The per-container monitor: the small process that makes a container outlive ``portside run -d``.

Docker keeps a daemon (containerd + a shim per container) to hold each container's stdio and collect
its exit status. portside has no daemon; instead :func:`spawn_monitor` starts one monitor process per
container, detached from the caller (new session, double fork, reparented to init), which:

1. marks itself a *child subreaper* (``PR_SET_CHILD_SUBREAPER``): ``runc create`` exits after making
   the container, and its init process, orphaned, is re-parented to the monitor instead of pid 1, so
   the monitor can ``waitpid`` it and learn the exit status;
2. creates the container with pipes as stdio (or, with a tty, receives the pty master through
   ``--console-socket``), starts it, and tells the caller "started" (or the runtime's error) over a
   pipe;
3. copies stdout and stderr into the log (one JSON entry per line, see :mod:`.logs`) and to every
   client attached on its unix socket, and feeds stdin from the client;
4. when the init exits, writes the exit status atomically to ``exit_file``, runs ``runtime delete``,
   and finally ``exec``s ``on_exit`` (e.g. the engine's ``--rm`` cleanup) or exits.

The monitor runs as ``python3 -S -I monitor.py portside-monitor CONFIG``: no site-packages, no portside imports, only
a few stdlib modules (os, sys, select, signal, socket, json, time, struct, plus ctypes for prctl and
fcntl for the tty size), so it costs about 11 MB of RSS per container.

Attach protocol (unix stream socket). Monitor → client frames: ``struct ">BxxxI"`` header (kind,
length) then payload; kind 1 stdout, 2 stderr, 3 exit (payload is the exit JSON). Client → monitor:
same header; kind 0 stdin bytes, 1 close stdin, 2 resize (payload ``">HH"`` rows, cols).
"""

import json
import os
import select
import signal
import socket
import struct
import sys
import time

FRAME = struct.Struct(">BxxxI")
OUT_STDOUT, OUT_STDERR, OUT_EXIT = 1, 2, 3
IN_STDIN, IN_CLOSE, IN_RESIZE = 0, 1, 2
#: A line longer than this is logged in pieces (partial entries), as Docker's json-file does.
MAX_LINE = 16 * 1024
READ_SIZE = 64 * 1024
#: At most this much output is kept for the first attach client (see _Monitor.early).
EARLY_LIMIT = 1 << 20
PR_SET_CHILD_SUBREAPER = 36


# =============================================================================================
# caller side (runs inside the engine; may import portside lazily)


def spawn_monitor(*, runtime_path: str, runtime_root, container_id: str, bundle, state_dir,
                  log_path, tty: bool, stdin_open: bool, attach_socket, exit_file,
                  on_exit=None, watch_lock=None, timeout: float = 60.0) -> int:
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
        timeout: seconds to wait for the container to start.

    Returns:
        the monitor's pid.

    Raises:
        CommandNotFound, CannotInvoke: the command is missing (127) or not executable (126).
        RuntimeFailure: the runtime could not create or start the container.
    """
    import subprocess

    from portside.engine.errors import RuntimeFailure
    from portside.engine.runtime.oci import classify_error

    if len(os.fsencode(str(attach_socket))) >= 108:
        raise RuntimeFailure(f"attach socket path too long: {attach_socket}")
    os.makedirs(str(state_dir), exist_ok=True)
    config = {
        "runtime": str(runtime_path), "root": str(runtime_root), "id": container_id,
        "bundle": str(bundle), "state_dir": str(state_dir), "log": str(log_path), "tty": tty,
        "stdin": stdin_open, "attach": str(attach_socket), "exit_file": str(exit_file),
        "on_exit": list(on_exit or []),
        "watch_lock": str(watch_lock) if watch_lock else None,
    }
    r, w = os.pipe()
    config["sync_fd"] = w
    try:
        with open(os.path.join(str(state_dir), "monitor.log"), "ab") as mlog:
            proc = subprocess.Popen(
                # "portside-monitor" names the process for ps and for leak checks in tests.
                [sys.executable, "-S", "-I", os.path.abspath(__file__), "portside-monitor",
                 json.dumps(config)],
                stdin=subprocess.DEVNULL, stdout=mlog, stderr=mlog, pass_fds=(w,),
                start_new_session=True, cwd="/")
        os.close(w)
        w = -1
        proc.wait()  # the first process forks the real monitor and exits at once
        data = b""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeFailure(f"container {container_id} did not start in {timeout:.0f}s")
            ready, _, _ = select.select([r], [], [], left)
            if not ready:
                continue
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    try:
        reply = json.loads(data.decode() or "{}")
    except ValueError:
        reply = {}
    if reply.get("ok"):
        return int(reply["pid"])
    if reply.get("pid"):
        _wait_gone(int(reply["pid"]))  # so a failed start leaves no process behind
    message = reply.get("error") or "monitor exited before the container started"
    raise classify_error(message, container_id)


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
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(attach_socket))
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        from portside.engine.errors import NotFound
        raise NotFound(f"container is not running: {attach_socket}") from exc
    in_fd = None
    if stdin is not None:
        in_fd = stdin if isinstance(stdin, int) else stdin.fileno()
    if resize:
        payload = struct.pack(">HH", *resize)
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
                        return int(json.loads(payload).get("exit_code", 0))
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
            return json.load(f)
    except FileNotFoundError:
        return None


# =============================================================================================
# monitor side (runs as `python3 -S -I monitor.py portside-monitor CONFIG`; stdlib only)


def _rfc3339(ns):
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + ".%09dZ" % frac


class _Monitor:
    def __init__(self, cfg):
        self.cfg = cfg
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
        pid = os.fork()
        if pid == 0:
            try:
                null = os.open("/dev/null", os.O_RDWR)
                for target, fd in enumerate(stdio):
                    os.dup2(null if fd is None else fd, target)
                os.closerange(3, 65536)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
                    signal.signal(s, signal.SIG_DFL)
                os.execv(argv[0], argv)
            finally:
                os._exit(127)
        return pid

    def runtime(self, *args):
        c = self.cfg
        return [c["runtime"], "--root", c["root"], *args]

    def run(self, argv, stdio=(None, None, None)):
        status = self.reap(block_for=self.spawn(argv, stdio))
        return os.waitstatus_to_exitcode(status)

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
        quote = json.encoder.encode_basestring_ascii
        blob = "".join(['{"log":' + quote(piece.decode("utf-8", "surrogateescape")) + tail
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
                rows, cols = struct.unpack(">HH", payload[:4])
                fcntl.ioctl(self.stdin_w, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.client_bufs[client] = buf

    def close_stdin(self):
        # With a tty stdin and stdout are the same master fd: closing it would lose the output.
        if self.stdin_w >= 0 and not self.cfg["tty"]:
            os.close(self.stdin_w)
            self.stdin_w = -1

    # ---- lifecycle ----------------------------------------------------------------------

    def fail(self, sync_fd, message):
        low = message.lower()
        code = 125
        if "exec:" in low and ("not found" in low or "no such file" in low):
            code = 127  # Docker's "command not found"
        elif "exec:" in low and ("permission denied" in low or "exec format" in low):
            code = 126  # Docker's "cannot invoke"
        self.write_exit(code, error=message)
        self.run(self.runtime("delete", "--force", self.cfg["id"]))
        os.write(sync_fd, json.dumps({"error": message, "pid": os.getpid()}).encode())
        os._exit(1)

    def write_exit(self, code, error="", oom=False):
        path = self.cfg["exit_file"]
        tmp = path + ".tmp"
        ns = time.time_ns()
        with open(tmp, "w") as f:
            json.dump({"exit_code": code, "finished_at": _rfc3339(ns), "finished_at_ns": ns,
                       "oom_killed": oom, "error": error}, f)
        os.replace(tmp, path)

    def runtime_error(self, log_path):
        message = ""
        try:
            with open(log_path) as f:
                for line in f:
                    try:
                        doc = json.loads(line)
                    except ValueError:
                        continue
                    if doc.get("level") in ("error", "fatal"):
                        message = doc.get("msg", "")
        except OSError:
            pass
        return message

    def oom_killed(self):
        """Whether the kernel OOM-killed a process of the container's cgroup (cheap file reads)."""
        try:
            with open(os.path.join(self.cfg["bundle"], "config.json")) as f:
                cg = json.load(f).get("linux", {}).get("cgroupsPath", "")
        except (OSError, ValueError):
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
        sync_fd = c["sync_fd"]
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        del libc, ctypes

        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)

        self.log_fd = os.open(c["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        pid_file = os.path.join(c["state_dir"], "init.pid")
        rt_log = os.path.join(c["state_dir"], "runtime.log")
        for stale in (pid_file, rt_log):
            try:
                os.unlink(stale)
            except FileNotFoundError:
                pass
        create = ["--log", rt_log, "--log-format", "json", "create", "--bundle", c["bundle"],
                  "--pid-file", pid_file]
        outputs = {}  # fd -> stream kind
        if c["tty"]:
            csock_path = os.path.join(c["state_dir"], "console.sock")
            try:
                os.unlink(csock_path)
            except FileNotFoundError:
                pass
            csock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            csock.bind(csock_path)
            csock.listen(1)
            pid = self.spawn(self.runtime(*create, "--console-socket", csock_path, c["id"]))
            master = -1
            while master < 0 and pid not in self.statuses:
                ready, _, _ = select.select([csock, wake_r], [], [], 1.0)
                if csock in ready:
                    conn, _ = csock.accept()
                    _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
                    conn.close()
                    if fds:
                        master = fds[0]
                if wake_r in ready:
                    _drain(wake_r)
                self.reap()
            csock.close()
            os.unlink(csock_path)
            code = os.waitstatus_to_exitcode(self.reap(block_for=pid))
            if code != 0 or master < 0:
                self.fail(sync_fd, self.runtime_error(rt_log) or "runtime create failed")
            os.set_inheritable(master, False)
            self.stdin_w = master
            outputs[master] = OUT_STDOUT
        else:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            if c["stdin"]:
                in_r, self.stdin_w = os.pipe()
            else:
                in_r = os.open("/dev/null", os.O_RDONLY)
            code = self.run(self.runtime(*create, c["id"]), (in_r, out_w, err_w))
            for fd in (in_r, out_w, err_w):
                os.close(fd)
            if code != 0:
                self.fail(sync_fd, self.runtime_error(rt_log) or "runtime create failed")
            outputs[out_r] = OUT_STDOUT
            outputs[err_r] = OUT_STDERR
        with open(pid_file) as f:
            init_pid = int(f.read().strip())

        try:
            os.unlink(c["attach"])
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(c["attach"])
        listener.listen(8)

        code = self.run(self.runtime("--log", rt_log, "--log-format", "json", "start", c["id"]))
        if code != 0:
            listener.close()
            self.fail(sync_fd, self.runtime_error(rt_log) or "runtime start failed")
        os.write(sync_fd, json.dumps({"ok": True, "pid": os.getpid(), "init_pid": init_pid}).encode())
        os.close(sync_fd)

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
                    client, _ = listener.accept()
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
        listener.close()
        try:
            os.unlink(c["attach"])
        except FileNotFoundError:
            pass
        exit_doc = json.dumps({"exit_code": exit_code, "oom_killed": oom}).encode()
        self.broadcast(OUT_EXIT, exit_doc)
        for client in list(self.clients):
            self.drop(client)
        os.close(self.log_fd)
        self.run(self.runtime("delete", "--force", c["id"]))
        if c["on_exit"] and not _watched(c.get("watch_lock")):
            signal.set_wakeup_fd(-1)
            for s in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(s, signal.SIG_DFL)
            try:
                os.execvp(c["on_exit"][0], c["on_exit"])
            except OSError as exc:
                print("on_exit failed:", exc, file=sys.stderr)
                sys.exit(1)


def _watched(path):
    """Whether a foreground caller still holds the watch lock: it cleans up after the container
    itself, so the monitor's cleanup process is not needed. A caller that died released it."""
    if not path:
        return False
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
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
    cfg = json.loads(argv[2])
    # Second fork: the process the caller waits for exits now; the monitor is reparented to init
    # (or a subreaper above the caller) and, not being a session leader, never gets a terminal.
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    os.umask(0o022)
    _Monitor(cfg).main()


if __name__ == "__main__":
    _main(sys.argv)
