"""``ContainerFS.resolve``: which file ``cp -L`` means, worked out inside the container's tree.

A plain folder stands for the container's root (openat2 needs no privilege), another for a volume
mounted into it; the host's own paths must never be what a link resolves to.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from portside.engine.errors import InvalidArgument, NotFound
from portside.engine.runtime.cp import MAX_LINKS, ContainerFS, source_path

pytestmark = pytest.mark.unit


@pytest.fixture
def fs(tmp_path: Path) -> ContainerFS:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "marker").write_text("inside\n")
    (root / "d" / "sub").mkdir(parents=True)
    (root / "d" / "sub" / "f").write_text("f\n")
    links = {
        "abs": "/etc/marker", "rel": "../etc/marker", "up": "../../../../../etc/marker",
        "c1": "c2", "c2": "/c3", "c3": "etc/marker", "dir": "/d/sub",
        "viadir": "/dir/../sub/f",   # .. after a link is taken from its target (/d)
        "loop1": "loop2", "loop2": "loop1", "host": str(tmp_path / "host-only"),
        "tovol": "/vol/v", "volup": "/vol/../etc/marker",
    }
    for name, target in links.items():
        os.symlink(target, root / name)
    (tmp_path / "host-only").write_text("host\n")
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "v").write_text("volume\n")
    os.symlink("/etc/marker", vol / "back")          # a link in the volume, to the rootfs
    (root / "vol").mkdir()
    os.symlink("/etc/marker", root / "vol" / "v")    # hidden under the mount: never used
    return ContainerFS(root, [("/vol", str(vol))], name="box")


@pytest.mark.parametrize("path, expected", [
    ("/abs", "/etc/marker"), ("/rel", "/etc/marker"), ("/up", "/etc/marker"),
    ("/c1", "/etc/marker"), ("/dir", "/d/sub"), ("/dir/f", "/d/sub/f"),
    ("/viadir", "/d/sub/f"), ("/tovol", "/vol/v"), ("/vol/back", "/etc/marker"),
    ("/volup", "/etc/marker"), ("/d/sub/f", "/d/sub/f"), ("/", "/"),
    ("/missing/x", "/missing/x"),
])
def test_resolve_follows_every_link_inside_the_tree(fs, path, expected):
    assert fs.resolve(path) == expected


def test_a_link_to_a_host_path_stays_a_container_path(fs, tmp_path):
    resolved = fs.resolve("/host")
    assert resolved == str(tmp_path / "host-only")       # the same words ...
    assert fs.lstat(resolved) is None                    # ... but the container has no such file
    with pytest.raises(NotFound, match="Could not find the file .* in container box"):
        source_path(fs, "/host", follow=True)


def test_without_follow_the_final_link_is_kept(fs):
    assert fs.resolve("/c1", follow=False) == "/c1"
    assert fs.resolve("/dir/f", follow=False) == "/d/sub/f"   # links before it are followed
    assert source_path(fs, "/abs") == "/abs"
    assert source_path(fs, "/dir/") == "/d/sub"               # a trailing / enters the link


def test_a_mount_point_is_the_mounted_tree_not_what_lies_beneath(fs):
    assert fs.resolve("/vol") == "/vol"
    assert fs.resolve("/vol/v") == "/vol/v"               # the volume's file, not the rootfs link


def test_a_loop_of_links_is_refused(fs):
    with pytest.raises(InvalidArgument, match="too many levels of symbolic links: /loop1"):
        fs.resolve("/loop1")
    assert MAX_LINKS == 40


def test_missing_target_names_the_link(fs):
    os.symlink("/nope", fs.rootfs / "dangling")
    with pytest.raises(NotFound) as err:
        source_path(fs, "/dangling", follow=True)
    assert str(err.value) == ("Could not find the file /nope in container box "
                              "(the link /dangling points there)")
