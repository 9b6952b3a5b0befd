"""Choosing which GPUs a count request gets.

``--gpus 2`` asks for any two GPUs. Docker always hands out the first ones, so two containers
started with ``--gpus 1`` share GPU 0 while GPU 1 idles. portside spreads them: it takes GPUs that
no running container holds, in index order, and when every GPU is taken, the least used ones. What
"held" means comes from the caller (the runtime knows which running containers got which GPU
UUIDs); this module only decides.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from portside.engine.errors import GPUError
from portside.engine.gpu.discover import GPU, NvidiaHost
from portside.engine.gpu.edits import select_gpus
from portside.engine.gpu.request import ALL, GPURequest

__all__ = ["choose_gpus"]


def choose_gpus(request: GPURequest, host: NvidiaHost,
                in_use: Iterable[str] | Mapping[str, int] = frozenset()) -> list[GPU]:
    """Pick the GPUs a request gets.

    Args:
        request: the parsed ``--gpus`` value.
        host: the discovered host.
        in_use: UUIDs of GPUs running containers hold — a set, or a mapping from UUID to the number
            of containers holding it (a list with repeats counts too).

    Returns:
        the GPUs, in index order: all of them for ``all``, the named ones for ``device=``, N chosen
        ones for a count (free first, then least used), none for count 0.

    Raises:
        GPUError: more GPUs asked for than the host has, or an unknown device id.
    """
    if request.device_ids:
        return select_gpus(host, request.device_ids)
    if request.count == ALL:
        return list(host.gpus)
    n = request.count or 0
    if n > len(host.gpus):
        raise GPUError(f"--gpus: {n} GPUs requested but this host has {len(host.gpus)}")
    load = Counter(in_use) if not isinstance(in_use, Mapping) else Counter(dict(in_use))
    # Stable sort: equal load keeps index order, so the result is predictable.
    ranked = sorted(host.gpus, key=lambda g: (load.get(g.uuid, 0), g.index))
    return sorted(ranked[:n], key=lambda g: g.index)
