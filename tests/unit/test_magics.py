"""The ``%container`` magics through IPython's own shell (``run_line_magic``, ``run_cell``).

Container cells use an agent started by a host exec factory (the kernel seam); the command table,
the engine (on a fresh ``PORTSIDE_ROOT``), IPython's transformers, display machinery and completer
are all real.
"""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("IPython")

from IPython.core.error import UsageError  # noqa: E402
from IPython.utils.capture import capture_output  # noqa: E402

from portside.kernel.client import AgentSession, host_exec_factory  # noqa: E402
from portside.kernel.display import Listing, parse_text_table  # noqa: E402
from portside.kernel.magics import ContainerError  # noqa: E402

pytestmark = pytest.mark.unit


@pytest.fixture
def ip(ipython):
    return ipython


@pytest.fixture
def magics(ip, portside_root, monkeypatch):
    monkeypatch.setenv("PORTSIDE_ROOT", str(portside_root))
    m = ip.magics_manager.registry["ContainerMagics"]
    yield m
    if m.attached:
        m._detach([])
    m.close()


@pytest.fixture
def fake_ctr(magics):
    """A container named 'box' whose agent runs on the host (the exec factory seam)."""
    magics.sessions[("box", None)] = AgentSession(host_exec_factory(sys.executable), label="box")
    return "box"


def test_extension_registers_the_magic(ip):
    assert "container" in ip.magics_manager.magics["line"]
    assert "container" in ip.magics_manager.magics["cell"]


def test_images_quiet_is_a_list(ip, magics):
    ids = ip.run_line_magic("container", "images -q")
    assert isinstance(ids, list) and ids == []
    table = ip.run_line_magic("container", "images")
    assert isinstance(table, Listing)
    assert "REPOSITORY" in repr(table)
    html = table._repr_html_()
    assert "<th style='text-align:left'>IMAGE ID</th>" in html


@pytest.mark.parametrize("line, message", [
    ("", "a command is required"),
    ("images --bogus", "unrecognized arguments: --bogus"),
    ("nosuchcommand", "invalid choice"),
    ("ps 'unterminated", "No closing quotation"),
    ("send box", "usage"),
    ("exec", None),
])
def test_bad_command_line_is_one_line_usage_error(ip, magics, line, message):
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("container", line)
    assert "\n" not in str(info.value)
    if message:
        assert message in str(info.value)


def test_engine_error_is_one_line_naming_the_thing(ip, magics):
    with pytest.raises(ContainerError, match="^No such image: nothere$"):
        ip.run_line_magic("container", "tag nothere other:1")


def test_engine_error_is_its_own_red_line_and_bad_arguments_a_usage_error(ip, magics):
    """What the notebook shows: an engine error as one red ``Error: ...`` line (no traceback, no
    ``UsageError``, which IPython keeps for a bad command line), a bad flag as ``UsageError``."""
    with capture_output() as cap:
        result = ip.run_cell("%container tag nothere:1 other:1")
    assert type(result.error_in_exec) is ContainerError
    assert cap.stdout == "\x1b[0;31mError: No such image: nothere:1\x1b[0m\n"
    assert "UsageError" not in cap.stdout + cap.stderr and "Traceback" not in cap.stdout
    with capture_output() as cap:
        result = ip.run_cell("%container tag --bogus nothere:1 other:1")
    assert type(result.error_in_exec) is UsageError
    assert cap.stderr.startswith("UsageError: ") and "--bogus" in cap.stderr
    assert cap.stdout == ""


def test_go_templates_reach_the_command_unexpanded(ip, magics):
    """IPython expands ``{expr}`` in magic lines; ``%container`` does not, so a Go template
    means what it means in a terminal (``$name`` still inserts a notebook variable)."""
    ip.user_ns["Name"] = "host-variable"
    with capture_output():
        ip.run_line_magic("container", "volume create tmpl1")
    for run in (lambda line: ip.run_line_magic("container", line),
                lambda line: ip.run_cell("%container " + line).result):
        listing = run('volume ls --format "{{.Name}}: {{.Driver}}"')
        assert repr(listing) == "tmpl1: local"
        listing = run("volume ls --format '{{json .Name}} {Name} $Name ${Name} $$Name $Nope'")
        # $name still inserts a notebook variable (the notebooks use it); {...} never does
        assert repr(listing) == '"tmpl1" {Name} host-variable host-variable $Name $Nope'
    with capture_output():
        ip.run_line_magic("container", "volume rm tmpl1")


def test_text_table_parser():
    headers, rows = parse_text_table("REPOSITORY   TAG     IMAGE ID       SIZE\n"
                                     "busybox      latest  0123456789ab   2.1MB\n"
                                     "<none>       <none>  ba9876543210   10kB\n")
    assert headers == ["REPOSITORY", "TAG", "IMAGE ID", "SIZE"]
    assert rows[1] == ["<none>", "<none>", "ba9876543210", "10kB"]
    assert parse_text_table("just some words\n") is None


def test_exec_cell_keeps_state_and_shows_results(ip, magics, fake_ctr):
    with capture_output() as cap:
        ip.run_cell("%%container exec box\nimport sys\ncount = 10\nprint('in container', "
                    "sys.executable is not None)")
    assert "in container True" in cap.stdout
    with capture_output() as cap:
        result = ip.run_cell("%%container exec box -e GREETING=hi\nimport os\n"
                             "count + 1, os.environ['GREETING']")
    assert result.success
    assert repr(result.result) == "(11, 'hi')"


def test_exec_cell_rich_display(ip, magics, fake_ctr):
    with capture_output() as cap:
        ip.run_cell("%%container exec box\nclass H:\n    def _repr_html_(self):\n"
                    "        return '<i>rich</i>'\ndisplay(H())")
    assert any(o.data.get("text/html") == "<i>rich</i>" for o in cap.outputs)


def test_exec_cell_error_shows_container_traceback(ip, magics, fake_ctr):
    with capture_output() as cap:
        result = ip.run_cell("%%container exec box\ndef f():\n    raise ValueError('bad value')\nf()")
    assert not result.success
    assert type(result.error_in_exec).__name__ == "RemoteError"
    text = cap.stdout + cap.stderr
    assert "ValueError: bad value" in text and "<cell-" in text
    assert "magics.py" not in text and "client.py" not in text


def test_container_tracebacks_name_the_editors_lines(ip, magics, fake_ctr):
    """Under ``%%container exec`` the cell's first code line is the editor's line 2; a
    traceback says 2, not 1. A SyntaxError shows the user's line, no frame of ``ast.py``."""
    with capture_output() as cap:
        ip.run_cell("%%container exec box\nx = 1\nraise ValueError('here')")
    text = cap.stdout + cap.stderr
    assert 'line 3' in text and "raise ValueError('here')" in text, text
    with capture_output() as cap:
        result = ip.run_cell("%%container exec box\nok = 1\ndef broken(:\n    pass")
    text = cap.stdout + cap.stderr
    assert result.error_in_exec.ename == "SyntaxError"
    assert "line 3" in text and "def broken(:" in text, text
    assert "ast.py" not in text and "Traceback" not in text, text


def test_send_and_recv_between_host_and_container(ip, magics, fake_ctr):
    ip.user_ns["weights"] = [0.5, 1.5]
    ip.run_line_magic("container", "send box weights")
    ip.run_cell("%%container exec box\ntotal = sum(weights) * 2")
    ip.user_ns.pop("total", None)
    ip.run_line_magic("container", "recv box total")
    assert ip.user_ns["total"] == 4.0
    with pytest.raises(ContainerError, match="not defined"):
        ip.run_line_magic("container", "recv box undefined_thing")


def complete(ip, code: str) -> list[str]:
    from IPython.core.completer import provisionalcompleter

    with provisionalcompleter():
        return [c.text for c in ip.Completer.completions(code, len(code))]


def test_attach_routes_cells_until_detach(ip, magics, fake_ctr):
    ip.user_ns.pop("where", None)
    with capture_output() as cap:
        ip.run_line_magic("container", "attach box")
    assert "box" in cap.stdout
    ip.run_cell("where = 'container'")
    assert "where" not in ip.user_ns, "the cell ran on the host"
    # %container lines still run on the host, in the middle of an attached cell too
    ip.run_cell("where = where + '!'\n%container recv box where\n")
    assert ip.user_ns["where"] == "container!"
    result = ip.run_cell("where * 2")
    assert repr(result.result) == "'container!container!'"
    # completion offers the container's names, not the host's
    ip.user_ns["whereabouts_on_host"] = 1
    got = complete(ip, "whe")
    assert "where" in got and "whereabouts_on_host" not in got
    assert "where.upper" in complete(ip, "where.upp")  # attributes of the container value
    ip.run_line_magic("container", "detach")
    ip.run_cell("where = 'host'")
    assert ip.user_ns["where"] == "host"


def test_agent_death_is_one_line_and_next_cell_restarts(ip, magics, fake_ctr):
    ip.run_cell("%%container exec box\nstate = 1")
    with capture_output():
        result = ip.run_cell("%%container exec box\nimport os\nos._exit(9)")
    assert isinstance(result.error_in_exec, ContainerError)
    assert "empty namespace" in str(result.error_in_exec)
    with capture_output() as cap:
        result = ip.run_cell("%%container exec box\n'alive'")
    assert repr(result.result) == "'alive'"
    assert "restarted" in cap.stderr


def test_build_widget_draws_the_builders_own_events():
    pytest.importorskip("ipywidgets")
    from portside.engine.builder.progress import (BuildDone, BuildStep, StepCached, StepDone,
                                                  StepLog, Warning)
    from portside.kernel.widgets import BuildProgress, summary_line

    widget = BuildProgress()
    # two stages, as the builder numbers them: step ids across the build, n/m within a stage
    events = [BuildStep(1, 1, 2, "base", "FROM busybox"), StepDone(1, 0.0),
              BuildStep(2, 2, 2, "base", "RUN echo hi"), StepLog(2, "hi"), StepDone(2, 0.4),
              BuildStep(3, 1, 2, "", "FROM base"), StepDone(3, 0.0),
              BuildStep(4, 2, 2, "", 'COPY a /a'), StepCached(4), StepDone(4, 0.0),
              Warning("build argument X is not used"),
              BuildDone("sha256:abc", ("demo:1",), 1.2)]
    widget(events[0])
    assert widget.steps.max == 2 and widget.steps.description == "Step 1/2"
    assert widget.current.value == "[base 1/2] FROM busybox"
    for event in events[1:-1]:
        widget(event)
        if event == StepDone(2, 0.4):
            assert widget.steps.value == 2
    assert widget.steps.max == 4 and widget.steps.value == 4
    assert widget.cache_hits == 1 and widget.cache.value == "cache hits: 1"
    assert widget.lines == ["#1 [base 1/2] FROM busybox", "#1 DONE 0.0s",
                            "#2 [base 2/2] RUN echo hi", "#2 hi", "#2 DONE 0.4s",
                            "#3 [1/2] FROM base", "#3 DONE 0.0s", "#4 [2/2] COPY a /a",
                            "#4 CACHED", "#4 DONE 0.0s",
                            "WARNING: build argument X is not used"]
    widget(events[-1])
    assert widget.steps.bar_style == "success"
    assert widget.current.value == "done in 1.2s, 1 of 4 steps cached"
    assert summary_line(widget.result) == "Successfully built sha256:abc; tagged demo:1"


def test_pull_widget_draws_a_bar_per_layer():
    pytest.importorskip("ipywidgets")
    progress = pytest.importorskip("portside.engine.registry.progress")
    from portside.kernel.widgets import PullProgress

    widget = PullProgress()
    widget(progress.Message("latest: Pulling from library/busybox"))
    widget(progress.LayerEvent("aaaaaaaaaaaa", progress.DOWNLOADING, 50, 100))
    widget(progress.LayerEvent("bbbbbbbbbbbb", progress.ALREADY_EXISTS))
    widget(progress.LayerEvent("aaaaaaaaaaaa", progress.PULL_COMPLETE, 0, 100))
    assert set(widget.bars) == {"aaaaaaaaaaaa", "bbbbbbbbbbbb"}
    assert widget.bars["aaaaaaaaaaaa"].value == 100
    assert widget.header.value == "latest: Pulling from library/busybox"


def test_kernelspec_content():
    from portside.kernel.kernelspec import spec

    data = spec("/usr/bin/python3")
    assert data["display_name"] == "Python 3 (portside)"
    assert data["argv"][0] == "/usr/bin/python3"
    assert any(a.startswith("--IPKernelApp.exec_lines=") for a in data["argv"])


def test_kernel_has_the_magics_and_load_ext_stays_silent(tmp_path, monkeypatch):
    """The "Python 3 (portside)" kernel starts with ``%container``; a notebook written for any
    kernel begins with ``%load_ext portside``, which must not answer "already loaded"."""
    from jupyter_client.manager import start_new_kernel

    from portside.kernel.kernelspec import install

    install(prefix=str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter" / "share" / "jupyter"))
    monkeypatch.setenv("PORTSIDE_ROOT", str(tmp_path / "root"))
    km, kc = start_new_kernel(kernel_name="portside", startup_timeout=60)
    try:
        outputs: list = []
        reply = kc.execute_interactive("%load_ext portside",
                                       timeout=60, output_hook=outputs.append)
        assert reply["content"]["status"] == "ok"
        shown = [m["content"] for m in outputs
                 if m["msg_type"] in ("stream", "error", "display_data", "execute_result")]
        assert shown == [], shown
        outputs.clear()
        reply = kc.execute_interactive("print('container' in get_ipython().magics_manager"
                                       ".magics['cell'])", timeout=60,
                                       output_hook=outputs.append)
        printed = [m["content"]["text"] for m in outputs if m["msg_type"] == "stream"]
        assert printed == ["True\n"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_printed_results_are_not_shown_again(ip, magics):
    """A command that printed its result (a volume's name, an id) returns nothing for IPython to
    show a second time as ``Out`` (no ``<Volume: v1>``), and a printed id is still a value."""
    from portside.kernel.magics import Printed

    with capture_output() as cap:
        result = ip.run_cell("%container volume create quiet1")
    assert cap.stdout == "quiet1\n" and cap.outputs == []
    assert result.result is None
    value = Printed("0123abcd")
    assert value == "0123abcd" and isinstance(value, str)
    # what IPython's display machinery makes of it: nothing to show
    assert ip.display_formatter.format(value) == ({}, {})
    with capture_output():
        ip.run_line_magic("container", "volume rm quiet1")
