"""A Slurm context's settings, from the ``--slurm`` text of ``portside context create``.

``partition=gpu,time=4:00:00,account=A,registry=HOST:PORT,root=DIR,conf=SLURM_CONF``: every key is
optional (Slurm's defaults apply: the default partition, the partition's time limit, the user's
default account, ``/etc/slurm/slurm.conf``). ``root`` is the portside state folder *on the nodes*
and may contain ``%n`` (the node's name) and ``%u`` (the user's), so each node keeps its own store
on its local disk (SQLite in WAL mode and overlayfs do not work on NFS); without it each node uses
portside's default folder for the user. ``registry`` names a registry the nodes can reach: images
go through it instead of being streamed to each node.
"""

from __future__ import annotations

import re

from ..errors import InvalidArgument
from ..records import record

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any

#: Slurm's --time forms: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS, or a word.
_TIME = re.compile(r"(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+|\d+-\d+:\d{1,2}|"
                   r"\d+-\d+:\d{1,2}:\d{1,2}|infinite|unlimited|UNLIMITED|INFINITE)")
_NAME = re.compile(r"[A-Za-z0-9_.@+-]+")
_REGISTRY = re.compile(r"[A-Za-z0-9.-]+(:\d{1,5})?")
KEYS = ("partition", "time", "account", "registry", "root", "conf")


@record(frozen=True)
class SlurmOptions:
    """What a Slurm context says; ``None`` leaves a choice to Slurm (or to portside's default)."""

    partition: str | None = None
    time: str | None = None
    account: str | None = None
    registry: str | None = None
    root: str | None = None
    conf: str | None = None

    def to_text(self) -> str:
        """The ``key=value,…`` form that :func:`parse_options` reads back."""
        return ",".join(f"{k}={getattr(self, k)}" for k in KEYS if getattr(self, k) is not None)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in KEYS if getattr(self, k) is not None}


def parse_options(text: str) -> SlurmOptions:
    """Read ``partition=gpu,time=4:00:00,…``.

    Raises:
        InvalidArgument: an unknown key, a key given twice, an empty or malformed value
            (``--slurm: time must be Slurm's time format (4:00:00, 1-12), not 'soon'``).
    """
    values: dict[str, str] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, eq, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not eq:
            raise InvalidArgument(f"--slurm: expected key=value, got {item!r}")
        if key not in KEYS:
            raise InvalidArgument(f"--slurm: unknown key {key!r} (known: {', '.join(KEYS)})")
        if key in values:
            raise InvalidArgument(f"--slurm: {key} given twice")
        if not value:
            raise InvalidArgument(f"--slurm: {key} needs a value")
        if key == "time" and not _TIME.fullmatch(value):
            raise InvalidArgument(f"--slurm: time must be Slurm's time format (4:00:00, 1-12), "
                                  f"not {value!r}")
        if key in ("partition", "account") and not _NAME.fullmatch(value):
            raise InvalidArgument(f"--slurm: {key} {value!r} is not a Slurm name")
        if key == "registry" and not _REGISTRY.fullmatch(value):
            raise InvalidArgument(f"--slurm: registry must be HOST[:PORT], not {value!r}")
        if key in ("root", "conf") and not value.startswith("/"):
            raise InvalidArgument(f"--slurm: {key} must be an absolute path, not {value!r}")
        values[key] = value
    return SlurmOptions(**values)
