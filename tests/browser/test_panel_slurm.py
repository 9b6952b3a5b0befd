"""The side panel in a Slurm context, in a real JupyterLab driven through Debian's chromium,
against the loopback cluster the Slurm tests use (Debian's slurmctld and two slurmd).

The server starts on the default context; the panel's context selector switches it to the
user's Slurm context ``hpc`` (``partition=tiny``: node1 and its two GPUs). A container started
from a terminal then shows up with its job: job id, node, the GPUs Slurm allocated and the time
the job has run; one that waits for GPUs says why (``pending (Resources)``), and starts by itself
in the panel once the panel's Stop button has freed them (the context's events are its
containers, watched). The Terminal button's request opens a shell inside a container on its
node. ``/info`` answers for the cluster (Slurm's version, no volumes). A screenshot of the
panel on the Slurm context lands in ``test-artifacts/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from slurm_cluster import SlurmCluster  # noqa: E402

from .test_panel import (ARTIFACTS, BUILT, CHROMIUM, CHROMIUM_ARGS, PORTSIDE,  # noqa: E402
                         VENV_BIN, free_port, panel_values, sync_api, wait_for)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: A container command that ends at once on SIGTERM, as a well-behaved program does.
TERMINABLE = "trap 'exit 0' TERM; while :; do sleep 0.1; done"


class Lab:
    """JupyterLab on the default context; the user's contexts include ``hpc``."""

    def __init__(self, base, cluster: SlurmCluster) -> None:
        self.base = base
        self.cluster = cluster
        root, data, config = base / "root", base / "data", base / "config"
        for d in (root, data / "labextensions", config, base / "work"):
            d.mkdir(parents=True)
        shutil.copytree(BUILT, data / "labextensions" / "portside")
        (config / "jupyter_server_config.json").write_text(json.dumps(
            {"ServerApp": {"jpserver_extensions": {"portside.kernel.server": True}}}))
        self.env = {**os.environ, "PORTSIDE_ROOT": str(root),
                    "XDG_CONFIG_HOME": str(base / "xdg-config"),
                    "XDG_DATA_HOME": str(base / "xdg-data"),
                    "PORTSIDE_CDI_SPEC_DIRS": str(cluster.cdi_dir),
                    "PORTSIDE_TEST_SLURM": cluster.env["PORTSIDE_TEST_SLURM"],
                    "JUPYTER_DATA_DIR": str(data), "JUPYTER_CONFIG_DIR": str(config),
                    "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
                    "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"),
                    "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
                    "PATH": f"{VENV_BIN}:" + os.environ.get("PATH", "")}
        for key in ("PORTSIDE_CONTEXT", "SLURM_CONF"):
            self.env.pop(key, None)
        self.token, self.port = secrets.token_hex(16), free_port()
        self.auth = {"Authorization": f"token {self.token}"}
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def portside(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run([PORTSIDE, *args], capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL, env=self.env)
        if check and proc.returncode:
            raise AssertionError(f"portside {' '.join(args)}: {proc.stderr}")
        return proc.stdout

    def api(self, path: str) -> dict:
        req = urllib.request.Request(f"{self.url}/portside/api/{path}",
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())

    def terminal_types(self, name: str, line: str) -> None:
        """What the panel's Terminal button does (``POST containers/NAME/terminal``), then
        ``line`` typed into that terminal over its websocket; returns once the terminal's
        process has ended (the line should end it). The terminal is shut down in any case."""
        import asyncio
        import threading

        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        req = urllib.request.Request(f"{self.url}/portside/api/containers/{name}/terminal",
                                     data=b"{}", method="POST",
                                     headers={**self.auth, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            terminal = json.loads(resp.read())["name"]

        async def talk() -> None:
            ws = await websocket_connect(HTTPRequest(
                f"ws://127.0.0.1:{self.port}/terminals/websocket/{terminal}",
                headers=self.auth))
            try:
                ws.write_message(json.dumps(["stdin", line]))
                while await ws.read_message() is not None:  # until the process ends
                    pass
            finally:
                ws.close()

        failed: list[BaseException] = []

        def run() -> None:  # a loop of its own: playwright's runs in this thread
            try:
                asyncio.run(asyncio.wait_for(talk(), 60))
            except BaseException as exc:  # noqa: BLE001 (raised below, in the test's thread)
                failed.append(exc)
        try:
            thread = threading.Thread(target=run)
            thread.start()
            thread.join()
            if failed:
                raise failed[0]
        finally:
            self.close_terminals()

    def close_terminals(self) -> None:
        """Shut down every terminal the server runs (their processes with them)."""
        req = urllib.request.Request(f"{self.url}/api/terminals", headers=self.auth)
        with urllib.request.urlopen(req, timeout=30) as resp:
            names = [t["name"] for t in json.loads(resp.read())]
        for name in names:
            with contextlib.suppress(urllib.error.HTTPError):  # ended meanwhile
                urllib.request.urlopen(urllib.request.Request(
                    f"{self.url}/api/terminals/{name}", method="DELETE", headers=self.auth),
                    timeout=30).close()

    def start(self) -> None:
        log = open(self.base / "lab.log", "wb")
        try:
            self.proc = subprocess.Popen(
                [str(VENV_BIN / "jupyter"), "lab", "--no-browser", f"--port={self.port}",
                 "--ip=127.0.0.1", "--allow-root", f"--ServerApp.token={self.token}",
                 f"--ServerApp.root_dir={self.base / 'work'}",
                 "--LabApp.expose_app_in_browser=True",
                 "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}",
                                            timeout=2):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("JupyterLab did not start:\n"
                                         + (self.base / "lab.log").read_text()[-3000:])
                time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(OSError):  # a terminal's shell would outlive the server
                self.close_terminals()
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="module")
def slurm_lab(tmp_path_factory):
    base = tmp_path_factory.mktemp("slurm-lab")
    with SlurmCluster(min_job_age=2) as cluster:
        lab = Lab(base, cluster)
        lab.portside("image", "bootstrap", "busybox", "-t", "busybox:latest", "-q")
        lab.portside("context", "create", "hpc", "--slurm",
                     f"partition=tiny,time=10:00,root={base / 'nodes'}/%n,conf={cluster.conf}")
        try:
            lab.start()
            with sync_api.sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS)
                try:
                    page = browser.new_context(viewport={"width": 1400, "height": 900}) \
                        .new_page()
                    page.goto(f"{lab.url}/lab?token={lab.token}", wait_until="domcontentloaded")
                    tab = page.locator('.lm-TabBar-tab[data-id="portside-panel"]')
                    tab.wait_for(timeout=60_000)
                    tab.click()
                    page.locator('#portside-panel select.ps-context[data-context="default"]') \
                        .wait_for(timeout=10_000)
                    yield lab, page
                finally:
                    browser.close()
        finally:
            lab.stop()
            left = lab.portside("-c", "hpc", "ps", "-a", "-q", check=False).split()
            if left:
                lab.portside("-c", "hpc", "rm", "-f", *left, check=False)
            lab.portside("context", "rm", "-f", "hpc", check=False)


def _meta(page, name: str) -> str:
    return page.locator(f'#portside-panel [data-container="{name}"] .ps-slurm').inner_text()


def test_the_panel_shows_a_slurm_contexts_jobs(slurm_lab):
    lab, page = slurm_lab
    page.select_option("#portside-panel select.ps-context", "hpc")
    page.locator('#portside-panel select.ps-context[data-context="hpc"]') \
        .wait_for(timeout=10_000)
    # the images are the local ones (built and pulled where the notebook runs)
    wait_for(lambda: panel_values(page, "data-image") == {"busybox:latest"}, 10,
             "the local images listed")
    info = lab.api("info")
    assert info["context"] == "hpc" and info["kind"] == "slurm"
    assert info["endpoint"].startswith("slurm: partition=tiny")
    assert info["version"]["Server"]["Engine"] == "Slurm (context hpc)"
    assert re.fullmatch(r"\d+\.\d+\.\d+", info["version"]["Server"]["Version"])
    assert info["collections"]["volumes"] is False and info["root"] is None

    lab.portside("-c", "hpc", "run", "-d", "--name", "first", "--gpus", "1", "busybox", "sh",
                 "-c", TERMINABLE)
    job = lab.portside("-c", "hpc", "inspect", "first", "--format", "{{.Slurm.JobId}}").strip()
    row = '#portside-panel [data-container="first"][data-state="running"]'
    # started from a terminal: the context's watched containers bring it within a poll or two
    wait_for(lambda: page.locator(row).count() == 1, 10, "first listed as running")
    job_line = page.locator(f'#portside-panel [data-container="first"] '
                            f'.ps-slurm[data-slurm-job="{job}"]')
    job_line.wait_for(timeout=5_000)
    text = _meta(page, "first")
    assert f"job {job}" in text and "on node1" in text, text
    assert "GPUs: " in text, text
    assert re.search(r"elapsed \d+:\d\d", text), text

    # Terminal: the panel's button asks the server for a terminal whose process is a shell
    # inside the container on its node (no terminal there: exec -i, the shell interactive);
    # typed into over the terminal's websocket as JupyterLab's xterm does, it writes a file
    # only the container has
    cid = lab.portside("-c", "hpc", "inspect", "first", "--format", "{{.Id}}").strip()
    lab.terminal_types("first", "echo in-$((6*7))-$(hostname) > /tmp/proof; exit\r")
    assert lab.portside("-c", "hpc", "exec", "first", "cat", "/tmp/proof") == \
        f"in-42-{cid[:12]}\n"

    # node1 has two GPUs, one taken: a job asking for two waits, and the panel says why
    lab.portside("-c", "hpc", "run", "-d", "--name", "second", "--gpus", "2", "busybox", "sh",
                 "-c", TERMINABLE)
    waiting = '#portside-panel [data-container="second"][data-state="created"]'
    wait_for(lambda: page.locator(waiting).count() == 1, 10, "second listed as waiting")
    wait_for(lambda: "pending (Resources)" in _meta(page, "second"), 10, "Slurm's reason shown")
    assert "elapsed" not in _meta(page, "second")

    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#portside-panel").screenshot(
        path=str(ARTIFACTS / "portside-panel-slurm-context.png"))
    # the volumes a Slurm context does not have (each node has its own) are not an error
    messages = page.locator("#portside-panel .ps-message")
    assert messages.count() == 0 or "volumes" not in messages.inner_text()
    assert panel_values(page, "data-volume") == set()

    # Stop (the panel's button) ends first's job; second's then runs, and the panel follows
    page.locator('#portside-panel [data-actions-for="first"] button[data-action="stop"]').click()
    page.locator('#portside-panel [data-container="first"][data-state="exited"]') \
        .wait_for(timeout=30_000)
    wait_for(lambda: page.locator('#portside-panel [data-container="second"]'
                                  '[data-state="running"]').count() == 1, 15,
             "second runs once the GPUs are free")
    wait_for(lambda: "on node1" in _meta(page, "second"), 10, "second's node shown")

    page.locator('#portside-panel [data-actions-for="second"] button[data-action="remove"]') \
        .click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=5_000)
    assert "will be killed" in dialog.inner_text()  # it runs: Kill and remove
    dialog.locator("button.jp-mod-accept").click()
    dialog.wait_for(state="detached", timeout=5_000)
    try:
        # the job ends before the record goes: up to the engine's END_TIMEOUT (30 s) when
        # Slurm is slow to end it
        wait_for(lambda: "second" not in lab.portside("-c", "hpc", "ps", "-a", "--format",
                                                      "{{.Names}}").split(), 45,
                 "second removed with its job")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the panel said: "
                             f"{page.locator('#portside-panel').inner_text()!r}") from None
    wait_for(lambda: "second" not in panel_values(page, "data-container"), 10,
             "second leaves the panel")
    lab.portside("-c", "hpc", "rm", "-f", "first")
    wait_for(lambda: panel_values(page, "data-container") == set(), 10, "nothing listed")
    wait_for(lambda: not lab.cluster.active_jobs(), 30, "every job ended")
    page.select_option("#portside-panel select.ps-context", "default")
    page.locator('#portside-panel select.ps-context[data-context="default"]') \
        .wait_for(timeout=10_000)
    assert (ARTIFACTS / "portside-panel-slurm-context.png").stat().st_size > 1000
