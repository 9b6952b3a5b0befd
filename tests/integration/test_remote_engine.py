"""The remote engine (portside.engine.remote): the model API of an engine process, as the
Jupyter kernel and server use it rootless. Here as root, against a real engine process: models
and their verbs, errors, iterators, progress callbacks, files both ways, an exec's streams as
local pipes (the notebook agent's way in), calls from several threads at once, and the process
gone with the stand-in."""

from __future__ import annotations

import io
import threading
import time

import pytest

from portside.engine.errors import ContainerExit, NotFound
from portside.engine.remote.client import RemoteEngine, RemoteExecStream, spawn

pytestmark = pytest.mark.integration


@pytest.fixture
def remote(portside_root):
    eng = spawn(str(portside_root))
    yield eng
    for ctr in eng.containers.list(all=True):
        ctr.remove(force=True)
    process = eng._process
    eng.close()
    assert process.poll() is not None  # the engine process ends with its stand-in


def test_models_and_verbs(remote, portside_root):
    assert isinstance(remote, RemoteEngine) and remote.root == portside_root
    image = remote.images.bootstrap("busybox", tag="busybox:latest")
    assert image.tags == ["busybox:latest"] and image.short_id == image.id[7:19]
    assert [i.id for i in remote.images.list()] == [image.id]
    ctr = remote.containers.run("busybox", ["sh", "-c", "echo hi; sleep 60"], detach=True,
                                name="far", network_mode="none")
    assert ctr.name == "far" and ctr.status == "running"
    assert ctr.image.id == image.id  # a property that goes through the collection
    assert ctr.exec_run(["echo", "exec"]) == (0, b"exec\n")
    deadline = time.monotonic() + 10
    while b"hi" not in ctr.logs() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ctr.logs() == b"hi\n"
    assert ctr.stop(timeout=0) is ctr and ctr.status == "exited"  # attrs follow the verb
    assert remote.containers.get("far").attrs["State"]["ExitCode"] == 137
    # run as the CLI and the magics do it: callbacks get models, output goes to the caller's
    seen, out, err = [], io.BytesIO(), io.BytesIO()
    code = remote.containers.run_from(
        {"Image": "busybox", "Cmd": ["sh", "-c", "echo out; echo err >&2; exit 3"]},
        {"NetworkMode": "none", "AutoRemove": True}, stdout=out, stderr=err,
        on_created=seen.append)
    assert code == 3 and out.getvalue() == b"out\n" and err.getvalue() == b"err\n"
    assert len(seen) == 1 and len(seen[0].id) == 64 and seen[0].image.id == image.id


def test_errors_come_back_as_the_engines_own(remote):
    with pytest.raises(NotFound, match="No such container: nope"):
        remote.containers.get("nope")
    remote.images.bootstrap("busybox", tag="busybox:latest")
    with pytest.raises(ContainerExit) as info:
        remote.containers.run("busybox", ["sh", "-c", "exit 3"], remove=True,
                              network_mode="none")
    assert info.value.exit_code == 3


def test_files_iterators_and_progress(remote, tmp_path):
    remote.images.bootstrap("busybox", tag="busybox:latest")
    saved = io.BytesIO()
    remote.images.save(["busybox"], saved)  # a file written over there, through a pipe
    assert saved.getvalue()[257:262] == b"ustar"
    remote.images.remove("busybox:latest")
    events = []
    saved.seek(0)
    loaded = remote.images.load(saved, progress=events.append)  # read through a pipe
    assert loaded[0][1] == ["busybox:latest"]
    path = tmp_path / "again.tar"
    path.write_bytes(saved.getvalue())
    with open(path, "rb") as f:  # a real file travels as its descriptor
        assert remote.images.load(f)[0][1] == ["busybox:latest"]
    assert events, "the load reported progress here"
    ctr = remote.containers.run("busybox", ["sh", "-c", "for i in 1 2 3; do echo $i; done"],
                                detach=True, network_mode="none")
    ctr.wait()
    assert [d for _s, d in ctr.logs(stream=True)] == [b"1\n", b"2\n", b"3\n"]


def test_exec_streams_are_local_pipes(remote):
    remote.images.bootstrap("busybox", tag="busybox:latest")
    ctr = remote.containers.run("busybox", ["sleep", "60"], detach=True, network_mode="none")
    code, proc = ctr.exec_run(["sh", "-c", "cat; echo err >&2; exit 4"], stdin=True,
                              socket=True)
    assert code is None and isinstance(proc, RemoteExecStream)
    proc.stdin.write(b"round trip\n")
    proc.stdin.close()
    assert proc.stdout.read() == b"round trip\n"
    assert proc.stderr.read() == b"err\n"
    assert proc.wait(timeout=10) == 4
    proc.close()
    # a long-lived one (the notebook agent's case): killed from here
    _, cat = ctr.exec_run(["cat"], stdin=True, socket=True)
    cat.stdin.write(b"x\n")
    cat.stdin.flush()
    assert cat.stdout.readline() == b"x\n" and cat.poll() is None
    cat.kill()
    assert cat.wait(timeout=10) != 0
    cat.close()
    # a container that is gone is the engine's own error, not a broken pipe
    ctr.remove(force=True)
    with pytest.raises(NotFound):
        ctr.exec_run(["true"], socket=True)


def test_threads_do_not_wait_for_each_other(remote):
    remote.images.bootstrap("busybox", tag="busybox:latest")
    ctr = remote.containers.run("busybox", ["sleep", "60"], detach=True, network_mode="none")
    done = threading.Event()

    def long_wait() -> None:
        try:
            remote.containers.get(ctr.id).wait(timeout=30)
        finally:
            done.set()

    waiter = threading.Thread(target=long_wait)
    waiter.start()
    time.sleep(0.2)
    started = time.monotonic()
    assert [c.id for c in remote.containers.list()] == [ctr.id]  # not behind the wait
    assert time.monotonic() - started < 5 and not done.is_set()
    ctr.kill()
    waiter.join(timeout=30)
    assert done.is_set()
