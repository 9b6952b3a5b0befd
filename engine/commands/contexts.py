"""Context commands (``context create/ls/use/show/inspect/update/rm``) and ``image copy``.

Docker's words and output: ``context ls`` marks the current context with ``*`` and has
Docker's columns and ``--format``; ``context inspect`` prints Docker's documents; ``create``
and ``use`` print the name on stdout and what happened on stderr.

``image copy --from A --to B IMAGE…`` streams ``save`` from one context's engine into ``load``
of the other's, as ``portside save IMAGE | portside -c B load`` does in a shell.
"""

from __future__ import annotations

from ..cli import Context, arguments, command, inspect_each, print_table
from ..errors import InvalidArgument

LS_HEADERS = {"Name": "NAME", "Description": "DESCRIPTION", "DockerEndpoint": "DOCKER ENDPOINT",
              "Error": "ERROR"}
LS_DEFAULT = "table {{.Name}}\t{{.Description}}\t{{.DockerEndpoint}}\t{{.Error}}"


def _store():
    from ..contexts import ContextStore

    return ContextStore()


_SLURM_HELP = ("a Slurm cluster: partition=P[,time=T][,account=A][,registry=HOST:PORT]"
               "[,root=DIR (%%n: the node's name)][,conf=SLURM_CONF]")


def _create_args(p):
    p.add_argument("--description", default="", help="description of the context")
    p.add_argument("--docker", help="set the docker endpoint: host=URL[,ca=,cert=,key=,"
                                    "skip-tls-verify=]")
    p.add_argument("--slurm", help=_SLURM_HELP)
    p.add_argument("--from", dest="from_", metavar="CONTEXT",
                   help="create the context from an existing one")
    p.add_argument("name", metavar="CONTEXT")


@command("create", "Create a context", group="context")
@arguments(_create_args)
def create(ctx: Context, args):
    if args.docker is None and args.slurm is None and args.from_ is None:
        raise InvalidArgument("context create: --docker host=URL, --slurm partition=… (or "
                              "--from CONTEXT) is required")
    description = args.description
    if args.slurm is not None and not description:
        description = "Slurm cluster"
    doc = _store().create(args.name, docker=args.docker, slurm=args.slurm,
                          description=description, from_=args.from_)
    ctx.print(args.name)
    ctx.err.write(f'Successfully created context "{args.name}"\n')
    return doc


def _ls_args(p):
    p.add_argument("--format", help="format output: 'table', 'json' or a Go template")
    p.add_argument("-q", "--quiet", action="store_true", help="only show context names")


def ls_rows(current: str) -> list[dict]:
    """One row per context, Docker's fields (``Current`` marks the one in use), plus
    ``SlurmEndpoint`` (a Slurm context's options)."""
    rows = []
    for doc in _store().list():
        docker = doc["Endpoints"].get("docker") or {}
        slurm = doc["Endpoints"].get("slurm")
        rows.append({"Name": doc["Name"], "Current": doc["Name"] == current,
                     "Description": doc["Metadata"].get("Description", ""),
                     "DockerEndpoint": docker.get("Host", ""),
                     "SlurmEndpoint": (slurm.get("Options") or "") if slurm else "",
                     "Error": ""})
    return rows


@command("ls", "List contexts", group="context", aliases=("list",))
@arguments(_ls_args)
def ls(ctx: Context, args):
    from ..contexts import selected

    rows = ls_rows(selected(getattr(args, "context", None)))
    if args.quiet:
        for row in rows:
            ctx.print(row["Name"])
        return [r["Name"] for r in rows]
    if args.format:
        print_table(ctx, args.format, rows, LS_DEFAULT, LS_HEADERS)
        return rows
    shown = [dict(r, Name=r["Name"] + (" *" if r["Current"] else "")) for r in rows]
    print_table(ctx, None, shown, LS_DEFAULT, LS_HEADERS)
    return rows


def _name_arg(p):
    p.add_argument("name", metavar="CONTEXT")


@command("use", "Set the current context", group="context")
@arguments(_name_arg)
def use(ctx: Context, args):
    import os

    _store().use(args.name)
    ctx.print(args.name)
    ctx.err.write(f'Current context is now "{args.name}"\n')
    if os.environ.get("PORTSIDE_CONTEXT"):
        ctx.err.write("Warning: PORTSIDE_CONTEXT is set and overrides the context set with "
                      f'"portside context use" (it selects "{os.environ["PORTSIDE_CONTEXT"]}")\n')
    return args.name


@command("show", "Print the name of the current context", group="context")
@arguments(lambda p: None)
def show(ctx: Context, args):
    from ..contexts import selected

    name = selected(getattr(args, "context", None))
    ctx.print(name)
    return name


def _inspect_args(p):
    p.add_argument("-f", "--format", help="format the output using a Go template or 'json'")
    p.add_argument("names", nargs="*", metavar="CONTEXT")


@command("inspect", "Display detailed information on one or more contexts", group="context")
@arguments(_inspect_args)
def inspect(ctx: Context, args):
    from ..contexts import selected
    from ..errors import NotFound

    store = _store()
    names = args.names or [selected(getattr(args, "context", None))]

    def lookup(name: str) -> dict:
        try:
            return store.get(name)
        except NotFound:
            raise NotFound(name) from None

    return inspect_each(ctx, names, lookup, args.format, "context")


def _update_args(p):
    p.add_argument("--description", help="description of the context")
    p.add_argument("--docker", help="set the docker endpoint: host=URL[,ca=,cert=,key=,"
                                    "skip-tls-verify=]")
    p.add_argument("--slurm", help=_SLURM_HELP)
    p.add_argument("name", metavar="CONTEXT")


@command("update", "Update a context", group="context")
@arguments(_update_args)
def update(ctx: Context, args):
    if args.docker is None and args.slurm is None and args.description is None:
        raise InvalidArgument("context update: nothing to change (--docker, --slurm or "
                              "--description)")
    doc = _store().update(args.name, docker=args.docker, slurm=args.slurm,
                          description=args.description)
    ctx.print(args.name)
    ctx.err.write(f'Successfully updated context "{args.name}"\n')
    return doc


def _rm_args(p):
    p.add_argument("-f", "--force", action="store_true",
                   help="force the removal of a context in use (or of a Slurm context that "
                        "still has containers)")
    p.add_argument("names", nargs="+", metavar="CONTEXT")


@command("rm", "Remove one or more contexts", group="context", aliases=("remove",))
@arguments(_rm_args)
def rm(ctx: Context, args):
    from ..cli import for_each

    store = _store()
    return for_each(ctx, args.names, lambda name: store.remove(name, force=args.force))


# ------------------------------------------------------------------------------ image copy
def _copy_args(p):
    p.add_argument("--from", dest="from_", metavar="CONTEXT",
                   help="the context to copy from (default: the current one)")
    p.add_argument("--to", metavar="CONTEXT", help="the context to copy to (default: the "
                                                    "current one)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("images", nargs="+", metavar="IMAGE")


@command("copy", "Copy images from one context's engine to another's", group="image")
@arguments(_copy_args)
def copy(ctx: Context, args):
    from ..api import from_env
    from ..contexts import selected

    here = selected(getattr(args, "context", None))
    source_name, target_name = args.from_ or here, args.to or here
    if source_name == target_name:
        raise InvalidArgument(f'image copy: --from and --to name the same context '
                              f'("{source_name}")')
    root = getattr(args, "root", None)

    def engine_of(name: str):
        # the command's own engine for the context it runs in (the program's, rootless too)
        if name == here and getattr(ctx, "engine", None) is not None:
            return ctx.engine
        return from_env(root=root if name == "default" else None, context=name)

    source, target = engine_of(source_name), engine_of(target_name)
    try:
        for name in args.images:  # a missing image fails before anything moves
            source.images.get(name)
        loaded = copy_images(source, target, list(args.images))
    finally:
        for engine in (source, target):
            if engine is not getattr(ctx, "engine", None):
                engine.close()
    if not args.quiet:
        for image, names in loaded:
            for name in names or [image.id]:
                ctx.print(f"Copied {name} ({image.short_id}) from {source_name} to "
                          f"{target_name}")
    return [image.id for image, _names in loaded]


def copy_images(source, target, names: list[str]):
    """``source.images.save(names)`` streamed into ``target.images.load``, through a pipe:
    no archive on disk, both sides at once. Returns what ``load`` returns."""
    import os
    import threading

    r, w = os.pipe()
    failure: list[BaseException] = []

    def produce() -> None:
        with os.fdopen(w, "wb") as out:
            try:
                source.images.save(names, out)
            except BrokenPipeError:
                pass  # the loader gave up: its own error says why
            except BaseException as exc:  # noqa: BLE001 - reported by the caller
                failure.append(exc)

    writer = threading.Thread(target=produce, name="portside-image-copy", daemon=True)
    writer.start()
    try:
        with os.fdopen(r, "rb") as stream:
            try:
                loaded = target.images.load(stream)
            finally:
                # the loader may stop early: drain so the saver is never stuck on a full pipe
                while stream.read(1 << 20):
                    pass
    finally:
        writer.join()
    if failure:
        raise failure[0]
    return loaded
