"""Contexts: storage in Docker's layout, selection order, the ``context`` commands' output."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from portside.engine import cli, contexts
from portside.engine.errors import AlreadyExists, Conflict, InvalidArgument, NotFound

pytestmark = pytest.mark.unit


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("PORTSIDE_CONTEXT", raising=False)
    monkeypatch.setenv("PORTSIDE_ROOT", str(tmp_path / "root"))
    return tmp_path / "config"


def run(*argv: str) -> tuple[int, str, str]:
    """One command line through the CLI's parser and handlers, output captured."""
    out, err = io.StringIO(), io.StringIO()
    args = cli.parse(list(argv))
    ctx = cli.Context(engine=None, out=out, err=err)
    try:
        result = args._handler(ctx, args)
    except Exception as exc:  # noqa: BLE001 - what main() would print
        from portside.engine.errors import EngineError

        assert isinstance(exc, EngineError), exc
        return exc.exit_code, out.getvalue(), str(exc)
    return (result if isinstance(result, int) else 0), out.getvalue(), err.getvalue()


def test_stored_where_docker_stores_them(home):
    store = contexts.ContextStore()
    store.create("gpu", docker="host=ssh://me@gpu-box", description="the GPU box")
    meta = home / "portside" / "contexts" / "meta"
    (folder,) = meta.iterdir()
    assert len(folder.name) == 64  # sha256 of the name, as Docker names its folders
    doc = json.loads((folder / "meta.json").read_text())
    assert doc == {"Name": "gpu", "Metadata": {"Description": "the GPU box"},
                   "Endpoints": {"docker": {"Host": "ssh://me@gpu-box", "SkipTLSVerify": False}}}
    assert oct((home / "portside" / "contexts").stat().st_mode & 0o777) == "0o700"


def test_selection_order_flag_then_variable_then_current(home, monkeypatch):
    store = contexts.ContextStore()
    for name in ("ca", "cb", "cc"):
        store.create(name, docker="host=unix:///run/x.sock")
    assert contexts.selected() == "default"
    store.use("ca")
    assert contexts.selected() == "ca"
    monkeypatch.setenv("PORTSIDE_CONTEXT", "cb")
    assert contexts.selected() == "cb"
    assert contexts.selected("cc") == "cc"
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/run/docker.sock")
    monkeypatch.setenv("DOCKER_CONTEXT", "cc")
    monkeypatch.delenv("PORTSIDE_CONTEXT")
    assert contexts.selected() == "ca"  # Docker's variables are never read


def test_default_is_the_embedded_engine_and_cannot_be_changed(home):
    from portside.engine.api import Engine

    store = contexts.ContextStore()
    engine = contexts.engine_for("default")
    assert isinstance(engine, Engine)
    assert str(engine.root) == os.environ["PORTSIDE_ROOT"]
    with pytest.raises(InvalidArgument, match="reserved"):
        store.create("default", docker="host=unix:///x.sock")
    with pytest.raises(InvalidArgument, match="cannot be removed"):
        store.remove("default")


@pytest.mark.parametrize("text, message", [
    ("", "host=URL is required"),
    ("host=", "host=URL is required"),
    ("host=ftp://x", "unsupported host"),
    ("host=unix://relative.sock", "absolute socket path"),
    ("host=tcp://h:2376,color=blue", "unable to parse docker endpoint option"),
    ("host=unix:///x.sock,ca=/ca.pem", "tcp:// hosts only"),
    ("host=tcp://h:2376,cert=/c.pem", "cert and key go together"),
    ("host=tcp://h:2376,skip-tls-verify=maybe", "skip-tls-verify must be"),
])
def test_bad_docker_endpoints_are_one_line(home, text, message):
    with pytest.raises(InvalidArgument, match=message):
        contexts.ContextStore().create("x1", docker=text)
    assert not (home / "portside" / "contexts" / "meta").exists()


@pytest.mark.parametrize("name", ["-x", "a", "a/b", "a b", "../up", "é"])
def test_names_follow_dockers_rule(home, name):
    with pytest.raises(InvalidArgument, match="is invalid"):
        contexts.ContextStore().create(name, docker="host=unix:///x.sock")


def test_tls_material_is_copied_private(home, tmp_path):
    for kind in ("ca", "cert", "key"):
        (tmp_path / f"{kind}.pem").write_text(f"-----{kind}-----\n")
    store = contexts.ContextStore()
    doc = store.create("remote", docker=f"host=tcp://box:2376,ca={tmp_path}/ca.pem,"
                                        f"cert={tmp_path}/cert.pem,key={tmp_path}/key.pem")
    assert doc["TLSMaterial"] == {"docker": ["ca.pem", "cert.pem", "key.pem"]}
    key = os.path.join(doc["Storage"]["TLSPath"], "docker", "key.pem")
    assert Path(key).read_text() == "-----key-----\n"
    assert os.stat(key).st_mode & 0o777 == 0o600
    from portside.engine.docker import DockerEngine

    engine = contexts.engine_for("remote")
    assert isinstance(engine, DockerEngine)
    assert engine.tls is not None and engine.tls["verify"] is True
    assert engine.tls["key"] == key


def test_engine_for_is_lazy_and_names_the_context(home):
    """Making the engine object connects nowhere: the socket does not even exist."""
    contexts.ContextStore().create("later", docker="host=unix:///nonexistent/docker.sock")
    engine = contexts.engine_for("later")
    assert engine.context == "later" and engine.host == "unix:///nonexistent/docker.sock"
    assert "client" not in engine.__dict__
    with pytest.raises(InvalidArgument, match='--root applies to the "default" context only'):
        contexts.engine_for("later", root="/tmp/x")
    with pytest.raises(NotFound, match='context "nope" does not exist'):
        contexts.engine_for("nope")


def test_remove_the_current_context_needs_force(home):
    store = contexts.ContextStore()
    store.create("ca", docker="host=unix:///x.sock")
    store.use("ca")
    with pytest.raises(Conflict, match='context "ca" is in use, set -f flag to force remove'):
        store.remove("ca")
    store.remove("ca", force=True)
    assert store.current() == "default"
    with pytest.raises(NotFound):
        store.remove("ca")


def test_commands_print_what_docker_prints(home):
    code, out, err = run("context", "create", "box", "--docker", "host=unix:///run/box.sock",
                         "--description", "a box")
    assert (code, out, err) == (0, "box\n", 'Successfully created context "box"\n')
    code, out, err = run("context", "create", "box", "--docker", "host=unix:///run/box.sock")
    assert code == 125 and err == 'context "box" already exists'
    code, out, err = run("context", "use", "box")
    assert (code, out, err) == (0, "box\n", 'Current context is now "box"\n')
    code, out, _ = run("context", "ls")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "DESCRIPTION", "DOCKER", "ENDPOINT", "ERROR"]
    assert lines[1].startswith("default ") and "portside's embedded engine" in lines[1]
    assert lines[2].split() == ["box", "*", "a", "box", "unix:///run/box.sock"]
    code, out, _ = run("context", "ls", "--format", "json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows[1] == {"Name": "box", "Current": True, "Description": "a box",
                       "DockerEndpoint": "unix:///run/box.sock", "SlurmEndpoint": "",
                       "Error": ""}
    code, out, _ = run("context", "ls", "-q")
    assert out == "default\nbox\n"
    code, out, _ = run("context", "show")
    assert out == "box\n"
    code, out, _ = run("-c", "default", "context", "show")
    assert out == "default\n"
    code, out, _ = run("context", "inspect")
    (doc,) = json.loads(out)
    assert doc["Name"] == "box" and doc["Endpoints"]["docker"]["Host"] == "unix:///run/box.sock"
    assert set(doc) == {"Name", "Metadata", "Endpoints", "TLSMaterial", "Storage"}
    code, out, _ = run("context", "inspect", "default", "--format", "{{.Endpoints.portside.Root}}")
    assert out == os.environ["PORTSIDE_ROOT"] + "\n"
    code, out, err = run("context", "inspect", "nope")
    assert (code, out) == (1, "")
    code, out, err = run("context", "rm", "box")
    assert code == 1  # in use: one line on stderr, nothing removed
    assert contexts.ContextStore().exists("box")
    code, out, err = run("context", "rm", "-f", "box")
    assert (code, out) == (0, "box\n")
    assert contexts.ContextStore().current() == "default"


def test_create_from_copies_the_endpoint(home):
    store = contexts.ContextStore()
    store.create("ca", docker="host=tcp://h:2375", description="first")
    doc = store.create("cb", from_="ca")
    assert doc["Endpoints"] == {"docker": {"Host": "tcp://h:2375", "SkipTLSVerify": False}}
    assert doc["Metadata"] == {"Description": "first"}
    with pytest.raises(AlreadyExists):
        store.create("cb", from_="ca")
    updated = store.update("cb", description="second", docker="host=tcp://h:2376")
    assert updated["Metadata"] == {"Description": "second"}
    assert updated["Endpoints"]["docker"]["Host"] == "tcp://h:2376"


def test_the_default_context_costs_no_import(home):
    """Selecting ``default`` imports neither the Docker SDK nor the Docker engine."""
    import subprocess
    import sys

    code = ("import sys; from portside.engine import contexts; "
            "e = contexts.engine_for(contexts.selected()); "
            "print(sorted(m for m in sys.modules if m.startswith(('docker', 'requests', "
            "'portside.engine.docker'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=dict(os.environ)).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------------- Slurm contexts
@pytest.fixture
def data_home(home, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path / "data"


def test_a_slurm_context_is_stored_in_its_normal_form(home, data_home):
    code, out, err = run("context", "create", "hpc", "--slurm",
                         " partition = gpu ,time=4:00:00,root=/scratch/ps/%n")
    assert (code, out, err) == (0, "hpc\n", 'Successfully created context "hpc"\n')
    doc = contexts.ContextStore().get("hpc")
    assert doc["Endpoints"] == {"slurm": {"Options": "partition=gpu,time=4:00:00,"
                                                     "root=/scratch/ps/%n"}}
    assert doc["Metadata"] == {"Description": "Slurm cluster"}
    code, out, _ = run("context", "ls", "--format", "{{.Name}} {{.SlurmEndpoint}}")
    assert out.splitlines()[1] == "hpc partition=gpu,time=4:00:00,root=/scratch/ps/%n"
    assert contexts.kind_of("hpc") == "slurm" and contexts.kind_of("default") == "portside"
    assert contexts.endpoint_of("hpc") == "slurm: partition=gpu,time=4:00:00,root=/scratch/ps/%n"
    code, _, _ = run("context", "update", "hpc", "--slurm", "partition=cpu")
    assert code == 0 and contexts.ContextStore().get("hpc")["Endpoints"] == \
        {"slurm": {"Options": "partition=cpu"}}


@pytest.mark.parametrize("argv, message", [
    (["--slurm", "partition=gpu,colour=red"], "--slurm: unknown key 'colour'"),
    (["--slurm", "time=soon"], "--slurm: time must be Slurm's time format"),
    (["--slurm", "root=relative/%n"], "--slurm: root must be an absolute path"),
    (["--slurm", "partition=gpu", "--docker", "host=unix:///x.sock"],
     "a context names one engine: --docker or --slurm, not both"),
])
def test_a_bad_slurm_context_is_one_line_and_nothing_stored(home, data_home, argv, message):
    code, out, err = run("context", "create", "hpc", *argv)
    assert code == 125 and out == "" and err.startswith(message), err
    assert not contexts.ContextStore().exists("hpc")


def test_an_endpoint_of_the_other_kind_is_refused(home, data_home):
    store = contexts.ContextStore()
    store.create("hpc", slurm="partition=gpu")
    store.create("box", docker="host=unix:///x.sock")
    with pytest.raises(InvalidArgument, match='context "hpc" is not a Docker context'):
        store.update("hpc", docker="host=unix:///y.sock")
    with pytest.raises(InvalidArgument, match='context "box" is not a Slurm context'):
        store.update("box", slurm="partition=cpu")


def test_a_slurm_context_yields_a_slurm_engine(home, data_home):
    """``from_env(context=…)`` is how every front gets the engine: a SlurmEngine on the
    context's options, its records in this user's data folder, nothing asked of Slurm yet."""
    from portside.engine.api import from_env
    from portside.engine.slurm.engine import SlurmEngine

    contexts.ContextStore().create("hpc", slurm="partition=gpu,time=10:00,account=lab")
    engine = from_env(context="hpc")
    assert isinstance(engine, SlurmEngine) and engine.name == "hpc"
    assert (engine.options.partition, engine.options.time, engine.options.account) == \
        ("gpu", "10:00", "lab")
    assert engine.records.dir == data_home / "portside" / "contexts" / "hpc"
    assert not engine.records.dir.exists()  # made when a container is
    with pytest.raises(InvalidArgument, match='--root applies to the "default" context only'):
        from_env(root="/tmp/x", context="hpc")
    engine.close()


def test_removing_a_slurm_context_with_containers_needs_force(home, data_home):
    from portside.engine.slurm.records import RecordStore

    store = contexts.ContextStore()
    store.create("hpc", slurm="partition=gpu")
    records = RecordStore(contexts.state_dir("hpc"))
    records.claim({"Id": "a" * 64, "Name": "exp", "Created": 1.0})
    with pytest.raises(Conflict, match=r'context "hpc" still has containers \(exp\): remove '
                                       r"them first \(portside -c hpc rm -f …\)"):
        store.remove("hpc")
    assert store.exists("hpc") and records.list()
    store.remove("hpc", force=True)
    assert not store.exists("hpc") and not contexts.state_dir("hpc").exists()
