"""Rootless mode: a user without root gets the whole engine through a user namespace.

An effective uid other than 0 means *rootless*. Mounting overlays, running runc and extracting
layers with their real owners all need privileges that a user only has inside a **user
namespace** of their own, where their uid is 0 and their subordinate range (``/etc/subuid``,
``/etc/subgid``) provides ids 1-65536::

    container uid 0      -> host uid of the user        (1001)
    container uid 1..N   -> host uid subuid_start..     (100000..)

Creating such a namespace for each command costs ~20 ms (two setuid helpers,
``newuidmap``/``newgidmap``), so, as podman does with its "pause process", one long-lived
**namespace holder** per user owns the user namespace and a mount namespace made inside it
(:mod:`.userns`). Every command joins them at its start with ``setns(2)`` (~0.1 ms): its mounts
(container root filesystems, build workspaces) are made in that mount namespace, and the
monitors and cleanup processes it starts live there too, so a container outlives the command
that started it. The holder is started on demand (under a lock: two racing commands start one)
and stopped by ``portside system reset``.

Joining needs a single-threaded process (the kernel refuses ``setns`` into a user namespace
otherwise): the CLI joins before it does anything else. A threaded process (a Jupyter kernel, the
server extension) reaches the engine through a helper process that joined (:mod:`.proxy`).

This module is the cheap part every command may call; nothing here imports more than ``os``.
"""

from __future__ import annotations

import os

#: Set in the environment of every process that joined the holder's namespaces (and so inherited
#: by the monitors and the cleanup processes they start): ``UID:GID:MAPPING`` of the user on the
#: host, MAPPING being ``full`` (subordinate range) or ``single`` (only the user's own id).
ENV = "PORTSIDE_USERNS"

_IDENTITY_MAP = b"0 0 4294967295"


def needs_join() -> bool:
    """Whether this process runs as a user on the host and must join the namespace first."""
    return os.geteuid() != 0


_inside = False


def in_namespace() -> bool:
    """Whether this process is inside a rootless user's namespace (it joined, or was started by
    one that did). The environment says so, and the kernel confirms it: our uid map is not the
    initial namespace's identity map (read once: a process never leaves the namespace)."""
    global _inside
    if _inside:
        return True
    if not os.environ.get(ENV):
        return False
    try:
        with open("/proc/self/uid_map", "rb") as f:
            _inside = b" ".join(f.read().split()) != _IDENTITY_MAP
    except OSError:
        return False
    return _inside


def active() -> bool:
    """Whether the engine runs rootless here (a user on the host, or inside their namespace)."""
    return needs_join() or in_namespace()


def host_ids() -> tuple[int, int]:
    """The user's uid and gid on the host (inside the namespace, the kernel shows them as 0)."""
    marker = os.environ.get(ENV, "")
    if os.geteuid() == 0 and marker and in_namespace():
        uid, gid, _ = (marker.split(":") + ["", "", ""])[:3]
        if uid.isdigit() and gid.isdigit():
            return int(uid), int(gid)
    return os.getuid(), os.getgid()


def mapping() -> str:
    """``full`` (ids 0-N through the subordinate range), ``single`` (only the user's own id,
    file owners squashed to 0), or ``""`` outside the namespace."""
    marker = os.environ.get(ENV, "")
    return marker.split(":")[2] if marker.count(":") >= 2 else ""


def owner(uid: int, gid: int) -> tuple[int, int]:
    """The owner a file written for a container gets on disk, seen from inside the namespace:
    as asked, or 0:0 under a single-id mapping (the only id there is)."""
    if mapping() == "single":
        return 0, 0
    return uid, gid


def mapping_error(path: str, uid: int, gid: int) -> str:
    """The one line for a file owner the namespace cannot represent (an id beyond the user's
    subordinate range)."""
    import pwd

    uid_host, _ = host_ids()
    try:
        name = pwd.getpwuid(uid_host).pw_name
    except KeyError:
        name = str(uid_host)
    return (f"{path}: owner {uid}:{gid} is outside the ids of {name}'s user namespace: give "
            f"{name} a larger range in /etc/subuid and /etc/subgid, then run "
            f"'portside system reset --force' (or stop the namespace holder)")


def runtime_dir() -> "os.PathLike[str]":
    """The user's folder for runtime state (sockets, locks, the holder's pid file):
    ``$XDG_RUNTIME_DIR/portside``, or ``/tmp/portside-UID`` (0700, the user's own) without one.
    Created when missing.

    Raises:
        RuntimeFailure: the /tmp folder exists but is not safely the user's.
    """
    from pathlib import Path

    uid, _ = host_ids()
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg):
        try:
            st = os.stat(xdg)
        except OSError:
            st = None
        # the folder of a `su`'d session may be another user's: use it only when it is ours
        if st is not None and st.st_uid == os.geteuid() and os.access(xdg, os.W_OK | os.X_OK):
            path = Path(xdg) / "portside"
            path.mkdir(mode=0o700, exist_ok=True)
            return path
    path = Path(f"/tmp/portside-{uid}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    import stat

    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        from portside.engine.errors import RuntimeFailure

        raise RuntimeFailure(f"{path} is not a private folder of this user: remove it or set "
                             f"XDG_RUNTIME_DIR")
    return path


def has_cgroups() -> bool:
    """Whether containers get a cgroup here (root, or a user with a delegated cgroup v2 tree):
    ``pause``, ``--memory``, ``--cpus`` and ``--pids-limit`` need one."""
    if not active():
        return True
    from .cgroups import delegated_base

    return delegated_base() is not None


def no_cgroup(what: str) -> str:
    """The one line for ``what`` (a verb or flags) that needs a cgroup a user does not own."""
    from .spec import NO_CGROUPS

    return NO_CGROUPS.format(flags=what)


def enter() -> None:
    """Join this user's namespace (starting its holder when none runs); nothing for root or a
    process already inside. See :func:`.userns.enter`."""
    if needs_join():
        from .userns import enter as _enter

        _enter()
