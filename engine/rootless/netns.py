"""The per-user network namespace: where a rootless user's networks live (podman's rootless-netns).

A user network (``network create lab``, ``run --network lab``) is a Linux bridge, an IPv4 subnet
and nftables rules (:mod:`portside.engine.network`). A user may create none of those on the host,
but may in a network namespace of their own user namespace. So, as the user namespace is kept by
a holder (:mod:`.userns`), one more holder per user keeps a **network namespace**, and the
engine's network code runs unchanged inside it: its bridges, veth ends, nftables table and IPv4
forwarding are that namespace's, never the host's::

      host (the user's sockets)                    the user's network namespace
    ┌─────────────────────────────┐  tap0   ┌──────────────────────────────────────────────┐
    │ slirp4netns ── 127.0.0.1:8080 ◄──────► │ 10.0.2.100   nft: NAT out, dport 8080 DNAT  │
    └─────────────────────────────┘         │   ps-<id> bridge 10.89.0.1 ── veth ── ctr A   │
                                            │                              └─ veth ── ctr B │
                                            └──────────────────────────────────────────────┘

* **Outbound**: slirp4netns (attached to the namespace when the holder starts) is its uplink;
  containers' traffic is masqueraded to 10.0.2.100 there and leaves through the user's sockets.
* **Published ports**: :class:`Forwarder` asks slirp4netns (through its API socket) to listen on
  the host's ``HOST_IP:PORT`` and forward to ``10.0.2.100:PORT``; the engine's DNAT rule for that
  port (matching any local address: packets arrive on tap0) sends them on to the container.
* **Lifetime**: the holder (``portside-ns-netns``) keeps the namespace and the write end of
  slirp4netns's ``--exit-fd`` pipe, so slirp4netns exits with the holder, however it ends.
  ``system reset`` stops the holder once no container is attached to a user network any more.

Threads: a network namespace is per thread, so the engine's network manager runs its
kernel-facing work in worker threads that joined this namespace (:func:`enter_thread`); the
calling thread, and so the registry client, the runtime and everything else, stays in the host's.
"""

from __future__ import annotations

import json
import os

from portside.engine.errors import Conflict, RuntimeFailure

from . import userns

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Iterable

NAME = "netns"
userns.HOLDERS[NAME] = ("net",)

#: slirp4netns's address inside the namespace (``--configure``): forwarded ports arrive there.
ADDRESS = "10.0.2.100"
#: slirp4netns's DNS server, reachable from containers on user networks through the namespace.
RESOLVER = "10.0.2.3"
MTU = 65520


def _api_path() -> str:
    return os.path.join(os.fspath(userns.runtime_dir()), f"{NAME}.sock")


def _slirp_alive(doc: dict[str, Any]) -> bool:
    pid = int(doc.get("slirp") or 0)
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().split(b"\0")
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != b"Z" and os.fsencode(doc.get("api", "")) in cmd


def status() -> dict[str, Any] | None:
    """The running holder's description (``pid``, ``ns``, ``slirp``, ``api``), or None."""
    return userns.status(NAME)


def ensure() -> dict[str, Any]:
    """The holder's description, starting the holder and its slirp4netns when they do not run.
    Called from inside the user namespace, in a thread still in the host's network namespace
    (slirp4netns must be: its sockets are the namespace's uplink).

    Raises:
        RuntimeFailure: slirp4netns is missing or failed, or the holder did not start.
    """
    doc = status()
    if doc is not None and _slirp_alive(doc):
        return doc
    import fcntl

    pid_file, lock_file = userns._paths(NAME)
    lock = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        doc = status()
        if doc is not None and _slirp_alive(doc):
            return doc
        if doc is not None:
            # slirp4netns died under a living holder: a new namespace, as the old one has no
            # uplink (its bridges come back as the engine finds them missing)
            userns.stop(NAME)
        _check_host()
        exit_r, exit_w = os.pipe()
        try:
            pid = userns._spawn(NAME, False, userns.CLONE_NEWNET, None, keep=exit_w)
        except BaseException:
            os.close(exit_r)
            raise
        finally:
            os.close(exit_w)  # the holder alone keeps it now
        try:
            api = _api_path()
            slirp = _start_slirp(pid, api, exit_r)
        except BaseException:
            _kill(pid)
            raise
        finally:
            os.close(exit_r)
        doc = {"pid": pid, "ns": userns._ns_inodes(pid, ("net",)), "slirp": slirp, "api": api}
        userns._write(pid_file, doc)
        return doc
    finally:
        os.close(lock)


def _check_host() -> None:
    from portside.engine.network.usermode import TUN, _which

    if _which("slirp4netns") is None:
        raise RuntimeFailure("user networks without root need slirp4netns (Debian's slirp4netns "
                             "package)")
    if not os.access(TUN, os.R_OK | os.W_OK):
        raise RuntimeFailure(f"user networks without root need {TUN} readable and writable by "
                             f"this user (as root: chmod 0666 {TUN}, Debian's default)")


def _start_slirp(holder: int, api: str, exit_r: int) -> int:
    """Attach slirp4netns to the holder's namespace; returns its pid once it is ready."""
    import select
    import subprocess

    from portside.engine.network.usermode import _which

    try:
        os.unlink(api)
    except FileNotFoundError:
        pass
    ready_r, ready_w = os.pipe()
    log = os.path.join(os.fspath(userns.runtime_dir()), f"{NAME}.log")
    try:
        with open(log, "wb") as err:
            proc = subprocess.Popen(
                [_which("slirp4netns") or "slirp4netns", "--configure", f"--mtu={MTU}",
                 "--disable-host-loopback", "--enable-sandbox", "--enable-seccomp",
                 "--api-socket", api, "--ready-fd", str(ready_w), "--exit-fd", str(exit_r),
                 str(holder), "tap0"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                pass_fds=(ready_w, exit_r), start_new_session=True)
        os.close(ready_w)
        ready_w = -1
        ready = select.select([ready_r], [], [], 10.0)[0]
        if not ready or os.read(ready_r, 1) != b"1":
            proc.kill()
            proc.wait()
            with open(log, errors="replace") as f:
                last = ([line.strip() for line in f if line.strip()] or [""])[-1]
            raise RuntimeFailure("slirp4netns failed to start for the user networks' namespace"
                                 + (f": {last}" if last else ""))
        # Popen's handle is dropped: slirp4netns outlives this command (its parent exits, and
        # it is reparented); it exits with the holder through --exit-fd.
        proc.returncode = 0
        return proc.pid
    finally:
        os.close(ready_r)
        if ready_w >= 0:
            os.close(ready_w)


def _kill(pid: int) -> None:
    import signal

    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def enter_thread() -> None:
    """Move the calling *thread* into the namespace (starting its holder first when needed).
    Call it from a thread that is still in the host's network namespace.

    Raises:
        RuntimeFailure: the holder could not be started or joined.
    """
    for _ in range(3):
        doc = ensure()
        fds = userns._open_ns(int(doc["pid"]), {"net": int(doc["ns"]["net"])})
        if fds is None:
            continue  # stopped meanwhile (a racing reset): start another
        try:
            userns._setns(fds["net"], "net")
        finally:
            os.close(fds["net"])
        return
    raise RuntimeFailure("the user networks' namespace holder keeps exiting")


def interfaces(doc: dict[str, Any] | None = None) -> list[str]:
    """The interface names in the namespace (read from its holder's ``/proc/PID/net/dev``)."""
    doc = doc if doc is not None else status()
    if doc is None:
        return []
    try:
        with open(f"/proc/{int(doc['pid'])}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return []
    return [line.split(":", 1)[0].strip() for line in lines if ":" in line]


def stop(*, only_idle: bool = False) -> bool:
    """Stop the holder (slirp4netns exits with it; the namespace goes with its last user).

    Args:
        only_idle: leave it running while a container is attached to a user network (a veth
            end is in the namespace): another state root of the same user may use it.

    Returns:
        Whether a holder was stopped.
    """
    from portside.engine.network.bridge import VETH_PREFIX

    doc = status()
    if doc is None:
        userns.stop(NAME)  # a stale pid file
        _remove_files()
        return False
    if only_idle and any(name.startswith(VETH_PREFIX) for name in interfaces(doc)):
        return False
    stopped = userns.stop(NAME)
    pid = int(doc.get("slirp") or 0)
    if pid and _slirp_alive(doc):
        import time

        deadline = time.monotonic() + 5.0
        while _slirp_alive(doc) and time.monotonic() < deadline:
            time.sleep(0.005)  # it sees its --exit-fd close
        if _slirp_alive(doc):
            _kill(pid)
    _remove_files()
    return stopped


def _remove_files() -> None:
    folder = os.fspath(userns.runtime_dir())
    for leftover in (f"{NAME}.sock", f"{NAME}.log"):
        try:
            os.unlink(os.path.join(folder, leftover))
        except FileNotFoundError:
            pass


class Forwarder:
    """Published ports of containers on user networks: slirp4netns listens on the host's
    ``HOST_IP:PORT`` and forwards to ``10.0.2.100:PORT`` in the namespace, where the engine's
    DNAT rule takes over. Used by the network manager (from a thread inside the namespace)."""

    #: The address DNAT rules match in the namespace: any local one (packets arrive on tap0).
    rule_host_ip = ""

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        import socket

        doc = status()
        if doc is None:
            raise RuntimeFailure("the user networks' namespace is not running")
        data = b""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5.0)
            try:
                sock.connect(doc["api"])
                sock.sendall(json.dumps(request).encode())
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError as exc:
                raise RuntimeFailure(f"slirp4netns's API: {exc.strerror or exc}") from exc
        try:
            reply = json.loads(data or b"{}")
        except ValueError:
            reply = {}
        return reply if isinstance(reply, dict) else {}

    def add(self, ports: Iterable[Any]) -> None:
        """Listen on each port's host address and port (``PortSpec``-like: ``host_ip``,
        ``host_port``, ``proto``).

        Raises:
            Conflict: a host port is in use (what was added before it is removed again).
        """
        done: list[Any] = []
        for p in ports:
            reply = self._call({"execute": "add_hostfwd", "arguments": {
                "proto": p.proto, "host_addr": p.host_ip or "0.0.0.0",
                "host_port": int(p.host_port), "guest_port": int(p.host_port)}})
            if "error" in reply:
                self.remove(done)
                raise Conflict(f"port is already allocated: {p.host_ip or '0.0.0.0'}:"
                               f"{p.host_port}")
            done.append(p)

    def remove(self, ports: Iterable[Any]) -> None:
        """Stop listening on those ports; idempotent (a port not forwarded is skipped)."""
        wanted = {(p.proto, p.host_ip or "0.0.0.0", int(p.host_port)) for p in ports}
        if not wanted or status() is None:
            return
        for entry in self._call({"execute": "list_hostfwd"}).get("entries") or []:
            key = (entry.get("proto"), entry.get("host_addr"), int(entry.get("host_port") or 0))
            if key in wanted:
                self._call({"execute": "remove_hostfwd", "arguments": {"id": entry["id"]}})
