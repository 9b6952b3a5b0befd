"""Leftovers: temporary work tied to its owner, and the reaping of what dead owners left.

Every multi-step operation writes things before its result is recorded: ``load`` unpacks the
archive in ``tmp/``, every blob is written in ``content/ingest/`` before it is renamed into
place, a layer is unpacked in ``snapshots/.staging/``, a build step works in
``build-cache/tmp/``, and the blobs and snapshots an operation has written are protected from
garbage collection by *lease* rows until the image that uses them is recorded. A process killed
with SIGKILL runs no ``finally`` block, so all of that stays behind. Nothing here is ever
half-visible (images appear in one transaction), but it takes space, and "live work of another
process" must never be mistaken for it: two notebooks and a terminal may use one root at once.

So every such thing is tied to its *owner*, in a way any later process can test:

* **held folders** (:class:`HeldDir`): ``<parent>/<prefix>.<16 hex>``; the creator holds an
  exclusive ``flock`` on the folder itself for as long as it uses it. The kernel drops the lock
  when the owner dies, however it dies, so "can I take the lock?" is exactly "is the owner dead?"
  (pid reuse and pid namespaces cannot fool it).
* **ingests** (``content/ingest/<ref>/lock``, see :mod:`.content`): the same, with a lock file.
* **snapshots being unpacked** (``snapshots/.staging/<chain hex>-<random>``): the chain id's
  lock (see :mod:`.snapshots`).
* **leases** (rows of the ``leases`` table): the owner's pid and process start time
  (:func:`owner_token`), checked against ``/proc`` (:func:`owner_alive`).

Each time an engine opens its store (every command does), :func:`portside.engine.store.
anything_left` looks whether those folders (and ``snapshots/.trash``) are empty and no lease row
exists -- the usual case, about 15 microseconds, see ``bench/bench_startup.py`` -- and only
otherwise imports this module and calls :func:`reap`. What belongs to a dead owner is removed
(mounts under it first: a killed build or bootstrap can leave some, and a killed build's ``RUN``
container is stopped); a lease of a dead owner is dropped and what it protected is garbage
collected (blobs and snapshots no image uses). Folders of older portside versions, which hold
no lock, are removed once untouched for an hour.

One exception keeps data on purpose: an interrupted pull. Its partly downloaded blob (a named
ingest) and the blobs it completed are kept for ``resume-window`` seconds (config; default one
hour) after its last progress, so that pulling again resumes rather than starts over; after that
any command reclaims them. ``system check`` reports all of these as reclaimable (exit 0), and
``system check --repair`` reclaims them at once.

Containers have their own form of this (a start killed half-way), settled by the next command
that looks at the container: see :mod:`portside.engine.runtime.interrupted`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Callable

    from ..image.store import ImageStore
    from .db import Database

__all__ = ["HeldDir", "owner_token", "owner_alive", "reap", "survey", "sweep", "Leftover",
           "DEFAULT_RESUME_WINDOW", "ABANDONED", "resume_window"]

#: How long the data of an interrupted pull is kept for the next pull to resume (seconds).
DEFAULT_RESUME_WINDOW = 3600.0
#: A folder that is not a held one (written by an older version of portside) is removed once
#: it has not changed for this long.
LEGACY_AGE = 3600.0

_HEX = frozenset("0123456789abcdef")


def _is_held_name(name: str) -> bool:
    """``<prefix>.<16 hex>``, as :class:`HeldDir` names its folders."""
    prefix, dot, tail = name.rpartition(".")
    return bool(dot) and prefix.isalpha() and prefix.islower() and len(tail) == 16 \
        and _HEX.issuperset(tail)


def _is_staging_name(name: str) -> bool:
    """``<chain id hex>-<random hex>``, as :meth:`.snapshots.Snapshots.create` stages."""
    chain, dash, tail = name.partition("-")
    return bool(dash) and len(chain) == 64 and _HEX.issuperset(chain) and bool(tail) \
        and _HEX.issuperset(tail)
#: The owner of the lease rows a failed (not killed) operation left to expire.
ABANDONED = "-"


# ------------------------------------------------------------------------------ owners


_SELF: tuple[int, str] | None = None


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, /proc/PID/stat field 22);
    None when there is no such process (or only its zombie); "" when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return ""  # hidden (hidepid): exists, start unknown
    if not fields or fields[0] in (b"Z", b"X"):
        return None
    return fields[19].decode()


def owner_token() -> str:
    """This process as an owner: ``"<pid>:<start time>"`` (see :func:`owner_alive`)."""
    global _SELF
    pid = os.getpid()
    if _SELF is None or _SELF[0] != pid:  # computed once per process (and again after a fork)
        _SELF = (pid, f"{pid}:{_start_time(pid) or ''}")
    return _SELF[1]


def owner_alive(token: str, pid: int = 0) -> bool:
    """Whether the process an :func:`owner_token` names still runs: same pid and same start
    time, so a recycled pid does not count. ``pid``: rows written before owners had tokens."""
    text, _, start = token.partition(":")
    if text.isdigit():
        pid = int(text)
    elif token:
        return False  # abandoned
    if pid <= 0:
        return False
    seen = _start_time(pid)
    if seen is None:
        return False
    return seen == "" or not start or seen == start


# ------------------------------------------------------------------------------ held folders


class HeldDir:
    """A new folder under ``parent`` that this process holds until :meth:`close`.

    The name is ``<prefix>.<16 hex digits>``; the folder itself is ``flock``\\ ed, so
    :func:`reap` in any process can tell it from the leftovers of a dead owner. Use it as a
    context manager, or call :meth:`close` (``remove=False`` keeps the folder's contents, for a
    caller that moved them elsewhere).

    Example::

        with HeldDir(engine.tmp_dir, "load") as work:
            unpack(archive, work.path)
    """

    def __init__(self, parent: Path, prefix: str) -> None:
        import fcntl

        parent = Path(parent)
        parent.mkdir(parents=True, exist_ok=True)
        while True:
            path = parent / f"{prefix}.{os.urandom(8).hex()}"
            os.mkdir(path, 0o700)
            # A reaper may test the new folder between mkdir and flock: it then removes it
            # (empty, unlocked) and we must start again with another name -- also when it is
            # gone before we could even open it (seen with nine imports at once).
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                st = os.stat(path, follow_symlinks=False)
                same = (st.st_ino, st.st_dev) == (os.fstat(fd).st_ino, os.fstat(fd).st_dev)
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.path = path
        self._fd: int | None = fd

    def close(self, remove: bool = True) -> None:
        """Remove the folder (unless ``remove`` is false), then release it. Idempotent."""
        if self._fd is None:
            return
        try:
            if remove:
                _remove_tree(self.path, mounts=False)  # the owner unmounted what it mounted
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> HeldDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if self._fd is not None:
                os.close(self._fd)  # never keep the lock of a dropped handle
        except (AttributeError, OSError):
            pass


def _try_hold(path: Path) -> int | None:
    """The locked descriptor of folder ``path`` when its owner is gone; None while it lives."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


# ------------------------------------------------------------------------------ removal


def _tree_size(path: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + dirnames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


def _remove_tree(path: Path, *, mounts: bool = True) -> bool:
    """Delete ``path`` and everything below it. With ``mounts``, first unmount what is mounted
    there (a killed build or bootstrap can leave mounts) and never descend into a mount.
    Returns whether the tree is gone."""
    import shutil
    import stat

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return True
    from .mount import mount_points

    points = mount_points(path) if mounts else []
    if points:
        from .mount import LinuxMounter

        mounter = LinuxMounter()
        for point in reversed(points):  # the last mounted (deepest) first
            try:
                mounter.unmount(point, lazy=True)
            except Exception:  # noqa: BLE001 - checked below
                pass
        if mount_points(path):
            return False  # refuse to delete through a mount

    def onerror(func: Callable[..., Any], name: str, exc_info: Any) -> None:
        exc = exc_info[1]
        if isinstance(exc, FileNotFoundError):
            return
        if isinstance(exc, PermissionError):  # a layer's read-only folder (matters without root)
            try:
                os.chmod(os.path.dirname(name), 0o700)
                func(name)
                return
            except OSError:
                pass
        raise exc

    try:
        shutil.rmtree(path, onerror=onerror)
    except OSError:
        return False
    return True


# ------------------------------------------------------------------------------ the sweep


class Leftover:
    """One thing a dead owner left: ``kind`` (``tmp``, ``ingest``, ``staging``, ``build``,
    ``trash``, ``lease``), where (relative to the root, or a summary), how many bytes;
    ``resumable`` for the data of an interrupted pull, with ``kept_until`` (epoch seconds) while
    it is kept for a resume; ``removed`` once reclaimed."""

    __slots__ = ("kind", "where", "size", "kept_until", "removed", "resumable")

    def __init__(self, kind: str, where: str, size: int = 0, kept_until: float = 0.0,
                 removed: bool = False, resumable: bool = False) -> None:
        self.kind, self.where, self.size = kind, where, size
        self.kept_until, self.removed = kept_until, removed
        self.resumable = resumable or bool(kept_until)

    def describe(self) -> str:
        """One line for ``system check``."""
        size = f" ({_human(self.size)})" if self.size else ""
        if self.resumable:
            line = f"data of an interrupted pull: {self.where}{size}"
            if self.kept_until and not self.removed:
                stamp = time.strftime("%H:%M:%S", time.localtime(self.kept_until))
                line += f", kept for a retry until {stamp}"
            return line
        what = {"tmp": "temporary folder", "ingest": "unfinished blob write",
                "staging": "half-unpacked layer", "build": "build workspace",
                "trash": "removed snapshot not yet deleted", "lease": "unrecorded data",
                }.get(self.kind, self.kind)
        return f"{what} of a process that died: {self.where}{size}"

    def __repr__(self) -> str:
        return f"Leftover({self.kind!r}, {self.where!r}, {self.size})"


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def resume_window(config: Any) -> float:
    """Seconds an interrupted pull's data is kept (the configuration's ``resume-window``)."""
    value = getattr(config, "resume_window", None)
    return DEFAULT_RESUME_WINDOW if value is None else float(value)


def reap(root: str | os.PathLike, db: Database, image_store: Callable[[], ImageStore], *,
         window: float = DEFAULT_RESUME_WINDOW) -> list[Leftover]:
    """Reclaim what dead owners left under ``root`` (called as the store opens).

    Cheap when there is nothing to do; never touches live work of any process; keeps an
    interrupted pull's data within its resume ``window`` (seconds). Returns what was
    reclaimed. ``image_store`` gives the root's image store, made only when a dead owner's
    lease must be looked at.
    """
    return sweep(root, db, image_store, window=window, remove=True, keep_resumable=True)


def survey(root: str | os.PathLike, db: Database, image_store: Callable[[], ImageStore], *,
           window: float = DEFAULT_RESUME_WINDOW) -> list[Leftover]:
    """What :func:`reap` would reclaim now plus what it keeps for a resume, removing nothing."""
    return sweep(root, db, image_store, window=window, remove=False, keep_resumable=True)


def sweep(root: str | os.PathLike, db: Database, image_store: Callable[[], ImageStore], *,
          window: float = DEFAULT_RESUME_WINDOW, remove: bool,
          keep_resumable: bool) -> list[Leftover]:
    """Find (and with ``remove``, reclaim) the leftovers of dead owners in the store at
    ``root`` (its database ``db``; ``image_store`` as for :func:`reap`).

    ``keep_resumable``: leave an interrupted pull's data alone within its resume ``window``
    (it is still listed, with ``kept_until``); false reclaims it too (``system check
    --repair``).
    """
    root = Path(root)  # (the folders are store.LEFTOVER_FOLDERS)
    found: list[Leftover] = []
    now = time.time()
    for kind, parent in (("tmp", root / "tmp"), ("build", root / "build-cache" / "tmp")):
        entries = _entries(parent)
        if entries:
            found += _sweep_held(kind, entries, remove, now,
                                 _unwind_workspace if kind == "build" else None)
    entries = _entries(root / "content" / "ingest")
    if entries:
        found += _sweep_ingests(entries, remove, keep_resumable, now, window)
    entries = _entries(root / "snapshots" / ".staging")
    if entries:
        found += _sweep_staging(root / "snapshots", entries, remove, now)
    entries = _entries(root / "snapshots" / ".trash")
    for entry in entries:
        item = Leftover("trash", entry.path, _tree_size(Path(entry.path)))
        if remove:
            item.removed = _remove_tree(Path(entry.path))
        found.append(item)
    found += _sweep_leases(db, image_store, window, remove, keep_resumable, now)
    prefix = str(root).rstrip("/") + "/"
    for item in found:
        item.where = item.where.removeprefix(prefix)
    return found


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _legacy_dead(entry: os.DirEntry, now: float) -> bool:
    try:
        return now - entry.stat(follow_symlinks=False).st_mtime > LEGACY_AGE
    except FileNotFoundError:
        return False


def _sweep_held(kind: str, entries: list[os.DirEntry], remove: bool, now: float,
                unwind: Callable[[Path], None] | None) -> list[Leftover]:
    found = []
    for entry in entries:
        path = Path(entry.path)
        if not _is_held_name(entry.name):
            # not a held folder: from an older version (or a stray file); by age only
            if not _legacy_dead(entry, now):
                continue
            item = Leftover(kind, entry.path, _tree_size(path))
            if remove:
                if unwind is not None:
                    unwind(path)
                item.removed = _remove_tree(path)
            found.append(item)
            continue
        fd = _try_hold(path)
        if fd is None:
            continue  # alive (or gone meanwhile)
        try:
            item = Leftover(kind, entry.path, _tree_size(path))
            if remove:
                if unwind is not None:
                    unwind(path)
                item.removed = _remove_tree(path)
            found.append(item)
        finally:
            os.close(fd)
    return found


def _sweep_ingests(entries: list[os.DirEntry], remove: bool, keep_resumable: bool, now: float,
                   window: float) -> list[Leftover]:
    import shutil

    from .content import _lock_ingest_dir

    found = []
    for entry in entries:
        path = Path(entry.path)
        if not entry.is_dir(follow_symlinks=False):
            if remove:
                path.unlink(missing_ok=True)
            found.append(Leftover("ingest", entry.path, 0, removed=remove))
            continue
        fd = _lock_ingest_dir(path, blocking=False)
        if fd is None:
            continue  # a live writer
        try:
            try:
                st = os.stat(path / "data")
                size, last = st.st_size, st.st_mtime
            except FileNotFoundError:
                size, last = 0, entry.stat().st_mtime
            kept = 0.0
            # an unnamed ingest ("tmp-…") can never be resumed; a named one (a pull's) can
            resumable = not entry.name.startswith("tmp-") and size > 0
            if resumable and keep_resumable and now < last + window:
                kept = last + window
            item = Leftover("ingest", entry.path, size, kept_until=kept, resumable=resumable)
            if remove and not kept:
                shutil.rmtree(path, ignore_errors=True)
                item.removed = not path.exists()
            found.append(item)
        finally:
            os.close(fd)
    return found


def _sweep_staging(snapshots: Path, entries: list[os.DirEntry], remove: bool,
                   now: float) -> list[Leftover]:
    import fcntl

    found = []
    rest = []
    for entry in entries:
        if not _is_staging_name(entry.name):
            rest.append(entry)
            continue
        # <chain hex>-<random>: being unpacked by whoever holds that chain id's lock
        lock = snapshots / ".locks" / entry.name.split("-", 1)[0]
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            path = Path(entry.path)
            item = Leftover("staging", entry.path, _tree_size(path))
            if remove:
                item.removed = _remove_tree(path)
            found.append(item)
        finally:
            os.close(fd)
    if rest:
        found += _sweep_held("staging", rest, remove, now, None)
    return found


def _unwind_workspace(path: Path) -> None:
    """Before a dead build's workspace goes: stop the ``RUN`` container it may have left
    running (``runc run`` outlives a killed build), and remove its cgroup."""
    import json

    try:
        doc = json.loads((path / "container.json").read_text())
    except (OSError, ValueError):
        return
    import subprocess

    try:
        subprocess.run([doc["runtime"], "--root", doc["root"], "delete", "--force", doc["id"]],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30, check=False)
    except (OSError, KeyError, subprocess.TimeoutExpired):
        pass
    if doc.get("cgroup"):
        from portside.engine.errors import EngineError
        from portside.engine.runtime.cgroups import Cgroup

        cgroup = Cgroup(doc["cgroup"])
        try:
            if cgroup.exists():
                cgroup.remove()
        except EngineError:
            pass


def _sweep_leases(db: Database, image_store: Callable[[], ImageStore], window: float,
                  remove: bool, keep_resumable: bool, now: float) -> list[Leftover]:
    try:
        rows = db.query("SELECT lease, owner, pid, progress, resource FROM leases")
    except Exception:  # noqa: BLE001 - a database without the table (never opened by images)
        return []
    if not rows:
        return []
    verdict: dict[tuple[str, int], bool] = {}
    dead: dict[tuple[str, str, int], list[str]] = {}
    kept: dict[tuple[str, str, int], float] = {}
    rows_progress: dict[tuple[str, str, int], float] = {}
    for row in rows:
        owner = (row["owner"], row["pid"])
        if owner not in verdict:
            verdict[owner] = owner_alive(*owner)
        if verdict[owner]:
            continue
        key = (row["lease"], row["owner"], row["pid"])
        rows_progress[key] = row["progress"]
        until = row["progress"] + window if row["progress"] > 0 and window > 0 else 0.0
        if keep_resumable and until > now:
            kept[key] = max(kept.get(key, 0.0), until)
        dead.setdefault(key, []).append(row["resource"])
    if not dead:
        return []
    store = image_store()
    reclaim = {key: res for key, res in dead.items() if key not in kept}
    found = []
    for key, (blobs, chains, size) in store.unreferenced_of(dead).items():
        if not blobs and not chains:
            continue
        where = f"{blobs} blob(s) and {chains} snapshot(s) that no image uses"
        found.append(Leftover("lease", where, size, kept_until=kept.get(key, 0.0),
                              removed=remove and key in reclaim,
                              resumable=rows_progress.get(key, 0.0) > 0))
    if remove and reclaim:
        store.release_leases(reclaim)
    return found
