"""The seccomp filter every bwrap sandbox runs under, in the spirit of Docker's default profile.

The agent may do anything a program doing machine learning needs; it may not reach the kernel's
escape hatches: file handles that bypass the mount tree (`open_by_handle_at`), new mounts or
namespaces, tracing another process, kernel keyrings, BPF, perf, kernel modules, the clock, swap,
reboot. Denied calls fail with EPERM, so programs see an ordinary refusal. `clone3` answers ENOSYS
(its flags sit in memory a filter cannot read), so glibc falls back to `clone`, whose namespace flags
are checked. The program is built with libseccomp (pyseccomp, or libseccomp's own Python module)
for the running machine's architecture, and bwrap loads it (`--seccomp FD`).
"""

from __future__ import annotations

import errno
import os
from typing import Any

DENIED = (
    "open_by_handle_at", "name_to_handle_at",  # file handles: open any inode of a mounted file system
    "mount", "umount2", "pivot_root", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
    "mount_setattr",
    "setns", "unshare",  # new namespaces are how user-namespace privileges come back
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "keyctl", "add_key", "request_key",
    "bpf", "perf_event_open", "userfaultfd",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "acct", "swapon", "swapoff", "reboot", "syslog", "quotactl",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "iopl", "ioperm",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
)
# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME (linux/sched.h)
CLONE_NEW_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x80)
# Personality flags that switch protections off: ADDR_NO_RANDOMIZE, MMAP_PAGE_ZERO, ADDR_COMPAT_LAYOUT,
# READ_IMPLIES_EXEC. Other personalities (the default, PER_LINUX32, UNAME26) stay allowed.
PERSONALITY_FLAGS = (0x0040000, 0x0100000, 0x0200000, 0x0400000)
PERSONALITY_QUERY = 0xFFFFFFFF  # personality(0xffffffff) only reads the current value


class FilterError(RuntimeError):
    pass


def _seccomp() -> Any:
    """libseccomp's Python module: the Debian/upstream `seccomp` if present, else PyPI's `pyseccomp`."""
    try:
        import seccomp
    except ImportError:
        try:
            import pyseccomp as seccomp
        except (ImportError, OSError) as exc:  # OSError: pyseccomp found no libseccomp.so.2
            raise FilterError(f"no libseccomp for the sandbox's seccomp filter ({exc}). Fix: pip install pyseccomp "
                              "and the system's libseccomp2 (Debian/Ubuntu: apt-get install libseccomp2)") from exc
    return seccomp


def _known(sc: Any, name: str) -> bool:
    """Whether this architecture has the syscall (iopl exists on x86 only, for example)."""
    try:
        return sc.resolve_syscall(sc.Arch.NATIVE, name) >= 0
    except (OSError, ValueError, TypeError):
        return False


def _personality_rules(sc: Any, deny: Any, flt: Any) -> None:
    """Deny a personality value that sets a dangerous flag, whatever else it sets, except the query.

    libseccomp allows one comparison per argument in a rule, so "flag set and value != 0xffffffff" is
    written as "flag set and some other bit clear", one rule per other bit.
    """
    for flag in PERSONALITY_FLAGS:
        for bit in range(32):
            other = 1 << bit
            if other != flag:
                flt.add_rule(deny, "personality", sc.Arg(0, sc.MASKED_EQ, flag | other, flag))


def build(sc: Any = None) -> Any:
    """The filter (default allow) for the native architecture."""
    sc = sc or _seccomp()
    deny = sc.ERRNO(errno.EPERM)
    flt = sc.SyscallFilter(sc.ALLOW)
    for name in DENIED:
        if _known(sc, name):
            flt.add_rule(deny, name)
    for flag in CLONE_NEW_FLAGS:
        flt.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    if _known(sc, "clone3"):
        flt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    _personality_rules(sc, deny, flt)
    return flt


def bpf_fd() -> int:
    """A file descriptor (memfd, at offset 0) holding the compiled BPF program, for `bwrap --seccomp FD`."""
    fd = os.memfd_create("hpc-mle-seccomp", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "wb") as fh:
            build().export_bpf(fh)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def oci_profile() -> dict[str, Any]:
    """The same rules as an OCI seccomp profile (JSON), for `apptainer --security seccomp:FILE`."""
    eperm = {"action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM}
    rules: list[dict[str, Any]] = [{"names": list(DENIED), **eperm},
                                   {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS}]
    rules += [{"names": ["clone"], **eperm,
               "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}]}
              for flag in CLONE_NEW_FLAGS]
    rules += [{"names": ["personality"], **eperm,
               "args": [{"index": 0, "value": flag | (1 << bit), "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}]}
              for flag in PERSONALITY_FLAGS for bit in range(32) if 1 << bit != flag]
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}
