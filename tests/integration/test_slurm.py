"""Slurm contexts on a real cluster: Debian's slurmctld and two slurmd on loopback.

The engine of a Slurm context (:class:`~portside.engine.slurm.engine.SlurmEngine`) is driven
through the model API, as the fronts drive it. Both "nodes" are this host, each with its own
portside store (``root=…/%n``), so a test can look at what is on a node by opening its store.
Every test leaves no job running, no container on a node, no mount and no process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from portside.engine.errors import Conflict, IncorrectState, SchedulerError
from slurm_cluster import SlurmCluster, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import PORTSIDE  # noqa: E402

pytestmark = pytest.mark.integration

#: A container command that ends at once on SIGTERM, as a well-behaved program does.
TERMINABLE = ["sh", "-c", "trap 'exit 0' TERM; echo started; while :; do sleep 0.1; done"]


@pytest.fixture(scope="module")
def cluster():
    with SlurmCluster(epilog=[PORTSIDE, "slurm", "epilog"], min_job_age=2) as c:
        yield c


class Hpc:
    """Slurm engines for one test, their client store and the nodes' stores."""

    def __init__(self, cluster: SlurmCluster, tmp_path: Path) -> None:
        from portside.engine.api import Engine

        self.cluster = cluster
        self.tmp = tmp_path
        self.nodes = tmp_path / "nodes"
        self.local = Engine(root=tmp_path / "client")
        self.local.images.bootstrap("busybox", tag="busybox:latest")
        self.env = dict(cluster.env, PORTSIDE_CDI_SPEC_DIRS=str(cluster.cdi_dir))
        self.engines: list = []

    def engine(self, options: str = "partition=gpu,time=10:00", name: str = "ctx"):
        from portside.engine.slurm.engine import SlurmEngine
        from portside.engine.slurm.options import parse_options

        eng = SlurmEngine(parse_options(f"{options},root={self.nodes}/%n"), self.tmp / name,
                          local=self.local, env=self.env)
        self.engines.append(eng)
        return eng

    def node_store(self, node: str):
        from portside.engine.api import Engine

        return Engine(root=self.nodes / node)

    def on_node(self, node: str) -> list[str]:
        """Names of the containers in ``node``'s store."""
        if not (self.nodes / node / "metadata.db").exists():
            return []
        eng = self.node_store(node)
        try:
            return [c.name for c in eng.containers.list(all=True)]
        finally:
            eng.close()

    def close(self) -> None:
        try:
            for eng in self.engines:
                for ctr in eng.containers.list(all=True):
                    ctr.remove(force=True)
            self.cluster.cancel_all()
            for node in ("node1", "node2"):
                assert self.on_node(node) == [], f"containers left on {node}"
        finally:
            self.local.close()


@pytest.fixture
def hpc(cluster, tmp_path):
    h = Hpc(cluster, tmp_path)
    yield h
    h.close()


def _job_state(cluster: SlurmCluster, job: str) -> str:
    return cluster.jobs().get(job, {}).get("state", "GONE")


# --------------------------------------------------------------------------------- GPUs, queue
def test_gpus_are_the_ones_slurm_allocated_and_a_third_waits(hpc):
    eng = hpc.engine("partition=tiny,time=10:00")  # node1 only: two GPUs
    show = ["sh", "-c", "ls -l /dev/ | grep nvidia; echo CUDA=${CUDA_VISIBLE_DEVICES-unset}; "
                        "trap 'exit 0' TERM; while :; do sleep 0.1; done"]
    a = eng.containers.run("busybox", show, detach=True, name="ga", gpus="1")
    b = eng.containers.run("busybox", show, detach=True, name="gb", gpus="1")
    assert a.status == b.status == "running" and a.node == b.node == "node1"
    assert a.attrs["Slurm"]["Gres"] == "gpu:1"
    seen = {}
    for ctr in (a, b):
        out = wait_for(lambda: ctr.logs().decode() if "CUDA=" in ctr.logs().decode() else "",
                       10, "the container's listing")
        devices = [ln for ln in out.splitlines() if "nvidia" in ln]
        assert len(devices) == 1, out  # exactly the one GPU Slurm gave the job
        assert devices[0].startswith("c") and "195," in devices[0]
        minor = int(devices[0].split("195,")[1].split()[0])
        # Slurm's index on node1 is the minor of node1's device file (gpu0, gpu1)
        seen[ctr.name] = minor
        assert "CUDA=unset" in out  # Slurm's CUDA_VISIBLE_DEVICES does not leak in
        assert ctr.attrs["HostConfig"]["Gpus"] == f"device={minor}"
    assert sorted(seen.values()) == [0, 1]

    c = eng.containers.run("busybox", TERMINABLE, detach=True, name="gc", gpus="1")
    assert c.status == "created" and c.attrs["Slurm"]["State"] == "PENDING"
    assert c.attrs["Slurm"]["Reason"] == "Resources"
    listed = {x.name: x for x in eng.containers.list()}
    assert set(listed) == {"ga", "gb", "gc"}
    assert listed["gc"].attrs["Slurm"]["Reason"] == "Resources"
    assert listed["gc"].status == "created"
    with pytest.raises(IncorrectState, match="job .* is pending \\(Resources\\)"):
        c.exec_run(["true"])

    a.remove(force=True)  # frees GPU 0: the queued job runs, and its container starts there
    wait_for(lambda: eng.containers.get("gc").status == "running", 20, "gc to run")
    c.reload()
    assert c.node == "node1" and c.attrs["HostConfig"]["Gpus"] == f"device={seen['ga']}"
    assert sorted(hpc.on_node("node1")) == ["gb", "gc"]


# --------------------------------------------------------------------------------- the verbs
def test_exec_logs_top_stop_start_and_rm_through_the_context(hpc):
    eng = hpc.engine()
    ctr = eng.containers.run(
        "busybox", ["sh", "-c", "echo out; echo err >&2; trap 'exit 3' TERM; "
                                "while :; do sleep 0.1; done"], detach=True, name="exp")
    job = ctr.job
    assert ctr.status == "running" and ctr.attrs["State"]["Pid"] > 0  # the node's document
    assert hpc.on_node(ctr.node) == ["exp"]
    code, out = ctr.exec_run(["sh", "-c", "echo $((6*7)); exit 4"])
    assert (code, out) == (4, b"42\n")
    wait_for(lambda: ctr.logs() == b"out\nerr\n" or None, 10, "both lines")
    assert ctr.logs(stderr=False) == b"out\n" and ctr.logs(stdout=False) == b"err\n"
    assert ctr.logs(tail=1) == b"err\n"
    stamped = ctr.logs(timestamps=True, stderr=False).decode()
    assert stamped.endswith(" out\n") and stamped[:4].isdigit()
    procs = ctr.top()
    assert procs["Titles"][-1] == "CMD" and any("sleep" in p[-1] for p in procs["Processes"])

    ctr.stop()  # the container exits, its keeper removes it, its job ends
    assert ctr.status == "exited" and ctr.attrs["State"]["ExitCode"] == 3
    assert _job_state(hpc.cluster, job) in ("COMPLETED", "FAILED", "GONE")
    assert hpc.on_node(ctr.node) == []
    assert eng.containers.list() == [] and [c.name for c in eng.containers.list(all=True)] == ["exp"]
    assert ctr.logs() == b"out\nerr\n"  # the keeper left a copy of the log with the record

    ctr.start()  # a new job for the same container
    assert ctr.status == "running" and ctr.job != job
    with pytest.raises(Conflict, match="Stop the container before attempting removal"):
        ctr.remove()
    job2 = ctr.job
    ctr.remove(force=True)  # ends the job too
    assert _job_state(hpc.cluster, job2) not in ("RUNNING", "PENDING", "COMPLETING")
    assert eng.containers.list(all=True) == []
    assert hpc.on_node("node1") == hpc.on_node("node2") == []


def test_cp_in_and_out_over_srun(hpc):
    import io
    import tarfile

    eng = hpc.engine()
    ctr = eng.containers.run("busybox", TERMINABLE, detach=True, name="files")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"hello from the client\n"
        info = tarfile.TarInfo("greeting.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    assert ctr.put_archive("/tmp", buf.getvalue())
    assert ctr.exec_run(["cat", "/tmp/greeting.txt"]) == (0, b"hello from the client\n")
    out = io.BytesIO()
    stat = ctr.get_archive("/tmp/greeting.txt", out)
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        assert tar.extractfile("greeting.txt").read() == b"hello from the client\n"
    assert stat["name"] == "greeting.txt"
    ctr.remove(force=True)


# --------------------------------------------------------------------------------- cleanup layers
def test_scancel_removes_the_container_within_two_seconds(hpc):
    eng = hpc.engine()
    ctr = eng.containers.run("busybox", ["sleep", "1000"], detach=True, name="victim",
                             stop_timeout=1)
    node = ctr.node
    assert hpc.on_node(node) == ["victim"]
    t0 = time.monotonic()
    hpc.cluster.run("scancel", ctr.job)
    wait_for(lambda: hpc.on_node(node) == [], 10, "the container to go")
    took = time.monotonic() - t0
    assert took < 2.0, f"the container outlived scancel by {took:.2f} s"
    wait_for(lambda: eng.containers.get("victim").status == "exited", 10, "exited")
    assert eng.containers.get("victim").attrs["State"]["ExitCode"] == 143
    eng.containers.get("victim").remove()


def _keeper_pid(hpc, node: str, job: str) -> int:
    path = hpc.nodes / node / "slurm" / "jobs" / f"{job}.json"
    return int(json.loads(path.read_text())["pid"])


def _monitors() -> set[str]:
    from conftest import _processes

    return _processes()


def test_epilog_removes_what_a_killed_keeper_left(hpc):
    eng = hpc.engine()
    # Without the epilog: a keeper killed outright leaves its container running past the job
    ctr = eng.containers.run("busybox", TERMINABLE, detach=True, name="orphan")
    node, job = ctr.node, ctr.job
    os.kill(_keeper_pid(hpc, node, job), signal.SIGKILL)
    wait_for(lambda: _job_state(hpc.cluster, job) not in ("RUNNING", "COMPLETING"), 20,
             "the job to end")
    assert hpc.on_node(node) == ["orphan"]  # runc's container is outside Slurm's reach
    # what slurmd runs as Epilog, with the variables it sets
    epilog_env = dict(hpc.cluster.env, SLURM_JOB_ID=job, SLURM_JOB_UID=str(os.getuid()),
                      SLURMD_NODENAME=node, SLURM_SCRIPT_CONTEXT="epilog_slurmd")
    epilog_env.pop("PORTSIDE_ROOT", None)
    proc = subprocess.run([PORTSIDE, "slurm", "epilog"], env=epilog_env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and f"job {job}: removed container orphan" in proc.stderr
    assert hpc.on_node(node) == []
    assert eng.containers.get("orphan").status == "exited"
    eng.containers.get("orphan").remove()

    # With slurmd's own Epilog= switched on, the same happens by itself
    with hpc.cluster.epilog_on():
        ctr = eng.containers.run("busybox", TERMINABLE, detach=True, name="orphan2")
        node, job = ctr.node, ctr.job
        os.kill(_keeper_pid(hpc, node, job), signal.SIGKILL)
        wait_for(lambda: hpc.on_node(node) == [], 30, "slurmd's epilog to remove it")
    log = (hpc.cluster.dir / "log" / "epilog.log").read_text()
    assert f"job {job}: removed container orphan2" in log
    eng.containers.get("orphan2").remove(force=True)


def test_a_vanished_job_shows_its_container_as_exited(hpc):
    eng = hpc.engine()
    ctr = eng.containers.run("busybox", TERMINABLE, detach=True, name="ghost")
    job = ctr.job
    hpc.cluster.run("scancel", job)
    # MinJobAge=2: slurmctld purges ended jobs in its next purge pass (every 10 s)
    wait_for(lambda: job not in hpc.cluster.jobs(), 40, "slurmctld to forget the job",
             interval=0.5)
    listed = eng.containers.list(all=True)
    assert [(c.name, c.status) for c in listed] == [("ghost", "exited")]
    assert "vanished" in listed[0].attrs["State"]["Error"]
    assert eng.containers.list() == []
    listed[0].remove()  # no -f needed: nothing runs
    assert eng.containers.list(all=True) == []


# --------------------------------------------------------------------------------- images
def test_an_image_is_shipped_to_a_node_once(hpc):
    hpc.local.builds.build("FROM busybox\nRUN echo built here > /built\n", tags=["exp:1"])
    eng = hpc.engine("partition=tiny,time=10:00")
    first = eng.containers.run("exp:1", ["cat", "/built"], name="first")
    assert first == b"built here\n"
    assert eng.containers.get("first").attrs["Slurm"]["Image"] == "shipped"
    second = eng.containers.run("exp:1", TERMINABLE, detach=True, name="second")
    assert second.attrs["Slurm"]["Image"] == "present"  # nothing sent the second time
    assert second.attrs["Config"]["Image"] == "exp:1"
    node1 = hpc.node_store("node1")
    try:
        assert node1.images.get("exp:1").id == hpc.local.images.get("exp:1").id
    finally:
        node1.close()
    assert not (hpc.nodes / "node2" / "metadata.db").exists()  # per-node stores
    second.remove(force=True)
    eng.containers.get("first").remove()


def test_images_go_through_the_contexts_registry(hpc, tmp_path):
    from registry_fixture import Registry

    reg = Registry(tmp_path / "registry").start()
    try:
        hpc.env["PORTSIDE_INSECURE_REGISTRIES"] = f"127.0.0.1:{reg.port}"
        hpc.local.config.insecure_registries.append(f"127.0.0.1:{reg.port}")
        eng = hpc.engine(f"partition=tiny,time=10:00,registry=127.0.0.1:{reg.port}")
        ctr = eng.containers.run("busybox", TERMINABLE, detach=True, name="pulled")
        assert ctr.status == "running" and ctr.attrs["Slurm"]["Image"] == "pulled"
        again = eng.containers.run("busybox", TERMINABLE, detach=True, name="again")
        assert again.attrs["Slurm"]["Image"] == "present"
        for c in (ctr, again):
            c.remove(force=True)
    finally:
        reg.stop()


# --------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("options, gpus, reason", [
    ("partition=nosuch,time=10:00", None, "Invalid partition name specified"),
    ("partition=gpu,time=10:00", "3", "Requested node configuration is not available"),
    ("partition=tiny,time=2:00:00", None, "PartitionConfig"),
])
def test_a_job_slurm_cannot_run_is_one_line_with_slurms_reason(hpc, options, gpus, reason):
    eng = hpc.engine(options)
    kwargs = {"gpus": gpus} if gpus else {}
    with pytest.raises(SchedulerError) as info:
        eng.containers.run("busybox", TERMINABLE, detach=True, name="nope", **kwargs)
    message = str(info.value)
    assert reason.lower() in message.lower() and "\n" not in message
    assert info.value.exit_code == 125
    assert eng.containers.list(all=True) == []
    assert hpc.cluster.active_jobs() == []


def test_a_command_the_node_cannot_run_fails_the_start(hpc):
    from portside.engine.errors import EngineError

    eng = hpc.engine()
    with pytest.raises(EngineError) as info:
        eng.containers.run("busybox", ["/no/such/program"], detach=True, name="broken")
    assert info.value.exit_code == 127 and "/no/such/program" in str(info.value)
    wait_for(lambda: hpc.cluster.active_jobs() == [], 20, "the job to end")
    assert hpc.on_node("node1") == hpc.on_node("node2") == []
