"""portside.engine.store: where the engine keeps what it knows.

Three pieces, bottom up:

- :class:`ContentStore` (``content.py``): immutable blobs named by their sha256 digest, written
  through verified, resumable ingests and an atomic rename.
- :class:`Database` (``db.py``): the SQLite metadata file (WAL, one transaction per operation)
  that every module registers its tables in.
- :class:`Snapshots` (``snapshots.py``): image layers unpacked once, keyed by OCI chain id, shared
  by every image; :func:`chain_ids` computes the keys.

``mount.py`` is the seam for the one privileged thing the store's users need, mounting: a
:class:`Mounter` protocol, the real :class:`LinuxMounter` and a :class:`FakeMounter` for unit tests.
"""

import os as _os

# The names load on first use: every command opens the database, few need the content store,
# the snapshots or ctypes for mounting.
_HOME = {
    "ContentStore": "content", "Writer": "content", "digest_of": "content",
    "validate_digest": "content",
    "Database": "db",
    "Snapshots": "snapshots", "chain_ids": "snapshots",
    "Mounter": "mounter", "LinuxMounter": "mount", "FakeMounter": "mount", "MountCall": "mount",
    "mount_points": "mount",
}
__all__ = [*_HOME, "LEFTOVER_FOLDERS", "anything_left"]

#: Where unfinished work lives while it runs (relative to the root): what a killed process leaves
#: is there, or in the ``leases`` table (see :mod:`.leftovers`).
LEFTOVER_FOLDERS = ("tmp", "build-cache/tmp", "content/ingest", "snapshots/.staging",
                    "snapshots/.trash")


def anything_left(root, db) -> bool:
    """Whether :func:`.leftovers.reap` could have anything to do: one of the folders is not
    empty, or a lease exists. Every command asks, so this imports nothing and costs a few
    ``scandir`` calls and one query (:mod:`.leftovers` is imported only when it says yes)."""
    for rel in LEFTOVER_FOLDERS:
        try:
            with _os.scandir(_os.path.join(root, rel)) as it:
                for _ in it:
                    return True
        except (FileNotFoundError, NotADirectoryError):
            pass
    try:
        return bool(db.query("SELECT 1 FROM leases LIMIT 1"))
    except Exception:  # noqa: BLE001 - no leases table: nothing was ever leased
        return False


def __getattr__(name: str):
    if name in _HOME:
        import importlib

        return getattr(importlib.import_module(f"portside.engine.store.{_HOME[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
