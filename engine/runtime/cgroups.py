"""Control groups: where a container's processes are counted, limited and frozen.

A *cgroup* is a directory in a special filesystem; writing a pid into its ``cgroup.procs`` moves the
process there, and the files beside it report usage (``memory.current``) or set limits
(``memory.max``). Hosts arrange these directories in one of three layouts:

``v2`` (unified)
    one tree at ``/sys/fs/cgroup``; every controller's files sit in the same directory:
    ``memory.current``, ``memory.max``, ``cpu.stat`` (``usage_usec``), ``pids.current``,
    ``cgroup.freeze`` / ``cgroup.events`` (``frozen 1``), ``cgroup.procs``.
``v1``
    one tree per controller: ``/sys/fs/cgroup/memory/<path>/memory.usage_in_bytes``,
    ``cpuacct/<path>/cpuacct.usage`` (nanoseconds), ``pids/<path>/pids.current``,
    ``freezer/<path>/freezer.state`` (``THAWED``/``FREEZING``/``FROZEN``). Controllers may share a
    tree (``cpu,cpuacct``).
``hybrid``
    v1 trees for the controllers plus an empty-of-controllers v2 tree at ``unified/``, used only to
    track processes. For limits and stats it is v1; the runtime still makes a directory under
    ``unified/`` that must be removed too.

The OCI runtime creates the container's cgroup from the spec's ``linux.cgroupsPath`` (one path,
applied in every hierarchy); :class:`Cgroup` reads and writes it afterwards, for ``stats``, ``top``,
``pause`` and ``update``, without asking the runtime.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from portside.engine.errors import RuntimeFailure

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Callable


DEFAULT_ROOT = Path("/sys/fs/cgroup")

#: v1 reports "no limit" as the largest page-aligned signed 64-bit number.
_V1_UNLIMITED = 0x7FFFFFFFFFFFF000


class CgroupLayout:
    """Which cgroup layout a host uses."""

    V1 = "v1"
    V2 = "v2"
    HYBRID = "hybrid"

    @staticmethod
    def detect(root: Path = DEFAULT_ROOT) -> str:
        """Return ``"v2"``, ``"hybrid"`` or ``"v1"`` for the cgroup mount at ``root``."""
        root = Path(root)
        if (root / "cgroup.controllers").exists():
            return CgroupLayout.V2
        if (root / "unified" / "cgroup.controllers").exists() or (root / "unified").is_dir():
            return CgroupLayout.HYBRID
        return CgroupLayout.V1


#: root → (its mtime, the hierarchy mount points under it): listing and resolving them is most of
#: the cost of a cgroup check, and they change only when a hierarchy is mounted or unmounted.
_HIERARCHIES: dict[str, tuple[int, list[str]]] = {}


def _hierarchies(root: str) -> list[str]:
    """The distinct hierarchies under a v1/hybrid ``root``, sorted by name (one per mount:
    ``cpu`` and ``cpuacct`` may be links to ``cpu,cpuacct``)."""
    try:
        stamp = os.stat(root).st_mtime_ns
    except OSError:
        return []
    cached = _HIERARCHIES.get(root)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    tops: list[str] = []
    seen: set[str] = set()
    base = os.path.realpath(root)
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return []
    for entry in entries:
        if not entry.is_dir():
            continue
        real = (os.path.realpath(entry.path) if entry.is_symlink()
                else os.path.join(base, entry.name))
        if real in seen:
            continue
        seen.add(real)
        tops.append(entry.path)
    _HIERARCHIES[root] = (stamp, tops)
    return tops


def cgroup_path_for(container_id: str) -> str:
    """The cgroup path (the spec's ``linux.cgroupsPath``) of a container: ``/portside/<id>``
    (rootless, below the user's delegated subtree: :mod:`portside.engine.rootless.cgroups`)."""
    from portside.engine.rootless import active

    if active():
        from portside.engine.rootless.cgroups import cgroup_path

        return cgroup_path(container_id)
    return f"/portside/{container_id}"


class Cgroup:
    """One container's cgroup, on any layout.

    Args:
        path: the cgroup path, e.g. ``/portside/<id>`` (as in the spec's ``cgroupsPath``).
        root: where the cgroup filesystems are mounted.
        rmdir: the call that removes a cgroup directory (a seam: unit tests on a plain tmp tree
            pass one that also deletes the fake control files).
    """

    def __init__(self, path: str, root: Path = DEFAULT_ROOT, *,
                 rmdir: Callable[[str], None] = os.rmdir) -> None:
        self.path = "/" + path.strip("/")
        self.root = Path(root)
        self.layout = CgroupLayout.detect(self.root)
        self._rmdir = rmdir

    def __repr__(self) -> str:
        return f"Cgroup({self.path!r}, layout={self.layout})"

    # ---- locating files -------------------------------------------------------------------

    def _hierarchy(self, controller: str) -> Path | None:
        """The mount point of the v1 hierarchy holding ``controller`` (``cpu,cpuacct`` counts)."""
        direct = self.root / controller
        if direct.is_dir():
            return direct
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return None
        for entry in entries:
            if entry.is_dir() and controller in entry.name.split(","):
                return Path(entry.path)
        return None

    def dir(self, controller: str = "") -> Path:
        """The directory holding ``controller``'s files for this cgroup.

        Raises:
            RuntimeFailure: the controller is not mounted on this v1 host.
        """
        if self.layout == CgroupLayout.V2:
            return self.root / self.path.lstrip("/")
        base = self._hierarchy(controller or "memory")
        if base is None:
            raise RuntimeFailure(f"cgroup controller not mounted: {controller}")
        return base / self.path.lstrip("/")

    def _read(self, controller: str, name: str) -> str:
        try:
            return (self.dir(controller) / name).read_text().strip()
        except FileNotFoundError as exc:
            raise RuntimeFailure(f"no such cgroup file: {self.path}/{name}") from exc

    def _write(self, controller: str, name: str, value: str) -> None:
        try:
            (self.dir(controller) / name).write_text(value)
        except OSError as exc:
            raise RuntimeFailure(f"cannot write {self.path}/{name}: {exc.strerror}") from exc

    def _all_dirs(self) -> list[Path]:
        """This cgroup's directory in every hierarchy (v1 controllers and hybrid's unified)."""
        if self.layout == CgroupLayout.V2:
            return [self.root / self.path.lstrip("/")]
        rel = self.path.lstrip("/")
        return [Path(top, rel) for top in _hierarchies(str(self.root))]

    # ---- queries --------------------------------------------------------------------------

    def exists(self) -> bool:
        """True when the cgroup's directory exists in at least one hierarchy."""
        return any(d.is_dir() for d in self._all_dirs())

    def pids(self) -> list[int]:
        """Host pids of every process in this cgroup and its descendants, sorted."""
        base = self.dir("pids") if self.layout != CgroupLayout.V2 else self.dir()
        if self.layout != CgroupLayout.V2 and not base.is_dir():
            base = self.dir("memory")
        found: set[int] = set()
        for dirpath, _dirs, files in os.walk(base):
            if "cgroup.procs" in files:
                try:
                    text = Path(dirpath, "cgroup.procs").read_text()
                except OSError:
                    continue
                found.update(int(x) for x in text.split())
        return sorted(found)

    def memory_usage(self) -> int:
        """Bytes of memory charged to the cgroup (page cache included, like Docker's raw value)."""
        if self.layout == CgroupLayout.V2:
            return int(self._read("", "memory.current"))
        return int(self._read("memory", "memory.usage_in_bytes"))

    def memory_limit(self) -> int | None:
        """The memory limit in bytes, or None when unlimited."""
        if self.layout == CgroupLayout.V2:
            text = self._read("", "memory.max")
            return None if text == "max" else int(text)
        value = int(self._read("memory", "memory.limit_in_bytes"))
        return None if value >= _V1_UNLIMITED else value

    def set_memory_limit(self, limit: int | None) -> None:
        """Set (or with None, lift) the memory limit."""
        if self.layout == CgroupLayout.V2:
            self._write("", "memory.max", "max" if limit is None else str(limit))
        else:
            self._write("memory", "memory.limit_in_bytes", "-1" if limit is None else str(limit))

    def cpu_usage_ns(self) -> int:
        """CPU time consumed by the cgroup's processes, in nanoseconds."""
        if self.layout == CgroupLayout.V2:
            for line in self._read("", "cpu.stat").splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) * 1000
            return 0
        return int(self._read("cpuacct", "cpuacct.usage"))

    def pids_current(self) -> int:
        """Number of tasks (threads included) in the cgroup."""
        return int(self._read("pids", "pids.current"))

    def pids_limit(self) -> int | None:
        """The pids limit, or None when unlimited."""
        text = self._read("pids", "pids.max")
        return None if text == "max" else int(text)

    # ---- freezer --------------------------------------------------------------------------

    def frozen(self) -> bool:
        """True when the cgroup is frozen (pause)."""
        if self.layout == CgroupLayout.V2:
            try:
                for line in self._read("", "cgroup.events").splitlines():
                    if line.startswith("frozen "):
                        return line.split()[1] == "1"
            except RuntimeFailure:
                pass
            return self._read("", "cgroup.freeze") == "1"
        return self._read("freezer", "freezer.state") == "FROZEN"

    def freeze(self, timeout: float = 5.0) -> None:
        """Stop every process of the cgroup (``docker pause``) and wait until they are stopped.

        Raises:
            RuntimeFailure: the kernel did not finish freezing within ``timeout`` seconds.
        """
        self._set_frozen(True, timeout)

    def thaw(self, timeout: float = 5.0) -> None:
        """Let the cgroup's processes run again (``docker unpause``)."""
        self._set_frozen(False, timeout)

    def _set_frozen(self, frozen: bool, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.layout == CgroupLayout.V2:
                self._write("", "cgroup.freeze", "1" if frozen else "0")
            else:
                # v1 may stay in FREEZING while a task sleeps uninterruptibly; writing again retries.
                self._write("freezer", "freezer.state", "FROZEN" if frozen else "THAWED")
            if self.frozen() == frozen:
                return
            if time.monotonic() > deadline:
                raise RuntimeFailure(f"cgroup {self.path} did not {'freeze' if frozen else 'thaw'}")
            time.sleep(0.01)

    # ---- removal --------------------------------------------------------------------------

    def remove(self, timeout: float = 5.0) -> None:
        """Remove the cgroup's directory from every hierarchy, children first.

        A cgroup whose last process has just exited may still be busy for a moment; removal is
        retried until ``timeout``. Missing directories are fine (the runtime may have removed them).

        Raises:
            RuntimeFailure: a directory stayed busy (processes still inside).
        """
        deadline = time.monotonic() + timeout
        for top in self._all_dirs():
            if not top.is_dir():
                continue
            subdirs = [Path(dp) for dp, _d, _f in os.walk(top)]
            for d in reversed(subdirs):  # deepest first
                while True:
                    try:
                        self._rmdir(str(d))
                        break
                    except FileNotFoundError:
                        break
                    except OSError as exc:
                        if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY, errno.EAGAIN):
                            raise RuntimeFailure(f"cannot remove cgroup {d}: {exc.strerror}") from exc
                        if time.monotonic() > deadline:
                            raise RuntimeFailure(f"cgroup {d} is busy") from exc
                        time.sleep(0.02)
