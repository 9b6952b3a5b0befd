"""Containers on real networks, end to end through the CLI (issue: networking).

A busybox ``httpd`` published on 127.0.0.1, reached from the host and from a separate test
namespace; ``--net host/none/container:``; user networks with name resolution and isolation;
outbound NAT to a fake outside host; and nothing left behind (netns, links, nft rules other than
the engine's own bridge and table).
"""

from __future__ import annotations

import json
import socket
import urllib.request

import pytest

from netutil import TestNetns as Netns, settled_snapshot, sh, snapshot, start_server, stop

pytestmark = pytest.mark.integration


@pytest.fixture
def clean_network(cli):
    before = snapshot()
    yield
    cli("rm", "-f", *cli("ps", "-aq").out.split(), check=False)
    cli("network", "prune", "-f", check=False)
    after = settled_snapshot(before)
    assert after == before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> str:
    return urllib.request.urlopen(url, timeout=5).read().decode()


def _wait_http(url: str) -> str:
    import time

    deadline = time.monotonic() + 5
    while True:
        try:
            return _get(url)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_published_port_on_loopback_and_from_another_namespace(cli, busybox_image, clean_network):
    port = _free_port()
    cli("run", "-d", "--name", "web", "--hostname", "webhost", "-p", f"127.0.0.1:{port}:80",
        busybox_image, "httpd", "-f", "-p", "80", "-h", "/etc")
    assert _wait_http(f"http://127.0.0.1:{port}/hostname").strip() == "webhost"
    assert cli("port", "web").out.strip() == f"80/tcp -> 127.0.0.1:{port}"
    # a random host port (-p CTR) is resolved when the container starts; port and ps show it
    cli("run", "-d", "--name", "rnd", "-p", "127.0.0.1::80", busybox_image,
        "httpd", "-f", "-p", "80", "-h", "/etc")
    mapped = cli("port", "rnd", "80").out.strip()
    host_port = int(mapped.rsplit(":", 1)[1])
    assert host_port > 0 and f"127.0.0.1:{host_port}->80/tcp" in cli("ps").out
    assert _wait_http(f"http://{mapped}/hostname").strip()
    cli("rm", "-f", "rnd")
    assert f"127.0.0.1:{port}->80/tcp" in cli("ps").out
    cli("rm", "-f", "web")
    # published on every address: a client in its own namespace reaches it through the host
    port2 = _free_port()
    cli("run", "-d", "--name", "web2", "-p", f"{port2}:80", busybox_image,
        "httpd", "-f", "-p", "80", "-h", "/etc")
    client = Netns("pstest-client", "pstc0", "10.231.99.0/30")
    try:
        out = client.exec("wget", "-q", "-O", "-", "-T", "5",
                          f"http://{client.host_ip}:{port2}/hostname", check=False)
        if out.returncode != 0:  # no wget on the host: use busybox's from the package
            out = client.exec("busybox", "wget", "-q", "-O", "-", "-T", "5",
                              f"http://{client.host_ip}:{port2}/hostname")
        cid = cli("inspect", "-f", "{{.Config.Hostname}}", "web2").out.strip()
        assert out.stdout.strip() == cid
    finally:
        client.close()


def test_host_none_and_container_network_modes(cli, busybox_image, clean_network):
    host_links = set(sh("ls", "/sys/class/net").stdout.split())
    seen = set(cli("run", "--rm", "--net", "host", busybox_image, "ls", "/sys/class/net").out.split())
    assert seen == host_links
    assert cli("run", "--rm", "--network", "none", busybox_image,
               "ls", "/sys/class/net").out.split() == ["lo"]
    cli("run", "-d", "--name", "holder", busybox_image, "sleep", "60")
    ip = cli("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "holder").out.strip()
    assert ip
    shared = cli("run", "--rm", "--net", "container:holder", busybox_image,
                 "ip", "-4", "-o", "addr", "show", "eth0").out
    assert ip in shared


FETCH = ("import sys, urllib.request; "
         "print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())")


def test_user_networks_resolve_names_and_isolate(cli, busybox_image, debian_tar, clean_network):
    # busybox-static cannot resolve names (static glibc has no NSS); Debian's glibc can
    cli("load", "-i", str(debian_tar))
    debian = "portside/debian:bookworm"
    cli("network", "create", "pstest-a")
    cli("network", "create", "pstest-b")
    cli("run", "-d", "--name", "srv", "--net", "pstest-a", busybox_image,
        "httpd", "-f", "-p", "80", "-h", "/etc")
    srv_host = cli("inspect", "-f", "{{.Config.Hostname}}", "srv").out.strip()
    srv_ip = cli("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "srv").out.strip()
    assert cli("run", "--rm", "--net", "pstest-a", debian, "getent", "hosts",
               "srv").out.split()[0] == srv_ip
    got = cli("run", "--rm", "--net", "pstest-a", debian, "python3", "-c", FETCH,
              "http://srv/hostname").out.strip()
    assert got == srv_host
    # another network: the name does not resolve and the address is not reachable
    assert cli("run", "--rm", "--net", "pstest-b", debian, "getent", "hosts", "srv",
               check=False).returncode == 2
    other = cli("run", "--rm", "--net", "pstest-b", debian, "python3", "-c", FETCH,
                f"http://{srv_ip}/hostname", check=False)
    assert other.returncode != 0


def test_outbound_nat_reaches_a_server_outside(cli, busybox_image, clean_network):
    outside = Netns("pstest-outside", "pstout0", "10.231.98.0/30")
    server = None
    try:
        server = start_server(f"/run/netns/{outside.name}", 8081, "outside")
        # busybox-static's wget crashes without NSS even for an address; nc does not resolve
        out = cli("run", "--rm", busybox_image, "sh", "-c",
                  f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc {outside.ip} 8081").out
        # the outside host sees the host's address (masquerade), not the container's
        assert out.splitlines()[-1].split() == ["outside", outside.host_ip]
    finally:
        if server is not None:
            stop(server)
        outside.close()


def test_port_conflict_is_one_line_and_leaves_nothing(cli, busybox_image, clean_network):
    port = _free_port()
    holder = socket.socket()
    holder.bind(("0.0.0.0", port))
    holder.listen()
    try:
        proc = cli("run", "-d", "--name", "clash", "-p", f"{port}:80", busybox_image,
                   "sleep", "5", check=False)
        assert proc.returncode == 125
        assert proc.err.count("\n") == 1 and "port is already allocated" in proc.err
        # the container was created but not started; nothing of its network remains
        assert cli("ps", "-q").out == ""
    finally:
        holder.close()
    unknown = cli("run", "--rm", "--net", "nosuchnet", busybox_image, "true", check=False)
    assert unknown.returncode == 125 and "network nosuchnet not found" in unknown.err


def test_connect_and_disconnect_a_running_container(cli, busybox_image, clean_network):
    cli("network", "create", "--subnet", "10.231.55.0/24", "pstest-c")
    cli("run", "-d", "--name", "roamer", busybox_image, "sleep", "60")
    cli("network", "connect", "pstest-c", "roamer")
    addrs = cli("exec", "roamer", "ip", "-4", "-o", "addr").out
    assert "10.231.55." in addrs
    members = json.loads(cli("network", "inspect", "-f", "{{json .Containers}}", "pstest-c").out)
    assert [m["Name"] for m in members.values()] == ["roamer"]
    cli("network", "disconnect", "pstest-c", "roamer")
    assert "10.231.55." not in cli("exec", "roamer", "ip", "-4", "-o", "addr").out
    assert json.loads(cli("network", "inspect", "-f", "{{json .Containers}}", "pstest-c").out) == {}


def test_user_mode_network_as_root(cli, busybox_image, clean_network):
    """``--network slirp4netns`` (the rootless default, see tests/rootless) as root: the
    container's own namespace and helper, a published port, and both gone with it; pasta is
    for users only."""
    driver = "slirp4netns"
    port = _free_port()
    cli("run", "-d", "--name", "um", "--network", driver, "-p", f"127.0.0.1:{port}:80",
        busybox_image, "httpd", "-f", "-p", "80", "-h", "/etc")
    assert _wait_http(f"http://127.0.0.1:{port}/hostname").strip() == \
        cli("inspect", "-f", "{{.Config.Hostname}}", "um").out.strip()
    assert "10.0.2.100" in cli("exec", "um", "ip", "-o", "-4", "addr").out
    pattern = f"^/usr/bin/{driver} .*/netns"
    helpers = sh("pgrep", "-f", pattern, check=False).stdout.split()
    assert len(helpers) == 1
    cli("rm", "-f", "um")
    import time

    deadline = time.monotonic() + 10
    while sh("pgrep", "-f", pattern, check=False).stdout.strip():
        assert time.monotonic() < deadline, f"{driver} outlived its container"
        time.sleep(0.02)
    bad = cli("run", "--rm", "--network", "pasta", busybox_image, "true", check=False)
    assert bad.returncode == 125 and bad.err == \
        "Error: --network pasta: only without root (as root: the bridge network or --network " \
        "slirp4netns)\n"
