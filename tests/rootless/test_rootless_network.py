"""Networking without root: the default network (a slirp4netns or pasta per container) and user
networks (bridges in the user's own network namespace), as ``portside-rl1`` sees them, and what
the host sees: its loopback reaches published ports, and none of its links, nftables rules or
``/run/netns`` entries change.

Outbound traffic goes only to an address inside a network namespace this test makes (a veth pair
from the host into it, and a server there), never to the internet.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import nothing_left

pytestmark = [pytest.mark.rootless, pytest.mark.slow]

HELPERS = (b"slirp4netns", b"pasta")


@pytest.fixture
def busybox(rl):
    rl("image", "bootstrap", "busybox", "-t", "busybox:latest", "-q")
    return "busybox:latest"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str, timeout: float = 10.0) -> str:
    """GET ``url`` from the host (root, the host's network namespace), retrying until the
    server in the container listens."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return reply.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def helpers(user) -> list[str]:
    """The user's slirp4netns/pasta processes (zombies aside)."""
    found = []
    for line in user.processes():
        pid, _, cmd = line.partition(" ")
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and os.path.basename(cmd.split(" ")[0]).encode() in HELPERS:
            found.append(line)
    return found


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def nft_ruleset() -> str:
    return subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True,
                          check=True).stdout


def host_netns() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


@pytest.fixture
def host_state():
    """The host's network state a rootless user must never change: links, nftables rules,
    named network namespaces."""
    def snapshot():
        return {"links": sorted(os.listdir("/sys/class/net")), "nft": nft_ruleset(),
                "netns": host_netns()}

    before = snapshot()
    yield before
    assert snapshot() == before


@pytest.fixture
def outside():
    """A server in a network namespace this test makes (not the internet): a veth pair from
    the host (10.231.77.1/30) into it (10.231.77.2), and busybox httpd there on port 8080.
    Yields the URL a container fetches; everything goes with the namespace's process."""
    import uuid

    www = Path(f"/tmp/portside-outside-{uuid.uuid4().hex[:8]}")
    www.mkdir()
    (www / "index.html").write_text("from the outside namespace\n")
    host_end, inner = f"psout{uuid.uuid4().hex[:6]}", "psin0"
    holder = subprocess.Popen(["unshare", "--net", "busybox", "sleep", "300"])
    try:
        wait_for(lambda: os.stat(f"/proc/{holder.pid}/ns/net").st_ino !=
                 os.stat("/proc/self/ns/net").st_ino, what="the namespace")
        ip = ["ip"]
        inside = ["nsenter", "-t", str(holder.pid), "-n"]
        for cmd in (ip + ["link", "add", host_end, "type", "veth", "peer", "name", inner,
                          "netns", str(holder.pid)],
                    ip + ["addr", "add", "10.231.77.1/30", "dev", host_end],
                    ip + ["link", "set", host_end, "up"],
                    inside + ip + ["addr", "add", "10.231.77.2/30", "dev", inner],
                    inside + ip + ["link", "set", inner, "up"],
                    inside + ip + ["link", "set", "lo", "up"]):
            subprocess.run(cmd, check=True, capture_output=True)
        server = subprocess.Popen(inside + ["busybox", "httpd", "-f", "-p", "10.231.77.2:8080",
                                            "-h", str(www)])
        try:
            url = "http://10.231.77.2:8080/index.html"
            assert fetch(url) == "from the outside namespace\n"  # the host reaches it
            yield url
        finally:
            server.kill()
            server.wait()
    finally:
        holder.kill()
        holder.wait()
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
        wait_for(lambda: host_end not in os.listdir("/sys/class/net"), what="the veth to go")
        for f in www.iterdir():
            f.unlink()
        www.rmdir()


# ------------------------------------------------------------------- the default network


def test_default_network_is_a_slirp4netns_of_the_containers_own(rl, busybox, host_state):
    out = rl("run", "--rm", busybox, "sh", "-c",
             "ip -o -4 addr show; ip route; cat /etc/resolv.conf; grep -c 10.0.2.100 /etc/hosts"
             ).out
    assert "tap0 inet 10.0.2.100/24" in " ".join(out.split())
    assert "default via 10.0.2.2 dev tap0" in out
    assert "nameserver 10.0.2.3" in out  # slirp4netns's resolver, which forwards to the host's
    assert out.rstrip().endswith("1")
    info = json.loads(rl("info", "--format", "json").out)
    assert info["NetworkMode"].startswith("slirp4netns (default network")
    bridge = json.loads(rl("network", "inspect", "bridge").out)[0]
    assert bridge["Driver"] == "slirp4netns"


def test_published_port_is_reachable_from_the_hosts_loopback(rl, busybox, host_state):
    port, port2 = free_port(), free_port()
    rl("run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:80", "-p", f"{port2}:80",
       busybox, "sh", "-c", "mkdir /www && echo served-rootless > /www/index.html && "
                            "exec httpd -f -p 80 -h /www")
    assert fetch(f"http://127.0.0.1:{port}/") == "served-rootless\n"
    assert fetch(f"http://127.0.0.1:{port2}/") == "served-rootless\n"  # -p PORT:80, every address
    assert f"127.0.0.1:{port}->80/tcp" in rl("ps", "--format", "{{.Ports}}").out
    # the container's slirp4netns holds the host port: a second claim is one line
    taken = rl("run", "--rm", "-p", f"127.0.0.1:{port}:80", busybox, "true", check=False)
    assert taken.returncode == 125 and taken.err.strip() == \
        f"Error: port is already allocated: 127.0.0.1:{port}"
    assert len(helpers(rl.user)) == 1
    rl("rm", "-f", "web")
    # the helper goes with its container, and so does the port
    wait_for(lambda: not helpers(rl.user), what="slirp4netns to exit")
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
    assert not list(Path(rl.user.runtime_dir()).glob("*/*/netns"))


def test_outbound_reaches_a_namespace_the_test_made(rl, busybox, outside, host_state):
    for driver in ("slirp4netns", "pasta"):
        out = rl("run", "--rm", "--network", driver, busybox, "wget", "-qO-", outside).out
        assert out == "from the outside namespace\n", driver


def test_pasta_chosen_by_configuration(rl, busybox, host_state):
    port = free_port()
    env = {"PORTSIDE_ROOTLESS_NETWORK": "pasta"}
    rl("run", "-d", "--name", "pw", "-p", f"127.0.0.1:{port}:80", busybox, "sh", "-c",
       "mkdir /www && echo via-pasta > /www/index.html && exec httpd -f -p 80 -h /www", env=env)
    assert fetch(f"http://127.0.0.1:{port}/") == "via-pasta\n"
    found = helpers(rl.user)
    assert len(found) == 1 and os.path.basename(found[0].split()[1]) == "pasta"
    out = rl("exec", "pw", "sh", "-c", "ip -o -4 addr show; cat /etc/resolv.conf").out
    assert "10.0.2.100/24" in out and "nameserver 10.0.2.3" in out
    assert json.loads(rl("network", "inspect", "bridge", env=env).out)[0]["Driver"] == "pasta"
    rl("rm", "-f", "pw")
    wait_for(lambda: not helpers(rl.user), what="pasta to exit")
    bad = rl("run", "--rm", busybox, "true", env={"PORTSIDE_ROOTLESS_NETWORK": "vde"},
             check=False)
    assert bad.returncode == 125 and bad.err.count("\n") == 1
    assert "rootless-network: unknown helper 'vde' (slirp4netns or pasta)" in bad.err


def test_a_killed_monitor_takes_its_slirp4netns_along(rl, busybox, host_state):
    cid = rl("run", "-d", "--name", "orphan", busybox, "sleep", "120").out.strip()
    monitor = _monitor_of(rl.user, cid)
    helper_pid = int(helpers(rl.user)[0].split()[0])
    os.kill(monitor, signal.SIGKILL)
    # slirp4netns's --exit-fd pipe closed with the monitor: it exits by itself
    wait_for(lambda: not Path(f"/proc/{helper_pid}").exists() or
             Path(f"/proc/{helper_pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z",
             what="slirp4netns to exit")
    rl("rm", "-f", "orphan")  # and the namespace goes with the container
    assert not list(Path(rl.user.runtime_dir()).glob("*/*/netns"))


def _monitor_of(user, cid: str) -> int:
    for line in user.processes():
        if "portside-monitor" in line and cid in line:
            return int(line.split()[0])
    raise AssertionError(f"no monitor for {cid[:12]}")


def test_net_none_and_the_default_side_by_side(rl, busybox):
    none = rl("run", "--rm", "--net", "none", busybox, "ip", "-o", "link").out.splitlines()
    assert [line.split(": ")[1] for line in none] == ["lo"]
    default = rl("run", "--rm", busybox, "ip", "-o", "link").out.splitlines()
    assert [line.split(": ")[1] for line in default] == ["lo", "tap0"]


# ------------------------------------------------------------------- user networks


def test_user_network_names_ports_and_outbound(rl, busybox, outside, host_state):
    rl("network", "create", "lab")
    port = free_port()
    rl("run", "-d", "--name", "web", "--net", "lab", "-p", f"127.0.0.1:{port}:80", busybox,
       "sh", "-c", "mkdir /www && echo on-lab > /www/index.html && exec httpd -f -p 80 -h /www")
    # by name, from a second container on the network
    assert rl("run", "--rm", "--net", "lab", busybox, "wget", "-qO-", "http://web/").out == \
        "on-lab\n"
    # from the host's loopback, through the user's network namespace
    assert fetch(f"http://127.0.0.1:{port}/") == "on-lab\n"
    # out of it, through its slirp4netns
    assert rl("exec", "web", "wget", "-qO-", outside).out == "from the outside namespace\n"
    lab = json.loads(rl("network", "inspect", "lab").out)[0]
    web, = lab["Containers"].values()
    assert web["Name"] == "web"
    # the bridge lives in the user's network namespace, held by its own holder
    doc = json.loads((rl.user.runtime_dir() / "netns.json").read_text())
    links = Path(f"/proc/{doc['pid']}/net/dev").read_text()
    assert lab["Options"]["com.docker.network.bridge.name"] in links
    assert Path(f"/proc/{doc['pid']}/cmdline").read_bytes().startswith(b"portside-ns-netns")
    # a container on the default network joins it too
    rl("run", "-d", "--name", "late", busybox, "sleep", "120")
    rl("network", "connect", "lab", "late")
    address = web["IPv4Address"].split("/")[0]
    assert rl("exec", "late", "wget", "-qO-", f"http://{address}/").out == "on-lab\n"
    rl("rm", "-f", "web", "late")
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
    rl("network", "rm", "lab")


def test_what_stays_root_only_says_so_in_one_line(rl, busybox):
    rl("run", "-d", "--name", "c1", busybox, "sleep", "120")
    bad = rl("network", "connect", "bridge", "c1", check=False)
    assert bad.returncode == 125 and bad.err.count("\n") == 1
    assert bad.err.startswith("Error: network bridge: without root, the default network is "
                              "each container's own slirp4netns")
    rl("rm", "-f", "c1")


def test_nothing_left_after_the_containers_and_reset(rl, busybox):
    rl("network", "create", "lab")
    rl("run", "-d", "--name", "a1", "--net", "lab", busybox, "sleep", "120")
    rl("run", "-d", "--name", "a2", busybox, "sleep", "120")
    assert len(helpers(rl.user)) == 2  # the namespace's uplink and a2's own
    rl("rm", "-f", "a1", "a2")
    wait_for(lambda: len(helpers(rl.user)) == 1, what="a2's slirp4netns to exit")
    reset = rl("system", "reset", "--force")
    assert "stopped the user namespace" in reset.out
    assert not nothing_left(rl.user)
    assert not helpers(rl.user)
    left = sorted(p.name for p in rl.user.runtime_dir().iterdir()) \
        if rl.user.runtime_dir().is_dir() else []
    assert not [n for n in left if n.startswith("netns.") and n != "netns.lock"], left
