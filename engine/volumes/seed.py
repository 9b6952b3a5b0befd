"""Seeding a volume with the image's content, the way Docker fills a new volume.

When an empty volume is mounted where the image has files (``VOLUME /var/lib/db`` in a database
image, or ``-v data:/etc/app``), Docker first copies what the image holds at that path into the
volume, so the container finds its defaults there and the copy then lives on in the volume.

Two rules keep that copy honest:

* **Stay inside the root filesystem.** The path is resolved with every symlink interpreted
  *relative to the container's root* (``/etc -> /usr/etc`` means ``ROOTFS/usr/etc``, ``..``
  never climbs above ``ROOTFS``; :func:`portside.engine.rootfs.resolve`), the way the container
  itself would see it. A hostile image cannot make the engine read host files.
* **Copy, never follow.** Inside the tree nothing is dereferenced: symlinks are recreated as
  symlinks, hard links as hard links, devices and FIFOs with ``mknod``; modes, owners, times and
  extended attributes (file capabilities included) are kept. Owners are set before modes and
  capabilities, because ``chown`` clears set-id bits and ``security.capability``.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

__all__ = ["copy_tree", "is_empty_dir"]


def is_empty_dir(path: Path) -> bool:
    """Whether ``path`` is a directory with no entries."""
    with os.scandir(path) as it:
        return next(it, None) is None


def copy_tree(src: Path, dst: Path) -> None:
    """Copy the *contents* of directory ``src`` into the existing directory ``dst``.

    ``dst`` also takes ``src``'s own mode, owner and extended attributes, as Docker does for a
    seeded volume's root.

    Raises:
        OSError: a read or write failed (the caller cleans up).
    """
    links: dict[tuple[int, int], str] = {}
    src_st = os.lstat(src)
    _copy_dir_contents(os.fspath(src), os.fspath(dst), links)
    _apply_meta(os.fspath(src), os.fspath(dst), src_st)


def _copy_dir_contents(src: str, dst: str, links: dict[tuple[int, int], str]) -> None:
    with os.scandir(src) as it:
        entries = list(it)
    for entry in entries:
        s = entry.path
        d = os.path.join(dst, entry.name)
        st = entry.stat(follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(d, 0o700)
            _copy_dir_contents(s, d, links)
            _apply_meta(s, d, st)
            continue
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            os.link(links[key], d)
            continue
        if stat.S_ISLNK(mode):
            os.symlink(os.readlink(s), d)
        elif stat.S_ISREG(mode):
            _copy_file(s, d, st.st_size)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            os.mknod(d, mode, st.st_rdev)
        else:
            continue  # sockets belong to a process, not to content
        _apply_meta(s, d, st)
        if st.st_nlink > 1:
            links[key] = d


def _copy_file(src: str, dst: str, size: int) -> None:
    fin = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                       0o600)
        try:
            offset = 0
            while offset < size:
                sent = os.sendfile(fout, fin, offset, min(size - offset, 1 << 30))
                if sent == 0:
                    break
                offset += sent
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def _apply_meta(src: str, dst: str, st: os.stat_result) -> None:
    is_link = stat.S_ISLNK(st.st_mode)
    try:
        os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    except PermissionError:
        pass  # rootless: the files stay ours, which is what a rootless user can have
    if not is_link:
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    _copy_xattrs(src, dst)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_xattrs(src: str, dst: str) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return
        raise
    for name in names:
        try:
            os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False),
                        follow_symlinks=False)
        except OSError as exc:
            # security.selinux on a host without SELinux, trusted.* without CAP_SYS_ADMIN:
            # the data is what matters, labels the target cannot hold are dropped.
            if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.EACCES):
                raise
