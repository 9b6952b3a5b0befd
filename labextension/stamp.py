"""The side panel's source stamp: one hash of everything its build reads.

``python3 labextension/stamp.py`` prints it; the committed build in ``kernel/labextension/``
records the stamp of the sources it was built from in ``sources.sha256``, so ``make lab``
rebuilds only when someone changed the sources since (``--check`` exits 1 then), and a test
checks that a committed build matches its sources. Stdlib only: it runs before any set-up.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: What the build reads (node_modules is fixed by package-lock.json).
SOURCES = ("package.json", "package-lock.json", "tsconfig.json", "src", "style")
STAMP = HERE.parent / "kernel" / "labextension" / "sources.sha256"


def stamp(root: Path = HERE) -> str:
    """sha256 over the sources' relative paths and contents, in path order."""
    digest = hashlib.sha256()
    files: list[Path] = []
    for name in SOURCES:
        path = root / name
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def main(argv: list[str]) -> int:
    current = stamp()
    if argv[1:] == ["--check"]:
        recorded = STAMP.read_text().strip() if STAMP.is_file() else ""
        return 0 if recorded == current else 1
    if argv[1:] == ["--write"]:
        STAMP.write_text(current + "\n")
        return 0
    print(current)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
