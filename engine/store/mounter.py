"""The :class:`Mounter` protocol: what the engine needs from the kernel to assemble file trees.

Implemented by :class:`~.mount.LinuxMounter` (the syscalls), :class:`~.mount.FakeMounter` (unit
tests) and :class:`~.fuse.FuseOverlayMounter` (fuse-overlayfs, where the kernel refuses a user's
overlay). A module of its own so that the mounters, which every container start imports, do not
import :mod:`typing` (~2 ms) for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["Mounter"]


@runtime_checkable
class Mounter(Protocol):
    """What the engine needs from the kernel to assemble file trees. Paths are absolute."""

    def mount_overlay(self, lower: Sequence[Path], upper: Path | None, work: Path | None,
                      target: Path, *, readonly: bool = False, volatile: bool = False) -> None:
        """Mount an overlay of ``lower`` (topmost first) and ``upper`` at ``target``.

        With ``upper`` and ``work`` ``None`` the overlay is read-only (a single lower becomes a
        read-only bind mount). ``readonly`` makes a writable overlay read-only as well.
        ``volatile``: the upper directory is never synced (Linux 5.10's ``volatile`` option;
        ignored where the kernel lacks it) -- for a tree that is thrown away or copied into a
        layer right after, never mounted again: fsync inside it is free and unmounting does not
        flush it.

        Raises:
            InvalidArgument: no lower, or ``upper`` without ``work`` (or the reverse).
            RuntimeFailure: the kernel refused (the message carries its reason).
        """
        ...

    def bind(self, source: Path, target: Path, *, readonly: bool = False,
             recursive: bool = True) -> None:
        """Bind-mount ``source`` (a directory or a file) onto ``target``, which must exist.

        Raises:
            RuntimeFailure: the kernel refused.
        """
        ...

    def unmount(self, target: Path, *, lazy: bool = False) -> None:
        """Unmount ``target`` (``lazy``: detach now, finish when no longer busy).

        Raises:
            NotFound: nothing is mounted at ``target``.
            RuntimeFailure: the kernel refused (for instance busy).
        """
        ...

    def is_mounted(self, target: Path) -> bool:
        """Whether ``target`` is a mount point in this process's mount namespace."""
        ...
