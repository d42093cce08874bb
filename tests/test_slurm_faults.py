"""Faults injected on the real one-node dev cluster (slurm/dev/): every attempt ends in a truthful state.

A cancelled grading array (the analysis job then runs at once), `scontrol requeue` twice in a row, and
a node crash (slurmd and the job's processes killed with -9, then slurmd restarted). Skipped with the
reason where the cluster cannot be brought up; an error under CI=true (tests/slurm_cluster.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from slurm_cluster import slurm_env, state_dir, wait_for  # noqa: F401  (fixture)

from hpc_mle import jobs, plan, runner

pytestmark = pytest.mark.slow
SMALL = ["cluster=dev", "hardware.cpus=1", "hardware.mem_gb=1", "cluster.grading_tasks=1"]
# How long each start of the requeued dummy agents stays busy: long enough to be seen running and requeued,
# short because every restart sleeps it again.
BUSY_S = 12


def launch(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpc_mle.launch", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def squeue(env: dict, *args: str) -> str:
    return subprocess.run(["squeue", "-h", *args], capture_output=True, text=True, env=env).stdout


def sleeping_sweep(env: dict, tmp_path: Path, mini_data: Path, seconds: int, *extra: str) -> tuple[Path, dict, str]:
    """Two dummy attempts that each stay busy `seconds`; returns the sweep, each attempt's Slurm task and the
    grading array's id."""
    out = launch(env, "-m", "scaffold=dummy", f"scaffold.command=[python3,/home/agent/dummy.py,--sleep,{seconds}]",
                 "runtime.time_limit=90s", "benchmark.competitions=[mini-churn,mini-digits]", *SMALL,
                 f"output_root={tmp_path}", f"data_dir={mini_data}", *extra)
    assert out.returncode == 0, out.stderr
    (sweep,) = [p for p in tmp_path.iterdir() if (p / plan.MANIFEST).is_file()]
    manifest = plan.read_manifest(sweep)
    tasks = {r["id"]: f"{r['array_job_id']}_{r['task_id']}" for r in manifest.to_dict("records")}
    return sweep, tasks, re.search(r"grading array\s+(\d+)", out.stdout).group(1)


def status_of(sweep: Path, aid: str) -> dict:
    return runner.read_status(plan.attempt_dir(sweep, aid)) or {}


def running(sweep: Path, aid: str) -> bool:
    st = status_of(sweep, aid)
    return st.get("state") == "running" and st.get("agent_elapsed_s", 0) > 3


def started_first(sweep: Path, tasks: dict) -> str:
    """The attempt that runs first (the cluster is shared: the other one may wait for a CPU)."""
    wait_for("an attempt to run", lambda: any(running(sweep, a) for a in tasks), timeout=240)
    return next(a for a in tasks if running(sweep, a))


def resume(env: dict, sweep: Path) -> str:
    done = subprocess.run(["hpc-mle", "resume", str(sweep)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def current_jobs(sweep: Path) -> dict[str, str]:
    """Each attempt's latest Slurm job or task, from the manifest (resume records the new ones there)."""
    rows = plan.read_manifest(sweep).to_dict("records")
    return {r["id"]: str(r["job_id"]) if isinstance(r.get("job_id"), str) else f"{r['array_job_id']}_{r['task_id']}"
            for r in rows}


def release_if_held(env: dict, job: str) -> bool:
    """Slurm holds a requeued job for about two minutes (Reason=BeginTime); release it, as a user may."""
    if squeue(env, "-j", job, "-o", "%T %r").split() != ["PENDING", "BeginTime"]:
        return False
    subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], env=env, capture_output=True)
    return True


def test_cancelled_grading_and_two_requeues(slurm_env, mini_data, tmp_path):  # noqa: F811
    """scancel of the grading array runs the analysis at once: it publishes no attempt that has not ended and
    marks itself partial; the last attempt to end analyses again. Two requeues in a row keep the budget."""
    sweep, tasks, grading_id = sleeping_sweep(slurm_env, tmp_path, mini_data, BUSY_S)
    first = started_first(sweep, tasks)
    subprocess.run(["scancel", grading_id], env=slurm_env, check=True)
    requeues = [subprocess.run(["scontrol", "requeue", tasks[first]], env=slurm_env, capture_output=True,
                               text=True) for _ in range(2)]
    assert requeues[0].returncode == 0, requeues[0].stderr

    partial = sweep / "analysis" / jobs.PARTIAL
    wait_for("the analysis job, run early by the cancelled grading", partial.is_file, timeout=120)
    left = {r["attempt_id"]: r["state"] for r in json.loads(partial.read_text())["left_out"]}
    assert first in left and left[first] != "done"
    published = (sweep / "analysis" / "results.csv").read_text()
    assert all(aid not in published for aid in left)  # never an attempt that had not ended
    assert "**Partial analysis**" in (sweep / "analysis" / "summary.md").read_text()

    def finished() -> bool:
        release_if_held(slurm_env, tasks[first])
        return all(status_of(sweep, a).get("state") in runner.TERMINAL for a in tasks) and not partial.exists()

    wait_for("the last attempt to end and analyse the sweep again", finished, timeout=300)
    for aid in tasks:
        st = status_of(sweep, aid)
        assert st["state"] == "done", st
        assert BUSY_S <= st["agent_elapsed_s"] <= 90  # the budget held across the restarts
    assert status_of(sweep, first)["starts"] >= 2
    results = pd.read_csv(sweep / "analysis" / "results.csv")
    assert sorted(results["attempt_id"]) == sorted(tasks) and set(results["state"]) == {"done"}
    assert sorted(p.stem for p in (sweep / "grading").glob("*.json")) == sorted(tasks)  # graded once each
    assert "Partial analysis" not in (sweep / "analysis" / "summary.md").read_text()


def _slurmd_command() -> list[str]:
    """slurmd's command line as up.sh started it (to start it again after the crash)."""
    pid = int((state_dir() / "run" / "slurmd.pid").read_text())
    return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")


def _job_pids(job: str) -> list[int]:
    """Every process of one Slurm job on this node: its slurmstepd and all below it."""
    import psutil

    steps = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"]
             and p.info["cmdline"][0].startswith("slurmstepd") and f"[{job}" in " ".join(p.info["cmdline"])]
    return [q.pid for p in steps for q in [p, *p.children(recursive=True)]]


def test_node_crash_and_the_slurm_time_limit_end_truthfully_each_graded_once(slurm_env, mini_data,  # noqa: F811
                                                                             tmp_path):
    """Agents that would run 300 s on a 60 s budget with Slurm --time = the budget (margin 0).

    One job's processes and slurmd are killed with -9 (a node crash), then slurmd restarts. Without a reboot
    Slurm 22.05 keeps that job RUNNING until its time limit (it purges missing jobs only of rebooted nodes), and
    the attempt's own files say `running`, never more; the user cancels it. The other attempt meets Slurm's
    time limit (warning, then TERM; Slurm enforces limits only every ~30 s, so the runner's own budget may end
    first): it stops as preempted or timeout, never done or running. `hpc-mle resume` (run while the other
    attempt still runs, and again if one stopped with budget left) completes both within their budget (timeout
    at 60 s of agent time, across starts); each is graded once and the analysis ends complete."""
    sweep, tasks, _ = sleeping_sweep(slurm_env, tmp_path, mini_data, 300, "runtime.time_limit=60s",
                                     "runtime.margin=0s", "cluster.signal_delay_s=0")
    first = started_first(sweep, tasks)
    job_id = squeue(slurm_env, "-j", tasks[first], "-o", "%A").split()[0]
    command = _slurmd_command()
    os.kill(int((state_dir() / "run" / "slurmd.pid").read_text()), signal.SIGKILL)
    for pid in _job_pids(job_id):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    subprocess.run(command, env=slurm_env, check=True)
    assert status_of(sweep, first)["state"] == "running"  # killed without a word: its files claim nothing more
    subprocess.run(["scancel", tasks[first]], env=slurm_env, check=True)  # 22.05 refuses a task's own job id
    wait_for("the stuck task to leave the queue", lambda: not squeue(slurm_env, "-j", tasks[first]).strip(),
             timeout=60)
    resumes = [resume(slurm_env, sweep)]  # while the other attempt still runs: only the crashed one goes again

    def ended() -> bool:
        jobs_now = current_jobs(sweep).values()
        for job in jobs_now:
            release_if_held(slurm_env, job)
        states = {a: status_of(sweep, a).get("state") for a in tasks}
        queued = any(squeue(slurm_env, "-j", job).strip() for job in jobs_now)
        if not queued and any(st != "timeout" for st in states.values()):
            assert all(st in ("preempted", "timeout", "requeued") for st in states.values()), states  # truthful
            resumes.append(resume(slurm_env, sweep))
        return all(st == "timeout" for st in states.values())

    wait_for("both attempts to use up their budget", ended, timeout=300, every=1)
    assert len(resumes) <= 3
    wait_for("a complete analysis", lambda: (sweep / "analysis" / "results.csv").is_file()
             and not (sweep / "analysis" / jobs.PARTIAL).exists()
             and len(pd.read_csv(sweep / "analysis" / "results.csv")) == 2, timeout=240)
    for aid in tasks:
        st = status_of(sweep, aid)
        assert 59 <= st["agent_elapsed_s"] <= 61, st  # the budget, across every start
    assert status_of(sweep, first)["starts"] >= 2
    assert sorted(p.stem for p in (sweep / "grading").glob("*.json")) == sorted(tasks)
    assert set(pd.read_csv(sweep / "analysis" / "results.csv")["state"]) == {"timeout"}
