"""Discovery of the NVIDIA driver on a fake host tree, and the nvidia-ctk route."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from portside.engine.errors import GPUError
from portside.engine.gpu.discover import (DeviceInfo, cuda_version_for_driver, discover,
                                          nvidia_ctk_spec, parse_ldconfig)

pytestmark = pytest.mark.unit


from gpu import fake_host as fake  # noqa: E402 - tests/ is on sys.path
LIB = fake.LIB_DIR


@pytest.fixture(params=["char", "files"])
def host(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "char" and os.geteuid() != 0:
        pytest.skip("character devices need root")
    return fake.build_fake_host(tmp_path, gpus=3, char_devices=request.param == "char")


def test_discovers_gpus_in_bus_order(host) -> None:
    found = discover(host.root, host.ldconfig_output, require_char_devices=host.char_devices)
    assert found.driver_version == "550.54.15"
    assert [g.index for g in found.gpus] == [0, 1, 2]
    assert [g.pci_bus_id for g in found.gpus] == host.buses
    assert [g.uuid for g in found.gpus] == host.uuids
    assert [g.minor for g in found.gpus] == [1, 0, 3]
    assert [g.device for g in found.gpus] == [DeviceInfo("/dev/nvidia1", 195, 1),
                                              DeviceInfo("/dev/nvidia0", 195, 0),
                                              DeviceInfo("/dev/nvidia3", 195, 3)]
    assert found.gpus[0].model == "NVIDIA H100 80GB HBM3"
    assert found.control_devices == [DeviceInfo("/dev/nvidiactl", 195, 255),
                                     DeviceInfo("/dev/nvidia-uvm", fake.UVM_MAJOR, 0),
                                     DeviceInfo("/dev/nvidia-uvm-tools", fake.UVM_MAJOR, 1),
                                     DeviceInfo("/dev/nvidia-modeset", 195, 254)]
    assert found.cap_devices == [DeviceInfo("/dev/nvidia-caps/nvidia-cap1", fake.CAPS_MAJOR, 1),
                                 DeviceInfo("/dev/nvidia-caps/nvidia-cap2", fake.CAPS_MAJOR, 2)]


def test_libraries_resolved_to_versioned_files(host) -> None:
    found = discover(host.root, host.ldconfig_output, require_char_devices=host.char_devices)
    by_path = {lib.path: lib for lib in found.libraries}
    assert set(by_path) == {host.lib(stem) for stem in fake.LIBS}  # no libz, no 32-bit, no compat
    cuda = by_path[host.lib("libcuda")]
    assert cuda.capability == "compute"
    assert cuda.links == (f"{LIB}/libcuda.so", f"{LIB}/libcuda.so.1")
    assert by_path[host.lib("libnvidia-ml")].capability == "utility"
    assert by_path[host.lib("libnvcuvid")].capability == "video"
    assert by_path[host.lib("libGLX_nvidia")].capability == "graphics"
    assert by_path[host.lib("libnvidia-ngx")].capability == "ngx"
    assert by_path[host.lib("libnvidia-glcore")].links == ()
    assert found.binaries == {t: f"/usr/bin/{t}" for t in fake.TOOLS}
    assert found.firmware == ["/lib/firmware/nvidia/550.54.15/gsp_ga10x.bin",
                              "/lib/firmware/nvidia/550.54.15/gsp_tu10x.bin"]
    assert found.persistenced_socket == "/run/nvidia-persistenced/socket"
    assert found.real("/dev/nvidiactl") == str(host.root / "dev/nvidiactl")
    assert found.cuda_version == "12.4"


def test_without_linker_cache_scans_library_folders(tmp_path: Path) -> None:
    host = fake.build_fake_host(tmp_path, gpus=1, char_devices=False)
    found = discover(host.root, "", require_char_devices=False)
    assert {lib.path for lib in found.libraries} == {host.lib(stem) for stem in fake.LIBS}


def test_regular_files_rejected_when_devices_required(tmp_path: Path) -> None:
    host = fake.build_fake_host(tmp_path, gpus=1, char_devices=False)
    with pytest.raises(GPUError, match="^--gpus: /dev/nvidia1 is not a character device$"):
        discover(host.root, host.ldconfig_output, require_char_devices=True)


@pytest.mark.parametrize("remove, missing", [
    ("dev/nvidiactl", "/dev/nvidiactl"),
    ("proc/driver/nvidia/version", "/proc/driver/nvidia/version"),
    ("dev/nvidia0", "/dev/nvidia0"),
    ("proc/driver/nvidia/gpus/0000:3b:00.0/information",
     "/proc/driver/nvidia/gpus/0000:3b:00.0/information"),
])
def test_missing_pieces_name_the_first_missing_file(tmp_path: Path, remove: str, missing: str) -> None:
    host = fake.build_fake_host(tmp_path, gpus=2, char_devices=False)
    (host.root / remove).unlink()
    with pytest.raises(GPUError) as info:
        discover(host.root, host.ldconfig_output, require_char_devices=False)
    assert str(info.value) == f"--gpus: no NVIDIA GPU found: {missing} is missing"


def test_empty_root_has_no_gpu(tmp_path: Path) -> None:
    with pytest.raises(GPUError, match="^--gpus: no NVIDIA GPU found: /dev/nvidiactl is missing$"):
        discover(tmp_path)


def test_uvm_is_optional(tmp_path: Path) -> None:
    host = fake.build_fake_host(tmp_path, gpus=1, char_devices=False, with_uvm=False)
    found = discover(host.root, host.ldconfig_output, require_char_devices=False)
    assert [d.path for d in found.control_devices] == ["/dev/nvidiactl", "/dev/nvidia-modeset"]


def test_parse_ldconfig_keeps_64_bit_entries() -> None:
    text = ("3 libs found in cache `/etc/ld.so.cache'\n"
            "\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1\n"
            "\tlibcuda.so.1 (libc6) => /usr/lib/i386-linux-gnu/libcuda.so.1\n"
            "\tlibcuda.so.1 (libc6,AArch64) => /usr/lib/aarch64-linux-gnu/libcuda.so.1\n"
            "\tlibfoo.so (libc6,x86-64, OS ABI: Linux 3.2.0) => /lib/libfoo.so\n"
            "Cache generated by: ldconfig (GNU libc) stable release version 2.36\n")
    assert parse_ldconfig(text) == [
        ("libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so.1"),
        ("libcuda.so.1", "/usr/lib/aarch64-linux-gnu/libcuda.so.1"),
        ("libfoo.so", "/lib/libfoo.so")]


@pytest.mark.parametrize("driver, cuda", [("550.54.15", "12.4"), ("535.161.08", "12.2"),
                                          ("470.82.01", "11.4"), ("390.1", None), ("", None)])
def test_cuda_version_for_driver(driver: str, cuda: str | None) -> None:
    assert cuda_version_for_driver(driver) == cuda


def _fake_ctk(tmp_path: Path, body: str) -> str:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "nvidia-ctk"
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(0o755)
    return str(bindir)


def test_nvidia_ctk_spec_is_used_when_installed(tmp_path: Path) -> None:
    spec = {"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu",
            "devices": [{"name": "0", "containerEdits": {"deviceNodes": [{"path": "/dev/nvidia0"}]}}],
            "containerEdits": {"env": ["NVIDIA_VISIBLE_DEVICES=void"]}}
    args_file = tmp_path / "args"
    path = _fake_ctk(tmp_path, f'echo "$@" > {args_file}\ncat <<"EOF"\n{json.dumps(spec)}\nEOF\n')
    got = nvidia_ctk_spec(path)
    assert got is not None and got.kind == "nvidia.com/gpu" and list(got.devices) == ["0"]
    assert args_file.read_text().split() == ["cdi", "generate", "--format=json"]


def test_nvidia_ctk_absent_or_failing(tmp_path: Path) -> None:
    assert nvidia_ctk_spec(str(tmp_path)) is None
    path = _fake_ctk(tmp_path, 'echo "ERRO[0000] failed to initialize NVML" >&2\nexit 1\n')
    with pytest.raises(GPUError, match="nvidia-ctk cdi generate failed: ERRO.*NVML"):
        nvidia_ctk_spec(path)


def test_merged_usr_duplicates_are_mounted_once(tmp_path: Path) -> None:
    host = fake.build_fake_host(tmp_path, gpus=1, char_devices=False)
    (host.root / "lib").mkdir(exist_ok=True)
    os.symlink("../usr/lib/x86_64-linux-gnu", host.root / "lib/x86_64-linux-gnu")
    text = host.ldconfig_output + \
        "\tlibcuda.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libcuda.so.1\n"
    found = discover(host.root, text, require_char_devices=False)
    cuda = [lib for lib in found.libraries if "libcuda.so" in lib.path]
    assert [lib.path for lib in cuda] == [host.lib("libcuda")]
