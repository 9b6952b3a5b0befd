"""The container record store: what portside remembers about each container, and where its files are.

A container is a *record* plus a *folder*. The record lives in the ``containers`` table of the
engine's SQLite database and holds Docker's three documents as JSON:

* ``config`` — Docker's ``Config`` (Cmd, Entrypoint, Env, WorkingDir, User, Labels, Tty,
  OpenStdin, StopSignal, Hostname, Volumes, Image…): what runs;
* ``host_config`` — Docker's ``HostConfig`` (Binds, NetworkMode, RestartPolicy, AutoRemove,
  CapAdd, Memory, …): how the host runs it;
* ``state`` — Docker's ``State`` (Status, Pid, ExitCode, StartedAt, FinishedAt, OOMKilled, Error)
  plus portside's own bookkeeping (``ManuallyStopped``), as last *saved*. The truth may have moved
  on since (the process exited, the monitor was killed): :mod:`.lifecycle` refreshes it before
  every verb.

The folder ``<root>/containers/<id>/`` holds the OCI bundle (``bundle/config.json``), the overlay's
``upper/`` and ``work/`` directories, Docker's init layer (``init/``, see :mod:`.initlayer`), the
``rootfs/`` mount point, the JSON log, the exit file the monitor writes, and the
``hostname``/``hosts``/``resolv.conf`` files bind-mounted into the container.

Unix socket paths must be shorter than 108 bytes, and a state root can be long (a test's temporary
folder), so the monitor's sockets live in a *run folder* that is always short:
``<root>/run/<id12>/`` when that is short enough, else ``/run/portside/<hash of root>/<id12>/``;
rootless, always ``$XDG_RUNTIME_DIR/portside/<hash of root>/<id12>/`` (the user's runtime folder,
see :func:`portside.engine.rootless.runtime_dir`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path

from portside.engine import events
from portside.engine.errors import Conflict, InvalidArgument, NotFound
from portside.engine.store.db import Database
from portside.engine.records import field, record

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    import builtins
    from typing import Any, Iterator


Database.register_schema("containers", [
    """CREATE TABLE IF NOT EXISTS containers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        image_id TEXT NOT NULL,
        created REAL NOT NULL,
        config TEXT NOT NULL,
        host_config TEXT NOT NULL,
        state TEXT NOT NULL,
        monitor_pid INTEGER NOT NULL DEFAULT 0,
        mounts TEXT NOT NULL DEFAULT '[]',
        extra TEXT NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX IF NOT EXISTS containers_image ON containers(image_id)",
])

#: Longest run folder path we accept before falling back to /run/portside (a socket name follows).
_MAX_RUN_DIR = 80


def new_container_id() -> str:
    """A new container id: 64 random hex digits, as Docker's."""
    return os.urandom(32).hex()  # secrets.token_hex(32), without importing secrets


def new_state() -> dict[str, Any]:
    """The ``State`` of a container that was just created."""
    return {"Status": "created", "Running": False, "Paused": False, "Restarting": False,
            "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
            "StartedAt": "0001-01-01T00:00:00Z", "FinishedAt": "0001-01-01T00:00:00Z",
            "StartedAtTs": 0.0, "FinishedAtTs": 0.0, "ManuallyStopped": False,
            "RestartCount": 0}


@record
class ContainerRecord:
    """One container as stored. ``extra`` holds portside's own fields (GPUs, runtime name)."""

    id: str
    name: str
    image_id: str
    created: float
    config: dict[str, Any]
    host_config: dict[str, Any]
    state: dict[str, Any] = field(default_factory=new_state)
    monitor_pid: int = 0
    mounts: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def status(self) -> str:
        return self.state.get("Status", "created")


def run_dir_for(root: Path) -> Path:
    """The short folder for sockets and monitor state of the store at ``root``; rootless, in
    the user's runtime folder (``$XDG_RUNTIME_DIR/portside/<hash of root>``)."""
    from portside.engine.rootless import active

    if active():
        return _rootless_run_dir(root)
    local = Path(root) / "run"
    if len(os.fsencode(str(local))) <= _MAX_RUN_DIR:
        return local
    import hashlib

    digest = hashlib.sha256(os.fsencode(str(Path(root).resolve()))).hexdigest()[:12]
    return Path("/run/portside") / digest


_ROOTLESS_RUN_DIRS: dict[str, Path] = {}


def _rootless_run_dir(root: Path) -> Path:
    key = str(root)
    found = _ROOTLESS_RUN_DIRS.get(key)
    if found is None:
        import hashlib

        from portside.engine.rootless import runtime_dir

        digest = hashlib.sha256(os.fsencode(str(Path(root).resolve()))).hexdigest()[:12]
        found = _ROOTLESS_RUN_DIRS[key] = Path(runtime_dir()) / digest
    return found


@record(frozen=True)
class ContainerPaths:
    """Where one container's files are."""

    root: Path
    id: str

    @property
    def dir(self) -> Path:
        return self.root / "containers" / self.id

    @property
    def bundle(self) -> Path:
        return self.dir / "bundle"

    @property
    def rootfs(self) -> Path:
        return self.dir / "rootfs"

    @property
    def upper(self) -> Path:
        return self.dir / "upper"

    @property
    def work(self) -> Path:
        return self.dir / "work"

    @property
    def init(self) -> Path:
        """Docker's init layer (``/etc/mtab``), the topmost lower dir (see :mod:`.initlayer`)."""
        return self.dir / "init"

    @property
    def log(self) -> Path:
        return self.dir / "log.json"

    @property
    def exit_file(self) -> Path:
        return self.dir / "exit.json"

    @property
    def state_dir(self) -> Path:
        """The monitor's folder (short path: it holds the console socket)."""
        return run_dir_for(self.root) / self.id[:12]

    @property
    def attach_socket(self) -> Path:
        return self.state_dir / "attach.sock"

    @property
    def lock_file(self) -> Path:
        return run_dir_for(self.root) / "locks" / (self.id + ".lock")

    def etc_file(self, name: str) -> Path:
        """``hostname``, ``hosts`` or ``resolv.conf`` as bind-mounted into the container."""
        return self.dir / name


class ContainerStore:
    """Container records in SQLite plus their folders under ``<root>/containers``.

    Args:
        db: the engine's database.
        root: the engine's state root.
    """

    def __init__(self, db: Database, root: Path) -> None:
        self.db = db
        self.root = Path(root)

    def paths(self, container_id: str) -> ContainerPaths:
        return ContainerPaths(self.root, container_id)

    # ---- locking ------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, container_id: str, *, blocking: bool = True) -> Iterator[bool]:
        """Hold the container's lock: verbs on one container run one at a time, across processes.

        ``blocking=False``: do not wait; the block gets False (and holds nothing) when another
        holder has it."""
        path = self.paths(container_id).lock_file
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    # ---- reading ------------------------------------------------------------------------

    @staticmethod
    def _record(row: Any) -> ContainerRecord:
        return ContainerRecord(row["id"], row["name"], row["image_id"], row["created"],
                               json.loads(row["config"]), json.loads(row["host_config"]),
                               json.loads(row["state"]), row["monitor_pid"],
                               json.loads(row["mounts"]), json.loads(row["extra"]))

    def resolve(self, ref: str) -> ContainerRecord:
        """Find a container by name, full id or unique id prefix (Docker's order: id, name, prefix).

        Raises:
            NotFound: nothing matches. InvalidArgument: the prefix matches several.
        """
        text = ref.strip()
        if text.startswith("/"):
            text = text[1:]
        if not text:
            raise NotFound("No such container: (empty name)")
        rows = self.db.query("SELECT * FROM containers WHERE id = ?", (text,))
        if not rows:
            rows = self.db.query("SELECT * FROM containers WHERE name = ?", (text,))
        if not rows and all(c in "0123456789abcdef" for c in text):
            rows = self.db.query("SELECT * FROM containers WHERE id LIKE ?", (text + "%",))
            if len(rows) > 1:
                raise InvalidArgument(f"multiple containers found with provided prefix: {text}")
        if not rows:
            raise NotFound(f"No such container: {ref}")
        return self._record(rows[0])

    def get_by_id(self, container_id: str) -> ContainerRecord | None:
        rows = self.db.query("SELECT * FROM containers WHERE id = ?", (container_id,))
        return self._record(rows[0]) if rows else None

    def list(self) -> list[ContainerRecord]:
        """Every container, newest first."""
        return [self._record(r) for r in
                self.db.query("SELECT * FROM containers ORDER BY created DESC, id")]

    def name_taken(self, name: str) -> bool:
        return bool(self.db.query("SELECT 1 FROM containers WHERE name = ?", (name,)))

    def images_in_use(self) -> dict[str, builtins.list[str]]:
        """{image id: [container ids]} for ``rmi`` and ``image prune``."""
        used: dict[str, list[str]] = {}
        for row in self.db.query("SELECT id, image_id FROM containers"):
            used.setdefault(row["image_id"], []).append(row["id"])
        return used

    # ---- writing ------------------------------------------------------------------------

    def add(self, rec: ContainerRecord) -> None:
        """Record a new container and make its folder.

        Raises:
            Conflict: the name is taken (Docker's message).
        """
        with self.db.transaction() as conn:
            row = conn.execute("SELECT id FROM containers WHERE name = ?", (rec.name,)).fetchone()
            if row is not None:
                raise Conflict(f'Conflict. The container name "/{rec.name}" is already in use by '
                               f'container "{row["id"]}". You have to remove (or rename) that '
                               f"container to be able to reuse that name.")
            paths = self.paths(rec.id)
            for d in (paths.dir, paths.bundle, paths.rootfs, paths.upper, paths.work):
                d.mkdir(parents=True, exist_ok=True)
            os.chmod(paths.dir, 0o710)
            from .initlayer import prepare

            prepare(paths.init)
            conn.execute(
                "INSERT INTO containers (id, name, image_id, created, config, host_config, state, "
                "monitor_pid, mounts, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (rec.id, rec.name, rec.image_id, rec.created, json.dumps(rec.config),
                 json.dumps(rec.host_config), json.dumps(rec.state), rec.monitor_pid,
                 json.dumps(rec.mounts), json.dumps(rec.extra)))
            events.emit(conn, "container", "create", rec.id, name=rec.name,
                        image=rec.config.get("Image", ""))

    def save(self, rec: ContainerRecord, event: str | None = None, *,
             expect: tuple[str, int] | None = None, **attributes: str) -> bool:
        """Write the record's mutable parts (state, monitor pid, mounts, extra, configs).

        Args:
            expect: ``(status, monitor pid)`` the stored record must still have; a reader that
                refreshed without the lock passes it so it never overwrites a newer state.
        Returns:
            False when ``expect`` did not match (nothing written).
        Raises:
            NotFound: the container was removed meanwhile.
        """
        sql = ("UPDATE containers SET state = ?, monitor_pid = ?, mounts = ?, extra = ?, "
               "config = ?, host_config = ? WHERE id = ?")
        params: list = [json.dumps(rec.state), rec.monitor_pid, json.dumps(rec.mounts),
                        json.dumps(rec.extra), json.dumps(rec.config),
                        json.dumps(rec.host_config), rec.id]
        if expect is not None:
            sql += " AND json_extract(state, '$.Status') = ? AND monitor_pid = ?"
            params += [expect[0], expect[1]]
        with self.db.transaction() as conn:
            cur = conn.execute(sql, params)
            if cur.rowcount == 0:
                if expect is not None and conn.execute(
                        "SELECT 1 FROM containers WHERE id = ?", (rec.id,)).fetchone():
                    return False
                raise NotFound(f"No such container: {rec.name}")
            if event:
                events.emit(conn, "container", event, rec.id, name=rec.name, **attributes)
        return True

    def rename(self, rec: ContainerRecord, new_name: str) -> None:
        """Give a container a new name.

        Raises:
            Conflict: the new name is taken.
        """
        with self.db.transaction() as conn:
            row = conn.execute("SELECT id FROM containers WHERE name = ?", (new_name,)).fetchone()
            if row is not None:
                raise Conflict(f'Conflict. The container name "/{new_name}" is already in use by '
                               f'container "{row["id"]}". You have to remove (or rename) that '
                               f"container to be able to reuse that name.")
            conn.execute("UPDATE containers SET name = ? WHERE id = ?", (new_name, rec.id))
            events.emit(conn, "container", "rename", rec.id, name=new_name,
                        oldName="/" + rec.name)
        rec.name = new_name

    def delete(self, rec: ContainerRecord) -> None:
        """Forget the container and delete its folder (its mounts must be gone already)."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM containers WHERE id = ?", (rec.id,))
            events.emit(conn, "container", "destroy", rec.id, name=rec.name)
        import shutil

        paths = self.paths(rec.id)
        shutil.rmtree(paths.dir, ignore_errors=True)
        shutil.rmtree(paths.state_dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            paths.lock_file.unlink()


def now_rfc3339() -> tuple[str, float]:
    """The current time as Docker prints it and as epoch seconds."""
    ns = time.time_ns()
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z", ns / 1e9


def network_mode(host_config: dict[str, Any]) -> str:
    """The network a HostConfig asks for; Docker's ``default`` is the ``bridge`` network."""
    mode = host_config.get("NetworkMode") or "default"
    return "bridge" if mode == "default" else mode
