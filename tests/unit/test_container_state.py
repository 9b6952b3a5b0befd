"""The container state machine, names, config merging and records — no root, no runtime."""

from __future__ import annotations

import random
import signal

import pytest

from portside.engine.errors import Conflict, InvalidArgument, NotFound
from portside.engine.runtime.containers import (ContainerRecord, ContainerStore, new_state,
                                                run_dir_for)
from portside.engine.runtime.defaults import merge_config
from portside.engine.runtime.lifecycle import Status
from portside.engine.runtime.signals import parse_signal
from portside.engine.runtime.names import random_name, validate_name

pytestmark = pytest.mark.unit


def test_status_allows_the_right_verbs():
    assert Status.CREATED.can_start() and Status.EXITED.can_start()
    assert not Status.RUNNING.can_start() and not Status.PAUSED.can_start()
    assert Status.RUNNING.can_kill() and Status.PAUSED.can_kill() and not Status.EXITED.can_kill()
    assert Status.RUNNING.can_pause() and not Status.PAUSED.can_pause()
    assert Status.PAUSED.can_unpause() and not Status.RUNNING.can_unpause()
    assert Status.RUNNING.can_exec() and not Status.PAUSED.can_exec()
    assert Status.EXITED.can_remove() and not Status.RUNNING.can_remove()


@pytest.mark.parametrize("text,num", [("9", 9), ("KILL", 9), ("SIGKILL", 9), ("term", 15),
                                      ("SIGUSR1", int(signal.SIGUSR1)), ("HUP", 1)])
def test_signals_by_number_and_name(text, num):
    assert parse_signal(text) == num


@pytest.mark.parametrize("bad", ["NOPE", "0", "999", ""])
def test_bad_signals(bad):
    with pytest.raises(InvalidArgument):
        parse_signal(bad)


def test_names():
    assert validate_name("/web") == "web"
    for bad in ("a", "-x", "has space", "ü1"):
        with pytest.raises(InvalidArgument):
            validate_name(bad)
    taken = {"x"}
    name = random_name(lambda n: n in taken, random.Random(1))
    assert "_" in name and validate_name(name) == name


def test_merge_config_follows_docker():
    image = {"Env": ["PATH=/bin", "A=1"], "Cmd": ["sh"], "Entrypoint": ["/init"],
             "WorkingDir": "/app", "Labels": {"a": "1"}, "StopSignal": "SIGQUIT"}
    merged = merge_config(image, {"Env": ["A=2"], "Cmd": ["x"], "Labels": {"b": "2"}})
    assert merged["Env"] == ["PATH=/bin", "A=2"] and merged["Cmd"] == ["x"]
    assert merged["Entrypoint"] == ["/init"] and merged["WorkingDir"] == "/app"
    assert merged["Labels"] == {"a": "1", "b": "2"} and merged["StopSignal"] == "SIGQUIT"
    # --entrypoint replaces the image's entrypoint and drops its Cmd
    merged = merge_config(image, {"Entrypoint": ["echo"], "Cmd": None})
    assert merged["Entrypoint"] == ["echo"] and merged["Cmd"] is None
    merged = merge_config(image, {"Entrypoint": [""], "Cmd": ["ls"]})
    assert merged["Entrypoint"] is None and merged["Cmd"] == ["ls"]


def _record(name: str, cid: str) -> ContainerRecord:
    return ContainerRecord(cid, name, "sha256:" + "0" * 64, 1.0, {"Image": "x"}, {}, new_state())


def test_store_resolves_by_id_name_and_prefix(engine):
    store = ContainerStore(engine.db, engine.root)
    a = _record("alpha", "ab" + "1" * 62)
    b = _record("beta", "ab" + "2" * 62)
    store.add(a)
    store.add(b)
    assert store.resolve("alpha").id == a.id
    assert store.resolve(b.id).name == "beta"
    assert store.resolve("ab1").id == a.id
    with pytest.raises(InvalidArgument):
        store.resolve("ab")
    with pytest.raises(NotFound):
        store.resolve("gamma")
    with pytest.raises(Conflict):
        store.add(_record("alpha", "cd" + "3" * 62))
    store.rename(a, "gamma")
    assert store.resolve("gamma").id == a.id
    assert {k: sorted(v) for k, v in store.images_in_use().items()} == \
        {"sha256:" + "0" * 64: sorted(r.id for r in store.list())}
    store.delete(a)
    assert [r.name for r in store.list()] == ["beta"]


def test_refresh_of_a_created_container_changes_nothing(engine):
    lc = engine.lifecycle
    rec = _record("idle", "ef" + "4" * 62)
    lc.store.add(rec)
    assert lc.refresh(rec).status == "created"


def test_refresh_reads_the_exit_file_when_the_monitor_is_gone(engine):
    lc = engine.lifecycle
    rec = _record("dead", "12" + "5" * 62)
    lc.store.add(rec)
    rec.state.update(Status="running", Running=True, Pid=0)
    rec.monitor_pid = 0
    lc.store.save(rec)
    lc.finalize = lambda r: None  # the seam: no runtime, mounts or cgroups in a unit test
    lc.paths(rec).exit_file.write_text('{"exit_code": 3, "finished_at": "2024-01-01T00:00:00Z"}')
    lc.refresh(rec)
    fresh = lc.store.resolve("dead")
    assert fresh.status == "exited" and fresh.state["ExitCode"] == 3


def test_run_dir_stays_short(tmp_path):
    long_root = tmp_path / ("x" * 120)
    assert len(str(run_dir_for(long_root) / "0123456789ab" / "console.sock")) < 108
    assert run_dir_for(tmp_path / "r") == tmp_path / "r" / "run" or \
        str(run_dir_for(tmp_path / "r")).startswith("/run/portside")
