"""Container start and exec latency: portside (engine API in a warm process, and the CLI) vs
``docker run --rm`` and ``podman run --rm``, and ``exec CTR true`` on all three (portside's
exec also with its fast path off, ``PORTSIDE_FAST_EXEC=0``: through ``runc exec``). The CLI is
also timed with its lean path off (``PORTSIDE_LEAN=0``: the full argument parser, see
engine/lean.py), and ``exec`` with its quick path off (``PORTSIDE_QUICK_EXEC=0``: the engine's
exec, see engine/quickexec.py), so the same run shows what each saves.

Usage: ``.venv/bin/python bench/bench_run.py [--rounds N] [--network none|bridge]``

The image is the busybox image portside bootstraps from Debian's busybox-static; Docker and
podman load the very same image from a portside ``save`` archive.
"""

from __future__ import annotations

import argparse
import os
import time

from harness import (PORTSIDE, Docker, Podman, Portside, alternate, available, machine_line, report,
                     run, timed, workspace)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--network", choices=("none", "bridge"), default="none")
    args = ap.parse_args()
    net = args.network
    with workspace() as work:
        print(f"# run --rm busybox true, --network {net} — {machine_line()}\n")
        ps = Portside(work)
        ps("image", "bootstrap", "busybox", "-q")
        archive = work / "busybox.tar"
        ps("save", "-o", str(archive), "busybox")
        peers = [ps]
        os.environ["PORTSIDE_ROOT"] = str(ps.root)
        from portside.engine.api import Engine

        engine = Engine()
        net_args = ["--network", net] if net == "none" else []

        def api_run() -> float:
            start = time.perf_counter()
            engine.containers.run("busybox", ["true"], remove=True,
                                  network_mode="none" if net == "none" else "default")
            return time.perf_counter() - start

        full_cli = dict(ps.env, PORTSIDE_LEAN="0")
        through_engine = dict(ps.env, PORTSIDE_QUICK_EXEC="0")
        contenders = {
            "portside-api": api_run,
            "portside": lambda: timed(lambda: ps("run", "--rm", *net_args, "busybox", "true")),
            # the same CLI through the full argument parser
            "portside-full": lambda: timed(lambda: run([PORTSIDE, "run", "--rm", *net_args,
                                                        "busybox", "true"], env=full_cli)),
        }
        docker = podman = None
        try:
            if available("docker"):
                docker = Docker(work, bridge=(net == "bridge"))
                peers.append(docker)
                docker("load", "-i", str(archive))
                contenders["docker"] = lambda: timed(
                    lambda: docker("run", "--rm", "--network", net if net == "none" else "bridge",
                                   "busybox", "true"))
            if available("podman"):
                podman = Podman(work)
                peers.append(podman)
                podman("load", "-i", str(archive))
                try:  # podman's crun refuses a cgroup v1/v2 hybrid host
                    podman("run", "--rm", *Podman.RUN_LIMITS, "--network", "none", "busybox",
                           "true")
                except RuntimeError as exc:
                    print(f"(podman left out: {str(exc).splitlines()[-1][-120:]})\n")
                    podman = None
                else:
                    contenders["podman"] = lambda: timed(
                        lambda: podman("run", "--rm", *Podman.RUN_LIMITS, "--network",
                                       net if net == "none" else "bridge", "busybox", "true"))
            results = alternate(contenders, args.rounds, warmup=2)
            report(f"run --rm busybox true (--network {net})", results, baseline="portside")

            # exec into a running container
            ps("run", "-d", "--name", "benchexec", *net_args, "busybox", "sleep", "3600")
            through_runc = dict(ps.env, PORTSIDE_FAST_EXEC="0")
            target = engine.containers.get("benchexec")

            def api_exec() -> float:
                start = time.perf_counter()
                code, _ = target.exec_run(["true"])
                assert code == 0
                return time.perf_counter() - start

            ex = {
                "portside-api": api_exec,
                "portside": lambda: timed(lambda: ps("exec", "benchexec", "true")),
                # the same CLI with the fast path off: `runc exec` does the joining
                "portside-runc": lambda: timed(lambda: run([PORTSIDE, "exec", "benchexec", "true"],
                                                           env=through_runc)),
                "portside-full": lambda: timed(lambda: run([PORTSIDE, "exec", "benchexec", "true"],
                                                           env=full_cli)),
                # the CLI without its quick path (engine/quickexec.py): the engine's exec
                "portside-engine": lambda: timed(lambda: run(
                    [PORTSIDE, "exec", "benchexec", "true"], env=through_engine)),
            }
            # the engine's first exec keeps the cache the quick path reads
            run([PORTSIDE, "exec", "benchexec", "true"], env=through_engine)
            if docker:
                docker("run", "-d", "--name", "benchexec", "--network", "none", "busybox",
                       "sleep", "3600")
                ex["docker"] = lambda: timed(lambda: docker("exec", "benchexec", "true"))
            if podman:
                podman("run", "-d", "--name", "benchexec", *Podman.RUN_LIMITS, "--network", "none",
                       "busybox", "sleep", "3600")
                ex["podman"] = lambda: timed(lambda: podman("exec", "benchexec", "true"))
            results = alternate(ex, args.rounds, warmup=2)
            report("exec CTR true", results, baseline="portside")
            rss = _monitor_rss(engine.containers.get("benchexec").id)
            if rss:
                print(f"monitor RSS per running container: {rss / 1024:.1f} MB\n")
            ps("rm", "-f", "benchexec")
        finally:
            engine.close()
            for peer in peers:
                peer.close()


def _monitor_rss(container_id: str) -> int:
    """VmRSS (kB) of the container's monitor, found by its marker and the id in argv."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
            if b"portside-monitor" not in cmdline or container_id.encode() not in cmdline:
                continue
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            continue
    return 0


if __name__ == "__main__":
    main()
