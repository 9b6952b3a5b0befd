"""Malicious layer tars, built at test time with :mod:`tarfile` (nothing binary is committed).

Every case describes a layer that tries to touch something outside the extraction target: a
``sentinel`` directory that sits *beside* the target, reached by ``..``, by absolute names, through
symlinks planted earlier in the same layer or present below it (an earlier layer in flat mode, a
lower snapshot in overlay mode), through hardlinks, whiteouts, long names and PAX overrides.

A case either must be *rejected* (``InvalidArgument`` naming the entry) or is *neutralised* (it
extracts, but only inside the target; ``check`` then says what the target must hold). Either way the
test around it asserts that nothing outside the target changed, byte for byte.

World layout (all under one tmp dir)::

    target/            where the layer is applied (may be pre-populated by ``prepare``)
    lower/             a lower snapshot for overlay-mode cases (filled by ``lower``)
    sentinel/file      "original" (mode 0644, mtime 1_000_000)
    sentinel/sub/f     "original"
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

Entry = tuple[tarfile.TarInfo, bytes]


@dataclass
class World:
    root: Path
    target: Path
    lower: Path
    sentinel: Path

    @property
    def s(self) -> str:
        """Absolute path of the sentinel, without its leading slash handling: as a string."""
        return str(self.sentinel)


@dataclass
class Case:
    name: str
    entries: Callable[[World], list[Entry]]
    expect: str = "reject"                       # "reject" or "neutral"
    overlay: bool = False
    lower: Callable[[World], None] | None = None       # fills world.lower (overlay cases)
    prepare: Callable[[World], None] | None = None     # pre-populates world.target (flat cases)
    check: Callable[[World], None] | None = None       # for neutral cases: what target holds
    fmt: int = tarfile.PAX_FORMAT
    compression: str | None = None
    needle: str | None = None                    # a piece of the entry name the message must quote
    root_only: bool = False
    tags: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------- entry helpers
def _ti(name: str, kind: bytes, **kw) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = kw.pop("mode", 0o644 if kind != tarfile.DIRTYPE else 0o755)
    ti.mtime = kw.pop("mtime", 1_600_000_000)
    pax = kw.pop("pax", None)
    if pax:
        ti.pax_headers = dict(pax)
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti


def reg(name: str, data: bytes = b"pwned", **kw) -> Entry:
    ti = _ti(name, tarfile.REGTYPE, **kw)
    ti.size = len(data)
    return ti, data


def dir_(name: str, **kw) -> Entry:
    return _ti(name, tarfile.DIRTYPE, **kw), b""


def sym(name: str, target: str, **kw) -> Entry:
    return _ti(name, tarfile.SYMTYPE, linkname=target, **kw), b""


def hard(name: str, target: str, **kw) -> Entry:
    return _ti(name, tarfile.LNKTYPE, linkname=target, **kw), b""


def chrdev(name: str, major: int, minor: int, **kw) -> Entry:
    return _ti(name, tarfile.CHRTYPE, devmajor=major, devminor=minor, **kw), b""


def build_tar(entries: list[Entry], fmt: int = tarfile.PAX_FORMAT, compression: str | None = None) -> bytes:
    """The bytes of a tar holding ``entries`` (optionally gzip or zstd compressed)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    raw = buf.getvalue()
    if compression == "gzip":
        return gzip.compress(raw, mtime=0)
    if compression == "zstd":
        import zstandard
        return zstandard.ZstdCompressor().compress(raw)
    return raw


def make_world(root: Path) -> World:
    w = World(root=root, target=root / "target", lower=root / "lower", sentinel=root / "sentinel")
    w.target.mkdir()
    w.lower.mkdir()
    (w.sentinel / "sub").mkdir(parents=True)
    (w.sentinel / "file").write_bytes(b"original")
    (w.sentinel / "sub" / "f").write_bytes(b"original")
    for p in (w.sentinel / "file", w.sentinel / "sub" / "f", w.sentinel / "sub", w.sentinel):
        os.utime(p, (1_000_000, 1_000_000))
    return w


# ------------------------------------------------------------------------------------- checks
def _is_regular_with(rel: str, data: bytes) -> Callable[[World], None]:
    def check(w: World) -> None:
        p = w.target / rel
        assert p.is_file() and not p.is_symlink(), f"{rel} should be a regular file"
        assert p.read_bytes() == data

    return check


def _is_real_dir(rel: str) -> Callable[[World], None]:
    def check(w: World) -> None:
        p = w.target / rel
        assert p.is_dir() and not p.is_symlink(), f"{rel} should be a real directory"

    return check


def _lower_symlink(target_fn: Callable[[World], str]) -> Callable[[World], None]:
    def fill(w: World) -> None:
        os.symlink(target_fn(w), w.lower / "l")

    return fill


def _target_symlink(target_fn: Callable[[World], str]) -> Callable[[World], None]:
    def fill(w: World) -> None:
        os.symlink(target_fn(w), w.target / "l")

    return fill


# -------------------------------------------------------------------------------------- cases
CASES: list[Case] = [
    # -- names that climb out
    Case("dotdot_file", lambda w: [reg("../sentinel/evil")], needle="../sentinel/evil"),
    Case("dotdot_overwrite", lambda w: [reg("../sentinel/file")], needle="../sentinel/file"),
    Case("dotdot_nested", lambda w: [dir_("a"), reg("a/../../sentinel/evil")], needle="a/../../sentinel/evil"),
    Case("dotdot_deep", lambda w: [reg("a/b/../../../sentinel/file")]),
    Case("dotdot_after_absolute", lambda w: [reg("/../sentinel/evil")]),
    Case("dotdot_dir", lambda w: [dir_("../sentinel/newdir")]),
    Case("dotdot_symlink_name", lambda w: [sym("../sentinel/l", "/etc/passwd")]),
    Case("dotdot_device", lambda w: [chrdev("../sentinel/null", 1, 3)]),
    Case("absolute_name", lambda w: [reg(w.s + "/file")], expect="neutral",
         check=lambda w: _is_regular_with(w.s.lstrip("/") + "/file", b"pwned")(w)),
    Case("absolute_dir", lambda w: [dir_(w.s + "/sub", mode=0o777)], expect="neutral",
         check=lambda w: _is_real_dir(w.s.lstrip("/") + "/sub")(w)),
    # -- symlinks planted earlier in the same layer
    Case("symlink_rel_then_write", lambda w: [sym("l", "../sentinel"), reg("l/evil")], needle="l/evil"),
    Case("symlink_abs_then_write", lambda w: [sym("l", w.s), reg("l/evil")]),
    Case("symlink_abs_then_overwrite", lambda w: [sym("l", w.s), reg("l/file")]),
    Case("symlink_chain", lambda w: [sym("a", "b"), sym("b", "../sentinel"), reg("a/evil")]),
    Case("symlink_to_parent", lambda w: [sym("up", ".."), reg("up/sentinel/evil")]),
    Case("symlink_to_root", lambda w: [sym("root", "/"), reg("root" + w.s + "/evil")]),
    Case("symlink_loop", lambda w: [sym("a", "a"), reg("a/x")]),
    Case("symlink_replaces_dir", lambda w: [dir_("d"), sym("d", "../sentinel"), reg("d/evil")]),
    Case("symlink_then_dir_write", lambda w: [sym("d", "../sentinel"), dir_("d/sub")]),
    Case("symlink_then_file_same_name", lambda w: [sym("f", "../sentinel/file"), reg("f")],
         expect="neutral", check=_is_regular_with("f", b"pwned")),
    Case("symlink_abs_then_file_same_name", lambda w: [sym("f", w.s + "/file"), reg("f")],
         expect="neutral", check=_is_regular_with("f", b"pwned")),
    Case("symlink_then_dir_same_name", lambda w: [sym("d", "../sentinel"), dir_("d", mode=0o777, mtime=5)],
         expect="neutral", check=_is_real_dir("d")),
    Case("symlink_metadata_not_followed",
         lambda w: [sym("l", "../sentinel/file", mtime=5, mode=0o777, uid=4242, gid=4242)],
         expect="neutral", check=lambda w: None),
    # -- hardlinks
    Case("hardlink_dotdot", lambda w: [hard("h", "../sentinel/file")], needle="h"),
    Case("hardlink_absolute", lambda w: [hard("h", w.s + "/file")]),
    Case("hardlink_through_symlink", lambda w: [sym("l", "../sentinel"), hard("h", "l/file")]),
    Case("hardlink_to_symlink_then_write", lambda w: [sym("s", "../sentinel/file"), hard("h", "s"), reg("h")],
         expect="neutral", check=_is_regular_with("h", b"pwned")),
    Case("hardlink_to_symlink_then_write_below", lambda w: [sym("s", "../sentinel"), hard("h", "s"), reg("h/evil")]),
    Case("hardlink_to_dir", lambda w: [dir_("d"), hard("h", "d")]),
    Case("hardlink_to_parent", lambda w: [hard("h", "..")]),
    Case("hardlink_then_file_rewrite", lambda w: [reg("a", b"inside"), hard("b", "a"), reg("b", b"new")],
         expect="neutral", check=_is_regular_with("a", b"inside")),
    # -- whiteouts
    Case("whiteout_dotdot_name", lambda w: [reg(".wh..."), reg("x")]),
    Case("whiteout_dot_name", lambda w: [reg(".wh..")]),
    Case("whiteout_empty_name", lambda w: [dir_("a"), reg("a/.wh.")]),
    Case("whiteout_in_parent", lambda w: [reg("../.wh.sentinel")]),
    Case("whiteout_through_symlink", lambda w: [sym("l", "../sentinel"), reg("l/.wh.file")]),
    Case("opaque_through_symlink", lambda w: [sym("l", "../sentinel"), reg("l/.wh..wh..opq")]),
    Case("whiteout_as_directory", lambda w: [reg(".wh.x/../../sentinel/evil")]),
    Case("whiteout_through_symlink_overlay", lambda w: [sym("l", "../sentinel"), reg("l/.wh.file")],
         overlay=True),
    # -- what an earlier layer left in the target (flat mode) or in a lower snapshot (overlay)
    Case("target_symlink_write", lambda w: [reg("l/evil")], prepare=_target_symlink(lambda w: w.s)),
    Case("target_symlink_whiteout", lambda w: [reg("l/.wh.file")], prepare=_target_symlink(lambda w: w.s)),
    Case("target_symlink_opaque", lambda w: [reg("l/sub/.wh..wh..opq")], prepare=_target_symlink(lambda w: w.s)),
    Case("target_symlink_hardlink", lambda w: [hard("h", "l/file")], prepare=_target_symlink(lambda w: w.s)),
    Case("lower_symlink_write", lambda w: [reg("l/evil")], overlay=True,
         lower=_lower_symlink(lambda w: w.s)),
    Case("lower_symlink_relative_write", lambda w: [reg("l/evil")], overlay=True,
         lower=_lower_symlink(lambda w: "../sentinel")),
    Case("lower_symlink_hardlink", lambda w: [hard("h", "l/file")], overlay=True,
         lower=_lower_symlink(lambda w: w.s)),
    Case("lower_symlink_whiteout", lambda w: [reg("l/.wh.file")], overlay=True,
         lower=_lower_symlink(lambda w: w.s)),
    Case("lower_symlink_opaque", lambda w: [reg("l/.wh..wh..opq")], overlay=True,
         lower=_lower_symlink(lambda w: w.s)),
    # -- long names, PAX overrides, NUL bytes
    Case("gnu_longname_dotdot", lambda w: [reg("x" * 150 + "/../../sentinel/evil")], fmt=tarfile.GNU_FORMAT),
    Case("pax_long_dotdot", lambda w: [reg("y" * 200 + "/../../sentinel/evil")]),
    Case("pax_path_override", lambda w: [reg("innocent", pax={"path": "../sentinel/evil"})],
         needle="../sentinel/evil"),
    Case("pax_linkpath_override", lambda w: [hard("h", "innocent", pax={"linkpath": "../sentinel/file"})]),
    Case("pax_symlink_then_write", lambda w: [sym("innocent", "x", pax={"linkpath": w.s}),
                                              reg("innocent/evil")]),
    Case("nul_in_name", lambda w: [reg("ok", pax={"path": "evil\x00/../../sentinel/x"})]),
    Case("nul_in_symlink_target", lambda w: [sym("s", "x", pax={"linkpath": "../sentinel\x00/file"})]),
    Case("component_too_long", lambda w: [reg("a" * 300)]),
    Case("root_as_file", lambda w: [reg(".")]),
    Case("root_as_symlink", lambda w: [sym("./", "../sentinel")]),
    # -- the same through the decompressors
    Case("gzip_dotdot", lambda w: [reg("../sentinel/evil")], compression="gzip"),
    Case("zstd_symlink_then_write", lambda w: [sym("l", w.s), reg("l/evil")], compression="zstd"),
]
