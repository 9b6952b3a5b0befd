"""seccomp_bpf compiles OCI profiles as runc does; its ENOSYS stub means what runc's patchbpf means.

The programs are run here by a small classic-BPF interpreter over ``struct seccomp_data``
(syscall number, audit architecture), so the answers are the ones the kernel would give.
"""

from __future__ import annotations

import ctypes.util
import struct

import pytest

from portside.engine.runtime import seccomp_bpf

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(not ctypes.util.find_library("seccomp"), reason="libseccomp missing"),
]

X86_64, I386, X32_BIT, AARCH64 = 0xC000003E, 0x40000003, 0x40000000, 0xC00000B7
ALLOW, ENOSYS, EPERM, KILL = 0x7FFF0000, 0x00050026, 0x00050001, 0x00000000


def run_bpf(program: bytes, nr: int, arch: int) -> int:
    """The action ``program`` returns for syscall ``nr`` on ``arch`` (all arguments 0)."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, *([0] * 6))
    acc, pc = 0, 0
    insns = [struct.unpack("=HBBI", program[i:i + 8]) for i in range(0, len(program), 8)]
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == 0x20:  # ld [k]
            acc = struct.unpack_from("=I", data, k)[0]
        elif code == 0x06:  # ret k
            return k
        elif code == 0x05:  # ja k
            pc += k
        elif code in (0x15, 0x25, 0x35, 0x45):  # jeq, jgt, jge, jset
            hit = {0x15: acc == k, 0x25: acc > k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += jt if hit else jf
        elif code == 0x54:  # and k
            acc &= k
        else:
            raise AssertionError(f"instruction {code:#x} not interpreted")


PROFILE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [
        {"names": ["read", "write", "exit", "exit_group", "openat"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        {"names": ["no_such_syscall"], "action": "SCMP_ACT_ALLOW"},
    ],
}


def test_calls_beyond_the_profile_get_enosys_others_follow_the_rules():
    prog = seccomp_bpf.compile_filter(PROFILE)
    assert run_bpf(prog, 1, X86_64) == ALLOW                     # write
    assert run_bpf(prog, 257, X86_64) == ALLOW                   # openat (the largest named)
    assert run_bpf(prog, 100, X86_64) == EPERM                   # times: not named
    assert run_bpf(prog, 258, X86_64) == ENOSYS                  # above openat
    assert run_bpf(prog, 165, X86_64) == ENOSYS                  # mount's own errnoRet
    assert run_bpf(prog, 4, I386) == ALLOW                       # write on i386
    assert run_bpf(prog, 100, I386) == EPERM                     # fstatfs: not named
    assert run_bpf(prog, 296, I386) == ENOSYS                    # above i386's openat (295)
    assert run_bpf(prog, 1000, I386) == ENOSYS
    assert run_bpf(prog, X32_BIT | 1, X86_64) == ALLOW           # x32 write
    assert run_bpf(prog, X32_BIT | 1000, X86_64) == ENOSYS
    assert run_bpf(prog, 1, AARCH64) == KILL                     # not in the filter: libseccomp


def test_an_allowing_default_gets_no_stub_and_default_actions_are_skipped():
    allow = dict(PROFILE, defaultAction="SCMP_ACT_ALLOW",
                 syscalls=[{"names": ["mount"], "action": "SCMP_ACT_ERRNO"}])
    prog = seccomp_bpf.compile_filter(allow)
    assert run_bpf(prog, 1000, X86_64) == ALLOW
    assert run_bpf(prog, 165, X86_64) == EPERM                   # ERRNO without errnoRet
    assert struct.unpack_from("=HBBI", prog)[3] == 4             # libseccomp's ld [4] first
    # a rule that says what the default says is left out, as libcontainer does
    same = dict(PROFILE, syscalls=PROFILE["syscalls"] + [{"names": ["times"],
                                                          "action": "SCMP_ACT_ERRNO"}])
    assert seccomp_bpf.compile_filter(same) == seccomp_bpf.compile_filter(PROFILE)


def test_same_profile_same_program_and_refusals():
    assert seccomp_bpf.compile_filter(PROFILE) == seccomp_bpf.compile_filter(PROFILE)
    for bad in ({"flags": ["SECCOMP_FILTER_FLAG_LOG"]}, {"listenerPath": "/x"},
                {"architectures": ["SCMP_ARCH_S390X"]},
                {"syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}):
        with pytest.raises(seccomp_bpf.Unsupported):
            seccomp_bpf.compile_filter(dict(PROFILE, **bad))


def test_argument_conditions_on_one_argument_become_separate_rules():
    prof = dict(PROFILE, syscalls=[{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                                    "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                                             {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}])
    prog = seccomp_bpf.compile_filter(prof)  # one rule with both would be refused by libseccomp
    assert run_bpf(prog, 135, X86_64) == ALLOW                   # personality(0)
