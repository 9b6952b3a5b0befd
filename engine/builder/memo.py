"""The build memo: a rebuild with nothing changed, answered before the builder is even imported.

The step cache (:mod:`.cache`) makes a rebuild cheap for the engine, but a terminal user still
pays for Python importing the parser, the builder and the image store just to find every step
cached.  So each finished build from a context folder is also remembered here as one row, under
a *fingerprint* of everything it depended on:

* the Dockerfile's text and the command line's options (tags, build arguments, target, labels,
  platform, ``SOURCE_DATE_EPOCH``);
* the context folder: every entry's path, type and mode, size, modification and change times
  and inode (as ``git`` decides a file is unchanged without reading it); a content change
  always moves the change time, which no one can set back. As with git's "racy clean" entries,
  a file whose change time lies within the file system's timestamp granularity of the moment
  the fingerprint was taken could change again within the same tick without its metadata
  showing it: such files are hashed when the build is remembered, and hashed again before a
  rebuild is answered.

The row holds the image id, the base images the build resolved (name and id), and the progress
events a rebuild shows (each step that looks up the step cache as CACHED: the build just filled
it, so a rebuild of the same inputs gives the same image).  ``portside build`` (see
:func:`replay`) computes the fingerprint with nothing but the standard library, finds the row,
checks that each base name still points at the same image and that the result and its tags still
exist, and replays the events in the user's ``--progress`` view.  Anything else -- an edited
file, a moved tag, ``--no-cache``, a lock in force, an ``ADD`` of a URL without a checksum, a
base image that had to be pulled, a context of more than :data:`MAX_ENTRIES` entries, a context
from standard input, ``PORTSIDE_BUILD_MEMO=0`` -- takes the normal path, which is still cached
step by step and records a fresh row.  ``builder prune`` forgets every row.

This module imports only the standard library (``portside build`` reads it first).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import time

__all__ = ["SCHEMA", "MAX_ENTRIES", "BUILD_OPTIONS", "key_values", "context_stamp",
           "fingerprint", "replay", "record", "state_root", "lock_may_apply"]

#: the memo's table; :mod:`.cache` registers it with the database's migrations
SCHEMA = [
    """CREATE TABLE IF NOT EXISTS build_memo (
        key TEXT PRIMARY KEY,
        image_id TEXT NOT NULL,
        bases TEXT NOT NULL,
        tags TEXT NOT NULL,
        events TEXT NOT NULL,
        created REAL NOT NULL
    )""",
    # racy files: {context path: content digest} (see fingerprint)
    "ALTER TABLE build_memo ADD COLUMN racy TEXT NOT NULL DEFAULT '{}'",
]

#: How close to the fingerprint's time a file's change time must be for its metadata not to be
#: trusted: Linux stamps files from a clock that ticks every few milliseconds (and FAT every two
#: seconds), so two writes within one tick leave the same times.
RACY_NS = 2_000_000_000

#: ``build``'s options, the one declaration both :mod:`portside.engine.commands.build` (which
#: makes its argparse parser from it) and this module's fast parser read: ``(flags, dest, kind,
#: help, memo)`` where ``kind`` is ``"value"``, ``"append"`` or ``"switch"`` and ``memo`` says
#: whether a rebuild with the option given may be answered from the memo (otherwise the command
#: line takes the normal path). ``--progress`` also has :data:`PROGRESS_MODES` as choices.
BUILD_OPTIONS: tuple[tuple[tuple[str, ...], str, str, str, bool], ...] = (
    (("-t", "--tag"), "tag", "append", "name and tag (name:tag)", True),
    (("-f", "--file"), "file", "value", "the Dockerfile (default: PATH/Dockerfile)", True),
    (("--build-arg",), "build_arg", "append", "set a build argument", True),
    (("--target",), "target", "value", "the build stage to build", True),
    (("--no-cache",), "no_cache", "switch", "do not use the build cache", False),
    (("--label",), "label", "append", "set an image label", True),
    (("--iidfile",), "iidfile", "value", "write the image id to this file", True),
    (("-q", "--quiet"), "quiet", "switch", "print only the image id", True),
    (("--progress",), "progress", "value", "progress output: auto, plain or json", True),
    (("--platform",), "platform", "value", "target platform (os/arch)", True),
    (("--locked",), "locked", "switch",
     "resolve images through portside.lock; any drift is an error", False),
    (("--pull",), "pull", "switch", "accepted for compatibility", False),
    (("--source-date-epoch",), "source_date_epoch", "value",
     "timestamps for a reproducible image (default: $SOURCE_DATE_EPOCH; in a notebook, the "
     "value recorded in portside.lock)", False),
    (("--no-source-date-epoch",), "no_source_date_epoch", "switch",
     "use the current time, not $SOURCE_DATE_EPOCH nor portside.lock's", False),
)
PROGRESS_MODES = ("auto", "plain", "tty", "json", "quiet", "rawjson")

#: a context with more entries than this is not fingerprinted (the walk would cost more than
#: the cached build it would save)
MAX_ENTRIES = 20000
#: changes whenever what goes into a fingerprint changes, so old rows never match
_VERSION = "portside-build-memo-1"


def key_values(items: list[str] | None, what: str, *, from_env: bool = False) -> dict[str, str]:
    """``KEY=VALUE`` words (``--build-arg``, ``--label``) as a dict, as ``docker build`` reads
    them: ``--build-arg NAME`` takes NAME's value from the environment (skipped when unset).

    Raises:
        ValueError: a word without a key (the CLI turns it into a one-line error).
    """
    out: dict[str, str] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not key:
            raise ValueError(f"invalid {what}: {item!r} (expected KEY=VALUE)")
        if not eq:
            if from_env:
                if key in os.environ:
                    out[key] = os.environ[key]
                continue
            value = ""
        out[key] = value
    return out


def context_stamp(root: str) -> str | None:
    """A digest of the context folder's metadata, or None when it has too many entries or
    cannot be read (then there is no fingerprint)."""
    found = _context_state(root)
    return None if found is None else found[0]


def _context_state(root: str) -> tuple[str, list[str]] | None:
    """The context's metadata digest and its *racy* regular files (changed within
    :data:`RACY_NS` of now), or None (too many entries, unreadable)."""
    racy_after = time.time_ns() - RACY_NS
    racy: list[str] = []
    h = hashlib.sha256()
    count = 0
    todo = [""]
    while todo:
        rel = todo.pop()
        try:
            with os.scandir(os.path.join(root, rel) if rel else root) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return None
        for entry in entries:
            count += 1
            if count > MAX_ENTRIES:
                return None
            try:
                st = entry.stat(follow_symlinks=False)
                link = os.readlink(entry.path) if entry.is_symlink() else ""
            except OSError:
                return None
            path = f"{rel}/{entry.name}" if rel else entry.name
            h.update(f"{path}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}"
                     f"\0{st.st_ino}\0{link}\n".encode("utf-8", "surrogateescape"))
            if entry.is_dir(follow_symlinks=False):
                todo.append(path)
            elif st.st_ctime_ns >= racy_after and entry.is_file(follow_symlinks=False):
                racy.append(path)
    return h.hexdigest(), racy


def _digests(root: str, paths: list[str]) -> dict[str, str] | None:
    """The content digest of each context file in ``paths``; None when one cannot be read."""
    out = {}
    for path in paths:
        h = hashlib.sha256()
        try:
            with open(os.path.join(root, path), "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        except OSError:
            return None
        out[path] = "sha256:" + h.hexdigest()
    return out


def fingerprint(*, dockerfile: str, context: str, tags: list[str], build_args: dict[str, str],
                target: str | None, labels: dict[str, str], platform: str | None,
                source_date_epoch: int | None, dockerfile_path: str | None = None
                ) -> tuple[str, dict[str, str]] | None:
    """The memo key of a build from the folder ``context`` and the content digests of its racy
    files (see the module's docstring), or None (no memo for it)."""
    state = _context_state(context)
    if state is None:
        return None
    stamp, racy = state
    digests = _digests(context, racy)
    if digests is None:
        return None
    doc = [_VERSION, os.path.realpath(context), stamp, dockerfile, dockerfile_path, list(tags),
           sorted(build_args.items()), target, sorted(labels.items()), platform,
           source_date_epoch]
    key = "sha256:" + hashlib.sha256(json.dumps(doc).encode("utf-8", "surrogateescape")
                                     ).hexdigest()
    return key, digests


def record(conn: sqlite3.Connection, key: str, image_id: str, bases: list[tuple[str, str]],
           tags: list[str], events: list[dict], racy: dict[str, str] | None = None) -> None:
    """Remember a finished build (``conn``: an open transaction on the engine's database).

    ``key`` and ``racy``: what :func:`fingerprint` returned before the build read anything;
    ``bases``: (normalised reference, image id) for each base image the build resolved by name,
    ("", id) for one named by id; ``tags``: the normalised names the image was tagged with;
    ``events``: the build's progress events as dicts, without the final ``BuildDone``.
    """
    conn.execute("INSERT INTO build_memo (key, image_id, bases, tags, events, created, racy) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                 "image_id = excluded.image_id, bases = excluded.bases, tags = excluded.tags, "
                 "events = excluded.events, created = excluded.created, racy = excluded.racy",
                 (key, image_id, json.dumps(bases), json.dumps(tags), json.dumps(events),
                  time.time(), json.dumps(racy or {})))


# ----------------------------------------------------------------------------------------------
# The command line's fast path


def state_root(explicit: str | None) -> str:
    """The engine's state folder as :func:`portside.engine.config.load_config` finds it, without
    importing it when no config file exists."""
    if explicit:
        return explicit
    if os.environ.get("PORTSIDE_ROOT"):
        return os.environ["PORTSIDE_ROOT"]
    from portside.engine.config import config_files, default_root

    if any(os.path.exists(p) for p in config_files()):
        from portside.engine.config import load_config

        return str(load_config().root)
    return str(default_root())


class _Request:
    """The part of a ``build`` command line the fast path understands: the values of the
    options of :data:`BUILD_OPTIONS` it mirrors, under the parser's ``dest`` names."""

    def __init__(self) -> None:
        self.root: str | None = None
        self.path: str | None = None
        self.tag: list[str] = []
        self.file: str | None = None
        self.build_arg: list[str] = []
        self.label: list[str] = []
        self.target: str | None = None
        self.iidfile: str | None = None
        self.quiet = False
        self.progress = "auto"
        self.platform: str | None = None


#: flag -> (dest, kind) for the options the fast path mirrors
_MIRRORED = {flag: (dest, kind) for flags, dest, kind, _help, memo in BUILD_OPTIONS if memo
             for flag in flags}


def _parse(argv: list[str]) -> _Request | None:
    """A ``[--root R] build|image build ...`` command line, or None when it uses anything else
    (then the full command line parser handles it)."""
    req = _Request()
    words = list(argv)
    while words and (words[0] == "--root" or words[0].startswith("--root=")):
        word = words.pop(0)
        if "=" in word:
            req.root = word.split("=", 1)[1]
        elif words:
            req.root = words.pop(0)
        else:
            return None
    if words[:1] == ["build"]:
        words = words[1:]
    elif words[:2] == ["image", "build"]:
        words = words[2:]
    else:
        return None
    while words:
        word = words.pop(0)
        name, eq, inline = word.partition("=") if word.startswith("--") else (word, "", "")
        if name in _MIRRORED:
            dest, kind = _MIRRORED[name]
            if kind == "switch":
                if eq:
                    return None
                setattr(req, dest, True)
                continue
            if eq:
                value = inline
            elif words:
                value = words.pop(0)
            else:
                return None
            if kind == "append":
                getattr(req, dest).append(value)
            else:
                setattr(req, dest, value)
        elif word.startswith("-") or req.path is not None:
            return None  # --no-cache, --locked, --pull, "-", a flag we don't mirror...
        else:
            req.path = word
    if req.path is None or req.file == "-" or req.progress not in PROGRESS_MODES:
        return None
    return req


def _dockerfile_text(req: _Request, context: str) -> str | None:
    if req.file is not None:
        path = req.file  # relative to the current directory, as the CLI reads it
    else:
        for name in ("Dockerfile", "Containerfile", "dockerfile"):
            path = os.path.join(context, name)
            if os.path.isfile(path):
                break
        else:
            return None
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def lock_may_apply() -> bool:
    """Whether a ``portside.lock`` may be in force (``--locked`` aside): then a build takes the
    full path, which checks it (:func:`portside.engine.lock.in_force` asks this too)."""
    return bool(os.environ.get("PORTSIDE_LOCKED") or os.environ.get("PORTSIDE_LOCK")
                or os.path.exists("portside.lock"))


def replay(argv: list[str], out=None, err=None, *, exiting: bool = False) -> int | None:
    """Answer ``portside build`` from the memo; returns the exit status, or None when the
    command must take the normal path (nothing has been printed then).

    ``exiting``: the process ends right after; the database connection is left to the exit
    (closing the last connection would checkpoint the write-ahead log, for nothing)."""
    started = time.monotonic()
    if os.environ.get("PORTSIDE_BUILD_MEMO") == "0":
        return None
    req = _parse(argv)
    if req is None or req.path is None or lock_may_apply() or not os.path.isdir(req.path):
        return None
    context = req.path
    sde_text = os.environ.get("SOURCE_DATE_EPOCH")
    try:
        sde = int(sde_text) if sde_text else None
        build_args = key_values(req.build_arg, "build argument", from_env=True)
        labels = key_values(req.label, "label")
    except ValueError:
        return None
    dockerfile = _dockerfile_text(req, context)
    if dockerfile is None:
        return None
    found_key = fingerprint(dockerfile=dockerfile, context=context, tags=req.tag,
                            build_args=build_args, target=req.target, labels=labels,
                            platform=req.platform, source_date_epoch=sde)
    if found_key is None:
        return None
    key = found_key[0]
    try:
        db = os.path.join(state_root(req.root), "metadata.db")
    except Exception:  # a bad config file: the full path reports it
        return None
    if not os.path.exists(db):
        return None
    try:
        conn = sqlite3.connect(db, timeout=5, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        found = _lookup(conn, key, context)
    except sqlite3.Error:
        found = None  # no memo table yet, a locked or damaged database: the full path decides
    finally:
        if not exiting:
            conn.close()
    if found is None:
        return None
    image_id, events = found
    _show(req, image_id, events, time.monotonic() - started,
          out or sys.stdout, err or sys.stderr)
    if req.iidfile:
        with open(req.iidfile, "w") as f:
            f.write(image_id)
    return 0


def _lookup(conn: sqlite3.Connection, key: str, context: str) -> tuple[str, list[dict]] | None:
    """The memo's answer for ``key`` if everything it relied on still holds, else None."""
    conn.execute("BEGIN")  # one consistent snapshot for every check below
    try:
        row = conn.execute("SELECT image_id, bases, tags, events, racy FROM build_memo "
                           "WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        image_id, bases, tags, events = row[0], json.loads(row[1]), json.loads(row[2]), \
            json.loads(row[3])
        racy = json.loads(row[4])
        if racy and _digests(context, list(racy)) != racy:
            return None  # a file changed within its timestamp's tick: metadata cannot tell
        if conn.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone() is None:
            return None
        for name, base_id in bases:
            if name:
                now = conn.execute("SELECT image_id FROM refs WHERE name = ?", (name,)).fetchone()
                if now is None or now[0] != base_id:
                    return None
            elif conn.execute("SELECT 1 FROM images WHERE id = ?", (base_id,)).fetchone() is None:
                return None
        for name in tags:
            now = conn.execute("SELECT image_id FROM refs WHERE name = ?", (name,)).fetchone()
            if now is None or now[0] != image_id:
                return None
        return image_id, events
    finally:
        conn.execute("COMMIT")


def _show(req: _Request, image_id: str, events: list[dict], seconds: float, out, err) -> None:
    """Print what the normal path prints for a fully cached build."""
    done = {"type": "BuildDone", "image_id": image_id, "tags": list(req.tag),
            "seconds": seconds}
    quiet = req.quiet or req.progress == "quiet"
    if quiet:
        for event in events:
            if event.get("type") == "Warning":
                err.write(f"WARNING: {event['message']}\n")
        out.write(image_id + "\n")
        return
    if req.progress in ("json", "rawjson"):
        for event in [*events, done]:
            out.write(json.dumps(event) + "\n")
        out.flush()
        return
    from portside.engine.builder import progress

    view = progress.PlainRenderer(err)
    for event in [*events, done]:
        kind = getattr(progress, event.pop("type"))
        if kind is progress.BuildDone:
            event["tags"] = tuple(event["tags"])
        view(kind(**event))
