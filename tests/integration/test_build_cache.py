"""The build cache: hits and misses after edits, across processes, --no-cache, builder prune."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from portside.engine.builder.progress import BuildStep, StepCached

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

DOCKERFILE = """\
FROM busybox
RUN echo one > /one
COPY a.txt /a.txt
RUN cat /a.txt > /b
ENV X=1
"""


def make_ctx(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "a.txt").write_text("first\n")
    (ctx / "unrelated.txt").write_text("u\n")
    return ctx


def cached_steps(engine, ctx: Path, **kw) -> tuple[list[str], object]:
    """Build; return the texts of the steps that came from the cache, and the image."""
    events: list = []
    image = engine.builds.build(context=ctx, progress=events.append, **kw)
    texts = {e.id: e.text for e in events if isinstance(e, BuildStep)}
    return [texts[e.id] for e in events if isinstance(e, StepCached)], image


def test_hits_and_misses_after_edits(engine, busybox_image, tmp_path):
    ctx = make_ctx(tmp_path)
    first, image1 = cached_steps(engine, ctx)
    assert first == []
    again, image2 = cached_steps(engine, ctx)
    # metadata-only steps (ENV) run nothing and are never reported as cached
    assert again == ["RUN echo one > /one", "COPY a.txt /a.txt", "RUN cat /a.txt > /b"]
    assert image2.id == image1.id                 # a fully cached build is the same image
    # touching a file (mtime only) or changing an unrelated file keeps the cache
    os.utime(ctx / "a.txt", (1, 1))
    (ctx / "unrelated.txt").write_text("changed\n")
    assert len(cached_steps(engine, ctx)[0]) == 3
    # editing the copied file invalidates that COPY and what follows, nothing before
    (ctx / "a.txt").write_text("second\n")
    edited, image3 = cached_steps(engine, ctx)
    assert edited == ["RUN echo one > /one"]
    assert image3.id != image1.id
    # editing back finds the old results again
    (ctx / "a.txt").write_text("first\n")
    back, image4 = cached_steps(engine, ctx)
    assert len(back) == 3 and image4.id == image1.id
    # changing the Dockerfile in the middle keeps the steps before the change
    (ctx / "Dockerfile").write_text(DOCKERFILE.replace("cat /a.txt > /b", "cat /a.txt > /c"))
    assert cached_steps(engine, ctx)[0] == ["RUN echo one > /one", "COPY a.txt /a.txt"]


def test_build_args_in_key(engine, busybox_image, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo a > /a\nARG V=1\nRUN echo $V > /v\n")
    cached_steps(engine, ctx)
    hits, _ = cached_steps(engine, ctx, build_args={"V": "2"})
    assert hits == ["RUN echo a > /a"]


def test_no_cache_rebuilds_everything(engine, busybox_image, tmp_path):
    ctx = make_ctx(tmp_path)
    cached_steps(engine, ctx)
    hits, _ = cached_steps(engine, ctx, no_cache=True)
    assert hits == []


def test_cache_across_processes(cli, busybox_image, tmp_path):
    ctx = make_ctx(tmp_path)
    first = cli("build", "--progress", "plain", "-t", "x:1", str(ctx))
    assert "CACHED" not in first.err
    second = cli("build", "--progress", "plain", "-t", "x:1", str(ctx))
    assert second.err.count("CACHED") == 3
    nocache = cli("build", "--progress", "plain", "--no-cache", str(ctx))
    assert "CACHED" not in nocache.err


def test_cached_layers_survive_rmi_and_prune_frees_them(engine, busybox_image, tmp_path):
    ctx = make_ctx(tmp_path)
    _, image = cached_steps(engine, ctx, tags=["keep:1"])
    base = set(engine.image_store.get("busybox:latest").layers[-1]["chain_id"] for _ in [0])
    built = {l["chain_id"] for l in engine.image_store.get(image.id).layers} - base
    engine.images.remove("keep:1")
    # the image is gone but the cache keeps its layers alive
    assert all(engine.snapshots.exists(c) for c in built)
    hits, again = cached_steps(engine, ctx, tags=["keep:1"])
    assert len(hits) == 3 and again.id == image.id
    # dangling-only prune keeps entries whose results an image uses
    result = engine.builds.prune()
    assert engine.builds.cache_entries()
    engine.images.remove("keep:1")
    result = engine.builds.prune(all=True)
    assert result["CachesDeleted"] and not engine.builds.cache_entries()
    assert not any(engine.snapshots.exists(c) for c in built)
    assert cached_steps(engine, ctx)[0] == []


def test_builder_prune_cli(cli, busybox_image, tmp_path):
    ctx = make_ctx(tmp_path)
    cli("build", "-q", str(ctx))
    out = cli("builder", "prune", "-a", "-f").out
    assert "Deleted build cache objects:" in out and "Total reclaimed space:" in out
    rebuilt = cli("build", "--progress", "plain", str(ctx))
    assert "CACHED" not in rebuilt.err
