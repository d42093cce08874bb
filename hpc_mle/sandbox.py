"""Sandboxes: turn one plan (mounts, environment, command) into the argv of a runtime.

- `bwrap`: bubblewrap. Only the system directories, the Python installation, the public data and
  the attempt's own folders exist inside; the data root (private answers) is never mounted, and the
  data packages the mini benchmark was built from are covered by empty folders. Own pid, ipc and
  uts namespaces, no network unless asked, a new session, dies with its parent, a seccomp filter
  (hpc_mle/syscall_filter.py). Started by an ordinary user, bwrap's user namespace leaves the agent
  no capabilities; started by root, bwrap keeps only what `setpriv` needs to become `agent_uid`
  (a real unprivileged uid: root in a namespace would still own the host's root files), and
  `setpriv` drops those too, bounding set included. The agent's environment reaches bwrap through
  a file descriptor (`--args FD`), never its argv, which every user of the node can read.
- `apptainer`: `apptainer exec --containall --cleanenv --no-privs --drop-caps ALL --no-eval`
  (+ `--nv` with GPUs), a scratch home, binds for the same folders, the environment from a
  harness-private file; optional `--net --network none`; root also gets the seccomp profile.
- `none`: a plain subprocess for debugging; the contract's `/home/...` paths are mapped to the host
  folders through the environment. Reports mark such results `unsandboxed`.

Resource limits (processes, open files, file size, data segment) are set by `prlimit` before the
runtime starts, so every process of the attempt inherits them and none can raise them back.
Each function is pure (plan in, argv out) so the command lines are easy to test and to show.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("bwrap", "apptainer", "none")
# What a program needs from the host to run at all; nothing under the data root or the user's home.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc")
TMPFS_DIRS = ("/tmp", "/home", "/run")  # empty in every bwrap sandbox before the attempt's binds
READ_ONLY_AFTER_SETUP = ("/", "/dev", "/run")  # bwrap's tmpfs folders; /dev/null and the like stay usable
# Started by root, bwrap keeps only these, which `setpriv` needs to change uid and empty the bounding set.
SETPRIV_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")
# The only APPTAINER_*/SINGULARITY_* variables that reach apptainer: where it caches and unpacks images.
# Every other one can set a command-line flag (APPTAINER_BIND, _HOME, _CONTAIN, _KEEP_PRIVS, _ADD_CAPS, ...)
# or, as APPTAINERENV_*, the agent's environment.
APPTAINER_VARS = tuple(f"{p}_{name}" for p in ("APPTAINER", "SINGULARITY") for name in ("CACHEDIR", "TMPDIR"))


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    writable: bool = False


@dataclass(frozen=True)
class Plan:
    argv: tuple[str, ...]
    mounts: tuple[Mount, ...]
    env: dict[str, str]
    workdir: str = "/home"
    network: bool = False
    gpus: tuple[str, ...] = ()  # the CUDA_VISIBLE_DEVICES values Slurm granted
    image: Path | None = None  # apptainer only
    extra_ro: tuple[Path, ...] = field(default_factory=tuple)  # host dirs visible at the same path (bwrap)
    hide: tuple[Path, ...] = ()  # folders inside extra_ro covered by an empty read-only one (bwrap)
    agent_uid: int | None = None  # bwrap started by root: the agent runs as this uid, without capabilities
    home: Path | None = None  # the host folder that is the agent's /home (on disk, under its quota); None: a tmpfs
    shm_bytes: int | None = None  # bwrap: the size of /dev/shm (memory); None: the kernel's default (half the RAM)


class SandboxError(RuntimeError):
    pass


def python_dirs() -> tuple[Path, ...]:
    """The running Python's installation (and venv), so bwrap sandboxes can run the host's ML stack."""
    dirs = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    return tuple(sorted(d for d in dirs if not any(str(d).startswith(s + "/") for s in SYSTEM_DIRS)))


@functools.cache
def bwrap_sizes_tmpfs() -> bool:
    """Whether the installed bwrap takes `--size` (0.6 and later; RHEL 8 ships 0.4)."""
    try:
        out = subprocess.run(["bwrap", "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    version = tuple(int(p) for p in re.findall(r"\d+", out)[:2])
    return version >= (0, 6)


def nvidia_devices() -> list[str]:
    return sorted(p for p in glob.glob("/dev/nvidia*") if os.path.exists(p))


def _check_hidden(plan: Plan, hidden: list[Path]) -> None:
    """Refuse a plan that would expose a hidden folder (the private answers) inside the sandbox."""
    visible = [m.source for m in plan.mounts] + list(plan.extra_ro)
    for secret in hidden:
        secret = secret.resolve()
        for path in visible:
            path = Path(path).resolve()
            if secret == path or secret.is_relative_to(path):
                raise SandboxError(f"refusing to run: {secret} would be visible inside the sandbox through {path}")


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _created_parents(targets: list[str]) -> list[str]:
    """Folders bwrap creates to hold a mount target. It copies their mode from the source's parents (0700 for
    /root), so they are opened to 0755, or an agent that is not root could not reach its Python."""
    parents: set[str] = set()
    for target in targets:
        parents.update(str(p) for p in Path(target).parents if str(p) != "/")
    keep = (*SYSTEM_DIRS, "/proc", "/dev", *targets)  # mounted, not created by bwrap (and maybe read-only)
    return sorted(p for p in parents if p not in TMPFS_DIRS and not _under(p, keep))


def setpriv_prefix(uid: int) -> list[str]:
    """Become `uid` (group too, no supplementary groups) with no capabilities left in any set."""
    setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
    return [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--"]


def bwrap_env_args(env: dict[str, str]) -> bytes:
    """The `--setenv` arguments, NUL-separated, for `bwrap --args FD`."""
    parts = [item for key, value in sorted(env.items()) for item in ("--setenv", key, value)]
    return b"".join(part.encode() + b"\0" for part in parts)


def bwrap_command(plan: Plan, hidden: list[Path] = (), *, args_fd: int, seccomp_fd: int | None = None) -> list[str]:
    """bwrap's argv. The environment is read from `args_fd` (see bwrap_env_args), the seccomp program from
    `seccomp_fd`; both must be passed to the process (pass_fds)."""
    _check_hidden(plan, list(hidden))
    cmd = ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    if not plan.network:
        cmd.append("--unshare-net")
    for d in SYSTEM_DIRS:
        if os.path.isdir(d):
            cmd += ["--ro-bind", d, d]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    # /home on disk (the agent's quota counts it) or a tmpfs; /dev/shm memory-backed, so sized.
    cmd += ["--bind", str(plan.home), "/home"] if plan.home is not None else ["--tmpfs", "/home"]
    cmd += (["--size", str(plan.shm_bytes)] if plan.shm_bytes is not None else []) + ["--tmpfs", "/dev/shm"]
    cmd += ["--tmpfs", "/run"]
    # Writable for an agent that is not root: its HOME (caches) and /dev/shm (multiprocessing's semaphores).
    cmd += ["--chmod", "1777", "/home", "--chmod", "1777", "/dev/shm"]
    # The attempt's own /tmp (or any mount over a folder holding a Python) goes first, then the Pythons on top,
    # so a Python (or venv) installed under /home or /tmp stays visible.
    under = [m for m in plan.mounts if any(Path(d).is_relative_to(m.target) for d in plan.extra_ro)]
    for m in under:
        cmd += ["--bind" if m.writable else "--ro-bind", str(m.source), m.target]
    for d in plan.extra_ro:
        cmd += ["--ro-bind", str(d), str(d)]
    for d in plan.hide:
        cmd += ["--tmpfs", str(d), "--remount-ro", str(d)]
    if plan.gpus:
        for dev in nvidia_devices():
            cmd += ["--dev-bind", dev, dev]
    for m in [m for m in plan.mounts if m not in under]:
        cmd += ["--bind" if m.writable else "--ro-bind", str(m.source), m.target]
    for parent in _created_parents([str(d) for d in plan.extra_ro] + [m.target for m in plan.mounts]):
        cmd += ["--chmod", "0755", parent]
    # Last, once every mount point exists: bwrap's own memory-backed folders (an ordinary user owns them)
    # become read-only, so the agent writes only where a quota or a size holds it.
    cmd += [a for d in READ_ONLY_AFTER_SETUP for a in ("--remount-ro", d)]
    if plan.agent_uid is not None:
        cmd += ["--cap-drop", "ALL"] + [a for cap in SETPRIV_CAPS for a in ("--cap-add", cap)]
    if seccomp_fd is not None:
        cmd += ["--seccomp", str(seccomp_fd)]
    cmd += ["--clearenv", "--args", str(args_fd), "--chdir", plan.workdir, "--"]
    if plan.agent_uid is not None:
        cmd += setpriv_prefix(plan.agent_uid)
    return cmd + list(plan.argv)


def apptainer_env_file(env: dict[str, str]) -> str:
    """The agent's environment as an `--env-file`: Apptainer reads it as shell, so every value is quoted and
    nothing in it is expanded. HOME is Apptainer's to set (`--home`); it refuses an override."""
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in sorted(env.items()) if key != "HOME")


def apptainer_command(plan: Plan, hidden: list[Path] = (), *, env_file: Path,
                      seccomp_profile: Path | None = None) -> list[str]:
    """apptainer's argv; the environment comes from `env_file` (apptainer_env_file, written 0600 where the
    agent cannot see it). `seccomp_profile` (an OCI JSON profile) only where apptainer runs as root."""
    if plan.image is None:
        raise SandboxError("the apptainer sandbox needs an image: pass --image PATH.sif")
    if plan.home is None:
        raise SandboxError("the apptainer sandbox needs a scratch home folder (Plan.home)")
    _check_hidden(plan, list(hidden))
    cmd = ["apptainer", "exec", "--containall", "--cleanenv", "--no-privs", "--drop-caps", "ALL", "--no-eval",
           "--writable-tmpfs", "--home", f"{plan.home}:/home"]
    if seccomp_profile is not None:
        cmd += ["--security", f"seccomp:{seccomp_profile}"]
    if plan.gpus:
        cmd.append("--nv")
    if not plan.network:
        cmd += ["--net", "--network", "none"]
    for m in plan.mounts:
        cmd += ["--bind", f"{m.source}:{m.target}:{'rw' if m.writable else 'ro'}"]
    cmd += ["--env-file", str(env_file), "--pwd", plan.workdir, str(plan.image), *plan.argv]
    return cmd


def rlimit_prefix(limits: dict[str, int | None]) -> list[str]:
    """`prlimit --nproc=N ... --` for the limits that are set (prlimit's option names: nproc, nofile, fsize, data).

    Each is capped at this process's own hard limit, which an ordinary user cannot raise.
    """
    names = {"nproc": resource.RLIMIT_NPROC, "nofile": resource.RLIMIT_NOFILE, "fsize": resource.RLIMIT_FSIZE,
             "data": resource.RLIMIT_DATA}
    opts = []
    for name, value in limits.items():
        if value is None:
            continue
        hard = resource.getrlimit(names[name])[1]
        value = int(value) if hard == resource.RLIM_INFINITY else min(int(value), hard)
        opts.append(f"--{name}={value}")
    return ["prlimit", *opts, "--"] if opts else []


def host_path(plan: Plan, path: str) -> str:
    """Where a sandbox path lives on the host (for `none`): the longest matching mount target wins."""
    for m in sorted(plan.mounts, key=lambda m: len(m.target), reverse=True):
        if path == m.target or path.startswith(m.target.rstrip("/") + "/"):
            return str(m.source) + path[len(m.target.rstrip("/")):]
    return path


def none_command(plan: Plan) -> tuple[list[str], dict[str, str], str]:
    """(argv, env, cwd) with every contract path rewritten to its host folder."""
    env = {k: host_path(plan, v) for k, v in plan.env.items()}
    argv = [host_path(plan, a) for a in plan.argv]
    return argv, env, host_path(plan, plan.workdir)
