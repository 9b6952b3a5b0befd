"""Slurm's client commands, with their output parsed and their failures in one line.

:class:`Slurm` runs ``sbatch``, ``squeue``, ``scontrol``, ``scancel`` and ``srun`` with the
context's ``SLURM_CONF`` and turns what they print into :class:`Job` records. Nothing here keeps
state: every call asks the controller. A refusal keeps Slurm's own words, prefixed by what was
being done (``Slurm refused the job: Invalid partition name specified``), as a
:class:`~portside.engine.errors.SchedulerError` (exit 125 in the CLI).

Job states, as ``squeue`` names them: ``PENDING`` (with a reason: ``Resources``, ``Priority``;
``None`` only until the scheduler's next pass, which comes within a second), ``CONFIGURING``,
``RUNNING``, ``COMPLETING``, then one of the ended states (``COMPLETED``, ``FAILED``,
``CANCELLED``, ``TIMEOUT``, ``NODE_FAIL``, ``OUT_OF_MEMORY``…), shown for ``MinJobAge`` seconds
(300 by default) before the job vanishes from the controller altogether.
"""

from __future__ import annotations

import os
import subprocess

from ..errors import InvalidArgument, NotFound, SchedulerError
from ..records import record

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any

    from .options import SlurmOptions

#: States in which a job holds (or waits for) its allocation.
ACTIVE_STATES = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED",
                           "STOPPED", "RESIZING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                           "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD", "SPECIAL_EXIT"})
#: States in which the job's batch script (the keeper) runs on its node. ``COMPLETING`` is not
#: one: the script has exited and Slurm is cleaning up (no new step can start).
RUNNING_STATES = frozenset({"RUNNING", "SIGNALING", "SUSPENDED", "STOPPED"})
#: Reasons a pending job waits for something that will not change by itself: a request beyond
#: what the partition or the account allows. ``run`` gives up on such a job with Slurm's reason.
HOPELESS_REASONS = frozenset({"PartitionTimeLimit", "PartitionNodeLimit", "PartitionConfig",
                              "BadConstraints", "InvalidAccount", "InvalidQOS",
                              "AccountNotAllowed", "QOSNotAllowed", "PartitionDown",
                              "PartitionInactive", "DependencyNeverSatisfied"})
#: What the hopeless reasons mean, for the one-line error.
REASON_TEXT = {
    "PartitionTimeLimit": "its time limit is above the partition's",
    "PartitionConfig": "it asks for more than the partition allows (time, nodes, CPUs or GPUs)",
    "PartitionNodeLimit": "it asks for more nodes than the partition allows",
    "BadConstraints": "no node can satisfy its constraints",
    "InvalidAccount": "the account is not valid",
    "InvalidQOS": "the QOS is not valid",
    "AccountNotAllowed": "the account may not use the partition",
    "QOSNotAllowed": "the QOS may not use the partition",
    "PartitionDown": "the partition is down",
    "PartitionInactive": "the partition is inactive",
}
#: Reasons squeue gives a pending job that the scheduler has not looked at yet.
UNSEEN_REASONS = frozenset({"None", "", "(null)", "BeginTime"})


@record(frozen=True)
class Job:
    """One job as ``squeue`` shows it."""

    id: str
    name: str
    state: str
    reason: str = ""
    node: str = ""
    elapsed: str = ""
    gres: str = ""
    #: when it started (``squeue``'s ``%S``, the node's local time), or when Slurm expects it to
    start: str = ""

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES

    @property
    def pending(self) -> bool:
        return self.state == "PENDING"

    @property
    def considered(self) -> bool:
        """Pending for a reason the scheduler gave (it has looked at the job and could not
        start it yet), as opposed to not looked at yet."""
        return self.pending and self.reason not in UNSEEN_REASONS


    @property
    def started(self) -> float | None:
        """When a job that runs (or ran) started, as a unix time; None while it waits."""
        if self.state == "PENDING":
            return None
        return slurm_time(self.start)


_SQUEUE_FORMAT = "%i|%T|%r|%N|%M|%b|%S|%j"


def parse_squeue(text: str) -> dict[str, Job]:
    """``squeue -h -o '%i|%T|%r|%N|%M|%b|%S|%j'`` output → jobs by id (the name last, as it
    may hold the separator)."""
    jobs: dict[str, Job] = {}
    for line in text.splitlines():
        parts = line.split("|", 7)
        if len(parts) != 8:
            continue
        jid, state, reason, node, elapsed, gres, start, name = (p.strip() for p in parts)
        jobs[jid] = Job(jid, name, state, "" if reason == "None" and state != "PENDING"
                        else reason, node, elapsed, "" if gres in ("N/A", "(null)") else gres,
                        "" if start in ("N/A", "Unknown", "None") else start)
    return jobs


def slurm_time(text: str) -> float | None:
    """Slurm's timestamps (``2026-12-03T15:04:05``, the local time of the machine that prints
    them) as unix times; None for what is not one (``N/A``, ``Unknown``)."""
    import time

    try:
        return time.mktime(time.strptime(text.strip(), "%Y-%m-%dT%H:%M:%S"))
    except (ValueError, OverflowError):
        return None


def parse_scontrol(text: str) -> dict[str, str]:
    """``scontrol show job -o J`` (one line of ``Key=Value`` pairs) → a dict. Values with
    spaces (``Command=``, ``Comment=``) keep everything up to the next ``Key=``."""
    import re

    out: dict[str, str] = {}
    matches = list(re.finditer(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/]*)=", text.strip()))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text.strip())
        out[m.group(1)] = text.strip()[m.end():end].strip()
    return out


def exit_code_of(detail: dict[str, str]) -> int | None:
    """The batch script's exit status from ``scontrol``'s ``ExitCode=N:S`` (128+S when a
    signal killed it); None when Slurm does not say."""
    raw = detail.get("ExitCode", "")
    code, _, sig = raw.partition(":")
    if not code.isdigit():
        return None
    if sig.isdigit() and int(sig) and not int(code):
        return 128 + int(sig)
    return int(code)


def _reason_of(stderr: str) -> str:
    """Slurm's message without its ``sbatch: error:`` prefixes, on one line."""
    lines = []
    for line in stderr.splitlines():
        line = line.strip()
        for prefix in ("sbatch: error: ", "srun: error: ", "squeue: error: ", "scancel: error: ",
                       "scontrol: error: ", "slurm_load_jobs error: ", "error: "):
            if line.startswith(prefix):
                line = line[len(prefix):]
        if line.startswith("Batch job submission failed: "):
            line = line[len("Batch job submission failed: "):]
        if line:
            lines.append(line)
    return "; ".join(lines) or "no reason given"


class Slurm:
    """Slurm's commands for one context.

    Args:
        options: the context's settings (``conf`` becomes ``SLURM_CONF``).
        env: the environment for the commands (default: this process's).
    """

    def __init__(self, options: SlurmOptions | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.options = options
        self.env = dict(os.environ if env is None else env)
        if options is not None and options.conf:
            self.env["SLURM_CONF"] = options.conf

    # ------------------------------------------------------------------ plumbing
    def run(self, argv: list[str], *, input: bytes | None = None, timeout: float = 60,
            what: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run one client command (``env``: variables added to the context's); raises
        SchedulerError when it cannot run at all."""
        try:
            return subprocess.run(argv, input=input, capture_output=True,
                                  env=dict(self.env, **env) if env else self.env,
                                  timeout=timeout,
                                  stdin=None if input is not None else subprocess.DEVNULL)
        except FileNotFoundError:
            raise SchedulerError(f"{argv[0]} not found: Slurm's client commands are needed for "
                                 "a Slurm context") from None
        except subprocess.TimeoutExpired:
            raise SchedulerError(f"{what or argv[0]}: Slurm did not answer in {timeout:g} s") \
                from None

    def _check(self, proc: subprocess.CompletedProcess, what: str) -> str:
        if proc.returncode != 0:
            raise SchedulerError(f"{what}: {_reason_of(proc.stderr.decode(errors='replace'))}")
        return proc.stdout.decode(errors="replace")

    @property
    def user(self) -> str:
        import pwd

        try:
            return pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            return str(os.getuid())

    # ------------------------------------------------------------------ jobs
    def submit(self, script: str, *, name: str, gpus: int = 0, cpus: int | None = None,
               mem_mb: int | None = None, output: str | None = None,
               comment: str | None = None, workdir: str | None = None,
               env: dict[str, str] | None = None) -> str:
        """Submit a batch job with the context's partition, time and account; returns its id.

        Raises:
            SchedulerError: sbatch refused it (``Slurm refused the job: <Slurm's reason>``).
        """
        argv = ["sbatch", "--parsable", f"--job-name={name}", "--nodes=1", "--ntasks=1"]
        opts = self.options
        if opts is not None:
            if opts.partition:
                argv.append(f"--partition={opts.partition}")
            if opts.time:
                argv.append(f"--time={opts.time}")
            if opts.account:
                argv.append(f"--account={opts.account}")
        if gpus:
            argv.append(f"--gres=gpu:{gpus}")
        if cpus:
            argv.append(f"--cpus-per-task={cpus}")
        if mem_mb:
            argv.append(f"--mem={mem_mb}M")
        argv.append(f"--output={output or '/dev/null'}")
        if comment:
            argv.append(f"--comment={comment}")
        if workdir:
            argv.append(f"--chdir={workdir}")
        out = self._check(self.run(argv, input=script.encode(), what="sbatch", env=env),
                          "Slurm refused the job")
        job = out.strip().split(";")[0]
        if not job.isdigit():
            raise SchedulerError(f"sbatch answered {out.strip()!r} instead of a job id")
        return job

    def jobs(self, ids: list[str] | None = None) -> dict[str, Job]:
        """This user's jobs the controller knows (ended ones too, until they are purged), by
        id; only ``ids`` when given (a purged id is simply absent)."""
        proc = self.run(["squeue", "-h", "-t", "all", "-u", self.user, "-o", _SQUEUE_FORMAT],
                        what="squeue")
        jobs = parse_squeue(self._check(proc, "squeue failed"))
        if ids is not None:
            wanted = set(ids)
            jobs = {k: v for k, v in jobs.items() if k in wanted}
        return jobs

    def job(self, job_id: str) -> Job | None:
        """One job, or None when the controller no longer knows it."""
        return self.jobs([job_id]).get(job_id)

    def detail(self, job_id: str) -> dict[str, str] | None:
        """``scontrol show job`` as a dict (``JobState``, ``Reason``, ``ExitCode``,
        ``NodeList``…), or None when the controller no longer knows the job."""
        proc = self.run(["scontrol", "show", "job", "-o", str(job_id)], what="scontrol")
        text = proc.stdout.decode(errors="replace")
        if proc.returncode != 0 or not text.strip():
            err = proc.stderr.decode(errors="replace")
            if "Invalid job id" in err:
                return None
            raise SchedulerError(f"scontrol show job {job_id}: {_reason_of(err)}")
        return parse_scontrol(text)

    def cancel(self, job_id: str, signal: str | None = None, *, batch: bool = False) -> None:
        """``scancel`` a job (or send it a signal); a job that already ended is not an error."""
        argv = ["scancel"]
        if signal:
            argv.append(f"--signal={signal}")
        if batch:
            argv.append("--batch")
        proc = self.run(argv + [str(job_id)], what="scancel")
        err = proc.stderr.decode(errors="replace")
        if proc.returncode != 0 and "already completing or completed" not in err \
                and "Invalid job id" not in err:
            raise SchedulerError(f"scancel {job_id}: {_reason_of(err)}")

    # ------------------------------------------------------------------ steps
    def srun_argv(self, job_id: str, node: str, argv: list[str], *,
                  silent: bool = False) -> list[str]:
        """``srun`` running ``argv`` as an extra step of a running job on its node.

        ``--overlap`` lets the step share the resources the keeper holds; ``-u`` passes output
        through unbuffered (without it Slurm holds output until a newline, and a framed
        protocol stalls); no ``--pty``: stdin, stdout and stderr stay plain pipes. ``silent``
        (``-Q -Q``) also drops srun's own "task 0: Exited with exit code N" line, for ``exec``,
        whose stderr is the user's; it drops srun's errors too, so other steps keep them.
        """
        return ["srun", "--overlap", f"--jobid={job_id}", "-w", node, "-N1", "-n1", "-u",
                *(["-Q", "-Q"] if silent else ["-Q"]), *argv]

    def popen(self, job_id: str, node: str, argv: list[str], *, silent: bool = False,
              **kwargs: Any) -> subprocess.Popen:
        """Start ``argv`` as a step of the job; the caller owns the pipes it asked for."""
        try:
            kwargs.setdefault("env", self.env)
            return subprocess.Popen(self.srun_argv(job_id, node, argv, silent=silent), **kwargs)
        except FileNotFoundError:
            raise SchedulerError("srun not found: Slurm's client commands are needed for a "
                                 "Slurm context") from None


def require_running(job: Job | None, name: str) -> Job:
    """The job of container ``name`` when its script runs on a node, else the reason why not.

    Raises:
        NotFound: the job has vanished.
        IncorrectState: it is pending or has ended.
    """
    from ..errors import IncorrectState

    if job is None:
        raise NotFound(f"container {name}: its Slurm job is gone")
    if job.pending:
        raise IncorrectState(f"container {name} is not running: job {job.id} is pending "
                             f"({job.reason or 'not scheduled yet'})")
    if not job.running or not job.node:
        raise IncorrectState(f"container {name} is not running: job {job.id} is "
                             f"{job.state.lower()}")
    return job


def gpu_count(request: str | None) -> int:
    """The number of GPUs a ``--gpus`` value asks Slurm for.

    Slurm chooses which GPUs a job gets, so only a count makes sense: ``2``, ``count=2``.

    Raises:
        InvalidArgument: ``all`` or ``device=…`` (``--gpus all: in a Slurm context ask for a
            number of GPUs (--gpus 2); Slurm chooses which``).
    """
    if not request:
        return 0
    from ..gpu import parse_gpus
    from ..gpu.request import ALL

    req = parse_gpus(request)
    if req.device_ids:
        raise InvalidArgument(f"--gpus {request}: in a Slurm context ask for a number of GPUs "
                              "(--gpus 2); Slurm chooses which")
    if req.count == ALL:
        raise InvalidArgument(f"--gpus {request}: in a Slurm context ask for a number of GPUs "
                              "(--gpus 2); Slurm chooses which")
    return int(req.count or 0)
