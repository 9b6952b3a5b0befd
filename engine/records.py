"""Dataclasses that cost little to define and nothing to import: :func:`record`.

``@dataclass`` writes a class's ``__init__``, ``__repr__``, ``__eq__``, ``__hash__`` and, when
frozen, ``__setattr__``/``__delattr__`` as Python source and compiles each (about 0.6 ms a class
on a 2-core machine), and importing :mod:`dataclasses` pulls in :mod:`inspect`, :mod:`ast`,
:mod:`dis` and :mod:`tokenize` (another ~8 ms). Every ``portside`` command defines dozens of
these classes before it does any work, so a terminal user paid for that on each command.

A ``@record`` class reads its fields from its annotations (bases first, as dataclasses do) and
gets shared methods that work from a per-class plan:

* ``__init__``: the fields in order, the ones not ``kw_only`` also by position, defaults and
  ``default_factory``, then ``__post_init__`` when the class has one;
* ``__eq__`` over the fields with ``compare=True`` (same class only), ``__repr__`` over those with
  ``repr=True``;
* ``frozen=True``: assignment and deletion raise ``dataclasses.FrozenInstanceError``, and
  instances hash by their compared fields; otherwise they are unhashable, as with ``@dataclass``;
* ``__match_args__`` for ``match`` class patterns.

It is still a dataclass to the standard library: the first time something asks for
``__dataclass_fields__`` (``dataclasses.fields``, ``replace``, ``asdict``, ``is_dataclass``), the
class is handed to ``dataclasses.dataclass`` with ``init``, ``repr`` and ``eq`` off, which adds
the field objects and touches none of the methods above. Code of ours uses :func:`fields`,
:func:`replace` and :func:`asdict` from here, which need no :mod:`dataclasses` at all.

Construction is a microsecond slower than a generated ``__init__``, which matters nowhere here.
"""

from __future__ import annotations

__all__ = ["record", "field", "fields", "replace", "asdict", "FieldInfo"]

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    # Type checkers read @record as a dataclass maker (PEP 681): fields, __init__ and all.
    from typing import Any, Callable, TypeVar, dataclass_transform, overload

    _T = TypeVar("_T")
else:
    def dataclass_transform(**_kwargs):
        return lambda fn: fn

    def overload(fn):
        return fn


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()


class FieldInfo:
    """One field of a record: what ``field(...)`` said, with its name and annotation."""

    __slots__ = ("name", "type", "default", "default_factory", "compare", "repr", "kw_only")

    def __init__(self, default=MISSING, default_factory=MISSING, compare=True, repr=True,
                 kw_only=None) -> None:
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name = ""
        self.type = None
        self.default = default
        self.default_factory = default_factory
        self.compare = compare
        self.repr = repr
        self.kw_only = kw_only

    def _named(self, name: str, annotation, kw_only: bool) -> "FieldInfo":
        f = FieldInfo(self.default, self.default_factory, self.compare, self.repr,
                      kw_only if self.kw_only is None else self.kw_only)
        f.name, f.type = name, annotation
        return f

    def __repr__(self) -> str:
        return f"FieldInfo(name={self.name!r}, default={self.default!r})"


def field(*, default: Any = MISSING, default_factory: Callable[[], Any] | Any = MISSING,
          compare: bool = True, repr: bool = True, kw_only: bool | None = None) -> Any:
    """``dataclasses.field`` for records (the options records support)."""
    return FieldInfo(default, default_factory, compare, repr, kw_only)


class _Plan:
    __slots__ = ("fields", "positional", "names", "compare", "shown", "post_init", "frozen",
                 "kw_only")

    def __init__(self, cls: type, fields_: tuple[FieldInfo, ...], frozen: bool,
                 kw_only: bool) -> None:
        self.fields = tuple((f.name, f.default, f.default_factory) for f in fields_)
        self.positional = tuple(f.name for f in fields_ if not f.kw_only)
        self.names = frozenset(f.name for f in fields_)
        self.compare = tuple(f.name for f in fields_ if f.compare)
        self.shown = tuple(f.name for f in fields_ if f.repr)
        self.post_init = getattr(cls, "__post_init__", None)
        self.frozen = frozen
        self.kw_only = kw_only


def _is_classvar(annotation) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar"))


def _init(self, *args, **kwargs) -> None:
    cls = type(self)
    plan: _Plan = cls.__dict__["__record_plan__"]
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
        elif default is not MISSING:
            put(self, name, default)
        elif factory is not MISSING:
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


def _frozen_error(message: str) -> Exception:
    from dataclasses import FrozenInstanceError  # only on the error path

    return FrozenInstanceError(message)


def _frozen_setattr(self, name, value):
    raise _frozen_error(f"cannot assign to field {name!r}")


def _frozen_delattr(self, name):
    raise _frozen_error(f"cannot delete field {name!r}")


class _DataclassFields:
    """``__dataclass_fields__`` until asked: then the class is made a dataclass for real."""

    def __get__(self, obj, owner):
        for klass in owner.__mro__:
            if "__record_fields__" in klass.__dict__:
                _materialize(klass)
                return klass.__dict__["__dataclass_fields__"]
        raise AttributeError("__dataclass_fields__")


def _materialize(cls: type) -> None:
    if not isinstance(cls.__dict__.get("__dataclass_fields__"), _DataclassFields):
        return
    import dataclasses

    plan: _Plan = getattr(cls, "__record_plan__")
    own = cls.__dict__["__record_own__"]
    type.__delattr__(cls, "__dataclass_fields__")
    saved = {}
    for f in own:
        saved[f.name] = cls.__dict__.get(f.name, MISSING)
        kwargs = {"compare": f.compare, "repr": f.repr, "kw_only": f.kw_only}
        if f.default is not MISSING:
            kwargs["default"] = f.default
        if f.default_factory is not MISSING:
            kwargs["default_factory"] = f.default_factory
        type.__setattr__(cls, f.name, dataclasses.field(**kwargs))
    try:
        dataclasses.dataclass(cls, init=False, repr=False, eq=False, match_args=False,
                              kw_only=plan.kw_only)
    finally:
        for name, value in saved.items():  # dataclasses leaves the default (or nothing)
            if value is MISSING:
                if name in cls.__dict__:
                    type.__delattr__(cls, name)
            else:
                type.__setattr__(cls, name, value)


@overload
def record(cls: type[_T], /) -> type[_T]: ...


@overload
def record(cls: None = None, /, *, frozen: bool = False, kw_only: bool = False
           ) -> Callable[[type[_T]], type[_T]]: ...


@dataclass_transform(field_specifiers=(field, FieldInfo))
def record(cls: Any = None, /, *, frozen: bool = False, kw_only: bool = False) -> Any:
    """``@record``, ``@record(frozen=True, kw_only=True)``: a dataclass made without code
    generation (see the module's documentation)."""

    def wrap(cls: Any) -> Any:
        collected: dict[str, FieldInfo] = {}
        for base in reversed(cls.__mro__[1:]):
            for f in base.__dict__.get("__record_fields__", ()):
                collected[f.name] = f
        own = []
        annotations = cls.__dict__.get("__annotations__")
        if annotations is None and "__annotate__" in cls.__dict__:  # Python 3.14's lazy form
            annotations = cls.__annotations__
        for name, annotation in (annotations or {}).items():
            if _is_classvar(annotation):
                continue
            value = cls.__dict__.get(name, MISSING)
            if type(value).__module__ == "dataclasses" and type(value).__name__ == "Field":
                value = _from_dataclass_field(value)  # dataclasses.field() works too
            spec = value if isinstance(value, FieldInfo) else FieldInfo(default=value)
            if (spec.default is not MISSING and not isinstance(spec.default, type)
                    and type(spec.default).__hash__ is None):
                raise ValueError(f"mutable default {type(spec.default)} for field {name} is not "
                                 "allowed: use default_factory")
            f = spec._named(name, annotation, kw_only)
            own.append(f)
            collected[name] = f
            if isinstance(value, FieldInfo):  # the class attribute becomes the default
                if f.default is MISSING:
                    delattr(cls, name)
                else:
                    setattr(cls, name, f.default)
        all_fields = tuple(collected.values())
        cls.__record_fields__ = all_fields
        cls.__record_own__ = tuple(own)
        cls.__record_plan__ = _Plan(cls, all_fields, frozen, kw_only)
        cls.__dataclass_fields__ = _DataclassFields()
        d = cls.__dict__
        if "__match_args__" not in d:
            setattr(cls, "__match_args__", tuple(f.name for f in all_fields if not f.kw_only))
        if "__init__" not in d:
            cls.__init__ = _init
        if "__repr__" not in d:
            cls.__repr__ = _repr
        if "__eq__" not in d:
            cls.__eq__ = _eq
        # a class body that defines __eq__ gets __hash__ = None from Python: not an explicit hash
        explicit_hash = "__hash__" in d and not (d["__hash__"] is None and "__eq__" in d)
        if frozen:
            cls.__setattr__ = _frozen_setattr
            cls.__delattr__ = _frozen_delattr
            if not explicit_hash:
                cls.__hash__ = _hash
        elif "__hash__" not in d:
            cls.__hash__ = None  # mutable and compared by value: unhashable, as with @dataclass
        return cls

    return wrap if cls is None else wrap(cls)


def _from_dataclass_field(f) -> FieldInfo:
    import dataclasses

    def given(v):
        return MISSING if v is dataclasses.MISSING else v

    return FieldInfo(given(f.default), given(f.default_factory), f.compare, f.repr,
                     None if f.kw_only is dataclasses.MISSING else f.kw_only)


# ------------------------------------------------------------------------------ helpers

def _record_fields(obj) -> tuple[FieldInfo, ...]:
    klass = obj if isinstance(obj, type) else type(obj)
    found = getattr(klass, "__record_fields__", None)
    if found is None:
        raise TypeError("must be called with a record type or instance")
    return found


def fields(obj) -> tuple[FieldInfo, ...]:
    """The fields of a record class or instance, in order (``dataclasses.fields``)."""
    return _record_fields(obj)


def replace(obj, /, **changes):
    """A copy of a record with some fields changed (``dataclasses.replace``)."""
    values = {f.name: getattr(obj, f.name) for f in _record_fields(obj)}
    values.update(changes)
    return type(obj)(**values)


def asdict(obj) -> dict:
    """A record as a dict, records inside it too (``dataclasses.asdict``)."""
    return _asdict(obj)


def _asdict(value):
    if hasattr(type(value), "__record_fields__") and not isinstance(value, type):
        return {f.name: _asdict(getattr(value, f.name)) for f in type(value).__record_fields__}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*[_asdict(v) for v in value])
    if isinstance(value, (list, tuple)):
        return type(value)(_asdict(v) for v in value)
    if isinstance(value, dict):
        return type(value)((_asdict(k), _asdict(v)) for k, v in value.items())
    return value
