"""``--init``: the host's tini as the container's PID 1, as ``docker run --init`` does.

The pattern the README and the quickstart teach, ``run -d IMG sleep infinity``, makes ``sleep``
PID 1, which the kernel shields from SIGTERM: ``stop`` then waits out its whole timeout. With
``--init`` tini is PID 1, forwards the signal (``sleep`` dies of it at once) and reaps orphans.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]


def test_init_is_pid_1_and_stop_returns_at_once(ctr):
    assert shutil.which("tini-static") or shutil.which("tini"), "Debian's tini is installed"
    ctr("run", "-d", "--init", "--name", "sleeper", "busybox", "sleep", "infinity")
    pid1 = ctr("exec", "sleeper", "cat", "/proc/1/cmdline").out.split("\0")
    assert pid1[:4] == ["/sbin/docker-init", "--", "sleep", "infinity"]
    assert ctr("inspect", "-f", "{{.HostConfig.Init}}", "sleeper").out.strip() == "true"
    started = time.monotonic()
    ctr("stop", "sleeper")                     # the default 10 s timeout
    took = time.monotonic() - started
    assert took < 3, f"stop took {took:.1f}s: the SIGTERM did not reach sleep"
    # tini exits as its child did: killed by SIGTERM, 128 + 15 (Docker says 143 too)
    assert ctr("inspect", "-f", "{{.State.ExitCode}}", "sleeper").out.strip() == "143"
    # the init's mount point is the engine's, not a change the user made
    assert "docker-init" not in ctr("diff", "sleeper").out


def _usleeps(ctr, name):
    out = ctr("exec", name, "ps", "-o", "stat,comm").out
    return [line.split()[0] for line in out.splitlines()[1:] if line.split()[-1:] == ["usleep"]]


def test_init_reaps_orphans(ctr):
    # the inner shell leaves a child behind, re-parented to PID 1; then PID 1 becomes `sleep`,
    # which never waits: only an init reaps the orphan when it ends
    script = "sh -c 'usleep 200000 &'; exec sleep 30"
    ctr("run", "-d", "--init", "--name", "reaper", "busybox", "sh", "-c", script)
    deadline = time.monotonic() + 5
    while (states := _usleeps(ctr, "reaper")) and not states[0].startswith("Z"):
        assert time.monotonic() < deadline, "the orphan never ended"
        time.sleep(0.1)
    assert states == [], f"the orphan is a zombie: {states}"


def test_without_tini_init_is_refused_in_one_line(ctr, tmp_path):
    proc = ctr("run", "--rm", "--init", "busybox", "true", check=False,
               env={"PORTSIDE_INIT_PATH": str(tmp_path / "missing")})
    assert proc.returncode == 125
    assert proc.err.count("\n") == 1 and "--init" in proc.err
