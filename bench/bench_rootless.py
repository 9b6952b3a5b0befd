"""Rootless: ``run --rm busybox true`` next to rootless podman, and a trivial notebook cell.

Usage (as root): ``.venv/bin/python bench/bench_rootless.py [--rounds N]``

Root makes a user (``portside-bench``, with a subordinate range; removed afterwards with all it
ran) and installs portside for them as the rootless tests do (a venv of Debian's python3 with this
checkout's wheel, ``tests/rootless/harness.py``). Everything measured then runs **as that user**:

* ``portside run --rm --network none busybox true`` (the CLI: a new process that joins the user
  namespace; crun, the rootless default, and ``--runtime runc``) and ``podman run --rm --network
  none busybox true`` (podman 4.3 rootless: its own pause process, runc, native overlay),
  alternating, medians;
* the same on each one's default network (portside: the container's own slirp4netns, see
  ``portside.engine.network.usermode``; podman 4.3: slirp4netns too), in the same rounds: what
  the default network adds is its median minus ``--network none``'s; and on a user network
  (``network create benchnet``: portside's bridge in the user's network namespace, podman's in
  its rootless-netns), when podman can make one here;
* a trivial ``%%container exec`` cell (``x = 1``) through the agent, with the engine in an engine
  process (how a Jupyter kernel reaches it rootless: ``portside.engine.remote``) and with a
  local engine: p50 and p99.

Podman and portside load the same busybox archive. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
USER = "portside-bench"
CACHE = Path(os.environ.get("PORTSIDE_TEST_CACHE", "/var/cache/portside-test"))


def outer(rounds: int) -> None:
    sys.path.insert(0, str(REPO / "tests" / "rootless"))
    import harness

    if os.geteuid() != 0:
        sys.exit("bench_rootless.py makes a user: run it as root")
    venv = harness.UserVenv()
    tun = harness.open_tun()
    try:
        harness.make_user(USER, True)
        user = harness.TestUser(USER, venv)
        script = venv.dir / "bench_rootless.py"
        shutil.copy(__file__, script)
        os.chmod(script, 0o644)
        archives = sorted(CACHE.glob("debian-bookworm-python3-*.tar"))
        proc = user.run([str(venv.python), str(script), "--inner", "--rounds", str(rounds),
                         "--debian", str(archives[-1]) if archives else ""], check=False,
                        timeout=3600)
        sys.stdout.write(proc.out)
        if proc.returncode != 0:
            sys.exit(f"the benchmark failed as {USER}: {proc.err[-3000:]}")
    finally:
        harness.remove_user(USER)
        harness.restore_tun(tun)
        venv.remove()


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def percentiles(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"median_ms": statistics.median(s) * 1000,
            "p50_ms": s[min(len(s) - 1, int(len(s) * 0.5))] * 1000,
            "p99_ms": s[min(len(s) - 1, int(len(s) * 0.99))] * 1000, "n": len(s)}


def inner(rounds: int, debian: str) -> None:
    home = Path.home()
    root = home / "bench-root"
    env = dict(os.environ, PORTSIDE_ROOT=str(root))
    bindir = Path(sys.executable).parent
    portside = str(bindir / "portside")
    podman = ["podman", "--cgroup-manager", "cgroupfs", "--events-backend", "none",
              "--runtime", "runc", "--storage-driver", "overlay"]
    subprocess.run([portside, "image", "bootstrap", "busybox", "-q"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    archive = home / "busybox.tar"
    subprocess.run([portside, "save", "-o", str(archive), "busybox"], env=env, check=True)
    subprocess.run([*podman, "load", "-q", "-i", str(archive)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([portside, "network", "create", "benchnet"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    podman_net = subprocess.run([*podman, "network", "create", "benchnet"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    contenders = {
        "portside": [portside, "run", "--rm", "--network", "none", "busybox", "true"],
        "podman": [*podman, "run", "--rm", "--network", "none", "busybox", "true"],
        "portside with runc": [portside, "run", "--rm", "--runtime", "runc", "--network", "none",
                               "busybox", "true"],
        "portside default network": [portside, "run", "--rm", "busybox", "true"],
        "podman default network": [*podman, "run", "--rm", "busybox", "true"],
        "portside user network": [portside, "run", "--rm", "--network", "benchnet", "busybox",
                                  "true"],
    }
    if podman_net:
        contenders["podman user network"] = [*podman, "run", "--rm", "--network", "benchnet",
                                             "busybox", "true"]
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for i in range(rounds + 2):
        for name, argv in contenders.items():
            t = timed(argv, env)
            if i >= 2:
                times[name].append(t)
    result: dict = {"run": {k: statistics.median(v) * 1000 for k, v in times.items()}}

    if debian:
        from portside.engine.api import Engine
        from portside.engine.remote.client import spawn
        from portside.kernel.client import AgentSession, container_exec_factory

        local = Engine(root=root)  # joins the namespace now, while this process has no threads
        remote = spawn(str(root))
        with open(debian, "rb") as f:
            remote.images.load(f)
        ctr = remote.containers.run("portside/debian:bookworm", ["sleep", "3600"],
                                    detach=True, name="bench-agent", network_mode="none")
        try:
            for label, engine in (("engine process", remote), ("local engine", local)):
                sess = AgentSession(container_exec_factory(engine, "bench-agent"),
                                    label="bench-agent")
                sess.start()
                for _ in range(100):
                    sess.execute("x = 1")
                samples = []
                for _ in range(2000):
                    t0 = time.perf_counter()
                    sess.execute("x = 1")
                    samples.append(time.perf_counter() - t0)
                sess.close()
                result.setdefault("cell", {})[label] = percentiles(samples)
        finally:
            ctr.remove(force=True)
            remote.close()
    subprocess.run([*podman, "system", "reset", "-f"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    subprocess.run([portside, "system", "reset", "--force"], env=env,
                   stdout=subprocess.DEVNULL)
    run = result["run"]
    print(f"# rootless, as {os.environ.get('USER')} — {os.uname().release}, "
          f"{os.cpu_count()} CPUs\n")
    print(f"run --rm --network none busybox true (medians of {rounds}, alternating):")
    print(f"  portside CLI  {run['portside']:7.1f} ms")
    print(f"  podman        {run['podman']:7.1f} ms")
    print(f"  portside / podman = {run['portside'] / run['podman']:.2f} (target <= 0.5)")
    print(f"  portside CLI with --runtime runc {run['portside with runc']:7.1f} ms (the default is "
          f"crun: {run['portside with runc'] - run['portside']:+.1f} ms)")
    print("run --rm busybox true on the default network (slirp4netns), same rounds:")
    for name in ("portside", "podman"):
        net = run[f"{name} default network"]
        print(f"  {name + ' CLI' if name == 'portside' else name:12}  {net:7.1f} ms  "
              f"(+{net - run[name]:.1f} ms over --network none)")
    print(f"  the default network adds {run['portside default network'] - run['portside']:.1f}"
          f" ms to portside's run (target <= 20 ms)")
    print("run --rm --network benchnet busybox true (a user network), same rounds:")
    for name in ("portside", "podman"):
        net = run.get(f"{name} user network")
        if net is not None:
            print(f"  {name + ' CLI' if name == 'portside' else name:12}  {net:7.1f} ms  "
                  f"(+{net - run[name]:.1f} ms over --network none)")
    for label, p in (result.get("cell") or {}).items():
        print(f"trivial cell (x = 1) through the agent, {label}: p50 {p['p50_ms']:.3f} ms, "
              f"p99 {p['p99_ms']:.3f} ms, median {p['median_ms']:.3f} ms (n={p['n']})")
    print(json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--debian", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        inner(args.rounds, args.debian)
    else:
        outer(args.rounds)


if __name__ == "__main__":
    main()
