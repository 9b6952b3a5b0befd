"""Reading Dockerfiles: parse, type, expand.

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

The names below are defined in :mod:`.dockerfile` and the modules it imports; they load on first
use (``from portside.engine.builder import parse_dockerfile`` works as usual), so importing a light
submodule such as :mod:`.memo` does not load the parser.
"""

from __future__ import annotations

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


TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:  # what type checkers see; at run time the names load on first use, below
    from typing import Any

    from portside.engine.builder.dockerfile import (  # noqa: F401
        Add, Arg, Cmd, Copy, Dockerfile, DockerfileError, Entrypoint, Env, ExpandedStage, Expose,
        From, Healthcheck, Heredoc, Instruction, KeyValue, Label, Maintainer, Node, Onbuild,
        ParseResult, Run, Shell, ShellError, ShellLex, SourceContent, Stage, Step, Stopsignal,
        User, Volume, Workdir, build_stages, expand_from, expand_instruction, expand_stage,
        expand_word, expand_words, parse, parse_dockerfile, parse_instruction, parse_mount,
        resolve_meta_args, resolve_stage, stage_dependencies,
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        from portside.engine.builder import dockerfile

        return getattr(dockerfile, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
