"""The model API: what every front (CLI, ``%container`` magics, REST API, widgets) may call.

A *front* never touches an engine's internals (its root folder, database, stores, runtime,
monitors, pipes or lock files). It holds an *engine object* and calls the methods written down
here, in docker-py's shape: collections (``engine.images``, ``engine.containers``,
``engine.volumes``, ``engine.networks``, ``engine.builds``, ``engine.system``) with
``get/list/create/remove/prune``, and models (``Image``, ``Container``, ``Volume``, ``Network``)
holding ``attrs`` -- Docker's inspect document, plain JSON -- with a ``reload()`` and their
verbs. Several engine objects answer this same API:

* the local :class:`portside.engine.api.Engine` (in process);
* a Docker Engine through the Docker SDK (contexts);
* a proxy speaking to an engine process over a socket (rootless mode in threaded processes,
  Slurm nodes).

So what crosses this API is plain data: ``str``, ``bytes``, ``int``, dicts and lists of JSON
values, iterators of those, the typed progress events of
:mod:`portside.engine.builder.progress` (``BuildStep``, ``StepCached``, ``StepLog``,
``StepDone``, ``BuildDone``, ``Warning``) and :mod:`portside.engine.registry.progress`
(``LayerEvent``, ``Message``), callables the caller passes for progress, and file-like objects
the caller passes in (binary streams to read input from or write output to). No ``Popen``,
record, lock or path into a store comes back. Errors are :mod:`portside.engine.errors` classes
(``NotFound``, ``Conflict``, ``InvalidArgument``...), one line each.

Policy lives behind this API, once: the lock file (``locked = true`` in ``portside.lock``, or
``locked=True`` passed by a caller) resolves image names for ``run``, ``create``, ``pull`` and
``build``; names, ids and id prefixes resolve the same way for every caller; Docker's defaults
(``latest``, the default network, a 64 MB ``/dev/shm``...) are filled in by the engine, never by
a front.

Example::

    from portside.engine.api import from_env
    engine = from_env()                                   # the engine the environment selects
    ctr = engine.containers.run("busybox", ["sleep", "60"], detach=True, name="web")
    code, out = ctr.exec_run(["echo", "hi"])              # (0, b"hi\\n")
    for stream, data in ctr.logs(stream=True, follow=True):
        ...
    ctr.remove(force=True)

This module only declares (``typing.Protocol``); :mod:`portside.engine.models` implements it for
the local engine. It is read by type checkers and people, and imported by no command at run
time. ``make lint`` (mypy) holds both sides to it: the fronts' engine is typed
:class:`EngineAPI` (``cli.Context.engine``, the magics', the REST handlers'), so a front cannot
call what is not written here; and each engine object is checked against it.

Plugging in another engine object
---------------------------------
1. Write classes with these methods (no base class is needed: the Protocols are structural) and
   have the type checker hold them to it, as ``engine/api.py`` and ``engine/slurm/engine.py``
   do::

       if TYPE_CHECKING:
           def _answers_the_model_api(engine: MyEngine) -> EngineAPI:
               return engine

2. Verbs it has no plumbing for may come from :mod:`portside.engine.models.composed`, which
   makes them from the other verbs: ``run_from``/``start_attached`` (create, start, follow the
   log, wait, ``AutoRemove``, an interrupt stops the container), ``attach``, ``exec_attached``
   (from ``exec_run(socket=True)``), ``prune``, ``ports`` and the ``/containers/json`` summary
   of ``list(sparse=True)``.
3. What it cannot do at all is one line, an :mod:`~portside.engine.errors` class (most often
   ``InvalidArgument``) that says what to do instead -- never ``AttributeError``. (A Slurm
   context refuses ``volumes``, ``networks`` and ``system``, which live on each node, and
   ``commit``; see :mod:`portside.engine.slurm.engine`.)
4. :func:`portside.engine.api.from_env` is where the fronts get their engine object: a context
   chooses it there.

For the engines to come: a Docker Engine (docker-py) has most of this natively (its models'
``attrs`` are the same documents); ``create_from``/``run_from`` map ``Config``/``HostConfig`` onto
its low-level ``create_container``, ``get_archive(follow_links=)`` onto the archive endpoint
(which follows no final link: ask for the ``linkTarget`` its stat header names, as Docker's
CLI does for ``cp -L``), progress events are made from its JSON stream. A proxy to an engine process (rootless mode's helper, a node's portside) sends each call
as one request of plain data -- :func:`portside.engine.slurm.node.call` is such a request's
server side -- and hands back ``ExecStream`` objects over its pipes and progress events as
``{"kind": <class name>, ...fields}`` (as the REST API streams them).
"""

from __future__ import annotations

from typing import (Any, BinaryIO, Callable, Iterator, Literal, Mapping, Protocol, Sequence,
                    overload)
import builtins

#: receives each progress event of a long operation, in order (from any thread, one at a time)
Progress = Callable[[Any], None]


# ----------------------------------------------------------------------------------- streams
class BinaryStream(Protocol):
    """One standard stream of an :class:`ExecStream`: a buffered binary pipe or socket."""

    def read(self, n: int = -1, /) -> bytes: ...

    def read1(self, n: int = -1, /) -> bytes: ...

    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...

    def fileno(self) -> int: ...


class ExecStream(Protocol):
    """A process running in a container, with its standard streams as binary file objects: the
    shape of ``exec_run(..., socket=True)``'s result (docker-py returns a socket; here the three
    streams stay apart so a program can be driven frame by frame).

    ``stdin``, ``stdout`` and ``stderr`` have ``fileno()`` (they can be polled with ``select``)
    as well as ``read``/``read1``/``write``/``close``; closing ``stdin`` sends end-of-file.
    """

    stdin: BinaryStream
    stdout: BinaryStream
    stderr: BinaryStream

    def poll(self) -> int | None:
        """The exit status once the process has ended, else None."""

    def wait(self, timeout: float | None = None) -> int:
        """Block until the process ends and return its exit status (126/127 when its command
        cannot be run or is missing); ``TimeoutError`` after ``timeout`` seconds."""

    def kill(self) -> None:
        """Kill the process (SIGKILL)."""

    def signal(self, signum: int) -> None:
        """Send it a signal (e.g. SIGINT for a notebook's interrupt)."""

    def close(self) -> None:
        """Close the streams and reap the process (killing it when it still runs)."""


# ----------------------------------------------------------------------------------- models
class Model(Protocol):
    """One object with Docker-shaped ``attrs``."""

    attrs: dict[str, Any]

    @property
    def id(self) -> str: ...

    @property
    def short_id(self) -> str: ...

    def reload(self) -> None:
        """Read ``attrs`` again from the engine."""


class Image(Model, Protocol):
    """An image; ``attrs`` is Docker's ``image inspect`` document."""

    @property
    def tags(self) -> list[str]:
        """``name:tag`` references, in Docker's familiar form (``busybox:latest``)."""

    @property
    def labels(self) -> dict[str, str]: ...

    def history(self) -> list[dict[str, Any]]:
        """``ID, Created (unix time), CreatedBy, Size, Comment, Tags`` per history entry, newest
        first."""

    def tag(self, repository: str, tag: str | None = None) -> bool: ...


class Container(Model, Protocol):
    """A container; ``attrs`` is Docker's ``container inspect`` document (or, from
    ``list(sparse=True)``, the ``/containers/json`` summary)."""

    @property
    def name(self) -> str: ...

    @property
    def status(self) -> str:
        """``created``, ``running``, ``paused``, ``restarting``, ``exited``, ``dead``."""

    @property
    def labels(self) -> dict[str, str]: ...

    @property
    def image(self) -> Image: ...

    def start(self) -> Container: ...

    def stop(self, timeout: int | None = None, signal: str | int | None = None) -> Container:
        """The stop signal (``signal``, else the container's ``StopSignal``, else SIGTERM), then
        SIGKILL after ``timeout`` seconds (default: its ``StopTimeout``, else 10)."""

    def restart(self, timeout: int | None = None) -> Container: ...

    def kill(self, signal: str | int = "KILL") -> Container: ...

    def pause(self) -> Container: ...

    def unpause(self) -> Container: ...

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until it is not running; ``{"StatusCode": n, "Error": None}``."""

    def remove(self, force: bool = False, v: bool = False) -> None: ...

    def rename(self, name: str) -> None: ...

    @overload
    def logs(self, *, stdout: bool = True, stderr: bool = True, stream: Literal[True],
             timestamps: bool = False, tail: int | str | None = None,
             since: float | str | None = None, until: float | str | None = None,
             follow: bool = False, stop: Callable[[], bool] | None = None) -> Iterator[tuple[str, bytes]]: ...

    @overload
    def logs(self, *, stdout: bool = True, stderr: bool = True, stream: bool = False,
             timestamps: bool = False, tail: int | str | None = None,
             since: float | str | None = None, until: float | str | None = None,
             follow: bool = False, stop: Callable[[], bool] | None = None) -> bytes | Iterator[tuple[str, bytes]]: ...

    def logs(self, *, stdout: bool = True, stderr: bool = True, stream: bool = False,
             timestamps: bool = False, tail: int | str | None = None,
             since: float | str | None = None, until: float | str | None = None,
             follow: bool = False, stop: Callable[[], bool] | None = None) -> bytes | Iterator[tuple[str, bytes]]:
        """Its output: ``bytes``, or with ``stream``/``follow`` an iterator of
        ``("stdout"|"stderr", bytes)`` that, with ``follow``, ends when the container stops (or
        ``stop()`` says so). ``timestamps`` prefixes each line with its RFC 3339 time.
        ``since``/``until``: unix times, or Docker's text forms (an RFC 3339 time, a duration
        such as ``10m`` before now); ``tail``: the last N lines (``"all"``: every one)."""

    def attach(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None,
               stderr: BinaryIO | None = None, *, detach_keys: str | None = None,
               tty_size: tuple[int, int] | None = None) -> int | None:
        """Stay attached to the running container: its output to ``stdout``/``stderr`` (one
        stream with a terminal), ``stdin`` fed to it when it keeps standard input open.

        Args:
            detach_keys: Docker's ``--detach-keys`` (default ``ctrl-p,ctrl-q``).
            tty_size: ``(rows, columns)`` of the caller's terminal.

        Returns:
            the exit status when it exited while attached, None after detaching.

        Raises:
            IncorrectState: it is not running.
        """

    def exec_run(self, cmd: str | Sequence[str], *, stdout: bool = True, stderr: bool = True,
                 stdin: bool = False, tty: bool = False, detach: bool = False,
                 socket: bool = False, environment: Sequence[str] | Mapping[str, str] | None = None,
                 workdir: str | None = None, user: str = ""
                 ) -> tuple[int | None, bytes | ExecStream]:
        """Run a command in the running container (docker-py's shape): ``(exit status, output)``;
        with ``detach`` ``(None, b"")``; with ``socket`` ``(None, ExecStream)`` (``stdin`` open
        when asked for)."""

    def exec_attached(self, cmd: Sequence[str], stdin: BinaryIO | None, stdout: BinaryIO,
                      stderr: BinaryIO, *, tty: bool = False,
                      environment: Sequence[str] | None = None, workdir: str = "",
                      user: str = "", detach: bool = False) -> int:
        """Run a command in the container with the caller's streams as its standard streams
        (``portside exec``); returns its exit status (126/127 when it cannot be run)."""

    def top(self, ps_args: str = "") -> dict[str, Any]:
        """``{"Titles": [...], "Processes": [[...], ...]}``."""

    def stats(self) -> dict[str, Any]:
        """One sample: ``{"id", "name", "read", "memory_stats", "cpu_stats", "pids_stats"}``."""

    def commit(self, repository: str | None = None, tag: str | None = None, *,
               message: str = "", author: str = "", changes: Sequence[str] | str = (),
               pause: bool = True) -> Image: ...

    def diff(self) -> list[dict[str, Any]]:
        """``[{"Path": p, "Kind": 0|1|2}]`` (changed, added, deleted)."""

    def export(self, out: BinaryIO) -> None:
        """Write its filesystem as a tar stream to ``out``."""

    def get_archive(self, path: str, out: BinaryIO, *, follow_links: bool = False
                    ) -> dict[str, Any]:
        """Write a tar of ``path`` to ``out``; returns its stat (``name, size, mode, mtime``).
        ``follow_links`` (``cp -L``): a final symbolic link is followed inside the container;
        the tar holds its target under the link's name and the stat is the target's."""

    def put_archive(self, path: str, data: BinaryIO | bytes) -> bool:
        """Extract a tar stream into the container's directory ``path``."""

    def copy_out(self, src: str, dest: str, *, archive: bool = False,
                 follow_links: bool = False) -> None:
        """``cp [-L] CONTAINER:SRC DEST`` with Docker's placement rules, ``dest`` a path on the
        caller's machine; ``follow_links`` as for :meth:`get_archive`."""

    def copy_in(self, src: str, dest: str, *, follow_links: bool = False) -> None:
        """``cp [-L] SRC CONTAINER:DEST``, ``src`` a path on the caller's machine;
        ``follow_links``: a link ``src`` is followed there and its target copied under the
        link's name."""

    def ports(self) -> dict[str, list[dict[str, str]]]:
        """``{"80/tcp": [{"HostIp": ..., "HostPort": ...}]}``: the bindings in force while it
        runs (random host ports resolved), else those it asked for."""

    def update(self, *, mem_limit: int | str | None = None,
               memswap_limit: int | str | None = None, cpu_shares: int | None = None,
               nano_cpus: int | None = None, pids_limit: int | None = None,
               restart_policy: dict[str, Any] | None = None) -> dict[str, Any]:
        """Docker's ``update`` (docker-py's keywords, plus the API's ``NanoCpus`` and
        ``PidsLimit``): new limits for a created or running container (applied to a running
        one at once; ``attrs["HostConfig"]`` shows them) and a new restart policy (in force
        from its next exit). A value left None is kept. ``mem_limit``/``memswap_limit``:
        bytes or a size (``"512m"``), ``memswap_limit=-1`` for unlimited swap. Returns
        ``{"Warnings": [...]}``; what Docker refuses is refused with its message
        (``InvalidArgument``/``Conflict``), and nothing changes when the kernel refuses."""


class Volume(Model, Protocol):
    """A volume; ``attrs``: ``Name, Driver, Mountpoint, Labels, Options, Scope, CreatedAt``."""

    @property
    def name(self) -> str: ...

    def remove(self, force: bool = False) -> None: ...


class Network(Model, Protocol):
    """A network; ``attrs`` is Docker's ``network inspect`` document."""

    @property
    def name(self) -> str: ...

    def remove(self) -> None: ...

    def connect(self, container: str, aliases: Sequence[str] = ()) -> None: ...

    def disconnect(self, container: str, force: bool = False) -> None: ...


# ----------------------------------------------------------------------------------- collections
class ImageCollection(Protocol):
    """``engine.images``."""

    def get(self, name: str) -> Image:
        """By name (``busybox`` means ``docker.io/library/busybox:latest``), id or id prefix."""

    def exists(self, name: str) -> bool: ...

    def history(self, name: str) -> builtins.list[dict[str, Any]]:
        """``image history``: as :meth:`Image.history`, by name."""

    def list(self, *, all: bool = False, filters: Mapping[str, list[str]] | None = None,
             name: str | None = None) -> Sequence[Image]:
        """Newest first; ``filters``: ``reference``, ``dangling``, ``label``, ``before``,
        ``since``; with a filter on references, each image's ``RepoTags`` keeps the matches."""

    def build(self, dockerfile: str | None = None, context: str | BinaryIO | bytes | None = None,
              *, dockerfile_path: str | None = None, tags: Sequence[str] = (),
              build_args: Mapping[str, str] | None = None, target: str | None = None,
              no_cache: bool = False, labels: Mapping[str, str] | None = None,
              progress: Progress | None = None, source_date_epoch: int | None = None,
              platform: str | None = None, ignore_source_date_epoch: bool = False,
              locked: bool | None = None) -> Image:
        """Build an image from a Dockerfile's text (or ``dockerfile_path``, or ``Dockerfile``
        in the context) and a context folder (a path on the caller's machine), a tar stream or
        none. ``progress`` receives the builder's events. Timestamps come from
        ``source_date_epoch``, else ``$SOURCE_DATE_EPOCH`` (unless
        ``ignore_source_date_epoch``), else the time now. Under an enforced lock (``locked``,
        else ``portside.lock``) the inputs are checked against the lock before and the result
        after, and tags move only when they match."""

    @overload
    def pull(self, name: str, *, platform: str | None = None, progress: Progress | None = None,
             tls_verify: bool | None = None, all_tags: Literal[False] = False,
             locked: bool | None = None) -> Image: ...

    @overload
    def pull(self, name: str, *, platform: str | None = None, progress: Progress | None = None,
             tls_verify: bool | None = None, all_tags: Literal[True],
             locked: bool | None = None) -> Sequence[Image]: ...

    def pull(self, name: str, *, platform: str | None = None, progress: Progress | None = None,
             tls_verify: bool | None = None, all_tags: bool = False,
             locked: bool | None = None) -> Image | Sequence[Image]:
        """Pull ``name`` (``latest`` when no tag); under an enforced lock the pinned digest is
        pulled. ``all_tags``: every tag of the repository (a list comes back)."""

    def push(self, name: str, *, progress: Progress | None = None,
             tls_verify: bool | None = None) -> str:
        """Push a local image; returns the manifest's digest."""

    def search(self, term: str, limit: int = 25, filters: Mapping[str, builtins.list[str]] | None = None,
               tls_verify: bool | None = None) -> builtins.list[dict[str, Any]]: ...

    def get_registry_data(self, name: str, tls_verify: bool | None = None) -> dict[str, Any]:
        """The manifest or index ``name`` resolves to in its registry (``manifest inspect``)."""

    def import_(self, stream: BinaryIO, repository: str | None = None, *,
                changes: Sequence[str] = (), message: str = "", source: str = "-") -> Image: ...

    def bootstrap(self, what: str, *, tag: str | None = None, include: Sequence[str] = (),
                  mirror: str | None = None) -> Image:
        """A base image with no registry: ``busybox`` or ``debian:SUITE``."""

    def tag(self, source: str, target: str) -> Image: ...

    def save(self, names: Sequence[str], out: BinaryIO) -> None: ...

    def load(self, stream: BinaryIO, progress: Progress | None = None
             ) -> Sequence[tuple[Image, builtins.list[str]]]:
        """Load an archive; each image with the names it got."""

    def remove(self, name: str, *, force: bool = False, noprune: bool = False
               ) -> builtins.list[dict[str, str]]:
        """``rmi``: ``[{"Untagged": name}, {"Deleted": id}...]``."""

    def prune(self, *, all: bool = False, filters: Mapping[str, builtins.list[str]] | None = None
              ) -> dict[str, Any]:
        """Remove images no container uses: untagged ones, every one with ``all``;
        ``{"ImagesDeleted": [{"Untagged": ref} | {"Deleted": id}], "SpaceReclaimed": bytes}``.
        ``filters``: ``until``, ``label``, ``label!``, ``dangling``."""

    def lock(self, names: Sequence[str] = (), *, path: str | None = None, update: bool = False,
             locked: bool | None = None, source_date_epoch: int | None = None
             ) -> dict[str, Any]:
        """Pin images in ``portside.lock``: ``{"Path", "Locked", "Images": {name: {"Id",
        "Source"}}}``."""

    def provenance(self, name: str) -> dict[str, str]:
        """Where an image came from: its manifest's annotations (``io.portside.source``,
        ``org.opencontainers.image.created``, ``…base.digest``, the build inputs
        ``io.portside.build.*``...) and a commit's recipe labels (``io.portside.recipe``)."""

    def login(self, registry: str | None, username: str, password: str,
              tls_verify: bool | None = None) -> str:
        """Check the credentials against ``registry`` (Docker Hub when None) and store them
        (Docker's ``config.json``); ``"Login Succeeded"``."""

    def logout(self, registry: str | None) -> bool:
        """Forget the stored credentials; whether there were any."""

    def diff(self, image_a: str, image_b: str, *, ignore: Sequence[str] = ()) -> dict[str, Any]:
        """Why two images differ: ``Identical``, the first differing layer, files, config keys,
        and ``Report`` (the lines ``image diff`` prints)."""


class ContainerCollection(Protocol):
    """``engine.containers``."""

    def get(self, name: str, *, size: bool = False) -> Container:
        """By name, id or unique id prefix; ``size`` adds ``SizeRw`` to ``attrs``."""

    def list(self, *, all: bool = False, filters: Mapping[str, list[str]] | None = None,
             limit: int | None = None, sparse: bool = False, size: bool = False
             ) -> Sequence[Container]:
        """Newest first, running ones unless ``all``. With ``sparse`` each ``attrs`` is Docker's
        ``/containers/json`` summary (``Id, Names, Image, ImageID, Command, Created, State,
        Status, Ports, Labels, Mounts, NetworkSettings, HostConfig`` and ``SizeRw`` with
        ``size``; portside adds ``GPUs``): cheap, what ``ps`` shows."""

    def create(self, image: str, command: str | Sequence[str] | None = None,
               **kwargs: Any) -> Container:
        """docker-py's ``containers.create`` keyword arguments."""

    def create_from(self, config: Mapping[str, Any], host_config: Mapping[str, Any], *,
                    name: str | None = None, locked: bool | None = None) -> Container:
        """Create from Docker's ``Config`` and ``HostConfig`` documents (what ``docker create``
        sends); warnings end up in ``attrs["HostConfig"]["Warnings"]``."""

    def run(self, image: str, command: str | Sequence[str] | None = None, *,
            detach: bool = False, remove: bool = False, stdout: bool = True,
            stderr: bool = False, **kwargs: Any) -> Container | bytes:
        """docker-py's ``containers.run``: the started Container with ``detach``, else its
        output once it exited (``ContainerExit`` when it exited non-zero)."""

    @overload
    def run_from(self, config: Mapping[str, Any], host_config: Mapping[str, Any], *,
                 name: str | None = None, detach: Literal[True], locked: bool | None = None,
                 stdin: BinaryIO | None = None, stdout: BinaryIO | None = None,
                 stderr: BinaryIO | None = None, detach_keys: str | None = None,
                 tty_size: tuple[int, int] | None = None,
                 on_created: Callable[[Container], None] | None = None) -> Container: ...

    @overload
    def run_from(self, config: Mapping[str, Any], host_config: Mapping[str, Any], *,
                 name: str | None = None, detach: Literal[False] = False,
                 locked: bool | None = None, stdin: BinaryIO | None = None,
                 stdout: BinaryIO | None = None, stderr: BinaryIO | None = None,
                 detach_keys: str | None = None, tty_size: tuple[int, int] | None = None,
                 on_created: Callable[[Container], None] | None = None) -> int | None: ...

    def run_from(self, config: Mapping[str, Any], host_config: Mapping[str, Any], *,
                 name: str | None = None, detach: bool = False, locked: bool | None = None,
                 stdin: BinaryIO | None = None, stdout: BinaryIO | None = None,
                 stderr: BinaryIO | None = None, detach_keys: str | None = None,
                 tty_size: tuple[int, int] | None = None,
                 on_created: Callable[[Container], None] | None = None
                 ) -> Container | int | None:
        """``docker run``: create from ``Config``/``HostConfig`` and start.

        With ``detach`` returns the started Container. Otherwise stays with it until it exits:
        its output to ``stdout``/``stderr`` (nothing written before the caller could listen is
        lost), ``stdin`` fed to it with ``OpenStdin``, a terminal with ``Tty``; an interrupt
        (``KeyboardInterrupt``) stops it and is raised again once it is cleaned up; with
        ``AutoRemove`` it is gone when this returns. Returns its exit status, or None when the
        caller detached (``detach_keys``). ``on_created`` sees the container before it starts
        (its warnings, its id).
        """

    def start_attached(self, name: str, stdin: BinaryIO | None, stdout: BinaryIO,
                       stderr: BinaryIO, *, detach_keys: str | None = None,
                       tty_size: tuple[int, int] | None = None) -> int | None:
        """``docker start -a [-i]``: start and stay attached, as :meth:`run_from` does."""

    def prune(self, filters: Mapping[str, builtins.list[str]] | None = None) -> dict[str, Any]:
        """Remove every stopped container: ``{"ContainersDeleted": [ids] | None,
        "SpaceReclaimed": bytes}``; ``filters``: ``until``, ``label``, ``label!`` and ``ps``'s."""


class VolumeCollection(Protocol):
    """``engine.volumes``."""

    def create(self, name: str | None = None, driver: str = "local",
               driver_opts: Mapping[str, str] | None = None,
               labels: Mapping[str, str] | None = None) -> Volume: ...

    def get(self, name: str) -> Volume: ...

    def list(self, filters: Mapping[str, Any] | None = None) -> Sequence[Volume]: ...

    def remove(self, name: str, force: bool = False) -> None: ...

    def prune(self, all: bool = False, filters: Mapping[str, Any] | None = None
              ) -> dict[str, Any]: ...

    def in_use(self) -> dict[str, builtins.list[str]]:
        """``{volume name: [ids of the containers using it]}``."""

    def size(self, name: str) -> int:
        """Bytes its data takes on disk."""


class NetworkCollection(Protocol):
    """``engine.networks``."""

    def create(self, name: str, *, subnet: str | None = None, internal: bool = False,
               labels: Mapping[str, str] | None = None, driver: str = "bridge") -> Network: ...

    def get(self, name: str) -> Network: ...

    def list(self, filters: Mapping[str, list[str]] | None = None) -> Sequence[Network]: ...

    def remove(self, name: str) -> None: ...

    def prune(self, filters: Mapping[str, builtins.list[str]] | None = None
              ) -> dict[str, Any]:
        """Remove the user's networks no container uses: ``{"NetworksDeleted": [names]}``;
        ``filters``: ``until``, ``label``, ``label!``."""

    def connect(self, network: str, container: str, aliases: Sequence[str] = ()) -> None: ...

    def disconnect(self, network: str, container: str) -> None: ...


class BuildCollection(Protocol):
    """``engine.builds``: the build cache (builds themselves are ``engine.images.build``)."""

    def prune(self, all: bool = False,
              filters: Mapping[str, builtins.list[str]] | None = None) -> dict[str, Any]:
        """``{"CachesDeleted": [keys], "SpaceReclaimed": bytes}``: entries no image uses, every
        one with ``all``; ``filters``: ``until`` (last used before it)."""

    def cache_entries(self) -> list[dict[str, Any]]: ...


class System(Protocol):
    """``engine.system``."""

    def info(self) -> dict[str, Any]:
        """Docker's ``info`` document (``DockerRootDir`` names where the engine keeps state)."""

    def version(self) -> dict[str, Any]: ...

    def df(self) -> list[dict[str, Any]]:
        """``[{"Type", "TotalCount", "Active", "Size", "Reclaimable"}]`` per kind."""

    def check(self, *, repair: bool = False) -> dict[str, list[str]]:
        """What is wrong in the store: ``{"Problems": [...], "Reclaimable": [...],
        "Reclaimed": [...]}`` -- corruption, garbage that killed or failed operations left (with
        ``repair``: removed), and what opening the store already reclaimed. One line each."""

    def prune(self, *, all: bool = False, volumes: bool = False,
              filters: Mapping[str, builtins.list[str]] | None = None) -> dict[str, Any]:
        """Docker's ``system prune``, in its order: stopped containers, networks no container
        uses, (with ``volumes``) anonymous volumes no container uses, dangling images (every
        unused image with ``all``), dangling build cache (all of it with ``all``).
        ``filters``: ``until``, ``label``, ``label!`` (``until`` with ``volumes`` is refused,
        as Docker refuses it). Returns ``{"ContainersDeleted", "NetworksDeleted",
        "VolumesDeleted", "ImagesDeleted", "CachesDeleted", "SpaceReclaimed"}``."""

    def events(self, *, since: float | None = None, until: float | None = None,
               filters: Mapping[str, list[str]] | None = None, follow: bool = False,
               stop: Callable[[], bool] | None = None) -> Iterator[dict[str, Any]]:
        """Events in Docker's ``events --format json`` shape, oldest first: those between
        ``since`` and ``until`` (unix times), then, with ``follow``, new ones as they happen
        until ``until`` passes or ``stop()`` says so. ``filters``: ``type``, ``event``."""

    def reset(self) -> dict[str, Any]:
        """``system reset --force``: remove every container (running ones killed), volume,
        user-defined network, image and build cache entry, then the state root's files; a
        rootless engine then stops the user's namespaces, so nothing of it is left running.
        Returns counts: ``{"Containers", "Volumes", "Networks", "Images"}`` (rootless also
        ``NamespaceHolder``/``NetworkNamespace``: whether each was stopped)."""

    def migrate(self) -> dict[str, Any]:
        """Rootless: stop the user's namespaces so the next command maps the subordinate ids
        the system gives now (``{"NamespaceHolder": bool, ...}``; nothing for root).
        ``Conflict`` while a container runs."""

    def unshare(self, argv: Sequence[str], *, stdin: BinaryIO | None = None,
                stdout: BinaryIO | None = None, stderr: BinaryIO | None = None) -> int:
        """Rootless: run ``argv`` as root of the user's namespace (``podman unshare``), with
        these streams (default: the engine process's own); its exit status.
        ``InvalidArgument`` where there is no such namespace (root, another kind of engine)."""


class EngineAPI(Protocol):
    """An engine object: what ``portside.engine.api.from_env()`` returns."""

    @property
    def images(self) -> ImageCollection: ...

    @property
    def containers(self) -> ContainerCollection: ...

    @property
    def volumes(self) -> VolumeCollection: ...

    @property
    def networks(self) -> NetworkCollection: ...

    @property
    def builds(self) -> BuildCollection: ...

    @property
    def system(self) -> System: ...

    def close(self, *, keep_database: bool = False) -> None:
        """Release what the engine object holds (connections, helper processes).
        ``keep_database``: the process exits right after (the ``portside`` program), so what
        the exit releases anyway may be left to it (the local engine leaves its database
        connections open and syncs the write-ahead log instead); others may ignore it."""


__all__ = ["Progress", "BinaryStream", "ExecStream", "Model", "Image", "Container", "Volume", "Network",
           "ImageCollection", "ContainerCollection", "VolumeCollection", "NetworkCollection",
           "BuildCollection", "System", "EngineAPI"]
