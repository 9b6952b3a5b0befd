"""Faults: SIGKILL of the monitor, of the CLI at every step of ``run`` (detached and in the
foreground) and of ``commit``, and at random moments of ``run``.

After each, one ordinary command (``ps -a``) must tell the truth and settle what the killed
process left: a container nobody runs holds no mount, network namespace, address lease, nft rule,
cgroup, runtime state or process. ``rm -f`` then cleans everything, and the autouse
``host_unchanged`` fixture proves no mount, cgroup or process is left.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PORTSIDE
from leftover_checks import assert_store_clean, mounts_under, query, unfinished_work

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not shutil.which("runc"), reason="runc not installed"),
]

RUN_POINTS = ["create-recorded", "start-mounted", "start-network", "start-bundle",
              "start-handed-over"]


def _killed(proc) -> None:
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.err)


def _holds(root: Path, cid: str) -> dict[str, object]:
    """What of the host a container holds: each kind is absent when it holds none."""
    found: dict[str, object] = {}
    if mounts_under(root / "containers" / cid):
        found["mounts"] = mounts_under(root / "containers" / cid)
    if Path(f"/run/netns/portside-{cid[:12]}").exists():
        found["netns"] = cid[:12]
    if query(root, f"SELECT ip FROM net_leases WHERE container_id = '{cid}'"):
        found["ipam"] = True
    if query(root, f"SELECT 1 FROM net_sandboxes WHERE container_id = '{cid}'"):
        found["sandbox"] = True
    rules = subprocess.run(["nft", "list", "table", "inet", "portside"], capture_output=True,
                           text=True).stdout
    if f"ctr={cid}" in rules:
        found["nft"] = True
    cgroups = [p for p in Path("/sys/fs/cgroup").glob(f"*/portside/{cid}")]
    cgroups += [p for p in [Path("/sys/fs/cgroup/portside") / cid] if p.exists()]
    if cgroups:
        found["cgroups"] = cgroups
    if (root / "run" / "runtime" / cid).exists():
        found["runtime"] = True
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if cid.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found["process"] = pid
        except OSError:
            pass
    return found


def _wait(predicate, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


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


def test_sigkill_of_monitor_after_the_container_died(cli, busybox_image, portside_root):
    cid = cli("run", "-d", "--name", "gone", "-p", "127.0.0.1::80", "busybox", "sleep",
              "300").out.strip()
    pid = _monitor_pid(cli, "gone")
    os.kill(pid, signal.SIGKILL)
    init = _inspect(cli, "gone")["State"]["Pid"]
    assert {"mounts", "netns", "ipam", "nft", "cgroups"} <= set(_holds(portside_root, cid))
    os.kill(init, signal.SIGKILL)
    assert _wait(lambda: not Path(f"/proc/{init}").exists())
    # the next command that looks at it finalises it: exited, and nothing of it is left
    assert "Exited (255)" in cli("ps", "-a").out
    assert _holds(portside_root, cid) == {}
    state = _inspect(cli, "gone")["State"]
    assert state["Status"] == "exited" and state["Running"] is False
    cli("rm", "-f", "gone")
    assert_store_clean(cli, portside_root)


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


@pytest.mark.parametrize("point", ["commit-layer-written", "layer-blob-written",
                                   "layer-unpacked", "commit-layer-ingested",
                                   "image-before-record"])
def test_sigkill_mid_commit_leaves_no_half_image_and_nothing_unfinished(cli, busybox_image,
                                                                        portside_root, point):
    cli("run", "-d", "--name", "src", "busybox", "sh", "-c", "echo x > /f; sleep 300")
    before = cli("images", "-q").out
    _killed(cli("commit", "src", "half:1", env={"PORTSIDE_FAULT": point}, check=False))
    # one ordinary command: no half image, nothing of the commit left
    assert cli("images", "-q").out == before
    assert unfinished_work(portside_root) == {}
    check = cli("system", "check", check=False)
    assert (check.returncode, check.out) == (0, "store is consistent\n"), check.out
    state = _inspect(cli, "src")["State"]
    assert state["Status"] in ("running", "paused")
    cli("rm", "-f", "src")
    assert cli("ps", "-aq").out == ""
    assert_store_clean(cli, portside_root)


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


# ------------------------------------------------------------------------ run, killed mid-way


def _container_id(cli, name: str) -> str:
    return cli("ps", "-aq", "--no-trunc", "--filter", f"name=^{name}$").out.strip()


@pytest.mark.parametrize("detach", [True, False], ids=["detached", "foreground"])
@pytest.mark.parametrize("point", RUN_POINTS)
def test_sigkill_during_run_is_settled_by_the_next_command(cli, busybox_image, portside_root,
                                                           point, detach):
    args = ["run", *(["-d"] if detach else []), "--name", "kk", "-p", "127.0.0.1::80",
            "busybox", "sleep", "300"]
    _killed(cli(*args, check=False, env={"PORTSIDE_FAULT": point}))
    status = cli("ps", "-a", "--format", "{{.Status}}").out  # one ordinary command
    cid = _container_id(cli, "kk")
    state = _inspect(cli, "kk")["State"]
    if point == "start-handed-over":
        # its monitor runs it: the start went through, only its record was not saved
        assert status.startswith("Up "), status
        assert state["Running"] and state["Pid"] > 0
        port = _inspect(cli, "kk")["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
        assert cli("port", "kk").out.strip() == f"80/tcp -> 127.0.0.1:{port}"
        assert {"mounts", "netns", "nft", "cgroups"} <= set(_holds(portside_root, cid))
    elif point == "create-recorded":
        assert status.startswith("Created"), status  # it was never started (as Docker's)
        assert _holds(portside_root, cid) == {}
        # the monitor launched ahead saw its caller die: it left, and took its folder along
        from portside.engine.runtime.containers import ContainerPaths

        assert _wait(lambda: not ContainerPaths(portside_root, cid).state_dir.exists())
    else:
        assert status.startswith("Exited (128)"), status
        assert state["Status"] == "exited" and "start interrupted" in state["Error"]
        assert _holds(portside_root, cid) == {}
    # and it can be started again, or removed, as any container
    if point != "start-handed-over":
        cli("start", "kk")
        assert _inspect(cli, "kk")["State"]["Running"]
    cli("rm", "-f", "kk")
    assert _holds(portside_root, cid) == {}
    assert_store_clean(cli, portside_root)


@pytest.mark.parametrize("point", ["start-network", "start-handed-over"])
def test_sigkill_during_run_rm_removes_the_container(cli, busybox_image, portside_root, point):
    _killed(cli("run", "-d", "--rm", "--name", "gone", "busybox", "true", check=False,
                env={"PORTSIDE_FAULT": point}))
    # settled by the next look (never ran) or by its monitor once it exited (it ran)
    assert _wait(lambda: cli("ps", "-aq").out == "")
    assert_store_clean(cli, portside_root)


def test_sigkill_while_create_seeds_a_volume_removes_the_half_made_container(
        cli, busybox_image, portside_root):
    _killed(cli("run", "-d", "--name", "seed", "-v", "data:/etc", "busybox", "sleep", "300",
                check=False, env={"PORTSIDE_FAULT": "create-seeding"}))
    assert mounts_under(portside_root / "containers")
    assert cli("ps", "-aq").out == ""  # one ordinary command: gone, as a failed create's
    assert mounts_under(portside_root) == []
    cli("volume", "rm", "-f", "data", check=False)
    assert_store_clean(cli, portside_root)


def test_a_live_start_is_left_alone(cli, busybox_image, portside_root):
    proc = subprocess.Popen([PORTSIDE, "run", "-d", "--name", "slow", "-p", "127.0.0.1::80",
                             "busybox", "sleep", "300"],
                            env=cli.env(PORTSIDE_FAULT="start-network:stop"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert _wait(lambda: Path(f"/proc/{proc.pid}/stat").read_text()
                     .rpartition(")")[2].split()[0] == "T")
        cid = _container_id(cli, "slow")
        # readers, a check and a repair while it is stopped half-way through its start
        assert cli("ps", "-a", "--format", "{{.Status}}").out.startswith("Created")
        cli("system", "check")
        cli("system", "check", "--repair")
        assert {"mounts", "netns", "ipam", "nft"} <= set(_holds(portside_root, cid))
    finally:
        proc.send_signal(signal.SIGCONT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert _inspect(cli, "slow")["State"]["Running"]
    cli("rm", "-f", "slow")
    assert _holds(portside_root, cid) == {}


def test_sigkill_at_random_moments_of_run(cli, busybox_image, portside_root):
    rng = random.Random(23)
    env = cli.env()
    for i in range(8):
        detach = i % 2 == 0
        argv = [PORTSIDE, "run", *(["-d"] if detach else []), "--name", f"r{i}", "-p",
                "127.0.0.1::80", "busybox", "sleep", "300"]
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 0.6))
        proc.kill()
        proc.wait(timeout=30)
        # one ordinary command later, a container is either running (and holds its things)
        # or holds nothing at all
        rows = cli("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Status}}").out.splitlines()
        for row in rows:
            cid, status = row.split(" ", 1)
            if not status.startswith("Up "):
                assert _holds(portside_root, cid) == {}, (i, status)
        assert unfinished_work(portside_root) == {}
    ids = cli("ps", "-aq", "--no-trunc").out.split()
    if ids:
        cli("rm", "-f", *ids)
    for cid in ids:
        assert _holds(portside_root, cid) == {}
    assert_store_clean(cli, portside_root)
