"""A small seccomp deny-list for the process sandbox, as raw classic BPF for ``bwrap --seccomp``.

Untrusted programs never need these system calls, and several are the usual
doors from an unprivileged user namespace into kernel bugs (io_uring, bpf,
userfaultfd, perf events, keyrings, the new mount API); the ptrace family
would let one process of a session reach into another. They fail with EPERM.
Every other call is allowed: a deny-list keeps Python, g++ and the harness
working unchanged. x86_64 only; other architectures run without a filter
(``filter_program()`` returns None) and the 32-bit and x32 ABIs are refused.
"""
from __future__ import annotations

import errno
import platform
import struct
from functools import lru_cache

_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_RET_K = 0x06
_RET_KILL_PROCESS = 0x80000000
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000

DENIED_X86_64 = {
    "syslog": 103, "acct": 163, "mount": 165, "umount2": 166, "swapon": 167, "swapoff": 168,
    "pivot_root": 155, "init_module": 175, "delete_module": 176, "quotactl": 179,
    "kexec_load": 246, "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272,
    "perf_event_open": 298, "fanotify_init": 300, "name_to_handle_at": 303, "open_by_handle_at": 304,
    "setns": 308, "finit_module": 313, "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428,
    "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    # Reaching into another process of the session: a candidate must never touch the judge
    # that runs beside it (which is also not dumpable, so these fail anyway).
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "pidfd_getfd": 438,
}


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


@lru_cache(maxsize=1)
def filter_program() -> bytes | None:
    """The BPF program (struct sock_filter[]), or None where there is no filter for this machine."""
    if platform.machine() != "x86_64":
        return None
    denied = sorted(DENIED_X86_64.values())
    # Layout: arch check (3), load nr (1), x32 check (1), one jump per denied call, allow, deny.
    n_checks = len(denied)
    prog = [
        _insn(_LD_W_ABS, 0, 0, 4),                          # seccomp_data.arch
        _insn(_JEQ_K, 1, 0, _AUDIT_ARCH_X86_64),
        _insn(_RET_K, 0, 0, _RET_KILL_PROCESS),             # i386 ABI through int 0x80 and such
        _insn(_LD_W_ABS, 0, 0, 0),                          # seccomp_data.nr
        _insn(_JGE_K, n_checks + 1, 0, _X32_SYSCALL_BIT),   # x32 ABI -> deny
    ]
    for i, nr in enumerate(denied):
        prog.append(_insn(_JEQ_K, n_checks - i, 0, nr))     # -> the deny return after "allow"
    prog.append(_insn(_RET_K, 0, 0, _RET_ALLOW))
    prog.append(_insn(_RET_K, 0, 0, _RET_ERRNO | errno.EPERM))
    return b"".join(prog)
