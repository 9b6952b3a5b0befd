"""What a notebook shows for everyday commands: no noise, builds that say what the lock does
and where they failed, stops that say they are waiting. Through IPython's own shell, on real
containers; every container and image made here is removed.
"""

from __future__ import annotations

import pytest

pytest.importorskip("IPython")

from IPython.utils.capture import capture_output  # noqa: E402

from portside.kernel.magics import ContainerError, Printed  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture
def ip(ipython):
    return ipython


@pytest.fixture
def magics(ip, portside_root, monkeypatch, tmp_path):
    monkeypatch.setenv("PORTSIDE_ROOT", str(portside_root))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    monkeypatch.chdir(tmp_path)               # the notebook's folder (its portside.lock)
    m = ip.magics_manager.registry["ContainerMagics"]
    yield m
    for ctr in m.engine.containers.list(all=True):
        ctr.remove(force=True)
    m.close()


@pytest.fixture
def busybox(ip, magics):
    with capture_output() as cap:
        result = ip.run_cell("%container image bootstrap busybox -t busybox:latest")
    # the command printed what it made; no <Image: ...> repr after it
    assert "Created busybox:latest" in cap.stdout and "<Image" not in cap.stdout
    assert result.result is None and cap.outputs == []
    return "busybox:latest"


@pytest.fixture
def widgets(monkeypatch):
    """Every BuildProgress widget the magics make, to read what it shows."""
    from portside.kernel import widgets as mod

    made: list = []

    class Recorded(mod.BuildProgress):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            made.append(self)

    monkeypatch.setattr(mod, "BuildProgress", Recorded)
    return made


def test_run_detached_shows_its_id_once_and_stop_says_it_waits(ip, magics, busybox):
    with capture_output() as cap:
        result = ip.run_cell("%container run -d --init --name quiet busybox sleep infinity")
    cid = magics.engine.containers.get("quiet").id
    assert cap.stdout.count(cid) == 1
    # the value is the id (cid = %container run -d ...), and IPython shows nothing more
    assert isinstance(result.result, Printed) and result.result == cid
    assert ip.display_formatter.format(result.result) == ({}, {})
    with capture_output() as cap:
        ip.run_cell("%container stop -t 5 quiet")
    first, *rest = cap.stdout.splitlines()
    assert first.startswith("Stopping quiet: ") and "SIGKILL after 5 s" in first
    assert rest == ["quiet"]


def test_build_says_what_the_lock_does_and_its_result_once(ip, magics, busybox, widgets,
                                                          tmp_path):
    cell = "%%container build -t noisy:1\nFROM busybox\nRUN echo hi > /hi\n"
    with capture_output() as cap:
        ip.run_cell(cell)
    image_id = magics.engine.images.get("noisy:1").id
    assert (tmp_path / "portside.lock").is_file()
    assert "Recorded SOURCE_DATE_EPOCH=" in cap.stdout and "portside.lock" in cap.stdout
    shown = cap.stdout + widgets[-1].current.value
    assert shown.count(image_id) == 1 and shown.lower().count("built") == 1
    with capture_output() as cap:
        ip.run_cell(cell)
    assert "Creation time pinned to " in cap.stdout and "Recorded" not in cap.stdout
    # and the listing says the date is the lock's, not the build's
    listing = ip.run_line_magic("container", "images noisy")
    assert "(pinned)" in repr(listing)
    with capture_output():
        ip.run_line_magic("container", "rmi noisy:1")


def test_build_errors_name_the_step_and_the_cells_line_once(ip, magics, busybox, widgets):
    with capture_output() as cap:
        result = ip.run_cell("%%container build -t broken:1\nFROM busybox\nRUN echo a\n"
                             "RUN false\n")
    err = result.error_in_exec
    assert isinstance(err, ContainerError)
    assert str(err).startswith("step [3/3] RUN false, cell line 4 failed: ")
    assert "exit code: 1" in str(err)
    # the widget says where, the error line says what: the message is shown once
    widget = widgets[-1]
    assert widget.current.value == "failed at step [3/3] RUN false"
    assert widget.accordion.selected_index == 0          # its log is opened
    assert cap.stdout.count("exit code: 1") == 1
    with capture_output() as cap:
        result = ip.run_cell("%%container build -t broken:1\nFROM busybox\n\nCOPY onlyone\n")
    assert str(result.error_in_exec).startswith("cell line 4: COPY requires at least two")
    assert widgets[-1].accordion.selected_index is None   # no empty log opened
