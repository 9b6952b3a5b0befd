"""Image references: ``[domain/]path[:tag][@digest]`` and Docker's normalisation.

A *reference* names an image in a registry. Its grammar (from the distribution project's
``reference`` package, which Docker, containerd and podman all follow)::

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ domain "/" ] path
    domain     := host [ ":" port ]          host: DNS name, IPv4, or "[" IPv6 "]"
    path       := component ( "/" component )*
    component  := [a-z0-9]+ ( separator [a-z0-9]+ )*     separator: "." | "_" | "__" | "-"+
    tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
    digest     := algorithm ":" hex               e.g. "sha256:" + 64 lower-case hex digits

The whole name (domain and path) is at most 255 characters. Only the domain may hold upper case.

Users rarely type the full form. Docker *normalises* what they type:

* A first component is a domain only if it holds a ``.`` or a ``:``, is ``localhost``, or has upper
  case; otherwise the name lives on Docker Hub, ``docker.io``. (``index.docker.io`` is the Hub's
  old name and becomes ``docker.io``.)
* A one-component name on Docker Hub is an *official image* and gets the ``library/`` namespace:
  ``busybox`` is ``docker.io/library/busybox``.
* With neither tag nor digest the tag ``latest`` is implied.

and *familiarises* it back for display (``docker images``, ``docker ps``): ``docker.io/`` and an
official ``library/`` are dropped, so ``docker.io/library/busybox:latest`` shows as
``busybox:latest``.

Images may also be named by their id (the hex digest of their config): :func:`is_digest` and
:func:`is_short_id` tell such names apart so callers can try an id lookup.
"""

from __future__ import annotations

import re

from portside.engine.errors import InvalidArgument
from portside.engine.records import record, replace

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_TAG",
    "Reference",
    "is_digest",
    "is_short_id",
    "parse_reference",
    "split_domain",
]

DEFAULT_DOMAIN = "docker.io"
DEFAULT_TAG = "latest"
#: Docker Hub's historical name; references using it are rewritten to DEFAULT_DOMAIN.
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
NAME_MAX_LENGTH = 255

# The grammar above as regular expressions, built from named pieces so each can be read alone.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_PATH = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[[a-fA-F0-9:]+\]"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_PATH_RE = re.compile(_PATH)
_DOMAIN_RE = re.compile(_DOMAIN)
_TAG_RE = re.compile(_TAG, re.ASCII)
_DIGEST_RE = re.compile(_DIGEST)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")
_SHORT_ID_RE = re.compile(r"(?:sha256:)?[a-f0-9]{4,64}")

# Algorithms whose digests we can verify, with the length of their hex encoding. Like go-digest,
# a known algorithm demands lower-case hex of exactly that length.
_DIGEST_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}


def _invalid(text: str) -> InvalidArgument:
    return InvalidArgument(f"invalid reference format: {text}")


@record(frozen=True)
class Reference:
    """A fully normalised image reference.

    ``domain`` and ``path`` are always set (``docker.io`` / ``library/busybox`` for ``busybox``);
    ``tag`` and ``digest`` are optional, and both may be present (``name:tag@digest``), in which
    case the digest is what a registry resolves and the tag is informational, as in Docker.
    """

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The repository's full name, ``domain/path`` (``docker.io/library/busybox``)."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The repository as Docker shows it: ``busybox``, ``user/img``, ``localhost:5000/x``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        if self.path.startswith(OFFICIAL_PREFIX):
            rest = self.path[len(OFFICIAL_PREFIX):]
            # Only a single component under library/ is an official image; a nested path keeps
            # its namespace so it cannot be mistaken for one.
            if "/" not in rest:
                return rest
        return self.path

    def _suffix(self) -> str:
        out = ""
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def __str__(self) -> str:
        """Full normalised text: ``docker.io/library/busybox:latest`` or ``name@sha256:…``."""
        return self.name + self._suffix()

    def familiar(self) -> str:
        """The short text ``docker images`` / ``docker ps`` show: ``busybox:latest``."""
        return self.familiar_name + self._suffix()

    def with_tag(self, tag: str) -> Reference:
        """Return a copy with ``tag`` (the digest is kept).

        Raises:
            InvalidArgument: ``tag`` does not match the tag grammar.
        """
        if not _TAG_RE.fullmatch(tag):
            raise InvalidArgument(f"invalid tag format: {tag}")
        return replace(self, tag=tag)

    def with_digest(self, digest: str) -> Reference:
        """Return a copy pinned to ``digest`` (the tag is kept).

        Raises:
            InvalidArgument: ``digest`` is not ``algorithm:hex`` of a valid length.
        """
        _check_digest(digest, digest)
        return replace(self, digest=digest)

    def without_tag(self) -> Reference:
        """Return a copy with no tag (useful to compare repositories)."""
        return replace(self, tag=None)


def split_domain(name: str) -> tuple[str, str]:
    """Split a (possibly familiar) name into its domain and path, Docker's way.

    The first ``/``-separated component is taken as a domain only when it looks like one: it
    contains ``.`` or ``:``, is ``localhost``, or contains upper case (Docker Hub namespaces are
    lower case). Otherwise the domain is ``docker.io``, and a single-component Hub name gets the
    ``library/`` namespace. ``index.docker.io`` becomes ``docker.io``. No validation is done.

    Args:
        name: a repository name, optionally with a tag or digest (they stay on the path).

    Returns:
        ``(domain, path)``, e.g. ``("docker.io", "library/busybox")`` for ``"busybox"`` and
        ``("localhost:5000", "a/b")`` for ``"localhost:5000/a/b"``.
    """
    first, sep, rest = name.partition("/")
    if not sep:
        return DEFAULT_DOMAIN, OFFICIAL_PREFIX + name
    if first == LEGACY_DEFAULT_DOMAIN:
        domain, path = DEFAULT_DOMAIN, rest
    elif first == "localhost" or "." in first or ":" in first or first.lower() != first:
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    return domain, path


def _check_digest(digest: str, text: str) -> None:
    if not _DIGEST_RE.fullmatch(digest):
        raise _invalid(text)
    algorithm, _, encoded = digest.partition(":")
    expected = _DIGEST_HEX_LENGTH.get(algorithm)
    if expected is None:
        raise InvalidArgument(f"invalid reference format: unsupported digest algorithm: {text}")
    if len(encoded) != expected or encoded.lower() != encoded:
        raise InvalidArgument(f"invalid reference format: invalid digest {digest}: {text}")


def parse_reference(text: str, *, default_tag: str | None = DEFAULT_TAG) -> Reference:
    """Parse and normalise an image reference as ``docker pull`` / ``docker run`` do.

    Args:
        text: what the user typed: ``busybox``, ``user/img:1``, ``localhost:5000/a/b:t``,
            ``ghcr.io/o/r@sha256:<64 hex>``, ``[::1]:5000/x``.
        default_tag: the tag implied when ``text`` has neither tag nor digest (``latest``);
            ``None`` leaves such a reference untagged. A digest never gets a default tag.

    Returns:
        The normalised :class:`Reference`; ``str()`` of it is the canonical form.

    Raises:
        InvalidArgument: ``"invalid reference format: <text>"`` for text outside the grammar,
            ``"invalid reference format: repository name (library/Busybox) must be lowercase"``
            for upper case in the path, and Docker's messages for a 64-hex name (an image id
            is not a repository name) and for a name over 255 characters.

    Example:
        >>> str(parse_reference("busybox"))
        'docker.io/library/busybox:latest'
    """
    if not text:
        raise _invalid(text)
    if _IDENTIFIER_RE.fullmatch(text):
        raise InvalidArgument(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings")

    # The digest follows the one "@"; the tag is after the last ":" that follows the last "/"
    # (an earlier ":" belongs to a registry port, as in localhost:5000/x).
    remainder, at, digest = text.partition("@")
    if at:
        _check_digest(digest, text)
    slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    tag: str | None = None
    if colon > slash:
        remainder, tag = remainder[:colon], remainder[colon + 1:]
        if not _TAG_RE.fullmatch(tag):
            raise _invalid(text)

    domain, path = split_domain(remainder)
    if not _DOMAIN_RE.fullmatch(domain):
        raise _invalid(text)
    if not _PATH_RE.fullmatch(path):
        if path.lower() != path and _PATH_RE.fullmatch(path.lower()):
            raise InvalidArgument(
                f"invalid reference format: repository name ({path}) must be lowercase")
        raise _invalid(text)
    if len(domain) + 1 + len(path) > NAME_MAX_LENGTH:
        raise InvalidArgument(
            f"invalid reference format: repository name must not be more than "
            f"{NAME_MAX_LENGTH} characters: {text[:40]}…")

    if tag is None and not at:
        tag = default_tag
    return Reference(domain=domain, path=path, tag=tag, digest=digest if at else None)


def is_digest(text: str) -> bool:
    """True if ``text`` is a full ``sha256:<64 lower-case hex>`` digest."""
    algorithm, sep, encoded = text.partition(":")
    return bool(sep) and algorithm == "sha256" and _IDENTIFIER_RE.fullmatch(encoded) is not None


def is_short_id(text: str) -> bool:
    """True if ``text`` could be an image or container id prefix.

    That is 4 to 64 lower-case hex digits, optionally after ``sha256:``. Such text may also be a
    valid repository name (``abcd``), so callers look the name up first, then the id prefix.
    """
    return _SHORT_ID_RE.fullmatch(text) is not None
