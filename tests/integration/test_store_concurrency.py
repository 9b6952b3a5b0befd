"""Several processes on one store at once: the same blob, the same snapshot, one database.

Each child is a fresh interpreter (``subprocess``), released by a shared "go" file so that they
really start together; the parent then checks the store is exactly as one writer would leave it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from portside.engine.store import ContentStore, Database, Snapshots, chain_ids

pytestmark = pytest.mark.integration

PRELUDE = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from portside.engine.store import ContentStore, Database, Snapshots, chain_ids
    root = Path(sys.argv[1]); me = int(sys.argv[2])
    while not (root / "go").exists():
        time.sleep(0.002)
""")


def run_together(root: Path, body: str, n: int, timeout: float = 120) -> list[str]:
    """Start ``n`` children running PRELUDE + body, release them at once, return their stdout."""
    script = PRELUDE + textwrap.dedent(body)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(root), str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(n)]
    try:
        time.sleep(0.5)  # let the interpreters get to the barrier
        (root / "go").touch()
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            assert p.returncode == 0, f"child failed ({p.returncode}):\n{err}"
            outs.append(out.strip())
        return outs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_two_processes_write_the_same_blob(tmp_path: Path) -> None:
    data = os.urandom(4 << 20)
    (tmp_path / "payload").write_bytes(data)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    body = f"""
        s = ContentStore(root / "content")
        data = (root / "payload").read_bytes()
        # One child uses a private ingest, the other a named one: both must end in one blob.
        with s.writer(None if me == 0 else "pull-{digest}") as w:
            for i in range(0, len(data), 65536):
                w.write(data[i:i + 65536])
            print(w.commit(expected_digest="{digest}", expected_size=len(data)))
    """
    assert run_together(tmp_path, body, 2) == [digest, digest]
    store = ContentStore(tmp_path / "content")
    assert list(store.list()) == [digest]
    assert store.verify(digest)
    assert os.listdir(store.ingest) == []


def test_two_processes_share_one_named_ingest(tmp_path: Path) -> None:
    data = b"z" * 1_000_000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    body = f"""
        s = ContentStore(root / "content")
        with s.writer("same-ref") as w:
            # The second writer waits for the first and then finds the blob already there.
            if s.exists("{digest}"):
                print("skipped"); w.abort(); sys.exit(0)
            w.write(b"z" * 1_000_000)
            print(w.commit(expected_digest="{digest}"))
    """
    assert sorted(run_together(tmp_path, body, 2)) == sorted([digest, "skipped"])
    assert os.listdir(tmp_path / "content" / "ingest") == []


def test_two_processes_create_the_same_snapshot(tmp_path: Path) -> None:
    diffs = ["sha256:" + hashlib.sha256(n.encode()).hexdigest() for n in ("base", "top")]
    body = f"""
        db = Database(root / "metadata.db")
        snaps = Snapshots(root / "snapshots", db)
        diffs = {diffs!r}
        chain = chain_ids(diffs)

        def populate(d):
            (root / "populated" / f"{{me}}-{{d.parent.name}}").touch()
            time.sleep(0.3)  # a slow unpack widens the race
            (d / "who").write_text(str(me))
            return 1

        parent = None
        for cid, diff in zip(chain, diffs):
            p = snaps.create(cid, parent, diff, populate)
            parent = cid
        print(p, (p / "who").read_text())
    """
    (tmp_path / "populated").mkdir()
    outs = run_together(tmp_path, body, 2)
    assert outs[0] == outs[1]  # both use the winner's directory
    # Unpack-once: each layer was populated by exactly one process.
    assert len(os.listdir(tmp_path / "populated")) == 2
    db = Database(tmp_path / "metadata.db")
    try:
        snaps = Snapshots(tmp_path / "snapshots", db)
        assert len(snaps.list()) == 2
        assert snaps.check() == []
        assert os.listdir(tmp_path / "snapshots" / ".staging") == []
    finally:
        db.close()


def test_crash_during_snapshot_create_leaves_only_staging(tmp_path: Path) -> None:
    base = "sha256:" + hashlib.sha256(b"crash").hexdigest()
    body = f"""
        snaps = Snapshots(root / "snapshots", Database(root / "metadata.db"))
        def populate(d):
            (d / "half").write_text("x")
            os._exit(9)  # killed mid-unpack
        snaps.create("{base}", None, "{base}", populate)
    """
    script = PRELUDE + textwrap.dedent(body)
    (tmp_path / "go").touch()
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path), "0"], timeout=60)
    assert proc.returncode == 9
    db = Database(tmp_path / "metadata.db")
    try:
        snaps = Snapshots(tmp_path / "snapshots", db)
        assert not snaps.exists(base)
        assert not (tmp_path / "snapshots" / base[7:]).exists()
        assert len(os.listdir(tmp_path / "snapshots" / ".staging")) == 1
        assert snaps.clean() == 1
        assert os.listdir(tmp_path / "snapshots" / ".staging") == []
        assert snaps.check() == []
    finally:
        db.close()


def test_eight_processes_fifty_transactions_each(tmp_path: Path) -> None:
    setup = Database(tmp_path / "metadata.db")
    with setup.transaction() as conn:
        conn.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        conn.execute("CREATE TABLE txlog (who INTEGER, seq INTEGER, n INTEGER)")
        conn.execute("INSERT INTO counter VALUES (1, 0)")
    setup.close()
    body = """
        db = Database(root / "metadata.db")
        for i in range(50):
            with db.transaction() as conn:
                # Read-modify-write: only correct if transactions really serialize.
                n = conn.execute("SELECT n FROM counter WHERE id = 1").fetchone()[0]
                conn.execute("UPDATE counter SET n = ? WHERE id = 1", (n + 1,))
                conn.execute("INSERT INTO txlog VALUES (?, ?, ?)", (me, i, n + 1))
            db.query("SELECT count(*) FROM txlog")  # readers run between writers
        db.close()
        print("ok")
    """
    assert run_together(tmp_path, body, 8) == ["ok"] * 8
    db = Database(tmp_path / "metadata.db")
    try:
        assert db.query("SELECT n FROM counter")[0][0] == 400
        assert db.query("SELECT count(*) FROM txlog")[0][0] == 400
        # Every increment saw a distinct value: no lost update.
        assert db.query("SELECT count(DISTINCT n) FROM txlog")[0][0] == 400
        per_process = [r[0] for r in db.query("SELECT count(*) FROM txlog GROUP BY who")]
        assert per_process == [50] * 8
    finally:
        db.close()


def test_processes_race_to_migrate(tmp_path: Path) -> None:
    body = """
        Database.register_schema("race", [
            "CREATE TABLE race (x INTEGER)",      # no IF NOT EXISTS: a double apply would fail
            "ALTER TABLE race ADD COLUMN y INTEGER",
        ])
        db = Database(root / "metadata.db")
        print(db.schema_version("race"))
        db.close()
    """
    assert run_together(tmp_path, body, 4) == ["2"] * 4
