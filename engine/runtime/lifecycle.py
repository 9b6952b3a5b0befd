"""The container lifecycle: every verb refreshes the state, asks the status, acts, saves.

A container moves through Docker's states::

    created ──start──▶ running ──(exit / stop / kill)──▶ exited ──start──▶ running …
                        │  ▲
                  pause ▼  │ unpause
                       paused                    any stopped state ──rm──▶ (gone)

The saved state can be stale: the process may have exited since, or somebody may have SIGKILLed the
monitor. So, as youki does, each verb first **refreshes** the state from the ground truth — the exit
file the monitor writes when the container's init exits, whether the monitor process still lives,
and, when it does not, what the OCI runtime says — then asks the :class:`Status` whether the verb is
allowed (``can_start()``, ``can_kill()``…; a wrong state raises :class:`IncorrectState`), acts, and
saves.

When a container's init exits, its monitor writes the exit file, deletes the runtime's container,
then ``exec``\\ s ``python -m portside.engine.onexit ROOT ID``: :meth:`Lifecycle.on_exit` finishes the
job (unmounts the root filesystem), then either removes the container (``--rm``), restarts it (its
restart policy asks for it and the user did not stop it), or leaves it ``exited``. Every cleanup step
is idempotent, so a refresh that finds the monitor dead can finish the job itself.

Verbs that wait for the container to go away (``stop``, ``rm -f``, ``wait``) never hold the
container's lock while they wait, because :func:`on_exit` needs it to finish.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import shutil
import sys
import time
from pathlib import Path

from portside.engine import faults
from portside.engine.errors import (Conflict, EngineError, IncorrectState, InvalidArgument,
                                    NotFound, RuntimeFailure)

from portside.engine.process import pidfd, process_alive, wait_until

from . import freeze
from .containers import (ContainerPaths, ContainerRecord, ContainerStore, network_mode,
                         new_container_id, new_state, now_rfc3339)
from .defaults import merge_config, normalize_host_config
from .signals import parse_signal

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Callable, Sequence

    from portside.engine.config import Config
    from portside.engine.image.store import ImageStore
    from portside.engine.network.manager import NetworkManager
    from portside.engine.store.db import Database
    from portside.engine.volumes.manager import VolumeManager

    from .oci import OCIRuntime


ZERO_TIME = "0001-01-01T00:00:00Z"
DEFAULT_STOP_TIMEOUT = 10


class Status(str, enum.Enum):
    """Docker's container statuses and what each allows."""

    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    EXITED = "exited"
    DEAD = "dead"
    REMOVING = "removing"

    def can_start(self) -> bool:
        return self in (Status.CREATED, Status.EXITED)

    def can_kill(self) -> bool:
        return self in (Status.RUNNING, Status.PAUSED)

    def can_stop(self) -> bool:
        return self in (Status.RUNNING, Status.PAUSED, Status.RESTARTING)

    def can_pause(self) -> bool:
        return self == Status.RUNNING

    def can_unpause(self) -> bool:
        return self == Status.PAUSED

    def can_exec(self) -> bool:
        return self == Status.RUNNING

    def can_remove(self) -> bool:
        return self in (Status.CREATED, Status.EXITED, Status.DEAD)

    def is_up(self) -> bool:
        """The container's processes exist (running or frozen)."""
        return self in (Status.RUNNING, Status.PAUSED)


def status_of(rec: ContainerRecord) -> Status:
    return Status(rec.status)


# ----------------------------------------------------------------------------------- helpers


def _read_exit(path: Path) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return None


def _mounted(target: Path) -> bool:
    want = os.fsencode(str(target))
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                mp = line.split(b" ", 5)[4]
                if mp == want or (b"\\" in mp and mp.decode("unicode_escape").encode() == want):
                    return True
    except OSError:
        pass
    return False


# ----------------------------------------------------------------------------------- the lifecycle


class Lifecycle:
    """Container verbs on one engine root's store.

    Args:
        root: the engine's state folder (``containers/``, ``run/``, ``tmp/``).
        db: its metadata database.
        config: the engine's configuration (runtime, CDI spec folders).
        image_store, volume_manager, network_manager: return the image store, the volume
            manager and the network manager when first needed (each is costly to make, and
            most verbs need none of them).
    """

    def __init__(self, root: Path, db: Database, config: Config, *,
                 image_store: Callable[[], ImageStore],
                 volume_manager: Callable[[], VolumeManager],
                 network_manager: Callable[[], NetworkManager]) -> None:
        self.root = Path(root)
        self.db = db
        self.config = config
        self._image_store = image_store
        self._volume_manager_of = volume_manager
        self._network_manager = network_manager
        self.store = ContainerStore(db, self.root)
        self._runtimes: dict[str, OCIRuntime] = {}
        self._default_runtime: str | None = None
        self._mounter = None
        self._watch_fds: dict[str, int] = {}
        # The monitors this object started for a watching caller: they report the exit on a pipe.
        self._launches: dict[str, Any] = {}

    # ---- lazily made helpers ----------------------------------------------------------

    @property
    def image_store(self) -> ImageStore:
        return self._image_store()

    @property
    def network_manager(self) -> NetworkManager:
        return self._network_manager()

    @property
    def tmp_dir(self) -> Path:
        """Scratch space on the store's file system (commit spools its layer here)."""
        path = self.root / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def runtime(self) -> OCIRuntime:
        """The runtime a new container gets by default (see :mod:`.runtimes`)."""
        return self.runtime_named(self.default_runtime)

    @property
    def default_runtime(self) -> str:
        """The name of the runtime a new container gets without ``--runtime``."""
        if self._default_runtime is None:
            from portside.engine.rootless import active, has_cgroups

            from .runtimes import default_name

            rootless = active()
            self._default_runtime = default_name(
                self.config.runtime, rootless=rootless, cgroups=not rootless or has_cgroups())
        return self._default_runtime

    def runtime_named(self, name: str) -> OCIRuntime:
        """The runtime ``name`` (runc, crun or a path to one) with its state folder here."""
        rt = self._runtimes.get(name)
        if rt is None:
            from portside.engine.rootless import active, has_cgroups

            from .containers import run_dir_for
            from .runtimes import resolve

            rootless = active()
            rt = self._runtimes[name] = resolve(name, run_dir_for(self.root), rootless=rootless,
                                                cgroups=not rootless or has_cgroups())
        return rt

    def runtimes_in_use(self) -> list[OCIRuntime]:
        """Every installed runtime that has a state folder here (``system check`` looks
        through each for containers without a record)."""
        from .containers import run_dir_for
        from .runtimes import KNOWN, STATE_FOLDERS, installed

        run_dir = run_dir_for(self.root)
        return [self.runtime_named(name) for name in KNOWN
                if installed(name) and (run_dir / STATE_FOLDERS[name]).is_dir()]

    def runtime_of(self, rec: ContainerRecord) -> OCIRuntime:
        """The runtime that created ``rec`` (``HostConfig.Runtime``; a container made before
        the choice was recorded ran with the configured runtime, else runc)."""
        return self.runtime_named(rec.host_config.get("Runtime") or self.config.runtime
                                  or "runc")

    @property
    def mounter(self):
        if self._mounter is None:
            from portside.engine.store.fuse import overlay_mounter

            # the kernel's overlayfs; rootless, fuse-overlayfs where the kernel refuses it
            self._mounter = overlay_mounter(self.config.rootless_storage)
        return self._mounter

    def paths(self, rec: ContainerRecord) -> ContainerPaths:
        return self.store.paths(rec.id)

    def _runtime_knows(self, rec: ContainerRecord) -> bool:
        from .containers import run_dir_for
        from .runtimes import STATE_FOLDERS, kind

        try:
            folder = STATE_FOLDERS[kind(rec.host_config.get("Runtime") or self.config.runtime
                                        or "runc")]
        except EngineError:
            folder = "runtime"
        return (run_dir_for(self.root) / folder / rec.id).exists()

    # ---- refresh ---------------------------------------------------------------------------

    def monitor_alive(self, rec: ContainerRecord) -> bool:
        """Whether the container's monitor (or the cleanup it became) still runs."""
        return process_alive(rec.monitor_pid, rec.id)

    def refresh(self, rec: ContainerRecord, *, save: bool = True,
                monitor_gone: bool = False) -> ContainerRecord:
        """Bring ``rec.state`` in line with the truth, and save it when it changed.

        Args:
            rec: the record (modified in place).
            save: write a changed state back (False for read-only listings).
            monitor_gone: the caller knows the monitor is gone (:func:`on_exit` runs in its pid).
        Returns:
            ``rec``.
        """
        status = status_of(rec)
        if status not in (Status.RUNNING, Status.PAUSED, Status.RESTARTING):
            return rec
        seen = (status.value, rec.monitor_pid)
        paths = self.paths(rec)
        alive = False if monitor_gone else self.monitor_alive(rec)
        if status == Status.RESTARTING:
            if alive:
                return rec  # the monitor's cleanup is waiting to start it again
            exit_doc: dict[str, Any] | None = {"exit_code": rec.state.get("ExitCode", 0),
                                                "error": ""}
        else:
            exit_doc = _read_exit(paths.exit_file)
        if exit_doc is None:
            if status != Status.RESTARTING:
                # A pause or commit killed half-way may have left record and freezer apart.
                freeze.reconcile(self, rec, save=save)
                seen = (rec.status, rec.monitor_pid)
            if alive:
                return rec
            # The monitor died without recording an exit (SIGKILLed): ask the runtime.
            rt_state = None
            try:
                rt_state = self.runtime_of(rec).state(rec.id) if self._runtime_knows(rec) else None
            except EngineError:
                rt_state = None
            rt_status = (rt_state or {}).get("status")
            if rt_status in ("running", "created"):
                if rec.state.get("Error") != "monitor exited":
                    rec.state["Error"] = "monitor exited"
                    if save:
                        self.store.save(rec)
                return rec
            if rt_status == "paused":
                rec.state.update(Status="paused", Paused=True, Running=True)
                return rec
            exit_doc = {"exit_code": 255, "error": "monitor exited; exit status unknown"}
        stamp, ts = now_rfc3339()
        rec.state.update(Status="exited", Running=False, Paused=False, Restarting=False, Pid=0,
                         ExitCode=int(exit_doc.get("exit_code", 255)),
                         Error=exit_doc.get("error") or "",
                         OOMKilled=bool(exit_doc.get("oom_killed")),
                         FinishedAt=exit_doc.get("finished_at") or stamp,
                         FinishedAtTs=(exit_doc.get("finished_at_ns") or ts * 1e9) / 1e9)
        if not alive:
            self.finalize(rec)
        if save:
            with contextlib.suppress(NotFound):
                # Compare-and-set: the monitor's cleanup may have moved on (restarting) meanwhile.
                self.store.save(rec, "die", expect=seen, exitCode=str(rec.state["ExitCode"]))
        return rec

    def finalize(self, rec: ContainerRecord) -> None:
        """Release what a stopped container still holds: runtime state, cgroup, rootfs mount,
        network. Idempotent: every step checks first."""
        if self._runtime_knows(rec):
            with contextlib.suppress(EngineError):
                self.runtime_of(rec).delete(rec.id, force=True)
        from .cgroups import Cgroup, cgroup_path_for

        cg = Cgroup(cgroup_path_for(rec.id))
        if cg.exists():
            with contextlib.suppress(EngineError):
                cg.remove()
        self._detach_network(rec)
        self.unmount_rootfs(rec)
        freeze.discard(self.paths(rec))

    # ---- rootfs ------------------------------------------------------------------------------

    def lowers(self, rec: ContainerRecord) -> list[Path]:
        """The container's read-only layers, topmost first: its init layer (Docker's
        ``/etc/mtab``, see :mod:`.initlayer`), then the image's layers.

        Raises:
            NotFound: the image is gone.
        """
        from .initlayer import prepare

        image = self.image_store.get(rec.image_id)
        return [prepare(self.paths(rec).init), *self.image_store.rootfs_lowers(image)]

    def mount_rootfs(self, rec: ContainerRecord) -> Path:
        """Mount the container's overlay (init layer, image layers, its upper dir) on ``rootfs/``."""
        paths = self.paths(rec)
        if _mounted(paths.rootfs):
            return paths.rootfs
        lowers = self.lowers(rec)
        for d in (paths.upper, paths.work, paths.rootfs):
            d.mkdir(parents=True, exist_ok=True)
        self.mounter.mount_overlay(lowers, paths.upper, paths.work, paths.rootfs)
        return paths.rootfs

    def unmount_rootfs(self, rec: ContainerRecord) -> None:
        paths = self.paths(rec)
        for _ in range(8):  # a stacked mount (two racing mounters) needs one unmount each
            if not _mounted(paths.rootfs):
                return
            try:
                self.mounter.unmount(paths.rootfs)
            except NotFound:
                return
            except RuntimeFailure:
                self.mounter.unmount(paths.rootfs, lazy=True)

    @contextlib.contextmanager
    def rootfs(self, rec: ContainerRecord):
        """The container's merged root filesystem, mounted for the block when it is not running."""
        with self.store.lock(rec.id):
            was = _mounted(self.paths(rec).rootfs)
            path = self.mount_rootfs(rec)
        try:
            yield path
        finally:
            if not was:
                with self.store.lock(rec.id):
                    fresh = self.store.get_by_id(rec.id)
                    if fresh is None or not status_of(fresh).is_up():
                        self.unmount_rootfs(rec)

    # ---- network (the lead wires the bridge in here) --------------------------------------

    def _network_for(self, rec: ContainerRecord) -> str:
        """The ``ContainerConfig.network`` value for the container: ``none``, ``host`` or a
        netns path. Bridge and user networks are attached here (a named netns with a veth on
        the network's bridge, published ports, and the /etc files of the network)."""
        mode = network_mode(rec.host_config)
        if mode == "none":
            return "none"
        if mode == "host":
            return "host"
        if mode.startswith("container:"):
            other = self.store.resolve(mode.split(":", 1)[1])
            self.refresh(other)
            if status_of(other) != Status.RUNNING or not other.state.get("Pid"):
                raise IncorrectState(f"container {other.name} is not running")
            return f"/proc/{other.state['Pid']}/ns/net"
        from ..network.usermode import driver_for
        from portside.engine.rootless import active

        driver = driver_for(mode, self.config.rootless_network, active())
        if driver is not None:
            return self._attach_usermode(rec, mode, driver)
        return self._attach_network(rec, mode)

    def _publish_specs(self, rec: ContainerRecord) -> list:
        """The container's ``-p``/``-P`` as port specs (host ports not chosen yet)."""
        hc = rec.host_config
        if not hc.get("PortBindings") and not hc.get("PublishAllPorts"):
            return []
        from ..network.ports import parse_publish, publish_all

        specs = []
        for key, binds in sorted((hc.get("PortBindings") or {}).items()):
            port, _, proto = key.partition("/")
            for bind in binds or [{}]:
                ip, host = bind.get("HostIp") or "", bind.get("HostPort") or ""
                text = f"{ip}:{host}:{port}" if ip else (f"{host}:{port}" if host else port)
                specs += parse_publish(f"{text}/{proto or 'tcp'}")
        if hc.get("PublishAllPorts"):
            bound = {s.key for s in specs}
            specs += [s for s in publish_all(rec.config.get("ExposedPorts") or {})
                      if s.key not in bound]
        return specs

    def _attach_network(self, rec: ContainerRecord, network: str) -> str:
        hc = rec.host_config
        manager = self.network_manager
        specs = self._publish_specs(rec)
        if specs and manager.forwarder is not None:
            # the manager works inside another network namespace (rootless): the host's ports
            # are chosen and checked here, in the host's
            from ..network.ports import reserve

            specs = reserve(specs)
        att = manager.attach(rec.id, rec.name, networks=[network], ports=specs,
                             hostname=rec.config.get("Hostname") or rec.id[:12],
                             add_hosts=list(hc.get("ExtraHosts") or []),
                             dns=list(hc.get("Dns") or []) or None)
        record_attachment(rec, att)
        return att.netns_path

    def _attach_usermode(self, rec: ContainerRecord, network: str, driver: str) -> str:
        """A namespace of the container's own with a user-mode network helper (slirp4netns or
        pasta) that its monitor starts: a rootless container's default network."""
        from ..network import usermode

        helper = usermode.attach(self.paths(rec).state_dir, driver, self._publish_specs(rec))
        rec.extra["NetworkSettings"] = {
            "Networks": {network: {"IPAddress": usermode.ADDRESS, "Gateway": usermode.GATEWAY,
                                   "IPPrefixLen": usermode.PREFIXLEN, "MacAddress": "",
                                   "Driver": driver}},
            "Ports": port_bindings(usermode.published(helper)),
            "SandboxKey": helper["netns"],
        }
        rec.extra["NetHelper"] = helper
        return helper["netns"]

    def _detach_network(self, rec: ContainerRecord) -> None:
        """Counterpart of :meth:`_network_for`: release the sandbox, leases and port rules (or
        the user-mode helper and its namespace). Idempotent, and cheap when there is nothing."""
        helper = rec.extra.pop("NetHelper", None)
        state_dir = self.paths(rec).state_dir
        if helper is not None or os.path.lexists(state_dir / "netns"):
            from ..network import usermode

            usermode.detach(Path(helper["dir"]) if helper else state_dir)
            if self._connected(rec):  # `network connect` added networks to its namespace
                self.network_manager.detach(rec.id)
        elif rec.extra.get("NetworkSettings") is not None:
            self.network_manager.detach(rec.id)
        rec.extra.pop("NetworkSettings", None)
        rec.extra.pop("EtcFiles", None)

    def _connected(self, rec: ContainerRecord) -> bool:
        """Whether the network manager has anything of the container (cheap: one query; no
        network module is imported when it has not)."""
        import sqlite3

        try:
            return bool(self.db.query("SELECT 1 FROM net_sandboxes WHERE container_id=? "
                                      "UNION SELECT 1 FROM net_leases WHERE container_id=?",
                                      (rec.id, rec.id)))
        except sqlite3.OperationalError:  # the tables were never made: no network ever used
            return False

    def _usermode(self, rec: ContainerRecord) -> bool:
        """Whether the container's network is a user-mode one (no network manager involved)."""
        from ..network.usermode import driver_for
        from portside.engine.rootless import active

        try:
            return driver_for(network_mode(rec.host_config), self.config.rootless_network,
                              active()) is not None
        except EngineError:
            return False

    # ---- create ------------------------------------------------------------------------------

    def create(self, config: dict[str, Any], host_config: dict[str, Any], *,
               name: str | None = None, container_id: str | None = None) -> ContainerRecord:
        """Create a container from Docker-shaped ``Config`` and ``HostConfig`` documents.

        ``config["Image"]`` names the image; the image's defaults (Env, Cmd, Entrypoint,
        WorkingDir, User, Labels, StopSignal, Volumes, ExposedPorts) fill what the user left out,
        with Docker's rule that ``--entrypoint`` discards the image's ``Cmd``.

        ``container_id``: the new container's id, when the caller made one (to launch its
        monitor ahead, see :meth:`launch_monitor`); a fresh random one by default.

        Returns:
            the new record (status ``created``).
        Raises:
            NotFound: no such image. InvalidArgument: no command, a bad name, a bad GPU request.
            Conflict: the name is taken.
        """
        image_ref = config.get("Image") or ""
        if not image_ref:
            raise InvalidArgument("an image name is required")
        if config.get("StopSignal"):
            parse_signal(config["StopSignal"])  # refused before anything is made
        platform_ = host_config.pop("Platform", None)
        if platform_:
            from portside.engine.image.oci import host_platform

            os_, _, arch = platform_.partition("/")
            if os_ != "linux" or (arch and arch.split("/")[0] !=
                                  host_platform()["architecture"]):
                raise InvalidArgument(f"image platform {platform_} is not supported on this "
                                      "host")
        if host_config.get("Gpus"):
            from portside.engine.gpu import parse_gpus

            parse_gpus(host_config["Gpus"])  # a grammar error fails before anything is made
        store = self.image_store
        image = store.get(image_ref)
        img_cfg = (store.config(image).get("config") or {})
        merged = merge_config(img_cfg, config)
        if not (merged.get("Entrypoint") or []) + (merged.get("Cmd") or []):
            raise InvalidArgument("no command specified")
        from .names import random_name, validate_name

        if name:
            name = validate_name(name)
        else:
            name = random_name(self.store.name_taken)
        cid = container_id or new_container_id()
        if not merged.get("Hostname"):
            merged["Hostname"] = cid[:12]
        host_config = normalize_host_config(host_config)
        # the runtime is chosen now and kept: every later verb goes to the one that created it
        from .runtimes import check

        host_config["Runtime"] = check(host_config.get("Runtime") or self.default_runtime)
        from portside.engine.rootless import active

        if active():  # what a user cannot have is refused now, in one line
            from portside.engine.rootless.spec import check_host_config

            for warning in check_host_config(host_config):
                host_config.setdefault("Warnings", []).append(warning)
        extra: dict[str, Any] = {}
        gpus = host_config.get("Gpus")
        if gpus or host_config.get("CDIDevices"):
            extra["GPUs"] = self._resolve_gpus(merged, host_config, check_only=True)
        rec = ContainerRecord(cid, name, image.id, time.time(), merged, host_config, new_state(),
                              0, [], extra)
        self.store.add(rec)
        faults.point("create-recorded")
        try:
            rec.mounts = self._prepare_volumes(rec, img_cfg)
            if rec.mounts:
                self.store.save(rec)
        except BaseException:
            with contextlib.suppress(EngineError):
                self._release_volumes(rec, remove_anonymous=True)
            self.unmount_rootfs(rec)
            self.store.delete(rec)
            raise
        return rec

    # ---- volumes ---------------------------------------------------------------------------

    def _volume_manager(self) -> VolumeManager:
        return self._volume_manager_of()

    def _prepare_volumes(self, rec: ContainerRecord, img_cfg: dict[str, Any]) -> list[dict]:
        hc = rec.host_config
        binds = list(hc.get("Binds") or [])
        mounts = list(hc.get("Mounts") or [])
        image_volumes = sorted((rec.config.get("Volumes") or {}).keys())
        volumes_from = []
        for ref in hc.get("VolumesFrom") or []:
            src_name, _, mode = ref.partition(":")
            other = self.store.resolve(src_name)
            for m in other.mounts:
                entry = {k: v for k, v in m.items() if k != "oci"}
                if mode == "ro":
                    entry["RW"] = False
                    entry["Mode"] = "ro"
                volumes_from.append(entry)
        if not (binds or mounts or image_volumes or volumes_from):
            return []
        manager = self._volume_manager()
        needs_seed = bool(image_volumes) or any(":" in b and not b.startswith("/") for b in binds)
        if not needs_seed:
            return manager.prepare_mounts(rec.id, binds=binds, mounts=mounts,
                                          volumes_from=volumes_from,
                                          image_volumes=image_volumes, rootfs=None)
        from . import interrupted

        # the root filesystem is mounted while volumes are seeded from it: a process killed
        # meanwhile leaves the marker, and whoever takes the lock next removes the half-made
        # container (interrupted.settle)
        with self.store.lock(rec.id):
            interrupted.begin(self.paths(rec), phase="create")
            try:
                rootfs = self.mount_rootfs(rec)
                faults.point("create-seeding")
                return manager.prepare_mounts(rec.id, binds=binds, mounts=mounts,
                                              volumes_from=volumes_from,
                                              image_volumes=image_volumes, rootfs=rootfs)
            finally:
                self.unmount_rootfs(rec)
                interrupted.done(self.paths(rec))

    def _release_volumes(self, rec: ContainerRecord, remove_anonymous: bool) -> None:
        if not any(m.get("Type") == "volume" for m in rec.mounts):
            return  # volume usage is recorded only with the volume mounts it returns
        self._volume_manager().release(rec.id, remove_anonymous)

    # ---- GPUs ------------------------------------------------------------------------------

    def gpus_in_use(self, exclude: str = "") -> list[str]:
        used: list[str] = []
        for other in self.store.list():
            if other.id != exclude and other.status in ("running", "paused"):
                used.extend(other.extra.get("GPUs") or [])
        return used

    def _resolve_gpus(self, config: dict[str, Any], host_config: dict[str, Any],
                      check_only: bool = False):
        from portside.engine.gpu import parse_gpus, resolve_cdi_devices, resolve_gpus

        env = dict(e.split("=", 1) for e in config.get("Env") or [] if "=" in e)
        edits = None
        warning = None
        if host_config.get("Gpus"):
            edits, warning = resolve_gpus(parse_gpus(host_config["Gpus"]),
                                          optional=bool(host_config.get("GpusOptional")),
                                          image_env=env, in_use=self.gpus_in_use(),
                                          cdi_dirs=self.config.cdi_spec_dirs)
        if host_config.get("CDIDevices"):
            cdi = resolve_cdi_devices(host_config["CDIDevices"], self.config.cdi_spec_dirs)
            edits = cdi if edits is None else edits.extend(cdi)
        if check_only:
            if warning:
                host_config.setdefault("Warnings", []).append(warning)
            chosen: list[str] = []
            if edits is not None:
                for e in edits.env:
                    if e.startswith("NVIDIA_VISIBLE_DEVICES="):
                        chosen = [g for g in e.split("=", 1)[1].split(",") if g]
                if not chosen:
                    chosen = [getattr(d, "path", str(d)) for d in edits.device_nodes]
            return chosen
        return edits

    # ---- start -------------------------------------------------------------------------------

    def launch_monitor(self, container_id: str):
        """Start the monitor process of a container that is about to start (or be created and
        started), so its interpreter's start-up overlaps the caller's work; hand the result to
        :meth:`start` (``launch=``), or to :meth:`cancel_launch` if the start is abandoned."""
        from .monitor import launch_monitor

        return launch_monitor(container_id, self.store.paths(container_id).state_dir)

    def cancel_launch(self, launch) -> None:
        """Stop a monitor launched by :meth:`launch_monitor` that will not be used; its folder
        goes too when no container was created for it."""
        launch.cancel()
        if self.store.get_by_id(launch.container_id) is None:
            shutil.rmtree(self.store.paths(launch.container_id).state_dir, ignore_errors=True)

    def start(self, ref: str | ContainerRecord, *, watched: bool = False,
              launch=None) -> ContainerRecord:
        """Start a created or exited container; returns once its process runs.

        ``watched``: the caller stays to wait for the exit and cleans up itself (a foreground
        ``run``), holding the container's watch lock until :meth:`unwatch`. While it holds it,
        the monitor skips its own cleanup process when the container ends (a Python start-up
        saved per short run); if the caller dies, the lock goes with it and the monitor cleans up.
        ``launch``: the container's monitor, started ahead by :meth:`launch_monitor` (used or
        cancelled here).

        Raises:
            IncorrectState: it is running or paused.
            CommandNotFound, CannotInvoke: the command is missing / not executable (127 / 126).
            RuntimeFailure: the runtime failed.
        """
        try:
            rec = ref if isinstance(ref, ContainerRecord) else self.store.resolve(ref)
            with self.store.lock(rec.id):
                rec = self._fresh(rec)
                status = status_of(rec)
                if status.is_up():
                    raise IncorrectState(f"container {rec.name} is already running")
                if not status.can_start():
                    raise IncorrectState(f"container {rec.name} is {status.value}")
                rec.state["ManuallyStopped"] = False
                if launch is not None and launch.container_id != rec.id:
                    self.cancel_launch(launch)
                    launch = None
                todo, launch = launch, None
                self._start_locked(rec, watched=watched, launch=todo)
        except BaseException:
            if launch is not None:
                self.cancel_launch(launch)
            raise
        return rec

    def _watch(self, container_id: str, path: Path) -> None:
        import fcntl

        self.unwatch(container_id)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._watch_fds[container_id] = fd

    def unwatch(self, container_id: str) -> None:
        """Release the watch lock taken by ``start(watched=True)`` (after cleaning up)."""
        fd = self._watch_fds.pop(container_id, None)
        if fd is not None:
            os.close(fd)
        launch = self._launches.pop(container_id, None)
        if launch is not None:
            launch.close()

    def wait_reported_exit(self, container_id: str, timeout: float | None = None) -> bool:
        """For a container this object started with ``watched=True``: block until its monitor
        reported the exit and the runtime deleted it (no polling). Returns False when there is no
        such report to wait for (not started here, or ``timeout`` passed)."""
        launch = self._launches.get(container_id)
        if launch is None:
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            reported = launch.wait_exit(timeout)
        except TimeoutError:
            return False
        if reported is not None:
            # The processes are gone; while the runtime deletes the container, unmount its root
            # filesystem (nothing of the runtime's uses it then, unless a hook (GPU/CDI) might) --
            # unless another process has started it again meanwhile (`restart` elsewhere): that
            # run's root filesystem is not ours to take away.
            with self.store.lock(container_id):
                rec = self.store.get_by_id(container_id)
                if (rec is not None and rec.monitor_pid == launch.pid
                        and not (rec.host_config.get("Gpus") or rec.host_config.get("CDIDevices"))):
                    with contextlib.suppress(EngineError):
                        self.unmount_rootfs(rec)
        return launch.wait_done(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def reported_exit_code(self, container_id: str) -> int | None:
        """The exit status the monitor reported to :meth:`wait_reported_exit` for the run this
        object started with ``watched=True``; None when there was no such report."""
        launch = self._launches.get(container_id)
        exit_msg = getattr(launch, "exit", None) if launch is not None else None
        return int(exit_msg["exit_code"]) if exit_msg else None

    def finish_foreground(self, rec: ContainerRecord) -> int:
        """After a container started here (``start(watched=...)``) and watched in the
        foreground exited: record its exit, clean up (and ``--rm``), return its status. Done
        here rather than left to the monitor's cleanup process so a foreground ``run`` returns
        at once; a run that another process restarted meanwhile is left alone."""
        paths = self.paths(rec)
        # started here: the monitor reports the exit and the runtime's delete; else poll
        if not self.wait_reported_exit(rec.id):
            wait_until(lambda: paths.exit_file.exists() or not paths.exit_file.parent.exists(),
                       3600 * 24 * 365)
        policy = (rec.host_config.get("RestartPolicy") or {}).get("Name") or "no"
        with self.store.lock(rec.id):
            fresh = self.store.get_by_id(rec.id)
            if fresh is None:
                doc = _read_exit(paths.exit_file) or {}
                return int(doc.get("exit_code", rec.state.get("ExitCode", 0)))
            if rec.monitor_pid and fresh.monitor_pid != rec.monitor_pid:
                # started again meanwhile (`portside restart` from another terminal): the run we
                # attached to is over, and what runs now is not ours to clean up
                reported = self.reported_exit_code(rec.id)
                self.unwatch(rec.id)
                return reported if reported is not None else int(fresh.state.get("ExitCode", 0))
            if policy != "no":
                self.refresh(fresh)
                return int(fresh.state.get("ExitCode", 0))
            # Wait for the runtime's own delete (the monitor runs it right after the exit).
            wait_until(lambda: not self._runtime_knows(fresh), 2)
            self.refresh(fresh, monitor_gone=True)
            code = int(fresh.state.get("ExitCode", 0))
            # mounts, cgroup and network go first (idempotent), also when --rm deletes it next
            self.finalize(fresh)
            if fresh.host_config.get("AutoRemove"):
                self._release_volumes(fresh, remove_anonymous=True)
                self.store.delete(fresh)
        self.unwatch(rec.id)
        return code

    def interrupt_foreground(self, rec: ContainerRecord) -> None:
        """^C (or a notebook's interrupt) while a foreground run watched ``rec``: SIGINT, as
        Docker's signal proxy sends, a stop when that does not end it within 3 s, then the
        cleanup of :meth:`finish_foreground`."""
        paths = self.paths(rec)
        try:
            with contextlib.suppress(EngineError):
                self.kill(rec.id, "INT")
            if not wait_until(paths.exit_file.exists, 3):
                with contextlib.suppress(EngineError):
                    self.stop(rec.id, 2)
            self.finish_foreground(rec)
        finally:
            self.unwatch(rec.id)

    def exit_fd(self, container_id: str) -> int | None:
        """A descriptor that becomes readable when the monitor of a container this object
        started with ``watched=True`` reports its exit (or ends), for callers that also wait for
        something else; None when there is none."""
        launch = self._launches.get(container_id)
        return launch.fileno() if launch is not None and launch.fileno() >= 0 else None

    def _fresh(self, rec: ContainerRecord) -> ContainerRecord:
        """The record read again and refreshed; the caller holds the container's lock."""
        fresh = self.store.get_by_id(rec.id)
        if fresh is not None:
            fresh = self.settle(fresh)
        if fresh is None:
            raise NotFound(f"No such container: {rec.name}")
        return self.refresh(fresh)

    def settle(self, rec: ContainerRecord) -> ContainerRecord | None:
        """Under the container's lock: finish what a killed ``start`` left (see
        :mod:`.interrupted`); None when that removed the container (``--rm``)."""
        from . import interrupted

        if status_of(rec) in (Status.CREATED, Status.EXITED) and \
                interrupted.pending(self.paths(rec)):
            return interrupted.settle(self, rec)
        return rec

    def _start_locked(self, rec: ContainerRecord, *, watched: bool = False,
                      launch=None) -> None:
        from . import interrupted

        paths = self.paths(rec)
        if launch is None:
            # The monitor's interpreter starts now, while we mount and write the bundle.
            launch = self.launch_monitor(rec.id)
        try:
            # if this process is killed before the state is saved, whoever takes the lock next
            # finds this and settles the container (interrupted.settle)
            interrupted.begin(paths)
            with contextlib.suppress(FileNotFoundError):
                paths.exit_file.unlink()
            # A previous run's leftovers (monitor killed) would make the runtime's create fail.
            self.finalize(rec)
            self.mount_rootfs(rec)
            faults.point("start-mounted")
            spec = self.build_spec(rec)
            faults.point("start-network")
            runtime = self.runtime_of(rec)
            from .seccomp_cache import prepare

            seccomp_cache = prepare(spec, runtime)  # crun: its compiled filter, kept
            from .spec import write_spec

            write_spec(paths.bundle, spec)
            faults.point("start-bundle")
            on_exit = [sys.executable, "-m", "portside.engine.onexit", str(self.root), rec.id]
            policy = (rec.host_config.get("RestartPolicy") or {}).get("Name") or "no"
            watch_lock = paths.state_dir / "watch.lock"
            watching = watched and policy == "no"
            if watching:
                self._watch(rec.id, watch_lock)
            rec.monitor_pid = launch.go(
                runtime_path=runtime.path, runtime_root=runtime.state_root,
                runtime_options=runtime.options, seccomp_cache=seccomp_cache,
                bundle=paths.bundle, state_dir=paths.state_dir,
                log_path=paths.log, tty=bool(rec.config.get("Tty")),
                stdin_open=bool(rec.config.get("OpenStdin")),
                attach_socket=paths.attach_socket, exit_file=paths.exit_file, on_exit=on_exit,
                # only a watched run's monitor may leave its cleanup to the watcher; a run started
                # while someone still holds the lock (a restart elsewhere) cleans up after itself
                watch_lock=watch_lock if watching else None,
                cgroup_path=spec.get("linux", {}).get("cgroupsPath"),
                # rootless with no cgroup and no hooks, runc's delete only removes its state
                forget_by_removal=_rootless() and not spec.get("hooks") and
                not spec.get("linux", {}).get("cgroupsPath"),
                net_helper=rec.extra.get("NetHelper"))
            faults.point("start-handed-over")
            if watching:
                self._launches[rec.id] = launch
            else:
                launch.close()
        except BaseException as exc:
            # whatever stopped the start (an engine error, ^C, a bad file in the image), nothing
            # it set up stays behind: monitor, mount, cgroup, network sandbox
            launch.cancel()
            self.unwatch(rec.id)
            with contextlib.suppress(EngineError):
                self.finalize(rec)
            if rec.extra.get("NetworkSettings") is not None or network_mode(
                    rec.host_config) not in ("none", "host") and not network_mode(
                    rec.host_config).startswith("container:") and not self._usermode(rec):
                with contextlib.suppress(Exception):
                    self.network_manager.detach(rec.id)
            with contextlib.suppress(FileNotFoundError):
                paths.exit_file.unlink()
            rec.state.update(Error=str(exc), ExitCode=getattr(exc, "exit_code", 125),
                             Running=False, Pid=0)
            if rec.status not in ("created", "exited"):
                rec.state["Status"] = "exited"
            with contextlib.suppress(NotFound):
                self.store.save(rec)
            interrupted.done(paths)
            if isinstance(exc, (OSError, ValueError)):
                raise RuntimeFailure(f"cannot start container {rec.name}: {exc}") from exc
            raise
        pid = launch.init_pid
        stamp, ts = now_rfc3339()
        rec.state.update(Status="running", Running=True, Paused=False, Restarting=False, Pid=pid,
                         ExitCode=0, Error="", OOMKilled=False, StartedAt=stamp, StartedAtTs=ts,
                         FinishedAt=ZERO_TIME, FinishedAtTs=0.0)
        self.store.save(rec, "start")
        interrupted.done(paths)

    def build_spec(self, rec: ContainerRecord) -> dict[str, Any]:
        """The OCI runtime spec of the container (rootfs must be mounted)."""
        from .cgroups import cgroup_path_for
        from .spec import ContainerConfig, ProcessConfig, generate_spec

        cfg, hc = rec.config, rec.host_config
        paths = self.paths(rec)
        args = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
        from portside.engine.rootfs import resolve_user

        uid, gid, groups = resolve_user(paths.rootfs, cfg.get("User") or "")
        groups = _added_groups(paths.rootfs, hc, groups)
        workdir = cfg.get("WorkingDir") or "/"
        if not workdir.startswith("/"):
            raise InvalidArgument(f"the working directory '{workdir}' is invalid, it needs to be "
                                  f"an absolute path")
        network = self._network_for(rec)
        etc_files = rec.extra.get("EtcFiles") or {}
        # the container's own copies serve cp and inspect while it is stopped
        self._write_etc_files(rec, network)
        mounts = []
        for etc in ("hostname", "hosts", "resolv.conf"):
            if any(m.get("Destination") == f"/etc/{etc}" for m in rec.mounts):
                continue
            opts = ["rbind", "rprivate"] + (["ro"] if hc.get("ReadonlyRootfs") else [])
            source = etc_files.get(f"/etc/{etc}") or str(paths.etc_file(etc))
            mounts.append({"destination": f"/etc/{etc}", "type": "bind",
                           "source": source, "options": opts})
        for m in rec.mounts:
            if m.get("oci"):
                mounts.append(m["oci"])
        for tmpfs_dest, opts in (hc.get("Tmpfs") or {}).items():
            mounts.append({"destination": tmpfs_dest, "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev", *([o for o in opts.split(",") if o])]})
        if hc.get("Init"):
            from .initproc import find_init, with_init

            args, init_mount = with_init(args, find_init())
            mounts.append(init_mount)
        devices, dev_rules = _device_mappings(hc.get("Devices") or [])
        ulimits = {}
        for u in hc.get("Ulimits") or []:
            ulimits["RLIMIT_" + u["Name"].upper()] = (int(u["Soft"]), int(u["Hard"]))
        env = list(cfg.get("Env") or [])
        if not any(e.startswith("HOSTNAME=") for e in env):
            env.append(f"HOSTNAME={cfg.get('Hostname', '')}")
        if not any(e.startswith("HOME=") for e in env):
            from portside.engine.rootfs import home_directory

            env.append(f"HOME={home_directory(paths.rootfs, uid)}")  # as runc, for every runtime
        container_cfg = ContainerConfig(
            process=ProcessConfig(args=args, env=env, cwd=workdir, uid=uid, gid=gid,
                                  additional_gids=groups, terminal=bool(cfg.get("Tty")),
                                  rlimits=ulimits or None,
                                  no_new_privileges="no-new-privileges" in
                                  (hc.get("SecurityOpt") or [])),
            rootfs=str(paths.rootfs), hostname=cfg.get("Hostname", ""),
            readonly_rootfs=bool(hc.get("ReadonlyRootfs")),
            cap_add=list(hc.get("CapAdd") or []), cap_drop=list(hc.get("CapDrop") or []),
            privileged=bool(hc.get("Privileged")),
            shm_size=int(hc.get("ShmSize") or 64 * 1024**2),
            memory=int(hc["Memory"]) if hc.get("Memory") else None,
            memory_swap=int(hc["MemorySwap"]) if hc.get("Memory") and hc.get("MemorySwap")
            else None,
            cpus=(hc["NanoCpus"] / 1e9) if hc.get("NanoCpus") else None,
            cpu_shares=int(hc["CpuShares"]) if hc.get("CpuShares") else None,
            pids_limit=hc.get("PidsLimit") or None, mounts=mounts, network=network,
            cgroups_path=cgroup_path_for(rec.id), devices=devices,
            device_cgroup_rules=dev_rules,
            seccomp="seccomp=unconfined" not in (hc.get("SecurityOpt") or []))
        spec = generate_spec(container_cfg)
        if hc.get("Gpus") or hc.get("CDIDevices"):
            edits = self._resolve_gpus(cfg, hc)
            if edits is not None:
                from portside.engine.gpu import apply_edits

                spec = apply_edits(spec, edits)
        return spec

    def _write_etc_files(self, rec: ContainerRecord, network: str) -> None:
        paths = self.paths(rec)
        hc = rec.host_config
        hostname = rec.config.get("Hostname", "")
        if network == "host":
            hostname = os.uname().nodename  # socket.gethostname(), without importing socket
        paths.etc_file("hostname").write_text(hostname + "\n")
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
                 "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix",
                 "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters"]
        helper = rec.extra.get("NetHelper")
        if helper is not None:
            from ..network.usermode import ADDRESS

            lines.append(f"{ADDRESS}\t{hostname}")
        elif network != "host":
            lines.append(f"127.0.1.1\t{hostname}")
        for entry in hc.get("ExtraHosts") or []:
            host, _, ip = entry.partition(":")
            lines.append(f"{ip}\t{host}")
        paths.etc_file("hosts").write_text("\n".join(lines) + "\n")
        try:
            host_resolv = Path("/etc/resolv.conf").read_text()
        except OSError:
            host_resolv = ""
        dns = hc.get("Dns") or []
        if helper is not None:
            # the helper's DNS server forwards to the host's resolvers, loopback ones included
            from ..network.usermode import resolv_conf

            host_resolv = resolv_conf(host_resolv, list(dns) or None)
        elif dns:
            keep = [ln for ln in host_resolv.splitlines() if not ln.startswith("nameserver")]
            host_resolv = "\n".join([f"nameserver {d}" for d in dns] + keep) + "\n"
        elif network != "host":
            # Docker drops loopback resolvers: they mean nothing in another network namespace.
            keep = [ln for ln in host_resolv.splitlines()
                    if not (ln.startswith("nameserver") and
                            (ln.split()[1:2] or [""])[0].startswith(("127.", "::1")))]
            host_resolv = "\n".join(keep) + "\n"
        paths.etc_file("resolv.conf").write_text(host_resolv)

    # ---- stop / kill / restart ---------------------------------------------------------------

    def kill(self, ref: str | ContainerRecord, sig: str | int = "KILL") -> ContainerRecord:
        """Send a signal to the container's init (Docker's ``kill -s``).

        Raises:
            IncorrectState: it is not running. InvalidArgument: an unknown signal.
        """
        num = parse_signal(sig)
        rec = ref if isinstance(ref, ContainerRecord) else self.store.resolve(ref)
        with self.store.lock(rec.id):
            rec = self._fresh(rec)
            if not status_of(rec).can_kill():
                raise IncorrectState(f"container {rec.name} is not running")
            self._signal(rec, num)
            self.store.save(rec, "kill", signal=str(num))
        return rec

    def _signal(self, rec: ContainerRecord, num: int, all_: bool = False) -> None:
        import signal

        try:
            self.runtime_of(rec).kill(rec.id, num, all=all_)
        except (NotFound, RuntimeFailure):
            # Not in the runtime any more (it just exited): signal the pid we know, if it lives.
            pid = rec.state.get("Pid") or 0
            if pid and process_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, num)
        if status_of(rec) == Status.PAUSED and num in (signal.SIGKILL, signal.SIGTERM):
            # A frozen process cannot act on a signal: thaw it so the signal lands.
            with contextlib.suppress(EngineError):
                self.runtime_of(rec).resume(rec.id)
            rec.state.update(Status="running", Paused=False)

    def stop(self, ref: str | ContainerRecord, timeout: int | None = None, *,
             signal_: str | int | None = None) -> ContainerRecord:
        """Docker's ``stop``: the stop signal, up to ``timeout`` seconds, then SIGKILL.

        A container that is not running is left as it is (Docker does not fail either).
        """
        rec = ref if isinstance(ref, ContainerRecord) else self.store.resolve(ref)
        with self.store.lock(rec.id):
            rec = self._fresh(rec)
            if timeout is None:
                timeout = rec.config.get("StopTimeout")
                timeout = DEFAULT_STOP_TIMEOUT if timeout is None else int(timeout)
            rec.state["ManuallyStopped"] = True
            self.store.save(rec)
            if not status_of(rec).can_stop():
                return rec
            if status_of(rec) == Status.RESTARTING:
                self._kill_monitor(rec)
            else:
                sig = parse_signal(signal_ or rec.config.get("StopSignal") or "SIGTERM")
                self._signal(rec, sig)
        if not self._wait_exit(rec, max(timeout, 0)):
            import signal

            with contextlib.suppress(EngineError):
                self._signal(rec, signal.SIGKILL, all_=True)
            self._wait_exit(rec, 30)
        self._wait_monitor(rec)
        with self.store.lock(rec.id):
            rec = self._fresh(rec)
            if status_of(rec) == Status.EXITED:
                with contextlib.suppress(NotFound):
                    self.store.save(rec, "stop")
        return rec

    def _kill_monitor(self, rec: ContainerRecord) -> None:
        if self.monitor_alive(rec):
            import signal

            with contextlib.suppress(ProcessLookupError):
                os.kill(rec.monitor_pid, signal.SIGKILL)

    def _exited(self, rec: ContainerRecord) -> bool:
        if self.paths(rec).exit_file.exists():
            return True
        if self.monitor_alive(rec):
            return False
        pid = rec.state.get("Pid") or 0
        return not (pid and process_alive(pid))

    def _wait_exit(self, rec: ContainerRecord, timeout: float) -> bool:
        fd = pidfd(rec.monitor_pid, rec.id)  # a monitor that dies ends the wait at once
        try:
            return wait_until(lambda: self._exited(rec), timeout, wake=fd)
        finally:
            if fd is not None:
                os.close(fd)

    def _wait_monitor(self, rec: ContainerRecord, timeout: float = 15) -> None:
        """Wait for the monitor and the cleanup it ``exec``\\ s into to finish."""
        fd = pidfd(rec.monitor_pid, rec.id)
        if fd is None:
            if self.monitor_alive(rec):  # no pidfds here: poll
                wait_until(lambda: not self.monitor_alive(rec), timeout)
            return
        try:
            import select

            select.select([fd], [], [], timeout)
        finally:
            os.close(fd)

    def restart(self, ref: str | ContainerRecord, timeout: int | None = None) -> ContainerRecord:
        """Stop (if running) then start."""
        rec = self.stop(ref, timeout)
        return self.start(rec.id)

    def wait(self, ref: str | ContainerRecord, timeout: float | None = None) -> int:
        """Block until the container is not running; returns its exit code.

        Raises:
            RuntimeFailure: the timeout passed first.
        """
        rec = ref if isinstance(ref, ContainerRecord) else self.store.resolve(ref)
        deadline = None if timeout is None else time.monotonic() + timeout
        # started here by a watching caller: its monitor tells us when it is over
        self.wait_reported_exit(rec.id, timeout)
        while True:
            fresh = self.store.get_by_id(rec.id)
            if fresh is None:
                return int(rec.state.get("ExitCode", 0))
            rec = fresh
            if status_of(rec) in (Status.RUNNING, Status.PAUSED, Status.RESTARTING):
                if self._exited(rec):
                    # read the status now: --rm may delete the container (and the file) next
                    seen = _read_exit(self.paths(rec).exit_file)
                    self._wait_monitor(rec)
                    fresh = self.store.get_by_id(rec.id)
                    if fresh is None:
                        if seen is not None and "exit_code" in seen:
                            return int(seen["exit_code"])
                        return _exit_code(rec, self.paths(rec))
                    rec = fresh
                    if status_of(rec) == Status.RESTARTING or (
                            status_of(rec) == Status.RUNNING and not self._exited(rec)):
                        continue
                    with self.store.lock(rec.id):
                        rec = self._fresh(rec)
                    if not status_of(rec).is_up():
                        return int(rec.state.get("ExitCode", 0))
            elif status_of(rec) != Status.CREATED:
                return int(rec.state.get("ExitCode", 0))
            if deadline is not None and time.monotonic() > deadline:
                raise RuntimeFailure(f"timed out waiting for container {rec.name}")
            time.sleep(0.02)

    # ---- pause ---------------------------------------------------------------------------------

    def pause(self, ref: str | ContainerRecord) -> ContainerRecord:
        rec = ref if isinstance(ref, ContainerRecord) else self.store.resolve(ref)
        with self.store.lock(rec.id):
            rec = self._fresh(rec)
            status = status_of(rec)
            if status == Status.PAUSED:
                raise IncorrectState(f"container {rec.name} is already paused")
            if not status.can_pause():
                raise IncorrectState(f"container {rec.name} is not running")
            from portside.engine.rootless import has_cgroups, no_cgroup

            if not has_cgroups():  # the freezer is a cgroup
                raise InvalidArgument(no_cgroup("pause"))
            with freeze.traced(self, rec, "pause") as trace:
                self.runtime_of(rec).pause(rec.id)
                trace.step("frozen")
                rec.state.update(Status="paused", Paused=True)
                self.store.save(rec, "pause")
                trace.release()
        return rec

    def unpause(self, ref: str | ContainerRecord) -> ContainerRecord:
        rec = ref if isinstance(ref, ContainerRecord) else self.store.resolve(ref)
        with self.store.lock(rec.id):
            rec = self._fresh(rec)
            if not status_of(rec).can_unpause():
                raise IncorrectState(f"container {rec.name} is not paused")
            with freeze.traced(self, rec, "unpause") as trace:
                self.runtime_of(rec).resume(rec.id)
                trace.step("thawed")
                rec.state.update(Status="running", Paused=False)
                self.store.save(rec, "unpause")
                trace.release()
        return rec

    # ---- remove ----------------------------------------------------------------------------------

    def remove(self, ref: str | ContainerRecord, *, force: bool = False,
               volumes: bool = False) -> None:
        """Docker's ``rm``: with ``force`` a running container is killed first; ``volumes``
        also removes its anonymous volumes.

        Raises:
            Conflict: it runs and ``force`` is not given.
        """
        rec = ref if isinstance(ref, ContainerRecord) else self.store.resolve(ref)
        with self.store.lock(rec.id):
            rec = self._fresh(rec)
            status = status_of(rec)
            if status.can_stop():
                if not force:
                    raise Conflict(f"You cannot remove a {status.value} container {rec.id}. "
                                   f"Stop the container before attempting removal or force "
                                   f"remove")
                rec.state["ManuallyStopped"] = True
                self.store.save(rec)
                if status == Status.RESTARTING:
                    self._kill_monitor(rec)
                else:
                    import signal

                    self._signal(rec, signal.SIGKILL, all_=True)
        if status.can_stop():
            if not self._wait_exit(rec, 10):
                # The monitor is stuck or gone: make sure nothing of the container survives.
                self._kill_monitor(rec)
            self._wait_monitor(rec)
        with self.store.lock(rec.id):
            fresh = self.store.get_by_id(rec.id)
            if fresh is None:
                return
            rec = fresh
            self._kill_monitor(rec)  # a cleanup process still around must not race the removal
            self.finalize(rec)
            if self.paths(rec).upper.exists() and self._runtime_knows(rec):
                raise RuntimeFailure(f"container {rec.name} could not be removed from the runtime")
            self._release_volumes(rec, remove_anonymous=volumes or
                                  bool(rec.host_config.get("AutoRemove")))
            self.store.delete(rec)

    def rename(self, ref: str | ContainerRecord, new_name: str) -> ContainerRecord:
        from .names import validate_name

        rec = ref if isinstance(ref, ContainerRecord) else self.store.resolve(ref)
        new_name = validate_name(new_name)
        with self.store.lock(rec.id):
            rec = self._fresh(rec)
            if rec.name == new_name:
                raise InvalidArgument(f"Renaming a container with the same name as its current "
                                      f"name: {new_name}")
            self.store.rename(rec, new_name)
        return rec

    # ---- exec ------------------------------------------------------------------------------------

    def exec_process(self, rec: ContainerRecord, cmd: list[str], *, env: Sequence[str] = (),
                     workdir: str = "", user: str = "", tty: bool = False) -> dict[str, Any]:
        """The OCI ``process`` for ``exec``: the container's own, with this command."""
        if not cmd:
            raise InvalidArgument("exec: no command given")
        spec = json.loads((self.paths(rec).bundle / "config.json").read_text())
        proc = dict(spec["process"])
        proc["args"] = list(cmd)
        proc["terminal"] = tty
        from portside.engine.envvars import merge_env

        base_env = merge_env(proc.get("env", []), list(env))
        if tty and not any(e.startswith("TERM=") for e in base_env):
            base_env.append("TERM=xterm")
        proc["env"] = base_env
        if workdir:
            proc["cwd"] = workdir
        if user:
            from portside.engine.rootfs import resolve_user

            uid, gid, groups = resolve_user(self.paths(rec).rootfs, user)
            groups = _added_groups(self.paths(rec).rootfs, rec.host_config, groups)
            proc["user"] = {"uid": uid, "gid": gid, **({"additionalGids": groups} if groups else {})}
            if not any(e.startswith("HOME=") for e in [*(rec.config.get("Env") or []), *env]):
                # the start set the container user's HOME; another user gets their own
                from portside.engine.rootfs import home_directory

                proc["env"] = [e for e in proc["env"] if not e.startswith("HOME=")] + \
                    [f"HOME={home_directory(self.paths(rec).rootfs, uid)}"]
        proc.pop("rlimits", None) if not proc.get("rlimits") else None
        return proc

    def exec_run(self, ref: str | ContainerRecord, cmd: list[str], *, detach: bool = False,
                 tty: bool = False, env: Sequence[str] = (), workdir: str = "", user: str = "",
                 stdin=None, stdout=None, stderr=None):
        """Run ``cmd`` in the running container.

        Returns:
            the runtime process (``Popen``); its ``wait()`` is the command's exit status
            (126/127 when it cannot be run). With ``detach`` it has already finished.
        Raises:
            IncorrectState: the container is not running (or paused).
        """
        rec = ref if isinstance(ref, ContainerRecord) else self.store.resolve(ref)
        rec = self.refresh(rec)
        status = status_of(rec)
        if status == Status.PAUSED:
            raise Conflict(f"container {rec.name} is paused, unpause the container before exec")
        if not status.can_exec():
            raise IncorrectState(f"container {rec.name} is not running")
        process = self.exec_process(rec, cmd, env=env, workdir=workdir, user=user, tty=tty)
        from portside.engine import events

        with self.db.transaction() as conn:
            events.emit(conn, "container", "exec_create", rec.id, name=rec.name,
                        execID=os.urandom(8).hex())  # secrets.token_hex, unimported
        fast = self._fast_exec(rec, dict(process, terminal=tty))
        if fast is not None:
            from .fastexec import Unsupported, spawn

            self._keep_exec_cache(rec)
            try:
                return spawn(fast, detach=detach, stdio=(stdin, stdout, stderr))
            except Unsupported:
                # spawn's only refusal: the init ended after the checks above (a container
                # killed a moment ago, whose exit its monitor has not recorded yet)
                raise IncorrectState(f"container {rec.name} is not running") from None
        proc = self.runtime_of(rec).exec(rec.id, process, detach=detach, tty=tty,
                                         stdio=(stdin, stdout, stderr))
        if not detach:
            _docker_exit_codes(proc, self.paths(rec).rootfs, process)
        return proc

    def _fast_exec(self, rec: ContainerRecord, process: dict[str, Any]):
        """The prepared fast path for ``process`` (runtime/fastexec.py), or None where exec must
        go through the OCI runtime: turned off (``fast-exec``), or a case it does not match."""
        if not self.config.fast_exec:
            return None
        from . import fastexec

        paths = self.paths(rec)
        runtime = self.runtime_of(rec)  # prepare() refuses any but runc's containers
        try:
            return fastexec.prepare(rec.id, paths.bundle, runtime.state_root / rec.id,
                                    paths.rootfs, process, runtime.name)
        except fastexec.Unsupported:
            return None

    def _keep_exec_cache(self, rec: ContainerRecord) -> None:
        """Keep, next to the container, what the CLI's quick ``exec`` reads (engine/quickexec.py):
        the fast path's preparation of the container's own process (``fastexec.save_base``),
        made again only when a file it comes from changed (a restart, an ``update``)."""
        from . import fastexec

        paths = self.paths(rec)
        cache = str(paths.dir / fastexec.CACHE_NAME)
        if fastexec.base_current(cache):
            return
        runtime = self.runtime_of(rec)
        state_dir = runtime.state_root / rec.id
        # what the preparation reads (HOME may come from /etc/passwd), identified beforehand
        sources = fastexec.source_keys([str(paths.bundle / "config.json"),
                                        str(state_dir / "state.json"),
                                        str(paths.rootfs / "etc" / "passwd")])
        process = self.exec_process(rec, ["true"])
        try:
            prep = fastexec.prepare(rec.id, paths.bundle, state_dir, paths.rootfs, process,
                                    runtime.name)
        except fastexec.Unsupported:
            return
        fastexec.save_base(cache, prep, list(process.get("env") or []), sources)

    # ---- on exit -----------------------------------------------------------------------------

    def on_exit(self, container_id: str) -> None:
        """Run in the monitor's pid after the container's init exited: finish the cleanup, then
        remove (``--rm``), restart (restart policy) or leave the container exited."""
        delay = 0.0
        from . import interrupted

        with self.store.lock(container_id):
            rec = self.store.get_by_id(container_id)
            if rec is not None and rec.monitor_pid != os.getpid() and status_of(rec) in (
                    Status.CREATED, Status.EXITED) and interrupted.pending(self.paths(rec)):
                # the process that started us was killed before it saved the state: ours
                interrupted.adopt(self, rec, os.getpid())
            if rec is None or rec.monitor_pid != os.getpid():
                return  # removed meanwhile, or restarted by somebody else
            self.refresh(rec, monitor_gone=True)
            rec = self.store.get_by_id(container_id)
            if rec is None:
                return
            if not status_of(rec).is_up():
                # A reader may have recorded the exit already; the cleanup is still ours to do.
                self.finalize(rec)
            hc = rec.host_config
            if hc.get("AutoRemove"):
                self._release_volumes(rec, remove_anonymous=True)
                self.store.delete(rec)
                return
            if not self._should_restart(rec):
                return
            count = int(rec.state.get("RestartCount", 0))
            delay = min(0.1 * (2 ** min(count, 10)), 10.0)
            rec.state.update(Status="restarting", Restarting=True,
                             RestartCount=count + 1)
            self.store.save(rec)
        time.sleep(delay)
        with self.store.lock(container_id):
            rec = self.store.get_by_id(container_id)
            if rec is None or rec.state.get("ManuallyStopped") or rec.status != "restarting":
                if rec is not None and rec.status == "restarting":
                    rec.state.update(Status="exited", Restarting=False)
                    self.store.save(rec)
                return
            rec.state["Status"] = "exited"
            try:
                self._start_locked(rec)
            except EngineError:
                pass

    @staticmethod
    def _should_restart(rec: ContainerRecord) -> bool:
        if rec.state.get("ManuallyStopped"):
            return False
        policy = rec.host_config.get("RestartPolicy") or {}
        name = policy.get("Name") or "no"
        code = int(rec.state.get("ExitCode", 0))
        if name in ("always", "unless-stopped"):
            return True
        if name == "on-failure":
            limit = int(policy.get("MaximumRetryCount") or 0)
            return code != 0 and (limit == 0 or int(rec.state.get("RestartCount", 0)) < limit)
        return False


def _rootless() -> bool:
    from portside.engine.rootless import active

    return active()


def _added_groups(rootfs: Path, host_config: dict[str, Any], groups: list[int]) -> list[int]:
    """The process's groups with ``--group-add``'s after them (Docker gives them to the
    container's process and to every ``exec``)."""
    from portside.engine.rootfs import resolve_groups

    extra = resolve_groups(rootfs, list(host_config.get("GroupAdd") or []))
    return [*groups, *(g for g in extra if g not in groups)]


def _docker_exit_codes(proc, rootfs: Path, process: dict[str, Any]) -> None:
    """Make ``proc.wait()`` of an ``exec`` say 127 (command not found) or 126 (not executable),
    as Docker does, where the runtime only exits 255: after a 255, the command is looked up in
    the container (a command that ran and exited 255 itself keeps it). Costs nothing otherwise."""
    wait = proc.wait

    def wait_with_docker_codes(timeout: float | None = None) -> int:
        code = wait(timeout)
        if code == 255:
            found = _lookup_command(rootfs, process)
            if found != 0:
                proc.returncode = code = found
        return code

    proc.wait = wait_with_docker_codes


def _lookup_command(rootfs: Path, process: dict[str, Any]) -> int:
    """0 when the process's command is an executable file in ``rootfs`` (searched in its
    ``PATH``), 126 when it exists but cannot be executed, 127 when it is nowhere."""
    import stat as stat_

    from portside.engine.rootfs import openat2_in_root

    args = process.get("args") or [""]
    name = args[0]
    if "/" in name:
        cwd = process.get("cwd") or "/"
        candidates = [name if name.startswith("/") else cwd.rstrip("/") + "/" + name]
    else:
        env = dict(e.split("=", 1) for e in process.get("env", []) if "=" in e)
        path = env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        candidates = [f"{d.rstrip('/') or ''}/{name}" for d in path.split(":") if d]
    try:
        root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return 0  # the container is gone: nothing to tell
    result = 127
    try:
        for candidate in candidates:
            try:
                fd = openat2_in_root(root, candidate, os.O_PATH)
            except OSError:
                continue
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
            if stat_.S_ISREG(st.st_mode) and st.st_mode & 0o111:
                return 0
            result = 126
    finally:
        os.close(root)
    return result


def _exit_code(rec: ContainerRecord, paths: ContainerPaths) -> int:
    doc = _read_exit(paths.exit_file)
    return int(doc["exit_code"]) if doc else int(rec.state.get("ExitCode", 0))


# ----------------------------------------------------------------------------------- network


def port_bindings(specs: Any) -> dict[str, list[dict]]:
    """Published port specs as Docker's ``NetworkSettings.Ports``."""
    ports: dict[str, list[dict]] = {}
    for spec in specs:
        ports.setdefault(spec.key, []).append({"HostIp": spec.host_ip or "0.0.0.0",
                                               "HostPort": str(spec.host_port)})
    return ports


def record_attachment(rec: ContainerRecord, att: Any) -> None:
    """Put a network attachment into the record as Docker shows it (``NetworkSettings``)."""
    rec.extra["NetworkSettings"] = {
        "Networks": {name: {"IPAddress": ip, "MacAddress": att.macs.get(name, ""),
                            "IPPrefixLen": 0}
                     for name, ip in att.ips.items()},
        "Ports": port_bindings(att.ports),
        "SandboxKey": att.netns_path,
    }
    rec.extra["EtcFiles"] = {k: str(v) for k, v in att.etc_files.items()}


# ----------------------------------------------------------------------------------- devices


def _device_mappings(devices: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """``--device /dev/X[:/dev/Y][:rwm]`` → OCI devices and their cgroup rules."""
    import stat as st

    out, rules = [], []
    for d in devices:
        host = d["PathOnHost"]
        try:
            info = os.stat(host)
        except OSError as exc:
            raise InvalidArgument(f"error gathering device information while adding custom "
                                  f"device {host!r}: {exc.strerror}") from exc
        kind = "c" if st.S_ISCHR(info.st_mode) else "b" if st.S_ISBLK(info.st_mode) else ""
        if not kind:
            raise InvalidArgument(f"not a device node: {host}")
        major, minor = os.major(info.st_rdev), os.minor(info.st_rdev)
        out.append({"path": d.get("PathInContainer") or host, "type": kind, "major": major,
                    "minor": minor, "fileMode": st.S_IMODE(info.st_mode), "uid": 0, "gid": 0})
        from portside.engine.rootless import active

        if active():  # bound from here rather than made (portside.engine.rootless.spec)
            out[-1]["hostPath"] = host
        rules.append({"allow": True, "type": kind, "major": major, "minor": minor,
                      "access": d.get("CgroupPermissions") or "rwm"})
    return out, rules
