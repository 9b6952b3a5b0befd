"""nftables rules for bridge networks: NAT out, published ports in, isolation between networks.

The engine owns exactly one table, ``inet portside``, and never reads or writes anybody else's
tables or chains (a host's firewall, Docker's, podman's stay as they are). The table holds::

    chain prerouting   nat    hook prerouting   fib daddr type local -> jump ports
    chain output       nat    hook output       fib daddr type local -> jump ports
    chain ports        DNAT rules, one per published port, commented "ctr=<container id>"
    chain postrouting  nat    hook postrouting  -> jump masq
    chain masq         per network: masquerade its subnet leaving through another interface;
                       masquerade 127.0.0.0/8 sources entering the bridge (host -> 127.0.0.1:PORT)
    chain forward      filter hook forward      established -> accept, then -> jump nets
    chain nets         per network: intra-bridge accept, cross-network drop, DNAT'd in accept,
                       out accept (internal networks: drop both ways), other inbound drop

*Why the output chain:* a connection from the host itself to ``127.0.0.1:8080`` never passes
prerouting; DNAT in output rewrites it to the container, ``route_localnet=1`` on the bridge lets a
127.0.0.1 source be routed there, and the masquerade rule gives the container a source it can answer.

Network rules (``masq``, ``nets``) are *declarative*: :meth:`Firewall.sync_networks` rewrites both
chains from the store's list of networks in one atomic ``nft -f`` transaction. Port rules are
*incremental*: :meth:`Firewall.add_ports` appends a container's rules and :meth:`Firewall.remove_ports`
finds its rules by their ``ctr=<id>`` comment and deletes exactly those by handle.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from typing import Iterable, Sequence

from portside.engine.errors import RuntimeFailure

TABLE = "portside"
FAMILY = "inet"

BASE = f"""\
add table {FAMILY} {TABLE}
add chain {FAMILY} {TABLE} ports
add chain {FAMILY} {TABLE} masq
add chain {FAMILY} {TABLE} nets
add chain {FAMILY} {TABLE} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
add chain {FAMILY} {TABLE} output {{ type nat hook output priority dstnat; policy accept; }}
add chain {FAMILY} {TABLE} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}
add chain {FAMILY} {TABLE} forward {{ type filter hook forward priority filter; policy accept; }}
flush chain {FAMILY} {TABLE} prerouting
flush chain {FAMILY} {TABLE} output
flush chain {FAMILY} {TABLE} postrouting
flush chain {FAMILY} {TABLE} forward
add rule {FAMILY} {TABLE} prerouting fib daddr type local jump ports
add rule {FAMILY} {TABLE} output fib daddr type local jump ports
add rule {FAMILY} {TABLE} postrouting jump masq
add rule {FAMILY} {TABLE} forward ct state established,related accept
add rule {FAMILY} {TABLE} forward jump nets
"""


@dataclass(frozen=True)
class NetRule:
    """The firewall's view of one bridge network."""

    name: str
    bridge: str
    subnet: str
    internal: bool


@dataclass(frozen=True)
class PortRule:
    """One DNAT: ``host_ip:host_port/proto`` -> ``ip:port``; ``host_ip`` "" means every address."""

    host_ip: str
    host_port: int
    container_ip: str
    container_port: int
    proto: str


def _q(text: str) -> str:
    return '"' + text.replace('"', "") + '"'


def _nft(script: str, *args: str) -> str:
    exe = shutil.which("nft") or "/usr/sbin/nft"
    try:
        proc = subprocess.run([exe, *args, "-f", "-"], input=script, capture_output=True,
                              text=True, check=False)
    except OSError as exc:
        raise RuntimeFailure(f"cannot run nft: {exc.strerror}") from exc
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["failed"])[0]
        raise RuntimeFailure(f"nft table {FAMILY} {TABLE}: {first}")
    return proc.stdout


def _list(*what: str) -> dict:
    exe = shutil.which("nft") or "/usr/sbin/nft"
    proc = subprocess.run([exe, "-j", "-a", "list", *what], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        return {"nftables": []}
    return json.loads(proc.stdout or '{"nftables": []}')


class Firewall:
    """The ``inet portside`` table; every method is idempotent."""

    def ensure_base(self) -> None:
        """Create the table and its chains if missing (the hook chains are rewritten)."""
        _nft(BASE)

    def sync_networks(self, networks: Sequence[NetRule]) -> None:
        """Rewrite the per-network rules from ``networks`` in one transaction.

        Raises:
            RuntimeFailure: nft rejected the script.
        """
        lines = [BASE, f"flush chain {FAMILY} {TABLE} masq", f"flush chain {FAMILY} {TABLE} nets"]
        bridges = [n.bridge for n in networks]
        for net in networks:
            br = _q(net.bridge)
            others = [b for b in bridges if b != net.bridge]
            lines.append(f"add rule {FAMILY} {TABLE} nets iifname {br} oifname {br} accept")
            if others:
                group = "{ " + ", ".join(_q(b) for b in others) + " }"
                lines.append(f"add rule {FAMILY} {TABLE} nets iifname {br} oifname {group} drop")
            if net.internal:
                lines.append(f"add rule {FAMILY} {TABLE} nets iifname {br} drop")
                lines.append(f"add rule {FAMILY} {TABLE} nets oifname {br} drop")
                continue
            lines.append(f"add rule {FAMILY} {TABLE} nets oifname {br} ct status dnat accept")
            lines.append(f"add rule {FAMILY} {TABLE} nets iifname {br} accept")
            lines.append(f"add rule {FAMILY} {TABLE} nets oifname {br} drop")
            lines.append(f"add rule {FAMILY} {TABLE} masq ip saddr {net.subnet} oifname != {br} "
                         f"masquerade")
            lines.append(f"add rule {FAMILY} {TABLE} masq ip saddr 127.0.0.0/8 oifname {br} "
                         f"masquerade")
        _nft("\n".join(lines) + "\n")

    def add_ports(self, container_id: str, rules: Iterable[PortRule]) -> None:
        """Append the DNAT rules of one container, commented ``ctr=<id>``.

        Raises:
            RuntimeFailure: nft rejected the script.
        """
        lines = []
        for r in rules:
            match = f"ip daddr {r.host_ip} " if r.host_ip else "meta nfproto ipv4 "
            lines.append(f"add rule {FAMILY} {TABLE} ports {match}{r.proto} dport {r.host_port} "
                         f"dnat ip to {r.container_ip}:{r.container_port} "
                         f"comment {_q('ctr=' + container_id)}")
        if lines:
            _nft(BASE + "\n".join(lines) + "\n")

    def port_handles(self) -> dict[str, list[int]]:
        """Rule handles in the ``ports`` chain by container id (from the ``ctr=`` comments)."""
        out: dict[str, list[int]] = {}
        for item in _list("chain", FAMILY, TABLE, "ports").get("nftables", []):
            rule = item.get("rule")
            if not rule:
                continue
            comment = rule.get("comment", "")
            if comment.startswith("ctr="):
                out.setdefault(comment[4:], []).append(int(rule["handle"]))
        return out

    def remove_ports(self, container_id: str) -> int:
        """Delete exactly the rules commented ``ctr=<container_id>``; returns how many."""
        handles = self.port_handles().get(container_id, [])
        if handles:
            _nft("".join(f"delete rule {FAMILY} {TABLE} ports handle {h}\n" for h in handles))
        return len(handles)

    def exists(self) -> bool:
        """True when the table is present."""
        return bool(_list("table", FAMILY, TABLE).get("nftables"))

    def delete_table(self) -> None:
        """Remove the whole table (``system reset``); idempotent."""
        if self.exists():
            _nft(f"delete table {FAMILY} {TABLE}\n")
