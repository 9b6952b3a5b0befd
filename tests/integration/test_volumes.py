"""Volumes end to end: the `volume` commands through the real CLI, and the mounts a container
gets (named, anonymous, bind, tmpfs, --volumes-from, image VOLUME seeding) on a real store (root).
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest

from portside.engine.errors import InvalidArgument, NotFound
from portside.engine.events import read_events
from portside.engine.store.mount import LinuxMounter

pytestmark = pytest.mark.integration

CID1 = "c1" * 32
CID2 = "c2" * 32


@pytest.fixture
def vm(engine):
    return engine.volume_manager


def _oci(entries):
    return {e["Destination"]: e["oci"] for e in entries}


# ------------------------------------------------------------------------- the volume commands
def test_volume_commands_through_the_cli(cli, portside_root, vm):
    assert cli("volume", "create", "data", "--label", "team=ml", "-o", "o=size=1m").out == "data\n"
    assert cli("volume", "create", "data").out == "data\n"  # existing: returned, as Docker does
    unnamed = cli("volume", "create").out.strip()
    assert len(unnamed) == 64 and all(c in "0123456789abcdef" for c in unnamed)
    cli("volume", "rm", unnamed)
    anon = vm.create(anonymous=True)["Name"]  # what `run -v /path` makes
    lines = cli("volume", "ls").out.splitlines()
    assert lines[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert sorted(line.split() for line in lines[1:]) == sorted([["local", anon], ["local", "data"]])
    assert cli("volume", "ls", "-q", "--filter", "label=team=ml").out == "data\n"
    # (not ^da: an anonymous volume's hex name starts with "da" one time in 256)
    assert cli("volume", "ls", "-q", "--filter", "name=^dat").out == "data\n"
    assert cli("volume", "ls", "--format", "{{.Name}} {{.Labels}}",
               "--filter", "label=team").out == "data team=ml\n"
    doc = json.loads(cli("volume", "inspect", "data").out)[0]
    assert set(doc) == {"CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"}
    assert doc["Labels"] == {"team": "ml"} and doc["Options"] == {"o": "size=1m"}
    assert doc["Mountpoint"] == str(portside_root / "volumes" / "data" / "_data")
    assert Path(doc["Mountpoint"]).is_dir() and doc["Scope"] == "local"
    assert cli("volume", "inspect", "-f", "{{.Driver}}", "data").out == "local\n"
    # the top-level inspect finds volumes too
    assert cli("inspect", "--format", "{{.Name}}", "data").out == "data\n"
    missing = cli("volume", "inspect", "nosuch", check=False)
    assert missing.returncode == 1 and "No such volume: nosuch" in missing.err
    bad = cli("volume", "create", "a/b", check=False)
    assert bad.returncode == 125 and "includes invalid characters" in bad.err
    # Docker >= 23: prune removes only anonymous volumes unless -a
    out = cli("volume", "prune", "-f").out
    assert out == f"Deleted Volumes:\n{anon}\n\nTotal reclaimed space: 0B\n"
    assert cli("volume", "ls", "-q").out == "data\n"
    gone = cli("volume", "rm", "data", "nosuch", check=False)
    assert gone.returncode == 1 and gone.out == "data\n"
    assert "Error: get nosuch: no such volume" in gone.err
    assert cli("volume", "rm", "-f", "nosuch").returncode == 0
    assert not (portside_root / "volumes" / "data").exists()
    assert cli("volume", "ls", "-q").out == ""


def test_rm_refuses_a_volume_in_use(cli, vm, engine):
    vm.prepare_mounts(CID1, binds=["busy:/data"])
    res = cli("volume", "rm", "busy", check=False)
    assert res.returncode == 1
    assert res.err == f"Error: remove busy: volume is in use - [{CID1}]\n"
    assert [v.name for v in engine.volumes.list(filters={"dangling": True})] == []
    vm.release(CID1)
    assert [v.name for v in engine.volumes.list(filters={"dangling": "true"})] == ["busy"]
    assert cli("volume", "rm", "busy").out == "busy\n"
    actions = [(e.type, e.action, e.actor) for e in read_events(engine.db)]
    assert actions == [("volume", "create", "busy"), ("volume", "mount", "busy"),
                       ("volume", "unmount", "busy"), ("volume", "destroy", "busy")]


def test_prune_keeps_named_and_in_use_volumes(engine, vm):
    named = engine.volumes.create("keepme", labels={"k": "v"})
    (Path(named.attrs["Mountpoint"]) / "f").write_bytes(b"x" * 1000)
    used = vm.prepare_mounts(CID1, binds=["/anon-used"])[0]["Name"]
    free = vm.prepare_mounts(CID2, binds=["/anon-free"])[0]["Name"]
    (vm.mountpoint(free) / "blob").write_bytes(b"y" * 4096)
    vm.release(CID2)
    assert vm.usage() == {used: [CID1]}
    assert engine.volumes.prune(filters={"label": "nope"}) == {"VolumesDeleted": [],
                                                               "SpaceReclaimed": 0}
    assert engine.volumes.prune() == {"VolumesDeleted": [free], "SpaceReclaimed": 4096}
    names = {v.name for v in engine.volumes.list()}
    assert names == {"keepme", used}
    assert engine.volumes.prune(all=True, filters={"label!": "k"})["VolumesDeleted"] == []
    report = engine.volumes.prune(all=True)
    assert report == {"VolumesDeleted": ["keepme"], "SpaceReclaimed": 1000}
    assert {v.name for v in engine.volumes.list()} == {used}
    vm.release(CID1)
    assert engine.volumes.prune(filters={"all": "true"})["VolumesDeleted"] == [used]
    with pytest.raises(InvalidArgument, match="invalid filter 'colour'"):
        engine.volumes.list(filters={"colour": "red"})


# ------------------------------------------------------------------------- container mounts
def test_mount_entries_and_oci_options(vm, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    entries = vm.prepare_mounts(
        CID1, binds=["data:/data:ro", f"{host}:/ctn", "/anon"],
        mounts=[f"type=bind,src={host},dst=/ro-bind,readonly,bind-propagation=rslave",
                "type=volume,src=data2,dst=/data/sub,volume-nocopy",
                "type=tmpfs,dst=/scratch,tmpfs-size=1m,tmpfs-mode=1770"],
        tmpfs=["/run:exec,size=64k"], image_volumes=["/anon", "/img/vol", "/data"])
    by_dst = {e["Destination"]: e for e in entries}
    assert set(by_dst) == {"/data", "/ctn", "/anon", "/ro-bind", "/data/sub", "/scratch",
                           "/run", "/img/vol"}
    # parents before children, so the runtime mounts /data before /data/sub
    order = [e["Destination"] for e in entries]
    assert order.index("/data") < order.index("/data/sub")
    data = by_dst["/data"]
    assert {k: v for k, v in data.items() if k != "oci"} == {
        "Type": "volume", "Name": "data", "Source": str(vm.mountpoint("data")),
        "Destination": "/data", "Driver": "local", "Mode": "ro", "RW": False, "Propagation": ""}
    oci = _oci(entries)
    assert oci["/data"] == {"destination": "/data", "type": "bind",
                            "source": str(vm.mountpoint("data")),
                            "options": ["rbind", "rprivate", "ro"]}
    assert oci["/ctn"] == {"destination": "/ctn", "type": "bind", "source": str(host),
                           "options": ["rbind", "rprivate", "rw"]}
    assert by_dst["/ctn"]["RW"] and by_dst["/ctn"]["Propagation"] == "rprivate"
    assert oci["/ro-bind"]["options"] == ["rbind", "rslave", "ro"]
    assert not by_dst["/ro-bind"]["RW"]
    assert oci["/scratch"] == {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                               "options": ["noexec", "nosuid", "nodev", "rprivate", "size=1024k",
                                           "mode=1770", "rw"]}
    assert oci["/run"]["options"] == ["nosuid", "nodev", "rprivate", "exec", "size=64k", "rw"]
    # anonymous volumes: 64-hex names, marked anonymous; the image's /data is covered by -v
    for dst in ("/anon", "/img/vol"):
        name = by_dst[dst]["Name"]
        assert len(name) == 64 and vm.is_anonymous(name)
        assert vm.get(name)["Labels"] == {"com.docker.volume.anonymous": ""}
    assert not vm.is_anonymous("data") and not vm.is_anonymous("data2")
    assert sorted(vm.usage()) == sorted(["data", "data2", by_dst["/anon"]["Name"],
                                         by_dst["/img/vol"]["Name"]])
    # rm -v: the container's anonymous volumes go, named ones stay
    removed = vm.release(CID1, remove_anonymous=True)
    assert sorted(removed) == sorted([by_dst["/anon"]["Name"], by_dst["/img/vol"]["Name"]])
    assert {v["Name"] for v in vm.list()} == {"data", "data2"}
    assert vm.usage() == {}
    assert not (vm.root / removed[0]).exists()


def test_bind_sources_and_duplicates(vm, tmp_path):
    missing = tmp_path / "not" / "there"
    with pytest.raises(InvalidArgument) as err:
        vm.prepare_mounts(CID1, mounts=[f"type=bind,src={missing},dst=/x"])
    assert str(err.value) == ('invalid mount config for type "bind": '
                              f"bind source path does not exist: {missing}")
    with pytest.raises(InvalidArgument, match="^Duplicate mount point: /data$"):
        vm.prepare_mounts(CID1, binds=["v1:/data"], mounts=["type=tmpfs,dst=/data/"])
    assert vm.list() == [] and vm.usage() == {}  # nothing created by a refused request
    # -v creates a missing host directory, as Docker does
    vm.prepare_mounts(CID1, binds=[f"{missing}:/x"])
    assert missing.is_dir()
    # a user mount wins over an anonymous -v on the same path (no duplicate error)
    entries = vm.prepare_mounts(CID2, binds=["/same", "named1:/same"])
    assert [(e["Destination"], e["Name"]) for e in entries] == [("/same", "named1")]
    vm.release(CID1)
    vm.release(CID2)


def test_volumes_from_shares_volumes_and_honours_ro(vm, tmp_path):
    host = tmp_path / "h"
    host.mkdir()
    first = vm.prepare_mounts(CID1, binds=["shared:/shared", f"{host}:/h:ro", "/anon"],
                              mounts=["type=tmpfs,dst=/t"])
    records = [{k: v for k, v in e.items() if k != "oci"} for e in first]
    anon = next(e["Name"] for e in first if e["Destination"] == "/anon")
    second = vm.prepare_mounts(CID2, volumes_from=[(records, "ro")],
                               binds=["other:/shared"])
    by_dst = {e["Destination"]: e for e in second}
    assert by_dst["/shared"]["Name"] == "other"          # the user's -v wins
    assert by_dst["/anon"]["Name"] == anon and not by_dst["/anon"]["RW"]
    assert by_dst["/h"]["oci"]["options"][-1] == "ro" and by_dst["/t"]["Type"] == "tmpfs"
    third = vm.prepare_mounts("c3" * 32, volumes_from=[records])
    assert {e["Destination"]: e["RW"] for e in third} == {"/shared": True, "/h": False,
                                                         "/anon": True, "/t": True}
    flat = vm.prepare_mounts("c6" * 32, volumes_from=[dict(records[0], RW=False)])
    assert [(e["Destination"], e["RW"]) for e in flat] == [("/shared", False)]
    vm.release("c6" * 32)
    with pytest.raises(InvalidArgument, match="invalid mode: rx"):
        vm.prepare_mounts("c4" * 32, volumes_from=[(records, "rx")])
    # rm -v of the first container keeps the anonymous volume others still use
    assert vm.release(CID1, remove_anonymous=True) == []
    assert vm.usage()[anon] == sorted([CID2, "c3" * 32])
    vm.release(CID2)
    assert vm.release("c3" * 32, remove_anonymous=True) == [anon]
    with pytest.raises(NotFound, match="no such volume"):
        vm.prepare_mounts("c5" * 32, volumes_from=[records])


# ------------------------------------------------------------------------- image VOLUME seeding
def _image_rootfs(tmp_path: Path) -> Path:
    rootfs = tmp_path / "rootfs"
    db = rootfs / "var" / "lib" / "db"
    (db / "sub").mkdir(parents=True)
    os.chmod(db, 0o750)
    os.chown(db, 999, 998)
    (db / "conf").write_text("defaults\n")
    os.chmod(db / "conf", 0o640)
    os.chown(db / "conf", 1000, 1000)
    os.link(db / "conf", db / "conf.hard")
    os.symlink("/etc/passwd", db / "abs-link")  # copied as a link, never followed
    os.symlink("../../../../outside", db / "rel-link")
    os.setxattr(db / "conf", "user.note", b"kept")
    os.mkfifo(db / "sub" / "fifo")
    os.mknod(db / "sub" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    (db / "sub" / "big").write_bytes(os.urandom(300_000))
    os.chmod(db / "sub" / "big", 0o4755)
    # an image path that points out of the root filesystem through a symlink
    (rootfs / "escape").symlink_to("/etc")
    (rootfs / "up").symlink_to("../../../../../../etc")
    return rootfs


def test_new_volume_is_seeded_with_the_image_content(vm, tmp_path):
    rootfs = _image_rootfs(tmp_path)
    src = rootfs / "var" / "lib" / "db"
    entries = vm.prepare_mounts(CID1, binds=["dbdata:/var/lib/db"], rootfs=rootfs,
                                image_volumes=["/var/lib/db"])
    data = Path(entries[0]["Source"])
    assert data == vm.mountpoint("dbdata")
    st = os.lstat(data)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, 999, 998)
    conf = os.lstat(data / "conf")
    assert (data / "conf").read_text() == "defaults\n"
    assert (stat.S_IMODE(conf.st_mode), conf.st_uid, conf.st_gid) == (0o640, 1000, 1000)
    assert os.lstat(data / "conf.hard").st_ino == conf.st_ino
    assert os.getxattr(data / "conf", "user.note") == b"kept"
    assert os.readlink(data / "abs-link") == "/etc/passwd"
    assert os.readlink(data / "rel-link") == "../../../../outside"
    assert stat.S_ISFIFO(os.lstat(data / "sub" / "fifo").st_mode)
    null = os.lstat(data / "sub" / "null")
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert (data / "sub" / "big").read_bytes() == (src / "sub" / "big").read_bytes()
    assert stat.S_IMODE(os.lstat(data / "sub" / "big").st_mode) == 0o4755
    # existing content is never overwritten: a second container sees what the first wrote
    (data / "conf").write_text("changed\n")
    vm.prepare_mounts(CID2, binds=["dbdata:/var/lib/db"], rootfs=rootfs)
    assert (data / "conf").read_text() == "changed\n"
    # nocopy, and paths that leave the rootfs through symlinks, are not seeded
    e = vm.prepare_mounts("c3" * 32, binds=["empty:/var/lib/db:nocopy", "/escape", "/up/x"],
                          mounts=["type=volume,src=nc2,dst=/var/lib/db2,volume-nocopy"],
                          rootfs=rootfs)
    for entry in e:
        assert os.listdir(entry["Source"]) == [], entry["Destination"]
    # an anonymous volume for an image VOLUME is seeded too
    anon = vm.prepare_mounts("c4" * 32, image_volumes=["/var/lib/db"], rootfs=rootfs)[0]
    assert Path(anon["Source"], "conf").read_text() == "defaults\n"
    for cid in (CID1, CID2, "c3" * 32, "c4" * 32):
        vm.release(cid, remove_anonymous=True)


def test_read_only_bind_refuses_writes_through_the_real_mounter(vm, tmp_path):
    entries = vm.prepare_mounts(CID1, binds=["robox:/data:ro"])
    Path(entries[0]["Source"], "file").write_text("inside\n")
    oci = entries[0]["oci"]
    target = tmp_path / "target"
    target.mkdir()
    mounter = LinuxMounter()
    mounter.bind(Path(oci["source"]), target, readonly="ro" in oci["options"],
                 recursive="rbind" in oci["options"])
    try:
        assert (target / "file").read_text() == "inside\n"
        with pytest.raises(OSError) as err:
            (target / "new").write_text("x")
        assert err.value.errno == errno.EROFS
    finally:
        mounter.unmount(target)
    rw = vm.prepare_mounts(CID2, binds=["robox:/data"])[0]["oci"]
    mounter.bind(Path(rw["source"]), target, readonly="ro" in rw["options"])
    try:
        (target / "new").write_text("x")
    finally:
        mounter.unmount(target)
    assert Path(rw["source"], "new").read_text() == "x"
    vm.release(CID1)
    vm.release(CID2)


def test_check_finds_orphan_volume_folders(vm):
    vm.create("real")
    (vm.root / "orphan" / "_data").mkdir(parents=True)
    assert vm.check() == ["volume folder orphan: no volume record"]
    assert vm.check(repair=True) == ["volume folder orphan: no volume record"]
    assert not (vm.root / "orphan").exists() and vm.check() == []
    import shutil

    shutil.rmtree(vm.mountpoint("real"))
    assert vm.check(repair=True) == ["volume real: data folder missing"]
    assert vm.mountpoint("real").is_dir()


def test_system_df_counts_local_volumes(engine, vm):
    from portside.engine.models import volumes as models_volumes  # registers the df row

    assert models_volumes is not None
    vm.create("a1")
    (vm.mountpoint("a1") / "f").write_bytes(b"z" * 500)
    vm.prepare_mounts(CID1, binds=["b1:/b"])
    (vm.mountpoint("b1") / "f").write_bytes(b"z" * 200)
    row = next(r for r in engine.system.df() if r["Type"] == "Local Volumes")
    assert row == {"Type": "Local Volumes", "TotalCount": 2, "Active": 1, "Size": 700,
                   "Reclaimable": 500}
    vm.release(CID1)


# ------------------------------------------------------------------------- end to end with `run`
def _needs_run():
    try:
        import portside.engine.commands.containers  # noqa: F401
    except ModuleNotFoundError:
        pytest.skip("`portside run` is not there yet (engine/commands/containers.py)")


def test_named_volume_persists_across_containers(cli, busybox_image):
    _needs_run()
    cli("run", "--rm", "-v", "data:/data", busybox_image, "sh", "-c", "echo kept > /data/f")
    assert cli("run", "--rm", "-v", "data:/data", busybox_image, "cat", "/data/f").out == "kept\n"
    assert cli("volume", "ls", "-q").out == "data\n"  # --rm keeps named volumes


def test_read_only_bind_refuses_writes_in_a_container(cli, busybox_image, tmp_path):
    _needs_run()
    host = tmp_path / "shared"
    host.mkdir()
    (host / "in").write_text("from host\n")
    res = cli("run", "--rm", "-v", f"{host}:/ctn:ro", busybox_image, "sh", "-c",
              "cat /ctn/in; echo x > /ctn/out", check=False)
    assert res.returncode != 0 and res.out == "from host\n"
    assert "Read-only file system" in res.err + res.out
    assert not (host / "out").exists()
    cli("run", "--rm", "-v", f"{host}:/ctn", busybox_image, "sh", "-c", "echo y > /ctn/out")
    assert (host / "out").read_text() == "y\n"


def test_volumes_from_and_rm_v(cli, busybox_image):
    _needs_run()
    cli("run", "--name", "src", "-v", "/anon", "-v", "named:/named", busybox_image, "sh", "-c",
        "echo a > /anon/f; echo n > /named/f")
    mounts = json.loads(cli("inspect", "--format", "{{json .Mounts}}", "src").out)
    assert {m["Destination"] for m in mounts} == {"/anon", "/named"}
    assert all("oci" not in m and m["Source"] for m in mounts)
    anon = next(m["Name"] for m in mounts if m["Destination"] == "/anon")
    out = cli("run", "--rm", "--volumes-from", "src", busybox_image, "cat", "/anon/f",
              "/named/f").out
    assert out == "a\nn\n"
    res = cli("run", "--rm", "--volumes-from", "src:ro", busybox_image, "sh", "-c",
              "echo b > /anon/f", check=False)
    assert res.returncode != 0
    inuse = cli("volume", "rm", anon, check=False)
    assert inuse.returncode == 1 and "volume is in use" in inuse.err
    cli("rm", "-v", "src")
    assert cli("volume", "ls", "-q").out == "named\n"  # rm -v: anonymous ones only


def test_mount_tmpfs_in_a_container(cli, busybox_image):
    _needs_run()
    out = cli("run", "--rm", "--mount", "type=tmpfs,dst=/scratch,tmpfs-size=1m", busybox_image,
              "sh", "-c", "grep ' /scratch ' /proc/mounts").out
    assert out.split()[2] == "tmpfs" and "size=1024k" in out
