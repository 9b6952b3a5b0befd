"""Which OCI runtime a container gets (runtime/runtimes.py), and that its later verbs go to it:
an ``exec`` of a crun container never takes the fast path, which reproduces runc's exec only.

The containers themselves run in tests/rootless/test_rootless_runtime.py (both runtimes, the
same probe) and tests/integration/test_fastexec.py (the fast path against ``runc exec``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from portside.engine.config import Config
from portside.engine.errors import InvalidArgument
from portside.engine.runtime import fastexec
from portside.engine.runtime.containers import ContainerRecord
from portside.engine.runtime.lifecycle import Lifecycle
from portside.engine.runtime.oci import OCIRuntime
from portside.engine.runtime.runtimes import crun_accepts_host, default_name, kind, options
from portside.engine.store.db import Database

pytestmark = pytest.mark.unit


def both(name: str) -> str | None:
    return f"/usr/bin/{name}"


def test_the_default_is_crun_only_rootless_without_a_cgroup():
    ok = (lambda: True)
    assert default_name(None, rootless=True, cgroups=False, which=both, crun_ok=ok) == "crun"
    assert default_name(None, rootless=True, cgroups=True, which=both, crun_ok=ok) == "runc"
    assert default_name(None, rootless=False, cgroups=True, which=both, crun_ok=ok) == "runc"
    # crun refusing the host (a hybrid layout it can still see) keeps runc
    assert default_name(None, rootless=True, cgroups=False, which=both,
                        crun_ok=lambda: False) == "runc"
    # the config key wins; a missing runc leaves crun
    assert default_name("runc", rootless=True, cgroups=False, which=both, crun_ok=ok) == "runc"
    only_crun = (lambda n: "/usr/bin/crun" if n == "crun" else None)
    assert default_name(None, rootless=False, cgroups=True, which=only_crun, crun_ok=ok) == "crun"


def test_runtime_names_and_options():
    assert kind("/usr/local/sbin/runc") == "runc" and kind("crun") == "crun"
    with pytest.raises(InvalidArgument, match="unknown or invalid runtime name: kata"):
        kind("kata")
    assert options("crun", rootless=True, cgroups=False) == ("--cgroup-manager=disabled",)
    assert options("crun", rootless=True, cgroups=True) == ()
    assert options("runc", rootless=True, cgroups=False) == ()


def test_crun_accepts_a_hybrid_host_only_with_an_empty_v2_hierarchy(tmp_path):
    controllers = tmp_path / "cgroup.controllers"
    controllers.write_text("memory pids\n")
    assert not crun_accepts_host(str(controllers))
    controllers.write_text("\n")
    assert crun_accepts_host(str(controllers))
    assert crun_accepts_host(str(tmp_path / "missing"))  # not hybrid


@pytest.mark.parametrize("runtime", ["runc", "crun"])
def test_exec_asks_the_fast_path_with_the_containers_own_runtime(tmp_path, monkeypatch, runtime):
    """The fast path is asked with the runtime that made the container, whatever the default,
    and refuses any but runc's (crun's go through ``crun exec``)."""
    seen = []

    def prepare(cid, bundle, state_dir, rootfs, process, runtime_name):
        seen.append((Path(state_dir).parent.name, runtime_name))
        raise fastexec.Unsupported("recorded")

    monkeypatch.setattr(fastexec, "prepare", prepare)
    lc = Lifecycle(tmp_path, Database(tmp_path / "metadata.db"), Config(root=tmp_path),
                   image_store=lambda: None, volume_manager=lambda: None,
                   network_manager=lambda: None)  # type: ignore[arg-type,return-value]
    rec = ContainerRecord(id="c" * 64, name="x", image_id="", created=0.0, config={},
                          host_config={"Runtime": runtime})
    assert lc._fast_exec(rec, {"args": ["true"]}) is None
    assert seen == [({"runc": "runtime", "crun": "crun"}[runtime], runtime)]


def test_the_fast_path_refuses_a_crun_container_before_anything_else(tmp_path):
    with pytest.raises(fastexec.Unsupported, match="containers of crun exec through it"):
        fastexec.prepare("c1", tmp_path, tmp_path, tmp_path, {"args": ["true"]}, "crun")


def test_kill_all_of_crun_without_a_cgroup_signals_the_init(tmp_path, monkeypatch):
    """crun --cgroup-manager=disabled finds no process for --all (it reads the cgroup): the
    SIGKILL goes to the init, whose pid namespace dies with it; runc and crun with a cgroup keep
    --all."""
    calls = []
    monkeypatch.setattr(OCIRuntime, "_call", lambda self, *args, **kw: calls.append(args))
    OCIRuntime("crun", "/usr/bin/crun", tmp_path, options=("--cgroup-manager=disabled",)).kill(
        "c1", "KILL", all=True)
    OCIRuntime("crun", "/usr/bin/crun", tmp_path).kill("c1", "KILL", all=True)
    OCIRuntime("runc", "/usr/sbin/runc", tmp_path).kill("c1", "KILL", all=True)
    assert calls == [("kill", "c1", "KILL"), ("kill", "--all", "c1", "KILL"),
                     ("kill", "--all", "c1", "KILL")]
