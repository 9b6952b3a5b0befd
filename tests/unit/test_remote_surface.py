"""The remote engine's surface is the written-down model API: every collection, model and
verb the Protocols of portside.engine.models.interface declare is on its stand-ins (and sent to
the engine process, never run here), nothing else of the engine can be reached, and an exec's
streams come back as the ends of its pipes. (The type checker holds RemoteEngine to EngineAPI;
the integration suite drives a real engine process.)"""

from __future__ import annotations

import inspect
import signal
import subprocess
import threading

import pytest

from portside.engine.api import Engine
from portside.engine.models import interface
from portside.engine.models.streams import ProcessStream
from portside.engine.remote.client import (COLLECTIONS, RemoteEngine, RemoteExecStream,
                                           remote_model_class)
from portside.engine.remote.server import EngineServer
from portside.engine.remote.wire import Channel

pytestmark = pytest.mark.unit

#: each Protocol of the model API and the local class whose stand-in answers it remotely
ANSWERED_BY = {
    interface.Image: "portside.engine.models.images.Image",
    interface.Container: "portside.engine.models.containers.Container",
    interface.Volume: "portside.engine.models.volumes.Volume",
    interface.Network: "portside.engine.models.networks.Network",
    interface.ImageCollection: COLLECTIONS["images"],
    interface.ContainerCollection: COLLECTIONS["containers"],
    interface.VolumeCollection: COLLECTIONS["volumes"],
    interface.NetworkCollection: COLLECTIONS["networks"],
    interface.BuildCollection: COLLECTIONS["builds"],
    interface.System: COLLECTIONS["system"],
}


def _declared(protocol: type) -> dict[str, object]:
    """The members a Protocol declares (its bases' too), by name."""
    out: dict[str, object] = {}
    for klass in reversed(protocol.__mro__):
        if klass in (object, interface.Protocol) or not getattr(klass, "_is_protocol", False):
            continue
        for name, value in vars(klass).items():
            if not name.startswith("_"):
                out[name] = value
        out.update({name: None for name in getattr(klass, "__annotations__", {})
                    if not name.startswith("_")})
    return out


def test_the_collections_are_the_local_engines_classes():
    for name, path in COLLECTIONS.items():
        prop = inspect.getattr_static(Engine, name)
        fn = getattr(prop, "fget", None) or prop.func  # a property or a cached_property
        annotation = fn.__annotations__["return"]  # a string (postponed annotations)
        assert path.rsplit(".", 1)[1] == annotation, name
        assert isinstance(inspect.getattr_static(RemoteEngine, name), property)


@pytest.mark.parametrize("protocol", list(ANSWERED_BY), ids=lambda p: p.__name__)
def test_every_declared_verb_is_sent_to_the_engine_process(protocol):
    stand_in = remote_model_class(ANSWERED_BY[protocol])
    declared = _declared(protocol)
    assert declared, protocol
    for name, value in declared.items():
        found = inspect.getattr_static(stand_in, name, None)
        if found is None and name == "attrs":
            continue  # set on each instance
        assert found is not None, f"{protocol.__name__}.{name} missing on the stand-in"
        if inspect.isfunction(value) and not isinstance(value, property):
            # a verb: forwarded by name, whatever the local class does with it
            assert found.__qualname__.startswith("_forwarder"), f"{protocol.__name__}.{name}"


def test_a_containers_image_is_asked_of_the_engine_process():
    stand_in = remote_model_class("portside.engine.models.containers.Container")
    prop = inspect.getattr_static(stand_in, "image")
    assert prop.fget.__qualname__.startswith("_remote_property")


def test_nothing_but_the_model_api_is_reachable():
    eng = RemoteEngine.__new__(RemoteEngine)
    for internal in ("db", "image_store", "lifecycle", "config", "content", "snapshots"):
        with pytest.raises(AttributeError):
            getattr(eng, internal)


class _Tools:
    """What a fake engine hands out: a process on this machine, as an exec would be."""

    def cat(self) -> ProcessStream:
        return ProcessStream(subprocess.Popen(["cat"], stdin=subprocess.PIPE,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE))

    def sleeper(self) -> ProcessStream:
        return ProcessStream(subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE))


class _FakeEngine:
    def __init__(self) -> None:
        self.tools = _Tools()

    def close(self) -> None:
        pass


@pytest.fixture
def remote():
    ours, theirs = Channel.pair()
    server = threading.Thread(target=EngineServer(_FakeEngine()).serve, args=(Channel(theirs),),
                              daemon=True)
    server.start()
    eng = RemoteEngine(ours)
    yield eng
    eng.close()
    server.join(timeout=10)
    assert not server.is_alive()


def test_exec_streams_are_the_ends_of_the_process_pipes(remote):
    stream = remote.call({"path": ["tools"]}, "cat", (), {})
    assert isinstance(stream, RemoteExecStream)
    assert all(f.fileno() >= 0 for f in (stream.stdin, stream.stdout, stream.stderr))
    stream.stdin.write(b"round trip\n")
    stream.stdin.flush()
    assert stream.stdout.read1(100) == b"round trip\n" and stream.poll() is None
    stream.stdin.close()  # the engine process kept no copy: cat sees the end of its input
    assert stream.stdout.read() == b"" and stream.wait(timeout=10) == 0
    stream.close()


def test_exec_stream_signals_and_close_go_to_the_engine_process(remote):
    stream = remote.call({"path": ["tools"]}, "sleeper", (), {})
    assert stream.stdin is None
    with pytest.raises(TimeoutError):
        stream.wait(timeout=0.1)
    stream.signal(signal.SIGTERM)
    assert stream.wait(timeout=10) == -signal.SIGTERM
    stream.close()
    again = remote.call({"path": ["tools"]}, "cat", (), {})
    again.close()  # streams closed here (cat's input ends), the process reaped over there
    assert again.poll() == 0
