"""OCI image documents: media types, descriptors, manifests, indexes and image configs.

An image is a *manifest* (JSON) that points at a *config* (JSON: platform, runtime defaults, the
``rootfs.diff_ids`` of its layers and a ``history``) and at its *layers* (tar archives, possibly
compressed). Each is addressed by the sha256 digest of its bytes, so the documents are serialised
once, deterministically (:func:`canonical_json`), and their digests never change afterwards.

The image id, as Docker shows it, is the digest of the config.
"""

from __future__ import annotations

import datetime as _dt
import json
import os

from ..hashing import sha256 as _sha256

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
LAYER_TYPES = (OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, DOCKER_LAYER, DOCKER_LAYER_GZIP)

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"

_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
           "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
           "i686": "386", "i386": "386"}


def host_platform() -> dict[str, str]:
    """The host's platform in OCI terms (``{"os": "linux", "architecture": "amd64"}``)."""
    machine = os.uname().machine.lower()
    plat = {"os": "linux", "architecture": _GOARCH.get(machine, machine)}
    if machine.startswith("armv7"):
        plat["variant"] = "v7"
    elif plat["architecture"] == "arm64":
        plat["variant"] = "v8"
    return plat


def canonical_json(doc: Any) -> bytes:
    """Serialise a document once, compactly and with sorted keys, for a stable digest."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + _sha256(data).hexdigest()


def descriptor(media_type: str, digest: str, size: int, **extra: Any) -> dict[str, Any]:
    desc = {"mediaType": media_type, "digest": digest, "size": size}
    desc.update({k: v for k, v in extra.items() if v})
    return desc


def rfc3339(ts: float | None = None) -> str:
    """A UTC timestamp as Go prints ``time.RFC3339Nano`` (trailing zeros trimmed)."""
    if ts is None:
        ts = _dt.datetime.now(_dt.timezone.utc).timestamp()
    when = _dt.datetime.fromtimestamp(ts, _dt.timezone.utc)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{when.microsecond:06d}".rstrip("0")
    return text + ("." + frac if frac else "") + "Z"


def parse_time(text: str | None) -> float:
    """Parse an RFC 3339 timestamp (nanoseconds allowed) into seconds since the epoch; 0 if absent."""
    if not text:
        return 0.0
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    main, _, rest = text.partition(".")
    frac = ""
    tz = ""
    if rest:
        i = 0
        while i < len(rest) and rest[i].isdigit():
            i += 1
        frac, tz = rest[:i], rest[i:]
    else:
        for sign in ("+", "-"):
            pos = main.rfind(sign, 10)
            if pos > 0:
                main, tz = main[:pos], main[pos:]
                break
    try:
        when = _dt.datetime.fromisoformat(main + (tz or "+00:00"))
    except ValueError:
        return 0.0
    return when.timestamp() + (float("0." + frac) if frac else 0.0)


def new_config(*, diff_ids: list[str], history: list[dict], config: dict | None = None,
               created: float | None = None, author: str | None = None,
               platform_: dict | None = None) -> dict[str, Any]:
    """An OCI image config for the given layers, on the host's platform unless told otherwise."""
    plat = platform_ or host_platform()
    doc: dict[str, Any] = {
        "created": rfc3339(created),
        "architecture": plat["architecture"],
        "os": plat["os"],
        "config": config or {},
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": history,
    }
    if plat.get("variant"):
        doc["variant"] = plat["variant"]
    if author:
        doc["author"] = author
    return doc


def new_manifest(config_desc: dict, layer_descs: list[dict],
                 annotations: dict[str, str] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": layer_descs,
    }
    if annotations:
        doc["annotations"] = annotations
    return doc


def layer_media_type_for(compression: str | None, docker: bool = False) -> str:
    if docker:
        return DOCKER_LAYER_GZIP if compression == "gzip" else DOCKER_LAYER
    return {None: OCI_LAYER, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}[compression]


def empty_layer_history(created_by: str, created: float | None = None, comment: str = "") -> dict:
    entry = {"created": rfc3339(created), "created_by": created_by, "empty_layer": True}
    if comment:
        entry["comment"] = comment
    return entry
