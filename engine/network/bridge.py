"""Linux bridges and veth pairs: the wiring between a container and the host.

A *bridge* is a virtual switch on the host. Each bridge network owns one (``portside0`` for the
default network ``bridge``, ``ps-<id12>`` for user networks) and the bridge carries the network's
gateway address, so the host is a router for every container behind it.

A *veth pair* is a virtual cable: two interfaces, and what enters one leaves the other. The engine
creates the pair from *inside* the container's namespace, naming its end ``eth0`` there and placing
the peer straight into the host namespace (``IFLA_NET_NS_FD``) under a name like
``psv<id10><n>``; the host end is then enslaved to the bridge. Creating the pair in place costs one
netlink request, where creating both ends on the host and moving one costs two and a rename.

Everything that touches the host's links lives in :class:`HostLinks` (one netlink socket in the
caller's thread); :func:`configure_endpoint` runs inside a namespace worker
(:func:`.netns.run_in`). Both talk netlink through :mod:`.netlink` and map its errors to
:class:`RuntimeFailure` naming the interface.
"""

from __future__ import annotations

import errno
import hashlib
from dataclasses import dataclass
from pathlib import Path

from portside.engine.errors import RuntimeFailure

from .netlink import RTNL, NetlinkError

VETH_PREFIX = "psv"
BRIDGE_PREFIX = "ps-"
SYSCTL = Path("/proc/sys/net")
IFNAMSIZ = 15  # the kernel's limit on interface names, without the terminating NUL


def host_ifname(container_id: str, network_id: str) -> str:
    """The host end's name: ``psv`` + 12 hex digits of hash(container, network); 15 chars max."""
    digest = hashlib.sha256(f"{container_id}/{network_id}".encode()).hexdigest()
    return f"{VETH_PREFIX}{digest[:IFNAMSIZ - len(VETH_PREFIX)]}"


def bridge_name_for(network_id: str) -> str:
    """A user network's bridge name: ``ps-<id12>`` (IFNAMSIZ allows 15 characters)."""
    return f"{BRIDGE_PREFIX}{network_id[:IFNAMSIZ - len(BRIDGE_PREFIX)]}"


def write_sysctl(key: str, value: str) -> None:
    """Write ``net.<key>`` (``key`` like ``ipv4/ip_forward``); raises RuntimeFailure on error."""
    path = SYSCTL / key
    try:
        if path.read_text().strip() != value:
            path.write_text(value)
    except OSError as exc:
        raise RuntimeFailure(f"cannot set net.{key.replace('/', '.')}: {exc.strerror}") from exc


@dataclass(frozen=True)
class Endpoint:
    """What :func:`configure_endpoint` builds inside a namespace."""

    ifname: str
    host_ifname: str
    address: str
    prefixlen: int
    gateway: str | None
    mac: str
    mtu: int = 1500


class HostNameTaken(Exception):
    """The host end's name already exists on the host (a leftover); the caller clears and retries."""


def configure_endpoint(ep: Endpoint, host_fd: int, loopback: bool) -> int:
    """Inside a namespace worker: create the veth pair, address it and route through the gateway.

    Args:
        ep: the endpoint to build.
        host_fd: an open fd of the host namespace, where the peer end goes.
        loopback: also bring ``lo`` up (first endpoint of a fresh namespace).

    Returns:
        The host end's interface index (the inner end's ``IFLA_LINK``), so the host side needs no
        lookup by name.

    Raises:
        HostNameTaken: ``ep.host_ifname`` already exists on the host.
        RuntimeFailure: a netlink request failed.
    """
    with RTNL() as nl:
        try:
            if loopback:
                nl.link_set(1, up=True)
            try:
                nl.link_add_veth(ep.ifname, ep.host_ifname, peer_netns_fd=host_fd, mac=ep.mac,
                                 mtu=ep.mtu, up=True)
            except NetlinkError as exc:
                if exc.code == errno.EEXIST:
                    raise HostNameTaken(ep.host_ifname) from exc
                raise
            link = nl.link_get(ep.ifname)
            nl.addr_add(link.index, ep.address, ep.prefixlen)
            if ep.gateway is not None and ep.ifname == "eth0":
                nl.route_add_default(ep.gateway)
            return int(link.link or 0)
        except NetlinkError as exc:
            raise RuntimeFailure(f"cannot configure {ep.ifname} ({ep.host_ifname}): "
                                 f"{exc.args[1] if len(exc.args) > 1 else exc}") from exc


def existing_subnet(name: str) -> str | None:
    """The IPv4 subnet on the host interface ``name`` (a bridge another state root made), or
    None when there is no such interface or it has no IPv4 address."""
    import ipaddress

    with RTNL() as nl:
        index = nl.link_lookup(name)
        if not index:
            return None
        for ip, prefixlen in nl.addresses(index[0], with_prefix=True):
            return str(ipaddress.ip_interface(f"{ip}/{prefixlen}").network)
    return None


def loopback_up() -> None:
    """Inside a namespace worker: bring ``lo`` up (``--network none`` has nothing else)."""
    with RTNL() as nl:
        nl.link_set(1, up=True)


def remove_inside(ifname: str) -> None:
    """Inside a namespace worker: delete an interface (and so its veth peer); idempotent."""
    with RTNL() as nl:
        found = nl.link_lookup(ifname)
        if found:
            try:
                nl.link_del(found[0])
            except NetlinkError as exc:
                if exc.code != errno.ENODEV:
                    raise


class HostLinks:
    """Host-side link operations over one netlink socket (opened lazily in the caller's thread)."""

    def __init__(self) -> None:
        self._nl: RTNL | None = None
        self._bridges: dict[str, int] = {}

    @property
    def nl(self) -> RTNL:
        if self._nl is None:
            self._nl = RTNL()
        return self._nl

    def close(self) -> None:
        """Close the netlink socket."""
        if self._nl is not None:
            self._nl.close()
            self._nl = None

    def index(self, ifname: str) -> int | None:
        """The interface index of ``ifname`` on the host, or None."""
        try:
            return self.nl.link_get(ifname).index
        except NetlinkError as exc:
            if exc.code in (errno.ENODEV, errno.ENOENT):
                return None
            raise RuntimeFailure(f"cannot look up interface {ifname}: {exc}") from exc

    def ensure_bridge(self, name: str, gateway: str, prefixlen: int) -> None:
        """Create bridge ``name`` with ``gateway/prefixlen`` and bring it up; idempotent.

        Also sets ``route_localnet`` on it, so DNAT of host connections to 127.0.0.1:PORT may
        route out through the bridge, and turns on IPv4 forwarding.

        Raises:
            RuntimeFailure: netlink or sysctl failed.
        """
        try:
            index = self.index(name)
            if index is None:
                try:
                    self.nl.link_add_bridge(name)
                except NetlinkError as exc:
                    if exc.code != errno.EEXIST:  # another process won the race
                        raise
                index = self.index(name)
                assert index is not None
            if gateway not in self.nl.addresses(index):
                try:
                    self.nl.addr_add(index, gateway, prefixlen)
                except NetlinkError as exc:
                    if exc.code != errno.EEXIST:
                        raise
            self.nl.link_set(index, up=True)
        except NetlinkError as exc:
            raise RuntimeFailure(f"cannot set up bridge {name}: {exc}") from exc
        write_sysctl(f"ipv4/conf/{name}/route_localnet", "1")
        write_sysctl("ipv4/ip_forward", "1")

    def delete(self, ifname: str) -> bool:
        """Delete a host interface (bridge or veth end); idempotent; True when it existed."""
        index = self.index(ifname)
        if index is None:
            return False
        self._bridges.pop(ifname, None)
        try:
            self.nl.link_del(index)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return False
            raise RuntimeFailure(f"cannot delete interface {ifname}: {exc}") from exc
        return True

    def enslave(self, index: int, bridge: str) -> None:
        """Attach a host veth end (by index) to a bridge and bring it up.

        The bridge's index is cached; a stale cache (bridge re-made) is retried once.

        Raises:
            RuntimeFailure: either interface is missing or netlink failed.
        """
        for attempt in (0, 1):
            master = self._bridges.get(bridge) if attempt == 0 else None
            if master is None:
                master = self.index(bridge)
                if master is None:
                    raise RuntimeFailure(f"cannot attach interface {index} to bridge {bridge}: "
                                         "no such bridge")
                self._bridges[bridge] = master
            try:
                self.nl.link_set(index, master=master, up=True)
                return
            except NetlinkError as exc:
                self._bridges.pop(bridge, None)
                if attempt == 1:
                    raise RuntimeFailure(f"cannot attach interface {index} to bridge {bridge}: "
                                         f"{exc}") from exc

    def names(self, prefix: str) -> list[str]:
        """Host interface names that start with ``prefix``."""
        return [link.ifname for link in self.nl.links() if link.ifname.startswith(prefix)]
