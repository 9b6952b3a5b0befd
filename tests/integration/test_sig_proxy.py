"""A foreground ``run``, ``start -a`` or ``attach`` passes the signals it receives to its
container (Docker's ``--sig-proxy``, on by default): what ``timeout``, a batch system or ``kill``
sends the ``portside`` process reaches a container that traps it, and ``--sig-proxy=false``
turns that off (the client dies of the signal, the container runs on)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time

import pytest

from conftest import PORTSIDE  # type: ignore[import-not-found]

pytestmark = pytest.mark.integration

#: traps the signals it is sent and says so; TERM ends it with 7
TRAPS = ("for s in HUP USR1 USR2 QUIT ALRM INT; do trap \"echo got $s\" $s; done; "
         "trap 'echo got TERM; exit 7' TERM; echo ready; while true; do sleep 0.1; done")
#: the same, saying "tick" every 0.2 s: an attach that sees a tick is connected
TICKS = TRAPS.replace("echo ready; while true; do sleep 0.1; done",
                      "while true; do echo tick; sleep 0.2; done")


class Foreground:
    """A ``portside`` command in the foreground, its output read line by line."""

    def __init__(self, cli, *args: str) -> None:
        self.proc = subprocess.Popen([PORTSIDE, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     env=cli.env())

    def line(self, timeout: float = 20, skip: str | None = None) -> str:
        """The next line it prints but ``skip`` lines (fails the test after ``timeout``)."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            line = b""
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                assert left > 0 and select.select([fd], [], [], left)[0], \
                    f"no line within {timeout}s"
                byte = os.read(fd, 1)
                assert byte, f"it ended first: {line!r}, {self.proc.stderr.read()!r}"
                line += byte
            text = line.decode()
            if text != skip:
                return text

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture
def foreground(ctr):
    made: list[Foreground] = []

    def start(*args: str) -> Foreground:
        made.append(Foreground(ctr, *args))
        return made[-1]

    yield start
    for fg in made:
        fg.close()


@pytest.mark.parametrize("tty", [False, True], ids=["pipes", "tty"])
def test_timeout_stops_a_container_that_traps_term(ctr, tty):
    """``timeout`` signals portside run, not the container: the container must see TERM (with
    -t too: Docker's run proxies with a terminal as well)."""
    argv = ["timeout", "2", PORTSIDE, "run", "--rm", *(["-t"] if tty else []), "--network",
            "none", "busybox", "sh", "-c", TRAPS]
    proc = subprocess.run(argv, capture_output=True, env=ctr.env(), timeout=60,
                          stdin=subprocess.DEVNULL)
    out = proc.stdout.replace(b"\r\n", b"\n")
    assert out == b"ready\ngot TERM\n", proc.stderr
    assert proc.returncode == 124  # timeout's own status when it had to signal
    assert ctr("ps", "-aq").out == ""  # the run saw the exit and removed it (--rm)
    # timeout --preserve-status: the container's own status comes back through portside
    proc = subprocess.run(["timeout", "--preserve-status", *argv[1:]], capture_output=True,
                          env=ctr.env(), timeout=60, stdin=subprocess.DEVNULL)
    out = proc.stdout.replace(b"\r\n", b"\n")
    assert (proc.returncode, out) == (7, b"ready\ngot TERM\n"), proc.stderr


@pytest.mark.parametrize("attach", [[], ["-a", "stdout", "-a", "stderr"]], ids=["plain", "-a"])
def test_every_signal_reaches_the_container(ctr, foreground, attach):
    fg = foreground("run", *attach, "--name", "traps", "--network", "none", "busybox", "sh",
                    "-c", TRAPS)
    assert fg.line() == "ready\n"
    for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT, signal.SIGALRM):
        fg.proc.send_signal(sig)
        assert fg.line() == f"got {sig.name[3:]}\n"
    fg.proc.send_signal(signal.SIGTERM)
    assert fg.line() == "got TERM\n"
    assert fg.proc.wait(30) == 7
    doc = json.loads(ctr("inspect", "traps").out)[0]
    assert (doc["State"]["Status"], doc["State"]["ExitCode"]) == ("exited", 7)


def test_start_attached_passes_signals_on(ctr, foreground):
    ctr("create", "--name", "later", "--network", "none", "busybox", "sh", "-c", TRAPS)
    fg = foreground("start", "-a", "later")
    assert fg.line() == "ready\n"
    fg.proc.send_signal(signal.SIGUSR1)
    assert fg.line() == "got USR1\n"
    fg.proc.send_signal(signal.SIGTERM)
    assert fg.line() == "got TERM\n"
    assert fg.proc.wait(30) == 7


def test_attach_passes_signals_on_interrupt_too(ctr, foreground):
    ctr("run", "-d", "--name", "ticking", "--network", "none", "busybox", "sh", "-c", TICKS)
    fg = foreground("attach", "ticking")
    assert fg.line() == "tick\n"  # attached (the proxy is in place before it attaches)
    fg.proc.send_signal(signal.SIGHUP)
    assert fg.line(skip="tick\n") == "got HUP\n"
    fg.proc.send_signal(signal.SIGINT)  # ^C: Docker's attach passes it on too
    assert fg.line(skip="tick\n") == "got INT\n"
    fg.proc.send_signal(signal.SIGTERM)
    assert fg.line(skip="tick\n") == "got TERM\n"
    assert fg.proc.wait(30) == 7


def test_attach_sig_proxy_false_leaves_the_container_alone(ctr, foreground):
    ctr("run", "-d", "--name", "ticking", "--network", "none", "busybox", "sh", "-c", TICKS)
    fg = foreground("attach", "--sig-proxy=false", "ticking")
    assert fg.line() == "tick\n"
    fg.proc.send_signal(signal.SIGINT)  # ^C ends the client only
    assert fg.proc.wait(30) == -signal.SIGINT
    assert ctr("inspect", "-f", "{{.State.Running}}", "ticking").out.strip() == "true"
    assert "got" not in ctr("logs", "ticking").out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_sig_proxy_false_leaves_the_container_alone(ctr, foreground, sig):
    fg = foreground("run", "--sig-proxy=false", "--name", "alone", "--network", "none",
                    "busybox", "sh", "-c", TRAPS)
    assert fg.line() == "ready\n"
    fg.proc.send_signal(sig)
    assert fg.proc.wait(30) == -sig  # the client died of it, as Docker's does
    assert fg.proc.stdout.read() == b""
    assert ctr("inspect", "-f", "{{.State.Running}}", "alone").out.strip() == "true"
    assert "got" not in ctr("logs", "alone").out
    # it runs on without the client; its monitor records the exit
    ctr("kill", "-s", "TERM", "alone")
    assert ctr("wait", "alone").out.strip() == "7"


def test_a_bad_sig_proxy_value_is_dockers_error(ctr):
    for verb in (["run", "--sig-proxy=maybe", "busybox", "true"],
                 ["attach", "--sig-proxy=maybe", "nothing"]):
        bad = ctr(*verb, check=False)
        assert (bad.returncode, bad.err) == (125, (
            'Error: invalid argument "maybe" for "--sig-proxy" flag: strconv.ParseBool: '
            'parsing "maybe": invalid syntax\n'))
    assert ctr("ps", "-aq").out == ""  # nothing was made
