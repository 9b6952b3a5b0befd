"""``exec`` without an OCI runtime: join the running container and apply its process security.

``runc exec`` costs ~50 ms, most of it runc compiling the container's seccomp profile again in
every call (bench/bench_floor.py). This module starts the process itself, doing what runc's
``setns`` init does (libcontainer's ``setns_init_linux.go`` and ``finalizeNamespace``), in the
same order, with the same results:

1. the new process is forked into the container's pid namespace (the caller's thread points its
   ``pid_for_children`` at it for the one ``fork``, then back);
2. in the child: it writes itself into every cgroup of the container's init (each v1 hierarchy
   and the unified one on a hybrid host: the ``cgroup_paths`` of runc's state), sets the process's
   ``oomScoreAdj``, joins the container's other namespaces through ``/proc/PID/ns/*`` (user first,
   then ipc, uts, net, mnt, cgroup: libcontainer's order; joining the mount namespace puts the
   process at the container's root, which runc pivoted to), joins the session keyring
   ``_ses.<id>``, sets the rlimits, ``no_new_privs``, and loads the seccomp filter -- before the
   capabilities are dropped when ``no_new_privs`` is off (loading needs ``CAP_SYS_ADMIN`` then),
   as the last step before ``execve`` when it is on;
3. it changes directory (before the user switch, again after it on EACCES), drops the bounding
   set, keeps its capabilities over ``setgroups``/``setgid``/``setuid``, hands its standard streams
   to the new user as runc does, sets the effective/permitted/inheritable and ambient sets, and
   ``execve``\\s the command found in the container's ``PATH``; 127/126 (or 255 for a failure
   after the command was found) with runc's message on the process's stderr when it cannot.

The seccomp profile is compiled once per container start (libseccomp through ``ctypes``, the
library runc itself links) and kept next to the bundle (``seccomp.bpf``). The program loaded is
the one runc loads: libseccomp's export of the same rules, added in the same order with the same
calls, behind a stub that answers ``ENOSYS`` for syscall numbers above the highest the profile
names on each architecture (runc's ``patchbpf``: newer syscalls fail as "not implemented", so
the C library falls back, rather than with the profile's default error).

Whatever this cannot make equal to ``runc exec`` raises :class:`Unsupported` from
:func:`prepare`, and the caller runs ``runc exec`` instead: a terminal (``-t``), a user namespace
(rootless containers), AppArmor or SELinux labels, a personality, a time namespace, seccomp flags,
listeners or notify actions, architectures outside x86/ARM, an environment entry without ``=``,
a runtime other than runc, or runc state it does not recognise.
"""

from __future__ import annotations

import os

import _signal  # signal's C module: the signal module itself imports enum (~3 ms)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from pathlib import Path
    from typing import Any, Callable, NoReturn, Sequence

#: Capability numbers (linux/capability.h), by the names OCI specs use.
CAPABILITIES = {name: i for i, name in enumerate((
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE"))}

RLIMITS = {"RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3,
           "RLIMIT_CORE": 4, "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7,
           "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11,
           "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15}

# setns(2) flags, in the order libcontainer joins them (configs.NamespaceTypes()); "pid" is
# joined by the parent's fork, "mount" puts the process at the container's root.
_JOIN_ORDER = (("user", "user", 0x10000000), ("ipc", "ipc", 0x08000000),
               ("uts", "uts", 0x04000000), ("network", "net", 0x40000000),
               ("mount", "mnt", 0x00020000), ("cgroup", "cgroup", 0x02000000))
_CLONE_NEWPID = 0x20000000

_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
_PR_SET_KEEPCAPS, _PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS = 8, 24, 38
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, _PR_CAP_AMBIENT_CLEAR_ALL = 47, 2, 4
_KEYCTL_JOIN_SESSION_KEYRING = 1
_CAPSET_V3 = 0x20080522
_SYS_KEYCTL = {"x86_64": 250, "aarch64": 219}


class Unsupported(Exception):
    """The fast path cannot promise the same process as ``runc exec``; the message says why."""


class Prepared:
    """Everything the child needs, worked out in the parent (see :func:`prepare`)."""

    container_id: str
    pid: int  # the container's init (host pid)
    start: int  # its start time (clock ticks after boot: /proc/PID/stat's 22nd field)
    joined: set[str]  # OCI namespace kinds to join
    cgroups: list[str]  # the init's cgroup folders, one per hierarchy
    args: list[str]
    env: list[str]
    cwd: str
    uid: int
    gid: int
    groups: list[int]
    rlimits: list[tuple[int, int, int]]
    bad_rlimit: str | None
    nnp: bool
    oom_score_adj: int | None
    bounding: int  # capability masks
    effective: int
    permitted: int
    inheritable: int
    ambient: list[int]
    bpf: bytes  # the seccomp program, b"" for none
    keyring: bool  # join the session keyring _ses.<id>

    def __init__(self, **kw: Any) -> None:
        for key in self.__annotations__:
            setattr(self, key, kw.pop(key))
        if kw:
            raise TypeError(f"unknown fields {sorted(kw)}")


# ----------------------------------------------------------------------------------- prepare


def prepare(container_id: str, bundle: Path, state_dir: Path, rootfs: Path,
            process: dict[str, Any], runtime_name: str) -> Prepared:
    """Check that the fast path can run ``process`` in the container and gather what it needs.

    Args:
        container_id: the container's id (runc's, and the session keyring's name).
        bundle: its bundle folder (``config.json``; the compiled filter is cached here).
        state_dir: runc's state folder of the container (``state.json``).
        rootfs: the container's root as mounted on the host (``/etc/passwd`` for ``HOME``).
        process: the OCI process to run (see ``Lifecycle.exec_process``).
        runtime_name: the OCI runtime the container was started with.
    Raises:
        Unsupported: a case left to ``runc exec`` (see the module's docstring).
    """
    import json

    if runtime_name != "runc":
        raise Unsupported(f"containers of {runtime_name} exec through it")
    if os.geteuid() != 0 or not _initial_user_namespace():
        raise Unsupported("rootless: runc exec joins through the user namespace")
    if os.uname().machine not in _SYS_KEYCTL:
        raise Unsupported(f"a {os.uname().machine} host")
    if process.get("terminal"):
        raise Unsupported("a terminal is relayed by runc exec")
    for key in ("apparmorProfile", "selinuxLabel", "ioPriority", "scheduler", "execCPUAffinity"):
        if process.get(key):
            raise Unsupported(f"process.{key} is applied by runc exec")
    env = process.get("env") or []
    if any("=" not in e or e.startswith("=") or "\0" in e for e in env):
        raise Unsupported("an environment entry that is not NAME=VALUE")
    try:
        state = json.loads((state_dir / "state.json").read_bytes())
        spec_st = os.stat(bundle / "config.json")
    except (OSError, ValueError) as exc:
        raise Unsupported(f"no runc state: {exc}") from exc
    cfg = state.get("config") or {}
    if cfg.get("no_pivot_root") or state.get("rootless") or cfg.get("app_armor_profile") \
            or cfg.get("process_label") or cfg.get("uid_mappings") or cfg.get("gid_mappings"):
        raise Unsupported("a runc configuration the fast path does not reproduce")
    pid = int(state.get("init_process_pid") or 0)
    start = int(state.get("init_process_start") or -1)
    if pid <= 0 or _start_time(pid) != start:
        raise Unsupported("the container's init is not the one runc started")
    kinds = [ns.get("type") for ns in cfg.get("namespaces") or []]
    names = {"NEWUSER": "user", "NEWIPC": "ipc", "NEWUTS": "uts", "NEWNET": "network",
             "NEWPID": "pid", "NEWNS": "mount", "NEWCGROUP": "cgroup"}
    if any(k not in names for k in kinds):
        raise Unsupported(f"namespaces {kinds}")
    joined = {names[k] for k in kinds}
    if "user" in joined:
        raise Unsupported("a user namespace (rootless) is joined by runc exec")
    if "pid" not in joined or "mount" not in joined:
        raise Unsupported("a container without its own pid and mount namespaces")
    spec = json.loads((bundle / "config.json").read_bytes())
    linux = spec.get("linux") or {}
    if linux.get("personality") or any(ns.get("type") == "time"
                                       for ns in linux.get("namespaces") or []):
        raise Unsupported("a personality or time namespace")
    seccomp = linux.get("seccomp")
    bpf = b""
    if seccomp and (seccomp.get("defaultAction") or seccomp.get("syscalls")):
        bpf = cached_filter(bundle, seccomp, spec_st)
    caps = process.get("capabilities") or {}
    user = process.get("user") or {}
    uid, gid = int(user.get("uid", 0)), int(user.get("gid", 0))
    if user.get("umask") is not None:
        raise Unsupported("process.user.umask")
    if not any(e.startswith("HOME=") for e in env):
        from portside.engine.rootfs import home_directory

        env = list(env) + ["HOME=" + home_directory(rootfs, uid)]
    cgroups = [p for _, p in sorted((state.get("cgroup_paths") or {}).items())]
    if not all(os.access(os.path.join(p, "cgroup.procs"), os.W_OK) for p in cgroups):
        raise Unsupported("a cgroup runc did not make (runc exec skips it)")
    return Prepared(
        container_id=container_id, pid=pid, start=start, joined=joined, cgroups=cgroups,
        args=[str(a) for a in process.get("args") or []],
        env=env, cwd=process.get("cwd") or "", uid=uid, gid=gid,
        groups=[int(g) for g in user.get("additionalGids") or []],
        rlimits=[(RLIMITS[r["type"]], int(r["soft"]), int(r["hard"]))
                 for r in process.get("rlimits") or [] if r.get("type") in RLIMITS],
        bad_rlimit=next((r["type"] for r in process.get("rlimits") or []
                         if r.get("type") not in RLIMITS), None),
        nnp=bool(process.get("noNewPrivileges")),
        oom_score_adj=process.get("oomScoreAdj"),
        bounding=_cap_mask(caps.get("bounding")), effective=_cap_mask(caps.get("effective")),
        permitted=_cap_mask(caps.get("permitted")),
        inheritable=_cap_mask(caps.get("inheritable")),
        ambient=[CAPABILITIES[c] for c in caps.get("ambient") or [] if c in CAPABILITIES],
        bpf=bpf, keyring=not cfg.get("no_new_keyring"))


# ----------------------------------------------------------------------------------- cache
#
# What the CLI's quick ``exec`` (engine/quickexec.py) needs of a container, kept next to it by
# the first ``exec`` through the engine: the Prepared of the container's own process, less its
# command, with the files it was worked out from and their identity (inode, size, modification
# time). marshal: the standard library's fastest reader, with no import at all.

_CACHE_VERSION = 1
#: the cache's name in the container's folder
CACHE_NAME = "exec.cache"


def _file_key(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def source_keys(paths: Sequence[str]) -> list[tuple[str, tuple[int, int, int] | None]]:
    """The identity of each file :func:`save_base` is to depend on: taken *before* they are
    read, so that a file rewritten meanwhile leaves a cache that no longer matches it."""
    return [(p, _file_key(p)) for p in paths]


def save_base(cache_path: str, prep: Prepared, spec_env: list[str],
              sources: Sequence[tuple[str, tuple[int, int, int] | None]]) -> None:
    """Keep ``prep`` (made from the container's own process, whose environment was
    ``spec_env`` before :func:`prepare` added ``HOME``) for :func:`load_base`, valid while each
    file of ``sources`` (:func:`source_keys`, taken before ``prep`` was made) is unchanged."""
    import marshal

    fields = {k: getattr(prep, k) for k in Prepared.__annotations__ if k != "args"}
    home = prep.env[len(spec_env)] if len(prep.env) > len(spec_env) else None
    doc = {"version": _CACHE_VERSION, "sources": list(sources),
           "fields": fields, "spec_env": list(spec_env), "home": home}
    tmp = f"{cache_path}.{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            marshal.dump(doc, f)
        os.replace(tmp, cache_path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def base_current(cache_path: str) -> bool:
    """Whether :func:`load_base` would answer from ``cache_path``."""
    return _read_base(cache_path) is not None


def _read_base(cache_path: str) -> dict[str, Any] | None:
    import marshal

    try:
        with open(cache_path, "rb") as f:
            doc = marshal.load(f)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if type(doc) is not dict or doc.get("version") != _CACHE_VERSION:
        return None
    for path, key in doc["sources"]:  # a file that was missing must still be missing
        if _file_key(path) != (tuple(key) if key is not None else None):
            return None
    return doc


def load_base(cache_path: str, args: list[str], env: Sequence[str] = (),
              workdir: str = "") -> Prepared | None:
    """The Prepared of ``exec`` of ``args`` with ``env`` entries and ``workdir`` (no other
    option), from the container's cache: what :func:`prepare` makes of
    ``Lifecycle.exec_process``'s process for the same command line. None when the cache is
    missing or any file it was made from changed, or the container's init is not the one it
    names."""
    doc = _read_base(cache_path)
    if doc is None:
        return None
    fields = dict(doc["fields"])
    if _start_time(fields["pid"]) != fields["start"]:
        return None
    from portside.engine.envvars import merge_env

    merged = merge_env(doc["spec_env"], list(env))  # as Lifecycle.exec_process merges them
    if any("=" not in e or e.startswith("=") or "\0" in e for e in merged):
        return None  # prepare() declines these: the engine says why
    if doc["home"] is not None and not any(e.startswith("HOME=") for e in merged):
        merged.append(doc["home"])
    fields["env"] = merged
    if workdir:
        fields["cwd"] = workdir
    return Prepared(args=[str(a) for a in args], **fields)


def _initial_user_namespace() -> bool:
    """Whether this process is in the host's user namespace (rootless mode runs the engine in
    one of its own, where runc's state describes the container differently)."""
    try:
        with open("/proc/self/uid_map", "rb") as f:
            return f.read().split() == [b"0", b"0", b"4294967295"]
    except OSError:
        return False


def _start_time(pid: int) -> int:
    """The start time of process ``pid`` while it runs; -2 when it is gone or has died (a
    zombie: runc then calls the container stopped and refuses to exec, and its namespaces
    are being taken down)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return -2
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return -2
    return int(fields[19])


def _cap_mask(names: Sequence[str] | None) -> int:
    mask = 0
    for name in names or ():
        if name in CAPABILITIES:  # runc ignores (with a warning) the names it does not know
            mask |= 1 << CAPABILITIES[name]
    return mask


# ----------------------------------------------------------------------------------- seccomp


def cached_filter(bundle: Path, seccomp: dict[str, Any], spec_st: os.stat_result) -> bytes:
    """The container's compiled filter, from ``bundle/seccomp.bpf`` when it was compiled from
    this ``config.json`` (same inode, size and modification time), else compiled and kept."""
    key = f"{spec_st.st_ino}:{spec_st.st_size}:{spec_st.st_mtime_ns}\n".encode()
    path = bundle / "seccomp.bpf"
    try:
        data = path.read_bytes()
        if data.startswith(key):
            return data[len(key):]
    except OSError:
        pass
    from . import seccomp_bpf

    try:
        program = seccomp_bpf.compile_filter(seccomp)
    except seccomp_bpf.Unsupported as exc:
        raise Unsupported(str(exc)) from exc
    tmp = path.with_name(f".seccomp.bpf.{os.getpid()}")
    try:
        tmp.write_bytes(key + program)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only bundle: compile again next time
    return program


# ----------------------------------------------------------------------------------- spawn


def _exec_process_class() -> type:
    import subprocess

    class ExecProcess(subprocess.Popen):
        """The process the fast path started through ``Popen`` (a caller that wants pipes, or
        has threads); a death by signal N reads as 128+N, the status ``runc exec`` gives."""

        def _handle_exitstatus(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
            super()._handle_exitstatus(*args, **kwargs)  # type: ignore[misc]
            if self.returncode is not None and self.returncode < 0:
                self.returncode = 128 - self.returncode

    ExecProcess.__module__ = __name__
    ExecProcess.__qualname__ = "ExecProcess"
    return ExecProcess


def __getattr__(name: str) -> Any:
    # ExecProcess subclasses Popen: made on first use, so that a caller that never needs it
    # (the CLI's quick exec, which starts the process with clone3) does not import subprocess
    if name == "ExecProcess":
        return _exec_process()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _exec_process() -> type:
    cls = globals().get("ExecProcess")
    if cls is None:
        cls = globals()["ExecProcess"] = _exec_process_class()
    return cls


def spawn(prep: Prepared, *, detach: bool = False,
          stdio: Sequence[Any] = (None, None, None)) -> Any:
    """Start the prepared process; returns it as a ``Popen``-like object (``pid``, ``wait()``,
    ``poll()``, ``returncode``; ``stdin``/``stdout``/``stderr`` for pipes) whose status is the
    command's.

    ``stdio`` entries are what ``Popen`` takes. When each is a descriptor, ``None`` or
    ``subprocess.DEVNULL`` and this process runs one thread (the CLI), the process is made with
    ``clone3`` straight into the container's cgroup (:func:`_spawn_direct`); otherwise (pipes
    to read, or a caller with threads, where only ``fork`` is safe) through ``Popen``.

    With ``detach`` the returned object has finished (status 0) once the command was started
    (or 126/127/255 when it could not be); the command itself runs on, parented by init once
    this process exits, as after ``runc exec -d``.
    """
    if _direct_stdio(stdio) and _one_thread():
        try:
            return _spawn_direct(prep, detach=detach, stdio=stdio)
        except _NoClone3:
            pass
    return _spawn_popen(prep, detach=detach, stdio=stdio)


DEVNULL = -3  # subprocess.DEVNULL, without importing subprocess


def _direct_stdio(stdio: Sequence[Any]) -> bool:
    return all(s is None or type(s) is int and (s >= 0 or s == DEVNULL) for s in stdio)


def _one_thread() -> bool:
    """Whether this process runs a single thread: ``clone3`` copies the calling thread only,
    and whatever lock another thread held (the C library's allocator) would stay held in the
    child; only ``fork``, which takes those locks around the copy, is safe then."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


class _NoClone3(Exception):
    """The kernel has no ``clone3`` (before 5.3) or no ``CLONE_INTO_CGROUP`` (before 5.7)."""


class _Joined:
    """What a new process joins the container through, opened in the parent and closed when the
    ``with`` block ends: the namespaces, the cgroup files (or, for ``clone3``, the unified
    hierarchy's folder), and the status pipe whose read end tells ``exec -d`` how the start
    went (the caller's after the block, :meth:`started`; closed with the rest on an error).

    Raises:
        Unsupported: the container's init has ended (checked once all is held open).
    """

    def __init__(self, prep: Prepared, cgroup_file: str) -> None:
        self.fds: list[int] = []
        self.status_r = -1
        try:
            self._open_all(prep, cgroup_file)
            # The init must still be the one runc started now that its namespaces are held.
            if _start_time(prep.pid) != prep.start:
                raise Unsupported("the container's init is gone")
            self.status_r, self.status_w = os.pipe2(os.O_CLOEXEC)
            self.fds.append(self.status_w)
        except BaseException:
            self._close(failed=True)
            if _start_time(prep.pid) != prep.start:  # the init ended meanwhile
                raise Unsupported("the container's init is gone") from None
            raise

    def _open_all(self, prep: Prepared, cgroup_file: str) -> None:
        self.ns: list[tuple[int, int]] = []
        self.cgroups: list[int] = []
        for kind, proc_name, flag in _JOIN_ORDER:
            if kind in prep.joined:
                self.ns.append((self.open(f"/proc/{prep.pid}/ns/{proc_name}"), flag))
        self.pid_ns = self.open(f"/proc/{prep.pid}/ns/pid")
        self.own_pid_ns = self.open("/proc/thread-self/ns/pid_for_children")
        self.cgroup_dir = -1
        for path in prep.cgroups:
            if cgroup_file == "tasks" and os.path.exists(os.path.join(path, "cgroup.controllers")):
                # the unified hierarchy: clone3 places the process (see _spawn_direct)
                self.cgroup_dir = self.open(path, os.O_RDONLY | os.O_DIRECTORY)
            else:
                self.cgroups.append(self.open(os.path.join(path, cgroup_file), os.O_WRONLY))

    def open(self, path: str, flags: int = os.O_RDONLY) -> int:
        """A descriptor closed with the others when the block ends."""
        fd = os.open(path, flags | os.O_CLOEXEC)
        self.fds.append(fd)
        return fd

    def enter_pid_namespace(self, libc: Any) -> None:
        """Point this thread's ``pid_for_children`` at the container (for the one new process)."""
        import ctypes

        if libc.setns(self.pid_ns, _CLONE_NEWPID) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into the container's pid namespace: {os.strerror(err)}")

    def leave_pid_namespace(self, libc: Any) -> None:
        import ctypes

        if libc.setns(self.own_pid_ns, _CLONE_NEWPID) != 0:  # pragma: no cover - cannot fail
            raise OSError(ctypes.get_errno(), "setns back to our pid namespace")

    def __enter__(self) -> _Joined:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        self._close(failed=kind is not None)

    def _close(self, *, failed: bool) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []
        if failed and self.status_r >= 0:
            os.close(self.status_r)
            self.status_r = -1

    def started(self, proc: Any, args: list[str], detach: bool) -> Any:
        """What :func:`spawn` returns for ``proc`` once the block has closed the parent's write
        end of the status pipe: ``exec -d``'s :class:`_Detached`, else ``proc``."""
        if detach:
            return _Detached(proc, self.status_r, args)
        os.close(self.status_r)
        return proc


def _spawn_popen(prep: Prepared, *, detach: bool, stdio: Sequence[Any]) -> Any:
    """The process through ``Popen`` (``fork``): the child writes itself into every cgroup of
    the container's init (``cgroup.procs`` of each hierarchy)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    with _Joined(prep, "cgroup.procs") as joined:
        child = _Child(prep, libc, joined.ns, joined.cgroups,
                       joined.status_w if detach else -1)
        joined.enter_pid_namespace(libc)
        try:
            proc = _exec_process()(
                ["/"], executable="/", preexec_fn=child.run, close_fds=True, env={},
                stdin=stdio[0], stdout=stdio[1], stderr=stdio[2])
        finally:
            joined.leave_pid_namespace(libc)
    return joined.started(proc, prep.args, detach)


_CLONE_INTO_CGROUP = 0x200000000
_ALL_SIGNALS = _signal.valid_signals()  # without the two glibc keeps (32, 33)
_SYS_CLONE3 = 435  # the same number on every architecture


class DirectProcess:
    """A process :func:`_spawn_direct` started: this process's child, waited for with
    ``waitpid``; a death by signal N reads as 128+N, as ``runc exec``'s status."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int, args: list[str]) -> None:
        self.pid, self.args = pid, args
        self.returncode: int | None = None

    def _status(self, status: int) -> int:
        code = os.waitstatus_to_exitcode(status)
        self.returncode = 128 - code if code < 0 else code
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if timeout is not None:
            raise ValueError("DirectProcess.wait takes no timeout")
        while self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, 0)
            except ChildProcessError:  # somebody else reaped it: runc exec's "unknown" status
                self.returncode = 255
                break
            if pid == self.pid:
                self._status(status)
        return self.returncode

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = 255
                return self.returncode
            if pid == self.pid:
                self._status(status)
        return self.returncode


def _spawn_direct(prep: Prepared, *, detach: bool, stdio: Sequence[Any]) -> Any:
    """The process made with ``clone3(CLONE_INTO_CGROUP)``: born in the container's cgroup of
    the unified hierarchy, and moved into each v1 hierarchy's by writing to its ``tasks``.

    Why: a process that moves itself through ``cgroup.procs`` takes the kernel's global
    threadgroup lock for writing, which waits for an RCU grace period -- 6 to 15 ms on this
    project's machine, a good part of a whole ``exec``. Born in the cgroup it takes nothing;
    moving its one thread through ``tasks`` (v1) skips that lock, and for a process of one
    thread (every child of ``clone3`` is) it is the same move. runc's ``setns`` process ends up
    in the same cgroups (the equality tests read ``/proc/self/cgroup``).

    The child runs Python without the interpreter's after-fork bookkeeping, which is why only a
    caller of one thread comes here (:func:`spawn`): the child then finds every lock as its
    parent left it, free, and runs only :class:`_Child`'s code, which imports nothing, then
    ``execve`` or ``_exit``.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    # PyDLL: the call keeps the GIL, so the child comes back into Python holding it
    raw = ctypes.PyDLL(None, use_errno=True)
    raw.syscall.restype = ctypes.c_long
    with _Joined(prep, "tasks") as joined:
        fds = [joined.open("/dev/null", os.O_RDONLY if i == 0 else os.O_WRONLY)
               if s == DEVNULL else (i if s is None else s) for i, s in enumerate(stdio)]
        child = _Child(prep, libc, joined.ns, joined.cgroups,
                       joined.status_w if detach else -1, stdio=fds)
        args = _CloneArgs(ctypes)(
            flags=_CLONE_INTO_CGROUP if joined.cgroup_dir >= 0 else 0,
            exit_signal=17,  # SIGCHLD
            cgroup=max(joined.cgroup_dir, 0))
        # Every signal is blocked from before the clone until the parent is back in its own
        # pid namespace, and in the child until just before execve (it restores the caller's
        # mask): a signal's Python handler cannot run in the child between clone3's return
        # and _Child.run (it would raise into the parent's code, in the child), nor leave the
        # parent in the container's pid namespace.
        # The collector is off too: a collection in the child could run the caller's
        # finalizers (a buffered file's flush would write its data twice).
        import gc

        collecting = gc.isenabled()
        gc.disable()
        child.sigmask = _signal.pthread_sigmask(_signal.SIG_BLOCK, _ALL_SIGNALS)
        try:
            joined.enter_pid_namespace(libc)
            try:
                pid = raw.syscall(ctypes.c_long(_SYS_CLONE3), ctypes.byref(args),
                                  ctypes.c_size_t(ctypes.sizeof(args)))
                if pid == 0:
                    try:
                        child.run()  # execve or _exit
                    finally:
                        os._exit(255)
                err = ctypes.get_errno()
            finally:
                joined.leave_pid_namespace(libc)  # the parent only: the child never returns
        finally:
            _signal.pthread_sigmask(_signal.SIG_SETMASK, child.sigmask)
            if collecting:
                gc.enable()
        if pid < 0:
            # ENOSYS, EINVAL (no CLONE_INTO_CGROUP), EOPNOTSUPP, EPERM (a seccomp filter of
            # the caller's own that denies clone3): fork through Popen instead
            if err in (38, 22, 95, 1):
                raise _NoClone3(os.strerror(err))
            raise OSError(err, f"clone3: {os.strerror(err)}")
    return joined.started(DirectProcess(pid, prep.args), prep.args, detach)


def _CloneArgs(ctypes: Any) -> Any:
    """``struct clone_args`` up to ``cgroup`` (CLONE_ARGS_SIZE_VER2, 88 bytes)."""
    class CloneArgs(ctypes.Structure):
        _fields_ = [(name, ctypes.c_uint64) for name in (
            "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size",
            "tls", "set_tid", "set_tid_size", "cgroup")]

    return CloneArgs


class _Detached:
    """What ``exec -d`` returns: finished once the command runs (status 0) or could not be
    started (126/127/255, as the child reported on its status pipe). The command itself runs
    on; a thread of this process reaps it when it ends (a long-lived caller, a notebook's
    kernel, would otherwise keep a zombie), and init does once this process exits."""

    def __init__(self, proc: Any, status_r: int, args: list[str]) -> None:
        import threading

        with os.fdopen(status_r, "rb") as f:
            report = f.read()  # EOF at execve (the write end is close-on-exec)
        self.returncode = report[0] if report else 0
        self.pid, self.args = proc.pid, args
        self.stdin = self.stdout = self.stderr = None
        threading.Thread(target=proc.wait, name=f"reap-exec-{proc.pid}", daemon=True).start()

    def wait(self, timeout: float | None = None) -> int:
        return self.returncode

    def poll(self) -> int:
        return self.returncode


#: every signal but SIGKILL, SIGSTOP and the two glibc keeps for itself (32, 33)
_RESETTABLE_SIGNALS = tuple(n for n in range(1, 65) if n not in (9, 19, 32, 33))


class _Child:
    """The code that runs in the forked child, between ``fork`` and ``execve``: everything it
    needs is made here, in the parent, so the child imports nothing and reads no file but
    ``/proc/self/setgroups``, ``/dev/null``'s status and the command's path."""

    def __init__(self, prep: Prepared, libc: Any, ns_fds: list[tuple[int, int]],
                 cg_fds: list[int], status_w: int, stdio: Sequence[int] | None = None) -> None:
        import ctypes
        import resource

        self.p, self.libc, self.ns_fds, self.cg_fds = prep, libc, ns_fds, cg_fds
        self.status_w = status_w
        self.stdio = stdio  # the descriptors to make 0, 1 and 2 (clone3's child: Popen's does)
        self.sigmask: set[int] | None = None  # clone3's child: the caller's signal mask
        self.sys_keyctl = _SYS_KEYCTL[os.uname().machine]
        self.ctypes, self.resource = ctypes, resource
        self.setrlimit = resource.setrlimit
        try:
            with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
                self.last_cap = int(f.read())
        except (OSError, ValueError):
            self.last_cap = 40
        if prep.bpf:
            n = len(prep.bpf) // 8
            self.filter_buf = ctypes.create_string_buffer(prep.bpf, len(prep.bpf))

            class SockFprog(ctypes.Structure):
                _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

            self.fprog = SockFprog(n, ctypes.addressof(self.filter_buf))
        header = (ctypes.c_uint32 * 2)(_CAPSET_V3, 0)
        data = (ctypes.c_uint32 * 6)(
            prep.effective & 0xFFFFFFFF, prep.permitted & 0xFFFFFFFF,
            prep.inheritable & 0xFFFFFFFF, prep.effective >> 32, prep.permitted >> 32,
            prep.inheritable >> 32)
        self.cap_header, self.cap_data = header, data
        self.keyring = f"_ses.{prep.container_id}".encode() if prep.keyring else b""
        self.env = dict(e.split("=", 1) for e in prep.env)
        path = next((e[5:] for e in prep.env if e.startswith("PATH=")), "")
        self.path_dirs = path.split(":")
        self.ulong = ctypes.c_ulong

    # Each step writes runc's words for what failed to the process's stderr and exits 255
    # (runc exec's status when its init fails), or 126/127 when the command is not there.

    def _fail(self, what: str, err: int | None = None, code: int = 255) -> NoReturn:
        if err is not None:
            what = f"{what}: {os.strerror(err).lower()}"
        try:
            os.write(2, f"exec failed: unable to start container process: {what}\n".encode())
        except OSError:
            pass
        if self.status_w >= 0:  # exec -d: the caller reads why (nobody reads it otherwise)
            try:
                os.write(self.status_w, bytes((code,)))
            except OSError:
                pass
        os._exit(code)

    def _check(self, rc: int, what: str) -> None:
        if rc != 0:
            self._fail(what, self.ctypes.get_errno())

    def _prctl(self, *args: int) -> int:
        ul = self.ulong
        return self.libc.prctl(*(ul(a) for a in args), *(ul(0) for _ in range(5 - len(args))))

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - nothing may return into Popen's child
            self._fail(f"{type(exc).__name__}: {exc}")
        os._exit(255)

    def _run(self) -> None:
        p, libc = self.p, self.libc
        if self.stdio is not None:
            # a source among 0-2 that is not its own target is copied out of the way first
            sources = [fd if fd == i or fd > 2 else os.dup(fd) for i, fd in enumerate(self.stdio)]
            for target, fd in enumerate(sources):
                if fd != target:
                    os.dup2(fd, target)  # inheritable, as Popen's child makes them
                else:
                    os.set_inheritable(fd, True)
        # Descriptors the command must not see (runc's CloseExecFrom), listed while /proc is
        # still the host's: closing a million numbers one by one would cost ~10 ms.
        keep = {self.status_w, *self.cg_fds, *(fd for fd, _ in self.ns_fds)}
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd > 2 and fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass  # the listing's own descriptor, closed by now
        for fd in self.cg_fds:
            try:
                os.write(fd, b"0")
            except OSError as exc:
                self._fail("joining the container's cgroup", exc.errno)
        if p.oom_score_adj is not None:
            try:
                with open("/proc/self/oom_score_adj", "w") as f:
                    f.write(str(int(p.oom_score_adj)))
            except OSError as exc:
                self._fail("setting oom_score_adj", exc.errno)
        for fd, flag in self.ns_fds:
            self._check(libc.setns(fd, flag), f"setns {flag:#x}")
        for fd, _ in self.ns_fds:
            os.close(fd)
        for fd in self.cg_fds:
            os.close(fd)
        if self.keyring:
            rc = libc.syscall(self.ulong(self.sys_keyctl), self.ulong(_KEYCTL_JOIN_SESSION_KEYRING),
                              self.ctypes.c_char_p(self.keyring))
            if rc < 0 and self.ctypes.get_errno() != 38:  # ENOSYS: runc carries on too
                self._fail("unable to join session keyring", self.ctypes.get_errno())
        if p.bad_rlimit:
            self._fail(f"unknown rlimit {p.bad_rlimit}")
        for kind, soft, hard in p.rlimits:
            try:
                self.setrlimit(kind, (soft, hard))
            except (OSError, ValueError) as exc:
                self._fail("setting rlimits", getattr(exc, "errno", None))
        if p.nnp:
            self._check(self._prctl(_PR_SET_NO_NEW_PRIVS, 1), "no_new_privs")
        if p.bpf and not p.nnp:
            self._load_filter()
        # finalizeNamespace: descriptors the command must not see, the working directory, the
        # capabilities around the change of user.
        retry_chdir = False
        if p.cwd:
            try:
                os.chdir(p.cwd)
            except PermissionError:
                retry_chdir = True
            except OSError as exc:
                self._fail(f'chdir to cwd ("{p.cwd}") set in config.json failed', exc.errno)
        for cap in range(self.last_cap + 1):
            if not p.bounding >> cap & 1:
                self._check(self._prctl(_PR_CAPBSET_DROP, cap), "unable to apply bounding set")
        self._check(self._prctl(_PR_SET_KEEPCAPS, 1), "unable to set keep caps")
        self._setup_user()
        if retry_chdir:
            try:
                os.chdir(p.cwd)
            except OSError as exc:
                self._fail(f'chdir to cwd ("{p.cwd}") set in config.json failed', exc.errno)
        self._check(self._prctl(_PR_SET_KEEPCAPS, 0), "unable to clear keep caps")
        self._check(libc.capset(self.cap_header, self.cap_data), "unable to apply caps")
        self._check(self._prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL), "ambient caps")
        for cap in p.ambient:
            self._check(self._prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, cap),
                        "unable to apply caps")
        if p.bpf and p.nnp:
            self._load_filter()
        self._exec()

    def _load_filter(self) -> None:
        self._check(self.libc.prctl(self.ulong(_PR_SET_SECCOMP), self.ulong(_SECCOMP_MODE_FILTER),
                                    self.ctypes.byref(self.fprog), self.ulong(0), self.ulong(0)),
                    "error loading seccomp filter into kernel")

    def _setup_user(self) -> None:
        p = self.p
        try:
            null_rdev = os.stat("/dev/null").st_rdev
        except OSError as exc:
            self._fail("stat /dev/null", exc.errno)
        for fd in (0, 1, 2):
            try:
                st = os.fstat(fd)
            except OSError:
                continue
            if st.st_uid == p.uid or st.st_rdev == null_rdev:
                continue
            try:
                os.fchown(fd, p.uid, st.st_gid)
            except OSError as exc:
                if exc.errno not in (1, 22, 30):  # EPERM, EINVAL, EROFS: runc leaves it
                    self._fail("unable to setup user", exc.errno)
        try:
            with open("/proc/self/setgroups", "rb") as f:
                allowed = f.read().strip() != b"deny"
        except FileNotFoundError:
            allowed = True
        try:
            if allowed:
                os.setgroups(p.groups)
            os.setgid(p.gid)
            os.setuid(p.uid)
        except OSError as exc:
            self._fail("unable to setup user", exc.errno)

    def _exec(self) -> None:
        """Go's ``exec.LookPath`` in the container's ``PATH`` (what runc's Execv does), then
        ``execve``; the status for a command that is not there is the one ``Lifecycle`` gives
        after ``runc exec`` (127 nowhere, 126 found but not executable)."""
        name = self.p.args[0] if self.p.args else ""
        if "/" in name:
            candidates = [name]
        else:
            candidates = [(d or ".") + "/" + name for d in self.path_dirs] if name else []
        found = None
        exists = False
        for path in candidates:
            try:
                st = os.stat(path)
            except OSError:
                continue
            exists = True
            if not (st.st_mode & 0o170000 == 0o040000) and st.st_mode & 0o111:
                found = path
                break
        if found is None:
            if "/" in name:
                reason = "permission denied" if exists else "no such file or directory"
            else:
                reason = "executable file not found in $PATH"
            self._fail(f'exec: "{name}": {reason}', code=126 if exists else 127)
        # runc exec's process ignores no signal, whatever its caller did (nohup ignores SIGHUP,
        # a shell's background job SIGINT and SIGQUIT): neither does this one. A handled signal
        # goes back to its default at execve by itself; an ignored one would stay ignored.
        default = self.ctypes.c_void_p(0)
        for signum in _RESETTABLE_SIGNALS:
            self.libc.signal(signum, default)
        try:
            if self.sigmask is not None:  # clone3's child: the caller's mask back
                _signal.pthread_sigmask(_signal.SIG_SETMASK, self.sigmask)
            os.execve(found, self.p.args, self.env)
        except OSError as exc:
            self._fail(f"exec {found}", exc.errno)
