"""Reproducible builds, ``image diff``, the lock, provenance and commit recipes, for real.

Images come from busybox (bootstrapped from Debian's busybox-static, well under a second); the
second root gets the very same base through ``save``/``load``, as another machine would.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from portside.engine import cli
from portside.engine import lock as lockmod
from portside.engine.api import Engine
from portside.engine.errors import Conflict
from portside.engine.image.diff import diff_images

pytestmark = pytest.mark.integration

SDE = 1700000000
MULTI = """\
FROM busybox:latest AS tools
RUN mkdir -p /out && echo built > /out/tool && chmod 755 /out/tool
COPY data.txt /out/data.txt
FROM busybox:latest
ARG FLAVOUR=plain
COPY --from=tools /out /opt/tools
RUN echo "$FLAVOUR" > /flavour
LABEL purpose=test
"""
RANDOM = "FROM busybox:latest\nRUN echo same > /same\nRUN cat /proc/sys/kernel/random/uuid > /stamp\n"


def _run(engine, *argv: str) -> tuple[object, str]:
    cli._load_commands()
    import portside.engine.commands.repro  # noqa: F401  (until cli._load_commands lists it)

    out = io.StringIO()
    result = cli.run(list(argv), cli.Context(engine=engine, out=out, err=out))
    return result, out.getvalue()


@pytest.fixture
def roots(tmp_path):
    """Two fresh engine roots holding the same busybox image."""
    one, two = Engine(root=tmp_path / "one"), Engine(root=tmp_path / "two")
    one.images.bootstrap("busybox", tag="busybox:latest")
    buf = io.BytesIO()
    one.images.save(["busybox:latest"], buf)
    buf.seek(0)
    two.images.load(buf)
    yield one, two
    one.close()
    two.close()


@pytest.fixture
def context(tmp_path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "data.txt").write_text("measurements\n")
    return ctx


def test_multi_stage_build_is_bit_for_bit_in_two_roots(roots, context):
    one, two = roots
    a = one.builds.build(MULTI, context, tags=["exp:1"], source_date_epoch=SDE)
    b = two.builds.build(MULTI, context, tags=["exp:1"], source_date_epoch=SDE)
    assert a.id == b.id
    ra, rb = one.image_store.get("exp:1"), two.image_store.get("exp:1")
    assert ra.manifest_digest == rb.manifest_digest
    assert [l["diff_id"] for l in ra.layers] == [l["diff_id"] for l in rb.layers]
    # another build arg gives another image, and diff names the step
    c = one.builds.build(MULTI, context, tags=["exp:2"], source_date_epoch=SDE,
                         build_args={"FLAVOUR": "spicy"})
    assert c.id != a.id
    result, text = _run(one, "image", "diff", "exp:1", "exp:2")
    assert result == 1
    assert "/flavour" in text and 'RUN |1 FLAVOUR=spicy' in text
    assert _run(one, "image", "diff", "exp:1", a.id)[0] == 0


def test_diff_names_the_non_deterministic_step_and_file(roots, context):
    one, _ = roots
    a = one.builds.build(RANDOM, context, tags=["r:1"], source_date_epoch=SDE)
    b = one.builds.build(RANDOM, context, tags=["r:2"], source_date_epoch=SDE, no_cache=True)
    assert a.id != b.id
    d = diff_images(one.image_store, "r:1", "r:2")
    assert not d.identical and d.first_layer == 2 and d.shared_layers == 2
    assert "random/uuid > /stamp" in d.layer_a.created_by
    assert [(c.path, c.kind) for c in d.files] == [("/stamp", "changed")]
    assert d.files[0].fields == ("content",)
    result, text = _run(one, "image", "diff", "r:1", "r:2")
    assert result == 1
    assert "first differing layer: #2" in text and "C /stamp" in text


def test_provenance_labels_and_annotations(roots, context):
    one, _ = roots
    img = one.builds.build(MULTI, context, tags=["exp:1"], source_date_epoch=SDE,
                           labels={"io.portside.source": "notebook:a.ipynb#cell=3f2a"})
    base = one.image_store.get("busybox:latest")
    prov = lockmod.provenance(one.image_store, "exp:1")
    assert prov["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"
    assert prov["org.opencontainers.image.base.digest"] == base.manifest_digest
    assert prov["org.opencontainers.image.base.name"] == "busybox:latest"
    assert prov["io.portside.source"] == "notebook:a.ipynb#cell=3f2a"
    assert prov["io.portside.build.source-date-epoch"] == str(SDE)
    # all of it is in the manifest's annotations; the labels are BuildKit's (LABEL's alone),
    # so building the same text from elsewhere gives the same id
    assert prov.items() <= one.image_store.manifest(one.image_store.get("exp:1"))[
        "annotations"].items()
    assert img.labels == {"purpose": "test"}
    again = one.builds.build(MULTI, context, source_date_epoch=SDE)
    assert again.id == img.id
    history = one.image_store.config(one.image_store.get("exp:1"))["history"]
    assert any("FLAVOUR" in h["created_by"] for h in history)
    assert any(h["created_by"].startswith("LABEL purpose=test") for h in history)


def test_lock_pins_and_reports_drift(roots, context, tmp_path, monkeypatch):
    one, two = roots
    monkeypatch.delenv("PORTSIDE_LOCKED", raising=False)
    monkeypatch.chdir(tmp_path)
    img = one.builds.build(MULTI, context, tags=["exp:1"], source_date_epoch=SDE)
    _, text = _run(one, "lock", "exp:1", "--locked", "true")
    lock = lockmod.LockFile.read(tmp_path / "portside.lock")
    assert lock.locked and lock.source_date_epoch == SDE
    assert lock.images["exp:1"].id == img.id and "busybox:latest" in lock.images
    assert one.images.resolve_locked("exp:1") == img.id  # locked = true: names resolve

    # the same inputs in a fresh root: the locked build reproduces the pinned id
    rebuilt = two.images.build(MULTI, context, tags=["exp:1"])
    assert rebuilt.id == img.id

    with pytest.raises(Conflict, match=r"^portside.lock pins exp:1 to sha256:\w{12}…, but the "
                                       r"Dockerfile changed \(sha256:"):
        two.images.build(MULTI + "ENV X=1\n", context, tags=["exp:1"])
    with pytest.raises(Conflict, match="but build arg FLAVOUR changed \\(\\(unset\\) → x\\)"):
        two.images.build(MULTI, context, tags=["exp:1"], build_args={"FLAVOUR": "x"})
    (context / "data.txt").write_text("other measurements\n")
    with pytest.raises(Conflict, match="but the build context changed"):
        two.images.build(MULTI, context, tags=["exp:1"])
    assert two.image_store.resolve_id("exp:1") == img.id  # a failed locked build moves no tag

    # a re-tagged name is drift too
    one.images.tag("busybox:latest", "exp:1")
    with pytest.raises(Conflict, match="but exp:1 is now sha256:"):
        one.images.resolve_locked("exp:1")
    with pytest.raises(Conflict, match="does not pin other:1"):
        one.images.resolve_locked("other:1")
    # lock refuses to move a pin silently; --update does
    with pytest.raises(Conflict, match="use --update"):
        _run(one, "lock", "exp:1")
    _run(one, "lock", "exp:1", "--update")
    assert lockmod.LockFile.read(tmp_path / "portside.lock").images["exp:1"].id != img.id


def test_commit_recipe_rebuilds_the_same_files(tmp_path, monkeypatch, ipython):
    """Cells run in a container are recorded; the commit carries them; the Dockerfile made
    from them, built, has the same files as the commit (compared with image diff)."""
    from IPython.utils.capture import capture_output

    root = tmp_path / "root"
    monkeypatch.setenv("PORTSIDE_ROOT", str(root))
    monkeypatch.chdir(tmp_path)
    ip = ipython
    magics = ip.magics_manager.registry["ContainerMagics"]
    magics.close()  # the shared shell may hold an engine on another test's root
    engine = magics.engine
    engine.images.bootstrap("busybox", tag="busybox:latest")
    ctr = engine.containers.run("busybox:latest", ["sleep", "600"], detach=True, name="rcp")
    try:
        with capture_output():
            ip.run_cell("%%container exec rcp --shell\nmkdir -p /results\n"
                        "echo 42 > /results/answer\nchmod 600 /results/answer")
            ip.run_cell("%%container exec rcp --shell -w /results\nwc -c answer > size")
            ip.run_line_magic("container", "commit rcp recipe:1")
            ip.run_line_magic("container", f"dockerfile recipe:1 -o {tmp_path / 'Rebuild'}")
    finally:
        ctr.remove(force=True)
    try:
        text = (tmp_path / "Rebuild").read_text()
        base = engine.image_store.get("busybox:latest").manifest_digest
        assert f"FROM busybox@{base}" in text and text.count("RUN <<") == 2
        recipe = lockmod.provenance(engine.image_store, "recipe:1")["io.portside.recipe"]
        assert "echo 42" in recipe and '"kind":"shell"' in recipe
        engine.builds.build(text, None, tags=["rebuilt:1"], source_date_epoch=SDE)
        d = diff_images(engine.image_store, "recipe:1", "rebuilt:1", ignore=("mtime",))
        changed = {c.path for c in d.files}
        assert {"/results/answer", "/results/size"}.isdisjoint(changed), d.lines()
        assert engine.images.exists("rebuilt:1")
    finally:
        magics.close()


def test_cli_locked_flag_resolves_and_refuses_drift(cli, busybox_image, tmp_path):
    """`run --locked` and `build --locked` go through the lock from the terminal too."""
    ctx = tmp_path / "lockctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo one > /one\n")
    env = {"SOURCE_DATE_EPOCH": "1700000000", "PORTSIDE_LOCK": str(tmp_path / "portside.lock")}
    cli("build", "-q", "-t", "locked:1", str(ctx), env=env)
    cli("lock", "--file", str(tmp_path / "portside.lock"), "locked:1", env=env)
    assert cli("run", "--rm", "--locked", "locked:1", "cat", "/one", env=env).out.strip() == "one"
    # the Dockerfile drifts: a locked build refuses, naming what changed
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo two > /one\n")
    drift = cli("build", "--locked", "-q", "-t", "locked:1", str(ctx), env=env, check=False)
    assert drift.returncode == 125 and "Dockerfile changed" in drift.err
    # a name the lock does not pin is refused under --locked (the base busybox is pinned too)
    cli("tag", "busybox", "unpinned:1")
    assert cli("run", "--rm", "--locked", "busybox", "true", env=env).returncode == 0
    other = cli("run", "--rm", "--locked", "unpinned:1", "true", env=env, check=False)
    assert other.returncode == 125 and other.err.count("\n") == 1
