"""Volume commands: ``volume create``, ``volume ls``, ``volume inspect``, ``volume rm``,
``volume prune``, with Docker's flags, output and exit codes; and volumes for the top-level
``inspect``."""

from __future__ import annotations

import argparse

from ..cli import (Context, arguments, command, for_each, inspect_each, parse_filters,
                   print_table)
from ..errors import InvalidArgument
from .images import INSPECTORS

LS_HEADERS = {"Driver": "DRIVER", "Name": "VOLUME NAME", "Scope": "SCOPE",
              "Mountpoint": "MOUNTPOINT", "Labels": "LABELS", "Links": "LINKS", "Size": "SIZE",
              "CreatedAt": "CREATED AT"}


def _inspect_volume(engine, name: str) -> dict:
    return engine.volumes.get(name).attrs


INSPECTORS.append(("volume", _inspect_volume))


def _key_values(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"invalid {what}: '{item}'")
        out[key] = value
    return out


def _create_args(p):
    p.add_argument("name", nargs="?", metavar="VOLUME", help="volume name (default: random)")
    p.add_argument("-d", "--driver", default="local", help="volume driver name")
    p.add_argument("--label", action="append", default=[], help="set metadata for a volume")
    p.add_argument("-o", "--opt", action="append", default=[], help="set driver specific options")
    p.add_argument("--name", dest="name_flag", help="volume name")


@command("create", "Create a volume", group="volume")
@arguments(_create_args)
def create(ctx: Context, args):
    name = args.name or args.name_flag
    if args.name and args.name_flag and args.name != args.name_flag:
        raise InvalidArgument("conflicting options: either specify --name or provide "
                              "positional arg, not both")
    volume = ctx.engine.volumes.create(name, driver=args.driver,
                                       driver_opts=_key_values(args.opt, "option"),
                                       labels=_key_values(args.label, "label"))
    ctx.print(volume.name)
    return volume


def _ls_args(p):
    p.add_argument("-q", "--quiet", action="store_true", help="only display volume names")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="filter output (dangling=, name=, label=, driver=)")
    p.add_argument("--format", help="format output with a Go template, 'table …' or 'json'")
    p.add_argument("--cluster", action="store_true", help=argparse.SUPPRESS)


@command("ls", "List volumes", group="volume", aliases=("list",))
@arguments(_ls_args)
def ls(ctx: Context, args):
    volumes = ctx.engine.volumes.list(filters=parse_filters(args.filter))
    if args.quiet:
        names = [v.name for v in volumes]
        for name in names:
            ctx.print(name)
        return names
    from ..listing import volume_row

    rows = [volume_row(v) for v in volumes]
    print_table(ctx, args.format, rows, "table {{.Driver}}\t{{.Name}}", LS_HEADERS)
    return rows


def _inspect_args(p):
    p.add_argument("names", nargs="+", metavar="VOLUME")
    p.add_argument("-f", "--format", help="format output with a Go template or 'json'")


@command("inspect", "Display detailed information on one or more volumes", group="volume")
@arguments(_inspect_args)
def inspect(ctx: Context, args):
    return inspect_each(ctx, args.names, lambda n: ctx.engine.volumes.get(n).attrs, args.format,
                        "volume")


def _rm_args(p):
    p.add_argument("names", nargs="+", metavar="VOLUME")
    p.add_argument("-f", "--force", action="store_true",
                   help="force the removal of one or more volumes")


@command("rm", "Remove one or more volumes", group="volume", aliases=("remove",))
@arguments(_rm_args)
def rm(ctx: Context, args):
    return for_each(ctx, args.names, lambda n: ctx.engine.volumes.remove(n, force=args.force))


def _prune_args(p):
    p.add_argument("-a", "--all", action="store_true",
                   help="remove all unused volumes, not just anonymous ones")
    p.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[],
                   help="provide filter values (e.g. 'label=<label>')")


@command("prune", "Remove unused local volumes", group="volume")
@arguments(_prune_args)
def prune(ctx: Context, args):
    from ..units import human_size

    report = ctx.engine.volumes.prune(all=args.all, filters=parse_filters(args.filter))
    if report["VolumesDeleted"]:
        ctx.print("Deleted Volumes:")
        for name in report["VolumesDeleted"]:
            ctx.print(name)
        ctx.print("")
    ctx.print(f"Total reclaimed space: {human_size(report['SpaceReclaimed'])}")
    return report
