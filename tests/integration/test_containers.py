"""A Docker user's daily container commands, end to end, through the real ``portside`` CLI.

Every test runs real containers (runc, overlayfs, the monitor) on a fresh store and removes them;
the autouse ``host_unchanged`` fixture proves no mount, cgroup or process is left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not shutil.which("runc"), reason="runc not installed"),
]

LOOP = "trap 'echo bye; exit 0' TERM; i=0; while true; do echo line $i; i=$((i+1)); sleep 0.1; done"


def _wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_daily_commands(ctr, tmp_path):
    cid = ctr("run", "-d", "--name", "web", "--hostname", "h", "busybox", "sh", "-c", LOOP).out.strip()
    assert len(cid) == 64
    assert _wait_for(lambda: "line 12" in ctr("logs", "web").out)
    tail = ctr("logs", "--tail", "10", "web").out.splitlines()
    assert len(tail) == 10 and all(line.startswith("line ") for line in tail)
    ps = ctr("ps").out.splitlines()
    assert ps[0].split() [:3] == ["CONTAINER", "ID", "IMAGE"]
    assert "web" in ps[1] and "Up " in ps[1] and cid[:12] in ps[1]
    top = ctr("top", "web").out
    assert "PID" in top and "sleep" in top
    doc = json.loads(ctr("inspect", "web").out)[0]
    assert doc["Id"] == cid and doc["Name"] == "/web" and doc["State"]["Running"] is True
    assert doc["Config"]["Hostname"] == "h" and doc["GraphDriver"]["Name"] == "overlay"
    assert doc["State"]["Pid"] > 0 and doc["HostConfig"]["NetworkMode"] == "default"
    assert ctr("exec", "web", "hostname").out.strip() == "h"
    assert ctr("exec", "web", "sh", "-c", "exit 3", check=False).returncode == 3
    # stop: the trap answers SIGTERM at once, and its output is logged
    t0 = time.monotonic()
    ctr("stop", "web")
    assert time.monotonic() - t0 < 5
    assert ctr("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "web").out.split() == ["exited", "0"]
    assert "bye" in ctr("logs", "--tail", "3", "web").out
    assert "Exited (0)" in ctr("ps", "-a").out
    ctr("start", "web")
    assert ctr("inspect", "-f", "{{.State.Status}}", "web").out.strip() == "running"
    ctr("restart", "-t", "2", "web")
    assert ctr("inspect", "-f", "{{.State.Status}}", "web").out.strip() == "running"
    ctr("pause", "web")
    assert "(Paused)" in ctr("ps").out
    ctr("unpause", "web")
    ctr("kill", "web")
    assert _wait_for(lambda: ctr("inspect", "-f", "{{.State.ExitCode}}", "web").out.strip() == "137")
    # cp out of the container
    ctr("start", "web")
    ctr("cp", "web:/etc/hostname", str(tmp_path))
    assert (tmp_path / "hostname").read_text() == "h\n"
    # commit then run the committed image
    ctr("exec", "web", "sh", "-c", "echo committed > /made")
    image_id = ctr("commit", "-a", "author", "-m", "message", "web", "img:tag").out.strip()
    assert image_id.startswith("sha256:")
    hist = json.loads(ctr("image", "inspect", "img:tag").out)[0]
    assert hist["Author"] == "author"
    assert ctr("run", "--rm", "img:tag", "cat", "/made").out == "committed\n"
    ctr("rm", "-f", "web")
    assert "web" not in ctr("ps", "-a").out


@pytest.mark.parametrize("cmd,code", [
    (["true"], 0), (["false"], 1), (["sh", "-c", "exit 32"], 32), (["nosuchcommand"], 127),
    (["/etc/passwd"], 126),
])
def test_exit_codes(ctr, cmd, code):
    proc = ctr("run", "--rm", "busybox", *cmd, check=False)
    assert proc.returncode == code, proc.err
    assert ctr("ps", "-aq").out == ""


def test_exec_exit_codes_are_dockers(ctr):
    ctr("run", "-d", "--name", "codes", "--network", "none", "busybox", "sleep", "60")
    for cmd, code in ((["true"], 0), (["sh", "-c", "exit 32"], 32), (["sh", "-c", "exit 255"], 255),
                      (["nosuchcommand"], 127), (["./nope"], 127), (["/etc/passwd"], 126),
                      (["/bin"], 126)):
        proc = ctr("exec", "codes", *cmd, check=False)
        assert proc.returncode == code, (cmd, proc.err)
    # the docker-py shaped API says the same
    from portside.engine.api import Engine

    engine = Engine(root=ctr.root)
    try:
        assert engine.containers.get("codes").exec_run(["nosuchcommand"])[0] == 127
    finally:
        engine.close()
    ctr("rm", "-f", "codes")


def test_stop_of_sigterm_ignoring_container_ends_in_137(ctr):
    ctr("run", "-d", "--name", "stubborn", "busybox", "sh", "-c",
        "trap '' TERM; while true; do sleep 0.1; done")
    t0 = time.monotonic()
    ctr("stop", "-t", "1", "stubborn")
    elapsed = time.monotonic() - t0
    assert 1 <= elapsed < 8
    assert ctr("inspect", "-f", "{{.State.ExitCode}}", "stubborn").out.strip() == "137"
    assert "Exited (137)" in ctr("ps", "-a").out


def test_logs_big_output_partial_line_and_follow(ctr):
    # 50 MB through the log: nothing truncated, nothing hangs.
    proc = ctr("run", "--name", "big", "busybox", "sh", "-c",
               "yes 0123456789012345678901234567890123456789012345678 | head -c 52428800",
               timeout=120)
    assert len(proc.stdout) == 52428800
    out = ctr("logs", "big", timeout=120).stdout
    assert len(out) == 52428800
    # A line with no trailing newline is kept.
    assert ctr("run", "busybox", "printf", "no-newline").out == "no-newline"
    # -f follows until the container exits.
    ctr("run", "-d", "--name", "slow", "busybox", "sh", "-c",
        "for i in 1 2 3; do echo tick $i; sleep 0.3; done")
    followed = ctr("logs", "-f", "slow", timeout=30).out
    assert followed.splitlines() == ["tick 1", "tick 2", "tick 3"]


def test_ps_filters_quiet_and_format(ctr):
    ctr("create", "--name", "c1", "-l", "team=a", "busybox", "true")
    ctr("run", "-d", "--name", "r1", "busybox", "sleep", "30")
    assert ctr("ps", "-q").out.split() == [ctr("ps", "-q", "-f", "name=r1").out.strip()]
    assert ctr("ps", "-a", "--filter", "status=created", "--format", "{{.Names}}").out == "c1\n"
    assert ctr("ps", "-a", "--filter", "label=team=a", "--format", "{{.Names}}").out == "c1\n"
    assert ctr("ps", "-a", "--filter", "ancestor=busybox", "-q").out.count("\n") == 2
    assert "Created" in ctr("ps", "-a", "-f", "name=c1").out
    assert ctr("ps", "-n", "1", "--format", "{{.Names}}").out == "r1\n"
    # The shell idiom: rm -f $(ps -aq)
    ids = ctr("ps", "-aq").out.split()
    ctr("rm", "-f", *ids)
    assert ctr("ps", "-aq").out == ""


def test_name_conflict_rename_and_errors(ctr):
    ctr("create", "--name", "aa", "busybox", "true")
    dup = ctr("create", "--name", "aa", "busybox", "true", check=False)
    assert dup.returncode == 125 and "already in use" in dup.err
    ctr("rename", "aa", "bb")
    assert ctr("ps", "-a", "--format", "{{.Names}}").out == "bb\n"
    assert ctr("stop", "nosuch", check=False).returncode != 0
    assert ctr("run", "nosuchimage", check=False).returncode == 125
    bad = ctr("kill", "bb", check=False)
    assert bad.returncode != 0 and "not running" in bad.err


def test_a_run_that_fails_before_starting_leaves_no_monitor_behind(ctr, portside_root, engine):
    """run launches the container's monitor first; a run that fails before the start (no such
    image, a name in use) stops it and removes its folder (host_unchanged checks processes)."""
    from portside.engine.errors import Conflict, NotFound
    from portside.engine.runtime.containers import run_dir_for

    def monitor_folders() -> list[str]:  # run/<id12>/: a started container's monitor files
        run_dir = run_dir_for(portside_root)
        return sorted(p.name for p in run_dir.iterdir() if len(p.name) == 12) \
            if run_dir.is_dir() else []

    ctr("create", "--name", "taken", "busybox", "true")
    assert monitor_folders() == []
    assert ctr("run", "--rm", "nosuchimage", check=False).returncode == 125
    assert ctr("run", "--name", "taken", "busybox", "true", check=False).returncode == 125
    with pytest.raises(NotFound):
        engine.containers.run("nosuchimage", ["true"], remove=True)
    with pytest.raises(Conflict):
        engine.containers.run("busybox", ["true"], name="taken", detach=True)
    assert monitor_folders() == []
    assert engine.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2"],
                                 remove=True, network_mode="none") == b"out\n"
    assert [c.name for c in engine.containers.list(all=True)] == ["taken"]


def test_env_workdir_user_entrypoint(ctr):
    out = ctr("run", "--rm", "-e", "A=1", "-w", "/tmp", "-u", "1000:1000", "busybox", "sh", "-c",
              "echo $A $(pwd) $(id -u):$(id -g)").out
    assert out.strip() == "1 /tmp 1000:1000"
    assert ctr("run", "--rm", "--entrypoint", "echo", "busybox", "x", "-l").out == "x -l\n"


def test_readonly_bind_mount_refuses_writes(ctr, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("host\n")
    proc = ctr("run", "--rm", "-v", f"{data}:/ctn:ro", "busybox", "sh", "-c",
               "cat /ctn/f; echo x > /ctn/g", check=False)
    assert proc.returncode != 0 and "host" in proc.out
    assert not (data / "g").exists()
    ctr("run", "--rm", "-v", f"{data}:/ctn", "busybox", "sh", "-c", "echo x > /ctn/g")
    assert (data / "g").read_text() == "x\n"


def test_named_volume_persists_across_containers(ctr):
    pytest.importorskip("portside.engine.volumes.manager")
    ctr("run", "--rm", "-v", "data:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    assert ctr("run", "--rm", "-v", "data:/data", "busybox", "cat", "/data/f").out == "kept\n"


def test_diff_export_and_restart_policy(ctr, tmp_path):
    ctr("run", "--name", "dd", "busybox", "sh", "-c", "echo x > /added; rm /etc/group")
    diff = ctr("diff", "dd").out.splitlines()
    assert "A /added" in diff and "D /etc/group" in diff
    ctr("export", "-o", str(tmp_path / "fs.tar"), "dd")
    import tarfile

    with tarfile.open(tmp_path / "fs.tar") as tf:
        names = tf.getnames()
    assert "added" in names and "etc/group" not in names
    ctr("run", "-d", "--name", "rp", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 3")
    assert _wait_for(lambda: ctr("inspect", "-f", "{{.RestartCount}} {{.State.Status}}",
                                 "rp").out.split() == ["2", "exited"], 20), \
        ctr("inspect", "-f", "{{.RestartCount}} {{.State.Status}} {{.State.Error}}", "rp").out


def test_tty_and_stdin(ctr):
    out = ctr("run", "--rm", "-i", "busybox", "sh", "-c", "read x; echo got $x",
              input=b"hello\n").out
    assert out == "got hello\n"
    proc = ctr("run", "--rm", "-t", "busybox", "sh", "-c", "tty >/dev/null && echo is-a-tty")
    assert proc.returncode == 0
    # a container that prints and exits at once: nothing is lost before the attach
    for _ in range(5):
        assert ctr("run", "--rm", "-t", "busybox", "echo", "first").out.strip() == "first"


def test_run_with_standard_input_closed(ctr):
    # `portside run ... <&-` (cron, some CI runners): no stdin at all is not an engine error
    import subprocess

    from conftest import PORTSIDE  # type: ignore[import-not-found]

    proc = subprocess.run(["sh", "-c", 'exec "$@" <&-', "sh", PORTSIDE, "run", "--rm",
                           "--network", "none", "busybox", "echo", "no stdin"],
                          capture_output=True, env=ctr.env(), timeout=60)
    assert (proc.returncode, proc.stdout) == (0, b"no stdin\n"), proc.stderr


def test_run_detached_outlives_the_cli_and_container_prune(ctr):
    ctr("run", "-d", "--name", "bg", "busybox", "sleep", "30")
    time.sleep(0.3)
    assert ctr("inspect", "-f", "{{.State.Running}}", "bg").out.strip() == "true"
    ctr("run", "--name", "done", "busybox", "true")
    pruned = ctr("container", "prune", "-f").out
    assert "Deleted Containers" in pruned
    assert ctr("ps", "-a", "--format", "{{.Names}}").out == "bg\n"
    assert "bg" in ctr("container", "ls").out


def test_wait_reports_the_status_of_a_container_removed_by_rm(ctr):
    ctr("run", "-d", "--rm", "--name", "quick", "busybox", "sh", "-c", "sleep 1; exit 3")
    assert ctr("wait", "quick").out.strip() == "3"
    assert ctr("ps", "-aq").out == ""



def test_restart_from_elsewhere_does_not_undo_a_foreground_run(ctr, portside_root):
    # A foreground `run` waits for its container, then cleans up after it. When `restart` from
    # another terminal ends that run and starts a new one before the foreground gets there, the
    # new run is not the foreground's to clean up: it keeps running, mounted.
    from portside.engine.api import Engine

    fg_engine, other = Engine(root=portside_root), Engine(root=portside_root)
    try:
        fg = fg_engine.lifecycle
        rec = fg.create({"Image": "busybox", "Cmd": ["sleep", "60"]}, {}, name="fg")
        rec = fg.start(rec.id, watched=True)         # what `portside run` (no -d) does
        other.containers.get("fg").restart(timeout=0)  # the other terminal, done first
        code = fg.finish_foreground(rec)           # the foreground sees its run's end
        assert code == 137
        doc = json.loads(ctr("inspect", "fg").out)[0]
        assert doc["State"]["Running"] is True and doc["State"]["Pid"] != rec.state["Pid"]
        assert os.path.ismount(fg.paths(rec).rootfs)   # the new run's root filesystem stays
        assert ctr("exec", "fg", "true").returncode == 0
    finally:
        fg_engine.close()
        other.close()
    ctr("rm", "-f", "fg")


def test_a_restarted_run_that_ends_at_once_cleans_up_after_itself(ctr, portside_root):
    # the foreground of the first run still holds its watch when the second run (started by a
    # restart elsewhere) exits: that run's monitor must not leave its cleanup to the foreground
    from portside.engine.api import Engine

    script = "test -e /ran && exit 3; touch /ran; sleep 60"
    fg_engine, other = Engine(root=portside_root), Engine(root=portside_root)
    try:
        fg = fg_engine.lifecycle
        rec = fg.create({"Image": "busybox", "Cmd": ["sh", "-c", script]}, {}, name="fg2")
        rec = fg.start(rec.id, watched=True)
        other.containers.get("fg2").restart(timeout=0)
        paths = fg.paths(rec)
        # no command here: each would refresh the record and clean up in the monitor's place
        assert _wait_for(paths.exit_file.exists, timeout=20)
        assert _wait_for(lambda: not os.path.ismount(paths.rootfs), timeout=20)
        assert fg.finish_foreground(rec) == 137
        assert ctr("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}",
                   "fg2").out.split() == ["exited", "3"]
    finally:
        fg_engine.close()
        other.close()
    ctr("rm", "-f", "fg2")


def test_etc_mtab_comes_from_dockers_init_layer(ctr, tmp_path):
    # Docker's init layer: /etc/mtab links to /proc/mounts in every container, yet it is no
    # change of the container's (diff, commit) and no part of any image; export writes it.
    import tarfile

    out = ctr("run", "--name", "mt", "--network", "none", "busybox", "sh", "-c",
              "readlink /etc/mtab; grep -c ' / overlay ' /etc/mtab; echo x > /made").out
    assert out.split() == ["/proc/mounts", "1"]
    assert ctr("diff", "mt").out.splitlines() == ["A /made"]
    ctr("commit", "mt", "mtab:1")
    ctr("save", "-o", str(tmp_path / "img.tar"), "mtab:1")
    with tarfile.open(tmp_path / "img.tar") as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
        top = tf.extractfile(manifest[0]["Layers"][-1])
        with tarfile.open(fileobj=top) as layer:
            assert layer.getnames() == ["made"]
    ctr("export", "-o", str(tmp_path / "fs.tar"), "mt")
    with tarfile.open(tmp_path / "fs.tar") as tf:
        mtab = tf.getmember("etc/mtab")
        assert mtab.issym() and mtab.linkname == "/proc/mounts"
    # a container that removes it has a deletion to show, as under Docker
    ctr("run", "--name", "rm-mtab", "--network", "none", "busybox", "rm", "/etc/mtab")
    assert ctr("diff", "rm-mtab").out.splitlines() == ["C /etc", "D /etc/mtab"]


def test_group_add_resolves_names_in_the_image_and_reaches_exec(ctr):
    # --group-add: a name from the image's /etc/group, a number as is; the container's process
    # and every exec (with -u too) get them, as under Docker
    ctr("run", "-d", "--name", "grp", "--network", "none", "--group-add", "tty",
        "--group-add", "4321", "--group-add", "5", "busybox", "sleep", "60")
    for argv in (["grp", "id", "-G"], ["-u", "daemon", "grp", "id", "-G"]):
        groups = ctr("exec", *argv).out.split()
        assert {"5", "4321"} <= set(groups), (argv, groups)
        assert groups.count("5") == 1
    doc = json.loads(ctr("inspect", "grp").out)[0]
    assert doc["HostConfig"]["GroupAdd"] == ["tty", "4321", "5"]
    out = ctr("run", "--rm", "--network", "none", "--group-add", "users", "busybox", "id", "-G").out
    assert "100" in out.split()
    proc = ctr("run", "--rm", "--network", "none", "--group-add", "nosuch", "busybox", "true",
               check=False)
    assert (proc.returncode, proc.err) == (125, "Error: Unable to find group nosuch\n")
