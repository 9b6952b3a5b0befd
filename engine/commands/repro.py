"""Reproducibility commands: ``lock`` (pin images in ``portside.lock``) and ``image diff``.

``portside image diff A B`` answers "why are these two builds not the same image?": the first
layer whose diff ids disagree, the build step that made it, the files that differ and the config
keys that differ. Like ``diff``, it exits 0 when the images are identical and 1 when they differ.
"""

from __future__ import annotations

import json

from ..cli import Context, arguments, command


def _lock_args(p):
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="images to pin (default: re-check those already in the lock)")
    p.add_argument("--file", help="the lock file (default: ./portside.lock or $PORTSIDE_LOCK)")
    p.add_argument("--update", action="store_true",
                   help="re-pin names that now point at other images")
    p.add_argument("--locked", choices=("true", "false"),
                   help="set the lock's `locked` switch (enforce it)")
    p.add_argument("--source-date-epoch", type=int,
                   help="record this SOURCE_DATE_EPOCH for builds")


@command("lock", "Pin images to their digests in portside.lock")
@arguments(_lock_args)
def lock(ctx: Context, args):
    result = ctx.engine.images.lock(
        args.images, path=args.file, update=args.update,
        locked=None if args.locked is None else args.locked == "true",
        source_date_epoch=args.source_date_epoch)
    for name, entry in result["Images"].items():
        ctx.print(f"{name}\t{entry['Id']}\t{entry['Source']}".expandtabs(32))
    ctx.print(f"wrote {result['Path']} ({len(result['Images'])} image(s), "
              f"locked = {'true' if result['Locked'] else 'false'})")
    return result


def _diff_args(p):
    p.add_argument("image1", metavar="IMAGE1")
    p.add_argument("image2", metavar="IMAGE2")
    p.add_argument("--ignore", action="append", default=[],
                   help="a file field not to compare: type, size, mode, owner, mtime, content")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format")


@command("diff", "Show how two images differ (first differing layer, files, config)",
         group="image")
@arguments(_diff_args)
def image_diff(ctx: Context, args):
    ignore = [f.strip() for item in args.ignore for f in item.split(",") if f.strip()]
    result = ctx.engine.images.diff(args.image1, args.image2, ignore=ignore)
    if args.format == "json":
        ctx.print(json.dumps({k: v for k, v in result.items() if k != "Report"}, indent=2))
    else:
        for line in result["Report"]:
            ctx.print(line)
    return 0 if result["Identical"] else 1


def _dockerfile_args(p):
    p.add_argument("image", metavar="IMAGE", help="an image committed with a recipe")


@command("dockerfile", "Print a Dockerfile that rebuilds a committed image from its recipe",
         group="image")
@arguments(_dockerfile_args)
def image_dockerfile(ctx: Context, args):
    from ..recipe import dockerfile_for

    text = dockerfile_for(ctx.engine.images.get(args.image))
    ctx.out.write(text)
    return text
