"""Shell-word expansion as Dockerfile instructions do it.

Instructions such as ``COPY``, ``ENV``, ``WORKDIR`` and ``FROM`` expand variables in their
arguments *before* anything runs, with a small subset of POSIX shell rules (``RUN`` in shell
form is left alone: the container's shell expands it).  The rules:

* ``'single quotes'`` keep everything literally; ``"double quotes"`` keep blanks and allow
  ``$`` expansion, and there the escape character only escapes ``"``, ``$`` and itself;
* outside quotes the escape character (``\\`` or a backtick) makes the next character literal,
  and one at the very end of the word is dropped;
* ``$name`` and ``${name}`` expand to the variable's value, the empty string when it is unset;
  positional (``$1``) and special (``$@ $* $# $? $- $$ $! $0``) parameters are never set;
* modifiers, with ``word`` itself expanded:

  ============================  =============================================================
  ``${v:-word}`` ``${v-word}``  ``word`` when v is unset or empty (``-``: only when unset)
  ``${v:+word}`` ``${v+word}``  ``word`` when v is set and non-empty (``+``: when set)
  ``${v:?msg}``  ``${v?msg}``   fail with ``msg`` when v is unset or empty (``?``: unset)
  ``${v#pat}``   ``${v##pat}``  v without its shortest / longest prefix matching the glob
  ``${v%pat}``   ``${v%%pat}``  v without its shortest / longest suffix matching the glob
  ``${v/pat/r}`` ``${v//pat/r}``  first / every match of the glob replaced by ``r``
  ============================  =============================================================

:func:`expand_word` gives one string; :func:`expand_words` also splits the result into words
the way a shell would: blanks that come from unquoted text or unquoted expansions separate
words, quoted text never does (``ENV space="a  b"`` then ``x${space}`` gives ``xa``, ``b``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from portside.engine.errors import DockerfileError

__all__ = ["ShellError", "ShellLex", "expand_word", "expand_words", "env_from_list"]

_EOF = ""
_SPECIAL_PARAMS = frozenset("@*#?-$!0")


class ShellError(DockerfileError):
    """A word could not be expanded (bad substitution, unterminated quote, ``${v?msg}``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


def env_from_list(pairs: Iterable[str]) -> dict[str, str]:
    """Turn ``["NAME=value", ...]`` into a dict (later entries win; no ``=`` means empty)."""
    env: dict[str, str] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        env[name] = value
    return env


class _Words:
    """Accumulates the words of an expansion; blanks split only when they are not raw."""

    def __init__(self) -> None:
        self.word = ""
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word = ""
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        self.word += text
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def result(self) -> list[str]:
        if self.word:
            self.words.append(self.word)
            self.word = ""
            self.in_word = False
        return self.words


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else _EOF

    def next(self) -> str:
        if self.pos >= len(self.text):
            return _EOF
        ch = self.text[self.pos]
        self.pos += 1
        return ch


class ShellLex:
    """A configured expander: escape character plus BuildKit's lexing options.

    Args:
        escape: the escape character, ``\\`` or a backtick (the ``# escape=`` directive).
        raw_quotes: keep quote characters in the result (used to find here-documents).
        raw_escapes: keep escape characters in the result.
        skip_unset_env: leave references to unset variables as written instead of expanding
            them to nothing (used when expanding in two passes).
    """

    def __init__(self, escape: str = "\\", *, raw_quotes: bool = False, raw_escapes: bool = False,
                 skip_unset_env: bool = False) -> None:
        if escape not in ("\\", "`"):
            raise ValueError(f"invalid escape character {escape!r}")
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset_env = skip_unset_env

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        """Expand ``word`` into one string; see :func:`expand_word`."""
        return _Expansion(self, word, env).run()[0]

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        """Expand ``word`` and split it into words; see :func:`expand_words`."""
        return _Expansion(self, word, env).run()[1]


class _Expansion:
    """One expansion of one word (the scanner state)."""

    def __init__(self, lex: ShellLex, word: str, env: Mapping[str, str]) -> None:
        self.lex = lex
        self.scan = _Scanner(word)
        self.env = env

    def run(self) -> tuple[str, list[str]]:
        return self.stop_on(_EOF)

    def lookup(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            return self.env[name], True
        return "", False

    # -- the main loop -------------------------------------------------------------------
    def stop_on(self, stop: str) -> tuple[str, list[str]]:
        """Process until ``stop`` (consumed) or the end; return (text, words)."""
        result: list[str] = []
        words = _Words()
        esc = self.lex.escape
        while self.scan.peek() != _EOF:
            ch = self.scan.peek()
            if stop and ch == stop:
                self.scan.next()
                return "".join(result), words.result()
            if ch == "'":
                text = self.single_quote()
                result.append(text)
                words.add_raw(text)
            elif ch == '"':
                text = self.double_quote()
                result.append(text)
                words.add_raw(text)
            elif ch == "$":
                text = self.dollar()
                result.append(text)
                words.add_string(text)
            else:
                ch = self.scan.next()
                if ch == esc:
                    if self.lex.raw_escapes:
                        words.add_raw(ch)
                        result.append(ch)
                    ch = self.scan.next()
                    if ch == _EOF:
                        break
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
        if stop:
            raise ShellError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.result()

    def single_quote(self) -> str:
        out = []
        ch = self.scan.next()
        if self.lex.raw_quotes:
            out.append(ch)
        while True:
            ch = self.scan.next()
            if ch == _EOF:
                raise ShellError(
                    "unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.lex.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        out = []
        ch = self.scan.next()
        if self.lex.raw_quotes:
            out.append(ch)
        esc = self.lex.escape
        while True:
            ch = self.scan.peek()
            if ch == _EOF:
                raise ShellError(
                    "unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.scan.next()
                if self.lex.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.scan.next()
            if ch == esc:
                if self.lex.raw_escapes:
                    out.append(ch)
                following = self.scan.peek()
                if following == _EOF:
                    continue  # reported as unterminated on the next round
                if following in ('"', "$", esc):
                    ch = self.scan.next()
            out.append(ch)

    # -- $ expansions ----------------------------------------------------------------------
    def name(self) -> str:
        """Read a variable name: letters/digits/_, or all leading digits, or one special."""
        out: list[str] = []
        while self.scan.peek() != _EOF:
            ch = self.scan.peek()
            if not out and ch.isdigit():
                while self.scan.peek() != _EOF and self.scan.peek().isdigit():
                    out.append(self.scan.next())
                return "".join(out)
            if not out and ch in _SPECIAL_PARAMS:
                return self.scan.next()
            if not (ch.isalnum() or ch == "_"):
                break
            out.append(self.scan.next())
        return "".join(out)

    def nested(self, stop: str) -> str:
        try:
            return self.stop_on(stop)[0]
        except ShellError:
            if self.scan.peek() == _EOF:
                raise ShellError("syntax error: missing '}'") from None
            raise

    def dollar(self) -> str:
        self.scan.next()  # the $
        if self.scan.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value, found = self.lookup(name)
            if not found and self.lex.skip_unset_env:
                return "$" + name
            return value

        self.scan.next()  # the {
        ch = self.scan.peek()
        if ch == _EOF:
            raise ShellError("syntax error: missing '}'")
        if ch in "{}:":
            raise ShellError("syntax error: bad substitution")
        name = self.name()
        value, found = self.lookup(name)
        op = self.scan.next()
        keep = not found and self.lex.skip_unset_env

        if op == "}":
            return "${" + name + "}" if keep else value
        if op == _EOF:
            raise ShellError("syntax error: missing '}'")
        if not name:
            raise ShellError("syntax error: bad substitution")

        if op in "-+?":
            word = self.nested("}")
            if keep:
                return "${" + name + op + word + "}"
            if op == "-":
                return value if found else word
            if op == "+":
                return word if found else ""
            if not found:
                raise ShellError(f"{name}: {word or 'is not allowed to be unset'}")
            return value

        if op == ":":
            modifier = self.scan.next()
            word = self.nested("}")
            if modifier not in ("-", "+", "?"):
                raise ShellError(f"unsupported modifier ({modifier}) in substitution")
            if keep:
                return "${" + name + ":" + modifier + word + "}"
            if modifier == "-":
                return value or word
            if modifier == "+":
                return word if value else ""
            if not value:
                raise ShellError(f"{name}: {word or 'is not allowed to be empty'}")
            return value

        if op in "#%":
            longest = self.scan.peek() == op
            if longest:
                self.scan.next()
            pattern = self.nested("}")
            if keep:
                return "${" + name + op * (2 if longest else 1) + pattern + "}"
            return _trim(value, pattern, prefix=op == "#", longest=longest)

        if op == "/":
            every = self.scan.peek() == "/"
            if every:
                self.scan.next()
            pattern = self.nested("/")
            replacement = self.nested("}")
            if keep:
                return "${" + name + "/" * (2 if every else 1) + pattern + "/" + replacement + "}"
            return _replace(value, pattern, replacement, every)

        raise ShellError(f"unsupported modifier ({op}) in substitution")


def _glob_to_regex(pattern: str) -> str:
    """Translate a shell glob (``*``, ``?``, ``[...]``, ``\\x``) to a regular expression."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1:i + 2] in ("!", "^") else i + 1)
            if end == -1:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1:end]
                negate = body[:1] in ("!", "^")
                if negate:
                    body = body[1:]
                body = body.replace("\\", "\\\\")
                out.append("[" + ("^" if negate else "") + body + "]")
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def _trim(value: str, pattern: str, *, prefix: bool, longest: bool) -> str:
    regex = re.compile(_glob_to_regex(pattern), re.DOTALL)
    sizes = range(len(value), -1, -1) if longest else range(0, len(value) + 1)
    for size in sizes:
        part = value[:size] if prefix else value[len(value) - size:]
        if regex.fullmatch(part):
            return value[size:] if prefix else value[:len(value) - size]
    return value


def _replace(value: str, pattern: str, replacement: str, every: bool) -> str:
    if not pattern:
        return value
    regex = re.compile(_glob_to_regex(pattern), re.DOTALL)
    # A shell replaces the longest match at the leftmost position; re's greedy ``.*`` matches
    # the longest too, and the callable keeps backslashes in the replacement literal.
    return regex.sub(lambda _m: replacement, value, count=0 if every else 1)


def expand_word(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Expand variables, quotes and escapes in ``word``, giving one string.

    Args:
        word: the text as written in the Dockerfile, e.g. ``"${HOME:-/root}"/.cache``.
        env: variables in scope (a set-but-empty variable maps to ``""``).
        escape: the escape character, ``\\`` or a backtick.

    Returns:
        The expanded string.

    Raises:
        ShellError: unterminated quote or ``${``, bad substitution, unsupported modifier, or a
            ``${v?msg}`` / ``${v:?msg}`` whose variable is unset (or empty).

    Example::

        >>> expand_word("he${XXX:-$PWD}xx", {"PWD": "/home"})
        'he/homexx'
    """
    return ShellLex(escape).process_word(word, env)


def expand_words(word: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Expand ``word`` like :func:`expand_word`, then split it into shell words.

    Blanks from unquoted text and unquoted ``$`` expansions separate words; quoted text never
    does.

    Returns:
        The words, e.g. ``expand_words('a${s}"${s}"', {"s": "1 2"})`` is ``['a1', '21 2']``.

    Raises:
        ShellError: as :func:`expand_word`.
    """
    return ShellLex(escape).process_words(word, env)
