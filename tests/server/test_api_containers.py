"""The side panel's REST API on containers: real containers (root, runc), served by a real
Jupyter server, compared with what the CLI prints."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

pytestmark = pytest.mark.integration


def body(response) -> object:
    return json.loads(response.body)


def lines(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


def cli_json(cli, *args: str) -> list[dict]:
    out = cli(*args, "--format", "json").out
    return [json.loads(line) for line in out.splitlines() if line.strip()]
@pytest.fixture
def running(cli, busybox_image):
    cli("run", "-d", "--name", "web", busybox_image, "sleep", "60")
    yield "web"
    cli("rm", "-f", "web", check=False)


async def test_containers_list_actions_and_logs(api, cli, running, server_engine):
    rows = body(await api("containers"))
    expected = cli_json(cli, "ps", "-a")
    assert [r["Names"] for r in rows] == [e["Names"] for e in expected] == ["web"]
    for key in ("ID", "Image", "State", "Ports", "Command"):
        assert rows[0][key] == expected[0][key], key
    assert rows[0]["State"] == "running" and rows[0]["StartedAt"]

    inspected = body(await api("containers", "web"))
    assert inspected["Name"].lstrip("/") == "web" and inspected["State"]["Running"] is True
    assert body(await api("containers", inspected["Id"][:12]))["Id"] == inspected["Id"]

    response = await api("containers", "web", "stop", method="POST", params={"t": "1"})
    assert response.code == 200 and body(response)["State"]["Running"] is False
    assert server_engine.containers.get("web").status == "exited"

    response = await api("containers", "web", "kill", method="POST")
    assert response.code == 409 and body(response)["type"] == "IncorrectState"

    logs = body(await api("containers", "web", "logs", params={"tail": "10"}))
    assert "logs" in logs

    response = await api("containers", "web", method="DELETE")
    assert response.code == 204
    assert "web" not in cli("ps", "-a", "--format", "{{.Names}}").out.split()
    response = await api("containers", "web")
    assert response.code == 404 and body(response)["type"] == "NotFound"


async def test_container_logs_follow_streams_new_output(api, cli, busybox_image):
    cli("run", "-d", "--name", "talker", busybox_image, "sh", "-c",
        "for i in 1 2 3; do echo line$i; sleep 0.2; done")
    try:
        response = await api("containers", "talker", "logs", params={"follow": "1"},
                             request_timeout=20)
        assert response.headers["Content-Type"].startswith("application/x-ndjson")
        text = "".join(item.get("text", "") for item in lines(response.body))
        assert "line1" in text and "line3" in text
    finally:
        cli("rm", "-f", "talker", check=False)


async def test_container_archive_follows_links_only_when_asked(api, cli, busybox_image,
                                                                tmp_path):
    import base64
    import io
    import tarfile

    host_only = tmp_path / "host-only"
    host_only.write_text("host secret\n")
    cli("run", "-d", "--name", "arch", busybox_image, "sh", "-c",
        f"echo in-container > /etc/marker && ln -s /etc/marker /pw && "
        f"ln -s {host_only} /hostonly && echo ready && exec sleep 60")
    try:
        deadline = time.monotonic() + 10
        while "ready" not in cli("logs", "arch").out:
            assert time.monotonic() < deadline, "the container never got ready"
            await asyncio.sleep(0.05)

        def members(response) -> list[tuple[tarfile.TarInfo, bytes | None]]:
            with tarfile.open(fileobj=io.BytesIO(response.body)) as tf:
                return [(m, tf.extractfile(m).read() if m.isreg() else None)
                        for m in tf.getmembers()]

        plain = await api("containers", "arch", "archive", params={"path": "/pw"})
        assert plain.code == 200 and plain.headers["Content-Type"] == "application/x-tar"
        [(link, _)] = members(plain)
        assert link.issym() and link.name == "pw" and link.linkname == "/etc/marker"

        followed = await api("containers", "arch", "archive",
                             params={"path": "/pw", "follow": "1"})
        [(entry, data)] = members(followed)
        assert entry.isreg() and entry.name == "pw" and data == b"in-container\n"
        stat = json.loads(base64.b64decode(followed.headers["X-Docker-Container-Path-Stat"]))
        assert stat["name"] == "pw" and stat["size"] == len(b"in-container\n")

        # a target the container lacks is a 404, even when the host has that path
        missing = await api("containers", "arch", "archive",
                            params={"path": "/hostonly", "follow": "1"})
        assert missing.code == 404 and "Could not find the file" in body(missing)["message"]
        assert host_only.read_text() == "host secret\n"
        assert (await api("containers", "arch", "archive")).code == 400
    finally:
        cli("rm", "-f", "arch", check=False)


async def test_run_form_fields_mean_the_cli_flags(api, cli, busybox_image):
    """The panel's run form: ports, volumes, env, --init and a command typed as one line, each
    in ``docker run``'s own syntax through the CLI's parser."""
    spec = {"image": busybox_image, "name": "formed", "ports": ["127.0.0.1::80"],
            "volumes": ["formvol:/data"], "env": ["GREETING=hello there"], "init": True,
            "command": "sh -c 'echo \"$GREETING\" > /data/said; exec sleep 60'"}
    try:
        response = await api("containers", method="POST", body=json.dumps(spec))
        assert response.code == 201, response.body
        doc = body(response)
        assert doc["HostConfig"]["Init"] is True
        assert doc["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1",
                                                                  "HostPort": ""}]}
        assert "GREETING=hello there" in doc["Config"]["Env"]
        row = next(r for r in body(await api("containers")) if r["Names"] == "formed")
        assert row["Init"] is True and "127.0.0.1:" in row["Ports"] and "->80/tcp" in row["Ports"]
        deadline = time.monotonic() + 10
        while cli("exec", "formed", "cat", "/data/said", check=False).out != "hello there\n":
            assert time.monotonic() < deadline, "the command did not run with its env and volume"
            await asyncio.sleep(0.1)
        bad = await api("containers", method="POST",
                        body=json.dumps({"image": busybox_image, "ports": ["notaport"]}))
        assert bad.code == 400 and "\n" not in body(bad)["message"]
        bad = await api("containers", method="POST",
                        body=json.dumps({"image": busybox_image, "env": "K=V"}))
        assert bad.code == 400 and body(bad)["message"] == "env must be a list of strings"
    finally:
        cli("rm", "-f", "formed", check=False)
        cli("volume", "rm", "formvol", check=False)


async def test_rows_show_the_image_id_once_its_name_moves(api, cli, busybox_image):
    """Docker shows a container's image by id once the name it was made from is removed (or
    means another image); the panel's rows say the same."""
    cli("tag", busybox_image, "moving:1")
    cli("create", "--name", "orphaned", "moving:1", "true")
    try:
        row = next(r for r in body(await api("containers")) if r["Names"] == "orphaned")
        assert row["Image"] == "moving:1"
        image_id = cli("images", "-q", "--no-trunc", busybox_image).out.strip()
        cli("rmi", "moving:1")
        row = next(r for r in body(await api("containers")) if r["Names"] == "orphaned")
        assert row["Image"] == image_id.removeprefix("sha256:")[:12]
        assert row["ImageID"] == image_id
    finally:
        cli("rm", "-f", "orphaned", check=False)
