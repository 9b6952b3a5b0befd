"""Rootless engines for processes with threads.

The kernel lets a process join a user namespace only while it has a single thread (``setns``
fails with EINVAL otherwise). The ``portside`` command joins first thing; a Jupyter kernel or
server has threads long before it imports portside, so, rootless, it gets its engine through a
helper process instead: :func:`portside.engine.api.from_env` starts ``python -m
portside.engine.remote.server`` (``fork`` + ``exec``, which a threaded process may do safely),
which joins the namespace at its start and serves the model API on a unix socket pair
(:mod:`portside.engine.remote`). Containers' pipes are made by the caller and handed over as
descriptors, so a ``%%container exec`` cell costs what it costs with a local engine.
"""

from __future__ import annotations


def needs_engine_process() -> bool:
    """Whether this process must reach the engine through an engine process: rootless, not in
    the namespace yet, and with threads (it could not join)."""
    from . import in_namespace, needs_join
    from .userns import _threads

    return needs_join() and not in_namespace() and _threads() > 1
