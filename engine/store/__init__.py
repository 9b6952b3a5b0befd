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

from portside.engine.store.content import ContentStore, Writer, digest_of, validate_digest
from portside.engine.store.db import Database
from portside.engine.store.mount import FakeMounter, LinuxMounter, Mounter, MountCall, mount_points
from portside.engine.store.snapshots import Snapshots, chain_ids

__all__ = [
    "ContentStore", "Writer", "digest_of", "validate_digest",
    "Database",
    "Snapshots", "chain_ids",
    "Mounter", "LinuxMounter", "FakeMounter", "MountCall", "mount_points",
]
