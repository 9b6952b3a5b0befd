"""fuse-overlayfs: the overlay of a rootless container where the kernel refuses a user's one.

Linux mounts overlayfs inside a user namespace from 5.11 (with ``userxattr``, see
:mod:`portside.engine.rootless.storage`); older kernels, and hosts whose policy forbids it, refuse
with EPERM or EINVAL. There, as podman does, the overlay is served by ``fuse-overlayfs`` (Debian's
package), a FUSE daemon started inside the user's namespace that reads the same snapshots:

* the lower dirs are the store's snapshots as they are (whiteouts as 0:0 character devices,
  opaque directories marked ``user.overlay.opaque``), which fuse-overlayfs reads as overlayfs
  does;
* in the upper dir it marks a deletion with a 0:0 character device too (a ``.wh.NAME`` file where
  the kernel refuses the device), and an opaque directory with ``user.fuseoverlayfs.opaque``, a
  ``.wh..wh..opq`` file and a ``.wh..opq`` whiteout: :mod:`portside.engine.image.layer` and
  ``diff`` read both conventions (:func:`upper_marker`);
* the daemon detaches once the file system is mounted and ends when it is unmounted (the
  kernel's ``umount2`` in the user's mount namespace, as for overlayfs).

Which one a rootless engine uses is the ``rootless-storage`` config key
(``PORTSIDE_ROOTLESS_STORAGE``): ``auto`` (the default: the kernel's, and fuse-overlayfs for a
mount the kernel refuses), ``overlay`` or ``fuse-overlayfs`` (:func:`overlay_mounter`).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess

from portside.engine.errors import InvalidArgument, RuntimeFailure

from .mount import LinuxMounter, _check_overlay_args

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

#: The values of the ``rootless-storage`` key.
CHOICES = ("auto", "overlay", "fuse-overlayfs")

#: The FUSE device the daemon opens (Debian ships it 0666; a user cannot mount without it).
FUSE_DEVICE = "/dev/fuse"

#: Seconds the daemon may take to mount before the start gives up.
MOUNT_TIMEOUT = 30.0


def fuse_overlayfs() -> str | None:
    """The path of ``fuse-overlayfs``, or None where it is not installed."""
    return shutil.which("fuse-overlayfs") or next(
        (p for p in ("/usr/bin/fuse-overlayfs", "/usr/local/bin/fuse-overlayfs")
         if os.access(p, os.X_OK)), None)


def unusable_reason() -> str | None:
    """Why fuse-overlayfs cannot serve an overlay here (one line), or None when it can."""
    if fuse_overlayfs() is None:
        return "fuse-overlayfs is not installed (Debian's fuse-overlayfs package)"
    if not os.access(FUSE_DEVICE, os.R_OK | os.W_OK):
        return (f"{FUSE_DEVICE} is not readable and writable by this user (Debian ships it "
                f"0666; here it is {_mode(FUSE_DEVICE)})")
    return None


def _mode(path: str) -> str:
    try:
        return oct(os.stat(path).st_mode & 0o7777)[2:].rjust(4, "0")
    except OSError as exc:
        return exc.strerror or "missing"


def check_choice(configured: str | None) -> str:
    """``configured`` (the ``rootless-storage`` key) checked; ``auto`` for None.

    Raises:
        InvalidArgument: not one of :data:`CHOICES`.
    """
    choice = (configured or "auto").strip().lower()
    if choice not in CHOICES:
        raise InvalidArgument(f"rootless-storage must be one of {', '.join(CHOICES)}, not "
                              f"{configured!r}")
    return choice


class FuseOverlayMounter(LinuxMounter):
    """A :class:`~.mounter.Mounter` whose overlays are fuse-overlayfs mounts (binds and
    unmounts are the kernel's, as :class:`~.mount.LinuxMounter` does them)."""

    def mount_overlay(self, lower: Sequence[Path], upper: Path | None, work: Path | None,
                      target: Path, *, readonly: bool = False, volatile: bool = False) -> None:
        """See :meth:`Mounter.mount_overlay`.

        Raises:
            RuntimeFailure: fuse-overlayfs is missing or cannot open /dev/fuse, a path it
                cannot be given (a ``,`` or ``:`` in it), or it failed (its message).
        """
        _check_overlay_args(lower, upper, work)
        if upper is None and len(lower) == 1:
            self.bind(lower[0], target, readonly=True, recursive=False)
            return
        paths = [*lower, *([upper, work] if upper is not None and work is not None else [])]
        for path in paths:
            if any(c in os.fspath(path) for c in ",:\\"):
                raise RuntimeFailure(f"mount fuse-overlayfs on {target}: fuse-overlayfs cannot "
                                     f"take the path {path} (a ',', ':' or '\\' in it)")
        reason = unusable_reason()
        if reason is not None:
            raise RuntimeFailure(f"mount fuse-overlayfs on {target}: {reason}")
        opts = "lowerdir=" + ":".join(os.fspath(p) for p in lower)
        if upper is not None and work is not None:
            opts += f",upperdir={os.fspath(upper)},workdir={os.fspath(work)}"
            if volatile:
                opts += ",fsync=0"  # its volatile: fsync inside the tree is not passed on
        try:
            # the daemon detaches once it serves the mount (its output then goes to /dev/null)
            done = subprocess.run([fuse_overlayfs() or "fuse-overlayfs", "-o", opts,
                                   os.fspath(target)], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  timeout=MOUNT_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeFailure(f"mount fuse-overlayfs on {target}: {exc}") from exc
        if done.returncode != 0:
            lines = [ln for ln in done.stderr.decode(errors="replace").splitlines()
                     if ln.strip() and not ln.startswith("unknown argument ignored")]
            raise RuntimeFailure(f"mount fuse-overlayfs on {target}: "
                                 f"{lines[-1] if lines else f'exit status {done.returncode}'}")
        if readonly or upper is None:
            try:
                self._make_readonly(target, False)
            except OSError as exc:
                self.unmount(target, lazy=True)
                raise RuntimeFailure(f"mount fuse-overlayfs read-only on {target}: "
                                     f"{exc.strerror}") from exc


class AutoOverlayMounter(LinuxMounter):
    """The kernel's overlayfs, and fuse-overlayfs for an overlay the kernel refuses the user
    (``rootless-storage = auto``). Once the kernel refused, this process asks it no more."""

    #: whether the kernel refused a user's overlay in this process (None: not tried yet)
    kernel_refused: bool | None = None

    def mount_overlay(self, lower: Sequence[Path], upper: Path | None, work: Path | None,
                      target: Path, *, readonly: bool = False, volatile: bool = False) -> None:
        """See :meth:`Mounter.mount_overlay`."""
        if not AutoOverlayMounter.kernel_refused:
            try:
                super().mount_overlay(lower, upper, work, target, readonly=readonly,
                                      volatile=volatile)
                AutoOverlayMounter.kernel_refused = False
                return
            except RuntimeFailure as exc:
                cause = exc.__cause__
                if not (isinstance(cause, OSError) and cause.errno in (errno.EPERM, errno.EINVAL)
                        and self.userxattr) or unusable_reason() is not None:
                    raise
                AutoOverlayMounter.kernel_refused = True
        FuseOverlayMounter(userxattr=self.userxattr).mount_overlay(
            lower, upper, work, target, readonly=readonly, volatile=volatile)


def overlay_mounter(configured: str | None = None, *, rootless: bool | None = None) -> LinuxMounter:
    """The mounter of this engine: the kernel's for root; rootless, by the ``rootless-storage``
    key (``configured``; None reads the config): :class:`AutoOverlayMounter`,
    :class:`~.mount.LinuxMounter` (``overlay``) or :class:`FuseOverlayMounter`.

    Raises:
        InvalidArgument: an unknown value of the key.
    """
    if rootless is None:
        from portside.engine import rootless as rl

        rootless = rl.in_namespace()
    if not rootless:
        return LinuxMounter()
    if configured is None:
        from portside.engine.config import load_config

        configured = load_config().rootless_storage
    choice = check_choice(configured)
    if choice == "fuse-overlayfs":
        return FuseOverlayMounter(userxattr=True)
    if choice == "overlay":
        return LinuxMounter(userxattr=True)
    return AutoOverlayMounter(userxattr=True)


def probe_kernel_overlay(scratch: Path) -> str | None:
    """Mount a tiny overlay of the kernel's in ``scratch`` (a folder of the store) and unmount
    it: None when that works, else the kernel's reason (``info`` says which overlay runs)."""
    import tempfile

    from pathlib import Path as _Path

    scratch.mkdir(parents=True, exist_ok=True)
    top = _Path(tempfile.mkdtemp(prefix=".overlay-probe-", dir=scratch))
    try:
        for name in ("lower", "upper", "work", "merged"):
            (top / name).mkdir()
        kernel = LinuxMounter(userxattr=True)
        try:
            kernel.mount_overlay([top / "lower"], top / "upper", top / "work", top / "merged")
        except RuntimeFailure as exc:
            return str(exc)
        kernel.unmount(top / "merged")
        return None
    finally:
        shutil.rmtree(top, ignore_errors=True)
