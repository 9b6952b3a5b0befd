"""The registry client against Debian's real docker-registry on 127.0.0.1 (random port).

Round trips (push, pull by tag and by digest, chunked uploads, mounts), multi-layer gzip/zstd
images and indexes, basic and token auth with ``login``, and the faults: tampered blobs, lying
manifests, hostile layers, a registry killed mid-pull (then a resumed pull), mirror fallback.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest
import zstandard

from registry_fixture import (Registry, StandIn, ThrottledProxy, TokenServer, ingest_size,
                              make_htpasswd, put_blob, put_image, tar_layer, _req)

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not Path("/usr/bin/docker-registry").exists(),
                                 reason="docker-registry is not installed")]


@pytest.fixture
def docker_config(tmp_path: Path) -> Path:
    path = tmp_path / "docker-config"
    old = os.environ.get("DOCKER_CONFIG")
    os.environ["DOCKER_CONFIG"] = str(path)  # inherited by the CLI's processes
    yield path
    if old is None:
        os.environ.pop("DOCKER_CONFIG", None)
    else:
        os.environ["DOCKER_CONFIG"] = old


@pytest.fixture
def registry(tmp_path: Path, docker_config):
    reg = Registry(tmp_path / "registry").start()
    yield reg
    reg.stop()


@pytest.fixture
def standin():
    server = StandIn()
    yield server
    server.stop()


def _blobs(root: Path) -> set[str]:
    return {p.name for p in (root / "content" / "blobs" / "sha256").iterdir()}


def _one_line_error(proc) -> str:
    assert proc.returncode == 125, (proc.returncode, proc.out, proc.err)
    lines = [line for line in proc.err.splitlines()
             if line.strip() and not line.startswith("WARNING!")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.err
    return lines[0]


# ------------------------------------------------------------------------------ round trips
def test_push_then_pull_round_trip_by_tag_and_digest(cli, busybox_image, registry, portside_root):
    name = f"{registry.host}/tools/bb:1"
    cli("tag", busybox_image, name)
    image_id = cli("images", "-q", "--no-trunc", name).out.strip()
    out = cli("push", name).out
    assert f"The push refers to repository [{name.rsplit(':', 1)[0]}]" in out
    digest = out.strip().splitlines()[-1].split("digest: ")[1].split()[0]
    # what the registry holds: a gzip layer (compressed on the fly), our config
    manifest = json.loads(_req("GET", f"http://{registry.host}/v2/tools/bb/manifests/1",
                               headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
                          .read())
    assert manifest["config"]["digest"] == image_id
    assert manifest["layers"][0]["mediaType"].endswith("tar+gzip")
    assert hashlib.sha256(json.dumps(manifest).encode()).hexdigest() != ""  # parsed fine
    # the second push only HEADs
    assert "Layer already exists" in cli("push", name).out
    cli("rmi", name, busybox_image)
    assert cli("images", "-q").out == ""
    pulled = cli("pull", name).out
    assert "1: Pulling from tools/bb" in pulled
    assert "Pull complete" in pulled or "Already exists" in pulled
    assert f"Digest: {digest}" in pulled
    assert f"Status: Downloaded newer image for {name}" in pulled
    assert cli("images", "-q", "--no-trunc", name).out.strip() == image_id
    digests = cli("images", "--digests", "--format", "{{.Digest}}", name).out.strip()
    assert digests == digest
    again = cli("pull", name).out
    assert f"Status: Image is up to date for {name}" in again
    cli("rmi", name)
    by_digest = cli("pull", f"{registry.host}/tools/bb@{digest}").out
    assert f"Digest: {digest}" in by_digest
    assert cli("images", "-q", "--no-trunc").out.strip() == image_id
    assert cli("system", "check").out.strip() == "store is consistent"


def test_chunked_push_and_cross_repository_mount(engine, cli, busybox_image, registry):
    from portside.engine.models.registry import Registries
    from portside.engine.registry import progress as pg

    regs = Registries(engine)
    engine.images.tag(busybox_image, f"{registry.host}/a/one:1")
    events: list = []
    d1 = regs.push(f"{registry.host}/a/one:1", progress=events.append, chunk_size=64 * 1024)
    pushing = [e for e in events if isinstance(e, pg.LayerEvent) and e.phase == pg.PUSHING]
    assert len(pushing) >= 2  # several chunks reported
    engine.images.tag(busybox_image, f"{registry.host}/b/two:1")
    events.clear()
    d2 = regs.push(f"{registry.host}/b/two:1", progress=events.append)
    assert d1 == d2
    mounted = [e for e in events if isinstance(e, pg.LayerEvent) and e.phase == pg.MOUNTED]
    assert mounted and mounted[0].detail == "a/one"
    # the registry really has the blob under the second repository
    for layer in regs.manifest_inspect(f"{registry.host}/b/two:1")["layers"]:
        resp = _req("HEAD", f"http://{registry.host}/v2/b/two/blobs/{layer['digest']}")
        assert resp.status == 200


def test_multi_layer_gzip_and_zstd_image_pulls_and_unpacks(cli, engine, registry):
    l1 = tar_layer([("etc/one", b"one\n"), ("etc/shared", b"first\n")])
    l2 = tar_layer([("etc/two", b"two" * 10000), ("etc/shared", b"second\n")])
    l3 = tar_layer([("srv/big", os.urandom(300_000))])
    gz = gzip.compress(l1, mtime=0)
    zs = zstandard.ZstdCompressor().compress(l2)
    host = registry.host
    put_blob(host, "multi", gz)
    put_blob(host, "multi", zs)
    put_blob(host, "multi", l3)
    diff_ids = ["sha256:" + hashlib.sha256(x).hexdigest() for x in (l1, l2, l3)]
    config = json.dumps({"architecture": _arch(), "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": diff_ids},
                         "config": {}, "history": [{}, {}, {}]}).encode()
    cdig = put_blob(host, "multi", config)
    descs = [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
              "digest": "sha256:" + hashlib.sha256(gz).hexdigest(), "size": len(gz)},
             {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",
              "digest": "sha256:" + hashlib.sha256(zs).hexdigest(), "size": len(zs)},
             {"mediaType": "application/vnd.docker.image.rootfs.diff.tar",
              "digest": diff_ids[2], "size": len(l3)}]
    manifest = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                           "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                      "digest": cdig, "size": len(config)},
                           "layers": descs}).encode()
    _req("PUT", f"http://{host}/v2/multi/manifests/v1", manifest,
         {"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"})
    out = cli("pull", f"{host}/multi:v1").out
    assert out.count("Pull complete") == 3
    rec = engine.image_store.get(f"{host}/multi:v1")
    assert [layer["diff_id"] for layer in rec.layers] == diff_ids
    assert rec.manifest_digest == "sha256:" + hashlib.sha256(manifest).hexdigest()
    top = engine.image_store.rootfs_lowers(rec)
    assert (top[1] / "etc/shared").read_bytes() == b"second\n"
    assert (top[0] / "srv/big").stat().st_size == 300_000


def _arch() -> str:
    from portside.engine.image.oci import host_platform

    return host_platform()["architecture"]


def test_index_picks_host_platform_or_the_one_asked_for(cli, engine, registry):
    host = registry.host
    other = "s390x" if _arch() != "s390x" else "amd64"
    mine_digest = put_image(host, "multiarch", "mine", [tar_layer([("which", b"host\n")])])
    other_digest = put_image(host, "multiarch", "other", [tar_layer([("which", b"other\n")])])
    sizes = {}
    for tag in ("mine", "other"):
        sizes[tag] = len(_req("GET", f"http://{host}/v2/multiarch/manifests/{tag}", headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json"}).read())
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [
                            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                             "digest": other_digest, "size": sizes["other"],
                             "platform": {"os": "linux", "architecture": other}},
                            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                             "digest": mine_digest, "size": sizes["mine"],
                             "platform": {"os": "linux", "architecture": _arch()}}]}).encode()
    _req("PUT", f"http://{host}/v2/multiarch/manifests/all", index,
         {"Content-Type": "application/vnd.oci.image.index.v1+json"})
    index_digest = "sha256:" + hashlib.sha256(index).hexdigest()
    out = cli("pull", f"{host}/multiarch:all").out
    assert f"Digest: {index_digest}" in out
    rec = engine.image_store.get(f"{host}/multiarch:all")
    assert rec.manifest_digest == mine_digest
    assert f"{host}/multiarch@{index_digest}" in rec.refs
    cli("pull", "--platform", f"linux/{other}", f"{host}/multiarch:all")
    rec = engine.image_store.get(f"{host}/multiarch:all")
    assert rec.manifest_digest == other_digest
    err = _one_line_error(cli("pull", "--platform", "linux/mips64le", f"{host}/multiarch:all",
                              check=False))
    assert "no matching manifest for linux/mips64le" in err


def test_unknown_tag_and_repository_are_one_line_errors(cli, registry):
    err = _one_line_error(cli("pull", f"{registry.host}/x:nope", check=False))
    assert err == f"Error: manifest unknown: {registry.host}/x:nope"


# ------------------------------------------------------------------------------ auth
def test_htpasswd_basic_auth_login_pull_and_wrong_password(cli, busybox_image, tmp_path,
                                                            docker_config):
    htpasswd = make_htpasswd(tmp_path / "htpasswd", "alice", "s3cret-pw")
    reg = Registry(tmp_path / "reg-basic", auth=("htpasswd", htpasswd)).start()
    try:
        name = f"{reg.host}/private/bb:1"
        cli("tag", busybox_image, name)
        err = _one_line_error(cli("push", name, check=False))
        assert "unauthorized" in err
        bad = cli("login", "-u", "alice", "--password-stdin", reg.host, input=b"wrong-pw\n",
                  check=False)
        err = _one_line_error(bad)
        assert "unauthorized" in err and "wrong-pw" not in bad.err + bad.out
        assert not (docker_config / "config.json").exists()
        ok = cli("login", "-u", "alice", "--password-stdin", reg.host, input=b"s3cret-pw\n")
        assert ok.out.strip() == "Login Succeeded"
        assert "s3cret-pw" not in ok.out + ok.err
        cfg = docker_config / "config.json"
        assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
        assert reg.host in json.loads(cfg.read_text())["auths"]
        cli("push", name)
        cli("rmi", name, busybox_image)
        assert "Pull complete" in cli("pull", name).out
        assert cli("logout", reg.host).out.strip() == f"Removing login credentials for {reg.host}"
        cli("rmi", name)
        err = _one_line_error(cli("pull", name, check=False))
        assert "pull access denied for " + f"{reg.host}/private/bb" in err
    finally:
        reg.stop()


def test_token_auth_with_signed_jwts(cli, busybox_image, tmp_path, docker_config):
    tokens = TokenServer(tmp_path, {"bob": "hunter22"}).start()
    reg = Registry(tmp_path / "reg-token", auth=("token", tokens)).start()
    try:
        name = f"{reg.host}/team/bb:2"
        cli("tag", busybox_image, name)
        err = _one_line_error(cli("push", name, check=False))
        assert "unauthorized" in err or "denied" in err
        bad = cli("login", "-u", "bob", "-p", "nope-nope", reg.host, check=False)
        assert "incorrect username or password" in _one_line_error(bad)
        assert "nope-nope" not in bad.out + bad.err
        assert cli("login", "-u", "bob", "--password-stdin", reg.host,
                   input=b"hunter22").out.strip() == "Login Succeeded"
        cli("push", name)
        cli("rmi", name, busybox_image)
        cli("pull", name)
        assert cli("images", "--format", "{{.Repository}}:{{.Tag}}").out.strip() == name
        granted = [r for r in tokens.requests if r.get("user") == "bob" and r["ok"]]
        assert any("repository:team/bb:pull,push" in r["scopes"] for r in granted)
        assert any("repository:team/bb:pull" in r["scopes"] for r in granted)
    finally:
        reg.stop()
        tokens.stop()


# ------------------------------------------------------------------------------ faults
def test_tampered_blob_is_rejected_and_nothing_is_stored(cli, standin, portside_root):
    layer = tar_layer([("etc/file", b"genuine\n" * 1000)])
    evil = tar_layer([("etc/file", b"tampered" * 1000)])
    assert len(evil) == len(layer)
    standin.add_image("app", "1", [layer], blob_override={0: evil})
    before = _blobs(portside_root) if (portside_root / "content").exists() else set()
    err = _one_line_error(cli("pull", f"{standin.host}/app:1", check=False))
    assert "verification failed" in err
    digest = hashlib.sha256(layer).hexdigest()
    assert digest not in _blobs(portside_root) - before
    assert hashlib.sha256(evil).hexdigest() not in _blobs(portside_root)
    assert ingest_size(portside_root) == 0
    assert cli("images", "-q").out == ""


def test_tampered_blob_on_a_real_registry_disk_is_rejected(cli, registry, portside_root):
    layer = tar_layer([("data", os.urandom(50_000))])
    put_image(registry.host, "disk", "1", [layer])
    path = registry.blob_path("sha256:" + hashlib.sha256(layer).hexdigest())
    raw = bytearray(path.read_bytes())
    raw[-2000] ^= 0xFF
    path.write_bytes(bytes(raw))
    err = _one_line_error(cli("pull", f"{registry.host}/disk:1", check=False))
    assert "filesystem layer verification failed" in err
    assert hashlib.sha256(layer).hexdigest() not in _blobs(portside_root)


@pytest.mark.parametrize("delta", [-100, +100])
def test_manifest_lying_about_a_layer_size_is_rejected(cli, standin, portside_root, delta):
    layer = tar_layer([("f", b"x" * 5000)])
    standin.add_image("liar", "1", [layer], layer_sizes=[len(layer) + delta])
    _one_line_error(cli("pull", f"{standin.host}/liar:1", check=False))
    assert hashlib.sha256(layer).hexdigest() not in _blobs(portside_root)
    assert cli("images", "-q").out == ""


def test_layer_escaping_its_root_is_rejected(cli, standin, tmp_path):
    target = tmp_path / "escaped"
    hostile = tar_layer([("ok", b"fine"), ("../../../../../../.." + str(target), b"pwned")])
    standin.add_image("evil", "1", [hostile])
    err = _one_line_error(cli("pull", f"{standin.host}/evil:1", check=False))
    assert "failed to register layer" in err
    assert not target.exists()
    assert cli("images", "-q").out == ""


def test_registry_killed_mid_pull_then_next_pull_resumes(cli, registry, portside_root, tmp_path):
    payload = os.urandom(24 << 20)
    layer = tar_layer([("big.bin", payload)])
    put_image(registry.host, "huge", "1", [layer])
    proxy = ThrottledProxy(registry.port, rate=6 << 20)
    try:
        name = f"{proxy.host}/huge:1"
        env = cli.env()
        from conftest import PORTSIDE

        proc = subprocess.Popen([PORTSIDE, "pull", name], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while ingest_size(portside_root) < (3 << 20) and time.monotonic() < deadline:
                time.sleep(0.05)
            partial = ingest_size(portside_root)
            assert partial >= 3 << 20
            registry.kill()
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 125, (out, err)
        lines = [line for line in err.decode().splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: "), err
        kept = ingest_size(portside_root)
        assert partial <= kept < len(layer)
        registry.start()
        proxy.requests.clear()
        assert "Pull complete" in cli("pull", name).out
        sent = b"".join(proxy.requests).decode(errors="replace")
        ranges = [line for line in sent.split("\r\n") if line.lower().startswith("range:")]
        assert ranges and int(ranges[0].split("=")[1].rstrip("-")) >= partial
        assert ingest_size(portside_root) == 0
        assert hashlib.sha256(layer).hexdigest() in _blobs(portside_root)
    finally:
        proxy.stop()


def test_mirror_lacking_the_image_falls_back_to_the_origin(cli, registry, standin):
    put_image(registry.host, "mirrored", "1", [tar_layer([("m", b"m")])])
    env = {"PORTSIDE_REGISTRY_MIRRORS": f"{registry.host}=http://{standin.host}"}
    out = cli("pull", f"{registry.host}/mirrored:1", env=env).out
    assert "Pull complete" in out
    assert "/v2/mirrored/manifests/1" in standin.seen  # the mirror was asked first


def test_mirror_having_the_image_serves_it(cli, registry, standin):
    layer = tar_layer([("from-mirror", b"yes")])
    standin.add_image("onlymirror", "1", [layer])
    env = {"PORTSIDE_REGISTRY_MIRRORS": f"{registry.host}=http://{standin.host}"}
    out = cli("pull", f"{registry.host}/onlymirror:1", env=env).out
    assert "Pull complete" in out


def test_search_lists_catalog_matches(cli, registry):
    for repo in ("lab/alpha", "lab/beta", "other/gamma"):
        put_image(registry.host, repo, "1", [tar_layer([("x", repo.encode())])])
    out = cli("search", f"{registry.host}/lab", "--format", "{{.Name}}").out.split()
    assert out == [f"{registry.host}/lab/alpha", f"{registry.host}/lab/beta"]
    assert cli("search", f"{registry.host}/a", "--limit", "1",
               "--format", "{{.Name}}").out.count("\n") == 1
