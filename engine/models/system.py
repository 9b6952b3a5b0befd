"""``system check``, ``system df``, ``system prune``, ``info`` and ``version``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .. import __version__
from ..errors import InvalidArgument, NotFound

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import IO, Any, Iterable, Iterator, Mapping, Sequence

_CHECKS: dict = {}


def register_check(name: str, fn) -> None:
    """Other parts (containers, networks) add checks: ``fn(engine, repair)`` returns
    ``(problems, reclaimable)``, two lists of lines (see :meth:`System.check`)."""
    _CHECKS[name] = fn

#: Modules that, when imported, register rows for ``system df``, checks, ``info`` fields and
#: images in use (kept out of CLI start-up).
_CONTRIBUTORS = (
    "portside.engine.models.volumes",
    "portside.engine.models.containers",
    "portside.engine.models.networks",
    "portside.engine.models.build",
)


def load_contributors() -> None:
    """Import every module that adds to check/df/info (idempotent, cheap after the first)."""
    import importlib

    for module in _CONTRIBUTORS:
        importlib.import_module(module)


class System:
    def __init__(self, engine) -> None:
        self.engine = engine

    def check(self, *, repair: bool = False) -> dict[str, list[str]]:
        """Verify the store: blobs, references, images, snapshots, containers, networks, volumes.

        Two kinds of findings:

        * ``Problems`` -- corruption: a blob whose bytes do not match its digest, an image whose
          blobs or snapshots are missing, a snapshot record without its files. With ``repair``
          each is fixed (by removing what is broken) and listed as fixed.
        * ``Reclaimable`` -- garbage: what a killed or failed operation left and nothing uses
          (folders of processes that died, unreferenced blobs and snapshots, stale network
          sandboxes...), including an interrupted pull's data kept for a resume. Every command
          reclaims what dead processes left as it opens the store (see
          :mod:`portside.engine.store.leftovers`), so this is usually empty; with ``repair`` it
          is all reclaimed now.

        Returns:
            ``{"Problems": [line, ...], "Reclaimable": [line, ...], "Reclaimed": [line, ...]}``
            (``Reclaimed``: what opening the store reclaimed for this engine, reported once);
            the store is consistent when ``Problems`` is empty.
        """
        from ..store import leftovers

        load_contributors()
        eng = self.engine
        store = eng.image_store
        problems: list[str] = []
        garbage: list[str] = []
        # 1. blobs match their digests
        bad_blobs = set()
        for digest in list(eng.content.list()):
            if not eng.content.verify(digest):
                problems.append(f"blob {digest}: content does not match its digest")
                bad_blobs.add(digest)
                if repair:
                    eng.content.delete(digest)
        # 2. images: their manifest, config and layer blobs and snapshots exist
        broken = []
        for rec in store.list():
            missing = [d for d in [rec.manifest_digest, rec.id] + [l["digest"] for l in rec.layers]
                       if d in bad_blobs or not eng.content.exists(d)]
            for layer in rec.layers:
                if not eng.snapshots.exists(layer["chain_id"]):
                    missing.append("snapshot " + layer["chain_id"])
            if missing:
                problems.append(f"image {rec.short_id}: missing {', '.join(missing)}")
                broken.append(rec)
        if repair:
            for rec in broken:
                for r in rec.refs:
                    store.untag(r)
                try:
                    store.delete(rec.id)
                except NotFound:
                    pass
        # 3. snapshots: records, directories, parents
        problems += eng.snapshots.check(repair=repair, garbage=garbage)
        # 4. what killed or failed operations left: folders, ingests, leases of dead owners
        for item in leftovers.sweep(eng.root, eng.db, lambda: eng.image_store,
                                    window=leftovers.resume_window(eng.config),
                                    remove=repair, keep_resumable=not repair):
            garbage.append(item.describe())
        # 5. unreferenced blobs and snapshots that no lease explains (older versions, or a
        # crash of something that wrote without one)
        with eng.db.transaction() as conn:
            blobs, chains = store.referenced(conn)
            # what a lease row names is reported (or kept) with the lease, above
            leased = {r["resource"] for r in conn.execute("SELECT resource FROM leases")}
        orphans = [d for d in eng.content.list() if d not in blobs and d not in leased]
        orphan_chains = [r["chain_id"] for r in eng.snapshots.list()
                         if r["chain_id"] not in chains and "snapshot:" + r["chain_id"] not in leased]
        if orphans:
            garbage.append(f"{len(orphans)} blob(s) that no image uses")
        if orphan_chains:
            garbage.append(f"{len(orphan_chains)} snapshot(s) that no image uses")
        if repair and (orphans or orphan_chains):
            store.collect(candidates_blobs=set(orphans), candidates_chains=set(orphan_chains))
        for name, fn in _CHECKS.items():
            found = fn(eng, repair)
            if isinstance(found, tuple):
                problems += found[0]
                garbage += found[1]
            else:
                problems += found
        reclaimed = [item.describe() for item in getattr(eng, "reclaimed", []) if item.removed]
        eng.reclaimed = []
        return {"Problems": problems, "Reclaimable": garbage, "Reclaimed": reclaimed}

    def events(self, *, since: float | None = None, until: float | None = None,
               filters: Mapping[str, list[str]] | None = None, follow: bool = False,
               stop: Any = None, interval: float = 0.1) -> Iterator[dict]:
        """Events in Docker's ``events --format json`` shape, oldest first: those since
        ``since`` (with ``follow``, from now when None), then with ``follow`` new ones as they
        are appended, until ``until`` passes or ``stop()`` says so. ``filters``: ``type``,
        ``event`` (the action)."""
        import time

        from .. import events as ev

        filters = filters or {}
        db = self.engine.db

        def wanted(event: Any) -> bool:
            if "type" in filters and event.type not in filters["type"]:
                return False
            return "event" not in filters or event.action in filters["event"]

        source: Iterable[Any]
        if not follow or (until is not None and until <= time.time()):
            source = ev.read_events(db, since=since, until=until, limit=1_000_000)
        else:
            def done() -> bool:
                return bool(stop is not None and stop()) or (until is not None
                                                              and time.time() > until)
            source = ev.follow(db, since=since, stop=done, interval=interval)
        return (event.to_docker() for event in source if wanted(event))

    def prune(self, *, all: bool = False, volumes: bool = False,
              filters: Mapping[str, list[str]] | None = None) -> dict:
        """Docker's ``system prune``: stopped containers, networks no container uses, (with
        ``volumes``) anonymous volumes no container uses, dangling images (every image no
        container uses with ``all``) and dangling build cache (all of it with ``all``), in that
        order, so what the pruned containers used goes too.

        Args:
            all: every unused image and the whole build cache, not only dangling ones.
            volumes: prune volumes as well (``volume prune``'s: anonymous ones).
            filters: ``until``, ``label``, ``label!`` (see
                :class:`~portside.engine.models.filters.PruneFilters`), given to each prune;
                ``until`` with ``volumes`` is refused, as Docker refuses it.
        Returns:
            ``{"ContainersDeleted": [ids], "NetworksDeleted": [names], "VolumesDeleted":
            [names], "ImagesDeleted": [{"Untagged"|"Deleted": …}], "CachesDeleted": [keys],
            "SpaceReclaimed": bytes}``.
        Raises:
            InvalidArgument: an unknown filter, a bad time, ``until`` with ``volumes``.
        """
        from .filters import PruneFilters

        wanted = PruneFilters(filters)
        if volumes and wanted.until is not None:
            raise InvalidArgument('The "until" filter is not supported with "--volumes"')
        eng = self.engine
        out: dict = {"ContainersDeleted": [], "NetworksDeleted": [], "VolumesDeleted": [],
                     "ImagesDeleted": [], "CachesDeleted": [], "SpaceReclaimed": 0}
        parts = [("ContainersDeleted", lambda: eng.containers.prune(filters=wanted.raw)),
                 ("NetworksDeleted", lambda: eng.networks.prune(filters=wanted.raw))]
        if volumes:
            parts.append(("VolumesDeleted", lambda: eng.volumes.prune(filters=wanted.raw)))
        parts += [("ImagesDeleted", lambda: eng.images.prune(all=all, filters=wanted.raw)),
                  ("CachesDeleted", lambda: eng.builds.prune(all=all, filters=wanted.raw))]
        for key, prune in parts:
            report = prune()
            out[key] = list(report.get(key) or [])
            out["SpaceReclaimed"] += int(report.get("SpaceReclaimed") or 0)
        return out

    def df(self) -> list[dict]:
        load_contributors()
        eng = self.engine
        images = eng.images.list()
        from .images import images_in_use

        used = images_in_use(eng)
        total = sum(i.attrs["Size"] for i in images)
        active = [i for i in images if i.id in used]
        reclaim = total - sum(i.attrs["Size"] for i in active)
        rows = [{"Type": "Images", "TotalCount": len(images), "Active": len(active),
                 "Size": total, "Reclaimable": reclaim}]
        for name, fn in _DF.items():
            rows.append(fn(eng))
        return rows

    def info(self) -> dict:
        import platform

        load_contributors()
        eng = self.engine
        from ..runtime_info import runtime_summary

        images = eng.images.list()
        info = {
            "ID": "", "Name": platform.node(),
            "Images": len(images),
            "Driver": "overlay",
            "DriverStatus": [["Backing Filesystem", _fs_type(eng.root)]],
            "DockerRootDir": str(eng.root),
            "KernelVersion": platform.release(),
            "OperatingSystem": _os_name(),
            "OSType": "linux",
            "Architecture": platform.machine(),
            "NCPU": os.cpu_count(),
            "MemTotal": _mem_total(),
            "ServerVersion": __version__,
            "CgroupVersion": _cgroup_version(),
            "RegistryConfig": {"Mirrors": eng.config.registry_mirrors,
                               "InsecureRegistries": eng.config.insecure_registries},
            "CDISpecDirs": eng.config.cdi_spec_dirs,
        }
        info.update(runtime_summary(eng.config, eng.lifecycle.default_runtime))
        info["GPUs"] = _host_gpus()
        from ..rootless.info import fields

        info.update(fields(eng.config.rootless_network, eng.config.rootless_storage,
                           eng.lifecycle.tmp_dir))
        for name, fn in _INFO.items():
            info.update(fn(eng))
        return info

    def reset(self) -> dict[str, Any]:
        """Remove every container, volume, network, image and build cache entry, the root's
        files, and (rootless) stop the user namespace; see :mod:`..reset`."""
        from ..reset import reset

        return reset(self.engine)

    def migrate(self) -> dict[str, Any]:
        """Rootless: stop the user namespace so the next command maps the current subordinate
        ids; see :mod:`..reset`."""
        from ..reset import migrate

        return migrate(self.engine)

    def unshare(self, argv: Sequence[str], *, stdin: IO[bytes] | None = None,
                stdout: IO[bytes] | None = None, stderr: IO[bytes] | None = None) -> int:
        """Run ``argv`` as root of the rootless user's namespace (where files owned by the
        subordinate ids can be removed); returns its exit status. Streams default to this
        process's own.

        Raises:
            InvalidArgument: the engine is not rootless, or ``argv`` cannot be run.
        """
        import subprocess

        from ..errors import InvalidArgument
        from ..rootless import in_namespace

        if not in_namespace():
            raise InvalidArgument("unshare: only rootless (as a user without root) is there a "
                                  "user namespace to enter")
        if not argv:
            raise InvalidArgument("unshare: no command to run")
        try:
            return subprocess.run(list(argv), stdin=stdin, stdout=stdout,
                                  stderr=stderr).returncode
        except OSError as exc:
            raise InvalidArgument(f"unshare: cannot run {argv[0]}: {exc.strerror}") from exc

    def version(self) -> dict:
        import platform

        from ..image import oci

        return {
            "Client": {"Version": __version__, "ApiVersion": "1.43",
                       "PythonVersion": platform.python_version(),
                       "Os": "linux", "Arch": oci.host_platform()["architecture"]},
            "Server": {"Version": __version__, "Engine": "portside (daemonless)",
                       "KernelVersion": platform.release(), "Os": "linux",
                       "Arch": oci.host_platform()["architecture"]},
        }


_DF: dict = {}
_INFO: dict = {}


def register_df(name: str, fn) -> None:
    _DF[name] = fn


def register_info(name: str, fn) -> None:
    _INFO[name] = fn


def _host_gpus() -> list[dict]:
    """The host's NVIDIA GPUs, as ``info`` lists them (empty without a driver)."""
    from ..errors import EngineError
    from ..gpu.discover import discover

    try:
        host = discover()
    except EngineError:
        return []
    return [{"Index": g.index, "Model": g.model, "UUID": g.uuid, "PCI": g.pci_bus_id}
            for g in host.gpus]


def _fs_type(path: Path) -> str:
    best, fstype = "", "unknown"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                    best, fstype = parts[1], parts[2]
    except OSError:
        pass
    return fstype


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return sys.platform


def _mem_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cgroup_version() -> str:
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        return "2"
    return "1"
