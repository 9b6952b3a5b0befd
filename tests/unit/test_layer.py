"""Layer tars: round trips, compressions, determinism, flat-mode whiteouts, streaming.

Root-only behaviour (owners, device nodes, overlay whiteouts, real overlayfs mounts) lives in
tests/integration/test_layer_root.py; escapes in test_layer_malicious.py.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess
import sys
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from layer_corpus import build_tar, dir_, hard, reg, sym
from portside.engine.errors import InvalidArgument, NotFound
from portside.engine.image.layer import (
    COMPRESSIONS,
    LayerDigests,
    apply_layer,
    decompressed,
    detect_compression,
    layer_paths,
    write_layer,
)

pytestmark = pytest.mark.unit

T0 = 1_600_000_000


def _xattrs_supported(path: Path) -> bool:
    probe = path / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
        return True
    except OSError:
        return False
    finally:
        probe.unlink()


def make_tree(root: Path, *, order: int = 1) -> Path:
    """A small tree with every kind of file a non-root user can make.

    ``order=-1`` creates the same tree in the reverse order (different inode/dirent order).
    """
    root.mkdir()
    dirs = ["etc", "bin", "tmp", "empty"]
    for name in dirs[::order]:
        (root / name).mkdir()
    steps = [
        lambda: (root / "etc/app.conf").write_bytes(b"key = value\n"),
        lambda: (root / "bin/tool").write_bytes(b"#!/bin/sh\necho hi\n" * 100),
        lambda: (root / "zero").write_bytes(b""),
        lambda: (root / "naïve ünïcode").write_bytes(b"u"),
        lambda: os.mkfifo(root / "fifo"),
    ]
    for step in steps[::order]:
        step()
    os.symlink("bin/tool", root / "tool-link")
    os.symlink("/nonexistent/abs", root / "etc/dangling")
    os.link(root / "bin/tool", root / "bin/tool-hard")
    os.chmod(root / "bin/tool", 0o4755)
    os.chmod(root / "tmp", 0o1777)
    os.chmod(root / "etc/app.conf", 0o600)
    if _xattrs_supported(root):
        os.setxattr(root / "etc/app.conf", "user.note", b"\xff\x00binary")
        os.setxattr(root / "etc", "user.dirnote", b"d")
    for i, p in enumerate(sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True)):
        os.utime(p, (T0 + i, T0 + i), follow_symlinks=False)
    return root


def describe(root: Path, *, owners: bool = False) -> dict[str, tuple]:
    """Everything a layer carries about a tree, keyed by relative path."""
    out: dict[str, tuple] = {}
    inodes: dict[int, str] = {}
    for p in sorted(root.rglob("*")):
        st = os.lstat(p)
        rel = str(p.relative_to(root))
        kind = stat.S_IFMT(st.st_mode)
        if stat.S_ISREG(st.st_mode):
            body = hashlib.sha256(p.read_bytes()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            body = os.readlink(p)
        else:
            body = None
        try:
            xattrs = tuple(sorted((n, os.getxattr(p, n, follow_symlinks=False))
                                  for n in os.listxattr(p, follow_symlinks=False) if n.startswith("user.")))
        except OSError:
            xattrs = ()
        link_group = None
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            link_group = inodes.setdefault(st.st_ino, rel)
        mode = stat.S_IMODE(st.st_mode) if not stat.S_ISLNK(st.st_mode) else None
        out[rel] = (kind, mode, st.st_mtime_ns // 10**9, body, xattrs, link_group,
                    (st.st_uid, st.st_gid) if owners else None)
    return out


def write(source: Path, **kw) -> tuple[bytes, LayerDigests]:
    buf = io.BytesIO()
    digests = write_layer(source, buf, **kw)
    return buf.getvalue(), digests


class Trickle(io.RawIOBase):
    """A non-seekable stream that hands out at most ``step`` bytes per read (like a pipe)."""

    def __init__(self, data: bytes, step: int = 777) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = min(len(buf), self._step, len(self._data) - self._pos)
        buf[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n


# ---------------------------------------------------------------------------------- compression
@pytest.mark.parametrize("head,expected", [
    (gzip.compress(b"x")[:4], "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x50\x2a\x4d\x18", "zstd"),       # a zstd skippable frame
    (b"etc/", None),
    (b"", None),
    (b"\x1f", None),
])
def test_detect_compression(head, expected):
    assert detect_compression(head) == expected


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_decompressed_streams_each_compression(tmp_path, compression):
    tree = make_tree(tmp_path / "src")
    blob, d = write(tree, compression=compression)
    plain = decompressed(Trickle(blob)).read()
    assert "sha256:" + hashlib.sha256(plain).hexdigest() == d.diff_id
    assert "sha256:" + hashlib.sha256(blob).hexdigest() == d.digest
    assert d.size == len(blob)
    assert d.media_type == "application/vnd.oci.image.layer.v1.tar" + {None: "", "gzip": "+gzip",
                                                                        "zstd": "+zstd"}[compression]
    if compression is None:
        assert d.digest == d.diff_id


def test_decompressed_handles_concatenated_gzip_members():
    blob = gzip.compress(b"hello ") + gzip.compress(b"world")
    assert decompressed(io.BytesIO(blob)).read() == b"hello world"


def test_corrupt_gzip_is_invalid_argument(tmp_path):
    blob, _ = write(make_tree(tmp_path / "src"))
    broken = blob[:30] + bytes(b ^ 0xFF for b in blob[30:60]) + blob[60:]
    with pytest.raises(InvalidArgument, match="gzip"):
        apply_layer(io.BytesIO(broken), tmp_path / "out", overlay=False)


def test_truncated_and_garbage_layers_are_invalid(tmp_path):
    blob, _ = write(make_tree(tmp_path / "src"), compression=None)
    with pytest.raises(InvalidArgument):
        apply_layer(io.BytesIO(blob[:1500]), tmp_path / "out1", overlay=False)
    with pytest.raises(InvalidArgument):
        apply_layer(io.BytesIO(b"this is not a tar archive at all" * 40), tmp_path / "out2", overlay=False)
    with pytest.raises(InvalidArgument):
        list(layer_paths(io.BytesIO(b"\x28\xb5\x2f\xfd" + b"\x00" * 100)))


def test_missing_zstandard_module_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "zstandard", None)  # makes `import zstandard` fail
    with pytest.raises(InvalidArgument, match="zstandard"):
        decompressed(io.BytesIO(b"\x28\xb5\x2f\xfd\x00\x00"))
    with pytest.raises(InvalidArgument, match="zstandard"):
        write_layer(make_tree(tmp_path / "src"), io.BytesIO(), compression="zstd")


def test_write_layer_rejects_unknown_compression_and_missing_source(tmp_path):
    with pytest.raises(InvalidArgument, match="xz"):
        write_layer(tmp_path, io.BytesIO(), compression="xz")
    with pytest.raises(NotFound):
        write_layer(tmp_path / "nope", io.BytesIO())
    with pytest.raises(NotFound, match="ghost"):
        write_layer(make_tree(tmp_path / "src"), io.BytesIO(), paths=["ghost"])


# ---------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("overlay", [False, True])
def test_round_trip_gives_identical_tree(tmp_path, compression, overlay):
    tree = make_tree(tmp_path / "src")
    blob, d = write(tree, compression=compression)
    diff_id, size = apply_layer(Trickle(blob, 4096), tmp_path / "out", overlay=overlay)
    assert diff_id == d.diff_id
    assert size == len(decompressed(io.BytesIO(blob)).read())
    assert describe(tmp_path / "out") == describe(tree)
    out = tmp_path / "out"
    assert os.stat(out / "bin/tool").st_ino == os.stat(out / "bin/tool-hard").st_ino
    assert stat.S_IMODE(os.stat(out / "bin/tool").st_mode) == 0o4755
    assert stat.S_IMODE(os.stat(out / "tmp").st_mode) == 0o1777


def test_directory_mtime_is_set_after_its_contents(tmp_path):
    blob = build_tar([dir_("d", mtime=T0), reg("d/a", mtime=T0 + 5), reg("d/b", mtime=T0 + 6)])
    apply_layer(io.BytesIO(blob), tmp_path / "out", overlay=False)
    assert os.stat(tmp_path / "out/d").st_mtime == T0
    assert os.stat(tmp_path / "out/d/b").st_mtime == T0 + 6


def test_read_only_directory_still_receives_its_contents(tmp_path):
    blob = build_tar([dir_("ro", mode=0o555), reg("ro/f", b"data", mode=0o444)])
    apply_layer(io.BytesIO(blob), tmp_path / "out", overlay=False)
    assert (tmp_path / "out/ro/f").read_bytes() == b"data"
    assert stat.S_IMODE(os.stat(tmp_path / "out/ro").st_mode) == 0o555


def test_absolute_and_dotted_names_are_made_relative(tmp_path):
    blob = build_tar([dir_("/abs"), reg("/abs/f", b"1"), reg("./rel/./g", b"2"), reg("a/../h", b"3")])
    apply_layer(io.BytesIO(blob), tmp_path / "out", overlay=False)
    assert (tmp_path / "out/abs/f").read_bytes() == b"1"
    assert (tmp_path / "out/rel/g").read_bytes() == b"2"
    assert (tmp_path / "out/h").read_bytes() == b"3"


def test_later_entry_replaces_earlier_of_another_kind(tmp_path):
    blob = build_tar([reg("x", b"file"), dir_("x"), reg("x/inner", b"i"),
                      dir_("y"), reg("y/deep", b"d"), sym("y", "x"),
                      sym("z", "x"), reg("z", b"now a file")])
    apply_layer(io.BytesIO(blob), tmp_path / "out", overlay=False)
    out = tmp_path / "out"
    assert (out / "x").is_dir() and (out / "x/inner").read_bytes() == b"i"
    assert os.readlink(out / "y") == "x"
    assert not (out / "z").is_symlink() and (out / "z").read_bytes() == b"now a file"


def test_hardlink_within_layer_shares_the_inode(tmp_path):
    blob = build_tar([reg("a", b"same"), hard("b", "a"), hard("c", "/a")])
    apply_layer(io.BytesIO(blob), tmp_path / "out", overlay=False)
    out = tmp_path / "out"
    assert {os.stat(out / n).st_ino for n in "abc"} == {os.stat(out / "a").st_ino}
    with pytest.raises(InvalidArgument, match="not found"):
        apply_layer(io.BytesIO(build_tar([hard("b", "missing")])), tmp_path / "out2", overlay=False)


def test_overlay_hardlink_to_lower_file_is_copied(tmp_path):
    lower = tmp_path / "lower"
    (lower / "usr/bin").mkdir(parents=True)
    (lower / "usr/bin/python3").write_bytes(b"ELF" * 1000)
    os.chmod(lower / "usr/bin/python3", 0o751)
    os.utime(lower / "usr/bin/python3", (T0, T0))
    os.chmod(lower / "usr", 0o750)
    blob = build_tar([hard("usr/bin/python", "usr/bin/python3")])   # parents implied
    apply_layer(io.BytesIO(blob), tmp_path / "snap", overlay=True, lower=[lower])
    copy = tmp_path / "snap/usr/bin/python"
    assert copy.read_bytes() == b"ELF" * 1000
    assert stat.S_IMODE(os.stat(copy).st_mode) == 0o751 and os.stat(copy).st_mtime == T0
    # the implied parent takes the lower directory's mode, as overlayfs would show it
    assert stat.S_IMODE(os.stat(tmp_path / "snap/usr").st_mode) == 0o750
    assert not (tmp_path / "snap/usr/bin/python3").exists()


def test_overlay_hardlink_prefers_topmost_lower(tmp_path):
    top, bottom = tmp_path / "top", tmp_path / "bottom"
    top.mkdir()
    bottom.mkdir()
    (top / "f").write_bytes(b"top")
    (bottom / "f").write_bytes(b"bottom")
    (bottom / "only-bottom").write_bytes(b"b")
    blob = build_tar([hard("g", "f"), hard("h", "only-bottom")])
    apply_layer(io.BytesIO(blob), tmp_path / "snap", overlay=True, lower=[top, bottom])
    assert (tmp_path / "snap/g").read_bytes() == b"top"
    assert (tmp_path / "snap/h").read_bytes() == b"b"


# ---------------------------------------------------------------------------- flat whiteouts
def test_flat_mode_whiteouts_delete_and_opaque_empties(tmp_path):
    root = tmp_path / "rootfs"
    base = build_tar([dir_("a"), reg("a/keep"), reg("a/gone"), dir_("a/gonedir"), reg("a/gonedir/x"),
                      dir_("d"), reg("d/old1"), dir_("d/sub"), reg("d/sub/old2"), sym("d/oldlink", "/etc")])
    apply_layer(io.BytesIO(base), root, overlay=False)
    top = build_tar([dir_("a"), reg("a/.wh.gone"), reg("a/.wh.gonedir"), reg("a/.wh.never-existed"),
                     dir_("d"), dir_("d/sub"), reg("d/sub/new"), reg("d/+early"),
                     reg("d/.wh..wh..opq"), reg("d/late")])
    apply_layer(io.BytesIO(top), root, overlay=False)
    assert sorted(p.name for p in (root / "a").iterdir()) == ["keep"]
    # the opaque marker removed what the earlier layer had, kept this layer's own entries
    # (also those that came before the marker, and d/sub which this layer re-listed)
    assert sorted(str(p.relative_to(root)) for p in (root / "d").rglob("*")) == \
        ["d/+early", "d/late", "d/sub", "d/sub/new"]
    assert not list(root.rglob(".wh.*"))


def test_flat_whiteout_of_a_name_this_layer_also_writes_keeps_the_new_one(tmp_path):
    root = tmp_path / "rootfs"
    apply_layer(io.BytesIO(build_tar([dir_("x"), reg("x/old")])), root, overlay=False)
    apply_layer(io.BytesIO(build_tar([dir_("x"), reg("x/new"), reg(".wh.x")])), root, overlay=False)
    assert sorted(p.name for p in (root / "x").iterdir()) == ["new"]


def test_whiteout_named_directory_component_is_rejected(tmp_path):
    with pytest.raises(InvalidArgument, match="whiteout"):
        apply_layer(io.BytesIO(build_tar([reg(".wh.a/b")])), tmp_path / "out", overlay=False)


# ------------------------------------------------------------------------- writing & determinism
def test_write_is_deterministic_and_independent_of_creation_order(tmp_path):
    a = make_tree(tmp_path / "a")
    b = make_tree(tmp_path / "b", order=-1)
    for compression in COMPRESSIONS:
        first, d1 = write(a, compression=compression)
        (a / "etc/app.conf").read_bytes()  # an access (atime) must not matter
        second, d2 = write(a, compression=compression)
        third, d3 = write(b, compression=compression)
        assert first == second == third
        assert d1 == d2 == d3


def test_written_tar_is_normalised(tmp_path):
    tree = make_tree(tmp_path / "src")
    blob, _ = write(tree, compression="gzip")
    assert blob[3] == 0              # gzip FLG: no file name, no comment
    assert blob[4:8] == b"\0\0\0\0"  # gzip MTIME 0
    plain = decompressed(io.BytesIO(blob)).read()
    members = list(layer_paths(io.BytesIO(plain)))
    names = [m.name for m in members]
    assert names[:3] == ["bin", "bin/tool", "bin/tool-hard"]
    assert all(not n.startswith(("/", "./")) for n in names)
    for m in members:
        assert m.uname == "" and m.gname == ""
        assert not {"atime", "ctime"} & set(m.pax_headers)
        assert m.mtime == int(m.mtime)
    kinds = {m.name: m.type for m in members}
    assert kinds["bin/tool-hard"] == tarfile.LNKTYPE
    assert kinds["fifo"] == tarfile.FIFOTYPE
    assert kinds["tool-link"] == tarfile.SYMTYPE
    # every directory precedes its contents
    seen: set[str] = set()
    for n in names:
        parent = n.rpartition("/")[0]
        assert not parent or parent in seen
        seen.add(n)


def test_source_date_epoch_clamps_newer_mtimes_only(tmp_path):
    tree = make_tree(tmp_path / "src")
    os.utime(tree / "zero", (T0 - 1000, T0 - 1000))
    os.utime(tree / "etc/app.conf", (T0 + 10**6, T0 + 10**6))
    blob, d = write(tree, compression=None, source_date_epoch=T0)
    mtimes = {m.name: m.mtime for m in layer_paths(io.BytesIO(blob))}
    assert mtimes["zero"] == T0 - 1000
    assert mtimes["etc/app.conf"] == T0
    assert max(mtimes.values()) == T0
    os.utime(tree / "etc/app.conf", (T0 + 2 * 10**6, T0 + 2 * 10**6))
    assert write(tree, compression=None, source_date_epoch=T0)[1] == d  # later edits of mtime vanish


def test_paths_selects_entries_and_their_parents(tmp_path):
    tree = make_tree(tmp_path / "src")
    blob, _ = write(tree, compression=None, paths=["etc/app.conf", "bin"])
    names = [m.name for m in layer_paths(io.BytesIO(blob))]
    assert names == ["bin", "bin/tool", "bin/tool-hard", "etc", "etc/app.conf"]


# ------------------------------------------------------------------------------------ streaming
def test_big_file_is_streamed_not_loaded(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    size = 48 * 1024 * 1024
    with open(src / "big", "wb") as f:  # sparse: cheap to make, 48 MiB to archive
        f.truncate(size)
    with open(tmp_path / "layer.tar", "wb") as out:
        tracemalloc.start()
        d = write_layer(src, out, compression=None)
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert d.size > size
    with open(tmp_path / "layer.tar", "rb") as f:
        tracemalloc.start()
        diff_id, n = apply_layer(f, tmp_path / "out", overlay=False)
        _, apply_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert diff_id == d.diff_id and n == d.size
    assert os.path.getsize(tmp_path / "out/big") == size
    assert write_peak < 8 * 1024 * 1024, write_peak
    assert apply_peak < 8 * 1024 * 1024, apply_peak


def test_layer_paths_lists_without_extracting(tmp_path):
    blob = build_tar([dir_("a"), reg("a/f", b"x" * 5000), sym("a/l", "f")], compression="zstd")
    listed = [(m.name, m.type) for m in layer_paths(Trickle(blob))]
    assert listed == [("a", tarfile.DIRTYPE), ("a/f", tarfile.REGTYPE), ("a/l", tarfile.SYMTYPE)]


# ------------------------------------------------------------------------------ header parsing
def _stock(blob: bytes) -> list[tuple]:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as tf:
        return [_fields(m) for m in tf]


def _fields(m: tarfile.TarInfo) -> tuple:
    return (m.name, m.type, m.mode, m.uid, m.gid, m.size, m.mtime, m.linkname, m.uname, m.gname,
            m.devmajor, m.devminor, sorted(m.pax_headers.items()), m.offset_data, m.sparse)


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_fast_header_parser_matches_tarfile(tmp_path, fmt):
    from layer_corpus import CASES, make_world

    world = make_world(tmp_path)
    long = "d" * 90 + "/" + "e" * 90 + "/" + "f" * 40  # ustar prefix/name split territory
    extra = [dir_("d" * 90), dir_("d" * 90 + "/" + "e" * 90), reg(long, b"L"), reg("big-ids", b"x", uid=0o7777777),
             reg("neg", b"", mtime=0), reg("dir-like/", b"")]
    if fmt != tarfile.USTAR_FORMAT:
        extra += [reg("u" * 200, b"long"), reg("huge-uid", b"x", uid=2**31 + 5)]
    for case in CASES:
        if case.fmt != fmt and case.name.startswith("pax") and fmt == tarfile.USTAR_FORMAT:
            continue
        try:
            blob = build_tar(case.entries(world) + extra, fmt)
        except ValueError:  # ustar cannot hold this case's names
            continue
        assert [_fields(m) for m in layer_paths(io.BytesIO(blob))] == _stock(blob), case.name


def test_fast_header_parser_matches_tarfile_on_gnu_tar_output(tmp_path):
    src = make_tree(tmp_path / "src")
    deep = src / ("x" * 120) / ("y" * 120)
    deep.mkdir(parents=True)
    (deep / ("z" * 100)).write_bytes(b"deep")
    with open(src / "sparse", "wb") as f:
        f.seek(5 * 1024 * 1024)
        f.write(b"end")
    for fmt in ("gnu", "oldgnu", "posix", "ustar", "v7"):
        out = tmp_path / f"{fmt}.tar"
        extra = ["--sparse"] if fmt in ("gnu", "oldgnu", "posix") else []
        result = subprocess.run(["tar", f"--format={fmt}", *extra, "-C", str(src), "-cf", str(out), "."],
                                capture_output=True)
        if result.returncode != 0:  # ustar/v7 refuse the long names: their own limits
            continue
        blob = out.read_bytes()
        assert [_fields(m) for m in layer_paths(io.BytesIO(blob))] == _stock(blob), fmt
        diff_id, _ = apply_layer(io.BytesIO(blob), tmp_path / f"out-{fmt}", overlay=False)
        assert (tmp_path / f"out-{fmt}/sparse").read_bytes()[-3:] == b"end"
        assert os.path.getsize(tmp_path / f"out-{fmt}/sparse") == 5 * 1024 * 1024 + 3
        assert diff_id == "sha256:" + hashlib.sha256(blob).hexdigest()
