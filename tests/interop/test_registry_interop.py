"""Real peers and a real registry: what portside pushes, skopeo inspects and podman pulls and
runs; what skopeo and podman push, portside pulls with the same digests."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from interop.peers import PODMAN_RUN_LIMITS

from integration.registry_fixture import Registry

pytestmark = pytest.mark.interop

for tool in ("podman", "skopeo", "docker-registry"):
    if not shutil.which(tool):
        pytestmark = [pytest.mark.interop,
                      pytest.mark.skip(reason=f"{tool} is not installed (make test installs it)")]



@pytest.fixture
def registry(tmp_path: Path):
    reg = Registry(tmp_path / "registry").start()
    yield reg
    reg.stop()


def _skopeo_raw(ref: str) -> bytes:
    return subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                          capture_output=True, check=True).stdout


def test_portside_push_is_read_by_skopeo_and_run_by_podman(cli, busybox_image, registry, podman):
    name = f"{registry.host}/interop/bb:1"
    cli("tag", busybox_image, name)
    image_id = cli("images", "-q", "--no-trunc", name).out.strip()
    digest = cli("push", name).out.strip().splitlines()[-1].split("digest: ")[1].split()[0]
    inspect = json.loads(subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{name}"],
        capture_output=True, check=True, text=True).stdout)
    assert inspect["Digest"] == digest
    raw = _skopeo_raw(name)
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    assert json.loads(raw)["config"]["digest"] == image_id
    podman("pull", "--tls-verify=false", name)
    assert podman("images", "-q", "--no-trunc", name).stdout.strip() == image_id
    ran = podman("run", "--rm", "--network", "none", *PODMAN_RUN_LIMITS, name,
                 "sh", "-c", "echo pushed-by-portside")
    assert ran.stdout.strip() == "pushed-by-portside"


def _oci_layout(path: Path) -> None:
    """Two layers, gzip and zstd, written by hand as an OCI layout skopeo can push."""
    import zstandard

    from portside.engine.image import oci as o

    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        digest = o.sha256_digest(data)
        (blobs / digest[7:]).write_bytes(data)
        return digest

    def tar(entries) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
            for name, data in entries:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    l1 = tar([("hello.txt", b"hello\n")])
    l2 = tar([("data/blob", bytes(range(256)) * 400)])
    c1, c2 = gzip.compress(l1, mtime=0), zstandard.ZstdCompressor().compress(l2)
    cfg = o.canonical_json(o.new_config(diff_ids=[o.sha256_digest(l1), o.sha256_digest(l2)],
                                        history=[{}, {}], config={"Cmd": ["sh"]}))
    manifest = o.canonical_json(o.new_manifest(
        o.descriptor(o.OCI_CONFIG, put(cfg), len(cfg)),
        [o.descriptor(o.OCI_LAYER_GZIP, put(c1), len(c1)),
         o.descriptor(o.OCI_LAYER_ZSTD, put(c2), len(c2))]))
    man = put(manifest)
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": o.OCI_MANIFEST, "digest": man, "size": len(manifest),
         "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}))


def test_skopeo_push_of_gzip_and_zstd_layers_pulls_with_equal_digests(cli, engine, registry,
                                                                      tmp_path):
    layout = tmp_path / "layout"
    _oci_layout(layout)
    name = f"{registry.host}/skopeo/zz:v1"
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:v1",
                    f"docker://{name}"], check=True, capture_output=True)
    raw = _skopeo_raw(name)
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    out = cli("pull", name).out
    assert f"Digest: {digest}" in out
    rec = engine.image_store.get(name)
    assert rec.manifest_digest == digest
    assert rec.id == json.loads(raw)["config"]["digest"]
    lowers = engine.image_store.rootfs_lowers(rec)
    assert (lowers[1] / "hello.txt").read_bytes() == b"hello\n"
    assert (lowers[0] / "data/blob").stat().st_size == 256 * 400


def test_podman_push_pulls_in_portside_with_equal_ids(cli, engine, registry, podman, tmp_path):
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as t:
        info = tarfile.TarInfo("greeting")
        data = b"from podman\n"
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    podman("import", str(rootfs), "localhost/frompodman:1")
    name = f"{registry.host}/podman/img:1"
    podman("push", "--tls-verify=false", "localhost/frompodman:1", f"docker://{name}")
    raw = _skopeo_raw(name)
    out = cli("pull", name).out
    assert "Digest: sha256:" + hashlib.sha256(raw).hexdigest() in out
    podman_id = podman("images", "-q", "--no-trunc", "localhost/frompodman:1").stdout.strip()
    assert cli("images", "-q", "--no-trunc", name).out.strip() == podman_id
    rec = engine.image_store.get(name)
    assert (engine.image_store.rootfs_lowers(rec)[0] / "greeting").read_bytes() == data


def test_build_provenance_is_in_the_manifest_and_travels_with_push_and_pull(cli, busybox_image,
                                                                            registry, tmp_path):
    # BuildKit's labels in the config (LABEL and --label only); the build's provenance in the
    # manifest's annotations, where skopeo, manifest inspect and a pull see it, and the lock
    # reads the build's inputs from there.
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nLABEL purpose=interop\nRUN echo x > /x\n")
    name = f"{registry.host}/prov/img:1"
    cli("build", "-q", "-t", name, "--label", "team=ml", "--build-arg", "A=1", str(ctx))
    doc = json.loads(cli("inspect", name).out)[0]
    assert doc["Config"]["Labels"] == {"purpose": "interop", "team": "ml"}
    notes = doc["Descriptor"]["annotations"]
    base = json.loads(cli("inspect", busybox_image).out)[0]
    assert notes["org.opencontainers.image.base.digest"] == base["Descriptor"]["digest"]
    assert notes["org.opencontainers.image.base.name"] == "busybox"
    assert notes["io.portside.build.args"] == '{"A":"1"}'
    assert notes["io.portside.build.dockerfile"].startswith("sha256:")
    assert set(notes) >= {"org.opencontainers.image.created", "io.portside.source",
                          "io.portside.build.context"}
    cli("push", name)
    assert json.loads(_skopeo_raw(name))["annotations"] == notes
    assert json.loads(cli("manifest", "inspect", "--insecure", name).out)["annotations"] == notes
    cli("rmi", name)
    cli("pull", name)
    pulled = json.loads(cli("inspect", name).out)[0]
    assert pulled["Id"] == doc["Id"] and pulled["Descriptor"]["annotations"] == notes
    # the pulled image still says how it was built: the lock pins its inputs and checks them
    lock = tmp_path / "portside.lock"
    cli("lock", "--file", str(lock), name)
    assert '[images."' + name + '".build]' in lock.read_text()
    (ctx / "Dockerfile").write_text("FROM busybox\nLABEL purpose=other\nRUN echo x > /x\n")
    proc = cli("build", "-t", name, "--build-arg", "A=1", str(ctx), check=False,
               env={"PORTSIDE_LOCK": str(lock), "PORTSIDE_LOCKED": "1"})
    assert proc.returncode == 125 and len(proc.err.strip().splitlines()) == 1
    assert (f"portside.lock pins {name} to {doc['Id'][:19]}…, but the Dockerfile changed "
            f"({notes['io.portside.build.dockerfile'][:19]}… → sha256:") in proc.err
