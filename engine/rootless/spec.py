"""The rootless OCI runtime spec: root mode's spec minus what needs the host's root.

runc runs inside the user's namespace (it joins nothing: the container shares that user
namespace), with the same spec as in root mode except:

* **cgroups**: a user owns no cgroup unless cgroup v2 is delegated to them (systemd's
  ``user@.service``). Without delegation the spec has no ``cgroupsPath`` and no ``resources``
  (runc then skips cgroups altogether; with either, it fails), so ``-m``, ``--memory-swap``,
  ``--cpus``, ``--cpu-shares`` and ``--pids-limit`` (at ``run``/``create`` and ``update``) are
  refused in one line by :func:`check_host_config`, and nothing
  restricts devices: the namespace already keeps the container from every device node it did
  not bind-mount.
* **devices**: ``/dev`` nodes (``--device``, ``--privileged``, CDI/GPU nodes) are bind-mounted
  from the host instead of made with ``mknod``, which a user namespace forbids; whether the user
  may open one stays the host's business (its mode and owner).
* **sysfs**: a user may mount sysfs only in a network namespace of their own; with ``--net
  host`` the container gets the host's ``/sys`` bind-mounted read-only (with its cgroup tree).
* **single-id mapping**: only id 0 exists, so ``/dev/pts`` loses its ``gid=5`` and the
  process must run as 0:0 with no extra groups.

Everything else (capabilities, seccomp, masked and read-only paths, rlimits clamped to the
caller's hard limits) is what root mode writes: capabilities are the user namespace's own, so
``--privileged`` gives the container every capability *in the user's namespace*, never more than
the user has on the host.
"""

from __future__ import annotations

from portside.engine.errors import InvalidArgument

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any

#: The one line for limits (or verbs) that need cgroups a user does not own.
NO_CGROUPS = ("{flags}: rootless containers get no cgroup on this host (cgroup v2 delegated to "
              "the user, as systemd's user@.service does, is needed)")


#: The limits that need a cgroup: (flag, HostConfig key).
LIMITS = (("--memory", "Memory"), ("--memory-swap", "MemorySwap"), ("--cpus", "NanoCpus"),
          ("--cpu-shares", "CpuShares"), ("--pids-limit", "PidsLimit"))


def check_host_config(hc: dict[str, Any], *, delegated: bool | None = None) -> list[str]:
    """Refuse what a rootless container cannot have; returns the warnings for the rest.

    Raises:
        InvalidArgument: limits without delegated cgroups.
    """
    from . import mapping

    limits = [flag for flag, key in LIMITS if (hc.get(key) or 0) > 0]
    if "--memory" in limits and "--memory-swap" in limits:
        limits.remove("--memory-swap")  # also Docker's default, twice the memory: one is enough
    if limits:
        if delegated is None:
            from .cgroups import delegated_cgroup

            delegated = delegated_cgroup() is not None
        if not delegated:
            raise InvalidArgument(NO_CGROUPS.format(flags=", ".join(limits)))
    warnings = []
    if hc.get("Privileged"):
        warnings.append("rootless: --privileged gives every capability inside your user "
                        "namespace and the devices you can open, never more than you have")
    if mapping() == "single" and hc.get("GroupAdd"):
        raise InvalidArgument("--group-add: the user namespace maps a single id (no "
                              "subordinate ids): only group 0 exists")
    return warnings


def device_binds(edits: Any) -> Any:
    """CDI/GPU edits with their device nodes turned into bind mounts of the host's nodes (what
    runc itself does in a user namespace, except that it binds the container's path from the
    host, which is wrong when the two differ: ``hostPath: /dev/nvidia0`` shown as
    ``/dev/nvidia0`` and ``/dev/null`` shown as ``/dev/fakegpu`` alike). Whether the user may open
    a node stays the host's business (its mode and owner)."""
    from portside.engine.gpu.cdi import Mount
    from portside.engine.records import replace

    if not edits.device_nodes:
        return edits
    binds = [Mount(host_path=node.host_path or node.path, container_path=node.path,
                   options=["bind", "nosuid", "noexec"], type="bind")
             for node in edits.device_nodes]
    return replace(edits, device_nodes=[], mounts=[*edits.mounts, *binds])


def adapt(spec: dict[str, Any], *, host_network: bool, cgroups_path: str | None = None,
          single: bool | None = None) -> dict[str, Any]:
    """Turn a root-mode spec into the rootless one (in place; returned).

    Args:
        host_network: the container keeps the host's network namespace (no sysfs mount then).
        cgroups_path: a path in the user's delegated cgroup tree, when there is one: the
            spec's limits stay (devices rules go: no device controller rootless).
        single: the namespace maps a single id (default: as this process's namespace does).

    Raises:
        InvalidArgument: a user or group the single-id mapping cannot run as.
    """
    from . import mapping

    if single is None:
        single = mapping() == "single"
    linux = spec.setdefault("linux", {})
    resources = linux.pop("resources", None) or {}
    linux.pop("cgroupsPath", None)
    if cgroups_path:
        resources.pop("devices", None)
        kept = {k: v for k, v in resources.items() if k in ("memory", "cpu", "pids")}
        if kept:
            linux["resources"] = kept
        linux["cgroupsPath"] = cgroups_path
    mounts = []
    for m in spec.get("mounts") or []:
        dest, kind = m.get("destination"), m.get("type")
        if host_network and dest == "/sys" and kind == "sysfs":
            ro = "ro" in (m.get("options") or [])
            m = {"destination": "/sys", "type": "bind", "source": "/sys",
                 "options": ["rbind", "nosuid", "noexec", "nodev", *(["ro"] if ro else [])]}
        elif host_network and dest == "/sys/fs/cgroup" and kind == "cgroup":
            continue  # in the /sys bind above, read-only with it
        elif single and kind == "devpts":
            m = dict(m, options=[o for o in m.get("options") or [] if not o.startswith("gid=")])
        mounts.append(m)
    # device nodes: bind-mounted from the host, each from its own path there (runc would bind
    # the container's path from the host, wrong for --device /dev/x:/dev/y)
    for dev in linux.get("devices") or []:
        mounts.append({"destination": dev["path"], "type": "bind",
                       "source": dev.pop("hostPath", dev["path"]),
                       "options": ["bind", "nosuid", "noexec"]})
    linux["devices"] = []
    spec["mounts"] = mounts
    if single:
        user = (spec.get("process") or {}).get("user") or {}
        if user.get("uid", 0) or user.get("gid", 0):
            raise InvalidArgument(f"user {user.get('uid', 0)}:{user.get('gid', 0)}: the user "
                                  f"namespace maps a single id (no subordinate ids): "
                                  f"containers run as 0:0 only")
        user.pop("additionalGids", None)
    return spec
