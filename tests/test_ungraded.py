"""Ended attempts that are not graded: `hpc-mle status` says so and what grades them, `hpc-mle resume` grades them
(here) or submits the grading and the analysis for them (Slurm, held jobs on the dev cluster).

Real sweep folders (plan, status.json, a real submission of mini-churn); the CLI is run in-process.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from slurm_cluster import slurm_env  # noqa: F401  (fixture)
from test_jobs_segments import BUDGET_S, churn, ended  # noqa: F401  (churn: fixture)

from hpc_mle import cli, jobs, plan, slurm, status


def mini_sweep(tmp_path: Path, data: Path, cluster: str, *extra: str) -> tuple[Path, list[str]]:
    """Two attempts of mini-churn that have ended (timeout, with the sample submission), neither graded."""
    expanded = plan.expand(["scaffold=dummy", "benchmark.competitions=[mini-churn]", f"cluster={cluster}",
                            f"runtime.time_limit={BUDGET_S:g}s", f"output_root={tmp_path}", f"data_dir={data}",
                            "seed=range(2)", *extra], True)
    cfgs = plan.compose_all(expanded)
    attempts = plan.plan_attempts(cfgs)
    sweep = tmp_path / plan.sweep_name(cfgs, expanded)
    plan.write_plan(sweep, cfgs, expanded, attempts)
    ids = [a.id for a in attempts]
    for aid in ids:
        ended(sweep, aid, data, state="timeout", agent_elapsed_s=BUDGET_S)
    return sweep, ids


def hpc_mle(*argv: str) -> str:
    result = CliRunner().invoke(cli.main, list(argv), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # rich wraps long lines


def test_status_names_ungraded_attempts_and_a_local_resume_grades_them(tmp_path, churn):  # noqa: F811
    sweep, (one, two) = mini_sweep(tmp_path, churn, "local")
    jobs.grade_attempt(sweep, one)
    assert status.ungraded(sweep) == [two] and status.analysis_stale(sweep)  # a grade, no analysis yet
    assert f"1 ended attempt(s) not graded yet: `hpc-mle resume {sweep}` grades them" in hpc_mle("status", str(sweep))

    out = hpc_mle("resume", str(sweep))
    assert "0 attempt(s) to run again" in out and "any medal" in out  # graded, then the analysis' table
    assert status.ungraded(sweep) == [] and not status.analysis_stale(sweep)
    assert "not graded" not in (sweep / "analysis" / "summary.md").read_text()
    assert "not graded" not in hpc_mle("status", str(sweep))

    jobs.grade_attempt(sweep, two)  # a grade newer than the analysis: resume redoes it
    assert status.analysis_stale(sweep)
    hpc_mle("resume", str(sweep))
    assert not status.analysis_stale(sweep)


@pytest.fixture
def here(slurm_env, monkeypatch):  # noqa: F811
    """This process talks to the dev cluster (the CLI runs in-process)."""
    for key in ("SLURM_CONF", "PATH"):
        monkeypatch.setenv(key, slurm_env[key])
    return slurm_env


def sweep_jobs(sweep: Path) -> list[slurm.QueuedJob]:
    return slurm.sweep_jobs(sweep, slurm.queue_jobs())


def test_resume_on_slurm_with_nothing_to_run_submits_grading_and_analysis(tmp_path, churn, here):  # noqa: F811
    sweep, ids = mini_sweep(tmp_path, churn, "dev", "cluster.additional={hold: true}", "cluster.grading_tasks=4")
    out = hpc_mle("resume", str(sweep))
    assert "0 attempt(s) to run again" in out and "no attempt to run; submitted grading" in out, out
    queued = sweep_jobs(sweep)
    try:
        roles = sorted(q.name.rsplit("-", 1)[-1] for q in queued)
        # one grading task per ungraded attempt (2 of them; grading_tasks allows 4), then the analysis
        assert roles == ["analysis", "grading", "grading"] and all(q.state == "PENDING" for q in queued), queued
        submitted = [e for e in slurm.read_log(sweep) if e["event"] == "submitted"]
        assert sorted(e["role"] for e in submitted) == ["analysis", "grading"]
        assert not any(e["tasks"] for e in submitted)  # no attempt was submitted again

        grading = next(q for q in queued if q.name.endswith("-grading"))
        shown = hpc_mle("status", str(sweep))
        assert f"2 ended attempt(s) not graded yet: this sweep's grading job {grading.job.split('_')[0]} (pending), then " \
               "analysis job" in shown, shown
        again = hpc_mle("resume", str(sweep))  # the queued grading job grades them: nothing more
        assert "submitted" not in again and len(sweep_jobs(sweep)) == 3, again
    finally:
        slurm.cancel([q.job.split("_")[0] for q in queued])
