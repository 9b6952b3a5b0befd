"""Docker's config.json: auths with base64 auth, mode 0600, and credential helpers
(a real ``docker-credential-<name>`` script on PATH speaking the get/store/erase protocol)."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from portside.engine.errors import InvalidArgument, RegistryError
from portside.engine.registry.credentials import (DOCKER_HUB_KEY, CredentialStore, Credentials,
                                                  registry_key)

pytestmark = pytest.mark.unit


def test_registry_keys_follow_docker():
    assert registry_key(None) == DOCKER_HUB_KEY
    assert registry_key("docker.io") == DOCKER_HUB_KEY
    assert registry_key("https://index.docker.io/v1/") == DOCKER_HUB_KEY
    assert registry_key("https://reg.example:5000/v2/") == "reg.example:5000"
    assert registry_key("127.0.0.1:5000") == "127.0.0.1:5000"


def test_store_get_erase_round_trip_with_mode_0600(tmp_path):
    store = CredentialStore(tmp_path / "cfg")
    assert store.get("reg:5000") is None
    store.store("reg:5000", Credentials("alice", "pa:ss"))
    path = tmp_path / "cfg" / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert base64.b64decode(doc["auths"]["reg:5000"]["auth"]) == b"alice:pa:ss"
    assert store.get("reg:5000") == Credentials("alice", "pa:ss")
    assert "pa:ss" not in repr(store.get("reg:5000"))
    assert store.erase("reg:5000") is True
    assert store.get("reg:5000") is None
    assert store.erase("reg:5000") is False


def test_existing_keys_are_kept(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"auths": {"other": {"auth": base64.b64encode(b"o:p").decode()}},
                               "psFormat": "table {{.ID}}"}))
    store = CredentialStore(tmp_path)
    store.store(None, Credentials("hub", "x"))
    doc = json.loads(cfg.read_text())
    assert doc["psFormat"] == "table {{.ID}}" and "other" in doc["auths"]
    assert store.get("docker.io") == Credentials("hub", "x")


def test_bad_file_is_an_invalid_argument(tmp_path):
    (tmp_path / "config.json").write_text("{nope")
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        CredentialStore(tmp_path).get("x")


HELPER = """#!/bin/sh
# a credential helper keeping secrets in files under $HELPER_DIR
verb="$1"; input=$(cat)
case "$verb" in
  store) key=$(printf '%s' "$input" | python3 -c 'import json,sys;print(json.load(sys.stdin)["ServerURL"])')
         printf '%s' "$input" > "$HELPER_DIR/$(printf %s "$key" | tr '/:' '__')" ;;
  get)   f="$HELPER_DIR/$(printf %s "$input" | tr '/:' '__')"
         if [ -f "$f" ]; then cat "$f"; else echo "credentials not found in native keychain"; exit 1; fi ;;
  erase) rm -f "$HELPER_DIR/$(printf %s "$input" | tr '/:' '__')" ;;
esac
"""


@pytest.fixture
def helper(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "docker-credential-fake"
    script.write_text(HELPER)
    script.chmod(0o755)
    store_dir = tmp_path / "keychain"
    store_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("HELPER_DIR", str(store_dir))
    return store_dir


@pytest.mark.parametrize("setting", [{"credsStore": "fake"},
                                     {"credHelpers": {"reg:5000": "fake"}}])
def test_credential_helpers_store_get_erase(tmp_path, helper, setting):
    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    (cfg_dir / "config.json").write_text(json.dumps(setting))
    store = CredentialStore(cfg_dir)
    assert store.get("reg:5000") is None  # "credentials not found" is not an error
    store.store("reg:5000", Credentials("bob", "s3cret"))
    doc = json.loads((cfg_dir / "config.json").read_text())
    assert doc["auths"]["reg:5000"] == {}  # the secret lives in the helper only
    assert "s3cret" not in (cfg_dir / "config.json").read_text()
    assert store.get("reg:5000") == Credentials("bob", "s3cret")
    assert store.erase("reg:5000")
    assert store.get("reg:5000") is None


def test_missing_helper_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "does-not-exist-xyz"}))
    with pytest.raises(RegistryError, match="docker-credential-does-not-exist-xyz"):
        CredentialStore(tmp_path).get("reg")


def test_docker_config_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dc"))
    assert CredentialStore().path == tmp_path / "dc" / "config.json"
