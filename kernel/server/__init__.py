"""The portside jupyter_server extension: a REST API over the engine for the JupyterLab panel.

jupyter_server finds extensions through two functions on a module:

* ``_jupyter_server_extension_points()`` names the module that holds the loader, and
* ``_load_jupyter_server_extension(serverapp)`` is called once at start-up with the running
  :class:`~jupyter_server.serverapp.ServerApp`; it adds handlers to ``serverapp.web_app``.

The extension is enabled by ``jupyter-config/jupyter_server_config.d/portside.json`` (installed
into ``etc/jupyter/jupyter_server_config.d/``), or by hand with
``jupyter server extension enable portside.kernel.server``. The REST API itself is described in
``openapi.yaml`` beside this file and implemented in :mod:`.handlers`.

The engine object and a small thread pool are kept in the Tornado application's settings so that
every handler shares them: the engine opens its SQLite store once per thread, and engine calls
(which block on the disk, on runc, on the network) never run on the server's event loop.
"""

from __future__ import annotations

from typing import Any

from .handlers import ROUTES, setup_handlers

__all__ = ["ROUTES", "setup_handlers"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """Tell jupyter_server which module loads this extension."""
    return [{"module": "portside.kernel.server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Add the ``/portside/api/`` handlers to a running server.

    Args:
        serverapp: the ``jupyter_server`` ServerApp being started.
    """
    setup_handlers(serverapp.web_app)
    serverapp.log.info("portside: REST API at %sportside/api/",
                       serverapp.web_app.settings.get("base_url", "/"))


# The older name some tools still call.
load_jupyter_server_extension = _load_jupyter_server_extension
