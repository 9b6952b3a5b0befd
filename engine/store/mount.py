"""The mount seam: every privileged mount the engine makes goes through a :class:`Mounter`.

A container's root filesystem is an *overlay*: overlayfs merges a stack of read-only *lower*
directories (the image's snapshots, topmost first) with one writable *upper* directory into a single
view at the *target*. Reads fall through the stack from top to bottom; writes copy the file up into
the upper directory first; deleting a lower file leaves a *whiteout* (a character device 0/0 of the
same name) in the layer above, which hides it. ``work`` is overlayfs's private scratch directory; it
must be empty and on the same filesystem as ``upper``. Without ``upper`` the overlay is read-only.

Mounting needs ``CAP_SYS_ADMIN``, so the engine talks to the :class:`~.mounter.Mounter` protocol and
unit tests pass a :class:`FakeMounter` that only records calls. :class:`LinuxMounter` is the real
thing, straight on the syscalls through ``ctypes``:

- overlays use the new mount API (``fsopen`` / ``fsconfig`` / ``fsmount`` / ``move_mount``)
  and add the lower directories one ``lowerdir+`` at a time (Linux >= 6.8), so an image of any
  depth mounts even though ``mount(2)``'s option string is limited to one page (4096 bytes);
- on older kernels it falls back to ``mount(2)``; when the option string would not fit a page, each
  lower directory is named through a short ``/proc/self/fd/<n>`` alias of an open descriptor
  (overlayfs resolves the path at mount time, so the alias is only needed for that instant);
- a single lower directory with no upper is a read-only bind mount (overlayfs wants two lowers).
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from portside.engine.errors import InvalidArgument, NotFound, RuntimeFailure
from portside.engine.records import field, record

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any

    from .mounter import Mounter

__all__ = ["Mounter", "LinuxMounter", "FakeMounter", "MountCall", "mount_points"]


def __getattr__(name: str):
    if name == "Mounter":  # the protocol lives in .mounter (it needs typing at run time)
        from .mounter import Mounter

        return Mounter
    raise AttributeError(name)

# <linux/mount.h>
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_RELATIME = 0x200000
MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8
FSOPEN_CLOEXEC = 0x1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 0x1
MOUNT_ATTR_RDONLY = 0x1
MOVE_MOUNT_F_EMPTY_PATH = 0x4
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
# Syscalls numbered from 424 up are the same on every Linux architecture.
SYS_MOVE_MOUNT = 429
SYS_FSOPEN = 430
SYS_FSCONFIG = 431
SYS_FSMOUNT = 432
SYS_MOUNT_SETATTR = 442

# mount(2) copies at most one page of option data.
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# fsconfig(2) copies at most 256 bytes of a string value.
_FSCONFIG_MAX = 255


def _check_overlay_args(lower: Sequence[Path], upper: Path | None, work: Path | None) -> None:
    if not lower:
        raise InvalidArgument("overlay needs at least one lower directory")
    if (upper is None) != (work is None):
        raise InvalidArgument("overlay needs both an upper and a work directory, or neither")


def _unescape_mountinfo(field_: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    out, i = [], 0
    while i < len(field_):
        if field_[i] == "\\" and i + 4 <= len(field_) and field_[i + 1:i + 4].isdigit():
            out.append(chr(int(field_[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field_[i])
            i += 1
    return "".join(out)


def mount_points(under: Path | None = None) -> list[Path]:
    """Return this process's mount points (from ``/proc/self/mountinfo``), optionally only
    those at or below ``under``; the last-mounted come last."""
    prefix = os.path.realpath(under) if under is not None else None
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            mp = _unescape_mountinfo(line.split(" ", 5)[4])
            if prefix is None or mp == prefix or mp.startswith(prefix.rstrip("/") + "/"):
                points.append(Path(mp))
    return points


class LinuxMounter:
    """The real :class:`Mounter`: ``mount(2)``, ``umount2(2)`` and the new mount API via ctypes.

    Args:
        new_api: use ``fsopen``/``fsconfig`` for overlays; ``None`` (default) decides by probing
            the kernel once; ``False`` forces ``mount(2)`` (tests exercise both paths).
    """

    def __init__(self, new_api: bool | None = None, userxattr: bool | None = None) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)  # libc: already loaded
        self._libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                     ctypes.c_ulong, ctypes.c_char_p]
        self._libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        self._libc.syscall.restype = ctypes.c_long
        self._new_api = new_api
        if userxattr is None:
            from portside.engine import rootless

            userxattr = rootless.in_namespace()
        #: rootless (inside a user namespace): overlayfs keeps its whiteout and opaque markers in
        #: user.* xattrs, the only ones we may write (Linux >= 5.11)
        self.userxattr = userxattr

    # ----- helpers ---------------------------------------------------------------------------

    def _syscall(self, nr: int, *args: Any) -> int:
        ctypes.set_errno(0)
        res = self._libc.syscall(ctypes.c_long(nr), *args)
        if res < 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        return int(res)

    def _mount(self, source: str | None, target: str, fstype: str | None, flags: int,
               data: str | None) -> None:
        enc = (lambda s: None if s is None else os.fsencode(s))
        if self._libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))

    def _supports_lowerdir_plus(self) -> bool:
        if self._new_api is None:
            try:
                fd = self._syscall(SYS_FSOPEN, b"overlay", ctypes.c_uint(FSOPEN_CLOEXEC))
            except OSError:
                self._new_api = False
            else:
                try:
                    self._fsconfig(fd, "lowerdir+", "/")
                    self._new_api = True
                except OSError:
                    self._new_api = False  # no lowerdir+ before Linux 6.8
                finally:
                    os.close(fd)
        return bool(self._new_api)

    def _fsconfig(self, fd: int, key: str, value: str) -> None:
        self._syscall(SYS_FSCONFIG, ctypes.c_int(fd), ctypes.c_uint(FSCONFIG_SET_STRING),
                      os.fsencode(key), os.fsencode(value), ctypes.c_int(0))

    def _flag(self, fd: int, name: bytes) -> None:
        self._syscall(SYS_FSCONFIG, ctypes.c_int(fd), ctypes.c_uint(FSCONFIG_SET_FLAG), name,
                      None, ctypes.c_int(0))

    @staticmethod
    def _fs_log(fd: int) -> str:
        # The filesystem context explains failures ("e overlay: ...") through read(2).
        msgs = []
        for _ in range(16):
            try:
                msg = os.read(fd, 4096)
            except OSError:
                break
            if not msg:
                break
            msgs.append(msg.decode(errors="replace").strip())
        return "; ".join(msgs)

    @staticmethod
    def _short(path: Path, stack: ExitStack, limit: int) -> str:
        """``path`` itself, or a ``/proc/self/fd/<n>`` alias when it is long or needs escaping."""
        s = os.fspath(path)
        if len(s) <= limit and not any(c in s for c in ",:\\"):
            return s
        fd = os.open(s, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        stack.callback(os.close, fd)
        return f"/proc/self/fd/{fd}"

    # ----- Mounter ---------------------------------------------------------------------------

    def mount_overlay(self, lower: Sequence[Path], upper: Path | None, work: Path | None,
                      target: Path, *, readonly: bool = False, volatile: bool = False) -> None:
        """See :meth:`Mounter.mount_overlay`."""
        _check_overlay_args(lower, upper, work)
        if upper is None and len(lower) == 1:
            self.bind(lower[0], target, readonly=True, recursive=False)
            return
        volatile = volatile and upper is not None and LinuxMounter._volatile is not False
        try:
            try:
                self._overlay(lower, upper, work, target, readonly, volatile)
            except OSError as exc:
                if not volatile or exc.errno != errno.EINVAL:
                    raise
                # before Linux 5.10 the option is unknown: mount without it, and remember that
                # only when that works (EINVAL has other causes, an unfit upper directory)
                self._overlay(lower, upper, work, target, readonly, False)
                LinuxMounter._volatile = False
        except OSError as exc:
            if self.userxattr and exc.errno in (errno.EINVAL, errno.EPERM):
                from portside.engine.rootless.storage import rootless_overlay_failure

                raise rootless_overlay_failure(exc) from exc
            raise RuntimeFailure(f"mount overlay on {target}: {exc.strerror}"
                                 f"{' (' + exc.filename + ')' if exc.filename else ''}") from exc

    #: whether the kernel takes overlayfs' ``volatile`` option (None: not tried yet)
    _volatile: bool | None = None

    def _overlay(self, lower: Sequence[Path], upper: Path | None, work: Path | None,
                 target: Path, readonly: bool, volatile: bool) -> None:
        if self._supports_lowerdir_plus():
            self._overlay_new_api(lower, upper, work, target, readonly, volatile)
        else:
            self._overlay_legacy(lower, upper, work, target, readonly, volatile)

    def _overlay_new_api(self, lower: Sequence[Path], upper: Path | None, work: Path | None,
                         target: Path, readonly: bool, volatile: bool = False) -> None:
        with ExitStack() as stack:
            fd = self._syscall(SYS_FSOPEN, b"overlay", ctypes.c_uint(FSOPEN_CLOEXEC))
            stack.callback(os.close, fd)
            try:
                self._fsconfig(fd, "source", "overlay")
                for d in lower:
                    self._fsconfig(fd, "lowerdir+", self._short(d, stack, _FSCONFIG_MAX))
                if upper is not None and work is not None:
                    self._fsconfig(fd, "upperdir", self._short(upper, stack, _FSCONFIG_MAX))
                    self._fsconfig(fd, "workdir", self._short(work, stack, _FSCONFIG_MAX))
                    if volatile:
                        self._flag(fd, b"volatile")
                if self.userxattr:
                    self._flag(fd, b"userxattr")
                self._syscall(SYS_FSCONFIG, ctypes.c_int(fd), ctypes.c_uint(FSCONFIG_CMD_CREATE),
                              None, None, ctypes.c_int(0))
            except OSError as exc:
                log = self._fs_log(fd)
                raise OSError(exc.errno, (exc.strerror or "") + (f": {log}" if log else "")) \
                    from None
            attrs = MOUNT_ATTR_RDONLY if readonly or upper is None else 0
            mfd = self._syscall(SYS_FSMOUNT, ctypes.c_int(fd), ctypes.c_uint(FSMOUNT_CLOEXEC),
                                ctypes.c_uint(attrs))
            stack.callback(os.close, mfd)
            self._syscall(SYS_MOVE_MOUNT, ctypes.c_int(mfd), b"", ctypes.c_int(AT_FDCWD),
                          os.fsencode(os.fspath(target)), ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH))

    def _overlay_legacy(self, lower: Sequence[Path], upper: Path | None, work: Path | None,
                        target: Path, readonly: bool, volatile: bool = False) -> None:
        with ExitStack() as stack:
            def options(limit: int) -> str:
                opts = "lowerdir=" + ":".join(self._short(d, stack, limit) for d in lower)
                if upper is not None and work is not None:
                    opts += (f",upperdir={self._short(upper, stack, limit)}"
                             f",workdir={self._short(work, stack, limit)}")
                    if volatile:
                        opts += ",volatile"
                if self.userxattr:
                    opts += ",userxattr"
                return opts
            data = options(_PAGE)
            if len(data) >= _PAGE:
                data = options(0)  # every path through a short fd alias
            if len(data) >= _PAGE:
                raise OSError(errno.E2BIG, f"{len(lower)} lower directories do not fit mount(2)")
            flags = MS_RDONLY if readonly or upper is None else 0
            self._mount("overlay", os.fspath(target), "overlay", flags, data)

    def bind(self, source: Path, target: Path, *, readonly: bool = False,
             recursive: bool = True) -> None:
        """See :meth:`Mounter.bind`."""
        try:
            self._mount(os.fspath(source), os.fspath(target), None,
                        MS_BIND | (MS_REC if recursive else 0), None)
        except OSError as exc:
            raise RuntimeFailure(f"bind {source} on {target}: {exc.strerror}") from exc
        if readonly:
            try:
                self._make_readonly(target, recursive)
            except OSError as exc:
                self._libc.umount2(os.fsencode(os.fspath(target)), MNT_DETACH)
                raise RuntimeFailure(f"bind {source} read-only on {target}: {exc.strerror}") \
                    from exc

    def _make_readonly(self, target: Path, recursive: bool) -> None:
        # mount_setattr (Linux 5.12) keeps the other flags and can recurse into submounts.
        attr = (ctypes.c_uint64 * 4)(MOUNT_ATTR_RDONLY, 0, 0, 0)
        try:
            self._syscall(SYS_MOUNT_SETATTR, ctypes.c_int(AT_FDCWD),
                          os.fsencode(os.fspath(target)),
                          ctypes.c_uint(AT_RECURSIVE if recursive else 0),
                          ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
            return
        except OSError as exc:
            if exc.errno != errno.ENOSYS:
                raise
        # A read-only remount must repeat the locked flags of the source, or it gets EPERM.
        st = os.statvfs(target)
        keep = 0
        for st_flag, ms_flag in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV),
                                 (os.ST_NOEXEC, MS_NOEXEC), (os.ST_NOATIME, MS_NOATIME),
                                 (os.ST_NODIRATIME, MS_NODIRATIME),
                                 (os.ST_RELATIME, MS_RELATIME)):
            if st.f_flag & st_flag:
                keep |= ms_flag
        self._mount(None, os.fspath(target), None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep, None)

    def unmount(self, target: Path, *, lazy: bool = False) -> None:
        """See :meth:`Mounter.unmount`."""
        flags = UMOUNT_NOFOLLOW | (MNT_DETACH if lazy else 0)
        if self._libc.umount2(os.fsencode(os.fspath(target)), flags) != 0:
            err = ctypes.get_errno()
            if err in (errno.EINVAL, errno.ENOENT):
                raise NotFound(f"not a mount point: {target}")
            raise RuntimeFailure(f"unmount {target}: {os.strerror(err)}")

    def is_mounted(self, target: Path) -> bool:
        """See :meth:`Mounter.is_mounted`."""
        real = Path(os.path.realpath(target))
        return real in mount_points(real)


@record
class MountCall:
    """One call recorded by :class:`FakeMounter`: the method name and its arguments."""

    op: str
    args: dict[str, Any] = field(default_factory=dict)


class FakeMounter:
    """A :class:`Mounter` for unit tests: records every call and tracks what is "mounted".

    It validates arguments like :class:`LinuxMounter` and raises ``NotFound`` when unmounting
    something it never mounted, so code under test meets the same contract; nothing touches the
    kernel. ``calls`` lists every call in order; ``mounted`` the current targets.
    """

    def __init__(self) -> None:
        self.calls: list[MountCall] = []
        self.mounted: list[Path] = []

    def mount_overlay(self, lower: Sequence[Path], upper: Path | None, work: Path | None,
                      target: Path, *, readonly: bool = False, volatile: bool = False) -> None:
        """Record an overlay mount (see :meth:`Mounter.mount_overlay`)."""
        _check_overlay_args(lower, upper, work)
        self.calls.append(MountCall("mount_overlay", {
            "lower": [Path(p) for p in lower], "upper": upper, "work": work,
            "target": Path(target), "readonly": readonly, "volatile": volatile}))
        self.mounted.append(Path(target))

    def bind(self, source: Path, target: Path, *, readonly: bool = False,
             recursive: bool = True) -> None:
        """Record a bind mount (see :meth:`Mounter.bind`)."""
        self.calls.append(MountCall("bind", {"source": Path(source), "target": Path(target),
                                             "readonly": readonly, "recursive": recursive}))
        self.mounted.append(Path(target))

    def unmount(self, target: Path, *, lazy: bool = False) -> None:
        """Record an unmount; ``NotFound`` if ``target`` is not mounted."""
        self.calls.append(MountCall("unmount", {"target": Path(target), "lazy": lazy}))
        if Path(target) not in self.mounted:
            raise NotFound(f"not a mount point: {target}")
        # Remove the most recent mount on that target (mounts stack).
        idx = len(self.mounted) - 1 - self.mounted[::-1].index(Path(target))
        del self.mounted[idx]

    def is_mounted(self, target: Path) -> bool:
        """Whether a recorded mount on ``target`` is still in place."""
        return Path(target) in self.mounted
