"""Starts that did not finish: a ``run`` or ``start`` killed before the container's state was saved.

Starting a container takes several steps -- mount its root filesystem, attach its network
sandbox (namespace, veth, address lease, port rules), write the bundle, hand it to its monitor,
which runs it -- and only the last one saves the state ``running``. A process killed in between
leaves those resources behind on a record that still says ``created`` (or ``exited``), and may
even leave the container running under its monitor with nobody having recorded it.

So the starter writes a *marker* (``containers/<id>/starting``) before the first step and
removes it once the state is saved, and it holds the container's lock
(:meth:`~.containers.ContainerStore.lock`) throughout. Whoever later holds that lock and still
finds the marker knows the starter died mid-way, and :func:`settle` finishes the job:

* the monitor runs the container → record it ``running`` (with its monitor and pid);
* the monitor is still starting it → leave it (the next look decides);
* otherwise → release everything (runtime state, cgroup, root filesystem mount, network
  sandbox) and record the container ``exited`` (with its exit status if it ran); with ``--rm``
  it is removed.

Readers (``ps``, ``inspect``) check for the marker with one ``stat`` per stopped container, so
the common case costs nothing noticeable.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from portside.engine.errors import EngineError, NotFound

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from .containers import ContainerPaths, ContainerRecord
    from .lifecycle import Lifecycle

#: Exit status recorded for a start that was interrupted before the container ran.
INTERRUPTED_EXIT_CODE = 128


def marker(paths: ContainerPaths) -> Path:
    return paths.dir / "starting"


def pending(paths: ContainerPaths) -> bool:
    """Whether a start of this container began and has not finished (or was killed)."""
    return os.path.exists(marker(paths))


def begin(paths: ContainerPaths, phase: str = "start") -> None:
    """Mark the container as being started (the caller holds its lock). The caller calls
    :func:`done` once the state is saved, or once its own failure path has cleaned up; only a
    killed process leaves the marker, for :func:`settle`.

    ``phase``: ``"create"`` while ``create`` seeds volumes from the mounted root filesystem (a
    container killed then was never complete, and is removed), else ``"start"``.
    """
    from portside.engine.store.leftovers import owner_token

    with open(marker(paths), "w") as f:
        f.write(f"{phase} {owner_token()}\n")  # the owner, for a person looking


def done(paths: ContainerPaths) -> None:
    """The start is over (saved, or failed and cleaned up)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(marker(paths))


def find_monitor(container_id: str) -> int:
    """The pid of the monitor process of ``container_id`` (0 when there is none): scans
    ``/proc`` for its command line, the only place that names it before its pid is saved."""
    from .monitor_process import MARKER

    wanted = b"\0" + MARKER.encode() + b"\0" + container_id.encode() + b"\0"
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if wanted in f.read():
                    return int(name)
        except OSError:
            continue
    return 0


def settle(lc: Lifecycle, rec: ContainerRecord) -> ContainerRecord | None:
    """Finish what a killed start left; the caller holds the container's lock and ``rec`` was
    read under it. Returns the record as it is now (None when it was removed: ``--rm``)."""
    from portside.engine.process import process_alive

    from .containers import now_rfc3339
    from .lifecycle import _read_exit

    paths = lc.paths(rec)
    try:
        phase = marker(paths).read_text().split(" ", 1)[0]
    except FileNotFoundError:
        return rec
    if phase == "create":
        # killed while seeding its volumes: the container was never complete; as create's own
        # failure path does, release what it made and forget it
        lc.unmount_rootfs(rec)
        manager = lc._volume_manager()
        if manager is not None:
            manager.release(rec.id, remove_anonymous=True)
        lc.store.delete(rec)
        return None
    state = None
    if lc._runtime_knows(rec):
        with contextlib.suppress(EngineError):
            state = lc.runtime_of(rec).state(rec.id)
    status = (state or {}).get("status")
    monitor = find_monitor(rec.id)
    if monitor and process_alive(monitor, rec.id):
        if status not in ("running", "paused"):
            return rec  # its monitor is still starting it: the next look decides
        # The start went through; only its record was not saved.
        adopt(lc, rec, monitor, status=status, pid=int((state or {}).get("pid") or 0))
        return rec
    # No monitor: nothing will ever report on this run. Stop what may still run, release it all.
    if status is not None:
        with contextlib.suppress(EngineError):
            lc.runtime_of(rec).delete(rec.id, force=True)
    exit_doc = _read_exit(paths.exit_file)
    release(lc, rec)
    if rec.host_config.get("AutoRemove"):
        lc._release_volumes(rec, remove_anonymous=True)
        lc.store.delete(rec)
        return None
    stamp, ts = now_rfc3339()
    if exit_doc is not None:
        code, error = int(exit_doc.get("exit_code", 255)), exit_doc.get("error") or ""
    else:
        code, error = INTERRUPTED_EXIT_CODE, "start interrupted: the process starting it died"
    rec.state.update(Status="exited", Running=False, Paused=False, Restarting=False, Pid=0,
                     ExitCode=code, Error=error, FinishedAt=stamp, FinishedAtTs=ts)
    with contextlib.suppress(NotFound):
        lc.store.save(rec, "die", exitCode=str(code))
    done(paths)
    return rec


def adopt(lc: Lifecycle, rec: ContainerRecord, monitor: int, *, status: str = "running",
          pid: int = 0) -> None:
    """Record the start a killed starter did not: ``monitor`` runs the container (the monitor
    itself calls this when its exit cleanup finds the marker). The caller holds the lock."""
    from .containers import now_rfc3339

    stamp, ts = now_rfc3339()
    rec.monitor_pid = monitor
    rec.state.update(Status=status, Running=True, Paused=status == "paused", Restarting=False,
                     Pid=pid, ExitCode=0, Error="", StartedAt=stamp, StartedAtTs=ts)
    _record_network(lc, rec)
    lc.store.save(rec, "start")
    done(lc.paths(rec))


def release(lc: Lifecycle, rec: ContainerRecord) -> None:
    """Release what a start may have set up, whether or not the record knows of it."""
    lc.finalize(rec)
    if has_sandbox(lc, rec.id):
        with contextlib.suppress(EngineError):
            lc.network_manager.detach(rec.id)
        rec.extra.pop("NetworkSettings", None)
        rec.extra.pop("EtcFiles", None)


def has_sandbox(lc: Lifecycle, container_id: str) -> bool:
    """Whether a network sandbox is recorded for the container (the attach records it before
    it makes anything, so a killed one is found here too)."""
    try:
        return bool(lc.db.query("SELECT 1 FROM net_sandboxes WHERE container_id = ?",
                                       (container_id,)))
    except Exception:  # noqa: BLE001 - no network table yet: no sandbox ever made
        return False


def _record_network(lc: Lifecycle, rec: ContainerRecord) -> None:
    """Fill ``NetworkSettings`` for a container the killed starter attached but never saved."""
    from .lifecycle import record_attachment

    if rec.extra.get("NetworkSettings") is not None or not has_sandbox(lc, rec.id):
        return
    with contextlib.suppress(EngineError):
        record_attachment(rec, lc.network_manager.attachment(rec.id))
