"""What portside cannot go below: the OCI runtime and the interpreter, next to Docker.

The run and exec targets are ratios to Docker's time. This benchmark measures, in one run and
alternating, the parts of a portside ``run --rm busybox true`` / ``exec CTR true`` that are not
portside's own code, so the README can say how far the targets are reachable at all:

* ``runc run`` of exactly the bundle portside generates (Docker's defaults: 14 capabilities,
  masked paths, the seccomp profile of containers-common), and of the same bundle without the
  seccomp filter (runc compiles the profile with libseccomp in every container's init);
* ``runc exec`` of ``true`` in a running container, with and without the filter, and portside's
  own exec path (runtime/fastexec.py: no OCI runtime) from a warm process;
* a bare interpreter (``python3 -I -S -c pass``), the CLI's own (its venv's ``python -c pass``,
  with ``site``), the installed CLI's ``portside --version`` and its quick ``exec``
  (engine/quickexec.py); the fast path from a warm process with pipes (``fork``) and with
  descriptors (``clone3`` into the container's cgroup);
* ``docker run --rm --network none busybox true`` and ``docker exec CTR true``.

Needs root. Not a test: ``.venv/bin/python bench/bench_floor.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    PORTSIDE, Docker, Portside, alternate, available, machine_line, report, run, timed, workspace,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    with workspace() as work:
        print(f"# floors — {machine_line()}\n")
        ps = Portside(work)
        ps("image", "bootstrap", "busybox", "-q")
        archive = work / "busybox.tar"
        ps("save", "-o", str(archive), "busybox")
        from portside.engine.api import Engine

        engine = Engine(root=ps.root)
        rec = engine.containers.create("busybox", ["true"], network_mode="none")
        lifecycle = engine.containers.lifecycle
        record = lifecycle.store.resolve(rec.id)
        lifecycle.mount_rootfs(record)
        spec = lifecycle.build_spec(record)
        spec["process"]["terminal"] = False
        spec["root"]["path"] = str(lifecycle.paths(record).rootfs)
        spec["linux"].pop("cgroupsPath", None)
        bare = copy.deepcopy(spec)
        bare["linux"].pop("seccomp", None)
        state = work / "runc-state"
        bundles = {}
        for name, doc in (("seccomp", spec), ("no-seccomp", bare)):
            bundles[name] = work / f"bundle-{name}"
            bundles[name].mkdir()
            (bundles[name] / "config.json").write_text(json.dumps(doc))
        counter = iter(range(1_000_000))

        def runc_run(bundle: Path) -> float:
            cid = f"floor-{next(counter)}"
            return timed(lambda: run(["runc", "--root", str(state), "run", "--bundle",
                                      str(bundle), cid]))

        # long-running containers for exec
        for name, bundle in bundles.items():
            doc = json.loads((bundle / "config.json").read_text())
            doc["process"]["args"] = ["sleep", "3600"]
            (bundle / "config.json").write_text(json.dumps(doc))
            subprocess.run(["runc", "--root", str(state), "run", "-d", "--bundle", str(bundle),
                            f"exec-{name}"], check=True, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            doc["process"]["args"] = ["true"]
            (bundle / "config.json").write_text(json.dumps(doc))
            (work / f"process-{name}.json").write_text(json.dumps(doc["process"]))

        def runc_exec(name: str) -> float:
            return timed(lambda: run(["runc", "--root", str(state), "exec", "--process",
                                      str(work / f"process-{name}.json"), f"exec-{name}"]))

        docker = None
        started: list = []
        try:
            contenders = {
                "runc run (Docker's seccomp profile)": lambda: runc_run(bundles["seccomp"]),
                "runc run (no seccomp)": lambda: runc_run(bundles["no-seccomp"]),
                "python3 -I -S -c pass": lambda: timed(lambda: run(
                    [sys.executable, "-I", "-S", "-c", "pass"])),
                "portside --version": lambda: timed(lambda: run([PORTSIDE, "--version"])),
            }
            # portside's own exec path without runc (runtime/fastexec.py), in a warm process:
            # what is left of `portside exec` once the interpreter and the CLI are paid for
            running = engine.containers.run("busybox", ["sleep", "3600"], detach=True,
                                            network_mode="none", name="floor-exec")
            started.append(running)

            def fast_exec() -> float:
                start = time.perf_counter()
                code, _ = running.exec_run(["true"])
                assert code == 0
                return time.perf_counter() - start

            devnull = os.open(os.devnull, os.O_WRONLY)

            def direct_exec() -> float:
                # descriptors from a caller of one thread: clone3 into the cgroup (no Popen)
                start = time.perf_counter()
                proc = lifecycle.exec_run(running.id, ["true"], stdin=subprocess.DEVNULL,
                                          stdout=devnull, stderr=devnull)
                assert proc.wait() == 0 and type(proc).__name__ == "DirectProcess"
                return time.perf_counter() - start

            cli_python = str(Path(PORTSIDE).parent / "python")
            exec_contenders = {
                "runc exec (Docker's seccomp profile)": lambda: runc_exec("seccomp"),
                "runc exec (no seccomp)": lambda: runc_exec("no-seccomp"),
                "portside's fast path, engine API (warm, pipes: fork)": fast_exec,
                "portside's fast path, engine API (warm, descriptors: clone3)": direct_exec,
                "python3 -I -S -c pass": contenders["python3 -I -S -c pass"],
                "the CLI's interpreter: python -c pass (its venv, site)": lambda: timed(
                    lambda: run([cli_python, "-c", "pass"])),
                "portside --version": contenders["portside --version"],
                "portside exec CTR true (the CLI's quick path)": lambda: timed(
                    lambda: ps("exec", "floor-exec", "true")),
            }
            # the engine's first exec keeps the cache the quick path reads
            run([PORTSIDE, "exec", "floor-exec", "true"], env=dict(ps.env, PORTSIDE_QUICK_EXEC="0"))
            if available("docker"):
                docker = Docker(work)
                docker("load", "-i", str(archive))
                contenders["docker"] = lambda: timed(lambda: docker(
                    "run", "--rm", "--network", "none", "busybox", "true"))
                docker("run", "-d", "--name", "floor", "--network", "none", "busybox",
                       "sleep", "3600")
                exec_contenders["docker"] = lambda: timed(lambda: docker("exec", "floor", "true"))
            report("run --rm busybox true: the parts portside does not control",
                   alternate(contenders, args.rounds, warmup=2))
            report("exec CTR true: the parts portside does not control",
                   alternate(exec_contenders, args.rounds, warmup=2))
        finally:
            for name in bundles:
                subprocess.run(["runc", "--root", str(state), "delete", "-f", f"exec-{name}"],
                               stdin=subprocess.DEVNULL, capture_output=True)
            for ctr in started:
                ctr.remove(force=True)
            lifecycle.unmount_rootfs(record)
            engine.containers.get(rec.id).remove(force=True)
            engine.close()
            if docker is not None:
                docker.close()
            ps.close()
            os.environ.pop("PORTSIDE_ROOT", None)


if __name__ == "__main__":
    main()
