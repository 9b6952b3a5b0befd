"""Builds on a Docker Engine: ``engine.images.build(...)`` through the Engine API's ``/build``.

The context folder is sent as a tar, filtered by its ``.dockerignore`` as Docker's client
filters it; a Dockerfile given as text (a notebook cell, ``-f`` outside the context) travels in
the tar under a name of its own. dockerd's builder is the classic one (the API's; BuildKit
needs a session the SDK does not speak), and its stream becomes portside's build events
(:class:`~.progress.BuildTranslator`), so the build widgets and ``--progress plain`` draw it.

The build memo and the build cache's entries are portside's own: a Docker context has neither
(its cache is dockerd's, and ``builder prune`` prunes it).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import InvalidArgument, NotFound
from ..models.resource import Collection

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    import builtins
    from typing import Any, BinaryIO, Callable, Iterable, Mapping


def build(engine: Any, dockerfile: str | None = None,
          context: Path | str | BinaryIO | bytes | None = None, *,
          dockerfile_path: str | os.PathLike | None = None, tags: Iterable[str] = (),
          build_args: Mapping[str, str] | None = None, target: str | None = None,
          no_cache: bool = False, labels: Mapping[str, str] | None = None,
          progress: Callable[[Any], None] | None = None, source_date_epoch: int | None = None,
          platform: str | None = None, ignore_source_date_epoch: bool = False,
          network: str | None = None, pull: bool = False) -> Any:
    """Build an image with dockerd (the model API's arguments; see
    :meth:`portside.engine.models.interface.ImageCollection.build`).

    ``network``: the network of RUN steps (``docker build --network``).

    Raises:
        DockerfileError: dockerd could not parse the Dockerfile (its line kept).
        BuildError: a step failed (the step, its status and its last lines kept).
        Unsupported: ``source_date_epoch``, or ``$SOURCE_DATE_EPOCH`` unless
            ``ignore_source_date_epoch`` (reproducible builds are portside's own).
    """
    from .errors import guarded_call
    from .progress import BuildTranslator

    if (source_date_epoch is None and not ignore_source_date_epoch
            and os.environ.get("SOURCE_DATE_EPOCH")):
        source_date_epoch = 1  # asked for through the environment: refused the same way
    if source_date_epoch is not None:
        raise engine.unsupported("a reproducible build (SOURCE_DATE_EPOCH)",
                                 "build in the default context and copy the image")
    tags = list(tags)
    with tempfile.TemporaryFile(prefix="portside-context-") as archive:
        name = _archive(archive, dockerfile, context, dockerfile_path)
        archive.seek(0)
        client = engine.client
        translator = BuildTranslator(progress, _shown(name))
        stream = guarded_call(engine, lambda: client.build(
            fileobj=archive, custom_context=True, dockerfile=name,
            tag=tags[0] if tags else None, buildargs=dict(build_args or {}) or None,
            target=target, nocache=no_cache, labels=dict(labels or {}) or None,
            platform=platform, network_mode=network, pull=pull, rm=True, forcerm=True,
            decode=True))
        try:
            for doc in stream:
                translator.feed(doc)
        except InvalidArgument as exc:
            from .progress import build_request_error

            raise build_request_error(str(exc), _shown(name)) from None
        finally:
            stream.close()
    if translator.image_id is None:
        raise InvalidArgument("the build ended without an image (dockerd said nothing "
                              "about its result)")
    for extra in tags[1:]:
        engine.images.tag(translator.image_id, extra)
    translator.tags = [t if ":" in t.rsplit("/", 1)[-1] else t + ":latest" for t in tags]
    translator.finish()
    return engine.images.get(translator.image_id)


class BuildCollection(Collection):
    """``engine.builds`` of a Docker context: dockerd's build cache."""

    def prune(self, all: bool = False,
              filters: Mapping[str, builtins.list[str]] | None = None) -> dict[str, Any]:
        """dockerd's build cache: ``{"CachesDeleted": [...], "SpaceReclaimed": bytes}``."""
        result = self.engine.api.prune_builds(all=all or None,
                                              filters=dict(filters) if filters else None)
        return {"CachesDeleted": result.get("CachesDeleted") or [],
                "SpaceReclaimed": result.get("SpaceReclaimed") or 0}

    def cache_entries(self) -> list[dict[str, Any]]:
        raise self.engine.unsupported("the build cache's entries",
                                      "dockerd keeps its own cache (see docker builder du)")


def _archive(out: BinaryIO, dockerfile: str | None, context: Any,
             dockerfile_path: str | os.PathLike | None) -> str:
    """Write the build context tar to ``out``; returns the Dockerfile's name in it."""
    import io
    import tarfile

    if context is not None and not isinstance(context, (str, os.PathLike)):
        if dockerfile is not None:
            raise InvalidArgument("a Dockerfile's text cannot go with a tar context")
        data = context if isinstance(context, (bytes, bytearray)) else None
        if data is not None:
            out.write(data)
        else:
            for chunk in iter(lambda: context.read(1 << 20), b""):
                out.write(chunk)
        return str(dockerfile_path or "Dockerfile")
    if dockerfile is None and dockerfile_path is not None and \
            os.path.isabs(dockerfile_path):
        try:
            dockerfile = Path(dockerfile_path).read_text()
        except OSError as exc:
            raise NotFound(f"cannot read Dockerfile {dockerfile_path}: {exc.strerror}") \
                from None
    if context is None:
        if dockerfile is None:
            raise InvalidArgument("no Dockerfile: give its text or a context that holds one")
        data = dockerfile.encode()
        with tarfile.open(fileobj=out, mode="w") as tar:
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        return "Dockerfile"
    root = Path(context)
    if not root.is_dir():
        raise NotFound(f"unable to prepare context: path {str(context)!r} not found")
    from docker.utils import build as sdk_build

    exclude = _dockerignore(root)
    if dockerfile is not None:
        name = f".portside-dockerfile-{os.getpid()}"
        sdk_build.tar(str(root), exclude=exclude, dockerfile=(name, dockerfile), fileobj=out)
        return name
    name = str(dockerfile_path) if dockerfile_path is not None else "Dockerfile"
    if dockerfile_path is None and not (root / name).is_file():
        for alt in ("Containerfile", "dockerfile"):
            if (root / alt).is_file():
                name = alt
                break
    if not (root / name).is_file():
        raise NotFound(f"failed to read Dockerfile: open {name}: no such file in the "
                       "build context")
    sdk_build.tar(str(root), exclude=exclude, dockerfile=(name, None), fileobj=out)
    return name


def _shown(name: str) -> str:
    """The Dockerfile's name in messages (one sent as text is "Dockerfile")."""
    return "Dockerfile" if name.startswith(".portside-dockerfile-") else name


def _dockerignore(root: Path) -> list[str]:
    try:
        text = (root / ".dockerignore").read_text()
    except OSError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip() and
            not line.strip().startswith("#")]
