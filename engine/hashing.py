"""sha256, with hashlib imported on first use.

``import hashlib`` starts OpenSSL (~2 ms), which a command that hashes nothing -- ``ps``, a
``run`` of an image already unpacked -- should not pay; the store, the image code and the lock
file hash through here.
"""

from __future__ import annotations


def sha256(data: bytes = b""):
    """A new ``hashlib.sha256`` object, fed ``data``."""
    import hashlib

    return hashlib.sha256(data)
