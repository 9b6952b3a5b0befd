"""Docker's *init layer*: the few entries every container has that are neither the image's nor its own.

Docker puts a small read-only layer between a container's image and its writable layer (the
``<id>-init`` layer of its graph driver). portside keeps the entries of it that programs notice:

* ``/etc/mtab``, a symlink to ``/proc/mounts`` (``mount``, ``df`` and libmount read it), whatever
  the image has there;
* empty ``/etc/hostname``, ``/etc/hosts`` and ``/etc/resolv.conf``: the points the engine
  bind-mounts the container's own copies on. Without them the runtime would create the missing
  ones in the container's upper dir, and ``diff`` would show ``C /etc`` for a container that
  changed nothing, and ``commit`` would put an empty ``/etc/resolv.conf`` into the image.

Because the layer sits *below* the container's upper dir, it is part of the merged root
filesystem (so ``export`` writes it, as Docker's does) but not of the container's changes
(``diff`` and ``commit`` read only the upper dir), and never of an image. A container that
deletes ``/etc/mtab`` has a deletion to show, as under Docker.

The layer is ``containers/<id>/init/``, made when the container is created (and, for containers
created before it existed, when their root filesystem is next mounted).
"""

from __future__ import annotations

import os
from pathlib import Path

#: What the init layer holds: path inside the container -> a symlink's target, or None for an
#: empty file (mode 0755 and owned by root, as Docker makes them).
ENTRIES: dict[str, str | None] = {
    "etc/mtab": "/proc/mounts",
    "etc/hostname": None,
    "etc/hosts": None,
    "etc/resolv.conf": None,
}


def prepare(layer: Path) -> Path:
    """Make the init layer at ``layer`` unless it is there already; returns ``layer``.

    Idempotent, and safe to repeat after an interruption: each entry is checked before it is
    made.
    """
    for rel, target in ENTRIES.items():
        path = layer / rel
        if os.path.lexists(path):
            continue
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if target is not None:
            os.symlink(target, path)
        else:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o755))
            os.chmod(path, 0o755)  # whatever the umask
    return layer
