"""What a killed command may leave in a portside root, looked at from outside (no portside
code): for the fault tests, which kill a command, run one ordinary command, and then expect
nothing of the killed one to be left."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

# folders where unfinished work lives while it runs
WORK_FOLDERS = ("tmp", "content/ingest", "snapshots/.staging", "snapshots/.trash",
                "build-cache/tmp")


def folder_bytes(path: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def unfinished_work(root: Path) -> dict[str, list[str]]:
    """Entries of the work folders and rows of the leases table, by where they are."""
    found = {}
    for rel in WORK_FOLDERS:
        folder = root / rel
        entries = sorted(os.listdir(folder)) if folder.is_dir() else []
        if entries:
            found[rel] = entries
    leases = query(root, "SELECT resource FROM leases")
    if leases:
        found["leases"] = [r[0] for r in leases]
    return found


def query(root: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(root / "metadata.db")
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []  # no such table (yet)
    finally:
        conn.close()


def mounts_under(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


def assert_store_clean(cli, root: Path) -> None:
    """Nothing unfinished is left, and ``system check`` finds nothing at all: no corruption,
    nothing reclaimable (its own opening of the store reclaims nothing more either)."""
    assert unfinished_work(root) == {}
    check = cli("system", "check", check=False)
    assert (check.returncode, check.out) == (0, "store is consistent\n"), check.out + check.err
    assert mounts_under(root) == []
