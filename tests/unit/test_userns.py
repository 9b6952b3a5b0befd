"""Unit tests for the rootless namespace holder's pure parts: subordinate ranges, the id maps
planned from them, and the one-line explanations of a refused user namespace."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from portside.engine import rootless
from portside.engine.rootless import userns

pytestmark = pytest.mark.unit


def _files(tmp_path: Path, subuid: str, subgid: str) -> dict[str, str]:
    (tmp_path / "subuid").write_text(subuid)
    (tmp_path / "subgid").write_text(subgid)
    return {"subuid": str(tmp_path / "subuid"), "subgid": str(tmp_path / "subgid")}


def _which_all(name: str) -> str:
    return f"/usr/bin/{name}"


def test_ranges_by_name_or_uid_in_file_order(tmp_path):
    path = tmp_path / "subuid"
    path.write_text("other:100000:65536\nalice:165536:65536\n# comment\n1001:300000:10\n"
                    "alice:bad:1\nalice:400000:0\n")
    assert userns.subordinate_ranges(str(path), "alice", 1001) == [(165536, 65536), (300000, 10)]
    assert userns.subordinate_ranges(str(path), "bob", 1002) == []
    assert userns.subordinate_ranges(str(tmp_path / "missing"), "alice", 1001) == []


def test_full_mapping_puts_the_user_at_zero_then_each_range(tmp_path):
    files = _files(tmp_path, "alice:100000:65536\nalice:200000:100\n", "alice:100000:65536\n")
    plan = userns.plan_mapping(1001, 1002, "alice", which=_which_all, **files)
    assert plan["mapping"] == "full" and plan["warning"] == ""
    assert plan["uid_map"] == [[0, 1001, 1], [1, 100000, 65536], [65537, 200000, 100]]
    assert plan["gid_map"] == [[0, 1002, 1], [1, 100000, 65536]]


def test_single_mapping_without_a_range_says_which_file(tmp_path):
    files = _files(tmp_path, "alice:100000:65536\n", "")
    plan = userns.plan_mapping(1001, 1001, "alice", which=_which_all, **files)
    assert plan["mapping"] == "single"
    assert plan["uid_map"] == [[0, 1001, 1]] and plan["gid_map"] == [[0, 1001, 1]]
    assert "alice has no subordinate ids in " + files["subgid"] in plan["warning"]
    assert "squashed to 0" in plan["warning"] and "\n" not in plan["warning"]


def test_single_mapping_without_the_helpers(tmp_path):
    files = _files(tmp_path, "alice:100000:65536\n", "alice:100000:65536\n")
    plan = userns.plan_mapping(1001, 1001, "alice", which=lambda name: None, **files)
    assert plan["mapping"] == "single"
    assert plan["warning"].startswith("newuidmap/newgidmap are not installed")


@pytest.mark.parametrize("step,err,sysctls,expected", [
    ("user", errno.ENOSPC, {"user.max_user_namespaces": "0"},
     "user namespaces are disabled (user.max_user_namespaces = 0): rootless portside needs "
     "them; as root: sysctl -w user.max_user_namespaces=15000"),
    ("user", errno.EPERM, {"kernel.unprivileged_userns_clone": "0"},
     "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0): "
     "rootless portside needs them; as root: sysctl -w kernel.unprivileged_userns_clone=1"),
    ("namespaces", errno.EPERM, {"kernel.apparmor_restrict_unprivileged_userns": "1"},
     "user namespaces are restricted by AppArmor (kernel.apparmor_restrict_unprivileged_userns"
     " = 1): rootless portside needs them; as root: sysctl -w "
     "kernel.apparmor_restrict_unprivileged_userns=0 (or give this Python an AppArmor profile "
     "that allows userns)"),
    ("user", errno.ENOSPC, {"user.max_user_namespaces": "5"},
     "too many user namespaces (user.max_user_namespaces = 5): raise it, as root: sysctl -w "
     "user.max_user_namespaces=15000"),
    ("user", errno.EPERM, {}, "cannot create a user namespace: Operation not permitted"),
])
def test_refusals_name_the_setting(step, err, sysctls, expected):
    assert userns.explain_unshare_failure(step, err, read_sysctl=sysctls.get) == expected


def test_host_ids_come_from_the_marker_inside_the_namespace(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv(rootless.ENV, "1001:1002:single")
    monkeypatch.setattr(rootless, "in_namespace", lambda: True)  # as the uid map would say
    assert rootless.host_ids() == (1001, 1002)
    monkeypatch.setattr(rootless, "in_namespace", lambda: False)  # a stray variable of root's
    assert rootless.host_ids() == (os.getuid(), os.getgid())
    assert rootless.mapping() == "single"
    monkeypatch.delenv(rootless.ENV)
    assert rootless.mapping() == ""


def test_the_marker_alone_does_not_make_root_rootless(monkeypatch):
    # the initial namespace's identity map: a stray variable is not a namespace
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv(rootless.ENV, "1001:1001:full")
    assert rootless.in_namespace() is False
    assert rootless.active() is False


def test_runtime_dir_refuses_a_tmp_folder_that_is_not_private(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv(rootless.ENV, raising=False)
    uid = 4242424
    monkeypatch.setattr(os, "getuid", lambda: uid)
    path = Path(f"/tmp/portside-{uid}")
    path.mkdir(mode=0o755, exist_ok=True)
    try:
        os.chmod(path, 0o755)
        from portside.engine.errors import RuntimeFailure

        with pytest.raises(RuntimeFailure, match="is not a private folder of this user"):
            rootless.runtime_dir()
        os.chmod(path, 0o700)
        assert Path(rootless.runtime_dir()) == path
    finally:
        path.rmdir()


def test_runtime_dir_prefers_xdg_runtime_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert Path(rootless.runtime_dir()) == tmp_path / "portside"
    assert (tmp_path / "portside").stat().st_mode & 0o777 == 0o700


def test_unshare_outside_a_user_namespace_is_one_line(monkeypatch):
    from portside.engine.errors import InvalidArgument
    from portside.engine.models.system import System

    monkeypatch.delenv(rootless.ENV, raising=False)
    if rootless.in_namespace():
        pytest.fail("this process runs inside a rootless namespace")
    with pytest.raises(InvalidArgument, match="^unshare: only rootless"):
        System(engine=None).unshare(["true"])
