"""Phase 2 of reading a Dockerfile: generic nodes to typed instructions grouped in stages.

Phase 1 (:mod:`.parser`) knows the *shape* of each instruction's arguments; this module knows
their *meaning*.  Each instruction name maps, through :data:`PARSERS`, to a function that checks
its flags and argument count and returns a frozen dataclass such as
``Copy(sources=("a",), dest="/b", from_stage="build", ...)``.  A builder then ``match``es on
the dataclass.

Values stay as written (``"$HOME/app"``): variables are expanded later, per instruction and with
the build arguments in scope, by :mod:`.variables`.  Every instruction carries
``start_line``/``end_line`` so any later error can point at the Dockerfile.

``FROM`` starts a *stage*; the instructions up to the next ``FROM`` belong to it.  ``ARG`` lines
before the first ``FROM`` are *meta arguments*, visible only to ``FROM`` lines.  Stages may
depend on each other through ``FROM <stage>``, ``COPY --from=<stage>`` and
``RUN --mount=from=<stage>``; :meth:`Stage.dependencies` lists those references so a builder can
run independent stages concurrently.
"""

from __future__ import annotations

import re

from portside.engine.builder.parser import Heredoc, Node, parse_heredoc
from portside.engine.errors import DockerfileError
from portside.engine.records import field, record

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Callable


__all__ = [
    "Instruction", "From", "Run", "Cmd", "Entrypoint", "Workdir", "Env", "Arg", "Label",
    "Expose", "Volume", "Shell", "User", "Maintainer", "Onbuild", "Healthcheck", "Stopsignal",
    "Copy", "Add", "SourceContent", "Stage", "KeyValue", "PARSERS", "parse_instruction",
    "build_stages", "parse_mount", "parse_duration", "stage_dependencies", "resolve_stage",
]

_STAGE_NAME = re.compile(r"^[a-z][a-z0-9\-_.]*$")


# --------------------------------------------------------------------------------------------
# The instruction dataclasses


@record(frozen=True, kw_only=True)
class Instruction:
    """Fields every instruction has: its physical line range and original text."""

    start_line: int = 0
    end_line: int = 0
    original: str = field(default="", compare=False)


@record(frozen=True)
class KeyValue:
    """One ``name=value`` pair of ``ENV``, ``LABEL`` or ``ARG`` (value None: ``ARG name``)."""

    key: str
    value: str | None


@record(frozen=True)
class SourceContent:
    """A here-document used as a ``COPY``/``ADD`` source: file name, body, expand variables?"""

    path: str
    data: str
    expand: bool = True


@record(frozen=True, kw_only=True)
class From(Instruction):
    """``FROM [--platform=p] image [AS name]``."""

    base: str
    stage_name: str | None = None
    platform: str | None = None


@record(frozen=True, kw_only=True)
class _CommandLine(Instruction):
    """A command in shell form (``shell_form``: one string run by the SHELL) or exec form."""

    command: tuple[str, ...] = ()
    shell_form: bool = False


@record(frozen=True, kw_only=True)
class Run(_CommandLine):
    """``RUN [--mount=...] [--network=...] [--security=...] command``; heredocs in ``files``."""

    mounts: tuple[str, ...] = ()
    network: str | None = None
    security: str | None = None
    heredocs: tuple[Heredoc, ...] = ()


@record(frozen=True, kw_only=True)
class Cmd(_CommandLine):
    """``CMD``: the default command of the image."""


@record(frozen=True, kw_only=True)
class Entrypoint(_CommandLine):
    """``ENTRYPOINT``: the command the image always runs."""


@record(frozen=True, kw_only=True)
class Shell(Instruction):
    """``SHELL ["executable", "parameters"]``: the shell used by shell-form commands."""

    shell: tuple[str, ...]


@record(frozen=True, kw_only=True)
class Workdir(Instruction):
    """``WORKDIR path``."""

    path: str


@record(frozen=True, kw_only=True)
class Env(Instruction):
    """``ENV name=value ...`` (or the old ``ENV name value``)."""

    pairs: tuple[KeyValue, ...]


@record(frozen=True, kw_only=True)
class Arg(Instruction):
    """``ARG name[=default] ...``."""

    args: tuple[KeyValue, ...]


@record(frozen=True, kw_only=True)
class Label(Instruction):
    """``LABEL name=value ...``."""

    pairs: tuple[KeyValue, ...]


@record(frozen=True, kw_only=True)
class Expose(Instruction):
    """``EXPOSE port[/proto] ...``."""

    ports: tuple[str, ...]


@record(frozen=True, kw_only=True)
class Volume(Instruction):
    """``VOLUME path ...`` or ``VOLUME ["path", ...]``."""

    paths: tuple[str, ...]


@record(frozen=True, kw_only=True)
class User(Instruction):
    """``USER user[:group]``."""

    user: str


@record(frozen=True, kw_only=True)
class Maintainer(Instruction):
    """``MAINTAINER name`` (deprecated; a label in effect)."""

    maintainer: str


@record(frozen=True, kw_only=True)
class Onbuild(Instruction):
    """``ONBUILD instruction``: stored in the image, run by builds that use it as a base."""

    expression: str


@record(frozen=True, kw_only=True)
class Healthcheck(Instruction):
    """``HEALTHCHECK [options] CMD command`` or ``HEALTHCHECK NONE``.

    ``test`` follows the image config: ``("NONE",)``, ``("CMD", arg, ...)`` for the exec form
    or ``("CMD-SHELL", command)`` for the shell form.  Durations are in seconds, None when the
    flag was not given.
    """

    test: tuple[str, ...]
    interval: float | None = None
    timeout: float | None = None
    start_period: float | None = None
    start_interval: float | None = None
    retries: int | None = None


@record(frozen=True, kw_only=True)
class Stopsignal(Instruction):
    """``STOPSIGNAL signal``."""

    signal: str


@record(frozen=True, kw_only=True)
class Copy(Instruction):
    """``COPY [--from=stage] [--chown=u:g] [--chmod=mode] [--link] src... dest``."""

    sources: tuple[str, ...]
    dest: str
    from_stage: str | None = None
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    parents: bool = False
    exclude: tuple[str, ...] = ()
    heredocs: tuple[SourceContent, ...] = ()


@record(frozen=True, kw_only=True)
class Add(Instruction):
    """``ADD [--chown] [--chmod] [--link] [--checksum=sha256:...] src... dest``."""

    sources: tuple[str, ...]
    dest: str
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    checksum: str | None = None
    keep_git_dir: bool = False
    exclude: tuple[str, ...] = ()
    heredocs: tuple[SourceContent, ...] = ()


# --------------------------------------------------------------------------------------------
# Flags


class _Flags:
    """The ``--name[=value]`` flags one instruction accepts, checked against what was written."""

    def __init__(self, node: Node, *, strings: tuple[str, ...] = (), bools: tuple[str, ...] = (),
                 lists: tuple[str, ...] = ()) -> None:
        self.values: dict[str, Any] = {}
        name = node.value.upper()
        seen: set[str] = set()
        for raw in node.flags:
            if not raw.startswith("--"):
                raise DockerfileError(f"{name}: invalid flag {raw!r}")
            key, has_value, value = raw[2:].partition("=")
            if key in lists:
                self.values.setdefault(key, [])
                if not has_value:
                    raise DockerfileError(f"{name}: missing a value on flag: {key}")
                self.values[key].append(value)
                continue
            if key in seen:
                raise DockerfileError(f"{name}: duplicate flag specified: {key}")
            seen.add(key)
            if key in strings:
                if not has_value:
                    raise DockerfileError(f"{name}: missing a value on flag: {key}")
                self.values[key] = value
            elif key in bools:
                if not has_value or value.lower() == "true":
                    self.values[key] = True
                elif value.lower() == "false":
                    self.values[key] = False
                else:
                    raise DockerfileError(
                        f"{name}: expecting boolean value for flag {key}, not: {value}")
            else:
                raise DockerfileError(f"{name}: unknown flag: {key}")

    def string(self, key: str) -> str | None:
        value = self.values.get(key)
        return value if isinstance(value, str) else None

    def boolean(self, key: str) -> bool:
        return bool(self.values.get(key, False))

    def strings(self, key: str) -> tuple[str, ...]:
        return tuple(self.values.get(key, ()))  # type: ignore[arg-type]


_GO_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
                      "m": 60.0, "h": 3600.0}
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Parse a Go duration (``1m30s``, ``500ms``, ``0``) into seconds.

    Raises:
        ValueError: the text is not a duration.
    """
    if text in ("0", "+0", "-0"):
        return 0.0
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    pos, total = 0, 0.0
    while pos < len(body):
        match = _GO_DURATION_PART.match(body, pos)
        if match is None:
            raise ValueError(f"invalid duration {text!r}")
        total += float(match.group(1)) * _GO_DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not body:
        raise ValueError(f"invalid duration {text!r}")
    return sign * total


def parse_mount(spec: str) -> dict[str, str]:
    """Split a ``RUN --mount`` value (``type=cache,target=/root/.cache,from=build``) into a dict.

    A key without ``=`` (``ro``, ``readonly``) maps to ``"true"``.
    """
    options: dict[str, str] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        key, has_value, value = part.partition("=")
        options[key.lower()] = value if has_value else "true"
    return options


# --------------------------------------------------------------------------------------------
# One parse function per instruction


def _common(node: Node) -> dict[str, Any]:
    return {"start_line": node.start_line, "end_line": node.end_line, "original": node.original}


def _no_flags(node: Node) -> None:
    _Flags(node)


def _command(node: Node) -> tuple[tuple[str, ...], bool]:
    args = node.args()
    if node.is_json:
        return tuple(args), False
    return ((args[0],) if args else ()), True


def _parse_from(node: Node) -> From:
    flags = _Flags(node, strings=("platform",))
    args = node.args()
    if len(args) not in (1, 3):
        raise DockerfileError("FROM requires either one or three arguments")
    name = None
    if len(args) == 3:
        if args[1].lower() != "as":
            raise DockerfileError("FROM requires either one or three arguments")
        name = args[2].lower()
        if not _STAGE_NAME.match(name):
            raise DockerfileError(f"invalid name for build stage: {args[2]!r}, name can't start"
                                  " with a number or contain symbols")
    return From(base=args[0], stage_name=name, platform=flags.string("platform"), **_common(node))


def _parse_run(node: Node) -> Run:
    flags = _Flags(node, strings=("network", "security"), lists=("mount",))
    command, shell_form = _command(node)
    if not command and not node.heredocs:
        raise DockerfileError("RUN requires at least one argument")
    return Run(command=command, shell_form=shell_form, mounts=flags.strings("mount"),
               network=flags.string("network"), security=flags.string("security"),
               heredocs=tuple(node.heredocs), **_common(node))


def _parse_cmd(node: Node) -> Cmd:
    _no_flags(node)
    command, shell_form = _command(node)
    return Cmd(command=command, shell_form=shell_form, **_common(node))


def _parse_entrypoint(node: Node) -> Entrypoint:
    _no_flags(node)
    command, shell_form = _command(node)
    return Entrypoint(command=command, shell_form=shell_form, **_common(node))


def _parse_shell(node: Node) -> Shell:
    _no_flags(node)
    if not node.is_json:
        raise DockerfileError("SHELL requires the arguments to be in JSON form")
    args = node.args()
    if not args:
        raise DockerfileError("SHELL requires at least one argument")
    return Shell(shell=tuple(args), **_common(node))


def _exactly_one(node: Node) -> str:
    _no_flags(node)
    args = node.args()
    if len(args) != 1:
        raise DockerfileError(f"{node.value.upper()} requires exactly one argument")
    return args[0]


def _parse_workdir(node: Node) -> Workdir:
    return Workdir(path=_exactly_one(node), **_common(node))


def _parse_user(node: Node) -> User:
    return User(user=_exactly_one(node), **_common(node))


def _parse_stopsignal(node: Node) -> Stopsignal:
    return Stopsignal(signal=_exactly_one(node), **_common(node))


def _parse_maintainer(node: Node) -> Maintainer:
    return Maintainer(maintainer=_exactly_one(node), **_common(node))


def _key_values(node: Node) -> tuple[KeyValue, ...]:
    args = node.args()
    if not args:
        raise DockerfileError(f"{node.value.upper()} requires at least one argument")
    pairs = []
    for i in range(0, len(args) - 2, 3):
        if not args[i]:
            raise DockerfileError(f"{node.value.upper()} names can not be blank")
        pairs.append(KeyValue(args[i], args[i + 1]))
    return tuple(pairs)


def _parse_env(node: Node) -> Env:
    _no_flags(node)
    return Env(pairs=_key_values(node), **_common(node))


def _parse_label(node: Node) -> Label:
    _no_flags(node)
    return Label(pairs=_key_values(node), **_common(node))


def _parse_arg(node: Node) -> Arg:
    _no_flags(node)
    words = node.args()
    if not words:
        raise DockerfileError("ARG requires at least one argument")
    args = []
    for word in words:
        name, has_value, value = word.partition("=")
        if not name:
            raise DockerfileError("ARG names can not be blank")
        args.append(KeyValue(name, value if has_value else None))
    return Arg(args=tuple(args), **_common(node))


def _parse_expose(node: Node) -> Expose:
    _no_flags(node)
    ports = node.args()
    if not ports:
        raise DockerfileError("EXPOSE requires at least one argument")
    return Expose(ports=tuple(ports), **_common(node))


def _parse_volume(node: Node) -> Volume:
    _no_flags(node)
    paths = node.args()
    if not paths:
        raise DockerfileError("VOLUME requires at least one argument")
    if any(not p.strip() for p in paths):
        raise DockerfileError("VOLUME specified can not be an empty string")
    return Volume(paths=tuple(paths), **_common(node))


def _parse_onbuild(node: Node) -> Onbuild:
    _no_flags(node)
    if node.next is None or not node.next.children:
        raise DockerfileError("ONBUILD requires at least one argument")
    trigger = node.next.children[0]
    if trigger.value == "onbuild":
        raise DockerfileError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger.value in ("from", "maintainer"):
        raise DockerfileError(f"{trigger.value.upper()} isn't allowed as an ONBUILD trigger")
    # The trigger is stored as written, to be parsed again by the build that inherits it.
    parts = re.split(r"[\t\v\f\r ]+", node.original.strip(), maxsplit=1)
    expression = parts[1] if len(parts) > 1 else ""
    return Onbuild(expression=expression.strip(), **_common(node))


def _parse_healthcheck(node: Node) -> Healthcheck:
    flags = _Flags(node, strings=("interval", "timeout", "start-period", "start-interval",
                                  "retries"))
    args = node.args()
    if not args:
        raise DockerfileError("HEALTHCHECK requires an argument")
    kind = args[0].upper()
    if kind == "NONE":
        if len(args) > 1 or flags.values:
            raise DockerfileError("HEALTHCHECK NONE takes no arguments")
        return Healthcheck(test=("NONE",), **_common(node))
    if kind != "CMD":
        raise DockerfileError(f"Unknown type {args[0]!r} in HEALTHCHECK (try CMD)")
    rest = args[1:]
    if not rest or (not node.is_json and not rest[0]):
        raise DockerfileError("Missing command after HEALTHCHECK CMD")
    test = ("CMD", *rest) if node.is_json else ("CMD-SHELL", rest[0])

    def duration(key: str) -> float | None:
        text = flags.string(key)
        if text is None:
            return None
        try:
            value = parse_duration(text)
        except ValueError:
            raise DockerfileError(f"HEALTHCHECK: invalid duration for --{key}: {text!r}") from None
        if value != 0 and value < 0.001:
            raise DockerfileError(f"HEALTHCHECK: --{key} cannot be less than 1ms")
        return value

    retries = None
    if flags.string("retries") is not None:
        try:
            retries = int(flags.string("retries") or "")
        except ValueError:
            raise DockerfileError(f"HEALTHCHECK: invalid --retries: {flags.string('retries')!r}"
                                  ) from None
        if retries < 0:
            raise DockerfileError("HEALTHCHECK: --retries cannot be negative")
    return Healthcheck(test=test, interval=duration("interval"), timeout=duration("timeout"),
                       start_period=duration("start-period"),
                       start_interval=duration("start-interval"), retries=retries,
                       **_common(node))


def _sources_and_dest(node: Node) -> tuple[tuple[str, ...], str, tuple[SourceContent, ...]]:
    name = node.value.upper()
    args = node.args()
    if not args:
        raise DockerfileError(f"{name} requires at least two arguments")
    if len(args) < 2:
        raise DockerfileError(f"{name} requires at least two arguments, but only one was"
                              " provided. Destination could not be determined")
    docs = iter(node.heredocs if not node.is_json else ())
    sources, contents = [], []
    for word in args[:-1]:
        doc = next(docs, None) if parse_heredoc(word) is not None and not node.is_json else None
        if doc is None:
            sources.append(word)
        else:
            data = doc.content
            if doc.chomp:
                data = "".join(line.lstrip("\t") for line in data.splitlines(keepends=True))
            contents.append(SourceContent(path=doc.name, data=data, expand=doc.expand))
    return tuple(sources), args[-1], tuple(contents)


def _parse_copy(node: Node) -> Copy:
    flags = _Flags(node, strings=("from", "chown", "chmod"), bools=("link", "parents"),
                   lists=("exclude",))
    sources, dest, contents = _sources_and_dest(node)
    return Copy(sources=sources, dest=dest, from_stage=flags.string("from"),
                chown=flags.string("chown"), chmod=flags.string("chmod"),
                link=flags.boolean("link"), parents=flags.boolean("parents"),
                exclude=flags.strings("exclude"), heredocs=contents, **_common(node))


def _parse_add(node: Node) -> Add:
    flags = _Flags(node, strings=("chown", "chmod", "checksum"), bools=("link", "keep-git-dir"),
                   lists=("exclude",))
    sources, dest, contents = _sources_and_dest(node)
    return Add(sources=sources, dest=dest, chown=flags.string("chown"),
               chmod=flags.string("chmod"), link=flags.boolean("link"),
               checksum=flags.string("checksum"), keep_git_dir=flags.boolean("keep-git-dir"),
               exclude=flags.strings("exclude"), heredocs=contents, **_common(node))


#: Instruction name (lower case) -> the function that types its node.
PARSERS: dict[str, Callable[[Node], Instruction]] = {
    "add": _parse_add,
    "arg": _parse_arg,
    "cmd": _parse_cmd,
    "copy": _parse_copy,
    "entrypoint": _parse_entrypoint,
    "env": _parse_env,
    "expose": _parse_expose,
    "from": _parse_from,
    "healthcheck": _parse_healthcheck,
    "label": _parse_label,
    "maintainer": _parse_maintainer,
    "onbuild": _parse_onbuild,
    "run": _parse_run,
    "shell": _parse_shell,
    "stopsignal": _parse_stopsignal,
    "user": _parse_user,
    "volume": _parse_volume,
    "workdir": _parse_workdir,
}


def parse_instruction(node: Node) -> Instruction:
    """Type one phase-1 node.

    Args:
        node: a child of :class:`~.parser.ParseResult`.

    Returns:
        The instruction's dataclass.

    Raises:
        DockerfileError: unknown instruction, unknown or malformed flag, wrong number of
            arguments; the error carries the node's line range.
    """
    parse_fn = PARSERS.get(node.value)
    try:
        if parse_fn is None:
            word = node.original.strip().split(None, 1)[0] if node.original.strip() else ""
            raise DockerfileError(f"unknown instruction: {word.upper() or node.value.upper()}")
        return parse_fn(node)
    except DockerfileError as exc:
        if exc.start_line is not None:
            raise
        raise DockerfileError(exc.detail, node.start_line, node.end_line) from None


# --------------------------------------------------------------------------------------------
# Stages


@record(frozen=True)
class Stage:
    """One build stage: its ``FROM`` and the instructions that follow it.

    ``name`` is the ``AS`` name (lower case) or None; ``index`` its position in the file, which
    ``COPY --from=0`` may also use.
    """

    name: str | None
    base: str
    instructions: tuple[Instruction, ...]
    index: int = 0
    platform: str | None = None
    start_line: int = 0
    end_line: int = 0

    @property
    def from_(self) -> From:
        """The stage's ``FROM`` instruction."""
        first = self.instructions[0]
        assert isinstance(first, From)
        return first

    def dependencies(self) -> tuple[str, ...]:
        """References to other stages or images, in order and without repeats.

        They come from ``FROM <ref>``, ``COPY --from=<ref>`` and ``RUN --mount=from=<ref>``;
        a reference may name a stage (``build``), a stage index (``0``) or an image
        (``alpine:3``).  :func:`stage_dependencies` resolves them against the stages.
        """
        refs: list[str] = [self.base]
        for inst in self.instructions:
            if isinstance(inst, Copy) and inst.from_stage:
                refs.append(inst.from_stage)
            elif isinstance(inst, Run):
                for mount in inst.mounts:
                    source = parse_mount(mount).get("from")
                    if source:
                        refs.append(source)
        return tuple(dict.fromkeys(refs))


def stage_dependencies(stages: tuple[Stage, ...] | list[Stage]) -> dict[int, frozenset[int]]:
    """Map each stage index to the indices of the earlier stages it needs.

    A reference resolves to a stage when it equals (case-insensitively) the name of a stage
    defined before, or is the decimal index of one; anything else is an image.
    """
    graph: dict[int, frozenset[int]] = {}
    for stage in stages:
        needed: set[int] = set()
        for ref in stage.dependencies():
            target = resolve_stage(stages, ref, before=stage.index)
            if target is not None:
                needed.add(target)
        graph[stage.index] = frozenset(needed)
    return graph


def resolve_stage(stages: tuple[Stage, ...] | list[Stage], ref: str,
                  before: int | None = None) -> int | None:
    """Return the index of the stage ``ref`` names (a name or an index), or None for an image."""
    limit = len(stages) if before is None else before
    if ref.isdigit():
        index = int(ref)
        return index if index < limit else None
    lowered = ref.lower()
    for stage in stages[:limit]:
        if stage.name == lowered:
            return stage.index
    return None


def build_stages(nodes: list[Node]) -> tuple[tuple[Arg, ...], tuple[Stage, ...]]:
    """Type every node and group the instructions into stages.

    Returns:
        (meta ARGs that precede the first FROM, the stages).

    Raises:
        DockerfileError: a node is malformed, an instruction other than ARG comes before the
            first FROM, two stages share a name, or there is no FROM at all.
    """
    meta: list[Arg] = []
    stages: list[Stage] = []
    current: list[Instruction] = []
    names: set[str] = set()

    def close() -> None:
        if current:
            first = current[0]
            assert isinstance(first, From)
            stages.append(Stage(name=first.stage_name, base=first.base,
                                instructions=tuple(current), index=len(stages),
                                platform=first.platform, start_line=first.start_line,
                                end_line=current[-1].end_line))

    for node in nodes:
        inst = parse_instruction(node)
        if isinstance(inst, From):
            close()
            if inst.stage_name is not None:
                if inst.stage_name in names:
                    raise DockerfileError(f"duplicate stage name {inst.stage_name!r}",
                                          inst.start_line, inst.end_line)
                names.add(inst.stage_name)
            current = [inst]
        elif not current:
            if isinstance(inst, Arg):
                meta.append(inst)
            else:
                raise DockerfileError(
                    f"{node.value.upper()} instruction before the first FROM:"
                    " no build stage in current context", inst.start_line, inst.end_line)
        else:
            current.append(inst)
    close()
    if not stages:
        line = nodes[-1].end_line if nodes else None
        raise DockerfileError("no FROM instruction: a Dockerfile needs at least one stage", line)
    return tuple(meta), tuple(stages)
