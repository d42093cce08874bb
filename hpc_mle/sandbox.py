"""Sandboxes: turn one plan (mounts, environment, command) into the argv of a runtime.

- `bwrap`: bubblewrap. Only the system directories, the Python installation, the public data and
  the attempt's own folders exist inside; the data root (private answers) is never mounted. Own pid,
  ipc and uts namespaces, no network unless asked, dies with its parent.
- `apptainer`: `apptainer exec --containall --cleanenv --no-home` (+ `--nv` with GPUs), binds for the
  same folders; optional `--net --network none`.
- `none`: a plain subprocess for debugging; the contract's `/home/...` paths are mapped to the host
  folders through the environment. Reports mark such results `unsandboxed`.

Each function is pure (plan in, argv out) so the command lines are easy to test and to show.
"""

from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("bwrap", "apptainer", "none")
# What a program needs from the host to run at all; nothing under the data root or the user's home.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc")


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


class SandboxError(RuntimeError):
    pass


def python_dirs() -> tuple[Path, ...]:
    """The running Python's installation (and venv), so bwrap sandboxes can run the host's ML stack."""
    dirs = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    return tuple(sorted(d for d in dirs if not any(str(d).startswith(s + "/") for s in SYSTEM_DIRS)))


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


def bwrap_command(plan: Plan, hidden: list[Path] = ()) -> list[str]:
    _check_hidden(plan, list(hidden))
    cmd = ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    if not plan.network:
        cmd.append("--unshare-net")
    for d in SYSTEM_DIRS:
        if os.path.isdir(d):
            cmd += ["--ro-bind", d, d]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/home", "--tmpfs", "/run"]
    # After the empty /home and /tmp, so a Python (or venv) installed under them stays visible.
    for d in plan.extra_ro:
        cmd += ["--ro-bind", str(d), str(d)]
    if plan.gpus:
        for dev in nvidia_devices():
            cmd += ["--dev-bind", dev, dev]
    for m in plan.mounts:
        cmd += ["--bind" if m.writable else "--ro-bind", str(m.source), m.target]
    cmd += ["--clearenv"]
    for key, value in sorted(plan.env.items()):
        cmd += ["--setenv", key, value]
    cmd += ["--chdir", plan.workdir, "--", *plan.argv]
    return cmd


def apptainer_command(plan: Plan, hidden: list[Path] = ()) -> list[str]:
    if plan.image is None:
        raise SandboxError("the apptainer sandbox needs an image: pass --image PATH.sif")
    _check_hidden(plan, list(hidden))
    cmd = ["apptainer", "exec", "--containall", "--cleanenv", "--no-home", "--writable-tmpfs"]
    if plan.gpus:
        cmd.append("--nv")
    if not plan.network:
        cmd += ["--net", "--network", "none"]
    for m in plan.mounts:
        cmd += ["--bind", f"{m.source}:{m.target}:{'rw' if m.writable else 'ro'}"]
    for key, value in sorted(plan.env.items()):
        cmd += ["--env", f"{key}={value}"]
    cmd += ["--pwd", plan.workdir, str(plan.image), *plan.argv]
    return cmd


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
