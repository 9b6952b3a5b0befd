"""BuildKit's shell-word expansion corpus (``shell/envVarTest`` and ``shell/wordsTest``).

``envVarTest`` lines are ``PLATFORM|input|expected`` (A = all, U = unix, W = windows; we run A
and U) expanded to one word in a fixed environment; ``wordsTest`` lines are ``input | w1,w2``
expanded into words, with ``ENV name=value`` lines adding to the environment as they go.
``error`` means the expansion must fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from portside.engine.builder.shell import ShellError, expand_word, expand_words

pytestmark = pytest.mark.conformance

# beside the repository, or beside a folder holding it (a git worktree under wt/)
CORPUS = next((d / "shared" / "conformance" / "buildkit" for d in Path(__file__).resolve().parents[2:]
               if (d / "shared" / "conformance" / "buildkit").is_dir()),
              Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "buildkit")
SHELL = CORPUS / "shell"
MISSING = f"BuildKit conformance corpus not found at {CORPUS}"
ENV_VAR_TEST_ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}


def _env_var_cases() -> list:
    path = SHELL / "envVarTest"
    if not path.is_file():
        return [pytest.param("", "", marks=pytest.mark.skip(reason=MISSING))]
    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        platform, source, expected = (part.strip() for part in line.split("|"))
        if platform in ("A", "U"):
            cases.append(pytest.param(source, expected, id=f"envVarTest:{number}"))
    return cases


def _words_cases() -> list:
    path = SHELL / "wordsTest"
    if not path.is_file():
        return [pytest.param("", {}, [], marks=pytest.mark.skip(reason=MISSING))]
    cases = []
    env: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("ENV "):
            name, _, value = line[4:].lstrip(" ").partition("=")
            env = {**env, name: value}
            continue
        source, expected = line.split("|")
        cases.append(pytest.param(source.strip(), env, expected.lstrip(" ").split(","),
                                  id=f"wordsTest:{number}"))
    return cases


@pytest.mark.parametrize(("source", "expected"), _env_var_cases())
def test_env_var_expansion(source: str, expected: str) -> None:
    if expected == "error":
        with pytest.raises(ShellError):
            expand_word(source, ENV_VAR_TEST_ENV)
    else:
        assert expand_word(source, ENV_VAR_TEST_ENV) == expected


@pytest.mark.parametrize(("source", "env", "expected"), _words_cases())
def test_words_expansion(source: str, env: dict[str, str], expected: list[str]) -> None:
    if expected == ["error"]:
        with pytest.raises(ShellError):
            expand_words(source, env)
    else:
        assert expand_words(source, env) == expected


def test_corpus_present_and_sized() -> None:
    if not SHELL.is_dir():
        pytest.skip(MISSING)
    assert len(_env_var_cases()) > 200
    assert len(_words_cases()) > 20
