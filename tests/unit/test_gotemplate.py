"""Go's text/template as Docker's ``--format`` uses it: the language, lookups, errors, values."""

from __future__ import annotations

import dataclasses

import pytest

from portside.engine.errors import InvalidArgument
from portside.engine.gotemplate import go_json, go_str, render

pytestmark = pytest.mark.unit

# An inspect-shaped container, as `docker inspect` examples in Docker's docs use.
CONTAINER = {
    "Id": "4fa6e0f0c678",
    "Name": "/Web_App",
    "Args": ["-c", "echo hi"],
    "Image": "busybox:latest",
    "LogPath": "/var/lib/portside/containers/4fa6/log",
    "State": {"Running": True, "ExitCode": 0, "Health": None},
    "Config": {"Image": "busybox", "Labels": {"com.example.vendor": "ACME", "b": "2"},
               "Env": ["PATH=/bin", "A=1"], "Cmd": ["sh", "-c", "a && b < c"]},
    "Mounts": [{"Type": "volume", "Name": "data", "Destination": "/data", "RW": True}],
    "NetworkSettings": {
        "Networks": {"bridge": {"IPAddress": "10.88.0.2"}, "other": {"IPAddress": "10.89.0.3"}},
        "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]},
    },
}


# --- every example form on Docker's "Format command and log output" page ----------------------

DOCS_EXAMPLES = [
    ('{{join .Args " , "}}', "-c , echo hi"),
    # Dicts are Go maps, whose keys encoding/json sorts.
    ('{{json .Mounts}}',
     '[{"Destination":"/data","Name":"data","RW":true,"Type":"volume"}]'),
    ('{{lower .Name}}', "/web_app"),
    ('{{split .Image ":"}}', "[busybox latest]"),
    ('{{title .Name}}', "/Web_App"),
    ('{{upper .Name}}', "/WEB_APP"),
    ('{{range .NetworkSettings.Networks}}{{println .IPAddress}}{{end}}',
     "10.88.0.2\n10.89.0.3\n"),
    ('{{split (join .Args "/") "/"}}', "[-c echo hi]"),
    # From the `docker inspect` reference page.
    ('{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', "10.88.0.210.89.0.3"),
    ('{{.LogPath}}', "/var/lib/portside/containers/4fa6/log"),
    ('{{.Config.Image}}', "busybox"),
    ('{{range $p, $conf := .NetworkSettings.Ports}} {{$p}} -> {{(index $conf 0).HostPort}} '
     '{{end}}', " 80/tcp -> 8080 "),
    ('{{json .Config.Labels}}', '{"b":"2","com.example.vendor":"ACME"}'),
    ('{{index .Config.Labels "com.example.vendor"}}', "ACME"),
    ('{{.State.Running}}', "true"),
]


@pytest.mark.parametrize("template,expected", DOCS_EXAMPLES)
def test_docker_docs_examples(template: str, expected: str) -> None:
    assert render(template, CONTAINER) == expected


# --- the language ----------------------------------------------------------------------------

LANGUAGE = [
    # fields, dot, nesting
    ("{{.A}}", {"A": "x"}, "x"),
    ("{{.A.B.C}}", {"A": {"B": {"C": 3}}}, "3"),
    ("{{.}}", "plain", "plain"),
    ("{{.}}", ["a", "b"], "[a b]"),
    ("a{{/* a comment */}}b", {}, "ab"),
    # Go's printing of values
    ("{{.N}}", {"N": None}, "<no value>"),
    ("{{.T}} {{.F}}", {"T": True, "F": False}, "true false"),
    ("{{.L}}", {"L": [1, "two", None, [3]]}, "[1 two <nil> [3]]"),
    ("{{.M}}", {"M": {"b": 1, "a": [2]}}, "map[a:[2] b:1]"),
    ("{{.X}}", {"X": 1.5}, "1.5"),
    ("{{.X}}", {"X": 100.0}, "100"),
    ("{{.X}}", {"X": 1e21}, "1e+21"),
    ("{{.X}}", {"X": 0.00001}, "1e-05"),
    # pipelines and functions
    ("{{.X | json}}", {"X": {"a": "<&>"}}, '{"a":"<&>"}'),
    ("{{join .L \", \"}}", {"L": ["a", "b"]}, "a, b"),
    ("{{upper .X | lower}}", {"X": "MiXed"}, "mixed"),
    ("{{title .X}}", {"X": "hello wide-world foo_bar"}, "Hello Wide-World Foo_bar"),
    ("{{truncate .X 12}}", {"X": "0123456789abcdef"}, "0123456789ab"),
    ("{{truncate .X 12}}", {"X": "short"}, "short"),
    ("[{{pad .X 1 2}}]", {"X": "v"}, "[ v  ]"),
    ("[{{pad .X 1 2}}]", {"X": ""}, "[]"),
    ("{{len .L}} {{len .S}} {{len .M}}", {"L": [1, 2], "S": "abc", "M": {}}, "2 3 0"),
    ("{{index .L 1}}", {"L": ["a", "b"]}, "b"),
    ("{{index .M \"k\"}}", {"M": {"k": "v"}}, "v"),
    ("{{index .M \"missing\"}}", {"M": {"k": "v"}}, "<no value>"),
    ("{{index .M \"a\" 1}}", {"M": {"a": [0, 9]}}, "9"),
    ("{{slice .S 1 3}}", {"S": "abcd"}, "bc"),
    ('{{printf "%s-%d" .A .B}}', {"A": "x", "B": 7}, "x-7"),
    ('{{printf "%5.2f|%-4s|%04d|%x|%q|%v|%t|%%"  .F .S .D .D .S .L .T}}',
     {"F": 3.14159, "S": "ab", "D": 255, "L": [1], "T": True},
     ' 3.14|ab  |0255|ff|"ab"|[1]|true|%'),
    ('{{printf "%d"}}', {}, "%!d(MISSING)"),
    ('{{printf "%d" "s"}}', {}, "%!d(string=s)"),
    ('{{.A | printf "%s:%s" .B}}', {"A": "a", "B": "b"}, "b:a"),
    ("{{println .A .B}}", {"A": "a", "B": 1}, "a 1\n"),
    ("{{print 1 2 \"s\" 3}}", {}, "1 2s3"),
    ('{{"a\\tb\\n\\u00e9\\x41"}}', {}, "a\tb\né" + "A"),
    ("{{`raw\\t`}}", {}, "raw\\t"),
    ("{{html .X}} {{urlquery .X}}", {"X": "<a&b c>"}, "&lt;a&amp;b c&gt; %3Ca%26b+c%3E"),
    # if / else / else if / not / and / or / comparisons
    ("{{if .X}}yes{{else}}no{{end}}", {"X": [1]}, "yes"),
    ("{{if .X}}yes{{else}}no{{end}}", {"X": ""}, "no"),
    ("{{if not .X}}empty{{end}}", {"X": {}}, "empty"),
    ('{{if eq .A "b"}}B{{else if eq .A "c"}}C{{else}}?{{end}}', {"A": "c"}, "C"),
    ('{{if eq .A "x" "y" "z"}}in{{end}}', {"A": "z"}, "in"),
    ("{{if ne .A 1}}ne{{end}}{{if lt .A 3}}lt{{end}}{{if ge .A 2}}ge{{end}}", {"A": 2},
     "neltge"),
    ("{{if eq .State.ExitCode 0.0}}ok{{end}}", {"State": {"ExitCode": 0}}, "ok"),
    ("{{and .A .B}} {{or .A .B}} {{or .N .A}}", {"A": "a", "B": "", "N": None}, " a a"),
    ("{{if and .A (not .B)}}T{{end}}", {"A": 1, "B": 0}, "T"),
    # range: lists, maps (sorted), else, break/continue, index and value variables
    ("{{range .L}}{{.}};{{end}}", {"L": ["a", "b"]}, "a;b;"),
    ("{{range $i, $v := .L}}{{$i}}={{$v}} {{end}}", {"L": ["a", "b"]}, "0=a 1=b "),
    ("{{range $k, $v := .M}}{{$k}}:{{$v}},{{end}}", {"M": {"z": 1, "a": 2}}, "a:2,z:1,"),
    ("{{range .L}}x{{else}}none{{end}}", {"L": []}, "none"),
    ("{{range .L}}x{{end}}", {"L": None}, ""),
    ("{{range .L}}{{if eq . 2}}{{continue}}{{end}}{{if eq . 4}}{{break}}{{end}}{{.}}{{end}}",
     {"L": [1, 2, 3, 4, 5]}, "13"),
    ("{{range $e := .Env}}{{$e}} {{end}}", {"Env": ["A=1", "B=2"]}, "A=1 B=2 "),
    ("{{range .L}}{{$.Top}}{{end}}", {"L": [1, 2], "Top": "t"}, "tt"),
    # with, variables, assignment
    ("{{with .A}}{{.B}}{{end}}", {"A": {"B": "in"}}, "in"),
    ("{{with .A}}{{.}}{{else}}nothing{{end}}", {"A": 0}, "nothing"),
    ("{{$x := .A}}{{$x}}{{$x = \"c\"}}{{$x}}", {"A": "a"}, "ac"),
    ("{{$m := .M}}{{$m.k}}", {"M": {"k": "v"}}, "v"),
    # white space trimming
    ("a  {{- .X -}}  b", {"X": "x"}, "axb"),
    ("{{range .L -}}\n  {{.}}\n{{- end}}", {"L": [1, 2]}, "12"),
    ("{{- /* c */ -}}  x", {}, "x"),
    ("{{-3}}", {}, "-3"),
]


@pytest.mark.parametrize("template,data,expected", LANGUAGE)
def test_language(template: str, data: object, expected: str) -> None:
    assert render(template, data) == expected


# --- field lookup on objects -----------------------------------------------------------------

@dataclasses.dataclass
class Row:
    ID: str
    Labels: dict[str, str]

    @property
    def Short(self) -> str:  # noqa: N802 - Docker's field names are CamelCase
        return self.ID[:3]

    def Names(self) -> list[str]:  # noqa: N802
        return ["web", "api"]

    def Label(self, key: str) -> str:  # noqa: N802
        return self.Labels.get(key, "")


def test_objects_attributes_properties_and_methods() -> None:
    row = Row("abcdef", {"team": "ml"})
    assert render('{{.ID}} {{.Short}} {{join .Names ","}} {{.Label "team"}}', row) == \
        "abcdef abc web,api ml"
    assert render("{{.}}", row) == "{abcdef map[team:ml]}"
    assert render("{{json .}}", row) == '{"ID":"abcdef","Labels":{"team":"ml"}}'


def test_private_names_are_not_reachable() -> None:
    with pytest.raises(InvalidArgument, match="can't evaluate field _x"):
        render("{{._x}}", Row("a", {}))
    with pytest.raises(InvalidArgument, match="can't evaluate field Nope in type Row"):
        render("{{.Nope}}", Row("a", {}))


# --- errors: one line, Go's wording ----------------------------------------------------------

ERRORS = [
    ("{{.Nope}}", 'template: :1:2: executing "" at <.Nope>: map has no entry for key "Nope"'),
    ("x\n {{.A.Nope}}",
     'template: :2:3: executing "" at <.A.Nope>: map has no entry for key "Nope"'),
    ("{{.A", "template: :1: unclosed action"),
    ("{{nope .A}}", 'template: :1: function "nope" not defined'),
    ("{{if .A}}x", "template: :1: unexpected EOF"),
    ("{{end}}", "template: :1: unexpected {{end}}"),
    ("{{else}}", "template: :1: unexpected {{else}}"),
    ("{{$x}}", 'template: :1: undefined variable "$x"'),
    ('{{"abc}}', "template: :1: unterminated quoted string"),
    ("{{}}", "template: :1: missing value for command"),
    ("{{if}}{{end}}", "template: :1: missing value for if"),
    ("{{break}}", "template: :1: {{break}} outside {{range}}"),
    ("{{define \"x\"}}{{end}}", "template: :1: {{define}} is not supported"),
    ("{{/* open", "template: :1: unclosed comment"),
    ("{{(.A}}", "template: :1: unclosed left paren"),
    ("{{.A)}}", 'template: :1: unexpected ")" in command'),
    ("{{join .A}}", "wrong number of args for join: want 2 got 1"),
    # The piped value is the *last* argument, so this is join(", ", .L): Go refuses it too.
    ('{{.L | join ", "}}', "expected []string; got string"),
    ("{{index .L 5}}", "index out of range: 5"),
    ("{{len 3}}", "len of type int"),
    ("{{range .S}}{{end}}", "range can't iterate over abc"),
    ('{{if eq .S 1}}{{end}}', "incompatible types for comparison"),
    ("{{.S.X}}", "can't evaluate field X in type string"),
    ("{{.N.X}}", "nil pointer evaluating interface {}.X"),
    ('{{"a" 1}}', "can't give argument to non-function"),
    ("{{upper .L}}", "expected string"),
]


@pytest.mark.parametrize("template,message", ERRORS)
def test_errors_are_one_line(template: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        render(template, {"A": {"B": 1}, "L": [1], "S": "abc", "N": None})
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_scoping_of_variables() -> None:
    # A variable declared inside {{if}} is gone after its {{end}}.
    with pytest.raises(InvalidArgument, match='undefined variable "\\$y"'):
        render("{{if .A}}{{$y := 1}}{{end}}{{$y}}", {"A": 1})
    # ...but one declared in an if's pipeline is visible in its else-if branch.
    assert render("{{if $v := .A}}{{$v}}{{else if $v}}no{{else}}{{$v}}{{end}}", {"A": ""}) == ""


# --- value printing and JSON -----------------------------------------------------------------

@dataclasses.dataclass
class Mount:
    Type: str
    Source: str
    Destination: str


def test_json_orders_struct_fields_and_sorts_map_keys() -> None:
    # A dataclass is a Go struct: declaration order; its dict values are maps: sorted.
    value = {"z": Mount("bind", "/a", "/b"), "a": {"y": 1, "x": 2}}
    assert render("{{json .}}", value) == (
        '{"a":{"x":2,"y":1},"z":{"Type":"bind","Source":"/a","Destination":"/b"}}')


def test_go_str_and_go_json() -> None:
    assert go_str(None) == "<no value>"
    assert go_str([None]) == "[<nil>]"
    assert go_str({"a": {"b": True}}) == "map[a:map[b:true]]"
    assert go_json({"cmd": "a && b < c", "é": "\u2028"}) == \
        '{"cmd":"a \\u0026\\u0026 b \\u003c c","é":"\\u2028"}'
    assert go_json({"x": "<"}, escape_html=False) == '{"x":"<"}'
    assert render("{{json .}}", "<b>") == '"<b>"'  # Docker's json func does not escape HTML
