"""System commands: version, info, system check, system df, system prune, events."""

from __future__ import annotations

import json

from ..cli import Context, arguments, command, print_table
from ..units import human_size


def _fmt_arg(p):
    p.add_argument("-f", "--format", help="format output with a Go template or 'json'")


@command("version", "Show the portside version information")
@arguments(_fmt_arg)
def version(ctx: Context, args):
    info = ctx.engine.system.version()
    if args.format:
        from ..gotemplate import render

        ctx.print(render(args.format, info) if args.format != "json" else json.dumps(info))
        return info
    c, s = info["Client"], info["Server"]
    ctx.print(f"Client:\n Version:\t{c['Version']}\n Python:\t{c['PythonVersion']}\n"
              f" OS/Arch:\tlinux/{c['Arch']}\n\nServer:\n Engine:\t{s['Engine']}\n"
              f" Version:\t{s['Version']}\n Kernel:\t{s['KernelVersion']}".expandtabs(16))
    return info


@command("info", "Display system-wide information", group="system", top_level=True)
@arguments(_fmt_arg)
def info(ctx: Context, args):
    data = ctx.engine.system.info()
    if args.format:
        from ..gotemplate import render

        ctx.print(render(args.format, data) if args.format != "json" else json.dumps(data))
        return data
    lines = ["Server:"]
    for key in ("Containers", "Running", "Paused", "Stopped", "Images", "ServerVersion", "Driver",
                "DockerRootDir", "CgroupVersion", "DefaultRuntime", "KernelVersion",
                "OperatingSystem", "OSType", "Architecture", "NCPU", "MemTotal"):
        if key in data:
            value = human_size(data[key]) if key == "MemTotal" else data[key]
            label = {"DockerRootDir": "Root Dir", "ServerVersion": "Server Version",
                     "CgroupVersion": "Cgroup Version", "DefaultRuntime": "Default Runtime",
                     "KernelVersion": "Kernel Version", "OperatingSystem": "Operating System",
                     "OSType": "OSType", "NCPU": "CPUs", "MemTotal": "Total Memory"}.get(key, key)
            lines.append(f" {label}: {value}")
    if data.get("Runtimes"):
        lines.append(" Runtimes: " + " ".join(sorted(data["Runtimes"])))
    if "Rootless" in data:
        lines += _rootless_lines(data)
    if data.get("GPUs") is not None:
        gpus = data["GPUs"]
        lines.append(f" GPUs: {len(gpus)}")
        for gpu in gpus:
            lines.append(f"  {gpu.get('Index')}: {gpu.get('Model', '')} {gpu.get('UUID', '')}")
    mirrors = data["RegistryConfig"]["Mirrors"]
    if mirrors:
        lines.append(" Registry Mirrors:")
        lines += [f"  {m}" for m in mirrors]
    ctx.out.write("\n".join(lines) + "\n")
    return data


def _rootless_lines(data: dict) -> list[str]:
    """What ``info`` prints of the rootless fields (see ``engine.system.info()``)."""
    if not data.get("Rootless"):
        return [" Rootless: false"]
    maps = data.get("IDMappings") or {}

    def show(rows: list[dict]) -> str:
        return ", ".join(f"{r['ContainerID']}-{r['ContainerID'] + r['Size'] - 1}->{r['HostID']}"
                         if r["Size"] > 1 else f"{r['ContainerID']}->{r['HostID']}"
                         for r in rows)

    return [" Rootless: true",
            f" ID Mapping: {maps.get('Mapping', '')} (uid {show(maps.get('UIDMap') or [])};"
            f" gid {show(maps.get('GIDMap') or [])})",
            f" Storage Mode: {data.get('StorageMode', '')}",
            f" Network Mode: {data.get('NetworkMode', '')}",
            f" Cgroups: {data.get('Cgroups', '')}"]


def _check_args(p):
    p.add_argument("--repair", action="store_true", help="fix what is wrong")


@command("check", "Verify the store: blobs, references, images, snapshots", group="system")
@arguments(_check_args)
def check(ctx: Context, args):
    """Corruption is an error (exit 1) until repaired; garbage (what killed or failed
    operations left) is only reported, and reclaimed with --repair."""
    found = ctx.engine.system.check(repair=args.repair)
    for item in found.get("Reclaimed", []):  # as this command opened the store
        ctx.print("reclaimed: " + item)
    for problem in found["Problems"]:
        ctx.print(("repaired: " if args.repair else "") + problem)
    for item in found["Reclaimable"]:
        ctx.print(("reclaimed: " if args.repair else "reclaimable: ") + item)
    if found["Problems"] and not args.repair:
        return 1
    ctx.print("store is consistent")
    return 0


def _prune_args(p):
    p.add_argument("-a", "--all", action="store_true",
                   help="remove all unused images not just dangling ones")
    p.add_argument("--volumes", action="store_true", help="prune anonymous volumes")
    p.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[],
                   help="provide filter values (e.g. 'label=<key>=<value>', 'until=24h')")


@command("prune", "Remove unused data", group="system")
@arguments(_prune_args)
def prune(ctx: Context, args):
    """Docker's output: one section per kind of object removed, then the space reclaimed."""
    from ..cli import confirm, parse_filters

    filters = parse_filters(args.filter)
    if not args.force:
        warnings = ["all stopped containers", "all networks not used by at least one container"]
        if args.volumes:
            warnings.append("all anonymous volumes not used by at least one container")
        warnings.append("all images without at least one container associated to them"
                        if args.all else "all dangling images")
        warnings.append("all build cache" if args.all else "all dangling build cache")
        text = "WARNING! This will remove:\n" + "".join(f"  - {w}\n" for w in warnings)
        shown = sorted(f"{k}={v}" for k in ("label", "label!", "until") for v in filters.get(k, []))
        if shown:
            text += "\n  Items to be pruned will be filtered with:\n" + "".join(
                f"  - {f}\n" for f in shown)
        if not confirm(ctx, text + "\nAre you sure you want to continue?", "system prune"):
            return 0
    report = ctx.engine.system.prune(all=args.all, volumes=args.volumes, filters=filters)
    for title, key in (("Deleted Containers:", "ContainersDeleted"),
                       ("Deleted Networks:", "NetworksDeleted"),
                       ("Deleted Volumes:", "VolumesDeleted")):
        if report[key]:
            ctx.out.write(title + "\n" + "".join(f"{item}\n" for item in report[key]) + "\n")
    if report["ImagesDeleted"]:
        ctx.out.write("Deleted Images:\n" + "".join(
            f"{kind.lower()}: {value}\n" for item in report["ImagesDeleted"]
            for kind, value in item.items()) + "\n")
    if report["CachesDeleted"]:
        ctx.out.write("Deleted build cache objects:\n" + "".join(
            f"{key.split(':', 1)[-1][:25]}\n" for key in report["CachesDeleted"]) + "\n")
    ctx.print(f"Total reclaimed space: {human_size(report['SpaceReclaimed'])}")
    return report


def _df_args(p):
    p.add_argument("-v", "--verbose", action="store_true", help="show detailed information")
    p.add_argument("--format", help="format output")


@command("df", "Show disk usage", group="system")
@arguments(_df_args)
def df(ctx: Context, args):
    rows = ctx.engine.system.df()
    shown = []
    for row in rows:
        total = row["Size"]
        pct = f" ({int(100 * row['Reclaimable'] / total)}%)" if total else ""
        shown.append({"Type": row["Type"], "TotalCount": row["TotalCount"], "Active": row["Active"],
                      "Size": human_size(total), "Reclaimable": human_size(row["Reclaimable"]) + pct})
    print_table(ctx, args.format, shown,
                "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
                {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
                 "Reclaimable": "RECLAIMABLE"})
    return rows


def _events_args(p):
    p.add_argument("--since", help="show events created since this time (unix seconds, "
                                   "RFC 3339, or a duration back from now: 10m)")
    p.add_argument("--until", help="stream events until this time (as --since)")
    p.add_argument("-f", "--filter", action="append", default=[], help="filter (type=, event=)")
    p.add_argument("--format", help="format output (json or a Go template)")


@command("events", "Get real time events from the engine", group="system", top_level=True)
@arguments(_events_args)
def events(ctx: Context, args):
    from ..cli import parse_filters
    from ..gotemplate import render
    from ..units import parse_timestamp

    # Docker's time arguments: "10m" was an internal error here (float("10m"))
    events = ctx.engine.system.events(since=parse_timestamp(args.since) if args.since else None,
                                      until=parse_timestamp(args.until) if args.until else None,
                                      filters=parse_filters(args.filter), follow=True)
    for doc in events:
        if args.format == "json":
            ctx.print(json.dumps(doc))
        elif args.format:
            ctx.print(render(args.format, doc))
        else:
            actor = doc["Actor"]
            attrs = ", ".join(f"{k}={v}" for k, v in sorted(actor["Attributes"].items()))
            from ..image.oci import rfc3339

            ctx.print(f"{rfc3339(doc['timeNano'] / 1e9)} {doc['Type']} {doc['Action']} "
                      f"{actor['ID']}" + (f" ({attrs})" if attrs else ""))
        ctx.out.flush()
    return 0
