"""``cp`` with a Docker Engine: Docker's placement rules over dockerd's archive endpoint.

dockerd answers ``GET/PUT /containers/{id}/archive`` with tar streams and a stat of the path
(``HEAD``); where the copy lands is the client's business, as it is for Docker's CLI:

* ``cp CTR:SRC DEST``: a folder DEST that exists receives SRC under SRC's own name (a followed
  link's name, not its target's); otherwise SRC is written as DEST; ``SRC/.`` puts SRC's
  contents into DEST. The archive is unpacked confined to its staging folder (tarfile's
  ``data`` filter: no path out of it, no devices; owners kept only with ``-a``), then moved.
* ``cp SRC CTR:DEST``: into a folder DEST that exists SRC keeps its name (``SRC/.``: its
  contents go in); otherwise it becomes DEST. ``-L`` follows a link SRC on this machine.
"""

from __future__ import annotations

import os

from ..errors import InvalidArgument, NotFound

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any

#: Go's os.ModeDir, as Docker's archive stat reports a folder's mode.
MODE_DIR = 1 << 31


def copy_out(container: Any, src: str, dest: str, *, archive: bool = False,
             follow: bool = False) -> None:
    """Docker's ``cp CTR:SRC DEST`` (see the module's description).

    Raises:
        NotFound: SRC is not in the container, or DEST's folder does not exist.
        InvalidArgument: a folder would replace a file or the other way round.
    """
    import shutil
    import tempfile

    dest_path = os.path.abspath(dest)
    into = os.path.isdir(dest_path) and not dest.endswith("/.")
    if dest.endswith("/") and not os.path.isdir(dest_path):
        raise NotFound(f"destination directory {dest} does not exist")
    if not os.path.isdir(os.path.dirname(dest_path) or "/"):
        raise NotFound(f"destination directory {os.path.dirname(dest)} does not exist")
    with tempfile.TemporaryDirectory(prefix=".portside-cp-",
                                     dir=dest_path if into else os.path.dirname(dest_path)) as tmp:
        data = os.path.join(tmp, "archive.tar")
        with open(data, "wb") as f:
            stat = container.get_archive(src, f, follow_links=follow)
        staging = os.path.join(tmp, "unpacked")
        os.mkdir(staging)
        _extract(data, staging, keep_owner=archive)
        entry = os.path.join(staging, stat["name"])
        # into a folder SRC keeps its own name (a followed link's, not its target's)
        target = os.path.join(dest_path, os.path.basename(src.rstrip("/")) or stat["name"]) \
            if into else dest_path
        if src.endswith("/.") and os.path.isdir(dest_path):
            for name in os.listdir(entry):
                _move(os.path.join(entry, name), os.path.join(dest_path, name))
            return
        if os.path.isdir(target) and not os.path.islink(target) and os.path.isdir(entry):
            for name in os.listdir(entry):
                _move(os.path.join(entry, name), os.path.join(target, name))
            return
        if os.path.lexists(target) and os.path.isdir(target) != os.path.isdir(entry):
            kinds = ("directory" if os.path.isdir(target) else "non-directory",
                     "directory" if os.path.isdir(entry) else "non-directory")
            raise InvalidArgument(f"cannot overwrite {kinds[0]} {dest} with {kinds[1]}")
        if os.path.lexists(target) and not os.path.isdir(target):
            os.unlink(target)
        shutil.move(entry, target)


def _move(src: str, dst: str) -> None:
    import shutil

    if os.path.isdir(src) and os.path.isdir(dst) and not os.path.islink(dst):
        for name in os.listdir(src):
            _move(os.path.join(src, name), os.path.join(dst, name))
        return
    if os.path.lexists(dst) and not os.path.isdir(dst):
        os.unlink(dst)
    shutil.move(src, dst)


def _extract(path: str, dest: str, *, keep_owner: bool) -> None:
    """Unpack a tar from the daemon into ``dest`` with tarfile's ``data`` filter: nothing
    outside ``dest``, no devices; owners only with ``-a`` (as Docker's CLI)."""
    import tarfile

    def owned(member: tarfile.TarInfo, target: str) -> tarfile.TarInfo | None:
        safe = tarfile.data_filter(member, target)  # also drops the owner
        if safe is not None and os.geteuid() == 0:
            # no names: the ids as they are, not looked up again on this machine
            return safe.replace(uid=member.uid, gid=member.gid, uname="", gname="",
                                deep=False)
        return safe

    with tarfile.open(path) as tar:
        tar.extractall(dest, filter=owned if keep_owner else "data")


def copy_in(container: Any, src: str, dest: str, *, follow: bool = False) -> None:
    """Docker's ``cp SRC CTR:DEST`` (see the module's description).

    Raises:
        NotFound: SRC does not exist here, or DEST names a folder that does not exist.
    """
    import tarfile
    import tempfile

    if not os.path.lexists(src):
        raise NotFound(f"no such file or directory: {src}")
    local = os.path.realpath(src) if follow else src
    contents = src.endswith("/.") and os.path.isdir(local)
    stat = container.stat(dest)
    if stat is not None and stat["mode"] & MODE_DIR:
        parent, top = dest, "." if contents else os.path.basename(os.path.normpath(src))
    elif dest.endswith("/"):
        raise NotFound(f"destination directory {dest} does not exist")
    else:
        parent = os.path.dirname(dest.rstrip("/")) or "/"
        top = os.path.basename(dest.rstrip("/"))
    with tempfile.TemporaryFile() as buf:
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(local, arcname=top)
        buf.seek(0)
        container.put_archive(parent, buf)
