"""Benchmark (not a test): pull of a ~200 MB image from a local registry, unpacked.

Side by side, alternating, same machine, same run:

* ``portside pull`` (download, verify, unpack into snapshots) into a fresh root each round;
* ``podman pull`` (vfs storage, fresh root each round);
* ``skopeo copy docker://… oci:…`` followed by ``umoci unpack``.

Prints the median of each and the ratios to portside. Run as root:
``.venv/bin/python bench/bench_pull.py [--rounds 5] [--mb 200]``.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from registry_fixture import Registry  # noqa: E402

VENV_PORTSIDE = REPO / ".venv" / "bin" / "portside"


def make_layout(path: Path, total_mb: int, layers: int = 4) -> None:
    """An OCI layout with ``layers`` gzip layers of half-compressible data, ``total_mb`` in all."""
    from portside.engine.image import oci as o

    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        digest = o.sha256_digest(data)
        (blobs / digest[7:]).write_bytes(data)
        return digest

    diff_ids, descs = [], []
    per_layer = total_mb * (1 << 20) // layers
    for i in range(layers):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            left, n = per_layer, 0
            while left > 0:
                size = min(left, 4 << 20)
                # half random, half zeros: realistic-ish compression ratio
                data = os.urandom(size // 2) + bytes(size - size // 2)
                info = tarfile.TarInfo(f"layer{i}/file{n}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                left -= size
                n += 1
        raw = buf.getvalue()
        comp = gzip.compress(raw, compresslevel=1, mtime=0)
        diff_ids.append(o.sha256_digest(raw))
        descs.append(o.descriptor(o.OCI_LAYER_GZIP, put(comp), len(comp)))
    cfg = o.canonical_json(o.new_config(diff_ids=diff_ids, history=[{}] * layers))
    manifest = o.canonical_json(o.new_manifest(o.descriptor(o.OCI_CONFIG, put(cfg), len(cfg)),
                                               descs))
    man = put(manifest)
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": o.OCI_MANIFEST, "digest": man, "size": len(manifest),
         "annotations": {"org.opencontainers.image.ref.name": "big"}}]}))


def timed(cmd: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mb", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-pull-", dir="/var/tmp"))
    reg = Registry(work / "registry").start()
    times: dict[str, list[float]] = {"portside": [], "podman": [], "skopeo+umoci": []}
    try:
        make_layout(work / "layout", args.mb)
        name = f"{reg.host}/bench/big:1"
        subprocess.run(["skopeo", "copy", "--dest-tls-verify=false",
                        f"oci:{work / 'layout'}:big", f"docker://{name}"], check=True,
                       capture_output=True)
        for r in range(args.rounds):
            root = work / f"ps-{r}"
            env = dict(os.environ, PORTSIDE_ROOT=str(root))
            times["portside"].append(timed([str(VENV_PORTSIDE), "pull", "-q", name], env))
            shutil.rmtree(root, ignore_errors=True)

            proot = work / f"pod-{r}"
            runroot = tempfile.mkdtemp(prefix="bp-", dir="/tmp")
            pod = ["podman", "--root", str(proot), "--runroot", runroot, "--storage-driver",
                   "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none"]
            times["podman"].append(timed(pod + ["pull", "-q", "--tls-verify=false", name]))
            subprocess.run(pod + ["system", "reset", "-f"], capture_output=True)
            shutil.rmtree(proot, ignore_errors=True)
            shutil.rmtree(runroot, ignore_errors=True)

            oci_dir, bundle = work / f"oci-{r}", work / f"bundle-{r}"
            start = time.perf_counter()
            subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{name}",
                            f"oci:{oci_dir}:big"], check=True, capture_output=True)
            subprocess.run(["umoci", "unpack", "--image", f"{oci_dir}:big", str(bundle)],
                           check=True, capture_output=True)
            times["skopeo+umoci"].append(time.perf_counter() - start)
            shutil.rmtree(oci_dir, ignore_errors=True)
            shutil.rmtree(bundle, ignore_errors=True)
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()),
                  flush=True)
        push_times = _push_rounds(work, name, args.rounds)
    finally:
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)
    for title, series in ((f"pull of a {args.mb} MB image", times),
                          (f"push of a {args.mb} MB image to an empty registry", push_times)):
        med = {k: statistics.median(v) for k, v in series.items()}
        print(f"\n{title}, median of {args.rounds} rounds:")
        for k, v in med.items():
            print(f"  {k:14s} {v:7.2f} s   ratio to portside {v / med['portside']:.2f}")
    return 0


def _push_rounds(work: Path, name: str, rounds: int) -> dict[str, list[float]]:
    """Push the same image from portside and from podman, each to a registry of its own that
    has none of its blobs, alternating."""
    times: dict[str, list[float]] = {"portside": [], "podman": []}
    root = work / "push-ps"
    env = dict(os.environ, PORTSIDE_ROOT=str(root))
    subprocess.run([str(VENV_PORTSIDE), "pull", "-q", name], check=True, capture_output=True,
                   env=env)
    runroot = tempfile.mkdtemp(prefix="bq-", dir="/tmp")
    pod = ["podman", "--root", str(work / "push-pod"), "--runroot", runroot, "--storage-driver",
           "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none"]
    subprocess.run(pod + ["pull", "-q", "--tls-verify=false", name], check=True,
                   capture_output=True)
    try:
        for r in range(rounds):
            for who in ("portside", "podman"):
                dest = Registry(work / f"push-{who}-{r}").start()
                try:
                    target = f"{dest.host}/bench/pushed:{r}"
                    if who == "portside":
                        subprocess.run([str(VENV_PORTSIDE), "tag", name, target], check=True,
                                       env=env, capture_output=True)
                        times[who].append(timed([str(VENV_PORTSIDE), "push", "-q", target], env))
                    else:
                        times[who].append(timed(pod + ["push", "--tls-verify=false", name,
                                                       f"docker://{target}"]))
                finally:
                    dest.stop()
            print(f"push round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s"
                                                    for k, v in times.items()), flush=True)
    finally:
        subprocess.run(pod + ["system", "reset", "-f"], capture_output=True)
        shutil.rmtree(runroot, ignore_errors=True)
    return times


if __name__ == "__main__":
    sys.exit(main())
