"""The CLI's quick exec (engine/quickexec.py) and the fast path's cache it reads
(``fastexec.save_base``/``load_base``): what it finds, what it makes of a command line, and
when it declines. tests/integration/test_fastexec.py runs it against real containers."""

from __future__ import annotations

import os

import pytest

from portside.engine import quickexec
from portside.engine.runtime import fastexec
from portside.engine.runtime.containers import ContainerStore
from portside.engine.store.db import Database

pytestmark = pytest.mark.unit


def _prepared(**over) -> fastexec.Prepared:
    with open("/proc/self/stat", "rb") as f:
        data = f.read()
    start = int(data[data.rindex(b")") + 2:].split()[19])
    fields = dict(
        container_id="c" * 64, pid=os.getpid(), start=start, joined={"ipc", "mount", "pid"},
        cgroups=["/sys/fs/cgroup/x"], args=["sleep", "1"], env=["PATH=/bin", "A=1", "HOME=/root"],
        cwd="/", uid=0, gid=0, groups=[], rlimits=[(7, 1024, 2048)], bad_rlimit=None, nnp=False,
        oom_score_adj=None, bounding=5, effective=5, permitted=5, inheritable=0, ambient=[],
        bpf=b"\x06\x00\x00\x00\x00\x00\xff\x7f", keyring=True)
    fields.update(over)
    return fastexec.Prepared(**fields)


def test_cache_gives_back_the_prepared_with_the_command_line(tmp_path):
    source = tmp_path / "config.json"
    source.write_text("{}")
    cache = str(tmp_path / "exec.cache")
    # the container's own environment had no HOME: prepare() added it, last
    fastexec.save_base(cache, _prepared(), ["PATH=/bin", "A=1"],
                       fastexec.source_keys([str(source)]))
    got = fastexec.load_base(cache, ["env"], ["A=2", "B=3"], "/tmp")
    assert got is not None
    expected = dict(vars(_prepared()), args=["env"], cwd="/tmp",
                    env=["PATH=/bin", "A=2", "B=3", "HOME=/root"])
    assert vars(got) == expected
    # -e HOME=…: no HOME added; no -w: the container's working directory
    got = fastexec.load_base(cache, ["true"], ["HOME=/h"])
    assert got is not None and got.env == ["PATH=/bin", "A=1", "HOME=/h"] and got.cwd == "/"
    # an entry prepare() would refuse: left to the engine
    assert fastexec.load_base(cache, ["true"], ["=x"]) is None


def test_cache_is_dropped_when_a_source_or_the_init_changed(tmp_path):
    source = tmp_path / "state.json"
    source.write_text("{}")
    missing = tmp_path / "etc-passwd"  # absent when saved: must still be absent
    cache = str(tmp_path / "exec.cache")
    fastexec.save_base(cache, _prepared(env=["PATH=/bin"]), ["PATH=/bin"],
                       fastexec.source_keys([str(source), str(missing)]))
    assert fastexec.base_current(cache)
    missing.write_text("root:x:0:0::/root:/bin/sh\n")
    assert not fastexec.base_current(cache)
    missing.unlink()
    assert fastexec.base_current(cache)
    source.write_text('{"changed": true}')
    assert fastexec.load_base(cache, ["true"]) is None
    # a container whose init is another process than the one the cache names
    fastexec.save_base(cache, _prepared(start=1), ["PATH=/bin"],
                       fastexec.source_keys([str(source)]))
    assert fastexec.base_current(cache) and fastexec.load_base(cache, ["true"]) is None
    (tmp_path / "garbage").write_bytes(b"not marshal")
    assert fastexec.load_base(str(tmp_path / "garbage"), ["true"]) is None
    assert fastexec.load_base(str(tmp_path / "none"), ["true"]) is None


def test_resolve_finds_what_the_store_finds(tmp_path):
    """Full id, name, unique id prefix, in ContainerStore.resolve's order."""
    db = Database(tmp_path / "metadata.db")
    ContainerStore(db, tmp_path)  # its tables
    ids = {"web": "ab" + "1" * 62, "db": "ab" + "2" * 62, "ab": "cd" + "3" * 62}
    try:
        with db.transaction() as conn:
            for name, cid in ids.items():
                conn.execute("INSERT INTO containers (id, name, image_id, created, config, "
                             "host_config, state, monitor_pid) VALUES (?, ?, '', 0, '{}', '{}', "
                             "?, 42)", (cid, name, '{"Status": "running", "Running": true}'))
    finally:
        db.close()
    import _sqlite3

    conn = _sqlite3.connect(str(tmp_path / "metadata.db"))
    try:
        for ref, want in (("web", "web"), ("/db", "db"), (ids["db"], "db"), ("ab1", "web"),
                          ("ab", "ab"), ("cd3", "ab"), ("ab2", "db")):
            found = quickexec._resolve(conn, ref)
            assert found == (ids[want], want, "running", 42), ref
            db = Database(tmp_path / "metadata.db")
            try:
                assert ContainerStore(db, tmp_path).resolve(ref).id == ids[want], ref
            finally:
                db.close()
        # several match, or none: the engine's error
        for ref in ("a", "AB1", "nosuch", "", "/"):
            assert quickexec._resolve(conn, ref) is None, ref
    finally:
        conn.close()


def test_the_default_context_only(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("PORTSIDE_CONTEXT", raising=False)
    assert quickexec._default_context({"context": None})
    assert quickexec._default_context({"context": "default"})
    assert not quickexec._default_context({"context": "slurm"})
    monkeypatch.setenv("PORTSIDE_CONTEXT", "docker")
    assert not quickexec._default_context({"context": None})
    assert quickexec._default_context({"context": "default"})
    monkeypatch.delenv("PORTSIDE_CONTEXT")
    current = tmp_path / "portside" / "contexts" / "current"
    current.parent.mkdir(parents=True)
    current.write_text("docker\n")
    assert not quickexec._default_context({"context": None})
    current.write_text("default\n")
    assert quickexec._default_context({"context": None})


def test_direct_spawn_only_for_descriptors():
    import subprocess

    assert fastexec._direct_stdio((None, 1, 2))
    assert fastexec._direct_stdio((subprocess.DEVNULL, subprocess.DEVNULL, 5))
    assert not fastexec._direct_stdio((None, subprocess.PIPE, None))
    assert not fastexec._direct_stdio((None, subprocess.STDOUT, None))
    with open(os.devnull) as null:  # a file object: Popen's business
        assert not fastexec._direct_stdio((null, None, None))
    assert subprocess.DEVNULL == fastexec.DEVNULL


@pytest.mark.parametrize("flags, why", [({"tty": True}, "--tty"), ({"user": "nobody"}, "--user"),
                                        ({"privileged": True}, "--privileged")])
def test_declines_the_options_it_does_not_do(flags, why):
    fields = {"tty": False, "user": "", "privileged": False, **flags}
    assert quickexec._plan(fields) == why


def test_keys_taken_before_the_read_leave_a_rewritten_file_unmatched(tmp_path):
    """The cache depends on the files as they were before the preparation read them: a file
    rewritten in between does not match the cache, which is then made again."""
    source = tmp_path / "state.json"
    source.write_text("{}")
    keys = fastexec.source_keys([str(source)])
    source.write_text('{"rewritten": 1}')  # while the engine prepared
    cache = str(tmp_path / "exec.cache")
    fastexec.save_base(cache, _prepared(), ["PATH=/bin"], keys)
    assert not fastexec.base_current(cache)


def test_an_env_file_that_is_not_a_regular_file_goes_to_the_engine(tmp_path, monkeypatch):
    """It could not be read twice (the quick path, then the engine after a fallback)."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for name in ("PORTSIDE_USERNS", "PORTSIDE_CONTEXT", "PORTSIDE_CONFIG", "PORTSIDE_RUNTIME",
                 "PORTSIDE_FAST_EXEC", "PORTSIDE_QUICK_EXEC"):
        monkeypatch.delenv(name, raising=False)
    fifo = tmp_path / "env.fifo"
    os.mkfifo(fifo)
    fields = {"tty": False, "user": "", "privileged": False, "context": None,
              "root": str(tmp_path / "store"), "interactive": False, "detach": True,
              "env_file": [str(fifo)], "env": []}
    if os.path.exists("/etc/portside/config.toml"):
        pytest.skip("this host has a portside config file")
    assert quickexec._plan(fields) == f"--env-file {fifo} is not a regular file"
    assert quickexec._plan(dict(fields, env_file=[str(tmp_path / "none")])) == \
        f"--env-file {tmp_path / 'none'} cannot be read"
    monkeypatch.setenv("PORTSIDE_RUNTIME", "crun")
    assert quickexec._plan(fields) == "PORTSIDE_RUNTIME is set"


@pytest.mark.parametrize("env", [{}, {"XDG_CONFIG_HOME": "/x/cfg"},
                                 {"PORTSIDE_CONFIG": "/x/portside.toml"}])
def test_the_files_it_checks_are_the_engines(env, monkeypatch):
    """The config files and the current context's file: where the engine reads them."""
    from portside.engine import config, contexts

    for name in ("XDG_CONFIG_HOME", "PORTSIDE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert quickexec._config_files() == [str(p) for p in config.config_files()]
    assert quickexec._current_context_file() == str(contexts.ContextStore().base / "current")


def test_roots_store_is_the_engines(monkeypatch):
    from portside.engine import config

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.delenv("PORTSIDE_USERNS", raising=False)
    assert str(config.default_root()) == quickexec._ROOTS_STORE
