"""Verbs composed of other model verbs (engine/models/composed.py): the parts that are plain
data in, plain data out. (run_from, exec_attached and prune on a real engine object are driven in
tests/integration/test_slurm.py.)"""

from __future__ import annotations

import pytest

from portside.engine.listing import ps_row
from portside.engine.models import composed

pytestmark = pytest.mark.unit

NOW = 1_700_000_000.0


def _inspect(**state):
    return {"Id": "ab" * 32, "Name": "/web", "Created": "2023-11-14T22:00:00Z",
            "Path": "sh", "Args": ["-c", "sleep 1000"], "Image": "sha256:" + "cd" * 32,
            "State": {"Status": "created", "ExitCode": 0, **state},
            "Config": {"Image": "busybox", "Labels": {"a": "1"}},
            "HostConfig": {"NetworkMode": "bridge",
                           "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}},
            "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "10.0.0.2"}},
                                "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}],
                                          "53/udp": None}},
            "Mounts": []}


def test_a_running_containers_summary_is_what_ps_shows():
    attrs = _inspect(Status="running", StartedAt="2023-11-14T22:13:00Z")
    row = ps_row(composed.summary(attrs, now=NOW), now=NOW)
    assert row["ID"] == "ab" * 6 and row["Names"] == "web" and row["Image"] == "busybox"
    assert row["State"] == "running" and row["Status"] == "Up 20 seconds"
    assert row["Command"] == '"sh -c sleep 1000"'
    assert row["Ports"] == "53/udp, 0.0.0.0:8080->80/tcp"
    assert row["Networks"] == "bridge" and row["Labels"] == "a=1"


def test_exited_and_created_status_texts():
    exited = composed.summary(_inspect(Status="exited", ExitCode=3,
                                       FinishedAt="2023-11-14T22:12:20Z"), now=NOW)
    assert exited["Status"] == "Exited (3) About a minute ago"
    created = composed.summary(_inspect(StartedAt="0001-01-01T00:00:00Z"), now=NOW)
    assert created["Status"] == "Created" and created["State"] == "created"


def test_ports_are_the_live_ones_while_running_else_the_asked_ones():
    running = _inspect(Status="running")
    assert composed.ports(running)["80/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": "8080"}]
    stopped = _inspect(Status="exited")
    assert composed.ports(stopped) == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}
