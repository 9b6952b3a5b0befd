"""The image store's tables (see :mod:`.store`), apart so that opening the database can
register them without importing the store itself (every command opens it; few need images).

Also here: the other keepers of image data (containers, the build cache, interrupted pulls)
register what they keep alive against garbage collection (:func:`register_references`), which
they do when imported -- without importing the image store either.
"""

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS images (
        id TEXT PRIMARY KEY,
        manifest_digest TEXT NOT NULL,
        manifest_media_type TEXT NOT NULL,
        created REAL NOT NULL,
        size INTEGER NOT NULL,
        added REAL NOT NULL,
        parent TEXT NOT NULL DEFAULT '',
        last_tag_time REAL NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS image_layers (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        diff_id TEXT NOT NULL,
        digest TEXT NOT NULL,
        size INTEGER NOT NULL,
        media_type TEXT NOT NULL,
        chain_id TEXT NOT NULL,
        PRIMARY KEY (image_id, idx)
    )""",
    "CREATE INDEX IF NOT EXISTS image_layers_digest ON image_layers(digest)",
    "CREATE INDEX IF NOT EXISTS image_layers_chain ON image_layers(chain_id)",
    """CREATE TABLE IF NOT EXISTS refs (
        name TEXT PRIMARY KEY,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
    )""",
    "CREATE INDEX IF NOT EXISTS refs_image ON refs(image_id)",
    """CREATE TABLE IF NOT EXISTS leases (
        resource TEXT NOT NULL,
        pid INTEGER NOT NULL,
        created REAL NOT NULL
    )""",
    # leases name their owner (pid and process start time: a recycled pid is not the owner)
    # and lease; a pull's lease (progress > 0: when it last made progress) stays for the resume
    # window after its owner stops (see store.leftovers)
    "ALTER TABLE leases ADD COLUMN owner TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE leases ADD COLUMN lease TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE leases ADD COLUMN progress REAL NOT NULL DEFAULT 0",
]


#: name -> function(conn) returning (blob digests, snapshot chain ids) kept alive
EXTRA_REFERENCES: dict = {}


def register_references(name: str, fn) -> None:
    """Have garbage collection keep what ``fn(conn)`` names: ``(blob digests, chain ids)``."""
    EXTRA_REFERENCES[name] = fn


def register() -> None:
    """Add the tables to the database's migrations (idempotent)."""
    from ..store.db import Database

    Database.register_schema("images", SCHEMA)
