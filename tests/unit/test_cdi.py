"""CDI specs: strict JSON/YAML loading, folder override order, resolving and applying edits."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from portside.engine.errors import InvalidArgument
from portside.engine.gpu.cdi import (ContainerEdits, DeviceNode, Hook, Mount, Registry,
                                     apply_edits, load_spec, parse_spec, spec_dirs_from_env)

pytestmark = pytest.mark.unit


def nvidia_spec(version: str = "0.6.0", lib: str = "/usr/lib/libcuda.so.550") -> dict[str, Any]:
    return {
        "cdiVersion": version,
        "kind": "nvidia.com/gpu",
        "devices": [
            {"name": "0", "containerEdits": {"deviceNodes": [
                {"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0}]}},
            {"name": "1", "containerEdits": {"deviceNodes": [
                {"path": "/dev/nvidia1", "type": "c", "major": 195, "minor": 1,
                 "permissions": "rw"}]}},
            {"name": "all", "containerEdits": {"deviceNodes": [
                {"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0},
                {"path": "/dev/nvidia1", "type": "c", "major": 195, "minor": 1}]}},
        ],
        "containerEdits": {
            "env": ["NVIDIA_VISIBLE_DEVICES=void"],
            "deviceNodes": [{"path": "/dev/nvidiactl", "type": "c", "major": 195, "minor": 255}],
            "mounts": [{"hostPath": lib, "containerPath": lib, "options": ["ro", "nosuid", "bind"]}],
            "hooks": [{"hookName": "createContainer", "path": "/usr/bin/nvidia-ctk",
                       "args": ["nvidia-ctk", "hook", "update-ldcache"]}],
        },
    }


def write(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) if path.suffix == ".json" else yaml.safe_dump(data))
    return path


def test_json_and_yaml_parse_to_the_same_spec(tmp_path: Path) -> None:
    a = load_spec(write(tmp_path / "a.json", nvidia_spec()))
    b = load_spec(write(tmp_path / "b.yaml", nvidia_spec()))
    assert a.kind == b.kind == "nvidia.com/gpu"
    assert a.devices == b.devices and a.edits == b.edits
    assert sorted(a.devices) == ["0", "1", "all"]
    assert a.devices["1"].edits.device_nodes[0].permissions == "rw"
    assert a.edits.hooks == [Hook("createContainer", "/usr/bin/nvidia-ctk",
                                  ["nvidia-ctk", "hook", "update-ldcache"])]


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(colour="red"), "unknown field 'colour' in spec"),
    (lambda d: d["devices"][0].update(extra=1), "unknown field 'extra' in devices[0]"),
    (lambda d: d["containerEdits"]["mounts"][0].update(readOnly=True),
     "unknown field 'readOnly' in containerEdits.mounts[0]"),
    (lambda d: d.update(cdiVersion="0.2.0"), "unsupported cdiVersion '0.2.0'"),
    (lambda d: d.update(cdiVersion="2.0.0"), "unsupported cdiVersion '2.0.0'"),
    (lambda d: d.update(kind="nvidia.com"), "invalid kind 'nvidia.com'"),
    (lambda d: d.update(kind="nvidia.com/gpu/x"), "invalid kind"),
    (lambda d: d["devices"][0].update(name="-bad"), "invalid device name '-bad'"),
    (lambda d: d["devices"].append(d["devices"][0]), "device '0' is defined twice"),
    (lambda d: d["containerEdits"]["hooks"][0].update(hookName="preStart"), "unknown hookName"),
    (lambda d: d["containerEdits"]["deviceNodes"][0].update(permissions="rwx"), "invalid permissions"),
    (lambda d: d["containerEdits"].update(env=["NOEQUALS"]), "invalid env entry"),
    (lambda d: d.pop("kind"), "spec is missing 'kind'"),
    # Fields newer than the declared version: hostPath needs 0.5.0, additionalGids 0.7.0.
    (lambda d: (d.update(cdiVersion="0.4.0"),
                d["containerEdits"]["deviceNodes"][0].update(hostPath="/dev/nvidiactl")),
     "too old for the fields it uses (needs 0.5.0)"),
    (lambda d: d["containerEdits"].update(additionalGids=[44]), "needs 0.7.0"),
])
def test_strict_loading(mutate: Any, message: str) -> None:
    data = nvidia_spec()
    mutate(data)
    with pytest.raises(InvalidArgument) as info:
        parse_spec(data, "/etc/cdi/nvidia.yaml")
    assert str(info.value).startswith("CDI spec /etc/cdi/nvidia.yaml: ")
    assert message in str(info.value)


def test_every_supported_version_loads() -> None:
    for v in ("0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0"):
        assert parse_spec(nvidia_spec(v)).version == v


def test_bad_yaml_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cdiVersion: [unclosed\n")
    with pytest.raises(InvalidArgument, match=f"CDI spec {bad}: not valid YAML"):
        load_spec(bad)


def test_later_folder_overrides_earlier(tmp_path: Path) -> None:
    write(tmp_path / "etc/nvidia.yaml", nvidia_spec(lib="/etc-lib.so"))
    write(tmp_path / "run/nvidia.json", nvidia_spec(lib="/run-lib.so"))
    (tmp_path / "run/broken.json").write_text("{")
    reg = Registry([tmp_path / "etc", tmp_path / "run", tmp_path / "missing"])
    edits = reg.resolve(["nvidia.com/gpu=0"])
    assert [m.host_path for m in edits.mounts] == ["/run-lib.so"]
    assert list(reg.errors) == [str(tmp_path / "run/broken.json")]
    reg2 = Registry([tmp_path / "run", tmp_path / "etc"])
    assert [m.host_path for m in reg2.resolve(["nvidia.com/gpu=0"]).mounts] == ["/etc-lib.so"]


def test_conflict_in_one_folder_makes_device_unusable(tmp_path: Path) -> None:
    write(tmp_path / "etc/a.json", nvidia_spec())
    write(tmp_path / "etc/b.json", nvidia_spec())
    reg = Registry([tmp_path / "etc"])
    assert reg.devices("nvidia.com/gpu") == []
    with pytest.raises(InvalidArgument, match="unresolvable CDI devices: nvidia.com/gpu=0"):
        reg.resolve(["nvidia.com/gpu=0"])


def test_resolve_merges_spec_edits_once(tmp_path: Path) -> None:
    write(tmp_path / "nvidia.json", nvidia_spec())
    reg = Registry([tmp_path])
    assert reg.devices("nvidia.com/gpu") == ["nvidia.com/gpu=0", "nvidia.com/gpu=1",
                                              "nvidia.com/gpu=all"]
    edits = reg.resolve(["nvidia.com/gpu=0", "nvidia.com/gpu=1"])
    assert [n.path for n in edits.device_nodes] == ["/dev/nvidiactl", "/dev/nvidia0", "/dev/nvidia1"]
    assert len(edits.mounts) == 1 and len(edits.hooks) == 1
    with pytest.raises(InvalidArgument, match="^unresolvable CDI devices: nvidia.com/gpu=9$"):
        reg.resolve(["nvidia.com/gpu=0", "nvidia.com/gpu=9"])


def test_spec_dirs_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTSIDE_CDI_SPEC_DIRS", "/a:/b::")
    assert spec_dirs_from_env() == ["/a", "/b"]
    monkeypatch.delenv("PORTSIDE_CDI_SPEC_DIRS")
    assert spec_dirs_from_env() == ["/etc/cdi", "/var/run/cdi"]


def base_spec() -> dict[str, Any]:
    return {
        "process": {"env": ["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=all"],
                    "user": {"uid": 0, "gid": 0, "additionalGids": [10]}},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
                   {"destination": "/usr/lib/libcuda.so.550", "type": "bind", "source": "/old"}],
        "linux": {"devices": [{"path": "/dev/nvidia0", "type": "c", "major": 1, "minor": 1}],
                  "resources": {"devices": [{"allow": False, "access": "rwm"}]}},
    }


def test_apply_edits_to_a_spec_dict(tmp_path: Path) -> None:
    write(tmp_path / "nvidia.json", nvidia_spec())
    edits = Registry([tmp_path]).resolve(["nvidia.com/gpu=1"])
    edits.additional_gids = [44, 10]
    spec = apply_edits(base_spec(), edits)
    assert spec["process"]["env"] == ["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=void"]
    assert spec["process"]["user"]["additionalGids"] == [10, 44]
    assert spec["linux"]["devices"] == [
        {"path": "/dev/nvidia0", "type": "c", "major": 1, "minor": 1},
        {"path": "/dev/nvidiactl", "type": "c", "major": 195, "minor": 255},
        {"path": "/dev/nvidia1", "type": "c", "major": 195, "minor": 1}]
    assert spec["linux"]["resources"]["devices"] == [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 195, "minor": 255, "access": "rwm"},
        {"allow": True, "type": "c", "major": 195, "minor": 1, "access": "rw"}]
    assert [m["destination"] for m in spec["mounts"]] == ["/proc", "/dev", "/usr/lib/libcuda.so.550"]
    assert spec["mounts"][-1] == {"destination": "/usr/lib/libcuda.so.550", "type": "bind",
                                  "source": "/usr/lib/libcuda.so.550",
                                  "options": ["ro", "nosuid", "bind"]}
    assert spec["hooks"] == {"createContainer": [
        {"path": "/usr/bin/nvidia-ctk", "args": ["nvidia-ctk", "hook", "update-ldcache"]}]}


def test_apply_fills_numbers_from_the_host_node() -> None:
    edits = ContainerEdits(device_nodes=[DeviceNode(path="/dev/mynull", host_path="/dev/null"),
                                         DeviceNode(path="/dev/zero", permissions="r")])
    spec = apply_edits({}, edits)
    null, zero = spec["linux"]["devices"]
    assert (null["path"], null["type"], null["major"], null["minor"]) == ("/dev/mynull", "c", 1, 3)
    assert (zero["type"], zero["major"], zero["minor"]) == ("c", 1, 5)
    assert null["fileMode"] == os.stat("/dev/null").st_mode & 0o7777
    assert spec["linux"]["resources"]["devices"][1] == {"allow": True, "type": "c", "major": 1,
                                                        "minor": 5, "access": "r"}


def test_apply_rejects_missing_or_non_device_nodes(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="CDI device node /nonexistent/dev"):
        apply_edits({}, ContainerEdits(device_nodes=[DeviceNode(path="/nonexistent/dev")]))
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(InvalidArgument, match=f"CDI device node {plain} is not a device"):
        apply_edits({}, ContainerEdits(device_nodes=[DeviceNode(path="/dev/x", host_path=str(plain))]))


def test_mounts_sorted_by_depth_and_hooks_by_point() -> None:
    edits = ContainerEdits(
        mounts=[Mount("/h/a/b", "/a/b", ["bind"]), Mount("/h/a", "/a", ["bind"])],
        hooks=[Hook("poststop", "/bin/true"), Hook("createRuntime", "/bin/x", env=["A=1"],
                                                   timeout=5)])
    spec = apply_edits({"mounts": [{"destination": "/a/b/c"}]}, edits)
    assert [m["destination"] for m in spec["mounts"]] == ["/a", "/a/b", "/a/b/c"]
    assert spec["hooks"] == {"poststop": [{"path": "/bin/true"}],
                             "createRuntime": [{"path": "/bin/x", "env": ["A=1"], "timeout": 5}]}
