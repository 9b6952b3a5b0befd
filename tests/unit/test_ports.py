"""The -p/-P grammar, host-port reservation against real sockets, and Docker's PORTS column."""

from __future__ import annotations

import socket

import pytest

from portside.engine.errors import Conflict, InvalidArgument
from portside.engine.network.ports import (PortSpec, format_ports, overlaps, parse_publish,
                                           publish_all, reserve)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("spec, expected", [
    ("80", [PortSpec("", None, 80, "tcp")]),
    ("8080:80", [PortSpec("", 8080, 80, "tcp")]),
    ("127.0.0.1:8080:80", [PortSpec("127.0.0.1", 8080, 80, "tcp")]),
    ("127.0.0.1::80", [PortSpec("127.0.0.1", None, 80, "tcp")]),
    ("53:53/udp", [PortSpec("", 53, 53, "udp")]),
    ("80/TCP", [PortSpec("", None, 80, "tcp")]),
    ("8000-8001:80-81", [PortSpec("", 8000, 80), PortSpec("", 8001, 81)]),
    ("80-81", [PortSpec("", None, 80), PortSpec("", None, 81)]),
    ("8000-8010:80", [PortSpec("", None, 80, "tcp", host_range=(8000, 8010))]),
    ("[::1]:8080:80", [PortSpec("::1", 8080, 80, "tcp")]),
])
def test_parse_publish(spec, expected):
    assert parse_publish(spec) == expected


@pytest.mark.parametrize("spec, message", [
    ("", "invalid publish spec"),
    ("80/icmp", "invalid protocol 'icmp'"),
    ("0:80", "port out of range 1-65535: 0"),
    ("8080:70000", "port out of range"),
    ("abc:80", "invalid port 'abc'"),
    ("999.1.1.1:80:80", "invalid IP address '999.1.1.1'"),
    ("8000-8002:80-81", "port ranges do not have the same length"),
    ("81-80", "invalid port range '81-80'"),
    ("1:2:3:4", "invalid publish spec"),
])
def test_parse_publish_rejects(spec, message):
    with pytest.raises(InvalidArgument, match=message):
        parse_publish(spec)


def test_publish_all_takes_exposed_ports():
    specs = publish_all({"443/tcp": {}, "80/tcp": {}, "53/udp": {}, "8080": {}})
    assert [(s.container_port, s.proto, s.host_port) for s in specs] == [
        (80, "tcp", None), (443, "tcp", None), (8080, "tcp", None), (53, "udp", None)]


def test_overlaps_treats_all_addresses_as_covering_each_one():
    any_ip = PortSpec("", 8080, 80)
    assert overlaps(any_ip, PortSpec("127.0.0.1", 8080, 81))
    assert not overlaps(PortSpec("127.0.0.1", 8080, 80), PortSpec("127.0.0.2", 8080, 80))
    assert not overlaps(any_ip, PortSpec("", 8080, 80, "udp"))


def test_reserve_detects_a_port_held_by_a_host_process():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(Conflict, match=rf"^port is already allocated: 127.0.0.1:{port}$"):
            reserve(parse_publish(f"127.0.0.1:{port}:80"))
        with pytest.raises(Conflict, match=rf"^port is already allocated: 0.0.0.0:{port}$"):
            reserve(parse_publish(f"{port}:80"))


def test_reserve_respects_ports_published_by_other_containers():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    taken = [PortSpec("", port, 80)]
    with pytest.raises(Conflict, match=f"127.0.0.1:{port}"):
        reserve(parse_publish(f"127.0.0.1:{port}:80"), taken)
    # Same number, other protocol: fine.
    assert reserve(parse_publish(f"127.0.0.1:{port}:80/udp"), taken)[0].host_port == port


def test_reserve_picks_random_and_ranged_ports():
    random_port = reserve(parse_publish("127.0.0.1::80"))[0]
    assert random_port.host_port and random_port.host_port > 1024
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        # "any free port of BUSY-BUSY+1": the first is held, so the second is chosen.
        got = reserve(parse_publish(f"127.0.0.1:{busy}-{busy + 1}:80"))[0]
        assert got.host_port == busy + 1 and got.host_range is None
        with pytest.raises(Conflict, match=f"^port is already allocated: 127.0.0.1:{busy}-{busy}$"):
            reserve([PortSpec("127.0.0.1", None, 80, host_range=(busy, busy))])


def test_reserve_refuses_ipv6():
    with pytest.raises(InvalidArgument, match="IPv6"):
        reserve(parse_publish("[::1]:8080:80"))


def test_format_ports_like_docker():
    ports = [PortSpec("127.0.0.1", 8080, 80), PortSpec("", 9000, 90, "udp"),
             PortSpec("", 9001, 91, "udp"), PortSpec("", 5000, 5000)]
    assert format_ports(ports, exposed=["443/tcp", "80/tcp"]) == (
        "0.0.0.0:5000->5000/tcp, 0.0.0.0:9000-9001->90-91/udp, 127.0.0.1:8080->80/tcp, 443/tcp")
    assert format_ports([]) == ""
