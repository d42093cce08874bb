"""Talking to Slurm: arrays through submitit, and one batched `squeue` when we must ask.

One array per resource group (throttled with %N, split below the site's MaxArraySize), a grading
array that waits for all of them (`afterany`), and an analysis job that waits for the grading.
A served model (`serve: vllm`) adds a server job before the arrays (which poll for it rather than
depend on it) and a teardown job with `afterany` on the arrays that cancels it (hpc_mle/llm/serve.py).
submitit writes each job's script, logs and pickles under `<sweep>/slurm/`; it is used only to submit.
Whether an attempt worked is read from its own `status.json`, never from Slurm's job state.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hpc_mle import plan
from hpc_mle.plan import Attempt

DEFAULT_MAX_ARRAY_SIZE = 1001


class SlurmError(RuntimeError):
    pass


def available() -> bool:
    return shutil.which("sbatch") is not None and shutil.which("squeue") is not None


def max_array_size() -> int:
    """The site's MaxArraySize (array task ids must stay below it)."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return DEFAULT_MAX_ARRAY_SIZE
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.MULTILINE)
    return int(match.group(1)) if match else DEFAULT_MAX_ARRAY_SIZE


@dataclass(frozen=True)
class Submission:
    arrays: dict[str, list[str]]  # group -> array job ids (more than one when chunked)
    grading: str | None
    analysis: str | None
    sbatch_calls: int
    tasks: dict[str, tuple[str, int]]  # attempt id -> (array job id, task index)
    servers: dict[str, str] = field(default_factory=dict)  # served model name -> server job id
    teardowns: dict[str, str] = field(default_factory=dict)  # served model name -> teardown job id


def _executor(folder: Path, cluster: Any, name: str):
    import submitit

    ex = submitit.AutoExecutor(folder=str(folder / "%j"), cluster="slurm")
    params: dict[str, Any] = {"name": name, "slurm_setup": list(cluster.setup)}
    for key in ("partition", "account", "qos", "constraint"):
        if cluster.get(key):
            params[f"slurm_{key}"] = cluster[key]
    if cluster.additional:
        params["slurm_additional_parameters"] = dict(cluster.additional)
    ex.update_parameters(**params)
    return ex


def _gpu_parameters(gpus: int, gpu_type: str | None, cluster: Any) -> dict[str, Any]:
    if not gpus:
        return {}
    if cluster.gpu_syntax == "gpus-per-node":
        return {"gpus_per_node": int(gpus)}
    kind = f"{gpu_type}:" if gpu_type else ""
    return {"slurm_gres": f"gpu:{kind}{gpus}"}


def sbatch_parameters(attempt: Attempt, cluster: Any) -> dict[str, Any]:
    """The resources of an attempt's array, as submitit parameters (shown by --dry-run)."""
    params: dict[str, Any] = {
        "timeout_min": int(attempt.slurm_minutes),
        "cpus_per_task": int(attempt.cpus),
        "mem_gb": int(attempt.mem_gb),
        "slurm_signal_delay_s": int(cluster.signal_delay_s),
        "slurm_array_parallelism": int(cluster.array_throttle),
    }
    params.update(_gpu_parameters(attempt.gpus, attempt.gpu_type, cluster))
    extra = dict(cluster.additional or {})
    extra["requeue"] = True  # node failures and `scontrol requeue` bring the attempt back
    params["slurm_additional_parameters"] = extra
    return params


def server_parameters(model: dict[str, Any], cluster: Any) -> dict[str, Any]:
    """The model server job's resources (serve_conf), as submitit parameters (shown by --dry-run).

    No --requeue: a restarted server would come back at another address while agents hold the old one.
    """
    sc = model["serve_conf"]
    params: dict[str, Any] = {"timeout_min": math.ceil(plan.duration_s(sc["time"]) / 60),
                              "cpus_per_task": int(sc["cpus"]), "mem_gb": int(sc["mem_gb"])}
    params.update(_gpu_parameters(int(sc["gpus"] or 0), sc.get("gpu_type"), cluster))
    return params


def group_attempts(attempts: list[Attempt]) -> dict[str, list[Attempt]]:
    groups: dict[str, list[Attempt]] = defaultdict(list)
    for a in attempts:
        groups[a.group].append(a)
    return dict(groups)


def _submit_server(folder: Path, sweep_dir: Path, model: dict[str, Any], cluster: Any) -> tuple[str, int]:
    """The served model's server job: the one still queued or running for this sweep, else a new one."""
    from hpc_mle.llm import serve

    name = model["name"]
    current = serve.current_job(sweep_dir, name)
    if current and current in queue_states([current]):
        return current, 0
    serve.forget_address(sweep_dir, name)
    ex = _executor(folder, cluster, f"hpc-mle-{Path(sweep_dir).name}-serve-{name}")
    ex.update_parameters(**server_parameters(model, cluster))
    job_id = ex.submit(serve.run_server, str(sweep_dir), model).job_id
    serve.record_job(sweep_dir, name, job_id, [])
    return job_id, 1


def submit(sweep_dir: Path, attempts: list[Attempt], cluster: Any) -> Submission:
    """Submit the model servers, agent arrays, teardowns, the grading array and the analysis job; return at once."""
    from hpc_mle import jobs
    from hpc_mle.llm import serve

    folder = Path(sweep_dir) / "slurm"
    limit = max_array_size()
    arrays: dict[str, list[str]] = {}
    tasks: dict[str, tuple[str, int]] = {}
    calls = 0
    served = serve.sweep_models(sweep_dir, [a.config_id for a in attempts])
    servers: dict[str, str] = {}
    for name, model in served.items():
        servers[name], n = _submit_server(folder, Path(sweep_dir), model, cluster)
        calls += n
    users: dict[str, set[str]] = defaultdict(set)  # served model -> the agent arrays that use it
    for group, members in group_attempts(attempts).items():
        ex = _executor(folder, cluster, f"hpc-mle-{Path(sweep_dir).name}-{group}")
        ex.update_parameters(**sbatch_parameters(members[0], cluster))
        arrays[group] = []
        for start in range(0, len(members), limit):
            chunk = members[start:start + limit]
            submitted = ex.map_array(jobs.agent_task, [str(sweep_dir)] * len(chunk), [a.id for a in chunk],
                                     [int(cluster.max_restarts)] * len(chunk))
            calls += 1
            array_id = submitted[0].job_id.split("_")[0]
            arrays[group].append(array_id)
            for i, a in enumerate(chunk):
                tasks[a.id] = (array_id, i)
                if a.model in served:
                    users[a.model].add(array_id)
    teardowns: dict[str, str] = {}
    for name, ids in users.items():
        serve.record_job(Path(sweep_dir), name, servers[name], sorted(ids))
        ex = _executor(folder, cluster, f"hpc-mle-{Path(sweep_dir).name}-teardown-{name}")
        ex.update_parameters(timeout_min=10, cpus_per_task=1, mem_gb=1,
                             slurm_dependency="afterany:" + ":".join(sorted(ids)))
        teardowns[name] = ex.submit(serve.teardown_task, str(sweep_dir), name, sorted(ids)).job_id
        calls += 1
    all_arrays = [i for ids in arrays.values() for i in ids]
    grading_id = analysis_id = None
    if all_arrays:
        n = max(1, min(int(cluster.grading_tasks), len(attempts)))
        ex = _executor(folder, cluster, f"hpc-mle-{Path(sweep_dir).name}-grading")
        ex.update_parameters(timeout_min=120, cpus_per_task=1, mem_gb=8, slurm_array_parallelism=n,
                             slurm_dependency="afterany:" + ":".join(all_arrays))
        graders = ex.map_array(jobs.grade_task, [str(sweep_dir)] * n, list(range(n)), [n] * n)
        calls += 1
        grading_id = graders[0].job_id.split("_")[0]
        ex = _executor(folder, cluster, f"hpc-mle-{Path(sweep_dir).name}-analysis")
        ex.update_parameters(timeout_min=60, cpus_per_task=1, mem_gb=8, slurm_dependency=f"afterany:{grading_id}")
        analysis_id = ex.submit(jobs.analysis_task, str(sweep_dir)).job_id
        calls += 1
    return Submission(arrays, grading_id, analysis_id, calls, tasks, servers, teardowns)


def queue_states(job_ids: list[str]) -> dict[str, str]:
    """One `squeue` call for many jobs: '<array>_<task>' (and plain ids) -> state (PENDING, RUNNING, ...)."""
    ids = sorted({str(j).split("_")[0] for j in job_ids if j and str(j) != "nan"})
    if not ids or not available():
        return {}
    out = subprocess.run(["squeue", "-h", "-r", "-j", ",".join(ids), "-o", "%i|%T"],
                         capture_output=True, text=True, timeout=60)
    states = {}
    for line in out.stdout.splitlines():
        job, _, state = line.partition("|")
        states[job.strip()] = state.strip()
    return states


def cancel(job_ids: list[str]) -> None:
    ids = sorted({str(j) for j in job_ids if j and str(j) != "nan"})
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, timeout=60)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def record_launch(sweep_dir: Path, submission: Submission, dry_run: bool = False) -> dict[str, Any]:
    """Append this launch to sweep.json and the job ids to the manifest."""
    from hpc_mle.files import atomic_write_json

    sweep = plan.read_sweep(sweep_dir) or {}
    entry = {"at": now(), "arrays": submission.arrays, "grading": submission.grading,
             "analysis": submission.analysis, "sbatch_calls": submission.sbatch_calls,
             "attempts": len(submission.tasks), "servers": submission.servers,
             "teardowns": submission.teardowns}
    sweep.setdefault("launches", []).append(entry)
    atomic_write_json(Path(sweep_dir) / plan.SWEEP_FILE, sweep)
    if submission.tasks:
        plan.update_manifest(sweep_dir, submission.tasks, entry["at"])
    return entry
