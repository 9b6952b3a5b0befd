"""The namespace holder: one long-lived process per user that owns their user namespace.

Vocabulary:

* a **holder** is a sleeping process whose only job is to keep namespaces alive. It is named
  (``userns`` holds the user namespace and a mount namespace made inside it; a per-user network
  namespace can be held the same way by a holder started from inside the user namespace) and
  described by a *pid file* in the user's runtime folder (:func:`portside.engine.rootless.runtime_dir`)::

      {"pid": 4242, "ns": {"user": 4026532811, "mnt": 4026532812}, "mapping": "full",
       "uid_map": [[0, 1001, 1], [1, 100000, 65536]], "gid_map": [...], "warning": ""}

  ``ns`` records the namespaces' inode numbers: a namespace is joined only through a descriptor
  whose inode is the recorded one, so a recycled pid can never make us join somebody else's.
* **ensure** returns the holder's description, starting it when it is not running. Starting
  happens under an ``flock`` on ``NAME.lock`` next to the pid file, so two commands racing start
  one holder; the one that waited finds it running.
* **join** ``setns(2)``\\ s the calling process into the holder's namespaces. The kernel refuses to
  move a multi-threaded process into a user namespace (EINVAL): join before starting threads.

The ids inside the user namespace: 0 is the user, 1..N their subordinate ranges from
``/etc/subuid`` and ``/etc/subgid`` (written by ``newuidmap``/``newgidmap``, the setuid helpers of
Debian's ``uidmap`` package). Without the helpers or without a range, the namespace maps only the
user's own id (*single* mapping, written by the user directly): containers then see only uid 0,
image files are owned by 0, and the command that started the holder says so once.

Where the kernel refuses unprivileged user namespaces, :func:`explain_unshare_failure` names the
setting to change in one line.

If the holder dies while containers still run (their monitors keep the namespace alive), the next
:func:`ensure` finds one of those processes, joins through it and starts a new holder inside the
same namespaces, so running containers stay reachable.
"""

from __future__ import annotations

import errno as errno_
import json
import os
from pathlib import Path

from portside.engine.errors import RuntimeFailure

from . import ENV, host_ids, runtime_dir

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Callable

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
_NS_FLAGS = {"user": CLONE_NEWUSER, "mnt": CLONE_NEWNS, "net": CLONE_NEWNET}

#: Each holder: the namespaces it keeps (the order they are joined in).
HOLDERS: dict[str, tuple[str, ...]] = {"userns": ("user", "mnt")}

#: How long a starting holder may take to answer.
_START_TIMEOUT = 10.0


class UserNamespaceUnavailable(RuntimeFailure):
    """The kernel (or its configuration) gives this user no user namespace."""


# ------------------------------------------------------------------------------ subordinate ids


def subordinate_ranges(path: str, user: str, uid: int) -> list[tuple[int, int]]:
    """The ``(start, count)`` ranges ``path`` (/etc/subuid or /etc/subgid) gives ``user``
    (named or numeric), in file order; empty when there is none."""
    ranges = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) != 3 or parts[0] not in (user, str(uid)):
                    continue
                if parts[1].isdigit() and parts[2].isdigit() and int(parts[2]) > 0:
                    ranges.append((int(parts[1]), int(parts[2])))
    except OSError:
        pass
    return ranges


def plan_mapping(uid: int, gid: int, user: str, *, subuid: str = "/etc/subuid",
                 subgid: str = "/etc/subgid",
                 which: Callable[[str], str | None] | None = None) -> dict[str, Any]:
    """The id maps the namespace will get: ``{"mapping", "uid_map", "gid_map", "warning"}``.

    ``full`` when both helpers exist and the user has both ranges (0 -> the user, then each range
    in turn from 1); ``single`` otherwise, with the one-line warning that says why.
    """
    import shutil

    which = which or shutil.which
    uids = subordinate_ranges(subuid, user, uid)
    gids = subordinate_ranges(subgid, user, uid)
    helpers = which("newuidmap") and which("newgidmap")
    if helpers and uids and gids:
        def table(own: int, ranges: list[tuple[int, int]]) -> list[list[int]]:
            out, inside = [[0, own, 1]], 1
            for start, count in ranges[:339]:  # the kernel takes at most 340 lines
                out.append([inside, start, count])
                inside += count
            return out
        return {"mapping": "full", "uid_map": table(uid, uids), "gid_map": table(gid, gids),
                "warning": ""}
    if not helpers:
        why = "newuidmap/newgidmap are not installed (Debian's uidmap package)"
    else:
        missing = " and ".join(p for p, r in ((subuid, uids), (subgid, gids)) if not r)
        why = f"{user} has no subordinate ids in {missing}"
    return {"mapping": "single", "uid_map": [[0, uid, 1]], "gid_map": [[0, gid, 1]],
            "warning": f"{why}: containers run with a single id (uid 0 is you) and file owners "
                       f"in images are squashed to 0; for every id, as root: usermod "
                       f"--add-subuids 100000-165535 --add-subgids 100000-165535 {user}"}


# ------------------------------------------------------------------------------ failures


def _read_sysctl(name: str) -> str | None:
    try:
        with open("/proc/sys/" + name.replace(".", "/")) as f:
            return f.read().strip()
    except OSError:
        return None


def explain_unshare_failure(step: str, err: int,
                            read_sysctl: Callable[[str], str | None] = _read_sysctl) -> str:
    """One line saying why the kernel refused a user namespace (``step`` ``user``: creating it;
    ``namespaces``: using it) and which setting changes that."""
    fix = "rootless portside needs them; as root: sysctl -w"
    if step == "user":
        if err in (errno_.ENOSPC, errno_.EUSERS) and read_sysctl("user.max_user_namespaces") == "0":
            return f"user namespaces are disabled (user.max_user_namespaces = 0): {fix} " \
                   f"user.max_user_namespaces=15000"
        if err == errno_.EPERM and read_sysctl("kernel.unprivileged_userns_clone") == "0":
            return f"unprivileged user namespaces are disabled " \
                   f"(kernel.unprivileged_userns_clone = 0): {fix} " \
                   f"kernel.unprivileged_userns_clone=1"
        if err in (errno_.ENOSPC, errno_.EUSERS):
            limit = read_sysctl("user.max_user_namespaces")
            return f"too many user namespaces (user.max_user_namespaces = {limit}): raise it, " \
                   f"as root: sysctl -w user.max_user_namespaces=15000"
    if err == errno_.EPERM and read_sysctl("kernel.apparmor_restrict_unprivileged_userns") == "1":
        return "user namespaces are restricted by AppArmor " \
               "(kernel.apparmor_restrict_unprivileged_userns = 1): rootless portside needs " \
               "them; as root: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (or " \
               "give this Python an AppArmor profile that allows userns)"
    return f"cannot create a user namespace: {os.strerror(err)}"


# ------------------------------------------------------------------------------ pid files


def _paths(name: str) -> tuple[Path, Path]:
    base = Path(runtime_dir())
    return base / f"{name}.json", base / f"{name}.lock"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("ns"), dict) else None


def _write(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def _open_ns(pid: int, want: dict[str, int]) -> dict[str, int] | None:
    """Descriptors of ``pid``'s namespaces, each checked against its recorded inode; None when
    the process is gone or its namespaces are not those."""
    fds: dict[str, int] = {}
    try:
        for kind, ino in want.items():
            fd = os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
            fds[kind] = fd
            if os.fstat(fd).st_ino != ino:
                raise ProcessLookupError
    except OSError:
        for fd in fds.values():
            os.close(fd)
        return None
    return fds


def _ns_inodes(pid: int, kinds: tuple[str, ...]) -> dict[str, int]:
    return {kind: os.stat(f"/proc/{pid}/ns/{kind}").st_ino for kind in kinds}


def status(name: str = "userns") -> dict[str, Any] | None:
    """The running holder's description (see the module's docstring), or None."""
    pid_file, _ = _paths(name)
    doc = _read(pid_file)
    if doc is None:
        return None
    fds = _open_ns(int(doc.get("pid") or 0), {k: int(v) for k, v in doc["ns"].items()})
    if fds is None:
        return None
    for fd in fds.values():
        os.close(fd)
    return doc


# ------------------------------------------------------------------------------ joining

_libc = None


def _setns(fd: int, kind: str) -> None:
    global _libc
    import ctypes

    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(ctypes.c_int(fd), ctypes.c_int(_NS_FLAGS[kind])) != 0:
        err = ctypes.get_errno()
        if err == errno_.EINVAL and kind == "user" and _threads() > 1:
            raise RuntimeFailure("cannot join the user namespace from a process with threads "
                                 "(the kernel refuses): use portside.engine.rootless.proxy")
        raise RuntimeFailure(f"cannot join the {kind} namespace: {os.strerror(err)}")


def _threads() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 1


def _join_fds(fds: dict[str, int], order: tuple[str, ...]) -> None:
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = None
    try:
        for kind in order:
            if kind in fds:
                _setns(fds[kind], kind)
    finally:
        for fd in fds.values():
            os.close(fd)
    # joining a mount namespace moves us to its root: come back to the same path there
    if cwd is not None:
        try:
            os.chdir(cwd)
        except OSError:
            pass


def join(doc: dict[str, Any], name: str = "userns") -> bool:
    """Join the namespaces of the holder ``doc`` describes; False when it no longer holds them.

    Raises:
        RuntimeFailure: the kernel refused (a threaded process, for one).
    """
    fds = _open_ns(int(doc.get("pid") or 0), {k: int(v) for k, v in doc["ns"].items()})
    if fds is None:
        return False
    _join_fds(fds, HOLDERS.get(name, tuple(fds)))
    return True


# ------------------------------------------------------------------------------ starting


def _spawn(name: str, map_first: bool, flags: int,
           mapped: Callable[[int], None] | None, keep: int = -1,
           hide: tuple[str, ...] = ()) -> int:
    """Start a holder process (see :mod:`.holder_process`); returns the sleeper's pid.
    ``mapped(pid)`` writes the id maps of the fresh user namespace of ``pid``; ``keep``, a
    descriptor the sleeper inherits and holds open for as long as it lives; ``hide``, paths
    covered by an empty tmpfs in the new mount namespace."""
    import sys

    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    here = os.path.dirname(os.path.abspath(__file__))
    boot = ("import sys; sys.path.insert(0, %r); import holder_process; "
            "sys.exit(holder_process._main(sys.argv))") % here
    argv = [sys.executable, "-S", "-I", "-c", boot, name, str(go_r), str(ready_w),
            "1" if map_first else "0", str(flags)] + ([str(keep)] if keep >= 0 else []) + \
        [f"hide:{path}" for path in hide]
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        os.set_inheritable(go_r, True)
        os.set_inheritable(ready_w, True)
        if keep >= 0:
            os.set_inheritable(keep, True)
        first = os.posix_spawn(sys.executable, argv, os.environ,
                               file_actions=[(os.POSIX_SPAWN_DUP2, null, 0),
                                             (os.POSIX_SPAWN_DUP2, null, 1),
                                             (os.POSIX_SPAWN_DUP2, null, 2),
                                             (os.POSIX_SPAWN_CLOSE, go_w),
                                             (os.POSIX_SPAWN_CLOSE, ready_r)],
                               setsid=True)
    except OSError:
        for fd in (go_r, go_w, ready_r, ready_w, null):
            os.close(fd)
        raise
    for fd in (go_r, ready_w, null):
        os.close(fd)
    reader = _Lines(ready_r)
    try:
        if map_first:
            line = reader.next()
            if line != "map":
                _fail(line)
            try:
                assert mapped is not None
                mapped(first)
            except BaseException:
                os.close(go_w)
                go_w = -1
                raise
            os.write(go_w, b"go\n")
        line = reader.next()
        if not line.startswith("ok "):
            _fail(line)
        return int(line.split()[1])
    finally:
        if go_w >= 0:
            os.close(go_w)
        reader.close()
        try:
            os.waitpid(first, 0)
        except ChildProcessError:
            pass


class _Lines:
    def __init__(self, fd: int) -> None:
        self.fd, self.buf = fd, b""

    def next(self) -> str:
        import select
        import time

        deadline = time.monotonic() + _START_TIMEOUT
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise RuntimeFailure("the namespace holder did not start in time")
            chunk = os.read(self.fd, 256)
            if not chunk:
                return ""
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode(errors="replace").strip()

    def close(self) -> None:
        os.close(self.fd)


def _fail(line: str) -> None:
    parts = line.split()
    if len(parts) == 3 and parts[0] == "error" and parts[2].isdigit():
        raise UserNamespaceUnavailable(explain_unshare_failure(parts[1], int(parts[2])))
    raise RuntimeFailure("the namespace holder failed to start")


def _write_maps(pid: int, plan: dict[str, Any]) -> None:
    """Give the fresh user namespace of ``pid`` its ids (newuidmap/newgidmap, or the single
    mapping a user may write alone); falls back to the single mapping when a helper fails."""
    import subprocess

    if plan["mapping"] == "full":
        problems = []
        for helper, key in (("newuidmap", "uid_map"), ("newgidmap", "gid_map")):
            args = [helper, str(pid)] + [str(n) for line in plan[key] for n in line]
            proc = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True)
            if proc.returncode != 0:
                problems.append((proc.stderr or proc.stdout or f"{helper} failed").strip()
                                .splitlines()[-1])
                break
        if not problems:
            return
        uid, gid = host_ids()
        plan.update(mapping="single", uid_map=[[0, uid, 1]], gid_map=[[0, gid, 1]],
                    warning=f"{problems[0]}: containers run with a single id (uid 0 is you) and "
                            f"file owners in images are squashed to 0")
    # One line of our own id each; gid_map only after setgroups is denied (user_namespaces(7)).
    with open(f"/proc/{pid}/uid_map", "w") as f:
        f.write("0 %d 1\n" % plan["uid_map"][0][1])
    with open(f"/proc/{pid}/setgroups", "w") as f:
        f.write("deny")
    with open(f"/proc/{pid}/gid_map", "w") as f:
        f.write("0 %d 1\n" % plan["gid_map"][0][1])


def hidden_paths(controllers_file: str = "/sys/fs/cgroup/unified/cgroup.controllers"
                 ) -> tuple[str, ...]:
    """What the user's mount namespace covers with an empty tmpfs: the cgroup v2 hierarchy of a
    hybrid host when it holds a controller. crun refuses to run beside one ("cgroups in hybrid
    mode not supported"), even for a container that has no cgroup, as a rootless container
    without delegation has none; runc and the engine read nothing there without a cgroup."""
    try:
        with open(controllers_file, "rb") as f:
            busy = bool(f.read().strip())
    except OSError:
        return ()
    return (os.path.dirname(controllers_file),) if busy else ()


def _survivor(doc: dict[str, Any], name: str) -> int:
    """A live process of ours still inside the dead holder's namespaces (a container's monitor),
    or 0."""
    want = {k: int(v) for k, v in doc["ns"].items()}
    me = os.getuid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != me:
                continue
            if all(os.stat(f"/proc/{entry.name}/ns/{k}").st_ino == v for k, v in want.items()):
                return int(entry.name)
        except OSError:
            continue
    return 0


def _user_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        return os.environ.get("USER") or str(uid)


def ensure(name: str = "userns") -> tuple[dict[str, Any], bool]:
    """The holder's description, starting the holder when none runs.

    Returns:
        ``(doc, started)``: ``started`` is True when this call started it (its ``warning``, if
        any, is then for the caller to show once).
    Raises:
        UserNamespaceUnavailable: the kernel gives this user no user namespace (the message names
            the setting to change).
        RuntimeFailure: the holder could not be started.
    """
    if name != "userns":
        raise RuntimeFailure(f"unknown namespace holder: {name}")
    doc = status(name)
    if doc is not None:
        return doc, False
    import fcntl

    pid_file, lock_file = _paths(name)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        doc = status(name)  # a racing command may have started it while we waited
        if doc is not None:
            return doc, False
        old = _read(pid_file)
        survivor = _survivor(old, name) if old is not None else 0
        if old is not None and survivor:
            # containers still run in the old namespaces: hold those again, from inside
            fds = _open_ns(survivor, {k: int(v) for k, v in old["ns"].items()})
            if fds is not None:
                uid, gid = host_ids()
                _join_fds(fds, HOLDERS[name])
                os.environ[ENV] = "%d:%d:%s" % (uid, gid, old.get("mapping", "full"))
                pid = _spawn(name, False, 0, None)
                doc = dict(old, pid=pid)
                _write(pid_file, doc)
                return doc, False
        uid, gid = host_ids()
        plan = plan_mapping(uid, gid, _user_name(uid))
        flags = 0
        for kind in HOLDERS[name][1:]:
            flags |= _NS_FLAGS[kind]
        pid = _spawn(name, True, flags, lambda child: _write_maps(child, plan),
                     hide=hidden_paths())
        doc = {"pid": pid, "ns": _ns_inodes(pid, HOLDERS[name]), **plan}
        _write(pid_file, doc)
        return doc, True
    finally:
        os.close(fd)


def enter(warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Join this user's namespace, starting its holder when none runs (see :func:`ensure`).
    A warning about the mapping is passed to ``warn`` (default: one line on stderr) when this
    call started the holder. Returns the holder's description; nothing happens inside already.

    Raises:
        UserNamespaceUnavailable, RuntimeFailure: see :func:`ensure` and :func:`join`.
    """
    from . import in_namespace

    if in_namespace():
        return status() or {}
    for _ in range(3):  # the holder may die between ensure() and join() (system reset racing)
        doc, started = ensure()
        if in_namespace():
            return doc  # ensure() joined the namespaces of a dead holder to hold them again
        uid, gid = host_ids()
        if join(doc):
            os.environ[ENV] = "%d:%d:%s" % (uid, gid, doc.get("mapping", "full"))
            if started and doc.get("warning"):
                if warn is None:
                    import sys

                    sys.stderr.write(f"portside: warning: {doc['warning']}\n")
                else:
                    warn(doc["warning"])
            return doc
    raise RuntimeFailure("the namespace holder keeps exiting")


def stop(name: str = "userns", timeout: float = 5.0) -> bool:
    """Stop the holder (its namespaces go once no container process is left in them);
    returns whether one was running."""
    import signal
    import time

    pid_file, _ = _paths(name)
    doc = status(name)
    if doc is not None:
        pid = int(doc["pid"])
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while status(name) is not None and time.monotonic() < deadline:
            time.sleep(0.01)
    try:
        pid_file.unlink()
    except FileNotFoundError:
        pass
    return doc is not None
