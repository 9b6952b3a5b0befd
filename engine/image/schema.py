"""The image store's tables (see :mod:`.store`), apart so that opening the database can
register them without importing the store itself (every command opens it; few need images).

Also here: :data:`GC_ROOTS`, what garbage collection keeps besides the images themselves (the
layers of containers' images, the build cache's layers, compressed twins of layers) -- one static
table, so what is kept never depends on which modules a process happened to import.
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


#: What garbage collection keeps besides the images: ``(table, SQL)``, the SQL returning rows of
#: ``(blob digest, snapshot chain id)`` (either may be NULL); a root whose table does not exist
#: (yet) in a database keeps nothing.
GC_ROOTS: tuple[tuple[str, str], ...] = (
    # containers keep the layers of their image
    ("containers", "SELECT DISTINCT l.digest, l.chain_id FROM containers c "
                   "JOIN image_layers l ON l.image_id = c.image_id"),
    # the build cache keeps every layer stack it can answer a step with
    ("build_cache", "SELECT json_extract(j.value, '$[1]'), json_extract(j.value, '$[4]') "
                    "FROM build_cache b, json_each(b.layers) j WHERE b.layers != ''"),
    # compressed twins (a pull's or push's) of layers some image still uses
    ("registry_compressed", "SELECT c.digest, NULL FROM registry_compressed c "
                            "WHERE c.diff_id IN (SELECT diff_id FROM image_layers)"),
)


def register() -> None:
    """Add the tables to the database's migrations (idempotent)."""
    from ..store.db import Database

    Database.register_schema("images", SCHEMA)
