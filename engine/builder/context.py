"""The build context: the files a Dockerfile's ``COPY`` and ``ADD`` may read.

``docker build PATH`` sends the directory ``PATH`` (the *context*) to the builder; ``docker build -``
sends a tar archive read from standard input instead.  Three rules shape what a build can see:

* **Ignore files.**  ``.dockerignore`` (or ``.containerignore``, podman's name) at the context
  root lists patterns of paths to leave out, one per line, with Docker's matching rules:
  ``*`` and ``?`` never cross a ``/``, ``**`` matches any number of directories, a leading ``/``
  is meaningless (patterns are always relative to the root), a trailing ``/`` is dropped, a
  pattern that matches a directory also excludes everything below it, a ``!`` line re-includes
  what an earlier line excluded, and the *last* matching line wins.  The Dockerfile and the
  ignore file themselves are always sent.
* **Confinement.**  A source path is resolved inside the context: ``../x`` and symbolic links
  whose target leaves the context are refused with a clear error, never followed.
* **Content, not time.**  A ``COPY`` step's cache key includes a hash of the files it reads
  (path, mode, owner, size and content digest; modification times are ignored), so touching a file
  does not invalidate the cache but editing it does.

Example::

    ctx = BuildContext.from_dir(Path("."))
    ctx.expand_sources(["src/*.py"])       # ['src/a.py', 'src/b.py'] (relative, not ignored)
    ctx.content_hash(["src"])              # 'sha256:…'
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
from pathlib import Path

from portside.engine.errors import InvalidArgument, NotFound
from portside.engine.records import record

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import BinaryIO, Iterable, Iterator

    from portside.engine.store.leftovers import HeldDir


__all__ = ["IgnorePattern", "IgnoreMatcher", "BuildContext", "IGNORE_FILES", "clean_path"]

#: Ignore files looked for at the context root, in order of preference.
IGNORE_FILES = (".dockerignore", ".containerignore")

_MAX_LINKS = 40


def clean_path(path: str) -> str:
    """Go's ``filepath.Clean`` for a slash path: no ``.``, no ``//``, ``..`` folded where possible."""
    if not path:
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    text = "/".join(out)
    if rooted:
        return "/" + text
    return text or "."


# --------------------------------------------------------------------------------------------
# .dockerignore


@record(frozen=True)
class IgnorePattern:
    """One line of an ignore file: the cleaned pattern, its regex, and whether it re-includes."""

    text: str
    regex: re.Pattern[str]
    exclusion: bool

    def matches(self, path: str) -> bool:
        """Whether the pattern matches ``path`` or one of its parent directories."""
        if self.regex.match(path):
            return True
        # "build" must also exclude "build/x/y": try every parent directory of the path.
        parts = path.split("/")
        for i in range(1, len(parts)):
            if self.regex.match("/".join(parts[:i])):
                return True
        return False


def _compile(pattern: str) -> re.Pattern[str]:
    """Translate a Docker ignore pattern into an anchored regular expression."""
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 1
                if i + 1 < n and pattern[i + 1] == "/":
                    # "**/" : zero or more whole directories
                    i += 1
                    out.append("(?:.*/)?")
                else:
                    out.append(".*")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise InvalidArgument(f"invalid .dockerignore pattern (unclosed [): {pattern}")
            body = pattern[i + 1:end]
            if body.startswith("^"):
                body = "!" + body[1:]
            body = body.replace("\\", "\\\\")
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return re.compile("".join(out), re.DOTALL)


class IgnoreMatcher:
    """The patterns of one ignore file, applied with Docker's last-match-wins rule."""

    def __init__(self, lines: Iterable[str] = ()) -> None:
        self.patterns: list[IgnorePattern] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exclusion = line.startswith("!")
            if exclusion:
                line = line[1:].strip()
            cleaned = clean_path(line).lstrip("/")
            if not cleaned or cleaned == ".":
                continue
            self.patterns.append(IgnorePattern(cleaned, _compile(cleaned), exclusion))
        self.has_exclusions = any(p.exclusion for p in self.patterns)

    @classmethod
    def parse(cls, text: str) -> "IgnoreMatcher":
        """Patterns from the text of an ignore file."""
        return cls(text.splitlines())

    def excluded(self, path: str) -> bool:
        """Whether the context-relative ``path`` is left out of the context."""
        result = False
        for pattern in self.patterns:
            if pattern.exclusion == result:
                # only a pattern that could flip the current answer needs testing
                if pattern.matches(path):
                    result = not pattern.exclusion
        return result

    def __bool__(self) -> bool:
        return bool(self.patterns)


# --------------------------------------------------------------------------------------------
# The context


class BuildContext:
    """A directory of files a build may copy from, with its ignore rules.

    Args:
        root: the context directory.
        dockerfile: the Dockerfile's path relative to ``root`` (always included).
        owned: remove ``root`` on :meth:`close` (a context unpacked from a tar stream).
    """

    def __init__(self, root: Path | None, *, dockerfile: str = "Dockerfile",
                 owned: bool = False, use_ignore: bool = True) -> None:
        self.root = Path(root).resolve() if root is not None else None
        self.owned = owned
        self.dockerfile = dockerfile
        self.ignore = IgnoreMatcher()
        self.ignore_file: str | None = None
        self._held: HeldDir | None = None  # the folder of a context unpacked from a stream
        if self.root is not None:
            if not self.root.is_dir():
                raise NotFound(f"build context is not a directory: {root}")
            for name in IGNORE_FILES if use_ignore else ():
                path = self.root / name
                if path.is_file():
                    self.ignore = IgnoreMatcher.parse(path.read_text(errors="replace"))
                    self.ignore_file = name
                    break
        self._always = {clean_path(dockerfile), *IGNORE_FILES}
        self._hashes: dict[str, str] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dir(cls, path: Path, dockerfile: str = "Dockerfile") -> "BuildContext":
        """The context of ``docker build PATH``."""
        return cls(Path(path), dockerfile=dockerfile)

    @classmethod
    def empty(cls) -> "BuildContext":
        """No context at all (``docker build - < Dockerfile``): COPY finds nothing."""
        return cls(None)

    @classmethod
    def from_tar(cls, stream: BinaryIO, tmp_root: Path, dockerfile: str = "Dockerfile"
                 ) -> "BuildContext":
        """Unpack a context tar (plain, gzip or zstd) under ``tmp_root``, safely.

        The archive is unpacked with the same confinement as image layers (no ``..``, no writing
        through symlinks). Call :meth:`close` to remove it.

        Raises:
            InvalidArgument: the archive is corrupt or tries to escape.
        """
        from portside.engine.image.layer import apply_layer

        from portside.engine.store.leftovers import HeldDir

        held = HeldDir(tmp_root, "context")  # a killed build's is reclaimed by the next command
        target = held.path / "root"
        try:
            apply_layer(stream, target, overlay=False)
        except BaseException:
            held.close()
            raise
        ctx = cls(target, dockerfile=dockerfile, owned=True)
        ctx._held = held
        return ctx

    def close(self) -> None:
        """Remove an unpacked context (no-op for a directory the user gave)."""
        if self._held is not None:
            self._held.close()
            self._held = None
        elif self.owned and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "BuildContext":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ queries
    def included(self, rel: str) -> bool:
        """Whether the context-relative path ``rel`` is part of the context."""
        if rel in ("", "."):
            return True
        if rel in self._always:
            return True
        return not self.ignore.excluded(rel)

    def read_text(self, rel: str) -> str:
        """The text of a file in the context (the Dockerfile).

        Raises:
            NotFound: no such file.
        """
        if self.root is None:
            raise NotFound(f"no build context to read {rel} from")
        path = self.resolve(rel)
        try:
            return path.read_text()
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise NotFound(f"cannot read {rel} in the build context: no such file") from exc

    def resolve(self, source: str, *, what: str = "COPY") -> Path:
        """Resolve a source path inside the context, following symlinks only inside it.

        Args:
            source: the path as written (``src/app.py``, ``./x``, ``/etc/conf``: always relative
                to the context root).
            what: the instruction, for the message.

        Returns:
            The host path (its last component may be a symlink whose target stays inside).

        Raises:
            InvalidArgument: the path or a symlink on it leaves the context.
            NotFound: no context at all.
        """
        if self.root is None:
            raise NotFound(f"{what} failed: no build context (the Dockerfile came from stdin)")
        cleaned = clean_path(source)
        if cleaned == ".." or cleaned.startswith("../"):
            raise InvalidArgument(f"{what} failed: forbidden path outside the build context: "
                                  f"{source}")
        from portside.engine.rootfs import resolve

        try:
            return resolve(self.root, cleaned, beneath=True)
        except InvalidArgument as exc:
            if "too many levels" in str(exc):
                raise InvalidArgument(f"{what} failed: too many levels of symbolic links: "
                                      f"{source}") from None
            raise InvalidArgument(f"{what} failed: {source} is outside the build context (a "
                                  "symbolic link on it points out of it)") from None

    def relative(self, path: Path) -> str:
        """``path`` (inside the context) as a context-relative slash path."""
        assert self.root is not None
        rel = os.path.relpath(path, self.root)
        return "" if rel == "." else rel

    def expand_sources(self, sources: Iterable[str], *, what: str = "COPY") -> list[str]:
        """Expand wildcards in ``sources`` into existing, not ignored, context-relative paths.

        Raises:
            NotFound: a source matches nothing (the message names it).
            InvalidArgument: a source leaves the context.
        """
        found: list[str] = []
        for source in sources:
            matches = self._glob(source, what)
            if not matches:
                raise NotFound(f"{what} failed: file not found in build context or excluded by "
                               f".dockerignore: {source}")
            found.extend(m for m in matches if m not in found)
        return found

    def _glob(self, source: str, what: str) -> list[str]:
        cleaned = clean_path(source).lstrip("/")
        if cleaned == ".." or cleaned.startswith("../"):
            raise InvalidArgument(f"{what} failed: forbidden path outside the build context: "
                                  f"{source}")
        if not any(c in cleaned for c in "*?["):
            path = self.resolve(cleaned, what=what)
            rel = self.relative(path)
            if not os.path.lexists(path) or not self.included(rel):
                return []
            return [rel]
        import fnmatch

        assert self.root is not None
        matches = [""]
        for comp in cleaned.split("/"):
            if comp in ("", "."):
                continue
            nxt: list[str] = []
            for base in matches:
                directory = self.resolve(base, what=what) if base else self.root
                if not any(c in comp for c in "*?["):
                    cand = f"{base}/{comp}" if base else comp
                    if os.path.lexists(directory / comp):
                        nxt.append(cand)
                    continue
                try:
                    names = sorted(os.listdir(directory))
                except (NotADirectoryError, FileNotFoundError):
                    continue
                for name in names:
                    if fnmatch.fnmatchcase(name, comp):
                        nxt.append(f"{base}/{name}" if base else name)
            matches = nxt
        return [m for m in matches if self.included(m)]

    def walk(self, rel: str) -> Iterator[tuple[str, os.stat_result]]:
        """Every included entry at and below ``rel`` (not following symlinks), sorted.

        Yields:
            ``(context-relative path, lstat result)``.
        """
        assert self.root is not None
        top = self.root / rel if rel else self.root
        st = os.lstat(top)
        yield rel, st
        if not stat.S_ISDIR(st.st_mode):
            return
        stack = [rel]
        while stack:
            current = stack.pop()
            directory = self.root / current if current else self.root
            entries = []
            for name in sorted(os.listdir(directory)):
                child = f"{current}/{name}" if current else name
                if not self.included(child):
                    # an excluded directory may still hold re-included files ("!dir/keep")
                    if not (self.ignore.has_exclusions and os.path.isdir(directory / name)
                            and not os.path.islink(directory / name)):
                        continue
                    stack.append(child)
                    continue
                cst = os.lstat(directory / name)
                entries.append((child, cst))
            for child, cst in entries:
                yield child, cst
                if stat.S_ISDIR(cst.st_mode):
                    stack.append(child)

    def content_hash(self, sources: Iterable[str]) -> str:
        """A digest of everything ``sources`` (expanded, relative) would copy.

        Covers each entry's path, type, mode, owner, size and content (files) or target
        (symlinks); modification times are left out so a ``touch`` keeps the cache.
        """
        digest = hashlib.sha256()
        for source in sources:
            path = self.resolve(source)
            top = self.relative(path)
            digest.update(f"source {source}\0".encode())
            for rel, st in self.walk(top):
                digest.update(f"{rel}\0{st.st_mode:o}\0{st.st_uid}\0{st.st_gid}\0".encode())
                if stat.S_ISREG(st.st_mode):
                    digest.update(f"{st.st_size}\0{self._file_hash(rel, st)}\0".encode())
                elif stat.S_ISLNK(st.st_mode):
                    digest.update(os.readlink(self.root / rel).encode() + b"\0")  # type: ignore[operator]
        return "sha256:" + digest.hexdigest()

    def _file_hash(self, rel: str, st: os.stat_result) -> str:
        key = f"{rel}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
        cached = self._hashes.get(key)
        if cached is None:
            h = hashlib.sha256()
            with open(self.root / rel, "rb") as f:  # type: ignore[operator]
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            cached = self._hashes[key] = h.hexdigest()
        return cached
