"""Freezes that outlive the process that made them, and how the next command finds and ends them.

Pausing a container freezes its cgroup: kernel state, not something the container's record holds.
Two things freeze a container:

* ``pause`` (and ``unpause``), which mean to last: afterwards the record says ``paused``;
* ``commit``, which freezes it only while it reads the container's upper dir.

A process killed between asking the runtime and writing the record (SIGKILL, the OOM killer, a
closed terminal, a restarted notebook kernel) used to leave the two disagreeing for good: a frozen
container that every command called running, ``exec`` failing on runc's "paused", ``unpause``
refusing because the record was not paused.

So every change to the freezer is bracketed by a **trace**: the file ``containers/<id>/freeze``,
created before the runtime is asked and removed once the change is complete (thawed again, or the
record saved). Its owner holds an exclusive ``flock`` on it the whole time, and the file names the
operation, the owner's pid and its start time (for people reading it; the lock is the proof). The
kernel drops a ``flock`` when its holder dies, however it dies, and a pid reused by another process
cannot hold it, so:

* a trace whose lock is held: an operation is under way; it is left alone;
* a trace whose lock is free: its owner died mid-way. Whoever finds it (:func:`reconcile`, run by
  :meth:`Lifecycle.refresh <portside.engine.runtime.lifecycle.Lifecycle.refresh>` for every up
  container) *settles* it: a ``commit``'s freeze is thawed (it was never meant to outlive the
  commit); for ``pause``/``unpause`` the freezer's state is what the user now has. Then the record
  is made to say what the freezer says, and the trace is removed.

Two operations that freeze take turns on the trace's lock (a ``pause`` waits for a ``commit`` to
thaw, then pauses), and an operation that finds a dead owner's trace settles it before its own work.

Cost: a reader (``ps``, ``inspect``) looks at one file per up container (:func:`suspicious`), and
reads the freezer only for a container whose record says paused; the runtime is asked only when a
trace is found.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path

from portside.engine.errors import EngineError

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Iterator

    from .containers import ContainerPaths, ContainerRecord
    from .lifecycle import Lifecycle


#: Operations whose freeze must not outlive them: a dead owner's is thawed.
TEMPORARY = frozenset({"commit"})


def trace_path(paths: ContainerPaths) -> Path:
    """Where a container's freeze trace lives (in its folder: removed with it)."""
    return paths.dir / "freeze"


def _start_time(pid: int) -> int:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rpartition(b")")[2].split()[19])
    except (OSError, IndexError, ValueError):
        return 0


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (not unlinked, nor replaced, meanwhile)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (own.st_dev, own.st_ino) == (st.st_dev, st.st_ino)


def _claim(path: Path, *, wait: bool) -> int | None:
    """The trace's fd with its lock held; ``wait`` creates it and waits for a live owner, else
    None when there is no trace or a live owner holds it."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if wait else 0), 0o600)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        if _same_file(fd, path):
            return fd
        # The previous holder removed it after we opened it: the next one is a new trace.
        os.close(fd)
        if not wait:
            return None


def _read_doc(fd: int) -> dict[str, Any] | None:
    """What a trace says; None when it is empty (a new file, or its owner died before writing
    it, i.e. before it asked the runtime anything)."""
    os.lseek(fd, 0, os.SEEK_SET)
    data = os.read(fd, 4096)
    if not data.strip():
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        return {"op": "unknown"}
    return doc if isinstance(doc, dict) else {"op": "unknown"}


def frozen(lc: Lifecycle, rec: ContainerRecord) -> bool | None:
    """Whether the container's processes are frozen: its cgroup's freezer when it can be read,
    else the runtime's state; None when neither can tell (the container is gone)."""
    from .cgroups import Cgroup, cgroup_path_for

    try:
        return Cgroup(cgroup_path_for(rec.id)).frozen()
    except (EngineError, OSError):
        pass
    try:
        state = lc.runtime_of(rec).state(rec.id)
    except EngineError:
        return None
    status = (state or {}).get("status")
    return {"paused": True, "running": False, "created": False}.get(status or "")


def _settle(lc: Lifecycle, rec: ContainerRecord, doc: dict[str, Any]) -> None:
    """Finish what a dead owner's trace left: thaw a freeze that was meant to be temporary."""
    if doc.get("op") not in TEMPORARY or not frozen(lc, rec):
        return
    with contextlib.suppress(EngineError):
        lc.runtime_of(rec).resume(rec.id)
    if frozen(lc, rec):
        # The runtime refused (a cgroup v1 freezer stuck in FREEZING reads as not paused to
        # runc): thaw the cgroup itself.
        from .cgroups import Cgroup, cgroup_path_for

        with contextlib.suppress(EngineError, OSError):
            Cgroup(cgroup_path_for(rec.id)).thaw()


class Trace:
    """A held freeze trace (see :func:`traced`)."""

    def __init__(self, path: Path, fd: int, op: str) -> None:
        self.path = path
        self.fd = fd
        self.op = op
        self.released = False

    def step(self, name: str) -> None:
        """A fault point named ``<op>-<name>`` (``PORTSIDE_FAULT``: crash tests die here)."""
        from portside.engine import faults  # here: readers import this module, signal costs

        faults.point(f"{self.op}-{name}")

    def release(self) -> None:
        """The change is complete (thawed again, or the record saved): remove the trace."""
        if not self.released:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self.released = True


@contextlib.contextmanager
def traced(lc: Lifecycle, rec: ContainerRecord, op: str) -> Iterator[Trace]:
    """Hold the container's freeze trace while ``op`` changes its freezer.

    Waits while another live operation holds it; settles a dead owner's first. The caller calls
    :meth:`Trace.release` once its change is complete; a trace not released (the operation failed
    half-way) stays for the next command to settle.
    """
    path = trace_path(lc.paths(rec))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _claim(path, wait=True)
    assert fd is not None
    try:
        old = _read_doc(fd)
        if old is not None:
            _settle(lc, rec, old)
        doc = {"op": op, "pid": os.getpid(), "start": _start_time(os.getpid()),
               "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(doc).encode(), 0)
        trace = Trace(path, fd, op)
        trace.step("traced")
        yield trace
    finally:
        os.close(fd)


@contextlib.contextmanager
def frozen_for(lc: Lifecycle, rec: ContainerRecord, op: str) -> Iterator[None]:
    """Freeze a running container for the block (``commit``), thawing it afterwards, with a
    trace that lets the next command thaw it if this process dies first.

    Fault points (``PORTSIDE_FAULT``): ``<op>-traced`` before the freeze, ``<op>-frozen`` once
    frozen, ``<op>-thawed`` after the thaw, before the trace is removed.
    """
    with traced(lc, rec, op) as trace:
        if frozen(lc, rec):
            # Paused by the user while we waited for the trace: read it as it is, leave it so.
            yield
            trace.release()
            return
        lc.runtime_of(rec).pause(rec.id)
        try:
            trace.step("frozen")
            yield
        finally:
            lc.runtime_of(rec).resume(rec.id)
        trace.step("thawed")
        trace.release()


def suspicious(lc: Lifecycle, rec: ContainerRecord) -> bool:
    """Whether an up container's record may disagree with its freezer: a trace exists, or the
    record says paused and the freezer says not. Cheap: readers ask it for every container."""
    if os.path.lexists(trace_path(lc.paths(rec))):
        return True
    return rec.status == "paused" and frozen(lc, rec) is False


def reconcile(lc: Lifecycle, rec: ContainerRecord, *, save: bool = True) -> None:
    """Settle a dead owner's trace, then make an up container's record say what its freezer says.

    Args:
        lc: the lifecycle.
        rec: a running or paused container whose init has not exited (modified in place).
        save: write a changed state (with a ``pause``/``unpause`` event).
    """
    path = trace_path(lc.paths(rec))
    settled = False
    if os.path.lexists(path):
        fd = _claim(path, wait=False)
        if fd is None:
            return  # a live operation holds it: what it is doing is not finished
        try:
            doc = _read_doc(fd)
            if doc is not None:
                _settle(lc, rec, doc)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            settled = True
        finally:
            os.close(fd)
    if not settled and rec.status != "paused":
        return
    is_frozen = frozen(lc, rec)
    if is_frozen is None:
        return  # gone: the exit path of refresh() tells the truth about that
    want = "paused" if is_frozen else "running"
    if rec.status == want:
        return
    seen = (rec.status, rec.monitor_pid)
    rec.state.update(Status=want, Paused=is_frozen, Running=True)
    if save:
        from portside.engine.errors import NotFound

        with contextlib.suppress(NotFound):  # removed meanwhile
            lc.store.save(rec, "pause" if is_frozen else "unpause", expect=seen)


def discard(paths: ContainerPaths) -> None:
    """Remove a dead owner's trace of a container that has stopped (nothing is frozen now)."""
    path = trace_path(paths)
    if not os.path.lexists(path):
        return
    fd = _claim(path, wait=False)
    if fd is not None:
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        finally:
            os.close(fd)
