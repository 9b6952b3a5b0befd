"""Registry commands: pull, push, login, logout, search, manifest inspect (Docker's output)."""

from __future__ import annotations

import json
import sys

from ..cli import Context, add_locked_flag, arguments, command, parse_filters, print_table
from ..errors import InvalidArgument


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "t"):
        return True
    if value in ("false", "0", "no", "f"):
        return False
    raise InvalidArgument(f"invalid boolean value: {text}")


def _tls_arg(p) -> None:
    p.add_argument("--tls-verify", type=_bool, nargs="?", const=True, default=None,
                   metavar="BOOL", help="verify the registry's TLS certificate (default true)")


def _renderer(ctx: Context, quiet: bool):
    if quiet:
        return None
    if ctx.progress is not None:  # a notebook draws the same events as widgets
        return ctx.progress
    from ..registry.progress import TerminalRenderer

    return TerminalRenderer(ctx.out, tty=ctx.interactive)


def _pull_args(p):
    p.add_argument("name", metavar="NAME[:TAG|@DIGEST]")
    p.add_argument("-a", "--all-tags", action="store_true", help="download all tagged images")
    p.add_argument("-q", "--quiet", action="store_true", help="suppress verbose output")
    p.add_argument("--platform", help="set platform if server is multi-platform capable")
    _tls_arg(p)
    add_locked_flag(p)


@command("pull", "Download an image from a registry", group="image", top_level=True)
@arguments(_pull_args)
def pull(ctx: Context, args):
    from ..image.reference import parse_reference

    ref = parse_reference(args.name, default_tag=None)
    images = ctx.engine.images
    progress = _renderer(ctx, args.quiet)
    if args.all_tags:
        pulled = images.pull(args.name, platform=args.platform, progress=progress,
                             tls_verify=args.tls_verify, all_tags=True, locked=args.locked)
        for image in pulled:
            names = [t for t in image.tags if parse_reference(t).name == ref.name]
            ctx.print(str(parse_reference(names[0])) if names else image.id)
        return pulled[-1] if pulled else None
    if ref.tag is None and ref.digest is None and not args.quiet:
        ctx.print("Using default tag: latest")
    image = images.pull(args.name, platform=args.platform, progress=progress,
                        tls_verify=args.tls_verify, locked=args.locked)
    full = parse_reference(args.name)
    ctx.print(str(full) if not full.digest else f"{full.name}@{full.digest}")
    return image


def _push_args(p):
    p.add_argument("name", metavar="NAME[:TAG]")
    p.add_argument("-q", "--quiet", action="store_true", help="suppress verbose output")
    _tls_arg(p)


@command("push", "Upload an image to a registry", group="image", top_level=True)
@arguments(_push_args)
def push(ctx: Context, args):
    digest = ctx.engine.images.push(args.name, progress=_renderer(ctx, args.quiet),
                                    tls_verify=args.tls_verify)
    if args.quiet:
        ctx.print(digest)
    return digest


def _login_args(p):
    p.add_argument("server", nargs="?", metavar="SERVER", help="registry (default: Docker Hub)")
    p.add_argument("-u", "--username", help="username")
    p.add_argument("-p", "--password", help="password (prefer --password-stdin)")
    p.add_argument("--password-stdin", action="store_true", help="take the password from stdin")
    _tls_arg(p)


@command("login", "Log in to a registry")
@arguments(_login_args)
def login(ctx: Context, args):
    password = args.password
    if args.password_stdin:
        if password:
            raise InvalidArgument("--password and --password-stdin are mutually exclusive")
        if not args.username:
            raise InvalidArgument("must provide --username with --password-stdin")
        if ctx.stdin is None:
            raise InvalidArgument("--password-stdin: no standard input")
        raw = ctx.stdin.read()
        password = (raw.decode() if isinstance(raw, bytes) else raw).rstrip("\r\n")
    elif password:
        ctx.err.write("WARNING! Using --password via the CLI is insecure. "
                      "Use --password-stdin.\n")
    if not args.username or not password:
        if ctx.magic or not sys.stdin.isatty():
            raise InvalidArgument("Cannot perform an interactive login from a non TTY device")
        import getpass

        username = args.username or input("Username: ")
        password = password or getpass.getpass("Password: ")
    else:
        username = args.username
    result = ctx.engine.images.login(args.server, username, password,
                                     tls_verify=args.tls_verify)
    ctx.print(result)
    return result


def _logout_args(p):
    p.add_argument("server", nargs="?", metavar="SERVER", help="registry (default: Docker Hub)")


@command("logout", "Log out from a registry")
@arguments(_logout_args)
def logout(ctx: Context, args):
    shown = args.server or "https://index.docker.io/v1/"
    if ctx.engine.images.logout(args.server):
        ctx.print(f"Removing login credentials for {shown}")
    else:
        ctx.print(f"Not logged in to {shown}")
    return None


def _search_args(p):
    p.add_argument("term", metavar="TERM")
    p.add_argument("--limit", type=int, default=25, help="max number of search results")
    p.add_argument("-f", "--filter", action="append", default=[], help="filter output")
    p.add_argument("--format", help="format output with a Go template or 'json'")
    p.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    _tls_arg(p)


@command("search", "Search a registry for images")
@arguments(_search_args)
def search(ctx: Context, args):
    rows = ctx.engine.images.search(args.term, limit=args.limit,
                                    filters=parse_filters(args.filter),
                                    tls_verify=args.tls_verify)
    shown = []
    for row in rows:
        desc = row["Description"]
        if not args.no_trunc and len(desc) > 45:
            desc = desc[:44] + "…"
        shown.append(dict(row, Description=desc, StarCount=row["StarCount"],
                          IsOfficial="[OK]" if row["IsOfficial"] else "",
                          IsAutomated="[OK]" if row["IsAutomated"] else ""))
    if args.format == "json":
        for row in rows:
            ctx.print(json.dumps(row))
        return rows
    print_table(ctx, args.format, shown,
                "table {{.Name}}\t{{.Description}}\t{{.StarCount}}\t{{.IsOfficial}}",
                {"Name": "NAME", "Description": "DESCRIPTION", "StarCount": "STARS",
                 "IsOfficial": "OFFICIAL", "IsAutomated": "AUTOMATED"})
    return rows


def _manifest_inspect_args(p):
    p.add_argument("name", metavar="NAME")
    p.add_argument("--insecure", action="store_true", help="allow plain HTTP / unverified TLS")
    p.add_argument("-v", "--verbose", action="store_true", help="(accepted for compatibility)")
    _tls_arg(p)


@command("inspect", "Display an image manifest or manifest list", group="manifest")
@arguments(_manifest_inspect_args)
def manifest_inspect(ctx: Context, args):
    verify = False if args.insecure else args.tls_verify
    doc = ctx.engine.images.get_registry_data(args.name, tls_verify=verify)
    ctx.print(json.dumps(doc, indent=3))
    return doc
