"""IP address management: which subnet a network gets and which address a container gets.

Two decisions, both recorded in the engine's SQLite store so that every process sharing a root
agrees on them:

*Subnets.* A bridge network owns an IPv4 subnet; its first host address is the gateway (the
bridge's own address on the host). A new network must not overlap any route the host already has
(its uplink, a VPN, another engine's bridge: podman's 10.88.0.0/16, Docker's 172.17.0.0/16) nor any
network the engine already made. :func:`choose_subnet` walks a list of candidates (10.89.0.0/24,
10.89.1.0/24, ... then 172.30.0.0/24, ...) and returns the first free one; an explicit ``--subnet``
is checked by :func:`check_overlap`.

*Leases.* A lease is a row ``(network_id, ip, container_id)`` in ``net_leases``; the primary key
``(network_id, ip)`` makes a double allocation impossible even with two writers, because both run
inside ``BEGIN IMMEDIATE`` transactions. :func:`allocate` takes the lowest free address above the
gateway; :func:`release` deletes the rows. The lease table doubles as the endpoint table: it also
keeps the interface names and MAC address the manager chose.
"""

from __future__ import annotations

import ipaddress
import socket
import sqlite3

from portside.engine.errors import Conflict, InvalidArgument

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Iterable, Iterator


IPv4Network = ipaddress.IPv4Network
IPv4Address = ipaddress.IPv4Address

#: Other engines' default networks; avoided even when they are not routed right now.
RESERVED = (IPv4Network("10.88.0.0/16"), IPv4Network("172.17.0.0/16"))

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS net_networks (
        id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, subnet TEXT NOT NULL,
        gateway TEXT NOT NULL, bridge TEXT UNIQUE NOT NULL, internal INTEGER NOT NULL DEFAULT 0,
        labels TEXT NOT NULL DEFAULT '{}', created TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS net_leases (
        network_id TEXT NOT NULL, ip TEXT NOT NULL, container_id TEXT NOT NULL,
        ifname TEXT NOT NULL, host_ifname TEXT NOT NULL, mac TEXT NOT NULL,
        aliases TEXT NOT NULL DEFAULT '[]',
        PRIMARY KEY (network_id, ip), UNIQUE (network_id, container_id))""",
    """CREATE TABLE IF NOT EXISTS net_sandboxes (
        container_id TEXT PRIMARY KEY, name TEXT NOT NULL, mode TEXT NOT NULL,
        netns_path TEXT, hostname TEXT NOT NULL, add_hosts TEXT NOT NULL DEFAULT '[]',
        dns TEXT, etc_dir TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS net_ports (
        container_id TEXT NOT NULL, host_ip TEXT NOT NULL, host_port INTEGER NOT NULL,
        container_port INTEGER NOT NULL, proto TEXT NOT NULL, network_id TEXT NOT NULL,
        PRIMARY KEY (host_ip, host_port, proto))""",
]


def candidates() -> Iterator[IPv4Network]:
    """The default pool, in order: 10.89.0.0/24 .. 10.89.255.0/24, then 172.30.0.0/24 .. 172.31.255.0/24."""
    for third in range(256):
        yield IPv4Network(f"10.89.{third}.0/24")
    for second in (30, 31):
        for third in range(256):
            yield IPv4Network(f"172.{second}.{third}.0/24")


def host_routes(exclude_dev: str | None = None) -> list[IPv4Network]:
    """IPv4 destinations the host routes now (every table but ``local``), default route excluded.

    ``exclude_dev`` leaves out routes through that interface (our own bridge, which another state
    root on the same host may already have set up).

    This is the kernel seam: unit tests pass route lists to :func:`choose_subnet` directly.
    """
    from pyroute2 import IPRoute  # imported here: only network commands pay for pyroute2

    nets: list[IPv4Network] = []
    with IPRoute() as ipr:
        skip = ipr.link_lookup(ifname=exclude_dev) if exclude_dev else []
        for route in ipr.route("dump", family=socket.AF_INET):
            if skip and route.get_attr("RTA_OIF") in skip:
                continue
            if (route.get_attr("RTA_TABLE") or route.get("table")) == 255:
                continue
            dst_len = route.get("dst_len")
            if not dst_len:
                continue
            dst = route.get_attr("RTA_DST")
            if dst:
                nets.append(IPv4Network(f"{dst}/{dst_len}", strict=False))
    return nets


def check_overlap(subnet: IPv4Network, name: str,
                  existing: Iterable[tuple[str, IPv4Network]],
                  routes: Iterable[IPv4Network] = ()) -> None:
    """Refuse a subnet that overlaps another network of ours or a host route.

    Args:
        subnet: the requested subnet.
        name: the network being created (for the message).
        existing: ``(name, subnet)`` of the engine's networks.
        routes: the host's routed destinations.

    Raises:
        Conflict: one line naming both sides, e.g.
            ``"subnet 10.89.0.0/24 of network net1 overlaps 10.89.0.0/16 of network bridge"``.
    """
    for other_name, other in existing:
        if subnet.overlaps(other):
            raise Conflict(f"subnet {subnet} of network {name} overlaps {other} "
                           f"of network {other_name}")
    for route in routes:
        if subnet.overlaps(route):
            raise Conflict(f"subnet {subnet} of network {name} overlaps host route {route}")


def parse_subnet(text: str) -> IPv4Network:
    """Parse ``--subnet``; host bits must be zero and the prefix at most /30.

    Raises:
        InvalidArgument: not an IPv4 CIDR, host bits set, or too small for a gateway and a host.
    """
    try:
        net = IPv4Network(text)
    except ValueError as exc:
        raise InvalidArgument(f"invalid subnet: {text}") from exc
    if net.prefixlen > 30:
        raise InvalidArgument(f"subnet too small: {text}")
    return net


def choose_subnet(existing: Iterable[IPv4Network], routes: Iterable[IPv4Network],
                  pool: Iterable[IPv4Network] | None = None) -> IPv4Network:
    """Pick the first candidate that overlaps no existing network, host route or reserved range.

    Args:
        existing: subnets of the engine's networks.
        routes: the host's routed destinations (:func:`host_routes`).
        pool: candidates to try, :func:`candidates` by default.

    Returns:
        A free subnet.

    Raises:
        Conflict: every candidate is taken.
    """
    taken = list(existing) + list(routes) + list(RESERVED)
    for net in pool if pool is not None else candidates():
        if not any(net.overlaps(t) for t in taken):
            return net
    raise Conflict("no free subnet left in the default pool")


def gateway_of(subnet: IPv4Network) -> IPv4Address:
    """The first host address: the bridge's own address and every container's default route."""
    return subnet.network_address + 1


def mac_for(ip: IPv4Address) -> str:
    """A locally administered MAC derived from the address (02:42 prefix as Docker), stable per IP."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


def allocate(conn: sqlite3.Connection, network_id: str, subnet: IPv4Network,
             container_id: str, ifname: str, host_ifname: str,
             aliases: str = "[]", requested: str | None = None) -> IPv4Address:
    """Lease the lowest free address of ``subnet`` (or ``requested``) to a container.

    Must run inside the caller's write transaction so the choice and the insert are atomic.

    Args:
        conn: connection inside ``db.transaction()``.
        network_id: the network's id.
        subnet: the network's subnet.
        container_id: the lease holder.
        ifname: interface name inside the namespace (``eth0``).
        host_ifname: the host end of the veth pair.
        aliases: JSON list of extra names.
        requested: a fixed address (``--ip``).

    Returns:
        The leased address.

    Raises:
        Conflict: the subnet is full, the requested address is taken, or the container already
            holds a lease on this network.
    """
    row = conn.execute("SELECT ip FROM net_leases WHERE network_id=? AND container_id=?",
                       (network_id, container_id)).fetchone()
    if row is not None:
        raise Conflict(f"container {container_id[:12]} is already attached to network "
                       f"{network_id[:12]}")
    used = {r[0] for r in conn.execute("SELECT ip FROM net_leases WHERE network_id=?",
                                       (network_id,))}
    gateway = gateway_of(subnet)
    if requested is not None:
        ip = IPv4Address(requested)
        if ip not in subnet or ip in (gateway, subnet.network_address, subnet.broadcast_address):
            raise InvalidArgument(f"address {ip} is not usable in subnet {subnet}")
        if str(ip) in used:
            raise Conflict(f"address already in use: {ip}")
    else:
        for ip in subnet.hosts():
            if ip != gateway and str(ip) not in used:
                break
        else:
            raise Conflict(f"no free address left in subnet {subnet}")
    conn.execute("INSERT INTO net_leases (network_id, ip, container_id, ifname, host_ifname, mac,"
                 " aliases) VALUES (?,?,?,?,?,?,?)",
                 (network_id, str(ip), container_id, ifname, host_ifname, mac_for(ip), aliases))
    return ip


def release(conn: sqlite3.Connection, container_id: str, network_id: str | None = None) -> int:
    """Delete a container's leases (on one network or all); returns how many were held."""
    if network_id is None:
        cur = conn.execute("DELETE FROM net_leases WHERE container_id=?", (container_id,))
    else:
        cur = conn.execute("DELETE FROM net_leases WHERE container_id=? AND network_id=?",
                           (container_id, network_id))
    return cur.rowcount
