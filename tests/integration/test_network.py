"""Container networking on the real kernel: namespaces, veths, bridges, nftables NAT.

No containers are needed: the manager prepares a namespace exactly as the runtime will join it,
and the tests run plain processes inside it with ``nsenter --net``. Traffic only ever goes to
loopback and to addresses inside namespaces these tests made.

Isolation from a real engine on the same host: every test uses its own store, its own default
bridge name and nft table, and its own name prefixes for namespaces and veths, and the
``clean_host`` fixture asserts that ``ip netns``, ``ip -o link`` and ``nft list ruleset`` are the
same after each test as before it.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import statistics
import time
import urllib.request
from pathlib import Path

import pytest

import netutil
from portside.engine.errors import Conflict, NotFound
from portside.engine.network import bridge as br
from portside.engine.network import ipam
from portside.engine.network import netns as ns
from portside.engine.network.manager import NetworkManager
from portside.engine.network.ports import parse_publish
from portside.engine.store.db import Database

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session", autouse=True)
def _netns_dir() -> None:
    # /run/netns becomes a shared mount point once per host (as `ip netns add` makes it); do it
    # before any per-test mount snapshot is taken.
    ns._prepare_dir()


@pytest.fixture
def clean_host():
    before = netutil.snapshot()
    yield before
    after = netutil.settled_snapshot(before)
    assert after == before


def _free_subnets(count: int, prefix: int, first: int = 200) -> list[str]:
    """Subnets clear of host routes and the engine's pool (10.<first>.. onwards)."""
    taken = ipam.host_routes()
    pool = (ipaddress.IPv4Network(f"10.{a}.{b}.0/{prefix}")
            for a in range(first, first + 15) for b in range(0, 256, 4))
    out: list[str] = []
    for net in pool:
        if not any(net.overlaps(t) for t in taken) and not any(
                net.overlaps(ipaddress.IPv4Network(o)) for o in out):
            out.append(str(net))
            if len(out) == count:
                return out
    raise RuntimeError("no free test subnet")


@pytest.fixture
def mgr(clean_host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    tag = secrets.token_hex(3)
    # Names of our own for this test, so nothing a real engine made is ever touched.
    monkeypatch.setattr(ns, "PREFIX", f"pstest{tag}-")
    monkeypatch.setattr(br, "VETH_PREFIX", "pst")
    monkeypatch.setattr(br, "BRIDGE_PREFIX", f"pt{tag[:4]}-")
    run_dir = Path("/dev/shm") / f"portside-test-{tag}"
    db = Database(tmp_path / "metadata.db")
    manager = NetworkManager(db, run_dir, bridge_name=f"pstest{tag}", nft_table=f"pstest{tag}",
                             default_subnet=_free_subnets(1, 24)[0])
    manager.made: list[str] = []  # container ids to detach at the end
    yield manager
    try:
        for cid in [r[0] for r in db.query("SELECT container_id FROM net_sandboxes")]:
            manager.detach(cid)
        manager.prune()
        manager.wait_idle()
        for row in db.query("SELECT bridge FROM net_networks"):
            manager.links.delete(row[0])
    finally:
        manager.firewall.delete_table()
        manager.close()
        db.close()
        import shutil
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture
def testns():
    made: list[netutil.TestNetns] = []
    subnets = iter(_free_subnets(4, 30, first=230))

    def make(role: str) -> netutil.TestNetns:
        tag = secrets.token_hex(3)
        t = netutil.TestNetns(f"pstest-{role}-{tag}", f"pso{tag}", next(subnets))
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


def cid() -> str:
    return secrets.token_hex(32)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----- 1. published ports ---------------------------------------------------------------------

def test_published_port_reaches_server_from_host_and_from_another_namespace(mgr, testns):
    client = testns("client")
    port = _free_port()
    c = cid()
    att = mgr.attach(c, "web", ["bridge"], parse_publish(f"{port}:8080"))
    assert att.ports[0].host_port == port
    server = netutil.start_server(att.netns_path, 8080, "web")
    try:
        # From the host, to loopback: output-chain DNAT plus route_localnet and masquerade.
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
        assert body.startswith("web ")
        # From another namespace, to the host's address on its link: prerouting DNAT; the
        # server sees the client's own address (no source NAT on the way in).
        got = netutil.fetch_in(f"/run/netns/{client.name}", f"http://{client.host_ip}:{port}/")
        assert got.returncode == 0, got.stdout + got.stderr
        assert got.stdout.split() == ["web", client.ip]
    finally:
        netutil.stop(server)
    mgr.detach(c)
    assert mgr.firewall.port_handles() == {}
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)


def test_random_host_port_and_loopback_only_binding(mgr):
    c = cid()
    att = mgr.attach(c, "web", ["bridge"], parse_publish("127.0.0.1::8080"))
    port = att.ports[0].host_port
    assert port and att.ports[0].host_ip == "127.0.0.1"
    server = netutil.start_server(att.netns_path, 8080, "rnd")
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
        assert body.startswith("rnd ")
    finally:
        netutil.stop(server)
    rules = mgr.firewall.port_handles()
    assert list(rules) == [c] and len(rules[c]) == 1


# ----- 2. user networks: reachability, names, isolation ----------------------------------------

def test_containers_on_a_user_network_reach_each_other_by_name(mgr):
    mgr.create("front")
    a, b = cid(), cid()
    att_a = mgr.attach(a, "alpha", ["front"], aliases=["api"])
    att_b = mgr.attach(b, "beta", ["front"])
    hosts_a = att_a.etc_files["/etc/hosts"].read_text()
    hosts_b = att_b.etc_files["/etc/hosts"].read_text()
    # b joined after a: a's file was rewritten in place to list b, and b's lists a and its alias.
    assert f"{att_b.ips['front']}\tbeta {b[:12]}" in hosts_a
    assert f"{att_a.ips['front']}\talpha api {a[:12]}" in hosts_b
    server = netutil.start_server(att_a.netns_path, 8080, "alpha")
    try:
        got = netutil.fetch_in(att_b.netns_path, "http://api:8080/",
                               hosts_file=att_b.etc_files["/etc/hosts"])
        assert got.returncode == 0, got.stdout + got.stderr
        # Same bridge: no NAT between peers.
        assert got.stdout.split() == ["alpha", att_b.ips["front"]]
    finally:
        netutil.stop(server)
    info = mgr.inspect("front")
    assert set(info["Containers"]) == {a, b}
    assert info["Containers"][a]["Name"] == "alpha"
    mgr.detach(b)
    assert "beta" not in att_a.etc_files["/etc/hosts"].read_text()
    with pytest.raises(Conflict, match="front has active endpoints"):
        mgr.remove("front")


def test_containers_on_different_networks_are_isolated(mgr):
    mgr.create("red")
    mgr.create("blue")
    r, b = cid(), cid()
    att_r = mgr.attach(r, "r", ["red"])
    att_b = mgr.attach(b, "b", ["blue"])
    assert "\tr " not in att_b.etc_files["/etc/hosts"].read_text()
    server = netutil.start_server(att_r.netns_path, 8080, "red")
    try:
        got = netutil.fetch_in(att_b.netns_path, f"http://{att_r.ips['red']}:8080/", timeout=1)
        assert got.returncode == 1 and "ERROR" in got.stdout
        # Connecting b to red as well makes it reachable: the rule is per network, not global.
        ip = mgr.connect("red", b, att_b.netns_path, "b")
        got = netutil.fetch_in(att_b.netns_path, f"http://{att_r.ips['red']}:8080/")
        assert got.stdout.split() == ["red", ip]
        mgr.disconnect("red", b)
        assert b not in mgr.inspect("red")["Containers"]
    finally:
        netutil.stop(server)


# ----- 3. outbound NAT ------------------------------------------------------------------------

def test_container_reaches_outside_host_through_masquerade(mgr, testns):
    outside = testns("outside")
    server = netutil.start_server(f"/run/netns/{outside.name}", 8080, "outside")
    outside.procs.append(server)
    c = cid()
    att = mgr.attach(c, "out", ["bridge"])
    got = netutil.fetch_in(att.netns_path, f"http://{outside.ip}:8080/")
    assert got.returncode == 0, got.stdout + got.stderr
    # Masqueraded: the outside host sees the host's address on its link, not 10.x container ip.
    assert got.stdout.split() == ["outside", outside.host_ip]


def test_internal_network_has_no_way_out(mgr, testns):
    outside = testns("outside")
    server = netutil.start_server(f"/run/netns/{outside.name}", 8080, "outside")
    outside.procs.append(server)
    mgr.create("sealed", internal=True)
    c = cid()
    att = mgr.attach(c, "in", ["sealed"])
    got = netutil.fetch_in(att.netns_path, f"http://{outside.ip}:8080/", timeout=1)
    assert got.returncode == 1
    assert mgr.inspect("sealed")["Internal"] is True


# ----- 4. errors leave nothing half-made ------------------------------------------------------

def test_port_conflicts_leave_nothing_behind(mgr, clean_host):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        c = cid()
        with pytest.raises(Conflict, match=rf"^port is already allocated: 127.0.0.1:{port}$"):
            mgr.attach(c, "x", ["bridge"], parse_publish(f"127.0.0.1:{port}:80"))
        assert mgr.db.query("SELECT * FROM net_sandboxes") == []
        assert mgr.db.query("SELECT * FROM net_leases") == []
        assert not ns.path_for(c).exists()
    finally:
        holder.close()
    # Two containers: 0.0.0.0:P taken by the first blocks 127.0.0.1:P for the second.
    free = _free_port()
    first = cid()
    mgr.attach(first, "first", ["bridge"], parse_publish(f"{free}:80"))
    second = cid()
    with pytest.raises(Conflict, match=rf"0.0.0.0:{free}|127.0.0.1:{free}"):
        mgr.attach(second, "second", ["bridge"], parse_publish(f"127.0.0.1:{free}:80"))
    assert not ns.path_for(second).exists()
    assert list(mgr.firewall.port_handles()) == [first]
    mgr.detach(first)
    mgr.wait_idle()
    expected = dict(clean_host, links="\n".join(sorted(
        clean_host["links"].split("\n") + [mgr.bridge_name])))
    assert netutil.settled_snapshot(expected)["links"] == expected["links"]


def test_overlapping_subnet_and_unknown_network_errors(mgr):
    base = ipaddress.IPv4Network(_free_subnets(1, 24, first=215)[0])
    mgr.create("one", subnet=str(base))
    links_before = netutil.snapshot()["links"]
    with pytest.raises(Conflict) as err:
        mgr.create("two", subnet=str(base.supernet(2)))
    assert "two" in str(err.value) and "one" in str(err.value) and "\n" not in str(err.value)
    assert [n["Name"] for n in mgr.list() if n["Name"] == "two"] == []
    assert netutil.snapshot()["links"] == links_before
    with pytest.raises(NotFound, match="^network nope not found$"):
        mgr.attach(cid(), "x", ["nope"])
    with pytest.raises(NotFound, match="^network nope not found$"):
        mgr.inspect("nope")
    assert mgr.db.query("SELECT * FROM net_sandboxes") == []


# ----- modes, inspect, prune, crash repair ----------------------------------------------------

def test_none_and_host_modes(mgr):
    n, h = cid(), cid()
    att = mgr.attach(n, "lonely", "none")
    links = netutil.sh("nsenter", f"--net={att.netns_path}", "ip", "-o", "link").stdout
    assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
    assert "UP" in links
    host = mgr.attach(h, "hosty", "host", add_hosts=["db:10.1.2.3"])
    assert host.netns_path is None and host.ips == {}
    assert "10.1.2.3\tdb" in host.etc_files["/etc/hosts"].read_text()
    assert host.etc_files["/etc/hostname"].read_text() == socket.gethostname() + "\n"


def test_inspect_shape_and_prune(mgr):
    mgr.ensure_default()
    info = mgr.create("data", labels={"team": "ml"})
    assert info["Driver"] == "bridge" and info["Labels"] == {"team": "ml"}
    cfg = info["IPAM"]["Config"][0]
    net = ipaddress.IPv4Network(cfg["Subnet"])
    assert cfg["Gateway"] == str(net.network_address + 1)
    c = cid()
    att = mgr.attach(c, "user", ["data"], hostname="box")
    entry = mgr.inspect("data")["Containers"][c]
    assert entry["IPv4Address"] == f"{att.ips['data']}/{net.prefixlen}"
    assert entry["MacAddress"] == att.macs["data"]
    assert att.etc_files["/etc/hostname"].read_text() == "box\n"
    assert mgr.prune() == []  # in use
    mgr.detach(c)
    mgr.detach(c)  # idempotent
    assert mgr.prune() == ["data"]
    assert [n["Name"] for n in mgr.list()] == ["bridge"]


def test_cleanup_stale_removes_leftovers_of_a_killed_process(mgr):
    dead, alive = cid(), cid()
    mgr.attach(dead, "dead", ["bridge"], parse_publish(f"127.0.0.1:{_free_port()}:80"))
    mgr.attach(alive, "alive", ["bridge"])
    # A namespace no row explains (the process died between mount and insert).
    orphan = ns.path_for(cid())
    ns.run_in(orphan, lambda: None, create=True)
    removed = mgr.cleanup_stale([alive])
    assert dead in removed and orphan.name in removed
    assert not orphan.exists() and not ns.path_for(dead).exists()
    assert ns.path_for(alive).exists()
    assert mgr.firewall.port_handles() == {}


# ----- 6. speed -------------------------------------------------------------------------------

def test_attach_detach_is_fast(mgr):
    mgr.ensure_default()
    times = []
    for _ in range(20):
        c = cid()
        start = time.perf_counter()
        mgr.attach(c, "t", ["bridge"])
        mgr.detach(c)
        times.append((time.perf_counter() - start) * 1000)
        # The host veth's kernel-side deletion (RCU grace periods, ~20 ms) runs on a background
        # thread after detach returns; let it finish so runs do not queue on the rtnl lock.
        mgr.wait_idle()
    median = statistics.median(times)
    print(f"attach+detach median {median:.1f} ms over 20 runs (min {min(times):.1f})")
    assert median <= 40
