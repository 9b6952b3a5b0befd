"""The builder: typed Dockerfile stages in, images out.

A build walks each *stage* of a parsed Dockerfile (see :mod:`portside.engine.builder`) from its
``FROM`` to its last instruction, keeping a :class:`StageState`: the image config being edited,
the layer stack, the history and the *cache key* of the last step.  Each instruction is one
``match`` arm:

* metadata instructions (``ENV``, ``CMD``, ``LABEL``, ``USER``, ``EXPOSE``...) only edit the
  config and add an ``empty_layer`` history entry, as BuildKit does;
* ``RUN``, ``COPY``, ``ADD`` and ``WORKDIR`` change files: they work in an overlay
  :class:`~.run.Workspace` over the current layers, and what they changed (the overlay's upper
  directory) becomes the next layer.

Before a file-changing step runs, its cache key (parent key + expanded instruction + the content
of the files it reads, :mod:`.cache`) is looked up; a hit reuses the stored layer and nothing
runs.  Stages that do not depend on each other are built on separate threads; only the target
stage (``--target``, else the last) and the stages it needs are built at all.

Failures leave nothing half-made: a failing step raises after its workspace is unmounted and
removed, new blobs and snapshots stay leased until the image record that references them is
committed (or are collected later), and no image is recorded.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import threading
import time
from pathlib import Path

from portside.engine.builder import (
    Add, Arg, Cmd, Copy, Dockerfile, Entrypoint, Env, Expose, From, Healthcheck, Instruction,
    Label, Maintainer, Onbuild, Run, Shell, Stage, Step, Stopsignal, User,
    Volume, Workdir, expand_from, parse_dockerfile, parse_mount, resolve_meta_args, resolve_stage,
)
from portside.engine.builder.cache import BuildCache, cache_key
from portside.engine.builder.context import BuildContext, clean_path
from portside.engine.builder.progress import (
    BuildDone, BuildStep, Progress, StepCached, StepDone, StepLog, Warning,
)
from portside.engine.builder.run import (
    ReadOnlyView, RunRequest, Workspace, clean_stale, commit_upper, run_in_workspace,
)
from portside.engine.errors import DockerfileError, EngineError, InvalidArgument, NotFound
from portside.engine.image.store import ImageRecord, ImageStore, LayerRef
from portside.engine.records import field, fields, record, replace
from portside.engine.rootfs import resolve, resolve_user

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping, Sequence

    from concurrent.futures import Future


__all__ = ["Builder", "StageState", "BuildOptions", "PREDEFINED_ARGS", "builtin_args"]

#: Build arguments every Dockerfile may use without declaring them (proxies), as with Docker.
PREDEFINED_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
                   "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")

_DEFAULT_SHELL = ["/bin/sh", "-c"]
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Layers = list[tuple[LayerRef, str]]


def builtin_args(platform: dict[str, str] | None = None) -> dict[str, str]:
    """The automatic platform arguments (``TARGETPLATFORM``, ``BUILDARCH``...)."""
    from portside.engine.image.oci import host_platform

    host = host_platform()
    target = platform or host

    def text(p: dict[str, str]) -> str:
        return "/".join(x for x in (p["os"], p["architecture"], p.get("variant") or "") if x)

    return {
        "TARGETPLATFORM": text(target), "TARGETOS": target["os"],
        "TARGETARCH": target["architecture"], "TARGETVARIANT": target.get("variant") or "",
        "BUILDPLATFORM": text(host), "BUILDOS": host["os"], "BUILDARCH": host["architecture"],
        "BUILDVARIANT": host.get("variant") or "",
    }


def _parse_platform(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    parts = text.split("/")
    if len(parts) < 2 or not all(parts[:2]):
        raise InvalidArgument(f"invalid platform: {text} (expected os/arch[/variant])")
    plat = {"os": parts[0], "architecture": parts[1]}
    if len(parts) > 2 and parts[2]:
        plat["variant"] = parts[2]
    return plat


@record
class BuildOptions:
    """How to build (everything but the Dockerfile and the context)."""

    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    tags: Sequence[str] = ()
    labels: dict[str, str] = field(default_factory=dict)
    no_cache: bool = False
    source_date_epoch: int | None = None
    platform: str | None = None
    #: where the Dockerfile came from, for the ``io.portside.source`` label
    #: (``notebook:analysis.ipynb#cell=3f2a`` or ``dockerfile:/path/Dockerfile``); default: the
    #: Dockerfile's name in the context
    source: str | None = None
    #: record where the image came from in its manifest's annotations (see
    #: :meth:`Builder._provenance`)
    provenance: bool = True


@record
class StageState:
    """A stage while it is being built: config, layers, history and the last cache key."""

    index: int
    name: str
    config: dict[str, Any]
    layers: Layers
    history: list[dict]
    key: str
    platform: dict[str, str]
    author: str | None = None
    created: float | None = None
    image_id: str | None = None     # base image, for COPY --from=<image> keys
    base_name: str | None = None    # the base image as FROM named it (provenance)
    base_digest: str | None = None  # its manifest digest (provenance)
    cmd_set: bool = False           # a CMD was given in this stage (ENTRYPOINT keeps it)

    def lowers(self, snapshots) -> list[Path]:
        """Snapshot directories of the current layers, topmost first."""
        return [snapshots.path(chain) for _, chain in reversed(self.layers)]

    @property
    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.config.get("Env") or []:
            key, _, value = item.partition("=")
            out[key] = value
        return out

    def set_env(self, key: str, value: str) -> None:
        """``ENV key=value`` as BuildKit does it: a variable the config has keeps its place
        (its first entry takes the new value), a new one goes last."""
        items = list(self.config.get("Env") or [])
        for i, item in enumerate(items):
            if item.partition("=")[0] == key:
                items[i] = f"{key}={value}"
                break
        else:
            items.append(f"{key}={value}")
        self.config["Env"] = items

    def ensure_path(self) -> "StageState":
        """BuildKit's rule for a stage's start: when the base image's ``Env`` has no ``PATH``,
        the default one is appended to it (so it is first when the base has no ``Env``), and a
        later ``ENV`` keeps it. Windows images are left to their OS. Returns the state."""
        env = list(self.config.get("Env") or [])
        if self.platform.get("os") != "windows" and \
                not any(e.partition("=")[0] == "PATH" for e in env):
            self.config["Env"] = [*env, f"PATH={_DEFAULT_PATH}"]
        return self


def _describe(inst: Instruction) -> str:
    """The expanded instruction as a stable string (line numbers and original text left out)."""
    values = {f.name: getattr(inst, f.name) for f in fields(inst)
              if f.name not in ("start_line", "end_line", "original")}
    return type(inst).__name__ + repr(sorted(values.items()))


def _first_line(inst: Instruction) -> str:
    text = inst.original.strip().splitlines()[0] if inst.original.strip() else type(inst).__name__
    return " ".join(text.split()) if len(text) < 400 else text[:400] + "…"


class _Cancelled(EngineError):
    """Another stage failed; this one stops at its next step."""


class Builder:
    """Builds one Dockerfile in one engine root.

    Args:
        store: the image store (its database holds the step cache; its snapshots are the
            layers steps run on).
        state_dir: the engine's state folder (``build-cache/`` for workspaces and cache mounts,
            ``run/runtime`` for the OCI runtime's state of ``RUN`` containers).
        pull_base: fetches a base image the store lacks: ``pull_base(name, platform)`` returns
            its image id (a pull from its registry); None: a missing base is an error.
        progress: a callable receiving progress events (see :mod:`.progress`), or None.
    """

    def __init__(self, store: ImageStore, state_dir: Path, *,
                 pull_base: Callable[[str, str | None], str] | None = None,
                 progress: Callable[[Any], None] | None = None) -> None:
        self.store = store
        self.snapshots = store.snapshots
        self.cache = BuildCache(store.db, store)
        self.progress = Progress(progress)
        self.state_dir = Path(state_dir)
        self.pull_base = pull_base
        self.tmp_root = self.state_dir / "build-cache" / "tmp"
        self.runtime_root = self.state_dir / "run" / "runtime"
        self._failed = threading.Event()
        self._used_keys: list[str] = []
        self._futures: dict[int, Future[StageState]] = {}
        self._context_reads: list[str] = []
        self._dockerfile_text: str | None = None
        #: for the build memo (:mod:`.memo`): the steps that look their result up in the step
        #: cache (a rebuild shows them CACHED), inputs a fingerprint cannot see (a URL without a
        #: checksum, a base image pulled), and the base images resolved, as (normalised name,
        #: id), or ("", id) when named by id or digest
        self.layer_steps: set[int] = set()
        self.volatile = False
        self.bases: list[tuple[str, str]] = []

    # ------------------------------------------------------------------ entry point
    def build(self, dockerfile: Dockerfile | str, context: BuildContext,
              options: BuildOptions | None = None) -> ImageRecord:
        """Build the target stage of ``dockerfile`` and record it as an image.

        Args:
            dockerfile: a parsed Dockerfile or its text.
            context: where COPY/ADD read files.
            options: build arguments, target, tags, labels, cache and reproducibility settings.

        Returns:
            The new image's record.

        Raises:
            DockerfileError: the Dockerfile is malformed (the message starts ``Dockerfile:N:``).
            NotFound: a base image, stage or source file does not exist.
            BuildError: a ``RUN`` failed (step, exit code and last output lines).
            InvalidArgument: a bad option, a COPY outside the context, a checksum mismatch.
        """
        options = options or BuildOptions()
        started = time.monotonic()
        df = parse_dockerfile(dockerfile) if isinstance(dockerfile, str) else dockerfile
        self._dockerfile_text = dockerfile if isinstance(dockerfile, str) else None
        stages = df.stages
        if self.tmp_root.is_dir():
            clean_stale(self.tmp_root)
        self.tmp_root.mkdir(parents=True, exist_ok=True)
        self.platform = _parse_platform(options.platform)
        self.builtin = builtin_args(self.platform)
        self.options = options
        self.df = df
        self.context = context

        if options.target:
            target = resolve_stage(stages, options.target)
            if target is None:
                raise InvalidArgument(f"failed to reach build target {options.target} in "
                                      "Dockerfile: no such stage")
        else:
            target = len(stages) - 1
        graph = df.dependencies(options.build_args)
        needed: set[int] = set()
        todo = [target]
        while todo:
            i = todo.pop()
            if i not in needed:
                needed.add(i)
                todo.extend(graph.get(i, ()))
        self._warn_unused_args(df, options.build_args)

        with self.store.lease() as leases:
            self.leases = leases
            states = self._build_stages(stages, sorted(needed), graph)
            final = states[target]
            record = self._commit_image(final, options)
        self.cache.touch(self._used_keys)
        self.progress.emit(BuildDone(record.id, tuple(options.tags),
                                     time.monotonic() - started))
        return record

    def _warn_unused_args(self, df: Dockerfile, build_args: Mapping[str, str]) -> None:
        declared = {kv.key for a in df.meta_args for kv in a.args}
        for stage in df.stages:
            for inst in stage.instructions:
                if isinstance(inst, Arg):
                    declared.update(kv.key for kv in inst.args)
        unused = sorted(k for k in build_args if k not in declared and k not in PREDEFINED_ARGS)
        if unused:
            self.progress.emit(Warning(f"One or more build-args {unused} were not consumed"))

    # ------------------------------------------------------------------ stages
    def _build_stages(self, stages: Sequence[Stage], order: list[int],
                      graph: Mapping[int, frozenset[int]]) -> dict[int, StageState]:
        futures = self._futures
        if len(order) == 1:
            # the common case: no thread at all
            return {order[0]: self._build_stage(stages[order[0]], futures)}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=len(order), thread_name_prefix="build-stage") as pool:
            for i in order:
                futures[i] = pool.submit(self._guarded_stage, stages[i], futures)
            results: dict[int, StageState] = {}
            first_error: BaseException | None = None
            for i in order:
                try:
                    results[i] = futures[i].result()
                except _Cancelled:
                    continue
                except BaseException as exc:  # keep the first real failure
                    if first_error is None:
                        first_error = exc
            if first_error is not None:
                raise first_error
            return results

    def _guarded_stage(self, stage: Stage, futures: Mapping[int, Future[StageState]]
                       ) -> StageState:
        try:
            return self._build_stage(stage, futures)
        except BaseException:
            self._failed.set()
            raise

    def _stage_label(self, stage: Stage) -> str:
        if len(self.df.stages) == 1:
            return ""
        return stage.name or f"stage-{stage.index}"

    def _build_stage(self, stage: Stage, futures: Mapping[int, Future[StageState]]
                     ) -> StageState:
        opts = self.options
        meta = resolve_meta_args(self.df.meta_args, opts.build_args, self.builtin,
                                 self.df.escape)
        from_inst = expand_from(stage.from_, meta, self.df.escape)
        label = self._stage_label(stage)
        total = len(stage.instructions)
        step_id = self.progress.new_step()
        self.progress.emit(BuildStep(step_id, 1, total, label, f"FROM {from_inst.base}"))
        t0 = time.monotonic()
        try:
            state = self._from(stage, from_inst, futures)
        except EngineError as exc:
            self.progress.emit(StepDone(step_id, time.monotonic() - t0, str(exc)))
            raise
        self.progress.emit(StepDone(step_id, time.monotonic() - t0))

        # ONBUILD triggers of the base run right after FROM, then are cleared.
        triggers = list(state.config.get("OnBuild") or [])
        state.config["OnBuild"] = None
        instructions = list(stage.instructions)
        if triggers:
            extra: list[Instruction] = []
            for expr in triggers:
                try:
                    sub = parse_dockerfile("FROM scratch\n" + expr + "\n").stages[0]
                except DockerfileError as exc:
                    raise DockerfileError(f"invalid ONBUILD trigger {expr!r}: {exc.detail}",
                                          stage.start_line) from None
                extra.extend(replace(i, start_line=stage.start_line, end_line=stage.start_line)
                             for i in sub.instructions[1:])
            instructions[1:1] = extra
            stage = replace(stage, instructions=tuple(instructions))
            total = len(instructions)
        expanded = self.df.expand(stage, opts.build_args, base_env=state.env,
                                  builtin=self.builtin)
        for n, step in enumerate(expanded.steps[1:], start=2):
            if self._failed.is_set():
                raise _Cancelled("cancelled")
            self._step(state, step, n, total, label)
        return state

    def _from(self, stage: Stage, inst: From, futures: Mapping[int, Future[StageState]]
              ) -> StageState:
        sde = self.options.source_date_epoch
        base = inst.base
        ref_index = resolve_stage(self.df.stages, base, before=stage.index)
        name = stage.name or str(stage.index)
        if ref_index is not None:
            parent = futures[ref_index].result() if ref_index in futures else None
            if parent is None:
                raise InvalidArgument(f"stage {base} is not built")
            return StageState(stage.index, name, copy.deepcopy(parent.config),
                              list(parent.layers), list(parent.history), parent.key,
                              dict(parent.platform), parent.author, parent.created,
                              parent.image_id, base_name=parent.base_name,
                              base_digest=parent.base_digest)
        if base.lower() == "scratch":
            from portside.engine.image.oci import host_platform

            plat = self.platform or host_platform()
            return StageState(stage.index, name, {}, [], [],
                              cache_key("scratch", json.dumps(plat, sort_keys=True), str(sde)),
                              plat).ensure_path()
        rec = self._base_image(base, inst.platform)
        cfg = self.store.config(rec)
        layers: Layers = [(LayerRef(l["diff_id"], l["digest"], l["size"], l["media_type"]),
                           l["chain_id"]) for l in rec.layers]
        plat = {"os": cfg.get("os", "linux"), "architecture": cfg.get("architecture", "")}
        if cfg.get("variant"):
            plat["variant"] = cfg["variant"]
        return StageState(stage.index, name, copy.deepcopy(cfg.get("config") or {}), layers,
                          list(cfg.get("history") or []),
                          cache_key("from", rec.id, str(sde)), plat, cfg.get("author"),
                          None, rec.id, base_name=base,
                          base_digest=rec.manifest_digest).ensure_path()

    def _base_image(self, ref: str, platform: str | None) -> ImageRecord:
        try:
            rec = self.store.get(ref)
        except NotFound:
            pass
        except InvalidArgument as exc:
            raise InvalidArgument(f"invalid base image reference {ref!r}: {exc}") from None
        else:
            self._note_base(ref, rec.id)
            return self._hold(rec)
        if self.pull_base is not None and os.environ.get("PORTSIDE_BUILD_PULL", "1") != "0":
            self.volatile = True  # the next build finds it locally and may be remembered
            try:
                return self._hold(self.store.get(self.pull_base(ref, platform)))
            except EngineError as exc:
                raise NotFound(f"base image {ref} not found: not in the local store and pulling "
                               f"it failed: {exc}") from None
            except Exception as exc:  # a pull that fails in an unexpected way
                raise NotFound(f"base image {ref} not found: not in the local store and pulling "
                               f"it failed: {exc}") from None
        raise NotFound(f"base image {ref} not found in the local store")

    def _hold(self, rec: ImageRecord) -> ImageRecord:
        """Lease a base image's layers for the build (an ``rmi`` or ``image prune`` elsewhere
        must not take them away while a step uses them) and return its record, read again: it
        may have gone between the lookup and the lease."""
        self.leases.extend([layer["digest"] for layer in rec.layers]
                           + ["snapshot:" + layer["chain_id"] for layer in rec.layers])
        return self.store.get(rec.id)

    def _note_base(self, ref: str, image_id: str) -> None:
        """Remember how ``ref`` resolved: by a name (which may later point elsewhere) or by an
        id or digest (which only has to stay in the store)."""
        from portside.engine.image.reference import parse_reference

        try:
            name = str(parse_reference(ref))
        except InvalidArgument:
            name = ""
        if name and not self.store.db.query("SELECT 1 FROM refs WHERE name = ? AND image_id = ?",
                                            (name, image_id)):
            name = ""
        self.bases.append((name, image_id))

    # ------------------------------------------------------------------ steps
    def _step(self, state: StageState, step: Step, n: int, total: int, label: str) -> None:
        inst = step.instruction
        step_id = self.progress.new_step()
        self.progress.emit(BuildStep(step_id, n, total, label, _first_line(inst)))
        t0 = time.monotonic()
        try:
            cached = self._dispatch(state, step, step_id, f"[{label + ' ' if label else ''}"
                                    f"{n}/{total}] {_first_line(inst)}")
        except EngineError as exc:
            if isinstance(exc, DockerfileError) and exc.start_line is None and inst.start_line:
                exc = DockerfileError(exc.detail, inst.start_line, inst.end_line)
            self.progress.emit(StepDone(step_id, time.monotonic() - t0, str(exc)))
            raise exc from None
        if cached is not None:
            self.layer_steps.add(step_id)
        if cached:
            self.progress.emit(StepCached(step_id))
        self.progress.emit(StepDone(step_id, time.monotonic() - t0))

    def _now(self) -> float:
        sde = self.options.source_date_epoch
        return float(sde) if sde is not None else time.time()

    def _meta(self, state: StageState, inst: Instruction, created_by: str,
              extra: str = "") -> bool | None:
        """Finish a metadata-only step: new key, history entry (time from the cache). Returns
        None: :meth:`_dispatch`'s answer for a step that makes no layer."""
        from portside.engine.image.oci import empty_layer_history

        key = cache_key(state.key, _describe(inst), extra)
        entry = None if self.options.no_cache else self.cache.get(key)
        if entry is None:
            entry = self.cache.put(key, state.key, created_by, self._now(), None)
        else:
            self._used_keys.append(key)
        state.key = key
        state.created = entry.created
        state.history.append(empty_layer_history(created_by, entry.created))
        return None

    def _dispatch(self, state: StageState, step: Step, step_id: int, where: str) -> bool | None:
        """Apply one instruction to ``state``; returns whether its result came from the cache,
        None for a metadata-only step (never reported as cached)."""
        cfg = state.config
        inst = step.instruction
        match inst:
            case Run():
                return self._run(state, step, step_id, where)
            case Copy() | Add():
                return self._copy(state, step, where)
            case Workdir(path=path):
                current = cfg.get("WorkingDir") or "/"
                new = clean_path(path if path.startswith("/") else current.rstrip("/") + "/" + path)
                cfg["WorkingDir"] = new
                return self._workdir(state, inst, new)
            case Env(pairs=pairs):
                for kv in pairs:
                    state.set_env(kv.key, kv.value or "")
                text = " ".join(f"{kv.key}={kv.value or ''}" for kv in pairs)
                return self._meta(state, inst, f"ENV {text}")
            case Arg(args=args):
                values = {kv.key: step.args.get(kv.key) for kv in args}
                text = " ".join(f"{k}={v}" if v is not None else k for k, v in values.items())
                return self._meta(state, inst, f"ARG {text}", json.dumps(values, sort_keys=True))
            case Label(pairs=pairs):
                labels = dict(cfg.get("Labels") or {})
                labels.update((kv.key, kv.value or "") for kv in pairs)
                cfg["Labels"] = labels
                text = " ".join(f"{kv.key}={kv.value or ''}" for kv in pairs)
                return self._meta(state, inst, f"LABEL {text}")
            case Expose(ports=ports):
                exposed = dict(cfg.get("ExposedPorts") or {})
                for port in ports:
                    for p in port.split():
                        exposed[p if "/" in p else f"{p}/tcp"] = {}
                cfg["ExposedPorts"] = exposed
                return self._meta(state, inst, "EXPOSE map[" + " ".join(sorted(exposed)) + "]")
            case Volume(paths=paths):
                volumes = dict(cfg.get("Volumes") or {})
                for p in paths:
                    volumes[p] = {}
                cfg["Volumes"] = volumes
                return self._meta(state, inst, "VOLUME " + json.dumps(list(paths)))
            case Shell(shell=shell):
                cfg["Shell"] = list(shell)
                return self._meta(state, inst, "SHELL " + json.dumps(list(shell)))
            case User(user=user):
                cfg["User"] = user
                return self._meta(state, inst, f"USER {user}")
            case Maintainer(maintainer=who):
                state.author = who
                return self._meta(state, inst, f"MAINTAINER {who}")
            case Onbuild(expression=expr):
                cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), expr]
                return self._meta(state, inst, f"ONBUILD {expr}")
            case Healthcheck():
                cfg["Healthcheck"] = _healthcheck(inst)
                return self._meta(state, inst, _first_line(inst))
            case Stopsignal(signal=signal):
                cfg["StopSignal"] = signal
                return self._meta(state, inst, f"STOPSIGNAL {signal}")
            case Cmd():
                cfg["Cmd"] = self._command(state, inst)
                state.cmd_set = True
                return self._meta(state, inst, "CMD " + json.dumps(cfg["Cmd"]))
            case Entrypoint():
                cfg["Entrypoint"] = self._command(state, inst)
                if not state.cmd_set:
                    # Docker: an ENTRYPOINT resets a CMD inherited from the base image.
                    cfg["Cmd"] = None
                return self._meta(state, inst, "ENTRYPOINT " + json.dumps(cfg["Entrypoint"]))
            case From():
                raise DockerfileError("unexpected FROM inside a stage")
        raise DockerfileError(f"unsupported instruction: {type(inst).__name__}")

    def _command(self, state: StageState, inst: Cmd | Entrypoint | Run) -> list[str]:
        if inst.shell_form:
            shell = list(state.config.get("Shell") or _DEFAULT_SHELL)
            return [*shell, *inst.command]
        return list(inst.command)

    # ------------------------------------------------------------------ layer steps
    def _layer_step(self, state: StageState, key: str, created_by: str,
                    work: Callable[[Workspace], None]) -> bool:
        """Look ``key`` up; on a miss run ``work`` in a workspace and commit its changes."""
        from portside.engine.image.oci import empty_layer_history

        entry = None if self.options.no_cache else self.cache.get(key)
        if entry is not None:
            self._used_keys.append(key)
            cached = True
        else:
            cached = False
            layers = None
            with Workspace(self.tmp_root, state.lowers(self.snapshots)) as ws:
                work(ws)
                ws.unmount()
                if ws.changed():
                    parent_chain = state.layers[-1][1] if state.layers else None
                    ref, chain = commit_upper(ws.upper, self.store, parent_chain, self.leases,
                                              source_date_epoch=self.options.source_date_epoch)
                    layers = (*state.layers, (ref, chain))
            entry = self.cache.put(key, state.key, created_by, self._now(), layers)
        state.key = key
        state.created = entry.created
        if entry.layers is None:
            state.history.append(empty_layer_history(created_by, entry.created))
        else:
            for ref, chain in entry.layers[len(state.layers):]:
                self.leases.append(ref.digest)
                self.leases.append("snapshot:" + chain)
            state.layers = list(entry.layers)
            from portside.engine.image.oci import rfc3339

            state.history.append({"created": rfc3339(entry.created), "created_by": created_by,
                                  "comment": "buildkit.dockerfile.v0"})
        return cached

    def _workdir(self, state: StageState, inst: Workdir, path: str) -> bool:
        user = state.config.get("User") or ""

        def work(ws: Workspace) -> None:
            target = resolve(ws.merged, path)
            if not target.exists():
                target.mkdir(parents=True, mode=0o755)
                if user:
                    uid, gid, _ = resolve_user(ws.merged, user)
                    os.chown(target, uid, gid)

        key = cache_key(state.key, _describe(inst), path, user)
        return self._layer_step(state, key, f"WORKDIR {path}", work)

    def _run(self, state: StageState, step: Step, step_id: int, where: str) -> bool:
        inst = step.instruction
        assert isinstance(inst, Run)
        cfg = state.config
        args = self._run_args(state, inst)
        env_map = dict(step.args)
        for name in PREDEFINED_ARGS:
            if name in self.options.build_args:
                env_map[name] = self.options.build_args[name]
        env_map.update(state.env)
        if "PATH" not in env_map:
            env_map["PATH"] = _DEFAULT_PATH
        env = [f"{k}={v}" for k, v in env_map.items()]
        network = (inst.network or "default").lower()
        if network not in ("default", "none", "host"):
            raise InvalidArgument(f"RUN --network={inst.network}: only none, host and default "
                                  "are supported")
        mounts, mount_keys = self._run_mounts(state, inst)
        extra = json.dumps({"args": dict(sorted(step.args.items())), "mounts": mount_keys},
                           sort_keys=True)
        key = cache_key(state.key, _describe(inst), extra)
        proxies = {n for n in PREDEFINED_ARGS}
        shown_args = " ".join(f"{k}={v}" for k, v in sorted(step.args.items())
                              if k not in proxies)
        shown = ["/bin/sh", "-c", args[1]] if args and args[0] == "\0script" else args
        created_by = ("RUN " + (f"|{len(step.args)} {shown_args} " if shown_args else "")
                      + " ".join(shown) + " # buildkit")

        def work(ws: Workspace) -> None:
            argv = args
            with self._mounted_sources(mounts) as oci_mounts:
                if argv and argv[0] == "\0script":
                    script = ws.dir / "heredoc-script"
                    script.write_text(argv[1])
                    script.chmod(0o755)
                    oci_mounts.append({"destination": "/dev/.heredoc-script", "type": "bind",
                                       "source": str(script), "options": ["rbind", "ro"]})
                    argv = ["/dev/.heredoc-script"]
                run_in_workspace(ws, RunRequest(
                    args=argv, env=env, cwd=cfg.get("WorkingDir") or "/",
                    user=cfg.get("User") or "", network=network, mounts=oci_mounts,
                    step=where), runtime_root=self.runtime_root,
                    on_line=lambda line: self.progress.emit(StepLog(step_id, line)))

        return self._layer_step(state, key, created_by, work)

    def _run_args(self, state: StageState, inst: Run) -> list[str]:
        shell = list(state.config.get("Shell") or _DEFAULT_SHELL)
        if not inst.shell_form:
            return list(inst.command)
        command = inst.command[0] if inst.command else ""
        if inst.heredocs:
            doc = inst.heredocs[0]
            body = doc.content
            if doc.chomp:
                body = "".join(l.lstrip("\t") for l in body.splitlines(keepends=True))
            stripped = command.strip()
            if len(inst.heredocs) == 1 and stripped.startswith("<<") and \
                    stripped.lstrip("<-").strip("'\"") == doc.name:
                # "RUN <<EOF": the document is the script
                if body.startswith("#!"):
                    # a script with its own interpreter: mounted as a file and executed
                    return ["\0script", body]
                return [*shell, body]
            # "RUN cmd <<EOF": hand the shell the whole here-document, it knows the syntax
            text = command
            for doc in inst.heredocs:
                content = doc.content
                text += "\n" + content + ("" if content.endswith("\n") or not content else "\n") \
                    + doc.name
            return [*shell, text]
        return [*shell, command]

    def _run_mounts(self, state: StageState, inst: Run) -> tuple[list[dict], list[Any]]:
        """RUN --mount=type=cache|bind|tmpfs: (mount descriptions, what goes into the key)."""
        mounts: list[dict] = []
        keys: list[Any] = []
        for spec in inst.mounts:
            opts = parse_mount(spec)
            kind = opts.get("type", "bind")
            target = opts.get("target") or opts.get("dst") or opts.get("destination")
            if not target:
                raise InvalidArgument(f"RUN --mount={spec}: a target is required")
            if not target.startswith("/"):
                target = "/" + target
            if kind == "cache":
                ident = opts.get("id") or target
                host = self.state_dir / "build-cache" / "mounts" / \
                    hashlib.sha256(ident.encode()).hexdigest()[:32]
                host.mkdir(parents=True, exist_ok=True)
                mounts.append({"kind": "host", "source": str(host), "target": target,
                               "ro": False})
                keys.append(["cache", target])
            elif kind == "tmpfs":
                mounts.append({"kind": "tmpfs", "target": target})
                keys.append(["tmpfs", target])
            elif kind == "bind":
                source = opts.get("source") or opts.get("src") or "."
                ro = opts.get("rw", opts.get("readwrite", "false")) != "true"
                if opts.get("from"):
                    mounts.append({"kind": "from", "from": opts["from"], "source": source,
                                   "target": target, "ro": ro})
                    keys.append(["bind-from", self._source_key(opts["from"]), source, target])
                else:
                    path = self.context.resolve(source, what="RUN --mount")
                    rel = self.context.relative(path)
                    mounts.append({"kind": "host", "source": str(path), "target": target,
                                   "ro": True})
                    digest = self.context.content_hash([rel])
                    self._context_reads.append(f"bind {rel} {digest}")
                    keys.append(["bind", digest, target])
            else:
                raise InvalidArgument(f"RUN --mount: unsupported mount type {kind!r}")
        return mounts, keys

    class _MountStack:
        def __init__(self, builder: "Builder", mounts: list[dict]) -> None:
            self.builder = builder
            self.mounts = mounts
            self.views: list[Any] = []

        def __enter__(self) -> list[dict]:
            out: list[dict] = []
            try:
                for m in self.mounts:
                    if m["kind"] == "tmpfs":
                        out.append({"destination": m["target"], "type": "tmpfs",
                                    "source": "tmpfs", "options": ["nosuid", "nodev"]})
                        continue
                    source = m["source"]
                    if m["kind"] == "from":
                        view = self.builder._source_view(m["from"])
                        self.views.append(view)
                        root = view.__enter__()
                        source = str(resolve(root, m["source"]))
                    out.append({"destination": m["target"], "type": "bind", "source": source,
                                "options": ["rbind", "ro" if m["ro"] else "rw"]})
            except BaseException:
                self.__exit__()
                raise
            return out

        def __exit__(self, *exc: object) -> None:
            while self.views:
                self.views.pop().__exit__(None, None, None)

    def _mounted_sources(self, mounts: list[dict]) -> "Builder._MountStack":
        return Builder._MountStack(self, mounts)

    # ------------------------------------------------------------------ COPY / ADD
    def _source_key(self, ref: str) -> str:
        state = self._other_stage(ref)
        if state is not None:
            return state.key
        return self._base_image(ref, None).id

    def _other_stage(self, ref: str) -> StageState | None:
        index = resolve_stage(self.df.stages, ref)
        if index is None:
            return None
        fut = self._futures.get(index)
        if fut is None:
            raise InvalidArgument(f"stage {ref} is not built")
        return fut.result()

    def _source_view(self, ref: str) -> "ReadOnlyView":
        state = self._other_stage(ref)
        if state is not None:
            lowers = state.lowers(self.snapshots)
        else:
            lowers = self.store.rootfs_lowers(self._base_image(ref, None))
        return ReadOnlyView(self.tmp_root, lowers)

    def _copy(self, state: StageState, step: Step, where: str) -> bool:
        from portside.engine.builder.copying import copy_step

        return copy_step(self, state, step)

    # ------------------------------------------------------------------ the image
    def _commit_image(self, state: StageState, options: BuildOptions) -> ImageRecord:
        from portside.engine.image.oci import new_config
        from portside.engine.image.reference import parse_reference
        from portside.engine.lock import LABEL_SOURCE

        cfg = copy.deepcopy(state.config)
        sde = options.source_date_epoch
        created = float(sde) if sde is not None else (state.created or time.time())
        # The config's Labels are BuildKit's: the base image's, then LABEL's, then --label's.
        # Where the image came from goes into the manifest's annotations (below), never the
        # config: the same build from a copied cell or another machine keeps its image id.
        extra = {k: v for k, v in options.labels.items() if k != LABEL_SOURCE}
        if extra:
            labels = dict(cfg.get("Labels") or {})
            labels.update(extra)
            cfg["Labels"] = labels
        cfg = {k: v for k, v in cfg.items() if v not in (None, [], {})
               or k in ("Cmd", "Entrypoint") and v is not None}
        doc = new_config(diff_ids=[ref.diff_id for ref, _ in state.layers],
                         history=state.history, config=cfg, created=created,
                         author=state.author, platform_=state.platform)
        tags = [parse_reference(t) for t in options.tags]
        annotations = self._provenance(state, options, created) if options.provenance else None
        return self.store.create(doc, [ref for ref, _ in state.layers], tags=tags,
                                 leases=self.leases, action="build", annotations=annotations)

    def _provenance(self, state: StageState, options: BuildOptions,
                    created: float) -> dict[str, str]:
        """The manifest's annotations: where the image came from and what went into it.

        The OCI image spec's keys (``org.opencontainers.image.created``, ``.base.name``,
        ``.base.digest``) and portside's (``io.portside.source`` and the build inputs the lock
        checks, ``io.portside.build.*``: see :mod:`portside.engine.lock`). Every value but the
        source is independent of the machine and the engine root (the base's manifest digest,
        digests of the inputs), so two roots still build equal manifests from one text.
        """
        from portside.engine.image.oci import rfc3339
        from portside.engine.lock import (
            LABEL_ARGS, LABEL_BASE_DIGEST, LABEL_BASE_NAME, LABEL_CONTEXT, LABEL_CREATED,
            LABEL_DOCKERFILE, LABEL_SDE, LABEL_SOURCE, dockerfile_digest,
        )

        out = {LABEL_CREATED: rfc3339(created)}
        if state.base_digest:
            out[LABEL_BASE_NAME] = state.base_name or ""
            out[LABEL_BASE_DIGEST] = state.base_digest
        if self._dockerfile_text is not None:
            out[LABEL_DOCKERFILE] = dockerfile_digest(self._dockerfile_text)
        reads = "\n".join(sorted(self._context_reads))
        out[LABEL_CONTEXT] = "sha256:" + hashlib.sha256(reads.encode()).hexdigest()
        out[LABEL_ARGS] = json.dumps(dict(sorted(options.build_args.items())),
                                     separators=(",", ":"))
        if options.source_date_epoch is not None:
            out[LABEL_SDE] = str(options.source_date_epoch)
        # the source (notebook and cell, or Dockerfile path)
        out[LABEL_SOURCE] = options.labels.get(LABEL_SOURCE) or options.source or \
            f"dockerfile:{self.context.dockerfile or 'Dockerfile'}"
        return {k: v for k, v in out.items() if v}


def _healthcheck(inst: Healthcheck) -> dict[str, Any]:
    out: dict[str, Any] = {"Test": list(inst.test)}
    for key, value in (("Interval", inst.interval), ("Timeout", inst.timeout),
                       ("StartPeriod", inst.start_period),
                       ("StartInterval", inst.start_interval)):
        if value is not None:
            out[key] = int(value * 1e9)
    if inst.retries is not None:
        out["Retries"] = inst.retries
    return out
