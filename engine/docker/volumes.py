"""Volumes of a Docker Engine, with the embedded engine's model API (dockerd's documents)."""

from __future__ import annotations

from ..models.resource import Collection, Model

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any


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


def _filters(filters: dict[str, Any] | None) -> dict[str, list[str]] | None:
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
               driver_opts: dict[str, str] | None = None,
               labels: dict[str, str] | None = None) -> Volume:
        return Volume(self.api.create_volume(name, driver=driver or "local",
                                             driver_opts=driver_opts or None,
                                             labels=labels or None), self)

    def get(self, name: str) -> Volume:
        return Volume(self.api.inspect_volume(name), self)

    def list(self, filters: dict[str, Any] | None = None) -> list[Volume]:
        docs = (self.api.volumes(filters=_filters(filters)) or {}).get("Volumes") or []
        return [Volume(doc, self) for doc in sorted(docs, key=lambda d: d["Name"])]

    def remove(self, name: str, force: bool = False) -> None:
        self.api.remove_volume(name, force=force)

    def prune(self, all: bool = False, filters: dict[str, Any] | None = None) -> dict:
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

    def in_use(self) -> dict[str, list[str]]:
        """``{volume name: [container ids]}`` for volumes some container uses."""
        used: dict[str, list[str]] = {}
        for row in self.api.containers(all=True):
            for mount in row.get("Mounts") or []:
                if mount.get("Type") == "volume" and mount.get("Name"):
                    used.setdefault(mount["Name"], []).append(row["Id"])
        return used
