"""Scaffold environments: an LLM scaffold runs in a venv of its own, never in hpc-mle's.

aideml 0.2.2 pins numpy 1.26.2, pandas 2.1.4 and scikit-learn 1.5.0, older than hpc-mle's own stack,
so the two cannot share an environment. For local runs and tests `hpc-mle scaffolds venv aide` builds
the scaffold's venv once, in a cache folder named by a hash of its requirement files, the extras and
the Python version; the next call (or an attempt) finds it and reuses it. On a cluster the scaffold's
Apptainer image carries the same environment (containers/<scaffold>.def).

Requirement files live beside the scaffold's start script: `hpc_mle/agents/<name>/requirements.txt`
(installed with dependencies) and optionally `requirements-nodeps.txt` (installed with --no-deps, for a
package whose metadata asks for far more than it imports, such as aideml).

Inside a bwrap sandbox the venv must be visible: its base interpreter is this Python, which the
sandbox already mounts read-only, and the venv folder itself is mounted read-only at the same path,
with `HPC_MLE_VENV` naming it for the start script.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

from hpc_mle import paths

AGENTS = Path(__file__).parent / "agents"
COMPLETE = ".hpc-mle-complete"  # written last: a venv without it is a broken build and is rebuilt
# The CPU build on this machine's disk; a bare `torch` would resolve to a multi-GB CUDA build.
TORCH_CPU = "torch==2.13.0"


class VenvError(RuntimeError):
    pass


@dataclass(frozen=True)
class Spec:
    """What goes into one scaffold venv."""

    name: str
    requirements: Path
    nodeps: Path | None
    extras: tuple[str, ...] = ()

    def digest(self) -> str:
        """Names the venv: any change of requirements, extras or Python gives a new folder."""
        h = hashlib.sha256()
        for path in (self.requirements, self.nodeps):
            h.update(path.read_bytes() if path else b"-")
        h.update("\n".join(self.extras).encode())
        h.update(f"{sys.implementation.name}-{sys.version_info[0]}.{sys.version_info[1]}".encode())
        return h.hexdigest()[:12]


@dataclass(frozen=True)
class Built:
    path: Path
    seconds: float
    size_bytes: int
    reused: bool


def scaffolds_with_venv() -> list[str]:
    return sorted(p.parent.name for p in AGENTS.glob("*/requirements.txt"))


def spec(name: str, torch: bool = False) -> Spec:
    folder = AGENTS / name
    req = folder / "requirements.txt"
    if not req.is_file():
        known = ", ".join(scaffolds_with_venv()) or "none"
        raise VenvError(f"scaffold {name!r} has no local venv (no {req.relative_to(AGENTS.parent.parent)}); it runs "
                        f"from its image (containers/{name}.def). Scaffolds with a local venv: {known}")
    nodeps = folder / "requirements-nodeps.txt"
    return Spec(name, req, nodeps if nodeps.is_file() else None, (TORCH_CPU,) if torch else ())


def venv_path(s: Spec) -> Path:
    return paths.venvs_root() / f"{s.name}-{s.digest()}"


def find(name: str, torch: bool = False) -> Path | None:
    """The complete venv for `name` if one was built, else None (nothing is built)."""
    path = venv_path(spec(name, torch))
    if (path / COMPLETE).is_file():
        return path
    if not torch:  # a venv built with torch serves a scaffold that does not need it too
        with_torch = venv_path(spec(name, True))
        if (with_torch / COMPLETE).is_file():
            return with_torch
    return None


def require(name: str) -> Path:
    """The venv for `name`, or an error that says the one command that builds it."""
    path = find(name)
    if path is None:
        raise VenvError(f"the {name} scaffold runs in its own venv, which is not built yet. "
                        f"Fix: hpc-mle scaffolds venv {name}   (or: python -m hpc_mle.scaffold_env venv {name}; "
                        f"it goes to {venv_path(spec(name))})")
    return path


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _run(cmd: list[str], log) -> None:
    log("$ " + " ".join(cmd))
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise VenvError(f"command failed (exit {result.returncode}): {' '.join(cmd)}\n{result.stdout[-4000:]}")


def _installer(python: Path, s: Spec) -> list[str]:
    """uv where it is installed (seconds instead of a minute), else pip.

    pip stays in charge of the torch extra: on machines that keep a local torch wheel (and cap the
    version) only pip looks there; uv would fetch a CUDA build of several GB from PyPI.
    """
    uv = shutil.which("uv")
    try:
        from uv import find_uv_bin  # the PyPI package `uv` (a dev dependency), wherever its binary went

        uv = find_uv_bin()
    except (ImportError, FileNotFoundError):
        pass
    if uv and not s.extras:
        return [uv, "pip", "install", "--quiet", "--python", str(python)]
    return [sys.executable, "-m", "pip", "--python", str(python), "install", "--disable-pip-version-check",
            "--no-input"]


def build(name: str, torch: bool = False, force: bool = False, log=lambda _msg: None) -> Built:
    """Build (or reuse) the venv of scaffold `name`; safe to call from several processes at once."""
    s = spec(name, torch)
    path = venv_path(s)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second builder waits, then finds the venv complete
        if (path / COMPLETE).is_file() and not force:
            return Built(path, time.monotonic() - t0, _size(path), True)
        shutil.rmtree(path, ignore_errors=True)
        # Without its own pip: this Python's installer writes into it (`--python`), which saves time and space.
        _run([sys.executable, "-m", "venv", "--without-pip", str(path)], log)
        pip = _installer(path / "bin" / "python", s)
        _run(pip + ["-r", str(s.requirements), *s.extras], log)
        if s.nodeps:
            _run(pip + ["--no-deps", "-r", str(s.nodeps)], log)
        smoke = path / "bin" / "python"
        check = AGENTS / name / "check_env.py"
        if check.is_file():
            _run([str(smoke), str(check)], log)
        (path / COMPLETE).write_text(f"{s.digest()}\n")
    return Built(path, time.monotonic() - t0, _size(path), False)


# ---------------------------------------------------------------- command line


@click.group("scaffolds")
def scaffolds() -> None:
    """Scaffold environments (LLM agents run in their own venv, never in hpc-mle's)."""


@scaffolds.command("venv")
@click.argument("name")
@click.option("--torch", "with_torch", is_flag=True, help=f"Also install {TORCH_CPU} (CPU); AIDE itself does not import it.")
@click.option("--force", is_flag=True, help="Rebuild even if a complete venv exists.")
@click.option("--path-only", is_flag=True, help="Print where the venv is (or would be) and build nothing.")
def venv_command(name: str, with_torch: bool, force: bool, path_only: bool) -> None:
    """Build the venv of scaffold NAME in the cache (reused when present) and print its path."""
    try:
        if path_only:
            click.echo(str(find(name, with_torch) or venv_path(spec(name, with_torch))))
            return
        built = build(name, with_torch, force, log=lambda msg: click.echo(msg, err=True))
    except VenvError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    how = "reused" if built.reused else f"built in {built.seconds:.0f} s"
    click.echo(f"{built.path}  ({how}, {built.size_bytes / 2**20:.0f} MiB)", err=True)
    click.echo(str(built.path))


if __name__ == "__main__":
    scaffolds()
