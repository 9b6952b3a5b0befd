"""The REST API on a Docker context: ``GET/PUT /context`` switch the server's engine, and the
lists, actions and the event stream then come from a real dockerd (the tests' private one)."""

from __future__ import annotations

import asyncio
import json

import pytest
from tornado.httpclient import HTTPRequest
from tornado.simple_httpclient import SimpleAsyncHTTPClient

from dockerd_fixture import BUSYBOX, docker_ctx, dockerd  # noqa: F401 - fixtures
from portside.kernel.server.handlers import API_PREFIX, ENGINE_KEY

pytestmark = pytest.mark.integration


def body(response) -> object:
    return json.loads(response.body)


def lines(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


@pytest.fixture
def contexts_home(docker_ctx, monkeypatch):
    """The server reads this user's contexts (the one the fixture made for its dockerd)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(docker_ctx.config_home))
    monkeypatch.delenv("PORTSIDE_CONTEXT", raising=False)
    return docker_ctx


async def test_switching_the_server_to_a_docker_context(api, contexts_home, jp_web_app,
                                                        jp_base_url, jp_auth_header,
                                                        http_server_client):
    ctx = contexts_home
    doc = body(await api("context"))
    assert doc["name"] == "default"
    names = {row["Name"]: row for row in doc["contexts"]}
    assert names[ctx.name]["DockerEndpoint"] == ctx.dockerd.host
    response = await api("context", method="PUT", body=json.dumps({"name": "nope"}))
    assert response.code == 404 and body(response)["message"] == 'context "nope" does not exist'
    response = await api("context", method="PUT", body=json.dumps({}))
    assert response.code == 400

    doc = body(await api("context", method="PUT", body=json.dumps({"name": ctx.name})))
    assert doc["name"] == ctx.name and [r["Current"] for r in doc["contexts"]
                                        if r["Name"] == ctx.name] == [True]
    info = body(await api("info"))
    assert (info["context"], info["root"], info["endpoint"]) == (ctx.name, None, ctx.dockerd.host)
    images = body(await api("images"))
    assert BUSYBOX in {f"{r['Repository']}:{r['Tag']}" for r in images}

    # live updates: dockerd's events API, as the panel follows it
    chunks: list[bytes] = []
    started = asyncio.Event()

    def on_chunk(chunk: bytes) -> None:
        chunks.append(chunk)
        if b'"start"' in b"".join(chunks):
            started.set()

    client = SimpleAsyncHTTPClient(force_instance=True)
    url = http_server_client.get_url(f"{jp_base_url}{API_PREFIX}/events")
    fetch = asyncio.ensure_future(client.fetch(
        HTTPRequest(url, headers=jp_auth_header, streaming_callback=on_chunk,
                    request_timeout=60), raise_error=False))
    try:
        await asyncio.sleep(0.5)
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: ctx.dockerd.docker("run", "-d", "--name", "api-live", BUSYBOX,
                                             "sleep", "600"))
        await asyncio.wait_for(started.wait(), timeout=10)
        events = [e for e in lines(b"".join(chunks)) if e["Type"] == "container"]
        assert any(e["Action"] == "start" and e["Actor"]["Attributes"]["name"] == "api-live"
                   for e in events)
    finally:
        client.close()
        fetch.cancel()

    rows = body(await api("containers"))
    assert [r["Names"] for r in rows] == ["api-live"] and rows[0]["State"] == "running"
    response = await api("containers", "api-live", "stop", method="POST", params={"t": "1"})
    assert response.code == 200 and body(response)["State"]["Status"] == "exited"
    response = await api("containers", "api-live", method="DELETE")
    assert response.code == 204
    assert ctx.dockerd.docker("ps", "-aq").out == ""
    response = await api("containers", "api-live")
    assert response.code == 404 and body(response)["message"] == "No such container: api-live"
    # the server stays on the context it was given; the user's current one did not move
    assert ctx.local("context", "show").out == "default\n"
    jp_web_app.settings[ENGINE_KEY].close()
