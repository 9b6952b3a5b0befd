"""The build cache: content-addressed results of build steps, shared by every build of a root.

Each step of a build gets a *cache key*: the SHA-256 of its parent's key and of what makes the
step what it is::

    key(FROM image)  = H("from", image id, platform, SOURCE_DATE_EPOCH)
    key(step)        = H(parent key, instruction after variable expansion,
                         + for COPY/ADD: a hash of the content of the files copied,
                         + for ARG/RUN: the build arguments in scope)

A changed file therefore changes the key of the ``COPY`` that reads it and, through the parent
link, of every step after it, while the steps before keep theirs.  The *value* stored for a key is
the result: for a step that made a layer, the whole layer stack of the stage at that point (each
layer's blob digest and snapshot chain id), and for every step the history timestamp used, so a
fully cached rebuild reproduces the same image id.

Rows live in the ``build_cache`` table of the engine's SQLite database, so the cache survives the
process and is shared by concurrent builds.  Blobs and snapshots named by cached rows are kept
alive against image garbage collection by :data:`~portside.engine.image.schema.GC_ROOTS`;
``builder prune`` deletes rows and then lets the image store collect what nothing else uses.
"""

from __future__ import annotations

import hashlib
import json
import time

from portside.engine.builder.memo import SCHEMA as MEMO_SCHEMA
from portside.engine.image.store import LayerRef
from portside.engine.store.db import Database
from portside.engine.records import record

__all__ = ["CacheEntry", "BuildCache", "cache_key"]

Database.register_schema("build_memo", MEMO_SCHEMA)
Database.register_schema("build_cache", [
    """CREATE TABLE IF NOT EXISTS build_cache (
        key TEXT PRIMARY KEY,
        parent TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        layers TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL,
        size INTEGER NOT NULL DEFAULT 0,
        last_used REAL NOT NULL
    )""",
])


def cache_key(*parts: str) -> str:
    """SHA-256 of ``parts`` joined unambiguously, as ``sha256:<hex>``."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogateescape")
        h.update(str(len(data)).encode() + b":" + data + b"\n")
    return "sha256:" + h.hexdigest()


@record(frozen=True)
class CacheEntry:
    """A cached step result.

    ``layers`` is None for a step that made no layer (metadata), else the stage's whole layer
    stack after the step as ``(LayerRef, chain id)`` pairs.
    """

    key: str
    created: float
    layers: tuple[tuple[LayerRef, str], ...] | None


def _encode(layers: tuple[tuple[LayerRef, str], ...] | None) -> str:
    if layers is None:
        return ""
    return json.dumps([[l.diff_id, l.digest, l.size, l.media_type, c] for l, c in layers])


def _decode(text: str) -> tuple[tuple[LayerRef, str], ...] | None:
    if not text:
        return None
    return tuple((LayerRef(d, g, s, m), c) for d, g, s, m, c in json.loads(text))





class BuildCache:
    """Lookups and inserts of step results in one engine root.

    Args:
        db: the engine's database.
        image_store: to check that cached blobs and snapshots still exist, and to collect them
            after a prune.
    """

    def __init__(self, db: Database, image_store) -> None:
        self.db = db
        self.image_store = image_store

    def get(self, key: str) -> CacheEntry | None:
        """The entry for ``key``, or None (also when a layer it names has gone missing)."""
        rows = self.db.query("SELECT created, layers FROM build_cache WHERE key = ?", (key,))
        if not rows:
            return None
        layers = _decode(rows[0]["layers"])
        if layers:
            # Only the top layer can be missing without the parents missing too (GC removes
            # children first), so one check of the top is enough.
            top, chain = layers[-1]
            if (not self.image_store.snapshots.exists(chain)
                    or not self.image_store.content.exists(top.digest)):
                return None
        return CacheEntry(key, rows[0]["created"], layers)

    def touch(self, keys: list[str]) -> None:
        """Record that ``keys`` were used now (``builder prune`` keeps recent ones first)."""
        if keys:
            with self.db.transaction() as conn:
                conn.executemany("UPDATE build_cache SET last_used = ? WHERE key = ?",
                                 [(time.time(), k) for k in keys])

    def put(self, key: str, parent: str, description: str, created: float,
            layers: tuple[tuple[LayerRef, str], ...] | None, size: int = 0) -> CacheEntry:
        """Record the result of a step (replacing an older entry for the same key)."""
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO build_cache (key, parent, description, layers, created, "
                "size, last_used) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, parent, description[:200], _encode(layers), created, size, time.time()))
        return CacheEntry(key, created, layers)

    def entries(self) -> list[dict]:
        """Every entry as a dict (``builder du``-like listing)."""
        return [dict(r) for r in self.db.query(
            "SELECT key, parent, description, created, size, last_used FROM build_cache "
            "ORDER BY last_used DESC")]

    def prune(self, all: bool = False, until: float | None = None) -> dict:
        """Delete cache entries and free the blobs and snapshots only they kept alive.

        Args:
            all: remove every entry. Otherwise only *dangling* ones: entries whose top layer
                no image uses (intermediate results) and metadata-only entries.
            until: only entries last used before this time (Docker's ``until`` filter).

        Returns:
            ``{"CachesDeleted": [keys], "SpaceReclaimed": bytes}``.
        """
        with self.db.transaction() as conn:
            rows = conn.execute("SELECT key, layers, size, last_used FROM build_cache"
                                ).fetchall()
            used = {r[0] for r in conn.execute("SELECT chain_id FROM image_layers")}
            doomed: list[str] = []
            blobs: set[str] = set()
            chains: set[str] = set()
            for row in rows:
                layers = _decode(row["layers"])
                if not all and layers and layers[-1][1] in used:
                    continue
                if until is not None and row["last_used"] >= until:
                    continue
                doomed.append(row["key"])
                for ref, chain in layers or ():
                    blobs.add(ref.digest)
                    chains.add(chain)
            conn.executemany("DELETE FROM build_cache WHERE key = ?", [(k,) for k in doomed])
            # a remembered build stands for its steps' entries: with some gone, a rebuild would
            # give another image, so the memo forgets everything
            conn.execute("DELETE FROM build_memo")
        sizes = {}
        for chain in chains:
            try:
                sizes[chain] = int(self.image_store.snapshots.get(chain).get("size") or 0)
            except Exception:
                sizes[chain] = 0
        removed_blobs, removed_chains = self.image_store.collect(candidates_blobs=blobs,
                                                                 candidates_chains=chains)
        reclaimed = sum(sizes.get(c, 0) for c in removed_chains)
        return {"CachesDeleted": doomed, "SpaceReclaimed": reclaimed}
