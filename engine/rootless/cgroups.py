"""Delegated cgroups: where a rootless container may have limits.

A user owns a cgroup subtree only where cgroup v2 is the sole hierarchy and somebody delegated
one to them: systemd's ``user@UID.service`` is such a subtree (owned by the user, with the
``memory``, ``cpu`` and ``pids`` controllers available in it). Containers then get their cgroup
below it, as ``<subtree>/portside-<id>``; runc creates and removes it. Elsewhere (cgroup v1 or
hybrid hosts like this project's, or v2 without delegation) a rootless container has no cgroup,
and the limits that need one are refused (:func:`portside.engine.rootless.spec.check_host_config`).
"""

from __future__ import annotations

import os

#: The controllers the limits need.
WANTED = ("memory", "cpu", "pids")


def delegated_cgroup(mount: str = "/sys/fs/cgroup", self_cgroup: str = "/proc/self/cgroup",
                     uid: int | None = None) -> str | None:
    """The highest cgroup (a path below the v2 mount, ``/user.slice/.../user@1001.service``)
    among this process's own cgroup and its ancestors that the user owns and that offers the
    memory, cpu and pids controllers; None when there is none (not v2, or nothing delegated).

    ``uid``: the owner to look for (default: this process's effective uid).
    """
    if not os.path.exists(os.path.join(mount, "cgroup.controllers")):
        return None
    try:
        with open(self_cgroup) as f:
            own = next((line.strip()[3:] for line in f if line.startswith("0::")), None)
    except OSError:
        return None
    if not own or not own.startswith("/"):
        return None
    uid = os.geteuid() if uid is None else uid
    parts = [p for p in own.split("/") if p]
    found = None
    for depth in range(len(parts), 0, -1):
        path = "/" + "/".join(parts[:depth])
        full = mount + path
        try:
            if os.stat(full).st_uid != uid:
                break
            with open(os.path.join(full, "cgroup.controllers")) as f:
                controllers = f.read().split()
        except OSError:
            break
        if not all(c in controllers for c in WANTED):
            break
        found = path
    return found


def container_cgroup(base: str, container_id: str) -> str:
    """The cgroup path of one container below the delegated ``base``."""
    return f"{base.rstrip('/')}/portside-{container_id[:64]}"


_BASE: list[str | None] = []


def delegated_base() -> str | None:
    """:func:`delegated_cgroup` of this process, looked up once."""
    if not _BASE:
        _BASE.append(delegated_cgroup())
    return _BASE[0]


def cgroup_path(container_id: str) -> str:
    """A rootless container's ``cgroupsPath``: below the delegated subtree when there is one,
    else root mode's ``/portside/<id>``, which a user cannot create (so it never exists)."""
    base = delegated_base()
    return container_cgroup(base, container_id) if base else f"/portside/{container_id}"
