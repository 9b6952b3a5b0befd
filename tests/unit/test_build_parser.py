"""Phase 1 of Dockerfile reading: directives, continuations, heredocs, flags, JSON form."""

from __future__ import annotations

import pytest

from portside.engine.builder import parse_dockerfile
from portside.engine.builder.parser import extract_flags, go_quote, split_raw_words
from portside.engine.errors import DockerfileError

pytestmark = pytest.mark.unit


def test_dump_one_line_per_instruction() -> None:
    df = parse_dockerfile("FROM a\nCOPY --chown=1:1 x /y\n")
    assert df.dump() == '(from "a")\n(copy ["--chown=1:1"] "x" "/y")\n'


def test_escape_directive_changes_continuation() -> None:
    df = parse_dockerfile("# escape=`\nFROM a\nRUN echo \\\nRUN c `\n  d\n")
    assert df.escape == "`"
    assert df.directives == {"escape": "`"}
    assert df.dump() == '(from "a")\n(run "echo \\\\")\n(run "c   d")\n'


def test_directive_only_at_top() -> None:
    df = parse_dockerfile("FROM a\n# escape=`\nRUN x \\\n y\n")
    assert df.escape == "\\"
    assert df.nodes[1].args() == ["x  y"]


def test_bad_escape_directive() -> None:
    with pytest.raises(DockerfileError, match="invalid escape token"):
        parse_dockerfile("# escape=x\nFROM a\n")


def test_repeated_directive() -> None:
    with pytest.raises(DockerfileError, match="only one syntax"):
        parse_dockerfile("# syntax=a\n# syntax=b\nFROM a\n")


def test_comments_and_blank_lines_inside_continuation() -> None:
    df = parse_dockerfile("FROM a\nRUN a \\\n# note\n\n  b\n")
    assert df.nodes[1].args() == ["a   b"]
    assert (df.nodes[1].start_line, df.nodes[1].end_line) == (2, 5)
    assert df.warnings  # BuildKit warns about the empty continuation line


def test_exec_form_and_fallback() -> None:
    df = parse_dockerfile('FROM a\nCMD ["a", "b c"]\nCMD [\'a\']\nENTRYPOINT ["x"\n')
    cmd, bad, unterminated = df.nodes[1:]
    assert cmd.is_json and cmd.args() == ["a", "b c"]
    assert not bad.is_json and bad.args() == ["['a']"]
    assert not unterminated.is_json and unterminated.args() == ['["x"']


def test_non_string_json_is_an_error_with_lines() -> None:
    with pytest.raises(DockerfileError) as info:
        parse_dockerfile('FROM a\nCMD ["a", 1]\n')
    assert (info.value.start_line, info.value.end_line) == (2, 2)


def test_heredoc_run_several_and_chomp() -> None:
    text = "FROM a\nRUN <<A cat - <<-'B'\nhello $X\nA\n\tworld\n\tB\nRUN true\n"
    df = parse_dockerfile(text)
    run = df.nodes[1]
    assert [(h.name, h.content, h.expand, h.chomp) for h in run.heredocs] == [
        ("A", "hello $X\n", True, False), ("B", "\tworld\n", False, True)]
    assert (run.start_line, run.end_line) == (2, 6)
    assert df.nodes[2].start_line == 7


def test_heredoc_quoted_opener_is_not_a_heredoc() -> None:
    df = parse_dockerfile('FROM a\nRUN echo "<<EOF"\n')
    assert df.nodes[1].heredocs == []


def test_heredoc_not_in_exec_form() -> None:
    df = parse_dockerfile('FROM a\nRUN ["cat", "<<EOF"]\n')
    assert df.nodes[1].heredocs == []


def test_unterminated_heredoc() -> None:
    with pytest.raises(DockerfileError, match="unterminated heredoc"):
        parse_dockerfile("FROM a\nRUN <<EOF\necho\n")


def test_flags_extraction() -> None:
    rest, flags = extract_flags('--a=1 --b="x y" -- --c d')
    assert (rest.strip(), flags) == ("--c d", ["--a=1", "--b=x y"])
    assert extract_flags("--mount=type=cache,target=/x cmd") == (
        "cmd", ["--mount=type=cache,target=/x"])
    assert extract_flags("-x") == ("-x", [])


def test_raw_words_keep_quotes() -> None:
    assert split_raw_words('cat <<"EOF" > \'a b\'') == ["cat", '<<"EOF"', ">", "'a b'"]


def test_go_quote() -> None:
    assert go_quote('a"\\\x00\t♥\u200b') == '"a\\"\\\\\\x00\\t♥\\u200b"'


def test_onbuild_nests() -> None:
    df = parse_dockerfile("FROM a\nONBUILD COPY --from=b x y\n")
    assert df.dump().splitlines()[1] == '(onbuild (copy ["--from=b"] "x" "y"))'


def test_bom_and_crlf() -> None:
    df = parse_dockerfile("\ufeffFROM a\r\nRUN b \\\r\n c\r\n")
    assert df.dump() == '(from "a")\n(run "b  c")\n'


@pytest.mark.parametrize("text", ["", "\n\n", "# just a comment\n"])
def test_no_instructions(text: str) -> None:
    with pytest.raises(DockerfileError, match="no instructions"):
        parse_dockerfile(text)
