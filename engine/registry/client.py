"""The OCI distribution API over HTTP: the low-level half of the registry client.

A registry speaks plain HTTP under ``/v2/`` (the OCI distribution spec):

==========================================  =============================================
``GET  /v2/``                               ping; a 401 here tells how to authenticate
``GET  /v2/<name>/manifests/<tag|digest>``  a manifest or index (``Accept`` picks the types)
``GET  /v2/<name>/blobs/<digest>``          a blob; ``Range: bytes=N-`` resumes
``HEAD /v2/<name>/blobs/<digest>``          does the blob exist?
``POST /v2/<name>/blobs/uploads/``          start an upload (``?mount=D&from=R`` mounts)
``PATCH <location>``                        send a chunk (``Content-Range: start-end``)
``PUT  <location>?digest=D``                finish the upload (with the last bytes, if any)
``PUT  /v2/<name>/manifests/<tag>``         push a manifest
``GET  /v2/_catalog``, ``/v2/<name>/tags/list``  listings
==========================================  =============================================

Errors come back as ``{"errors": [{"code": "MANIFEST_UNKNOWN", "message": …}]}``.

:class:`RegistryClient` keeps one keep-alive connection per host per thread (blob downloads run
in threads), answers 401 challenges through :class:`~.auth.Authenticator`, follows redirects
(a blob may live on a storage host; the registry's credentials are never sent there), and maps
every socket or protocol failure to a one-line :class:`~portside.engine.errors.RegistryError`.

Like Docker, ``localhost``, ``127.0.0.0/8``, ``::1`` and the configured insecure registries are
spoken to over plain HTTP; everything else over HTTPS, certificate checks on unless
``tls_verify=False``.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import urllib.parse

from ..errors import NotFound, RegistryError, Unauthorized
from .auth import Authenticator
from .credentials import Credentials

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, BinaryIO


#: The host that serves Docker Hub's registry API.
DOCKER_HUB_REGISTRY = "registry-1.docker.io"
_HUB_DOMAINS = ("docker.io", "index.docker.io")
_LOCAL_HOSTS = ("localhost", "::1", "[::1]")
_MAX_REDIRECTS = 5
_CHUNK = 1 << 20


def is_local(host: str) -> bool:
    """``localhost`` or a loopback address such as ``127.0.0.1`` or ``::1`` (port ignored).

    Only real loopback addresses count: ``127.example.com`` is a name like any other and is
    spoken to over TLS.
    """
    import ipaddress

    if host.startswith("["):
        name = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        name = host.rsplit(":", 1)[0]
    else:
        name = host
    if name in _LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_insecure(domain: str, insecure_registries: list[str] | tuple[str, ...] = ()) -> bool:
    """Whether ``domain`` is spoken to over plain HTTP (local or listed as insecure)."""
    if is_local(domain):
        return True
    for entry in insecure_registries:
        entry = entry.removeprefix("http://").removeprefix("https://").rstrip("/")
        if entry == domain or entry == domain.rsplit(":", 1)[0]:
            return True
    return False


def registry_base_url(domain: str, insecure_registries: list[str] | tuple[str, ...] = ()) -> str:
    """The URL that serves ``/v2/`` for a reference's domain (``docker.io`` -> Hub's host)."""
    if domain in _HUB_DOMAINS:
        return f"https://{DOCKER_HUB_REGISTRY}"
    scheme = "http" if is_insecure(domain, insecure_registries) else "https"
    return f"{scheme}://{domain}"


def error_message(body: bytes, fallback: str) -> str:
    """The first error of a registry's JSON error body, as ``"code lower: message"``-ish text."""
    try:
        doc = json.loads(body)
        first = (doc.get("errors") or [])[0]
        message = str(first.get("message") or first.get("code") or fallback)
        return message.splitlines()[0][:200]
    except (ValueError, IndexError, AttributeError, TypeError):
        return fallback


class Response:
    """A registry answer: ``status``, ``headers``, and the body, read whole or streamed.

    For a streamed answer, read with :meth:`read` (``n`` bytes at a time) and always
    :meth:`close`; the connection goes back to the pool only when the body was read to its end.
    """

    def __init__(self, client: RegistryClient, key: tuple[str, str], conn: Any,
                 resp: http.client.HTTPResponse, url: str) -> None:
        self._client = client
        self._key = key
        self._conn = conn
        self._resp = resp
        self.url = url
        self.status = resp.status
        self.headers = resp.headers

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    def read(self, n: int = -1) -> bytes:
        """Read up to ``n`` bytes (all with -1); a dropped connection raises RegistryError."""
        try:
            return self._resp.read() if n < 0 else self._resp.read(n)
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise RegistryError(f"error reading from {self._key[1]}: "
                                f"{_reason(exc)}") from exc

    def readinto(self, buf: memoryview) -> int:
        try:
            return self._resp.readinto(buf)
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise RegistryError(f"error reading from {self._key[1]}: "
                                f"{_reason(exc)}") from exc

    def body(self) -> bytes:
        """The whole body, then the connection is released."""
        try:
            return self.read()
        finally:
            self.close()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Release the connection (kept alive only if the body was fully read)."""
        if self._conn is None:
            return
        if self._resp.isclosed() and not self._resp.will_close:
            self._client._release(self._key, self._conn)
        else:
            self._conn.close()
        self._conn = None

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, http.client.IncompleteRead):
        return "unexpected EOF"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() if exc.strerror[0].isupper() else exc.strerror
    text = str(exc) or exc.__class__.__name__
    return text.splitlines()[0]


class RegistryClient:
    """Speaks the distribution API to one registry (or one mirror of it).

    Args:
        domain: the registry as references name it (``127.0.0.1:5000``, ``docker.io``); it
            picks the credentials and names the registry in messages.
        base_url: where ``/v2/`` lives when it is not derived from ``domain`` (a mirror).
        insecure_registries: hosts spoken to over plain HTTP.
        tls_verify: check HTTPS certificates (``--tls-verify=false`` turns it off).
        credentials: the user's credentials for this registry, or None.
        timeout: socket timeout in seconds for connects and reads.
    """

    def __init__(self, domain: str, *, base_url: str | None = None,
                 insecure_registries: list[str] | tuple[str, ...] = (), tls_verify: bool = True,
                 credentials: Credentials | None = None, timeout: float = 60.0) -> None:
        self.domain = domain
        self.base_url = (base_url or registry_base_url(domain, insecure_registries)).rstrip("/")
        parsed = urllib.parse.urlsplit(self.base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise RegistryError(f"invalid registry URL: {self.base_url}")
        self._scheme, self._netloc, self._prefix = parsed.scheme, parsed.netloc, parsed.path
        self.tls_verify = tls_verify
        self.timeout = timeout
        self.auth = Authenticator(domain, credentials, self._fetch)
        self._local = threading.local()
        self._all: list[Any] = []
        self._all_lock = threading.Lock()
        if tls_verify:
            self._ssl = ssl.create_default_context()
        else:
            self._ssl = ssl._create_unverified_context()  # noqa: S323 - the user asked for it

    # ------------------------------------------------------------------ connections
    def _pool(self) -> dict:
        pool = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        return pool

    def _connect(self, key: tuple[str, str]) -> Any:
        scheme, netloc = key
        if scheme == "https":
            conn: Any = http.client.HTTPSConnection(netloc, timeout=self.timeout,
                                                    context=self._ssl)
        else:
            conn = http.client.HTTPConnection(netloc, timeout=self.timeout)
        with self._all_lock:
            self._all.append(conn)
        return conn

    def _release(self, key: tuple[str, str], conn: Any) -> None:
        self._pool().setdefault(key, conn)

    def close(self) -> None:
        """Close every connection this client opened (in any thread)."""
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()

    def _send(self, method: str, url: str, headers: dict, body: Any) -> Response:
        parsed = urllib.parse.urlsplit(url)
        key = (parsed.scheme, parsed.netloc)
        target = parsed.path + ("?" + parsed.query if parsed.query else "")
        pool = self._pool()
        for attempt in range(2):
            conn = pool.pop(key, None)
            reused = conn is not None
            if conn is None:
                conn = self._connect(key)
            try:
                conn.request(method, target, body=body, headers=headers)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                replayable = body is None or isinstance(body, (bytes, bytearray))
                # a kept-alive connection the server closed meanwhile: try once on a fresh one
                if reused and replayable and attempt == 0 and isinstance(
                        exc, (ConnectionError, http.client.RemoteDisconnected,
                              http.client.BadStatusLine)):
                    continue
                raise RegistryError(f"cannot reach {parsed.netloc}: {_reason(exc)}") from exc
            return Response(self, key, conn, resp, url)
        raise AssertionError("unreachable")

    def _fetch(self, url: str, headers: dict) -> tuple[int, bytes]:
        """A plain GET (the token server), no auth logic: ``(status, body)``."""
        resp = self._send("GET", url, dict(headers), None)
        return resp.status, resp.body()

    # ------------------------------------------------------------------ requests
    def url(self, path: str) -> str:
        """An absolute URL for ``path`` (``/v2/...``) or a Location header value."""
        if path.startswith(("http://", "https://")):
            return path
        if path.startswith("/v2/") and self._prefix and self._prefix != "/":
            path = self._prefix.rstrip("/") + path
        return f"{self._scheme}://{self._netloc}{path}"

    def request(self, method: str, path: str, *, scopes: tuple[str, ...] = (),
                headers: dict | None = None, body: Any = None) -> Response:
        """Send a request, answering auth challenges and following redirects.

        Args:
            method: HTTP method.
            path: ``/v2/...`` or an absolute URL (an upload location).
            scopes: token scopes the request needs (``repository:x:pull``).
            headers: extra headers.
            body: bytes, a file object (replayed after a 401 only if seekable) or None.

        Returns:
            The final :class:`Response`, any status; the caller reads or closes it.

        Raises:
            RegistryError: the registry could not be reached.
            Unauthorized: the registry refused our credentials (or we had none).
        """
        url = self.url(path)
        sent = self.auth.header(scopes)
        challenges = redirects = 0
        start = body.tell() if hasattr(body, "tell") and hasattr(body, "seek") else None
        while True:
            hdrs = dict(headers or {})
            hdrs.setdefault("User-Agent", "portside/0.1")
            parts = urllib.parse.urlsplit(url)
            # credentials go only to the same host over the same scheme (never https -> http)
            same_host = (parts.netloc, parts.scheme) == (self._netloc, self._scheme)
            if sent and same_host:
                hdrs["Authorization"] = sent
            if body is None and method in ("PUT", "POST", "PATCH"):
                hdrs.setdefault("Content-Length", "0")
            resp = self._send(method, url, hdrs, body)
            if resp.status == 401 and same_host and challenges < 2:
                www = resp.header("WWW-Authenticate")
                resp.body()
                if body is not None and not isinstance(body, (bytes, bytearray)):
                    if start is None:
                        raise Unauthorized("unauthorized: authentication required", 401)
                    body.seek(start)
                sent = self.auth.challenged(www, scopes, sent)
                challenges += 1
                continue
            if resp.status in (301, 302, 303, 307, 308) and redirects < _MAX_REDIRECTS:
                location = resp.header("Location")
                if location and method in ("GET", "HEAD"):
                    resp.body()
                    url = urllib.parse.urljoin(url, location)
                    redirects += 1
                    continue
            return resp

    def fail(self, resp: Response, what: str) -> RegistryError:
        """Turn an unexpected answer into an error (reads and releases the body)."""
        body = resp.body() if resp._conn is not None else b""
        message = error_message(body, f"HTTP {resp.status}")
        if resp.status == 401:
            return Unauthorized(f"unauthorized: {message}" if not message.startswith(
                "unauthorized") else message, 401)
        if resp.status == 403:
            return Unauthorized(f"denied: {message}", 403)
        if resp.status == 404:
            err = RegistryError(f"{message}: {what}", 404)
            return err
        return RegistryError(f"{what}: {message}", resp.status)

    # ------------------------------------------------------------------ API
    def ping(self) -> None:
        """``GET /v2/`` (authenticated if the registry asks). Raises Unauthorized on refusal."""
        resp = self.request("GET", "/v2/")
        if resp.status != 200:
            raise self.fail(resp, self.domain)
        resp.body()

    def get_manifest(self, repo: str, reference: str, accept: tuple[str, ...],
                     max_size: int = 4 << 20) -> tuple[bytes, str, str | None]:
        """Fetch a manifest or index.

        Returns:
            ``(bytes, media type, Docker-Content-Digest header or None)``.

        Raises:
            RegistryError: 404 as ``"manifest unknown: <what>"``; a body over ``max_size``.
        """
        resp = self.request("GET", f"/v2/{repo}/manifests/{reference}",
                            scopes=(f"repository:{repo}:pull",),
                            headers={"Accept": ", ".join(accept)})
        if resp.status != 200:
            raise self.fail(resp, f"{self.domain}/{repo}:{reference}" if ":" not in reference
                            else f"{self.domain}/{repo}@{reference}")
        length = resp.header("Content-Length")
        if length is not None and length.isdigit() and int(length) > max_size:
            resp.close()
            raise RegistryError(f"manifest too big ({length} bytes): {repo}:{reference}")
        data = resp.read(max_size + 1)
        if len(data) > max_size:
            resp.close()
            raise RegistryError(f"manifest too big: {repo}:{reference}")
        resp.close()
        media_type = (resp.header("Content-Type") or "").split(";")[0].strip()
        return data, media_type, resp.header("Docker-Content-Digest")

    def manifest_exists(self, repo: str, reference: str, accept: tuple[str, ...]) -> str | None:
        """HEAD a manifest; returns its digest header if it exists, else None."""
        resp = self.request("HEAD", f"/v2/{repo}/manifests/{reference}",
                            scopes=(f"repository:{repo}:pull",),
                            headers={"Accept": ", ".join(accept)})
        resp.body()
        if resp.status == 200:
            return resp.header("Docker-Content-Digest") or ""
        return None

    def get_blob(self, repo: str, digest: str, offset: int = 0) -> Response:
        """Start downloading blob ``digest`` (from ``offset`` with a Range request).

        Returns:
            The streaming response: status 200 (whole blob) or 206 (from ``offset``).

        Raises:
            RegistryError: any other status.
        """
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = self.request("GET", f"/v2/{repo}/blobs/{digest}",
                            scopes=(f"repository:{repo}:pull",), headers=headers)
        if resp.status == 416 and offset:
            resp.body()
            return self.get_blob(repo, digest, 0)
        if resp.status not in (200, 206):
            raise self.fail(resp, f"blob {digest}")
        return resp

    def blob_exists(self, repo: str, digest: str, scopes: tuple[str, ...] = ()) -> bool:
        """``HEAD`` the blob in ``repo``."""
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}",
                            scopes=scopes or (f"repository:{repo}:pull",))
        resp.body()
        if resp.status == 200:
            return True
        if resp.status == 404:
            return False
        raise self.fail(resp, f"blob {digest}")

    def start_upload(self, repo: str, *, mount: str | None = None,
                     from_repo: str | None = None) -> tuple[bool, str]:
        """Start a blob upload, or mount ``mount`` from ``from_repo`` of the same registry.

        Returns:
            ``(mounted, location)``: mounted is True when the registry linked the blob (201);
            otherwise ``location`` is where to send the bytes.
        """
        scopes: tuple[str, ...] = (f"repository:{repo}:pull,push",)
        path = f"/v2/{repo}/blobs/uploads/"
        if mount and from_repo:
            path += "?" + urllib.parse.urlencode({"mount": mount, "from": from_repo})
            scopes += (f"repository:{from_repo}:pull",)
        resp = self.request("POST", path, scopes=scopes)
        location = resp.header("Location") or ""
        if resp.status == 201 and mount:
            resp.body()
            return True, location
        if resp.status != 202 or not location:
            raise self.fail(resp, f"upload to {self.domain}/{repo}")
        resp.body()
        return False, self.url(urllib.parse.urljoin(self.url(path), location))

    def upload_chunk(self, repo: str, location: str, data: bytes, start: int) -> str:
        """``PATCH`` one chunk at byte ``start``; returns the next location."""
        headers = {"Content-Type": "application/octet-stream",
                   "Content-Range": f"{start}-{start + len(data) - 1}",
                   "Content-Length": str(len(data))}
        resp = self.request("PATCH", location, scopes=(f"repository:{repo}:pull,push",),
                            headers=headers, body=data)
        if resp.status != 202:
            raise self.fail(resp, f"upload to {self.domain}/{repo}")
        nxt = resp.header("Location") or location
        resp.body()
        return urllib.parse.urljoin(location, nxt)

    def finish_upload(self, repo: str, location: str, digest: str, body: Any = None,
                      length: int = 0) -> None:
        """``PUT`` the upload closed with ``digest`` (and its remaining ``body`` bytes)."""
        parsed = urllib.parse.urlsplit(location)
        query = urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)
        query.append(("digest", digest))
        url = urllib.parse.urlunsplit(parsed._replace(query=urllib.parse.urlencode(query)))
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
        resp = self.request("PUT", url, scopes=(f"repository:{repo}:pull,push",),
                            headers=headers, body=body if length else None)
        if resp.status not in (201, 204):
            raise self.fail(resp, f"upload of {digest} to {self.domain}/{repo}")
        resp.body()

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str | None:
        """Push a manifest under a tag or digest; returns the registry's digest header."""
        resp = self.request("PUT", f"/v2/{repo}/manifests/{reference}",
                            scopes=(f"repository:{repo}:pull,push",),
                            headers={"Content-Type": media_type,
                                     "Content-Length": str(len(data))}, body=data)
        if resp.status not in (200, 201, 202):
            raise self.fail(resp, f"manifest {self.domain}/{repo}:{reference}")
        resp.body()
        return resp.header("Docker-Content-Digest")

    def get_json(self, path: str, scopes: tuple[str, ...] = ()) -> Any:
        """GET a JSON document (catalog, tag list, search)."""
        resp = self.request("GET", path, scopes=scopes, headers={"Accept": "application/json"})
        if resp.status == 404:
            resp.body()
            raise NotFound(f"{self.domain}: no such endpoint: {path.split('?')[0]}")
        if resp.status != 200:
            raise self.fail(resp, f"{self.domain}{path.split('?')[0]}")
        try:
            return json.loads(resp.body())
        except ValueError:
            raise RegistryError(f"{self.domain}: invalid JSON from {path.split('?')[0]}") from None


