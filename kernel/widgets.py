"""Progress widgets: the notebook's view of the engine's typed progress events.

Long operations yield events (one producer, three views: terminal, notebook, REST). This module
is the notebook view, drawn with ipywidgets:

* :class:`BuildProgress` — a bar over the Dockerfile's steps, the current step, a count of cache
  hits, and the build log in a collapsible section; the final image id and tags printed.
* :class:`PullProgress` — one bar per layer, driven by ``portside.engine.registry.progress``'s
  ``LayerEvent`` / ``Message``.

Build events are read by shape, not by class, so the widget works with the builder's own event
classes as long as they carry these attributes (the dataclasses below document the protocol and
are what the tests feed):

    step event:  ``step`` (1-based), ``total``, ``text`` (the instruction), ``cached`` (bool)
    log event:   ``line``
    done event:  ``image_id``, ``tags``

Widgets only render in a front end with the widget manager (JupyterLab); elsewhere ipywidgets
prints their text form, and the final summary line is printed either way.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BuildStep:
    """Step ``step`` of ``total`` started; ``cached`` when its result came from the cache."""

    step: int
    total: int
    text: str
    cached: bool = False


@dataclass(frozen=True)
class BuildLog:
    """One line of output from a ``RUN`` step (or a builder message)."""

    line: str


@dataclass(frozen=True)
class BuildDone:
    """The build finished with image ``image_id`` named ``tags``."""

    image_id: str
    tags: list[str] = field(default_factory=list)


def _widgets():
    import ipywidgets

    return ipywidgets


class BuildProgress:
    """Draws build events; call it with each event (it is a progress callback)."""

    def __init__(self, title: str = "Building") -> None:
        w = _widgets()
        self.steps = w.IntProgress(value=0, min=0, max=1, description="Step 0/?",
                                   bar_style="info", layout=w.Layout(width="60%"))
        self.current = w.Label(value=title)
        self.cache = w.Label(value="cache hits: 0")
        self.log = w.Output(layout=w.Layout(max_height="300px", overflow="auto"))
        self.accordion = w.Accordion(children=[self.log])
        self.accordion.set_title(0, "Build log")
        try:
            self.accordion.selected_index = None
        except Exception:  # older ipywidgets
            pass
        self.box = w.VBox([w.HBox([self.steps, self.cache]), self.current, self.accordion])
        self.cache_hits = 0
        self.lines: list[str] = []
        self.result: Any = None

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.box)

    def __call__(self, event: Any) -> None:
        if hasattr(event, "step") and hasattr(event, "total"):
            total = max(int(event.total or 0), 1)
            self.steps.max = total
            self.steps.value = min(int(event.step), total)
            self.steps.description = f"Step {event.step}/{event.total}"
            cached = bool(getattr(event, "cached", False))
            if cached:
                self.cache_hits += 1
                self.cache.value = f"cache hits: {self.cache_hits}"
            text = getattr(event, "text", "")
            self.current.value = f"{text}" + ("  (cached)" if cached else "")
            self._log(f"Step {event.step}/{event.total} : {text}" + (" (cached)" if cached else ""))
        elif hasattr(event, "image_id"):
            self.result = event
            self.steps.value = self.steps.max
            self.steps.bar_style = "success"
            tags = list(getattr(event, "tags", []) or [])
            self.current.value = f"Built {event.image_id}" + (f" as {', '.join(tags)}" if tags else "")
        elif hasattr(event, "line"):
            self._log(str(event.line).rstrip("\n"))
        else:
            self._log(str(event))

    def _log(self, line: str) -> None:
        self.lines.append(line)
        self.log.append_stdout(line + "\n")

    def failed(self, message: str) -> None:
        """Mark the build as failed and open the log so the failing step is visible."""
        self.steps.bar_style = "danger"
        self.current.value = f"failed: {message}"
        try:
            self.accordion.selected_index = 0
        except Exception:
            pass


class PullProgress:
    """One bar per layer for pulls and pushes (``LayerEvent`` / ``Message`` events)."""

    def __init__(self) -> None:
        w = _widgets()
        self.header = w.Label(value="")
        self.rows = w.VBox([])
        self.box = w.VBox([self.header, self.rows])
        self.bars: dict[str, Any] = {}
        self.labels: dict[str, Any] = {}
        self.messages: list[str] = []

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.box)

    def __call__(self, event: Any) -> None:
        if hasattr(event, "phase") and hasattr(event, "id"):
            w = _widgets()
            bar = self.bars.get(event.id)
            if bar is None:
                bar = self.bars[event.id] = w.IntProgress(value=0, min=0, max=1,
                                                          description=event.id[:12])
                label = self.labels[event.id] = w.Label(value="")
                self.rows.children = (*self.rows.children, w.HBox([bar, label]))
            total = int(getattr(event, "total", 0) or 0)
            current = int(getattr(event, "current", 0) or 0)
            if total:
                bar.max = total
                bar.value = min(current, total)
            if event.phase in ("Pull complete", "Already exists", "Pushed",
                               "Layer already exists") or event.phase.startswith("Mounted"):
                bar.value = bar.max
                bar.bar_style = "success"
            self.labels[event.id].value = str(event.phase) + (
                f" {current}/{total}" if total and event.phase in ("Downloading", "Pushing",
                                                                   "Extracting") else "")
        else:
            text = str(getattr(event, "text", event))
            self.messages.append(text)
            self.header.value = text


def summary_line(result: Any) -> str:
    """``"Successfully built <id>; tagged a:b, c:d"`` for a build's final event or image."""
    image_id = getattr(result, "image_id", None) or getattr(result, "id", None) or str(result)
    tags = list(getattr(result, "tags", []) or [])
    return f"Successfully built {image_id}" + (f"; tagged {', '.join(tags)}" if tags else "")


def print_summary(result: Any, out: Any = None) -> None:
    (out or sys.stdout).write(summary_line(result) + "\n")
