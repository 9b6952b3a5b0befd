"""``python -m portside.engine.onexit ROOT ID``: the work after a container's init exited.

Each container's monitor ``exec``\\ s this once the container is gone (unless a foreground
``run`` that stayed to watch does the same itself): it finishes the cleanup, then removes the
container (``--rm``), restarts it (its restart policy) or leaves it ``exited``; see
:meth:`portside.engine.runtime.lifecycle.Lifecycle.on_exit`. It lives here, above the runtime,
because it puts an engine together for one root; the runtime itself never does.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m portside.engine.onexit ROOT CONTAINER_ID", file=sys.stderr)
        return 2
    from portside.engine.api import Engine
    from portside.engine.errors import EngineError

    root, cid = argv[1], argv[2]
    if not os.path.isdir(root):
        return 0
    engine = Engine(root=root)
    try:
        engine.lifecycle.on_exit(cid)
    except EngineError as exc:
        print(f"on-exit {cid[:12]}: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
