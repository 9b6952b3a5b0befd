"""``cp`` both ways, with Docker's placement rules, and never escaping the container's root.

The escape cases follow podman's and Docker's cp tests: a symlink inside the container that points
at ``/``, at ``..`` or at an absolute host path must resolve *inside* the container, for reads and
for writes, whether the container runs or not.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not shutil.which("runc"), reason="runc not installed"),
]

SETUP = ("mkdir -p /d/sub && echo inside > /d/sub/f && echo secret-inside > /etc/marker && "
         "ln -sfn / /d/root && ln -sfn ../../../../../../.. /d/up && ln -sfn /etc /d/etc && "
         "ln -sfn /etc/marker /d/abs && echo ready && exec sleep 300")


@pytest.fixture
def box(cli, busybox_image, tmp_path):
    cli("run", "-d", "--name", "box", "busybox", "sh", "-c", SETUP)
    import time

    deadline = time.monotonic() + 10
    while "ready" not in cli("logs", "box").out and time.monotonic() < deadline:
        time.sleep(0.05)
    yield cli
    cli("rm", "-f", "box", check=False)


def test_copy_out_rules(box, tmp_path):
    box("cp", "box:/d/sub/f", str(tmp_path))
    assert (tmp_path / "f").read_text() == "inside\n"
    box("cp", "box:/d/sub/f", str(tmp_path / "renamed"))
    assert (tmp_path / "renamed").read_text() == "inside\n"
    box("cp", "box:/d/sub", str(tmp_path / "newdir"))
    assert (tmp_path / "newdir" / "f").read_text() == "inside\n"
    (tmp_path / "into").mkdir()
    box("cp", "box:/d/sub", str(tmp_path / "into"))
    assert (tmp_path / "into" / "sub" / "f").is_file()
    (tmp_path / "contents").mkdir()
    box("cp", "box:/d/sub/.", str(tmp_path / "contents"))
    assert (tmp_path / "contents" / "f").is_file()
    tar = box("cp", "box:/d/sub", "-").stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        assert sorted(tf.getnames()) == ["sub", "sub/f"]
    missing = box("cp", "box:/nope", str(tmp_path), check=False)
    assert missing.returncode != 0 and "Could not find" in missing.err


def test_copy_in_rules(box, tmp_path):
    src = tmp_path / "hostdir"
    src.mkdir()
    (src / "a").write_text("A\n")
    box("cp", str(src / "a"), "box:/tmp/")
    box("cp", str(src), "box:/newdir")
    box("cp", str(src / "a"), "box:/tmp/b")
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as tf:
        data = b"from-tar\n"
        ti = tarfile.TarInfo("t/x")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    box("cp", "-", "box:/tmp", input=stream.getvalue())
    got = box("exec", "box", "sh", "-c", "cat /tmp/a /newdir/a /tmp/b /tmp/t/x").out
    assert got == "A\nA\nA\nfrom-tar\n"


@pytest.mark.parametrize("path", ["/d/root/etc/marker", "/d/up/etc/marker", "/d/etc/marker",
                                  "/d/abs"])
def test_reads_through_symlinks_stay_inside(box, tmp_path, path):
    dest = tmp_path / "out"
    dest.mkdir()
    box("cp", f"box:{path}", str(dest / "m"))
    got = (dest / "m")
    # A final symlink is copied as a link (Docker's default); follow it inside the container.
    if got.is_symlink():
        assert os.readlink(got) == "/etc/marker"
    else:
        assert got.read_text() == "secret-inside\n"


@pytest.mark.parametrize("running", [False, True])
def test_writes_through_symlinks_stay_inside(box, tmp_path, running):
    victim = tmp_path / "victim"
    victim.mkdir()
    host_file = tmp_path / "payload"
    host_file.write_text("payload\n")
    if not running:
        box("stop", "-t", "0", "box")
    # /d/up climbs past the root with "..": it must stop at the container's "/".
    target_rel = str(victim).lstrip("/")
    box("cp", str(host_file), f"box:/d/up/{os.path.dirname(target_rel)}/", check=False)
    box("cp", str(host_file), "box:/d/root/tmp/payload")
    assert not (victim / "payload").exists()
    assert not os.path.exists("/tmp/payload") or open("/tmp/payload").read() != "payload\n"
    # A tar stream carrying a symlink to / and then a file through it stays inside too.
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as tf:
        link = tarfile.TarInfo("esc")
        link.type = tarfile.SYMTYPE
        link.linkname = str(tmp_path)
        tf.addfile(link)
        data = b"pwned\n"
        ti = tarfile.TarInfo("esc/pwned")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    box("cp", "-", "box:/tmp", input=stream.getvalue(), check=False)
    assert not (tmp_path / "pwned").exists()
    if not running:
        box("start", "box")
        box("exec", "box", "true")
    listing = box("exec", "box", "cat", "/tmp/payload").out
    assert listing == "payload\n"
    box("kill", "box", check=False)


def test_cp_out_drops_device_nodes_and_takes_the_callers_ownership(cli, busybox_image, tmp_path):
    ctr = cli
    ctr("run", "-d", "--name", "devs", "busybox", "sh", "-c",
        "mkdir /out && mknod /out/sda b 8 0 && echo x > /out/f && chown 1000:1000 /out/f "
        "&& sleep 60")
    import time

    time.sleep(0.3)
    ctr("cp", "devs:/out", str(tmp_path / "plain"))
    assert not (tmp_path / "plain" / "sda").exists()
    assert (tmp_path / "plain" / "f").stat().st_uid == 0
    ctr("cp", "-a", "devs:/out", str(tmp_path / "kept"))
    assert (tmp_path / "kept" / "f").stat().st_uid == 1000
    assert not (tmp_path / "kept" / "sda").exists()
    ctr("rm", "-f", "devs")


def test_cp_in_refuses_read_only_mounts_and_keeps_hard_links(cli, busybox_image, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    cli("run", "-d", "--name", "rocp", "-v", f"{ro}:/ro:ro", busybox_image, "sleep", "60")
    src = tmp_path / "f"
    src.write_text("x")
    refused = cli("cp", str(src), "rocp:/ro/", check=False)
    assert refused.returncode == 125 and "read-only" in refused.err
    assert list(ro.iterdir()) == []
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "a").write_text("same")
    import os

    os.link(linked / "a", linked / "b")
    cli("cp", str(linked), "rocp:/tmp/")
    out = cli("exec", "rocp", "sh", "-c", "stat -c %i /tmp/linked/a /tmp/linked/b; "
              "cat /tmp/linked/b").out.split()
    assert out[0] == out[1] and out[2] == "same"
    cli("rm", "-f", "rocp")
