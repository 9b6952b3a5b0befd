"""Registry credentials in Docker's ``config.json`` form, so an existing ``docker login`` works.

Docker keeps credentials in ``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``)::

    {
      "auths": {"registry.example.com": {"auth": "<base64 of user:password>"}},
      "credsStore": "pass",                       # default helper for every registry
      "credHelpers": {"ghcr.io": "gh"}            # per-registry helper, wins over credsStore
    }

A *credential helper* is a program ``docker-credential-<name>`` speaking a tiny protocol on its
standard streams: ``get`` reads a server URL and prints ``{"ServerURL", "Username", "Secret"}``;
``store`` reads that JSON; ``erase`` reads a server URL. With a helper configured, ``auths`` holds
only an empty entry for the registry (so ``docker info`` can list it) and the secret lives in the
helper's keychain.

Docker Hub is keyed as ``https://index.docker.io/v1/`` for historical reasons; every other
registry by its ``host[:port]``. The file is written atomically with mode 0600: it holds secrets.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from pathlib import Path

from ..errors import InvalidArgument, RegistryError
from ..records import record

#: The key Docker uses for Docker Hub in ``auths``.
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", DOCKER_HUB_KEY,
                "https://index.docker.io/v1", "https://registry-1.docker.io"}


@record(frozen=True)
class Credentials:
    """A username and a secret (a password or an identity token)."""

    username: str
    secret: str

    def __repr__(self) -> str:  # never show the secret, even in a traceback
        return f"Credentials(username={self.username!r}, secret='***')"


def registry_key(registry: str | None) -> str:
    """The ``auths`` key for ``registry``: Docker Hub's legacy URL, else ``host[:port]``.

    ``https://host:5000/v2/`` and ``host:5000`` both give ``host:5000``.
    """
    if not registry or registry in _HUB_ALIASES:
        return DOCKER_HUB_KEY
    text = registry
    for prefix in ("https://", "http://"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    text = text.split("/", 1)[0]
    return DOCKER_HUB_KEY if text in _HUB_ALIASES else text


def config_dir() -> Path:
    """``$DOCKER_CONFIG``, else ``~/.docker``."""
    explicit = os.environ.get("DOCKER_CONFIG")
    return Path(explicit) if explicit else Path(os.path.expanduser("~/.docker"))


class CredentialStore:
    """Reads and writes credentials the way the Docker CLI does.

    Args:
        directory: the folder holding ``config.json`` (default :func:`config_dir`).
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else config_dir()
        self.path = self.directory / "config.json"

    # ------------------------------------------------------------------ file
    def _load(self) -> dict:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise InvalidArgument(f"cannot read {self.path}: {exc.strerror}") from exc
        if not text.strip():
            return {}
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"{self.path} is not valid JSON: {exc.msg}") from None
        if not isinstance(doc, dict):
            raise InvalidArgument(f"{self.path} is not a JSON object")
        return doc

    def _save(self, doc: dict) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=self.directory)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent="\t")
                f.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def helper_for(self, registry: str | None) -> str | None:
        """The credential helper's name configured for ``registry``, or None."""
        doc = self._load()
        key = registry_key(registry)
        helpers = doc.get("credHelpers") or {}
        host = key if key != DOCKER_HUB_KEY else "docker.io"
        for name in (key, host, "index.docker.io" if key == DOCKER_HUB_KEY else None):
            if name and helpers.get(name):
                return helpers[name]
        return doc.get("credsStore") or None

    # ------------------------------------------------------------------ API
    def get(self, registry: str | None) -> Credentials | None:
        """Return the stored credentials for ``registry``, or None.

        Raises:
            RegistryError: the configured credential helper failed (other than "not found").
        """
        key = registry_key(registry)
        helper = self.helper_for(registry)
        if helper:
            return _helper_get(helper, key)
        entry = (self._load().get("auths") or {}).get(key)
        if not entry:
            return None
        if entry.get("identitytoken"):
            user = entry.get("username") or "<token>"
            return Credentials(user, entry["identitytoken"])
        auth = entry.get("auth")
        if auth:
            try:
                user, _, secret = base64.b64decode(auth).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise InvalidArgument(f"{self.path}: bad auth entry for {key}") from None
            return Credentials(user, secret)
        if entry.get("username") and entry.get("password"):
            return Credentials(entry["username"], entry["password"])
        return None

    def store(self, registry: str | None, creds: Credentials) -> None:
        """Save ``creds`` for ``registry`` (through the helper when one is configured)."""
        key = registry_key(registry)
        helper = self.helper_for(registry)
        doc = self._load()
        auths = doc.setdefault("auths", {})
        if helper:
            _helper_call(helper, "store", json.dumps(
                {"ServerURL": key, "Username": creds.username, "Secret": creds.secret}))
            auths[key] = {}
        else:
            token = base64.b64encode(f"{creds.username}:{creds.secret}".encode()).decode()
            auths[key] = {"auth": token}
        self._save(doc)

    def erase(self, registry: str | None) -> bool:
        """Forget the credentials for ``registry``; returns whether any were stored."""
        key = registry_key(registry)
        helper = self.helper_for(registry)
        doc = self._load()
        auths = doc.get("auths") or {}
        found = key in auths
        if helper:
            try:
                _helper_call(helper, "erase", key)
                found = True
            except RegistryError:
                pass
        if key in auths:
            del auths[key]
            self._save(doc)
        return found


def _helper_call(helper: str, verb: str, data: str) -> str:
    program = f"docker-credential-{helper}"
    try:
        proc = subprocess.run([program, verb], input=data.encode(), capture_output=True,
                              timeout=60)
    except FileNotFoundError:
        raise RegistryError(f"credential helper not found: {program}") from None
    except subprocess.TimeoutExpired:
        raise RegistryError(f"credential helper timed out: {program} {verb}") from None
    out = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0:
        # The helper's own message, which by protocol never holds the secret.
        reason = out.splitlines()[0] if out else f"exit status {proc.returncode}"
        raise RegistryError(f"{program} {verb}: {reason}")
    return out


def _helper_get(helper: str, key: str) -> Credentials | None:
    try:
        out = _helper_call(helper, "get", key)
    except RegistryError as exc:
        if "credentials not found" in str(exc).lower():
            return None
        raise
    try:
        doc = json.loads(out)
    except json.JSONDecodeError:
        raise RegistryError(f"docker-credential-{helper} get: invalid answer") from None
    if not doc.get("Secret"):
        return None
    return Credentials(doc.get("Username") or "", doc["Secret"])
