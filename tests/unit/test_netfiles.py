"""/etc/hosts, /etc/hostname and /etc/resolv.conf content for containers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from portside.engine.errors import InvalidArgument
from portside.engine.network import files

pytestmark = pytest.mark.unit


def test_hosts_lists_localhost_own_address_add_hosts_and_peers():
    text = files.hosts_content([("10.89.0.2", ["abc123", "web", "web"])],
                               add_hosts=[("db", "10.1.2.3")],
                               peers=[("10.89.0.3", ["api", "alias", "def456"])])
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert lines[1].startswith("::1\tlocalhost")
    assert "10.1.2.3\tdb" in lines
    assert "10.89.0.2\tabc123 web" in lines
    assert lines[-1] == "10.89.0.3\tapi alias def456"
    assert text.endswith("\n")


@pytest.mark.parametrize("value, expected", [
    ("db:10.1.2.3", ("db", "10.1.2.3")),
    ("db=10.1.2.3", ("db", "10.1.2.3")),
    ("v6:[::1]", ("v6", "::1")),
    ("gw:host-gateway", ("gw", "10.89.0.1")),
])
def test_parse_add_host(value, expected):
    assert files.parse_add_host(value, host_gateway="10.89.0.1") == expected


@pytest.mark.parametrize("value", ["nohost", ":1.2.3.4", "db:notanip", "gw:host-gateway"])
def test_parse_add_host_rejects(value):
    with pytest.raises(InvalidArgument):
        files.parse_add_host(value)


def test_hostname():
    assert files.hostname_content("box") == "box\n"


def _resolv(tmp_path: Path, host: str, systemd: str | None = None, **kw) -> str:
    (tmp_path / "host").write_text(host)
    sd = tmp_path / "systemd"
    if systemd is not None:
        sd.write_text(systemd)
    return files.resolv_conf_content(host_resolv=tmp_path / "host", systemd_resolv=sd, **kw)


def test_resolv_copies_host_servers_search_and_options(tmp_path):
    text = _resolv(tmp_path, "# comment\nnameserver 10.255.255.53\nsearch lab.example\n"
                             "options ndots:2 edns0\n")
    assert text.splitlines()[1:] == ["search lab.example", "nameserver 10.255.255.53",
                                     "options ndots:2 edns0"]


def test_resolv_replaces_systemd_resolved_stub_with_upstream(tmp_path):
    text = _resolv(tmp_path, "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n",
                   systemd="nameserver 192.0.2.53\nnameserver 192.0.2.54\n")
    assert "127.0.0.53" not in text
    assert "nameserver 192.0.2.53\nnameserver 192.0.2.54\n" in text


def test_resolv_with_only_loopback_and_no_upstream_has_none_and_says_why(tmp_path):
    text = _resolv(tmp_path, "nameserver 127.0.0.1\n")
    assert "nameserver" not in "".join(l for l in text.splitlines() if not l.startswith("#"))
    assert "127.0.0.1 cannot be reached" in text and "--dns" in text


def test_dns_flags_override(tmp_path):
    text = _resolv(tmp_path, "nameserver 10.0.0.1\nsearch a\n", dns=["192.0.2.1"],
                   dns_search=["b.example"], dns_options=["ndots:1"])
    assert text.splitlines()[1:] == ["search b.example", "nameserver 192.0.2.1", "options ndots:1"]
    with pytest.raises(InvalidArgument, match="invalid --dns address: nope"):
        _resolv(tmp_path, "", dns=["nope"])


def test_host_network_hosts_appends_add_hosts(tmp_path):
    src = tmp_path / "hosts"
    src.write_text("127.0.0.1 localhost\n10.0.0.5 myhost")
    assert files.host_network_hosts([("db", "10.1.2.3")], src) == (
        "127.0.0.1 localhost\n10.0.0.5 myhost\n10.1.2.3\tdb\n")


def test_write_in_place_keeps_the_inode(tmp_path):
    path = tmp_path / "hosts"
    files.write_in_place(path, "a much longer first version\n")
    inode = os.stat(path).st_ino
    files.write_in_place(path, "short\n")
    assert path.read_text() == "short\n"
    assert os.stat(path).st_ino == inode
