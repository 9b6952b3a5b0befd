"""Unit tests for the metadata database: pragmas, transactions, savepoints, migrations, fork."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from portside.engine.errors import InvalidArgument
from portside.engine.store import Database
from portside.engine.store import db as db_module

pytestmark = pytest.mark.unit


@pytest.fixture
def schema() -> str:
    """A schema name unique to the test, removed from the process-wide registry afterwards."""
    name = f"test_{os.getpid()}_{id(object())}"
    yield name
    db_module._SCHEMAS.pop(name, None)


@pytest.fixture
def db(tmp_path: Path, schema: str) -> Database:
    Database.register_schema(schema, [
        f"CREATE TABLE IF NOT EXISTS {schema} (k TEXT PRIMARY KEY, v INTEGER NOT NULL)",
    ])
    d = Database(tmp_path / "metadata.db")
    yield d
    d.close()


def test_pragmas(db: Database) -> None:
    assert db.query("PRAGMA journal_mode")[0][0] == "wal"
    assert db.query("PRAGMA busy_timeout")[0][0] == 30000
    assert db.query("PRAGMA foreign_keys")[0][0] == 1


def test_commit_and_rollback(db: Database, schema: str) -> None:
    with db.transaction() as conn:
        conn.execute(f"INSERT INTO {schema} VALUES ('a', 1)")
    with pytest.raises(ValueError), db.transaction() as conn:
        conn.execute(f"INSERT INTO {schema} VALUES ('b', 2)")
        # Inside the transaction our own write is visible to query().
        assert len(db.query(f"SELECT * FROM {schema}")) == 2
        raise ValueError("boom")
    rows = db.query(f"SELECT k, v FROM {schema}")
    assert [(r["k"], r["v"]) for r in rows] == [("a", 1)]


def test_uncommitted_writes_invisible_to_other_connection(db: Database, schema: str,
                                                          tmp_path: Path) -> None:
    other = sqlite3.connect(tmp_path / "metadata.db")
    try:
        with db.transaction() as conn:
            conn.execute(f"INSERT INTO {schema} VALUES ('x', 1)")
            assert other.execute(f"SELECT count(*) FROM {schema}").fetchone()[0] == 0
        assert other.execute(f"SELECT count(*) FROM {schema}").fetchone()[0] == 1
    finally:
        other.close()


def test_nested_transaction_is_a_savepoint(db: Database, schema: str) -> None:
    with db.transaction() as conn:
        conn.execute(f"INSERT INTO {schema} VALUES ('outer', 1)")
        with pytest.raises(KeyError), db.transaction() as inner:
            assert inner is conn
            inner.execute(f"INSERT INTO {schema} VALUES ('inner', 2)")
            raise KeyError("inner fails alone")
        with db.transaction() as inner:
            inner.execute(f"INSERT INTO {schema} VALUES ('inner2', 3)")
    assert sorted(r["k"] for r in db.query(f"SELECT k FROM {schema}")) == ["inner2", "outer"]
    # An exception escaping the outer block rolls back the released savepoints too.
    with pytest.raises(RuntimeError), db.transaction():
        with db.transaction() as inner:
            inner.execute(f"INSERT INTO {schema} VALUES ('gone', 4)")
        raise RuntimeError
    assert len(db.query(f"SELECT k FROM {schema}")) == 2


def test_foreign_keys_enforced(tmp_path: Path, schema: str) -> None:
    Database.register_schema(schema, [
        f"CREATE TABLE IF NOT EXISTS {schema}_p (id TEXT PRIMARY KEY)",
        f"CREATE TABLE IF NOT EXISTS {schema}_c (id TEXT REFERENCES {schema}_p(id))",
    ])
    with Database(tmp_path / "fk.db") as d:
        with pytest.raises(sqlite3.IntegrityError), d.transaction() as conn:
            conn.execute(f"INSERT INTO {schema}_c VALUES ('nope')")
        assert d.query(f"SELECT count(*) FROM {schema}_c")[0][0] == 0


def test_migrations_are_versioned_and_append_only(db: Database, schema: str,
                                                  tmp_path: Path) -> None:
    assert db.schema_version(schema) == 1
    # A migration registered after the database was opened is applied on its next use.
    Database.register_schema(schema, [
        f"CREATE TABLE IF NOT EXISTS {schema} (k TEXT PRIMARY KEY, v INTEGER NOT NULL)",
        f"ALTER TABLE {schema} ADD COLUMN note TEXT",
    ])
    with db.transaction() as conn:
        conn.execute(f"INSERT INTO {schema}(k, v, note) VALUES ('a', 1, 'hi')")
    assert db.schema_version(schema) == 2
    # Reopening applies nothing twice (the ALTER would fail if it ran again).
    again = Database(tmp_path / "metadata.db")
    assert again.schema_version(schema) == 2
    again.close()
    with pytest.raises(InvalidArgument, match="appended"):
        Database.register_schema(schema, ["CREATE TABLE something_else (x)"])


def test_failed_migration_rolls_back(tmp_path: Path, schema: str) -> None:
    Database.register_schema(schema, [
        f"CREATE TABLE IF NOT EXISTS {schema} (k TEXT)",
        "THIS IS NOT SQL",
    ])
    with pytest.raises(sqlite3.OperationalError):
        Database(tmp_path / "bad.db")
    db_module._SCHEMAS.pop(schema)
    with Database(tmp_path / "bad.db") as d:
        assert d.query("SELECT name FROM sqlite_master WHERE name = ?", (schema,)) == []


def test_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "metadata.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InvalidArgument, match="metadata database"):
        Database(bad)


def test_one_connection_per_thread(db: Database, schema: str) -> None:
    errors: list[BaseException] = []
    conns: list[int] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                with db.transaction() as conn:
                    conns.append(id(conn))
                    conn.execute(f"INSERT INTO {schema} VALUES (?, ?)", (f"{n}-{i}", i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(conns)) == 4
    assert db.query(f"SELECT count(*) FROM {schema}")[0][0] == 80


def test_safe_after_fork(db: Database, schema: str) -> None:
    with db.transaction() as conn:
        conn.execute(f"INSERT INTO {schema} VALUES ('parent', 1)")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            with db.transaction() as conn:
                conn.execute(f"INSERT INTO {schema} VALUES ('child', 2)")
            code = 0 if db.query(f"SELECT count(*) FROM {schema}")[0][0] == 2 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sorted(r["k"] for r in db.query(f"SELECT k FROM {schema}")) == ["child", "parent"]


def test_close(db: Database) -> None:
    db.close()
    with pytest.raises(InvalidArgument, match="closed"):
        db.query("SELECT 1")


def test_sync_log_makes_a_writing_process_durable_without_closing(db: Database, schema: str,
                                                                  monkeypatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    db.query(f"SELECT * FROM {schema}")  # the first use creates the table
    db.sync_log()
    monkeypatch.setattr(db_module.os, "fsync", fsync)
    db.query(f"SELECT * FROM {schema}")
    db.sync_log()
    assert synced == []  # nothing written since: nothing to make durable
    with db.transaction() as conn:
        conn.execute(f"INSERT INTO {schema} VALUES ('a', 1)")
    db.sync_log()
    assert synced == [str(db.path) + "-wal"]
    other = sqlite3.connect(db.path)  # the write is in the log, visible to any reader
    try:
        assert other.execute(f"SELECT v FROM {schema} WHERE k = 'a'").fetchone() == (1,)
    finally:
        other.close()
