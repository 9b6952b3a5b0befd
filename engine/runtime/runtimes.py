"""Which OCI runtime runs a container (runc or crun), chosen once per container and remembered.

Docker's model: ``run``/``create`` take ``--runtime NAME`` (docker-py's ``runtime=``); without
it the engine's default applies. A container's ``HostConfig.Runtime`` records the name it was
created with, and every later verb on it (the monitor's ``run``, ``kill``, ``pause``, ``exec``,
``delete``, ``state``) goes to that runtime: a container is never handed to a runtime that did
not create it, whatever the default became since. Each runtime keeps its own state folder
(``run/runtime`` for runc, ``run/crun`` for crun).

The default (:func:`default_name`): the ``runtime`` config key (``PORTSIDE_RUNTIME``) when set;
otherwise **crun for a rootless container without a cgroup** -- the same container as runc's
(tests/rootless/test_rootless_runtime.py compares them), started in ~9 ms where runc takes
20-30 ms (runc's init compiles the seccomp profile on every start) -- and runc everywhere else
(root mode, and rootless with a delegated cgroup v2 tree), or whichever of the two is installed.

crun refuses a host whose cgroup layout is *hybrid* when the v2 hierarchy holds a controller
("cgroups in hybrid mode not supported"), even with no cgroup to make. A rootless container has
none, so the user's namespace hides that hierarchy (``/sys/fs/cgroup/unified``) from its own
mount namespace (see :mod:`portside.engine.rootless.holder_process`); where it is still
visible (a namespace started by an older portside), :func:`crun_accepts_host` is False and the
default stays runc.
"""

from __future__ import annotations

import os
import shutil

from portside.engine.errors import InvalidArgument, RuntimeFailure

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from pathlib import Path

    from .oci import OCIRuntime

#: The runtimes portside drives (their command lines are the same).
KNOWN = ("runc", "crun")

#: The v2 hierarchy of a hybrid host; crun refuses to run while it lists a controller.
UNIFIED_CONTROLLERS = "/sys/fs/cgroup/unified/cgroup.controllers"

#: Where each runtime keeps its state, below the engine's run folder.
STATE_FOLDERS = {"runc": "runtime", "crun": "crun"}


def installed(name: str) -> str | None:
    """The path of runtime ``name`` (``runc``, ``crun`` or an absolute path), or None."""
    if os.path.isabs(name):
        return name if os.access(name, os.X_OK) else None
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/bin", "/sbin"):
        path = f"{folder}/{name}"
        if os.access(path, os.X_OK):
            return path
    return None


def kind(name: str) -> str:
    """``runc`` or ``crun`` for a runtime name or path (the command line it speaks).

    Raises:
        InvalidArgument: neither (Docker's "unknown or invalid runtime name").
    """
    base = os.path.basename(name) if os.path.isabs(name) else name
    if base not in KNOWN:
        raise InvalidArgument(f"unknown or invalid runtime name: {name} (portside runs runc "
                              f"or crun)")
    return base


def crun_accepts_host(controllers_file: str = UNIFIED_CONTROLLERS) -> bool:
    """Whether crun runs here: False on a hybrid host whose v2 hierarchy has a controller."""
    try:
        with open(controllers_file, "rb") as f:
            return not f.read().strip()
    except OSError:
        return True  # not hybrid (v1, or v2 where the file is at the top)


def default_name(configured: str | None, *, rootless: bool, cgroups: bool,
                 which=installed, crun_ok=crun_accepts_host) -> str:
    """The runtime a new container gets when ``--runtime`` is not given (see the module's
    docstring): ``configured`` (the config key) when set, crun for a rootless container without
    a cgroup where crun is installed and accepts the host, runc otherwise (crun when runc is
    missing)."""
    if configured:
        return configured
    if rootless and not cgroups and which("crun") and crun_ok():
        return "crun"
    if which("runc") or not which("crun"):
        return "runc"
    return "crun"


def options(name: str, *, rootless: bool, cgroups: bool) -> tuple[str, ...]:
    """Global options the runtime needs on every call: crun without a cgroup manages none
    (``--cgroup-manager=disabled``: a rootless container without delegation has no cgroup)."""
    if kind(name) == "crun" and rootless and not cgroups:
        return ("--cgroup-manager=disabled",)
    return ()


def resolve(name: str, run_dir: Path, *, rootless: bool, cgroups: bool) -> OCIRuntime:
    """The :class:`~.oci.OCIRuntime` for runtime ``name`` with its state folder in ``run_dir``.

    Raises:
        InvalidArgument: not runc or crun.
        RuntimeFailure: not installed (one line naming Debian's package).
    """
    from .oci import OCIRuntime

    base = kind(name)
    path = installed(name)
    if path is None:
        raise RuntimeFailure(f"OCI runtime {name} is not installed (Debian's {base} package)")
    return OCIRuntime(base, path, run_dir / STATE_FOLDERS[base],
                      options=options(base, rootless=rootless, cgroups=cgroups))


def check(name: str) -> str:
    """``name`` validated for a new container (``--runtime``); returns it.

    Raises:
        InvalidArgument, RuntimeFailure: as :func:`resolve`.
    """
    base = kind(name)
    if installed(name) is None:
        raise RuntimeFailure(f"OCI runtime {name} is not installed (Debian's {base} package)")
    return name
