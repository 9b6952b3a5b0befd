"""``portside slurm …``: the commands a Slurm context runs on the cluster's nodes.

Users do not type these; the Slurm context (:mod:`portside.engine.slurm`) does:

``slurm keeper``        the batch script of a container's job (the spec on stdin)
``slurm node prepare``  the start hand-shake the client runs over ``srun`` on the job's node
``slurm node call``     one model-API request (JSON on stdin) on the node's engine
``slurm ship``          the client's background helper for a job that waited in the queue
``slurm epilog``        for a site's ``Epilog=``: removes what a killed keeper left (admins)
"""

from __future__ import annotations

import sys

from ..cli import Context, arguments, command


def _keeper_args(p):
    pass


@command("keeper", "Run a container for the Slurm job this runs in (the job's script)",
         group="slurm")
@arguments(_keeper_args)
def keeper(ctx: Context, args):
    from ..slurm.keeper import main

    stdin = ctx.stdin if ctx.stdin is not None else sys.stdin.buffer
    return main(stdin)


def _epilog_args(p):
    p.add_argument("--root", dest="store", default=None,
                   help="the store to clean (default: the one the job's context named)")


@command("epilog", "Remove the containers of the ending Slurm job on this node (Epilog=)",
         group="slurm")
@arguments(_epilog_args)
def epilog(ctx: Context, args):
    from ..slurm.epilog import main

    return main(args.store)


def _node_args(p):
    p.add_argument("action", choices=("prepare", "call"))
    p.add_argument("--job", default="", help="the Slurm job (prepare)")
    p.add_argument("--image", default="", help="the image id the container needs (prepare)")
    p.add_argument("--pull", action="store_true", help="the keeper pulls the image (prepare)")


@command("node", "A Slurm context's request to this node's engine (over srun)", group="slurm")
@arguments(_node_args)
def node(ctx: Context, args):
    from ..errors import InvalidArgument
    from ..slurm import node as _node

    stdin = ctx.stdin if ctx.stdin is not None else sys.stdin.buffer
    stdout = ctx.stdout_binary if ctx.stdout_binary is not None else sys.stdout.buffer
    if args.action == "call":
        return _node.call_main(ctx.engine, stdin, stdout)
    if not args.job or not args.image:
        raise InvalidArgument("slurm node prepare needs --job and --image")
    return _node.prepare(ctx.engine, args.job, args.image, pull=args.pull, stdin=stdin,
                         stdout=stdout)


def _ship_args(p):
    p.add_argument("--state", required=True, help="the context's folder")
    p.add_argument("container", metavar="CONTAINER")


@command("ship", "Start a queued Slurm container once its job runs (background helper)",
         group="slurm")
@arguments(_ship_args)
def ship(ctx: Context, args):
    from ..slurm.ship import ship_main

    return ship_main(args.state, args.container, local=ctx.engine)
