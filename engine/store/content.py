"""Content-addressed blobs: the bottom of the store.

Every immutable thing the engine keeps (layer tarballs, image configs, manifests, indexes) is a
*blob* named by the SHA-256 of its bytes, its *digest* (``sha256:<64 lowercase hex>``). Because the
name is a function of the content, two pulls of the same layer share one file, a blob can be checked
at any time by hashing it again, and a blob, once present, never changes.

Layout under ``PORTSIDE_ROOT/content``::

    blobs/sha256/<hex>        committed blobs, read-only (0444), never modified in place
    ingest/<ref>/data         bytes being written, not yet verified
    ingest/<ref>/lock         flock(2) held by the live writer of that ingest
    ingest/<ref>/ref          the writer's ref, when the directory name had to be encoded

Vocabulary (containerd's): a *writer* ingests bytes under a *ref*. ``commit`` checks the digest
(and size) the caller expected, fsyncs, and renames the data into ``blobs/`` -- a rename is atomic,
so a reader sees either no blob or the whole verified blob, never a partial one. A writer opened with
a *named* ref is resumable: if a download dies half-way, ``writer(ref)`` later reopens the partial
data and continues at ``offset`` (the hash state is rebuilt by re-reading what is already there).
An unnamed writer gets a random ref and its ingest is thrown away unless committed.

Concurrency: one live writer per ref. A second ``writer(ref)`` (same process or another) waits for
the first to finish; ``clean_ingest`` only removes ingests whose lock nobody holds, so it is safe to
run while other processes are downloading. Two writers committing the same digest under different
refs both succeed: the second finds the blob present and drops its ingest.

Example::

    store = ContentStore(root / "content")
    with store.writer("layer-1") as w:
        w.write(chunk)
        digest = w.commit(expected_digest="sha256:…", expected_size=1234)
    data = store.read_bytes(digest)
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from portside.engine.errors import (
    Conflict,
    CorruptStore,
    IncorrectState,
    InvalidArgument,
    NotFound,
)
from portside.engine.hashing import sha256 as _sha256

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    import builtins
    from typing import BinaryIO


__all__ = ["ContentStore", "Writer", "validate_digest", "digest_of"]

_DIGEST_RE = re.compile(r"sha256:([0-9a-f]{64})")
# Refs that may be used verbatim as a directory name; anything else is hashed.
_SAFE_REF_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,127}")
_CHUNK = 1 << 20

# Ingest directories whose lock a thread of this process holds -> that thread's ident. Another
# thread waits for the lock as another process would; the *same* thread would wait forever.
_HELD: dict[Path, int] = {}
_HELD_LOCK = threading.Lock()


def validate_digest(digest: str) -> str:
    """Check that ``digest`` is ``sha256:<64 lowercase hex>`` and return its hex part.

    Raises:
        InvalidArgument: for any other form (other algorithms, upper case, wrong length).
    """
    m = _DIGEST_RE.fullmatch(digest) if isinstance(digest, str) else None
    if m is None:
        raise InvalidArgument(f"invalid digest: {digest!r}")
    return m.group(1)


def digest_of(data: bytes) -> str:
    """Return the ``sha256:<hex>`` digest of ``data``."""
    return "sha256:" + _sha256(data).hexdigest()


def _fsync_dir(path: Path) -> None:
    # A rename is only durable once the directory holding the new entry is synced.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock_ingest_dir(directory: Path, *, blocking: bool) -> int | None:
    """Create ``directory`` if needed and take the exclusive flock on its ``lock`` file.

    Returns the locked fd, or ``None`` when ``blocking`` is false and another writer holds it
    (or the directory vanished; only a blocking caller creates it).
    The lock file is deleted when an ingest is committed or aborted, so after acquiring we check
    that the file we locked is still the one at that path; if not, a finished writer removed it
    under us and we retry on the fresh one (otherwise two writers could each hold "the" lock).
    """
    lock_path = directory / "lock"
    while True:
        if blocking:
            directory.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            if not blocking:
                return None  # gone: nothing to lock (clean_ingest) -- never resurrect it
            continue  # the directory was removed between mkdir and open
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
        if not blocking:
            return None


class Writer:
    """One ingest in progress: append bytes, then ``commit`` them as a verified blob.

    Use it as a context manager (``with store.writer(ref) as w``). Leaving the block without a
    commit aborts the ingest, except when an exception escapes a writer with a *named* ref: then
    the partial data is kept so that a later ``writer(ref)`` can resume at ``offset``.

    Attributes:
        ref: the ingest's ref (random for unnamed writers).
        offset: how many bytes the ingest holds, i.e. where the next ``write`` lands.
    """

    def __init__(self, store: ContentStore, ref: str, directory: Path, lock_fd: int,
                 named: bool) -> None:
        self._store = store
        self.ref = ref
        self._dir = directory
        self._lock_fd: int | None = lock_fd
        self._named = named
        self._hash = _sha256()
        self._done = False
        data_path = directory / "data"
        # Rebuild the hash state from the partial data (resume); O_APPEND so a short earlier
        # write can never leave a hole.
        self._fd = os.open(data_path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self.offset = 0
        while chunk := os.pread(self._fd, _CHUNK, self.offset):
            self._hash.update(chunk)
            self.offset += len(chunk)
        if not named or not (directory / "ref").exists():
            (directory / "ref").write_text(ref)

    @property
    def digest(self) -> str:
        """The digest of the bytes written so far (including resumed ones)."""
        return "sha256:" + self._hash.hexdigest()

    def write(self, data: bytes) -> None:
        """Append ``data`` to the ingest.

        Raises:
            IncorrectState: the writer was already committed, aborted or closed.
        """
        self._check_open()
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._hash.update(data)
        self.offset += len(data)

    def commit(self, expected_digest: str | None = None, expected_size: int | None = None) -> str:
        """Verify the ingest, make it durable and move it into ``blobs/``.

        Args:
            expected_digest: the digest the bytes must have (a descriptor's ``digest``).
            expected_size: the size the bytes must have (a descriptor's ``size``).

        Returns:
            The blob's digest.

        Raises:
            InvalidArgument: ``expected_digest`` is not a valid digest.
            CorruptStore: the size or the digest differs from what was expected; the ingest is
                removed and nothing lands in ``blobs/``.
            IncorrectState: the writer is no longer open.
        """
        self._check_open()
        if expected_digest is not None:
            validate_digest(expected_digest)
        actual = self.digest
        problem = None
        if expected_size is not None and expected_size != self.offset:
            problem = (f"blob size mismatch: expected {expected_size} bytes"
                       f" ({expected_digest or 'no digest given'}), got {self.offset} ({actual})")
        elif expected_digest is not None and expected_digest != actual:
            problem = f"blob digest mismatch: expected {expected_digest}, got {actual}"
        if problem is not None:
            self.abort()
            raise CorruptStore(problem)
        target = self._store.path(actual)
        try:
            if not target.exists():
                os.fsync(self._fd)
                os.fchmod(self._fd, 0o444)
                os.rename(self._dir / "data", target)
                _fsync_dir(target.parent)
        finally:
            self._finish(remove=True)
        return actual

    def abort(self) -> None:
        """Throw the ingest away (partial data included). Idempotent."""
        if not self._done:
            self._finish(remove=True)

    def close(self) -> None:
        """Release the ingest without committing or deleting it (a named ref can be resumed)."""
        if not self._done:
            self._finish(remove=not self._named)

    def _finish(self, *, remove: bool) -> None:
        self._done = True
        os.close(self._fd)
        if remove:
            # Remove while still holding the lock so no other writer can adopt a half-deleted dir.
            shutil.rmtree(self._dir, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
            with _HELD_LOCK:
                _HELD.pop(self._dir, None)

    def _check_open(self) -> None:
        if self._done:
            raise IncorrectState(f"ingest {self.ref} is already committed or closed")

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._done:
            return
        if exc_type is not None and self._named:
            self.close()  # keep the partial data for a resume
        else:
            self.abort()

    def __del__(self) -> None:
        # Never leak the lock of a writer dropped without close; keep named data for resume.
        try:
            if not self._done:
                self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


class ContentStore:
    """Blobs named by their SHA-256 digest, written through verified ingests.

    Args:
        root: the content directory (``PORTSIDE_ROOT/content``); created if missing.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs" / "sha256"
        self.ingest = self.root / "ingest"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.ingest.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        """Return where the blob ``digest`` lives (whether or not it exists).

        Raises:
            InvalidArgument: ``digest`` is not ``sha256:<64 lowercase hex>``.
        """
        return self.blobs / validate_digest(digest)

    def exists(self, digest: str) -> bool:
        """Whether the blob ``digest`` is committed. Raises InvalidArgument for a bad digest."""
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        """Return the size in bytes of blob ``digest``.

        Raises:
            NotFound: no such blob.
        """
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob not found: {digest}") from None

    def open(self, digest: str) -> BinaryIO:
        """Open blob ``digest`` for reading (binary). The caller closes it.

        Raises:
            NotFound: no such blob.
        """
        try:
            return open(self.path(digest), "rb")  # noqa: SIM115 - returned to the caller
        except FileNotFoundError:
            raise NotFound(f"blob not found: {digest}") from None

    def read_bytes(self, digest: str) -> bytes:
        """Return the whole content of blob ``digest``. Raises NotFound."""
        with self.open(digest) as f:
            return f.read()

    def writer(self, ref: str | None = None) -> Writer:
        """Open an ingest. With a ``ref``, reopen (resume) that ingest if it exists.

        A named ref is locked while its writer is open: a second ``writer(ref)`` blocks until
        the first is committed, aborted or closed, then resumes whatever is left (nothing, if the
        first one committed -- check ``exists(digest)`` first when that matters).

        Args:
            ref: a name for the ingest (for instance the digest being downloaded), or ``None``
                for a private, non-resumable ingest.

        Returns:
            A :class:`Writer` whose ``offset`` says how many bytes are already there.

        Raises:
            InvalidArgument: ``ref`` is empty.
            Conflict: this thread already has a writer open on ``ref`` (waiting would deadlock).
        """
        named = ref is not None
        if ref is None:
            ref = "tmp-" + os.urandom(12).hex()
        if not ref:
            raise InvalidArgument("ingest ref must not be empty")
        directory = self.ingest / self._ref_dirname(ref)
        with _HELD_LOCK:
            if _HELD.get(directory) == threading.get_ident():
                raise Conflict(f"ingest {ref} is already open in this thread")
        fd = _lock_ingest_dir(directory, blocking=True)
        assert fd is not None
        with _HELD_LOCK:
            _HELD[directory] = threading.get_ident()
        try:
            return Writer(self, ref, directory, fd, named)
        except BaseException:
            with _HELD_LOCK:
                _HELD.pop(directory, None)
            os.close(fd)
            raise

    def write_bytes(self, data: bytes, expected: str | None = None) -> str:
        """Store ``data`` as a blob and return its digest.

        Raises:
            InvalidArgument: ``expected`` is not a valid digest.
            CorruptStore: ``data`` does not hash to ``expected``.
        """
        if expected is not None and self.exists(expected):
            # Still verify the caller's bytes: a wrong pairing is a bug worth reporting.
            actual = digest_of(data)
            if actual != expected:
                raise CorruptStore(f"blob digest mismatch: expected {expected}, got {actual}")
            return expected
        with self.writer() as w:
            w.write(data)
            return w.commit(expected_digest=expected, expected_size=None)

    def delete(self, digest: str) -> None:
        """Remove blob ``digest``; a missing blob is not an error."""
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            pass

    def list(self) -> Iterator[str]:
        """Yield the digest of every committed blob (in no particular order)."""
        with os.scandir(self.blobs) as entries:
            for entry in entries:
                if len(entry.name) == 64 and _DIGEST_RE.fullmatch("sha256:" + entry.name):
                    yield "sha256:" + entry.name

    def verify(self, digest: str) -> bool:
        """Hash blob ``digest`` again and say whether it still matches its name.

        Raises:
            NotFound: no such blob.
        """
        h = _sha256()
        with self.open(digest) as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        return "sha256:" + h.hexdigest() == digest

    def ingests(self) -> builtins.list[str]:
        """Return the refs of every ingest on disk (live or abandoned)."""
        refs = []
        for d in sorted(self.ingest.iterdir()):
            try:
                refs.append((d / "ref").read_text())
            except (FileNotFoundError, NotADirectoryError):
                refs.append(d.name)
        return refs

    def clean_ingest(self, older_than: float = 0) -> int:
        """Remove abandoned ingests: those no live writer holds, untouched for ``older_than`` s.

        Safe to call while other processes write: an ingest whose lock is held is never touched.

        Returns:
            How many ingests were removed.
        """
        removed = 0
        now = time.time()
        for d in list(self.ingest.iterdir()):
            if not d.is_dir() or d.is_symlink():
                d.unlink(missing_ok=True)
                removed += 1
                continue
            try:
                newest = max((p.stat().st_mtime for p in d.iterdir()), default=d.stat().st_mtime)
            except FileNotFoundError:
                continue  # finished under us
            if now - newest < older_than:
                continue
            fd = _lock_ingest_dir(d, blocking=False)
            if fd is None:
                continue  # a live writer
            try:
                shutil.rmtree(d, ignore_errors=True)
                removed += 1
            finally:
                os.close(fd)
        return removed

    @staticmethod
    def _ref_dirname(ref: str) -> str:
        if _SAFE_REF_RE.fullmatch(ref):
            return ref
        return "ref-" + _sha256(ref.encode()).hexdigest()[:40]
