"""``portside import``: a root filesystem tarball becomes a one-layer image.

This is the classic ``FROM scratch`` + ``ADD rootfs.tar.gz /`` base image made directly. The tar
(plain, gzip or zstd, from a file or standard input) is read once: the uncompressed stream is
stored as the layer blob while it is unpacked into the layer's snapshot.
"""

from __future__ import annotations

import time

from . import oci
from .changes import apply_changes
from .reference import parse_reference
from .store import ImageRecord, ImageStore

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import BinaryIO, Sequence


def import_rootfs(store: ImageStore, stream: BinaryIO, *, repository: str | None = None,
                  changes: Sequence[str] = (), message: str = "", source: str = "-",
                  platform: dict | None = None) -> ImageRecord:
    """Import a rootfs tarball as an image; returns the new image.

    Raises InvalidArgument for a bad reference or a malicious tar; nothing is listed on failure.
    """
    tags = [parse_reference(repository)] if repository else []
    now = time.time()
    config = apply_changes({}, list(changes))
    with store.lease() as leases:
        layer, _chain = store.ingest_layer(stream, None, leases)
        history = [{"created": oci.rfc3339(now), "created_by": "",
                    "comment": message or f"Imported from {source}"}]
        doc = oci.new_config(diff_ids=[layer.diff_id], history=history, config=config,
                             created=now, platform_=platform)
        return store.create(doc, [layer], tags=tags, leases=leases, action="import")
