"""Rootless engines for processes with threads.

The kernel lets a process join a user namespace only while it has a single thread (``setns``
fails with EINVAL otherwise). The ``portside`` command joins first thing; a Jupyter kernel or
server has threads long before it imports portside (and would not want to become root in its own
eyes), so, rootless, it gets its engine through a helper process instead:
:func:`portside.engine.api.from_env` starts ``python -m
portside.engine.remote.server`` (``fork`` + ``exec``, which a threaded process may do safely),
which joins the namespace at its start and serves the model API on a unix socket pair
(:mod:`portside.engine.remote`). The pipes of an exec are handed to the caller as descriptors,
so a ``%%container exec`` cell costs what it costs with a local engine.
"""

from __future__ import annotations


def needs_engine_process() -> bool:
    """Whether a front (a kernel, a server) must reach the engine through an engine process:
    rootless and not in the namespace. Even one without threads yet: a front that joined would
    be root in its own eyes (Jupyter's server refuses to run as root) and would see every file
    of the user as root's."""
    from . import in_namespace, needs_join

    return needs_join() and not in_namespace()
