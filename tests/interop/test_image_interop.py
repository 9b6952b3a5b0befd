"""Real peers read what portside writes and portside reads what they write.

podman (with a throwaway storage root), skopeo and umoci, all from Debian. The root filesystem
portside unpacks (its overlay snapshots, mounted read-only) must equal what ``umoci unpack``
produces for the same image: paths, types, modes, owners, link targets and contents.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from interop.peers import PODMAN_RUN_LIMITS

pytestmark = pytest.mark.interop

for tool in ("podman", "skopeo", "umoci"):
    if not shutil.which(tool):  # make test installs them; a bare pytest run says what is missing
        pytestmark = [pytest.mark.interop,
                      pytest.mark.skip(reason=f"{tool} is not installed (make test installs it)")]



def _rich_rootfs(path: Path) -> Path:
    """A rootfs tar with what breaks naive unpackers: modes, owners, links, special files."""
    entries = []

    def add(name, type_=tarfile.REGTYPE, data=b"", mode=0o644, uid=0, gid=0, link=""):
        info = tarfile.TarInfo(name)
        info.type = type_
        info.mode = mode
        info.uid, info.gid = uid, gid
        info.linkname = link
        info.mtime = 1_700_000_000
        if type_ == tarfile.REGTYPE:
            info.size = len(data)
        entries.append((info, data))

    add("bin", tarfile.DIRTYPE, mode=0o755)
    add("bin/tool", data=b"\x7fELF not really\n", mode=0o4755)
    add("etc", tarfile.DIRTYPE, mode=0o755)
    add("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\n")
    add("etc/secret", data=b"s3cret\n", mode=0o600, uid=1000, gid=1000)
    add("home", tarfile.DIRTYPE, mode=0o755)
    add("home/u", tarfile.DIRTYPE, mode=0o700, uid=1000, gid=1000)
    add("home/u/notes.txt", data=b"x" * 70000, uid=1000, gid=1000)
    add("home/u/hard", tarfile.LNKTYPE, link="home/u/notes.txt", uid=1000, gid=1000)
    add("home/u/rel", tarfile.SYMTYPE, link="notes.txt", mode=0o777)
    add("home/u/abs", tarfile.SYMTYPE, link="/etc/passwd", mode=0o777)
    add("tmp", tarfile.DIRTYPE, mode=0o1777)
    add("var", tarfile.DIRTYPE, mode=0o755)
    add("var/empty", tarfile.DIRTYPE, mode=0o711)
    add("var/fifo", tarfile.FIFOTYPE, mode=0o640)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return path


def _tree(root: Path) -> dict[str, tuple]:
    """Everything that must match between two unpacked root filesystems."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            rel = str(p.relative_to(root))
            kind = st.st_mode & 0o170000
            extra = None
            if p.is_symlink():
                extra = os.readlink(p)
            elif p.is_file():
                extra = hashlib.sha256(p.read_bytes()).hexdigest()
            out[rel] = (kind, st.st_mode & 0o7777, st.st_uid, st.st_gid, extra)
    return out


def _portside_rootfs(engine, name: str, target: Path):
    """Mount the image's snapshots read-only at ``target`` (the engine's own view of it)."""
    from portside.engine.store.mount import LinuxMounter

    image = engine.image_store.get(name)
    lowers = engine.image_store.rootfs_lowers(image)
    target.mkdir()
    LinuxMounter().mount_overlay(lowers, None, None, target, readonly=True)
    return LinuxMounter()


def test_portside_save_loads_and_runs_in_podman_and_skopeo_reads_it(cli, busybox_image, tmp_path,
                                                                    podman):
    archive = tmp_path / "bb.tar"
    cli("save", "-o", str(archive), busybox_image)
    image_id = cli("images", "-q", "--no-trunc").out.strip()
    inspect = subprocess.run(["skopeo", "inspect", f"oci-archive:{archive}"], capture_output=True,
                             text=True, check=True)
    assert '"Architecture"' in inspect.stdout
    raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci-archive:{archive}"],
                         capture_output=True, check=True).stdout
    assert json.loads(raw)["config"]["digest"] == image_id
    loaded = podman("load", "-i", str(archive))
    assert "busybox:latest" in loaded.stdout + loaded.stderr
    assert podman("images", "-q", "--no-trunc").stdout.strip() == image_id
    ran = podman("run", "--rm", "--network", "none", *PODMAN_RUN_LIMITS, "busybox:latest",
                 "sh", "-c", "echo from-portside")
    assert ran.stdout.strip() == "from-portside"
    assert podman("run", "--rm", "--network", "none", *PODMAN_RUN_LIMITS, "busybox:latest",
                  "true").returncode == 0


def _compare_with_umoci(engine, name: str, oci_dir: Path, tag: str, tmp_path: Path):
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{oci_dir}:{tag}", str(bundle)], check=True,
                   capture_output=True)
    mine = tmp_path / "mine"
    mounter = _portside_rootfs(engine, name, mine)
    try:
        expected, got = _tree(bundle / "rootfs"), _tree(mine)
    finally:
        mounter.unmount(mine)
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    assert not missing and not extra, (missing[:10], extra[:10])
    diffs = {k: (expected[k], got[k]) for k in expected if expected[k] != got[k]}
    assert not diffs, list(diffs.items())[:10]
    return expected


def test_podman_docker_archive_loads_and_matches_umoci(cli, engine, tmp_path, podman):
    rich = _rich_rootfs(tmp_path / "rich.tar")
    podman("import", str(rich), "localhost/rich:1")
    # a second layer that deletes, replaces and adds (whiteouts and an opaque directory)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text("FROM localhost/rich:1\nCOPY new.txt /var/empty/new.txt\n")
    (ctx / "new.txt").write_text("new\n")
    podman("build", "--network", "none", "-t", "localhost/rich:2", str(ctx))
    archive = tmp_path / "podman.tar"
    podman("save", "--format", "docker-archive", "-o", str(archive), "localhost/rich:2")
    out = cli("load", "-i", str(archive)).out
    assert "Loaded image: localhost/rich:2" in out
    assert cli("images", "-q", "--no-trunc", "localhost/rich:2").out.strip() == \
        podman("images", "-q", "--no-trunc", "localhost/rich:2").stdout.strip()
    oci_dir = tmp_path / "oci"
    subprocess.run(["skopeo", "copy", f"docker-archive:{archive}", f"oci:{oci_dir}:rich"],
                   check=True, capture_output=True)
    tree = _compare_with_umoci(engine, "localhost/rich:2", oci_dir, "rich", tmp_path)
    assert tree["bin/tool"][1] == 0o4755 and tree["etc/secret"][2:4] == (1000, 1000)
    assert tree["home/u/abs"][4] == "/etc/passwd"
    assert "var/empty/new.txt" in tree


def test_skopeo_oci_archive_with_whiteouts_loads_and_matches_umoci(cli, engine, tmp_path):
    """A two-layer OCI image written by hand (whiteout and opaque dir), copied by skopeo."""
    from portside.engine.image import oci as o

    blobs = tmp_path / "src" / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        digest = o.sha256_digest(data)
        (blobs / digest[7:]).write_bytes(data)
        return digest

    def layer(entries) -> tuple[str, int]:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, data, kind in entries:
                info = tarfile.TarInfo(name)
                info.type = kind
                info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        raw = buf.getvalue()
        return put(raw), len(raw)

    d, f = tarfile.DIRTYPE, tarfile.REGTYPE
    l1 = layer([("a", b"", d), ("a/keep", b"k", f), ("a/gone", b"g", f), ("b", b"", d),
                ("b/old1", b"1", f), ("b/old2", b"2", f)])
    l2 = layer([("a", b"", d), ("a/.wh.gone", b"", f), ("b", b"", d), ("b/.wh..wh..opq", b"", f),
                ("b/new", b"n", f)])
    config = o.canonical_json(o.new_config(diff_ids=[l1[0], l2[0]], history=[{}, {}],
                                           config={"Cmd": ["sh"]}))
    cfg = put(config)
    manifest = o.canonical_json(o.new_manifest(o.descriptor(o.OCI_CONFIG, cfg, len(config)),
                                               [o.descriptor(o.OCI_LAYER, l1[0], l1[1]),
                                                o.descriptor(o.OCI_LAYER, l2[0], l2[1])]))
    man = put(manifest)
    (tmp_path / "src" / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (tmp_path / "src" / "index.json").write_text(
        '{"schemaVersion":2,"manifests":[{"mediaType":"%s","digest":"%s","size":%d,'
        '"annotations":{"org.opencontainers.image.ref.name":"wh"}}]}' % (o.OCI_MANIFEST, man,
                                                                          len(manifest)))
    archive = tmp_path / "wh.tar"
    subprocess.run(["skopeo", "copy", f"oci:{tmp_path / 'src'}:wh",
                    f"oci-archive:{archive}:localhost/wh:1"], check=True, capture_output=True)
    out = cli("load", "-i", str(archive)).out
    assert "localhost/wh:1" in out
    tree = _compare_with_umoci(engine, "localhost/wh:1", tmp_path / "src", "wh", tmp_path)
    assert "a/keep" in tree and "a/gone" not in tree
    assert sorted(k for k in tree if k.startswith("b/")) == ["b/new"]
