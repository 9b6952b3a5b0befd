"""Import of a ~200 MB Debian root filesystem tar: portside vs ``docker import`` vs ``podman import``.

Usage: ``.venv/bin/python bench/bench_import.py [--rounds N] [--rootfs FILE]``

Without ``--rootfs`` it uses the Debian layer from the test cache (``make test`` makes it) or
bootstraps one. Each round imports into a fresh state (the image is removed afterwards, so every
run unpacks the whole tar).
"""

from __future__ import annotations

import argparse
import json
import tarfile
from pathlib import Path

from harness import (Docker, Podman, Portside, alternate, available, machine_line, report, timed,
                     workspace)

CACHE = Path("/var/cache/portside-test")


def debian_rootfs(work: Path) -> Path:
    archives = sorted(CACHE.glob("debian-bookworm-python3-*.tar"))
    if not archives:
        raise SystemExit("no cached Debian image: run `make test` first, or pass --rootfs")
    with tarfile.open(archives[0]) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        layer = manifest[0]["Layers"][0]
        out = work / "rootfs.tar"
        with tar.extractfile(layer) as src, open(out, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rootfs", type=Path)
    args = ap.parse_args()
    with workspace() as work:
        rootfs = args.rootfs or debian_rootfs(work)
        size = rootfs.stat().st_size
        print(f"# import of a {size / 1e6:.0f} MB rootfs tar — {machine_line()}\n")
        peers = []
        contenders = {}
        ps = Portside(work)
        peers.append(ps)

        def portside_import() -> float:
            t = timed(lambda: ps("import", str(rootfs), "bench:1"))
            ps("rmi", "bench:1")
            return t

        contenders["portside"] = portside_import
        if available("docker"):
            dk = Docker(work)
            peers.append(dk)

            def docker_import() -> float:
                t = timed(lambda: dk("import", str(rootfs), "bench:1"))
                dk("rmi", "bench:1")
                return t

            contenders["docker"] = docker_import
        else:
            print("docker.io not installed: skipping docker")
        if available("podman"):
            pm = Podman(work)
            peers.append(pm)

            def podman_import() -> float:
                t = timed(lambda: pm("import", str(rootfs), "bench:1"))
                pm("rmi", "bench:1")
                return t

            contenders["podman"] = podman_import
        try:
            results = alternate(contenders, args.rounds)
            report(f"import of a {size / 1e6:.0f} MB rootfs tar", results)
        finally:
            for peer in peers:
                peer.close()


if __name__ == "__main__":
    main()
