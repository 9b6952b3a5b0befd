"""The Docker engine through the model API, against a real dockerd (Debian's docker.io).

Every call here is one a front makes on any engine (``engine.containers.run``,
``container.exec_run``, ``engine.images.pull``…); the answers are checked against what Docker's
own CLI says about the same objects, on the same daemon.
"""

from __future__ import annotations

import io
import json
import socket
import tarfile
import time

import pytest

from dockerd_fixture import BUSYBOX
from portside.engine import errors as E

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(docker_ctx):
    eng = docker_ctx.engine()
    yield eng
    eng.close()


def wait_for(predicate, timeout: float = 20, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# ---------------------------------------------------------------------------- containers
def test_run_returns_the_output_and_a_failure_its_status(engine):
    assert engine.containers.run(BUSYBOX, "echo hello", remove=True) == b"hello\n"
    with pytest.raises(E.ContainerExit) as info:
        engine.containers.run(BUSYBOX, ["sh", "-c", "echo bad >&2; exit 3"], remove=True,
                              stderr=True)
    assert info.value.exit_code == 3 and "bad" in str(info.value)
    assert engine.containers.list(all=True) == []


def test_missing_or_unrunnable_commands_have_dockers_exit_codes(engine, docker_ctx):
    with pytest.raises(E.CommandNotFound) as info:
        engine.containers.run(BUSYBOX, "nope", remove=True)
    assert info.value.exit_code == 127 and 'exec: "nope": executable file not found' in \
        str(info.value)
    with pytest.raises(E.CannotInvoke) as info:
        engine.containers.run(BUSYBOX, "/etc", remove=True)
    assert info.value.exit_code == 126
    # Docker's own CLI says the same about the same daemon
    assert docker_ctx.dockerd.docker("run", "--rm", BUSYBOX, "nope",
                                     check=False).returncode == 127
    assert docker_ctx.dockerd.docker("run", "--rm", BUSYBOX, "/etc",
                                     check=False).returncode == 126


def test_container_verbs_and_their_documents(engine, docker_ctx):
    ctr = engine.containers.create(BUSYBOX, ["sh", "-c", "echo out; echo err >&2; "
                                             "exec sleep 600"], name="verbs",
                                   labels={"suite": "api"})
    assert ctr.name == "verbs" and ctr.status == "created" and ctr.labels == {"suite": "api"}
    assert ctr.attrs == json.loads(docker_ctx.dockerd.docker("inspect", "verbs").out)[0]
    ctr.start()
    assert ctr.status == "running"
    wait_for(lambda: sorted(ctr.logs().splitlines()) == [b"err", b"out"],
             what="both lines logged")
    assert sorted(ctr.logs(stream=True)) == [("stderr", b"err\n"), ("stdout", b"out\n")]
    assert ctr.logs(stderr=False) == b"out\n"
    assert ctr.top()["Titles"][:2] == ["UID", "PID"]
    assert any("sleep 600" in " ".join(p) for p in ctr.top()["Processes"])
    stats = ctr.stats()
    assert stats["pids_stats"]["current"] >= 1 and stats["memory_stats"]["usage"] > 0
    ctr.pause()
    assert ctr.status == "paused"
    with pytest.raises(E.IncorrectState, match="is paused"):
        ctr.exec_run("true")
    ctr.unpause()
    ctr.rename("verbs2")
    assert ctr.name == "verbs2" and engine.containers.get("verbs2") == ctr
    assert [c.name for c in engine.containers.list(filters={"label": ["suite=api"]})] == \
        ["verbs2"]
    ctr.stop(timeout=1)
    assert ctr.wait() == {"StatusCode": 137, "Error": None}
    assert ctr.status == "exited" and ctr.attrs["State"]["ExitCode"] == 137
    with pytest.raises(E.IncorrectState, match="is not running"):
        ctr.exec_run("true")
    pruned = engine.containers.prune()
    assert pruned["ContainersDeleted"] == [ctr.id]
    with pytest.raises(E.NotFound, match="No such container: verbs2"):
        engine.containers.get("verbs2")


def test_name_conflicts_and_missing_objects(engine):
    ctr = engine.containers.create(BUSYBOX, "true", name="taken")
    try:
        with pytest.raises(E.Conflict, match='The container name "/taken" is already in use'):
            engine.containers.create(BUSYBOX, "true", name="taken")
    finally:
        ctr.remove()
    with pytest.raises(E.NotFound, match="No such image: localhost:1/absent:1"):
        engine.images.get("localhost:1/absent:1")
    with pytest.raises(E.NotFound):
        engine.volumes.get("absent")


def test_exec_run_and_popen(engine):
    ctr = engine.containers.run(BUSYBOX, "sleep 600", detach=True, name="ex")
    try:
        assert ctr.exec_run("sh -c 'echo a; exit 3'") == (3, b"a\n")
        assert ctr.exec_run("sh -c 'echo b >&2'") == (0, b"b\n")
        assert ctr.exec_run("sh -c 'echo b >&2'", stderr=False) == (0, b"")
        assert ctr.exec_run(["cat", "/etc/hostname"])[1].strip() == ctr.id[:12].encode()
        code, out = ctr.exec_run("nope")
        assert code == 126 and b"executable file not found" in out  # dockerd 20.10's code
        assert ctr.exec_run("id -u", user="1234") == (0, b"1234\n")
        assert ctr.exec_run("pwd", workdir="/tmp") == (0, b"/tmp\n")
        assert ctr.exec_run("sh -c 'echo $A'", environment={"A": "x y"}) == (0, b"x y\n")
        import threading

        # the model API's ExecStream (what the notebook's agent is driven through)
        _none, proc = ctr.exec_run(["sh", "-c", "cat; echo done >&2"], stdin=True,
                                   socket=True)
        assert _none is None and proc.poll() is None
        got: dict = {}
        readers = [threading.Thread(target=lambda k=k: got.__setitem__(k, getattr(proc, k)
                                                                         .read()))
                   for k in ("stdout", "stderr")]
        for t in readers:
            t.start()
        proc.stdin.write(b"x" * 300_000)  # more than a socket buffer: streamed both ways
        proc.stdin.close()
        for t in readers:
            t.join(30)
        assert (len(got["stdout"]), got["stderr"], proc.wait(20)) == (300_000, b"done\n", 0)
        proc.close()
        _none, slow = ctr.exec_run(["sleep", "600"], socket=True)
        with pytest.raises(TimeoutError):
            slow.wait(0.2)
        slow.kill()
        assert slow.wait(20) == 137
        slow.close()
    finally:
        ctr.remove(force=True)


def test_files_in_and_out(engine, tmp_path):
    ctr = engine.containers.run(BUSYBOX, "sleep 600", detach=True, name="files")
    try:
        data = io.BytesIO()
        with tarfile.open(fileobj=data, mode="w") as tar:
            info = tarfile.TarInfo("hello.txt")
            info.size = 6
            info.mode = 0o640
            tar.addfile(info, io.BytesIO(b"hello\n"))
        assert ctr.put_archive("/tmp", data.getvalue())
        assert ctr.exec_run("cat /tmp/hello.txt") == (0, b"hello\n")
        out = io.BytesIO()
        stat = ctr.get_archive("/tmp/hello.txt", out)
        assert (stat["name"], stat["size"], stat["mode"] & 0o777) == ("hello.txt", 6, 0o640)
        with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
            assert tar.extractfile("hello.txt").read() == b"hello\n"
        changes = {(c["Kind"], c["Path"]) for c in ctr.diff()}
        assert (1, "/tmp/hello.txt") in changes and (0, "/tmp") in changes
        image = ctr.commit("committed", "1", message="with hello", changes=["ENV A=b"])
        assert image.tags == ["committed:1"] and "A=b" in image.attrs["Config"]["Env"]
        assert engine.containers.run("committed:1", "cat /tmp/hello.txt", remove=True) == \
            b"hello\n"
        exported = io.BytesIO()
        ctr.export(exported)
        with tarfile.open(fileobj=io.BytesIO(exported.getvalue())) as tar:
            assert "tmp/hello.txt" in tar.getnames() and "bin/busybox" in tar.getnames()
        with pytest.raises(E.NotFound):
            ctr.get_archive("/nonexistent", io.BytesIO())
    finally:
        ctr.remove(force=True)
    engine.images.remove("committed:1")


def test_a_taken_port_is_a_conflict(engine):
    net = engine.networks.create("pstest-ports", subnet="10.251.7.0/24",
                                 labels={"suite": "api"})
    try:
        assert engine.networks.get("pstest-ports").attrs["IPAM"]["Config"][0]["Subnet"] == \
            "10.251.7.0/24"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        first = engine.containers.create(BUSYBOX, "sleep 600", network="pstest-ports",
                                         name="port1")
        second = None
        try:
            # -p 127.0.0.1:PORT:80 as the CLI makes it (Docker's HostConfig)
            hc = {"NetworkMode": "pstest-ports",
                  "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}}
            cfg = {"Image": BUSYBOX, "Cmd": ["sleep", "600"], "ExposedPorts": {"80/tcp": {}}}
            first.remove(force=True)
            first = engine.containers.create_from(cfg, hc, name="port1")
            first.start()
            assert first.ports() == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
            second = engine.containers.create_from(cfg, hc, name="port2")
            with pytest.raises(E.Conflict, match="port is already allocated"):
                second.start()
        finally:
            for ctr in (first, second):
                if ctr is not None:
                    ctr.remove(force=True)
    finally:
        net.remove()


def test_a_foreground_run_feeds_stdin_and_the_caller_may_detach(engine):
    """``run_from`` over dockerd's attach stream: standard input reaches the container; with a
    terminal (dockerd reads the detach keys only then, as for Docker's CLI) the detach keys
    leave it running and return None; ``attach`` then follows it to its end."""
    import contextlib
    import os
    import threading

    cfg = {"Image": BUSYBOX, "Cmd": ["sh", "-c", "read line; echo got $line; read more; "
                                     "echo then $more; exit 3"],
           "OpenStdin": True, "AttachStdin": True, "Tty": True}
    r, w = os.pipe()
    out = io.BytesIO()
    result: dict = {}
    try:
        with os.fdopen(r, "rb", buffering=0) as stdin, \
                os.fdopen(w, "wb", buffering=0) as feed:
            runner = threading.Thread(target=lambda: result.setdefault(
                "code", engine.containers.run_from(cfg, {}, name="fed", stdin=stdin,
                                                   stdout=out, stderr=io.BytesIO(),
                                                   tty_size=(24, 80))))
            runner.start()
            feed.write(b"one\n")
            wait_for(lambda: b"got one" in out.getvalue(), what="the first line echoed")
            feed.write(b"\x10\x11")  # ctrl-p ctrl-q: Docker's detach keys
            runner.join(20)
            assert not runner.is_alive() and result["code"] is None
        ctr = engine.containers.get("fed")
        assert ctr.status == "running"
        assert ctr.exec_run("stty -F /proc/1/fd/0 size") == (0, b"24 80\n")  # resized
        # (dockerd ends a terminal's attach stream when its input ends, as for Docker's CLI:
        # the input stays open until the container has answered)
        again = io.BytesIO()
        r, w = os.pipe()
        with os.fdopen(r, "rb", buffering=0) as stdin, \
                os.fdopen(w, "wb", buffering=0) as feed:
            attached = threading.Thread(target=lambda: result.__setitem__(
                "again", ctr.attach(stdin, again, io.BytesIO())))
            attached.start()
            feed.write(b"two\n")
            attached.join(20)
        assert result["again"] == 3 and b"then two" in again.getvalue()
    finally:
        with contextlib.suppress(E.NotFound):
            engine.containers.get("fed").remove(force=True)


# ---------------------------------------------------------------------------- images
def test_image_listing_tags_history_and_removal(engine, docker_ctx):
    image = engine.images.get(BUSYBOX)
    assert image.tags == [BUSYBOX]
    assert image.attrs == json.loads(docker_ctx.dockerd.docker("image", "inspect",
                                                                BUSYBOX).out)[0]
    engine.images.tag(BUSYBOX, "retagged:1")
    listed = {t for i in engine.images.list() for t in i.tags}
    assert {"retagged:1", BUSYBOX} <= listed
    from portside.engine.listing import image_rows

    rows = image_rows(engine.images.list(filters={"reference": ["retagged"]}))
    assert [(r["Repository"], r["Tag"], r["ID"]) for r in rows] == \
        [("retagged", "1", image.short_id)]
    history = engine.images.history("retagged:1")
    assert history[0]["ID"] == image.id and history[0]["Size"] > 0
    assert engine.images.remove("retagged:1") == [{"Untagged": "retagged:1"}]
    with pytest.raises(E.Conflict, match="must be forced|image is being used"):
        ctr = engine.containers.create(BUSYBOX, "true", name="user")
        try:
            engine.images.remove(image.id)
        finally:
            ctr.remove()


def test_save_load_and_import(engine, tmp_path):
    archive = io.BytesIO()
    engine.images.save([BUSYBOX], archive)
    with tarfile.open(fileobj=io.BytesIO(archive.getvalue())) as tar:
        assert "manifest.json" in tar.getnames()
    engine.images.tag(BUSYBOX, "copy:1")
    out = io.BytesIO()
    engine.images.save(["copy:1"], out)
    engine.images.remove("copy:1")
    events: list = []
    loaded = engine.images.load(io.BytesIO(out.getvalue()), progress=events.append)
    assert [(img.id, names) for img, names in loaded] == \
        [(engine.images.get(BUSYBOX).id, ["copy:1"])]
    assert any("Loaded image: copy:1" in getattr(e, "text", "") for e in events)
    engine.images.remove("copy:1")
    with pytest.raises(E.InvalidArgument, match="load:"):
        engine.images.load(io.BytesIO(b"not a tar archive" * 100))
    rootfs = io.BytesIO()
    with tarfile.open(fileobj=rootfs, mode="w") as tar:
        info = tarfile.TarInfo("greeting")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    imported = engine.images.import_(io.BytesIO(rootfs.getvalue()), "imported:1",
                                     changes=["LABEL from=import"], message="a rootfs")
    assert imported.tags == ["imported:1"] and imported.labels == {"from": "import"}
    assert engine.images.history("imported:1")[0]["Comment"] == "a rootfs"
    engine.images.remove("imported:1")


def test_pull_and_push_through_a_local_registry(engine, tmp_path):
    from integration.registry_fixture import Registry

    registry = Registry(tmp_path / "registry")
    registry.start()
    try:
        name = f"{registry.host}/tests/busybox:1"  # dockerd trusts 127.0.0.0/8 without TLS
        engine.images.tag(BUSYBOX, name)
        pushed: list = []
        digest = engine.images.push(name, progress=pushed.append)
        assert digest.startswith("sha256:")
        assert any(getattr(e, "phase", "") in ("Pushed", "Layer already exists")
                   for e in pushed)
        engine.images.remove(name)
        pulled: list = []
        image = engine.images.pull(name, progress=pulled.append)
        assert name in image.tags and image.id == engine.images.get(BUSYBOX).id
        assert any(f"{registry.host}/tests/busybox@{digest}" == d
                   for d in image.attrs["RepoDigests"])
        assert any(getattr(e, "text", "").startswith("Digest: ") for e in pulled
                   if not hasattr(e, "phase"))
        with pytest.raises(E.NotFound):
            engine.images.pull(f"{registry.host}/tests/absent:1")
        # every tag of the repository (pull -a)
        other = f"{registry.host}/tests/busybox:2"
        engine.images.tag(BUSYBOX, other)
        engine.images.push(other)
        for ref in (name, other):
            engine.images.remove(ref)
        with pytest.raises(E.InvalidArgument, match="tag can't be used with --all-tags"):
            engine.images.pull(name, all_tags=True)
        pulled_all = engine.images.pull(f"{registry.host}/tests/busybox", all_tags=True)
        assert sorted(t for i in pulled_all for t in i.tags) == [name, other]
        engine.images.remove(other)
        engine.images.remove(name)
    finally:
        registry.stop()


def test_build_multi_stage_with_progress_events(engine, tmp_path):
    from portside.engine.builder import progress as B

    (tmp_path / "app.txt").write_text("from the context\n")
    (tmp_path / "secret.txt").write_text("never sent\n")
    (tmp_path / ".dockerignore").write_text("secret.txt\n")
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox AS build\nCOPY app.txt /src/\nRUN cat /src/app.txt > /out && "
        "ls / > /listing\n"
        "FROM busybox\nCOPY --from=build /out /listing /\nLABEL stage=final\n"
        "CMD [\"cat\", \"/out\"]\n")
    events: list = []
    image = engine.images.build(context=str(tmp_path), tags=["built:1", "built:latest"],
                                progress=events.append)
    assert set(image.tags) == {"built:1", "built:latest"} and image.labels == {"stage": "final"}
    assert engine.containers.run("built:1", remove=True) == b"from the context\n"
    assert b"secret" not in engine.containers.run("built:1", "cat /listing", remove=True)
    steps = [e for e in events if isinstance(e, B.BuildStep)]
    assert [(s.n, s.m, s.stage) for s in steps][:2] == [(1, 7, "build"), (2, 7, "build")]
    assert isinstance(events[-1], B.BuildDone) and events[-1].image_id == image.id
    again: list = []
    engine.images.build(context=str(tmp_path), tags=["built:1"], progress=again.append)
    assert len([e for e in again if isinstance(e, B.StepCached)]) == 5
    with pytest.raises(E.BuildError) as info:
        engine.images.build("FROM busybox\nRUN echo boom && exit 3\n", None)
    assert info.value.status == 3 and info.value.output_tail == ["boom"]
    with pytest.raises(E.DockerfileError, match="Dockerfile:2: unknown instruction: NOPE"):
        engine.images.build("FROM busybox\nNOPE x\n", None)
    for tag in ("built:1", "built:latest"):
        engine.images.remove(tag)
    engine.images.prune()


# ---------------------------------------------------------------------------- the rest
def test_volumes_and_networks(engine, docker_ctx):
    vol = engine.volumes.create("pstest-vol", labels={"suite": "api"})
    assert vol.attrs == json.loads(docker_ctx.dockerd.docker("volume", "inspect",
                                                              "pstest-vol").out)[0]
    assert [v.name for v in engine.volumes.list(filters={"label": "suite=api"})] == \
        ["pstest-vol"]
    engine.containers.run(BUSYBOX, "sh -c 'echo kept > /v/file'", remove=True,
                          volumes=["pstest-vol:/v"])
    assert engine.containers.run(BUSYBOX, "cat /v/file", remove=True,
                                 volumes=["pstest-vol:/v:ro"]) == b"kept\n"
    ctr = engine.containers.create(BUSYBOX, "true", volumes=["pstest-vol:/v"], name="holder")
    assert engine.volumes.in_use() == {"pstest-vol": [ctr.id]}
    with pytest.raises(E.Conflict, match="volume is in use"):
        vol.remove()
    ctr.remove()
    vol.remove()
    assert "pstest-vol" not in [v.name for v in engine.volumes.list()]
    names = {n.name for n in engine.networks.list()}
    assert {"host", "none"} <= names
    with pytest.raises(E.Conflict):
        engine.networks.remove("host")


def test_system_info_df_version_and_events(engine, docker_ctx):
    info = engine.system.info()
    assert info["ServerVersion"].startswith("20.10") and info["Context"] == docker_ctx.name
    assert info["DockerRootDir"] == str(docker_ctx.dockerd.dir / "data")
    version = engine.system.version()
    assert version["Server"]["ApiVersion"] == version["Client"]["ApiVersion"]
    df = {row["Type"]: row for row in engine.system.df()}
    assert df["Images"]["TotalCount"] == len(docker_ctx.base_images)
    started = time.time()
    seen: list = []
    stop = {"now": False}
    import threading

    def follow() -> None:
        for event in engine.system.events(filters={"type": ["container"]}, follow=True,
                                          stop=lambda: stop["now"]):
            seen.append(event)

    follower = threading.Thread(target=follow)
    follower.start()
    try:
        engine.containers.run(BUSYBOX, "true", remove=True, name="evented")
        wait_for(lambda: any(e["Action"] == "destroy" for e in seen), what="destroy event")
    finally:
        stop["now"] = True
        follower.join(10)
    assert not follower.is_alive()
    actions = [e["Action"] for e in seen if e["Actor"]["Attributes"].get("name") == "evented"]
    assert actions[:3] == ["create", "attach", "start"] or actions[:2] == ["create", "start"]
    assert all(e["time"] >= started - 1 for e in seen)
    # without follow: those up to now (the REST API's operations read them so)
    past = list(engine.system.events(since=started, filters={"container": ["evented"]}))
    assert [e["Action"] for e in past] == actions
    with pytest.raises(E.Unsupported, match=f'system check is not available in context '
                                             f'"{docker_ctx.name}"'):
        engine.system.check()


def test_a_daemon_that_is_not_there_is_one_line(tmp_path):
    from portside.engine.docker import DockerEngine

    engine = DockerEngine(f"unix://{tmp_path}/docker.sock", context="gone")
    with pytest.raises(E.Unavailable) as info:
        engine.containers.list()
    engine.close()
    assert str(info.value) == (f'Cannot connect to the Docker daemon at unix://{tmp_path}/'
                               f'docker.sock (context "gone"): no such file or directory. Is '
                               "the docker daemon running?")
