"""Fault-injection points for crash tests.

``PORTSIDE_FAULT=<point>`` makes the process kill itself with SIGKILL when it reaches that point,
so tests can prove that a crash at any step leaves the store consistent. The check is one
dictionary lookup; production runs never set the variable.
"""

from __future__ import annotations

import os
import signal


def point(name: str) -> None:
    """Die here (SIGKILL, no cleanup) when ``PORTSIDE_FAULT`` names this point."""
    wanted = os.environ.get("PORTSIDE_FAULT")
    if wanted and wanted == name:
        os.kill(os.getpid(), signal.SIGKILL)
