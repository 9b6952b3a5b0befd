"""A Slurm context used by a user without root, on the loopback cluster of the Slurm tests.

Clusters' users are not root on the nodes: the keeper and every step run the node's portside as
the user, in rootless mode, with the node's store in the user's folder. The client must not run
Slurm's commands from inside its user namespace (Slurm checks the uid they send against munge's
credential, and in the namespace the user is 0): its images come through an engine process
instead, in the CLI as in a kernel. Here ``portside-rl1`` drives the cluster with the CLI (``run
-d``, ``exec``, ``logs``, ``rm -f``) and with a notebook executed by nbclient as them
(``%container context use``, ``%%container exec`` keeping state over ``srun``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .test_rootless_jupyter import _EXECUTE, _notebook, _text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from slurm_cluster import SlurmCluster, wait_for  # noqa: E402

pytestmark = [pytest.mark.rootless, pytest.mark.slow]

nbformat = pytest.importorskip("nbformat")

#: A container command that ends at once on SIGTERM, as a well-behaved program does.
TERMINABLE = "trap 'exit 0' TERM; echo started; while :; do sleep 0.1; done"


@pytest.fixture(scope="module")
def cluster():
    with SlurmCluster(min_job_age=2) as c:
        yield c


class SlurmUser:
    """The test user's terminal with their own context ``hpc``: config, data and the nodes'
    stores in their home (made by them), Slurm's marker in their environment (so the cluster's
    clean-up knows their jobs' processes)."""

    def __init__(self, rl, cluster: SlurmCluster) -> None:
        self.rl = rl
        self.cluster = cluster
        base = rl.root.parent / (rl.root.name + "-slurm")
        self.base = base
        self.nodes = base / "nodes"
        rl.sh(f"mkdir -p '{self.nodes}' '{base}/config' '{base}/data'")
        self.extra = {"XDG_CONFIG_HOME": str(base / "config"), "XDG_DATA_HOME": str(base / "data"),
                      "PORTSIDE_TEST_SLURM": cluster.env["PORTSIDE_TEST_SLURM"]}

    def env(self) -> dict[str, str]:
        return self.rl.env(**self.extra)

    def __call__(self, *args: str, check: bool = True):
        return self.rl(*args, check=check, env=self.extra)

    def create_context(self) -> None:
        self("context", "create", "hpc", "--slurm",
             f"partition=gpu,time=10:00,root={self.nodes}/%n,conf={self.cluster.conf}")

    def on_node(self, node: str) -> list[str]:
        """Names of the containers in ``node``'s store (asked as the user: it is theirs)."""
        if not (self.nodes / node / "metadata.db").exists():
            return []
        return self.rl("ps", "-a", "--format", "{{.Names}}",
                       env=dict(self.extra, PORTSIDE_ROOT=str(self.nodes / node))).out.split()

    def close(self) -> None:
        import shutil

        try:
            left = self("-c", "hpc", "ps", "-a", "-q", check=False).out.split()
            if left:
                self("-c", "hpc", "rm", "-f", *left, check=False)
            self.cluster.run("scancel", "-u", self.rl.user.name, check=False)
            wait_for(lambda: not self.cluster.active_jobs(), 30, "the user's jobs to end")
            leftover = [c for n in ("node1", "node2") for c in self.on_node(n)]
            for node in ("node1", "node2"):
                if (self.nodes / node / "metadata.db").exists():
                    # the nodes' stores are the user's, beside the one the rl fixture resets
                    self.rl("system", "reset", "--force",
                            env=dict(self.extra, PORTSIDE_ROOT=str(self.nodes / node)))
            assert leftover == [], f"containers left on the nodes: {leftover}"
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def su(rl, cluster):
    user = SlurmUser(rl, cluster)
    yield user
    user.close()


def test_the_cli_through_a_slurm_context_as_a_user(su, cluster):
    su("image", "bootstrap", "busybox", "-t", "busybox:latest", "-q")
    su.create_context()
    ident = su("-c", "hpc", "run", "-d", "--name", "web", "--net", "none", "busybox", "sh", "-c",
               TERMINABLE).out.strip()
    assert len(ident) == 64, ident
    job, node = su("-c", "hpc", "inspect", "web", "--format",
                   "{{.Slurm.JobId}} {{.Slurm.Node}}").out.split()
    # the job is the user's, and so is the node's store (rootless on the node)
    owner = cluster.run("squeue", "-h", "-j", job, "-o", "%u %T").stdout.split()
    assert owner == [su.rl.user.name, "RUNNING"]
    assert (su.nodes / node).stat().st_uid == su.rl.user.uid
    assert su.on_node(node) == ["web"]
    # root of the user's namespace inside the container: the user on the host
    out = su("-c", "hpc", "exec", "web", "sh", "-c", "id -u; cat /proc/self/uid_map").out
    assert out.split("\n")[0] == "0"
    assert out.split("\n")[1].split() == ["0", str(su.rl.user.uid), "1"], out
    proc = su("-c", "hpc", "exec", "web", "sh", "-c", "echo out; echo err >&2; exit 3",
              check=False)
    assert (proc.returncode, proc.out, proc.err) == (3, "out\n", "err\n")
    wait_for(lambda: "started" in su("-c", "hpc", "logs", "web").out, 20, "its output")
    rows = su("-c", "hpc", "ps", "--format", "{{.Names}} {{.State}}").out
    assert rows == "web running\n"
    assert su("-c", "hpc", "rm", "-f", "web").out == "web\n"
    wait_for(lambda: job not in cluster.active_jobs(), 30, "the job to end")
    assert su.on_node(node) == []
    assert su("-c", "hpc", "ps", "-a", "-q").out == ""
    # the client never joined the namespace to talk to Slurm: no engine process is left either
    assert not [p for p in su.rl.user.processes() if "portside.engine.remote.server" in p]
    su("context", "rm", "hpc")


def test_a_notebook_in_a_slurm_context_as_a_user(su, cluster, debian_tar):
    su("load", "-i", str(debian_tar), "-q")
    su.create_context()
    su.rl.sh("mkdir -p ~/nb-slurm")
    su.rl.sh("cat > ~/nb-slurm/in.ipynb", input=_notebook(
        "%load_ext portside",
        "%container context use hpc",
        "%container run -d --name nbs --net none portside/debian:bookworm sleep infinity",
        "%%container exec nbs\n"
        "import os\n"
        "x = 41\n"
        "os.getuid()",
        "%%container exec nbs\n"
        "x + 1",
        # (a Go template through a variable: the magic's line expands {…} itself)
        "fmt = '{{.Slurm.Node}},{{.Slurm.Image}}'\n"
        "%container inspect nbs --format $fmt",
        "%container rm -f nbs\n"
        "left = %container ps -a -q\n"
        "len(left)"))
    nbdir = su.rl.path("nb-slurm")
    proc = su.rl.user.run([str(su.rl.user.venv.python), "-c", _EXECUTE,
                           str(nbdir / "in.ipynb"), str(nbdir / "out.ipynb"), str(nbdir)],
                          env=su.env(), check=False, timeout=600)
    try:
        assert proc.returncode == 0, proc.err[-3000:]
        nb = nbformat.reads((nbdir / "out.ipynb").read_text(), as_version=4)
        texts = [_text(c) for c in nb.cells]
        assert "hpc" in texts[1]
        assert len(texts[2].split()[0]) == 64, texts[2]
        assert texts[3].strip() == "0"  # root of the user's namespace
        assert texts[4].strip() == "42"  # the variable survived between cells
        node, how = texts[5].strip().split(",")
        assert node in ("node1", "node2") and how == "shipped"
        assert texts[6].strip().endswith("0")
    finally:
        su.rl.sh("rm -rf ~/nb-slurm")
    wait_for(lambda: not cluster.active_jobs(), 30, "the job to end")
    # the kernel's engine process went with the kernel
    assert not [p for p in su.rl.user.processes() if "portside.engine.remote.server" in p]
    su("context", "rm", "hpc")
