"""A Slurm context chosen the way users choose one -- ``portside context create hpc --slurm …``,
then ``portside -c hpc …`` or ``PORTSIDE_CONTEXT=hpc`` -- driving a real loopback cluster
(Debian's slurmctld and two slurmd, :mod:`slurm_cluster`) through the CLI in new processes.

The context's ``conf=`` says where the cluster is (``SLURM_CONF`` is not set for the CLI), its
``root=…/%n`` gives each node a store of its own, and the client's records live in the user's
data folder. Every test leaves no job, no container on a node, no record and no context.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from slurm_cluster import SlurmCluster, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import PORTSIDE  # noqa: E402

pytestmark = pytest.mark.integration

#: A container command that ends at once on SIGTERM, as a well-behaved program does.
TERMINABLE = "trap 'exit 0' TERM; echo started; while :; do sleep 0.1; done"


@pytest.fixture(scope="module")
def cluster():
    with SlurmCluster(epilog=[PORTSIDE, "slurm", "epilog"], min_job_age=2) as c:
        yield c


class User:
    """One user's terminal: their config and data folders, the client's store (holding the
    images), and ``portside`` run in a new process with the cluster's environment minus
    ``SLURM_CONF`` (the context names the cluster's configuration)."""

    def __init__(self, cluster: SlurmCluster, tmp: Path) -> None:
        self.cluster = cluster
        self.tmp = tmp
        self.nodes = tmp / "nodes"
        self.env = dict(cluster.env, XDG_CONFIG_HOME=str(tmp / "config"),
                        XDG_DATA_HOME=str(tmp / "data"), PORTSIDE_ROOT=str(tmp / "client"))
        for name in ("SLURM_CONF", "PORTSIDE_CONTEXT"):
            self.env.pop(name, None)

    def __call__(self, *args: str, check: bool = True, **extra: str
                 ) -> subprocess.CompletedProcess:
        proc = subprocess.run([PORTSIDE, *args], capture_output=True, text=True, cwd=self.tmp,
                              env=dict(self.env, **extra), stdin=subprocess.DEVNULL,
                              timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"portside {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stderr}\n{proc.stdout[-2000:]}")
        return proc

    def on_node(self, node: str) -> list[str]:
        """Names of the containers in ``node``'s store."""
        if not (self.nodes / node / "metadata.db").exists():
            return []
        out = self("ps", "-a", "--format", "{{.Names}}",
                   PORTSIDE_ROOT=str(self.nodes / node)).stdout
        return out.split()

    def close(self) -> None:
        """Whatever a failed test left: its containers removed through the context (which
        ends their jobs), then the context; nothing may be left on the cluster."""
        if "hpc" in self("context", "ls", "-q").stdout.split():
            left = self("-c", "hpc", "ps", "-a", "-q", check=False).stdout.split()
            if left:
                self("-c", "hpc", "rm", "-f", *left, check=False)
            self("context", "rm", "-f", "hpc")
        wait_for(lambda: not self.cluster.active_jobs(), 30, "every job to end")
        for node in ("node1", "node2"):
            assert self.on_node(node) == [], f"containers left on {node}"


@pytest.fixture
def user(cluster, tmp_path):
    u = User(cluster, tmp_path)
    u("image", "bootstrap", "busybox", "-t", "busybox:latest", "-q")
    yield u
    u.close()


def test_run_ps_rm_through_a_slurm_context(user, cluster):
    created = user("context", "create", "hpc", "--slurm",
                   f"partition=gpu,time=10:00,root={user.nodes}/%n,conf={cluster.conf}")
    assert (created.stdout, created.stderr) == ("hpc\n", 'Successfully created context "hpc"\n')

    ident = user("-c", "hpc", "run", "-d", "--name", "web", "busybox", "sh", "-c",
                 TERMINABLE).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", ident), ident
    # the container is a job of Slurm's, running on the node the context's inspect names
    job, node = user("-c", "hpc", "inspect", "web", "--format",
                     "{{.Slurm.JobId}} {{.Slurm.Node}}").stdout.split()
    assert cluster.jobs()[job]["name"] == "web" and cluster.jobs()[job]["state"] == "RUNNING"
    assert node in ("node1", "node2") and user.on_node(node) == ["web"]
    rows = user("-c", "hpc", "ps", "--format", "{{.ID}} {{.Names}} {{.State}}").stdout
    assert rows == f"{ident[:12]} web running\n"
    # PORTSIDE_CONTEXT selects it as -c does; the default context (this machine) has no "web"
    assert user("ps", "-q", "--no-trunc", PORTSIDE_CONTEXT="hpc").stdout == ident + "\n"
    assert user("ps", "-a", "-q").stdout == ""
    wait_for(lambda: "started" in user("-c", "hpc", "logs", "web").stdout, 20, "its output")

    # forgetting the context would orphan the job: refused, in one line, nothing removed
    refused = user("context", "rm", "hpc", check=False)
    assert refused.returncode != 0 and refused.stdout == ""
    assert refused.stderr == ('Error: context "hpc" still has containers (web): remove them '
                              "first (portside -c hpc rm -f …), or set -f to forget them "
                              "(their jobs run on until Slurm ends them)\n"), refused.stderr
    assert "hpc" in user("context", "ls", "-q").stdout.split()

    assert user("-c", "hpc", "rm", "-f", "web").stdout == "web\n"
    wait_for(lambda: job not in cluster.active_jobs(), 30, "the job to end")
    assert user.on_node(node) == []
    assert user("-c", "hpc", "ps", "-a", "-q").stdout == ""
    user("context", "rm", "hpc")
    assert not (user.tmp / "data" / "portside" / "contexts" / "hpc").exists()


@pytest.mark.parametrize("options, flags, reason", [
    ("partition=nope,time=10:00", [],
     ("Error: Slurm refused the job: ", "Invalid partition name specified")),
    ("partition=gpu,time=10:00", ["--gpus", "3"],
     ("Error: Slurm refused the job: ", "Requested node configuration is not available")),
    ("partition=tiny,time=2:00:00", [],
     ("Error: Slurm cannot start container lost: job ",
      " pending (PartitionConfig): it asks for more than the partition allows")),
], ids=["no-such-partition", "gpus-unavailable", "time-limit"])
def test_a_job_slurm_cannot_run_is_one_line(user, cluster, options, flags, reason):
    user("context", "create", "hpc", "--slurm",
         f"{options},root={user.nodes}/%n,conf={cluster.conf}")
    proc = user("-c", "hpc", "run", "-d", "--name", "lost", *flags, "busybox", "true",
                check=False)
    assert proc.returncode == 125 and proc.stdout == ""
    assert proc.stderr.startswith("Error: ") and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(reason[0]) and reason[1] in proc.stderr, proc.stderr
    # as with `docker run -d` whose start fails, the container stays created; no job runs
    listed = user("-c", "hpc", "ps", "-a", "--format", "{{.Names}} {{.State}}").stdout
    assert listed == "lost created\n"
    assert not any(v["name"] == "lost" and v["state"] in ("PENDING", "RUNNING")
                   for v in cluster.jobs().values())
    assert user("-c", "hpc", "rm", "lost").stdout == "lost\n"
    assert user("-c", "hpc", "ps", "-a", "-q").stdout == ""


@pytest.mark.parametrize("proxy", [True, False], ids=["sig-proxy", "sig-proxy=false"])
def test_a_foreground_run_given_sigterm(user, cluster, proxy):
    """A batch script, ``timeout`` or a terminal's close ends a foreground
    ``portside -c hpc run`` by signalling that process, not the container on its node. With
    ``--sig-proxy`` (the default) the CLI passes SIGTERM on: the container's trap answers, the
    run exits with its status, ``--rm`` leaves nothing and the job ends. With
    ``--sig-proxy=false`` the CLI dies of it, as Docker's does, and the container runs on."""
    import signal
    import threading

    user("context", "create", "hpc", "--slurm",
         f"partition=gpu,time=10:00,root={user.nodes}/%n,conf={cluster.conf}")
    script = "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.1; done"
    proc = subprocess.Popen(
        [PORTSIDE, "-c", "hpc", "run", "--rm", f"--sig-proxy={str(proxy).lower()}",
         "--name", "fg", "busybox", "sh", "-c", script],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        cwd=user.tmp, env=user.env)
    timer = threading.Timer(60, proc.kill)  # a run that never says ready fails, not hangs
    timer.start()
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proxy:
        assert (proc.returncode, out, err) == (7, "got TERM\n", "")
        assert user("-c", "hpc", "ps", "-a", "-q").stdout == ""  # --rm
    else:
        assert (proc.returncode, out) == (-signal.SIGTERM, "")
        assert user("-c", "hpc", "ps", "--format", "{{.Names}} {{.State}}").stdout == (
            "fg running\n")
        # logs still has the container's output: it never saw the signal
        assert user("-c", "hpc", "logs", "fg").stdout == "ready\n"
        assert user("-c", "hpc", "rm", "-f", "fg").stdout == "fg\n"
    wait_for(lambda: not cluster.active_jobs(), 30, "the job to end")
