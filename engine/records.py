"""Dataclasses that cost little to define: :func:`record`.

``@dataclass`` writes a class's ``__init__``, ``__repr__``, ``__eq__``, ``__hash__`` and, when
frozen, ``__setattr__``/``__delattr__`` as Python source and compiles each: about 0.6 ms a class
on a 2-core machine.  A ``portside build`` in a new process defines some fifty classes before it
does any work, so the terminal user paid ~30 ms a command for compiling methods.

``record`` makes the class a dataclass all the same -- :func:`dataclasses.fields`,
:func:`dataclasses.replace`, :func:`dataclasses.asdict`, ``match`` class patterns and
``__match_args__`` behave as with ``@dataclass`` -- but asks :mod:`dataclasses` for the fields
only, and gives the class shared methods that read a per-class plan made once:

* ``__init__``: the fields in order, the ones not ``kw_only`` also by position, defaults and
  ``default_factory``, then ``__post_init__`` when the class has one;
* ``__eq__`` over the fields with ``compare=True`` (same class only), ``__repr__`` over those with
  ``repr=True``;
* ``frozen=True``: assignment and deletion raise :class:`dataclasses.FrozenInstanceError`, and
  instances hash by their compared fields; otherwise they are unhashable, as with ``@dataclass``.

Construction is a few microseconds slower than a generated ``__init__``; classes made by the
thousand (a layer's tar members, a build's log lines) keep ``@dataclass``.
"""

from __future__ import annotations

import dataclasses

__all__ = ["record"]

_MISSING = dataclasses.MISSING


class _Plan:
    __slots__ = ("fields", "positional", "names", "compare", "shown", "post_init")

    def __init__(self, cls: type) -> None:
        fields = [f for f in dataclasses.fields(cls) if f.init]
        self.fields = tuple((f.name, f.default, f.default_factory) for f in fields)
        self.positional = tuple(f.name for f in fields if not f.kw_only)
        self.names = frozenset(f.name for f in fields)
        self.compare = tuple(f.name for f in dataclasses.fields(cls) if f.compare)
        self.shown = tuple(f.name for f in dataclasses.fields(cls) if f.repr)
        self.post_init = getattr(cls, "__post_init__", None)


def _init(self, *args, **kwargs) -> None:
    cls = type(self)
    plan: _Plan = cls.__record_plan__
    if len(args) > len(plan.positional):
        raise TypeError(f"{cls.__name__}() takes {len(plan.positional)} positional arguments "
                        f"but {len(args)} were given")
    values = dict(zip(plan.positional, args))
    for name in kwargs:
        if name not in plan.names:
            raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {name!r}")
        if name in values:
            raise TypeError(f"{cls.__name__}() got multiple values for argument {name!r}")
    values.update(kwargs)
    put = object.__setattr__
    for name, default, factory in plan.fields:
        if name in values:
            put(self, name, values[name])
        elif default is not _MISSING:
            put(self, name, default)
        elif factory is not _MISSING:
            put(self, name, factory())
        else:
            raise TypeError(f"{cls.__name__}() missing required argument: {name!r}")
    if plan.post_init is not None:
        self.__post_init__()


def _key(self) -> tuple:
    return tuple(getattr(self, name) for name in type(self).__record_plan__.compare)


def _eq(self, other):
    if other.__class__ is self.__class__:
        return _key(self) == _key(other)
    return NotImplemented


def _hash(self) -> int:
    return hash(_key(self))


def _repr(self) -> str:
    shown = ", ".join(f"{name}={getattr(self, name)!r}"
                      for name in type(self).__record_plan__.shown)
    return f"{type(self).__qualname__}({shown})"


def _frozen_setattr(self, name, value):
    raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self, name):
    raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


def record(cls: type | None = None, /, *, frozen: bool = False, kw_only: bool = False):
    """``@record``, ``@record(frozen=True, kw_only=True)``: a dataclass made without code
    generation (see the module's documentation)."""

    def wrap(cls: type) -> type:
        cls = dataclasses.dataclass(cls, init=False, repr=False, eq=False, kw_only=kw_only)
        own = cls.__dict__
        cls.__record_plan__ = _Plan(cls)
        if "__init__" not in own:
            cls.__init__ = _init
        if "__repr__" not in own:
            cls.__repr__ = _repr
        if "__eq__" not in own:
            cls.__eq__ = _eq
        if frozen:
            cls.__setattr__ = _frozen_setattr
            cls.__delattr__ = _frozen_delattr
            if "__hash__" not in own:
                cls.__hash__ = _hash
        elif "__hash__" not in own:
            cls.__hash__ = None  # mutable and compared by value: unhashable, as with @dataclass
        return cls

    return wrap if cls is None else wrap(cls)
