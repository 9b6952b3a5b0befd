"""Unit tests for the content store: digests, verified commits, resumable and crashed ingests."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from portside.engine.errors import Conflict, CorruptStore, IncorrectState, InvalidArgument, NotFound
from portside.engine.store import ContentStore, digest_of, validate_digest

pytestmark = pytest.mark.unit


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "content")


def listing(store: ContentStore) -> tuple[list[str], list[str]]:
    return sorted(os.listdir(store.blobs)), sorted(os.listdir(store.ingest))


def test_layout_and_roundtrip(store: ContentStore) -> None:
    data = b"hello portside\n"
    digest = store.write_bytes(data)
    assert digest == sha(data)
    assert store.path(digest) == store.root / "blobs" / "sha256" / digest[7:]
    assert store.exists(digest)
    assert store.size(digest) == len(data)
    assert store.read_bytes(digest) == data
    with store.open(digest) as f:
        assert f.read(5) == b"hello"
    assert list(store.list()) == [digest]
    assert store.verify(digest)
    assert listing(store)[1] == []  # the ingest is gone after commit
    # Blobs are immutable on disk.
    assert store.path(digest).stat().st_mode & 0o777 == 0o444


@pytest.mark.parametrize("bad", ["sha256:" + "A" * 64, "sha256:" + "a" * 63, "sha512:" + "a" * 64,
                                 "a" * 64, "", "sha256:../../etc/passwd" + "a" * 48])
def test_invalid_digests_rejected(store: ContentStore, bad: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid digest"):
        store.path(bad)
    with pytest.raises(InvalidArgument):
        validate_digest(bad)


def test_missing_blob(store: ContentStore) -> None:
    missing = sha(b"nope")
    assert not store.exists(missing)
    with pytest.raises(NotFound, match=f"blob not found: {missing}"):
        store.size(missing)
    with pytest.raises(NotFound):
        store.open(missing)
    with pytest.raises(NotFound):
        store.read_bytes(missing)
    with pytest.raises(NotFound):
        store.verify(missing)
    store.delete(missing)  # missing is fine


def test_commit_verifies_digest_and_leaves_nothing_on_mismatch(store: ContentStore) -> None:
    wrong = sha(b"something else")
    with store.writer() as w:
        w.write(b"actual bytes")
        with pytest.raises(CorruptStore) as info:
            w.commit(expected_digest=wrong)
    msg = str(info.value)
    assert wrong in msg and sha(b"actual bytes") in msg
    assert listing(store) == ([], [])


def test_commit_verifies_size(store: ContentStore) -> None:
    data = b"twelve bytes"
    w = store.writer("sized")
    w.write(data)
    with pytest.raises(CorruptStore, match="size mismatch: expected 13 bytes"):
        w.commit(expected_digest=sha(data), expected_size=13)
    assert listing(store) == ([], [])
    with pytest.raises(IncorrectState):
        w.write(b"more")


def test_commit_with_bad_expected_digest_is_invalid(store: ContentStore) -> None:
    with store.writer() as w:
        w.write(b"x")
        with pytest.raises(InvalidArgument):
            w.commit(expected_digest="md5:abc")


def test_write_bytes_expected(store: ContentStore) -> None:
    data = b"payload"
    assert store.write_bytes(data, expected=sha(data)) == sha(data)
    # Second time: already present, still checked.
    assert store.write_bytes(data, expected=sha(data)) == sha(data)
    with pytest.raises(CorruptStore):
        store.write_bytes(b"other", expected=sha(data))
    with pytest.raises(CorruptStore):
        store.write_bytes(b"other", expected=sha(b"not other"))
    assert list(store.list()) == [sha(data)]
    assert listing(store)[1] == []


def test_commit_of_existing_blob_drops_ingest(store: ContentStore) -> None:
    data = b"same"
    first = store.write_bytes(data)
    inode = store.path(first).stat().st_ino
    with store.writer("again") as w:
        w.write(data)
        assert w.commit(expected_digest=first, expected_size=4) == first
    assert store.path(first).stat().st_ino == inode
    assert listing(store) == ([first[7:]], [])


def test_writer_without_commit_aborts(store: ContentStore) -> None:
    with store.writer("named") as w:
        w.write(b"half")
    assert listing(store) == ([], [])
    with store.writer() as w:
        w.write(b"half")
    assert listing(store) == ([], [])


def test_unnamed_writer_aborts_on_exception(store: ContentStore) -> None:
    with pytest.raises(RuntimeError), store.writer() as w:
        w.write(b"half")
        raise RuntimeError("download failed")
    assert listing(store) == ([], [])


def test_named_writer_resumes_after_exception(store: ContentStore) -> None:
    data = os.urandom(300_000)
    ref = "docker.io/library/busybox@" + sha(data)  # not a safe dir name: encoded
    with pytest.raises(ConnectionError), store.writer(ref) as w:
        w.write(data[:123_457])
        raise ConnectionError("connection reset")
    assert store.ingests() == [ref]
    assert not any(store.list())
    with store.writer(ref) as w:
        assert w.offset == 123_457
        assert w.digest == sha(data[:123_457])  # hash state re-derived from the partial file
        w.write(data[w.offset:])
        assert w.commit(expected_digest=sha(data), expected_size=len(data)) == sha(data)
    assert store.read_bytes(sha(data)) == data
    assert listing(store)[1] == []


def test_named_writer_close_keeps_partial(store: ContentStore) -> None:
    w = store.writer("pull-1")
    w.write(b"abc")
    w.close()
    assert (store.ingest / "pull-1" / "data").read_bytes() == b"abc"
    w2 = store.writer("pull-1")
    assert w2.offset == 3
    w2.abort()
    assert listing(store) == ([], [])


def test_same_ref_waits_for_live_writer(store: ContentStore) -> None:
    first = store.writer("busy")
    first.write(b"12345")
    got: list[int] = []

    def second() -> None:
        with store.writer("busy") as w:
            got.append(w.offset)
            w.abort()

    t = threading.Thread(target=second)
    t.start()
    time.sleep(0.3)
    assert got == []  # blocked on the lock
    first.close()
    t.join(timeout=10)
    assert got == [5]


def test_same_ref_twice_in_one_thread_is_a_conflict(store: ContentStore) -> None:
    with store.writer("mine") as w:
        with pytest.raises(Conflict, match="already open"):
            store.writer("mine")
        w.write(b"ok")
        w.commit()
    # Released: opening it again is fine.
    store.writer("mine").abort()


def test_clean_ingest_skips_live_writers(store: ContentStore) -> None:
    live = store.writer("live")
    live.write(b"in progress")
    abandoned = store.writer("abandoned")
    abandoned.write(b"x")
    abandoned.close()
    assert store.clean_ingest(older_than=3600) == 0  # too recent
    assert store.clean_ingest() == 1
    assert sorted(os.listdir(store.ingest)) == ["live"]
    assert live.commit() == sha(b"in progress")
    assert listing(store)[1] == []


def test_crashed_writer_is_cleaned(store: ContentStore) -> None:
    """A child that dies mid-write (os._exit, no cleanup) leaves an ingest clean_ingest removes."""
    script = textwrap.dedent(f"""
        import os
        from pathlib import Path
        from portside.engine.store import ContentStore
        s = ContentStore(Path({str(store.root)!r}))
        w = s.writer("crash-ref")
        w.write(b"a" * 100000)
        w2 = s.writer()
        w2.write(b"b" * 10)
        os._exit(3)
    """)
    proc = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert proc.returncode == 3
    assert len(os.listdir(store.ingest)) == 2
    # The named ingest can still be resumed (its lock died with the process)...
    with store.writer("crash-ref") as w:
        assert w.offset == 100000
        w.close()
    # ...and both are garbage for clean_ingest.
    assert store.clean_ingest() == 2
    assert listing(store) == ([], [])


def test_delete_and_verify_detects_corruption(store: ContentStore) -> None:
    d = store.write_bytes(b"original")
    p = store.path(d)
    os.chmod(p, 0o644)
    p.write_bytes(b"tampered")
    assert not store.verify(d)
    store.delete(d)
    assert not store.exists(d)
    assert list(store.list()) == []


def test_digest_of() -> None:
    assert digest_of(b"") == ("sha256:e3b0c44298fc1c149afbf4c8996fb924"
                              "27ae41e4649b934ca495991b7852b855")
