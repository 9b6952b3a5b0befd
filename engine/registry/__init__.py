"""portside.engine.registry: the OCI distribution client (pull, push, login, search).

Modules, from the wire up:

* :mod:`.client` — HTTP to one registry: keep-alive connections, TLS, redirects, error bodies.
* :mod:`.auth` — ``WWW-Authenticate`` challenges, bearer tokens (cached per scope), basic auth.
* :mod:`.credentials` — Docker's ``config.json`` and ``docker-credential-*`` helpers.
* :mod:`.pull` / :mod:`.push` / :mod:`.search` — the operations, reporting through
  :mod:`.progress`.

This module also keeps the little the client remembers between runs, in two tables of the
engine's database:

* ``registry_blob_sources`` — which repositories of which registry are known to hold a blob
  (filled by pulls and pushes), so a push can *mount* the blob from there instead of uploading it.
* ``registry_compressed`` — for a layer stored uncompressed, the gzip blob a push made of it, so
  the next push skips the compression and can ask the registry whether it already has it.
"""

from __future__ import annotations

from ..store.db import Database

Database.register_schema("registry", [
    """CREATE TABLE IF NOT EXISTS registry_blob_sources (
        digest TEXT NOT NULL,
        registry TEXT NOT NULL,
        repository TEXT NOT NULL,
        PRIMARY KEY (digest, registry, repository)
    )""",
    """CREATE TABLE IF NOT EXISTS registry_compressed (
        diff_id TEXT NOT NULL,
        compression TEXT NOT NULL,
        digest TEXT NOT NULL,
        size INTEGER NOT NULL,
        PRIMARY KEY (diff_id, compression)
    )""",
])


def record_sources(db: Database, registry: str, repository: str, digests: list[str]) -> None:
    """Remember that ``registry/repository`` holds each blob of ``digests``."""
    with db.transaction() as conn:
        conn.executemany("INSERT OR IGNORE INTO registry_blob_sources (digest, registry, repository)"
                         " VALUES (?, ?, ?)", [(d, registry, repository) for d in digests])


def known_sources(db: Database, registry: str, digest: str) -> list[str]:
    """Repositories of ``registry`` known to hold blob ``digest``."""
    rows = db.query("SELECT repository FROM registry_blob_sources WHERE digest = ? AND registry = ?",
                    (digest, registry))
    return [r["repository"] for r in rows]
