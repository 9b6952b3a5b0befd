"""The volume manager: named and anonymous volumes, and the mounts a container gets.

A *volume* is a directory the engine owns, ``PORTSIDE_ROOT/volumes/NAME/_data``, with a record in
the metadata database (driver, labels, options, creation time, whether it is anonymous). Its data
lives as long as the volume does, whatever happens to the containers that mount it.

*Usage* links a container to the volumes it mounts (table ``volume_usage``): ``volume rm`` refuses
a volume in use, ``volume prune`` skips it, ``rm -v`` drops a container's anonymous volumes once
nobody else uses them. Usage is recorded when the container's mounts are prepared and dropped when
the container is removed (:meth:`VolumeManager.release`), so a stopped container still holds its
volumes, as in Docker.

:meth:`VolumeManager.prepare_mounts` turns a container's ``-v``, ``--mount``, ``--tmpfs`` and
``--volumes-from`` flags plus its image's ``VOLUME`` list into Docker's ``Mounts`` entries, each
carrying the OCI runtime mount (key ``"oci"``) that the runtime spec needs. Precedence, as in
Docker: the user's ``-v``/``--mount``/``--tmpfs`` win over ``--volumes-from``, which wins over
anonymous volumes (``-v /path`` and image ``VOLUME`` paths); two user mounts on one path are an
error. Nothing is mounted here: the OCI runtime makes the mounts when the container starts.

Crash safety: a volume's folder is made before its record and removed after it, so a crash leaves
at worst a folder without a record, which ``system check --repair`` removes.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

from ..errors import Conflict, InvalidArgument, NotFound
from ..events import emit
from ..store.db import Database
from .seed import copy_tree, is_empty_dir
from .specs import (MountSpec, check_duplicates, mount_from_api, parse_mount, parse_tmpfs,
                    parse_volume, valid_mode, validate_volume_name)

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    import builtins
    from typing import Any


__all__ = ["VolumeManager", "ANONYMOUS_LABEL", "dir_size"]

#: Docker (23+) marks anonymous volumes with this label; ``volume prune`` without ``-a`` removes
#: only volumes that carry it.
ANONYMOUS_LABEL = "com.docker.volume.anonymous"
#: Options Docker's local driver knows (``type``/``device``/``o`` mount a device or tmpfs).
_LOCAL_OPTIONS = ("type", "device", "o", "size")

Database.register_schema("volumes", [
    """CREATE TABLE IF NOT EXISTS volumes (
        name TEXT PRIMARY KEY,
        driver TEXT NOT NULL,
        created REAL NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}',
        options TEXT NOT NULL DEFAULT '{}',
        anonymous INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS volume_usage (
        container_id TEXT NOT NULL,
        name TEXT NOT NULL REFERENCES volumes(name),
        PRIMARY KEY (container_id, name)
    )""",
    "CREATE INDEX IF NOT EXISTS volume_usage_by_name ON volume_usage(name)",
])


def _rfc3339_local(ts: float) -> str:
    text = datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def dir_size(path: Path) -> int:
    """Bytes held by the files under ``path`` (hard links counted once, symlinks not followed)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    stack = [os.fspath(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                        continue
                    if st.st_nlink > 1:
                        if (st.st_dev, st.st_ino) in seen:
                            continue
                        seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
        except OSError:
            continue
    return total


def _mounts_under(path: Path) -> list[str]:
    prefix = os.path.realpath(path).rstrip("/") + "/"
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4].replace("\\040", " ")
                if point.startswith(prefix) or point + "/" == prefix:
                    found.append(point)
    except OSError:
        pass
    return found


class VolumeManager:
    """Volumes of one engine root: records in ``db``, data under ``root/<name>/_data``.

    Args:
        db: the engine's metadata database.
        root: ``PORTSIDE_ROOT/volumes``; created on first use.

    Volume records are Docker's ``volume inspect`` documents::

        {"CreatedAt": "2024-05-01T10:00:00Z", "Driver": "local", "Labels": {},
         "Mountpoint": "/var/lib/portside/volumes/data/_data", "Name": "data",
         "Options": {}, "Scope": "local"}
    """

    def __init__(self, db: Database, root: Path) -> None:
        self.db = db
        self.root = Path(root)

    # ------------------------------------------------------------------ records
    def mountpoint(self, name: str) -> Path:
        """The host directory holding volume ``name``'s data."""
        return self.root / name / "_data"

    def _doc(self, row: Any) -> dict:
        labels = json.loads(row["labels"])
        return {"CreatedAt": _rfc3339_local(row["created"]), "Driver": row["driver"],
                "Labels": labels, "Mountpoint": str(self.mountpoint(row["name"])),
                "Name": row["name"], "Options": json.loads(row["options"]), "Scope": "local"}

    def create(self, name: str | None = None, *, driver: str = "local",
               labels: dict[str, str] | None = None, options: dict[str, str] | None = None,
               anonymous: bool = False) -> dict:
        """Create a volume, or return the existing one of that name (Docker does the same).

        Args:
            name: the volume name; ``None`` makes up a 64-hex one.
            driver: only ``"local"`` exists.
            labels: user labels (``--label``).
            options: driver options (``-o``): ``type``, ``device``, ``o``, ``size``.
            anonymous: mark it anonymous (label ``com.docker.volume.anonymous``), so ``rm -v``
                and ``volume prune`` without ``-a`` may remove it.

        Returns:
            The volume's inspect document.

        Raises:
            InvalidArgument: a bad name, driver or option.
            Conflict: the name exists with another driver.
        """
        if driver != "local":
            raise InvalidArgument(f'error looking up volume plugin {driver}: plugin "{driver}" '
                                  "not found")
        if name is None:
            name = os.urandom(32).hex()  # secrets.token_hex(32), without its import
        validate_volume_name(name)
        for key in options or {}:
            if key not in _LOCAL_OPTIONS:
                raise InvalidArgument(f'invalid option: "{key}"')
        labels = dict(labels or {})
        if anonymous:
            labels.setdefault(ANONYMOUS_LABEL, "")
        existing = self._row(name)
        if existing is not None:
            return self._existing(existing, driver)
        data = self.mountpoint(name)
        # Folder first, record second: a crash in between leaves only an orphan folder.
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)
        data.mkdir(parents=True, exist_ok=True)
        with self.db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO volumes (name, driver, created, labels, options, anonymous)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO NOTHING",
                (name, driver, time.time(), json.dumps(labels, sort_keys=True),
                 json.dumps(options or {}, sort_keys=True), int(anonymous)))
            if cur.rowcount:
                emit(conn, "volume", "create", name, driver=driver)
        row = self._row(name)
        assert row is not None
        return self._doc(row) if cur.rowcount else self._existing(row, driver)

    def _existing(self, row: Any, driver: str) -> dict:
        if row["driver"] != driver:
            raise Conflict(f"volume name {row['name']} already in use with driver "
                           f"{row['driver']}")
        return self._doc(row)

    def _row(self, name: str) -> Any:
        rows = self.db.query("SELECT * FROM volumes WHERE name = ?", (name,))
        return rows[0] if rows else None

    def get(self, name: str) -> dict:
        """Return volume ``name``'s inspect document.

        Raises:
            NotFound: ``get NAME: no such volume`` (Docker's words).
        """
        row = self._row(name)
        if row is None:
            raise NotFound(f"get {name}: no such volume")
        return self._doc(row)

    def is_anonymous(self, name: str) -> bool:
        """Whether volume ``name`` was made anonymously (``-v /path``, an image ``VOLUME``)."""
        row = self._row(name)
        if row is None:
            raise NotFound(f"get {name}: no such volume")
        return bool(row["anonymous"])

    def list(self) -> list[dict]:
        """Every volume's inspect document, by name."""
        return [self._doc(r) for r in self.db.query("SELECT * FROM volumes ORDER BY name")]

    def usage(self) -> dict[str, builtins.list[str]]:
        """Volumes in use: ``{volume name: [container ids]}`` (volumes not in use are absent)."""
        used: dict[str, list[str]] = {}
        for row in self.db.query("SELECT name, container_id FROM volume_usage"
                                 " ORDER BY name, container_id"):
            used.setdefault(row["name"], []).append(row["container_id"])
        return used

    def size(self, name: str) -> int:
        """Bytes of data in volume ``name``."""
        return dir_size(self.mountpoint(name))

    def remove(self, name: str, force: bool = False) -> None:
        """Remove a volume and its data.

        Args:
            name: the volume.
            force: a missing volume is not an error (a volume in use still is, as in Docker).

        Raises:
            NotFound: no such volume (unless ``force``).
            Conflict: ``remove NAME: volume is in use - [ID ...]``.
        """
        with self.db.transaction() as conn:
            if not conn.execute("SELECT 1 FROM volumes WHERE name = ?", (name,)).fetchone():
                if force:
                    return
                raise NotFound(f"get {name}: no such volume")
            users = [r[0] for r in conn.execute(
                "SELECT container_id FROM volume_usage WHERE name = ? ORDER BY container_id",
                (name,))]
            if users:
                raise Conflict(f"remove {name}: volume is in use - [{' '.join(users)}]")
            self._refuse_mounted(name)
            conn.execute("DELETE FROM volumes WHERE name = ?", (name,))
            emit(conn, "volume", "destroy", name, driver="local")
        self._remove_dir(name)

    def _refuse_mounted(self, name: str) -> None:
        # rmtree would walk into anything mounted under the volume and delete *its* files.
        mounted = _mounts_under(self.root / name)
        if mounted:
            raise Conflict(f"remove {name}: volume is in use - mounted at {mounted[0]}")

    def _remove_dir(self, name: str) -> None:
        path = self.root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)

    # ------------------------------------------------------------------ container mounts
    def prepare_mounts(self, container_id: str, *, binds: Sequence[str] = (),
                       mounts: Sequence[str | dict] = (),
                       volumes_from: Sequence[Any] = (),
                       image_volumes: Iterable[str] = (), rootfs: Path | None = None,
                       tmpfs: Sequence[str] = ()) -> builtins.list[dict]:
        """Work out a container's mounts, create the volumes they need and record the usage.

        Args:
            container_id: the container's full id (usage is recorded under it).
            binds: ``-v`` values (``NAME:/p[:MODE]``, ``/host:/p[:MODE]``, ``/p``).
            mounts: ``--mount`` values (``type=volume,src=data,dst=/data,ro``...), or Docker API
                ``HostConfig.Mounts`` objects (dicts with ``Type``, ``Source``, ``Target``...).
            volumes_from: one item per ``--volumes-from``: either the other container's
                ``Mounts`` list, or a tuple ``(mounts, mode)`` where mode is the flag's suffix
                (``"ro"``, ``"rw"`` or ``""``); a single mount record (a dict) is accepted too. Each mount keeps its ``RW`` unless mode is
                ``"ro"``; its volumes are shared, its tmpfs mounts are fresh ones.
            image_volumes: the image's ``VOLUME`` paths (``Config.Volumes`` keys).
            rootfs: the container's root filesystem on the host (the merged overlay). A new or
                empty volume mounted where it has a directory is seeded with that directory's
                content, unless ``nocopy``. ``None``: no seeding.
            tmpfs: ``--tmpfs`` values (``/run[:OPTIONS]``).

        Returns:
            Docker ``Mounts`` entries (``Type``, ``Name`` and ``Driver`` for volumes,
            ``Source``, ``Destination``, ``Mode``, ``RW``, ``Propagation``), parents before
            children, each with an extra key ``"oci"``: the OCI runtime mount, e.g.
            ``{"destination": "/data", "type": "bind", "source": ".../data/_data",
            "options": ["rbind", "rprivate", "rw"]}``. Strip ``"oci"`` before showing them.

        Raises:
            InvalidArgument: a bad flag value (Docker's messages), ``Duplicate mount point:
                /p``, a ``--mount`` bind source that does not exist.
            NotFound: a ``--volumes-from`` volume that no longer exists.
        """
        user: list[MountSpec] = []
        anonymous_paths: list[str] = []
        for raw in binds:
            spec = parse_volume(raw)
            if spec.anonymous:
                anonymous_paths.append(spec.target)
            else:
                user.append(spec)
        user += [mount_from_api(raw) if isinstance(raw, dict) else parse_mount(raw)
                 for raw in mounts]
        user += [parse_tmpfs(raw) for raw in tmpfs]
        check_duplicates(user)
        for spec in user:
            if spec.type == "bind" and not spec.create_source and not os.path.lexists(spec.source):
                raise InvalidArgument('invalid mount config for type "bind": '
                                      f"bind source path does not exist: {spec.source}")
        taken = {s.target for s in user}
        inherited: list[MountSpec] = []
        for item in volumes_from:
            for spec in self._from_records(item):
                if spec.target not in taken:
                    taken.add(spec.target)
                    inherited.append(spec)
        fresh: list[MountSpec] = []
        for path in [*anonymous_paths, *image_volumes]:
            target = posixpath.normpath(path)
            if target not in taken and target.startswith("/") and target != "/":
                taken.add(target)
                fresh.append(MountSpec(type="volume", target=target))
        specs = sorted(user + inherited + fresh, key=lambda s: s.target.count("/"))
        for spec in specs:
            if spec.type == "bind" and spec.create_source and not os.path.lexists(spec.source):
                # -v creates a missing host directory (Docker does; --mount refuses above).
                os.makedirs(spec.source, 0o755, exist_ok=True)
        entries: list[dict] = []
        created: list[str] = []
        try:
            self._record(container_id, specs, entries, created)
        except BaseException:
            for name in created:  # the records rolled back; their folders go too
                self._remove_dir(name)
            raise
        if rootfs is not None:
            try:
                for spec, entry in zip(specs, entries):
                    if spec.type == "volume" and not spec.nocopy:
                        self._seed(Path(rootfs), spec.target, Path(entry["Source"]))
            except BaseException:
                self.release(container_id, remove_anonymous=True)
                for name in created:
                    try:
                        self.remove(name, force=True)
                    except Conflict:
                        pass  # another container took it into use meanwhile: it stays
                raise
        return entries

    def _record(self, container_id: str, specs: builtins.list[MountSpec], entries: builtins.list[dict],
                created: builtins.list[str]) -> None:
        with self.db.transaction() as conn:
            for spec in specs:
                if spec.type == "volume":
                    name = spec.source
                    if name and self._row(name) is not None:
                        self._check_mountable(name)
                    else:
                        doc = self.create(name or None, labels=spec.volume_labels,
                                          options=spec.volume_options,
                                          anonymous=not name)
                        name = doc["Name"]
                        created.append(name)
                        self._check_mountable(name)
                    spec_name = name
                    conn.execute("INSERT OR IGNORE INTO volume_usage (container_id, name)"
                                 " VALUES (?, ?)", (container_id, spec_name))
                    emit(conn, "volume", "mount", spec_name, container=container_id,
                         destination=spec.target, driver="local",
                         propagation=spec.propagation, **{"read/write": str(not spec.readonly)
                                                          .lower()})
                    entries.append(self._volume_entry(spec, spec_name))
                elif spec.type == "bind":
                    entries.append(_bind_entry(spec))
                else:
                    entries.append(_tmpfs_entry(spec))

    def _check_mountable(self, name: str) -> None:
        row = self._row(name)
        opts = json.loads(row["options"]) if row is not None else {}
        if opts.get("type") or opts.get("device"):
            raise InvalidArgument(f"volume {name}: local driver options type/device "
                                  "(mounting a device or tmpfs) are not supported yet")

    def _from_records(self, item: Any) -> builtins.list[MountSpec]:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], str):
            records, mode = item
        elif isinstance(item, dict):
            records, mode = [item], ""  # one mount record, already adjusted by the caller
        else:
            records, mode = item, ""
        if not valid_mode(mode):
            raise InvalidArgument(f"invalid mode: {mode}")
        force_ro = "ro" in mode.split(",")
        specs = []
        for rec in records:
            kind = rec.get("Type")
            target = rec.get("Destination", "")
            readonly = force_ro or not rec.get("RW", True)
            if kind == "volume":
                name = rec.get("Name", "")
                if self._row(name) is None:
                    raise NotFound(f"get {name}: no such volume")
                specs.append(MountSpec(type="volume", target=target, source=name,
                                       readonly=readonly, mode=rec.get("Mode", ""),
                                       nocopy=True))
            elif kind == "bind":
                specs.append(MountSpec(type="bind", target=target, source=rec.get("Source", ""),
                                       readonly=readonly, mode=rec.get("Mode", ""),
                                       propagation=rec.get("Propagation") or "rprivate",
                                       create_source=True))
            elif kind == "tmpfs":
                specs.append(MountSpec(type="tmpfs", target=target, readonly=readonly))
        return specs

    def _volume_entry(self, spec: MountSpec, name: str) -> dict:
        source = str(self.mountpoint(name))
        return {"Type": "volume", "Name": name, "Source": source, "Destination": spec.target,
                "Driver": "local", "Mode": spec.mode, "RW": not spec.readonly,
                "Propagation": spec.propagation,
                "oci": {"destination": spec.target, "type": "bind", "source": source,
                        "options": ["rbind", spec.propagation or "rprivate",
                                    "ro" if spec.readonly else "rw"]}}

    def _seed(self, rootfs: Path, target: str, data: Path) -> None:
        from ..rootfs import resolve

        try:
            src = resolve(rootfs, target)
        except InvalidArgument:  # a loop of links: nothing to seed from
            return
        if not src.is_dir() or src.is_symlink():
            return
        if not is_empty_dir(data):
            return  # Docker copies only into an empty volume: existing data is never touched
        copy_tree(src, data)

    def release(self, container_id: str, remove_anonymous: bool = False) -> builtins.list[str]:
        """Drop a container's volume usage (the container is being removed).

        Args:
            container_id: the container's full id.
            remove_anonymous: ``rm -v``: also remove the container's anonymous volumes that no
                other container uses (named volumes always stay).

        Returns:
            The names of the volumes removed.
        """
        removed: list[str] = []
        with self.db.transaction() as conn:
            names = [r[0] for r in conn.execute(
                "SELECT name FROM volume_usage WHERE container_id = ? ORDER BY name",
                (container_id,))]
            conn.execute("DELETE FROM volume_usage WHERE container_id = ?", (container_id,))
            for name in names:
                emit(conn, "volume", "unmount", name, container=container_id, driver="local")
            if remove_anonymous:
                for name in names:
                    row = conn.execute("SELECT anonymous FROM volumes WHERE name = ?",
                                       (name,)).fetchone()
                    still = conn.execute("SELECT 1 FROM volume_usage WHERE name = ?",
                                         (name,)).fetchone()
                    if row and row[0] and not still and not _mounts_under(self.root / name):
                        conn.execute("DELETE FROM volumes WHERE name = ?", (name,))
                        emit(conn, "volume", "destroy", name, driver="local")
                        removed.append(name)
        for name in removed:
            self._remove_dir(name)
        return removed

    # ------------------------------------------------------------------ maintenance
    def prune(self, *, all: bool = False,
              keep: Any = None) -> tuple[builtins.list[str], int]:
        """Remove unused volumes: anonymous ones only, or every unused one with ``all``.

        Args:
            all: also named volumes (``volume prune -a``).
            keep: optional predicate ``keep(doc) -> bool`` (filters); kept volumes stay.

        Returns:
            ``(names removed, bytes reclaimed)``.
        """
        removed: list[str] = []
        reclaimed = 0
        used = self.usage()
        for row in self.db.query("SELECT * FROM volumes ORDER BY name"):
            name = row["name"]
            if name in used or (not all and not row["anonymous"]):
                continue
            if keep is not None and keep(self._doc(row)):
                continue
            size = self.size(name)
            try:
                self.remove(name)
            except (Conflict, NotFound):
                continue  # taken into use, or removed, by another process meanwhile
            removed.append(name)
            reclaimed += size
        return removed, reclaimed

    def check(self, repair: bool = False) -> builtins.list[str]:
        """Find volume folders without a record and records without a folder.

        Args:
            repair: remove orphan folders (not mounted ones) and recreate missing data folders.

        Returns:
            One line per problem found (or fixed).
        """
        problems: list[str] = []
        known = {r["name"] for r in self.db.query("SELECT name FROM volumes")}
        if self.root.is_dir():
            for entry in sorted(self.root.iterdir()):
                if entry.name in known:
                    continue
                problems.append(f"volume folder {entry.name}: no volume record")
                if repair and entry.is_dir() and not entry.is_symlink() \
                        and not _mounts_under(entry):
                    shutil.rmtree(entry)
                elif repair and not entry.is_dir():
                    entry.unlink()
        for name in sorted(known):
            if not self.mountpoint(name).is_dir():
                problems.append(f"volume {name}: data folder missing")
                if repair:
                    self.mountpoint(name).mkdir(parents=True, exist_ok=True)
        return problems


def _bind_entry(spec: MountSpec) -> dict:
    options = ["rbind" if not spec.nonrecursive else "bind", spec.propagation or "rprivate",
               "ro" if spec.readonly else "rw"]
    return {"Type": "bind", "Source": spec.source, "Destination": spec.target,
            "Mode": spec.mode, "RW": not spec.readonly,
            "Propagation": spec.propagation or "rprivate",
            "oci": {"destination": spec.target, "type": "bind", "source": spec.source,
                    "options": options}}


def _tmpfs_entry(spec: MountSpec) -> dict:
    # Docker's base for tmpfs mounts; the user's own options can undo the no* ones.
    options = ["noexec", "nosuid", "nodev", "rprivate"]
    for opt in spec.tmpfs_options:
        if opt in ("exec", "suid", "dev") and "no" + opt in options:
            options.remove("no" + opt)
        if opt not in options:
            options.append(opt)
    if spec.tmpfs_size is not None:
        options.append(f"size={max(spec.tmpfs_size // 1024, 1)}k")
    if spec.tmpfs_mode is not None:
        options.append(f"mode={spec.tmpfs_mode:o}")
    options.append("ro" if spec.readonly else "rw")
    if "ro" in options and "rw" in options:
        options.remove("rw")
    return {"Type": "tmpfs", "Source": "", "Destination": spec.target, "Mode": "",
            "RW": not spec.readonly, "Propagation": "",
            "oci": {"destination": spec.target, "type": "tmpfs", "source": "tmpfs",
                    "options": options}}

