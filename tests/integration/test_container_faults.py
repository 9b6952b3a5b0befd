"""Faults: SIGKILL of the monitor, of the CLI in the middle of ``run`` and of ``commit``.

After each, ``ps -a`` must tell the truth, ``rm -f`` must clean everything, and the autouse
``host_unchanged`` fixture proves no mount, cgroup or process is left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not shutil.which("runc"), reason="runc not installed"),
]


def _inspect(cli, name):
    return json.loads(cli("inspect", name).out)[0]


def _monitor_pid(cli, name) -> int:
    from portside.engine.api import Engine

    eng = Engine(root=cli.root)
    try:
        return eng.containers.store.resolve(name).monitor_pid
    finally:
        eng.close()


def test_sigkill_of_the_monitor(cli, busybox_image):
    cli("run", "-d", "--name", "orphan", "busybox", "sleep", "300")
    pid = _monitor_pid(cli, "orphan")
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    # The container's process still runs: ps says so.
    assert _inspect(cli, "orphan")["State"]["Status"] == "running"
    assert "Up " in cli("ps").out
    cli("stop", "-t", "1", "orphan")
    state = _inspect(cli, "orphan")["State"]
    assert state["Status"] == "exited"
    cli("rm", "-f", "orphan")
    assert cli("ps", "-aq").out == ""


def test_sigkill_of_monitor_after_the_container_died(cli, busybox_image):
    cli("run", "-d", "--name", "gone", "busybox", "sleep", "300")
    pid = _monitor_pid(cli, "gone")
    os.kill(pid, signal.SIGKILL)
    init = _inspect(cli, "gone")["State"]["Pid"]
    os.kill(init, signal.SIGKILL)
    time.sleep(0.3)
    state = _inspect(cli, "gone")["State"]
    assert state["Status"] == "exited" and state["Running"] is False
    assert "Exited" in cli("ps", "-a").out
    cli("rm", "-f", "gone")


def test_sigkill_of_the_cli_mid_run(cli, busybox_image):
    proc = subprocess.Popen([*_argv(cli), "run", "--name", "mid", "busybox", "sh", "-c",
                             "echo started; sleep 300"], env=cli.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout.readline() == b"started\n"
    proc.kill()
    proc.wait()
    proc.stdout.close()
    # The container does not depend on the CLI: it still runs, and ps says so.
    assert _inspect(cli, "mid")["State"]["Status"] == "running"
    cli("rm", "-f", "mid")
    assert cli("ps", "-aq").out == ""


def test_sigkill_mid_commit_leaves_no_half_image(cli, busybox_image):
    cli("run", "-d", "--name", "src", "busybox", "sh", "-c", "echo x > /f; sleep 300")
    before = cli("images", "-q").out
    proc = cli("commit", "src", "half:1", env={"PORTSIDE_FAULT": "commit-layer-ingested"},
               check=False)
    assert proc.returncode == -signal.SIGKILL
    assert cli("images", "-q").out == before
    assert "half" not in cli("images").out
    state = _inspect(cli, "src")["State"]
    assert state["Status"] in ("running", "paused")
    cli("rm", "-f", "src")
    assert cli("ps", "-aq").out == ""
    assert cli("system", "check", "--repair", check=False).returncode in (0, 1)


def test_rm_f_of_a_paused_container(cli, busybox_image):
    cli("run", "-d", "--name", "frozen", "busybox", "sleep", "300")
    cli("pause", "frozen")
    cli("rm", "-f", "frozen")
    assert cli("ps", "-aq").out == ""


def _argv(cli):
    from conftest import PORTSIDE  # type: ignore[import-not-found]

    return [PORTSIDE]


def test_a_killed_foreground_run_rm_is_still_cleaned_up_by_the_monitor(cli, busybox_image):
    """The CLI of a foreground `run --rm` dies: its watch lock goes with it, so when the container
    ends the monitor runs the cleanup itself and the container is removed."""
    proc = subprocess.Popen([*_argv(cli), "run", "--rm", "--name", "orphan", "busybox", "sh",
                             "-c", "echo started; sleep 1"], env=cli.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout.readline() == b"started\n"
    proc.kill()
    proc.wait()
    proc.stdout.close()
    deadline = time.monotonic() + 15
    while cli("ps", "-aq").out and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cli("ps", "-aq").out == ""


def test_ctrl_c_on_a_foreground_run_stops_and_removes_the_container(cli, busybox_image):
    proc = subprocess.Popen([*_argv(cli), "run", "--rm", "--name", "intr", "busybox", "sh", "-c",
                             "echo started; sleep 60"], env=cli.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout.readline() == b"started\n"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 130
    proc.stdout.close()
    assert cli("ps", "-aq").out == ""
