"""``record``: a dataclass without generated code behaves as ``@dataclass`` does where we use it."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from portside.engine.builder.instructions import Copy, From
from portside.engine.records import asdict, field, fields, record, replace

pytestmark = pytest.mark.unit


@record(frozen=True)
class Point:
    x: int
    y: int = 0
    tags: tuple = ()


@record(frozen=True, kw_only=True)
class Base:
    line: int = 0
    note: str = field(default="", compare=False)


@record(frozen=True, kw_only=True)
class Child(Base):
    name: str
    items: list = field(default_factory=list)


@record
class Mutable:
    a: int
    b: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.b.append(self.a)


def test_constructs_by_position_and_keyword_with_defaults():
    assert (Point(1).x, Point(1).y, Point(1, 2).y, Point(x=3, y=4).y) == (1, 0, 2, 4)
    child = Child(name="n", line=3)
    assert (child.name, child.line, child.note, child.items) == ("n", 3, "", [])
    assert Child(name="a").items is not Child(name="b").items  # a new list each time


@pytest.mark.parametrize("make, message", [
    (lambda: Point(), "missing required argument: 'x'"),
    (lambda: Point(1, 2, (), 4), "takes 3 positional arguments but 4 were given"),
    (lambda: Point(1, x=2), "multiple values for argument 'x'"),
    (lambda: Point(1, z=2), "unexpected keyword argument 'z'"),
    (lambda: Child("n"), "takes 0 positional arguments"),
])
def test_bad_arguments_are_type_errors(make, message):
    with pytest.raises(TypeError, match=message):
        make()


def test_frozen_refuses_assignment_and_hashes_by_value():
    p = Point(1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        del p.y
    assert p == Point(1, 2) and p != Point(2, 1) and hash(p) == hash(Point(1, 2))
    assert len({p, Point(1, 2), Point(1, 3)}) == 2
    assert Point(1) != (1, 0, ())  # another type is never equal


def test_compare_false_fields_do_not_count():
    assert Base(line=1, note="a") == Base(line=1, note="b")
    assert hash(Base(line=1, note="a")) == hash(Base(line=1, note="b"))
    assert Base(line=1) != Child(name="x", line=1)


def test_mutable_records_are_unhashable_and_run_post_init():
    m = Mutable(4)
    assert m.b == [4]
    m.a = 5
    assert m.a == 5
    with pytest.raises(TypeError):
        hash(m)


def test_repr_fields_replace_asdict_match_copy_pickle():
    p = Point(1, 2, ("t",))
    assert repr(p) == "Point(x=1, y=2, tags=('t',))"
    assert dataclasses.is_dataclass(p)
    assert [f.name for f in dataclasses.fields(Child)] == ["line", "note", "name", "items"]
    assert dataclasses.replace(p, y=9) == Point(1, 9, ("t",))
    assert dataclasses.asdict(Child(name="n")) == {"line": 0, "note": "", "name": "n", "items": []}
    assert Point.__match_args__ == ("x", "y", "tags")
    match p:
        case Point(1, y):
            assert y == 2
        case _:
            pytest.fail("positional class pattern did not match")
    assert copy.copy(p) == p and copy.deepcopy(Child(name="n")) == Child(name="n")
    assert pickle.loads(pickle.dumps(Child(name="n", items=[1]))) == Child(name="n", items=[1])


def test_the_helpers_need_no_dataclasses_module():
    p = Point(1, 2)
    assert [f.name for f in fields(Point)] == ["x", "y", "tags"] == [f.name for f in fields(p)]
    assert replace(p, tags=("a",)) == Point(1, 2, ("a",))
    assert asdict([Child(name="n", items=[Point(1)])]) == [
        {"line": 0, "note": "", "name": "n", "items": [{"x": 1, "y": 0, "tags": ()}]}]
    with pytest.raises(TypeError):
        replace(p, z=1)


def test_a_record_imports_no_dataclasses_until_asked():
    import subprocess
    import sys

    code = "\n".join([
        "import sys",
        "from portside.engine.records import record, field",
        "@record(frozen=True)",
        "class A:",
        "    'a'",
        "    x: int = field(default=1)",
        "assert A().x == 1 and A(2) == A(x=2)",
        "assert 'dataclasses' not in sys.modules and 'inspect' not in sys.modules",
        "import dataclasses",
        "assert dataclasses.is_dataclass(A)",
        "assert [f.default for f in dataclasses.fields(A)] == [1] and A.x == 1",
    ])
    subprocess.run([sys.executable, "-c", code], check=True)


def test_mutable_defaults_are_refused_as_by_dataclasses():
    with pytest.raises(ValueError, match="mutable default"):
        @record
        class Bad:
            items: list = []  # noqa: RUF012


def test_dataclasses_field_is_understood():
    import dataclasses

    @record
    class Old:
        items: list = dataclasses.field(default_factory=list)
        flag: bool = dataclasses.field(default=False, compare=False)

    assert Old().items == [] and Old(flag=True) == Old(flag=False)


def test_the_instruction_classes_keep_their_dataclass_behaviour():
    copy_ = Copy(sources=("a",), dest="/b", start_line=3, original="COPY a /b")
    assert copy_ == Copy(sources=("a",), dest="/b", start_line=3, original="other text")
    assert dataclasses.replace(copy_, dest="/c").dest == "/c"
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy_.dest = "/x"
    match From(base="busybox", stage_name="s"):
        case From(base=base, stage_name=name):
            assert (base, name) == ("busybox", "s")


def test_a_frozen_record_with_its_own_eq_still_hashes_by_its_fields():
    @record(frozen=True)
    class Named:
        name: str

        def __eq__(self, other):
            return isinstance(other, Named) and self.name.lower() == other.name.lower()

    assert Named("a") == Named("A") and hash(Named("a")) == hash(Named("a"))
