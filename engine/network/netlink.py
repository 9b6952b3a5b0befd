"""A minimal rtnetlink client: the dozen link, address and route requests the engine makes.

The kernel configures interfaces through *netlink*: a datagram socket (``AF_NETLINK``,
``NETLINK_ROUTE``) over which a process sends requests such as "create a veth pair" or "add this
address" and reads the answers. Every message starts with a 16-byte header (``nlmsghdr``: length,
type, flags, sequence number, port id); a routing message adds a fixed family header
(``ifinfomsg`` for links, ``ifaddrmsg`` for addresses, ``rtmsg`` for routes) followed by
type-length-value *attributes* (``rtattr``), each padded to 4 bytes, which may nest::

    RTM_NEWLINK  ifinfomsg{flags=IFF_UP}  IFLA_IFNAME "eth0"  IFLA_LINKINFO{
        IFLA_INFO_KIND "veth"  IFLA_INFO_DATA{ VETH_INFO_PEER ifinfomsg IFLA_IFNAME "psv…"
                                                              IFLA_NET_NS_FD 7 } }

A request with ``NLM_F_ACK`` is answered by an ``NLMSG_ERROR`` message whose error is 0 on success
or ``-errno``; a ``NLM_F_DUMP`` request by a series of messages ended by ``NLMSG_DONE``.

pyroute2 does all of this and much more, but importing it costs about a quarter of a second,
more than the rest of ``portside run`` together; these requests are all a container's network
needs. A socket belongs to the network namespace of the thread that opened it, so the namespace
workers of :mod:`.netns` open their own.

Errors are :class:`NetlinkError` (an ``OSError`` whose ``code`` is the errno).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass, field
from typing import Iterator

NETLINK_ROUTE = 0
NETLINK_NETFILTER = 12

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLMSG_ERROR = 2
NLMSG_DONE = 3

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_LINKINFO, IFLA_NET_NS_FD = 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
IFF_UP = 0x1

RT_TABLE_MAIN = 254
RTPROT_STATIC = 4
RTN_UNICAST = 1

NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETGEN = 16
NFTA_GEN_ID = 1

_HDR = struct.Struct("=IHHII")          # nlmsghdr
_IFINFO = struct.Struct("=BxHiII")      # ifinfomsg
_IFADDR = struct.Struct("=BBBBI")       # ifaddrmsg
_RTMSG = struct.Struct("=BBBBBBBBI")    # rtmsg
_RTA = struct.Struct("=HH")             # rtattr
_NFGEN = struct.Struct("=BBH")          # nfgenmsg


class NetlinkError(OSError):
    """A netlink request failed; ``code`` is the errno (``EEXIST``, ``ENODEV``...)."""

    @property
    def code(self) -> int:
        return self.errno or 0


def _error(code: int) -> NetlinkError:
    return NetlinkError(code, os.strerror(code))


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute: header, payload, padding."""
    size = _RTA.size + len(payload)
    return _RTA.pack(size, kind) + payload + b"\0" * (_align(size) - size)


def attr_str(kind: int, text: str) -> bytes:
    return attr(kind, text.encode() + b"\0")


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def parse_attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """Attributes from ``offset`` on, by type (the last of a repeated type wins)."""
    out: dict[int, bytes] = {}
    while offset + _RTA.size <= len(data):
        size, kind = _RTA.unpack_from(data, offset)
        if size < _RTA.size:
            break
        out[kind & 0x3FFF] = data[offset + _RTA.size:offset + size]  # without NLA_F_NESTED
        offset += _align(size)
    return out


def _mac(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


@dataclass
class Link:
    """One interface, as the kernel reported it."""

    index: int
    flags: int
    attrs: dict[int, bytes] = field(default_factory=dict)

    @property
    def ifname(self) -> str:
        return self.attrs.get(IFLA_IFNAME, b"").rstrip(b"\0").decode()

    @property
    def link(self) -> int | None:
        """``IFLA_LINK``: for a veth end, its peer's index (in the peer's namespace)."""
        raw = self.attrs.get(IFLA_LINK)
        return struct.unpack("=I", raw[:4])[0] if raw else None


@dataclass
class Route:
    """One IPv4 route: ``dst/dst_len`` (``dst`` None for the default), its table and device."""

    dst: str | None
    dst_len: int
    table: int
    oif: int | None


class RTNL:
    """A rtnetlink socket in the calling thread's network namespace (a context manager).

    Example::

        with RTNL() as nl:
            index = nl.link_get("portside0").index
            nl.addr_add(index, "172.17.0.1", 16)
    """

    def __init__(self, protocol: int = NETLINK_ROUTE) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  protocol)
        try:
            self.sock.bind((0, 0))
        except OSError:
            self.sock.close()
            raise
        self._seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RTNL":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- plumbing --------------------------------------------------------------------------

    def request(self, kind: int, flags: int, body: bytes) -> Iterator[tuple[int, bytes]]:
        """Send one request; yield ``(type, payload)`` of each answer until it is complete.

        Raises:
            NetlinkError: the kernel refused (the errno of its answer).
        """
        self._seq += 1
        seq = self._seq
        self.sock.send(_HDR.pack(_HDR.size + len(body), kind, flags, seq, 0) + body)
        dump = flags & NLM_F_DUMP == NLM_F_DUMP
        while True:
            data = self.sock.recv(1 << 18)
            offset = 0
            while offset + _HDR.size <= len(data):
                size, mtype, _mflags, mseq, _pid = _HDR.unpack_from(data, offset)
                if size < _HDR.size:
                    raise _error(errno.EPROTO)
                payload = data[offset + _HDR.size:offset + size]
                offset += _align(size)
                if mseq != seq:
                    continue  # an answer to an earlier, abandoned request
                if mtype == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise _error(code)
                    return  # the acknowledgement
                if mtype == NLMSG_DONE:
                    return
                yield mtype, payload
                if not dump and not flags & NLM_F_ACK:
                    return

    def call(self, kind: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
        return list(self.request(kind, flags, body))

    def _change(self, kind: int, body: bytes, create: bool = False) -> None:
        flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_CREATE | NLM_F_EXCL if create else 0)
        self.call(kind, flags, body)

    # ---- links -----------------------------------------------------------------------------

    @staticmethod
    def _link(payload: bytes) -> Link:
        _family, _type, index, flags, _change = _IFINFO.unpack_from(payload)
        return Link(index, flags, parse_attrs(payload, _IFINFO.size))

    def link_get(self, ifname: str | None = None, index: int = 0) -> Link:
        """One link by name or index.

        Raises:
            NetlinkError: ``ENODEV`` when there is none.
        """
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0)
        if ifname is not None:
            body += attr_str(IFLA_IFNAME, ifname)
        answers = self.call(RTM_GETLINK, NLM_F_REQUEST, body)
        if not answers:
            raise _error(errno.ENODEV)
        return self._link(answers[0][1])

    def link_lookup(self, ifname: str) -> list[int]:
        """``[index]`` of the link called ``ifname``, or ``[]``."""
        try:
            return [self.link_get(ifname).index]
        except NetlinkError as exc:
            if exc.code in (errno.ENODEV, errno.ENOENT):
                return []
            raise

    def links(self) -> list[Link]:
        """Every link of the namespace."""
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        return [self._link(p) for t, p in self.request(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP,
                                                       body) if t == RTM_NEWLINK]

    def link_set(self, index: int, *, up: bool | None = None, master: int | None = None) -> None:
        """Bring a link up or down and/or enslave it to a bridge."""
        flags = change = 0
        if up is not None:
            flags, change = (IFF_UP if up else 0), IFF_UP
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, flags, change)
        if master is not None:
            body += attr_u32(IFLA_MASTER, master)
        self._change(RTM_NEWLINK, body)

    def link_add_bridge(self, ifname: str) -> None:
        """Create a bridge (down, no address).

        Raises:
            NetlinkError: ``EEXIST`` when the name is taken.
        """
        body = (_IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr_str(IFLA_IFNAME, ifname)
                + attr(IFLA_LINKINFO, attr_str(IFLA_INFO_KIND, "bridge")))
        self._change(RTM_NEWLINK, body, create=True)

    def link_add_veth(self, ifname: str, peer: str, *, peer_netns_fd: int | None = None,
                      mac: str | None = None, mtu: int | None = None, up: bool = False) -> None:
        """Create a veth pair: ``ifname`` here, ``peer`` here or in the namespace
        ``peer_netns_fd`` (the peer stays down).

        Raises:
            NetlinkError: ``EEXIST`` when either name is taken (in its namespace).
        """
        peer_attrs = attr_str(IFLA_IFNAME, peer)
        if peer_netns_fd is not None:
            peer_attrs += attr_u32(IFLA_NET_NS_FD, peer_netns_fd)
        if mtu is not None:
            peer_attrs += attr_u32(IFLA_MTU, mtu)
        peer_msg = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + peer_attrs
        info = attr_str(IFLA_INFO_KIND, "veth") + attr(IFLA_INFO_DATA,
                                                       attr(VETH_INFO_PEER, peer_msg))
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, IFF_UP if up else 0, IFF_UP if up else 0)
        body += attr_str(IFLA_IFNAME, ifname)
        if mac is not None:
            body += attr(IFLA_ADDRESS, _mac(mac))
        if mtu is not None:
            body += attr_u32(IFLA_MTU, mtu)
        body += attr(IFLA_LINKINFO, info)
        self._change(RTM_NEWLINK, body, create=True)

    def link_del(self, index: int) -> None:
        """Delete a link (a veth end takes its peer with it).

        Raises:
            NetlinkError: ``ENODEV`` when it is gone.
        """
        self._change(RTM_DELLINK, _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0))

    # ---- addresses and routes ------------------------------------------------------------------

    def addr_add(self, index: int, address: str, prefixlen: int) -> None:
        """Add an IPv4 address to a link.

        Raises:
            NetlinkError: ``EEXIST`` when it has it already.
        """
        raw = socket.inet_aton(address)
        body = (_IFADDR.pack(socket.AF_INET, prefixlen, 0, 0, index)
                + attr(IFA_LOCAL, raw) + attr(IFA_ADDRESS, raw))
        self._change(RTM_NEWADDR, body, create=True)

    def addresses(self, index: int, *, with_prefix: bool = False) -> list:
        """The IPv4 addresses of a link (``(address, prefixlen)`` pairs with ``with_prefix``)."""
        body = _IFADDR.pack(socket.AF_INET, 0, 0, 0, 0)
        out: list = []
        for kind, payload in self.request(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, body):
            _family, prefixlen, _flags, _scope, owner = _IFADDR.unpack_from(payload)
            if kind != RTM_NEWADDR or owner != index:
                continue
            raw = parse_attrs(payload, _IFADDR.size).get(IFA_ADDRESS)
            if raw and len(raw) == 4:
                ip = socket.inet_ntoa(raw)
                out.append((ip, prefixlen) if with_prefix else ip)
        return out

    def route_add_default(self, gateway: str) -> None:
        """``default via gateway`` in the main table (``proto static``, as pyroute2 and
        ``ip route`` make it)."""
        body = (_RTMSG.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, 0,
                            RTN_UNICAST, 0)
                + attr(RTA_GATEWAY, socket.inet_aton(gateway)))
        self._change(RTM_NEWROUTE, body, create=True)

    def routes(self) -> list[Route]:
        """Every IPv4 route of every table."""
        body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
        out = []
        for kind, payload in self.request(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, body):
            if kind != RTM_NEWROUTE:
                continue
            family, dst_len, _src, _tos, table, _proto, _scope, _type, _flags = \
                _RTMSG.unpack_from(payload)
            if family != socket.AF_INET:
                continue
            attrs = parse_attrs(payload, _RTMSG.size)
            if RTA_TABLE in attrs:
                table = struct.unpack("=I", attrs[RTA_TABLE][:4])[0]
            dst = attrs.get(RTA_DST)
            oif = attrs.get(RTA_OIF)
            out.append(Route(socket.inet_ntoa(dst) if dst and len(dst) == 4 else None, dst_len,
                             table, struct.unpack("=I", oif[:4])[0] if oif else None))
        return out


def nftables_generation() -> int | None:
    """The kernel's nftables ruleset generation: it changes with every committed change to any
    table, by anyone. None when it cannot be read (no nftables, no permission)."""
    try:
        nl = RTNL(NETLINK_NETFILTER)
    except OSError:
        return None
    try:
        body = _NFGEN.pack(socket.AF_UNSPEC, 0, 0)
        for _kind, payload in nl.request((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN,
                                         NLM_F_REQUEST, body):
            raw = parse_attrs(payload, _NFGEN.size).get(NFTA_GEN_ID)
            if raw and len(raw) >= 4:
                return struct.unpack(">I", raw[:4])[0]
        return None
    except OSError:
        return None
    finally:
        nl.close()
