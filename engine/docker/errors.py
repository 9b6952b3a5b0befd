"""dockerd's errors as portside's: one line each, Docker's meaning kept.

Every call to the SDK goes through :class:`GuardedAPI`, which maps what the SDK raises (and what a
stream raises while it is read) with :func:`map_error`::

    SDK / transport                                   portside
    404 "No such container: x"                        NotFound
    409 "Container 1a2b is not running"               IncorrectState
    409 "Conflict. The container name "/x" is …"      Conflict
    400                                               InvalidArgument
    401                                               Unauthorized
    403 "host is a pre-defined network and …"         Conflict
    500 "… port is already allocated"                 Conflict
    500 "exec: "x": executable file not found …"      CommandNotFound (exit 127)
    500 "exec: "/etc": permission denied …"           CannotInvoke (exit 126)
    other 5xx                                         RuntimeFailure
    connect: no such file / connection refused        Unavailable "Cannot connect to the Docker
                                                      daemon at URL (context "C"). Is the docker
                                                      daemon running?"
    connect: permission denied                        Unavailable "permission denied while trying
                                                      to connect to the Docker daemon socket at …"

The SDK's own message for an HTTP error is several clauses long (status, URL, reason); the
message kept here is dockerd's explanation alone, as Docker's CLI prints it.
"""

from __future__ import annotations

import errno
import types

from ..errors import (CannotInvoke, CommandNotFound, Conflict, EngineError, IncorrectState,
                      InvalidArgument, NotFound, RuntimeFailure, Unauthorized, Unavailable)

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Callable


def sdk(engine: Any):
    """The ``docker`` package, or a one-line error saying how to get it."""
    try:
        import docker
    except ImportError:
        raise Unavailable(f'context "{engine.context}" needs the Docker SDK for Python: '
                          "pip install 'portside[docker]'") from None
    return docker


def _os_error(exc: BaseException) -> OSError | None:
    """The first OSError with an errno in ``exc``'s causes and arguments (requests and urllib3
    wrap the socket's error two or three levels down)."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        item = todo.pop(0)
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, OSError) and item.errno is not None:
            return item
        todo += [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args]
    return None


def unreachable(engine: Any, exc: BaseException | None) -> Unavailable:
    """The error for a dockerd that cannot be reached, as Docker's CLI words it."""
    where = f'{engine.host} (context "{engine.context}")'
    err = _os_error(exc) if exc is not None else None
    if err is not None and err.errno in (errno.EACCES, errno.EPERM):
        path = engine.host.removeprefix("unix://")
        return Unavailable(f"permission denied while trying to connect to the Docker daemon "
                           f"socket at {where}: connect {path}: permission denied")
    detail = f": {err.strerror.lower()}" if err is not None and err.strerror else ""
    return Unavailable(f"Cannot connect to the Docker daemon at {where}{detail}. "
                       "Is the docker daemon running?")


def map_error(exc: BaseException, engine: Any) -> BaseException:
    """Translate one exception from the SDK or the transport; others pass through unchanged."""
    if isinstance(exc, EngineError):
        return exc
    try:
        from docker import errors as de
        from requests import exceptions as rq
    except ImportError:  # pragma: no cover - the SDK is there whenever this runs
        return exc
    if isinstance(exc, de.APIError) and exc.response is not None:
        return _http_error(exc.status_code or 500, _explanation(exc), engine)
    if isinstance(exc, (rq.ConnectionError, ConnectionError, FileNotFoundError, PermissionError)):
        return unreachable(engine, exc)
    if isinstance(exc, rq.Timeout):
        return Unavailable(f'the Docker daemon at {engine.host} (context "{engine.context}") '
                           f"did not answer in {engine.timeout:g} s")
    if isinstance(exc, de.DockerException):
        inner = _os_error(exc)
        if inner is not None or "fetching server API version" in str(exc):
            return unreachable(engine, exc)
        return EngineError(f'context "{engine.context}": {exc}')
    return exc


def _explanation(exc: Any) -> str:
    text = exc.explanation
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return (text or str(exc)).strip()


def _http_error(status: int, message: str, engine: Any) -> EngineError:
    low = message.lower()
    if status == 404:
        return NotFound(message)
    if status == 409:
        import re

        if re.search(r"\bis (not running|not paused|paused|restarting|already (paused|running|"
                     r"stopped))\b", low):
            return IncorrectState(message)
        return Conflict(message)
    if status == 401:
        return Unauthorized(message, status)
    if status == 403:  # dockerd's "forbidden": not on this object (a pre-defined network)
        return Conflict(message)
    if status == 304:
        return IncorrectState(message or "not modified")
    failure = start_failure(message)
    if failure is not None:
        return failure
    if status == 400:
        return InvalidArgument(message)
    return RuntimeFailure(message)


def start_failure(message: str) -> EngineError | None:
    """A start that could not run the command (dockerd 20.10 answers 400, later ones 500) or
    could not publish a port; None for anything else."""
    low = message.lower()
    if "port is already allocated" in low or "address already in use" in low:
        return Conflict(message)
    if "executable file not found" in low or ("exec:" in low and "no such file" in low):
        return CommandNotFound(message)
    if "exec:" in low and "permission denied" in low:
        return CannotInvoke(message)
    return None


def guarded_call(engine: Any, fn: Callable[[], Any]) -> Any:
    """``fn()`` with the SDK's errors mapped (a generator it returns is guarded too)."""
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - mapped, or raised as it was
        mapped = map_error(exc, engine)
        if mapped is exc:
            raise
        raise mapped from exc
    if isinstance(result, types.GeneratorType):
        return guarded_stream(engine, result)
    return result


def guarded_stream(engine: Any, stream: Any):
    """Iterate ``stream`` mapping the errors raised while it is read; closing this generator
    closes it (and the HTTP response behind it)."""
    try:
        while True:
            try:
                item = next(stream)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001
                mapped = map_error(exc, engine)
                if mapped is exc:
                    raise
                raise mapped from exc
            yield item
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


class GuardedAPI:
    """The SDK's ``APIClient`` of one engine with every method's errors mapped.

    ``engine.api.inspect_container("x")`` is ``engine.client.inspect_container("x")`` raising
    ``NotFound("No such container: x")`` instead of ``docker.errors.NotFound``.
    """

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        engine = self._engine
        target = getattr(engine.client, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            return guarded_call(engine, lambda: target(*args, **kwargs))

        call.__name__ = name
        return call
