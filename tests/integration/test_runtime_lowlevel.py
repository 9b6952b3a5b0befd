"""Integration tests of the low-level runtime: real runc, a busybox bundle, the monitor, cgroups.

Each test builds an OCI bundle in a temporary directory, drives :mod:`oci` and :mod:`monitor`
directly (no image store), and removes every container, cgroup, process and file it made.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from portside.engine.errors import CannotInvoke, CommandNotFound
from portside.engine.runtime.cgroups import Cgroup, cgroup_path_for
from portside.engine.runtime.logs import read_logs
from portside.engine.runtime.monitor import attach, read_exit, spawn_monitor
from portside.engine.runtime.oci import OCIRuntime
from portside.engine.runtime.spec import ContainerConfig, ProcessConfig, generate_spec, write_spec

sys.path.insert(0, str(Path(__file__).parent))
from busybox_rootfs import make_busybox_rootfs  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not shutil.which("runc") and not os.path.exists("/usr/sbin/runc"),
                       reason="runc not installed"),
]

DOCKER_CAPS = "00000000a80425fb"


@dataclass
class Ctr:
    id: str
    dir: Path
    monitor_pid: int = 0
    kw: dict[str, Any] = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return self.dir / "log.json"

    @property
    def exit_file(self) -> Path:
        return self.dir / "exit.json"

    @property
    def sock(self) -> Path:
        return self.dir / "st" / "attach.sock"

    def output(self) -> bytes:
        return b"".join(d for _, d, _ in read_logs(self.log))

    def wait_exit(self, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rec = read_exit(self.exit_file)
            if rec is not None:
                return rec
            time.sleep(0.02)
        raise AssertionError(f"container {self.id} did not exit")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Lab:
    """Makes containers and removes everything they leave behind."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.rootfs = make_busybox_rootfs(base / "rootfs")
        self.rt = OCIRuntime.detect(state_root=base / "runtime")
        self.made: list[Ctr] = []

    def bundle(self, args: list[str], *, tty: bool = False, **cfg: Any) -> Ctr:
        cid = "pt-" + uuid.uuid4().hex[:12]
        d = self.base / cid
        d.mkdir()
        spec = generate_spec(ContainerConfig(
            process=ProcessConfig(args=args, terminal=tty), rootfs=str(self.rootfs),
            cgroups_path=cgroup_path_for(cid), **cfg))
        write_spec(d, spec)
        ctr = Ctr(cid, d, kw={"tty": tty})
        self.made.append(ctr)
        return ctr

    def monitor_kwargs(self, ctr: Ctr, stdin_open: bool = False) -> dict[str, Any]:
        return dict(runtime_path=self.rt.path, runtime_root=self.rt.state_root,
                    container_id=ctr.id, bundle=ctr.dir, state_dir=ctr.dir / "st",
                    log_path=ctr.log, tty=ctr.kw["tty"], stdin_open=stdin_open,
                    attach_socket=ctr.sock, exit_file=ctr.exit_file)

    def start(self, ctr: Ctr, stdin_open: bool = False) -> Ctr:
        ctr.monitor_pid = spawn_monitor(**self.monitor_kwargs(ctr, stdin_open))
        return ctr

    def run(self, args: list[str], **cfg: Any) -> Ctr:
        return self.start(self.bundle(args, **cfg))

    def cleanup(self) -> None:
        for ctr in self.made:
            if self.rt.state(ctr.id) is not None:
                self.rt.delete(ctr.id, force=True)
            if ctr.monitor_pid:
                deadline = time.monotonic() + 5
                while _alive(ctr.monitor_pid) and time.monotonic() < deadline:
                    time.sleep(0.02)
                if _alive(ctr.monitor_pid):
                    os.kill(ctr.monitor_pid, signal.SIGKILL)
            cg = Cgroup(cgroup_path_for(ctr.id))
            if cg.exists():
                cg.remove()
        leftovers = [p for ctr in self.made for p in Path("/sys/fs/cgroup").glob(f"*/portside/{ctr.id}")]
        assert not leftovers, leftovers
        assert self.rt.list() == []


@pytest.fixture
def lab() -> Iterator[Lab]:
    # A short path: unix socket paths must stay under 108 bytes.
    base = Path(tempfile.mkdtemp(prefix="ps-rt-", dir="/tmp"))
    lab = Lab(base)
    try:
        yield lab
    finally:
        try:
            lab.cleanup()
        finally:
            shutil.rmtree(base)


def test_exit_code_and_log(lab: Lab) -> None:
    ctr = lab.run(["sh", "-c", "echo hi; echo oops >&2; exit 32"])
    rec = ctr.wait_exit()
    assert rec["exit_code"] == 32 and rec["oom_killed"] is False
    entries = list(read_logs(ctr.log))
    assert ("stdout", b"hi\n") in [(s, d) for s, d, _ in entries]
    assert ("stderr", b"oops\n") in [(s, d) for s, d, _ in entries]


def test_missing_command_is_127(lab: Lab) -> None:
    ctr = lab.bundle(["no-such-command"])
    with pytest.raises(CommandNotFound, match="no-such-command") as exc:
        lab.start(ctr)
    assert exc.value.exit_code == 127
    assert read_exit(ctr.exit_file)["exit_code"] == 127
    assert b"executable file not found" not in ctr.output()  # runc's error is not container output


def test_not_executable_is_126(lab: Lab) -> None:
    ctr = lab.bundle(["/etc/passwd"])
    with pytest.raises(CannotInvoke, match="permission denied") as exc:
        lab.start(ctr)
    assert exc.value.exit_code == 126


def test_detached_container_outlives_its_starter(lab: Lab) -> None:
    ctr = lab.bundle(["sleep", "100"])
    kwargs = {k: str(v) if isinstance(v, Path) else v for k, v in lab.monitor_kwargs(ctr).items()}
    code = ("import json, sys; from portside.engine.runtime.monitor import spawn_monitor;"
            f"print(spawn_monitor(**json.loads({json.dumps(json.dumps(kwargs))})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    ctr.monitor_pid = int(out.stdout)
    time.sleep(0.2)  # the starter is gone; the container and its monitor are not
    assert _alive(ctr.monitor_pid)
    state = lab.rt.state(ctr.id)
    assert state is not None and state["status"] == "running"
    assert _rss_kb(ctr.monitor_pid) <= 15 * 1024
    lab.rt.kill(ctr.id, "KILL")
    assert ctr.wait_exit()["exit_code"] == 137
    state = lab.rt.state(ctr.id)  # the monitor deletes it right after recording the exit
    assert state is None or state["status"] == "stopped"


def test_kill_by_name_and_number(lab: Lab) -> None:
    trap = lab.run(["sh", "-c", "trap 'exit 7' USR1; echo ready; while :; do sleep 0.05; done"])
    for _ in range(100):
        if b"ready" in trap.output():
            break
        time.sleep(0.02)
    lab.rt.kill(trap.id, "SIGUSR1")
    assert trap.wait_exit()["exit_code"] == 7
    sleeper = lab.run(["sleep", "100"])
    lab.rt.kill(sleeper.id, 9)
    assert sleeper.wait_exit()["exit_code"] == 137


def test_pause_resume_through_cgroup_freezer(lab: Lab) -> None:
    ctr = lab.run(["sh", "-c", "while :; do :; done"])
    cg = Cgroup(cgroup_path_for(ctr.id))
    assert cg.exists()
    pids = cg.pids()
    assert pids and set(pids) == set(lab.rt.ps(ctr.id))
    cg.freeze()
    try:
        assert cg.frozen()
        assert lab.rt.state(ctr.id)["status"] == "paused"
        used = cg.cpu_usage_ns()
        time.sleep(0.2)
        assert cg.cpu_usage_ns() - used < 5_000_000  # frozen tasks do not run
    finally:
        cg.thaw()
    assert not cg.frozen()
    assert lab.rt.state(ctr.id)["status"] == "running"
    assert cg.memory_usage() > 0 and cg.pids_current() >= 1
    lab.rt.kill(ctr.id, "KILL")
    assert ctr.wait_exit()["exit_code"] == 137


def test_isolation_seen_from_inside(lab: Lab) -> None:
    script = ("grep Cap /proc/self/status; echo FD $(ls /proc/self/fd); "
              "echo KEYS $(cat /proc/keys | wc -c); "
              "echo 1 > /proc/sys/kernel/domainname && echo SYSRW || echo SYSRO; "
              "cat /proc/self/mountinfo | awk '{print \"MNT \" $5}'; hostname")
    ctr = lab.run(["sh", "-c", script], hostname="inside")
    assert ctr.wait_exit()["exit_code"] == 0
    out = ctr.output().decode()
    for kind in ("CapPrm", "CapEff", "CapBnd"):
        assert f"{kind}:\t{DOCKER_CAPS}" in out
    assert "CapInh:\t0000000000000000" in out and "CapAmb:\t0000000000000000" in out
    assert "FD 0 1 2 3\n" in out  # 3 is the directory ls is reading
    assert "KEYS 0\n" in out  # masked by /dev/null
    assert "SYSRO" in out and "SYSRW" not in out
    mounts = [line[4:] for line in out.splitlines() if line.startswith("MNT ")]
    assert "/" in mounts and "/proc" in mounts and "/dev/shm" in mounts
    strays = [m for m in mounts if m != "/" and not m.startswith(("/proc", "/sys", "/dev"))]
    assert strays == []
    assert "inside" in out.splitlines()  # the hostname


def test_fifty_megabytes_logged_completely(lab: Lab) -> None:
    size = 50 * 1024 * 1024
    ctr = lab.run(["sh", "-c", f"yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ "
                               f"| head -c {size}"])
    peak = 0
    while read_exit(ctr.exit_file) is None and _alive(ctr.monitor_pid):
        peak = max(peak, _rss_kb(ctr.monitor_pid))
        time.sleep(0.05)
    assert ctr.wait_exit(timeout=60)["exit_code"] == 0
    total = 0
    for stream, data, _ in read_logs(ctr.log):
        assert stream == "stdout"
        total += len(data)
    assert total == size
    assert peak <= 15 * 1024, f"monitor RSS {peak} kB"


def test_trailing_partial_line_kept(lab: Lab) -> None:
    ctr = lab.run(["sh", "-c", "printf 'full\\nno-newline'"])
    assert ctr.wait_exit()["exit_code"] == 0
    assert [d for _, d, _ in read_logs(ctr.log)] == [b"full\n", b"no-newline"]


def test_attach_streams_stdin_and_output(lab: Lab) -> None:
    ctr = lab.start(lab.bundle(["sh", "-c", "cat; exit 5"]), stdin_open=True)
    r, w = os.pipe()
    os.write(w, b"hello through attach\n")
    os.close(w)
    out, err = io.BytesIO(), io.BytesIO()
    try:
        code = attach(ctr.sock, r, out, err)
    finally:
        os.close(r)
    assert code == 5
    assert out.getvalue() == b"hello through attach\n"
    assert ctr.wait_exit()["exit_code"] == 5
    assert ctr.output() == b"hello through attach\n"


def test_tty_container(lab: Lab) -> None:
    ctr = lab.run(["sh", "-c", "tty; exit 3"], tty=True)
    assert ctr.wait_exit()["exit_code"] == 3
    assert b"/dev/pts/0" in ctr.output()


def test_exec_runs_inside_the_container(lab: Lab) -> None:
    ctr = lab.run(["sleep", "100"], hostname="execbox")
    process = json.loads((ctr.dir / "config.json").read_text())["process"]
    process["args"] = ["sh", "-c", "hostname; exit 4"]
    proc = lab.rt.exec(ctr.id, process, stdio=(subprocess.DEVNULL, subprocess.PIPE, subprocess.PIPE))
    out, _ = proc.communicate(timeout=10)
    assert proc.wait() == 4 and out == b"execbox\n"
    lab.rt.kill(ctr.id, "KILL")
    assert ctr.wait_exit()["exit_code"] == 137
