"""Unit tests for the OCI runtime spec generator: Docker's defaults, cap-add/drop, seccomp, rlimits."""

from __future__ import annotations

import json
import resource
from pathlib import Path

import pytest

from portside.engine.errors import InvalidArgument
from portside.engine.runtime import spec as spec_mod
from portside.engine.runtime.spec import (ContainerConfig, ProcessConfig, compute_capabilities,
                                          convert_seccomp, generate_spec, write_spec)

pytestmark = pytest.mark.unit

DOCKER_CAP_MASK = 0xA80425FB


def _cfg(**kw) -> ContainerConfig:
    return ContainerConfig(process=ProcessConfig(args=["sh"]), rootfs="/r", **kw)


def _mask(caps: list[str]) -> int:
    return sum(1 << spec_mod.ALL_CAPABILITIES.index(c[4:]) for c in caps)


def test_default_capabilities_match_dockers_mask() -> None:
    s = generate_spec(_cfg())
    caps = s["process"]["capabilities"]
    assert _mask(caps["bounding"]) == DOCKER_CAP_MASK
    assert caps["effective"] == caps["permitted"] == caps["bounding"]
    assert "inheritable" not in caps and "ambient" not in caps


def test_cap_add_and_drop() -> None:
    caps = compute_capabilities(["net_admin"], ["CAP_CHOWN", "mknod"])
    assert "CAP_NET_ADMIN" in caps and "CAP_CHOWN" not in caps and "CAP_MKNOD" not in caps
    assert compute_capabilities([], ["ALL"]) == []
    assert compute_capabilities(["kill"], ["ALL"]) == ["CAP_KILL"]
    every = compute_capabilities(["ALL"], ["SYS_ADMIN"])
    assert "CAP_SYS_ADMIN" not in every and "CAP_NET_ADMIN" in every
    with pytest.raises(InvalidArgument, match="NOPE"):
        compute_capabilities(["NOPE"])


def test_capabilities_clamped_to_bounding_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spec_mod, "_bounding_set", lambda: {"CAP_CHOWN", "CAP_KILL"})
    assert compute_capabilities(privileged=True) == ["CAP_CHOWN", "CAP_KILL"]


def test_masks_readonly_paths_and_mounts() -> None:
    s = generate_spec(_cfg(shm_size=8 * 1024**3))
    assert "/proc/kcore" in s["linux"]["maskedPaths"]
    assert "/sys/firmware" in s["linux"]["maskedPaths"]
    assert s["linux"]["readonlyPaths"] == ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                           "/proc/sysrq-trigger"]
    mounts = {m["destination"]: m for m in s["mounts"]}
    assert mounts["/dev"]["options"] == ["nosuid", "strictatime", "mode=755", "size=65536k"]
    assert "size=8388608k" in mounts["/dev/shm"]["options"]
    assert "ro" in mounts["/sys"]["options"] and "ro" in mounts["/sys/fs/cgroup"]["options"]
    assert list(mounts)[:7] == ["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup",
                                "/dev/mqueue", "/dev/shm"]


def test_extra_mounts_come_after_defaults() -> None:
    vol = {"destination": "/data", "type": "bind", "source": "/srv", "options": ["rbind", "ro"]}
    s = generate_spec(_cfg(mounts=[vol]))
    assert s["mounts"][-1] == vol


def test_device_rules_deny_all_first() -> None:
    rules = generate_spec(_cfg())["linux"]["resources"]["devices"]
    assert rules[0] == {"allow": False, "access": "rwm"}
    allowed = {(r.get("type"), r.get("major"), r.get("minor")) for r in rules[1:]}
    for dev in [("c", 1, 3), ("c", 1, 5), ("c", 1, 9), ("c", 5, 2), ("c", 136, None),
                ("c", 10, 200), ("c", None, None), ("b", None, None)]:
        assert dev in allowed


def test_privileged_lifts_restrictions() -> None:
    s = generate_spec(_cfg(privileged=True))
    assert "maskedPaths" not in s["linux"] and "seccomp" not in s["linux"]
    assert s["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    mounts = {m["destination"]: m for m in s["mounts"]}
    assert "ro" not in mounts["/sys"]["options"]
    assert len(s["process"]["capabilities"]["bounding"]) > 30


def test_namespaces_follow_network_mode() -> None:
    def kinds(network: str) -> dict[str, str | None]:
        return {n["type"]: n.get("path") for n in generate_spec(_cfg(network=network))["linux"]["namespaces"]}
    assert kinds("none")["network"] is None
    assert "network" not in kinds("host")
    assert kinds("/run/netns/x")["network"] == "/run/netns/x"
    assert {"pid", "ipc", "uts", "mount"} <= set(kinds("none"))
    with pytest.raises(InvalidArgument):
        kinds("bridge")


def test_rlimits_clamped_to_own_hard_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    r = {x["type"]: x for x in generate_spec(_cfg())["process"]["rlimits"]}["RLIMIT_NOFILE"]
    expected = 1048576 if hard == resource.RLIM_INFINITY else min(1048576, hard)
    assert r["hard"] == expected and r["soft"] <= r["hard"]


def test_resources_and_process_fields() -> None:
    cfg = _cfg(memory=256 * 1024**2, cpus=1.5, pids_limit=100, cgroups_path="/portside/x",
               hostname="h", readonly_rootfs=True)
    cfg.process = ProcessConfig(args=["a"], env=["A=1"], uid=1000, gid=1000, additional_gids=[5],
                                no_new_privileges=True, cwd="/w")
    s = generate_spec(cfg)
    res = s["linux"]["resources"]
    assert res["memory"] == {"limit": 256 * 1024**2}
    assert res["cpu"] == {"quota": 150000, "period": 100000}
    assert res["pids"] == {"limit": 100}
    assert s["linux"]["cgroupsPath"] == "/portside/x"
    assert s["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [5]}
    assert s["process"]["env"][0].startswith("PATH=") and "A=1" in s["process"]["env"]
    assert s["root"] == {"path": "/r", "readonly": True} and s["hostname"] == "h"
    assert s["process"]["noNewPrivileges"] is True
    with pytest.raises(InvalidArgument, match="memory"):
        generate_spec(_cfg(memory=1024))


PROFILE = {
    "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
    "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
    "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "args": [], "includes": {},
         "excludes": {}},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
        {"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_CHROOT"]}},
        {"names": ["bpf"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
    ],
}


def test_convert_seccomp_selects_by_arch_and_caps() -> None:
    out = convert_seccomp(PROFILE, ["CAP_SYS_CHROOT"], arch="amd64")
    names = [n for r in out["syscalls"] for n in r["names"]]
    assert out["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
    assert out["defaultErrnoRet"] == 38
    assert {"read", "arch_prctl", "chroot", "bpf"} <= set(names)
    assert {"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"} in out["syscalls"][-1]["args"]
    arm = convert_seccomp(PROFILE, ["CAP_SYS_ADMIN"], arch="arm64")
    arm_names = [n for r in arm["syscalls"] for n in r["names"]]
    assert "arch_prctl" not in arm_names and "chroot" not in arm_names and "bpf" not in arm_names
    assert arm["architectures"][0] == "SCMP_ARCH_AARCH64"


@pytest.mark.skipif(not Path("/usr/share/containers/seccomp.json").exists(),
                    reason="no containers-common seccomp profile")
def test_host_profile_is_converted() -> None:
    s = generate_spec(_cfg())
    sc = s["linux"]["seccomp"]
    names = {n for r in sc["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" for n in r["names"]}
    assert "read" in names and "chroot" in names  # SYS_CHROOT is a default capability
    assert "init_module" not in names  # SYS_MODULE is not
    assert not generate_spec(_cfg(seccomp=False))["linux"].get("seccomp")


def test_write_spec_is_valid_json(tmp_path: Path) -> None:
    path = write_spec(tmp_path, generate_spec(_cfg()))
    assert json.loads(path.read_text())["ociVersion"].startswith("1.")
    assert not list(tmp_path.glob(".*tmp"))


def test_empty_command_rejected() -> None:
    with pytest.raises(InvalidArgument, match="command"):
        generate_spec(ContainerConfig(process=ProcessConfig(args=[]), rootfs="/r"))


def test_a_runtime_that_ran_once_is_not_asked_again(tmp_path: Path) -> None:
    from portside.engine.runtime.oci import _works

    calls = tmp_path / "calls"
    fake = tmp_path / "fake-runc"
    fake.write_text(f"#!/bin/sh\necho run >> {calls}\nexit 0\n")
    fake.chmod(0o755)
    state = tmp_path / "state"
    assert _works(str(fake), state) and _works(str(fake), state)
    assert calls.read_text().count("run") == 1
    fake.write_text(f"#!/bin/sh\necho run >> {calls}\nexit 17\n")  # replaced: asked again
    assert not _works(str(fake), state) and not _works(str(fake), state)
    assert calls.read_text().count("run") == 3
    assert not _works(str(tmp_path / "missing"), state)
