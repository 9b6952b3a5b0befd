"""Layer extraction never writes outside its target, whatever the tar says.

Each case of :mod:`layer_corpus` is applied next to a sentinel directory; the whole tmp tree outside
the target (sentinel, lower snapshot, the tar itself) is fingerprinted before and after, byte for
byte, with modes, owners and mtimes, and must not change: no file may appear, vanish or differ.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path

import pytest

from layer_corpus import CASES, Case, build_tar, make_world
from portside.engine.errors import InvalidArgument
from portside.engine.image.layer import apply_layer

pytestmark = pytest.mark.unit


def fingerprint(root: Path, exclude: Path) -> dict[str, tuple]:
    """Everything observable about the tree under ``root`` except below ``exclude``."""
    seen: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == exclude:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p == exclude:
                continue
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(p.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(p)
            else:
                content = None
            try:
                xattrs = sorted(os.listxattr(p, follow_symlinks=False))
            except OSError:
                xattrs = []
            seen[str(p.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, st.st_size,
                                              st.st_mtime_ns, st.st_nlink, content, tuple(xattrs))
    st = os.lstat(root)
    seen["."] = (st.st_mode, st.st_uid, st.st_gid)
    return seen


def test_corpus_is_large_enough():
    assert len(CASES) >= 25
    assert len({c.name for c in CASES}) == len(CASES)
    assert sum(c.expect == "reject" for c in CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malicious_layer_stays_inside_target(tmp_path: Path, case: Case):
    world = make_world(tmp_path)
    if case.lower:
        case.lower(world)
    if case.prepare:
        case.prepare(world)
    blob = build_tar(case.entries(world), case.fmt, case.compression)
    (tmp_path / "layer.tar").write_bytes(blob)
    before = fingerprint(tmp_path, world.target)
    lower = [world.lower] if case.overlay else []

    if case.expect == "reject":
        with pytest.raises(InvalidArgument) as caught:
            apply_layer(io.BytesIO(blob), world.target, overlay=case.overlay, lower=lower)
        message = str(caught.value)
        assert "\n" not in message
        assert "layer entry" in message or "layer" in message
        if case.needle:
            assert case.needle in message, message
    else:
        apply_layer(io.BytesIO(blob), world.target, overlay=case.overlay, lower=lower)
        if case.check:
            case.check(world)

    assert fingerprint(tmp_path, world.target) == before
    assert (world.sentinel / "file").read_bytes() == b"original"


def test_rejected_layer_message_names_entry_with_nul_escaped(tmp_path: Path):
    case = next(c for c in CASES if c.name == "nul_in_name")
    world = make_world(tmp_path)
    with pytest.raises(InvalidArgument, match=r"NUL byte") as caught:
        apply_layer(io.BytesIO(build_tar(case.entries(world))), world.target, overlay=False)
    assert "\\x00" in str(caught.value)
