"""The build context: confinement, globbing, ignore rules and content hashing."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from portside.engine.builder.context import BuildContext
from portside.engine.errors import InvalidArgument, NotFound

pytestmark = pytest.mark.unit


@pytest.fixture
def ctx_dir(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "a.py").write_text("a")
    (root / "src" / "b.py").write_text("b")
    (root / "src" / "c.txt").write_text("c")
    (root / "src" / "pkg" / "d.py").write_text("d")
    (root / "logs").mkdir()
    (root / "logs" / "x.log").write_text("x")
    (root / "logs" / "keep.log").write_text("k")
    (root / "Dockerfile").write_text("FROM scratch\n")
    (root / ".dockerignore").write_text("logs\n!logs/keep.log\nDockerfile\n*.txt\n**/*.txt\n")
    return root


def test_glob_and_ignore(ctx_dir: Path) -> None:
    ctx = BuildContext.from_dir(ctx_dir)
    assert ctx.expand_sources(["src/*.py"]) == ["src/a.py", "src/b.py"]
    assert ctx.expand_sources(["src/*"]) == ["src/a.py", "src/b.py", "src/pkg"]  # c.txt ignored
    with pytest.raises(NotFound, match="src/c.txt"):
        ctx.expand_sources(["src/c.txt"])
    with pytest.raises(NotFound, match="nothing"):
        ctx.expand_sources(["nothing"])
    # the Dockerfile is always sent, even when a pattern excludes it
    assert ctx.expand_sources(["Dockerfile"]) == ["Dockerfile"]
    walked = [rel for rel, _ in ctx.walk("")]
    assert "logs/keep.log" in walked and "logs/x.log" not in walked
    assert "src/pkg/d.py" in walked and "src/c.txt" not in walked


def test_paths_outside_are_refused(ctx_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "outside").write_text("secret")
    os.symlink("/etc/passwd", ctx_dir / "abs-link")
    os.symlink("../outside", ctx_dir / "rel-link")
    os.symlink("src/a.py", ctx_dir / "ok-link")
    ctx = BuildContext.from_dir(ctx_dir)
    with pytest.raises(InvalidArgument, match="outside the build context"):
        ctx.expand_sources(["../outside"])
    with pytest.raises(InvalidArgument, match="outside the build context"):
        ctx.resolve("abs-link")
    with pytest.raises(InvalidArgument, match="outside the build context"):
        ctx.resolve("rel-link")
    assert ctx.resolve("ok-link") == ctx_dir.resolve() / "src" / "a.py"
    # ".." inside the context that stays inside is fine
    assert ctx.resolve("src/pkg/../a.py") == ctx_dir.resolve() / "src" / "a.py"


def test_content_hash_ignores_mtime_not_content(ctx_dir: Path) -> None:
    ctx = BuildContext.from_dir(ctx_dir)
    first = ctx.content_hash(["src"])
    os.utime(ctx_dir / "src" / "a.py", (1, 1))
    assert BuildContext.from_dir(ctx_dir).content_hash(["src"]) == first
    (ctx_dir / "src" / "a.py").write_text("changed")
    assert BuildContext.from_dir(ctx_dir).content_hash(["src"]) != first
    # an ignored file does not count
    before = BuildContext.from_dir(ctx_dir).content_hash(["src"])
    (ctx_dir / "src" / "c.txt").write_text("ignored anyway")
    assert BuildContext.from_dir(ctx_dir).content_hash(["src"]) == before
    os.chmod(ctx_dir / "src" / "b.py", 0o600)
    assert BuildContext.from_dir(ctx_dir).content_hash(["src"]) != before


def test_from_tar(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in (("Dockerfile", b"FROM scratch\n"), ("app/main.py", b"print(1)\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    buf.seek(0)
    ctx = BuildContext.from_tar(buf, tmp_path / "tmp")
    try:
        assert ctx.read_text("Dockerfile") == "FROM scratch\n"
        assert ctx.expand_sources(["app/*.py"]) == ["app/main.py"]
        root = ctx.root
        assert root is not None and root.is_dir()
    finally:
        ctx.close()
    assert not root.exists()


def test_empty_context() -> None:
    ctx = BuildContext.empty()
    with pytest.raises(NotFound, match="no build context"):
        ctx.resolve("x")
