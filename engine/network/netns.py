"""Named network namespaces, made and entered without forking.

A *network namespace* is a private copy of the network stack: its own interfaces, addresses,
routes and firewall. A namespace lives as long as something refers to it; bind-mounting its
``/proc/<tid>/ns/net`` file onto ``/run/netns/<name>`` (what ``ip netns add`` does) keeps it alive
with no process inside, and lets the OCI runtime join it later by path
(``linux.namespaces[{type: network, path: ...}]``). Unmounting that file drops the last reference:
the kernel then destroys the namespace and every interface in it, including our end of a veth pair,
whose host end disappears with it (asynchronously, in the kernel's cleanup work).

Network namespaces are per *thread*, so this module never forks: a short-lived worker thread calls
``unshare(CLONE_NEWNET)`` (or ``setns`` into an existing namespace), opens its netlink socket there
and does all in-namespace configuration itself, then exits. The calling thread never changes
namespace. pyroute2 opens its sockets lazily *in the thread that first uses them*, so the worker
creates, uses and closes its own ``IPRoute`` — an ``IPRoute`` handed to another thread would talk
to that thread's namespace instead, which is why :func:`run_in` checks the namespace it landed in
before running any configuration.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from pathlib import Path

from portside.engine.errors import RuntimeFailure

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Callable, TypeVar

    T = TypeVar("T")

#: Where named namespaces live as root (``ip netns``'s folder); a rootless engine keeps its own
#: in the user's runtime folder (see :class:`..manager.NetworkManager`'s ``netns_dir``).
NETNS_DIR = Path("/run/netns")
PREFIX = "portside-"

CLONE_NEWNET = 0x40000000
MS_REC = 0x4000
MS_BIND = 0x1000
MS_SHARED = 1 << 20
MNT_DETACH = 2

_libc: Any = None
_dirs_ready: set[Path] = set()
_dir_lock = threading.Lock()


def _c() -> Any:
    global _libc
    if _libc is None:
        # The C library the interpreter already has loaded: no find_library (it runs ldconfig).
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def path_for(container_id: str, base: Path = NETNS_DIR) -> Path:
    """The namespace path of a container: ``/run/netns/portside-<id12>`` (``base`` instead of
    ``/run/netns`` when given)."""
    return base / f"{PREFIX}{container_id[:12]}"


def _prepare_dir(folder: Path = NETNS_DIR) -> None:
    """Make ``folder`` (``/run/netns``) a shared mount point, as ``ip netns add`` does.

    Shared propagation lets namespace mounts made later show up in mount namespaces cloned
    earlier (a container's runtime, another engine process in its own mount namespace).
    """
    with _dir_lock:
        if folder in _dirs_ready:
            return
        folder.mkdir(parents=True, exist_ok=True)
        libc = _c()
        target = str(folder).encode()
        if libc.mount(b"none", target, b"none", MS_SHARED | MS_REC, None) != 0:
            # Not a mount point yet: bind it onto itself, then share it.
            _check(libc.mount(target, target, b"none", MS_BIND | MS_REC, None), "bind /run/netns")
            _check(libc.mount(b"none", target, b"none", MS_SHARED | MS_REC, None),
                   f"share {folder}")
        _dirs_ready.add(folder)


def _ns_inode(path: str | Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def run_in(path: Path, fn: Callable[[], T], *, create: bool = False, shared: bool = True) -> T:
    """Run ``fn`` in a worker thread that lives in the namespace at ``path``.

    Args:
        path: a bind-mounted namespace file.
        fn: called with no argument inside the namespace; open netlink sockets inside ``fn``.
        create: make a fresh namespace and mount it at ``path`` first (fails if ``path`` exists).
        shared: with ``create``, make the namespace's folder a shared mount point first (root's
            ``/run/netns``); a folder that only one mount namespace uses needs no propagation.

    Returns:
        What ``fn`` returned.

    Raises:
        RuntimeFailure: the namespace could not be made or entered (``fn``'s own exceptions pass
            through unchanged).
    """
    result: dict[str, Any] = {}

    def worker() -> None:
        made = False
        try:
            libc = _c()
            if create:
                if shared:
                    _prepare_dir(path.parent)
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444)
                os.close(fd)
                made = True
                _check(libc.unshare(CLONE_NEWNET), "unshare")
                own = f"/proc/self/task/{threading.get_native_id()}/ns/net".encode()
                _check(libc.mount(own, str(path).encode(), b"none", MS_BIND, None),
                       f"mount {path}")
            else:
                fd = os.open(path, os.O_RDONLY)
                try:
                    _check(libc.setns(fd, CLONE_NEWNET), f"setns {path}")
                finally:
                    os.close(fd)
            here = f"/proc/self/task/{threading.get_native_id()}/ns/net"
            if _ns_inode(here) != _ns_inode(path):
                raise OSError(errno.EINVAL, f"worker is not in {path}")
        except OSError as exc:
            if made:
                _unmount(path)
            result["error"] = RuntimeFailure(f"network namespace {path.name}: {exc.strerror or exc}")
            result["error"].__cause__ = exc
            return
        try:
            result["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread unchanged
            result["error"] = exc

    thread = threading.Thread(target=worker, name=f"netns-{path.name}")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def _unmount(path: Path) -> None:
    _c().umount2(str(path).encode(), MNT_DETACH)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def remove(path: Path) -> bool:
    """Unmount and delete a namespace file; idempotent.

    The kernel destroys the namespace (and its interfaces) once nothing else refers to it.

    Returns:
        True when something was removed.
    """
    if not os.path.lexists(path):
        return False
    _unmount(path)
    return True


def list_ours(base: Path = NETNS_DIR) -> list[Path]:
    """Every ``/run/netns/portside-*`` namespace file (in ``base`` when given; for crash
    cleanup)."""
    try:
        return sorted(p for p in base.iterdir() if p.name.startswith(PREFIX))
    except FileNotFoundError:
        return []


def host_ns_fd() -> int:
    """Open the calling thread's own network namespace (the host's); the caller closes it."""
    return os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
