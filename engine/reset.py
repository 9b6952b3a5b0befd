"""``system reset`` and ``system migrate``: back to nothing, and a fresh user namespace.

``reset`` removes every container (running ones are killed), volume, user-defined network,
image and build cache entry of one state root, then the root's files themselves and its runtime
folder; rootless, it finally stops the namespace holder, so nothing of portside is left running
for the user (the namespaces go with their last process). It is the rootless user's way to delete
a store whose files belong to their subordinate ids, which they cannot delete from the host.

``migrate`` only stops the namespace holder, so that the next command makes a new user namespace
with the ids ``/etc/subuid`` and ``/etc/subgid`` give now (after an administrator gave the user
a range, or a larger one). Running containers would lose their namespace's holder, so it refuses
while any runs.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from .errors import Conflict, EngineError, NotFound

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any


def reset(engine: Any) -> dict[str, Any]:
    """Remove everything the engine at ``engine.root`` holds; returns what went (counts).

    Raises:
        EngineError: something could not be removed (the rest still was).
    """
    done = {"Containers": 0, "Volumes": 0, "Networks": 0, "Images": 0}
    problems: list[str] = []
    for ctr in engine.containers.list(all=True):
        try:
            ctr.remove(force=True, v=True)
            done["Containers"] += 1
        except NotFound:
            continue
        except EngineError as exc:
            problems.append(str(exc))
    with contextlib.suppress(EngineError):
        engine.builds.prune(all=True)
    for vol in engine.volumes.list():
        try:
            vol.remove(force=True)
            done["Volumes"] += 1
        except NotFound:
            continue
        except EngineError as exc:
            problems.append(str(exc))
    with contextlib.suppress(EngineError, ModuleNotFoundError):
        for net in engine.networks.list():
            if net.name in ("bridge", "host", "none"):
                continue
            try:
                net.remove()
                done["Networks"] += 1
            except EngineError as exc:
                problems.append(str(exc))
    for image in engine.images.list(all=True):
        try:
            engine.images.remove(image.id, force=True)
            done["Images"] += 1
        except NotFound:
            continue
        except EngineError as exc:
            problems.append(str(exc))
    if problems:
        raise EngineError(f"system reset: {problems[0]}"
                          + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    root = Path(engine.root)
    from .runtime.containers import run_dir_for

    run_dir = run_dir_for(root)
    engine.close()
    _unmount_below(root)
    for child in list(root.iterdir()) if root.is_dir() else []:
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                child.unlink()
    if run_dir.is_dir() and not str(run_dir).startswith(str(root)):
        _unmount_below(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)
    from .rootless import active

    if active():
        from .rootless import userns

        from .rootless import netns

        # the user networks' namespace goes first (it lives in the user namespace), unless a
        # container of another state root still uses it
        done["NetworkNamespace"] = netns.stop(only_idle=True)
        done["NamespaceHolder"] = userns.stop()
    return done


def _unmount_below(path: Path) -> None:
    """Detach whatever a crash left mounted below ``path`` (deepest first)."""
    from .store.mount import LinuxMounter, mount_points

    mounter = None
    for point in reversed(mount_points(path)):
        if point == path:
            continue
        mounter = mounter or LinuxMounter()
        with contextlib.suppress(EngineError):
            mounter.unmount(point, lazy=True)


def migrate(engine: Any) -> dict[str, Any]:
    """Stop the namespace holder so the next command maps the ids the system gives now.

    Raises:
        Conflict: a container still runs (it would lose its namespace's holder).
    """
    from .rootless import active

    if not active():
        return {"NamespaceHolder": False}
    running = [c.name for c in engine.containers.list()]
    if running:
        raise Conflict(f"system migrate: stop the running containers first ({', '.join(running)})")
    from .rootless import netns, userns

    return {"NetworkNamespace": netns.stop(), "NamespaceHolder": userns.stop()}
