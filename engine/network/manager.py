"""Networks and per-container network sandboxes: the one entry point the engine calls.

Vocabulary:

*network*
    a named bridge network (``bridge`` is the default one, on ``portside0``): a Linux bridge, an
    IPv4 subnet whose first address is the bridge's, and nftables rules (NAT out unless
    ``internal``). Recorded in ``net_networks``.
*sandbox*
    a container's network namespace, ``/run/netns/portside-<id12>``, made *before* the container
    exists so the OCI runtime can join it by path. Recorded in ``net_sandboxes`` with the
    container's name, hostname, ``--add-host`` and ``--dns`` values.
*endpoint* (= lease)
    one veth pair joining a sandbox to a network: ``eth<N>`` inside, ``psv<hash>`` on the bridge,
    with an address from IPAM. Recorded in ``net_leases``.
*published port*
    a DNAT rule from a host port to the container's address on its first network
    (``net_ports``; see :mod:`.ports` and :mod:`.nft`).

Every verb is written to survive a crash at any point: the store rows are the intent, written
first in one transaction; kernel objects follow; a failure undoes what was made through the same
idempotent :meth:`NetworkManager.detach`, and :meth:`NetworkManager.cleanup_stale` removes what a
killed process left behind (namespaces, veths and rules that no row explains, rows whose container
is gone).

Example::

    mgr = NetworkManager(db, root / "run")
    att = mgr.attach(cid, "web", ["bridge"], parse_publish("127.0.0.1:8080:80"), hostname="web")
    # runtime: join att.netns_path, bind-mount att.etc_files onto /etc/{hosts,hostname,resolv.conf}
    mgr.detach(cid)
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

from portside.engine.errors import (AlreadyExists, Conflict, InvalidArgument, NotFound,
                                    RuntimeFailure)
from portside.engine.store.db import Database

from . import bridge as br
from . import files, ipam
from . import netns as ns
from .nft import Firewall, NetRule, PortRule
from .ports import PortSpec, reserve
from portside.engine.records import field, record

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    import builtins
    from typing import Any, Callable, Iterable, Sequence


Database.register_schema("network", ipam.SCHEMA)

DEFAULT_NETWORK = "bridge"
PREDEFINED = ("bridge", "host", "none")
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


@record
class Attachment:
    """What the runtime needs to put a container on the network.

    ``netns_path`` is None for ``--network host``; ``ips`` maps network name to address;
    ``etc_files`` maps ``/etc/hosts``, ``/etc/hostname``, ``/etc/resolv.conf`` to host files to
    bind-mount.
    """

    container_id: str
    mode: str
    netns_path: str | None
    ips: dict[str, str] = field(default_factory=dict)
    macs: dict[str, str] = field(default_factory=dict)
    ports: list[PortSpec] = field(default_factory=list)
    etc_files: dict[str, Path] = field(default_factory=dict)


_calls = threading.local()


def _netlink_call(method, args, kwargs):
    """Call ``method``; when the outermost such call of a thread other than the main one ends,
    that thread's netlink socket is closed (see :class:`~.bridge.HostLinks`)."""
    depth = getattr(_calls, "depth", 0)
    _calls.depth = depth + 1
    try:
        return method(*args, **kwargs)
    finally:
        _calls.depth = depth
        links = getattr(args[0], "links", None) if args else None
        if depth == 0 and isinstance(links, br.HostLinks):
            links.release_thread()


_here = threading.local()


def _off_event_loop(method):
    """Run a netlink-using method in a worker thread when this thread runs an asyncio loop, or
    when the manager's networks live in another network namespace than this thread's.

    pyroute2's synchronous API drives its own event loop, which fails inside a thread that
    already runs one (a Jupyter kernel's main thread); a short-lived thread sidesteps that.
    A thread other than the main one closes its netlink socket when the call is done. A manager
    with a ``home`` (rootless: the user's network namespace, see
    :mod:`portside.engine.rootless.netns`) does all its kernel work in a thread that joined it
    first; what that thread starts (namespace workers, nft, veth reapers) inherits it.
    """
    import functools

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        home = getattr(args[0], "home", None) if args else None
        if home is not None and getattr(_here, "home", None) is home:
            return method(*args, **kwargs)  # already there (a method calling another)
        asyncio = sys.modules.get("asyncio")
        running = None
        if asyncio is not None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
        if running is None and home is None:
            return _netlink_call(method, args, kwargs)
        box: dict = {}

        def target() -> None:
            try:
                if home is not None:
                    home()
                    _here.home = home
                box["value"] = _netlink_call(method, args, kwargs)
            except BaseException as exc:  # re-raised in the caller's thread
                box["error"] = exc

        worker = threading.Thread(target=target, name="portside-netlink")
        worker.start()
        worker.join()
        if "error" in box:
            raise box["error"]
        return box.get("value")

    return wrapper


class NetworkManager:
    """Bridge networks, sandboxes, endpoints and published ports, backed by the store.

    Args:
        db: the engine's metadata database.
        run_dir: where per-container ``hosts``/``hostname``/``resolv.conf`` files are written
            (``run_dir/net/<container id>/``).
        default_subnet: subnet for the default network (config ``default subnet``); chosen
            automatically when None.
        bridge_name: the default network's bridge.
        nft_table: name of our ``inet`` table; only tests pass another one, so that a test
            store never rewrites the real engine's rules.
        netns_dir: where containers' namespaces are bind-mounted (``/run/netns``).
        home: moves the calling thread into the network namespace where the bridges, veth ends
            and nftables rules live; None: the caller's own (the host's). Rootless, the user's
            network namespace (:func:`portside.engine.rootless.netns.enter_thread`).
        forwarder: with a ``home``, what makes published ports reachable from the host
            (``add(specs)``, ``remove(specs)``, ``rule_host_ip``: the address DNAT rules match
            in the home namespace), see :class:`portside.engine.rootless.netns.Forwarder`.
        usermode_default: the default network ``bridge`` is each container's own user-mode
            network (``slirp4netns`` or ``pasta``, see :mod:`.usermode`), not a bridge: it is
            listed and inspected, never attached or connected here.
        dns_fallback: nameservers for containers' ``resolv.conf`` when the host has no usable one
            (rootless: slirp4netns's resolver, which forwards to the host's loopback one).
    """

    def __init__(self, db: Database, run_dir: Path, *, default_subnet: str | None = None,
                 bridge_name: str = "portside0", nft_table: str = "portside",
                 netns_dir: Path = ns.NETNS_DIR, home: Callable[[], None] | None = None,
                 forwarder: Any = None, usermode_default: str | None = None,
                 dns_fallback: Sequence[str] = ()) -> None:
        self.db = db
        self.run_dir = Path(run_dir)
        self.default_subnet = default_subnet
        self.bridge_name = bridge_name
        self.netns_dir = Path(netns_dir)
        self.home = home
        self.forwarder = forwarder
        self.usermode_default = usermode_default
        self.dns_fallback = list(dns_fallback)
        self.links = br.HostLinks()
        self.firewall = Firewall(nft_table)
        self._synced = False
        self._verified: set[str] = set()
        self._pending: dict[str, threading.Thread] = {}
        self._pending_lock = threading.Lock()

    # ----- networks ---------------------------------------------------------------------------

    def _row(self, name: str) -> Any:
        if self.usermode_default and name == DEFAULT_NETWORK:
            raise InvalidArgument(f"network {DEFAULT_NETWORK}: without root, the default network "
                                  f"is each container's own {self.usermode_default} (no bridge "
                                  f"on the host to join): use a network made with 'network "
                                  f"create'")
        rows = self.db.query("SELECT * FROM net_networks WHERE name=? OR id=?", (name, name))
        if not rows and len(name) >= 3:
            rows = self.db.query("SELECT * FROM net_networks WHERE id LIKE ?", (name + "%",))
            if len(rows) > 1:
                raise InvalidArgument(f"network id prefix is ambiguous: {name}")
        if not rows:
            raise NotFound(f"network {name} not found")
        return rows[0]

    def _sync_firewall(self) -> None:
        rows = self.db.query("SELECT name, bridge, subnet, internal FROM net_networks "
                             "ORDER BY created")
        self.firewall.sync_networks([NetRule(r["name"], r["bridge"], r["subnet"],
                                             bool(r["internal"])) for r in rows])
        self._synced = True

    def _ensure_bridge(self, row: Any, *, force: bool = False) -> None:
        """Make the kernel match a network row (after a reboot the bridge is gone).

        Checked once per process and network; a bridge deleted behind our back later makes
        enslaving fail, and :meth:`_build` then calls this again with ``force``.
        """
        if row["bridge"] in self._verified and not force:
            return
        subnet = ipaddress_net(row["subnet"])
        if force or not self._synced or self.links.index(row["bridge"]) is None:
            self.links.ensure_bridge(row["bridge"], row["gateway"], subnet.prefixlen)
            self._sync_firewall()
        self._verified.add(row["bridge"])

    def _usermode_doc(self) -> dict:
        """``network inspect bridge`` without root: each container's own user-mode network."""
        from . import usermode

        return {"Name": DEFAULT_NETWORK, "Id": DEFAULT_NETWORK, "Created": "", "Scope": "local",
                "Driver": self.usermode_default, "EnableIPv6": False,
                "IPAM": {"Driver": "default", "Options": {},
                         "Config": [{"Subnet": f"10.0.2.0/{usermode.PREFIXLEN}",
                                     "Gateway": usermode.GATEWAY}]},
                "Internal": False, "Attachable": False, "Containers": {},
                "Options": {"portside.network.per-container": "true"}, "Labels": {}}

    def ensure_default(self) -> dict:
        """Create (or repair) the default network ``bridge`` on ``portside0``; without root, only
        its description (each container gets its own user-mode network, see :mod:`.usermode`).

        Returns:
            Its inspect dict.

        Raises:
            Conflict: ``default_subnet`` overlaps a host route or another network.
            RuntimeFailure: the bridge or firewall could not be set up.
        """
        if self.usermode_default:
            return self._usermode_doc()
        return self._ensure_default()

    @_off_event_loop
    def _ensure_default(self) -> dict:
        rows = self.db.query("SELECT * FROM net_networks WHERE name=?", (DEFAULT_NETWORK,))
        if not rows:
            with self.db.transaction() as conn:
                if not conn.execute("SELECT 1 FROM net_networks WHERE name=?",
                                    (DEFAULT_NETWORK,)).fetchone():
                    existing = self._existing(conn)
                    routes = [r for r in ipam.host_routes(exclude_dev=self.bridge_name)
                              if not any(r == s for _, s in existing)]
                    if self.default_subnet:
                        subnet = ipam.parse_subnet(self.default_subnet)
                        ipam.check_overlap(subnet, DEFAULT_NETWORK, existing, routes)
                    else:
                        subnet = ipam.choose_subnet([s for _, s in existing], routes)
                    self._insert(conn, DEFAULT_NETWORK, subnet, self.bridge_name, False, {})
            rows = self.db.query("SELECT * FROM net_networks WHERE name=?", (DEFAULT_NETWORK,))
        self._ensure_bridge(rows[0])
        return self.inspect(DEFAULT_NETWORK)

    @staticmethod
    def _existing(conn: Any) -> list[tuple[str, ipam.IPv4Network]]:
        return [(r["name"], ipaddress_net(r["subnet"]))
                for r in conn.execute("SELECT name, subnet FROM net_networks")]

    @staticmethod
    def _insert(conn: Any, name: str, subnet: ipam.IPv4Network, bridge: str | None,
                internal: bool, labels: dict) -> str:
        net_id = secrets.token_hex(32)
        conn.execute("INSERT INTO net_networks (id, name, subnet, gateway, bridge, internal, "
                     "labels, created) VALUES (?,?,?,?,?,?,?,?)",
                     (net_id, name, str(subnet), str(ipam.gateway_of(subnet)),
                      bridge or br.bridge_name_for(net_id), int(internal), json.dumps(labels),
                      datetime.now(timezone.utc).isoformat()))
        return net_id

    @_off_event_loop
    def create(self, name: str, subnet: str | None = None, internal: bool = False,
               labels: dict[str, str] | None = None) -> dict:
        """Create a user-defined bridge network.

        Args:
            name: unique name, ``[a-zA-Z0-9][a-zA-Z0-9_.-]*``.
            subnet: IPv4 CIDR; chosen from the default pool when None.
            internal: no masquerade, no traffic in or out of the bridge.
            labels: free-form labels.

        Returns:
            The inspect dict.

        Raises:
            InvalidArgument: bad name or subnet.
            AlreadyExists: the name is taken (``bridge``, ``host``, ``none`` are predefined).
            Conflict: the subnet overlaps another network or a host route (nothing is left made).
            RuntimeFailure: the bridge or firewall could not be set up (nothing is left made).
        """
        if not _NAME_RE.match(name):
            raise InvalidArgument(f"invalid network name: {name!r}")
        if name in PREDEFINED:
            raise AlreadyExists(f"network with name {name} already exists")
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM net_networks WHERE name=?", (name,)).fetchone():
                raise AlreadyExists(f"network with name {name} already exists")
            existing = self._existing(conn)
            routes = [r for r in ipam.host_routes() if not any(r == s for _, s in existing)]
            if subnet is not None:
                net = ipam.parse_subnet(subnet)
                ipam.check_overlap(net, name, existing, routes)
            else:
                net = ipam.choose_subnet([s for _, s in existing], routes)
            self._insert(conn, name, net, None, internal, labels or {})
        row = self._row(name)
        try:
            self.links.ensure_bridge(row["bridge"], row["gateway"], net.prefixlen)
            self._sync_firewall()
        except BaseException:
            with self.db.transaction() as conn:
                conn.execute("DELETE FROM net_networks WHERE id=?", (row["id"],))
            self.links.delete(row["bridge"])
            self._sync_firewall()
            raise
        return self.inspect(name)

    @_off_event_loop
    def remove(self, name: str) -> None:
        """Remove a user-defined network.

        Raises:
            NotFound: no such network.
            InvalidArgument: the default network cannot be removed.
            Conflict: containers are still attached (they are named).
        """
        row = self._row(name)
        if row["name"] == DEFAULT_NETWORK:
            raise InvalidArgument(f"{DEFAULT_NETWORK} is a pre-defined network and cannot be "
                                  "removed")
        with self.db.transaction() as conn:
            users = [r["container_id"][:12] for r in conn.execute(
                "SELECT container_id FROM net_leases WHERE network_id=?", (row["id"],))]
            if users:
                raise Conflict(f"network {row['name']} has active endpoints: {', '.join(users)}")
            conn.execute("DELETE FROM net_networks WHERE id=?", (row["id"],))
        self.links.delete(row["bridge"])
        self._verified.discard(row["bridge"])
        self._sync_firewall()

    def list(self) -> list[dict]:
        """Every network's inspect dict, default first."""
        names = [r["name"] for r in self.db.query("SELECT name FROM net_networks ORDER BY "
                                                  "name != ?, name", (DEFAULT_NETWORK,))]
        own = [self._usermode_doc()] if self.usermode_default else []
        return own + [self.inspect(n) for n in names]

    def inspect(self, name: str) -> dict:
        """Docker's ``network inspect`` shape for one network.

        Raises:
            NotFound: ``"network xyz not found"``.
        """
        if self.usermode_default and name == DEFAULT_NETWORK:
            return self._usermode_doc()
        row = self._row(name)
        containers: dict[str, dict] = {}
        prefix = ipaddress_net(row["subnet"]).prefixlen
        for lease in self.db.query(
                "SELECT l.*, s.name AS cname FROM net_leases l LEFT JOIN net_sandboxes s "
                "ON s.container_id = l.container_id WHERE l.network_id=? ORDER BY l.ip",
                (row["id"],)):
            containers[lease["container_id"]] = {
                "Name": lease["cname"] or "",
                "EndpointID": br.host_ifname(lease["container_id"], row["id"]),
                "MacAddress": lease["mac"],
                "IPv4Address": f"{lease['ip']}/{prefix}",
                "IPv6Address": "",
            }
        return {
            "Name": row["name"],
            "Id": row["id"],
            "Created": row["created"],
            "Scope": "local",
            "Driver": "bridge",
            "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": {},
                     "Config": [{"Subnet": row["subnet"], "Gateway": row["gateway"]}]},
            "Internal": bool(row["internal"]),
            "Attachable": False,
            "Containers": containers,
            "Options": {"com.docker.network.bridge.name": row["bridge"]},
            "Labels": json.loads(row["labels"]),
        }

    @_off_event_loop
    def prune(self, keep: Callable[[dict], bool] | None = None) -> builtins.list[str]:
        """Remove every user-defined network with no container attached, but those whose
        :meth:`inspect` document ``keep`` says to keep; returns their names."""
        removed = []
        for row in self.db.query("SELECT name FROM net_networks WHERE name != ? AND id NOT IN "
                                 "(SELECT network_id FROM net_leases)", (DEFAULT_NETWORK,)):
            try:
                if keep is not None and keep(self.inspect(row["name"])):
                    continue
                self.remove(row["name"])
            except (Conflict, NotFound):
                continue  # someone attached or removed it meanwhile
            removed.append(row["name"])
        return removed

    # ----- sandboxes --------------------------------------------------------------------------

    def _etc_dir(self, container_id: str) -> Path:
        return self.run_dir / "net" / container_id

    @_off_event_loop
    def attach(self, container_id: str, name: str,
               networks: Sequence[str] | str = (DEFAULT_NETWORK,),
               ports: Iterable[PortSpec] = (), hostname: str | None = None,
               add_hosts: Iterable[str] = (), dns: Sequence[str] | None = None, *,
               aliases: Sequence[str] = (), dns_search: Sequence[str] | None = None,
               dns_options: Sequence[str] | None = None) -> Attachment:
        """Give a container its network: a namespace, endpoints, published ports and /etc files.

        Args:
            container_id: the container's full id.
            name: the container's name (for peers' /etc/hosts and inspect).
            networks: network names (first gets ``eth0`` and the default route), or ``"none"``
                (loopback only) or ``"host"`` (no namespace: the host's stack).
            ports: parsed ``-p``/``-P`` specs (ignored for ``host`` and ``none``).
            hostname: defaults to the first 12 digits of the id (the host's name with ``host``).
            add_hosts: ``--add-host NAME:IP`` values.
            dns: ``--dns`` servers (replace the host's).
            aliases: extra names peers may use (``--network-alias``).
            dns_search: ``--dns-search``.
            dns_options: ``--dns-option``.

        Returns:
            The :class:`Attachment`; calling again for an attached container returns it as is.

        Raises:
            NotFound: a network does not exist.
            Conflict: a host port is already allocated, or a subnet is full.
            InvalidArgument: bad ``--add-host``/``--dns``/port values.
            RuntimeFailure: the kernel refused something; nothing is left half-made.
        """
        if self.db.query("SELECT 1 FROM net_sandboxes WHERE container_id=?", (container_id,)):
            return self.attachment(container_id)
        if isinstance(networks, str):
            mode = networks if networks in ("host", "none") else "bridge"
            names = [] if mode != "bridge" else [networks]
        else:
            names = list(dict.fromkeys(networks)) or [DEFAULT_NETWORK]
            mode = "bridge"
            if any(n in ("host", "none") for n in names):
                if len(names) > 1:
                    raise InvalidArgument("container cannot be disconnected from host network "
                                          "or connected to host network")
                mode, names = names[0], []
        if mode == "host":
            hostname = hostname or socket.gethostname()
        hostname = hostname or container_id[:12]
        if DEFAULT_NETWORK in names:
            self.ensure_default()
        rows = [self._row(n) for n in names]
        for row in rows:
            self._ensure_bridge(row)
        gateway = rows[0]["gateway"] if rows else None
        parsed_hosts = [files.parse_add_host(h, gateway) for h in add_hosts]
        netns_path = None if mode == "host" else ns.path_for(container_id, self.netns_dir)
        etc_dir = self._etc_dir(container_id)
        wanted = list(ports) if mode == "bridge" else []
        # 1. Intent in the store: sandbox, leases, ports -- all or nothing.
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO net_sandboxes (container_id, name, mode, netns_path, "
                         "hostname, add_hosts, dns, etc_dir) VALUES (?,?,?,?,?,?,?,?)",
                         (container_id, name, mode, str(netns_path) if netns_path else None,
                          hostname, json.dumps(parsed_hosts),
                          json.dumps({"dns": dns, "search": dns_search,
                                      "options": dns_options}), str(etc_dir)))
            for i, row in enumerate(rows):
                ipam.allocate(conn, row["id"], ipaddress_net(row["subnet"]), container_id,
                              f"eth{i}", br.host_ifname(container_id, row["id"]),
                              json.dumps(list(aliases)))
            resolved: list[PortSpec] = []
            if wanted and rows:
                in_use = [PortSpec(r["host_ip"], r["host_port"], r["container_port"], r["proto"])
                          for r in conn.execute("SELECT * FROM net_ports")]
                resolved = reserve(wanted, in_use)
                for p in resolved:
                    conn.execute("INSERT INTO net_ports (container_id, host_ip, host_port, "
                                 "container_port, proto, network_id) VALUES (?,?,?,?,?,?)",
                                 (container_id, p.host_ip, p.host_port, p.container_port,
                                  p.proto, rows[0]["id"]))
        # 2. The kernel and the files; any failure undoes everything through detach().
        try:
            self._build(container_id, mode, netns_path, rows)
            if resolved:
                ip = self._lease(container_id, rows[0]["id"])["ip"]
                rule_ip = (lambda p: self.forwarder.rule_host_ip) if self.forwarder else (
                    lambda p: p.host_ip)
                self.firewall.add_ports(container_id, [
                    PortRule(rule_ip(p), p.host_port or 0, ip, p.container_port, p.proto)
                    for p in resolved])
                if self.forwarder is not None:
                    self.forwarder.add(resolved)
            etc_dir.mkdir(parents=True, exist_ok=True)
            self._write_files(container_id)
            self._refresh_peers(container_id)
        except BaseException:
            self.detach(container_id)
            raise
        return self.attachment(container_id)

    def _lease(self, container_id: str, network_id: str) -> Any:
        rows = self.db.query("SELECT * FROM net_leases WHERE container_id=? AND network_id=?",
                             (container_id, network_id))
        if not rows:
            raise NotFound(f"container {container_id[:12]} is not connected to network "
                           f"{network_id[:12]}")
        return rows[0]

    def _endpoint(self, lease: Any, row: Any) -> br.Endpoint:
        return br.Endpoint(ifname=lease["ifname"], host_ifname=lease["host_ifname"],
                           address=lease["ip"], prefixlen=ipaddress_net(row["subnet"]).prefixlen,
                           gateway=row["gateway"], mac=lease["mac"])

    def _clear_host_end(self, host_ifname: str) -> None:
        """Wait for an in-flight delete of this name, and remove a crash leftover of it."""
        with self._pending_lock:
            pending = self._pending.get(host_ifname)
        if pending is not None:
            pending.join()
        self.links.delete(host_ifname)

    def _make_endpoints(self, path: Path, endpoints: Sequence[br.Endpoint], create: bool) -> builtins.list[int]:
        """Build endpoints inside ``path`` (made first when ``create``); returns host indexes.

        A host-end name left over by a crash (or still being deleted in the background) is
        cleared and the build retried once.
        """
        for attempt in (0, 1):
            host_fd = ns.host_ns_fd()
            try:
                def inside() -> list[int]:
                    if not endpoints:
                        br.loopback_up()
                    return [br.configure_endpoint(ep, host_fd, loopback=create and i == 0)
                            for i, ep in enumerate(endpoints)]

                return ns.run_in(path, inside, create=create,
                                 shared=self.netns_dir == ns.NETNS_DIR)
            except br.HostNameTaken as exc:
                if attempt == 1:
                    raise RuntimeFailure(f"interface name {exc} is still in use") from exc
                if create:
                    ns.remove(path)
                for ep in endpoints:
                    self._clear_host_end(ep.host_ifname)
            finally:
                os.close(host_fd)
        raise AssertionError("unreachable")

    def _build(self, container_id: str, mode: str, netns_path: Path | None,
               rows: Sequence[Any]) -> None:
        if netns_path is None:
            return
        endpoints = [self._endpoint(self._lease(container_id, row["id"]), row) for row in rows]
        if os.path.lexists(netns_path):  # leftover of a crashed attach
            ns.remove(netns_path)
        indexes = self._make_endpoints(netns_path, endpoints, create=True)
        for index, row in zip(indexes, rows):
            try:
                self.links.enslave(index, row["bridge"])
            except RuntimeFailure:
                self._ensure_bridge(row, force=True)
                self.links.enslave(index, row["bridge"])

    def attachment(self, container_id: str) -> Attachment:
        """The :class:`Attachment` of an attached container, rebuilt from the store.

        Raises:
            NotFound: the container has no network sandbox.
        """
        rows = self.db.query("SELECT * FROM net_sandboxes WHERE container_id=?", (container_id,))
        if not rows:
            raise NotFound(f"no network sandbox for container {container_id[:12]}")
        sb = rows[0]
        att = Attachment(container_id, sb["mode"], sb["netns_path"])
        for lease in self.db.query(
                "SELECT l.ip, l.mac, n.name FROM net_leases l JOIN net_networks n "
                "ON n.id = l.network_id WHERE l.container_id=? ORDER BY l.ifname",
                (container_id,)):
            att.ips[lease["name"]] = lease["ip"]
            att.macs[lease["name"]] = lease["mac"]
        att.ports = [PortSpec(r["host_ip"], r["host_port"], r["container_port"], r["proto"])
                     for r in self.db.query("SELECT * FROM net_ports WHERE container_id=? "
                                            "ORDER BY host_port", (container_id,))]
        etc = Path(sb["etc_dir"])
        att.etc_files = {"/etc/hosts": etc / "hosts", "/etc/hostname": etc / "hostname",
                         "/etc/resolv.conf": etc / "resolv.conf"}
        return att

    @_off_event_loop
    def detach(self, container_id: str) -> None:
        """Undo :meth:`attach`: rules, namespace, veths, leases, files; idempotent.

        The host ends of the veth pairs go away with the namespace; the explicit delete that
        makes this deterministic runs on a background thread (see :meth:`wait_idle`).
        """
        sandbox = self.db.query("SELECT * FROM net_sandboxes WHERE container_id=?",
                                (container_id,))
        leases = self.db.query("SELECT * FROM net_leases WHERE container_id=?", (container_id,))
        published = self.db.query("SELECT * FROM net_ports WHERE container_id=?",
                                  (container_id,))
        if published:
            self.firewall.remove_ports(container_id)
            self._unforward(published)
        path = Path(sandbox[0]["netns_path"]) if sandbox and sandbox[0]["netns_path"] else \
            ns.path_for(container_id, self.netns_dir)
        ns.remove(path)
        self._reap([lease["host_ifname"] for lease in leases])
        peers = self._peers_of(container_id)
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM net_ports WHERE container_id=?", (container_id,))
            ipam.release(conn, container_id)
            conn.execute("DELETE FROM net_sandboxes WHERE container_id=?", (container_id,))
        etc = Path(sandbox[0]["etc_dir"]) if sandbox else self._etc_dir(container_id)
        shutil.rmtree(etc, ignore_errors=True)
        self._rewrite_hosts(peers)

    def _unforward(self, rows: Sequence[Any]) -> None:
        if self.forwarder is not None and rows:
            self.forwarder.remove([PortSpec(r["host_ip"], r["host_port"], r["container_port"],
                                            r["proto"]) for r in rows])

    def _reap(self, names: builtins.list[str]) -> None:
        if not names:
            return

        def delete() -> None:
            links = br.HostLinks()
            try:
                for n in names:
                    try:
                        links.delete(n)
                    except RuntimeFailure:
                        pass  # already gone with its namespace; cleanup_stale catches the rest
            finally:
                links.close()
                with self._pending_lock:
                    for n in names:
                        if self._pending.get(n) is threading.current_thread():
                            del self._pending[n]

        # A daemon: if the process exits first, the kernel still removes the pair when the
        # unmounted namespace is destroyed; the explicit delete only makes it prompt.
        thread = threading.Thread(target=delete, name="portside-veth-reaper", daemon=True)
        with self._pending_lock:
            for n in names:
                self._pending[n] = thread
        thread.start()

    def wait_idle(self) -> None:
        """Wait until background veth deletions have finished."""
        with self._pending_lock:
            threads = set(self._pending.values())
        for t in threads:
            t.join()

    def close(self) -> None:
        """Finish background work and close the netlink socket (pyroute2 closes through its
        own event loop: from a thread running one, a notebook's, this happens in a worker)."""
        if self.home is not None:
            # every kernel call ran in a thread that joined the home and closed its own socket
            # there; entering the home now would only start its namespace again (after reset)
            self.wait_idle()
            self.links.close()
            return
        self._close()

    @_off_event_loop
    def _close(self) -> None:
        self.wait_idle()
        self.links.close()

    # ----- connect / disconnect --------------------------------------------------------------

    @_off_event_loop
    def connect(self, network: str, container_id: str, netns_path: str | Path, name: str,
                aliases: Sequence[str] = ()) -> str:
        """Connect a namespace (a running container's) to one more network.

        Args:
            network: network name or id.
            container_id: the container.
            netns_path: its network namespace (``/proc/<pid>/ns/net`` or our sandbox path).
            name: the container's name, for peers' /etc/hosts.
            aliases: extra names for peers.

        Returns:
            The address leased on the network.

        Raises:
            NotFound: no such network.
            Conflict: already connected, or the subnet is full.
            RuntimeFailure: the kernel refused; nothing is left half-made.
        """
        row = self._row(network)
        if row["name"] == DEFAULT_NETWORK:
            self.ensure_default()
        else:
            self._ensure_bridge(row)
        path = Path(netns_path)
        if not path.exists():
            raise NotFound(f"network namespace not found: {path}")
        with self.db.transaction() as conn:
            if not conn.execute("SELECT 1 FROM net_sandboxes WHERE container_id=?",
                                (container_id,)).fetchone():
                conn.execute("INSERT INTO net_sandboxes (container_id, name, mode, netns_path, "
                             "hostname, etc_dir) VALUES (?,?,?,?,?,?)",
                             (container_id, name, "bridge", str(path), container_id[:12],
                              str(self._etc_dir(container_id))))
            used = {r[0] for r in conn.execute("SELECT ifname FROM net_leases WHERE "
                                               "container_id=?", (container_id,))}
            ifname = next(f"eth{i}" for i in range(len(used) + 1) if f"eth{i}" not in used)
            ip = ipam.allocate(conn, row["id"], ipaddress_net(row["subnet"]), container_id,
                               ifname, br.host_ifname(container_id, row["id"]),
                               json.dumps(list(aliases)))
        lease = self._lease(container_id, row["id"])
        ep = self._endpoint(lease, row)
        try:
            index = self._make_endpoints(path, [ep], create=False)[0]
            self.links.enslave(index, row["bridge"])
            self._etc_dir(container_id).mkdir(parents=True, exist_ok=True)
            self._write_files(container_id)
            self._refresh_peers(container_id)
        except BaseException:
            self._disconnect(row, container_id)
            raise
        return str(ip)

    @_off_event_loop
    def disconnect(self, network: str, container_id: str) -> None:
        """Remove a container's endpoint on one network (its other endpoints stay).

        Raises:
            NotFound: no such network, or the container is not connected to it.
        """
        row = self._row(network)
        self._lease(container_id, row["id"])
        self._disconnect(row, container_id)

    def _disconnect(self, row: Any, container_id: str) -> None:
        leases = self.db.query("SELECT * FROM net_leases WHERE container_id=? AND network_id=?",
                               (container_id, row["id"]))
        sandbox = self.db.query("SELECT * FROM net_sandboxes WHERE container_id=?",
                                (container_id,))
        peers = self._peers_of(container_id)
        for lease in leases:
            path = sandbox[0]["netns_path"] if sandbox else None
            if path and os.path.exists(path):
                # Deleting the inner end takes the host end with it, synchronously.
                ns.run_in(Path(path), lambda: br.remove_inside(lease["ifname"]))
            self.links.delete(lease["host_ifname"])
        self._unforward(self.db.query("SELECT * FROM net_ports WHERE container_id=? AND "
                                      "network_id=?", (container_id, row["id"])))
        with self.db.transaction() as conn:
            ipam.release(conn, container_id, row["id"])
            conn.execute("DELETE FROM net_ports WHERE container_id=? AND network_id=?",
                         (container_id, row["id"]))
        if sandbox and Path(sandbox[0]["etc_dir"]).is_dir():
            self._write_files(container_id)
        self._rewrite_hosts(peers)

    # ----- /etc files ------------------------------------------------------------------------

    def _peers_of(self, container_id: str) -> builtins.list[str]:
        """Containers sharing a user-defined network with this one."""
        return [r[0] for r in self.db.query(
            "SELECT DISTINCT b.container_id FROM net_leases a JOIN net_leases b "
            "ON a.network_id = b.network_id JOIN net_networks n ON n.id = a.network_id "
            "WHERE a.container_id=? AND b.container_id != a.container_id AND n.name != ?",
            (container_id, DEFAULT_NETWORK))]

    def _refresh_peers(self, container_id: str) -> None:
        self._rewrite_hosts(self._peers_of(container_id))

    def _rewrite_hosts(self, container_ids: Iterable[str]) -> None:
        for cid in container_ids:
            rows = self.db.query("SELECT etc_dir FROM net_sandboxes WHERE container_id=?",
                                 (cid,))
            if rows and Path(rows[0]["etc_dir"]).is_dir():
                files.write_in_place(Path(rows[0]["etc_dir"]) / "hosts", self._hosts_text(cid))

    def _hosts_text(self, container_id: str) -> str:
        sb = self.db.query("SELECT * FROM net_sandboxes WHERE container_id=?",
                           (container_id,))[0]
        add_hosts = [tuple(x) for x in json.loads(sb["add_hosts"] or "[]")]
        if sb["mode"] == "host":
            return files.host_network_hosts(add_hosts)
        own = [(r["ip"], [sb["hostname"], sb["name"]]) for r in self.db.query(
            "SELECT ip FROM net_leases WHERE container_id=? ORDER BY ifname", (container_id,))]
        peers = []
        for r in self.db.query(
                "SELECT b.ip, b.aliases, b.container_id, s.name FROM net_leases a "
                "JOIN net_leases b ON a.network_id = b.network_id "
                "JOIN net_networks n ON n.id = a.network_id "
                "LEFT JOIN net_sandboxes s ON s.container_id = b.container_id "
                "WHERE a.container_id=? AND b.container_id != a.container_id AND n.name != ? "
                "ORDER BY b.ip", (container_id, DEFAULT_NETWORK)):
            peers.append((r["ip"], [r["name"] or "", *json.loads(r["aliases"]),
                                    r["container_id"][:12]]))
        return files.hosts_content(own, add_hosts, peers)

    def _write_files(self, container_id: str) -> None:
        sb = self.db.query("SELECT * FROM net_sandboxes WHERE container_id=?",
                           (container_id,))[0]
        etc = Path(sb["etc_dir"])
        dns = json.loads(sb["dns"] or "{}")
        files.write_in_place(etc / "hostname", files.hostname_content(sb["hostname"]))
        files.write_in_place(etc / "hosts", self._hosts_text(container_id))
        if sb["mode"] == "host" and not dns.get("dns"):
            text = files.HOST_RESOLV.read_text() if files.HOST_RESOLV.exists() else ""
        else:
            text = files.resolv_conf_content(dns.get("dns"), dns.get("search"),
                                             dns.get("options"), fallback=self.dns_fallback)
        files.write_in_place(etc / "resolv.conf", text)

    # ----- crash repair ----------------------------------------------------------------------

    @_off_event_loop
    def cleanup_stale(self, alive_ids: Iterable[str]) -> builtins.list[str]:
        """Remove what dead containers and killed processes left behind.

        Detaches every sandbox whose container is not in ``alive_ids``, then removes kernel
        objects no row explains: ``/run/netns/portside-*`` files, ``psv*`` veth ends, and
        ``ctr=`` rules in our table.

        Args:
            alive_ids: full ids of containers that exist and may be running.

        Returns:
            What was removed: container ids, namespace and interface names.
        """
        alive = set(alive_ids)
        removed: list[str] = []
        for r in self.db.query("SELECT container_id FROM net_sandboxes"):
            if r["container_id"] not in alive:
                self.detach(r["container_id"])
                removed.append(r["container_id"])
        for r in self.db.query("SELECT DISTINCT container_id FROM net_leases WHERE container_id "
                               "NOT IN (SELECT container_id FROM net_sandboxes)"):
            if r["container_id"] not in alive:
                self.detach(r["container_id"])
                removed.append(r["container_id"])
        paths = {r["netns_path"] for r in self.db.query("SELECT netns_path FROM net_sandboxes")}
        for p in ns.list_ours(self.netns_dir):
            if str(p) not in paths:
                ns.remove(p)
                removed.append(p.name)
        known = {r["host_ifname"] for r in self.db.query("SELECT host_ifname FROM net_leases")}
        self.wait_idle()
        for name in self.links.names(br.VETH_PREFIX):
            if name not in known and self.links.delete(name):
                removed.append(name)
        if self.firewall.exists():
            sandboxes = {r["container_id"] for r in self.db.query(
                "SELECT container_id FROM net_ports")}
            for cid in self.firewall.port_handles():
                if cid not in sandboxes:
                    self.firewall.remove_ports(cid)
                    removed.append(f"ctr={cid[:12]}")
        return removed


def ipaddress_net(text: str) -> ipam.IPv4Network:
    """Parse a stored subnet."""
    return ipam.IPv4Network(text)


__all__ = ["Attachment", "NetworkManager", "DEFAULT_NETWORK"]
