"""Base images with no registry: ``image bootstrap busybox`` and ``image bootstrap debian:SUITE``.

A fresh machine with no access to Docker Hub still needs base images. Two makers:

* **busybox** — Debian's ``busybox-static`` binary plus a symlink per applet, a passwd and a
  group file: a 2 MB image made in well under a second, enough for most tests and for ``sh``.
* **debian** — ``debootstrap --variant=minbase`` (or ``mmdebstrap`` when installed) from the host's
  own apt sources, with ``--include`` packages such as ``python3``.

Both layers are written deterministically (sorted, fixed times), so the same inputs give the same
image id.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ..errors import InvalidArgument, NotFound, RuntimeFailure
from . import oci
from .reference import parse_reference
from .store import ImageRecord, ImageStore

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Sequence

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
_GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
tty:x:5:
www-data:x:33:
users:x:100:
nogroup:x:65534:
"""


def find_busybox() -> Path:
    """The host's statically linked busybox (a dynamic one could not run in an empty rootfs)."""
    for candidate in BUSYBOX_CANDIDATES:
        path = Path(candidate)
        if path.is_file() and is_static_elf(path):
            return path
    raise NotFound("no static busybox found: install Debian's busybox-static")


def make_busybox_rootfs(target: Path) -> int:
    """Lay out a busybox root filesystem in ``target``; returns the mtime used for every entry."""
    busybox = find_busybox()
    epoch = int(busybox.stat().st_mtime)
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "home", "var/www", "var/log",
              "proc", "sys", "dev", "run", "mnt", "opt"):
        (target / d).mkdir(parents=True, exist_ok=True)
    (target / "tmp").mkdir(mode=0o1777, exist_ok=True)
    os.chmod(target / "tmp", 0o1777)
    os.chmod(target / "root", 0o700)
    shutil.copy2(busybox, target / "bin" / "busybox")
    os.chmod(target / "bin" / "busybox", 0o755)
    listing = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in listing:
        if applet == "bin/busybox" or not re.fullmatch(r"[\w/.\[-]+", applet):
            continue
        link = target / applet
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists() and not link.is_symlink():
            depth = applet.count("/")
            os.symlink("../" * depth + "bin/busybox" if depth > 1 else "/bin/busybox", link)
    (target / "etc" / "passwd").write_text(_PASSWD)
    (target / "etc" / "group").write_text(_GROUP)
    (target / "etc" / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    os.chmod(target / "etc" / "shadow", 0o640)
    (target / "etc" / "hostname").write_text("localhost\n")
    (target / "etc" / "hosts").write_text("127.0.0.1\tlocalhost\n")
    (target / "etc" / "nsswitch.conf").write_text("hosts: files dns\n")
    return epoch


def host_apt_mirror() -> str:
    """The Debian mirror the host's apt uses (deb822 or one-line sources)."""
    candidates = [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    for path in candidates:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("URIs:"):
                for uri in line.split()[1:]:
                    if "security" not in uri:
                        return uri
            if line.startswith("deb ") and "security" not in line:
                parts = [p for p in line.split()[1:] if not p.startswith("[")]
                if parts:
                    return parts[0]
    return "http://deb.debian.org/debian"


def make_debian_rootfs(target: Path, suite: str, include: list[str], mirror: str | None = None,
                       log=None) -> None:
    """debootstrap (or mmdebstrap) a minimal Debian into ``target``."""
    mirror = mirror or host_apt_mirror()
    # a user's PATH often lacks the sbin folders debootstrap lives in
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    if shutil.which("mmdebstrap", path=search):
        cmd = ["mmdebstrap", "--variant=minbase", "--mode=root", "--quiet"]
        if include:
            cmd.append("--include=" + ",".join(include))
        cmd += [suite, str(target), mirror]
    elif shutil.which("debootstrap", path=search):
        cmd = [shutil.which("debootstrap", path=search) or "debootstrap", "--variant=minbase"]
        if include:
            cmd.append("--include=" + ",".join(include))
        cmd += [suite, str(target), mirror]
    else:
        raise NotFound("neither debootstrap nor mmdebstrap is installed: apt-get install debootstrap")
    env = None
    from ..rootless import in_namespace

    if in_namespace() and cmd[0].endswith("debootstrap") and not cmd[0].endswith("mmdebstrap"):
        # rootless, in the user's namespace: no mknod there, so debootstrap binds the host's
        # /dev nodes as it does in an LXC container (and tolerates a /proc it cannot mount)
        env = dict(os.environ, container="lxc")  # what debootstrap's detect_container reads
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env)
    if log is not None:
        log(proc.stdout)
    if proc.returncode != 0:
        tail = " | ".join(proc.stdout.strip().splitlines()[-3:])
        raise RuntimeFailure(f"{os.path.basename(cmd[0])} {suite} failed (exit "
                             f"{proc.returncode}): {tail}")
    # what a container image should not carry: caches, package lists, machine identity
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*",
                    "var/log/*.log", "var/cache/debconf/*-old", "var/lib/dpkg/*-old"):
        for p in target.glob(pattern):
            if p.is_file() or p.is_symlink():
                p.unlink()
            elif p.is_dir() and p.name not in ("partial", "auxfiles"):
                shutil.rmtree(p)
    for rel in ("etc/machine-id", "var/lib/dbus/machine-id"):
        f = target / rel
        if f.exists() or f.is_symlink():
            f.unlink()
            if p == "etc/machine-id":
                f.write_text("")
    (target / "etc" / "resolv.conf").write_text("")
    (target / "etc" / "hostname").write_text("localhost\n")


def bootstrap(store: ImageStore, what: str, *, tag: str | None = None,
              include: Sequence[str] = (), mirror: str | None = None, tmp_root: Path | None = None,
              log=None) -> ImageRecord:
    """Make a base image: ``busybox`` or ``debian[:SUITE]``; returns the image."""
    from .layer import write_layer

    kind, _, suite = what.partition(":")
    kind = kind.lower()
    if kind not in ("busybox", "debian"):
        raise InvalidArgument(f"unknown bootstrap source: {what} (use busybox or debian:SUITE)")
    if kind == "busybox" and include:
        raise InvalidArgument("--include applies to debian bootstraps only")
    suite = suite or ("bookworm" if kind == "debian" else "")
    name = tag or (f"debian:{suite}" if kind == "debian" else "busybox:latest")
    ref = parse_reference(name)
    from ..store.leftovers import HeldDir

    # held while we use it: a killed bootstrap's folder is reclaimed by the next command
    held = HeldDir(tmp_root or Path(tempfile.gettempdir()), "bootstrap")
    work = held.path
    try:
        rootfs = work / "rootfs"
        rootfs.mkdir()
        now = time.time()
        if kind == "busybox":
            epoch = make_busybox_rootfs(rootfs)
            created_by = "portside image bootstrap busybox"
            cfg = {"Env": [DEFAULT_PATH], "Cmd": ["sh"]}
        else:
            make_debian_rootfs(rootfs, suite, list(include), mirror, log)
            epoch = int(os.environ.get("SOURCE_DATE_EPOCH", now))
            created_by = f"portside image bootstrap debian:{suite}" + (
                f" --include {','.join(include)}" if include else "")
            cfg = {"Env": [DEFAULT_PATH], "Cmd": ["bash"]}
        layer_file = work / "layer.tar"
        with open(layer_file, "wb") as out:
            write_layer(rootfs, out, compression=None, source_date_epoch=epoch)
        shutil.rmtree(rootfs)
        created = epoch if kind == "busybox" else now
        with store.lease() as leases, open(layer_file, "rb") as stream:
            layer, _ = store.ingest_layer(stream, None, leases)
            doc = oci.new_config(diff_ids=[layer.diff_id], config=cfg, created=created,
                                 history=[{"created": oci.rfc3339(created),
                                           "created_by": created_by}])
            return store.create(doc, [layer], tags=[ref], leases=leases, action="import")
    finally:
        held.close()


def is_static_elf(path: Path) -> bool:
    """True for an ELF executable with no program interpreter (PT_INTERP), i.e. statically linked."""
    import struct

    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF":
            return False
        is64 = head[4] == 2
        endian = "<" if head[5] == 1 else ">"
        if is64:
            phoff, = struct.unpack_from(endian + "Q", head, 32)
            phentsize, phnum = struct.unpack_from(endian + "HH", head, 54)
        else:
            phoff, = struct.unpack_from(endian + "I", head, 28)
            phentsize, phnum = struct.unpack_from(endian + "HH", head, 42)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        p_type, = struct.unpack_from(endian + "I", table, i * phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True
