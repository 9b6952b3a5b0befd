"""The network manager without root: its kernel work in the user's network namespace (``home``),
published ports through a forwarder, and the default network described, never attached."""

from __future__ import annotations

import threading

import pytest

from portside.engine.errors import InvalidArgument
from portside.engine.network import files
from portside.engine.network.manager import NetworkManager, _off_event_loop
from portside.engine.store.db import Database

pytestmark = pytest.mark.unit


@pytest.fixture
def manager(tmp_path):
    db = Database(tmp_path / "metadata.db")
    mgr = NetworkManager(db, tmp_path / "run", netns_dir=tmp_path / "netns",
                         usermode_default="slirp4netns", dns_fallback=["10.0.2.3"])
    yield mgr
    db.close()


def test_the_default_network_is_described_not_made(manager):
    doc = manager.ensure_default()  # no bridge, no kernel: the description only
    assert doc["Name"] == "bridge" and doc["Driver"] == "slirp4netns"
    assert doc["IPAM"]["Config"] == [{"Subnet": "10.0.2.0/24", "Gateway": "10.0.2.2"}]
    assert [n["Name"] for n in manager.list()] == ["bridge"]
    assert manager.inspect("bridge") == doc
    with pytest.raises(InvalidArgument, match="^network bridge: without root, the default "
                                              "network is each container's own slirp4netns"):
        manager.connect("bridge", "c" * 64, "/proc/1/ns/net", "c1")


class Home:
    """A ``home`` that records the threads it moved (the real one setns()es them)."""

    def __init__(self) -> None:
        self.threads: list[int] = []

    def __call__(self) -> None:
        self.threads.append(threading.get_ident())


class Owner:
    def __init__(self, home) -> None:
        self.home = home
        self.seen: list[int] = []

    @_off_event_loop
    def outer(self) -> list[int]:
        self.seen.append(threading.get_ident())
        self.inner()
        return self.seen

    @_off_event_loop
    def inner(self) -> None:
        self.seen.append(threading.get_ident())


def test_kernel_work_runs_in_one_thread_that_went_home():
    home = Home()
    owner = Owner(home)
    outer, inner = owner.outer()
    # one worker, moved once; the nested call ran in it, not in a second one
    assert home.threads == [outer] and inner == outer != threading.get_ident()
    assert Owner(None).outer() == [threading.get_ident()] * 2  # root: the caller's thread


def test_resolv_conf_falls_back_when_the_host_has_only_loopback(tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.53\nsearch example.org\n")
    text = files.resolv_conf_content(host_resolv=resolv, systemd_resolv=tmp_path / "none",
                                     fallback=["10.0.2.3"])
    assert "nameserver 10.0.2.3" in text and "No usable nameserver" not in text
    resolv.write_text("nameserver 192.0.2.53\n")
    assert "nameserver 10.0.2.3" not in files.resolv_conf_content(
        host_resolv=resolv, systemd_resolv=tmp_path / "none", fallback=["10.0.2.3"])
