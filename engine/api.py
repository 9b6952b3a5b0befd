"""The engine facade: one object that the CLI, the magics and the REST API all use.

It answers the model API (:mod:`portside.engine.models.interface`) and is where the engine's
parts (database, stores, lifecycle, managers) are put together; nothing below it imports it.
Fronts get it from :func:`from_env`.

Example::

    from portside.engine.api import from_env
    engine = from_env()                    # PORTSIDE_ROOT or the default root
    engine.images.bootstrap("busybox")     # -> Image
    [img.tags for img in engine.images.list()]

The facade opens the store lazily: nothing touches the disk until a collection is used, so
``portside --help`` and ``portside version`` stay cheap.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from .config import Config, expand_root, load_config

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from .models.build import BuildCollection
    from .models.containers import ContainerCollection
    from .models.images import ImageCollection
    from .models.interface import EngineAPI
    from .models.networks import NetworkCollection
    from .models.system import System
    from .models.volumes import VolumeCollection


def from_env(root: str | os.PathLike | None = None, *, context: str | None = None,
             program: bool = False) -> EngineAPI:
    """The engine the environment selects, for every front (the CLI, the magics, the REST API).

    That is the engine of a context (:mod:`portside.engine.contexts`): ``context``, else
    ``$PORTSIDE_CONTEXT``, else the one chosen with ``portside context use``, else ``default``
    -- the local engine on ``root`` (see :func:`local_engine`). Another context gives a Docker
    Engine's or a Slurm cluster's engine object. Fronts speak to what it returns only through
    the model API (:mod:`portside.engine.models.interface`).

    Raises:
        NotFound: no such context.
        InvalidArgument: ``root`` with a context other than ``default``.
    """
    from .contexts import DEFAULT, engine_for, selected

    name = selected(context)
    if name != DEFAULT:
        return engine_for(name, root=root)
    return local_engine(root, program=program)


def local_engine(root: str | os.PathLike | None = None, *, program: bool = False) -> EngineAPI:
    """The ``default`` context's engine: the local :class:`Engine` on ``root`` (default:
    ``$PORTSIDE_ROOT``, the configuration's, or the default root). Rootless, only the
    ``portside`` program itself (``program=True``: single-threaded, it joins the user's
    namespace first thing) runs the engine in its own process; any other front (a notebook
    kernel, the server extension: threaded processes that cannot join, and should not become
    root in their own eyes) gets a stand-in for an engine process that joined it, with the same
    model API (see :mod:`portside.engine.rootless.proxy`)."""
    if os.geteuid() != 0:
        from .rootless.proxy import needs_engine_process

        if not program and needs_engine_process():
            from .remote.client import spawn

            return spawn(str(root) if root is not None else None)
    return Engine(root=root)


class Engine:
    """Entry point to every engine operation, in docker-py's shape (``engine.images.list()``)."""

    def __init__(self, root: str | os.PathLike | None = None, config: Config | None = None) -> None:
        if os.geteuid() != 0:
            # rootless: everything below runs in the user's namespace (see portside.engine.rootless)
            from .rootless import enter

            enter()
        self.config = config or load_config()
        if root is not None:
            self.config.root = expand_root(root)
        self.root = Path(self.config.root)
        #: what opening the store reclaimed from killed processes (``store.leftovers.reap``)
        self.reclaimed: list = []

    # --------------------------------------------------------------- storage (lazy)
    @functools.cached_property
    def db(self):
        from .store.db import Database

        from .rootless import active

        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if os.stat(self.root).st_uid == os.geteuid():
                # rootless, the store is the user's alone (podman's is 0700 too)
                os.chmod(self.root, 0o700 if active() else 0o711)
            elif not os.access(self.root, os.R_OK | os.W_OK | os.X_OK):
                raise PermissionError(13, "Permission denied")
        except PermissionError as exc:
            from .errors import InvalidArgument

            raise InvalidArgument(f"cannot use the store {self.root}: permission denied (it "
                                  f"belongs to another user?)") from exc
        # the image tables exist from the first open (raw queries join them); events registers
        # its own on import
        from . import events  # noqa: F401
        from .image import schema

        schema.register()

        db = Database(self.root / "metadata.db")
        self.__dict__["db"] = db  # reaping below may open the image store on it
        self.reclaimed = self._reap()
        return db

    def _reap(self) -> list:
        """Reclaim what killed processes left in this root (cheap when there is nothing):
        see :mod:`portside.engine.store.leftovers`. Never fails the command that opens it."""
        from .store import anything_left

        try:
            if not anything_left(self.root, self.db):
                return []
            from .store import leftovers

            return leftovers.reap(self.root, self.db, lambda: self.image_store,
                                  window=leftovers.resume_window(self.config))
        except Exception as exc:  # noqa: BLE001 - a leftover must not stop `ps`
            if os.environ.get("PORTSIDE_DEBUG"):
                raise
            import sys

            sys.stderr.write(f"warning: cannot reclaim leftovers in {self.root}: {exc}\n")
            return []

    @functools.cached_property
    def content(self):
        from .store.content import ContentStore

        return ContentStore(self.root / "content")

    @functools.cached_property
    def snapshots(self):
        from .rootless.storage import check_store_mode
        from .store.snapshots import Snapshots

        db = self.db
        check_store_mode(self.root)  # root's and rootless snapshots differ (opaque markers)
        return Snapshots(self.root / "snapshots", db)

    @functools.cached_property
    def image_store(self):
        from .image.store import ImageStore
        from .store.leftovers import resume_window

        return ImageStore(self.db, self.content, self.snapshots,
                          resume_window=resume_window(self.config))

    @property
    def tmp_dir(self) -> Path:
        path = self.root / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # --------------------------------------------------------------- collections
    @functools.cached_property
    def images(self) -> ImageCollection:
        from .models.images import ImageCollection

        return ImageCollection(self)

    @functools.cached_property
    def containers(self) -> ContainerCollection:
        from .models.containers import ContainerCollection

        return ContainerCollection(self)

    @functools.cached_property
    def volumes(self) -> VolumeCollection:
        from .models.volumes import VolumeCollection

        return VolumeCollection(self)

    @functools.cached_property
    def volume_manager(self):
        from .volumes.manager import VolumeManager

        return VolumeManager(self.db, self.root / "volumes")

    @functools.cached_property
    def network_manager(self):
        from .network.manager import NetworkManager
        from .rootless import active

        if active():
            # rootless: user networks live in the user's network namespace, the default network
            # is each container's own slirp4netns/pasta (see portside.engine.rootless.netns)
            from .network.usermode import RESOLVER, driver_for
            from .rootless import netns
            from .runtime.containers import run_dir_for

            return NetworkManager(
                self.db, self.root / "run" / self.root_key,
                default_subnet=self.config.default_subnet,
                netns_dir=run_dir_for(self.root) / "netns", home=netns.enter_thread,
                forwarder=netns.Forwarder(),
                usermode_default=driver_for("bridge", self.config.rootless_network, True),
                dns_fallback=[RESOLVER])
        from .models.networks import existing_bridge_subnet

        # Several state roots on one host (tests, users) share the portside0 bridge: adopt the
        # subnet it already has rather than choosing a second one.
        subnet = self.config.default_subnet or existing_bridge_subnet("portside0")
        return NetworkManager(self.db, Path("/run/portside") / self.root_key,
                              default_subnet=subnet)

    @functools.cached_property
    def networks(self) -> NetworkCollection:
        from .models.networks import NetworkCollection

        return NetworkCollection(self)

    @property
    def root_key(self) -> str:
        """A short name for this state root, for per-root files in shared places (/run)."""
        import hashlib

        return hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:12]

    @functools.cached_property
    def lifecycle(self):
        """The container verbs (:class:`~portside.engine.runtime.lifecycle.Lifecycle`), wired
        to this root's parts (the facade is where the parts are put together)."""
        from .runtime.lifecycle import Lifecycle

        return Lifecycle(self.root, self.db, self.config,
                         image_store=lambda: self.image_store,
                         volume_manager=lambda: self.volume_manager,
                         network_manager=lambda: self.network_manager)

    @functools.cached_property
    def builds(self) -> BuildCollection:
        from .models.build import BuildCollection

        return BuildCollection(self)

    @functools.cached_property
    def system(self) -> System:
        from .models.system import System

        return System(self)

    def close(self, *, keep_database: bool = False) -> None:
        """Release what this engine holds. ``keep_database``: leave the metadata database's
        connections open, for a process about to exit (see :func:`portside.engine.cli.main`)."""
        if "network_manager" in self.__dict__:
            self.network_manager.close()
        if "db" in self.__dict__:
            if keep_database:
                self.db.sync_log()  # what this process committed is on disk when it ends
            else:
                self.db.close()


if TYPE_CHECKING:
    def _answers_the_model_api(engine: Engine) -> EngineAPI:
        """For the type checker: the local engine answers the written-down model API."""
        return engine
