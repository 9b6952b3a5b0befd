"""Looking into a container's root filesystem without ever leaving it.

The files of an image or a container belong to whoever made them. If the engine (running as
root) resolved ``/etc/passwd`` or ``/data/x`` inside a root filesystem with ordinary path lookup,
a symlink planted there (``/etc/passwd -> /etc/shadow``, ``/data -> /``) would make it read or
write the host's files instead. Every lookup inside a root filesystem therefore goes through
:func:`openat2_in_root`: ``openat2(2)`` with ``RESOLVE_IN_ROOT`` relative to a directory fd of
the root, so the kernel itself treats that fd as ``/`` for the whole lookup (absolute symlinks
resolve against it, ``..`` stops at it, ``/proc`` magic links are refused), with no
check-then-use race.

On top of it: :func:`read_file` (a small file such as ``/etc/passwd``) and :func:`resolve_user`
(Docker's ``-u user[:group]`` against the image's ``/etc/passwd`` and ``/etc/group``).
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

from portside.engine.errors import EngineError, InvalidArgument, NotFound, RuntimeFailure

__all__ = ["openat2_in_root", "read_file", "resolve_user", "RESOLVE_IN_ROOT"]

SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def openat2_in_root(root_fd: int, path: str, flags: int, mode: int = 0) -> int:
    """Open ``path`` relative to ``root_fd`` as if ``root_fd`` were ``/`` (``RESOLVE_IN_ROOT``).

    Args:
        root_fd: a directory fd (``O_PATH`` is fine) standing for the container's root.
        path: the path inside the container; absolute or relative, both mean from the root.
        flags: ``os.O_*`` flags; add ``os.O_NOFOLLOW`` to open a final symlink itself.
        mode: the mode for ``O_CREAT``.
    Returns:
        the new fd (close-on-exec).
    Raises:
        OSError: as ``openat2(2)`` fails (ENOENT, ELOOP, ENOTDIR…).
    """
    rel = path.lstrip("/") or "."
    how = _OpenHow(flags | os.O_CLOEXEC, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    fd = _libc.syscall(SYS_OPENAT2, root_fd, os.fsencode(rel), ctypes.byref(how),
                       ctypes.sizeof(how))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(fd)


def read_file(rootfs: Path | str, path: str, limit: int = 16 << 20) -> bytes:
    """Read a (small) file of a root filesystem, resolved inside it (at most ``limit`` bytes).

    Raises:
        NotFound: no such file in the root filesystem.
        RuntimeFailure: it cannot be opened (a loop of links...).
        OSError: it cannot be read (a directory).
    """
    root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fd = openat2_in_root(root, path, os.O_RDONLY)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                raise NotFound(f"no such file in the root filesystem: {path}") from None
            raise RuntimeFailure(f"cannot open {path}: {exc.strerror}") from exc
    finally:
        os.close(root)
    try:
        chunks = []
        total = 0
        while total < limit:
            data = os.read(fd, 65536)
            if not data:
                break
            chunks.append(data)
            total += len(data)
        return b"".join(chunks)
    finally:
        os.close(fd)


def resolve_user(rootfs: Path, user: str) -> tuple[int, int, list[int]]:
    """Docker's ``-u``: ``name|uid[:group|gid]`` resolved against the container's
    ``/etc/passwd`` and ``/etc/group`` (read without following links out of the rootfs).

    Raises:
        InvalidArgument: a name the container does not know.
    """
    if not user:
        return 0, 0, []
    name, _, group = user.partition(":")

    def table(path: str) -> list[list[str]]:
        try:
            text = read_file(rootfs, path).decode(errors="replace")
        except (NotFound, EngineError, OSError):
            return []
        return [ln.split(":") for ln in text.splitlines() if ln and not ln.startswith("#")]

    passwd = None
    if name.isdigit():
        uid = int(name)
        gid = 0
        for row in table("/etc/passwd") if not group else []:
            if len(row) > 3 and row[2] == name:
                gid = int(row[3])
    else:
        passwd = table("/etc/passwd")
        match = [r for r in passwd if r and r[0] == name and len(r) > 3]
        if not match:
            raise InvalidArgument(f"unable to find user {name}: no matching entries in passwd file")
        uid, gid = int(match[0][2]), int(match[0][3])
    groups: list[int] = []
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            rows = [r for r in table("/etc/group") if r and r[0] == group and len(r) > 2]
            if not rows:
                raise InvalidArgument(f"unable to find group {group}: no matching entries in "
                                      f"group file")
            gid = int(rows[0][2])
    return uid, gid, groups
