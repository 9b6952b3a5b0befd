"""The node side of a Slurm context's verbs: small commands the client runs over ``srun``.

``portside slurm node prepare --job J --image ID [--pull]`` is the start hand-shake. On stdout,
one line at a time:

* ``have`` (the node's store has the image), ``pull`` (the keeper pulls it from the context's
  registry) or ``need``; after ``need`` the client streams ``portside save`` of the image into
  stdin, the node loads it and answers ``loaded``;
* then, once the keeper has started the container or failed to, one JSON line: the keeper's
  status (``{"state": "running", …}`` or ``{"state": "failed", "error": …, "code": …}``).

``portside slurm node call`` runs one model-API method on the node's engine and prints its result
as JSON: the request is one JSON object on stdin, ``{"op": "top", "id": ID, "kwargs": {…}}``.
Errors come back as ``{"error": {"type": "NotFound", "message": …, "exit_code": …}}`` so the
client can raise the same class. Streaming verbs (``logs -f``, ``exec``, ``cp``) use the
ordinary ``portside`` commands over ``srun`` instead.
"""

from __future__ import annotations

import json
import time

from .. import errors as _errors
from ..errors import EngineError, InvalidArgument

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, BinaryIO


def prepare(engine: Any, job: str, image_id: str, *, pull: bool, stdin: BinaryIO,
            stdout: BinaryIO, timeout: float = 3600.0) -> int:
    """The start hand-shake (see the module's description). Returns 0 once the status is
    printed, 125 when the keeper never reported one."""
    from ..errors import NotFound
    from .keeper import read_status, watch_path

    def say(line: str) -> None:
        stdout.write(line.encode() + b"\n")
        stdout.flush()

    watch = watch_path(engine.root, job)
    watch.parent.mkdir(parents=True, exist_ok=True)
    watch.touch()
    try:
        try:
            engine.images.get(image_id)
            say("have")
        except NotFound:
            if pull:
                say("pull")
            else:
                say("need")
                engine.images.load(stdin)
                engine.images.get(image_id)  # NotFound: the stream held another image
                say("loaded")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = read_status(engine.root, job)
            if status is not None and status.get("state") in ("running", "failed"):
                say(json.dumps(status))
                return 0
            time.sleep(0.01)
        say(json.dumps({"state": "failed", "error": f"the keeper of job {job} did not start "
                        f"the container in {timeout:g} s", "code": 125}))
        return 125
    finally:
        try:
            watch.unlink()
        except OSError:
            pass


#: The methods ``node call`` may run, on the node's Container model.
CALLS = ("inspect", "top", "stats", "diff", "kill", "stop", "pause", "unpause", "wait",
         "restart", "rename", "update")


def call(engine: Any, request: dict[str, Any]) -> Any:
    """Run one request on the node's engine; returns a JSON-able result.

    Raises:
        InvalidArgument: an unknown op. EngineError: what the engine raised.
    """
    op = request.get("op")
    if op not in CALLS:
        raise InvalidArgument(f"node call: unknown op {op!r}")
    kwargs = dict(request.get("kwargs") or {})
    ctr = engine.containers.get(request["id"])
    if op == "inspect":
        return ctr.attrs
    result = getattr(ctr, op)(**kwargs)
    if op in ("kill", "stop", "pause", "unpause", "restart", "rename"):
        ctr.reload()
        return ctr.attrs
    return result


def call_main(engine: Any, stdin: BinaryIO, stdout: BinaryIO) -> int:
    """``portside slurm node call``: one request on stdin, one JSON answer on stdout."""
    try:
        request = json.loads(stdin.read() or b"{}")
        answer: dict[str, Any] = {"result": call(engine, request)}
        code = 0
    except EngineError as exc:
        answer = {"error": {"type": type(exc).__name__, "message": str(exc),
                            "exit_code": exc.exit_code}}
        code = exc.exit_code
    except ValueError as exc:
        answer = {"error": {"type": "InvalidArgument", "message": f"node call: {exc}",
                            "exit_code": 125}}
        code = 125
    stdout.write(json.dumps(answer, default=str).encode() + b"\n")
    stdout.flush()
    return code


def raise_answer(answer: dict[str, Any]) -> Any:
    """The result of a ``node call`` answer, or the engine error it reports, raised again as
    the same class (a class the client does not know becomes EngineError)."""
    if "error" not in answer:
        return answer.get("result")
    err = answer["error"]
    cls = getattr(_errors, str(err.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, EngineError)):
        cls = EngineError
    try:
        exc = cls(err.get("message", ""))
    except TypeError:  # a class whose constructor wants more (ContainerExit)
        exc = EngineError(err.get("message", ""))
    if "exit_code" in err and isinstance(err["exit_code"], int):
        exc.exit_code = err["exit_code"]
    raise exc


def read_line(stream: BinaryIO) -> str:
    line = stream.readline()
    if not line:
        raise EOFError
    return line.decode(errors="replace").rstrip("\n")
