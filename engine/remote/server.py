"""The engine process: serves one engine object's model API over channels (see :mod:`.client`).

Requests (one at a time per channel; each channel has its own thread here)::

    {"op": "call", "id": N, "target": T, "method": "list", "args": [...], "kwargs": {...}}
    {"op": "get",  "id": N, "target": T, "name": "root"}
    {"op": "kind", "id": N, "target": T, "name": "logs"}       -> "method" | "value"
    {"op": "next", "id": N, "h": H}                            -> {"item": v} | {"end": true}
    {"op": "release", "h": [H, ...]}                           (no answer)
    {"op": "connect"} + one descriptor: serve another channel on that socket

``T`` is ``{"path": ["containers"]}`` (attributes from the engine) or ``{"h": H}`` (an object
handed out before). Answers: ``{"id": N, "ok": value}`` (with ``"self": attrs`` when the
target is a model, whose attributes may have changed), or ``{"id": N, "error": {"cls", "message",
"attrs"}}``. While a call runs, a callable argument (a progress callback) is called by sending
``{"id": N, "callback": C, "args": [...]}``, which the caller handles before the answer comes.

Objects that cannot travel (models, iterators, collections, exec streams) stay here under a
handle; the other side holds a stand-in until it releases it. An exec stream
(``exec_run(..., socket=True)``) comes with the ends of its process's pipes, carried by the
answer (``{"kind": "stream", "h": H, "fds": {"stdin": i, ...}}``): the caller reads and writes
them directly, and this process keeps none of them open.

``python -m portside.engine.remote.server --fd N [--root ROOT]`` serves the engine on the
unix socket N it inherited, and exits when that socket's other end closes.
"""

from __future__ import annotations

import os
import sys
import threading

from .codec import Codec
from .wire import Channel

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any


def _is_model(obj: Any) -> bool:
    from portside.engine.models.resource import Model

    return isinstance(obj, Model)


def _class_path(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def error_doc(exc: BaseException) -> dict[str, Any]:
    """The wire form of an exception: its class, message and plain attributes."""
    attrs = {}
    for key, value in vars(exc).items():
        if value is None or isinstance(value, (bool, int, float, str)) or (
                isinstance(value, list) and all(isinstance(v, str) for v in value)):
            attrs[key] = value
    import subprocess

    if isinstance(exc, subprocess.TimeoutExpired):
        attrs = {"cmd": [str(c) for c in exc.cmd] if isinstance(exc.cmd, list) else
                 str(exc.cmd), "timeout": exc.timeout}
    if isinstance(exc, OSError):
        attrs.update(errno=exc.errno, strerror=exc.strerror)
    return {"cls": _class_path(exc), "message": str(exc), "attrs": attrs}


class EngineServer:
    """Serves ``engine`` (anything with the model API: the local :class:`Engine`)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._objects: dict[int, Any] = {}
        self._handle_of: dict[int, int] = {}   # id(object) -> handle, while it is held
        self._counts: dict[int, int] = {}      # handle -> stand-ins the other side holds
        self._next = 1

    # ---- handles ---------------------------------------------------------------------------

    def _hold(self, obj: Any) -> int:
        """The handle of ``obj``, counting one more stand-in for it over there (each stand-in
        is released once, so an object handed out twice stays until both are gone)."""
        with self._lock:
            h = self._handle_of.get(id(obj))
            if h is None or self._objects.get(h) is not obj:
                h = self._next
                self._next += 1
                self._objects[h] = obj
                self._handle_of[id(obj)] = h
            self._counts[h] = self._counts.get(h, 0) + 1
            return h

    def _release(self, handles: list[int]) -> None:
        with self._lock:
            for h in handles:
                left = self._counts.get(h, 0) - 1
                if left > 0:
                    self._counts[h] = left
                    continue
                self._counts.pop(h, None)
                obj = self._objects.pop(h, None)
                if obj is not None and self._handle_of.get(id(obj)) == h:
                    del self._handle_of[id(obj)]

    def ref(self, obj: Any, call: _Call | None = None) -> dict[str, Any]:
        """What the other side gets for an object that stays here."""
        from portside.engine.models.streams import ProcessStream

        if isinstance(obj, ProcessStream):
            if call is None:
                raise TypeError("an exec stream travels only as the answer to a call")
            h = self._hold(obj)
            return {"kind": "stream", "h": h, "fds": call.hand_over(obj)}
        h = self._hold(obj)
        if _is_model(obj):
            return {"kind": "model", "h": h, "cls": _class_path(obj),
                    "attrs": self._codec(None, []).encode(obj.attrs)}
        if hasattr(obj, "__next__") and hasattr(obj, "__iter__"):
            return {"kind": "iter", "h": h}
        return {"kind": "object", "h": h, "cls": _class_path(obj)}

    def _target(self, doc: dict[str, Any]) -> Any:
        if "h" in doc:
            try:
                return self._objects[doc["h"]]
            except KeyError:
                raise LookupError(f"the engine process no longer holds object {doc['h']}") \
                    from None
        obj = self.engine
        for name in doc.get("path") or []:
            if name.startswith("_"):
                raise AttributeError(f"no public attribute {name}")
            obj = getattr(obj, name)
        return obj

    # ---- values --------------------------------------------------------------------------

    def _codec(self, call: _Call | None, fds: list[int]) -> Codec:
        def unref(doc: dict[str, Any]) -> Any:
            if doc.get("kind") == "fd":
                fd = fds[doc["i"]]
                fds[doc["i"]] = -1  # owned by the file object now
                f = os.fdopen(fd, doc.get("mode", "rb"))
                if call is not None:
                    call.files.append(f)
                return f
            if doc.get("kind") == "callback":
                if call is None:
                    raise ValueError("a callback outside a call")
                return call.callback(doc["h"])
            if doc.get("kind") in ("model", "object", "iter", "stream"):
                return self._target({"h": doc["h"]})
            if doc.get("kind") == "path":
                return self._target({"path": doc["path"]})
            raise ValueError(f"cannot receive a {doc.get('kind')}")

        return Codec(ref=lambda value: self.ref(value, call), unref=unref)

    # ---- serving ---------------------------------------------------------------------------

    def serve(self, channel: Channel) -> None:
        """Answer requests on ``channel`` until it closes."""
        try:
            while True:
                try:
                    msg, fds = channel.recv()
                except (EOFError, OSError):
                    return
                op = msg.get("op")
                if op == "connect":
                    import socket

                    for fd in fds[1:]:
                        os.close(fd)
                    if fds:
                        sub = Channel(socket.socket(fileno=fds[0]))
                        threading.Thread(target=self.serve, args=(sub,), daemon=True).start()
                    continue
                if op == "release":
                    self._release(list(msg.get("h") or []))
                    for fd in fds:
                        os.close(fd)
                    continue
                call = _Call(channel, msg.get("id", 0), ref=self.ref)
                try:
                    reply = self._answer(msg, fds, call)
                except BaseException as exc:  # noqa: BLE001 - every failure goes back as one
                    if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                        raise
                    reply = {"error": error_doc(exc)}
                finally:
                    call.finish()
                    for fd in fds:
                        if fd >= 0:
                            os.close(fd)
                reply["id"] = call.id
                try:
                    channel.send(reply, call.out_fds)
                except OSError:
                    return
                finally:
                    call.sent()
        finally:
            channel.close()

    def _answer(self, msg: dict[str, Any], fds: list[int], call: _Call) -> dict[str, Any]:
        op = msg.get("op")
        codec = self._codec(call, fds)
        if op == "next":
            it = self._target({"h": msg["h"]})
            try:
                return {"item": codec.encode(next(it))}
            except StopIteration:
                return {"end": True}
        target = self._target(msg.get("target") or {})
        name = msg.get("method") or msg.get("name") or ""
        if name.startswith("_") and name not in ("__enter__", "__exit__"):
            raise AttributeError(f"no public attribute {name}")
        if op == "kind":
            value = getattr(type(target), name, None)
            if isinstance(value, property) or value is None:
                return {"ok": "value"}
            return {"ok": "method" if callable(getattr(target, name)) else "value"}
        if op == "get":
            return {"ok": codec.encode(getattr(target, name))}
        if op != "call":
            raise ValueError(f"unknown request {op!r}")
        args = codec.decode(msg.get("args") or [])
        kwargs = codec.decode(msg.get("kwargs") or {})
        result = getattr(target, name)(*args, **kwargs)
        reply = {"ok": codec.encode(result)}
        if _is_model(target):
            reply["self"] = codec.encode(target.attrs)
        return reply


class _Call:
    """One call in progress: its callbacks, the files made for it (closed when it ends) and
    the descriptors its answer hands over (this process's copies closed once sent)."""

    def __init__(self, channel: Channel, ident: int, ref: Any = None) -> None:
        self.channel = channel
        self.id = ident
        self._ref = ref
        self.files: list[Any] = []
        self.out_fds: list[int] = []
        self._handed: list[Any] = []

    def hand_over(self, stream: Any) -> dict[str, int]:
        """Put the ends of ``stream``'s pipes into the answer; ``{name: index}``."""
        if not self.channel.passes_fds:
            raise TypeError("exec streams need a unix socket to the engine process")
        found = {}
        for key in ("stdin", "stdout", "stderr"):
            f = getattr(stream, key, None)
            if f is not None:
                found[key] = len(self.out_fds)
                self.out_fds.append(f.fileno())
                self._handed.append(f)
        return found

    def sent(self) -> None:
        """The answer went (or could not): close this side's ends of what it handed over, so
        the caller's closing ``stdin`` is the process's end of input."""
        for f in self._handed:
            try:
                f.close()
            except OSError:
                pass
        self._handed = []
        self.out_fds = []

    def callback(self, handle: int):
        """A stand-in for the caller's callable ``handle``: each call sends its arguments
        (models as stand-ins: ``on_created`` gets the Container) and returns at once."""
        ref = self._ref
        codec = Codec(ref=(lambda value: ref(value)) if ref is not None else None)

        def call(*args: Any) -> None:
            self.channel.send({"id": self.id, "callback": handle,
                               "args": codec.encode(list(args))})

        return call

    def finish(self) -> None:
        for f in self.files:
            try:
                f.close()
            except OSError:
                pass


def main(argv: list[str] | None = None) -> int:
    """``--fd N [--root ROOT]``: serve the engine on the inherited socket N."""
    import argparse
    import socket

    ap = argparse.ArgumentParser(prog="portside.engine.remote.server")
    ap.add_argument("--fd", type=int, required=True)
    ap.add_argument("--root", default=None)
    args = ap.parse_args(argv)
    sock = socket.socket(fileno=args.fd)
    from portside.engine.api import Engine
    from portside.engine.errors import EngineError

    channel = Channel(sock)
    try:
        engine = Engine(root=args.root)  # rootless: joins the user's namespace, single-threaded
    except EngineError as exc:
        channel.send({"id": 0, "error": error_doc(exc)})
        return 1
    channel.send({"id": 0, "ok": {"pid": os.getpid(), "root": str(engine.root)}})
    EngineServer(engine).serve(channel)
    engine.close()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # serving threads may still be blocked in a read: the process is done
