"""The ``portside`` program (``python -m portside.engine`` too).

A rebuild with nothing changed is answered from the build memo (:mod:`.build.memo`) before the
command line's parser and the engine are imported; every other command line, and a build the
memo cannot answer, goes to :func:`portside.engine.cli.main`.
"""

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "build" in argv[:4]:
        from .build.memo import replay

        code = replay(argv)
        if code is not None:
            return code
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
