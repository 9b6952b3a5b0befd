"""The host side of the in-container agent: start it, send it cells, republish what it sends back.

An :class:`AgentSession` owns one agent process (see :mod:`portside.kernel.agent`). It does not
know how the process is started: an *exec factory* returns an
:class:`~portside.engine.models.interface.ExecStream` -- the process's stdin, stdout and stderr as
binary streams, plus ``wait``/``poll``/``kill`` -- running ``python3 -u -c BOOTSTRAP``. In a
notebook the factory comes from :func:`container_exec_factory`, which asks the engine for
``exec_run(..., socket=True)`` (the kernel never touches Linux itself, and any engine object that
answers the model API will do); tests use :func:`host_exec_factory`, the same agent as a plain
host process.

Then the session sends the agent's own source as the first frame, waits for ``ready``, and serves
requests. Output frames are handed to an :class:`OutputSink` as they arrive, so a cell's prints
stream live. An interrupt (``KeyboardInterrupt`` in the host while waiting) is forwarded as an
``interrupt`` frame and the session keeps reading until the cell's reply, so the namespace in the
container survives. If the agent dies, :class:`AgentDied` says so in one line and the next request
starts a fresh agent (with an empty namespace, which the message mentions).
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from .agent import BOOTSTRAP

if TYPE_CHECKING:
    from portside.engine.models.interface import EngineAPI, ExecStream

_HEADER = struct.Struct(">I")
AGENT_SOURCE_PATH = Path(__file__).with_name("agent.py")

#: Starts ``argv`` (``["python3", "-u", "-c", BOOTSTRAP]``) and returns its streams.
ExecFactory = Callable[[list[str]], "ExecStream"]


class AgentError(Exception):
    """Base of the session's errors; ``str()`` is one line for the notebook."""


class NoPython(AgentError):
    """The container has no usable ``python3``."""


class AgentDied(AgentError):
    """The agent (or its container) exited; the namespace is gone."""


class RemoteError(Exception):
    """An exception raised by user code inside the container.

    IPython calls ``_render_traceback_`` to draw it, so the notebook shows the container's
    traceback of the user's cell (with the remote exception's name) and not one from our code.
    """

    def __init__(self, ename: str, evalue: str, traceback: list[str]) -> None:
        super().__init__(f"{ename}: {evalue}")
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback

    def _render_traceback_(self) -> list[str]:
        return list(self.traceback) or [f"{self.ename}: {self.evalue}"]


class OutputSink(Protocol):
    """Receives the output frames of a request (``stream``, ``display_data``, ...)."""

    def __call__(self, msg: dict) -> None: ...


@dataclass
class Collector:
    """An :class:`OutputSink` that keeps every message (tests, benchmarks, ``%container run``)."""

    messages: list[dict] = field(default_factory=list)

    def __call__(self, msg: dict) -> None:
        self.messages.append(msg)

    def text(self, name: str = "stdout") -> str:
        return "".join(m["text"] for m in self.messages
                       if m["type"] == "stream" and m["name"] == name)

    def of_type(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m["type"] == kind]


def host_exec_factory(python: str | None = None, **popen_kwargs: Any) -> ExecFactory:
    """A factory running the agent as a host process (tests and benchmarks).

    Args:
        python: the interpreter to use (default: ``python3`` on PATH, else this one).
    """
    from portside.engine.models.streams import ProcessStream

    exe = python or shutil.which("python3") or sys.executable

    def factory(argv: list[str]) -> ExecStream:
        argv = [exe if argv[0] == "python3" else argv[0], *argv[1:]]
        return ProcessStream(subprocess.Popen(argv, stdin=subprocess.PIPE,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                              start_new_session=True, **popen_kwargs))

    return factory


def container_exec_factory(engine: EngineAPI, container: str, *, user: str | None = None,
                           workdir: str | None = None, env: dict[str, str] | None = None,
                           python: str = "python3",
                           on_container: Callable[[Any], None] | None = None) -> ExecFactory:
    """A factory running the agent inside ``container`` through the model API's
    ``exec_run(..., stdin=True, socket=True)``. ``on_container(model)``: told the container
    each time an agent starts in it (what the name means then), so a caller need not look it
    up again for every cell (a scheduler's engine asks the cluster for that).

    Raises:
        portside.engine.errors.NotFound / IncorrectState: from the engine, when the container
            does not exist or is not running (raised when the factory is called).
    """

    def factory(argv: list[str]) -> ExecStream:
        ctr = engine.containers.get(container)
        argv = [python if argv[0] == "python3" else argv[0], *argv[1:]]
        _code, stream = ctr.exec_run(argv, stdin=True, socket=True, user=user or "",
                                     workdir=workdir, environment=env or None)
        assert not isinstance(stream, bytes)  # socket=True: the streams
        if on_container is not None:
            on_container(ctr)
        return stream

    return factory


class AgentSession:
    """One agent and its namespace. Thread-compatible, not thread-safe: one request at a time.

    Example::

        session = AgentSession(host_exec_factory(), label="test")
        session.execute("x = 41", sink)
        session.execute("x + 1", sink)     # sink gets an execute_result with text/plain '42'
    """

    def __init__(self, exec_factory: ExecFactory, *, label: str = "container",
                 start_timeout: float = 30.0) -> None:
        self.exec_factory = exec_factory
        self.label = label
        self.start_timeout = start_timeout
        self.proc: ExecStream | None = None
        self.info: dict = {}
        self._next_id = 0
        self._in_fd = -1
        self._out_fd = -1
        self._buf = bytearray()
        self._lost_namespace = False
        self._stderr_tail = b""
        self._stderr_thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start the agent if it is not running. Raises NoPython or AgentDied."""
        if self.alive:
            return
        if self.proc is not None:
            self._reap()
            self._lost_namespace = True
        try:
            proc = self.exec_factory(["python3", "-u", "-c", BOOTSTRAP])
        except FileNotFoundError as exc:
            raise NoPython(f"no python3 in {self.label}: use %%container exec --shell "
                           f"{self.label} to run the cell with sh") from exc
        self.proc = proc
        self._in_fd = proc.stdout.fileno()
        self._out_fd = proc.stdin.fileno()
        self._buf = bytearray()
        self._stderr_tail = b""
        self._stderr_thread = threading.Thread(target=self._read_stderr, args=(proc,),
                                               daemon=True)
        self._stderr_thread.start()
        try:
            self._write(AGENT_SOURCE_PATH.read_bytes())
            ready = self._read_frame(timeout=self.start_timeout)
        except (AgentDied, BrokenPipeError) as exc:
            code = self._reap()
            tail = self._stderr_tail.decode(errors="replace")
            if code in (126, 127) or "not found" in tail or "No such file" in tail:
                raise NoPython(f"no python3 in {self.label}: use %%container exec --shell "
                               f"{self.label} to run the cell with sh") from exc
            raise AgentDied(f"the agent in {self.label} did not start"
                            + (f": {tail.strip().splitlines()[-1]}" if tail.strip() else "")) from exc
        if ready.get("type") != "ready":
            self.close()
            raise AgentDied(f"the agent in {self.label} sent {ready.get('type')!r} at start")
        self.info = ready

    def _read_stderr(self, proc: ExecStream) -> None:
        # The agent's own fd 2 is captured inside it; what arrives here comes from the exec or
        # from a crash of the interpreter. Keep the tail for error messages.
        for chunk in iter(lambda: proc.stderr.read1(4096), b""):
            self._stderr_tail = (self._stderr_tail + chunk)[-4096:]

    def _reap(self) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            code = proc.wait(timeout=5)
        except TimeoutError:
            proc.kill()
            code = proc.wait()
        if self._stderr_thread is not None:
            self._stderr_thread.join(timeout=2)
        try:
            proc.stderr.close()
        except OSError:
            pass
        return code

    def close(self) -> None:
        """Ask the agent to exit, then make sure it has; the namespace is gone."""
        if self.proc is None:
            return
        if self.alive:
            try:
                self._write_msg({"op": "shutdown", "id": -1})
            except OSError:
                pass
        self._reap()

    def __enter__(self) -> "AgentSession":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ wire
    def _write(self, body: bytes) -> None:
        data = memoryview(_HEADER.pack(len(body)) + body)
        while data:
            data = data[os.write(self._out_fd, data):]

    def _write_msg(self, msg: dict) -> None:
        self._write(json.dumps(msg, separators=(",", ":")).encode())

    def _fill(self, timeout: float | None) -> None:
        if timeout is not None:
            import select
            ready, _, _ = select.select([self._in_fd], [], [], timeout)
            if not ready:
                raise AgentDied(f"the agent in {self.label} did not answer in {timeout:g} s")
        chunk = os.read(self._in_fd, 1 << 20)
        if not chunk:
            raise AgentDied(f"the agent in {self.label} exited")
        self._buf += chunk

    def _read_frame(self, timeout: float | None = None) -> dict:
        while len(self._buf) < 4:
            self._fill(timeout)
        (n,) = _HEADER.unpack_from(self._buf)
        while len(self._buf) < 4 + n:
            self._fill(timeout)
        body = bytes(self._buf[4:4 + n])
        del self._buf[:4 + n]
        return json.loads(body)

    def request(self, op: str, sink: OutputSink | None = None, **fields: Any) -> dict:
        """Send one request and return its reply, passing output frames to ``sink``.

        A ``KeyboardInterrupt`` while waiting is forwarded to the agent (the cell gets it) and
        the wait goes on; a second one within a second abandons the agent.

        Raises:
            NoPython, AgentDied: the agent could not start or exited (namespace lost).
        """
        self.start()
        lost = self._lost_namespace
        self._lost_namespace = False
        self._next_id += 1
        rid = self._next_id
        try:
            self._write_msg({"op": op, "id": rid, **fields})
        except BrokenPipeError:
            raise self._died() from None
        except BaseException:
            # interrupted mid-frame: the agent holds half a message and the stream is lost;
            # the next cell starts a fresh agent (and says the namespace was lost)
            self.kill()
            raise
        last_interrupt = 0.0
        while True:
            try:
                msg = self._read_frame()
            except KeyboardInterrupt:
                now = time.monotonic()
                if now - last_interrupt < 1.0:
                    self.kill()
                    raise AgentDied(f"the agent in {self.label} was killed after a second "
                                    "interrupt; the next cell starts a new one") from None
                last_interrupt = now
                try:
                    self._write_msg({"op": "interrupt", "target": rid})
                except OSError:
                    pass
                continue
            except AgentDied:
                raise self._died() from None
            if msg.get("type") == "reply":
                if msg.get("id") == rid:
                    if lost:
                        msg["restarted"] = True
                    return msg
                continue  # a late reply to an abandoned request
            if sink is not None:
                sink(msg)

    def _died(self) -> AgentDied:
        code = self._reap()
        self._lost_namespace = True
        how = f" (exit status {code})" if code not in (None, 0) else ""
        return AgentDied(f"the agent in {self.label} exited{how} while running the cell; the "
                         "next cell starts a new agent with an empty namespace")

    def kill(self) -> None:
        """Kill the agent process (its namespace is lost)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass
        self._reap()
        self._lost_namespace = True

    # ------------------------------------------------------------------ operations
    def execute(self, code: str, sink: OutputSink | None = None, *, cwd: str | None = None,
                env: dict[str, str] | None = None, first_line: int = 1) -> dict:
        """Run one cell; output goes to ``sink``; returns the reply (``status``: ok/error).

        ``first_line`` is the editor's number of the code's first line (2 under a
        ``%%container exec`` line), so tracebacks name the lines the user sees."""
        fields: dict[str, Any] = {"code": code}
        if cwd:
            fields["cwd"] = cwd
        if env:
            fields["env"] = env
        if first_line > 1:
            fields["line_offset"] = first_line - 1
        return self.request("execute", sink, **fields)

    def complete(self, code: str, cursor: int | None = None) -> dict:
        """Completions at ``cursor``: ``{"matches": [...], "start": i, "end": j}``."""
        reply = self.request("complete", None, code=code,
                             cursor=len(code) if cursor is None else cursor)
        return {k: reply.get(k) for k in ("matches", "start", "end")}

    def ping(self) -> float:
        """One round trip; returns its duration in seconds."""
        t0 = time.perf_counter()
        self.request("ping")
        return time.perf_counter() - t0

    def send(self, name: str, value: Any) -> str:
        """Store ``value`` as ``name`` in the container; returns the format used (pickle/json).

        Pickle (protocol 4, or lower if the agent's Python needs it) is tried first; when the
        container cannot load it (a module it lacks), plain JSON is tried.

        Raises:
            AgentError: neither pickle nor JSON can carry the value.
        """
        self.start()
        protocol = min(4, int(self.info.get("pickle_protocol", 4) or 4), pickle.HIGHEST_PROTOCOL)
        why = ""
        try:
            data = pickle.dumps(value, protocol=protocol)
        except Exception as exc:  # unpicklable (a lock, a generator, ...)
            why = f"cannot pickle it ({exc})"
        else:
            reply = self.request("send", None, name=name, format="pickle",
                                 data=base64.b64encode(data).decode())
            if reply.get("status") == "ok":
                return "pickle"
            why = reply.get("message", "pickle failed")
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise AgentError(f"cannot send {name} to {self.label}: {why}, and it is not JSON "
                             "either") from None
        reply = self.request("send", None, name=name, format="json", data=value)
        if reply.get("status") != "ok":
            raise AgentError(f"cannot send {name} to {self.label}: {reply.get('message')}")
        return "json"

    def recv(self, name: str) -> Any:
        """Fetch ``name`` from the container's namespace (pickle, else JSON).

        Raises:
            AgentError: the name is undefined there, or neither format can carry it.
        """
        reply = self.request("recv", None, name=name, format="pickle",
                             protocol=pickle.HIGHEST_PROTOCOL)
        why = ""
        if reply.get("status") == "ok":
            try:
                return pickle.loads(base64.b64decode(reply["data"]))
            except Exception as exc:  # a class the host cannot import
                why = f"the host cannot unpickle it ({type(exc).__name__}: {exc})"
        elif reply.get("ename") == "NameError":
            raise AgentError(f"{reply.get('message')} {self.label}")
        else:
            why = reply.get("message", "")
        reply = self.request("recv", None, name=name, format="json")
        if reply.get("status") != "ok":
            raise AgentError(f"cannot receive {name} from {self.label}: {why}; "
                             f"{reply.get('message')}")
        return reply["data"]

    def interrupt(self) -> None:
        """Interrupt the running cell from another thread."""
        if self.alive:
            self._write_msg({"op": "interrupt", "target": None})


def signal_name(code: int | None) -> str:
    """``-9`` -> ``"SIGKILL"`` for messages about an exit status."""
    if code is None or code >= 0:
        return str(code)
    try:
        return signal.Signals(-code).name
    except ValueError:
        return str(code)
