"""Build arguments and environment variables: which value each instruction sees.

Docker's scoping rules, which this module applies to the typed instructions of
:mod:`.instructions`:

* ``ARG`` lines before the first ``FROM`` are *global* (meta) arguments.  They are visible to
  ``FROM`` lines only, so ``FROM python:${PY}`` works, but a ``RUN`` sees ``$PY`` only when its
  stage declares ``ARG PY`` again (without a default it then inherits the global value).
* Inside a stage a variable exists from the ``ARG`` that declares it onwards.  Its value is, in
  order of preference: the ``--build-arg`` given for that name, the ``ARG``'s own default, the
  global value (for a re-declared global), else it is declared but unset.  A ``--build-arg``
  that no ``ARG`` declares has no effect.
* ``ENV`` always wins over an ``ARG`` of the same name, whichever came first.
* Values are fixed per instruction: each one is expanded with the variables as they are just
  before it, so ``ENV a=1 b=$a`` sees the *previous* ``a``.

Only instructions whose arguments Docker expands are touched (``FROM``, ``COPY``, ``ADD``,
``ENV``, ``ARG``, ``LABEL``, ``WORKDIR``, ``USER``, ``EXPOSE``, ``VOLUME``, ``STOPSIGNAL`` and
``RUN --mount/--network/--security``); commands in ``RUN``/``CMD``/``ENTRYPOINT`` are left to the
container's shell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from portside.engine.builder.instructions import (
    Add, Arg, Copy, Env, Expose, From, Instruction, KeyValue, Label, Run, Stage, Stopsignal, User,
    Volume, Workdir,
)
from portside.engine.builder.shell import ShellError, ShellLex
from portside.engine.errors import DockerfileError
from portside.engine.records import record, replace

__all__ = ["Step", "ExpandedStage", "resolve_meta_args", "expand_from", "expand_instruction",
           "expand_stage"]


@record(frozen=True)
class Step:
    """One instruction with its variables expanded and the variables in effect when it runs.

    ``env`` is the environment (image ``ENV`` plus the stage's ``ENV`` lines so far); ``args``
    the ``ARG`` values in scope.  A ``RUN`` sees both, ``env`` winning.
    """

    instruction: Instruction
    env: Mapping[str, str]
    args: Mapping[str, str]


@record(frozen=True)
class ExpandedStage:
    """A stage whose instructions were expanded for one set of build arguments."""

    stage: Stage
    steps: tuple[Step, ...]
    env: Mapping[str, str]
    args: Mapping[str, str]

    @property
    def base(self) -> str:
        """The expanded ``FROM`` reference."""
        first = self.steps[0].instruction
        assert isinstance(first, From)
        return first.base

    @property
    def instructions(self) -> tuple[Instruction, ...]:
        """The expanded instructions, ``FROM`` first."""
        return tuple(step.instruction for step in self.steps)


def _expander(lex: ShellLex, env: Mapping[str, str], inst: Instruction):
    def expand(word: str) -> str:
        try:
            return lex.process_word(word, env)
        except ShellError as exc:
            raise DockerfileError(exc.detail, inst.start_line, inst.end_line) from None
    return expand


def resolve_meta_args(meta_args: Sequence[Arg], build_args: Mapping[str, str] | None = None,
                      builtin: Mapping[str, str] | None = None,
                      escape: str = "\\") -> dict[str, str]:
    """Compute the global (before-the-first-FROM) arguments.

    Args:
        meta_args: the ``ARG`` instructions before the first ``FROM``.
        build_args: ``--build-arg`` values; they override defaults of declared names.
        builtin: automatic arguments such as ``TARGETPLATFORM``, visible to ``FROM`` lines.
        escape: the Dockerfile's escape character.

    Returns:
        name -> value for every global argument that has a value.

    Raises:
        DockerfileError: a default fails to expand (e.g. ``${X:?required}``).
    """
    build_args = build_args or {}
    values: dict[str, str] = dict(builtin or {})
    lex = ShellLex(escape)
    for inst in meta_args:
        expand = _expander(lex, values, inst)
        pending = []
        for kv in inst.args:
            name = expand(kv.key)
            if name in build_args:
                pending.append((name, build_args[name]))
            elif kv.value is not None:
                pending.append((name, expand(kv.value)))
        values.update(pending)
    return values


def expand_from(inst: From, meta: Mapping[str, str], escape: str = "\\") -> From:
    """Expand a ``FROM`` line's image and platform with the global arguments ``meta``."""
    expand = _expander(ShellLex(escape), meta, inst)
    return replace(inst, base=expand(inst.base),
                   platform=expand(inst.platform) if inst.platform is not None else None)


def expand_instruction(inst: Instruction, variables: Mapping[str, str],
                       escape: str = "\\") -> Instruction:
    """Expand the arguments Docker expands in one (non-``FROM``) instruction.

    Args:
        inst: the instruction as written.
        variables: ARG and ENV values in scope (ENV already merged over ARG).
        escape: the Dockerfile's escape character.

    Returns:
        A new instruction (the same one when nothing in it is expanded).

    Raises:
        DockerfileError: a word fails to expand; the error carries the instruction's lines.
    """
    expand = _expander(ShellLex(escape), variables, inst)

    def opt(value: str | None) -> str | None:
        return expand(value) if value is not None else None

    def pairs(kvs: tuple[KeyValue, ...]) -> tuple[KeyValue, ...]:
        return tuple(KeyValue(expand(kv.key), opt(kv.value)) for kv in kvs)

    match inst:
        case Env(pairs=kvs):
            return replace(inst, pairs=pairs(kvs))
        case Label(pairs=kvs):
            return replace(inst, pairs=pairs(kvs))
        case Arg(args=kvs):
            return replace(inst, args=pairs(kvs))
        case Copy():
            return replace(inst, sources=tuple(map(expand, inst.sources)), dest=expand(inst.dest),
                           from_stage=opt(inst.from_stage), chown=opt(inst.chown),
                           chmod=opt(inst.chmod), exclude=tuple(map(expand, inst.exclude)))
        case Add():
            return replace(inst, sources=tuple(map(expand, inst.sources)), dest=expand(inst.dest),
                           chown=opt(inst.chown), chmod=opt(inst.chmod),
                           checksum=opt(inst.checksum), exclude=tuple(map(expand, inst.exclude)))
        case Workdir(path=path):
            return replace(inst, path=expand(path))
        case User(user=user):
            return replace(inst, user=expand(user))
        case Stopsignal(signal=signal):
            return replace(inst, signal=expand(signal))
        case Expose(ports=ports):
            return replace(inst, ports=tuple(map(expand, ports)))
        case Volume(paths=paths):
            return replace(inst, paths=tuple(map(expand, paths)))
        case Run():
            return replace(inst, mounts=tuple(map(expand, inst.mounts)),
                           network=opt(inst.network), security=opt(inst.security))
    return inst


def expand_stage(stage: Stage, build_args: Mapping[str, str] | None = None,
                 meta_args: Sequence[Arg] = (), base_env: Mapping[str, str] | None = None,
                 builtin: Mapping[str, str] | None = None, escape: str = "\\") -> ExpandedStage:
    """Expand every instruction of ``stage`` with Docker's ARG/ENV scoping.

    Args:
        stage: a stage from :func:`~.instructions.build_stages`.
        build_args: ``--build-arg`` values.
        meta_args: the global ``ARG`` instructions (before the first ``FROM``).
        base_env: the base image's environment (``Env`` of its config), as a dict.
        builtin: automatic arguments (``TARGETPLATFORM``...) for ``FROM`` and re-declaration.
        escape: the Dockerfile's escape character.

    Returns:
        The stage with one :class:`Step` per instruction and the final ENV and ARG values.

    Raises:
        DockerfileError: a word fails to expand.

    Example::

        >>> df = parse_dockerfile('ARG V=3\\nFROM alpine:${V}\\nARG V\\nRUN echo $V\\n')
        >>> expand_stage(df.stages[0], meta_args=df.meta_args).base
        'alpine:3'
    """
    build_args = build_args or {}
    meta = resolve_meta_args(meta_args, build_args, builtin, escape)
    env: dict[str, str] = dict(base_env or {})
    args: dict[str, str] = {}
    steps: list[Step] = []
    for inst in stage.instructions:
        if isinstance(inst, From):
            steps.append(Step(expand_from(inst, meta, escape), dict(env), dict(args)))
            continue
        expanded = expand_instruction(inst, {**args, **env}, escape)
        if isinstance(expanded, Env):
            env.update((kv.key, kv.value or "") for kv in expanded.pairs)
        elif isinstance(expanded, Arg):
            for kv in expanded.args:
                if kv.key in build_args:
                    args[kv.key] = build_args[kv.key]
                elif kv.value is not None:
                    args[kv.key] = kv.value
                elif kv.key in meta:
                    args[kv.key] = meta[kv.key]
                else:
                    args.pop(kv.key, None)  # declared, no value: unset
        steps.append(Step(expanded, dict(env), dict(args)))
    return ExpandedStage(stage=stage, steps=tuple(steps), env=env, args=args)
