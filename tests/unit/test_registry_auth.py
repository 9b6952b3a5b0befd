"""WWW-Authenticate parsing and the token / basic flows of the Authenticator (no network:
the token realm is a function standing in for the HTTP GET)."""

from __future__ import annotations

import base64
import json

import pytest

from portside.engine.errors import RegistryError, Unauthorized
from portside.engine.registry.auth import Authenticator, parse_www_authenticate
from portside.engine.registry.credentials import Credentials

pytestmark = pytest.mark.unit


def test_parse_bearer_with_quoted_params_and_commas_in_scope():
    [c] = parse_www_authenticate('Bearer realm="https://auth.io/token",service="reg.io",'
                                 'scope="repository:a/b:pull,push"')
    assert c.scheme == "bearer"
    assert c.params == {"realm": "https://auth.io/token", "service": "reg.io",
                        "scope": "repository:a/b:pull,push"}


def test_parse_several_challenges_and_escapes():
    cs = parse_www_authenticate('Basic realm="a \\"quoted\\" realm", Bearer realm=x,service=y')
    assert [c.scheme for c in cs] == ["basic", "bearer"]
    assert cs[0].params["realm"] == 'a "quoted" realm'
    assert cs[1].params == {"realm": "x", "service": "y"}


def test_parse_rejects_unterminated_quote():
    with pytest.raises(RegistryError):
        parse_www_authenticate('Bearer realm="oops')


class Realm:
    def __init__(self, users=None, status=200):
        self.calls = []
        self.users = users or {}
        self.status = status

    def __call__(self, url, headers):
        self.calls.append((url, dict(headers)))
        auth = headers.get("Authorization")
        if auth:
            user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            if self.users.get(user) != pw:
                return 401, b"{}"
        return self.status, json.dumps({"token": f"tok{len(self.calls)}",
                                        "expires_in": 300}).encode()


CHALLENGE = 'Bearer realm="http://127.0.0.1:1/token",service="svc"'


def test_anonymous_token_is_fetched_once_per_scope_and_cached():
    realm = Realm()
    auth = Authenticator("reg", None, realm)
    scopes = ("repository:x:pull",)
    assert auth.header(scopes) is None
    assert auth.challenged(CHALLENGE, scopes, None) == "Bearer tok1"
    assert auth.header(scopes) == "Bearer tok1"  # cached
    assert len(realm.calls) == 1
    assert "scope=repository%3Ax%3Apull" in realm.calls[0][0]
    assert "service=svc" in realm.calls[0][0]
    assert "Authorization" not in realm.calls[0][1]
    assert auth.header(("repository:y:pull",)) == "Bearer tok2"  # another scope, another token


def test_refused_token_is_refetched_once_then_denied():
    realm = Realm()
    auth = Authenticator("reg", None, realm)
    scopes = ("repository:x:pull",)
    first = auth.challenged(CHALLENGE, scopes, None)
    second = auth.challenged(CHALLENGE, scopes, first)
    assert second != first

    class Same(Realm):
        def __call__(self, url, headers):
            return 200, b'{"token": "same"}'

    auth2 = Authenticator("reg", None, Same())
    sent = auth2.challenged(CHALLENGE, scopes, None)
    with pytest.raises(Unauthorized, match="authentication required"):
        auth2.challenged(CHALLENGE, scopes, sent)


def test_token_with_credentials_and_wrong_password_never_shows_the_secret():
    realm = Realm({"alice": "right"})
    ok = Authenticator("reg", Credentials("alice", "right"), realm)
    assert ok.challenged(CHALLENGE, ("repository:x:pull",), None).startswith("Bearer tok")
    assert realm.calls[0][1]["Authorization"].startswith("Basic ")
    bad = Authenticator("reg", Credentials("alice", "wrong-secret"), realm)
    with pytest.raises(Unauthorized) as exc:
        bad.challenged(CHALLENGE, ("repository:x:pull",), None)
    assert "incorrect username or password" in str(exc.value)
    assert "wrong-secret" not in str(exc.value)


def test_basic_challenge_needs_credentials_and_fails_on_repeat():
    anon = Authenticator("reg", None, Realm())
    with pytest.raises(Unauthorized, match="authentication required"):
        anon.challenged('Basic realm="r"', (), None)
    auth = Authenticator("reg", Credentials("u", "p"), Realm())
    header = auth.challenged('Basic realm="r"', (), None)
    assert header == "Basic " + base64.b64encode(b"u:p").decode()
    assert auth.header(()) == header  # sent up front from now on
    with pytest.raises(Unauthorized, match="incorrect username or password"):
        auth.challenged('Basic realm="r"', (), header)


def test_realm_errors_and_bad_answers():
    with pytest.raises(RegistryError, match="answered 500"):
        Authenticator("reg", None, Realm(status=500)).challenged(CHALLENGE, ("s",), None)
    with pytest.raises(RegistryError, match="no token"):
        Authenticator("reg", None, lambda u, h: (200, b"{}")).challenged(CHALLENGE, ("s",), None)
    with pytest.raises(RegistryError, match="realm"):
        Authenticator("reg", None, Realm()).challenged('Bearer service="x"', ("s",), None)


def test_no_challenge_means_unauthorized():
    with pytest.raises(Unauthorized):
        Authenticator("reg", None, Realm()).challenged(None, (), None)
