"""Metadata in one SQLite file, shared safely by every process that uses the store.

Blobs and snapshots live on the filesystem; *what they mean* (which tag points at which manifest,
which snapshot a chain id names, which containers exist) lives in ``PORTSIDE_ROOT/metadata.db``.
SQLite gives us atomic multi-row changes without a daemon: two notebooks and a terminal can all
open the file at once.

How it is opened, and why:

- ``journal_mode=WAL``: readers never block the writer and the writer never blocks readers.
- ``busy_timeout=30000``: a writer that finds the write lock taken waits (up to 30 s) instead of
  failing with "database is locked".
- ``foreign_keys=ON``: tables may reference each other and SQLite enforces it.
- ``BEGIN IMMEDIATE`` for every transaction: the write lock is taken at the start, so two
  processes can never both read and then fail to upgrade to a write (the classic SQLite deadlock
  that the busy timeout cannot resolve).

One transaction per operation: ``with db.transaction() as conn: ...`` commits when the block ends
and rolls back if it raises. A ``transaction()`` nested inside another one in the same thread
becomes a SAVEPOINT of the outer one: the inner block can fail and roll back alone, and nothing is
committed until the outermost block ends.

Schemas: each module that owns tables registers them at import time::

    Database.register_schema("snapshots", [
        "CREATE TABLE IF NOT EXISTS snapshots (chain_id TEXT PRIMARY KEY, ...)",   # version 1
        "ALTER TABLE snapshots ADD COLUMN labels TEXT",                           # version 2
    ])

The list is append-only: statement *i* moves that schema from version *i* to *i + 1*, and the
version reached is recorded in ``schema_versions``. Migrations run inside one ``BEGIN IMMEDIATE``
transaction, so when two processes race to migrate, the second waits, then sees the new version and
applies nothing. Schemas registered after a Database was opened are applied on its next use.

Connections: one per thread (SQLite connections must not be shared across threads without care),
and a forked child never reuses its parent's connection -- it opens its own on first use.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from portside.engine.errors import InvalidArgument

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any


__all__ = ["Database"]

_BUSY_TIMEOUT_MS = 30_000

# name -> ordered migration statements; shared by every Database in the process.
_SCHEMAS: dict[str, list[str]] = {}
_SCHEMAS_LOCK = threading.Lock()
_SCHEMA_GENERATION = 0

# Connections inherited over fork: never closed (closing them in the child could disturb the
# parent's locks on the file), just kept alive so their finalizers never run.
_ORPHANS: list[sqlite3.Connection] = []


def _set_wal(conn: sqlite3.Connection) -> str:
    """Switch to WAL. A new file being switched by another process at the same moment answers
    "database is locked" without waiting on busy_timeout, so retry that for a while."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            return conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


class _ThreadState(threading.local):
    conn: sqlite3.Connection | None = None
    pid: int = 0
    depth: int = 0
    generation: int = -1


class Database:
    """The store's SQLite metadata database.

    Args:
        path: the database file (``PORTSIDE_ROOT/metadata.db``); it and its folder are created.

    Raises:
        InvalidArgument: the file exists but is not an SQLite database.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._synced_changes = 0  # this process's total_changes at its last sync_log()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = _ThreadState()
        self._all: list[tuple[int, sqlite3.Connection]] = []
        self._all_lock = threading.Lock()
        self._closed = False
        try:
            self._conn()  # open now so a broken file or a failing migration fails here
        except BaseException:
            self.close()
            raise

    # ----- schema registry -------------------------------------------------------------------

    @staticmethod
    def register_schema(name: str, statements: list[str]) -> None:
        """Register (or extend) the migrations of schema ``name``.

        Args:
            name: the owner of the tables, e.g. ``"snapshots"``.
            statements: single SQL statements applied in order; registering again with a longer
                list adds migrations, registering a list that is not an extension of the known one
                is an error (applied migrations must never change).

        Raises:
            InvalidArgument: the new list does not start with the already registered one.
        """
        global _SCHEMA_GENERATION
        with _SCHEMAS_LOCK:
            known = _SCHEMAS.get(name, [])
            if list(statements[: len(known)]) != known:
                raise InvalidArgument(f"schema {name}: migrations may only be appended")
            if len(statements) > len(known):
                _SCHEMAS[name] = list(statements)
                _SCHEMA_GENERATION += 1

    def _migrate(self, conn: sqlite3.Connection) -> None:
        with _SCHEMAS_LOCK:
            generation = _SCHEMA_GENERATION
            schemas = {name: list(stmts) for name, stmts in _SCHEMAS.items()}
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_versions"
                         " (name TEXT PRIMARY KEY, version INTEGER NOT NULL)")
            for name, stmts in sorted(schemas.items()):
                row = conn.execute("SELECT version FROM schema_versions WHERE name = ?",
                                   (name,)).fetchone()
                version = row[0] if row else 0
                for stmt in stmts[version:]:
                    conn.execute(stmt)
                if len(stmts) > version:
                    conn.execute("INSERT INTO schema_versions(name, version) VALUES (?, ?)"
                                 " ON CONFLICT(name) DO UPDATE SET version = excluded.version",
                                 (name, len(stmts)))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._local.generation = generation

    def schema_version(self, name: str) -> int:
        """Return the version of schema ``name`` recorded in this database (0 if never applied)."""
        rows = self.query("SELECT version FROM schema_versions WHERE name = ?", (name,))
        return rows[0][0] if rows else 0

    # ----- connections -----------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        local = self._local
        pid = os.getpid()
        if local.conn is not None and local.pid != pid:
            # Forked: the inherited connection belongs to the parent. Abandon it, start afresh.
            _ORPHANS.append(local.conn)
            local.conn = None
            local.depth = 0
            local.generation = -1
            with self._all_lock:
                self._all = []
        if local.conn is None:
            if self._closed:
                raise InvalidArgument(f"database is closed: {self.path}")
            try:
                conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000,
                                       isolation_level=None, check_same_thread=False)
                # check_same_thread off only so close() can close other threads' connections;
                # each thread still uses its own.
                conn.row_factory = sqlite3.Row
                conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
                mode = _set_wal(conn)
                conn.execute("PRAGMA foreign_keys = ON")
                # WAL + NORMAL stays consistent across kill -9; only an OS crash can lose the
                # last commits, never corrupt the file.
                conn.execute("PRAGMA synchronous = NORMAL")
            except sqlite3.DatabaseError as exc:
                raise InvalidArgument(f"cannot open metadata database {self.path}: {exc}") \
                    from exc
            if mode.lower() != "wal":
                conn.close()
                raise InvalidArgument(f"metadata database {self.path} cannot use WAL ({mode})")
            local.conn, local.pid, local.depth = conn, pid, 0
            with self._all_lock:
                self._all.append((pid, conn))
        if local.generation != _SCHEMA_GENERATION and local.depth == 0:
            self._migrate(local.conn)
        return local.conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run a block as one write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``).

        Yields:
            This thread's connection; run statements on it.

        Raises:
            Whatever the block raises, after rolling back. ``sqlite3.OperationalError`` if the
            write lock could not be had within the 30 s busy timeout.

        Example::

            with db.transaction() as conn:
                conn.execute("INSERT INTO tags(name, digest) VALUES (?, ?)", (name, digest))
        """
        conn = self._conn()
        local = self._local
        if local.depth == 0:
            conn.execute("BEGIN IMMEDIATE")
            local.depth = 1
            try:
                yield conn
            except BaseException:
                local.depth = 0
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            local.depth = 0
            try:
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        else:
            name = f"portside_sp{local.depth}"
            conn.execute(f"SAVEPOINT {name}")
            local.depth += 1
            try:
                yield conn
            except BaseException:
                local.depth -= 1
                conn.execute(f"ROLLBACK TO {name}")
                conn.execute(f"RELEASE {name}")
                raise
            local.depth -= 1
            conn.execute(f"RELEASE {name}")

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        """Run one read statement and return all rows (``sqlite3.Row``: index or name access).

        Inside a ``transaction()`` of this thread it sees that transaction's uncommitted writes.
        """
        return self._conn().execute(sql, params).fetchall()

    def sync_log(self) -> None:
        """Make what this process committed durable now, without closing: one fsync of the
        write-ahead log when any of its connections changed something.

        With ``synchronous = NORMAL`` commits reach the disk at the next checkpoint, which SQLite
        also runs when the last connection closes; a process that ends without closing (the
        ``portside`` program, see :func:`portside.engine.cli.main`) calls this instead.
        """
        pid = os.getpid()
        with self._all_lock:
            total = sum(conn.total_changes for owner, conn in self._all if owner == pid)
        if total == self._synced_changes:
            return
        self._synced_changes = total
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Close every connection this process opened on the file. Further use is an error."""
        self._closed = True
        pid = os.getpid()
        with self._all_lock:
            conns, self._all = self._all, []
        for owner, conn in conns:
            if owner == pid:
                conn.close()
        self._local.conn = None

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
