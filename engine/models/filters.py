"""Docker's prune filters: ``until`` and ``label`` / ``label!``, one meaning for every prune.

``until=T`` keeps what was created at ``T`` or later (``T``: a unix time, an RFC 3339 time or a
duration back from now, see :func:`portside.engine.units.parse_timestamp`). ``label=k`` and
``label=k=v`` prune only what carries every such label; ``label!=…`` keeps what carries every
``label!`` one (Docker's ``MatchKVList`` both ways). ``container prune``, ``image prune``,
``network prune`` and ``system prune`` read them through :class:`PruneFilters`.
"""

from __future__ import annotations

from ..errors import InvalidArgument

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Mapping

__all__ = ["PruneFilters", "PRUNE_KEYS"]

#: The filters ``system prune`` takes (each prune may take more of its own).
PRUNE_KEYS = ("until", "label", "label!")


def _values(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def match_labels(wanted: list[str], labels: Mapping[str, str]) -> bool:
    """Docker's ``MatchKVList``: every ``k`` / ``k=v`` of ``wanted`` is among ``labels``."""
    for item in wanted:
        key, eq, value = item.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


class PruneFilters:
    """``until``, ``label`` and ``label!`` of a prune's filters (``{name: [values]}``).

    Args:
        filters: the filters (a value may be one string or a list).
        allowed: the names this prune accepts; another is refused (``invalid filter 'x'``).
    Raises:
        InvalidArgument: an unknown name or a bad ``until`` time.
    """

    def __init__(self, filters: Mapping[str, str | list[str]] | None,
                 allowed: tuple[str, ...] = PRUNE_KEYS) -> None:
        from ..units import parse_timestamp

        self.raw = {k: _values(v) for k, v in (filters or {}).items() if _values(v)}
        for key in self.raw:
            if key not in allowed:
                raise InvalidArgument(f"invalid filter '{key}'")
        until = self.raw.get("until") or []
        if len(until) > 1:
            raise InvalidArgument("more than one until filter specified")
        self.until = parse_timestamp(until[0]) if until else None
        self.labels = self.raw.get("label") or []
        self.not_labels = self.raw.get("label!") or []

    def __bool__(self) -> bool:
        return bool(self.raw)

    def without(self, *keys: str) -> dict[str, list[str]]:
        """The filters but ``keys`` (for a lower prune that takes only some)."""
        return {k: v for k, v in self.raw.items() if k not in keys}

    def prunes(self, created: float | None, labels: Mapping[str, str] | None) -> bool:
        """Whether an object created at ``created`` with ``labels`` may be pruned."""
        labels = labels or {}
        if self.until is not None and (created is None or created >= self.until):
            return False
        if self.labels and not match_labels(self.labels, labels):
            return False
        if self.not_labels and match_labels(self.not_labels, labels):
            return False
        return True
