"""A notebook in a Slurm context, executed by nbclient with the "Python 3 (portside)" kernel
against a real loopback cluster (Debian's slurmctld and two slurmd, :mod:`slurm_cluster`).

``%container context use hpc`` points this kernel (only) at the cluster; ``%%container build``
builds where the notebook runs and ``run -d`` ships the result to the node Slurm chose;
``%%container exec`` cells run inside the container on that node, over ``srun -u``: their state
is kept across cells, 5 MB of output streams back, an interrupt ends a cell and keeps the
namespace, and a trivial cell through the magic (the kernel's own path) stays within 2 ms at the
median. ``%container -c NAME`` sends one command elsewhere (to the cluster from a kernel on the
default context, and back). Nothing is left on the cluster, on
the nodes or in the context afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

from slurm_cluster import SlurmCluster, wait_for  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import (PORTSIDE, cell_outputs as outputs, cell_text as text,  # noqa: E402
                      portside_notebook_client)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: The trivial cell's budget through the magic, at the median (README's Performance table).
TRIVIAL_CELL_P50_MS = 2.0

_TIMING = """\
import statistics, time
ip = get_ipython()
for _ in range(20):
    ip.run_cell_magic('container', 'exec nbs', 'x = 1')
samples = []
for _ in range(300):
    t0 = time.perf_counter()
    ip.run_cell_magic('container', 'exec nbs', 'x = 1')
    samples.append(time.perf_counter() - t0)
print(f"p50 {statistics.median(samples) * 1000:.3f} ms")
"""


def notebook():
    v4 = nbformat.v4
    cells = [
        v4.new_code_cell("%container context use hpc\n%container context show"),
        v4.new_code_cell("%%container build -q -t nbslurm:1\nFROM portside/debian:bookworm\n"
                         "RUN echo 'built where the notebook runs' > /built\n"),
        # (Go templates through Python variables: the magic's line expands {…} itself)
        v4.new_code_cell("%container run -d --name nbs nbslurm:1 sleep infinity\n"
                         "fmt = 'job={{.Slurm.JobId}},node={{.Slurm.Node}},"
                         "image={{.Slurm.Image}}'\n%container inspect nbs --format $fmt"),
        v4.new_code_cell("%%container exec nbs\nimport os, sys, time\nx = 41\n"
                         "print(open('/built').read().strip())"),
        v4.new_code_cell("%%container exec nbs\nx + 1"),
        v4.new_code_cell("%%container exec nbs\nsys.stdout.write('y' * (5 << 20))\n"
                         "sys.stdout.flush()"),
        v4.new_code_cell("%%container exec nbs\ninterrupted = False\ntry:\n"
                         "    time.sleep(120)\nexcept KeyboardInterrupt:\n"
                         "    interrupted = True\n    raise",
                         metadata={"tags": ["interrupt", "raises-exception"]}),
        v4.new_code_cell("%%container exec nbs\nprint('after the interrupt:', interrupted, x)"),
        v4.new_code_cell(_TIMING),
        v4.new_code_cell("names, rows = '{{.Names}}', '{{.Names}}:{{.State}}'\n"
                         "%container -c default ps -a --format $names\n"
                         "print('---')\n%container context use default\n"
                         "%container -c hpc ps --format $rows"),
        v4.new_code_cell("%container context use hpc\n%container rm -f nbs\n"
                         "left = %container ps -a -q\nprint(list(left))"),
    ]
    return v4.new_notebook(cells=cells)


@pytest.fixture(scope="module")
def cluster():
    with SlurmCluster(min_job_age=2) as c:
        yield c


def test_a_notebook_in_a_slurm_context(cluster, debian_tar, tmp_path, monkeypatch):
    from portside.engine.api import Engine
    from portside.kernel.kernelspec import install

    nodes = tmp_path / "nodes"
    client = tmp_path / "client"
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data"),
           "PORTSIDE_ROOT": str(client),
           # marks the jobs' processes as the cluster's, for its clean-up
           "PORTSIDE_TEST_SLURM": cluster.env["PORTSIDE_TEST_SLURM"]}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("PORTSIDE_CONTEXT", "SLURM_CONF"):
        monkeypatch.delenv(key, raising=False)
    jupyter = tmp_path / "jupyter"
    install(prefix=str(jupyter))
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter / "share" / "jupyter"))

    def portside(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([PORTSIDE, *args], capture_output=True, text=True,
                              env=dict(os.environ), stdin=subprocess.DEVNULL, timeout=120,
                              cwd=tmp_path)
        assert not check or proc.returncode == 0, proc.stderr
        return proc

    local = Engine(root=client)
    try:
        with open(debian_tar, "rb") as f:
            local.images.load(f)
    finally:
        local.close()
    portside("context", "create", "hpc", "--slurm",
             f"partition=tiny,time=10:00,root={nodes}/%n,conf={cluster.conf}")
    work = tmp_path / "nb"
    work.mkdir()
    nb = notebook()
    nbc = portside_notebook_client(nb, work)
    started = time.monotonic()
    try:
        nbc.execute()
    finally:
        left = portside("-c", "hpc", "ps", "-a", "-q", check=False).stdout.split()
        if left:
            portside("-c", "hpc", "rm", "-f", *left, check=False)
    elapsed = time.monotonic() - started
    cells = nb.cells
    errors = [(i, o) for i, c in enumerate(cells) for o in outputs(c)
              if o.get("output_type") == "error"]
    assert [i for i, _ in errors] == [6], errors  # only the interrupted cell
    assert errors[0][1]["evalue"].startswith("KeyboardInterrupt")
    assert any("time.sleep(120)" in line for line in errors[0][1]["traceback"])

    assert text(cells[0]).splitlines()[-1].strip("'") == "hpc"
    # the user's own context (terminals, other kernels) did not change
    assert portside("context", "show").stdout == "default\n"
    # built where the notebook runs, then shipped to the node the job landed on
    assert portside("images", "-q", "nbslurm:1").stdout.strip()
    fields = dict(item.split("=", 1) for item in text(cells[2]).split()[-1].split(","))
    assert fields["node"] == "node1" and fields["job"].isdigit(), text(cells[2])
    assert fields["image"] == "shipped"
    assert text(cells[3]).strip() == "built where the notebook runs"
    assert text(cells[4]) == "42"
    assert text(cells[5]) == "y" * (5 << 20)
    assert "after the interrupt: True 41" in text(cells[7])
    assert elapsed < 110  # the 120 s sleep did not run out
    p50 = float(text(cells[8]).split()[1])
    print(f"trivial cell through the magic, over srun: p50 {p50:.3f} ms")
    assert p50 <= TRIVIAL_CELL_P50_MS
    default_names, _, hpc_rows = text(cells[9]).partition("---\n")
    assert default_names.strip() == ""  # -c default: this machine's engine has no nbs
    # from a kernel on the default context, -c hpc asks the cluster
    assert hpc_rows.splitlines() == ['This kernel\'s context is now "default"',
                                     "nbs:running"], hpc_rows
    assert text(cells[10]).strip().endswith("[]")

    wait_for(lambda: not cluster.active_jobs(), 30, "the job to end")
    assert not (nodes / "node1" / "containers").exists() or \
        not any((nodes / "node1" / "containers").iterdir())
    portside("context", "rm", "hpc")
