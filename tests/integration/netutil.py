"""Helpers for network integration tests: host snapshots, test namespaces, tiny servers.

``snapshot()`` records what the host's network looks like (``ip netns list``, the interface names
of ``ip -o link``, ``nft list ruleset``) minus the engine's own default bridge and table, so a
test can assert that it left the host exactly as it found it. Interfaces of destroyed namespaces
vanish asynchronously in the kernel, so :func:`settled_snapshot` retries for a short while.

Test namespaces here are made with iproute2 (``ip netns add``), independent of the code under
test, and every helper returns something the caller's fixture finalizer removes.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

ENGINE_BRIDGE = "portside0"
ENGINE_TABLE = "portside"


def sh(*args: str, check: bool = True, timeout: float = 10) -> subprocess.CompletedProcess:
    """Run a command, capture text output."""
    return subprocess.run(list(args), capture_output=True, text=True, check=check,
                          timeout=timeout)


def _strip_table(ruleset: str, table: str) -> str:
    out, skipping, depth = [], False, 0
    for line in ruleset.splitlines():
        if not skipping and re.match(rf"^table inet {re.escape(table)} \{{", line):
            skipping, depth = True, 0
        if skipping:
            depth += line.count("{") - line.count("}")
            if depth <= 0:
                skipping = False
            continue
        out.append(line)
    return "\n".join(out)


def snapshot() -> dict[str, str]:
    """The host's namespaces, interface names and nft ruleset, without the engine's own."""
    netns = sorted(line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines()
                   if line)
    links = sorted(
        m.group(1) for m in re.finditer(r"^\d+: ([^:@]+)[@:]", sh("ip", "-o", "link").stdout,
                                        re.M)
        if m.group(1) != ENGINE_BRIDGE)
    rules = _strip_table(sh("nft", "list", "ruleset").stdout, ENGINE_TABLE)
    # other tools' rules count packets (ours pass through them): counters are not state
    rules = re.sub(r"counter packets \d+ bytes \d+", "counter", rules)
    return {"netns": "\n".join(netns), "links": "\n".join(links), "nft": rules}


def settled_snapshot(expected: dict[str, str], timeout: float = 5.0) -> dict[str, str]:
    """Snapshot again until it equals ``expected`` or ``timeout`` passes; returns the last one."""
    deadline = time.monotonic() + timeout
    while True:
        snap = snapshot()
        if snap == expected or time.monotonic() > deadline:
            return snap
        time.sleep(0.05)


class TestNetns:
    """A namespace joined to the host by its own veth pair: a fake outside host or a client.

    ``host_ip`` is on the host's end, ``ip`` on the namespace's end, both in a /30.
    """

    def __init__(self, name: str, host_if: str, subnet: str) -> None:
        import ipaddress

        net = ipaddress.IPv4Network(subnet)
        self.name, self.host_if = name, host_if
        self.host_ip, self.ip = str(net.network_address + 1), str(net.network_address + 2)
        self.prefix = net.prefixlen
        self.procs: list[subprocess.Popen] = []
        sh("ip", "netns", "add", name)
        try:
            sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", name)
            sh("ip", "addr", "add", f"{self.host_ip}/{self.prefix}", "dev", host_if)
            sh("ip", "link", "set", host_if, "up")
            self.exec("ip", "link", "set", "lo", "up")
            self.exec("ip", "addr", "add", f"{self.ip}/{self.prefix}", "dev", "eth0")
            self.exec("ip", "link", "set", "eth0", "up")
            self.exec("ip", "route", "add", "default", "via", self.host_ip)
        except BaseException:
            self.close()
            raise

    def exec(self, *args: str, check: bool = True, timeout: float = 10) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.name, *args, check=check, timeout=timeout)

    def close(self) -> None:
        for p in self.procs:
            stop(p)
        sh("ip", "link", "del", self.host_if, check=False)
        sh("ip", "netns", "del", self.name, check=False)


SERVER = r"""
import http.server, socketserver, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (sys.argv[2] + " " + self.client_address[0]).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
socketserver.TCPServer.allow_reuse_address = True
srv = http.server.HTTPServer(("0.0.0.0", int(sys.argv[1])), H)
print("ready", flush=True)
srv.serve_forever()
"""


def start_server(netns_path: str | Path, port: int, tag: str) -> subprocess.Popen:
    """Start an HTTP server in a namespace that answers ``"<tag> <client ip>"``; waits for it."""
    proc = subprocess.Popen(["nsenter", f"--net={netns_path}", sys.executable, "-c", SERVER,
                             str(port), tag], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if line.strip() != "ready":
        err = proc.stderr.read() if proc.stderr else ""
        stop(proc)
        raise RuntimeError(f"server did not start: {err}")
    return proc


def stop(proc: subprocess.Popen) -> None:
    """Kill a server and close its pipes."""
    proc.kill()
    proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


CLIENT = r"""
import sys, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])).read().decode())
except Exception as exc:
    print("ERROR", type(exc).__name__, exc); sys.exit(1)
"""


def fetch_in(netns_path: str | Path, url: str, timeout: float = 3.0,
             hosts_file: Path | None = None) -> subprocess.CompletedProcess:
    """GET ``url`` from inside a namespace (optionally with ``hosts_file`` as /etc/hosts)."""
    cmd = [sys.executable, "-c", CLIENT, url, str(timeout)]
    if hosts_file is not None:
        inner = " ".join(f"'{c}'" for c in cmd)
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               f"mount --bind {hosts_file} /etc/hosts && exec {inner}"]
    return subprocess.run(["nsenter", f"--net={netns_path}", *cmd], capture_output=True,
                          text=True, timeout=timeout + 10)
