"""Registries for tests: Debian's ``docker-registry`` on 127.0.0.1, a token server, a stand-in.

* :class:`Registry` — the real distribution registry (``docker-registry serve config.yml``) on a
  random free port with its storage in a temporary folder; plain, htpasswd (bcrypt) basic auth,
  or token auth. It can be killed and restarted on the same port and storage.
* :class:`TokenServer` — Docker's token flow: checks basic credentials and answers with a JWT
  signed (RS256) by a key whose self-signed certificate the registry trusts (``rootcertbundle``);
  the certificate travels in the token's ``x5c`` header.
* :class:`StandIn` — a tiny ``http.server`` that serves fixed manifests and blobs, for faults a
  real registry would refuse to store (tampered blobs, lying sizes, hostile layers).
* :func:`put_image` — writes an image into a plain registry with raw HTTP (no portside code).

Every process and thread is stopped (and waited for) by ``stop()``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.server
import io
import json
import os
import signal
import socket
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

REGISTRY_BIN = "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"registry exited with {proc.returncode}: "
                               f"{proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class Registry:
    """A real registry. ``auth`` is None, ``("htpasswd", path)`` or ``("token", TokenServer)``."""

    def __init__(self, base: Path, auth: tuple | None = None) -> None:
        self.base = Path(base)
        self.storage = self.base / "storage"
        self.storage.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.auth = auth
        self.proc: subprocess.Popen | None = None
        self.log = self.base / "registry.log"

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log:", "  level: error", "  accesslog:", "    disabled: true",
            "storage:", "  filesystem:", f"    rootdirectory: {self.storage}",
            "  delete:", "    enabled: true",
            "http:", f"  addr: 127.0.0.1:{self.port}", "  secret: portside-test-secret",
        ]
        if self.auth and self.auth[0] == "htpasswd":
            lines += ["auth:", "  htpasswd:", "    realm: portside-test",
                      f"    path: {self.auth[1]}"]
        elif self.auth and self.auth[0] == "token":
            ts: TokenServer = self.auth[1]
            lines += ["auth:", "  token:", f"    realm: {ts.realm}", f"    service: {ts.service}",
                      f"    issuer: {ts.issuer}", f"    rootcertbundle: {ts.cert_path}"]
        return "\n".join(lines) + "\n"

    def start(self) -> Registry:
        cfg = self.base / "config.yml"
        cfg.write_text(self._config())
        logf = open(self.log, "ab")
        try:
            self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(cfg)], stdout=logf,
                                         stderr=logf, stdin=subprocess.DEVNULL)
        finally:
            logf.close()
        try:
            _wait_port(self.port, self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL the registry (as a crash would) and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
            self.proc = None

    def blob_path(self, digest: str) -> Path:
        hexd = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


def make_htpasswd(path: Path, user: str, password: str) -> Path:
    out = subprocess.run(["htpasswd", "-Bbn", user, password], check=True, capture_output=True)
    path.write_bytes(out.stdout)
    return path


# --------------------------------------------------------------------------- token server
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Signs registry tokens for known users; anonymous callers get no access at all."""

    def __init__(self, base: Path, users: dict[str, str]) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.users = users
        self.service = "portside-test-registry"
        self.issuer = "portside-test-issuer"
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "portside test token signer")])
        now = dt.datetime.now(dt.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - dt.timedelta(days=1))
                     .not_valid_after(now + dt.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.cert_path = Path(base) / "token-cert.pem"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self._der = self.cert.public_bytes(serialization.Encoding.DER)
        self.requests: list[dict] = []
        self.port = free_port()
        self.realm = f"http://127.0.0.1:{self.port}/token"
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server._handle(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> TokenServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    def sign(self, subject: str, access: list[dict]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self._der).decode()]}
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing_input = (_b64url(json.dumps(header).encode()) + "."
                         + _b64url(json.dumps(claims).encode()))
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(sig)

    def _handle(self, req: http.server.BaseHTTPRequestHandler) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(req.path).query)
        user = None
        auth = req.headers.get("Authorization") or ""
        if auth.startswith("Basic "):
            name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            if self.users.get(name) != password:
                self.requests.append({"user": name, "ok": False})
                body = b'{"details":"incorrect username or password"}'
                req.send_response(401)
                req.send_header("Content-Type", "application/json")
                req.send_header("Content-Length", str(len(body)))
                req.end_headers()
                req.wfile.write(body)
                return
            user = name
        access = []
        for scope in query.get("scope", []):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if user is not None:
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        self.requests.append({"user": user, "ok": True, "scopes": query.get("scope", [])})
        body = json.dumps({"token": self.sign(user or "", access), "expires_in": 300}).encode()
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)


# --------------------------------------------------------------------------- stand-in
class StandIn:
    """Serves ``routes[path] = (content type, bytes)`` under /v2/, with Range support."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[str, bytes]] = {}
        self.seen: list[str] = []
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        routes = self.routes
        seen = self.seen

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802
                self._serve(head=True)

            def do_GET(self) -> None:  # noqa: N802
                self._serve(head=False)

            def _serve(self, head: bool) -> None:
                path = urllib.parse.urlsplit(self.path).path
                seen.append(path)
                if path == "/v2/":
                    found: tuple[str, bytes] | None = ("application/json", b"{}")
                else:
                    found = routes.get(path)
                if found is None:
                    body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
                    self.send_response(404)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                ctype, body = found
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add_image(self, repo: str, tag: str, layers: list[bytes], *,
                  layer_sizes: list[int] | None = None, blob_override: dict | None = None,
                  media_type: str = "application/vnd.oci.image.layer.v1.tar") -> str:
        """Serve an image; ``layer_sizes`` lets the manifest lie, ``blob_override`` swaps bytes."""
        diff_ids = ["sha256:" + hashlib.sha256(b).hexdigest() for b in layers]
        config = json.dumps({"architecture": _arch(), "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": diff_ids},
                             "config": {}, "history": [{} for _ in layers]}).encode()
        cdig = "sha256:" + hashlib.sha256(config).hexdigest()
        self.routes[f"/v2/{repo}/blobs/{cdig}"] = ("application/octet-stream", config)
        descs = []
        for i, (blob, dig) in enumerate(zip(layers, diff_ids)):
            size = layer_sizes[i] if layer_sizes else len(blob)
            served = (blob_override or {}).get(i, blob)
            self.routes[f"/v2/{repo}/blobs/{dig}"] = ("application/octet-stream", served)
            descs.append({"mediaType": media_type, "digest": dig, "size": size})
        manifest = json.dumps({"schemaVersion": 2,
                               "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": cdig, "size": len(config)},
                               "layers": descs}).encode()
        self.routes[f"/v2/{repo}/manifests/{tag}"] = ("application/vnd.oci.image.manifest.v1+json",
                                                       manifest)
        return "sha256:" + hashlib.sha256(manifest).hexdigest()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def _arch() -> str:
    from portside.engine.image.oci import host_platform

    return host_platform()["architecture"]


def tar_layer(entries: list[tuple[str, bytes]]) -> bytes:
    """An uncompressed layer tar of regular files (names used verbatim: may be hostile)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# --------------------------------------------------------------------------- raw uploads
def _req(method: str, url: str, data: bytes | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    return urllib.request.urlopen(request, timeout=30)


def put_blob(host: str, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with _req("POST", f"http://{host}/v2/{repo}/blobs/uploads/", b"") as resp:
        location = urllib.parse.urljoin(f"http://{host}/", resp.headers["Location"])
    sep = "&" if "?" in location else "?"
    with _req("PUT", f"{location}{sep}digest={digest}", data,
              {"Content-Type": "application/octet-stream"}):
        pass
    return digest


def put_image(host: str, repo: str, tag: str, layers: list[bytes],
              media_type: str = "application/vnd.oci.image.layer.v1.tar",
              diff_ids: list[str] | None = None) -> str:
    """Upload blobs, config and manifest to a plain registry; returns the manifest digest."""
    descs = [{"mediaType": media_type, "digest": put_blob(host, repo, b), "size": len(b)}
             for b in layers]
    diff_ids = diff_ids or [d["digest"] for d in descs]
    config = json.dumps({"architecture": _arch(), "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": diff_ids},
                         "config": {"Cmd": ["sh"]}, "history": [{} for _ in layers]}).encode()
    cdig = put_blob(host, repo, config)
    manifest = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": cdig, "size": len(config)},
                           "layers": descs}).encode()
    with _req("PUT", f"http://{host}/v2/{repo}/manifests/{tag}", manifest,
              {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}):
        pass
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


class ThrottledProxy:
    """A TCP proxy that slows registry->client traffic and records the requests it forwards."""

    def __init__(self, upstream_port: int, rate: int = 4 << 20) -> None:
        self.upstream_port = upstream_port
        self.rate = rate
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.requests: list[bytes] = []
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.port))
        self._sock.listen(16)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            self._conns += [client, upstream]
            for src, dst, slow in ((client, upstream, False), (upstream, client, True)):
                t = threading.Thread(target=self._pump, args=(src, dst, slow), daemon=True)
                t.start()
                self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, slow: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not slow:
                    self.requests.append(data)
                else:
                    time.sleep(len(data) / self.rate)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        self._stop.set()
        for s in self._conns:
            try:
                s.close()
            except OSError:
                pass
        self._sock.close()
        for t in self._threads:
            t.join(timeout=5)


def ingest_size(root: Path) -> int:
    """Bytes held by partial downloads in a portside root's ingest folder."""
    total = 0
    for dirpath, _, files in os.walk(root / "content" / "ingest"):
        for f in files:
            if f == "data":
                try:
                    total += os.path.getsize(os.path.join(dirpath, f))
                except OSError:
                    pass
    return total
