"""Docker contexts as normal users: one in the socket's group works, one outside it gets one line
naming the socket and the permission. Each user keeps their own contexts in their own config
folder; neither can see root's.
"""

from __future__ import annotations

import grp

import pytest

from dockerd_fixture import BUSYBOX

from .users import GROUP, SocketUsers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def users(dockerd):
    made = SocketUsers(dockerd.dockerd.sock)
    try:
        yield made
    finally:
        made.close()


def test_a_user_in_the_sockets_group_uses_dockerd(users, docker_ctx):
    user = users.allowed
    host = docker_ctx.dockerd.host
    assert user.name in grp.getgrnam(GROUP).gr_mem
    assert users.denied.name not in grp.getgrnam(GROUP).gr_mem
    created = user.portside("context", "create", "box", "--docker", f"host={host}")
    assert (created.out, created.err) == ("box\n", 'Successfully created context "box"\n')
    assert (user.home / ".config" / "portside" / "contexts" / "meta").is_dir()
    listed = user.portside("context", "ls", "-q").out.split()
    assert listed == ["default", "box"]  # this user's contexts, not root's
    images = user.portside("-c", "box", "images", "--format", "{{.Repository}}:{{.Tag}}").out
    assert BUSYBOX in images.split()
    out = user.portside("-c", "box", "run", "--rm", BUSYBOX, "sh", "-c", "echo hello from $(id -u)")
    assert out.out == "hello from 0\n"
    user.portside("context", "use", "box")
    assert user.portside("ps", "-a", "-q").out == ""


def test_a_user_outside_the_group_gets_one_line(users, docker_ctx):
    user = users.denied
    sock = docker_ctx.dockerd.sock
    user.portside("context", "create", "box", "--docker", f"host=unix://{sock}")
    for args in (["-c", "box", "ps"], ["-c", "box", "images"],
                 ["-c", "box", "run", "--rm", BUSYBOX, "true"]):
        proc = user.portside(*args, check=False)
        assert proc.returncode == 125 and proc.out == ""
        assert proc.err == (f"Error: permission denied while trying to connect to the Docker "
                            f'daemon socket at unix://{sock} (context "box"): connect {sock}: '
                            "permission denied\n"), proc.err
