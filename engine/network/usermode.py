"""User-mode networking: the default network of a rootless container (slirp4netns or pasta).

A user cannot plug veth pairs into a bridge of the host nor write its nftables rules. A rootless
container on the default network gets instead:

* a **network namespace** of its own, made (in the user's namespace) before the container starts
  and bind-mounted at ``<run folder>/<id12>/netns``, where the OCI runtime joins it by path;
* a **user-mode network helper** attached to it: a process of the user that stays in the host's
  network namespace, owns a tap device inside the container's, and turns the container's packets
  into the user's own socket calls (outbound), and connections to a published host port into
  packets for the container (inbound). It lives exactly as long as the container.

Inside, both helpers give the same addresses (slirp4netns's)::

    10.0.2.100  the container        10.0.2.2  its gateway
    10.0.2.3    its DNS server: queries are forwarded to the host's resolvers (a loopback one
                such as systemd-resolved's 127.0.0.53 too), so /etc/resolv.conf names only it

The container cannot reach the host's loopback addresses through the gateway (slirp4netns's
``--disable-host-loopback``, pasta's ``--no-map-gw``): a service a user runs on 127.0.0.1 stays
private to the host, as with Docker's bridge.

Two helpers; ``rootless-network`` in config.toml or ``PORTSIDE_ROOTLESS_NETWORK`` chooses the
default, ``--network slirp4netns`` or ``--network pasta`` one container's. Measured here (attach:
from the helper's start to its namespace being ready):

==========  ============================================  ======================================
            slirp4netns (default)                         pasta
==========  ============================================  ======================================
attach      ~3 ms                                         ~3 ms, ~25 ms the first time
memory      ~3 MB RSS                                     ~30 MB RSS
ports       added through its API socket once it is up    given on its command line
throughput  lower (every packet through libslirp)         higher (local TCP spliced)
==========  ============================================  ======================================

Who does what:

1. :func:`attach` (the engine, while it prepares the container) makes the namespace, checks the
   published host ports are free and returns the helper's configuration;
2. the container's **monitor** starts the helper just before the OCI runtime, waits until it is
   ready, publishes the ports through its API, writes its pid to ``net.pid`` (see ``net_helper`` in
   :mod:`portside.engine.runtime.monitor_process`), and stops it once the container has exited.
   slirp4netns also watches a pipe whose other end only the monitor holds (``--exit-fd``), so it
   exits when the monitor dies, however it dies; pasta exits when its namespace file is removed;
3. :func:`detach` (the engine's cleanup: ``rm``, the next start, or the next command that finds a
   dead container) stops a helper that is still there and removes the namespace and the files. It
   is idempotent.

Cheap to import: no pyroute2, no socket module (the default network must cost ``run`` only
milliseconds more than ``--network none``).
"""

from __future__ import annotations

import os
from pathlib import Path

from portside.engine.errors import InvalidArgument

from . import netns as ns

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Iterable

    from .ports import PortSpec

DRIVERS = ("slirp4netns", "pasta")
DEFAULT_DRIVER = "slirp4netns"

ADDRESS = "10.0.2.100"
PREFIXLEN = 24
GATEWAY = "10.0.2.2"
RESOLVER = "10.0.2.3"
MTU = 65520

#: Files in the container's run folder.
NETNS, API, PID, LOG = "netns", "net.sock", "net.pid", "net.log"
#: The descriptors slirp4netns gets for ``--ready-fd`` and ``--exit-fd`` (the monitor puts its
#: pipes there when it starts it).
READY_FD, EXIT_FD = 3, 4

TUN = "/dev/net/tun"


def driver_for(mode: str, configured: str | None, rootless: bool) -> str | None:
    """The helper a container's network mode asks for, or None when it is not user-mode.

    ``slirp4netns`` and ``pasta`` name one; Docker's default network (``bridge``) means the
    configured helper when the engine runs rootless (a user has no bridge on the host).

    Raises:
        InvalidArgument: the configured helper is neither; pasta as root.
    """
    if mode == "pasta" and not rootless:
        # this pasta (Debian 12's) gives up its privileges as root and then cannot open the
        # container's namespace
        raise InvalidArgument("--network pasta: only without root (as root: the bridge network "
                              "or --network slirp4netns)")
    if mode in DRIVERS:
        return mode
    if mode == "bridge" and rootless:
        driver = configured or DEFAULT_DRIVER
        if driver not in DRIVERS:
            raise InvalidArgument(f"rootless-network: unknown helper {driver!r} (slirp4netns or "
                                  f"pasta)")
        return driver
    return None


def _which(name: str) -> str | None:
    for folder in (os.environ.get("PATH") or "/usr/bin:/bin").split(os.pathsep) + ["/usr/bin"]:
        candidate = os.path.join(folder or ".", name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def _check_host(driver: str) -> str:
    """The helper's path; one line when the host lacks what it needs."""
    exe = _which(driver)
    if exe is None:
        package = "slirp4netns" if driver == "slirp4netns" else "passt"
        raise InvalidArgument(f"--network {driver}: {driver} is not installed (Debian's {package} "
                              f"package); or run with --network none or --network host")
    if not os.access(TUN, os.R_OK | os.W_OK):
        raise InvalidArgument(f"--network {driver}: {TUN} is not readable and writable by this "
                              f"user (as root: chmod 0666 {TUN}, Debian's default); or run with "
                              f"--network none or --network host")
    return exe


def netns_path(folder: Path) -> Path:
    """Where the namespace of the sandbox in ``folder`` is bind-mounted."""
    return Path(folder) / NETNS


def attach(folder: Path, driver: str, ports: Iterable[PortSpec] = ()) -> dict[str, Any]:
    """Make a container's namespace in ``folder`` (its run folder) and return what its monitor
    needs to start the helper (``net_helper``).

    Args:
        folder: the container's run folder (short: the API socket's path must fit in 108 bytes).
        driver: ``slirp4netns`` or ``pasta``.
        ports: ``-p``/``-P`` specs; random host ports are chosen here, and every host port is
            checked to be free (a bind, as a server would).

    Returns:
        ``{"driver", "dir", "netns", "argv", "api", "ports", "pid_file", "log", "published"}``:
        ``published`` holds the resolved specs as ``[host_ip, host_port, container_port, proto]``.

    Raises:
        InvalidArgument: the helper is not installed, /dev/net/tun is not usable, a bad port.
        Conflict: a host port is taken.
        RuntimeFailure: the namespace could not be made.
    """
    exe = _check_host(driver)
    wanted = list(ports)
    resolved: list[PortSpec] = []
    if wanted:
        from .ports import reserve

        resolved = reserve(wanted)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = netns_path(folder)
    if os.path.lexists(path):  # a crashed start's leftover
        detach(folder)
    ns.run_in(path, _nothing, create=True, shared=False)
    return helper_config(folder, driver, exe, resolved)


def _nothing() -> None:
    """A fresh namespace needs nothing more: the helper brings ``lo`` and its tap device up."""


def helper_config(folder: Path, driver: str, exe: str,
                  ports: Iterable[PortSpec] = ()) -> dict[str, Any]:
    """The monitor's ``net_helper`` for a namespace at ``folder/netns`` (see :func:`attach`)."""
    path = str(netns_path(folder))
    api = str(Path(folder) / API)
    pid_file = str(Path(folder) / PID)
    ports = list(ports)
    if driver == "slirp4netns":
        argv = [exe, "--configure", f"--mtu={MTU}", "--disable-host-loopback",
                "--enable-sandbox", "--enable-seccomp", "--api-socket", api,
                "--ready-fd", str(READY_FD), "--exit-fd", str(EXIT_FD),
                "--netns-type=path", path, "tap0"]
        forwards = [{"proto": p.proto, "host_addr": p.host_ip or "0.0.0.0",
                     "host_port": p.host_port, "guest_port": p.container_port} for p in ports]
    else:
        argv = [exe, "--config-net", "--netns", path, "-4", "-a", ADDRESS, "-n", str(PREFIXLEN),
                "-g", GATEWAY, "--dns-forward", RESOLVER, "--no-map-gw", "-m", str(MTU),
                "-T", "none", "-U", "none", "-P", pid_file, "-q"]
        for proto, flag in (("tcp", "-t"), ("udp", "-u")):
            mine = [p for p in ports if p.proto == proto]
            for p in mine:
                argv += [flag, f"{p.host_ip + '/' if p.host_ip else ''}{p.host_port}:"
                               f"{p.container_port}"]
            if not mine:
                argv += [flag, "none"]
        forwards = []
        if any(p.proto not in ("tcp", "udp") for p in ports):
            raise InvalidArgument("--network pasta: only tcp and udp ports can be published")
    return {"driver": driver, "dir": str(folder), "netns": path, "argv": argv, "api": api,
            "ports": forwards, "pid_file": pid_file, "log": str(Path(folder) / LOG),
            "published": [[p.host_ip, p.host_port, p.container_port, p.proto] for p in ports]}


def published(helper: dict[str, Any]) -> list[PortSpec]:
    """The resolved port specs of a sandbox (from :func:`attach`'s result)."""
    from .ports import PortSpec

    return [PortSpec(ip, int(host), int(port), proto)
            for ip, host, port, proto in helper.get("published") or []]


def detach(folder: Path) -> bool:
    """Stop the sandbox's helper if it still runs, remove its namespace and files; idempotent.

    Returns:
        True when something was there.
    """
    folder = Path(folder)
    found = stop_helper(folder)
    found = ns.remove(netns_path(folder)) or found
    for name in (API, PID, LOG):
        try:
            os.unlink(folder / name)
        except FileNotFoundError:
            continue
        found = True
    return found


def helper_pid(folder: Path) -> int:
    """The pid of the helper still serving ``folder``'s namespace, or 0. A pid is trusted only
    when that process names the namespace on its command line (a recycled pid does not)."""
    try:
        pid = int((Path(folder) / PID).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0
    if pid <= 0:
        return 0
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return 0
    if state == b"Z" or os.fsencode(str(netns_path(folder))) not in cmdline.split(b"\0"):
        return 0
    return pid


def stop_helper(folder: Path) -> bool:
    """Kill the helper of ``folder`` (its container is gone: it has nothing to save); returns
    whether one ran. Not waited for: the kernel takes 10-20 ms to unregister its tap device."""
    import signal

    pid = helper_pid(folder)
    if not pid:
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


def resolv_conf(host_text: str, dns: list[str] | None = None) -> str:
    """The container's ``/etc/resolv.conf``: the host's search domains and options, and the
    helper's DNS server (or ``--dns`` servers)."""
    keep = [line for line in host_text.splitlines() if line.split()[:1] in (["search"],
                                                                              ["domain"],
                                                                              ["options"])]
    servers = dns or [RESOLVER]
    return "\n".join([f"nameserver {s}" for s in servers] + keep) + "\n"
