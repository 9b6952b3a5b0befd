"""The ``portside`` command line: one command table, Docker's names, flags, output and exit codes.

The table (:data:`COMMANDS`) is also what ``%container`` in a notebook parses, so a command line
means the same in both places. Each :class:`Command` declares its arguments on an
``argparse`` parser and has a handler ``handler(ctx, args)`` that writes Docker-like text to
``ctx.out`` and returns a Python value (``ps -q`` returns the ids) for the magics.

Modules are imported inside handlers, so ``portside ps`` pays only for what ``ps`` needs.

Exit codes follow Docker: 0 success, 125 an engine or usage error, 126/127 a container command
that cannot be invoked or found, otherwise the container's own status.
"""

from __future__ import annotations

import json
import os
import sys

from .errors import EngineError, InvalidArgument
from .records import field, record

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    import argparse
    from typing import Any, Callable, TextIO

    from .models.interface import EngineAPI


class UsageError(InvalidArgument):
    """A bad command line (unknown flag, missing argument)."""


def _Parser(**kw: Any) -> argparse.ArgumentParser:
    """argparse that raises instead of printing and exiting, so magics can show one line."""
    return _parser_class()(**kw)


def _parser_class() -> type[argparse.ArgumentParser]:
    """The class of :func:`_Parser`, made on the first parser: ``argparse`` is imported then,
    not with this module (the program's lean paths, :mod:`.lean`, call handlers without one)."""
    global _parser_type
    if _parser_type is None:
        import argparse

        class Parser(argparse.ArgumentParser):
            def error(self, message: str) -> None:  # type: ignore[override]
                raise UsageError(f"{self.prog}: {message}")

            def exit(self, status: int = 0,  # type: ignore[override]
                     message: str | None = None) -> None:
                if message:
                    raise UsageError(message.strip())
                raise _HelpShown(status)

        _parser_type = Parser
    return _parser_type


_parser_type: Any = None


class _HelpShown(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@record
class Context:
    """What a handler needs: the engine, where to write, where to read."""

    engine: EngineAPI
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    stdin: Any = None            # binary stream
    stdout_binary: Any = None    # binary stream for `save` to stdout, `cp -`
    interactive: bool = False    # a terminal is attached (progress bars, -t)
    magic: bool = False          # called from %container
    #: where long operations (pull, push, build, load) send their typed progress events; None
    #: means the handler draws them on the terminal itself
    progress: Callable[[Any], None] | None = None

    def print(self, *parts: Any) -> None:
        self.out.write(" ".join(str(p) for p in parts) + "\n")


@record
class Command:
    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[Context, argparse.Namespace], Any]
    aliases: tuple[str, ...] = ()
    group: str | None = None           # "image", "container", "volume", "network", "system", ...
    top_level: bool = False            # also reachable without the group (`images`, `rmi`)
    top_name: str | None = None        # name at top level when it differs (`image ls` -> `images`)


COMMANDS: list[Command] = []


def command(name: str, help: str, *, group: str | None = None, aliases: tuple[str, ...] = (),
            top_level: bool = False, top_name: str | None = None):
    """Decorator registering ``handler`` with an ``arguments`` function set on it later."""

    def wrap(fn: Callable) -> Callable:
        args_fn = getattr(fn, "_arguments", lambda p: None)
        COMMANDS.append(Command(name, help, args_fn, fn, aliases, group, top_level, top_name))
        return fn

    return wrap


def arguments(fn_args: Callable[[argparse.ArgumentParser], None]):
    def wrap(fn: Callable) -> Callable:
        setattr(fn, "_arguments", fn_args)
        return fn
    return wrap


#: Every command module (engine/commands/<name>.py); each registers its commands on import.
COMMAND_MODULES = ("images", "system", "containers", "volumes", "networks", "build", "registry",
                   "repro", "slurm", "maintenance", "contexts")

#: Which modules define each top-level word, so a command line imports and builds only what it
#: uses (building the whole argparse tree costs ~80 ms). tests/unit/test_cli_index.py checks this
#: table against the modules themselves.
COMMAND_INDEX: dict[str, tuple[str, ...]] = {
    "attach": ("containers",), "build": ("build",), "builder": ("build",),
    "commit": ("containers",), "container": ("containers",), "context": ("contexts",),
    "cp": ("containers",),
    "create": ("containers",), "diff": ("containers",), "events": ("system",),
    "exec": ("containers",), "export": ("containers",), "history": ("images",),
    "image": ("build", "contexts", "images", "registry", "repro"), "images": ("images",),
    "import": ("images",), "info": ("system",), "inspect": ("images",), "kill": ("containers",),
    "load": ("images",), "lock": ("repro",), "login": ("registry",), "logout": ("registry",),
    "logs": ("containers",), "manifest": ("registry",), "network": ("networks",),
    "pause": ("containers",), "port": ("containers",), "ps": ("containers",),
    "pull": ("registry",), "push": ("registry",), "rename": ("containers",),
    "restart": ("containers",), "rm": ("containers",), "rmi": ("images",),
    "run": ("containers",), "save": ("images",), "search": ("registry",),
    "slurm": ("slurm",),
    "start": ("containers",), "stats": ("containers",), "stop": ("containers",),
    "system": ("maintenance", "system"), "tag": ("images",), "top": ("containers",),
    "unpause": ("containers",), "unshare": ("maintenance",), "update": ("containers",),
    "version": ("system",), "volume": ("volumes",), "wait": ("containers",),
}
#: ``inspect`` looks through every kind of object, so it needs every module's inspector.
_NEEDS_ALL = {"inspect"}

_LOADED: set[str] = set()


def _load_commands(modules: tuple[str, ...] | None = None) -> None:
    """Import command modules (all of them by default); each registers its commands once."""
    import importlib

    for name in COMMAND_MODULES if modules is None else modules:
        if name in _LOADED:
            continue
        importlib.import_module(f"portside.engine.commands.{name}")
        _LOADED.add(name)


#: Global options that take a value (skipped when looking for the command word).
_GLOBAL_VALUED = ("--root", "--context", "-c")


def _words(argv: list[str]) -> tuple[str | None, str | None]:
    """The command word and the word after it (a group's subcommand), skipping the global
    options (``--root``, ``--context``/``-c``)."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in _GLOBAL_VALUED:
            i += 2
            continue
        if word.startswith(("--root=", "--context=")):
            i += 1
            continue
        if word.startswith("-"):
            return None, None
        nxt = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("-") else None
        return word, nxt
    return None, None


def _modules_for(argv: list[str]) -> tuple[str, ...] | None:
    """The command modules a command line needs, or None for all (help, unknown words)."""
    word, _ = _words(argv)
    if word is None or word in _NEEDS_ALL:
        return None
    return COMMAND_INDEX.get(word)


def _wants(cmd: "Command", word: str | None, sub: str | None) -> bool:
    """Whether ``cmd`` can be what the command line names (None: no narrowing)."""
    if word is None:
        return True
    if cmd.group == word:
        return sub is None or sub == cmd.name or sub in cmd.aliases
    if not cmd.group or cmd.top_level:
        name = cmd.top_name or cmd.name
        return word == name or (not cmd.group and word in cmd.aliases)
    return False


def build_parser(prog: str = "portside", modules: tuple[str, ...] | None = None,
                 words: tuple[str | None, str | None] = (None, None)) -> argparse.ArgumentParser:
    """The command tree as an argparse parser (shared by the CLI and the magics).

    ``modules`` and ``words`` narrow it to the commands a command line can mean (the CLI passes
    what argv needs; a narrowed parser that fails is rebuilt whole for Docker-like errors).
    """
    _load_commands(modules)
    wanted = None if modules is None else {f"portside.engine.commands.{m}" for m in modules}
    parser = _Parser(prog=prog, description="A daemonless container engine, Docker's commands.",
                     allow_abbrev=False)
    parser.add_argument("-v", "--version", action="store_true", help="print version information")
    parser.add_argument("--root", help="state folder of the default context "
                                       "(default: $PORTSIDE_ROOT)")
    parser.add_argument("-c", "--context", help="the context (engine) to use for this command "
                                                "(default: $PORTSIDE_CONTEXT, else the one set "
                                                "with 'context use')")
    sub = parser.add_subparsers(dest="_command", metavar="COMMAND", parser_class=_parser_class())
    groups: dict[str, Any] = {}
    group_help = {"image": "Manage images", "container": "Manage containers",
                  "volume": "Manage volumes", "network": "Manage networks",
                  "system": "Manage portside", "builder": "Manage builds",
                  "manifest": "Manage image manifests", "context": "Manage contexts",
                  "slurm": "A Slurm context's commands on the cluster's nodes"}
    for cmd in COMMANDS:
        if wanted is not None and cmd.handler.__module__ not in wanted:
            continue
        if not _wants(cmd, *words):
            continue
        if cmd.group and (words[0] is None or words[0] == cmd.group):
            if cmd.group not in groups:
                gp = sub.add_parser(cmd.group, help=group_help.get(cmd.group, ""),
                                    allow_abbrev=False)
                groups[cmd.group] = gp.add_subparsers(dest="_subcommand", metavar="COMMAND",
                                                      parser_class=_parser_class())
            p = groups[cmd.group].add_parser(cmd.name, help=cmd.help, aliases=list(cmd.aliases),
                                             allow_abbrev=False,
                                             prog=f"{prog} {cmd.group} {cmd.name}")
            cmd.arguments(p)
            p.set_defaults(_handler=cmd.handler)
        if not cmd.group or cmd.top_level:
            name = cmd.top_name or cmd.name
            p = sub.add_parser(name, help=cmd.help,
                               aliases=list(cmd.aliases) if not cmd.group else [],
                               allow_abbrev=False, prog=f"{prog} {name}")
            cmd.arguments(p)
            p.set_defaults(_handler=cmd.handler)
    return parser


def parse(argv: list[str], prog: str = "portside") -> argparse.Namespace:
    modules = _modules_for(argv)
    args = None
    if modules is not None:
        try:
            args = build_parser(prog, modules, _words(argv)).parse_args(argv)
        except UsageError:
            args = None  # rebuilt whole below, for Docker-like error messages
    if args is None:
        args = build_parser(prog).parse_args(argv)
    if getattr(args, "_handler", None) is None:
        if getattr(args, "_command", None):
            raise UsageError(f"{prog} {args._command}: a subcommand is required")
        raise UsageError(f"{prog}: a command is required (see '{prog} --help')")
    return args


def run(argv: list[str], ctx: Context) -> Any:
    """Parse and run one command line; returns the handler's value. Raises EngineError."""
    args = parse(argv)
    return args._handler(ctx, args)


def main(argv: list[str] | None = None, *, exiting: bool = False) -> int:
    """Run one command line; returns the exit status.

    ``exiting``: the process ends right after (the ``portside`` program): the metadata
    database's connections are left for the exit to drop, which skips the checkpoint SQLite
    does when the last connection closes; the write-ahead log is synced instead when the
    command wrote anything (:meth:`Database.sync_log`), and stays for the next command.
    """
    from .lean import guarded

    argv = list(sys.argv[1:] if argv is None else argv)
    return guarded(lambda: _main(argv, exiting))


def _main(argv: list[str], exiting: bool) -> int:
    if argv and argv[0] in ("-v", "--version"):
        argv = ["version", "--format", "portside version {{.Client.Version}}"]
    try:
        args = parse(argv)
    except _HelpShown as shown:
        return shown.status
    return run_handler(args._handler, args, exiting=exiting)


def run_handler(handler: Callable[[Context, Any], Any], args: Any, *, exiting: bool) -> int:
    """Call a command's handler with the program's context (the selected context's engine, the
    process's standard streams); returns the exit status. The full command line calls it with
    what the parser read, the program's lean paths (:mod:`.lean`) with what they read by hand
    (``args``: any object with the parser's attributes)."""
    engine = _engine(args)
    # a closed descriptor (`portside run ... <&-`) leaves sys.stdin/stdout None
    ctx = Context(engine=engine, stdin=getattr(sys.stdin, "buffer", None),
                  stdout_binary=getattr(sys.stdout, "buffer", None),
                  interactive=bool(sys.stdout and sys.stdout.isatty()))
    try:
        result = handler(ctx, args)
    finally:
        engine.close(keep_database=exiting)
    sys.stdout.flush()
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def _engine(args: Any) -> EngineAPI:
    """The engine of the context the command line selects (``-c``, ``PORTSIDE_CONTEXT``, the
    one chosen with ``context use``, ``default``: see :func:`.api.from_env`)."""
    from .api import from_env

    if getattr(args, "_command", None) == "context":
        # managing contexts needs no engine, and must work when the selected one is broken
        # (or, rootless, before the user's namespace is set up)
        return no_engine()
    if (getattr(args, "_command", None), getattr(args, "_subcommand", None)) == ("slurm", "ship"):
        # a Slurm client's helper: Slurm's commands must come from the user on the host, so
        # it never joins a rootless user's namespace (see SlurmEngine.local)
        from .api import local_engine

        return local_engine(args.root, program=False)
    return from_env(root=args.root, context=args.context, program=True)


class _NoEngine:
    """The engine object of the ``context`` commands, which manage contexts and use none."""

    def __getattr__(self, name: str) -> Any:
        raise InvalidArgument("the context commands use no engine")

    def close(self, *, keep_database: bool = False) -> None:
        pass


def no_engine() -> EngineAPI:
    """An engine object for a front's ``context`` commands: they use none, and making one
    (a local store, a rootless engine process, a connection) is what they must not need."""
    return _NoEngine()  # type: ignore[return-value]


# ---------------------------------------------------------------- helpers shared by commands
def parse_filters(items: list[str] | None) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"bad format of filter (expected name=value): {item}")
        filters.setdefault(key.strip().lower(), []).append(value.strip())
    return filters


def print_table(ctx: Context, fmt: str | None, rows: list[dict], default: str,
                headers: dict[str, str] | None = None) -> None:
    from .formatting import format_table

    text = format_table(fmt, rows, default=default, headers=headers)
    if text:
        ctx.out.write(text if text.endswith("\n") else text + "\n")


def print_object(ctx: Context, fmt: str | None, objects: list[Any]) -> None:
    from .formatting import format_object
    from .gotemplate import render

    if fmt and fmt != "json":
        for obj in objects:
            ctx.out.write(render(fmt, obj) + "\n")
        return
    if fmt == "json":
        ctx.out.write(json.dumps(objects) + "\n")
        return
    ctx.out.write(format_object(None, objects) + "\n")


def confirm(ctx: Context, message: str, what: str) -> bool:
    """Docker's ``[y/N]`` question, asked only of a person at a terminal: ``message`` goes to
    standard output and the answer is read from standard input (``y`` confirms).

    Nothing may wait for an answer that cannot come, so without a terminal on standard input
    (CI, a pipe, a closed stdin, a notebook) this refuses at once, in one line naming ``-f``.

    Returns:
        Whether the person answered ``y``.
    Raises:
        InvalidArgument: no terminal to ask.
    """
    stdin = ctx.stdin
    try:
        tty = stdin is not None and not ctx.magic and stdin.isatty()
    except (AttributeError, ValueError, OSError):
        tty = False
    if not tty:
        raise InvalidArgument(f"{what} needs confirmation and standard input is not a terminal: "
                              "use -f (--force) to do it without asking")
    ctx.out.write(message + " [y/N] ")
    ctx.out.flush()
    answer = stdin.readline()
    if isinstance(answer, bytes):
        answer = answer.decode(errors="replace")
    return answer.strip().lower() == "y"


class _TextSink:
    """A binary stream over a text one (a notebook's stdout has no ``.buffer``)."""

    def __init__(self, text: TextIO) -> None:
        import codecs

        self._text = text
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def write(self, data: bytes) -> int:
        self._text.write(self._decoder.decode(bytes(data)))
        return len(data)

    def flush(self) -> None:
        self._text.flush()

    def isatty(self) -> bool:
        return False


def binary_stream(text: TextIO):
    """The binary side of a text stream: its ``.buffer``, or an adapter that decodes UTF-8."""
    return getattr(text, "buffer", None) or _TextSink(text)


def add_locked_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--locked", action="store_true",
                   help="resolve images through portside.lock; any drift is an error")


def for_each(ctx: Context, names: list[str], fn: Callable[[str], Any], *,
             echo: bool = True) -> Any:
    """Apply ``fn`` to each name (``rm``, ``stop``, ``volume rm``...), printing each name done;
    a failure is one line on stderr and the others still run. Returns the names done, or exit
    status 1 when any failed."""
    done, failed = [], False
    for name in names:
        try:
            fn(name)
        except EngineError as exc:
            failed = True
            ctx.err.write(f"Error: {exc}\n")
            continue
        if echo:
            ctx.print(name)
        done.append(name)
    return 1 if failed else done


def inspect_each(ctx: Context, names: list[str], lookup: Callable[[str], dict],
                 fmt: str | None, what: str = "object") -> Any:
    """``inspect``: the documents ``lookup`` finds, printed once; a name it does not know is one
    line on stderr (exit status 1), as Docker does."""
    from .errors import NotFound

    found, failed = [], []
    for name in names:
        try:
            found.append(lookup(name))
        except NotFound:
            failed.append(name)
    if found or not failed:
        print_object(ctx, fmt, found)
    for name in failed:
        ctx.err.write(f"Error: No such {what}: {name}\n")
    return 1 if failed else found


def open_input(ctx: Context, path: str | None):
    if path in (None, "-"):
        if ctx.stdin is None:
            raise InvalidArgument("no input: give a file with -i or pipe one to standard input")
        return _NoClose(ctx.stdin)
    try:
        return open(path, "rb")
    except OSError as exc:
        raise InvalidArgument(f"cannot open {path}: {exc.strerror}") from exc


class _NoClose:
    def __init__(self, f) -> None:
        self._f = f

    def read(self, n: int = -1) -> bytes:
        return self._f.read(n)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
