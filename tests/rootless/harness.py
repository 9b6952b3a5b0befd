"""The rootless test harness: test users, an interpreter they can run, and running as them.

pytest stays root; the rootless tests run the CLI, notebooks (nbclient) and a Jupyter server
*as a test user* through ``setpriv``, with a clean environment, as a user on a shared host
would. What that needs, made here:

* **users** — ``portside-rl1`` and ``portside-rl2`` with subordinate ranges (``useradd``
  writes them), and ``portside-rl0`` without (the single-id fallback). Made for the session,
  removed after it with everything they own (processes, home, runtime folder).
* **an interpreter** — the project's venv lives under /root (pyenv), which other users cannot
  execute. The harness makes a venv from Debian's ``/usr/bin/python3`` in a world-readable folder
  outside the repository: its dependencies are installed once into a cached venv
  (``$PORTSIDE_TEST_CACHE/rootless-deps-<key>``, keyed by the Python version and the pinned
  versions, taken from the test venv itself), and each session makes a fresh venv that sees
  them through a ``.pth`` file and gets the project installed **from a wheel** built from this
  checkout (the clone itself may be unreadable to the user: no editable install).
* **/dev/net/tun** and **/dev/fuse** usable by users, as on a standard Debian host (this VM
  ships both 0600); their modes are restored after the session.
"""

from __future__ import annotations

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

#: The user's interpreter needs these (with the test venv's versions).
PACKAGES = ("pyroute2", "zstandard", "pyyaml", "ipython", "ipykernel", "ipywidgets",
            "jupyter_server", "nbclient", "nbformat", "pip")

#: name -> has subordinate ids
USERS = {"portside-rl1": True, "portside-rl2": True, "portside-rl0": False}


def _pins() -> list[str]:
    from importlib.metadata import version

    return sorted(f"{name}=={version(name)}" for name in PACKAGES)


def _system_python_version() -> str:
    return subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version)"],
                          capture_output=True, text=True, check=True).stdout.strip()


def deps_venv() -> Path:
    """The cached venv holding the user's dependencies (made once, atomically)."""
    pins = _pins()
    key = hashlib.sha256(("|".join(pins) + "|" + _system_python_version() + "|v1")
                         .encode()).hexdigest()[:16]
    path = CACHE / f"rootless-deps-{key}"
    if (path / ".complete").exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    part = CACHE / f".rootless-deps-{key}.{os.getpid()}"
    shutil.rmtree(part, ignore_errors=True)
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(part)], check=True)
    installed = subprocess.run([str(part / "bin" / "python"), "-m", "pip", "install", "-q",
                                "--disable-pip-version-check", *pins], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True)
    if installed.returncode != 0:
        raise RuntimeError(f"pip install failed: {installed.stderr[-3000:]}")
    # a venv's scripts name its folder: this one is reached through .pth files only, so its
    # path may change by the rename below
    (part / ".complete").write_text("\n".join(pins) + "\n")
    try:
        os.rename(part, path)
    except OSError:  # another session made it meanwhile
        shutil.rmtree(part, ignore_errors=True)
    _world_readable(path)
    return path


def _world_readable(path: Path) -> None:
    subprocess.run(["chmod", "-R", "a+rX", str(path)], check=True)


def _site_packages(venv: Path) -> Path:
    found = sorted((venv / "lib").glob("python3*/site-packages"))
    assert found, f"no site-packages in {venv}"
    return found[0]


class UserVenv:
    """A fresh venv for the test users: the cached dependencies plus this checkout's wheel."""

    def __init__(self) -> None:
        deps = deps_venv()
        self.dir = Path(tempfile.mkdtemp(prefix="portside-rootless-", dir="/var/tmp"))
        os.chmod(self.dir, 0o755)
        self.venv = self.dir / "venv"
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(self.venv)],
                       check=True)
        # addsitedir, not a bare path: the dependencies' own .pth files are processed too
        (_site_packages(self.venv) / "_portside_test_deps.pth").write_text(
            f"import site; site.addsitedir({str(_site_packages(deps))!r})\n")
        wheels = self.dir / "wheel"
        # --no-build-isolation: setuptools comes from the test venv, no download
        built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                                "--no-build-isolation", "-w", str(wheels), str(REPO)],
                               stdin=subprocess.DEVNULL, cwd=self.dir, capture_output=True,
                               text=True)
        if built.returncode != 0:  # setuptools' warnings otherwise: noise in every session
            raise RuntimeError(f"pip wheel failed: {built.stderr[-3000:]}")
        wheel = next(wheels.glob("portside-*.whl"))
        subprocess.run([str(self.python), "-m", "pip", "install", "-q", "--no-deps",
                        "--disable-pip-version-check", str(wheel)], check=True,
                       stdin=subprocess.DEVNULL, cwd=self.dir)
        subprocess.run([str(self.python), "-m", "compileall", "-q", str(_site_packages(self.venv))],
                       check=True, stdout=subprocess.DEVNULL)
        shutil.rmtree(wheels)
        _world_readable(self.dir)

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------------------------------ users


class TestUser:
    """One test user: run commands as them (``user.run([...])``)."""

    def __init__(self, name: str, venv: UserVenv) -> None:
        info = pwd.getpwnam(name)
        self.name, self.uid, self.gid, self.home = name, info.pw_uid, info.pw_gid, Path(info.pw_dir)
        self.venv = venv

    def __repr__(self) -> str:
        return f"TestUser({self.name!r}, uid={self.uid})"

    def env(self, **extra: str) -> dict[str, str]:
        env = {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name,
               "PATH": f"{self.venv.bin}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
               "LANG": "C.UTF-8", "SHELL": "/bin/sh", "PYTHONDONTWRITEBYTECODE": "1"}
        env.update(extra)
        return env

    def argv(self, args: list[str]) -> list[str]:
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups",
                "--inh-caps=-all", "--", *args]

    def popen(self, args: list[str], *, env: dict[str, str] | None = None,
              cwd: str | Path | None = None, **kw) -> subprocess.Popen:
        return subprocess.Popen(self.argv(args), env=env or self.env(), cwd=cwd or self.home,
                                **kw)

    def run(self, args: list[str], *, input: bytes | None = None, check: bool = True,
            env: dict[str, str] | None = None, cwd: str | Path | None = None,
            timeout: float = 180) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.argv(args), input=input, capture_output=True,
                              stdin=None if input is not None else subprocess.DEVNULL,
                              env=env or self.env(), cwd=cwd or self.home, timeout=timeout)
        proc.out = proc.stdout.decode(errors="replace")  # type: ignore[attr-defined]
        proc.err = proc.stderr.decode(errors="replace")  # type: ignore[attr-defined]
        if check and proc.returncode != 0:
            raise AssertionError(f"as {self.name}: {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.err}\n{proc.out[-2000:]}")
        return proc

    def portside(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run([str(self.venv.bin / "portside"), *args], **kw)

    def processes(self) -> list[str]:
        """``pid cmdline`` of every process this user runs."""
        found = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                if entry.stat().st_uid not in range(self.uid, self.uid + 1) and \
                        not self._subordinate(entry.stat().st_uid):
                    continue
                cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").strip()
            except OSError:
                continue
            found.append(f"{entry.name} {cmd.decode(errors='replace')}")
        return found

    def _subordinate(self, uid: int) -> bool:
        for line in Path("/etc/subuid").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name == self.name:
                start, _, count = rest.partition(":")
                if int(start) <= uid < int(start) + int(count):
                    return True
        return False

    def runtime_dir(self) -> Path:
        return Path(f"/tmp/portside-{self.uid}")


def remove_user(name: str) -> None:
    """Remove a test user and everything they left: processes (theirs and their subordinate
    ids'), home, runtime folder."""
    try:
        info = pwd.getpwnam(name)
    except KeyError:
        return
    ranges = []
    for line in Path("/etc/subuid").read_text().splitlines():
        user, _, rest = line.partition(":")
        if user == name:
            start, _, count = rest.partition(":")
            ranges.append(range(int(start), int(start) + int(count)))
    owners = {info.pw_uid}
    for _ in range(50):
        victims = []
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    uid = entry.stat().st_uid
                except OSError:
                    continue
                if uid in owners or any(uid in r for r in ranges):
                    victims.append(int(entry.name))
        if not victims:
            break
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    subprocess.run(["userdel", "-r", name], capture_output=True)
    shutil.rmtree(f"/tmp/portside-{info.pw_uid}", ignore_errors=True)


def make_user(name: str, subordinate: bool) -> None:
    """Create a test user (removing a leftover of a crashed session first)."""
    remove_user(name)
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True,
                   capture_output=True)
    has = any(line.startswith(name + ":") for line in Path("/etc/subuid").read_text().splitlines())
    if subordinate and not has:
        raise AssertionError(f"useradd gave {name} no subordinate ids (SUB_UID_COUNT=0?)")
    if not subordinate and has:
        for flag, path in (("--del-subuids", "/etc/subuid"), ("--del-subgids", "/etc/subgid")):
            for line in Path(path).read_text().splitlines():
                user, _, rest = line.partition(":")
                if user == name:
                    start, _, count = rest.partition(":")
                    subprocess.run(["usermod", flag,
                                    f"{start}-{int(start) + int(count) - 1}", name],
                                   check=True, capture_output=True)


TUN = Path("/dev/net/tun")
#: fuse-overlayfs' device (the rootless-storage = fuse-overlayfs tests)
FUSE = Path("/dev/fuse")


def open_device(device: Path) -> int | None:
    """Make ``device`` usable by every user (Debian's 0666); returns the mode to restore."""
    try:
        mode = device.stat().st_mode & 0o7777
    except FileNotFoundError:
        return None
    if mode != 0o666:
        os.chmod(device, 0o666)
    return mode


def restore_device(device: Path, mode: int | None) -> None:
    if mode is not None and device.exists():
        os.chmod(device, mode)


def open_tun() -> int | None:
    """Make /dev/net/tun usable by every user (Debian's 0666); returns the mode to restore."""
    return open_device(TUN)


def restore_tun(mode: int | None) -> None:
    restore_device(TUN, mode)
