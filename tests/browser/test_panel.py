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


# ------------------------------------------------------------------ issue #18: the panel as a
# demanding user finds it (each test below failed on the panel before it)
def item(name: str) -> str:
    return f'#portside-panel [data-container="{name}"]'


def button(name: str, action: str) -> str:
    return f'#portside-panel [data-actions-for="{name}"] button[data-action="{action}"]'


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#portside-panel").screenshot(path=str(ARTIFACTS / f"{name}.png"))


def test_status_times_move_on_by_themselves(lab, page):
    _, _, cli, _ = lab
    cli("run", "-d", "--init", "--name", "ticking", "busybox:latest", "sleep", "300")
    try:
        status = page.locator(f"{item('ticking')}[data-state='running'] .ps-status")
        status.wait_for(timeout=5_000)
        first = status.inner_text()
        assert first.startswith("Up "), first
        # no event happens; the words still move on (and there is no second, stale "up 5s")
        wait_for(lambda: status.inner_text() not in (first, ""), 4, "the status to move on")
        assert "up " not in page.locator(item("ticking")).inner_text()
    finally:
        cli("rm", "-f", "ticking", check=False)


def test_ids_ports_networks_and_full_names_are_shown(lab, page):
    _, _, cli, _ = lab
    long_name = "a-container-with-a-rather-long-name-that-the-panel-must-cut"
    cid = cli("run", "-d", "--init", "--name", long_name, "-p", "127.0.0.1::80",
              "busybox:latest", "sleep", "300").strip()
    try:
        row = page.locator(f'{item(long_name)}[data-state="running"]')
        row.wait_for(timeout=5_000)
        assert row.locator(".ps-name").get_attribute("title") == long_name
        assert row.locator(".ps-mono").inner_text() == cid[:12]
        meta = row.locator(".ps-item-meta").inner_text()
        assert "->80/tcp" in meta and "net: bridge" in meta
        # every action on one line: the Remove button does not wrap to a line of its own
        tops = page.eval_on_selector_all(f'[data-actions-for="{long_name}"] button',
                                         "bs => bs.map(b => b.getBoundingClientRect().top)")
        assert len(tops) == 5 and len(set(tops)) == 1, tops
        # ... and none is cut off: each button's label fits in it, within the panel
        cut = page.eval_on_selector_all(
            f'[data-actions-for="{long_name}"] button',
            "bs => bs.filter(b => b.scrollWidth > b.clientWidth + 1 || b.getBoundingClientRect()"
            ".right > document.querySelector('#portside-panel').getBoundingClientRect().right)"
            ".map(b => b.dataset.action)")
        assert cut == [], cut
        assert row.locator('button[data-action="stop"]').get_attribute("title").startswith(
            "Stop: its stop signal, then SIGKILL after")
        shot(page, "portside-panel-container")
    finally:
        cli("rm", "-f", long_name, check=False)


def test_volume_prune_keeps_named_volumes_and_counts(lab, page):
    _, _, cli, root = lab
    cli("create", "--name", "withanon", "-v", "/scratch", "busybox:latest", "true")
    cli("rm", "withanon")                       # its anonymous volume stays behind, unused
    before = {r["Name"] for r in cli.rows("volume", "ls")}
    anonymous = before - {"data1"}
    assert len(anonymous) == 1
    page.locator('#portside-panel [data-section="volumes"] .ps-prune').click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=5_000)
    assert "Named volumes are kept" in dialog.inner_text()
    dialog.locator("button.jp-mod-accept").click()
    message = page.locator("#portside-panel .ps-message")
    wait_for(lambda: message.count() and message.inner_text().startswith("Pruned 1 volume,"),
             10, "the prune's count")
    assert "reclaimed" in message.inner_text()
    assert {r["Name"] for r in cli.rows("volume", "ls")} == before - anonymous
    # the status line does not stay forever
    wait_for(lambda: page.locator("#portside-panel .ps-message").count() == 0, 10,
             "the status line to go")


def test_image_prune_removes_only_dangling_images_by_default(lab, page):
    _, _, cli, _ = lab
    images = {f"{r['Repository']}:{r['Tag']}" for r in cli.rows("images")}
    page.locator('#portside-panel [data-section="images"] .ps-prune').click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=5_000)
    assert "dangling" in dialog.inner_text()
    assert not dialog.locator('input[name="all"]').is_checked()
    dialog.locator("button.jp-mod-accept").click()
    message = page.locator("#portside-panel .ps-message")
    wait_for(lambda: message.count() and message.inner_text().startswith("Pruned 0 images"),
             10, "the prune's count")
    assert {f"{r['Repository']}:{r['Tag']}" for r in cli.rows("images")} == images


def test_terminal_opens_a_shell_inside_the_container(lab, page):
    _, _, cli, _ = lab
    cid = cli("run", "-d", "--init", "--name", "shellbox", "busybox:latest", "sleep",
              "300").strip()
    try:
        page.locator(button("shellbox", "terminal")).click()
        terminal = page.locator(".jp-Terminal .xterm").last
        terminal.wait_for(timeout=15_000)
        terminal.click()
        # what is typed runs inside the container: it writes a file only the container has
        proof = lambda: cli("exec", "shellbox", "cat", "/tmp/proof", check=False)  # noqa: E731
        deadline = time.monotonic() + 30
        while proof() != f"in-42-{cid[:12]}\n":
            assert time.monotonic() < deadline, "the terminal's shell is not in the container"
            page.keyboard.type("echo in-$((6*7))-$(hostname) > /tmp/proof\n")
            time.sleep(1)
        shot(page, "portside-panel-terminal")
        page.keyboard.type("exit\n")
    finally:
        page.evaluate("window.jupyterapp.commands.execute('terminal:shutdown-all')"
                      ".catch(() => 0)")
        page.evaluate("window.jupyterapp.shell.activateById('portside-panel')")
        cli("rm", "-f", "shellbox", check=False)


def test_logs_follow_and_close_when_the_container_goes(lab, page):
    _, _, cli, _ = lab
    cli("run", "-d", "--name", "talker", "busybox:latest", "sh", "-c",
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done")
    try:
        page.locator(button("talker", "logs")).click()
        logs = page.locator('#portside-panel [data-logs-for="talker"] pre')
        logs.wait_for(timeout=5_000)
        wait_for(lambda: "tick 3" in logs.inner_text(), 10, "the first lines")
        seen = logs.inner_text()
        wait_for(lambda: len(logs.inner_text()) > len(seen) and "tick 12" in logs.inner_text(),
                 10, "new lines to follow")
    finally:
        cli("rm", "-f", "talker", check=False)
    wait_for(lambda: page.locator('#portside-panel [data-logs-for="talker"]').count() == 0, 3,
             "the logs of a removed container to close")


def test_run_form_asks_once_with_every_field(lab, page):
    _, _, cli, _ = lab
    try:
        page.locator('#portside-panel [data-image="busybox:latest"] button[data-action="run"]'
                     ).click()
        form = page.locator(".jp-Dialog .ps-run-form")
        form.wait_for(timeout=5_000)
        # busybox's own command is `sh`, which exits at once when run detached
        assert form.locator('input[name="command"]').input_value() == "sleep infinity"
        assert form.locator('input[name="init"]').is_checked()
        form.locator('input[name="name"]').fill("formrun")
        form.locator('textarea[name="ports"]').fill("127.0.0.1::80")
        form.locator('textarea[name="volumes"]').fill("formdata:/data")
        form.locator('textarea[name="env"]').fill("MODE=panel")
        page.locator(".jp-Dialog").screenshot(path=str(ARTIFACTS / "portside-run-form.png"))
        page.locator(".jp-Dialog button.jp-mod-accept").click()
        page.locator(f'{item("formrun")}[data-state="running"]').wait_for(timeout=10_000)
        doc = json.loads(cli("inspect", "formrun"))[0]
        assert doc["HostConfig"]["Init"] is True and "MODE=panel" in doc["Config"]["Env"]
        assert doc["Config"]["Cmd"] == ["sleep", "infinity"]
        assert "80/tcp" in doc["HostConfig"]["PortBindings"]
        assert any(m.get("Name") == "formdata" for m in doc["Mounts"])
        # removing a running container says it is killed
        page.locator(button("formrun", "remove")).click()
        dialog = page.locator(".jp-Dialog")
        dialog.wait_for(timeout=5_000)
        assert "it will be killed" in dialog.inner_text()
        dialog.locator("button.jp-mod-accept").click()
        wait_for(lambda: "formrun" not in panel_values(page, "data-container"), 10,
                 "the container to go")
    finally:
        cli("rm", "-f", "formrun", check=False)
        cli("volume", "rm", "formdata", check=False)


def test_stop_shows_progress_and_disables_the_buttons(lab, page):
    _, _, cli, _ = lab
    # no --init: sleep as PID 1 ignores SIGTERM, so the stop waits out its 3 s
    cli("run", "-d", "--stop-timeout", "3", "--name", "stubborn", "busybox:latest", "sleep",
        "300")
    try:
        page.locator(button("stubborn", "stop")).click()
        busy = page.locator(f'{item("stubborn")}[data-busy="stop"]')
        busy.wait_for(timeout=2_000)
        assert busy.locator(".ps-status").inner_text() == "Stopping…"
        states = page.eval_on_selector_all(f'[data-actions-for="stubborn"] button',
                                           "bs => bs.map(b => [b.dataset.action, b.disabled])")
        assert dict(states) == {"stop": True, "restart": True, "logs": False,
                                "terminal": True, "remove": True}
        assert "Stopping stubborn" in page.locator("#portside-panel .ps-message").inner_text()
        page.locator(f'{item("stubborn")}[data-state="exited"][data-busy=""]').wait_for(
            timeout=10_000)
        assert "stubborn stopped in" in page.locator("#portside-panel .ps-message").inner_text()
    finally:
        cli("rm", "-f", "stubborn", check=False)
