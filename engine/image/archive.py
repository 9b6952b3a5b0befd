"""``save`` and ``load``: images as tar archives that Docker, podman and skopeo read and write.

``save`` writes Docker's current layout (Docker ≥ 25): an OCI image layout (``oci-layout``,
``index.json``, ``blobs/sha256/…``) that also carries Docker's ``manifest.json`` and
``repositories``, so the same file loads into Docker, podman (docker-archive) and skopeo
(oci-archive). Layers are written uncompressed, as Docker does.

``load`` reads that layout, plain OCI layout archives (``skopeo copy … oci-archive:``), and the
older docker-archive layout where every layer is ``<id>/layer.tar`` (``podman save``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from .. import faults
from ..errors import InvalidArgument
from . import oci
from .reference import Reference, parse_reference
from .store import ImageRecord, ImageStore, LayerRef

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import BinaryIO, Callable, Sequence


# ------------------------------------------------------------------------------------------- save
def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = mtime
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = mtime
    tar.addfile(info)


def save(store: ImageStore, names: Sequence[str], out: BinaryIO, *, tmp_dir: Path | None = None) -> None:
    """Write the named images (with the names given) to ``out`` as one archive."""
    from .layer import decompressed

    if not names:
        raise InvalidArgument("save requires at least one image")
    chosen: list[tuple[ImageRecord, list[Reference]]] = []
    for name in names:
        image = store.get(name)
        refs: list[Reference] = []
        try:
            ref = parse_reference(name)
            if str(ref) in image.refs and not ref.digest:
                refs.append(ref)
        except InvalidArgument:
            pass
        for entry in chosen:
            if entry[0].id == image.id:
                entry[1].extend(r for r in refs if r not in entry[1])
                break
        else:
            chosen.append((image, refs))

    mtime = 0
    index_manifests = []
    docker_manifest = []
    repositories: dict[str, dict[str, str]] = {}
    written: set[str] = set()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_dir(tar, "blobs", mtime)
        _add_dir(tar, "blobs/sha256", mtime)
        for image, refs in chosen:
            config_bytes = store.content.read_bytes(image.id)
            layer_descs = []
            for layer in image.layers:
                digest = layer["diff_id"]
                layer_descs.append(oci.descriptor(oci.OCI_LAYER, digest,
                                                  _layer_tar_size(store, layer)))
            stored = store.manifest(image)
            if (stored.get("mediaType", oci.OCI_MANIFEST) == oci.OCI_MANIFEST
                    and [l["digest"] for l in stored.get("layers", [])]
                    == [d["digest"] for d in layer_descs]):
                manifest_bytes = store.content.read_bytes(image.manifest_digest)
            else:
                manifest_bytes = oci.canonical_json(oci.new_manifest(
                    oci.descriptor(oci.OCI_CONFIG, image.id, len(config_bytes)), layer_descs))
            manifest_digest = oci.sha256_digest(manifest_bytes)
            for layer in image.layers:
                diff_id = layer["diff_id"]
                if diff_id in written:
                    continue
                written.add(diff_id)
                name = "blobs/sha256/" + diff_id.split(":", 1)[1]
                info = tarfile.TarInfo(name)
                info.mtime = mtime
                info.mode = 0o644
                if layer["digest"] == diff_id:
                    info.size = store.content.size(diff_id)
                    with store.content.open(diff_id) as f:
                        tar.addfile(info, f)
                else:
                    with tempfile.TemporaryFile(dir=tmp_dir) as tmp:
                        with store.content.open(layer["digest"]) as f:
                            shutil.copyfileobj(decompressed(f), tmp, 1 << 20)
                        info.size = tmp.tell()
                        tmp.seek(0)
                        tar.addfile(info, tmp)
            for digest, data in ((image.id, config_bytes), (manifest_digest, manifest_bytes)):
                if digest not in written:
                    written.add(digest)
                    _add_bytes(tar, "blobs/sha256/" + digest.split(":", 1)[1], data, mtime)
            desc = oci.descriptor(oci.OCI_MANIFEST, manifest_digest, len(manifest_bytes))
            if refs:
                for ref in refs:
                    index_manifests.append(dict(desc, annotations={
                        oci.ANNOTATION_IMAGE_NAME: str(ref),
                        oci.ANNOTATION_REF_NAME: ref.tag or "latest"}))
            else:
                index_manifests.append(desc)
            docker_manifest.append({
                "Config": "blobs/sha256/" + image.id.split(":", 1)[1],
                "RepoTags": [r.familiar() for r in refs] or None,
                "Layers": ["blobs/sha256/" + l["diff_id"].split(":", 1)[1] for l in image.layers],
            })
            for ref in refs:
                top = image.layers[-1]["diff_id"].split(":", 1)[1] if image.layers else ""
                repositories.setdefault(ref.familiar_name, {})[ref.tag or "latest"] = top
        index = {"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": index_manifests}
        _add_bytes(tar, "index.json", json.dumps(index).encode(), mtime)
        _add_bytes(tar, "manifest.json", json.dumps(docker_manifest).encode(), mtime)
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}', mtime)
        if repositories:
            _add_bytes(tar, "repositories", json.dumps(repositories).encode(), mtime)


def _layer_tar_size(store: ImageStore, layer: dict) -> int:
    from .layer import decompressed

    if layer["digest"] == layer["diff_id"]:
        return store.content.size(layer["digest"])
    total = 0
    with store.content.open(layer["digest"]) as f:
        stream = decompressed(f)
        while True:
            chunk = stream.read(1 << 20)
            if not chunk:
                return total
            total += len(chunk)


# ------------------------------------------------------------------------------------------- load
def _safe_extract(stream: BinaryIO, target: Path) -> None:
    """Unpack an image archive: only plain files and folders, all below ``target``."""
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        for member in tar:
            name = member.name
            while name.startswith("./"):
                name = name[2:]
            name = name.rstrip("/")
            if name in ("", "."):
                continue  # `tar -C layout -cf img.tar .` starts with "./"
            parts = Path(name).parts
            if name.startswith("/") or ".." in parts or "\0" in name:
                raise InvalidArgument(f"invalid path in image archive: {member.name}")
            dest = target.joinpath(*parts)
            if dest.exists() and not member.isdir():
                raise InvalidArgument(f"duplicate entry in image archive: {member.name}")
            if member.isdir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            if member.issym() or member.islnk():
                # old docker archives link identical layer.tar files; resolve inside the archive
                link = member.linkname
                if member.issym():
                    link = os.path.normpath(os.path.join(os.path.dirname(name), link))
                lparts = Path(link).parts
                if link.startswith("/") or ".." in lparts:
                    raise InvalidArgument(f"invalid link in image archive: {member.name}")
                src = target.joinpath(*lparts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                if src.is_file() and not src.is_symlink():
                    os.link(src, dest)
                continue
            if not member.isfile():
                raise InvalidArgument(f"unexpected entry in image archive: {member.name}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            for p in dest.parents:
                if p == target:
                    break
                if p.is_symlink():
                    raise InvalidArgument(f"invalid path in image archive: {member.name}")
            data = tar.extractfile(member)
            assert data is not None  # a regular file's member always has data
            with open(dest, "xb") as out:
                shutil.copyfileobj(data, out, 1 << 20)


def _archive_path(root: Path, rel: str) -> Path:
    parts = Path(rel).parts
    if not rel or rel.startswith("/") or ".." in parts:
        raise InvalidArgument(f"invalid path in image archive: {rel}")
    path = root.joinpath(*parts)
    if not path.is_file():
        raise InvalidArgument(f"image archive is missing {rel}")
    return path


def _blob(root: Path, digest: str) -> Path:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64:
        raise InvalidArgument(f"unsupported digest in image archive: {digest}")
    return _archive_path(root, f"blobs/sha256/{hexpart}")


def _names_for(ann: dict, repo_tags: dict[str, list[str]], config_digest: str) -> list[Reference]:
    names: list[Reference] = []
    for key in (oci.ANNOTATION_IMAGE_NAME, oci.ANNOTATION_REF_NAME):
        value = ann.get(key)
        if not value:
            continue
        try:
            ref = parse_reference(value)
        except InvalidArgument:
            continue
        # a bare tag such as "latest" parses as an image called "latest": only full names count
        if key == oci.ANNOTATION_REF_NAME and ("/" not in value and ":" not in value):
            continue
        if not ref.digest:
            names.append(ref)
            break
    for tag in repo_tags.get(config_digest, []):
        ref = parse_reference(tag)
        if ref not in names:
            names.append(ref)
    return names


def load(store: ImageStore, stream: BinaryIO, *, tmp_root: Path,
         progress: Callable[[str], None] | None = None) -> list[tuple[ImageRecord, list[Reference]]]:
    """Load every image of an archive; returns each image with the names it got."""
    from ..store.leftovers import HeldDir

    # held for as long as we use it, so a killed load's folder is told from a live one's
    held = HeldDir(tmp_root, "load")
    work = held.path
    try:
        try:
            _safe_extract(stream, work)
            faults.point("load-extracted")
        except tarfile.TarError as exc:
            raise InvalidArgument(f"not an image archive: {exc}") from exc
        except (FileExistsError, IsADirectoryError, NotADirectoryError) as exc:
            raise InvalidArgument(f"image archive has conflicting entries: {exc}") from None
        repo_tags: dict[str, list[str]] = {}
        docker_manifest = None
        if (work / "manifest.json").is_file():
            try:
                docker_manifest = json.loads((work / "manifest.json").read_text())
            except json.JSONDecodeError as exc:
                raise InvalidArgument(f"bad manifest.json in image archive: {exc}") from exc
            if not isinstance(docker_manifest, list) or not all(
                    isinstance(e, dict) and isinstance(e.get("Config"), str)
                    for e in docker_manifest):
                raise InvalidArgument("malformed manifest.json in image archive")
            for entry in docker_manifest:
                cfg = _archive_path(work, entry["Config"])
                digest = oci.sha256_digest(cfg.read_bytes())
                repo_tags[digest] = list(entry.get("RepoTags") or [])
        try:
            if (work / "index.json").is_file():
                return _load_oci(store, work, repo_tags, progress)
            if docker_manifest is not None:
                return _load_docker(store, work, docker_manifest, progress)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # a document of the wrong shape (json.JSONDecodeError is a ValueError)
            raise InvalidArgument(f"malformed image archive: {type(exc).__name__}: {exc}") \
                from None
        raise InvalidArgument("not an image archive: no index.json or manifest.json")
    finally:
        held.close()


def _ingest_blob(store: ImageStore, path: Path, digest: str, leases: list[str]) -> None:
    leases.append(digest)
    if store.content.exists(digest):
        return
    with open(path, "rb") as src, store.content.writer() as w:
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                break
            w.write(chunk)
        w.commit(expected_digest=digest, expected_size=path.stat().st_size)
    faults.point("layer-blob-written")


def _manifests_of(work: Path, index: dict) -> list[tuple[dict, bytes, dict]]:
    """Image manifests an index names, choosing the host's platform inside nested indexes."""
    found = []
    for desc in index.get("manifests", []):
        media = desc.get("mediaType", oci.OCI_MANIFEST)
        data = _blob(work, desc["digest"]).read_bytes()
        if oci.sha256_digest(data) != desc["digest"]:
            raise InvalidArgument(f"manifest {desc['digest']} does not match its digest")
        doc = json.loads(data)
        media = doc.get("mediaType", media)
        if media in oci.INDEX_TYPES or "manifests" in doc:
            plat = oci.host_platform()
            subs = [d for d in doc.get("manifests", [])
                    if d.get("platform", {}).get("architecture") == plat["architecture"]
                    and d.get("platform", {}).get("os", "linux") == "linux"]
            for sub in subs[:1]:
                sub = dict(sub, annotations={**desc.get("annotations", {}), **sub.get("annotations", {})})
                found.extend(_manifests_of(work, {"manifests": [sub]}))
            continue
        found.append((desc, data, doc))
    return found


def _load_oci(store, work, repo_tags, progress):
    index = json.loads(_archive_path(work, "index.json").read_text())
    loaded = []
    for desc, data, manifest in _manifests_of(work, index):
        with store.lease() as leases:
            config_desc = manifest["config"]
            cfg_path = _blob(work, config_desc["digest"])
            config_bytes = cfg_path.read_bytes()
            if oci.sha256_digest(config_bytes) != config_desc["digest"]:
                raise InvalidArgument(f"config {config_desc['digest']} does not match its digest")
            config = json.loads(config_bytes)
            diff_ids = config.get("rootfs", {}).get("diff_ids", [])
            if len(diff_ids) != len(manifest.get("layers", [])):
                raise InvalidArgument("image manifest and config disagree on the number of layers")
            layers = []
            for layer_desc, diff_id in zip(manifest["layers"], diff_ids):
                path = _blob(work, layer_desc["digest"])
                if path.stat().st_size != layer_desc.get("size", path.stat().st_size):
                    raise InvalidArgument(f"layer {layer_desc['digest']} has the wrong size")
                if progress:
                    progress(f"Loading layer {layer_desc['digest'][7:19]}")
                _ingest_blob(store, path, layer_desc["digest"], leases)
                layers.append(LayerRef(diff_id, layer_desc["digest"], layer_desc["size"],
                                       layer_desc.get("mediaType", oci.OCI_LAYER)))
            names = _names_for(desc.get("annotations", {}), repo_tags, config_desc["digest"])
            media = manifest.get("mediaType", desc.get("mediaType", oci.OCI_MANIFEST))
            image = store.create(config, layers, tags=names, leases=leases, manifest_bytes=data,
                                 manifest_media_type=media, config_bytes=config_bytes,
                                 action="load")
            loaded.append((image, names))
    if not loaded:
        raise InvalidArgument("image archive holds no image for this platform")
    return loaded


def _load_docker(store, work, docker_manifest, progress):
    loaded = []
    for entry in docker_manifest:
        with store.lease() as leases:
            config_bytes = _archive_path(work, entry["Config"]).read_bytes()
            config = json.loads(config_bytes)
            diff_ids = config.get("rootfs", {}).get("diff_ids", [])
            if len(diff_ids) != len(entry.get("Layers", [])):
                raise InvalidArgument("manifest.json and the image config disagree on layers")
            layers = []
            parent = None
            for rel, diff_id in zip(entry["Layers"], diff_ids):
                if progress:
                    progress(f"Loading layer {diff_id[7:19]}")
                with open(_archive_path(work, rel), "rb") as stream:
                    layer, parent = store.ingest_layer(stream, parent, leases)
                if layer.diff_id != diff_id:
                    raise InvalidArgument(f"layer {rel} does not match diff id {diff_id}")
                layers.append(layer)
            names = [parse_reference(t) for t in entry.get("RepoTags") or []]
            image = store.create(config, layers, tags=names, leases=leases,
                                 config_bytes=config_bytes, action="load")
            loaded.append((image, names))
    return loaded
