"""What ``info`` says about the OCI runtimes, without importing the runtime package."""

from __future__ import annotations

import shutil


def runtime_summary(config, default: str | None = None) -> dict:
    """Docker's ``Runtimes`` (each installed runtime and its path) and ``DefaultRuntime`` (what
    a new container gets without ``--runtime``: ``default`` when the caller knows it)."""
    runtimes = {name: {"path": shutil.which(name)} for name in ("runc", "crun") if shutil.which(name)}
    default = default or config.runtime or ("runc" if "runc" in runtimes
                                            else next(iter(runtimes), ""))
    return {"Runtimes": runtimes, "DefaultRuntime": default}
