"""Human-readable sizes and durations, printed the way Docker prints them, and the times and sizes
Docker's flags take."""

from __future__ import annotations

import re
import time

from .errors import InvalidArgument

_DECIMAL = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]


def human_size(size: float, precision: int = 3) -> str:
    """``4261888`` -> ``4.26MB`` (decimal units, 3 significant digits, like Docker)."""
    size = float(size)
    i = 0
    while size >= 1000 and i < len(_DECIMAL) - 1:
        size /= 1000.0
        i += 1
    text = f"{size:.{precision}g}"
    if "e" in text:
        text = f"{size:.0f}"
    return f"{text}{_DECIMAL[i]}"


def human_duration(seconds: float) -> str:
    """Docker's ``units.HumanDuration``: ``About a minute``, ``3 hours``, ``2 weeks``."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def since(ts: float, now: float | None = None) -> str:
    """``2 hours ago`` for a timestamp."""
    if not ts:
        return "N/A"
    return human_duration((now or time.time()) - ts) + " ago"


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``8g`` / ``512m`` / ``64MB`` / ``1024`` -> bytes (binary multiples, as Docker's RAMInBytes)."""
    m = _SIZE_RE.match(str(text))
    if not m:
        raise InvalidArgument(f"invalid size: '{text}'")
    number, unit = float(m.group(1)), m.group(2).lower()
    mult = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}[unit]
    return int(number * mult)


def parse_timestamp(text: str, now: float | None = None) -> float:
    """Docker's time arguments (``--since``, ``--until``, the ``until`` filter): a unix time
    (``1700000000.5``), an RFC 3339 time (``2024-05-01T10:00:00Z``; no zone means UTC), or a
    duration back from now (``10m``, ``1h30m``, ``45s``).

    Raises:
        InvalidArgument: none of these.
    """
    from .runtime.logs import parse_time

    text = str(text).strip()
    now = now if now is not None else time.time()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    if re.fullmatch(r"(?:\d+(?:\.\d+)?(?:h|m|s|ms))+", text):
        total = 0.0
        for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text):
            total += float(num) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
        return now - total
    try:
        return parse_time(text if ("Z" in text or "+" in text[10:] or "-" in text[10:])
                          else text + "Z")
    except ValueError as exc:
        raise InvalidArgument(f"invalid time value: {text}") from exc
