"""Registry authentication: challenges, bearer tokens and basic auth.

A registry that wants credentials answers ``401`` with a ``WWW-Authenticate`` header naming a
*scheme* and its parameters (RFC 7235)::

    WWW-Authenticate: Basic realm="Registry Realm"
    WWW-Authenticate: Bearer realm="https://auth.example/token",service="registry.example",
                      scope="repository:library/busybox:pull"

* **Basic**: resend the request with ``Authorization: Basic base64(user:password)``.
* **Bearer** (Docker's token flow): ask the *realm* for a token, with ``service`` and one
  ``scope`` per repository and actions (``repository:NAME:pull,push``), optionally
  authenticating to the realm with basic credentials. Anonymous requests get a token too when
  the repository is public. The realm answers ``{"token": …, "expires_in": …}`` (``access_token``
  is the OAuth2 name of the same thing), and the request is resent with
  ``Authorization: Bearer <token>``.

Tokens are cached per (realm, service, scopes) until shortly before they expire, so a pull asks
for one token per repository rather than one per blob. Secrets never enter an error message.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
from typing import Callable

from ..errors import RegistryError, Unauthorized
from .credentials import Credentials
from ..records import field, record

#: How long before its announced expiry a token is considered stale (clock skew, slow requests).
_EXPIRY_MARGIN = 10.0
_DEFAULT_TOKEN_LIFETIME = 60.0


@record(frozen=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header: a scheme (lower case) and its params."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t":
        i += 1
    return i


def _read_token(text: str, i: int) -> tuple[str, int]:
    start = i
    while i < len(text) and text[i] not in " \t,=\"":
        i += 1
    return text[start:i], i


def _read_quoted(text: str, i: int) -> tuple[str, int]:
    # text[i] is the opening quote; backslash escapes the next character (RFC 7230 quoted-pair)
    out = []
    i += 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise ValueError("unterminated quoted string")


def parse_www_authenticate(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` value into its challenges.

    Args:
        header: e.g. ``Bearer realm="https://a/token",service="reg",scope="repository:x:pull"``.
            Several challenges may share one header, separated by commas.

    Returns:
        The challenges in order; the scheme is lower-cased, parameter names too.

    Raises:
        RegistryError: the header cannot be parsed.
    """
    challenges: list[Challenge] = []
    i = 0
    text = header or ""
    try:
        while True:
            i = _skip_space(text, i)
            while i < len(text) and text[i] == ",":
                i = _skip_space(text, i + 1)
            if i >= len(text):
                break
            scheme, i = _read_token(text, i)
            if not scheme:
                raise ValueError(f"expected a scheme at {i}")
            params: dict[str, str] = {}
            while True:
                i = _skip_space(text, i)
                while i < len(text) and text[i] == ",":
                    i = _skip_space(text, i + 1)
                if i >= len(text):
                    break
                name, j = _read_token(text, i)
                j = _skip_space(text, j)
                if not name or j >= len(text) or text[j] != "=":
                    break  # a new scheme starts here (or a token68 we do not use)
                j = _skip_space(text, j + 1)
                if j < len(text) and text[j] == '"':
                    value, j = _read_quoted(text, j)
                else:
                    value, j = _read_token(text, j)
                params[name.lower()] = value
                i = j
            challenges.append(Challenge(scheme.lower(), params))
    except ValueError as exc:
        raise RegistryError(f"cannot parse WWW-Authenticate header: {exc}") from None
    return challenges


def basic_header(creds: Credentials) -> str:
    """``Basic base64(user:secret)``."""
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.secret}".encode()).decode()


def repository_scope(repository: str, actions: str = "pull") -> str:
    """The token scope for ``actions`` (``pull`` or ``pull,push``) on ``repository``."""
    return f"repository:{repository}:{actions}"


#: ``fetch(url, headers) -> (status, body bytes)``: a plain GET with no authentication logic,
#: supplied by the HTTP client so the token server is reached with the same TLS settings.
Fetch = Callable[[str, dict], "tuple[int, bytes]"]


class Authenticator:
    """Answers a registry's challenges and remembers what worked.

    Args:
        registry: the registry's name (for messages).
        credentials: the user's credentials for this registry, or None (anonymous).
        fetch: how to GET the token realm (see :data:`Fetch`).
    """

    def __init__(self, registry: str, credentials: Credentials | None, fetch: Fetch) -> None:
        self.registry = registry
        self.credentials = credentials
        self._fetch = fetch
        self._lock = threading.Lock()
        self._bearer: Challenge | None = None
        self._basic = False
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}

    def header(self, scopes: tuple[str, ...]) -> str | None:
        """The ``Authorization`` value to send for a request needing ``scopes``, if known.

        Returns a cached token (fetching a fresh one if it expired) once the registry has
        challenged us with Bearer, basic credentials once it challenged with Basic, else None.
        """
        with self._lock:
            bearer, basic = self._bearer, self._basic
        if bearer is not None:
            return "Bearer " + self._token(bearer, scopes)
        if basic and self.credentials is not None:
            return basic_header(self.credentials)
        return None

    def challenged(self, www_authenticate: str | None, scopes: tuple[str, ...],
                   sent: str | None) -> str:
        """Handle a 401: learn the scheme and return the ``Authorization`` to retry with.

        Args:
            www_authenticate: the 401's header (may be missing).
            scopes: the scopes the request needs.
            sent: the ``Authorization`` that was refused (None if the request had none).

        Raises:
            Unauthorized: no usable challenge, no credentials for Basic, or the same
                credentials were already refused.
        """
        challenges = parse_www_authenticate(www_authenticate or "")
        by_scheme = {c.scheme: c for c in challenges}
        if "bearer" in by_scheme:
            challenge = by_scheme["bearer"]
            extra = challenge.params.get("scope")
            if extra:
                scopes = tuple(dict.fromkeys(scopes + tuple(extra.split(" "))))
            with self._lock:
                self._bearer = challenge
                if sent is not None and sent.startswith("Bearer "):
                    # the token we sent was refused: ask for a fresh one, once
                    self._tokens.pop(self._key(challenge, scopes), None)
            header = "Bearer " + self._token(challenge, scopes)
            if header == sent:
                raise self._denied()
            return header
        if "basic" in by_scheme:
            if self.credentials is None:
                raise Unauthorized("unauthorized: authentication required", 401)
            header = basic_header(self.credentials)
            if sent == header:
                raise Unauthorized(f"unauthorized: incorrect username or password for "
                                   f"{self.registry}", 401)
            with self._lock:
                self._basic = True
            return header
        raise self._denied()

    def _denied(self) -> Unauthorized:
        if self.credentials is None:
            return Unauthorized("unauthorized: authentication required", 401)
        return Unauthorized(f"unauthorized: access denied for {self.registry}", 401)

    @staticmethod
    def _key(challenge: Challenge, scopes: tuple[str, ...]) -> tuple[str, str, str]:
        return (challenge.params.get("realm", ""), challenge.params.get("service", ""),
                " ".join(sorted(scopes)))

    def _token(self, challenge: Challenge, scopes: tuple[str, ...]) -> str:
        key = self._key(challenge, scopes)
        with self._lock:
            cached = self._tokens.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        realm = challenge.params.get("realm")
        if not realm or not realm.startswith(("http://", "https://")):
            raise RegistryError(f"{self.registry}: bearer challenge without a usable realm")
        query = [("service", challenge.params["service"])] if "service" in challenge.params else []
        query += [("scope", s) for s in scopes if s]
        if self.credentials is not None:
            query.append(("account", self.credentials.username))
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        headers = {}
        if self.credentials is not None:
            headers["Authorization"] = basic_header(self.credentials)
        status, body = self._fetch(url, headers)
        if status in (401, 403):
            if self.credentials is None:
                raise Unauthorized("unauthorized: authentication required", status)
            raise Unauthorized(f"unauthorized: incorrect username or password for "
                               f"{self.registry}", status)
        if status != 200:
            raise RegistryError(f"token server for {self.registry} answered {status}", status)
        try:
            doc = json.loads(body)
            token = doc.get("token") or doc.get("access_token")
            lifetime = float(doc.get("expires_in") or _DEFAULT_TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError):
            raise RegistryError(f"token server for {self.registry} sent an invalid answer") from None
        if not token or not isinstance(token, str):
            raise RegistryError(f"token server for {self.registry} sent no token")
        expires = time.monotonic() + max(lifetime - _EXPIRY_MARGIN, 1.0)
        with self._lock:
            self._tokens[key] = (token, expires)
        return token
