"""``update``: new limits and restart policies for created and running containers, shown by
``inspect`` and effective in the container's cgroup, and Docker's errors for bad combinations."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not shutil.which("runc"), reason="runc not installed"),
]

MiB = 1024 * 1024


def _host_config(cli, name):
    return json.loads(cli("inspect", name).out)[0]["HostConfig"]


def _cgroup(cli, name) -> dict[str, str]:
    """The limits the kernel holds for the container, read from its cgroup files."""
    from portside.engine.runtime.cgroups import Cgroup, CgroupLayout, cgroup_path_for

    cg = Cgroup(cgroup_path_for(json.loads(cli("inspect", name).out)[0]["Id"]))

    def read(controller, v1, v2):
        if cg.layout == CgroupLayout.V2:
            return (cg.dir() / v2).read_text().strip()
        return (cg.dir(controller) / v1).read_text().strip()

    return {"v2": cg.layout == CgroupLayout.V2,
            "memory": read("memory", "memory.limit_in_bytes", "memory.max"),
            "swap": read("memory", "memory.memsw.limit_in_bytes", "memory.swap.max"),
            "quota": read("cpu", "cpu.cfs_quota_us", "cpu.max").split()[0],
            "shares": read("cpu", "cpu.shares", "cpu.weight"),
            "pids": read("pids", "pids.max", "pids.max")}


def _wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_update_a_running_container_reaches_its_cgroup(ctr):
    ctr("run", "-d", "--name", "up", "--network", "none", "busybox", "sleep", "60")
    before = _cgroup(ctr, "up")
    assert before["pids"] == "max"
    out = ctr("update", "--memory", "32m", "--memory-swap", "64m", "--cpus", "0.25",
              "--cpu-shares", "256", "--pids-limit", "20", "up").out
    assert out == "up\n"
    hc = _host_config(ctr, "up")
    assert (hc["Memory"], hc["MemorySwap"], hc["NanoCpus"], hc["CpuShares"], hc["PidsLimit"]) \
        == (32 * MiB, 64 * MiB, 250_000_000, 256, 20)
    now = _cgroup(ctr, "up")
    assert now["memory"] == str(32 * MiB) and now["pids"] == "20"
    assert now["swap"] == str(32 * MiB if now["v2"] else 64 * MiB)  # v2 counts swap alone
    assert now["quota"] == "25000"
    # the limit is real: a 21st task cannot start
    proc = ctr("exec", "up", "sh", "-c", "for i in $(seq 30); do sleep 1 & done; wait",
               check=False)
    assert proc.returncode != 0 and "fork" in proc.err.lower() + proc.out.lower()
    # raising memory alone above the swap limit is refused, as Docker refuses it
    proc = ctr("update", "--memory", "100m", "up", check=False)
    assert proc.returncode == 1
    assert proc.err.strip().splitlines() == [
        f"Error: Cannot update container {json.loads(ctr('inspect', 'up').out)[0]['Id']}: "
        "Memory limit should be smaller than already set memoryswap limit, update the "
        "memoryswap at the same time"]
    assert _cgroup(ctr, "up")["memory"] == str(32 * MiB)
    # a paused container is updated too
    ctr("pause", "up")
    ctr("update", "--pids-limit", "-1", "up")
    assert _cgroup(ctr, "up")["pids"] == "max" and _host_config(ctr, "up")["PidsLimit"] == -1
    ctr("unpause", "up")


def test_update_of_a_created_container_is_used_when_it_starts(ctr):
    ctr("create", "--name", "later", "--network", "none", "busybox", "sleep", "60")
    ctr("update", "-m", "48m", "--memory-swap", "-1", "-c", "512", "--pids-limit", "30",
        "--restart", "on-failure:2", "later")
    hc = _host_config(ctr, "later")
    assert (hc["Memory"], hc["MemorySwap"], hc["CpuShares"], hc["PidsLimit"]) == \
        (48 * MiB, -1, 512, 30)
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    ctr("start", "later")
    now = _cgroup(ctr, "later")
    assert (now["memory"], now["pids"]) == (str(48 * MiB), "30")
    assert now["shares"] == ("20" if now["v2"] else "512")  # v2: the weight of 512 shares


def test_run_memory_gets_dockers_default_swap(ctr):
    ctr("run", "-d", "--name", "mem", "--network", "none", "-m", "40m", "busybox", "sleep", "60")
    assert _host_config(ctr, "mem")["MemorySwap"] == 80 * MiB
    now = _cgroup(ctr, "mem")
    assert (now["memory"], now["swap"]) == (str(40 * MiB), str(40 * MiB if now["v2"] else 80 * MiB))


def test_updated_restart_policy_applies_to_the_next_exit(ctr):
    ctr("run", "-d", "--name", "rs", "--network", "none", "busybox", "sh", "-c",
        "sleep 1; exit 3")
    ctr("update", "--restart", "on-failure:2", "rs")
    assert _wait_for(lambda: ctr("inspect", "-f", "{{.RestartCount}} {{.State.Status}}",
                                 "rs").out.split() == ["2", "exited"], 30)


@pytest.mark.parametrize("flags, code, message", [
    ([], 125, "you must provide one or more flags when using this command"),
    (["--restart", "sometimes"], 125, "invalid restart policy format: sometimes"),
    (["--memory", "1m"], 1, "Minimum memory limit allowed is 6MB"),
    (["--memory", "64m", "--memory-swap", "32m"], 1,
     "Minimum memoryswap limit should be larger than memory limit, see usage"),
    (["--cpus", "4096"], 1, "Range of CPUs is from 0.01 to "),
    (["--restart", "always"], 1,
     "Restart policy cannot be updated because AutoRemove is enabled for the container"),
    (["--memory-swap", "64m"], 1, "You should always set the Memory limit when using Memoryswap "
                                  "limit, see usage"),
])
def test_bad_updates_are_refused_with_dockers_messages(ctr, flags, code, message):
    # options that do not parse stop the command (125); a container the update cannot apply to
    # is one line and exit status 1 (the others are still updated, as Docker does)
    ctr("create", "--rm", "--name", "bad", "busybox", "true")
    before = _host_config(ctr, "bad")
    proc = ctr("update", *flags, "bad", check=False)
    assert proc.returncode == code and len(proc.err.strip().splitlines()) == 1
    assert message in proc.err
    assert _host_config(ctr, "bad") == before


def test_create_refuses_what_docker_refuses(ctr):
    proc = ctr("create", "--memory-swap", "64m", "busybox", "true", check=False)
    assert proc.returncode == 125
    assert proc.err.strip() == ("Error: You should always set the Memory limit when using "
                                "Memoryswap limit, see usage")
    assert ctr("ps", "-aq").out == ""
