"""Progress widgets: the notebook's view of the engine's typed progress events.

Long operations yield events (one producer, three views: terminal, notebook, REST). This module
is the notebook view, drawn with ipywidgets, of the engine's own event types:

* :class:`BuildProgress` — the builder's events (:mod:`portside.engine.builder.progress`):
  ``BuildStep(id, n, m, stage, text)`` starts step ``#id`` (instruction ``n`` of ``m`` in
  ``stage``), ``StepCached(id)`` says it came from the cache, ``StepLog(id, line)`` is a line of
  its output, ``StepDone(id, seconds, error)`` ends it, ``Warning(message)``, and
  ``BuildDone(image_id, tags, seconds)``. Drawn as a bar over the steps announced so far, the
  current step, a count of cache hits, and the build log (BuildKit's ``#n`` lines) in a
  collapsible section; the final image id and tags printed.
* :class:`PullProgress` — one bar per layer, from :mod:`portside.engine.registry.progress`'s
  ``LayerEvent`` / ``Message``.

Widgets only render in a front end with the widget manager (JupyterLab); elsewhere ipywidgets
prints their text form, and the final summary line is printed either way.
"""

from __future__ import annotations

import sys
from typing import Any

from portside.engine.builder.progress import (BuildDone, BuildStep, StepCached, StepDone,
                                              StepLog, Warning)
from portside.engine.registry.progress import LayerEvent, Message


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
        self.result: BuildDone | None = None
        self._stages: dict[str, int] = {}   # stage -> its number of instructions
        self._text: dict[int, str] = {}     # step id -> instruction
        self._label: dict[int, str] = {}    # step id -> "[stage n/m]"
        self._done: set[int] = set()
        #: the first step that ended with an error (its id)
        self.failed_step: int | None = None

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.box)

    def __call__(self, event: Any) -> None:
        if isinstance(event, BuildStep):
            label = f"{event.stage} {event.n}/{event.m}" if event.stage else f"{event.n}/{event.m}"
            self._stages.setdefault(event.stage, event.m)
            self.steps.max = max(sum(self._stages.values()), 1)
            self.steps.description = f"Step {event.n}/{event.m}"
            self._text[event.id] = event.text
            self._label[event.id] = label
            self.current.value = f"[{label}] {event.text}"
            self._log(f"#{event.id} [{label}] {event.text}")
        elif isinstance(event, StepCached):
            self.cache_hits += 1
            self.cache.value = f"cache hits: {self.cache_hits}"
            self._finished(event.id)
            self.current.value = f"{self._text.get(event.id, '')}  (cached)"
            self._log(f"#{event.id} CACHED")
        elif isinstance(event, StepLog):
            self._log(f"#{event.id} {event.line}")
        elif isinstance(event, StepDone):
            self._finished(event.id)
            if event.error is not None and self.failed_step is None:
                self.failed_step = event.id
            self._log(f"#{event.id} DONE {event.seconds:.1f}s" if event.error is None
                      else f"#{event.id} ERROR: {event.error}")
        elif isinstance(event, Warning):
            self._log(f"WARNING: {event.message}")
        elif isinstance(event, BuildDone):
            self.result = event
            self.steps.value = self.steps.max
            self.steps.bar_style = "success"
            # the id and tags are printed once, under the widget (summary_line)
            self.current.value = (f"done in {event.seconds:.1f}s, {self.cache_hits} of "
                                  f"{len(self._done)} steps cached")

    def _finished(self, step_id: int) -> None:
        if step_id not in self._done:
            self._done.add(step_id)
            self.steps.value = min(len(self._done), self.steps.max)

    def _log(self, line: str) -> None:
        self.lines.append(line)
        self.log.append_stdout(line + "\n")

    def step_text(self, step_id: int) -> tuple[str, str]:
        """``(label, instruction)`` of a step announced so far (``("", "")`` when unknown)."""
        return self._label.get(step_id, ""), self._text.get(step_id, "")

    def failed(self) -> None:
        """Mark the build as failed (the error itself is shown once, below the widget) and open
        the log when it has lines to show."""
        self.steps.bar_style = "danger"
        if self.failed_step is not None:
            label, text = self.step_text(self.failed_step)
            self.current.value = f"failed at step [{label}] {text}"
        else:
            self.current.value = "failed"
        if self.lines:
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
        if isinstance(event, LayerEvent):
            w = _widgets()
            bar = self.bars.get(event.id)
            if bar is None:
                bar = self.bars[event.id] = w.IntProgress(value=0, min=0, max=1,
                                                          description=event.id[:12])
                label = self.labels[event.id] = w.Label(value="")
                self.rows.children = (*self.rows.children, w.HBox([bar, label]))
            if event.total:
                bar.max = event.total
                bar.value = min(event.current, event.total)
            if event.phase in ("Pull complete", "Already exists", "Pushed",
                               "Layer already exists") or event.phase.startswith("Mounted"):
                bar.value = bar.max
                bar.bar_style = "success"
            self.labels[event.id].value = str(event.phase) + (
                f" {event.current}/{event.total}" if event.total and event.phase in
                ("Downloading", "Pushing", "Extracting") else "")
        elif isinstance(event, Message):
            self.messages.append(event.text)
            self.header.value = event.text


def summary_line(result: BuildDone | str) -> str:
    """``"Successfully built <id>; tagged a:b, c:d"`` for a build's ``BuildDone`` (or an id)."""
    if isinstance(result, BuildDone):
        tags = list(result.tags)
        return f"Successfully built {result.image_id}" + (f"; tagged {', '.join(tags)}"
                                                          if tags else "")
    return f"Successfully built {result}"


def print_summary(result: BuildDone | str, out: Any = None) -> None:
    (out or sys.stdout).write(summary_line(result) + "\n")
