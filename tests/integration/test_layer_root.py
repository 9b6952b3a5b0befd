"""Layer tars, the root-only parts: owners, device nodes, capabilities, overlayfs whiteouts.

The overlay tests mount real overlayfs: a layer applied in overlay mode must hide deleted files when
stacked, and an upper dir produced by a real overlay mount must turn into OCI whiteouts.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import subprocess
import tarfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from layer_corpus import build_tar, chrdev, dir_, reg, sym
from portside.engine.errors import InvalidArgument
from portside.engine.image.layer import (
    OVERLAY_OPAQUE_XATTR,
    apply_layer,
    layer_paths,
    write_layer,
)

pytestmark = pytest.mark.integration

T0 = 1_600_000_000
# VFS_CAP_REVISION_2 with the effective flag, cap_net_raw (13) permitted.
CAP_NET_RAW = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)


@contextmanager
def overlay(lower: list[Path], mountpoint: Path, upper: Path | None = None,
            work: Path | None = None) -> Iterator[Path]:
    opts = "lowerdir=" + ":".join(str(p) for p in lower)
    if upper is not None:
        opts += f",upperdir={upper},workdir={work}"
    mountpoint.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(mountpoint)], check=True,
                   capture_output=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def tree_state(root: Path) -> dict[str, tuple]:
    out = {}
    for p in sorted(root.rglob("*")):
        st = os.lstat(p)
        rel = str(p.relative_to(root))
        body = p.read_bytes() if stat.S_ISREG(st.st_mode) else os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
        caps = None
        if stat.S_ISREG(st.st_mode):
            try:
                caps = os.getxattr(p, "security.capability")
            except OSError:
                caps = None
        out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode) if not stat.S_ISLNK(st.st_mode) else None,
                    st.st_uid, st.st_gid, st.st_rdev, int(st.st_mtime), body, caps)
    return out


def roundtrip(src: Path, out: Path, **kw) -> None:
    buf = io.BytesIO()
    d = write_layer(src, buf, **kw)
    buf.seek(0)
    assert apply_layer(buf, out, overlay=False)[0] == d.diff_id


def test_owners_devices_and_capabilities_round_trip(tmp_path):
    src = tmp_path / "src"
    (src / "home/user").mkdir(parents=True)
    (src / "dev").mkdir()
    (src / "home/user/notes").write_bytes(b"mine")
    (src / "bin").mkdir()
    (src / "bin/ping").write_bytes(b"ELF")
    os.mknod(src / "dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(src / "dev/loop9", stat.S_IFBLK | 0o660, os.makedev(7, 9))
    os.mkfifo(src / "dev/initctl", 0o600)
    os.symlink("notes", src / "home/user/link")
    os.chown(src / "home/user", 1000, 1000)
    os.chown(src / "home/user/notes", 1000, 100)
    os.chown(src / "home/user/link", 1001, 1002, follow_symlinks=False)
    os.chown(src / "dev/loop9", 0, 6)
    os.chown(src / "bin/ping", 0, 0)
    os.chmod(src / "bin/ping", 0o755)
    os.setxattr(src / "bin/ping", "security.capability", CAP_NET_RAW)
    (src / "bin/sudo").write_bytes(b"ELF")
    os.chown(src / "bin/sudo", 0, 27)
    os.chmod(src / "bin/sudo", 0o4750)
    for p in src.rglob("*"):
        os.utime(p, (T0, T0), follow_symlinks=False)
    roundtrip(src, tmp_path / "out")
    assert tree_state(tmp_path / "out") == tree_state(src)
    assert os.getxattr(tmp_path / "out/bin/ping", "security.capability") == CAP_NET_RAW


def test_capability_survives_a_non_root_owner(tmp_path):
    # chown clears security.capability, so extraction must set it after the owner
    # binary xattr values travel through tarfile as surrogate-escaped str
    ti, data = reg("tool", b"ELF", uid=1000, gid=1000, mode=0o750)
    ti.pax_headers = {"SCHILY.xattr.security.capability": CAP_NET_RAW.decode("utf-8", "surrogateescape")}
    blob = build_tar([(ti, data)])
    apply_layer(io.BytesIO(blob), tmp_path / "out", overlay=False)
    st = os.stat(tmp_path / "out/tool")
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert os.getxattr(tmp_path / "out/tool", "security.capability") == CAP_NET_RAW


@pytest.mark.parametrize("overlay_mode", [False, True])
def test_trusted_xattrs_from_a_tar_are_ignored(tmp_path, overlay_mode):
    ti, _ = dir_("d")
    ti.pax_headers = {"SCHILY.xattr.trusted.overlay.opaque": "y",
                      "SCHILY.xattr.trusted.overlay.redirect": "/etc",
                      "SCHILY.xattr.security.selinux": "system_u:object_r:shadow_t:s0",
                      "SCHILY.xattr.user.kept": "yes"}
    f, data = reg("d/f", b"x")
    f.pax_headers = {"SCHILY.xattr.trusted.overlay.metacopy": "", "SCHILY.xattr.user.also": "1"}
    apply_layer(io.BytesIO(build_tar([(ti, b""), (f, data)])), tmp_path / "out", overlay=overlay_mode)
    assert sorted(os.listxattr(tmp_path / "out/d")) == ["user.kept"]
    assert sorted(os.listxattr(tmp_path / "out/d/f")) == ["user.also"]


def test_overlay_mode_whiteouts_hide_files_in_a_real_mount(tmp_path):
    base = build_tar([dir_("etc"), reg("etc/keep", b"k"), reg("etc/gone", b"g"), dir_("etc/sub"),
                      reg("etc/sub/x", b"x"), dir_("var"), reg("var/old1", b"1"), dir_("var/cache"),
                      reg("var/cache/old2", b"2")])
    top = build_tar([dir_("etc"), reg("etc/.wh.gone"), reg("etc/.wh.sub"), dir_("var", mode=0o700),
                     reg("var/.wh..wh..opq"), reg("var/new", b"n")])
    snap1, snap2 = tmp_path / "snap1", tmp_path / "snap2"
    apply_layer(io.BytesIO(base), snap1)
    apply_layer(io.BytesIO(top), snap2, lower=[snap1])
    whiteout = os.lstat(snap2 / "etc/gone")
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0
    assert os.getxattr(snap2 / "var", OVERLAY_OPAQUE_XATTR) == b"y"
    assert not list(snap2.rglob(".wh.*"))
    with overlay([snap2, snap1], tmp_path / "merged") as merged:
        assert sorted(str(p.relative_to(merged)) for p in merged.rglob("*")) == \
            ["etc", "etc/keep", "var", "var/new"]
        assert stat.S_IMODE(os.stat(merged / "var").st_mode) == 0o700
    # the same two layers flattened give the same tree
    flat = tmp_path / "flat"
    apply_layer(io.BytesIO(base), flat, overlay=False)
    apply_layer(io.BytesIO(top), flat, overlay=False)
    assert sorted(str(p.relative_to(flat)) for p in flat.rglob("*")) == ["etc", "etc/keep", "var", "var/new"]


def test_overlay_whiteout_over_a_directory_this_layer_recreates(tmp_path):
    snap1, snap2 = tmp_path / "snap1", tmp_path / "snap2"
    apply_layer(io.BytesIO(build_tar([dir_("d"), reg("d/old")])), snap1)
    apply_layer(io.BytesIO(build_tar([dir_("d"), reg("d/new"), reg(".wh.d")])), snap2, lower=[snap1])
    with overlay([snap2, snap1], tmp_path / "merged") as merged:
        assert sorted(p.name for p in (merged / "d").iterdir()) == ["new"]


def test_upper_dir_of_a_real_overlay_becomes_oci_whiteouts(tmp_path):
    lower = tmp_path / "lower"
    apply_layer(io.BytesIO(build_tar([
        dir_("etc"), reg("etc/passwd", b"root:x:0:0"), reg("etc/shadow", b"s"), reg("etc/motd", b"hi"),
        dir_("opt"), dir_("opt/app"), reg("opt/app/v1", b"1"), reg("opt/app/lib", b"l"),
        sym("opt/current", "app")])), lower)
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    with overlay([lower], tmp_path / "merged", upper, work) as merged:
        (merged / "etc/shadow").unlink()
        (merged / "etc/motd").unlink()
        subprocess.run(["rm", "-rf", str(merged / "opt/app")], check=True)
        (merged / "opt/app").mkdir()            # recreated: overlayfs marks it opaque
        (merged / "opt/app/v2").write_bytes(b"2")
        (merged / "etc/passwd").write_bytes(b"root:x:0:0\nuser:x:1000:1000")
        expected = {str(p.relative_to(merged)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
                    for p in merged.rglob("*")}
    buf = io.BytesIO()
    write_layer(upper, buf, overlay_upper=True, compression="zstd")
    buf.seek(0)
    members = {m.name: m for m in layer_paths(buf)}
    assert {"etc/.wh.shadow", "etc/.wh.motd", "opt/app/.wh..wh..opq", "opt/app/v2"} <= set(members)
    assert members["etc/.wh.shadow"].type == tarfile.REGTYPE   # never a hardlink, even when overlayfs
    assert members["etc/.wh.motd"].type == tarfile.REGTYPE     # shares one whiteout inode
    assert not any(".overlay" in k for m in members.values() for k in m.pax_headers)
    # flattened onto the lower tree, the layer reproduces what the container saw
    flat = tmp_path / "flat"
    subprocess.run(["cp", "-a", str(lower), str(flat)], check=True)
    buf.seek(0)
    apply_layer(buf, flat, overlay=False)
    got = {str(p.relative_to(flat)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
           for p in flat.rglob("*")}
    assert got == expected
    # and as a snapshot stacked on the lower one, too
    buf.seek(0)
    apply_layer(buf, tmp_path / "snap", lower=[lower])
    with overlay([tmp_path / "snap", lower], tmp_path / "merged2") as merged:
        got = {str(p.relative_to(merged)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
               for p in merged.rglob("*")}
    assert got == expected


def _as_nobody(target: Path, blob: bytes) -> str:
    """Apply ``blob`` to ``target`` in a child process running as nobody; return its outcome."""
    target.mkdir()
    os.chown(target, 65534, 65534)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        status = 1
        try:
            os.close(read_end)
            os.chdir(target)  # the tmp dir's ancestors are closed to nobody
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                apply_layer(io.BytesIO(blob), Path("."), overlay=False)
                os.write(write_end, b"ok")
            except InvalidArgument as exc:
                os.write(write_end, f"InvalidArgument: {exc}".encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        outcome = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return outcome


def test_unprivileged_extraction_skips_devices_and_owners(tmp_path):
    blob = build_tar([dir_("dev"), chrdev("dev/kmem", 1, 2, mode=0o666), chrdev("dev/zero", 1, 5),
                      reg("owned", b"x", uid=0, gid=0, mode=0o4755), reg("plain", b"p", uid=4321, gid=4321)])
    assert _as_nobody(tmp_path / "out", blob) == "ok"
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "dev").iterdir()) == []
    assert os.stat(out / "owned").st_uid == 65534 and os.stat(out / "plain").st_uid == 65534
    assert (out / "plain").read_bytes() == b"p"


def test_unprivileged_extraction_still_refuses_escapes(tmp_path):
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    os.chown(sentinel, 65534, 65534)  # writable by nobody: only the extractor's checks protect it
    outcome = _as_nobody(tmp_path / "out", build_tar([sym("l", str(sentinel)), reg("l/evil")]))
    assert outcome.startswith("InvalidArgument") and "l/evil" in outcome
    assert list(sentinel.iterdir()) == []
