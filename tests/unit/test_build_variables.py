"""ARG/ENV scoping and the shell-expansion forms beyond BuildKit's corpus."""

from __future__ import annotations

import pytest

from portside.engine.builder import (
    Copy, Env, KeyValue, Run, Workdir, expand_word, expand_words, parse_dockerfile,
)
from portside.engine.builder.shell import ShellError, ShellLex
from portside.engine.errors import DockerfileError

pytestmark = pytest.mark.unit

DOCKERFILE = """\
ARG PY=3.11
ARG FLAVOUR
FROM python:${PY}-${FLAVOUR:-slim} AS app
RUN echo no args yet
ARG PY
ARG USERNAME=app
ARG HOME_DIR=/home/$USERNAME
ENV USERNAME=override PATH=$HOME_DIR/bin
ARG USERNAME=ignored
WORKDIR $HOME_DIR/"src dir"
COPY --chown=${USERNAME} ${PY}.txt $HOME_DIR/
ENV a=1
ENV a=2 b=$a
RUN --mount=type=cache,target=/c/$PY true
"""


def _steps(build_args=None):
    df = parse_dockerfile(DOCKERFILE)
    return df.expand("app", build_args)


def test_from_uses_global_args_and_build_args() -> None:
    assert _steps().base == "python:3.11-slim"
    assert _steps({"PY": "3.12", "FLAVOUR": "bookworm"}).base == "python:3.12-bookworm"


def test_global_args_are_not_visible_until_redeclared() -> None:
    steps = _steps().steps
    assert "PY" not in steps[1].args  # the RUN before ``ARG PY``
    assert steps[2].args["PY"] == "3.11"  # re-declared: inherits the global value
    assert _steps({"PY": "3.9"}).steps[2].args["PY"] == "3.9"


def test_values_fixed_per_instruction_and_env_wins() -> None:
    exp = _steps()
    workdir = exp.instructions[7]
    assert workdir == Workdir(path="/home/app/src dir", start_line=10, end_line=10)
    copy = exp.instructions[8]
    assert isinstance(copy, Copy)
    # ENV USERNAME=override beats both ARG USERNAME lines, before and after it
    assert copy.chown == "override" and copy.sources == ("3.11.txt",)
    assert copy.dest == "/home/app/"
    env_b = exp.instructions[10]
    assert env_b == Env(pairs=(KeyValue("a", "2"), KeyValue("b", "1")), start_line=13,
                        end_line=13)
    assert exp.env["b"] == "1" and exp.env["PATH"] == "/home/app/bin"
    run = exp.instructions[11]
    assert isinstance(run, Run) and run.mounts == ("type=cache,target=/c/3.11",)


def test_build_arg_overrides_stage_default() -> None:
    exp = _steps({"USERNAME": "bob", "UNDECLARED": "x"})
    assert exp.args["USERNAME"] == "bob" and "UNDECLARED" not in exp.args
    assert exp.instructions[7].path == "/home/bob/src dir"


def test_run_commands_are_not_expanded() -> None:
    exp = parse_dockerfile("FROM a\nARG X=1\nRUN echo $X\n").expand(0)
    assert exp.instructions[2].command == ("echo $X",)
    assert exp.steps[2].args == {"X": "1"}


def test_expansion_error_carries_lines() -> None:
    df = parse_dockerfile("FROM a\nWORKDIR ${NEEDED:?set NEEDED}\n")
    with pytest.raises(DockerfileError, match="NEEDED: set NEEDED") as info:
        df.expand(0)
    assert info.value.start_line == 2


def test_base_env_and_escape_directive() -> None:
    df = parse_dockerfile("# escape=`\nFROM a\nWORKDIR $HOME/`$x\n")
    assert df.expand(0, base_env={"HOME": "/root"}).instructions[1].path == "/root/$x"


@pytest.mark.parametrize(("word", "expected"), [
    ("${F#*.}", "tar.gz"), ("${F##*.}", "gz"), ("${F%.*}", "file.tar"), ("${F%%.*}", "file"),
    ("${F/tar/zip}", "file.zip.gz"), ("${P//\\//_}", "_a_b"), ("${F#nomatch}", "file.tar.gz"),
    ("${U-dflt}", "dflt"), ("${E-dflt}", ""), ("${E:-dflt}", "dflt"),
    ("${U+set}", ""), ("${E+set}", "set"), ("${E:+set}", ""), ("${F/[ft]/X}", "Xile.tar.gz"),
])
def test_newer_modifiers(word: str, expected: str) -> None:
    env = {"F": "file.tar.gz", "P": "/a/b", "E": ""}
    assert expand_word(word, env) == expected


def test_unset_error_forms() -> None:
    with pytest.raises(ShellError, match="U: is not allowed to be unset"):
        expand_word("${U?}", {})
    with pytest.raises(ShellError, match="E: is not allowed to be empty"):
        expand_word("${E:?}", {"E": ""})
    assert expand_word("${E?}", {"E": ""}) == ""


def test_skip_unset_env_keeps_references() -> None:
    lex = ShellLex(skip_unset_env=True)
    assert lex.process_word("$A-${B}-${C:-x}-$D", {"D": "d"}) == "$A-${B}-${C:-x}-d"


def test_words_split_only_unquoted() -> None:
    assert expand_words('a${s}"${s}" \'$s\'', {"s": "1 2"}) == ["a1", "21 2", "$s"]
