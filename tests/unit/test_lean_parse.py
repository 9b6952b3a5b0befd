"""The program's lean path (engine/lean.py) reads an ``exec`` or ``run`` command line exactly as
the full parser does, or leaves it to the full parser: for every line of a corpus of flag
combinations, :func:`portside.engine.lean.parse` gives either None or the full parser's values
(every field, defaults included); the common forms take the lean path; the rest fall back.
(tests/integration/test_lean.py runs both paths against real containers.)"""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest

from portside.engine import __main__ as program
from portside.engine import cli, lean
from portside.engine.errors import NotFound

pytestmark = pytest.mark.unit

PREFIXES = [[], ["--root", "/r"], ["--root=/r"], ["-c", "default"], ["--context", "x"],
            ["--context=x", "--root", "/r"], ["-c=x"], ["--root"], ["-v"], ["--debug"]]
VERBS = [["exec"], ["container", "exec"], ["run"], ["container", "run"], ["container"], ["ps"]]
COMMON = [[], ["-d"], ["-i"], ["-t"], ["-it"], ["-ti"], ["-dit"], ["--detach"],
          ["--interactive", "--tty"], ["--privileged"], ["-e", "A=1"], ["-e", "A"],
          ["--env", "A=1", "-e", "B=2"], ["--env=A=1"], ["--env-file", "/f"],
          ["--env-file=/f", "--env-file", "/g"], ["-w", "/tmp"], ["--workdir=/tmp"],
          ["-u", "1000:1000"], ["--user", "nobody"], ["--user=nobody"],
          ["--detach-keys", "ctrl-a"], ["-w", ""], ["-uroot"], ["-eA=1"], ["-e=A=1"], ["-ie"],
          ["-ix"], ["-e", "-x"], ["--tty=1"], ["-h"], ["--help"], ["--nosuch"], ["-"], ["--"],
          ["--det"], ["-e"]]
RUN_ONLY = [["--rm"], ["--name", "n"], ["--name=n"], ["--network", "none"], ["--net=host"],
            ["-v", "/a:/b"], ["--volume=/a:/b:ro"], ["--mount", "type=tmpfs,dst=/x"],
            ["-p", "8080:80"], ["-P"], ["-itP"], ["-h", "host"], ["--hostname=h"],
            ["-l", "a=b", "--label", "c"], ["--entrypoint", ""], ["--entrypoint=sh"],
            ["--cap-add", "NET_ADMIN", "--cap-drop=ALL"], ["--security-opt", "seccomp=x"],
            ["--ulimit", "nofile=1:2"], ["--group-add", "44"], ["-m", "64m"],
            ["--shm-size=1g"], ["--restart", "always"], ["--stop-signal", "KILL"],
            ["--add-host", "a:1.2.3.4"], ["--dns", "1.1.1.1"], ["--device", "/dev/null"],
            ["--gpus", "all"], ["--sig-proxy=false"], ["--pull", "never"], ["--init"],
            ["--read-only"], ["--tmpfs", "/t"], ["--cpu-shares", "2"], ["-c", "2"],
            ["--stop-timeout", "3"], ["--memory-swap", "-1"], ["--label-file", "/l"],
            ["--locked"], ["-a", "stdout"], ["--rm=1"], ["-hhost"], ["-dh", "x"],
            ["--runtime", "runc"]]
TAILS = [[], ["x"], ["x", "true"], ["x", "ls", "-l"], ["x", "-it", "sh"], ["x", "--", "true"],
         ["x", "sh", "-c", "echo -- $A"], ["x", "--help"], ["x", "-e", "X"], ["", "true"]]


_PARSER: list = []


def _full(argv: list[str]) -> dict | None:
    """The full parser's fields, or None when it refuses the line (or shows help). (The
    container commands' parser, built once: what ``cli.parse`` builds for such a line, which
    it narrows further to the command named.)"""
    if not _PARSER:
        _PARSER.append(cli.build_parser(modules=("containers",)))
    try:
        ns = _PARSER[0].parse_args(list(argv))
    except (cli.UsageError, cli._HelpShown):
        return None
    if ns._handler.__name__ not in ("exec_", "run"):
        return None
    return {k: v for k, v in vars(ns).items() if k != "_handler"}


def _lean(argv: list[str]) -> dict | None:
    parsed = lean.parse(list(argv))
    return None if parsed is None else parsed[1]


def _corpus():
    for prefix, verb, tail in itertools.product(PREFIXES, VERBS, TAILS):
        yield [*prefix, *verb, *tail]
    for verb, (o1, o2), tail in itertools.product(VERBS[:2], itertools.combinations(COMMON, 2),
                                                  TAILS):
        yield [*verb, *o1, *o2, *tail]
    for verb, (o1, o2), tail in itertools.product(
            VERBS[2:4], itertools.combinations(COMMON + RUN_ONLY, 2), TAILS[:6]):
        yield [*verb, *o1, *o2, *tail]


def test_every_line_reads_as_the_full_parser_reads_it_or_falls_back():
    taken = {"exec": 0, "run": 0}
    fallbacks = 0
    for argv in _corpus():
        line = _lean(argv)
        if line is None:
            fallbacks += 1
            continue
        taken["exec" if "container" in line else "run"] += 1
        assert line == _full(argv), argv
    # the corpus exercises both outcomes in earnest
    assert taken["exec"] > 3000 and taken["run"] > 10000 and fallbacks > 10000, (taken,
                                                                                  fallbacks)


def test_the_defaults_are_the_parsers():
    """Every field the full parser sets has the lean path's default (a flag added to
    create_arguments without one here would make the lean path's namespace incomplete)."""
    for verb, target in (("exec", "x"), ("run", "x")):
        full = _full([verb, target, "true"])
        assert full is not None
        grammar = lean.GRAMMARS[verb]
        fields = {k for k in full if k not in ("version", "root", "context", "_command",
                                               grammar.positional, "command")}
        assert set(grammar.defaults) == fields
        assert {k: full[k] for k in fields} == grammar.defaults


@pytest.mark.parametrize("argv", [
    ["exec", "ctr", "true"],
    ["exec", "-it", "ctr", "sh"],
    ["exec", "-i", "-e", "A=1", "--env-file", "/f", "-w", "/tmp", "-u", "1000:1000", "ctr",
     "env"],
    ["exec", "-d", "--privileged", "--detach-keys", "ctrl-a", "ctr", "sleep", "9"],
    ["--root", "/r", "-c", "default", "container", "exec", "--user=nobody", "ctr", "id"],
    ["exec", "ctr", "ls", "-l", "--color"],
    ["run", "--rm", "--network", "none", "busybox", "true"],
    ["run", "-d", "--name", "web", "-p", "8080:80", "-v", "/data:/data:ro", "img"],
    ["run", "--rm", "-it", "-e", "A=1", "-w", "/w", "-u", "1000", "img", "sh", "-c", "x"],
    ["container", "run", "--rm", "--net=host", "--entrypoint", "", "img", "ls", "-l"],
])
def test_common_lines_take_the_lean_path(argv):
    line = _lean(argv)
    assert line is not None
    assert line == _full(argv)


@pytest.mark.parametrize("argv", [
    ["exec", "ctr"],                     # no command: the full parser's message
    ["exec"], ["run"],
    ["exec", "--help"], ["exec", "-h", "ctr", "x"], ["run", "--help"],
    ["exec", "--", "ctr", "x"], ["exec", "ctr", "--", "x"], ["run", "img", "--", "x"],
    ["exec", "-uroot", "ctr", "id"],     # glued values
    ["exec", "-e", "-x", "ctr", "env"],  # a value like a flag
    ["exec", "--det", "ctr", "x"],       # abbreviations are refused by the full parser
    ["exec", "--tty=1", "ctr", "x"],
    ["run", "--cpu-shares", "2", "img"],  # a value the parser converts
    ["run", "--stop-timeout", "x", "img"],
    ["-v", "exec", "ctr", "x"], ["--root", "exec"],
    ["ps"], ["create", "busybox", "exec"], ["image", "run"],
])
def test_other_lines_fall_back(argv):
    assert lean.parse(argv) is None


def test_the_program_sends_exec_and_run_lines_to_the_lean_path_others_to_the_command_line(
        monkeypatch):
    took: list[tuple[str, object]] = []
    monkeypatch.setattr(lean, "run", lambda grammar, line, exiting=False: took.append(
        ("lean", line.get("container") or line.get("image"))) or 7)
    monkeypatch.setattr(cli, "main", lambda argv, exiting=False: took.append(("full", argv)) or 9)
    assert program.main(["exec", "-i", "ctr", "true"]) == 7
    assert program.main(["run", "--rm", "img"]) == 7
    assert program.main(["exec", "--", "ctr", "true"]) == 9
    assert program.main(["ps", "-a"]) == 9
    monkeypatch.setenv("PORTSIDE_LEAN", "0")
    assert program.main(["exec", "ctr", "true"]) == 9
    assert took == [("lean", "ctr"), ("lean", "img"), ("full", ["exec", "--", "ctr", "true"]),
                    ("full", ["ps", "-a"]), ("full", ["exec", "ctr", "true"])]


def test_guarded_ends_like_the_command_line(monkeypatch, capsys):
    def raises(exc):
        def body():
            raise exc
        return body

    assert lean.guarded(lambda: 3) == 3
    assert lean.guarded(raises(NotFound("No such container: x"))) == 125
    assert capsys.readouterr().err == "Error: No such container: x\n"
    assert lean.guarded(raises(KeyboardInterrupt())) == 130
    assert lean.guarded(raises(BrokenPipeError())) == 0
    monkeypatch.delenv("PORTSIDE_DEBUG", raising=False)
    assert lean.guarded(raises(ValueError("bad"))) == 125
    assert capsys.readouterr().err == ("Error: internal error: ValueError: bad "
                                       "(set PORTSIDE_DEBUG=1 for the traceback)\n")


@pytest.mark.parametrize("argv, error", [
    (["exec", "nosuch", "true"], "Error: No such container: nosuch\n"),
    (["run", "--rm", "--pull", "never", "--network", "none", "nosuch/image:1", "true"],
     "Error: No such image: nosuch/image:1\n"),
])
def test_the_lean_path_imports_no_parser(tmp_path, argv, error):
    """What the lean path is for: an ``exec``/``run`` line runs without argparse (nothing here
    exists, so the answer is the engine's one line, the same on both paths)."""
    program_text = ("import sys\nfrom portside.engine.__main__ import main\n"
                    "code = main(sys.argv[1:])\n"
                    "print(code, 'argparse' in sys.modules)")
    env = {"PORTSIDE_ROOT": str(tmp_path), "PATH": "/usr/bin:/bin",
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    lean_run = subprocess.run([sys.executable, "-c", program_text, *argv],
                              capture_output=True, text=True, env=env, timeout=60)
    full_run = subprocess.run([sys.executable, "-c", program_text, *argv],
                              capture_output=True, text=True,
                              env=dict(env, PORTSIDE_LEAN="0"), timeout=60)
    assert lean_run.stdout == "125 False\n", lean_run.stderr
    assert full_run.stdout == "125 True\n", full_run.stderr
    assert lean_run.stderr == full_run.stderr == error
