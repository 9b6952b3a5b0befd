"""The ``portside`` program's quick exit: ``os._exit`` only when nothing still expects the
interpreter's normal exit (atexit functions, non-daemon threads)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

PROGRAM = """
import atexit, sys, threading, time
from portside.engine.__main__ import run
what = sys.argv[1]
if what == "atexit":
    atexit.register(lambda: print("atexit ran", flush=True))
elif what == "thread":
    def late():
        time.sleep(0.2)
        print("thread finished", flush=True)
    threading.Thread(target=late).start()
elif what == "logging":
    import logging

    class Closing(logging.Handler):
        def emit(self, record):
            pass

        def close(self):
            print("handler closed", flush=True)
            super().close()

    logging.getLogger("x").addHandler(Closing())
    # runs in the interpreter's normal exit only (neither an atexit function nor a thread)
    threading._register_atexit(lambda: print("normal exit", flush=True))
from portside.engine.__main__ import _quick_exit_safe
if what != "logging":
    print(f"quick exit: {_quick_exit_safe()}", flush=True)
sys.argv = ["portside", "version", "--format", "{{.Client.Version}}"]
run()
"""


def _program(tmp_path, what: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROGRAM, what], capture_output=True, text=True,
                          env={"PORTSIDE_ROOT": str(tmp_path), "PATH": "/usr/bin:/bin"},
                          timeout=60)


@pytest.mark.parametrize("what, line", [("atexit", "atexit ran"),
                                        ("thread", "thread finished")])
def test_normal_exit_when_something_waits_for_it(tmp_path, what, line):
    proc = _program(tmp_path, what)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == line


def test_quick_exit_otherwise(tmp_path):
    proc = _program(tmp_path, "none")
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == ["quick exit: True", "0.1.0"]


def test_logging_is_shut_down_and_the_exit_stays_quick(tmp_path):
    """logging's atexit function (registered whenever pyroute2 is imported) is run by the
    program itself: its handlers are closed, and the exit is still os._exit."""
    proc = _program(tmp_path, "logging")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["0.1.0", "handler closed"]
