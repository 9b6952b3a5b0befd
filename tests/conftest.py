"""Fixtures shared by every test tier.

* ``portside_root`` — a fresh engine state folder per test (``PORTSIDE_ROOT``).
* ``engine`` — an :class:`Engine` on that root.
* ``cli`` — runs the real ``portside`` console script from the virtual environment in a new
  process, with that root, and returns the completed process (never prompts: stdin is closed).
* ``busybox_image`` — a busybox image bootstrapped from Debian's busybox-static (well under 1 s).
* ``debian_tar`` — a debootstrapped Debian with python3, made once and cached outside the
  repository (``$PORTSIDE_TEST_CACHE``, default /var/cache/portside-test), keyed by its inputs.
* ``host_unchanged`` — autouse for integration/interop/rootless tests: mounts, network namespaces,
  portside cgroups and stray processes are compared before and after each test.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
PORTSIDE = str(VENV_BIN / "portside") if (VENV_BIN / "portside").exists() else shutil.which("portside")
CACHE = Path(os.environ.get("PORTSIDE_TEST_CACHE", "/var/cache/portside-test"))
IS_ROOT = os.geteuid() == 0


#: Every test carries exactly one of these (pyproject declares them): the tier decides where it
#: may run (unit: anywhere, no lock; the others: as root, under the shared test lock; rootless:
#: root makes test users and runs portside as them).
TIERS = ("unit", "integration", "interop", "conformance", "rootless")
#: the tiers that need root, whose tests are checked for leftovers (``host_unchanged``)
ROOT_TIERS = ("integration", "interop", "rootless")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: an untiered test must not vanish quietly
def pytest_collection_modifyitems(config, items):
    wrong = []
    for item in items:
        tiers = [m.name for m in item.iter_markers() if m.name in TIERS]
        if len(set(tiers)) != 1:
            wrong.append(f"{item.nodeid}: {'tiers ' + ', '.join(sorted(set(tiers))) if tiers else 'no tier marker'}")
    if wrong:
        raise pytest.UsageError("every test needs exactly one tier marker "
                                f"({', '.join(TIERS)}):\n  " + "\n  ".join(wrong))
    for item in items:
        # markers, not keywords: keywords hold folder names too (this checkout may sit in one
        # called "rootless")
        if any(item.get_closest_marker(m) for m in ROOT_TIERS) and not IS_ROOT:
            item.add_marker(pytest.mark.skip(reason="needs root (run `make test` as root)"))


@pytest.fixture
def portside_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    return root


@pytest.fixture
def engine(portside_root: Path):
    from portside.engine.api import Engine

    eng = Engine(root=portside_root)
    yield eng
    eng.close()


class CLI:
    """Runs ``portside`` in a new process against one state folder."""

    def __init__(self, root: Path, cwd: Path) -> None:
        self.root = root
        self.cwd = cwd

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PORTSIDE_ROOT"] = str(self.root)
        env.update(extra)
        return env

    def __call__(self, *args: str, input: bytes | None = None, check: bool = True,
                 env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run([PORTSIDE, *args], input=input, capture_output=True,
                              stdin=None if input is not None else subprocess.DEVNULL,
                              cwd=self.cwd, env=self.env(**(env or {})), timeout=timeout)
        proc.out = proc.stdout.decode(errors="replace")  # type: ignore[attr-defined]
        proc.err = proc.stderr.decode(errors="replace")  # type: ignore[attr-defined]
        if check and proc.returncode != 0:
            raise AssertionError(f"portside {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.err}\n{proc.out[-2000:]}")
        return proc


def portside_notebook_client(nb, work: Path):
    """nbclient for a notebook on the "Python 3 (portside)" kernel, run in ``work``: a cell
    tagged ``interrupt`` is interrupted after 8 s (the tests expect it to run until then), any
    other cell may take 300 s."""
    import nbclient

    return nbclient.NotebookClient(
        nb, kernel_name="portside", resources={"metadata": {"path": str(work)}},
        timeout_func=lambda cell: 8 if "interrupt" in cell.metadata.get("tags", []) else 300,
        interrupt_on_timeout=True)


def cell_outputs(cell) -> list[dict]:
    """The outputs nbclient left in an executed notebook cell."""
    return list(cell.get("outputs", []))


def cell_text(cell) -> str:
    """What an executed cell showed as text: its streams and its results' text/plain."""
    out = []
    for o in cell_outputs(cell):
        if o.get("output_type") == "stream":
            out.append(o.get("text", ""))
        elif "data" in o:
            out.append(str(o["data"].get("text/plain", "")))
    return "".join(out)


@pytest.fixture
def cli(portside_root: Path, tmp_path: Path) -> CLI:
    return CLI(portside_root, tmp_path)


@pytest.fixture
def busybox_image(cli: CLI) -> str:
    cli("image", "bootstrap", "busybox", "-t", "busybox:latest", "-q")
    return "busybox:latest"


@pytest.fixture
def ctr(cli: CLI, busybox_image: str) -> Iterator[CLI]:
    """The CLI with busybox:latest in its store; after the test, every container of the store
    is force-removed."""
    yield cli
    ids = cli("ps", "-aq", "--no-trunc", check=False).out.split()
    if ids:
        cli("rm", "-f", *ids, check=False)


@pytest.fixture
def http_dir(tmp_path):
    """A folder served over HTTP on 127.0.0.1 (ADD URL tests): (folder, base URL)."""
    import http.server
    import threading

    served = tmp_path / "served"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(served), **kw)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _debian_key(suite: str, include: list[str]) -> str:
    from portside.engine.image.bootstrap import host_apt_mirror

    text = f"{suite}|{','.join(sorted(include))}|{host_apt_mirror()}|v1"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@pytest.fixture(scope="session")
def debian_tar(tmp_path_factory) -> Path:
    """A saved image archive of Debian bookworm with python3, cached outside the repository."""
    key = _debian_key("bookworm", ["python3"])
    cached = CACHE / f"debian-bookworm-python3-{key}.tar"
    if cached.is_file():
        return cached
    CACHE.mkdir(parents=True, exist_ok=True)
    root = tmp_path_factory.mktemp("debian-root")
    env = dict(os.environ, PORTSIDE_ROOT=str(root))
    subprocess.run([PORTSIDE, "image", "bootstrap", "debian:bookworm", "--include", "python3",
                    "-t", "portside/debian:bookworm", "-q"], check=True, env=env,
                   stdin=subprocess.DEVNULL, capture_output=True, timeout=900)
    part = cached.with_suffix(".part")
    subprocess.run([PORTSIDE, "save", "-o", str(part), "portside/debian:bookworm"], check=True,
                   env=env, stdin=subprocess.DEVNULL, timeout=300)
    os.replace(part, cached)
    shutil.rmtree(root, ignore_errors=True)
    return cached


# ------------------------------------------------------------------------- host state checks
def _mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}


def _netns() -> set[str]:
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


def _cgroups() -> set[str]:
    found = set()
    base = Path("/sys/fs/cgroup")
    for ctrl in ("memory", "pids", "cpu", "freezer", "unified", "devices", "systemd", "."):
        d = base / ctrl / "portside"
        if d.is_dir():
            found |= {f"{ctrl}/{p.name}" for p in d.iterdir() if p.is_dir()}
    return found


def _links() -> set[str]:
    try:
        names = os.listdir("/sys/class/net")
    except FileNotFoundError:
        return set()
    return {n for n in names if n != "portside0"}


def _processes() -> set[str]:
    """Monitors and container processes started by portside (their command lines say so)."""
    found = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"portside-monitor" in cmd or b"portside.engine.runtime.monitor" in cmd:
            found.add(pid)
    return found


def host_snapshot() -> dict[str, set[str]]:
    return {"mounts": _mounts(), "netns": _netns(), "cgroups": _cgroups(), "links": _links(),
            "processes": _processes()}


def _shared_network() -> dict[str, object]:
    """What the engine's default bridge network adds to the host once and keeps for later
    containers (as Docker keeps docker0): the ``portside0`` bridge, the ``inet portside``
    nftables table, and IPv4 forwarding switched on."""
    table = subprocess.run(["nft", "list", "table", "inet", "portside"], capture_output=True)
    return {"bridge": os.path.exists("/sys/class/net/portside0"),
            "table": table.returncode == 0,
            "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()}


@pytest.fixture(scope="session", autouse=True)
def shared_network_removed():
    """The suite leaves the host as it found it: the shared bridge network the tests' containers
    made is taken down once the last test is over (each test's own links, netns and rules are
    checked by host_unchanged)."""
    if not IS_ROOT or not shutil.which("nft"):
        yield
        return
    before = _shared_network()
    yield
    if not before["table"]:
        subprocess.run(["nft", "delete", "table", "inet", "portside"], capture_output=True)
    if not before["bridge"]:
        subprocess.run(["ip", "link", "del", "portside0"], capture_output=True)
    Path("/proc/sys/net/ipv4/ip_forward").write_text(str(before["ip_forward"]))
    after = _shared_network()
    assert after == before, f"the shared network was not taken down: {before} -> {after}"


@pytest.fixture(autouse=True)
def host_unchanged(request):
    """Every integration/interop test leaves mounts, netns, links, cgroups and processes as
    they were."""
    if not IS_ROOT or not any(request.node.get_closest_marker(m) for m in ROOT_TIERS):
        yield
        return
    before = host_snapshot()
    yield
    after = host_snapshot()
    leaked = {k: sorted(after[k] - before[k]) for k in before if after[k] - before[k]}
    assert not leaked, f"test left resources behind: {leaked}"


@pytest.fixture(scope="session")
def ipython():
    """IPython's test shell with ``%load_ext portside`` (a singleton: one per test session)."""
    pytest.importorskip("IPython")
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython() or get_ipython()
    shell.run_line_magic("load_ext", "portside")
    return shell
