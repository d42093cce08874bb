"""Faults end in a truthful state: full disks, short writes, partial analyses, budgets that never mix, modes.

Real files, real short writes (RLIMIT_FSIZE), a real full tmpfs (as root) and a real bubblewrap attempt.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from hpc_mle import analysis, cli, competitions, grading, jobs, paths, plan, prepare, runner
from hpc_mle.files import current_umask

CID = "mini-churn"


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)


def all_json_parses(root: Path) -> list[Path]:
    """Every JSON and JSON-lines file below `root` parses, line by line; returns the files checked."""
    checked = []
    for path in root.rglob("*"):
        if path.suffix == ".json" and path.is_file():
            json.loads(path.read_text())
            checked.append(path)
        elif path.suffix == ".jsonl" and path.is_file():
            for line in path.read_text().splitlines():
                json.loads(line)
            checked.append(path)
    return checked


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A tmpfs of `size` at `path` (root only); skips the test with the reason when mounting is not permitted."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


# ---------------------------------------------------------------- short writes and the status fallbacks


def test_short_writes_leave_whole_lines_and_status_falls_back_to_minimal_then_stderr(tmp_path):
    """Under a file-size limit (the kernel cuts writes short, as on a full disk): an event that does not fit is
    dropped whole; a status too big is written minimal; one that cannot be written at all leaves the previous
    status.json intact and says so on stderr with the path."""
    done = run_python(f"""
        import json, resource, signal, sys
        from pathlib import Path
        from hpc_mle import runner
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        out = Path({str(tmp_path)!r})
        events = runner.Events(out / "events.jsonl")
        assert events("first")
        resource.setrlimit(resource.RLIMIT_FSIZE, (1500, 1500))
        assert not events("big", blob="x" * 3000)         # would cross the limit: a short write, cut back
        assert events("small")
        status = {{"state": "failed", "failure": "infrastructure", "reason": "r", "starts": 2,
                   "agent_elapsed_s": 12.5, "time_limit_s": 60, "log_tail": "y" * 4000}}
        assert runner.write_status(out, status)          # 4 kB does not fit, the minimal one does
        resource.setrlimit(resource.RLIMIT_FSIZE, (40, 40))
        assert not runner.write_status(out, {{**status, "state": "done", "reason": "never lands"}})
    """)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in lines] == ["first", "small"]
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "failed" and status["failure"] == "infrastructure" and status["starts"] == 2
    assert "log_tail" not in status and "full status not written" in status["status_truncated"]
    assert f"cannot write {tmp_path / 'status.json'}" in done.stderr and "never lands" in done.stderr
    assert "cannot append to" in done.stderr and "event lost: big" in done.stderr
    assert not list(tmp_path.glob(".status.json.*"))  # no temporary file left behind


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_output_folder_on_a_full_tmpfs_fails_as_infrastructure_with_the_reason(tmp_path, mini_data, capfd):
    """The agent fills the attempt's file system: the attempt ends failed (infrastructure), naming the full file
    system and the fix, in status.json (the reserve makes room) and on stderr; no JSON file is left truncated."""
    with tmpfs(tmp_path / "full", "4m") as mount:
        out = mount / "attempt"
        filler = {"name": "filler", "command": ["sh", "-c", "cat /dev/zero > /home/code/fill; sleep 30"]}
        cfg = runner.AttemptConfig(competition_id=CID, scaffold="filler", scaffold_config=filler, out=out,
                                   data_dir=mini_data, time_limit_s=30, grace_s=1, telemetry_interval_s=0.5)
        status = runner.run_attempt(cfg)
        on_disk = json.loads((out / "status.json").read_text())
        checked = all_json_parses(mount)
    assert status["state"] == on_disk["state"] == "failed"
    assert on_disk["failure"] == "infrastructure"
    assert f"no space left on {out}" in on_disk["reason"] and "output_root" in on_disk["reason"]
    assert on_disk["agent_elapsed_s"] < 20  # stopped at once, not at the time limit
    assert out / "status.json" in checked and out / "events.jsonl" in checked
    assert f"no space left on {out}" in capfd.readouterr().err


def test_a_full_data_directory_is_one_message_naming_the_path_and_the_fix(tmp_path, mini_data):
    with tmpfs(tmp_path / "data", "64k") as data:
        with pytest.raises(prepare.PrepareError) as err:
            prepare.prepare("mini-digits", data)
        done = subprocess.run([sys.executable, "-m", "hpc_mle.launch", "benchmark=mini", "scaffold=dummy",
                               "benchmark.competitions=[mini-digits]", f"data_dir={data}",
                               f"output_root={tmp_path / 'runs'}"], capture_output=True, text=True, timeout=120)
        leftovers = [p.name for p in data.iterdir()]
        with contextlib.suppress(OSError), open(data / "filler", "wb") as fh:
            while fh.write(b"\0" * 4096):
                fh.flush()
        cli = subprocess.run(["hpc-mle", "run-attempt", "--competition", CID, "--scaffold", "dummy", "--out",
                              str(data / "attempt"), "--data-dir", str(mini_data)], capture_output=True, text=True,
                             timeout=120)
    message = str(err.value)
    assert f"no space left on {data}" in message and "--data-dir" in message and "HPC_MLE_DATA" in message
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and f"no space left on {data}" in done.stderr
    assert "prepared" not in leftovers and not any(n.startswith(".prepared") for n in leftovers)
    assert cli.returncode == 1 and "Traceback" not in cli.stderr  # any hpc-mle command: one message
    assert "no space left on" in " ".join(cli.stderr.split()) and "output_root" in cli.stderr


# ---------------------------------------------------------------- budgets never mix


def test_runtime_label_follows_the_budget_and_two_budgets_make_two_rows(tmp_path):
    cfgs = plan.compose_all(plan.expand(["runtime=10m", "runtime.time_limit=30s", "benchmark=mini"], False))
    short = plan.plan_attempts(cfgs)[0]
    assert (short.runtime, short.time_limit_s) == ("30s", 30.0)
    real = plan.plan_attempts(plan.compose_all([["runtime=10m", "benchmark=mini"]]))[0]
    assert (real.runtime, real.time_limit_s) == ("10m", 600.0) and real.id != short.id
    assert plan.runtime_label("1h", 5400) == "90m" and plan.runtime_label("24h", 86400) == "24h"
    # Sweeps written before the fix: both labelled 10m, one of them run for 30 s.
    for name, budget in (("old-30s", 30.0), ("real-10m", 600.0)):
        write_graded_sweep(tmp_path / name, runtime="10m", time_limit_s=budget)
    board = analysis.leaderboard(analysis.load_many([tmp_path / "old-30s", tmp_path / "real-10m"]))
    rows = board[(board["split"] == "mini") & (board["view"] == "all")]
    assert sorted(zip(rows["runtime"], rows["budget_s"], strict=True)) == [("10m", 600.0), ("30s", 30.0)]
    done = subprocess.run([sys.executable, "-m", "hpc_mle.cli", "report", str(tmp_path / "old-30s"),
                           str(tmp_path / "real-10m"), "--format", "csv", "--split", "mini"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(pd.io.common.StringIO(done.stdout))
    assert sorted(table.loc[table["view"] == "all", "runtime"]) == ["10m", "30s"]
    labels = analysis.budget_labels(pd.Series(["long", "long", "long"]), pd.Series([30.0, 600.0, float("nan")]))
    assert list(labels) == ["long@30s", "long@10m", "long"]  # a name that is no duration still never mixes


def write_graded_sweep(sweep: Path, runtime: str, time_limit_s: float) -> None:
    """One graded attempt of mini-churn, by hand, as the jobs write it."""
    (sweep / "configs").mkdir(parents=True)
    (sweep / "configs" / "c0.json").write_text(json.dumps({"benchmark": {"split": "mini"}}))
    row = {"id": "a0", "competition_id": CID, "scaffold": "dummy", "model": "none", "seed": 0, "runtime": runtime,
           "hardware": "cpu", "spec_version": 1, "benchmark": "mini", "competition_status": "ok",
           "time_limit_s": time_limit_s, "gpus": 0, "config_id": "c0"}
    pd.DataFrame([row]).to_csv(sweep / "manifest.csv", index=False)
    report = grading.CompetitionReport(
        competition_id=CID, score=0.5, gold_threshold=0.9, silver_threshold=0.8, bronze_threshold=0.7,
        median_threshold=0.4, any_medal=False, gold_medal=False, silver_medal=False, bronze_medal=False,
        above_median=True, submission_exists=True, valid_submission=True, is_lower_better=False, created_at="t",
        submission_path="s.csv", leaderboard_source="kaggle")
    (sweep / "grading").mkdir()
    (sweep / "grading" / "a0.json").write_text(json.dumps({"attempt_id": "a0", "state": "done",
                                                           "report": report.to_dict()}))


# ---------------------------------------------------------------- partial analyses, and file modes


def planned_sweep(tmp_path: Path, mini_data: Path, seeds: int) -> tuple[Path, list[str]]:
    """A real plan of mini-churn with the dummy agent (manifest, configs), no attempt run yet."""
    overrides = ["scaffold=dummy", "benchmark=mini", "benchmark.competitions=[mini-churn]", f"data_dir={mini_data}",
                 f"seed=range({seeds})"]
    expanded = plan.expand(overrides, True)
    cfgs = plan.compose_all(expanded)
    attempts = plan.plan_attempts(cfgs)
    sweep = tmp_path / "sweep"
    plan.write_plan(sweep, cfgs, expanded, attempts)
    return sweep, [a.id for a in attempts]


def end_attempt(sweep: Path, aid: str, mini_data: Path, state: str) -> None:
    """An attempt's own files as the runner leaves them: the sample submission and status.json."""
    out = plan.attempt_dir(sweep, aid)
    (out / "submission").mkdir(parents=True, exist_ok=True)
    sample = paths.prepared_dir(CID, mini_data) / competitions.get(CID).files.sample_submission
    shutil.copyfile(sample, out / "submission" / "submission.csv")
    ended = None if state == "running" else f"2026-11-30T12:00:0{len(aid) % 10}+00:00"
    runner.write_status(out, {"state": state, "starts": 1, "agent_elapsed_s": 3.0, "time_limit_s": 600.0,
                              "ended_at": ended, "failure": None, "unsandboxed": False})


def modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mode & 0o777 for p in root.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


def test_analysis_over_running_attempts_is_partial_and_redone_by_the_last_one_to_end(tmp_path, mini_data):
    """The grading array was cancelled and the analysis ran at once: it publishes only ended attempts, lists the
    others in analysis/PARTIAL and summary.md; the last attempt to end grades itself and analyses again. Every
    file is written with the mode the umask allows (0644 under 022, 0600 under 077)."""
    old = os.umask(0o022)
    try:
        sweep, (done_id, running_id) = planned_sweep(tmp_path, mini_data, seeds=2)
        end_attempt(sweep, done_id, mini_data, "done")
        end_attempt(sweep, running_id, mini_data, "running")
        result = jobs.analysis_task(sweep)
        said = CliRunner().invoke(cli.main, ["status", str(sweep)]).output
        shared = modes(sweep)
        first = pd.read_csv(sweep / "analysis" / "results.csv")
        summary = (sweep / "analysis" / "summary.md").read_text()
        graded_early = (sweep / "grading" / f"{running_id}.json").is_file()
        os.umask(0o077)
        assert current_umask() == 0o077
        end_attempt(sweep, running_id, mini_data, "done")
        private_status = (plan.attempt_dir(sweep, running_id) / "status.json").stat().st_mode & 0o777
        redone = jobs.reanalyse_if_complete(sweep, running_id)
        private = {k: v for k, v in modes(sweep).items() if k.startswith(("analysis/", "grading/"))}
    finally:
        os.umask(old)
    assert result["partial"] and result["left_out"] == [running_id]
    assert "the analysis is partial: 1 attempt(s) had not ended" in " ".join(said.split()), said
    marker = sweep / "analysis" / jobs.PARTIAL
    assert shared[f"analysis/{jobs.PARTIAL}"] == 0o644
    assert list(first["attempt_id"]) == [done_id]  # never a running attempt in the published results
    assert summary.startswith("**Partial analysis**: 1 attempt(s)") and f"- {running_id} (mini-churn): running" in summary
    assert not graded_early
    assert {"analysis/report.html", "analysis/summary.md", "analysis/results.csv", "analysis/results.parquet",
            f"grading/{done_id}.json", f"attempts/{done_id}/status.json"} <= set(shared)
    assert any(k.startswith("analysis/figures/") for k in shared)
    assert set(shared.values()) == {0o644}, shared
    assert redone and not marker.exists()
    assert sorted(pd.read_csv(sweep / "analysis" / "results.csv")["attempt_id"]) == sorted([done_id, running_id])
    assert "Partial analysis" not in (sweep / "analysis" / "summary.md").read_text()
    assert private_status == 0o600 and private["analysis/summary.md"] == 0o600
    assert private["analysis/results.parquet"] == 0o600 and private[f"grading/{running_id}.json"] == 0o600
    assert jobs.grade_task(sweep) == 0  # each attempt graded once: nothing left to grade
    assert not jobs.reanalyse_if_complete(sweep, running_id)  # complete: nothing to redo
