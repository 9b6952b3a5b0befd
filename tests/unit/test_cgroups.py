"""Unit tests for cgroup reading/writing on fake v1, hybrid and v2 trees built in tmp dirs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from portside.engine.errors import RuntimeFailure
from portside.engine.runtime.cgroups import Cgroup, CgroupLayout, cgroup_path_for

pytestmark = pytest.mark.unit

CG = "/portside/abc"


def _files(d: Path, files: dict[str, str]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)


def _fake_rmdir(path: str) -> None:
    # A plain directory holds real files where cgroupfs holds virtual ones.
    for child in Path(path).iterdir():
        if child.is_dir():
            raise OSError(16, "Device or resource busy")
    shutil.rmtree(path)


def make_v1(root: Path, hybrid: bool = False, combined_cpu: bool = False) -> Path:
    _files(root / "memory" / CG.lstrip("/"), {
        "cgroup.procs": "10\n11\n", "memory.usage_in_bytes": "4096\n",
        "memory.limit_in_bytes": "9223372036854771712\n"})
    cpu = "cpu,cpuacct" if combined_cpu else "cpuacct"
    _files(root / cpu / CG.lstrip("/"), {"cpuacct.usage": "123456789\n", "cgroup.procs": "10\n11\n"})
    _files(root / "pids" / CG.lstrip("/"), {"cgroup.procs": "10\n11\n", "pids.current": "3\n",
                                            "pids.max": "max\n"})
    _files(root / "pids" / CG.lstrip("/") / "child", {"cgroup.procs": "12\n"})
    _files(root / "freezer" / CG.lstrip("/"), {"freezer.state": "THAWED\n", "cgroup.procs": ""})
    if hybrid:
        _files(root / "unified" / CG.lstrip("/"), {"cgroup.procs": "10\n"})
        (root / "unified" / "cgroup.controllers").write_text("")
    return root


def make_v2(root: Path) -> Path:
    (root).mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    _files(root / CG.lstrip("/"), {
        "cgroup.procs": "20\n21\n", "memory.current": "8192\n", "memory.max": "max\n",
        "cpu.stat": "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n", "pids.current": "2\n",
        "pids.max": "50\n", "cgroup.freeze": "0\n"})
    return root


def test_detect_layouts(tmp_path: Path) -> None:
    assert CgroupLayout.detect(make_v2(tmp_path / "a")) == "v2"
    assert CgroupLayout.detect(make_v1(tmp_path / "b", hybrid=True)) == "hybrid"
    assert CgroupLayout.detect(make_v1(tmp_path / "c")) == "v1"
    assert cgroup_path_for("abc") == CG


@pytest.mark.parametrize("hybrid,combined", [(False, False), (True, False), (False, True)])
def test_v1_reads(tmp_path: Path, hybrid: bool, combined: bool) -> None:
    cg = Cgroup(CG, make_v1(tmp_path, hybrid, combined))
    assert cg.exists()
    assert cg.pids() == [10, 11, 12]
    assert cg.memory_usage() == 4096
    assert cg.memory_limit() is None
    assert cg.cpu_usage_ns() == 123456789
    assert cg.pids_current() == 3
    assert cg.pids_limit() is None
    cg.set_memory_limit(1 << 20)
    assert cg.memory_limit() == 1 << 20


def test_v1_freeze_thaw(tmp_path: Path) -> None:
    cg = Cgroup(CG, make_v1(tmp_path, hybrid=True))
    assert not cg.frozen()
    cg.freeze()
    assert cg.frozen()
    assert (tmp_path / "freezer" / "portside" / "abc" / "freezer.state").read_text() == "FROZEN"
    cg.thaw()
    assert not cg.frozen()


def test_v2_reads_and_freeze(tmp_path: Path) -> None:
    cg = Cgroup(CG, make_v2(tmp_path))
    assert cg.layout == "v2"
    assert cg.pids() == [20, 21]
    assert cg.memory_usage() == 8192 and cg.memory_limit() is None
    assert cg.cpu_usage_ns() == 1_500_000
    assert cg.pids_current() == 2 and cg.pids_limit() == 50
    cg.set_memory_limit(64 << 20)
    assert (tmp_path / "portside" / "abc" / "memory.max").read_text() == str(64 << 20)
    cg.freeze()
    assert cg.frozen()
    cg.thaw()
    assert not cg.frozen()


@pytest.mark.parametrize("layout", ["v1", "hybrid", "v2"])
def test_remove_every_hierarchy(tmp_path: Path, layout: str) -> None:
    root = make_v2(tmp_path) if layout == "v2" else make_v1(tmp_path, hybrid=layout == "hybrid")
    cg = Cgroup(CG, root, rmdir=_fake_rmdir)
    cg.remove()
    assert not cg.exists()
    assert not list(tmp_path.glob("**/abc"))
    parent = root / "portside" if layout == "v2" else root / "memory" / "portside"
    assert parent.is_dir()  # the parent is shared by every container: kept
    cg.remove()  # idempotent


def test_remove_busy_times_out(tmp_path: Path) -> None:
    def busy(path: str) -> None:
        raise OSError(16, "Device or resource busy")
    cg = Cgroup(CG, make_v2(tmp_path), rmdir=busy)
    with pytest.raises(RuntimeFailure, match="busy"):
        cg.remove(timeout=0.1)


def test_missing_file_is_runtime_failure(tmp_path: Path) -> None:
    cg = Cgroup("/portside/nope", make_v2(tmp_path))
    assert not cg.exists()
    with pytest.raises(RuntimeFailure, match="nope"):
        cg.memory_usage()
