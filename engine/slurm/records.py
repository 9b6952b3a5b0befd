"""What the client remembers of each container of a Slurm context.

The container itself lives on a node, in that node's store, for as long as its job runs; the
client keeps a small JSON document per container in the context's folder so that it can list
containers without asking every node, find a container's job and node for the next verb, and
still show a container after its job has ended and vanished from Slurm (as exited, with the last
status it knew, until ``rm``)::

    <state>/containers/<id>.json   the record (below)
    <state>/jobs/<job>.out         the batch job's own output (the keeper's messages)
    <state>/logs/<id>.log          the container's log, copied there by the keeper when it ends
                                   (where the nodes can write to the client's folder)

A record: ``Id``, ``Name``, ``Created``, ``Config``, ``HostConfig`` (Docker's documents, as the
fronts built them), ``Image`` (the image id), ``Job``/``Node``/``Gpus`` (Slurm's side), ``State``
(Docker's ``State`` as last seen) and ``Slurm`` (the job's last ``squeue`` line). Writes are
atomic (a temporary file renamed into place); names are claimed, records rewritten and removed
under one lock, so that a rewrite never brings back a record removed meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from ..errors import AlreadyExists, InvalidArgument, NotFound

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Iterator


class RecordStore:
    """The records of one context, under ``state_dir``."""

    def __init__(self, state_dir: str | os.PathLike) -> None:
        self.dir = Path(state_dir)
        self.containers = self.dir / "containers"

    def _ensure(self) -> None:
        for sub in ("containers", "jobs", "logs"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)

    def job_output(self, job: str) -> Path:
        return self.dir / "jobs" / f"{job}.out"

    def log_copy(self, container_id: str) -> Path:
        return self.dir / "logs" / f"{container_id}.log"

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Held while a name is claimed or a record removed (several processes share a
        context)."""
        import fcntl

        self._ensure()
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ reading
    def list(self) -> list[dict[str, Any]]:
        """Every record, newest first."""
        out = []
        try:
            names = os.listdir(self.containers)
        except FileNotFoundError:
            return []
        for name in names:
            if not name.endswith(".json"):
                continue
            rec = self._read(self.containers / name)
            if rec is not None:
                out.append(rec)
        out.sort(key=lambda r: r.get("Created", 0), reverse=True)
        return out

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            with open(path, "rb") as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return None

    def get(self, container_id: str) -> dict[str, Any] | None:
        return self._read(self.containers / f"{container_id}.json")

    def resolve(self, ref: str) -> dict[str, Any]:
        """The record with that name, id or unique id prefix.

        Raises:
            NotFound: none matches (``No such container: exp``).
            InvalidArgument: an id prefix matches several.
        """
        ref = ref.lstrip("/")
        if not ref:
            raise NotFound("No such container: (empty name)")
        records = self.list()
        for rec in records:
            if rec["Name"] == ref or rec["Id"] == ref:
                return rec
        matches = [r for r in records if r["Id"].startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"multiple containers match the id prefix {ref}")
        raise NotFound(f"No such container: {ref}")

    # ------------------------------------------------------------------ writing
    def save(self, rec: dict[str, Any], *, locked: bool = False) -> None:
        """Write a record anew (``locked``: the caller holds :meth:`lock`). A record removed
        meanwhile stays removed: a listing that read it before an ``rm`` in another thread or
        process, and reconciled it with ``squeue`` after, must not bring it back."""
        if not locked:
            with self.lock():
                self._write(rec, new=False)
        else:
            self._write(rec, new=False)

    def _write(self, rec: dict[str, Any], *, new: bool) -> None:
        import threading

        self._ensure()
        path = self.containers / f"{rec['Id']}.json"
        # one temporary name per thread: the server's threads save records side by side
        tmp = path.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")
        with open(tmp, "w") as f:
            json.dump(rec, f)
        if not new and not path.exists():
            tmp.unlink()
            return
        os.replace(tmp, path)

    def claim(self, rec: dict[str, Any]) -> None:
        """Save a new record, its name unique among the context's containers.

        Raises:
            AlreadyExists: the name is taken (Docker's words).
        """
        with self.lock():
            for other in self.list():
                if other["Name"] == rec["Name"]:
                    raise AlreadyExists(
                        f'the container name "/{rec["Name"]}" is already in use by container '
                        f'"{other["Id"]}"; remove (or rename) that container to reuse that name')
            self._write(rec, new=True)

    def delete(self, rec: dict[str, Any]) -> None:
        with self.lock():
            for path in (self.containers / f"{rec['Id']}.json", self.log_copy(rec["Id"])):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            job = rec.get("Job")
            if job:
                with contextlib.suppress(FileNotFoundError):
                    self.job_output(job).unlink()
