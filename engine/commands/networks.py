"""Network commands: network create/ls/inspect/rm/prune/connect/disconnect."""

from __future__ import annotations

from ..cli import (Context, arguments, command, for_each, inspect_each, parse_filters,
                   print_table)

HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE"}


def _create_args(p):
    p.add_argument("name")
    p.add_argument("-d", "--driver", default="bridge")
    p.add_argument("--subnet", help="subnet in CIDR format")
    p.add_argument("--internal", action="store_true", help="restrict external access")
    p.add_argument("--label", action="append", default=[], help="set metadata")


@command("create", "Create a network", group="network")
@arguments(_create_args)
def create(ctx: Context, args):
    labels = dict(item.partition("=")[::2] for item in args.label)
    net = ctx.engine.networks.create(args.name, subnet=args.subnet, internal=args.internal,
                                     labels=labels, driver=args.driver)
    ctx.print(net.id)
    return net


def _ls_args(p):
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format")
    p.add_argument("--no-trunc", action="store_true")


@command("ls", "List networks", group="network", aliases=("list",))
@arguments(_ls_args)
def ls(ctx: Context, args):
    nets = ctx.engine.networks.list(parse_filters(args.filter))
    from ..listing import network_row

    rows = [network_row(n, no_trunc=args.no_trunc) for n in nets]
    if args.quiet:
        for row in rows:
            ctx.print(row["ID"])
        return [row["ID"] for row in rows]
    print_table(ctx, args.format, rows, "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
                HEADERS)
    return rows


def _inspect_args(p):
    p.add_argument("names", nargs="+", metavar="NETWORK")
    p.add_argument("-f", "--format")


@command("inspect", "Display detailed information on one or more networks", group="network")
@arguments(_inspect_args)
def inspect(ctx: Context, args):
    return inspect_each(ctx, args.names, lambda n: ctx.engine.networks.get(n).attrs, args.format,
                        "network")


def _rm_args(p):
    p.add_argument("names", nargs="+", metavar="NETWORK")
    p.add_argument("-f", "--force", action="store_true")


@command("rm", "Remove one or more networks", group="network", aliases=("remove",))
@arguments(_rm_args)
def rm(ctx: Context, args):
    return for_each(ctx, args.names, ctx.engine.networks.remove)


def _prune_args(p):
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[])


@command("prune", "Remove all unused networks", group="network")
@arguments(_prune_args)
def prune(ctx: Context, args):
    removed = ctx.engine.networks.prune()["NetworksDeleted"]
    if removed:
        ctx.print("Deleted Networks:")
        for name in removed:
            ctx.print(name)
    return removed


def _connect_args(p):
    p.add_argument("network")
    p.add_argument("container")
    p.add_argument("--alias", action="append", default=[])


@command("connect", "Connect a container to a network", group="network")
@arguments(_connect_args)
def connect(ctx: Context, args):
    ctx.engine.networks.connect(args.network, args.container, args.alias)
    return 0


def _disconnect_args(p):
    p.add_argument("network")
    p.add_argument("container")
    p.add_argument("-f", "--force", action="store_true")


@command("disconnect", "Disconnect a container from a network", group="network")
@arguments(_disconnect_args)
def disconnect(ctx: Context, args):
    ctx.engine.networks.disconnect(args.network, args.container)
    return 0


def _network_inspector(engine, name):
    return engine.networks.get(name).attrs


def _register() -> None:
    from .images import INSPECTORS

    INSPECTORS.append(("network", _network_inspector))


_register()
