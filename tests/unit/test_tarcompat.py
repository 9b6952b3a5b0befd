"""The PEP 706 backport behaves like the interpreter's own ``tar`` filter."""

from __future__ import annotations

import io
import tarfile

import pytest

from portside.engine import tarcompat

pytestmark = pytest.mark.unit


def _tar(*members: tuple[str, int]) -> tarfile.TarFile:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, mode in members:
            info = tarfile.TarInfo(name)
            info.mode = mode
            info.size = 2
            tf.addfile(info, io.BytesIO(b"hi"))
    buf.seek(0)
    return tarfile.open(fileobj=buf)


# the backport, and the interpreter's own filter where it has one (the backport installs itself
# only where it has not)
FILTERS = [tarcompat.tar_filter] + ([tarfile.tar_filter] if tarfile.tar_filter is not
                                    tarcompat.tar_filter else [])


@pytest.mark.parametrize("filter_", FILTERS)
def test_the_tar_filter_strips_bits_and_refuses_escapes(tmp_path, filter_):
    tf = _tar(("/abs/x", 0o6777), ("ok", 0o644))
    kept = filter_(tf.getmember("/abs/x"), str(tmp_path))
    assert kept.name == "abs/x" and kept.mode == 0o755
    with pytest.raises(tarfile.TarError, match="outside the destination"):
        filter_(tarfile.TarInfo("../../etc/passwd"), str(tmp_path))


def test_extractall_with_a_filter_drops_what_it_refuses(tmp_path):
    tf = _tar(("keep", 0o644), ("drop", 0o644))
    tarcompat._extractall(tf, str(tmp_path), filter=lambda m, p: None if m.name == "drop" else m)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]
