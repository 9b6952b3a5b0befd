"""Docker's ``-e``/``--env-file`` values: ``VAR=value`` entries and files of them.

Shared by ``run``/``create`` (:mod:`.commands.container_options`) and ``exec`` (the command
table's handler and the program's lean path, :mod:`.lean`); it imports nothing but ``os``, so
the lean path pays nothing for it.
"""

from __future__ import annotations

import os

from .errors import InvalidArgument


def read_env_file(path: str) -> list[str]:
    """The entries of an ``--env-file``: its lines, stripped, without blanks and ``#`` comments.

    Raises:
        InvalidArgument: the file cannot be read.
    """
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as exc:
        raise InvalidArgument(f"open {path}: {exc.strerror}") from exc
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out.append(line)
    return out


def env_value(item: str) -> str | None:
    """``VAR=value`` as is; a bare ``VAR`` takes the caller's value (dropped when unset).

    Raises:
        InvalidArgument: an entry with no name (``=value``).
    """
    if "=" in item:
        if item.startswith("="):
            raise InvalidArgument(f"invalid environment variable: {item}")
        return item
    if item in os.environ:
        return f"{item}={os.environ[item]}"
    return None


def exec_environment(env_files: list[str], env: list[str]) -> list[str]:
    """``exec``'s environment entries: each ``--env-file``'s, then each ``-e``'s (a later entry
    of the same name wins in the container, as in Docker)."""
    out: list[str] = []
    for path in env_files:
        out += [v for v in (env_value(x) for x in read_env_file(path)) if v]
    out += [v for v in (env_value(x) for x in env) if v]
    return out


def merge_env(base: list[str], entries: list[str] | tuple[str, ...]) -> list[str]:
    """``base`` (a container's environment) with each of ``entries`` (``NAME=value``) in
    order: a name given again leaves its old place and goes last, as ``exec -e`` does."""
    out = list(base)
    for entry in entries:
        key = entry.split("=", 1)[0]
        out = [b for b in out if b.split("=", 1)[0] != key] + [entry]
    return out
