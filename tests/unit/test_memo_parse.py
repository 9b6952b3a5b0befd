"""The build memo's command-line reading and context fingerprint (no engine needed)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from portside.engine.builder import memo
from portside.engine.builder.memo import MAX_ENTRIES, _parse, context_stamp, key_values

pytestmark = pytest.mark.unit


def test_reads_the_build_options_it_mirrors():
    req = _parse(["--root", "/r", "build", "-q", "-t", "a:1", "--tag=b:2", "-f", "Df",
                  "--build-arg", "X=1", "--label=l=v", "--target", "t", "--iidfile", "i",
                  "--progress=json", "--platform", "linux/amd64", "ctx"])
    assert req is not None
    assert (req.root, req.path, req.tag, req.file, req.build_arg, req.label, req.target,
            req.iidfile, req.quiet, req.progress, req.platform) == (
        "/r", "ctx", ["a:1", "b:2"], "Df", ["X=1"], ["l=v"], "t", "i", True, "json",
        "linux/amd64")
    assert _parse(["image", "build", "."]).path == "."


@pytest.mark.parametrize("argv", [
    ["build", "--no-cache", "."], ["build", "--locked", "."], ["build", "--pull", "."],
    ["build", "-"], ["build", "-f", "-", "."], ["build", "a", "b"], ["build"],
    ["build", "-t"], ["build", "--progress", "fancy", "."], ["run", "x"], ["build", "-qt", "x", "."],
])
def test_anything_else_goes_the_full_way(argv):
    assert _parse(argv) is None


def _build_parser():
    from portside.engine.cli import build_parser

    parser = build_parser(modules=("build",), words=("build", None))
    return parser._subparsers._group_actions[0].choices["build"]


def test_the_fast_parser_reads_what_the_command_parser_reads():
    """Both come from memo.BUILD_OPTIONS: every option of `portside build` is declared there,
    and for one it mirrors the fast parser finds the value argparse finds; any other makes it
    step aside."""
    parser = _build_parser()
    declared = {f for flags, *_ in memo.BUILD_OPTIONS for f in flags}
    options = {s for a in parser._actions for s in a.option_strings} - {"-h", "--help"}
    assert options == declared
    for flags, dest, kind, _help, mirrored in memo.BUILD_OPTIONS:
        for flag in flags:
            words = [flag] if kind == "switch" else [flag, "json" if dest == "progress" else "v"]
            argv = ["build", *words, "ctx"]
            req = _parse(argv)
            if not mirrored:
                assert req is None, flag
                continue
            assert req is not None, flag
            expected = vars(parser.parse_args([*words, "ctx"]))
            assert getattr(req, dest) == expected[dest], flag
            assert req.path == expected["path"] == "ctx"


def test_a_racy_file_is_compared_by_content(tmp_path, monkeypatch):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "old").write_text("settled\n")
    (ctx / "new").write_text("one\n")
    stat_new = os.stat(ctx / "new")
    monkeypatch.setattr(memo.time, "time_ns", lambda: stat_new.st_ctime_ns + memo.RACY_NS // 2)
    key, racy = memo.fingerprint(dockerfile="FROM scratch", context=str(ctx), tags=[],
                                 build_args={}, target=None, labels={}, platform=None,
                                 source_date_epoch=None)
    # both files changed within the tick window of this fingerprint: both are hashed
    assert set(racy) == {"old", "new"}
    assert racy["new"] == "sha256:" + __import__("hashlib").sha256(b"one\n").hexdigest()
    monkeypatch.setattr(memo.time, "time_ns", lambda: stat_new.st_ctime_ns + 10 * memo.RACY_NS)
    later, settled = memo.fingerprint(dockerfile="FROM scratch", context=str(ctx), tags=[],
                                      build_args={}, target=None, labels={}, platform=None,
                                      source_date_epoch=None)
    assert later == key and settled == {}  # the metadata alone decides once time has moved on
    # same size, same times (as a write within the same tick leaves them): only content tells
    st = os.stat(ctx / "new")
    (ctx / "new").write_text("two\n")
    os.utime(ctx / "new", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert memo._digests(str(ctx), list(racy)) != racy
    # and the memo's lookup, which re-hashes its racy files, no longer answers
    import json
    import sqlite3

    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute(memo.SCHEMA[0])
    conn.execute(memo.SCHEMA[1])
    conn.execute("CREATE TABLE images (id TEXT)")
    conn.execute("CREATE TABLE refs (name TEXT, image_id TEXT)")
    conn.execute("INSERT INTO images VALUES ('sha256:i')")
    memo.record(conn, key, "sha256:i", [], [], [], racy=racy)
    assert memo._lookup(conn, key, str(ctx)) is None
    (ctx / "new").write_text("one\n")
    assert memo._lookup(conn, key, str(ctx)) == ("sha256:i", [])
    assert json.loads(conn.execute("SELECT racy FROM build_memo").fetchone()[0]) == racy


def test_key_values_as_docker_reads_them(monkeypatch):
    monkeypatch.setenv("FROM_ENV", "e")
    monkeypatch.delenv("UNSET_ARG", raising=False)
    assert key_values(["A=1", "B=", "FROM_ENV", "UNSET_ARG"], "build argument",
                      from_env=True) == {"A": "1", "B": "", "FROM_ENV": "e"}
    assert key_values(["L"], "label") == {"L": ""}
    with pytest.raises(ValueError, match="invalid label"):
        key_values(["=x"], "label")


def test_stamp_sees_every_change(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("1")
    first = context_stamp(str(tmp_path))
    assert context_stamp(str(tmp_path)) == first
    (tmp_path / "d" / "f").write_text("2")            # same size, new content
    second = context_stamp(str(tmp_path))
    assert second != first
    os.chmod(tmp_path / "d" / "f", 0o600)
    assert context_stamp(str(tmp_path)) != second
    (tmp_path / "d" / "l").symlink_to("f")
    third = context_stamp(str(tmp_path))
    (tmp_path / "d" / "l").unlink()
    (tmp_path / "d" / "l").symlink_to("g")
    assert context_stamp(str(tmp_path)) != third


def test_stamp_gives_up_on_huge_contexts(tmp_path):
    big = tmp_path / "big"
    big.mkdir()
    for i in range(MAX_ENTRIES + 1):
        (big / str(i)).touch()
    assert context_stamp(str(big)) is None
    assert context_stamp(str(tmp_path / "missing")) is None


def test_the_fast_path_imports_only_the_standard_library(tmp_path):
    # `portside build` of an unknown context: the memo answers None without loading the engine
    code = ("import sys; from portside.engine.builder.memo import replay; "
            f"assert replay(['--root', {str(tmp_path)!r}, 'build', {str(tmp_path)!r}]) is None; "
            "print(sorted(m for m in sys.modules if m.startswith('portside')))")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['portside', 'portside.engine', 'portside.engine.builder', " \
                          "'portside.engine.builder.memo']"
