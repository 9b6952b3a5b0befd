"""Build commands: ``build`` (also ``image build``) and ``builder prune``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..cli import Context, arguments, command
from ..errors import InvalidArgument, NotFound


def _key_values(items: list[str], what: str, *, from_env: bool = False) -> dict[str, str]:
    from ..builder.memo import key_values

    try:
        return key_values(items, what, from_env=from_env)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


def _build_args(p):
    from ..builder.memo import BUILD_OPTIONS, PROGRESS_MODES

    p.add_argument("path", nargs="?", help="context directory, or - to read a tar (or a "
                                           "Dockerfile) from standard input")
    for flags, dest, kind, help_, _memo in BUILD_OPTIONS:
        if kind == "switch":
            p.add_argument(*flags, dest=dest, action="store_true", help=help_)
        elif kind == "append":
            p.add_argument(*flags, dest=dest, action="append", default=[], help=help_)
        elif dest == "progress":
            p.add_argument(*flags, dest=dest, default="auto", choices=PROGRESS_MODES, help=help_)
        else:
            p.add_argument(*flags, dest=dest, help=help_)


@command("build", "Build an image from a Dockerfile", group="image", top_level=True)
@arguments(_build_args)
def build(ctx: Context, args):
    from ..builder.progress import renderer

    quiet = args.quiet or args.progress == "quiet"
    mode = "json" if args.progress in ("json", "rawjson") else args.progress
    progress = ctx.progress or renderer(mode, ctx.out, ctx.err, quiet=quiet)
    if args.path is None:
        raise InvalidArgument("build requires exactly 1 argument: the context (a folder, or - "
                              "for standard input)")
    dockerfile = None
    context = None
    if args.file and args.file != "-":
        # -f is a path on the client, relative to the current directory (as with docker)
        try:
            dockerfile = Path(args.file).read_text()
        except OSError as exc:
            raise NotFound(f"failed to read dockerfile {args.file}: {exc.strerror}") from None
    if args.path == "-":
        if ctx.stdin is None:
            raise InvalidArgument("build -: nothing on standard input")
        data = ctx.stdin.read()
        if args.file == "-":
            raise InvalidArgument("build: cannot read both the context and the Dockerfile "
                                  "from standard input")
        if _looks_like_archive(data):
            import io

            context = io.BytesIO(data)
        else:
            dockerfile = data.decode()
    else:
        if not os.path.isdir(args.path):
            raise NotFound(f"unable to prepare context: path {args.path!r} not found")
        context = args.path
        if args.file == "-":
            if ctx.stdin is None:
                raise InvalidArgument("build -f -: nothing on standard input")
            dockerfile = ctx.stdin.read().decode()
    sde = None
    if args.source_date_epoch is not None:
        try:
            sde = int(args.source_date_epoch)
        except ValueError:
            raise InvalidArgument(f"--source-date-epoch must be an integer: "
                                  f"{args.source_date_epoch}") from None
    image = ctx.engine.images.build(
        dockerfile, context, tags=args.tag,
        build_args=_key_values(args.build_arg, "build argument", from_env=True),
        target=args.target, no_cache=args.no_cache, labels=_key_values(args.label, "label"),
        progress=progress, platform=args.platform, source_date_epoch=sde,
        ignore_source_date_epoch=args.no_source_date_epoch, locked=args.locked)
    if args.iidfile:
        Path(args.iidfile).write_text(image.id)
    if quiet:
        ctx.print(image.id)
    return image.id


def _looks_like_archive(data: bytes) -> bool:
    if data[:2] == b"\x1f\x8b" or data[:4] == b"\x28\xb5\x2f\xfd":
        return True
    return len(data) >= 262 and data[257:262] == b"ustar"


def _prune_args(p):
    p.add_argument("-a", "--all", action="store_true", help="remove all cache, not only "
                                                            "dangling")
    p.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")


@command("prune", "Remove build cache", group="builder")
@arguments(_prune_args)
def builder_prune(ctx: Context, args):
    if not args.force and ctx.stdin is not None and not ctx.magic and sys.stdin.isatty():
        ctx.out.write("WARNING! This will remove all dangling build cache. "
                      "Are you sure you want to continue? [y/N] ")
        ctx.out.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    result = ctx.engine.builds.prune(all=args.all)
    from ..units import human_size

    if result["CachesDeleted"]:
        ctx.print("Deleted build cache objects:")
        for key in result["CachesDeleted"]:
            ctx.print(key.split(":", 1)[-1][:25])
    ctx.print(f"Total reclaimed space: {human_size(result['SpaceReclaimed'])}")
    return result
