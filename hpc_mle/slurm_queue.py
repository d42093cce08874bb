"""The queue as `squeue` shows it, and `scancel`: what the model server's wait and teardown need.

Below both hpc_mle.slurm (which submits the server's jobs) and hpc_mle.llm.serve (whose teardown
asks which agent arrays are still queued), so neither imports the other for it; hpc_mle.slurm
re-exports the names.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass


class SlurmError(RuntimeError):
    pass


class QueueUnavailable(SlurmError):
    """squeue failed: which jobs are queued is unknown (never 'none')."""


def available() -> bool:
    return shutil.which("sbatch") is not None and shutil.which("squeue") is not None


@dataclass(frozen=True)
class QueuedJob:
    job: str  # as squeue's %i shows it: `<job>_<i>` for an array task, `<job>` for a plain job
    name: str
    state: str  # PENDING, RUNNING, ...
    reason: str  # why it waits: Dependency, JobHeldUser, BeginTime, Resources, ...


def queue_jobs() -> list[QueuedJob]:
    """This user's jobs, one `squeue` call (array tasks one per line); QueueUnavailable if squeue fails.

    Not `squeue -j`: for ids Slurm has already forgotten it fails, and a failure must never read as 'gone'."""
    if not available():
        raise QueueUnavailable("squeue is not on PATH here. Fix: run on a login node of the cluster "
                               "(dev cluster: source slurm/dev/env.sh)")
    try:
        out = subprocess.run(["squeue", "--me", "-h", "-r", "-o", "%i|%j|%T|%r"], capture_output=True, text=True,
                             timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise QueueUnavailable(f"squeue did not answer ({exc}). Fix: check that slurmctld is up (sinfo)") from None
    if out.returncode != 0:
        why = (out.stderr.strip() or out.stdout.strip() or "no message").splitlines()[-1]
        raise QueueUnavailable(f"squeue failed (exit {out.returncode}: {why}). Fix: check SLURM_CONF and that "
                               "the controller answers (sinfo), then run this again")
    rows = []
    for line in out.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 4:
            rows.append(QueuedJob(*(p.strip() for p in parts)))
    return rows


def queue_states(job_ids: list[str]) -> dict[str, str]:
    """State (PENDING, RUNNING, ...) of those of `job_ids` still in the queue; a plain array id matches its tasks.

    Raises QueueUnavailable when squeue fails: the caller must not take that as 'not in the queue'."""
    wanted = {str(j) for j in job_ids if j and str(j) != "nan"}
    if not wanted:
        return {}
    return {q.job: q.state for q in queue_jobs() if q.job in wanted or q.job.split("_")[0] in wanted}


def cancel(job_ids: list[str]) -> None:
    ids = sorted({str(j) for j in job_ids if j and str(j) != "nan"})
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, timeout=60)
