"""Volumes of a Docker Engine, answering the model API (dockerd's documents)."""

from __future__ import annotations

import builtins

from ..errors import NotFound
from ..models.resource import Collection, Model

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Mapping


class Volume(Model):
    """One volume: ``attrs`` is dockerd's ``volume inspect`` document."""

    id_attribute = "Name"

    @property
    def name(self) -> str:
        return self.attrs["Name"]

    @property
    def short_id(self) -> str:
        return self.name

    def remove(self, force: bool = False) -> None:
        self.collection.remove(self.name, force=force)


def _filters(filters: Mapping[str, Any] | None) -> dict[str, list[str]] | None:
    if not filters:
        return None
    out: dict[str, list[str]] = {}
    for key, value in filters.items():
        values = value if isinstance(value, (list, tuple, set)) else [value]
        out[key] = [str(v).lower() if isinstance(v, bool) else str(v) for v in values]
    return out


class VolumeCollection(Collection):
    """``engine.volumes`` of a Docker context."""

    model = Volume

    @property
    def api(self):
        return self.engine.api

    def create(self, name: str | None = None, driver: str = "local",
               driver_opts: Mapping[str, str] | None = None,
               labels: Mapping[str, str] | None = None) -> Volume:
        return Volume(self.api.create_volume(name, driver=driver or "local",
                                             driver_opts=dict(driver_opts or {}) or None,
                                             labels=dict(labels or {}) or None), self)

    def get(self, name: str) -> Volume:
        return Volume(self.api.inspect_volume(name), self)

    def list(self, filters: Mapping[str, Any] | None = None) -> builtins.list[Volume]:
        docs = (self.api.volumes(filters=_filters(filters)) or {}).get("Volumes") or []
        return [Volume(doc, self) for doc in sorted(docs, key=lambda d: d["Name"])]

    def remove(self, name: str, force: bool = False) -> None:
        self.api.remove_volume(name, force=force)

    def prune(self, all: bool = False, filters: Mapping[str, Any] | None = None
              ) -> dict[str, Any]:
        """Unused anonymous volumes (``all``: unused named ones too, where dockerd knows the
        ``all`` filter, Docker >= 23; older daemons prune every unused volume anyway)."""
        wanted = _filters(filters) or {}
        if all and self._api_at_least("1.42"):
            wanted["all"] = ["true"]
        result = self.api.prune_volumes(filters=wanted or None)
        return {"VolumesDeleted": result.get("VolumesDeleted") or [],
                "SpaceReclaimed": result.get("SpaceReclaimed") or 0}

    def _api_at_least(self, version: str) -> bool:
        from docker.utils import version_gte

        return version_gte(self.engine.client.api_version, version)

    def in_use(self) -> dict[str, builtins.list[str]]:
        """``{volume name: [container ids]}`` for volumes some container uses."""
        used: dict[str, builtins.list[str]] = {}
        for row in self.api.containers(all=True):
            for mount in row.get("Mounts") or []:
                if mount.get("Type") == "volume" and mount.get("Name"):
                    used.setdefault(mount["Name"], []).append(row["Id"])
        return used

    def size(self, name: str) -> int:
        """Bytes its data takes on dockerd's host (``system df``'s ``UsageData``; -1 when
        dockerd has not measured it). Raises NotFound."""
        for doc in (self.api.df() or {}).get("Volumes") or []:
            if doc.get("Name") == name:
                return int((doc.get("UsageData") or {}).get("Size", -1))
        self.get(name)  # NotFound when there is no such volume
        raise NotFound(f"no size known for volume {name}")
