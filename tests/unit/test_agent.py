"""The in-container agent, run as a plain host process through the same protocol.

The exec factory is the seam: in a notebook it goes through the model API's
``exec_run(..., socket=True)`` into a container, here it starts ``python3`` on the host. Everything after the process starts is the real thing.
"""

from __future__ import annotations

import base64
import os
import signal
import statistics
import subprocess
import sys
import threading
import time

import pytest

from portside.engine.models.streams import ProcessStream
from portside.kernel.client import (AgentDied, AgentError, AgentSession, Collector, NoPython,
                                    host_exec_factory)

pytestmark = pytest.mark.unit


@pytest.fixture
def session():
    # the venv's python, so the matplotlib test finds matplotlib; the agent needs only stdlib
    sess = AgentSession(host_exec_factory(sys.executable), label="test")
    sess.start()
    yield sess
    sess.close()
    assert sess.proc is None


def run(sess: AgentSession, code: str) -> tuple[dict, Collector]:
    out = Collector()
    reply = sess.execute(code, out)
    return reply, out


def test_outputs_come_in_order_before_the_reply(session):
    reply, out = run(session, "import os, sys\n"
                              "print('one')\n"
                              "sys.stdout.flush(); os.system('echo two')\n"
                              "print('three', end='')\n"
                              "x = 41\n"
                              "x + 1")
    assert reply["status"] == "ok"
    assert out.text() == "one\ntwo\nthree"
    assert out.messages[-1]["type"] == "execute_result"
    assert out.messages[-1]["data"]["text/plain"] == "42"


def test_output_streams_while_the_cell_runs(session):
    arrivals: list[float] = []
    out = Collector()

    def sink(msg):
        arrivals.append(time.monotonic())
        out(msg)

    t0 = time.monotonic()
    session.execute("import time\nprint('early')\ntime.sleep(0.6)\nprint('late')", sink)
    done = time.monotonic()
    assert out.text() == "early\nlate\n"
    assert arrivals[0] - t0 < 0.4, "the first line waited for the end of the cell"
    assert done - arrivals[0] > 0.4


def test_namespace_persists_and_stderr_is_separate(session):
    run(session, "import sys\ndata = [1, 2]\nsys.stderr.write('warn\\n')")
    reply, out = run(session, "data.append(3)\nprint(sum(data))")
    assert out.text() == "6\n"
    assert out.text("stderr") == ""


def test_exception_shows_the_users_traceback_only(session):
    run(session, "def inner():\n    return 1 / 0\n")
    reply, out = run(session, "print('before')\ninner()")
    assert reply["status"] == "error"
    assert out.text() == "before\n"
    (err,) = out.of_type("error")
    assert err["ename"] == "ZeroDivisionError"
    text = "\n".join(err["traceback"])
    assert "<cell-1>" in text and "return 1 / 0" in text and "inner()" in text
    assert "portside" not in text and "agent" not in text
    # the agent survives and the namespace is intact
    assert run(session, "inner")[1].messages[-1]["type"] == "execute_result"


def test_syntax_error_is_reported(session):
    reply, out = run(session, "def (:")
    assert reply["status"] == "error"
    assert out.of_type("error")[0]["ename"] == "SyntaxError"


def test_interrupt_frame_raises_keyboardinterrupt_and_keeps_namespace(session):
    run(session, "kept = 'yes'")
    threading.Timer(0.3, session.interrupt).start()
    t0 = time.monotonic()
    reply, out = run(session, "import time\nfor i in range(100):\n    time.sleep(0.1)")
    assert time.monotonic() - t0 < 5
    assert reply["status"] == "error"
    assert out.of_type("error")[0]["ename"] == "KeyboardInterrupt"
    assert run(session, "kept")[1].messages[-1]["data"]["text/plain"] == "'yes'"


def test_host_ctrl_c_while_waiting_is_forwarded(session):
    main = threading.main_thread().ident
    threading.Timer(0.3, signal.pthread_kill, (main, signal.SIGINT)).start()
    reply, out = run(session, "import time\nv = 1\ntime.sleep(20)")
    assert out.of_type("error")[0]["ename"] == "KeyboardInterrupt"
    assert run(session, "v + 1")[1].messages[-1]["data"]["text/plain"] == "2"


def test_sigint_between_cells_is_ignored(session):
    run(session, "z = 5")
    os.kill(session.info["pid"], signal.SIGINT)
    time.sleep(0.1)
    assert session.alive
    assert run(session, "z")[1].messages[-1]["data"]["text/plain"] == "5"


def test_large_output_does_not_deadlock(session):
    t0 = time.monotonic()
    reply, out = run(session, "for i in range(100000):\n    print(i)")
    elapsed = time.monotonic() - t0
    lines = out.text().splitlines()
    assert reply["status"] == "ok"
    assert len(lines) == 100000 and lines[0] == "0" and lines[-1] == "99999"
    print(f"100k lines: {elapsed * 1000:.0f} ms in {len(out.messages)} frames")
    assert elapsed < 20


def test_display_and_rich_reprs(session):
    reply, out = run(session, "class H:\n"
                              "    def _repr_html_(self): return '<b>hi</b>'\n"
                              "    def _repr_markdown_(self): return '**hi**'\n"
                              "class P:\n"
                              "    def _repr_png_(self): return b'\\x89PNG fake'\n"
                              "display(H())\n"
                              "P()")
    (shown,) = out.of_type("display_data")
    assert shown["data"]["text/html"] == "<b>hi</b>"
    assert shown["data"]["text/markdown"] == "**hi**"
    (result,) = out.of_type("execute_result")
    assert base64.b64decode(result["data"]["image/png"]) == b"\x89PNG fake"


def test_matplotlib_figure_comes_back_as_png(session):
    pytest.importorskip("matplotlib")
    reply, out = run(session, "import matplotlib.pyplot as plt\n"
                              "plt.plot([1, 3, 2])\n"
                              "None")
    assert reply["status"] == "ok", out.messages
    pngs = [m for m in out.of_type("display_data") if "image/png" in m["data"]]
    assert len(pngs) == 1
    assert base64.b64decode(pngs[0]["data"]["image/png"]).startswith(b"\x89PNG\r\n\x1a\n")
    # figures are closed after being sent: the next cell sends none
    assert not run(session, "1")[1].of_type("display_data")


def test_send_and_recv(session):
    assert session.send("cfg", {"lr": 0.1, "layers": [1, 2]}) == "pickle"
    assert run(session, "cfg['lr'] * 10")[1].messages[-1]["data"]["text/plain"] == "1.0"
    run(session, "import collections\nout = collections.OrderedDict(a=1)")
    assert session.recv("out") == {"a": 1}
    with pytest.raises(AgentError, match="not defined"):
        session.recv("missing")


class _HostOnly:
    """A class the agent cannot import: pickle fails there, JSON cannot carry it."""


def test_send_falls_back_and_fails_clearly(session):
    # a host-only class: unpickling in the agent fails, JSON cannot carry it -> one clear error
    with pytest.raises(AgentError, match="cannot send thing"):
        session.send("thing", _HostOnly())
    # a generator cannot be pickled; a JSON-able value that fails to unpickle falls back to JSON
    with pytest.raises(AgentError, match="cannot send gen"):
        session.send("gen", (i for i in range(3)))


def test_recv_of_a_container_only_class_fails_clearly(session):
    run(session, "class Local:\n    pass\nobj = Local()\nimport threading\nlock = threading.Lock()")
    with pytest.raises(AgentError, match="cannot receive lock"):
        session.recv("lock")


def test_completion(session):
    run(session, "import os\nmy_variable = 3")
    got = session.complete("my_v")
    assert got["matches"] == ["my_variable"] and got["start"] == 0 and got["end"] == 4
    got = session.complete("x = os.pat")
    assert "path" in got["matches"] and got["start"] == len("x = os.")
    assert session.complete("nothing_here.")["matches"] == []


def test_latency_p50(session):
    for _ in range(50):
        session.execute("x = 1")
    samples = []
    for _ in range(500):
        t0 = time.perf_counter()
        session.execute("x = 1")
        samples.append(time.perf_counter() - t0)
    p50 = statistics.median(samples) * 1000
    p99 = sorted(samples)[int(len(samples) * 0.99)] * 1000
    print(f"agent round trip of 'x = 1': p50 {p50:.3f} ms, p99 {p99:.3f} ms")
    assert p50 <= 5.0


def test_agent_dying_mid_cell_is_one_clear_error_then_restarts(session):
    run(session, "gone = 1")
    with pytest.raises(AgentDied, match="exited .*exit status 3.*empty namespace"):
        session.execute("import os\nos._exit(3)")
    reply, out = run(session, "gone")
    assert reply.get("restarted") is True
    assert out.of_type("error")[0]["ename"] == "NameError"


def test_no_python_is_one_line_suggesting_shell():
    def factory(argv):
        return ProcessStream(subprocess.Popen(
            ["sh", "-c", "echo 'exec: \"python3\": executable file not found' >&2; exit 127"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE))

    sess = AgentSession(factory, label="bare")
    with pytest.raises(NoPython, match="no python3 in bare: use %%container exec --shell bare"):
        sess.execute("1")
    assert sess.proc is None
    missing = AgentSession(host_exec_factory("/nonexistent/python3"), label="bare2")
    with pytest.raises(NoPython, match="--shell"):
        missing.execute("1")


def test_ping_and_user_stdin_is_closed(session):
    assert session.ping() < 1.0
    reply, out = run(session, "import sys\nsys.stdin.read()")
    assert out.messages[-1]["data"]["text/plain"] == "''"
