"""Side-by-side benchmark harness: portside against Docker and podman on the same machine.

Benchmarks are not tests. Each one runs every contender alternately (A B C A B C …) so that
background noise hits all of them alike, and reports medians and ratios. The harness starts what
it compares against and stops it afterwards:

* Docker: Debian's ``dockerd`` (package docker.io) with its own data root, exec root and socket
  under a temporary folder, no iptables and no default bridge unless a benchmark asks for them;
  the client is ``/usr/bin/docker`` pointed at that socket.
* podman: a throwaway ``--root``/``--runroot``, cgroupfs, no events.
* portside: the CLI as users install it (the wheel in ``.bench-venv``, made by ``make
  bench-venv``; ``PORTSIDE_BENCH_CLI`` names another), else the development venv's, with a fresh
  ``PORTSIDE_ROOT``.

Missing peers are reported and skipped, never installed silently: ``make bench`` installs them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]


def _portside_cli() -> str:
    """The installed wheel's CLI when it is newer than every source file, else the dev venv's."""
    if os.environ.get("PORTSIDE_BENCH_CLI"):
        return os.environ["PORTSIDE_BENCH_CLI"]
    installed = REPO / ".bench-venv" / "bin" / "portside"
    if installed.exists():
        made = installed.stat().st_mtime
        newest = max(p.stat().st_mtime for top in ("engine", "portside") for p in
                     (REPO / top).rglob("*.py"))
        if newest <= made:
            return str(installed)
        print("bench: .bench-venv is older than the sources (make bench-venv): using .venv",
              file=sys.stderr)
    return str(REPO / ".venv" / "bin" / "portside")


PORTSIDE = _portside_cli()
DOCKER = "/usr/bin/docker"
DOCKERD = "/usr/sbin/dockerd"


def run(cmd: list[str], env: dict | None = None, check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}… exited {proc.returncode}: "
                           f"{proc.stderr.decode(errors='replace')[-500:]}")
    return proc


@dataclass
class Result:
    name: str
    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")


class Portside:
    name = "portside"

    def __init__(self, workdir: Path) -> None:
        self.root = workdir / "portside-root"
        self.env = dict(os.environ, PORTSIDE_ROOT=str(self.root))

    def __call__(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return run([PORTSIDE, *args], env=self.env, **kw)

    def reset(self) -> None:
        run(["umount", "-R", str(self.root)], check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def close(self) -> None:
        self.reset()


class Docker:
    name = "docker"

    def __init__(self, workdir: Path, *, bridge: bool = False) -> None:
        self.dir = workdir / "docker"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sock = self.dir / "docker.sock"
        cmd = [DOCKERD, "--data-root", str(self.dir / "data"), "--exec-root", str(self.dir / "exec"),
               "--pidfile", str(self.dir / "docker.pid"), "-H", f"unix://{self.sock}",
               "--storage-driver", "overlay2", "--log-level", "error"]
        self.tables_before = nft_tables()
        self.bridge = bridge
        if not bridge:
            cmd += ["--bridge", "none", "--iptables=false", "--ip6tables=false"]
        self.log = open(self.dir / "dockerd.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.sock.exists() and self("version", check=False).returncode == 0:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.close()
        raise RuntimeError("dockerd did not start: " + (self.dir / "dockerd.log").read_text()[-800:])

    def __call__(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return run([DOCKER, "-H", f"unix://{self.sock}", *args], **kw)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        if self.bridge:
            run(["ip", "link", "delete", "docker0"], check=False)
            drop_new_tables(self.tables_before)
        for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
            mnt = line.split()[4]
            if mnt.startswith(str(self.dir)):
                run(["umount", "-l", mnt], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


class Podman:
    name = "podman"
    #: this host lacks CAP_SYS_RESOURCE; podman's default rlimits would be refused by runc.
    #: podman runs with runc, as portside's root mode does: with crun installed podman picks
    #: it, and crun refuses this host's hybrid cgroup layout.
    RUN_LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "podman"
        self.runroot = Path(tempfile.mkdtemp(prefix="pbench-", dir="/tmp"))
        self.tables_before = nft_tables()
        # runc: podman picks crun where it is installed, and crun refuses this host's hybrid
        # cgroups (the interop tests force runc the same way)
        self.args = ["podman", "--root", str(self.dir / "root"), "--runroot", str(self.runroot),
                     "--cgroup-manager", "cgroupfs", "--events-backend", "none",
                     "--storage-driver", "overlay", "--runtime", "runc"]

    def __call__(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return run(self.args + list(args), **kw)

    def close(self) -> None:
        run(self.args + ["rm", "-af"], check=False)
        run(self.args + ["system", "reset", "-f"], check=False)
        run(["ip", "link", "delete", "podman0"], check=False)
        drop_new_tables(self.tables_before)
        for d in (self.dir, self.runroot):
            run(["umount", "-R", str(d)], check=False)
            shutil.rmtree(d, ignore_errors=True)


def nft_tables() -> set[str]:
    """The host's nftables tables (``family name``), to remove what a peer left behind."""
    out = run(["nft", "list", "tables"], check=False).stdout.decode()
    return {line.split(None, 1)[1] for line in out.splitlines() if line.startswith("table ")}


def drop_new_tables(before: set[str]) -> None:
    """Delete the tables a peer (dockerd's iptables, podman's netavark) created during a run,
    so a benchmark leaves the host's firewall as it found it."""
    for table in sorted(nft_tables() - before):
        run(["nft", "delete", "table", *table.split()], check=False)


def available(name: str) -> bool:
    return {"docker": Path(DOCKERD).exists() and Path(DOCKER).exists(),
            "podman": shutil.which("podman") is not None,
            "portside": Path(PORTSIDE).exists()}[name]


def alternate(contenders: dict[str, Callable[[], float]], rounds: int,
              warmup: int = 1) -> dict[str, Result]:
    """Run each contender once per round, in turn; each callable returns its measured seconds."""
    results = {name: Result(name) for name in contenders}
    for i in range(warmup + rounds):
        for name, fn in contenders.items():
            seconds = fn()
            if i >= warmup:
                results[name].times.append(seconds)
    return results


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def report(title: str, results: dict[str, Result], baseline: str = "portside") -> str:
    """A markdown table of medians, with each tool's time as a ratio of Docker's (or of the
    baseline's when Docker did not run)."""
    ref_name = "docker" if "docker" in results else baseline
    ref = results[ref_name].median
    lines = [f"## {title}", "", f"| tool | median | runs | time / {ref_name}'s |", "|---|---|---|---|"]
    for name, res in results.items():
        ratio = res.median / ref if ref else float("nan")
        lines.append(f"| {name} | {res.median * 1000:.0f} ms | {len(res.times)} | {ratio:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    return text


@contextlib.contextmanager
def workspace():
    path = Path(tempfile.mkdtemp(prefix="portside-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def machine_line() -> str:
    cpu = "unknown cpu"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cli = "installed wheel" if ".bench-venv" in PORTSIDE else PORTSIDE
    return (f"{os.cpu_count()} cores, {cpu}, kernel {os.uname().release}, "
            f"python {sys.version.split()[0]}, portside CLI: {cli}")
