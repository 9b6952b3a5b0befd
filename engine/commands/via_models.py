"""Command handlers that use the model API only, for engines other than the embedded one.

The embedded engine's handlers (``containers.py``, ``registry.py``, ``system.py``, ``repro.py``)
still reach into its internals for some verbs: the foreground ``run``, ``ps``'s records, ``exec``
through the lifecycle, ``cp`` through the container's root filesystem, ``events`` through its
log, ``pull`` through the registry client. Until every front speaks only the model API (#16),
a context whose engine is not the embedded one (a Docker Engine) runs the handlers of this module
instead, which take the same parsed arguments and print Docker's output from what the models
return. :func:`portside.engine.cli.handler_for` picks them.

Every handler here works on any engine that answers the model API.
"""

from __future__ import annotations

import os
import time

from ..cli import Context, binary_stream, for_each, inspect_each, parse_filters, print_table
from ..errors import EngineError, IncorrectState, InvalidArgument, NotFound

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Callable


def _engine_name(ctx: Context) -> str:
    return getattr(ctx.engine, "context", "default")


# ------------------------------------------------------------------------------ create / run
def _pull_progress(ctx: Context):
    if ctx.progress is not None:
        return ctx.progress
    from ..registry.progress import TerminalRenderer

    return TerminalRenderer(ctx.err, tty=False)


def _create(ctx: Context, args):
    from .container_options import build_create

    if getattr(args, "locked", False):
        raise ctx.engine.unsupported("--locked", "the lock is enforced in the default context")
    if getattr(args, "pull", "missing") not in ("missing", None):
        raise InvalidArgument(f"--pull {args.pull}: only 'missing' is supported")
    config, host_config, name = build_create(args)
    if host_config.get("Gpus"):
        from ..docker.containers import _gpu_request

        host_config["DeviceRequests"] = [_gpu_request(host_config["Gpus"])]
    coll = ctx.engine.containers
    try:
        return coll.create_from(config, host_config, name=name, pull=False)
    except NotFound as exc:
        if "image" not in str(exc).lower():
            raise
        ctx.err.write(f"Unable to find image '{args.image}' locally\n")
        ctx.engine.images.pull(args.image, progress=_pull_progress(ctx))
        return coll.create_from(config, host_config, name=name, pull=False)


def create(ctx: Context, args):
    container = _create(ctx, args)
    for warning in container.attrs.get("HostConfig", {}).get("Warnings") or []:
        ctx.err.write(f"WARNING: {warning}\n")
    ctx.print(container.id)
    return container


def run(ctx: Context, args):
    container = _create(ctx, args)
    if args.detach:
        try:
            container.start()
        except EngineError:
            if args.rm:
                _quiet(lambda: container.remove(force=True))
            raise
        ctx.print(container.id)
        return container.id
    return _foreground(ctx, container, interactive=args.interactive, remove=args.rm, start=True)


def _quiet(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except EngineError:
        pass


def _foreground(ctx: Context, container, *, interactive: bool, remove: bool,
                start: bool) -> int:
    """Attach, start, copy the output until it ends, and return its status (Docker's run)."""
    import threading

    tty = bool(container.attrs["Config"].get("Tty"))
    conn = container.attach_socket(stdin=interactive and ctx.stdin is not None)
    feeder = None
    # asked before the start, as Docker's CLI asks: a container dockerd removes once it
    # exits (--rm) must not be gone before its status is read
    auto_remove = bool((container.attrs.get("HostConfig") or {}).get("AutoRemove"))
    status = container.wait_later("removed" if auto_remove else
                                  ("next-exit" if start else "not-running"))
    try:
        if start:
            try:
                container.start()
            except EngineError:
                if remove:
                    _quiet(lambda: container.remove(force=True))
                raise
        if interactive and ctx.stdin is not None:
            def feed() -> None:
                try:
                    for chunk in iter(lambda: ctx.stdin.read1(65536) if hasattr(ctx.stdin, "read1")
                                      else ctx.stdin.read(65536), b""):
                        conn.send(chunk)
                except (OSError, ValueError):
                    pass
                conn.close_write()

            feeder = threading.Thread(target=feed, daemon=True)
            feeder.start()
        out = ctx.stdout_binary or binary_stream(ctx.out)
        err = binary_stream(ctx.err)
        try:
            for stream, data in conn.frames(tty):
                target = err if stream == "stderr" else out
                target.write(data)
                target.flush()
        except KeyboardInterrupt:
            _quiet(lambda: container.kill("INT"))
            raise
    finally:
        conn.close()
    code = status()
    if remove and not auto_remove:
        _quiet(lambda: container.remove(force=True))
    return code


# ------------------------------------------------------------------------------ verbs
def start(ctx: Context, args):
    coll = ctx.engine.containers
    if args.attach or args.interactive:
        if len(args.containers) > 1:
            raise InvalidArgument("you cannot start and attach multiple containers at once")
        container = coll.get(args.containers[0])
        return _foreground(ctx, container, interactive=args.interactive, remove=False,
                           start=True)
    return for_each(ctx, args.containers, lambda n: coll.get(n).start())


def stop(ctx: Context, args):
    coll = ctx.engine.containers
    if args.signal:
        raise ctx.engine.unsupported("stop --signal")
    return for_each(ctx, args.containers, lambda n: coll.get(n).stop(timeout=args.time))


def restart(ctx: Context, args):
    coll = ctx.engine.containers
    return for_each(ctx, args.containers, lambda n: coll.get(n).restart(timeout=args.time))


def kill(ctx: Context, args):
    coll = ctx.engine.containers
    return for_each(ctx, args.containers, lambda n: coll.get(n).kill(args.signal))


def pause(ctx: Context, args):
    coll = ctx.engine.containers
    return for_each(ctx, args.containers, lambda n: coll.get(n).pause())


def unpause(ctx: Context, args):
    coll = ctx.engine.containers
    return for_each(ctx, args.containers, lambda n: coll.get(n).unpause())


def wait(ctx: Context, args):
    coll = ctx.engine.containers
    codes = []
    for name in args.containers:
        code = coll.get(name).wait()["StatusCode"]
        codes.append(code)
        ctx.print(code)
    return codes


def rm(ctx: Context, args):
    coll = ctx.engine.containers
    return for_each(ctx, args.containers,
                    lambda n: coll.get(n).remove(force=args.force, v=args.volumes))


def rename(ctx: Context, args):
    ctx.engine.containers.get(args.container).rename(args.new_name)
    return 0


# ------------------------------------------------------------------------------ ps
def _when(text: str | None) -> float:
    from ..image.oci import parse_time

    return parse_time(text) if text and not text.startswith("0001-") else 0.0


def status_text(attrs: dict, now: float | None = None) -> str:
    """Docker's STATUS column from an inspect document."""
    from ..units import human_duration

    now = now or time.time()
    state = attrs.get("State") or {}
    status = state.get("Status", "")
    if status in ("running", "paused"):
        text = "Up " + human_duration(now - (_when(state.get("StartedAt")) or now))
        return text + (" (Paused)" if status == "paused" else "")
    finished = _when(state.get("FinishedAt")) or now
    if status == "restarting":
        return f"Restarting ({state.get('ExitCode', 0)}) {human_duration(now - finished)} ago"
    if status == "exited":
        return f"Exited ({state.get('ExitCode', 0)}) {human_duration(now - finished)} ago"
    if status == "removing":
        return "Removal In Progress"
    if status == "dead":
        return "Dead"
    return "Created"


def ports_text(attrs: dict) -> str:
    ports = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    bound = {k: v for k, v in ports.items() if v}
    parts = [f"{b.get('HostIp') or '0.0.0.0'}:{b.get('HostPort') or ''}->{port}"
             for port, binds in sorted(bound.items()) for b in binds]
    exposed = set(ports) | set((attrs.get("Config") or {}).get("ExposedPorts") or {})
    parts += [port for port in sorted(exposed) if port not in bound]
    return ", ".join(parts)


def command_text(attrs: dict, trunc: bool) -> str:
    """Docker's COMMAND column: the path and arguments (those with a space in single
    quotes), cut at 20 characters with an ellipsis, double-quoted."""
    import json

    args = [f"'{a}'" if " " in a else a for a in attrs.get("Args") or []]
    text = " ".join([attrs.get("Path") or ""] + args).strip()
    if trunc and len(text) > 20:
        text = text[:19] + "…"
    return json.dumps(text, ensure_ascii=False)


def ps_row(container, *, no_trunc: bool = False) -> dict:
    from ..image.oci import rfc3339
    from ..units import human_duration

    attrs = container.attrs
    now = time.time()
    created = _when(attrs.get("Created"))
    cfg = attrs.get("Config") or {}
    labels = cfg.get("Labels") or {}
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    mounts = attrs.get("Mounts") or []
    return {
        "ID": container.id if no_trunc else container.id[:12],
        "Image": cfg.get("Image") or attrs.get("Image", ""),
        "Command": command_text(attrs, not no_trunc),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(created)),
        "RunningFor": human_duration(now - created) + " ago",
        "Status": status_text(attrs, now),
        "State": (attrs.get("State") or {}).get("Status", ""),
        "Ports": ports_text(attrs),
        "Names": container.name,
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "Mounts": ",".join(m.get("Name") or m.get("Source", "") for m in mounts),
        "Networks": ",".join(networks),
        "LocalVolumes": str(sum(1 for m in mounts if m.get("Type") == "volume")),
        "Size": "", "GPUs": "", "Created": rfc3339(created),
    }


def ps(ctx: Context, args):
    from .containers import PS_DEFAULT, PS_HEADERS

    limit = 1 if args.latest else (args.last if args.last >= 0 else None)
    containers = ctx.engine.containers.list(all=args.all or limit is not None,
                                            filters=parse_filters(args.filter) or None,
                                            limit=limit)
    if args.quiet:
        ids = [c.id if args.no_trunc else c.id[:12] for c in containers]
        for ident in ids:
            ctx.print(ident)
        return ids
    rows = [ps_row(c, no_trunc=args.no_trunc) for c in containers]
    if args.size:
        raise ctx.engine.unsupported("ps --size")
    print_table(ctx, args.format, rows, PS_DEFAULT, PS_HEADERS)
    return rows


def container_inspect(ctx: Context, args):
    if args.size:
        raise ctx.engine.unsupported("inspect --size")
    return inspect_each(ctx, args.names, lambda n: ctx.engine.containers.get(n).attrs,
                        args.format, "container")


# ------------------------------------------------------------------------------ exec, attach
def exec_(ctx: Context, args):
    import subprocess

    from .container_options import _env_value, _read_env_file

    if not args.command:
        raise InvalidArgument("exec requires at least 2 arguments")
    env = []
    for path in args.env_file:
        env += [v for v in (_env_value(x) for x in _read_env_file(path)) if v]
    env += [v for v in (_env_value(x) for x in args.env) if v]
    container = ctx.engine.containers.get(args.container)
    if args.detach:
        container.exec_run(args.command, detach=True, environment=env, workdir=args.workdir,
                           user=args.user, tty=args.tty)
        return 0
    ctx.out.flush()
    if args.tty and not (ctx.stdin is not None and hasattr(ctx.stdin, "fileno")
                         and os.isatty(ctx.stdin.fileno())):
        args.tty = False  # no terminal here: Docker's CLI refuses, we run without one
    proc = container.exec_popen(list(args.command), user=args.user or None,
                                workdir=args.workdir or None, env=env or None, tty=args.tty,
                                stdin=None if args.interactive else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                privileged=args.privileged)
    _pump_process(ctx, proc)
    return proc.wait()


def _pump_process(ctx: Context, proc) -> None:
    """Copy an exec's stdout and stderr to ours as they come."""
    import selectors

    out = ctx.stdout_binary or binary_stream(ctx.out)
    err = binary_stream(ctx.err)
    sel = selectors.DefaultSelector()
    for f, target in ((proc.stdout, out), (proc.stderr, err)):
        sel.register(f, selectors.EVENT_READ, target)
    try:
        while sel.get_map():
            for key, _ in sel.select():
                data = os.read(key.fileobj.fileno(), 65536)
                if not data:
                    sel.unregister(key.fileobj)
                    continue
                key.data.write(data)
                key.data.flush()
    except KeyboardInterrupt:
        proc.send_signal(2)
        raise
    finally:
        sel.close()


def attach_(ctx: Context, args):
    container = ctx.engine.containers.get(args.container)
    if container.status != "running":
        raise IncorrectState("You cannot attach to a stopped container, start it first")
    interactive = not args.no_stdin and bool(container.attrs["Config"].get("OpenStdin"))
    return _foreground(ctx, container, interactive=interactive, remove=False, start=False)


# ------------------------------------------------------------------------------ cp
def cp(ctx: Context, args):
    from .containers import _split_cp

    src_ctr, src = _split_cp(args.src)
    dst_ctr, dest = _split_cp(args.dest)
    if (src_ctr is None) == (dst_ctr is None):
        raise InvalidArgument("copying between containers or between local paths is not "
                              "supported: one side must be CONTAINER:PATH")
    coll = ctx.engine.containers
    if src_ctr is not None:
        container = coll.get(src_ctr)
        if not src.startswith("/"):
            src = "/" + src
        if dest == "-":
            out = ctx.stdout_binary or binary_stream(ctx.out)
            container.get_archive(src, out)
            out.flush()
            return 0
        copy_out(container, src, dest, archive=args.archive, follow=args.follow_link)
        return 0
    container = coll.get(dst_ctr)
    if not dest.startswith("/"):
        dest = "/" + dest
    copy_in(container, src, dest, stdin=ctx.stdin, follow=args.follow_link)
    return 0


def copy_out(container, src: str, dest: str, *, archive: bool = False,
             follow: bool = False) -> None:
    """Docker's ``cp CTR:SRC DEST``: a folder that exists receives SRC under its own name;
    otherwise SRC is written as DEST. The archive is unpacked confined to its target."""
    import shutil
    import tempfile

    dest_path = os.path.abspath(dest)
    into = os.path.isdir(dest_path) and not dest.endswith("/.")
    if dest.endswith("/") and not os.path.isdir(dest_path):
        raise NotFound(f"destination directory {dest} does not exist")
    if not os.path.isdir(os.path.dirname(dest_path) or "/"):
        raise NotFound(f"destination directory {os.path.dirname(dest)} does not exist")
    with tempfile.TemporaryDirectory(prefix=".portside-cp-",
                                     dir=dest_path if into else os.path.dirname(dest_path)) as tmp:
        data = os.path.join(tmp, "archive.tar")
        with open(data, "wb") as f:
            stat = container.get_archive(src, f, follow_links=follow)
        staging = os.path.join(tmp, "unpacked")
        os.mkdir(staging)
        _extract(data, staging, keep_owner=archive)
        entry = os.path.join(staging, stat["name"])
        # into a folder SRC keeps its own name (a followed link's, not its target's)
        target = os.path.join(dest_path, os.path.basename(src.rstrip("/")) or stat["name"]) \
            if into else dest_path
        if src.endswith("/.") and os.path.isdir(dest_path):
            for name in os.listdir(entry):
                _move(os.path.join(entry, name), os.path.join(dest_path, name))
            return
        if os.path.isdir(target) and not os.path.islink(target) and os.path.isdir(entry):
            for name in os.listdir(entry):
                _move(os.path.join(entry, name), os.path.join(target, name))
            return
        if os.path.lexists(target) and os.path.isdir(target) != os.path.isdir(entry):
            raise InvalidArgument(f"cannot overwrite {'directory' if os.path.isdir(target) else 'non-directory'} "
                                  f"{dest} with {'directory' if os.path.isdir(entry) else 'non-directory'}")
        if os.path.lexists(target) and not os.path.isdir(target):
            os.unlink(target)
        shutil.move(entry, target)


def _move(src: str, dst: str) -> None:
    import shutil

    if os.path.isdir(src) and os.path.isdir(dst) and not os.path.islink(dst):
        for name in os.listdir(src):
            _move(os.path.join(src, name), os.path.join(dst, name))
        return
    if os.path.lexists(dst) and not os.path.isdir(dst):
        os.unlink(dst)
    shutil.move(src, dst)


def _extract(path: str, dest: str, *, keep_owner: bool) -> None:
    """Unpack a tar from the daemon into ``dest`` with tarfile's ``data`` filter: nothing
    outside ``dest``, no devices; owners only with ``-a`` (as Docker's CLI)."""
    import tarfile

    def owned(member, target):
        safe = tarfile.data_filter(member, target)  # also drops the owner
        if safe is not None and os.geteuid() == 0:
            return safe.replace(uid=member.uid, gid=member.gid, uname=None, gname=None,
                                deep=False)
        return safe

    with tarfile.open(path) as tar:
        tar.extractall(dest, filter=owned if keep_owner else "data")


def copy_in(container, src: str, dest: str, *, stdin=None, follow: bool = False) -> None:
    """Docker's ``cp SRC CTR:DEST``: into a folder that exists, SRC keeps its name (``SRC/.``:
    its contents go in); otherwise it becomes DEST. ``-`` unpacks a tar from ``stdin``."""
    import tarfile
    import tempfile

    if src == "-":
        if stdin is None:
            raise InvalidArgument("cp -: nothing on standard input")
        container.put_archive(dest, stdin)
        return
    if not os.path.lexists(src):
        raise NotFound(f"no such file or directory: {src}")
    local = os.path.realpath(src) if follow else src
    contents = src.endswith("/.") and os.path.isdir(local)
    stat = container.stat(dest)
    if stat is not None and stat["mode"] & _MODE_DIR:
        parent, top = dest, "." if contents else os.path.basename(os.path.normpath(src))
    elif dest.endswith("/"):
        raise NotFound(f"destination directory {dest} does not exist")
    else:
        parent = os.path.dirname(dest.rstrip("/")) or "/"
        top = os.path.basename(dest.rstrip("/"))
    with tempfile.TemporaryFile() as buf:
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(local, arcname=top)
        buf.seek(0)
        container.put_archive(parent, buf)


#: Go's os.ModeDir, as Docker's archive stat reports a folder's mode.
_MODE_DIR = 1 << 31


# ------------------------------------------------------------------------------ commit & co
def commit(ctx: Context, args):
    container = ctx.engine.containers.get(args.container)
    pause_ = str(args.pause).lower() not in ("false", "0", "no")
    image = container.commit(args.repository, message=args.message, author=args.author,
                             changes=args.change, pause=pause_)
    ctx.print(image.id)
    return image.id


def diff(ctx: Context, args):
    kinds = {0: "C", 1: "A", 2: "D"}
    changes = [(kinds[c["Kind"]], c["Path"]) for c in
               ctx.engine.containers.get(args.container).diff()]
    for kind, path in changes:
        ctx.print(f"{kind} {path}")
    return changes


def port(ctx: Context, args):
    container = ctx.engine.containers.get(args.container)
    bindings = container.port()
    want = None
    if args.private_port:
        p, _, proto = args.private_port.partition("/")
        want = f"{p}/{proto or 'tcp'}"
        if want not in bindings:
            raise NotFound(f"No public port '{want}' published for {container.name}")
    lines = []
    for key in sorted(bindings):
        if want and key != want:
            continue
        for b in bindings[key] or []:
            host = f"{b.get('HostIp') or '0.0.0.0'}:{b.get('HostPort') or ''}"
            lines.append(host if want else f"{key} -> {host}")
    for line in lines:
        ctx.print(line)
    return lines


def stats(ctx: Context, args):
    from .containers import STATS_HEADERS, _bin_size

    coll = ctx.engine.containers
    containers = [coll.get(n) for n in args.containers] if args.containers else \
        coll.list(all=args.all)
    default = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t"
               "{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}")
    rows: list[dict] = []
    while True:
        rows = []
        for c in containers:
            s = c.stats()
            cpu = s.get("cpu_stats") or {}
            pre = s.get("precpu_stats") or {}
            cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - \
                (pre.get("cpu_usage") or {}).get("total_usage", 0)
            sys_delta = (cpu.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0)
            ncpu = cpu.get("online_cpus") or 1
            percent = cpu_delta / sys_delta * ncpu * 100 if sys_delta > 0 else 0.0
            mem = s.get("memory_stats") or {}
            usage = (mem.get("usage") or 0) - ((mem.get("stats") or {}).get("cache") or 0)
            limit = mem.get("limit") or 0
            nets = (s.get("networks") or {}).values()
            rx = sum(n.get("rx_bytes", 0) for n in nets)
            tx = sum(n.get("tx_bytes", 0) for n in nets)
            blk = (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
            rd = sum(b.get("value", 0) for b in blk if b.get("op", "").lower() == "read")
            wr = sum(b.get("value", 0) for b in blk if b.get("op", "").lower() == "write")
            rows.append({"ID": c.id if args.no_trunc else c.id[:12], "Container": c.id[:12],
                         "Name": c.name, "CPUPerc": f"{percent:.2f}%",
                         "MemUsage": f"{_bin_size(usage)} / {_bin_size(limit)}",
                         "MemPerc": f"{(usage / limit * 100) if limit else 0:.2f}%",
                         "NetIO": f"{_bin_size(rx)} / {_bin_size(tx)}",
                         "BlockIO": f"{_bin_size(rd)} / {_bin_size(wr)}",
                         "PIDs": str((s.get("pids_stats") or {}).get("current", 0))})
        if not args.no_stream and getattr(ctx, "interactive", False):
            ctx.out.write("\x1b[2J\x1b[H")
        print_table(ctx, args.format, rows, default, STATS_HEADERS)
        if args.no_stream:
            return rows
        ctx.out.flush()
        time.sleep(1)


# ------------------------------------------------------------------------------ registries
def pull(ctx: Context, args):
    from ..image.reference import parse_reference
    from .registry import _renderer

    if getattr(args, "locked", False):
        raise ctx.engine.unsupported("--locked", "the lock is enforced in the default context")
    if args.all_tags:
        raise ctx.engine.unsupported("pull --all-tags")
    ref = parse_reference(args.name, default_tag=None)
    name = args.name
    if ref.tag is None and ref.digest is None:
        if not args.quiet:
            ctx.print("Using default tag: latest")
        name = args.name + ":latest"
    image = ctx.engine.images.pull(name, platform=args.platform,
                                   progress=_renderer(ctx, args.quiet),
                                   tls_verify=args.tls_verify)
    full = parse_reference(name)
    ctx.print(str(full) if not full.digest else f"{full.name}@{full.digest}")
    return image


def push(ctx: Context, args):
    from .registry import _renderer

    digest = ctx.engine.images.push(args.name, progress=_renderer(ctx, args.quiet),
                                    tls_verify=args.tls_verify)
    if args.quiet:
        ctx.print(digest)
    return digest


def login(ctx: Context, args):
    password = args.password
    if args.password_stdin:
        if not args.username or ctx.stdin is None:
            raise InvalidArgument("must provide --username with --password-stdin")
        raw = ctx.stdin.read()
        password = (raw.decode() if isinstance(raw, bytes) else raw).rstrip("\r\n")
    if not args.username or not password:
        raise InvalidArgument("Cannot perform an interactive login from a non TTY device")
    result = ctx.engine.images.login(args.server or "", args.username, password)
    ctx.print(result)
    return 0


def search(ctx: Context, args):
    raise ctx.engine.unsupported("search")


# ------------------------------------------------------------------------------ system
def events(ctx: Context, args):
    import json

    from ..formatting import render
    from ..image.oci import rfc3339

    filters = parse_filters(args.filter)
    docker_filters = {("event" if k == "event" else k): v for k, v in filters.items()}
    since_ = float(args.since) if args.since else None
    until = float(args.until) if args.until else None
    for event in ctx.engine.system.events(since=since_, until=until,
                                          filters=docker_filters or None):
        doc = event.to_docker()
        if args.format == "json":
            ctx.print(json.dumps(doc))
        elif args.format:
            ctx.print(render(args.format, doc))
        else:
            attrs = ", ".join(f"{k}={v}" for k, v in sorted(event.attributes.items()))
            ctx.print(f"{rfc3339(event.time)} {event.type} {event.action} {event.actor}"
                      + (f" ({attrs})" if attrs else ""))
        ctx.out.flush()
    return 0


def lock(ctx: Context, args):
    raise ctx.engine.unsupported("lock", "the lock pins images of the default context")


#: "module.handler" of the embedded engine's handler -> the one to use for other engines.
HANDLERS: dict[str, Callable[[Context, Any], Any]] = {
    "containers.create": create, "containers.run": run, "containers.start": start,
    "containers.stop": stop, "containers.restart": restart, "containers.kill": kill,
    "containers.pause": pause, "containers.unpause": unpause, "containers.wait": wait,
    "containers.rm": rm, "containers.rename": rename, "containers.ps": ps,
    "containers.container_inspect": container_inspect, "containers.exec_": exec_,
    "containers.attach_": attach_, "containers.cp": cp, "containers.commit": commit,
    "containers.diff": diff, "containers.port": port, "containers.stats": stats,
    "registry.pull": pull, "registry.push": push, "registry.login": login,
    "registry.search": search, "system.events": events, "repro.lock": lock,
}


def handler_for(handler: Callable, engine: Any) -> Callable:
    """The handler to run ``handler``'s command on ``engine``."""
    if getattr(engine, "kind", "local") == "local":
        return handler
    key = f"{handler.__module__.rsplit('.', 1)[-1]}.{handler.__name__}"
    return HANDLERS.get(key, handler)

