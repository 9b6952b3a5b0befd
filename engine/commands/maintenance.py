"""Commands that act on the whole engine: ``system reset``, ``system migrate``, ``unshare``."""

from __future__ import annotations

from ..cli import Context, arguments, command
from ..errors import InvalidArgument


def _reset_args(p):
    p.add_argument("-f", "--force", action="store_true",
                   help="do it (without this flag nothing is removed)")


@command("reset", "Remove every container, image, volume, network and build cache entry",
         group="system")
@arguments(_reset_args)
def reset(ctx: Context, args):
    if not args.force:
        root = ctx.engine.system.info().get("DockerRootDir", "the engine")
        raise InvalidArgument(f"system reset removes every container, image, volume, network "
                              f"and build cache entry of {root}: run it with --force")
    done = ctx.engine.system.reset()
    ctx.print(f"Removed {done['Containers']} container(s), {done['Images']} image(s), "
              f"{done['Volumes']} volume(s), {done['Networks']} network(s)"
              + ("; stopped the user namespace" if done.get("NamespaceHolder") else ""))
    return done


@command("migrate", "Start a new user namespace with the current subordinate ids (rootless)",
         group="system")
@arguments(lambda p: None)
def migrate(ctx: Context, args):
    done = ctx.engine.system.migrate()
    if done.get("NamespaceHolder"):
        ctx.print("stopped the user namespace: the next command makes a new one")
    return done


def _unshare_args(p):
    import argparse

    p.add_argument("command", nargs=argparse.REMAINDER,
                   help="the command to run (default: $SHELL)")


@command("unshare", "Run a command inside the rootless user namespace (as root there)")
@arguments(_unshare_args)
def unshare(ctx: Context, args):
    import os

    return ctx.engine.system.unshare(args.command or [os.environ.get("SHELL") or "/bin/sh"])
