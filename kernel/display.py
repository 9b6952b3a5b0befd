"""Rich views of command results: what ``%container ps`` shows is a table, and also a value.

The CLI's handlers print Docker-like text and return Python data. The magics wrap the data in a
:class:`Listing` (a real ``list``, so ``ids = %container ps -q`` is a list of strings) that
remembers the text the handler printed. IPython shows it with ``_repr_html_`` (an HTML table
built from that same text, so the notebook and the terminal always show the same columns) and
falls back to the text in a terminal or a plain-text front end.

A Docker table is column-aligned text: the header's words start each column, and a column's values
start where its header does (Go's tabwriter, which our formatter mimics, pads with spaces).
:func:`parse_text_table` cuts rows at those offsets; a header word may hold single spaces
("IMAGE ID"), columns are separated by two or more.
"""

from __future__ import annotations

import html
import re
from typing import Any

_COLUMN = re.compile(r"\S+(?: \S+)*")


def parse_text_table(text: str) -> tuple[list[str], list[list[str]]] | None:
    """Split a Docker-style table into ``(headers, rows)``; None if it is not one.

    >>> parse_text_table("IMAGE ID  SIZE\\nabc       1MB\\n")
    (['IMAGE ID', 'SIZE'], [['abc', '1MB']])
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    header = lines[0]
    spans = [(m.start(), m.group(0)) for m in _COLUMN.finditer(header)]
    if not spans or any(not name.replace(" ", "").replace("_", "").isupper()
                        for _, name in spans):
        return None
    starts = [s for s, _ in spans]
    rows = []
    for line in lines[1:]:
        cells = []
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else None
            cells.append(line[start:end].strip())
        rows.append(cells)
    return [name for _, name in spans], rows


def html_table(headers: list[str], rows: list[list[Any]]) -> str:
    """An HTML table (escaped) in the notebook's own table style."""
    head = "".join(f"<th style='text-align:left'>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:left'><code>{html.escape(str(c))}</code></td>"
                         if i == 0 else f"<td style='text-align:left'>{html.escape(str(c))}</td>"
                         for i, c in enumerate(row)) + "</tr>"
        for row in rows)
    return (f"<table class='portside-table'><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


class Listing(list):
    """A command's result list that displays as the command's table.

    Args:
        items: the handler's return value (ids, or row dicts).
        text: what the handler printed (shown in plain-text front ends).
        rich: whether to offer an HTML table (False for ``-q`` and ``--format`` output, which the
            user asked to see as text).
    """

    def __init__(self, items: Any, text: str = "", rich: bool = True) -> None:
        super().__init__(items)
        self.text = text
        self.rich = rich

    def __repr__(self) -> str:
        return self.text.rstrip("\n") if self.text else list.__repr__(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def _repr_html_(self) -> str | None:
        if not self.rich:
            return None
        table = parse_text_table(self.text)
        if table is None:
            return None
        headers, rows = table
        if not rows:
            return html_table(headers, []) + "<p><em>(none)</em></p>"
        return html_table(headers, rows)


class Record(dict):
    """A command's result mapping (``info``, ``version``) that displays as its printed text."""

    def __init__(self, data: dict, text: str = "") -> None:
        super().__init__(data)
        self.text = text

    def __repr__(self) -> str:
        return self.text.rstrip("\n") if self.text else dict.__repr__(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))
