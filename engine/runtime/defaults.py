"""Docker's defaults for a new container: the image's config under ``run``'s options, and the
defaults of a ``HostConfig``.

``create`` receives Docker-shaped ``Config`` and ``HostConfig`` documents (from the command
line's flags or docker-py's keyword arguments); :func:`merge_config` fills what the user left out
from the image's config with Docker's rules, and :func:`normalize_host_config` fills the rest of
the ``HostConfig`` and refuses contradictions (``--rm`` with a restart policy, Docker's resource
checks of :mod:`.resources`).
"""

from __future__ import annotations

from portside.engine.errors import InvalidArgument

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["merge_config", "normalize_host_config"]


def merge_config(image: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    """Docker's rules for combining an image's config with ``run``'s options.

    Env is the image's with the user's overriding by name; a user ``Entrypoint`` (even empty)
    replaces the image's and drops the image's ``Cmd``; Labels merge; other fields fall back to the
    image's when the user gave none.
    """
    out = dict(user)
    env = list(image.get("Env") or [])
    for e in user.get("Env") or []:
        key = e.split("=", 1)[0]
        env = [x for x in env if x.split("=", 1)[0] != key] + [e]
    out["Env"] = env
    if user.get("Entrypoint") is not None:
        out["Entrypoint"] = [x for x in user["Entrypoint"] if x != ""] or None
        out["Cmd"] = user.get("Cmd") or None
    else:
        out["Entrypoint"] = image.get("Entrypoint")
        out["Cmd"] = user.get("Cmd") or image.get("Cmd")
    for key in ("WorkingDir", "User", "StopSignal"):
        if not out.get(key):
            out[key] = image.get(key) or ""
    labels = dict(image.get("Labels") or {})
    labels.update(user.get("Labels") or {})
    out["Labels"] = labels
    vols = dict(image.get("Volumes") or {})
    vols.update(user.get("Volumes") or {})
    out["Volumes"] = vols or None
    ports = dict(image.get("ExposedPorts") or {})
    ports.update(user.get("ExposedPorts") or {})
    out["ExposedPorts"] = ports or None
    for key, default in (("Tty", False), ("OpenStdin", False), ("AttachStdin", False),
                         ("AttachStdout", False), ("AttachStderr", False), ("Hostname", ""),
                         ("Domainname", "")):
        out.setdefault(key, default)
    return out


def normalize_host_config(hc: dict[str, Any]) -> dict[str, Any]:
    """Fill Docker's defaults into a HostConfig."""
    out = dict(hc)
    out.setdefault("Binds", None)
    out.setdefault("NetworkMode", "default")
    out.setdefault("PortBindings", {})
    out.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
    out.setdefault("AutoRemove", False)
    out.setdefault("CapAdd", None)
    out.setdefault("CapDrop", None)
    out.setdefault("Privileged", False)
    out.setdefault("ReadonlyRootfs", False)
    out.setdefault("ShmSize", 64 * 1024 * 1024)
    out.setdefault("Memory", 0)
    out.setdefault("MemorySwap", 0)
    out.setdefault("NanoCpus", 0)
    out.setdefault("CpuShares", 0)
    out.setdefault("PidsLimit", None)
    out.setdefault("DeviceRequests", None)
    out.setdefault("Devices", [])
    out.setdefault("VolumesFrom", None)
    out.setdefault("Mounts", None)
    policy = out["RestartPolicy"] or {}
    if policy.get("Name") not in ("no", "always", "on-failure", "unless-stopped", ""):
        raise InvalidArgument(f"invalid restart policy: {policy.get('Name')}")
    if out["AutoRemove"] and policy.get("Name") not in ("no", "", None):
        raise InvalidArgument("conflicting options: cannot specify both --restart and --rm")
    from .resources import adapt, verify

    verify(out)
    return adapt(out)
