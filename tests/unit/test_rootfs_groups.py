"""``--group-add`` lookups (engine/rootfs.py: resolve_groups) on a small tree, no root needed."""

from __future__ import annotations

import os

import pytest

from portside.engine.errors import InvalidArgument
from portside.engine.rootfs import resolve_groups

pytestmark = pytest.mark.unit


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "group").write_text("root:x:0:\n# a comment\naudio:x:29:alice\n"
                                            "42:x:1042:\nstaff:x:50:\n")
    return tmp_path


def test_names_and_gids_of_the_file_then_numbers_as_is(tree):
    assert resolve_groups(tree, ["audio", "50", "7", "audio", "29"]) == [29, 50, 7]
    # a group *named* 42 is found by its name first, as runc's lookup does
    assert resolve_groups(tree, ["42"]) == [1042]
    assert resolve_groups(tree, []) == []


def test_unknown_names_and_ids_out_of_range_are_refused(tree):
    with pytest.raises(InvalidArgument, match="^Unable to find group video$"):
        resolve_groups(tree, ["audio", "video"])
    with pytest.raises(InvalidArgument, match="^uids and gids must be in range 0-2147483647$"):
        resolve_groups(tree, [str(2**31)])


def test_the_group_file_is_read_inside_the_tree(tree, tmp_path_factory):
    # /etc/group -> /etc/group-of-the-host: resolved inside the tree, where it does not exist
    outside = tmp_path_factory.mktemp("host") / "group"
    outside.write_text("video:x:44:\n")
    os.remove(tree / "etc" / "group")
    os.symlink(str(outside), tree / "etc" / "group")
    with pytest.raises(InvalidArgument, match="^Unable to find group video$"):
        resolve_groups(tree, ["video"])
    assert resolve_groups(tree, ["44"]) == [44]
