"""The ``--gpus`` and ``--device`` grammars, parsed into typed requests.

Docker's ``--gpus`` value is one CSV record (so a field holding commas must be quoted, which is why
users write ``--gpus '"device=0,2"'``). Each field is either ``key=value`` or a bare count::

    all                         every GPU                      count=-1
    2                           any two GPUs                   count=2
    "device=0,2"                GPUs 0 and 2 (indices or UUIDs) device_ids=["0", "2"]
    device=GPU-3a1f...          one GPU by UUID
    count=1,driver=nvidia       a count and a driver
    "capabilities=compute,utility"  driver capabilities; Docker adds "gpu" to every set

Rules, as Docker applies them: a key may appear once (a bare count counts as ``count``); a count is an
integer or ``all``; ``count`` and ``device`` exclude each other; with neither, the count is 1; the
default capability set is ``[["gpu"]]``.

``--device`` takes either a CDI device name (``vendor.com/class=name``, e.g. ``nvidia.com/gpu=all``)
or a host device path with an optional container path and cgroup permissions
(``/dev/X[:/dev/Y][:rwm]``).
"""

from __future__ import annotations

import csv
import re

from portside.engine.errors import GPUError, InvalidArgument
from portside.engine.records import field, record

__all__ = ["GPURequest", "CDIDeviceName", "DeviceMapping", "parse_gpus", "parse_device",
           "is_cdi_name", "split_cdi_name"]

#: count value meaning "every GPU on the host".
ALL = -1


@record(frozen=True)
class GPURequest:
    """One ``--gpus`` request, in the shape of Docker's ``DeviceRequest``.

    ``count`` is -1 for ``all``, 0 for "none asked" (Docker then leaves the choice to the image's
    ``NVIDIA_VISIBLE_DEVICES``), N for any N GPUs; ``device_ids`` names GPUs by index or UUID and
    excludes a count; ``capabilities`` is a list of capability sets (OR of ANDs), ``driver`` a
    driver name or None for "any driver that can serve the capabilities".
    """

    count: int | None = 1
    device_ids: list[str] = field(default_factory=list)
    capabilities: list[list[str]] = field(default_factory=lambda: [["gpu"]])
    driver: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    @property
    def all(self) -> bool:
        """True when every GPU is asked for."""
        return self.count == ALL and not self.device_ids


@record(frozen=True)
class CDIDeviceName:
    """A fully qualified CDI device name: ``vendor.com/class=name``."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}={self.name}"


@record(frozen=True)
class DeviceMapping:
    """A host device node given to the container: ``--device /dev/X[:/dev/Y][:rwm]``."""

    host: str
    container: str
    perms: str = "rwm"


def _read_csv(value: str, what: str) -> list[str]:
    try:
        rows = list(csv.reader([value], strict=True))
    except csv.Error as exc:
        raise GPUError(f"invalid {what}: {value}: {exc}") from exc
    return rows[0] if rows else []


def _parse_count(text: str) -> int:
    if text == "all":
        return ALL
    try:
        return int(text)
    except ValueError:
        raise GPUError(f'invalid --gpus value: count must be an integer or "all": {text!r}') from None


def parse_gpus(value: str) -> GPURequest:
    """Parse a ``--gpus`` value with Docker's grammar.

    Args:
        value: the flag's value, e.g. ``all``, ``2``, ``"device=0,2"``, ``count=1,driver=nvidia``.

    Returns:
        the :class:`GPURequest`.

    Raises:
        GPUError: (an :class:`InvalidArgument`) for an empty value, a repeated or unknown key, a
            count that is not an integer or ``all``, or ``count`` together with ``device``.

    >>> parse_gpus('"device=0,2"').device_ids
    ['0', '2']
    """
    if not value or not value.strip():
        raise GPUError("invalid --gpus value: empty")
    fields = _read_csv(value, "--gpus value")
    count: int | None = None
    device_ids: list[str] | None = None
    capabilities: list[list[str]] | None = None
    driver: str | None = None
    options: dict[str, str] = {}
    seen: set[str] = set()
    for item in fields:
        key, sep, val = item.partition("=")
        key = key.strip()
        # A bare field is a count; Docker records it as the key "count" too, so "2,count=3" fails.
        name = key if sep else "count"
        if name in seen or (not sep and key in seen):
            raise GPUError(f"invalid --gpus value: gpu request key '{name}' can be specified only once")
        seen.add(name)
        if not sep:
            count = _parse_count(key)
            continue
        if key == "count":
            count = _parse_count(val)
        elif key == "device":
            device_ids = [d.strip() for d in val.split(",")]
            if any(not d for d in device_ids):
                raise GPUError(f"invalid --gpus value: empty device id in '{item}'")
        elif key == "capabilities":
            caps = [c.strip() for c in val.split(",") if c.strip()]
            # Docker always adds "gpu" so a capability list still selects a GPU driver.
            capabilities = [caps + (["gpu"] if "gpu" not in caps else [])]
        elif key == "driver":
            driver = val or None
        elif key == "options":
            for opt in _read_csv(val, "gpu options"):
                k, _, v = opt.partition("=")
                options[k] = v
        else:
            raise GPUError(f"invalid --gpus value: unexpected key '{key}' in '{item}'")
    if count is not None and count != 0 and device_ids is not None:
        raise GPUError("invalid --gpus value: count and device can't be used together")
    if count is None and device_ids is None:
        count = 1
    if count is not None and count < ALL:
        raise GPUError(f"invalid --gpus value: count must not be negative: {count}")
    return GPURequest(count=count if device_ids is None else None,
                      device_ids=device_ids or [],
                      capabilities=capabilities or [["gpu"]],
                      driver=driver, options=options)


# CDI names: vendor is a domain-like name, class and device name are identifier-like.
_VENDOR = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_CLASS = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9_.:-]*[A-Za-z0-9])?"
KIND_RE = re.compile(rf"^{_VENDOR}/{_CLASS}$")
NAME_RE = re.compile(rf"^{_NAME}$")
_QUALIFIED_RE = re.compile(rf"^({_VENDOR}/{_CLASS})=({_NAME})$")


def is_cdi_name(value: str) -> bool:
    """True when ``value`` is a fully qualified CDI device name (``vendor.com/class=name``)."""
    return bool(_QUALIFIED_RE.match(value))


def split_cdi_name(value: str) -> CDIDeviceName:
    """Split ``vendor.com/class=name`` into kind and name.

    Raises:
        InvalidArgument: when the value is not a qualified CDI device name.
    """
    m = _QUALIFIED_RE.match(value)
    if not m:
        raise InvalidArgument(f"invalid CDI device name: {value}")
    return CDIDeviceName(m.group(1), m.group(2))


def _valid_mode(mode: str) -> bool:
    return bool(mode) and len(set(mode)) == len(mode) and set(mode) <= set("rwm")


def parse_device(value: str) -> CDIDeviceName | DeviceMapping:
    """Parse a ``--device`` value.

    Args:
        value: ``vendor.com/class=name`` (a CDI device), or ``/dev/X``, ``/dev/X:/dev/Y``,
            ``/dev/X:rw``, ``/dev/X:/dev/Y:rwm``.

    Returns:
        a :class:`CDIDeviceName` or a :class:`DeviceMapping` (container path defaults to the host
        path, permissions to ``rwm``).

    Raises:
        InvalidArgument: a wrong number of fields, bad permissions or a relative container path.
    """
    if "=" in value and not value.startswith("/"):
        return split_cdi_name(value)
    parts = value.split(":")
    perms = "rwm"
    if len(parts) == 3:
        host, container, perms = parts
        if not _valid_mode(perms):
            raise InvalidArgument(f"invalid device mode: {perms}")
    elif len(parts) == 2:
        host, second = parts
        if _valid_mode(second):
            container, perms = host, second
        else:
            container = second
    elif len(parts) == 1:
        host = container = parts[0]
    else:
        raise InvalidArgument(f"invalid device specification: {value}")
    if not host:
        raise InvalidArgument(f"invalid device specification: {value}")
    container = container or host
    if not container.startswith("/"):
        raise InvalidArgument(f"invalid device specification: {value}: container path must be absolute")
    return DeviceMapping(host=host, container=container, perms=perms)
