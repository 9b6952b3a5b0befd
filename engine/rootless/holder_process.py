"""The namespace holder process itself (see :mod:`.userns` for what it is for).

It runs as ``python3 -S -I -c BOOT portside-ns NAME GO_FD READY_FD MAP FLAGS [KEEP_FD]
[hide:PATH...]`` and imports only modules built into the interpreter (and ctypes for
``unshare`` and ``mount``, which Python 3.11's ``os`` lacks):

1. with ``MAP`` = 1, ``unshare(CLONE_NEWUSER)``, then say ``map`` on ``READY_FD`` and wait for the
   caller to write the id maps (newuidmap/newgidmap) and say ``go`` on ``GO_FD``;
2. ``unshare(FLAGS)``: the namespaces to hold (a mount namespace for the user namespace's holder,
   made inside it so that it belongs to it);
3. in that new mount namespace, an empty read-only tmpfs over each ``hide:PATH`` (the cgroup v2
   hierarchy of a hybrid host, which crun refuses to run beside; see
   :mod:`portside.engine.runtime.runtimes`): the host's mount table is not touched;
4. fork: the child says ``ok PID`` and becomes a sleeper (``sleep infinity``, renamed
   ``portside-ns-NAME``) that holds the namespaces for as long as it lives; this process exits,
   so the holder is reparented to init and never a zombie of a long-lived caller.

Every descriptor it inherited but those two (and ``KEEP_FD``, which the sleeper keeps open for
as long as it lives: the per-user network namespace's slirp4netns exits when it closes, see
:mod:`.netns`) is closed first thing. Any failure is reported as
``error STEP ERRNO`` on ``READY_FD``. This file must import as a
top-level module (the boot line puts its folder on ``sys.path``): no relative imports.
"""

import posix
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
#: The first word of the holder's command line (leak checks and ``ps`` find it by it).
MARKER = "portside-ns"


def _say(fd, text):
    posix.write(fd, (text + "\n").encode())


def _unshare(libc, flags):
    import ctypes

    if libc.unshare(ctypes.c_int(flags)) != 0:
        return ctypes.get_errno()
    return 0


def _close_inherited(keep):
    """Close every descriptor above stdio but ``keep``: the holder lives for days, and whatever
    its starter left open would stay open with it (a lock file held by ``flock CMD``, say, would
    stay locked)."""
    for name in posix.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                posix.close(fd)
            except OSError:
                pass  # the listing's own descriptor, already gone


def _main(argv):
    name, go_fd, ready_fd, map_first, flags = argv[1], int(argv[2]), int(argv[3]), argv[4], \
        int(argv[5])
    keep = next((int(a) for a in argv[6:] if a.isdigit()), -1)
    hide = [a[5:] for a in argv[6:] if a.startswith("hide:")]
    import ctypes

    _close_inherited((go_fd, ready_fd, keep))
    posix.chdir("/")  # never pin the caller's folder (it may be on a mount that goes away)
    libc = ctypes.CDLL(None, use_errno=True)
    if map_first == "1":
        err = _unshare(libc, CLONE_NEWUSER)
        if err:
            _say(ready_fd, f"error user {err}")
            return 1
        _say(ready_fd, "map")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = posix.read(go_fd, 64)
            if not chunk:
                return 1  # the caller gave up (it failed to map the ids, or died)
            answer += chunk
        if answer.strip() != b"go":
            return 1
    if flags:
        err = _unshare(libc, flags)
        if err:
            _say(ready_fd, f"error namespaces {err}")
            return 1
    if flags & CLONE_NEWNS:
        for path in hide:
            # best effort: a namespace where the path stays visible only loses crun (the
            # engine then falls back to runc, see runtime/runtimes.py)
            libc.mount(b"tmpfs", path.encode(), b"tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV |
                       MS_NOEXEC, b"size=4k,mode=555")
    pid = posix.fork()
    if pid:
        return 0
    _say(ready_fd, f"ok {posix.getpid()}")
    posix.close(ready_fd)
    posix.close(go_fd)
    for sleep in ("/usr/bin/sleep", "/bin/sleep"):
        try:
            posix.execv(sleep, [f"{MARKER}-{name}", "infinity"])
        except OSError:
            continue
    # no coreutils: hold them from here (a bigger process, same effect)
    import _signal

    _signal.signal(_signal.SIGTERM, _signal.SIG_DFL)
    while True:
        _signal.pause()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main(sys.argv))
