"""Unit tests for snapshots (unpack-once layers keyed by chain id) and the FakeMounter seam."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from portside.engine.errors import Conflict, InvalidArgument, NotFound
from portside.engine.store import Database, FakeMounter, Mounter, Snapshots, chain_ids

pytestmark = pytest.mark.unit


def did(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


@pytest.fixture
def snaps(tmp_path: Path) -> Snapshots:
    db = Database(tmp_path / "metadata.db")
    yield Snapshots(tmp_path / "snapshots", db)
    db.close()


def writer_of(content: dict[str, str], calls: list[Path] | None = None):
    def populate(d: Path) -> int:
        if calls is not None:
            calls.append(d)
        for name, text in content.items():
            (d / name).write_text(text)
        return sum(len(t) for t in content.values())
    return populate


def test_chain_ids_follow_the_oci_spec() -> None:
    a, b, c = did("a"), did("b"), did("c")
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()
    assert chain_ids([a, b, c]) == [a, ab, abc]
    assert chain_ids([]) == []
    with pytest.raises(InvalidArgument):
        chain_ids([a, "sha256:nothex"])


def test_known_chain_id_vector() -> None:
    # The two diff ids of a two-layer image and their chain id, computed independently with
    # `printf '%s %s' "$d0" "$d1" | sha256sum`.
    d0 = "sha256:" + "0" * 64
    d1 = "sha256:" + "1" * 64
    assert chain_ids([d0, d1]) == [
        d0, "sha256:f94b891e05f6e37c90d87edfd5bb98a02d618a437c35f3a94b3b00e48e894631"]


def test_create_chain_and_paths(snaps: Snapshots) -> None:
    ids = [did("base"), did("mid"), did("top")]
    chain = chain_ids(ids)
    parent = None
    for cid, diff in zip(chain, ids):
        p = snaps.create(cid, parent, diff, writer_of({diff[7:15]: "x" * 10}))
        assert p == snaps.root / cid[7:] / "fs" == snaps.path(cid)
        assert (p / diff[7:15]).read_text() == "x" * 10
        parent = cid
    assert snaps.chain(chain[2]) == [chain[2], chain[1], chain[0]]
    assert snaps.lowers(chain[2]) == [snaps.path(c) for c in reversed(chain)]
    records = snaps.list()
    assert [r["chain_id"] for r in records] == chain
    assert records[1]["parent"] == chain[0] and records[1]["diff_id"] == ids[1]
    assert records[1]["size"] == 10
    assert snaps.get(chain[0])["parent"] is None
    assert os.listdir(snaps.root / ".staging") == []


def test_create_is_unpack_once(snaps: Snapshots) -> None:
    calls: list[Path] = []
    base = did("once")
    first = snaps.create(base, None, base, writer_of({"f": "1"}, calls))
    second = snaps.create(base, None, base, writer_of({"f": "2"}, calls))
    assert first == second and len(calls) == 1
    assert (first / "f").read_text() == "1"


def test_create_rejects_bad_input(snaps: Snapshots) -> None:
    base, other = did("b"), did("o")
    with pytest.raises(InvalidArgument, match="diff id"):
        snaps.create(base, None, other, writer_of({}))
    with pytest.raises(InvalidArgument, match="does not match parent"):
        snaps.create(did("random"), base, other, writer_of({}))
    with pytest.raises(NotFound, match=f"parent snapshot not found: {base}"):
        snaps.create(chain_ids([base, other])[1], base, other, writer_of({}))
    with pytest.raises(InvalidArgument):
        snaps.path("latest")
    assert snaps.list() == []


def test_failed_populate_leaves_nothing(snaps: Snapshots) -> None:
    base = did("fails")

    def populate(d: Path) -> int:
        (d / "partial").write_text("half a layer")
        raise OSError("tar stream truncated")

    with pytest.raises(OSError, match="truncated"):
        snaps.create(base, None, base, populate)
    assert not snaps.exists(base)
    assert snaps.list() == []
    assert os.listdir(snaps.root / ".staging") == []
    assert not (snaps.root / base[7:]).exists()


def test_remove(snaps: Snapshots) -> None:
    ids = [did("r1"), did("r2")]
    chain = chain_ids(ids)
    snaps.create(chain[0], None, ids[0], writer_of({"a": "a"}))
    top = snaps.create(chain[1], chain[0], ids[1], writer_of({"b": "b"}))
    # Read-only directories inside a layer must not stop removal.
    (top / "ro").mkdir()
    (top / "ro" / "f").write_text("x")
    os.chmod(top / "ro", 0o555)
    with pytest.raises(Conflict, match="parent of"):
        snaps.remove(chain[0])
    snaps.remove(chain[1])
    assert not snaps.exists(chain[1]) and not top.exists()
    snaps.remove(chain[0])
    assert snaps.list() == []
    assert os.listdir(snaps.root / ".trash") == []
    with pytest.raises(NotFound, match="snapshot not found"):
        snaps.remove(chain[0])
    with pytest.raises(NotFound):
        snaps.chain(chain[0])


def test_remove_asks_its_guard_inside_the_transaction(snaps: Snapshots) -> None:
    # garbage collection's "still unreferenced?" is answered in the transaction that removes
    # the record: a lease written by another process is either seen or written after
    ids = [did("g1")]
    chain = chain_ids(ids)
    path = snaps.create(chain[0], None, ids[0], writer_of({"a": "a"}))
    seen = []

    def guard(conn) -> bool:
        seen.append(conn.in_transaction)
        conn.execute("SELECT 1 FROM snapshots WHERE chain_id = ?", (chain[0],)).fetchone()
        return True  # referenced after all: keep it

    assert snaps.remove(chain[0], unless=guard) is False
    assert seen == [True] and snaps.exists(chain[0]) and path.exists()
    assert snaps.remove(chain[0], unless=lambda conn: False) is True
    assert not snaps.exists(chain[0]) and not path.exists()


def test_clean_removes_staging_and_trash(snaps: Snapshots) -> None:
    # What a crash leaves: a staging dir of a create and a trash entry of a remove.
    (snaps.root / ".staging" / f"{'a' * 64}-123456" / "fs" / "etc").mkdir(parents=True)
    (snaps.root / ".trash" / f"{'b' * 64}-654321" / "fs").mkdir(parents=True)
    assert snaps.clean() == 2
    assert os.listdir(snaps.root / ".staging") == []
    assert os.listdir(snaps.root / ".trash") == []
    assert snaps.clean() == 0


def test_check_and_repair(snaps: Snapshots) -> None:
    ids = [did("c1"), did("c2"), did("c3")]
    chain = chain_ids(ids)
    parent = None
    for cid, diff in zip(chain, ids):
        snaps.create(cid, parent, diff, writer_of({"f": cid}))
        parent = cid
    assert snaps.check() == []
    # Record without dir (middle layer lost), and a dir without record.
    os.rename(snaps.root / chain[1][7:], snaps.root / ".lost")
    stray = snaps.root / ("d" * 64) / "fs"
    stray.mkdir(parents=True)
    problems = snaps.check()
    assert f"snapshot {chain[1]} has a record but no directory" in problems
    assert f"snapshot directory {stray.parent} has no record" in problems
    assert len(problems) == 2
    repaired = snaps.check(repair=True)
    # Repair removes the broken record, which then exposes the orphaned child.
    assert f"snapshot {chain[2]} has a missing parent {chain[1]}" in repaired
    assert snaps.check() == []
    assert [r["chain_id"] for r in snaps.list()] == [chain[0]]
    assert not stray.exists()
    assert snaps.exists(chain[0]) and not snaps.exists(chain[2])


def test_exists_needs_record_and_dir(snaps: Snapshots) -> None:
    base = did("e")
    snaps.create(base, None, base, writer_of({}))
    os.rename(snaps.root / base[7:], snaps.root / ".moved")
    assert not snaps.exists(base)
    # create() notices and unpacks again, replacing the stale record.
    p = snaps.create(base, None, base, writer_of({"again": "1"}))
    assert (p / "again").exists() and snaps.exists(base)


def test_dir_without_record_is_replaced_by_create(snaps: Snapshots) -> None:
    # A crash between rename and commit leaves a directory under the real name with no record.
    base = did("half")
    stale = snaps.root / base[7:] / "fs"
    stale.mkdir(parents=True)
    (stale / "stale").write_text("?")
    p = snaps.create(base, None, base, writer_of({"fresh": "1"}))
    assert sorted(os.listdir(p)) == ["fresh"]


def test_fake_mounter_records_and_enforces_contract(tmp_path: Path) -> None:
    m = FakeMounter()
    assert isinstance(m, Mounter)
    lower = [tmp_path / "l1", tmp_path / "l0"]
    target = tmp_path / "rootfs"
    m.mount_overlay(lower, tmp_path / "up", tmp_path / "work", target)
    m.bind(tmp_path / "data", target / "data", readonly=True)
    assert m.is_mounted(target) and m.is_mounted(target / "data")
    assert [c.op for c in m.calls] == ["mount_overlay", "bind"]
    assert m.calls[0].args["lower"] == lower and m.calls[1].args["readonly"] is True
    m.unmount(target / "data")
    m.unmount(target, lazy=True)
    assert m.mounted == []
    with pytest.raises(NotFound, match="not a mount point"):
        m.unmount(target)
    with pytest.raises(InvalidArgument):
        m.mount_overlay([], None, None, target)
    with pytest.raises(InvalidArgument):
        m.mount_overlay(lower, tmp_path / "up", None, target)
