"""``update``: change a container's resource limits and restart policy, created or running.

Docker's verb: the new values are checked (:func:`.resources.verify`), merged into the
container's ``HostConfig`` with Docker's rules (:func:`.resources.merge_update`), applied to the
cgroup of a running or paused container through the OCI runtime (``runc update``), and saved. A
container that is not running keeps them for its next start, whose runtime spec is made from the
``HostConfig``. A restart policy takes effect the next time the container exits (its monitor
reads it then). Nothing is saved when the runtime refuses: the record keeps saying what the
cgroup has.
"""

from __future__ import annotations

from portside.engine.errors import Conflict, EngineError, InvalidArgument, RuntimeFailure

from .resources import UPDATABLE, merge_update, runtime_update_args, verify

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any

    from .containers import ContainerRecord
    from .lifecycle import Lifecycle


def update(lc: Lifecycle, ref: str | ContainerRecord, change: dict[str, Any]
           ) -> tuple[ContainerRecord, list[str]]:
    """Apply ``change`` (HostConfig keys of :data:`.resources.UPDATABLE`) to a container.

    Returns:
        The saved record and Docker's warnings.
    Raises:
        InvalidArgument: an unknown key, or a value Docker refuses. Conflict: a combination
            Docker refuses (e.g. ``--memory`` above the current ``MemorySwap`` without a new
            ``--memory-swap``), with Docker's message. NotFound: no such container.
        RuntimeFailure: the runtime could not apply the limits (the kernel refused them).
    """
    from .containers import ContainerRecord
    from .lifecycle import Status, status_of

    unknown = sorted(set(change) - set(UPDATABLE))
    if unknown:
        raise InvalidArgument(f"update: unknown setting(s): {', '.join(unknown)}")
    change = dict(change)
    _rootless_limits(change)
    warnings = verify(change, update=True)
    rec = ref if isinstance(ref, ContainerRecord) else lc.store.resolve(ref)
    with lc.store.lock(rec.id):
        rec = lc._fresh(rec)
        try:
            merged = merge_update(rec.host_config, change)
        except (Conflict, InvalidArgument) as exc:
            raise type(exc)(f"Cannot update container {rec.id}: {exc}") from None
        args = runtime_update_args(merged, change)
        if args and status_of(rec) in (Status.RUNNING, Status.PAUSED):
            try:
                lc.runtime_of(rec).update(rec.id, args)
            except EngineError as exc:
                raise RuntimeFailure(f"Cannot update container {rec.id}: {exc}") from None
        rec.host_config = merged
        lc.store.save(rec, "update")
    return rec, warnings


def _rootless_limits(change: dict[str, Any]) -> None:
    """A rootless container without a cgroup (no delegated cgroup v2) can have no limits: new
    ones are refused in one line, as ``run -m`` is; a restart policy still changes.

    Raises:
        InvalidArgument: a limit, rootless without a cgroup.
    """
    from portside.engine.rootless import active, has_cgroups, no_cgroup

    if not active() or has_cgroups():
        return
    from portside.engine.rootless.spec import LIMITS

    flags = [flag for flag, key in LIMITS if change.get(key) not in (None, 0)]
    if flags:
        raise InvalidArgument(no_cgroup(", ".join(flags)))
