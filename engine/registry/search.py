"""Search: find repositories in a registry.

Two sources, as Docker and podman do:

* Docker Hub (and registries that copy it) offer ``GET /v1/search?q=TERM&n=LIMIT`` returning
  ``{"results": [{"name", "description", "star_count", "is_official", "is_automated"}]}``.
* Any OCI registry offers ``GET /v2/_catalog?n=N`` (the repositories, paged with ``Link``
  headers); we filter its names by the term ourselves.

The term is ``[REGISTRY/]WORD``; with no registry, Docker Hub is searched. Docker's filters
apply: ``stars=N``, ``is-official=true|false``, ``is-automated=true|false``.
"""

from __future__ import annotations

import urllib.parse

from ..errors import InvalidArgument, NotFound, RegistryError
from ..image.reference import DEFAULT_DOMAIN
from .client import RegistryClient
from .credentials import CredentialStore

_PAGE = 1000


def split_term(term: str) -> tuple[str, str]:
    """``127.0.0.1:5000/busy`` -> (``127.0.0.1:5000``, ``busy``); ``busy`` -> (docker.io, busy)."""
    first, sep, rest = term.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return DEFAULT_DOMAIN, term


def _catalog(client: RegistryClient, limit: int) -> list[str]:
    names: list[str] = []
    path = f"/v2/_catalog?n={_PAGE}"
    for _ in range(100):
        resp = client.request("GET", path, scopes=("registry:catalog:*",))
        if resp.status != 200:
            raise client.fail(resp, f"{client.domain} catalog")
        link = resp.header("Link")
        import json

        try:
            doc = json.loads(resp.body())
        except ValueError:
            raise RegistryError(f"{client.domain}: invalid catalog") from None
        names += [n for n in doc.get("repositories") or [] if isinstance(n, str)]
        if not link or 'rel="next"' not in link:
            break
        path = link.split(";")[0].strip().strip("<>")
    return names


def _apply_filters(rows: list[dict], filters: dict[str, list[str]]) -> list[dict]:
    out = rows
    for key, values in filters.items():
        for value in values:
            if key == "stars":
                try:
                    n = int(value)
                except ValueError:
                    raise InvalidArgument(f"invalid filter 'stars={value}'") from None
                out = [r for r in out if r["StarCount"] >= n]
            elif key in ("is-official", "is-automated"):
                want = value.lower() in ("true", "1")
                field = "IsOfficial" if key == "is-official" else "IsAutomated"
                out = [r for r in out if bool(r[field]) == want]
            else:
                raise InvalidArgument(f"invalid filter '{key}'")
    return out


def search(config, term: str, *, limit: int = 25, filters: dict | None = None,
           tls_verify: bool | None = None) -> list[dict]:
    """Search ``term``; returns rows with Docker's fields (Name, Description, StarCount,
    IsOfficial, IsAutomated), at most ``limit``.

    Raises:
        InvalidArgument: a bad limit or filter.
        RegistryError: the registry offers neither search API, or failed.
    """
    if not 1 <= limit <= 100:
        raise InvalidArgument("limit must be between 1 and 100")
    domain, word = split_term(term)
    cfg = config
    client = RegistryClient(domain, insecure_registries=cfg.insecure_registries,
                            tls_verify=True if tls_verify is None else tls_verify,
                            credentials=CredentialStore().get(domain))
    if domain == DEFAULT_DOMAIN:
        client = RegistryClient(domain, base_url="https://index.docker.io",
                                tls_verify=client.tls_verify, credentials=client.auth.credentials)
    try:
        rows: list[dict]
        try:
            doc = client.get_json("/v1/search?" + urllib.parse.urlencode({"q": word, "n": limit}))
            rows = [{"Name": r.get("name", ""), "Description": r.get("description") or "",
                     "StarCount": int(r.get("star_count") or 0),
                     "IsOfficial": bool(r.get("is_official")),
                     "IsAutomated": bool(r.get("is_automated"))}
                    for r in doc.get("results") or []]
        except NotFound:
            names = _catalog(client, limit)
            prefix = "" if domain == DEFAULT_DOMAIN else domain + "/"
            rows = [{"Name": prefix + n, "Description": "", "StarCount": 0, "IsOfficial": False,
                     "IsAutomated": False} for n in sorted(names) if word.lower() in n.lower()]
        return _apply_filters(rows, filters or {})[:limit]
    finally:
        client.close()
