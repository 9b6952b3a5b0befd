"""The Dockerfile reader's entry points (re-exported by :mod:`portside.engine.build`).

Reading Dockerfiles: parse, type, expand.

Reading a Dockerfile happens in three steps, each in its own module:

1. :mod:`.parser` turns the text into generic nodes with line ranges (``dump()`` prints them
   the way BuildKit does);
2. :mod:`.instructions` turns the nodes into frozen dataclasses (``Copy``, ``Run``...) grouped
   into :class:`Stage` objects;
3. :mod:`.variables` expands ``$VARS`` in them with Docker's ARG/ENV scoping, using the shell
   rules of :mod:`.shell`.

:func:`parse_dockerfile` does step 1 at once and step 2 on first use of :attr:`Dockerfile.stages`,
so a file whose syntax is fine but whose meaning is not (an unknown flag, say) still dumps::

    df = parse_dockerfile(open("Dockerfile").read())
    print(df.dump())                       # (from "python:3.11") ...
    for stage in df.stages:                # Stage(name="build", base="python:3.11", ...)
        steps = df.expand(stage, build_args={"PY": "3.12"})
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from portside.engine.build.instructions import (
    Add, Arg, Cmd, Copy, Entrypoint, Env, Expose, From, Healthcheck, Instruction, KeyValue, Label,
    Maintainer, Onbuild, Run, Shell, SourceContent, Stage, Stopsignal, User, Volume, Workdir,
    build_stages, parse_instruction, parse_mount, resolve_stage, stage_dependencies,
)
from portside.engine.build.parser import Heredoc, Node, ParseResult, parse
from portside.engine.build.shell import ShellError, ShellLex, expand_word, expand_words
from portside.engine.build.variables import (
    ExpandedStage, Step, expand_from, expand_instruction, expand_stage, resolve_meta_args,
)
from portside.engine.errors import DockerfileError

__all__ = [
    "parse_dockerfile", "Dockerfile", "DockerfileError",
    # phase 1
    "Node", "Heredoc", "ParseResult", "parse",
    # phase 2
    "Instruction", "From", "Run", "Cmd", "Entrypoint", "Workdir", "Env", "Arg", "Label",
    "Expose", "Volume", "Shell", "User", "Maintainer", "Onbuild", "Healthcheck", "Stopsignal",
    "Copy", "Add", "KeyValue", "SourceContent", "Stage", "parse_instruction", "build_stages",
    "parse_mount", "stage_dependencies", "resolve_stage",
    # expansion
    "ShellLex", "ShellError", "expand_word", "expand_words", "Step", "ExpandedStage",
    "expand_stage", "expand_from", "expand_instruction", "resolve_meta_args",
]


class Dockerfile:
    """A parsed Dockerfile: the node tree now, typed stages on first use."""

    def __init__(self, ast: ParseResult) -> None:
        self.ast = ast
        self._typed: tuple[tuple[Arg, ...], tuple[Stage, ...]] | None = None

    @property
    def escape(self) -> str:
        """The escape character (``\\`` or a backtick from ``# escape=``)."""
        return self.ast.escape

    @property
    def directives(self) -> dict[str, str]:
        """Parser directives found at the top (``syntax``, ``escape``, ``check``)."""
        return self.ast.directives

    @property
    def warnings(self) -> list[str]:
        """Things BuildKit warns about, such as empty continuation lines."""
        return self.ast.warnings

    @property
    def nodes(self) -> list[Node]:
        """The phase-1 nodes, one per instruction."""
        return self.ast.children

    def dump(self) -> str:
        """BuildKit's s-expression dump, one ``(instruction ...)`` line per instruction."""
        return self.ast.dump()

    def _type(self) -> tuple[tuple[Arg, ...], tuple[Stage, ...]]:
        if self._typed is None:
            self._typed = build_stages(self.ast.children)
        return self._typed

    @property
    def meta_args(self) -> tuple[Arg, ...]:
        """The ``ARG`` instructions before the first ``FROM`` (visible to ``FROM`` lines only).

        Raises:
            DockerfileError: as :attr:`stages`.
        """
        return self._type()[0]

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The build stages in file order.

        Raises:
            DockerfileError: an instruction is malformed (the error names its lines).
        """
        return self._type()[1]

    def stage(self, ref: str | int) -> Stage:
        """Return the stage named ``ref`` (its ``AS`` name) or at index ``ref``.

        Raises:
            DockerfileError: no such stage.
        """
        index = ref if isinstance(ref, int) else resolve_stage(self.stages, str(ref))
        if index is None or not 0 <= index < len(self.stages):
            raise DockerfileError(f"no such build stage: {ref}")
        return self.stages[index]

    def dependencies(self, build_args: Mapping[str, str] | None = None
                     ) -> dict[int, frozenset[int]]:
        """Stage index -> indices of the earlier stages it needs (FROM, COPY --from, mounts).

        References are expanded first (``FROM ${BASE}``, ``COPY --from=$STAGE``), with the
        ARG defaults overridden by ``build_args``; stages that need nothing of each other can
        be built concurrently.
        """
        expanded = []
        for stage in self.stages:
            done = self.expand(stage, build_args)
            expanded.append(replace(stage, base=done.base, instructions=done.instructions))
        return stage_dependencies(expanded)

    def expand(self, stage: Stage | str | int, build_args: Mapping[str, str] | None = None,
               base_env: Mapping[str, str] | None = None,
               builtin: Mapping[str, str] | None = None) -> ExpandedStage:
        """Expand one stage's instructions for ``build_args`` (see :func:`expand_stage`)."""
        if not isinstance(stage, Stage):
            stage = self.stage(stage)
        return expand_stage(stage, build_args, self.meta_args, base_env, builtin, self.escape)


def parse_dockerfile(text: str) -> Dockerfile:
    """Parse Dockerfile text.

    Args:
        text: the Dockerfile's content.

    Returns:
        A :class:`Dockerfile`; ``.dump()`` gives BuildKit's s-expressions, ``.stages`` the
        typed stages.

    Raises:
        DockerfileError: the text does not parse (bad directive, non-string JSON array,
            ``ENV`` without value, unterminated here-document, no instructions); the error
            carries the line range.
    """
    return Dockerfile(parse(text))
