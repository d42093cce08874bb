"""The development Slurm cluster (slurm/dev/) behaves as the launcher expects: GPUs, arrays, dependencies."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from slurm_cluster import require_cluster

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED"}


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return require_cluster()


def run(env: dict[str, str], *cmd: str) -> str:
    """Runs a Slurm command against the dev cluster and returns its stdout."""
    out = subprocess.run(list(cmd), env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"{' '.join(cmd)} failed: {out.stderr.strip()}"
    return out.stdout


def submit(env: dict[str, str], workdir: Path, *args: str) -> str:
    """sbatch in `workdir`; returns the job id."""
    out = run(env, "sbatch", "--parsable", f"--chdir={workdir}", *args)
    return out.strip().split(";")[0]


def job_states(env: dict[str, str], job_id: str) -> list[str]:
    """JobState of every record of the job (one per array task once they are split out)."""
    out = run(env, "scontrol", "-o", "show", "job", job_id)
    return re.findall(r"\bJobState=(\S+)", out)


def wait_for_states(env: dict[str, str], job_id: str, wanted: set[str], timeout: float = 30) -> list[str]:
    """Polls until every record of the job is in `wanted`; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    states: list[str] = []
    while time.monotonic() < deadline:
        states = job_states(env, job_id)
        if states and all(state in wanted for state in states):
            return states
        time.sleep(0.2)
    pytest.fail(f"job {job_id} still in {states} after {timeout} s (wanted {sorted(wanted)})")


def wait_done(env: dict[str, str], job_id: str, timeout: float = 30) -> list[str]:
    return wait_for_states(env, job_id, TERMINAL, timeout)


def test_node_has_two_gpus(env: dict[str, str]) -> None:
    rows = [line.split() for line in run(env, "sinfo", "-h", "-N", "-o", "%N %G %T %P").splitlines()]
    assert rows, "sinfo lists no node"
    assert all(gres == "gpu:2" for _, gres, _, _ in rows)
    assert {partition.rstrip("*") for *_, partition in rows} >= {"debug", "gpu"}


def test_config_has_max_array_size(env: dict[str, str]) -> None:
    config = run(env, "scontrol", "show", "config")
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", config, re.MULTILINE)
    assert match and int(match.group(1)) == 1001


@pytest.mark.parametrize(("gpus", "visible"), [(2, "0,1"), (1, "0")])
def test_gres_sets_cuda_visible_devices(env: dict[str, str], tmp_path: Path, gpus: int, visible: str) -> None:
    out = tmp_path / "job.out"
    job = submit(env, tmp_path, f"--gres=gpu:{gpus}", f"--output={out}", "--wrap",
                 'echo "CVD=$CUDA_VISIBLE_DEVICES"')
    assert wait_done(env, job) == ["COMPLETED"]
    assert out.read_text().strip() == f"CVD={visible}"


def test_array_runs_every_task_at_most_two_at_once(env: dict[str, str], tmp_path: Path) -> None:
    script = 'echo "$SLURM_ARRAY_TASK_ID $(date +%s.%N)"; sleep 1; echo "$(date +%s.%N)"'
    job = submit(env, tmp_path, "--array=0-3%2", f"--output={tmp_path}/task-%a.out", "--wrap", script)
    assert wait_done(env, job, timeout=40) == ["COMPLETED"] * 4
    spans = []
    for task in range(4):
        first, last = (tmp_path / f"task-{task}.out").read_text().split("\n")[:2]
        task_id, start = first.split()
        assert int(task_id) == task
        spans.append((float(start), float(last)))
    # The %2 throttle: no instant sees more than two tasks running.
    for start, _ in spans:
        assert sum(1 for s, e in spans if s <= start < e) <= 2


def test_dependency_waits_for_first_job(env: dict[str, str], tmp_path: Path) -> None:
    first = submit(env, tmp_path, "--output=/dev/null", "--wrap", "sleep 60")
    second = submit(env, tmp_path, f"--dependency=afterany:{first}", f"--output={tmp_path}/second.out",
                    "--wrap", "echo second ran")
    try:
        wait_for_states(env, first, {"RUNNING"})
        assert run(env, "squeue", "-h", "-j", second, "-o", "%R").strip() == "(Dependency)"
    finally:
        run(env, "scancel", first)
    # afterany: a cancelled first job still releases the second.
    assert wait_done(env, second) == ["COMPLETED"]
    assert (tmp_path / "second.out").read_text().strip() == "second ran"


def test_sacct_lists_jobs_when_accounting_is_on(env: dict[str, str], tmp_path: Path) -> None:
    config = run(env, "scontrol", "show", "config")
    if "accounting_storage/slurmdbd" not in config:
        pytest.skip("the dev cluster runs without accounting (HPC_MLE_SLURM_ACCOUNTING=0 or slurmdbd failed)")
    job = submit(env, tmp_path, "--output=/dev/null", "--gres=gpu:1", "--wrap", "true")
    wait_done(env, job)
    # slurmctld hands job records to slurmdbd asynchronously.
    deadline = time.monotonic() + 20
    rows: list[str] = []
    while time.monotonic() < deadline:
        rows = run(env, "sacct", "-n", "-X", "-P", "-j", job, "-o", "JobID,State,AllocTRES").splitlines()
        if rows and rows[0].split("|")[1] == "COMPLETED":
            break
        time.sleep(0.5)
    assert rows, f"sacct does not list job {job}"
    job_id, state, tres = rows[0].split("|")
    assert (job_id, state) == (job, "COMPLETED")
    assert "gres/gpu=1" in tres
