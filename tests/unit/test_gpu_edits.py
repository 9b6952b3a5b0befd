"""GPU requests turned into OCI spec edits on a fake host, GPU allocation, resolve_gpus, and the
device check script's syntax."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from portside.engine.errors import GPUError, InvalidArgument
from portside.engine.gpu import apply_edits, parse_gpus, resolve_gpus
from portside.engine.gpu.allocate import choose_gpus
from portside.engine.gpu.discover import NvidiaHost, discover
from portside.engine.gpu.edits import driver_capabilities, gpu_edits

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


from gpu import fake_host as fake  # noqa: E402 - tests/ is on sys.path
LIB = fake.LIB_DIR
RO = ["ro", "nosuid", "nodev", "bind"]
CONTROL = [("/dev/nvidiactl", 195, 255), ("/dev/nvidia-uvm", fake.UVM_MAJOR, 0),
           ("/dev/nvidia-uvm-tools", fake.UVM_MAJOR, 1), ("/dev/nvidia-modeset", 195, 254)]
# GPU index -> (node, major, minor); minors differ from indices on purpose (see fake_host).
GPU_NODES = {0: ("/dev/nvidia1", 195, 1), 1: ("/dev/nvidia0", 195, 0), 2: ("/dev/nvidia3", 195, 3)}


@pytest.fixture
def fh(tmp_path: Path):
    return fake.build_fake_host(tmp_path, gpus=3, char_devices=False)


@pytest.fixture
def host(fh) -> NvidiaHost:
    return discover(fh.root, fh.ldconfig_output, require_char_devices=False)


def base_spec() -> dict[str, Any]:
    return {"process": {"env": ["PATH=/usr/bin:/bin"]},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": {"devices": [], "resources": {"devices": [{"allow": False, "access": "rwm"}]}}}


def applied(host: NvidiaHost, gpus: str | None, image_env: dict[str, str] | None = None,
            **kw: Any) -> dict[str, Any]:
    edits = gpu_edits(parse_gpus(gpus) if gpus is not None else None, host, image_env or {}, **kw)
    return apply_edits(base_spec(), edits)


def env_of(spec: dict[str, Any]) -> dict[str, str]:
    return dict(e.split("=", 1) for e in spec["process"]["env"])


def nodes(spec: dict[str, Any]) -> list[tuple[str, int, int]]:
    return [(d["path"], d["major"], d["minor"]) for d in spec["linux"]["devices"]]


def rules(spec: dict[str, Any]) -> list[tuple[int, int]]:
    return [(r["major"], r["minor"]) for r in spec["linux"]["resources"]["devices"][1:]
            if r["allow"] and r["type"] == "c" and r["access"] == "rwm"]


def lib_mounts(fh, stems: list[str]) -> set[str]:
    """Container paths the libraries of ``stems`` should appear at (real file + soname names)."""
    paths = set()
    for stem in stems:
        paths.add(fh.lib(stem))
        soname = fake.LIBS[stem]
        if soname:
            paths.add(f"{LIB}/{stem}.so.{soname}")
    if "libcuda" in stems:
        paths.add(f"{LIB}/libcuda.so")
    return paths


UTILITY = ["libnvidia-ml", "libnvidia-cfg"]
COMPUTE = ["libcuda", "libnvidia-ptxjitcompiler", "libnvidia-nvvm", "libcudadebugger"]
VIDEO = ["libnvcuvid", "libnvidia-encode", "libnvidia-opticalflow"]
GRAPHICS = ["libnvidia-eglcore", "libnvidia-glcore", "libGLX_nvidia", "libEGL_nvidia",
            "libGLESv2_nvidia", "libnvidia-tls", "libnvidia-glsi"]
FIRMWARE = {"/lib/firmware/nvidia/550.54.15/gsp_ga10x.bin",
            "/lib/firmware/nvidia/550.54.15/gsp_tu10x.bin"}
SOCKET = "/run/nvidia-persistenced/socket"


def test_all_gets_every_gpu_and_default_capabilities(fh, host) -> None:
    spec = applied(host, "all")
    assert nodes(spec) == [GPU_NODES[0], GPU_NODES[1], GPU_NODES[2], *CONTROL]
    assert rules(spec) == [(195, 1), (195, 0), (195, 3), (195, 255), (fake.UVM_MAJOR, 0),
                           (fake.UVM_MAJOR, 1), (195, 254)]
    assert env_of(spec) == {"PATH": "/usr/bin:/bin",
                            "NVIDIA_VISIBLE_DEVICES": ",".join(fh.uuids),
                            "NVIDIA_DRIVER_CAPABILITIES": "compute,utility"}
    binds = {m["destination"]: m for m in spec["mounts"] if m["type"] == "bind"}
    assert set(binds) == (lib_mounts(fh, UTILITY + COMPUTE) | FIRMWARE | {SOCKET} | {
        f"/usr/bin/{t}" for t in fake.TOOLS})
    assert binds[f"{LIB}/libcuda.so.1"]["source"] == str(fh.root) + fh.lib("libcuda")
    assert binds["/usr/bin/nvidia-smi"]["source"] == str(fh.root / "usr/bin/nvidia-smi")
    assert all(m["options"][:4] == RO for m in binds.values())
    assert spec["mounts"][0]["destination"] == "/proc"


def test_devices_and_rules_carry_the_type(host) -> None:
    spec = applied(host, "1")
    assert all(d["type"] == "c" and d["fileMode"] == 0o666 for d in spec["linux"]["devices"])
    assert len(spec["linux"]["resources"]["devices"]) == 1 + 1 + len(CONTROL)


def test_count_takes_the_first_gpus_or_the_allocated_ones(fh, host) -> None:
    spec = applied(host, "2")
    assert nodes(spec) == [GPU_NODES[0], GPU_NODES[1], *CONTROL]
    assert env_of(spec)["NVIDIA_VISIBLE_DEVICES"] == f"{fh.uuids[0]},{fh.uuids[1]}"
    spec = applied(host, "1", allocated=[2])
    assert nodes(spec) == [GPU_NODES[2], *CONTROL]
    with pytest.raises(GPUError, match="^--gpus: 4 GPUs requested but this host has 3$"):
        applied(host, "4")


def test_device_list_by_index_and_uuid(fh, host) -> None:
    spec = applied(host, '"device=2,0"')
    assert nodes(spec) == [GPU_NODES[2], GPU_NODES[0], *CONTROL]
    spec = applied(host, f"device={fh.uuids[1]}")
    assert nodes(spec) == [GPU_NODES[1], *CONTROL]
    assert env_of(spec)["NVIDIA_VISIBLE_DEVICES"] == fh.uuids[1]
    with pytest.raises(GPUError, match="^--gpus: no such GPU: 7 \\(this host has 3 GPUs\\)$"):
        applied(host, "device=7")


@pytest.mark.parametrize("caps, stems, tools, extra", [
    ("utility", UTILITY, ["nvidia-smi", "nvidia-debugdump", "nvidia-persistenced"], True),
    ("compute", COMPUTE, ["nvidia-cuda-mps-control", "nvidia-cuda-mps-server"], True),
    ("video", VIDEO, [], False),
    ("graphics", GRAPHICS, [], False),
    ("display", [], [], False),
    ("ngx", ["libnvidia-ngx"], [], False),
    ("compat32", [], [], False),
])
def test_each_capability_mounts_its_own_files(fh, host, caps: str, stems: list[str],
                                              tools: list[str], extra: bool) -> None:
    spec = applied(host, f"all,capabilities={caps}")
    binds = {m["destination"] for m in spec["mounts"] if m["type"] == "bind"}
    want = lib_mounts(fh, stems) | {f"/usr/bin/{t}" for t in tools}
    if extra:
        want |= FIRMWARE | {SOCKET}
    assert binds == want
    assert env_of(spec)["NVIDIA_DRIVER_CAPABILITIES"] == caps
    # Device nodes do not depend on capabilities.
    assert len(nodes(spec)) == 3 + len(CONTROL)


def test_capabilities_all_and_image_env(host) -> None:
    assert driver_capabilities(None, {"NVIDIA_DRIVER_CAPABILITIES": "all"}) == [
        "compute", "compat32", "graphics", "utility", "video", "display", "ngx"]
    assert driver_capabilities(None, {"NVIDIA_DRIVER_CAPABILITIES": "video,bogus"}) == ["video"]
    assert driver_capabilities(None, {"NVIDIA_DRIVER_CAPABILITIES": ""}) == ["compute", "utility"]
    # --gpus capabilities override the image's; "gpu" alone leaves the image's choice.
    env = {"NVIDIA_DRIVER_CAPABILITIES": "graphics"}
    assert driver_capabilities(parse_gpus('"capabilities=video,utility"'), env) == ["utility", "video"]
    assert driver_capabilities(parse_gpus("all"), env) == ["graphics"]
    with pytest.raises(GPUError, match='could not select device driver "" with capabilities'):
        driver_capabilities(parse_gpus("capabilities=tpu"), {})
    with pytest.raises(GPUError, match='could not select device driver "amd"'):
        applied(host, "all,driver=amd")


def test_image_visible_devices_without_gpus_flag(fh, host) -> None:
    assert nodes(applied(host, None, {"NVIDIA_VISIBLE_DEVICES": "all"})) == [
        GPU_NODES[0], GPU_NODES[1], GPU_NODES[2], *CONTROL]
    spec = applied(host, None, {"NVIDIA_VISIBLE_DEVICES": f"1,{fh.uuids[2]}"})
    assert nodes(spec) == [GPU_NODES[1], GPU_NODES[2], *CONTROL]
    # Legacy CUDA images (CUDA_VERSION, no NVIDIA_REQUIRE_CUDA) mean "all".
    assert len(nodes(applied(host, None, {"CUDA_VERSION": "11.0.3"}))) == 3 + len(CONTROL)
    # --gpus 0 leaves the choice to the image, as Docker does.
    assert len(nodes(applied(host, "0", {"NVIDIA_VISIBLE_DEVICES": "all"}))) == 3 + len(CONTROL)
    # --gpus wins over the image.
    spec = applied(host, "device=0", {"NVIDIA_VISIBLE_DEVICES": "all"})
    assert nodes(spec) == [GPU_NODES[0], *CONTROL]
    assert env_of(spec)["NVIDIA_VISIBLE_DEVICES"] == fh.uuids[0]


def test_none_gives_driver_without_gpus(fh, host) -> None:
    spec = applied(host, None, {"NVIDIA_VISIBLE_DEVICES": "none"})
    assert nodes(spec) == CONTROL
    assert env_of(spec)["NVIDIA_VISIBLE_DEVICES"] == "none"
    assert f"{LIB}/libcuda.so.1" in {m["destination"] for m in spec["mounts"]}


@pytest.mark.parametrize("image_env", [{}, {"NVIDIA_VISIBLE_DEVICES": "void"},
                                       {"NVIDIA_VISIBLE_DEVICES": ""}])
def test_void_or_unset_changes_nothing(host, image_env: dict[str, str]) -> None:
    edits = gpu_edits(None, host, image_env)
    assert edits.is_empty() and not edits.ldconfig_refresh
    assert applied(host, "0", image_env) == base_spec()


def test_ldconfig_refresh_follows_library_mounts(host) -> None:
    assert gpu_edits(parse_gpus("all"), host, {}).ldconfig_refresh
    assert not gpu_edits(parse_gpus('all,"capabilities=display"'), host, {}).ldconfig_refresh


def test_cuda_requirement_checked_against_driver(host) -> None:
    ok = gpu_edits(parse_gpus("1"), host, {"NVIDIA_REQUIRE_CUDA": "cuda>=12.2 brand=tesla,driver>=470"})
    assert ok.warnings == []
    with pytest.raises(GPUError, match="^--gpus: the image requires cuda>=12.6 but driver "
                                       "550.54.15 supports CUDA 12.4$"):
        gpu_edits(parse_gpus("1"), host, {"NVIDIA_REQUIRE_CUDA": "cuda>=12.6"})
    with pytest.raises(GPUError, match="requires cuda>=12.8"):
        gpu_edits(parse_gpus("1"), host, {"CUDA_VERSION": "12.8.1"})
    gpu_edits(parse_gpus("1"), host, {"NVIDIA_REQUIRE_CUDA": "cuda>=12.6",
                                      "NVIDIA_DISABLE_REQUIRE": "true"})
    host.driver_version = "999"  # a branch newer than the table still passes
    assert gpu_edits(parse_gpus("1"), host, {"NVIDIA_REQUIRE_CUDA": "cuda>=12.6"}).warnings == []
    host.driver_version = ""
    warned = gpu_edits(parse_gpus("1"), host, {"NVIDIA_REQUIRE_CUDA": "cuda>=12.6"})
    assert warned.warnings and "not checked" in warned.warnings[0]


def test_choose_gpus_spreads_count_requests(fh, host) -> None:
    u = fh.uuids
    assert [g.index for g in choose_gpus(parse_gpus("1"), host, set())] == [0]
    assert [g.index for g in choose_gpus(parse_gpus("1"), host, {u[0]})] == [1]
    assert [g.index for g in choose_gpus(parse_gpus("2"), host, {u[1]})] == [0, 2]
    # All taken: the least used, by count.
    assert [g.index for g in choose_gpus(parse_gpus("1"), host, [u[0], u[0], u[1], u[2], u[2]])] == [1]
    assert [g.index for g in choose_gpus(parse_gpus("1"), host, {u[0]: 3, u[1]: 2, u[2]: 2})] == [1]
    assert [g.index for g in choose_gpus(parse_gpus("all"), host, {u[0]})] == [0, 1, 2]
    assert [g.index for g in choose_gpus(parse_gpus('"device=2,0"'), host, set())] == [2, 0]
    assert choose_gpus(parse_gpus("0"), host, set()) == []
    with pytest.raises(GPUError, match="5 GPUs requested but this host has 3"):
        choose_gpus(parse_gpus("5"), host, set())


def test_resolve_gpus_by_discovery_allocates(fh, tmp_path: Path) -> None:
    edits, warning = resolve_gpus(parse_gpus("1"), fh.root, cdi_dirs=[],
                                  ldconfig_output=fh.ldconfig_output, require_char_devices=False,
                                  in_use={fh.uuids[0]})
    assert warning is None and edits is not None
    assert [n.path for n in edits.device_nodes][0] == GPU_NODES[1][0]
    assert resolve_gpus(parse_gpus("0"), fh.root, cdi_dirs=[], require_char_devices=False) == (None, None)


def test_resolve_gpus_optional_on_a_host_without_gpu(tmp_path: Path) -> None:
    edits, warning = resolve_gpus(parse_gpus("all"), tmp_path, optional=True, cdi_dirs=[])
    assert edits is None
    assert warning == ("--gpus: no NVIDIA GPU found: /dev/nvidiactl is missing; "
                       "starting without a GPU (--gpus-optional)")
    with pytest.raises(GPUError, match="/dev/nvidiactl is missing"):
        resolve_gpus(parse_gpus("all"), tmp_path, optional=False, cdi_dirs=[])
    # A container that asks for no GPU never looks at the host, so a CPU host is fine.
    assert resolve_gpus(None, tmp_path, cdi_dirs=[]) == (None, None)
    assert resolve_gpus(parse_gpus("0"), tmp_path, cdi_dirs=[]) == (None, None)


def test_resolve_gpus_prefers_cdi_specs(tmp_path: Path) -> None:
    cdi = tmp_path / "cdi"
    cdi.mkdir()
    devices = [{"name": str(i), "containerEdits": {"deviceNodes": [
        {"path": f"/dev/nvidia{i}", "type": "c", "major": 195, "minor": i}]}} for i in range(3)]
    devices.append({"name": "all", "containerEdits": {"deviceNodes": [
        {"path": f"/dev/nvidia{i}", "type": "c", "major": 195, "minor": i} for i in range(3)]}})
    (cdi / "nvidia.json").write_text(json.dumps({
        "cdiVersion": "0.5.0", "kind": "nvidia.com/gpu", "devices": devices,
        "containerEdits": {"deviceNodes": [{"path": "/dev/nvidiactl", "type": "c", "major": 195,
                                            "minor": 255}]}}))
    root = tmp_path / "nohost"  # discovery would fail here: CDI must be used
    edits, _ = resolve_gpus(parse_gpus("all"), root, cdi_dirs=[str(cdi)])
    assert [n.path for n in edits.device_nodes] == ["/dev/nvidiactl", "/dev/nvidia0",
                                                     "/dev/nvidia1", "/dev/nvidia2"]
    edits, _ = resolve_gpus(parse_gpus("2"), root, cdi_dirs=[str(cdi)])
    assert [n.path for n in edits.device_nodes] == ["/dev/nvidiactl", "/dev/nvidia0", "/dev/nvidia1"]
    edits, _ = resolve_gpus(parse_gpus('"device=2"'), root, cdi_dirs=[str(cdi)])
    assert [n.path for n in edits.device_nodes] == ["/dev/nvidiactl", "/dev/nvidia2"]
    with pytest.raises(InvalidArgument, match="^unresolvable CDI devices: nvidia.com/gpu=9$"):
        resolve_gpus(parse_gpus("device=9"), root, cdi_dirs=[str(cdi)])
    edits, warning = resolve_gpus(parse_gpus("device=9"), root, optional=True, cdi_dirs=[str(cdi)])
    assert edits is None and "unresolvable CDI devices" in warning


SCRIPT = REPO / "tests/gpu/device_check.sh"


def test_device_check_script_is_valid_bash() -> None:
    bash = shutil.which("bash")
    assert bash is not None
    proc = subprocess.run([bash, "-n", str(SCRIPT)], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 0, proc.stderr
    text = SCRIPT.read_text()
    assert text.startswith("#!/usr/bin/env bash")
    for needle in ("--gpus all", "nvidia-smi -L", "--no-index", "image bootstrap busybox",
                   "timeout "):
        assert needle in text
