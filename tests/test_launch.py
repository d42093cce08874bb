"""The launcher on this machine (cluster=local): plan, run, grade, analyse, relaunch, resume, nightly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hpc_mle import launch as launch_module
from hpc_mle import plan, runner, status

TWO = "benchmark.competitions=[mini-churn,mini-digits]"
bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


def launch(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpc_mle.launch", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_dry_run_of_the_paper_sized_plan(tmp_path):
    out = launch("-m", "model=gpt4o,o1", "seed=range(8)", "benchmark=lite", "hardware=gpu1,gpu2", "cluster=slurm",
                 f"output_root={tmp_path}", "--dry-run")
    assert out.returncode == 2, out.stderr  # the preflight refuses: lite is not prepared, no key is set
    assert "attempts: 704 planned, 704 to run" in out.stdout
    assert "group gpu1-cpu8-mem60g-t25m-default: 352 attempts (22 competitions)" in out.stdout
    assert "group gpu2-cpu16-mem120g-t25m-default: 352 attempts" in out.stdout
    assert "#SBATCH --gres=gpu:2" in out.stdout and "#SBATCH --time=25" in out.stdout
    assert "#SBATCH --array=0-351%32" in out.stdout  # two arrays share the sweep-wide throttle of 64
    assert "22 competition(s): 0 ready, 22 not prepared" in out.stdout
    assert "WARNING: model=gpt4o is set, but scaffold baseline uses no model" in out.stdout
    assert "grading array (8 tasks, afterany) and an analysis job (afterany)" in out.stdout
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["hardware.gpu=2"], "Key 'gpu' not in 'HardwareConf'"),
        (["cluster.partiton=gpu"], "Key 'partiton' not in 'ClusterConf'"),
        (["seed=range(2)"], "add -m (multirun)"),
        (["seed=two"], "could not be converted to Integer"),
        (["hardware=gpu3"], "Could not find 'hardware/gpu3'"),
        (["--fast"], "unknown option --fast"),
        (["benchmark.competitions=[nope]"], "are not in split 'mini'"),
    ],
)
def test_config_mistakes_fail_at_once_naming_the_key(args, message):
    out = launch(*args, "--dry-run")
    assert out.returncode == 2 and message in out.stderr, out.stderr


def test_attempt_ids_are_stable_and_follow_identity_only():
    a = plan.identity("mini-churn", "baseline", "none", 0, "10m", "cpu", 1)
    assert plan.attempt_id(a) == plan.attempt_id(dict(reversed(list(a.items()))))
    assert plan.attempt_id(a) != plan.attempt_id({**a, "seed": 1})
    assert plan.attempt_id(a) != plan.attempt_id({**a, "benchmark_version": 2})
    cfgs = plan.compose_all([["seed=3", "cluster.max_parallel=7"], ["seed=3"]])
    first, second = plan.plan_attempts(cfgs[:1]), plan.plan_attempts(cfgs[1:])
    assert [x.id for x in first] == [x.id for x in second]  # how it runs is not what it studies
    assert plan.sweep_name(cfgs[:1], [["seed=3", "dry_run=true"]]) == plan.sweep_name(cfgs[:1], [["seed=3"]])


@bwrap
def test_local_sweep_runs_grades_analyses_and_relaunch_is_a_no_op(tmp_path, mini_data):
    args = ["-m", "scaffold=dummy", "seed=range(2)", TWO, f"output_root={tmp_path}", f"data_dir={mini_data}"]
    out = launch(*args)
    assert out.returncode == 0, out.stderr
    assert "attempts: 4 planned, 4 to run" in out.stdout
    assert "| dummy | none | 10m | cpu | mini | 2 | 100.0 ± 0.0 (n=2) | 0.0 ± 0.0 (n=2) | 0.0 ± 0.0 (n=2) |" in out.stdout
    (sweep,) = tmp_path.iterdir()
    manifest = plan.read_manifest(sweep)
    assert len(manifest) == 4 and set(manifest["seed"]) == {0, 1}
    cpus_each = max(1, len(os.sched_getaffinity(0)) // 2)  # cluster=local runs two at once on disjoint CPUs
    for aid in manifest["id"]:
        st = runner.read_status(plan.attempt_dir(sweep, aid))
        assert st["state"] == "done" and len(st["cpus"]) == cpus_each, st
        graded = json.loads((sweep / "grading" / f"{aid}.json").read_text())
        assert graded["report"]["valid_submission"] and graded["report"]["leaderboard_source"] == "reference-panel"
    assert (sweep / "analysis" / "summary.md").is_file() and (sweep / "analysis" / "results.csv").is_file()
    (report,) = (sweep / "analysis").glob("*_grading_report.json")
    assert json.loads(report.read_text())["total_runs"] == 4

    again = launch(*args)
    assert again.returncode == 0 and "attempts: 4 planned, 0 to run" in again.stdout
    table = status.sweep_status(sweep)
    assert set(table["state"]) == {"done"} and (table["starts"] == 1).all()


@bwrap
def test_resume_runs_infrastructure_failures_again_but_not_agent_failures(tmp_path, mini_data):
    args = ["scaffold=dummy", TWO, f"output_root={tmp_path}", f"data_dir={mini_data}"]
    assert launch(*args).returncode == 0
    (sweep,) = tmp_path.iterdir()
    ids = list(plan.read_manifest(sweep)["id"])
    broken, crashed = (plan.attempt_dir(sweep, i) for i in ids)
    for path, failure in ((broken, "infrastructure"), (crashed, "agent")):
        st = runner.read_status(path)
        st.update(state="failed", failure=failure, reason=f"simulated {failure} failure")
        (path / "status.json").write_text(json.dumps(st))
    out = subprocess.run(["hpc-mle", "resume", str(sweep)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "1 attempt(s) to run again" in out.stdout
    assert runner.read_status(broken)["state"] == "done" and runner.read_status(broken)["starts"] == 2
    assert runner.read_status(crashed)["state"] == "failed"
    listing = subprocess.run(["hpc-mle", "status", str(sweep), "--failures"], capture_output=True, text=True)
    assert "simulated agent failure" in listing.stdout
    hint = " ".join(subprocess.run(["hpc-mle", "status", str(sweep)], capture_output=True, text=True).stdout.split())
    assert "--retry-agent-failures` also reruns the 1 whose agent failed" in hint and "infrastructure-failed" not in hint


@bwrap
def test_nightly_is_idempotent_and_compares_nights(tmp_path, mini_data):
    config = tmp_path / "nightly.yaml"
    config.write_text(json.dumps({"name": "tiny", "output_root": str(tmp_path / "nights"),
                                  "overrides": ["scaffold=dummy", TWO, f"data_dir={mini_data}"]}))
    for day in ("2026-11-20", "2026-11-21", "2026-11-21"):
        out = subprocess.run(["hpc-mle", "nightly", str(config), "--date", day], capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, out.stderr
    assert "attempts: 2 planned, 0 to run" in out.stdout  # the second call of the night runs nothing
    comparison = (tmp_path / "nights" / "tiny-2026-11-21" / "analysis" / "compare.md").read_text()
    assert "2 attempts in both; 0 gained a medal, 0 lost one" in comparison
    assert "| mini-churn | dummy | none | 0 | none | none | same | 0.5 | 0.5 | +0 |" in comparison


def test_nightly_config_errors_name_the_field(tmp_path):
    config = tmp_path / "n.yaml"
    config.write_text("overrides: [scaffold=dummy]\n")
    out = subprocess.run(["hpc-mle", "nightly", str(config)], capture_output=True, text=True)
    assert out.returncode == 2 and "field 'name' is required" in out.stderr


def test_restarts_are_capped(tmp_path, mini_data):
    from hpc_mle import jobs

    cfgs = plan.compose_all([["scaffold=dummy", "benchmark.competitions=[mini-churn]", f"data_dir={mini_data}"]])
    (attempt,) = plan.plan_attempts(cfgs)
    plan.write_plan(tmp_path, cfgs, [[]], [attempt])
    out = plan.attempt_dir(tmp_path, attempt.id)
    out.mkdir(parents=True)
    (out / "status.json").write_text(json.dumps({"state": "running", "starts": 4, "agent_elapsed_s": 30}))
    st = jobs.agent_task(tmp_path, attempt.id, max_restarts=3)
    assert st["state"] == "failed" and st["failure"] == "infrastructure"
    assert st["reason"].startswith("gave up after 4 starts (max_restarts=3)")


def test_local_workers_get_disjoint_cpu_sets():
    assert launch_module.cpu_slices([0, 1], 2) == [[0], [1]]
    assert launch_module.cpu_slices([0, 1, 2, 3, 4], 2) == [[0, 1], [2, 3]]
    assert launch_module.cpu_slices([3], 2) == [[3], [3]]  # fewer CPUs than workers: shared
    assert launch_module.cpu_slices([0, 1], 1) == [[0, 1]]


def test_manifest_keeps_config_ids_that_look_like_numbers(tmp_path):
    """A config id is a hash: 64e862241214 must stay that text (read as a float it was inf, and the attempt's
    job then looked for configs/inf.json)."""
    cfgs = plan.compose_all([["scaffold=dummy", "benchmark.competitions=[mini-churn]", f"output_root={tmp_path}"]])
    (attempt,) = plan.plan_attempts(cfgs)
    plan.write_plan(tmp_path, cfgs, [[]], [attempt])
    manifest = tmp_path / plan.MANIFEST
    manifest.write_text(manifest.read_text().replace(attempt.config_id, "64e862241214"))
    plan.update_manifest(tmp_path, {attempt.id: "7_0"}, "2026-01-01T00:00:00+00:00")
    row = plan.read_manifest(tmp_path).iloc[0]
    assert row["config_id"] == "64e862241214" and row["job_id"] == "7_0"
    assert "64e862241214" in manifest.read_text()
