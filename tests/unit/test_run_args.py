"""``run``/``create`` flags → Docker's Config and HostConfig, parsed by the real command table."""

from __future__ import annotations

import pytest

from portside.engine.cli import UsageError, parse
from portside.engine.commands.container_options import (build_create, parse_device,
                                                         parse_publish, parse_restart)
from portside.engine.models.containers import parse_detach_keys as _detach_keys, parse_time_arg
from portside.engine.errors import InvalidArgument

pytestmark = pytest.mark.unit


def _build(*argv):
    return build_create(parse(["run", *argv]))


def test_flags_after_the_image_belong_to_the_container():
    config, host, name = _build("-it", "--name", "web", "busybox", "sh", "-c", "ls -l", "-l", "x")
    assert config["Cmd"] == ["sh", "-c", "ls -l", "-l", "x"]
    assert config["Tty"] and config["OpenStdin"] and name == "web" and config["Labels"] == {}


def test_env_labels_workdir_user_entrypoint(monkeypatch):
    monkeypatch.setenv("FROMHOST", "yes")
    monkeypatch.delenv("UNSET_VAR", raising=False)
    config, host, _ = _build("-e", "A=1", "--env", "FROMHOST", "-e", "UNSET_VAR", "-l", "k=v",
                             "-w", "/srv", "-u", "1000:1000", "--entrypoint", "", "-h", "box",
                             "busybox")
    assert config["Env"] == ["A=1", "FROMHOST=yes"]
    assert config["Labels"] == {"k": "v"} and config["WorkingDir"] == "/srv"
    assert config["User"] == "1000:1000" and config["Entrypoint"] == [""]
    assert config["Hostname"] == "box" and config["Cmd"] is None


def test_host_config_values():
    _, host, _ = _build("--rm", "-m", "512m", "--cpus", "1.5", "--shm-size", "1g",
                        "--pids-limit", "50", "--cap-add", "NET_ADMIN", "--cap-drop", "ALL",
                        "--privileged", "--read-only", "--net", "host", "-v", "/a:/b:ro",
                        "--ulimit", "nofile=10:20", "--device", "/dev/null:/dev/n:r",
                        "-p", "8080:80", "--add-host", "db:10.0.0.2", "busybox")
    assert host["AutoRemove"] and host["Memory"] == 512 * 1024**2
    assert host["NanoCpus"] == 1_500_000_000 and host["ShmSize"] == 1024**3
    assert host["PidsLimit"] == 50 and host["CapAdd"] == ["NET_ADMIN"]
    assert host["CapDrop"] == ["ALL"] and host["Privileged"] and host["ReadonlyRootfs"]
    assert host["NetworkMode"] == "host" and host["Binds"] == ["/a:/b:ro"]
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 10, "Hard": 20}]
    assert host["Devices"] == [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/n",
                                "CgroupPermissions": "r"}]
    assert host["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}
    assert host["ExtraHosts"] == ["db:10.0.0.2"]


def test_default_network_is_none_until_bridges_land():
    _, host, _ = _build("busybox")
    assert host["NetworkMode"] == "default"


@pytest.mark.parametrize("text,policy", [
    ("no", {"Name": "no", "MaximumRetryCount": 0}),
    ("always", {"Name": "always", "MaximumRetryCount": 0}),
    ("on-failure:3", {"Name": "on-failure", "MaximumRetryCount": 3}),
    ("unless-stopped", {"Name": "unless-stopped", "MaximumRetryCount": 0}),
])
def test_restart_policies(text, policy):
    assert parse_restart(text) == policy


@pytest.mark.parametrize("bad", ["sometimes", "always:3", "on-failure:x"])
def test_bad_restart_policies(bad):
    with pytest.raises(InvalidArgument):
        parse_restart(bad)


def test_rm_and_restart_conflict():
    with pytest.raises(InvalidArgument):
        _build("--rm", "--restart", "always", "busybox")


def test_publish_and_device_grammar():
    exposed, bindings = parse_publish(["127.0.0.1:53:53/udp", "9000"])
    assert set(exposed) == {"53/udp", "9000/tcp"}
    assert bindings["53/udp"] == [{"HostIp": "127.0.0.1", "HostPort": "53"}]
    with pytest.raises(InvalidArgument):
        parse_publish(["x:y"])
    assert parse_device("/dev/fuse")["CgroupPermissions"] == "rwm"
    with pytest.raises(InvalidArgument):
        parse_device("/dev/fuse:/dev/f:rwx")


def test_missing_image_is_a_usage_error():
    with pytest.raises(UsageError):
        parse(["run"])


def test_time_arguments_and_detach_keys():
    assert parse_time_arg("10m", now=1000.0) == 400.0
    assert parse_time_arg("1h30m", now=10000.0) == 10000.0 - 5400
    assert parse_time_arg("1700000000") == 1700000000.0
    assert parse_time_arg("2024-01-01T00:00:00Z") == 1704067200.0
    assert _detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert _detach_keys("a,ctrl-@") == b"a\x00"
