"""Docker's ``--sig-proxy``: the signals a foreground ``run``, ``start -a`` or ``attach``
receives go to its container.

A batch system or ``timeout`` stops a job by signalling the process it started, which is
``portside run``, not the container's process. So while a container runs in the foreground,
:class:`SignalProxy` catches every signal a process can catch and passes each to the container
with the model API's ``container.kill(signum)`` (``SIGTERM``, ``SIGHUP``, ``SIGUSR1``,
``SIGQUIT`` …), as Docker's client does, instead of dying of it and leaving the container
running. Since it speaks only the model API, it works for every engine object a context gives:
the local engine, a Slurm context (the signal reaches the container on its node), a Docker
Engine.

Left out, as Docker leaves them out: ``SIGCHLD`` and ``SIGPIPE`` (about this process itself),
``SIGURG`` and ``SIGWINCH`` (a terminal's size is the attach's business); the synchronous faults
(``SIGSEGV``, ``SIGABRT``…) and ``SIGKILL``/``SIGSTOP`` cannot be passed on. ``SIGINT`` is passed
on only where asked (``attach``): for ``run`` and ``start -a``, ^C stays a
``KeyboardInterrupt``, which the engine's foreground verbs answer by sending the container
SIGINT and stopping it when that does not end it (the notebook's interrupt is the same).

With ``--sig-proxy=false`` nothing is passed on and every signal keeps its default action, ^C
included: the client ends and the container runs on (its monitor cleans up after it), as with
Docker.

The signals are read from :func:`signal.set_wakeup_fd`'s pipe by a thread of the proxy, which
sends each at once, as Go's ``signal.Notify`` lets Docker's client do. A Python-level handler
would not do: it runs in the main thread only, and only once that thread is back in the
interpreter, while a signal the kernel gives to another thread leaves the main thread asleep in
its ``poll`` (attached to a terminal it waits there for the container's output, without end).
Sending takes the container's lock and may call the runtime or a scheduler, which a handler
interrupting this process's own locked section must not do anyway.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any

    from ..models.interface import Container

__all__ = ["SignalProxy", "proxied_signals", "parse_bool"]

_NOT_PROXIED = {"SIGCHLD", "SIGPIPE", "SIGURG", "SIGWINCH", "SIGKILL", "SIGSTOP", "SIGINT",
                "SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT", "SIGTRAP", "SIGSYS"}


def proxied_signals(*, interrupt: bool = False) -> list[int]:
    """The signals a proxy passes on: every catchable one but those listed above (``SIGINT``
    too with ``interrupt``)."""
    skip = _NOT_PROXIED - ({"SIGINT"} if interrupt else set())
    return sorted(s for s in signal.valid_signals()
                  if isinstance(s, signal.Signals) and s.name not in skip)


def parse_bool(text: str | bool | None, flag: str) -> bool:
    """A Docker boolean flag's value (Go's ``strconv.ParseBool``: 1 t T TRUE true True, 0 f F
    FALSE false False).

    Raises:
        InvalidArgument: anything else, with Docker's message.
    """
    from ..errors import InvalidArgument

    if isinstance(text, bool):
        return text
    value = (text or "").strip()
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: strconv.ParseBool: '
                          f'parsing "{text}": invalid syntax')


def _noted(signum: int, frame: FrameType | None) -> None:
    """The Python-level handler of a proxied signal: nothing to do (the wakeup pipe has it)."""


class SignalProxy:
    """For the block, pass the signals this process receives to a container.

    Nothing is caught until :meth:`engage` names the container (Docker's client starts its proxy
    once the container exists): a signal before that has its usual effect. Signal handlers
    belong to the main thread of a program that owns its signals: in a notebook kernel or a
    server's worker thread (``owner=False``, or not the main thread) the proxy does nothing. The
    previous handlers come back when the block ends, after the signals already received were
    sent.

    Args:
        proxy: pass signals on (``--sig-proxy``, default true). False: leave every signal its
            default action, SIGINT too, so the client ends and the container runs on.
        interrupt: pass SIGINT on as well (``attach``).
        owner: whether this front owns the process's signals (the CLI does; a notebook's
            ``%container`` does not: its interrupt is the kernel's).

    Example::

        with SignalProxy(proxy=True) as proxy:
            code = engine.containers.run_from(config, host_config, stdout=out, stderr=err,
                                              on_created=proxy.engage)
    """

    def __init__(self, *, proxy: bool = True, interrupt: bool = False,
                 owner: bool = True) -> None:
        self._proxy = proxy
        self._interrupt = interrupt
        self._active = owner and threading.current_thread() is threading.main_thread()
        self._old: dict[int, Any] = {}
        self._old_wakeup = -1
        self._pipes: list[int] = []  # the wakeup pipe's ends, then the stop pipe's
        self._thread: threading.Thread | None = None
        self._container: Container | None = None

    def __enter__(self) -> SignalProxy:
        return self

    def engage(self, container: Container) -> None:
        """Catch signals from now on and send them to ``container`` (once; later calls only
        change the container)."""
        self._container = container
        if not self._active or self._old:
            return
        if not self._proxy:
            # Docker's client catches nothing then: ^C ends it as TERM does, and the container,
            # not told, runs on
            self._old[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_DFL)
            return
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        stop_r, stop_w = os.pipe2(os.O_CLOEXEC)
        self._pipes = [wake_r, wake_w, stop_r, stop_w]
        wanted = frozenset(proxied_signals(interrupt=self._interrupt))
        self._thread = threading.Thread(target=self._forward, args=(wanted,),
                                        name="portside-sig-proxy", daemon=True)
        self._thread.start()
        # the pipe first: a handler set before it would swallow a signal
        self._old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        for sig in wanted:
            try:
                self._old[sig] = signal.signal(sig, _noted)
            except (OSError, ValueError):
                continue

    def _forward(self, wanted: frozenset[int]) -> None:
        import select

        wake_r, _, stop_r, _ = self._pipes
        while True:
            ready = select.select([wake_r, stop_r], [], [])[0]
            try:
                data = os.read(wake_r, 512)
            except BlockingIOError:
                data = b""
            if data and self._old_wakeup >= 0:
                with contextlib.suppress(OSError):  # whoever had the pipe before still hears
                    os.write(self._old_wakeup, data)
            for signum in data:
                container = self._container
                if signum not in wanted or container is None:
                    continue  # ^C where it stays the caller's, a signal of somebody else's
                try:
                    container.kill(signum)
                except Exception:  # noqa: BLE001 - it may have exited meanwhile, or not started
                    pass
            if stop_r in ready and not data:
                return

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            with contextlib.suppress(OSError, ValueError, TypeError):
                signal.signal(sig, old)
        self._old = {}
        if self._pipes:
            with contextlib.suppress(OSError, ValueError):
                signal.set_wakeup_fd(self._old_wakeup)
            os.write(self._pipes[3], b"x")
            if self._thread is not None:
                self._thread.join(5)
                self._thread = None
            for fd in self._pipes:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._pipes = []
