"""What jobs does after Slurm's warning ends a segment or cuts a grading or analysis job; no cluster needed.

`runner.run_attempt` is replaced by the status a warned segment returns (the time the warning came is its
agent_elapsed_s); everything else is real: the plan, status.json, events.jsonl, the grading of a real
submission of mini-churn, and a real SIGUSR2 sent to this process while grade_task grades.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pandas as pd
import pytest
from slurm_cluster import slurm_env  # noqa: F401  (fixture)

from hpc_mle import jobs, plan, preflight, prepare, report, runner, slurm, status

BUDGET_S = 600.0


@pytest.fixture(scope="module")
def churn(tmp_path_factory) -> Path:
    """mini-churn alone prepared (2 s; the session's mini_data prepares all six)."""
    data = tmp_path_factory.mktemp("churn-data")
    prepare.prepare("mini-churn", data)
    return data


def sweep_of(tmp_path: Path, data: Path, seeds: int = 1) -> tuple[Path, list[str]]:
    expanded = plan.expand(["scaffold=dummy", "benchmark.competitions=[mini-churn]", "cluster=dev",
                            f"runtime.time_limit={BUDGET_S:g}s", f"output_root={tmp_path}", f"data_dir={data}",
                            f"seed=range({seeds})"], True)
    cfgs = plan.compose_all(expanded)
    attempts = plan.plan_attempts(cfgs)
    sweep = tmp_path / plan.sweep_name(cfgs, expanded)
    plan.write_plan(sweep, cfgs, expanded, attempts)
    return sweep, [a.id for a in attempts]


def ended(sweep: Path, aid: str, data: Path, **st) -> Path:
    """An attempt folder as a segment leaves it: a real submission (the sample one), its status, a reserve."""
    out = plan.attempt_dir(sweep, aid)
    (out / "submission").mkdir(parents=True)
    shutil.copy(data / "mini-churn" / "prepared" / "public" / "sample_submission.csv",
                out / "submission" / "submission.csv")
    runner.reserve_space(out)
    runner.write_status(out, {"starts": 1, "segments": 1, "time_limit_s": BUDGET_S, "exit_code": -15,
                              "ended_at": "2026-11-30T18:00:00+00:00", **st})
    return out


def warned(elapsed: float, starts: int = 1) -> dict:
    return {"state": "preempted", "reason": "stopped by SIGUSR2; a restart continues with the budget left",
            "starts": starts, "segments": starts, "agent_elapsed_s": elapsed, "time_limit_s": BUDGET_S,
            "exit_code": -15, "ended_at": "2026-11-30T18:00:00+00:00"}


@pytest.fixture
def no_requeue(monkeypatch) -> list[int]:
    asked: list[int] = []
    monkeypatch.setattr(jobs, "_requeue_self", lambda: asked.append(1) or True)
    return asked


@pytest.mark.parametrize("left", [0.0, 0.8, jobs.MIN_SEGMENT_S - 0.1])
def test_a_warning_that_leaves_too_little_budget_ends_as_a_timeout_and_is_graded(tmp_path, churn, monkeypatch,
                                                                                 no_requeue, left):
    sweep, (aid,) = sweep_of(tmp_path, churn)
    out = ended(sweep, aid, churn, **warned(BUDGET_S - left))
    monkeypatch.setattr(runner, "run_attempt", lambda cfg: warned(BUDGET_S - left))
    st = jobs.agent_task(sweep, aid, max_restarts=3)
    assert no_requeue == [] and st["state"] == "timeout" and st["failure"] is None
    assert f"{left:.1f} s of 600 s were left at Slurm's warning" in st["reason"]
    assert runner.read_status(out)["state"] == "timeout" and not (out / runner.RESERVE).exists()
    end = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()][-1]
    assert (end["event"], end["state"]) == ("end", "timeout")  # what status falls back on if status.json breaks
    assert jobs.needs_grading(sweep, aid) and jobs.grade_task(sweep) == 1
    record = json.loads((sweep / "grading" / f"{aid}.json").read_text())
    assert record["state"] == "timeout" and record["report"]["valid_submission"]


def test_with_budget_left_the_warning_still_requeues(tmp_path, churn, monkeypatch, no_requeue):
    sweep, (aid,) = sweep_of(tmp_path, churn)
    ended(sweep, aid, churn, **warned(80.0))
    monkeypatch.setattr(runner, "run_attempt", lambda cfg: warned(80.0))
    st = jobs.agent_task(sweep, aid, max_restarts=3)
    assert no_requeue == [1] and (st["state"], st["segments"]) == ("requeued", 2)


def test_out_of_restarts_says_so_and_resume_continues_it(tmp_path, churn, monkeypatch, no_requeue):
    sweep, (aid,) = sweep_of(tmp_path, churn)
    out = ended(sweep, aid, churn, **warned(300.0, starts=3))  # before its 4th start
    monkeypatch.setattr(runner, "run_attempt", lambda cfg: warned(400.0, starts=4))
    st = jobs.agent_task(sweep, aid, max_restarts=3)
    assert no_requeue == [] and st["state"] == "preempted" and st[jobs.OUT_OF_RESTARTS]
    assert "with 200 s of budget left, but no restart is left (4 starts, max_restarts=3)" in st["reason"]
    assert f"`hpc-mle resume {sweep}` continues it" in st["reason"]

    (row,) = status.sweep_status(sweep, ask_slurm=False).to_dict("records")  # `hpc-mle status`, from the files
    assert row["state"] == "preempted" and row["reason"] == st["reason"]

    seen: list[dict] = []  # the resumed job: it runs (no "gave up"), and its restarts count from here

    def resumed(cfg):
        seen.append(runner.read_status(out))
        return {**seen[0], "state": "timeout", "starts": 5, "agent_elapsed_s": BUDGET_S, "reason": "time limit"}

    monkeypatch.setattr(runner, "run_attempt", resumed)
    assert jobs.agent_task(sweep, aid, max_restarts=3)["state"] == "timeout"
    assert seen[0]["restart_base"] == 4 and jobs.OUT_OF_RESTARTS not in seen[0]


def test_resume_of_an_attempt_that_gave_up_runs_it(tmp_path, churn, monkeypatch):
    sweep, (aid,) = sweep_of(tmp_path, churn)
    out = ended(sweep, aid, churn, state="running", starts=4, agent_elapsed_s=30.0)
    st = jobs.agent_task(sweep, aid, max_restarts=3)
    assert st["state"] == "failed" and st["reason"].startswith("gave up after 4 starts") and st[jobs.OUT_OF_RESTARTS]
    runner.write_status(out, {**st, "state": "requeued"})  # what launch.mark_for_retry does on resume
    monkeypatch.setattr(runner, "run_attempt", lambda cfg: {"state": "done", "starts": 5})
    assert jobs.agent_task(sweep, aid, max_restarts=3)["state"] == "done"


def test_a_grading_task_warned_by_slurm_stops_between_attempts(tmp_path, churn, monkeypatch, no_requeue, capsys):
    sweep, ids = sweep_of(tmp_path, churn, seeds=3)
    for aid in ids:
        ended(sweep, aid, churn, state="timeout", agent_elapsed_s=BUDGET_S)
    real = jobs.grade_attempt

    def warned_while_grading(sweep_dir, aid):
        os.kill(os.getpid(), signal.SIGUSR2)  # Slurm's warning, in the middle of this attempt's grading
        return real(sweep_dir, aid)

    monkeypatch.setattr(jobs, "grade_attempt", warned_while_grading)
    before = signal.getsignal(signal.SIGUSR2)
    assert jobs.grade_task(sweep) == 1  # the attempt it was grading is finished, no other begun
    assert signal.getsignal(signal.SIGUSR2) == before  # the job's own handler is back
    assert no_requeue == [1]  # progress made: it requeues itself to grade the rest
    assert "grading stopped by SIGUSR2 after 1 of 3 attempt(s); 2 left ungraded, requeued" in capsys.readouterr().err
    assert [jobs.needs_grading(sweep, a) for a in ids] == [False, True, True]
    monkeypatch.setattr(jobs, "grade_attempt", real)
    assert jobs.grade_task(sweep) == 2 and not any(jobs.needs_grading(sweep, a) for a in ids)


def test_the_dry_run_states_slurms_hold_between_segments():
    assert preflight.requeue_hold_s("AuthType = auth/munge\nAuthInfo = (null)\n") == 121  # Slurm's default
    assert preflight.requeue_hold_s("AuthInfo = cred_expire=600,socket=/run/munge.sock\n") == 601
    job = slurm.PlannedJob(role="agents0", group="g", tasks=1, parameters={}, script="", segments=3)
    text = preflight.segment_text(job, 121)
    assert "runs in 3 segments" in text and "Slurm holds each requeued job ~2 min before it may start again" in text
    assert "at least ~4 min of queue time" in text
    assert preflight.segment_text(slurm.PlannedJob(role="agents0", group="g", tasks=1, parameters={}, script=""), 121) == ""


def test_once_its_job_is_gone_status_names_resume_and_resume_picks_it(tmp_path, churn, monkeypatch, no_requeue,
                                                                      slurm_env):  # noqa: F811
    """As `hpc-mle status` says it after a real squeue (one call) that no longer lists the attempt's job."""
    monkeypatch.setenv("SLURM_CONF", slurm_env["SLURM_CONF"])
    sweep, (aid,) = sweep_of(tmp_path, churn)
    ended(sweep, aid, churn, **warned(300.0, starts=3))
    monkeypatch.setattr(runner, "run_attempt", lambda cfg: warned(400.0, starts=4))
    jobs.agent_task(sweep, aid, max_restarts=3)
    rows = [{**m, "job_id": "987654321"} for m in plan.read_manifest(sweep).to_dict("records")]  # long gone
    table = status.sweep_status(sweep, rows=rows)
    (row,) = table.to_dict("records")
    assert row["state"] == "failed" and row["failure"] == "infrastructure", row
    assert "no restart is left" in row["reason"] and f"`hpc-mle resume {sweep}` continues it" in row["reason"]
    assert list(status.to_resume(table)["id"]) == [aid]  # resume submits it again


def test_a_term_while_grading_finishes_the_attempt_then_acts(tmp_path, churn, monkeypatch, no_requeue):
    sweep, ids = sweep_of(tmp_path, churn, seeds=2)
    for aid in ids:
        ended(sweep, aid, churn, state="done", agent_elapsed_s=60.0)
    real, after = jobs.grade_attempt, []

    def term_while_grading(sweep_dir, aid):
        os.kill(os.getpid(), signal.SIGTERM)  # scancel, or a local run's kill
        return real(sweep_dir, aid)

    monkeypatch.setattr(jobs, "grade_attempt", term_while_grading)
    previous = signal.signal(signal.SIGTERM, lambda *_: after.append(jobs.needs_grading(sweep, ids[0])))
    try:
        assert jobs.grade_task(sweep) == 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert after == [False] and no_requeue == []  # raised again once the first was graded; no requeue on TERM
    assert jobs.needs_grading(sweep, ids[1])


def test_the_analysis_job_warned_while_grading_requeues_else_reports_the_rest_ungraded(tmp_path, churn, monkeypatch,
                                                                                      no_requeue, capsys):
    """The analysis grades what the grading array left; Slurm's warning there is handled by grade_task's mechanism:
    the attempt in hand is finished, then the job requeues itself, or (requeue refused) reports what is graded."""
    sweep, ids = sweep_of(tmp_path, churn, seeds=3)
    for aid in ids:
        ended(sweep, aid, churn, state="timeout", agent_elapsed_s=BUDGET_S)
    real = jobs.grade_attempt

    def warned_while_grading(sweep_dir, aid):
        os.kill(os.getpid(), signal.SIGUSR2)
        return real(sweep_dir, aid)

    monkeypatch.setattr(jobs, "grade_attempt", warned_while_grading)
    before = signal.getsignal(signal.SIGUSR2)
    assert jobs.analysis_task(sweep) == {"requeued": True, "graded": 1, "ungraded": 2}
    assert signal.getsignal(signal.SIGUSR2) == before and no_requeue == [1]
    assert not (sweep / "analysis" / "summary.md").exists()  # its next start writes the report
    assert "grading stopped by SIGUSR2 after 1 of 3 attempt(s); 2 left ungraded, requeued" in capsys.readouterr().err

    monkeypatch.setattr(jobs, "_requeue_self", lambda: False)  # Slurm refused it, or not under Slurm
    result = jobs.analysis_task(sweep)
    assert "grading stopped by SIGUSR2 after 1 of 2 attempt(s); 1 left ungraded, the report counts them as " \
           f"ungraded; `hpc-mle resume {sweep}` grades them" in capsys.readouterr().err
    assert [jobs.needs_grading(sweep, a) for a in ids] == [False, False, True]
    summary = Path(result["summary"]).read_text()
    assert "**1 attempt(s) ended but are not graded**, so the medal figures could not count them" in summary
    rows = pd.read_csv(sweep / "analysis" / "results.csv").set_index("attempt_id")
    assert list(rows.loc[ids, "ungraded"]) == [False, False, True]
    assert list(rows.loc[ids, "graded"]) == [True, True, False]
    note = status.grading_note(sweep)  # no launch log: never submitted, so no squeue
    assert note.startswith(f"1 ended attempt(s) not graded yet: `hpc-mle resume {sweep}` grades them and redoes")

    monkeypatch.setattr(jobs, "grade_attempt", real)
    written = report.analyse_sweep

    def warned_while_reporting(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGUSR2)  # the warning once grading is done: the report is finished anyway
        return written(*args, **kwargs)

    def submitits(signum, frame):  # what submitit's handler does with an uncheckpointable job at its time limit
        raise RuntimeError("Job not requeued because: timed-out and not checkpointable.")

    monkeypatch.setattr(report, "analyse_sweep", warned_while_reporting)
    previous = signal.signal(signal.SIGUSR2, submitits)
    try:
        result = jobs.analysis_task(sweep)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert status.ungraded(sweep) == [] and "not graded" not in Path(result["summary"]).read_text()
