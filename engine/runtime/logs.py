"""Container logs: what the container wrote to stdout and stderr, one JSON object per line.

The format is Docker's ``json-file`` driver, so the files read the same as Docker's::

    {"log":"hello\\n","stream":"stdout","time":"2024-05-01T12:00:00.123456789Z"}

Each entry is one line of output (its ``\\n`` kept in ``log``) with the time the monitor read it. A
line the container has not finished (no trailing newline, e.g. ``printf hi`` then exit) is written as
its own entry without the ``\\n``: a *partial* entry. Readers join nothing; they hand back each entry's
bytes as written, so ``cat``-ing the entries reproduces the output exactly.

Output is bytes, JSON is text: bytes that are not UTF-8 are kept by decoding with
``surrogateescape`` (stored as ``\\udcXX`` escapes) and re-encoding the same way when reading.

The monitor process writes the file with its own few lines of code (it imports nothing from
portside to stay small); :func:`write_entry` is the reference writer and must stay in step with it.
:func:`read_logs` implements ``logs --tail/--since/--follow/--timestamps``.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Callable, IO, Iterator


STDOUT = "stdout"
STDERR = "stderr"

#: How often ``follow`` polls the file for new entries (no inotify: works on every filesystem).
POLL_INTERVAL = 0.05


def format_time(ts: float | int, ns: int | None = None) -> str:
    """RFC 3339 time with nanoseconds in UTC, fixed width: ``2024-05-01T12:00:00.123456789Z``.

    Args:
        ts: seconds since the epoch (float), used when ``ns`` is None.
        ns: nanoseconds since the epoch (exact), preferred when known.
    """
    if ns is None:
        ns = int(round(ts * 1e9))
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


@functools.lru_cache(maxsize=256)
def _whole_seconds(text: str) -> int:
    # Cached: consecutive log entries share their second. The form the monitor writes is read
    # by hand: strptime's first call costs milliseconds (it compiles its patterns).
    if (len(text) == 19 and text[4] == "-" and text[7] == "-" and text[10] == "T"
            and text[13] == ":" and text[16] == ":"):
        parts = (text[0:4], text[5:7], text[8:10], text[11:13], text[14:16], text[17:19])
        if all(p.isascii() and p.isdigit() for p in parts):
            from datetime import datetime, timezone

            try:
                y, mo, d, h, mi, s = (int(p) for p in parts)
                return int(datetime(y, mo, d, h, mi, s, tzinfo=timezone.utc).timestamp())
            except ValueError:
                pass  # a day or hour out of range: strptime says what is wrong
    import calendar

    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))


def parse_time(text: str) -> float:
    """Parse an RFC 3339 time (``Z`` or ``±hh:mm`` offset, any fraction) to epoch seconds.

    Raises:
        ValueError: the text is not an RFC 3339 time.
    """
    text = text.strip()
    offset = 0
    if text.endswith(("Z", "z")):
        body = text[:-1]
    else:
        sign_at = max(text.rfind("+"), text.rfind("-"))
        if sign_at <= 10:
            raise ValueError(f"not an RFC 3339 time: {text}")
        body, tz = text[:sign_at], text[sign_at:]
        hours, _, minutes = tz[1:].partition(":")
        offset = (int(hours) * 60 + int(minutes or 0)) * 60 * (1 if tz[0] == "+" else -1)
    whole, _, frac = body.partition(".")
    base = _whole_seconds(whole)
    return base - offset + (float("0." + frac) if frac else 0.0)


def encode_entry(stream: str, data: bytes, ts: float | None = None, ns: int | None = None) -> bytes:
    """One log line (JSON + ``\\n``) for ``data`` from ``stream`` at time ``ts``/``ns``."""
    if ts is None and ns is None:
        ns = time.time_ns()
    doc = {"log": data.decode("utf-8", "surrogateescape"), "stream": stream,
           "time": format_time(ts or 0.0, ns)}
    return json.dumps(doc, separators=(",", ":")).encode("ascii") + b"\n"


def write_entry(f: IO[bytes], stream: str, data: bytes, ts: float) -> None:
    """Append ``data`` to the log file ``f`` (opened in binary append mode) as entries.

    ``data`` is split after each ``\\n``; a trailing piece without one becomes a partial entry.

    Args:
        f: the open log file.
        stream: ``"stdout"`` or ``"stderr"``.
        data: the bytes the container wrote.
        ts: when they were read, seconds since the epoch.
    """
    out = []
    for line in data.splitlines(keepends=True):
        out.append(encode_entry(stream, line, ts))
    f.write(b"".join(out))


def _decode_line(line: bytes) -> tuple[str, bytes, float] | None:
    try:
        doc = json.loads(line)
        return (doc.get("stream", STDOUT), doc["log"].encode("utf-8", "surrogateescape"),
                parse_time(doc["time"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # a torn or foreign line: skip it rather than fail the whole read


def _tail_offset(f: IO[bytes], n: int, end: int | None = None, block: int = 65536) -> int:
    """Offset of the start of the last ``n`` complete lines of ``f`` before ``end`` (0 if there
    are fewer); a partial last line (the writer mid-write) is not counted."""
    if end is None:
        f.seek(0, os.SEEK_END)
        end = f.tell()
    pos = end
    newlines = 0
    # The file ends with "\n"; the (n+1)-th newline from the end precedes the first wanted line.
    while pos > 0:
        size = min(block, pos)
        pos -= size
        f.seek(pos)
        chunk = f.read(size)
        for i in range(len(chunk) - 1, -1, -1):
            if chunk[i] == 0x0A:
                newlines += 1
                if newlines == n + 1:
                    return pos + i + 1
    return 0


def read_logs(path: str | os.PathLike[str], *, tail: int | None = None, since: float | None = None,
              until: float | None = None, follow: bool = False,
              is_running: Callable[[], bool] = lambda: False,
              timestamps: bool = False) -> Iterator[tuple[str, bytes, float]]:
    """Yield ``(stream, data, time)`` for each log entry of a container, oldest first.

    Args:
        path: the container's log file; a missing file reads as empty.
        tail: only the last ``tail`` entries (``0`` gives none, None all).
        since: only entries at or after this epoch time.
        until: only entries before this epoch time.
        follow: after the existing entries, keep polling for new ones while ``is_running()``
            returns True; the entries written before the exit are still delivered.
        is_running: tells whether the container may still write (its exit not recorded yet).
        timestamps: prefix each entry's data with its RFC 3339 time and a space (``logs -t``).
    """
    path = Path(path)
    buf = b""
    f: IO[bytes] | None = None

    def emit(line: bytes) -> Iterator[tuple[str, bytes, float]]:
        entry = _decode_line(line)
        if entry is None:
            return
        stream, data, ts = entry
        if since is not None and ts < since:
            return
        if until is not None and ts >= until:
            return
        if timestamps:
            data = format_time(ts).encode() + b" " + data
        yield stream, data, ts

    try:
        while f is None:
            try:
                f = open(path, "rb")
            except FileNotFoundError:
                if not (follow and is_running()):
                    return
                time.sleep(POLL_INTERVAL)
        # Without follow, the log is read as it was when asked: lines the container writes
        # meanwhile would make `--tail N` return more than N.
        end = None if follow else os.fstat(f.fileno()).st_size
        if tail is not None:
            if tail <= 0:
                f.seek(0, os.SEEK_END)
            else:
                f.seek(_tail_offset(f, tail, end))
        while True:
            want = 1 << 20 if end is None else min(1 << 20, end - f.tell())
            chunk = f.read(want) if want > 0 else b""
            if chunk:
                buf += chunk
                lines = buf.split(b"\n")
                buf = lines.pop()  # an incomplete JSON line: the writer is mid-write
                for line in lines:
                    if line:
                        yield from emit(line)
                continue
            if not follow:
                break
            if not is_running():
                # One last read: the monitor records the exit only after the final entries.
                rest = f.read()
                buf += rest
                for line in buf.split(b"\n"):
                    if line:
                        yield from emit(line)
                break
            time.sleep(POLL_INTERVAL)
    finally:
        if f is not None:
            f.close()


def follow_output(log: str | os.PathLike[str], exit_file: str | os.PathLike[str],
                  write: Callable[[str, bytes], None], wake: int | None = None) -> None:
    """Hand each new log entry's ``(stream, data)`` to ``write`` as the log grows, until the
    container's exit is recorded in ``exit_file`` (or its folder is gone: removed meanwhile),
    and return once everything before the exit was written.

    ``wake``: a descriptor that becomes readable when the container exits (its monitor's
    report), which ends a wait for more output at once rather than at the next poll.
    """
    import select

    log_path, done_path = Path(log), Path(exit_file)
    buf = b""
    delay = 0.002
    f = None
    try:
        while True:
            if f is None:
                try:
                    f = open(log_path, "rb")
                except FileNotFoundError:
                    f = None
            done = done_path.exists() or not done_path.parent.exists()
            chunk = f.read() if f is not None else b""
            if chunk:
                buf += chunk
                lines = buf.split(b"\n")
                buf = lines.pop()
                for line in lines:
                    entry = _decode_line(line) if line else None
                    if entry is not None:
                        write(entry[0], entry[1])
                delay = 0.002
                continue
            if done:
                return
            if wake is None:
                time.sleep(delay)
            elif select.select([wake], [], [], delay)[0]:
                wake = None  # the exit is near (the file is written first): poll from now on
            delay = min(delay * 1.5, 0.05)
    finally:
        if f is not None:
            f.close()
