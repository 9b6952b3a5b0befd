"""Paths, files, users and groups inside a root filesystem (engine/rootfs.py): never outside it."""

from __future__ import annotations


import pytest

from portside.engine.errors import InvalidArgument, NotFound
from portside.engine.rootfs import read_file, resolve, resolve_user

pytestmark = pytest.mark.unit


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "usr/lib").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/:/bin/sh\n"
                                     "svc:x:77:77::/:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\nstaff:x:50:app,svc\nvideo:x:44:app\n"
                                    "app:x:1001:\n")
    (root / "lib").symlink_to("usr/lib")
    (root / "abs").symlink_to("/usr/lib")
    (root / "up").symlink_to("../../../../../..")
    (root / "host").symlink_to("/etc")  # the container's /etc, never the host's
    return root


def test_resolve_confines_links_to_the_root(tree):
    assert resolve(tree, "/lib") == tree / "usr/lib"
    assert resolve(tree, "abs/x") == tree / "usr/lib/x"        # a missing tail is kept
    assert resolve(tree, "/up") == tree                          # .. stops at the root
    assert resolve(tree, "up/etc/passwd") == tree / "etc/passwd"
    assert resolve(tree, "/host/passwd") == tree / "etc/passwd"
    assert resolve(tree, "/lib", follow_last=False) == tree / "lib"
    assert resolve(tree, "/missing/../../x") == tree / "x"       # never above what exists


def test_resolve_beneath_refuses_what_leaves(tree):
    assert resolve(tree, "lib/x", beneath=True) == tree / "usr/lib/x"
    for path in ("abs", "up/etc", "host/passwd", "../x"):
        with pytest.raises(InvalidArgument, match="outside"):
            resolve(tree, path, beneath=True)


def test_resolve_loops_and_missing_roots(tree, tmp_path):
    (tree / "loop").symlink_to("loop")
    with pytest.raises(InvalidArgument, match="too many levels"):
        resolve(tree, "/loop/x")
    with pytest.raises(NotFound):
        resolve(tmp_path / "nothere", "/x")


def test_read_file_stays_inside(tree):
    assert read_file(tree, "/host/passwd").startswith(b"root:")
    with pytest.raises(NotFound):
        read_file(tree, "/etc/shadow")


def test_resolve_user_as_docker(tree):
    # the process's groups begin with its primary group; members of /etc/group lines add theirs
    assert resolve_user(tree, "") == (0, 0, [0])
    assert resolve_user(tree, "root") == (0, 0, [0])
    assert resolve_user(tree, "app") == (1000, 1001, [1001, 50, 44])
    assert resolve_user(tree, "1000") == (1000, 1001, [1001, 50, 44])  # by uid, same entry
    # an explicit group is the only group
    assert resolve_user(tree, "app:staff") == (1000, 50, [50])
    assert resolve_user(tree, "1234:5678") == (1234, 5678, [5678])
    assert resolve_user(tree, "1234") == (1234, 0, [0])              # no passwd entry: gid 0
    with pytest.raises(InvalidArgument, match="unable to find user nobody"):
        resolve_user(tree, "nobody")
    with pytest.raises(InvalidArgument, match="unable to find group wheel"):
        resolve_user(tree, "app:wheel")


def test_resolve_user_does_not_follow_links_out_of_the_root(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").symlink_to("/etc/passwd")
    # /etc/passwd resolves inside tmp_path: a loop back to itself, i.e. no host passwd.
    with pytest.raises(InvalidArgument):
        resolve_user(tmp_path, "root")
