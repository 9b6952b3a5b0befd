"""Benchmark: ``portside build`` next to ``DOCKER_BUILDKIT=1 docker build`` and ``podman build``.

Two Dockerfiles on the busybox image (saved by portside, loaded into Docker and podman):

* a 3-step one (COPY, RUN, ENV) and a 10-step one (COPYs, RUNs, ENV, WORKDIR, LABEL, CMD);
* each built *cold* (``--no-cache``: every RUN starts a container) and *fully cached* (a rebuild
  with nothing changed).

Contenders run alternately (A B C A B C …) and medians are reported with ratios. portside is
measured twice: the CLI in a new process (what a terminal user sees, interpreter start included)
and the engine API in a warm process (what a notebook cell sees). Docker and podman run their RUN
steps with ``--network none`` (the harness's dockerd has no bridge); portside's RUN joins the
host network, which costs it nothing extra.

Needs root. Not a test: ``.venv/bin/python bench/bench_build.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    Docker, Podman, Portside, alternate, available, machine_line, report, timed, workspace,
)

DOCKERFILES = {
    "3-step": """\
FROM busybox:latest
COPY a.txt /app/a.txt
RUN cat /app/a.txt > /app/b.txt
ENV APP=bench
""",
    "10-step": """\
FROM busybox:latest
ENV APP=bench
WORKDIR /app
COPY a.txt a.txt
RUN cat a.txt > b.txt
COPY dir/ dir/
RUN ls dir > listing.txt
LABEL org.example.bench=yes
RUN echo $APP > app.txt
ENV MODE=test
CMD ["cat", "/app/app.txt"]
""",
}


def make_context(work: Path, name: str, text: str) -> Path:
    ctx = work / f"ctx-{name}"
    (ctx / "dir").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(text)
    (ctx / "a.txt").write_text("hello\n" * 100)
    for i in range(20):
        (ctx / "dir" / f"f{i}.txt").write_text(f"file {i}\n")
    return ctx


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    # the CLI start-up cost includes reading compiled modules: let Python keep them
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    with workspace() as work:
        print(f"# builds — {machine_line()}\n")
        peers: list = []
        ps = Portside(work)
        peers.append(ps)
        ps("image", "bootstrap", "busybox", "-t", "busybox:latest", "-q")
        archive = work / "busybox.tar"
        ps("save", "-o", str(archive), "busybox:latest")
        from portside.engine.api import Engine

        engine = Engine(root=ps.root)
        dk = pm = None
        try:
            if available("docker"):
                dk = Docker(work)
                peers.append(dk)
                dk("load", "-i", str(archive))
            else:
                print("docker.io not installed: skipping docker\n")
            if available("podman"):
                pm = Podman(work)
                peers.append(pm)
                pm("load", "-i", str(archive))
            else:
                print("podman not installed: skipping podman\n")
            denv = dict(os.environ, DOCKER_BUILDKIT="1")
            for name, text in DOCKERFILES.items():
                ctx = make_context(work, name, text)
                for mode in ("cold", "cached"):
                    extra = ["--no-cache"] if mode == "cold" else []
                    contenders = {
                        "portside": lambda: timed(lambda: ps("build", "-q", *extra, "-t",
                                                             "bench:1", str(ctx))),
                        "portside (API, warm)": lambda: timed(lambda: engine.builds.build(
                            context=ctx, tags=["bench:1"], no_cache=mode == "cold")),
                    }
                    if dk is not None:
                        contenders["docker buildkit"] = lambda: timed(lambda: dk(
                            "build", "-q", "--network", "none", *extra, "-t", "bench:1", str(ctx),
                            env=denv))
                    if pm is not None:
                        contenders["podman"] = lambda: timed(lambda: pm(
                            "build", "-q", "--network", "none", *extra, *Podman.RUN_LIMITS, "-t", "bench:1",
                            str(ctx)))
                    results = alternate(contenders, args.rounds)
                    report(f"{name} Dockerfile, {mode}", results)
        finally:
            engine.close()
            for peer in peers:
                peer.close()


if __name__ == "__main__":
    main()
