"""``commit``, ``diff`` and ``export``: what a container changed, as a layer, a list or a tarball.

A container's root filesystem is an overlay: the image's layers are the read-only *lower* dirs, and
every change the container makes lands in its own *upper* dir. overlayfs records a deletion as a
0:0 character device (a *whiteout*) and a directory whose lower contents are hidden as *opaque*.
That upper dir is therefore already the container's diff:

* ``diff`` walks it: a whiteout is ``D``, a path that also exists in a lower dir is ``C``, anything
  else ``A`` — the paths the engine itself creates as mount points (``/etc/hostname``…) are left out,
  as Docker does;
* ``commit`` tars it with :func:`~portside.engine.image.layer.write_layer` (``overlay_upper=True``
  turns whiteouts into ``.wh.`` entries and opaque dirs into ``.wh..wh..opq``), stores that as a new
  layer on top of the image's, and records the image with the container's config (plus ``-c``
  changes) and one more history entry. The image appears in one SQLite transaction at the end, so
  a commit killed half-way leaves no half image (only unreferenced files that garbage collection
  removes). A running container is frozen while its upper dir is read, under a trace
  (:mod:`.freeze`) that lets the next command thaw it if the commit dies before it does;
* ``export`` tars the merged view (mounted for the moment if the container is stopped).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

from portside.engine import events, faults

from . import freeze
from .containers import ContainerRecord

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, BinaryIO, Sequence

    from .lifecycle import Lifecycle


#: Paths the engine puts in every container as mount points; ``diff`` does not report them.
_ENGINE_PATHS = {"/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/dev", "/proc", "/sys",
                 "/dev/shm", "/dev/pts", "/dev/mqueue", "/sys/fs/cgroup",
                 "/sbin/docker-init"}

#: Container config keys carried into a committed image's config.
_IMAGE_KEYS = ("User", "ExposedPorts", "Env", "Cmd", "Entrypoint", "Volumes", "WorkingDir",
               "Labels", "StopSignal", "OnBuild", "Healthcheck")


def diff(lc: Lifecycle, rec: ContainerRecord) -> list[tuple[str, str]]:
    """Docker's ``diff``: ``[(kind, path)]`` with kind ``A``, ``C`` or ``D``, sorted by path."""
    upper = lc.paths(rec).upper
    lowers = lc.lowers(rec)  # the init layer too: a removed /etc/mtab is a deletion, as Docker says
    skip = set(_ENGINE_PATHS) | {m.get("Destination", "") for m in rec.mounts}
    out: list[tuple[str, str]] = []
    from portside.engine.image.layer import FUSE_OPAQUE_ENTRIES, upper_deletion

    for dirpath, dirnames, filenames in os.walk(upper):
        rel_dir = "/" + os.path.relpath(dirpath, upper).lstrip(".").lstrip("/")
        for name in sorted(dirnames + filenames):
            if name in FUSE_OPAQUE_ENTRIES:
                continue  # fuse-overlayfs' marks of an opaque directory (rootless, store/fuse.py)
            full = os.path.join(dirpath, name)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                continue
            gone = upper_deletion(name, st)
            path = (rel_dir.rstrip("/") + "/" + (gone or name))
            in_lower = any(os.path.lexists(str(low) + path) for low in lowers)
            if gone is not None:
                out.append(("D", path))
            elif in_lower:
                out.append(("C", path))
            elif path in skip:
                continue
            else:
                out.append(("A", path))
    out.sort(key=lambda item: item[1])
    return out


def commit(lc: Lifecycle, rec: ContainerRecord, *, repository: str | None = None,
           author: str = "", message: str = "", changes: Sequence[str] = (),
           pause: bool = True) -> str:
    """Make an image of the container's changes; returns the new image id.

    Args:
        lc: the lifecycle (engine, paths, runtime).
        rec: the container.
        repository: ``name[:tag]`` for the image, or None for an untagged one.
        author: the image's ``author``.
        message: the history entry's comment.
        changes: Dockerfile instructions applied to the config (``CMD ["x"]``, ``ENV A=1``).
        pause: freeze a running container while its files are read (Docker's default).
    Raises:
        InvalidArgument: a bad reference or change. NotFound: the image is gone.
    """
    from portside.engine.image import oci
    from portside.engine.image.changes import apply_changes
    from portside.engine.image.layer import write_layer
    from portside.engine.image.reference import parse_reference
    from portside.engine.image.store import LayerRef

    from .lifecycle import Status, status_of

    tags = [parse_reference(repository)] if repository else []
    store = lc.image_store
    image = store.get(rec.image_id)
    base = store.config(image)
    lc.refresh(rec)
    # Frozen while the upper dir is read (Docker's default), with a trace that lets the next
    # command thaw it should this process die before it does (see runtime/freeze.py).
    from portside.engine.rootless import has_cgroups

    # rootless without a cgroup there is no freezer: read the files while it runs, as podman does
    freezing = freeze.frozen_for(lc, rec, "commit") if (
        pause and status_of(rec) == Status.RUNNING and has_cgroups()) \
        else contextlib.nullcontext()
    with tempfile.TemporaryFile(dir=lc.tmp_dir) as spool:
        with freezing:
            write_layer(lc.paths(rec).upper, spool, overlay_upper=True, compression=None)
        faults.point("commit-layer-written")
        spool.seek(0)
        with store.lease() as leases:
            layer, _chain = store.ingest_layer(spool, image.top_chain_id, leases)
            faults.point("commit-layer-ingested")
            config = {k: rec.config[k] for k in _IMAGE_KEYS if rec.config.get(k) is not None}
            config = apply_changes(config, list(changes))
            now = time.time()
            history = list(base.get("history") or [])
            entry: dict[str, Any] = {"created": oci.rfc3339(now),
                                     "created_by": " ".join(
                                         (rec.config.get("Entrypoint") or [])
                                         + (rec.config.get("Cmd") or []))}
            if message:
                entry["comment"] = message
            if author:
                entry["author"] = author
            history.append(entry)
            doc = dict(base)
            doc.update(created=oci.rfc3339(now), config=config, history=history,
                       rootfs={"type": "layers",
                               "diff_ids": [*base["rootfs"]["diff_ids"], layer.diff_id]})
            if author:
                doc["author"] = author
            else:
                doc.pop("author", None)
            old = [LayerRef(l["diff_id"], l["digest"], l["size"], l["media_type"])
                   for l in image.layers]
            new = store.create(doc, [*old, layer], tags=tags, leases=leases, parent=image.id,
                               action="commit")
    with lc.db.transaction() as conn:
        events.emit(conn, "container", "commit", rec.id, name=rec.name, imageID=new.id)
    return new.id


def export(lc: Lifecycle, rec: ContainerRecord, out: BinaryIO) -> None:
    """Write the container's whole filesystem (merged view) as a plain tar to ``out``."""
    from portside.engine.image.layer import write_layer

    with lc.rootfs(rec) as root:
        write_layer(Path(root), out, compression=None)
