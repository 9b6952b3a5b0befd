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

from portside.engine.errors import RuntimeFailure
from portside.engine.records import record

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Iterable, Sequence


TABLE = "portside"
FAMILY = "inet"

def _base(t: str) -> str:
    """The table, its chains and the fixed hook rules, as an idempotent script."""
    return f"""\
add table {t}
add chain {t} ports
add chain {t} masq
add chain {t} nets
add chain {t} prerouting {{ type nat hook prerouting priority -100; policy accept; }}
add chain {t} output {{ type nat hook output priority -100; policy accept; }}
add chain {t} postrouting {{ type nat hook postrouting priority 100; policy accept; }}
add chain {t} forward {{ type filter hook forward priority 0; policy accept; }}
flush chain {t} prerouting
flush chain {t} output
flush chain {t} postrouting
flush chain {t} forward
add rule {t} prerouting fib daddr type local jump ports
add rule {t} output fib daddr type local jump ports
add rule {t} postrouting jump masq
add rule {t} forward ct state established,related accept
add rule {t} forward jump nets
"""


@record(frozen=True)
class NetRule:
    """The firewall's view of one bridge network."""

    name: str
    bridge: str
    subnet: str
    internal: bool


@record(frozen=True)
class PortRule:
    """One DNAT: ``host_ip:host_port/proto`` -> ``ip:port``; ``host_ip`` "" means every address."""

    host_ip: str
    host_port: int
    container_ip: str
    container_port: int
    proto: str


def _q(text: str) -> str:
    return '"' + text.replace('"', "") + '"'


def _nft(script: str, *args: str, table: str = f"{FAMILY} {TABLE}") -> str:
    exe = shutil.which("nft") or "/usr/sbin/nft"
    try:
        proc = subprocess.run([exe, *args, "-f", "-"], input=script, capture_output=True,
                              text=True, check=False)
    except OSError as exc:
        raise RuntimeFailure(f"cannot run nft: {exc.strerror}") from exc
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["failed"])[0]
        raise RuntimeFailure(f"nft table {table}: {first}")
    return proc.stdout


def _list(*what: str) -> dict:
    exe = shutil.which("nft") or "/usr/sbin/nft"
    proc = subprocess.run([exe, "-j", "-a", "list", *what], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        return {"nftables": []}
    return json.loads(proc.stdout or '{"nftables": []}')


class Firewall:
    """The ``inet portside`` table; every method is idempotent.

    Args:
        table: the table's name in family ``inet``; ``portside`` except in tests.
    """

    def __init__(self, table: str = TABLE) -> None:
        self.table = table
        self.t = f"{FAMILY} {table}"

    def ensure_base(self) -> None:
        """Create the table and its chains if missing (the hook chains are rewritten)."""
        _nft(_base(self.t), table=self.t)

    def sync_networks(self, networks: Sequence[NetRule]) -> None:
        """Rewrite the per-network rules from ``networks`` in one transaction.

        Raises:
            RuntimeFailure: nft rejected the script.
        """
        lines = [_base(self.t), f"flush chain {self.t} masq", f"flush chain {self.t} nets"]
        bridges = [n.bridge for n in networks]
        for net in networks:
            br = _q(net.bridge)
            others = [b for b in bridges if b != net.bridge]
            lines.append(f"add rule {self.t} nets iifname {br} oifname {br} accept")
            if others:
                group = "{ " + ", ".join(_q(b) for b in others) + " }"
                lines.append(f"add rule {self.t} nets iifname {br} oifname {group} drop")
            if net.internal:
                lines.append(f"add rule {self.t} nets iifname {br} drop")
                lines.append(f"add rule {self.t} nets oifname {br} drop")
                continue
            lines.append(f"add rule {self.t} nets oifname {br} ct status dnat accept")
            lines.append(f"add rule {self.t} nets iifname {br} accept")
            lines.append(f"add rule {self.t} nets oifname {br} drop")
            lines.append(f"add rule {self.t} masq ip saddr {net.subnet} oifname != {br} "
                         f"masquerade")
            lines.append(f"add rule {self.t} masq ip saddr 127.0.0.0/8 oifname {br} "
                         f"masquerade")
        _nft("\n".join(lines) + "\n", table=self.t)

    def add_ports(self, container_id: str, rules: Iterable[PortRule]) -> None:
        """Append the DNAT rules of one container, commented ``ctr=<id>``.

        Raises:
            RuntimeFailure: nft rejected the script.
        """
        lines = []
        for r in rules:
            match = f"ip daddr {r.host_ip} " if r.host_ip else "meta nfproto ipv4 "
            lines.append(f"add rule {self.t} ports {match}{r.proto} dport {r.host_port} "
                         f"dnat ip to {r.container_ip}:{r.container_port} "
                         f"comment {_q('ctr=' + container_id)}")
        if lines:
            _nft(_base(self.t) + "\n".join(lines) + "\n", table=self.t)

    def port_handles(self) -> dict[str, list[int]]:
        """Rule handles in the ``ports`` chain by container id (from the ``ctr=`` comments)."""
        out: dict[str, list[int]] = {}
        for item in _list("chain", FAMILY, self.table, "ports").get("nftables", []):
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
            _nft("".join(f"delete rule {self.t} ports handle {h}\n" for h in handles),
                 table=self.t)
        return len(handles)

    def exists(self) -> bool:
        """True when the table is present."""
        return bool(_list("table", FAMILY, self.table).get("nftables"))

    def delete_table(self) -> None:
        """Remove the whole table (``system reset``); idempotent."""
        if self.exists():
            _nft(f"delete table {self.t}\n", table=self.t)
