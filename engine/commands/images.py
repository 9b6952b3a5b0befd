"""Image commands: images, import, image bootstrap, tag, rmi, image prune, history, inspect,
save, load."""

from __future__ import annotations


from ..cli import (Context, arguments, command, inspect_each, open_input, parse_filters,
                   print_table)
from ..errors import EngineError, InvalidArgument, NotFound
from ..units import human_size, since

IMAGES_HEADERS = {"ID": "IMAGE ID", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                  "Repository": "REPOSITORY", "Tag": "TAG", "Size": "SIZE", "Digest": "DIGEST"}

#: `inspect` with no --type tries each of these in turn: (type name, fn(engine, name) -> dict)
INSPECTORS: list = []


def _images_args(p):
    p.add_argument("repository", nargs="?", help="REPOSITORY[:TAG]")
    p.add_argument("-a", "--all", action="store_true", help="show all images")
    p.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    p.add_argument("--digests", action="store_true", help="show digests")
    p.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    p.add_argument("-f", "--filter", action="append", default=[], help="filter output")
    p.add_argument("--format", help="format output with a Go template, 'table …' or 'json'")


@command("ls", "List images", group="image", aliases=("list",), top_level=True, top_name="images")
@arguments(_images_args)
def images(ctx: Context, args):
    coll = ctx.engine.images
    imgs = coll.list(all=args.all, filters=parse_filters(args.filter), name=args.repository)
    if args.quiet:
        ids, seen = [], set()
        for image in imgs:
            ident = image.id if args.no_trunc else image.short_id
            if ident not in seen:
                seen.add(ident)
                ids.append(ident)
        for ident in ids:
            ctx.print(ident)
        return ids
    from ..listing import image_rows

    rows = image_rows(imgs)
    for row in rows:
        if args.no_trunc:
            row["ID"] = row["FullID"]
        row["Size"] = human_size(row["Size"])
        row["VirtualSize"] = human_size(row["VirtualSize"])
    default = ("table {{.Repository}}\t{{.Tag}}\t" + ("{{.Digest}}\t" if args.digests else "")
               + "{{.ID}}\t{{.CreatedSince}}\t{{.Size}}")
    print_table(ctx, args.format, rows, default, IMAGES_HEADERS)
    return rows


def _import_args(p):
    p.add_argument("file", help="tarball (plain, gzip or zstd), or - for standard input")
    p.add_argument("repository", nargs="?", help="REPOSITORY[:TAG]")
    p.add_argument("-c", "--change", action="append", default=[],
                   help="apply a Dockerfile instruction to the image (CMD, ENV, ...)")
    p.add_argument("-m", "--message", default="", help="commit message for the image")
    p.add_argument("--platform", help="set the platform (os/arch)")


@command("import", "Import a root filesystem tarball as an image", group="image", top_level=True)
@arguments(_import_args)
def import_(ctx: Context, args):
    if args.platform:
        os_, _, arch = args.platform.partition("/")
        if os_ != "linux" or not arch:
            raise InvalidArgument(f"invalid platform: {args.platform}")
    with open_input(ctx, args.file) as stream:
        image = ctx.engine.images.import_(stream, args.repository, changes=args.change,
                                          message=args.message, source=args.file)
    ctx.print(image.id)
    return image


def _bootstrap_args(p):
    p.add_argument("source", help="busybox, or debian[:SUITE] (e.g. debian:bookworm)")
    p.add_argument("-t", "--tag", help="name the image NAME[:TAG]")
    p.add_argument("--include", action="append", default=[],
                   help="extra Debian packages, comma-separated (debian only)")
    p.add_argument("--mirror", help="Debian mirror (default: the host's apt source)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image id")


@command("bootstrap", "Make a base image with no registry (busybox or debian:SUITE)",
         group="image")
@arguments(_bootstrap_args)
def bootstrap(ctx: Context, args):
    include = [pkg for item in args.include for pkg in item.split(",") if pkg]
    if not args.quiet:
        ctx.print(f"Bootstrapping {args.source}" + (f" with {', '.join(include)}" if include else "")
                  + " ...")
    image = ctx.engine.images.bootstrap(args.source, tag=args.tag, include=include,
                                        mirror=args.mirror)
    if args.quiet:
        ctx.print(image.id)
    else:
        ctx.print(f"Created {', '.join(image.tags) or image.short_id} ({image.id})")
    return image


def _tag_args(p):
    p.add_argument("source", help="SOURCE_IMAGE[:TAG]")
    p.add_argument("target", help="TARGET_IMAGE[:TAG]")


@command("tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE", group="image",
         top_level=True)
@arguments(_tag_args)
def tag(ctx: Context, args):
    return ctx.engine.images.tag(args.source, args.target)


def _rmi_args(p):
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-f", "--force", action="store_true", help="force removal of the image")
    p.add_argument("--no-prune", action="store_true", help="do not delete untagged parents")


@command("rm", "Remove one or more images", group="image", aliases=("remove", "rmi"),
         top_level=True, top_name="rmi")
@arguments(_rmi_args)
def rmi(ctx: Context, args):
    failed = None
    results = []
    for name in args.images:
        try:
            for item in ctx.engine.images.remove(name, force=args.force, noprune=args.no_prune):
                for key, value in item.items():
                    ctx.print(f"{key}: {value}")
                results.append(item)
        except EngineError as exc:
            failed = exc
            ctx.err.write(f"Error: {exc}\n")
    if failed is not None:
        return failed.exit_code
    return results


def _prune_args(p):
    p.add_argument("-a", "--all", action="store_true", help="remove all unused images")
    p.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], help="filter (label=...)")


@command("prune", "Remove unused images", group="image")
@arguments(_prune_args)
def prune(ctx: Context, args):
    report = ctx.engine.images.prune(all=args.all, filters=parse_filters(args.filter))
    deleted = report["ImagesDeleted"] or []
    if deleted:
        ctx.print("Deleted Images:")
        for item in deleted:
            for key, value in item.items():
                ctx.print(f"{key.lower()}: {value}")
        ctx.print("")
    ctx.print(f"Total reclaimed space: {human_size(report['SpaceReclaimed'])}")
    return report


def _history_args(p):
    p.add_argument("image")
    p.add_argument("-H", "--human", default="true", nargs="?", const="true",
                   help="print sizes and dates in human readable format")
    p.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    p.add_argument("--format", help="format output")


@command("history", "Show the history of an image", group="image", top_level=True)
@arguments(_history_args)
def history(ctx: Context, args):
    from ..image.oci import rfc3339

    rows = ctx.engine.images.history(args.image)
    human = str(args.human).lower() not in ("false", "0")
    for row in rows:
        if row["ID"] != "<missing>" and not args.no_trunc:
            row["ID"] = row["ID"].split(":", 1)[1][:12]
        row["CreatedSince"] = since(row["Created"]) if human else rfc3339(row["Created"])
        row["CreatedAt"] = rfc3339(row["Created"])
        created_by = row["CreatedBy"]
        if not args.no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        row["CreatedBy"] = created_by
        row["Size"] = human_size(row["Size"]) if human else str(row["Size"])
    if args.quiet:
        for row in rows:
            ctx.print(row["ID"])
        return [row["ID"] for row in rows]
    print_table(ctx, args.format, rows,
                "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}",
                {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedBy": "CREATED BY",
                 "Size": "SIZE", "Comment": "COMMENT", "CreatedAt": "CREATED AT"})
    return rows


def _inspect_args(p):
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("-f", "--format", help="format output with a Go template or 'json'")


@command("inspect", "Display detailed information on one or more images", group="image")
@arguments(_inspect_args)
def image_inspect(ctx: Context, args):
    return _inspect(ctx, args, [("image", lambda eng, n: eng.images.get(n).attrs)])


def _top_inspect_args(p):
    _inspect_args(p)
    p.add_argument("-s", "--size", action="store_true", help="display total file sizes")
    p.add_argument("--type", help="only inspect objects of this type")


@command("inspect", "Return low-level information on portside objects")
@arguments(_top_inspect_args)
def inspect(ctx: Context, args):
    inspectors = INSPECTORS + [("image", lambda eng, n: eng.images.get(n).attrs)]
    if args.size:  # a container's document then has SizeRw and SizeRootFs, as Docker's
        inspectors = [("container", lambda eng, n: eng.containers.get(n, size=True).attrs)
                      if kind == "container" else (kind, fn) for kind, fn in inspectors]
    if args.type:
        inspectors = [i for i in inspectors if i[0] == args.type]
        if not inspectors:
            raise InvalidArgument(f'"{args.type}" is not a valid value for --type')
    return _inspect(ctx, args, inspectors)


def _inspect(ctx: Context, args, inspectors) -> object:
    def lookup(name: str) -> dict:
        for _type, fn in inspectors:
            try:
                return fn(ctx.engine, name)
            except NotFound:
                continue
        raise NotFound(name)

    what = inspectors[0][0] if len(inspectors) == 1 else "object"
    return inspect_each(ctx, args.names, lookup, args.format, what)


def _save_args(p):
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-o", "--output", help="write to a file instead of standard output")


@command("save", "Save one or more images to a tar archive", group="image", top_level=True)
@arguments(_save_args)
def save(ctx: Context, args):
    import os

    if args.output:
        tmp = args.output + ".part"
        try:
            with open(tmp, "wb") as out:
                ctx.engine.images.save(args.images, out)
            os.replace(tmp, args.output)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return None
    out = ctx.stdout_binary
    if out is None or (hasattr(out, "isatty") and out.isatty()):
        raise InvalidArgument("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    ctx.engine.images.save(args.images, out)
    out.flush()
    return None


def _load_args(p):
    p.add_argument("-i", "--input", help="read from a tar archive file instead of standard input")
    p.add_argument("-q", "--quiet", action="store_true", help="suppress the load output")


@command("load", "Load images from a tar archive", group="image", top_level=True)
@arguments(_load_args)
def load(ctx: Context, args):
    with open_input(ctx, args.input) as stream:
        loaded = ctx.engine.images.load(stream)
    names = []
    for image, tags in loaded:
        if tags:
            for t in tags:
                names.append(t)
                if not args.quiet:
                    ctx.print(f"Loaded image: {t}")
        else:
            names.append(image.id)
            if not args.quiet:
                ctx.print(f"Loaded image ID: {image.id}")
    return names
