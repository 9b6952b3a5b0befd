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

# The names load on first use: every command opens the database, few need the content store,
# the snapshots or ctypes for mounting.
_HOME = {
    "ContentStore": "content", "Writer": "content", "digest_of": "content",
    "validate_digest": "content",
    "Database": "db",
    "Snapshots": "snapshots", "chain_ids": "snapshots",
    "Mounter": "mount", "LinuxMounter": "mount", "FakeMounter": "mount", "MountCall": "mount",
    "mount_points": "mount",
}
__all__ = list(_HOME)


def __getattr__(name: str):
    if name in _HOME:
        import importlib

        return getattr(importlib.import_module(f"portside.engine.store.{_HOME[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
