"""Engine configuration: TOML files, then ``PORTSIDE_*`` environment variables.

Files are read in order, later ones overriding earlier ones key by key:
``/etc/portside/config.toml`` then ``~/.config/portside/config.toml`` (or ``$PORTSIDE_CONFIG``).
Environment variables override both:

=============================  ===============================  ==========================
variable                       config key                       meaning
=============================  ===============================  ==========================
``PORTSIDE_ROOT``              ``root``                         state folder
``PORTSIDE_RUNTIME``           ``runtime``                      ``runc`` or ``crun``
``PORTSIDE_CDI_SPEC_DIRS``     ``cdi-spec-dirs``                colon-separated folders
``PORTSIDE_REGISTRY_MIRRORS``  ``registry-mirrors``             comma-separated URLs
``PORTSIDE_INSECURE_REGISTRIES`` ``insecure-registries``        comma-separated hosts
``PORTSIDE_DEFAULT_SUBNET``    ``default-subnet``               CIDR of the ``bridge`` network
``PORTSIDE_RESUME_WINDOW``     ``resume-window``                seconds an interrupted pull's
                                                                data is kept for a resume
                                                                (default 3600)
``PORTSIDE_ROOTLESS_NETWORK``  ``rootless-network``             ``slirp4netns`` (default)
                                                                or ``pasta``: the helper of
                                                                a rootless container's
                                                                default network
``PORTSIDE_ROOTLESS_STORAGE``  ``rootless-storage``             ``auto`` (default: the
                                                                kernel's overlayfs, else
                                                                fuse-overlayfs where the
                                                                kernel refuses it),
                                                                ``overlay`` or
                                                                ``fuse-overlayfs``: how a
                                                                rootless container's files
                                                                are assembled
``PORTSIDE_FAST_EXEC``         ``fast-exec``                    ``0``/``false``: ``exec``
                                                                always through the OCI
                                                                runtime (default: without it
                                                                where the result is the same,
                                                                see runtime/fastexec.py)
=============================  ===============================  ==========================

The state folder may name the machine it is on: ``%n`` stands for the node's name (Slurm's
``SLURMD_NODENAME`` when set, else the short host name) and ``%u`` for the user's name, so one
setting (``PORTSIDE_ROOT=/local/portside/%u/%n``) gives every node of a cluster its own store;
``%%`` is a plain ``%``. See :func:`expand_root`.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InvalidArgument

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Mapping

# Kept light on purpose: ``portside build`` reads the state folder from here before it imports
# anything else (see :mod:`portside.engine.builder.memo`), so no dataclasses and no TOML parser
# until a config file exists.


def default_root() -> Path:
    """The state folder when ``PORTSIDE_ROOT`` is not set: system-wide for root, per user otherwise
    (also inside a user's namespace, where the kernel shows the user as uid 0)."""
    if os.geteuid() == 0 and not os.environ.get("PORTSIDE_USERNS"):
        return Path("/var/lib/portside")
    if os.geteuid() == 0:
        from .rootless import in_namespace

        if not in_namespace():
            return Path("/var/lib/portside")
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(data) / "portside"


def expand_root(path: str | os.PathLike) -> Path:
    """A state folder with ``%n`` (this node's name) and ``%u`` (this user's name) filled in.

    >>> os.environ["SLURMD_NODENAME"] = "node17"; expand_root("/scratch/ps/%n")
    PosixPath('/scratch/ps/node17')
    """
    text = os.fspath(path)
    if "%" not in text:
        return Path(text)
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if ch == "%" and nxt == "n":
            out.append(node_name())
        elif ch == "%" and nxt == "u":
            import pwd

            from .rootless import host_ids

            uid = host_ids()[0]  # the user's, also inside their namespace (where they are 0)
            try:
                out.append(pwd.getpwuid(uid).pw_name)
            except KeyError:
                out.append(str(uid))
        elif ch == "%" and nxt == "%":
            out.append("%")
        else:
            out.append(ch)
            i += 1
            continue
        i += 2
    return Path("".join(out))


def node_name() -> str:
    """This machine's name as a cluster knows it: Slurm's ``SLURMD_NODENAME`` (set in jobs and
    prolog/epilog scripts, and what tells apart several slurmd on one host), else the host name
    up to its first dot."""
    name = os.environ.get("SLURMD_NODENAME")
    if name:
        return name
    import socket

    return socket.gethostname().split(".")[0]


class Config:
    """The engine's settings (see the module's table); ``extra`` holds unknown file keys."""

    def __init__(self, root: Path | None = None, runtime: str | None = None,
                 cdi_spec_dirs: list[str] | None = None,
                 registry_mirrors: list[str] | None = None,
                 insecure_registries: list[str] | None = None,
                 default_subnet: str | None = None, resume_window: float | None = None,
                 rootless_network: str | None = None, rootless_storage: str | None = None,
                 fast_exec: bool = True, extra: dict | None = None) -> None:
        self.root = default_root() if root is None else root
        self.runtime = runtime
        self.cdi_spec_dirs = ["/etc/cdi", "/var/run/cdi"] if cdi_spec_dirs is None \
            else cdi_spec_dirs
        self.registry_mirrors = registry_mirrors or []
        self.insecure_registries = insecure_registries or []
        self.default_subnet = default_subnet
        self.resume_window = resume_window  # None: store.leftovers.DEFAULT_RESUME_WINDOW
        self.rootless_network = rootless_network
        self.rootless_storage = rootless_storage  # None: auto (see rootless/storage.py)
        self.fast_exec = fast_exec
        self.extra = extra or {}

    def __repr__(self) -> str:
        return "Config(" + ", ".join(f"{k}={v!r}" for k, v in vars(self).items()) + ")"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and vars(self) == vars(other)


def config_files() -> list[Path]:
    """The config files, in the order they are read (later ones override earlier ones)."""
    explicit = os.environ.get("PORTSIDE_CONFIG")
    if explicit:
        return [Path(explicit)]
    home = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return [Path("/etc/portside/config.toml"), Path(home) / "portside" / "config.toml"]


def _split(value: str, sep: str) -> list[str]:
    return [part.strip() for part in value.split(sep) if part.strip()]


def load_config(env: Mapping[str, str] | None = None) -> Config:
    """Read the config files and environment; raises InvalidArgument for a file that is not TOML."""
    environ: Mapping[str, str] = os.environ if env is None else env
    merged: dict = {}
    for path in config_files():
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise InvalidArgument(f"bad config file {path}: {exc}") from exc
        try:
            import tomllib
        except ImportError:  # pragma: no cover - Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        with f:
            try:
                merged.update(tomllib.load(f))
            except (tomllib.TOMLDecodeError, OSError) as exc:
                raise InvalidArgument(f"bad config file {path}: {exc}") from exc
    cfg = Config()
    if "root" in merged:
        cfg.root = expand_root(merged.pop("root"))
    cfg.runtime = merged.pop("runtime", None)
    cfg.cdi_spec_dirs = list(merged.pop("cdi-spec-dirs", cfg.cdi_spec_dirs))
    cfg.registry_mirrors = list(merged.pop("registry-mirrors", []))
    cfg.insecure_registries = list(merged.pop("insecure-registries", []))
    cfg.default_subnet = merged.pop("default-subnet", None)
    cfg.resume_window = _seconds(merged.pop("resume-window", None), "resume-window")
    cfg.rootless_network = merged.pop("rootless-network", None)
    cfg.rootless_storage = merged.pop("rootless-storage", None)
    cfg.fast_exec = _flag(merged.pop("fast-exec", True), "fast-exec")
    cfg.extra = merged
    if environ.get("PORTSIDE_ROOT"):
        cfg.root = expand_root(environ["PORTSIDE_ROOT"])
    if environ.get("PORTSIDE_RUNTIME"):
        cfg.runtime = environ["PORTSIDE_RUNTIME"]
    if environ.get("PORTSIDE_CDI_SPEC_DIRS"):
        cfg.cdi_spec_dirs = _split(environ["PORTSIDE_CDI_SPEC_DIRS"], ":")
    if environ.get("PORTSIDE_REGISTRY_MIRRORS"):
        cfg.registry_mirrors = _split(environ["PORTSIDE_REGISTRY_MIRRORS"], ",")
    if environ.get("PORTSIDE_INSECURE_REGISTRIES"):
        cfg.insecure_registries = _split(environ["PORTSIDE_INSECURE_REGISTRIES"], ",")
    if environ.get("PORTSIDE_DEFAULT_SUBNET"):
        cfg.default_subnet = environ["PORTSIDE_DEFAULT_SUBNET"]
    if environ.get("PORTSIDE_RESUME_WINDOW"):
        cfg.resume_window = _seconds(environ["PORTSIDE_RESUME_WINDOW"], "PORTSIDE_RESUME_WINDOW")
    if environ.get("PORTSIDE_ROOTLESS_NETWORK"):
        cfg.rootless_network = environ["PORTSIDE_ROOTLESS_NETWORK"]
    if environ.get("PORTSIDE_ROOTLESS_STORAGE"):
        cfg.rootless_storage = environ["PORTSIDE_ROOTLESS_STORAGE"]
    if environ.get("PORTSIDE_FAST_EXEC"):
        cfg.fast_exec = _flag(environ["PORTSIDE_FAST_EXEC"], "PORTSIDE_FAST_EXEC")
    return cfg


def _flag(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise InvalidArgument(f"{name} must be true or false, not {value!r}")


def _seconds(value: object, name: str) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = -1.0
    if seconds < 0 or seconds != seconds:
        raise InvalidArgument(f"{name} must be a number of seconds, not {value!r}")
    return seconds
