"""fuse-overlayfs as a rootless container's overlay (``rootless-storage = fuse-overlayfs``).

This host's kernel mounts overlayfs for a user (``auto`` picks it: the default test suite runs on
it); where a kernel refuses, ``auto`` falls back to fuse-overlayfs. These tests force
fuse-overlayfs with the config key so that it runs for real here: ``info`` says so, containers
run on it, a build's RUN writes through it, and what its upper dirs record (its own opaque
markers) becomes the same OCI layer the kernel's overlay gives.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path

import pytest

from .harness import FUSE

pytestmark = [pytest.mark.rootless, pytest.mark.slow]

FORCE = {"PORTSIDE_ROOTLESS_STORAGE": "fuse-overlayfs"}


@pytest.fixture
def busybox(rl):
    rl("image", "bootstrap", "busybox", "-t", "busybox:latest", "-q")
    return "busybox:latest"


def fuse_daemons(uid: int) -> list[int]:
    """The user's fuse-overlayfs processes (zombies aside)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            line = Path(f"/proc/{entry}/stat").read_text()
            st = os.stat(f"/proc/{entry}")
        except OSError:
            continue
        name, _, rest = line.partition(") ")
        if st.st_uid == uid and name.endswith("(fuse-overlayfs") and rest[:1] != "Z":
            found.append(int(entry))
    return found


def wait_no_daemon(uid: int, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        left = fuse_daemons(uid)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def test_info_says_which_overlay(rl, busybox):
    auto = json.loads(rl("info", "--format", "json").out)
    assert (auto["Driver"], auto["StorageMode"]) == (
        "overlay", "overlay, userxattr (in the user namespace)")  # this kernel allows it
    forced = json.loads(rl("info", "--format", "json", env=FORCE).out)
    assert forced["Driver"] == "fuse-overlayfs"
    assert forced["StorageMode"] == "fuse-overlayfs (rootless-storage = fuse-overlayfs)"
    assert "Storage Mode: fuse-overlayfs" in rl("info", env=FORCE).out
    bad = rl("info", env={"PORTSIDE_ROOTLESS_STORAGE": "zfs"}, check=False)
    assert bad.returncode == 125
    assert bad.err.strip().splitlines() == [
        "Error: rootless-storage must be one of auto, overlay, fuse-overlayfs, not 'zfs'"]


def test_run_on_fuse_overlayfs_and_no_daemon_left(rl, busybox):
    mounts = rl("run", "--rm", "--net", "none", busybox, "cat", "/proc/self/mounts",
                env=FORCE).out
    root = [line for line in mounts.splitlines() if line.split()[1] == "/"]
    assert root and root[0].split()[2] == "fuse.fuse-overlayfs", mounts
    assert wait_no_daemon(rl.user.uid) == []  # the --rm unmounted it: its daemon ended
    rl("run", "-d", "--name", "f1", "--net", "none", busybox, "sleep", "60", env=FORCE)
    assert len(fuse_daemons(rl.user.uid)) == 1  # one daemon serves the running container
    assert rl("exec", "f1", "sh", "-c", "echo hi > /x && cat /x").out == "hi\n"
    rl("rm", "-f", "f1", env=FORCE)
    assert wait_no_daemon(rl.user.uid) == []


def test_build_commit_and_diff_through_fuse_overlayfs(rl, busybox):
    rl.sh("mkdir -p ~/fctx && cat > ~/fctx/Dockerfile <<'EOF'\n"
          f"FROM {busybox}\n"
          "RUN mkdir -p /data/old && echo 1 > /data/old/a && echo 2 > /data/keep && "
          "echo 3 > /data/gone\n"
          # a deleted file and a directory replaced (opaque): fuse-overlayfs' own markers
          "RUN rm -rf /data/old && mkdir /data/old && echo new > /data/old/b && rm /data/gone\n"
          "EOF")
    rl("build", "-q", "-t", "fused:1", str(rl.path("fctx")), env=FORCE)
    seen = rl("run", "--rm", "--net", "none", "fused:1", "sh", "-c",
              "ls -A /data; echo --; ls -A /data/old", env=FORCE).out
    assert seen == "keep\nold\n--\nb\n"
    # the kernel's overlay reads the layers fuse-overlayfs' upper dirs became the same way
    assert rl("run", "--rm", "--net", "none", "fused:1", "sh", "-c",
              "ls -A /data; echo --; ls -A /data/old").out == seen

    rl("run", "-d", "--name", "f2", "--net", "none", "fused:1", "sleep", "60", env=FORCE)
    rl("exec", "f2", "sh", "-c", "rm -rf /data/old && mkdir /data/old && touch /data/old/c && "
       "rm /data/keep && echo n > /data/added", env=FORCE)
    changes = rl("diff", "f2", env=FORCE).out.splitlines()
    assert "D /data/keep" in changes and "A /data/added" in changes
    assert "C /data/old" in changes and "A /data/old/c" in changes
    assert not [c for c in changes if ".wh." in c], changes
    rl("commit", "f2", "fused:2", env=FORCE)
    rl("rm", "-f", "f2", env=FORCE)
    assert rl("run", "--rm", "--net", "none", "fused:2", "sh", "-c",
              "ls -A /data; echo --; ls -A /data/old").out == "added\nold\n--\nc\n"

    # the committed layer says it in OCI terms, once: one opaque marker, one whiteout
    rl("save", "-o", str(rl.path("fused.tar")), "fused:2")
    with tarfile.open(rl.path("fused.tar")) as outer:
        index = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        top = outer.extractfile(index[0]["Layers"][-1]).read()  # type: ignore[union-attr]
    with tarfile.open(fileobj=io.BytesIO(top)) as layer:
        names = sorted(m.name.rstrip("/") for m in layer.getmembers())
    assert names == ["data", "data/.wh.keep", "data/added", "data/old",
                     "data/old/.wh..wh..opq", "data/old/c"], names


def test_fuse_overlayfs_without_the_device_says_so_in_one_line(rl, busybox):
    mode = FUSE.stat().st_mode & 0o7777
    os.chmod(FUSE, 0o600)  # as this VM ships it
    try:
        refused = rl("run", "--rm", "--net", "none", busybox, "true", env=FORCE, check=False)
        # auto does not need it: the kernel's overlay serves
        assert rl("run", "--rm", "--net", "none", busybox, "echo", "ok").out == "ok\n"
    finally:
        os.chmod(FUSE, mode)
    assert refused.returncode == 125
    lines = refused.err.strip().splitlines()
    assert len(lines) == 1 and "/dev/fuse is not readable and writable by this user" in lines[0]
    assert rl("ps", "-aq").out == ""  # nothing was left half made
