"""Launch and status at scale: the paper's 22 x 8 x 2 x 2 = 704-attempt plan, and status over 10,000 attempts.

Targets (issue #4): launch under 5 s; at most one sbatch per resource group plus grading and analysis;
`hpc-mle status` under 1 s over 10,000 attempts with at most one Slurm query.

    python benchmarks/launch_and_status.py            # dry run + status; real submission if a Slurm is reachable

The real submission goes to the dev cluster (slurm/dev/up.sh; SLURM_CONF set) with every job held
(`--hold`) and is cancelled right after, so nothing runs. The Lite competitions need no prepared data
for that: the benchmark submits the plan directly, as the launcher does after its checks.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hpc_mle import plan, slurm, status
from hpc_mle.files import atomic_write_json

PAPER = ["-m", "model=gpt4o,o1", "seed=range(8)", "benchmark=lite", "hardware=gpu1,gpu2"]


def dry_run(root: Path) -> None:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "hpc_mle.launch", *PAPER, "cluster=slurm", f"output_root={root}",
                          "--dry-run"], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    planned = next(line for line in out.stdout.splitlines() if line.startswith("attempts:"))
    print(f"dry run (whole command, Python start-up included): {wall:.2f} s   [{planned}]")


def submit_held(root: Path) -> None:
    if not slurm.available():
        print("real submission: skipped (no sbatch here; start slurm/dev/up.sh and source slurm/dev/env.sh)")
        return
    t0 = time.perf_counter()
    jobs = plan.expand([*PAPER[1:], "cluster=dev", "cluster.additional={hold: true}", f"output_root={root}"], True)
    cfgs = plan.compose_all(jobs)
    attempts = plan.plan_attempts(cfgs)
    sweep = root / plan.sweep_name(cfgs, jobs)
    plan.write_plan(sweep, cfgs, jobs, attempts)
    submission = slurm.submit(sweep, attempts, cfgs[0].cluster)  # one sbatch per submitit map_array/submit
    slurm.record_launch(sweep, submission)
    wall = time.perf_counter() - t0
    groups = len(submission.arrays)
    print(f"real submission to the dev cluster: {len(attempts)} attempts in {wall:.2f} s, "
          f"{submission.sbatch_calls} sbatch calls ({groups} resource groups + grading + analysis)")
    t0 = time.perf_counter()
    table = status.sweep_status(sweep)
    print(f"status of that sweep (all held in the queue): {time.perf_counter() - t0:.2f} s, "
          f"states {table['state'].value_counts().to_dict()}")
    ids = [i for ids in submission.arrays.values() for i in ids] + [submission.grading, submission.analysis]
    slurm.cancel(ids)
    print(f"cancelled {len(ids)} jobs")


def status_at_scale(root: Path, n: int = 10_000) -> None:
    """A sweep folder with n attempts in every state; a tenth of them 'running' under job ids Slurm must confirm."""
    sweep = root / "status-bench"
    rng = random.Random(0)
    rows, attempts = [], sweep / "attempts"
    states = ["done"] * 6 + ["failed", "timeout", "running", None]
    for i in range(n):
        aid = f"{i:016x}"
        d = attempts / aid
        d.mkdir(parents=True)
        state = rng.choice(states)
        if state:
            (d / "status.json").write_text(json.dumps({"state": state, "starts": 1, "agent_elapsed_s": 10.0,
                                                       "failure": "agent" if state == "failed" else None}))
        rows.append(f"{aid},mini-churn,baseline,none,{i % 8},10m,cpu,{900000 + i // 1000},{i % 1000},{d}")
    (sweep / plan.MANIFEST).write_text("id,competition_id,scaffold,model,seed,runtime,hardware,array_job_id,"
                                       "task_id,path\n" + "\n".join(rows) + "\n")
    atomic_write_json(sweep / plan.SWEEP_FILE, {"launches": []})
    queries = []
    real = slurm.queue_jobs

    def counting():
        queries.append(1)
        return real()

    status.slurm.queue_jobs = counting
    t0 = time.perf_counter()
    table = status.sweep_status(sweep)
    elapsed = time.perf_counter() - t0
    status.slurm.queue_jobs = real
    asked = int((table["file_state"].isna() | table["file_state"].isin(status.UNSETTLED)).sum()) if queries else 0
    print(f"status over {n:,} attempts: {elapsed:.2f} s, {len(queries)} Slurm query "
          f"(about {asked} unsettled attempts asked about)"
          f"  -> target < 1 s and <= 1 query: {'OK' if elapsed < 1 and len(queries) <= 1 else 'OVER TARGET'}")
    print(f"  states: {table['state'].value_counts().to_dict()}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dry_run(root)
        submit_held(root)
        status_at_scale(root)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
