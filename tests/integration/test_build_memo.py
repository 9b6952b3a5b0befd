"""The build memo: a rebuild with nothing changed is answered before the builder is imported,
and only then (an edited file, a moved base tag, a removed image, a prune, other options, a lock
or an ADD of a URL without checksum all take the normal path)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from portside.engine.builder.memo import replay

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

DOCKERFILE = """\
FROM busybox:latest
ARG GREETING=hi
COPY a.txt /app/a.txt
RUN cat /app/a.txt > /app/b.txt
ENV APP=memo
"""


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "a.txt").write_text("hello\n")
    (ctx / "sub" / "ignored.txt").write_text("x\n")
    (ctx / ".dockerignore").write_text("sub\n")
    return ctx


def fast(root: Path, *args: str) -> tuple[int | None, str, str]:
    """The fast path, in this process: (exit status or None, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = replay(["--root", str(root), "build", *args], out, err)
    return code, out.getvalue(), err.getvalue()


def remembered(cli, ctx: Path, *args: str) -> str:
    """Build through the full path (the memo remembers it)."""
    return cli("build", "-q", *args, str(ctx), env={"PORTSIDE_BUILD_MEMO": "0"}).out.strip()


def test_rebuild_comes_from_the_memo(cli, busybox_image, ctx, tmp_path):
    full = {"PORTSIDE_BUILD_MEMO": "0"}
    first = cli("build", "-q", "-t", "memo:1", str(ctx)).out.strip()
    # what the full path shows for the rebuild: every step from the cache
    plain = cli("build", "--progress", "plain", "-t", "memo:1", str(ctx), env=full)
    assert plain.err.count("CACHED") == 2 and f"writing image {first}" in plain.err
    code, out, _ = fast(cli.root, "-q", "-t", "memo:1", str(ctx))
    assert (code, out) == (0, first + "\n")
    # the program answers the same, in every view, with the same lines as the full path
    assert cli("build", "-q", "-t", "memo:1", str(ctx)).out.strip() == first
    again = cli("build", "--progress", "plain", "-t", "memo:1", str(ctx))

    def steps(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("build finished")]

    assert steps(again.err) == steps(plain.err)
    as_json = cli("build", "--progress=json", "-t", "memo:1", str(ctx), env=full).out
    code, out, _ = fast(cli.root, "--progress=json", "-t", "memo:1", str(ctx))

    def no_times(text: str) -> list[dict]:
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in text.splitlines()]

    assert code == 0 and no_times(out) == no_times(as_json)
    iid = tmp_path / "iid"
    assert fast(cli.root, "-q", "-t", "memo:1", "--iidfile", str(iid), str(ctx))[0] == 0
    assert iid.read_text() == first
    # the memo is an answer, not a second store: the image is what `images` shows
    assert cli("inspect", "-f", "{{.Id}}", "memo:1").out.strip() == first
    assert fast(cli.root, "-q", "-t", "memo:1", str(ctx))[0] == 0
    os.environ["PORTSIDE_BUILD_MEMO"] = "0"
    try:
        assert fast(cli.root, "-q", "-t", "memo:1", str(ctx))[0] is None
    finally:
        del os.environ["PORTSIDE_BUILD_MEMO"]


def test_anything_changed_takes_the_normal_path(cli, busybox_image, ctx, monkeypatch):
    args = ("-q", "-t", "memo:2", str(ctx))
    image = remembered(cli, ctx, "-t", "memo:2")
    assert fast(cli.root, *args)[:2] == (0, image + "\n")
    # other options, or options the fast path does not mirror
    assert fast(cli.root, "-q", "-t", "memo:3", str(ctx))[0] is None
    assert fast(cli.root, "-q", "--build-arg", "GREETING=yo", "-t", "memo:2", str(ctx))[0] is None
    assert fast(cli.root, "-q", "--no-cache", "-t", "memo:2", str(ctx))[0] is None
    assert fast(cli.root, "-q", "--locked", "-t", "memo:2", str(ctx))[0] is None
    monkeypatch.setenv("PORTSIDE_LOCKED", "1")
    assert fast(cli.root, *args)[0] is None
    monkeypatch.delenv("PORTSIDE_LOCKED")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert fast(cli.root, *args)[0] is None
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert fast(cli.root, *args)[0] == 0
    # any file of the context, even an ignored one, even only its times: the normal path decides
    os.utime(ctx / "sub" / "ignored.txt", (1, 1))
    assert fast(cli.root, *args)[0] is None
    assert remembered(cli, ctx, "-t", "memo:2") == image  # the full path: the same image
    (ctx / "a.txt").write_text("edited\n")
    assert fast(cli.root, *args)[0] is None
    edited = remembered(cli, ctx, "-t", "memo:2")
    assert edited != image and fast(cli.root, *args)[1] == edited + "\n"
    # the base name moved to another image
    cli("image", "bootstrap", "busybox", "-t", "other:1", "-q")
    cli("commit", cli("create", "busybox:latest", "true").out.strip(), "busybox:latest")
    assert fast(cli.root, *args)[0] is None
    rebuilt = remembered(cli, ctx, "-t", "memo:2")
    assert rebuilt != edited and fast(cli.root, *args)[0] == 0
    # the tag moved, the image went, the cache was pruned
    cli("tag", "other:1", "memo:2")
    assert fast(cli.root, *args)[0] is None
    remembered(cli, ctx, "-t", "memo:2")
    cli("rmi", "-f", "memo:2")
    assert fast(cli.root, *args)[0] is None
    remembered(cli, ctx, "-t", "memo:2")
    cli("builder", "prune", "-f")
    assert fast(cli.root, *args)[0] is None
    cli("rm", "-f", *cli("ps", "-aq").out.split())


def test_url_without_checksum_is_never_remembered(cli, busybox_image, tmp_path, http_dir):
    served, base = http_dir
    (served / "tool.sh").write_text("echo tool\n")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM busybox:latest\nADD {base}/tool.sh /tool.sh\n")
    remembered(cli, ctx, "-t", "url:1")
    # the server may serve something else next time: only the full path can tell
    assert fast(cli.root, "-q", "-t", "url:1", str(ctx))[0] is None
