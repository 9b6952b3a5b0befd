"""Security from inside the container: what a process in a default portside container can see and do.

Each check runs a real container (runc, Docker's defaults from :mod:`spec`) and asserts from the
inside: Docker's 14 capabilities, masked and read-only ``/proc`` paths, only stdio open, no host
mount visible, and the ``-w /proc/self/fd/N`` escape (CVE-2024-21626) refused.
"""

from __future__ import annotations

import os
import shutil

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not shutil.which("runc"), reason="runc not installed"),
]

DOCKER_CAPS = "00000000a80425fb"


def _sh(cli, script: str, *flags: str, check: bool = True):
    return cli("run", "--rm", *flags, "busybox", "sh", "-c", script, check=check)


def test_effective_capabilities_are_dockers_14(cli, busybox_image):
    out = _sh(cli, "grep -E '^Cap(Eff|Prm|Bnd|Inh|Amb)' /proc/self/status").out
    caps = dict(line.split(":\t") for line in out.splitlines())
    assert caps["CapEff"] == caps["CapPrm"] == caps["CapBnd"] == DOCKER_CAPS
    assert int(caps["CapInh"], 16) == 0 and int(caps["CapAmb"], 16) == 0
    dropped = _sh(cli, "grep CapEff /proc/self/status", "--cap-drop", "ALL").out
    assert dropped.split()[1] == "0000000000000000"
    added = _sh(cli, "grep CapEff /proc/self/status", "--cap-add", "NET_ADMIN").out
    assert int(added.split()[1], 16) == int(DOCKER_CAPS, 16) | (1 << 12)


def test_masked_paths_are_empty_or_null(cli, busybox_image):
    script = ("for p in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do "
              "  [ -e $p ] || continue; [ -c $p ] || { echo NOTCHAR $p; continue; }; "
              "  [ -s $p ] && echo NONEMPTY $p; wc -c < $p; done; "
              "for d in /proc/acpi /proc/scsi /sys/firmware; do "
              "  [ -d $d ] && [ -n \"$(ls -A $d)\" ] && echo LISTED $d; done; echo ok")
    out = _sh(cli, script).out
    assert out.strip().endswith("ok")
    assert "NOTCHAR" not in out and "LISTED" not in out and "NONEMPTY" not in out
    assert all(line.strip() in ("0", "ok") for line in out.splitlines())


def test_proc_sys_is_read_only(cli, busybox_image):
    proc = _sh(cli, "echo x > /proc/sys/kernel/domainname", check=False)
    assert proc.returncode != 0 and "Read-only" in proc.err + proc.out
    assert _sh(cli, "grep ' /proc/sys ' /proc/self/mounts").out.split()[3].startswith("ro")


def test_only_stdio_is_open(cli, busybox_image):
    # `ls` itself opens the directory it lists: that is the one fd beyond 0, 1, 2.
    fds = _sh(cli, "ls /proc/self/fd").out.split()
    assert fds[:3] == ["0", "1", "2"] and len(fds) <= 4


def test_workdir_in_proc_self_fd_fails(cli, busybox_image):
    proc = cli("run", "--rm", "-w", "/proc/self/fd/5", "busybox", "pwd", check=False)
    assert proc.returncode != 0
    assert proc.out == ""


def test_no_host_mount_is_visible(cli, busybox_image, portside_root):
    out = _sh(cli, "cat /proc/self/mountinfo").out
    # Field 5 is the mount point as the container sees it (overlay options may name host dirs,
    # as Docker's do; what matters is that no host tree is mounted in).
    points = [line.split()[4] for line in out.splitlines()]
    assert "/" in points
    assert not [p for p in points if str(portside_root) in p or p.startswith(("/work", "/home",
                                                                               "/boot", "/tmp/"))]
    allowed = ("/", "/proc", "/dev", "/sys", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf")
    assert all(p.startswith(allowed) for p in points), points


def test_devices_and_privileges(cli, busybox_image):
    # Docker's default devices and no more (no host disk, no /dev/mem...)
    assert set(_sh(cli, "ls /dev").out.split()) == {
        "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin",
        "stdout", "tty", "urandom", "zero"}
    proc = _sh(cli, "mknod /dev/sda1x b 8 1 && head -c1 /dev/sda1x", check=False)
    assert proc.returncode != 0  # the devices cgroup denies block devices
    ro = cli("run", "--rm", "--read-only", "busybox", "touch", "/x", check=False)
    assert ro.returncode != 0 and "Read-only" in ro.err + ro.out
    assert _sh(cli, "touch /dev/shm/x && echo ok", "--read-only").out == "ok\n"
