"""The debootstrapped Debian base image (made once, cached outside the repository by the
``debian_tar`` fixture) loads and carries python3, which the notebook agent needs."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_debian_image_loads_with_python3(cli, engine, debian_tar, tmp_path):
    out = cli("load", "-i", str(debian_tar)).out
    assert "Loaded image: portside/debian:bookworm" in out
    image = engine.images.get("portside/debian:bookworm")
    assert image.attrs["Config"]["Cmd"] == ["bash"]
    assert image.attrs["Size"] > 50_000_000
    history = cli("history", "--no-trunc", "--format", "{{.CreatedBy}}",
                  "portside/debian:bookworm").out
    assert "bootstrap debian:bookworm --include python3" in history
    top = engine.image_store.rootfs_lowers(engine.image_store.get("portside/debian:bookworm"))[0]
    assert (top / "usr/bin/python3").exists() or (top / "usr/bin/python3").is_symlink()
    assert (top / "etc/debian_version").read_text().startswith("12")
    assert not list((top / "var/cache/apt/archives").glob("*.deb"))
