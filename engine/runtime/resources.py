"""A container's resource limits, Docker's way: the ``HostConfig`` keys, their checks and
defaults, and how a change reaches a running container's cgroup.

=============  =================================================================  ===============
HostConfig     meaning                                                            flag
=============  =================================================================  ===============
``Memory``     bytes of memory; 0: no limit                                       ``-m/--memory``
``MemorySwap`` memory *plus* swap, bytes; -1: unlimited swap; 0: unset, which     ``--memory-swap``
               becomes twice ``Memory`` when a container is created with a
               memory limit on a host that accounts swap (Docker's default)
``NanoCpus``   CPU time, 10⁹ per CPU (``--cpus 1.5`` is 1.5×10⁹)                  ``--cpus``
``CpuShares``  relative CPU weight (the kernel's default is 1024); 0: unset       ``-c/--cpu-shares``
``PidsLimit``  most tasks at once; None, 0 or -1: no limit                        ``--pids-limit``
=============  =================================================================  ===============

:func:`verify` holds Docker's checks with Docker's messages (``create`` and ``update`` both run
them), :func:`adapt` its defaults for a new container, :func:`merge_update` its rules for
``docker update`` (which values a change replaces, which combinations it refuses), and
:func:`runtime_update_args` the ``runc update`` flags that apply a change to a running
container. The OCI spec of a starting container takes the same values (:mod:`.spec`).
"""

from __future__ import annotations

import os
from pathlib import Path

from portside.engine.errors import Conflict, InvalidArgument

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["MIN_MEMORY", "UPDATABLE", "swap_limit_supported", "verify", "adapt", "merge_update",
           "runtime_update_args"]

#: Docker's smallest memory limit (linuxMinMemory).
MIN_MEMORY = 6 * 1024 * 1024

#: The HostConfig keys ``update`` changes.
UPDATABLE = ("Memory", "MemorySwap", "NanoCpus", "CpuShares", "PidsLimit", "RestartPolicy")

#: CFS period portside (like Docker) sets with a CPU quota, in microseconds.
CPU_PERIOD = 100_000

_SWAP_WARNING = ("Your kernel does not support swap limit capabilities or the cgroup is not "
                 "mounted. Memory limited without swap.")


def swap_limit_supported(root: Path = Path("/sys/fs/cgroup")) -> bool:
    """Whether the kernel accounts swap per cgroup (Docker's ``SwapLimit``): cgroup v1's
    ``memory.memsw.limit_in_bytes``, or v2's ``memory.swap.max`` in this process's cgroup."""
    root = Path(root)
    if (root / "memory" / "memory.memsw.limit_in_bytes").exists():
        return True
    if not (root / "cgroup.controllers").exists():
        return False
    try:
        with open("/proc/self/cgroup") as f:
            own = next((line.split(":", 2)[2].strip() for line in f if line.startswith("0::")),
                       None)
    except OSError:
        return False
    return own is not None and (root / own.lstrip("/") / "memory.swap.max").exists()


def _int(hc: dict[str, Any], key: str) -> int:
    value = hc.get(key)
    return int(value) if value else 0


def verify(hc: dict[str, Any], *, update: bool = False,
           swap_supported: bool | None = None) -> list[str]:
    """Docker's checks of a HostConfig's resources (``verifyPlatformContainerResources``).

    ``hc`` may be adjusted as Docker adjusts it: without swap accounting a memory limit comes
    with ``MemorySwap = -1`` (and a warning).

    Args:
        hc: the HostConfig (a create's, or the change an update asks for).
        update: checking an ``update``'s change: ``--memory-swap`` alone is allowed there.
        swap_supported: whether the host accounts swap (default: :func:`swap_limit_supported`).
    Returns:
        Docker's warnings.
    Raises:
        InvalidArgument: with Docker's message.
    """
    warnings: list[str] = []
    memory, swap = _int(hc, "Memory"), _int(hc, "MemorySwap")
    if memory != 0 and memory < MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if memory > 0 and swap != -1:
        if swap_supported is None:
            swap_supported = swap_limit_supported()
        if not swap_supported:
            warnings.append(_SWAP_WARNING)
            hc["MemorySwap"] = swap = -1
    if memory > 0 and swap > 0 and swap < memory:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, "
                              "see usage")
    if memory == 0 and swap > 0 and not update:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap "
                              "limit, see usage")
    nano = _int(hc, "NanoCpus")
    if nano:
        ncpu = len(os.sched_getaffinity(0))
        if nano < 0 or nano > ncpu * 10**9:
            raise InvalidArgument(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only "
                                  f"{ncpu} CPUs available")
    shares = _int(hc, "CpuShares")
    if shares < 0:
        raise InvalidArgument(f"invalid CPU shares ({shares}): value must be a positive integer")
    return warnings


def adapt(hc: dict[str, Any]) -> dict[str, Any]:
    """Docker's defaults for a new container (``adaptContainerSettings``): a memory limit
    without ``MemorySwap`` allows as much swap again. Returns ``hc``."""
    if _int(hc, "Memory") > 0 and not _int(hc, "MemorySwap"):
        hc["MemorySwap"] = 2 * _int(hc, "Memory")
    return hc


def merge_update(current: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """Docker's ``update`` rules: the HostConfig ``current`` with ``change`` applied.

    A value of 0 (None for ``PidsLimit``, no name for ``RestartPolicy``) leaves the current
    one. ``--memory`` above the current ``MemorySwap`` needs a new ``--memory-swap`` too.

    Returns:
        A new HostConfig.
    Raises:
        Conflict: a combination Docker refuses (its message).
        InvalidArgument: the result breaks :func:`verify`'s rules.
    """
    out = dict(current)
    for key in ("NanoCpus", "CpuShares"):
        if _int(change, key):
            out[key] = _int(change, key)
    memory = _int(change, "Memory")
    if memory:
        if memory > _int(current, "MemorySwap") and not _int(change, "MemorySwap"):
            raise Conflict("Memory limit should be smaller than already set memoryswap limit, "
                           "update the memoryswap at the same time")
        out["Memory"] = memory
    if _int(change, "MemorySwap"):
        out["MemorySwap"] = _int(change, "MemorySwap")
    if change.get("PidsLimit") is not None:
        out["PidsLimit"] = int(change["PidsLimit"])
    policy = change.get("RestartPolicy") or {}
    if policy.get("Name"):
        if current.get("AutoRemove") and policy["Name"] != "no":
            raise Conflict("Restart policy cannot be updated because AutoRemove is enabled for "
                           "the container")
        out["RestartPolicy"] = {"Name": policy["Name"],
                                "MaximumRetryCount": int(policy.get("MaximumRetryCount") or 0)}
    verify(out, swap_supported=True)  # the result must make sense (swap was adapted already)
    return out


def runtime_update_args(merged: dict[str, Any], change: dict[str, Any]) -> list[str]:
    """``runc update`` flags that make a running container's cgroup what ``merged`` says, for
    the limits ``change`` touches (memory and swap go together: the kernel wants the one
    above the other at every moment, and the runtime orders the writes when it has both)."""
    args: list[str] = []
    if _int(change, "Memory") or _int(change, "MemorySwap"):
        if _int(merged, "Memory"):
            args += ["--memory", str(_int(merged, "Memory"))]
        if _int(merged, "MemorySwap"):
            args += ["--memory-swap", str(_int(merged, "MemorySwap"))]
    if _int(change, "NanoCpus"):
        args += ["--cpu-period", str(CPU_PERIOD),
                 "--cpu-quota", str(_int(merged, "NanoCpus") * CPU_PERIOD // 10**9)]
    if _int(change, "CpuShares"):
        args += ["--cpu-share", str(_int(merged, "CpuShares"))]
    if change.get("PidsLimit") is not None:
        limit = int(merged.get("PidsLimit") or 0)
        args += ["--pids-limit", str(limit if limit > 0 else -1)]
    return args
