"""fuse-overlayfs' upper dirs become OCI layers; the ``rootless-storage`` key picks the mounter.

The upper dirs here are written by hand the way fuse-overlayfs 1.10 writes them in a user
namespace (seen in tests/rootless/test_rootless_fuse.py, which runs the real daemon): an opaque
directory carries ``user.fuseoverlayfs.opaque``, a ``.wh..wh..opq`` file and a ``.wh..opq``
whiteout device; a deletion it cannot record as a 0:0 device is a ``.wh.NAME`` file. The 0:0
devices themselves need root (tests/integration/test_layer_root.py covers them).
"""

from __future__ import annotations

import errno
import io
import os
import tarfile
from pathlib import Path

import pytest

from portside.engine.config import load_config
from portside.engine.errors import InvalidArgument, RuntimeFailure
from portside.engine.image.layer import write_layer
from portside.engine.store import fuse
from portside.engine.store.fuse import (AutoOverlayMounter, FuseOverlayMounter, check_choice,
                                        overlay_mounter)
from portside.engine.store.mount import LinuxMounter

pytestmark = pytest.mark.unit


def members(upper: Path) -> list[str]:
    buf = io.BytesIO()
    write_layer(upper, buf, overlay_upper=True, compression=None)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tf:
        return [m.name.rstrip("/") for m in tf.getmembers()]


def test_fuse_overlayfs_opaque_and_file_whiteouts_become_oci_entries(tmp_path):
    upper = tmp_path / "upper"
    (upper / "data/old").mkdir(parents=True)
    os.setxattr(upper / "data/old", "user.fuseoverlayfs.opaque", b"y")
    (upper / "data/old/.wh..wh..opq").write_bytes(b"")
    (upper / "data/old/c").write_bytes(b"c")
    (upper / "data/.wh.keep").write_bytes(b"")  # a deletion as a file
    (upper / "data/added").write_bytes(b"n")
    (upper / "marker-only").mkdir()  # opaque by its .wh..wh..opq file alone
    (upper / "marker-only/.wh..wh..opq").write_bytes(b"")
    assert members(upper) == ["data", "data/.wh.keep", "data/added", "data/old",
                              "data/old/.wh..wh..opq", "data/old/c", "marker-only",
                              "marker-only/.wh..wh..opq"]


def test_a_plain_directory_is_not_opaque(tmp_path):
    upper = tmp_path / "upper"
    (upper / "d").mkdir(parents=True)
    (upper / "d/f").write_bytes(b"f")
    assert members(upper) == ["d", "d/f"]


def test_the_key_comes_from_the_config_and_is_checked(monkeypatch):
    monkeypatch.setenv("PORTSIDE_CONFIG", "/nonexistent/config.toml")
    assert load_config(env={}).rootless_storage is None
    assert load_config(env={"PORTSIDE_ROOTLESS_STORAGE": "fuse-overlayfs"}).rootless_storage \
        == "fuse-overlayfs"
    assert check_choice(None) == "auto"
    assert check_choice("Fuse-Overlayfs") == "fuse-overlayfs"
    with pytest.raises(InvalidArgument, match="rootless-storage must be one of auto, overlay, "
                                              "fuse-overlayfs, not 'zfs'"):
        check_choice("zfs")


def test_the_mounter_for_each_choice():
    assert type(overlay_mounter("fuse-overlayfs", rootless=False)) is LinuxMounter  # root
    assert type(overlay_mounter("overlay", rootless=True)) is LinuxMounter
    assert type(overlay_mounter("fuse-overlayfs", rootless=True)) is FuseOverlayMounter
    auto = overlay_mounter("auto", rootless=True)
    assert type(auto) is AutoOverlayMounter and auto.userxattr


def test_paths_fuse_overlayfs_cannot_take_are_refused_before_anything_runs(tmp_path):
    for d in ("l,1", "u", "w", "m"):
        (tmp_path / d).mkdir()
    with pytest.raises(RuntimeFailure, match="cannot take the path .*l,1"):
        FuseOverlayMounter(userxattr=True).mount_overlay(
            [tmp_path / "l,1"], tmp_path / "u", tmp_path / "w", tmp_path / "m")


def test_auto_falls_back_once_the_kernel_refuses(monkeypatch, tmp_path):
    """The kernel's refusal (EPERM inside the user namespace) hands this mount and the later
    ones to fuse-overlayfs; the real daemon runs in the rootless suite."""
    kernel_calls, fuse_calls = [], []

    def refused(self, *args):
        kernel_calls.append(args)
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(LinuxMounter, "_overlay", refused)
    monkeypatch.setattr(FuseOverlayMounter, "mount_overlay",
                        lambda self, lower, upper, work, target, **kw: fuse_calls.append(target))
    monkeypatch.setattr(fuse, "unusable_reason", lambda: None)
    monkeypatch.setattr(AutoOverlayMounter, "kernel_refused", None)
    auto = AutoOverlayMounter(userxattr=True)
    low = [tmp_path / "l1", tmp_path / "l2"]
    auto.mount_overlay(low, tmp_path / "u", tmp_path / "w", tmp_path / "m1")
    auto.mount_overlay(low, tmp_path / "u", tmp_path / "w", tmp_path / "m2")
    assert fuse_calls == [tmp_path / "m1", tmp_path / "m2"]
    assert len(kernel_calls) == 1  # asked once


def test_auto_keeps_the_kernels_error_where_fuse_overlayfs_cannot_serve(monkeypatch, tmp_path):
    def refused(self, *args):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(LinuxMounter, "_overlay", refused)
    monkeypatch.setattr(fuse, "unusable_reason", lambda: "fuse-overlayfs is not installed")
    monkeypatch.setattr(AutoOverlayMounter, "kernel_refused", None)
    with pytest.raises(RuntimeFailure, match="mount overlay"):
        AutoOverlayMounter(userxattr=True).mount_overlay(
            [tmp_path / "l1", tmp_path / "l2"], tmp_path / "u", tmp_path / "w", tmp_path / "m")
    assert AutoOverlayMounter.kernel_refused is None
