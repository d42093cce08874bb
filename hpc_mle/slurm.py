"""Talking to Slurm: arrays through submitit, and one batched `squeue` when we must ask.

One array per resource group (throttled with %N, split below the site's MaxArraySize), a grading
array that waits for all of them (`afterany`), and an analysis job that waits for the grading.
A served model (`serve: vllm`) adds a server job (past MaxTime, a relay of them) before the arrays
(which start `after` it has started, then poll for its /health) and a teardown job with `afterany` on
the arrays that cancels it (hpc_mle/llm/serve.py).
submitit writes each job's script, logs and pickles under `<sweep>/slurm/`; it is used only to submit.
Whether an attempt worked is read from its own `status.json`, never from Slurm's job state.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import secrets
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpc_mle import plan, status
from hpc_mle.launch_log import LAUNCH_LOG as LAUNCH_LOG  # re-exported: launches.jsonl, job names
from hpc_mle.launch_log import LEGACY_PREFIX as LEGACY_PREFIX
from hpc_mle.launch_log import NAME_PREFIX as NAME_PREFIX
from hpc_mle.launch_log import SWEEP_LABEL_CHARS as SWEEP_LABEL_CHARS
from hpc_mle.launch_log import job_name, log, now, read_log, sweep_jobs
from hpc_mle.launch_log import recorded_jobs as recorded_jobs
from hpc_mle.launch_log import recorded_tasks as recorded_tasks
from hpc_mle.launch_log import sweep_key as sweep_key
from hpc_mle.plan import Attempt
from hpc_mle.slurm_queue import QueuedJob as QueuedJob  # re-exported: the queue is read in slurm_queue
from hpc_mle.slurm_queue import QueueUnavailable as QueueUnavailable
from hpc_mle.slurm_queue import SlurmError as SlurmError
from hpc_mle.slurm_queue import available as available
from hpc_mle.slurm_queue import cancel, queue_states
from hpc_mle.slurm_queue import queue_jobs as queue_jobs

DEFAULT_MAX_ARRAY_SIZE = 1001
OVER_MAX_TIME = ("segment", "refuse")  # cluster.over_max_time: what a --time above the partition's MaxTime does


def one_task(cpus: int) -> dict[str, Any]:
    """One task with all the job's CPUs, on the sbatch lines and on srun's: srun of Slurm 22.05-23.02
    does not inherit --cpus-per-task, and without --ntasks it may start several copies of the attempt."""
    return {"tasks_per_node": 1, "slurm_srun_args": ["--ntasks=1", f"--cpus-per-task={int(cpus)}"]}


# The fixed resources of the jobs around the agent arrays (submitit parameters).
GRADING_PARAMETERS = {"timeout_min": 120, "cpus_per_task": 1, "mem_gb": 8, **one_task(1)}
ANALYSIS_PARAMETERS = {"timeout_min": 60, "cpus_per_task": 1, "mem_gb": 8, **one_task(1)}
TEARDOWN_PARAMETERS = {"timeout_min": 10, "cpus_per_task": 1, "mem_gb": 1, **one_task(1)}


def max_array_size() -> int:
    """The site's MaxArraySize (array task ids must stay below it; 0: the site allows no arrays)."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return DEFAULT_MAX_ARRAY_SIZE
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.MULTILINE)
    return int(match.group(1)) if match else DEFAULT_MAX_ARRAY_SIZE


def chunk_size(site_max: int, max_array_tasks: int | None) -> int:
    """Tasks per agent array: below the site's MaxArraySize and the cluster config's max_array_tasks.

    MaxArraySize=0 means the site takes no arrays: chunks of one, which submitit submits as plain jobs."""
    size = max(1, int(site_max))
    if max_array_tasks:
        size = min(size, max(1, int(max_array_tasks)))
    return size


def share_throttle(total: int, sizes: list[int]) -> list[int]:
    """Split one sweep-wide throttle between the agent arrays of a launch (Slurm's %N counts per array).

    Each array gets total // len(sizes), the first ones one more for the remainder, at least 1 and
    never more than its own size; what a small array cannot use goes to the others. With more arrays
    than `total`, each still gets 1, so up to len(sizes) tasks run at once."""
    if not sizes:
        return []
    shares = [1] * len(sizes)
    left = max(0, int(total) - len(sizes))
    open_ = [i for i, n in enumerate(sizes) if shares[i] < n]
    while left > 0 and open_:
        for i in list(open_):
            if left == 0:
                break
            shares[i] += 1
            left -= 1
            if shares[i] >= sizes[i]:
                open_.remove(i)
    return shares


@dataclass(frozen=True)
class PartitionLimit:
    """A partition's time limits as `scontrol show partition -o` gives them (minutes; None: unlimited)."""

    max_min: float | None
    default_min: float | None
    default: bool  # the cluster's default partition


def parse_partitions(text: str) -> dict[str, PartitionLimit]:
    """The lines of `scontrol show partition -o`: one partition per line, `Key=Value` fields."""
    from hpc_mle.slurm_nodes import parse_time_min

    out: dict[str, PartitionLimit] = {}
    for line in text.splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        name = fields.get("PartitionName")
        if not name:
            continue
        out[name] = PartitionLimit(parse_time_min(fields.get("MaxTime", "UNLIMITED")),
                                   parse_time_min(fields.get("DefaultTime", "NONE").replace("NONE", "")),
                                   fields.get("Default", "NO").upper() == "YES")
    return out


def partition_limits() -> dict[str, PartitionLimit]:
    """Every partition's MaxTime/DefaultTime, one `scontrol` call; {} when Slurm does not answer (no cap)."""
    try:
        out = subprocess.run(["scontrol", "show", "partition", "-o"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return parse_partitions(out.stdout) if out.returncode == 0 else {}


def limit_for(partition: str | None, limits: dict[str, PartitionLimit]) -> PartitionLimit | None:
    """The limits of `partition`, or of the default partition when the config names none."""
    if partition:
        return limits.get(partition)
    return next((lim for lim in limits.values() if lim.default), None)


def within_max_time(params: dict[str, Any], cluster: Any, limits: dict[str, PartitionLimit]) -> dict[str, Any]:
    """GRADING_PARAMETERS, ANALYSIS_PARAMETERS or TEARDOWN_PARAMETERS with --time capped at the partition's MaxTime: a longer grading,
    analysis or teardown job would never start there (it waits with Reason=PartitionTimeLimit). A capped job
    is warned cluster.signal_delay_s before its end, as attempts are, instead of submitit's 90 s, which would
    cut a 2-minute job at half time (submitit ends an uncheckpointable job on that signal)."""
    limit = limit_for(cluster.get("partition"), limits)
    if limit is None or limit.max_min is None or params["timeout_min"] <= limit.max_min:
        return params
    return {**params, "timeout_min": max(1, int(limit.max_min)), "slurm_signal_delay_s": int(cluster.signal_delay_s)}


@dataclass(frozen=True)
class TimePlan:
    """An attempt's --time and how many segments its budget needs (1: it fits one job)."""

    minutes: int
    segments: int
    max_min: float | None  # the partition's MaxTime this was planned against


def time_plan(minutes: int, cluster: Any, limits: dict[str, PartitionLimit]) -> TimePlan:
    """Cap --time to the partition's MaxTime when the cluster config allows segments (over_max_time=segment).

    Each segment ends when Slurm signals signal_delay_s before --time: the attempt saves its time used
    and requeues itself with the budget left (jobs._agent), so a segment gives MaxTime minus that delay."""
    policy = str(cluster.get("over_max_time") or "segment")
    if policy not in OVER_MAX_TIME:
        raise plan.PlanError(f"cluster.over_max_time={policy!r} is unknown. Fix: use one of "
                             f"{', '.join(OVER_MAX_TIME)}.")
    limit = limit_for(cluster.get("partition"), limits)
    if limit is None or limit.max_min is None or minutes <= limit.max_min:
        return TimePlan(int(minutes), 1, None if limit is None else limit.max_min)
    if policy == "refuse":
        return TimePlan(int(minutes), 1, limit.max_min)  # the preflight refuses it, naming the fix
    cap = int(limit.max_min)
    usable = cap - int(cluster.signal_delay_s) / 60
    if usable <= 1:
        return TimePlan(int(minutes), 1, limit.max_min)
    return TimePlan(cap, math.ceil(minutes / usable), limit.max_min)


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
    segmented: dict[str, int] = field(default_factory=dict)  # attempt id -> segments (only those run in several)
    relays: dict[str, list[str]] = field(default_factory=dict)  # served model -> its relay of server jobs (if > 1)


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
    wckey = cluster.get("wckey")
    if wckey:
        params["slurm_wckey"] = str(wckey)
    ex.update_parameters(**params)
    if not wckey:  # submitit's default --wckey=submitit blocks jobs where a site enforces wckeys
        ex._executor.parameters["wckey"] = None
    return ex


def _gpu_parameters(gpus: int, gpu_type: str | None, cluster: Any) -> dict[str, Any]:
    if not gpus:
        return {}
    kind = f"{gpu_type}:" if gpu_type else ""
    if cluster.gpu_syntax == "gpus-per-node":
        return {"slurm_gpus_per_node": f"{kind}{gpus}"} if kind else {"gpus_per_node": int(gpus)}
    return {"slurm_gres": f"gpu:{kind}{gpus}"}


def _resources(cpus: int, mem_gb: int, gpus: int, cluster: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(submitit parameters, extra #SBATCH lines) for CPUs and memory: per GPU (--cpus-per-gpu,
    --mem-per-gpu) where the cluster config says the site prefers them (Slurm takes those instead of,
    never with, --cpus-per-task and --mem), else per job."""
    if gpus and cluster.get("per_gpu_requests"):
        return {}, {"cpus_per_gpu": math.ceil(cpus / gpus), "mem_per_gpu": f"{math.ceil(mem_gb / gpus)}G"}
    return {"cpus_per_task": int(cpus), "mem_gb": int(mem_gb)}, {}


def sbatch_parameters(attempt: Attempt, cluster: Any, limits: dict[str, PartitionLimit] | None = None,
                      ) -> dict[str, Any]:
    """The resources of an attempt's array, as submitit parameters (shown by --dry-run); `limits`: the
    partitions' MaxTime, to which --time is capped when the attempt runs in segments (time_plan)."""
    limits = {} if limits is None else limits
    resources, per_gpu = _resources(attempt.cpus, attempt.mem_gb, attempt.gpus, cluster)
    params: dict[str, Any] = {
        "timeout_min": time_plan(attempt.slurm_minutes, cluster, limits).minutes,
        **resources,
        "slurm_signal_delay_s": int(cluster.signal_delay_s),
        "slurm_array_parallelism": int(cluster.array_throttle),
        **one_task(attempt.cpus),
    }
    params.update(_gpu_parameters(attempt.gpus, attempt.gpu_type, cluster))
    extra = {**per_gpu, **dict(cluster.additional or {})}
    extra["requeue"] = True  # node failures and `scontrol requeue` bring the attempt back
    params["slurm_additional_parameters"] = extra
    return params


SERVER_MARGIN_MIN = 30  # beyond the attempts' waves: loading the weights, the last wave's start, the teardown
RELAY_OVERLAP = 0.1  # of MaxTime: how long two jobs of a server relay overlap (at least the server's start)


@dataclass(frozen=True)
class ServerTime:
    """The model server job's --time: serve_conf.time, or (time=auto) sized to the waves of its attempts; a
    relay of `relay` jobs where that is longer than the partition's MaxTime."""

    minutes: int  # each job's --time
    wanted: int  # before the cap at the partition's MaxTime
    waves: int  # ceil(attempts / array_throttle); 0 for an explicit serve_conf.time
    max_min: float | None  # the partition's MaxTime
    relay: int = 1  # server jobs in the chain (1: one job covers the sweep)
    offset_min: int = 0  # job k+1 may start this long after job k started (`after:<k>+<offset_min>`)

    def note(self, name: str) -> str | None:
        """What to tell the user when MaxTime cuts the server short of the sweep (None: it covers it)."""
        if self.minutes >= self.wanted or self.relay > 1:
            return None
        return (f"model server {name}: the sweep needs {self.wanted} min ({self.waves} wave(s) of attempts + "
                f"{SERVER_MARGIN_MIN} min) but partition MaxTime is {self.max_min:g} min, too short for a relay "
                f"of server jobs: capped; attempts still running or queued when it ends fail as infrastructure "
                f"failures (`hpc-mle resume` reruns them with a new server). Fix: cluster.partition=<one with "
                f"a longer MaxTime>, cluster.array_throttle=<more at once> or fewer attempts per launch")

    def describe(self) -> str:
        """The dry run's words for it: one job, or the relay."""
        if self.relay == 1:
            return f"one job of {self.minutes} min"
        return (f"served by a relay of {self.relay} jobs of at most MaxTime ({self.minutes} min) for the "
                f"{self.wanted} min it needs, each starting {self.offset_min} min after the previous one started")


def relay_shape(wanted: int, max_min: int, start_min: int) -> tuple[int, int]:
    """(jobs, offset in minutes) of a relay covering `wanted` minutes with jobs of `max_min`: two jobs overlap
    by RELAY_OVERLAP of MaxTime, at least `start_min` (the server's start), but at most half of MaxTime (so a
    relay never holds more than two servers' GPUs at once, nor needs more than 2 x wanted / MaxTime jobs).
    (1, 0) where one job covers it or MaxTime leaves no room for an overlap."""
    if wanted <= max_min or max_min < 2:
        return 1, 0
    overlap = min(max_min // 2, max(math.ceil(max_min * RELAY_OVERLAP), int(start_min)))
    offset = max_min - overlap
    return 1 + math.ceil((wanted - max_min) / offset), offset


def server_time(model: dict[str, Any], attempts: list[Attempt], cluster: Any,
                limits: dict[str, PartitionLimit] | None = None) -> ServerTime:
    """serve_conf.time, or `auto`: ceil(attempts / array_throttle) waves x the longest attempt's --time +
    SERVER_MARGIN_MIN; above the partition's MaxTime (a longer job would never start), a relay of jobs of
    MaxTime each, overlapping by the server's start time (serve_conf.wait, what attempts allow it)."""
    sc = model["serve_conf"]
    waves = 0
    if str(sc["time"]) == "auto":
        mine = [a for a in attempts if a.model == model["name"]]
        waves = math.ceil(len(mine) / max(1, int(cluster.array_throttle)))
        wanted = waves * max((int(a.slurm_minutes) for a in mine), default=0) + SERVER_MARGIN_MIN
    else:
        wanted = math.ceil(plan.duration_s(sc["time"]) / 60)
    limit = limit_for(cluster.get("partition"), limits or {})
    max_min = None if limit is None else limit.max_min
    if max_min is None or wanted <= max_min:
        return ServerTime(wanted, wanted, waves, max_min)
    start_min = math.ceil(plan.duration_s(sc.get("wait") or "30m") / 60)
    relay, offset = relay_shape(wanted, int(max_min), start_min)
    return ServerTime(int(max_min), wanted, waves, max_min, relay, offset)


def server_parameters(model: dict[str, Any], cluster: Any, attempts: list[Attempt] | None = None,
                      limits: dict[str, PartitionLimit] | None = None) -> dict[str, Any]:
    """The model server job's resources (serve_conf), as submitit parameters (shown by --dry-run).

    --no-requeue (a site's JobRequeue=1 would requeue it): a restarted server comes back at another
    address; the proxies follow address.json, but a silent restart mid-sweep is worse than a clear end.
    """
    sc = model["serve_conf"]
    gpus = int(sc["gpus"] or 0)
    resources, per_gpu = _resources(int(sc["cpus"]), int(sc["mem_gb"]), gpus, cluster)
    params: dict[str, Any] = {"timeout_min": server_time(model, attempts or [], cluster, limits).minutes,
                              **resources, **one_task(int(sc["cpus"]))}
    params.update(_gpu_parameters(gpus, sc.get("gpu_type"), cluster))
    extra = {**per_gpu, **dict(cluster.additional or {})}
    extra.pop("requeue", None)
    params["slurm_additional_parameters"] = {**extra, "no_requeue": True}
    return params


def group_attempts(attempts: list[Attempt]) -> dict[str, list[Attempt]]:
    groups: dict[str, list[Attempt]] = defaultdict(list)
    for a in attempts:
        groups[a.group].append(a)
    return dict(groups)


@dataclass(frozen=True)
class AgentJob:
    """One sbatch of agents: an array chunk of a resource group (or a plain job where arrays are off)."""

    role: str  # agents<k>-<chunk>; agents-slot<j> for plain jobs throttled by `--dependency=singleton`
    group: str
    members: list[Attempt]
    throttle: int  # this array's share of the sweep-wide cluster.array_throttle (%N)
    singleton: bool
    time: TimePlan


def agent_jobs(attempts: list[Attempt], cluster: Any, site_max: int,
               limits: dict[str, PartitionLimit]) -> list[AgentJob]:
    """The agent sbatch calls of a launch, in order, sharing one sweep-wide throttle (array_throttle).

    Slurm's %N counts per array, so the throttle is split between the chunks (share_throttle). Where the
    site allows no arrays (MaxArraySize=0) every attempt is a plain job named for one of array_throttle
    slots with `--dependency=singleton`: Slurm runs one job of a name at a time, so at most that many run."""
    size = chunk_size(site_max, cluster.get("max_array_tasks"))
    chunks = [(k, group, start, members[start:start + size])
              for k, (group, members) in enumerate(group_attempts(attempts).items())
              for start in range(0, len(members), size)]
    total = max(1, int(cluster.array_throttle))
    shares = share_throttle(total, [len(c[3]) for c in chunks])
    out = []
    for i, ((k, group, start, chunk), share) in enumerate(zip(chunks, shares, strict=True)):
        plan_t = time_plan(chunk[0].slurm_minutes, cluster, limits)
        if site_max <= 0:
            out.append(AgentJob(f"agents-slot{i % total}", group, chunk, 1, True, plan_t))
        else:
            out.append(AgentJob(f"agents{k}-{start // size}", group, chunk, share, False, plan_t))
    return out


def _agent_executor(folder: Path, cluster: Any, job: AgentJob, limits: dict[str, PartitionLimit]) -> Any:
    ex = _executor(folder, cluster, job.group)
    ex.update_parameters(**sbatch_parameters(job.members[0], cluster, limits))
    ex.update_parameters(slurm_array_parallelism=job.throttle)
    if job.singleton:
        ex.update_parameters(slurm_dependency="singleton")
    return ex


def after_servers(ex: Any, members: list[Attempt], servers: dict[str, str]) -> None:
    """Agents on a served model start only once its server job has started (`after:<server>`), so none
    holds a node while the server waits in the queue; other dependencies (singleton) are kept."""
    needed = sorted({servers[a.model] for a in members if a.model in servers})
    if not needed:
        return
    current = ex._executor.parameters.get("dependency")
    after = "after:" + ":".join(needed)
    ex.update_parameters(slurm_dependency=f"{current},{after}" if current else after)


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


def _live_relay(sweep_dir: Path, name: str) -> list[str]:
    """The jobs of this sweep's server relay still queued or running, in order ([]: none, submit a new one)."""
    from hpc_mle.llm import serve

    relay = serve.relay_jobs(sweep_dir, name)
    states = queue_states(relay) if relay else {}
    return [j for j in relay if j in states]


def _submit_server(folder: Path, sweep_dir: Path, launch_id: str, model: dict[str, Any],
                   cluster: Any, attempts: list[Attempt] | None = None) -> tuple[list[str], int]:
    """The served model's server jobs (its relay, in order) and the sbatch calls made: those still queued
    or running for this sweep, else new ones (with the sweep's API key created first, --time sized to the
    attempts' waves, and a relay of jobs of MaxTime each where that is too short). Every job of a relay gets
    the same resources and key; job k+1 waits `after:<job k>+<offset>`."""
    import sys

    from hpc_mle.llm import serve

    name = model["name"]
    live = _live_relay(sweep_dir, name)
    if live:
        return live, 0
    serve.forget_address(sweep_dir, name)
    serve.ensure_key(sweep_dir, name)
    limits = partition_limits()
    sized = server_time(model, attempts or [], cluster, limits)
    note = sized.note(name)
    if note:
        log(sweep_dir, "server-time", launch=launch_id, model=name, note=note)
        print(note, file=sys.stderr, flush=True)
    if sized.relay > 1:
        log(sweep_dir, "server-relay", launch=launch_id, model=name, jobs=sized.relay, offset_min=sized.offset_min,
            time_min=sized.minutes, wanted_min=sized.wanted)
    ids: list[str] = []
    for k in range(sized.relay):
        ex = _executor(folder, cluster, name)
        ex.update_parameters(**server_parameters(model, cluster, attempts, limits))
        if ids:
            ex.update_parameters(slurm_dependency=f"after:{ids[-1]}+{sized.offset_min}")
        (job_id,) = _sbatch(sweep_dir, launch_id, relay_role(name, k), ex, [],
                            lambda e, k=k: [e.submit(serve.run_server, str(sweep_dir), model, None, k > 0)])
        ids.append(job_id)
        serve.record_job(sweep_dir, name, ids[0], [], relay=ids)
    return ids, len(ids)


def relay_role(name: str, k: int) -> str:
    """The role in job names of the k-th (from 0) server job of a model: serve-<model>, serve-<model>-relay2, ..."""
    return f"serve-{name}" if k == 0 else f"serve-{name}-relay{k + 1}"


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
    limits = partition_limits()
    arrays: dict[str, list[str]] = {}
    tasks: dict[str, str] = {}
    calls = 0
    served = serve.sweep_models(sweep_dir, [a.config_id for a in attempts])
    servers: dict[str, str] = {}
    relays: dict[str, list[str]] = {}
    for name, model in served.items():
        relay, n = _submit_server(folder, sweep_dir, launch_id, model, cluster, attempts)
        servers[name] = relay[0]  # the agents start after the first live job of the relay has started
        if len(relay) > 1:
            relays[name] = relay
        calls += n
    users: dict[str, set[str]] = defaultdict(set)  # served model -> the agent arrays that use it
    segmented: dict[str, int] = {}  # attempt id -> segments its budget needs under the partition's MaxTime
    for agent_job in agent_jobs(attempts, cluster, max_array_size(), limits):
        ex = _agent_executor(folder, cluster, agent_job, limits)
        after_servers(ex, agent_job.members, servers)
        chunk, n, seg = agent_job.members, len(agent_job.members), agent_job.time
        restarts = int(cluster.max_restarts) + seg.segments - 1  # each segment's requeue is a start
        if seg.segments > 1:
            segmented.update({a.id: seg.segments for a in chunk})
            log(sweep_dir, "segmented", launch=launch_id, role=agent_job.role, segments=seg.segments,
                max_time_min=seg.max_min, time_min=seg.minutes, attempts=[a.id for a in chunk])
        ids = _sbatch(sweep_dir, launch_id, agent_job.role, ex, [a.id for a in chunk],
                      lambda e, c=chunk, n=n, r=restarts: e.map_array(jobs.agent_task, [str(sweep_dir)] * n,
                                                                      [a.id for a in c], [r] * n))
        calls += 1
        array_id = ids[0].split("_")[0]
        arrays.setdefault(agent_job.group, []).append(array_id)
        for a, job in zip(chunk, ids, strict=True):
            tasks[a.id] = job
            if a.model in served:
                users[a.model].add(array_id)
    teardowns: dict[str, str] = {}
    for name, ids in users.items():
        serve.record_job(sweep_dir, name, servers[name], sorted(ids))
        ex = _executor(folder, cluster, name)
        ex.update_parameters(**within_max_time(TEARDOWN_PARAMETERS, cluster, limits),
                             slurm_dependency="afterany:" + ":".join(sorted(ids)))
        (teardowns[name],) = _sbatch(sweep_dir, launch_id, f"teardown-{name}", ex, [],
                                     lambda e, n=name, i=ids: [e.submit(serve.teardown_task, str(sweep_dir), n,
                                                                        sorted(i))])
        calls += 1
    waits = sorted({*(i for ids in arrays.values() for i in ids), *(after or [])})
    grading_id = analysis_id = None
    if waits or after is not None:
        work = len(attempts) or len(status.ungraded(sweep_dir))  # grading alone (resume): the attempts left
        n = max(1, min(int(cluster.grading_tasks), work))
        ex = _executor(folder, cluster, "grading")
        ex.update_parameters(**within_max_time(GRADING_PARAMETERS, cluster, limits), slurm_array_parallelism=n)
        if waits:
            ex.update_parameters(slurm_dependency="afterany:" + ":".join(waits))
        graders = _sbatch(sweep_dir, launch_id, "grading", ex, [],
                          lambda e: e.map_array(jobs.grade_task, [str(sweep_dir)] * n, list(range(n)), [n] * n))
        calls += 1
        grading_id = graders[0].split("_")[0]
        ex = _executor(folder, cluster, "analysis")
        ex.update_parameters(**within_max_time(ANALYSIS_PARAMETERS, cluster, limits),
                             slurm_dependency=f"afterany:{grading_id}")
        (analysis_id,) = _sbatch(sweep_dir, launch_id, "analysis", ex, [],
                                 lambda e: [e.submit(jobs.analysis_task, str(sweep_dir))])
        calls += 1
    log(sweep_dir, "complete", launch=launch_id)
    return Submission(arrays, grading_id, analysis_id, calls, tasks, servers, teardowns, launch_id, segmented,
                      relays)


@dataclass(frozen=True)
class PlannedJob:
    """One sbatch a launch would make, as submitit would write it (for the preflight and --dry-run)."""

    role: str  # as in the job name: agents<k>-<chunk>, grading, analysis, serve-<model>, teardown-<model>
    group: str  # the resource group: the agents' group key, else the role
    tasks: int  # array size (1: a plain job)
    parameters: dict[str, Any]  # submitit's sbatch parameters: time (minutes), cpus_per_task, mem, gres, ...
    script: str  # the sbatch script submitit writes
    segments: int = 1  # agents: jobs the budget needs, each capped to the partition's MaxTime
    relay: str = ""  # a model server's first job: how it is served (ServerTime.describe) when by a relay

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
                 launch_id: str, limit: int = DEFAULT_MAX_ARRAY_SIZE,
                 limits: dict[str, PartitionLimit] | None = None) -> list[PlannedJob]:
    """Every job `submit` would make for `attempts`, in its order; dependencies on job ids not yet known
    are shown as `<...>` (submission fills them in). `limit`: the site's MaxArraySize; `limits`: the
    partitions' time limits (None: asked of scontrol, one call)."""
    sweep_dir = Path(sweep_dir)
    folder = sweep_dir / "slurm"
    out: list[PlannedJob] = []

    def add(ex: Any, role: str, group: str, tasks: int) -> None:
        ex.update_parameters(name=job_name(sweep_dir, launch_id, role))
        out.append(render(ex, role, group, tasks))

    used = {name: model for name, model in served.items() if name in {a.model for a in attempts}}
    limits = partition_limits() if limits is None else limits
    for name, model in used.items():
        sized = server_time(model, attempts, cluster, limits)
        for k in range(sized.relay):
            ex = _executor(folder, cluster, name)
            ex.update_parameters(**server_parameters(model, cluster, attempts, limits))
            if k:
                ex.update_parameters(slurm_dependency=f"after:<{relay_role(name, k - 1)} job>+{sized.offset_min}")
            add(ex, relay_role(name, k), f"serve-{name}", 1)
        if sized.relay > 1:
            first = -sized.relay
            out[first] = dataclasses.replace(out[first], relay=sized.describe())
    for agent_job in agent_jobs(attempts, cluster, limit, limits):
        ex = _agent_executor(folder, cluster, agent_job, limits)
        after_servers(ex, agent_job.members, {name: f"<serve-{name} job>" for name in used})
        add(ex, agent_job.role, agent_job.group, len(agent_job.members))
        if agent_job.time.segments > 1:
            out[-1] = dataclasses.replace(out[-1], segments=agent_job.time.segments)
    for name in used:
        ex = _executor(folder, cluster, name)
        ex.update_parameters(**within_max_time(TEARDOWN_PARAMETERS, cluster, limits),
                             slurm_dependency="afterany:<agent arrays>")
        add(ex, f"teardown-{name}", "teardown", 1)
    if attempts:
        n = max(1, min(int(cluster.grading_tasks), len(attempts)))
        ex = _executor(folder, cluster, "grading")
        ex.update_parameters(**within_max_time(GRADING_PARAMETERS, cluster, limits), slurm_array_parallelism=n,
                             slurm_dependency="afterany:<agent arrays>")
        add(ex, "grading", "grading", n)
        ex = _executor(folder, cluster, "analysis")
        ex.update_parameters(**within_max_time(ANALYSIS_PARAMETERS, cluster, limits),
                             slurm_dependency="afterany:<grading array>")
        add(ex, "analysis", "analysis", 1)
    return out


def record_launch(sweep_dir: Path, submission: Submission, dry_run: bool = False) -> dict[str, Any]:
    """Append this launch to sweep.json and the job ids to the manifest (launches.jsonl has them already)."""
    from hpc_mle.files import atomic_write_json

    sweep = plan.read_sweep(sweep_dir) or {}
    entry = {"at": now(), "launch": submission.launch, "arrays": submission.arrays, "grading": submission.grading,
             "analysis": submission.analysis, "sbatch_calls": submission.sbatch_calls,
             "attempts": len(submission.tasks), "servers": submission.servers,
             "teardowns": submission.teardowns, "segmented": submission.segmented, "relays": submission.relays}
    sweep.setdefault("launches", []).append(entry)
    atomic_write_json(Path(sweep_dir) / plan.SWEEP_FILE, sweep)
    if submission.tasks:
        plan.update_manifest(sweep_dir, submission.tasks, entry["at"])
    return entry


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
