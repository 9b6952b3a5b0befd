"""``--init``: a small init as the container's PID 1, as ``docker run --init`` does.

A process that is PID 1 in its namespace gets no default signal actions: ``sleep infinity``
ignores the SIGTERM of ``stop`` and is killed only after the timeout, and orphans it does not
wait for stay zombies. Docker solves both by bind-mounting its ``docker-init`` (tini) read-only at
``/sbin/docker-init`` and running ``docker-init -- CMD ARGS``: tini, as PID 1, forwards every
signal to the command and reaps whatever is re-parented to it. portside does the same with the
host's tini (Debian's ``tini`` package): ``tini-static`` when present, since the container may
have no C library (busybox), else ``tini``.
"""

from __future__ import annotations

import os
import shutil

from portside.engine.errors import InvalidArgument

#: Where the init appears inside the container (Docker's path, so scripts that look for it work).
INIT_PATH = "/sbin/docker-init"
#: Host programs tried in order; the static build first.
CANDIDATES = ("tini-static", "docker-init", "tini")


def find_init(path: str | None = None) -> str:
    """The host's init program: ``$PORTSIDE_INIT_PATH`` or the first of :data:`CANDIDATES` on
    ``PATH`` (with ``/usr/bin`` and ``/usr/libexec/docker``), as a real path.

    Raises:
        InvalidArgument: none is installed (``--init`` needs Debian's ``tini``).
    """
    wanted = path or os.environ.get("PORTSIDE_INIT_PATH")
    if wanted:
        if not os.access(wanted, os.X_OK):
            raise InvalidArgument(f"--init: {wanted} is not an executable")
        return os.path.realpath(wanted)
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin", "/usr/libexec/docker"])
    for name in CANDIDATES:
        found = shutil.which(name, path=search)
        if found:
            return os.path.realpath(found)
    raise InvalidArgument("--init needs tini on the host (Debian's tini package): none of "
                          + ", ".join(CANDIDATES) + " found")


def with_init(args: list[str], init: str) -> tuple[list[str], dict]:
    """``(argv, mount)``: the command run under the init, and the OCI mount that puts ``init``
    at :data:`INIT_PATH`.

    >>> with_init(["sleep", "infinity"], "/usr/bin/tini-static")[0]
    ['/sbin/docker-init', '--', 'sleep', 'infinity']
    """
    mount = {"destination": INIT_PATH, "type": "bind", "source": init,
             "options": ["rbind", "ro", "nosuid", "nodev", "rprivate"]}
    return [INIT_PATH, "--", *args], mount
