"""What ``info`` says about the OCI runtime, without importing the runtime package."""

from __future__ import annotations

import shutil


def runtime_summary(config) -> dict:
    runtimes = {name: {"path": shutil.which(name)} for name in ("runc", "crun") if shutil.which(name)}
    default = config.runtime or ("runc" if "runc" in runtimes else next(iter(runtimes), ""))
    return {"Runtimes": runtimes, "DefaultRuntime": default}
