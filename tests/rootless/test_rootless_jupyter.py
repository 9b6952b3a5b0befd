"""Notebooks and the side panel's REST API as a user without root.

A Jupyter kernel and server have threads, and the kernel lets no threaded process join a user
namespace: they reach the engine through an engine process that joined it
(:mod:`portside.engine.remote`). Here nbclient runs a notebook *as the test user* (build cell,
run, two ``%%container exec`` cells that keep their state), and a Jupyter server started as the
user answers the panel's REST API.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

pytestmark = [pytest.mark.rootless, pytest.mark.slow]

nbformat = pytest.importorskip("nbformat")

_EXECUTE = """
import sys, nbformat, nbclient
nb = nbformat.read(sys.argv[1], as_version=4)
nbclient.NotebookClient(nb, kernel_name="python3", timeout=300,
                        resources={"metadata": {"path": sys.argv[3]}}).execute()
nbformat.write(nb, sys.argv[2])
"""


def _notebook(*cells: str) -> bytes:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    return nbformat.writes(nb).encode()


def _text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
        elif out.get("output_type") == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}")
    return "".join(parts)


def test_a_notebook_as_the_user(rl, debian_tar):
    rl("load", "-i", str(debian_tar), "-q")
    rl.sh("mkdir -p ~/nb")
    rl.sh("cat > ~/nb/in.ipynb", input=_notebook(
        "%load_ext portside",
        "%%container build -t nbimg:1 .\n"
        "FROM portside/debian:bookworm\n"
        "RUN echo built > /built",
        "%container run -d --name nbc --net none nbimg:1 sleep infinity",
        "%%container exec nbc\n"
        "import os\n"
        "x = 41\n"
        "open('/built').read().strip(), os.getuid()",
        "%%container exec nbc\n"
        "x + 1",
        "ids = %container ps -q\n"
        "len(ids)",
        "%container rm -f nbc"))
    nbdir = rl.path("nb")
    proc = rl.user.run([str(rl.user.venv.python), "-c", _EXECUTE, str(nbdir / "in.ipynb"),
                        str(nbdir / "out.ipynb"), str(nbdir)], env=rl.env(), check=False,
                       timeout=600)
    assert proc.returncode == 0, proc.err[-3000:]
    nb = nbformat.reads((nbdir / "out.ipynb").read_text(), as_version=4)
    texts = [_text(c) for c in nb.cells]
    assert "Error" not in texts[1] and rl("images", "-q", "nbimg:1").out.strip()
    assert len(texts[2].split()[0]) == 64  # the container id
    assert texts[3].strip() == "('built', 0)"
    assert texts[4].strip() == "42"  # the variable survived between cells
    assert texts[5].strip() == "1"
    assert rl("ps", "-aq").out == ""
    # the kernel's engine process went with the kernel
    assert not [p for p in rl.user.processes() if "portside.engine.remote.server" in p]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(port: int, token: str, path: str, method: str = "GET", body: dict | None = None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/portside/api/{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_the_panel_api_as_the_user(rl):
    rl("image", "bootstrap", "busybox", "-t", "busybox:latest", "-q")
    rl("run", "-d", "--name", "panel", "--net", "none", "busybox", "sleep", "120")
    port, token = _free_port(), secrets.token_hex(16)
    log = rl.root.parent / "jupyter-server.log"
    log_file = open(log, "wb")
    server = rl.user.popen([str(rl.user.venv.python), "-m", "jupyter_server",
                            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
                            f"--ServerApp.token={token}", "--ServerApp.open_browser=False",
                            f"--ServerApp.root_dir={rl.user.home}"], env=rl.env(),
                           stdout=subprocess.DEVNULL, stderr=log_file)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, info = _api(port, token, "info")
                break
            except (ConnectionError, urllib.error.URLError):
                assert server.poll() is None and time.monotonic() < deadline, \
                    log.read_text()[-3000:]
                time.sleep(0.1)
        assert status == 200 and info["root"] == str(rl.root)
        status, images = _api(port, token, "images")
        assert status == 200
        assert [(i["Repository"], i["Tag"]) for i in images] == [("busybox", "latest")]
        assert images[0]["SizeBytes"] > 1_000_000
        status, rows = _api(port, token, "containers")
        assert status == 200 and [r.get("Names") for r in rows] == ["panel"]
        # the default network (the container's own slirp4netns) from the panel too
        status, made = _api(port, token, "containers", "POST", {"image": "busybox:latest",
                                                                "command": ["true"]})
        assert status == 201 and made["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] \
            == "10.0.2.100"
        status, _ = _api(port, token, f"containers/{made['Id']}?force=1", "DELETE")
        assert status == 204
        status, refused = _api(port, token, "containers", "POST", {"image": "no-such:1",
                                                                   "command": ["true"]})
        assert status == 404 and "no-such" in refused["message"]
        status, _ = _api(port, token, "containers/panel/stop?t=0", "POST", {})
        assert status == 200
        status, doc = _api(port, token, "containers/panel")
        assert doc["State"]["Status"] == "exited"
        status, _ = _api(port, token, "containers/panel", "DELETE")
        assert status == 204
        assert rl("ps", "-aq").out == ""
    finally:
        server.terminate()
        server.wait(timeout=30)
        log_file.close()
        log.unlink()
