"""Crashes and races on the image store: SIGKILL at every step of load, import, pull and build,
then one ordinary command, after which nothing of the killed command is left (no folder, no
ingest, no lease, no unreferenced blob, no mount, no runtime container); SIGKILLs at random
moments; live work of a stopped process that another process must leave alone; and two
processes importing and tagging into one root at once."""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from conftest import PORTSIDE
from leftover_checks import (assert_store_clean, folder_bytes, mounts_under,
                             unfinished_work)

pytestmark = pytest.mark.integration

POINTS = ["load-extracted", "layer-blob-written", "layer-unpacked", "image-before-record"]


def _rootfs(path: Path, marker: str, size: int = 200_000) -> Path:
    with tarfile.open(path, "w") as tar:
        for i in range(5):
            data = (marker * size)[: size + i]
            info = tarfile.TarInfo(f"data/{marker}-{i}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data.encode()))
    return path


def _blob_count(root: Path) -> int:
    return len(os.listdir(root / "content" / "blobs" / "sha256"))


def _killed(proc) -> None:
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.err)


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_during_load_is_reclaimed_by_the_next_command(cli, busybox_image, tmp_path,
                                                              portside_root, point):
    archive = tmp_path / "bb.tar"
    cli("save", "-o", str(archive), busybox_image)
    cli("rmi", busybox_image)
    assert _blob_count(portside_root) == 0
    for _ in range(2):  # each further kill used to add another folder
        _killed(cli("load", "-i", str(archive), check=False, env={"PORTSIDE_FAULT": point}))
    assert unfinished_work(portside_root) != {}
    # one ordinary command: no half image, and nothing of the killed loads is left
    assert cli("images", "-q").out == ""
    assert _blob_count(portside_root) == 0
    assert_store_clean(cli, portside_root)
    # the next load succeeds
    assert "Loaded image: busybox:latest" in cli("load", "-i", str(archive)).out
    assert_store_clean(cli, portside_root)


def test_system_check_after_a_killed_load_says_what_it_reclaimed_and_passes(
        cli, busybox_image, tmp_path, portside_root):
    archive = tmp_path / "bb.tar"
    cli("save", "-o", str(archive), busybox_image)
    cli("rmi", busybox_image)
    _killed(cli("load", "-i", str(archive), check=False,
                env={"PORTSIDE_FAULT": "image-before-record"}))
    check = cli("system", "check", check=False)
    assert check.returncode == 0, check.out
    lines = check.out.splitlines()
    assert lines[-1] == "store is consistent"
    assert any(line.startswith("reclaimed: temporary folder of a process that died: tmp/load.")
               for line in lines), lines
    assert any(line.startswith("reclaimed: unrecorded data of a process that died: 3 blob(s)")
               for line in lines), lines
    assert unfinished_work(portside_root) == {}
    assert_store_clean(cli, portside_root)


@pytest.mark.parametrize("point", POINTS[1:])
def test_sigkill_during_import_is_reclaimed_by_the_next_command(cli, tmp_path, portside_root,
                                                                point):
    tar = _rootfs(tmp_path / "r.tar", "a")
    _killed(cli("import", str(tar), "crash:1", check=False, env={"PORTSIDE_FAULT": point}))
    assert cli("images", "-q").out == ""
    assert _blob_count(portside_root) == 0
    assert [p for p in (portside_root / "snapshots").iterdir() if not p.name.startswith(".")] \
        == []
    assert_store_clean(cli, portside_root)
    cli("import", str(tar), "crash:1")
    assert cli("images", "--format", "{{.Repository}}:{{.Tag}}").out == "crash:1\n"
    assert_store_clean(cli, portside_root)


# ------------------------------------------------------------------------------------- pull


@pytest.fixture
def registry(tmp_path: Path):
    from registry_fixture import REGISTRY_BIN, Registry

    if not Path(REGISTRY_BIN).exists():
        pytest.skip("docker-registry is not installed")
    reg = Registry(tmp_path / "registry").start()
    yield reg
    reg.stop()


def _push_image(registry, layers: int = 2) -> str:
    from registry_fixture import put_image, tar_layer

    blobs = [tar_layer([(f"layer{i}/data.bin", os.urandom(3 << 20))]) for i in range(layers)]
    put_image(registry.host, "faults/img", "1", blobs)
    return f"{registry.host}/faults/img:1"


@pytest.mark.parametrize("point", ["pull-layer-partial", "layer-unpacked", "image-before-record"])
def test_sigkill_during_pull_keeps_its_downloads_for_the_next_pull(cli, registry, portside_root,
                                                                  point):
    name = _push_image(registry)
    _killed(cli("pull", name, check=False, env={"PORTSIDE_FAULT": point}))
    # an ordinary command keeps what the pull downloaded, for a while: pulling again resumes
    assert cli("images", "-q").out == ""
    kept = unfinished_work(portside_root)
    assert "leases" in kept
    check = cli("system", "check", check=False)
    assert check.returncode == 0 and "reclaimable: data of an interrupted pull" in check.out
    assert check.out.endswith("store is consistent\n")
    # ...and the next pull finishes the job: nothing is left over after it
    cli("pull", name)
    assert_store_clean(cli, portside_root)
    assert cli("images", "--format", "{{.Repository}}:{{.Tag}}").out == \
        f"{name.rsplit(':', 1)[0]}:1\n"


@pytest.mark.parametrize("point", ["pull-layer-partial", "layer-unpacked", "image-before-record"])
def test_sigkill_during_pull_is_reclaimed_after_its_resume_window(cli, registry, portside_root,
                                                                  point):
    name = _push_image(registry)
    _killed(cli("pull", name, check=False, env={"PORTSIDE_FAULT": point}))
    assert unfinished_work(portside_root) != {}
    # with a resume window of 0 (or once an hour has passed), the next command reclaims it all
    assert cli("images", "-q", env={"PORTSIDE_RESUME_WINDOW": "0"}).out == ""
    assert _blob_count(portside_root) == 0
    assert_store_clean(cli, portside_root)


def test_system_check_repair_reclaims_an_interrupted_pull_at_once(cli, registry, portside_root):
    name = _push_image(registry, layers=1)
    _killed(cli("pull", name, check=False, env={"PORTSIDE_FAULT": "pull-layer-partial"}))
    assert folder_bytes(portside_root / "content" / "ingest") > 0
    out = cli("system", "check", "--repair").out
    assert "reclaimed: data of an interrupted pull" in out
    assert_store_clean(cli, portside_root)


# ------------------------------------------------------------------------------------ build


def _runtime_containers(root: Path) -> list[str]:
    proc = subprocess.run(["runc", "--root", str(root / "run" / "runtime"), "list", "-q"],
                          capture_output=True, text=True)
    return proc.stdout.split()


@pytest.mark.parametrize("point", ["build-run-started", "layer-blob-written", "layer-unpacked",
                                   "image-before-record"])
def test_sigkill_during_build_is_reclaimed_by_the_next_command(cli, busybox_image, tmp_path,
                                                               portside_root, point):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo built > /built && sleep 300\n"
                                    if point == "build-run-started" else
                                    "FROM busybox\nRUN echo built > /built\n")
    _killed(cli("build", "-t", "crash:1", str(ctx), check=False,
                env={"PORTSIDE_FAULT": point}, timeout=60))
    # a RUN outlives its killed build (runc run keeps its container): the next command stops it
    assert cli("images", "--format", "{{.Repository}}").out == "busybox\n"
    assert _runtime_containers(portside_root) == []
    # (a step that finished is in the build cache: that keeps its layer, nothing else may stay)
    assert_store_clean(cli, portside_root)
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo built > /built\n")
    cli("build", "-t", "crash:1", str(ctx))
    assert_store_clean(cli, portside_root)


# ------------------------------------------------------------------------- random moments


def _kill_at(argv: list[str], env: dict, delay: float, started) -> int:
    """Start ``argv``, wait until ``started()`` (or it ends), then ``delay`` s, then SIGKILL."""
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not started() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(delay)
    proc.kill()
    return proc.wait(timeout=60)


def test_sigkill_at_random_moments_of_load_import_and_pull(cli, tmp_path, portside_root,
                                                           registry):
    big = tmp_path / "big.tar"
    with tarfile.open(big, "w") as tar:
        for i in range(8):
            data = os.urandom(4 << 20)
            info = tarfile.TarInfo(f"data/{i}.bin")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    cli("import", str(big), "big:1")
    archive = tmp_path / "big-image.tar"
    cli("save", "-o", str(archive), "big:1")
    cli("rmi", "big:1")
    name = _push_image(registry, layers=3)
    env = cli.env(PORTSIDE_RESUME_WINDOW="0")
    work = lambda: unfinished_work(portside_root) != {}  # noqa: E731 - the command has begun
    rng = random.Random(17)
    commands = [[PORTSIDE, "load", "-i", str(archive)], [PORTSIDE, "import", str(big), "big:2"],
                [PORTSIDE, "pull", name]]
    for round_ in range(4):
        for argv in commands:
            status = _kill_at(argv, env, rng.uniform(0, 0.4), work)
            # one ordinary command later: no half image, nothing unfinished, nothing mounted
            images = cli("images", "--format", "{{.Repository}}:{{.Tag}}", env=env).out.split()
            assert set(images) <= {"big:1", "big:2", f"{name.rsplit(':', 1)[0]}:1"}, images
            assert unfinished_work(portside_root) == {}, (argv[1], round_, status)
            assert mounts_under(portside_root) == []
            check = cli("system", "check", check=False, env=env)
            assert (check.returncode, check.out) == (0, "store is consistent\n"), check.out
        cli("rmi", "-f", *(cli("images", "-q", env=env).out.split() or ["none"]), check=False,
            env=env)
    assert_store_clean(cli, portside_root)


# ------------------------------------------------------------------------- live work is safe


def _stopped(argv: list[str], env: dict, point: str) -> subprocess.Popen:
    """Run ``argv`` until it stops itself at fault point ``point`` (alive, holding its work)."""
    proc = subprocess.Popen(argv, env=dict(env, PORTSIDE_FAULT=f"{point}:stop"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open(f"/proc/{proc.pid}/stat") as f:
            if f.read().rpartition(")")[2].split()[0] == "T":
                return proc
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError(f"{argv[1]} never reached {point}")


def test_another_process_never_reclaims_live_work(cli, busybox_image, tmp_path, portside_root,
                                                  registry):
    archive = tmp_path / "bb.tar"
    cli("save", "-o", str(archive), busybox_image)
    tar = _rootfs(tmp_path / "r.tar", "q")
    name = _push_image(registry, layers=1)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo built > /built\n")
    env = cli.env()
    stopped = [
        _stopped([PORTSIDE, "load", "-i", str(archive)], env, "load-extracted"),
        _stopped([PORTSIDE, "import", str(tar), "live:1"], env, "layer-blob-written"),
        _stopped([PORTSIDE, "pull", name], env, "pull-layer-partial"),
        _stopped([PORTSIDE, "build", "-t", "live:2", str(ctx)], env, "build-run-started"),
    ]
    try:
        held = unfinished_work(portside_root)
        assert {"tmp", "content/ingest", "snapshots/.staging", "build-cache/tmp",
                "leases"} <= set(held)
        # other commands, a check and even a repair, while all four are frozen mid-way
        cli("images")
        cli("ps", "-a")
        check = cli("system", "check")
        assert check.out == "store is consistent\n", check.out
        cli("system", "check", "--repair")
        cli("image", "prune", "-a", "-f")
        after = unfinished_work(portside_root)
        for where in ("tmp", "content/ingest", "build-cache/tmp"):
            assert after[where] == held[where]
        assert set(held["leases"]) <= set(after["leases"])
    finally:
        for proc in stopped:
            proc.send_signal(signal.SIGCONT)
        results = [(proc.wait(timeout=120), proc.communicate()) for proc in stopped]
    for code, (out, err) in results:
        assert code == 0, err.decode()
    tags = set(cli("images", "--format", "{{.Repository}}:{{.Tag}}").out.split())
    assert {"busybox:latest", "live:1", "live:2", f"{name.rsplit(':', 1)[0]}:1"} <= tags
    assert_store_clean(cli, portside_root)


def test_two_processes_import_and_tag_into_one_root(cli, tmp_path, portside_root):
    tars = [_rootfs(tmp_path / f"{m}.tar", m, 2_000_000) for m in ("x", "y")]
    env = cli.env()
    procs = []
    for round_ in range(3):
        for i, tar in enumerate(tars):
            procs.append(subprocess.Popen(
                [PORTSIDE, "import", str(tar), f"race{i}:{round_}"], env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        # the same content twice at once
        procs.append(subprocess.Popen([PORTSIDE, "import", str(tars[0]), f"same:{round_}"], env=env,
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE))
    results = []
    for p in procs:
        _out, err = p.communicate(timeout=120)
        results.append((p.returncode, err.decode()))
    for code, err in results:
        assert code == 0, err
    tags = set(cli("images", "--format", "{{.Repository}}:{{.Tag}}").out.split())
    assert {f"race{i}:{r}" for i in range(2) for r in range(3)} | {f"same:{r}" for r in range(3)} == tags
    # nine images (each import has its own creation time), but each layer is unpacked once
    assert len(set(cli("images", "-q").out.split())) == 9
    snaps = [p for p in (portside_root / "snapshots").iterdir() if not p.name.startswith(".")]
    assert len(snaps) == 2
    assert cli("system", "check").out.strip() == "store is consistent"
    # tags and removals racing each other
    procs = [subprocess.Popen([PORTSIDE, "tag", "race0:0", f"moved:{n}"], env=env,
                              stdin=subprocess.DEVNULL, stderr=subprocess.PIPE) for n in range(6)]
    procs += [subprocess.Popen([PORTSIDE, "rmi", f"race1:{r}"], env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE) for r in range(3)]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    assert cli("system", "check").out.strip() == "store is consistent"
    assert len(set(cli("images", "-q").out.split())) == 6
    moved = cli("images", "--filter", "reference=moved", "--format", "{{.Tag}}").out.split()
    assert sorted(moved) == [str(n) for n in range(6)]
