"""Containers: the ``Container`` model (Docker's ``container inspect`` JSON) and its collection.

The collection follows docker-py: ``engine.containers.run("busybox", "echo hi")``,
``.create(...)``, ``.get("web")``, ``.list(all=True, filters={"status": ["exited"]})``,
``.prune()``. A :class:`Container` holds ``attrs`` (the inspect document) and has the verbs
(``start``, ``stop``, ``logs``, ``exec_run``, ``commit``…); each verb goes through
:class:`~portside.engine.runtime.lifecycle.Lifecycle`, which refreshes the state first, so ``attrs``
after ``reload()`` is always the truth.

Importing this module also tells the rest of the engine about containers: images they use cannot be
removed (``register_in_use``), their layers are kept by garbage collection
(``register_references``), and ``info``, ``system df`` and ``system check`` count and repair them.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from ..errors import ContainerExit, InvalidArgument, NotFound
from ..image.schema import register_references
from ..runtime.containers import ContainerRecord, ContainerStore, network_mode
from .images import register_in_use
from .resource import Collection, Model
from .system import register_check, register_df, register_info

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, BinaryIO, Iterator


#: State keys that are portside's own bookkeeping, not Docker's.
_PRIVATE_STATE = ("StartedAtTs", "FinishedAtTs", "ManuallyStopped", "RestartCount")


def _rfc3339(ts: float) -> str:
    from ..image.oci import rfc3339

    return rfc3339(ts)


class Container(Model):
    """One container; ``attrs`` is Docker's ``container inspect`` document."""

    @property
    def name(self) -> str:
        return self.attrs["Name"].lstrip("/")

    @property
    def status(self) -> str:
        return self.attrs["State"]["Status"]

    @property
    def labels(self) -> dict[str, str]:
        return self.attrs["Config"].get("Labels") or {}

    @property
    def image(self):
        return self.collection.engine.images.get(self.attrs["Image"])

    @property
    def lc(self):
        return self.collection.lifecycle

    def reload(self) -> None:
        self.attrs = self.collection.get(self.id).attrs

    def _done(self, rec: ContainerRecord) -> "Container":
        self.attrs = self.collection.inspect(rec)
        return self

    # ---- verbs ----------------------------------------------------------------------------
    def start(self) -> "Container":
        return self._done(self.lc.start(self.id))

    def stop(self, timeout: int | None = None) -> "Container":
        return self._done(self.lc.stop(self.id, timeout))

    def restart(self, timeout: int | None = None) -> "Container":
        return self._done(self.lc.restart(self.id, timeout))

    def kill(self, signal: str | int = "KILL") -> "Container":
        return self._done(self.lc.kill(self.id, signal))

    def pause(self) -> "Container":
        return self._done(self.lc.pause(self.id))

    def unpause(self) -> "Container":
        return self._done(self.lc.unpause(self.id))

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until it stops; returns ``{"StatusCode": n, "Error": None}`` (docker-py's)."""
        code = self.lc.wait(self.id, timeout)
        return {"StatusCode": code, "Error": None}

    def remove(self, force: bool = False, v: bool = False) -> None:
        self.lc.remove(self.id, force=force, volumes=v)

    def rename(self, name: str) -> None:
        self._done(self.lc.rename(self.id, name))

    def logs(self, *, stdout: bool = True, stderr: bool = True, stream: bool = False,
             timestamps: bool = False, tail: int | str | None = None, since: float | None = None,
             until: float | None = None, follow: bool = False,
             stop: Any = None) -> bytes | Iterator[tuple[str, bytes]]:
        """The container's output. ``stream``/``follow`` give an iterator of (stream, bytes);
        ``stop`` (a callable) ends a follow early, e.g. when the reader has gone away."""
        from ..runtime.logs import read_logs

        rec = self.collection.store.resolve(self.id)
        paths = self.lc.paths(rec)
        tail_n = None if tail in (None, "all") else int(tail)

        def running() -> bool:
            if stop is not None and stop():
                return False
            fresh = self.collection.store.get_by_id(rec.id)
            if fresh is None:
                return False
            return fresh.status in ("running", "paused", "restarting") and \
                not paths.exit_file.exists() and self.lc.monitor_alive(fresh)

        entries = read_logs(paths.log, tail=tail_n, since=since, until=until, follow=follow,
                            is_running=running, timestamps=timestamps)
        wanted = {s for s, ok in (("stdout", stdout), ("stderr", stderr)) if ok}
        selected = ((s, d) for s, d, _t in entries if s in wanted)
        if stream or follow:
            return selected
        return b"".join(d for _s, d in selected)

    def top(self, ps_args: str = "") -> dict[str, Any]:
        """Docker's ``top``: ``{"Titles": [...], "Processes": [[...], ...]}``."""
        rec = self.lc.refresh(self.collection.store.resolve(self.id))
        if rec.status not in ("running", "paused"):
            from ..errors import IncorrectState

            raise IncorrectState(f"container {rec.name} is not running")
        pids = self.lc.runtime.ps(rec.id)
        return process_table(pids)

    def stats(self) -> dict[str, Any]:
        """One sample of the container's cgroup counters (memory, cpu, pids)."""
        from ..runtime.cgroups import Cgroup, cgroup_path_for

        rec = self.lc.refresh(self.collection.store.resolve(self.id))
        cg = Cgroup(cgroup_path_for(rec.id))
        out: dict[str, Any] = {"id": rec.id, "name": "/" + rec.name, "read": _rfc3339(time.time()),
                               "memory_stats": {}, "cpu_stats": {}, "pids_stats": {}}
        if rec.status in ("running", "paused") and cg.exists():
            for key, fn in (("usage", cg.memory_usage), ("limit", cg.memory_limit)):
                try:
                    out["memory_stats"][key] = fn()
                except Exception:  # noqa: BLE001 - a controller may be missing on this host
                    pass
            try:
                out["cpu_stats"]["cpu_usage"] = {"total_usage": cg.cpu_usage_ns()}
            except Exception:  # noqa: BLE001
                pass
            try:
                out["pids_stats"]["current"] = cg.pids_current()
            except Exception:  # noqa: BLE001
                pass
        return out

    def exec_run(self, cmd: str | list[str], *, stdout: bool = True, stderr: bool = True,
                 tty: bool = False, detach: bool = False, environment: list[str] | dict | None = None,
                 workdir: str = "", user: str = "") -> tuple[int | None, bytes]:
        """Run a command in the container; returns ``(exit_code, output)`` (docker-py's shape)."""
        import shlex
        import subprocess

        argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
        env = _env_list(environment)
        proc = self.lc.exec_run(self.id, argv, detach=detach, tty=tty, env=env, workdir=workdir,
                                user=user, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE if not detach else subprocess.DEVNULL,
                                stderr=(subprocess.STDOUT if stderr else subprocess.DEVNULL)
                                if not detach else subprocess.DEVNULL)
        if detach:
            return None, b""
        out = b""
        if proc.stdout:
            with proc.stdout:
                out = proc.stdout.read()
        code = proc.wait()
        return code, out if stdout else b""

    def commit(self, repository: str | None = None, tag: str | None = None, *,
               message: str = "", author: str = "", changes: list[str] | str = (),
               pause: bool = True):
        from ..runtime.commit import commit

        ref = f"{repository}:{tag}" if repository and tag else repository
        rec = self.collection.store.resolve(self.id)
        image_id = commit(self.lc, rec, repository=ref, author=author, message=message,
                          changes=[changes] if isinstance(changes, str) else list(changes),
                          pause=pause)
        return self.collection.engine.images.get(image_id)

    def diff(self) -> list[dict[str, Any]]:
        """Docker's ``diff``: ``[{"Path": p, "Kind": 0|1|2}]`` (0 changed, 1 added, 2 deleted)."""
        from ..runtime.commit import diff

        kinds = {"C": 0, "A": 1, "D": 2}
        rec = self.collection.store.resolve(self.id)
        return [{"Path": p, "Kind": kinds[k]} for k, p in diff(self.lc, rec)]

    def export(self, out: BinaryIO) -> None:
        from ..runtime.commit import export

        export(self.lc, self.collection.store.resolve(self.id), out)

    def get_archive(self, path: str, out: BinaryIO, *,
                    follow_links: bool = False) -> dict[str, Any]:
        """Write a tar of ``path`` to ``out``; returns Docker's stat (name, size, mode).

        ``follow_links``: a final symbolic link is followed inside the container (``cp -L``):
        the tar holds its target's content under the link's name, and the stat is the target's.
        """
        from ..runtime.cp import write_archive

        with self.collection.container_fs(self.id) as fs:
            st = write_archive(fs, path, out, follow=follow_links)
        return {"name": os.path.basename(path.rstrip("/")) or "/", "size": st.st_size,
                "mode": st.st_mode, "mtime": _rfc3339(st.st_mtime)}

    def put_archive(self, path: str, data: BinaryIO | bytes) -> bool:
        """Extract a tar (bytes or stream) into the container directory ``path``."""
        import io

        from ..runtime.cp import extract_archive

        stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
        with self.collection.container_fs(self.id) as fs:
            extract_archive(fs, path, stream)
        return True

    def attach_socket(self) -> Path:
        rec = self.collection.store.resolve(self.id)
        return self.lc.paths(rec).attach_socket


def _env_list(env: list[str] | dict | None) -> list[str]:
    if env is None:
        return []
    if isinstance(env, dict):
        return [f"{k}={v}" for k, v in env.items()]
    return list(env)


def process_table(pids: list[int]) -> dict[str, Any]:
    """``ps -ef``-like rows for host pids: UID PID PPID C STIME TTY TIME CMD."""
    import pwd

    titles = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    hz = os.sysconf("SC_CLK_TCK")
    try:
        boot = float(next(ln for ln in Path("/proc/stat").read_text().splitlines()
                          if ln.startswith("btime")).split()[1])
    except (OSError, StopIteration):
        boot = 0.0
    rows = []
    for pid in pids:
        try:
            stat_fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace").strip()
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            continue
        ppid = stat_fields[1]
        cpu_s = (int(stat_fields[11]) + int(stat_fields[12])) // hz
        start = boot + int(stat_fields[19]) / hz
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
        rows.append([user, str(pid), ppid, "0", time.strftime("%H:%M", time.localtime(start)),
                     "?", time.strftime("%H:%M:%S", time.gmtime(cpu_s)), cmd])
    return {"Titles": titles, "Processes": rows}


class ContainerCollection(Collection):
    """``engine.containers``: create, run, get, list and prune containers."""

    model = Container

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self.store = ContainerStore(engine.db, engine.root)
        self._lifecycle = None

    @property
    def lifecycle(self):
        if self._lifecycle is None:
            from ..runtime.lifecycle import Lifecycle

            self._lifecycle = Lifecycle(self.engine)
        return self._lifecycle

    # ---- reading ----------------------------------------------------------------------------
    def inspect(self, rec: ContainerRecord) -> dict[str, Any]:
        """Docker's ``container inspect`` document for a record."""
        cfg = rec.config
        paths = self.store.paths(rec.id)
        state = {k: v for k, v in rec.state.items() if k not in _PRIVATE_STATE}
        state["Running"] = rec.status in ("running", "paused")
        state["Paused"] = rec.status == "paused"
        state["Restarting"] = rec.status == "restarting"
        state["Dead"] = rec.status == "dead"
        args = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
        mounts = [{k: m.get(k) for k in ("Type", "Name", "Source", "Destination", "Driver", "Mode",
                                          "RW", "Propagation") if k in m} for m in rec.mounts]
        up = rec.status in ("running", "paused")
        hc = dict(rec.host_config)
        mode = network_mode(hc)
        ports = {p: None for p in (cfg.get("ExposedPorts") or {})}
        return {
            "Id": rec.id,
            "Created": _rfc3339(rec.created),
            "Path": args[0] if args else "",
            "Args": args[1:],
            "State": state,
            "Image": rec.image_id,
            "ResolvConfPath": str(paths.etc_file("resolv.conf")),
            "HostnamePath": str(paths.etc_file("hostname")),
            "HostsPath": str(paths.etc_file("hosts")),
            "LogPath": str(paths.log),
            "Name": "/" + rec.name,
            "RestartCount": int(rec.state.get("RestartCount", 0)),
            "Driver": "overlay",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": None,
            "HostConfig": hc,
            "GraphDriver": {"Name": "overlay", "Data": self._graph_data(rec)},
            "Mounts": mounts,
            "Config": cfg,
            "NetworkSettings": _network_settings(rec, mode, ports, up),
            "GPUs": rec.extra.get("GPUs") or [],
        }

    def _graph_data(self, rec: ContainerRecord) -> dict[str, Any]:
        paths = self.store.paths(rec.id)
        try:
            image = self.engine.image_store.get(rec.image_id)
            lowers = ":".join(str(p) for p in self.engine.image_store.rootfs_lowers(image))
        except NotFound:
            lowers = ""
        return {"LowerDir": lowers, "UpperDir": str(paths.upper), "MergedDir": str(paths.rootfs),
                "WorkDir": str(paths.work)}

    def _refreshed(self, rec: ContainerRecord) -> ContainerRecord:
        """The record with its true state. Readers (ps, inspect, the side panel) take the
        container's lock only when the state must change, and then act on a record read under
        the lock: a copy read earlier may be stale (a restart policy just started a new run).
        A stopped container costs one ``stat`` (a start killed half-way left a marker)."""
        if rec.status not in ("running", "paused", "restarting"):
            from ..runtime.interrupted import pending

            if not pending(self.store.paths(rec.id)):
                return rec  # (without importing the lifecycle: ps -a stays cheap)
            lc = self.lifecycle
            with self.store.lock(rec.id, blocking=False) as held:
                if not held:
                    return rec  # being started right now: shown as it was
                fresh = self.store.get_by_id(rec.id)
                if fresh is not None:
                    fresh = lc.settle(fresh)  # the starter died: finish its job
                if fresh is None:
                    raise NotFound(f"no such container: {rec.name}")  # it was --rm
                return lc.refresh(fresh)
        from ..runtime import freeze

        lc = self.lifecycle
        if lc.monitor_alive(rec) and (rec.status == "restarting"
                                      or not lc.paths(rec).exit_file.exists()
                                      and not freeze.suspicious(lc, rec)):
            return rec  # nothing to record: its monitor lives, no exit, no freeze to settle
        with self.store.lock(rec.id):
            fresh = self.store.get_by_id(rec.id)
            if fresh is None:
                return rec  # removed meanwhile (--rm)
            return lc.refresh(fresh)

    def get(self, container_id: str) -> Container:
        """The container with that name, id or unique id prefix; raises NotFound."""
        rec = self._refreshed(self.store.resolve(container_id))
        return Container(self.inspect(rec), self)

    def records(self, *, all: bool = False, filters: dict[str, list[str]] | None = None,
                limit: int | None = None) -> list[ContainerRecord]:
        """Records (state refreshed), newest first, filtered like ``ps``."""
        filters = {k: v for k, v in (filters or {}).items()}
        out = []
        image_ids: dict[str, str | None] = {}
        for rec in self.store.list():
            try:
                rec = self._refreshed(rec)
            except NotFound:
                continue  # removed meanwhile
            if not all and not filters.get("status") and rec.status not in ("running", "paused",
                                                                              "restarting"):
                continue
            if not _matches(self, rec, filters, image_ids):
                continue
            out.append(rec)
        if limit is not None and limit >= 0:
            out = out[:limit]
        return out

    def list(self, *, all: bool = False, filters: dict[str, list[str]] | None = None,
             limit: int | None = None, before: str | None = None,
             since: str | None = None) -> list[Container]:
        """Containers, newest first; by default only running ones (``all`` for every one).
        ``filters`` as Docker's: status, name, id, ancestor, label, exited, before, since."""
        filters = dict(filters or {})
        if before:
            filters.setdefault("before", []).append(before)
        if since:
            filters.setdefault("since", []).append(since)
        return [Container(self.inspect(r), self)
                for r in self.records(all=all, filters=filters, limit=limit)]

    # ---- writing ----------------------------------------------------------------------------
    def create_from(self, config: dict[str, Any], host_config: dict[str, Any], *,
                    name: str | None = None, container_id: str | None = None) -> Container:
        """Create from Docker-shaped ``Config``/``HostConfig`` documents (what the CLI builds).
        ``container_id``: the id to give it (one whose monitor was launched ahead)."""
        rec = self.lifecycle.create(config, host_config, name=name, container_id=container_id)
        return Container(self.inspect(rec), self)

    def create(self, image: str, command: str | list[str] | None = None, **kwargs: Any) -> Container:
        """docker-py's ``containers.create``: name, environment, entrypoint, working_dir, user,
        hostname, labels, volumes, tty, stdin_open, auto_remove, network_mode, privileged,
        cap_add, cap_drop, read_only, shm_size, mem_limit, nano_cpus, pids_limit,
        restart_policy, stop_signal, device_requests (as ``gpus``)."""
        config, host_config, name = docker_py_kwargs(image, command, kwargs)
        return self.create_from(config, host_config, name=name)

    def run(self, image: str, command: str | list[str] | None = None, *, detach: bool = False,
            remove: bool = False, stdout: bool = True, stderr: bool = False,
            **kwargs: Any) -> Container | bytes:
        """docker-py's ``containers.run``: with ``detach`` the running Container; otherwise the
        output once it exits.

        Raises:
            ContainerExit: it exited non-zero (the status is the exception's ``exit_code``).
        """
        from ..runtime.containers import new_container_id

        config, host_config, name = docker_py_kwargs(
            image, command, dict(kwargs, auto_remove=remove and detach))
        lc = self.lifecycle
        # The monitor's interpreter starts now, while the container is created and its bundle
        # written: its start-up is off the critical path.
        launch = lc.launch_monitor(new_container_id())
        try:
            rec = lc.create(config, host_config, name=name, container_id=launch.container_id)
        except BaseException:
            lc.cancel_launch(launch)
            raise
        container = Container(self.inspect(rec), self)
        if detach:
            container._done(lc.start(rec, launch=launch))
            return container
        # we wait here and clean up after it, so the monitor needs no cleanup process of its own
        lc.start(rec, watched=True, launch=launch)
        try:
            code = container.wait()["StatusCode"]
            out = container.logs(stdout=stdout, stderr=stderr)
            if remove:
                container.remove(force=True)
        finally:
            self.lifecycle.unwatch(container.id)
        if code != 0:
            raise ContainerExit(code, f"container {container.name} exited with {code}: "
                                      f"{out[-200:].decode(errors='replace').strip()}")
        return out  # type: ignore[return-value]

    def prune(self, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """Remove every stopped container; returns ``{"ContainersDeleted", "SpaceReclaimed"}``."""
        deleted, reclaimed = [], 0
        for rec in self.records(all=True, filters=filters):
            if rec.status in ("running", "paused", "restarting"):
                continue
            reclaimed += _dir_size(self.store.paths(rec.id).upper)
            try:
                self.lifecycle.remove(rec.id)
            except NotFound:
                continue
            deleted.append(rec.id)
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def container_fs(self, ref: str):
        """Context manager: the container's :class:`~portside.engine.runtime.cp.ContainerFS`
        (its rootfs mounted for the moment if it is stopped)."""
        import contextlib

        from ..runtime.cp import ContainerFS

        rec = self.store.resolve(ref)
        lc = self.lifecycle

        @contextlib.contextmanager
        def opened():
            with lc.rootfs(rec) as root:
                paths = lc.paths(rec)
                live = rec.extra.get("EtcFiles") or {}
                mounts = []
                for n in ("hostname", "hosts", "resolv.conf"):
                    source = live.get(f"/etc/{n}")
                    if source and Path(source).exists():
                        mounts.append((f"/etc/{n}", source))
                    elif paths.etc_file(n).exists():
                        mounts.append((f"/etc/{n}", str(paths.etc_file(n))))
                mounts += [(m["Destination"], m["Source"]) for m in rec.mounts
                           if m.get("Source") and m.get("Destination")]
                readonly = tuple(m["Destination"] for m in rec.mounts
                                 if m.get("Destination") and m.get("RW") is False)
                yield ContainerFS(Path(root), mounts, readonly,
                                  bool(rec.host_config.get("ReadonlyRootfs")), rec.name)

        return opened()


def docker_py_kwargs(image: str, command: str | list[str] | None,
                     kw: dict[str, Any]) -> tuple[dict, dict, str | None]:
    """Map docker-py's keyword arguments onto ``Config``/``HostConfig``."""
    import shlex

    unknown = set(kw) - {
        "name", "environment", "entrypoint", "working_dir", "user", "hostname", "labels",
        "volumes", "tty", "stdin_open", "auto_remove", "network_mode", "network", "privileged",
        "cap_add", "cap_drop", "read_only", "shm_size", "mem_limit", "nano_cpus", "pids_limit",
        "restart_policy", "stop_signal", "gpus", "devices", "volumes_from", "mounts",
        "stop_timeout", "extra_hosts", "dns", "ulimits"}
    if unknown:
        raise InvalidArgument(f"unsupported container option(s): {', '.join(sorted(unknown))}")
    cmd = shlex.split(command) if isinstance(command, str) else (list(command) if command else None)
    entry = kw.get("entrypoint")
    if isinstance(entry, str):
        entry = shlex.split(entry) or [""]
    labels = kw.get("labels") or {}
    if isinstance(labels, list):
        labels = {k: "" for k in labels}
    config: dict[str, Any] = {
        "Image": image, "Cmd": cmd, "Entrypoint": entry, "Env": _env_list(kw.get("environment")),
        "WorkingDir": kw.get("working_dir") or "", "User": kw.get("user") or "",
        "Hostname": kw.get("hostname") or "", "Labels": labels, "Tty": bool(kw.get("tty")),
        "OpenStdin": bool(kw.get("stdin_open")), "StopSignal": kw.get("stop_signal") or "",
    }
    if kw.get("stop_timeout") is not None:
        config["StopTimeout"] = int(kw["stop_timeout"])
    vols = kw.get("volumes") or []
    binds: list[str] = []
    if isinstance(vols, dict):
        for src, spec in vols.items():
            binds.append(f"{src}:{spec['bind']}" + (f":{spec['mode']}" if spec.get("mode") else ""))
    else:
        binds = list(vols)
    shm = kw.get("shm_size")
    mem = kw.get("mem_limit")
    from ..units import parse_size

    restart = kw.get("restart_policy") or {"Name": "no", "MaximumRetryCount": 0}
    host_config: dict[str, Any] = {
        "Binds": binds or None, "AutoRemove": bool(kw.get("auto_remove")),
        "NetworkMode": kw.get("network_mode") or kw.get("network") or "default",
        "Privileged": bool(kw.get("privileged")), "CapAdd": kw.get("cap_add"),
        "CapDrop": kw.get("cap_drop"), "ReadonlyRootfs": bool(kw.get("read_only")),
        "ShmSize": (parse_size(shm) if isinstance(shm, str) else shm) or 64 * 1024**2,
        "Memory": (parse_size(mem) if isinstance(mem, str) else mem) or 0,
        "NanoCpus": int(kw.get("nano_cpus") or 0), "PidsLimit": kw.get("pids_limit"),
        "RestartPolicy": restart, "VolumesFrom": kw.get("volumes_from"),
        "Mounts": kw.get("mounts"), "ExtraHosts": [f"{h}:{ip}" for h, ip in
                                                   (kw.get("extra_hosts") or {}).items()],
        "Dns": kw.get("dns") or [],
    }
    if kw.get("gpus"):
        host_config["Gpus"] = kw["gpus"]
    return config, host_config, kw.get("name")


def _dir_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                pass
    return total


def _matches(coll: ContainerCollection, rec: ContainerRecord, filters: dict[str, list[str]],
             image_ids: dict[str, str | None]) -> bool:
    for key, values in filters.items():
        if key == "status":
            if rec.status not in values:
                return False
        elif key == "name":
            if not any(re.search(v, rec.name) for v in values):
                return False
        elif key == "id":
            if not any(rec.id.startswith(v) for v in values):
                return False
        elif key == "label":
            labels = rec.config.get("Labels") or {}
            for item in values:
                k, eq, v = item.partition("=")
                if k not in labels or (eq and labels[k] != v):
                    return False
        elif key == "ancestor":
            ok = False
            for v in values:
                if v not in image_ids:
                    try:
                        image_ids[v] = coll.engine.image_store.resolve_id(v)
                    except (NotFound, InvalidArgument):
                        image_ids[v] = None
                if image_ids[v] == rec.image_id or rec.config.get("Image") == v:
                    ok = True
            if not ok:
                return False
        elif key == "exited":
            if rec.status != "exited" or str(rec.state.get("ExitCode")) not in values:
                return False
        elif key in ("before", "since"):
            other = coll.store.resolve(values[0])
            if key == "before" and not rec.created < other.created:
                return False
            if key == "since" and not rec.created > other.created:
                return False
        elif key == "volume":
            if not any(m.get("Name") in values or m.get("Destination") in values
                       or m.get("Source") in values for m in rec.mounts):
                return False
        elif key in ("network", "health", "is-task", "publish", "expose"):
            continue
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
    return True


def _network_settings(rec: ContainerRecord, mode: str, ports: dict, up: bool) -> dict[str, Any]:
    """Docker's NetworkSettings: the live addresses and ports while the container runs."""
    live = rec.extra.get("NetworkSettings") if up else None
    networks: dict[str, Any] = {}
    if live:
        for name, ep in (live.get("Networks") or {}).items():
            networks[name] = {"NetworkID": "", "EndpointID": "", "Gateway": "",
                              "IPAddress": ep.get("IPAddress", ""), "IPPrefixLen": 0,
                              "MacAddress": ep.get("MacAddress", "")}
        ports = dict(ports, **(live.get("Ports") or {}))
    elif mode != "host":
        networks[mode] = {"NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "",
                          "IPPrefixLen": 0, "MacAddress": ""}
    first = next(iter(networks.values()), {})
    return {"Bridge": "", "SandboxID": "", "SandboxKey": (live or {}).get("SandboxKey") or "",
            "Ports": ports, "IPAddress": first.get("IPAddress", ""), "IPPrefixLen": 0,
            "Gateway": "", "MacAddress": first.get("MacAddress", ""), "Networks": networks}


# ----------------------------------------------------------------------------------- registrations

def _in_use(engine) -> dict[str, list[str]]:
    return engine.containers.store.images_in_use()


def _references(conn) -> tuple[set[str], set[str]]:
    chains: set[str] = set()
    blobs: set[str] = set()
    try:
        rows = conn.execute("SELECT DISTINCT l.chain_id, l.digest FROM containers c "
                            "JOIN image_layers l ON l.image_id = c.image_id").fetchall()
    except Exception:  # noqa: BLE001 - the containers table does not exist yet
        return blobs, chains
    for row in rows:
        chains.add(row["chain_id"])
        blobs.add(row["digest"])
    return blobs, chains


def _info(engine) -> dict[str, int]:
    recs = engine.containers.records(all=True)
    running = sum(1 for r in recs if r.status == "running")
    paused = sum(1 for r in recs if r.status == "paused")
    return {"Containers": len(recs), "ContainersRunning": running, "ContainersPaused": paused,
            "ContainersStopped": len(recs) - running - paused}


def _df(engine) -> dict[str, Any]:
    recs = engine.containers.records(all=True)
    sizes = {r.id: _dir_size(engine.containers.store.paths(r.id).upper) for r in recs}
    active = [r for r in recs if r.status in ("running", "paused")]
    total = sum(sizes.values())
    return {"Type": "Containers", "TotalCount": len(recs), "Active": len(active), "Size": total,
            "Reclaimable": total - sum(sizes[r.id] for r in active)}


def _check(engine, repair: bool) -> tuple[list[str], list[str]]:
    """Containers whose monitor died (a problem), and mounts, cgroups, runtime state and
    folders nobody owns (garbage)."""
    from ..runtime.cgroups import Cgroup, cgroup_path_for
    from ..runtime.lifecycle import _mounted

    coll = engine.containers
    lc = coll.lifecycle
    problems: list[str] = []
    garbage: list[str] = []
    cdir = Path(engine.root) / "containers"
    # in one write transaction: a `create` makes its folder and record in one, so a folder
    # seen here without a record is nobody's
    with engine.db.transaction():
        records = coll.store.list()
        folders = [d for d in cdir.iterdir()] if cdir.is_dir() else []
    known = {rec.id for rec in records}
    from ..runtime.interrupted import pending

    for rec in records:
        try:
            rec = coll._refreshed(rec)  # settles a start whose process died
        except NotFound:
            continue
        if pending(lc.paths(rec)):
            continue  # being started right now: what it has mounted is its own
        if rec.status in ("running", "paused") and not lc.monitor_alive(rec):
            problems.append(f"container {rec.short_id}: its monitor is gone")
            if repair:
                lc.stop(rec.id, timeout=0)
        elif rec.status not in ("running", "paused", "restarting"):
            if _mounted(lc.paths(rec).rootfs):
                garbage.append(f"container {rec.short_id}: rootfs still mounted")
                if repair:
                    lc.finalize(rec)
    try:
        # build-… containers belong to builds (see store.leftovers for a dead build's)
        leftovers = [c for c in lc.runtime.list()
                     if c.get("id") not in known and not c.get("id", "").startswith("build-")]
    except Exception:  # noqa: BLE001 - no runtime state yet
        leftovers = []
    for c in leftovers:
        garbage.append(f"runtime container {c['id'][:12]} has no record")
        if repair:
            try:
                lc.runtime.delete(c["id"], force=True)
            except Exception:  # noqa: BLE001
                pass
            cg = Cgroup(cgroup_path_for(c["id"]))
            if cg.exists():
                cg.remove()
    for d in folders:
        if d.name not in known:
            garbage.append(f"container folder {d.name[:12]} has no record")
            if repair:
                rootfs = d / "rootfs"
                if _mounted(rootfs):
                    lc.mounter.unmount(rootfs, lazy=True)
                import shutil

                shutil.rmtree(d, ignore_errors=True)
    return problems, garbage


register_in_use("containers", _in_use)
register_references("containers", _references)
register_info("containers", _info)
register_df("containers", _df)
register_check("containers", _check)
