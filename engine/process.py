"""Small process helpers shared by the store, the builder and the runtime.

* :func:`pid_alive`: whether a pid exists (any user's);
* :func:`process_alive`: whether it lives (not a zombie), optionally checking its command line;
* :func:`pidfd`: a descriptor that becomes readable when it exits, for :func:`wait_until`;
* :func:`wait_until`: wait for a condition with a deadline, woken early by such a descriptor;
* :func:`wait_gone`: wait for a process that is not our child to exit.
"""

from __future__ import annotations

import os
import time


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (it may belong to another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_alive(pid: int, marker: str = "") -> bool:
    """True when ``pid`` lives (not a zombie) and, with ``marker``, its argv mentions it."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rpartition(b")")[2].split()[0] == b"Z":
                return False
        if marker:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return marker.encode() in f.read()
        return True
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def wait_until(predicate, timeout: float, interval: float = 0.005,
               wake: int | None = None) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; returns its last value.

    ``wake``: a descriptor (e.g. a process's pidfd) whose readiness cuts a sleep short, for the
    event the predicate waits for, so it is seen at once rather than at the next poll.
    """
    deadline = time.monotonic() + timeout
    delay = interval
    while True:
        if predicate():
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if wake is None:
            time.sleep(min(delay, left))
        else:
            import select

            if select.select([wake], [], [], min(delay, left))[0]:
                wake = None  # it stays readable: poll from now on
        delay = min(delay * 1.5, 0.05)


def pidfd(pid: int, marker: str = "") -> int | None:
    """A pidfd of ``pid`` while it lives (with ``marker`` in its argv), for :func:`wait_until`'s
    ``wake``; None when it is gone or the kernel has no pidfds. The caller closes it."""
    if pid <= 0 or not hasattr(os, "pidfd_open"):
        return None
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    if not process_alive(pid, marker):  # checked after the open: the pid cannot be reused now
        os.close(fd)
        return None
    return fd


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    """Wait until ``pid`` (not our child) has exited: gone from /proc or a zombie. Returns
    whether it did within ``timeout`` seconds."""
    fd = pidfd(pid)
    try:
        return wait_until(lambda: not process_alive(pid), timeout, wake=fd)
    finally:
        if fd is not None:
            os.close(fd)
