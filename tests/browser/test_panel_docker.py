"""The side panel on a Docker context, in a real JupyterLab driven through Debian's chromium.

The server starts on the default context; the panel's context selector switches it to the
tests' private dockerd, whose images and containers the panel then lists, and a container
started with Docker's own CLI appears within moments (dockerd's events API feeds the live
updates). A screenshot of the panel on the Docker context lands in ``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest

from dockerd_fixture import BUSYBOX, DEBIAN, dockerd, docker_ctx  # noqa: F401 - fixtures

from .test_panel import (ARTIFACTS, BUILT, CHROMIUM, CHROMIUM_ARGS, VENV_BIN, free_port,
                         panel_values, sync_api, wait_for)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def docker_lab(tmp_path_factory, dockerd):  # noqa: F811 - the session's dockerd
    """JupyterLab with the panel; the user's contexts include the tests' dockerd."""
    base = tmp_path_factory.mktemp("docker-lab")
    root, data, config, work = (base / "root", base / "data", base / "config", base / "work")
    for d in (root, data / "labextensions", config, work):
        d.mkdir(parents=True)
    shutil.copytree(BUILT, data / "labextensions" / "portside")
    (config / "jupyter_server_config.json").write_text(json.dumps(
        {"ServerApp": {"jpserver_extensions": {"portside.kernel.server": True}}}))
    token, port = secrets.token_hex(16), free_port()
    env = {**dockerd.env(), "PORTSIDE_ROOT": str(root), "JUPYTER_DATA_DIR": str(data),
           "JUPYTER_CONFIG_DIR": str(config), "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
           "PATH": f"{VENV_BIN}:" + os.environ.get("PATH", "")}
    log = open(base / "lab.log", "wb")
    proc = subprocess.Popen(
        [str(VENV_BIN / "jupyter"), "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         "--allow-root", f"--ServerApp.token={token}", f"--ServerApp.root_dir={work}",
         "--LabApp.expose_app_in_browser=True",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("JupyterLab did not start:\n"
                                         + (base / "lab.log").read_text()[-3000:])
                time.sleep(0.3)
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=CHROMIUM_ARGS)
            try:
                page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
                page.goto(f"{url}/lab?token={token}", wait_until="domcontentloaded")
                tab = page.locator('.lm-TabBar-tab[data-id="portside-panel"]')
                tab.wait_for(timeout=60_000)
                tab.click()
                page.locator('#portside-panel select.ps-context[data-context="default"]') \
                    .wait_for(timeout=10_000)
                yield page
            finally:
                browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_the_panel_switches_to_a_docker_context_and_follows_it(docker_lab, docker_ctx):
    page = docker_lab
    options = page.eval_on_selector_all("#portside-panel select.ps-context option",
                                        "els => els.map(e => e.value)")
    assert options[0] == "default" and docker_ctx.name in options
    assert panel_values(page, "data-image") == set()  # the default context's empty store
    page.select_option("#portside-panel select.ps-context", docker_ctx.name)
    page.locator(f'#portside-panel select.ps-context[data-context="{docker_ctx.name}"]') \
        .wait_for(timeout=10_000)
    wait_for(lambda: {BUSYBOX, DEBIAN} <= panel_values(page, "data-image"), 10,
             "dockerd's images listed")
    docker = docker_ctx.dockerd.docker
    try:
        docker("run", "-d", "--name", "fromdocker", BUSYBOX, "sleep", "600")
        running = '#portside-panel [data-container="fromdocker"][data-state="running"]'
        # Docker's CLI has returned: dockerd's events must bring it to the panel within 3 s
        took = wait_for(lambda: page.locator(running).count() == 1, 3.0,
                        "a container started with docker appears as running")
        assert took < 3.0
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("#portside-panel").screenshot(
            path=str(ARTIFACTS / "portside-panel-docker-context.png"))
        page.locator('#portside-panel [data-actions-for="fromdocker"] '
                     'button[data-action="stop"]').click()
        wait_for(lambda: docker("inspect", "-f", "{{.State.Status}}", "fromdocker").out.strip()
                 == "exited", 20, "dockerd reports the container exited")
        page.locator('#portside-panel [data-container="fromdocker"][data-state="exited"]') \
            .wait_for(timeout=5_000)
    finally:
        docker("rm", "-f", "fromdocker", check=False)
    wait_for(lambda: "fromdocker" not in panel_values(page, "data-container"), 3.0,
             "a container removed with docker leaves the panel")
    page.select_option("#portside-panel select.ps-context", "default")
    wait_for(lambda: panel_values(page, "data-image") == set(), 10,
             "back on the default context")
    assert (ARTIFACTS / "portside-panel-docker-context.png").stat().st_size > 1000
