"""The image store: images, their layers and their names, on top of the content store and snapshots.

Vocabulary:

* **image id** — the digest of the image's config (what ``docker images`` shows, shortened).
* **reference** — a full normalised name (``docker.io/library/busybox:latest`` or
  ``name@sha256:…``) pointing at one image id. Moving a tag leaves the old image *dangling*.
* **layer** — a blob in the content store (possibly compressed) whose uncompressed digest is its
  *diff id*; unpacked once into the snapshot named by its *chain id*.

Adding an image is crash-safe by ordering: blobs and snapshots first (each lands atomically), then
one SQLite transaction records the image, its layers and its names. A crash before the transaction
leaves unreferenced blobs or snapshots, never a half image. Removing runs the other way: records
first, files after.

While a process is still adding an image, the blobs and snapshots it has written are not yet
referenced by any image; a *lease* row (resource, owner) keeps garbage collection in another
process from removing them until the transaction that references them has committed. The owner
is the process (pid and start time), so when it is killed the next command to open the store
sees a dead owner's lease and collects what it protected (:mod:`..store.leftovers`); an
operation that fails collects its own at once (:meth:`ImageStore.lease`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from .. import events, faults
from ..errors import Conflict, CorruptStore, InvalidArgument, NotFound
from ..store.content import ContentStore
from ..store.db import Database
from ..store.leftovers import (ABANDONED, DEFAULT_RESUME_WINDOW, HeldDir, owner_alive,
                              owner_token)
from ..store.snapshots import Snapshots, chain_ids
from . import oci
from .schema import GC_ROOTS, SCHEMA  # noqa: F401 (re-exported)
from .reference import Reference, parse_reference
from ..records import field, record

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    import builtins
    from typing import BinaryIO, Iterable, Iterator


Database.register_schema("images", SCHEMA)


@record(frozen=True)
class LayerRef:
    """A layer blob already in the content store."""

    diff_id: str
    digest: str
    size: int
    media_type: str


@record
class ImageRecord:
    """What the store knows about one image; the config is read from its blob on demand."""

    id: str
    manifest_digest: str
    manifest_media_type: str
    created: float
    size: int
    added: float
    parent: str
    last_tag_time: float
    layers: list[dict] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[1][:12]

    @property
    def top_chain_id(self) -> str | None:
        return self.layers[-1]["chain_id"] if self.layers else None

    @property
    def repo_tags(self) -> list[str]:
        return [r for r in self.refs if "@" not in r]

    @property
    def repo_digests(self) -> list[str]:
        return [r for r in self.refs if "@" in r]


class _TeeReader:
    """Reads a stream and copies every byte read into a content writer."""

    def __init__(self, stream: BinaryIO, writer) -> None:
        self._stream = stream
        self._writer = writer

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        if data:
            self._writer.write(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


class Lease(list):
    """What an :meth:`ImageStore.lease` block holds: the resources it protects (``append`` and
    ``extend`` record each before it is written) and ``renew()``, which restarts a kept lease's
    resume window (progress was made)."""

    def renew(self) -> None:
        """Count a kept lease's resume window from now."""


class ImageStore:
    """Images, names and layers. All writes are crash-safe and safe against a second process."""

    def __init__(self, db: Database, content: ContentStore, snapshots: Snapshots, *,
                 resume_window: float = DEFAULT_RESUME_WINDOW) -> None:
        self.db = db
        self.content = content
        self.snapshots = snapshots
        #: seconds a kept lease (an interrupted pull's) outlives its last progress
        self.resume_window = resume_window

    # ----------------------------------------------------------------- leases
    @contextlib.contextmanager
    def lease(self, keep: bool = False) -> Iterator[Lease]:
        """Protect blobs and snapshots written inside the block from a concurrent GC.

        Append each resource (digest or ``snapshot:<chain id>``) to the yielded list *before*
        writing it. When the block ends normally the rows go (what it wrote is referenced by
        then). When it raises, what it wrote and nothing references is collected at once; when
        the process is killed, the rows stay with this process as their owner
        (:func:`~portside.engine.store.leftovers.owner_token`) and the next command to open
        the store collects it (see :mod:`portside.engine.store.leftovers`).

        Args:
            keep: keep what an interrupted block wrote (failed or killed) for
                ``resume_window`` seconds after its last progress (``renew()`` on the yielded
                list): an interrupted pull keeps its downloads for the next pull to resume.
        """
        held: list[str] = []
        pid = os.getpid()
        owner = owner_token()
        lease_id = os.urandom(8).hex()

        class _Lease(Lease):
            def append(inner, resource: str) -> None:  # noqa: N805 - closure over self
                now = time.time()
                with self.db.transaction() as conn:
                    conn.execute("INSERT INTO leases (resource, pid, created, owner, lease,"
                                 " progress) VALUES (?, ?, ?, ?, ?, ?)",
                                 (resource, pid, now, owner, lease_id, now if keep else 0))
                held.append(resource)
                list.append(inner, resource)

            def extend(inner, resources) -> None:  # noqa: N805
                """Append several resources in one transaction."""
                resources = list(resources)
                now = time.time()
                with self.db.transaction() as conn:
                    conn.executemany("INSERT INTO leases (resource, pid, created, owner, lease,"
                                     " progress) VALUES (?, ?, ?, ?, ?, ?)",
                                     [(r, pid, now, owner, lease_id, now if keep else 0)
                                      for r in resources])
                held.extend(resources)
                list.extend(inner, resources)

            def renew(inner) -> None:  # noqa: N805
                """Progress was made: count the resume window from now."""
                if keep and held:
                    with self.db.transaction() as conn:
                        conn.execute("UPDATE leases SET progress = ? WHERE lease = ?",
                                     (time.time(), lease_id))

        finished = False
        try:
            yield _Lease()
            finished = True
        finally:
            if held:
                self._end_lease(lease_id, held, finished, keep)

    def _end_lease(self, lease_id: str, held: list[str], finished: bool, keep: bool) -> None:
        if not finished and keep:
            # failed, not killed: the rows expire as a killed owner's would
            with self.db.transaction() as conn:
                conn.execute("UPDATE leases SET owner = ?, progress = ? WHERE lease = ?",
                             (ABANDONED, time.time(), lease_id))
            return
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM leases WHERE lease = ?", (lease_id,))
            if finished and keep:
                # what an earlier, interrupted attempt kept for this one is recorded now
                stale = [(r["lease"], r["resource"]) for r in conn.execute(
                    "SELECT lease, resource, owner, pid FROM leases WHERE progress > 0")
                    if r["resource"] in held and not owner_alive(r["owner"], r["pid"])]
                conn.executemany("DELETE FROM leases WHERE lease = ? AND resource = ?", stale)
        if not finished:
            # the operation failed: what it wrote and nothing else uses goes now
            with contextlib.suppress(Exception):  # never hide the operation's own error
                self.collect(
                    candidates_blobs={r for r in held if not r.startswith("snapshot:")},
                    candidates_chains={r[9:] for r in held if r.startswith("snapshot:")})

    def kept_until(self, progress: float) -> float:
        """Until when a kept lease whose owner stopped is kept (0: not kept, or no more)."""
        if progress <= 0 or self.resume_window <= 0:
            return 0.0
        until = progress + self.resume_window
        return until if until > time.time() else 0.0

    def _leased(self, conn, *, live_only: bool = False) -> set[str]:
        """Resources a lease protects: its owner runs, or (unless ``live_only``) it is kept
        for a resume."""
        verdict: dict[tuple[str, int], bool] = {}
        protected = set()
        for row in conn.execute("SELECT resource, owner, pid, progress FROM leases"):
            if not live_only and self.kept_until(row["progress"]):
                protected.add(row["resource"])
                continue
            key = (row["owner"], row["pid"])
            if key not in verdict:
                verdict[key] = owner_alive(*key)
            if verdict[key]:
                protected.add(row["resource"])
        return protected

    def unreferenced_of(self, leases: dict[tuple, list[str]]) -> dict[tuple, tuple[int, int, int]]:
        """For leases of dead owners (key -> resources): how many blobs and snapshots each
        protects that no image and no live lease uses, and their bytes."""
        with self.db.transaction() as conn:
            blobs, chains = self.referenced(conn)
            live = self._leased(conn, live_only=True)
        out = {}
        for key, resources in leases.items():
            nb = nc = size = 0
            for resource in set(resources) - live:
                if resource.startswith("snapshot:"):
                    chain = resource[9:]
                    if chain not in chains and self.snapshots.exists(chain):
                        nc += 1
                        size += self._snapshot_size(chain)
                elif resource not in blobs and self.content.exists(resource):
                    nb += 1
                    size += self.content.size(resource)
            out[key] = (nb, nc, size)
        return out

    def release_leases(self, leases: dict[tuple, list[str]]) -> None:
        """Drop leases of dead owners (keys ``(lease, owner, pid)``, resources) and collect
        what they protected that nothing else uses."""
        with self.db.transaction() as conn:
            conn.executemany("DELETE FROM leases WHERE lease = ? AND owner = ? AND pid = ?",
                             list(leases))
        resources = {r for res in leases.values() for r in res}
        self.collect(candidates_blobs={r for r in resources if not r.startswith("snapshot:")},
                     candidates_chains={r[9:] for r in resources if r.startswith("snapshot:")})

    # ----------------------------------------------------------------- layers
    def unpack(self, layers: list[LayerRef], leases: list[str] | None = None) -> list[str]:
        """Make sure every layer is unpacked into its snapshot; returns the chain ids.

        A layer whose snapshot exists is skipped (unpack once, shared by every image).
        The diff id is verified while unpacking.
        """
        from .layer import apply_layer

        ids = chain_ids([layer.diff_id for layer in layers])
        parent: str | None = None
        for layer, chain in zip(layers, ids):
            if leases is not None:
                leases.append("snapshot:" + chain)
            if not self.snapshots.exists(chain):
                lower = [self.snapshots.path(c) for c in self.snapshots.chain(parent)] if parent else []

                def populate(target: Path, layer=layer, lower=lower) -> int:
                    with self.content.open(layer.digest) as blob:
                        diff_id, size = apply_layer(blob, target, overlay=True, lower=lower)
                    if diff_id != layer.diff_id:
                        raise CorruptStore(f"layer {layer.digest} unpacks to {diff_id}, "
                                           f"expected diff id {layer.diff_id}")
                    return size

                self.snapshots.create(chain, parent, layer.diff_id, populate)
                faults.point("layer-unpacked")
            parent = chain
        return ids

    def ingest_layer(self, stream: BinaryIO, parent_chain: str | None,
                     leases: list[str]) -> tuple[LayerRef, str]:
        """Store a layer tar (any compression) as an uncompressed blob and unpack it, in one pass.

        Returns the layer and its chain id. Used by ``import``, ``commit`` and builds.
        """
        from ..store.snapshots import chain_ids as _chain
        from .layer import apply_layer, decompressed

        # held while we work in it: a killed import's folder is told from a live one's
        held = HeldDir(self.snapshots.root / ".staging", "ingest")
        tmp = held.path
        try:
            lower = ([self.snapshots.path(c) for c in self.snapshots.chain(parent_chain)]
                     if parent_chain else [])
            with self.content.writer() as writer:
                tee = _TeeReader(decompressed(stream), writer)
                diff_id, size = apply_layer(tee, tmp, overlay=True, lower=lower)
                tee.drain()
                if writer.digest != diff_id:
                    raise CorruptStore(f"layer digest mismatch: {writer.digest} != {diff_id}")
                leases.append(diff_id)
                digest = writer.commit(expected_digest=diff_id)
            faults.point("layer-blob-written")
            blob_size = self.content.size(digest)
            chain = (_chain([diff_id])[0] if parent_chain is None
                     else _chain_from(parent_chain, diff_id))
            leases.append("snapshot:" + chain)
            if not self.snapshots.exists(chain):
                def populate(target: Path) -> int:
                    os.rmdir(target)
                    os.rename(tmp, target)
                    return size
                self.snapshots.create(chain, parent_chain, diff_id, populate)
            faults.point("layer-unpacked")
            return LayerRef(diff_id, digest, blob_size, oci.OCI_LAYER), chain
        finally:
            held.close()  # its tree became the snapshot's, or goes now

    # ----------------------------------------------------------------- images
    def create(self, config: dict, layers: list[LayerRef], *, tags: Iterable[Reference] = (),
               annotations: dict[str, str] | None = None, leases: list[str] | None = None,
               manifest_bytes: bytes | None = None, manifest_media_type: str = oci.OCI_MANIFEST,
               config_bytes: bytes | None = None, parent: str = "", action: str = "create",
               digest_refs: Iterable[Reference] = ()) -> ImageRecord:
        """Record an image whose layer blobs are in the content store (they are unpacked here).

        ``config_bytes``/``manifest_bytes`` keep documents byte-for-byte (pull, load); otherwise
        they are serialised canonically. Tags move to the new image.
        """
        with contextlib.ExitStack() as stack:
            if leases is None:
                leases = stack.enter_context(self.lease())
            diff_ids = config.get("rootfs", {}).get("diff_ids", [])
            if [layer.diff_id for layer in layers] != list(diff_ids):
                raise InvalidArgument("image config diff_ids do not match its layers")
            for layer in layers:
                leases.append(layer.digest)
                if not self.content.exists(layer.digest):
                    raise NotFound(f"layer blob not found: {layer.digest}")
            ids = self.unpack(layers, leases)
            if config_bytes is None:
                config_bytes = oci.canonical_json(config)
            config_digest = oci.sha256_digest(config_bytes)
            leases.append(config_digest)
            self.content.write_bytes(config_bytes, expected=config_digest)
            if manifest_bytes is None:
                cfg_type = (oci.DOCKER_CONFIG if manifest_media_type == oci.DOCKER_MANIFEST
                            else oci.OCI_CONFIG)
                manifest = oci.new_manifest(
                    oci.descriptor(cfg_type, config_digest, len(config_bytes)),
                    [oci.descriptor(layer.media_type, layer.digest, layer.size) for layer in layers],
                    annotations)
                if manifest_media_type == oci.DOCKER_MANIFEST:
                    manifest["mediaType"] = oci.DOCKER_MANIFEST
                manifest_bytes = oci.canonical_json(manifest)
            manifest_digest = oci.sha256_digest(manifest_bytes)
            leases.append(manifest_digest)
            self.content.write_bytes(manifest_bytes, expected=manifest_digest)
            faults.point("image-before-record")
            size = sum(self._snapshot_size(c) for c in ids)
            created = oci.parse_time(config.get("created"))
            now = time.time()
            with self.db.transaction() as conn:
                conn.execute(
                    "INSERT INTO images (id, manifest_digest, manifest_media_type, created, size, added, parent) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                    "manifest_digest = excluded.manifest_digest, "
                    "manifest_media_type = excluded.manifest_media_type",
                    (config_digest, manifest_digest, manifest_media_type, created, size, now, parent))
                conn.execute("DELETE FROM image_layers WHERE image_id = ?", (config_digest,))
                conn.executemany(
                    "INSERT INTO image_layers (image_id, idx, diff_id, digest, size, media_type, chain_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(config_digest, i, layer.diff_id, layer.digest, layer.size, layer.media_type, c)
                     for i, (layer, c) in enumerate(zip(layers, ids))])
                events.emit(conn, "image", action, config_digest)
                for ref in tags:
                    self._tag(conn, config_digest, ref)
                for ref in digest_refs:
                    conn.execute("INSERT OR REPLACE INTO refs (name, image_id) VALUES (?, ?)",
                                 (str(ref), config_digest))
            return self.get(config_digest)

    def _depth(self, chain: str) -> int:
        try:
            return len(self.snapshots.chain(chain))
        except (NotFound, CorruptStore):
            return 0

    def _snapshot_size(self, chain: str) -> int:
        try:
            return int(self.snapshots.get(chain).get("size") or 0)
        except NotFound:
            return 0

    def _tag(self, conn, image_id: str, ref: Reference) -> None:
        if ref.digest:
            raise InvalidArgument(f"refusing to create a tag with a digest reference: {ref}")
        conn.execute("INSERT INTO refs (name, image_id) VALUES (?, ?) "
                     "ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id",
                     (str(ref), image_id))
        conn.execute("UPDATE images SET last_tag_time = ? WHERE id = ?", (time.time(), image_id))
        events.emit(conn, "image", "tag", image_id, name=ref.familiar())

    def tag(self, source: str, target: str) -> ImageRecord:
        ref = parse_reference(target)
        image = self.get(source)
        with self.db.transaction() as conn:
            self._tag(conn, image.id, ref)
        return self.get(image.id)

    # ----------------------------------------------------------------- lookups
    def _load(self, conn, image_id: str) -> ImageRecord | None:
        row = conn.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            return None
        rec = ImageRecord(row["id"], row["manifest_digest"], row["manifest_media_type"],
                          row["created"], row["size"], row["added"], row["parent"],
                          row["last_tag_time"])
        rec.layers = [dict(r) for r in conn.execute(
            "SELECT diff_id, digest, size, media_type, chain_id FROM image_layers "
            "WHERE image_id = ? ORDER BY idx", (image_id,))]
        rec.refs = sorted(r["name"] for r in conn.execute(
            "SELECT name FROM refs WHERE image_id = ?", (image_id,)))
        return rec

    def resolve_id(self, name: str) -> str:
        """Turn a reference, a full id or an unambiguous id prefix into an image id."""
        rows: list = []
        text = name.strip()
        if not text:
            raise InvalidArgument("invalid reference format: empty name")
        hexpart = text[7:] if text.startswith("sha256:") else text
        is_hex = all(c in "0123456789abcdef" for c in hexpart) and 0 < len(hexpart) <= 64
        try:
            ref = parse_reference(text)
        except InvalidArgument:
            ref = None
            if not is_hex:
                raise
        if ref is not None:
            rows = self.db.query("SELECT image_id FROM refs WHERE name = ?", (str(ref),))
            if not rows and ref.digest:
                # name@digest: the digest of a manifest this store has under that repository
                rows = self.db.query(
                    "SELECT r.image_id FROM refs r JOIN images i ON i.id = r.image_id "
                    "WHERE i.manifest_digest = ? AND r.name LIKE ?",
                    (ref.digest, ref.name + "%"))
        if rows:
            return rows[0]["image_id"]
        if is_hex:
            if len(hexpart) == 64:
                rows = self.db.query("SELECT id FROM images WHERE id = ?", ("sha256:" + hexpart,))
            else:
                rows = self.db.query("SELECT id FROM images WHERE id LIKE ?",
                                     ("sha256:" + hexpart + "%",))
            if len(rows) > 1:
                raise InvalidArgument(f"image id prefix is ambiguous: {text}")
            if rows:
                return rows[0]["id"]
        raise NotFound(f"No such image: {text}")

    def get(self, name: str) -> ImageRecord:
        image_id = self.resolve_id(name)
        with self.db.transaction() as conn:
            rec = self._load(conn, image_id)
        if rec is None:
            raise NotFound(f"No such image: {name}")
        return rec

    def list(self) -> list[ImageRecord]:
        with self.db.transaction() as conn:
            ids = [r["id"] for r in conn.execute("SELECT id FROM images ORDER BY created DESC, id")]
            return [rec for rec in (self._load(conn, i) for i in ids) if rec is not None]

    def config(self, image: ImageRecord | str) -> dict:
        image_id = image.id if isinstance(image, ImageRecord) else image
        return json.loads(self.content.read_bytes(image_id))

    def manifest(self, image: ImageRecord) -> dict:
        return json.loads(self.content.read_bytes(image.manifest_digest))

    def rootfs_lowers(self, image: ImageRecord) -> builtins.list[Path]:
        """Snapshot directories of the image, topmost first, for an overlay mount."""
        return [self.snapshots.path(layer["chain_id"]) for layer in reversed(image.layers)]

    # ----------------------------------------------------------------- removal
    def untag(self, name: str) -> tuple[str, bool]:
        """Remove one name; returns (image id, whether the image has no names left)."""
        ref = parse_reference(name)
        with self.db.transaction() as conn:
            row = conn.execute("SELECT image_id FROM refs WHERE name = ?", (str(ref),)).fetchone()
            if row is None:
                raise NotFound(f"No such image: {name}")
            conn.execute("DELETE FROM refs WHERE name = ?", (str(ref),))
            events.emit(conn, "image", "untag", row["image_id"], name=ref.familiar())
            left = conn.execute("SELECT COUNT(*) AS n FROM refs WHERE image_id = ?",
                                (row["image_id"],)).fetchone()["n"]
        return row["image_id"], left == 0

    def delete(self, image_id: str, *, in_use: Iterable[str] = ()) -> None:
        """Remove an image record and its names, then free blobs and snapshots nothing else uses."""
        if image_id in set(in_use):
            raise Conflict(f"image {image_id[7:19]} is being used by a container")
        with self.db.transaction() as conn:
            rec = self._load(conn, image_id)
            if rec is None:
                raise NotFound(f"No such image: {image_id}")
            conn.execute("DELETE FROM refs WHERE image_id = ?", (image_id,))
            conn.execute("DELETE FROM image_layers WHERE image_id = ?", (image_id,))
            conn.execute("DELETE FROM images WHERE id = ?", (image_id,))
            events.emit(conn, "image", "delete", image_id)
        self.collect(candidates_blobs={rec.manifest_digest, rec.id} | {l["digest"] for l in rec.layers},
                     candidates_chains={l["chain_id"] for l in rec.layers})

    def referenced(self, conn) -> tuple[set[str], set[str]]:
        blobs: set[str] = set()
        chains: set[str] = set()
        for row in conn.execute("SELECT id, manifest_digest FROM images"):
            blobs.add(row["id"])
            blobs.add(row["manifest_digest"])
        for row in conn.execute("SELECT digest, chain_id FROM image_layers"):
            blobs.add(row["digest"])
            chains.add(row["chain_id"])
        # a snapshot keeps its parents alive
        for chain in list(chains):
            try:
                chains.update(self.snapshots.chain(chain))
            except (NotFound, CorruptStore):
                pass
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master "
                                                 "WHERE type = 'table'")}
        for table, sql in GC_ROOTS:
            if table not in tables:
                continue
            for digest, chain in conn.execute(sql):
                if digest:
                    blobs.add(digest)
                if chain:
                    chains.add(chain)
        return blobs, chains

    def collect(self, *, candidates_blobs: set[str] | None = None,
                candidates_chains: set[str] | None = None) -> tuple[builtins.list[str], builtins.list[str]]:
        """Garbage-collect: remove blobs and snapshots no image (or lease) references.

        With candidates, only those are considered (the usual case after ``rmi``); without, the
        whole store is swept. Returns (removed blobs, removed chain ids).
        """
        with self.db.transaction() as conn:
            blobs, chains = self.referenced(conn)
            leased = self._leased(conn)
        if candidates_blobs is None:
            candidates_blobs = set(self.content.list())
        if candidates_chains is None:
            candidates_chains = {rec["chain_id"] for rec in self.snapshots.list()}
        dead_blobs = sorted(b for b in candidates_blobs if b not in blobs and b not in leased)
        dead_chains = [c for c in candidates_chains
                       if c not in chains and "snapshot:" + c not in leased]
        # remove children before parents
        depth = {c: self._depth(c) for c in dead_chains}
        dead_chains.sort(key=lambda c: -depth[c])
        removed_chains, removed_blobs = [], []
        for chain in dead_chains:
            # Another process may have taken a lease or recorded an image since the sweep: the
            # check is made again in the transaction that removes it, which such a process's
            # lease (written before it looks for the snapshot) cannot slip between.
            with contextlib.suppress(NotFound, Conflict):
                if self.snapshots.remove(chain, unless=lambda conn, c=chain: not self._dead_in(
                        conn, "snapshot:" + c, chain=c)):
                    removed_chains.append(chain)
        for blob in dead_blobs:
            with self.db.transaction() as conn:
                if self._dead_in(conn, blob, blob=blob):
                    self.content.delete(blob)
                    removed_blobs.append(blob)
        return removed_blobs, removed_chains

    def _dead_in(self, conn, lease: str, *, chain: str | None = None,
                 blob: str | None = None) -> bool:
        """Inside a write transaction: nothing leases or references ``lease`` any more."""
        if lease in self._leased(conn):
            return False
        if chain is not None and conn.execute(
                "SELECT 1 FROM image_layers WHERE chain_id = ? LIMIT 1", (chain,)).fetchone():
            return False
        if blob is not None and conn.execute(
                "SELECT 1 FROM images WHERE id = ? OR manifest_digest = ? UNION ALL "
                "SELECT 1 FROM image_layers WHERE digest = ? LIMIT 1",
                (blob, blob, blob)).fetchone():
            return False
        return True


def _chain_from(parent_chain: str, diff_id: str) -> str:
    return oci.sha256_digest(f"{parent_chain} {diff_id}".encode())


