"""``COPY`` and ``ADD``: where their sources come from and how they land in the image.

A ``COPY`` reads files from the build context (filtered by ``.dockerignore``), from another
stage or image (``--from``: a read-only overlay of its layers) or from
here-documents; an ``ADD`` also fetches URLs (verified with ``--checksum``) and unpacks local
archives. The step's cache key covers the *content* of what it reads, so touching a file keeps the
cache while editing it does not. :class:`_Copier` then places the files with Docker's rules: a
directory's contents are copied, a destination ending in ``/`` is a directory, ``--chown`` and
``--chmod`` apply to everything copied, and every path is resolved inside the image's root
filesystem so no symlink in it can redirect a write outside.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

from portside.engine.builder import Add, Copy, SourceContent, Step
from portside.engine.builder.builder import Builder, StageState, _describe
from portside.engine.builder.cache import cache_key
from portside.engine.builder.context import BuildContext, clean_path
from portside.engine.builder.run import Workspace
from portside.engine.errors import InvalidArgument, NotFound
from portside.engine.rootfs import resolve, resolve_user

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Mapping

__all__ = ["copy_step"]


def copy_step(builder: Builder, state: StageState, step: Step) -> bool:
    """Run one ``COPY`` or ``ADD`` step of ``builder``'s build on ``state``: compute its cache key
    from what it reads (context files' content, another stage's key, downloaded URLs' digests,
    here-documents), then, on a cache miss, copy into a workspace whose changes become the layer.

    Returns:
        whether the step was a cache hit (see ``Builder._layer_step``).
    """
    inst = step.instruction
    assert isinstance(inst, (Copy, Add))
    what = "COPY" if isinstance(inst, Copy) else "ADD"
    from_ref = inst.from_stage if isinstance(inst, Copy) else None
    workdir = state.config.get("WorkingDir") or "/"
    dest = inst.dest
    dest_is_dir_hint = dest.endswith("/") or dest in (".", "..")
    if not dest.startswith("/"):
        dest = workdir.rstrip("/") + "/" + dest
    dest = clean_path(dest)
    if dest_is_dir_hint and not dest.endswith("/"):
        dest += "/"
    heredocs = list(inst.heredocs)
    urls = [s for s in inst.sources if isinstance(inst, Add) and _is_url(s)]
    local = [s for s in inst.sources if s not in urls]
    env = {**step.args, **state.env}

    if from_ref is not None:
        key_extra = ["from", builder._source_key(from_ref), *local]
        expanded: list[str] = []
    else:
        expanded = builder.context.expand_sources(local, what=what) if local else []
        digest = builder.context.content_hash(expanded) if expanded else ""
        if expanded:
            # provenance: the digest of what the build read from its context
            builder._context_reads.append(f"copy {json.dumps(expanded)} {digest}")
        key_extra = ["context", digest]
    count = len(expanded if from_ref is None else local) + len(urls) + len(heredocs)
    if count > 1 and not dest.endswith("/"):
        raise InvalidArgument(f"When using {what} with more than one source file, the "
                              "destination must be a directory and end with a /")
    downloads: list[tuple[str, Path]] = []
    held = None
    try:
        if urls:
            from portside.engine.store.leftovers import HeldDir

            held = HeldDir(builder.tmp_root, "download")  # a killed build's is reclaimed
            tmp_downloads = held.path
            for url in urls:
                if not (isinstance(inst, Add) and inst.checksum):
                    builder.volatile = True  # what the URL serves may change under the same key
                path = tmp_downloads / str(len(downloads))
                digest = _download(url, path, inst.checksum if isinstance(inst, Add) else None)
                downloads.append((url, path))
                key_extra += ["url", url, digest]
        key_extra += ["heredocs", repr([(d.path, _expand_heredoc(d, env)) for d in heredocs])]
        key = cache_key(state.key, _describe(inst), json.dumps(key_extra))
        owner = inst.chown
        mode = _parse_chmod(inst.chmod)
        words = [f"--from={from_ref}"] if from_ref is not None else []
        words += [*inst.sources, *(f"<<{d.path}" for d in heredocs), inst.dest]
        created_by = f"{what} {' '.join(words)} # buildkit"

        def work(ws: Workspace) -> None:
            uid = gid = 0
            if owner:
                uid, gid = _chown_ids(ws.merged, owner)
            copier = _Copier(ws.merged, uid, gid, mode, builder.options.source_date_epoch)
            if from_ref is not None:
                with builder._source_view(from_ref) as root:
                    view = _RootfsContext(root)
                    srcs = view.expand_sources(local, what=what)
                    copier.copy_sources(view, srcs, dest, extract=False)
            else:
                copier.copy_sources(builder.context, expanded, dest,
                                    extract=isinstance(inst, Add))
            for url, path in downloads:
                name = _url_name(url)
                copier.copy_file(path, dest + name if dest.endswith("/") else dest,
                                 file_mode=0o600 if mode is None else mode)
            for doc in heredocs:
                data = _expand_heredoc(doc, env)
                target = dest + doc.path if dest.endswith("/") else dest
                copier.write_file(target, data.encode(), 0o644 if mode is None else mode)

        return builder._layer_step(state, key, created_by, work)
    finally:
        if held is not None:
            held.close()


class _RootfsContext(BuildContext):
    """Another stage's or image's files seen as a COPY source (no ignore file; absolute
    symlinks resolve inside that root filesystem, as they would in a container)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, use_ignore=False)

    def resolve(self, source: str, *, what: str = "COPY") -> Path:
        assert self.root is not None
        return resolve(self.root, source)


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _url_name(url: str) -> str:
    from urllib.parse import urlsplit

    name = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    return name or "index.html"


def _download(url: str, path: Path, checksum: str | None) -> str:
    """Fetch ``url`` into ``path``; verify ``checksum`` (``sha256:<hex>``); return its digest."""
    import urllib.error
    import urllib.request

    if checksum is not None:
        algo, _, want = checksum.partition(":")
        if algo != "sha256" or len(want) != 64:
            raise InvalidArgument(f"ADD --checksum={checksum}: expected sha256:<64 hex digits>")
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(path, "wb") as out:
            while chunk := resp.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NotFound(f"ADD failed: cannot download {url}: {reason}") from None
    digest = "sha256:" + h.hexdigest()
    if checksum is not None and digest != checksum:
        raise InvalidArgument(f"ADD {url}: checksum mismatch: expected {checksum}, got {digest}")
    return digest


def _expand_heredoc(doc: SourceContent, env: Mapping[str, str]) -> str:
    if not doc.expand:
        return doc.data
    import re

    def sub(m: "re.Match[str]") -> str:
        name = m.group(1) or m.group(2)
        return env.get(name, "")

    return re.sub(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))", sub, doc.data)


def _parse_chmod(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        mode = int(text, 8)
    except ValueError:
        raise InvalidArgument(f"invalid --chmod={text}: expected an octal mode") from None
    if mode > 0o7777:
        raise InvalidArgument(f"invalid --chmod={text}: expected an octal mode")
    return mode


def _chown_ids(root: Path, spec: str) -> tuple[int, int]:
    user, sep, group = spec.partition(":")
    uid, gid, _ = resolve_user(root, user if user else "0")
    if not sep:
        # Docker: a user without a group uses the same number as the group
        gid = uid
    else:
        _, gid, _ = resolve_user(root, f"{user or '0'}:{group}")
    return uid, gid


def _archive_kind(path: Path) -> str | None:
    """``tar``, ``gzip``, ``bzip2``, ``xz``, ``zstd`` or None (not an archive ADD extracts)."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh"):
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return None


class _Copier:
    """Places files into a mounted workspace with Docker's COPY rules and ownership."""

    def __init__(self, root: Path, uid: int, gid: int, mode: int | None,
                 sde: int | None) -> None:
        self.root = root
        self.uid = uid
        self.gid = gid
        self.mode = mode
        self.sde = sde

    def _target(self, image_path: str) -> Path:
        return resolve(self.root, image_path, follow_last=False)

    def _parent(self, image_path: str) -> Path:
        parent = image_path.rstrip("/").rsplit("/", 1)[0] or "/"
        self.mkdirs(parent)
        return resolve(self.root, parent)

    def mkdirs(self, image_path: str) -> Path:
        target = resolve(self.root, image_path)
        if target.is_dir():
            return target
        missing = []
        cur = target
        while not cur.exists() and cur != self.root:
            missing.append(cur)
            cur = cur.parent
        for d in reversed(missing):
            if os.path.lexists(d):
                os.unlink(d)
            d.mkdir(mode=0o755)
            os.chmod(d, 0o755)
            os.chown(d, self.uid, self.gid)
        if not target.is_dir():
            raise InvalidArgument(f"cannot copy to {image_path}: not a directory")
        return target

    def mkdirs_host(self, path: Path) -> None:
        """Create the missing directories of ``path`` (inside the root) as root-owned 0755."""
        missing = []
        while not path.is_dir() and path != self.root:
            missing.append(path)
            path = path.parent
        for d in reversed(missing):
            d.mkdir(mode=0o755)
            os.chown(d, self.uid, self.gid)

    def _clear(self, path: Path, keep_dir: bool) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return
            shutil.rmtree(path)
        else:
            os.unlink(path)

    def _meta(self, path: Path, st: os.stat_result, *, is_link: bool = False) -> None:
        os.chown(path, self.uid, self.gid, follow_symlinks=False)
        if not is_link:
            os.chmod(path, self.mode if self.mode is not None else stat.S_IMODE(st.st_mode))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def copy_sources(self, ctx: BuildContext, sources: list[str], dest: str, *,
                     extract: bool) -> None:
        """Copy each context-relative source to ``dest`` (an image path)."""
        for source in sources:
            path = ctx.resolve(source)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                raise NotFound(f"file not found in build context: {source}") from None
            if stat.S_ISDIR(st.st_mode):
                # Docker: copying a directory copies its contents
                target = self.mkdirs(dest)
                top = ctx.relative(path)
                self._copy_tree(ctx, top, target)
                continue
            if extract and _archive_kind(path) is not None:
                self._extract(path, dest)
                continue
            base = os.path.basename(source.rstrip("/")) or os.path.basename(str(path))
            dest_dir = dest.endswith("/") or resolve(self.root, dest).is_dir()
            self.copy_file(path, dest.rstrip("/") + "/" + base if dest_dir else dest)

    def _copy_tree(self, ctx: BuildContext, top: str, target: Path) -> None:
        prefix = len(top) + 1 if top else 0
        for rel, st in ctx.walk(top):
            inner = rel[prefix:] if rel != top else ""
            if not inner:
                # the directory itself: its mode goes onto dest (Docker copies it)
                if target != self.root:
                    self._meta(target, st)
                continue
            host_src = ctx.root / rel  # type: ignore[operator]
            dst = target / inner
            if not dst.parent.is_dir():
                # a file re-included ("!dir/keep") inside an excluded directory
                self.mkdirs_host(dst.parent)
            self._place(host_src, st, dst)
        # directories' mtimes after their contents are in place
        for rel, st in ctx.walk(top):
            inner = rel[prefix:] if rel != top else ""
            if inner and stat.S_ISDIR(st.st_mode):
                os.utime(target / inner, ns=(st.st_atime_ns, st.st_mtime_ns))

    def _place(self, src: Path, st: os.stat_result, dst: Path) -> None:
        kind = stat.S_IFMT(st.st_mode)
        self._clear(dst, keep_dir=kind == stat.S_IFDIR)
        if kind == stat.S_IFDIR:
            if not dst.is_dir():
                dst.mkdir()
            self._meta(dst, st)
        elif kind == stat.S_IFREG:
            shutil.copyfile(src, dst, follow_symlinks=False)
            self._meta(dst, st)
        elif kind == stat.S_IFLNK:
            os.symlink(os.readlink(src), dst)
            self._meta(dst, st, is_link=True)
        # devices, fifos and sockets in a context are skipped, as Docker does

    def copy_file(self, src: Path, image_path: str, file_mode: int | None = None) -> None:
        """Copy one host file to ``image_path`` (replacing what is there)."""
        parent = self._parent(image_path)
        name = image_path.rstrip("/").rsplit("/", 1)[-1]
        dst = parent / name
        st = os.stat(src)
        self._clear(dst, keep_dir=False)
        shutil.copyfile(src, dst)
        os.chown(dst, self.uid, self.gid)
        os.chmod(dst, file_mode if file_mode is not None else
                 (self.mode if self.mode is not None else stat.S_IMODE(st.st_mode)))
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))

    def write_file(self, image_path: str, data: bytes, mode: int) -> None:
        """Create ``image_path`` with ``data`` (a COPY here-document)."""
        parent = self._parent(image_path)
        dst = parent / image_path.rstrip("/").rsplit("/", 1)[-1]
        self._clear(dst, keep_dir=False)
        dst.write_bytes(data)
        os.chown(dst, self.uid, self.gid)
        os.chmod(dst, mode)

    def _extract(self, archive: Path, dest: str) -> None:
        """ADD of a local archive: unpack it into ``dest`` with layer-extraction confinement."""
        from portside.engine.image.layer import apply_layer

        kind = _archive_kind(archive)
        target = self.mkdirs(dest)
        with open(archive, "rb") as raw:
            stream: Any = raw
            if kind == "bzip2":
                import bz2
                stream = bz2.BZ2File(raw)
            elif kind == "xz":
                import lzma
                stream = lzma.LZMAFile(raw)
            try:
                apply_layer(stream, target, overlay=False)
            except InvalidArgument as exc:
                raise InvalidArgument(f"ADD {archive.name}: refusing to extract the archive: "
                                      f"{exc}") from None
