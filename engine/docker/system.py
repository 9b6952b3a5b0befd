"""``info``, ``version``, ``system df``, ``events`` and ``system prune`` of a Docker Engine.

``events`` follows dockerd's events API (``GET /events``) and yields its documents, Docker's
``events --format json`` shape, as the embedded engine's event log is read, so the CLI and the
side panel's live updates read either the same way. ``system check`` verifies portside's own
store and has no meaning for dockerd's: it raises ``Unsupported``.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, BinaryIO, Callable, Iterator, Mapping, Sequence


class System:
    """``engine.system`` of a Docker context."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def info(self) -> dict[str, Any]:
        """dockerd's ``info`` document, with the context it came through."""
        data = dict(self.engine.api.info())
        data["Context"] = self.engine.context
        return data

    def version(self) -> dict[str, Any]:
        """``{"Client": portside, "Server": dockerd's version document}``."""
        import platform

        from .. import __version__
        from ..image import oci

        server = dict(self.engine.api.version())
        server.setdefault("Engine", f"Docker Engine ({self.engine.context})")
        return {"Client": {"Version": __version__, "ApiVersion": self.engine.client.api_version,
                           "PythonVersion": platform.python_version(), "Os": "linux",
                           "Arch": oci.host_platform()["architecture"],
                           "Context": self.engine.context},
                "Server": server}

    def df(self) -> list[dict[str, Any]]:
        """Docker's ``system df`` rows: images, containers, local volumes, build cache."""
        data = self.engine.api.df()
        images = data.get("Images") or []
        used_images = [i for i in images if (i.get("Containers") or 0) > 0]
        layers = int(data.get("LayersSize") or 0)
        in_use = sum(max(int(i.get("Size") or 0) - max(int(i.get("SharedSize") or 0), 0), 0)
                     for i in used_images)
        rows = [{"Type": "Images", "TotalCount": len(images), "Active": len(used_images),
                 "Size": layers, "Reclaimable": max(layers - in_use, 0)}]
        containers = data.get("Containers") or []
        running = [c for c in containers if c.get("State") in ("running", "paused")]
        sizes = {c["Id"]: int(c.get("SizeRw") or 0) for c in containers}
        rows.append({"Type": "Containers", "TotalCount": len(containers),
                     "Active": len(running), "Size": sum(sizes.values()),
                     "Reclaimable": sum(sizes.values()) - sum(sizes[c["Id"]] for c in running)})
        volumes = data.get("Volumes") or []
        usage = [(v.get("UsageData") or {}) for v in volumes]
        vol_size = sum(max(int(u.get("Size") or 0), 0) for u in usage)
        rows.append({"Type": "Local Volumes", "TotalCount": len(volumes),
                     "Active": sum(1 for u in usage if (u.get("RefCount") or 0) > 0),
                     "Size": vol_size,
                     "Reclaimable": sum(max(int(u.get("Size") or 0), 0) for u in usage
                                        if not u.get("RefCount"))})
        cache = data.get("BuildCache") or []
        cache_size = sum(int(c.get("Size") or 0) for c in cache)
        rows.append({"Type": "Build Cache", "TotalCount": len(cache),
                     "Active": sum(1 for c in cache if c.get("InUse")), "Size": cache_size,
                     "Reclaimable": sum(int(c.get("Size") or 0) for c in cache
                                        if not c.get("InUse"))})
        return rows

    def check(self, *, repair: bool = False) -> dict[str, list[str]]:
        raise self.engine.unsupported("system check", "it verifies portside's own store; "
                                                      "dockerd keeps its own")

    def reset(self) -> dict[str, Any]:
        raise self.engine.unsupported("system reset", "it empties portside's own store; "
                                                      "dockerd's is Docker's to manage")

    def migrate(self) -> dict[str, Any]:
        raise self.engine.unsupported("system migrate", "it concerns portside's rootless "
                                                        "namespaces")

    def unshare(self, argv: Sequence[str], *, stdin: BinaryIO | None = None,
                stdout: BinaryIO | None = None, stderr: BinaryIO | None = None) -> int:
        from ..errors import InvalidArgument

        raise InvalidArgument(f'unshare: context "{self.engine.context}" is a Docker Engine: '
                              "there is no user namespace of portside's to enter")

    def prune(self, *, all: bool = False, volumes: bool = False,
              filters: Mapping[str, list[str]] | None = None) -> dict:
        """``system prune``, as Docker's CLI makes it of dockerd's prunes, in its order:
        stopped containers, unused networks, (``volumes``) unused anonymous volumes, dangling
        (``all``: unused) images, the build cache; ``filters`` given to each. The shape of
        :meth:`portside.engine.models.interface.System.prune`."""
        from ..errors import InvalidArgument

        wanted = {k: list(v) if not isinstance(v, str) else [v]
                  for k, v in (filters or {}).items()}
        if volumes and "until" in wanted:
            raise InvalidArgument('The "until" filter is not supported with "--volumes"')
        engine = self.engine
        parts = [("ContainersDeleted", lambda: engine.containers.prune(filters=wanted)),
                 ("NetworksDeleted", lambda: engine.networks.prune(filters=wanted))]
        if volumes:
            parts.append(("VolumesDeleted", lambda: engine.volumes.prune(filters=wanted)))
        parts += [("ImagesDeleted", lambda: engine.images.prune(all=all, filters=wanted)),
                  ("CachesDeleted", lambda: engine.builds.prune(all, filters=wanted))]
        out: dict = {"ContainersDeleted": [], "NetworksDeleted": [], "VolumesDeleted": [],
                     "ImagesDeleted": [], "CachesDeleted": [], "SpaceReclaimed": 0}
        for key, prune in parts:
            report = prune()
            out[key] = list(report.get(key) or [])
            out["SpaceReclaimed"] += int(report.get("SpaceReclaimed") or 0)
        return out

    def events(self, *, since: float | None = None, until: float | None = None,
               filters: Mapping[str, list[str]] | None = None, follow: bool = False,
               stop: Callable[[], bool] | None = None) -> Iterator[dict[str, Any]]:
        """dockerd's events, Docker's ``events --format json`` documents, oldest first: those
        between ``since`` and ``until`` (default: now, or with ``follow`` until ``stop()`` is
        true or the iterator is closed)."""
        from .errors import guarded_call, guarded_stream

        engine = self.engine
        client = engine.client
        if until is None and not follow:
            until = time.time()
        params: dict[str, Any] = {}
        if since is not None:
            params["since"] = f"{since:.9f}"
        elif not follow:
            return  # nothing asked for: no events before now are wanted
        if until is not None:
            params["until"] = f"{until:.9f}"
        if filters:
            import json

            params["filters"] = json.dumps(filters)

        def request():
            res = client._get(client._url("/events"), params=params, stream=True, timeout=None)
            client._raise_for_status(res)
            return res

        res = guarded_call(engine, request)
        stopped = None
        if stop is not None:
            from .streams import close_when

            stopped = close_when(stop, res)

        def docs() -> Iterator[Any]:
            from docker.utils.json_stream import json_stream

            try:
                yield from json_stream(client._stream_helper(res, decode=False))
            except Exception:  # noqa: BLE001 - a stream cut by ``stop`` ends quietly
                if stopped is None or not stopped.is_set():
                    raise
            finally:
                res.close()

        for doc in guarded_stream(engine, docs()):
            actor = doc.get("Actor") or {}
            when = doc.get("timeNano") or int(float(doc.get("time") or time.time()) * 1e9)
            yield {"Type": doc.get("Type") or "",
                   "Action": doc.get("Action") or doc.get("status") or "",
                   "Actor": {"ID": actor.get("ID") or doc.get("id") or "",
                             "Attributes": dict(actor.get("Attributes") or {})},
                   "scope": doc.get("scope", "local"), "time": int(when // 10**9),
                   "timeNano": int(when), "id": actor.get("ID") or doc.get("id") or ""}

