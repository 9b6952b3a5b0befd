"""An engine object that answers the model API by asking an engine in another process.

``RemoteEngine`` looks like :class:`portside.engine.api.Engine` to the fronts:
``engine.containers.list(all=True)`` returns ``Container`` objects whose ``attrs`` are the
remote ones and whose verbs (``start``, ``logs``, ``exec_run``…) run over there;
``engine.images.pull(name, progress=cb)`` calls ``cb`` here with the typed progress events made
there; iterators (``logs(stream=True)``) are pulled item by item; errors come back as the engine's
own exception classes.

Its surface is the written-down model API (:mod:`portside.engine.models.interface`), and the
type checker holds it to it as it does the local engine: the collections are stand-ins of the
local collection classes and the models stand-ins of the local model classes, each verb sent
over there by name (so their signatures are the local ones), properties computed from ``attrs``
here. Nothing else of the engine process (its root, database, stores) can be reached.

Arguments that cannot be copied travel as descriptors when the channel is a unix socket: a
caller's binary file is handed over as its descriptor (or, without one, through a pipe fed by a
thread here). The streams of ``exec_run(..., socket=True)`` come back the same way: the engine
process hands over the ends of the process's pipes, so a notebook cell's bytes never pass
through it (:class:`RemoteExecStream`).

The transport is :mod:`.wire`; what the messages mean is in :mod:`.server`. Each calling thread
takes a channel of its own from a pool (new ones are opened through the first, which only opens
channels), so a long call (a build, ``wait``) never blocks another thread's.
"""

from __future__ import annotations

import os
import subprocess
import threading
import weakref

from .codec import Codec
from .wire import Channel

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Callable

    from ..models.build import BuildCollection
    from ..models.containers import ContainerCollection
    from ..models.images import ImageCollection
    from ..models.interface import EngineAPI
    from ..models.networks import NetworkCollection
    from ..models.system import System
    from ..models.volumes import VolumeCollection

#: The engine's collections and the local classes their stand-ins are made from (what
#: :class:`portside.engine.api.Engine`'s properties return).
COLLECTIONS = {
    "images": "portside.engine.models.images.ImageCollection",
    "containers": "portside.engine.models.containers.ContainerCollection",
    "volumes": "portside.engine.models.volumes.VolumeCollection",
    "networks": "portside.engine.models.networks.NetworkCollection",
    "builds": "portside.engine.models.build.BuildCollection",
    "system": "portside.engine.models.system.System",
}

#: Properties of model classes that the local class computes from the engine's internals
#: rather than from ``attrs``: asked of the engine process.
REMOTE_PROPERTIES = {"portside.engine.models.containers.Container": ("image",)}


def rebuild_error(doc: dict[str, Any]) -> BaseException:
    """The exception an error document describes, as its own class when we know it."""
    import importlib

    module, _, name = doc.get("cls", "").rpartition(".")
    message = doc.get("message", "")
    attrs = doc.get("attrs") or {}
    cls = None
    if module.startswith("portside.") or module in ("builtins", "subprocess"):
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            cls = None
    if cls is subprocess.TimeoutExpired:
        return subprocess.TimeoutExpired(attrs.get("cmd", ""), attrs.get("timeout") or 0)
    if isinstance(cls, type) and issubclass(cls, OSError):
        return cls(attrs.get("errno") or 0, attrs.get("strerror") or message)
    if isinstance(cls, type) and issubclass(cls, BaseException):
        exc = cls.__new__(cls)
        BaseException.__init__(exc, message)
        try:
            exc.__dict__.update(attrs)
        except AttributeError:
            pass
        return exc
    from portside.engine.errors import RuntimeFailure

    return RuntimeFailure(f"engine process: {name}: {message}")


class RemoteEngine:
    """The model API of an engine in another process, over ``channel``.

    Args:
        channel: the first channel to the engine process (a :class:`.server.EngineServer`).
        process: the engine process, when this object started it (ended by :meth:`close`).
        root: the engine's state folder, as the engine process said.
    """

    def __init__(self, channel: Channel, *, process: subprocess.Popen | None = None,
                 root: str = "") -> None:
        self._main = channel
        self._process = process
        self._lock = threading.Lock()
        self._pipe_lock = threading.Lock()
        self._free: list[Channel] = []
        self._released: list[int] = []
        self._ids = 0
        self._kinds: dict[tuple[str, str], str] = {}
        self._model_classes: dict[str, type] = {}
        self._collections: dict[str, Any] = {}
        self._closed = False
        from pathlib import Path

        #: the engine process's state root (for messages and tests; not part of the model API)
        self.root = Path(root) if root else None

    # ---- the engine's own surface: the model API --------------------------------------------

    def _collection(self, name: str) -> Any:
        found: Any = self._collections.get(name)
        if found is None:
            cls = self._stand_in_class(COLLECTIONS[name])
            found = object.__new__(cls)  # (no __init__: the stand-in holds no engine)
            found._remote = (self, {"path": [name]})
            self._collections[name] = found
        return found

    @property
    def images(self) -> ImageCollection:
        return self._collection("images")

    @property
    def containers(self) -> ContainerCollection:
        return self._collection("containers")

    @property
    def volumes(self) -> VolumeCollection:
        return self._collection("volumes")

    @property
    def networks(self) -> NetworkCollection:
        return self._collection("networks")

    @property
    def builds(self) -> BuildCollection:
        return self._collection("builds")

    @property
    def system(self) -> System:
        return self._collection("system")

    def close(self, *, keep_database: bool = False) -> None:
        """Close every channel; the engine process ends with the first one."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            channels, self._free = self._free, []
        for ch in channels:
            ch.close()
        self._main.close()
        if self._process is not None:
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # ---- channels ----------------------------------------------------------------------------

    def _take(self) -> Channel:
        if not self._main.passes_fds:
            self._pipe_lock.acquire()  # pipes: one channel, one call at a time
            return self._main
        with self._lock:
            if self._closed:
                from portside.engine.errors import RuntimeFailure

                raise RuntimeFailure("the engine process connection is closed")
            if self._free:
                return self._free.pop()
            import socket

            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self._main.send({"op": "connect"}, [theirs.fileno()])
            finally:
                theirs.close()
            return Channel(mine)

    def _give(self, channel: Channel) -> None:
        if channel is self._main:
            self._pipe_lock.release()
            return
        with self._lock:
            if self._closed:
                channel.close()
            else:
                self._free.append(channel)

    def _drop(self, channel: Channel) -> None:
        """A channel left in an unknown state (an interrupted call): never reused."""
        if channel is self._main:
            self._pipe_lock.release()
        else:
            channel.close()

    # ---- requests ----------------------------------------------------------------------------

    def request(self, msg: dict[str, Any], *, fds: list[int] | None = None,
                callbacks: dict[int, Callable] | None = None, codec: Codec | None = None,
                after_send: Callable[[], None] | None = None,
                received: list[int] | None = None) -> dict[str, Any]:
        """Send one request and wait for its answer, running callbacks meanwhile.
        ``after_send`` runs once the request (and its descriptors) went out; descriptors that
        come with the answer go to ``received`` (the caller's to close), else are closed."""
        channel = self._take()
        ok = False
        try:
            with self._lock:
                self._ids += 1
                msg["id"] = self._ids
                released, self._released = self._released, []
            if released:
                channel.send({"op": "release", "h": released})
            try:
                channel.send(msg, fds or [])
            finally:
                if after_send is not None:
                    after_send()
            codec = codec or self._codec()
            while True:
                reply, extra = channel.recv()
                if received is not None and "callback" not in reply:
                    received.extend(extra)
                else:
                    for fd in extra:
                        os.close(fd)
                if "callback" in reply:
                    fn = (callbacks or {}).get(reply["callback"])
                    if fn is not None:
                        fn(*codec.decode(reply.get("args") or []))
                    continue
                ok = True
                return reply
        finally:
            if ok:
                self._give(channel)
            else:
                self._drop(channel)

    def _codec(self, fds: list[int] | None = None) -> Codec:
        return Codec(unref=lambda doc: self._unref(doc, fds))

    def _unref(self, doc: dict[str, Any], fds: list[int] | None = None) -> Any:
        kind = doc.get("kind")
        if kind == "model":
            obj = self._model(doc)
        elif kind == "iter":
            obj = RemoteIterator(self, doc["h"])
        elif kind == "stream":
            obj = RemoteExecStream(self, doc, fds or [])
        else:
            obj = RemoteObject(self, {"h": doc["h"]}, doc.get("cls", ""))
        weakref.finalize(obj, self._forget, doc["h"])
        return obj

    def _forget(self, handle: int) -> None:
        with self._lock:
            self._released.append(handle)

    def _stand_in_class(self, path: str) -> type:
        cls = self._model_classes.get(path)
        if cls is None:
            cls = self._model_classes[path] = remote_model_class(path)
        return cls

    def _model(self, doc: dict[str, Any]) -> Any:
        cls = self._stand_in_class(doc["cls"])
        obj = cls(self._codec().decode(doc["attrs"]), _ModelCollection(self, doc["h"]))
        obj._remote = (self, {"h": doc["h"]})
        return obj

    def kind(self, target: dict[str, Any], cls: str, name: str) -> str:
        key = (cls, name)
        found = self._kinds.get(key)
        if found is None:
            reply = self.request({"op": "kind", "target": target, "name": name})
            if "error" in reply:
                raise rebuild_error(reply["error"])
            found = self._kinds[key] = reply["ok"]
        return found

    def call(self, target: dict[str, Any], method: str, args: tuple, kwargs: dict,
             model: Any = None, cls: str = "") -> Any:
        """Call ``method`` on the remote ``target`` with these arguments; returns the decoded
        result (raises the remote error)."""
        out = _Outgoing(self)
        args, kwargs = _mark_outputs(cls or getattr(model, "_remote_cls", ""), method, args,
                                     kwargs)
        received: list[int] = []
        try:
            enc_args = out.encode(list(args))
            enc_kwargs = out.encode(kwargs)
            out.start()
            reply = self.request({"op": "call", "target": target, "method": method,
                                  "args": enc_args, "kwargs": enc_kwargs}, fds=out.fds,
                                 callbacks=out.callbacks, after_send=out.close_sent,
                                 received=received)
        except BaseException:
            out.close_sent()
            _close_all(received)
            raise
        out.finish()
        try:
            if "error" in reply:
                raise rebuild_error(reply["error"])
            codec = self._codec(received)
            if model is not None and "self" in reply:
                model.attrs = codec.decode(reply["self"])
            result = codec.decode(reply.get("ok"))
        finally:
            _close_all(received)  # those not taken by a stream
        if model is not None and getattr(result, "_remote", None) is not None and \
                result._remote[1] == model._remote[1]:
            return model  # the verb returned its own object: the same stand-in
        return result

    def get(self, target: dict[str, Any], name: str) -> Any:
        reply = self.request({"op": "get", "target": target, "name": name})
        if "error" in reply:
            raise rebuild_error(reply["error"])
        return self._codec().decode(reply["ok"])


def _close_all(fds: list[int]) -> None:
    while fds:
        try:
            os.close(fds.pop())
        except OSError:
            pass


class _Outgoing:
    """The arguments of one call on their way: descriptors to send, callbacks to run, and pipes
    to feed or drain."""

    def __init__(self, engine: RemoteEngine) -> None:
        self.engine = engine
        self.fds: list[int] = []
        self.sent: list[int] = []      # our copies of what was sent: closed once sent
        self.callbacks: dict[int, Callable] = {}
        self.pumps: list[threading.Thread] = []

    def encode(self, value: Any) -> Any:
        return Codec(ref=self._ref).encode(value)

    def _ref(self, value: Any) -> dict | None:
        if isinstance(value, _Output):
            return self._output(value.f)
        stand_in = getattr(value, "_remote", None)
        if stand_in is not None:
            target = stand_in[1]
            return {"kind": "object", **target} if "h" in target else \
                {"kind": "path", "path": target["path"]}
        if isinstance(value, RemoteObject) and "path" in value._target:
            return {"kind": "path", "path": value._target["path"]}
        if isinstance(value, (RemoteObject, RemoteIterator, RemoteExecStream)):
            return {"kind": "object", "h": value._handle}
        if hasattr(value, "read") and (not hasattr(value, "readable") or value.readable()):
            return self._input(value)
        if hasattr(value, "write"):
            return self._output(value)
        if callable(value):
            h = len(self.callbacks) + 1
            self.callbacks[h] = value
            return {"kind": "callback", "h": h}
        return None

    def _fd(self, fd: int, mode: str, *, owned: bool) -> dict:
        self.fds.append(fd)
        if owned:
            self.sent.append(fd)
        return {"kind": "fd", "i": len(self.fds) - 1, "mode": mode}

    def _input(self, f: Any) -> dict:
        try:
            fd = f.fileno()
            if hasattr(f, "tell") and hasattr(f, "seekable") and f.seekable() and f.tell() != \
                    os.lseek(fd, 0, os.SEEK_CUR):
                raise OSError("buffered ahead")  # Python buffered past the descriptor's offset
            return self._fd(os.dup(fd), "rb", owned=True)
        except (OSError, AttributeError, ValueError):
            pass
        r, w = os.pipe()

        def pump() -> None:
            with os.fdopen(w, "wb") as out:
                try:
                    while True:
                        chunk = f.read(1 << 16)
                        if not chunk:
                            break
                        out.write(chunk if isinstance(chunk, bytes) else chunk.encode())
                except (BrokenPipeError, OSError):
                    pass

        self.pumps.append(threading.Thread(target=pump, daemon=True))
        return self._fd(r, "rb", owned=True)

    def _output(self, f: Any) -> dict:
        r, w = os.pipe()

        def pump() -> None:
            with os.fdopen(r, "rb") as src:
                while True:
                    chunk = src.read(1 << 16)
                    if not chunk:
                        break
                    f.write(chunk)

        self.pumps.append(threading.Thread(target=pump, daemon=True))
        return self._fd(w, "wb", owned=True)

    def start(self) -> None:
        for t in self.pumps:
            t.start()

    def close_sent(self) -> None:
        """Close our copies of the descriptors sent (the far side has its own now): a pipe
        reaches its end only when every writer is gone."""
        for fd in self.sent:
            try:
                os.close(fd)
            except OSError:
                pass
        self.sent = []

    def finish(self) -> None:
        for t in self.pumps:
            if t.is_alive() or t.ident is not None:
                t.join()


#: Parameter names of the model API that receive a file to write into (the others read).
OUTPUT_PARAMETERS = ("out", "output", "dest", "stdout", "stderr")


class _Output:
    def __init__(self, f: Any) -> None:
        self.f = f


def _mark_outputs(cls_path: str, method: str, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Wrap file arguments that the method writes into (a parameter named as in
    :data:`OUTPUT_PARAMETERS`, or a file that can only be written)."""
    def is_file(v: Any) -> bool:
        return hasattr(v, "write") or hasattr(v, "read")

    if not any(is_file(v) for v in (*args, *kwargs.values())):
        return args, kwargs
    names: list[str] = []
    if cls_path:
        import importlib
        import inspect

        module, _, name = cls_path.rpartition(".")
        try:
            fn = getattr(getattr(importlib.import_module(module), name), method)
            names = [p for p in inspect.signature(fn).parameters][1:]
        except (ImportError, AttributeError, TypeError, ValueError):
            names = []

    def mark(name: str, v: Any) -> Any:
        if not is_file(v):
            return v
        readable = hasattr(v, "read") and (not hasattr(v, "readable") or v.readable())
        if name in OUTPUT_PARAMETERS or not readable:
            return _Output(v)
        return v

    args = tuple(mark(names[i] if i < len(names) else "", v) for i, v in enumerate(args))
    kwargs = {k: mark(k, v) for k, v in kwargs.items()}
    return args, kwargs


class RemoteObject:
    """A stand-in for an object of the engine process: attributes are asked for by name."""

    def __init__(self, engine: RemoteEngine, target: dict[str, Any], cls: str) -> None:
        self._engine = engine
        self._target = target
        self._cls = cls

    @property
    def _handle(self) -> int:
        return self._target["h"]

    def __repr__(self) -> str:
        return f"<remote {self._cls or 'object'} {self._target}>"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") and name not in ("__enter__", "__exit__"):
            raise AttributeError(name)
        target = self._target
        if self._engine.kind(target, self._cls, name) == "value":
            value = self._engine.get(target, name)
            if isinstance(value, RemoteObject) and "path" in target:
                # collections and sub-objects of the engine: reached by path, never released
                return RemoteObject(self._engine, {"path": [*target["path"], name]},
                                    value._cls)
            return value
        engine = self._engine
        owner = self  # the stand-in lives while its bound method does: its handle stays held

        def method(*args: Any, **kwargs: Any) -> Any:
            return engine.call(owner._target, name, args, kwargs, cls=owner._cls)

        method.__name__ = name
        return method

    def __enter__(self) -> Any:
        return self._engine.call(self._target, "__enter__", (), {})

    def __exit__(self, *exc: Any) -> Any:
        return self._engine.call(self._target, "__exit__", (None, None, None), {})


class _ModelCollection:
    """A model stand-in's ``collection``: the remote model's own, fetched when first used (a
    property such as ``Container.image`` goes through it)."""

    def __init__(self, engine: RemoteEngine, handle: int) -> None:
        self._engine, self._handle, self._found = engine, handle, None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if self._found is None:
            self._found = self._engine.get({"h": self._handle}, "collection")
        return getattr(self._found, name)


def remote_model_class(path: str) -> type:
    """A subclass of the model or collection class at ``path`` whose verbs (its public
    methods) run in the engine process, with the same signatures; a model's properties
    (computed from ``attrs``) stay as they are, but for those in :data:`REMOTE_PROPERTIES`,
    which are asked of the engine process. An instance's ``_remote`` is ``(engine, target)``."""
    import importlib
    import inspect

    module, _, name = path.rpartition(".")
    if not module.startswith("portside."):
        raise ValueError(f"not a model class of ours: {path}")
    base = getattr(importlib.import_module(module), name)
    ns: dict[str, Any] = {"__module__": __name__, "_remote": None, "_remote_cls": path}
    for attr in dir(base):
        if attr.startswith("_"):
            continue
        static = inspect.getattr_static(base, attr)
        if isinstance(static, (property, staticmethod, classmethod, type)) or \
                not callable(static):
            continue
        ns[attr] = _forwarder(attr)
    for attr in REMOTE_PROPERTIES.get(path, ()):
        ns[attr] = property(_remote_property(attr))
    return type("Remote" + base.__name__, (base,), ns)


def _forwarder(name: str):
    def verb(self, *args: Any, **kwargs: Any) -> Any:
        engine, target = self._remote
        is_model = "h" in target
        return engine.call(target, name, args, kwargs, model=self if is_model else None,
                           cls=self._remote_cls)

    verb.__name__ = name
    return verb


def _remote_property(name: str):
    def get(self) -> Any:
        engine, target = self._remote
        return engine.get(target, name)

    get.__name__ = name
    return get


class RemoteIterator:
    """An iterator of the engine process, pulled one item per request."""

    def __init__(self, engine: RemoteEngine, handle: int) -> None:
        self._engine = engine
        self._handle = handle
        self._done = False

    def __iter__(self) -> "RemoteIterator":
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        reply = self._engine.request({"op": "next", "h": self._handle})
        if "error" in reply:
            self._done = True
            raise rebuild_error(reply["error"])
        if reply.get("end"):
            self._done = True
            raise StopIteration
        return self._engine._codec().decode(reply["item"])

    def close(self) -> None:
        if not self._done:
            self._done = True
            try:
                self._engine.call({"h": self._handle}, "close", (), {})
            except Exception:  # noqa: BLE001 - not a generator, or already over
                pass


class RemoteExecStream:
    """The :class:`~portside.engine.models.interface.ExecStream` of a process the engine
    process started (``exec_run(..., socket=True)``): its pipes' ends were handed over, so the
    streams are local files (``fileno()``, ``read1``, ``select``); the exit status and signals go
    over there."""

    def __init__(self, engine: RemoteEngine, doc: dict[str, Any], fds: list[int]) -> None:
        self._engine = engine
        self._handle = doc["h"]
        self._code: int | None = None
        files: dict[str, Any] = {}
        for key, mode in (("stdin", "wb"), ("stdout", "rb"), ("stderr", "rb")):
            i = (doc.get("fds") or {}).get(key)
            if i is not None and 0 <= i < len(fds) and fds[i] >= 0:
                files[key] = os.fdopen(fds[i], mode)
                fds[i] = -1  # owned by the file now
        self.stdin: Any = files.get("stdin")
        self.stdout: Any = files.get("stdout")
        self.stderr: Any = files.get("stderr")

    def _call(self, method: str, *args: Any) -> Any:
        return self._engine.call({"h": self._handle}, method, args, {})

    def poll(self) -> int | None:
        if self._code is None:
            self._code = self._call("poll")
        return self._code

    def wait(self, timeout: float | None = None) -> int:
        if self._code is None:
            self._code = self._call("wait", timeout)
        return self._code  # type: ignore[return-value]

    def kill(self) -> None:
        if self._code is None:
            self._call("kill")

    def signal(self, signum: int) -> None:
        if self._code is None:
            self._call("signal", signum)

    def close(self) -> None:
        """Close the streams here, then have the engine process reap the process."""
        for f in (self.stdin, self.stdout, self.stderr):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        if self._code is None:
            self._call("close")
            self._code = self._call("poll")


def spawn(root: str | None = None, *, python: str | None = None,
          env: dict[str, str] | None = None) -> RemoteEngine:
    """Start an engine process (``fork`` + ``exec``: safe from a threaded caller) and return
    its stand-in. The process joins the rootless user's namespace at its start, single-threaded,
    and ends when the stand-in is closed or this process goes away.

    Raises:
        EngineError: the engine process could not start its engine (the reason, as it said).
    """
    import socket
    import sys

    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    argv = [python or sys.executable, "-m", "portside.engine.remote.server",
            "--fd", str(theirs.fileno())]
    if root:
        argv += ["--root", str(root)]
    try:
        proc = subprocess.Popen(argv, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                                env=env, close_fds=True)
    finally:
        theirs.close()
    channel = Channel(mine)
    try:
        hello, fds = channel.recv()
    except EOFError:
        channel.close()
        proc.wait()
        from portside.engine.errors import RuntimeFailure

        raise RuntimeFailure(f"the engine process exited at start ({proc.returncode})") from None
    for fd in fds:
        os.close(fd)
    if "error" in hello:
        channel.close()
        proc.wait()
        raise rebuild_error(hello["error"])
    return RemoteEngine(channel, process=proc, root=hello["ok"].get("root", ""))


if TYPE_CHECKING:
    def _answers_the_model_api(engine: RemoteEngine) -> EngineAPI:
        """For the type checker: the stand-in answers the written-down model API."""
        return engine
