"""Contexts: which engine the CLI, the magics and the side panel talk to (Docker's model).

A context names an engine. The built-in ``default`` is portside's own embedded engine on the
state folder (``PORTSIDE_ROOT``); others are made with ``portside context create``::

    portside context create gpu-box --docker host=ssh://me@gpu-box
    portside context create local-docker --docker host=unix:///var/run/docker.sock
    portside context create hpc --slurm partition=gpu,time=4:00:00,root=/scratch/ps/%n
    portside -c gpu-box ps            # one command
    portside context use gpu-box      # every command from now on (this user)

Which context a command uses, first match wins: the ``--context``/``-c`` flag, the
``PORTSIDE_CONTEXT`` variable, the context chosen with ``context use``, ``default``.
``DOCKER_HOST`` and ``DOCKER_CONTEXT`` are never read: a user's portside must not switch engines
because a variable meant for Docker's client is set.

Contexts are stored per user under ``$XDG_CONFIG_HOME/portside/contexts/`` (default
``~/.config/portside/contexts/``), laid out as Docker lays out ``~/.docker/contexts/``::

    meta/<sha256 of the name>/meta.json    {"Name", "Metadata": {"Description"}, "Endpoints"}
    tls/<sha256 of the name>/docker/{ca,cert,key}.pem
    current                                 the name chosen by ``context use``

``Endpoints`` says what kind of engine the context names: ``{"docker": {"Host": …,
"SkipTLSVerify": …}}`` for a Docker Engine, ``{"slurm": {"Options": "partition=gpu,…"}}`` for a
Slurm cluster (:mod:`portside.engine.slurm`). Each kind has a factory in :data:`ENGINE_KINDS`
that makes the engine object from the context's document; every engine object answers the same
model API (``engine.containers``, ``engine.images``, …), so the fronts do not care which it is.
Fronts get it through :func:`portside.engine.api.from_env` (``from_env(context=NAME)``), which
calls :func:`engine_for`.

A Slurm context also keeps state of its own on the client: the records of its containers (which
job, which node), under ``$XDG_DATA_HOME/portside/contexts/<name>/`` (default
``~/.local/share/portside/contexts/<name>/``, :func:`state_dir`). ``context rm`` refuses to
forget a Slurm context whose containers are not removed yet (their jobs would be orphaned),
unless forced.

This module is read by every command (to know which engine to make), so it imports nothing
heavy: selecting ``default`` costs one failed ``open``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .errors import AlreadyExists, Conflict, InvalidArgument, NotFound

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any, Mapping

DEFAULT = "default"
#: Docker's rule for context names.
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.+-]+$")
#: Endpoint kind -> "module:callable" making the engine object from the context's document
#: (``factory(doc, root=…)``); imported only when such a context is used.
ENGINE_KINDS: dict[str, str] = {
    "docker": "portside.engine.docker:DockerEngine.from_context",
    "slurm": "portside.engine.contexts:slurm_engine",
}
_HOST_SCHEMES = ("unix://", "tcp://", "ssh://", "http://", "https://")
_DOCKER_KEYS = ("host", "ca", "cert", "key", "skip-tls-verify")


def config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"))


def contexts_dir() -> Path:
    return config_home() / "portside" / "contexts"


def state_dir(name: str) -> Path:
    """Where a context's engine keeps state on this machine (a Slurm context's records):
    ``$XDG_DATA_HOME/portside/contexts/<name>`` (default ``~/.local/share/…``)."""
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(data) / "portside" / "contexts" / check_name(name)


def _digest(name: str) -> str:
    import hashlib

    return hashlib.sha256(name.encode()).hexdigest()


def check_name(name: str) -> str:
    """``name`` if it is a valid context name. Raises InvalidArgument (Docker's wording)."""
    if not _NAME.match(name or ""):
        raise InvalidArgument(f'context name "{name}" is invalid, names are validated against '
                              f"regexp \"{_NAME.pattern}\"")
    return name


class ContextStore:
    """The contexts of one user. ``base``: the contexts folder (default :func:`contexts_dir`)."""

    def __init__(self, base: str | os.PathLike | None = None) -> None:
        self.base = Path(base) if base is not None else contexts_dir()

    # ------------------------------------------------------------------ paths
    def meta_path(self, name: str) -> Path:
        return self.base / "meta" / _digest(name) / "meta.json"

    def tls_path(self, name: str) -> Path:
        return self.base / "tls" / _digest(name)

    # ------------------------------------------------------------------ reading
    def current(self) -> str:
        """The context chosen with ``context use`` (``default`` when none is)."""
        try:
            with open(self.base / "current", encoding="utf-8") as f:
                name = f.read().strip()
        except FileNotFoundError:
            return DEFAULT
        except OSError as exc:
            raise InvalidArgument(f"cannot read the current context: {exc}") from exc
        return name or DEFAULT

    def exists(self, name: str) -> bool:
        return name == DEFAULT or self.meta_path(name).is_file()

    def get(self, name: str, *, root: str | os.PathLike | None = None) -> dict[str, Any]:
        """The context's document, in Docker's ``context inspect`` shape.

        Raises:
            NotFound: ``context "NAME" does not exist``.
        """
        if name == DEFAULT:
            return default_context(root)
        try:
            doc = json.loads(self.meta_path(name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFound(f'context "{name}" does not exist') from None
        except (OSError, ValueError) as exc:
            raise InvalidArgument(f'context "{name}" cannot be read: {exc}') from exc
        tls = self.tls_path(name)
        material = {kind.name: sorted(p.name for p in kind.iterdir())
                    for kind in sorted(tls.iterdir())} if tls.is_dir() else {}
        return {"Name": doc.get("Name", name), "Metadata": doc.get("Metadata") or {},
                "Endpoints": doc.get("Endpoints") or {}, "TLSMaterial": material,
                "Storage": {"MetadataPath": str(self.meta_path(name).parent),
                            "TLSPath": str(tls)}}

    def list(self, *, root: str | os.PathLike | None = None) -> list[dict[str, Any]]:
        """Every context, ``default`` first, then by name."""
        docs = []
        meta = self.base / "meta"
        if meta.is_dir():
            for entry in meta.iterdir():
                try:
                    doc = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                if isinstance(doc, dict) and doc.get("Name"):
                    docs.append(self.get(doc["Name"]))
        return [default_context(root)] + sorted(docs, key=lambda d: d["Name"])

    # ------------------------------------------------------------------ writing
    def create(self, name: str, *, docker: str | None = None, slurm: str | None = None,
               description: str = "", endpoints: dict[str, Any] | None = None,
               from_: str | None = None) -> dict:
        """Store a new context.

        Args:
            name: its name (Docker's rule; ``default`` is reserved).
            docker: Docker's ``--docker`` text: ``host=URL[,ca=FILE,cert=FILE,key=FILE,
                skip-tls-verify=BOOL]``.
            slurm: ``--slurm``'s text: ``partition=P,time=T,account=A,registry=HOST:PORT,
                root=DIR,conf=SLURM_CONF`` (every key optional; see
                :mod:`portside.engine.slurm.options`).
            description: free text shown by ``context ls``.
            endpoints: the endpoints document as is.
            from_: copy the endpoints of this context.

        Raises:
            InvalidArgument: a bad name, endpoint or option.
            AlreadyExists: a context of that name exists.
        """
        check_name(name)
        if name == DEFAULT:
            raise InvalidArgument(f'"{DEFAULT}" is a reserved context name')
        if self.meta_path(name).exists():
            raise AlreadyExists(f'context "{name}" already exists')
        tls_files: dict[str, Path] = {}
        if docker is not None and slurm is not None:
            raise InvalidArgument("a context names one engine: --docker or --slurm, not both")
        if from_ is not None:
            if docker or slurm is not None or endpoints:
                raise InvalidArgument("--from cannot be combined with endpoint options")
            source = self.get(from_)
            endpoints = dict(source["Endpoints"])
            if not description:
                description = source["Metadata"].get("Description", "")
            src_tls = self.tls_path(from_) / "docker"
            if src_tls.is_dir():
                tls_files = {p.stem: p for p in src_tls.iterdir()}
        elif docker is not None:
            endpoint, tls_files = parse_docker_endpoint(docker)
            endpoints = dict(endpoints or {}, docker=endpoint)
        elif slurm is not None:
            endpoints = dict(endpoints or {}, slurm=parse_slurm_endpoint(slurm))
        if not endpoints:
            raise InvalidArgument("an endpoint is required: --docker host=URL or "
                                  "--slurm partition=…")
        doc = {"Name": name, "Metadata": {"Description": description} if description else {},
               "Endpoints": endpoints}
        self._write(name, doc, tls_files)
        return self.get(name)

    def update(self, name: str, *, docker: str | None = None, slurm: str | None = None,
               description: str | None = None) -> dict:
        """Change a context's description or endpoint (the other fields stay). A context
        names one kind of engine: ``docker`` for a Docker context, ``slurm`` for a Slurm one.

        Raises:
            InvalidArgument: a bad endpoint, or one of the other kind.
        """
        if name == DEFAULT:
            raise InvalidArgument(f'context "{DEFAULT}" cannot be updated')
        doc = self.get(name)
        meta = dict(doc["Metadata"])
        if description is not None:
            meta["Description"] = description
        endpoints = dict(doc["Endpoints"])
        tls_files: dict[str, Path] | None = None
        for flag, value, kind in (("--docker", docker, "docker"), ("--slurm", slurm, "slurm")):
            if value is not None and endpoints and kind not in endpoints:
                raise InvalidArgument(f'context "{name}" is not a {kind.capitalize()} '
                                      f"context: {flag} does not apply")
        if docker is not None:
            endpoint, tls_files = parse_docker_endpoint(docker)
            endpoints["docker"] = endpoint
        if slurm is not None:
            endpoints["slurm"] = parse_slurm_endpoint(slurm)
        self._write(name, {"Name": name, "Metadata": meta, "Endpoints": endpoints}, tls_files)
        return self.get(name)

    def _write(self, name: str, doc: dict, tls_files: dict[str, Path] | None) -> None:
        import shutil
        import tempfile

        path = self.meta_path(name)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.base, 0o700)
        if tls_files is not None:
            tls = self.tls_path(name) / "docker"
            staged = {}
            for kind, src in tls_files.items():
                try:
                    staged[kind] = Path(src).read_bytes()
                except OSError as exc:
                    raise InvalidArgument(f"cannot read {kind} file {src}: {exc.strerror}") \
                        from None
            shutil.rmtree(self.tls_path(name), ignore_errors=True)
            if staged:
                tls.mkdir(parents=True, mode=0o700)
                for kind, data in staged.items():
                    fd = os.open(tls / f"{kind}.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                                 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".meta-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
        os.replace(tmp, path)

    def remove(self, name: str, *, force: bool = False) -> None:
        """Remove a context. The one in use needs ``force`` (and ``default`` is used after);
        so does a Slurm context that still has containers (its records of them go with it).

        Raises:
            InvalidArgument: ``default`` cannot be removed.
            NotFound: no such context.
            Conflict: it is the current context, or a Slurm context with containers, and
                ``force`` is not given.
        """
        import shutil

        if name == DEFAULT:
            raise InvalidArgument(f'context "{DEFAULT}" cannot be removed')
        if not self.meta_path(name).is_file():
            raise NotFound(f'context "{name}" does not exist')
        current = self.current()
        if current == name and not force:
            raise Conflict(f'context "{name}" is in use, set -f flag to force remove')
        state = state_dir(name)
        if not force and "slurm" in self.get(name)["Endpoints"]:
            held = _slurm_containers(state)
            if held:
                raise Conflict(f'context "{name}" still has containers ({", ".join(held)}): '
                               f"remove them first (portside -c {name} rm -f …), or set -f "
                               "to forget them (their jobs run on until Slurm ends them)")
        if current == name:
            self.use(DEFAULT)
        shutil.rmtree(self.meta_path(name).parent, ignore_errors=True)
        shutil.rmtree(self.tls_path(name), ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)

    def use(self, name: str) -> None:
        """Make ``name`` the current context of this user. Raises NotFound."""
        if not self.exists(name):
            raise NotFound(f'context "{name}" does not exist')
        current = self.base / "current"
        if name == DEFAULT:
            try:
                current.unlink()
            except FileNotFoundError:
                pass
            return
        import tempfile

        self.base.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self.base, prefix=".current-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(name + "\n")
        os.replace(tmp, current)


def parse_docker_endpoint(text: str) -> tuple[dict[str, Any], dict[str, Path]]:
    """Docker's ``--docker`` value → (endpoint document, TLS files to store).

    ``host=unix:///var/run/docker.sock``, ``host=tcp://h:2376,ca=ca.pem,cert=c.pem,key=k.pem``,
    ``host=ssh://user@host``. Raises InvalidArgument for anything else.
    """
    fields: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or key not in _DOCKER_KEYS:
            raise InvalidArgument(f"unable to parse docker endpoint option: {part.strip()!r} "
                                  f"(known: {', '.join(_DOCKER_KEYS)})")
        fields[key] = value.strip()
    host = fields.get("host", "")
    if not host:
        raise InvalidArgument("docker endpoint: host=URL is required "
                              "(unix://PATH, tcp://HOST:PORT or ssh://[USER@]HOST)")
    if not host.startswith(_HOST_SCHEMES):
        raise InvalidArgument(f"docker endpoint: unsupported host {host!r} "
                              "(unix://PATH, tcp://HOST:PORT or ssh://[USER@]HOST)")
    if host.startswith("unix://") and not host[len("unix://"):].startswith("/"):
        raise InvalidArgument(f"docker endpoint: {host!r} needs an absolute socket path")
    skip = fields.get("skip-tls-verify", "false").lower()
    if skip not in ("true", "false", "1", "0"):
        raise InvalidArgument(f"docker endpoint: skip-tls-verify must be true or false, "
                              f"not {fields['skip-tls-verify']!r}")
    endpoint = {"Host": host, "SkipTLSVerify": skip in ("true", "1")}
    tls = {k: Path(fields[k]).expanduser() for k in ("ca", "cert", "key") if fields.get(k)}
    if tls and not host.startswith(("tcp://", "https://")):
        raise InvalidArgument("docker endpoint: ca, cert and key apply to tcp:// hosts only")
    if ("cert" in tls) != ("key" in tls):
        raise InvalidArgument("docker endpoint: cert and key go together")
    return endpoint, tls


def parse_slurm_endpoint(text: str) -> dict[str, Any]:
    """``--slurm``'s value → the endpoint document ``{"Options": "partition=gpu,…"}`` (the
    text in its normal form). Raises InvalidArgument (see
    :func:`portside.engine.slurm.options.parse_options`)."""
    from .slurm.options import parse_options

    return {"Options": parse_options(text).to_text()}


def slurm_engine(doc: dict[str, Any]) -> Any:
    """The engine object of a stored Slurm context (:data:`ENGINE_KINDS`'s factory): a
    :class:`~portside.engine.slurm.engine.SlurmEngine` on the context's options, keeping its
    records in :func:`state_dir`, its images in the local engine (``PORTSIDE_ROOT``)."""
    from .slurm.engine import SlurmEngine
    from .slurm.options import parse_options

    options = parse_options(doc["Endpoints"]["slurm"].get("Options") or "")
    return SlurmEngine(options, state_dir(doc["Name"]), name=doc["Name"])


def _slurm_containers(state: Path) -> list[str]:
    """Names of the containers a Slurm context's records still hold (none when it has no
    records yet)."""
    if not state.is_dir():
        return []
    from .slurm.records import RecordStore

    return sorted(rec["Name"] for rec in RecordStore(state).list())


def default_context(root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The built-in ``default`` context: the embedded engine on its state folder."""
    if root is None:
        from .config import default_root

        root = os.environ.get("PORTSIDE_ROOT") or default_root()
    return {"Name": DEFAULT, "Metadata": {"Description": "portside's embedded engine"},
            "Endpoints": {"portside": {"Root": str(root)}}, "TLSMaterial": {},
            "Storage": {"MetadataPath": "<IN MEMORY>", "TLSPath": "<IN MEMORY>"}}


def selected(flag: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The name of the context a command uses: ``flag``, else ``PORTSIDE_CONTEXT``, else the
    current one, else ``default``."""
    if flag:
        return flag
    found = (os.environ if env is None else env).get("PORTSIDE_CONTEXT")
    return found or ContextStore().current()


def engine_for(name: str, *, root: str | os.PathLike | None = None,
               store: ContextStore | None = None):
    """The engine object of context ``name``.

    ``root``: the state folder of the ``default`` context (``--root``); another context with
    it is an error, since it names a different engine.

    Raises:
        NotFound: no such context.
        InvalidArgument: ``root`` with a context other than ``default``, or a context whose
            endpoint this portside does not know.
    """
    if name == DEFAULT:
        from .api import local_engine

        return local_engine(root)
    if root is not None:
        raise InvalidArgument(f'--root applies to the "{DEFAULT}" context only, not to '
                              f'"{name}"')
    doc = (store or ContextStore()).get(name)
    for kind, target in ENGINE_KINDS.items():
        if kind in doc["Endpoints"]:
            import importlib

            module, _, attr = target.partition(":")
            factory: Any = importlib.import_module(module)
            for part in attr.split("."):
                factory = getattr(factory, part)
            return factory(doc)
    raise InvalidArgument(f'context "{name}" has no endpoint this portside can use '
                          f"({', '.join(doc['Endpoints']) or 'none'})")


def kind_of(name: str, *, store: ContextStore | None = None) -> str:
    """The kind of engine context ``name`` names: ``portside`` (``default``), or one of
    :data:`ENGINE_KINDS` (``docker``, ...). Raises NotFound."""
    if name == DEFAULT:
        return "portside"
    endpoints = (store or ContextStore()).get(name)["Endpoints"]
    return next((kind for kind in ENGINE_KINDS if kind in endpoints), "unknown")


def endpoint_of(name: str, *, store: ContextStore | None = None) -> str | None:
    """Where context ``name``'s engine is, in words for people: a Docker host's URL, ...;
    None for ``default`` (the local engine). Raises NotFound."""
    if name == DEFAULT:
        return None
    endpoints = (store or ContextStore()).get(name)["Endpoints"]
    if "docker" in endpoints:
        return endpoints["docker"].get("Host")
    if "slurm" in endpoints:
        return "slurm: " + (endpoints["slurm"].get("Options") or "Slurm's defaults")
    return None


def describe(engine: Any) -> str:
    """A short phrase naming the engine behind a context, for messages."""
    name = getattr(engine, "context", DEFAULT)
    return f'context "{name}"'
