"""Fixtures of the Docker-context tests: the session's private dockerd (see
``tests/dockerd_fixture.py``) and, per test, a check that the test left nothing in it."""

from dockerd_fixture import docker_ctx, dockerd  # noqa: F401 - fixtures, registered by import
