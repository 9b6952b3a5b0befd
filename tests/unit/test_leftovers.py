"""Unit tests for store.leftovers: what dead processes leave is reclaimed as the store opens,
what live ones (this process or another) hold is never touched.

Other processes are real ones (``python -c``): they take what they take, then either die with
``os._exit`` (no cleanup, as a SIGKILL leaves things) or wait, alive, until the test lets go.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from portside.engine.api import Engine
from portside.engine.errors import InvalidArgument
from portside.engine.store import leftovers
from portside.engine.store.leftovers import HeldDir, owner_alive, owner_token

pytestmark = pytest.mark.unit


class Child:
    """A Python child running ``script`` against the engine at ``root``; ``ready()`` waits for
    its "ready" line; ``die()`` lets it go to ``os._exit`` without cleaning up."""

    def __init__(self, root: Path, script: str) -> None:
        prelude = textwrap.dedent(f"""
            import os, sys
            from pathlib import Path
            from portside.engine.api import Engine
            engine = Engine(root={str(root)!r})
        """)
        epilogue = textwrap.dedent("""
            print("ready", flush=True)
            sys.stdin.read()
            os._exit(0)
        """)
        self.proc = subprocess.Popen([sys.executable, "-c", prelude + textwrap.dedent(script)
                                      + epilogue], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def ready(self) -> None:
        assert self.proc.stdout.readline() == b"ready\n"

    def die(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(timeout=60) == 0
        self.proc.stdout.close()


@pytest.fixture
def engine(tmp_path: Path):
    eng = Engine(root=tmp_path / "root")
    eng.db  # noqa: B018 - open the store
    yield eng
    eng.close()


def _sweep(engine: Engine, **how) -> list:
    """leftovers is given the store's parts, as the engine gives them as the store opens."""
    return leftovers.sweep(engine.root, engine.db, lambda: engine.image_store,
                           window=leftovers.resume_window(engine.config), **how)


def _reap(engine: Engine) -> list:
    return _sweep(engine, remove=True, keep_resumable=True)


def _survey(engine: Engine) -> list:
    return _sweep(engine, remove=False, keep_resumable=True)


def _names(folder: Path) -> list[str]:
    return sorted(os.listdir(folder)) if folder.is_dir() else []


# ------------------------------------------------------------------------------ owners


def test_owner_token_names_this_process_and_survives_nothing_else() -> None:
    token = owner_token()
    pid, _, start = token.partition(":")
    assert int(pid) == os.getpid() and start.isdigit()
    assert owner_alive(token)
    # the same pid with another start time is a recycled pid: not the owner
    assert not owner_alive(f"{pid}:{int(start) + 1}")
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, check=True)
    gone = int(proc.stdout)
    assert not owner_alive(f"{gone}:1")
    assert not owner_alive(leftovers.ABANDONED, os.getpid())
    # rows written before owners had tokens name only a pid
    assert owner_alive("", os.getpid()) and not owner_alive("", gone)


# ------------------------------------------------------------------------------ held folders


def test_a_dead_owners_folder_is_reclaimed_and_a_live_ones_is_not(engine: Engine) -> None:
    tmp = engine.root / "tmp"
    mine = HeldDir(tmp, "load")
    (mine.path / "data").write_bytes(b"x" * 5000)
    other = Child(engine.root, """
        from portside.engine.store.leftovers import HeldDir
        held = HeldDir(engine.root / "tmp", "import")
        (held.path / "data").write_bytes(b"y" * 9000)
    """)
    other.ready()
    dead = Child(engine.root, """
        from portside.engine.store.leftovers import HeldDir
        held = HeldDir(engine.root / "tmp", "pull")
        (held.path / "sub").mkdir()
        (held.path / "sub" / "data").write_bytes(b"z" * 20000)
    """)
    dead.ready()
    dead.die()
    assert len(_names(tmp)) == 3
    reclaimed = _reap(engine)
    assert [(r.kind, Path(r.where).name.split(".")[0], r.removed) for r in reclaimed] == \
        [("tmp", "pull", True)]
    assert reclaimed[0].size >= 20000
    assert sorted(n.split(".")[0] for n in _names(tmp)) == ["import", "load"]
    other.die()
    assert [Path(r.where).name.split(".")[0] for r in _reap(engine)] == ["import"]
    assert [n.split(".")[0] for n in _names(tmp)] == ["load"]
    mine.close()
    assert _names(tmp) == []


def test_a_folder_an_older_version_left_goes_only_when_old(engine: Engine) -> None:
    tmp = engine.root / "tmp"
    legacy = tmp / "load-k2j4h5g6"
    legacy.mkdir(parents=True)
    (legacy / "f").write_text("x")
    assert _reap(engine) == []
    old = time.time() - leftovers.LEGACY_AGE - 60
    os.utime(legacy, (old, old))
    assert [r.kind for r in _reap(engine)] == ["tmp"]
    assert _names(tmp) == []


def test_a_held_folder_the_reaper_takes_first_is_made_again(engine: Engine, monkeypatch) -> None:
    # The reaper may test a new folder between its mkdir and its lock: it removes it (it is
    # unlocked and empty), and the creator must not end up holding a deleted folder.
    import fcntl

    calls = []
    original = fcntl.flock

    def racing_flock(fd: int, op: int) -> None:
        if not calls:
            calls.append(fd)
            assert [r.kind for r in _reap(engine)] == ["tmp"]
        original(fd, op)

    monkeypatch.setattr(fcntl, "flock", racing_flock)
    held = HeldDir(engine.root / "tmp", "load")
    monkeypatch.undo()
    assert held.path.is_dir() and _names(engine.root / "tmp") == [held.path.name]
    assert _reap(engine) == []
    held.close()


# ------------------------------------------------------------------------------ ingests


def test_ingests_of_dead_writers_go_a_pulls_is_kept_for_a_resume(engine: Engine) -> None:
    ingest = engine.root / "content" / "ingest"
    live = engine.content.writer()
    live.write(b"live")
    dead = Child(engine.root, """
        a = engine.content.writer()
        a.write(b"a" * 1000)
        b = engine.content.writer("pull-" + "b" * 64)
        b.write(b"b" * 3000)
    """)
    dead.ready()
    dead.die()
    assert len(_names(ingest)) == 3
    reclaimed = _reap(engine)
    gone = [r for r in reclaimed if r.removed]
    kept = [r for r in reclaimed if not r.removed]
    assert [r.size for r in gone] == [1000]
    assert [r.size for r in kept] == [3000] and kept[0].kept_until > time.time() + 3000
    assert "interrupted pull" in kept[0].describe()
    assert sorted(_names(ingest)) == sorted([live.ref, "pull-" + "b" * 64])
    # the next pull resumes it
    with engine.content.writer("pull-" + "b" * 64) as w:
        assert w.offset == 3000
        w.close()
    # with no resume window (or --repair), it goes too
    engine.config.resume_window = 0
    assert [r.removed for r in _reap(engine)] == [True]
    assert _names(ingest) == [live.ref]
    live.abort()


def test_resume_window_comes_from_the_config(monkeypatch) -> None:
    from portside.engine.config import load_config

    monkeypatch.setenv("PORTSIDE_RESUME_WINDOW", "90")
    assert load_config().resume_window == 90.0
    monkeypatch.setenv("PORTSIDE_RESUME_WINDOW", "soon")
    with pytest.raises(InvalidArgument, match="number of seconds"):
        load_config()


# ------------------------------------------------------------------------------ staging


def test_a_half_unpacked_layer_goes_unless_its_chain_is_being_unpacked(engine: Engine) -> None:
    snaps = engine.root / "snapshots"
    engine.snapshots  # noqa: B018 - makes the folders
    free, busy = "a" * 64, "b" * 64
    (snaps / ".staging" / f"{free}-0123456789ab" / "fs" / "etc").mkdir(parents=True)
    (snaps / ".staging" / f"{busy}-ba9876543210" / "fs").mkdir(parents=True)
    holder = Child(engine.root, f"""
        import fcntl
        fd = os.open({str(snaps / ".locks" / busy)!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
    """)
    holder.ready()
    try:
        assert [r.kind for r in _reap(engine)] == ["staging"]
        assert _names(snaps / ".staging") == [f"{busy}-ba9876543210"]
    finally:
        holder.die()
    assert [r.kind for r in _reap(engine)] == ["staging"]
    assert _names(snaps / ".staging") == []


# ------------------------------------------------------------------------------ leases


def _blob_under_lease(keep: bool = False) -> str:
    return f"""
        store = engine.image_store
        lease = store.lease(keep={keep})
        held = lease.__enter__()
        data = b"unrecorded" + os.urandom(8)
        from portside.engine.store.content import digest_of
        held.append(digest_of(data))
        engine.content.write_bytes(data)
        print(digest_of(data), flush=True)
    """


def test_a_killed_operations_lease_is_dropped_and_its_blobs_collected(engine: Engine) -> None:
    child = Child(engine.root, _blob_under_lease())
    digest = child.proc.stdout.readline().decode().strip()
    child.ready()
    # alive: its blob is protected, from the reaper and from garbage collection
    assert _reap(engine) == []
    engine.image_store.collect()
    assert engine.content.exists(digest)
    child.die()
    reclaimed = _reap(engine)
    assert [(r.kind, r.removed) for r in reclaimed] == [("lease", True)]
    assert "1 blob(s)" in reclaimed[0].describe()
    assert not engine.content.exists(digest)
    assert engine.db.query("SELECT * FROM leases") == []


def test_an_interrupted_pulls_lease_keeps_its_blobs_until_the_window_ends(engine: Engine) -> None:
    child = Child(engine.root, _blob_under_lease(keep=True))
    digest = child.proc.stdout.readline().decode().strip()
    child.ready()
    child.die()
    found = _survey(engine)
    assert [(r.kind, r.removed) for r in found] == [("lease", False)]
    assert found[0].kept_until > time.time() + leftovers.DEFAULT_RESUME_WINDOW - 60
    assert _reap(engine)[0].removed is False
    engine.image_store.collect()  # a concurrent rmi's collection keeps it too
    assert engine.content.exists(digest)
    # --repair does not wait, nor does a root whose resume window is 0
    assert [r.removed for r in _sweep(engine, remove=True, keep_resumable=False)] == [True]
    assert not engine.content.exists(digest)


def test_a_failed_operation_collects_what_it_wrote_at_once(engine: Engine) -> None:
    store = engine.image_store
    with pytest.raises(RuntimeError):
        with store.lease() as held:
            held.append("sha256:" + "0" * 64)
            digest = engine.content.write_bytes(b"half an image")
            held.append(digest)
            raise RuntimeError("the archive is bad")
    assert not engine.content.exists(digest)
    assert engine.db.query("SELECT * FROM leases") == []
    # a failed pull keeps its downloads for the next pull instead
    with pytest.raises(RuntimeError):
        with store.lease(keep=True) as held:
            digest = engine.content.write_bytes(b"a downloaded layer")
            held.append(digest)
            raise RuntimeError("registry went away")
    assert engine.content.exists(digest)
    rows = engine.db.query("SELECT owner, progress FROM leases")
    assert [r["owner"] for r in rows] == [leftovers.ABANDONED]
    assert _reap(engine)[0].kept_until == \
        rows[0]["progress"] + leftovers.DEFAULT_RESUME_WINDOW
    # the retry that records the image takes over what the failed one kept
    with store.lease(keep=True) as held:
        held.append(digest)
    assert engine.db.query("SELECT * FROM leases") == []


def test_held_dir_starts_again_when_a_reaper_took_its_new_folder_before_it_was_opened(
        tmp_path, monkeypatch):
    """Another command's reaper may find the new folder empty and unlocked right after mkdir
    and remove it, before this process even opened it: it makes another one, as it does when
    the folder went between open and flock."""
    real_open = os.open
    reaped: list[str] = []

    def open_after_a_reaper(path, flags, *args, **kwargs):
        if not reaped and str(path).startswith(str(tmp_path)) and flags & os.O_DIRECTORY:
            reaped.append(str(path))
            os.rmdir(path)  # what the reaper's _remove_tree did to the empty folder
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_after_a_reaper)
    held = HeldDir(tmp_path, "ingest")
    try:
        assert reaped and str(held.path) != reaped[0]
        assert held.path.is_dir() and not os.path.exists(reaped[0])
    finally:
        held.close()
    assert list(tmp_path.iterdir()) == []
