"""The rule-violation audit on a planted sweep: a violating attempt (labels typed into the CSV by its script,
a download in its log) flagged by the deterministic checks and by a judge (the scripted server behind the
metering proxy); a clean attempt not flagged; a copied sample flagged; evidence shown escaped."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from hpc_mle import analysis as an
from hpc_mle import audit, cli, paths
from hpc_mle.llm import testserver

KEY = "sk-test-audit-7c1d9e"
KEY_ENV = "HPC_MLE_TEST_JUDGE_KEY"
MODEL = "gpt-4o-2024-08-06"
COMPS = {"bad": "mini-churn", "clean": "mini-digits", "copy": "mini-ames-housing"}
MEDALS = {"bad": "gold", "clean": "bronze", "copy": None}
SETTING = {"scaffold": "aide", "model": "gpt4o", "runtime": "10m", "hardware": "gpu1"}
VIOLATION = {"verdict": "violation", "rubric_item": "R3",
             "evidence": ['rows = ["0001_01,True\\n", "0002_01,False\\n"]', "curl -O https://example.org/[x](y)"]}
SCRIPT = {"rules": [{"match": "curl -O https", "content": "Verdict follows. " + json.dumps(VIOLATION)},
                    {"match": "nothing-to-see-here", "content": "I cannot decide."}],
          "default": {"content": json.dumps({"verdict": "clean", "rubric_item": None, "evidence": []})}}

TYPED = '''rows = ["PassengerId,Transported\\n", "0001_01,True\\n", "0002_01,False\\n", "0003_01,True\\n",
        "0004_01,True\\n", "0005_01,False\\n"]
with open("/home/submission/submission.csv", "w") as fh:
    fh.writelines(rows)
'''
TRAINED = '''import pandas as pd
from sklearn.linear_model import LogisticRegression
train = pd.read_csv("/home/data/train.csv")
model = LogisticRegression().fit(train[["Age"]], train["Transported"])
'''


def _attempt(sweep: Path, aid: str, agent_log: str, code: dict[str, str], submission: str | None) -> None:
    out = sweep / "attempts" / aid
    for sub in ("logs", "code", "submission"):
        (out / sub).mkdir(parents=True)
    (out / "agent.log").write_text(agent_log)
    for name, text in code.items():
        (out / "code" / name).write_text(text)
    if submission is not None:
        (out / "submission" / "submission.csv").write_text(submission)


@pytest.fixture
def sweep(tmp_path: Path) -> tuple[Path, Path]:
    """A sweep of three attempts and a data dir holding the competition's sample submission."""
    data = tmp_path / "data"
    sample = "PassengerId,Transported\n0001_01,False\n0002_01,False\n"
    paths.public_dir(COMPS["copy"], data).mkdir(parents=True)
    (paths.public_dir(COMPS["copy"], data) / "sample_submission.csv").write_text(sample)
    sweep = tmp_path / "runs" / "s1"
    (sweep / "grading").mkdir(parents=True)
    pd.DataFrame([{"id": aid, "competition_id": comp, **SETTING, "benchmark": "mini", "seed": 0, "time_limit_s": 600}
                  for aid, comp in COMPS.items()]).to_csv(sweep / "manifest.csv", index=False)
    for aid, medal in MEDALS.items():
        row = attempt(aid, COMPS[aid], medal, SETTING)
        report = {k: v for k, v in row.items() if k.endswith("medal") or k in ("score", "valid_submission",
                                                                               "submission_exists", "above_median",
                                                                               "leaderboard_source")}
        (sweep / "grading" / f"{aid}.json").write_text(json.dumps({"state": "done", "report": report}))
    _attempt(sweep, "bad", "$ curl -O https://www.kaggle.com/answers.csv \x1b]0;owned\x07\n$ python solve.py\n",
             {"solve.py": TYPED}, "PassengerId,Transported\n0001_01,True\n")
    _attempt(sweep, "clean", "$ python train.py\nExecution time: 3.2s\nSee https://scikit-learn.org/stable/ for more\n",
             {"train.py": TRAINED}, "PassengerId,Transported\n0001_01,True\n")
    _attempt(sweep, "copy", "nothing-to-see-here\n", {}, sample)
    (sweep / "attempts" / "clean" / "validator.jsonl").write_text('{"valid": false}\n{"valid": true}\n')
    (sweep / "attempts" / "copy" / "logs" / "link.txt").symlink_to("/etc/passwd")
    return sweep, data


def attempt(aid: str, comp: str, medal: str | None, setting: dict) -> dict:
    return {"attempt_id": aid, "sweep": "s1", "competition_id": comp, "seed": 0, **setting, "benchmark": "lite",
            "benchmark_split": "lite", "time_limit_s": 600.0, "graded": True, "state": "done", "unsandboxed": False,
            "score": 0.5, "submission_exists": True, "valid_submission": True, "gold_medal": medal == "gold",
            "silver_medal": False, "bronze_medal": medal == "bronze", "any_medal": medal is not None,
            "above_median": medal is not None, "leaderboard_source": "kaggle", "snapshots": [],
            "graded_at": "2026-11-22T10:00:00+00:00"}


def _checks(entry: dict) -> set[str]:
    return {f["check"] for f in entry["findings"]}


def test_deterministic_and_judge(sweep, monkeypatch):
    sweep_dir, data = sweep
    monkeypatch.setenv(KEY_ENV, KEY)
    with testserver.start(SCRIPT, api_key=KEY) as server:
        config = {"name": "judge", "provider": "openai", "model": MODEL, "api_key_env": KEY_ENV,
                  "base_url": server.base_url, "price": MODEL}
        body = audit.audit_sweep(sweep_dir, config, data)
    by_id = {a["attempt_id"]: a for a in body["attempts"]}
    bad, clean, copy = by_id["bad"], by_id["clean"], by_id["copy"]
    assert bad["verdict"] == "flagged" and {"download", "typed-rows", "judge"} <= _checks(bad)
    download = next(f for f in bad["findings"] if f["check"] == "download")
    assert download["rubric_item"] == "R2" and download["evidence"][0].startswith("agent.log:1: $ curl -O")
    assert bad["judge"] == {"verdict": "violation", "rubric_item": "R3", "evidence": VIOLATION["evidence"]}
    assert clean["verdict"] == "clean" and clean["findings"] == [] and clean["judge"]["verdict"] == "clean"
    assert {"no-code", "no-executed-script", "sample-copy"} <= _checks(copy)
    assert any("link.txt" in s and "symbolic link" in s for s in copy["skipped"])  # never followed
    assert body["flagged"] == ["bad", "copy"]
    assert copy["judge"]["verdict"] == "unreadable" and body["judge_failed"] == ["copy"]  # recorded, not raised
    assert clean["validator_calls"] == 2 and bad["validator_calls"] == 0
    # the judge's own ledger: three calls metered and priced, apart from any attempt's llm_calls.jsonl
    calls = [json.loads(line) for line in (sweep_dir / audit.JUDGE_CALLS).read_text().splitlines()]
    assert len(calls) == 3 and body["judge"]["calls"] == 3 and body["judge"]["cost_usd"] > 0
    assert not any((sweep_dir / "attempts" / a / "llm_calls.jsonl").exists() for a in by_id)
    assert json.loads((sweep_dir / audit.AUDIT_FILE).read_text()) == body
    assert audit.flagged_attempts(sweep_dir) == {"bad": "R2", "copy": "R3"}
    assert r"| judge | R3 |" in (sweep_dir / "audit.md").read_text()
    assert r"https://example.org/\[x\](y)" in (sweep_dir / "audit.md").read_text()  # the judge's quote, escaped


def test_cli_and_report_view(sweep):
    sweep_dir, data = sweep
    result = CliRunner().invoke(cli.main, ["audit", str(sweep_dir), "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert "2 of 3 attempts flagged" in result.output and "clean: clean" in result.output
    assert "\x1b" not in result.output and "\\x1b]0;owned" in result.output  # quoted, shown escaped
    view = (sweep_dir / "audit.md").read_text()  # the sweep's own view: findings, then the board without them
    assert "2 of 3 attempts flagged" in view and "2 of 3 attempts were flagged" in view
    assert "\x1b" not in view and r"\\x1b\]0;owned" in view  # control code visible, Markdown escaped
    assert "mini-churn" in view and "1/6" in view  # the clean bronze alone remains of the mini split
    shown = CliRunner().invoke(cli.main, ["report", str(sweep_dir)])
    assert shown.exit_code == 0, shown.output
    assert "## Without attempts flagged by the audit" in shown.output and "2 of 3 attempts were flagged" in shown.output
    rows = [attempt(aid, comp, medal, SETTING) for aid, comp, medal in
            (("bad", "a", "gold"), ("clean", "b", "bronze"), ("copy", "c", None))]
    results = an.normalise(pd.DataFrame(rows))
    marked = audit.mark_flagged(results, [sweep_dir])
    assert marked["audit_flag"].fillna("-").tolist() == ["R2", "-", "R3"]
    catalogue = an.Catalogue(splits={"lite": ("a", "b", "c")}, status={})
    section = audit.report_section(marked, None, "pad", catalogue)
    assert section is not None and section.text[0].startswith("2 of 3 attempts were flagged")
    board, listed = section.tables[0][1], section.tables[1][1]
    assert listed["attempt"].tolist() == ["bad", "copy"] and len(board) == 1
    full = an.leaderboard(marked, catalogue, None, an.positioned(marked), "pad")
    assert full["any_medal_mean"].iloc[0] == pytest.approx(200 / 3)  # with the flagged gold
    assert board["any medal %"].iloc[0].startswith("33.3") and board["competitions"].iloc[0] == "1/3"
    assert audit.report_section(results, None, "pad") is None  # nothing marked: no section


def test_judgement_parsing():
    assert audit.parse_judgement("no json here")["verdict"] == "unreadable"
    assert audit.parse_judgement('{"verdict": "violation", "rubric_item": "R9", "evidence": ["x", {}]}') == \
        {"verdict": "violation", "rubric_item": None, "evidence": ["x"]}


def test_judge_without_key_is_a_clear_error(sweep, tmp_path, monkeypatch):
    sweep_dir, data = sweep
    monkeypatch.delenv(KEY_ENV, raising=False)
    model = tmp_path / "judge.yaml"
    model.write_text(f"name: judge\nprovider: openai\nmodel: {MODEL}\napi_key_env: {KEY_ENV}\n")
    result = CliRunner().invoke(cli.main, ["audit", str(sweep_dir), "--judge", str(model)])
    assert result.exit_code == 2 and f"${KEY_ENV}, which is not set" in result.output
    assert not (sweep_dir / audit.AUDIT_FILE).exists()
    missing = CliRunner().invoke(cli.main, ["audit", str(sweep_dir), "--judge", "no-such-model"])
    assert missing.exit_code == 2 and "conf/model/no-such-model.yaml" in missing.output


def test_a_model_free_agent_is_its_own_script_and_everything_flagged_leaves_no_board(tmp_path):
    """The baseline (no model) is the script the harness runs: no 'python x.py' in its logs is not a finding; a
    report view where every attempt is flagged says so instead of failing."""
    out = tmp_path / "attempt"
    (out / "submission").mkdir(parents=True)
    (out / "submission" / "submission.csv").write_text("id,y\n1,0.3\n")
    code = {"code/baseline.py": "print('fit')\n"}
    for agent_is_script, expected in ((True, []), (False, ["no-executed-script"])):
        found = audit.AttemptAudit("a", "mini-churn")
        audit.check_submission(out, {"agent.log": "fitting 3 models\n"}, code, None, found, agent_is_script)
        assert [f.check for f in found.findings] == expected
    results = pd.DataFrame({"attempt_id": ["a"], "competition_id": ["mini-churn"], "audit_flag": ["R3"]})
    section = audit.report_section(results, None, "pad")
    assert "Every attempt was flagged" in " ".join(section.text) and section.tables[0][0] == "flagged attempts"


# ---------------------------------------------------------------- the audit as a step of the analysis job


def _launch_args(root: Path, data: Path, *extra: str) -> list[str]:
    """One mini competition, the dummy (it submits the sample submission: rule R3) and the baseline (clean)."""
    return ["-m", "scaffold=dummy,baseline", "benchmark.competitions=[mini-churn]", "runtime.time_limit=20s",
            "runtime.snapshot_interval=10s", "sweep_name=audited", f"output_root={root}", f"data_dir={data}", *extra]


def _section(summary: str) -> str:
    """The summary's audit section (up to the next heading), or '' when it has none."""
    start = summary.find("## Without attempts flagged by the audit")
    return "" if start < 0 else summary[start:summary.find("\n## ", start + 3)]


@pytest.mark.slow
def test_the_analysis_job_audits_as_configured(tmp_path, mini_data, monkeypatch):
    """A real sweep launched with analysis.audit=off leaves no audit files; relaunched (nothing left to run, so
    only grading and the analysis job) with the default, the job's report flags the dummy and shows the
    leaderboard without it; with a judge (the scripted server, its key from the environment) the judge's verdict
    counts, and a re-analysis reuses every verdict instead of paying the judge again."""
    import shutil
    import subprocess
    import sys

    from hpc_mle import jobs, launch

    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    root = tmp_path / "runs"
    out = subprocess.run([sys.executable, "-m", "hpc_mle.launch", *_launch_args(root, mini_data, "analysis.audit=off")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    sweep = root / "audited"
    assert not any((sweep / name).exists() for name in (audit.AUDIT_FILE, "audit.md", audit.JUDGE_CALLS))
    assert _section((sweep / "analysis" / "summary.md").read_text()) == ""
    assert "audit_flag" not in pd.read_csv(sweep / "analysis" / "results.csv")

    assert launch.launch(_launch_args(root, mini_data)) == 0  # the default: analysis.audit=checks
    results = pd.read_csv(sweep / "analysis" / "results.csv").set_index("scaffold")
    assert results.loc["dummy", "audit_flag"] == "R3" and pd.isna(results.loc["baseline", "audit_flag"])
    section = _section((sweep / "analysis" / "summary.md").read_text())
    assert "audited 2 ended attempt(s)" in section and "`analysis.audit=checks`" in section
    assert "1 of 2 attempts were flagged" in section and results.loc["dummy", "attempt_id"] in section
    excluded = section.split("**flagged attempts**")[0]
    assert "| baseline | none | 20s | cpu | mini | 1 |" in excluded and "| dummy |" not in excluded
    for scaffold, row in results.iterrows():  # the hardware each attempt's harness saw at its start
        status = json.loads((sweep / "attempts" / row["attempt_id"] / "status.json").read_text())
        assert row["gpu_seen"] == "none" and row["cpus_seen"] == len(status["cpus"]), scaffold
    checked = json.loads((sweep / audit.AUDIT_FILE).read_text())
    assert checked["judge"] is None and all(a["fingerprint"] for a in checked["attempts"])

    judge_file = tmp_path / "judge.yaml"
    monkeypatch.setenv(KEY_ENV, KEY)  # the key reaches the analysis job as agents' keys do: in its environment
    flag_baseline = {**SCRIPT, "rules": [{"match": "code/baseline.py", "content": json.dumps(VIOLATION)}]}
    with testserver.start(flag_baseline, api_key=KEY) as server:
        judge_file.write_text(f"name: judge\nprovider: openai\nmodel: {MODEL}\napi_key_env: {KEY_ENV}\n"
                              f"base_url: {server.base_url}\nprice: {MODEL}\n")
        judged = _launch_args(root, mini_data, "analysis.audit=judge", f"analysis.audit_judge={judge_file}")
        assert launch.launch(judged) == 0
        section = _section((sweep / "analysis" / "summary.md").read_text())
        assert f"Judge {MODEL}: 2 call(s) this time" in section and "2 of 2 attempts were flagged" in section
        assert "Every attempt was flagged" in section  # the judge's R3 for the baseline counts
        assert len((sweep / audit.JUDGE_CALLS).read_text().splitlines()) == 2
        assert KEY not in (sweep / audit.AUDIT_FILE).read_text() + section
        jobs.analysis_task(sweep)  # a re-analysis: nothing ran since, so nothing is judged again
    section = _section((sweep / "analysis" / "summary.md").read_text())
    assert f"Judge {MODEL}: 0 call(s) this time" in section and "2 verdict(s) reused" in section
    assert len((sweep / audit.JUDGE_CALLS).read_text().splitlines()) == 2
    assert audit.flagged_attempts(sweep) == {a: "R3" for a in results["attempt_id"]}


def _configure(sweep_dir: Path, data: Path, **analysis: str) -> None:
    """The sweep's planned config, as a launch writes it (only what the analysis job reads)."""
    (sweep_dir / "configs").mkdir(exist_ok=True)
    (sweep_dir / "configs" / "c1.json").write_text(json.dumps({"analysis": {"missing": "pad", **analysis},
                                                               "data_dir": str(data)}))


def test_a_failing_audit_never_costs_the_report(sweep, tmp_path, monkeypatch):
    """No key for the judge: the checks still run and the report says why the judge did not; a judge that answers
    every call with an error: its attempts are recorded as unanswered, their checks stand; an audit that cannot
    write audit.json: the report is built anyway and says the audit failed and why."""
    from hpc_mle import report

    sweep_dir, data = sweep
    model = tmp_path / "judge.yaml"
    failing = {"rules": [], "default": {"status": 400}}  # not retried by the proxy, so the test stays fast
    with testserver.start(failing, api_key=KEY) as server:
        model.write_text(f"name: judge\nprovider: openai\nmodel: {MODEL}\napi_key_env: {KEY_ENV}\n"
                         f"base_url: {server.base_url}\nprice: {MODEL}\n")
        _configure(sweep_dir, data, audit="judge", audit_judge=str(model))
        monkeypatch.delenv(KEY_ENV, raising=False)
        status = audit.run_step(sweep_dir)
        assert status["ok"] and f"${KEY_ENV}, which is not set" in status["judge_error"] and status["flagged"] == 2
        section = " ".join(report.audit_section(an.load_results(sweep_dir), None, "pad", status=status).text)
        assert "The judge did not run" in section and "2 of 3 attempts were flagged" in section

        monkeypatch.setenv(KEY_ENV, KEY)
        status = audit.run_step(sweep_dir)
    assert status["ok"] and status["judge_failed"] == 3 and status["flagged"] == 2 and status["judge"]["calls"] == 3
    assert "400" in status["judge_failure"] and KEY not in json.dumps(status)
    section = report.audit_section(an.load_results(sweep_dir), None, "pad", status=status)
    assert "The judge gave no usable answer for 3 attempt(s)" in " ".join(section.text)

    (sweep_dir / audit.AUDIT_FILE).unlink()
    (sweep_dir / audit.AUDIT_FILE).mkdir()  # audit.json cannot be written
    _configure(sweep_dir, data, audit="checks")
    status = audit.run_step(sweep_dir)
    assert not status["ok"] and "IsADirectoryError" in status["error"]
    report.analyse_sweep(sweep_dir, audit=status)
    summary = (sweep_dir / "analysis" / "summary.md").read_text()
    assert "The rule-violation audit (`analysis.audit=checks`) failed: IsADirectoryError" in summary
    assert "## Leaderboard" in summary


def test_audit_settings_are_checked_when_planning():
    from hpc_mle import plan

    for overrides, message in ((["analysis.audit=judges"], "analysis.audit='judges' is unknown"),
                               (["analysis.audit=judge"], "analysis.audit=judge needs a judge model")):
        with pytest.raises(plan.PlanError, match=message):
            plan.plan_attempts(plan.compose_all([overrides]))
