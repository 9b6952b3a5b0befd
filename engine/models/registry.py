"""Registry operations for the model layer: what ``engine.images.pull()`` and friends delegate to.

The :class:`Registries` helper holds the engine and forwards to :mod:`portside.engine.registry`;
the image collection exposes ``pull``/``push``/``login``/``logout``/``search``/
``manifest_inspect`` by delegating here, so the CLI, the magics and the REST API share one code
path and one stream of progress events.
"""

from __future__ import annotations

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any


class Registries:
    """Pull, push, login, logout, search and manifest inspection for one engine."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def pull(self, name: str, platform: str | None = None, progress=None,
             tls_verify: bool | None = None):
        """Pull ``name``; returns the :class:`~portside.engine.models.images.Image`.

        Raises:
            RegistryError, Unauthorized, InvalidArgument: see :func:`registry.pull.pull`.
        """
        from ..registry.pull import pull

        record = pull(self.engine.image_store, self.engine.config, name, platform=platform,
                      progress=progress, tls_verify=tls_verify)
        return self.engine.images.get(record.id)

    def push(self, name: str, progress=None, tls_verify: bool | None = None,
             chunk_size: int | None = None) -> str:
        """Push local image ``name``; returns the pushed manifest's digest."""
        from ..registry.push import push

        return push(self.engine.image_store, self.engine.config, name, progress=progress,
                    tls_verify=tls_verify,
                    chunk_size=chunk_size)

    def login(self, registry: str | None, username: str, password: str,
              tls_verify: bool | None = None) -> str:
        """Check the credentials against ``registry`` and store them; returns "Login Succeeded".

        Raises:
            Unauthorized: the registry refused them (nothing is stored).
            InvalidArgument: empty username or password.
        """
        from ..errors import InvalidArgument
        from ..image.reference import DEFAULT_DOMAIN
        from ..registry.client import RegistryClient
        from ..registry.credentials import CredentialStore, Credentials

        if not username or not password:
            raise InvalidArgument("username and password are required")
        domain = _domain(registry) or DEFAULT_DOMAIN
        creds = Credentials(username, password)
        cfg = self.engine.config
        client = RegistryClient(domain, insecure_registries=cfg.insecure_registries,
                                tls_verify=True if tls_verify is None else tls_verify,
                                credentials=creds)
        try:
            client.ping()  # a 401 that our credentials cannot answer raises Unauthorized
        finally:
            client.close()
        CredentialStore().store(domain, creds)
        return "Login Succeeded"

    def logout(self, registry: str | None) -> bool:
        """Forget the stored credentials; returns whether there were any."""
        from ..image.reference import DEFAULT_DOMAIN
        from ..registry.credentials import CredentialStore

        return CredentialStore().erase(_domain(registry) or DEFAULT_DOMAIN)

    def search(self, term: str, limit: int = 25, filters: dict | None = None,
               tls_verify: bool | None = None) -> list[dict]:
        """Repositories matching ``term`` (``[REGISTRY/]TERM``); Docker's search rows."""
        from ..registry.search import search

        return search(self.engine.config, term, limit=limit, filters=filters,
                      tls_verify=tls_verify)

    def manifest_inspect(self, name: str, tls_verify: bool | None = None) -> dict:
        """The manifest or index ``name`` resolves to in its registry."""
        from ..registry.push import manifest_inspect

        return manifest_inspect(self.engine.config, name, tls_verify=tls_verify)

    def tags(self, repository: str, tls_verify: bool | None = None) -> list[str]:
        """Every tag of ``repository`` in its registry, sorted."""
        from ..image.reference import parse_reference
        from ..registry.pull import endpoints

        ref = parse_reference(repository, default_tag=None)
        clients = endpoints(self.engine.config, ref, tls_verify=tls_verify)
        try:
            doc = clients[-1].get_json(f"/v2/{ref.path}/tags/list",
                                       scopes=(f"repository:{ref.path}:pull",))
        finally:
            for c in clients:
                c.close()
        return sorted(t for t in doc.get("tags") or [] if isinstance(t, str))


def _domain(registry: str | None) -> str | None:
    if not registry:
        return None
    text = registry
    for prefix in ("https://", "http://"):
        text = text.removeprefix(prefix)
    text = text.split("/", 1)[0]
    if text in ("index.docker.io", "registry-1.docker.io", "docker.io"):
        return "docker.io"
    return text
