"""Values on the wire: what the model API passes, as JSON.

Plain data (None, bools, numbers, strings, lists, dicts with string keys) travel as themselves.
Everything else is a one-key object whose key starts with a NUL character, which no key of the
engine's documents does:

============================  =====================================================
``{"\\0bytes": "<base64>"}``   ``bytes``
``{"\\0tuple": [...]}``        a tuple (lists stay lists)
``{"\\0items": [[k, v]...]}``  a dict whose keys are not all strings
``{"\\0path": "/x"}``          a :class:`pathlib.Path`
``{"\\0record": {...}}``       a record or dataclass of ``portside.*`` (typed progress events):
                              its class and fields; rebuilt as that class on the other side
``{"\\0ref": {...}}``          an object that stays where it was made (a model, an iterator,
                              a process, a callable): its kind, a handle, and what the other
                              side needs to stand in for it (a model's ``attrs``)
``{"\\0fd": {"i": n, ...}}``   the ``n``-th descriptor carried by the message (a pipe end)
============================  =====================================================

:class:`Codec` does the walk; what becomes a reference and how a reference comes back to life is
the business of the two ends, through the ``ref`` and ``unref`` hooks.
"""

from __future__ import annotations

import base64
from pathlib import PurePath

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Callable

TAG = "\0"


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def record_fields(value: Any) -> list[str] | None:
    """The field names of a record or dataclass instance of ours, else None."""
    cls = type(value)
    if not cls.__module__.startswith("portside.") or isinstance(value, type):
        return None
    found = getattr(cls, "__record_fields__", None)
    if found is not None:
        return [f.name for f in found]
    if "__dataclass_fields__" in getattr(cls, "__dict__", {}):
        import dataclasses

        return [f.name for f in dataclasses.fields(value)]
    return None


def rebuild_record(doc: dict[str, Any], decode: Callable[[Any], Any]) -> Any:
    """The instance a ``\\0record`` document describes (only classes of ``portside.*``)."""
    import importlib

    module, _, name = doc["cls"].rpartition(".")
    if not module.startswith("portside."):
        raise ValueError(f"refusing to rebuild {doc['cls']}")
    cls = getattr(importlib.import_module(module), name)
    obj = cls.__new__(cls)
    for key, value in doc["f"].items():
        object.__setattr__(obj, key, decode(value))
    return obj


class Codec:
    """Turns values into wire form and back.

    Args:
        ref: ``ref(value) -> dict | None``: the reference document for a value that must stay
            on this side (None: not one of those).
        unref: ``unref(doc) -> value``: the stand-in for a reference received.
    """

    def __init__(self, ref: Callable[[Any], dict | None] | None = None,
                 unref: Callable[[dict], Any] | None = None) -> None:
        self.ref = ref
        self.unref = unref

    def encode(self, value: Any) -> Any:
        if _plain(value):
            return value
        if isinstance(value, list):
            return [self.encode(v) for v in value]
        if isinstance(value, dict):
            if all(isinstance(k, str) and not k.startswith(TAG) for k in value):
                return {k: self.encode(v) for k, v in value.items()}
            return {TAG + "items": [[self.encode(k), self.encode(v)] for k, v in value.items()]}
        if isinstance(value, tuple):
            return {TAG + "tuple": [self.encode(v) for v in value]}
        if isinstance(value, (bytes, bytearray, memoryview)):
            return {TAG + "bytes": base64.b64encode(bytes(value)).decode()}
        if isinstance(value, PurePath):
            return {TAG + "path": str(value)}
        if hasattr(type(value), "_value2member_map_"):  # an Enum member: its value
            return self.encode(value.value)
        names = record_fields(value)
        if names is not None:
            cls = type(value)
            return {TAG + "record": {"cls": f"{cls.__module__}.{cls.__qualname__}",
                                     "f": {n: self.encode(getattr(value, n)) for n in names}}}
        doc = self.ref(value) if self.ref is not None else None
        if doc is not None:
            return {TAG + "ref": doc}
        raise TypeError(f"cannot send a {type(value).__name__} to the other side")

    def decode(self, value: Any) -> Any:
        if _plain(value):
            return value
        if isinstance(value, list):
            return [self.decode(v) for v in value]
        if len(value) == 1:
            (key,) = value
            if key.startswith(TAG):
                doc = value[key]
                kind = key[1:]
                if kind == "bytes":
                    return base64.b64decode(doc)
                if kind == "tuple":
                    return tuple(self.decode(v) for v in doc)
                if kind == "items":
                    return {self.decode(k): self.decode(v) for k, v in doc}
                if kind == "path":
                    from pathlib import Path

                    return Path(doc)
                if kind == "record":
                    return rebuild_record(doc, self.decode)
                if kind in ("ref", "fd"):
                    if self.unref is None:
                        raise ValueError(f"no way to receive a {kind} here")
                    return self.unref({"kind": kind, **doc} if kind == "fd" else doc)
                raise ValueError(f"unknown value tag {kind!r}")
        return {k: self.decode(v) for k, v in value.items()}
