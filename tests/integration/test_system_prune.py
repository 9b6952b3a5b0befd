"""``system prune`` through the real CLI: what it removes with and without ``-a``/``--volumes``,
its filters, Docker's output, and its confirmation (asked only at a terminal)."""

from __future__ import annotations

import json
import os
import pty
import subprocess

import pytest

from conftest import PORTSIDE  # type: ignore[import-not-found]

pytestmark = pytest.mark.integration


@pytest.fixture
def scene(cli, busybox_image, tmp_path):
    """A running container, a stopped one with an anonymous volume, an unused network, a
    dangling image and an unused tagged one; everything goes afterwards."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo 1 > /v\n")
    cli("build", "-q", "-t", "t:1", str(ctx))
    dangling = json.loads(cli("inspect", "t:1").out)[0]["Id"]
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo 2 > /v\n")
    cli("build", "-q", "-t", "t:1", str(ctx))   # the first t:1 is dangling now
    cli("tag", "t:1", "extra:1")
    cli("rmi", "t:1")
    live = cli("run", "-d", "--name", "live", "--network", "none", "busybox", "sleep", "60"
               ).out.strip()
    old = cli("run", "--name", "old", "--network", "none", "-v", "/data", "busybox", "true"
              ).out.strip() or cli("inspect", "-f", "{{.Id}}", "old").out.strip()
    cli("network", "create", "--subnet", "10.231.9.0/24", "unused-net")
    try:
        yield {"live": live, "old": old, "dangling": dangling}
    finally:
        ids = cli("ps", "-aq", "--no-trunc", check=False).out.split()
        if ids:
            cli("rm", "-f", "-v", *ids, check=False)
        cli("network", "rm", "unused-net", check=False)
        cli("volume", "prune", "-f", "-a", check=False)


def _names(cli) -> tuple[list[str], list[str], list[str]]:
    return (cli("ps", "-a", "--format", "{{.Names}}").out.split(),
            sorted(cli("images", "--format", "{{.Repository}}:{{.Tag}}").out.split()),
            cli("volume", "ls", "-q").out.split())


def test_without_a_terminal_it_refuses_in_one_line_and_removes_nothing(cli, scene):
    before = _names(cli)
    proc = cli("system", "prune", check=False)          # stdin is /dev/null: no terminal
    assert proc.returncode == 125 and proc.out == ""
    assert proc.err == ("Error: system prune needs confirmation and standard input is not a "
                        "terminal: use -f (--force) to do it without asking\n")
    assert _names(cli) == before


def test_force_removes_what_docker_removes_and_says_so(cli, scene):
    volume = cli("volume", "ls", "-q").out.split()
    assert len(volume) == 1
    out = cli("system", "prune", "-f").out
    sections = out.split("\n\n")
    assert sections[0] == f"Deleted Containers:\n{scene['old']}"
    assert sections[1] == "Deleted Networks:\nunused-net"
    assert sections[2].startswith("Deleted Images:\n") and \
        f"deleted: {scene['dangling']}" in sections[2].splitlines()
    assert sections[-1].startswith("Total reclaimed space: ") and out.endswith("\n")
    assert "Deleted Volumes:" not in out
    # the running container, its image, the tagged image and the volume stay
    containers, images, volumes = _names(cli)
    assert containers == ["live"] and images == ["busybox:latest", "extra:1"]
    assert volumes == volume
    # -a and --volumes: every unused image and the anonymous volume too
    out = cli("system", "prune", "-f", "-a", "--volumes").out
    assert f"Deleted Volumes:\n{volume[0]}\n\n" in out
    assert "untagged: extra:1\n" in out and "busybox" not in out
    assert _names(cli) == (["live"], ["busybox:latest"], [])


def test_filters_by_label_and_age(cli, scene):
    cli("run", "--name", "tagged", "--label", "prune=yes", "--network", "none", "busybox", "true")
    tagged = cli("inspect", "-f", "{{.Id}}", "tagged").out.strip()
    out = cli("system", "prune", "-f", "--filter", "label=prune=yes").out
    assert out.startswith(f"Deleted Containers:\n{tagged}\n\nTotal reclaimed space: ")
    assert sorted(_names(cli)[0]) == ["live", "old"]
    assert "unused-net" in cli("network", "ls", "--format", "{{.Name}}").out.split()
    # everything here is younger than an hour
    out = cli("system", "prune", "-f", "-a", "--filter", "until=1h").out
    assert out == "Total reclaimed space: 0B\n"
    proc = cli("system", "prune", "-f", "--volumes", "--filter", "until=1h", check=False)
    assert (proc.returncode, proc.err) == (
        125, 'Error: The "until" filter is not supported with "--volumes"\n')
    proc = cli("system", "prune", "-f", "--filter", "colour=red", check=False)
    assert (proc.returncode, proc.err) == (125, "Error: invalid filter 'colour'\n")
    out = cli("system", "prune", "-f", "--filter", "until=" + "2000-01-01T00:00:00Z").out
    assert out == "Total reclaimed space: 0B\n"


def _prune_at_a_terminal(cli, answer: bytes) -> str:
    """``system prune`` with a terminal on standard input, answering ``answer``."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([PORTSIDE, "system", "prune"], stdin=follower,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli.env())
        os.close(follower)
        follower = -1
        os.write(leader, answer + b"\n")
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert proc.returncode == 0, err
    return out.decode()


def test_at_a_terminal_it_asks_dockers_question(cli, scene):
    out = _prune_at_a_terminal(cli, b"n")
    assert out == ("WARNING! This will remove:\n  - all stopped containers\n"
                   "  - all networks not used by at least one container\n"
                   "  - all dangling images\n  - all dangling build cache\n\n"
                   "Are you sure you want to continue? [y/N] ")
    assert "old" in _names(cli)[0]
    out = _prune_at_a_terminal(cli, b"y")
    assert f"Deleted Containers:\n{scene['old']}\n" in out
    assert "old" not in _names(cli)[0]
