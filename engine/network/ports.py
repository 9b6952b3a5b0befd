"""Published ports: the ``-p`` / ``-P`` grammar and Docker's PORTS column.

A *published port* maps a port on the host to a port inside the container's network namespace. The
container never listens on the host: the engine installs a DNAT rule (see :mod:`.nft`) that rewrites
packets arriving for ``HOST_IP:HOST_PORT`` to ``CONTAINER_IP:CONTAINER_PORT``.

``-p`` accepts, like ``docker run``::

    -p 80                    container port 80/tcp on a random free host port, every host address
    -p 8080:80               host port 8080 on every host address (0.0.0.0)
    -p 127.0.0.1:8080:80     only on the loopback address
    -p 127.0.0.1::80         loopback, random host port
    -p 8000-8001:80-81       two ports at once (ranges of equal length)
    -p 8000-8010:80          one free host port picked from the range
    -p 53:53/udp             protocol suffix: tcp (default), udp or sctp

``-P`` publishes every port the image EXPOSEs (its config's ``ExposedPorts``) on random host ports.

Parsing is pure; choosing random ports and checking that a host port is free happen at attach time
(:func:`reserve`), by trying to bind the port the way a server would.
"""

from __future__ import annotations

import errno
import ipaddress

from portside.engine.errors import Conflict, InvalidArgument
from portside.engine.records import record, replace

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Iterable, Mapping


PROTOCOLS = ("tcp", "udp", "sctp")


@record(frozen=True)
class PortSpec:
    """One published port.

    ``host_ip`` is ``""`` for every host address (shown as ``0.0.0.0``); ``host_port`` is ``None``
    until attach picks a free one; ``host_range`` keeps ``(first, last)`` when ``-p 8000-8010:80``
    asked for any free port in a range.
    """

    host_ip: str
    host_port: int | None
    container_port: int
    proto: str = "tcp"
    host_range: tuple[int, int] | None = None

    @property
    def key(self) -> str:
        """Docker's port key, e.g. ``"80/tcp"``."""
        return f"{self.container_port}/{self.proto}"


def _port(text: str, spec: str) -> int:
    if not text.isdigit():
        raise InvalidArgument(f"invalid port {text!r} in publish spec {spec!r}")
    value = int(text)
    if not 0 < value < 65536:
        raise InvalidArgument(f"port out of range 1-65535: {value} in {spec!r}")
    return value


def _range(text: str, spec: str) -> tuple[int, int]:
    first, sep, last = text.partition("-")
    start = _port(first, spec)
    end = _port(last, spec) if sep else start
    if end < start:
        raise InvalidArgument(f"invalid port range {text!r} in {spec!r}")
    return start, end


def _split_ip(spec: str, body: str) -> tuple[str, str]:
    """Split ``[IP:]rest`` where IP may be bracketed IPv6; returns ``(ip, rest)``."""
    if body.startswith("["):
        end = body.find("]")
        if end < 0 or body[end + 1:end + 2] != ":":
            raise InvalidArgument(f"invalid IPv6 address in publish spec {spec!r}")
        ip, rest = body[1:end], body[end + 2:]
    else:
        parts = body.split(":")
        if len(parts) < 3:
            return "", body
        if len(parts) > 3:
            raise InvalidArgument(f"invalid publish spec {spec!r}")
        ip, rest = parts[0], ":".join(parts[1:])
    try:
        ipaddress.ip_address(ip)
    except ValueError as exc:
        raise InvalidArgument(f"invalid IP address {ip!r} in publish spec {spec!r}") from exc
    return ip, rest


def parse_publish(spec: str) -> list[PortSpec]:
    """Parse one ``-p`` value.

    Args:
        spec: ``[IP:][HOST:]CONTAINER[/PROTO]`` with optional ranges, e.g. ``"127.0.0.1:8080:80"``.

    Returns:
        One :class:`PortSpec` per container port; ``host_port`` is ``None`` where attach must pick.

    Raises:
        InvalidArgument: the spec is malformed (bad port, protocol, address or range lengths).

    >>> parse_publish("127.0.0.1:8080:80")
    [PortSpec(host_ip='127.0.0.1', host_port=8080, container_port=80, proto='tcp', host_range=None)]
    """
    body, _, proto = spec.strip().partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOCOLS:
        raise InvalidArgument(f"invalid protocol {proto!r} in publish spec {spec!r}")
    if not body:
        raise InvalidArgument(f"invalid publish spec {spec!r}")
    host_ip, rest = _split_ip(spec, body)
    host_part, sep, ctr_part = rest.rpartition(":")
    if not sep:
        host_part, ctr_part = "", rest
    ctr_first, ctr_last = _range(ctr_part, spec)
    count = ctr_last - ctr_first + 1
    if not host_part:
        return [PortSpec(host_ip, None, c, proto) for c in range(ctr_first, ctr_last + 1)]
    host_first, host_last = _range(host_part, spec)
    host_count = host_last - host_first + 1
    if host_count == count:
        return [PortSpec(host_ip, host_first + i, ctr_first + i, proto) for i in range(count)]
    if count == 1:
        # Docker's "any free port from this range" form.
        return [PortSpec(host_ip, None, ctr_first, proto, host_range=(host_first, host_last))]
    raise InvalidArgument(f"port ranges do not have the same length: {spec!r}")


def publish_all(exposed: Mapping[str, object] | Iterable[str]) -> list[PortSpec]:
    """``-P``: publish every exposed port on a random host port.

    Args:
        exposed: the image config's ``ExposedPorts`` (``{"80/tcp": {}}``) or a list of its keys.

    Returns:
        Sorted :class:`PortSpec` list with ``host_port`` ``None``.

    Raises:
        InvalidArgument: a key is not ``PORT[/PROTO]``.
    """
    specs: list[PortSpec] = []
    for key in exposed:
        port, _, proto = str(key).partition("/")
        specs.extend(parse_publish(f"{port}/{proto or 'tcp'}"))
    return sorted(set(specs), key=lambda p: (p.proto, p.container_port))


def _display_ip(host_ip: str) -> str:
    return host_ip or "0.0.0.0"


def overlaps(a: PortSpec, b: PortSpec) -> bool:
    """True when two resolved specs claim the same host port and protocol on a common address."""
    if a.proto != b.proto or a.host_port != b.host_port:
        return False
    return not a.host_ip or not b.host_ip or a.host_ip == b.host_ip


def _bind_probe(host_ip: str, port: int, proto: str) -> None:
    """Bind the port as a server would; raises OSError(EADDRINUSE) when something holds it."""
    import socket  # here: parsing and the PORTS column need no socket module

    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            # Matches what a real server does, so TIME_WAIT leftovers do not count as "taken".
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host_ip or "0.0.0.0", port))
    finally:
        sock.close()


def _free_port(host_ip: str, proto: str, taken: set[int]) -> int:
    import socket

    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    for _ in range(64):
        sock = socket.socket(socket.AF_INET, kind)
        try:
            sock.bind((host_ip or "0.0.0.0", 0))
            port = sock.getsockname()[1]
        finally:
            sock.close()
        if port not in taken:
            return port
    raise Conflict(f"no free host port for {proto} on {_display_ip(host_ip)}")


def reserve(specs: Iterable[PortSpec], in_use: Iterable[PortSpec] = ()) -> list[PortSpec]:
    """Resolve random ports and check every host port is free.

    A port is taken when another published spec (``in_use``, from the store) overlaps it, or when
    binding it on the host fails with EADDRINUSE (some host process listens there).

    Args:
        specs: parsed specs, possibly with ``host_port=None``.
        in_use: specs already published by other containers.

    Returns:
        The specs with every ``host_port`` set.

    Raises:
        Conflict: ``"port is already allocated: 0.0.0.0:8080"``.
        InvalidArgument: an IPv6 host address (only IPv4 NAT is implemented).
    """
    taken = list(in_use)
    resolved: list[PortSpec] = []
    for spec in specs:
        if ":" in spec.host_ip:
            raise InvalidArgument(f"IPv6 port publishing is not supported: [{spec.host_ip}]")
        candidates: Iterable[int]
        if spec.host_port is not None:
            candidates = [spec.host_port]
        elif spec.host_range is not None:
            candidates = range(spec.host_range[0], spec.host_range[1] + 1)
        else:
            busy = {p.host_port for p in taken if p.proto == spec.proto and p.host_port}
            candidates = [_free_port(spec.host_ip, spec.proto, busy)]
        chosen: PortSpec | None = None
        for port in candidates:
            probe = replace(spec, host_port=port, host_range=None)
            if any(overlaps(probe, other) for other in taken):
                continue
            try:
                _bind_probe(spec.host_ip, port, spec.proto)
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                if exc.errno == errno.EADDRNOTAVAIL:
                    raise InvalidArgument(f"host address not available: {spec.host_ip}") from exc
                raise
            chosen = probe
            break
        if chosen is None:
            shown = spec.host_port if spec.host_port is not None else (
                f"{spec.host_range[0]}-{spec.host_range[1]}" if spec.host_range else "?")
            raise Conflict(f"port is already allocated: {_display_ip(spec.host_ip)}:{shown}")
        taken.append(chosen)
        resolved.append(chosen)
    return resolved


def format_ports(ports: Iterable[PortSpec], exposed: Iterable[str] = ()) -> str:
    """Render Docker's ``PORTS`` column.

    Consecutive ports with the same address and protocol collapse into ranges, as Docker does.

    Args:
        ports: resolved published ports.
        exposed: keys like ``"443/tcp"`` that are exposed but not published (shown bare).

    Returns:
        e.g. ``"127.0.0.1:8080->80/tcp, 0.0.0.0:9000-9001->90-91/udp, 443/tcp"``.
    """
    items = sorted({p for p in ports if p.host_port},
                   key=lambda p: (_display_ip(p.host_ip), p.proto, p.host_port, p.container_port))
    groups: list[list[PortSpec]] = []
    for p in items:
        last = groups[-1][-1] if groups else None
        if (last is not None and last.host_ip == p.host_ip and last.proto == p.proto
                and last.host_port is not None and p.host_port == last.host_port + 1
                and p.container_port == last.container_port + 1):
            groups[-1].append(p)
        else:
            groups.append([p])
    out: list[str] = []
    for g in groups:
        first, last = g[0], g[-1]
        host = str(first.host_port) if len(g) == 1 else f"{first.host_port}-{last.host_port}"
        ctr = str(first.container_port) if len(g) == 1 else (
            f"{first.container_port}-{last.container_port}")
        out.append(f"{_display_ip(first.host_ip)}:{host}->{ctr}/{first.proto}")
    published = {p.key for p in items}
    out.extend(sorted(k if "/" in k else f"{k}/tcp" for k in exposed
                      if (k if "/" in k else f"{k}/tcp") not in published))
    return ", ".join(out)
