"""Networks: Docker's ``network`` objects over :class:`~portside.engine.network.manager.NetworkManager`.

``host`` and ``none`` are listed like Docker lists them, as pseudo-networks with no bridge.
"""

from __future__ import annotations

from ..errors import Conflict, InvalidArgument
from .resource import Collection, Model

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    import builtins
    from typing import Mapping

PSEUDO = {
    "host": {"Name": "host", "Id": "host", "Driver": "host", "Scope": "local", "Internal": False,
             "IPAM": {"Driver": "default", "Config": []}, "Containers": {}, "Labels": {},
             "Options": {}, "Created": ""},
    "none": {"Name": "none", "Id": "none", "Driver": "null", "Scope": "local", "Internal": False,
             "IPAM": {"Driver": "default", "Config": []}, "Containers": {}, "Labels": {},
             "Options": {}, "Created": ""},
}


class Network(Model):
    @property
    def name(self) -> str:
        return self.attrs["Name"]

    def remove(self) -> None:
        self.collection.remove(self.name)

    def connect(self, container: str, aliases=()) -> None:
        self.collection.connect(self.name, container, aliases)

    def disconnect(self, container: str, force: bool = False) -> None:
        self.collection.disconnect(self.name, container)


class NetworkCollection(Collection):
    model = Network

    @property
    def manager(self):
        return self.engine.network_manager

    def list(self, filters: Mapping[str, list[str]] | None = None) -> list[Network]:
        self.manager.ensure_default()
        docs = self.manager.list() + [dict(PSEUDO["host"]), dict(PSEUDO["none"])]
        out = []
        for doc in docs:
            if filters:
                if "name" in filters and not any(f in doc["Name"] for f in filters["name"]):
                    continue
                if "id" in filters and not any(doc["Id"].startswith(f) for f in filters["id"]):
                    continue
                if "driver" in filters and doc["Driver"] not in filters["driver"]:
                    continue
                if "type" in filters:
                    kind = "builtin" if doc["Name"] in ("bridge", "host", "none") else "custom"
                    if kind not in filters["type"]:
                        continue
                if "label" in filters:
                    labels = doc.get("Labels") or {}
                    if not all(_label_ok(labels, item) for item in filters["label"]):
                        continue
            out.append(Network(doc, self))
        return out

    def get(self, name: str) -> Network:
        if name in PSEUDO:
            return Network(dict(PSEUDO[name]), self)
        if name == "bridge":
            self.manager.ensure_default()
        return Network(self.manager.inspect(name), self)

    def create(self, name: str, *, subnet: str | None = None, internal: bool = False,
               labels: Mapping[str, str] | None = None, driver: str = "bridge") -> Network:
        if driver != "bridge":
            raise InvalidArgument(f"network driver not supported: {driver} (only bridge)")
        if name in PSEUDO or name == "bridge":
            raise Conflict(f"network with name {name} already exists")
        return Network(self.manager.create(name, subnet=subnet, internal=internal,
                                           labels=labels or {}), self)

    def remove(self, name: str) -> None:
        if name in PSEUDO or name == "bridge":
            raise Conflict(f"{name} is a pre-defined network and cannot be removed")
        self.manager.remove(name)

    def prune(self, filters: Mapping[str, builtins.list[str]] | None = None) -> dict:
        """Remove the user's networks no container uses; ``filters``: Docker's ``until``,
        ``label`` and ``label!`` (see :class:`~portside.engine.models.filters.PruneFilters`).

        Returns:
            ``{"NetworksDeleted": [names]}``.
        """
        from .filters import PruneFilters

        wanted = PruneFilters(filters)

        def keep(doc: dict) -> bool:
            from ..runtime.logs import parse_time

            try:
                created = parse_time(doc.get("Created") or "")
            except ValueError:
                created = None
            return not wanted.prunes(created, doc.get("Labels"))

        return {"NetworksDeleted": self.manager.prune(keep=keep if wanted else None)}

    def connect(self, network: str, container: str, aliases=()) -> None:
        ctr = self.engine.containers.get(container)
        pid = (ctr.attrs.get("State") or {}).get("Pid") or 0
        if not pid:
            raise Conflict(f"container {ctr.name} is not running")
        self.manager.connect(network, ctr.id, f"/proc/{pid}/ns/net", ctr.name, aliases)

    def disconnect(self, network: str, container: str) -> None:
        ctr = self.engine.containers.get(container)
        self.manager.disconnect(network, ctr.id)


def _label_ok(labels: dict, item: str) -> bool:
    key, eq, value = item.partition("=")
    return key in labels and (not eq or labels[key] == value)


def existing_bridge_subnet(name: str) -> str | None:
    """The IPv4 subnet already on a bridge of that name (another root made it), or None."""
    from ..network.manager import _off_event_loop

    return _off_event_loop(_existing_bridge_subnet)(name)


def _existing_bridge_subnet(name: str) -> str | None:
    """The IPv4 subnet already on a bridge of that name (another root made it), or None."""
    import ipaddress

    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=name)
        if not index:
            return None
        for addr in ipr.get_addr(index=index[0], family=2):
            ip = addr.get_attr("IFA_ADDRESS")
            if ip:
                return str(ipaddress.ip_interface(f"{ip}/{addr['prefixlen']}").network)
    return None


def _network_check(engine, repair: bool) -> tuple[list[str], list[str]]:
    """Sandboxes (netns, veth, leases, nft rules) of containers that no longer run: garbage."""
    from ..network import manager  # noqa: F401 - registers the network tables

    from ..runtime.interrupted import pending

    alive = {c.id for c in engine.containers.list(all=False)}
    # a container being started right now has its sandbox before its state says running
    # (listing settled the starts whose process died)
    lc = engine.containers.lifecycle
    alive |= {r.id for r in lc.store.list() if pending(lc.paths(r))}
    rows = engine.db.query("SELECT container_id FROM net_sandboxes")
    stale = [r["container_id"] for r in rows if r["container_id"] not in alive]
    if stale and repair:
        engine.network_manager.cleanup_stale(alive)
    return [], [f"stale network sandbox of container {c[:12]}" for c in stale]


def _register() -> None:
    from .system import register_check

    register_check("networks", _network_check)


_register()
