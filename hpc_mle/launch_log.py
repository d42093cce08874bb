"""What a sweep's launches recorded (`<sweep>/launches.jsonl`) and the job names that tie squeue's entries to it.

Below hpc_mle.slurm (which writes the log as it submits) so that `hpc_mle.status` can read it, and match the
queue to attempts, without importing the submitter: the analysis job, which slurm submits, settles states
through status. hpc_mle.slurm re-exports the names.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hpc_mle.slurm_queue import QueuedJob

LAUNCH_LOG = "launches.jsonl"
NAME_PREFIX = ""  # job names start with the sweep's own name (sweep_key), so squeue shows the study first
LEGACY_PREFIX = "hpcmle-"  # jobs submitted before that: `hpcmle-<hash>-<launch>-<role>`
SWEEP_LABEL_CHARS = 40  # of the sweep folder's name, in each job name


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _folder_hash(sweep_dir: Path) -> str:
    return hashlib.sha256(str(Path(sweep_dir).resolve()).encode()).hexdigest()[:8]


def sweep_key(sweep_dir: Path) -> str:
    """`<sweep name>-<hash of its folder>`: every job name of the sweep starts with it. The name tells the
    user which study a job is; the hash keeps two sweeps of one name (other output_root) apart."""
    label = re.sub(r"[^A-Za-z0-9._+-]", "_", Path(sweep_dir).name)[:SWEEP_LABEL_CHARS] or "sweep"
    return f"{label}-{_folder_hash(sweep_dir)}"


def job_name(sweep_dir: Path, launch_id: str, role: str) -> str:
    """`<sweep name>-<hash>-<launch>-<role>`: squeue shows which sweep, launch and array a job is."""
    return f"{NAME_PREFIX}{sweep_key(sweep_dir)}-{launch_id}-{role}"


def sweep_jobs(sweep_dir: Path, queue: list[QueuedJob]) -> list[QueuedJob]:
    """The queue entries that belong to this sweep, by job name (also as named before names led with the sweep's)."""
    prefixes = (f"{NAME_PREFIX}{sweep_key(sweep_dir)}-", f"{LEGACY_PREFIX}{_folder_hash(sweep_dir)}-")
    return [q for q in queue if q.name.startswith(prefixes)]


def _fsync_append(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line and fsync it: it is on disk before the next sbatch."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def log(sweep_dir: Path, event: str, **fields: Any) -> None:
    """One entry of `<sweep>/launches.jsonl`, the write-ahead record of every submission."""
    _fsync_append(Path(sweep_dir) / LAUNCH_LOG, {"at": now(), "event": event, **fields})


def read_log(sweep_dir: Path) -> list[dict[str, Any]]:
    """The entries of launches.jsonl; a line torn by a kill is skipped (it was never acted on)."""
    try:
        lines = (Path(sweep_dir) / LAUNCH_LOG).read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def recorded_tasks(entries: list[dict[str, Any]]) -> dict[str, str]:
    """attempt id -> its latest recorded job (as squeue shows it), from launches.jsonl entries."""
    tasks: dict[str, str] = {}
    for e in entries:
        if e.get("event") == "submitted":
            tasks.update(e.get("tasks") or {})
    return tasks


def recorded_jobs(entries: list[dict[str, Any]]) -> list[str]:
    """Every job id the sweep's launches recorded (agents, grading, analysis, servers, teardowns)."""
    return sorted({e["job"] for e in entries if e.get("event") == "submitted" and e.get("job")})
