"""The Dockerfile reader's entry points: :func:`parse_dockerfile` and :class:`Dockerfile`.

:mod:`portside.engine.builder` re-exports everything here; its docstring explains the three steps
(parse, type, expand) and which module does each.
"""

from __future__ import annotations

from collections.abc import Mapping

from portside.engine.builder.instructions import (
    Add, Arg, Cmd, Copy, Entrypoint, Env, Expose, From, Healthcheck, Instruction, KeyValue, Label,
    Maintainer, Onbuild, Run, Shell, SourceContent, Stage, Stopsignal, User, Volume, Workdir,
    build_stages, parse_instruction, parse_mount, resolve_stage, stage_dependencies,
)
from portside.engine.builder.parser import Heredoc, Node, ParseResult, parse
from portside.engine.builder.shell import ShellError, ShellLex, expand_word, expand_words
from portside.engine.builder.variables import (
    ExpandedStage, Step, expand_from, expand_instruction, expand_stage, resolve_meta_args,
)
from portside.engine.errors import DockerfileError
from portside.engine.records import replace

# the public names are listed in portside.engine.builder.__all__


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
