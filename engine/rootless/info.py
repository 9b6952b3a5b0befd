"""What ``portside info`` says about rootless mode (``engine.system.info()`` adds these fields;
the CLI's ``info`` prints them)."""

from __future__ import annotations

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from pathlib import Path


def fields(rootless_network: str | None = None, rootless_storage: str | None = None,
           scratch: Path | None = None) -> dict:
    """The ``info`` fields of rootless mode: ``Rootless`` (False for root), and rootless,
    ``SecurityOptions``, ``IDMappings`` (``UIDMap``/``GIDMap`` as ``[{"ContainerID", "HostID",
    "Size"}]`` and the ``Mapping`` kind), ``NamespaceHolder`` (its pid, 0 when none runs),
    ``StorageMode``, ``NetworkMode`` and ``Cgroups``. ``rootless_network``: the configured
    default network driver (None: slirp4netns); ``rootless_storage``: the ``rootless-storage`` key
    and ``scratch`` a folder of the store where ``auto`` tries the kernel's overlay
    (:func:`.storage.storage_mode`); ``Driver`` says ``fuse-overlayfs`` where that runs."""
    from . import active, has_cgroups, host_ids, mapping

    if not active():
        return {"Rootless": False}
    from . import userns

    doc = userns.status() or {}
    uid, gid = host_ids()

    from .storage import storage_mode

    driver, storage = storage_mode(rootless_storage, scratch)

    def ranges(table: list[list[int]]) -> list[dict]:
        return [{"ContainerID": a, "HostID": b, "Size": c} for a, b, c in table]

    return {
        "Rootless": True,
        "SecurityOptions": ["name=rootless"],
        "IDMappings": {"UIDMap": ranges(doc.get("uid_map") or [[0, uid, 1]]),
                       "GIDMap": ranges(doc.get("gid_map") or [[0, gid, 1]]),
                       "Mapping": mapping() or doc.get("mapping", "")},
        "NamespaceHolder": doc.get("pid", 0),
        "Driver": driver,
        "StorageMode": storage,
        "NetworkMode": _network_mode(rootless_network),
        "Cgroups": "delegated" if has_cgroups() else "none (no delegated cgroup v2)",
    }


def _network_mode(rootless_network: str | None) -> str:
    from ..network.usermode import DEFAULT_DRIVER

    driver = rootless_network or DEFAULT_DRIVER
    return (f"{driver} (default network, one per container); user networks in a per-user "
            f"network namespace; none, host")
