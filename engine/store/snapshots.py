"""Snapshots: image layers unpacked once, keyed by chain id, shared by every image.

An image is a stack of layer tarballs. Each tarball, uncompressed, has a *diff id* (the digest
of the uncompressed tar). What a layer's directory looks like depends on every layer below it, so
unpacked layers are keyed not by diff id but by *chain id*, the OCI image spec's digest of the whole
stack up to that layer::

    ChainID(L0)          = DiffID(L0)
    ChainID(L0|...|Ln)   = sha256(ChainID(L0|...|Ln-1) + " " + DiffID(Ln))

Two images that start with the same layers therefore share those snapshots on disk, and a
container's root filesystem is an overlay whose lower directories are the chain of snapshots from
its image's top layer down to the base (see :mod:`portside.engine.store.mount`).

Vocabulary (containerd's, simplified): a *snapshot* here is always *committed* -- an immutable
directory ``<root>/<chain-id-hex>/fs`` holding one layer's files (with overlayfs whiteouts), plus a
record in the ``snapshots`` table naming its *parent* (the chain id below it). Writable layers of
containers are not snapshots: they live with the container.

Crash safety: a snapshot is built in ``<root>/.staging/<hex>-<random>/`` and only renamed to its
real name, in the same SQLite transaction that inserts its record, once it is complete. A crash
leaves at most a staging directory (``clean()`` removes it), never a half-unpacked layer under a real
name. Removal goes the other way: the directory is renamed into ``<root>/.trash/`` in the
transaction that deletes the record, then deleted. ``check()`` reports (and repairs) any mismatch
between records and directories.

Concurrency: creating a chain id takes an exclusive ``flock`` on ``<root>/.locks/<hex>``, so two
processes unpacking the same layer at once do the work once: the second waits and then finds the
snapshot present.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from portside.engine.errors import Conflict, CorruptStore, InvalidArgument, NotFound
from portside.engine.hashing import sha256 as _sha256
from portside.engine.store.content import validate_digest
from portside.engine.store.db import Database

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    import builtins
    from typing import Any


__all__ = ["Snapshots", "chain_ids"]

Database.register_schema("snapshots", [
    "CREATE TABLE IF NOT EXISTS snapshots ("
    " chain_id TEXT PRIMARY KEY,"
    " parent TEXT,"
    " diff_id TEXT NOT NULL,"
    " size INTEGER NOT NULL DEFAULT 0,"
    " created REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent)",
])


def chain_ids(diff_ids: list[str]) -> list[str]:
    """Return the OCI chain id of each prefix of a layer stack (base layer first).

    Args:
        diff_ids: the diff ids of the layers, base first (an image config's ``rootfs.diff_ids``).

    Returns:
        A list as long as ``diff_ids``; its last entry names the whole stack.

    Raises:
        InvalidArgument: a diff id is not a valid sha256 digest.

    Example::

        >>> chain_ids(["sha256:" + "a" * 64])[0] == "sha256:" + "a" * 64
        True
    """
    out: list[str] = []
    for diff_id in diff_ids:
        validate_digest(diff_id)
        if not out:
            out.append(diff_id)
        else:
            out.append("sha256:" + _sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out


def _rmtree(path: Path) -> None:
    """Delete a tree even where a layer made directories read-only (matters without root)."""
    def onexc(func: Callable[..., Any], name: str, exc: BaseException) -> None:
        if isinstance(exc, FileNotFoundError):
            return  # someone else (another clean) got there first
        if isinstance(exc, PermissionError):
            parent = os.path.dirname(name)
            with contextlib.suppress(OSError):
                os.chmod(parent, stat.S_IRWXU)
                func(name)
                return
        raise exc
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=onexc)
    else:
        shutil.rmtree(path, onerror=lambda f, n, info: onexc(f, n, info[1]))


class Snapshots:
    """The unpacked layers of every image, each stored once under its chain id.

    Args:
        root: the snapshots directory (``PORTSIDE_ROOT/snapshots``); created if missing.
        db: the store's metadata database (the ``snapshots`` table lives there).
    """

    def __init__(self, root: Path, db: Database) -> None:
        self.root = Path(root)
        self.db = db
        self._staging = self.root / ".staging"
        self._trash = self.root / ".trash"
        self._locks = self.root / ".locks"
        for d in (self.root, self._staging, self._trash, self._locks):
            d.mkdir(parents=True, exist_ok=True)

    # ----- naming ----------------------------------------------------------------------------

    def path(self, chain_id: str) -> Path:
        """Return the snapshot's file tree ``<root>/<hex>/fs`` (whether or not it exists).

        Raises:
            InvalidArgument: ``chain_id`` is not a valid sha256 digest.
        """
        return self.root / validate_digest(chain_id) / "fs"

    def exists(self, chain_id: str) -> bool:
        """Whether the snapshot is committed: its record exists and its directory is present."""
        path = self.path(chain_id)
        rows = self.db.query("SELECT 1 FROM snapshots WHERE chain_id = ?", (chain_id,))
        return bool(rows) and path.is_dir()

    def get(self, chain_id: str) -> dict[str, Any]:
        """Return the record of one snapshot (``chain_id, parent, diff_id, size, created``).

        Raises:
            NotFound: no record for ``chain_id``.
        """
        validate_digest(chain_id)
        rows = self.db.query("SELECT * FROM snapshots WHERE chain_id = ?", (chain_id,))
        if not rows:
            raise NotFound(f"snapshot not found: {chain_id}")
        return dict(rows[0])

    # ----- create / remove -------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, chain_id: str) -> Iterator[None]:
        # Lock files are never removed, so no inode race; they are empty and few.
        fd = os.open(self._locks / validate_digest(chain_id),
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def create(self, chain_id: str, parent: str | None, diff_id: str,
               populate: Callable[[Path], int]) -> Path:
        """Return the snapshot ``chain_id``, unpacking it with ``populate`` if it is not there.

        Args:
            chain_id: the chain id of the stack ending with this layer.
            parent: the chain id below it (``None`` for a base layer); must already exist.
            diff_id: the layer's diff id (recorded).
            populate: called with an empty directory to fill (unpack the layer there); returns
                the size in bytes it wrote. If it raises, nothing is recorded and its partial
                output is removed.

        Returns:
            ``path(chain_id)``.

        Raises:
            InvalidArgument: a malformed digest, or a base layer whose chain id is not its diff id.
            NotFound: ``parent`` is not a committed snapshot.
        """
        target = self.path(chain_id)
        validate_digest(diff_id)
        if parent is None and chain_id != diff_id:
            raise InvalidArgument(f"base snapshot {chain_id} must be named by its diff id")
        if parent is not None and chain_ids([parent, diff_id])[1] != chain_id:
            # The parent's chain id stands in for the stack below it.
            raise InvalidArgument(f"chain id {chain_id} does not match parent {parent} + {diff_id}")
        if self.exists(chain_id):
            return target
        with self._locked(chain_id):
            if self.exists(chain_id):
                return target  # another process unpacked it while we waited
            if parent is not None and not self.exists(parent):
                raise NotFound(f"parent snapshot not found: {parent}")
            staging = self._staging / f"{target.parent.name}-{os.urandom(6).hex()}"
            (staging / "fs").mkdir(parents=True)
            try:
                size = int(populate(staging / "fs"))
                with self.db.transaction() as conn:
                    row = conn.execute("SELECT 1 FROM snapshots WHERE chain_id = ?",
                                       (chain_id,)).fetchone()
                    if row is not None and target.is_dir():
                        return target  # won by a process that ignores our lock (defensive)
                    if target.parent.exists():
                        # A directory without a record: a crash between rename and commit.
                        self._to_trash(target.parent)
                    os.rename(staging, target.parent)
                    conn.execute("INSERT OR REPLACE INTO snapshots"
                                 "(chain_id, parent, diff_id, size, created)"
                                 " VALUES (?, ?, ?, ?, ?)",
                                 (chain_id, parent, diff_id, size, time.time()))
            finally:
                if staging.exists():
                    _rmtree(staging)
            self._empty_trash()
        return target

    def remove(self, chain_id: str, *, unless=None) -> bool:
        """Delete a snapshot: its record and its directory. Returns whether it did.

        The directory is first renamed into ``.trash`` (in the transaction that deletes the
        record), so a crash never leaves a half-deleted tree under the real name.

        ``unless(conn)``: asked inside that transaction; a true answer keeps the snapshot. Garbage
        collection passes its "is it still unreferenced?" check here, so no other process can
        take a lease on the snapshot, or record an image using it, between the check and the
        removal (both write the database, which serialises them).

        Raises:
            NotFound: neither a record nor a directory exists for ``chain_id``.
            Conflict: other snapshots are built on it (remove them first).
        """
        target = self.path(chain_id)
        with self._locked(chain_id):
            with self.db.transaction() as conn:
                if unless is not None and unless(conn):
                    return False
                row = conn.execute("SELECT 1 FROM snapshots WHERE chain_id = ?",
                                   (chain_id,)).fetchone()
                if row is None and not target.parent.exists():
                    raise NotFound(f"snapshot not found: {chain_id}")
                child = conn.execute("SELECT chain_id FROM snapshots WHERE parent = ? LIMIT 1",
                                     (chain_id,)).fetchone()
                if child is not None:
                    raise Conflict(f"snapshot {chain_id} is the parent of {child[0]}")
                conn.execute("DELETE FROM snapshots WHERE chain_id = ?", (chain_id,))
                if target.parent.exists():
                    self._to_trash(target.parent)
        self._empty_trash()
        return True

    def _to_trash(self, directory: Path) -> None:
        os.rename(directory, self._trash / f"{directory.name}-{os.urandom(6).hex()}")

    def _empty_trash(self) -> int:
        removed = 0
        for entry in list(self._trash.iterdir()):
            _rmtree(entry)
            removed += 1
        return removed

    # ----- queries ---------------------------------------------------------------------------

    def list(self) -> list[dict[str, Any]]:
        """Return every snapshot record as a dict, oldest first."""
        rows = self.db.query("SELECT * FROM snapshots ORDER BY created, chain_id")
        return [dict(r) for r in rows]

    def chain(self, chain_id: str) -> builtins.list[str]:
        """Return the chain ids from ``chain_id`` down to its base layer (topmost first).

        This is the order overlayfs wants its lower directories in.

        Raises:
            NotFound: ``chain_id`` has no record.
            CorruptStore: a parent in the chain has no record.
        """
        validate_digest(chain_id)
        rows = self.db.query(
            "WITH RECURSIVE up(chain_id, parent, depth) AS ("
            " SELECT chain_id, parent, 0 FROM snapshots WHERE chain_id = ?"
            " UNION ALL"
            " SELECT s.chain_id, s.parent, up.depth + 1 FROM snapshots s"
            " JOIN up ON s.chain_id = up.parent WHERE up.depth < 10000)"
            " SELECT chain_id, parent FROM up ORDER BY depth", (chain_id,))
        if not rows:
            raise NotFound(f"snapshot not found: {chain_id}")
        if rows[-1]["parent"] is not None:
            raise CorruptStore(f"snapshot {rows[-1]['chain_id']} has a missing parent"
                               f" {rows[-1]['parent']}")
        return [r["chain_id"] for r in rows]

    def lowers(self, chain_id: str) -> builtins.list[Path]:
        """Return the ``fs`` directories of ``chain(chain_id)``: an overlay's lowerdirs, top first.

        Raises:
            NotFound, CorruptStore: as :meth:`chain`.
        """
        return [self.path(c) for c in self.chain(chain_id)]

    # ----- maintenance -----------------------------------------------------------------------

    def clean(self) -> int:
        """Remove leftovers of interrupted work: abandoned staging dirs and the trash.

        A staging directory whose chain id is being created right now (its lock is held by a
        live process), or that a live import holds (:class:`~.leftovers.HeldDir`), is left
        alone. Every command does this as it opens the store (:func:`.leftovers.reap`).

        Returns:
            How many entries were removed.
        """
        from .leftovers import _entries, _sweep_staging

        entries = _entries(self._staging)
        removed = sum(1 for item in _sweep_staging(self.root, entries, True, time.time())
                      if item.removed)
        return removed + self._empty_trash()

    def check(self, repair: bool = False, *, garbage: builtins.list[str] | None = None
              ) -> builtins.list[str]:
        """Compare records with directories and report every mismatch.

        Problems found: a record whose directory is missing, a directory with no record, a
        record whose parent has no record. With ``repair``, each is fixed by removing the
        offending record and/or directory (and, in later rounds, what depended on it).

        Args:
            garbage: where to put, instead, the findings that are only garbage (a directory
                with no record: a crash between its rename and the record's commit).

        Returns:
            One line per problem (empty when the snapshots are consistent).
        """
        problems: list[str] = []
        while True:
            found = self._check_once(repair, garbage)
            problems.extend(found)
            if not found or not repair:
                return problems

    def _check_once(self, repair: bool, garbage: builtins.list[str] | None = None
                    ) -> builtins.list[str]:
        found: list[str] = []
        with self.db.transaction() as conn:
            records = {r["chain_id"]: r["parent"] for r in
                       conn.execute("SELECT chain_id, parent FROM snapshots")}
            dirs = {e.name for e in self.root.iterdir()
                    if not e.name.startswith(".") and e.is_dir()}
            doomed: set[str] = set()
            for chain_id, parent in sorted(records.items()):
                hex_part = chain_id.removeprefix("sha256:")
                if hex_part not in dirs or not (self.root / hex_part / "fs").is_dir():
                    found.append(f"snapshot {chain_id} has a record but no directory")
                    doomed.add(chain_id)
                elif parent is not None and parent not in records:
                    found.append(f"snapshot {chain_id} has a missing parent {parent}")
                    doomed.add(chain_id)
            for name in sorted(dirs):
                if "sha256:" + name not in records:
                    line = f"snapshot directory {self.root / name} has no record"
                    (found if garbage is None else garbage).append(line)
                    if repair:
                        self._to_trash(self.root / name)
            if repair:
                for chain_id in doomed:
                    conn.execute("DELETE FROM snapshots WHERE chain_id = ?", (chain_id,))
                    directory = self.root / chain_id.removeprefix("sha256:")
                    if directory.exists():
                        self._to_trash(directory)
        if repair:
            self._empty_trash()
        return found
