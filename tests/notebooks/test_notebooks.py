"""Every notebook in notebooks/ runs top to bottom with nbclient against the real engine.

The kernel is the "Python 3 (portside)" kernelspec, installed into a temporary Jupyter path; the
engine uses a fresh ``PORTSIDE_ROOT`` preloaded with the cached Debian image so no notebook has to
bootstrap one. The quickstart's outputs are checked: the figure is a PNG, state persisted between
container cells, the committed image runs.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NEEDED = ("run", "ps", "logs", "commit", "rm", "build")


def _missing_commands() -> list[str]:
    from portside.engine import cli

    cli._load_commands()
    names = {c.top_name or c.name for c in cli.COMMANDS if not c.group or c.top_level}
    return [n for n in NEEDED if n not in names]


@pytest.fixture
def kernel_env(tmp_path, portside_root, monkeypatch, debian_tar):
    from portside.engine.api import Engine
    from portside.kernel.kernelspec import install

    missing = _missing_commands()
    assert not missing, f"the command table lacks {', '.join(missing)}"
    jupyter = tmp_path / "jupyter"
    install(prefix=str(jupyter))
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter / "share" / "jupyter"))
    monkeypatch.setenv("PORTSIDE_ROOT", str(portside_root))
    engine = Engine(root=portside_root)
    with open(debian_tar, "rb") as f:
        engine.images.load(f)
    yield engine
    # whatever a failed run left behind
    from portside.engine.errors import EngineError

    for ctr in engine.containers.list(all=True):
        try:
            ctr.remove(force=True)
        except EngineError:
            pass
    engine.close()


def _outputs(nb) -> list[tuple[int, dict]]:
    return [(i, out) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for out in cell.get("outputs", [])]


def _text(out: dict) -> str:
    if out.get("output_type") == "stream":
        return out.get("text", "")
    return str(out.get("data", {}).get("text/plain", ""))


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path, kernel_env):
    work = tmp_path / "nb"
    work.mkdir()
    shutil.copy(path, work / path.name)
    nb = nbformat.read(work / path.name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="portside",
                                     resources={"metadata": {"path": str(work)}})
    client.execute()
    errors = [out for _, out in _outputs(nb) if out.get("output_type") == "error"]
    assert not errors, errors
    # the kernel made for portside has its magics; the notebook's %load_ext says nothing
    noise = [_text(out) for _, out in _outputs(nb) if "already loaded" in _text(out)]
    assert not noise, noise
    if path.name == "quickstart.ipynb":
        _check_quickstart(nb)


def _check_quickstart(nb) -> None:
    outs = _outputs(nb)
    text = "".join(_text(out) for _, out in outs)
    # state persisted: the second container cell used `samples` from the first
    assert "with 200 samples" in text and "peak" in text
    # figures: the container's own PNG and the host's matplotlib plot of received data
    pngs = [base64.b64decode(out["data"]["image/png"]) for _, out in outs
            if "image/png" in out.get("data", {})]
    assert len(pngs) >= 2 and all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    # the committed image runs
    assert "hello from the committed image" in text
