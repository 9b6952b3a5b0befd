"""Fault-injection points for crash tests.

``PORTSIDE_FAULT=<point>`` makes the process kill itself with SIGKILL when it reaches that point,
so tests can prove that a crash at any step leaves the store consistent.
``PORTSIDE_FAULT=<point>:stop`` stops it there instead (SIGSTOP), alive and holding whatever it
holds, so tests can prove that another process leaves its live work alone (``SIGCONT`` resumes
it). The check is one dictionary lookup; production runs never set the variable.

Points (grep ``faults.point`` for where): ``load-extracted``, ``layer-blob-written``,
``layer-unpacked``, ``image-before-record`` (load, import, pull, commit, build);
``pull-layer-partial``; ``commit-layer-written``, ``commit-layer-ingested``;
``create-recorded``, ``create-seeding``; ``start-mounted``, ``start-network``,
``start-bundle``, ``start-handed-over`` (the monitor runs it; the state is not saved yet);
``build-run-started``.
"""

from __future__ import annotations

import os
import signal


_stopped: set[str] = set()


def point(name: str) -> None:
    """Die here (SIGKILL, no cleanup) when ``PORTSIDE_FAULT`` names this point; with
    ``:stop`` after the name, stop here (SIGSTOP) instead, the first time only."""
    wanted = os.environ.get("PORTSIDE_FAULT")
    if wanted and wanted.partition(":")[0] == name:
        if not wanted.endswith(":stop"):
            os.kill(os.getpid(), signal.SIGKILL)
        elif name not in _stopped:
            _stopped.add(name)
            os.kill(os.getpid(), signal.SIGSTOP)
