"""Crashes and races on the image store: SIGKILL at every step of load and import, and two
processes importing and tagging into one root at once."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import PORTSIDE

pytestmark = pytest.mark.integration

POINTS = ["load-extracted", "layer-blob-written", "layer-unpacked", "image-before-record"]


def _rootfs(path: Path, marker: str, size: int = 200_000) -> Path:
    with tarfile.open(path, "w") as tar:
        for i in range(5):
            data = (marker * size)[: size + i]
            info = tarfile.TarInfo(f"data/{marker}-{i}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data.encode()))
    return path


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_during_load_leaves_a_consistent_store(cli, busybox_image, tmp_path, point):
    archive = tmp_path / "bb.tar"
    cli("save", "-o", str(archive), busybox_image)
    cli("rmi", busybox_image)
    proc = cli("load", "-i", str(archive), check=False, env={"PORTSIDE_FAULT": point})
    assert proc.returncode == -9, (proc.returncode, proc.err)
    # no half image is listed, and check says exactly what is left over
    assert cli("images", "-q").out == ""
    check = cli("system", "check", check=False)
    assert "does not match" not in check.out and "missing" not in check.out
    cli("system", "check", "--repair")
    assert cli("system", "check").out.strip() == "store is consistent"
    # the next load succeeds
    assert "Loaded image: busybox:latest" in cli("load", "-i", str(archive)).out
    assert cli("system", "check").out.strip() == "store is consistent"


@pytest.mark.parametrize("point", POINTS[1:])
def test_sigkill_during_import_leaves_a_consistent_store(cli, tmp_path, point):
    tar = _rootfs(tmp_path / "r.tar", "a")
    proc = cli("import", str(tar), "crash:1", check=False, env={"PORTSIDE_FAULT": point})
    assert proc.returncode == -9
    assert cli("images", "-q").out == ""
    cli("system", "check", "--repair")
    assert cli("system", "check").out.strip() == "store is consistent"
    cli("import", str(tar), "crash:1")
    assert cli("images", "--format", "{{.Repository}}:{{.Tag}}").out == "crash:1\n"


def test_two_processes_import_and_tag_into_one_root(cli, tmp_path, portside_root):
    tars = [_rootfs(tmp_path / f"{m}.tar", m, 2_000_000) for m in ("x", "y")]
    env = cli.env()
    procs = []
    for round_ in range(3):
        for i, tar in enumerate(tars):
            procs.append(subprocess.Popen(
                [PORTSIDE, "import", str(tar), f"race{i}:{round_}"], env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        # the same content twice at once
        procs.append(subprocess.Popen([PORTSIDE, "import", str(tars[0]), f"same:{round_}"], env=env,
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE))
    results = []
    for p in procs:
        _out, err = p.communicate(timeout=120)
        results.append((p.returncode, err.decode()))
    for code, err in results:
        assert code == 0, err
    tags = set(cli("images", "--format", "{{.Repository}}:{{.Tag}}").out.split())
    assert {f"race{i}:{r}" for i in range(2) for r in range(3)} | {f"same:{r}" for r in range(3)} == tags
    # nine images (each import has its own creation time), but each layer is unpacked once
    assert len(set(cli("images", "-q").out.split())) == 9
    snaps = [p for p in (portside_root / "snapshots").iterdir() if not p.name.startswith(".")]
    assert len(snaps) == 2
    assert cli("system", "check").out.strip() == "store is consistent"
    # tags and removals racing each other
    procs = [subprocess.Popen([PORTSIDE, "tag", "race0:0", f"moved:{n}"], env=env,
                              stdin=subprocess.DEVNULL, stderr=subprocess.PIPE) for n in range(6)]
    procs += [subprocess.Popen([PORTSIDE, "rmi", f"race1:{r}"], env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE) for r in range(3)]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    assert cli("system", "check").out.strip() == "store is consistent"
    assert len(set(cli("images", "-q").out.split())) == 6
    moved = cli("images", "--filter", "reference=moved", "--format", "{{.Tag}}").out.split()
    assert sorted(moved) == [str(n) for n in range(6)]
