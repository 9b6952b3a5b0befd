"""The build memo's command-line reading and context fingerprint (no engine needed)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from portside.engine.builder.memo import MAX_ENTRIES, _parse, context_stamp, key_values

pytestmark = pytest.mark.unit


def test_reads_the_build_options_it_mirrors():
    req = _parse(["--root", "/r", "build", "-q", "-t", "a:1", "--tag=b:2", "-f", "Df",
                  "--build-arg", "X=1", "--label=l=v", "--target", "t", "--iidfile", "i",
                  "--progress=json", "--platform", "linux/amd64", "ctx"])
    assert req is not None
    assert (req.root, req.path, req.tags, req.file, req.build_args, req.labels, req.target,
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
