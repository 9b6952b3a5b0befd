"""The ``portside`` program's lean path for ``exec``: no argument parser, no command table.

``portside exec CTR CMD`` is the command people time against ``docker exec``, and most of what
the full command line costs before the container is even looked up is its own start: importing
``argparse`` and the command modules, and building the parser of ``exec`` (~15-20 ms of a ~65 ms
exec). This module reads the common forms of an ``exec`` command line by hand, with nothing but
``os`` and ``sys``, then makes the very same calls as the command table's handler
(:func:`portside.engine.commands.containers.exec_`): the engine from :func:`.api.from_env`, the
container from ``engine.containers.get``, and ``container.exec_attached`` with the caller's
streams. The outcome goes through :func:`guarded`, which the full command line
(:func:`portside.engine.cli.main`) uses too, so errors read and exit the same.

What it takes (anything else, and every malformed line, goes to the full command line, which
then answers exactly as it always did: :func:`parse_exec` returns None)::

    [--root DIR | --root=DIR] [-c NAME | --context NAME | --context=NAME]
    exec | container exec
    [-d|--detach] [-i|--interactive] [-t|--tty] [--privileged]   (and clusters such as -it)
    [-e|--env VAR[=VALUE]] [--env-file FILE] [-w|--workdir DIR] [-u|--user USER]
    [--detach-keys KEYS]        (each also as --long=VALUE)
    CONTAINER COMMAND [ARG...]

Everything after the container is the command, as with the full parser's ``REMAINDER``. A
value that starts with ``-``, an option glued to its value (``-uroot``), ``--``, help and
anything unknown fall back. ``PORTSIDE_LEAN=0`` turns the lean path off (the tests compare the
two).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # annotations only (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Callable

#: ``exec``'s flags that take no value (long name -> the field it sets).
_EXEC_FLAGS = {"-d": "detach", "--detach": "detach", "-i": "interactive",
               "--interactive": "interactive", "-t": "tty", "--tty": "tty",
               "--privileged": "privileged"}
#: ``exec``'s flags that take one value; a list field collects each use (``action="append"``).
_EXEC_VALUED = {"-e": "env", "--env": "env", "--env-file": "env_file", "-w": "workdir",
                "--workdir": "workdir", "-u": "user", "--user": "user",
                "--detach-keys": "detach_keys"}
_LISTS = ("env", "env_file")
#: Global options before the command word that take a value.
_GLOBAL_VALUED = {"--root": "root", "-c": "context", "--context": "context"}


def enabled() -> bool:
    """Whether the lean path may answer (``PORTSIDE_LEAN=0`` turns it off)."""
    return os.environ.get("PORTSIDE_LEAN", "1") != "0"


def parse_exec(argv: list[str]) -> dict[str, Any] | None:
    """An ``exec`` command line's fields (the full parser's names: ``container``, ``command``,
    ``detach``, ``interactive``, ``tty``, ``env``, ``env_file``, ``workdir``, ``user``, plus
    ``root`` and ``context``), or None for any line this does not read exactly as the full
    parser would (the full command line then takes it)."""
    out: dict[str, Any] = {"root": None, "context": None, "detach": False, "interactive": False,
                           "tty": False, "privileged": False, "env": [], "env_file": [],
                           "workdir": "", "user": "", "detach_keys": None}
    if "--" in argv:
        return None  # argparse drops a "--" in places; not worth mirroring
    i, n = 0, len(argv)
    # global options, then the command word(s)
    while i < n and argv[i].startswith("-"):
        word = argv[i]
        name, eq, value = word.partition("=")
        if name not in _GLOBAL_VALUED or name == "-c" and eq:
            return None
        if not eq:
            if i + 1 >= n or argv[i + 1].startswith("-"):
                return None
            value, i = argv[i + 1], i + 1
        out[_GLOBAL_VALUED[name]] = value
        i += 1
    if argv[i:i + 1] == ["exec"]:
        i += 1
    elif argv[i:i + 2] == ["container", "exec"]:
        i += 2
    else:
        return None
    # exec's options, up to the container
    while i < n and argv[i].startswith("-"):
        word = argv[i]
        if word in _EXEC_FLAGS:
            out[_EXEC_FLAGS[word]] = True
        elif word in _EXEC_VALUED or word.startswith("--") and \
                word.partition("=")[0] in _EXEC_VALUED:
            name, eq, value = word.partition("=")
            if not eq:
                if i + 1 >= n or argv[i + 1].startswith("-"):
                    return None
                value, i = argv[i + 1], i + 1
            field = _EXEC_VALUED[name]
            if field in _LISTS:
                out[field].append(value)
            else:
                out[field] = value
        elif len(word) > 2 and word[1] != "-" and all(f"-{c}" in _EXEC_FLAGS for c in word[1:]):
            for c in word[1:]:  # a cluster of flags: -it, -dit
                out[_EXEC_FLAGS[f"-{c}"]] = True
        else:
            return None  # --, -h/--help, unknown flags, -uroot: the full parser's business
        i += 1
    if i + 1 >= n:
        return None  # no container or no command: the full parser's message
    out["container"], out["command"] = argv[i], argv[i + 1:]
    return out


def guarded(body: Callable[[], int]) -> int:
    """Run a command's ``body`` and turn what it raised into the program's outcome, Docker's way:
    an :class:`~.errors.EngineError` is one ``Error: …`` line and its exit code (125 for the
    engine's own errors), ^C is 130, a reader that went away is 0, and a bug of ours is one line
    too (the traceback with ``PORTSIDE_DEBUG=1``). Shared by the full command line and the lean
    path, so both end alike."""
    from .errors import EngineError

    try:
        return body()
    except EngineError as exc:
        sys.stdout.flush()
        sys.stderr.write(f"Error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug of ours: one line, the traceback only on request
        if os.environ.get("PORTSIDE_DEBUG"):
            raise
        sys.stdout.flush()
        sys.stderr.write(f"Error: internal error: {type(exc).__name__}: {exc} "
                         f"(set PORTSIDE_DEBUG=1 for the traceback)\n")
        return 125


def streams_usable(interactive: bool) -> bool:
    """Whether the standard streams are the ordinary ones the lean path hands over (a closed
    descriptor leaves one None: the full command line handles that)."""
    return all(getattr(s, "buffer", None) is not None
               for s in (sys.stdout, sys.stderr, *((sys.stdin,) if interactive else ())))


def run_exec(line: dict[str, Any], *, exiting: bool = False) -> int:
    """Run a parsed ``exec`` line (:func:`parse_exec`) as the command table's handler does;
    returns the exit status."""

    def body() -> int:
        from .api import from_env
        from .envvars import exec_environment

        engine = from_env(root=line["root"], context=line["context"], program=True)
        try:
            if not line["command"]:  # pragma: no cover - parse_exec never gives one
                from .errors import InvalidArgument

                raise InvalidArgument("exec requires at least 2 arguments")
            env = exec_environment(line["env_file"], line["env"])
            container = engine.containers.get(line["container"])
            sys.stdout.flush()
            code = container.exec_attached(
                line["command"], sys.stdin.buffer if line["interactive"] else None,
                sys.stdout.buffer, sys.stderr.buffer, tty=line["tty"], environment=env,
                workdir=line["workdir"], user=line["user"], detach=line["detach"])
        finally:
            engine.close(keep_database=exiting)
        sys.stdout.flush()
        return code if isinstance(code, int) and not isinstance(code, bool) else 0

    return guarded(body)
