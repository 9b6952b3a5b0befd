"""The transport of the remote engine: framed JSON messages, with descriptors where possible.

A :class:`Channel` carries whole messages (JSON documents) in both directions, each framed by a
4-byte big-endian length. Over a unix stream socket a message may also carry open file
descriptors (``SCM_RIGHTS``, sent with the frame's first byte): that is how a pipe's end or a
caller's file reaches the engine process without copying. Over a pair of pipes (a Slurm job's
``srun`` stdio, say) there are no descriptors; everything else is the same.

This module knows nothing of engines: :mod:`.client` and :mod:`.server` give the messages their
meaning.
"""

from __future__ import annotations

import array
import json
import os
import socket
import struct
import threading

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Sequence

_LEN = struct.Struct(">I")
#: The most descriptors one message carries.
MAX_FDS = 16
MAX_MESSAGE = 1 << 30


class Channel:
    """One conversation: ``send(msg, fds)`` and ``recv() -> (msg, fds)``.

    Args:
        sock: a connected unix stream socket (descriptors allowed), or
        rfd, wfd: a pair of pipe ends to read and write (no descriptors).

    Sending is serialised by a lock, so several threads may send on one channel; receiving is
    for one thread at a time.
    """

    def __init__(self, sock: socket.socket | None = None, *, rfd: int = -1,
                 wfd: int = -1) -> None:
        self.sock = sock
        self.rfd, self.wfd = rfd, wfd
        self._send_lock = threading.Lock()
        self._closed = False

    @classmethod
    def pair(cls) -> tuple["Channel", socket.socket]:
        """A channel and the other end of its socket (for a child process or another thread)."""
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        return cls(a), b

    @property
    def passes_fds(self) -> bool:
        return self.sock is not None

    def fileno(self) -> int:
        return self.sock.fileno() if self.sock is not None else self.rfd

    # ---- sending -----------------------------------------------------------------------------

    def send(self, msg: dict[str, Any], fds: Sequence[int] = ()) -> None:
        """Send one message (and ``fds``, which stay open here).

        Raises:
            OSError: the other end is gone (BrokenPipeError) or descriptors cannot travel here.
        """
        body = json.dumps(msg, separators=(",", ":")).encode()
        data = _LEN.pack(len(body)) + body
        with self._send_lock:
            if self.sock is None:
                if fds:
                    raise OSError("descriptors cannot travel over pipes")
                view = memoryview(data)
                while view:
                    view = view[os.write(self.wfd, view):]
                return
            if fds:
                sent = self.sock.sendmsg([data[:1]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                       array.array("i", fds))])
                data = data[sent:]
            if data:
                self.sock.sendall(data)

    # ---- receiving ---------------------------------------------------------------------------

    def _read(self, n: int, fds: list[int]) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            if self.sock is None:
                chunk = os.read(self.rfd, n - len(buf))
            elif not buf:
                chunk, anc, _flags, _addr = self.sock.recvmsg(
                    n, socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize))
                for level, kind, payload in anc:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        got = array.array("i")
                        got.frombytes(payload[:len(payload) - len(payload) % got.itemsize])
                        for fd in got:
                            os.set_inheritable(fd, False)
                            fds.append(fd)
            else:
                chunk = self.sock.recv(n - len(buf))
            if not chunk:
                for fd in fds:
                    os.close(fd)
                raise EOFError("the other end closed the channel")
            buf += chunk
        return bytes(buf)

    def recv(self) -> tuple[dict[str, Any], list[int]]:
        """The next message and the descriptors that came with it (the caller owns them).

        Raises:
            EOFError: the other end closed the channel.
        """
        fds: list[int] = []
        (length,) = _LEN.unpack(self._read(_LEN.size, fds))
        if length > MAX_MESSAGE:
            raise EOFError(f"message of {length} bytes: the channel is out of step")
        body = self._read(length, fds)
        return json.loads(body), fds

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        for fd in {self.rfd, self.wfd} - {-1}:
            try:
                os.close(fd)
            except OSError:
                pass
