"""Signals by name or number, as ``kill -s``, ``stop -s`` and ``--stop-signal`` take them."""

from __future__ import annotations

from portside.engine.errors import InvalidArgument

__all__ = ["parse_signal"]


def parse_signal(value: str | int) -> int:
    """``9``, ``KILL``, ``SIGKILL``, ``sigterm`` → the signal number.

    Raises:
        InvalidArgument: not a signal this host knows.
    """
    import signal

    text = str(value).strip()
    if text.isdigit():
        num = int(text)
        if 0 < num < signal.NSIG:
            return num
        raise InvalidArgument(f"invalid signal: {value}")
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    sig = getattr(signal.Signals, name, None) if name in signal.Signals.__members__ else None
    if sig is None:
        m = {"SIGRTMIN": signal.SIGRTMIN, "SIGRTMAX": signal.SIGRTMAX}
        if name in m:
            return int(m[name])
        raise InvalidArgument(f"invalid signal: {value}")
    return int(sig)
