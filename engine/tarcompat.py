"""tarfile's extraction filters (PEP 706) where the interpreter predates them.

Python 3.11.4 (and 3.10.12, 3.12) added ``tarfile.tar_filter``, ``tarfile.FilterError``,
``TarInfo.replace`` and the ``filter=`` argument of ``TarFile.extractall``. Debian 12's own
Python is 3.11.2, and it is the interpreter a user without root runs portside with. Importing
this module adds what is missing, with the same meaning (the ``tar`` filter: no absolute names,
nothing outside the destination, no set-id, sticky or group/other-write bits); on a newer
interpreter it does nothing.
"""

from __future__ import annotations

import copy
import os
import stat
import tarfile

__all__ = ["install"]


class FilterError(tarfile.TarError):
    pass


class AbsolutePathError(FilterError):
    def __init__(self, tarinfo: tarfile.TarInfo) -> None:
        self.tarinfo = tarinfo
        super().__init__(f"member {tarinfo.name!r} has an absolute path")


class OutsideDestinationError(FilterError):
    def __init__(self, tarinfo: tarfile.TarInfo, path: str) -> None:
        self.tarinfo = tarinfo
        self._path = path
        super().__init__(f"{tarinfo.name!r} would be extracted to {path!r}, which is outside "
                         f"the destination")


_UNSET = object()


def _replace(self: tarfile.TarInfo, *, name=_UNSET, mtime=_UNSET, mode=_UNSET, linkname=_UNSET,
             uid=_UNSET, gid=_UNSET, uname=_UNSET, gname=_UNSET, deep: bool = True
             ) -> tarfile.TarInfo:
    result = copy.deepcopy(self) if deep else copy.copy(self)
    for key, value in (("name", name), ("mtime", mtime), ("mode", mode), ("linkname", linkname),
                       ("uid", uid), ("gid", gid), ("uname", uname), ("gname", gname)):
        if value is not _UNSET:
            setattr(result, key, value)
    return result


def tar_filter(member: tarfile.TarInfo, dest_path: str) -> tarfile.TarInfo:
    """PEP 706's ``tar`` filter."""
    name = member.name.lstrip("/" + os.sep)
    if os.path.isabs(name):
        raise AbsolutePathError(member)
    dest = os.path.realpath(dest_path)
    target = os.path.realpath(os.path.join(dest, name))
    if os.path.commonpath([target, dest]) != dest:
        raise OutsideDestinationError(member, target)
    mode = member.mode
    if mode is not None:
        mode &= 0o7777 & ~(stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | stat.S_IWGRP
                          | stat.S_IWOTH)
    return _replace(member, name=name, mode=mode, deep=False)


def _extractall(self: tarfile.TarFile, path: str = ".", members=None, *,
                numeric_owner: bool = False, filter=None) -> None:
    if filter is None:
        return _ORIGINAL_EXTRACTALL(self, path, members, numeric_owner=numeric_owner)
    chosen = []
    for member in (self.getmembers() if members is None else members):
        kept = filter(member, path)
        if kept is not None:
            chosen.append(kept)
    return _ORIGINAL_EXTRACTALL(self, path, chosen, numeric_owner=numeric_owner)


_ORIGINAL_EXTRACTALL = tarfile.TarFile.extractall


def install() -> None:
    """Add the missing pieces to :mod:`tarfile` (nothing on Python >= 3.11.4)."""
    if hasattr(tarfile, "tar_filter"):
        return
    # (the stubs describe a newer tarfile, where these exist with their own types)
    tarfile.FilterError = FilterError  # type: ignore[misc, assignment]
    tarfile.AbsolutePathError = AbsolutePathError  # type: ignore[misc, assignment]
    tarfile.OutsideDestinationError = OutsideDestinationError  # type: ignore[misc, assignment]
    tarfile.tar_filter = tar_filter
    tarfile.TarInfo.replace = _replace  # type: ignore[method-assign, assignment]
    tarfile.TarFile.extractall = _extractall  # type: ignore[method-assign, assignment]


install()
