"""Running one build step in a throw-away root filesystem, and turning its changes into a layer.

A step that changes files (``RUN``, ``COPY``, ``ADD``, ``WORKDIR``) works on a *workspace*: an
overlayfs mount whose lower directories are the parent image's snapshots (read-only, shared by
every image that uses them) and whose upper directory starts empty::

    build-cache/tmp/<id>/
        upper/    what the step changed: new files, copied-up files, whiteouts
        work/     overlayfs' scratch space
        merged/   the mount: the parent's files with the step's changes on top
        bundle/   config.json for the OCI runtime (RUN only)

Because every change lands in ``upper``, the new layer is simply ``upper`` tarred with the
overlayfs conventions translated to OCI ones (a 0:0 character device becomes a ``.wh.NAME``
whiteout, an opaque directory gets ``.wh..wh..opq``): its cost grows with what the step changed,
not with the size of the image.

``RUN`` executes the command with ``runc run`` in the foreground: no monitor, no detaching, its
output read from a pipe line by line and passed on as progress events.  The spec has Docker's
defaults (capabilities, masked paths, seccomp) and either a new empty network namespace
(``--network=none``) or the host's (the default for builds, as with BuildKit's host network).

Everything a step creates is removed in ``finally`` blocks, so a failing command leaves no mount,
no runtime container and no cgroup.  Only a process killed outright can leave a workspace under
``build-cache/tmp``, perhaps mounted and with its ``RUN`` still running (``runc run`` outlives
it): the workspace's folder is held by its build (a ``HeldDir``) and names its runtime container
(``container.json``), so the next command to open the store stops that container, unmounts and
removes the folder (:mod:`portside.engine.store.leftovers`).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import stat
import subprocess
import threading
import time
from pathlib import Path

from portside.engine import faults
from portside.engine.errors import BuildError, RuntimeFailure
from portside.engine.process import pid_alive
from portside.engine.records import field, record
from portside.engine.rootfs import resolve, resolve_user

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Callable, Sequence

    from portside.engine.store.leftovers import HeldDir


__all__ = ["Workspace", "ReadOnlyView", "RunRequest", "run_in_workspace", "commit_upper",
           "clean_stale"]

_TAIL_LINES = 20


def _mounter():
    from portside.engine.store.fuse import overlay_mounter

    return overlay_mounter()  # rootless: fuse-overlayfs where the kernel refuses (config key)


def clean_stale(tmp_root: Path) -> list[Path]:
    """Remove workspaces left by builds of an older portside whose process died (their pid
    file names a dead pid). Held folders (``<kind>.<hex>``, this version's) are reclaimed when
    any command opens the store (:func:`portside.engine.store.leftovers.reap`).

    Returns the directories removed.
    """
    removed: list[Path] = []
    if not tmp_root.is_dir():
        return removed
    for entry in tmp_root.iterdir():
        if "." in entry.name:
            continue
        pid_file = entry / "pid"
        try:
            pid = int(pid_file.read_text())
        except (OSError, ValueError):
            pid = 0
            # no pid (yet): another process may be just creating it (or unpacking a context
            # there); only an old one is garbage
            try:
                if time.time() - entry.stat().st_mtime < 600:
                    continue
            except FileNotFoundError:
                continue
        if pid and pid_alive(pid):
            continue
        merged = entry / "merged"
        if os.path.ismount(merged):
            with contextlib.suppress(Exception):
                _mounter().unmount(merged, lazy=True)
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


class Workspace:
    """A writable root filesystem for one step (overlay of ``lowers`` plus a fresh upper).

    Args:
        tmp_root: ``<root>/build-cache/tmp``.
        lowers: snapshot directories, topmost first (empty for ``FROM scratch``).

    Use as a context manager; :meth:`unmount` may be called early (before committing the upper
    directory), and the directory is removed on exit whatever happened.
    """

    def __init__(self, tmp_root: Path, lowers: Sequence[Path]) -> None:
        self.tmp_root = Path(tmp_root)
        self.lowers = list(lowers)
        self.dir = self.upper = self.work = self.merged = Path()  # set by hold()
        self._held: HeldDir | None = None
        self._mounted = False

    def hold(self) -> Path:
        """Make the workspace's folder, held by this process while it lives
        (:class:`~portside.engine.store.leftovers.HeldDir`: a killed build's is reclaimed by
        the next command, a live one's never); returns it."""
        from portside.engine.store.leftovers import HeldDir

        self._held = held = HeldDir(self.tmp_root, "ws")
        self.dir = held.path
        self.upper = self.dir / "upper"
        self.work = self.dir / "work"
        self.merged = self.dir / "merged"
        return self.dir

    def release(self) -> None:
        """Remove the folder and let it go (idempotent)."""
        if self._held is not None:
            self._held.close()
            self._held = None

    def __enter__(self) -> "Workspace":
        self.hold()
        for d in (self.upper, self.work, self.merged):
            d.mkdir()
        lowers = self.lowers
        if not lowers:
            empty = self.dir / "empty"
            empty.mkdir()
            lowers = [empty]
        try:
            # the upper directory becomes a layer (the content store syncs that) or is thrown
            # away: never syncing it makes fsync-heavy RUNs (dpkg, pip) and the unmount cheap
            _mounter().mount_overlay(lowers, self.upper, self.work, self.merged, volatile=True)
            self._mounted = True
        except BaseException:
            self.release()
            raise
        return self

    def unmount(self) -> None:
        """Unmount the overlay (idempotent); the upper directory stays until exit."""
        if self._mounted:
            mounter = _mounter()
            try:
                mounter.unmount(self.merged)
            except Exception:
                mounter.unmount(self.merged, lazy=True)
            self._mounted = False

    def __exit__(self, *exc: object) -> None:
        try:
            self.unmount()
        finally:
            self.release()

    def changed(self) -> bool:
        """Whether the step changed anything (the upper directory is not empty)."""
        with os.scandir(self.upper) as it:
            return any(True for _ in it)


class ReadOnlyView:
    """A read-only overlay of some snapshots (another stage or image), for COPY --from."""

    def __init__(self, tmp_root: Path, lowers: Sequence[Path]) -> None:
        self.ws = Workspace(tmp_root, lowers)

    def __enter__(self) -> Path:
        ws = self.ws
        ws.hold()
        ws.merged.mkdir()
        lowers = ws.lowers
        if not lowers:
            return ws.merged  # scratch: an empty directory
        try:
            _mounter().mount_overlay(lowers, None, None, ws.merged, readonly=True)
            ws._mounted = True
        except BaseException:
            ws.release()
            raise
        return ws.merged

    def __exit__(self, *exc: object) -> None:
        self.ws.__exit__(*exc)


def commit_upper(upper: Path, image_store, parent_chain: str | None, leases: list[str], *,
                 source_date_epoch: int | None = None, overlay_upper: bool = True):
    """Tar ``upper`` into a layer and store it (blob + snapshot) on top of ``parent_chain``.

    The tar is streamed through a pipe into :meth:`ImageStore.ingest_layer`, never written to a
    temporary file.

    Returns:
        ``(LayerRef, chain id)``.
    """
    from portside.engine.image.layer import write_layer

    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            with open(write_fd, "wb", buffering=1 << 20) as out:
                write_layer(upper, out, overlay_upper=overlay_upper, compression=None,
                            source_date_epoch=source_date_epoch)
        except BrokenPipeError:
            pass
        except BaseException as exc:  # reported by the consumer side
            failure.append(exc)

    writer = threading.Thread(target=produce, name="layer-writer", daemon=True)
    writer.start()
    try:
        with open(read_fd, "rb", buffering=1 << 20) as stream:
            result = image_store.ingest_layer(stream, parent_chain, leases)
    finally:
        writer.join()
    if failure:
        raise failure[0]
    return result


# --------------------------------------------------------------------------------------------
# RUN


@record
class RunRequest:
    """What one ``RUN`` executes and how."""

    args: list[str]
    env: list[str]
    cwd: str = "/"
    user: str = ""
    network: str = "default"          # "none" or "default"/"host"
    mounts: list[dict] = field(default_factory=list)   # extra OCI mounts
    step: str = ""                    # "[2/4] RUN ..." for messages


#: Mount points the runtime creates in the root filesystem when the image lacks them; created
#: ones are removed from the upper directory again so they do not end up in the layer.
_MOUNT_POINTS = ("proc", "sys", "dev", "etc/resolv.conf", "etc/hosts", "etc/hostname")


def run_in_workspace(ws: Workspace, req: RunRequest, *, runtime_root: Path,
                     on_line: Callable[[str], None] | None = None) -> None:
    """Run ``req`` in the mounted workspace with runc, synchronously.

    Args:
        ws: a mounted :class:`Workspace`.
        req: the command and its environment.
        runtime_root: runc's ``--root`` (state directory).
        on_line: receives each line of output (stdout and stderr merged), without newline.

    Raises:
        BuildError: the command exited non-zero; carries the step, the exit code and the last
            output lines.
        RuntimeFailure: runc could not be started.
    """
    from portside.engine.runtime.cgroups import Cgroup, cgroup_path_for
    from portside.engine.runtime.spec import ContainerConfig, ProcessConfig, generate_spec

    runtime = _runtime(runtime_root)
    uid, gid, groups = resolve_user(ws.merged, req.user)
    points = [*_MOUNT_POINTS, *(m["destination"].strip("/") for m in req.mounts)]
    missing = [p for p in points if not os.path.lexists(resolve(ws.merged, p))]
    cwd = req.cwd or "/"
    # Docker creates the working directory when it is missing.
    target = resolve(ws.merged, cwd)
    if not target.exists():
        target.mkdir(parents=True, exist_ok=True)
    mounts = list(req.mounts)
    network = "none" if req.network == "none" else "host"
    if network == "host":
        for name in ("resolv.conf", "hosts"):
            host = Path("/etc") / name
            if host.exists():
                mounts.append({"destination": f"/etc/{name}", "type": "bind",
                               "source": str(host), "options": ["rbind", "ro"]})
    container_id = "build-" + os.urandom(8).hex()
    cgroup = cgroup_path_for(container_id)
    spec = generate_spec(ContainerConfig(
        process=ProcessConfig(args=list(req.args), env=list(req.env), cwd=cwd, uid=uid, gid=gid,
                              additional_gids=groups),
        rootfs=str(ws.merged), hostname="buildkitsandbox", network=network, mounts=mounts,
        cgroups_path=cgroup))
    bundle = ws.dir / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(spec))
    # `runc run` outlives a killed build: say what to stop (see store.leftovers)
    (ws.dir / "container.json").write_text(json.dumps(
        {"runtime": runtime.path, "root": str(runtime.state_root), "id": container_id,
         "cgroup": cgroup}))
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    proc: subprocess.Popen[bytes] | None = None
    try:
        try:
            proc = subprocess.Popen(runtime.command("run", "--bundle", str(bundle), container_id),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise RuntimeFailure(f"cannot start {runtime.name}: {exc}") from exc
        faults.point("build-run-started")
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            tail.append(line)
            if on_line is not None:
                on_line(line)
        status = proc.wait()
    finally:
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(Exception):
                runtime.kill(container_id, "KILL", all=True)
            with contextlib.suppress(Exception):
                proc.kill()
            with contextlib.suppress(Exception):
                proc.wait(timeout=10)
        if (runtime.state_root / container_id).exists():
            with contextlib.suppress(Exception):
                runtime.delete(container_id, force=True)
        cg = Cgroup(cgroup)
        if cg.exists():
            with contextlib.suppress(Exception):
                cg.remove()
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        ws.unmount()
        _forget_mount_points(ws.upper, missing)
    if status != 0:
        if status < 0:
            status = 128 - status
        last = "\n".join(list(tail)[-5:])
        raise BuildError(f"process {_show(req.args)} did not complete successfully: exit code: "
                         f"{status}" + (f": {last}" if last else ""),
                         step=req.step, status=status, output_tail=list(tail))


def _forget_mount_points(upper: Path, missing: list[str]) -> None:
    for rel in missing:
        path = upper / rel
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        try:
            if stat.S_ISDIR(st.st_mode):
                os.rmdir(path)          # only if the command left it empty
            elif stat.S_ISREG(st.st_mode) and st.st_size == 0:
                os.unlink(path)
        except OSError:
            pass
        parent = path.parent
        # "etc" may have been created just to hold the mount point
        while parent != upper:
            try:
                os.rmdir(parent)
            except OSError:
                break
            parent = parent.parent


def _show(args: Sequence[str]) -> str:
    return json.dumps(list(args)) if len(" ".join(args)) < 200 else json.dumps(list(args))[:200] + "…"


_RUNTIMES: dict[str, object] = {}
_RUNTIME_LOCK = threading.Lock()


def _runtime(state_root: Path):
    from portside.engine.runtime.oci import OCIRuntime

    key = str(state_root)
    with _RUNTIME_LOCK:
        rt = _RUNTIMES.get(key)
        if rt is None:
            rt = _RUNTIMES[key] = OCIRuntime.detect(state_root=state_root)
        return rt
