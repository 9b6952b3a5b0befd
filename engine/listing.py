"""Docker's listing rows, made from what the model API returns: ``ps``, ``images``, ``volume ls``,
``network ls``.

A row is a dict with Docker's ``--format`` field names (``{{.ID}}``, ``{{.Names}}``,
``{{.CreatedSince}}``...): what ``portside ps --format json`` prints, one per line, what the
default table shows, and what the side panel's REST API answers (plus a few fields of its own).
Both fronts make them here, from plain model data -- a container's ``/containers/json`` summary,
an image's inspect document, a volume's or network's -- so they cannot disagree, and no front
reads an engine's records to make them.
"""

from __future__ import annotations

import shlex
import time

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Iterable


def _command_text(argv: list[str], trunc: bool) -> str:
    text = " ".join(argv) if trunc else " ".join(shlex.quote(a) if " " in a else a for a in argv)
    if trunc and len(text) > 20:
        text = text[:19] + "…"
    return f'"{text}"'


def ports_text(ports: Iterable[dict[str, Any]]) -> str:
    """``0.0.0.0:8080->80/tcp, 443/tcp`` from a summary's ``Ports``."""
    parts = []
    for p in ports:
        if "IP" in p:
            public = p.get("PublicPort")
            parts.append(f"{p['IP']}:{'' if public is None else public}->"
                         f"{p['PrivatePort']}/{p['Type']}")
        else:
            parts.append(f"{p['PrivatePort']}/{p['Type']}")
    return ", ".join(parts)


def ps_row(summary: dict[str, Any], *, no_trunc: bool = False, now: float | None = None
           ) -> dict[str, Any]:
    """``ps``'s row for a container's ``/containers/json`` summary (``list(sparse=True)``)."""
    from .image.oci import rfc3339
    from .units import human_duration, human_size

    now = time.time() if now is None else now
    created = float(summary["Created"])
    argv = ([summary["Path"]] if summary.get("Path") else []) + list(summary.get("Args") or [])
    labels = summary.get("Labels") or {}
    mounts = summary.get("Mounts") or []
    networks = (summary.get("NetworkSettings") or {}).get("Networks") or {}
    ident = summary["Id"]
    return {
        "ID": ident if no_trunc else ident[:12],
        "Image": summary["Image"],
        "Command": _command_text(argv, not no_trunc),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(created)),
        "RunningFor": human_duration(now - created) + " ago",
        "Status": summary["Status"],
        "State": summary["State"],
        "Ports": ports_text(summary.get("Ports") or []),
        "Names": summary["Names"][0].lstrip("/"),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "Mounts": ",".join(m.get("Name") or m.get("Source", "") for m in mounts),
        "Networks": ",".join(networks) or (summary.get("HostConfig") or {}).get("NetworkMode", ""),
        "GPUs": ",".join(summary.get("GPUs") or []),
        "LocalVolumes": str(sum(1 for m in mounts if m.get("Type") == "volume")),
        "Size": human_size(summary["SizeRw"]) if "SizeRw" in summary else "",
        "Created": rfc3339(created),
    }


def image_rows(images: Iterable[Any]) -> list[dict[str, Any]]:
    """``images``'s rows: one per (repository, tag) of each image, with Docker's field names
    (``Size`` in bytes; the CLI prints it human-sized)."""
    from .image import oci
    from .units import since

    rows = []
    for image in images:
        attrs = image.attrs
        pairs = []
        for tag in image.tags:
            repo, _, t = tag.rpartition(":")
            pairs.append((repo, t))
        if not pairs:
            if attrs["RepoDigests"]:
                pairs = [(d.split("@")[0], "<none>") for d in attrs["RepoDigests"][:1]]
            else:
                pairs = [("<none>", "<none>")]
        created = oci.parse_time(attrs["Created"])
        # a build given SOURCE_DATE_EPOCH (a notebook's portside.lock) has that creation time:
        # say so, or "2 weeks ago" reads as a stale image
        # (recorded in the manifest's annotations with the rest of a build's provenance)
        annotations = (attrs.get("Descriptor") or {}).get("annotations") or {}
        pinned = "io.portside.build.source-date-epoch" in annotations
        for repo, tag in pairs:
            digest = "<none>"
            for d in attrs["RepoDigests"]:
                if d.split("@")[0] == repo:
                    digest = d.split("@", 1)[1]
            rows.append({
                "ID": image.short_id, "FullID": image.id, "Repository": repo, "Tag": tag,
                "Digest": digest,
                "CreatedSince": since(created) + (" (pinned)" if pinned else ""),
                "CreatedAt": oci.rfc3339(created), "Size": attrs["Size"],
                "Containers": "N/A", "SharedSize": "N/A", "UniqueSize": "N/A",
                "VirtualSize": attrs["Size"], "Labels": image.labels,
            })
    return rows


def volume_row(volume: Any) -> dict[str, Any]:
    """``volume ls``'s row."""
    attrs = volume.attrs
    labels = attrs.get("Labels") or {}
    return {"Name": volume.name, "Driver": attrs["Driver"], "Scope": attrs["Scope"],
            "Mountpoint": attrs["Mountpoint"], "CreatedAt": attrs["CreatedAt"],
            "Labels": ",".join(f"{k}={val}" for k, val in sorted(labels.items())),
            "Links": "N/A", "Size": "N/A"}


def network_row(network: Any, *, no_trunc: bool = False) -> dict[str, Any]:
    """``network ls``'s row."""
    attrs = network.attrs
    return {"ID": network.id if no_trunc else network.id[:12], "Name": network.name,
            "Driver": attrs["Driver"], "Scope": attrs.get("Scope", "local"),
            "Internal": attrs.get("Internal", False), "Labels": attrs.get("Labels") or {}}
