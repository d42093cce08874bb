"""An attempt whose budget is longer than its partition's MaxTime, run in segments on the real dev cluster.

Partition `short` of slurm/dev/ has MaxTime=2 min. With cluster.over_max_time=segment (the default) the
attempt's --time is capped at 2 min; Slurm's SIGUSR2 comes signal_delay_s (30 s) before it, the attempt saves
its agent time and requeues itself, and the next Slurm start goes on with the budget left. Skipped with the
reason where the cluster cannot be brought up; an error under CI=true (tests/slurm_cluster.py).
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from slurm_cluster import slurm_env, wait_for  # noqa: F401  (fixture)

from hpc_mle import jobs, plan, runner, slurm
from hpc_mle.status import sweep_status

pytestmark = pytest.mark.slow
# Slurm checks time limits every 30 s and sends the warning at the first check within signal_delay_s + 30 s of
# --time (sbatch(1): up to 60 s early): on a 2-minute --time with signal_delay_s=30, 60-90 s into the job (77-89 s
# seen). A budget of 110 s is cut by that warning, and what is left fits the second job (2 planned:
# ceil(3 min of --time / 1.5 usable min per job)).
BUDGET_S = 110
SWEEP = ["scaffold=dummy", "scaffold.command=[python3,/home/agent/dummy.py,--sleep,600]",
         f"runtime.time_limit={BUDGET_S}s", "runtime.margin=70s", "benchmark.competitions=[mini-churn]",
         "cluster=dev", "cluster.partition=short", "hardware.cpus=1", "hardware.mem_gb=1", "cluster.grading_tasks=1"]


def launch(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpc_mle.launch", *args], capture_output=True, text=True,
                          env=env, timeout=300)


HELD_S = 3  # released no sooner: a job started again within the second of its requeue fails (credential revoked)


def release_if_held(env: dict, job: str, held_since: list[float]) -> bool:
    """Slurm holds a requeued job for two minutes (Reason=BeginTime), also one that requeued itself from
    inside, where it cannot release itself (its `scontrol update` is killed with the job); release it, as
    a user may, so the test waits for the segments and not for the hold. `held_since`: when this hold was
    first seen (emptied on release). True while it is held."""
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T %r"], capture_output=True, text=True, env=env)
    if out.stdout.split() != ["PENDING", "BeginTime"]:
        return False
    held_since.append(time.monotonic())
    if held_since[-1] - held_since[0] >= HELD_S:
        subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], env=env, capture_output=True)
        held_since.clear()
    return True


def events_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]


def grading_results(sweep: Path) -> list:
    """What each task of the sweep's grading array returned (submitit's result pickles: ('success', graded))."""
    (job,) = [e["job"] for e in slurm.read_log(sweep) if e["event"] == "submitted" and e["role"] == "grading"]
    return [pickle.loads(p.read_bytes()) for p in sorted((sweep / "slurm" / job).glob("*_result.pkl"))]


def test_an_attempt_longer_than_maxtime_runs_in_segments_within_its_budget(slurm_env, mini_data,  # noqa: F811
                                                                           tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", slurm_env["SLURM_CONF"])  # for the queue that sweep_status asks
    where = [f"output_root={tmp_path}", f"data_dir={mini_data}"]
    dry = launch(slurm_env, *SWEEP, *where, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "(MaxTime 2 min); runs in 2 segments of at most MaxTime" in dry.stdout
    assert "Slurm holds each requeued job ~2 min before it may start again" in dry.stdout  # the dev cluster's 121 s
    assert "verdict: ready" in dry.stdout and "#SBATCH --partition=short" in dry.stdout
    assert "--time=120" not in dry.stdout and "--time=60" not in dry.stdout  # grading and analysis capped too

    started = time.monotonic()
    out = launch(slurm_env, *SWEEP, *where)
    assert out.returncode == 0, out.stdout + out.stderr
    (sweep,) = [p for p in tmp_path.iterdir() if (p / plan.MANIFEST).is_file()]
    ((aid, task),) = slurm.recorded_tasks(slurm.read_log(sweep)).items()  # one attempt: a plain job
    attempt = plan.attempt_dir(sweep, aid)
    results = sweep / "analysis" / "results.csv"

    held_since: list[float] = []
    between: list[dict] = []  # what `hpc-mle status` says while the attempt waits for its next segment

    def analysed() -> bool:
        if release_if_held(slurm_env, task, held_since) and not between:
            between.extend(sweep_status(sweep).to_dict("records"))  # as `hpc-mle status` computes it
        return results.is_file() and (runner.read_status(attempt) or {}).get("state") in runner.TERMINAL

    wait_for("the segmented attempt, its grading and the analysis", analysed, timeout=420, every=1)
    wall_s = time.monotonic() - started

    status = runner.read_status(attempt)
    assert status["state"] == "timeout", status  # the dummy sleeps past its budget: cut at the budget, truthfully
    assert status["segments"] >= 2 and status["starts"] == status["segments"], status
    # Summed over the segments: the budget, plus only the last stop (TERM to the agent's end, stop_s), never more.
    assert BUDGET_S - 5 <= status["agent_elapsed_s"] <= BUDGET_S + status["stop_s"], status
    log = "".join(f.read_text() for f in (sweep / "slurm" / task).glob("*_log.out"))  # one job, appended to
    assert log.count("Starting with JobEnvironment") == status["segments"]  # each segment a Slurm start
    starts = [e for e in events_of(attempt) if e["event"] == "start"]
    assert [e["start"] for e in starts] == list(range(1, status["segments"] + 1))
    ends = [e for e in events_of(attempt) if e["event"] == "end"]
    assert starts[0]["remaining_s"] == BUDGET_S  # each later start gets what the earlier ones left
    assert [e["remaining_s"] for e in starts[1:]] == pytest.approx([BUDGET_S - e["agent_elapsed_s"] for e in ends[:-1]],
                                                                  abs=0.01)
    stops = [e for e in events_of(attempt) if e["event"] == "stopping"]
    assert all("SIGUSR2" in e["reason"] for e in stops[:-1]) and "time limit" in stops[-1]["reason"]
    assert any(e["event"] == "segmented" and e["segments"] == 2 and e["attempts"] == [aid]
               for e in slurm.read_log(sweep))

    (row,) = between
    assert row["state"] == "queued" and "BeginTime" in row["reason"] and "after requeued" in row["reason"], row
    graded = json.loads((sweep / "grading" / f"{aid}.json").read_text())
    assert graded["segments"] == status["segments"] and graded["state"] == "timeout"
    assert graded["report"]["valid_submission"]
    assert grading_results(sweep) == [("success", 1)]  # one grading task, which graded the attempt once
    (result,) = pd.read_csv(results).to_dict("records")
    assert (result["attempt_id"], result["state"], result["segments"]) == (aid, "timeout", status["segments"])
    print(f"segmented sweep: {status['segments']} segments, agent {status['agent_elapsed_s']:.1f} s, "
          f"wall {wall_s:.0f} s")


def test_jobs_around_the_attempts_fit_the_partition_maxtime():
    """Grading, analysis and teardown keep their fixed --time where it fits, else take MaxTime and the
    cluster's warning delay (submitit's 90 s would end a 2-minute job at half time)."""
    cluster = plan.compose_all(plan.expand(["cluster=dev", "cluster.partition=short"], True))[0].cluster
    short = {"short": slurm.PartitionLimit(2, None, False), "debug": slurm.PartitionLimit(None, None, True)}
    capped = slurm.within_max_time(slurm.GRADING_PARAMETERS, cluster, short)
    assert (capped["timeout_min"], capped["slurm_signal_delay_s"]) == (2, 30)
    assert capped["mem_gb"] == slurm.GRADING_PARAMETERS["mem_gb"]
    cluster.partition = "debug"
    assert slurm.within_max_time(slurm.GRADING_PARAMETERS, cluster, short) == slurm.GRADING_PARAMETERS


def test_the_next_segment_is_on_disk_before_the_requeue(tmp_path, monkeypatch):
    """Slurm kills the job as `scontrol requeue` takes it back, so jobs._agent records the new segment first;
    a refused requeue leaves the warned state, with what brings the attempt back."""
    expanded = plan.expand(["scaffold=dummy", "benchmark.competitions=[mini-churn]", "cluster=dev",
                            "runtime.time_limit=600s", f"output_root={tmp_path}"], True)
    cfgs = plan.compose_all(expanded)
    (attempt,) = plan.plan_attempts(cfgs)
    sweep = tmp_path / plan.sweep_name(cfgs, expanded)
    plan.write_plan(sweep, cfgs, expanded, [attempt])
    out = plan.attempt_dir(sweep, attempt.id)
    out.mkdir(parents=True)
    warned = {"state": "preempted", "reason": "stopped by SIGUSR2; a restart continues with the budget left",
              "starts": 1, "segments": 1, "agent_elapsed_s": 80.0, "time_limit_s": 600.0}
    monkeypatch.setattr(runner, "run_attempt", lambda cfg: dict(warned))
    seen: list[dict] = []

    def requeue(ok: bool) -> bool:
        seen.append(runner.read_status(out))
        return ok

    monkeypatch.setattr(jobs, "_requeue_self", lambda: requeue(True))
    assert jobs._agent(sweep, attempt.id, 3)["segments"] == 2
    assert (seen[0]["state"], seen[0]["segments"]) == ("requeued", 2)  # on disk when Slurm was asked
    (out / "status.json").unlink()
    monkeypatch.setattr(jobs, "_requeue_self", lambda: requeue(False))
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    jobs._agent(sweep, attempt.id, 3)
    refused = runner.read_status(out)
    assert (refused["state"], refused["segments"]) == ("preempted", 1)
    assert "hpc-mle resume" in refused["reason"]
