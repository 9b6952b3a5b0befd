"""Image references: Docker's grammar, normalisation and familiar forms."""

from __future__ import annotations

import pytest

from portside.engine.errors import InvalidArgument
from portside.engine.image.reference import (
    Reference,
    is_digest,
    is_short_id,
    parse_reference,
    split_domain,
)

pytestmark = pytest.mark.unit

D = "sha256:" + "ab" * 32
D2 = "sha256:" + "0123456789abcdef" * 4

# (typed text, full normalised form, familiar form)
VALID = [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/user/img:2", "docker.io/user/img:2", "user/img:2"),
    ("user/img", "docker.io/user/img:latest", "user/img:latest"),
    ("user/img:v1.0-rc_1", "docker.io/user/img:v1.0-rc_1", "user/img:v1.0-rc_1"),
    ("docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"),
    ("localhost/foo", "localhost/foo:latest", "localhost/foo:latest"),
    ("localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b:t"),
    ("localhost:5000", "docker.io/library/localhost:5000", "localhost:5000"),
    ("localhost", "docker.io/library/localhost:latest", "localhost:latest"),
    ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest", "127.0.0.1:5000/x:latest"),
    ("[::1]:5000/x:y", "[::1]:5000/x:y", "[::1]:5000/x:y"),
    ("[fe80::1]/x", "[fe80::1]/x:latest", "[fe80::1]/x:latest"),
    ("ghcr.io/org/repo", "ghcr.io/org/repo:latest", "ghcr.io/org/repo:latest"),
    ("quay.io/a/b/c/d:e", "quay.io/a/b/c/d:e", "quay.io/a/b/c/d:e"),
    ("registry:5000/x", "registry:5000/x:latest", "registry:5000/x:latest"),
    ("Registry.Example.COM/x", "Registry.Example.COM/x:latest", "Registry.Example.COM/x:latest"),
    ("Foo/bar", "Foo/bar:latest", "Foo/bar:latest"),  # upper case first component: a domain
    ("my-host.example/x", "my-host.example/x:latest", "my-host.example/x:latest"),
    ("a.b_c__d-e---f", "docker.io/library/a.b_c__d-e---f:latest", "a.b_c__d-e---f:latest"),
    ("busybox@" + D, "docker.io/library/busybox@" + D, "busybox@" + D),
    ("busybox:1@" + D, "docker.io/library/busybox:1@" + D, "busybox:1@" + D),
    ("ghcr.io/o/r@" + D2, "ghcr.io/o/r@" + D2, "ghcr.io/o/r@" + D2),
    ("x:" + "T" * 128, "docker.io/library/x:" + "T" * 128, "x:" + "T" * 128),
    ("x:_private", "docker.io/library/x:_private", "x:_private"),
    ("0abc/9xyz", "docker.io/0abc/9xyz:latest", "0abc/9xyz:latest"),
]

# (typed text, a piece the one-line message must contain)
INVALID = [
    ("", "invalid reference format"),
    ("Busybox", "repository name (library/Busybox) must be lowercase"),
    ("user/Img:1", "repository name (user/Img) must be lowercase"),
    ("busybox:", "invalid reference format: busybox:"),
    ("busybox:-x", "invalid reference format"),
    ("busybox:.x", "invalid reference format"),
    ("x:" + "t" * 129, "invalid reference format"),
    ("busy box", "invalid reference format"),
    ("busybox/", "invalid reference format"),
    ("/busybox", "invalid reference format"),
    ("a//b", "invalid reference format"),
    ("-abc", "invalid reference format"),
    ("abc-", "invalid reference format"),
    ("a..b", "invalid reference format"),
    ("a___b", "invalid reference format"),
    ("a/.b", "invalid reference format"),
    ("my_host.com/x", "invalid reference format"),
    ("-host.com/x", "invalid reference format"),
    ("localhost:port/x", "invalid reference format"),
    ("busybox@sha256:abc", "invalid reference format"),
    ("busybox@sha256:" + "AB" * 32, "invalid digest"),
    ("busybox@sha256:" + "ab" * 33, "invalid digest"),
    ("busybox@md5:" + "ab" * 16, "unsupported digest algorithm"),
    ("busybox@" + D + "@" + D, "invalid reference format"),
    ("busybox@", "invalid reference format"),
    ("ab" * 32, "cannot specify 64-byte hexadecimal strings"),
    ("a/" + "b" * 260, "must not be more than 255 characters"),
    ("a:b:c", "invalid reference format"),
    ("héllo", "invalid reference format"),
]


@pytest.mark.parametrize("text,full,familiar", VALID)
def test_valid_references(text: str, full: str, familiar: str) -> None:
    ref = parse_reference(text)
    assert str(ref) == full
    assert ref.familiar() == familiar
    # The canonical text is a fixed point: parsing it again gives the same reference.
    assert parse_reference(str(ref)) == ref


@pytest.mark.parametrize("text,message", INVALID)
def test_invalid_references(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_reference(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_exact_messages_match_docker() -> None:
    with pytest.raises(InvalidArgument, match=r"^invalid reference format: repository name "
                       r"\(library/Busybox\) must be lowercase$"):
        parse_reference("Busybox")
    with pytest.raises(InvalidArgument, match=r"^invalid reference format: a b$"):
        parse_reference("a b")


def test_fields_and_names() -> None:
    ref = parse_reference("localhost:5000/team/app:v2@" + D)
    assert ref == Reference("localhost:5000", "team/app", "v2", D)
    assert ref.name == "localhost:5000/team/app"
    assert ref.familiar_name == "localhost:5000/team/app"
    hub = parse_reference("busybox")
    assert (hub.domain, hub.path, hub.tag, hub.digest) == ("docker.io", "library/busybox",
                                                           "latest", None)
    assert hub.familiar_name == "busybox"
    assert parse_reference("user/img").familiar_name == "user/img"


def test_default_tag() -> None:
    assert parse_reference("busybox", default_tag=None).tag is None
    assert str(parse_reference("busybox", default_tag=None)) == "docker.io/library/busybox"
    assert parse_reference("busybox", default_tag="stable").tag == "stable"
    # An explicit tag wins, and a digest never gets a default tag.
    assert parse_reference("busybox:1", default_tag="stable").tag == "1"
    assert parse_reference("busybox@" + D).tag is None


def test_with_tag_and_digest() -> None:
    ref = parse_reference("busybox")
    assert str(ref.with_tag("1.36")) == "docker.io/library/busybox:1.36"
    assert ref.with_digest(D).familiar() == "busybox:latest@" + D
    assert ref.without_tag().familiar() == "busybox"
    assert ref.tag == "latest"  # frozen: the original is untouched
    with pytest.raises(InvalidArgument, match="invalid tag format"):
        ref.with_tag("bad tag")
    with pytest.raises(InvalidArgument):
        ref.with_digest("sha256:1234")


def test_split_domain() -> None:
    assert split_domain("busybox") == ("docker.io", "library/busybox")
    assert split_domain("user/img") == ("docker.io", "user/img")
    assert split_domain("docker.io/img") == ("docker.io", "library/img")
    assert split_domain("index.docker.io/u/img") == ("docker.io", "u/img")
    assert split_domain("localhost/img") == ("localhost", "img")
    assert split_domain("localhost:5000/a/b") == ("localhost:5000", "a/b")
    assert split_domain("ghcr.io/a") == ("ghcr.io", "a")
    assert split_domain("Foo/a") == ("Foo", "a")


def test_references_are_hashable_values() -> None:
    assert parse_reference("busybox") == parse_reference("docker.io/library/busybox:latest")
    assert len({parse_reference("busybox"), parse_reference("library/busybox")}) == 1


def test_is_digest() -> None:
    assert is_digest(D)
    assert not is_digest("ab" * 32)
    assert not is_digest("sha256:" + "ab" * 31)
    assert not is_digest("sha256:" + "AB" * 32)
    assert not is_digest("sha512:" + "ab" * 32)


@pytest.mark.parametrize("text,expected", [
    ("abcd", True), ("0123456789ab", True), ("ab" * 32, True), (D, True), ("sha256:abcd", True),
    ("abc", False), ("ab" * 33, False), ("ABCD", False), ("abcg", False), ("busybox", False),
    ("sha256:", False), ("", False),
])
def test_is_short_id(text: str, expected: bool) -> None:
    assert is_short_id(text) is expected
