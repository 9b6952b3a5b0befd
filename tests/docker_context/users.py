"""Normal users for the Docker-context tests: who may use dockerd's socket and who may not.

pytest stays root; the tests run ``portside`` *as a test user* through ``setpriv`` with a clean
environment, as on a shared host where people reach the daemon through a group. What that needs:

* **users** — ``portside-dk1`` in the group ``portside-dkgrp``, which the test dockerd's socket
  is given for the session (``root:portside-dkgrp 0660``, as Debian gives it ``docker``), and
  ``portside-dk0``, not in it. Removed after the session with everything they own; the socket's
  group and mode are put back.
* **an interpreter they can run** — the project's venv lives under /root (pyenv), which other
  users cannot execute: a venv of Debian's ``/usr/bin/python3`` in a world-readable folder
  outside the repository, the CLI's dependencies (the Docker SDK included) installed once into
  a cached venv (``$PORTSIDE_TEST_CACHE/docker-user-deps-<key>``, keyed by Debian's Python and
  the test venv's versions) and the project installed from a wheel of this checkout.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("PORTSIDE_TEST_CACHE", "/var/cache/portside-test"))
SYSTEM_PYTHON = "/usr/bin/python3"
#: What ``portside`` needs to reach dockerd, with the test venv's versions.
PACKAGES = ("pyroute2", "zstandard", "pyyaml", "docker", "requests", "urllib3", "idna",
            "certifi", "charset-normalizer", "pip")
GROUP = "portside-dkgrp"
ALLOWED, DENIED = "portside-dk1", "portside-dk0"


def _pins() -> list[str]:
    from importlib.metadata import version

    return sorted(f"{name}=={version(name)}" for name in PACKAGES)


def _site_packages(venv: Path) -> Path:
    found = sorted((venv / "lib").glob("python3*/site-packages"))
    assert found, f"no site-packages in {venv}"
    return found[0]


def deps_venv() -> Path:
    """The cached venv of the dependencies (made once, atomically, world-readable)."""
    pins = _pins()
    version = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    key = hashlib.sha256(("|".join(pins) + "|" + version + "|v1").encode()).hexdigest()[:16]
    path = CACHE / f"docker-user-deps-{key}"
    if (path / ".complete").exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    part = CACHE / f".docker-user-deps-{key}.{os.getpid()}"
    shutil.rmtree(part, ignore_errors=True)
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(part)], check=True)
    subprocess.run([str(part / "bin" / "python"), "-m", "pip", "install", "-q",
                    "--disable-pip-version-check", *pins], check=True, stdin=subprocess.DEVNULL)
    (part / ".complete").write_text("\n".join(pins) + "\n")
    try:
        os.rename(part, path)
    except OSError:  # another session made it meanwhile
        shutil.rmtree(part, ignore_errors=True)
    subprocess.run(["chmod", "-R", "a+rX", str(path)], check=True)
    return path


class UserVenv:
    """A venv the test users can run: the cached dependencies plus this checkout's wheel."""

    def __init__(self) -> None:
        deps = deps_venv()
        self.dir = Path(tempfile.mkdtemp(prefix="portside-dkuser-", dir="/var/tmp"))
        os.chmod(self.dir, 0o755)
        self.venv = self.dir / "venv"
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(self.venv)],
                       check=True)
        (_site_packages(self.venv) / "_portside_test_deps.pth").write_text(
            f"import site; site.addsitedir({str(_site_packages(deps))!r})\n")
        wheels = self.dir / "wheel"
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                        "--no-build-isolation", "-w", str(wheels), str(REPO)], check=True,
                       stdin=subprocess.DEVNULL, cwd=self.dir, capture_output=True)
        wheel = next(wheels.glob("portside-*.whl"))
        subprocess.run([str(self.venv / "bin" / "python"), "-m", "pip", "install", "-q",
                        "--no-deps", "--disable-pip-version-check", str(wheel)], check=True,
                       stdin=subprocess.DEVNULL, cwd=self.dir, capture_output=True)
        shutil.rmtree(wheels)
        subprocess.run(["chmod", "-R", "a+rX", str(self.dir)], check=True)

    @property
    def portside(self) -> str:
        return str(self.venv / "bin" / "portside")

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class User:
    """A test user; ``portside(...)`` runs the CLI as them."""

    def __init__(self, name: str, venv: UserVenv) -> None:
        info = pwd.getpwnam(name)
        self.name, self.uid, self.gid, self.home = name, info.pw_uid, info.pw_gid, \
            Path(info.pw_dir)
        self.venv = venv

    def env(self) -> dict[str, str]:
        return {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name,
                "PATH": f"{self.venv.venv / 'bin'}:/usr/bin:/bin", "LANG": "C.UTF-8",
                "PYTHONDONTWRITEBYTECODE": "1"}

    def portside(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups",
                "--inh-caps=-all", "--", self.venv.portside, *args]
        proc = subprocess.run(argv, env=self.env(), cwd=self.home, capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=180)
        proc.out = proc.stdout.decode(errors="replace")  # type: ignore[attr-defined]
        proc.err = proc.stderr.decode(errors="replace")  # type: ignore[attr-defined]
        if check and proc.returncode != 0:
            raise AssertionError(f"as {self.name}: portside {' '.join(args)} exited "
                                 f"{proc.returncode}:\n{proc.err}\n{proc.out[-2000:]}")
        return proc


def remove_user(name: str) -> None:
    """Remove a test user with their processes and home (a crashed session's leftover too)."""
    try:
        info = pwd.getpwnam(name)
    except KeyError:
        return
    for _ in range(50):
        victims = []
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    if entry.stat().st_uid == info.pw_uid:
                        victims.append(int(entry.name))
                except OSError:
                    continue
        if not victims:
            break
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    subprocess.run(["userdel", "-r", name], capture_output=True)


def remove_group(name: str) -> None:
    try:
        grp.getgrnam(name)
    except KeyError:
        return
    subprocess.run(["groupdel", name], capture_output=True)


class SocketUsers:
    """The session's users and the socket's group; ``close()`` undoes all of it."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self.venv: UserVenv | None = None
        st = socket.stat()
        self.saved = (st.st_uid, st.st_gid, st.st_mode & 0o7777)
        for name in (ALLOWED, DENIED):
            remove_user(name)
        remove_group(GROUP)
        subprocess.run(["groupadd", GROUP], check=True, capture_output=True)
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", "-G", GROUP, ALLOWED],
                       check=True, capture_output=True)
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", DENIED], check=True,
                       capture_output=True)
        os.chown(socket, 0, grp.getgrnam(GROUP).gr_gid)
        os.chmod(socket, 0o660)
        self.venv = UserVenv()
        self.allowed = User(ALLOWED, self.venv)
        self.denied = User(DENIED, self.venv)

    def close(self) -> None:
        for name in (ALLOWED, DENIED):
            remove_user(name)
        remove_group(GROUP)
        if self.socket.exists():
            uid, gid, mode = self.saved
            os.chown(self.socket, uid, gid)
            os.chmod(self.socket, mode)
        if self.venv is not None:
            self.venv.remove()
