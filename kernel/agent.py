"""The in-container agent: a tiny Python kernel that keeps one namespace across notebook cells.

This file runs *inside* a container with whatever ``python3`` (>= 3.8) the image has, so it uses
only the standard library and no syntax newer than 3.8. The host starts it with
``python3 -u -c BOOTSTRAP`` through the engine's exec and sends this very source as the first
frame, so nothing has to be copied or bind-mounted into the container.

Wire format (both directions, over the exec's stdin/stdout pipes)::

    frame   = length (4 bytes, big-endian) + UTF-8 JSON object

Requests (host -> agent) carry an ``op`` and an ``id``; the agent answers every request with one
``{"type": "reply", "id": ..., ...}`` frame, preceded by any number of output frames for it:

    execute   {"code", "cwd"?, "env"?}     -> stream / display_data / execute_result / error, reply
    complete  {"code", "cursor"}           -> reply {"matches", "start", "end"}
    send      {"name", "format", "data"}   -> reply (stores a host value in the namespace)
    recv      {"name", "format", "protocol"?} -> reply {"format", "data"}
    ping / hello / shutdown
    interrupt {"target": id}               -> no reply; KeyboardInterrupt in the running cell

Output frames mirror Jupyter's own message types so the host can republish them untouched:
``stream {name, text}``, ``display_data {data, metadata}``, ``execute_result {data, metadata}`` and
``error {ename, evalue, traceback}``.

How output is captured: at start the agent keeps private duplicates of the real stdin/stdout and
replaces file descriptors 1 and 2 with pipes. A reader thread forwards whatever arrives on them as
``stream`` frames, so ``print``, ``sys.stdout.write`` and the output of child processes
(``os.system``) all stream in order while the cell runs, in chunks as large as the writer is fast.
At the end of a cell the main thread drains the pipes before sending the reply, so every byte of a
cell's output precedes its reply. A second thread reads requests, so an ``interrupt`` or a
``complete`` is served while a cell runs.
"""

from __future__ import annotations

import ast
import base64
import json
import keyword
import os
import queue
import re
import select
import signal
import struct
import sys
import threading
import traceback

#: frames from this file are hidden from user tracebacks (the bootstrap compiles it under this name)
AGENT_FILE = globals().get("__file__", "<portside-agent>")
_HEADER = struct.Struct(">I")
_IDLE, _RUNNING = 0, 1


class _Wire:
    """Length-prefixed JSON frames over two raw file descriptors; writes are serialised."""

    def __init__(self, in_fd: int, out_fd: int) -> None:
        self.in_fd = in_fd
        self.out_fd = out_fd
        self.lock = threading.Lock()

    def send(self, msg: dict) -> None:
        body = json.dumps(msg, separators=(",", ":")).encode("utf-8", "surrogatepass")
        data = _HEADER.pack(len(body)) + body
        with self.lock:
            view = memoryview(data)
            while view:
                n = os.write(self.out_fd, view)
                view = view[n:]

    def _read_exact(self, n: int) -> bytes:
        chunks = []
        while n:
            chunk = os.read(self.in_fd, min(n, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def recv(self) -> dict:
        (n,) = _HEADER.unpack(self._read_exact(4))
        return json.loads(self._read_exact(n).decode("utf-8", "surrogatepass"))


class _StreamWriter(object):
    """``sys.stdout``/``sys.stderr`` for user code: every write goes straight to the pipe."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, fd: int, name: str) -> None:
        self.fd = fd
        self.name = "<%s>" % name

    def write(self, text) -> int:
        if not isinstance(text, str):
            raise TypeError("write() argument must be str, not %s" % type(text).__name__)
        data = text.encode("utf-8", "replace")
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.fd

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return False

    @property
    def buffer(self):
        return _BinaryWriter(self.fd)


class _BinaryWriter(object):
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data) -> int:
        view = memoryview(bytes(data))
        total = len(view)
        while view:
            view = view[os.write(self.fd, view):]
        return total

    def flush(self) -> None:
        pass


class _Capture(object):
    """Pipes on fds 1 and 2, forwarded as ``stream`` frames by a thread; ``drain()`` syncs."""

    def __init__(self, wire: _Wire) -> None:
        self.wire = wire
        self.lock = threading.Lock()
        self.fds = {}
        for fd, name in ((1, "stdout"), (2, "stderr")):
            r, w = os.pipe()
            os.dup2(w, fd)
            os.close(w)
            os.set_blocking(r, False)
            self.fds[r] = name
        self.decoders = {}
        import codecs
        for r in self.fds:
            self.decoders[r] = codecs.getincrementaldecoder("utf-8")("replace")
        threading.Thread(target=self._pump, name="portside-output", daemon=True).start()

    def _forward(self, fds) -> bool:
        """Read what is available on ``fds`` and send it; returns whether anything was read."""
        got = False
        for r in fds:
            parts = []
            while True:
                try:
                    chunk = os.read(r, 1 << 16)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                parts.append(chunk)
                if len(parts) >= 16:  # keep frames at about 1 MiB
                    break
            if parts:
                got = True
                text = self.decoders[r].decode(b"".join(parts))
                if text:
                    self.wire.send({"type": "stream", "name": self.fds[r], "text": text})
        return got

    def _pump(self) -> None:
        fds = list(self.fds)
        while True:
            ready, _, _ = select.select(fds, [], [])
            with self.lock:
                self._forward(ready)

    def drain(self) -> None:
        """Forward everything already written (called before a reply, so output precedes it)."""
        with self.lock:
            while True:
                ready, _, _ = select.select(list(self.fds), [], [], 0)
                if not ready or not self._forward(ready):
                    break


def _mime_bundle(obj) -> dict:
    """A Jupyter MIME bundle for ``obj``: its rich ``_repr_*_`` methods plus ``text/plain``."""
    data = {}
    method = getattr(obj, "_repr_mimebundle_", None)
    if callable(method) and not isinstance(obj, type):
        try:
            got = method()
            if isinstance(got, tuple):
                got = got[0]
            if isinstance(got, dict):
                data.update(got)
        except Exception:
            pass
    for mime, attr in (("text/html", "_repr_html_"), ("text/markdown", "_repr_markdown_"),
                       ("image/svg+xml", "_repr_svg_"), ("image/png", "_repr_png_"),
                       ("image/jpeg", "_repr_jpeg_"), ("application/json", "_repr_json_"),
                       ("text/latex", "_repr_latex_")):
        method = getattr(obj, attr, None)
        if mime in data or not callable(method) or isinstance(obj, type):
            continue
        try:
            value = method()
        except Exception:
            continue
        if isinstance(value, tuple):
            value = value[0]
        if value is None:
            continue
        if isinstance(value, (bytes, bytearray)):
            value = base64.b64encode(bytes(value)).decode("ascii")
        data[mime] = value
    for mime, value in list(data.items()):
        if isinstance(value, (bytes, bytearray)):
            data[mime] = base64.b64encode(bytes(value)).decode("ascii")
    if "text/plain" not in data:
        try:
            data["text/plain"] = repr(obj)
        except Exception as exc:
            data["text/plain"] = "<repr failed: %s>" % exc
    return data


class Agent(object):
    """One namespace, one request loop. ``run()`` serves until stdin closes or ``shutdown``."""

    def __init__(self, in_fd: int, out_fd: int) -> None:
        self.wire = _Wire(in_fd, out_fd)
        self.state = _IDLE
        self.current = None          # id of the running execute request
        self.interrupted = None      # id already interrupted (signal and frame may both come)
        self.cell_count = 0
        self.requests = queue.Queue()  # type: queue.Queue[dict | None]
        self.main_thread = threading.main_thread().ident
        self.ns = {"__name__": "__main__", "__builtins__": __builtins__, "display": self.display}

    # ------------------------------------------------------------------ set-up
    def install(self) -> None:
        os.environ.setdefault("MPLBACKEND", "Agg")
        self.capture = _Capture(self.wire)
        sys.stdout = _StreamWriter(1, "stdout")
        sys.stderr = _StreamWriter(2, "stderr")
        signal.signal(signal.SIGINT, self._on_sigint)
        threading.Thread(target=self._read_requests, name="portside-requests", daemon=True).start()

    def _on_sigint(self, signum, frame) -> None:
        # Only user code is interrupted; an idle agent (or one between cells) ignores SIGINT,
        # which a Jupyter interrupt sends to the whole process group.
        if self.state == _RUNNING and self.interrupted != self.current:
            self.interrupted = self.current
            raise KeyboardInterrupt

    def _read_requests(self) -> None:
        while True:
            try:
                msg = self.wire.recv()
            except (EOFError, OSError):
                self.requests.put(None)
                return
            except Exception:  # a frame that does not parse: the stream is lost, end cleanly
                self.requests.put(None)
                return
            if not isinstance(msg, dict):
                continue
            op = msg.get("op")
            try:
                if op == "interrupt":
                    if self.state == _RUNNING and msg.get("target") in (None, self.current):
                        signal.pthread_kill(self.main_thread or 0, signal.SIGINT)
                elif op == "complete":
                    self._reply(msg, **self.complete(msg.get("code", ""), msg.get("cursor")))
                elif op == "ping":
                    self._reply(msg)
                else:
                    self.requests.put(msg)
            except Exception as exc:  # one bad request must not stop the agent answering
                try:
                    self._reply(msg, status="error", message=f"{type(exc).__name__}: {exc}")
                except Exception:
                    pass

    def _reply(self, msg: dict, **fields) -> None:
        fields["type"] = "reply"
        fields["id"] = msg.get("id")
        fields.setdefault("status", "ok")
        self.wire.send(fields)

    # ------------------------------------------------------------------ main loop
    def run(self) -> None:
        while True:
            try:
                msg = self.requests.get()
                if msg is None:
                    return
                op = msg.get("op")
                if op == "execute":
                    self._reply(msg, **self.execute(msg))
                elif op == "send":
                    self._reply(msg, **self.store(msg))
                elif op == "recv":
                    self._reply(msg, **self.fetch(msg))
                elif op == "hello":
                    import pickle
                    self._reply(msg, python=sys.version.split()[0], pid=os.getpid(),
                                pickle_protocol=pickle.HIGHEST_PROTOCOL)
                elif op == "shutdown":
                    self._reply(msg)
                    return
                else:
                    self._reply(msg, status="error", message="unknown request: %r" % (op,))
            except KeyboardInterrupt:
                continue  # a late interrupt between cells: the namespace is untouched

    # ------------------------------------------------------------------ execute
    def execute(self, msg: dict) -> dict:
        self.cell_count += 1
        n = self.cell_count
        filename = "<cell-%d>" % n
        code = msg.get("code", "")
        if msg.get("cwd"):
            try:
                os.chdir(msg["cwd"])
            except OSError as exc:
                return self._error_reply(exc, None)
        if msg.get("env"):
            os.environ.update(msg["env"])
        # blank lines ahead of the code: its line numbers are the editor's (the cell's magic
        # line comes first there)
        code = "\n" * int(msg.get("line_offset") or 0) + code
        import linecache
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        try:
            tree = ast.parse(code, filename, "exec")
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            body = compile(tree, filename, "exec")
            expr = compile(last, filename, "eval") if last is not None else None
        except (SyntaxError, ValueError, OverflowError) as exc:
            return self._error_reply(exc, None)
        result = None
        self.current = msg.get("id")
        self.interrupted = None
        status = "ok"
        try:
            self.state = _RUNNING
            try:
                exec(body, self.ns)
                if expr is not None:
                    result = eval(expr, self.ns)
            finally:
                self.state = _IDLE
        except BaseException as exc:  # SystemExit and KeyboardInterrupt too: the agent lives on
            if isinstance(exc, SystemExit) and exc.code in (None, 0):
                pass
            else:
                status = "error"
                self._send_error(exc)
        if status == "ok" and result is not None:
            self.ns["_"] = result
            self.capture.drain()  # what the cell printed precedes its value
            try:
                frame = {"type": "execute_result", "data": _mime_bundle(result),
                         "metadata": {}, "execution_count": n}
                json.dumps(frame)
            except Exception as exc:  # a repr that fails or cannot be sent: show the error
                status = "error"
                self._send_error(exc)
            else:
                self.wire.send(frame)
        self._flush_figures()
        self.capture.drain()
        return {"status": status, "execution_count": n}

    def _error_reply(self, exc: BaseException, _unused) -> dict:
        self._send_error(exc)
        self.capture.drain()
        return {"status": "error", "execution_count": self.cell_count}

    def _send_error(self, exc: BaseException) -> None:
        self.capture.drain()  # output printed before the exception comes first
        frames = list(traceback.extract_tb(exc.__traceback__))
        # the user's frames start at the cell's own: the agent's and the compiler's (ast.py
        # for a SyntaxError) before it are machinery
        first = next((i for i, f in enumerate(frames) if f.filename.startswith("<cell-")),
                     len(frames))
        frames = [f for f in frames[first:] if f.filename != AGENT_FILE]
        lines = []
        if frames:
            lines.append("Traceback (most recent call last):\n")
            lines.extend(traceback.format_list(frames))
        lines.extend(traceback.format_exception_only(type(exc), exc))
        try:
            evalue = str(exc)
        except Exception:  # an exception whose __str__ fails
            evalue = lines[-1].strip()
        self.wire.send({"type": "error", "ename": type(exc).__name__, "evalue": evalue,
                        "traceback": [line.rstrip("\n") for line in "".join(lines).splitlines()]})

    def display(self, *objs, **kwargs) -> None:
        """Show objects in the notebook as rich output (Jupyter's ``display``)."""
        self.capture.drain()
        raw = kwargs.get("raw", False)
        for obj in objs:
            data = obj if raw and isinstance(obj, dict) else _mime_bundle(obj)
            self.wire.send({"type": "display_data", "data": data,
                            "metadata": kwargs.get("metadata") or {}})

    def _flush_figures(self) -> None:
        # Only if the user imported pyplot: importing matplotlib here would cost 100 ms a cell.
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is None:
            return
        try:
            import io
            for num in plt.get_fignums():
                fig = plt.figure(num)
                buf = io.BytesIO()
                fig.savefig(buf, format="png", bbox_inches="tight")
                self.capture.drain()
                self.wire.send({"type": "display_data", "metadata": {},
                                "data": {"image/png": base64.b64encode(buf.getvalue()).decode(),
                                         "text/plain": repr(fig)}})
            plt.close("all")
        except Exception as exc:  # a broken figure must not break the agent
            self.wire.send({"type": "stream", "name": "stderr",
                            "text": "could not render figure: %s\n" % exc})

    # ------------------------------------------------------------------ completion
    def complete(self, code: str, cursor) -> dict:
        """Names in the namespace, builtins and keywords, or attributes after ``obj.``."""
        if cursor is None:
            cursor = len(code)
        head = code[:cursor]
        m = re.search(r"([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*)?\.(\w*)$", head)
        if m and m.group(1):
            obj = self._resolve(m.group(1))
            if obj is _MISSING:
                return {"matches": [], "start": cursor, "end": cursor}
            prefix = m.group(2)
            try:
                names = dir(obj)
            except Exception:
                names = []
            matches = sorted(n for n in names if isinstance(n, str) and n.startswith(prefix)
                             and (prefix.startswith("_") or not n.startswith("_")))
            return {"matches": matches, "start": cursor - len(prefix), "end": cursor}
        m = re.search(r"[A-Za-z_]\w*$", head)
        prefix = m.group(0) if m else ""
        pool = set(self.ns) | set(dir(__builtins__) if not isinstance(__builtins__, dict)
                                  else __builtins__) | set(keyword.kwlist)
        matches = sorted(n for n in pool if isinstance(n, str) and n.startswith(prefix)
                         and (prefix.startswith("_") or not n.startswith("_")))
        return {"matches": matches, "start": cursor - len(prefix), "end": cursor}

    def _resolve(self, dotted: str):
        # getattr only, never eval: completing must not run user code beyond properties
        parts = dotted.split(".")
        builtins = __builtins__ if isinstance(__builtins__, dict) else vars(__builtins__)
        if parts[0] in self.ns:
            obj = self.ns[parts[0]]
        elif parts[0] in builtins:
            obj = builtins[parts[0]]
        else:
            return _MISSING
        for part in parts[1:]:
            try:
                obj = getattr(obj, part)
            except Exception:
                return _MISSING
        return obj

    # ------------------------------------------------------------------ send / recv
    def store(self, msg: dict) -> dict:
        name = msg.get("name", "")
        if not name.isidentifier():
            return {"status": "error", "message": "not a variable name: %r" % name}
        try:
            if msg.get("format") == "pickle":
                import pickle
                value = pickle.loads(base64.b64decode(msg["data"]))
            else:
                value = msg.get("data")
        except Exception as exc:
            return {"status": "error", "ename": type(exc).__name__,
                    "message": "cannot load %s in the container: %s: %s"
                               % (name, type(exc).__name__, exc)}
        self.ns[name] = value
        return {}

    def fetch(self, msg: dict) -> dict:
        name = msg.get("name", "")
        if name not in self.ns:
            return {"status": "error", "ename": "NameError",
                    "message": "name %r is not defined in the container" % name}
        value = self.ns[name]
        if msg.get("format") == "pickle":
            import pickle
            protocol = min(int(msg.get("protocol", 4)), pickle.HIGHEST_PROTOCOL)
            try:
                data = pickle.dumps(value, protocol=protocol)
            except Exception as exc:
                return {"status": "error", "ename": type(exc).__name__,
                        "message": "cannot pickle %s: %s" % (name, exc)}
            return {"format": "pickle", "data": base64.b64encode(data).decode("ascii")}
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            return {"status": "error", "ename": type(exc).__name__,
                    "message": "%s is not JSON-serialisable: %s" % (name, exc)}
        return {"format": "json", "data": value}


_MISSING = object()


def main() -> None:
    """Keep the real pipes private, capture fds 1 and 2, then serve requests."""
    in_fd = os.dup(0)
    out_fd = os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # user code reading stdin gets EOF, not our protocol
    os.close(null)
    agent = Agent(in_fd, out_fd)
    agent.install()
    agent.wire.send({"type": "ready", "python": sys.version.split()[0], "pid": os.getpid()})
    agent.run()


#: Run with ``python3 -u -c BOOTSTRAP``: reads one frame (this file's source) from stdin with raw
#: reads, so no byte of the following frames is buffered away, and runs it.
BOOTSTRAP = (
    "import os,signal,struct\n"
    "signal.signal(signal.SIGINT,signal.SIG_IGN)\n"
    "def _r(n):\n"
    " b=b''\n"
    " while len(b)<n:\n"
    "  c=os.read(0,n-len(b))\n"
    "  if not c:raise SystemExit(3)\n"
    "  b+=c\n"
    " return b\n"
    "_s=_r(struct.unpack('>I',_r(4))[0])\n"
    "_g={'__name__':'__portside_agent__'}\n"
    "exec(compile(_s,'<portside-agent>','exec'),_g)\n"
    "_g['main']()\n"
)


if __name__ == "__main__":
    main()
