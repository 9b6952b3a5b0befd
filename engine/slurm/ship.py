"""Images on the nodes: each node keeps its own store, so an image is made present on the node a
container is placed on, before the container starts.

* With a ``registry=`` in the context, the client pushes the image there when the job is
  submitted (a push sends only the layers the registry lacks) and the keeper pulls it by digest
  on the node, which fetches only the layers the node lacks. A job that waits in the queue needs
  nothing more from the client.
* Without one, the client streams it: ``portside save`` here, piped into ``portside slurm node
  prepare`` over ``srun`` on the node, which loads it — only when the node does not already have
  the image (the node answers ``have`` and nothing is sent). For a job that waits in the queue, a
  small background process of the client's does this once Slurm has placed the job.

``%%container build`` builds where the notebook runs; the result is shipped the same way.
"""

from __future__ import annotations

import json
import subprocess
import threading

from ..errors import EngineError, NotFound, SchedulerError

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any

    from .cluster import Job


def ship_main(state_dir: str, container: str, *, local: Any) -> int:
    """``portside slurm ship``: the client's background helper for a container whose job waited
    in the queue: once Slurm places the job, make its image present on the node (see the
    module's description). ``local``: the client's engine, holding the image."""
    from .engine import SlurmEngine
    from .options import parse_options
    from .records import RecordStore

    rec = RecordStore(state_dir).resolve(container)
    engine = SlurmEngine(parse_options(rec.get("Context") or ""), state_dir, local=local)
    return engine.containers.ship_when_placed(rec["Id"])


def registry_ref(images: Any, image: Any, user_ref: str, registry: str) -> str:
    """Push ``image`` to the context's registry; returns the by-digest reference the keeper
    pulls (``HOST:PORT/exp@sha256:…``). The image is tagged there as the user named it."""
    from ..image.reference import parse_reference

    if user_ref and not user_ref.startswith("sha256:"):
        ref = parse_reference(user_ref)
        path, tag = ref.path, ref.tag or "latest"
    else:
        path, tag = "portside/unnamed", image.id.split(":", 1)[-1][:12]
    target = f"{registry}/{path}:{tag}"
    images.tag(image.id, target)
    digest = images.push(target)
    return f"{registry}/{path}@{digest}"


def prepare_on_node(engine: Any, rec: dict[str, Any], job: Job) -> dict[str, Any]:
    """Run the start hand-shake (:func:`.node.prepare`) on the job's node: stream the image when
    the node asks for it, then return the keeper's status (``state`` ``running`` or
    ``failed``). ``rec["Slurm"]["Image"]`` records what happened: ``present`` (the node had it),
    ``shipped`` (streamed now) or ``pulled`` (from the registry)."""
    from .node import read_line

    coll = engine.containers
    pull = bool(engine.options.registry)
    argv = engine.node_argv(*coll._root_args(), "slurm", "node", "prepare", "--job", job.id,
                            "--image", rec["Image"], *(["--pull"] if pull else []))
    proc = engine.slurm.popen(job.id, job.node, argv, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=engine.node_env())
    err_chunks: list[bytes] = []
    drain = threading.Thread(target=lambda: err_chunks.extend(iter(
        lambda: proc.stderr.read(4096), b"")), daemon=True)
    drain.start()
    status: dict[str, Any] | None = None
    how = ""
    try:
        try:
            first = read_line(proc.stdout)
        except EOFError:
            first = ""
        if first == "need":
            how = "shipped"
            _send_image(engine, rec, proc.stdin)
        else:
            how = {"have": "present", "pull": "pulled"}.get(first, "")
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
        while status is None:
            try:
                line = read_line(proc.stdout)
            except EOFError:
                break
            if line.startswith("{"):
                status = json.loads(line)
    finally:
        proc.stdout.close()
        if proc.poll() is None and status is None:
            proc.terminate()
        proc.wait()
        drain.join(timeout=5)
        proc.stderr.close()
    if how:
        rec.setdefault("Slurm", {})["Image"] = how
    if status is None:
        err = b"".join(err_chunks).decode(errors="replace").strip().splitlines()
        reason = next((ln[len("Error: "):] for ln in reversed(err) if ln.startswith("Error: ")),
                      err[-1] if err else "")
        detail = engine.slurm.job(job.id)
        ended = f"; job {job.id} is {detail.state.lower()}" if detail is not None else ""
        raise SchedulerError(f"container {rec['Name']}: the node {job.node} did not report a "
                             f"start{': ' + reason if reason else ''}{ended}")
    return status


def _send_image(engine: Any, rec: dict[str, Any], pipe: Any) -> None:
    """``save`` the container's image into the step's stdin (by the name the user gave when it
    still names that image, so the node gets the tag too)."""
    images = engine.images
    name = rec["Config"].get("Image") or rec["Image"]
    try:
        if images.get(name).id != rec["Image"]:
            name = rec["Image"]
    except NotFound:
        name = rec["Image"]
    try:
        images.save([name], pipe)
    except BrokenPipeError:
        pass  # the node stopped reading: its answer says why
    except EngineError:
        raise
