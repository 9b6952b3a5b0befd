"""BuildKit's Dockerfile parser corpus: every golden case must dump identically.

The corpus lives beside the repository at ``../shared/conformance/buildkit`` (see its README);
each ``parser/testfiles/<case>`` holds a ``Dockerfile`` and the ``result`` BuildKit dumps for it,
each ``parser/testfiles-negative/<case>`` a Dockerfile that must be rejected.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from portside.engine.builder import parse_dockerfile
from portside.engine.errors import DockerfileError

pytestmark = pytest.mark.conformance

# beside the repository, or beside a folder holding it (a git worktree under wt/)
CORPUS = next((d / "shared" / "conformance" / "buildkit" for d in Path(__file__).resolve().parents[2:]
               if (d / "shared" / "conformance" / "buildkit").is_dir()),
              Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "buildkit")
PARSER = CORPUS / "parser"
MISSING = f"BuildKit conformance corpus not found at {CORPUS}"


def _cases(folder: str) -> list:
    path = PARSER / folder
    if not path.is_dir():
        return [pytest.param("-", marks=pytest.mark.skip(reason=MISSING))]
    return sorted(p.name for p in path.iterdir() if p.is_dir())


def _read(path: Path) -> str:
    # The corpus is UTF-8; surrogateescape keeps any stray byte so the dump can show it as \x..
    return path.read_bytes().decode("utf-8", "surrogateescape")


@pytest.fixture(autouse=True)
def _need_corpus() -> None:
    if not PARSER.is_dir():
        pytest.skip(MISSING)


@pytest.mark.parametrize("case", _cases("testfiles"))
def test_dump_matches_buildkit(case: str) -> None:
    folder = PARSER / "testfiles" / case
    result = parse_dockerfile(_read(folder / "Dockerfile"))
    assert result.dump() == _read(folder / "result")


@pytest.mark.parametrize("case", _cases("testfiles-negative"))
def test_negative_case_is_rejected(case: str) -> None:
    with pytest.raises(DockerfileError):
        parse_dockerfile(_read(PARSER / "testfiles-negative" / case / "Dockerfile"))


def test_corpus_has_all_cases() -> None:
    assert len(_cases("testfiles")) == 33
    assert len(_cases("testfiles-negative")) == 4


def test_line_numbers() -> None:
    result = parse_dockerfile(_read(PARSER / "testfile-line" / "Dockerfile"))
    assert [(n.start_line, n.end_line) for n in result.nodes] == [(5, 5), (11, 12), (17, 31)]
    assert (result.ast.start_line, result.ast.end_line) == (5, 31)
    # the directive on line 1 (upper-case key) is recognised
    assert result.directives == {"escape": "\\"}
