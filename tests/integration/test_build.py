"""Dockerfile builds end to end: real overlayfs, real runc, images from the busybox fixture.

Files in built images are read straight from their snapshots (topmost layer first), or the image is
run with the builder's own RUN machinery to check USER and WORKDIR as a container sees them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from portside.engine.builder.progress import BuildStep, StepLog
from portside.engine.errors import BuildError, InvalidArgument, NotFound

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

EXAMPLE = Path("/work/shared/examples/mmdetection3d.Dockerfile")


def write_ctx(root: Path, files: dict[str, str | bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)
    return root


def image_path(engine, ref: str, path: str) -> Path | None:
    """The host path of ``path`` in the image's snapshots, None when absent or whited out."""
    rec = engine.image_store.get(ref)
    for lower in engine.image_store.rootfs_lowers(rec):
        candidate = lower / path.lstrip("/")
        if os.path.lexists(candidate):
            st = os.lstat(candidate)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                return None
            return candidate
    return None


def read(engine, ref: str, path: str) -> str:
    found = image_path(engine, ref, path)
    assert found is not None, f"{path} not in {ref}"
    return found.read_text()


def run_image(engine, ref: str, argv: list[str]) -> list[str]:
    """Run ``argv`` in the image as its config says (user, workdir, env); return the output."""
    from portside.engine.builder.run import RunRequest, Workspace, run_in_workspace

    rec = engine.image_store.get(ref)
    cfg = engine.image_store.config(rec)["config"]
    lines: list[str] = []
    with Workspace(engine.root / "build-cache" / "tmp", engine.image_store.rootfs_lowers(rec)) as ws:
        run_in_workspace(ws, RunRequest(args=argv, env=cfg.get("Env") or [],
                                        cwd=cfg.get("WorkingDir") or "/",
                                        user=cfg.get("User") or "", network="none"),
                         runtime_root=engine.root / "run" / "runtime", on_line=lines.append)
    return lines


def test_multistage_copy_from_and_concurrent_stages(engine, busybox_image, tmp_path):
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": """\
FROM busybox AS one
RUN echo from-one > /one.txt
FROM busybox AS two
RUN mkdir -p /out/sub && echo from-two > /out/sub/two.txt
FROM scratch AS unused
COPY nothing-here /
FROM busybox
COPY --from=one /one.txt /result/
COPY --from=two /out /result/
COPY --from=busybox /bin/busybox /copied-busybox
"""})
    events = []
    image = engine.builds.build(context=ctx, tags=["multi:1"], progress=events.append)
    assert read(engine, "multi:1", "/result/one.txt") == "from-one\n"
    # copying a directory copies its contents
    assert read(engine, "multi:1", "/result/sub/two.txt") == "from-two\n"
    assert image_path(engine, "multi:1", "/copied-busybox") is not None
    assert "multi:1" in " ".join(image.tags)
    # the unused stage (which would fail) was never built
    stages = {e.stage for e in events if isinstance(e, BuildStep)}
    assert stages == {"one", "two", "stage-3"}


def test_user_and_workdir_in_running_image(engine, busybox_image, tmp_path):
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": """\
FROM busybox
RUN mkdir -p /home && echo 'app:x:1234:2345::/home:/bin/sh' >> /etc/passwd
WORKDIR /srv
WORKDIR data
USER app
RUN id -u > /tmp/uid-at-build; pwd > /tmp/pwd-at-build
"""})
    engine.builds.build(context=ctx, tags=["uw:1"])
    assert read(engine, "uw:1", "/tmp/uid-at-build") == "1234\n"
    assert read(engine, "uw:1", "/tmp/pwd-at-build") == "/srv/data\n"
    cfg = engine.image_store.config(engine.image_store.get("uw:1"))["config"]
    assert cfg["User"] == "app" and cfg["WorkingDir"] == "/srv/data"
    assert run_image(engine, "uw:1", ["sh", "-c", "id -u; id -g; pwd"]) == ["1234", "2345",
                                                                            "/srv/data"]


def test_run_as_a_user_and_RUN_as_that_user_get_the_same_groups(engine, cli, busybox_image,
                                                                tmp_path):
    """One user lookup: `run -u app` and a RUN after `USER app` give the same ids and groups,
    the primary group first, as Docker does."""
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": """\
FROM busybox
RUN echo 'app:x:1234:2345::/:/bin/sh' >> /etc/passwd && echo 'appg:x:2345:' >> /etc/group \\
 && echo 'staff:x:50:app' >> /etc/group && echo 'video:x:44:other,app' >> /etc/group
RUN id > /id-root && mkdir -m 777 /ids
USER app
RUN id > /ids/app
"""})
    engine.builds.build(context=ctx, tags=["users:1"])
    at_build = read(engine, "users:1", "/ids/app")
    # (the kernel keeps a process's groups sorted)
    assert at_build == "uid=1234(app) gid=2345(appg) groups=44(video),50(staff),2345(appg)\n"
    assert cli("run", "--rm", "users:1", "id").out == at_build
    assert cli("run", "--rm", "-u", "app", "busybox", "id", check=False).returncode == 125
    root = "uid=0(root) gid=0(root) groups=0(root)\n"
    assert read(engine, "users:1", "/id-root") == root
    assert cli("run", "--rm", "-u", "root", "users:1", "id").out == root
    assert cli("run", "--rm", "-u", "1234:5678", "users:1", "id").out == \
        "uid=1234(app) gid=5678 groups=5678\n"
    cli("run", "-d", "--name", "ids", "users:1", "sleep", "30")
    try:
        assert cli("exec", "-u", "app", "ids", "id").out == at_build
    finally:
        cli("rm", "-f", "ids")


def test_onbuild_triggers_run_in_child(engine, busybox_image, tmp_path):
    parent = write_ctx(tmp_path / "parent", {"Dockerfile": """\
FROM busybox
ONBUILD COPY hello.txt /from-child-context.txt
ONBUILD RUN echo triggered > /trigger.txt
"""})
    engine.builds.build(context=parent, tags=["onb-parent:1"])
    pcfg = engine.image_store.config(engine.image_store.get("onb-parent:1"))["config"]
    assert pcfg["OnBuild"] == ["COPY hello.txt /from-child-context.txt",
                               "RUN echo triggered > /trigger.txt"]
    assert image_path(engine, "onb-parent:1", "/trigger.txt") is None
    child = write_ctx(tmp_path / "child", {"Dockerfile": "FROM onb-parent:1\nRUN cat /trigger.txt\n",
                                           "hello.txt": "hi from child\n"})
    engine.builds.build(context=child, tags=["onb-child:1"])
    assert read(engine, "onb-child:1", "/trigger.txt") == "triggered\n"
    assert read(engine, "onb-child:1", "/from-child-context.txt") == "hi from child\n"
    ccfg = engine.image_store.config(engine.image_store.get("onb-child:1"))["config"]
    assert not ccfg.get("OnBuild")


def test_dockerignore_effects(engine, busybox_image, tmp_path):
    ctx = write_ctx(tmp_path / "ctx", {
        "Dockerfile": "FROM busybox\nCOPY . /ctx/\n",
        ".dockerignore": "*.log\nsecret/\n!secret/public.txt\n**/*.tmp\n",
        "app.py": "print(1)\n", "debug.log": "x", "secret/key": "k", "secret/public.txt": "p",
        "deep/er/x.tmp": "t", "deep/er/keep.txt": "keep",
    })
    engine.builds.build(context=ctx, tags=["ign:1"])
    assert read(engine, "ign:1", "/ctx/app.py") == "print(1)\n"
    assert read(engine, "ign:1", "/ctx/secret/public.txt") == "p"
    assert read(engine, "ign:1", "/ctx/deep/er/keep.txt") == "keep"
    for gone in ("/ctx/debug.log", "/ctx/secret/key", "/ctx/deep/er/x.tmp"):
        assert image_path(engine, "ign:1", gone) is None, gone
    # the Dockerfile and .dockerignore are still sent
    assert image_path(engine, "ign:1", "/ctx/Dockerfile") is not None
    assert image_path(engine, "ign:1", "/ctx/.dockerignore") is not None


def test_copy_rules_chown_chmod_and_heredocs(engine, busybox_image, tmp_path):
    ctx = write_ctx(tmp_path / "ctx", {
        "Dockerfile": """\
FROM busybox
ENV NAME=world
COPY --chown=1000:1001 --chmod=640 a.txt b.txt /multi/
COPY a.txt /renamed.txt
COPY src/*.py /py/
COPY <<EOF /greeting.txt
hello $NAME
EOF
COPY <<'EOF' /raw.txt
hello $NAME
EOF
RUN <<EOF
echo heredoc-ran > /heredoc.txt
EOF
""", "a.txt": "A", "b.txt": "B", "src/x.py": "x", "src/y.py": "y", "src/z.txt": "z"})
    engine.builds.build(context=ctx, tags=["cp:1"])
    st = os.lstat(image_path(engine, "cp:1", "/multi/a.txt"))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o640)
    assert read(engine, "cp:1", "/multi/b.txt") == "B"
    assert read(engine, "cp:1", "/renamed.txt") == "A"
    assert read(engine, "cp:1", "/py/x.py") == "x" and read(engine, "cp:1", "/py/y.py") == "y"
    assert image_path(engine, "cp:1", "/py/z.txt") is None
    assert read(engine, "cp:1", "/greeting.txt") == "hello world\n"
    assert read(engine, "cp:1", "/raw.txt") == "hello $NAME\n"
    assert read(engine, "cp:1", "/heredoc.txt") == "heredoc-ran\n"
    bad = write_ctx(tmp_path / "bad", {"Dockerfile": "FROM busybox\nCOPY a b /nodir\n",
                                       "a": "", "b": ""})
    with pytest.raises(InvalidArgument, match="must be a directory and end with a /"):
        engine.builds.build(context=bad)


def test_copy_outside_context_refused(engine, busybox_image, tmp_path):
    (tmp_path / "secret").write_text("s")
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nCOPY ../secret /\n"})
    with pytest.raises(InvalidArgument, match="outside the build context"):
        engine.builds.build(context=ctx)
    os.symlink("/etc/shadow", ctx / "link")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY link /\n")
    with pytest.raises(InvalidArgument, match="outside the build context"):
        engine.builds.build(context=ctx)


def test_run_delete_makes_whiteout(engine, busybox_image, tmp_path):
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": """\
FROM busybox
RUN mkdir /d && echo 1 > /d/a && echo 2 > /d/b
RUN rm /bin/vi && rm -r /d && mkdir /d && echo 3 > /d/c
"""})
    engine.builds.build(context=ctx, tags=["wh:1"])
    assert image_path(engine, "busybox:latest", "/bin/vi") is not None
    assert image_path(engine, "wh:1", "/bin/vi") is None
    rec = engine.image_store.get("wh:1")
    with engine.content.open(rec.layers[-1]["digest"]) as blob:
        names = tarfile.open(fileobj=blob, mode="r:*").getnames()
    assert "bin/.wh.vi" in names
    assert "d/.wh..wh..opq" in names and "d/c" in names
    # only what changed is in the layer
    assert not any(n.startswith("etc") or n.startswith("usr") for n in names)


def test_failing_run_leaves_nothing(engine, busybox_image, tmp_path):
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": """\
FROM busybox
RUN echo first-line && echo 'it broke' >&2 && exit 3
"""})
    before = {i.id for i in engine.images.list(all=True)}
    logs = []
    with pytest.raises(BuildError) as info:
        engine.builds.build(context=ctx, tags=["broken:1"], progress=logs.append)
    err = info.value
    assert err.status == 3
    assert "exit code: 3" in str(err) and "it broke" in str(err)
    assert "[2/2] RUN" in (err.step or "")
    assert "it broke" in err.output_tail
    assert any(isinstance(e, StepLog) and e.line == "first-line" for e in logs)
    assert {i.id for i in engine.images.list(all=True)} == before
    assert not engine.images.exists("broken:1")
    tmp = engine.root / "build-cache" / "tmp"
    assert not tmp.exists() or not list(tmp.iterdir())
    state = engine.root / "run" / "runtime"
    assert not state.exists() or not [p for p in state.iterdir() if p.name.startswith("build-")]


def test_add_local_tar_is_confined(engine, busybox_image, tmp_path):
    good = io.BytesIO()
    with tarfile.open(fileobj=good, mode="w:gz") as tf:
        info = tarfile.TarInfo("pkg/file.txt")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"ok"))
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tf:
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"evil"))
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nADD good.tar.gz /opt/\n",
                                       "good.tar.gz": good.getvalue(),
                                       "evil.tar": evil.getvalue()})
    engine.builds.build(context=ctx, tags=["add:1"])
    assert read(engine, "add:1", "/opt/pkg/file.txt") == "ok"
    (ctx / "Dockerfile").write_text("FROM busybox\nADD evil.tar /opt/x/\n")
    with pytest.raises(InvalidArgument, match="escaped.txt"):
        engine.builds.build(context=ctx, tags=["add:2"])
    assert not list(tmp_path.rglob("escaped.txt"))


def test_add_url_with_checksum(engine, busybox_image, tmp_path, http_dir):
    served, base = http_dir
    (served / "tool.sh").write_bytes(b"#!/bin/sh\necho tool\n")
    good = "sha256:" + hashlib.sha256(b"#!/bin/sh\necho tool\n").hexdigest()
    ctx = write_ctx(tmp_path / "ctx", {
        "Dockerfile": f"FROM busybox\nADD --checksum={good} {base}/tool.sh /usr/bin/\n"})
    engine.builds.build(context=ctx, tags=["url:1"])
    path = image_path(engine, "url:1", "/usr/bin/tool.sh")
    assert path is not None and path.read_bytes() == b"#!/bin/sh\necho tool\n"
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    wrong = "sha256:" + "0" * 64
    (ctx / "Dockerfile").write_text(f"FROM busybox\nADD --checksum={wrong} {base}/tool.sh /x\n")
    with pytest.raises(InvalidArgument, match="checksum mismatch"):
        engine.builds.build(context=ctx, tags=["url:2"])
    (ctx / "Dockerfile").write_text(f"FROM busybox\nADD {base}/missing /x\n")
    with pytest.raises(NotFound, match="cannot download"):
        engine.builds.build(context=ctx)


def test_metadata_instructions_make_no_layers(engine, busybox_image, tmp_path):
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": """\
FROM busybox
ARG VERSION=1.0
ENV APP_VERSION=$VERSION
LABEL org.example.version=$VERSION
EXPOSE 8080 53/udp
VOLUME /data
SHELL ["/bin/sh", "-ec"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD true
MAINTAINER someone
ENTRYPOINT ["/bin/sh"]
CMD echo hi
"""})
    engine.builds.build(context=ctx, tags=["meta:1"], build_args={"VERSION": "2.0"},
                        labels={"extra": "yes"})
    rec = engine.image_store.get("meta:1")
    base = engine.image_store.get("busybox:latest")
    assert len(rec.layers) == len(base.layers)
    doc = engine.image_store.config(rec)
    cfg = doc["config"]
    assert "APP_VERSION=2.0" in cfg["Env"]
    # exactly BuildKit's labels: the provenance is in the manifest's annotations
    assert cfg["Labels"] == {"org.example.version": "2.0", "extra": "yes"}
    notes = engine.image_store.manifest(rec)["annotations"]
    assert notes["org.opencontainers.image.base.digest"] == base.manifest_digest
    assert notes["io.portside.build.args"] == '{"VERSION":"2.0"}'
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert cfg["Volumes"] == {"/data": {}}
    assert cfg["StopSignal"] == "SIGINT"
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000,
                                  "Retries": 2}
    assert cfg["Entrypoint"] == ["/bin/sh"]
    assert cfg["Cmd"] == ["/bin/sh", "-ec", "echo hi"]
    assert doc["author"] == "someone"
    new = doc["history"][-11:]
    assert all(h.get("empty_layer") for h in new)


def test_labels_are_the_base_images_and_the_dockerfiles_only(engine, busybox_image, tmp_path):
    # BuildKit's rule: the built image's Labels are the base image's, then LABEL's
    engine.builds.build("FROM busybox\nLABEL tier=base shared=from-base\n", tags=["lb:1"])
    engine.builds.build("FROM lb:1\nLABEL shared=child\nRUN true\n", tags=["lb:2"])
    for name, want in (("lb:1", {"tier": "base", "shared": "from-base"}),
                       ("lb:2", {"tier": "base", "shared": "child"})):
        assert engine.images.get(name).labels == want
    child = engine.image_store.get("lb:2")
    notes = engine.image_store.manifest(child)["annotations"]
    assert notes["org.opencontainers.image.base.name"] == "lb:1"
    assert notes["org.opencontainers.image.base.digest"] == \
        engine.image_store.get("lb:1").manifest_digest


def test_default_path_when_the_base_has_none(engine, busybox_image):
    # BuildKit: a base whose Env has no PATH gets the default one appended at FROM, and ENV
    # keeps it; ENV of a variable the base has replaces it in its place
    import io
    import tarfile

    default = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    empty = io.BytesIO()
    tarfile.open(fileobj=empty, mode="w").close()
    empty.seek(0)
    engine.images.import_(empty, "nopath:1", changes=["ENV LANG=C TZ=UTC"])
    assert engine.images.get("nopath:1").attrs["Config"]["Env"] == ["LANG=C", "TZ=UTC"]
    cases = {
        "FROM scratch\nENV A=1\n": [default, "A=1"],
        "FROM nopath:1\nENV A=1\n": ["LANG=C", "TZ=UTC", default, "A=1"],
        "FROM nopath:1\nENV PATH=/opt/bin:$PATH LANG=C.UTF-8\n":
            ["LANG=C.UTF-8", "TZ=UTC", "PATH=/opt/bin:" + default[5:]],
        "FROM nopath:1 AS a\nENV B=2\nFROM a\nENV C=3\n":
            ["LANG=C", "TZ=UTC", default, "B=2", "C=3"],
    }
    for dockerfile, env in cases.items():
        assert engine.builds.build(dockerfile).attrs["Config"]["Env"] == env, dockerfile


def test_target_and_build_args(engine, busybox_image, tmp_path):
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": """\
ARG BASE=busybox
FROM ${BASE} AS first
ARG MSG=default
ARG TARGETARCH
RUN echo "$MSG $TARGETARCH" > /msg
FROM first AS second
RUN exit 1
"""})
    engine.builds.build(context=ctx, tags=["tgt:1"], target="first",
                        build_args={"MSG": "given"})
    from portside.engine.image.oci import host_platform
    assert read(engine, "tgt:1", "/msg") == f"given {host_platform()['architecture']}\n"
    with pytest.raises(InvalidArgument, match="nope"):
        engine.builds.build(context=ctx, target="nope")


def test_cli_build_and_errors(cli, busybox_image, tmp_path):
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo built > /b\n"})
    proc = cli("build", "-t", "clib:1", "--progress", "plain", "--iidfile",
               str(tmp_path / "iid"), str(ctx))
    iid = (tmp_path / "iid").read_text()
    assert iid.startswith("sha256:") and "[2/2] RUN echo built > /b" in proc.err
    quiet = cli("build", "-q", "-t", "clib:1", str(ctx))
    assert quiet.out.strip() == iid                       # fully cached: the same image
    js = cli("build", "--progress", "json", str(ctx))
    events = [json.loads(line) for line in js.out.splitlines()]
    assert {"BuildStep", "StepCached", "StepDone", "BuildDone"} <= {e["type"] for e in events}
    # a parse error names the line, exit 125
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN true\nCOPY onlyone\n")
    bad = cli("build", str(ctx), check=False)
    assert bad.returncode == 125
    assert "Dockerfile:3:" in bad.err and "COPY requires at least two arguments" in bad.err
    # a failing RUN: the step, its exit code and its last output lines
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo last words; exit 7\n")
    fail = cli("build", "--progress", "plain", str(ctx), check=False)
    assert fail.returncode == 125
    assert "exit code: 7" in fail.err and "last words" in fail.err and "RUN echo" in fail.err
    # the context as a tar on stdin
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in (("Dockerfile", b"FROM busybox\nCOPY f /f\n"), ("f", b"tar")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    piped = cli("build", "-q", "-t", "fromtar:1", "-", input=buf.getvalue())
    assert piped.out.strip().startswith("sha256:")


def test_missing_base_image_example(cli, tmp_path):
    proc = cli("build", "-f", str(EXAMPLE), str(tmp_path), check=False)
    assert proc.returncode == 125
    errors = [line for line in proc.err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1
    assert "pytorch/pytorch:1.6.0-cuda10.1-cudnn7-devel" in errors[0]


def test_source_date_epoch_reproducible(tmp_path, busybox_image, engine):
    import subprocess
    import sys

    from portside.engine.api import Engine

    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": """\
FROM busybox
COPY f.txt /app/
RUN echo made > /app/made && rm /bin/vi
CMD ["cat", "/app/made"]
""", "f.txt": "content"})
    other_root = tmp_path / "other-root"
    portside = str(Path(sys.executable).parent / "portside")
    subprocess.run([portside, "image", "bootstrap", "busybox", "-t", "busybox:latest", "-q"],
                   env=dict(os.environ, PORTSIDE_ROOT=str(other_root)), check=True,
                   capture_output=True, stdin=subprocess.DEVNULL)
    other = Engine(root=other_root)
    try:
        assert (other.image_store.get("busybox:latest").id
                == engine.image_store.get("busybox:latest").id)
        a = engine.builds.build(context=ctx, source_date_epoch=1700000000)
        os.utime(ctx / "f.txt", (1800000000, 1800000000))     # later mtimes are clamped
        b = other.builds.build(context=ctx, source_date_epoch=1700000000)
        assert a.id == b.id
        doc = engine.image_store.config(engine.image_store.get(a.id))
        assert doc["created"] == "2023-11-14T22:13:20Z"
        assert doc["history"][-1]["created"] == "2023-11-14T22:13:20Z"
    finally:
        other.close()
