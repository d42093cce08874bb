"""`hpc-mle` as a user runs it: a real subprocess, real files, exit codes and output."""

from __future__ import annotations

import json
import os
import subprocess

import yaml

from hpc_mle import competitions
from support import write_spec


def hpc_mle(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["hpc-mle", *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=300)


def test_list_lite_as_table_and_json():
    table = hpc_mle("competitions", "list", "--split", "lite")
    assert table.returncode == 0 and "22 competitions" in table.stdout
    assert "random-acts-of-pizza" in table.stdout and "leaky" in table.stdout
    rows = json.loads(hpc_mle("competitions", "list", "--split", "lite", "--json").stdout)
    assert len(rows) == 22 and {r["split"] for r in rows} == {"low"}


def test_show_upstream_competition_without_leaderboard():
    out = hpc_mle("competitions", "show", "tensorflow-speech-recognition-challenge")
    assert out.returncode == 0
    assert "known-issue" in out.stdout and "upstream #63" in out.stdout
    assert "medals unknown" in out.stdout and "not yet" not in out.stderr


def test_show_unknown_competition_fails_with_a_suggestion():
    out = hpc_mle("competitions", "show", "mini-chrn")
    assert out.returncode == 2 and "Did you mean mini-churn" in out.stderr


def test_show_mini_competition_prints_panel_thresholds(mini_data):
    out = hpc_mle("competitions", "show", "mini-churn", "--data-dir", str(mini_data))
    assert out.returncode == 0
    assert "reference-panel, not human teams" in out.stdout
    assert "thresholds: gold" in out.stdout and "(prepared)" in out.stdout


def test_prepare_is_a_no_op_when_prepared_and_says_what_is_not_implemented(mini_data, tmp_path):
    again = hpc_mle("prepare", "--benchmark", "mini", "--data-dir", str(mini_data))
    assert again.returncode == 0 and again.stdout.count("already-prepared") == len(competitions.split_ids("mini"))
    # Every shipped competition is implemented now; a site's own spec without a preparer says so.
    write_spec(tmp_path / "competitions", "site-pending", implemented=False, preparer=None)
    later = hpc_mle("prepare", "-c", "site-pending", "--data-dir", str(tmp_path / "data"),
                    env={"HPC_MLE_COMPETITIONS": str(tmp_path / "competitions")})
    assert later.returncode == 1 and "not implemented" in later.stdout, later.stdout + later.stderr
    both = hpc_mle("prepare", "--data-dir", str(tmp_path))
    assert both.returncode == 2 and "either -c/--competition" in both.stderr


def test_grade_sample_prints_a_report(mini_data):
    sample = mini_data / "mini-churn" / "prepared" / "public" / "sample_submission.csv"
    out = hpc_mle("grade-sample", str(sample), "mini-churn", "--data-dir", str(mini_data))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["valid_submission"] and report["score"] == 0.5 and not report["any_medal"]
    assert report["leaderboard_source"] == "reference-panel"


def test_grade_sample_on_an_unprepared_competition_is_a_setup_error(tmp_path):
    out = hpc_mle("grade-sample", str(tmp_path / "x.csv"), "mini-churn", "--data-dir", str(tmp_path))
    assert out.returncode == 2 and "hpc-mle prepare -c mini-churn" in out.stderr


def test_gold_files_win_gold_through_grade(mini_data, tmp_path):
    jsonl = tmp_path / "gold.jsonl"
    out = hpc_mle("competitions", "samples", "--split", "mini", "--kind", "gold", "--data-dir", str(mini_data))
    jsonl.write_text(out.stdout)
    graded = hpc_mle("grade", "--submissions", str(jsonl), "--output-dir", str(tmp_path / "out"),
                     "--data-dir", str(mini_data))
    assert graded.returncode == 0, graded.stderr
    (report_file,) = (tmp_path / "out").glob("*_grading_report.json")
    report = json.loads(report_file.read_text())
    n = len(competitions.split_ids("mini"))
    assert report["total_runs"] == n and report["total_gold_medals"] == n


def test_a_malformed_spec_stops_the_cli_with_file_and_field(tmp_path):
    path = write_spec(tmp_path, "broken")
    spec = yaml.safe_load(path.read_text())
    spec["metric"]["higher_is_better"] = "yes"
    path.write_text(yaml.safe_dump(spec))
    out = hpc_mle("competitions", "list", env={"HPC_MLE_COMPETITIONS": str(tmp_path)})
    assert out.returncode == 2
    assert "broken/spec.yaml: field 'metric.higher_is_better': must be bool" in out.stderr
