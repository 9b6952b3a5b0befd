"""User-mode networking (the rootless default network): which helper, its command line, the
resolver file, and cleanup that trusts only the helper of its own namespace."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from portside.engine.errors import InvalidArgument
from portside.engine.network import usermode
from portside.engine.network.ports import parse_publish

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("mode,configured,rootless,expected", [
    ("bridge", None, True, "slirp4netns"),
    ("bridge", "pasta", True, "pasta"),
    ("slirp4netns", "pasta", True, "slirp4netns"),
    ("pasta", None, True, "pasta"),
    ("bridge", None, False, None),       # root: the host's bridge
    ("slirp4netns", None, False, "slirp4netns"),
    ("lab", None, True, None),           # a user network: the network manager's
    ("none", None, True, None),
    ("host", None, True, None),
])
def test_driver_for(mode, configured, rootless, expected):
    assert usermode.driver_for(mode, configured, rootless) == expected


def test_driver_refusals_are_one_line():
    with pytest.raises(InvalidArgument, match=r"^rootless-network: unknown helper 'vde' "
                                              r"\(slirp4netns or pasta\)$"):
        usermode.driver_for("bridge", "vde", True)
    with pytest.raises(InvalidArgument, match="^--network pasta: only without root"):
        usermode.driver_for("pasta", None, False)


def _ports(*specs):
    from portside.engine.records import replace

    out = []
    for i, spec in enumerate(specs):
        for p in parse_publish(spec):
            out.append(replace(p, host_port=p.host_port or 40000 + i))
    return out


def test_slirp4netns_command_line_and_its_ports(tmp_path):
    h = usermode.helper_config(tmp_path, "slirp4netns", "/usr/bin/slirp4netns",
                               _ports("127.0.0.1:8080:80", "9000:90/udp"))
    argv = h["argv"]
    assert argv[0] == "/usr/bin/slirp4netns"
    # the namespace is the last but one argument, the tap device's name the last
    assert argv[-3:] == ["--netns-type=path", str(tmp_path / "netns"), "tap0"]
    for flag in ("--configure", "--disable-host-loopback", "--enable-sandbox",
                 "--enable-seccomp"):
        assert flag in argv
    assert argv[argv.index("--ready-fd") + 1] == str(usermode.READY_FD)
    assert argv[argv.index("--exit-fd") + 1] == str(usermode.EXIT_FD)
    assert argv[argv.index("--api-socket") + 1] == h["api"] == str(tmp_path / "net.sock")
    assert h["ports"] == [
        {"proto": "tcp", "host_addr": "127.0.0.1", "host_port": 8080, "guest_port": 80},
        {"proto": "udp", "host_addr": "0.0.0.0", "host_port": 9000, "guest_port": 90}]
    assert [(p.host_ip, p.host_port, p.container_port, p.proto)
            for p in usermode.published(h)] == [("127.0.0.1", 8080, 80, "tcp"),
                                                ("", 9000, 90, "udp")]


def test_pasta_command_line_carries_its_ports(tmp_path):
    h = usermode.helper_config(tmp_path, "pasta", "/usr/bin/pasta",
                               _ports("127.0.0.1:8080:80", "8443:443"))
    argv = h["argv"]
    assert argv[argv.index("--netns") + 1] == str(tmp_path / "netns")
    assert ["-a", usermode.ADDRESS] == argv[argv.index("-a"):argv.index("-a") + 2]
    assert ["--dns-forward", usermode.RESOLVER] == \
        argv[argv.index("--dns-forward"):argv.index("--dns-forward") + 2]
    assert "--no-map-gw" in argv  # the host's loopback stays private
    tcp = [argv[i + 1] for i, a in enumerate(argv) if a == "-t"]
    assert tcp == ["127.0.0.1/8080:80", "8443:443"]
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "-u"] == ["none"]
    assert argv[argv.index("-P") + 1] == h["pid_file"] and h["ports"] == []
    with pytest.raises(InvalidArgument, match="only tcp and udp"):
        usermode.helper_config(tmp_path, "pasta", "/usr/bin/pasta", _ports("5000:5000/sctp"))


def test_resolv_conf_keeps_search_and_options_and_names_the_helpers_resolver():
    host = "# made by someone\nnameserver 127.0.0.53\nsearch lab.example\noptions edns0\n"
    assert usermode.resolv_conf(host) == \
        "nameserver 10.0.2.3\nsearch lab.example\noptions edns0\n"
    assert usermode.resolv_conf(host, ["192.0.2.53"]).startswith("nameserver 192.0.2.53\n")
    assert usermode.resolv_conf("") == "nameserver 10.0.2.3\n"


def test_cleanup_trusts_only_a_helper_naming_its_namespace(tmp_path):
    # a process whose command line names the namespace is the helper; one that does not (a
    # recycled pid) is left alone
    ns_path = str(tmp_path / "netns")
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", ns_path])
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "net.pid").write_text(f"{stranger.pid}\n")
        assert usermode.helper_pid(tmp_path) == 0
        assert usermode.detach(tmp_path) is True  # the pid file was there
        assert stranger.poll() is None and not (tmp_path / "net.pid").exists()
        (tmp_path / "net.pid").write_text(f"{helper.pid}\n")
        assert usermode.helper_pid(tmp_path) == helper.pid
        assert usermode.stop_helper(tmp_path) is True
        assert helper.wait(timeout=10) == -9
        assert usermode.helper_pid(tmp_path) == 0
        assert usermode.detach(tmp_path) is True and usermode.detach(tmp_path) is False
        assert os.listdir(tmp_path) == []
    finally:
        for proc in (helper, stranger):
            proc.kill()
            proc.wait()
