"""``%container`` and ``%%container``: the whole ``portside`` command line inside a notebook.

A line magic runs any CLI command through the CLI's own command table
(:func:`portside.engine.cli.parse`), so ``%container run --gpus all -v /data:/data IMG`` means what
``portside run ...`` means. Handlers print Docker-like text and return Python values; the magic
shows listings (``ps``, ``images``, ``volume ls`` ...) as HTML tables that are also lists
(``ids = %container ps -q``), and streams everything else as it is printed.

Commands that only make sense in a notebook are handled here:

``%%container exec NAME [--shell] [-u USER] [-w DIR] [-e K=V]``
    The cell runs inside the running container: as Python through the agent
    (:mod:`portside.kernel.agent`, one namespace per container and user, kept across cells), or
    with ``sh -c`` (``--shell``), its output streamed.
``%container attach NAME`` / ``%container detach``
    Route every following cell to the container; lines starting with ``%container`` still run
    on the host. Tab completion then offers the container namespace's names.
``%container send NAME VAR...`` / ``%container recv NAME VAR...``
    Copy variables between the host kernel and the container's namespace.
``%%container build [-t NAME:TAG] [--build-arg K=V] [CONTEXT]``
    ``portside build``'s own command line (the same parser), with the cell as the Dockerfile
    and the notebook's folder as the default context; progress is drawn as widgets
    (:mod:`portside.kernel.widgets`) from the builder's own events. ``SOURCE_DATE_EPOCH`` comes
    from the notebook's ``portside.lock`` (recorded there on the first build), so a rebuild
    gives the same image id; the image's manifest names the notebook and cell it came from
    (``io.portside.source``).
``%container lock [IMAGE...]``
    Pin the images this notebook built, ran or pulled in ``portside.lock`` (:mod:`portside.engine.lock`);
    with ``locked = true`` in it, names resolve through it and drift is an error (the engine
    enforces it, for every front alike).
``%container commit NAME REPO:TAG`` / ``%container dockerfile NAME``
    A commit records the cells run in the container (``io.portside.recipe``), and ``dockerfile``
    prints a Dockerfile that redoes them from the base image (:mod:`portside.engine.recipe`).

IPython's ``{expr}`` expansion is off for these magics (``no_var_expand``), so Go templates
(``--format "{{.Names}}"``) reach the command intact; ``$name`` and ``${name}`` still insert a
variable of the notebook (``%container images -q $base``), and ``$$`` is a ``$``.

A bad command line is an IPython ``UsageError`` (one line, IPython's own word for it); an engine
error (no such image, a failed start, a refused lock) is a :class:`ContainerError`, shown as one
red line of its own that names the thing at fault; only an exception from the user's own code in
a container shows a traceback, and that traceback is the container's.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shlex
import sys
import threading
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from traitlets import Bool, Unicode

from .client import AgentError, AgentSession, RemoteError, container_exec_factory
from .display import Listing, Record

if TYPE_CHECKING:
    from portside.engine.models.interface import EngineAPI

#: Subcommands whose value is data: their printed text is captured and returned as a Listing.
DATA_COMMANDS = frozenset({"ps", "ls", "list", "images", "history", "inspect", "info", "version",
                           "df", "top", "port", "search"})
#: Commands handled by the magics themselves (not in the CLI table, or notebook-specific).
NOTEBOOK_COMMANDS = ("attach", "detach", "send", "recv", "dockerfile")


class _ArgParser(argparse.ArgumentParser):
    """argparse raising IPython's UsageError (one line) instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        if message:
            raise UsageError(message.strip())
        raise _Shown()


class _Shown(Exception):
    """--help was printed."""


class ContainerError(Exception):
    """An engine error (or a container agent's) raised by a magic: shown as one red line.

    IPython draws an exception that has ``_render_traceback_`` with the lines it returns, so the
    notebook shows ``Error: no such image: exp:2`` in red, with no traceback and without
    ``UsageError``, which IPython keeps for a bad command line. The engine's exception is kept
    as :attr:`error` (None for an agent's).
    """

    def __init__(self, message: str, error: BaseException | None = None) -> None:
        super().__init__(message)
        self.error = error

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[0;31mError: {self}\x1b[0m"]


def _exec_parser() -> _ArgParser:
    p = _ArgParser(prog="%%container exec", add_help=True,
                   description="Run the cell inside a running container.")
    p.add_argument("container", help="container name or id")
    p.add_argument("--shell", action="store_true", help="run the cell with sh -c, not Python")
    p.add_argument("-u", "--user", help="user[:group] to run as")
    p.add_argument("-w", "--workdir", help="working directory for the cell")
    p.add_argument("-e", "--env", action="append", default=[], help="set K=V in the environment")
    # an attached cell's lines, sent without a %%container line above them
    p.add_argument("--routed", action="store_true", help=argparse.SUPPRESS)
    return p


def _env(items: list[str]) -> dict[str, str]:
    """``-e K=V`` of a container cell (``-e K`` takes the kernel's value, as ``docker exec``
    does; dropped when unset)."""
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key:
            raise UsageError(f"-e: expected K=V, got {item!r}")
        if eq:
            out[key] = value
        elif key in os.environ:
            out[key] = os.environ[key]
    return out


class Printed(str):
    """A command's value that its handler has already printed (``run -d``'s id): usable as a
    string (``cid = %container run -d ...``) but not shown a second time as the cell's ``Out``."""

    def _ipython_display_(self) -> None:
        pass


class RemoteResult:
    """The value of a container cell's last expression, shown as the cell's ``Out``."""

    def __init__(self, data: dict, metadata: dict | None = None) -> None:
        self.data = data
        self.metadata = metadata or {}

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict, dict]:
        return self.data, self.metadata

    def __repr__(self) -> str:
        return str(self.data.get("text/plain", ""))


class _LazyWidget:
    """A progress callback that displays its widget on the first event only."""

    def __init__(self, factory: Any) -> None:
        self.factory = factory
        self.widget: Any = None

    def __call__(self, event: Any) -> None:
        if self.widget is None:
            from IPython.display import display

            self.widget = self.factory()
            display(self.widget)
        self.widget(event)


def _publish(msg: dict) -> None:
    """Republish one agent output frame in the host kernel (it becomes the same Jupyter message)."""
    kind = msg.get("type")
    if kind == "stream":
        stream = sys.stderr if msg.get("name") == "stderr" else sys.stdout
        stream.write(msg.get("text", ""))
        stream.flush()
    elif kind == "display_data":
        from IPython.display import publish_display_data

        publish_display_data(msg.get("data", {}), msg.get("metadata") or {})


@magics_class
class ContainerMagics(Magics):
    """``%container`` / ``%%container``: portside's commands and container cells in IPython."""

    default_shell = Unicode("/bin/sh", config=True,
                            help="Shell that runs %%container exec --shell cells.")
    agent_python = Unicode("python3", config=True,
                           help="Python interpreter inside containers that runs the agent.")
    root = Unicode(None, allow_none=True, config=True,
                   help="Engine state folder (default: $PORTSIDE_ROOT or the engine's default).")
    context = Unicode(None, allow_none=True, config=True,
                      help="The context (engine) of this kernel's commands; set with "
                           "'%container context use NAME' (default: $PORTSIDE_CONTEXT, else "
                           "the one set with 'portside context use').")
    show_restart_note = Bool(True, config=True,
                             help="Say so when a container's agent was restarted (namespace lost).")

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._engine: EngineAPI | None = None
        self._engine_key: tuple[str, str] | None = None
        #: agent sessions by context, then by (container, user)
        self._sessions: dict[str, dict[tuple[str, str | None], AgentSession]] = {}
        #: the id of the container each session's agent runs in (learnt as it starts)
        self._container_ids: dict[str, dict[tuple[str, str | None], str]] = {}
        self.attached: tuple[str, str | None] | None = None
        self._matcher: Any = None
        #: cells run in each container (by container id), for the recipe a commit records
        self.recipes: dict[str, list[Any]] = {}
        #: images this session built, ran or pulled: what ``%container lock`` pins by default
        self.used_images: list[str] = []

    # ------------------------------------------------------------------ engine
    @property
    def ip(self) -> Any:
        """The IPython shell the magics are registered with."""
        assert self.shell is not None, "the magics are used from a shell"
        return self.shell

    @property
    def sessions(self) -> dict[tuple[str, str | None], AgentSession]:
        """The agent sessions of this kernel's context, by (container, user)."""
        return self._sessions.setdefault(self.context_name, {})

    @property
    def context_name(self) -> str:
        """This kernel's context: ``%container context use``'s, else the user's."""
        from portside.engine.contexts import selected

        return self.context or selected()

    @property
    def engine(self) -> EngineAPI:
        """The engine of this kernel's context (re-made when the context or, for the default
        one, ``$PORTSIDE_ROOT`` changes)."""
        name = self.context_name
        root = (self.root or os.environ.get("PORTSIDE_ROOT") or "") if name == "default" else ""
        if self._engine is None or (name, root) != self._engine_key:
            from portside.engine.api import from_env

            if self._engine is not None:
                self._engine.close()
                self._engine = None
            self._engine = from_env(root=root or None, context=name)
            self._engine_key = (name, root)
        return self._engine

    # ------------------------------------------------------------------ entry point
    @no_var_expand
    @line_cell_magic
    def container(self, line: str, cell: str | None = None) -> Any:
        """Run a portside command: ``%container ps``, ``%%container build -t NAME``, ...

        Every command of the ``portside`` command line works (see ``%container --help``); in
        addition: ``%%container exec NAME`` (cell in a container), ``attach``/``detach``,
        ``send``/``recv`` of variables, and ``%%container build`` with the cell as Dockerfile.
        """
        line = self._expand(line)
        try:
            argv = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%container: {exc}") from None
        if not argv:
            raise UsageError("%container: a command is required (see %container --help)")
        cmd, rest = argv[0], argv[1:]
        try:
            if cell is not None:
                if cmd == "exec":
                    return self._exec_cell(rest, cell)
                if cmd == "build":
                    return self._build_cell(rest, cell)
                raise UsageError(f"%%container {cmd}: only 'exec' and 'build' take a cell")
            if cmd == "attach":
                return self._attach(rest)
            if cmd == "detach":
                return self._detach(rest)
            if cmd in ("send", "recv"):
                return self._transfer(cmd, rest)
            if cmd == "dockerfile":
                return self._dockerfile(rest)
            if cmd == "context" and rest[:1] == ["use"]:
                return self._use_context(rest[1:])
            return self._cli(argv)
        except _Shown:
            return None
        except AgentError as exc:
            raise ContainerError(str(exc), exc) from None
        except UsageError:
            raise
        except Exception as exc:
            from portside.engine.cli import UsageError as CommandLineError
            from portside.engine.errors import EngineError

            if isinstance(exc, CommandLineError):
                raise UsageError(str(exc)) from None
            if isinstance(exc, EngineError):
                raise ContainerError(str(exc), exc) from None
            raise

    _DOLLAR = re.compile(r"\$\$|\$\{(\w+)\}|\$(\w+)")

    def _expand(self, line: str) -> str:
        """``$name``/``${name}`` -> the notebook variable's value (left as written when there
        is none, as IPython does); ``$$`` -> ``$``. ``{...}`` is never touched."""
        ns = self.ip.user_ns

        def one(m: re.Match) -> str:
            name = m.group(1) or m.group(2)
            if name is None:
                return "$"
            return str(ns[name]) if name in ns else m.group(0)
        return self._DOLLAR.sub(one, line)

    # ------------------------------------------------------------------ the CLI table
    def _cli(self, argv: list[str]) -> Any:
        from portside.engine import cli

        try:
            args = cli.parse(argv, prog="%container")
        except cli._HelpShown:
            return None
        one_off = None
        engine: EngineAPI
        if getattr(args, "_command", None) == "context":
            args.context = args.context or self.context_name  # ls, show: this kernel's
            # managing contexts needs no engine (and works when this kernel's is broken)
            engine = cli.no_engine()
        elif getattr(args, "root", None) or getattr(args, "context", None):
            # -c NAME and --root apply to this command only, as in the CLI
            from portside.engine.api import from_env

            engine = one_off = from_env(root=args.root, context=args.context or "default")
        else:
            engine = self.engine
            args.context = self.context_name  # what a command that asks (image copy) sees
        try:
            return self._run_parsed(args, engine)
        finally:
            if one_off is not None:
                one_off.close()

    def _run_parsed(self, args: Any, engine: Any) -> Any:
        from portside.engine import cli

        command = getattr(args, "_subcommand", None) or getattr(args, "_command", None)
        top = getattr(args, "_command", None)
        if top in ("run", "start", "exec", "create"):
            # no terminal in a notebook: run attached, output streamed, interrupt stops it
            if getattr(args, "tty", False):
                args.tty = False
        data = command in DATA_COMMANDS
        out = io.StringIO() if data else sys.stdout
        ctx = cli.Context(engine=engine, out=out, err=sys.stderr, stdin=None,
                          stdout_binary=None, interactive=False, magic=True)
        if command == "pull" or top == "pull":
            from .widgets import PullProgress

            ctx.progress = _LazyWidget(PullProgress)  # type: ignore[attr-defined]
        elif command == "build" or top == "build":
            from .widgets import BuildProgress

            ctx.progress = _LazyWidget(BuildProgress)  # type: ignore[attr-defined]
        self._before_command(top, command, args)
        if command in ("stop", "restart") and getattr(args, "containers", None):
            # a stop may take its whole timeout: say so while the cell waits
            wait = f"{args.time} s" if getattr(args, "time", None) is not None else \
                "its stop timeout (10 s unless set)"
            sys.stdout.write(f"{'Stopping' if command == 'stop' else 'Restarting'} "
                             f"{', '.join(args.containers)}: its stop signal, then SIGKILL "
                             f"after {wait}...\n")
            sys.stdout.flush()
        result = args._handler(ctx, args)
        if data:  # (not "out is a StringIO": under %%capture sys.stdout is one too)
            assert isinstance(out, io.StringIO)
            text = out.getvalue()
            rich = not (getattr(args, "quiet", False) or getattr(args, "format", None))
            if isinstance(result, (list, tuple)):
                return Listing(result, text, rich=rich)
            if isinstance(result, dict):
                return Record(result, text)
            if text:
                sys.stdout.write(text)
            return None
        if isinstance(result, int) and not isinstance(result, bool):
            if result and top in ("run", "start", "exec", "attach"):
                sys.stderr.write(f"exit status {result}\n")
            return None
        if isinstance(result, str):
            return Printed(result)  # the id ``run -d`` printed: a value, not shown again
        if isinstance(result, (list, tuple, dict)) or result is None or hasattr(result, "attrs"):
            return None  # already printed (rm, tag, load, a model's name or id ...)
        return result

    def _use_context(self, argv: list[str]) -> None:
        """``%container context use NAME``: this kernel's commands go to NAME's engine (the
        user's current context, for terminals and other kernels, stays as it is)."""
        from portside.engine.contexts import ContextStore

        if len(argv) != 1:
            raise UsageError("%container context use: usage: %container context use CONTEXT")
        if not ContextStore().exists(argv[0]):
            raise UsageError(f'context "{argv[0]}" does not exist')
        self.context = argv[0]
        print(f'This kernel\'s context is now "{argv[0]}"')
        return None

    # ------------------------------------------------------------------ container cells
    def session(self, container: str, user: str | None = None) -> AgentSession:
        """The agent session for ``container`` in this kernel's context (one per container
        and user), made on first use."""
        key = (container, user)
        sess = self.sessions.get(key)
        if sess is None:
            ids = self._container_ids.setdefault(self.context_name, {})

            def started(ctr: Any) -> None:
                ids[key] = ctr.id

            factory = container_exec_factory(self.engine, container, user=user,
                                             python=self.agent_python, on_container=started)
            sess = self.sessions[key] = AgentSession(factory, label=container)
        return sess

    def _exec_cell(self, argv: list[str], cell: str) -> Any:
        args = _exec_parser().parse_args(argv)
        env = _env(args.env)
        if args.shell:
            return self._shell_cell(args, cell, env)
        sess = self.session(args.container, args.user)
        outputs: dict[str, Any] = {}

        def sink(msg: dict) -> None:
            if msg.get("type") in ("execute_result", "error"):
                outputs[msg["type"]] = msg
            else:
                _publish(msg)

        reply = sess.execute(cell, sink, cwd=args.workdir, env=env or None,
                             first_line=1 if args.routed else 2)
        if "error" not in outputs:
            # the container the agent runs in, as its session learnt it (no look-up per cell:
            # in a Slurm context that is a squeue and an srun, ~70 ms)
            ident = self._container_ids.get(self.context_name, {}).get(
                (args.container, args.user))
            self._record(args.container, "python", cell, args.workdir, env, ident=ident)
        if reply.get("restarted") and self.show_restart_note:
            sys.stderr.write(f"note: the agent in {args.container} was restarted; earlier "
                             "variables are gone\n")
        if "error" in outputs:
            err = outputs["error"]
            raise RemoteError(err.get("ename", "Error"), err.get("evalue", ""),
                              err.get("traceback", []))
        if "execute_result" in outputs:
            res = outputs["execute_result"]
            return RemoteResult(res.get("data", {}), res.get("metadata"))
        return None

    def _shell_cell(self, args: argparse.Namespace, cell: str, env: dict[str, str]) -> None:
        ctr = self.engine.containers.get(args.container)
        _code, stream = ctr.exec_run([self.default_shell, "-c", cell], socket=True,
                                     user=args.user or "", workdir=args.workdir,
                                     environment=env or None)
        code = stream_process(stream)
        if code == 0:
            self._record(args.container, "shell", cell, args.workdir, env)
        if code == 127:
            raise UsageError(f"{self.default_shell} not found in {args.container}")
        if code:
            sys.stderr.write(f"exit status {code}\n")

    # ------------------------------------------------------------------ build
    def _build_cell(self, argv: list[str], cell: str) -> None:
        """``%%container build``: ``portside build``'s own command line (one grammar), the cell
        as the Dockerfile, the notebook's folder as the default context."""
        from portside.engine import cli
        from portside.engine.lock import LABEL_SOURCE

        from .widgets import BuildProgress, print_summary

        try:
            args = cli.parse(["build", *argv], prog="%%container")
        except cli._HelpShown:
            return None
        if args.path is None:
            args.path = os.getcwd()
        if args.path == "-":
            raise UsageError("%%container build: the cell is the Dockerfile; give a context "
                             "folder, not -")
        if args.file is None:
            args.file = "-"  # the cell
        # the lock's recorded SOURCE_DATE_EPOCH is for portside's builder (a Slurm context
        # builds with it too); a Docker Engine gets one only when the cell asks (and refuses it)
        quiet = args.quiet or args.progress == "quiet"
        if (args.source_date_epoch is None and not args.no_source_date_epoch
                and self._context_kind() != "docker"):
            sde = self._source_date_epoch(say=not quiet)
            if sde is not None:
                args.source_date_epoch = str(sde)
        # provenance: the builder moves this label into the manifest's annotations
        if not any(item.partition("=")[0] == LABEL_SOURCE for item in args.label):
            nb, cell_id = self.notebook_name(), self.cell_id()
            args.label.append(f"{LABEL_SOURCE}=notebook:{nb or 'unknown'}"
                              + (f"#cell={cell_id}" if cell_id else ""))
        self.used_images.extend(args.tag)
        widget = BuildProgress(title=f"Building {', '.join(args.tag) or 'image'}")
        if not quiet:
            from IPython.display import display

            display(widget)
        ctx = cli.Context(engine=self.engine, out=sys.stdout, err=sys.stderr,
                          stdin=io.BytesIO(cell.encode()), interactive=False, magic=True,
                          progress=widget)
        try:
            image_id = args._handler(ctx, args)
        except Exception as exc:
            widget.failed()
            from portside.engine.errors import EngineError

            if isinstance(exc, EngineError) and args.file == "-":
                raise ContainerError(build_failure(exc, widget, cell), exc) from None
            raise
        if not quiet:
            print_summary(widget.result or image_id)
        return None

    # ------------------------------------------------------------------ reproducibility
    def cell_id(self) -> str:
        """The id of the notebook cell running now ('' outside a notebook)."""
        get_parent = getattr(self.ip, "get_parent", None)  # ipykernel's shell has it
        parent = get_parent() if get_parent is not None else getattr(self.ip, "parent_header",
                                                                       None)
        meta = (parent or {}).get("metadata") or {}
        return str(meta.get("cellId") or meta.get("cell_id") or "")

    def notebook_name(self) -> str:
        """The notebook's file name (JupyterLab sets ``JPY_SESSION_NAME``), or ''."""
        path = os.environ.get("JPY_SESSION_NAME") or self.ip.user_ns.get("__session__") or ""
        return os.path.basename(str(path))

    def _source_date_epoch(self, say: bool = True) -> int | None:
        """The build's SOURCE_DATE_EPOCH when the command line gives none: the lock's (recorded
        there on the first build, so every later build of this notebook uses the same one), or
        None when the environment sets one (the engine reads it)."""
        if os.environ.get("SOURCE_DATE_EPOCH"):
            return None
        from portside.engine import lock as lockmod

        import time

        lock = lockmod.load()
        recorded = lock is None or lock.source_date_epoch is None
        if lock is None:
            lock = lockmod.LockFile(lockmod.find_lock(), source_date_epoch=int(time.time()))
            lock.save()
        elif lock.source_date_epoch is None:
            lock.source_date_epoch = int(time.time())
            lock.save()
        sde = lock.source_date_epoch
        assert sde is not None
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(sde))
        where = os.path.basename(str(lock.path))
        if not say:
            pass
        elif recorded:
            print(f"Recorded SOURCE_DATE_EPOCH={sde} ({when}) in {where}: this notebook's builds "
                  "get that creation time, so a rebuild is bit-for-bit the same image "
                  "(--no-source-date-epoch for the build's own time)")
        else:
            print(f"Creation time pinned to {when} by SOURCE_DATE_EPOCH in {where} "
                  "(--no-source-date-epoch for the build's own time)")
        return sde

    def _before_command(self, top: str | None, command: str | None, args: Any) -> None:
        """Notebook additions to CLI commands: the images this session used (what ``lock``
        pins by default), the recipe a commit records. (The lock itself is enforced by the
        engine, for every front alike.)"""
        if top in ("run", "create") and getattr(args, "image", None):
            self.used_images.append(args.image)
        elif (top == "pull" or command == "pull") and getattr(args, "name", None):
            self.used_images.append(args.name)
        elif (top == "commit" or command == "commit") and getattr(args, "container", None):
            recipe = self.recipe(args.container)
            if recipe is not None:
                args.change = [*(getattr(args, "change", None) or []), *recipe.changes()]
        elif top == "lock" and not args.images:
            from portside.engine import lock as lockmod

            lock = lockmod.load(args.file) if args.file else lockmod.load()
            known = set(lock.images) if lock else set()
            args.images = [n for n in dict.fromkeys(self.used_images)
                           if self.engine.images.exists(n)] or sorted(known)

    def _record(self, container: str, kind: str, code: str, workdir: str | None,
                env: dict[str, str], *, ident: str | None = None) -> None:
        from portside.engine.recipe import RecipeCell

        if ident is None:
            try:
                ident = self.engine.containers.get(container).id
            except Exception:  # the container went away; nothing to commit later
                return
        self.recipes.setdefault(ident, []).append(
            RecipeCell(self.cell_id(), kind, code, workdir or None, tuple(sorted(env.items()))))

    def recipe(self, container: str) -> Any:
        """The recipe a commit of ``container`` records: its image's own recipe and the cells
        this notebook ran in it (None when it ran none)."""
        from portside.engine.recipe import recipe_for_container_image

        ctr = self.engine.containers.get(container)
        cells = self.recipes.get(ctr.id)
        if not cells:
            return None
        return recipe_for_container_image(ctr.image, cells)

    def _dockerfile(self, argv: list[str]) -> None:
        p = _ArgParser(prog="%container dockerfile",
                       description="Print a Dockerfile that rebuilds a container's (or a "
                                   "committed image's) state from its base image.")
        p.add_argument("name", help="container or committed image")
        p.add_argument("-o", "--output", help="write it to this file too")
        args = p.parse_args(argv)
        from portside.engine.errors import NotFound
        from portside.engine.recipe import dockerfile, dockerfile_for

        try:
            recipe = self.recipe(args.name)
        except NotFound:
            recipe = None
        text = dockerfile(recipe) if recipe is not None else \
            dockerfile_for(self.engine.images.get(args.name))
        if args.output:
            with open(args.output, "w") as f:
                f.write(text)
        print(text, end="")
        return None

    # ------------------------------------------------------------------ send / recv
    def _transfer(self, cmd: str, argv: list[str]) -> None:
        if len(argv) < 2:
            raise UsageError(f"%container {cmd}: usage: %container {cmd} CONTAINER VAR [VAR...]")
        container, names = argv[0], argv[1:]
        sess = self.session(container)
        ns = self.ip.user_ns
        for name in names:
            if not name.isidentifier():
                raise UsageError(f"%container {cmd}: not a variable name: {name}")
            if cmd == "send":
                if name not in ns:
                    raise UsageError(f"%container send: name {name!r} is not defined")
                sess.send(name, ns[name])
            else:
                ns[name] = sess.recv(name)
        return None

    # ------------------------------------------------------------------ attach
    def _attach(self, argv: list[str]) -> None:
        p = _ArgParser(prog="%container attach",
                       description="Run every following cell in a container.")
        p.add_argument("container")
        p.add_argument("-u", "--user")
        args = p.parse_args(argv)
        # start (or reuse) the agent now, so a missing container or python3 is reported here
        self.session(args.container, args.user).start()
        self.attached = (args.container, args.user)
        transforms = self.ip.input_transformers_cleanup
        if self._route_cell not in transforms:
            transforms.append(self._route_cell)
        self._install_matcher()
        print(f"Cells now run in {args.container}; '%container detach' returns to the host.")

    def _detach(self, argv: list[str]) -> None:
        if argv:
            raise UsageError("%container detach: takes no arguments")
        was = self.attached
        self.attached = None
        if self._route_cell in self.ip.input_transformers_cleanup:
            self.ip.input_transformers_cleanup.remove(self._route_cell)
        if self._matcher is not None and self._matcher in self.ip.Completer.custom_matchers:
            self.ip.Completer.custom_matchers.remove(self._matcher)
        self._matcher = None
        if was:
            print(f"Cells run on the host again (the namespace in {was[0]} is kept).")

    def _route_cell(self, lines: list[str]) -> list[str]:
        """Input transformer: wrap the lines of a cell that are not ``%container`` in exec calls."""
        if self.attached is None or not lines:
            return lines
        name, user = self.attached
        head = "exec " + shlex.quote(name) + (f" -u {shlex.quote(user)}" if user else "")
        if lines[0].lstrip().startswith("%%"):
            return lines  # a cell magic (%%container build, %%time ...) stays on the host
        out: list[str] = []
        block: list[str] = []

        def flush() -> None:
            code = "".join(block)
            if code.strip():
                # the block's own lines keep their numbers: no magic line above them
                out.append(f"get_ipython().run_cell_magic('container', {head + ' --routed'!r}, "
                           f"{code!r})\n")
            block.clear()

        for line in lines:
            if line.lstrip().startswith("%container"):
                flush()
                out.append(line if line.endswith("\n") else line + "\n")
            else:
                block.append(line if line.endswith("\n") else line + "\n")
        flush()
        return out

    def _install_matcher(self) -> None:
        if self._matcher is not None:
            return
        from IPython.core.completer import SimpleCompletion, context_matcher

        magics = self

        @context_matcher(priority=100)  # first, so its "suppress" hides the host names
        def container_matcher(context: Any) -> dict:
            attached = magics.attached
            line = context.line_with_cursor
            if attached is None or line.lstrip().startswith("%"):
                return {"completions": [], "suppress": False}
            sess = magics.sessions.get(attached)
            if sess is None or not sess.alive:
                return {"completions": [], "suppress": False}
            code = context.text_until_cursor
            try:
                got = sess.complete(code)
            except Exception:
                return {"completions": [], "suppress": False}
            token = context.token
            replaced = (got.get("end") or 0) - (got.get("start") or 0)
            stem = token[:len(token) - replaced] if replaced <= len(token) else ""
            return {"completions": [SimpleCompletion(text=stem + m, type="container")
                                    for m in got.get("matches") or []],
                    "suppress": True}

        self._matcher = container_matcher
        self.ip.Completer.custom_matchers.append(container_matcher)

    def _context_kind(self) -> str:
        """The kind of engine behind this kernel's context (``portside``, ``docker``, ...)."""
        from portside.engine.contexts import kind_of

        return kind_of(self.context_name)

    def close(self) -> None:
        """Stop every agent this magics instance started."""
        for sessions in self._sessions.values():
            for sess in sessions.values():
                sess.close()
        self._sessions.clear()
        if self._engine is not None:
            self._engine.close()
            self._engine = None


def build_failure(exc: Exception, widget: Any, cell: str) -> str:
    """A ``%%container build`` error in the cell's own terms: Dockerfile line N is the editor's
    line N + 1 (the ``%%container build`` line comes first), and a failed step is named with
    its instruction, its place in the build and its line.

    >>> from portside.engine.errors import DockerfileError
    >>> build_failure(DockerfileError("unknown instruction: FORM", 1), None, "FORM x\n")
    'cell line 2: unknown instruction: FORM'
    """
    from portside.engine.errors import DockerfileError

    if isinstance(exc, DockerfileError) and exc.start_line is not None:
        lines = f"{exc.start_line + 1}" + (f"-{exc.end_line + 1}" if exc.end_line and
                                           exc.end_line != exc.start_line else "")
        return f"cell line {lines}: {exc.detail}"
    step = getattr(widget, "failed_step", None)
    if step is None:
        return str(exc)
    label, text = widget.step_text(step)
    where = ""
    for number, line in enumerate(cell.splitlines(), start=2):
        if text and line.strip() == text.strip():
            where = f", cell line {number}"
            break
    return f"step [{label}] {text}{where} failed: {exc}"


def stream_process(proc: Any) -> int:
    """Copy a process's stdout/stderr (an :class:`~portside.engine.models.interface.ExecStream`)
    to ours as they come; Ctrl-C interrupts it (a second one kills it). Returns its status."""
    def pump(src: Any, dst: Any) -> None:
        try:
            for chunk in iter(lambda: src.read1(65536), b""):
                dst.write(chunk.decode(errors="replace"))
                dst.flush()
        except (OSError, ValueError):
            pass
        finally:
            src.close()  # the reader closes its pipe: a background child may keep it open

    threads = [threading.Thread(target=pump, args=(proc.stdout, sys.stdout), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, sys.stderr), daemon=True)]
    for t in threads:
        t.start()
    interrupted = 0
    while True:
        try:
            code = proc.wait()
            break
        except KeyboardInterrupt:
            interrupted += 1
            if interrupted == 1:
                import signal as _signal

                proc.signal(_signal.SIGINT)
            else:
                proc.kill()
    for t in threads:
        # a background process started by the cell keeps the pipes open: don't wait for it
        t.join(timeout=0.5)
    return code
