"""The GPUs Slurm allocated to a job, as ``--gpus device=…`` ids the node's portside understands.

Slurm tells a job which GPUs it got as indices into the node's GPU list: ``SLURM_JOB_GPUS`` in the
batch script, ``SLURM_STEP_GPUS`` in a step (``srun``). ``CUDA_VISIBLE_DEVICES`` is *not* that
list: with device constraints Slurm renumbers it from 0 (a second job on a node saw
``CUDA_VISIBLE_DEVICES=0`` while it held GPU 1), so it is never read here.

An index means "the i-th device file of the node's ``gres.conf`` GPU lines" (``File=/dev/nvidia
[0-3]``, or what ``AutoDetect`` found). ``slurmd -N NODE -G`` prints exactly that list for a node,
merged as slurmd sees it, so the mapping is:

    index → device file (``slurmd -G``) → its major:minor → the GPU whose device node has that
    number: a CDI device (``nvidia.com/gpu=…``) or a GPU found by portside's driver discovery

and the container is created with ``--gpus device=<those ids>``, which gives it those device nodes
only; inside, CUDA numbers them from 0, as it does for ``docker run --gpus device=``. When
``slurmd -G`` names no file for an index, the index itself is the id.
"""

from __future__ import annotations

import os
import re
import subprocess

from ..errors import GPUError

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

NVIDIA_KIND = "nvidia.com/gpu"


def allocated_indices(env: Mapping[str, str] | None = None) -> list[int] | None:
    """The node-local GPU indices Slurm gave this job or step, or None when Slurm says nothing
    (no GPU asked for). ``SLURM_STEP_GPUS`` (a step's own) wins over ``SLURM_JOB_GPUS``."""
    env = os.environ if env is None else env
    for key in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):
        value = env.get(key)
        if value is None:
            continue
        out: list[int] = []
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            lo, dash, hi = part.partition("-")
            if not lo.isdigit() or (dash and not hi.isdigit()):
                raise GPUError(f"{key}={value}: not a list of GPU indices")
            out.extend(range(int(lo), int(hi) + 1) if dash else [int(lo)])
        return out
    return None


def expand_brackets(text: str) -> list[str]:
    """Slurm's range syntax: ``/dev/nvidia[0-1,3]`` → the three paths, zero padding kept
    (``gpu[08-10]`` → gpu08, gpu09, gpu10). Several bracket groups multiply out."""
    m = re.search(r"\[([^\]]*)\]", text)
    if not m:
        return [text]
    head, tail = text[:m.start()], text[m.end():]
    out = []
    for part in m.group(1).split(","):
        lo, dash, hi = part.partition("-")
        if dash and lo.isdigit() and hi.isdigit():
            width = len(lo)
            items = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
        else:
            items = [part]
        for item in items:
            out.extend(expand_brackets(head + item + tail))
    return out


def parse_gres_config(text: str, name: str = "gpu") -> list[str]:
    """``slurmd -G`` output → the device files of GRES ``name`` in index order.

    Each line reads ``Gres Name=gpu Type=… Count=2 Index=0 ID=… File=/dev/nvidia[0-1] …``;
    ``Index`` is where the line's files start in the node's list.
    """
    found: list[tuple[int, list[str]]] = []
    for line in text.splitlines():
        if f"Name={name} " not in line + " ":
            continue
        files = re.search(r"\bFile=(\S+)", line)
        if not files or files.group(1) == "(null)":
            continue
        index = re.search(r"\bIndex=(\d+)", line)
        paths = []
        for item in files.group(1).split(","):
            paths.extend(expand_brackets(item))
        found.append((int(index.group(1)) if index else len(found), paths))
    out: list[str] = []
    for _start, paths in sorted(found, key=lambda x: x[0]):
        out.extend(paths)
    return out


def node_gpu_files(node: str, env: Mapping[str, str] | None = None) -> list[str]:
    """The node's GPU device files in Slurm's index order (``slurmd -N NODE -G``); empty when
    slurmd cannot say (not installed here, no ``File=``)."""
    try:
        proc = subprocess.run(["slurmd", "-N", node, "-G"], capture_output=True, timeout=30,
                              stdin=subprocess.DEVNULL,
                              env=dict(os.environ if env is None else env))
    except (OSError, subprocess.TimeoutExpired):
        return []
    text = proc.stdout.decode(errors="replace") + "\n" + proc.stderr.decode(errors="replace")
    return parse_gres_config(text)


def _rdev(path: str) -> int | None:
    import stat

    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_rdev if stat.S_ISCHR(st.st_mode) else None


def _cdi_ids_by_rdev(cdi_dirs: Iterable[str] | None) -> dict[int, str]:
    """major:minor → the CDI ``nvidia.com/gpu`` device name that holds just that node (the
    device with the fewest nodes wins, so ``all`` never does)."""
    from ..gpu.cdi import Registry

    registry = Registry(cdi_dirs)
    best: dict[int, tuple[int, str]] = {}
    for qualified in registry.devices(NVIDIA_KIND):
        dev = registry.device(qualified)
        if dev is None:
            continue
        nodes = dev.edits.device_nodes
        for node in nodes:
            if node.major is not None and node.minor is not None:
                rdev: int | None = os.makedev(node.major, node.minor)
            else:
                rdev = _rdev(node.host_path or node.path)
            if rdev is None:
                continue
            name = qualified.split("=", 1)[1]
            if rdev not in best or len(nodes) < best[rdev][0]:
                best[rdev] = (len(nodes), name)
    return {k: v[1] for k, v in best.items()}


def _discovered_ids_by_rdev(host_root: str) -> dict[int, str]:
    from pathlib import Path

    from ..gpu.discover import NVIDIA_MAJOR, discover

    try:
        host = discover(Path(host_root))
    except GPUError:
        return {}
    return {os.makedev(NVIDIA_MAJOR, g.minor): g.uuid for g in host.gpus}


def device_ids(indices: list[int], files: list[str], *, cdi_dirs: Iterable[str] | None = None,
               host_root: str = "/") -> list[str]:
    """The ``--gpus device=`` ids of the GPUs at ``indices`` of the node's list ``files``.

    Raises:
        GPUError: a device file that is missing or that no CDI spec and no driver knows (the
            message names it and the index).
    """
    if not files:
        return [str(i) for i in indices]
    by_rdev: dict[int, str] | None = None
    out = []
    for index in indices:
        if index >= len(files):
            raise GPUError(f"Slurm allocated GPU {index} but the node lists {len(files)} GPUs")
        path = files[index]
        rdev = _rdev(path)
        if rdev is None:
            raise GPUError(f"Slurm's GPU {index} is {path}, which is not a device node here")
        if by_rdev is None:
            by_rdev = _cdi_ids_by_rdev(cdi_dirs)
            if not by_rdev:
                by_rdev = _discovered_ids_by_rdev(host_root)
        ident = by_rdev.get(rdev)
        if ident is None:
            raise GPUError(f"Slurm's GPU {index} is {path} ({os.major(rdev)}:{os.minor(rdev)}), "
                           "which no CDI spec nor the NVIDIA driver here knows")
        out.append(ident)
    return out


def gpus_value(ids: list[str]) -> str:
    """``--gpus`` text for exactly these GPUs (one CSV field, quoted when it holds commas)."""
    value = "device=" + ",".join(ids)
    return f'"{value}"' if len(ids) > 1 else value
