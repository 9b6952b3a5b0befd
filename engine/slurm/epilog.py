"""``portside slurm epilog``: a site's Slurm ``Epilog`` removes what a killed keeper left.

The keeper removes its container when Slurm signals the job, but a keeper killed outright
(SIGKILL after ``KillWait``, the OOM killer, a crash) cannot, and runc's containers live in cgroups
Slurm does not track, so they would outlive the job. slurmd runs the site's ``Epilog`` on every
node of a job when the job ends; with ``portside slurm epilog`` in it, the containers labelled with
that job on that node are stopped and removed (with their anonymous volumes), and the keeper's
status files go too. Admins add one line to ``slurm.conf``::

    Epilog=/etc/slurm/epilog.d/*        # a script holding: exec portside slurm epilog

The epilog runs as root; it finds the job from Slurm's variables (``SLURM_JOB_ID``,
``SLURM_JOB_UID``, ``SLURMD_NODENAME``), switches to the job's user before it opens that user's
store (so it can touch nothing the user could not), and uses the store the job's context named
(``root=`` travels in the job's comment, ``portside-root=…``) or the user's default one. It never
fails: a failing epilog drains the node, so problems are written to stderr (slurmd's log) and the
exit status is 0.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any

#: The job comment's prefix that carries the context's node root.
COMMENT_PREFIX = "portside-root="


def _say(msg: str) -> None:
    sys.stderr.write(f"portside epilog: {msg}\n")
    sys.stderr.flush()


def comment_for(root: str | None) -> str | None:
    """The job comment that tells the epilog which store the job's containers are in."""
    return f"{COMMENT_PREFIX}{root}" if root else None


def root_from_comment(comment: str) -> str | None:
    comment = (comment or "").strip()
    if comment.startswith(COMMENT_PREFIX):
        return comment[len(COMMENT_PREFIX):].strip() or None
    return None


def _job_comment(job: str, env: dict[str, str]) -> str:
    if env.get("SLURM_JOB_COMMENT"):
        return env["SLURM_JOB_COMMENT"]
    from .cluster import Slurm

    try:
        detail = Slurm(env=env).detail(job)
    except Exception as exc:  # noqa: BLE001 - the epilog never fails
        _say(f"job {job}: cannot read its comment: {exc}")
        return ""
    return (detail or {}).get("Comment", "")


def _become(uid: int, env: dict[str, str]) -> None:
    """Switch to the job's user (groups, gid, uid, HOME) when running as root for someone
    else."""
    import pwd

    if os.geteuid() != 0 or uid == 0:
        return
    pw = pwd.getpwuid(uid)
    os.setgroups(os.getgrouplist(pw.pw_name, pw.pw_gid))
    os.setgid(pw.pw_gid)
    os.setuid(uid)
    os.environ["HOME"] = pw.pw_dir
    os.environ["USER"] = pw.pw_name
    os.environ.pop("XDG_DATA_HOME", None)


def clean(engine: Any, job: str) -> list[str]:
    """Stop and remove the containers labelled with ``job`` in ``engine``'s store, and the
    keeper's files for it; returns the ids removed."""
    from ..errors import EngineError
    from .keeper import JOB_LABEL, status_path, watch_path

    removed = []
    lc = engine.containers.lifecycle
    for rec in engine.containers.records(all=True, filters={"label": [f"{JOB_LABEL}={job}"]}):
        try:
            lc.remove(rec.id, force=True, volumes=True)
        except EngineError as exc:
            _say(f"job {job}: removing container {rec.name}: {exc}")
            continue
        removed.append(rec.id)
        _say(f"job {job}: removed container {rec.name} ({rec.id[:12]})")
    for path in (status_path(engine.root, job), watch_path(engine.root, job)):
        try:
            path.unlink()
        except OSError:
            pass
    return removed


def main(root: str | None = None, env: dict[str, str] | None = None) -> int:
    """The epilog; ``root`` overrides the store the job's comment names. Always returns 0."""
    env = dict(os.environ if env is None else env)
    job = env.get("SLURM_JOB_ID", "")
    if not job:
        _say("SLURM_JOB_ID is not set: run me from Slurm's Epilog")
        return 0
    try:
        root = root or root_from_comment(_job_comment(job, env))
        uid = int(env.get("SLURM_JOB_UID", os.getuid()))
        _become(uid, env)
        from ..api import Engine

        engine = Engine(root=root)  # %n: SLURMD_NODENAME is in the epilog's environment
        try:
            if not (engine.root / "metadata.db").exists():
                return 0  # portside never ran here for this user
            clean(engine, job)
        finally:
            engine.close()
    except Exception as exc:  # noqa: BLE001 - the epilog never fails (it would drain the node)
        _say(f"job {job}: {type(exc).__name__}: {exc}")
    return 0
