"""Networks of a Docker Engine, with the embedded engine's model API (dockerd's documents)."""

from __future__ import annotations

import builtins

from ..models.resource import Collection, Model

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Mapping, Sequence


class Network(Model):
    """One network: ``attrs`` is dockerd's ``network inspect`` document."""

    @property
    def name(self) -> str:
        return self.attrs["Name"]

    def remove(self) -> None:
        self.collection.remove(self.id)

    def connect(self, container: str, aliases: Sequence[str] = ()) -> None:
        self.collection.connect(self.id, container, aliases)

    def disconnect(self, container: str, force: bool = False) -> None:
        self.collection.disconnect(self.id, container, force=force)


class NetworkCollection(Collection):
    """``engine.networks`` of a Docker context."""

    model = Network

    @property
    def api(self):
        return self.engine.api

    def list(self, filters: Mapping[str, builtins.list[str]] | None = None
             ) -> builtins.list[Network]:
        docs = self.api.networks(filters=dict(filters) if filters else None) or []
        return [Network(doc, self) for doc in docs]

    def get(self, name: str) -> Network:
        return Network(self.api.inspect_network(name), self)

    def create(self, name: str, *, subnet: str | None = None, internal: bool = False,
               labels: Mapping[str, str] | None = None, driver: str = "bridge") -> Network:
        ipam = None
        if subnet:
            from docker.types import IPAMConfig, IPAMPool

            ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=subnet)])
        created = self.api.create_network(name, driver=driver or "bridge", ipam=ipam,
                                          internal=internal, labels=dict(labels or {}) or None,
                                          check_duplicate=True)
        return self.get(created["Id"])

    def remove(self, name: str) -> None:
        self.api.remove_network(name)

    def prune(self, filters: Mapping[str, builtins.list[str]] | None = None
              ) -> dict[str, Any]:
        result = self.api.prune_networks(filters=dict(filters) if filters else None)
        return {"NetworksDeleted": result.get("NetworksDeleted") or []}

    def connect(self, network: str, container: str, aliases: Sequence[str] = ()) -> None:
        self.api.connect_container_to_network(container, network, aliases=list(aliases) or None)

    def disconnect(self, network: str, container: str, force: bool = False) -> None:
        self.api.disconnect_container_from_network(container, network, force=force)
