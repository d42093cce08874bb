"""Sweeps on the real one-node dev cluster (slurm/dev/): arrays, dependencies, GPUs, requeue, cancel, resume.

Brought up by tests/slurm_cluster.py where this machine can (root + apt, as in CI); skipped with the
reason elsewhere; under CI=true a missing cluster is an error.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_cluster import slurm_env, wait_for  # noqa: F401  (fixture)

from hpc_mle import plan, runner
from support import plan_sweep

pytestmark = pytest.mark.slow
SMALL = ["cluster=dev", "hardware.cpus=1", "hardware.mem_gb=1", "cluster.grading_tasks=1"]
# How long each start of a requeued dummy agent stays busy: two must be seen running at once, even when the
# second waits ~15 s for a CPU (a shared dev cluster); every restart sleeps it again.
BUSY_S = 25


def launch(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpc_mle.launch", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def hpc_mle(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["hpc-mle", *args], capture_output=True, text=True, env=env, timeout=300)


def squeue(env: dict, *args: str) -> str:
    return subprocess.run(["squeue", "-h", *args], capture_output=True, text=True, env=env).stdout


def states(sweep: Path) -> dict[str, dict]:
    manifest = plan.read_manifest(sweep)
    return {row["id"]: (runner.read_status(plan.attempt_dir(sweep, row["id"])) or {}) for _, row in manifest.iterrows()}


def sweep_of(tmp_path: Path) -> Path:
    (sweep,) = [p for p in tmp_path.iterdir() if (p / plan.MANIFEST).is_file()]
    return sweep


def test_mini_sweep_is_one_array_then_grading_then_analysis(slurm_env, mini_data, tmp_path):  # noqa: F811
    args = ["-m", "scaffold=dummy,baseline", "seed=range(2)", "benchmark.competitions=[mini-churn,mini-digits]",
            *SMALL, "cluster.array_throttle=2", f"output_root={tmp_path}", f"data_dir={mini_data}"]
    started = time.monotonic()
    out = launch(slurm_env, *args)
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started < 60  # it returns; it does not wait for the jobs
    assert "submitted 8 attempts with 3 sbatch calls" in out.stdout
    grading_id = re.search(r"grading array\s+(\d+)", out.stdout).group(1)
    analysis_id = re.search(r"analysis job\s+(\d+)", out.stdout).group(1)
    pending = squeue(slurm_env, "-j", f"{grading_id},{analysis_id}", "-o", "%i %r")
    assert "Dependency" in pending, pending
    sweep = sweep_of(tmp_path)
    arrays = json.loads((sweep / "sweep.json").read_text())["launches"][0]["arrays"]
    assert len(arrays) == 1 and len(next(iter(arrays.values()))) == 1  # one array for one resource shape

    wait_for("the analysis", lambda: (sweep / "analysis" / "summary.md").is_file())
    assert {s["state"] for s in states(sweep).values()} == {"done"}
    summary = (sweep / "analysis" / "summary.md").read_text()
    assert "| baseline | none | 10m | cpu | mini | 2 |" in summary and "| dummy | none | 10m | cpu | mini | 2 |" in summary
    assert len(list((sweep / "grading").glob("*.json"))) == 8

    again = launch(slurm_env, *args)
    assert again.returncode == 0 and "attempts: 8 planned, 0 to run" in again.stdout
    assert "nothing to submit" in again.stdout
    status = hpc_mle(slurm_env, "status", str(sweep), "--by", "scaffold")
    assert re.search(r"total\s+│\s+8\s+│\s+8", status.stdout), status.stdout


def test_two_gpu_tasks_see_both_gpus(slurm_env, mini_data, tmp_path):  # noqa: F811
    out = launch(slurm_env, "scaffold=dummy", "hardware=gpu2", "benchmark.competitions=[mini-churn]", *SMALL,
                 f"output_root={tmp_path}", f"data_dir={mini_data}")
    assert out.returncode == 0, out.stderr
    assert "#SBATCH --gres=gpu:2" in out.stdout
    sweep = sweep_of(tmp_path)
    wait_for("the attempt", lambda: all(s.get("state") == "done" for s in states(sweep).values()), timeout=240)
    (aid,) = states(sweep)
    record = json.loads((plan.attempt_dir(sweep, aid) / "logs" / "dummy.json").read_text())
    assert record["cuda_visible_devices"] == "0,1"
    assert record["hardware"] == "2 GPUs"  # emulated GPUs have no name to read


def test_requeue_cancel_and_warning_are_survived(slurm_env, mini_data, tmp_path):  # noqa: F811
    # The node has 2 CPUs: two 1-CPU attempts run at once, the third waits for a free CPU.
    args = ["-m", "scaffold=dummy", f"scaffold.command=[python3,/home/agent/dummy.py,--sleep,{BUSY_S}]",
            "runtime.time_limit=90s", "benchmark.competitions=[mini-churn,mini-digits,mini-leaf-species]",
            *SMALL, "cluster.array_throttle=2", f"output_root={tmp_path}", f"data_dir={mini_data}"]
    out = launch(slurm_env, *args)
    assert out.returncode == 0, out.stderr
    sweep = sweep_of(tmp_path)
    manifest = plan.read_manifest(sweep).set_index("competition_id")
    job = {c: f"{manifest.at[c, 'array_job_id']}_{manifest.at[c, 'task_id']}" for c in manifest.index}
    aid = {c: manifest.at[c, "id"] for c in manifest.index}

    def final(cid: str) -> dict:
        return runner.read_status(plan.attempt_dir(sweep, aid[cid])) or {}

    def running(cid: str) -> bool:
        st = final(cid)
        return st.get("state") == "running" and st.get("agent_elapsed_s", 0) > 3

    first, second, third = sorted(aid, key=lambda c: int(manifest.at[c, "task_id"]))
    wait_for("two attempts to run", lambda: running(first) and running(second), timeout=240)
    subprocess.run(["scontrol", "requeue", job[first]], env=slurm_env, check=True)
    subprocess.run(["scancel", "--signal=USR2", job[second]], env=slurm_env, check=True)  # Slurm's warning
    wait_for("the third attempt to run", lambda: running(third), timeout=240)
    subprocess.run(["scancel", job[third]], env=slurm_env, check=True)

    # Slurm holds a requeued job for about two minutes (Reason=BeginTime); release them, as a user may.
    def held(cid: str) -> bool:
        return squeue(slurm_env, "-j", job[cid], "-o", "%T %r").split() == ["PENDING", "BeginTime"]

    def restarted(cid: str) -> bool:
        return final(cid).get("starts") == 2

    wait_for("the requeued jobs to be held", lambda: all(held(c) or restarted(c) for c in (first, second)),
             timeout=180)
    for cid in (first, second):
        if held(cid):
            subprocess.run(["scontrol", "update", f"jobid={job[cid]}", "StartTime=now"], env=slurm_env, check=True)
    wait_for("the requeued attempts to finish",
             lambda: final(first).get("state") == "done" and final(second).get("state") == "done", timeout=420)
    for cid in (first, second):
        st = final(cid)
        assert st["starts"] == 2, st
        assert BUSY_S <= st["agent_elapsed_s"] <= 90  # the budget was respected across the restart
    events = (plan.attempt_dir(sweep, aid[second]) / "events.jsonl").read_text()
    assert "stopped by SIGUSR2" in events
    # Slurm's warning before --time ends a segment: the attempt went on in a second one; a requeue is no segment
    assert (final(second)["segments"], final(first)["segments"]) == (2, 1)

    status = hpc_mle(slurm_env, "status", str(sweep), "--failures")
    assert "the job ended before the attempt finished" in status.stdout, status.stdout
    resumed = hpc_mle(slurm_env, "resume", str(sweep))
    assert resumed.returncode == 0 and "1 attempt(s) to run again" in resumed.stdout, resumed.stderr
    wait_for("the resumed attempt", lambda: final(third).get("state") == "done", timeout=300)
    assert final(third)["starts"] == 2


def test_arrays_are_split_below_max_array_size(slurm_env, tmp_path, monkeypatch):  # noqa: F811
    from hpc_mle import slurm

    for key in ("SLURM_CONF", "PATH"):
        monkeypatch.setenv(key, slurm_env[key])
    monkeypatch.setattr(slurm, "max_array_size", lambda: 4)
    cfgs, attempts, sweep = plan_sweep(["scaffold=dummy", "seed=range(5)", "benchmark.competitions=[mini-churn]",
                                        "cluster=dev", "cluster.additional={hold: true}"], tmp_path, write=True)
    submission = slurm.submit(sweep, attempts, cfgs[0].cluster)  # held: nothing runs
    try:
        (arrays,) = submission.arrays.values()
        assert len(arrays) == 2 and submission.sbatch_calls == 4  # 4 + 1 tasks, then grading and analysis
        # tasks as squeue shows them: four of an array, and a plain job (submitit's one-task "array")
        assert sorted(job.partition("_")[2] for job in submission.tasks.values()) == ["", "0", "1", "2", "3"]
        queued = squeue(slurm_env, "-r", "-j", ",".join(arrays), "-o", "%i")
        assert len(queued.split()) == 5
    finally:
        slurm.cancel([*arrays, submission.grading, submission.analysis])
