"""REST handlers for the side panel: the engine's models spoken as JSON over HTTP.

Every URL sits under ``<base_url>portside/api/`` and is listed once in :data:`ROUTES`, a flat table
of ``(pattern, handler)``. The contract is written down in ``openapi.yaml`` beside this file.

How a request is served:

* Each handler derives from :class:`PortsideHandler`, which holds the shared engine object
  (:func:`portside.engine.api.from_env`, kept in the Tornado settings) and runs engine calls on a
  thread pool with :meth:`PortsideHandler.call`: the engine blocks on disks, runc and registries,
  the server's event loop must not. Handlers speak only the model API
  (:mod:`portside.engine.models.interface`), as the CLI and the magics do.
* Every verb is wrapped in ``@tornado.web.authenticated``: a request without the server's token or
  session cookie is refused with 403 before any engine code runs.
* Errors leave as JSON ``{"code": <HTTP status>, "message": "...", "type": "<error class>"}``. The
  engine's error classes are mapped to statuses in one place, :func:`http_error`:
  ``NotFound`` 404, ``InvalidArgument`` 400, ``AlreadyExists``/``Conflict``/``IncorrectState`` 409,
  ``Unsupported`` 501, ``Unavailable`` 503, anything else 500.
* Lists answer with the rows the CLI prints for ``--format json`` (both make them with
  :mod:`portside.engine.listing` from the same model data), plus a few extra fields the panel
  needs (``FullID``, ``GPUs``, ``UsedBy``...).
* The engine is the one of the server's context (:mod:`portside.engine.contexts`): the user's
  selected one when the server starts; ``PUT /context`` switches it (lists, actions and the event
  stream then come from that context's engine).
* Streams (``events``, ``logs?follow=1``, ``prune``, ``pull``) answer with newline-delimited JSON
  (``application/x-ndjson``) sent in chunks as things happen. A long operation streams
  ``{"status": "started"}``, then ``{"status": "progress", ...}`` lines, then one final
  ``{"status": "done", "result": ...}`` or ``{"status": "error", "code": ..., "message": ...}``
  (the HTTP status is already 200 by then, so errors ride in the stream).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado.iostream import StreamClosedError

from portside.engine.errors import EngineError
from portside.engine.records import asdict, fields

if TYPE_CHECKING:
    from portside.engine.models.interface import EngineAPI

#: Settings keys under which the shared objects live in the Tornado application.
ENGINE_KEY = "portside_engine"  # the engine of the server's context (``PUT /context`` swaps it)
CONTEXT_KEY = "portside_context"  # the name of that context
EXECUTOR_KEY = "portside_executor"

#: HTTP statuses the API uses for engine errors; any other engine status becomes 500 (a registry's
#: 401 must not read as "your Jupyter token is wrong").
_MAPPED_STATUSES = (400, 404, 409, 501, 503)

#: How often a long operation looks for new progress while it runs (seconds).
_PROGRESS_POLL = 0.1


# ---------------------------------------------------------------------------------- errors
def http_error(exc: BaseException) -> tornado.web.HTTPError:
    """Map any exception to the HTTP error the API answers with (the one mapping in the API).

    Args:
        exc: what an engine call (or the handler) raised.

    Returns:
        A ``tornado.web.HTTPError`` whose ``status_code`` is the engine error's ``http_status``
        when that is 400, 404, 409, 501 or 503, else 500; its ``log_message`` is the one-line message and
        its ``reason`` the error class name.
    """
    if isinstance(exc, tornado.web.HTTPError):
        return exc
    if isinstance(exc, EngineError):
        status = exc.http_status if exc.http_status in _MAPPED_STATUSES else 500
        err = tornado.web.HTTPError(status, "%s", str(exc), reason=None)
        err.portside_type = type(exc).__name__  # type: ignore[attr-defined]
        return err
    err = tornado.web.HTTPError(500, "%s", f"internal error: {type(exc).__name__}: {exc}")
    err.portside_type = type(exc).__name__  # type: ignore[attr-defined]
    return err


def error_body(err: tornado.web.HTTPError) -> dict[str, Any]:
    """The JSON body of an error: ``{code, message, type}``."""
    message = (err.log_message % err.args) if err.log_message and err.args else err.log_message
    return {"code": err.status_code, "message": message or err.reason or "error",
            "type": getattr(err, "portside_type", "HTTPError")}


def _jsonable(value: Any) -> Any:
    """Progress events and results as JSON: events (records) become dicts tagged with their
    kind, models their ``attrs``."""
    if not isinstance(value, type) and _is_record(value):
        return {"kind": type(value).__name__, **_jsonable(asdict(value))}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "attrs") and isinstance(value.attrs, dict):
        return value.attrs
    return value


def _is_record(value: Any) -> bool:
    try:
        fields(value)
    except TypeError:
        return False
    return True


# ---------------------------------------------------------------------------------- base class
class PortsideHandler(APIHandler):
    """Base of every portside handler: the engine, the thread pool, JSON in and out."""

    @property
    def engine(self) -> EngineAPI:
        """The shared engine (created when the extension loaded)."""
        return self.settings[ENGINE_KEY]

    @property
    def context(self) -> str:
        """The name of the context whose engine the server serves."""
        return self.settings.get(CONTEXT_KEY) or "default"

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on the API's thread pool and return its value.

        Raises:
            tornado.web.HTTPError: whatever ``fn`` raised, mapped by :func:`http_error`.
        """
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.settings[EXECUTOR_KEY],
                                              lambda: fn(*args, **kwargs))
        except tornado.web.HTTPError:
            raise
        except Exception as exc:  # every failure leaves through the one mapping
            raise http_error(exc) from exc

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors as JSON ``{code, message, type}`` (Tornado calls this for every failure)."""
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        err = http_error(exc) if exc is not None else tornado.web.HTTPError(status_code)
        if err.status_code != status_code:
            self.set_status(err.status_code)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(error_body(err)))

    def reply(self, value: Any, status: int = 200) -> None:
        """Finish with ``value`` as JSON."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(_jsonable(value)))

    def flag(self, name: str, default: bool = False) -> bool:
        """A boolean query argument: ``1``, ``true``, ``yes`` (any case) or empty mean true."""
        value = self.get_query_argument(name, None)
        if value is None:
            return default
        return value.strip().lower() in ("", "1", "true", "yes", "on")

    def int_arg(self, name: str, default: int | None = None) -> int | None:
        """An integer query argument; a bad value is a 400."""
        value = self.get_query_argument(name, None)
        if value in (None, ""):
            return default
        try:
            return int(value)
        except ValueError:
            raise tornado.web.HTTPError(400, "%s", f"{name} must be an integer: {value}") from None

    def body(self) -> dict[str, Any]:
        """The request's JSON object (empty when there is no body); not an object is a 400."""
        if not self.request.body:
            return {}
        try:
            data = json.loads(self.request.body)
        except ValueError:
            raise tornado.web.HTTPError(400, "%s", "request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise tornado.web.HTTPError(400, "%s", "request body must be a JSON object")
        return data

    # ------------------------------------------------------------------ streaming
    _closed = False

    def on_connection_close(self) -> None:
        # the client went away: stream loops and follower threads look at this flag
        self._closed = True
        super().on_connection_close()

    async def start_stream(self) -> None:
        """Send the headers of a newline-delimited JSON stream now, before any line."""
        self.set_header("Content-Type", "application/x-ndjson; charset=UTF-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")  # no proxy buffering of the stream
        await self.flush()

    async def send(self, obj: Any) -> bool:
        """Send one JSON line; returns False once the client has gone."""
        if self._closed:
            return False
        try:
            self.write(json.dumps(_jsonable(obj)) + "\n")
            await self.flush()
        except StreamClosedError:
            self._closed = True
        return not self._closed

    async def pump(self, make: Callable[[Callable[[], bool]], Iterator[Any]],
                   each: Callable[[Any], Any]) -> None:
        """Send ``each(item)`` for every item a blocking generator yields, until it ends or the
        client leaves.

        The generator runs in its own daemon thread (it may block for a long time, e.g. on a
        silent container's log), hands items over through an asyncio queue, and is asked to stop
        through the ``stop()`` callable it receives.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        done = object()
        stop_flag = threading.Event()

        def stop() -> bool:
            return stop_flag.is_set() or self._closed

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the server's loop has closed: nobody is listening
                stop_flag.set()

        def run() -> None:
            gen = None
            try:
                gen = make(stop)
                for item in gen:
                    put(item)
                    if stop():
                        break
                put(done)
            except Exception as exc:  # handed to the loop, reported in the stream
                put(exc)
            finally:
                close = getattr(gen, "close", None)
                if close is not None:
                    close()

        threading.Thread(target=run, name="portside-stream", daemon=True).start()
        try:
            while not self._closed:
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=1.0)
                except asyncio.TimeoutError:
                    continue
                if item is done:
                    break
                if isinstance(item, Exception):
                    await self.send({"status": "error", **error_body(http_error(item))})
                    break
                if not await self.send(each(item)):
                    break
        finally:
            stop_flag.set()

    async def operation(self, fn: Callable[..., Any], *, progress_kw: str | None = None,
                        events: bool = True) -> None:
        """Run a long engine operation and stream its progress, then its result.

        Args:
            fn: the operation; called on the thread pool.
            progress_kw: when set, ``fn`` is called with this keyword bound to a callback whose
                arguments are streamed as ``{"status": "progress", "progress": ...}``.
            events: also stream the engine events the operation appends (``untag``, ``delete``,
                ``destroy``...) as ``{"status": "progress", "event": ...}``.
        """
        await self.start_stream()
        loop = asyncio.get_running_loop()
        pending: list[Any] = []
        lock = threading.Lock()

        def progress(item: Any) -> None:
            with lock:
                pending.append(item)

        kwargs = {progress_kw: progress} if progress_kw else {}
        system = self.engine.system if events else None
        since = time.time()
        seen = 0
        await self.send({"status": "started"})
        future = loop.run_in_executor(self.settings[EXECUTOR_KEY], lambda: fn(**kwargs))

        async def drain() -> None:
            nonlocal seen
            with lock:
                items, pending[:] = list(pending), []
            for item in items:
                await self.send({"status": "progress", "progress": item})
            if system is not None:
                found = await self.call(lambda: list(system.events(since=since)))
                for event in found[seen:]:
                    await self.send({"status": "progress", "event": event})
                seen = len(found)

        while not future.done():
            await asyncio.wait([future], timeout=_PROGRESS_POLL)
            await drain()
        await drain()
        try:
            result = future.result()
        except Exception as exc:
            await self.send({"status": "error", **error_body(http_error(exc))})
            return
        await self.send({"status": "done", "result": result})


# ---------------------------------------------------------------------------------- listing
def _gpus(attrs: dict[str, Any]) -> str:
    """The ``--gpus`` a container asked for, in Docker's words (``all``, ``2``, ``device=0,1``)."""
    requests = ((attrs.get("HostConfig") or {}).get("DeviceRequests")) or []
    words = []
    for req in requests:
        caps = [c for group in (req.get("Capabilities") or []) for c in group]
        if "gpu" not in caps and req.get("Driver") not in ("nvidia", "cdi"):
            continue
        if req.get("DeviceIDs"):
            words.append("device=" + ",".join(req["DeviceIDs"]))
        elif req.get("Count", 0) == -1:
            words.append("all")
        elif req.get("Count"):
            words.append(str(req["Count"]))
    return " ".join(words)


def _slurm(attrs: dict[str, Any]) -> dict[str, str] | None:
    """A Slurm context's container: its job, node, GPUs (Slurm's ``gres``), the job's state,
    reason, elapsed time and start (``StartTime``, for a clock that runs on between
    listings), as the engine's inspect document has them; None for other engines."""
    slurm = attrs.get("Slurm")
    if not slurm:
        return None
    return {key: str(slurm.get(key) or "") for key in ("JobId", "Node", "Gres", "State",
                                                        "Reason", "Elapsed", "StartTime")}


def container_rows(engine: Any, all_: bool = True) -> list[dict[str, Any]]:
    """``ps -a --format json`` rows plus ``FullID``, ``StartedAt``, ``FinishedAt``, ``GPUs``
    and, in a Slurm context, ``Slurm`` (see :func:`_slurm`)."""
    from portside.engine.listing import ps_row

    summaries = engine.containers.list(all=all_, sparse=True)
    docs = {c.id: c.attrs for c in engine.containers.list(all=True)}
    names = _image_names(engine)
    rows = []
    for summary in summaries:
        row = ps_row(summary.attrs)
        attrs = docs.get(summary.id, {})
        state = attrs.get("State") or {}
        row["FullID"] = summary.id
        row["StartedAt"] = state.get("StartedAt", "")
        row["FinishedAt"] = state.get("FinishedAt", "")
        row["ExitCode"] = state.get("ExitCode", 0)
        row["GPUs"] = _gpus(attrs)
        row["Init"] = bool((attrs.get("HostConfig") or {}).get("Init"))
        row["StopTimeout"] = (attrs.get("Config") or {}).get("StopTimeout") or 10
        image_id = str(summary.attrs.get("ImageID") or attrs.get("Image") or "")
        row["ImageID"] = image_id
        if image_id and not _names_image(names, row["Image"], image_id):
            # the name it was made from now means another image (or none): Docker then shows
            # the image's id, as the name would mislead
            row["Image"] = image_id.removeprefix("sha256:")[:12]
        slurm = _slurm(attrs)
        if slurm is not None:
            row["Slurm"] = slurm
        rows.append(row)
    return rows


def _image_names(engine: Any) -> dict[str, set[str]]:
    """Image id -> the names (``repo:tag``) that point at it now."""
    out: dict[str, set[str]] = {}
    for image in engine.images.list():
        out.setdefault(image.id, set()).update(image.tags)
    return out


def _names_image(names: dict[str, set[str]], name: str, image_id: str) -> bool:
    """Whether ``name`` (as a container records it) still means ``image_id``."""
    bare = image_id.removeprefix("sha256:")
    if name.removeprefix("sha256:") and bare.startswith(name.removeprefix("sha256:")):
        return True  # made from an id
    tags = names.get(image_id, set())
    last = name.rsplit("/", 1)[-1]
    full = name if ("@" in name or ":" in last) else f"{name}:latest"
    return name in tags or full in tags or any(t.endswith("/" + full) for t in tags)


def image_rows(engine: Any) -> list[dict[str, Any]]:
    """``images --format json`` rows plus ``SizeBytes`` (the size as a number)."""
    from portside.engine.listing import image_rows as rows_of

    rows = rows_of(engine.images.list())
    for row in rows:
        # a build given SOURCE_DATE_EPOCH (a notebook's portside.lock) has that creation time;
        # the listing marks it as the CLI shows it
        row["Pinned"] = row["CreatedSince"].endswith(" (pinned)")
        row["SizeBytes"] = row["Size"]
        row["Size"] = _human(row["Size"])
        row["VirtualSize"] = _human(row["VirtualSize"])
    return rows


def _human(size: int) -> str:
    from portside.engine.units import human_size

    return human_size(size)


def volume_users(engine: Any) -> dict[str, list[str]]:
    """Volume name -> names of the containers that mount it (ids where a name is unknown)."""
    used = engine.volumes.in_use()
    names = {c.id: c.name for c in engine.containers.list(all=True, sparse=True)}
    return {vol: [names.get(i, i[:12]) for i in ids] for vol, ids in used.items()}


def volume_rows(engine: Any, with_size: bool = True) -> list[dict[str, Any]]:
    """``volume ls --format json`` rows plus ``UsedBy`` and ``SizeBytes``."""
    from portside.engine.listing import volume_row

    users = volume_users(engine)
    rows = []
    for volume in engine.volumes.list():
        row = volume_row(volume)
        row["UsedBy"] = sorted(users.get(volume.name, []))
        row["SizeBytes"] = engine.volumes.size(volume.name) if with_size else None
        rows.append(row)
    return rows


def network_rows(engine: Any) -> list[dict[str, Any]]:
    """``network ls --format json`` rows."""
    from portside.engine.listing import network_row

    return [network_row(n) for n in engine.networks.list()]


# ---------------------------------------------------------------------------------- handlers
class InfoHandler(PortsideHandler):
    """``GET /info``: the engine's version document, where it keeps its state, and its
    collections."""

    @tornado.web.authenticated
    async def get(self) -> None:
        def info() -> dict[str, Any]:
            from portside.engine.contexts import endpoint_of, kind_of

            name = self.context
            kind = kind_of(name)
            # another engine's folders are its host's, not this server's
            root = (self.engine.system.info().get("DockerRootDir", "")
                    if kind == "portside" else None)
            collections = {name: True for name in
                           ("images", "containers", "volumes", "networks")}
            if kind == "slurm":  # each node has its own (named in run, made there)
                collections.update(volumes=False, networks=False)
            return {"version": self.engine.system.version(), "context": name, "kind": kind,
                    "root": root, "endpoint": endpoint_of(name), "collections": collections}
        self.reply(await self.call(info))


class ImagesHandler(PortsideHandler):
    """``GET /images``: the images, one row per tag as ``portside images --format json``."""

    @tornado.web.authenticated
    async def get(self) -> None:
        self.reply(await self.call(image_rows, self.engine))


class ImagesPruneHandler(PortsideHandler):
    """``POST /images/prune?all=1``: remove unused images, streaming progress."""

    @tornado.web.authenticated
    async def post(self) -> None:
        everything = self.flag("all")
        await self.operation(lambda: self.engine.images.prune(all=everything))


class ImagesPullHandler(PortsideHandler):
    """``POST /images/pull`` ``{"reference": "busybox:latest"}``: pull, streaming progress."""

    @tornado.web.authenticated
    async def post(self) -> None:
        ref = self.body().get("reference")
        if not isinstance(ref, str) or not ref:
            raise tornado.web.HTTPError(400, "%s", "reference is required")
        images = self.engine.images

        def run(progress: Callable[[Any], None]) -> Any:
            return images.pull(ref, progress=progress)
        await self.operation(run, progress_kw="progress")


class ImageHandler(PortsideHandler):
    """``GET /images/{name}`` inspects; ``DELETE /images/{name}?force=1`` removes (``rmi``)."""

    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        self.reply(await self.call(lambda: self.engine.images.get(name).attrs))

    @tornado.web.authenticated
    async def delete(self, name: str) -> None:
        force = self.flag("force")
        self.reply(await self.call(self.engine.images.remove, name, force=force))


class ImageTagHandler(PortsideHandler):
    """``POST /images/{name}/tag`` ``{"target": "repo:tag"}``: add a name to an image."""

    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        target = self.body().get("target")
        if not isinstance(target, str) or not target:
            raise tornado.web.HTTPError(400, "%s", "target is required")
        image = await self.call(self.engine.images.tag, name, target)
        self.reply(image.attrs, 201)


class ContainersHandler(PortsideHandler):
    """``GET /containers?all=1`` lists (``ps``); ``POST /containers`` runs one detached."""

    @tornado.web.authenticated
    async def get(self) -> None:
        self.reply(await self.call(container_rows, self.engine, self.flag("all", True)))

    @tornado.web.authenticated
    async def post(self) -> None:
        """Body: ``{"image", "name"?, "command"?: [str] | str, "ports"?: [str], "volumes"?:
        [str], "env"?: [str], "gpus"?: str, "init"?: bool}``, each list item in ``docker
        run``'s own syntax (``-p 8080:80``, ``-v data:/data``, ``-e K=V``, ``--gpus all``):
        they go through the command line's parser, so the panel's form means what the CLI
        means."""
        argv = run_argv(self.body())

        def run() -> Any:
            from portside.engine import cli
            from portside.engine.commands.container_options import build_create

            config, host_config, name = build_create(cli.parse(argv))
            return self.engine.containers.run_from(config, host_config, name=name, detach=True)
        container = await self.call(run)
        self.reply(container.attrs, 201)


def run_argv(spec: dict[str, Any]) -> list[str]:
    """``portside run -d ...``'s argument list for a run request's body (see
    :meth:`ContainersHandler.post`); a malformed field is a 400."""
    import shlex

    def strings(key: str) -> list[str]:
        value = spec.get(key) or []
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise tornado.web.HTTPError(400, "%s", f"{key} must be a list of strings")
        return [v.strip() for v in value if v.strip()]

    image = spec.get("image")
    if not isinstance(image, str) or not image.strip():
        raise tornado.web.HTTPError(400, "%s", "image is required")
    command = spec.get("command")
    if isinstance(command, str):
        try:
            command = shlex.split(command)
        except ValueError as exc:
            raise tornado.web.HTTPError(400, "%s", f"command: {exc}") from None
    elif command is not None and not (isinstance(command, list)
                                      and all(isinstance(c, str) for c in command)):
        raise tornado.web.HTTPError(400, "%s", "command must be a list of strings")
    argv = ["run", "-d"]
    name = spec.get("name")
    if name:
        argv += ["--name", str(name)]
    for flag, key in (("-p", "ports"), ("-v", "volumes"), ("-e", "env")):
        for value in strings(key):
            argv += [flag, value]
    gpus = spec.get("gpus")
    if gpus:
        argv += ["--gpus", str(gpus)]
    if spec.get("init"):
        argv.append("--init")
    return [*argv, "--", image.strip(), *(command or [])]


class ContainerTerminalHandler(PortsideHandler):
    """``POST /containers/{name}/terminal``: a JupyterLab terminal whose process is
    ``portside exec -it NAME`` with the container's shell (bash when it has one, else sh).

    The terminal runs that command itself, not a login shell that types it: no profile resets
    ``PATH``, nothing is echoed, and closing the shell closes the terminal. Answers the
    terminal's model ``{"name": ...}`` (open it with ``terminal:open``).

    A Slurm context gives no terminal inside a container (its steps are plain pipes): there
    the process is ``portside exec -i NAME`` with the shell made interactive (``-i``: prompts,
    no job control), and the terminal's own line discipline echoes and edits what is typed.
    """

    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        manager = self.settings.get("terminal_manager")
        if manager is None:
            raise tornado.web.HTTPError(409, "%s", "this Jupyter server has terminals disabled")

        def check() -> str:
            container = self.engine.containers.get(name)
            if container.status != "running":
                from portside.engine.errors import IncorrectState

                raise IncorrectState(f"container {container.name} is not running")
            return container.name
        ctr = await self.call(check)
        from portside.engine.contexts import kind_of

        piped = kind_of(self.context) == "slurm"
        flags, interactive = ("-i", " -i") if piped else ("-it", "")
        shell = (f"command -v bash >/dev/null 2>&1 && exec bash{interactive} "
                 f"|| exec sh{interactive}")
        # the panel's context, which PUT /context may have made differ from the user's own
        selector = ["--context", self.context] if self.context != "default" else []
        argv = [*portside_command(), *selector, "exec", flags, ctr, "sh", "-c", shell]
        # on the server's loop: the manager starts reading the terminal's pty there
        model = manager.create(shell_command=argv)
        self.reply(model, 201)


def portside_command() -> list[str]:
    """How this server runs the ``portside`` CLI: the script beside its interpreter, else
    ``python -m portside.engine.cli``."""
    import os
    import sys

    script = os.path.join(os.path.dirname(sys.executable), "portside")
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-m", "portside.engine.cli"]


class ContainersPruneHandler(PortsideHandler):
    """``POST /containers/prune``: remove stopped containers, streaming progress."""

    @tornado.web.authenticated
    async def post(self) -> None:
        await self.operation(lambda: self.engine.containers.prune())


class ContainerHandler(PortsideHandler):
    """``GET /containers/{name}`` inspects; ``DELETE ...?force=1&v=1`` removes."""

    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        self.reply(await self.call(
            lambda: self.engine.containers.get(name).attrs))

    @tornado.web.authenticated
    async def delete(self, name: str) -> None:
        force, volumes = self.flag("force"), self.flag("v")

        def remove() -> None:
            self.engine.containers.get(name).remove(force=force, v=volumes)
        await self.call(remove)
        self.set_status(204)
        self.finish()


class ContainerActionHandler(PortsideHandler):
    """``POST /containers/{name}/{start|stop|restart|kill}`` (``?t=`` seconds, ``?signal=``)."""

    @tornado.web.authenticated
    async def post(self, name: str, action: str) -> None:
        timeout = self.int_arg("t")
        signal = self.get_query_argument("signal", None)

        def act() -> dict[str, Any]:
            container = self.engine.containers.get(name)
            if action == "start":
                container.start()
            elif action == "stop":
                container.stop(**({"timeout": timeout} if timeout is not None else {}))
            elif action == "restart":
                container.restart(**({"timeout": timeout} if timeout is not None else {}))
            else:
                container.kill(**({"signal": signal} if signal else {}))
            container.reload()
            return container.attrs
        self.reply(await self.call(act))


class ContainerLogsHandler(PortsideHandler):
    """``GET /containers/{name}/logs?tail=N&timestamps=1&follow=1``.

    Without ``follow`` the answer is ``{"logs": "..."}``; with it, a stream of ``{"text": "..."}``
    lines (with ``"stream": "stdout"|"stderr"``) that ends when the container stops or the
    client leaves.
    """

    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        tail = self.int_arg("tail")
        timestamps = self.flag("timestamps")
        opts: dict[str, Any] = {"timestamps": timestamps}
        if tail is not None:
            opts["tail"] = tail
        container = await self.call(lambda: self.engine.containers.get(name))
        if not self.flag("follow"):
            data = await self.call(container.logs, **opts)
            self.reply({"logs": data.decode("utf-8", "replace") if isinstance(data, bytes)
                        else str(data)})
            return
        await self.start_stream()

        def make(stop: Callable[[], bool]) -> Iterator[Any]:
            # stop ends the follow when the client leaves, even if the container stays silent
            return iter(container.logs(stream=True, follow=True, stop=stop, **opts))
        await self.pump(make, _log_line)


class ContainerArchiveHandler(PortsideHandler):
    """``GET /containers/{name}/archive?path=/etc&follow=1``: a tar of a path in the container.

    Docker's ``GET /containers/{id}/archive``: the body is a tar (``application/x-tar``) named
    after the path's last component, and the ``X-Docker-Container-Path-Stat`` header carries the
    path's stat as base64 JSON. ``follow`` follows a final symbolic link inside the container
    (``cp -L``): the tar then holds the target's content under the link's name, never a link.
    """

    _CHUNK = 1 << 16

    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        import base64
        import tempfile

        path = self.get_query_argument("path", "")
        if not path:
            raise tornado.web.HTTPError(400, "%s", "path is required")
        follow = self.flag("follow")
        with tempfile.TemporaryFile() as spool:
            # Spooled first: an error (no such file) still answers as JSON with its status.
            def archive() -> dict[str, Any]:
                container = self.engine.containers.get(name)
                return container.get_archive(path, spool, follow_links=follow)
            stat = await self.call(archive)
            spool.seek(0)
            self.set_header("Content-Type", "application/x-tar")
            self.set_header("X-Docker-Container-Path-Stat",
                            base64.b64encode(json.dumps(stat).encode()).decode())
            while chunk := spool.read(self._CHUNK):
                if self._closed:
                    return
                self.write(chunk)
                await self.flush()
        self.finish()


def _log_line(chunk: Any) -> dict[str, str]:
    """One streamed piece of output: ``(stream, bytes)`` pairs or plain bytes, as JSON."""
    if isinstance(chunk, tuple) and len(chunk) == 2:
        stream, data = chunk
        return {"stream": str(stream), "text": _text(data)}
    return {"text": _text(chunk)}


def _text(data: Any) -> str:
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)


class VolumesHandler(PortsideHandler):
    """``GET /volumes?size=0`` lists (``volume ls``); ``POST /volumes`` ``{"name"}`` creates."""

    @tornado.web.authenticated
    async def get(self) -> None:
        self.reply(await self.call(volume_rows, self.engine, self.flag("size", True)))

    @tornado.web.authenticated
    async def post(self) -> None:
        spec = self.body()
        name = spec.get("name")
        if name is not None and not isinstance(name, str):
            raise tornado.web.HTTPError(400, "%s", "name must be a string")

        def create() -> Any:
            volumes = self.engine.volumes
            return volumes.create(name) if name else volumes.create()
        volume = await self.call(create)
        self.reply(volume.attrs, 201)


class VolumesPruneHandler(PortsideHandler):
    """``POST /volumes/prune?all=1``: remove unused (anonymous, or all) volumes, streaming."""

    @tornado.web.authenticated
    async def post(self) -> None:
        everything = self.flag("all")
        await self.operation(lambda: self.engine.volumes.prune(all=everything))


class VolumeHandler(PortsideHandler):
    """``GET /volumes/{name}`` inspects (with ``UsedBy``); ``DELETE ...?force=1`` removes."""

    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        def inspect() -> dict[str, Any]:
            attrs = dict(self.engine.volumes.get(name).attrs)
            attrs["UsedBy"] = sorted(volume_users(self.engine).get(attrs.get("Name", name), []))
            return attrs
        self.reply(await self.call(inspect))

    @tornado.web.authenticated
    async def delete(self, name: str) -> None:
        force = self.flag("force")
        await self.call(lambda: self.engine.volumes.get(name).remove(force=force))
        self.set_status(204)
        self.finish()


class NetworksHandler(PortsideHandler):
    """``GET /networks``: the networks, as ``network ls --format json`` rows."""

    @tornado.web.authenticated
    async def get(self) -> None:
        self.reply(await self.call(network_rows, self.engine))


class NetworkHandler(PortsideHandler):
    """``GET /networks/{name}``: inspect one network."""

    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        self.reply(await self.call(
            lambda: self.engine.networks.get(name).attrs))


class EventsHandler(PortsideHandler):
    """``GET /events?since=<unix time>``: engine events as they happen, Docker's JSON shape."""

    @tornado.web.authenticated
    async def get(self) -> None:
        since_arg = self.get_query_argument("since", None)
        try:
            since = float(since_arg) if since_arg not in (None, "") else None
        except ValueError:
            raise tornado.web.HTTPError(400, "%s", f"since must be a number: {since_arg}") \
                from None
        system = self.engine.system
        await self.start_stream()

        def make(stop: Callable[[], bool]) -> Iterator[Any]:
            return system.events(since=since, follow=True, stop=stop)
        await self.pump(make, lambda event: event)


class ContextHandler(PortsideHandler):
    """``GET /context``: the server's context and every context of this user (``context ls``
    rows); ``PUT /context`` ``{"name": "..."}``: the panel's lists, actions and events come from
    that context's engine from now on (the user's current context, for terminals, stays)."""

    def _document(self) -> dict[str, Any]:
        from portside.engine.commands.contexts import ls_rows

        current = self.context
        return {"name": current, "contexts": ls_rows(current)}

    @tornado.web.authenticated
    async def get(self) -> None:
        self.reply(await self.call(self._document))

    @tornado.web.authenticated
    async def put(self) -> None:
        name = self.body().get("name")
        if not isinstance(name, str) or not name:
            raise tornado.web.HTTPError(400, "%s", "name is required")

        def switch() -> dict[str, Any]:
            from portside.engine.api import from_env

            # in-flight calls keep the engine they started with
            self.settings[ENGINE_KEY] = from_env(context=name)
            self.settings[CONTEXT_KEY] = name
            return self._document()
        self.reply(await self.call(switch))


# ---------------------------------------------------------------------------------- routes
_NAME = r"(?P<name>[^/]+)"
#: Image names may hold slashes (``example/box:1``), as in Docker's ``/images/{name:.*}``.
_IMAGE = r"(?P<name>.+)"

#: The whole API: (pattern relative to ``<base_url>portside/api/``, handler). Literal routes come
#: before the ``{name}`` ones that would otherwise swallow them. Names may travel percent-encoded
#: (``busybox%3Alatest``, ``example%2Fbox``); Tornado decodes them before the handler sees them.
ROUTES: list[tuple[str, type[PortsideHandler]]] = [
    (r"info", InfoHandler),
    (r"images", ImagesHandler),
    (r"images/prune", ImagesPruneHandler),
    (r"images/pull", ImagesPullHandler),
    (rf"images/{_IMAGE}/tag", ImageTagHandler),
    (rf"images/{_IMAGE}", ImageHandler),
    (r"containers", ContainersHandler),
    (r"containers/prune", ContainersPruneHandler),
    (rf"containers/{_NAME}", ContainerHandler),
    (rf"containers/{_NAME}/(?P<action>start|stop|restart|kill)", ContainerActionHandler),
    (rf"containers/{_NAME}/logs", ContainerLogsHandler),
    (rf"containers/{_NAME}/terminal", ContainerTerminalHandler),
    (rf"containers/{_NAME}/archive", ContainerArchiveHandler),
    (r"volumes", VolumesHandler),
    (r"volumes/prune", VolumesPruneHandler),
    (rf"volumes/{_NAME}", VolumeHandler),
    (r"networks", NetworksHandler),
    (rf"networks/{_NAME}", NetworkHandler),
    (r"events", EventsHandler),
    (r"context", ContextHandler),
]

API_PREFIX = "portside/api"


def setup_handlers(web_app: Any, engine: Any = None, *, workers: int = 8,
                   context: str | None = None) -> None:
    """Register :data:`ROUTES` on a Jupyter server's Tornado application.

    Args:
        web_app: ``serverapp.web_app``.
        engine: the engine object to serve (default: :func:`~portside.engine.api.from_env`'s
            for ``context``); it opens its store, or connects to its daemon, lazily, so a
            server start touches neither.
        workers: threads for engine calls.
        context: the context served (default: the selected one: ``$PORTSIDE_CONTEXT``, else
            the user's current one, else ``default``, the local engine on ``$PORTSIDE_ROOT``).
    """
    from portside.engine.api import from_env
    from portside.engine.contexts import selected

    name = context or (selected() if engine is None else "default")
    web_app.settings.setdefault(CONTEXT_KEY, name)
    web_app.settings.setdefault(ENGINE_KEY, engine if engine is not None
                                else from_env(context=name))
    web_app.settings.setdefault(
        EXECUTOR_KEY, ThreadPoolExecutor(max_workers=workers, thread_name_prefix="portside-api"))
    base_url = web_app.settings.get("base_url", "/")
    handlers = [(url_path_join(base_url, API_PREFIX, pattern) + "/?$", handler)
                for pattern, handler in ROUTES]
    web_app.add_handlers(".*$", handlers)


def route_paths(examples: dict[str, str]) -> Iterable[tuple[str, type[PortsideHandler]]]:
    """Each route with its groups filled from ``examples`` (used by tests and docs).

    Args:
        examples: group name -> sample value (``{"name": "x", "action": "stop"}``).
    """
    import re

    for pattern, handler in ROUTES:
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: examples[m.group(1)], pattern)
        yield f"{API_PREFIX}/{path}", handler
