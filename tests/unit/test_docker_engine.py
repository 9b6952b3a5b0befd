"""The Docker engine's seams without a daemon: dockerd's errors as ours, its JSON progress
streams as our typed events, ``--mount``/``--gpus`` as dockerd's documents.

The errors are the SDK's own types built around real ``requests`` responses (what the SDK makes
from dockerd's answers); the progress streams are lines recorded from dockerd 20.10.
"""

from __future__ import annotations

import errno
import json

import pytest

pytest.importorskip("docker")

import docker.errors  # noqa: E402
import requests  # noqa: E402

from portside.engine import errors as E  # noqa: E402
from portside.engine.builder import progress as B  # noqa: E402
from portside.engine.docker import DockerEngine  # noqa: E402
from portside.engine.docker.containers import _gpu_request, _mount_doc  # noqa: E402
from portside.engine.docker.errors import map_error  # noqa: E402
from portside.engine.docker.progress import BuildTranslator, follow_transfer  # noqa: E402
from portside.engine.registry.progress import LayerEvent, Message  # noqa: E402

pytestmark = pytest.mark.unit

ENGINE = DockerEngine("unix:///run/test/docker.sock", context="box")


def api_error(status: int, message: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps({"message": message}).encode()
    response.url = "http+docker://localhost/v1.41/x"
    try:
        response.raise_for_status()
    except requests.exceptions.HTTPError as exc:
        try:
            docker.errors.create_api_error_from_http_exception(exc)
        except docker.errors.APIError as mapped:
            return mapped
    raise AssertionError("no error made")


@pytest.mark.parametrize("status, message, kind, code", [
    (404, "No such container: exp", E.NotFound, 125),
    (404, "No such image: busybox:nope", E.NotFound, 125),
    (409, "Container 1a2b3c is not running", E.IncorrectState, 125),
    (409, 'Conflict. The container name "/web" is already in use by container "1a2b". You '
          'have to remove (or rename) that container to be able to reuse that name.',
     E.Conflict, 125),
    (400, "invalid reference format", E.InvalidArgument, 125),
    (500, "driver failed programming external connectivity on endpoint web (1a2b): Bind for "
          "127.0.0.1:8080 failed: port is already allocated", E.Conflict, 125),
    (500, 'failed to create shim task: OCI runtime create failed: runc create failed: unable '
          'to start container process: exec: "nope": executable file not found in $PATH: '
          'unknown', E.CommandNotFound, 127),
    (500, 'OCI runtime create failed: exec: "/etc": permission denied: unknown',
     E.CannotInvoke, 126),
    (400, 'failed to create shim task: OCI runtime create failed: runc create failed: unable '
          'to start container process: exec: "nope": executable file not found in $PATH: '
          'unknown', E.CommandNotFound, 127),  # dockerd 20.10 answers 400 there
    (500, "mount failed", E.RuntimeFailure, 125),
    (401, "unauthorized: authentication required", E.Unauthorized, 125),
])
def test_daemon_errors_keep_dockers_meaning_in_one_line(status, message, kind, code):
    mapped = map_error(api_error(status, message), ENGINE)
    assert type(mapped) is kind
    assert str(mapped) == message  # dockerd's explanation alone, not the SDK's URL and reason
    assert mapped.exit_code == code


@pytest.mark.parametrize("cause, expected", [
    (PermissionError(errno.EACCES, "Permission denied"),
     'permission denied while trying to connect to the Docker daemon socket at '
     'unix:///run/test/docker.sock (context "box"): connect /run/test/docker.sock: '
     'permission denied'),
    (FileNotFoundError(errno.ENOENT, "No such file or directory"),
     'Cannot connect to the Docker daemon at unix:///run/test/docker.sock (context "box"): '
     'no such file or directory. Is the docker daemon running?'),
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
     'Cannot connect to the Docker daemon at unix:///run/test/docker.sock (context "box"): '
     'connection refused. Is the docker daemon running?'),
])
def test_an_unreachable_daemon_names_the_socket_and_the_context(cause, expected):
    import urllib3

    # what requests raises: its ConnectionError around urllib3's around the socket's error
    wrapped = requests.exceptions.ConnectionError(
        urllib3.exceptions.ProtocolError("Connection aborted.", cause))
    mapped = map_error(wrapped, ENGINE)
    assert isinstance(mapped, E.Unavailable) and str(mapped) == expected
    # the SDK's version check wraps it once more
    outer = docker.errors.DockerException(f"Error while fetching server API version: {wrapped}")
    outer.__cause__ = wrapped
    assert str(map_error(outer, ENGINE)) == expected


def test_a_foreign_exception_passes_unchanged():
    exc = KeyError("x")
    assert map_error(exc, ENGINE) is exc


def test_pull_stream_becomes_layer_events_and_messages():
    lines = [
        {"status": "Pulling from library/busybox", "id": "1"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "a1b2c3d4e5f6"},
        {"status": "Downloading", "progressDetail": {"current": 100, "total": 200},
         "progress": "[=====>   ]", "id": "a1b2c3d4e5f6"},
        {"status": "Download complete", "progressDetail": {}, "id": "a1b2c3d4e5f6"},
        {"status": "Pull complete", "progressDetail": {}, "id": "a1b2c3d4e5f6"},
        {"status": "Digest: sha256:" + "0" * 64},
        {"status": "Status: Downloaded newer image for 127.0.0.1:5000/busybox:1"},
    ]
    events: list = []
    follow_transfer(iter(lines), events.append)
    assert events == [
        Message("1: Pulling from library/busybox"),
        LayerEvent("a1b2c3d4e5f6", "Pulling fs layer", 0, 0),
        LayerEvent("a1b2c3d4e5f6", "Downloading", 100, 200),
        LayerEvent("a1b2c3d4e5f6", "Download complete", 0, 0),
        LayerEvent("a1b2c3d4e5f6", "Pull complete", 0, 0),
        Message("Digest: sha256:" + "0" * 64),
        Message("Status: Downloaded newer image for 127.0.0.1:5000/busybox:1"),
    ]


def test_push_stream_keeps_the_mount_source_and_the_digest():
    lines = [{"status": "The push refers to repository [127.0.0.1:5000/exp]"},
             {"status": "Mounted from library/busybox", "progressDetail": {},
              "id": "a1b2c3d4e5f6"},
             {"status": "1: digest: sha256:ab size: 527"},
             {"progressDetail": {}, "aux": {"Tag": "1", "Digest": "sha256:ab", "Size": 527}}]
    events: list = []
    kept = follow_transfer(iter(lines), events.append)
    assert LayerEvent("a1b2c3d4e5f6", "Mounted from", 0, 0, "library/busybox") in events
    assert events[1].text() == "a1b2c3d4e5f6: Mounted from library/busybox"
    assert {"Tag": "1", "Digest": "sha256:ab", "Size": 527} in [d.get("aux") for d in kept]


@pytest.mark.parametrize("message, kind", [
    ("pull access denied for nope, repository does not exist or may require 'docker login'",
     E.Unauthorized),
    ("manifest for 127.0.0.1:5000/x:9 not found: manifest unknown: manifest unknown",
     E.NotFound),
    ('Get "https://127.0.0.1:5000/v2/": http: server gave HTTP response to HTTPS client',
     E.RegistryError),
])
def test_an_error_line_stops_the_transfer(message, kind):
    with pytest.raises(kind) as info:
        follow_transfer(iter([{"status": "Pulling from x"},
                              {"errorDetail": {"message": message}, "error": message}]), None)
    assert str(info.value) == message


def classic_build(*chunks: dict) -> list:
    events: list = []
    translator = BuildTranslator(events.append)
    for chunk in chunks:
        translator.feed(chunk)
    translator.tags = ["exp:1"]
    translator.finish()
    return events


def test_classic_builder_stream_becomes_build_events():
    events = classic_build(
        {"stream": "Step 1/3 : FROM busybox AS base"}, {"stream": "\n"},
        {"stream": " ---> 7d15ab32ad5f\n"},
        {"stream": "Step 2/3 : RUN echo hi"}, {"stream": "\n"},
        {"stream": " ---> Running in 3c7b9e0a1d2f\n"}, {"stream": "hi\n"},
        {"stream": "Removing intermediate container 3c7b9e0a1d2f\n"},
        {"stream": " ---> 1a2b3c4d5e6f\n"},
        {"stream": "Step 3/3 : LABEL x=y"}, {"stream": "\n"},
        {"stream": " ---> Using cache\n"}, {"stream": " ---> 6f5e4d3c2b1a\n"},
        {"aux": {"ID": "sha256:" + "6f" * 32}},
        {"stream": "Successfully built 6f5e4d3c2b1a\n"},
        {"stream": "Successfully tagged exp:1\n"})
    kinds = [(type(e).__name__, getattr(e, "id", None)) for e in events]
    assert kinds == [("BuildStep", 1), ("StepDone", 1), ("BuildStep", 2), ("StepLog", 2),
                     ("StepDone", 2), ("BuildStep", 3), ("StepCached", 3), ("StepDone", 3),
                     ("BuildDone", None)]
    assert events[0] == B.BuildStep(1, 1, 3, "base", "FROM busybox AS base")
    assert events[3] == B.StepLog(2, "hi")
    assert events[-1].image_id == "sha256:" + "6f" * 32 and events[-1].tags == ("exp:1",)


def test_a_failed_step_is_a_build_error_with_its_step_status_and_output():
    events: list = []
    translator = BuildTranslator(events.append)
    for chunk in ({"stream": "Step 1/2 : FROM busybox"}, {"stream": "\n"},
                  {"stream": " ---> 7d15ab32ad5f\n"},
                  {"stream": "Step 2/2 : RUN echo boom; exit 3"}, {"stream": "\n"},
                  {"stream": "boom\n"}):
        translator.feed(chunk)
    with pytest.raises(E.BuildError) as info:
        translator.feed({"errorDetail": {"code": 3, "message": "The command '/bin/sh -c echo "
                                                               "boom; exit 3' returned a "
                                                               "non-zero code: 3"},
                         "error": "The command '/bin/sh -c echo boom; exit 3' returned a "
                                  "non-zero code: 3"})
    assert info.value.status == 3 and info.value.step == "RUN echo boom; exit 3"
    assert info.value.output_tail == ["boom"]
    assert events[-1] == B.StepDone(2, events[-1].seconds,
                                    error="The command '/bin/sh -c echo boom; exit 3' returned "
                                          "a non-zero code: 3")


def test_a_dockerfile_dockerd_cannot_parse_keeps_its_line():
    translator = BuildTranslator(None, "Dockerfile")
    with pytest.raises(E.DockerfileError) as info:
        translator.feed({"error": "dockerfile parse error line 2: unknown instruction: FOO"})
    assert str(info.value) == "Dockerfile:2: unknown instruction: FOO"
    assert info.value.start_line == 2


@pytest.mark.parametrize("text, doc", [
    ("type=bind,source=/data,target=/data,readonly",
     {"Type": "bind", "Source": "/data", "Target": "/data", "ReadOnly": True}),
    ("type=volume,src=cache,dst=/cache,volume-nocopy=true",
     {"Type": "volume", "Source": "cache", "Target": "/cache",
      "VolumeOptions": {"NoCopy": True}}),
    ("type=tmpfs,target=/scratch,tmpfs-size=64m,tmpfs-mode=1770",
     {"Type": "tmpfs", "Target": "/scratch",
      "TmpfsOptions": {"SizeBytes": 64 * 1024 * 1024, "Mode": 0o1770}}),
])
def test_mount_flags_become_dockerd_mounts(text, doc):
    assert _mount_doc(text) == doc


@pytest.mark.parametrize("text", ["type=bind,source=/a", "type=bind,target=/b,colour=red"])
def test_bad_mount_flags_are_refused(text):
    with pytest.raises(E.InvalidArgument):
        _mount_doc(text)


@pytest.mark.parametrize("text, count, ids", [
    ("all", -1, None), ("2", 2, None), ('"device=0,2"', 0, ["0", "2"]),
    ("count=1", 1, None),
])
def test_gpus_become_a_device_request(text, count, ids):
    request = _gpu_request(text)
    assert (request["Count"], request["DeviceIDs"], request["Capabilities"]) == \
        (count, ids, [["gpu"]])


def test_only_portsides_own_operations_are_refused_naming_the_context():
    err = ENGINE.unsupported("system check")
    assert isinstance(err, E.Unsupported) and err.exit_code == 125 and err.http_status == 501
    assert str(err) == ('system check is not available in context "box" '
                        "(a Docker Engine at unix:///run/test/docker.sock)")
    with pytest.raises(E.Unsupported, match='image bootstrap is not available in context "box"'):
        ENGINE.images.bootstrap("busybox")
    with pytest.raises(E.Unsupported, match="SOURCE_DATE_EPOCH"):
        ENGINE.images.build("FROM busybox\n", None, source_date_epoch=0)
    for call, what in ((lambda: ENGINE.system.reset(), "system reset"),
                       (lambda: ENGINE.system.migrate(), "system migrate"),
                       (lambda: ENGINE.images.lock(["busybox"]), "lock"),
                       (lambda: ENGINE.images.diff("a", "b"), "image diff"),
                       (lambda: ENGINE.images.build("FROM busybox\n", None, locked=True),
                        r"the lock \(--locked, portside.lock\)"),
                       (lambda: ENGINE.builds.cache_entries(), "the build cache's entries")):
        with pytest.raises(E.Unsupported, match=f'^{what} is not available in context "box"'):
            call()
    with pytest.raises(E.InvalidArgument, match='unshare: context "box" is a Docker Engine'):
        ENGINE.system.unshare(["id"])
