"""A fake NVIDIA host under a temporary folder, for discovery and edits tests without a GPU.

``build_fake_host(tmp_path, gpus=2)`` lays out what the driver leaves on a real host: device nodes
(real character devices when running as root, regular files otherwise), ``/proc/devices``,
``/proc/driver/nvidia/{version,gpus/<bus>/information}``, versioned driver libraries with their
soname symlinks, the ``ldconfig -p`` text that points at them, the tools (``nvidia-smi`` is a small
script), the persistence daemon's socket and GSP firmware. GPUs sit on PCI buses listed out of
order in creation so tests prove indices follow bus order, and device minors differ from indices.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

DRIVER_VERSION = "550.54.15"
LIB_DIR = "/usr/lib/x86_64-linux-gnu"
UVM_MAJOR = 510
CAPS_MAJOR = 509
#: (bus id, model) per GPU index, in PCI order.
BUSES = ["0000:17:00.0", "0000:3b:00.0", "0000:86:00.0", "0000:af:00.0"]
#: Device minor per GPU index: deliberately not the index, as happens on real hosts.
MINORS = [1, 0, 3, 2]

#: Libraries the fake driver installs: stem -> soname suffix.
LIBS = {
    "libnvidia-ml": "1", "libnvidia-cfg": "1",
    "libcuda": "1", "libnvidia-ptxjitcompiler": "1", "libnvidia-nvvm": "4", "libcudadebugger": "1",
    "libnvcuvid": "1", "libnvidia-encode": "1", "libnvidia-opticalflow": "1",
    "libnvidia-eglcore": None, "libnvidia-glcore": None, "libGLX_nvidia": "0",
    "libEGL_nvidia": "0", "libGLESv2_nvidia": "2", "libnvidia-tls": None, "libnvidia-glsi": None,
    "libnvidia-ngx": "1",
}
TOOLS = ["nvidia-smi", "nvidia-debugdump", "nvidia-persistenced", "nvidia-cuda-mps-control",
         "nvidia-cuda-mps-server"]


@dataclass
class FakeHost:
    """The tree built by :func:`build_fake_host` and what tests compare against."""

    root: Path
    ldconfig_output: str
    char_devices: bool
    driver_version: str
    uuids: list[str] = field(default_factory=list)
    buses: list[str] = field(default_factory=list)

    def lib(self, stem: str) -> str:
        """Host path of the real versioned file of one library."""
        return f"{LIB_DIR}/{stem}.so.{self.driver_version}"


def _node(root: Path, path: str, major: int, minor: int, char: bool) -> None:
    p = root / path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    if char:
        os.mknod(p, stat.S_IFCHR | 0o666, os.makedev(major, minor))
    else:
        p.write_text("")


def build_fake_host(base: Path, gpus: int = 2, driver_version: str = DRIVER_VERSION,
                    char_devices: bool | None = None, with_uvm: bool = True) -> FakeHost:
    """Build a fake host root under ``base`` (which must exist) and describe it.

    Args:
        base: a temporary folder; the host root is ``base/host``.
        gpus: how many GPUs (at most 4).
        driver_version: the driver version written everywhere.
        char_devices: make real character devices (default: when running as root).
        with_uvm: create ``/dev/nvidia-uvm`` and ``/dev/nvidia-uvm-tools``.
    """
    if char_devices is None:
        char_devices = os.geteuid() == 0
    root = base / "host"
    root.mkdir()
    host = FakeHost(root=root, ldconfig_output="", char_devices=char_devices,
                    driver_version=driver_version)

    _node(root, "/dev/nvidiactl", 195, 255, char_devices)
    _node(root, "/dev/nvidia-modeset", 195, 254, char_devices)
    if with_uvm:
        _node(root, "/dev/nvidia-uvm", UVM_MAJOR, 0, char_devices)
        _node(root, "/dev/nvidia-uvm-tools", UVM_MAJOR, 1, char_devices)
    _node(root, "/dev/nvidia-caps/nvidia-cap1", CAPS_MAJOR, 1, char_devices)
    _node(root, "/dev/nvidia-caps/nvidia-cap2", CAPS_MAJOR, 2, char_devices)
    (root / "proc/driver/nvidia/gpus").mkdir(parents=True)
    (root / "proc/devices").write_text(
        "Character devices:\n  1 mem\n  4 tty\n195 nvidia-frontend\n"
        f"{CAPS_MAJOR} nvidia-caps\n{UVM_MAJOR} nvidia-uvm\n\nBlock devices:\n  7 loop\n  8 sd\n")
    (root / "proc/driver/nvidia/version").write_text(
        f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {driver_version}  "
        "Tue Mar  5 22:23:56 UTC 2024\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
    # Create the GPUs in reverse bus order: discovery must sort by bus, not by directory order.
    for index in reversed(range(gpus)):
        bus = BUSES[index]
        uuid = f"GPU-{index:08x}-1111-2222-3333-44444444444{index}"
        _node(root, f"/dev/nvidia{MINORS[index]}", 195, MINORS[index], char_devices)
        info = root / "proc/driver/nvidia/gpus" / bus
        info.mkdir()
        (info / "information").write_text(
            f"Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t {100 + index}\n"
            f"GPU UUID: \t {uuid}\nVideo BIOS: \t 96.00.74.00.0d\nBus Type: \t PCIe\n"
            f"DMA Size: \t 52 bits\nDMA Mask: \t 0xfffffffffffff\nBus Location: \t {bus}\n"
            f"Device Minor: \t {MINORS[index]}\nGPU Excluded:\t No\n")
    host.uuids = [f"GPU-{i:08x}-1111-2222-3333-44444444444{i}" for i in range(gpus)]
    host.buses = BUSES[:gpus]

    libdir = root / LIB_DIR.lstrip("/")
    libdir.mkdir(parents=True)
    lines = []
    for stem, soname in LIBS.items():
        real = f"{stem}.so.{driver_version}"
        (libdir / real).write_bytes(b"\x7fELF fake")
        if soname:
            os.symlink(real, libdir / f"{stem}.so.{soname}")
            lines.append(f"\t{stem}.so.{soname} (libc6,x86-64) => {LIB_DIR}/{stem}.so.{soname}")
        else:
            lines.append(f"\t{real} (libc6,x86-64) => {LIB_DIR}/{real}")
    # A development link with an absolute target, which must be followed inside the fake root.
    os.symlink(f"{LIB_DIR}/libcuda.so.1", libdir / "libcuda.so")
    lines.append(f"\tlibcuda.so (libc6,x86-64) => {LIB_DIR}/libcuda.so")
    # A 32-bit copy and a stale library from an older driver: both must be ignored.
    lib32 = root / "usr/lib/i386-linux-gnu"
    lib32.mkdir(parents=True)
    (lib32 / f"libcuda.so.{driver_version}").write_bytes(b"")
    os.symlink(f"libcuda.so.{driver_version}", lib32 / "libcuda.so.1")
    lines.append("\tlibcuda.so.1 (libc6) => /usr/lib/i386-linux-gnu/libcuda.so.1")
    compat = root / "usr/local/cuda/compat"
    compat.mkdir(parents=True)
    (compat / "libcuda.so.470.82.01").write_bytes(b"")
    os.symlink("libcuda.so.470.82.01", compat / "libcuda.so.1")
    lines.append("\tlibcuda.so.1 (libc6,x86-64) => /usr/local/cuda/compat/libcuda.so.1")
    # Unrelated libraries stay out.
    (libdir / "libz.so.1.2.13").write_bytes(b"")
    os.symlink("libz.so.1.2.13", libdir / "libz.so.1")
    lines.append(f"\tlibz.so.1 (libc6,x86-64) => {LIB_DIR}/libz.so.1")
    host.ldconfig_output = (f"{len(lines)} libs found in cache `/etc/ld.so.cache'\n"
                            + "\n".join(lines) + "\n")

    bindir = root / "usr/bin"
    bindir.mkdir(parents=True)
    for tool in TOOLS:
        path = bindir / tool
        body = "#!/bin/sh\n"
        if tool == "nvidia-smi":
            body += "".join(f'echo "GPU {i}: NVIDIA H100 80GB HBM3 (UUID: {u})"\n'
                            for i, u in enumerate(host.uuids))
        path.write_text(body)
        path.chmod(0o755)
    (root / "run/nvidia-persistenced").mkdir(parents=True)
    (root / "run/nvidia-persistenced/socket").write_text("")
    fw = root / f"lib/firmware/nvidia/{driver_version}"
    fw.mkdir(parents=True)
    (fw / "gsp_ga10x.bin").write_bytes(b"")
    (fw / "gsp_tu10x.bin").write_bytes(b"")
    return host
