"""The Makefile's decisions before hpc-mle is installed: which Python to install into, and what the dev cluster's
state is after `make test`. Standard library only, run as a file (`python3 hpc_mle/bootstrap.py ...`), since the
package and its dependencies may not be installed yet.

    venv-reason            prints why a project venv is needed (empty line: use this Python as it is)
    cluster-state          prints `up` or `down`: whether the dev Slurm cluster's controller is running
    cluster-note BEFORE    what `make test` left running, and how to stop it (BEFORE: cluster-state before)
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

MARKER = "EXTERNALLY-MANAGED"  # PEP 668: pip refuses to install into a Python whose stdlib dir holds it
SLURM_DIR_ENV = "HPC_MLE_SLURM_DIR"  # the dev cluster's state dir, as slurm/dev/up.sh and down.sh read it
SLURM_DIR_DEFAULT = "/tmp/hpc-mle-slurm"


def venv_reason(stdlib: Path, euid: int, in_venv: bool) -> str:
    """Why `make` must install into a project venv, or "" when this Python can take the install.

    An active venv is used as it is; otherwise a Python marked externally managed (Debian's, Ubuntu's) refuses
    `pip install`, and an ordinary user cannot write into a system-wide one."""
    if in_venv:
        return ""
    if (stdlib / MARKER).is_file():
        return f"this Python is externally managed (PEP 668: {stdlib / MARKER})"
    if euid != 0:
        return "not root: a system-wide Python is not yours to install into"
    return ""


def current_venv_reason() -> str:
    """venv_reason for the Python running this script and the current user."""
    return venv_reason(Path(sysconfig.get_path("stdlib")), os.geteuid(), sys.prefix != sys.base_prefix)


def slurm_dir() -> Path:
    return Path(os.environ.get(SLURM_DIR_ENV, SLURM_DIR_DEFAULT))


def cluster_up(state: Path) -> bool:
    """True when the dev cluster's slurmctld (its pid file under the state dir) is alive."""
    try:
        os.kill(int((state / "run" / "slurmctld.pid").read_text().strip()), 0)
    except PermissionError:  # alive, another user's
        return True
    except (OSError, ValueError):
        return False
    return True


def cluster_note(before: str, now_up: bool, state: Path) -> str:
    """One paragraph for the end of `make test`: whether a dev cluster is left running, and how to stop it."""
    if not now_up:
        return "No development Slurm cluster is running (the Slurm tests skipped or it was stopped)."
    how = "It keeps running for the next `make test`; stop it with `make down` (= bash slurm/dev/down.sh)."
    if before == "up":
        return f"The development Slurm cluster ({state}) was already running and still is. {how}"
    return f"make test started a development Slurm cluster (slurm/dev/up.sh, state in {state}). {how}"


def main(argv: list[str]) -> int:
    if argv[:1] == ["venv-reason"]:
        print(current_venv_reason())
    elif argv[:1] == ["cluster-state"]:
        print("up" if cluster_up(slurm_dir()) else "down")
    elif argv[:1] == ["cluster-note"] and len(argv) == 2:
        print(cluster_note(argv[1], cluster_up(slurm_dir()), slurm_dir()))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
