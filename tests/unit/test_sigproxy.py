"""The CLI's signal proxy (engine/commands/sigproxy.py) on this very process: nothing caught
before it is engaged, each signal handed to the container's ``kill`` (the model API's), the old
handlers back afterwards."""

from __future__ import annotations

import inspect
import os
import signal
import threading
import time

import pytest

from portside.engine.commands.sigproxy import SignalProxy, parse_bool, proxied_signals
from portside.engine.errors import IncorrectState, InvalidArgument
from portside.engine.models import interface

pytestmark = pytest.mark.unit


class Recorder:
    """Stands for a model API container (:class:`interface.Container`): records ``kill``."""

    def __init__(self, fail_first: bool = False) -> None:
        self.got: list[str | int] = []
        self.fail_first = fail_first
        self.last = threading.Event()

    def kill(self, signal: str | int = "KILL") -> Recorder:
        self.got.append(signal)
        if signal == 12:  # SIGUSR2: the test's last one
            self.last.set()
        if self.fail_first and len(self.got) == 1:
            raise IncorrectState("container x is not running")  # not started yet: ignored
        return self


def test_the_recorder_has_the_model_apis_kill():
    assert inspect.signature(Recorder.kill).parameters.keys() == \
        inspect.signature(interface.Container.kill).parameters.keys()


@pytest.fixture
def usr1_counted():
    """SIGUSR1 and SIGHUP counted by this test's own handlers (what runs when no proxy is in
    place), put back afterwards."""
    seen: list[int] = []
    old = {s: signal.signal(s, lambda n, f: seen.append(n)) for s in (signal.SIGUSR1,
                                                                      signal.SIGHUP)}
    yield seen
    for s, h in old.items():
        signal.signal(s, h)


def test_signals_go_to_the_container_once_engaged(usr1_counted):
    ctr = Recorder(fail_first=True)
    with SignalProxy() as proxy:
        os.kill(os.getpid(), signal.SIGUSR1)  # before the container exists: the usual effect
        assert usr1_counted == [signal.SIGUSR1]
        proxy.engage(ctr)
        for sig in (signal.SIGUSR1, signal.SIGHUP, signal.SIGTERM, signal.SIGUSR2):
            os.kill(os.getpid(), sig)
        assert ctr.last.wait(5)
    # every one passed on, as a plain number, even after the first kill failed
    assert ctr.got == [signal.SIGUSR1, signal.SIGHUP, signal.SIGTERM, signal.SIGUSR2]
    assert all(type(s) is int for s in ctr.got)
    assert usr1_counted == [signal.SIGUSR1]  # the proxy had them, not the old handler
    os.kill(os.getpid(), signal.SIGHUP)  # the old handlers are back
    assert usr1_counted == [signal.SIGUSR1, signal.SIGHUP]


def test_interrupt_is_passed_on_only_when_asked():
    ctr = Recorder()
    with SignalProxy(interrupt=True) as proxy:
        proxy.engage(ctr)
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGUSR2)
        assert ctr.last.wait(5)
    assert ctr.got == [signal.SIGINT, signal.SIGUSR2]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with SignalProxy() as proxy:
        proxy.engage(Recorder())
        with pytest.raises(KeyboardInterrupt):  # ^C stays the caller's
            os.kill(os.getpid(), signal.SIGINT)


def test_sig_proxy_false_catches_nothing_and_leaves_interrupt_its_default():
    before = signal.getsignal(signal.SIGTERM)
    with SignalProxy(proxy=False) as proxy:
        proxy.engage(Recorder())
        assert signal.getsignal(signal.SIGTERM) is before
        assert signal.getsignal(signal.SIGINT) == signal.SIG_DFL  # ^C ends the client
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_front_that_does_not_own_the_signals_changes_nothing():
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    for proxy in (True, False):
        with SignalProxy(proxy=proxy, owner=False) as p:  # a notebook kernel's %container
            p.engage(Recorder())
            assert {s: signal.getsignal(s) for s in before} == before
    done: list[object] = []

    def elsewhere() -> None:  # a server's worker thread
        with SignalProxy() as p:
            p.engage(Recorder())
            done.append(signal.getsignal(signal.SIGTERM))

    t = threading.Thread(target=elsewhere)
    t.start()
    t.join()
    assert done == [before[signal.SIGTERM]]


def test_which_signals():
    names = {s.name for s in proxied_signals()}
    assert {"SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGQUIT", "SIGALRM", "SIGCONT"} <= names
    assert not names & {"SIGINT", "SIGCHLD", "SIGPIPE", "SIGWINCH", "SIGKILL", "SIGSEGV",
                        "SIGABRT"}
    assert {s.name for s in proxied_signals(interrupt=True)} == names | {"SIGINT"}


def test_parse_bool_is_gos():
    assert parse_bool("true", "--x") and parse_bool("1", "--x") and parse_bool("T", "--x")
    assert not parse_bool("False", "--x") and not parse_bool("0", "--x")
    with pytest.raises(InvalidArgument, match='^invalid argument "yes" for "--x" flag'):
        parse_bool("yes", "--x")


def test_a_signal_another_thread_receives_is_passed_on_at_once():
    """The kernel may give a process's signal to any of its threads. The main thread, asleep
    in a system call (attached to a terminal it waits in ``poll``), must not delay it: the
    signal is passed on while the main thread still sleeps."""
    import select

    ctr = Recorder()
    wake_r, wake_w = os.pipe()
    seen_asleep: list[bool] = []

    main = threading.main_thread().native_id

    def asleep() -> bool:
        with open(f"/proc/self/task/{main}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "S"

    def other() -> None:
        deadline = time.monotonic() + 10
        while not asleep():  # the main thread is in select (nothing else makes it sleep here)
            assert time.monotonic() < deadline
            time.sleep(0.005)
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)  # this thread gets it
        seen_asleep.append(ctr.last.wait(5))
        os.write(wake_w, b"x")

    try:
        with SignalProxy() as proxy:
            proxy.engage(ctr)
            t = threading.Thread(target=other)
            t.start()
            assert select.select([wake_r], [], [], 20)[0]  # asleep until `other` wakes it
            t.join()
    finally:
        os.close(wake_r)
        os.close(wake_w)
    assert seen_asleep == [True] and ctr.got == [signal.SIGUSR2]
