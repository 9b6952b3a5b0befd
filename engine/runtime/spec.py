"""The OCI runtime spec (``config.json``) that tells runc/crun how to isolate one container.

An OCI *bundle* is a directory holding a root filesystem and a ``config.json``. The runtime reads the
JSON and builds the sandbox from it: which namespaces to create (``linux.namespaces``), what to mount
where (``mounts``), which capabilities the process keeps (``process.capabilities``), which devices it
may touch (``linux.resources.devices``, enforced by the devices cgroup), which syscalls it may make
(``linux.seccomp``), and the cgroup limits (``linux.resources``).

The spec alone is permissive; the *defaults* are what make a container safe. :func:`generate_spec`
applies Docker's, so a program behaves the same here as under ``docker run``:

* 14 capabilities (``CHOWN``, ``DAC_OVERRIDE``… ``AUDIT_WRITE``) in the bounding, effective and
  permitted sets — never inheritable or ambient, so an ``execve`` of a non-root binary drops them;
* ``/proc`` files that leak host information masked (bind-mounted over with ``/dev/null`` or an
  empty read-only tmpfs) and the kernel tunables under ``/proc/sys`` read-only;
* a private ``/dev`` tmpfs, ``/dev/shm`` sized by ``--shm-size``, a devices cgroup that denies every
  device except the usual harmless character devices;
* the containers/common seccomp profile, narrowed to the host architecture and the capabilities the
  container really holds.

``privileged`` lifts all of that: every capability, every device, no masks, a writable ``/sys``.

This host has no ``CAP_SYS_RESOURCE`` in its bounding set, so the engine cannot raise a limit above
its own hard limit: rlimits and capabilities are clamped to what the caller holds.

Rootless, :func:`generate_spec` hands its result to :func:`portside.engine.rootless.spec.adapt`,
which removes what a user cannot have (cgroups unless delegated, sysfs without a network namespace
of their own).
"""

from __future__ import annotations

import json
import os
import resource
import stat
from pathlib import Path

from portside.engine.errors import InvalidArgument
from portside.engine.records import field, record

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any


OCI_VERSION = "1.0.2"

#: Capability names in kernel bit order (``CAP_CHOWN`` is bit 0).
ALL_CAPABILITIES = [
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
]

#: Docker's default capability set; its mask is 0x00000000a80425fb.
DEFAULT_CAPABILITIES = [
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP",
    "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
]

MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/sched_debug", "/proc/scsi", "/proc/timer_list",
    "/proc/timer_stats", "/sys/devices/virtual/powercap", "/sys/firmware",
]

READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

DEFAULT_ENV_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

SECCOMP_PROFILE = Path("/usr/share/containers/seccomp.json")

#: Docker's RLIMIT_NOFILE (soft and hard) for container processes.
DEFAULT_NOFILE = 1048576


def _dev(type_: str, major: int | None, minor: int | None, access: str = "rwm",
         allow: bool = True) -> dict[str, Any]:
    rule: dict[str, Any] = {"allow": allow, "type": type_, "access": access}
    # Absent major/minor mean "any" (the spec's wildcard); runc treats -1 the same way.
    if major is not None:
        rule["major"] = major
    if minor is not None:
        rule["minor"] = minor
    return rule


#: Docker's devices cgroup rules: deny everything, allow mknod of any node, then the harmless ones.
DEFAULT_DEVICE_RULES: list[dict[str, Any]] = [
    {"allow": False, "access": "rwm"},
    _dev("c", None, None, "m"),
    _dev("b", None, None, "m"),
    _dev("c", 1, 3),     # /dev/null
    _dev("c", 1, 5),     # /dev/zero
    _dev("c", 1, 7),     # /dev/full
    _dev("c", 1, 8),     # /dev/random
    _dev("c", 1, 9),     # /dev/urandom
    _dev("c", 5, 0),     # /dev/tty
    _dev("c", 5, 1),     # /dev/console
    _dev("c", 5, 2),     # /dev/ptmx
    _dev("c", 136, None),  # /dev/pts/*
    _dev("c", 10, 200),  # /dev/net/tun
    _dev("c", 10, 229),  # /dev/fuse
]


@record
class ProcessConfig:
    """The container's init process: what to run, as whom, where.

    ``env`` entries are ``NAME=value``; a ``PATH`` is added when missing, as Docker does.
    ``rlimits`` maps names such as ``"RLIMIT_NOFILE"`` to ``(soft, hard)``.
    """

    args: list[str]
    env: list[str] = field(default_factory=list)
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = field(default_factory=list)
    terminal: bool = False
    no_new_privileges: bool = False
    rlimits: dict[str, tuple[int, int]] | None = None


@record
class ContainerConfig:
    """Everything :func:`generate_spec` needs to write a bundle's ``config.json``.

    ``mounts`` are extra OCI mounts (``{"destination", "type", "source", "options"}``) placed after
    the defaults, so a volume on ``/dev/shm`` replaces the default one. ``network`` is ``"none"``
    (a new, empty network namespace), ``"host"`` (no network namespace) or the path of a network
    namespace to join (``/run/netns/x``). ``cpus`` is a fraction of CPUs (``1.5``), ``memory`` bytes,
    ``memory_swap`` memory plus swap in bytes (-1: unlimited), ``cpu_shares`` a relative weight
    (see :mod:`.resources` for Docker's rules).
    """

    process: ProcessConfig
    rootfs: str
    hostname: str = ""
    readonly_rootfs: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    privileged: bool = False
    shm_size: int = 64 * 1024**2
    memory: int | None = None
    memory_swap: int | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    pids_limit: int | None = None
    mounts: list[dict[str, Any]] = field(default_factory=list)
    network: str = "none"
    cgroups_path: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    devices: list[dict[str, Any]] = field(default_factory=list)
    device_cgroup_rules: list[dict[str, Any]] = field(default_factory=list)
    hooks: dict[str, Any] = field(default_factory=dict)
    seccomp: bool = True


# --------------------------------------------------------------------------------------------
# capabilities


def normalize_capability(name: str) -> str:
    """Return ``name`` as ``CAP_X`` (accepts ``x``, ``X``, ``CAP_X``, ``ALL``).

    Raises:
        InvalidArgument: for a name the kernel does not know.
    """
    upper = name.strip().upper()
    if upper == "ALL":
        return "ALL"
    bare = upper[4:] if upper.startswith("CAP_") else upper
    if bare not in ALL_CAPABILITIES:
        raise InvalidArgument(f"unknown capability: {name}")
    return "CAP_" + bare


def _bounding_set() -> set[str]:
    """The capabilities this process may still hand out (CapBnd), as ``CAP_X`` names."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    mask = int(line.split()[1], 16)
                    return {"CAP_" + n for i, n in enumerate(ALL_CAPABILITIES) if mask >> i & 1}
    except OSError:
        pass
    return {"CAP_" + n for n in ALL_CAPABILITIES}


def compute_capabilities(cap_add: list[str] | tuple[str, ...] = (),
                         cap_drop: list[str] | tuple[str, ...] = (),
                         privileged: bool = False) -> list[str]:
    """Apply Docker's rules for ``--cap-add``/``--cap-drop`` to its default set.

    ``ALL`` in cap_add starts from every capability; ``ALL`` in cap_drop starts from none, then
    cap_add's named capabilities are added back (Docker: drop ALL, add what you need). The result is
    clamped to this process's bounding set, since the runtime cannot grant what we lack.

    Returns:
        sorted ``CAP_X`` names.
    Raises:
        InvalidArgument: for an unknown capability name.
    """
    add = {normalize_capability(c) for c in cap_add}
    drop = {normalize_capability(c) for c in cap_drop}
    every = {"CAP_" + n for n in ALL_CAPABILITIES}
    if privileged or "ALL" in add:
        base = every
    else:
        base = {"CAP_" + n for n in DEFAULT_CAPABILITIES}
    if privileged:
        caps = set(every)
    elif "ALL" in drop:
        caps = set()
    else:
        caps = base - drop
    # As in Docker, an explicit add wins over a drop of the same capability.
    caps |= add - {"ALL"}
    caps &= _bounding_set()
    return sorted(caps, key=lambda c: ALL_CAPABILITIES.index(c[4:]))


# --------------------------------------------------------------------------------------------
# seccomp

#: Go's GOARCH names, which the containers/common profile uses in ``includes.arches``.
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "i386": "386",
           "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}
_SCMP_ARCH = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64", "arm": "SCMP_ARCH_ARM",
              "386": "SCMP_ARCH_X86", "ppc64le": "SCMP_ARCH_PPC64LE", "s390x": "SCMP_ARCH_S390X",
              "riscv64": "SCMP_ARCH_RISCV64"}


def host_goarch() -> str:
    """The host architecture in Go's spelling (``amd64``, ``arm64``…)."""
    machine = os.uname().machine  # not the platform module: it costs ms to import
    return _GOARCH.get(machine, machine)


def _kernel_at_least(version: str) -> bool:
    def parts(v: str) -> tuple[int, ...]:
        out = []
        for p in v.split("-")[0].split("."):
            digits = "".join(ch for ch in p if ch.isdigit())
            out.append(int(digits or 0))
        return tuple(out)
    return parts(os.uname().release) >= parts(version)


def convert_seccomp(profile: dict[str, Any], capabilities: list[str],
                    arch: str | None = None) -> dict[str, Any]:
    """Turn a Docker/containers-common seccomp profile into the OCI ``linux.seccomp`` form.

    The profile's rules carry ``includes``/``excludes`` conditions on architecture (Go names),
    capabilities and minimum kernel; a rule applies when all of its includes hold and none of its
    excludes do. Only the rules that apply to this container are kept, so e.g. ``chroot`` is allowed
    only while ``CAP_SYS_CHROOT`` is held.

    Args:
        profile: the parsed JSON profile.
        capabilities: the container's ``CAP_X`` names.
        arch: Go architecture name; defaults to the host's.
    Returns:
        ``{"defaultAction", "defaultErrnoRet", "architectures", "syscalls"}``.
    """
    arch = arch or host_goarch()
    caps = set(capabilities)

    def applies(rule: dict[str, Any]) -> bool:
        inc = rule.get("includes") or {}
        exc = rule.get("excludes") or {}
        if inc.get("arches") and arch not in inc["arches"]:
            return False
        if inc.get("caps") and not set(inc["caps"]) <= caps:
            return False
        if inc.get("minKernel") and not _kernel_at_least(inc["minKernel"]):
            return False
        if exc.get("arches") and arch in exc["arches"]:
            return False
        if exc.get("caps") and set(exc["caps"]) & caps:
            return False
        if exc.get("minKernel") and _kernel_at_least(exc["minKernel"]):
            return False
        return True

    architectures: list[str] = []
    scmp = _SCMP_ARCH.get(arch)
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == scmp:
            architectures = [entry["architecture"], *(entry.get("subArchitectures") or [])]
    if not architectures and scmp:
        architectures = [scmp]

    syscalls = []
    for rule in profile.get("syscalls") or []:
        if not applies(rule):
            continue
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        out: dict[str, Any] = {"names": list(names), "action": rule["action"]}
        if rule.get("errnoRet") is not None:
            out["errnoRet"] = rule["errnoRet"]
        if rule.get("args"):
            out["args"] = [{"index": a["index"], "value": a.get("value", 0),
                            "valueTwo": a.get("valueTwo", 0), "op": a["op"]}
                           for a in rule["args"]]
        syscalls.append(out)
    result: dict[str, Any] = {"defaultAction": profile.get("defaultAction", "SCMP_ACT_ERRNO"),
                              "architectures": architectures, "syscalls": syscalls}
    if profile.get("defaultErrnoRet") is not None:
        result["defaultErrnoRet"] = profile["defaultErrnoRet"]
    return result


#: The last profile read: (path, mtime_ns, size) → parsed JSON; a warm engine reads it once.
_PROFILE_CACHE: dict[tuple[str, int, int], dict[str, Any]] = {}


def load_seccomp(capabilities: list[str], path: Path = SECCOMP_PROFILE) -> dict[str, Any] | None:
    """Read and convert the host's default seccomp profile; None when there is none."""
    try:
        st = os.stat(path)
        key = (str(path), st.st_mtime_ns, st.st_size)
        profile = _PROFILE_CACHE.get(key)
        if profile is None:
            profile = json.loads(Path(path).read_text())
            _PROFILE_CACHE.clear()
            _PROFILE_CACHE[key] = profile
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"cannot read seccomp profile {path}: {exc}") from exc
    return convert_seccomp(profile, capabilities)


# --------------------------------------------------------------------------------------------
# rlimits, devices, mounts


def clamp_rlimits(wanted: dict[str, tuple[int, int]]) -> list[dict[str, Any]]:
    """Return OCI rlimits, each clamped to this process's own hard limit.

    Without ``CAP_SYS_RESOURCE`` a process cannot raise a hard limit, so asking runc for more than
    we hold would make ``runc create`` fail with EPERM.
    """
    out = []
    for name, (soft, hard) in wanted.items():
        res = getattr(resource, name.upper(), None)
        if res is not None:
            _, own_hard = resource.getrlimit(res)
            if own_hard != resource.RLIM_INFINITY:
                hard = min(hard, own_hard)
                soft = min(soft, hard)
        out.append({"type": name.upper(), "soft": soft, "hard": hard})
    return out


def host_devices(root: Path = Path("/dev")) -> list[dict[str, Any]]:
    """List the host's device nodes in the OCI ``linux.devices`` form (for ``--privileged``)."""
    devices = []
    skip = {"pts", "shm", "mqueue", "console", "ptmx", "tty", "fd", "core"}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel.split(os.sep)[0] in skip:
            dirnames[:] = []
            continue
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.relpath(path, root) in skip:
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode):
                kind = "c"
            elif stat.S_ISBLK(st.st_mode):
                kind = "b"
            else:
                continue
            devices.append({"path": path, "type": kind, "major": os.major(st.st_rdev),
                            "minor": os.minor(st.st_rdev), "fileMode": stat.S_IMODE(st.st_mode),
                            "uid": st.st_uid, "gid": st.st_gid})
    return devices


def default_mounts(shm_size: int, privileged: bool = False) -> list[dict[str, Any]]:
    """Docker's default mounts: /proc, /dev, /dev/pts, /sys, /sys/fs/cgroup, /dev/mqueue, /dev/shm."""
    ro = [] if privileged else ["ro"]
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", *ro]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", *ro]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size // 1024}k"]},
    ]


def _cgroup_v2() -> bool:
    return Path("/sys/fs/cgroup/cgroup.controllers").exists()


# --------------------------------------------------------------------------------------------
# the spec


def generate_spec(cfg: ContainerConfig) -> dict[str, Any]:
    """Build the OCI runtime spec for ``cfg`` with Docker's defaults.

    Args:
        cfg: the container's configuration.
    Returns:
        the ``config.json`` document as a dict (write it with ``json.dump``).
    Raises:
        InvalidArgument: an unknown capability, an empty command or a bad network mode.
    """
    proc = cfg.process
    if not proc.args:
        raise InvalidArgument("no command specified")
    if cfg.shm_size <= 0:
        raise InvalidArgument(f"invalid shm size: {cfg.shm_size}")
    caps = compute_capabilities(cfg.cap_add, cfg.cap_drop, cfg.privileged)

    env = list(proc.env)
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, DEFAULT_ENV_PATH)
    if proc.terminal and not any(e.startswith("TERM=") for e in env):
        env.append("TERM=xterm")
    rlimits = {"RLIMIT_NOFILE": (DEFAULT_NOFILE, DEFAULT_NOFILE)}
    rlimits.update(proc.rlimits or {})

    process: dict[str, Any] = {
        "terminal": proc.terminal,
        "user": {"uid": proc.uid, "gid": proc.gid},
        "args": list(proc.args),
        "env": env,
        "cwd": proc.cwd or "/",
        # Docker keeps inheritable and ambient empty: a non-root exec drops every capability.
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": clamp_rlimits(rlimits),
        "noNewPrivileges": proc.no_new_privileges,
    }
    if proc.additional_gids:
        process["user"]["additionalGids"] = list(proc.additional_gids)

    namespaces: list[dict[str, str]] = [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
                                        {"type": "mount"}]
    if cfg.network == "none":
        namespaces.append({"type": "network"})
    elif cfg.network == "host":
        pass
    elif cfg.network.startswith("/"):
        namespaces.append({"type": "network", "path": cfg.network})
    else:
        raise InvalidArgument(f"invalid network mode for the runtime: {cfg.network}")
    if _cgroup_v2():
        namespaces.append({"type": "cgroup"})

    resources: dict[str, Any] = {}
    if cfg.privileged:
        resources["devices"] = [{"allow": True, "access": "rwm"}]
    else:
        resources["devices"] = [*DEFAULT_DEVICE_RULES, *cfg.device_cgroup_rules]
    if cfg.memory is not None:
        if cfg.memory < 6 * 1024**2:
            raise InvalidArgument("Minimum memory limit allowed is 6MB")
        resources["memory"] = {"limit": cfg.memory}
    if cfg.memory_swap is not None and cfg.memory_swap != 0:
        resources.setdefault("memory", {})["swap"] = cfg.memory_swap
    if cfg.cpus is not None:
        if cfg.cpus <= 0:
            raise InvalidArgument(f"invalid cpus: {cfg.cpus}")
        resources["cpu"] = {"quota": int(cfg.cpus * 100000), "period": 100000}
    if cfg.cpu_shares:
        resources.setdefault("cpu", {})["shares"] = cfg.cpu_shares
    if cfg.pids_limit is not None and cfg.pids_limit > 0:
        resources["pids"] = {"limit": cfg.pids_limit}

    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "resources": resources,
        "devices": [*(host_devices() if cfg.privileged else []), *cfg.devices],
    }
    if cfg.cgroups_path:
        linux["cgroupsPath"] = cfg.cgroups_path
    if not cfg.privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
        if cfg.seccomp:
            seccomp = load_seccomp(caps)
            if seccomp is not None:
                linux["seccomp"] = seccomp

    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": cfg.rootfs, "readonly": cfg.readonly_rootfs},
        "hostname": cfg.hostname,
        "mounts": [*default_mounts(cfg.shm_size, cfg.privileged), *cfg.mounts],
        "linux": linux,
    }
    if cfg.annotations:
        spec["annotations"] = dict(cfg.annotations)
    if cfg.hooks:
        spec["hooks"] = dict(cfg.hooks)
    from portside.engine.rootless import active

    if active():
        from portside.engine.rootless.cgroups import delegated_base
        from portside.engine.rootless.spec import adapt

        adapt(spec, host_network=cfg.network == "host",
              cgroups_path=cfg.cgroups_path if cfg.cgroups_path and delegated_base() else None)
    return spec


def write_spec(bundle: Path, spec: dict[str, Any]) -> Path:
    """Write ``spec`` to ``bundle/config.json`` atomically and return its path."""
    path = Path(bundle) / "config.json"
    tmp = path.with_name(".config.json.tmp")
    # compact, by json's C encoder (indent= takes the pure-Python one: ms per container)
    tmp.write_text(json.dumps(spec, separators=(",", ":")))
    os.replace(tmp, path)
    return path
