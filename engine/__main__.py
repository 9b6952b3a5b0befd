"""The ``portside`` program (``python -m portside.engine`` too).

A rebuild with nothing changed is answered from the build memo (:mod:`.builder.memo`) before the
command line's parser and the engine are imported (in the ``default`` context only: the memo is
the embedded engine's); the common forms of ``exec`` and ``run`` take a lean path with no
argument parser (:mod:`.lean`), and such an ``exec`` runs without the engine where it can
(:mod:`.quickexec`); every other command line, a build the memo cannot answer and an
``exec``/``run`` line the lean path does not read go to :func:`portside.engine.cli.main`.

The program ends with ``os._exit`` once its output is flushed: nothing is left to do by then,
and a normal interpreter exit would spend ~30 ms tearing down modules and checkpointing the
metadata database's write-ahead log (SQLite does that when the last connection closes; the log
is simply picked up by the next command instead). Only when something still expects the normal
exit -- a function registered with :mod:`atexit`, or a thread that is not a daemon (the
interpreter waits for those) -- does the program exit the normal way. (:mod:`logging`, which
pyroute2 imports for every command that touches a network, registers its ``shutdown`` with
atexit; the program runs it itself, then exits quickly.)
"""

import os
import sys


def main(argv: list[str] | None = None, *, exiting: bool = False) -> int:
    """Run one command line. ``exiting``: the process ends right after (:func:`run`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "exec" in argv[:5] or "run" in argv[:5]:
        from . import lean

        parsed = lean.parse(argv) if lean.enabled() else None
        if parsed is not None:
            if parsed[0] is lean.EXEC:
                from . import quickexec

                code = quickexec.run(parsed[1])
                if code is not None:
                    return code
            return lean.run(*parsed, exiting=exiting)
    if "build" in argv[:4] and _default_context(argv):
        from .builder.memo import replay

        code = replay(argv, exiting=exiting)
        if code is not None:
            return code
    from .cli import main as cli_main

    return cli_main(argv, exiting=exiting)


def _default_context(argv: list[str]) -> bool:
    """Whether the command line runs in the ``default`` context (the memo is its own)."""
    from .contexts import DEFAULT, selected

    flag = None
    for i, word in enumerate(argv[:4]):
        if word in ("-c", "--context") and i + 1 < len(argv):
            flag = argv[i + 1]
        elif word.startswith("--context="):
            flag = word.split("=", 1)[1]
    try:
        return selected(flag) == DEFAULT
    except Exception:  # noqa: BLE001 - an unreadable setting: the full path reports it
        return False


def run() -> None:
    """The console script: :func:`main`, then a quick exit."""
    try:
        code = main(exiting=True) or 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, int) and exc.code is not None:
            sys.stderr.write(f"{exc.code}\n")
    code = _flush(code)
    _shut_logging()
    if not _quick_exit_safe():
        sys.exit(code)
    os._exit(code)


def _quick_exit_safe() -> bool:
    """Whether ``os._exit`` skips nothing anyone asked for: no :mod:`atexit` function is
    registered (but logging's, run by :func:`_shut_logging`) and no non-daemon thread still
    runs (both need the interpreter's own exit)."""
    import atexit

    # logging registers its shutdown once, as it is imported; _shut_logging has run it
    # (atexit.unregister would not lower the count: it only blanks the entry)
    if atexit._ncallbacks() > (1 if "logging" in sys.modules else 0):
        return False
    threading = sys.modules.get("threading")  # never imported: no Python thread was started
    if threading is not None:
        main = threading.main_thread()
        if any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate()):
            return False
    return True


def _shut_logging() -> None:
    """Do what :mod:`logging`'s atexit function does (flush and close every handler): it is
    then no reason for the slow exit (see :func:`_quick_exit_safe`)."""
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.shutdown()


def _flush(code: int) -> int:
    for stream in (sys.stdout, sys.stderr):
        if stream is None:
            continue
        try:
            stream.flush()
        except BrokenPipeError:
            pass  # the reader went away: what it did not read is not ours to deliver
        except OSError:
            code = code or 1
    return code


if __name__ == "__main__":
    run()
