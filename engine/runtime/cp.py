"""``docker cp``: copying files out of and into a container without ever leaving its root.

The danger: the container's files belong to whoever controls the container. If ``cp`` resolved
``/data/x`` with ordinary path lookup on the host, a symlink the container planted (``/data -> /``,
``x -> ../../../etc/shadow``) would make the engine — running as root — read or overwrite the host's
files. Docker and podman have both shipped CVEs of exactly this shape.

The defence here is the kernel's own: every path inside the container is opened with
``openat2(2)`` and ``RESOLVE_IN_ROOT`` relative to a directory fd of the container's root. With that
flag the kernel treats the fd as ``/`` for the whole lookup — absolute symlinks resolve against it,
``..`` stops at it, and ``/proc`` magic links are refused (``RESOLVE_NO_MAGICLINKS``) — so no
symlink can point outside, however it is written, and there is no check-then-use race. Below a
resolved directory, entries are only ever opened with ``O_NOFOLLOW`` relative to their parent fd.

Volumes: a path under a mount destination (``-v data:/data``, ``/etc/hostname``) is looked up in
that mount's source, confined to it in the same way, as the container would see it.

Docker's rules for where things land (``cp SRC DEST``):

* a file to an existing directory goes inside it; to anything else it becomes that path;
* a directory to an existing directory goes inside it (``SRC/.``: its *contents* do); to a path that
  does not exist, it is created there;
* ``-`` as DEST writes a tar stream of SRC; ``-`` as SRC extracts a tar stream into the DEST
  directory.

Symbolic links in SRC (``cp -L``, ``get_archive(follow_links=True)``): without ``-L`` every link
but the last is followed and a final link is copied as a link, as Docker does. With ``-L`` the final
link is followed too, *inside the container*: :meth:`ContainerFS.resolve` walks the path one
component at a time, reads each link where the container would (its root or the volume that holds
it) and restarts absolute targets at the container's ``/``, so ``/pw -> /etc/passwd`` copies the
container's ``/etc/passwd`` as a regular file named ``pw`` and never a link to the host's. A link
whose target the container does not have is ``Could not find the file``, even if the host has that
path. For a directory only that top-level link is followed; links inside it are copied as links.
The walk decides *which* file is meant; the opens that read it are still ``RESOLVE_IN_ROOT``, so a
container that swaps a component for a link meanwhile still cannot reach outside.
On the way in, ``-L`` follows a link on the host (the caller's own path), as Docker does.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat
import tarfile
from pathlib import Path

from portside.engine.errors import InvalidArgument, NotFound, RuntimeFailure
from portside.engine.records import record
from portside.engine.rootfs import openat2_in_root
from portside.engine import tarcompat  # noqa: F401  (PEP 706 filters on Debian 12's Python 3.11.2)

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import BinaryIO, Iterator


#: Links followed in one path before giving up (Linux's own limit, MAXSYMLINKS).
MAX_LINKS = 40


def _norm(path: str) -> str:
    """Lexically normalised absolute path inside the container (``..`` stops at ``/``)."""
    return posixpath.normpath("/" + path.lstrip("/")).replace("//", "/")


@record
class ContainerFS:
    """A container's file tree as the container sees it: its rootfs plus mounts over it.

    Args:
        rootfs: the mounted merged root filesystem on the host.
        mounts: ``(destination in the container, source directory or file on the host)``.
    """

    rootfs: Path
    mounts: list[tuple[str, str]]
    #: destinations of read-only mounts; ``rootfs_readonly`` for ``--read-only`` containers
    readonly: tuple[str, ...] = ()
    rootfs_readonly: bool = False
    #: the container's name, for messages
    name: str = ""

    def missing(self, path: str, followed_from: str = "") -> NotFound:
        """Docker's error for a path the container does not have."""
        where = f" in container {self.name}" if self.name else " in container"
        via = f" (the link {followed_from} points there)" if followed_from else ""
        return NotFound(f"Could not find the file {path}{where}{via}")

    def writable(self, path: str) -> bool:
        """Whether ``path`` lies on a writable tree (not a ``:ro`` mount, not a read-only root)."""
        norm = _norm(path)
        best = ""
        for dest, _source in self.mounts:
            d = _norm(dest)
            if (norm == d or norm.startswith(d.rstrip("/") + "/")) and len(d) > len(best):
                best = d
        if not best:
            return not self.rootfs_readonly
        return best not in {_norm(d) for d in self.readonly}

    def locate(self, path: str) -> tuple[str, str]:
        """Which tree holds ``path``: ``(host directory acting as root, path inside it)``."""
        norm = _norm(path)
        best = ("", str(self.rootfs), norm)
        for dest, source in self.mounts:
            d = _norm(dest)
            if (norm == d or norm.startswith(d.rstrip("/") + "/")) and len(d) > len(best[0]):
                best = (d, source, "/" + norm[len(d):].lstrip("/"))
        _, base, inner = best
        if os.path.isfile(base) and not os.path.isdir(base):
            # A file mount (/etc/hostname): its "root" is its directory, inner is its name.
            return os.path.dirname(base), "/" + os.path.basename(base) + inner.rstrip("/")
        return base, inner

    @contextlib.contextmanager
    def open(self, path: str, flags: int = os.O_RDONLY, mode: int = 0,
             follow: bool = True) -> Iterator[int]:
        """An fd for ``path`` resolved inside the container (closed after the block).

        Raises:
            NotFound: no such file in the container.
        """
        base, inner = self.locate(path)
        with self.open_located(base, inner, flags, path, mode, follow) as fd:
            yield fd

    @contextlib.contextmanager
    def open_located(self, base: str, inner: str, flags: int, shown: str, mode: int = 0,
                     follow: bool = True) -> Iterator[int]:
        """Like :meth:`open` for a path already split by :meth:`locate` (``shown`` in errors)."""
        path = shown
        root_fd = os.open(base, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            try:
                fd = openat2_in_root(root_fd, inner, flags | (0 if follow else os.O_NOFOLLOW), mode)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    raise self.missing(path) from exc
                raise RuntimeFailure(f"cannot open {path} in container: {exc.strerror}") from exc
        finally:
            os.close(root_fd)
        try:
            yield fd
        finally:
            os.close(fd)

    def lstat(self, path: str) -> os.stat_result | None:
        """Stat ``path`` without following a final symlink; None when it does not exist."""
        try:
            with self.open(path, os.O_PATH, follow=False) as fd:
                return os.fstat(fd)
        except NotFound:
            return None

    def stat(self, path: str) -> os.stat_result | None:
        """Stat ``path`` following symlinks (inside the container); None when missing."""
        try:
            with self.open(path, os.O_PATH) as fd:
                return os.fstat(fd)
        except NotFound:
            return None

    def _readlink(self, path: str) -> str | None:
        """The target of ``path`` when it is a symbolic link; None when it is anything else or
        missing. ``path``'s parent must already be free of links."""
        base, inner = self.locate(path)
        parent, leaf = posixpath.split(inner)
        if not leaf:
            return None  # a tree's root (the container's / or a mount point) is no link
        try:
            root_fd = os.open(base, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            pfd = openat2_in_root(root_fd, parent or "/", os.O_PATH | os.O_DIRECTORY)
        except OSError:
            return None
        finally:
            os.close(root_fd)
        try:
            return os.readlink(leaf, dir_fd=pfd)
        except OSError:  # EINVAL: not a link; ENOENT: missing
            return None
        finally:
            os.close(pfd)

    def resolve(self, path: str, *, follow: bool = True) -> str:
        """``path`` with its symbolic links resolved as the container sees them.

        Components are taken one at a time; a link's target replaces it (an absolute one starts
        again at the container's ``/``, ``..`` stops there), and each is read in the tree that
        holds it, so a link into a volume continues in the volume. Components that do not exist
        are kept as they are: the result names what the container would open, whether or not it
        is there (the caller finds out when it opens it).

        Args:
            path: an absolute path inside the container (lexically normalised by the caller).
            follow: also follow a final link (``cp -L``); otherwise it is left as it is.
        Returns:
            the absolute path, free of links (``/`` joined, no ``.`` or ``..``).
        Raises:
            InvalidArgument: more than :data:`MAX_LINKS` links (a loop).
        """
        todo = [p for p in path.split("/") if p]
        todo.reverse()
        done: list[str] = []
        hops = 0
        while todo:
            part = todo.pop()
            if part == ".":
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            here = "/" + "/".join([*done, part])
            target = None if (not todo and not follow) else self._readlink(here)
            if target is None:
                done.append(part)
                continue
            hops += 1
            if hops > MAX_LINKS:
                where = f" in container {self.name}" if self.name else ""
                raise InvalidArgument(f"too many levels of symbolic links: {path}{where}")
            if target.startswith("/"):
                done = []
            todo.extend(reversed([p for p in target.split("/") if p]))
        return "/" + "/".join(done)


# ----------------------------------------------------------------------------------- out of the container


def _tarinfo(name: str, st: os.stat_result) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.mtime = int(st.st_mtime)
    return ti


def _add_entry(tf: tarfile.TarFile, dir_fd: int, entry: str, name: str) -> None:
    """Add ``entry`` (a name inside ``dir_fd``, never followed) to the tar as ``name``."""
    st = os.lstat(entry, dir_fd=dir_fd)
    ti = _tarinfo(name, st)
    if stat.S_ISREG(st.st_mode):
        fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        with os.fdopen(fd, "rb") as f:
            ti.size = os.fstat(f.fileno()).st_size
            tf.addfile(ti, f)
        return
    if stat.S_ISDIR(st.st_mode):
        ti.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        ti.type = tarfile.SYMTYPE
        ti.linkname = os.readlink(entry, dir_fd=dir_fd)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(st.st_mode):
        ti.type = tarfile.FIFOTYPE
    else:
        return  # sockets are not archived
    tf.addfile(ti)


def source_path(fs: ContainerFS, path: str, *, follow: bool = False) -> str:
    """Where ``cp`` reads SRC ``path`` in the container: its links resolved as Docker does.

    Every link before the last component is followed; the last one too with ``follow``
    (``-L``) or when ``path`` ends in ``/`` or ``/.`` (a directory is meant, so a link to one is
    entered). ``..`` in ``path`` itself is lexical, as Docker's is; in link targets it is not.

    Raises:
        NotFound: the container has no such file (naming the link when one led there).
        InvalidArgument: a loop of links.
    """
    norm = _norm(path)
    real = fs.resolve(norm, follow=follow or path.endswith(("/", "/.")))
    if fs.lstat(real) is None:
        raise fs.missing(real, followed_from=path) if real != norm else fs.missing(path)
    return real


def write_archive(fs: ContainerFS, path: str, out: BinaryIO, *,
                  follow: bool = False) -> os.stat_result:
    """Write a tar stream of ``path`` (file, directory or symlink) from the container to ``out``.

    Entries are named after ``path``'s last component; with a trailing ``/.`` they are the
    directory's contents (named ``./…``). With ``follow`` (``cp -L``) a final symbolic link is
    followed inside the container and its target archived under the link's name.

    Returns:
        the ``lstat`` of what was archived (the link's target with ``follow``).
    Raises:
        NotFound: no such path in the container (or the link's target is missing).
    """
    contents = path.endswith("/.")
    name = posixpath.basename(_norm(path)) or "."
    real = source_path(fs, path, follow=follow)
    base, inner = fs.locate(real)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        if contents or inner == "/":
            # The directory itself is a root we resolve in (the container's / or a volume).
            prefix = "." if contents else name
            with fs.open_located(base, inner, os.O_RDONLY | os.O_DIRECTORY, path) as dfd:
                st = os.fstat(dfd)
                tf.addfile(_dir_info(prefix, st))
                _walk(tf, dfd, prefix)
            return st
        parent, leaf = posixpath.split(inner)
        with fs.open_located(base, parent or "/", os.O_RDONLY | os.O_DIRECTORY, path) as pfd:
            try:
                st = os.lstat(leaf, dir_fd=pfd)
            except FileNotFoundError as exc:
                raise fs.missing(path) from exc
            if follow and stat.S_ISLNK(st.st_mode):
                # resolve() found no link here: the container swapped one in meanwhile, and a
                # link is exactly what -L must never hand over.
                raise RuntimeFailure(f"{path} changed in container {fs.name} while it was "
                                     "being copied")
            _add_entry(tf, pfd, leaf, name)
            if stat.S_ISDIR(st.st_mode):
                dfd = os.open(leaf, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                              dir_fd=pfd)
                try:
                    _walk(tf, dfd, name)
                finally:
                    os.close(dfd)
            return st


def _dir_info(name: str, st: os.stat_result) -> tarfile.TarInfo:
    ti = _tarinfo(name, st)
    ti.type = tarfile.DIRTYPE
    return ti


def _walk(tf: tarfile.TarFile, dir_fd: int, prefix: str) -> None:
    for entry in sorted(os.listdir(dir_fd)):
        name = f"{prefix}/{entry}"
        _add_entry(tf, dir_fd, entry, name)
        st = os.lstat(entry, dir_fd=dir_fd)
        if stat.S_ISDIR(st.st_mode):
            sub = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=dir_fd)
            try:
                _walk(tf, sub, name)
            finally:
                os.close(sub)


def _host_filter(archive: bool):
    """What may land on the host from a container: never device nodes (a container can mknod
    them); owners become the caller's unless ``archive`` (``cp -a``), as with Docker."""
    uid, gid = os.geteuid(), os.getegid()

    def host_filter(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        member = tarfile.tar_filter(member, path)
        if member.ischr() or member.isblk():
            return None
        if not archive:
            member = member.replace(uid=uid, gid=gid, uname="", gname="", deep=False)
        return member

    return host_filter


def copy_out(fs: ContainerFS, src: str, dest: str, *, archive: bool = False,
             follow: bool = False) -> None:
    """``cp [-L] CONTAINER:SRC DEST`` onto the host with Docker's placement rules.

    With ``follow`` a final link in SRC is followed inside the container (see the module's
    docstring): DEST gets the target's content under the link's name, never a link.

    Raises:
        NotFound: SRC (or the target of its link) is missing. InvalidArgument: DEST's parent is
        missing, or a directory would overwrite a file.
    """
    import tempfile

    st = fs.lstat(source_path(fs, src, follow=follow))
    if st is None:  # gone since it was resolved
        raise fs.missing(src)
    src_is_dir = stat.S_ISDIR(st.st_mode)
    if src.endswith("/") and not src_is_dir:
        raise InvalidArgument(f"not a directory: {src}")
    contents = src.endswith("/.")
    dest_path = Path(dest)
    if dest_path.is_dir():
        target_dir = dest_path
        name = None if contents else (posixpath.basename(_norm(src)) or None)
    else:
        if dest.endswith("/") :
            raise InvalidArgument(f"destination directory {dest} does not exist")
        if not dest_path.parent.is_dir():
            raise InvalidArgument(f"destination directory {dest_path.parent} does not exist")
        if src_is_dir:
            dest_path.mkdir()
            target_dir, name, contents = dest_path, None, True
        else:
            target_dir, name = dest_path.parent, dest_path.name
    with tempfile.TemporaryFile() as spool:
        write_archive(fs, src if not (contents and not src.endswith("/.")) else
                      src.rstrip("/") + "/.", spool, follow=follow)
        spool.seek(0)
        base = posixpath.basename(_norm(src))
        with tarfile.open(fileobj=spool, mode="r") as tf:
            members = []
            for m in tf.getmembers():
                if name is not None:
                    rest = m.name[len(base):] if m.name.startswith(base) else m.name
                    m.name = name + rest
                members.append(m)
            try:
                tf.extractall(target_dir, members=members, filter=_host_filter(archive),
                              numeric_owner=True)
            except tarfile.FilterError as exc:
                raise InvalidArgument(f"refusing to copy {src}: {exc}") from None


# ----------------------------------------------------------------------------------- into the container


def _ensure_dir(fs: ContainerFS, path: str) -> int:
    """An fd of the directory ``path`` in the container, creating missing components (confined)."""
    norm = _norm(path)
    parts = [p for p in norm.split("/") if p]
    base, inner = fs.locate(norm)
    root_fd = os.open(base, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            return openat2_in_root(root_fd, inner, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            pass
        built = ""
        for part in [p for p in inner.split("/") if p]:
            parent = openat2_in_root(root_fd, built or "/", os.O_RDONLY | os.O_DIRECTORY)
            try:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=parent)
            finally:
                os.close(parent)
            built += "/" + part
        del parts
        return openat2_in_root(root_fd, inner, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise InvalidArgument(f"cannot create directory {path} in container: {exc.strerror}") \
            from exc
    finally:
        os.close(root_fd)


def extract_archive(fs: ContainerFS, dest_dir: str, stream: BinaryIO, *,
                    keep_owner: bool = True) -> int:
    """Unpack a tar stream into the container's directory ``dest_dir``, confined to the container.

    Member names are taken relative to ``dest_dir``; each parent is resolved with
    ``RESOLVE_IN_ROOT`` and each entry created with ``O_NOFOLLOW`` in its parent, so neither a
    symlink already in the container nor one inside the archive can redirect a write to the host.

    Returns:
        the number of entries written.
    Raises:
        NotFound: ``dest_dir`` is missing. InvalidArgument: it is not a directory, or the tar is bad.
    """
    st = fs.stat(dest_dir)
    if st is None:
        raise NotFound(f"Could not find the file {dest_dir} in container")
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"extraction point is not a directory: {dest_dir}")
    count = 0
    try:
        tf = tarfile.open(fileobj=stream, mode="r|*")
    except tarfile.TarError as exc:
        raise InvalidArgument(f"bad tar stream: {exc}") from exc
    with tf:
        for m in tf:
            rel = _norm(m.name).lstrip("/")
            if not rel or rel == ".":
                continue
            target = _norm(dest_dir + "/" + rel)
            if not fs.writable(target):
                raise InvalidArgument(f"mounted volume is marked read-only: {target}")
            parent, name = posixpath.split(target)
            pfd = _ensure_dir(fs, parent)
            try:
                _write_member(fs, tf, m, pfd, name, keep_owner, dest_dir)
            finally:
                os.close(pfd)
            count += 1
    return count


def _write_member(fs: ContainerFS, tf: tarfile.TarFile, m: tarfile.TarInfo, pfd: int, name: str,
                  keep_owner: bool, dest_dir: str = "/") -> None:
    try:
        existing = os.lstat(name, dir_fd=pfd)
    except FileNotFoundError:
        existing = None
    if existing is not None:
        if m.isdir() and stat.S_ISDIR(existing.st_mode):
            os.chmod(name, m.mode, dir_fd=pfd, follow_symlinks=False)
            return
        if stat.S_ISDIR(existing.st_mode):
            if not m.isdir():
                raise InvalidArgument(f"cannot overwrite directory {m.name} with non-directory")
        else:
            os.unlink(name, dir_fd=pfd)
    uid, gid = (m.uid, m.gid) if keep_owner else (0, 0)
    if m.isreg():
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=pfd)
        try:
            src = tf.extractfile(m)
            assert src is not None
            while True:
                chunk = src.read(1 << 20)
                if not chunk:
                    break
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            os.fchown(fd, uid, gid)
            os.fchmod(fd, m.mode)
            os.utime(fd, (m.mtime, m.mtime))
        finally:
            os.close(fd)
        return
    if m.isdir():
        os.mkdir(name, 0o755, dir_fd=pfd)
    elif m.issym():
        os.symlink(m.linkname, name, dir_fd=pfd)
    elif m.islnk():
        # Hard link targets are archive-relative: relative to where the archive is unpacked,
        # then resolved in the container like any path.
        lparent, lname = posixpath.split(_norm(dest_dir + "/" + m.linkname.lstrip("/")))
        with fs.open(lparent or "/", os.O_RDONLY | os.O_DIRECTORY) as lfd:
            os.link(lname, name, src_dir_fd=lfd, dst_dir_fd=pfd, follow_symlinks=False)
        return
    elif m.ischr() or m.isblk():
        kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
        os.mknod(name, kind | m.mode, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
    elif m.isfifo():
        os.mkfifo(name, m.mode, dir_fd=pfd)
    else:
        return
    os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
    if not m.issym():
        os.chmod(name, m.mode, dir_fd=pfd, follow_symlinks=False)


def host_archive(src: str, out: BinaryIO, arcname: str) -> None:
    """Tar a host path (file or directory) as ``arcname`` for :func:`extract_archive`; owners
    become root, as Docker does for files copied into a container."""
    def owner(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        return ti

    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        tf.add(src, arcname=arcname, recursive=True, filter=owner)


def copy_in(fs: ContainerFS, src: str, dest: str, stdin: BinaryIO | None = None, *,
            follow: bool = False) -> None:
    """``cp [-L] SRC CONTAINER:DEST`` (SRC ``-``: a tar stream on ``stdin``) with Docker's rules.

    With ``follow`` a link SRC on the host is followed (the caller's own path) and its target
    copied under the link's name; without it the link itself is copied.

    Raises:
        NotFound: SRC (or its link's target) or DEST's parent is missing. InvalidArgument: bad
        combination.
    """
    import tempfile

    if src == "-":
        if stdin is None:
            raise InvalidArgument("cp: no tar stream on standard input")
        extract_archive(fs, dest, stdin)
        return
    if not os.path.lexists(src):
        raise NotFound(f"no such file or directory: {src}")
    contents = src.endswith("/.")
    source = (src[:-2] or "/") if contents else src
    if follow:
        source = os.path.realpath(source)
        if not os.path.exists(source):
            raise NotFound(f"no such file or directory: {source} (the link {src} points there)")
        src_is_dir = os.path.isdir(source)
    else:
        src_is_dir = os.path.isdir(src) and not os.path.islink(src)
    dst_st = fs.stat(dest)
    if dst_st is not None and stat.S_ISDIR(dst_st.st_mode):
        target_dir = dest
        arcname = "." if contents else os.path.basename(os.path.normpath(src))
    else:
        if dest.endswith("/") and dst_st is None:
            raise NotFound(f"destination directory {dest} does not exist in container")
        if dst_st is not None and src_is_dir:
            raise InvalidArgument(f"cannot copy a directory to a file: {dest}")
        parent, name = posixpath.split(_norm(dest))
        pst = fs.stat(parent)
        if pst is None or not stat.S_ISDIR(pst.st_mode):
            raise NotFound(f"destination directory {parent} does not exist in container")
        target_dir, arcname = parent, name
    with tempfile.TemporaryFile() as spool:
        host_archive(source, spool, arcname)
        spool.seek(0)
        extract_archive(fs, target_dir, spool, keep_owner=True)
