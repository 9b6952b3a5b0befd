"""The remote engine's transport and value codec: frames, descriptors, values that are not JSON,
and errors rebuilt as the engine's own classes."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from portside.engine.errors import BuildError, ContainerExit, NotFound
from portside.engine.remote.client import rebuild_error
from portside.engine.remote.codec import Codec
from portside.engine.remote.server import error_doc
from portside.engine.remote.wire import Channel

pytestmark = pytest.mark.unit


def test_messages_and_descriptors_cross_a_socket_pair():
    ours, theirs = Channel.pair()
    other = Channel(theirs)
    r, w = os.pipe()
    try:
        # bigger than the socket's buffer: sent from a thread while this one reads
        sender = threading.Thread(target=ours.send, args=({"op": "call", "big": "x" * 300_000},
                                                          [r]))
        sender.start()
        msg, fds = other.recv()
        sender.join()
        assert msg["op"] == "call" and len(msg["big"]) == 300_000 and len(fds) == 1
        os.write(w, b"through the passed descriptor")
        assert os.read(fds[0], 100) == b"through the passed descriptor"
        os.close(fds[0])
        ours.close()
        with pytest.raises(EOFError):
            other.recv()
    finally:
        os.close(r)
        os.close(w)
        other.close()


def test_pipes_carry_messages_but_no_descriptors():
    r1, w1 = os.pipe()
    sender, receiver = Channel(rfd=-1, wfd=w1), Channel(rfd=r1, wfd=-1)
    sender.send({"n": 1})
    assert receiver.recv() == ({"n": 1}, [])
    with pytest.raises(OSError, match="descriptors cannot travel over pipes"):
        sender.send({"n": 2}, [0])
    sender.close()
    receiver.close()


def test_concurrent_senders_do_not_interleave():
    ours, theirs = Channel.pair()
    other = Channel(theirs)
    payload = "y" * 100_000

    def send(i: int) -> None:
        for _ in range(20):
            ours.send({"i": i, "p": payload})

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    got = [other.recv()[0] for _ in range(80)]
    for t in threads:
        t.join()
    assert sorted(m["i"] for m in got) == sorted(list(range(4)) * 20)
    assert all(m["p"] == payload for m in got)
    ours.close()
    other.close()


def test_values_that_are_not_json_round_trip():
    from portside.engine.builder.progress import BuildStep

    codec = Codec()
    value = {"b": b"\x00\xff", "t": (1, "a"), "p": Path("/x/y"), 3: "int key",
             "nested": [{"\0sneaky": 1}], "ev": BuildStep(id=2, n=1, m=4, stage="base", text="RUN x")}
    back = codec.decode(__import__("json").loads(__import__("json").dumps(codec.encode(value))))
    assert back == value and isinstance(back["ev"], BuildStep)


def test_objects_without_a_wire_form_are_refused():
    with pytest.raises(TypeError, match="cannot send a lock"):
        Codec().encode(threading.Lock())


@pytest.mark.parametrize("exc", [
    NotFound("no such container: x"),
    ContainerExit(3, "container x exited with 3"),
    BuildError("RUN failed", step="[1/2] RUN false", status=1, output_tail=["boom"]),
    subprocess.TimeoutExpired(["runc", "exec"], 2.5),
    FileNotFoundError(2, "No such file or directory"),
])
def test_errors_come_back_as_their_class(exc):
    import json

    back = rebuild_error(json.loads(json.dumps(error_doc(exc))))
    assert type(back) is type(exc) and str(back) == str(exc)
    if isinstance(exc, ContainerExit):
        assert back.exit_code == 3
    if isinstance(exc, BuildError):
        assert (back.step, back.status, back.output_tail) == (exc.step, 1, ["boom"])


def test_foreign_errors_become_one_engine_line():
    from portside.engine.errors import RuntimeFailure

    back = rebuild_error({"cls": "somewhere.Else", "message": "odd", "attrs": {}})
    assert isinstance(back, RuntimeFailure) and str(back) == "engine process: Else: odd"
