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

from portside.engine.errors import (Conflict, IncorrectState, InvalidArgument,
                                    SchedulerError)
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

    def jobs(self) -> set[str]:
        """The jobs this test's containers had (from the job names)."""
        names = {r["Name"] for eng in self.engines for r in eng.records.list()}
        return {j for j, v in self.cluster.jobs().items() if v["name"] in names}

    def close(self) -> None:
        try:
            jobs = self.jobs()
            for eng in self.engines:
                for ctr in eng.containers.list(all=True):
                    ctr.remove(force=True)
            active = set(self.cluster.active_jobs())
            assert not jobs & active, f"jobs left running: {jobs & active}"
            for node in ("node1", "node2"):
                assert self.on_node(node) == [], f"containers left on {node}"
        finally:
            self.local.close()


@pytest.fixture
def hpc(cluster, tmp_path):
    h = Hpc(cluster, tmp_path)
    yield h
    h.close()


class TimeLimited:
    """A container whose job may run one minute (Slurm's shortest limit), started when the
    module starts so that the minute (and the up to 30 s slurmctld takes to notice) passes while
    the other tests run. A thread watches, every 20 ms, when the job leaves RUNNING and when the
    container is gone from its node; the module's last test looks at what it saw."""

    def __init__(self, cluster: SlurmCluster, base: Path) -> None:
        import threading

        self.hpc = Hpc(cluster, base)
        eng = self.hpc.engine("partition=gpu,time=1", name="timed")
        self.ctr = eng.containers.run("busybox", ["sleep", "1000"], detach=True, name="timed",
                                      stop_timeout=1)
        self.job, self.node = self.ctr.job, self.ctr.node
        self.folder = self.hpc.nodes / self.node / "containers" / self.ctr.id
        self.ended_at: float | None = None
        self.end_state = ""
        self.gone_at: float | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        deadline = time.monotonic() + 150
        while not self.stop.is_set() and time.monotonic() < deadline:
            now = time.monotonic()
            if self.ended_at is None:
                state = _job_state(self.hpc.cluster, self.job)
                if state != "RUNNING":
                    self.ended_at, self.end_state = now, state
            if self.gone_at is None and not self.folder.exists():
                self.gone_at = now
            if self.ended_at is not None and self.gone_at is not None:
                return
            time.sleep(0.02)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.hpc.close()


@pytest.fixture(scope="module", autouse=True)
def time_limited(cluster, tmp_path_factory):
    t = TimeLimited(cluster, tmp_path_factory.mktemp("timed"))
    yield t
    t.close()


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

    # an image node1 does not have yet: it is shipped once Slurm places the queued job
    hpc.local.builds.build("FROM busybox\nRUN echo queued > /q\n", tags=["queued:1"])
    c = eng.containers.run("queued:1", TERMINABLE, detach=True, name="gc", gpus="1")
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
    assert c.attrs["Slurm"]["Image"] == "shipped"
    assert c.exec_run(["cat", "/q"]) == (0, b"queued\n")
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


def test_the_clis_verbs_through_the_model_api(hpc):
    """What the CLI calls for run (foreground, --rm), ps, exec and container prune, answered by
    a Slurm context: the verbs it has no plumbing of its own for come from
    :mod:`portside.engine.models.composed`."""
    import io

    from portside.engine import cli
    from portside.engine.commands.container_options import build_create
    from portside.engine.errors import InvalidArgument
    from portside.engine.listing import ps_row

    eng = hpc.engine()
    config, host_config, name = build_create(cli.parse(
        ["run", "--rm", "--name", "fg", "busybox", "sh", "-c", "echo out; echo err >&2; exit 5"]))
    out, err = io.BytesIO(), io.BytesIO()
    code = eng.containers.run_from(config, host_config, name=name, stdout=out, stderr=err)
    assert (code, out.getvalue(), err.getvalue()) == (5, b"out\n", b"err\n")
    assert [c.name for c in eng.containers.list(all=True)] == []  # --rm
    config, host_config, name = build_create(cli.parse(["run", "-i", "busybox", "cat"]))
    with pytest.raises(InvalidArgument, match="cannot feed a container's standard input"):
        eng.containers.run_from(config, host_config, stdin=io.BytesIO(b"x"), stdout=out,
                                stderr=err)
    assert eng.containers.list(all=True) == []  # refused before anything was made

    ctr = eng.containers.run("busybox", TERMINABLE, detach=True, name="bg")
    done = eng.containers.run("busybox", ["true"], detach=True, name="done")
    done.wait()
    rows = {r["Names"]: r for r in map(ps_row, (c.attrs for c in
                                                eng.containers.list(all=True, sparse=True)))}
    assert rows["bg"]["State"] == "running" and rows["bg"]["Status"].startswith("Up ")
    assert rows["done"]["State"] == "exited" and rows["done"]["Status"].startswith("Exited (0)")
    assert rows["bg"]["ID"] == ctr.id[:12]
    out, err = io.BytesIO(), io.BytesIO()
    code = ctr.exec_attached(["sh", "-c", "tr a-z A-Z; echo oops >&2; exit 7"],
                             io.BytesIO(b"hello\n"), out, err)
    assert (code, out.getvalue(), err.getvalue()) == (7, b"HELLO\n", b"oops\n")
    assert eng.containers.prune()["ContainersDeleted"] == [done.id]
    assert [c.name for c in eng.containers.list(all=True)] == ["bg"]
    ctr.remove(force=True)


def test_cpus_and_memory_are_asked_of_slurm(hpc):
    from portside.engine.slurm.cluster import parse_scontrol

    eng = hpc.engine()
    ctr = eng.containers.run("busybox", TERMINABLE, detach=True, name="sized",
                             nano_cpus=1_500_000_000, mem_limit="300m")
    detail = parse_scontrol(hpc.cluster.run("scontrol", "show", "job", "-o", ctr.job).stdout)
    assert detail["NumCPUs"] == "2"  # 1.5 CPUs: Slurm allocates whole ones
    assert detail["MinMemoryNode"] == "300M"
    assert detail["JobName"] == "sized"
    hc = ctr.attrs["HostConfig"]  # the node's container keeps the exact limits
    assert hc["NanoCpus"] == 1_500_000_000 and hc["Memory"] == 300 * 1024 * 1024
    ctr.remove(force=True)


def test_a_foreground_run_passes_its_signals_to_the_container_on_the_node(hpc):
    """The CLI's signal proxy speaks only the model API (``container.kill``), so what the
    foreground ``portside run`` receives reaches a Slurm context's container on its node too.
    The CLI's handler runs here, in this process's main thread, and this process is signalled;
    the test's own handlers count what is not passed on."""
    import io
    import threading

    from portside.engine import cli

    eng = hpc.engine()
    script = ("trap 'echo got HUP' HUP; trap 'echo got TERM; exit 7' TERM; echo ready; "
              "while :; do sleep 0.1; done")
    not_proxied: list[int] = []
    old = {s: signal.signal(s, lambda n, f: not_proxied.append(n))
           for s in (signal.SIGHUP, signal.SIGTERM)}
    r, w = os.pipe()
    out = os.fdopen(w, "wb", buffering=0)
    lines: list[str] = []

    def drive() -> None:
        """Signal this process as the container's output asks for it; end the run (so the
        test fails rather than hangs) if the container never answers."""
        nxt = {"ready": signal.SIGHUP, "got HUP": signal.SIGTERM}
        timer = threading.Timer(30, lambda: eng.containers.get("sig").kill("KILL"))
        timer.start()
        try:
            with os.fdopen(r, "rb") as f:
                for raw in f:
                    lines.append(raw.decode().strip())
                    if lines[-1] in nxt:
                        os.kill(os.getpid(), nxt[lines[-1]])
        finally:
            timer.cancel()

    reader = threading.Thread(target=drive, daemon=True)
    reader.start()
    try:
        args = cli.parse(["run", "--rm", "--name", "sig", "busybox", "sh", "-c", script])
        ctx = cli.Context(engine=eng, out=io.StringIO(), err=io.StringIO(),
                          stdout_binary=out)
        code = args._handler(ctx, args)
    finally:
        out.close()
        reader.join(30)
        for s, h in old.items():
            signal.signal(s, h)
    assert (code, lines, not_proxied) == (7, ["ready", "got HUP", "got TERM"], [])
    assert eng.containers.list(all=True) == []  # --rm


def test_update_of_a_running_container_is_done_on_its_node(hpc):
    eng = hpc.engine()
    ctr = eng.containers.run("busybox", TERMINABLE, detach=True, name="grow", mem_limit="64m")
    assert ctr.update(mem_limit="96m", pids_limit=50) == {"Warnings": []}
    hc = ctr.attrs["HostConfig"]
    assert (hc["Memory"], hc["PidsLimit"]) == (96 * 1024 * 1024, 50)
    ctr.remove(force=True)
    created = eng.containers.create("busybox", TERMINABLE, name="notyet")
    with pytest.raises(InvalidArgument, match="^update: container notyet is not running on a "
                                              "node"):
        created.update(mem_limit="96m")
    created.remove(force=True)


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
    # follow_links: the node resolves the link inside the container (cp -L)
    assert ctr.exec_run(["ln", "-s", "/tmp/greeting.txt", "/tmp/link"])[0] == 0
    out = io.BytesIO()
    ctr.get_archive("/tmp/link", out, follow_links=True)
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        [member] = tar.getmembers()
        assert member.isreg() and member.name == "link"
        assert tar.extractfile(member).read() == b"hello from the client\n"
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
        # the epilog says so only after runc has let go of the container: wait for its line
        log = hpc.cluster.dir / "log" / "epilog.log"
        wait_for(lambda: log.exists() and f"job {job}: removed container orphan2" in log.read_text(),
                 30,
                 "the epilog to report the removal")
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
    assert message.startswith(("Slurm refused the job: ", "Slurm cannot start container nope"))
    assert info.value.exit_code == 125
    # as with `docker run -d` whose start fails (and the CLI's run), the container stays
    assert [(c.name, c.status) for c in eng.containers.list(all=True)] == [("nope", "created")]
    eng.containers.get("nope").remove()
    assert not any(v["name"] == "nope" and v["state"] in ("PENDING", "RUNNING")
                   for v in hpc.cluster.jobs().values())


def test_a_command_the_node_cannot_run_fails_the_start(hpc):
    from portside.engine.errors import EngineError

    eng = hpc.engine()
    with pytest.raises(EngineError) as info:
        eng.containers.run("busybox", ["/no/such/program"], detach=True, name="broken")
    assert info.value.exit_code == 127 and "/no/such/program" in str(info.value)
    broken = eng.containers.get("broken")  # it stays, with the node's reason
    assert broken.status == "exited" and broken.attrs["State"]["ExitCode"] == 127
    assert "/no/such/program" in broken.attrs["State"]["Error"]
    wait_for(lambda: not any(v["name"] == "broken" and v["state"] in ("RUNNING", "COMPLETING")
                             for v in hpc.cluster.jobs().values()), 20, "the job to end")
    assert hpc.on_node("node1") == hpc.on_node("node2") == []


# --------------------------------------------------------------------------------- cells
def test_cells_run_inside_the_container_over_srun(hpc, debian_tar):
    """The notebook's agent over ``srun -u``'s pipe: state kept between cells, 5 MB streamed,
    an interrupt ends a cell and keeps the namespace, a trivial cell is quick."""
    import statistics
    import threading

    from portside.kernel.client import AgentSession, Collector, container_exec_factory

    with open(debian_tar, "rb") as f:
        hpc.local.images.load(f)
    eng = hpc.engine()
    ctr = eng.containers.run("portside/debian:bookworm", ["sleep", "infinity"], detach=True,
                             name="cells", stop_timeout=1)
    session = AgentSession(container_exec_factory(eng, "cells"), label="cells")
    try:
        session.execute("import os, sys, time\nx = 41")
        sink = Collector()
        reply = session.execute("print(os.environ.get('HOSTNAME', open('/etc/hostname')"
                                ".read().strip()))\nx + 1", sink)
        assert reply["status"] == "ok"
        assert sink.of_type("execute_result")[0]["data"]["text/plain"] == "42"
        assert sink.text().strip() == ctr.attrs["Config"]["Hostname"]

        big = Collector()
        session.execute("sys.stdout.write('y' * (5 * 1024 * 1024)); sys.stdout.flush()", big)
        assert big.text() == "y" * (5 * 1024 * 1024)

        timer = threading.Timer(0.5, session.interrupt)
        timer.start()
        t0 = time.monotonic()
        stopped = Collector()
        reply = session.execute("time.sleep(30)", stopped)
        took = time.monotonic() - t0
        timer.join()
        assert reply["status"] == "error"
        assert stopped.of_type("error")[0]["ename"] == "KeyboardInterrupt"
        assert took < 3, f"the interrupt took {took:.1f} s to end the cell"
        after = Collector()
        session.execute("x", after)
        assert after.of_type("execute_result")[0]["data"]["text/plain"] == "41"

        samples = []
        for _ in range(200):
            t0 = time.perf_counter()
            session.execute("x = 1")
            samples.append(time.perf_counter() - t0)
        p50 = statistics.median(samples) * 1000
        print(f"agent over srun: p50 {p50:.3f} ms")
        assert p50 <= 2.0
    finally:
        session.close()
    ctr.remove(force=True)


# --------------------------------------------------------------------------------- time limit
def test_a_time_limit_removes_the_container_within_two_seconds(time_limited):
    """Last in the module: the job started with it, with a one-minute limit."""
    t = time_limited
    t.thread.join(timeout=150)
    assert t.ended_at is not None, "the job never reached its time limit"
    assert t.end_state in ("TIMEOUT", "COMPLETING"), t.end_state
    assert t.gone_at is not None, "the container outlived its job"
    took = t.gone_at - t.ended_at
    assert took < 2.0, f"the container outlived the time limit by {took:.2f} s"
    coll = t.hpc.engines[0].containers
    wait_for(lambda: coll.get("timed").attrs["Slurm"]["State"] == "TIMEOUT", 30,
             "Slurm to finish the job")
    ctr = coll.get("timed")
    assert ctr.status == "exited" and ctr.attrs["State"]["ExitCode"] == 143
