"""Model verbs made only of other model verbs, for an engine object that has no faster path.

The local engine answers ``run_from``, ``start_attached``, ``attach`` and ``exec_attached`` with
its own plumbing (a monitor launched ahead, the exit reported on a pipe, the runtime handed the
caller's descriptors). Another engine object (a Slurm context, a Docker Engine, a proxy) need
not: the functions here give it those verbs from the ones every engine has -- ``create_from``,
``start``, ``logs(follow=True)``, ``wait``, ``stop``, ``remove``, ``exec_run(socket=True)`` --
with the semantics :mod:`portside.engine.models.interface` writes down. Each takes the engine's
own collection or container, so it works for any of them::

    class MyContainers:
        def run_from(self, config, host_config, **kw):
            return composed.run_from(self, config, host_config, **kw)

What they cannot give without an engine's help, they refuse in one line: standard input for a
running container's main process (``run -i``/``attach`` with input), and terminals (``-t``).
"""

from __future__ import annotations

import contextlib
import time

from ..errors import EngineError, InvalidArgument, NotFound

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, BinaryIO, Callable, Iterable, Mapping, Sequence

    from .interface import Container, ContainerCollection

def run_from(containers: Any, config: Mapping[str, Any], host_config: Mapping[str, Any], *,
             name: str | None = None, detach: bool = False, locked: bool | None = None,
             stdin: BinaryIO | None = None, stdout: BinaryIO | None = None,
             stderr: BinaryIO | None = None, detach_keys: str | None = None,
             tty_size: tuple[int, int] | None = None,
             on_created: Callable[[Any], None] | None = None,
             ready: Callable[[Any], None] | None = None, catch_up: bool = False) -> Any:
    """``docker run`` from ``create_from`` + ``start`` (+ :func:`stay`): see
    :meth:`portside.engine.models.interface.ContainerCollection.run_from`. ``ready``,
    ``catch_up``: as for :func:`stay`."""
    _refuse_input(config, stdin)
    container = containers.create_from(config, host_config, name=name, locked=locked)
    if on_created is not None:
        on_created(container)
    if detach:
        try:
            container.start()
        except BaseException:
            _remove_if_auto(container)
            raise
        return container
    return stay(container, stdout, stderr, start=True, ready=ready, catch_up=catch_up)


def start_attached(containers: ContainerCollection, name: str, stdin: BinaryIO | None,
                   stdout: BinaryIO, stderr: BinaryIO, *, detach_keys: str | None = None,
                   tty_size: tuple[int, int] | None = None,
                   ready: Callable[[Any], None] | None = None,
                   catch_up: bool = False) -> int | None:
    """``docker start -a``: start ``name`` and stay with it (see :func:`stay`)."""
    container = containers.get(name)
    _refuse_input(container.attrs.get("Config") or {}, stdin)
    return stay(container, stdout, stderr, start=True, ready=ready, catch_up=catch_up)


def stay(container: Container, stdout: BinaryIO | None, stderr: BinaryIO | None, *,
         start: bool, ready: Callable[[Any], None] | None = None,
         catch_up: bool = False) -> int:
    """(Start and) stay with ``container`` until it exits: its output from the log (nothing
    written before this could listen is lost), then its exit status. An interrupt
    (``KeyboardInterrupt``) stops it and is raised again once it is cleaned up; with
    ``AutoRemove`` it is gone when this returns.

    ``ready(container)``: for an engine whose ``start`` returns before the container runs (a
    job waiting in a scheduler's queue), blocks until it runs or will not; Docker's ``start``
    returns once it runs, so most engines need none. ``catch_up``: for an engine whose follow
    may end before the last output came through (a scheduler's step ends with its job), the
    rest is written from the whole log once the container has exited."""
    if start:
        try:
            container.start()
        except BaseException:
            _remove_if_auto(container)
            raise
    try:
        if ready is not None:
            ready(container)
        written = {"stdout": 0, "stderr": 0}
        for stream, data in container.logs(stream=True, follow=True):
            _write(stream, data, stdout, stderr)
            written[stream] = written.get(stream, 0) + len(data)
        code = int(container.wait()["StatusCode"])
        if catch_up:
            seen = {"stdout": 0, "stderr": 0}
            for stream, data in container.logs(stream=True):
                start_at = seen.get(stream, 0)
                seen[stream] = start_at + len(data)
                skip = written.get(stream, 0) - start_at
                if skip < len(data):
                    _write(stream, data[max(skip, 0):], stdout, stderr)
    except KeyboardInterrupt:
        with contextlib.suppress(EngineError):
            container.stop()
        _remove_if_auto(container)
        raise
    _remove_if_auto(container)
    return code


def attach(container: Container, stdin: BinaryIO | None, stdout: BinaryIO | None,
           stderr: BinaryIO | None) -> int:
    """``docker attach`` without input: the output from now on, then the exit status."""
    from ..errors import IncorrectState

    container.reload()
    if container.status != "running":
        raise IncorrectState("You cannot attach to a stopped container, start it first")
    _refuse_input(container.attrs.get("Config") or {}, stdin)
    for stream, data in container.logs(stream=True, follow=True, since=time.time()):
        _write(stream, data, stdout, stderr)
    return int(container.wait()["StatusCode"])


def exec_attached(container: Container, cmd: Sequence[str], stdin: BinaryIO | None,
                  stdout: BinaryIO, stderr: BinaryIO, *, tty: bool = False,
                  environment: Sequence[str] | None = None, workdir: str = "",
                  user: str = "", detach: bool = False) -> int:
    """``docker exec`` with the caller's streams, from ``exec_run(socket=True)``: its exit
    status (with ``detach``: 0 once it started)."""
    import threading

    if tty:
        raise InvalidArgument("exec -t: this context gives no terminal; leave -t out")
    if not cmd:
        raise InvalidArgument("exec requires at least 2 arguments")
    if detach:
        container.exec_run(list(cmd), detach=True, environment=environment,
                           workdir=workdir or None, user=user)
        return 0
    _code, proc = container.exec_run(list(cmd), stdin=stdin is not None, socket=True,
                                     environment=environment, workdir=workdir or None,
                                     user=user)
    assert not isinstance(proc, bytes)  # (socket=True)
    pumps = [threading.Thread(target=_copy, args=(proc.stdout, stdout), daemon=True),
             threading.Thread(target=_copy, args=(proc.stderr, stderr), daemon=True)]
    if stdin is not None:
        pumps.append(threading.Thread(target=_feed, args=(stdin, proc.stdin), daemon=True))
    for t in pumps:
        t.start()
    try:
        code = proc.wait()
        for t in pumps[:2]:
            t.join()
    finally:
        proc.close()
    return code


def prune(containers: Any, filters: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    """``container prune``: remove every container that is not running (``filters`` as
    ``list`` takes them); ``{"ContainersDeleted": [...], "SpaceReclaimed": 0}``."""
    deleted = []
    for container in containers.list(all=True, filters=filters):
        if container.status in ("running", "paused", "restarting", "created"):
            continue
        with contextlib.suppress(NotFound):
            container.remove()
            deleted.append(container.id)
    return {"ContainersDeleted": deleted, "SpaceReclaimed": 0}


def ports(attrs: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
    """``Container.ports()`` from an inspect document: the bindings in force while it runs,
    else those it asked for."""
    live = (attrs.get("NetworkSettings") or {}).get("Ports")
    if live and (attrs.get("State") or {}).get("Status") in ("running", "paused"):
        return {key: list(binds or []) for key, binds in live.items()}
    asked = (attrs.get("HostConfig") or {}).get("PortBindings") or {}
    return {key: [{"HostIp": b.get("HostIp") or "", "HostPort": b.get("HostPort") or ""}
                  for b in binds or []] for key, binds in asked.items()}


def summary(attrs: Mapping[str, Any], now: float | None = None) -> dict[str, Any]:
    """Docker's ``/containers/json`` entry (what ``list(sparse=True)`` gives, what ``ps``
    shows) made from a container's inspect document."""
    from ..image.oci import parse_time
    from ..units import human_duration

    now = time.time() if now is None else now
    state = attrs.get("State") or {}
    status = state.get("Status") or "created"
    cfg = attrs.get("Config") or {}
    argv = ([attrs["Path"]] if attrs.get("Path") else []) + list(attrs.get("Args") or [])
    if status in ("running", "paused"):
        text = "Up " + human_duration(now - _when(state.get("StartedAt"), now))
        text += " (Paused)" if status == "paused" else ""
    elif status in ("exited", "restarting"):
        text = (f"{status.capitalize()} ({state.get('ExitCode', 0)}) "
                f"{human_duration(now - _when(state.get('FinishedAt'), now))} ago")
    else:
        text = {"removing": "Removal In Progress", "dead": "Dead"}.get(status, "Created")
    ports = []
    for key, binds in sorted(((attrs.get("NetworkSettings") or {}).get("Ports") or {}).items()):
        private, _, proto = key.partition("/")
        for bind in binds or [{}]:
            entry: dict[str, Any] = {"PrivatePort": int(private) if private.isdigit() else
                                     private, "Type": proto or "tcp"}
            if bind.get("HostPort"):
                entry.update(IP=bind.get("HostIp") or "0.0.0.0",
                             PublicPort=int(bind["HostPort"]))
            ports.append(entry)
    return {
        "Id": attrs["Id"], "Names": [attrs.get("Name") or "/"],
        "Image": cfg.get("Image") or attrs.get("Image") or "", "ImageID": attrs.get("Image"),
        "Command": " ".join(argv), "Path": argv[0] if argv else "", "Args": argv[1:],
        "Created": parse_time(attrs.get("Created")), "State": status, "Status": text,
        "Ports": ports, "Labels": cfg.get("Labels") or {}, "Mounts": attrs.get("Mounts") or [],
        "HostConfig": {"NetworkMode": (attrs.get("HostConfig") or {}).get("NetworkMode", "")},
        "NetworkSettings": {"Networks": (attrs.get("NetworkSettings") or {}).get("Networks")
                            or {}},
        "GPUs": attrs.get("GPUs") or [],
    }


# ----------------------------------------------------------------------------------- helpers
def _when(text: str | None, now: float) -> float:
    """An RFC 3339 time of a state (Go's zero time, or none: ``now``)."""
    from ..image.oci import parse_time

    t = parse_time(text)
    return t if t > 0 else now


def _refuse_input(config: Mapping[str, Any], stdin: BinaryIO | None) -> None:
    if config.get("Tty"):
        raise InvalidArgument("-t: this context gives a container no terminal; leave -t out")
    if stdin is not None and config.get("OpenStdin"):
        raise InvalidArgument("-i: this context cannot feed a container's standard input; "
                              "pass input as a file (-v, cp) instead")


def _write(stream: str, data: bytes, stdout: BinaryIO | None, stderr: BinaryIO | None) -> None:
    out = stderr if stream == "stderr" else stdout
    if out is not None:
        out.write(data)
        out.flush()


def _remove_if_auto(container: Container) -> None:
    if (container.attrs.get("HostConfig") or {}).get("AutoRemove"):
        with contextlib.suppress(EngineError):
            container.remove(force=True)


def _copy(source: Any, target: BinaryIO) -> None:
    try:
        for chunk in _chunks(source):
            target.write(chunk)
            target.flush()
    except (OSError, ValueError):
        pass


def _feed(source: BinaryIO, target: Any) -> None:
    try:
        for chunk in _chunks(source):
            target.write(chunk)
            target.flush()
    except (OSError, ValueError):
        pass
    finally:
        with contextlib.suppress(OSError, ValueError):
            target.close()


def _chunks(stream: Any) -> Iterable[bytes]:
    read = getattr(stream, "read1", None) or stream.read
    while True:
        data = read(1 << 16)
        if not data:
            return
        yield data
