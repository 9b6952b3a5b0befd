"""The ``portside`` program's quick ``exec``: a running container's command without the engine.

``portside exec CTR CMD`` is timed against ``docker exec``, and most of what the command line
cost was Python's: importing the engine (the models, the lifecycle, the records, ``pathlib``,
``re``, ``json``, ``subprocess``: ~30 ms) to do ~1 ms of work. This module does that work with
what the standard library gives without imports of note (``os``, ``marshal``, ``_sqlite3``,
``ctypes`` for the system calls), for the line :mod:`.lean` read:

1. the container is found as the engine finds it (:meth:`ContainerStore.resolve`: full id,
   name, unique id prefix) with one query of the metadata database;
2. it must be up as the engine would see it (``running``, its monitor alive, no exit recorded,
   no pause or commit under way: what ``Lifecycle.refresh`` checks);
3. the process is the fast path's (runtime/fastexec.py) from the container's cache
   (``fastexec.load_base``: kept by the engine's first ``exec`` into the container, checked
   against the files it came from and the container's init);
4. the ``exec_create`` event is written as the engine writes it, then ``fastexec.spawn`` starts
   the process (``clone3`` into the container's cgroup) and its status is the command's.

Anything else goes to the engine, which then does as it always did: a terminal (``-t``),
``-u``, ``--privileged``, a context other than ``default``, a config file, rootless mode, a
store path with ``%``, ``PORTSIDE_FAST_EXEC`` off, a container the query does not find exactly
once or that is not plainly running, no cache yet (the engine's exec makes it), a closed
standard stream. :func:`run` returns None then, before anything happened.
``PORTSIDE_QUICK_EXEC=0`` turns this path off (tests compare the two); ``=explain`` writes, on
standard error, why a line went to the engine (``portside: exec through the engine: …``).
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False  # annotations only (see portside.engine)
if TYPE_CHECKING:
    from typing import Any

_TRUE = ("1", "true", "yes", "on")
_CONNECTIONS: list[Any] = []
#: config.default_root() for root outside a user namespace (held equal by a unit test)
_ROOTS_STORE = "/var/lib/portside"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def run(fields: dict[str, Any]) -> int | None:
    """Run the ``exec`` line :func:`.lean.parse` read (its fields); returns the exit status,
    or None when the engine must run it (nothing was done then)."""
    from .runtime import fastexec

    try:
        plan = _plan(fields)
    except KeyboardInterrupt:  # ^C while the database was locked: as guarded() answers it
        return 130
    except Exception as exc:  # noqa: BLE001 - what this cannot read, the engine reads and reports
        plan = f"{type(exc).__name__}: {exc}"
    if isinstance(plan, str):
        _declined(plan)
        return None
    conn, container_id, name, prep = plan
    try:
        if fastexec._start_time(prep.pid) != prep.start:  # the init ended since the check
            _declined("the container's init is gone")
            return None
        _emit_exec_create(conn, container_id, name)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - no event written: the engine's exec does it all
        _declined(f"the event: {exc}")
        return None
    from .lean import guarded

    def start() -> int:
        try:
            null = fastexec.DEVNULL
            if fields["detach"]:  # as the engine's: nothing of this process's streams
                stdio: tuple[int, ...] = (null, null, null)
            else:
                stdio = (0 if fields["interactive"] else null, 1, 2)
            proc = fastexec.spawn(prep, detach=fields["detach"], stdio=stdio)
        except fastexec.Unsupported as exc:
            # the init ended since: the engine says the container is not running
            raise _EngineTakes(str(exc)) from None
        code = proc.wait()
        if fields["detach"]:
            return 0 if code == 0 else 126
        return code

    try:
        return guarded(start)
    except _EngineTakes as exc:
        _declined(str(exc))
        return None


class _EngineTakes(BaseException):
    """Nothing was started after all: the engine runs the line (a BaseException, to pass
    through :func:`.lean.guarded`, which reports every Exception as a failure)."""


def _declined(reason: str) -> None:
    if os.environ.get("PORTSIDE_QUICK_EXEC") == "explain":
        try:
            os.write(2, f"portside: exec through the engine: {reason}\n".encode())
        except OSError:
            pass  # standard error closed: the engine's own output is what matters


def _plan(fields: dict[str, Any]) -> tuple[Any, str, str, Any] | str:
    """What :func:`run` needs (a database connection, the container's id and name, the
    Prepared process), or why the engine must run the line."""
    environ = os.environ
    for flag in ("tty", "user", "privileged"):
        if fields[flag]:
            return f"--{flag}"
    if environ.get("PORTSIDE_QUICK_EXEC", "1") == "0":
        return "PORTSIDE_QUICK_EXEC=0"
    fast = environ.get("PORTSIDE_FAST_EXEC")
    if fast and fast.strip().lower() not in _TRUE:
        return "the fast path is off"
    if os.geteuid() != 0 or environ.get("PORTSIDE_USERNS"):
        return "not root"
    if environ.get("PORTSIDE_RUNTIME"):
        return "PORTSIDE_RUNTIME is set"
    if not _default_context(fields):
        return "not the default context"
    if any(os.path.exists(path) for path in _config_files()):
        return "a config file"
    root = fields["root"] or environ.get("PORTSIDE_ROOT") or _ROOTS_STORE
    if "%" in root:
        return "a store path with %"
    streams = () if fields["detach"] else (0, 1, 2) if fields["interactive"] else (1, 2)
    for fd in streams:
        try:
            os.fstat(fd)
        except OSError:
            return f"descriptor {fd} is closed"
    for path in fields["env_file"]:  # read once here, and again if the engine takes the line
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                return f"--env-file {path} is not a regular file"
        except OSError:
            return f"--env-file {path} cannot be read"
    from .runtime.fastexec import _initial_user_namespace

    if not _initial_user_namespace():
        return "not root (a user namespace)"
    from .envvars import exec_environment

    env = exec_environment(fields["env_file"], fields["env"])
    db = os.path.join(root, "metadata.db")
    if not os.path.isfile(db):
        return "no store"
    import _sqlite3

    conn = _sqlite3.connect(db, timeout=30.0, isolation_level=None, check_same_thread=False)
    # Never closed here: closing the last connection checkpoints the write-ahead log (~1 ms),
    # which the program's quick exit skips (see portside.engine.__main__); the next command
    # that opens the database picks the log up. Kept referenced so that no refcount closes it.
    _CONNECTIONS.append(conn)
    found = _resolve(conn, fields["container"])
    if found is None:
        return "the container is not found exactly once"
    container_id, name, status, monitor_pid = found
    prep = _prepared(root, container_id, status, monitor_pid, fields, env)
    if isinstance(prep, str):
        return prep
    if not set(name) <= _NAME_CHARS:
        return "an unusual name"
    return conn, container_id, name, prep


def _default_context(fields: dict[str, Any]) -> bool:
    """:func:`.contexts.selected` is ``default``: the flag, else ``PORTSIDE_CONTEXT``, else the
    current context's file."""
    if fields["context"]:
        return fields["context"] == "default"
    found = os.environ.get("PORTSIDE_CONTEXT")
    if found:
        return found == "default"
    try:
        with open(_current_context_file(), "rb") as f:
            name = f.read().strip()
    except FileNotFoundError:
        return True
    return name in (b"", b"default")


# The next two are .config.config_files() and .contexts.ContextStore's "current" file, without
# the pathlib those modules import (~3 ms); tests/unit/test_quickexec.py holds them equal.


def _config_files() -> list[str]:
    explicit = os.environ.get("PORTSIDE_CONFIG")
    if explicit:
        return [explicit]
    return ["/etc/portside/config.toml", os.path.join(_config_home(), "portside", "config.toml")]


def _current_context_file() -> str:
    return os.path.join(_config_home(), "portside", "contexts", "current")


def _config_home() -> str:
    return os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")


_SELECT = ("SELECT id, name, json_extract(state, '$.Status'), monitor_pid FROM containers "
           "WHERE ")


def _resolve(conn: Any, ref: str) -> tuple[str, str, str, int] | None:
    """The container ``ref`` names, in :meth:`ContainerStore.resolve`'s order (full id, name,
    unique id prefix); None when nothing or several match (the engine's error then)."""
    text = ref.strip()
    if text.startswith("/"):
        text = text[1:]
    if not text:
        return None
    rows = conn.execute(_SELECT + "id = ?", (text,)).fetchall()
    if not rows:
        rows = conn.execute(_SELECT + "name = ?", (text,)).fetchall()
    if not rows and all(c in "0123456789abcdef" for c in text):
        rows = conn.execute(_SELECT + "id LIKE ?", (text + "%",)).fetchall()
    if len(rows) != 1:
        return None
    return rows[0]


def _prepared(root: str, container_id: str, status: str, monitor_pid: int,
              fields: dict[str, Any], env: list[str]) -> Any:
    """The fast path's Prepared for the command, when the container is plainly running (what
    ``Lifecycle.refresh`` would leave as it is) and its cache is current."""
    if status != "running":
        return f"the container is {status}"
    from .process import process_alive

    folder = os.path.join(root, "containers", container_id)
    if not process_alive(int(monitor_pid or 0), container_id):
        return "its monitor is gone"
    if os.path.lexists(os.path.join(folder, "exit.json")):
        return "its exit is recorded"
    if os.path.lexists(os.path.join(folder, "freeze")):
        return "a pause or commit is under way"
    from .runtime import fastexec

    prep = fastexec.load_base(os.path.join(folder, fastexec.CACHE_NAME), fields["command"],
                              env, fields["workdir"] or "")
    return "no current cache (the engine's exec makes it)" if prep is None else prep


def _emit_exec_create(conn: Any, container_id: str, name: str) -> None:
    """The ``exec_create`` event, as ``Lifecycle.exec_run`` writes it (``events.emit``: the
    attributes as ``json.dumps(..., sort_keys=True)`` writes them)."""
    import time

    attributes = f'{{"execID": "{os.urandom(8).hex()}", "name": "{name}"}}'
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("INSERT INTO events (time, type, action, actor, attributes) "
                     "VALUES (?, ?, ?, ?, ?)",
                     (time.time(), "container", "exec_create", container_id, attributes))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
