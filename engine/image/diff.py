"""Comparing two images: which layer differs first, which files, which config keys.

Two images are *identical* exactly when their ids are equal: the id is the digest of the config,
and the config lists every layer's diff id, so equal ids mean equal files and equal metadata.
When the ids differ, the interesting question is *where* they part. Layers stack from the base
up and each one is the result of one build step, so the first index at which the diff ids
disagree names the first step whose output was not reproduced; everything below it is shared.

Files are compared in the *merged* view of each image (what a container would see), but only for
the paths that the layers from that index upward touch: paths below the first differing layer are
the same on both sides by construction. Each layer is unpacked on disk as an overlayfs layer
(:mod:`portside.engine.store.snapshots`): a deleted path is a *whiteout* (a 0/0 character
device), and a directory that hides everything below it carries the *opaque* xattr. Looking a
path up therefore walks the layers from the top and stops at the first entry, whiteout or opaque
parent that decides it (:class:`MergedView`).

Example::

    result = diff_images(engine.image_store, "exp:1", "exp:2")
    if not result.identical:
        print(result.first_layer.created_by)      # 'RUN /bin/sh -c date +%N > /stamp'
        for change in result.files:
            print(change.kind, change.path, change.fields)
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from ..records import field, record

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Iterable, Iterator, Sequence


__all__ = ["FileInfo", "FileChange", "LayerInfo", "ConfigChange", "ImageDiff", "MergedView",
           "diff_images", "FIELDS"]

#: What may differ between two versions of a file, in the order they are reported.
FIELDS = ("type", "size", "mode", "owner", "mtime", "content")


@record(frozen=True)
class FileInfo:
    """One path as a container sees it.

    ``content`` is ``sha256:<hex>`` of a regular file's bytes, a symlink's target, or None.
    """

    type: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    content: str | None

    def value(self, name: str) -> Any:
        """The value of one of :data:`FIELDS`, for comparing and printing."""
        match name:
            case "owner":
                return f"{self.uid}:{self.gid}"
            case "mode":
                return f"{self.mode:04o}"
            case "mtime":
                return self.mtime_ns
            case _:
                return getattr(self, name)


@record(frozen=True)
class FileChange:
    """A path that differs: ``kind`` is added / removed (relative to the first image) / changed."""

    path: str
    kind: str
    before: FileInfo | None
    after: FileInfo | None
    fields: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line: ``C /stamp  content sha256:12ab…→sha256:34cd…, size 10→11``."""
        letter = {"added": "A", "removed": "D", "changed": "C"}[self.kind]
        if self.kind != "changed":
            info = self.after or self.before
            assert info is not None
            extra = f"{info.type} {info.value('mode')} {info.value('owner')} {info.size}B"
            if info.content and info.type == "file":
                extra += " " + _short(info.content)
            return f"{letter} {self.path}  ({extra})"
        assert self.before is not None and self.after is not None
        parts = []
        for name in self.fields:
            a, b = self.before.value(name), self.after.value(name)
            if name == "content" and self.before.type == "file":
                a, b = _short(a), _short(b)
            parts.append(f"{name} {a}→{b}")
        return f"{letter} {self.path}  " + ", ".join(parts)


@record(frozen=True)
class LayerInfo:
    """One layer of one image and the history entry (build step) that made it."""

    index: int
    diff_id: str | None
    created_by: str


@record(frozen=True)
class ConfigChange:
    """A config key (dotted path, e.g. ``config.Env``) whose value differs."""

    key: str
    before: Any
    after: Any


@record
class ImageDiff:
    """What :func:`diff_images` found. ``identical`` is the answer; the rest explains it."""

    image_a: str
    image_b: str
    identical: bool
    first_layer: int | None = None
    layer_a: LayerInfo | None = None
    layer_b: LayerInfo | None = None
    shared_layers: int = 0
    files: list[FileChange] = field(default_factory=list)
    config: list[ConfigChange] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The human report ``portside image diff`` prints."""
        if self.identical:
            return [f"images are identical: {self.image_a}"]
        out = [f"--- {self.image_a}", f"+++ {self.image_b}"]
        if self.first_layer is not None:
            out.append(f"first differing layer: #{self.first_layer} "
                       f"({self.shared_layers} layer(s) shared)")
            for sign, layer in (("-", self.layer_a), ("+", self.layer_b)):
                if layer is None or layer.diff_id is None:
                    out.append(f"  {sign} (no layer)")
                else:
                    out.append(f"  {sign} {layer.diff_id}  {layer.created_by}")
        else:
            out.append("layers are identical")
        if self.files:
            out.append(f"files ({len(self.files)}):")
            out.extend("  " + change.describe() for change in self.files)
        if self.config:
            out.append(f"config ({len(self.config)}):")
            for change in self.config:
                out.append(f"  {change.key}: {_brief(change.before)} → {_brief(change.after)}")
        return out

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``image diff --format json``)."""
        def info(i: FileInfo | None) -> dict | None:
            return None if i is None else {"type": i.type, "mode": i.value("mode"),
                                           "owner": i.value("owner"), "size": i.size,
                                           "mtime_ns": i.mtime_ns, "content": i.content}

        def layer(x: LayerInfo | None) -> dict | None:
            return None if x is None else {"index": x.index, "diff_id": x.diff_id,
                                           "created_by": x.created_by}

        return {"ImageA": self.image_a, "ImageB": self.image_b, "Identical": self.identical,
                "FirstLayer": self.first_layer, "LayerA": layer(self.layer_a),
                "LayerB": layer(self.layer_b),
                "Files": [{"Path": c.path, "Kind": c.kind, "Fields": list(c.fields),
                           "Before": info(c.before), "After": info(c.after)} for c in self.files],
                "Config": [{"Key": c.key, "Before": c.before, "After": c.after}
                           for c in self.config]}


def _short(digest: Any) -> str:
    text = str(digest)
    if text.startswith("sha256:"):
        return text[:19] + "…"
    return text


def _brief(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 120 else text[:117] + "…"


# ------------------------------------------------------------------------------------ merged view
def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path: Path) -> bool:
    from .layer import _opaque as layer_opaque

    return layer_opaque(str(path))


_TYPES = ((stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "symlink"),
          (stat.S_ISCHR, "char"), (stat.S_ISBLK, "block"), (stat.S_ISFIFO, "fifo"),
          (stat.S_ISSOCK, "socket"))


def file_info(path: Path, st: os.stat_result, *, hash_content: bool = True) -> FileInfo:
    """Describe one file on disk (``content`` hashed for regular files when asked)."""
    kind = next((name for test, name in _TYPES if test(st.st_mode)), "unknown")
    content: str | None = None
    if kind == "file" and hash_content:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        content = "sha256:" + h.hexdigest()
    elif kind == "symlink":
        content = os.readlink(path)
    elif kind in ("char", "block"):
        content = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return FileInfo(kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                    st.st_size if kind == "file" else 0, st.st_mtime_ns, content)


class MergedView:
    """The files of a stack of unpacked overlay layers, as the overlay mount would show them.

    Args:
        layers: layer directories, **topmost first** (the order overlayfs takes its lowers in).
    """

    def __init__(self, layers: Sequence[Path]) -> None:
        self.layers = list(layers)

    def lookup(self, rel: str) -> tuple[Path, os.stat_result] | None:
        """Find ``rel`` (``/etc/hosts`` or ``etc/hosts``); None when absent or deleted."""
        parts = [p for p in rel.strip("/").split("/") if p]
        if not parts:
            return None
        for top in self.layers:
            stop_below = False
            cur = top
            present = True
            for part in parts[:-1]:
                cur = cur / part
                try:
                    st = os.lstat(cur)
                except FileNotFoundError:
                    present = False
                    break
                if _is_whiteout(st) or not stat.S_ISDIR(st.st_mode):
                    return None  # a parent deleted or replaced by a file in this layer
                if _opaque(cur):
                    stop_below = True
            if present:
                path = cur / parts[-1]
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    pass
                else:
                    return None if _is_whiteout(st) else (path, st)
            if stop_below:
                return None
        return None

    def listdir(self, rel: str) -> list[str]:
        """The names in directory ``rel`` of the merged view (sorted)."""
        candidates: set[str] = set()
        for top in self.layers:
            d = top / rel.strip("/")
            try:
                candidates.update(os.listdir(d))
            except (FileNotFoundError, NotADirectoryError):
                continue
        base = "/" + rel.strip("/")
        return sorted(n for n in candidates
                      if self.lookup(base.rstrip("/") + "/" + n) is not None)

    def walk(self, rel: str) -> Iterator[str]:
        """Every path below directory ``rel`` (not ``rel`` itself), parents before children."""
        for name in self.listdir(rel):
            child = "/" + (rel.strip("/") + "/" + name).strip("/")
            yield child
            hit = self.lookup(child)
            if hit is not None and stat.S_ISDIR(hit[1].st_mode):
                yield from self.walk(child)

    def info(self, rel: str) -> FileInfo | None:
        hit = self.lookup(rel)
        return None if hit is None else file_info(*hit)


def _touched(layer_dirs: Iterable[Path]) -> tuple[set[str], set[str]]:
    """Paths present in these layer directories, and those whose lower contents they hide
    (whiteouts and opaque directories: the subtree must be compared too)."""
    paths: set[str] = set()
    hiding: set[str] = set()
    for top in layer_dirs:
        if not top.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            base = Path(dirpath)
            rel_dir = "/" + str(base.relative_to(top)).strip(".").strip("/")
            for name in (*dirnames, *filenames):
                rel = (rel_dir.rstrip("/") + "/" + name)
                paths.add(rel)
                full = base / name
                st = os.lstat(full)
                if _is_whiteout(st) or (stat.S_ISDIR(st.st_mode) and _opaque(full)):
                    hiding.add(rel)
    return paths, hiding


# ------------------------------------------------------------------------------------ the diff
def _layer_history(config: dict) -> list[str]:
    """The ``created_by`` of each layer-making history entry, in layer order."""
    return [h.get("created_by", "") or h.get("comment", "")
            for h in config.get("history") or [] if not h.get("empty_layer")]


def _flatten(doc: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(doc, dict) and doc:
        for key, value in doc.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(doc, list) and prefix == "history":
        for i, value in enumerate(doc):
            out[f"history[{i}]"] = value
    else:
        out[prefix] = doc
    return out


def config_changes(a: dict, b: dict) -> list[ConfigChange]:
    """Keys whose values differ between two image configs (``rootfs`` left out: the layers
    say that better)."""
    fa = _flatten({k: v for k, v in a.items() if k != "rootfs"})
    fb = _flatten({k: v for k, v in b.items() if k != "rootfs"})
    return [ConfigChange(key, fa.get(key), fb.get(key)) for key in sorted(set(fa) | set(fb))
            if fa.get(key) != fb.get(key)]


def compare_files(view_a: MergedView, view_b: MergedView, paths: Iterable[str], *,
                  ignore: Iterable[str] = ()) -> list[FileChange]:
    """Compare ``paths`` in two merged views; unchanged paths are left out."""
    skip = set(ignore)
    wanted = [f for f in FIELDS if f not in skip]
    changes: list[FileChange] = []
    for rel in sorted(set(paths)):
        a, b = view_a.info(rel), view_b.info(rel)
        if a is None and b is None:
            continue
        if a is None:
            changes.append(FileChange(rel, "added", None, b))
        elif b is None:
            changes.append(FileChange(rel, "removed", a, None))
        else:
            differ = tuple(f for f in wanted if a.value(f) != b.value(f))
            if differ:
                changes.append(FileChange(rel, "changed", a, b, differ))
    return changes


def diff_images(store: Any, image_a: str, image_b: str, *,
                ignore: Iterable[str] = ()) -> ImageDiff:
    """Compare two images of one image store.

    Args:
        store: the :class:`~portside.engine.image.store.ImageStore` (its snapshots are read).
        image_a: the first image (name, id or id prefix): "before".
        image_b: the second image: "after" (``added`` files are in it and not in ``image_a``).
        ignore: file fields not to compare (any of :data:`FIELDS`, e.g. ``("mtime",)``).

    Returns:
        An :class:`ImageDiff`; ``identical`` is True exactly when the image ids are equal.

    Raises:
        NotFound: either image does not exist.
        InvalidArgument: ``ignore`` names an unknown field.
    """
    from ..errors import InvalidArgument

    unknown = set(ignore) - set(FIELDS)
    if unknown:
        raise InvalidArgument(f"image diff: unknown field to ignore: {sorted(unknown)[0]} "
                              f"(one of {', '.join(FIELDS)})")
    rec_a, rec_b = store.get(image_a), store.get(image_b)
    result = ImageDiff(image_a, image_b, rec_a.id == rec_b.id)
    if result.identical:
        return result
    cfg_a, cfg_b = store.config(rec_a), store.config(rec_b)
    result.config = config_changes(cfg_a, cfg_b)
    ids_a = [layer["diff_id"] for layer in rec_a.layers]
    ids_b = [layer["diff_id"] for layer in rec_b.layers]
    k = 0
    while k < min(len(ids_a), len(ids_b)) and ids_a[k] == ids_b[k]:
        k += 1
    result.shared_layers = k
    if k == len(ids_a) == len(ids_b):
        return result  # the same files; only the config differs
    result.first_layer = k
    hist_a, hist_b = _layer_history(cfg_a), _layer_history(cfg_b)

    def layer(ids: list[str], hist: list[str]) -> LayerInfo:
        if k >= len(ids):
            return LayerInfo(k, None, "")
        return LayerInfo(k, ids[k], hist[k] if k < len(hist) else "")

    result.layer_a, result.layer_b = layer(ids_a, hist_a), layer(ids_b, hist_b)
    snaps = store.snapshots
    dirs_a = [snaps.path(layer["chain_id"]) for layer in rec_a.layers]
    dirs_b = [snaps.path(layer["chain_id"]) for layer in rec_b.layers]
    view_a, view_b = MergedView(dirs_a[::-1]), MergedView(dirs_b[::-1])
    paths, hiding = _touched([*dirs_a[k:], *dirs_b[k:]])
    for rel in sorted(hiding):
        # a deleted or opaque directory: what it hid on either side must be compared too
        for view in (view_a, view_b):
            hit = view.lookup(rel)
            if hit is not None and stat.S_ISDIR(hit[1].st_mode):
                paths.update(view.walk(rel))
        for view in (MergedView(dirs_a[:k][::-1]),):
            hit = view.lookup(rel)
            if hit is not None and stat.S_ISDIR(hit[1].st_mode):
                paths.update(view.walk(rel))
    result.files = compare_files(view_a, view_b, paths, ignore=ignore)
    return result
