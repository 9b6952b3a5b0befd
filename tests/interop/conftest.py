"""Shared fixtures for the interop tests: a throwaway podman."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

@pytest.fixture
def podman(tmp_path: Path):
    """Run podman on a storage root of its own; everything it made is removed afterwards."""
    base = tmp_path / "podman"
    # podman refuses a runroot path longer than 50 characters
    runroot = Path(tempfile.mkdtemp(prefix="pspod-", dir="/tmp"))
    # runc, as in the rest of the suite: with crun installed podman would choose it, and crun
    # refuses a v1/v2 hybrid cgroup host such as this one
    args = ["podman", "--runtime", "runc",
            "--root", str(base / "root"), "--runroot", str(runroot),
            "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none",
            "--tmpdir", str(base / "tmp")]

    def run(*more: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(args + list(more), capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=180)
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(more)} exited {proc.returncode}: {proc.stderr}")
        return proc

    yield run
    subprocess.run(args + ["rm", "-af"], capture_output=True)
    subprocess.run(args + ["system", "reset", "-f"], capture_output=True)
    subprocess.run(["umount", "-R", str(base)], capture_output=True)
    subprocess.run(["umount", "-R", str(runroot)], capture_output=True)
    shutil.rmtree(base, ignore_errors=True)
    shutil.rmtree(runroot, ignore_errors=True)
