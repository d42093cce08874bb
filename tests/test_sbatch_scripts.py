"""The sbatch scripts a launch submits (hpc_mle/slurm.py), parsed as submitit writes them: one task with all
its CPUs on the srun line, --time against the partitions' MaxTime (segments), per-GPU requests, wckey,
typed GPUs with --gpus-per-node, array chunks, MaxArraySize=0 and the sweep-wide throttle. One real job on
the dev cluster checks from inside that the attempt's step gets every CPU it asked for.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from slurm_cluster import slurm_env  # noqa: F401  (fixture)

from hpc_mle import jobs, plan, preflight, runner, slurm
from support import plan_sweep

ONE = "benchmark.competitions=[mini-churn]"
TWO = "benchmark.competitions=[mini-churn,mini-digits]"
NO_LIMITS: dict[str, slurm.PartitionLimit] = {}
PARTITIONS = (
    "PartitionName=debug AllowGroups=ALL Default=YES DefaultTime=01:00:00 MaxNodes=UNLIMITED MaxTime=1-00:00:00 "
    "State=UP TotalCPUs=64\n"
    "PartitionName=long AllowGroups=ALL Default=NO DefaultTime=NONE MaxTime=UNLIMITED State=UP\n"
)


def planned(overrides: list[str], tmp_path: Path, limit: int = slurm.DEFAULT_MAX_ARRAY_SIZE,
            limits: dict[str, slurm.PartitionLimit] | None = None) -> list[slurm.PlannedJob]:
    """The planned jobs of one launch's overrides on the generic Slurm site, in order (nothing submitted)."""
    cfgs, attempts, sweep = plan_sweep(["cluster=slurm", "scaffold=dummy", *overrides], tmp_path)
    return slurm.planned_jobs(sweep, attempts, cfgs[0].cluster, {}, "abc123", limit=limit,
                              limits=NO_LIMITS if limits is None else limits)


def jobs_of(overrides: list[str], tmp_path: Path, **kwargs) -> dict[str, slurm.PlannedJob]:
    """The planned jobs by role."""
    return {j.role: j for j in planned(overrides, tmp_path, **kwargs)}


def srun_line(job: slurm.PlannedJob) -> list[str]:
    (line,) = [x for x in job.script.splitlines() if x.startswith("srun ")]
    return shlex.split(line)


def sbatch(job: slurm.PlannedJob, flag: str) -> list[str]:
    """The values of one #SBATCH flag (empty when the script has none)."""
    return [x.split("=", 1)[1] if "=" in x else "" for x in job.sbatch_lines() if x.split("=")[0] == f"#SBATCH --{flag}"]


# ---------------------------------------------------------------- one task, all its CPUs


def test_every_job_starts_one_task_with_all_its_cpus_on_the_srun_line(tmp_path):
    jobs = jobs_of(["hardware=gpu2", ONE], tmp_path)
    assert list(jobs) == ["agents0-0", "grading", "analysis"]
    agents = jobs["agents0-0"]
    assert sbatch(agents, "ntasks-per-node") == ["1"] and sbatch(agents, "nodes") == ["1"]
    assert sbatch(agents, "cpus-per-task") == ["16"]
    args = srun_line(agents)
    assert args.count("--ntasks=1") == 1 and args.count("--cpus-per-task=16") == 1
    assert args.index("--cpus-per-task=16") < args.index("-u")  # srun's options, before the python command
    for role in ("grading", "analysis"):
        assert sbatch(jobs[role], "ntasks-per-node") == ["1"]
        assert {"--ntasks=1", "--cpus-per-task=1"} <= set(srun_line(jobs[role]))


# ---------------------------------------------------------------- wckey and typed GPUs


def test_wckey_is_dropped_by_default_and_set_when_the_site_names_one(tmp_path):
    plain = jobs_of([ONE], tmp_path)
    assert all(sbatch(j, "wckey") == [] for j in plain.values())  # never submitit's own `submitit`
    site = jobs_of([ONE, "cluster.wckey=proj-42"], tmp_path)
    assert all(sbatch(j, "wckey") == ["proj-42"] for j in site.values())
    empty = jobs_of([ONE, "cluster.wckey=''"], tmp_path)
    assert sbatch(empty["agents0-0"], "wckey") == []


def test_gpu_type_is_kept_with_the_gpus_per_node_syntax_and_matched_by_type(tmp_path):
    a100 = preflight.parse_sinfo("g1|gpu*|64|515000|gpu:a100:4(S:0-1)|infinite|idle\n")
    h100 = preflight.parse_sinfo("g2|gpu*|64|515000|gpu:h100:4|infinite|idle\n")
    cluster = plan.compose_all(plan.expand(["cluster=slurm", "cluster.gpu_syntax=gpus-per-node"], True))[0].cluster
    agents = jobs_of(["cluster.gpu_syntax=gpus-per-node", "hardware=gpu2", "hardware.gpu_type=a100", ONE],
                     tmp_path)["agents0-0"]
    assert sbatch(agents, "gpus-per-node") == ["a100:2"] and sbatch(agents, "gres") == []
    req = preflight.request_of(agents)
    assert (req.gpus, req.gpu_type) == (2, "a100")
    assert preflight.resources_section(cluster, [agents], a100).problems == []
    (problem,) = preflight.resources_section(cluster, [agents], h100).problems
    assert "2 GPUs a100" in problem.what
    untyped = jobs_of(["cluster.gpu_syntax=gpus-per-node", "hardware=gpu1", ONE], tmp_path)["agents0-0"]
    assert sbatch(untyped, "gpus-per-node") == ["1"]


# ---------------------------------------------------------------- per-GPU requests and memory headroom


def test_per_gpu_requests_replace_per_job_ones_and_are_checked_against_nodes(tmp_path):
    agents = jobs_of(["cluster.per_gpu_requests=true", "hardware=gpu2", ONE], tmp_path)["agents0-0"]
    assert sbatch(agents, "cpus-per-gpu") == ["8"] and sbatch(agents, "mem-per-gpu") == ["60G"]
    assert sbatch(agents, "cpus-per-task") == [] and sbatch(agents, "mem") == []  # Slurm takes one or the other
    assert "--cpus-per-task=16" in srun_line(agents)  # the step still gets all 16
    req = preflight.request_of(agents)
    assert (req.cpus, req.mem_mb, req.gpus) == (16, 120 * 1024, 2)
    cluster = plan.compose_all(plan.expand(["cluster=slurm", "cluster.per_gpu_requests=true"], True))[0].cluster
    sold_128 = preflight.parse_sinfo("n1|gpu*|16|125000|gpu:2|infinite|idle\n")  # 128 GB node, RealMemory less
    assert preflight.resources_section(cluster, [agents], sold_128).problems == []
    small = preflight.parse_sinfo("n2|gpu*|8|125000|gpu:2|infinite|idle\n")
    (problem,) = preflight.resources_section(cluster, [agents], small).problems
    assert "16 CPUs" in problem.what and "hardware.cpus=8" in problem.fix
    cpu_only = jobs_of(["cluster.per_gpu_requests=true", "hardware=cpu", ONE], tmp_path)["agents0-0"]
    assert sbatch(cpu_only, "cpus-per-task") == ["2"] and sbatch(cpu_only, "cpus-per-gpu") == []


def test_gpu_profiles_leave_headroom_below_the_memory_nodes_are_sold_with(tmp_path):
    for profile, sold_gb in (("gpu1", 64), ("gpu2", 128)):
        agents = jobs_of([f"hardware={profile}", ONE], tmp_path)["agents0-0"]
        assert preflight.request_of(agents).mem_mb < sold_gb * 1000  # what such a node reports (RealMemory)


# ---------------------------------------------------------------- time limits: cap and segments, or refuse


def test_partition_time_limits_are_read_from_scontrol_lines():
    limits = slurm.parse_partitions(PARTITIONS)
    assert limits["debug"] == slurm.PartitionLimit(1440, 60, True)
    assert limits["long"] == slurm.PartitionLimit(None, None, False)
    assert slurm.limit_for(None, limits) is limits["debug"] and slurm.limit_for("nope", limits) is None


def test_a_budget_above_maxtime_runs_in_segments_capped_to_maxtime(tmp_path):
    limits = slurm.parse_partitions(PARTITIONS)
    agents = jobs_of(["runtime=24h", ONE], tmp_path, limits=limits)["agents0-0"]
    assert sbatch(agents, "time") == ["1440"] and agents.segments == 2  # 1455 min asked, 1438 usable per job
    assert sbatch(agents, "signal") == ["USR2@120"]  # the warning that ends each segment with a requeue
    assert sbatch(agents, "requeue") == [""]
    longer = jobs_of(["runtime=24h", "cluster.partition=long", ONE], tmp_path, limits=limits)["agents0-0"]
    assert sbatch(longer, "time") == ["1455"] and longer.segments == 1
    short = jobs_of(["runtime=24h", ONE], tmp_path, limits=limits)  # a short one stays as it is
    assert short["grading"].segments == 1 and sbatch(short["grading"], "time") == ["120"]


def test_refuse_mode_keeps_the_time_and_the_preflight_names_the_fix(tmp_path):
    nodes = preflight.parse_sinfo("vm|debug*|64|515000|(null)|1-00:00:00|idle\n")
    limits = {n.partition: slurm.PartitionLimit(n.max_time_min, None, n.default) for n in nodes}
    cluster = plan.compose_all(plan.expand(["cluster=slurm", "cluster.over_max_time=refuse"], True))[0].cluster
    agents = jobs_of(["runtime=24h", "cluster.over_max_time=refuse", ONE], tmp_path, limits=limits)["agents0-0"]
    assert sbatch(agents, "time") == ["1455"] and agents.segments == 1
    (problem,) = preflight.resources_section(cluster, [agents], nodes).problems
    assert "above partition debug's MaxTime (1440 min)" in problem.what
    assert "cluster.over_max_time=segment" in problem.fix
    capped = jobs_of(["runtime=24h", ONE], tmp_path, limits=limits)["agents0-0"]
    section = preflight.resources_section(cluster, [capped], nodes)
    assert section.problems == [] and "runs in 2 segments" in "\n".join(section.lines)


def test_segments_need_a_usable_slice_of_maxtime():
    cluster = plan.compose_all(plan.expand(["cluster=slurm", "cluster.signal_delay_s=120"], True))[0].cluster
    tiny = {"debug": slurm.PartitionLimit(2, None, True)}
    assert slurm.time_plan(60, cluster, tiny) == slurm.TimePlan(60, 1, 2)  # 2 min minus 2 min warning: refuse
    assert slurm.time_plan(600, cluster, {"debug": slurm.PartitionLimit(240, None, True)}).segments == 3
    cluster.over_max_time = "wait"
    with pytest.raises(plan.PlanError, match=r"cluster.over_max_time='wait' is unknown. Fix: use one of segment"):
        slurm.time_plan(60, cluster, tiny)


def test_each_warning_requeue_starts_a_new_segment_and_segments_raise_max_restarts(tmp_path, monkeypatch):
    """jobs._agent after a segment's end (Slurm's USR2 warning, the attempt's time saved): requeued, one more
    segment, as many times as the planned segments need beyond max_restarts; a plain requeue adds none."""
    expanded = plan.expand(["scaffold=dummy", ONE, "cluster=dev", "runtime.time_limit=600s",
                            f"output_root={tmp_path}"], True)
    cfgs = plan.compose_all(expanded)
    (attempt,) = plan.plan_attempts(cfgs)
    sweep = tmp_path / plan.sweep_name(cfgs, expanded)
    plan.write_plan(sweep, cfgs, expanded, [attempt])
    out = plan.attempt_dir(sweep, attempt.id)
    out.mkdir(parents=True, exist_ok=True)

    def segment(cfg: runner.AttemptConfig, why: str = "stopped by SIGUSR2 (Slurm's warning before --time)") -> dict:
        previous = runner.read_status(out) or {}
        starts = int(previous.get("starts", 0)) + 1  # what run_attempt keeps across starts
        status = {"state": "preempted", "reason": why, "starts": starts, "segments": int(previous.get("segments") or 1),
                  "agent_elapsed_s": 100.0 * starts, "time_limit_s": cfg.time_limit_s}
        runner.write_status(out, status)
        return status

    monkeypatch.setattr(runner, "run_attempt", segment)
    monkeypatch.setattr(jobs, "_requeue_self", lambda: True)
    restarts = 0 + 3 - 1  # max_restarts=0 and three planned segments, as slurm.submit passes it
    assert [jobs._agent(sweep, attempt.id, restarts)["segments"] for _ in range(2)] == [2, 3]
    assert runner.read_status(out)["state"] == "requeued"
    third = jobs._agent(sweep, attempt.id, restarts)  # the last planned segment: no requeue beyond the plan
    assert (third["state"], third["segments"], third["starts"]) == ("preempted", 3, 3)
    (out / "status.json").unlink()
    monkeypatch.setattr(runner, "run_attempt", lambda cfg: segment(cfg, "stopped by SIGTERM"))
    assert jobs._agent(sweep, attempt.id, restarts).get("segments") == 1  # preemption: no new segment


# ---------------------------------------------------------------- arrays: chunks, MaxArraySize=0, one throttle


def test_max_array_tasks_chunks_arrays_and_the_throttle_is_shared_by_the_sweep(tmp_path):
    jobs = jobs_of(["seed=range(3)", "hardware=cpu,gpu1", ONE, "cluster.max_array_tasks=2", "cluster.array_throttle=5"],
                   tmp_path)
    agents = [j for role, j in jobs.items() if role.startswith("agents")]
    assert [(j.role, j.tasks) for j in agents] == [("agents0-0", 2), ("agents0-1", 1), ("agents1-0", 2),
                                                   ("agents1-1", 1)]
    assert [sbatch(j, "array") for j in agents] == [["0-1%2"], [], ["0-1%1"], []]  # a one-task chunk: a plain job
    running = [int(sbatch(j, "array")[0].split("%")[1]) if sbatch(j, "array") else 1 for j in agents]
    assert sum(running) == 5  # at most array_throttle agents of the sweep at once, not 5 per array


def test_share_throttle_splits_one_sweep_wide_limit():
    assert slurm.share_throttle(64, [1000, 1000, 1]) == [32, 31, 1]
    assert slurm.share_throttle(5, [2, 10]) == [2, 3]
    assert slurm.share_throttle(2, [10, 10, 10]) == [1, 1, 1]  # more arrays than the throttle: one each
    assert slurm.share_throttle(8, []) == []
    assert sum(slurm.share_throttle(64, [50, 50])) == 64


def test_max_array_size_zero_submits_plain_jobs_throttled_by_singleton_slots(tmp_path):
    assert slurm.chunk_size(0, None) == 1 and slurm.chunk_size(1001, 300) == 300 and slurm.chunk_size(1001, None) == 1001
    jobs = planned(["seed=range(3)", ONE, "cluster.array_throttle=2"], tmp_path, limit=0)
    plain = [j for j in jobs if j.role.startswith("agents")]
    assert len(plain) == 3 and all(sbatch(j, "array") == [] for j in plain)
    assert all(sbatch(j, "dependency") == ["singleton"] for j in plain)
    names = [sbatch(j, "job-name")[0] for j in plain]
    assert len(set(names)) == 2 and names[0] == names[2]  # three jobs, two slots: at most two run at once


def test_a_site_without_arrays_gets_plain_jobs_that_slurm_accepts(slurm_env, tmp_path, monkeypatch):  # noqa: F811
    for key in ("SLURM_CONF", "PATH"):
        monkeypatch.setenv(key, slurm_env[key])
    monkeypatch.setattr(slurm, "max_array_size", lambda: 0)  # as `scontrol show config` says MaxArraySize=0
    cfgs, attempts, sweep = plan_sweep(["scaffold=dummy", "seed=range(3)", ONE, "cluster=dev",
                                        "cluster.array_throttle=2", "cluster.additional={hold: true}"],
                                       tmp_path, write=True)
    submission = slurm.submit(sweep, attempts, cfgs[0].cluster)  # held: nothing runs
    try:
        assert all("_" not in job for job in submission.tasks.values())  # plain jobs, no array task ids
        out = subprocess.run(["squeue", "-h", "-j", ",".join(submission.tasks.values()), "-o", "%j|%E"],
                             capture_output=True, text=True, env=dict(os.environ)).stdout.split()
        assert len(out) == 3 and all("|singleton" in line for line in out), out
        assert len({line.split("|")[0] for line in out}) == 2  # two slots: at most two run at once
    finally:
        slurm.cancel([*submission.tasks.values(), submission.grading, submission.analysis])


# ---------------------------------------------------------------- from inside a real job


PROBE = (f"nproc; {shlex.quote(sys.executable)} -c 'import os; print(len(os.sched_getaffinity(0)))'; "
         "scontrol show step $SLURM_JOB_ID.$SLURM_STEP_ID | grep -oE ' (Tasks|CPUs)=[0-9]+' | tr -d ' '")


def test_the_job_step_gets_every_cpu_it_asked_for(slurm_env, tmp_path, monkeypatch):  # noqa: F811
    for key in ("SLURM_CONF", "PATH"):
        monkeypatch.setenv(key, slurm_env[key])
    cluster = plan.compose_all(plan.expand(["cluster=dev"], True))[0].cluster
    ex = slurm._executor(tmp_path / "slurm", cluster, "cpu-probe")
    ex.update_parameters(name=f"{slurm.sweep_key(tmp_path)}-probe", timeout_min=5, cpus_per_task=2, mem_gb=1,
                         **slurm.one_task(2))
    job = ex.submit(subprocess.check_output, ["sh", "-c", PROBE], text=True)
    try:
        nproc, affinity, *step = job.result().split()
    finally:
        subprocess.run(["scancel", job.job_id], env=dict(os.environ), capture_output=True)
    assert (int(nproc), int(affinity)) == (2, 2), job.stdout()
    assert sorted(step) == ["CPUs=2", "Tasks=1"]  # Slurm's own record of the step: one task, both CPUs
    script = next((tmp_path / "slurm").rglob("*_submission.sh")).read_text()
    assert "--ntasks=1 --cpus-per-task=2" in script and "--wckey" not in script


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
