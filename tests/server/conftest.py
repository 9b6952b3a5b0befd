"""Fixtures for the REST API tests: a real Jupyter server with the portside extension, on a
fresh engine root.

pytest-jupyter's server fixtures are imported here (not enabled for the whole suite) because its
autouse event-loop fixture should only wrap the tests of this folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_jupyter.jupyter_server import *  # noqa: F401,F403  (fixtures and their hooks)


@pytest.fixture
def jp_server_config(portside_root: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Enable the extension; the engine it creates serves ``portside_root``."""
    monkeypatch.setenv("PORTSIDE_ROOT", str(portside_root))
    return {"ServerApp": {"jpserver_extensions": {"portside.kernel.server": True}}}


@pytest.fixture
def api(jp_fetch):
    """``await api("images", "busybox:latest", method="DELETE")`` against ``/portside/api/``."""

    def fetch(*parts: str, **kwargs):
        kwargs.setdefault("raise_error", False)
        if kwargs.get("method") in ("POST", "PUT") and "body" not in kwargs:
            kwargs["body"] = b""
        return jp_fetch("portside", "api", *parts, **kwargs)

    return fetch


@pytest.fixture
def server_engine(jp_web_app):
    """The engine object the running extension uses."""
    from portside.kernel.server.handlers import ENGINE_KEY

    engine = jp_web_app.settings[ENGINE_KEY]
    assert Path(engine.root) == Path(os.environ["PORTSIDE_ROOT"])
    yield engine
    engine.close()
