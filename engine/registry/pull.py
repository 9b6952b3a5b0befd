"""Pull: resolve a reference to one image manifest, download and verify its blobs, unpack.

A pull goes:

1. **Resolve** — ``GET /v2/<repo>/manifests/<tag|digest>`` asking for OCI and Docker manifests
   and indexes. For Docker Hub, the configured mirrors are asked first, in order; a mirror that
   fails or lacks the image is skipped and the origin asked. An *index* (manifest list) is
   resolved to the manifest of the host's platform (or ``--platform``). Every document is checked
   against the digest that named it (the reference's or the index entry's) before it is believed.
2. **Validate** — the manifest's shape: schema 2, a config descriptor, layers of known media
   types, sizes that are non-negative integers. The config must list one diff id per layer.
3. **Download** — blobs missing from the content store, a few at once (threads). Each streams
   into a *named* ingest (``pull-<hex>``): the sha256 is computed as bytes arrive, a blob that
   runs past its descriptor's size is cut off at once, and ``commit`` refuses a wrong size or
   digest, so nothing unverified ever lands in ``blobs/``. If the connection dies (or the pull
   is killed), the partial ingest and the blobs already complete stay for ``resume-window``
   seconds (an hour by default; see :mod:`..store.leftovers`); a pull in that time sends
   ``Range: bytes=<offset>-`` and continues where it stopped.
4. **Unpack** — layers are unpacked in order as soon as each is downloaded (while later ones are
   still downloading); the snapshot code verifies the diff id and refuses path traversal.
5. **Record** — one transaction adds the image, its tag and its ``repo@digest`` name.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from .. import faults
from ..errors import CorruptStore, EngineError, InvalidArgument, RegistryError, Unauthorized
from ..image import oci
from ..image.reference import DEFAULT_DOMAIN, Reference, parse_reference
from ..image.store import ImageRecord, ImageStore, LayerRef
from ..store.content import digest_of, validate_digest
from . import progress as pg
from . import record_sources
from .client import RegistryClient, is_insecure
from .credentials import CredentialStore
from ..records import record

#: What we ask for: indexes first so a multi-arch image resolves to our platform.
ACCEPT = (oci.OCI_INDEX, oci.DOCKER_MANIFEST_LIST, oci.OCI_MANIFEST, oci.DOCKER_MANIFEST)
#: Downloads running at once (Docker's default for max-concurrent-downloads).
CONCURRENT_DOWNLOADS = 3
_MAX_CONFIG = 8 << 20
_CHUNK = 1 << 20


@record(frozen=True)
class Resolved:
    """A reference resolved to one image manifest."""

    client: RegistryClient
    repository: str          # path on the endpoint that answered
    digest: str              # what the user's reference resolved to (index or manifest)
    manifest_digest: str     # the image manifest's own digest
    manifest_bytes: bytes
    media_type: str
    manifest: dict


def parse_platform(text: str | None) -> dict[str, str]:
    """``os/arch[/variant]`` (``linux/arm64/v8``) as an OCI platform; None means the host's.

    Raises:
        InvalidArgument: malformed text.
    """
    if not text:
        return oci.host_platform()
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidArgument(f"invalid platform: {text} (expected os/arch[/variant])")
    plat = {"os": parts[0], "architecture": parts[1]}
    if len(parts) == 3:
        plat["variant"] = parts[2]
    return plat


def select_platform(index: dict, want: dict[str, str]) -> dict:
    """Pick the index entry for ``want``; an exact variant wins over an entry with none.

    Raises:
        RegistryError: no entry matches.
    """
    best = None
    for desc in index.get("manifests") or []:
        if not isinstance(desc, dict):
            continue
        plat = desc.get("platform") or {}
        if plat.get("os") != want["os"] or plat.get("architecture") != want["architecture"]:
            continue
        variant = plat.get("variant")
        if want.get("variant") and variant == want["variant"]:
            return desc
        if best is None and (not variant or not want.get("variant")):
            best = desc
    if best is None:
        name = "/".join(v for v in (want["os"], want["architecture"], want.get("variant")) if v)
        raise RegistryError(f"no matching manifest for {name} in the manifest list entries")
    return best


def _check_descriptor(desc: object, what: str) -> dict:
    if not isinstance(desc, dict):
        raise RegistryError(f"invalid manifest: {what} is not a descriptor")
    try:
        validate_digest(desc.get("digest"))  # type: ignore[arg-type]
    except InvalidArgument:
        raise RegistryError(f"invalid manifest: {what} has an invalid digest") from None
    size = desc.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise RegistryError(f"invalid manifest: {what} has an invalid size")
    return desc


def validate_manifest(doc: object) -> dict:
    """Check an image manifest's shape; returns it.

    Raises:
        RegistryError: not schema 2, no config, a layer of an unknown media type, bad sizes.
    """
    if not isinstance(doc, dict) or doc.get("schemaVersion") != 2:
        raise RegistryError("invalid manifest: not a schema 2 manifest")
    config = _check_descriptor(doc.get("config"), "config")
    if config["size"] > _MAX_CONFIG:
        raise RegistryError(f"invalid manifest: config of {config['size']} bytes is too big")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise RegistryError("invalid manifest: no layers")
    for i, layer in enumerate(layers):
        _check_descriptor(layer, f"layer {i}")
        if layer.get("mediaType") not in oci.LAYER_TYPES:
            raise RegistryError(f"unsupported layer media type: {layer.get('mediaType')}")
    return doc


def _document(data: bytes, expected_digest: str | None, expected_size: int | None,
              what: str) -> dict:
    actual = digest_of(data)
    if expected_digest is not None and actual != expected_digest:
        raise RegistryError(f"manifest verification failed for {what}: got {actual}")
    if expected_size is not None and len(data) != expected_size:
        raise RegistryError(f"manifest verification failed for {what}: size {len(data)} "
                            f"!= {expected_size}")
    try:
        doc = json.loads(data)
    except ValueError:
        raise RegistryError(f"invalid manifest for {what}: not JSON") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"invalid manifest for {what}: not a JSON object")
    return doc


def endpoints(config, ref: Reference, *, tls_verify: bool | None = None) -> list[RegistryClient]:
    """The clients to try for ``ref``: its mirrors in order, then the origin.

    ``registry-mirrors`` entries are URLs (mirrors of Docker Hub, as in Docker's daemon.json)
    or ``DOMAIN=URL`` (a mirror of that registry). Mirrors get no credentials.
    ``config``: the engine's configuration (mirrors, insecure registries).
    """
    cfg = config
    creds = CredentialStore().get(ref.domain)
    verify = True if tls_verify is None else tls_verify
    out = []
    for mirror in cfg.registry_mirrors:
        # "URL" mirrors Docker Hub (Docker's meaning); "DOMAIN=URL" mirrors that registry
        # (as podman's registries.conf can).
        domain, eq, url = mirror.partition("=")
        if not eq:
            domain, url = DEFAULT_DOMAIN, mirror
        if domain != ref.domain:
            continue
        if "://" not in url:
            url = ("http://" if is_insecure(url.split("/")[0], cfg.insecure_registries)
                   else "https://") + url
        out.append(RegistryClient(ref.domain, base_url=url, tls_verify=verify,
                                  insecure_registries=cfg.insecure_registries))
    out.append(RegistryClient(ref.domain, insecure_registries=cfg.insecure_registries,
                              tls_verify=verify, credentials=creds))
    return out


def _denied(ref: Reference) -> RegistryError:
    return Unauthorized(f"pull access denied for {ref.familiar_name}, repository does not exist "
                        f"or may require 'docker login'", 401)


def resolve(clients: list[RegistryClient], ref: Reference, platform: str | None) -> Resolved:
    """Find the image manifest for ``ref`` (see the module's step 1).

    Raises:
        RegistryError: every endpoint failed; the origin's error is the one reported.
    """
    want = parse_platform(platform)
    target = ref.digest or ref.tag or "latest"
    what = ref.familiar()
    for i, client in enumerate(clients):
        origin = i == len(clients) - 1
        try:
            data, media_type, _ = client.get_manifest(ref.path, target, ACCEPT)
            doc = _document(data, ref.digest, None, what)
            top_digest = digest_of(data)
            media_type = doc.get("mediaType") or media_type
            if media_type in oci.INDEX_TYPES or (not media_type and "manifests" in doc):
                desc = _check_descriptor(select_platform(doc, want), "index entry")
                data, media_type, _ = client.get_manifest(ref.path, desc["digest"], ACCEPT)
                doc = _document(data, desc["digest"], desc["size"], what)
                media_type = doc.get("mediaType") or desc.get("mediaType") or media_type
            if media_type not in oci.MANIFEST_TYPES:
                raise RegistryError(f"unsupported manifest media type {media_type or 'unknown'}"
                                    f" for {what}")
            validate_manifest(doc)
            return Resolved(client, ref.path, top_digest, digest_of(data), data, media_type, doc)
        except Unauthorized as exc:
            if not origin:
                continue
            if client.auth.credentials is None and "incorrect" not in str(exc):
                raise _denied(ref) from exc
            raise
        except RegistryError as exc:
            if not origin:
                continue  # a mirror that lacks the image or is down: try the next one
            if exc.status == 404 and ref.domain == DEFAULT_DOMAIN:
                raise _denied(ref) from exc
            raise
    raise AssertionError("unreachable")


class _Downloader:
    """Downloads the layers of one pull into the content store, verified and resumable."""

    def __init__(self, content, client: RegistryClient, repository: str, reporter: pg.Reporter):
        self.content = content
        self.client = client
        self.repository = repository
        self.reporter = reporter
        self.stop = threading.Event()

    def fetch_small(self, desc: dict) -> bytes:
        """A small blob (the config) into memory, verified; also stored in the content store."""
        digest, size = desc["digest"], desc["size"]
        if self.content.exists(digest):
            return self.content.read_bytes(digest)
        resp = self.client.get_blob(self.repository, digest)
        try:
            data = resp.read(size + 1)
        finally:
            resp.close()
        if len(data) != size or digest_of(data) != digest:
            raise RegistryError(f"config verification failed for digest {digest}")
        return data

    def download(self, desc: dict) -> None:
        """Make sure layer ``desc`` is a committed blob (download, resume, verify)."""
        digest, size = desc["digest"], desc["size"]
        if self.content.exists(digest):
            self.reporter.layer(digest, pg.ALREADY_EXISTS)
            return
        ref = "pull-" + digest.split(":", 1)[1]
        for _attempt in range(2):
            with self.content.writer(ref) as writer:
                if self.content.exists(digest):  # another process finished it meanwhile
                    writer.abort()
                    return
                offset = writer.offset
                if offset > size:
                    writer.abort()
                    continue
                if offset < size:
                    resp = self.client.get_blob(self.repository, digest, offset)
                    try:
                        if resp.status == 200 and offset:
                            writer.abort()  # the registry ignored our Range: start over
                            continue
                        self._copy(resp, writer, digest, size)
                    finally:
                        resp.close()
                self.reporter.layer(digest, pg.VERIFYING, size, size)
                try:
                    writer.commit(expected_digest=digest, expected_size=size)
                except CorruptStore as exc:
                    raise RegistryError(f"filesystem layer verification failed for digest "
                                        f"{digest}") from exc
                self.reporter.layer(digest, pg.DOWNLOADED, size, size)
                return
        raise RegistryError(f"cannot download {digest}: the registry does not honour ranges")

    def _copy(self, resp, writer, digest: str, size: int) -> None:
        length = resp.header("Content-Length")
        if length is not None and length.isdigit() and writer.offset + int(length) > size:
            writer.abort()
            raise RegistryError(f"blob {digest} is larger than the manifest says ({size} bytes)")
        while writer.offset < size:
            if self.stop.is_set():
                raise RegistryError("pull cancelled")
            data = resp.read(min(_CHUNK, size - writer.offset + 1))
            if not data:
                raise RegistryError(f"error pulling {digest[:19]}: unexpected EOF after "
                                    f"{writer.offset} of {size} bytes")
            if writer.offset + len(data) > size:
                writer.abort()
                raise RegistryError(f"blob {digest} is larger than the manifest says "
                                    f"({size} bytes)")
            writer.write(data)
            faults.point("pull-layer-partial")
            self.reporter.layer(digest, pg.DOWNLOADING, writer.offset, size)
        if resp.read(1):
            writer.abort()
            raise RegistryError(f"blob {digest} is larger than the manifest says ({size} bytes)")


def pull(store: ImageStore, config, name: str, *, platform: str | None = None,
         progress: pg.ProgressCallback | None = None,
         tls_verify: bool | None = None) -> ImageRecord:
    """Pull ``name`` from its registry into the image store.

    Args:
        store: the image store (its content store and snapshots receive the layers).
        config: the engine's configuration (mirrors, insecure registries).
        name: a reference (``busybox``, ``127.0.0.1:5000/x:1``, ``repo@sha256:…``).
        platform: ``os/arch[/variant]`` to pick from an index (default: the host's).
        progress: callback for :mod:`.progress` events.
        tls_verify: False to skip certificate checks (``--tls-verify=false``).

    Returns:
        The image record (tagged with the reference's tag, and named ``repo@digest``).

    Raises:
        RegistryError / Unauthorized: the registry failed, refused, or sent something that does
            not verify (nothing unverified is stored).
        InvalidArgument: a bad reference or platform, or a layer that tries to escape its root.
    """
    ref = parse_reference(name)
    reporter = pg.Reporter(progress)
    clients = endpoints(config, ref, tls_verify=tls_verify)
    try:
        resolved = resolve(clients, ref, platform)
        reporter.message(f"{ref.digest or ref.tag}: Pulling from {ref.path}")
        return _fetch_and_store(store, ref, resolved, reporter)
    finally:
        for client in clients:
            client.close()


def _fetch_and_store(store: ImageStore, ref: Reference, resolved: Resolved,
                     reporter: pg.Reporter) -> ImageRecord:
    manifest = resolved.manifest
    layer_descs = manifest["layers"]
    dl = _Downloader(store.content, resolved.client, resolved.repository, reporter)
    # if this pull is interrupted, what it downloaded is kept for a while for the next one
    # to resume (see store.leftovers); renewed as layers complete
    with store.lease(keep=True) as leases:
        config_desc = manifest["config"]
        leases.append(config_desc["digest"])
        config_bytes = dl.fetch_small(config_desc)
        try:
            config = json.loads(config_bytes)
            diff_ids = list(config["rootfs"]["diff_ids"])
        except (ValueError, KeyError, TypeError):
            raise RegistryError(f"invalid image config {config_desc['digest']}") from None
        if len(diff_ids) != len(layer_descs):
            raise RegistryError(f"invalid image: {len(layer_descs)} layers but "
                                f"{len(diff_ids)} diff ids in the config")
        for d in diff_ids:
            try:
                validate_digest(d)
            except InvalidArgument:
                raise RegistryError(f"invalid image config: bad diff id {d!r}") from None
        layers = [LayerRef(diff, desc["digest"], desc["size"], desc["mediaType"])
                  for diff, desc in zip(diff_ids, layer_descs)]
        for desc in layer_descs:
            leases.append(desc["digest"])
            if not store.content.exists(desc["digest"]):
                reporter.layer(desc["digest"], pg.PULLING, 0, desc["size"])
        pool = ThreadPoolExecutor(max_workers=CONCURRENT_DOWNLOADS,
                                  thread_name_prefix="portside-pull")
        futures: list[Future] = []
        try:
            seen: dict[str, Future] = {}
            for desc in layer_descs:
                # the same blob twice in one image is downloaded once
                fut = seen.get(desc["digest"]) or pool.submit(dl.download, desc)
                seen[desc["digest"]] = fut
                futures.append(fut)
            for i, (fut, layer) in enumerate(zip(futures, layers)):
                fut.result()
                existed = store.snapshots.exists(_chain(layers[:i + 1]))
                if not existed:
                    reporter.layer(layer.digest, pg.EXTRACTING, 0, layer.size)
                try:
                    store.unpack(layers[:i + 1], leases)
                except InvalidArgument as exc:
                    raise InvalidArgument(f"failed to register layer "
                                          f"{pg.short_id(layer.digest)}: {exc}") from exc
                except CorruptStore as exc:
                    raise RegistryError(f"failed to register layer "
                                        f"{pg.short_id(layer.digest)}: {exc}") from exc
                if not existed:
                    reporter.layer(layer.digest, pg.PULL_COMPLETE, layer.size, layer.size)
                leases.renew()
        except BaseException:
            dl.stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        before = _current_id(store, ref)
        tags = [ref] if ref.tag and not ref.digest else []
        digest_ref = Reference(ref.domain, ref.path, None, resolved.digest)
        record = store.create(config, layers, tags=tags, leases=leases,
                              manifest_bytes=resolved.manifest_bytes,
                              manifest_media_type=resolved.media_type,
                              config_bytes=config_bytes, action="pull",
                              digest_refs=[digest_ref])
    try:
        record_sources(store.db, ref.domain, ref.path, [layer.digest for layer in layers])
    except EngineError:
        pass  # only an optimisation for later pushes
    reporter.message(f"Digest: {resolved.digest}")
    shown = ref.familiar() if ref.digest else str(ref)
    if before == record.id:
        reporter.message(f"Status: Image is up to date for {shown}")
    else:
        reporter.message(f"Status: Downloaded newer image for {shown}")
    return record


def _chain(layers: list[LayerRef]) -> str:
    from ..store.snapshots import chain_ids

    return chain_ids([layer.diff_id for layer in layers])[-1]


def _current_id(store, ref: Reference) -> str | None:
    try:
        return store.resolve_id(str(ref))
    except EngineError:
        return None
