"""The side panel's REST API, served by a real Jupyter server over a real engine root.

The engine state is made with the ``portside`` CLI in a separate process (as a terminal or a
notebook would), and what the API answers is compared with what the CLI prints.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest
import tornado.web
from tornado.httpclient import HTTPRequest
from tornado.simple_httpclient import SimpleAsyncHTTPClient

from portside.kernel.server.handlers import API_PREFIX, PortsideHandler

pytestmark = pytest.mark.unit

#: Fields the API adds to the CLI's ``--format json`` rows.
EXTRA = {"SizeBytes", "FullID", "StartedAt", "FinishedAt", "GPUs", "UsedBy", "Pinned", "ExitCode",
         "Init", "StopTimeout", "ImageID"}


def body(response) -> object:
    return json.loads(response.body)


def lines(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


def assert_rows_extend(api_rows: list[dict], cli_rows: list[dict]) -> None:
    """The API's rows are the CLI's rows, in order, with only the documented extra fields."""
    assert len(api_rows) == len(cli_rows)
    for mine, theirs in zip(api_rows, cli_rows):
        assert {k: mine[k] for k in theirs} == theirs
        assert set(mine) - set(theirs) <= EXTRA


def cli_json(cli, *args: str) -> list[dict]:
    out = cli(*args, "--format", "json").out
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture
def busybox(cli) -> str:
    cli("image", "bootstrap", "busybox", "-t", "busybox:latest", "-q")
    return "busybox:latest"


# ------------------------------------------------------------------------------ images
async def test_images_list_is_the_cli_rows(api, cli, busybox):
    cli("tag", busybox, "example/box:1")
    response = await api("images")
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    rows = body(response)
    expected = cli_json(cli, "images")
    assert len(expected) == 2
    assert_rows_extend(rows, expected)
    assert all(r["SizeBytes"] > 0 for r in rows)


async def test_image_inspect_by_name_id_and_short_id(api, cli, busybox):
    full_id = cli("images", "-q", "--no-trunc").out.split()[0]
    answers = [body(await api("images", ref)) for ref in (busybox, full_id, full_id[7:19])]
    assert {a["Id"] for a in answers} == {full_id}
    assert answers[0]["RepoTags"] == ["busybox:latest"]
    assert answers[0] == json.loads(cli("image", "inspect", busybox).out)[0]


async def test_missing_image_is_a_json_404(api, portside_root):
    response = await api("images", "nosuch:1")
    assert response.code == 404
    assert response.headers["Content-Type"].startswith("application/json")
    err = body(response)
    assert err["code"] == 404 and err["type"] == "NotFound"
    assert "nosuch" in err["message"]


async def test_tag_then_remove_by_name(api, cli, busybox):
    response = await api("images", busybox, "tag", method="POST",
                         body=json.dumps({"target": "example/box:2"}))
    assert response.code == 201
    assert "example/box:2" in body(response)["RepoTags"]
    assert "example/box:2" in cli("images", "--format", "{{.Repository}}:{{.Tag}}").out
    response = await api("images", "example/box:2", method="DELETE")
    assert response.code == 200
    assert body(response) == [{"Untagged": "example/box:2"}]
    assert "example/box" not in cli("images").out


async def test_bad_input_is_a_json_400(api, busybox):
    response = await api("images", busybox, "tag", method="POST",
                         body=json.dumps({"target": "Bad Name!"}))
    assert response.code == 400
    err = body(response)
    assert err["code"] == 400 and err["type"] == "InvalidArgument", err
    response = await api("images", busybox, "tag", method="POST", body=b"{not json")
    assert response.code == 400 and body(response)["code"] == 400
    response = await api("images", busybox, "tag", method="POST", body=json.dumps({}))
    assert response.code == 400 and "target" in body(response)["message"]


async def test_removing_an_image_with_two_names_by_id_is_a_json_409(api, cli, busybox):
    cli("tag", busybox, "example/box:1")
    short_id = cli("images", "-q").out.split()[0]
    response = await api("images", short_id, method="DELETE")
    assert response.code == 409
    err = body(response)
    assert err["code"] == 409 and err["type"] == "Conflict"
    assert short_id in err["message"]
    assert len(cli_json(cli, "images")) == 2       # nothing was removed
    response = await api("images", short_id, method="DELETE", params={"force": "1"})
    assert response.code == 200
    assert cli_json(cli, "images") == []


async def test_prune_streams_progress_then_the_result(api, cli, busybox, server_engine):
    response = await api("images", "prune", method="POST", params={"all": "1"})
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    stream = lines(response.body)
    assert stream[0] == {"status": "started"}
    assert stream[-1]["status"] == "done"
    result = stream[-1]["result"]
    assert {"Untagged": busybox} in result["ImagesDeleted"]
    assert result["SpaceReclaimed"] > 0
    actions = [s["event"]["Action"] for s in stream if s.get("status") == "progress"]
    assert "delete" in actions, stream
    assert server_engine.images.list() == []


async def test_info_names_the_root(api, portside_root):
    info = body(await api("info"))
    assert info["root"] == str(portside_root)
    assert info["collections"]["images"] is True


# ------------------------------------------------------------------------------ events
async def test_event_stream_shows_a_change_made_by_the_cli(api, cli, busybox, jp_base_url,
                                                           jp_auth_header, http_server_client):
    chunks: list[bytes] = []
    got = asyncio.Event()

    def on_chunk(chunk: bytes) -> None:
        chunks.append(chunk)
        if b'"tag"' in b"".join(chunks):
            got.set()

    client = SimpleAsyncHTTPClient(force_instance=True)
    url = http_server_client.get_url(f"{jp_base_url}{API_PREFIX}/events")
    request = HTTPRequest(url, headers=jp_auth_header, streaming_callback=on_chunk,
                          request_timeout=30)
    fetch = asyncio.ensure_future(client.fetch(request, raise_error=False))
    try:
        await asyncio.sleep(0.5)                     # the stream is open and following
        started = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: cli("tag", busybox, "example/live:1"))
        await asyncio.wait_for(got.wait(), timeout=2.0)
        assert time.monotonic() - started < 2.0 + 1.0  # CLI start-up included
        events = lines(b"".join(chunks))
        tag = [e for e in events if e["Action"] == "tag"]
        assert tag and tag[0]["Type"] == "image"
    finally:
        client.close()                               # the server sees the client leave
        fetch.cancel()


async def test_event_stream_rejects_a_bad_since(api):
    response = await api("events", params={"since": "yesterday"})
    assert response.code == 400 and body(response)["code"] == 400


# ------------------------------------------------------------------------------ volumes
async def test_volumes_create_list_inspect_remove(api, cli):
    response = await api("volumes", method="POST", body=json.dumps({"name": "data1"}))
    assert response.code == 201
    assert body(response)["Name"] == "data1"
    cli("volume", "create", "data2")
    rows = body(await api("volumes"))
    assert_rows_extend(rows, cli_json(cli, "volume", "ls"))
    assert {r["Name"] for r in rows} == {"data1", "data2"}
    assert all(r["UsedBy"] == [] and r["SizeBytes"] is not None for r in rows)
    inspected = body(await api("volumes", "data2"))
    assert inspected["Name"] == "data2" and inspected["UsedBy"] == []
    response = await api("volumes", "data2", method="DELETE")
    assert response.code == 204
    assert "data2" not in cli("volume", "ls").out
    response = await api("volumes", "data2")
    assert response.code == 404 and body(response)["type"] == "NotFound"


async def test_volume_prune_all_streams_its_result(api, cli):
    cli("volume", "create", "scratch")
    stream = lines((await api("volumes", "prune", method="POST", params={"all": "1"})).body)
    assert stream[0]["status"] == "started" and stream[-1]["status"] == "done"
    assert stream[-1]["result"]["VolumesDeleted"] == ["scratch"]
    assert cli("volume", "ls", "-q").out.strip() == ""


# ------------------------------------------------------------------------------ auth
def _api_rules(web_app) -> list[tuple[str, type]]:
    """Every (regex, handler) the server routes under /portside/api/, found in Tornado itself."""
    found = []

    def walk(router) -> None:
        for rule in getattr(router, "rules", []):
            target = rule.target
            if isinstance(target, type) and issubclass(target, tornado.web.RequestHandler):
                pattern = getattr(rule.matcher, "regex", None)
                if pattern is not None and f"{API_PREFIX}/" in pattern.pattern:
                    found.append((pattern.pattern, target))
            else:
                walk(target)

    walk(web_app.default_router)
    return found


def _sample_path(pattern: str, name: str) -> str:
    path = re.sub(r"\(\?P<action>[^)]*\)", "stop", pattern)
    path = re.sub(r"\(\?P<\w+>[^)]*\)", name.replace(":", "%3A"), path)
    return path.replace("/?$", "").replace("$", "")


def _verbs(handler: type) -> list[str]:
    return [m for m in ("GET", "POST", "PUT", "DELETE", "PATCH")
            if getattr(handler, m.lower()) is not getattr(tornado.web.RequestHandler, m.lower())]


async def test_every_route_refuses_a_request_without_the_token(jp_web_app, http_server_client,
                                                               cli, busybox):
    from portside.kernel.server.handlers import ROUTES

    rules = _api_rules(jp_web_app)
    assert len(rules) == len(ROUTES)                 # the table is all there is
    tried = 0
    for pattern, handler in rules:
        assert issubclass(handler, PortsideHandler)
        for verb in _verbs(handler):
            path = _sample_path(pattern, busybox)
            response = await http_server_client.fetch(
                path, method=verb, raise_error=False, follow_redirects=False,
                body=b"{}" if verb in ("POST", "PUT", "PATCH") else None)
            assert response.code in (401, 403, 302), (verb, path, response.code)
            tried += 1
    assert tried >= 20
    # nothing happened: the image that DELETE and prune would have removed is still there
    assert cli("images", "-q").out.strip()


async def test_a_wrong_token_is_refused(api):
    response = await api("images", headers={"Authorization": "token wrong"})
    assert response.code in (401, 403)


# ------------------------------------------------------------------------------ the written API
def test_openapi_file_documents_every_route_and_verb():
    import yaml
    from pathlib import Path

    import portside.kernel.server as server
    from portside.kernel.server.handlers import ROUTES

    spec = yaml.safe_load((Path(server.__file__).parent / "openapi.yaml").read_text())
    assert spec["openapi"].startswith("3.")
    documented = {path: {verb.upper() for verb in item if verb != "parameters"}
                  for path, item in spec["paths"].items()}
    implemented = {}
    for pattern, handler in ROUTES:
        path = "/" + re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern)
        implemented[path] = set(_verbs(handler))
    assert documented == implemented
