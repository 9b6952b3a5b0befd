"""Compile an OCI seccomp profile into the classic BPF program runc would load for it.

runc builds its filter with libseccomp (``seccomp_init``, ``seccomp_arch_add``, one
``seccomp_rule_add_array`` per syscall name in the profile's order, arguments as libcontainer
groups them) and prepends a stub of its own (``patchbpf``) that returns ``ENOSYS`` for syscall
numbers above the highest one the profile names on each architecture, so that syscalls newer
than the profile fail as "not implemented" and the C library falls back. This module makes the
same libseccomp calls through ``ctypes`` (the same shared library runc links) and writes a stub
with the same meaning, so a process that loads the result with ``prctl(PR_SET_SECCOMP)`` is
filtered exactly as one started by ``runc exec``.

Nothing here runs a filter; :func:`compile_filter` returns the program's bytes (``struct
sock_filter`` in host order), which :mod:`fastexec` caches per container.
"""

from __future__ import annotations

import os
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ENOSYS = 38
EPERM = 1


class Unsupported(Exception):
    """A profile this module does not compile as runc would (the caller falls back to runc)."""


# OCI architecture -> (libseccomp's name, the AUDIT_ARCH_* the kernel reports for it)
ARCHES = {
    "SCMP_ARCH_X86_64": ("x86_64", 0xC000003E),
    "SCMP_ARCH_X32": ("x32", 0xC000003E),
    "SCMP_ARCH_X86": ("x86", 0x40000003),
    "SCMP_ARCH_AARCH64": ("aarch64", 0xC00000B7),
    "SCMP_ARCH_ARM": ("arm", 0x40000028),
}
_X32_BIT = 0x40000000

_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
        "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
_SCMP_FLTATR_CTL_NNP = 3


def action(name: str, errno_ret: int | None) -> int:
    """libseccomp's value of an OCI action (libcontainer's mapping: ``SCMP_ACT_ERRNO`` and
    ``SCMP_ACT_TRACE`` without ``errnoRet`` return ``EPERM``; ``SCMP_ACT_KILL`` kills the thread).

    Raises:
        Unsupported: ``SCMP_ACT_NOTIFY`` (needs a listener) or an unknown action.
    """
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return 0x00000000
    if name == "SCMP_ACT_KILL_PROCESS":
        return 0x80000000
    if name == "SCMP_ACT_TRAP":
        return 0x00030000
    if name == "SCMP_ACT_ERRNO":
        return 0x00050000 | ((EPERM if errno_ret is None else int(errno_ret)) & 0xFFFF)
    if name == "SCMP_ACT_TRACE":
        return 0x7FF00000 | ((EPERM if errno_ret is None else int(errno_ret)) & 0xFFFF)
    if name == "SCMP_ACT_LOG":
        return 0x7FFC0000
    if name == "SCMP_ACT_ALLOW":
        return 0x7FFF0000
    raise Unsupported(f"seccomp action {name}")


def _library():
    import ctypes

    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError as exc:
        raise Unsupported(f"libseccomp is not installed: {exc}") from exc
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.c_void_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def compile_filter(profile: dict[str, Any]) -> bytes:
    """The BPF program for an OCI ``linux.seccomp`` object, as runc 1.1 would load it.

    Raises:
        Unsupported: flags, a listener, notify actions, an architecture without a stub here,
            or a profile libseccomp refuses (runc would fail to start the process too).
    """
    import ctypes

    if profile.get("flags") or profile.get("listenerPath"):
        raise Unsupported("seccomp flags or a listener")
    arches = list(profile.get("architectures") or [])
    for arch in arches:
        if arch not in ARCHES:
            raise Unsupported(f"seccomp architecture {arch}")
    default = action(profile.get("defaultAction") or "", profile.get("defaultErrnoRet"))
    lib = _library()

    class ArgCmp(ctypes.Structure):
        _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                    ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]

    ctx = lib.seccomp_init(default)
    if not ctx:
        raise Unsupported("libseccomp refused the default action")
    try:
        tokens = {}
        for arch in arches:
            token = lib.seccomp_arch_resolve_name(ARCHES[arch][0].encode())
            rc = lib.seccomp_arch_add(ctx, token)
            if rc not in (0, -17):  # -EEXIST: the native one is there from the start
                raise Unsupported(f"libseccomp: adding {arch}: {os.strerror(-rc)}")
            tokens[arch] = token
        lib.seccomp_attr_set(ctx, _SCMP_FLTATR_CTL_NNP, 0)
        names: list[str] = []
        for rule in profile.get("syscalls") or []:
            act = action(rule.get("action") or "", rule.get("errnoRet"))
            args = rule.get("args") or []
            for name in rule.get("names") or []:
                names.append(name)
                if act == default:
                    continue  # libcontainer skips a rule that says what the default says
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if nr == -1:
                    continue  # unknown to this libseccomp: runc ignores it too
                if not args:
                    groups: list[list[dict]] = [[]]
                else:
                    counts = [0] * 6
                    for a in args:
                        counts[int(a["index"])] += 1
                    # two conditions on one argument: one rule each (libcontainer's way)
                    groups = [[a] for a in args] if max(counts) > 1 else [list(args)]
                for group in groups:
                    arr = (ArgCmp * max(1, len(group)))()
                    for i, a in enumerate(group):
                        op = _OPS.get(a.get("op", ""))
                        if op is None:
                            raise Unsupported(f"seccomp operator {a.get('op')}")
                        arr[i] = ArgCmp(int(a["index"]), op, int(a.get("value", 0)),
                                        int(a.get("valueTwo", 0)))
                    rc = lib.seccomp_rule_add_array(ctx, act, nr, len(group),
                                                    ctypes.addressof(arr))
                    if rc != 0:
                        raise Unsupported(f"libseccomp: rule for {name}: {os.strerror(-rc)}")
        program = _export(lib, ctx)
    finally:
        lib.seccomp_release(ctx)
    if _allows(profile.get("defaultAction") or ""):
        return program
    return _enosys_stub(lib, arches, tokens, names) + program


def _allows(name: str) -> bool:
    # A permissive default needs no ENOSYS stub (patchbpf's isAllowAction).
    return name in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE")


def _export(lib, ctx) -> bytes:
    fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
    try:
        rc = lib.seccomp_export_bpf(ctx, fd)
        if rc != 0:
            raise Unsupported(f"libseccomp: export: {os.strerror(-rc)}")
        size = os.lseek(fd, 0, os.SEEK_END)
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------ the ENOSYS stub

_LD_ABS_W, _JEQ, _JGT, _JSET, _JA, _RET = 0x20, 0x15, 0x25, 0x45, 0x05, 0x06
_RET_ENOSYS = 0x00050000 | ENOSYS


def _enosys_stub(lib, arches: list[str], tokens: dict[str, int], names: list[str]) -> bytes:
    """Instructions that return ENOSYS for a syscall number above the largest the profile
    names on the caller's architecture (x32 calls, bit 30 set, checked against the x32 table),
    and fall through to the filter otherwise (other architectures too)."""
    largest: dict[int, dict[str, int]] = {}  # audit arch -> {libseccomp arch name: max nr}
    for arch in arches:
        scmp_name, audit = ARCHES[arch]
        top = 0
        for name in names:
            nr = lib.seccomp_syscall_resolve_name_arch(tokens[arch], name.encode())
            if nr > top:
                top = nr
        if top:
            largest.setdefault(audit, {})[scmp_name] = top
    # (code, jump-true label, jump-false label, k); labels resolve to relative offsets
    prog: list[tuple[int, str | None, str | None, int | str]] = [(_LD_ABS_W, None, None, 4)]
    for audit in largest:
        prog.append((_JEQ, f"arch{audit}", None, audit))
    prog.append((_JA, None, None, "filter"))
    labels: dict[str, int] = {}
    for audit, tops in largest.items():
        labels[f"arch{audit}"] = len(prog)
        prog.append((_LD_ABS_W, None, None, 0))
        native = tops.get("x86_64", tops.get("x86", tops.get("aarch64", tops.get("arm"))))
        if audit == 0xC000003E:
            x32 = tops.get("x32")
            prog.append((_JSET, f"x32-{audit}", None, _X32_BIT))
            if native is None:
                prog.append((_JA, None, None, "filter"))
            else:
                prog.append((_JGT, "enosys", "filter", native))
            labels[f"x32-{audit}"] = len(prog)
            if x32 is None:
                prog.append((_JA, None, None, "filter"))
            else:
                prog.append((_JGT, "enosys", "filter", x32))
        else:
            prog.append((_JGT, "enosys", "filter", native or 0))
    labels["enosys"] = len(prog)
    prog.append((_RET, None, None, _RET_ENOSYS))
    labels["filter"] = len(prog)
    out = bytearray()
    for i, (code, jt, jf, k) in enumerate(prog):
        def rel(label: str | None) -> int:
            if label is None:
                return 0
            off = labels[label] - i - 1
            if not 0 <= off <= 255:  # pragma: no cover - the stub is a few instructions
                raise Unsupported("seccomp stub jump out of range")
            return off
        kval = labels[k] - i - 1 if isinstance(k, str) else k
        out += struct.pack("=HBBI", code, rel(jt), rel(jf), kval & 0xFFFFFFFF)
    return bytes(out)
