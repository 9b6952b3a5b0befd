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


# ----------------------------------------------------------------------------------- cp -L

#: Links the -L tests follow; {host_only} and {host} are paths that exist on the host but not in
#: the container; /vol is a volume.
LINKS = ("mkdir -p /d/sub /l && echo inside > /d/sub/f && ln -s f /d/sub/inner && "
         "echo secret-inside > /etc/marker && "
         "ln -s /etc/marker /l/file && ln -s /d/sub /l/dir && ln -s /no/such/file /l/missing && "
         "ln -s {host_only} /l/hostonly && ln -s {host} /l/hostdir && "
         "ln -s c2 /l/c1 && ln -s /l/c3 /l/c2 && ln -s ../etc/marker /l/c3 && "
         "ln -s ../../../../../../etc/marker /l/up && ln -s /l/dir/../sub/f /l/viadotdot && "
         "ln -s /l/loop2 /l/loop1 && ln -s /l/loop1 /l/loop2 && ln -s /vol/v /l/tovol && "
         "echo ready && exec sleep 300")


def _tree(top) -> dict:
    """Everything under ``top``: path -> ("link", target) | ("file", bytes, mode) | ("dir",)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, top)
            if os.path.islink(path):
                out[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                out[rel] = ("dir",)
            else:
                with open(path, "rb") as f:
                    out[rel] = ("file", f.read(), os.lstat(path).st_mode)
    return out


@pytest.fixture
def linked(cli, busybox_image, tmp_path):
    """A container full of links, a host folder that must not change, and an output folder."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "host-only").write_text("host secret\n")
    os.symlink("/etc/hostname", host / "to-host-etc")
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "v").write_text("volume-data\n")
    cli("run", "-d", "--name", "lnk", "-v", f"{vol}:/vol", "busybox", "sh", "-c",
        LINKS.format(host_only=host / "host-only", host=host))
    import time

    deadline = time.monotonic() + 10
    while "ready" not in cli("logs", "lnk").out:
        assert time.monotonic() < deadline, "the container never got ready"
        time.sleep(0.05)
    out = tmp_path / "out"
    out.mkdir()
    def host_state():
        with open("/etc/hostname", "rb") as f:
            return _tree(host), _tree(vol), f.read(), os.path.lexists("/etc/marker")

    before = host_state()
    yield cli, out
    assert host_state() == before, "cp changed the host"
    cli("rm", "-f", "lnk", check=False)


def _outputs_stay_inside(out):
    """Nothing cp wrote is a link that leads out of the output folder."""
    for rel, entry in _tree(out).items():
        if entry[0] == "link":
            target = os.path.normpath(os.path.join(out, os.path.dirname(rel), entry[1]))
            assert not os.path.isabs(entry[1]) and target.startswith(str(out) + "/"), (rel, entry)


@pytest.mark.parametrize("src, content", [
    ("/l/file", "secret-inside\n"),             # an absolute link to a file
    ("/l/c1", "secret-inside\n"),               # a chain: relative, absolute, relative with ..
    ("/l/up", "secret-inside\n"),               # .. past the root stops at the container's /
    ("/l/viadotdot", "inside\n"),               # .. after a link is taken from its target
    ("/l/tovol", "volume-data\n"),              # into a volume: read where the container sees it
    ("/d/../l/c1", "secret-inside\n"),          # .. in SRC itself is lexical, as Docker's
])
def test_cp_L_copies_the_target_inside_the_container(linked, src, content):
    cli, out = linked
    cli("cp", "-L", f"lnk:{src}", str(out / "copy"))
    got = out / "copy"
    assert not got.is_symlink() and got.is_file() and got.read_text() == content
    # into an existing folder: named after the link, as Docker does
    cli("cp", "-L", f"lnk:{src}", str(out))
    named = out / os.path.basename(src)
    assert not named.is_symlink() and named.read_text() == content
    _outputs_stay_inside(out)


def test_without_L_the_link_itself_is_copied(linked):
    cli, out = linked
    cli("cp", "lnk:/l/file", str(out / "plain"))
    assert os.readlink(out / "plain") == "/etc/marker"
    cli("cp", "lnk:/l/c1", str(out / "chain"))
    assert os.readlink(out / "chain") == "c2"


def test_cp_L_on_a_link_to_a_folder_follows_only_that_link(linked):
    cli, out = linked
    cli("cp", "-L", "lnk:/l/dir", str(out / "new"))
    assert (out / "new").is_dir() and not (out / "new").is_symlink()
    assert (out / "new" / "f").read_text() == "inside\n"
    assert os.readlink(out / "new" / "inner") == "f"          # links inside stay links
    cli("cp", "-L", "lnk:/l/dir", str(out))
    assert (out / "dir").is_dir() and not (out / "dir").is_symlink()
    assert (out / "dir" / "f").read_text() == "inside\n"
    # the tar stream: one folder named after the link, its file, its inner link
    with tarfile.open(fileobj=io.BytesIO(cli("cp", "-L", "lnk:/l/dir", "-").stdout)) as tf:
        kinds = {m.name: (m.isdir(), m.isreg(), m.issym()) for m in tf.getmembers()}
    assert kinds == {"dir": (True, False, False), "dir/f": (False, True, False),
                     "dir/inner": (False, False, True)}
    _outputs_stay_inside(out)


def test_cp_L_tar_stream_holds_the_target_under_the_links_name(linked):
    cli, _out = linked
    with tarfile.open(fileobj=io.BytesIO(cli("cp", "-L", "lnk:/l/c1", "-").stdout)) as tf:
        [member] = tf.getmembers()
        assert member.isreg() and member.name == "c1"
        assert tf.extractfile(member).read() == b"secret-inside\n"


@pytest.mark.parametrize("src, shown", [
    ("/l/missing", "/no/such/file"),
    ("/l/hostonly", "host-only"),   # exists on the host, not in the container
])
def test_cp_L_on_a_link_to_a_missing_target_is_an_error(linked, src, shown):
    cli, out = linked
    proc = cli("cp", "-L", f"lnk:{src}", str(out / "x"), check=False)
    assert proc.returncode == 125
    assert "Could not find the file" in proc.err and "in container lnk" in proc.err
    assert shown in proc.err and len(proc.err.strip().splitlines()) == 1
    assert list(out.iterdir()) == []
    # without -L the link itself is still copied
    cli("cp", f"lnk:{src}", str(out / "x"))
    assert (out / "x").is_symlink()


def test_cp_L_on_a_loop_of_links_is_an_error(linked):
    cli, out = linked
    proc = cli("cp", "-L", "lnk:/l/loop1", str(out / "x"), check=False)
    assert proc.returncode == 125 and "too many levels of symbolic links" in proc.err
    assert list(out.iterdir()) == []


def test_cp_L_into_the_container_follows_the_host_link(linked, tmp_path):
    cli, _out = linked
    src = tmp_path / "src"
    src.mkdir()
    (src / "real").write_text("from-host\n")
    os.symlink(src / "real", src / "alias")
    before = _tree(src)
    cli("cp", "-L", str(src / "alias"), "lnk:/tmp/")
    cli("cp", str(src / "alias"), "lnk:/tmp/plain-alias")
    # through a link in the container: it is followed in the container
    cli("cp", "-L", str(src / "alias"), "lnk:/l/dir/")
    # a link to a folder that only the host has leads nowhere (the fixture checks the host)
    refused = cli("cp", "-L", str(src / "alias"), "lnk:/l/hostdir/", check=False)
    assert refused.returncode == 125 and "does not exist in container" in refused.err
    got = cli("exec", "lnk", "sh", "-c",
              "cat /tmp/alias; test -L /tmp/alias || echo regular; readlink /tmp/plain-alias; "
              "cat /d/sub/alias").out
    assert got == f"from-host\nregular\n{src / 'real'}\nfrom-host\n"
    assert _tree(src) == before


def test_get_archive_follow_links_in_the_models(linked, engine):
    container = engine.containers.get("lnk")
    buf = io.BytesIO()
    stat_ = container.get_archive("/l/c1", buf, follow_links=True)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tf:
        [member] = tf.getmembers()
        assert member.isreg() and tf.extractfile(member).read() == b"secret-inside\n"
    assert stat_["name"] == "c1" and stat_["size"] == len("secret-inside\n")
    buf = io.BytesIO()
    container.get_archive("/l/c1", buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tf:
        [member] = tf.getmembers()
        assert member.issym() and member.linkname == "c2"
    from portside.engine.errors import NotFound

    with pytest.raises(NotFound, match="Could not find the file"):
        container.get_archive("/l/hostonly", io.BytesIO(), follow_links=True)

