"""Fixtures of the rootless suite (see :mod:`harness` for how users and their venv are made).

* ``rootless_host`` (session) — the test users, their venv, /dev/net/tun and /dev/fuse opened;
  all undone after the session (users removed with their processes and files, the devices'
  modes restored).
* ``rl`` — a :class:`RootlessCLI` for ``portside-rl1`` on a fresh state root in their home;
  after the test it runs ``portside system reset --force`` as the user and checks that nothing
  of portside is left running for them (no monitor, no container, no namespace holder).
* ``rl2`` — the same for ``portside-rl2``; ``rl0`` for ``portside-rl0``, who has no subordinate
  ids.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from .harness import (FUSE, USERS, TestUser, UserVenv, make_user, open_device, open_tun,
                      remove_user, restore_device, restore_tun)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))


class RootlessHost:
    def __init__(self) -> None:
        self.venv = None
        self.users: dict[str, TestUser] = {}
        self.tun_mode = None
        self.fuse_mode = None

    def setup(self) -> None:
        self.tun_mode = open_tun()
        self.fuse_mode = open_device(FUSE)
        self.venv = UserVenv()
        for name, subordinate in USERS.items():
            make_user(name, subordinate)
            self.users[name] = TestUser(name, self.venv)

    def teardown(self) -> None:
        for name in USERS:
            remove_user(name)
        if self.venv is not None:
            self.venv.remove()
        restore_tun(self.tun_mode)
        restore_device(FUSE, self.fuse_mode)


@pytest.fixture(scope="session")
def rootless_host():
    if os.geteuid() != 0:
        pytest.fail("the rootless suite makes its test users as root: run `make test` as root")
    host = RootlessHost()
    try:
        host.setup()
        yield host
    finally:
        host.teardown()


class RootlessCLI:
    """``portside`` as one test user, on one state root of theirs."""

    def __init__(self, user: TestUser, root: Path) -> None:
        self.user = user
        self.root = root

    def env(self, **extra: str) -> dict[str, str]:
        return self.user.env(**{"PORTSIDE_ROOT": str(self.root), **extra})

    def __call__(self, *args: str, check: bool = True, env: dict[str, str] | None = None,
                 **kw) -> object:
        return self.user.run([str(self.user.venv.bin / "portside"), *args], check=check,
                             env=self.env(**(env or {})), **kw)

    def sh(self, script: str, **kw) -> object:
        """A shell command as the user (files in their home, for instance)."""
        return self.user.run(["/bin/sh", "-c", script], env=self.env(), **kw)

    def path(self, *parts: str) -> Path:
        """A path in the user's home (made by the user, so it is theirs)."""
        return self.user.home.joinpath(*parts)


def _portside_processes(user: TestUser) -> list[str]:
    """The user's processes (and their subordinate ids'), zombies aside: those are gone, only
    waiting for init to reap them."""
    alive = []
    for line in user.processes():
        pid = line.split()[0]
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            alive.append(line)
    return alive


def nothing_left(user: TestUser, timeout: float = 10.0) -> list[str]:
    """Wait until the user runs nothing any more; returns what is left after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        left = _portside_processes(user)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def _cli_for(host: RootlessHost, name: str, request) -> RootlessCLI:
    user = host.users[name]
    root = user.home / "roots" / request.node.name[:60].replace("/", "_").replace("[", "-") \
        .replace("]", "")
    cli = RootlessCLI(user, root)
    cli.sh(f"mkdir -p '{root}'")
    return cli


def _finish(cli: RootlessCLI) -> None:
    reset = cli("system", "reset", "--force", check=False)
    left = nothing_left(cli.user)
    shutil.rmtree(cli.root, ignore_errors=True)  # as root: whatever reset could not remove
    assert reset.returncode == 0, f"system reset failed: {reset.err}"
    assert not left, f"left running for {cli.user.name} after system reset: {left}"
    run_dirs = list(cli.user.runtime_dir().glob("*/")) if cli.user.runtime_dir().is_dir() else []
    assert not run_dirs, f"runtime folders left: {run_dirs}"


@pytest.fixture
def rl(rootless_host, request):
    cli = _cli_for(rootless_host, "portside-rl1", request)
    yield cli
    _finish(cli)


@pytest.fixture
def rl2(rootless_host, request):
    cli = _cli_for(rootless_host, "portside-rl2", request)
    yield cli
    _finish(cli)


@pytest.fixture
def rl0(rootless_host, request):
    cli = _cli_for(rootless_host, "portside-rl0", request)
    yield cli
    _finish(cli)
