"""Real overlayfs and bind mounts through LinuxMounter (root), over real snapshots.

Both overlay paths are exercised: the new mount API (``lowerdir+``, Linux >= 6.8) and the
``mount(2)`` fallback. Every test unmounts what it mounted and then checks that ``/proc/mounts``
shows nothing under its temporary directory.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from portside.engine.errors import NotFound, RuntimeFailure
from portside.engine.store import Database, LinuxMounter, Snapshots, chain_ids, mount_points

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root"),
]


def proc_mounts_under(path: Path) -> list[str]:
    real = os.path.realpath(path)
    with open("/proc/mounts", encoding="utf-8") as f:
        return [line for line in f if f" {real}" in line.replace("\\040", " ")]


@pytest.fixture(params=["new-api", "mount2"])
def mounter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LinuxMounter]:
    m = LinuxMounter(new_api=request.param == "new-api")
    if request.param == "new-api" and not m._supports_lowerdir_plus():
        pytest.skip("kernel lacks overlayfs lowerdir+ (Linux < 6.8)")
    yield m
    # Clean up whatever a failing test left mounted, innermost first, then prove it is gone.
    for point in reversed(mount_points(tmp_path)):
        m.unmount(point, lazy=True)
    assert proc_mounts_under(tmp_path) == []


@pytest.fixture
def snaps(tmp_path: Path) -> Iterator[Snapshots]:
    db = Database(tmp_path / "metadata.db")
    yield Snapshots(tmp_path / "snapshots", db)
    db.close()


def build_chain(snaps: Snapshots, layers: list[dict[str, str | None]]) -> str:
    """Create one snapshot per layer (file name -> text, or None for a whiteout); return top."""
    diffs = ["sha256:" + hashlib.sha256(repr((i, sorted(layer.items()))).encode()).hexdigest()
             for i, layer in enumerate(layers)]
    parent = None
    for cid, diff, layer in zip(chain_ids(diffs), diffs, layers):
        def populate(d: Path, layer: dict[str, str | None] = layer) -> int:
            for name, text in layer.items():
                if text is None:
                    # overlayfs whiteout: a character device with device number 0/0.
                    os.mknod(d / name, stat.S_IFCHR | 0o000, os.makedev(0, 0))
                else:
                    (d / name).parent.mkdir(parents=True, exist_ok=True)
                    (d / name).write_text(text)
            return 0
        snaps.create(cid, parent, diff, populate)
        parent = cid
    assert parent is not None
    return parent


def dirs(tmp_path: Path, *names: str) -> list[Path]:
    out = []
    for n in names:
        (tmp_path / n).mkdir(parents=True, exist_ok=True)
        out.append(tmp_path / n)
    return out


def test_sixty_lowers(mounter: LinuxMounter, snaps: Snapshots, tmp_path: Path) -> None:
    layers: list[dict[str, str | None]] = [{f"f{i}": str(i), "common": f"layer {i}"}
                                           for i in range(60)]
    top = build_chain(snaps, layers)
    lowers = snaps.lowers(top)
    assert len(lowers) == 60
    # Far beyond one page as a plain option string: the reason for lowerdir+ / fd aliases.
    assert len(":".join(map(str, lowers))) > 4096
    upper, work, target = dirs(tmp_path, "upper", "work", "rootfs")
    mounter.mount_overlay(lowers, upper, work, target)
    try:
        assert mounter.is_mounted(target)
        names = set(os.listdir(target))
        assert names == {f"f{i}" for i in range(60)} | {"common"}
        assert (target / "common").read_text() == "layer 59"  # topmost wins
        assert (target / "f0").read_text() == "0"
        # Writes land in the upper directory; the shared snapshot is untouched.
        (target / "f0").write_text("changed")
        assert (upper / "f0").read_text() == "changed"
        assert (lowers[-1] / "f0").read_text() == "0"
    finally:
        mounter.unmount(target)
    assert not mounter.is_mounted(target)
    assert proc_mounts_under(tmp_path) == []


def test_volatile_overlay_writes_the_same_upper_and_says_so(mounter: LinuxMounter,
                                                            snaps: Snapshots,
                                                            tmp_path: Path) -> None:
    top = build_chain(snaps, [{"old": "o", "gone": "g"}])
    upper, work, target = dirs(tmp_path, "upper", "work", "rootfs")
    mounter.mount_overlay(snaps.lowers(top), upper, work, target, volatile=True)
    try:
        options = next(line.split()[3] for line in Path("/proc/self/mounts").read_text().splitlines()
                       if line.split()[1] == str(target))
        kernel = tuple(int(p) for p in os.uname().release.split("-")[0].split(".")[:2])
        if kernel >= (5, 10):  # shown as "volatile", or "fsync=volatile" since Linux 6.x
            assert {"volatile", "fsync=volatile"} & set(options.split(","))
        with open(target / "new", "w") as f:
            f.write("n")
            os.fsync(f.fileno())
        (target / "gone").unlink()
    finally:
        mounter.unmount(target)
    assert (upper / "new").read_text() == "n"
    assert stat.S_ISCHR(os.lstat(upper / "gone").st_mode)
    assert proc_mounts_under(tmp_path) == []


def test_whiteout_hides_lower_file(mounter: LinuxMounter, snaps: Snapshots,
                                   tmp_path: Path) -> None:
    top = build_chain(snaps, [{"hidden": "secret", "kept": "k", "dir/inner": "i"},
                              {"hidden": None, "new": "n"}])
    upper, work, target = dirs(tmp_path, "upper", "work", "rootfs")
    mounter.mount_overlay(snaps.lowers(top), upper, work, target)
    try:
        assert sorted(os.listdir(target)) == ["dir", "kept", "new"]
        assert not (target / "hidden").exists()
        # Deleting through the overlay writes a whiteout into the upper directory.
        (target / "kept").unlink()
        assert not (target / "kept").exists()
        st = os.lstat(upper / "kept")
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    finally:
        mounter.unmount(target)
    assert proc_mounts_under(tmp_path) == []


def test_read_only_overlay_without_upper(mounter: LinuxMounter, snaps: Snapshots,
                                         tmp_path: Path) -> None:
    top = build_chain(snaps, [{"a": "1"}, {"b": "2"}])
    (target,) = dirs(tmp_path, "view")
    mounter.mount_overlay(snaps.lowers(top), None, None, target)
    try:
        assert sorted(os.listdir(target)) == ["a", "b"]
        with pytest.raises(OSError) as info:
            (target / "c").write_text("no")
        assert info.value.errno == errno.EROFS
    finally:
        mounter.unmount(target)
    # One lower and no upper: a read-only bind mount instead (overlayfs wants two lowers).
    single = snaps.lowers(top)[-1]
    mounter.mount_overlay([single], None, None, target)
    try:
        assert os.listdir(target) == ["a"]
        with pytest.raises(OSError):
            (target / "c").write_text("no")
    finally:
        mounter.unmount(target)
    assert proc_mounts_under(tmp_path) == []


def test_readonly_flag_on_writable_overlay(mounter: LinuxMounter, snaps: Snapshots,
                                           tmp_path: Path) -> None:
    top = build_chain(snaps, [{"a": "1"}])
    upper, work, target = dirs(tmp_path, "upper", "work", "rootfs")
    mounter.mount_overlay(snaps.lowers(top), upper, work, target, readonly=True)
    try:
        assert (target / "a").read_text() == "1"
        with pytest.raises(OSError):
            (target / "b").write_text("no")
    finally:
        mounter.unmount(target)


def test_bind_mounts(mounter: LinuxMounter, tmp_path: Path) -> None:
    src, sub, target = dirs(tmp_path, "src", "src/sub", "target")
    (src / "f").write_text("hi")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "g").write_text("g")
    # A submount inside the source shows up through a recursive bind.
    mounter.bind(tmp_path / "other", sub)
    try:
        mounter.bind(src, target, readonly=True)
        try:
            assert (target / "f").read_text() == "hi"
            assert (target / "sub" / "g").read_text() == "g"
            for path in (target / "new", target / "sub" / "new"):
                with pytest.raises(OSError):
                    path.write_text("x")  # read-only, submounts included
            (src / "f").write_text("still writable at the source")
        finally:
            mounter.unmount(target, lazy=True)
    finally:
        mounter.unmount(sub)
    # A file onto a file.
    (tmp_path / "file_src").write_text("content")
    (tmp_path / "file_dst").write_text("")
    mounter.bind(tmp_path / "file_src", tmp_path / "file_dst", recursive=False)
    try:
        assert (tmp_path / "file_dst").read_text() == "content"
    finally:
        mounter.unmount(tmp_path / "file_dst")
    assert proc_mounts_under(tmp_path) == []


def test_errors_name_the_target(mounter: LinuxMounter, tmp_path: Path) -> None:
    upper, work, target, low = dirs(tmp_path, "upper", "work", "rootfs", "low")
    with pytest.raises(RuntimeFailure, match=str(target)):
        mounter.mount_overlay([low, tmp_path / "missing"], upper, work, target)
    with pytest.raises(NotFound, match="not a mount point"):
        mounter.unmount(target)
    with pytest.raises(RuntimeFailure):
        mounter.bind(tmp_path / "missing", target)
    assert not mounter.is_mounted(target)
    assert proc_mounts_under(tmp_path) == []


def test_mount_point_with_space(mounter: LinuxMounter, tmp_path: Path) -> None:
    src, target = dirs(tmp_path, "src", "with space\tand tab")
    mounter.bind(src, target)
    try:
        assert mounter.is_mounted(target)
        assert Path(os.path.realpath(target)) in mount_points(tmp_path)
    finally:
        mounter.unmount(target)
    assert not mounter.is_mounted(target)
