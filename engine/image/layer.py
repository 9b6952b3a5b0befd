"""OCI layer tars: reading them into snapshot directories and writing them from directories.

An image is a stack of *layers*. Each layer is a tar archive of the files that changed relative to
the layers below it, optionally compressed (gzip or zstd). Two digests name a layer:

* the **diff id** is the sha256 of the *uncompressed* tar; the image config lists these (``rootfs.diff_ids``);
* the **digest** is the sha256 of the bytes as stored or sent (compressed); the manifest lists these.

Deletions cannot be expressed by a plain tar, so the OCI image spec uses *whiteout* files:

* ``dir/.wh.NAME`` means "``dir/NAME`` from the lower layers is gone";
* ``dir/.wh..wh..opq`` (the *opaque* marker) means "everything the lower layers had in ``dir`` is gone".

overlayfs says the same thing differently: a deleted file is a character device 0:0 in the upper
directory, and an opaque directory carries the xattr ``trusted.overlay.opaque="y"`` (rootless, where
only ``user.*`` xattrs can be written, ``user.overlay.opaque``: overlayfs mounted with ``userxattr``
reads that one, see :mod:`portside.engine.rootless`). This module
converts between the two forms:

* :func:`apply_layer` with ``overlay=True`` unpacks a layer into a fresh snapshot directory that will
  be stacked as an overlayfs lowerdir; whiteouts become the overlayfs form. With ``overlay=False`` it
  unpacks onto a full root filesystem (export, flatten, compare) and whiteouts simply delete.
* :func:`write_layer` tars a directory; with ``overlay_upper=True`` the directory is an overlayfs upper
  dir (a container's changes) and its whiteouts/opaque dirs become OCI whiteout entries.

Extraction is the dangerous direction: a layer comes from a registry or a file a user was handed.
Every name is made relative, ``..`` that would climb above the root is refused, and every parent
directory is opened one component at a time with ``O_NOFOLLOW`` relative to its parent's file
descriptor, so a symlink (planted earlier in the same layer, or present in a lower layer) is never
followed: writing through one is refused. Files are always created fresh (``O_EXCL``) after removing
whatever was there, so an existing hardlink or symlink is never written through either. Hardlinks are
made with ``linkat`` without ``AT_SYMLINK_FOLLOW``, so a hardlink to a symlink links the symlink itself.

Writing is deterministic: the same tree gives the same bytes (entries sorted, PAX format, no user or
group names, no access/change times, gzip header without a name or time, mtimes optionally clamped to
``SOURCE_DATE_EPOCH``), so layer digests are reproducible.

Example::

    with open("layer.tar.gz", "wb") as out:
        d = write_layer(Path("rootfs"), out)            # LayerDigests(diff_id, digest, size, media_type)
    with open("layer.tar.gz", "rb") as src:
        diff_id, size = apply_layer(src, Path("snapshots/1/fs"))
"""

from __future__ import annotations

import base64
import errno
import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
import urllib.parse
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterable, Iterator, Sequence, cast

from portside.engine.errors import InvalidArgument, NotFound, RuntimeFailure
from portside.engine.records import record

__all__ = [
    "COMPRESSIONS",
    "LayerDigests",
    "MEDIA_TYPE_LAYER",
    "apply_layer",
    "decompressed",
    "detect_compression",
    "layer_paths",
    "write_layer",
]

#: The compressions :func:`write_layer` can produce (None: a plain tar).
COMPRESSIONS = ("gzip", "zstd", None)

MEDIA_TYPE_LAYER = "application/vnd.oci.image.layer.v1.tar"
_MEDIA_TYPES = {
    None: MEDIA_TYPE_LAYER,
    "gzip": MEDIA_TYPE_LAYER + "+gzip",
    "zstd": MEDIA_TYPE_LAYER + "+zstd",
}

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
_USER_OVERLAY_OPAQUE_XATTR = "user.overlay.opaque"
#: fuse-overlayfs' upper dir (rootless where the kernel refuses overlayfs, see store/fuse.py)
#: marks an opaque directory with this xattr and the two entries below; a deletion it cannot
#: record as a 0:0 device becomes a ``.wh.NAME`` file
FUSE_OPAQUE_XATTR = "user.fuseoverlayfs.opaque"
FUSE_OPAQUE_ENTRIES = frozenset({OPAQUE_MARKER, WHITEOUT_PREFIX + ".opq"})

_BUF = 1 << 20
# Large copies keep the per-byte cost in C; 1 MiB is where further growth stops paying off.
_GZIP_LEVEL = 6  # Go's (and so Docker's) default: level 9 costs twice the time for ~1% size
_ZSTD_LEVEL = 3

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_CACHE_MAX = 256

if TYPE_CHECKING:
    from _typeshed import SupportsRead


@record(frozen=True)
class LayerDigests:
    """What :func:`write_layer` produced.

    ``diff_id`` names the uncompressed tar (image config), ``digest`` and ``size`` the bytes
    written (manifest descriptor); they are equal when the layer is not compressed.
    """

    diff_id: str
    digest: str
    size: int
    media_type: str


# --------------------------------------------------------------------------------------------
# Compression


def detect_compression(head: bytes) -> str | None:
    """Name the compression of a layer from its first bytes.

    Args:
        head: at least the first 4 bytes of the blob (fewer only when the blob is that short).

    Returns:
        ``"gzip"``, ``"zstd"`` or None (a plain tar, or something this module does not know).
    """
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    # zstd skippable frames (magic 0x184D2A50..5F, little endian) may precede the first real frame.
    if len(head) >= 4 and head[1:4] == b"\x2a\x4d\x18" and 0x50 <= head[0] <= 0x5F:
        return "zstd"
    return None


class _HeadReader(io.RawIOBase):
    """A stream whose first bytes were read to sniff the compression, with them put back."""

    def __init__(self, head: bytes, stream: SupportsRead[bytes]) -> None:
        super().__init__()
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if not self._head:
            return self._stream.read(-1 if size is None else size)
        head = self._head
        if size is None or size < 0:
            self._head = b""
            return head + self._stream.read()
        if size <= len(head):
            self._head = head[size:]
            return head[:size]
        self._head = b""
        return head + self._stream.read(size - len(head))

    def readinto(self, buf: Any) -> int:
        if not self._head and hasattr(self._stream, "readinto"):
            return cast(int, self._stream.readinto(buf) or 0)
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)


class _Decoded(io.RawIOBase):
    """A decompressor whose failures read as one-line InvalidArgument errors."""

    def __init__(self, decoder: Any, errors: tuple[type[BaseException], ...], kind: str) -> None:
        super().__init__()
        self._decoder = decoder
        self._errors = errors
        self._kind = kind

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        try:
            return cast(bytes, self._decoder.read(-1 if size is None else size))
        except self._errors as exc:
            raise InvalidArgument(f"corrupt {self._kind} layer stream: {exc}") from exc

    def readinto(self, buf: Any) -> int:
        try:
            return cast(int, self._decoder.readinto(buf))
        except self._errors as exc:
            raise InvalidArgument(f"corrupt {self._kind} layer stream: {exc}") from exc


def _zstandard() -> Any:
    try:
        import zstandard
    except ImportError as exc:  # an optional accelerator in some installs; say what is missing
        raise InvalidArgument("zstd layers need the 'zstandard' Python module (pip install zstandard)") from exc
    return zstandard


def decompressed(stream: SupportsRead[bytes]) -> BinaryIO:
    """Wrap a layer blob so that reading it yields the uncompressed tar.

    The compression is detected from the magic bytes (gzip, zstd, or none), and decompression
    streams: nothing is read ahead beyond the decompressor's own buffer.

    Args:
        stream: the blob, positioned at its start; it need not be seekable.

    Returns:
        A readable binary stream of the tar bytes.

    Raises:
        InvalidArgument: the blob is zstd and the ``zstandard`` module is missing; reading later
            raises InvalidArgument when the compressed data is corrupt.
    """
    head = b""
    while len(head) < 4:  # pipes may hand out fewer bytes than asked for
        chunk = stream.read(4 - len(head))
        if not chunk:
            break
        head += chunk
    kind = detect_compression(head)
    raw = _HeadReader(head, stream)
    if kind is None:
        return cast(BinaryIO, raw)
    if kind == "gzip":
        decoder: Any = gzip.GzipFile(fileobj=raw, mode="rb")
        errors: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error)
    else:
        zstandard = _zstandard()
        decoder = zstandard.ZstdDecompressor().stream_reader(
            raw, read_size=_BUF, read_across_frames=True, closefd=False)
        errors = (zstandard.ZstdError, OSError, EOFError)
    return cast(BinaryIO, _Decoded(decoder, errors, kind))


class _ForwardReader(io.RawIOBase):
    """A forward-only view of a stream that hashes and counts every byte passing through.

    tarfile's streaming mode copies its whole buffer on every small read, so extraction uses its
    normal mode on an ``io.BufferedReader`` over this class instead. That mode only ever seeks
    forward or within the buffer: a forward seek here reads and hashes the skipped bytes.
    """

    def __init__(self, stream: BinaryIO) -> None:
        super().__init__()
        self._stream = stream
        self._readinto = getattr(stream, "readinto", None)
        self.sha = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True  # forward only; io.BufferedReader refuses to seek at all otherwise

    def tell(self) -> int:
        return self.size

    def readinto(self, buf: Any) -> int:
        if self._readinto is not None:
            n = self._readinto(buf) or 0
            with memoryview(buf) as view:
                self.sha.update(view[:n])
        else:
            data = self._stream.read(len(buf))
            n = len(data)
            buf[:n] = data
            self.sha.update(data)
        self.size += n
        return n

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            pos += self.size
        elif whence != io.SEEK_SET:
            raise io.UnsupportedOperation("a layer stream cannot seek from its end")
        if pos < self.size:
            raise io.UnsupportedOperation("a layer stream cannot seek backwards")
        while self.size < pos:
            data = self._stream.read(min(_BUF, pos - self.size))
            if not data:
                break
            self.sha.update(data)
            self.size += len(data)
        return self.size

    def drain(self) -> None:
        """Read to the end: the padding after the end-of-archive blocks is part of the diff id."""
        buf = bytearray(_BUF)
        while self.readinto(buf):
            pass


class _HashingWriter:
    """Counts and hashes every byte written through it; ``tell()`` is what tarfile needs."""

    def __init__(self, out: Any) -> None:
        self._out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self._out.write(data)
        n = len(data)
        self.size += n
        return n

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        flush = getattr(self._out, "flush", None)
        if flush is not None:
            flush()


# --------------------------------------------------------------------------------------------
# Names


def _split(name: str, entry: str, *, what: str = "entry") -> tuple[str, ...]:
    """Turn a tar member name into path components relative to the root.

    Absolute names are made relative (a layer's ``/etc/passwd`` is the rootfs's ``etc/passwd``);
    ``.`` and empty components vanish; ``..`` pops a component and is refused when it would
    climb above the root.
    """
    if "\x00" in name:
        raise InvalidArgument(f"layer entry {entry!r}: NUL byte in {what} name")
    parts: list[str] = []
    for comp in name.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                raise InvalidArgument(f"layer entry {entry!r}: {what} escapes the root")
            parts.pop()
            continue
        parts.append(comp)
    return tuple(parts)


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _mtime_ns(mtime: float) -> int:
    sec = int(mtime)
    return sec * 1_000_000_000 + round((mtime - sec) * 1_000_000_000)


def _wanted_xattr(name: str) -> bool:
    # user.* is data; security.capability is what makes `ping` work without setuid. Everything else
    # (trusted.* above all: overlayfs obeys it) is never taken from a tar.
    return (name.startswith("user.") and not name.startswith("user.overlay.")) or name == "security.capability"


def _tar_xattrs(ti: tarfile.TarInfo) -> tuple[tuple[str, bytes], ...]:
    out: list[tuple[str, bytes]] = []
    for key, value in ti.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            name = key[len("SCHILY.xattr."):]
            data = value.encode("utf-8", "surrogateescape")
        elif key.startswith("LIBARCHIVE.xattr."):
            name = urllib.parse.unquote(key[len("LIBARCHIVE.xattr."):])
            try:
                data = base64.b64decode(value + "=" * (-len(value) % 4))
            except ValueError:
                continue
        else:
            continue
        if _wanted_xattr(name):
            out.append((name, data))
    return tuple(out)


@record
class _Meta:
    """Metadata applied to a directory after its contents are in place."""

    mode: int
    uid: int
    gid: int
    mtime_ns: int | None
    xattrs: tuple[tuple[str, bytes], ...] = ()


# --------------------------------------------------------------------------------------------
# Extraction


class _Extractor:
    """Applies tar members one at a time below a root directory file descriptor."""

    def __init__(self, target: Path, *, overlay: bool, lower: Sequence[Path]) -> None:
        self.overlay = overlay
        self.lower = [os.fspath(p) for p in lower]
        self.privileged = os.geteuid() == 0
        # Inside a rootless user's namespace we are "root" with the subordinate ids (or only one):
        # owners apply within that range, but no device node can be made and overlayfs reads its
        # opaque markers from user.* xattrs (the ``userxattr`` mount option).
        from portside.engine import rootless

        self.userns = self.privileged and rootless.in_namespace()
        self.devices = self.privileged and not self.userns
        self.squash = self.userns and rootless.mapping() == "single"
        self.opaque_xattr = opaque_xattr()
        self.root_fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        # Open directory fds by path: tar members come grouped by directory, so the parent of the
        # next member is almost always already open. Only real directories are ever cached.
        self._dirs: dict[tuple[str, ...], int] = {(): self.root_fd}
        self._deferred: dict[tuple[str, ...], _Meta] = {}
        # Flat mode: every path this layer wrote, with its ancestors, so that an opaque marker or a
        # whiteout removes only what the *earlier* layers left.
        self._touched: set[tuple[str, ...]] = set()
        self._view = memoryview(bytearray(_BUF))

    def close(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs = {}

    # -- directory resolution ----------------------------------------------------------------

    def _trim(self) -> None:
        if len(self._dirs) > _DIR_CACHE_MAX:
            for key, fd in list(self._dirs.items()):
                if key:
                    os.close(fd)
                    del self._dirs[key]

    def _forget(self, parts: tuple[str, ...]) -> None:
        """Close cached fds at or below ``parts``: that directory was just removed."""
        n = len(parts)
        for key in [k for k in self._dirs if len(k) >= n and k[:n] == parts]:
            if key:
                os.close(self._dirs.pop(key))

    def _dir(self, parts: tuple[str, ...], entry: str, *, create: bool) -> int | None:
        """Return an fd of the directory ``parts`` inside the root, never following a symlink.

        Missing components are created when ``create`` (as overlayfs would show them: copying a
        lower directory's metadata), otherwise None is returned.
        """
        fd = self._dirs.get(parts)
        if fd is not None:
            return fd
        i = len(parts) - 1
        while i > 0 and parts[:i] not in self._dirs:
            i -= 1
        i = max(i, 0)
        fd = self._dirs[parts[:i]]
        for j in range(i, len(parts)):
            name = parts[j]
            sub = parts[: j + 1]
            try:
                nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    return None
                self._implied_dir(fd, sub, entry)
                nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    raise InvalidArgument(
                        f"layer entry {entry!r}: refusing to follow symlink {'/'.join(sub)}") from None
                raise InvalidArgument(f"layer entry {entry!r}: {'/'.join(sub)} is not a directory") from None
            self._dirs[sub] = nfd
            fd = nfd
        return fd

    def _implied_dir(self, parent_fd: int, parts: tuple[str, ...], entry: str) -> None:
        """Create a parent directory the tar did not list."""
        meta = _Meta(0o755, 0, 0, None)
        if self.overlay and self.lower:
            hit = self._lower_lookup(parts, entry)
            if hit is not None:
                _, st = hit
                if stat.S_ISLNK(st.st_mode):
                    raise InvalidArgument(
                        f"layer entry {entry!r}: refusing to follow symlink {'/'.join(parts)} in a lower layer")
                if not stat.S_ISDIR(st.st_mode):
                    raise InvalidArgument(f"layer entry {entry!r}: {'/'.join(parts)} is not a directory")
                # overlayfs shows the upper directory's metadata; keep the lower one's.
                meta = _Meta(stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)
        os.mkdir(parts[-1], 0o700, dir_fd=parent_fd)
        self._deferred.setdefault(parts, meta)
        if not self.overlay:
            self._touch(parts)

    def _lower_lookup(self, parts: tuple[str, ...], entry: str) -> tuple[str, os.stat_result] | None:
        """Find ``parts`` in the merged view of the lower dirs, as overlayfs would.

        Returns the path and lstat of the visible object, or None when it does not exist (or is
        whited out). Raises when a parent component is a symlink or not a directory.
        """
        active = list(self.lower)
        for i, comp in enumerate(parts):
            hit: tuple[str, os.stat_result] | None = None
            merged: list[str] = []
            for base in active:  # every `base` here is a real directory: checked one level up
                path = os.path.join(base, comp)
                try:
                    st = os.lstat(path)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                if _is_whiteout(st):
                    break
                if hit is None:
                    hit = (path, st)
                if not stat.S_ISDIR(st.st_mode):
                    break
                merged.append(path)
                if _opaque(path):
                    break
            if hit is None:
                return None
            if i == len(parts) - 1:
                return hit
            st = hit[1]
            sub = "/".join(parts[: i + 1])
            if stat.S_ISLNK(st.st_mode):
                raise InvalidArgument(f"layer entry {entry!r}: refusing to follow symlink {sub} in a lower layer")
            if not stat.S_ISDIR(st.st_mode):
                raise InvalidArgument(f"layer entry {entry!r}: {sub} is not a directory")
            active = merged
        return None

    # -- primitives --------------------------------------------------------------------------

    def _touch(self, parts: tuple[str, ...]) -> None:
        while parts and parts not in self._touched:
            self._touched.add(parts)
            parts = parts[:-1]

    def _remove(self, dir_fd: int, name: str, parts: tuple[str, ...]) -> None:
        """Remove ``name`` (rm -rf) without following symlinks."""
        try:
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        except (IsADirectoryError, PermissionError):
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                raise
            self._forget(parts)
            self._deferred.pop(parts, None)
            shutil.rmtree(name, dir_fd=dir_fd)  # fd-based walk: symlinks inside are unlinked, not followed

    def _create(self, dir_fd: int, name: str, parts: tuple[str, ...], make: Callable[[], Any]) -> Any:
        """Run ``make`` (which creates ``name`` exclusively); replace what is there on a clash."""
        try:
            return make()
        except FileExistsError:
            self._remove(dir_fd, name, parts)
            return make()

    def _set_xattrs(self, fd: int, xattrs: Iterable[tuple[str, bytes]], entry: str) -> None:
        for name, value in xattrs:
            try:
                os.setxattr(fd, name, value)
            except OSError as exc:
                if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
                    continue  # the filesystem has no xattrs: keep the data, lose the decoration
                if exc.errno == errno.EPERM and (self.userns or not self.privileged):
                    continue  # security.capability needs CAP_SETFCAP, trusted.* the host's root
                raise

    def _chown(self, entry: str, chown: Callable[..., None], target: Any, uid: int, gid: int,
               **kw: Any) -> None:
        """``chown`` (os.chown or os.fchown) with the namespace's rules: owners squashed to 0
        under a single-id mapping; an id the mapping lacks is an error that says so."""
        if self.squash:
            uid = gid = 0
        try:
            chown(target, uid, gid, **kw)
        except OSError as exc:
            if exc.errno != errno.EINVAL or not self.userns:
                raise
            from portside.engine.rootless import mapping_error

            raise RuntimeFailure(mapping_error(entry, uid, gid)) from exc

    def _meta_fd(self, fd: int, mode: int, uid: int, gid: int, mtime_ns: int | None,
                 xattrs: Iterable[tuple[str, bytes]], entry: str) -> None:
        # Order matters: chown clears setuid bits and security.capability, so it goes first.
        if self.privileged:
            self._chown(entry, os.fchown, fd, uid, gid)
        os.fchmod(fd, mode & 0o7777)
        self._set_xattrs(fd, xattrs, entry)
        if mtime_ns is not None:
            os.utime(fd, ns=(mtime_ns, mtime_ns))

    def _meta_name(self, dir_fd: int, name: str, ti: tarfile.TarInfo, *, chmod: bool) -> None:
        """Owner, mode and mtime of a non-openable node (symlink, device, fifo) we just created."""
        if self.privileged:
            self._chown(ti.name, os.chown, name, ti.uid, ti.gid, dir_fd=dir_fd,
                        follow_symlinks=False)
        if chmod:  # never a symlink here, and we created it a moment ago
            os.chmod(name, ti.mode & 0o7777, dir_fd=dir_fd)
        ns = _mtime_ns(ti.mtime)
        os.utime(name, ns=(ns, ns), dir_fd=dir_fd, follow_symlinks=False)

    # -- members -----------------------------------------------------------------------------

    def entry(self, ti: tarfile.TarInfo, tf: tarfile.TarFile) -> None:
        """Apply one tar member."""
        name = ti.name
        self._trim()
        parts = _split(name, name)
        for comp in parts[:-1]:
            if comp.startswith(WHITEOUT_PREFIX):
                raise InvalidArgument(f"layer entry {name!r}: whiteout {comp!r} used as a directory")
        try:
            if parts and parts[-1].startswith(WHITEOUT_PREFIX):
                self._whiteout(parts, name)
                return
            if not parts:
                if not ti.isdir():
                    raise InvalidArgument(f"layer entry {name!r} would replace the root directory")
                self._deferred[()] = _Meta(ti.mode, ti.uid, ti.gid, _mtime_ns(ti.mtime), _tar_xattrs(ti))
                return
            base = parts[-1]
            if ti.isreg():
                pfd = self._dir(parts[:-1], name, create=True)
                assert pfd is not None
                self._file(pfd, base, parts, ti, tf)
            elif ti.isdir():
                pfd = self._dir(parts[:-1], name, create=True)
                assert pfd is not None
                self._mkdir(pfd, base, parts, ti)
            elif ti.issym():
                if "\x00" in ti.linkname or not ti.linkname:
                    raise InvalidArgument(f"layer entry {name!r}: invalid symlink target")
                pfd = self._dir(parts[:-1], name, create=True)
                assert pfd is not None
                self._create(pfd, base, parts, lambda: os.symlink(ti.linkname, base, dir_fd=pfd))
                self._meta_name(pfd, base, ti, chmod=False)
            elif ti.islnk():
                self._hardlink(parts, ti)
            elif ti.ischr() or ti.isblk() or ti.isfifo():
                if not ti.isfifo() and not self.devices:
                    return  # only root may make device nodes; rootless engines skip them too
                pfd = self._dir(parts[:-1], name, create=True)
                assert pfd is not None
                kind = stat.S_IFIFO if ti.isfifo() else stat.S_IFCHR if ti.ischr() else stat.S_IFBLK
                dev = 0 if ti.isfifo() else os.makedev(ti.devmajor, ti.devminor)
                self._create(pfd, base, parts, lambda: os.mknod(base, kind | 0o600, dev, dir_fd=pfd))
                self._meta_name(pfd, base, ti, chmod=True)
            else:
                return  # sockets, volume labels, unknown types: nothing to put on disk
        except OSError as exc:
            if exc.errno in (errno.ENAMETOOLONG, errno.EINVAL, errno.EMLINK):
                raise InvalidArgument(f"layer entry {name!r}: {exc.strerror}") from exc
            raise RuntimeFailure(f"cannot extract layer entry {name!r}: {exc.strerror or exc}") from exc
        if not self.overlay:
            self._touch(parts)

    def _file(self, pfd: int, base: str, parts: tuple[str, ...], ti: tarfile.TarInfo,
              tf: tarfile.TarFile) -> None:
        fd = self._create(pfd, base, parts, lambda: os.open(base, _NEW_FILE_FLAGS, 0o600, dir_fd=pfd))
        try:
            if ti.size and ti.sparse is None:
                # Straight from the archive's buffered reader into a reused buffer: no per-file
                # file objects, no per-chunk allocations.
                src = tf.fileobj
                assert src is not None
                src.seek(ti.offset_data)
                view, remaining, write = self._view, ti.size, os.write
                while remaining:
                    n = src.readinto(view[: min(_BUF, remaining)])  # type: ignore[attr-defined]
                    if not n:
                        raise InvalidArgument(f"layer entry {ti.name!r}: unexpected end of data")
                    remaining -= n
                    done = 0
                    while done < n:
                        done += write(fd, view[done:n])
            elif ti.size:
                sparse = tf.extractfile(ti)
                assert sparse is not None
                with open(fd, "wb", buffering=0, closefd=False) as out:
                    shutil.copyfileobj(sparse, out, _BUF)
            self._meta_fd(fd, ti.mode, ti.uid, ti.gid, _mtime_ns(ti.mtime), _tar_xattrs(ti), ti.name)
        finally:
            os.close(fd)

    def _mkdir(self, pfd: int, base: str, parts: tuple[str, ...], ti: tarfile.TarInfo) -> None:
        # 0700 until the end: a read-only directory must still take its contents when not root.
        try:
            os.mkdir(base, 0o700, dir_fd=pfd)
        except FileExistsError:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):  # a file or a symlink is replaced, never followed
                os.unlink(base, dir_fd=pfd)
                os.mkdir(base, 0o700, dir_fd=pfd)
        self._deferred.pop(parts, None)
        self._deferred[parts] = _Meta(ti.mode, ti.uid, ti.gid, _mtime_ns(ti.mtime), _tar_xattrs(ti))

    def _hardlink(self, parts: tuple[str, ...], ti: tarfile.TarInfo) -> None:
        name = ti.name
        src = _split(ti.linkname, name, what="hardlink target")
        if not src:
            raise InvalidArgument(f"layer entry {name!r}: hardlink to the root directory")
        if src == parts:
            return
        if src[: len(parts)] == parts:
            raise InvalidArgument(f"layer entry {name!r}: hardlink target lies inside the link itself")
        pfd = self._dir(parts[:-1], name, create=True)
        assert pfd is not None
        base = parts[-1]
        src_fd = self._dir(src[:-1], name, create=False)
        st = None
        if src_fd is not None:
            try:
                st = os.stat(src[-1], dir_fd=src_fd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
        if st is not None and not (self.overlay and _is_whiteout(st)):
            if stat.S_ISDIR(st.st_mode):
                raise InvalidArgument(f"layer entry {name!r}: hardlink to a directory")
            assert src_fd is not None
            # follow_symlinks=False: linkat without AT_SYMLINK_FOLLOW links a symlink itself.
            self._create(pfd, base, parts, lambda: os.link(
                src[-1], base, src_dir_fd=src_fd, dst_dir_fd=pfd, follow_symlinks=False))
            return
        hit = self._lower_lookup(src, name) if self.overlay and self.lower else None
        if hit is None:
            raise InvalidArgument(f"layer entry {name!r}: hardlink target {ti.linkname!r} not found")
        self._copy_up(hit, pfd, base, parts, name)

    def _copy_up(self, hit: tuple[str, os.stat_result], pfd: int, base: str, parts: tuple[str, ...],
                 entry: str) -> None:
        """Materialise a lower-layer file as a copy: a hardlink cannot cross snapshot dirs."""
        path, st = hit
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            raise InvalidArgument(f"layer entry {entry!r}: hardlink to a directory")
        ns = st.st_mtime_ns
        if stat.S_ISLNK(mode):
            target = os.readlink(path)
            self._create(pfd, base, parts, lambda: os.symlink(target, base, dir_fd=pfd))
            if self.privileged:
                self._chown(entry, os.chown, base, st.st_uid, st.st_gid, dir_fd=pfd,
                            follow_symlinks=False)
            os.utime(base, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)
            return
        if not stat.S_ISREG(mode):
            if not self.devices and not stat.S_ISFIFO(mode):
                return
            self._create(pfd, base, parts, lambda: os.mknod(base, stat.S_IFMT(mode) | 0o600, st.st_rdev,
                                                            dir_fd=pfd))
            if self.privileged:
                self._chown(entry, os.chown, base, st.st_uid, st.st_gid, dir_fd=pfd,
                            follow_symlinks=False)
            os.chmod(base, stat.S_IMODE(mode), dir_fd=pfd)
            os.utime(base, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)
            return
        xattrs: list[tuple[str, bytes]] = []
        src = os.open(path, _READ_FLAGS)
        try:
            for xname in os.listxattr(src):
                if _wanted_xattr(xname):
                    xattrs.append((xname, os.getxattr(src, xname)))
            fd = self._create(pfd, base, parts, lambda: os.open(base, _NEW_FILE_FLAGS, 0o600, dir_fd=pfd))
            try:
                with open(src, "rb", buffering=0, closefd=False) as fin, \
                        open(fd, "wb", buffering=0, closefd=False) as fout:
                    shutil.copyfileobj(fin, fout, _BUF)
                self._meta_fd(fd, stat.S_IMODE(mode), st.st_uid, st.st_gid, ns, xattrs, entry)
            finally:
                os.close(fd)
        finally:
            os.close(src)

    def _whiteout(self, parts: tuple[str, ...], entry: str) -> None:
        base = parts[-1]
        dir_parts = parts[:-1]
        if base == OPAQUE_MARKER:
            dfd = self._dir(dir_parts, entry, create=True)
            assert dfd is not None
            if self.overlay:
                self._set_opaque(dfd, entry)
            else:
                self._clear_untouched(dfd, dir_parts)
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): meaningless here
        victim = base[len(WHITEOUT_PREFIX):]
        if victim in ("", ".", ".."):
            raise InvalidArgument(f"layer entry {entry!r}: invalid whiteout name")
        vparts = dir_parts + (victim,)
        if self.overlay:
            pfd = self._dir(dir_parts, entry, create=True)
            assert pfd is not None
            try:
                os.mknod(victim, stat.S_IFCHR, 0, dir_fd=pfd)  # 0:0 char device: overlayfs's whiteout
            except FileExistsError:
                # The layer also holds NAME itself. A directory then must hide the lower one's
                # contents (opaque); any other file hides the lower NAME already.
                st = os.stat(victim, dir_fd=pfd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    dfd = self._dir(vparts, entry, create=False)
                    assert dfd is not None
                    self._set_opaque(dfd, entry)
            except PermissionError as exc:
                raise RuntimeFailure(f"cannot create overlay whiteout for {entry!r}: {exc.strerror}") from exc
            return
        pfd = self._dir(dir_parts, entry, create=False)
        if pfd is None:
            return  # nothing below to delete
        if vparts in self._touched:
            # This layer wrote NAME too: drop only what the earlier layers had.
            st = os.stat(victim, dir_fd=pfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                dfd = self._dir(vparts, entry, create=False)
                assert dfd is not None
                self._clear_untouched(dfd, vparts)
            return
        self._remove(pfd, victim, vparts)

    def _set_opaque(self, dfd: int, entry: str) -> None:
        try:
            os.setxattr(dfd, self.opaque_xattr, b"y")
        except OSError as exc:
            raise RuntimeFailure(f"cannot mark {entry!r} opaque: {exc.strerror}") from exc

    def _clear_untouched(self, dfd: int, dir_parts: tuple[str, ...]) -> None:
        """Flat mode opaque dir: delete what earlier layers put below it, keep this layer's own."""
        with os.scandir(dfd) as it:
            names = [e.name for e in it]
        for child in names:
            cparts = dir_parts + (child,)
            if cparts not in self._touched:
                self._remove(dfd, child, cparts)
                continue
            st = os.stat(child, dir_fd=dfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                sub = os.open(child, _DIR_FLAGS, dir_fd=dfd)
                try:
                    self._clear_untouched(sub, cparts)
                finally:
                    os.close(sub)

    def finish(self) -> None:
        """Apply directory metadata, deepest first, now that their contents are written."""
        for parts in sorted(self._deferred, key=len, reverse=True):
            meta = self._deferred[parts]
            self._trim()
            if parts:
                try:
                    pfd = self._dir(parts[:-1], "/".join(parts), create=False)
                    if pfd is None:
                        continue
                    fd = os.open(parts[-1], _DIR_FLAGS, dir_fd=pfd)
                except (InvalidArgument, OSError):
                    continue  # replaced or removed later in the layer: its metadata went with it
            else:
                fd = self.root_fd
            try:
                self._meta_fd(fd, meta.mode, meta.uid, meta.gid, meta.mtime_ns, meta.xattrs, "/".join(parts))
            except OSError as exc:
                raise RuntimeFailure(f"cannot set metadata of {'/'.join(parts) or '/'!r}: {exc.strerror}") from exc
            finally:
                if parts:
                    os.close(fd)


def opaque_xattr() -> str:
    """The xattr that marks an opaque directory in the snapshots this process writes:
    ``trusted.overlay.opaque`` for root, ``user.overlay.opaque`` rootless (overlayfs mounted with
    ``userxattr`` reads that one; only root may write ``trusted.*``)."""
    from portside.engine import rootless

    if os.geteuid() == 0 and not rootless.in_namespace():
        return OVERLAY_OPAQUE_XATTR
    return _USER_OVERLAY_OPAQUE_XATTR


def _opaque(path: str | int) -> bool:
    """Whether a directory (path or fd) is an overlayfs opaque directory."""
    for attr in (OVERLAY_OPAQUE_XATTR, _USER_OVERLAY_OPAQUE_XATTR):
        try:
            value = os.getxattr(path, attr) if isinstance(path, int) else \
                os.getxattr(path, attr, follow_symlinks=False)
            if value == b"y":
                return True
        except OSError:
            pass
    return False


def upper_opaque(dfd: int) -> bool:
    """Whether a directory (fd) of an upper dir is opaque: overlayfs' xattr (trusted or user),
    or fuse-overlayfs' xattr or ``.wh..wh..opq`` entry."""
    if _opaque(dfd):
        return True
    try:
        if os.getxattr(dfd, FUSE_OPAQUE_XATTR) == b"y":
            return True
    except OSError:
        pass
    try:
        os.stat(OPAQUE_MARKER, dir_fd=dfd, follow_symlinks=False)
        return True
    except OSError:
        return False


def upper_deletion(name: str, st: os.stat_result) -> str | None:
    """The name an upper dir's entry ``name`` deletes from the layers below (overlayfs and
    fuse-overlayfs: a 0:0 character device of that name; fuse-overlayfs where the kernel refuses
    the device: a ``.wh.NAME`` file), or None for an entry that is a file of the container.
    fuse-overlayfs' opaque entries (:data:`FUSE_OPAQUE_ENTRIES`) are left to the caller."""
    if _is_whiteout(st):
        return name
    if name.startswith(WHITEOUT_PREFIX) and stat.S_ISREG(st.st_mode):
        return name[len(WHITEOUT_PREFIX):]
    return None


# Where the numeric fields of a ustar header sit: mode uid gid size mtime chksum devmajor devminor.
_NUM_SLICES = ((100, 108), (108, 116), (116, 124), (124, 136), (136, 148), (148, 156), (329, 337), (337, 345))


class _TarInfo(tarfile.TarInfo):
    """tarfile's header parser with the common case done in a few C calls.

    Header parsing is most of the per-entry cost of extracting a rootfs. A plain header (octal
    numbers, unsigned checksum, not old-GNU sparse) is decoded here with the same rules as
    ``tarfile.TarInfo.frombuf``; anything else goes to that method, which also raises its errors.
    PAX and GNU long-name records are still processed by tarfile after this.
    """

    __slots__ = ()

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str,  # type: ignore[override]
                errors: str) -> tarfile.TarInfo:
        if (len(buf) != tarfile.BLOCKSIZE or buf[156:157] == tarfile.GNUTYPE_SPARSE
                or (buf[100] | buf[108] | buf[116] | buf[124] | buf[136] | buf[148] | buf[329] | buf[337]) & 0x80):
            return super().frombuf(buf, encoding, errors)
        try:
            mode, uid, gid, size, mtime, chksum, devmajor, devminor = [
                int(buf[a:b].split(b"\0", 1)[0].strip() or b"0", 8) for a, b in _NUM_SLICES]
        except ValueError:
            return super().frombuf(buf, encoding, errors)
        if chksum != 256 + sum(buf) - sum(buf[148:156]):
            return super().frombuf(buf, encoding, errors)  # all-zero end block, signed sums, damage
        obj = cls()
        obj.name = buf[0:100].split(b"\0", 1)[0].decode(encoding, errors)
        obj.mode, obj.uid, obj.gid, obj.size, obj.mtime = mode, uid, gid, size, mtime
        obj.chksum = chksum
        obj.type = bytes(buf[156:157])
        obj.linkname = buf[157:257].split(b"\0", 1)[0].decode(encoding, errors)
        obj.uname = buf[265:297].split(b"\0", 1)[0].decode(encoding, errors)
        obj.gname = buf[297:329].split(b"\0", 1)[0].decode(encoding, errors)
        obj.devmajor, obj.devminor = devmajor, devminor
        prefix = buf[345:500].split(b"\0", 1)[0].decode(encoding, errors)
        if obj.type == tarfile.AREGTYPE and obj.name.endswith("/"):
            obj.type = tarfile.DIRTYPE  # old V7 form of a directory
        if obj.type == tarfile.DIRTYPE:
            obj.name = obj.name.rstrip("/")
        if prefix and obj.type not in tarfile.GNU_TYPES:
            obj.name = prefix + "/" + obj.name
        return obj


def _open_tar(stream: SupportsRead[bytes]) -> tuple[tarfile.TarFile, _ForwardReader]:
    """Open a layer blob as a tar read strictly front to back, hashing the uncompressed bytes."""
    raw = _ForwardReader(decompressed(stream))
    try:
        # copybufsize is a real (undocumented) TarFile argument the stubs do not know
        tf = tarfile.open(fileobj=io.BufferedReader(raw, _BUF),  # type: ignore[call-overload]
                          mode="r:", encoding="utf-8", errors="surrogateescape",
                          copybufsize=_BUF, tarinfo=_TarInfo)
    except tarfile.TarError as exc:
        raise InvalidArgument(f"invalid layer tar: {exc}") from exc
    return tf, raw


def apply_layer(stream: SupportsRead[bytes], target: Path, *, overlay: bool = True,
                lower: Sequence[Path] = ()) -> tuple[str, int]:
    """Extract a (possibly compressed) layer tar into ``target``.

    Args:
        stream: the layer blob (gzip, zstd or plain; detected), read once from start to end.
        target: with ``overlay=True``, a fresh snapshot directory that will be an overlayfs lowerdir
            above ``lower``; whiteouts become 0:0 character devices and opaque markers the
            ``trusted.overlay.opaque`` xattr (``user.overlay.opaque`` rootless). With
            ``overlay=False``, a full root filesystem:
            whiteouts delete, opaque markers empty what earlier layers left in the directory.
            Created when missing.
        overlay: choose between the two modes above.
        lower: the lower snapshot dirs, topmost first (overlay mode): used to refuse writes through
            their symlinks, to give implied parent directories their metadata, and to copy the
            target of a hardlink that lives only below.

    Returns:
        ``(diff_id, size)``: ``"sha256:<hex>"`` and length of the uncompressed tar, computed while
        streaming.

    Raises:
        InvalidArgument: the layer is corrupt or an entry would write outside ``target`` (``..``
            escapes, writes through symlinks, bad hardlinks, bad whiteouts, NUL bytes); the message
            names the entry. What was extracted before stays.
        RuntimeFailure: the filesystem refused an operation (disk full, no permission).
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    tf, reader = _open_tar(stream)
    extractor = _Extractor(target, overlay=overlay, lower=lower)
    try:
        try:
            while True:
                ti = tf.next()
                if ti is None:
                    break
                # one pass needs no index; a big rootfs would pile up TarInfos
                tf.members.clear()  # type: ignore[attr-defined]
                extractor.entry(ti, tf)
        except tarfile.TarError as exc:
            raise InvalidArgument(f"invalid layer tar: {exc}") from exc
        extractor.finish()
        reader.drain()
    finally:
        extractor.close()
    return "sha256:" + reader.sha.hexdigest(), reader.size


def layer_paths(stream: SupportsRead[bytes]) -> Iterator[tarfile.TarInfo]:
    """List the members of a layer (compressed or not) in archive order.

    Args:
        stream: the layer blob, read once.

    Yields:
        ``tarfile.TarInfo`` for each member; their contents are not readable.

    Raises:
        InvalidArgument: the layer is not a valid (compressed) tar.
    """
    tf, _ = _open_tar(stream)
    while True:
        try:
            ti = tf.next()
        except tarfile.TarError as exc:
            raise InvalidArgument(f"invalid layer tar: {exc}") from exc
        if ti is None:
            return
        tf.members.clear()  # type: ignore[attr-defined]
        yield ti


# --------------------------------------------------------------------------------------------
# Writing


class _Writer:
    """Walks a directory with dir fds (no symlink is followed) and adds sorted entries to a tar."""

    def __init__(self, tf: tarfile.TarFile, *, overlay_upper: bool, clamp: int | None,
                 wanted: set[tuple[str, ...]] | None) -> None:
        self.tf = tf
        self.overlay_upper = overlay_upper
        self.clamp = clamp
        self.wanted = wanted
        self.ancestors = ({w[:i] for w in wanted for i in range(len(w))} if wanted is not None else set())
        self.links: dict[tuple[int, int], str] = {}

    def _selected(self, parts: tuple[str, ...]) -> bool:
        if self.wanted is None or parts in self.ancestors:
            return True
        return any(parts[:i] in self.wanted for i in range(1, len(parts) + 1))

    def _info(self, name: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type = kind
        ti.mode = stat.S_IMODE(st.st_mode)
        ti.uid = st.st_uid
        ti.gid = st.st_gid
        ti.uname = ti.gname = ""
        mtime = int(st.st_mtime)
        if self.clamp is not None and mtime > self.clamp:
            mtime = self.clamp
        ti.mtime = mtime
        return ti

    def _add(self, ti: tarfile.TarInfo, fileobj: Any = None) -> None:
        self.tf.addfile(ti, fileobj)
        self.tf.members.clear()  # type: ignore[attr-defined]

    def _marker(self, name: str) -> None:
        # Whiteouts carry no metadata of their own; fixed values keep digests reproducible.
        ti = tarfile.TarInfo(name)
        ti.type = tarfile.REGTYPE
        ti.mode = 0o644
        ti.mtime = 0
        self._add(ti)

    def walk(self, dfd: int, parts: tuple[str, ...]) -> None:
        prefix = "/".join(parts) + "/" if parts else ""
        if self.overlay_upper and upper_opaque(dfd):
            self._marker(prefix + OPAQUE_MARKER)
        rows = []
        with os.scandir(dfd) as it:
            for entry in it:
                name = entry.name
                if self.overlay_upper and name in FUSE_OPAQUE_ENTRIES:
                    continue  # fuse-overlayfs' opaque bookkeeping: the marker above says it
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                gone = upper_deletion(name, st) if self.overlay_upper else None
                whiteout = gone is not None
                name = gone if gone is not None else name
                if not self._selected(parts + (name,)):
                    continue
                tar_name = (WHITEOUT_PREFIX + name) if whiteout else name
                # Whiteouts first (the spec asks for them before their siblings), then by bytes.
                rows.append((not whiteout, os.fsencode(tar_name), name, st, whiteout))
        rows.sort(key=lambda r: (r[0], r[1]))
        for _, _, name, st, whiteout in rows:
            path = prefix + name
            mode = st.st_mode
            if whiteout:
                self._marker(prefix + WHITEOUT_PREFIX + name)
            elif stat.S_ISDIR(mode):
                sub = os.open(name, _DIR_FLAGS, dir_fd=dfd)
                try:
                    ti = self._info(path, st, tarfile.DIRTYPE)
                    self._xattrs(ti, sub)
                    self._add(ti)
                    self.walk(sub, parts + (name,))
                finally:
                    os.close(sub)
            elif st.st_nlink > 1 and (st.st_dev, st.st_ino) in self.links:
                ti = self._info(path, st, tarfile.LNKTYPE)
                ti.linkname = self.links[(st.st_dev, st.st_ino)]
                self._add(ti)
            elif stat.S_ISREG(mode):
                if st.st_nlink > 1:
                    self.links[(st.st_dev, st.st_ino)] = path
                fd = os.open(name, _READ_FLAGS, dir_fd=dfd)
                try:
                    ti = self._info(path, st, tarfile.REGTYPE)
                    ti.size = st.st_size
                    self._xattrs(ti, fd)
                    with open(fd, "rb", buffering=0, closefd=False) as f:
                        try:
                            self._add(ti, f)
                        except OSError as exc:
                            if "unexpected end of data" in str(exc):
                                raise RuntimeFailure(f"file changed while writing the layer: {path}") from exc
                            raise
                finally:
                    os.close(fd)
            else:
                if st.st_nlink > 1:
                    self.links[(st.st_dev, st.st_ino)] = path
                if stat.S_ISLNK(mode):
                    ti = self._info(path, st, tarfile.SYMTYPE)
                    ti.linkname = os.readlink(name, dir_fd=dfd)
                elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                    ti = self._info(path, st, tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE)
                    ti.devmajor = os.major(st.st_rdev)
                    ti.devminor = os.minor(st.st_rdev)
                elif stat.S_ISFIFO(mode):
                    ti = self._info(path, st, tarfile.FIFOTYPE)
                else:
                    continue  # sockets cannot be archived (Docker skips them too)
                self._add(ti)

    def _xattrs(self, ti: tarfile.TarInfo, fd: int) -> None:
        try:
            names = sorted(os.listxattr(fd))
        except OSError:
            return
        for xname in names:
            if _wanted_xattr(xname):
                try:
                    value = os.getxattr(fd, xname)
                except OSError:
                    continue
                ti.pax_headers["SCHILY.xattr." + xname] = value.decode(  # type: ignore[index]
                    "utf-8", "surrogateescape")


def write_layer(source: Path, out: BinaryIO, *, overlay_upper: bool = False,
                compression: str | None = "gzip", source_date_epoch: int | None = None,
                paths: Iterable[str] | None = None) -> LayerDigests:
    """Tar a directory into a layer, deterministically.

    Args:
        source: the directory; its own entry is not archived, its contents are (names relative to it).
        out: where the (compressed) layer bytes go; written sequentially, never sought.
        overlay_upper: ``source`` is an overlayfs upper dir: 0:0 char devices become ``.wh.NAME``
            and opaque dirs get a ``.wh..wh..opq`` entry.
        compression: ``"gzip"``, ``"zstd"`` or None.
        source_date_epoch: clamp every mtime above it to it (reproducible builds).
        paths: only these paths (relative to ``source``), everything below those that are
            directories, and their parent directories; None means everything.

    Returns:
        :class:`LayerDigests` of what was written.

    Raises:
        InvalidArgument: an unknown compression or a bad entry in ``paths``.
        NotFound: ``source`` or one of ``paths`` does not exist.
        RuntimeFailure: a file changed size while it was being archived.
    """
    if compression not in COMPRESSIONS:
        raise InvalidArgument(f"unsupported layer compression: {compression}")
    source = Path(source)
    try:
        root_fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NotFound(f"no such directory: {source}") from exc
    try:
        wanted: set[tuple[str, ...]] | None = None
        if paths is not None:
            wanted = set()
            for p in paths:
                parts = _split(p, p, what="path")
                if not parts:
                    wanted = None
                    break
                if not os.path.lexists(source.joinpath(*parts)):
                    raise NotFound(f"no such file in {source}: {p}")
                wanted.add(parts)
        counted = _HashingWriter(out)
        finish: Callable[[], None] = lambda: None  # noqa: E731
        sink: Any = counted
        if compression == "gzip":
            gz = gzip.GzipFile(filename="", mode="wb", compresslevel=_GZIP_LEVEL, fileobj=counted, mtime=0)
            sink, finish = gz, gz.close
        elif compression == "zstd":
            zstandard = _zstandard()
            zw = zstandard.ZstdCompressor(level=_ZSTD_LEVEL, write_checksum=True).stream_writer(
                counted, closefd=False)
            sink, finish = zw, zw.close
        tar_bytes = counted if compression is None else _HashingWriter(sink)
        tf = tarfile.open(fileobj=tar_bytes, mode="w",  # type: ignore[call-overload]
                          format=tarfile.PAX_FORMAT, encoding="utf-8",
                          errors="surrogateescape", copybufsize=_BUF)
        _Writer(tf, overlay_upper=overlay_upper, clamp=source_date_epoch, wanted=wanted).walk(root_fd, ())
        tf.close()
        finish()
    finally:
        os.close(root_fd)
    diff_id = "sha256:" + tar_bytes.sha.hexdigest()
    digest = diff_id if compression is None else "sha256:" + counted.sha.hexdigest()
    return LayerDigests(diff_id=diff_id, digest=digest, size=counted.size, media_type=_MEDIA_TYPES[compression])
