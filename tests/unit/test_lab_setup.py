"""``make lab``'s side-panel step: no rebuild, no npm, no change to the git tree when the
committed panel matches ``labextension/``'s sources (a fresh clone), and a clear line instead of a
build when the sources changed but Node.js is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.unit


def test_committed_panel_matches_its_sources():
    """Whoever changes labextension/ commits the rebuilt panel with it (``make labext``)."""
    proc = subprocess.run(["python3", str(REPO / "labextension" / "stamp.py"), "--check"])
    assert proc.returncode == 0, "kernel/labextension/ is not built from labextension/: " \
                                 "run `make labext` and commit the result"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """The tracked files of this checkout, committed in a repository of their own, with a
    venv that looks made (what `make venv` leaves)."""
    work = tmp_path / "clone"
    files = _git(REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            dest = work / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
    _git(work, "init", "-q")
    _git(work, "add", "-A")
    _git(work, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "snapshot")
    venv = work / ".venv"
    (venv / "share" / "jupyter" / "labextensions").mkdir(parents=True)
    (venv / ".installed").touch()
    return work


def _make_lab_panel(work: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess, str]:
    """``make lab-panel`` with a PATH whose node and npm only record that they were called
    (node says it is too old)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "calls"
    for tool in ("node", "npm"):
        (bin_dir / tool).write_text(f"#!/bin/sh\necho {tool} \"$@\" >> {calls}\nexit 1\n")
        (bin_dir / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    proc = subprocess.run(["make", "--no-print-directory", "lab-panel"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    return proc, calls.read_text() if calls.exists() else ""


def test_lab_panel_step_builds_nothing_on_a_fresh_clone(clone, tmp_path):
    proc, calls = _make_lab_panel(clone, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert calls == ""                                  # no node, no npm ci, no build
    assert _git(clone, "status", "--porcelain") == ""   # nothing changed or added
    link = clone / ".venv" / "share" / "jupyter" / "labextensions" / "portside"
    assert link.resolve() == (clone / "kernel" / "labextension").resolve()


def test_lab_panel_step_without_node_keeps_the_committed_panel(clone, tmp_path):
    source = clone / "labextension" / "src" / "panel.tsx"
    source.write_text(source.read_text() + "\n// changed\n")
    proc, calls = _make_lab_panel(clone, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Node.js >= 20.19 is missing: using the committed panel" in proc.stdout
    assert "npm" not in calls
    assert _git(clone, "status", "--porcelain") == " M labextension/src/panel.tsx\n"
