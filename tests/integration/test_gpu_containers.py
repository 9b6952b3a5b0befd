"""GPU and CDI requests on real containers (this host has no GPU: CDI maps /dev/null)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration


def test_cdi_device_env_and_mount_appear_in_the_container(cli, busybox_image, tmp_path):
    data = tmp_path / "gpu-data"
    data.mkdir()
    (data / "hello").write_text("from the cdi spec\n")
    specs = tmp_path / "cdi"
    specs.mkdir()
    (specs / "example.json").write_text(json.dumps({
        "cdiVersion": "0.6.0",
        "kind": "example.com/device",
        "devices": [{
            "name": "null",
            "containerEdits": {
                "deviceNodes": [{"path": "/dev/fakegpu", "hostPath": "/dev/null"}],
                "env": ["FAKEGPU=visible"],
                "mounts": [{"hostPath": str(data), "containerPath": "/fakegpu-data",
                            "options": ["ro", "rbind"]}],
            },
        }],
    }))
    env = {"PORTSIDE_CDI_SPEC_DIRS": str(specs)}
    out = cli("run", "--rm", "--device", "example.com/device=null", busybox_image, "sh", "-c",
              "ls -l /dev/fakegpu; echo $FAKEGPU; cat /fakegpu-data/hello; "
              "echo x > /dev/fakegpu && echo writable", env=env).out.splitlines()
    assert out[0].startswith("crw") and " 1,   3 " in out[0]  # /dev/null's numbers
    assert out[1:] == ["visible", "from the cdi spec", "writable"]
    bad = cli("run", "--rm", "--device", "example.com/device=nine", busybox_image, "true",
              env=env, check=False)
    assert bad.returncode == 125 and "unresolvable CDI devices: example.com/device=nine" in bad.err
    assert cli("ps", "-aq").out == ""


def test_gpus_without_a_gpu_fails_first_and_optional_runs_without(cli, busybox_image):
    proc = cli("run", "--rm", "--gpus", "all", busybox_image, "true", check=False)
    assert proc.returncode == 125
    assert proc.err.count("\n") == 1 and "/dev/nvidia" in proc.err
    assert cli("ps", "-aq").out == ""  # nothing was created
    bad = cli("run", "--rm", "--gpus", "count=1,device=0", busybox_image, "true", check=False)
    assert bad.returncode == 125 and "can't be used together" in bad.err
    opt = cli("run", "--rm", "--gpus", "all", "--gpus-optional", busybox_image, "echo", "ran")
    assert opt.out.strip() == "ran" and "GPU" in opt.err
    assert json.loads(cli("info", "--format", "json").out)["GPUs"] == []
