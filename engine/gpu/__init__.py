"""GPUs in containers: ``--gpus``, ``--device vendor.com/class=name`` and CDI.

A container gets a GPU through *edits* to its OCI runtime spec: device nodes (and the devices cgroup
rules that let it open them), read-only mounts of the host's driver libraries and tools, and a few
environment variables. This package computes those edits; the runtime applies them with
:func:`apply_edits` before it starts the container. The pieces:

``request``   the ``--gpus`` and ``--device`` grammars (Docker's) → :class:`GPURequest`
``cdi``       Container Device Interface specs (``/etc/cdi``, ``/var/run/cdi``) → edits
``discover``  the NVIDIA driver on a host without CDI specs → :class:`NvidiaHost`
``edits``     request + host → edits, with the NVIDIA Container Toolkit's meanings
``allocate``  which GPUs a ``--gpus N`` container gets when several containers share a host

:func:`resolve_gpus` ties them together in the order a user expects: CDI specs for ``nvidia.com/gpu``
when the host has them, else a spec from ``nvidia-ctk`` when NVIDIA's toolkit is installed, else
portside's own discovery. With ``--gpus-optional`` a host without a GPU gives a warning instead of an
error, and the container starts without one.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Iterable, Mapping

from portside.engine.errors import InvalidArgument
from portside.engine.gpu.request import (CDIDeviceName, DeviceMapping, GPURequest, parse_device,
                                         parse_gpus)

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from portside.engine.gpu.cdi import ContainerEdits, Registry


__all__ = ["GPURequest", "CDIDeviceName", "DeviceMapping", "parse_gpus", "parse_device",
           "resolve_gpus", "resolve_cdi_devices", "apply_edits", "NVIDIA_KIND"]

NVIDIA_KIND = "nvidia.com/gpu"


def apply_edits(spec: dict, edits: ContainerEdits) -> dict:
    """Apply edits to an OCI spec dict; see :func:`portside.engine.gpu.cdi.apply_edits`.
    Rootless, device nodes are bind-mounted from the host (a user namespace has no mknod and no
    devices cgroup): :func:`portside.engine.rootless.spec.device_binds`."""
    from portside.engine.gpu.cdi import apply_edits as _apply
    from portside.engine.rootless import active

    if active():
        from portside.engine.rootless.spec import device_binds

        edits = device_binds(edits)
    return _apply(spec, edits)


def resolve_cdi_devices(names: Iterable[str],
                        dirs: Iterable[str] | None = None) -> ContainerEdits:
    """Edits for ``--device vendor.com/class=name`` values, from the CDI spec folders.

    Args:
        names: fully qualified CDI device names.
        dirs: spec folders; None uses ``PORTSIDE_CDI_SPEC_DIRS`` or ``/etc/cdi:/var/run/cdi``.

    Raises:
        InvalidArgument: a name no spec defines (``unresolvable CDI devices: nvidia.com/gpu=9``).
    """
    from portside.engine.gpu.cdi import Registry

    return Registry(dirs).resolve(names)


def _cdi_names(request: GPURequest | None, registry: Registry,
               image_env: Mapping[str, str]) -> list[str] | None:
    """The CDI device names a request maps to, or None when CDI cannot express it."""
    from portside.engine.gpu.edits import visible_devices

    names = registry.devices(NVIDIA_KIND)
    if not names:
        return None
    visible = visible_devices(request, image_env)
    if visible == "void":
        return []
    if visible == "all":
        full = f"{NVIDIA_KIND}=all"
        return [full] if full in names else [n for n in names if n != full]
    if visible == "none":
        return None  # "driver but no GPU" has no CDI name; discovery handles it
    if isinstance(visible, str):  # count:N — the spec's numbered devices, in order
        n = int(visible.split(":", 1)[1])
        numbered = sorted((x for x in names if x.split("=", 1)[1].isdigit()),
                          key=lambda x: int(x.split("=", 1)[1]))
        if n > len(numbered):
            from portside.engine.errors import GPUError

            raise GPUError(f"--gpus: {n} GPUs requested but this host has {len(numbered)}")
        return numbered[:n]
    return [f"{NVIDIA_KIND}={ident}" for ident in visible]


def resolve_gpus(request: GPURequest | None, host_root: Path = Path("/"), optional: bool = False,
                 *, image_env: Mapping[str, str] | None = None,
                 in_use: Iterable[str] | Mapping[str, int] = (),
                 cdi_dirs: Iterable[str] | None = None, ldconfig_output: str | None = None,
                 require_char_devices: bool = True,
                 nvidia_ctk_path: str | None = None) -> tuple[ContainerEdits | None, str | None]:
    """Turn a ``--gpus`` request into edits, from CDI specs, ``nvidia-ctk`` or discovery.

    Args:
        request: the parsed ``--gpus`` value (None: only the image's ``NVIDIA_VISIBLE_DEVICES``).
        host_root: the host's root (a fake tree in tests). ``nvidia-ctk`` is only asked for the
            real root.
        optional: ``--gpus-optional``: a host without a usable GPU gives a warning, not an error.
        image_env: the image's environment merged with ``-e``.
        in_use: GPU UUIDs running containers hold, for spreading ``--gpus N``.
        cdi_dirs: CDI spec folders; None uses ``PORTSIDE_CDI_SPEC_DIRS`` or the defaults.
        ldconfig_output: ``ldconfig -p`` text for discovery (None runs ``ldconfig``).
        require_char_devices: False lets regular files stand in for device nodes (tests).
        nvidia_ctk_path: the ``PATH`` to look for ``nvidia-ctk`` on (None: this process's).

    Returns:
        ``(edits, warning)``: edits is None when nothing is to be done (no GPU asked for, or none
        available with ``optional``); warning is a one-line note for the user or None.

    Raises:
        GPUError: (not with ``optional``) no driver, too many GPUs asked for, an unknown GPU id...
        InvalidArgument: a broken CDI request (not with ``optional``).
    """
    from portside.engine.gpu.cdi import Registry
    from portside.engine.gpu.discover import discover, nvidia_ctk_spec
    from portside.engine.gpu.edits import gpu_edits

    env = dict(image_env or {})
    from portside.engine.gpu.edits import visible_devices

    if visible_devices(request, env) == "void":
        return None, None  # not a GPU container: never touch the host's driver
    try:
        registry = Registry(cdi_dirs)
        names = _cdi_names(request, registry, env)
        if names is None and Path(host_root) == Path("/"):
            spec = nvidia_ctk_spec(nvidia_ctk_path)
            if spec is not None:
                registry.add(spec)
                names = _cdi_names(request, registry, env)
        if names is not None:
            if not names:
                return None, None
            edits = registry.resolve(names)
        else:
            from portside.engine.gpu.allocate import choose_gpus

            host = discover(Path(host_root), ldconfig_output,
                            require_char_devices=require_char_devices)
            allocated = None
            if request is not None and request.count and request.count > 0 \
                    and not request.device_ids:
                allocated = [g.index for g in choose_gpus(request, host, in_use)]
            edits = gpu_edits(request, host, env, allocated=allocated)
            if edits.is_empty():
                return None, None
    except InvalidArgument as exc:
        if optional:
            return None, f"{exc}; starting without a GPU (--gpus-optional)"
        raise
    return edits, ("; ".join(edits.warnings) or None)
