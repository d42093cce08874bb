"""Talking to Slurm: arrays through submitit, and one batched `squeue` when we must ask.

One array per resource group (throttled with %N, split below the site's MaxArraySize), a grading
array that waits for all of them (`afterany`), and an analysis job that waits for the grading.
A served model (`serve: vllm`) adds a server job before the arrays (which poll for it rather than
depend on it) and a teardown job with `afterany` on the arrays that cancels it (hpc_mle/llm/serve.py).
submitit writes each job's script, logs and pickles under `<sweep>/slurm/`; it is used only to submit.
Whether an attempt worked is read from its own `status.json`, never from Slurm's job state.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
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
LAUNCH_LOG = "launches.jsonl"
NAME_PREFIX = ""  # job names start with the sweep's own name (sweep_key), so squeue shows the study first
LEGACY_PREFIX = "hpcmle-"  # jobs submitted before that: `hpcmle-<hash>-<launch>-<role>`
SWEEP_LABEL_CHARS = 40  # of the sweep folder's name, in each job name
# The fixed resources of the jobs around the agent arrays (submitit parameters).
GRADING_PARAMETERS = {"timeout_min": 120, "cpus_per_task": 1, "mem_gb": 8}
ANALYSIS_PARAMETERS = {"timeout_min": 60, "cpus_per_task": 1, "mem_gb": 8}
TEARDOWN_PARAMETERS = {"timeout_min": 10, "cpus_per_task": 1, "mem_gb": 1}


class SlurmError(RuntimeError):
    pass


class QueueUnavailable(SlurmError):
    """squeue failed: which jobs are queued is unknown (never 'none')."""


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
    tasks: dict[str, str]  # attempt id -> its job as squeue shows it (`<array>_<i>`, or `<job>` for a plain job)
    servers: dict[str, str] = field(default_factory=dict)  # served model name -> server job id
    teardowns: dict[str, str] = field(default_factory=dict)  # served model name -> teardown job id
    launch: str = ""  # the launch id in job names and launches.jsonl


def _executor(folder: Path, cluster: Any, name: str):
    """A submitit executor; `name` is replaced by the job's full name when it is submitted (_sbatch)."""
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


def _sbatch(sweep_dir: Path, launch_id: str, role: str, ex: Any, attempt_ids: list[str], call: Any) -> list[str]:
    """One sbatch, write-ahead: intent logged before, job ids logged right after (before the next one).

    `call(ex)` submits and returns submitit jobs; their ids are recorded exactly as squeue shows them
    (`<job>_<i>` for array tasks, `<job>` for a plain job, which submitit makes of a one-task array)."""
    name = job_name(sweep_dir, launch_id, role)
    ex.update_parameters(name=name)
    log(sweep_dir, "intent", launch=launch_id, role=role, name=name, attempts=attempt_ids)
    jobs = call(ex)
    ids = [j.job_id for j in jobs]
    log(sweep_dir, "submitted", launch=launch_id, role=role, name=name, job=ids[0].split("_")[0],
        tasks=dict(zip(attempt_ids, ids, strict=False)))
    return ids


def _submit_server(folder: Path, sweep_dir: Path, launch_id: str, model: dict[str, Any],
                   cluster: Any) -> tuple[str, int]:
    """The served model's server job: the one still queued or running for this sweep, else a new one."""
    from hpc_mle.llm import serve

    name = model["name"]
    current = serve.current_job(sweep_dir, name)
    if current and current in queue_states([current]):
        return current, 0
    serve.forget_address(sweep_dir, name)
    ex = _executor(folder, cluster, name)
    ex.update_parameters(**server_parameters(model, cluster))
    (job_id,) = _sbatch(sweep_dir, launch_id, f"serve-{name}", ex, [],
                        lambda e: [e.submit(serve.run_server, str(sweep_dir), model)])
    serve.record_job(sweep_dir, name, job_id, [])
    return job_id, 1


def new_launch_id() -> str:
    return secrets.token_hex(3)


def submit(sweep_dir: Path, attempts: list[Attempt], cluster: Any, after: list[str] | None = None,
           launch_id: str | None = None) -> Submission:
    """Submit the model servers, agent arrays, teardowns, the grading array and the analysis job; return at once.

    `after`: agent jobs of earlier launches still in the queue; grading waits for them too (a relaunch
    that submits no attempt still submits grading and analysis when an earlier launch left none)."""
    from hpc_mle import jobs
    from hpc_mle.llm import serve

    sweep_dir = Path(sweep_dir)
    launch_id = launch_id or new_launch_id()
    log(sweep_dir, "launch", launch=launch_id, pid=os.getpid(), attempts=len(attempts))
    folder = sweep_dir / "slurm"
    limit = max_array_size()
    arrays: dict[str, list[str]] = {}
    tasks: dict[str, str] = {}
    calls = 0
    served = serve.sweep_models(sweep_dir, [a.config_id for a in attempts])
    servers: dict[str, str] = {}
    for name, model in served.items():
        servers[name], n = _submit_server(folder, sweep_dir, launch_id, model, cluster)
        calls += n
    users: dict[str, set[str]] = defaultdict(set)  # served model -> the agent arrays that use it
    for k, (group, members) in enumerate(group_attempts(attempts).items()):
        ex = _executor(folder, cluster, group)
        ex.update_parameters(**sbatch_parameters(members[0], cluster))
        arrays[group] = []
        for start in range(0, len(members), limit):
            chunk = members[start:start + limit]
            n = len(chunk)
            ids = _sbatch(sweep_dir, launch_id, f"agents{k}-{start // limit}", ex, [a.id for a in chunk],
                          lambda e, c=chunk, n=n: e.map_array(jobs.agent_task, [str(sweep_dir)] * n,
                                                              [a.id for a in c], [int(cluster.max_restarts)] * n))
            calls += 1
            array_id = ids[0].split("_")[0]
            arrays[group].append(array_id)
            for a, job in zip(chunk, ids, strict=True):
                tasks[a.id] = job
                if a.model in served:
                    users[a.model].add(array_id)
    teardowns: dict[str, str] = {}
    for name, ids in users.items():
        serve.record_job(sweep_dir, name, servers[name], sorted(ids))
        ex = _executor(folder, cluster, name)
        ex.update_parameters(**TEARDOWN_PARAMETERS, slurm_dependency="afterany:" + ":".join(sorted(ids)))
        (teardowns[name],) = _sbatch(sweep_dir, launch_id, f"teardown-{name}", ex, [],
                                     lambda e, n=name, i=ids: [e.submit(serve.teardown_task, str(sweep_dir), n,
                                                                        sorted(i))])
        calls += 1
    waits = sorted({*(i for ids in arrays.values() for i in ids), *(after or [])})
    grading_id = analysis_id = None
    if waits or after is not None:
        n = max(1, min(int(cluster.grading_tasks), max(len(attempts), 1)))
        ex = _executor(folder, cluster, "grading")
        ex.update_parameters(**GRADING_PARAMETERS, slurm_array_parallelism=n)
        if waits:
            ex.update_parameters(slurm_dependency="afterany:" + ":".join(waits))
        graders = _sbatch(sweep_dir, launch_id, "grading", ex, [],
                          lambda e: e.map_array(jobs.grade_task, [str(sweep_dir)] * n, list(range(n)), [n] * n))
        calls += 1
        grading_id = graders[0].split("_")[0]
        ex = _executor(folder, cluster, "analysis")
        ex.update_parameters(**ANALYSIS_PARAMETERS, slurm_dependency=f"afterany:{grading_id}")
        (analysis_id,) = _sbatch(sweep_dir, launch_id, "analysis", ex, [],
                                 lambda e: [e.submit(jobs.analysis_task, str(sweep_dir))])
        calls += 1
    log(sweep_dir, "complete", launch=launch_id)
    return Submission(arrays, grading_id, analysis_id, calls, tasks, servers, teardowns, launch_id)


@dataclass(frozen=True)
class PlannedJob:
    """One sbatch a launch would make, as submitit would write it (for the preflight and --dry-run)."""

    role: str  # as in the job name: agents<k>-<chunk>, grading, analysis, serve-<model>, teardown-<model>
    group: str  # the resource group: the agents' group key, else the role
    tasks: int  # array size (1: a plain job)
    parameters: dict[str, Any]  # submitit's sbatch parameters: time (minutes), cpus_per_task, mem, gres, ...
    script: str  # the sbatch script submitit writes

    def sbatch_lines(self) -> list[str]:
        return [line for line in self.script.splitlines() if line.startswith("#SBATCH")]

    def setup_lines(self) -> list[str]:
        return list(self.parameters.get("setup") or [])


def render(ex: Any, role: str, group: str, tasks: int) -> PlannedJob:
    """The script submitit would submit for `ex` (`tasks` > 1: as map_array's array), written nowhere."""
    from submitit.slurm.slurm import _make_sbatch_string

    inner = ex._executor
    params = dict(inner.parameters)
    extra = {"map_count": tasks} if tasks > 1 else {}
    script = _make_sbatch_string(command=inner._submitit_command_str, folder=inner.folder, **params, **extra)
    return PlannedJob(role, group, tasks, params, script)


def planned_jobs(sweep_dir: Path, attempts: list[Attempt], cluster: Any, served: dict[str, dict[str, Any]],
                 launch_id: str, limit: int = DEFAULT_MAX_ARRAY_SIZE) -> list[PlannedJob]:
    """Every job `submit` would make for `attempts`, in its order; dependencies on job ids not yet known
    are shown as `<...>` (submission fills them in)."""
    sweep_dir = Path(sweep_dir)
    folder = sweep_dir / "slurm"
    out: list[PlannedJob] = []

    def add(ex: Any, role: str, group: str, tasks: int) -> None:
        ex.update_parameters(name=job_name(sweep_dir, launch_id, role))
        out.append(render(ex, role, group, tasks))

    used = {name: model for name, model in served.items() if name in {a.model for a in attempts}}
    for name, model in used.items():
        ex = _executor(folder, cluster, name)
        ex.update_parameters(**server_parameters(model, cluster))
        add(ex, f"serve-{name}", f"serve-{name}", 1)
    for k, (group, members) in enumerate(group_attempts(attempts).items()):
        for start in range(0, len(members), limit):
            ex = _executor(folder, cluster, group)
            ex.update_parameters(**sbatch_parameters(members[0], cluster))
            add(ex, f"agents{k}-{start // limit}", group, len(members[start:start + limit]))
    for name in used:
        ex = _executor(folder, cluster, name)
        ex.update_parameters(**TEARDOWN_PARAMETERS, slurm_dependency="afterany:<agent arrays>")
        add(ex, f"teardown-{name}", "teardown", 1)
    if attempts:
        n = max(1, min(int(cluster.grading_tasks), len(attempts)))
        ex = _executor(folder, cluster, "grading")
        ex.update_parameters(**GRADING_PARAMETERS, slurm_array_parallelism=n,
                             slurm_dependency="afterany:<agent arrays>")
        add(ex, "grading", "grading", n)
        ex = _executor(folder, cluster, "analysis")
        ex.update_parameters(**ANALYSIS_PARAMETERS, slurm_dependency="afterany:<grading array>")
        add(ex, "analysis", "analysis", 1)
    return out


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


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def record_launch(sweep_dir: Path, submission: Submission, dry_run: bool = False) -> dict[str, Any]:
    """Append this launch to sweep.json and the job ids to the manifest (launches.jsonl has them already)."""
    from hpc_mle.files import atomic_write_json

    sweep = plan.read_sweep(sweep_dir) or {}
    entry = {"at": now(), "launch": submission.launch, "arrays": submission.arrays, "grading": submission.grading,
             "analysis": submission.analysis, "sbatch_calls": submission.sbatch_calls,
             "attempts": len(submission.tasks), "servers": submission.servers,
             "teardowns": submission.teardowns}
    sweep.setdefault("launches", []).append(entry)
    atomic_write_json(Path(sweep_dir) / plan.SWEEP_FILE, sweep)
    if submission.tasks:
        plan.update_manifest(sweep_dir, submission.tasks, entry["at"])
    return entry


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


def sweep_jobs(sweep_dir: Path, queue: list[QueuedJob]) -> list[QueuedJob]:
    """The queue entries that belong to this sweep, by job name (also as named before names led with the sweep's)."""
    prefixes = (f"{NAME_PREFIX}{sweep_key(sweep_dir)}-", f"{LEGACY_PREFIX}{_folder_hash(sweep_dir)}-")
    return [q for q in queue if q.name.startswith(prefixes)]


@dataclass(frozen=True)
class Reconciled:
    cancelled: list[str]  # jobs submitted by a killed launch but never recorded
    live_agents: list[str]  # agent array/job ids of this sweep still queued or running
    unfinished: list[str]  # launches killed before their analysis job was recorded


def reconcile(sweep_dir: Path, queue: list[QueuedJob]) -> Reconciled:
    """Settle what killed launches left behind, before anything new is submitted (under the sweep lock).

    A job of this sweep that is in the queue but was never recorded (the launcher died between sbatch's
    return and the write) is cancelled, not adopted: its submitit pickles may never have been written,
    and its attempts are simply submitted again. A launch that never recorded its analysis job is
    `unfinished`: the caller submits grading and analysis again and cancels its old ones."""
    entries = read_log(sweep_dir)
    recorded = {e["name"] for e in entries if e.get("event") == "submitted"}
    mine = sweep_jobs(sweep_dir, queue)
    stray = sorted({q.job.split("_")[0] for q in mine if q.name not in recorded})
    done = {e["launch"] for e in entries if e.get("event") == "complete"
            or (e.get("event") == "submitted" and e.get("role") == "analysis")}
    unfinished = sorted({e["launch"] for e in entries if e.get("event") == "launch"} - done)
    old_tail = {e["job"] for e in entries if e.get("event") == "submitted" and e.get("launch") in unfinished
                and e.get("role") in ("grading", "analysis")}
    drop = sorted(set(stray) | {q.job.split("_")[0] for q in mine if q.job.split("_")[0] in old_tail})
    if drop:
        cancel(drop)
        log(sweep_dir, "cancelled", jobs=drop, why="left by a launch that was killed before it finished")
    agents = {e["name"] for e in entries if e.get("event") == "submitted" and str(e.get("role")).startswith("agents")}
    live = sorted({q.job.split("_")[0] for q in mine if q.name in agents} - set(drop))
    return Reconciled(drop, live, unfinished)


def finish_launches(sweep_dir: Path, launch_ids: list[str], by: str) -> None:
    """Mark killed launches as taken over by launch `by` (which submitted their grading and analysis)."""
    for launch_id in launch_ids:
        log(sweep_dir, "complete", launch=launch_id, by=by)
