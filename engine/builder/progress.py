"""Build progress: typed events from one producer, drawn by several views.

A build *produces* a stream of small immutable events; it never prints.  Whoever started the
build passes a callable (``progress=``) that receives each event in order:

* :class:`BuildStep` — a step starts: ``#n [stage k/m] INSTRUCTION``;
* :class:`StepCached` — that step was found in the cache (nothing ran);
* :class:`StepLog` — one line of output of a running ``RUN``;
* :class:`StepDone` — the step finished, with its duration;
* :class:`Warning` — something the user should know (an unused build argument...);
* :class:`BuildDone` — the image exists: its id and tags.

The CLI turns them into text with :class:`PlainRenderer` (``--progress plain``, BuildKit-like
``#3 [2/4] RUN …`` lines) or :class:`JsonRenderer` (``--progress json``, one JSON object per
line); the notebook widget and the REST stream consume the very same objects.  Stages may run
on several threads at once, so the builder serialises calls to the callable (see
:class:`Progress`).
"""

from __future__ import annotations

import json
import threading
from ..records import asdict, record

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Callable, TextIO


__all__ = ["BuildStep", "StepCached", "StepLog", "StepDone", "BuildDone", "Warning",
           "Event", "Progress", "PlainRenderer", "JsonRenderer", "QuietRenderer", "renderer"]


@record(frozen=True)
class BuildStep:
    """Step ``id`` starts: it is instruction ``n`` of ``m`` in ``stage``; ``text`` as written."""

    id: int
    n: int
    m: int
    stage: str
    text: str


@record(frozen=True)
class StepCached:
    """Step ``id`` came from the build cache."""

    id: int


@record(frozen=True)
class StepLog:
    """One line of output from step ``id`` (``stream``: ``stdout`` or ``stderr``)."""

    id: int
    line: str
    stream: str = "stdout"


@record(frozen=True)
class StepDone:
    """Step ``id`` finished after ``seconds``; ``error`` is set when it failed."""

    id: int
    seconds: float
    error: str | None = None


@record(frozen=True)
class BuildDone:
    """The build produced ``image_id``, tagged ``tags``."""

    image_id: str
    tags: tuple[str, ...] = ()
    seconds: float = 0.0


@record(frozen=True)
class Warning:  # noqa: A001 - the event's natural name; never raised
    """A non-fatal message about the build."""

    message: str


Event = BuildStep | StepCached | StepLog | StepDone | BuildDone | Warning


def event_dict(event: Event) -> dict[str, Any]:
    """An event as a JSON-able dict with its ``type`` (the class name)."""
    return {"type": type(event).__name__, **asdict(event)}


class Progress:
    """The producer side: numbers steps and hands events to the consumer one at a time."""

    def __init__(self, sink: Callable[[Event], None] | None = None) -> None:
        self._sink = sink
        self._lock = threading.Lock()
        self._next = 0

    def new_step(self) -> int:
        """A fresh step id (``#1``, ``#2``... in the plain view)."""
        with self._lock:
            self._next += 1
            return self._next

    def emit(self, event: Event) -> None:
        """Deliver ``event`` (no-op without a consumer)."""
        if self._sink is None:
            return
        with self._lock:
            self._sink(event)


class PlainRenderer:
    """``--progress plain``: BuildKit's line format, one line per event."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._text: dict[int, str] = {}

    def __call__(self, event: Event) -> None:
        match event:
            case BuildStep(id=i, n=n, m=m, stage=stage, text=text):
                label = f"{stage} {n}/{m}" if stage else f"{n}/{m}"
                self._text[i] = text
                self.out.write(f"#{i} [{label}] {text}\n")
            case StepCached(id=i):
                self.out.write(f"#{i} CACHED\n")
            case StepLog(id=i, line=line):
                self.out.write(f"#{i} {line}\n")
            case StepDone(id=i, seconds=s, error=None):
                self.out.write(f"#{i} DONE {s:.1f}s\n")
            case StepDone(id=i, error=error):
                self.out.write(f"#{i} ERROR: {error}\n")
            case Warning(message=message):
                self.out.write(f"WARNING: {message}\n")
            case BuildDone(image_id=image_id, tags=tags, seconds=s):
                self.out.write(f"writing image {image_id} done\n")
                for tag in tags:
                    self.out.write(f"naming to {tag} done\n")
                self.out.write(f"build finished in {s:.2f}s\n")
        self.out.flush()


class JsonRenderer:
    """``--progress json``: one JSON object per event and line."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, event: Event) -> None:
        self.out.write(json.dumps(event_dict(event)) + "\n")
        self.out.flush()


class QuietRenderer:
    """``-q``: nothing but warnings (to ``err``)."""

    def __init__(self, err: TextIO) -> None:
        self.err = err

    def __call__(self, event: Event) -> None:
        if isinstance(event, Warning):
            self.err.write(f"WARNING: {event.message}\n")


def renderer(mode: str, out: TextIO, err: TextIO, *, quiet: bool = False
             ) -> Callable[[Event], None]:
    """Pick the view for ``--progress`` (``auto`` is ``plain``: no terminal redrawing here)."""
    if quiet:
        return QuietRenderer(err)
    if mode == "json":
        return JsonRenderer(out)
    # Docker writes build progress to stderr, keeping stdout for ids (``-q``) and JSON.
    return PlainRenderer(err)
