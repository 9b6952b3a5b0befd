"""The ``portside`` program's lean path for ``exec`` and ``run``: no argument parser.

``portside exec CTR CMD`` and ``portside run --rm IMG CMD`` are the commands people time against
Docker, and a good part of what the full command line costs before the engine is even asked is
its own start: importing ``argparse`` and building the parser (~10 ms for ``exec``, ~10-15 ms
for ``run`` with its ~60 flags). This module reads the common forms of those two command lines
by hand, with nothing but ``os`` and ``sys``, fills in every other field with the parser's
defaults, and calls the very same handler of the command table through the same
:func:`.cli.run_handler` the full command line uses: nothing but the reading of the line
differs. The outcome goes through :func:`guarded`, shared with :func:`.cli.main` too.

What it takes (anything else, and every malformed line, goes to the full command line, which
then answers as it always did: :func:`parse` returns None)::

    [--root DIR] [-c NAME | --context NAME]          (also as --long=VALUE)
    exec | container exec   [EXEC FLAGS] CONTAINER COMMAND [ARG...]
    run  | container run    [RUN FLAGS]  IMAGE [COMMAND [ARG...]]

with the flags in :data:`EXEC` and :data:`RUN` (clusters of flags without a value such as
``-it``; a flag's value as the next word or ``--long=VALUE``). Everything after the container
or image is the command, as with the full parser's ``REMAINDER``. A value that starts with
``-``, an option glued to its value (``-uroot``), ``--``, help, any flag not in the tables (or
whose value the parser converts, such as ``--cpu-shares``) falls back. ``PORTSIDE_LEAN=0`` turns
the lean path off (the tests compare the two; tests/unit/test_lean_parse.py checks the tables'
defaults against the parser's).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # annotations only (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Callable


class Grammar:
    """The flags of one command the lean path reads: ``flags`` take no value (``store_true``),
    ``valued`` take one (``lists`` among their fields collect every use), ``defaults`` are the
    parser's for every field of the command (those of flags not read here too), ``positional``
    names the word before the command (``container``, ``image``), ``handler`` the command
    table's handler as ``module:function``."""

    def __init__(self, *, flags: dict[str, str], valued: dict[str, str], lists: set[str],
                 defaults: dict[str, Any], positional: str, command_optional: bool,
                 handler: str) -> None:
        self.flags, self.valued, self.lists = flags, valued, lists
        self.defaults, self.positional = defaults, positional
        self.command_optional, self.handler = command_optional, handler


#: ``exec``: the flags of :func:`portside.engine.commands.containers._exec_args`, all of them.
EXEC = Grammar(
    flags={"-d": "detach", "--detach": "detach", "-i": "interactive",
           "--interactive": "interactive", "-t": "tty", "--tty": "tty",
           "--privileged": "privileged"},
    valued={"-e": "env", "--env": "env", "--env-file": "env_file", "-w": "workdir",
            "--workdir": "workdir", "-u": "user", "--user": "user",
            "--detach-keys": "detach_keys"},
    lists={"env", "env_file"},
    defaults={"detach": False, "interactive": False, "tty": False, "env": [], "env_file": [],
              "workdir": "", "user": "", "privileged": False, "detach_keys": None},
    positional="container", command_optional=False,
    handler="portside.engine.commands.containers:exec_")

#: ``run``: the common flags of :func:`portside.engine.commands.container_options.
#: create_arguments` whose values the parser keeps as text.
RUN = Grammar(
    flags={"-d": "detach", "--detach": "detach", "-i": "interactive",
           "--interactive": "interactive", "-t": "tty", "--tty": "tty", "--rm": "rm",
           "--privileged": "privileged", "--read-only": "read_only", "--init": "init",
           "-P": "publish_all", "--publish-all": "publish_all"},
    valued={"--name": "name", "-e": "env", "--env": "env", "--env-file": "env_file",
            "-w": "workdir", "--workdir": "workdir", "-u": "user", "--user": "user",
            "-h": "hostname", "--hostname": "hostname", "--network": "network",
            "--net": "network", "-v": "volume", "--volume": "volume", "--mount": "mount",
            "--tmpfs": "tmpfs", "-l": "label", "--label": "label", "-p": "publish",
            "--publish": "publish", "--entrypoint": "entrypoint", "--cap-add": "cap_add",
            "--cap-drop": "cap_drop", "--security-opt": "security_opt", "--ulimit": "ulimit",
            "--group-add": "group_add", "-m": "memory", "--memory": "memory",
            "--shm-size": "shm_size", "--restart": "restart", "--stop-signal": "stop_signal",
            "--add-host": "add_host", "--dns": "dns", "--device": "device", "--gpus": "gpus",
            "--detach-keys": "detach_keys", "--sig-proxy": "sig_proxy", "--pull": "pull",
            "--runtime": "runtime"},
    lists={"env", "env_file", "volume", "mount", "tmpfs", "label", "publish", "cap_add",
           "cap_drop", "security_opt", "ulimit", "group_add", "add_host", "dns", "device"},
    defaults={"detach": False, "name": None, "interactive": False, "tty": False, "rm": False,
              "hostname": None, "domainname": "", "env": [], "env_file": [], "workdir": None,
              "user": None, "group_add": [], "entrypoint": None, "volume": [], "mount": [],
              "volumes_from": [], "tmpfs": [], "shm_size": None, "memory": None,
              "memory_swap": None, "cpus": None, "cpu_shares": 0, "pids_limit": None,
              "cap_add": [], "cap_drop": [], "privileged": False, "read_only": False,
              "security_opt": [], "stop_signal": None, "stop_timeout": None, "label": [],
              "label_file": [], "restart": "no", "network": "default", "publish": [],
              "publish_all": False, "expose": [], "add_host": [], "dns": [], "gpus": None,
              "gpus_optional": False, "device": [], "ulimit": [], "init": False,
              "platform": None, "runtime": None, "locked": False, "pull": "missing", "attach": [],
              "detach_keys": "ctrl-p,ctrl-q", "sig_proxy": "true"},
    positional="image", command_optional=True,
    handler="portside.engine.commands.containers:run")

GRAMMARS = {"exec": EXEC, "run": RUN}
#: Global options before the command word that take a value.
_GLOBAL_VALUED = {"--root": "root", "-c": "context", "--context": "context"}


def enabled() -> bool:
    """Whether the lean path may answer (``PORTSIDE_LEAN=0`` turns it off)."""
    return os.environ.get("PORTSIDE_LEAN", "1") != "0"


def parse(argv: list[str]) -> tuple[Grammar, dict[str, Any]] | None:
    """The command's grammar and the fields of an ``exec`` or ``run`` command line (the full
    parser's names, with its defaults for every flag not given, plus ``root``, ``context`` and
    ``_command``), or None for any line this does not read exactly as the full parser would
    (the full command line then takes it)."""
    if "--" in argv:
        return None  # argparse drops a "--" in places; not worth mirroring
    out: dict[str, Any] = {"version": False, "root": None, "context": None}
    i, n = 0, len(argv)
    # global options, then the command word(s)
    while i < n and argv[i].startswith("-"):
        name, eq, value = argv[i].partition("=")
        if name not in _GLOBAL_VALUED or name == "-c" and eq:
            return None
        if not eq:
            if i + 1 >= n or argv[i + 1].startswith("-"):
                return None
            value, i = argv[i + 1], i + 1
        out[_GLOBAL_VALUED[name]] = value
        i += 1
    if i < n and argv[i] in GRAMMARS:
        verb = out["_command"] = argv[i]
        i += 1
    elif argv[i:i + 1] == ["container"] and i + 1 < n and argv[i + 1] in GRAMMARS:
        out["_command"], out["_subcommand"] = "container", argv[i + 1]
        verb = argv[i + 1]
        i += 2
    else:
        return None
    g = GRAMMARS[verb]
    for key, value in g.defaults.items():
        out[key] = list(value) if isinstance(value, list) else value
    # the command's options, up to the container or image
    while i < n and argv[i].startswith("-"):
        word = argv[i]
        name, eq, value = word.partition("=")
        if word in g.flags:
            out[g.flags[word]] = True
        elif word in g.valued or name.startswith("--") and name in g.valued:
            if not eq:
                if i + 1 >= n or argv[i + 1].startswith("-"):
                    return None
                value, i = argv[i + 1], i + 1
            field = g.valued[name]
            if field in g.lists:
                out[field].append(value)
            else:
                out[field] = value
        elif len(word) > 2 and word[1] != "-" and all(f"-{c}" in g.flags for c in word[1:]):
            for c in word[1:]:  # a cluster of flags: -it, -dit
                out[g.flags[f"-{c}"]] = True
        else:
            return None  # -h/--help, unknown flags, -uroot: the full parser's business
        i += 1
    if i >= n or i + 1 >= n and not g.command_optional:
        return None  # no container/image or no command: the full parser's message
    out[g.positional], out["command"] = argv[i], argv[i + 1:]
    return g, out


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
        _error_line(f"Error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug of ours: one line, the traceback only on request
        if os.environ.get("PORTSIDE_DEBUG"):
            raise
        _error_line(f"Error: internal error: {type(exc).__name__}: {exc} "
                    f"(set PORTSIDE_DEBUG=1 for the traceback)\n")
        return 125


def _error_line(text: str) -> None:
    """Write the outcome's line on standard error after what standard output holds (either may
    be closed: ``portside … >&-`` leaves ``sys.stdout`` None, and that must not end in a
    traceback)."""
    if sys.stdout is not None:
        sys.stdout.flush()
    if sys.stderr is not None:
        sys.stderr.write(text)


def run(grammar: Grammar, fields: dict[str, Any], *, exiting: bool = False) -> int:
    """Run a line :func:`parse` read: the command table's handler through
    :func:`.cli.run_handler`, as the full command line runs it; returns the exit status."""

    def body() -> int:
        import importlib
        from types import SimpleNamespace

        from .cli import run_handler

        module, _, name = grammar.handler.partition(":")
        handler = getattr(importlib.import_module(module), name)
        return run_handler(handler, SimpleNamespace(**fields), exiting=exiting)

    return guarded(body)
