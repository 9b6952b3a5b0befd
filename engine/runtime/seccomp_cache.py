"""crun's compiled seccomp filters, kept and handed back to it (``run.oci.seccomp_bpf_data``).

crun compiles the spec's seccomp profile into a BPF program with libseccomp on every start:
~14 ms of the ~23 ms a ``crun run`` takes here. crun has a cache of its own for that program,
but it names entries with a libgcrypt digest and Debian's crun is built without libgcrypt, so it
never stores one. This module is that cache, kept by portside:

* after a start without an entry, the container's monitor links the program crun wrote into its
  state folder (``<crun root>/<id>/seccomp.bpf``) to ``<crun root>/.portside-bpf/<key>``;
* a later start whose key has an entry puts those bytes, base64, in the bundle's annotation
  ``run.oci.seccomp_bpf_data``: crun then skips the compilation and loads them as they are,
  with the spec's seccomp flags, as it loads its own (and writes them to its state folder, where
  ``crun exec`` finds them).

So the filter a container gets is the one crun itself compiled for the same profile. The key
covers everything the compiled program depends on: crun's binary and libseccomp's library (by
file identity: an upgrade of either starts afresh), the kernel (``uname``), the spec's
``linux.seccomp`` section and the annotation that changes how crun compiles it
(``run.oci.seccomp_fail_unknown_syscall``). Without libseccomp where it is looked for, nothing
is cached. The folder is the runtime's state root (root's, or the user's own runtime folder).
"""

from __future__ import annotations

import json
import os

TYPE_CHECKING = False  # annotations only: no typing import at run time (see portside.engine)
if TYPE_CHECKING:
    from typing import Any

    from .oci import OCIRuntime

#: The annotation crun reads a ready program from (base64 of the BPF instructions).
ANNOTATION = "run.oci.seccomp_bpf_data"
#: The annotation that changes how crun compiles (part of the key).
FAIL_UNKNOWN = "run.oci.seccomp_fail_unknown_syscall"
#: The cache's folder, in crun's state root.
FOLDER = ".portside-bpf"
#: Entries kept at most; beyond, the folder is emptied (each entry is ~9 KB; a new profile
#: differs by its capabilities, security options or the image's architecture).
MAX_ENTRIES = 64

_LIBRARY_DIRS = ("/lib", "/usr/lib", "/lib64", "/usr/lib64")


def _identity(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{os.path.realpath(path)}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def libseccomp_identity() -> str | None:
    """The identity of the libseccomp a runtime loads (its multiarch folder first), or None."""
    import sys

    arch = getattr(sys.implementation, "_multiarch", "")
    folders = [f"{d}/{arch}" for d in _LIBRARY_DIRS if arch] + list(_LIBRARY_DIRS)
    for folder in folders:
        found = _identity(f"{folder}/libseccomp.so.2")
        if found:
            return found
    return None


def key(runtime_path: str, seccomp: dict[str, Any], annotations: dict[str, str],
        library: str | None = None) -> str | None:
    """The cache key of a profile for one crun binary, or None when nothing may be cached
    (the binary or libseccomp not found)."""
    crun = _identity(runtime_path)
    library = library or libseccomp_identity()
    if crun is None or library is None:
        return None
    uts = os.uname()
    text = json.dumps([crun, library, uts.release, uts.version, uts.machine,
                       annotations.get(FAIL_UNKNOWN, ""), seccomp],
                      sort_keys=True, separators=(",", ":"))
    try:
        from _blake2 import blake2b  # hashlib's OpenSSL start-up costs ~3 ms per command
    except ImportError:  # pragma: no cover - a Python built without it
        from hashlib import blake2b
    return blake2b(text.encode(), digest_size=20).hexdigest()


def prepare(spec: dict[str, Any], runtime: OCIRuntime) -> str | None:
    """Hand a cached program to crun in ``spec`` (modified in place), or say where the monitor
    should keep the one crun compiles.

    Returns:
        None when nothing is to be stored (a hit, no seccomp, not crun, nothing cacheable);
        else the path the monitor links crun's ``seccomp.bpf`` to once the container started.
    """
    seccomp = (spec.get("linux") or {}).get("seccomp")
    annotations = spec.get("annotations") or {}
    if runtime.name != "crun" or not seccomp or ANNOTATION in annotations:
        return None
    name = key(runtime.path, seccomp, annotations)
    if name is None:
        return None
    folder = runtime.state_root / FOLDER
    path = folder / name
    try:
        with open(path, "rb") as f:
            program = f.read()
    except FileNotFoundError:
        try:
            if len(os.listdir(folder)) >= MAX_ENTRIES:
                for old in os.listdir(folder):
                    os.unlink(folder / old)
        except FileNotFoundError:
            folder.mkdir(mode=0o700, exist_ok=True)
        except OSError:
            return None
        return str(path)
    except OSError:
        return None
    if not program or len(program) % 8:  # whole sock_filter instructions, or compile afresh
        return str(path)
    import binascii

    spec["annotations"] = dict(annotations,
                               **{ANNOTATION: binascii.b2a_base64(program, newline=False)
                                  .decode()})
    return None
