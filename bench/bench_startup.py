"""Start-up cost of the commands that run most: ``portside ps``, ``ps -a``, ``images``, ``exec``,
``run``.

Every command opens the store, and opening it reclaims what killed processes left behind
(:mod:`portside.engine.store.leftovers`). This benchmark shows what that costs when there is
nothing to reclaim, the usual case: it times the CLI (a new process per call, as a user runs it)
on a root with a few images and stopped containers (and, as root, ``exec up true`` in a running
container and ``run --rm --network none busybox true``, whose start marks the container while it
starts), alternating with a bare
interpreter
(``python3 -I -S -c pass``) and, with ``--baseline CLI``, another build of portside (for a
before/after comparison in one run), and it times the reaping pass itself in-process.

Not a test: ``.venv/bin/python bench/bench_startup.py [--rounds N] [--baseline PATH]``.
Needs root only for the containers it creates (it makes none without root).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import PORTSIDE, Portside, alternate, machine_line, run, timed, workspace  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--baseline", help="another portside CLI to compare with (same root)")
    args = ap.parse_args()
    with workspace() as work:
        print(f"# start-up — {machine_line()}\n")
        ps = Portside(work)
        try:
            _bench(ps, args)
        finally:
            if os.geteuid() == 0:  # the containers go whatever happened
                ps("rm", "-f", "c0", "c1", "c2", "up", check=False)


def _bench(ps: Portside, args: argparse.Namespace) -> None:
    ps("image", "bootstrap", "busybox", "-q")
    ps("tag", "busybox", "other:1")
    if os.geteuid() == 0:
        for i in range(3):
            ps("create", "--name", f"c{i}", "--network", "none", "busybox", "true")
        ps("run", "-d", "--name", "up", "--network", "none", "busybox", "sleep", "3600")
    clis = {"portside": PORTSIDE}
    if args.baseline:
        clis["baseline"] = args.baseline
    contenders = {"python3 -I -S -c pass": lambda: timed(
        lambda: run([sys.executable, "-I", "-S", "-c", "pass"]))}
    commands = [["ps"], ["ps", "-a"], ["images"]]
    if os.geteuid() == 0:  # a start writes and removes its marker (runtime.interrupted)
        commands.append(["exec", "up", "true"])
        commands.append(["run", "--rm", "--network", "none", "busybox", "true"])
    for command in commands:
        for name, cli in clis.items():
            contenders[f"{name} {' '.join(command)}"] = (
                lambda cli=cli, command=command: timed(
                    lambda: run([cli, *command], env=ps.env)))
    results = alternate(contenders, args.rounds, warmup=3)
    print("| command | median | p10–p90 |")
    print("|---|---|---|")
    for name, res in results.items():
        deciles = statistics.quantiles(res.times, n=10)
        print(f"| `{name}` | {res.median * 1000:.1f} ms | "
              f"{deciles[0] * 1000:.1f}–{deciles[-1] * 1000:.1f} ms |")

    from portside.engine.api import Engine
    from portside.engine.store import anything_left, leftovers

    engine = Engine(root=ps.root)
    engine.db  # noqa: B018 - opens the store (and reaps once)
    for what, fn in (("the check every command makes (store.anything_left)",
                      lambda: anything_left(engine.root, engine.db)),
                     ("a whole reaping pass (store.leftovers.reap)",
                      lambda: leftovers.reap(engine.root, engine.db,
                                             lambda: engine.image_store))):
        samples = []
        for _ in range(2000):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        print(f"\n{what}, nothing to reclaim: median "
              f"{statistics.median(samples) * 1e6:.0f} µs over {len(samples)} calls")
    engine.close()

if __name__ == "__main__":
    main()
