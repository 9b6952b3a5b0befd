"""The "Python 3 (portside)" kernelspec: an ipykernel with portside's magics already registered.

A kernelspec is a folder holding ``kernel.json``: the command Jupyter runs to start a kernel
(``{connection_file}`` is filled in by Jupyter), its display name and language. The template in
``kernelspec/kernel.json`` says ``python``; :func:`install` writes a copy whose first argument is
this interpreter, so the kernel runs in the environment that has portside installed.

Usage::

    python -m portside.kernel.kernelspec install [--user | --sys-prefix | --prefix P] [--name N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

KERNEL_NAME = "portside"
TEMPLATE = Path(__file__).with_name("kernelspec") / "kernel.json"


def spec(python: str | None = None) -> dict:
    """The kernel.json content, with ``python`` (default: this interpreter) as the command."""
    data = json.loads(TEMPLATE.read_text())
    data["argv"][0] = python or sys.executable
    return data


def install(user: bool = False, prefix: str | None = None, name: str = KERNEL_NAME,
            python: str | None = None) -> str:
    """Install the kernelspec; returns the folder it was installed to.

    Args:
        user: install for this user (``~/.local/share/jupyter/kernels``).
        prefix: install under this prefix (``sys.prefix`` for ``--sys-prefix``).
        name: the kernel's name (``jupyter kernelspec list`` shows it).
        python: interpreter that runs the kernel (default: this one).
    """
    from jupyter_client.kernelspec import KernelSpecManager

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / name
        folder.mkdir()
        (folder / "kernel.json").write_text(json.dumps(spec(python), indent=2) + "\n")
        for logo in TEMPLATE.parent.glob("logo-*.png"):
            shutil.copy(logo, folder / logo.name)
        return KernelSpecManager().install_kernel_spec(str(folder), kernel_name=name, user=user,
                                                       prefix=prefix)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m portside.kernel.kernelspec",
                                     description="Install the 'Python 3 (portside)' kernelspec.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("install", help="install the kernelspec")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for the current user")
    where.add_argument("--sys-prefix", action="store_true", help="install into sys.prefix (venv)")
    where.add_argument("--prefix", help="install under this prefix")
    p.add_argument("--name", default=KERNEL_NAME, help="kernel name (default: portside)")
    args = parser.parse_args(argv)
    prefix = sys.prefix if args.sys_prefix else args.prefix
    dest = install(user=args.user, prefix=prefix, name=args.name)
    print(f"Installed kernelspec {args.name} in {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
