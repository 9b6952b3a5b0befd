"""Phase 2 of Dockerfile reading: typed instructions, flags, stages and their dependencies."""

from __future__ import annotations

from pathlib import Path

import pytest

from portside.engine.builder import (
    Add, Arg, Cmd, Copy, Env, From, Healthcheck, KeyValue, Onbuild, Run, Shell, parse_dockerfile,
)
from portside.engine.errors import DockerfileError

pytestmark = pytest.mark.unit

MULTI = """\
ARG BASE=debian
FROM ${BASE} AS deps
RUN --mount=type=cache,target=/root/.cache pip install x
FROM deps AS build
COPY --from=deps --chown=1:2 --chmod=0644 --link a b /dst/
FROM alpine AS docs
RUN true
FROM scratch
COPY --from=build /out /out
COPY --from=1 /x /y
RUN --mount=type=bind,from=docs,target=/d true
"""


def _one(text: str):
    return parse_dockerfile("FROM a\n" + text).stages[0].instructions[1]


def test_stages_with_names() -> None:
    df = parse_dockerfile(MULTI)
    assert [(s.name, s.base, s.index) for s in df.stages] == [
        ("deps", "${BASE}", 0), ("build", "deps", 1), ("docs", "alpine", 2), (None, "scratch", 3)]
    assert [a.args for a in df.meta_args] == [(KeyValue("BASE", "debian"),)]
    assert df.stage("build").index == 1 and df.stage(3).name is None
    assert (df.stages[1].start_line, df.stages[1].end_line) == (4, 5)
    with pytest.raises(DockerfileError, match="no such build stage"):
        df.stage("nope")


def test_dependencies() -> None:
    df = parse_dockerfile(MULTI)
    assert df.stages[3].dependencies() == ("scratch", "build", "1", "docs")
    assert df.dependencies() == {0: frozenset(), 1: frozenset({0}), 2: frozenset(),
                                 3: frozenset({1, 2})}


def test_copy_fields() -> None:
    copy = parse_dockerfile(MULTI).stages[1].instructions[1]
    assert copy == Copy(sources=("a", "b"), dest="/dst/", from_stage="deps", chown="1:2",
                        chmod="0644", link=True, start_line=5, end_line=5)


def test_copy_heredoc_source() -> None:
    copy = _one("COPY <<-EOT /etc/motd\n\thello\n\tEOT\n")
    assert copy.sources == () and copy.dest == "/etc/motd"
    assert [(h.path, h.data, h.expand) for h in copy.heredocs] == [("EOT", "hello\n", True)]


def test_copy_json_form() -> None:
    assert _one('COPY ["a b", "/c d"]').sources == ("a b",)


def test_add_checksum() -> None:
    add = _one("ADD --checksum=sha256:abc --keep-git-dir=true https://x/y /z")
    assert isinstance(add, Add)
    assert (add.checksum, add.keep_git_dir, add.sources, add.dest) == (
        "sha256:abc", True, ("https://x/y",), "/z")


@pytest.mark.parametrize(("line", "message"), [
    ("COPY", "COPY requires at least two arguments"),
    ("COPY onlyone", "COPY requires at least two arguments, but only one was provided"),
    ("COPY --nope=1 a b", "unknown flag: nope"),
    ("COPY --from a b", "missing a value on flag: from"),
    ("COPY --link=maybe a b", "expecting boolean value"),
    ("COPY --from=a --from=b a b", "duplicate flag"),
    ("WORKDIR", "WORKDIR requires exactly one argument"),
    ("SHELL /bin/sh -c", "SHELL requires the arguments to be in JSON form"),
    ("HEALTHCHECK FOO x", "Unknown type"),
    ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
    ("HEALTHCHECK --interval=zz CMD x", "invalid duration"),
    ("ONBUILD ONBUILD RUN x", "Chaining ONBUILD"),
    ("ONBUILD FROM x", "isn't allowed as an ONBUILD trigger"),
    ("FOO bar", "unknown instruction: FOO"),
    ("EXPOSE", "EXPOSE requires at least one argument"),
    ("RUN --mount x", "missing a value on flag: mount"),
])
def test_errors_carry_message_and_lines(line: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=message) as info:
        parse_dockerfile("FROM a\n\n" + line + "\n").stages
    assert info.value.start_line == 3
    assert str(info.value).startswith("Dockerfile:3: ")


@pytest.mark.parametrize(("text", "message"), [
    ("RUN x\nFROM a\n", "before the first FROM"),
    ("FROM a b\n", "FROM requires either one or three arguments"),
    ("FROM a AS 1x\n", "invalid name for build stage"),
    ("FROM a AS x\nFROM b AS x\n", "duplicate stage name"),
    ("ARG A\n", "no FROM instruction"),
])
def test_stage_errors(text: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=message):
        parse_dockerfile(text).stages


def test_command_forms() -> None:
    run = _one("RUN --network=none echo $HOME")
    assert run == Run(command=("echo $HOME",), shell_form=True, network="none", start_line=2,
                      end_line=2)
    assert _one('CMD ["a", "b"]') == Cmd(command=("a", "b"), shell_form=False, start_line=2,
                                         end_line=2)
    assert _one('SHELL ["/bin/bash", "-c"]') == Shell(shell=("/bin/bash", "-c"), start_line=2,
                                                      end_line=2)


def test_env_label_arg_pairs() -> None:
    assert _one("ENV a=1 b='x y'").pairs == (KeyValue("a", "1"), KeyValue("b", "'x y'"))
    assert _one("ENV old form value").pairs == (KeyValue("old", "form value"),)
    assert _one('LABEL "k"="v"').pairs == (KeyValue('"k"', '"v"'),)
    assert isinstance(_one("ARG a b=2"), Arg)
    assert _one("ARG a b=2").args == (KeyValue("a", None), KeyValue("b", "2"))


def test_healthcheck_and_onbuild() -> None:
    hc = _one("HEALTHCHECK --interval=1m30s --timeout=500ms --retries=3 CMD curl -f x")
    assert hc == Healthcheck(test=("CMD-SHELL", "curl -f x"), interval=90.0, timeout=0.5,
                             retries=3, start_line=2, end_line=2)
    assert _one("HEALTHCHECK NONE").test == ("NONE",)
    assert _one('HEALTHCHECK CMD ["a", "b"]').test == ("CMD", "a", "b")
    assert _one("ONBUILD RUN echo hi") == Onbuild(expression="RUN echo hi", start_line=2,
                                                  end_line=2)


def test_from_platform() -> None:
    inst = parse_dockerfile("FROM --platform=$BUILDPLATFORM golang AS b\n").stages[0].from_
    assert inst == From(base="golang", stage_name="b", platform="$BUILDPLATFORM", start_line=1,
                        end_line=1)


def test_instructions_are_frozen() -> None:
    env = _one("ENV a=1")
    assert isinstance(env, Env)
    with pytest.raises(AttributeError):
        env.pairs = ()  # type: ignore[misc]


def test_dump_survives_semantic_errors() -> None:
    # Phase 2 is lazy: an unknown flag does not stop the syntax dump.
    df = parse_dockerfile("FROM a\nCOPY --doit=1 x y\n")
    assert df.dump().endswith('(copy ["--doit=1"] "x" "y")\n')
    with pytest.raises(DockerfileError):
        df.stages


def test_example_mmdetection3d_parses() -> None:
    # beside the repository, or beside a folder holding it (a git worktree under wt/)
    path = next((d / "shared/examples/mmdetection3d.Dockerfile"
                 for d in Path(__file__).resolve().parents[2:]
                 if (d / "shared/examples/mmdetection3d.Dockerfile").is_file()),
                Path(__file__).resolve().parents[2].parent / "shared/examples/mmdetection3d.Dockerfile")
    if not path.is_file():
        pytest.skip(f"example not found at {path}")
    df = parse_dockerfile(path.read_text(encoding="utf-8"))
    assert len(df.stages) == 1 and len(df.meta_args) == 3
    assert df.expand(0).base == "pytorch/pytorch:1.6.0-cuda10.1-cudnn7-devel"
    assert df.expand(0, {"CUDA": "11.3"}).base == "pytorch/pytorch:1.6.0-cuda11.3-cudnn7-devel"
