"""Grading on small competitions written by the tests: reports, reasons, run-group totals."""

import json
import re

import pandas as pd
import pytest

from hpc_mle import grading, metrics

UPSTREAM_FIELDS = [
    "competition_id", "score", "gold_threshold", "silver_threshold", "bronze_threshold", "median_threshold",
    "any_medal", "gold_medal", "silver_medal", "bronze_medal", "above_median", "submission_exists",
    "valid_submission", "is_lower_better", "created_at", "submission_path",
]
ANSWERS = pd.DataFrame({"id": [1, 2, 3, 4], "target": [1, 1, 0, 0]})
# 10 teams, best first: positions gold 1, silver 2, bronze 4; median 0.75.
BOARD = [1.0, 0.95, 0.9, 0.85, 0.8, 0.7, 0.65, 0.6, 0.55, 0.5]


@pytest.fixture
def comp(synthetic):
    synthetic.add("demo", ANSWERS, BOARD)
    return synthetic


def grade(comp, content, name="sub.csv", cid="demo"):
    return grading.grade_submission(comp.submission(name, content), cid, comp.data)


def test_report_keeps_upstream_fields_in_order_then_ours(comp):
    report = grade(comp, pd.DataFrame({"id": [4, 3, 2, 1], "target": [0.1, 0.5, 0.4, 0.9]})).to_dict()
    assert list(report)[:16] == UPSTREAM_FIELDS
    assert list(report)[16:] == ["reason", "grader_error", "leaderboard_source", "competition_status",
                                 "spec_version", "hpc_mle_version", "grading_mode", "v1_score", "v1_valid",
                                 "v1_reason", "corrected_score", "corrected_valid", "corrected_reason"]
    assert report["grading_mode"] == "v1" and report["corrected_score"] is None  # no correction: one grade
    # pos 0.9, 0.4 vs neg 0.5, 0.1 -> 0.75 (rows matched by id, order in the file does not matter)
    assert report["score"] == 0.75
    assert report["valid_submission"] and report["submission_exists"]
    assert (report["gold_threshold"], report["silver_threshold"], report["bronze_threshold"]) == (1.0, 0.95, 0.85)
    assert report["median_threshold"] == 0.75
    assert not report["above_median"]  # equal to the median is not above it
    assert report["any_medal"] is False
    assert report["leaderboard_source"] == "reference-panel"
    assert report["spec_version"] == 3 and report["competition_status"] == "ok"
    assert report["reason"] is None


def test_perfect_submission_wins_gold(comp):
    report = grade(comp, pd.DataFrame({"id": [1, 2, 3, 4], "target": [0.9, 0.8, 0.2, 0.1]}))
    assert report.score == 1.0 and report.gold_medal and report.any_medal and not report.silver_medal


def test_score_is_rounded_to_five_decimals(synthetic):
    answers = pd.DataFrame({"id": [1, 2, 3], "y": [0.0, 0.0, 0.0]})
    synthetic.add("reg", answers, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
                  metric={"name": "root-mean-squared-error", "higher_is_better": False},
                  submission={"id_columns": ["id"], "answer_columns": ["y"]})
    # RMSE of (1/3, 0, 0) = sqrt(1/27) = 0.19245008... -> 0.19245
    report = grade(synthetic, "id,y\n1,0.3333333333333333\n2,0\n3,0\n", cid="reg")
    assert report.score == 0.19245
    assert report.is_lower_better and report.silver_medal  # 0.19245 <= 0.2 (silver at position 2 of 10)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("", "file is empty"),
        ("\n\n", "no header row"),
        (b"id,target\n1,0.5\n\x00\x01\x02", "binary"),
        (b"id,target\n1,0.5\n2,\xff\xfe\n3,0.1\n4,0.2\n", "not UTF-8"),
        ("id,target\n1,0.5\n2,0.5\n3,0.5\n", "has 3 rows, expected 4"),
        ("id,score\n1,0.5\n2,0.5\n3,0.5\n4,0.5\n", "missing column(s) ['target']"),
        ("id,target\n1,0.5\n1,0.5\n3,0.5\n4,0.5\n", "1 duplicate id(s)"),
        ("id,target\n1,0.5\n2,0.5\n3,0.5\n5,0.5\n", "1 id(s) of the test set are missing"),
        ("id,target\na,0.5\nb,0.5\nc,0.5\nd,0.5\n", "must hold numbers"),
        ("id,target\n1,0.5\n2,\n3,0.5\n4,0.5\n", "missing value"),
        ("id,target\n1,0.5\n2,inf\n3,0.5\n4,0.5\n", "infinite"),
        ("id,target\n1,0.5\n2,high\n3,0.5\n4,0.5\n", "must be numeric; found 'high'"),
        ("id,target\n1,1.5\n2,0.5\n3,0.5\n4,0.5\n", "probabilities in [0, 1]"),
        ("id,target\n1,0.5\n2,0.5\n3,0.5\n4,0.5\n5,0.5\n", "has 5 rows, expected 4"),
        ('id,target\n1,"0.5\n2,0.5\n', "not a well-formed CSV"),
    ],
)
def test_malformed_submission_is_invalid_with_a_reason(comp, content, reason):
    report = grade(comp, content)
    assert not report.valid_submission
    assert report.score is None and report.any_medal is False
    assert reason in report.reason, report.reason
    assert not report.grader_error


def test_a_repeated_column_name_is_ignored_as_upstream(comp):
    # pandas renames the second 'target' to 'target.1', an extra column that v1 ignores.
    report = grade(comp, "id,target,target\n1,0.9,0\n2,0.8,0\n3,0.2,0\n4,0.1,0\n")
    assert report.valid_submission and report.score == 1.0


def test_missing_file_and_wrong_suffix(comp):
    missing = grading.grade_submission(comp.data / "nope.csv", "demo", comp.data)
    assert not missing.submission_exists and "no submission file" in missing.reason
    txt = grade(comp, "id,target\n", name="sub.txt")
    assert not txt.submission_exists and "must be a .csv file" in txt.reason
    none = grading.grade_submission(None, "demo", comp.data)
    assert none.submission_path == "None" and not none.valid_submission


def test_huge_file_is_refused_without_reading_it(comp):
    path = comp.submission("huge.csv", "")
    with open(path, "wb") as fh:
        fh.truncate(10 * 2**30)  # a sparse 10 GiB file
    report = grading.grade_submission(path, "demo", comp.data)
    assert not report.valid_submission and report.reason == "huge.csv is 10.0 GiB, over the 256 MiB limit"


def test_exact_columns_and_positional_rows(synthetic):
    synthetic.add("exact", ANSWERS, BOARD, submission={"id_columns": ["id"], "answer_columns": ["target"],
                                                      "exact_columns": True})
    extra = grade(synthetic, "id,target,note\n1,1,a\n2,1,b\n3,0,c\n4,0,d\n", cid="exact")
    assert "unexpected column(s) ['note']" in extra.reason
    synthetic.add("rows", ANSWERS, BOARD, submission={"id_columns": ["id"], "answer_columns": ["target"],
                                                     "row_order": "positional"})
    # Ids are ignored and rows are scored in file order (upstream quirk): perfect ranking by position.
    report = grade(synthetic, "id,target\n9,0.9\n8,0.8\n7,0.2\n6,0.1\n", cid="rows")
    assert report.score == 1.0


def test_a_grader_bug_is_invalid_and_flagged(comp, monkeypatch):
    def broken(y_true, y_pred):
        return 1 / 0

    monkeypatch.setitem(metrics.METRICS, "auc-roc", metrics.Metric("auc-roc", True, broken, "broken"))
    report = grade(comp, pd.DataFrame({"id": [1, 2, 3, 4], "target": [0.5] * 4}))
    assert not report.valid_submission and report.grader_error
    assert report.reason.startswith("grader error: ZeroDivisionError")


def test_without_leaderboard_medals_are_unknown(synthetic):
    synthetic.add("nolb", ANSWERS)
    report = grade(synthetic, pd.DataFrame({"id": [1, 2, 3, 4], "target": [0.5] * 4}), cid="nolb")
    assert report.valid_submission and report.score == 0.5
    assert report.gold_medal is None and report.gold_threshold is None
    assert report.leaderboard_source == "none" and "medals unknown" in report.reason


def test_unprepared_competition_raises_a_setup_error(synthetic):
    synthetic.add("demo", ANSWERS, BOARD)
    (synthetic.data / "demo" / "prepared" / "private" / "test.csv").unlink()
    with pytest.raises(grading.NotPrepared, match="hpc-mle prepare -c demo"):
        grading.grade_submission(synthetic.submission("s.csv", "id,target\n"), "demo", synthetic.data)


def test_validator_answer_never_contains_the_score(comp):
    ok, message = grading.validate_submission(comp.submission("v.csv", "id,target\n1,.9\n2,.8\n3,.2\n4,.1\n"),
                                              "demo", comp.data)
    assert ok and message == "Submission is valid."
    bad, why = grading.validate_submission(comp.submission("w.csv", "id,target\n1,.9\n"), "demo", comp.data)
    assert not bad and "has 1 rows, expected 4" in why and "1.0" not in why


def test_run_group_report_totals_and_file(comp, tmp_path):
    perfect = comp.submission("p.csv", "id,target\n1,.9\n2,.8\n3,.2\n4,.1\n")  # 1.0 -> gold
    silver = comp.submission("s.csv", "id,target\n1,.9\n2,.2\n3,.8\n4,.1\n")  # 0.75: no medal, not above median
    jsonl = tmp_path / "runs.jsonl"
    jsonl.write_text("\n".join([
        "# comment lines and blank lines are skipped",
        json.dumps({"competition_id": "demo", "submission_path": str(perfect), "logs_path": None}),
        "",
        "// another comment",
        json.dumps({"competition_id": "demo", "submission_path": str(silver)}),
        json.dumps({"competition_id": "demo", "submission_path": None}),
        json.dumps({"competition_id": "no-such-competition", "submission_path": str(perfect)}),
    ]))
    reports = grading.grade_many(grading.read_submissions_jsonl(jsonl), comp.data)
    out = grading.write_run_group_report(reports, tmp_path / "out")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-GMT_grading_report\.json", out.name)
    report = json.loads(out.read_text())
    assert {k: v for k, v in report.items() if k != "competition_reports"} == {
        "total_runs": 4, "total_runs_with_submissions": 3, "total_valid_submissions": 2, "total_medals": 1,
        "total_gold_medals": 1, "total_silver_medals": 0, "total_bronze_medals": 0, "total_above_median": 1,
    }
    assert [r["competition_id"] for r in report["competition_reports"]] == ["demo"] * 3 + ["no-such-competition"]
    assert "Unknown competition" in report["competition_reports"][3]["reason"]


def test_bad_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_text('{"competition_id": "demo", "submission_path": null}\n{"competition_id": "demo"}\n')
    with pytest.raises(ValueError, match=r"runs.jsonl:2: needs the keys"):
        grading.read_submissions_jsonl(path)


def test_nan_score_serialises_as_upstream_does(comp, tmp_path):
    report = grading.make_report(grading.competitions.get("demo"), comp.data / "x.csv", True, float("nan"),
                                 None, False, comp.data)
    assert report.valid_submission and not report.any_medal and not report.above_median
    out = grading.write_run_group_report([report], tmp_path)
    assert '"score": NaN' in out.read_text()
