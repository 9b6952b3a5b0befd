"""Benchmark: a Slurm context on the loopback cluster the tests use (Debian's slurmctld, two
slurmd on this host).

Measured, same machine, same run:

* ``run -d`` to running: from the call until the container runs on its node (sbatch, Slurm's
  placement, the start hand-shake over ``srun``, the keeper creating and starting it), the image
  already on the node; next to it, Slurm's own share: ``sbatch --wrap true`` until ``squeue``
  says RUNNING, measured the same way (slurmctld places batch jobs in a background pass that runs
  once a second, so this is 0-1 s whatever the client does). A user's ``run`` comes at any moment
  of that second, so each measured call is preceded by a random pause of 0-1 s; back to back,
  every call would start just after a pass and wait a whole second;
* a trivial ``%%container exec`` cell (``x = 1``) through the agent over ``srun -u``: p50, p99;
  once with the agent session alone, once through the ``%%container exec`` magic in an IPython
  shell whose kernel context is the Slurm context (``%container context use``), the path a
  notebook's cell takes;
* 5 MB printed by a cell, streamed back.

Needs root, Slurm's Debian packages and the cached Debian archive the tests make
(``$PORTSIDE_TEST_CACHE``). Not a test: ``.venv/bin/python bench/bench_slurm.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))
CACHE = Path(os.environ.get("PORTSIDE_TEST_CACHE", "/var/cache/portside-test"))


def ms(samples: list[float]) -> str:
    s = sorted(samples)
    return (f"median {statistics.median(s) * 1000:7.1f} ms   min {s[0] * 1000:7.1f}   "
            f"max {s[-1] * 1000:7.1f}   (n={len(s)})")


def main() -> None:
    from slurm_cluster import SlurmCluster, wait_for

    from portside.kernel.client import AgentSession, Collector, container_exec_factory

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    archives = sorted(CACHE.glob("debian-bookworm-python3-*.tar"))
    if not archives:
        sys.exit(f"no Debian archive in {CACHE}: run the integration tests once (debian_tar)")
    work = Path(tempfile.mkdtemp(prefix="bench-slurm-"))
    cluster = SlurmCluster().start()
    # a context as a user makes one: its records in the data folder, images in PORTSIDE_ROOT
    os.environ.update(XDG_CONFIG_HOME=str(work / "config"), XDG_DATA_HOME=str(work / "data"),
                      PORTSIDE_ROOT=str(work / "client"),
                      PORTSIDE_TEST_SLURM=cluster.env["PORTSIDE_TEST_SLURM"])
    os.environ.pop("PORTSIDE_CONTEXT", None)
    from portside.engine.api import from_env
    from portside.engine.contexts import ContextStore

    ContextStore().create("bench", slurm=f"partition=tiny,time=10:00,root={work}/nodes/%n,"
                                         f"conf={cluster.conf}")
    eng = from_env(context="bench")
    local = eng.local
    try:
        local.images.bootstrap("busybox", tag="busybox:latest")
        with open(archives[-1], "rb") as f:
            local.images.load(f)
        cmd = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]
        # the first run ships the image to node1 (the tiny partition is node1 alone)
        t0 = time.perf_counter()
        eng.containers.run("busybox", cmd, detach=True, name="warm").remove(force=True)
        print(f"first run -d, image shipped:      {(time.perf_counter() - t0) * 1000:7.1f} ms")

        import random

        floor, runs = [], []
        for i in range(args.rounds):
            time.sleep(random.random())
            t0 = time.perf_counter()
            job = cluster.run("sbatch", "--parsable", "-p", "tiny", "-o", "/dev/null",
                              "--wrap", "true", cwd="/").stdout.strip()
            wait_for(lambda: cluster.jobs().get(job, {}).get("state") != "PENDING", 10,
                     "the job to run", interval=0.002)
            floor.append(time.perf_counter() - t0)
            time.sleep(random.random())
            t0 = time.perf_counter()
            ctr = eng.containers.run("busybox", cmd, detach=True, name=f"r{i}")
            runs.append(time.perf_counter() - t0)
            assert ctr.status == "running", (ctr.status, ctr.attrs["Slurm"], cluster.jobs())
            ctr.remove(force=True)
        print(f"sbatch --wrap true to RUNNING:     {ms(floor)}")
        print(f"run -d to running (image present): {ms(runs)}")

        t0 = time.perf_counter()
        ctr = eng.containers.run("portside/debian:bookworm", ["sleep", "infinity"], detach=True,
                                 name="cells", stop_timeout=1)
        size = local.images.get("portside/debian:bookworm").attrs["Size"] / 1e6
        print(f"run -d, Debian ({size:.0f} MB) shipped: {(time.perf_counter() - t0) * 1000:7.1f} ms")
        sess = AgentSession(container_exec_factory(eng, "cells"), label="cells")
        t0 = time.perf_counter()
        sess.start()
        print(f"agent start over srun:            {(time.perf_counter() - t0) * 1000:7.1f} ms")
        for _ in range(100):
            sess.execute("x = 1")
        samples = []
        for _ in range(2000):
            t0 = time.perf_counter()
            sess.execute("x = 1")
            samples.append(time.perf_counter() - t0)
        s = sorted(samples)
        print(f"cell x = 1 over srun:  p50 {s[len(s) // 2] * 1000:.3f} ms   "
              f"p99 {s[int(len(s) * 0.99)] * 1000:.3f} ms   (n={len(s)})")
        print(f"the same through %%container exec: {magic_cells(2000)}")
        big = []
        for _ in range(3):
            out = Collector()
            t0 = time.perf_counter()
            sess.execute("import sys; sys.stdout.write('y' * (5 << 20)); sys.stdout.flush()", out)
            big.append(time.perf_counter() - t0)
            assert len(out.text()) == 5 << 20
        print(f"cell printing 5 MB over srun:     {ms(big)}")
        sess.close()
        ctr.remove(force=True)
    finally:
        for c in eng.containers.list(all=True):
            c.remove(force=True)
        eng.close()
        local.close()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


def magic_cells(rounds: int) -> str:
    """``x = 1`` through the ``%%container exec`` magic of an IPython shell on the context
    (container ``cells``): p50 and p99."""
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "portside")
    ip.run_line_magic("container", "context use bench")
    for _ in range(100):
        ip.run_cell_magic("container", "exec cells", "x = 1")
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        ip.run_cell_magic("container", "exec cells", "x = 1")
        samples.append(time.perf_counter() - t0)
    ip.run_line_magic("unload_ext", "portside")
    s = sorted(samples)
    return (f"p50 {s[len(s) // 2] * 1000:.3f} ms   p99 {s[int(len(s) * 0.99)] * 1000:.3f} ms   "
            f"(n={len(s)})")


if __name__ == "__main__":
    main()
