"""Images of a Docker Engine, answering the model API (:mod:`portside.engine.models.interface`).

``attrs`` is dockerd's ``image inspect`` document (the fields portside's own images have:
``Id``, ``RepoTags``, ``RepoDigests``, ``Created``, ``Config``, ``Size``, ``RootFS``…). Pull,
push, load, import and build report dockerd's progress as portside's typed events
(:mod:`.progress`), so the same bars and widgets draw them. What is portside's own -- the lock
file, ``image diff``, ``image bootstrap``, ``manifest inspect`` -- is refused in one line naming
the context.
"""

from __future__ import annotations

import builtins

from ..errors import InvalidArgument, NotFound
from ..models.resource import Collection, Model

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, BinaryIO, Callable, Iterator, Literal, Mapping, Sequence, overload


class Image(Model):
    """One image of the Docker Engine."""

    collection: ImageCollection

    def __init__(self, attrs: dict[str, Any], collection: Any) -> None:
        # dockerd lists an image pulled by digest only as "<none>@sha256:…"
        attrs["RepoDigests"] = [d for d in attrs.get("RepoDigests") or []
                                if not d.startswith("<none>@")]
        super().__init__(attrs, collection)

    @property
    def tags(self) -> list[str]:
        return [t for t in self.attrs.get("RepoTags") or [] if t != "<none>:<none>"]

    @property
    def labels(self) -> dict[str, str]:
        return (self.attrs.get("Config") or {}).get("Labels") or {}

    def history(self) -> builtins.list[dict[str, Any]]:
        return self.collection.history(self.id)

    def tag(self, repository: str, tag: str | None = None) -> bool:
        self.collection.tag(self.id, f"{repository}:{tag}" if tag else repository)
        return True


def _split(name: str) -> tuple[str, str | None]:
    """``repo[:tag][@digest]`` → (repository, tag or digest) as the Engine API takes them."""
    if "@" in name:
        repo, _, digest = name.partition("@")
        return repo, digest
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repo, _, tag = name.rpartition(":")
        return repo, tag
    return name, None


def _chunks(f: Any, size: int = 1 << 20) -> Iterator[bytes]:
    while True:
        data = f.read(size)
        if not data:
            return
        yield data


class ImageCollection(Collection):
    """``engine.images`` of a Docker context."""

    model = Image

    @property
    def api(self):
        return self.engine.api

    # ------------------------------------------------------------ reading
    def get(self, name: str) -> Image:
        """The image with that name, id or id prefix. Raises NotFound."""
        return Image(self.api.inspect_image(name), self)

    def exists(self, name: str) -> bool:
        try:
            self.api.inspect_image(name)
            return True
        except NotFound:
            return False

    def list(self, *, all: bool = False, filters: Mapping[str, builtins.list[str]] | None = None,
             name: str | None = None) -> builtins.list[Image]:
        """Images, newest first (dockerd's filters: reference, dangling, label, before, since)."""
        rows = self.api.images(name=name, all=all, filters=dict(filters) if filters else None)
        out = []
        for row in rows:
            try:
                image = self.get(row["Id"])
            except NotFound:
                continue
            if filters and "reference" in filters:
                image.attrs["RepoTags"] = [t for t in row.get("RepoTags") or []
                                           if t != "<none>:<none>"]
            out.append(image)
        return out

    def history(self, name: str) -> builtins.list[dict[str, Any]]:
        """The image's history, newest first, with the embedded engine's row keys."""
        tags = self.get(name).tags
        rows = []
        for i, entry in enumerate(self.api.history(name)):
            ident = entry.get("Id") or "<missing>"
            rows.append({"ID": ident, "Created": float(entry.get("Created") or 0),
                         "CreatedBy": entry.get("CreatedBy", ""),
                         "Size": int(entry.get("Size") or 0),
                         "Comment": entry.get("Comment", ""),
                         "Tags": list(entry.get("Tags") or (tags if i == 0 else []))})
        return rows

    # ------------------------------------------------------------ writing
    def tag(self, source: str, target: str) -> Image:
        repo, tag = _split(target)
        if tag is not None and tag.startswith("sha256:"):
            raise InvalidArgument(f"refusing to create a tag with a digest reference: {target}")
        self.api.tag(source, repo, tag or "latest")
        return self.get(f"{repo}:{tag or 'latest'}")

    def save(self, names: Sequence[str], out: BinaryIO) -> None:
        """Docker's archive of ``names`` (dockerd's ``/images/get``) written to ``out``."""
        from .errors import guarded_call, guarded_stream

        engine = self.engine
        client = engine.client
        for name in names:
            self.api.inspect_image(name)  # a missing one fails before any byte is written

        def request():
            res = client._get(client._url("/images/get"), params={"names": list(names)},
                              stream=True)
            client._raise_for_status(res)
            return res

        res = guarded_call(engine, request)
        try:
            for chunk in guarded_stream(engine, iter(lambda: res.raw.read(1 << 20), b"")):
                out.write(chunk)
        finally:
            res.close()

    def load(self, stream: BinaryIO, progress: Callable[[Any], None] | None = None
             ) -> builtins.list[tuple[Image, builtins.list[str]]]:
        """Load a ``docker save`` / OCI archive into dockerd; returns each image with its names.

        Raises:
            InvalidArgument: dockerd could not read the archive.
        """
        from .progress import follow_transfer

        lines = follow_transfer(self.api.load_image(_chunks(stream), quiet=False), progress,
                                on_error=lambda m: InvalidArgument(f"load: {m}"))
        names: builtins.list[str] = []
        ids: builtins.list[str] = []
        for doc in lines:
            for line in str(doc.get("stream") or "").splitlines():
                if line.startswith("Loaded image: "):
                    names.append(line.split(": ", 1)[1].strip())
                elif line.startswith("Loaded image ID: "):
                    ids.append(line.split(": ", 1)[1].strip())
        loaded: dict[str, tuple[Image, builtins.list[str]]] = {}
        for ref in names + ids:
            image = self.get(ref)
            entry = loaded.setdefault(image.id, (image, []))
            if ref in names:
                entry[1].append(ref)
        return list(loaded.values())

    def import_(self, stream: BinaryIO, repository: str | None = None, *,
                changes: Sequence[str] = (), message: str = "", source: str = "-") -> Image:
        """``docker import``: a root filesystem tar as a one-layer image."""
        from .errors import guarded_call
        from .progress import follow_transfer

        engine = self.engine
        client = engine.client
        repo, tag = _split(repository) if repository else (None, None)
        params: dict[str, Any] = {"fromSrc": "-", "repo": repo, "tag": tag,
                                  "message": message or None, "changes": list(changes) or None}

        def request():
            res = client._post(client._url("/images/create"), data=_chunks(stream),
                               params={k: v for k, v in params.items() if v is not None},
                               headers={"Content-Type": "application/tar"}, stream=True)
            return client._stream_helper(res, decode=True)

        lines = follow_transfer(guarded_call(engine, request), None,
                                on_error=lambda m: InvalidArgument(f"import: {m}"))
        ident = next((d["status"] for d in reversed(lines)
                      if str(d.get("status", "")).startswith("sha256:")), None)
        if ident is None:
            raise InvalidArgument("import: dockerd did not say which image it made")
        return self.get(ident)

    def bootstrap(self, what: str, *, tag: str | None = None, include: Sequence[str] = (),
                  mirror: str | None = None) -> Image:
        raise self.engine.unsupported(
            "image bootstrap", f"bootstrap in the default context, then portside image copy "
            f"--from default --to {self.engine.context} IMAGE")

    # ------------------------------------------------------------ builds
    def build(self, dockerfile: str | None = None, context: str | BinaryIO | bytes | None = None,
              *, dockerfile_path: str | None = None, tags: Sequence[str] = (),
              build_args: Mapping[str, str] | None = None, target: str | None = None,
              no_cache: bool = False, labels: Mapping[str, str] | None = None,
              progress: Callable[[Any], None] | None = None,
              source_date_epoch: int | None = None, platform: str | None = None,
              ignore_source_date_epoch: bool = False, locked: bool | None = None) -> Image:
        """Build with dockerd's builder (see :func:`.build.build`); under the lock (``locked``,
        or ``locked = true`` in portside.lock) refused, as are reproducible timestamps."""
        from .build import build
        from .containers import _refuse_lock

        _refuse_lock(self.engine, locked)
        return build(self.engine, dockerfile, context, dockerfile_path=dockerfile_path,
                     tags=tags, build_args=build_args, target=target, no_cache=no_cache,
                     labels=labels, progress=progress, source_date_epoch=source_date_epoch,
                     platform=platform, ignore_source_date_epoch=ignore_source_date_epoch)

    # ------------------------------------------------------------ portside's own
    def lock(self, names: Sequence[str] = (), *, path: str | None = None, update: bool = False,
             locked: bool | None = None, source_date_epoch: int | None = None
             ) -> dict[str, Any]:
        raise self.engine.unsupported("lock", "the lock pins images of the default context")

    def provenance(self, name: str) -> dict[str, str]:
        """Where an image came from, as far as dockerd keeps it: its provenance labels
        (``io.portside.source``, ``org.opencontainers.image.*``); dockerd keeps no manifest
        annotations."""
        labels = self.get(name).labels
        return {k: v for k, v in sorted(labels.items())
                if k.startswith(("io.portside.", "org.opencontainers.image."))}

    def diff(self, image_a: str, image_b: str, *, ignore: Sequence[str] = ()) -> dict[str, Any]:
        raise self.engine.unsupported("image diff", "copy both images to the default context "
                                                    "(portside image copy) and compare there")

    # ------------------------------------------------------------ registries
    if TYPE_CHECKING:
        @overload
        def pull(self, name: str, *, platform: str | None = None,
                 progress: Callable[[Any], None] | None = None, tls_verify: bool | None = None,
                 all_tags: Literal[False] = False, locked: bool | None = None) -> Image: ...

        @overload
        def pull(self, name: str, *, platform: str | None = None,
                 progress: Callable[[Any], None] | None = None, tls_verify: bool | None = None,
                 all_tags: Literal[True], locked: bool | None = None) -> builtins.list[Image]: ...

    def pull(self, name: str, *, platform: str | None = None,
             progress: Callable[[Any], None] | None = None, tls_verify: bool | None = None,
             all_tags: bool = False, locked: bool | None = None
             ) -> Image | builtins.list[Image]:
        """dockerd pulls ``name`` (``latest`` when it has no tag; its own registry settings
        apply); returns the Image (``all_tags``: every tag of the repository, a list)."""
        from .containers import _refuse_lock
        from .progress import follow_transfer

        _refuse_lock(self.engine, locked)
        _no_tls_override(self.engine, tls_verify)
        repo, tag = _split(name)
        if all_tags and tag is not None:
            raise InvalidArgument("tag can't be used with --all-tags/-a")
        self._reload_auth()
        follow_transfer(self.api.pull(repo, None if all_tags else (tag or "latest"),
                                      all_tags=all_tags, stream=True, decode=True,
                                      platform=platform), progress)
        if all_tags:
            return self.list(filters={"reference": [repo]})
        return self.get(name if tag else f"{repo}:latest")

    def push(self, name: str, *, progress: Callable[[Any], None] | None = None,
             tls_verify: bool | None = None) -> str:
        """dockerd pushes ``name``; returns the pushed manifest's digest."""
        from .progress import follow_transfer

        _no_tls_override(self.engine, tls_verify)
        self.get(name)
        repo, tag = _split(name)
        self._reload_auth()
        lines = follow_transfer(self.api.push(repo, tag, stream=True, decode=True), progress)
        for doc in lines:
            aux = doc.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                return aux["Digest"]
        return ""

    def _reload_auth(self) -> None:
        """Credentials as they are now in Docker's config.json (a login since start-up)."""
        self.engine.client.reload_config()

    def login(self, registry: str | None, username: str, password: str,
              tls_verify: bool | None = None) -> str:
        """dockerd checks the credentials against ``registry``; they are stored as portside's
        login stores them (Docker's ``config.json``)."""
        from ..models.registry import _domain
        from ..registry.credentials import CredentialStore, Credentials

        if not username or not password:
            raise InvalidArgument("username and password are required")
        _no_tls_override(self.engine, tls_verify)
        domain = _domain(registry) or "docker.io"
        self.api.login(username, password=password, registry=registry or None, reauth=True)
        CredentialStore().store(domain, Credentials(username, password))
        return "Login Succeeded"

    def logout(self, registry: str | None) -> bool:
        from ..models.registry import Registries

        return Registries(None).logout(registry)

    def search(self, term: str, limit: int = 25,
               filters: Mapping[str, builtins.list[str]] | None = None,
               tls_verify: bool | None = None) -> builtins.list[dict[str, Any]]:
        """dockerd's search (``docker search``'s rows)."""
        _no_tls_override(self.engine, tls_verify)
        client = self.engine.client
        params: dict[str, Any] = {"term": term, "limit": limit}
        if filters:
            import json

            params["filters"] = json.dumps(filters)
        from .errors import guarded_call

        return guarded_call(self.engine, lambda: client._result(
            client._get(client._url("/images/search"), params=params), True))

    def get_registry_data(self, name: str, tls_verify: bool | None = None) -> dict[str, Any]:
        """Docker's CLI asks the registry itself; dockerd's API has only a descriptor."""
        raise self.engine.unsupported(
            "manifest inspect", "dockerd answers with a descriptor only; run it in the default "
            "context, which asks the registry directly")

    # ------------------------------------------------------------ removal
    def remove(self, name: str, *, force: bool = False, noprune: bool = False
               ) -> builtins.list[dict[str, str]]:
        """``rmi``: Docker's ``[{"Untagged": …}, {"Deleted": …}]``."""
        return list(self.api.remove_image(name, force=force, noprune=noprune) or [])

    def prune(self, *, all: bool = False,
              filters: Mapping[str, builtins.list[str]] | None = None) -> dict[str, Any]:
        merged = dict(filters or {})
        merged["dangling"] = ["false" if all else "true"]
        result = self.api.prune_images(filters=merged)
        return {"ImagesDeleted": result.get("ImagesDeleted") or None,
                "SpaceReclaimed": result.get("SpaceReclaimed") or 0}


def _no_tls_override(engine: Any, tls_verify: bool | None) -> None:
    if tls_verify is False:
        raise engine.unsupported("--tls-verify=false", "dockerd decides: list the registry "
                                                       "in its insecure-registries")
