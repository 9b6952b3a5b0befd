"""The -v / --mount / --tmpfs grammars against Docker's behaviour, case by case."""

from __future__ import annotations

import pytest

from portside.engine.errors import InvalidArgument
from portside.engine.volumes.specs import (MountSpec, check_duplicates, mount_from_api,
                                           parse_mount, parse_tmpfs, parse_volume, valid_mode)

pytestmark = pytest.mark.unit

# (raw -v value, expected (type, source, target, readonly, mode, propagation, nocopy))
VOLUME_OK = [
    ("/data", ("volume", "", "/data", False, "", "", False)),
    ("/data/", ("volume", "", "/data", False, "", "", False)),
    ("data:/data", ("volume", "data", "/data", False, "", "", False)),
    ("data:/data:ro", ("volume", "data", "/data", True, "ro", "", False)),
    ("data:/data:rw", ("volume", "data", "/data", False, "rw", "", False)),
    ("data:/data:z", ("volume", "data", "/data", False, "z", "", False)),
    ("data:/data:Z", ("volume", "data", "/data", False, "Z", "", False)),
    ("data:/data:nocopy", ("volume", "data", "/data", False, "nocopy", "", True)),
    ("data:/data:ro,nocopy", ("volume", "data", "/data", True, "ro,nocopy", "", True)),
    ("data:/data:ro,z,nocopy", ("volume", "data", "/data", True, "ro,z,nocopy", "", True)),
    ("data:/data:cached", ("volume", "data", "/data", False, "cached", "", False)),
    ("my-vol_1.x:/srv", ("volume", "my-vol_1.x", "/srv", False, "", "", False)),
    ("/host:/ctn", ("bind", "/host", "/ctn", False, "", "rprivate", False)),
    ("/host:/ctn:ro", ("bind", "/host", "/ctn", True, "ro", "rprivate", False)),
    ("/host/:/ctn/sub/:rw", ("bind", "/host", "/ctn/sub", False, "rw", "rprivate", False)),
    ("/host:/ctn:rshared", ("bind", "/host", "/ctn", False, "rshared", "rshared", False)),
    ("/host:/ctn:ro,slave", ("bind", "/host", "/ctn", True, "ro,slave", "slave", False)),
    ("/host:/ctn:z,rprivate", ("bind", "/host", "/ctn", False, "z,rprivate", "rprivate", False)),
    ("/a/../b:/c/./d", ("bind", "/b", "/c/d", False, "", "rprivate", False)),
    ("/:/host", ("bind", "/", "/host", False, "", "rprivate", False)),
]

NAME_ERR = ('"{0}" includes invalid characters for a local volume name, only '
            '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
            "directory, use absolute path")

VOLUME_ERR = [
    ("a:b:c:d", "invalid volume specification: 'a:b:c:d'"),
    ("/a:/b:ro:x", "invalid volume specification: '/a:/b:ro:x'"),
    (":/data", "invalid volume specification: ':/data'"),
    ("", "invalid volume specification: ''"),
    ("/foo:rw", "invalid volume specification: '/foo:rw'"),
    ("/foo:ro", "invalid volume specification: '/foo:ro'"),
    ("data:/data:xyz", "invalid mode: xyz"),
    ("data:/data:ro,rw", "invalid mode: ro,rw"),
    ("data:/data:z,Z", "invalid mode: z,Z"),
    ("/h:/c:shared,slave", "invalid mode: shared,slave"),
    ("data:/data:nocopy,nocopy", "invalid mode: nocopy,nocopy"),
    ("data:/data:", None),  # empty mode is fine -- checked separately below
    ("data:rel", "invalid volume specification: 'data:rel': invalid mount config for type "
                 "\"volume\": invalid mount path: 'rel' mount path must be absolute"),
    ("/h:rel", "invalid volume specification: '/h:rel': invalid mount config for type "
               "\"bind\": invalid mount path: 'rel' mount path must be absolute"),
    ("/", "invalid volume specification: '/': invalid mount config for type \"volume\": "
          "invalid specification: destination can't be '/'"),
    ("data:/", "invalid volume specification: 'data:/': invalid mount config for type "
               "\"volume\": invalid specification: destination can't be '/'"),
    ("/h:/c:nocopy", "invalid volume specification: '/h:/c:nocopy': invalid mount config for "
                     "type \"bind\": field VolumeOptions must not be specified"),
    ("data:/c:rshared", "invalid volume specification: 'data:/c:rshared': invalid mount config "
                        "for type \"volume\": field BindOptions must not be specified"),
    ("rel/path:/c", "create rel/path: " + NAME_ERR.format("rel/path")),
    ("./dir:/c", "create ./dir: " + NAME_ERR.format("./dir")),
    ("a:/c", "create a: " + NAME_ERR.format("a")),
    ("-x:/c", "create -x: " + NAME_ERR.format("-x")),
    ("data", None),  # relative anonymous target: below
]


@pytest.mark.parametrize("raw,expected", VOLUME_OK, ids=[c[0] for c in VOLUME_OK])
def test_volume_flag_accepted(raw, expected):
    spec = parse_volume(raw)
    assert (spec.type, spec.source, spec.target, spec.readonly, spec.mode, spec.propagation,
            spec.nocopy) == expected
    assert spec.create_source == (spec.type == "bind")
    assert spec.anonymous == (spec.type == "volume" and not spec.source)


@pytest.mark.parametrize("raw,message", [c for c in VOLUME_ERR if c[1]],
                         ids=[c[0] or "empty" for c in VOLUME_ERR if c[1]])
def test_volume_flag_refused_with_dockers_message(raw, message):
    with pytest.raises(InvalidArgument) as err:
        parse_volume(raw)
    assert str(err.value) == message


def test_volume_flag_edge_cases():
    assert parse_volume("data:/data:").mode == ""
    with pytest.raises(InvalidArgument, match="mount path must be absolute"):
        parse_volume("data")


MOUNT_OK = [
    ("type=volume,source=data,target=/data", ("volume", "data", "/data", False)),
    ("src=data,dst=/data", ("volume", "data", "/data", False)),
    ("type=volume,destination=/data", ("volume", "", "/data", False)),
    ("type=bind,src=/h,dst=/c", ("bind", "/h", "/c", False)),
    ("type=bind,src=/h,dst=/c,readonly", ("bind", "/h", "/c", True)),
    ("type=bind,src=/h,dst=/c,ro", ("bind", "/h", "/c", True)),
    ("type=bind,src=/h,dst=/c,ro=true", ("bind", "/h", "/c", True)),
    ("type=bind,src=/h,dst=/c,readonly=false", ("bind", "/h", "/c", False)),
    ("type=bind,src=/h,dst=/c,readonly=1", ("bind", "/h", "/c", True)),
    ("TYPE=BIND,SRC=/h,DST=/c", ("bind", "/h", "/c", False)),
    ("type=tmpfs,dst=/scratch", ("tmpfs", "", "/scratch", False)),
    ('"type=bind","src=/h,x","dst=/c"', ("bind", "/h,x", "/c", False)),
]


@pytest.mark.parametrize("raw,expected", MOUNT_OK, ids=[c[0] for c in MOUNT_OK])
def test_mount_flag_accepted(raw, expected):
    spec = parse_mount(raw)
    assert (spec.type, spec.source, spec.target, spec.readonly) == expected
    assert not spec.create_source  # --mount never creates a bind source


def test_mount_flag_options():
    spec = parse_mount("type=bind,src=/h,dst=/c,bind-propagation=rshared,bind-nonrecursive")
    assert spec.propagation == "rshared" and spec.nonrecursive
    assert parse_mount("type=bind,src=/h,dst=/c").propagation == "rprivate"
    spec = parse_mount("src=v1,dst=/d,volume-nocopy,volume-opt=o=size=1m,volume-label=a=b")
    assert spec.nocopy and spec.volume_options == {"o": "size=1m"}
    assert spec.volume_labels == {"a": "b"}
    assert not parse_mount("src=v1,dst=/d,volume-nocopy=false").nocopy
    spec = parse_mount("type=tmpfs,dst=/t,tmpfs-size=64m,tmpfs-mode=1770")
    assert spec.tmpfs_size == 64 * 1024 * 1024 and spec.tmpfs_mode == 0o1770


MOUNT_ERR = [
    ("type=volume,src=data", "target is required"),
    ("type=bind,dst=/c", 'invalid mount config for type "bind": field Source must not be empty'),
    ("type=tmpfs,src=x,dst=/c",
     'invalid mount config for type "tmpfs": field Source must not be specified'),
    ("type=foo,dst=/c", 'invalid mount config for type "foo": mount type unknown'),
    ("type=bind,src=/h,dst=/c,bogus=1", "unexpected key 'bogus' in 'bogus=1'"),
    ("type=bind,src=/h,dst=/c,bogus", "invalid field 'bogus' must be a key=value pair"),
    ("type=bind,src=/h,dst=/c,readonly=maybe", "invalid value for readonly: maybe"),
    ("type=bind,src=/h,dst=/c,volume-nocopy",
     "cannot mix 'volume-*' options with mount type 'bind'"),
    ("type=volume,dst=/c,bind-propagation=shared",
     "cannot mix 'bind-*' options with mount type 'volume'"),
    ("type=volume,dst=/c,tmpfs-size=1m", "cannot mix 'tmpfs-*' options with mount type 'volume'"),
    ("type=tmpfs,dst=/c,tmpfs-size=lots", "invalid value for tmpfs-size: lots"),
    ("type=tmpfs,dst=/c,tmpfs-mode=999", "invalid value for tmpfs-mode: 999"),
    ("type=bind,src=/h,dst=/c,bind-propagation=weird",
     'invalid mount config for type "bind": invalid propagation mode: weird'),
    ("type=bind,src=rel,dst=/c",
     "invalid mount config for type \"bind\": invalid mount path: 'rel' mount path must be "
     "absolute"),
    ("type=volume,dst=/c,ro",
     'invalid mount config for type "volume": must not set ReadOnly mode when using '
     "anonymous volumes"),
    ("type=volume,src=data,dst=c",
     "invalid mount config for type \"volume\": invalid mount path: 'c' mount path must be "
     "absolute"),
    ("type=bind,src=/h,dst=/",
     "invalid mount config for type \"bind\": invalid specification: destination can't be '/'"),
    ("type=volume,src=./x,dst=/c", "create ./x: " + NAME_ERR.format("./x")),
]


@pytest.mark.parametrize("raw,message", MOUNT_ERR, ids=[c[0] for c in MOUNT_ERR])
def test_mount_flag_refused_with_dockers_message(raw, message):
    with pytest.raises(InvalidArgument) as err:
        parse_mount(raw)
    assert str(err.value) == message


def test_tmpfs_flag():
    spec = parse_tmpfs("/run:rw,size=64m,mode=1777,exec,uid=1000")
    assert spec.type == "tmpfs" and spec.target == "/run" and not spec.readonly
    assert spec.tmpfs_size == 64 << 20 and spec.tmpfs_mode == 0o1777
    assert spec.tmpfs_options == ("exec", "uid=1000")
    assert parse_tmpfs("/ro:ro").readonly
    with pytest.raises(InvalidArgument, match="must be absolute"):
        parse_tmpfs("run")
    with pytest.raises(InvalidArgument, match="invalid size"):
        parse_tmpfs("/run:size=big")


def test_valid_modes():
    assert valid_mode("") and valid_mode("ro") and valid_mode("rw,Z,rslave,nocopy,delegated")
    assert not valid_mode("ro,ro") and not valid_mode("RO") and not valid_mode("ro,")


def test_duplicate_mount_points():
    specs = [parse_volume("a1:/data"), parse_mount("type=bind,src=/h,dst=/data/")]
    with pytest.raises(InvalidArgument) as err:
        check_duplicates(specs)
    assert str(err.value) == "Duplicate mount point: /data"
    check_duplicates([parse_volume("a1:/data"), parse_volume("a1:/data2")])
    assert MountSpec(type="tmpfs", target="/t").anonymous is False


def test_api_mount_objects_follow_the_same_rules():
    spec = mount_from_api({"Type": "bind", "Source": "/h,1", "Target": "/c", "ReadOnly": True,
                           "BindOptions": {"Propagation": "rshared"}})
    assert (spec.type, spec.source, spec.target, spec.readonly, spec.propagation) == \
        ("bind", "/h,1", "/c", True, "rshared")
    spec = mount_from_api({"Type": "volume", "Source": "v1", "Target": "/d",
                           "VolumeOptions": {"NoCopy": True, "Labels": {"a": "b"},
                                             "DriverConfig": {"Options": {"o": "x=y"}}}})
    assert spec.nocopy and spec.volume_labels == {"a": "b"} and spec.volume_options == {"o": "x=y"}
    spec = mount_from_api({"Type": "tmpfs", "Target": "/t",
                           "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o1777}})
    assert spec.tmpfs_size == 1 << 20 and spec.tmpfs_mode == 0o1777
    with pytest.raises(InvalidArgument, match="^target is required$"):
        mount_from_api({"Type": "volume", "Source": "v1"})
