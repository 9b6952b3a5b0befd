"""The ``portside`` program (``python -m portside.engine`` too).

A rebuild with nothing changed is answered from the build memo (:mod:`.builder.memo`) before the
command line's parser and the engine are imported; every other command line, and a build the
memo cannot answer, goes to :func:`portside.engine.cli.main`.

The program ends with ``os._exit`` once its output is flushed: nothing is left to do by then,
and a normal interpreter exit would spend ~30 ms tearing down modules and checkpointing the
metadata database's write-ahead log (SQLite does that when the last connection closes; the log
is simply picked up by the next command instead).
"""

import os
import sys


def main(argv: list[str] | None = None, *, exiting: bool = False) -> int:
    """Run one command line. ``exiting``: the process ends right after (:func:`run`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "build" in argv[:4]:
        from .builder.memo import replay

        code = replay(argv, exiting=exiting)
        if code is not None:
            return code
    from .cli import main as cli_main

    return cli_main(argv, exiting=exiting)


def run() -> None:
    """The console script: :func:`main`, then a quick exit."""
    try:
        code = main(exiting=True) or 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, int) and exc.code is not None:
            sys.stderr.write(f"{exc.code}\n")
    code = _flush(code)
    os._exit(code)


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
