"""Builds: ``engine.builds.build(...)`` turns a Dockerfile and a context into an :class:`Image`.

The collection is the one entry point the CLI (``portside build``), the notebook magics and the
REST API share::

    image = engine.builds.build(context=Path("proj"), tags=["proj:dev"],
                                build_args={"PY": "3.12"}, progress=print)
    engine.builds.prune(all=True)          # builder prune -a

Progress is a callable receiving the typed events of :mod:`portside.engine.builder.progress`.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from ..errors import Conflict, InvalidArgument, NotFound
from .resource import Collection

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    import builtins
    from typing import Any, BinaryIO, Callable, Iterable, Mapping


class BuildCollection(Collection):
    """Image builds and the build cache of one engine root."""

    def build(self, dockerfile: str | None = None, context: Path | str | BinaryIO | None = None,
              *, dockerfile_path: str | os.PathLike | None = None, tags: Iterable[str] = (),
              build_args: Mapping[str, str] | None = None, target: str | None = None,
              no_cache: bool = False, labels: Mapping[str, str] | None = None,
              progress: Callable[[Any], None] | None = None,
              source_date_epoch: int | None = None, platform: str | None = None,
              ignore_source_date_epoch: bool = False):
        """Build an image.

        Args:
            dockerfile: the Dockerfile's text; when None it is read from ``dockerfile_path``
                or ``Dockerfile`` in the context.
            context: a directory, a binary stream of a tar archive (``docker build -``), or
                None for no context (COPY then finds nothing).
            dockerfile_path: the Dockerfile's path (absolute, or relative to the context).
            tags: names for the image (``name:tag``).
            build_args: ``--build-arg`` values.
            target: the stage to build (default: the last).
            no_cache: run every step even when a cached result exists.
            labels: labels added to the image.
            progress: receives progress events.
            source_date_epoch: timestamps for reproducible images (``SOURCE_DATE_EPOCH``).
            platform: target platform for ``TARGETPLATFORM`` & co (``linux/amd64``).
            ignore_source_date_epoch: do not take ``$SOURCE_DATE_EPOCH`` (use the time now).

        Returns:
            The new :class:`~portside.engine.models.images.Image`.

        Raises:
            DockerfileError, NotFound, InvalidArgument, BuildError: see
            :meth:`portside.engine.builder.builder.Builder.build`.
        """
        from ..builder.builder import Builder, BuildOptions

        engine = self.engine
        ctx = self._context(context, dockerfile_path)
        try:
            if dockerfile is None:
                dockerfile = self._read_dockerfile(ctx, dockerfile_path)
            if source_date_epoch is None and os.environ.get("SOURCE_DATE_EPOCH") \
                    and not ignore_source_date_epoch:
                try:
                    source_date_epoch = int(os.environ["SOURCE_DATE_EPOCH"])
                except ValueError:
                    raise InvalidArgument("SOURCE_DATE_EPOCH must be an integer") from None
            options = BuildOptions(build_args=dict(build_args or {}), target=target,
                                   tags=list(tags), labels=dict(labels or {}),
                                   no_cache=no_cache, source_date_epoch=source_date_epoch,
                                   platform=platform)
            memo = None
            if isinstance(context, (str, os.PathLike)):
                # taken before the build reads anything: a file edited meanwhile changes the key
                from ..builder.memo import fingerprint

                memo = fingerprint(
                    dockerfile=dockerfile, context=os.fspath(context), tags=list(tags),
                    build_args=options.build_args, target=target, labels=options.labels,
                    platform=platform, source_date_epoch=source_date_epoch,
                    dockerfile_path=None if dockerfile_path is None else str(dockerfile_path))
            events: list = []

            def sink(event) -> None:
                events.append(event)
                if progress is not None:
                    progress(event)

            def pull_base(name: str, platform: str | None) -> str:
                return engine.images.pull(name, platform=platform).id

            builder = Builder(engine.image_store, engine.root, pull_base=pull_base,
                              progress=sink)
            record = builder.build(dockerfile, ctx, options)
        finally:
            ctx.close()
        if memo is not None and not builder.volatile:
            self._remember(memo, record.id, list(tags), builder.bases, events,
                           builder.layer_steps)
        return engine.images.get(record.id)

    def locked_build(self, dockerfile: str | None, context: Any = None, *, lock: Any,
                     tags: Iterable[str] = (), build_args: Mapping[str, str] | None = None,
                     source_date_epoch: int | None = None,
                     dockerfile_path: str | os.PathLike | None = None, **kwargs: Any):
        """Build under an enforced ``lock`` (a :class:`~portside.engine.lock.LockFile`): the
        inputs are checked against it before building, the context and the result after; the
        tags move only when everything matches.

        Returns:
            The image (:class:`~portside.engine.models.images.Image`).

        Raises:
            InvalidArgument: no tag to look up in the lock.
            Conflict: an input drifted, or the same inputs gave another image (the message names
                the first differing layer and the step that made it).
        """
        from ..image.diff import diff_images
        from ..lock import (BuildInputs, check_build, dockerfile_digest, provenance,
                            short_digest)

        tags = list(tags)
        if not tags:
            raise InvalidArgument("a locked build needs a tag (-t NAME:TAG) to look up in the "
                                  "lock")
        if dockerfile is None:
            ctx = self._context(context, dockerfile_path)
            try:
                dockerfile = self._read_dockerfile(ctx, dockerfile_path)
            finally:
                ctx.close()
        sde = source_date_epoch if source_date_epoch is not None else lock.source_date_epoch
        args = dict(build_args or {})
        entries = [check_build(lock, t, BuildInputs(dockerfile_digest(dockerfile), None, args,
                                                    sde)) for t in tags]
        image = self.build(dockerfile, context, tags=(), build_args=args, source_date_epoch=sde,
                           dockerfile_path=dockerfile_path, **kwargs)
        got = BuildInputs.from_provenance(provenance(self.engine.image_store, image.id))
        images = self.engine.images
        for tag, entry in zip(tags, entries):
            if got is not None:
                check_build(lock, tag, got)
            if image.id != entry.id:
                why = ""
                if images.exists(entry.id):
                    d = diff_images(self.engine.image_store, entry.id, image.id)
                    if d.layer_b is not None:
                        why = f": layer #{d.first_layer} differs ({d.layer_b.created_by})"
                raise Conflict(f"{lock.path.name} pins {entry.name} to {short_digest(entry.id)}, "
                               f"but the same inputs built {short_digest(image.id)}{why}")
        for tag in tags:
            images.tag(image.id, tag)
        return images.get(image.id)

    def _remember(self, memo: tuple[str, dict[str, str]], image_id: str, tags: list[str], bases,
                  events, layer_steps: set[int]) -> None:
        """Record a finished build in the memo (see :mod:`portside.engine.builder.memo`), with the
        events a rebuild would show: every step that looks up the step cache comes from it (the
        build just filled it), so it is CACHED, with no output and no time."""
        from ..builder.memo import record as remember
        from ..builder.progress import BuildDone, BuildStep, StepCached, StepDone, StepLog, \
            event_dict
        from ..image.reference import parse_reference

        shown = []
        for event in events:
            if isinstance(event, (StepLog, StepCached, BuildDone)):
                continue
            if isinstance(event, StepDone):
                event = StepDone(event.id, 0.0)
            shown.append(event_dict(event))
            if isinstance(event, BuildStep) and event.id in layer_steps:
                shown.append(event_dict(StepCached(event.id)))
        with self.engine.db.transaction() as conn:
            remember(conn, memo[0], image_id, bases, [str(parse_reference(t)) for t in tags],
                     shown, racy=memo[1])

    def _context(self, context, dockerfile_path):
        from ..builder.context import BuildContext

        name = "Dockerfile"
        if dockerfile_path is not None and not os.path.isabs(dockerfile_path):
            name = str(dockerfile_path)
        if context is None:
            return BuildContext.empty()
        if isinstance(context, (str, os.PathLike)):
            return BuildContext.from_dir(Path(context), dockerfile=name)
        if isinstance(context, (bytes, bytearray)):
            context = io.BytesIO(context)
        tmp = Path(self.engine.root) / "build-cache" / "tmp"
        return BuildContext.from_tar(context, tmp, dockerfile=name)

    @staticmethod
    def _read_dockerfile(ctx, dockerfile_path) -> str:
        if dockerfile_path is not None and os.path.isabs(dockerfile_path):
            try:
                return Path(dockerfile_path).read_text()
            except OSError as exc:
                raise NotFound(f"cannot read Dockerfile {dockerfile_path}: {exc.strerror}") \
                    from None
        name = str(dockerfile_path) if dockerfile_path is not None else "Dockerfile"
        if ctx.root is None:
            raise InvalidArgument("no Dockerfile: give its text or a context that holds one")
        try:
            return ctx.read_text(name)
        except NotFound:
            if dockerfile_path is None:
                for alt in ("Containerfile", "dockerfile"):
                    if (ctx.root / alt).is_file():
                        return ctx.read_text(alt)
            raise NotFound(f"failed to read Dockerfile: open {name}: no such file in the "
                           "build context") from None

    def prune(self, all: bool = False,
              filters: Mapping[str, builtins.list[str]] | None = None) -> dict:
        """Remove build cache entries (``builder prune [-a]``).

        Args:
            all: every entry; otherwise only those whose result no image uses.
            filters: ``until`` (entries last used before it); cache entries carry no labels,
                so ``label`` matches none (nothing is removed) and ``label!`` keeps none.

        Returns:
            ``{"CachesDeleted": [keys], "SpaceReclaimed": bytes}``.
        """
        from ..builder.cache import BuildCache
        from .filters import PruneFilters

        wanted = PruneFilters(filters)
        if wanted.labels:
            return {"CachesDeleted": [], "SpaceReclaimed": 0}
        return BuildCache(self.engine.db, self.engine.image_store).prune(all=all,
                                                                        until=wanted.until)

    def cache_entries(self) -> list[dict]:
        """The build cache's entries, most recently used first."""
        from ..builder.cache import BuildCache

        return BuildCache(self.engine.db, self.engine.image_store).entries()


def _build_check(engine, repair: bool) -> tuple[list[str], list[str]]:
    """Workspaces of builds whose process died (a crash or SIGKILL mid-RUN): garbage. Held
    workspaces are the store's leftovers (see store.leftovers); this finds the older kind,
    which names its owner in a pid file."""
    tmp = Path(engine.root) / "build-cache" / "tmp"
    if not tmp.is_dir():
        return [], []
    from ..process import pid_alive

    stale = []
    for entry in tmp.iterdir():
        if "." in entry.name:
            continue  # a held folder
        try:
            pid = int((entry / "pid").read_text())
        except (OSError, ValueError):
            continue
        if not pid_alive(pid):
            stale.append(entry)
    if stale and repair:
        from ..builder.run import clean_stale

        clean_stale(tmp)
    return [], [f"build workspace {e.name} left by a dead build" for e in stale]


def _register() -> None:
    from .system import register_check

    register_check("build", _build_check)


_register()
