"""Container commands: create, run, start, stop, restart, kill, pause, unpause, wait, rm, ps, logs,
top, inspect, exec, attach, cp, commit, export, diff, rename, port, stats, container prune.

Each is reachable as ``portside VERB`` and ``portside container VERB`` (``container ls`` is
``ps``), takes Docker's flags and prints Docker's output. ``run`` and ``create`` share one flag set
and one translation into Docker's ``Config``/``HostConfig`` documents, both in
:mod:`.container_options`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

from ..cli import (Context, arguments, binary_stream, command, for_each,
                   inspect_each, lock_active, parse_filters, print_table)
from ..errors import ContainerExit, EngineError, InvalidArgument, NotFound
from ..runtime.containers import network_mode
from . import images as _images
from .container_options import _env_value, _read_env_file, build_create, create_arguments

PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
              "RunningFor": "CREATED", "CreatedAt": "CREATED AT", "Status": "STATUS",
              "Ports": "PORTS", "Names": "NAMES", "Size": "SIZE", "State": "STATE",
              "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS", "GPUs": "GPUS",
              "LocalVolumes": "LOCAL VOLUMES"}
PS_DEFAULT = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t"
              "{{.Ports}}\t{{.Names}}")


def _lc(ctx: Context, *, light: bool = False):
    """The engine's container lifecycle. ``light``: for a verb on a running container (exec),
    a fresh process need not load the models layer (and the image store) just for this."""
    engine = ctx.engine
    if light and "containers" not in getattr(engine, "__dict__", {}):
        from ..runtime.lifecycle import Lifecycle

        return Lifecycle(engine)
    return engine.containers.lifecycle


# ----------------------------------------------------------------------------------- create / run


@command("create", "Create a new container", group="container", top_level=True)
@arguments(create_arguments)
def create(ctx: Context, args):
    _resolve_locked(ctx, args)
    config, host_config, name = build_create(args)
    container = ctx.engine.containers.create_from(config, host_config, name=name)
    for warning in container.attrs["HostConfig"].get("Warnings") or []:
        ctx.err.write(f"WARNING: {warning}\n")
    ctx.print(container.id)
    return container


def _run_args(p):
    p.add_argument("-d", "--detach", action="store_true",
                   help="run container in background and print container ID")
    create_arguments(p)


def _resolve_locked(ctx: Context, args) -> None:
    """Under a lock, the image name resolves to the pinned image (drift is an error)."""
    if lock_active(args):
        from ..cli import lock_forced
        from ..lock import enforce

        with lock_forced(args):
            args.image = enforce(ctx.engine, args.image)


@command("run", "Create and run a new container from an image", group="container",
         top_level=True)
@arguments(_run_args)
def run(ctx: Context, args):
    from ..runtime.containers import ContainerPaths, new_container_id
    from ..runtime.monitor import launch_monitor

    # The container's monitor starts first: its interpreter's start-up overlaps everything up to
    # the runtime's call (imports, the record, the root filesystem, the bundle).
    cid = new_container_id()
    launch = launch_monitor(cid, ContainerPaths(ctx.engine.root, cid).state_dir)
    try:
        _resolve_locked(ctx, args)
        config, host_config, name = build_create(args)
        lc = ctx.engine.containers.lifecycle
        rec = lc.create(config, host_config, name=name, container_id=cid)
    except BaseException:
        ctx.engine.containers.lifecycle.cancel_launch(launch)
        raise
    for warning in rec.host_config.get("Warnings") or []:
        ctx.err.write(f"WARNING: {warning}\n")
    if args.detach:
        try:
            lc.start(rec, launch=launch)
        except EngineError:
            if args.rm:  # the monitor removes it when it exits; one that never ran goes now
                _quiet_remove(lc, rec.id)
            raise
        ctx.print(rec.id)
        return rec.id
    return _run_attached(ctx, rec, interactive=args.interactive, tty=args.tty,
                         detach_keys=_detach_keys(args.detach_keys), start=True, launch=launch)


def _quiet_remove(lc, cid: str) -> None:
    try:
        lc.remove(cid, force=True)
    except EngineError:
        pass


def _detach_keys(text: str) -> bytes:
    """Docker's ``--detach-keys`` (``ctrl-p,ctrl-q``, ``a``) → the byte sequence."""
    out = bytearray()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("ctrl-") and len(part) == 6:
            ch = part[5]
            if ch == "@":
                out.append(0)
            elif ch in "[\\]^_":
                out.append(0x1b + "[\\]^_".index(ch))
            else:
                out.append(ord(ch.lower()) - ord("a") + 1)
        elif len(part) == 1:
            out.append(ord(part))
        else:
            raise InvalidArgument(f"invalid detach keys: {text}")
    return bytes(out)


def _run_attached(ctx: Context, ref, *, interactive: bool, tty: bool, detach_keys: bytes,
                  start: bool, launch=None) -> int:
    """Start (optionally) and attach: stream output, feed stdin, return the exit status.
    ``ref``: the container (id or record); ``launch``: its monitor, launched ahead (see
    ``Lifecycle.launch_monitor``)."""
    import threading

    coll = ctx.engine.containers
    lc = coll.lifecycle
    rec = ref if not isinstance(ref, str) else coll.store.resolve(ref)
    paths = lc.paths(rec)
    if start:
        try:
            # without -i/-t nobody can detach, so this process sees the exit and cleans up
            rec = lc.start(rec.id, watched=not (interactive or tty), launch=launch)
        except EngineError:
            if rec.host_config.get("AutoRemove"):
                _quiet_remove(lc, rec.id)
            raise
    ctx.out.flush()
    try:
        if tty:
            code = _attach_tty(ctx, lc, rec, interactive, detach_keys)
            if code is None:
                lc.unwatch(rec.id)
                return 0
        else:
            stdin_thread = None
            if interactive and ctx.stdin is not None:
                from ..runtime.monitor import attach

                def feed() -> None:
                    try:
                        attach(paths.attach_socket, ctx.stdin, None, None, detach_keys=b"")
                    except (EngineError, OSError):
                        pass

                stdin_thread = threading.Thread(target=feed, daemon=True)
                stdin_thread.start()
            _follow_output(ctx, paths, wake=lc.exit_fd(rec.id))
    except KeyboardInterrupt:
        # ^C, or a notebook's interrupt: stop the container, as Docker's signal proxy would, and
        # clean up after it before giving the interrupt back
        _interrupt_foreground(lc, rec)
        raise
    return _finish_foreground(lc, rec)


def _interrupt_foreground(lc, rec) -> None:
    from ..process import wait_until

    paths = lc.paths(rec)
    try:
        with contextlib.suppress(EngineError):
            lc.kill(rec.id, "INT")
        if not wait_until(paths.exit_file.exists, 3):
            with contextlib.suppress(EngineError):
                lc.stop(rec.id, 2)
        _finish_foreground(lc, rec)
    finally:
        lc.unwatch(rec.id)


def _follow_output(ctx: Context, paths, wake: int | None = None) -> None:
    """Copy the container's log to our stdout/stderr as it grows, until the exit is recorded.

    Following the log (rather than the attach stream) loses nothing written before we could
    connect, and keeps stdout and stderr apart. ``wake``: a descriptor that becomes readable when
    the container exits (its monitor's report), which ends a wait for more output at once."""
    import select

    from ..runtime.logs import _decode_line

    out = getattr(ctx, "stdout_binary", None) or binary_stream(ctx.out)
    err = binary_stream(ctx.err)
    buf = b""
    delay = 0.002
    f = None
    try:
        while True:
            if f is None:
                try:
                    f = open(paths.log, "rb")
                except FileNotFoundError:
                    f = None
            # ended, or removed meanwhile by somebody else's rm -f
            done = paths.exit_file.exists() or not paths.exit_file.parent.exists()
            chunk = f.read() if f is not None else b""
            if chunk:
                buf += chunk
                lines = buf.split(b"\n")
                buf = lines.pop()
                for line in lines:
                    entry = _decode_line(line) if line else None
                    if entry is None:
                        continue
                    stream, data, _ts = entry
                    if stream == "stderr":
                        if err is not None:
                            err.write(data)
                            err.flush()
                        else:
                            ctx.err.write(data.decode(errors="replace"))
                    else:
                        out.write(data)
                out.flush()
                delay = 0.002
                continue
            if done:
                return
            if wake is None:
                time.sleep(delay)
            elif select.select([wake], [], [], delay)[0]:
                wake = None  # the exit is near (the file is written first): poll from now on
            delay = min(delay * 1.5, 0.05)
    finally:
        if f is not None:
            f.close()


def _attach_tty(ctx: Context, lc, rec, interactive: bool, detach_keys: bytes) -> int | None:
    from ..runtime.monitor import attach

    paths = lc.paths(rec)
    stdin = ctx.stdin if interactive else None
    fd = None
    old = None
    resize = None
    try:
        if stdin is not None and hasattr(stdin, "fileno") and os.isatty(stdin.fileno()):
            import termios
            import tty as _tty

            fd = stdin.fileno()
            old = termios.tcgetattr(fd)
            _tty.setraw(fd)
            size = os.get_terminal_size(fd)
            resize = (size.lines, size.columns)
        out = getattr(ctx, "stdout_binary", None) or binary_stream(ctx.out)
        code = attach(paths.attach_socket, stdin, out, out, detach_keys=detach_keys,
                      resize=resize)
    except (NotFound, ConnectionError, FileNotFoundError):
        # It ended before we could attach: its output is in the log, its status in the exit file.
        _follow_output(ctx, paths)
        code = -1
    finally:
        if fd is not None and old is not None:
            import termios

            termios.tcsetattr(fd, termios.TCSADRAIN, old)
    if code is None and not paths.exit_file.exists():
        return None  # detached with the detach keys
    return code


def _finish_foreground(lc, rec) -> int:
    """After an attached container exited: record its exit, clean up (and ``--rm``), return
    its status. Done here rather than left to the monitor's cleanup so ``run`` returns at once."""
    from ..process import wait_until

    paths = lc.paths(rec)
    # started here: the monitor reports the exit and the runtime's delete; else poll
    if not lc.wait_reported_exit(rec.id):
        wait_until(lambda: paths.exit_file.exists() or not paths.exit_file.parent.exists(),
                   3600 * 24 * 365)
    policy = (rec.host_config.get("RestartPolicy") or {}).get("Name") or "no"
    with lc.store.lock(rec.id):
        fresh = lc.store.get_by_id(rec.id)
        if fresh is None:
            from ..runtime.lifecycle import _read_exit

            doc = _read_exit(paths.exit_file) or {}
            return int(doc.get("exit_code", rec.state.get("ExitCode", 0)))
        if rec.monitor_pid and fresh.monitor_pid != rec.monitor_pid:
            # started again meanwhile (`portside restart` from another terminal): the run we
            # attached to is over, and what runs now is not ours to clean up
            reported = lc.reported_exit_code(rec.id)
            lc.unwatch(rec.id)
            return reported if reported is not None else int(fresh.state.get("ExitCode", 0))
        if policy != "no":
            lc.refresh(fresh)
            return int(fresh.state.get("ExitCode", 0))
        # Wait for the runtime's own delete (the monitor runs it right after the exit).
        wait_until(lambda: not lc._runtime_knows(fresh), 2)
        lc.refresh(fresh, monitor_gone=True)
        code = int(fresh.state.get("ExitCode", 0))
        # mounts, cgroup and network go first (idempotent), also when --rm deletes it next
        lc.finalize(fresh)
        if fresh.host_config.get("AutoRemove"):
            lc._release_volumes(fresh, remove_anonymous=True)
            lc.store.delete(fresh)
    lc.unwatch(rec.id)
    return code


# ----------------------------------------------------------------------------------- start & co


def _start_args(p):
    p.add_argument("-a", "--attach", action="store_true", help="attach STDOUT/STDERR")
    p.add_argument("-i", "--interactive", action="store_true", help="attach container's STDIN")
    p.add_argument("--detach-keys", default="ctrl-p,ctrl-q", help="detach key sequence")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")


@command("start", "Start one or more stopped containers", group="container", top_level=True)
@arguments(_start_args)
def start(ctx: Context, args):
    lc = _lc(ctx)
    if args.attach or args.interactive:
        if len(args.containers) > 1:
            raise InvalidArgument("you cannot start and attach multiple containers at once")
        rec = lc.store.resolve(args.containers[0])
        return _run_attached(ctx, rec.id, interactive=args.interactive,
                             tty=bool(rec.config.get("Tty")),
                             detach_keys=_detach_keys(args.detach_keys), start=True)
    return for_each(ctx, args.containers, lambda name: lc.start(name))


def _stop_args(p):
    p.add_argument("-t", "--time", "--timeout", dest="time", type=int,
                   help="seconds to wait before killing the container")
    p.add_argument("-s", "--signal", help="signal to send to the container")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")


@command("stop", "Stop one or more running containers", group="container", top_level=True)
@arguments(_stop_args)
def stop(ctx: Context, args):
    lc = _lc(ctx)

    if args.signal:
        from ..runtime.signals import parse_signal

        parse_signal(args.signal)  # a bad signal is refused before anything is stopped

    def one(name):
        # -s applies to this stop only; the container's own StopSignal is left as it is
        lc.stop(name, args.time, signal_=args.signal)
    return for_each(ctx, args.containers, one)


@command("restart", "Restart one or more containers", group="container", top_level=True)
@arguments(_stop_args)
def restart(ctx: Context, args):
    lc = _lc(ctx)
    return for_each(ctx, args.containers, lambda n: lc.restart(n, args.time))


def _kill_args(p):
    p.add_argument("-s", "--signal", default="KILL", help="signal to send to the container")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")


@command("kill", "Kill one or more running containers", group="container", top_level=True)
@arguments(_kill_args)
def kill(ctx: Context, args):
    from ..runtime.signals import parse_signal

    parse_signal(args.signal)
    lc = _lc(ctx)
    return for_each(ctx, args.containers, lambda n: lc.kill(n, args.signal))


def _names_args(p):
    p.add_argument("containers", nargs="+", metavar="CONTAINER")


@command("pause", "Pause all processes within one or more containers", group="container",
         top_level=True)
@arguments(_names_args)
def pause(ctx: Context, args):
    lc = _lc(ctx)
    return for_each(ctx, args.containers, lc.pause)


@command("unpause", "Unpause all processes within one or more containers", group="container",
         top_level=True)
@arguments(_names_args)
def unpause(ctx: Context, args):
    lc = _lc(ctx)
    return for_each(ctx, args.containers, lc.unpause)


@command("wait", "Block until one or more containers stop, then print their exit codes",
         group="container", top_level=True)
@arguments(_names_args)
def wait(ctx: Context, args):
    lc = _lc(ctx)
    codes = []
    for name in args.containers:
        code = lc.wait(name)
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
    lc = _lc(ctx)
    return for_each(ctx, args.containers,
                 lambda n: lc.remove(n, force=args.force, volumes=args.volumes))


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


def _command_text(cfg: dict, trunc: bool) -> str:
    import shlex

    argv = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
    text = " ".join(argv) if trunc else " ".join(shlex.quote(a) if " " in a else a for a in argv)
    if trunc and len(text) > 20:
        text = text[:19] + "…"
    return f'"{text}"'


def status_text(rec, now: float | None = None) -> str:
    """Docker's STATUS column: ``Up 3 seconds``, ``Exited (0) 2 seconds ago``, ``Created``."""
    from ..units import human_duration

    now = now or time.time()
    st = rec.state
    status = rec.status
    if status in ("running", "paused"):
        text = "Up " + human_duration(now - (st.get("StartedAtTs") or now))
        return text + (" (Paused)" if status == "paused" else "")
    if status == "restarting":
        return (f"Restarting ({st.get('ExitCode', 0)}) "
                f"{human_duration(now - (st.get('FinishedAtTs') or now))} ago")
    if status == "exited":
        return (f"Exited ({st.get('ExitCode', 0)}) "
                f"{human_duration(now - (st.get('FinishedAtTs') or now))} ago")
    if status == "removing":
        return "Removal In Progress"
    if status == "dead":
        return "Dead"
    return "Created"


def published_ports(rec) -> dict[str, list[dict]]:
    """Port key -> host bindings: the ones in force while the container runs (random host ports
    resolved), else the ones it asked for."""
    live = (rec.extra.get("NetworkSettings") or {}).get("Ports")
    if live is not None and rec.status in ("running", "paused"):
        return live
    return rec.host_config.get("PortBindings") or {}


def _ports_text(rec) -> str:
    ports = published_ports(rec)
    parts = [f"{b.get('HostIp') or '0.0.0.0'}:{b.get('HostPort') or ''}->{port}"
             for port, binds in sorted(ports.items()) for b in binds or []]
    parts += [port for port in sorted(rec.config.get("ExposedPorts") or {}) if port not in ports]
    return ", ".join(parts)


def ps_row(coll, rec, *, no_trunc: bool = False, size: bool = False) -> dict:
    from ..image.oci import rfc3339
    from ..units import human_duration, human_size

    now = time.time()
    image = rec.config.get("Image") or rec.image_id
    labels = rec.config.get("Labels") or {}
    row = {
        "ID": rec.id if no_trunc else rec.id[:12],
        "Image": image,
        "Command": _command_text(rec.config, not no_trunc),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(rec.created)),
        "RunningFor": human_duration(now - rec.created) + " ago",
        "Status": status_text(rec, now),
        "State": rec.status,
        "Ports": _ports_text(rec),
        "Names": rec.name,
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "Mounts": ",".join(m.get("Name") or m.get("Source", "") for m in rec.mounts),
        "Networks": ",".join((rec.extra.get("NetworkSettings") or {}).get("Networks") or {})
                    or network_mode(rec.host_config),
        "GPUs": ",".join(rec.extra.get("GPUs") or []),
        "LocalVolumes": str(sum(1 for m in rec.mounts if m.get("Type") == "volume")),
        "Size": "",
        "Created": rfc3339(rec.created),
    }
    if size:
        from ..models.containers import _dir_size

        row["Size"] = human_size(_dir_size(coll.store.paths(rec.id).upper))
    return row


@command("ls", "List containers", group="container", top_level=True, top_name="ps",
         aliases=("list", "ps"))
@arguments(_ps_args)
def ps(ctx: Context, args):
    coll = ctx.engine.containers
    limit = 1 if args.latest else (args.last if args.last >= 0 else None)
    recs = coll.records(all=args.all or limit is not None, filters=parse_filters(args.filter),
                        limit=limit)
    if args.quiet:
        ids = [r.id if args.no_trunc else r.id[:12] for r in recs]
        for ident in ids:
            ctx.print(ident)
        return ids
    rows = [ps_row(coll, r, no_trunc=args.no_trunc, size=args.size) for r in recs]
    default = PS_DEFAULT + ("\t{{.Size}}" if args.size else "")
    print_table(ctx, args.format, rows, default, PS_HEADERS)
    return rows


# ----------------------------------------------------------------------------------- logs


def parse_time_arg(text: str | None, now: float | None = None) -> float | None:
    """``--since``/``--until``: a unix time, an RFC 3339 time, or a duration (``10m``, ``1h30m``)."""
    if not text:
        return None
    import re

    from ..runtime.logs import parse_time

    now = now if now is not None else time.time()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    m = re.fullmatch(r"((?:\d+(?:\.\d+)?(?:h|m|s|ms))+)", text)
    if m:
        total = 0.0
        for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text):
            total += float(num) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
        return now - total
    try:
        return parse_time(text if ("Z" in text or "+" in text[10:] or "-" in text[10:])
                          else text + "Z")
    except ValueError as exc:
        raise InvalidArgument(f"invalid time value: {text}") from exc


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
    tail = None if args.tail in ("all", "-1") else args.tail
    if tail is not None and not str(tail).lstrip("-").isdigit():
        raise InvalidArgument(f"invalid tail value: {args.tail}")
    entries = container.logs(stream=True, follow=args.follow, timestamps=args.timestamps,
                             tail=tail, since=parse_time_arg(args.since),
                             until=parse_time_arg(args.until))
    out = getattr(ctx, "stdout_binary", None)
    for stream, data in entries:  # type: ignore[union-attr]
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
    p.add_argument("ps_args", nargs=argparse.REMAINDER, help="ps options (ignored)")


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
        attrs = ctx.engine.containers.get(name).attrs
        if args.size:
            from ..models.containers import _dir_size

            attrs["SizeRw"] = _dir_size(ctx.engine.containers.store.paths(attrs["Id"]).upper)
        return attrs

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
    p.add_argument("command", nargs=argparse.REMAINDER, help="COMMAND [ARG...]")


@command("exec", "Execute a command in a running container", group="container", top_level=True)
@arguments(_exec_args)
def exec_(ctx: Context, args):
    import subprocess

    if not args.command:
        raise InvalidArgument("exec requires at least 2 arguments")
    env = []
    for path in args.env_file:
        env += [v for v in (_env_value(x) for x in _read_env_file(path)) if v]
    env += [v for v in (_env_value(x) for x in args.env) if v]
    lc = _lc(ctx, light=True)
    ctx.out.flush()
    stdin = None if args.interactive else subprocess.DEVNULL
    proc = lc.exec_run(args.container, args.command, detach=args.detach, tty=args.tty, env=env,
                       workdir=args.workdir, user=args.user, stdin=stdin,
                       stdout=subprocess.DEVNULL if args.detach else None,
                       stderr=subprocess.DEVNULL if args.detach else None)
    code = proc.wait()
    if args.detach:
        return 0 if code == 0 else 126
    return code


def _attach_args(p):
    p.add_argument("--detach-keys", default="ctrl-p,ctrl-q", help="detach key sequence")
    p.add_argument("--no-stdin", action="store_true", help="do not attach STDIN")
    p.add_argument("--sig-proxy", default="true", help="proxy signals (accepted)")
    p.add_argument("container", metavar="CONTAINER")


@command("attach", "Attach local standard input, output, and error streams to a running container",
         group="container", top_level=True)
@arguments(_attach_args)
def attach_(ctx: Context, args):
    from ..runtime.lifecycle import Status, status_of
    from ..runtime.monitor import attach

    lc = _lc(ctx)
    rec = lc.refresh(lc.store.resolve(args.container))
    if status_of(rec) != Status.RUNNING:
        from ..errors import IncorrectState

        raise IncorrectState("You cannot attach to a stopped container, start it first")
    if rec.config.get("Tty"):
        code = _attach_tty(ctx, lc, rec, not args.no_stdin, _detach_keys(args.detach_keys))
    else:
        out = getattr(ctx, "stdout_binary", None) or binary_stream(ctx.out)
        stdin = None if args.no_stdin or not rec.config.get("OpenStdin") else ctx.stdin
        code = attach(lc.paths(rec).attach_socket, stdin, out, binary_stream(ctx.err),
                      detach_keys=_detach_keys(args.detach_keys))
    if code is None or code < 0:
        if lc.paths(rec).exit_file.exists():
            return lc.wait(rec.id)
        return 0
    return code


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
    from ..runtime.cp import copy_in, copy_out, write_archive

    src_ctr, src = _split_cp(args.src)
    dst_ctr, dest = _split_cp(args.dest)
    if (src_ctr is None) == (dst_ctr is None):
        raise InvalidArgument("copying between containers or between local paths is not "
                              "supported: one side must be CONTAINER:PATH")
    coll = ctx.engine.containers
    if src_ctr is not None:
        if not src.startswith("/"):
            src = "/" + src
        with coll.container_fs(src_ctr) as fs:
            if dest == "-":
                out = getattr(ctx, "stdout_binary", None) or binary_stream(ctx.out)
                write_archive(fs, src, out, follow=args.follow_link)
                out.flush()
            else:
                copy_out(fs, src, dest, archive=args.archive, follow=args.follow_link)
        return 0
    if not dest.startswith("/"):
        dest = "/" + dest
    with coll.container_fs(dst_ctr) as fs:
        copy_in(fs, src, dest, stdin=ctx.stdin, follow=args.follow_link)
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
    from ..runtime.commit import commit as do_commit

    coll = ctx.engine.containers
    rec = coll.store.resolve(args.container)
    pause_ = str(args.pause).lower() not in ("false", "0", "no")
    image_id = do_commit(coll.lifecycle, rec, repository=args.repository, author=args.author,
                         message=args.message, changes=args.change, pause=pause_)
    ctx.print(image_id)
    return image_id


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
    out = getattr(ctx, "stdout_binary", None) or binary_stream(ctx.out)
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
    from ..runtime.commit import diff as do_diff

    coll = ctx.engine.containers
    rec = coll.store.resolve(args.container)
    changes = do_diff(coll.lifecycle, rec)
    for kind, path in changes:
        ctx.print(f"{kind} {path}")
    return changes


def _rename_args(p):
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("new_name", metavar="NEW_NAME")


@command("rename", "Rename a container", group="container", top_level=True)
@arguments(_rename_args)
def rename(ctx: Context, args):
    _lc(ctx).rename(args.container, args.new_name)
    return 0


def _port_args(p):
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("private_port", nargs="?", metavar="PRIVATE_PORT[/PROTO]")


@command("port", "List port mappings or a specific mapping for the container", group="container",
         top_level=True)
@arguments(_port_args)
def port(ctx: Context, args):
    rec = ctx.engine.containers._refreshed(_lc(ctx).store.resolve(args.container))
    bindings = published_ports(rec)
    lines = []
    want = None
    if args.private_port:
        p, _, proto = args.private_port.partition("/")
        want = f"{p}/{proto or 'tcp'}"
        if want not in bindings:
            raise NotFound(f"No public port '{want}' published for {rec.name}")
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
        recs = [coll.store.resolve(n) for n in args.containers]
    else:
        recs = coll.records(all=args.all)
    total_mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    ncpu = os.cpu_count() or 1
    default = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t"
               "{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}")

    def sample() -> dict:
        return {r.id: (time.monotonic(), coll.get(r.id).stats()) for r in recs}

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


__all__ = ["status_text", "parse_time_arg", "ContainerExit"]
