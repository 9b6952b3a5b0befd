"""The user namespace itself: one holder per user, shared by racing commands, revived from a
running container, separate users kept apart, the single-id fallback, the one-line errors when
the kernel refuses user namespaces, and nothing left once a user resets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import nothing_left

pytestmark = [pytest.mark.rootless, pytest.mark.slow]


def holder(user) -> dict | None:
    """The user's namespace holder as its pid file describes it, if that process lives."""
    path = user.runtime_dir() / "userns.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(doc["pid"], 0)
    except ProcessLookupError:
        return None
    return doc


def test_racing_commands_start_one_holder(rl, tmp_path):
    assert holder(rl.user) is None  # the previous test's reset stopped it
    # the commands inherit a descriptor (as under `flock FILE portside ...`): the holder, which
    # outlives them, must not keep it
    inherited = os.open(tmp_path / "lock", os.O_RDWR | os.O_CREAT)
    try:
        procs = [rl.user.popen([str(rl.user.venv.bin / "portside"), "info", "--format",
                                "{{.NamespaceHolder}}"], env=rl.env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, pass_fds=(inherited,)) for _ in range(4)]
        pids = {p.communicate(timeout=60)[0].decode().strip() for p in procs}
    finally:
        os.close(inherited)
    assert all(p.returncode == 0 for p in procs)
    doc = holder(rl.user)
    assert doc is not None and pids == {str(doc["pid"])}
    cmdline = Path(f"/proc/{doc['pid']}/cmdline").read_bytes().split(b"\0")
    assert cmdline[0] == b"portside-ns-userns"
    assert os.stat(f"/proc/{doc['pid']}").st_uid == rl.user.uid
    assert sorted(os.listdir(f"/proc/{doc['pid']}/fd")) == ["0", "1", "2"]


def test_a_killed_holder_is_revived_from_a_running_container(rl):
    rl("image", "bootstrap", "busybox", "-t", "busybox:latest", "-q")
    rl("run", "-d", "--name", "keep", "--net", "none", "busybox", "sh", "-c",
       "echo alive > /state; sleep 120")
    before = holder(rl.user)
    os.kill(before["pid"], signal.SIGKILL)
    assert nothing_left_of(before["pid"])
    # the namespaces live on in the container's processes: the next command joins them there
    assert rl("exec", "keep", "cat", "/state").out == "alive\n"
    after = holder(rl.user)
    assert after["pid"] != before["pid"] and after["ns"] == before["ns"]
    rl("rm", "-f", "keep")


def nothing_left_of(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.02)
    return False


def test_two_users_do_not_see_each_other(rl, rl2):
    rl("image", "bootstrap", "busybox", "-t", "mine:1", "-q")
    rl("run", "-d", "--name", "first", "--net", "none", "mine:1", "sleep", "60")
    assert rl2("images", "-q").out == ""
    assert rl2("ps", "-aq").out == ""
    # nor by their default roots: each user's store is in their own home, closed to others
    assert rl2("images", "-q", env={"PORTSIDE_ROOT": ""}).out == ""
    denied = rl2("images", env={"PORTSIDE_ROOT": str(rl.root)}, check=False)
    assert denied.returncode == 125 and denied.err == (
        f"Error: cannot use the store {rl.root}: permission denied (it belongs to another "
        f"user?)\n")
    assert os.stat(rl.root).st_mode & 0o777 == 0o700
    one, two = holder(rl.user), holder(rl2.user)
    assert one["ns"]["user"] != two["ns"]["user"]
    assert one["uid_map"][1][1] != two["uid_map"][1][1]  # disjoint subordinate ranges
    rl("rm", "-f", "first")


def test_single_id_fallback_without_a_subordinate_range(rl0):
    first = rl0("image", "bootstrap", "busybox", "-t", "busybox:latest", "-q")
    warnings = [line for line in first.err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "portside-rl0 has no subordinate ids in /etc/subuid" in \
        warnings[0] and "squashed to 0" in warnings[0]
    assert "warning" not in rl0("images").err  # said once, when the namespace was made
    info = json.loads(rl0("info", "--format", "json").out)
    assert info["IDMappings"]["Mapping"] == "single"
    assert info["IDMappings"]["UIDMap"] == [{"ContainerID": 0, "HostID": rl0.user.uid,
                                            "Size": 1}]
    out = rl0("run", "--rm", "--net", "none", "busybox", "sh", "-c",
              "id -u; cat /proc/self/uid_map; ls -ln /etc/passwd").out.splitlines()
    assert out[0] == "0" and out[1].split() == ["0", str(rl0.user.uid), "1"]
    # an image whose files belong to uid 1000: squashed to 0 (the user) on extraction
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        member = tarfile.TarInfo("owned-by-1000")
        member.uid = member.gid = 1000
        member.size = 3
        tf.addfile(member, io.BytesIO(b"hi\n"))
    rl0.sh("cat > ~/rootfs.tar", input=buf.getvalue())
    rl0("import", str(rl0.path("rootfs.tar")), "owned:1")
    files = list((rl0.root / "snapshots").rglob("owned-by-1000"))
    assert files and (files[0].stat().st_uid, files[0].stat().st_gid) == (rl0.user.uid,
                                                                          rl0.user.gid)
    line = rl0("run", "--rm", "--net", "none", "-u", "1000", "busybox", "true", check=False)
    assert line.returncode == 125
    assert "maps a single id" in line.err and line.err.count("\n") == 1, line.err
    assert rl0("ps", "-aq").out == ""


#: Runs argv (a command as the test user) inside a fresh user namespace of root's, mapping every
#: id to itself, in which user.max_user_namespaces is 0: the limit applies to namespaces made
#: inside, and root may change it there (this host's root lacks CAP_SYS_RESOURCE outside).
_NO_USERNS = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(w)
    if libc.unshare(0x10000000) != 0:
        os._exit(90)
    os.read(r, 1)
    with open("/proc/sys/user/max_user_namespaces", "w") as f:
        f.write("0")
    os.execvp(sys.argv[1], sys.argv[1:])
os.close(r)
import time
time.sleep(0.05)
for name in ("uid_map", "gid_map"):
    with open(f"/proc/{pid}/{name}", "w") as f:
        f.write("0 0 4294967295")
os.write(w, b"x")
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_disabled_user_namespaces_are_one_line_naming_the_setting(rl0):
    # a fresh runtime folder: no holder to join, so a namespace must be made
    fresh = rl0.path("xdg")
    rl0.sh(f"mkdir -m 700 -p '{fresh}'")
    user = rl0.user
    proc = subprocess.run([sys.executable, "-c", _NO_USERNS, *user.argv(
        [str(user.venv.bin / "portside"), "ps"])], capture_output=True, text=True,
        env=rl0.env(XDG_RUNTIME_DIR=str(fresh)), cwd=user.home, timeout=60)
    assert proc.returncode == 125, (proc.returncode, proc.stderr)
    assert proc.stderr == ("Error: user namespaces are disabled (user.max_user_namespaces = "
                           "0): rootless portside needs them; as root: sysctl -w "
                           "user.max_user_namespaces=15000\n")
    assert not list(fresh.glob("portside/*.json"))  # no holder was recorded


def test_nothing_is_left_after_reset(rl):
    rl("image", "bootstrap", "busybox", "-t", "busybox:latest", "-q")
    rl("run", "-d", "--name", "one", "--net", "none", "busybox", "sleep", "120")
    rl("run", "-d", "--name", "two", "--net", "none", "-v", "vol:/v", "busybox", "sleep", "120")
    rl("rm", "-f", "one")
    assert holder(rl.user) is not None
    reset = rl("system", "reset", "--force")
    assert "Removed 1 container(s), 1 image(s), 1 volume(s)" in reset.out
    assert "stopped the user namespace" in reset.out
    assert nothing_left(rl.user) == []
    assert holder(rl.user) is None
    assert sorted(p.name for p in rl.root.iterdir()) == []
    # and the store works again from nothing
    assert rl("images", "-q").out == ""
