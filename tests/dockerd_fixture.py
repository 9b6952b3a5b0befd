"""A private Docker Engine for tests: Debian's ``dockerd`` on its own socket, data and state.

:class:`Dockerd` starts ``containerd`` and ``dockerd`` (package docker.io) with everything they
write under one temporary folder::

    /tmp/psd-XXXX/            mode 0711, so a test user can reach the socket
        docker.sock           the Engine API (group: root until a test changes it)
        data/  exec/          dockerd's --data-root and --exec-root
        containerd/           its own containerd: root, state, sockets, config

* Its own containerd, always: left to itself dockerd uses a system containerd when
  ``/run/containerd/containerd.sock`` exists, and would then share the host's.
* No networks of its own (``--bridge=none --iptables=false --ip6tables=false``), no registry
  mirrors, no Hub: images come in with ``portside save | portside -c CONTEXT load``.
* ``--config-file`` points at an empty file, so the host's /etc/docker/daemon.json is not read.
* dockerd also writes outside its folders: ``/etc/docker/key.json`` (its identity key) and
  ``/run/docker/plugins`` (plugin discovery). What was not there before is removed by
  :meth:`Dockerd.stop`, which then checks that no process, mount, network namespace or file of
  this engine is left on the host (:meth:`Dockerd.leftovers`).

The client is Debian's ``/usr/bin/docker``, pointed at the socket with ``-H`` and a config
folder of its own (``DOCKER_CONFIG``), so it reads and writes nothing of the user's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

DOCKERD = "/usr/sbin/dockerd"
CONTAINERD = "/usr/bin/containerd"
DOCKER = "/usr/bin/docker"  # Debian's client (another may come first on PATH)

#: Paths outside its folders that dockerd or containerd create on first use; removed at stop
#: when they were not there at start.
_HOST_PATHS = ("/etc/docker/key.json", "/run/docker/plugins", "/run/docker",
               "/run/containerd/s", "/run/containerd")


def available() -> bool:
    return all(Path(p).exists() for p in (DOCKERD, CONTAINERD, DOCKER))


class Dockerd:
    """One private Docker Engine. ``start()`` returns when the API answers; ``stop()`` removes
    every container, stops both daemons, unmounts and deletes the folder, and returns what it
    could not clean (an empty dict when the host is as it was)."""

    def __init__(self, base: str | os.PathLike | None = None) -> None:
        # short: containerd's sockets live under it and a unix socket path has 108 bytes
        self.dir = Path(base) if base else Path(tempfile.mkdtemp(prefix="psd-", dir="/tmp"))
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o711)
        self.sock = self.dir / "docker.sock"
        self.host = f"unix://{self.sock}"
        self.ctd_dir = self.dir / "containerd"
        self.client_config = self.dir / "client"
        self.procs: dict[str, subprocess.Popen] = {}
        self._created: list[str] = []
        self._logs: dict[str, object] = {}

    # ------------------------------------------------------------------ start
    def start(self, timeout: float = 60) -> "Dockerd":
        self._created = [p for p in _HOST_PATHS if not os.path.lexists(p)]
        self.ctd_dir.mkdir(exist_ok=True)
        self.client_config.mkdir(exist_ok=True)
        (self.client_config / "config.json").write_text("{}\n")
        ctd_sock = self.ctd_dir / "containerd.sock"
        config = self.ctd_dir / "config.toml"
        config.write_text("\n".join([
            "version = 2",
            f'root = "{self.ctd_dir / "root"}"',
            f'state = "{self.ctd_dir / "state"}"',
            # no CRI (it would look for CNI and /var/lib/containerd), no /opt plugin folder
            'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt",'
            ' "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]',
            "[grpc]", f'  address = "{ctd_sock}"',
            "[ttrpc]", f'  address = "{ctd_sock}.ttrpc"',
            "[debug]", '  address = ""',
            "[metrics]", '  address = ""',
        ]) + "\n")
        self._spawn("containerd", [CONTAINERD, "--config", str(config)])
        self._wait(lambda: ctd_sock.is_socket(), "containerd", timeout)
        daemon_json = self.dir / "daemon.json"
        daemon_json.write_text("{}\n")
        self._spawn("dockerd", [
            DOCKERD, "--config-file", str(daemon_json),
            "--data-root", str(self.dir / "data"), "--exec-root", str(self.dir / "exec"),
            "--pidfile", str(self.dir / "dockerd.pid"), "-H", self.host,
            "--containerd", str(ctd_sock), "--containerd-namespace", "portside-test",
            "--containerd-plugins-namespace", "portside-test-plugins",
            "--bridge", "none", "--iptables=false", "--ip6tables=false", "--ip-forward=false",
            "--storage-driver", "overlay2", "--log-level", "warn", "--group", "root",
            "--cgroup-parent", f"/{self.dir.name}",
        ])
        self._wait(lambda: self.sock.is_socket() and self.docker("version", check=False)
                   .returncode == 0, "dockerd", timeout)
        return self

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.dir / f"{name}.log", "wb")
        self._logs[name] = log
        # close_fds (the default) matters: a daemon must not inherit the tests' lock file
        self.procs[name] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def _wait(self, ready, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if self.procs[name].poll() is not None:
                break
            time.sleep(0.05)
        tail = self.log(name)[-1500:]
        self.stop()
        raise RuntimeError(f"{name} did not start: {tail}")

    def log(self, name: str = "dockerd") -> str:
        try:
            return (self.dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    # ------------------------------------------------------------------ use
    def env(self) -> dict[str, str]:
        return dict(os.environ, DOCKER_CONFIG=str(self.client_config), DOCKER_HOST=self.host)

    def docker(self, *args: str, input: bytes | None = None, check: bool = True,
               timeout: float = 120) -> subprocess.CompletedProcess:
        """Docker's own CLI against this engine (stdout/stderr captured as text in .out/.err)."""
        proc = subprocess.run([DOCKER, "-H", self.host, *args], input=input,
                              stdin=None if input is not None else subprocess.DEVNULL,
                              capture_output=True, env=self.env(), timeout=timeout)
        proc.out = proc.stdout.decode(errors="replace")  # type: ignore[attr-defined]
        proc.err = proc.stderr.decode(errors="replace")  # type: ignore[attr-defined]
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {proc.returncode}: {proc.err}")
        return proc

    def ids(self, kind: str) -> list[str]:
        """Ids of every container/image/volume/network the engine has now."""
        cmd = {"container": ["ps", "-aq", "--no-trunc"], "image": ["images", "-aq", "--no-trunc"],
               "volume": ["volume", "ls", "-q"],
               "network": ["network", "ls", "-q", "--filter", "type=custom"]}[kind]
        return self.docker(*cmd).out.split()

    def remove_all(self, kind: str, keep: set[str] = frozenset()) -> None:
        ids = [i for i in self.ids(kind) if i not in keep]
        if not ids:
            return
        cmd = {"container": ["rm", "-f", "-v"], "image": ["rmi", "-f"],
               "volume": ["volume", "rm", "-f"], "network": ["network", "rm"]}[kind]
        self.docker(*cmd, *ids, check=False)

    # ------------------------------------------------------------------ stop
    def stop(self) -> dict[str, list[str]]:
        """Stop and clean up; returns what is left on the host (empty when nothing is)."""
        if self.procs.get("dockerd") and self.procs["dockerd"].poll() is None:
            if self.sock.is_socket():
                self.remove_all("container")
        for name in ("dockerd", "containerd"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # shims outlive containerd by design; none should be left, but never leave one behind
        for pid in self._processes():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        for log in self._logs.values():
            log.close()  # type: ignore[attr-defined]
        for mnt in reversed(self._mounts()):
            subprocess.run(["umount", "-l", mnt], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        for path in self._cgroups():  # the --cgroup-parent folders, empty once containers went
            try:
                os.rmdir(path)
            except OSError:
                pass
        for path in self._created:  # most specific first (see _HOST_PATHS)
            if os.path.isdir(path) and not os.path.islink(path):
                try:
                    os.rmdir(path)  # only when empty: never somebody else's files
                except OSError:
                    pass
            elif os.path.lexists(path):
                os.unlink(path)
        return self.leftovers()

    def _mounts(self) -> list[str]:
        prefix = str(self.dir) + "/"
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        return [m for m in points if m.startswith(prefix) or m == str(self.dir)]

    def _processes(self) -> list[str]:
        """Processes of this engine: their command line or working folder is under its folder
        (dockerd, containerd, the shims: ``containerd-shim-runc-v2 … -address …/containerd``)."""
        found = []
        mark = str(self.dir).encode()
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                continue
            if mark in cmd or cwd.startswith(str(self.dir)):
                found.append(pid)
        return found

    def _cgroups(self) -> list[str]:
        base = Path("/sys/fs/cgroup")
        found = [base / self.dir.name] + [d / self.dir.name for d in base.iterdir() if d.is_dir()]
        return [str(p) for p in found if p.is_dir()]

    def leftovers(self) -> dict[str, list[str]]:
        left = {"processes": self._processes(), "mounts": self._mounts(),
                "cgroups": self._cgroups(),
                "files": [p for p in self._created if os.path.lexists(p)]}
        if self.dir.exists():
            left["files"].append(str(self.dir))
        return {k: v for k, v in left.items() if v}


def loaded_images(dockerd: Dockerd) -> list[str]:
    """``repo:tag`` of every image the engine holds."""
    out = dockerd.docker("images", "--format", "{{json .}}").out
    return [f"{d['Repository']}:{d['Tag']}" for d in map(json.loads, out.splitlines())]


# ------------------------------------------------------------------------------ pytest fixtures
# Import these into a conftest (``from dockerd_fixture import dockerd, docker_context, …``).
import pytest  # noqa: E402

CONTEXT = "dockerd-test"
BUSYBOX = "busybox:latest"
DEBIAN = "portside/debian:bookworm"


class DockerContext:
    """The test dockerd as a portside context: ``cli(...)`` runs ``portside -c CONTEXT …``
    (``cli.local(...)`` the default context), ``engine()`` makes the model-API engine."""

    def __init__(self, dockerd: Dockerd, config_home: Path, root: Path, portside: str) -> None:
        self.dockerd = dockerd
        self.name = CONTEXT
        self.config_home = config_home
        self.root = root
        self.portside = portside
        #: image ids loaded by the session fixture (kept between tests)
        self.base_images: set[str] = set()

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ, XDG_CONFIG_HOME=str(self.config_home),
                   PORTSIDE_ROOT=str(self.root), DOCKER_CONFIG=str(self.dockerd.client_config))
        env.pop("PORTSIDE_CONTEXT", None)
        env.update(extra)
        return env

    def run(self, args: list[str], *, context: str | None = CONTEXT, input: bytes | None = None,
            check: bool = True, cwd: str | os.PathLike | None = None, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        argv = [self.portside] + (["-c", context] if context else []) + list(args)
        proc = subprocess.run(argv, input=input, capture_output=True, cwd=cwd,
                              stdin=None if input is not None else subprocess.DEVNULL,
                              env=self.env(**(env or {})), timeout=timeout)
        proc.out = proc.stdout.decode(errors="replace")  # type: ignore[attr-defined]
        proc.err = proc.stderr.decode(errors="replace")  # type: ignore[attr-defined]
        if check and proc.returncode != 0:
            raise AssertionError(f"portside {' '.join(argv[1:])} exited {proc.returncode}:\n"
                                 f"{proc.err}\n{proc.out[-2000:]}")
        return proc

    def cli(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run(list(args), **kw)

    def local(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run(list(args), context=None, **kw)

    def engine(self):
        from portside.engine.docker import DockerEngine

        return DockerEngine(self.dockerd.host, context=self.name)


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory, debian_tar):
    """The session's private Docker Engine, with busybox and Debian (python3) loaded through
    ``portside save | portside -c … load``; stopped at the end, and the host checked."""
    if os.geteuid() != 0:
        pytest.skip("needs root (run `make test` as root)")
    if not available():
        pytest.fail("Debian's docker.io is not installed (make deps installs it)")
    from conftest import PORTSIDE

    engine = Dockerd().start()
    try:
        base = tmp_path_factory.mktemp("docker-context")
        ctx = DockerContext(engine, base / "config", base / "root", PORTSIDE)
        ctx.local("context", "create", CONTEXT, "--docker", f"host={engine.host}",
                  "--description", "the tests' dockerd")
        ctx.local("image", "bootstrap", "busybox", "-t", BUSYBOX, "-q")
        # the shell's `portside save IMG | portside -c CONTEXT load`, two processes and a pipe
        save = subprocess.Popen([PORTSIDE, "save", BUSYBOX], stdout=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env=ctx.env())
        loaded = subprocess.run([PORTSIDE, "-c", CONTEXT, "load"], stdin=save.stdout,
                                capture_output=True, env=ctx.env(), timeout=300)
        save.stdout.close()
        assert save.wait() == 0 and loaded.returncode == 0, loaded.stderr.decode()
        ctx.cli("load", "-i", str(debian_tar))
        ctx.base_images = set(engine.ids("image"))
        yield ctx
    finally:
        left = engine.stop()
        assert not left, f"the test dockerd left resources behind: {left}"


@pytest.fixture
def docker_ctx(dockerd):
    """The session's dockerd for one test: whatever the test leaves there (containers,
    volumes, networks, images other than the base ones) is removed after it, and a test
    that leaves any fails."""
    before = {kind: set(dockerd.dockerd.ids(kind)) for kind in ("container", "volume", "network")}
    yield dockerd
    d = dockerd.dockerd
    left = {}
    for kind in ("container", "volume", "network"):
        extra = set(d.ids(kind)) - before[kind]
        if extra:
            left[kind] = sorted(extra)
            d.remove_all(kind, keep=before[kind])
    extra_images = set(d.ids("image")) - dockerd.base_images
    if extra_images:
        left["image"] = sorted(extra_images)
        d.docker("rmi", "-f", *sorted(extra_images), check=False)
    assert not left, f"the test left these in dockerd: {left}"
