"""Subnet choice and address leases, on a real SQLite store (no root needed)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from portside.engine.errors import Conflict, InvalidArgument
from portside.engine.network import ipam
from portside.engine.store.db import Database

pytestmark = pytest.mark.unit

N = ipaddress.IPv4Network


@pytest.fixture
def db(tmp_path: Path):
    Database.register_schema("network", ipam.SCHEMA)
    database = Database(tmp_path / "metadata.db")
    yield database
    database.close()


def test_choose_subnet_skips_routes_networks_and_other_engines():
    assert ipam.choose_subnet([], []) == N("10.89.0.0/24")
    assert ipam.choose_subnet([N("10.89.0.0/24")], [N("10.89.1.0/24")]) == N("10.89.2.0/24")
    # A wide host route (a VPN's 10.0.0.0/8) pushes the choice into 172.30.
    assert ipam.choose_subnet([], [N("10.0.0.0/8")]) == N("172.30.0.0/24")
    # podman's and Docker's defaults are never chosen, even when a pool offers them.
    pool = [N("10.88.0.0/24"), N("172.17.0.0/24"), N("192.168.77.0/24")]
    assert ipam.choose_subnet([], [], pool) == N("192.168.77.0/24")
    with pytest.raises(Conflict, match="no free subnet"):
        ipam.choose_subnet([], [N("0.0.0.0/1"), N("128.0.0.0/1")])


def test_check_overlap_names_both_sides_in_one_line():
    with pytest.raises(Conflict) as err:
        ipam.check_overlap(N("10.89.0.0/16"), "big", [("bridge", N("10.89.0.0/24"))])
    assert str(err.value) == ("subnet 10.89.0.0/16 of network big overlaps 10.89.0.0/24 "
                              "of network bridge")
    with pytest.raises(Conflict, match="overlaps host route 192.0.2.0/24"):
        ipam.check_overlap(N("192.0.2.0/25"), "x", [], [N("192.0.2.0/24")])
    ipam.check_overlap(N("10.90.0.0/24"), "ok", [("bridge", N("10.89.0.0/24"))], [])


@pytest.mark.parametrize("text", ["10.1.2.3/24", "nonsense", "10.0.0.0/31", "fd00::/64"])
def test_parse_subnet_rejects(text):
    with pytest.raises(InvalidArgument):
        ipam.parse_subnet(text)


def test_gateway_and_mac():
    assert ipam.gateway_of(N("10.89.3.0/24")) == ipaddress.IPv4Address("10.89.3.1")
    assert ipam.mac_for(ipaddress.IPv4Address("10.89.3.2")) == "02:42:0a:59:03:02"


def test_leases_take_lowest_free_and_are_released(db):
    net = N("10.89.0.0/29")  # gateway .1, hosts .2-.6
    with db.transaction() as conn:
        ips = [str(ipam.allocate(conn, "n1", net, f"c{i}", "eth0", f"v{i}")) for i in range(5)]
    assert ips == ["10.89.0.2", "10.89.0.3", "10.89.0.4", "10.89.0.5", "10.89.0.6"]
    with pytest.raises(Conflict, match="no free address left in subnet 10.89.0.0/29"):
        with db.transaction() as conn:
            ipam.allocate(conn, "n1", net, "c9", "eth0", "v9")
    with db.transaction() as conn:
        assert ipam.release(conn, "c1") == 1
        assert str(ipam.allocate(conn, "n1", net, "c7", "eth0", "v7")) == "10.89.0.3"
    with pytest.raises(Conflict, match="already attached"):
        with db.transaction() as conn:
            ipam.allocate(conn, "n1", net, "c7", "eth1", "v8")


def test_requested_address(db):
    net = N("10.89.0.0/24")
    with db.transaction() as conn:
        assert str(ipam.allocate(conn, "n", net, "a", "eth0", "va", requested="10.89.0.50")) \
            == "10.89.0.50"
    with pytest.raises(Conflict, match="address already in use: 10.89.0.50"):
        with db.transaction() as conn:
            ipam.allocate(conn, "n", net, "b", "eth0", "vb", requested="10.89.0.50")
    with pytest.raises(InvalidArgument, match="not usable"):
        with db.transaction() as conn:
            ipam.allocate(conn, "n", net, "b", "eth0", "vb", requested="10.89.0.1")
    # A failed transaction leaves no lease behind.
    assert [r["container_id"] for r in db.query("SELECT container_id FROM net_leases")] == ["a"]


def test_same_address_on_two_networks_is_fine(db):
    net = N("10.89.0.0/24")
    with db.transaction() as conn:
        a = ipam.allocate(conn, "n1", net, "a", "eth0", "va")
        b = ipam.allocate(conn, "n2", net, "b", "eth0", "vb")
    assert a == b
