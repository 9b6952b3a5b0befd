"""Container cells for real: ``%%container exec`` into running containers through the engine.

Debian (with python3) comes from the cached ``debian_tar`` archive; busybox (no python3) is
bootstrapped through ``%container image bootstrap busybox``. Every container made here is removed.
"""

from __future__ import annotations

import statistics
import threading
import time

import pytest

pytest.importorskip("IPython")

from IPython.core.error import UsageError  # noqa: E402

from portside.kernel.magics import ContainerError  # noqa: E402
from IPython.utils.capture import capture_output  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture
def ip(ipython):
    return ipython


@pytest.fixture
def magics(ip, portside_root, monkeypatch, engine):
    monkeypatch.setenv("PORTSIDE_ROOT", str(portside_root))
    m = ip.magics_manager.registry["ContainerMagics"]
    made: list = []
    m.made = made
    yield m
    if m.attached:
        m._detach([])
    for sess in m.sessions.values():
        sess.close()
    from portside.engine.errors import NotFound

    for ctr in made:
        try:
            ctr.remove(force=True)
        except NotFound:
            pass
    m.close()


def _start(magics, image: str, name: str):
    ctr = magics.engine.containers.run(image, ["sleep", "600"], detach=True, name=name)
    magics.made.append(ctr)
    return ctr


@pytest.fixture
def debian(magics, debian_tar):
    with open(debian_tar, "rb") as f:
        magics.engine.images.load(f)
    return _start(magics, "portside/debian:bookworm", "nb-debian")


def test_bootstrap_and_list_images_through_the_magic(ip, magics):
    with capture_output():
        ip.run_line_magic("container", "image bootstrap busybox -t busybox:latest")
    ids = ip.run_line_magic("container", "images -q")
    assert isinstance(ids, list) and len(ids) == 1 and len(ids[0]) == 12
    table = ip.run_line_magic("container", "images")
    assert "busybox" in table._repr_html_()


def test_exec_cells_keep_state_in_debian(ip, magics, debian):
    with capture_output() as cap:
        ip.run_cell("%%container exec nb-debian\nimport platform, os\n"
                    "history = [1]\nprint(open('/etc/debian_version').read().strip())")
    assert cap.stdout.strip()[:2] == "12"
    result = ip.run_cell("%%container exec nb-debian -w /tmp\nhistory.append(2)\n"
                         "history, os.getcwd()")
    assert repr(result.result) == "([1, 2], '/tmp')"
    # the round trip of a trivial cell, into a real container
    sess = magics.sessions[("nb-debian", None)]
    samples = []
    for _ in range(200):
        t0 = time.perf_counter()
        sess.execute("x = 1")
        samples.append(time.perf_counter() - t0)
    p50 = statistics.median(samples) * 1000
    print(f"agent in a container: p50 {p50:.3f} ms")
    assert p50 <= 2.0


def test_shell_cell_streams(ip, magics, debian):
    with capture_output() as cap:
        ip.run_cell("%%container exec nb-debian --shell\necho hello from $(cat /etc/hostname)\n"
                    "echo oops >&2; exit 3")
    assert "hello from" in cap.stdout
    assert "oops" in cap.stderr and "exit status 3" in cap.stderr


def test_interrupt_in_a_container_keeps_the_namespace(ip, magics, debian):
    ip.run_cell("%%container exec nb-debian\nsurvivor = 'still here'")
    sess = magics.sessions[("nb-debian", None)]
    threading.Timer(0.5, sess.interrupt).start()
    with capture_output():
        result = ip.run_cell("%%container exec nb-debian\nimport time\ntime.sleep(30)")
    assert "KeyboardInterrupt" in str(result.error_in_exec)
    assert repr(ip.run_cell("%%container exec nb-debian\nsurvivor").result) == "'still here'"


def test_container_dying_mid_cell_is_one_line(ip, magics, debian):
    ip.run_cell("%%container exec nb-debian\nv = 1")
    threading.Timer(0.5, lambda: debian.kill()).start()
    with capture_output():
        result = ip.run_cell("%%container exec nb-debian\nimport time\ntime.sleep(30)")
    err = result.error_in_exec
    assert isinstance(err, ContainerError) and "\n" not in str(err)
    assert "nb-debian" in str(err)
    # the kernel stays usable: the next cell reports the stopped container in one line
    with capture_output():
        again = ip.run_cell("%%container exec nb-debian\nv")
    assert isinstance(again.error_in_exec, ContainerError)
    assert "nb-debian" in str(again.error_in_exec)
    assert "not running" in str(again.error_in_exec) or "stopped" in str(again.error_in_exec)


def test_image_without_python_suggests_shell(ip, magics):
    with capture_output():
        ip.run_line_magic("container", "image bootstrap busybox -t busybox:latest")
    _start(magics, "busybox:latest", "nb-busybox")
    with pytest.raises(ContainerError, match="no python3 in nb-busybox.*--shell"):
        ip.run_cell_magic("container", "exec nb-busybox", "1 + 1")
    with capture_output() as cap:
        ip.run_cell("%%container exec nb-busybox --shell\necho from busybox")
    assert "from busybox" in cap.stdout


def test_build_cell_speaks_portside_builds_command_line(ip, magics, tmp_path, monkeypatch):
    """``%%container build`` is ``portside build`` with the cell as its Dockerfile: the same
    parser, so ``--build-arg FOO`` with FOO unset is dropped (the ARG keeps its default), as
    Docker does, and a flag ``build`` does not know is refused alike."""
    with capture_output():
        ip.run_line_magic("container", "image bootstrap busybox -t busybox:latest")
    monkeypatch.delenv("FOO", raising=False)
    monkeypatch.setenv("BAR", "from-env")
    monkeypatch.chdir(tmp_path)  # the notebook's folder: the context and its portside.lock
    (tmp_path / "data.txt").write_text("context file\n")
    dockerfile = ("FROM busybox\nARG FOO=default\nARG BAR\nCOPY data.txt /data.txt\n"
                  'RUN echo "$FOO $BAR" > /out\n')
    with capture_output() as cap:
        ip.run_cell_magic("container", "build -q -t argtest:1 --build-arg FOO --build-arg BAR",
                          dockerfile)
    image_id = cap.stdout.strip()
    assert image_id.startswith("sha256:") and magics.engine.images.get("argtest:1").id == image_id
    out = magics.engine.containers.run("argtest:1", ["cat", "/out", "/data.txt"], remove=True)
    assert out == b"default from-env\ncontext file\n"
    with pytest.raises(UsageError, match="unrecognized arguments: --bogus"):
        ip.run_cell_magic("container", "build --bogus", dockerfile)
