"""A real Slurm cluster on loopback, from Debian's packages, for the Slurm context's tests.

:class:`SlurmCluster` starts, under one temporary folder:

* ``munged`` (its socket path kept short: a unix socket path has at most 107 bytes),
* ``slurmctld`` and two ``slurmd -N node1|node2`` on free 127.0.0.1 ports, both "nodes" being
  this host, with ``select/cons_tres``, ``proctrack/linuxproc``, ``task/none`` and no scheduling
  delay, so a job starts within milliseconds of its submission,
* two GPUs per node (``Gres=gpu:2``): character devices made with ``mknod`` (Slurm refuses plain
  files), major 195 as NVIDIA's, minors 0-1 on node1 and 2-3 on node2,
* a CDI spec folder naming those four devices ``nvidia.com/gpu=0..3`` (what ``nvidia-ctk``
  would write on a real host), for the node's portside to map them into containers.

It is up and idle in a fraction of a second. :meth:`SlurmCluster.stop` cancels every job and
waits for it, stops the slurmds first, then slurmctld and munged, and removes the folder; any
process the daemons started (slurmstepd, slurmscriptd) is waited for too. Every process the
cluster starts carries ``PORTSIDE_TEST_SLURM=<folder>`` in its environment, so the clean-up can
find what is ours and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

NODES = ("node1", "node2")
GPUS_PER_NODE = 2
NVIDIA_MAJOR = 195


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.02):
    """Poll ``predicate`` until it returns something true; raise naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def _marked_pids(marker: str) -> list[int]:
    """Processes whose environment holds ``PORTSIDE_TEST_SLURM=<marker>``."""
    needle = f"PORTSIDE_TEST_SLURM={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            try:
                state = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[0]
            except OSError:
                continue
            if state != "Z":
                found.append(int(entry))
    return found


class SlurmCluster:
    """One loopback cluster. ``env`` is what a client needs (``SLURM_CONF``, the marker)."""

    def __init__(self, *, kill_wait: int = 5, min_job_age: int = 300,
                 epilog: list[str] | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="psl-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.kill_wait = kill_wait
        self.min_job_age = min_job_age
        self.epilog = epilog
        self.conf = self.dir / "slurm.conf"
        self.cdi_dir = self.dir / "cdi"
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = dict(os.environ, SLURM_CONF=str(self.conf), PORTSIDE_TEST_SLURM=str(self.dir))
        self.env.pop("SLURM_JOB_ID", None)

    # ---------------------------------------------------------------------------- set-up
    def devices(self, node: str) -> list[Path]:
        """The fake GPU device nodes of ``node``, in Slurm's index order."""
        first = NODES.index(node) * GPUS_PER_NODE
        return [self.dir / "dev" / f"gpu{first + i}" for i in range(GPUS_PER_NODE)]

    def _write_files(self) -> None:
        d = self.dir
        for sub in ("m", "state", "spool", "log", "dev", *(f"spool/{n}" for n in NODES)):
            (d / sub).mkdir()
        key = d / "m" / "key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o600)
        for node in NODES:
            for path in self.devices(node):
                minor = int(path.name[3:])
                os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(NVIDIA_MAJOR, minor))
        self.ports = {"ctld": free_port(), **{n: free_port() for n in NODES}}
        lines = [
            "ClusterName=portside",
            "SlurmctldHost=localhost(127.0.0.1)",
            f"SlurmctldPort={self.ports['ctld']}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={d}/m/s",
            f"StateSaveLocation={d}/state",
            f"SlurmdSpoolDir={d}/spool/%n",
            f"SlurmctldPidFile={d}/slurmctld.pid",
            f"SlurmdPidFile={d}/slurmd.%n.pid",
            f"SlurmctldLogFile={d}/log/slurmctld.log",
            f"SlurmdLogFile={d}/log/slurmd.%n.log",
            f"PlugStackConfig={d}/plugstack.conf",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SchedulerType=sched/builtin",
            "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0",
            "GresTypes=gpu",
            "MpiDefault=none",
            "ReturnToService=2",
            # the nodes claim 4 CPUs whatever this host has (CI has 2), so GPUs, not CPUs,
            # are what runs out first
            "SlurmdParameters=config_overrides",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            f"KillWait={self.kill_wait}",
            f"MinJobAge={self.min_job_age}",
        ]
        if self.epilog:
            # Slurm runs Epilog= with no arguments: a script, as a site would write it, that
            # does its work only while the test has switched it on (epilog.on)
            script = d / "epilog.sh"
            script.write_text(f"#!/bin/sh\n[ -e {d}/epilog.on ] || exit 0\n"
                              f"exec {' '.join(shlex.quote(a) for a in self.epilog)} "
                              f">>{d}/log/epilog.log 2>&1\n")
            os.chmod(script, 0o755)
            lines.append(f"Epilog={script}")
        for node in NODES:
            lines.append(f"NodeName={node} NodeHostname=localhost NodeAddr=127.0.0.1 "
                         f"Port={self.ports[node]} CPUs=4 RealMemory=4000 "
                         f"Gres=gpu:{GPUS_PER_NODE} State=UNKNOWN")
        lines.append(f"PartitionName=gpu Nodes={','.join(NODES)} Default=YES MaxTime=INFINITE "
                     "State=UP")
        lines.append(f"PartitionName=tiny Nodes={NODES[0]} MaxTime=30 State=UP")
        self.conf.write_text("\n".join(lines) + "\n")
        (d / "gres.conf").write_text("".join(
            f"NodeName={node} Name=gpu File={self.devices(node)[0].parent}/"
            f"gpu[{self.devices(node)[0].name[3:]}-{self.devices(node)[-1].name[3:]}]\n"
            for node in NODES))
        (d / "plugstack.conf").write_text("")
        self.cdi_dir.mkdir()
        devices = [{"name": str(i), "containerEdits": {"deviceNodes": [
            {"path": f"/dev/nvidia{i}", "hostPath": str(d / "dev" / f"gpu{i}")}]}}
            for i in range(len(NODES) * GPUS_PER_NODE)]
        (self.cdi_dir / "nvidia.json").write_text(json.dumps(
            {"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu", "devices": devices}))

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.dir / "log" / f"{name}.out", "wb")
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, env=self.env, cwd=self.dir,
                                    start_new_session=True)
        finally:
            log.close()
        self.procs[name] = proc
        return proc

    def start(self) -> "SlurmCluster":
        try:
            self._write_files()
            d = self.dir
            self._spawn("munged", ["munged", "-F", f"--socket={d}/m/s", f"--key-file={d}/m/key",
                                   f"--pid-file={d}/m/pid", f"--log-file={d}/log/munged.log",
                                   f"--seed-file={d}/m/seed", "--num-threads=4"])
            wait_for(lambda: (d / "m" / "s").exists() or self._died("munged"), 10,
                     "munged's socket")
            self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
            for node in NODES:
                self._spawn(node, ["slurmd", "-D", "-N", node, "-f", str(self.conf)])
            wait_for(self._idle, 20, "both nodes idle")
        except BaseException:
            self.stop()
            raise
        return self

    def _died(self, name: str) -> bool:
        proc = self.procs[name]
        if proc.poll() is not None:
            out = (self.dir / "log" / f"{name}.out").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{name} exited with {proc.returncode}: {out}")
        return False

    def _idle(self) -> bool:
        for name in self.procs:
            self._died(name)
        proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True,
                              text=True, env=self.env, timeout=20)
        states = dict(line.split() for line in proc.stdout.splitlines() if line.strip())
        return all(states.get(n) == "idle" for n in NODES)

    @contextlib.contextmanager
    def epilog_on(self):
        """While the block runs, slurmd's Epilog does its work (see ``epilog``)."""
        switch = self.dir / "epilog.on"
        switch.touch()
        try:
            yield
        finally:
            switch.unlink()

    # ---------------------------------------------------------------------------- use
    def run(self, *argv: str, check: bool = True, timeout: float = 30,
            **kw) -> subprocess.CompletedProcess:
        """Run a Slurm client command (sbatch, squeue, scontrol…) against this cluster."""
        proc = subprocess.run(list(argv), capture_output=True, text=True, env=self.env,
                              timeout=timeout, stdin=subprocess.DEVNULL, **kw)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr}")
        return proc

    def jobs(self) -> dict[str, dict[str, str]]:
        """Every job slurmctld knows, by id: name, state, reason, node."""
        out = self.run("squeue", "-h", "-t", "all", "-o", "%i|%j|%T|%r|%N").stdout
        jobs = {}
        for line in out.splitlines():
            jid, name, state, reason, node = line.split("|")
            jobs[jid] = {"name": name, "state": state, "reason": reason, "node": node}
        return jobs

    def active_jobs(self) -> list[str]:
        return [j for j, v in self.jobs().items()
                if v["state"] in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING",
                                  "SUSPENDED", "STOPPED")]

    def job_processes(self) -> list[int]:
        """Processes of ours still alive: slurmstepd and what it runs, not the daemons (nor
        slurmctld's own helper, slurmscriptd)."""
        daemons = {p.pid for p in self.procs.values()}
        found = []
        for pid in _marked_pids(str(self.dir)):
            if pid in daemons:
                continue
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b": slurmscriptd"):
                    continue
            except OSError:
                continue
            found.append(pid)
        return found

    # ---------------------------------------------------------------------------- tear-down
    def cancel_all(self, timeout: float = 30) -> None:
        """Cancel every job and wait until none is active and no job process is left."""
        if self.procs.get("slurmctld") is None or self.procs["slurmctld"].poll() is not None:
            return
        self.run("scancel", "--full", "-u", "root", check=False)
        wait_for(lambda: not self.active_jobs(), timeout, "every job to end")
        wait_for(lambda: not self.job_processes(), timeout, "job processes to exit")

    def stop(self) -> None:
        try:
            try:
                self.cancel_all()
            except (TimeoutError, AssertionError, subprocess.TimeoutExpired):
                pass
            order = [n for n in NODES if n in self.procs] + \
                [n for n in ("slurmctld", "munged") if n in self.procs]
            for name in order:
                proc = self.procs[name]
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
            # whatever the daemons started (slurmstepd of a job that would not end) goes too
            for pid in _marked_pids(str(self.dir)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            wait_for(lambda: not _marked_pids(str(self.dir)), 10, "the cluster's processes")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "SlurmCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
