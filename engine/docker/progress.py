"""dockerd's JSON progress streams as portside's typed progress events.

One producer per view: the CLI's bars, the notebook's widgets and the REST stream draw the same
event types whichever engine made them. dockerd streams one JSON object per line:

* pull, push, load, import (``docker pull`` draws these)::

      {"status": "Pulling from library/busybox", "id": "latest"}
      {"status": "Downloading", "id": "a1b2c3d4e5f6",
       "progressDetail": {"current": 1024, "total": 2048}}
      {"status": "Digest: sha256:…"}
      {"error": "…", "errorDetail": {"message": "…"}}
      {"aux": {"Tag": "1", "Digest": "sha256:…", "Size": 527}}        (push)

  become :class:`~portside.engine.registry.progress.LayerEvent` (a layer id and one of Docker's
  phases, which portside's own pull uses too) and
  :class:`~portside.engine.registry.progress.Message` (a line about the whole operation);

* the classic builder (the Engine API's ``/build``)::

      {"stream": "Step 2/4 : RUN make"}  {"stream": "\\n"}
      {"stream": " ---> Running in 3c7b…\\n"}  {"stream": "cc -o app app.c\\n"}
      {"stream": " ---> Using cache\\n"}  {"stream": " ---> 1a2b3c4d5e6f\\n"}
      {"aux": {"ID": "sha256:…"}}  {"stream": "Successfully tagged exp:1\\n"}

  become :mod:`portside.engine.builder.progress`'s ``BuildStep``, ``StepCached``, ``StepLog``,
  ``StepDone`` and ``BuildDone`` (:class:`BuildTranslator`).
"""

from __future__ import annotations

import re
import time

from ..errors import BuildError, DockerfileError, InvalidArgument, NotFound, RegistryError, \
    Unauthorized

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable

#: Docker's layer phases (its status strings): a line with one of these and an id is a layer's.
_LAYER_PHASES = ("Pulling fs layer", "Waiting", "Downloading", "Verifying Checksum",
                 "Download complete", "Extracting", "Pull complete", "Already exists",
                 "Preparing", "Pushing", "Pushed", "Layer already exists", "Mounted from",
                 "Retrying", "Loading layer")


def registry_error(message: str) -> Exception:
    """An error line of a pull or push as portside's error (Docker's message kept)."""
    low = message.lower()
    if "unauthorized" in low or "authentication required" in low or "denied" in low:
        return Unauthorized(message)
    if "manifest unknown" in low or "not found" in low or "no such image" in low:
        return NotFound(message)
    return RegistryError(message)


def follow_transfer(stream: Iterable[dict], progress: Callable[[Any], None] | None,
                    on_error: Callable[[str], Exception] = registry_error) -> list[dict]:
    """Turn a pull/push/load/import stream into events for ``progress``; returns the ``aux``
    documents and the plain status lines' dicts (what the caller reads results from).

    Raises:
        the error ``on_error`` makes of an ``error`` line.
    """
    from ..registry.progress import Reporter

    reporter = Reporter(progress)
    kept: list[dict] = []
    for doc in stream:
        if not isinstance(doc, dict):
            continue
        if doc.get("error") or doc.get("errorDetail"):
            message = doc.get("error") or (doc.get("errorDetail") or {}).get("message", "")
            raise on_error(" ".join(str(message).split()))
        if "aux" in doc:
            kept.append(doc)
            continue
        status = str(doc.get("status") or "").strip()
        ident = doc.get("id")
        stream_text = doc.get("stream")
        if stream_text is not None:  # load: {"stream": "Loaded image: x:1\n"}
            kept.append(doc)
            for line in str(stream_text).splitlines():
                if line.strip():
                    reporter.message(line.strip())
            continue
        if not status:
            continue
        kept.append(doc)
        phase = next((p for p in _LAYER_PHASES if status.startswith(p)), None)
        if ident and phase is not None:
            detail = status[len(phase):].strip()
            progress_detail = doc.get("progressDetail") or {}
            reporter.layer(str(ident), phase, int(progress_detail.get("current") or 0),
                           int(progress_detail.get("total") or 0), detail)
        elif ident:
            reporter.message(f"{ident}: {status}")
        else:
            reporter.message(status)
    return kept


# ------------------------------------------------------------------------------------ builds
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$", re.S)
_RESULT = re.compile(r"^ ---> ([0-9a-f]{12,64})$")
_RUNNING = re.compile(r"^ ---> Running in ([0-9a-f]{12,64})$")
_FROM_AS = re.compile(r"^FROM\s+\S+\s+AS\s+(\S+)", re.I)
_PARSE_ERROR = re.compile(r"dockerfile parse error line (\d+): (.*)", re.I)


def build_request_error(message: str, dockerfile: str = "Dockerfile") -> Exception:
    """An error dockerd gave before any step ran (a Dockerfile it cannot parse, a bad option)."""
    m = _PARSE_ERROR.search(message)
    if m:
        return DockerfileError(m.group(2).strip(), int(m.group(1)), filename=dockerfile)
    return InvalidArgument(message)


class BuildTranslator:
    """Feeds the classic builder's stream to a build ``progress`` callable as typed events.

    Each ``Step n/m`` is a :class:`BuildStep` (its id is ``n``: the classic builder numbers
    steps across stages, as BuildKit's plain view numbers them); a ``Using cache`` line marks it
    :class:`StepCached`; its output lines are :class:`StepLog`; the ``---> ID`` line that ends it
    is :class:`StepDone`. ``image_id`` is the built image's id once the stream has ended.
    """

    def __init__(self, progress: Callable[[Any], None] | None,
                 dockerfile: str = "Dockerfile") -> None:
        self.progress = progress
        self.dockerfile = dockerfile
        self.image_id: str | None = None
        self.tags: list[str] = []
        self.step: int | None = None
        self.step_text = ""
        self.step_started = 0.0
        self.stage = ""
        self.started = time.monotonic()
        self.tail: list[str] = []
        self._partial = ""

    def _emit(self, event: Any) -> None:
        if self.progress is not None:
            self.progress(event)

    def feed(self, doc: dict) -> None:
        """One JSON object of the stream. Raises BuildError for an error line."""
        from ..builder.progress import Warning as BuildWarning

        if doc.get("error") or doc.get("errorDetail"):
            detail = doc.get("errorDetail") or {}
            message = " ".join(str(doc.get("error") or detail.get("message", "")).split())
            self._fail(message, detail.get("code"))
        aux = doc.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            self.image_id = aux["ID"]
            return
        text = doc.get("stream")
        if text is None:
            status = doc.get("status")  # a FROM that pulls: the pull's own lines
            if status and self.step is not None:
                ident = doc.get("id")
                self._emit(self._log(f"{ident}: {status}" if ident else str(status)))
            return
        text = self._partial + str(text)
        lines = text.split("\n")
        self._partial = lines.pop()
        if self._partial.startswith("Step ") and _STEP.match(self._partial):
            self._line(self._partial)  # "Step n/m : X" comes without its newline
            self._partial = ""
        for line in lines:
            if line.startswith("[Warning]") or line.startswith("[WARNING]"):
                self._emit(BuildWarning(line.split("]", 1)[1].strip()))
                continue
            self._line(line)

    def _log(self, line: str):
        from ..builder.progress import StepLog

        self.tail = (self.tail + [line])[-20:]
        return StepLog(self.step or 0, line)

    def _line(self, line: str) -> None:
        from ..builder.progress import BuildStep, StepCached, StepDone

        if not line.strip():
            return
        if line.startswith("Successfully built ") or line.startswith("Successfully tagged "):
            if line.startswith("Successfully tagged "):
                self.tags.append(line.split(" ", 2)[2].strip())
            return
        m = _STEP.match(line)
        if m:
            self._close_step()
            n, total, instruction = int(m.group(1)), int(m.group(2)), m.group(3).strip()
            as_ = _FROM_AS.match(instruction)
            if instruction.upper().startswith("FROM"):
                self.stage = as_.group(1) if as_ else ""
            self.step, self.step_text, self.step_started = n, instruction, time.monotonic()
            self._emit(BuildStep(n, n, total, self.stage, instruction))
            return
        if self.step is None:
            self._emit(self._log(line))
            return
        if line.strip() == "---> Using cache":
            self._emit(StepCached(self.step))
            return
        if _RUNNING.match(line) or line.startswith("Removing intermediate container"):
            return
        m = _RESULT.match(line)
        if m:
            self._emit(StepDone(self.step, round(time.monotonic() - self.step_started, 3)))
            self.step = None
            return
        self._emit(self._log(line))

    def _close_step(self) -> None:
        from ..builder.progress import StepDone

        if self.step is not None:  # a step with no result line (ONBUILD triggers, FROM scratch)
            self._emit(StepDone(self.step, round(time.monotonic() - self.step_started, 3)))
            self.step = None

    def _fail(self, message: str, code: Any) -> None:
        from ..builder.progress import StepDone

        step = self.step_text or None
        if self.step is not None:
            self._emit(StepDone(self.step, round(time.monotonic() - self.step_started, 3),
                                error=message))
        status = None
        m = re.search(r"returned a non-zero code: (\d+)", message)
        if m:
            status = int(m.group(1))
        elif isinstance(code, int):
            status = code
        if step is None:
            raise build_request_error(message, self.dockerfile)
        raise BuildError(f"{step}: {message}" if step not in message else message, step=step,
                         status=status, output_tail=list(self.tail))

    def finish(self) -> None:
        """The stream ended: the last step is done and the build is, too."""
        from ..builder.progress import BuildDone

        if self._partial:
            self._line(self._partial)
            self._partial = ""
        self._close_step()
        if self.image_id is not None:
            self._emit(BuildDone(self.image_id, tuple(self.tags),
                                 round(time.monotonic() - self.started, 3)))
