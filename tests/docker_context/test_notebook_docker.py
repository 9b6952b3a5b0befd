"""A notebook on a Docker context, executed by nbclient with the "Python 3 (portside)" kernel.

``%container context use`` points the kernel at the tests' dockerd; then a build cell with its
widgets, a container, two ``%%container exec`` cells sharing state through the agent over
Docker's exec stream, a matplotlib figure drawn in the container, an interrupt of a running cell
(the namespace survives it), and the clean-up.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

from dockerd_fixture import DEBIAN  # noqa: E402
from conftest import (cell_outputs as outputs, cell_text as text,  # noqa: E402
                      portside_notebook_client)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def host_site_packages() -> str:
    """This interpreter's site-packages (matplotlib and numpy for CPython 3.11), which the
    container's python3 (Debian's 3.11) imports from a read-only bind mount: dockerd has no
    registry to install them from."""
    import matplotlib

    return str(Path(matplotlib.__file__).resolve().parents[1])


def notebook(context: str, site: str):
    v4 = nbformat.v4
    cells = [
        v4.new_code_cell(f"%container context use {context}\n%container context show"),
        v4.new_code_cell(f"%%container build -t nbdocker:1\nFROM {DEBIAN}\n"
                         "RUN echo 'built in dockerd' > /built\nENV PYTHONUNBUFFERED=1\n"),
        v4.new_code_cell(f"%container run -d --name nbdocker -v {site}:/opt/hostsite:ro "
                         "nbdocker:1 sleep infinity\n%container ps"),
        v4.new_code_cell("%%container exec nbdocker\nimport sys\n"
                         "sys.path.append('/opt/hostsite')\nx = 41\n"
                         "print(open('/built').read().strip(), 'on python', "
                         "sys.version.split()[0])"),
        v4.new_code_cell("%%container exec nbdocker\nx + 1"),
        v4.new_code_cell("%%container exec nbdocker\nimport matplotlib.pyplot as plt\n"
                         "plt.figure(figsize=(3, 2))\nplt.plot([1, 3, 2])\n"
                         "plt.title('drawn in dockerd')\nplt.show()"),
        v4.new_code_cell("%%container exec nbdocker\nimport time\ninterrupted = False\n"
                         "try:\n    time.sleep(120)\nexcept KeyboardInterrupt:\n"
                         "    interrupted = True\n    raise",
                         metadata={"tags": ["interrupt", "raises-exception"]}),
        v4.new_code_cell("%%container exec nbdocker\nprint('after the interrupt:', "
                         "interrupted, x)"),
        v4.new_code_cell("%container rm -f nbdocker\n%container rmi nbdocker:1\n"
                         "left = %container ps -a -q\nprint(list(left))"),
    ]
    return v4.new_notebook(cells=cells)


def test_a_notebook_on_a_docker_context(docker_ctx, tmp_path, monkeypatch):
    from portside.kernel.kernelspec import install

    jupyter = tmp_path / "jupyter"
    install(prefix=str(jupyter))
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter / "share" / "jupyter"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(docker_ctx.config_home))
    monkeypatch.setenv("PORTSIDE_ROOT", str(tmp_path / "root"))  # the default context: unused
    monkeypatch.delenv("PORTSIDE_CONTEXT", raising=False)
    work = tmp_path / "nb"
    work.mkdir()
    nb = notebook(docker_ctx.name, host_site_packages())
    client = portside_notebook_client(nb, work)
    started = time.monotonic()
    try:
        client.execute()
    finally:
        docker_ctx.dockerd.docker("rm", "-f", "nbdocker", check=False)
    elapsed = time.monotonic() - started
    cells = nb.cells
    errors = [(i, o) for i, c in enumerate(cells) for o in outputs(c)
              if o.get("output_type") == "error"]
    assert [i for i, _ in errors] == [6], errors  # only the interrupted cell
    # the container's own exception, drawn with the container's traceback
    assert errors[0][1]["evalue"].startswith("KeyboardInterrupt")
    assert any("time.sleep(120)" in line for line in errors[0][1]["traceback"])
    assert text(cells[0]).splitlines()[-1].strip("'") == docker_ctx.name
    widgets = [o for o in outputs(cells[1]) if "application/vnd.jupyter.widget-view+json"
               in o.get("data", {})]
    assert widgets, outputs(cells[1])
    assert "nbdocker" in text(cells[2])
    assert "built in dockerd on python 3.11" in text(cells[3])
    assert text(cells[4]) == "42"
    pngs = [base64.b64decode(o["data"]["image/png"]) for o in outputs(cells[5])
            if "image/png" in o.get("data", {})]
    assert len(pngs) == 1 and pngs[0].startswith(b"\x89PNG\r\n\x1a\n")
    assert "after the interrupt: True 41" in text(cells[7])
    assert text(cells[8]).strip().endswith("[]")
    assert elapsed < 110  # the 120 s sleep did not run out
    # the same engine, seen by Docker's own CLI: nothing left
    assert "nbdocker" not in docker_ctx.dockerd.docker("images").out
