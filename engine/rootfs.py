"""Looking into a root filesystem without ever leaving it: paths, files, users and groups.

The files of an image, a container, a build context or a volume belong to whoever made them.
If the engine (running as root) resolved ``/etc/passwd`` or ``/data/x`` inside such a tree with
ordinary path lookup, a symlink planted there (``/etc/passwd -> /etc/shadow``, ``/data -> /``)
would make it read or write the host's files instead. Every lookup inside a tree therefore goes
through ``openat2(2)`` relative to a directory fd of its root:

* ``RESOLVE_IN_ROOT`` (:func:`openat2_in_root`, :func:`resolve`): the kernel treats the fd as
  ``/`` for the whole lookup, as a process chrooted there would see it: absolute symlinks
  resolve against it, ``..`` stops at it;
* ``RESOLVE_BENEATH`` (:func:`resolve` with ``beneath=True``, for a build context): a path or
  symlink that would leave the tree is refused;

``/proc`` magic links are refused either way, and there is no check-then-use race in the lookup.

On top of that: :func:`read_file` (a small file such as ``/etc/passwd``),
:func:`resolve_user`, Docker's ``-u user[:group]`` (and a Dockerfile's ``USER``) against the
tree's ``/etc/passwd`` and ``/etc/group``, the one user lookup of the engine: a container's
process, an ``exec`` and a build's ``RUN`` get the same ids and groups, with the same errors;
and :func:`resolve_groups`, Docker's ``--group-add`` against ``/etc/group``.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

from portside.engine.errors import EngineError, InvalidArgument, NotFound, RuntimeFailure

__all__ = ["openat2_in_root", "resolve", "read_file", "resolve_user", "resolve_groups",
           "RESOLVE_IN_ROOT", "RESOLVE_BENEATH"]

SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def openat2_in_root(root_fd: int, path: str, flags: int, mode: int = 0, *,
                    beneath: bool = False) -> int:
    """Open ``path`` relative to ``root_fd`` as if ``root_fd`` were ``/`` (``RESOLVE_IN_ROOT``).

    Args:
        root_fd: a directory fd (``O_PATH`` is fine) standing for the container's root.
        path: the path inside the container; absolute or relative, both mean from the root.
        flags: ``os.O_*`` flags; add ``os.O_NOFOLLOW`` to open a final symlink itself.
        mode: the mode for ``O_CREAT``.
        beneath: refuse (``EXDEV``) a lookup that would leave the root instead of confining it
            (``RESOLVE_BENEATH``; absolute symlinks are refused too).
    Returns:
        the new fd (close-on-exec).
    Raises:
        OSError: as ``openat2(2)`` fails (ENOENT, ELOOP, ENOTDIR…).
    """
    rel = path.lstrip("/") or "."
    how = _OpenHow(flags | os.O_CLOEXEC, mode,
                   (RESOLVE_BENEATH if beneath else RESOLVE_IN_ROOT) | RESOLVE_NO_MAGICLINKS)
    fd = _libc.syscall(SYS_OPENAT2, root_fd, os.fsencode(rel), ctypes.byref(how),
                       ctypes.sizeof(how))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(fd)


def resolve(root: Path | str, path: str, *, follow_last: bool = True,
            beneath: bool = False) -> Path:
    """The host path that ``path`` names inside the tree ``root``, symlinks resolved there.

    Args:
        root: the tree's root on the host (a root filesystem, a build context, a volume).
        path: the path inside it; absolute or relative, both mean from the root.
        follow_last: resolve a symlink in the last component (False: name the link itself).
        beneath: a path that leaves the tree is an error instead of being confined to it.

    Returns:
        ``root`` joined with the resolved path. Components that do not exist (yet) are kept as
        written after the longest prefix that does, with ``..`` among them never climbing above
        that prefix; so the result is always inside ``root``.

    Raises:
        InvalidArgument: too many levels of symbolic links; with ``beneath``, the path or a
            symlink on it leads outside the tree.
        NotFound: ``root`` itself does not exist.
    """
    parts = [p for p in str(path).split("/") if p not in ("", ".")]
    last = None
    if not follow_last and parts and parts[-1] != "..":
        last = parts.pop()
    try:
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise NotFound(f"no such folder: {root}") from exc
    try:
        real_root = os.readlink(f"/proc/self/fd/{root_fd}")
        known = len(parts)  # the longest prefix of parts that exists
        while True:
            try:
                fd = openat2_in_root(root_fd, "/".join(parts[:known]), os.O_PATH,
                                     beneath=beneath)
                break
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise InvalidArgument(f"too many levels of symbolic links: {path}") from None
                if exc.errno == errno.EXDEV:
                    raise InvalidArgument(f"{path} leads outside {root}") from None
                if exc.errno not in (errno.ENOENT, errno.ENOTDIR) or known == 0:
                    raise InvalidArgument(f"cannot resolve {path} in {root}: "
                                          f"{exc.strerror}") from None
                known -= 1
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
    finally:
        os.close(root_fd)
    if real != real_root and not real.startswith(real_root.rstrip("/") + "/"):
        raise InvalidArgument(f"{path} leads outside {root}")  # cannot happen: the kernel confines
    inside = [p for p in real[len(real_root):].split("/") if p]
    rest: list[str] = []
    for part in parts[known:]:
        if part == "..":
            if rest:
                rest.pop()
        else:
            rest.append(part)
    return Path(root).joinpath(*inside, *rest, *([last] if last else []))


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


def _table(rootfs: Path | str, path: str) -> list[list[str]]:
    """The colon-separated rows of ``/etc/passwd`` or ``/etc/group`` (none when it is missing)."""
    try:
        text = read_file(rootfs, path).decode(errors="replace")
    except (EngineError, OSError):
        return []
    return [ln.split(":") for ln in text.splitlines() if ln and not ln.startswith("#")]


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def home_directory(rootfs: Path | str, uid: int) -> str:
    """The home folder ``/etc/passwd`` of the tree gives ``uid``, ``/`` without one: the
    ``HOME`` a process gets when its environment has none (runc's rule, which crun lacks for a
    uid without a passwd entry; portside sets it so both runtimes give the same)."""
    for row in _table(rootfs, "/etc/passwd"):
        if len(row) > 5 and row[2] == str(uid) and row[5]:
            return row[5]
    return "/"


def resolve_user(rootfs: Path | str, user: str) -> tuple[int, int, list[int]]:
    """Docker's ``-u`` and a Dockerfile's ``USER``: ``name|uid[:group|gid]`` resolved against
    the tree's ``/etc/passwd`` and ``/etc/group`` (read inside it, see :func:`read_file`).

    As Docker does (runc's user lookup): a name must be in ``/etc/passwd``; a number need not
    be (its group is then 0 unless the passwd entry of that uid says otherwise); without an
    explicit group, the supplementary groups are those whose member list names the user; the
    process's groups always begin with its primary group (``id`` prints ``groups=0(root)`` for
    root, ``-u 1234:5678`` gives ``groups=5678``).

    Returns:
        ``(uid, gid, groups)``; ``groups`` is the process's group list (primary first).

    Raises:
        InvalidArgument: a user or group name the tree does not know.
    """
    name, _, group = (user or "0").partition(":")
    passwd = _table(rootfs, "/etc/passwd")
    uid = _number(name)
    gid = 0
    login = None  # the passwd name, for group membership
    if uid is not None:
        for row in passwd:
            if len(row) > 3 and row[2] == name:
                login, gid = row[0], _number(row[3]) or 0
                break
    else:
        for row in passwd:
            if len(row) > 3 and row[0] == name:
                login, uid, gid = name, _number(row[2]) or 0, _number(row[3]) or 0
                break
        else:
            raise InvalidArgument(f"unable to find user {name}: no matching entries in passwd "
                                  "file")
    groups_file = _table(rootfs, "/etc/group")
    if group:
        found = _number(group)
        if found is None:
            rows = [r for r in groups_file if len(r) > 2 and r[0] == group]
            if not rows:
                raise InvalidArgument(f"unable to find group {group}: no matching entries in "
                                      "group file")
            found = _number(rows[0][2]) or 0
        return uid, found, [found]
    groups = [gid]
    if login:
        for row in groups_file:
            if len(row) > 3 and login in row[3].split(","):
                number = _number(row[2])
                if number is not None and number not in groups:
                    groups.append(number)
    return uid, gid, groups


#: The largest id a uid or gid may be (runc's user lookup refuses others).
MAX_ID = 2**31 - 1


def resolve_groups(rootfs: Path | str, names: list[str]) -> list[int]:
    """Docker's ``--group-add``: each group name or number, looked up in the tree's
    ``/etc/group`` (read inside it, see :func:`read_file`) by name or gid; a number the file
    does not have is taken as is. Duplicates are dropped, the order kept.

    Raises:
        InvalidArgument: a name the file does not have (``Unable to find group NAME``, Docker's
            message), or a number out of range.
    """
    if not names:
        return []
    rows = _table(rootfs, "/etc/group")
    out: list[int] = []
    for name in names:
        gid = next((int(r[2]) for r in rows if len(r) > 2 and r[2].isdigit()
                    and name in (r[0], r[2])), None)
        if gid is None:
            if not name.isdigit():
                raise InvalidArgument(f"Unable to find group {name}")
            gid = int(name)
            if gid > MAX_ID:
                raise InvalidArgument(f"uids and gids must be in range 0-{MAX_ID}")
        if gid not in out:
            out.append(gid)
    return out
