"""The lock file: every image a notebook uses, pinned to its digest, with its build's inputs.

A name like ``exp:1`` or ``python:3.12`` is a *moving* pointer: a rebuild, a ``tag`` or a registry
push makes it name other bytes. ``portside.lock`` (beside the notebook, or in the current folder)
records what each name meant when the notebook last worked::

    # portside.lock: images pinned by `portside lock`; set locked = true to enforce it
    version = 1
    locked = true
    source_date_epoch = 1714000000

    [images."exp:1"]
    id = "sha256:4f1c…"                  # the image id (digest of its config)
    manifest = "sha256:9ab0…"            # the digest of its manifest
    source = "build"                     # build | pull | local

    [images."exp:1".build]
    dockerfile = "sha256:77e2…"          # digest of the Dockerfile's text
    context = "sha256:0c3d…"             # digest of the context files the build read
    args = { PY = "3.12" }
    source_date_epoch = 1714000000
    base = "portside/debian:bookworm"

The file is TOML because it diffs line by line in a review; Python's ``tomllib`` reads it and
:func:`dumps` (a small writer for just these shapes) writes it, keys sorted so a re-lock that
changes nothing rewrites the same bytes.

With the lock *enforced* (``locked = true`` in it, or ``PORTSIDE_LOCKED=1``) names resolve
through it (:func:`enforce`), and any drift is one-line error that says what changed::

    portside.lock pins exp:1 to sha256:4f1c2a9b0e11, but the Dockerfile changed
    (sha256:77e2… → sha256:91aa…)

Build inputs come from the annotations every build writes into its image's manifest (where the
OCI image spec puts such keys; the config's labels stay exactly BuildKit's, see
:meth:`portside.engine.builder.builder.Builder._provenance`): ``io.portside.build.dockerfile``,
``.context``, ``.args``, ``.source-date-epoch`` and the base image's
``org.opencontainers.image.base.name`` / ``.base.digest``. Push and pull keep the manifest, so a
pulled image still says how it was built. The ``LABEL_*`` names below are those annotation keys
(``io.portside.recipe`` and its base alone are labels: a commit's, see :mod:`.recipe`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .errors import Conflict, InvalidArgument, NotFound
from .hashing import sha256 as _sha256
from .records import field, record

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Iterable, Mapping


__all__ = ["LOCK_NAME", "BuildInputs", "LockedImage", "LockFile", "find_lock", "load",
           "dumps", "enforce", "enforce_pull", "is_locked", "in_force", "check_build",
           "dockerfile_digest", "pin", "LABEL_DOCKERFILE", "LABEL_CONTEXT", "LABEL_ARGS",
           "LABEL_SDE", "LABEL_SOURCE", "LABEL_BASE_NAME", "LABEL_BASE_DIGEST", "LABEL_CREATED",
           "LABEL_RECIPE", "provenance", "lock_images"]

LOCK_NAME = "portside.lock"
VERSION = 1

LABEL_CREATED = "org.opencontainers.image.created"
LABEL_BASE_NAME = "org.opencontainers.image.base.name"
LABEL_BASE_DIGEST = "org.opencontainers.image.base.digest"
LABEL_SOURCE = "io.portside.source"
LABEL_DOCKERFILE = "io.portside.build.dockerfile"
LABEL_CONTEXT = "io.portside.build.context"
LABEL_ARGS = "io.portside.build.args"
LABEL_SDE = "io.portside.build.source-date-epoch"
LABEL_RECIPE = "io.portside.recipe"


# ------------------------------------------------------------------------------------ model
@record
class BuildInputs:
    """What went into a build; two builds with equal inputs should give the same image."""

    dockerfile: str
    context: str | None = None
    args: dict[str, str] = field(default_factory=dict)
    source_date_epoch: int | None = None
    base: str | None = None

    def to_toml(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"dockerfile": self.dockerfile, "args": dict(self.args)}
        if self.context is not None:
            doc["context"] = self.context
        if self.source_date_epoch is not None:
            doc["source_date_epoch"] = self.source_date_epoch
        if self.base:
            doc["base"] = self.base
        return doc

    @classmethod
    def from_toml(cls, doc: Mapping[str, Any]) -> "BuildInputs":
        return cls(str(doc.get("dockerfile", "")), doc.get("context"),
                   {str(k): str(v) for k, v in (doc.get("args") or {}).items()},
                   doc.get("source_date_epoch"), doc.get("base"))

    @classmethod
    def from_provenance(cls, prov: Mapping[str, str]) -> "BuildInputs | None":
        """The inputs a build recorded (its manifest's annotations, see :func:`provenance`),
        or None (not built here)."""
        if LABEL_DOCKERFILE not in prov:
            return None
        try:
            args = json.loads(prov.get(LABEL_ARGS) or "{}")
        except ValueError:
            args = {}
        sde = prov.get(LABEL_SDE)
        try:
            epoch = int(sde) if sde not in (None, "") else None
        except ValueError:
            epoch = None
        return cls(prov[LABEL_DOCKERFILE], prov.get(LABEL_CONTEXT) or None,
                   {str(k): str(v) for k, v in args.items()} if isinstance(args, dict) else {},
                   epoch, prov.get(LABEL_BASE_NAME) or None)


@record
class LockedImage:
    """One pinned name."""

    name: str
    id: str
    manifest: str = ""
    repo_digest: str | None = None
    source: str = "local"          # build | pull | local
    build: BuildInputs | None = None

    def to_toml(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": self.id, "manifest": self.manifest, "source": self.source}
        if self.repo_digest:
            doc["repo_digest"] = self.repo_digest
        if self.build is not None:
            doc["build"] = self.build.to_toml()
        return doc

    @classmethod
    def from_toml(cls, name: str, doc: Mapping[str, Any]) -> "LockedImage":
        if not isinstance(doc.get("id"), str) or not doc["id"].startswith("sha256:"):
            raise InvalidArgument(f"{LOCK_NAME}: images.{name!r} has no valid id")
        build = doc.get("build")
        return cls(name, doc["id"], str(doc.get("manifest", "")), doc.get("repo_digest"),
                   str(doc.get("source", "local")),
                   BuildInputs.from_toml(build) if isinstance(build, dict) else None)


def short_digest(digest: str | None) -> str:
    if not digest:
        return "(none)"
    return digest[:19] + "…" if digest.startswith("sha256:") and len(digest) > 19 else digest


def _key(name: str) -> str:
    """The name as the lock stores it: Docker's familiar form (``busybox:latest``)."""
    from .image.reference import parse_reference

    try:
        return parse_reference(name).familiar()
    except InvalidArgument:
        return name


@record
class LockFile:
    """A ``portside.lock`` in memory. ``path`` is where :meth:`save` writes it."""

    path: Path
    locked: bool = False
    source_date_epoch: int | None = None
    images: dict[str, LockedImage] = field(default_factory=dict)

    # -------------------------------------------------------------- reading and writing
    @classmethod
    def read(cls, path: str | os.PathLike) -> "LockFile":
        """Parse a lock file.

        Raises:
            NotFound: no file there. InvalidArgument: not a valid lock file.
        """
        import tomllib

        p = Path(path)
        try:
            text = p.read_text()
        except FileNotFoundError:
            raise NotFound(f"no lock file: {p}") from None
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidArgument(f"{p.name}: not valid TOML: {exc}") from None
        if doc.get("version", VERSION) != VERSION:
            raise InvalidArgument(f"{p.name}: unsupported lock version {doc.get('version')}")
        sde = doc.get("source_date_epoch")
        if sde is not None and not isinstance(sde, int):
            raise InvalidArgument(f"{p.name}: source_date_epoch must be an integer")
        images = {name: LockedImage.from_toml(name, entry)
                  for name, entry in (doc.get("images") or {}).items()}
        return cls(p, bool(doc.get("locked", False)), sde, images)

    def dumps(self) -> str:
        doc: dict[str, Any] = {"version": VERSION, "locked": self.locked}
        if self.source_date_epoch is not None:
            doc["source_date_epoch"] = self.source_date_epoch
        doc["images"] = {name: img.to_toml() for name, img in sorted(self.images.items())}
        header = (f"# {LOCK_NAME}: the images this notebook uses, pinned by `portside lock`.\n"
                  "# Set locked = true (or PORTSIDE_LOCKED=1) to make every name resolve through "
                  "it.\n")
        return header + dumps(doc)

    def save(self) -> None:
        """Write the file atomically (a reader never sees half a lock)."""
        tmp = self.path.with_name(self.path.name + f".tmp{os.getpid()}")
        tmp.write_text(self.dumps())
        os.replace(tmp, self.path)

    # -------------------------------------------------------------- queries
    def get(self, name: str) -> LockedImage | None:
        """The entry pinning ``name`` (any spelling of it), or None."""
        return self.images.get(_key(name)) or self.images.get(name)

    def resolve(self, name: str) -> str:
        """The pinned reference for ``name``: its image id.

        Raises:
            Conflict: ``name`` is not in the lock.
        """
        entry = self.get(name)
        if entry is None:
            raise Conflict(f"{self.path.name} does not pin {name} (run `portside lock {name}`)")
        return entry.id

    def pins(self, image_id: str) -> bool:
        return any(e.id == image_id for e in self.images.values())


# ------------------------------------------------------------------------------------ TOML
def _toml_key(key: str) -> str:
    if key and all(c.isalnum() or c in "-_" for c in key):
        return key
    return _toml_str(key)


def _toml_str(value: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes (\" \\ \n \uXXXX)
    return json.dumps(value, ensure_ascii=False)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}"
                                for k, v in sorted(value.items())) + " }"
    raise InvalidArgument(f"cannot write {type(value).__name__} to TOML")


def dumps(doc: Mapping[str, Any], _prefix: str = "") -> str:
    """Write a document as TOML: scalars first, then one ``[table]`` per nested mapping.

    Mappings named ``args`` (build arguments) are written inline, so each image's entry stays a
    small block; every other mapping becomes its own table.
    """
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in doc.items():
        if isinstance(value, dict) and key != "args":
            tables.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, value in tables:
        name = f"{_prefix}.{_toml_key(key)}" if _prefix else _toml_key(key)
        has_scalars = any(not isinstance(v, dict) or k == "args" for k, v in value.items())
        body = dumps(value, name)
        if has_scalars or not value:
            out += f"\n[{name}]\n" + body
        else:
            out += body
    return out


# ------------------------------------------------------------------------------------ finding
def find_lock(start: str | os.PathLike | None = None) -> Path:
    """Where the lock file is (or would be): ``$PORTSIDE_LOCK``, else ``portside.lock`` in
    ``start`` (default: the current folder, which is the notebook's folder in a kernel)."""
    explicit = os.environ.get("PORTSIDE_LOCK")
    if explicit:
        return Path(explicit)
    return Path(start or os.getcwd()) / LOCK_NAME


def load(path: str | os.PathLike | None = None) -> LockFile | None:
    """The lock file at ``path`` (default :func:`find_lock`), or None when there is none."""
    p = Path(path) if path is not None else find_lock()
    if not p.is_file():
        return None
    return LockFile.read(p)


def is_locked(lock: LockFile | None = None, *, force: bool = False) -> bool:
    """Whether names must resolve through the lock: ``force`` (a caller's ``--locked``),
    ``PORTSIDE_LOCKED=1`` or ``locked = true`` in the lock file."""
    if force:
        return True
    env = os.environ.get("PORTSIDE_LOCKED", "").strip().lower()
    if env in ("1", "true", "yes", "on"):
        return True
    if env in ("0", "false", "no", "off"):
        return False
    if lock is None:
        lock = load()
    return bool(lock and lock.locked)


def in_force(force: bool = False) -> LockFile | None:
    """The lock file when it is enforced (see :func:`is_locked`), else None; cheap when no lock
    can apply (no file, no ``PORTSIDE_LOCK*`` variable).

    Raises:
        NotFound: the lock is enforced but there is no lock file.
    """
    if not force and not (os.environ.get("PORTSIDE_LOCKED") or os.environ.get("PORTSIDE_LOCK")
                          or find_lock().exists()):
        return None
    lock = load()
    if not is_locked(lock, force=force):
        return None
    return _required_lock(lock)


def _required_lock(lock: LockFile | None) -> LockFile:
    lock = lock if lock is not None else load()
    if lock is None:
        raise NotFound(f"the lock is enforced but there is no {find_lock()}")
    return lock


# ------------------------------------------------------------------------------------ pinning
def dockerfile_digest(text: str) -> str:
    """The digest the lock records for a Dockerfile's text."""
    return "sha256:" + _sha256(text.encode()).hexdigest()


def pin(store: Any, lock: LockFile, name: str, *, follow_base: bool = True) -> LockedImage:
    """Pin ``name`` (as it is in the store now) into ``lock``; its base image too, when it was
    built here and the base is in the store.

    Returns:
        The new entry.

    Raises:
        NotFound: no such image.
    """
    rec = store.get(name)
    build = BuildInputs.from_provenance(provenance(store, rec.id))
    repo_digest = rec.repo_digests[0] if rec.repo_digests else None
    source = "build" if build is not None else ("pull" if repo_digest else "local")
    key = _key(name) if not name.startswith("sha256:") else name
    entry = LockedImage(key, rec.id, rec.manifest_digest,
                        _key(repo_digest) if repo_digest else None, source, build)
    lock.images[key] = entry
    if build is not None and lock.source_date_epoch is None:
        lock.source_date_epoch = build.source_date_epoch
    if follow_base and build is not None and build.base:
        try:
            base_rec = store.get(build.base)
        except (NotFound, InvalidArgument):
            base_rec = None
        if base_rec is not None and _key(build.base) not in lock.images:
            pin(store, lock, build.base, follow_base=True)
    return entry


def lock_images(store: Any, names: Iterable[str] = (), *,
                path: str | os.PathLike | None = None, update: bool = False,
                source_date_epoch: int | None = None, locked: bool | None = None) -> LockFile:
    """``portside lock``: write or update the lock file.

    Args:
        store: the image store (:class:`~portside.engine.image.store.ImageStore`).
        names: images to pin; with none, the names already in the lock are re-checked.
        path: the lock file (default :func:`find_lock`).
        update: re-pin names already in the lock to what they are now (otherwise a name that
            moved is an error, so a lock never changes silently).
        source_date_epoch: the value to record (default: kept, else the first pinned build's,
            else now).
        locked: set the lock's ``locked`` switch (None: keep it).

    Returns:
        The saved lock.

    Raises:
        NotFound: an image does not exist.
        Conflict: a pinned name moved and ``update`` is False.
    """
    p = Path(path) if path is not None else find_lock()
    lock = LockFile.read(p) if p.is_file() else LockFile(p)
    if source_date_epoch is not None:
        lock.source_date_epoch = source_date_epoch
    todo = list(names) or list(lock.images)
    for name in todo:
        old = lock.get(name)
        if old is not None and not update:
            try:
                current = store.resolve_id(name)
            except NotFound:
                current = None
            if current is not None and current != old.id:
                raise Conflict(f"{p.name} pins {old.name} to {short_digest(old.id)}, but it is now "
                               f"{short_digest(current)} (use --update to re-pin)")
            if current is None:
                continue  # pinned and absent here: keep the pin
        pin(store, lock, name)
    if lock.source_date_epoch is None:
        lock.source_date_epoch = int(time.time())
    if locked is not None:
        lock.locked = locked
    lock.save()
    return lock


# ------------------------------------------------------------------------------------ enforcing
def enforce(store: Any, name: str, lock: LockFile) -> str:
    """Resolve ``name`` through an enforced ``lock`` (``run``, ``create``, ``FROM``).

    Args:
        store: the image store, to see what ``name`` points at now.
        name: the image name as given.
        lock: the lock in force (:func:`in_force`).

    Returns:
        The pinned image id (a digest reference is returned as it is: it cannot drift).

    Raises:
        Conflict: the lock does not pin ``name``, or ``name`` now names another image.
        NotFound: the pinned image is not in this store (pull or build it first).
    """
    if name.startswith("sha256:") or "@sha256:" in name:
        return name  # a digest cannot drift
    entry = lock.get(name)
    if entry is None:
        raise Conflict(f"{lock.path.name} does not pin {name} (run `portside lock {name}`)")
    try:
        current = store.resolve_id(name)
    except NotFound:
        current = None
    if current is not None and current != entry.id:
        raise Conflict(f"{lock.path.name} pins {entry.name} to {short_digest(entry.id)}, but "
                       f"{entry.name} is now {short_digest(current)} (re-tagged or rebuilt)")
    try:
        store.resolve_id(entry.id)
    except NotFound:
        how = "pull" if entry.repo_digest else "build"
        raise NotFound(f"{lock.path.name} pins {entry.name} to {short_digest(entry.id)}, which is not "
                       f"in this store ({how} it first)") from None
    return entry.id


def enforce_pull(name: str, lock: LockFile) -> str:
    """The reference ``pull`` must fetch under an enforced ``lock``: ``repo@sha256:…``.

    Raises:
        Conflict: the lock does not pin ``name`` to a registry digest.
    """
    if "@sha256:" in name:
        return name
    entry = lock.get(name)
    if entry is None or not entry.repo_digest:
        raise Conflict(f"{lock.path.name} does not pin {name} to a registry digest "
                       f"(run `portside lock {name}` after pulling it)")
    return entry.repo_digest


def check_build(lock: LockFile, tag: str, inputs: BuildInputs) -> LockedImage:
    """Compare a build's inputs with what the lock pinned for ``tag``.

    Returns:
        The entry.

    Raises:
        Conflict: ``tag`` is not pinned, or an input differs (the message names which, with the
            old and new values).
    """
    entry = lock.get(tag)
    if entry is None:
        raise Conflict(f"{lock.path.name} does not pin {tag} (run `portside lock {tag}`)")
    old = entry.build
    head = f"{lock.path.name} pins {entry.name} to {short_digest(entry.id)}, but"
    if old is None:
        raise Conflict(f"{head} it was not built by portside (no recorded build inputs)")
    if old.dockerfile != inputs.dockerfile:
        raise Conflict(f"{head} the Dockerfile changed ({short_digest(old.dockerfile)} → "
                       f"{short_digest(inputs.dockerfile)})")
    for key in sorted(set(old.args) | set(inputs.args)):
        a, b = old.args.get(key), inputs.args.get(key)
        if a != b:
            raise Conflict(f"{head} build arg {key} changed ({a if a is not None else '(unset)'}"
                           f" → {b if b is not None else '(unset)'})")
    if old.source_date_epoch != inputs.source_date_epoch:
        raise Conflict(f"{head} SOURCE_DATE_EPOCH changed ({old.source_date_epoch} → "
                       f"{inputs.source_date_epoch})")
    if inputs.context is not None and old.context != inputs.context:
        raise Conflict(f"{head} the build context changed ({short_digest(old.context)} → "
                       f"{short_digest(inputs.context)})")
    return entry


def provenance(store: Any, name: str) -> dict[str, str]:
    """Where an image came from: its manifest's annotations (``io.portside.source``,
    ``org.opencontainers.image.created``, ``…base.digest``, the build inputs
    ``io.portside.build.*``…), and a commit's recipe labels (``io.portside.recipe``).

    Raises:
        NotFound: no such image.
    """
    rec = store.get(name)
    labels = (store.config(rec).get("config") or {}).get("Labels") or {}
    out = {k: v for k, v in labels.items()
           if k.startswith(("org.opencontainers.image.", "io.portside."))}
    out.update({k: v for k, v in (store.manifest(rec).get("annotations") or {}).items()
                if isinstance(v, str)})
    return out
