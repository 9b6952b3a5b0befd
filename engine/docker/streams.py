"""Hijacked streams to dockerd: exec and attach connections, and the processes they carry.

``POST /exec/{id}/start`` and ``POST /containers/{id}/attach`` answer ``101 UPGRADED`` and turn
the HTTP connection into the process's stdio: what we write is its stdin; what we read is its
output, multiplexed when it has no TTY, each chunk behind an 8-byte header::

    [stream: 1 = stdout, 2 = stderr] [0 0 0] [size: 4 bytes, big-endian] payload

:func:`hijack` opens such a connection itself for ``unix://`` and plain ``tcp://`` hosts: one
socket, the request written by hand and the answer's headers read up to their blank line and not
a byte further, so output the process writes at once is never lost in an HTTP reader's buffer
(the SDK's ``socket=True`` path reads through one). Other hosts (TLS, SSH) go through the SDK.

:class:`ExecProcess` is a command started by exec: the model API's
:class:`~portside.engine.models.interface.ExecStream` (``stdin``/``stdout``/``stderr`` as
binary streams, ``poll``, ``wait``, ``kill``, ``signal``, ``close``; ``exec_run(...,
socket=True)`` returns one), so whatever drives a process by its streams (the notebook's agent
session, ``portside exec``) drives one in a Docker container unchanged. A thread splits the
multiplexed output into a stdout pipe and a stderr pipe (real pipes: ``select`` works on them);
``stdin`` writes straight to the socket.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading

from ..errors import EngineError

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, BinaryIO, Iterator

PIPE = -1      # subprocess.PIPE
STDOUT = -2    # subprocess.STDOUT
DEVNULL = -3   # subprocess.DEVNULL
_HEADER = struct.Struct(">BxxxL")
_STREAMS = {0: "stdin", 1: "stdout", 2: "stderr"}


class Hijacked:
    """One upgraded connection: ``send``/``close_write`` for stdin, ``recv`` for output."""

    def __init__(self, sock: Any, early: bytes = b"", keep: Any = None) -> None:
        self.sock = sock
        self._early = early
        self._keep = keep  # the SDK's response, when it made the connection: keeps it open
        self._closed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self, n: int = 65536) -> bytes:
        if self._early:
            data, self._early = self._early[:n], self._early[n:]
            return data
        try:
            if hasattr(self.sock, "recv"):
                return self.sock.recv(n)
            return self.sock.read(n) or b""
        except OSError:
            if self._closed:
                return b""
            raise

    def recv_exactly(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.recv(n - len(buf))
            if not chunk:
                return buf
            buf += chunk
        return buf

    def send(self, data: bytes) -> None:
        if hasattr(self.sock, "sendall"):
            self.sock.sendall(data)
        else:
            self.sock.write(data)

    def close_write(self) -> None:
        """End of stdin: the process reads EOF (the connection stays open for its output)."""
        try:
            target = getattr(self.sock, "_sock", self.sock)
            target.shutdown(socket.SHUT_WR)
        except (OSError, AttributeError):
            pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            getattr(self.sock, "_sock", self.sock).shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        if self._keep is not None:
            try:
                self._keep.close()
            except Exception:  # noqa: BLE001 - the response is gone with its socket
                pass

    def frames(self, tty: bool) -> Iterator[tuple[str, bytes]]:
        """The output as (``stdout``/``stderr``, bytes) until the process ends."""
        while True:
            if tty:
                data = self.recv()
                if not data:
                    return
                yield "stdout", data
                continue
            header = self.recv_exactly(_HEADER.size)
            if len(header) < _HEADER.size:
                return
            kind, size = _HEADER.unpack(header)
            if not size:
                continue
            data = self.recv_exactly(size)
            if not data:
                return
            yield _STREAMS.get(kind, "stdout"), data


def hijack(engine: Any, path: str, body: dict | None = None,
           params: dict | None = None) -> Hijacked:
    """POST ``path`` (under the API version) and take the connection over.

    Raises:
        the engine's errors for a refused request (a 404 is ``NotFound``, and so on).
    """
    host = engine.host
    if not host.startswith(("unix://", "tcp://", "http://")):
        return _hijack_sdk(engine, path, body, params)
    client = engine.client  # version negotiated (and the daemon reachable) first
    from urllib.parse import urlencode

    query = ("?" + urlencode(params)) if params else ""
    payload = json.dumps(body or {}).encode()
    request = (f"POST /v{client.api_version}{path}{query} HTTP/1.1\r\nHost: docker\r\n"
               "User-Agent: portside\r\nContent-Type: application/json\r\n"
               "Connection: Upgrade\r\nUpgrade: tcp\r\n"
               f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload
    from .errors import unreachable

    sock = None
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(host[len("unix://"):])
        else:
            hostport = host.split("://", 1)[1].rstrip("/")
            name, _, port = hostport.rpartition(":")
            sock = socket.create_connection((name or hostport, int(port or 2375)))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096 if not head else 1024)
            if not chunk:
                raise ConnectionError("the daemon closed the connection")
            head += chunk
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise unreachable(engine, exc) from exc
    head, _, early = head.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(status_line.split()[1])
    except (IndexError, ValueError):
        sock.close()
        raise EngineError(f"unexpected answer from the Docker daemon: {status_line!r}") from None
    if status >= 400:
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in header_lines)}
        length = int(headers.get("content-length") or 0)
        body_bytes = early
        while len(body_bytes) < length:
            chunk = sock.recv(length - len(body_bytes))
            if not chunk:
                break
            body_bytes += chunk
        sock.close()
        try:
            message = json.loads(body_bytes).get("message", "")
        except ValueError:
            message = body_bytes.decode(errors="replace").strip()
        from .errors import _http_error

        raise _http_error(status, message or status_line, engine)
    return Hijacked(sock, early)


def _hijack_sdk(engine: Any, path: str, body: dict | None, params: dict | None) -> Hijacked:
    """The SDK's hijack (TLS and SSH hosts): its ``_post_json`` with the upgrade headers."""
    from .errors import guarded_call

    client = engine.client

    def start():
        res = client._post_json(client._url(path), body or {}, params=params, stream=True,
                                headers={"Connection": "Upgrade", "Upgrade": "tcp"})
        return res, client._get_raw_response_socket(res)

    res, sock = guarded_call(engine, start)
    client._disable_socket_timeout(sock)
    return Hijacked(sock, b"", keep=res)


# ------------------------------------------------------------------------------------ exec
class _SocketWriter:
    """``ExecProcess.stdin``: writes go to the connection; ``close()`` is end of input."""

    def __init__(self, conn: Hijacked) -> None:
        self._conn = conn
        self.closed = False

    def fileno(self) -> int:
        return self._conn.fileno()

    def read(self, n: int = -1, /) -> bytes:
        raise OSError("the standard input of an exec is not readable")

    read1 = read

    def write(self, data: bytes) -> int:
        self._conn.send(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._conn.close_write()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ExecProcess:
    """A command running in a container through dockerd's exec, shaped like ``Popen``.

    ``stdin``/``stdout``/``stderr`` take ``subprocess.PIPE``, ``DEVNULL``, ``None`` (this
    process's own descriptors) or, for stderr, ``STDOUT``; with ``PIPE`` the attribute of the
    same name is a binary file (stdout and stderr are real pipes, so ``select`` works on them).
    ``returncode`` is set once the exec has ended (its status comes from ``exec inspect``).
    """

    stdin: Any
    stdout: Any
    stderr: Any

    def __init__(self, container: Any, argv: list[str], *, user: str | None = None,
                 workdir: str | None = None, env: list[str] | None = None, tty: bool = False,
                 stdin: Any = None, stdout: Any = None, stderr: Any = None,
                 privileged: bool = False) -> None:
        self._engine = container.collection.engine
        self.args = list(argv)
        self.tty = tty
        self.returncode: int | None = None
        api = self._engine.api
        created = api.exec_create(container.id, self.args, stdin=stdin != DEVNULL,
                                  stdout=stdout != DEVNULL,
                                  stderr=stderr != DEVNULL or tty, tty=tty,
                                  environment=env or None, workdir=workdir or None,
                                  user=user or "", privileged=privileged)
        self.exec_id = created["Id"]
        self._conn = hijack(self._engine, f"/exec/{self.exec_id}/start",
                            {"Detach": False, "Tty": tty})
        self.stdin = _SocketWriter(self._conn) if stdin == PIPE else None
        self.stdout = self.stderr = None
        out_fd = err_fd = None
        self._close_after: list[int] = []
        if stdout == PIPE:
            r, out_fd = os.pipe()
            self.stdout = os.fdopen(r, "rb")
            self._close_after.append(out_fd)
        elif stdout is None:
            out_fd = 1
        if stderr == PIPE:
            r, err_fd = os.pipe()
            self.stderr = os.fdopen(r, "rb")
            self._close_after.append(err_fd)
        elif stderr == STDOUT:
            err_fd = out_fd
        elif stderr is None:
            err_fd = 2
        self._fds = {"stdout": out_fd, "stderr": err_fd}
        self._ended = threading.Event()
        self._pump = threading.Thread(target=self._demux, name="portside-docker-exec",
                                      daemon=True)
        self._pump.start()
        self._feeder = None
        if stdin is None:  # our own stdin, copied until it ends (``exec -i``)
            self._feeder = threading.Thread(target=self._feed, daemon=True)
            self._feeder.start()
        elif stdin == DEVNULL:
            self._conn.close_write()

    def _demux(self) -> None:
        try:
            for stream, data in self._conn.frames(self.tty):
                fd = self._fds.get(stream)
                if fd is None:
                    continue
                view = memoryview(data)
                try:
                    while view:
                        view = view[os.write(fd, view):]
                except OSError:  # the reader went away: keep draining the connection
                    self._fds[stream] = None
        except OSError:
            pass
        finally:
            for fd in self._close_after:
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._ended.set()

    def _feed(self) -> None:
        try:
            while True:
                data = os.read(0, 65536)
                if not data:
                    break
                self._conn.send(data)
        except OSError:
            pass
        self._conn.close_write()

    # ------------------------------------------------------------------ Popen's interface
    @property
    def pid(self) -> int:
        """The process's id on dockerd's host (``exec inspect``'s ``Pid``)."""
        return int(self._engine.api.exec_inspect(self.exec_id).get("Pid") or 0)

    def poll(self) -> int | None:
        """The exit status once the output has ended, else None (no request while it runs)."""
        if self.returncode is None and self._ended.is_set():
            self._settle()
        return self.returncode

    def _settle(self, timeout: float = 10.0) -> None:
        import time

        deadline = time.monotonic() + timeout
        while True:
            doc = self._engine.api.exec_inspect(self.exec_id)
            if not doc.get("Running") or time.monotonic() > deadline:
                code = doc.get("ExitCode")
                self.returncode = int(code) if code is not None else -9
                self._conn.close()
                return
            time.sleep(0.01)

    def wait(self, timeout: float | None = None) -> int:
        """Block until the command ends; its exit status. Raises TimeoutError after
        ``timeout`` seconds."""
        if self.returncode is None:
            if not self._ended.wait(timeout):
                raise TimeoutError(f"the exec did not end in {timeout:g} s")
            self._settle()
        return self.returncode  # type: ignore[return-value]

    def communicate(self, input: bytes | None = None,
                    timeout: float | None = None) -> tuple[bytes | None, bytes | None]:
        if input and self.stdin is not None:
            self.stdin.write(input)
        if self.stdin is not None:
            self.stdin.close()
        out = err = None
        if self.stdout is not None:
            with self.stdout:
                out = self.stdout.read()
        if self.stderr is not None:
            with self.stderr:
                err = self.stderr.read()
        self.wait(timeout)
        return out, err

    def send_signal(self, sig: int) -> None:
        """Signal the process: dockerd has no call for it, so a second exec runs ``kill``
        in the container with the process's id there (from its ``NSpid`` when dockerd is on
        this host). Ending the connection first gives a reader of stdin its end of input."""
        if self.returncode is not None:
            return
        if self.stdin is not None:
            self.stdin.close()
        import time

        deadline = time.monotonic() + 10
        try:
            while True:  # dockerd starts the process after it has answered the hijack
                doc = self._engine.api.exec_inspect(self.exec_id)
                if doc.get("Pid") or time.monotonic() > deadline:
                    break
                if not doc.get("Running") and doc.get("ExitCode") is not None:
                    return  # it has ended already
                time.sleep(0.01)
        except EngineError:
            return
        host_pid = int(doc.get("Pid") or 0)
        inner = _namespace_pid(host_pid) if self._engine.host.startswith("unix://") else None
        if inner is None:
            self._conn.close()  # a remote daemon: the most we can do is hang up
            return
        container_id = doc.get("ContainerID")
        try:
            done = self._engine.api.exec_create(container_id, ["kill", f"-{int(sig)}",
                                                                str(inner)], user="0")
            self._engine.api.exec_start(done["Id"])
        except EngineError:
            self._conn.close()

    signal = send_signal

    def kill(self) -> None:
        import signal

        self.send_signal(signal.SIGKILL)

    def close(self) -> None:
        """Close the streams and reap the command, killing it if it outlives 5 seconds."""
        for f in (self.stdin, self.stdout, self.stderr):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        try:
            self.wait(5)
        except TimeoutError:
            self.kill()
            try:
                self.wait(5)
            except TimeoutError:
                self._conn.close()

    def terminate(self) -> None:
        import signal

        self.send_signal(signal.SIGTERM)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for f in (self.stdout, self.stderr):
            if f is not None:
                f.close()
        if self.stdin is not None:
            self.stdin.close()
        self.wait()


def _namespace_pid(host_pid: int) -> int | None:
    """A host process's id in its own pid namespace (the last of ``NSpid``), when readable."""
    if host_pid <= 0:
        return None
    try:
        with open(f"/proc/{host_pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


def close_when(stop: Any, res: Any) -> threading.Event:
    """End a followed HTTP stream (logs, events) from a watcher thread once ``stop()`` is
    true. Returns an event set when it did: the reader then sees the stream break, and ends
    quietly when the event says why."""
    import time

    stopped = threading.Event()

    def watch() -> None:
        while not res.raw.closed:
            if stop():
                stopped.set()
                try:
                    res.raw._fp.fp.raw._sock.shutdown(socket.SHUT_RDWR)
                except Exception:  # noqa: BLE001 - gone already
                    pass
                return
            time.sleep(0.2)

    threading.Thread(target=watch, name="portside-docker-stop", daemon=True).start()
    return stopped


def copy_stream(chunks: Iterator[bytes], out: BinaryIO) -> int:
    """Write every chunk to ``out``; returns the byte count."""
    total = 0
    for chunk in chunks:
        out.write(chunk)
        total += len(chunk)
    return total
