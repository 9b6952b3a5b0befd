"""The image commands end to end, through the real `portside` CLI on a real store (root)."""

from __future__ import annotations

import io
import json
import sqlite3
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _rootfs_tar(path: Path, files: dict[str, bytes], gz: bool = False) -> Path:
    with tarfile.open(path, "w:gz" if gz else "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.startswith("bin/") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def test_bootstrap_busybox_lists_like_docker_images(cli, busybox_image):
    out = cli("images").out.splitlines()
    assert out[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert out[1].split()[:2] == ["busybox", "latest"]
    ids = cli("images", "-q").out.split()
    assert len(ids) == 1 and len(ids[0]) == 12
    full = cli("images", "-q", "--no-trunc").out.strip()
    assert full.startswith("sha256:") and full[7:19] == ids[0]
    assert cli("images", "--format", "{{.Repository}}:{{.Tag}}").out == "busybox:latest\n"
    row = json.loads(cli("images", "--format", "json").out)
    assert row["Repository"] == "busybox" and row["Tag"] == "latest" and row["ID"] == ids[0]
    # same inputs, same image: bootstrapping twice is deterministic
    again = cli("image", "bootstrap", "busybox", "-t", "busybox:again", "-q").out.strip()
    assert again == full


def test_tag_rmi_and_dangling(cli, busybox_image):
    cli("tag", "busybox", "lab/tools:v1")
    cli("tag", "busybox:latest", "localhost:5000/x/y:2")
    tags = cli("images", "--format", "{{.Repository}}:{{.Tag}}").out.split()
    assert sorted(tags) == ["busybox:latest", "lab/tools:v1", "localhost:5000/x/y:2"]
    assert cli("images", "--filter", "reference=lab/*", "--format", "{{.Tag}}").out == "v1\n"
    image_id = cli("images", "-q").out.split()[0]
    # an id with several names needs -f
    refused = cli("rmi", image_id, check=False)
    assert refused.returncode == 1 or refused.returncode == 125
    assert "multiple repositories" in refused.err
    out = cli("rmi", "lab/tools:v1", "localhost:5000/x/y:2").out
    assert "Untagged: lab/tools:v1" in out and "Deleted" not in out
    out = cli("rmi", "busybox").out
    assert "Untagged: busybox:latest" in out and f"Deleted: sha256:{image_id}" in out
    assert cli("images", "-q").out == ""


def test_rmi_frees_blobs_and_snapshots(cli, busybox_image, portside_root):
    cli("rmi", busybox_image)
    assert list((portside_root / "content/blobs/sha256").iterdir()) == []
    assert [p for p in (portside_root / "snapshots").iterdir() if not p.name.startswith(".")] == []
    assert cli("system", "check").out.strip() == "store is consistent"


def test_import_with_changes_and_history(cli, tmp_path):
    tar = _rootfs_tar(tmp_path / "root.tar.gz", {"bin/hello": b"#!/bin/sh\necho hi\n",
                                                 "etc/motd": b"welcome\n"}, gz=True)
    image_id = cli("import", "--change", 'CMD ["/bin/hello"]', "--change", "ENV A=1 B=two",
                   "-c", "WORKDIR /srv", "-m", "my base", str(tar), "base:1").out.strip()
    assert image_id.startswith("sha256:")
    cfg = json.loads(cli("inspect", "--format", "{{json .Config}}", "base:1").out)
    assert cfg["Cmd"] == ["/bin/hello"]
    assert cfg["Env"] == ["A=1", "B=two"]
    assert cfg["WorkingDir"] == "/srv"
    history = cli("history", "base:1", "--format", "{{.ID}}|{{.Comment}}").out.splitlines()
    assert history == [f"{image_id[7:19]}|my base"]
    # from standard input, no name: a dangling image
    data = _rootfs_tar(tmp_path / "r2.tar", {"x": b"1"}).read_bytes()
    cli("import", "-", input=data)
    rows = cli("images", "--format", "{{.Repository}} {{.Tag}}").out.splitlines()
    assert "<none> <none>" in rows
    assert cli("images", "-f", "dangling=true", "-q").out.strip() != ""
    pruned = cli("image", "prune", "-f").out
    assert "deleted: sha256:" in pruned
    assert cli("images", "-f", "dangling=true", "-q").out.strip() == ""


def test_inspect_is_docker_shaped(cli, busybox_image):
    doc = json.loads(cli("inspect", busybox_image).out)
    assert isinstance(doc, list) and len(doc) == 1
    image = doc[0]
    for key in ("Id", "RepoTags", "Created", "Config", "Architecture", "Os", "Size",
                "GraphDriver", "RootFS", "Metadata"):
        assert key in image
    assert image["RepoTags"] == ["busybox:latest"]
    assert image["RootFS"]["Type"] == "layers" and len(image["RootFS"]["Layers"]) == 1
    assert Path(image["GraphDriver"]["Data"]["UpperDir"], "bin/busybox").is_file()
    assert cli("image", "inspect", "-f", "{{.Os}}/{{.Architecture}}", busybox_image).out.strip() \
        .startswith("linux/")


def test_bad_input_is_one_line_exit_125(cli, tmp_path):
    for args in (["tag", "nope", "x"], ["inspect", "nothing:here"], ["rmi", "Bad:Name"],
                 ["tag", "x", "UPPER/case"], ["load", "-i", str(tmp_path / "missing.tar")],
                 ["images", "--filter", "bogus"], ["image", "bootstrap", "alpine"],
                 ["import", str(tmp_path / "missing.tar")]):
        proc = cli(*args, check=False)
        assert proc.returncode in (1, 125), (args, proc.returncode, proc.err)
        assert proc.err.count("\n") == 1 and "Traceback" not in proc.err, (args, proc.err)
    proc = cli("images", "--no-such-flag", check=False)
    assert proc.returncode == 125 and "unrecognized arguments" in proc.err


def test_save_load_roundtrip_keeps_ids_and_names(cli, busybox_image, tmp_path, portside_root):
    cli("tag", busybox_image, "lab/bb:1")
    archive = tmp_path / "out.tar"
    cli("save", "-o", str(archive), busybox_image, "lab/bb:1")
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        index = json.load(tar.extractfile("index.json"))
        manifest = json.load(tar.extractfile("manifest.json"))
    assert {"oci-layout", "index.json", "manifest.json", "repositories"} <= names
    assert sorted(manifest[0]["RepoTags"]) == ["busybox:latest", "lab/bb:1"]
    assert {m["annotations"]["io.containerd.image.name"] for m in index["manifests"]} == {
        "docker.io/library/busybox:latest", "docker.io/lab/bb:1"}
    image_id = cli("images", "-q", "--no-trunc").out.split()[0]
    cli("rmi", "-f", image_id)
    out = cli("load", "-i", str(archive)).out
    assert "Loaded image: busybox:latest" in out and "Loaded image: lab/bb:1" in out
    assert cli("images", "-q", "--no-trunc").out.split()[0] == image_id
    # from standard input too
    cli("rmi", "-f", image_id)
    cli("load", input=archive.read_bytes())
    assert cli("images", "-q", "--no-trunc").out.split()[0] == image_id
    assert cli("system", "check").out.strip() == "store is consistent"


def test_system_check_finds_and_repairs_corruption(cli, busybox_image, portside_root):
    blobs = sorted((portside_root / "content/blobs/sha256").iterdir(), key=lambda p: -p.stat().st_size)
    layer = blobs[0]
    with open(layer, "r+b") as f:
        f.seek(100)
        f.write(b"corrupt")
    proc = cli("system", "check", check=False)
    assert proc.returncode == 1 and "does not match its digest" in proc.out
    cli("system", "check", "--repair")
    assert cli("system", "check").out.strip() == "store is consistent"
    assert cli("images", "-q").out == ""


def test_system_df_and_info(cli, busybox_image):
    df = cli("system", "df").out.splitlines()
    assert df[0].split()[:3] == ["TYPE", "TOTAL", "ACTIVE"]
    assert df[1].split()[:2] == ["Images", "1"]
    info = json.loads(cli("info", "--format", "json").out)
    assert info["Images"] == 1 and info["Driver"] == "overlay"


def test_events_record_image_changes(cli, busybox_image):
    import time

    cli("tag", busybox_image, "ev:1")
    out = cli("events", "--since", "0", "--until", str(time.time() + 0.5), "--format",
              "{{.Type}} {{.Action}}").out.splitlines()
    assert "image import" in out and "image tag" in out
    # Docker's other time forms: a duration back from now, RFC 3339; a bad one is one line
    recent = cli("events", "--since", "10m", "--until", "0s", "--format",
                 "{{.Type}} {{.Action}}").out.splitlines()
    assert "image tag" in recent
    assert cli("events", "--since", "2000-01-01T00:00:00Z", "--until", "0s", "--format",
               "{{.Action}}").out.count("tag") >= 1
    bad = cli("events", "--since", "yesterday", check=False)
    assert bad.returncode == 125 and bad.err == "Error: invalid time value: yesterday\n"


def test_the_program_ends_fast_without_losing_writes_or_output(cli, busybox_image,
                                                               portside_root):
    # `portside` leaves the database to its exit (no checkpoint, no teardown): what each
    # command committed is there for the next one and for another reader at once
    for i in range(3):
        cli("tag", busybox_image, f"quick:{i}")
    conn = sqlite3.connect(portside_root / "metadata.db")
    try:
        names = {row[0] for row in conn.execute("SELECT name FROM refs")}
    finally:
        conn.close()
    assert {"quick:0", "quick:1", "quick:2"} <= {n.rsplit("/", 1)[-1] for n in names}
    # every byte of a long answer is flushed before the exit
    out = cli("inspect", *[f"quick:{i}" for i in range(3)], busybox_image).out
    assert len(json.loads(out)) == 4
    # a reader that goes away early is no error
    import subprocess

    from conftest import PORTSIDE  # type: ignore[import-not-found]

    proc = subprocess.run(["bash", "-o", "pipefail", "-c", f"'{PORTSIDE}' history "
                           f"--no-trunc {busybox_image} | head -c 1"], capture_output=True,
                          env=cli.env(), timeout=60)
    assert (proc.returncode, proc.stderr) == (0, b"")


def test_store_metadata_uses_wal(engine):
    engine.images.list()
    conn = sqlite3.connect(engine.root / "metadata.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_load_accepts_retarred_layouts_and_refuses_malformed_ones(cli, busybox_image, tmp_path):
    import subprocess

    archive = tmp_path / "bb.tar"
    cli("save", "-o", str(archive), busybox_image)
    layout = tmp_path / "layout"
    layout.mkdir()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(layout)], check=True)
    retarred = tmp_path / "re.tar"  # GNU tar writes "./" first
    subprocess.run(["tar", "-C", str(layout), "-cf", str(retarred), "."], check=True)
    cli("rmi", busybox_image)
    assert "Loaded image: busybox:latest" in cli("load", "-i", str(retarred)).out
    (layout / "manifest.json").write_text('{"not": "a list"}')
    (layout / "index.json").unlink()
    bad = tmp_path / "bad.tar"
    subprocess.run(["tar", "-C", str(layout), "-cf", str(bad), "."], check=True)
    proc = cli("load", "-i", str(bad), check=False)
    assert proc.returncode == 125 and "malformed" in proc.err and "internal" not in proc.err
    assert cli("system", "check").out.strip() == "store is consistent"
