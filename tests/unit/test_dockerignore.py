"""Docker's .dockerignore matching rules, case by case."""

from __future__ import annotations

import pytest

from portside.engine.builder.context import IgnoreMatcher, clean_path

pytestmark = pytest.mark.unit


def excluded(patterns: str, path: str) -> bool:
    return IgnoreMatcher.parse(patterns).excluded(path)


@pytest.mark.parametrize("patterns, path, expected", [
    ("*.log", "a.log", True),
    ("*.log", "dir/a.log", False),             # * never crosses a /
    ("**/*.log", "dir/sub/a.log", True),        # ** crosses any number of directories
    ("**/*.log", "a.log", True),                # ... including none
    ("dir/**", "dir/x/y", True),
    ("build", "build/out/bin", True),           # a directory excludes what is below it
    ("build/", "build/out", True),              # trailing slash is dropped
    ("/secret", "secret", True),                # leading slash is meaningless
    ("./secret", "secret", True),
    ("a?c", "abc", True),
    ("a?c", "a/c", False),
    ("[ab].txt", "b.txt", True),
    ("[!ab].txt", "c.txt", True),
    ("[!ab].txt", "a.txt", False),
    ("*\n!keep.log", "keep.log", False),       # re-included
    ("*.log\n!keep.log\nkeep.log", "keep.log", True),   # last match wins
    ("# comment\n\n  *.tmp  ", "x.tmp", True),
    ("# *.tmp", "x.tmp", False),
    ("docs\n!docs/README.md", "docs/README.md", False),
    ("docs\n!docs/README.md", "docs/other.md", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "axb", False),
    ("", "anything", False),
])
def test_matching(patterns: str, path: str, expected: bool) -> None:
    assert excluded(patterns, path) is expected


def test_exclusions_flag_and_bool() -> None:
    assert not IgnoreMatcher.parse("# only a comment")
    m = IgnoreMatcher.parse("x\n!x/y")
    assert m and m.has_exclusions


@pytest.mark.parametrize("raw, cleaned", [
    ("a/./b//c/", "a/b/c"), ("/a/../b", "/b"), ("../a", "../a"), ("a/..", "."), ("", "."),
    ("/..", "/"),
])
def test_clean_path(raw: str, cleaned: str) -> None:
    assert clean_path(raw) == cleaned
