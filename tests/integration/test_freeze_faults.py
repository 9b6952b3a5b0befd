"""SIGKILL of ``commit``, ``pause`` and ``unpause`` while they hold a container's freezer.

Each kill lands at a named moment (``PORTSIDE_FAULT``: the process kills itself there) or, for the
moment the commit is reading the container's files, from outside once the freezer is seen frozen.
After it, ONE ordinary command must be enough for everything to tell the truth again: ``ps`` and
``inspect`` agree with the kernel's freezer, ``exec`` works, and a retried ``commit`` succeeds and
holds the file the container was writing. See engine/runtime/freeze.py.
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

#: The container writes a large file while the commits run, then marks it complete. (``head -c``
#: reads until it has the count; ``dd bs=1M count=48`` counts a read the freezer cut short as a
#: whole block and wrote a shorter file.)
WRITER = f"head -c {48 << 20} /dev/urandom >/big && touch /done; exec sleep 600"


def _id(cli, name: str) -> str:
    return cli("inspect", "-f", "{{.Id}}", name).out.strip()


def _frozen(cid: str) -> bool:
    from portside.engine.runtime.cgroups import Cgroup, cgroup_path_for

    return Cgroup(cgroup_path_for(cid)).frozen()


def _state(cli, name: str) -> dict:
    return json.loads(cli("inspect", name).out)[0]["State"]


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def writer(cli, busybox_image):
    """A running container in the middle of writing /big (48 MB)."""
    cli("run", "-d", "--name", "cm", "busybox", "sh", "-c", WRITER)
    cid = _id(cli, "cm")
    upper = cli.root / "containers" / cid / "upper"
    _wait(lambda: (upper / "big").exists(), 10, "the container to start writing")
    yield cid
    cli("rm", "-f", "cm", check=False)


def _kill_commit_while_frozen(cli, cid: str) -> None:
    """Start a commit and SIGKILL it from outside once the container is seen frozen (the commit
    is then reading the upper dir). A commit too quick to be seen is undone and tried again."""
    from conftest import PORTSIDE  # type: ignore[import-not-found]

    for _attempt in range(5):
        proc = subprocess.Popen([PORTSIDE, "commit", "cm", "seen:1"], env=cli.env(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            while proc.poll() is None and not _frozen(cid):
                time.sleep(0.001)
            if proc.poll() is None:
                proc.kill()
                assert proc.wait(timeout=10) == -signal.SIGKILL
                assert _frozen(cid), "the commit was killed but the container was not frozen"
                return
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        cli("rmi", "seen:1")
    pytest.fail("never saw a commit freeze the container")


def _assert_running_truthfully(cli, cid: str) -> None:
    assert not _frozen(cid)
    state = _state(cli, "cm")
    assert (state["Status"], state["Running"], state["Paused"]) == ("running", True, False)
    row = cli("ps", "--format", "{{.Names}}|{{.State}}|{{.Status}}").out.strip()
    name, st, status = row.split("|")
    assert (name, st) == ("cm", "running") and status.startswith("Up") and "Paused" not in status
    assert not (cli.root / "containers" / cid / "freeze").exists()


@pytest.mark.parametrize("moment, first", [
    ("commit-traced", "ps"),              # before the pause: trace written, nothing frozen yet
    ("commit-frozen", "inspect"),         # frozen, nothing read yet
    ("reading", "exec"),                  # frozen, reading the upper dir (killed from outside)
    ("commit-thawed", "ps"),              # thawed again, the trace not yet removed
    ("commit-layer-written", "commit"),   # after the pause: trace gone, layer spooled
])
def test_a_killed_commit_is_settled_by_the_next_command(cli, writer, moment, first):
    cid = writer
    if moment == "reading":
        _kill_commit_while_frozen(cli, cid)
    else:
        killed = cli("commit", "cm", "half:1", env={"PORTSIDE_FAULT": moment}, check=False)
        assert killed.returncode == -signal.SIGKILL
        if moment == "commit-frozen":
            assert _frozen(cid)   # what the issue saw: frozen, and the record says running
    # one ordinary command
    if first == "ps":
        out = cli("ps", "--format", "{{.Names}} {{.Status}}").out
        assert out.startswith("cm Up") and "Paused" not in out
    elif first == "inspect":
        assert _state(cli, "cm")["Paused"] is False
    elif first == "exec":
        assert cli("exec", "cm", "echo", "alive").out == "alive\n"
    else:
        cli("commit", "cm", "first:1")
    _assert_running_truthfully(cli, cid)
    assert cli("exec", "cm", "echo", "alive").out == "alive\n"
    assert "half" not in cli("images").out
    # the retried commit, once the file is complete, holds it
    _wait(lambda: (cli.root / "containers" / cid / "upper" / "done").exists(), 60,
          "the container to finish writing /big")
    cli("commit", "cm", "whole:1")
    _assert_running_truthfully(cli, cid)
    want = cli("exec", "cm", "md5sum", "/big").out.split()[0]
    got = cli("run", "--rm", "whole:1", "sh", "-c", "md5sum /big; stat -c %s /big").out.split()
    assert got[0] == want and got[-1] == str(48 << 20)


def test_a_pause_killed_after_freezing_is_shown_paused_and_unpauses(cli, writer):
    cid = writer
    killed = cli("pause", "cm", env={"PORTSIDE_FAULT": "pause-frozen"}, check=False)
    assert killed.returncode == -signal.SIGKILL and _frozen(cid)
    # the user asked for a pause and has one: the record now says so
    assert "(Paused)" in cli("ps", "--format", "{{.Status}}").out
    state = _state(cli, "cm")
    assert (state["Status"], state["Paused"]) == ("paused", True)
    refused = cli("exec", "cm", "true", check=False)
    assert refused.returncode == 125 and "paused" in refused.err
    cli("unpause", "cm")
    _assert_running_truthfully(cli, cid)
    cli("exec", "cm", "true")


def test_a_pause_killed_before_freezing_leaves_it_running(cli, writer):
    cid = writer
    killed = cli("pause", "cm", env={"PORTSIDE_FAULT": "pause-traced"}, check=False)
    assert killed.returncode == -signal.SIGKILL and not _frozen(cid)
    refused = cli("unpause", "cm", check=False)
    assert refused.returncode == 1 and "is not paused" in refused.err  # docker: 1 per verb
    _assert_running_truthfully(cli, cid)
    cli("pause", "cm")
    assert _frozen(cid) and _state(cli, "cm")["Paused"] is True
    cli("unpause", "cm")
    _assert_running_truthfully(cli, cid)


def test_an_unpause_killed_after_thawing_is_shown_running(cli, writer):
    cid = writer
    cli("pause", "cm")
    killed = cli("unpause", "cm", env={"PORTSIDE_FAULT": "unpause-thawed"}, check=False)
    assert killed.returncode == -signal.SIGKILL and not _frozen(cid)
    assert cli("exec", "cm", "echo", "alive").out == "alive\n"
    _assert_running_truthfully(cli, cid)
    refused = cli("unpause", "cm", check=False)
    assert refused.returncode == 1 and "is not paused" in refused.err  # docker: 1 per verb
    cli("pause", "cm")
    assert "(Paused)" in cli("ps", "--format", "{{.Status}}").out and _frozen(cid)
    cli("unpause", "cm")


def test_commit_of_a_paused_container_leaves_it_paused(cli, writer):
    cid = writer
    cli("pause", "cm")
    cli("commit", "cm", "frozen:1")
    assert _frozen(cid) and _state(cli, "cm")["Paused"] is True
    assert "(Paused)" in cli("ps", "--format", "{{.Status}}").out
    cli("unpause", "cm")
    _assert_running_truthfully(cli, cid)


def test_a_paused_record_that_the_freezer_contradicts_is_corrected(cli, writer):
    """Something outside portside thawed a paused container (the runtime by hand): readers see
    the freezer, not the stale record."""
    cid = writer
    cli("pause", "cm")
    from portside.engine.runtime.cgroups import Cgroup, cgroup_path_for

    Cgroup(cgroup_path_for(cid)).thaw()
    out = cli("ps", "--format", "{{.Status}}").out
    assert out.startswith("Up") and "Paused" not in out
    _assert_running_truthfully(cli, cid)
