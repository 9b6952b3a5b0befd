"""The program's lean path (engine/lean.py) and the full command line give the same results: for
each flag the lean path takes, the same command line runs once through it and once through the
full parser (``PORTSIDE_LEAN=0``), and standard output, standard error and the exit status must
be equal. ``exec`` against one running container: exit codes 0/3/126/127/137, the engine's error
lines (no such container, not running, paused), ``-i`` with input, ``-d``, ``-e``,
``--env-file``, ``-w``, ``-u``, ^C. ``run``: ``--rm`` foreground runs with their exit codes and
flags, ``-d``, a name taken, a signal proxied to the container."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import CLI, PORTSIDE  # type: ignore[import-not-found]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not shutil.which("runc"), reason="runc not installed"),
]

NAME = "lean-box"


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    """A state folder with a running busybox container and a stopped one, made before any test
    (each test's leak check sees them before and after it)."""
    root = tmp_path_factory.mktemp("lean-root")
    cli = CLI(root, root)
    cli("image", "bootstrap", "busybox", "-t", "busybox:latest", "-q")
    try:
        cli("run", "-d", "--name", NAME, "--network", "none", "busybox", "sleep", "600")
        cli("create", "--name", "lean-stopped", "--network", "none", "busybox", "true")
        yield cli
    finally:
        cli("rm", "-f", NAME, "lean-stopped", check=False)


def _both(box, *args, input: bytes | None = None, env: dict | None = None):
    """The command line through the lean path and through the full one: (lean, full)."""
    lean = box(*args, input=input, env=env, check=False)
    full = box(*args, input=input, env=dict(env or {}, PORTSIDE_LEAN="0"), check=False)
    return lean, full


def _same(lean, full):
    assert (lean.returncode, lean.out, lean.err) == (full.returncode, full.out, full.err)
    return lean


@pytest.mark.parametrize("args, code", [
    (["true"], 0),
    (["sh", "-c", "exit 3"], 3),
    (["sh", "-c", "echo out; echo err >&2; exit 4"], 4),
    (["nosuchcommand"], 127),
    (["./nope"], 127),
    (["/etc/passwd"], 126),
    (["/bin"], 126),
    (["sh", "-c", "kill -9 $$"], 137),
    (["ls", "-l", "/etc/passwd"], 0),
])
def test_commands_and_exit_codes(box, args, code):
    lean = _same(*_both(box, "exec", NAME, *args))
    assert lean.returncode == code, lean.err


def test_flags(box, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("# a comment\nFROM_FILE=1\n\nSHARED=file\nHOST_ONLY\n")
    cases = [
        (["exec", "-w", "/tmp", NAME, "pwd"], "/tmp\n"),
        (["exec", "--workdir=/etc", NAME, "pwd"], "/etc\n"),
        (["exec", "-u", "nobody", NAME, "id", "-un"], "nobody\n"),
        (["exec", "--user=1000:1000", NAME, "id", "-u"], "1000\n"),
        (["exec", "-e", "A=1", "--env=B=2", NAME, "sh", "-c", "echo $A$B"], "12\n"),
        (["exec", "--env-file", str(env_file), "-e", "SHARED=flag", "-e", "HOST_ONLY", NAME,
          "sh", "-c", "echo $FROM_FILE $SHARED $HOST_ONLY"], "1 flag from-host\n"),
        (["exec", "--privileged", "--detach-keys", "ctrl-a", NAME, "echo", "hi"], "hi\n"),
        (["container", "exec", NAME, "echo", "group"], "group\n"),
        (["--root", str(box.root), "exec", NAME, "echo", "root"], "root\n"),
        (["-c", "default", "exec", NAME, "echo", "context"], "context\n"),
        (["exec", "-w", "/nonexistent", NAME, "pwd"], None),
    ]
    for args, out in cases:
        lean = _same(*_both(box, *args, env={"HOST_ONLY": "from-host"}))
        if out is None:
            assert lean.returncode == 255 and "chdir to cwd" in lean.err
        else:
            assert (lean.returncode, lean.out) == (0, out), (args, lean.err)


def test_standard_input(box):
    lean = _same(*_both(box, "exec", "-i", NAME, "cat", input=b"piped\n"))
    assert lean.out == "piped\n"
    lean = _same(*_both(box, "exec", NAME, "cat", input=b"ignored\n"))
    assert lean.out == ""
    lean = _same(*_both(box, "exec", "-i", NAME, "sh", "-c", "wc -c; exit 5",
                        input=b"x" * 100000))
    assert (lean.returncode, lean.out.strip()) == (5, "100000")


def test_detached(box):
    for path in ("lean", "full"):
        env = {"PORTSIDE_LEAN": "0"} if path == "full" else {}
        started = box("exec", "-d", NAME, "sh", "-c", f"echo {path} > /tmp/detached-{path}",
                      env=env)
        assert (started.returncode, started.out, started.err) == (0, "", "")
        deadline = time.monotonic() + 10
        while box("exec", NAME, "cat", f"/tmp/detached-{path}", check=False).out != f"{path}\n":
            assert time.monotonic() < deadline, "the detached command did not run"
            time.sleep(0.05)
    lean = _same(*_both(box, "exec", "-d", NAME, "nosuchcommand"))
    assert lean.returncode == 126


def test_engine_errors(box, tmp_path):
    lean = _same(*_both(box, "exec", "nosuch", "true"))
    assert (lean.returncode, lean.err) == (125, "Error: No such container: nosuch\n")
    lean = _same(*_both(box, "exec", "lean-stopped", "true"))
    assert lean.returncode == 125 and lean.err.startswith("Error: ") and "not running" in lean.err
    lean = _same(*_both(box, "exec", "--env-file", str(tmp_path / "missing"), NAME, "true"))
    assert lean.returncode == 125 and lean.err.startswith("Error: open ")
    lean = _same(*_both(box, "exec", "-e", "=x", NAME, "true"))
    assert (lean.returncode, lean.err) == (125, "Error: invalid environment variable: =x\n")
    lean = _same(*_both(box, "-c", "nosuchcontext", "exec", NAME, "true",
                        env={"XDG_CONFIG_HOME": str(tmp_path / "config")}))
    assert lean.returncode == 125 and "nosuchcontext" in lean.err
    box("pause", NAME)
    try:
        lean = _same(*_both(box, "exec", NAME, "true"))
        assert lean.returncode == 125 and "paused" in lean.err
    finally:
        box("unpause", NAME)


def _signalled(box, args: list[str], env: dict[str, str], *, ready: list[str], sig: int,
               cleanup: list[str]) -> tuple[int, bytes, bytes]:
    """``portside ARGS`` run until ``box(*ready)`` succeeds, then sent ``sig``: its status and
    output. ``box(*cleanup)`` afterwards, whatever happened."""
    with subprocess.Popen([PORTSIDE, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env) as proc:
        try:
            deadline = time.monotonic() + 30
            while box(*ready, check=False).returncode != 0:
                assert time.monotonic() < deadline, f"not ready: {ready}"
                time.sleep(0.05)
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
            box(*cleanup, check=False)
    return proc.returncode, out, err


def test_interrupt(box):
    """^C ends the client with 130 on both paths (the command inside runs on, as in Docker).
    The command is given other stdout/stderr than the client's pipes, which it would otherwise
    hold open after the client has gone (communicate() would wait for its end)."""
    results = []
    for path in ("lean", "full"):
        pid_file = f"/tmp/started-{path}"
        env = box.env(**({"PORTSIDE_LEAN": "0"} if path == "full" else {}))
        results.append(_signalled(
            box, ["exec", NAME, "sh", "-c", f"echo $$ > {pid_file}; exec sleep 30 >/dev/null 2>&1"],
            env, ready=["exec", NAME, "test", "-s", pid_file], sig=signal.SIGINT,
            cleanup=["exec", NAME, "sh", "-c", f"kill $(cat {pid_file})"]))
    assert results[0] == results[1]
    assert results[0][0] == 130


# ----------------------------------------------------------------------------------- run


@pytest.mark.parametrize("args", [
    ["--rm", "--network", "none", "busybox", "true"],
    ["--rm", "--net=none", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3"],
    ["--rm", "--network", "none", "busybox", "nosuchcommand"],
    ["--rm", "--network", "none", "-e", "A=1", "--env=B=2", "-w", "/tmp", "-u", "1000:1000",
     "-h", "lean-host", "busybox", "sh", "-c", "echo $A$B; pwd; id -u; hostname"],
    ["--rm", "--network", "none", "--entrypoint", "echo", "-l", "a=b", "--cap-drop", "ALL",
     "--read-only", "--tmpfs", "/scratch", "busybox", "entry", "point"],
    ["--rm", "--network", "none", "--init", "--privileged", "busybox", "sh", "-c", "exit 0"],
])
def test_run_foreground(box, args):
    before = box("ps", "-aq").out
    lean = _same(*_both(box, "run", *args))
    assert lean.returncode in (0, 3, 127), lean.err
    assert box("ps", "-aq").out == before  # --rm: gone on both paths


def test_run_with_standard_input(box):
    lean = _same(*_both(box, "run", "--rm", "-i", "--network", "none", "busybox", "cat",
                        input=b"piped\n"))
    assert lean.out == "piped\n"


def test_run_errors(box):
    lean = _same(*_both(box, "run", "--rm", "--name", NAME, "--network", "none", "busybox",
                        "true"))
    assert lean.returncode == 125 and lean.err.startswith("Error: ") and NAME in lean.err
    lean = _same(*_both(box, "run", "--rm", "--pull", "never", "--network", "none",
                        "nosuch/image:1", "true"))
    assert (lean.returncode, lean.err) == (125, "Error: No such image: nosuch/image:1\n")
    lean = _same(*_both(box, "run", "--rm", "-e", "=x", "busybox", "true"))
    assert (lean.returncode, lean.err) == (125, "Error: invalid environment variable: =x\n")


def test_run_detached(box):
    ids = []
    for path in ("lean", "full"):
        env = {"PORTSIDE_LEAN": "0"} if path == "full" else {}
        started = box("run", "-d", "--name", f"lean-d-{path}", "--network", "none", "busybox",
                      "sleep", "60", env=env)
        try:
            assert started.err == ""
            ids.append(started.out.strip())
            assert box("inspect", "--format", "{{.State.Running}}", f"lean-d-{path}").out \
                == "true\n"
        finally:
            box("rm", "-f", f"lean-d-{path}")
    assert all(len(i) == 64 and int(i, 16) >= 0 for i in ids), ids


def test_run_proxies_signals(box):
    """A signal to the client reaches the container (--sig-proxy, the default), on both paths;
    with --sig-proxy=false it does not."""
    results = []
    for path, proxy in (("lean", "true"), ("full", "true"), ("lean", "false")):
        env = box.env(**({"PORTSIDE_LEAN": "0"} if path == "full" else {}))
        name = f"lean-sig-{path}-{proxy}"
        results.append(_signalled(
            box, ["run", "--rm", "--name", name, f"--sig-proxy={proxy}", "--network", "none",
                  "busybox", "sh", "-c", "trap 'echo got TERM; exit 7' TERM; "
                                         "touch /ready; while true; do sleep 0.05; done"],
            env, ready=["exec", name, "test", "-e", "/ready"], sig=signal.SIGTERM,
            cleanup=["rm", "-f", name]))
    assert results[0] == results[1] == (7, b"got TERM\n", b"")
    assert results[2][0] != 7 and b"got TERM" not in results[2][1]


def test_closed_standard_streams(box):
    """A closed descriptor (``<&-``, ``>&-``) is handled alike on both paths (the handler and
    its context are the same; only the reading of the line differs)."""
    for line in (f"exec -i {NAME} echo hi <&-", f"exec {NAME} echo hi >&-",
                 "run --rm --network none busybox echo hi >&-"):
        lean, full = (subprocess.run(["sh", "-c", f"{PORTSIDE} {line}"], capture_output=True,
                                     stdin=subprocess.DEVNULL, env=box.env(**extra), timeout=60)
                      for extra in ({}, {"PORTSIDE_LEAN": "0"}))
        assert (lean.returncode, lean.stdout, lean.stderr) == \
            (full.returncode, full.stdout, full.stderr), line
