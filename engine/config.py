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
=============================  ===============================  ==========================
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .errors import InvalidArgument


def default_root() -> Path:
    """The state folder when ``PORTSIDE_ROOT`` is not set: system-wide for root, per user otherwise."""
    if os.geteuid() == 0:
        return Path("/var/lib/portside")
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(data) / "portside"


@dataclass
class Config:
    root: Path = field(default_factory=default_root)
    runtime: str | None = None
    cdi_spec_dirs: list[str] = field(default_factory=lambda: ["/etc/cdi", "/var/run/cdi"])
    registry_mirrors: list[str] = field(default_factory=list)
    insecure_registries: list[str] = field(default_factory=list)
    default_subnet: str | None = None
    extra: dict = field(default_factory=dict)


def _config_files() -> list[Path]:
    explicit = os.environ.get("PORTSIDE_CONFIG")
    if explicit:
        return [Path(explicit)]
    home = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return [Path("/etc/portside/config.toml"), Path(home) / "portside" / "config.toml"]


def _split(value: str, sep: str) -> list[str]:
    return [part.strip() for part in value.split(sep) if part.strip()]


def load_config(env: dict[str, str] | None = None) -> Config:
    """Read the config files and environment; raises InvalidArgument for a file that is not TOML."""
    env = os.environ if env is None else env
    merged: dict = {}
    for path in _config_files():
        try:
            with open(path, "rb") as f:
                merged.update(tomllib.load(f))
        except FileNotFoundError:
            continue
        except (tomllib.TOMLDecodeError, OSError) as exc:
            raise InvalidArgument(f"bad config file {path}: {exc}") from exc
    cfg = Config()
    if "root" in merged:
        cfg.root = Path(merged.pop("root"))
    cfg.runtime = merged.pop("runtime", None)
    cfg.cdi_spec_dirs = list(merged.pop("cdi-spec-dirs", cfg.cdi_spec_dirs))
    cfg.registry_mirrors = list(merged.pop("registry-mirrors", []))
    cfg.insecure_registries = list(merged.pop("insecure-registries", []))
    cfg.default_subnet = merged.pop("default-subnet", None)
    cfg.extra = merged
    if env.get("PORTSIDE_ROOT"):
        cfg.root = Path(env["PORTSIDE_ROOT"])
    if env.get("PORTSIDE_RUNTIME"):
        cfg.runtime = env["PORTSIDE_RUNTIME"]
    if env.get("PORTSIDE_CDI_SPEC_DIRS"):
        cfg.cdi_spec_dirs = _split(env["PORTSIDE_CDI_SPEC_DIRS"], ":")
    if env.get("PORTSIDE_REGISTRY_MIRRORS"):
        cfg.registry_mirrors = _split(env["PORTSIDE_REGISTRY_MIRRORS"], ",")
    if env.get("PORTSIDE_INSECURE_REGISTRIES"):
        cfg.insecure_registries = _split(env["PORTSIDE_INSECURE_REGISTRIES"], ",")
    if env.get("PORTSIDE_DEFAULT_SUBNET"):
        cfg.default_subnet = env["PORTSIDE_DEFAULT_SUBNET"]
    return cfg
