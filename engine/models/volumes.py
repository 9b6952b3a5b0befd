"""Volumes: the ``Volume`` model (Docker's ``volume inspect`` JSON) and its collection.

::

    vol = engine.volumes.create("data", labels={"project": "x"})
    vol.attrs["Mountpoint"]          # .../volumes/data/_data
    [v.name for v in engine.volumes.list(filters={"dangling": ["true"]})]
    engine.volumes.prune()           # unused anonymous volumes only; all=True: unused named too
    vol.remove()

The collection speaks to :class:`portside.engine.volumes.manager.VolumeManager`
(``engine.volume_manager``), which also prepares containers' mounts.
"""

from __future__ import annotations

import re

from ..errors import InvalidArgument
from .resource import Collection, Model

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    import builtins
    from typing import Any, Mapping


__all__ = ["Volume", "VolumeCollection", "volume_inspector"]

_LIST_FILTERS = ("dangling", "name", "label", "label!", "driver")
_PRUNE_FILTERS = ("label", "label!", "all")


class Volume(Model):
    """One volume. ``attrs``: ``CreatedAt, Driver, Labels, Mountpoint, Name, Options, Scope``."""

    id_attribute = "Name"

    @property
    def name(self) -> str:
        return self.attrs["Name"]

    @property
    def short_id(self) -> str:
        return self.name

    def remove(self, force: bool = False) -> None:
        """Remove this volume (see :meth:`VolumeCollection.remove`)."""
        self.collection.remove(self.name, force=force)


def _normalise(filters: Mapping[str, Any] | None, allowed: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in (filters or {}).items():
        if key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")
        values = value if isinstance(value, (list, tuple, set)) else [value]
        out[key] = [str(v).lower() if isinstance(v, bool) else str(v) for v in values]
    return out


def _truth(key: str, value: str) -> bool:
    if value.lower() in ("1", "true"):
        return True
    if value.lower() in ("0", "false"):
        return False
    raise InvalidArgument(f"invalid filter '{key}={value}'")


def _matches(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return pattern in text


def _label_matches(labels: dict[str, str], wanted: str) -> bool:
    key, eq, value = wanted.partition("=")
    return key in labels and (not eq or labels[key] == value)


class VolumeCollection(Collection):
    """``engine.volumes``: create, get, list, remove and prune volumes."""

    model = Volume

    @property
    def manager(self):
        return self.engine.volume_manager

    def _wrap(self, doc: dict) -> Volume:
        return Volume(doc, self)

    def create(self, name: str | None = None, driver: str = "local",
               driver_opts: Mapping[str, str] | None = None,
               labels: Mapping[str, str] | None = None) -> Volume:
        """Create a volume (an existing one of that name is returned, as Docker does).

        Args:
            name: the name; ``None`` makes up a 64-hex one.
            driver: ``"local"``.
            driver_opts: ``-o`` options of the local driver.
            labels: ``--label`` values.

        Raises:
            InvalidArgument: a bad name, driver or option.
        """
        return self._wrap(self.manager.create(name, driver=driver, labels=labels,
                                              options=driver_opts))

    def get(self, name: str) -> Volume:
        """The volume ``name``.

        Raises:
            NotFound: ``get NAME: no such volume``.
        """
        return self._wrap(self.manager.get(name))

    def list(self, filters: Mapping[str, Any] | None = None) -> list[Volume]:
        """Volumes, optionally filtered as ``volume ls --filter`` does.

        Args:
            filters: ``dangling`` (true: not used by any container), ``name`` (a regular
                expression searched in the name), ``label`` (``key`` or ``key=value``; all must
                match), ``label!`` (none may match), ``driver``. Values may be a string or a list.

        Raises:
            InvalidArgument: an unknown filter key.
        """
        wanted = _normalise(filters, _LIST_FILTERS)
        used = self.manager.usage() if "dangling" in wanted else {}
        result = []
        for doc in self.manager.list():
            if "dangling" in wanted and not any(
                    _truth("dangling", v) == (doc["Name"] not in used) for v in wanted["dangling"]):
                continue
            if "name" in wanted and not any(_matches(p, doc["Name"]) for p in wanted["name"]):
                continue
            if "driver" in wanted and not any(_matches(f"^{re.escape(p)}$", doc["Driver"])
                                              for p in wanted["driver"]):
                continue
            labels = doc["Labels"] or {}
            if not all(_label_matches(labels, w) for w in wanted.get("label", [])):
                continue
            if any(_label_matches(labels, w) for w in wanted.get("label!", [])):
                continue
            result.append(self._wrap(doc))
        return result

    def remove(self, name: str, force: bool = False) -> None:
        """Remove volume ``name`` and its data.

        Raises:
            NotFound: no such volume (unless ``force``).
            Conflict: ``remove NAME: volume is in use - [IDS]``.
        """
        self.manager.remove(name, force=force)

    def prune(self, all: bool = False, filters: Mapping[str, Any] | None = None) -> dict:
        """Remove unused volumes: anonymous ones, or all unused ones with ``all`` (Docker >= 23).

        Args:
            all: also unused named volumes (``-a``; the filter ``all=true`` means the same).
            filters: ``label`` / ``label!`` (``key`` or ``key=value``).

        Returns:
            ``{"VolumesDeleted": [names], "SpaceReclaimed": bytes}``.
        """
        wanted = _normalise(filters, _PRUNE_FILTERS)
        if any(_truth("all", v) for v in wanted.get("all", [])):
            all = True

        def keep(doc: dict) -> bool:
            labels = doc["Labels"] or {}
            if not all_match(labels, wanted.get("label", [])):
                return True
            return any(_label_matches(labels, w) for w in wanted.get("label!", []))

        names, reclaimed = self.manager.prune(all=all, keep=keep)
        return {"VolumesDeleted": names, "SpaceReclaimed": reclaimed}

    def in_use(self) -> dict[str, builtins.list[str]]:
        """``{volume name: [container ids]}`` for volumes some container uses."""
        return self.manager.usage()

    def size(self, name: str) -> int:
        """Bytes volume ``name``'s data takes.

        Raises:
            NotFound: no such volume.
        """
        self.manager.get(name)
        return self.manager.size(name)


def all_match(labels: dict[str, str], wanted: list[str]) -> bool:
    """Whether every ``key`` / ``key=value`` in ``wanted`` matches ``labels``."""
    return all(_label_matches(labels, w) for w in wanted)


def volume_inspector(engine: Any, name: str) -> dict:
    """For the top-level ``inspect``: volume ``name``'s document, or ``NotFound``."""
    return engine.volumes.get(name).attrs


# ------------------------------------------------------------------ system df / system check
def _df_row(engine: Any) -> dict:
    manager = engine.volume_manager
    used = manager.usage()
    total = active = reclaimable = 0
    docs = manager.list()
    for doc in docs:
        size = manager.size(doc["Name"])
        total += size
        if doc["Name"] in used:
            active += 1
        else:
            reclaimable += size
    return {"Type": "Local Volumes", "TotalCount": len(docs), "Active": active, "Size": total,
            "Reclaimable": reclaimable}


def _check(engine: Any, repair: bool) -> tuple[list[str], list[str]]:
    # a folder without a record is what a crash of create or rm leaves: garbage
    found = engine.volume_manager.check(repair=repair)
    garbage = [line for line in found if line.endswith(": no volume record")]
    return [line for line in found if line not in garbage], garbage


def _register() -> None:
    from .system import register_check, register_df

    register_df("volumes", _df_row)
    register_check("volumes", _check)


_register()
