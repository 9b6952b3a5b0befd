"""The CLI's daily scenarios in a Docker context, side by side with Docker's own CLI.

Each scenario runs twice on the same dockerd: once as ``portside -c CONTEXT …``, once as Debian's
``docker -H unix://…`` (package docker.io), with the same names one after the other, and what
each shows is compared: the outputs, the exit codes, the documents, the files.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from dockerd_fixture import BUSYBOX

pytestmark = pytest.mark.interop

LOOP = ("trap 'echo bye; exit 0' TERM; i=0; while true; do echo line $i; i=$((i+1)); "
        "sleep 0.1; done")


class Tool:
    """``portside -c CONTEXT`` or ``docker -H``, called the same way."""

    def __init__(self, name: str, fn) -> None:
        self.name = name
        self._fn = fn

    def __call__(self, *args: str, check: bool = True, input: bytes | None = None):
        return self._fn(*args, check=check, input=input)


@pytest.fixture
def tools(docker_ctx):
    return [Tool("portside", docker_ctx.cli), Tool("docker", docker_ctx.dockerd.docker)]


def wait_for(predicate, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def both(tools, scenario, *args):
    """The scenario's observations for portside and for docker (which must be equal)."""
    seen = {t.name: scenario(t, *args) for t in tools}
    assert seen["portside"] == seen["docker"], seen
    return seen["portside"]


# ------------------------------------------------------------------------------------ daily
def daily(t: Tool, tmp: Path) -> dict:
    seen: dict = {}
    cid = t("run", "-d", "--name", "web", "--hostname", "h", BUSYBOX, "sh", "-c", LOOP).out
    seen["id"] = len(cid.strip())
    assert wait_for(lambda: "line 12" in t("logs", "web").out)
    tail = t("logs", "--tail", "10", "web").out.splitlines()
    seen["tail"] = (len(tail), all(line.startswith("line ") for line in tail))
    ps = t("ps").out.splitlines()
    seen["ps header"] = ps[0].split()
    row = ps[1]
    seen["ps row"] = ("web" in row, "Up " in row, cid[:12] in row,
                      '"sh -c \'trap \'echo b…"' in row)
    top = t("top", "web").out
    seen["top"] = ("PID" in top, "while true" in top)
    doc = json.loads(t("inspect", "web").out)[0]
    seen["inspect"] = (doc["Id"] == cid.strip(), doc["Name"], doc["Config"]["Hostname"],
                       doc["State"]["Running"], doc["HostConfig"]["NetworkMode"])
    seen["exec"] = t("exec", "web", "hostname").out
    seen["exec 3"] = t("exec", "web", "sh", "-c", "exit 3", check=False).returncode
    t0 = time.monotonic()
    seen["stop"] = t("stop", "web").out
    seen["stop fast"] = time.monotonic() - t0 < 5
    seen["stopped"] = t("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "web").out
    seen["bye"] = "bye" in t("logs", "--tail", "3", "web").out
    seen["exited"] = "Exited (0)" in t("ps", "-a").out
    t("start", "web")
    seen["started"] = t("inspect", "-f", "{{.State.Status}}", "web").out
    t("restart", "-t", "2", "web")
    seen["restarted"] = t("inspect", "-f", "{{.State.Status}}", "web").out
    t("pause", "web")
    seen["paused"] = t("ps", "--format", "{{.State}} {{.Names}}").out
    seen["paused status"] = "(Paused)" in t("ps").out
    t("unpause", "web")
    seen["kill"] = t("kill", "web").out
    assert wait_for(lambda: t("inspect", "-f", "{{.State.ExitCode}}", "web").out.strip()
                    == "137")
    t("start", "web")
    out = tmp / t.name
    out.mkdir()
    t("cp", "web:/etc/hostname", str(out))
    seen["cp"] = (out / "hostname").read_text()
    t("exec", "web", "sh", "-c", "echo committed > /made")
    image_id = t("commit", "-a", "author", "-m", "message", "web", "img:tag").out.strip()
    seen["commit"] = image_id.startswith("sha256:")
    image = json.loads(t("image", "inspect", "img:tag").out)[0]
    seen["image"] = (image["Author"], image["Comment"], image["Id"] == image_id)
    seen["run committed"] = t("run", "--rm", "img:tag", "cat", "/made").out
    seen["diff"] = "A /made" in t("diff", "web").out.splitlines()
    t("rm", "-f", "web")
    seen["gone"] = "web" in t("ps", "-a").out
    seen["rmi"] = t("rmi", "img:tag").out.splitlines()[0]
    return seen


def test_daily_commands_agree(tools, tmp_path):
    seen = both(tools, daily, tmp_path)
    assert seen["exec"] == "h\n" and seen["exec 3"] == 3 and seen["cp"] == "h\n"
    assert seen["stopped"] == "exited 0\n" and seen["paused"] == "paused web\n"
    assert seen["ps header"] == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                                 "PORTS", "NAMES"]
    assert seen["run committed"] == "committed\n" and seen["gone"] is False


@pytest.mark.parametrize("cmd", [["true"], ["false"], ["sh", "-c", "exit 32"],
                                 ["nosuchcommand"], ["/etc/passwd"], ["/bin"]])
def test_run_exit_codes_agree(tools, cmd):
    codes = {t.name: t("run", "--rm", BUSYBOX, *cmd, check=False).returncode for t in tools}
    assert codes["portside"] == codes["docker"]
    assert codes["portside"] == {"true": 0, "false": 1, "sh": 32, "nosuchcommand": 127,
                                 "/etc/passwd": 126, "/bin": 126}[cmd[0]]
    for t in tools:
        assert t("ps", "-aq").out == ""


def test_exec_exit_codes_agree(tools):
    def scenario(t: Tool) -> dict:
        t("run", "-d", "--name", "codes", BUSYBOX, "sleep", "600")
        try:
            return {" ".join(cmd): t("exec", "codes", *cmd, check=False).returncode
                    for cmd in (["true"], ["sh", "-c", "exit 32"], ["sh", "-c", "exit 255"],
                                ["nosuchcommand"], ["./nope"], ["/etc/passwd"], ["/bin"])}
        finally:
            t("rm", "-f", "codes")

    codes = both(tools, scenario)
    # dockerd 20.10 answers 126 for every command it cannot start in an exec
    assert codes == {"true": 0, "sh -c exit 32": 32, "sh -c exit 255": 255,
                     "nosuchcommand": 126, "./nope": 126, "/etc/passwd": 126, "/bin": 126}


def test_stdin_and_stderr_of_a_foreground_run(tools):
    def scenario(t: Tool) -> tuple:
        proc = t("run", "--rm", "-i", BUSYBOX, "sh", "-c", "cat; echo to-err >&2; exit 4",
                 input=b"piped\n", check=False)
        return proc.returncode, proc.out, proc.err

    assert both(tools, scenario) == (4, "piped\n", "to-err\n")


def test_start_attached_and_exec_with_stdin_agree(tools):
    """``start -a -i`` and ``exec -i`` feed standard input through dockerd's attach and exec
    streams, as Docker's CLI does; ``run -t`` gives the container a terminal."""
    def scenario(t: Tool) -> tuple:
        t("create", "-i", "--name", "fed", BUSYBOX, "sh", "-c", "tr a-z A-Z; exit 6")
        try:
            started = t("start", "-a", "-i", "fed", input=b"hello\n", check=False)
            t("run", "-d", "--name", "execd", BUSYBOX, "sleep", "600")
            execd = t("exec", "-i", "execd", "sh", "-c", "wc -c; echo e >&2",
                      input=b"x" * 100_000, check=False)
            tty = t("run", "--rm", "-t", BUSYBOX, "sh", "-c", "test -t 1 && echo tty")
        finally:
            t("rm", "-f", "fed", "execd", check=False)
        return ((started.returncode, started.out, started.err),
                (execd.returncode, execd.out.strip(), execd.err), tty.out)

    assert both(tools, scenario) == ((6, "HELLO\n", ""), (0, "100000", "e\n"), "tty\r\n")


def test_update_and_system_prune_agree(tools):
    """``update`` (the model API's ``Container.update``, dockerd's update endpoint) and
    ``system prune -f`` (``System.prune``, made of dockerd's prunes) in a Docker context say and
    do what Docker's CLI does."""
    import re

    def scenario(t: Tool) -> tuple:
        t("run", "-d", "--name", "lim", BUSYBOX, "sh", "-c", LOOP)
        try:
            up = t("update", "--memory", "64m", "--memory-swap", "128m", "--pids-limit", "50",
                   "--restart", "on-failure:2", "lim")
            hc = json.loads(t("inspect", "lim").out)[0]["HostConfig"]
        finally:
            t("rm", "-f", "lim")
        t("create", "--name", "stopped", BUSYBOX, "true")
        pruned = t("system", "prune", "-f", "--filter", "label!=keep")
        gone = t("ps", "-aq", "--filter", "name=stopped").out
        return (up.out, (hc["Memory"], hc["MemorySwap"], hc["PidsLimit"], hc["RestartPolicy"]),
                re.sub(r"[0-9a-f]{64}", "ID", pruned.out).splitlines()[:3], gone)

    assert both(tools, scenario) == (
        "lim\n", (64 * 1024**2, 128 * 1024**2, 50, {"Name": "on-failure",
                                                     "MaximumRetryCount": 2}),
        ["Deleted Containers:", "ID", ""], "")


def test_sizes_and_stop_signal_in_a_docker_context(tools):
    """``ps -s`` and ``inspect -s`` ask dockerd for sizes; ``stop -s SIG`` (which dockerd's
    API takes from 1.42 only, and Docker's 20.10 CLI lacks) sends SIG, then stops."""
    portside, docker = tools
    portside("run", "-d", "--name", "sized", BUSYBOX, "sh", "-c",
             "trap 'echo got USR1; exit 0' USR1; head -c 5000 /dev/zero > /file; "
             "while :; do sleep 0.1; done")
    try:
        assert wait_for(lambda: portside("exec", "sized", "test", "-f", "/file",
                                         check=False).returncode == 0)
        doc = json.loads(portside("inspect", "-s", "sized").out)[0]
        assert doc["SizeRw"] == json.loads(docker("inspect", "-s", "sized").out)[0]["SizeRw"]
        assert doc["SizeRw"] >= 5000
        size = portside("ps", "-s", "--format", "{{.Names}} {{.Size}}").out.split()
        assert size[0] == "sized" and size[1].endswith("kB")
        started = time.monotonic()
        assert portside("stop", "-s", "USR1", "-t", "20", "sized").out == "sized\n"
        assert time.monotonic() - started < 10  # the signal ended it, not the time-out
        assert portside("logs", "sized").out == "got USR1\n"
        assert docker("inspect", "-f", "{{.State.ExitCode}}", "sized").out == "0\n"
    finally:
        portside("rm", "-f", "sized")


# ------------------------------------------------------------------------------------ volumes
def volumes(t: Tool, tmp: Path) -> dict:
    seen: dict = {}
    seen["create"] = t("volume", "create", "--label", "k=v", "data").out
    doc = json.loads(t("volume", "inspect", "data").out)[0]
    seen["inspect"] = (doc["Name"], doc["Driver"], doc["Labels"], doc["Scope"])
    seen["ls"] = t("volume", "ls", "-q", "--filter", "label=k=v").out
    t("run", "--rm", "-v", "data:/data", BUSYBOX, "sh", "-c", "echo kept > /data/f")
    seen["persists"] = t("run", "--rm", "--mount", "type=volume,src=data,dst=/d", BUSYBOX,
                         "cat", "/d/f").out
    host = tmp / f"bind-{t.name}"
    host.mkdir()
    (host / "x").write_text("host file\n")
    ro = t("run", "--rm", "-v", f"{host}:/h:ro", BUSYBOX, "sh", "-c",
           "cat /h/x; touch /h/y", check=False)
    seen["ro"] = (ro.returncode, ro.out, "Read-only file system" in ro.err,
                  (host / "y").exists())
    t("create", "--name", "holder", "-v", "data:/shared", "-v", "/anon", BUSYBOX, "true")
    seen["volumes-from"] = t("run", "--rm", "--volumes-from", "holder", BUSYBOX, "sh", "-c",
                             "cat /shared/f; ls -d /anon").out
    in_use = t("volume", "rm", "data", check=False)
    seen["in use"] = (in_use.returncode != 0, "volume is in use" in in_use.err)
    seen["tmpfs"] = t("run", "--rm", "--mount", "type=tmpfs,target=/scratch", BUSYBOX, "sh",
                      "-c", "grep -c ' /scratch tmpfs' /proc/mounts").out
    anon = json.loads(t("inspect", "holder").out)[0]["Mounts"]
    anon_names = [m["Name"] for m in anon if m["Destination"] == "/anon"]
    t("rm", "-v", "holder")
    seen["rm -v"] = [n for n in anon_names if n in t("volume", "ls", "-q").out.split()]
    seen["rm"] = t("volume", "rm", "data").out
    return seen


def test_volumes_agree(tools, tmp_path):
    seen = both(tools, volumes, tmp_path)
    assert seen["persists"] == "kept\n" and seen["ro"] == (1, "host file\n", True, False)
    assert seen["volumes-from"] == "kept\n/anon\n" and seen["in use"] == (True, True)
    assert seen["rm -v"] == [] and seen["tmpfs"] == "1\n"


# ------------------------------------------------------------------------------------ cp
def _tree(root: Path) -> dict:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = path.read_text() if path.is_file() else "<dir>"
    return out


def cp_rules(t: Tool, tmp: Path) -> dict:
    seen: dict = {}
    t("run", "-d", "--name", "box", BUSYBOX, "sh", "-c",
      "mkdir -p /src/dir/sub /dst && echo a > /src/dir/a && echo b > /src/dir/sub/b && "
      "echo f > /src/file && ln -s file /src/link && exec sleep 600")
    assert wait_for(lambda: t("exec", "box", "test", "-f", "/src/file",
                              check=False).returncode == 0)
    try:
        base = tmp / t.name
        for i, (src, dest, make) in enumerate([
                ("box:/src/file", "existing", True), ("box:/src/file", "renamed", False),
                ("box:/src/dir", "existing", True), ("box:/src/dir", "newdir", False),
                ("box:/src/dir/.", "contents", True)]):
            case = base / f"out{i}"
            case.mkdir(parents=True)
            if make:
                (case / dest).mkdir()
            proc = t("cp", src, str(case / dest), check=False)
            seen[f"out {src} {dest}"] = (proc.returncode, _tree(case))
        for follow in ([], ["-L"]):
            case = base / f"link{len(follow)}"
            case.mkdir()
            proc = t("cp", *follow, "box:/src/link", str(case), check=False)
            seen[f"out link {follow}"] = (proc.returncode, _tree(case),
                                          (case / "link").is_symlink())
        proc = t("cp", "box:/nonexistent", str(base), check=False)
        seen["out missing"] = (proc.returncode != 0, "No such container:path" in proc.err or
                               "Could not find the file" in proc.err)
        local = base / "local"
        (local / "dir" / "sub").mkdir(parents=True)
        (local / "dir" / "a").write_text("A\n")
        (local / "dir" / "sub" / "b").write_text("B\n")
        (local / "file").write_text("F\n")
        for i, (src, dest) in enumerate([
                ("file", "/dst"), ("file", "/dst/renamed"), ("dir", "/dst"),
                ("dir", "/dst/newdir"), ("dir/.", "/dst/contents")]):
            if dest == "/dst/contents":
                t("exec", "box", "mkdir", "-p", "/dst/contents")
            proc = t("cp", f"{local}/{src}", f"box:{dest}", check=False)
            seen[f"in {src} {dest}"] = proc.returncode
        seen["in tree"] = t("exec", "box", "sh", "-c",
                            "cd /dst && find . | sort && cat renamed newdir/a").out
        seen["in missing parent"] = t("cp", str(local / "file"), "box:/nope/x",
                                      check=False).returncode != 0
    finally:
        t("rm", "-f", "box")
    return seen


def test_cp_both_ways_agrees(tools, tmp_path):
    seen = both(tools, cp_rules, tmp_path)
    assert seen["out box:/src/file existing"] == (0, {"existing": "<dir>",
                                                     "existing/file": "f\n"})
    assert seen["out box:/src/dir newdir"][1]["newdir/sub/b"] == "b\n"
    assert seen["out link ['-L']"] == (0, {"link": "f\n"}, False)
    assert seen["out link []"][2] is True
    assert "./dir/sub/b" in seen["in tree"] and "./contents/a" in seen["in tree"]


# ------------------------------------------------------------------------------------ build
DOCKERFILE = """\
FROM busybox AS build
WORKDIR /src
COPY app.txt .
RUN tr a-z A-Z < app.txt > /out && echo built >> /out
FROM busybox
ENV GREETING=hello
LABEL stage=final
COPY --from=build /out /out
CMD ["cat", "/out"]
"""


def test_multi_stage_build_agrees(tools, tmp_path):
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    (tmp_path / "app.txt").write_text("from the context\n")
    (tmp_path / ".dockerignore").write_text("ignored\n")
    (tmp_path / "ignored").write_text("never sent\n")

    def scenario(t: Tool) -> dict:
        proc = t("build", "-t", f"multi:{t.name}", str(tmp_path))
        image = json.loads(t("image", "inspect", f"multi:{t.name}").out)[0]
        out = t("run", "--rm", f"multi:{t.name}").out
        cfg = image["Config"]
        return {"built": proc.returncode, "id": image["Id"], "cmd": cfg["Cmd"],
                "env": cfg["Env"], "labels": cfg["Labels"],
                "layers": len(image["RootFS"]["Layers"]), "run": out}

    seen = {t.name: scenario(t) for t in tools}
    try:
        # the same daemon and the same context: Docker's build reuses portside's steps
        assert seen["portside"] == seen["docker"]
        assert seen["portside"]["run"] == "FROM THE CONTEXT\nbuilt\n"
        assert seen["portside"]["labels"] == {"stage": "final"}
        fail = tools[0]("build", "-", input=b"FROM busybox\nRUN echo boom && exit 7\n",
                        check=False)
        assert fail.returncode == 125 and "returned a non-zero code: 7" in fail.err
        assert "boom" in fail.err
        parse = tools[0]("build", "-", input=b"FROM busybox\nNOPE x\n", check=False)
        assert parse.returncode == 125
        assert parse.err.strip().splitlines()[-1] == \
            "Error: Dockerfile:2: unknown instruction: NOPE"
    finally:
        for t in tools:
            t("rmi", f"multi:{t.name}", check=False)
        tools[1]("image", "prune", "-f")


# ------------------------------------------------------------------------------------ images
def test_save_and_load_between_portside_and_docker(tools, docker_ctx, tmp_path):
    portside, docker = tools
    busybox_id = json.loads(docker("image", "inspect", BUSYBOX).out)[0]["Id"]
    portside("tag", BUSYBOX, "moved:1")
    archive = tmp_path / "moved.tar"
    portside("save", "-o", str(archive), "moved:1")
    portside("rmi", "moved:1")
    assert docker("load", "-i", str(archive)).out == "Loaded image: moved:1\n"
    docker("save", "-o", str(tmp_path / "back.tar"), "moved:1")
    docker("rmi", "moved:1")
    assert portside("load", "-i", str(tmp_path / "back.tar")).out == \
        "Loaded image: moved:1\n"
    assert json.loads(docker("image", "inspect", "moved:1").out)[0]["Id"] == busybox_id
    portside("rmi", "moved:1")
    # the default context's store and dockerd's, both ways, in a shell and with image copy
    docker_ctx.local("tag", BUSYBOX, "fromlocal:1")
    shell = subprocess.run(f"'{docker_ctx.portside}' save fromlocal:1 | "
                           f"'{docker_ctx.portside}' -c {docker_ctx.name} load",
                           shell=True, capture_output=True, env=docker_ctx.env())
    assert shell.returncode == 0 and shell.stdout == b"Loaded image: fromlocal:1\n"
    assert json.loads(docker("image", "inspect", "fromlocal:1").out)[0]["Id"] == busybox_id
    docker_ctx.local("rmi", "fromlocal:1")
    copied = docker_ctx.local("image", "copy", "--from", docker_ctx.name, "--to", "default",
                              "fromlocal:1")
    assert copied.out == f"Copied fromlocal:1 ({busybox_id[7:19]}) from {docker_ctx.name} " \
                         "to default\n"
    assert docker_ctx.local("run", "--rm", "fromlocal:1", "echo", "ran locally").out == \
        "ran locally\n"
    docker("rmi", "fromlocal:1")
    copied = docker_ctx.local("image", "copy", "--from", "default", "--to", docker_ctx.name,
                              "fromlocal:1")
    assert copied.out == f"Copied fromlocal:1 ({busybox_id[7:19]}) from default to " \
                         f"{docker_ctx.name}\n"
    assert docker("run", "--rm", "fromlocal:1", "echo", "back").out == "back\n"
    docker("rmi", "fromlocal:1")
    docker_ctx.local("rmi", "fromlocal:1")
    # --from defaults to the current context (here: default)
    missing = docker_ctx.local("image", "copy", "--to", docker_ctx.name, "absent:1",
                               check=False)
    assert (missing.returncode, missing.err.strip()) == (125, "Error: No such image: absent:1")


# ------------------------------------------------------------------------------------ errors
def test_errors_are_one_line_with_dockers_meaning(tools, docker_ctx, tmp_path):
    portside, docker = tools
    for args, message, code in ((["logs", "nope"], "No such container: nope", 125),
                                (["rmi", "nope:1"], "No such image: nope:1", 125),
                                (["volume", "rm", "nope"], "no such volume", 1)):
        mine, theirs = portside(*args, check=False), docker(*args, check=False)
        assert mine.returncode == code and theirs.returncode != 0
        assert len(mine.err.strip().splitlines()) == 1 and message in mine.err
        assert message.lower() in theirs.err.lower()
    only_portside = portside("image", "bootstrap", "busybox", check=False)
    assert only_portside.returncode == 125
    assert only_portside.err.strip().splitlines()[-1].startswith(
        f'Error: image bootstrap is not available in context "{docker_ctx.name}"')
    check = portside("system", "check", check=False)
    assert check.returncode == 125 and f'context "{docker_ctx.name}"' in check.err
    down = docker_ctx.local("context", "create", "down", "--docker",
                            f"host=unix://{tmp_path}/docker.sock")
    assert down.returncode == 0
    try:
        proc = docker_ctx.run(["ps"], context="down", check=False)
        assert proc.returncode == 125 and proc.out == ""
        assert proc.err == (f"Error: Cannot connect to the Docker daemon at unix://{tmp_path}/"
                            'docker.sock (context "down"): no such file or directory. Is the '
                            "docker daemon running?\n")
        proc = docker_ctx.local("ps", env={"PORTSIDE_CONTEXT": "down"}, check=False)
        assert proc.returncode == 125 and 'context "down"' in proc.err
        # Docker's variables select nothing: the default context answers
        proc = docker_ctx.local("ps", "-q", env={"DOCKER_HOST": f"unix://{tmp_path}/x.sock",
                                                "DOCKER_CONTEXT": "down"})
        assert proc.returncode == 0
    finally:
        docker_ctx.local("context", "rm", "down")
