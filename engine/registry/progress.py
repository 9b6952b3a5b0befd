"""Typed progress events for pulls and pushes, and the Docker-like terminal view of them.

One producer, several views: :mod:`.pull` and :mod:`.push` call a ``progress`` callback with
:class:`LayerEvent` (one layer moved: bytes done/total, or a new phase) and :class:`Message` (a
line about the whole operation, e.g. ``latest: Pulling from library/busybox``). The CLI draws them
with :class:`TerminalRenderer`; the notebook magics and the REST API subscribe to the same events.

The phases a pulled layer goes through, in Docker's words::

    Pulling fs layer -> Waiting -> Downloading (n/total) -> Verifying Checksum
        -> Download complete -> Extracting -> Pull complete          (or: Already exists)

and a pushed one::

    Preparing -> Waiting -> Pushing (n/total) -> Pushed   (or: Layer already exists, Mounted from R)

Callbacks may be called from several download threads; :class:`Reporter` serialises them and
throttles byte counts so a fast local pull does not spend its time drawing.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable, TextIO, Union
from ..records import record

# Phases (Docker's status strings, so the CLI can print them as they are).
PULLING = "Pulling fs layer"
WAITING = "Waiting"
DOWNLOADING = "Downloading"
VERIFYING = "Verifying Checksum"
DOWNLOADED = "Download complete"
EXTRACTING = "Extracting"
PULL_COMPLETE = "Pull complete"
ALREADY_EXISTS = "Already exists"
PREPARING = "Preparing"
PUSHING = "Pushing"
PUSHED = "Pushed"
LAYER_EXISTS = "Layer already exists"
MOUNTED = "Mounted from"
RETRYING = "Retrying"

#: Phases whose line shows a byte count.
_BYTE_PHASES = (DOWNLOADING, PUSHING, EXTRACTING)


@record(frozen=True)
class LayerEvent:
    """One layer changed phase or moved bytes.

    Attributes:
        id: the layer's short id (12 hex digits of its digest).
        phase: one of the phase constants of this module.
        current: bytes done in this phase (downloaded, pushed or extracted).
        total: the layer's size in bytes (0 when unknown).
        detail: extra text (``Mounted from`` names the source repository).
    """

    id: str
    phase: str
    current: int = 0
    total: int = 0
    detail: str = ""

    def text(self) -> str:
        """Docker's one-line form: ``a1b2c3d4e5f6: Pull complete``."""
        phase = f"{self.phase} {self.detail}" if self.detail else self.phase
        return f"{self.id}: {phase}"


@record(frozen=True)
class Message:
    """A line about the whole operation (``Digest: sha256:…``, ``Status: …``)."""

    text: str


ProgressEvent = Union[LayerEvent, Message]
ProgressCallback = Callable[[ProgressEvent], None]


def short_id(digest: str) -> str:
    """The 12-hex-digit id Docker shows for a layer."""
    return digest.split(":", 1)[-1][:12]


class Reporter:
    """The producer side: thread-safe, throttled delivery to one callback (or none).

    Byte updates of one layer are passed on at most every ``interval`` seconds; phase changes
    always are.
    """

    def __init__(self, callback: ProgressCallback | None, interval: float = 0.1) -> None:
        self._callback = callback
        self._interval = interval
        self._lock = threading.Lock()
        self._last: dict[str, tuple[str, float]] = {}

    def message(self, text: str) -> None:
        if self._callback is None:
            return
        with self._lock:
            self._callback(Message(text))

    def layer(self, digest: str, phase: str, current: int = 0, total: int = 0,
              detail: str = "") -> None:
        if self._callback is None:
            return
        ident = short_id(digest)
        now = time.monotonic()
        with self._lock:
            last = self._last.get(ident)
            if (last is not None and last[0] == phase and phase in _BYTE_PHASES
                    and now - last[1] < self._interval and current < total):
                return
            self._last[ident] = (phase, now)
            self._callback(LayerEvent(ident, phase, current, total, detail))


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    return f"{n}"


def _bar(current: int, total: int, width: int = 50) -> str:
    if total <= 0:
        return ""
    filled = min(width, int(width * current / total))
    arrow = ">" if filled < width else ""
    return "[" + "=" * max(filled - (1 if arrow else 0), 0) + arrow + " " * (width - filled) + "]"


class TerminalRenderer:
    """Draws progress events as ``docker pull`` does.

    On a terminal each layer owns a line that is redrawn in place (with a progress bar while
    bytes move); otherwise each phase change is printed once, as a plain line, so logs and
    captured output stay readable.

    Args:
        out: where to write.
        tty: redraw in place (defaults to ``out.isatty()``).
    """

    def __init__(self, out: TextIO | None = None, tty: bool | None = None) -> None:
        self.out = out if out is not None else sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self._lines: list[str] = []
        self._shown: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            if isinstance(event, Message):
                self.out.write(event.text + "\n")
                self._lines.clear()  # lines above a message are no longer redrawn
            elif self.tty:
                self._draw(event)
            else:
                if self._shown.get(event.id) == event.phase:
                    return
                self._shown[event.id] = event.phase
                self.out.write(event.text() + "\n")
            self.out.flush()

    def _draw(self, event: LayerEvent) -> None:
        text = event.text()
        if event.phase in _BYTE_PHASES and event.total:
            text = (f"{event.id}: {event.phase} {_bar(event.current, event.total)}  "
                    f"{_human(event.current)}/{_human(event.total)}")
        if event.id not in self._lines:
            self._lines.append(event.id)
            self.out.write(text + "\n")
            return
        up = len(self._lines) - self._lines.index(event.id)
        self.out.write(f"\x1b[{up}A\x1b[2K\r{text}\x1b[{up}B\r")
