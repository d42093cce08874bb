"""Sweep state on the real dev cluster (slurm/dev/): what status says, and what resume and relaunch submit.

Each test checks the state reported, the jobs in the queue (squeue) and that no attempt is submitted
twice (launches.jsonl, the write-ahead record of every sbatch). Faults are injected with shims on PATH:
a `squeue` that fails, an `sbatch` that stalls on its second call so the launcher can be killed there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from slurm_cluster import slurm_env, wait_for  # noqa: F401  (fixture)

from hpc_mle import plan, slurm, status

pytestmark = pytest.mark.slow
SMALL = ["cluster=dev", "hardware.cpus=1", "hardware.mem_gb=1", "cluster.grading_tasks=1"]


def run(env: dict, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, env=env, timeout=300)


def start(env: dict, *argv: str) -> subprocess.Popen:
    return subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


def launch_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "hpc_mle.launch", *args]


def sweep_jobs(env: dict, sweep: Path) -> list[str]:
    """The sweep's jobs in the queue, found by the job names the launcher gives them."""
    out = run(env, "squeue", "--me", "-h", "-r", "-o", "%i|%j").stdout.split()
    prefix = f"{slurm.NAME_PREFIX}{slurm.sweep_key(sweep)}-"
    return [line.split("|")[0] for line in out if line.split("|")[1].startswith(prefix)]


def submissions(sweep: Path) -> Counter:
    """How many recorded submissions each attempt had."""
    return Counter(a for e in slurm.read_log(sweep) if e["event"] == "submitted" for a in e["tasks"])


def shim(folder: Path, name: str, body: str) -> None:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def with_path(env: dict, folder: Path) -> dict:
    return {**env, "PATH": f"{folder}{os.pathsep}{env['PATH']}"}


def the_sweep(tmp_path: Path) -> Path:
    (sweep,) = [p for p in tmp_path.iterdir() if (p / plan.MANIFEST).is_file()]
    return sweep


@pytest.fixture
def here(slurm_env, monkeypatch):  # noqa: F811
    """This process talks to the dev cluster too (status.sweep_status is called in-process)."""
    for key in ("SLURM_CONF", "PATH"):
        monkeypatch.setenv(key, slurm_env[key])
    return slurm_env


def test_held_single_task_sweep_is_queued_and_submitted_once(here, mini_data, tmp_path):
    env = here
    args = launch_argv("scaffold=dummy", "benchmark.competitions=[mini-churn]", *SMALL,
                       "cluster.additional={hold: true}", f"output_root={tmp_path / 'runs'}", f"data_dir={mini_data}")
    first, second = start(env, *args), start(env, *args)  # two launches at the same moment
    outs = [p.communicate(timeout=120)[0] for p in (first, second)]
    sweep = the_sweep(tmp_path / "runs")
    try:
        assert sum("submitted 1 attempts" in o for o in outs) == 1, outs
        assert any("another launch/resume of this sweep is running" in o or "nothing to submit" in o for o in outs)
        assert len(sweep_jobs(env, sweep)) == 3  # one plain agent job, grading, analysis
        (aid,) = submissions(sweep)
        job = slurm.recorded_tasks(slurm.read_log(sweep))[aid]
        assert "_" not in job  # submitit made a plain job of the one-task array; squeue shows it so

        with plan.sweep_lock(sweep):  # as a launch or resume holds it
            locked = run(env, "hpc-mle", "resume", str(sweep))
        assert f"another launch/resume of this sweep is running (pid {os.getpid()}" in locked.stderr, locked.stderr

        shown = run(env, "hpc-mle", "status", str(sweep))
        assert shown.returncode == 0 and "queued" in shown.stdout and "lost" not in shown.stdout, shown.stdout
        resumed = run(env, "hpc-mle", "resume", str(sweep))
        assert resumed.returncode == 0 and "1 attempts: 1 queued" in resumed.stdout, resumed.stdout
        assert "0 attempt(s) to run again" in resumed.stdout

        failing = with_path(env, tmp_path / "shim")
        shim(tmp_path / "shim", "squeue", 'echo "slurm_load_jobs error: Unable to contact slurm controller" >&2\n'
                                          "exit 1")
        shown = run(failing, "hpc-mle", "status", str(sweep))
        assert shown.returncode == 1 and "unknown" in shown.stdout and "lost" not in shown.stdout, shown.stdout
        assert "Unable to contact slurm controller" in shown.stderr and "Fix:" in shown.stderr
        resumed = run(failing, "hpc-mle", "resume", str(sweep))
        assert resumed.returncode != 0 and "nothing was submitted" in resumed.stderr, resumed.stderr
        relaunched = run(failing, *args)
        assert relaunched.returncode != 0 and "nothing was submitted" in relaunched.stderr, relaunched.stderr
        assert len(sweep_jobs(env, sweep)) == 3 and submissions(sweep) == {aid: 1}

        cancelled = run(env, "hpc-mle", "cancel", str(sweep))
        assert "cancelled 3 job(s)" in cancelled.stdout, cancelled.stdout
        wait_for("the cancelled jobs to leave the queue", lambda: not sweep_jobs(env, sweep), timeout=30)
        assert status.sweep_status(sweep).at[0, "state"] == "lost"
        assert "cancelled 0 job(s)" in run(env, "hpc-mle", "cancel", str(sweep)).stdout
        both = [start(env, "hpc-mle", "resume", str(sweep)) for _ in range(2)]  # two resumes at once
        outs = [p.communicate(timeout=120)[0] for p in both]
        assert sum("submitted 1 attempt(s)" in o for o in outs) == 1, outs
        assert len(sweep_jobs(env, sweep)) == 3 and submissions(sweep) == {aid: 2}
    finally:
        slurm.cancel(sweep_jobs(env, sweep))


def stalling_sbatch(env: dict, tmp_path: Path, call: int) -> tuple[dict, Path]:
    """An `sbatch` first on PATH that submits for real, then stalls on call number `call` (marked by a file)."""
    count, stalled = tmp_path / "sbatch-calls", tmp_path / "stalled"
    real = subprocess.run(["which", "sbatch"], capture_output=True, text=True, env=env).stdout.strip()
    shim(tmp_path / "shim", "sbatch", f'echo x >> {count}\n{real} "$@"; rc=$?\n'
                                      f'if [ "$(wc -l < {count})" -eq {call} ]; then touch {stalled}; sleep 120; fi\n'
                                      "exit $rc")
    return with_path(env, tmp_path / "shim"), stalled


def kill_when(launcher: subprocess.Popen, stalled: Path) -> None:
    """kill -9 the launcher (and its stalled sbatch) once that sbatch has submitted."""
    wait_for("the launcher's stalled sbatch", stalled.is_file, timeout=120, every=0.2)
    os.killpg(launcher.pid, signal.SIGKILL)
    launcher.wait()


def test_unrecorded_agent_array_of_a_killed_launch_is_cancelled_and_resubmitted(here, mini_data, tmp_path):
    env = here
    args = launch_argv("-m", "scaffold=dummy", "benchmark.competitions=[mini-churn,mini-digits]", *SMALL,
                       "cluster.additional={hold: true}", f"output_root={tmp_path / 'runs'}", f"data_dir={mini_data}")
    stalling, stalled = stalling_sbatch(env, tmp_path, call=1)
    kill_when(start(stalling, *args), stalled)  # the agent array is queued; its ids were never written
    sweep = the_sweep(tmp_path / "runs")
    try:
        (stray,) = {job.split("_")[0] for job in sweep_jobs(env, sweep)}  # one array, two tasks
        assert len(sweep_jobs(env, sweep)) == 2 and not submissions(sweep)
        table = status.sweep_status(sweep)
        assert list(table["state"]) == ["queued", "queued"], table  # found by its job name
        again = run(env, *args)
        assert again.returncode == 0 and f"cancelled job(s) {stray}:" in again.stdout, again.stdout
        assert "submitted 2 attempts" in again.stdout
        wait_for("the stray array to leave the queue",
                 lambda: all(not j.startswith(f"{stray}_") for j in sweep_jobs(env, sweep)), timeout=30)
        assert len(sweep_jobs(env, sweep)) == 4  # two array tasks, grading, analysis
        assert submissions(sweep) == dict.fromkeys(table["id"], 1)
        assert list(status.sweep_status(sweep)["state"]) == ["queued", "queued"]
    finally:
        slurm.cancel(sweep_jobs(env, sweep))


def test_killed_launcher_damaged_status_and_lost_manifest_rerun_nothing(here, mini_data, tmp_path):
    env = here
    args = launch_argv("-m", "scaffold=dummy", "benchmark.competitions=[mini-churn,mini-digits]", *SMALL,
                       "runtime.time_limit=60s", f"output_root={tmp_path / 'runs'}", f"data_dir={mini_data}")
    stalling, stalled = stalling_sbatch(env, tmp_path, call=2)
    kill_when(start(stalling, *args), stalled)  # between its sbatch calls: grading is queued but not recorded
    sweep = the_sweep(tmp_path / "runs")
    entries = slurm.read_log(sweep)
    assert [e["role"] for e in entries if e["event"] == "submitted"] == ["agents0-0"]
    assert len(submissions(sweep)) == 2

    again = run(env, *args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "cancelled job(s)" in again.stdout and "submitted 0 attempts" in again.stdout, again.stdout
    wait_for("the analysis", lambda: (sweep / "analysis" / "summary.md").is_file(), timeout=240)
    table = status.sweep_status(sweep)
    assert list(table["state"]) == ["done", "done"] and list(table["starts"]) == [1, 1]
    assert submissions(sweep) == dict.fromkeys(table["id"], 1)  # each attempt queued exactly once
    assert sorted(p.stem for p in (sweep / "grading").glob("*.json")) == sorted(table["id"])
    wait_for("the sweep's jobs to leave the queue", lambda: not sweep_jobs(env, sweep), timeout=60)

    one, two = (plan.attempt_dir(sweep, a) for a in table["id"])
    (one / "status.json").write_text((one / "status.json").read_text()[:40])  # truncated; events.jsonl has its end
    (two / "status.json").write_text('{"state": "do')
    (two / "events.jsonl").write_text((two / "events.jsonl").read_text().split('"event": "end"')[0][:-30])
    (sweep / plan.MANIFEST).unlink()
    again = run(env, *args)
    assert again.returncode == 0 and "2 planned, 0 to run" in again.stdout, again.stdout
    assert "nothing to submit" in again.stdout and not sweep_jobs(env, sweep)
    table = status.sweep_status(sweep).set_index("id")
    assert table.at[one.name, "state"] == "done" and table.at[two.name, "state"] == "damaged"
    assert str(two / "status.json") in table.at[two.name, "reason"]
    assert plan.read_manifest(sweep)["job_id"].notna().all()  # the rebuilt manifest has its job ids back
    resumed = run(env, "hpc-mle", "resume", str(sweep))
    assert "1 done, 1 damaged" in resumed.stdout and "0 attempt(s) to run again" in resumed.stdout, resumed.stdout
    assert submissions(sweep) == dict.fromkeys(table.index, 1)
    assert json.loads((sweep / "grading" / f"{one.name}.json").read_text())["state"] == "done"
