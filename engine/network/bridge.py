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
(:func:`.netns.run_in`). Both map netlink errors to :class:`RuntimeFailure` naming the interface.
"""

from __future__ import annotations

import errno
import hashlib
import threading
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from portside.engine.errors import RuntimeFailure
from portside.engine.records import record

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


@record(frozen=True)
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
    with IPRoute() as ipr:
        try:
            if loopback:
                ipr.link("set", index=1, state="up")
            try:
                ipr.link("add", ifname=ep.ifname, kind="veth", address=ep.mac, mtu=ep.mtu,
                         state="up",
                         peer={"ifname": ep.host_ifname, "net_ns_fd": host_fd, "mtu": ep.mtu})
            except NetlinkError as exc:
                if exc.code == errno.EEXIST:
                    raise HostNameTaken(ep.host_ifname) from exc
                raise
            link = ipr.link("get", ifname=ep.ifname)[0]
            ipr.addr("add", index=link["index"], address=ep.address, prefixlen=ep.prefixlen)
            if ep.gateway is not None and ep.ifname == "eth0":
                try:
                    ipr.route("add", dst="0.0.0.0/0", gateway=ep.gateway)
                except NetlinkError as exc:
                    # a namespace connected later that has a default route already (a rootless
                    # container's slirp4netns): it keeps it, as Docker keeps the first network's
                    if exc.code != errno.EEXIST:
                        raise
            return int(link.get_attr("IFLA_LINK"))
        except NetlinkError as exc:
            raise RuntimeFailure(f"cannot configure {ep.ifname} ({ep.host_ifname}): "
                                 f"{exc.args[1] if len(exc.args) > 1 else exc}") from exc


def loopback_up() -> None:
    """Inside a namespace worker: bring ``lo`` up (``--network none`` has nothing else)."""
    with IPRoute() as ipr:
        ipr.link("set", index=1, state="up")


def remove_inside(ifname: str) -> None:
    """Inside a namespace worker: delete an interface (and so its veth peer); idempotent."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if found:
            try:
                ipr.link("del", index=found[0])
            except NetlinkError as exc:
                if exc.code != errno.ENODEV:
                    raise


class HostLinks:
    """Host-side link operations over a netlink socket, opened lazily.

    pyroute2 keeps an IPRoute's event loop, transport and socket per thread, and ``close()``
    frees only the calling thread's. So the main thread keeps one socket for the process's life
    (a CLI command makes several calls), while any other thread (a server's worker, the
    short-lived thread that keeps netlink off a notebook's event loop) gets its own, which it
    closes with :meth:`release_thread` when its call is done.
    """

    def __init__(self) -> None:
        self._ipr: IPRoute | None = None
        self._local = threading.local()
        self._bridges: dict[str, int] = {}

    @property
    def ipr(self) -> IPRoute:
        if threading.current_thread() is threading.main_thread():
            if self._ipr is None:
                self._ipr = IPRoute()
            return self._ipr
        ipr = getattr(self._local, "ipr", None)
        if ipr is None:
            ipr = self._local.ipr = IPRoute()
        return ipr

    def release_thread(self) -> None:
        """Close this thread's netlink socket (not the main thread's: see the class)."""
        ipr = getattr(self._local, "ipr", None)
        if ipr is not None:
            self._local.ipr = None
            ipr.close()

    def close(self) -> None:
        """Close the netlink sockets this thread can close."""
        self.release_thread()
        if self._ipr is not None and threading.current_thread() is threading.main_thread():
            self._ipr.close()
            self._ipr = None

    def index(self, ifname: str) -> int | None:
        """The interface index of ``ifname`` on the host, or None."""
        try:
            return int(self.ipr.link("get", ifname=ifname)[0]["index"])
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
                    self.ipr.link("add", ifname=name, kind="bridge")
                except NetlinkError as exc:
                    if exc.code != errno.EEXIST:  # another process won the race
                        raise
                index = self.index(name)
                assert index is not None
            have = {a.get_attr("IFA_ADDRESS") for a in self.ipr.get_addr(index=index)}
            if gateway not in have:
                try:
                    self.ipr.addr("add", index=index, address=gateway, prefixlen=prefixlen)
                except NetlinkError as exc:
                    if exc.code != errno.EEXIST:
                        raise
            self.ipr.link("set", index=index, state="up")
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
            self.ipr.link("del", index=index)
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
                self.ipr.link("set", index=index, master=master, state="up")
                return
            except NetlinkError as exc:
                self._bridges.pop(bridge, None)
                if attempt == 1:
                    raise RuntimeFailure(f"cannot attach interface {index} to bridge {bridge}: "
                                         f"{exc}") from exc

    def names(self, prefix: str) -> list[str]:
        """Host interface names that start with ``prefix``."""
        out = []
        for link in self.ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if name and name.startswith(prefix):
                out.append(name)
        return out
