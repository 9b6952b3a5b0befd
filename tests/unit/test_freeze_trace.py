"""The freeze trace's liveness test: a ``flock`` that the kernel drops when its owner dies.

Real processes hold the lock and are SIGKILLed; no container is involved (see
tests/integration/test_freeze_faults.py for those).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from portside.engine.runtime import freeze

pytestmark = pytest.mark.unit

#: A process that claims the trace as an owner does, writes its document, says so, and waits.
OWNER = """
import json, os, sys, time
from pathlib import Path
from portside.engine.runtime import freeze
fd = freeze._claim(Path(sys.argv[1]), wait=True)
os.write(fd, json.dumps({"op": "commit", "pid": os.getpid()}).encode())
print("held", flush=True)
time.sleep(60)
"""


@pytest.fixture
def owner(tmp_path: Path):
    path = tmp_path / "freeze"
    proc = subprocess.Popen([sys.executable, "-c", OWNER, str(path)], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout.readline() == b"held\n"
    yield path, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    proc.stdout.close()


def test_a_live_owner_keeps_the_trace(owner):
    path, proc = owner
    assert freeze._claim(path, wait=False) is None
    assert path.exists()


def test_a_killed_owner_leaves_a_trace_anyone_can_claim(owner):
    path, proc = owner
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    fd = freeze._claim(path, wait=False)
    assert fd is not None
    try:
        doc = freeze._read_doc(fd)
        assert doc == {"op": "commit", "pid": proc.pid}
        assert doc["op"] in freeze.TEMPORARY
    finally:
        os.close(fd)


def test_a_trace_replaced_while_waiting_is_not_mistaken_for_the_new_one(tmp_path):
    path = tmp_path / "freeze"
    path.write_text("")
    stale = os.open(path, os.O_RDWR)
    try:
        path.unlink()
        path.write_text(json.dumps({"op": "pause"}))
        fd = freeze._claim(path, wait=False)
        assert fd is not None and freeze._same_file(fd, path)
        assert not freeze._same_file(stale, path)
        assert freeze._read_doc(fd) == {"op": "pause"}
        os.close(fd)
    finally:
        os.close(stale)


def test_no_trace_is_nothing_to_claim_and_an_empty_one_says_nothing(tmp_path):
    assert freeze._claim(tmp_path / "freeze", wait=False) is None
    (tmp_path / "freeze").write_text("")
    fd = freeze._claim(tmp_path / "freeze", wait=False)
    assert fd is not None
    try:
        assert freeze._read_doc(fd) is None   # its owner died before it asked the runtime
    finally:
        os.close(fd)


def test_the_owner_names_itself_by_pid_and_start_time():
    start = freeze._start_time(os.getpid())
    assert start > 0 and start == freeze._start_time(os.getpid())
    assert freeze._start_time(2 ** 22 + 1) == 0
