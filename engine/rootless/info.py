"""What ``portside info`` says about rootless mode (registered with :mod:`..models.system`)."""

from __future__ import annotations

from portside.engine.models.system import register_info


def _info(engine) -> dict:
    from . import active, has_cgroups, host_ids, mapping

    if not active():
        return {"Rootless": False}
    from . import userns

    doc = userns.status() or {}
    uid, gid = host_ids()

    def ranges(table: list[list[int]]) -> list[dict]:
        return [{"ContainerID": a, "HostID": b, "Size": c} for a, b, c in table]

    return {
        "Rootless": True,
        "SecurityOptions": ["name=rootless"],
        "IDMappings": {"UIDMap": ranges(doc.get("uid_map") or [[0, uid, 1]]),
                       "GIDMap": ranges(doc.get("gid_map") or [[0, gid, 1]]),
                       "Mapping": mapping() or doc.get("mapping", "")},
        "NamespaceHolder": doc.get("pid", 0),
        "StorageMode": "overlay, userxattr (in the user namespace)",
        "NetworkMode": _network_mode(engine),
        "Cgroups": "delegated" if has_cgroups() else "none (no delegated cgroup v2)",
    }


def _network_mode(engine) -> str:
    from ..network.usermode import DEFAULT_DRIVER

    driver = getattr(engine.config, "rootless_network", None) or DEFAULT_DRIVER
    return (f"{driver} (default network, one per container); user networks in a per-user "
            f"network namespace; none, host")


def describe(data: dict) -> list[str]:
    """The lines ``info`` prints for the fields above."""
    if not data.get("Rootless"):
        return [" Rootless: false"]
    maps = data.get("IDMappings") or {}

    def show(rows: list[dict]) -> str:
        return ", ".join(f"{r['ContainerID']}-{r['ContainerID'] + r['Size'] - 1}->{r['HostID']}"
                         if r["Size"] > 1 else f"{r['ContainerID']}->{r['HostID']}"
                         for r in rows)

    return [" Rootless: true",
            f" ID Mapping: {maps.get('Mapping', '')} (uid {show(maps.get('UIDMap') or [])};"
            f" gid {show(maps.get('GIDMap') or [])})",
            f" Storage Mode: {data.get('StorageMode', '')}",
            f" Network Mode: {data.get('NetworkMode', '')}",
            f" Cgroups: {data.get('Cgroups', '')}"]


register_info("rootless", _info)
