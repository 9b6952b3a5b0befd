"""From a GPU request to container edits, with the NVIDIA Container Toolkit's meanings.

Two environment variables drive the toolkit, and portside reads them the same way:

``NVIDIA_VISIBLE_DEVICES`` — which GPUs the container gets:
    ``all``; a list of indices or UUIDs (``0,2``, ``GPU-3a1f...``); ``none`` (no GPU, but the driver
    libraries and tools, so ``nvidia-smi`` runs and reports nothing); ``void`` or empty (not a GPU
    container at all). ``--gpus`` sets it; without ``--gpus`` the image's value is used, and a
    legacy CUDA image (``CUDA_VERSION`` set, no ``NVIDIA_REQUIRE_CUDA``) means ``all``. A
    ``--gpus 0`` (count zero) also leaves the choice to the image, as Docker does.

``NVIDIA_DRIVER_CAPABILITIES`` — which parts of the driver are mounted:
    a list of ``compute, compat32, graphics, utility, video, display, ngx`` or ``all``; empty or
    unset means ``utility,compute``. ``--gpus "capabilities=..."`` overrides the image's value.

The edits are: the chosen GPUs' device nodes plus the control nodes (``nvidiactl``, ``nvidia-uvm``,
``nvidia-uvm-tools``, ``nvidia-modeset``), each allowed in the devices cgroup; read-only bind
mounts of the driver libraries at their host paths — and again at each linker-cache name
(``libcuda.so.1``), which stands in for the symlinks the toolkit creates; the tools in
``/usr/bin``; the persistence daemon's socket; the GSP firmware; the two variables above; and
``ldconfig_refresh`` so the runtime refreshes the image's linker cache.

An image's ``NVIDIA_REQUIRE_CUDA`` (or a legacy ``CUDA_VERSION``) is checked for its ``cuda>=X.Y``
term against the driver's CUDA version; ``NVIDIA_DISABLE_REQUIRE`` turns the check off.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from portside.engine.errors import GPUError
from portside.engine.gpu.cdi import ContainerEdits, DeviceNode, Mount
from portside.engine.gpu.discover import BINARIES, CAPABILITIES, GPU, NvidiaHost
from portside.engine.gpu.request import ALL, GPURequest

__all__ = ["gpu_edits", "visible_devices", "driver_capabilities", "check_cuda", "select_gpus",
           "DEFAULT_CAPABILITIES", "RO_MOUNT"]

DEFAULT_CAPABILITIES = ("utility", "compute")
RO_MOUNT = ["ro", "nosuid", "nodev", "bind"]
#: Capabilities a request may name and still be served by the NVIDIA driver (Docker's set).
_REQUEST_CAPS = frozenset({"gpu", "nvidia", *CAPABILITIES})


def visible_devices(request: GPURequest | None, image_env: Mapping[str, str]) -> str | list[str]:
    """What ``NVIDIA_VISIBLE_DEVICES`` means for this request.

    Returns:
        ``"all"``, ``"none"``, ``"void"``, ``"count:N"`` (any N GPUs, from ``--gpus N``), or a list
        of device ids (indices or UUIDs).
    """
    if request is not None and request.device_ids:
        return list(request.device_ids)
    if request is not None and request.count == ALL:
        return "all"
    if request is not None and request.count:
        return f"count:{request.count}"
    value = image_env.get("NVIDIA_VISIBLE_DEVICES")
    if value is None:
        legacy = image_env.get("CUDA_VERSION") and not image_env.get("NVIDIA_REQUIRE_CUDA")
        return "all" if legacy else "void"
    value = value.strip()
    if value in ("", "void"):
        return "void"
    if value in ("all", "none"):
        return value
    return [v.strip() for v in value.split(",") if v.strip()]


def driver_capabilities(request: GPURequest | None, image_env: Mapping[str, str]) -> list[str]:
    """The driver capabilities to expose, in the toolkit's canonical order.

    Raises:
        GPUError: the request names a capability no NVIDIA driver offers (Docker's message).
    """
    asked: list[str] = []
    if request is not None:
        for capset in request.capabilities:
            if not set(capset) <= _REQUEST_CAPS:
                raise GPUError(f'could not select device driver "{request.driver or ""}" '
                               f"with capabilities: {request.capabilities}")
            asked.extend(c for c in capset if c in CAPABILITIES)
    if not asked:
        raw = image_env.get("NVIDIA_DRIVER_CAPABILITIES", "").strip()
        if raw == "all":
            return list(CAPABILITIES)
        # Unknown names in the image are ignored, as the toolkit does.
        asked = [c.strip() for c in raw.split(",") if c.strip() in CAPABILITIES]
        if not asked:
            asked = list(DEFAULT_CAPABILITIES)
    if "all" in asked:
        return list(CAPABILITIES)
    return [c for c in CAPABILITIES if c in asked]


def select_gpus(host: NvidiaHost, ids: list[str]) -> list[GPU]:
    """Map device ids (indices like ``0`` or UUIDs like ``GPU-3a1f...``) to the host's GPUs.

    Raises:
        GPUError: an id matches no GPU.
    """
    chosen: list[GPU] = []
    for ident in ids:
        match = None
        for gpu in host.gpus:
            if ident == str(gpu.index) or (gpu.uuid and ident.lower() == gpu.uuid.lower()):
                match = gpu
                break
        if match is None:
            raise GPUError(f"--gpus: no such GPU: {ident} (this host has "
                           f"{len(host.gpus)} GPU{'s' if len(host.gpus) != 1 else ''})")
        if match not in chosen:
            chosen.append(match)
    return chosen


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:2])


def check_cuda(host: NvidiaHost, image_env: Mapping[str, str]) -> str | None:
    """Check the image's ``cuda>=X.Y`` requirement against the driver.

    Returns:
        a warning when the check had to be skipped (unknown driver), else None.

    Raises:
        GPUError: the driver supports an older CUDA than the image requires.
    """
    if image_env.get("NVIDIA_DISABLE_REQUIRE", "").strip().lower() in ("1", "true", "yes"):
        return None
    require = image_env.get("NVIDIA_REQUIRE_CUDA", "")
    m = re.search(r"cuda\s*>=\s*(\d+(?:\.\d+)?)", require)
    if m:
        wanted = m.group(1)
    elif not require and image_env.get("CUDA_VERSION"):
        wanted = ".".join(image_env["CUDA_VERSION"].split(".")[:2])
    else:
        return None
    have = host.cuda_version
    if have is None:
        return f"--gpus: cannot tell which CUDA driver {host.driver_version or '?'} supports; " \
               f"cuda>={wanted} not checked"
    if _version(have) < _version(wanted):
        raise GPUError(f"--gpus: the image requires cuda>={wanted} but driver "
                       f"{host.driver_version} supports CUDA {have}")
    return None


def gpu_edits(request: GPURequest | None, host: NvidiaHost, image_env: Mapping[str, str], *,
              allocated: list[int] | None = None) -> ContainerEdits:
    """Compute what a container needs from the host's NVIDIA driver.

    Args:
        request: the parsed ``--gpus`` value, or None when the flag was not given (the image's
            ``NVIDIA_VISIBLE_DEVICES`` then decides).
        host: what :func:`portside.engine.gpu.discover.discover` found.
        image_env: the image's environment (``Config.Env`` as a dict) merged with ``-e``.
        allocated: for a count request, the GPU indices :func:`~.allocate.choose_gpus` picked;
            without it the first N GPUs are used.

    Returns:
        the :class:`ContainerEdits`; empty when the container is not a GPU container (``void``).

    Raises:
        GPUError: an unknown GPU id, more GPUs than the host has, a driver other than NVIDIA's, an
            unknown capability, or an image needing a newer CUDA than the driver supports.
    """
    if request is not None and request.driver not in (None, "", "nvidia"):
        raise GPUError(f'could not select device driver "{request.driver}" '
                       f"with capabilities: {request.capabilities}")
    caps = driver_capabilities(request, image_env)
    visible = visible_devices(request, image_env)
    edits = ContainerEdits()
    if visible == "void":
        return edits
    if visible == "all":
        gpus = list(host.gpus)
    elif visible == "none":
        gpus = []
    elif isinstance(visible, str):  # "count:N"
        n = int(visible.split(":", 1)[1])
        if n > len(host.gpus):
            raise GPUError(f"--gpus: {n} GPUs requested but this host has {len(host.gpus)}")
        if allocated is not None:
            gpus = select_gpus(host, [str(i) for i in allocated])
            if len(gpus) != n:
                raise GPUError(f"--gpus: {n} GPUs requested but {len(gpus)} allocated")
        else:
            gpus = list(host.gpus[:n])
    else:
        gpus = select_gpus(host, visible)

    warning = check_cuda(host, image_env)
    if warning:
        edits.warnings.append(warning)

    for gpu in gpus:
        if gpu.device is not None:
            edits.device_nodes.append(_node(host, gpu.device.path, gpu.device.major,
                                            gpu.device.minor))
    for dev in host.control_devices:
        edits.device_nodes.append(_node(host, dev.path, dev.major, dev.minor))

    for cap in caps:
        for lib in host.libraries_for(cap):
            src = host.real(lib.path)
            edits.mounts.append(Mount(src, lib.path, list(RO_MOUNT)))
            # The soname names (libcuda.so.1) the loader looks up: mount the real file there too.
            for link in lib.links:
                edits.mounts.append(Mount(src, link, list(RO_MOUNT)))
        for name in BINARIES.get(cap, ()):
            path = host.binaries.get(name)
            if path:
                edits.mounts.append(Mount(host.real(path), f"/usr/bin/{name}", list(RO_MOUNT)))
    if set(caps) & {"utility", "compute"}:
        if host.persistenced_socket:
            edits.mounts.append(Mount(host.real(host.persistenced_socket),
                                      host.persistenced_socket, [*RO_MOUNT, "noexec"]))
        for fw in host.firmware:
            edits.mounts.append(Mount(host.real(fw), fw, list(RO_MOUNT)))
    edits.ldconfig_refresh = any(m.container_path.find(".so") >= 0 for m in edits.mounts)

    if gpus and all(g.uuid for g in gpus):
        edits.env.append("NVIDIA_VISIBLE_DEVICES=" + ",".join(g.uuid for g in gpus))
    elif gpus:
        edits.env.append("NVIDIA_VISIBLE_DEVICES=" + ",".join(str(g.index) for g in gpus))
    else:
        edits.env.append("NVIDIA_VISIBLE_DEVICES=none")
    edits.env.append("NVIDIA_DRIVER_CAPABILITIES=" + ",".join(caps))
    return edits


def _node(host: NvidiaHost, path: str, major: int, minor: int) -> DeviceNode:
    # The numbers come from discovery, so apply_edits never needs to stat the node again.
    return DeviceNode(path=path, host_path=host.real(path), type="c", major=major, minor=minor,
                      file_mode=0o666, permissions="rwm")
