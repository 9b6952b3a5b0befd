"""Processes of a rootless container without a cgroup to list them from."""

from __future__ import annotations

import os


def pid_namespace_members(init_pid: int) -> list[int]:
    """The pids (as this process sees them) of every process in ``init_pid``'s pid namespace,
    sorted: what ``runc ps`` reads from the container's cgroup when it has one."""
    try:
        want = os.stat(f"/proc/{init_pid}/ns/pid").st_ino
    except OSError:
        return []
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry.name}/ns/pid").st_ino == want:
                found.append(int(entry.name))
        except OSError:
            continue
    return sorted(found)
