"""Push: send an image's blobs and manifest to a registry.

For each blob (layers, then the config), cheapest first:

1. ``HEAD`` — the repository already has it: nothing to send (``Layer already exists``).
2. **Mount** — another repository of the same registry is known to hold it (we pulled it from
   there or pushed it there): ``POST …/blobs/uploads/?mount=<digest>&from=<repo>`` links it
   without sending a byte (``Mounted from <repo>``). A registry that cannot mount answers with
   an ordinary upload session instead, which we then use.
3. **Upload** — *monolithic* (one ``PUT`` with the whole blob) when its digest is known, or
   *chunked* (``PATCH`` with ``Content-Range`` per chunk, then ``PUT ?digest=``) when it is not
   known in advance or ``chunk_size`` asks for it.

A layer the store keeps *uncompressed* (imported, committed or built here) is compressed with gzip
while it is sent — deterministically (no name, mtime 0, fixed level), so the same layer always
gives the same blob — and the pushed manifest names the compressed blob. That blob is also kept in
the content store and remembered (``registry_compressed``), so the next push of the layer knows
its digest up front and usually needs only a ``HEAD``. The image's config, and so its id, is
unchanged: diff ids name the uncompressed tars.
"""

from __future__ import annotations

import json
import zlib
from concurrent.futures import ThreadPoolExecutor

from ..errors import EngineError, RegistryError
from ..image import oci
from ..image.reference import parse_reference
from . import known_sources, progress as pg, record_sources
from .client import RegistryClient
from .credentials import CredentialStore

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import BinaryIO


CONCURRENT_UPLOADS = 3
#: Size of the chunks of a chunked upload.
CHUNK_SIZE = 16 << 20
_READ = 1 << 20
_GZIP_LEVEL = 6
_UNCOMPRESSED = (oci.OCI_LAYER, oci.DOCKER_LAYER)


class _Pusher:
    def __init__(self, store, client: RegistryClient, repository: str, reporter: pg.Reporter,
                 chunk_size: int | None) -> None:
        self.store = store
        self.content = store.content
        self.client = client
        self.repo = repository
        self.reporter = reporter
        self.chunk_size = chunk_size

    # ----------------------------------------------------------------- one blob
    def push_layer(self, desc: dict) -> dict:
        """Push one layer; returns the descriptor the pushed manifest should name."""
        digest = desc["digest"]
        if desc.get("mediaType") in _UNCOMPRESSED:
            known = self._compressed_twin(digest)
            if known is None:
                return self._push_compressing(desc)
            docker = desc["mediaType"] == oci.DOCKER_LAYER
            desc = dict(desc, digest=known[0], size=known[1],
                        mediaType=oci.DOCKER_LAYER_GZIP if docker else oci.OCI_LAYER_GZIP)
        self.push_blob(desc["digest"], desc["size"])
        return desc

    def push_blob(self, digest: str, size: int) -> None:
        """Make sure the repository holds blob ``digest`` (HEAD, mount, or upload)."""
        if self.client.blob_exists(self.repo, digest,
                                   scopes=(f"repository:{self.repo}:pull,push",)):
            self.reporter.layer(digest, pg.LAYER_EXISTS)
            return
        location = None
        for source in known_sources(self.store.db, self.client.domain, digest):
            if source == self.repo:
                continue
            try:
                mounted, loc = self.client.start_upload(self.repo, mount=digest, from_repo=source)
            except RegistryError:
                continue
            if mounted:
                self.reporter.layer(digest, pg.MOUNTED, detail=source)
                return
            location = loc
            break
        if location is None:
            _, location = self.client.start_upload(self.repo)
        self.reporter.layer(digest, pg.PUSHING, 0, size)
        with self.content.open(digest) as f:
            if self.chunk_size:
                self._chunked(location, digest, f, size)
            else:
                # monolithic: one PUT streaming the file
                self.client.finish_upload(self.repo, location, digest, body=f, length=size)
        self.reporter.layer(digest, pg.PUSHED, size, size)

    def _chunked(self, location: str, digest: str, f: BinaryIO, size: int) -> None:
        sent = 0
        step = self.chunk_size or CHUNK_SIZE
        while True:
            data = f.read(step)
            if not data:
                break
            location = self.client.upload_chunk(self.repo, location, data, sent)
            sent += len(data)
            self.reporter.layer(digest, pg.PUSHING, sent, size)
        self.client.finish_upload(self.repo, location, digest)

    def _compressed_twin(self, diff_id: str) -> tuple[str, int] | None:
        rows = self.store.db.query(
            "SELECT digest, size FROM registry_compressed WHERE diff_id = ? AND compression = ?",
            (diff_id, "gzip"))
        if rows and self.content.exists(rows[0]["digest"]):
            return rows[0]["digest"], rows[0]["size"]
        return None

    def _push_compressing(self, desc: dict) -> dict:
        """Gzip an uncompressed layer while uploading it in chunks (digest known only at the end)."""
        diff_id = desc["digest"]
        total = desc["size"]
        step = self.chunk_size or CHUNK_SIZE
        _, location = self.client.start_upload(self.repo)
        # wbits 31: a gzip stream whose header has no name and mtime 0 -- byte-for-byte stable
        comp = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31)
        pending = bytearray()
        sent = read = 0
        self.reporter.layer(diff_id, pg.PUSHING, 0, total)
        with self.content.writer() as writer, self.content.open(diff_id) as src:
            while True:
                raw = src.read(_READ)
                final = not raw
                pending += comp.flush() if final else comp.compress(raw)
                read += len(raw)
                while len(pending) >= step or (final and pending):
                    chunk = bytes(pending[:step])
                    del pending[:step]
                    writer.write(chunk)
                    location = self.client.upload_chunk(self.repo, location, chunk, sent)
                    sent += len(chunk)
                self.reporter.layer(diff_id, pg.PUSHING, read, total)
                if final:
                    break
            digest = writer.digest
            self.client.finish_upload(self.repo, location, digest)
            with self.store.lease() as leases:
                leases.append(digest)
                writer.commit(expected_digest=digest, expected_size=sent)
                with self.store.db.transaction() as conn:
                    conn.execute("INSERT OR REPLACE INTO registry_compressed "
                                 "(diff_id, compression, digest, size) VALUES (?, ?, ?, ?)",
                                 (diff_id, "gzip", digest, sent))
        self.reporter.layer(diff_id, pg.PUSHED, total, total)
        docker = desc["mediaType"] == oci.DOCKER_LAYER
        out = dict(desc, digest=digest, size=sent,
                   mediaType=oci.DOCKER_LAYER_GZIP if docker else oci.OCI_LAYER_GZIP)
        return out


def push(store, config, name: str, *, progress: pg.ProgressCallback | None = None,
         tls_verify: bool | None = None, chunk_size: int | None = None) -> str:
    """Push image ``name`` to the registry its name points at.

    Args:
        store: the image store.
        config: the engine's configuration (insecure registries).
        name: a local image name with a registry domain (``127.0.0.1:5000/x:1``); no tag means
            ``latest``.
        progress: callback for :mod:`.progress` events.
        tls_verify: False to skip certificate checks.
        chunk_size: send every blob in chunks of this many bytes (default: monolithic uploads
            for blobs whose digest is known, 16 MiB chunks otherwise).

    Returns:
        The digest of the pushed manifest.

    Raises:
        NotFound: no such local image.
        RegistryError / Unauthorized: the registry failed or refused.
    """
    ref = parse_reference(name)
    record = store.get(name)
    tag = ref.tag or "latest"
    reporter = pg.Reporter(progress)
    cfg = config
    client = RegistryClient(ref.domain, insecure_registries=cfg.insecure_registries,
                            tls_verify=True if tls_verify is None else tls_verify,
                            credentials=CredentialStore().get(ref.domain))
    try:
        reporter.message(f"The push refers to repository [{ref.name}]")
        manifest = store.manifest(record)
        media_type = record.manifest_media_type
        pusher = _Pusher(store, client, ref.path, reporter, chunk_size)
        layers = manifest.get("layers") or []
        for desc in layers:
            reporter.layer(desc["digest"], pg.PREPARING)
        with ThreadPoolExecutor(max_workers=CONCURRENT_UPLOADS,
                                thread_name_prefix="portside-push") as pool:
            pushed = list(pool.map(pusher.push_layer, layers))
        config = manifest["config"]
        pusher.push_blob(config["digest"], config["size"])
        if pushed != layers:
            manifest = dict(manifest, layers=pushed)
            data = oci.canonical_json(manifest)
        else:
            data = store.content.read_bytes(record.manifest_digest)
        media_type = manifest.get("mediaType") or media_type
        client.put_manifest(ref.path, tag, data, media_type)
        digest = oci.sha256_digest(data)
        try:
            record_sources(store.db, ref.domain, ref.path,
                           [d["digest"] for d in pushed] + [config["digest"]])
        except EngineError:
            pass
        reporter.message(f"{tag}: digest: {digest} size: {len(data)}")
        return digest
    finally:
        client.close()


def manifest_inspect(config, name: str, *, tls_verify: bool | None = None) -> dict:
    """The manifest or index ``name`` resolves to in its registry, as JSON (``manifest inspect``)."""
    from .pull import ACCEPT, endpoints

    ref = parse_reference(name)
    clients = endpoints(config, ref, tls_verify=tls_verify)
    try:
        client = clients[-1]
        data, _, _ = client.get_manifest(ref.path, ref.digest or ref.tag or "latest", ACCEPT)
        if ref.digest and oci.sha256_digest(data) != ref.digest:
            raise RegistryError(f"manifest verification failed for {ref.familiar()}")
        return json.loads(data)
    finally:
        for c in clients:
            c.close()
