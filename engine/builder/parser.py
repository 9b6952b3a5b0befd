"""Phase 1 of reading a Dockerfile: text to generic nodes.

A Dockerfile is a list of *instructions*, one a logical line.  A logical line may span several
physical lines: a line that ends with the *escape character* (``\\`` by default, or a backtick
when the file starts with the ``# escape=`` directive) continues on the next one, and comment
lines and blank lines met inside a continuation are skipped.  ``RUN``, ``COPY`` and ``ADD`` may
also carry *here-documents* (``RUN <<EOF`` ... ``EOF``) whose bodies follow the instruction line.

This module turns that text into a tree of :class:`Node` objects the way BuildKit's parser does,
without knowing what any instruction means.  Each instruction becomes one child of the root:

* ``value`` is the lower-cased instruction name (``"copy"``),
* ``flags`` holds its ``--name=value`` flags, raw (``["--from=build"]``),
* ``next`` is the chain of argument nodes, whose shape depends on the instruction: one node per
  JSON element for the exec form (``CMD ["a", "b"]``), one node for the whole shell form
  (``CMD a b``), ``key``/``value``/``separator`` triples for ``ENV`` and ``LABEL``, one node per
  whitespace-separated word for ``FROM`` and ``EXPOSE``, and a nested instruction for ``ONBUILD``,
* ``start_line``/``end_line`` give the physical line range (1-based) for error messages.

:meth:`Node.dump` prints a node as BuildKit's s-expression (``(copy ["--chown=1"] "a" "/b")``),
which is what the conformance corpus records.  Phase 2 (:mod:`.instructions`) gives the nodes
their meaning.

Parser *directives* are comments of the form ``# name=value`` at the very top of the file; the
first line that is not one ends them.  ``escape`` changes the escape character, ``syntax`` and
``check`` are recorded for the builder.
"""

from __future__ import annotations

import json
import re

from portside.engine.errors import DockerfileError
from portside.engine.records import field, record

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Callable, Iterator

    _ArgParser = Callable[[str, str], "tuple[Node | None, dict[str, bool]]"]


__all__ = [
    "Heredoc",
    "Node",
    "ParseResult",
    "parse",
    "go_quote",
    "split_raw_words",
    "parse_heredoc",
]

#: Whitespace as BuildKit splits instruction arguments (no newline: lines are already joined).
_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_DIRECTIVE = re.compile(r"^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$")
_HEREDOC = re.compile(r"^(\d*)<<(-?)([^<]*)$")
_KNOWN_DIRECTIVES = ("syntax", "escape", "check")
#: Instructions whose shell form may open here-documents.
_HEREDOC_INSTRUCTIONS = frozenset({"run", "copy", "add"})


@record
class Heredoc:
    """One here-document: ``<<[-]NAME`` on the instruction line and its body below it.

    ``expand`` is false when the delimiter was quoted (``<<'EOF'``), which tells the builder not
    to expand variables in the body; ``chomp`` is true for ``<<-``, which strips leading tabs.
    ``content`` is the raw body, newlines included, tabs not yet stripped.
    """

    name: str
    content: str = ""
    expand: bool = True
    chomp: bool = False
    file_descriptor: int | None = None


@record
class Node:
    """One node of the parse tree (see the module docstring for its shape)."""

    value: str = ""
    next: Node | None = None
    children: list[Node] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    attributes: dict[str, bool] = field(default_factory=dict)
    original: str = ""
    heredocs: list[Heredoc] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    start_line: int = 0
    end_line: int = 0

    @property
    def is_json(self) -> bool:
        """True when the arguments were written in exec (JSON array) form."""
        return bool(self.attributes.get("json"))

    def args(self) -> list[str]:
        """Return the values of the argument chain (``next``, ``next.next``, ...)."""
        return [n.value for n in self.iter_next()]

    def iter_next(self) -> Iterator[Node]:
        """Yield the argument nodes that follow this one."""
        node = self.next
        while node is not None:
            yield node
            node = node.next

    def dump(self) -> str:
        """Return this node as BuildKit's s-expression text (without the outer parentheses).

        Example: the node of ``COPY --chown=1 a /b`` dumps as ``copy ["--chown=1"] "a" "/b"``.
        """
        out = self.value.lower()
        if self.flags:
            out += " [" + " ".join(go_quote(f) for f in self.flags) + "]"
        for child in self.children:
            out += "(" + child.dump() + ")\n"
        for arg in self.iter_next():
            if arg.children:
                out += " " + arg.dump()
            else:
                out += " " + go_quote(arg.value)
        return out.strip()


@record
class ParseResult:
    """The root of a parsed Dockerfile: its instructions, directives and warnings."""

    children: list[Node]
    escape: str = "\\"
    directives: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def start_line(self) -> int:
        """First line of the first instruction."""
        return self.children[0].start_line

    @property
    def end_line(self) -> int:
        """Last line of the last instruction."""
        return self.children[-1].end_line

    def dump(self) -> str:
        """Return the whole tree in BuildKit's form: one ``(instruction ...)`` line each."""
        return "".join("(" + child.dump() + ")\n" for child in self.children)


# --------------------------------------------------------------------------------------------
# Go's strconv.Quote, so dumps compare byte for byte with BuildKit's.

_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v", "\\": "\\\\", '"': '\\"'}


def go_quote(text: str) -> str:
    """Quote ``text`` the way Go's ``strconv.Quote`` does (printable Unicode is kept as is).

    Args:
        text: any string.

    Returns:
        The double-quoted form, e.g. ``go_quote('a"\\x00')`` is ``"a\\"\\x00"``.
    """
    out = ['"']
    for ch in text:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        else:
            code = ord(ch)
            if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
                out.append(f"\\x{code - 0xDC00:02x}")
            elif code < 0x80:
                out.append(f"\\x{code:02x}")
            elif code <= 0xFFFF:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Directives and line handling


class _Directives:
    """Parser directives seen so far; they are only recognised before the first other line."""

    def __init__(self) -> None:
        self.escape = "\\"
        self.values: dict[str, str] = {}
        self.done = False

    def feed(self, line: str, line_no: int) -> None:
        """Look at one physical line (left-stripped) while directives are still possible."""
        if self.done:
            return
        match = _DIRECTIVE.match(line)
        if match is None:
            self.done = True
            return
        key, value = match.group(1).lower(), match.group(2)
        if key in self.values:
            raise DockerfileError(f"only one {key} parser directive can be used", line_no)
        if key == "escape":
            if value not in ("\\", "`"):
                raise DockerfileError(f"invalid escape token {value!r} does not match ` or \\",
                                      line_no)
            self.escape = value
        if key in _KNOWN_DIRECTIVES:
            self.values[key] = value
        else:
            # Unknown directives are ignored, like BuildKit does, but still count as directives.
            self.values.setdefault(key, value)


def _is_comment(line: str) -> bool:
    return line.lstrip(" \t").startswith("#")


def _trim_newline(line: str) -> str:
    return line.rstrip("\r\n")


def _trim_continuation(line: str, escape: str) -> tuple[str, bool]:
    """Strip a trailing continuation character; return (line, is_end_of_logical_line).

    The escape character continues the line when only blanks follow it and it is not itself
    escaped (``a\\\\`` at the end of a line is a literal backslash, not a continuation).
    """
    stripped = line.rstrip(" \t")
    if stripped.endswith(escape) and not stripped.endswith(escape * 2):
        return stripped[:-1], False
    return line, True


def _split_lines(text: str) -> list[str]:
    """Split on ``\\n`` only, keeping line ends (``str.splitlines`` also splits on \\f, \\v...)."""
    lines = text.split("\n")
    result = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        result.append(lines[-1])
    return result


# --------------------------------------------------------------------------------------------
# Flags and words


def extract_flags(line: str) -> tuple[str, list[str]]:
    """Split leading ``--flag[=value]`` words off an instruction's arguments.

    Quotes and backslashes inside a flag are resolved; ``--`` ends the flags.

    Returns:
        (rest of the line, list of flags as written, e.g. ``["--from=build"]``).
    """
    words: list[str] = []
    word = ""
    phase = "spaces"
    quote = ""
    blank_ok = False
    pos = 0
    n = len(line)
    while pos <= n:
        ch = line[pos] if pos < n else ""
        if phase == "spaces":
            if pos == n:
                break
            if ch.isspace():
                pos += 1
                continue
            if ch != "-" or pos + 1 == n or line[pos + 1] != "-":
                return line[pos:], words
            phase = "word"
        if pos == n:
            if word != "--" and (blank_ok or word):
                words.append(word)
            break
        if phase == "word":
            if ch.isspace():
                phase = "spaces"
                if word == "--":
                    return line[pos:], words
                if blank_ok or word:
                    words.append(word)
                word = ""
                blank_ok = False
            elif ch in ("'", '"'):
                quote = ch
                blank_ok = True
                phase = "quote"
            elif ch == "\\":
                if pos + 1 < n:
                    pos += 1
                    word += line[pos]
            else:
                word += ch
        else:  # in a quote
            if ch == quote:
                phase = "word"
            elif ch == "\\":
                if pos + 1 == n:
                    phase = "word"
                else:
                    pos += 1
                    word += line[pos]
            else:
                word += ch
        pos += 1
    return "", words


def parse_words(rest: str, escape: str) -> list[str]:
    """Split ``rest`` on unquoted whitespace, keeping quotes and escapes in the words.

    This is how ``ENV``, ``LABEL`` and ``ARG`` find their ``name=value`` words before any
    expansion happens: ``a="b c" d`` gives ``['a="b c"', 'd']``.
    """
    words: list[str] = []
    word = ""
    phase = "spaces"
    quote = ""
    blank_ok = False
    pos = 0
    n = len(rest)
    while pos <= n:
        ch = rest[pos] if pos < n else ""
        if phase == "spaces":
            if pos == n:
                break
            if ch.isspace():
                pos += 1
                continue
            phase = "word"
        if pos == n:
            if blank_ok or word:
                words.append(word)
            break
        if phase == "word":
            if ch.isspace():
                phase = "spaces"
                if blank_ok or word:
                    words.append(word)
                word = ""
                blank_ok = False
                pos += 1
                continue
            if ch in ("'", '"'):
                quote = ch
                blank_ok = True
                phase = "quote"
            if ch == escape:
                if pos + 1 == n:
                    pos += 1
                    continue  # an escape at the very end is dropped
                # Unquoted escape: keep it and the next character, even a quote.
                word += ch
                pos += 1
                ch = rest[pos]
            word += ch
            pos += 1
            continue
        # in a quote
        if ch == quote:
            phase = "word"
        if ch == escape and quote != "'":
            if pos + 1 == n:
                phase = "word"
                pos += 1
                continue
            word += ch
            pos += 1
            ch = rest[pos]
        word += ch
        pos += 1
    return words


def split_raw_words(line: str, escape: str = "\\") -> list[str]:
    """Split a shell line into words on unquoted blanks, keeping quotes and escapes verbatim.

    Used to find here-document openers: ``cat <<"EOF" > f`` gives ``['cat', '<<"EOF"', '>',
    'f']`` while ``echo "<<EOF"`` gives ``['echo', '"<<EOF"']`` (not a here-document).
    """
    words: list[str] = []
    word: list[str] = []
    in_word = False
    quote = ""
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            word.append(ch)
            if ch == quote:
                quote = ""
            elif ch == escape and quote == '"' and i + 1 < len(line):
                i += 1
                word.append(line[i])
        elif ch.isspace():
            if in_word:
                words.append("".join(word))
                word = []
                in_word = False
        else:
            in_word = True
            word.append(ch)
            if ch in ("'", '"'):
                quote = ch
            elif ch == escape and i + 1 < len(line):
                i += 1
                word.append(line[i])
        i += 1
    if in_word:
        words.append("".join(word))
    return words


def parse_heredoc(word: str) -> Heredoc | None:
    """Return the :class:`Heredoc` a raw word such as ``<<-"EOF"`` opens, or None.

    Raises:
        DockerfileError: the delimiter is malformed (e.g. an unterminated quote).
    """
    match = _HEREDOC.match(word)
    if match is None or not match.group(3):
        return None
    from portside.engine.builder.shell import ShellError, expand_words

    fd_text, chomp, raw_name = match.groups()
    try:
        names = expand_words(raw_name, {})
    except ShellError as exc:
        raise DockerfileError(f"invalid heredoc delimiter {raw_name!r}: {exc}") from exc
    if len(names) != 1:
        raise DockerfileError(f"invalid heredoc delimiter {raw_name!r}")
    return Heredoc(name=names[0], expand=names[0] == raw_name, chomp=chomp == "-",
                   file_descriptor=int(fd_text) if fd_text else None)


# --------------------------------------------------------------------------------------------
# Argument shapes, one function per kind of instruction


class _NotStringArray(Exception):
    """A JSON array holding something other than strings: an error, not a shell-form fallback."""


def _chain(values: list[str]) -> Node | None:
    head: Node | None = None
    for value in reversed(values):
        head = Node(value=value, next=head)
    return head


def _reject_constant(name: str) -> object:
    raise ValueError(f"invalid JSON constant {name}")


def _parse_json(rest: str) -> tuple[Node | None, dict[str, bool]] | None:
    """Parse the exec form; None when ``rest`` is not valid JSON (shell form then applies)."""
    rest = rest.lstrip()
    if not rest.startswith("["):
        return None
    try:
        values = json.loads(rest, parse_constant=_reject_constant)
    except ValueError:
        return None
    if not isinstance(values, list):
        return None
    if not all(isinstance(v, str) for v in values):
        raise _NotStringArray()
    return _chain(values), {"json": True}


def _parse_maybe_json(rest: str, escape: str) -> tuple[Node | None, dict[str, bool]]:
    if not rest:
        return None, {}
    parsed = _parse_json(rest)
    if parsed is not None:
        return parsed
    return Node(value=rest), {}


def _parse_whitespace_list(rest: str, escape: str) -> tuple[Node | None, dict[str, bool]]:
    if not rest:
        return None, {}
    return _chain(_WHITESPACE.split(rest)), {}


def _parse_maybe_json_to_list(rest: str, escape: str) -> tuple[Node | None, dict[str, bool]]:
    parsed = _parse_json(rest)
    if parsed is not None:
        return parsed
    return _parse_whitespace_list(rest, escape)


def _parse_string(rest: str, escape: str) -> tuple[Node | None, dict[str, bool]]:
    if not rest:
        return None, {}
    return Node(value=rest), {}


def _parse_name_or_name_value(rest: str, escape: str) -> tuple[Node | None, dict[str, bool]]:
    return _chain(parse_words(rest, escape)), {}


def _parse_name_value(rest: str, escape: str, key: str) -> Node | None:
    words = parse_words(rest, escape)
    if not words:
        return None
    if "=" not in words[0]:
        # The old form, ``ENV name value with spaces``: one pair, the value is the raw rest.
        parts = _WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise DockerfileError(f"{key} names can not be blank" if not parts[0]
                                  else f"{key} must have two arguments")
        return _chain([parts[0], parts[1], ""])
    values: list[str] = []
    for word in words:
        if "=" not in word:
            raise DockerfileError(
                f"Syntax error - can't find = in {word!r}. Must be of the form: name=value")
        name, value = word.split("=", 1)
        values += [name, value, "="]
    return _chain(values)


def _parse_env(rest: str, escape: str) -> tuple[Node | None, dict[str, bool]]:
    return _parse_name_value(rest, escape, "ENV"), {}


def _parse_label(rest: str, escape: str) -> tuple[Node | None, dict[str, bool]]:
    return _parse_name_value(rest, escape, "LABEL"), {}


def _parse_healthcheck(rest: str, escape: str) -> tuple[Node | None, dict[str, bool]]:
    sep = 0
    while sep < len(rest) and not rest[sep].isspace():
        sep += 1
    if sep == 0:
        return None, {}
    nxt = sep
    while nxt < len(rest) and rest[nxt].isspace():
        nxt += 1
    cmd, attrs = _parse_maybe_json(rest[nxt:], escape)
    return Node(value=rest[:sep], next=cmd), attrs


def _parse_onbuild(rest: str, escape: str) -> tuple[Node | None, dict[str, bool]]:
    if not rest:
        return None, {}
    child = _node_from_line(rest, escape)
    return Node(children=[child]), {}


def _parse_ignore(rest: str, escape: str) -> tuple[Node | None, dict[str, bool]]:
    # Unknown instructions parse (phase 2 rejects them with a clear message).
    return Node(), {}


#: Instruction name -> how its arguments are shaped.
ARGUMENT_PARSERS: dict[str, _ArgParser] = {
    "add": _parse_maybe_json_to_list,
    "arg": _parse_name_or_name_value,
    "cmd": _parse_maybe_json,
    "copy": _parse_maybe_json_to_list,
    "entrypoint": _parse_maybe_json,
    "env": _parse_env,
    "expose": _parse_whitespace_list,
    "from": _parse_whitespace_list,
    "healthcheck": _parse_healthcheck,
    "label": _parse_label,
    "maintainer": _parse_string,
    "onbuild": _parse_onbuild,
    "run": _parse_maybe_json,
    "shell": _parse_maybe_json,
    "stopsignal": _parse_string,
    "user": _parse_string,
    "volume": _parse_maybe_json_to_list,
    "workdir": _parse_string,
}


def _node_from_line(line: str, escape: str) -> Node:
    parts = _WHITESPACE.split(line.strip(), maxsplit=1)
    cmd = parts[0]
    rest, flags = "", []  # type: tuple[str, list[str]]
    if len(parts) == 2:
        rest, flags = extract_flags(parts[1])
    rest = rest.strip()
    parser = ARGUMENT_PARSERS.get(cmd.lower(), _parse_ignore)
    try:
        nxt, attrs = parser(rest, escape)
    except _NotStringArray:
        raise DockerfileError("only string arrays are allowed in JSON arrays") from None
    return Node(value=cmd.lower(), next=nxt, flags=flags, attributes=attrs, original=line)


def _can_contain_heredoc(node: Node) -> bool:
    if node.value == "onbuild" and node.next is not None and node.next.children:
        node = node.next.children[0]
    return node.value in _HEREDOC_INSTRUCTIONS and not node.is_json


def _heredocs_from_line(line: str, escape: str) -> list[Heredoc]:
    docs = []
    for word in split_raw_words(line, escape):
        doc = parse_heredoc(word)
        if doc is not None:
            docs.append(doc)
    return docs


# --------------------------------------------------------------------------------------------


def parse(text: str) -> ParseResult:
    """Parse Dockerfile text into a :class:`ParseResult` (phase 1 only).

    Args:
        text: the whole Dockerfile.

    Returns:
        The instructions as nodes with line ranges, the directives and any warnings.

    Raises:
        DockerfileError: a malformed directive, an invalid JSON array of non-strings, an
            ``ENV``/``LABEL`` without value, an unterminated here-document, or a file with no
            instructions.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = _split_lines(text)
    directives = _Directives()
    children: list[Node] = []
    warnings: list[str] = []
    comments: list[str] = []
    index = 0  # next physical line to read (0-based)
    total = len(lines)

    while index < total:
        raw = _trim_newline(lines[index])
        index += 1
        if _is_comment(raw):
            comment = raw.lstrip(" \t")[1:].strip()
            comments = comments + [comment] if comment else []
        stripped = raw.lstrip(" \t\r\n\v\f")
        directives.feed(stripped, index)
        start_line = index
        line = "" if _is_comment(stripped) else stripped
        line, end = _trim_continuation(line, directives.escape)
        if end and not line:
            continue

        empty_continuation = False
        while not end and index < total:
            raw = _trim_newline(lines[index])
            index += 1
            directives.feed(raw.lstrip(" \t"), index)
            if _is_comment(raw):
                continue
            if not raw.strip(" \t\r\n\v\f"):
                empty_continuation = True
                continue
            piece, end = _trim_continuation(raw, directives.escape)
            line += piece
        if empty_continuation:
            warnings.append(f"empty continuation line found in: {line}")

        try:
            node = _node_from_line(line, directives.escape)
            if _can_contain_heredoc(node) and "<<" in line:
                node.heredocs = _heredocs_from_line(line, directives.escape)
        except DockerfileError as exc:
            raise DockerfileError(exc.detail, start_line, index) from None

        for doc in node.heredocs:
            body: list[str] = []
            terminated = False
            while index < total:
                physical = lines[index]
                index += 1
                candidate = _trim_newline(physical)
                if doc.chomp:
                    candidate = candidate.lstrip("\t")
                if candidate == doc.name:
                    terminated = True
                    break
                body.append(physical)
            if not terminated:
                raise DockerfileError(f"unterminated heredoc {doc.name}", start_line, index)
            doc.content = "".join(body)

        node.start_line = start_line
        node.end_line = index
        node.comments = comments
        comments = []
        children.append(node)

    if not children:
        raise DockerfileError("file with no instructions", total or None)
    return ParseResult(children=children, escape=directives.escape,
                       directives=dict(directives.values), warnings=warnings)
