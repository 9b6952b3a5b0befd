"""The rootless OCI spec: root's spec minus cgroups, sysfs with the host network, device nodes;
the refusals that say why; delegated cgroup detection on fake cgroup trees."""

from __future__ import annotations

import os

import pytest

from portside.engine.errors import InvalidArgument
from portside.engine.gpu.cdi import ContainerEdits, DeviceNode, Mount
from portside.engine.rootless import cgroups, spec as rspec
from portside.engine.runtime.spec import ContainerConfig, ProcessConfig, generate_spec

pytestmark = pytest.mark.unit


def _root_spec(network: str = "none", **kw) -> dict:
    cfg = ContainerConfig(process=ProcessConfig(args=["true"], **kw.pop("process", {})),
                          rootfs="/r", network=network, cgroups_path="/portside/abc",
                          devices=[{"path": "/dev/y", "hostPath": "/dev/zero", "type": "c",
                                    "major": 1, "minor": 5}], **kw)
    return generate_spec(cfg)  # as root: the root-mode spec


def test_no_cgroups_without_delegation():
    spec = rspec.adapt(_root_spec(memory=64 << 20), host_network=False, single=False)
    assert "cgroupsPath" not in spec["linux"] and "resources" not in spec["linux"]
    # the same capabilities, seccomp, masked and read-only paths as root's
    root = _root_spec()
    for key in ("maskedPaths", "readonlyPaths", "seccomp"):
        assert spec["linux"].get(key) == root["linux"].get(key)
    assert spec["process"]["capabilities"] == root["process"]["capabilities"]


def test_delegated_cgroups_keep_the_limits_but_not_device_rules():
    spec = rspec.adapt(_root_spec(memory=64 << 20, pids_limit=5), host_network=False,
                       cgroups_path="/user.slice/u@1.service/portside-abc", single=False)
    assert spec["linux"]["cgroupsPath"] == "/user.slice/u@1.service/portside-abc"
    assert spec["linux"]["resources"] == {"memory": {"limit": 64 << 20}, "pids": {"limit": 5}}


def test_host_network_binds_sys_read_only():
    spec = rspec.adapt(_root_spec("host"), host_network=True, single=False)
    sys_mounts = [m for m in spec["mounts"] if m["destination"].startswith("/sys")]
    assert sys_mounts == [{"destination": "/sys", "type": "bind", "source": "/sys",
                           "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}]
    own = rspec.adapt(_root_spec("none"), host_network=False, single=False)
    assert [m["type"] for m in own["mounts"] if m["destination"] == "/sys"] == ["sysfs"]


def test_devices_become_binds_of_their_host_paths():
    spec = rspec.adapt(_root_spec(), host_network=False, single=False)
    assert spec["linux"]["devices"] == []
    assert {"destination": "/dev/y", "type": "bind", "source": "/dev/zero",
            "options": ["bind", "nosuid", "noexec"]} in spec["mounts"]


def test_cdi_device_nodes_become_binds():
    edits = ContainerEdits(env=["A=1"], device_nodes=[DeviceNode(path="/dev/fakegpu",
                                                                 host_path="/dev/null")],
                           mounts=[Mount(host_path="/x", container_path="/y")])
    out = rspec.device_binds(edits)
    assert out.device_nodes == [] and out.env == ["A=1"]
    assert [(m.host_path, m.container_path) for m in out.mounts] == [("/x", "/y"),
                                                                    ("/dev/null", "/dev/fakegpu")]


def test_single_mapping_runs_as_zero_only():
    spec = rspec.adapt(_root_spec(), host_network=False, single=True)
    devpts = next(m for m in spec["mounts"] if m["type"] == "devpts")
    assert not any(o.startswith("gid=") for o in devpts["options"])
    with pytest.raises(InvalidArgument, match="maps a single id"):
        rspec.adapt(_root_spec(process={"uid": 1000}), host_network=False, single=True)


@pytest.mark.parametrize("hc,message", [
    ({"Memory": 1 << 30, "NetworkMode": "none"}, "--memory: rootless containers get no cgroup"),
    ({"NanoCpus": 10 ** 9, "PidsLimit": 4, "NetworkMode": "none"}, "--cpus, --pids-limit: "),
])
def test_refusals_are_one_line(hc, message):
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(")) as info:
        rspec.check_host_config(hc, delegated=False)
    assert "\n" not in str(info.value)


def test_what_is_allowed_and_the_privileged_warning():
    assert rspec.check_host_config({"NetworkMode": "none"}, delegated=False) == []
    assert rspec.check_host_config({"NetworkMode": "container:x"}, delegated=False) == []
    # the default network (slirp4netns/pasta) and user networks (the per-user namespace)
    for mode in ("default", "bridge", "slirp4netns", "pasta", "mynet"):
        assert rspec.check_host_config({"NetworkMode": mode}, delegated=False) == []
    assert rspec.check_host_config({"NetworkMode": "host", "Memory": 1 << 30},
                                   delegated=True) == []
    warning, = rspec.check_host_config({"NetworkMode": "host", "Privileged": True},
                                       delegated=False)
    assert "never more than you have" in warning


def _tree(tmp_path, layout: dict[str, str]) -> str:
    mount = tmp_path / "cgroup"
    for rel, controllers in layout.items():
        d = mount / rel.strip("/")
        d.mkdir(parents=True, exist_ok=True)
        (d / "cgroup.controllers").write_text(controllers + "\n")
    return str(mount)


def test_delegated_cgroup_is_the_highest_owned_ancestor_with_the_controllers(tmp_path):
    mount = _tree(tmp_path, {"/": "cpu memory pids io",
                             "/user.slice": "cpu memory pids",
                             "/user.slice/user-7.slice/user@7.service": "cpu memory pids",
                             "/user.slice/user-7.slice/user@7.service/app.slice": "memory pids"})
    own = tmp_path / "self"
    own.write_text("0::/user.slice/user-7.slice/user@7.service/app.slice\n")
    uid = os.geteuid()
    # owned by "us" from user@7.service down; its parent belongs to somebody else
    os.chown(tmp_path / "cgroup" / "user.slice" / "user-7.slice", 4242, 4242)
    found = cgroups.delegated_cgroup(mount, str(own), uid=uid)
    assert found is None  # app.slice lacks cpu: nothing above it counts either
    (tmp_path / "cgroup/user.slice/user-7.slice/user@7.service/app.slice/cgroup.controllers") \
        .write_text("cpu memory pids\n")
    assert cgroups.delegated_cgroup(mount, str(own), uid=uid) == \
        "/user.slice/user-7.slice/user@7.service"
    assert cgroups.container_cgroup("/a/b", "f" * 70) == "/a/b/portside-" + "f" * 64


def test_no_delegation_on_v1_or_hybrid(tmp_path):
    (tmp_path / "self").write_text("0::/\n")
    assert cgroups.delegated_cgroup(str(tmp_path), str(tmp_path / "self")) is None
