"""The side panel in a real JupyterLab, driven by Playwright through Debian's chromium.

One JupyterLab process serves the whole module (starting it costs seconds): it runs with a fresh
``PORTSIDE_ROOT``, the built extension copied into a temporary ``JUPYTER_DATA_DIR`` and the server
extension enabled in a temporary config folder, so nothing outside the test's folders is used.
The engine state is made and checked with the ``portside`` CLI in separate processes, as a
terminal or a notebook would. Screenshots of the panel (light and dark themes) are written under
``test-artifacts/``.

Needs: ``/usr/bin/chromium`` (Debian package ``chromium``) and the built extension
(``cd labextension && npm install && npm run build``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BUILT = REPO / "kernel" / "labextension"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
VENV_BIN = Path(sys.executable).parent
PORTSIDE = str(VENV_BIN / "portside")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic", "--disable-dev-shm-usage"]

if not Path(CHROMIUM).exists():
    pytest.skip("needs Debian's chromium at /usr/bin/chromium", allow_module_level=True)
if not (BUILT / "package.json").is_file():
    pytest.skip("the labextension is not built (cd labextension && npm install && npm run build)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


class Portside:
    """The ``portside`` CLI on the test's root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run([PORTSIDE, *args], capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL,
                              env={**os.environ, "PORTSIDE_ROOT": str(self.root)})
        if check and proc.returncode:
            raise AssertionError(f"portside {' '.join(args)}: {proc.stderr}")
        return proc.stdout

    def rows(self, *args: str) -> list[dict]:
        return [json.loads(line) for line in self(*args, "--format", "json").splitlines()
                if line.strip()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A running JupyterLab with the portside panel; yields (url, token, Portside, root)."""
    base = tmp_path_factory.mktemp("lab")
    root, data, config, work = (base / "root", base / "data", base / "config", base / "work")
    for d in (root, data / "labextensions", config, work):
        d.mkdir(parents=True)
    shutil.copytree(BUILT, data / "labextensions" / "portside")
    (config / "jupyter_server_config.json").write_text(json.dumps(
        {"ServerApp": {"jpserver_extensions": {"portside.kernel.server": True}}}))
    cli = Portside(root)
    cli("image", "bootstrap", "busybox", "-t", "busybox:latest", "-q")
    cli("tag", "busybox:latest", "example/box:1")
    cli("volume", "create", "data1")
    cli("run", "-d", "--name", "web", "busybox:latest", "sleep", "300")
    cli("create", "--name", "idle", "busybox:latest", "true")

    token, port = secrets.token_hex(16), free_port()
    env = {**os.environ, "PORTSIDE_ROOT": str(root), "JUPYTER_DATA_DIR": str(data),
           "JUPYTER_CONFIG_DIR": str(config), "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"), "PATH": f"{VENV_BIN}:"
           + os.environ.get("PATH", "")}
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
        yield url, token, cli, root
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        cli("rm", "-f", "web", "idle", check=False)


@pytest.fixture(scope="module")
def page(lab):
    url, token, _, _ = lab
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            page.goto(f"{url}/lab?token={token}", wait_until="domcontentloaded")
            tab = page.locator('.lm-TabBar-tab[data-id="portside-panel"]')
            tab.wait_for(timeout=60_000)
            tab.click()
            page.locator("#portside-panel .ps-panel").wait_for(timeout=10_000)
            page.locator('#portside-panel [data-image="busybox:latest"]').wait_for(timeout=10_000)
            yield page
        finally:
            browser.close()


def panel_values(page, attribute: str) -> set[str]:
    return set(page.eval_on_selector_all(
        f"#portside-panel [{attribute}]",
        f"els => els.map(e => e.getAttribute('{attribute}'))"))


def wait_for(predicate, timeout: float, what: str) -> float:
    """Poll ``predicate`` until true; returns the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def test_panel_lists_what_the_cli_lists(lab, page):
    _, _, cli, _ = lab
    images = {f"{r['Repository']}:{r['Tag']}" for r in cli.rows("images")}
    assert images == {"busybox:latest", "example/box:1"}
    wait_for(lambda: panel_values(page, "data-image") == images, 5, "images listed")
    volumes = {r["Name"] for r in cli.rows("volume", "ls")}
    wait_for(lambda: panel_values(page, "data-volume") == volumes, 5, "volumes listed")
    names = {r["Names"] for r in cli.rows("ps", "-a")}
    assert names == {"web", "idle"}
    wait_for(lambda: panel_values(page, "data-container") == names, 5, "containers listed")


def test_screenshots_light_and_dark(page):
    ARTIFACTS.mkdir(exist_ok=True)
    panel = page.locator("#portside-panel")
    panel.screenshot(path=str(ARTIFACTS / "portside-panel-light.png"))
    page.evaluate("window.jupyterapp.commands.execute('apputils:change-theme',"
                  " {theme: 'JupyterLab Dark'})")
    page.locator('body[data-jp-theme-light="false"]').wait_for(state="attached", timeout=10_000)
    page.wait_for_timeout(300)                      # let the theme's CSS settle
    panel.screenshot(path=str(ARTIFACTS / "portside-panel-dark.png"))
    background = page.eval_on_selector(
        "#portside-panel", "e => getComputedStyle(e).backgroundColor")
    assert background != "rgb(255, 255, 255)"
    page.evaluate("window.jupyterapp.commands.execute('apputils:change-theme',"
                  " {theme: 'JupyterLab Light'})")
    page.locator('body[data-jp-theme-light="true"]').wait_for(state="attached", timeout=10_000)
    for name in ("light", "dark"):
        assert (ARTIFACTS / f"portside-panel-{name}.png").stat().st_size > 1000


def test_changes_made_outside_appear_live(lab, page):
    _, _, cli, _ = lab
    cli("volume", "create", "live1")
    took = wait_for(lambda: "live1" in panel_values(page, "data-volume"), 2.0,
                    "a volume created by the CLI appears")
    assert took < 2.0
    cli("volume", "rm", "live1")
    wait_for(lambda: "live1" not in panel_values(page, "data-volume"), 2.0,
             "a volume removed by the CLI disappears")


def test_container_started_outside_appears_within_two_seconds(lab, page):
    _, _, cli, _ = lab
    try:
        cli("run", "-d", "--name", "fromnb", "busybox:latest", "sleep", "60")
        running = '#portside-panel [data-container="fromnb"][data-state="running"]'
        # the CLI has returned, so the container is running: the panel must say so within 2 s
        took = wait_for(lambda: page.locator(running).count() == 1, 2.0,
                        "a container started by the CLI appears as running")
        assert took < 2.0
    finally:
        cli("rm", "-f", "fromnb", check=False)
    wait_for(lambda: "fromnb" not in panel_values(page, "data-container"), 2.0,
             "a removed container disappears")


def test_stop_button_stops_the_container(lab, page):
    _, _, _, root = lab
    from portside.engine.api import Engine

    page.locator('#portside-panel [data-actions-for="web"] button[data-action="stop"]').click()
    engine = Engine(root=root)
    try:
        wait_for(lambda: engine.containers.get("web").status == "exited", 20,
                 "the engine reports web exited")
    finally:
        engine.close()
    page.locator('#portside-panel [data-container="web"][data-state="exited"]').wait_for(
        timeout=5_000)


def test_remove_asks_first_then_removes(lab, page):
    _, _, cli, _ = lab
    remove = page.locator('#portside-panel [data-image="example/box:1"] '
                          'button[data-action="remove"]')
    remove.click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=5_000)
    dialog.locator("button.jp-mod-reject").click()
    assert "example/box" in cli("images")          # cancelled: still there
    remove.click()
    page.locator(".jp-Dialog button.jp-mod-accept").click()
    wait_for(lambda: "example/box" not in cli("images"), 10, "image removed")
    wait_for(lambda: "example/box:1" not in panel_values(page, "data-image"), 2.0,
             "removed image leaves the panel")
