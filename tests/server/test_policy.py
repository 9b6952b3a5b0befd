"""Policy is the engine's, so every front obeys it alike: the lock, name resolution and Docker's
defaults, each driven through the CLI (a new process), the ``%container`` magics and the REST API
of a real Jupyter server, all on one engine root.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("IPython")

from IPython.utils.capture import capture_output  # noqa: E402

from portside.kernel.magics import ContainerError  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture
def magics(ipython, portside_root, monkeypatch):
    monkeypatch.setenv("PORTSIDE_ROOT", str(portside_root))
    m = ipython.magics_manager.registry["ContainerMagics"]
    yield m
    m.close()


@pytest.fixture
def fronts(cli, magics, api, server_engine, busybox_image):
    """(CLI, magic, REST) on one root with busybox; every container they made is gone after,
    and the server's engine is closed (its netlink socket with it)."""
    yield cli, magics, api
    names = cli("ps", "-aq", "--no-trunc").out.split()
    if names:
        cli("rm", "-f", *names)


def magic(ip, line: str):
    with capture_output() as cap:
        result = ip.run_line_magic("container", line)
    return result, cap


async def rest_run(api, **spec):
    response = await api("containers", method="POST", body=json.dumps(spec))
    return response.code, json.loads(response.body)


async def test_the_lock_binds_every_front(fronts, ipython, tmp_path, monkeypatch):
    cli, _magics, api = fronts
    lock_path = tmp_path / "portside.lock"
    monkeypatch.setenv("PORTSIDE_LOCK", str(lock_path))
    monkeypatch.delenv("PORTSIDE_LOCKED", raising=False)
    cli("lock", "busybox:latest", "--locked", "true", env={"PORTSIDE_LOCK": str(lock_path)})
    pinned = cli("images", "-q", "--no-trunc", "busybox:latest").out.strip()
    # while the name still means the pinned image, each front runs it ... by the pinned id
    cli("create", "--name", "c-cli", "busybox", "true", env={"PORTSIDE_LOCK": str(lock_path)})
    magic(ipython, "create --name c-magic busybox true")
    code, doc = await rest_run(api, image="busybox", command=["sleep", "30"], name="c-rest")
    assert code == 201, doc
    for name in ("c-cli", "c-magic", "c-rest"):
        assert cli("inspect", "-f", "{{.Image}}", name).out.strip() == pinned
    # the name drifts (re-tagged): every front refuses, with the same one-line reason
    cli("commit", "c-cli", "busybox:latest")
    drift = f"portside.lock pins busybox:latest to {pinned[:19]}…, but busybox:latest is now"
    proc = cli("run", "--rm", "busybox", "true", check=False,
               env={"PORTSIDE_LOCK": str(lock_path)})
    assert proc.returncode == 125 and drift in proc.err
    with pytest.raises(ContainerError, match=drift):
        magic(ipython, "run --rm busybox true")
    code, doc = await rest_run(api, image="busybox", command=["true"])
    assert code == 409 and drift in doc["message"] and doc["type"] == "Conflict"
    # a name the lock does not pin is refused alike
    cli("tag", pinned, "other:1")
    unpinned = "does not pin other:1"
    assert unpinned in cli("create", "other:1", "true", check=False,
                           env={"PORTSIDE_LOCK": str(lock_path)}).err
    with pytest.raises(ContainerError, match=unpinned):
        magic(ipython, "create other:1 true")
    code, doc = await rest_run(api, image="other:1", command=["true"])
    assert code == 409 and unpinned in doc["message"]


async def test_names_resolve_alike_in_every_front(fronts, ipython):
    cli, _magics, api = fronts
    cid = cli("create", "--name", "named", "busybox", "true").out.strip()
    prefix = cid[:7]
    assert json.loads(cli("inspect", prefix).out)[0]["Id"] == cid
    result, _ = magic(ipython, f"inspect {prefix}")
    assert result[0]["Id"] == cid
    response = await api("containers", prefix)
    assert response.code == 200 and json.loads(response.body)["Id"] == cid
    # and an unknown one is the same NotFound everywhere
    missing = "No such container: nothere"
    proc = cli("logs", "nothere", check=False)
    assert proc.returncode == 125 and proc.err == f"Error: {missing}\n"
    with pytest.raises(ContainerError, match=f"^{missing}$"):
        magic(ipython, "logs nothere")
    response = await api("containers", "nothere", "logs")
    assert response.code == 404 and json.loads(response.body)["message"] == missing


async def test_defaults_are_the_engines(fronts, ipython):
    """A container made with no options gets the same Docker defaults from every front."""
    cli, _magics, api = fronts
    cli("create", "--name", "d-cli", "busybox", "sleep", "30")
    magic(ipython, "create --name d-magic busybox sleep 30")
    code, doc = await rest_run(api, image="busybox", command=["sleep", "30"], name="d-rest")
    assert code == 201, doc
    docs = {name: json.loads(cli("inspect", name).out)[0] for name in ("d-cli", "d-magic",
                                                                         "d-rest")}

    def defaults(d: dict) -> dict:
        hc, cfg = d["HostConfig"], d["Config"]
        return {"NetworkMode": hc["NetworkMode"], "ShmSize": hc["ShmSize"],
                "RestartPolicy": hc["RestartPolicy"], "AutoRemove": hc["AutoRemove"],
                "Privileged": hc["Privileged"], "Image": d["Image"],
                "Hostname": cfg["Hostname"] == d["Id"][:12], "Cmd": cfg["Cmd"],
                "Env": cfg["Env"], "Tty": cfg["Tty"], "OpenStdin": cfg["OpenStdin"]}

    seen = [defaults(d) for d in docs.values()]
    assert seen[0] == seen[1] == seen[2]
    assert seen[0]["NetworkMode"] == "default" and seen[0]["ShmSize"] == 64 * 1024 * 1024
    assert seen[0]["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert seen[0]["Hostname"] is True and seen[0]["Cmd"] == ["sleep", "30"]
    assert seen[0]["Image"] == cli("images", "-q", "--no-trunc", "busybox:latest").out.strip()
