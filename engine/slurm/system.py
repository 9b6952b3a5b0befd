"""``version``, ``info`` and ``events`` of a Slurm context; what it cannot do, refused in one line.

A Slurm context has no engine of its own to ask: its containers are the client's records and
their jobs (:mod:`.engine`), its images the local engine's. So:

* ``version`` is portside's client beside Slurm's (``sinfo --version``);
* ``info`` counts the context's containers (one ``squeue``) and the local images, and adds a
  ``Slurm`` section: the context's settings and the partition's nodes as ``sinfo`` shows them;
* ``events`` are Docker's documents, made by watching: the local engine's image events as its
  log has them, and the context's containers listed every :data:`CONTAINER_POLL` seconds, each
  change since the last look reported as Docker reports it (``create``, ``start``, ``die`` with
  its ``exitCode``, ``rename``, ``destroy``). Nothing keeps a history of the cluster's changes,
  so events from the past are the images' only; a follower sees the containers' from now on.
  This is what the side panel's live updates read, as they read the local engine's log.
* ``system df``, ``check``, ``prune``, ``reset``, ``migrate`` and ``unshare`` concern one
  store, and each node has its own: one line (``Unsupported``) names the context and says where
  to ask instead.
"""

from __future__ import annotations

import time

from ..errors import SchedulerError, Unsupported

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, BinaryIO, Callable, Iterator, Mapping, Sequence

#: How often a follower of ``events`` lists the context's containers (one ``squeue`` each time:
#: clusters ask their users not to poll the controller much faster than this).
CONTAINER_POLL = 2.0
#: How often it reads the local engine's image events (a query of the local log).
IMAGE_POLL = 0.25


class SlurmSystem:
    """``engine.system`` of a Slurm context (see the module's description)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def _unsupported(self, what: str) -> Unsupported:
        return Unsupported(f'{what}: context "{self.engine.name}" is a Slurm cluster, where each '
                           "node has its own store: ask a node's portside (srun -w NODE "
                           f"portside {what}), or the local one (portside -c default {what})")

    # ------------------------------------------------------------------ what it is
    def slurm_version(self) -> str:
        """Slurm's version as its client commands say it (``22.05.8``); '' when they cannot."""
        try:
            proc = self.engine.slurm.run(["sinfo", "--version"], what="sinfo", timeout=10)
        except SchedulerError:
            return ""
        words = proc.stdout.decode(errors="replace").split()
        return words[-1] if proc.returncode == 0 and words else ""

    def version(self) -> dict[str, Any]:
        """``{"Client": portside, "Server": Slurm}`` in Docker's shape."""
        import platform

        from .. import __version__
        from ..image import oci

        arch = oci.host_platform()["architecture"]
        slurm = self.slurm_version()
        return {"Client": {"Version": __version__, "ApiVersion": "1.43",
                           "PythonVersion": platform.python_version(), "Os": "linux",
                           "Arch": arch, "Context": self.engine.name},
                "Server": {"Version": slurm or "unknown",
                           "Engine": f"Slurm (context {self.engine.name})",
                           "KernelVersion": "(the nodes')", "Os": "linux", "Arch": arch,
                           "Components": [{"Name": "Slurm", "Version": slurm or "unknown"}]}}

    def nodes(self) -> list[dict[str, str]]:
        """The context's partition's nodes as ``sinfo`` shows them: ``[{"Name", "State",
        "Gres"}]`` (the default partition's when the context names none)."""
        opts = self.engine.options
        argv = ["sinfo", "-h", "-N", "-o", "%N|%T|%G"]
        if opts.partition:
            argv[2:2] = ["-p", opts.partition]
        proc = self.engine.slurm.run(argv, what="sinfo")
        out = self.engine.slurm._check(proc, "sinfo failed")
        rows = []
        for line in out.splitlines():
            name, _, rest = line.strip().partition("|")
            state, _, gres = rest.partition("|")
            if name:
                rows.append({"Name": name, "State": state,
                             "Gres": "" if gres in ("(null)", "N/A") else gres})
        return rows

    def info(self) -> dict[str, Any]:
        """Docker's ``info`` fields that have a meaning here, and ``Slurm``: the context's
        settings, Slurm's version and the partition's nodes."""
        import platform

        from ..image import oci

        eng = self.engine
        containers = eng.containers.list(all=True, sparse=True)
        states = [c.attrs.get("State") for c in containers]
        opts = eng.options
        return {
            "ID": "", "Name": eng.name, "Context": eng.name,
            "Containers": len(containers),
            "ContainersRunning": states.count("running"),
            "ContainersPaused": states.count("paused"),
            "ContainersStopped": len(states) - states.count("running") - states.count("paused"),
            "Images": len(eng.images.list()),
            "Driver": "slurm",
            "ServerVersion": self.slurm_version() or "unknown",
            "OSType": "linux", "Architecture": oci.host_platform()["architecture"],
            "RegistryConfig": {"Mirrors": [], "IndexConfigs": {}},
            "ClientInfo": {"Host": platform.node()},
            "Slurm": {"Partition": opts.partition or "", "Time": opts.time or "",
                      "Account": opts.account or "", "Registry": opts.registry or "",
                      "Root": opts.root or "", "Conf": opts.conf or "",
                      "Nodes": self.nodes()},
        }

    # ------------------------------------------------------------------ events
    def events(self, *, since: float | None = None, until: float | None = None,
               filters: Mapping[str, list[str]] | None = None, follow: bool = False,
               stop: Callable[[], bool] | None = None) -> Iterator[dict[str, Any]]:
        """Docker's event documents, oldest first (see the module's description): the local
        images' since ``since``, then, with ``follow``, the images' and the containers' as
        they happen until ``until`` passes or ``stop()`` says so. ``filters``: ``type``,
        ``event``."""
        filters = dict(filters or {})

        def wanted(doc: dict[str, Any]) -> bool:
            if "type" in filters and doc["Type"] not in filters["type"]:
                return False
            return "event" not in filters or doc["Action"] in filters["event"]

        return (doc for doc in self._events(since, until, follow, stop) if wanted(doc))

    def _image_events(self, since: float | None, until: float | None) -> list[dict[str, Any]]:
        local = self.engine.local.system.events(since=since, until=until,
                                                filters={"type": ["image"]})
        return list(local)

    def _events(self, since: float | None, until: float | None, follow: bool,
                stop: Callable[[], bool] | None) -> Iterator[dict[str, Any]]:
        now = time.time()
        if since is not None or not follow:
            yield from self._image_events(since, now if until is None else min(until, now))
        if not follow or (until is not None and until <= now):
            return
        watched = self._snapshot()
        seen_to = now
        next_list = time.monotonic() + CONTAINER_POLL
        while True:
            if stop is not None and stop():
                return
            now = time.time()
            if until is not None and now > until:
                return
            # a window's events once: the next one starts just after this one's end
            for doc in self._image_events(seen_to + 1e-6, now):
                yield doc
            seen_to = now
            if time.monotonic() >= next_list:
                current = self._snapshot()
                yield from _changes(watched, current, time.time())
                watched = current
                next_list = time.monotonic() + CONTAINER_POLL
            time.sleep(IMAGE_POLL)

    def _snapshot(self) -> dict[str, dict[str, Any]]:
        """The context's containers now: id -> name, image, status, exit code."""
        try:
            listed = self.engine.containers.list(all=True)
        except SchedulerError:
            return {}  # Slurm did not answer this time: the next look reports the changes
        return {c.id: {"name": c.name, "image": c.attrs.get("Config", {}).get("Image") or "",
                       "status": c.status,
                       "exitCode": (c.attrs.get("State") or {}).get("ExitCode", 0),
                       "job": (c.attrs.get("Slurm") or {}).get("JobId") or ""}
                for c in listed}

    # ------------------------------------------------------------------ one store's verbs
    def df(self) -> list[dict[str, Any]]:
        raise self._unsupported("system df")

    def check(self, *, repair: bool = False) -> dict[str, list[str]]:
        raise self._unsupported("system check")

    def prune(self, *, all: bool = False, volumes: bool = False,
              filters: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
        raise self._unsupported("system prune")

    def reset(self) -> dict[str, Any]:
        raise self._unsupported("system reset")

    def migrate(self) -> dict[str, Any]:
        raise self._unsupported("system migrate")

    def unshare(self, argv: Sequence[str], *, stdin: BinaryIO | None = None,
                stdout: BinaryIO | None = None, stderr: BinaryIO | None = None) -> int:
        raise self._unsupported("unshare")


def _changes(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]],
             at: float) -> Iterator[dict[str, Any]]:
    """Docker's events for what changed between two looks at the containers."""
    def doc(cid: str, action: str, info: dict[str, Any], **extra: str) -> dict[str, Any]:
        attributes = {"name": info["name"], "image": info["image"], **extra}
        if info.get("job"):
            attributes["io.portside.slurm.job"] = info["job"]
        return {"Type": "container", "Action": action, "status": action, "id": cid,
                "from": info["image"], "Actor": {"ID": cid, "Attributes": attributes},
                "scope": "local", "time": int(at), "timeNano": int(at * 1e9)}

    for cid, now in after.items():
        old = before.get(cid)
        if old is None:
            yield doc(cid, "create", now)
            if now["status"] == "running":
                yield doc(cid, "start", now)
            continue
        if old["name"] != now["name"]:
            yield doc(cid, "rename", now, oldName=old["name"])
        if old["status"] != now["status"] or old["job"] != now["job"]:
            if now["status"] == "running":
                yield doc(cid, "start", now)
            elif now["status"] == "exited":
                yield doc(cid, "die", now, exitCode=str(now["exitCode"]))
            elif now["status"] == "paused":
                yield doc(cid, "pause", now)
            elif old["status"] == "paused":
                yield doc(cid, "unpause", now)
            else:
                # the job went back to the queue (a new one for a restarted container)
                yield doc(cid, "update", now)
    for cid, old in before.items():
        if cid not in after:
            yield doc(cid, "destroy", old)
