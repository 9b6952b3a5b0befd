"""The layers of shared/DESIGN.md, checked on the imports themselves (those inside functions
too): the fronts reach the engine's internals only through the model API, and no lower layer
reaches up to the facade, the models or the fronts.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]

#: The fronts: the CLI's handlers and parser, the magics, widgets, agent client and REST API.
FRONTS = ("engine/commands", "engine/cli.py", "kernel")
#: What a front may not import: the engine's internals (state, processes, kernel resources).
INTERNALS = ("runtime", "store", "network", "volumes", "gpu", "image.store", "image.archive",
             "image.importer", "image.bootstrap", "image.layer", "registry.client",
             "registry.pull", "registry.push", "builder.builder", "builder.run",
             "builder.cache", "builder.context", "rootless", "remote", "reset",
             "tarcompat")
#: The lower layers, and what they may not import: everything above them.
LOWER = ("engine/runtime", "engine/store", "engine/network", "engine/volumes", "engine/gpu",
         "engine/image", "engine/registry", "engine/builder", "engine/rootfs.py",
         "engine/process.py", "engine/lock.py", "engine/recipe.py", "engine/records.py",
         "engine/events.py", "engine/config.py", "engine/errors.py", "engine/listing.py",
         "engine/rootless", "engine/tarcompat.py")
ABOVE = ("api", "models", "commands", "cli", "slurm", "remote", "reset", "docker", "contexts")


def _files(places: tuple[str, ...]) -> list[Path]:
    out: list[Path] = []
    for place in places:
        path = REPO / place
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return [p for p in out if "labextension" not in p.parts]


def _package(path: Path) -> list[str]:
    """The import name of the package a file is in (engine/ -> portside.engine)."""
    rel = path.relative_to(REPO).parent.parts
    return ["portside", *rel]


def imported(path: Path) -> set[str]:
    """Every portside.engine module the file imports, relative imports resolved, with the
    names imported from a package (``from ..runtime import logs`` -> ``runtime.logs``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package(path)[: len(_package(path)) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [module] + [f"{module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("portside.engine."):
                out.add(name[len("portside.engine."):])
    return out


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_resolver_sees_relative_and_deferred_imports():
    sample = REPO / "engine" / "commands" / "containers.py"
    found = imported(sample)
    assert "cli" in found and "errors" in found
    assert "commands.container_options" in found


@pytest.mark.parametrize("path", _files(FRONTS), ids=lambda p: str(p.relative_to(REPO)))
def test_fronts_use_the_model_api_not_the_internals(path):
    bad = sorted(m for m in imported(path) if _under(m, INTERNALS))
    assert not bad, f"{path.relative_to(REPO)} imports engine internals: {bad}"


@pytest.mark.parametrize("path", _files(LOWER), ids=lambda p: str(p.relative_to(REPO)))
def test_lower_layers_never_reach_up(path):
    bad = sorted(m for m in imported(path) if _under(m, ABOVE))
    assert not bad, f"{path.relative_to(REPO)} imports a layer above it: {bad}"
