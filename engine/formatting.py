"""Docker's output modes: ``--format`` tables and ``inspect`` documents.

Every listing and ``inspect`` takes ``--format``; the template language itself is Go's
text/template (:mod:`portside.engine.gotemplate`). The modes, as Docker's CLI has them:

* :func:`format_table` for listings: ``table TEMPLATE`` prints a header (the template run over
  the column names) and aligns tab-separated cells like Go's ``tabwriter`` (minimum width 10,
  padding 3); ``json`` prints one compact JSON object per row; any other template prints one
  rendered line per row, tabs untouched.
* :func:`format_object` for ``inspect``: an indented JSON array by default, or a template per
  object.

Errors are the template's: one-line :class:`~portside.engine.errors.InvalidArgument`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence

from portside.engine.gotemplate import go_json, render, render_header

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any


__all__ = ["DOCKER_HEADERS", "format_object", "format_table", "header_for", "tabwrite"]


# ----------------------------------------------------------------------------------------------
# Tables: Go's tabwriter with Docker's settings

def _display_width(s: str) -> int:
    """Terminal cells a string takes: wide East Asian characters count 2, combining marks 0."""
    if s.isascii():
        return len(s)
    width = 0
    for ch in s:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in "WF" else 1
    return width


def tabwrite(text: str, *, minwidth: int = 10, padding: int = 3) -> str:
    """Align tab-terminated cells into columns, as Go's text/tabwriter does with padchar ' '.

    A column is a run of *consecutive* lines that all have a tab-terminated cell at that
    position; its width is the widest cell plus ``padding``, at least ``minwidth``. The last
    cell of a line (text after its last tab) is not part of any column and is not padded. Docker
    uses ``minwidth=10, padding=3`` for every table.
    """
    trailing_newline = text.endswith("\n")
    lines = [line.split("\t") for line in (text[:-1] if trailing_newline else text).split("\n")]
    widths: list[list[int]] = [[0] * (len(cells) - 1) for cells in lines]
    ncols = max((len(cells) - 1 for cells in lines), default=0)
    for col in range(ncols):
        i = 0
        while i < len(lines):
            if len(lines[i]) - 1 <= col:
                i += 1
                continue
            j = i
            width = minwidth
            while j < len(lines) and len(lines[j]) - 1 > col:
                width = max(width, _display_width(lines[j][col]) + padding)
                j += 1
            for k in range(i, j):
                widths[k][col] = width
            i = j
    out = []
    for cells, ws in zip(lines, widths, strict=True):
        # zip stops before the last cell, which is never padded.
        parts = [cell + " " * (w - _display_width(cell))
                 for cell, w in zip(cells, ws, strict=False)]
        parts.append(cells[-1])
        out.append("".join(parts))
    return "\n".join(out) + ("\n" if trailing_newline else "")


_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

#: Docker's column titles where they differ from the upper-cased field name.
DOCKER_HEADERS: dict[str, str] = {
    "CreatedSince": "CREATED",
    "RunningFor": "CREATED",
    "CPUPerc": "CPU %",
    "MemPerc": "MEM %",
    "MemUsage": "MEM USAGE / LIMIT",
    "NetIO": "NET I/O",
    "BlockIO": "BLOCK I/O",
    "PIDs": "PIDS",
    "Names": "NAMES",
}


def header_for(field: str, headers: Mapping[str, str] | None = None) -> str:
    """Column title for ``field``: from ``headers``, Docker's table, else ``CreatedAt`` ->
    ``CREATED AT``."""
    if headers and field in headers:
        return headers[field]
    if field in DOCKER_HEADERS:
        return DOCKER_HEADERS[field]
    return _CAMEL_RE.sub(" ", field).upper()


def _docker_format(fmt: str) -> tuple[bool, str]:
    """Docker's preFormat: strip ``table``, map ``json``, trim spaces, turn ``\\t``/``\\n`` typed
    as two characters into real tab / newline (shells pass them literally)."""
    table = fmt.startswith("table")
    if table:
        fmt = fmt[len("table"):]
    elif fmt == "json":
        fmt = "{{json .}}"
    fmt = fmt.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    return table, fmt


def format_table(fmt: str | None, rows: Sequence[Any], *, default: str,
                 headers: Mapping[str, str] | None = None) -> str:
    """Render a listing (``ps``, ``images``, ``volume ls``…) the way Docker's ``--format`` does.

    Args:
        fmt: the user's ``--format``: ``None``, ``""`` or ``"table"`` for ``default``;
            ``"table TEMPLATE"`` for an aligned table with a header; ``"json"`` for one compact
            JSON object per line; any other template for one rendered line per row (tabs kept
            as given, no header). ``\\t`` and ``\\n`` typed literally become tab and newline.
        rows: one value per row (dicts or objects), the dot of the template.
        default: the command's default format, normally a ``table …`` template.
        headers: column titles by field name (``{"ID": "CONTAINER ID"}``); other fields get
            Docker's usual title (``CreatedSince`` -> ``CREATED``) or their name split at
            CamelCase and upper-cased.

    Returns:
        The lines joined by ``"\\n"`` with a final ``"\\n"``; ``""`` for no rows outside table
        mode (a table always has its header line).

    Raises:
        InvalidArgument: the template does not parse or fails on a row (one line).
    """
    if not fmt or fmt == "table":
        fmt = default
    table, template = _docker_format(fmt)
    if not template and table:
        table, template = _docker_format(default)
    body = "".join(render(template, row) + "\n" for row in rows)
    if not table:
        return body
    # The header is the same template run over a context that answers every field with its
    # column title.
    header = render_header(template, lambda f: header_for(f, headers))
    return tabwrite(header + "\n" + body)


def format_object(fmt: str | None, obj: Any) -> str:
    """Render ``inspect`` output.

    Args:
        fmt: ``None`` or ``""`` for Docker's indented JSON array (4 spaces, ``<>&`` escaped as
            ``\\u003c`` like Go), ``"json"`` for the same array compact on one line, or a
            template rendered once per object, one line each.
        obj: one object or a list of them (``inspect a b``).

    Returns:
        The text, ending in ``"\\n"``.

    Raises:
        InvalidArgument: the template does not parse or fails (one line).
    """
    items = list(obj) if isinstance(obj, (list, tuple)) else [obj]
    if not fmt:
        return go_json(items, indent=4) + "\n"
    if fmt == "json":
        return go_json(items) + "\n"
    if not items:
        return "\n"
    return "".join(render(fmt, item) + "\n" for item in items)
