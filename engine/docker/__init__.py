"""A Docker Engine behind portside's model API, through the Docker SDK for Python.

:class:`DockerEngine` answers the same calls as the embedded :class:`~portside.engine.api.Engine`
(docker-py's shape: ``engine.containers.run/create/get/list/prune``, ``container.start/stop/
logs/exec_run/…``, ``engine.images.pull/build/load/save/…``, ``engine.volumes``,
``engine.networks``, ``engine.builds``, ``engine.system``), so the CLI, the magics and the side
panel work on an existing dockerd once a context names it (:mod:`portside.engine.contexts`)::

    from portside.engine.docker import DockerEngine
    engine = DockerEngine("unix:///var/run/docker.sock", context="local-docker")
    engine.images.pull("127.0.0.1:5000/exp:1", progress=print)   # typed progress events
    engine.containers.run("exp:1", "python3 -V", remove=True)    # b"Python 3.11.2\\n"

What Docker answers keeps Docker's meaning: ``attrs`` are dockerd's inspect documents, listings
and prunes are dockerd's. Errors become portside's one error tree (:mod:`.errors`), one line
each: a missing object is ``NotFound``, a daemon that is down or a socket this user may not open
is ``Unavailable`` naming the endpoint and the context. What only portside's own engine has
(``image bootstrap``, ``system check``, the build cache's entries) raises ``Unsupported`` naming
the context: nothing is ever done by another engine instead.

The SDK (PyPI ``docker``, the ``portside[docker]`` extra) is imported when the engine first
talks to dockerd, never by the default context.
"""

from __future__ import annotations

import functools
import os

from ..errors import Unsupported

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any

    from ..models.interface import EngineAPI
    from .build import BuildCollection
    from .containers import ContainerCollection
    from .images import ImageCollection
    from .networks import NetworkCollection
    from .system import System
    from .volumes import VolumeCollection


class DockerEngine:
    """The engine object of a Docker context.

    Args:
        host: Docker's endpoint URL: ``unix:///PATH``, ``tcp://HOST:PORT``, ``ssh://USER@HOST``.
        context: the context's name, for messages.
        tls: ``{"ca": path, "cert": path, "key": path, "verify": bool}`` for ``tcp://`` hosts.
        timeout: seconds to wait for dockerd's answer to one API call (streams are not limited).
    """

    kind = "docker"

    def __init__(self, host: str, *, context: str = "docker", tls: dict[str, Any] | None = None,
                 timeout: float = 300) -> None:
        self.host = host
        self.context = context
        self.tls = tls
        self.timeout = timeout

    @classmethod
    def from_context(cls, doc: dict[str, Any]) -> "DockerEngine":
        """The engine of a stored context (see :class:`portside.engine.contexts.ContextStore`)."""
        endpoint = doc["Endpoints"]["docker"]
        tls: dict[str, Any] | None = None
        material = os.path.join(doc.get("Storage", {}).get("TLSPath") or "", "docker")
        files = {k: os.path.join(material, f"{k}.pem") for k in ("ca", "cert", "key")}
        files = {k: p for k, p in files.items() if os.path.isfile(p)}
        if files or endpoint.get("SkipTLSVerify") or endpoint["Host"].startswith("https://"):
            tls = dict(files, verify=not endpoint.get("SkipTLSVerify"))
        return cls(endpoint["Host"], context=doc["Name"], tls=tls)

    def __repr__(self) -> str:
        return f"<DockerEngine {self.context}: {self.host}>"

    # ------------------------------------------------------------------ the SDK
    @functools.cached_property
    def client(self):
        """The SDK's low-level ``docker.APIClient`` (connects on first use: version check)."""
        from .errors import guarded_call, sdk

        docker = sdk(self)
        if self.host.startswith("unix://"):
            self._probe_socket()
        tls: Any = False
        if self.tls is not None:
            cert = (self.tls["cert"], self.tls["key"]) if "cert" in self.tls else None
            verify = (self.tls.get("ca") or True) if self.tls.get("verify", True) else False
            tls = docker.tls.TLSConfig(client_cert=cert, ca_cert=self.tls.get("ca"),
                                       verify=verify)
        return guarded_call(self, lambda: docker.APIClient(
            base_url=self.host, version="auto", timeout=self.timeout, tls=tls,
            use_ssh_client=self.host.startswith("ssh://")))

    def _probe_socket(self) -> None:
        """Connect to the socket once, closing what we opened: a daemon that is down or a
        socket this user may not open is one clear line (and the SDK, which leaves its socket
        open when the connection fails, never sees it)."""
        import socket

        from .errors import unreachable

        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.host[len("unix://"):])
        except OSError as exc:
            raise unreachable(self, exc) from exc
        finally:
            probe.close()

    @functools.cached_property
    def api(self):
        """``client`` with every call's errors mapped onto portside's (streams included)."""
        from .errors import GuardedAPI

        return GuardedAPI(self)

    # ------------------------------------------------------------------ collections
    @functools.cached_property
    def containers(self) -> ContainerCollection:
        from .containers import ContainerCollection

        return ContainerCollection(self)

    @functools.cached_property
    def images(self) -> ImageCollection:
        from .images import ImageCollection

        return ImageCollection(self)

    @functools.cached_property
    def builds(self) -> BuildCollection:
        from .build import BuildCollection

        return BuildCollection(self)

    @functools.cached_property
    def volumes(self) -> VolumeCollection:
        from .volumes import VolumeCollection

        return VolumeCollection(self)

    @functools.cached_property
    def networks(self) -> NetworkCollection:
        from .networks import NetworkCollection

        return NetworkCollection(self)

    @functools.cached_property
    def system(self) -> System:
        from .system import System

        return System(self)

    # ------------------------------------------------------------------ helpers
    def unsupported(self, what: str, hint: str = "") -> Unsupported:
        """The error for something only portside's own engine does (message names us)."""
        return Unsupported(f'{what} is not available in context "{self.context}" '
                           f"(a Docker Engine at {self.host})" + (f": {hint}" if hint else ""))

    def close(self, *, keep_database: bool = False) -> None:
        """Close the connections to dockerd (``keep_database``: accepted, as Engine's)."""
        client = self.__dict__.pop("client", None)
        self.__dict__.pop("api", None)
        if client is not None:
            client.close()


if TYPE_CHECKING:
    def _answers_the_model_api(engine: DockerEngine) -> EngineAPI:
        """For the type checker: a Docker context answers the written-down model API (what
        dockerd cannot do is refused in one line naming the context)."""
        return engine
