"""Finding the NVIDIA driver on the host, without NVIDIA's container toolkit.

A container sees a GPU when it has three things from the host:

* **device nodes** — one per GPU (``/dev/nvidia0``, ``/dev/nvidia1``, major 195, minor = the GPU's
  "Device Minor") and the driver's control nodes (``/dev/nvidiactl`` 195/255, ``/dev/nvidia-modeset``
  195/254, ``/dev/nvidia-uvm`` and ``/dev/nvidia-uvm-tools`` with a major the kernel picks, listed in
  ``/proc/devices``), each allowed in the container's devices cgroup;
* **the user-space driver** — ``libcuda.so.<driver version>``, ``libnvidia-ml.so.<version>`` and
  friends, which must match the kernel module exactly and so cannot live in the image; they are
  found through the linker cache (``ldconfig -p``) and bind-mounted read-only;
* **tools** — ``nvidia-smi`` and the MPS daemons, the persistence daemon's socket, GSP firmware.

The kernel module describes each GPU in ``/proc/driver/nvidia/gpus/<PCI bus id>/information``
(``Model:``, ``GPU UUID:``, ``Device Minor:``, ``Bus Location:``) and its own version in
``/proc/driver/nvidia/version``. GPU indices follow PCI bus order, as ``nvidia-smi`` numbers them.

Every path here is read under ``host_root`` (default ``/``) so tests can point discovery at a fake
tree; paths recorded in :class:`NvidiaHost` are the host's own view (``/dev/nvidia0``) and
:meth:`NvidiaHost.real` maps one back to the file to open or mount.

When NVIDIA's ``nvidia-ctk`` is installed, :func:`nvidia_ctk_spec` asks it for a CDI spec instead,
since it knows driver layouts (MIG, WSL, Tegra) that this module does not.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

from portside.engine.errors import GPUError
from portside.engine.records import field, record

__all__ = ["GPU", "DeviceInfo", "Library", "NvidiaHost", "LIBRARIES", "BINARIES", "CAPABILITIES",
           "discover", "parse_ldconfig", "nvidia_ctk_spec", "cuda_version_for_driver"]

#: Every driver capability the toolkit knows, in its canonical order.
CAPABILITIES = ("compute", "compat32", "graphics", "utility", "video", "display", "ngx")

#: Driver libraries (by name before ``.so``) that each capability needs, as the toolkit lists them.
LIBRARIES: dict[str, tuple[str, ...]] = {
    "utility": ("libnvidia-ml", "libnvidia-cfg", "libnvidia-nscq"),
    "compute": ("libcuda", "libcudadebugger", "libnvidia-opencl", "libnvidia-gpucomp",
                "libnvidia-ptxjitcompiler", "libnvidia-fatbinaryloader", "libnvidia-allocator",
                "libnvidia-compiler", "libnvidia-pkcs11", "libnvidia-pkcs11-openssl3",
                "libnvidia-nvvm"),
    "video": ("libvdpau_nvidia", "libnvidia-encode", "libnvidia-opticalflow", "libnvcuvid"),
    "graphics": ("libnvidia-eglcore", "libnvidia-glcore", "libnvidia-tls", "libnvidia-glsi",
                 "libnvidia-fbc", "libnvidia-ifr", "libnvidia-rtcore", "libnvoptix",
                 "libGLX_nvidia", "libEGL_nvidia", "libGLESv2_nvidia", "libGLESv1_CM_nvidia",
                 "libnvidia-glvkspirv", "libnvidia-cbl"),
    "ngx": ("libnvidia-ngx",),
    "display": (),
    "compat32": (),  # 32-bit libraries are not offered
}

#: Driver programs each capability needs; they go to ``/usr/bin`` in the container.
BINARIES: dict[str, tuple[str, ...]] = {
    "utility": ("nvidia-smi", "nvidia-debugdump", "nvidia-persistenced"),
    "compute": ("nvidia-cuda-mps-control", "nvidia-cuda-mps-server"),
}

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Where to look for libraries when the linker cache cannot be read.
_FALLBACK_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64",
                      "/lib64", "/usr/lib", "/lib/x86_64-linux-gnu")
NVIDIA_MAJOR = 195
PERSISTENCED_SOCKET = "/run/nvidia-persistenced/socket"

# The newest CUDA each driver branch supports (from NVIDIA's release notes): (branch, cuda).
_CUDA_BY_DRIVER = ((418, "10.1"), (440, "10.2"), (450, "11.0"), (455, "11.1"), (460, "11.2"),
                   (465, "11.3"), (470, "11.4"), (495, "11.5"), (510, "11.6"), (515, "11.7"),
                   (520, "11.8"), (525, "12.0"), (530, "12.1"), (535, "12.2"), (545, "12.3"),
                   (550, "12.4"), (555, "12.5"), (560, "12.6"), (565, "12.7"), (570, "12.8"),
                   (575, "12.9"), (580, "13.0"))


@record(frozen=True)
class DeviceInfo:
    """A device node on the host: path as the host sees it, and its numbers."""

    path: str
    major: int
    minor: int


@record(frozen=True)
class GPU:
    """One GPU: ``index`` in PCI bus order (``nvidia-smi``'s), its node's ``minor`` and identity."""

    index: int
    minor: int
    uuid: str
    pci_bus_id: str
    model: str
    device: DeviceInfo | None = None


@record(frozen=True)
class Library:
    """A driver library: the real versioned file, the names the linker cache knows it by."""

    path: str
    capability: str
    links: tuple[str, ...] = ()


@record
class NvidiaHost:
    """What :func:`discover` found; all paths are host paths, :meth:`real` opens them."""

    root: Path
    driver_version: str
    gpus: list[GPU] = field(default_factory=list)
    control_devices: list[DeviceInfo] = field(default_factory=list)
    cap_devices: list[DeviceInfo] = field(default_factory=list)
    libraries: list[Library] = field(default_factory=list)
    binaries: dict[str, str] = field(default_factory=dict)  # name -> host path
    firmware: list[str] = field(default_factory=list)
    persistenced_socket: str | None = None

    def real(self, path: str) -> str:
        """The path on this machine of host path ``path`` (differs only under a fake root)."""
        return str(self.root / path.lstrip("/")) if str(self.root) != "/" else path

    @property
    def cuda_version(self) -> str | None:
        """Newest CUDA version the driver supports, or None when the driver is unknown."""
        return cuda_version_for_driver(self.driver_version)

    def libraries_for(self, capability: str) -> list[Library]:
        """The discovered libraries one capability needs."""
        return [lib for lib in self.libraries if lib.capability == capability]


def cuda_version_for_driver(driver_version: str) -> str | None:
    """Map a driver version (``550.54.15``) to the newest CUDA it supports (``12.4``)."""
    m = re.match(r"(\d+)", driver_version or "")
    if not m:
        return None
    branch = int(m.group(1))
    best = None
    for b, cuda in _CUDA_BY_DRIVER:
        if branch >= b:
            best = cuda
    return best


def _missing(path: str) -> GPUError:
    return GPUError(f"--gpus: no NVIDIA GPU found: {path} is missing")


def _proc_devices(root: Path) -> dict[str, int]:
    """``/proc/devices``' character majors by driver name."""
    majors: dict[str, int] = {}
    try:
        text = (root / "proc/devices").read_text()
    except OSError:
        return majors
    in_char = False
    for line in text.splitlines():
        if line.startswith("Character devices"):
            in_char = True
        elif line.startswith("Block devices"):
            in_char = False
        elif in_char and line.strip():
            num, _, name = line.strip().partition(" ")
            if num.isdigit():
                majors.setdefault(name.strip(), int(num))
    return majors


def _device(root: Path, path: str, major: int | None, minor: int | None,
            require_char: bool) -> DeviceInfo | None:
    """Stat one node; fall back to the given numbers when fake nodes are allowed."""
    try:
        st = os.stat(root / path.lstrip("/"))
    except OSError:
        return None
    if stat.S_ISCHR(st.st_mode):
        return DeviceInfo(path, os.major(st.st_rdev), os.minor(st.st_rdev))
    if require_char:
        raise GPUError(f"--gpus: {path} is not a character device")
    if major is None or minor is None:
        return None
    return DeviceInfo(path, major, minor)


def _parse_information(text: str) -> dict[str, str]:
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def parse_ldconfig(output: str) -> list[tuple[str, str]]:
    """Parse ``ldconfig -p`` output into ``(name, path)`` pairs of 64-bit libraries.

    Lines look like ``\\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1``;
    entries flagged plain ``libc6`` on a 64-bit host are the 32-bit (compat32) copies.
    """
    pairs = []
    for line in output.splitlines():
        m = re.match(r"\s*(\S+)\s+\(([^)]*)\)(?:\s+OS ABI:[^=]*)?\s*=>\s*(\S+)", line)
        if not m:
            continue
        name, flags, path = m.groups()
        if "64" not in flags:
            continue
        pairs.append((name, path))
    return pairs


def _resolve(root: Path, path: str) -> str | None:
    """Host path ``path`` with its symlinks followed inside ``root`` (the host's root, or a fake
    one in tests), as a path from that root; None when it dangles or loops."""
    from ..errors import InvalidArgument
    from ..rootfs import resolve

    try:
        real = resolve(root, path)
    except InvalidArgument:
        return None
    if not real.exists():
        return None
    rel = real.relative_to(root)
    return "/" if rel == Path(".") else "/" + str(rel)


def _ldconfig_output(root: Path) -> str:
    cmd = ["ldconfig", "-p"] if str(root) == "/" else ["ldconfig", "-r", str(root), "-p"]
    exe = shutil.which("ldconfig") or ("/sbin/ldconfig" if os.path.exists("/sbin/ldconfig") else None)
    if exe is None:
        return ""
    try:
        return subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, timeout=10,
                              check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _find_libraries(root: Path, ldconfig_output: str, driver_version: str) -> list[Library]:
    pairs = parse_ldconfig(ldconfig_output)
    if not pairs:
        # No linker cache: look at the usual library folders directly.
        for d in _FALLBACK_LIB_DIRS:
            try:
                names = sorted(os.listdir(root / d.lstrip("/")))
            except OSError:
                continue
            pairs.extend((n, f"{d}/{n}") for n in names if ".so" in n)
    wanted = {stem: cap for cap, stems in LIBRARIES.items() for stem in stems}
    found: dict[str, dict[str, list[str]]] = {}  # stem -> real path -> links
    for name, path in pairs:
        stem = name.split(".so", 1)[0]
        if stem not in wanted:
            continue
        real = _resolve(root, path)
        if real is None:
            continue
        links = found.setdefault(stem, {}).setdefault(real, [])
        if path != real and path not in links:
            links.append(path)
    libs = []
    seen_files: set[tuple[int, int]] = set()
    for stem, reals in found.items():
        chosen = []
        for real in reals:
            # On merged-/usr hosts /lib/x/libcuda.so.N and /usr/lib/x/libcuda.so.N are one file.
            try:
                st = os.stat(root / real.lstrip("/"))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen_files:
                seen_files.add((st.st_dev, st.st_ino))
                chosen.append(real)
        # The driver's own libraries carry its exact version; prefer those over stale copies.
        matching = [r for r in chosen if driver_version and r.endswith("." + driver_version)]
        for real in matching or chosen:
            libs.append(Library(real, wanted[stem], tuple(sorted(reals[real]))))
    return sorted(libs, key=lambda lib: (CAPABILITIES.index(lib.capability), lib.path))


def _find_binary(root: Path, name: str, search_path: str) -> str | None:
    for d in search_path.split(":"):
        if not d:
            continue
        host_path = f"{d.rstrip('/')}/{name}"
        real = root / host_path.lstrip("/")
        if real.is_file() and os.access(real, os.X_OK):
            return host_path
    return None


def discover(host_root: Path = Path("/"), ldconfig_output: str | None = None, *,
             require_char_devices: bool = True, search_path: str | None = None) -> NvidiaHost:
    """Find the NVIDIA GPUs, device nodes, libraries and tools of a host.

    Args:
        host_root: the host's root folder (a fake tree in tests).
        ldconfig_output: ``ldconfig -p`` text; None runs ``ldconfig`` (for the real root, or with
            ``-r host_root``).
        require_char_devices: when False, regular files stand in for device nodes (unprivileged
            tests) and their numbers come from ``/proc/devices`` and the GPU information files.
        search_path: the ``PATH`` to find tools on; defaults to the usual system folders.

    Returns:
        the :class:`NvidiaHost`.

    Raises:
        GPUError: the driver is missing; the message names the first missing file
            (``--gpus: no NVIDIA GPU found: /dev/nvidiactl is missing``).
    """
    root = Path(host_root)
    if not (root / "dev/nvidiactl").exists():
        raise _missing("/dev/nvidiactl")
    version_file = root / "proc/driver/nvidia/version"
    try:
        version_text = version_file.read_text()
    except OSError:
        raise _missing("/proc/driver/nvidia/version") from None
    m = re.search(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+(?:\.\d+)+)", version_text)
    driver_version = m.group(1) if m else ""

    majors = _proc_devices(root)
    nv_major = majors.get("nvidia-frontend", majors.get("nvidia", NVIDIA_MAJOR))
    host = NvidiaHost(root=root, driver_version=driver_version)

    gpu_dir = root / "proc/driver/nvidia/gpus"
    try:
        bus_ids = sorted(os.listdir(gpu_dir), key=str.lower)
    except OSError:
        bus_ids = []
    if not bus_ids:
        raise _missing("/proc/driver/nvidia/gpus")
    for index, bus_id in enumerate(bus_ids):
        info_path = f"/proc/driver/nvidia/gpus/{bus_id}/information"
        try:
            info = _parse_information((gpu_dir / bus_id / "information").read_text())
        except OSError:
            raise _missing(info_path) from None
        try:
            minor = int(info.get("Device Minor", ""))
        except ValueError:
            raise GPUError(f"--gpus: {info_path} has no Device Minor") from None
        dev_path = f"/dev/nvidia{minor}"
        dev = _device(root, dev_path, nv_major, minor, require_char_devices)
        if dev is None:
            raise _missing(dev_path)
        host.gpus.append(GPU(index=index, minor=minor, uuid=info.get("GPU UUID", ""),
                             pci_bus_id=info.get("Bus Location", bus_id),
                             model=info.get("Model", ""), device=dev))

    uvm = majors.get("nvidia-uvm")
    for path, major, minor in (("/dev/nvidiactl", nv_major, 255),
                               ("/dev/nvidia-uvm", uvm, 0),
                               ("/dev/nvidia-uvm-tools", uvm, 1),
                               ("/dev/nvidia-modeset", nv_major, 254)):
        dev = _device(root, path, major, minor, require_char_devices)
        if dev is not None:
            host.control_devices.append(dev)
    caps_dir = root / "dev/nvidia-caps"
    if caps_dir.is_dir():
        caps_major = majors.get("nvidia-caps")
        for name in sorted(os.listdir(caps_dir)):
            num = re.search(r"(\d+)$", name)
            dev = _device(root, f"/dev/nvidia-caps/{name}", caps_major,
                          int(num.group(1)) if num else None, require_char_devices)
            if dev is not None:
                host.cap_devices.append(dev)

    if ldconfig_output is None:
        ldconfig_output = _ldconfig_output(root)
    host.libraries = _find_libraries(root, ldconfig_output, driver_version)
    for names in BINARIES.values():
        for name in names:
            found = _find_binary(root, name, search_path or DEFAULT_PATH)
            if found:
                host.binaries[name] = found
    fw = root / f"lib/firmware/nvidia/{driver_version}"
    if driver_version and fw.is_dir():
        host.firmware = [f"/lib/firmware/nvidia/{driver_version}/{n}" for n in sorted(os.listdir(fw))]
    if (root / PERSISTENCED_SOCKET.lstrip("/")).exists():
        host.persistenced_socket = PERSISTENCED_SOCKET
    return host


def nvidia_ctk_spec(search_path: str | None = None, timeout: float = 60.0):
    """Ask NVIDIA's ``nvidia-ctk`` for a CDI spec of this host, when it is installed.

    Runs ``nvidia-ctk cdi generate --format=json`` and parses what it prints.

    Args:
        search_path: the ``PATH`` to look for ``nvidia-ctk`` on (default: this process's).
        timeout: seconds to wait for it.

    Returns:
        a :class:`portside.engine.gpu.cdi.Spec`, or None when ``nvidia-ctk`` is not installed.

    Raises:
        GPUError: ``nvidia-ctk`` failed or printed something that is not a valid CDI spec.
    """
    exe = shutil.which("nvidia-ctk", path=search_path)
    if exe is None:
        return None
    import json

    from portside.engine.errors import InvalidArgument
    from portside.engine.gpu.cdi import parse_spec

    try:
        proc = subprocess.run([exe, "cdi", "generate", "--format=json"], capture_output=True,
                              text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GPUError(f"--gpus: nvidia-ctk cdi generate failed: {exc}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise GPUError(f"--gpus: nvidia-ctk cdi generate failed: {tail}")
    try:
        return parse_spec(json.loads(proc.stdout), "nvidia-ctk cdi generate")
    except ValueError as exc:
        raise GPUError(f"--gpus: nvidia-ctk cdi generate printed invalid JSON: {exc}") from exc
    except InvalidArgument as exc:
        raise GPUError(f"--gpus: {exc}") from exc
