"""The program's lean ``exec`` path reads a command line exactly as the full parser does, or
leaves it to the full parser: for every line of a corpus of flag combinations,
:func:`portside.engine.lean.parse_exec` gives either None or the full parser's values; the common
forms take the lean path; the rest fall back. (tests/integration/test_lean_exec.py runs both
paths against a real container.)"""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest

from portside.engine import __main__ as program
from portside.engine import cli, lean
from portside.engine.errors import NotFound

pytestmark = pytest.mark.unit

FIELDS = ("root", "context", "container", "command", "detach", "interactive", "tty", "env",
          "env_file", "workdir", "user", "privileged", "detach_keys")

PREFIXES = [[], ["--root", "/r"], ["--root=/r"], ["-c", "default"], ["--context", "x"],
            ["--context=x", "--root", "/r"], ["-c=x"], ["--root"], ["-v"], ["--debug"]]
VERBS = [["exec"], ["container", "exec"], ["container"], ["run"]]
OPTIONS = [[], ["-d"], ["-i"], ["-t"], ["-it"], ["-ti"], ["-dit"], ["--detach"],
           ["--interactive", "--tty"], ["--privileged"], ["-e", "A=1"], ["-e", "A"],
           ["--env", "A=1", "-e", "B=2"], ["--env=A=1"], ["--env-file", "/f"],
           ["--env-file=/f", "--env-file", "/g"], ["-w", "/tmp"], ["--workdir=/tmp"],
           ["-u", "1000:1000"], ["--user", "nobody"], ["--user=nobody"], ["--detach-keys", "ctrl-a"],
           ["-w", ""], ["-uroot"], ["-eA=1"], ["-e=A=1"], ["-ie"], ["-ix"], ["-e", "-x"],
           ["--tty=1"], ["-h"], ["--help"], ["--nosuch"], ["-"], ["--"], ["--det"], ["-e"]]
TAILS = [[], ["ctr"], ["ctr", "true"], ["ctr", "ls", "-l"], ["ctr", "-it", "sh"],
         ["ctr", "--", "true"], ["ctr", "sh", "-c", "echo -- $A"], ["ctr", "--help"],
         ["ctr", "-e", "X"], ["", "true"]]


def _full(argv: list[str]) -> dict | None:
    """The full parser's fields, or None when it refuses the line (or shows help)."""
    try:
        ns = cli.parse(list(argv))
    except (cli.UsageError, cli._HelpShown):
        return None
    if ns._handler.__name__ != "exec_":
        return None
    return {k: getattr(ns, k) for k in FIELDS}


def _corpus():
    for prefix, verb, tail in itertools.product(PREFIXES, VERBS, TAILS):
        yield [*prefix, *verb, *tail]
    for verb, (o1, o2), tail in itertools.product(VERBS[:2], itertools.combinations(OPTIONS, 2),
                                                  TAILS):
        yield [*verb, *o1, *o2, *tail]


def test_every_line_reads_as_the_full_parser_reads_it_or_falls_back():
    lean_lines = fallbacks = 0
    for argv in _corpus():
        line = lean.parse_exec(list(argv))
        if line is None:
            fallbacks += 1
            continue
        lean_lines += 1
        assert {k: line[k] for k in FIELDS} == _full(argv), argv
    # the corpus exercises both outcomes in earnest
    assert lean_lines > 3000 and fallbacks > 3000, (lean_lines, fallbacks)


@pytest.mark.parametrize("argv", [
    ["exec", "ctr", "true"],
    ["exec", "-it", "ctr", "sh"],
    ["exec", "-i", "-e", "A=1", "--env-file", "/f", "-w", "/tmp", "-u", "1000:1000", "ctr",
     "env"],
    ["exec", "-d", "--privileged", "--detach-keys", "ctrl-a", "ctr", "sleep", "9"],
    ["--root", "/r", "-c", "default", "container", "exec", "--user=nobody", "ctr", "id"],
    ["exec", "ctr", "ls", "-l", "--color"],
])
def test_common_lines_take_the_lean_path(argv):
    line = lean.parse_exec(argv)
    assert line is not None
    assert {k: line[k] for k in FIELDS} == _full(argv)


@pytest.mark.parametrize("argv", [
    ["exec", "ctr"],                     # no command: the full parser's message
    ["exec"],
    ["exec", "--help"], ["exec", "-h", "ctr", "x"],
    ["exec", "--", "ctr", "x"], ["exec", "ctr", "--", "x"],
    ["exec", "-uroot", "ctr", "id"],     # glued values
    ["exec", "-e", "-x", "ctr", "env"],  # a value like a flag
    ["exec", "--det", "ctr", "x"],       # abbreviations are refused by the full parser
    ["exec", "--tty=1", "ctr", "x"],
    ["-v", "exec", "ctr", "x"], ["--root", "exec"],
    ["ps"], ["run", "busybox", "exec"],
])
def test_other_lines_fall_back(argv):
    assert lean.parse_exec(argv) is None


def test_the_program_sends_exec_lines_to_the_lean_path_and_others_to_the_command_line(
        monkeypatch):
    took: list[tuple[str, object]] = []
    monkeypatch.setattr(lean, "run_exec", lambda line, exiting=False: took.append(
        ("lean", line["container"])) or 7)
    monkeypatch.setattr(cli, "main", lambda argv, exiting=False: took.append(("full", argv)) or 9)
    assert program.main(["exec", "-i", "ctr", "true"]) == 7
    assert program.main(["exec", "--", "ctr", "true"]) == 9
    assert program.main(["ps", "-a"]) == 9
    monkeypatch.setenv("PORTSIDE_LEAN", "0")
    assert program.main(["exec", "ctr", "true"]) == 9
    assert took == [("lean", "ctr"), ("full", ["exec", "--", "ctr", "true"]),
                    ("full", ["ps", "-a"]), ("full", ["exec", "ctr", "true"])]


def test_a_closed_standard_stream_is_left_to_the_full_command_line(monkeypatch):
    assert lean.streams_usable(interactive=True) == all(
        getattr(s, "buffer", None) is not None for s in (sys.stdin, sys.stdout, sys.stderr))
    monkeypatch.setattr(sys, "stdin", None)
    assert lean.streams_usable(interactive=False) is (
        getattr(sys.stdout, "buffer", None) is not None
        and getattr(sys.stderr, "buffer", None) is not None)
    assert not lean.streams_usable(interactive=True)


def test_guarded_ends_like_the_command_line(monkeypatch, capsys):
    def raises(exc):
        def body():
            raise exc
        return body

    assert lean.guarded(lambda: 3) == 3
    assert lean.guarded(raises(NotFound("no such container: x"))) == 125
    assert capsys.readouterr().err == "Error: no such container: x\n"
    assert lean.guarded(raises(KeyboardInterrupt())) == 130
    assert lean.guarded(raises(BrokenPipeError())) == 0
    monkeypatch.delenv("PORTSIDE_DEBUG", raising=False)
    assert lean.guarded(raises(ValueError("bad"))) == 125
    assert capsys.readouterr().err == ("Error: internal error: ValueError: bad "
                                       "(set PORTSIDE_DEBUG=1 for the traceback)\n")


def test_the_lean_path_imports_no_parser(tmp_path):
    """What the lean path is for: an ``exec`` line runs without argparse or the command table
    (the container does not exist here; the answer is the engine's one line)."""
    program_text = ("import sys\nfrom portside.engine.__main__ import main\n"
                    "code = main(sys.argv[1:])\n"
                    "print(code, 'argparse' in sys.modules, 'portside.engine.cli' in sys.modules)")
    env = {"PORTSIDE_ROOT": str(tmp_path), "PATH": "/usr/bin:/bin",
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    lean_run = subprocess.run([sys.executable, "-c", program_text, "exec", "nosuch", "true"],
                              capture_output=True, text=True, env=env, timeout=60)
    full_run = subprocess.run([sys.executable, "-c", program_text, "exec", "nosuch", "true"],
                              capture_output=True, text=True,
                              env=dict(env, PORTSIDE_LEAN="0"), timeout=60)
    assert lean_run.stdout == "125 False False\n", lean_run.stderr
    assert full_run.stdout == "125 True True\n", full_run.stderr
    assert lean_run.stderr == full_run.stderr == "Error: no such container: nosuch\n"
