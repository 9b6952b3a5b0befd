"""Benchmark: a trivial notebook cell in a running container, through the agent, next to Docker.

portside keeps one agent process per container (``%%container exec``), so a cell costs one round
trip over two pipes; ``docker exec CTR python3 -c 'x = 1'`` starts a process (and an interpreter)
per command. Measured here, same machine, same run:

* ``x = 1`` through the agent: median, p50, p99 over many cells;
* ``docker exec CTR python3 -c 'x = 1'`` (when Docker is installed; the harness starts dockerd);
* ``x = 1`` through the same agent in a Docker context: the agent runs in a container of that
  dockerd, over a hijacked exec stream (``portside -c CONTEXT``, ``%container context use``);
* a cell printing 100,000 lines, streamed back.

Needs root and the cached Debian archive that the tests make (``$PORTSIDE_TEST_CACHE``, default
/var/cache/portside-test). Not a test: ``.venv/bin/python bench/bench_agent.py``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

CACHE = Path(os.environ.get("PORTSIDE_TEST_CACHE", "/var/cache/portside-test"))


def percentiles(samples: list[float]) -> str:
    s = sorted(samples)
    p = lambda q: s[min(len(s) - 1, int(len(s) * q))] * 1000  # noqa: E731
    return (f"median {statistics.median(s) * 1000:8.3f} ms   p50 {p(0.5):8.3f} ms   "
            f"p99 {p(0.99):8.3f} ms   (n={len(s)})")


def main() -> None:
    from portside.engine.api import Engine
    from portside.kernel.client import AgentSession, Collector, container_exec_factory

    archives = sorted(CACHE.glob("debian-bookworm-python3-*.tar"))
    if not archives:
        sys.exit(f"no Debian archive in {CACHE}: run the integration tests once (debian_tar)")
    work = Path(tempfile.mkdtemp(prefix="bench-agent-"))
    engine = Engine(root=work / "root")
    ctr = None
    try:
        with open(archives[-1], "rb") as f:
            engine.images.load(f)
        ctr = engine.containers.run("portside/debian:bookworm", ["sleep", "3600"], detach=True,
                                    name="bench-agent")
        sess = AgentSession(container_exec_factory(engine, "bench-agent"), label="bench-agent")
        t0 = time.perf_counter()
        sess.start()
        print(f"agent start (exec + bootstrap): {(time.perf_counter() - t0) * 1000:.1f} ms")
        for _ in range(100):
            sess.execute("x = 1")
        samples = []
        for _ in range(2000):
            t0 = time.perf_counter()
            sess.execute("x = 1")
            samples.append(time.perf_counter() - t0)
        print(f"portside agent   x = 1    {percentiles(samples)}")

        lines = []
        for _ in range(5):
            out = Collector()
            t0 = time.perf_counter()
            sess.execute("for i in range(100000):\n    print(i)", out)
            lines.append(time.perf_counter() - t0)
            assert len(out.text().splitlines()) == 100000
        print(f"portside agent   100k lines  median {statistics.median(lines) * 1000:.0f} ms")
        sess.close()

        if shutil.which("dockerd"):
            from harness import Docker

            docker = Docker(work)
            try:
                # the archive is a docker-loadable image: load it and start one container
                docker("load", "-i", str(archives[-1]))
                docker("run", "-d", "--name", "bench", "portside/debian:bookworm", "sleep", "3600")
                dsamples = []
                for _ in range(30):
                    t0 = time.perf_counter()
                    docker("exec", "bench", "python3", "-c", "x = 1")
                    dsamples.append(time.perf_counter() - t0)
                print(f"docker exec      x = 1    {percentiles(dsamples)}")
                print(f"ratio (docker / portside, medians): "
                      f"{statistics.median(dsamples) / statistics.median(samples):.0f}x")
                from portside.engine.docker import DockerEngine

                dengine = DockerEngine(f"unix://{docker.sock}", context="bench")
                dsess = AgentSession(container_popen_factory(dengine, "bench"), label="bench")
                t0 = time.perf_counter()
                dsess.start()
                print(f"agent start in a Docker context (exec + bootstrap): "
                      f"{(time.perf_counter() - t0) * 1000:.1f} ms")
                for _ in range(100):
                    dsess.execute("x = 1")
                csamples = []
                for _ in range(2000):
                    t0 = time.perf_counter()
                    dsess.execute("x = 1")
                    csamples.append(time.perf_counter() - t0)
                print(f"agent, Docker context  x = 1    {percentiles(csamples)}")
                dsess.close()
                dengine.close()
                docker("rm", "-f", "bench", check=False)
            finally:
                docker.close()
        else:
            print("docker: not installed (make bench installs docker.io); skipped")
    finally:
        if ctr is not None:
            ctr.remove(force=True)
        engine.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
