"""The three files that tell a container who it is on the network.

A container's root filesystem comes from its image, but three files must describe the network the
engine gave it, so the engine writes them on the host and the runtime bind-mounts them over the
image's copies:

``/etc/hostname``
    one line: the container's hostname (Docker's default is the first 12 hex digits of its id).
``/etc/hosts``
    the localhost lines, the container's own address with its hostname and name, every
    ``--add-host NAME:IP``, and, on user-defined networks, every other container on a shared
    network by name and alias. Docker answers those names with an embedded DNS server; writing
    them here gives the same lookups with no server to run (the engine has no daemon), and the
    manager rewrites the file when a peer connects or disconnects.
``/etc/resolv.conf``
    the host's nameservers, search domains and options. A loopback nameserver such as
    systemd-resolved's 127.0.0.53 means nothing inside another network namespace, so then the
    upstream list in ``/run/systemd/resolve/resolv.conf`` is used when it exists; with no usable
    server left the file says so in a comment, as Docker does. ``--dns`` replaces the servers.

Files are rewritten *in place* (truncate and write, never rename): a bind mount pins the inode, so
a renamed replacement would never be seen by a running container.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from portside.engine.errors import InvalidArgument

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Iterable, Sequence


LOCALHOST_LINES = (
    "127.0.0.1\tlocalhost",
    "::1\tlocalhost ip6-localhost ip6-loopback",
    "fe00::0\tip6-localnet",
    "ff00::0\tip6-mcastprefix",
    "ff02::1\tip6-allnodes",
    "ff02::2\tip6-allrouters",
)

HOST_RESOLV = Path("/etc/resolv.conf")
SYSTEMD_RESOLV = Path("/run/systemd/resolve/resolv.conf")


def parse_add_host(value: str, host_gateway: str | None = None) -> tuple[str, str]:
    """Parse ``--add-host NAME:IP`` (``NAME=IP`` also accepted, as newer Docker does).

    Args:
        value: the flag's value; the IP may be ``host-gateway``.
        host_gateway: the address that ``host-gateway`` stands for (the bridge's gateway).

    Returns:
        ``(name, ip)``.

    Raises:
        InvalidArgument: no separator, empty name, or an address that is not an IP.
    """
    sep = "=" if "=" in value else ":"
    name, found, ip = value.partition(sep)
    ip = ip.strip("[]")
    if not found or not name or not ip:
        raise InvalidArgument(f"invalid --add-host {value!r}: expected NAME:IP")
    if ip == "host-gateway":
        if host_gateway is None:
            raise InvalidArgument(f"--add-host {value!r}: no host gateway on this network")
        ip = host_gateway
    try:
        ipaddress.ip_address(ip)
    except ValueError as exc:
        raise InvalidArgument(f"invalid IP address in --add-host {value!r}") from exc
    return name, ip


def hosts_content(own: Sequence[tuple[str, Sequence[str]]],
                  add_hosts: Sequence[tuple[str, str]] = (),
                  peers: Sequence[tuple[str, Sequence[str]]] = ()) -> str:
    """Render ``/etc/hosts``.

    Args:
        own: ``(ip, names)`` for each of the container's own addresses.
        add_hosts: ``(name, ip)`` pairs from ``--add-host``.
        peers: ``(ip, names)`` for other containers on shared user networks.

    Returns:
        The file's text, ending in a newline.
    """
    lines = list(LOCALHOST_LINES)
    lines += [f"{ip}\t{name}" for name, ip in add_hosts]
    lines += [f"{ip}\t{' '.join(_unique(names))}" for ip, names in own if names]
    lines += [f"{ip}\t{' '.join(_unique(names))}" for ip, names in peers if names]
    return "\n".join(lines) + "\n"


def host_network_hosts(add_hosts: Sequence[tuple[str, str]] = (),
                       source: Path = Path("/etc/hosts")) -> str:
    """``/etc/hosts`` for ``--net host``: the host's own file plus ``--add-host`` lines."""
    try:
        text = source.read_text()
    except OSError:
        text = "\n".join(LOCALHOST_LINES) + "\n"
    if text and not text.endswith("\n"):
        text += "\n"
    return text + "".join(f"{ip}\t{name}\n" for name, ip in add_hosts)


def hostname_content(hostname: str) -> str:
    """Render ``/etc/hostname``: the hostname and a newline."""
    return hostname + "\n"


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def _parse_resolv(text: str) -> tuple[list[str], list[str], list[str]]:
    servers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    for raw in text.splitlines():
        fields = raw.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) < 2:
            continue
        if fields[0] == "nameserver":
            servers.append(fields[1])
        elif fields[0] in ("search", "domain"):
            search = fields[1:]
        elif fields[0] == "options":
            options.extend(fields[1:])
    return servers, search, options


def resolv_conf_content(dns: Sequence[str] | None = None,
                        dns_search: Sequence[str] | None = None,
                        dns_options: Sequence[str] | None = None,
                        host_resolv: Path = HOST_RESOLV,
                        systemd_resolv: Path = SYSTEMD_RESOLV,
                        fallback: Sequence[str] = ()) -> str:
    """Render ``/etc/resolv.conf`` for a container with its own network namespace.

    Args:
        dns: ``--dns`` servers; replace the host's when given.
        dns_search: ``--dns-search`` domains; replace the host's when given.
        dns_options: ``--dns-option`` values; replace the host's when given.
        host_resolv: the host's resolver file.
        systemd_resolv: systemd-resolved's upstream list, used when the host's servers are loopback.
        fallback: servers to use when none of the host's is usable (rootless: slirp4netns's
            resolver, which reaches loopback ones too).

    Returns:
        The file's text.

    Raises:
        InvalidArgument: a ``--dns`` value is not an IP address.
    """
    try:
        servers, search, options = _parse_resolv(host_resolv.read_text())
    except OSError:
        servers, search, options = [], [], []
    note = ""
    if dns:
        for server in dns:
            try:
                ipaddress.ip_address(server)
            except ValueError as exc:
                raise InvalidArgument(f"invalid --dns address: {server}") from exc
        servers = list(dns)
    else:
        if any(_is_loopback(s) for s in servers) and systemd_resolv.exists():
            try:
                up, up_search, up_options = _parse_resolv(systemd_resolv.read_text())
            except OSError:
                up, up_search, up_options = [], [], []
            servers = up
            search = search or up_search
            options = options or up_options
        dropped = [s for s in servers if _is_loopback(s)]
        servers = [s for s in servers if not _is_loopback(s)]
        if not servers and fallback:
            servers = list(fallback)
        if not servers:
            note = ("# No usable nameserver: the host's "
                    + (", ".join(dropped) if dropped else "resolver list")
                    + " cannot be reached from a container network namespace.\n"
                    "# Use --dns to set one.\n")
    if dns_search is not None:
        search = list(dns_search)
    if dns_options is not None:
        options = list(dns_options)
    lines = ["# Generated by portside"]
    if search:
        lines.append("search " + " ".join(search))
    lines += [f"nameserver {s}" for s in servers]
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n" + note


def write_in_place(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` keeping its inode (bind mounts of it see the change).

    Args:
        path: created with mode 0644 when missing.
        text: the new content.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        data = text.encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)


def _unique(names: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for n in names:
        if n:
            seen.setdefault(n, None)
    return list(seen)
