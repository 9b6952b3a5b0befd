"""Docker's output modes: ``--format`` tables (tabwriter, headers, json lines) and inspect."""

from __future__ import annotations

import json

import pytest

from portside.engine.errors import InvalidArgument
from portside.engine.formatting import format_object, format_table, header_for, tabwrite

pytestmark = pytest.mark.unit


def test_docs_table_example() -> None:
    rows = [{"ID": "a1b2c3d4e5f6", "Repository": "busybox", "Tag": "latest", "Size": "4.26MB"},
            {"ID": "0f1e2d3c4b5a", "Repository": "ghcr.io/org/some-long-repo", "Tag": "v1",
             "Size": "120MB"}]
    out = format_table(r"table {{.ID}}\t{{.Repository}}\t{{.Tag}}\t{{.Size}}", rows,
                       default="", headers={"ID": "IMAGE ID"})
    assert out == (
        "IMAGE ID       REPOSITORY                   TAG       SIZE\n"
        "a1b2c3d4e5f6   busybox                      latest    4.26MB\n"
        "0f1e2d3c4b5a   ghcr.io/org/some-long-repo   v1        120MB\n")


def test_json_rows_sort_map_keys() -> None:
    out = format_table("json", [{"Names": "web", "ID": "1"}], default="")
    assert out == '{"ID":"1","Names":"web"}\n'


def test_docs_json_dot_example() -> None:
    rows = [{"ID": "abc", "Names": "web"}, {"ID": "def", "Names": "db"}]
    out = format_table("{{json .}}", rows, default="table {{.ID}}")
    assert [json.loads(line) for line in out.splitlines()] == rows


# --- tables ----------------------------------------------------------------------------------

def test_tabwriter_minwidth_padding_and_wide_cells() -> None:
    text = "A\tBB\tC\nlong-cell-value\tx\ty\n"
    # Column width: widest cell + padding 3, at least 10.
    assert tabwrite(text) == ("A".ljust(18) + "BB".ljust(10) + "C\n"
                              + "long-cell-value".ljust(18) + "x".ljust(10) + "y\n")
    # Wide (East Asian) characters take two columns.
    assert tabwrite("名前\tx\nab\ty\n") == "名前      x\nab        y\n"
    # A column is only aligned over consecutive lines that have it.
    assert tabwrite("a\tb\nsingle\nccccccccccccc\td\n") == \
        "a         b\nsingle\nccccccccccccc   d\n"
    # Empty cells are padded, the last cell of a line never is.
    assert tabwrite("\tx\t\n") == " " * 10 + "x" + " " * 9 + "\n"


def test_table_headers_from_fields() -> None:
    rows = [{"ID": "1", "CreatedSince": "2 hours ago", "RunningFor": "x", "CreatedAt": "t",
             "LocalVolumes": "3", "CPUPerc": "1%"}]
    out = format_table("table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedAt}}\t{{.LocalVolumes}}"
                       "\t{{.CPUPerc}}", rows, default="")
    assert out.splitlines()[0].split() == ["ID", "CREATED", "CREATED", "AT", "LOCAL",
                                           "VOLUMES", "CPU", "%"]
    assert header_for("ID", {"ID": "CONTAINER ID"}) == "CONTAINER ID"
    assert header_for("IPAddress") == "IP ADDRESS"
    assert header_for("RunningFor") == "CREATED"


def test_table_header_keeps_text_and_ignores_functions() -> None:
    rows = [{"Names": ["a", "b"], "Image": "busybox:1", "ID": "abcdef0123456789"}]
    out = format_table('table {{join .Names ","}}\t{{upper .Image}}\t{{truncate .ID 4}} id',
                       rows, default="")
    assert out == ("NAMES     IMAGE       ID id\n"
                   "a,b       BUSYBOX:1   abcd id\n")


def test_table_default_and_empty() -> None:
    default = "table {{.Name}}\t{{.Driver}}"
    rows = [{"Name": "v1", "Driver": "local"}]
    expected = "NAME      DRIVER\nv1        local\n"
    assert format_table(None, rows, default=default) == expected
    assert format_table("", rows, default=default) == expected
    assert format_table("table", rows, default=default) == expected
    # A table with no rows still prints its header; other modes print nothing.
    assert format_table(None, [], default=default) == "NAME      DRIVER\n"
    assert format_table("{{.Name}}", [], default=default) == ""
    assert format_table("json", [], default=default) == ""


def test_non_table_keeps_tabs_and_prints_a_line_per_row() -> None:
    rows = [{"ID": "a", "Names": "web"}, {"ID": "bbbbbbbbbbbbbbbb", "Names": "db"}]
    assert format_table(r"{{.ID}}\t{{.Names}}", rows, default="") == \
        "a\tweb\nbbbbbbbbbbbbbbbb\tdb\n"
    assert format_table("json", rows, default="") == \
        '{"ID":"a","Names":"web"}\n{"ID":"bbbbbbbbbbbbbbbb","Names":"db"}\n'


def test_table_errors_are_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match='map has no entry for key "Nope"'):
        format_table("table {{.Nope}}", [{"ID": 1}], default="")
    with pytest.raises(InvalidArgument, match="unclosed action"):
        format_table("table {{.ID", [{"ID": 1}], default="")


# --- inspect ---------------------------------------------------------------------------------

def test_format_object() -> None:
    obj = {"Id": "abc", "Cmd": ["sh", "-c", "a && b"], "Empty": {}}
    assert format_object(None, obj) == (
        '[\n    {\n        "Id": "abc",\n        "Cmd": [\n            "sh",\n'
        '            "-c",\n            "a \\u0026\\u0026 b"\n        ],\n'
        '        "Empty": {}\n    }\n]\n')
    assert format_object(None, []) == "[]\n"
    assert format_object("json", [obj, {"Id": "d"}]) == \
        '[{"Id":"abc","Cmd":["sh","-c","a \\u0026\\u0026 b"],"Empty":{}},{"Id":"d"}]\n'
    assert format_object("{{.Id}}", [obj, {"Id": "d"}]) == "abc\nd\n"
    assert format_object("{{.Id}}", obj) == "abc\n"
    with pytest.raises(InvalidArgument, match="map has no entry"):
        format_object("{{.Nope}}", obj)
