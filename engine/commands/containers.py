"""Container commands: create, run, start, stop, restart, kill, pause, unpause, wait, rm, ps, logs,
top, inspect, exec, attach, cp, commit, export, diff, rename, port, stats, container prune.

Each is reachable as ``portside VERB`` and ``portside container VERB`` (``container ls`` is
``ps``), takes Docker's flags and prints Docker's output. ``run`` and ``create`` share one flag set
and one translation into Docker's ``Config``/``HostConfig`` documents, both in
:mod:`.container_options`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

from ..cli import (Context, arguments, binary_stream, command, for_each, inspect_each,
                   parse_filters, print_table)
from ..errors import ContainerExit, InvalidArgument, NotFound
from . import images as _images
from ..envvars import exec_environment
from .container_options import REMAINDER, build_create, create_arguments

PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
              "RunningFor": "CREATED", "CreatedAt": "CREATED AT", "Status": "STATUS",
              "Ports": "PORTS", "Names": "NAMES", "Size": "SIZE", "State": "STATE",
              "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS", "GPUs": "GPUS",
              "LocalVolumes": "LOCAL VOLUMES"}
PS_DEFAULT = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t"
              "{{.Ports}}\t{{.Names}}")


# ----------------------------------------------------------------------------------- create / run


def _warn(ctx: Context, container) -> None:
    for warning in container.attrs["HostConfig"].get("Warnings") or []:
        ctx.err.write(f"WARNING: {warning}\n")


@command("create", "Create a new container", group="container", top_level=True)
@arguments(create_arguments)
def create(ctx: Context, args):
    config, host_config, name = build_create(args)
    container = ctx.engine.containers.create_from(config, host_config, name=name,
                                                  locked=args.locked)
    _warn(ctx, container)
    ctx.print(container.id)
    return container


def _run_args(p):
    p.add_argument("-d", "--detach", action="store_true",
                   help="run container in background and print container ID")
    create_arguments(p)


def _stdio(ctx: Context):
    """The binary streams a foreground container's output goes to (a notebook's text streams
    are wrapped)."""
    out = getattr(ctx, "stdout_binary", None) or binary_stream(ctx.out)
    return out, binary_stream(ctx.err)


@contextlib.contextmanager
def _terminal(ctx: Context, stdin, tty: bool):
    """With a terminal on both sides, the caller's in raw mode for the block; yields its size
    (rows, columns) or None."""
    fd = None
    if tty and stdin is not None and hasattr(stdin, "fileno"):
        try:
            fd = stdin.fileno() if os.isatty(stdin.fileno()) else None
        except (OSError, ValueError):
            fd = None
    if fd is None:
        yield None
        return
    import termios
    import tty as _tty

    old = termios.tcgetattr(fd)
    _tty.setraw(fd)
    try:
        size = os.get_terminal_size(fd)
        yield (size.lines, size.columns)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


@command("run", "Create and run a new container from an image", group="container",
         top_level=True)
@arguments(_run_args)
def run(ctx: Context, args):
    from .sigproxy import SignalProxy, parse_bool

    sig_proxy = parse_bool(args.sig_proxy, "--sig-proxy")
    config, host_config, name = build_create(args)
    containers = ctx.engine.containers
    if args.detach:
        container = containers.run_from(config, host_config, name=name, detach=True,
                                        locked=args.locked, on_created=lambda c: _warn(ctx, c))
        ctx.print(container.id)
        return container.id
    stdin = ctx.stdin if args.interactive else None
    out, err = _stdio(ctx)
    ctx.out.flush()
    # Docker's run proxies signals with or without a terminal (from the moment the container
    # exists); a notebook's signals are its kernel's
    with SignalProxy(proxy=sig_proxy, owner=not ctx.magic) as proxy, \
            _terminal(ctx, stdin, args.tty) as size:
        def created(container) -> None:
            _warn(ctx, container)
            proxy.engage(container)

        code = containers.run_from(config, host_config, name=name, locked=args.locked,
                                   stdin=stdin, stdout=out, stderr=err,
                                   detach_keys=args.detach_keys, tty_size=size,
                                   on_created=created)
    return 0 if code is None else code


# ----------------------------------------------------------------------------------- start & co


def _start_args(p):
    p.add_argument("-a", "--attach", action="store_true", help="attach STDOUT/STDERR")
    p.add_argument("-i", "--interactive", action="store_true", help="attach container's STDIN")
    p.add_argument("--detach-keys", default="ctrl-p,ctrl-q", help="detach key sequence")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")


@command("start", "Start one or more stopped containers", group="container", top_level=True)
@arguments(_start_args)
def start(ctx: Context, args):
    containers = ctx.engine.containers
    if args.attach or args.interactive:
        if len(args.containers) > 1:
            raise InvalidArgument("you cannot start and attach multiple containers at once")
        from .sigproxy import SignalProxy

        stdin = ctx.stdin if args.interactive else None
        container = containers.get(args.containers[0])
        tty = bool(container.attrs["Config"].get("Tty"))
        out, err = _stdio(ctx)
        ctx.out.flush()
        # Docker's start -a proxies signals without a terminal (it has no --sig-proxy flag)
        with SignalProxy(proxy=not tty, owner=not ctx.magic and not tty) as proxy, \
                _terminal(ctx, stdin, tty) as size:
            proxy.engage(container)
            code = containers.start_attached(args.containers[0], stdin, out, err,
                                             detach_keys=args.detach_keys, tty_size=size)
        return 0 if code is None else code
    return for_each(ctx, args.containers, lambda name: containers.get(name).start())


def _stop_args(p):
    p.add_argument("-t", "--time", "--timeout", dest="time", type=int,
                   help="seconds to wait before killing the container")
    p.add_argument("-s", "--signal", help="signal to send to the container")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")


@command("stop", "Stop one or more running containers", group="container", top_level=True)
@arguments(_stop_args)
def stop(ctx: Context, args):
    containers = ctx.engine.containers
    # -s applies to this stop only; the container's own StopSignal is left as it is
    return for_each(ctx, args.containers,
                    lambda name: containers.get(name).stop(args.time, signal=args.signal))


@command("restart", "Restart one or more containers", group="container", top_level=True)
@arguments(_stop_args)
def restart(ctx: Context, args):
    containers = ctx.engine.containers
    return for_each(ctx, args.containers, lambda n: containers.get(n).restart(args.time))


def _kill_args(p):
    p.add_argument("-s", "--signal", default="KILL", help="signal to send to the container")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")


@command("kill", "Kill one or more running containers", group="container", top_level=True)
@arguments(_kill_args)
def kill(ctx: Context, args):
    containers = ctx.engine.containers
    return for_each(ctx, args.containers, lambda n: containers.get(n).kill(args.signal))


def _names_args(p):
    p.add_argument("containers", nargs="+", metavar="CONTAINER")


@command("pause", "Pause all processes within one or more containers", group="container",
         top_level=True)
@arguments(_names_args)
def pause(ctx: Context, args):
    containers = ctx.engine.containers
    return for_each(ctx, args.containers, lambda n: containers.get(n).pause())


@command("unpause", "Unpause all processes within one or more containers", group="container",
         top_level=True)
@arguments(_names_args)
def unpause(ctx: Context, args):
    containers = ctx.engine.containers
    return for_each(ctx, args.containers, lambda n: containers.get(n).unpause())


@command("wait", "Block until one or more containers stop, then print their exit codes",
         group="container", top_level=True)
@arguments(_names_args)
def wait(ctx: Context, args):
    containers = ctx.engine.containers
    codes = []
    for name in args.containers:
        code = containers.get(name).wait()["StatusCode"]
        codes.append(code)
        ctx.print(code)
    return codes


def _rm_args(p):
    p.add_argument("-f", "--force", action="store_true", help="force the removal of a running container")
    p.add_argument("-v", "--volumes", action="store_true", help="remove anonymous volumes")
    p.add_argument("-l", "--link", action="store_true", help="remove the specified link (no-op)")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")


@command("rm", "Remove one or more containers", group="container", top_level=True,
         aliases=("remove",))
@arguments(_rm_args)
def rm(ctx: Context, args):
    containers = ctx.engine.containers
    return for_each(ctx, args.containers,
                    lambda n: containers.get(n).remove(force=args.force, v=args.volumes))


# ----------------------------------------------------------------------------------- ps


def _ps_args(p):
    p.add_argument("-a", "--all", action="store_true", help="show all containers")
    p.add_argument("-q", "--quiet", action="store_true", help="only display container IDs")
    p.add_argument("-n", "--last", type=int, default=-1, help="show n last created containers")
    p.add_argument("-l", "--latest", action="store_true", help="show the latest created container")
    p.add_argument("-s", "--size", action="store_true", help="display total file sizes")
    p.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    p.add_argument("-f", "--filter", action="append", default=[], help="filter output")
    p.add_argument("--format", help="format output with a Go template, 'table …' or 'json'")


@command("ls", "List containers", group="container", top_level=True, top_name="ps",
         aliases=("list", "ps"))
@arguments(_ps_args)
def ps(ctx: Context, args):
    limit = 1 if args.latest else (args.last if args.last >= 0 else None)
    found = ctx.engine.containers.list(all=args.all or limit is not None,
                                       filters=parse_filters(args.filter), limit=limit,
                                       sparse=True, size=args.size and not args.quiet)
    if args.quiet:
        ids = [c.id if args.no_trunc else c.id[:12] for c in found]
        for ident in ids:
            ctx.print(ident)
        return ids
    from ..listing import ps_row

    rows = [ps_row(c.attrs, no_trunc=args.no_trunc) for c in found]
    default = PS_DEFAULT + ("\t{{.Size}}" if args.size else "")
    print_table(ctx, args.format, rows, default, PS_HEADERS)
    return rows


# ----------------------------------------------------------------------------------- logs


def _logs_args(p):
    p.add_argument("-f", "--follow", action="store_true", help="follow log output")
    p.add_argument("-t", "--timestamps", action="store_true", help="show timestamps")
    p.add_argument("-n", "--tail", default="all", help="number of lines to show from the end")
    p.add_argument("--since", help="show logs since timestamp or relative (e.g. 42m)")
    p.add_argument("--until", help="show logs before a timestamp or relative (e.g. 42m)")
    p.add_argument("--details", action="store_true", help="show extra details (no-op)")
    p.add_argument("container", metavar="CONTAINER")


@command("logs", "Fetch the logs of a container", group="container", top_level=True)
@arguments(_logs_args)
def logs(ctx: Context, args):
    container = ctx.engine.containers.get(args.container)
    entries = container.logs(stream=True, follow=args.follow, timestamps=args.timestamps,
                             tail=args.tail, since=args.since, until=args.until)
    out = getattr(ctx, "stdout_binary", None)
    for stream, data in entries:
        if stream == "stderr" and ctx.err is sys.stderr:
            binary_stream(ctx.err).write(data)
            ctx.err.flush()
        elif out is not None:
            out.write(data)
            if args.follow:
                out.flush()
        else:
            (ctx.err if stream == "stderr" else ctx.out).write(data.decode(errors="replace"))
    if out is not None:
        out.flush()
    return 0


# ----------------------------------------------------------------------------------- top, inspect


def _top_args(p):
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("ps_args", nargs=REMAINDER, help="ps options (ignored)")


@command("top", "Display the running processes of a container", group="container", top_level=True)
@arguments(_top_args)
def top(ctx: Context, args):
    result = ctx.engine.containers.get(args.container).top()
    rows = [result["Titles"]] + result["Processes"]
    widths = [max(len(r[i]) for r in rows) for i in range(len(result["Titles"]) - 1)]
    for r in rows:
        ctx.print("   ".join(c.ljust(w) for c, w in zip(r, widths)) + "   " + r[-1])
    return result


def _container_inspector(engine, name: str) -> dict:
    return engine.containers.get(name).attrs


if not any(t == "container" for t, _ in _images.INSPECTORS):
    _images.INSPECTORS.insert(0, ("container", _container_inspector))


def _cinspect_args(p):
    p.add_argument("-f", "--format", help="format the output using a Go template or 'json'")
    p.add_argument("-s", "--size", action="store_true", help="display total file sizes")
    p.add_argument("names", nargs="+", metavar="CONTAINER")


@command("inspect", "Display detailed information on one or more containers", group="container")
@arguments(_cinspect_args)
def container_inspect(ctx: Context, args):
    def lookup(name: str) -> dict:
        return ctx.engine.containers.get(name, size=args.size).attrs

    return inspect_each(ctx, args.names, lookup, args.format, "container")


# ----------------------------------------------------------------------------------- exec, attach


def _exec_args(p):
    p.add_argument("-d", "--detach", action="store_true", help="detached mode")
    p.add_argument("-i", "--interactive", action="store_true", help="keep STDIN open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    p.add_argument("-e", "--env", action="append", default=[], help="set environment variables")
    p.add_argument("--env-file", action="append", default=[], help="read environment files")
    p.add_argument("-w", "--workdir", default="", help="working directory inside the container")
    p.add_argument("-u", "--user", default="", help="username or UID")
    p.add_argument("--privileged", action="store_true", help="(accepted, no extra privileges)")
    p.add_argument("--detach-keys", help="override the key sequence for detaching")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("command", nargs=REMAINDER, help="COMMAND [ARG...]")


@command("exec", "Execute a command in a running container", group="container", top_level=True)
@arguments(_exec_args)
def exec_(ctx: Context, args):
    if not args.command:
        raise InvalidArgument("exec requires at least 2 arguments")
    env = exec_environment(args.env_file, args.env)
    container = ctx.engine.containers.get(args.container)
    out, err = _stdio(ctx)
    ctx.out.flush()
    return container.exec_attached(args.command, ctx.stdin if args.interactive else None, out,
                                   err, tty=args.tty, environment=env, workdir=args.workdir,
                                   user=args.user, detach=args.detach)


def _attach_args(p):
    p.add_argument("--detach-keys", default="ctrl-p,ctrl-q", help="detach key sequence")
    p.add_argument("--no-stdin", action="store_true", help="do not attach STDIN")
    p.add_argument("--sig-proxy", default="true",
                   help="proxy all received signals to the process (non-TTY only; "
                        "--sig-proxy=false: none)")
    p.add_argument("container", metavar="CONTAINER")


@command("attach", "Attach local standard input, output, and error streams to a running container",
         group="container", top_level=True)
@arguments(_attach_args)
def attach_(ctx: Context, args):
    from .sigproxy import SignalProxy, parse_bool

    sig_proxy = parse_bool(args.sig_proxy, "--sig-proxy")
    container = ctx.engine.containers.get(args.container)
    stdin = None if args.no_stdin else ctx.stdin
    tty = bool(container.attrs["Config"].get("Tty"))
    out, err = _stdio(ctx)
    # Docker's attach proxies signals, ^C's SIGINT too, without a terminal only; with
    # --sig-proxy=false ^C ends the client and leaves the container running (as it does here
    # with a terminal: the keys go to the container, ctrl-p ctrl-q detaches)
    with SignalProxy(proxy=sig_proxy, interrupt=True, owner=not ctx.magic and not tty) as proxy, \
            _terminal(ctx, stdin, tty) as size:
        proxy.engage(container)
        code = container.attach(stdin, out, err, detach_keys=args.detach_keys, tty_size=size)
    return 0 if code is None else code


# ----------------------------------------------------------------------------------- cp


def _split_cp(arg: str) -> tuple[str | None, str]:
    """``CONTAINER:PATH`` → (container, path); a local path (``/x``, ``./a:b``) → (None, arg)."""
    if arg == "-" or arg.startswith(("/", ".")):
        return None, arg
    name, sep, path = arg.partition(":")
    if not sep or not name:
        return None, arg
    return name, path or "/"


def _cp_args(p):
    p.add_argument("-a", "--archive", action="store_true", help="archive mode (keep uid/gid)")
    p.add_argument("-L", "--follow-link", action="store_true", help="follow symlink in SRC_PATH")
    p.add_argument("-q", "--quiet", action="store_true", help="suppress progress output")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dest", metavar="DEST")


@command("cp", "Copy files/folders between a container and the local filesystem",
         group="container", top_level=True)
@arguments(_cp_args)
def cp(ctx: Context, args):
    src_ctr, src = _split_cp(args.src)
    dst_ctr, dest = _split_cp(args.dest)
    if (src_ctr is None) == (dst_ctr is None):
        raise InvalidArgument("copying between containers or between local paths is not "
                              "supported: one side must be CONTAINER:PATH")
    containers = ctx.engine.containers
    if src_ctr is not None:
        container = containers.get(src_ctr)
        if dest == "-":
            out, _err = _stdio(ctx)
            container.get_archive(src, out, follow_links=args.follow_link)
            out.flush()
        else:
            container.copy_out(src, dest, archive=args.archive, follow_links=args.follow_link)
        return 0
    assert dst_ctr is not None  # (one side is a container)
    container = containers.get(dst_ctr)
    if src == "-":
        if ctx.stdin is None:
            raise InvalidArgument("cp -: nothing on standard input")
        container.put_archive(dest, ctx.stdin)
    else:
        container.copy_in(src, dest, follow_links=args.follow_link)
    return 0


# ----------------------------------------------------------------------------------- commit & co


def _commit_args(p):
    p.add_argument("-a", "--author", default="", help="author")
    p.add_argument("-m", "--message", default="", help="commit message")
    p.add_argument("-c", "--change", action="append", default=[],
                   help="apply Dockerfile instruction to the created image")
    p.add_argument("-p", "--pause", nargs="?", const="true", default="true",
                   help="pause container during commit (default true)")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")


@command("commit", "Create a new image from a container's changes", group="container",
         top_level=True)
@arguments(_commit_args)
def commit(ctx: Context, args):
    pause_ = str(args.pause).lower() not in ("false", "0", "no")
    image = ctx.engine.containers.get(args.container).commit(
        args.repository, author=args.author, message=args.message, changes=args.change,
        pause=pause_)
    ctx.print(image.id)
    return image.id


def _export_args(p):
    p.add_argument("-o", "--output", help="write to a file, instead of STDOUT")
    p.add_argument("container", metavar="CONTAINER")


@command("export", "Export a container's filesystem as a tar archive", group="container",
         top_level=True)
@arguments(_export_args)
def export(ctx: Context, args):
    container = ctx.engine.containers.get(args.container)
    if args.output:
        tmp = args.output + ".part"
        try:
            with open(tmp, "wb") as f:
                container.export(f)
            os.replace(tmp, args.output)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return 0
    out, _err = _stdio(ctx)
    if hasattr(out, "isatty") and out.isatty():
        raise InvalidArgument("cowardly refusing to save to a terminal. Use the -o flag or "
                              "redirect")
    container.export(out)
    out.flush()
    return 0


def _one_arg(p):
    p.add_argument("container", metavar="CONTAINER")


@command("diff", "Inspect changes to files or directories on a container's filesystem",
         group="container", top_level=True)
@arguments(_one_arg)
def diff(ctx: Context, args):
    kinds = "CAD"
    changes = [(kinds[c["Kind"]], c["Path"])
               for c in ctx.engine.containers.get(args.container).diff()]
    for kind, path in changes:
        ctx.print(f"{kind} {path}")
    return changes


def _rename_args(p):
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("new_name", metavar="NEW_NAME")


@command("rename", "Rename a container", group="container", top_level=True)
@arguments(_rename_args)
def rename(ctx: Context, args):
    ctx.engine.containers.get(args.container).rename(args.new_name)
    return 0


def _update_args(p):
    p.add_argument("-m", "--memory", help="memory limit")
    p.add_argument("--memory-swap", help="swap limit equal to memory plus swap: '-1' to enable "
                                         "unlimited swap")
    p.add_argument("--cpus", help="number of CPUs")
    p.add_argument("-c", "--cpu-shares", type=int, help="CPU shares (relative weight)")
    p.add_argument("--pids-limit", type=int, help="tune container pids limit (-1 for unlimited)")
    p.add_argument("--restart", help="restart policy to apply when a container exits")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")


@command("update", "Update configuration of one or more containers", group="container",
         top_level=True)
@arguments(_update_args)
def update(ctx: Context, args):
    from ..units import parse_size
    from .container_options import parse_cpus, parse_restart, parse_swap

    change = {
        "mem_limit": parse_size(args.memory) if args.memory else None,
        "memswap_limit": parse_swap(args.memory_swap) if args.memory_swap else None,
        "nano_cpus": parse_cpus(args.cpus) if args.cpus else None,
        "cpu_shares": args.cpu_shares, "pids_limit": args.pids_limit,
        "restart_policy": parse_restart(args.restart) if args.restart else None,
    }
    change = {k: v for k, v in change.items() if v is not None}
    if not change:
        raise InvalidArgument("you must provide one or more flags when using this command")
    warnings: list[str] = []
    result = for_each(ctx, args.containers, lambda name: warnings.extend(
        ctx.engine.containers.get(name).update(**change)["Warnings"]))
    for line in dict.fromkeys(warnings):
        ctx.print(line)
    return result


def _port_args(p):
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("private_port", nargs="?", metavar="PRIVATE_PORT[/PROTO]")


@command("port", "List port mappings or a specific mapping for the container", group="container",
         top_level=True)
@arguments(_port_args)
def port(ctx: Context, args):
    container = ctx.engine.containers.get(args.container)
    bindings = container.ports()
    lines = []
    want = None
    if args.private_port:
        p, _, proto = args.private_port.partition("/")
        want = f"{p}/{proto or 'tcp'}"
        if want not in bindings:
            raise NotFound(f"No public port '{want}' published for {container.name}")
    for key in sorted(bindings):
        if want and key != want:
            continue
        for b in bindings[key] or []:
            host = f"{b.get('HostIp') or '0.0.0.0'}:{b.get('HostPort') or ''}"
            lines.append(host if want else f"{key} -> {host}")
    for line in lines:
        ctx.print(line)
    return lines


def _stats_args(p):
    p.add_argument("-a", "--all", action="store_true", help="show all containers")
    p.add_argument("--no-stream", action="store_true", help="print the first result only")
    p.add_argument("--no-trunc", action="store_true", help="do not truncate output")
    p.add_argument("--format", help="format output with a Go template")
    p.add_argument("containers", nargs="*", metavar="CONTAINER")


STATS_HEADERS = {"ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
                 "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O",
                 "BlockIO": "BLOCK I/O", "PIDs": "PIDS", "Container": "CONTAINER"}


@command("stats", "Display a live stream of container(s) resource usage statistics",
         group="container", top_level=True)
@arguments(_stats_args)
def stats(ctx: Context, args):
    from ..units import human_size

    coll = ctx.engine.containers
    if args.containers:
        recs = [coll.get(n) for n in args.containers]
    else:
        recs = list(coll.list(all=args.all, sparse=True))
    total_mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    ncpu = os.cpu_count() or 1
    default = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t"
               "{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}")

    def sample() -> dict:
        return {r.id: (time.monotonic(), r.stats()) for r in recs}

    rows: list[dict] = []
    first = sample()
    while True:
        time.sleep(0.5)
        second = sample()
        rows = []
        for r in recs:
            t0, s0 = first[r.id]
            t1, s1 = second[r.id]
            c0 = (s0["cpu_stats"].get("cpu_usage") or {}).get("total_usage", 0)
            c1 = (s1["cpu_stats"].get("cpu_usage") or {}).get("total_usage", 0)
            cpu = max(c1 - c0, 0) / 1e9 / max(t1 - t0, 1e-6) * 100
            usage = s1["memory_stats"].get("usage", 0)
            limit = s1["memory_stats"].get("limit") or total_mem
            limit = min(limit, total_mem)
            rows.append({
                "ID": r.id if args.no_trunc else r.id[:12], "Container": r.id[:12],
                "Name": r.name, "CPUPerc": f"{min(cpu, 100 * ncpu):.2f}%",
                "MemUsage": f"{_bin_size(usage)} / {_bin_size(limit)}",
                "MemPerc": f"{(usage / limit * 100) if limit else 0:.2f}%",
                "NetIO": "0B / 0B", "BlockIO": "0B / 0B",
                "PIDs": str(s1["pids_stats"].get("current", 0)),
            })
        if not args.no_stream and getattr(ctx, "interactive", False):
            ctx.out.write("\x1b[2J\x1b[H")
        print_table(ctx, args.format, rows, default, STATS_HEADERS)
        if args.no_stream:
            break
        ctx.out.flush()
        first = second
    del human_size
    return rows


def _bin_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.4g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1024
    return f"{n}B"


def _prune_args(p):
    p.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], help="provide filter values")


@command("prune", "Remove all stopped containers", group="container")
@arguments(_prune_args)
def prune(ctx: Context, args):
    from ..units import human_size

    result = ctx.engine.containers.prune(filters=parse_filters(args.filter))
    deleted = result["ContainersDeleted"] or []
    if deleted:
        ctx.print("Deleted Containers:")
        for cid in deleted:
            ctx.print(cid)
        ctx.print("")
    ctx.print(f"Total reclaimed space: {human_size(result['SpaceReclaimed'])}")
    return result


__all__ = ["ContainerExit", "PS_HEADERS", "PS_DEFAULT"]
