"""Rootless storage: what differs when the store is written inside a user's namespace.

* Layers are extracted there, so their files get their real owners within the namespace's ids
  (container uid N is host uid subuid_start+N-1 on disk; uid 0 is the user), or 0 when the
  namespace maps a single id (:mod:`portside.engine.image.layer`).
* overlayfs is mounted with ``userxattr`` (Linux 5.11): whiteouts are 0:0 character devices,
  which anybody may create, and opaque directories carry ``user.overlay.opaque`` instead of
  ``trusted.overlay.opaque``, which only the host's root may write. ``metacopy`` is refused with
  it; ``volatile`` is allowed (:mod:`portside.engine.store.mount`).
* Where the kernel refuses a user's overlay (before 5.11, or a policy), fuse-overlayfs serves it
  from the same snapshots (:mod:`portside.engine.store.fuse`; the ``rootless-storage`` key
  chooses: ``auto``, ``overlay``, ``fuse-overlayfs``).
* The store records which of the two conventions its snapshots follow (:func:`check_store_mode`),
  so a store written by root is never mounted rootless or the reverse: the opaque markers would
  be ignored and deleted directories would come back.
"""

from __future__ import annotations

import os
from pathlib import Path

from portside.engine.errors import InvalidArgument, RuntimeFailure

#: The file, in the state root, that names the store's mode.
MODE_FILE = "storage-mode"


def current_mode() -> str:
    """``rootless`` inside a user's namespace (or as a user), ``root`` otherwise."""
    from . import active

    return "rootless" if active() else "root"


def check_store_mode(root: Path) -> str:
    """Record the mode of the store at ``root`` on first use and refuse the other one later.

    Raises:
        InvalidArgument: the store was written in the other mode.
    """
    mode = current_mode()
    path = Path(root) / MODE_FILE
    try:
        with open(path) as f:
            found = f.read().strip()
    except FileNotFoundError:
        found = ""
    if not found:
        # a store from before the mode was recorded is its owner's: the host's root writes
        # root's convention; a user's files (root as seen from a user namespace) the other
        found = "rootless" if mode == "root" and os.stat(root).st_uid != 0 else mode
        if found == mode:
            tmp = path.with_name(f".{MODE_FILE}.{os.getpid()}")
            tmp.write_text(mode + "\n")
            os.replace(tmp, path)
            return mode
    if found != mode:
        if mode == "rootless":
            raise InvalidArgument(f"the store {root} was written by root: a user's store is "
                                  f"their own (unset PORTSIDE_ROOT for the default, "
                                  f"~/.local/share/portside)")
        raise InvalidArgument(f"the store {root} was written rootless (by its user, inside "
                              f"their user namespace): use it as that user")
    return mode


def rootless_overlay_failure(exc: OSError) -> RuntimeFailure:
    """The error for an overlay mount refused inside the user namespace."""
    release = os.uname().release
    parts = []
    for p in release.split("-")[0].split(".")[:2]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits or 0))
    if tuple(parts) < (5, 11):
        return RuntimeFailure(f"this kernel ({release}) cannot mount overlayfs without root "
                              f"(Linux 5.11 or later can): rootless portside needs a newer kernel")
    return RuntimeFailure(f"mount overlay (rootless, userxattr): {exc.strerror}")


#: What ``info`` says of the kernel's overlay in the user namespace.
KERNEL_MODE = "overlay, userxattr (in the user namespace)"


def storage_mode(configured: str | None, scratch: Path | None) -> tuple[str, str]:
    """``(driver, description)`` for ``info``: which overlay rootless containers get, by the
    ``rootless-storage`` key (``configured``); with ``auto`` a tiny overlay of the kernel's is
    mounted in ``scratch`` (a folder of the store) to see whether the kernel allows it."""
    from portside.engine.store.fuse import check_choice, probe_kernel_overlay, unusable_reason

    choice = check_choice(configured)
    if choice == "overlay":
        return "overlay", KERNEL_MODE
    unusable = unusable_reason()
    if choice == "fuse-overlayfs":
        return "fuse-overlayfs", ("fuse-overlayfs (rootless-storage = fuse-overlayfs)" +
                                  (f"; unusable: {unusable}" if unusable else ""))
    refused = probe_kernel_overlay(scratch) if scratch is not None else None
    if refused is None:
        return "overlay", KERNEL_MODE
    if unusable is None:
        return "fuse-overlayfs", f"fuse-overlayfs (the kernel refuses a user's overlay: {refused})"
    return "overlay", f"none: {refused}; and {unusable}"
