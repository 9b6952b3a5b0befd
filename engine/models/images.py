"""Images: the ``Image`` model (Docker's ``image inspect`` JSON) and its collection."""

from __future__ import annotations

from ..errors import Conflict, InvalidArgument, NotFound
from .resource import Collection, Model

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    import builtins
    from typing import Any, BinaryIO, Callable, Mapping, Sequence

    from ..image.store import ImageRecord


def images_in_use(engine) -> dict[str, list[str]]:
    """Image id -> ids of the containers (any state) that use it: what ``rmi`` and ``prune``
    may not remove."""
    return engine.containers.store.images_in_use()


class Image(Model):
    """One image. ``attrs`` is Docker's ``image inspect`` document."""

    @property
    def tags(self) -> list[str]:
        return [t for t in self.attrs.get("RepoTags") or []]

    @property
    def labels(self) -> dict[str, str]:
        return (self.attrs.get("Config") or {}).get("Labels") or {}

    def history(self) -> list[dict]:
        return self.collection.history(self.id)

    def tag(self, repository: str, tag: str | None = None) -> bool:
        target = f"{repository}:{tag}" if tag else repository
        self.collection.tag(self.id, target)
        return True


def familiar(name: str) -> str:
    from ..image.reference import parse_reference

    return parse_reference(name, default_tag=None).familiar()


class ImageCollection(Collection):
    model = Image

    @property
    def store(self):
        return self.engine.image_store

    # ------------------------------------------------------------ reading
    def _inspect(self, rec: ImageRecord) -> dict:
        from ..image import oci

        config = self.store.config(rec)
        snap = self.engine.snapshots
        lowers = [str(snap.path(layer["chain_id"])) for layer in reversed(rec.layers)]
        created = config.get("created") or oci.rfc3339(rec.created)
        return {
            "Id": rec.id,
            "RepoTags": [familiar(r) for r in rec.repo_tags],
            "RepoDigests": [familiar(r) for r in rec.repo_digests],
            "Parent": rec.parent,
            "Comment": (config.get("history") or [{}])[-1].get("comment", "") if config.get("history") else "",
            "Created": created,
            "DockerVersion": "",
            "Author": config.get("author", ""),
            "Config": config.get("config") or {},
            "Architecture": config.get("architecture", ""),
            "Variant": config.get("variant"),
            "Os": config.get("os", ""),
            "Size": rec.size,
            "GraphDriver": {"Name": "overlay", "Data": {
                "LowerDir": ":".join(lowers[1:]) if len(lowers) > 1 else None,
                "UpperDir": lowers[0] if lowers else None,
                "MergedDir": None, "WorkDir": None}},
            "RootFS": {"Type": "layers", "Layers": [l["diff_id"] for l in rec.layers]},
            "Metadata": {"LastTagTime": oci.rfc3339(rec.last_tag_time) if rec.last_tag_time
                         else "0001-01-01T00:00:00Z"},
            "Descriptor": self._descriptor(rec),
        }

    def _descriptor(self, rec: ImageRecord) -> dict:
        """The OCI descriptor of the image's manifest (Docker's ``Descriptor``), with the
        manifest's annotations: a build's provenance (see :func:`portside.engine.lock.provenance`)."""
        desc: dict = {"mediaType": rec.manifest_media_type, "digest": rec.manifest_digest}
        try:
            data = self.store.content.read_bytes(rec.manifest_digest)
        except NotFound:
            return desc
        desc["size"] = len(data)
        import json

        try:
            annotations = json.loads(data).get("annotations")
        except (ValueError, AttributeError):
            annotations = None
        if annotations:
            desc["annotations"] = annotations
        return desc

    def get(self, name: str) -> Image:
        """The image with that name, id or id prefix; raises NotFound."""
        return Image(self._inspect(self.store.get(name)), self)

    def exists(self, name: str) -> bool:
        try:
            self.store.resolve_id(name)
            return True
        except NotFound:
            return False

    def list(self, *, all: bool = False, filters: Mapping[str, list[str]] | None = None,
             name: str | None = None) -> list[Image]:
        """Images, newest first; ``filters`` as Docker's: reference, dangling, label, before, since."""
        filters = dict(filters or {})
        if name:
            filters.setdefault("reference", []).append(name)
        records = self.store.list()
        out = []
        before = since_ = None
        if filters.get("before"):
            before = self.store.get(filters["before"][0]).created
        if filters.get("since"):
            since_ = self.store.get(filters["since"][0]).created
        for rec in records:
            if "dangling" in filters:
                want = filters["dangling"][0].lower() in ("true", "1")
                if want != (not rec.repo_tags):
                    continue
            if before is not None and rec.created >= before:
                continue
            if since_ is not None and rec.created <= since_:
                continue
            image = Image(self._inspect(rec), self)
            if "label" in filters and not all_labels_match(image.labels, filters["label"]):
                continue
            if "reference" in filters:
                tags = [t for t in image.tags
                        if any(reference_matches(t, pat) for pat in filters["reference"])]
                if not tags:
                    continue
                image.attrs["RepoTags"] = tags
            out.append(image)
        return out

    def history(self, name: str) -> builtins.list[dict]:
        """The image's history, newest first, with Docker's columns."""
        from ..image import oci

        rec = self.store.get(name)
        config = self.store.config(rec)
        history = config.get("history") or []
        layers = list(rec.layers)
        sizes = []
        for entry in history:
            if entry.get("empty_layer"):
                sizes.append(0)
            else:
                layer = layers.pop(0) if layers else None
                sizes.append(self._layer_size(layer) if layer else 0)
        rows = []
        for i, entry in enumerate(reversed(history)):
            rows.append({
                "ID": rec.id if i == 0 else "<missing>",
                "Created": oci.parse_time(entry.get("created")),
                "CreatedBy": entry.get("created_by", ""),
                "Size": sizes[len(history) - 1 - i],
                "Comment": entry.get("comment", ""),
                "Tags": [familiar(r) for r in rec.repo_tags] if i == 0 else [],
            })
        return rows

    def _layer_size(self, layer: dict) -> int:
        try:
            return int(self.engine.snapshots.get(layer["chain_id"]).get("size") or 0)
        except NotFound:
            return 0

    # ------------------------------------------------------------ writing
    def import_(self, stream: BinaryIO, repository: str | None = None, *,
                changes: Sequence[str] = (), message: str = "", source: str = "-") -> Image:
        from ..image.importer import import_rootfs

        rec = import_rootfs(self.store, stream, repository=repository, changes=changes,
                            message=message, source=source)
        return self.get(rec.id)

    def bootstrap(self, what: str, *, tag: str | None = None, include: Sequence[str] = (),
                  mirror: str | None = None, log=None) -> Image:
        from ..image.bootstrap import bootstrap

        rec = bootstrap(self.store, what, tag=tag, include=list(include), mirror=mirror,
                        tmp_root=self.engine.tmp_dir, log=log)
        return self.get(rec.id)

    def tag(self, source: str, target: str) -> Image:
        return self.get(self.store.tag(source, target).id)

    def save(self, names: Sequence[str], out: BinaryIO) -> None:
        from ..image.archive import save

        save(self.store, names, out, tmp_dir=self.engine.tmp_dir)

    def load(self, stream: BinaryIO, progress: Callable[[Any], None] | None = None
             ) -> builtins.list[tuple[Image, builtins.list[str]]]:
        from ..image.archive import load

        loaded = load(self.store, stream, tmp_root=self.engine.tmp_dir, progress=progress)
        return [(self.get(rec.id), [r.familiar() for r in refs]) for rec, refs in loaded]

    # ------------------------------------------------------------ the lock (policy)
    def resolve_locked(self, name: str, locked: bool | None = None) -> str:
        """The image ``run``/``create`` must use for ``name``: itself, or the id it is pinned to
        when ``portside.lock`` is enforced (``locked``, or ``locked = true`` in it).

        Raises:
            Conflict: the lock does not pin it, or it drifted. NotFound: the pinned image is
                not here.
        """
        from ..lock import enforce, in_force

        lock = in_force(bool(locked))
        return name if lock is None else enforce(self.store, name, lock)

    def lock(self, names: Sequence[str] = (), *, path: str | None = None,
             update: bool = False, locked: bool | None = None,
             source_date_epoch: int | None = None) -> dict:
        """Pin images in ``portside.lock`` (``portside lock``); see
        :meth:`portside.engine.models.interface.ImageCollection.lock`."""
        from ..lock import lock_images

        result = lock_images(self.store, names, path=path, update=update, locked=locked,
                             source_date_epoch=source_date_epoch)
        return {"Path": str(result.path), "Locked": result.locked,
                "SourceDateEpoch": result.source_date_epoch,
                "Images": {name: {"Id": entry.id, "Source": entry.source}
                           for name, entry in sorted(result.images.items())}}

    def provenance(self, name: str) -> dict[str, str]:
        """Where an image came from: its manifest's annotations (``io.portside.source``,
        ``org.opencontainers.image.created``, ``…base.digest``, the build inputs
        ``io.portside.build.*``…) and a commit's recipe labels (``io.portside.recipe``).

        Raises:
            NotFound: no such image.
        """
        from ..lock import provenance

        return provenance(self.store, name)

    def diff(self, image_a: str, image_b: str, *, ignore: Sequence[str] = ()) -> dict:
        """Why two images differ (``image diff``): the JSON form plus ``Report``, the lines."""
        from ..image.diff import diff_images

        result = diff_images(self.store, image_a, image_b, ignore=ignore)
        return {**result.as_dict(), "Report": result.lines()}

    # ------------------------------------------------------------ builds
    def build(self, dockerfile: str | None = None, context=None, *, locked: bool | None = None,
              **kwargs):
        """Build an image (see :meth:`portside.engine.models.build.BuildCollection.build` for
        the arguments); under an enforced lock through
        :meth:`~portside.engine.models.build.BuildCollection.locked_build`."""
        from ..lock import in_force

        lock = in_force(bool(locked))
        if lock is not None:
            return self.engine.builds.locked_build(dockerfile, context, lock=lock, **kwargs)
        return self.engine.builds.build(dockerfile, context, **kwargs)

    # ------------------------------------------------------------ registries
    def _registries(self):
        from .registry import Registries

        return Registries(self.engine)

    def pull(self, name: str, platform: str | None = None, progress=None,
             tls_verify: bool | None = None, *, all_tags: bool = False,
             locked: bool | None = None):
        """Pull ``name`` (``latest`` when it has no tag); under an enforced lock, the registry
        digest it is pinned to. ``all_tags``: every tag of the repository (a list returns).

        Raises:
            Conflict: the lock does not pin it to a registry digest. RegistryError,
                Unauthorized, InvalidArgument: see :func:`portside.engine.registry.pull.pull`.
        """
        from ..lock import enforce_pull, in_force

        lock = in_force(bool(locked))
        if lock is not None:
            name = enforce_pull(name, lock)
        from ..image.reference import parse_reference

        ref = parse_reference(name, default_tag=None)
        registries = self._registries()
        if all_tags:
            if ref.tag or ref.digest:
                raise InvalidArgument("tag can't be used with --all-tags/-a")
            return [registries.pull(f"{ref.name}:{tag}", platform, progress, tls_verify)
                    for tag in registries.tags(name, tls_verify)]
        if ref.tag is None and ref.digest is None:
            name += ":latest"
        return registries.pull(name, platform, progress, tls_verify)

    def push(self, name: str, progress=None, tls_verify: bool | None = None) -> str:
        return self._registries().push(name, progress, tls_verify)

    def login(self, registry: str | None, username: str, password: str,
              tls_verify: bool | None = None) -> str:
        """Check the credentials against ``registry`` and store them: "Login Succeeded"."""
        return self._registries().login(registry, username, password, tls_verify=tls_verify)

    def logout(self, registry: str | None) -> bool:
        """Forget the stored credentials; whether there were any."""
        return self._registries().logout(registry)

    def search(self, term: str, limit: int = 25,
               filters: Mapping[str, builtins.list[str]] | None = None,
               tls_verify: bool | None = None) -> builtins.list[dict]:
        return self._registries().search(term, limit, filters, tls_verify=tls_verify)

    def get_registry_data(self, name: str, tls_verify: bool | None = None) -> dict:
        """The manifest or index ``name`` resolves to in its registry (``manifest inspect``)."""
        return self._registries().manifest_inspect(name, tls_verify=tls_verify)

    # ------------------------------------------------------------ removal
    def remove(self, name: str, *, force: bool = False, noprune: bool = False) -> builtins.list[dict]:
        """``rmi``: untag, and delete the image once no name is left. Returns Docker's
        ``[{"Untagged": ...}, {"Deleted": ...}]`` list."""
        from ..image.reference import parse_reference

        rec = self.store.get(name)
        used = images_in_use(self.engine).get(rec.id, [])
        result: list[dict] = []
        by_name = False
        try:
            ref = parse_reference(name)
            by_name = str(ref) in rec.refs
        except InvalidArgument:
            pass
        if by_name:
            if used and not force and len(rec.refs) == 1:
                raise Conflict(f"conflict: unable to remove repository reference \"{name}\" "
                               f"(must force) - container {used[0][:12]} is using its "
                               f"referenced image {rec.short_id}")
            image_id, last = self.store.untag(name)
            result.append({"Untagged": familiar(str(parse_reference(name)))})
            if last and not used:
                self.store.delete(image_id)
                result.append({"Deleted": image_id})
            return result
        if used and not force:
            raise Conflict(f"conflict: unable to delete {rec.short_id} (must be forced) - "
                           f"image is being used by container {used[0][:12]}")
        if len(rec.repo_tags) > 1 and not force:
            raise Conflict(f"conflict: unable to delete {rec.short_id} (must be forced) - "
                           f"image is referenced in multiple repositories")
        for r in rec.refs:
            self.store.untag(r)
            result.append({"Untagged": familiar(r)})
        if used:
            return result
        self.store.delete(rec.id)
        result.append({"Deleted": rec.id})
        return result

    def prune(self, *, all: bool = False,
              filters: Mapping[str, builtins.list[str]] | None = None) -> dict:
        """Remove images no container uses: untagged ones, or all of them with ``all``.

        ``filters``: Docker's ``until``, ``label`` and ``label!`` (see
        :class:`~portside.engine.models.filters.PruneFilters`), and ``dangling=true|false``.

        Returns:
            ``{"ImagesDeleted": [{"Untagged": ref} | {"Deleted": id}], "SpaceReclaimed": n}``.
        """
        from .filters import PruneFilters

        filters = dict(filters or {})
        dangling = filters.pop("dangling", None)
        if dangling:
            all = str(dangling[0] if isinstance(dangling, list) else dangling).lower() in (
                "false", "0")
        wanted = PruneFilters(filters)
        used = images_in_use(self.engine)
        deleted = []
        reclaimed = 0
        for rec in self.store.list():
            if rec.id in used:
                continue
            if not all and rec.repo_tags:
                continue
            if wanted:
                labels = (self.store.config(rec).get("config") or {}).get("Labels") or {}
                if not wanted.prunes(rec.created, labels):
                    continue
            for r in rec.refs:
                self.store.untag(r)
                deleted.append({"Untagged": familiar(r)})
            self.store.delete(rec.id)
            deleted.append({"Deleted": rec.id})
            reclaimed += rec.size
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}


def reference_matches(tag: str, pattern: str) -> bool:
    """Docker's ``reference=`` filter: a glob against ``repo:tag`` or ``repo``."""
    import fnmatch

    repo = tag.rpartition(":")[0]
    if ":" not in pattern.rsplit("/", 1)[-1]:
        return fnmatch.fnmatchcase(repo, pattern)
    return fnmatch.fnmatchcase(tag, pattern)


def all_labels_match(labels: dict[str, str], wanted: list[str]) -> bool:
    for item in wanted:
        key, eq, value = item.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True
