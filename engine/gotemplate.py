"""Go's text/template, the language of Docker's ``--format``.

Docker lets every listing and ``inspect`` take a Go template::

    portside ps --format 'table {{.ID}}\\t{{.Names}}'
    portside inspect --format '{{range $k, $v := .Config.Labels}}{{$k}}={{$v}}{{"\\n"}}{{end}}' c1

A template is text with *actions* in ``{{ }}``. An action is a *pipeline*: commands separated by
``|``, where each command is a value (``.Field``, ``$var``, ``"string"``, ``42``) or a function
applied to arguments (``join .Names ","``), and the result of one command becomes the *last*
argument of the next (``{{.Names | join ","}}`` is not the same as ``{{join .Names ","}}`` in
argument order, which is why Docker writes the latter). ``.`` is the *dot*, the current value;
``if``, ``with`` and ``range`` change or test it; ``$`` is always the value the template started
with. ``{{-`` and ``-}}`` trim the white space on their side of the action.

This module parses that language once per template (cached), walks the tree against Python data
(dict keys, then attributes, then methods), prints values the way Go does (``<no value>``,
``true``, ``[a b]``, ``map[k:v]``) and adds Docker's functions ``json``, ``join``, ``split``,
``lower``, ``upper``, ``title``, ``pad`` and ``truncate`` to Go's own (``printf``, ``index``,
``len``, ``eq``, ``and``…). Unsupported parts of Go's language (``define``, ``template``,
``block``) are refused with a clear error.

:func:`render` runs a template over a value; :func:`render_header` runs it over a stand-in whose
every field is a column title (Docker's table header pass). Docker's output modes (tables,
``json``, ``inspect``) are built on these in :mod:`portside.engine.formatting`.

Every error is an :class:`~portside.engine.errors.InvalidArgument` of one line in Go's wording,
e.g. ``template: :1:2: executing "" at <.Nope>: map has no entry for key "Nope"``.
"""

from __future__ import annotations

import enum
import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

# decimal, datetime, html and urllib.parse are imported where used: `portside ps` should not
# pay for them.

from portside.engine.errors import InvalidArgument

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any


__all__ = ["go_json", "go_str", "render", "render_header"]

# ----------------------------------------------------------------------------------------------
# Errors

_MISSING = object()


class _TemplateError(Exception):
    """Raised inside the engine; turned into InvalidArgument with Go's prefix at the boundary."""

    def __init__(self, message: str, pos: int | None = None, node: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.node = node


def _where(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1)
    return line, col


def _parse_error(text: str, pos: int, message: str) -> InvalidArgument:
    line, _ = _where(text, pos)
    return InvalidArgument(f"template: :{line}: {message}")


# ----------------------------------------------------------------------------------------------
# Lexer: text and actions, and the tokens inside an action.

class _Node:
    """Base of the lexer's tokens and the parse tree's nodes: positional fields in __slots__.

    (Plain classes rather than dataclasses: creating a dozen dataclasses costs milliseconds at
    import, and every ``portside ps`` imports this module.)
    """

    __slots__: tuple[str, ...] = ()

    def __init__(self, *values: Any) -> None:
        for name, value in zip(self.__slots__, values, strict=True):
            setattr(self, name, value)

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({fields})"


class _Tok(_Node):
    __slots__ = ("kind", "value", "pos", "end", "spaced")
    # kind: field dot var ident string number bool nil pipe lparen rparen comma declare assign
    kind: str
    value: Any
    pos: int  # offset of the token in the template text
    end: int
    spaced: bool  # white space right before it (so `.A .B` is two operands, `.A.B` one)


_SPACE = " \t\r\n"
_NUMBER_RE = re.compile(
    r"[+-]?(?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+"
    r"|(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9]+)?)")
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPE_RE = re.compile(r"\\(?:([abfnrtv\\'\"])|([0-7]{3})|x([0-9a-fA-F]{2})"
                        r"|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.))", re.S)
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
                   "\\": "\\", "'": "'", '"': '"'}


def _unquote(body: str) -> str:
    """Decode the escapes of a Go interpreted string literal (without its quotes)."""
    def sub(m: re.Match[str]) -> str:
        simple, octal, hex2, u4, u8, bad = m.groups()
        if simple:
            return _SIMPLE_ESCAPES[simple]
        if octal:
            return chr(int(octal, 8))
        if bad is not None:
            raise ValueError(bad)
        return chr(int(hex2 or u4 or u8, 16))
    return _ESCAPE_RE.sub(sub, body)


def _number(text: str) -> int | float:
    clean = text.replace("_", "")
    sign = -1 if clean.startswith("-") else 1
    digits = clean.lstrip("+-")
    if re.fullmatch(r"0[0-7]+", digits):  # Go's legacy octal literal, e.g. 0755
        return sign * int(digits, 8)
    try:
        return int(clean, 0)
    except ValueError:
        return float(clean)


def _lex_action(text: str, start: int) -> tuple[list[_Tok], int, bool]:
    """Tokenise one action from ``start`` (just after ``{{`` and any trim marker).

    Returns the tokens, the offset just after the closing ``}}`` and whether it was ``-}}``.
    """
    toks: list[_Tok] = []
    i, n = start, len(text)
    spaced = True
    while True:
        if i >= n:
            raise _parse_error(text, start, "unclosed action")
        c = text[i]
        if c in _SPACE:
            # " -}}" is a right trim marker only when white space precedes the dash.
            j = i
            while j < n and text[j] in _SPACE:
                j += 1
            if text.startswith("-}}", j):
                return toks, j + 3, True
            i, spaced = j, True
            continue
        if text.startswith("}}", i):
            return toks, i + 2, False
        begin = i
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                if text[j] == "\n":
                    break
                j += 2 if text[j] == "\\" else 1
            if j >= n or text[j] != '"':
                raise _parse_error(text, i, "unterminated quoted string")
            try:
                value: Any = _unquote(text[i + 1:j])
            except (ValueError, OverflowError):
                raise _parse_error(text, i, "invalid syntax in quoted string") from None
            toks.append(_Tok("string", value, begin, j + 1, spaced))
            i = j + 1
        elif c == "`":
            j = text.find("`", i + 1)
            if j < 0:
                raise _parse_error(text, i, "unterminated raw quoted string")
            toks.append(_Tok("string", text[i + 1:j], begin, j + 1, spaced))
            i = j + 1
        elif c == "'":
            m = re.match(r"'(\\[^']+|[^\\'])'", text[i:])
            if not m:
                raise _parse_error(text, i, "unterminated character constant")
            try:
                ch = _unquote(m.group(1))
            except ValueError:
                raise _parse_error(text, i, "invalid character constant") from None
            toks.append(_Tok("number", ord(ch), begin, i + m.end(), spaced))
            i += m.end()
        elif c == "|":
            toks.append(_Tok("pipe", "|", begin, i + 1, spaced))
            i += 1
        elif c == "(":
            toks.append(_Tok("lparen", "(", begin, i + 1, spaced))
            i += 1
        elif c == ")":
            toks.append(_Tok("rparen", ")", begin, i + 1, spaced))
            i += 1
        elif c == ",":
            toks.append(_Tok("comma", ",", begin, i + 1, spaced))
            i += 1
        elif text.startswith(":=", i):
            toks.append(_Tok("declare", ":=", begin, i + 2, spaced))
            i += 2
        elif c == "=":
            toks.append(_Tok("assign", "=", begin, i + 1, spaced))
            i += 1
        elif c == "$":
            m = re.compile(r"[A-Za-z0-9_]*").match(text, i + 1)
            assert m is not None
            toks.append(_Tok("var", "$" + m.group(), begin, m.end(), spaced))
            i = m.end()
        elif c == "." and i + 1 < n and (text[i + 1].isalpha() or text[i + 1] == "_"):
            m = _IDENT_RE.match(text, i + 1)
            assert m is not None
            toks.append(_Tok("field", m.group(), begin, m.end(), spaced))
            i = m.end()
        elif c == "." and not (i + 1 < n and text[i + 1].isdigit()):
            toks.append(_Tok("dot", ".", begin, i + 1, spaced))
            i += 1
        elif c.isdigit() or c == "." or (c in "+-" and i + 1 < n and
                                         (text[i + 1].isdigit() or text[i + 1] == ".")):
            m = _NUMBER_RE.match(text, i)
            if not m or not m.group():
                raise _parse_error(text, i, f"bad number syntax: {text[i:i + 10]!r}")
            try:
                num = _number(m.group())
            except ValueError:
                raise _parse_error(text, i, f"bad number syntax: {m.group()!r}") from None
            toks.append(_Tok("number", num, begin, m.end(), spaced))
            i = m.end()
        elif c.isalpha() or c == "_":
            m = _IDENT_RE.match(text, i)
            assert m is not None
            word = m.group()
            if word in ("true", "false"):
                toks.append(_Tok("bool", word == "true", begin, m.end(), spaced))
            elif word == "nil":
                toks.append(_Tok("nil", None, begin, m.end(), spaced))
            else:
                toks.append(_Tok("ident", word, begin, m.end(), spaced))
            i = m.end()
        else:
            raise _parse_error(text, i, f"unexpected {c!r} in command")
        spaced = False


# ----------------------------------------------------------------------------------------------
# Parse tree

class _Text(_Node):
    __slots__ = ("text",)
    text: str


class _Field(_Node):
    """``.A.B`` (on the dot), ``$x.A.B`` (on a variable), ``(pipe).A`` (on a value)."""

    __slots__ = ("base", "names", "pos", "src")
    base: Any  # None for the dot, else a _Var or a nested operand
    names: list[str]
    pos: int
    src: str


class _Var(_Node):
    __slots__ = ("name", "pos")
    name: str
    pos: int


class _Dot(_Node):
    __slots__ = ("pos",)
    pos: int


class _Literal(_Node):
    __slots__ = ("value", "pos")
    value: Any
    pos: int


class _Func(_Node):
    """An identifier naming a function."""

    __slots__ = ("name", "pos")
    name: str
    pos: int


class _Command(_Node):
    __slots__ = ("args", "pos", "src")
    args: list[Any]
    pos: int
    src: str


class _Pipe(_Node):
    __slots__ = ("decl", "assign", "cmds", "pos")
    decl: list[str]
    assign: bool  # "=" rather than ":="
    cmds: list[_Command]
    pos: int


class _Action(_Node):
    __slots__ = ("pipe",)
    pipe: _Pipe


class _Control(_Node):
    """``if`` / ``with`` / ``range`` with its body and its ``else`` part."""

    __slots__ = ("kind", "pipe", "body", "orelse")
    kind: str
    pipe: _Pipe
    body: list[Any]
    orelse: list[Any]


class _Loop(_Node):
    """``{{break}}`` / ``{{continue}}``."""

    __slots__ = ("kind",)
    kind: str


class _Parser:
    """Builds the tree from the template text; checks functions and variables as Go does."""

    def __init__(self, text: str, funcs: Mapping[str, Any]) -> None:
        self.text = text
        self.funcs = funcs
        self.items = self._split()
        self.i = 0
        self.scopes: list[list[str]] = [["$"]]
        self.range_depth = 0

    # -- text / action split, trim markers and comments
    def _split(self) -> list[tuple[str, Any, int]]:
        text, n = self.text, len(self.text)
        items: list[tuple[str, Any, int]] = []
        pos, trim_next = 0, False
        while True:
            j = text.find("{{", pos)
            chunk = text[pos:] if j < 0 else text[pos:j]
            if trim_next:
                chunk = chunk.lstrip(_SPACE)
            if j < 0:
                if chunk:
                    items.append(("text", chunk, pos))
                return items
            k = j + 2
            ltrim = text.startswith("-", k) and k + 1 < n and text[k + 1] in _SPACE
            if ltrim:
                chunk = chunk.rstrip(_SPACE)
                k += 2
            if chunk:
                items.append(("text", chunk, pos))
            if text.startswith("/*", k):
                close = text.find("*/", k + 2)
                if close < 0:
                    raise _parse_error(text, j, "unclosed comment")
                after = close + 2
                if text.startswith("}}", after):
                    pos, trim_next = after + 2, False
                elif text.startswith(" -}}", after):
                    pos, trim_next = after + 4, True
                else:
                    raise _parse_error(text, j, "comment ends before closing delimiter")
                continue
            toks, pos, trim_next = _lex_action(text, k)
            items.append(("action", toks, j))

    # -- structure
    def parse(self) -> list[Any]:
        nodes, stop = self._list()
        if stop is not None:
            raise _parse_error(self.text, stop[2], f"unexpected {{{{{stop[0]}}}}}")
        return nodes

    def _list(self) -> tuple[list[Any], tuple[str, list[_Tok], int] | None]:
        """Parse nodes until {{else}} / {{end}} (returned) or the end of the text (None)."""
        nodes: list[Any] = []
        while self.i < len(self.items):
            kind, payload, pos = self.items[self.i]
            self.i += 1
            if kind == "text":
                nodes.append(_Text(payload))
                continue
            toks: list[_Tok] = payload
            if not toks:
                raise _parse_error(self.text, pos, "missing value for command")
            head = toks[0]
            word = head.value if head.kind == "ident" else None
            if word in ("end", "else"):
                return nodes, (word, toks[1:], pos)
            if word in ("if", "with", "range"):
                nodes.append(self._control(word, toks[1:], pos))
            elif word in ("break", "continue"):
                if self.range_depth == 0:
                    raise _parse_error(self.text, pos, f"{{{{{word}}}}} outside {{{{range}}}}")
                if len(toks) > 1:
                    raise _parse_error(self.text, pos, f"unexpected {toks[1].value!r} in {word}")
                nodes.append(_Loop(word))
            elif word in ("define", "template", "block"):
                raise _parse_error(self.text, pos, f"{{{{{word}}}}} is not supported")
            else:
                nodes.append(_Action(self._pipeline(toks, pos, decl_ok=True)))
        return nodes, None

    def _control(self, kind: str, toks: list[_Tok], pos: int) -> _Control:
        self.scopes.append([])
        pipe = self._pipeline(toks, pos, decl_ok=True, context=kind)
        if kind == "range":
            self.range_depth += 1
        body, stop = self._list()
        if kind == "range":
            self.range_depth -= 1
        if stop is None:
            raise _parse_error(self.text, len(self.text), "unexpected EOF")
        word, rest, stop_pos = stop
        orelse: list[Any] = []
        if word == "else":
            if rest and rest[0].kind == "ident" and rest[0].value in ("if", "with"):
                # {{else if x}} / {{else with x}}: a nested control that shares our {{end}};
                # our variables stay visible in it, as in Go.
                nested = self._control(rest[0].value, rest[1:], stop_pos)
                self.scopes.pop()
                return _Control(kind, pipe, body, [nested])
            if rest:
                raise _parse_error(self.text, stop_pos, "unexpected tokens after {{else}}")
            orelse, stop = self._list()
            if stop is None:
                raise _parse_error(self.text, len(self.text), "unexpected EOF")
            if stop[0] != "end":
                raise _parse_error(self.text, stop[2], "expected end; found {{else}}")
            rest = stop[1]
        if rest:
            raise _parse_error(self.text, stop_pos, "unexpected tokens after {{end}}")
        self.scopes.pop()
        return _Control(kind, pipe, body, orelse)

    # -- pipelines
    def _declared(self, name: str) -> bool:
        return any(name in scope for scope in self.scopes)

    def _pipeline(self, toks: list[_Tok], pos: int, *, decl_ok: bool,
                  context: str = "command") -> _Pipe:
        decl: list[str] = []
        assign = False
        k = 0
        if decl_ok and toks and toks[0].kind == "var":
            names = [toks[0]]
            k = 1
            if len(toks) > 2 and toks[1].kind == "comma" and toks[2].kind == "var":
                names.append(toks[2])
                k = 3
            if k < len(toks) and toks[k].kind in ("declare", "assign"):
                if len(names) == 2 and context != "range":
                    raise _parse_error(self.text, pos, "too many declarations in command")
                assign = toks[k].kind == "assign"
                for tok in names:
                    if assign and not self._declared(tok.value):
                        raise _parse_error(self.text, tok.pos,
                                           f"undefined variable \"{tok.value}\"")
                decl = [t.value for t in names]
                k += 1
            else:
                k = 0
        cmds, k = self._commands(toks, k, pos)
        if k != len(toks):
            raise _parse_error(self.text, toks[k].pos, f"unexpected \"{toks[k].value}\" in "
                               f"{context}")
        if not cmds:
            raise _parse_error(self.text, pos, f"missing value for {context}")
        if not assign:
            self.scopes[-1].extend(decl)
        return _Pipe(decl, assign, cmds, pos)

    def _commands(self, toks: list[_Tok], k: int, pos: int) -> tuple[list[_Command], int]:
        cmds: list[_Command] = []
        while True:
            start = k
            args: list[Any] = []
            while k < len(toks) and toks[k].kind not in ("pipe", "rparen"):
                arg, k = self._operand(toks, k)
                args.append(arg)
            if not args:
                at = toks[k].pos if k < len(toks) else pos
                if cmds or (k < len(toks) and toks[k].kind == "pipe"):
                    raise _parse_error(self.text, at, "missing value for command")
                return cmds, k
            src = self.text[toks[start].pos:toks[k - 1].end]
            cmds.append(_Command(args, toks[start].pos, src))
            if k < len(toks) and toks[k].kind == "pipe":
                k += 1
                continue
            return cmds, k

    def _operand(self, toks: list[_Tok], k: int) -> tuple[Any, int]:
        tok = toks[k]
        node: Any
        if tok.kind == "field":
            names = [tok.value]
            k += 1
            while k < len(toks) and toks[k].kind == "field" and not toks[k].spaced:
                names.append(toks[k].value)
                k += 1
            return _Field(None, names, tok.pos, self.text[tok.pos:toks[k - 1].end]), k
        if tok.kind == "var":
            if not self._declared(tok.value):
                raise _parse_error(self.text, tok.pos, f"undefined variable \"{tok.value}\"")
            node = _Var(tok.value, tok.pos)
            k += 1
        elif tok.kind == "dot":
            node, k = _Dot(tok.pos), k + 1
        elif tok.kind in ("string", "number", "bool", "nil"):
            node, k = _Literal(tok.value, tok.pos), k + 1
        elif tok.kind == "ident":
            if tok.value not in self.funcs:
                raise _parse_error(self.text, tok.pos, f"function \"{tok.value}\" not defined")
            node, k = _Func(tok.value, tok.pos), k + 1
        elif tok.kind == "lparen":
            cmds, k = self._commands(toks, k + 1, tok.pos)
            if k >= len(toks) or toks[k].kind != "rparen":
                raise _parse_error(self.text, tok.pos, "unclosed left paren")
            if not cmds:
                raise _parse_error(self.text, tok.pos, "missing value for parenthesized pipeline")
            node, k = _Pipe([], False, cmds, tok.pos), k + 1
        else:
            raise _parse_error(self.text, tok.pos, f"unexpected \"{tok.value}\" in operand")
        # A field chain glued to a variable or a parenthesised value: $x.A.B, (index .M 0).Name
        if k < len(toks) and toks[k].kind == "field" and not toks[k].spaced:
            if isinstance(node, (_Literal, _Func, _Dot)):
                raise _parse_error(self.text, toks[k].pos, "unexpected . after term")
            names = []
            start = tok.pos
            while k < len(toks) and toks[k].kind == "field" and not toks[k].spaced:
                names.append(toks[k].value)
                k += 1
            node = _Field(node, names, start, self.text[start:toks[k - 1].end])
        return node, k


# ----------------------------------------------------------------------------------------------
# Go's way of printing values

def _go_float(f: float) -> str:
    """Format a float as Go's %v does: shortest digits, exponent below 1e-4 or from 1e21."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1, f) < 0 else "0"
    from decimal import Decimal
    sign, digits, exp = Decimal(repr(f)).as_tuple()
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    assert isinstance(exp, int)
    exp10 = len(digits) + exp - 1  # exponent of the first significant digit
    neg = "-" if sign else ""
    if exp10 < -4 or exp10 >= 21:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{neg}{mant}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    return neg + format(Decimal(f"0.{ds}e{exp10 + 1}").normalize(), "f")


def go_str(value: Any, *, top: bool = True) -> str:
    """Print ``value`` as Go's template engine does.

    ``None`` is ``<no value>`` when printed by an action (``top``) and ``<nil>`` inside a
    container; booleans are ``true``/``false``; sequences ``[a b]``; mappings ``map[k:v]``
    with sorted keys; dataclasses ``{v1 v2}`` like Go structs.
    """
    if value is None:
        return "<no value>" if top else "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, enum.Enum):
        return go_str(value.value, top=top)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, (bytes, bytearray)):
        return "[" + " ".join(str(b) for b in value) + "]"
    if isinstance(value, Mapping):
        try:
            keys = sorted(value)
        except TypeError:
            keys = list(value)
        return "map[" + " ".join(f"{go_str(k, top=False)}:{go_str(value[k], top=False)}"
                                 for k in keys) + "]"
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return "[" + " ".join(go_str(v, top=False) for v in items) + "]"
    names = _field_names(value)
    if names is not None:
        return "{" + " ".join(go_str(getattr(value, n), top=False) for n in names) + "}"
    return str(value)


def _field_names(value: Any) -> list[str] | None:
    """The field names of a record or dataclass instance (None for anything else)."""
    if isinstance(value, type):
        return None
    found = getattr(type(value), "__record_fields__", None)
    if found is not None:
        return [f.name for f in found]
    if hasattr(type(value), "__dataclass_fields__"):
        import dataclasses

        return [f.name for f in dataclasses.fields(value)]
    return None


def _jsonable(value: Any) -> Any:
    """Map a Python object onto JSON types (the ``default`` hook of json.dumps)."""
    for hook in ("__json__", "to_json", "as_dict", "to_dict"):
        method = getattr(value, hook, None)
        if callable(method):
            return method()
    names = _field_names(value)
    if names is not None:
        return {n: getattr(value, n) for n in names}
    if isinstance(value, enum.Enum):
        return value.value
    isoformat = getattr(value, "isoformat", None)  # datetime, date, time
    if callable(isoformat):
        return isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (bytes, bytearray)):
        import base64  # Go marshals []byte as base64; rare enough to import lazily
        return base64.b64encode(value).decode()
    if isinstance(value, Iterable):
        return list(value)
    # Plain objects: their public attributes and properties, as Docker marshals its contexts.
    out: dict[str, Any] = {k: v for k, v in vars(value).items() if not k.startswith("_")} \
        if hasattr(value, "__dict__") else {}
    for name in dir(type(value)):
        if not name.startswith("_") and isinstance(getattr(type(value), name), property):
            out[name] = getattr(value, name)
    if not out:
        return str(value)
    return out


_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                 "\u2028": "\\u2028", "\u2029": "\\u2029"}
_HTML_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")


def _go_values(value: Any, sort_maps: bool) -> Any:
    """Turn ``value`` into plain JSON types, ordering keys as Go would.

    Go sorts the keys of maps but keeps the declaration order of struct fields; here mappings
    play Go maps (sorted when ``sort_maps``) and dataclasses play structs (field order).
    """
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        items = list(value.items())
        if sort_maps:
            try:
                items.sort(key=lambda kv: str(kv[0]))
            except TypeError:
                pass
        return {str(k): _go_values(v, sort_maps) for k, v in items}
    if isinstance(value, (list, tuple)):
        return [_go_values(v, sort_maps) for v in value]
    plain = _jsonable(value)
    if isinstance(plain, dict) and not isinstance(value, Mapping):
        # A struct-like object: its fields keep their order.
        return {k: _go_values(v, sort_maps) for k, v in plain.items()}
    return _go_values(plain, sort_maps)


def go_json(value: Any, *, indent: int | None = None, escape_html: bool = True,
            sort_maps: bool = False) -> str:
    """Serialise ``value`` as Go's encoding/json does.

    Compact (``indent=None``) or indented; non-ASCII kept as is; with ``escape_html`` the
    characters ``<``, ``>``, ``&`` become ``\\u003c`` etc. (Go's default, seen in
    ``docker inspect``); U+2028 and U+2029 are always escaped, as Go does. With ``sort_maps``
    the keys of mappings are sorted (Go's maps) while dataclass fields keep their order
    (Go's structs).
    """
    separators = (",", ":") if indent is None else (",", ": ")
    out = json.dumps(_go_values(value, sort_maps), indent=indent, separators=separators,
                     ensure_ascii=False)
    if escape_html:
        return _HTML_ESCAPE_RE.sub(lambda m: _HTML_ESCAPES[m.group()], out)
    return out.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _truth(value: Any) -> bool:
    """Go's notion of true: not false, 0, nil, or an empty string / list / map."""
    if value is None:
        return False
    if isinstance(value, (bool, int, float, str, bytes, Sequence, Mapping, set, frozenset)):
        return bool(value)
    return True


# ----------------------------------------------------------------------------------------------
# Functions

class _Header(str):
    """A column title standing in for a field while the table header is rendered."""


class _HeaderContext:
    """The dot of the header pass: every field resolves to its column title."""

    def __init__(self, title: Callable[[str], str]) -> None:
        self.title = title

    def __str__(self) -> str:
        return ""


def _go_quote(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(ch)])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def _go_type(v: Any) -> str:
    if v is None:
        return "<nil>"
    return {bool: "bool", int: "int", float: "float64", str: "string"}.get(type(v),
                                                                          type(v).__name__)


_VERB_RE = re.compile(r"%([-+# 0]*)(\*|\d+)?(?:\.(\*|\d+)?)?([a-zA-Z%])")


def _sprintf(fmt: str, *args: Any) -> str:
    """Go's fmt.Sprintf for the verbs people use in templates (v s d q x X o b e f g t c T)."""
    out: list[str] = []
    argi = 0
    pos = 0
    for m in _VERB_RE.finditer(fmt):
        out.append(fmt[pos:m.start()])
        pos = m.end()
        flags, width_s, prec_s, verb = m.groups()
        if verb == "%":
            out.append("%")
            continue
        width = prec = None
        if width_s == "*":
            width, argi = (int(args[argi]) if argi < len(args) else 0), argi + 1
        elif width_s:
            width = int(width_s)
        if prec_s == "*":
            prec, argi = (int(args[argi]) if argi < len(args) else 0), argi + 1
        elif prec_s is not None:
            prec = int(prec_s)
        elif "." in m.group():
            prec = 0
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        out.append(_pad(_format_one(verb, arg, flags, prec), width, flags, arg))
    out.append(fmt[pos:])
    if argi < len(args):
        extra = ", ".join(f"{_go_type(a)}={go_str(a, top=False)}" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _pad(s: str, width: int | None, flags: str, arg: Any) -> str:
    if width is None or len(s) >= width:
        return s
    if "-" in flags:
        return s.ljust(width)
    if "0" in flags and isinstance(arg, (int, float)) and not isinstance(arg, bool):
        sign = s[0] if s[:1] in "+-" else ""
        return sign + s[len(sign):].rjust(width - len(sign), "0")
    return s.rjust(width)


def _format_one(verb: str, arg: Any, flags: str, prec: int | None) -> str:
    bad = f"%!{verb}({_go_type(arg)}={go_str(arg, top=False)})"
    plus = "+" if "+" in flags else (" " if " " in flags else "")
    if verb == "v":
        return go_str(arg, top=False)
    if verb == "T":
        return _go_type(arg)
    if verb == "s":
        if arg is None:
            return "%!s(<nil>)"
        s = go_str(arg, top=False)
        return s[:prec] if prec is not None else s
    if verb == "q":
        if isinstance(arg, str):
            return _go_quote(arg)
        if isinstance(arg, int) and not isinstance(arg, bool):
            return "'" + chr(arg) + "'"
        return bad
    if verb == "t":
        return go_str(arg) if isinstance(arg, bool) else bad
    if verb == "c":
        return chr(arg) if isinstance(arg, int) and not isinstance(arg, bool) else bad
    if verb in "dboxX":
        if isinstance(arg, int) and not isinstance(arg, bool):
            base = {"d": "d", "b": "b", "o": "o", "x": "x", "X": "X"}[verb]
            prefix = "#" if "#" in flags and verb != "d" else ""
            return format(arg, f"{plus}{prefix}{base}")
        if verb in "xX" and isinstance(arg, (str, bytes)):
            data = arg.encode() if isinstance(arg, str) else arg
            h = data.hex()
            return h.upper() if verb == "X" else h
        return bad
    if verb in "eEfFgG":
        if isinstance(arg, (int, float)) and not isinstance(arg, bool):
            if verb in "gG" and prec is None:
                s = _go_float(float(arg))
                s = s.upper() if verb == "G" else s
                return (plus + s if plus and not s.startswith("-") else s)
            p = 6 if prec is None else prec
            return format(float(arg), f"{plus}.{p}{verb}")
        return bad
    return f"%!{verb}({_go_type(arg)}={go_str(arg, top=False)})"


def _fn_print(*args: Any) -> str:
    # Sprint: a space between operands when neither side is a string.
    out = []
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(go_str(a, top=False))
    return "".join(out)


def _fn_println(*args: Any) -> str:
    return " ".join(go_str(a, top=False) for a in args) + "\n"


def _fn_len(v: Any) -> int:
    if v is None or isinstance(v, (bool, int, float)):
        raise _TemplateError(f"len of type {_go_type(v)}")
    try:
        return len(v)
    except TypeError:
        raise _TemplateError(f"len of type {_go_type(v)}") from None


def _fn_index(item: Any, *keys: Any) -> Any:
    if isinstance(item, _Header):
        return item
    for key in keys:
        if item is None:
            raise _TemplateError("index of untyped nil")
        if isinstance(item, Mapping):
            item = item.get(key)  # Go gives the zero value for a missing map key
        elif isinstance(item, (str, bytes, Sequence)):
            if not isinstance(key, int) or isinstance(key, bool):
                raise _TemplateError(f"cannot index slice/array with type {_go_type(key)}")
            if not 0 <= key < len(item):
                raise _TemplateError(f"index out of range: {key}")
            # Indexing a Go string gives a byte, which prints as a number.
            item = ord(item[key]) if isinstance(item, str) else item[key]
        else:
            raise _TemplateError(f"can't index item of type {_go_type(item)}")
    return item


def _fn_slice(item: Any, *idx: Any) -> Any:
    if not isinstance(item, (str, Sequence)):
        raise _TemplateError(f"can't slice item of type {_go_type(item)}")
    if len(idx) > 2:
        return item[idx[0]:idx[1]]  # Go's 3-index form caps capacity, which Python lacks
    bounds = list(idx) + [None] * (2 - len(idx))
    lo = bounds[0] or 0
    hi = len(item) if bounds[1] is None else bounds[1]
    if not 0 <= lo <= hi <= len(item):
        raise _TemplateError(f"slice bounds out of range [{lo}:{hi}]")
    return item[lo:hi]


def _fn_not(v: Any) -> bool:
    return not _truth(v)


def _comparable(a: Any, b: Any) -> bool:
    num = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, num) and isinstance(b, num):
        return True
    return type(a) is type(b) or isinstance(a, str) and isinstance(b, str)


def _fn_eq(a: Any, *others: Any) -> bool:
    if not others:
        raise _TemplateError("missing argument for comparison")
    for b in others:
        if a is None or b is None:
            if a is b:
                return True
            continue
        if not _comparable(a, b):
            raise _TemplateError("incompatible types for comparison")
        if a == b:
            return True
    return False


def _fn_ne(a: Any, b: Any) -> bool:
    return not _fn_eq(a, b)


def _ordered(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        if not _comparable(a, b) or isinstance(a, (bool, type(None))):
            raise _TemplateError("incompatible types for comparison")
        try:
            return op(a, b)
        except TypeError:
            raise _TemplateError("invalid type for comparison") from None
    return compare


def _need_str(name: str, v: Any) -> str:
    if isinstance(v, str):
        return v
    raise _TemplateError(f"wrong type for value; expected string; got {_go_type(v)}")


def _fn_join(items: Any, sep: Any) -> str:
    if isinstance(items, _Header):
        return items
    if isinstance(items, str) or not isinstance(items, Iterable):
        raise _TemplateError(f"wrong type for value; expected []string; got {_go_type(items)}")
    return _need_str("join", sep).join(go_str(i, top=False) for i in items)


def _fn_split(s: Any, sep: Any) -> Any:
    if isinstance(s, _Header):
        return s
    s, sep = _need_str("split", s), _need_str("split", sep)
    return list(s) if sep == "" else s.split(sep)


def _fn_title(s: Any) -> str:
    # Go's strings.Title: upper-case the first letter of each word; the rest is left alone.
    if isinstance(s, _Header):
        return s
    s = _need_str("title", s)
    out, prev_sep = [], True
    for ch in s:
        out.append(ch.upper() if prev_sep else ch)
        prev_sep = not (ch.isalnum() or ch == "_") and (ord(ch) < 0x80 or ch.isspace())
    return "".join(out)


def _fn_pad(s: Any, prefix: Any, suffix: Any) -> str:
    s = go_str(s, top=False) if not isinstance(s, str) else s
    if s == "":
        return s
    return " " * int(prefix) + s + " " * int(suffix)


def _fn_truncate(s: Any, length: Any) -> str:
    s = _need_str("truncate", s)
    return s if len(s) < int(length) else s[:int(length)]


def _fn_json(v: Any) -> str:
    if isinstance(v, (_Header, _HeaderContext)):
        return go_str(v)
    # Docker's json function turns HTML escaping off; template data are Go maps (sorted keys).
    return go_json(v, escape_html=False, sort_maps=True)


def _fn_html(*args: Any) -> str:
    import html as _html
    s = _fn_print(*args)
    return (_html.escape(s, quote=False).replace('"', "&#34;").replace("'", "&#39;")
            .replace("\0", "\ufffd"))


def _fn_js(*args: Any) -> str:
    s = _fn_print(*args)
    table = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E",
             "&": "\\u0026", "=": "\\u003D"}
    return "".join(table.get(c, c if c.isprintable() else f"\\u{ord(c):04X}") for c in s)


def _fn_urlquery(*args: Any) -> str:
    import urllib.parse
    return urllib.parse.quote_plus(_fn_print(*args))


def _str_fn(fn: Callable[[str], str]) -> Callable[[Any], str]:
    def wrapped(v: Any) -> str:
        if isinstance(v, _Header):
            return v
        return fn(_need_str(fn.__name__, v))
    return wrapped


#: name -> (function, minimum arity, maximum arity or None for variadic)
_FUNCS: dict[str, tuple[Callable[..., Any], int, int | None]] = {
    # Go's built-ins ("and"/"or" are evaluated lazily by the executor)
    "and": (lambda *a: a[-1], 1, None),
    "or": (lambda *a: a[-1], 1, None),
    "not": (_fn_not, 1, 1),
    "len": (_fn_len, 1, 1),
    "index": (_fn_index, 1, None),
    "slice": (_fn_slice, 1, 4),
    "print": (_fn_print, 0, None),
    "printf": (lambda f, *a: _sprintf(_need_str("printf", f), *a), 1, None),
    "println": (_fn_println, 0, None),
    "eq": (_fn_eq, 1, None),
    "ne": (_fn_ne, 2, 2),
    "lt": (_ordered(lambda a, b: a < b), 2, 2),
    "le": (_ordered(lambda a, b: a <= b), 2, 2),
    "gt": (_ordered(lambda a, b: a > b), 2, 2),
    "ge": (_ordered(lambda a, b: a >= b), 2, 2),
    "html": (_fn_html, 0, None),
    "js": (_fn_js, 0, None),
    "urlquery": (_fn_urlquery, 0, None),
    # Docker's additions
    "json": (_fn_json, 1, 1),
    "join": (_fn_join, 2, 2),
    "split": (_fn_split, 2, 2),
    "title": (_fn_title, 1, 1),
    "lower": (_str_fn(str.lower), 1, 1),
    "upper": (_str_fn(str.upper), 1, 1),
    "pad": (_fn_pad, 3, 3),
    "truncate": (lambda s, n: s if isinstance(s, _Header) else _fn_truncate(s, n), 2, 2),
}


# ----------------------------------------------------------------------------------------------
# Executor

class _Break(Exception):  # noqa: N818 - control flow, not an error
    pass


class _Continue(Exception):  # noqa: N818 - control flow, not an error
    pass


class _Executor:
    def __init__(self, text: str, root: Any, out: list[str]) -> None:
        self.text = text
        self.vars: list[tuple[str, Any]] = [("$", root)]
        self.out = out

    # -- errors carry Go's "at <node>" context
    def _fail(self, err: _TemplateError, pos: int, src: str) -> InvalidArgument:
        line, col = _where(self.text, err.pos if err.pos is not None else pos)
        node = err.node if err.node is not None else src
        return InvalidArgument(f"template: :{line}:{col}: executing \"\" at <{node}>: "
                               f"{err.message}")

    def run(self, nodes: list[Any], dot: Any) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                self.out.append(node.text)
            elif isinstance(node, _Action):
                value = self.pipe(node.pipe, dot)
                if not node.pipe.decl:
                    self.out.append(go_str(value))
            elif isinstance(node, _Control):
                self.control(node, dot)
            elif isinstance(node, _Loop):
                raise _Break() if node.kind == "break" else _Continue()

    def control(self, node: _Control, dot: Any) -> None:
        mark = len(self.vars)
        try:
            if node.kind == "range":
                self.range(node, dot)
                return
            value = self.pipe(node.pipe, dot)
            if _truth(value):
                self.run(node.body, value if node.kind == "with" else dot)
            else:
                self.run(node.orelse, dot)
        finally:
            del self.vars[mark:]

    def range(self, node: _Control, dot: Any) -> None:
        pipe = node.pipe
        value = self.pipe(_Pipe([], False, pipe.cmds, pipe.pos), dot)
        if value is None:
            pairs: Iterable[tuple[Any, Any]] = ()
        elif isinstance(value, Mapping):
            try:
                keys = sorted(value)
            except TypeError:
                keys = list(value)
            pairs = [(k, value[k]) for k in keys]
        elif isinstance(value, int) and not isinstance(value, bool):
            pairs = [(i, i) for i in range(value)]
        elif isinstance(value, (str, bytes, _HeaderContext)) or not isinstance(value, Iterable):
            src = pipe.cmds[0].src
            raise self._fail(_TemplateError(f"range can't iterate over {go_str(value)}"),
                             pipe.pos, src)
        else:
            pairs = list(enumerate(value))
        ran = False
        for key, item in pairs:
            ran = True
            mark = len(self.vars)
            if len(pipe.decl) == 1:
                self.vars.append((pipe.decl[0], item))
            elif len(pipe.decl) == 2:
                self.vars.extend([(pipe.decl[0], key), (pipe.decl[1], item)])
            try:
                self.run(node.body, item)
            except _Continue:
                pass
            except _Break:
                break
            finally:
                del self.vars[mark:]
        if not ran:
            self.run(node.orelse, dot)

    # -- pipelines and commands
    def pipe(self, pipe: _Pipe, dot: Any) -> Any:
        value: Any = _MISSING
        for cmd in pipe.cmds:
            value = self.command(cmd, dot, value)
        if pipe.decl:
            if pipe.assign:
                self.set_var(pipe.decl[0], value)
            else:
                self.vars.append((pipe.decl[0], value))
        return value

    def set_var(self, name: str, value: Any) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return

    def var(self, name: str) -> Any:
        for vname, value in reversed(self.vars):
            if vname == name:
                return value
        raise _TemplateError(f"undefined variable: {name}")  # the parser prevents this

    def command(self, cmd: _Command, dot: Any, final: Any) -> Any:
        first = cmd.args[0]
        try:
            if isinstance(first, _Func):
                return self.call(first.name, cmd.args[1:], dot, final)
            if isinstance(first, _Field):
                args = [self.arg(a, dot) for a in cmd.args[1:]]
                if final is not _MISSING:
                    args.append(final)
                return self.field(first, dot, args)
            if len(cmd.args) > 1 or final is not _MISSING:
                raise _TemplateError(f"can't give argument to non-function {cmd.src.split()[0]}")
            return self.arg(first, dot)
        except _TemplateError as err:
            raise self._fail(err, cmd.pos, cmd.src) from None

    def call(self, name: str, arg_nodes: list[Any], dot: Any, final: Any) -> Any:
        fn, lo, hi = _FUNCS[name]
        n = len(arg_nodes) + (final is not _MISSING)
        if n < lo or (hi is not None and n > hi):
            want = str(lo) if hi == lo else (f"at least {lo}" if hi is None else f"{lo}-{hi}")
            raise _TemplateError(f"wrong number of args for {name}: want {want} got {n}")
        if name in ("and", "or"):
            # Short-circuit: stop at the first false (and) / true (or) value, return it.
            value: Any = None
            for node in arg_nodes:
                value = self.arg(node, dot)
                if _truth(value) != (name == "and"):
                    return value
            return final if final is not _MISSING else value
        args = [self.arg(a, dot) for a in arg_nodes]
        if final is not _MISSING:
            args.append(final)
        try:
            return fn(*args)
        except _TemplateError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise _TemplateError(f"error calling {name}: {exc}") from None

    def arg(self, node: Any, dot: Any) -> Any:
        if isinstance(node, _Literal):
            return node.value
        if isinstance(node, _Dot):
            return dot
        if isinstance(node, _Var):
            return self.var(node.name)
        if isinstance(node, _Field):
            return self.field(node, dot, [])
        if isinstance(node, _Pipe):
            return self.pipe(node, dot)
        if isinstance(node, _Func):
            return self.call(node.name, [], dot, _MISSING)
        raise _TemplateError(f"can't handle {node!r}")

    def field(self, node: _Field, dot: Any, args: list[Any]) -> Any:
        if node.base is None:
            receiver = dot
        else:
            receiver = self.arg(node.base, dot)
        last = len(node.names) - 1
        for i, name in enumerate(node.names):
            try:
                receiver = _lookup(receiver, name, args if i == last else [], i == last and
                                   bool(args))
            except _TemplateError as err:
                err.pos, err.node = node.pos, node.src
                raise
        return receiver


def _lookup(obj: Any, name: str, args: list[Any], has_args: bool) -> Any:
    """Resolve ``.name`` on ``obj``: a mapping key, else an attribute, else a method call."""
    if isinstance(obj, _HeaderContext):
        return _Header(obj.title(name))
    if isinstance(obj, _Header):
        return obj
    if obj is None:
        raise _TemplateError(f"nil pointer evaluating interface {{}}.{name}")
    if isinstance(obj, Mapping):
        if has_args:
            raise _TemplateError(f"{name} is not a method but has arguments")
        if name in obj:
            return obj[name]
        raise _TemplateError(f"map has no entry for key \"{name}\"")
    if name.startswith("_") or isinstance(obj, (str, int, float, bool, list, tuple)):
        raise _TemplateError(f"can't evaluate field {name} in type {_go_type(obj)}")
    try:
        value = getattr(obj, name)
    except AttributeError:
        raise _TemplateError(f"can't evaluate field {name} in type {type(obj).__name__}") \
            from None
    if callable(value) and not isinstance(value, type):
        try:
            return value(*args)
        except TypeError as exc:
            raise _TemplateError(f"error calling {name}: {exc}") from None
    if has_args:
        raise _TemplateError(f"{name} is not a method but has arguments")
    return value


@functools.lru_cache(maxsize=256)
def _parse(template: str) -> list[Any]:
    return _Parser(template, _FUNCS).parse()


def render(template: str, data: Any) -> str:
    """Render a Go template against ``data``.

    Args:
        template: Go text/template source, e.g. ``'{{.Name}} {{join .Tags ","}}'``.
        data: the dot: a dict (keys), an object (attributes, then zero-argument methods), or
            any value.

    Returns:
        The rendered text.

    Raises:
        InvalidArgument: a parse error (``template: :1: function "nope" not defined``) or an
            execution error (``template: :1:2: executing "" at <.Nope>: map has no entry for
            key "Nope"``), always one line.

    Example:
        >>> render('{{range .}}{{upper .}} {{end}}', ["a", "b"])
        'A B '
    """
    nodes = _parse(template)
    out: list[str] = []
    _Executor(template, data, out).run(nodes, data)
    return "".join(out)


def render_header(template: str, title: Callable[[str], str]) -> str:
    """Docker's header pass of a ``table`` template: the template run over a stand-in whose every
    field is its column title (``title(field)``); functions that would change a title leave it
    alone. A failure keeps what was rendered until then, as Docker ignores its header errors."""
    out: list[str] = []
    context = _HeaderContext(title)
    try:
        _Executor(template, context, out).run(_parse(template), context)
    except InvalidArgument:
        pass
    return "".join(out)
