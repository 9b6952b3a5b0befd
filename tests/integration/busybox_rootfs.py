"""Make a tiny busybox root filesystem for runtime tests, with no image store and no registry.

Debian's ``busybox-static`` ships one statically linked ``/bin/busybox`` that behaves as ``sh``,
``ls``, ``cat``, ``sleep``… depending on the name it is called by. A root filesystem for a test
container is therefore that one binary, a symlink per applet, the empty directories the OCI runtime
mounts over (``/proc``, ``/dev``, ``/sys``…) and minimal ``/etc/passwd`` and ``/etc/group`` files so
user names resolve.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

BUSYBOX = Path("/bin/busybox")

#: Directories every container root needs, whether or not the runtime mounts over them.
_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root", "var",
         "run", "home")


def applets(busybox: Path = BUSYBOX) -> list[str]:
    """Return the applet names this busybox binary provides (``busybox --list``)."""
    out = subprocess.run([str(busybox), "--list"], check=True, capture_output=True, text=True)
    return [name for name in out.stdout.split() if name and "/" not in name]


def make_busybox_rootfs(dest: Path, busybox: Path = BUSYBOX) -> Path:
    """Create a busybox root filesystem in ``dest`` (created if missing) and return it.

    Args:
        dest: the directory to fill; it may exist and be empty.
        busybox: a statically linked busybox binary.

    Raises:
        FileNotFoundError: when busybox is not installed (``apt-get install busybox-static``).
    """
    if not busybox.exists():
        raise FileNotFoundError(f"busybox not found: {busybox}")
    dest.mkdir(parents=True, exist_ok=True)
    for d in _DIRS:
        (dest / d).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    shutil.copy2(busybox, dest / "bin" / "busybox")
    for name in applets(busybox):
        link = dest / "bin" / name
        if not link.exists() and not link.is_symlink():
            link.symlink_to("busybox")
    (dest / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    (dest / "etc" / "group").write_text("root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n")
    (dest / "etc" / "hostname").write_text("busybox\n")
    return dest
