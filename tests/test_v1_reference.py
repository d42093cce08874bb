"""Grades as MLE-bench v1 gave them: upstream's graders under scikit-learn 1.5.1, NumPy 1.26.4 and
pandas 2.2.2, whatever versions run here. Each expected number below was worked out by hand (in the
comments) and agrees with those libraries run on the same input.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from hpc_mle import cli, competitions, grading, metrics
from support import write_spec

REPO_COMPETITIONS = Path(__file__).resolve().parents[1] / "competitions"
BOARD = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]


def add_real(synthetic, cid: str, answers: pd.DataFrame) -> str:
    """The repository's own spec of `cid` over synthetic answers (the grading rules are the spec's)."""
    spec = yaml.safe_load((REPO_COMPETITIONS / cid / "spec.yaml").read_text())
    spec["files"]["answers"] = "private/test.csv"
    spec["leaderboard"] = {"source": "reference-panel"}
    synthetic.add(cid, answers, BOARD)
    write_spec(synthetic.root, cid, **spec)
    return cid


def grade(synthetic, cid: str, content, mode: str = "v1") -> grading.CompetitionReport:
    return grading.grade_submission(synthetic.submission(f"{cid}-{mode}.csv", content), cid, synthetic.data, mode)


# ---------------------------------------------------------------- 1. rounding


def test_round_score_follows_the_type_v1s_grader_returned():
    # 0.465625 * 1e5 = 46562.5 exactly: NumPy rounds half to even (46562), Python's round() on a float
    # rounds the exact decimal value of 0.465625's double, which lies just above the tie (0.46563).
    assert grading.round_score(0.465625, "numpy") == 0.46562
    assert grading.round_score(0.465625, "python") == 0.46563
    assert grading.round_score(np.float64(0.123456789), "numpy") == 0.12346
    assert grading.round_score(7, "numpy") == 7 and isinstance(grading.round_score(np.int64(7)), int)
    assert np.isnan(grading.round_score(float("nan"))) and grading.round_score(-np.inf) == -np.inf
    # The per-metric facts (scikit-learn 1.5.1: accuracy_score and log_loss return floats, the AUC,
    # kappa, RMSE and RMSLE functions and np.mean return NumPy float64), and a spec may override them.
    v1 = {name: m.v1_result for name, m in metrics.METRICS.items()}
    assert v1["accuracy"] == v1["log-loss"] == v1["multi-class-log-loss"] == "python"
    assert v1["auc-roc"] == v1["quadratic-weighted-kappa"] == v1["mean-column-wise-rmsle"] == "numpy"
    assert grading.v1_result(competitions.get("aerial-cactus-identification")) == "numpy"
    assert grading.v1_result(competitions.get("dogs-vs-cats-redux-kernels-edition")) == "python"


def test_a_tie_is_rounded_as_v1_per_metric(synthetic):
    # 16 positives and 20 negatives (scores k/100, k = 0..19); a positive at (c - 0.5)/100 beats c
    # negatives. Nine beat 10, four beat 8, three beat 9: 90 + 32 + 27 = 149 of 320 pairs.
    neg = [k / 100 for k in range(20)]
    pos = [(c - 0.5) / 100 for c in [10] * 9 + [8] * 4 + [9] * 3]
    answers = pd.DataFrame({"id": range(36), "target": [0] * 20 + [1] * 16})
    synthetic.add("tie-auc", answers, BOARD)
    report = grading.grade_submission(synthetic.submission("tie.csv", answers.assign(target=neg + pos)),
                                      "tie-auc", synthetic.data)
    assert report.score == 0.46562  # AUC = 149/320 = 0.465625, NumPy-rounded as v1
    # Accuracy returned a Python float in v1: 149 of 320 right -> 0.46563.
    labels = pd.DataFrame({"id": range(320), "y": [1] * 320})
    synthetic.add("tie-acc", labels, BOARD, metric={"name": "accuracy", "higher_is_better": True},
                  submission={"id_columns": ["id"], "answer_columns": ["y"]})
    guess = labels.assign(y=[1] * 149 + [2] * 171)
    assert grading.grade_submission(synthetic.submission("acc.csv", guess), "tie-acc", synthetic.data).score == 0.46563


# ---------------------------------------------------------------- 2. spooky: id first


SPOOKY = pd.DataFrame({"id": ["id1", "id2", "id3"], "EAP": [1, 0, 0], "HPL": [0, 1, 0], "MWS": [0, 0, 1]})


def test_spooky_needs_id_as_the_first_column(synthetic):
    cid = add_real(synthetic, "spooky-author-identification", SPOOKY)
    probs = pd.DataFrame({"id": ["id3", "id1", "id2"], "EAP": [0.2, 0.5, 0.25],
                          "HPL": [0.2, 0.25, 0.5], "MWS": [0.6, 0.25, 0.25]})
    # -(ln 0.5 + ln 0.5 + ln 0.6) / 3 = (0.693147 * 2 + 0.510826) / 3 = 0.632373... -> 0.63237
    assert grade(synthetic, cid, probs).score == 0.63237
    assert grade(synthetic, cid, probs[["id", "MWS", "EAP", "HPL"]]).score == 0.63237  # class order: free
    moved = grade(synthetic, cid, probs[["EAP", "id", "HPL", "MWS"]])
    assert not moved.valid_submission and not moved.grader_error
    assert "column 'id' must come first" in moved.reason


# ---------------------------------------------------------------- 3. jigsaw: ids not compared in v1


JIGSAW_CLASSES = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]


def jigsaw_answers() -> pd.DataFrame:
    # ids a..f; row e is unscored (-1 throughout). Every class has both labels among the scored rows.
    labels = [[1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 1], [1, 1, 0, 0, 1, 1], [0, 0, 1, 1, 0, 0],
              [-1] * 6, [1, 0, 0, 1, 1, 0]]
    return pd.DataFrame(labels, columns=JIGSAW_CLASSES).assign(id=list("abcdef"))[["id", *JIGSAW_CLASSES]]


def test_jigsaw_v1_accepts_a_repeated_id_and_keeps_the_corrected_grade_beside_it(synthetic):
    cid = add_real(synthetic, "jigsaw-toxic-comment-classification-challenge", jigsaw_answers())
    truth = jigsaw_answers().replace(-1, 0)
    perfect = grade(synthetic, cid, truth)
    assert perfect.score == 1.0 and perfect.corrected_score is None  # the two modes agree: one grade
    # 'b' repeated, 'c' missing: sorted ids a b b d e f pair with a b c d e f by position, so the
    # second 'b' row is scored as 'c'. Its labels (b's) against c's [1,1,0,0,1,1]: per class, rows
    # a,b,c,d,f (e unscored) predicted a,b,b,d,f. toxic: truth 1,0,1,0,1, scores 1,0,0,0,1 -> pairs
    # (pos,neg): 3x2=6; c(0) vs b(0) tie, c vs d(0) tie -> 4 + 2*0.5 = 5/6. severe_toxic: truth
    # 0,1,1,0,0 scores 0,1,1,0,0 -> 1. obscene: truth 1,0,0,1,0 scores 1,0,0,1,0 -> 1. threat: truth
    # 0,1,0,1,1 scores 0,1,1,1,1 -> pos b,d,f all 1, neg a 0, c 1: 3 wins + 3 ties = 4.5/6 = 0.75.
    # insult: truth 1,0,1,0,1 scores 1,0,0,0,1 -> 5/6. identity_hate: truth 0,1,1,0,0 scores
    # 0,1,1,0,0 -> 1. Mean = (5/6 + 1 + 1 + 0.75 + 5/6 + 1) / 6 = 0.902777... -> 0.90278
    swapped = truth.copy()
    swapped.loc[2, "id"] = "b"
    swapped.loc[2, JIGSAW_CLASSES] = truth.loc[1, JIGSAW_CLASSES].to_numpy()
    v1 = grade(synthetic, cid, swapped)
    assert v1.valid_submission and v1.score == 0.90278 and v1.grading_mode == "v1"
    assert v1.v1_score == 0.90278 and v1.corrected_valid is False and "duplicate id" in v1.corrected_reason
    fixed = grade(synthetic, cid, swapped, mode="corrected")
    assert not fixed.valid_submission and fixed.score is None and fixed.any_medal is False
    assert fixed.grading_mode == "corrected" and fixed.v1_score == 0.90278
    # An id that is not a test id at all: v1's pandas refused it too.
    unknown = truth.assign(id=list("abcdez"))
    assert "not in the test set" in grade(synthetic, cid, unknown).reason
    # Columns are paired by position in v1, by name when corrected.
    reordered = truth[["id", *reversed(JIGSAW_CLASSES)]]
    both = grade(synthetic, cid, reordered)
    assert both.score == 0.41667 and both.corrected_score == 1.0  # v1 value from scikit-learn 1.5.1
    with pytest.raises(ValueError, match="grading mode 'v2' is unknown"):
        grade(synthetic, cid, truth, mode="v2")
    path = synthetic.submission("cli.csv", swapped)
    out = CliRunner().invoke(cli.main, ["grade-sample", str(path), cid, "--data-dir", str(synthetic.data),
                                        "--mode", "corrected"])
    printed = json.loads(out.output)
    assert out.exit_code == 0 and printed["grading_mode"] == "corrected" and printed["v1_score"] == 0.90278


# ---------------------------------------------------------------- 4. invalid labels are not grader errors


def test_bad_labels_are_invalid_with_a_reason_not_grader_errors(synthetic):
    answers = pd.DataFrame({"id": [1, 2, 3, 4], "y": [0, 1, 2, 3]})
    synthetic.add("qwk", answers, BOARD, metric={"name": "quadratic-weighted-kappa", "higher_is_better": True},
                  submission={"id_columns": ["id"], "answer_columns": ["y"]})
    synthetic.add("acc", answers, BOARD, metric={"name": "accuracy", "higher_is_better": True},
                  submission={"id_columns": ["id"], "answer_columns": ["y"]})
    half = grade(synthetic, "qwk", "id,y\n1,0\n2,1\n3,2.5\n4,3\n")
    assert not half.valid_submission and not half.grader_error and "whole class labels" in half.reason
    for value in ("inf", "-inf", ""):
        bad = grade(synthetic, "acc", f"id,y\n1,0\n2,1\n3,{value}\n4,3\n")
        assert not bad.valid_submission and not bad.grader_error and "missing or infinite" in bad.reason
    # 2.0 is a whole label: v1 scored it (3 of 4 right).
    assert grade(synthetic, "acc", "id,y\n1,0\n2,1\n3,2.0\n4,2\n").score == 0.75
    assert grade(synthetic, "qwk", "id,y\n1,0\n2,1\n3,2.0\n4,3\n").score == 1.0


# ---------------------------------------------------------------- 5. pinned v1 behaviours


def test_text_labels_in_an_integer_accuracy_column(synthetic):
    answers = pd.DataFrame({"id": [1, 2, 3, 4], "y": [1, 2, 3, 1]})
    synthetic.add("acc3", answers, BOARD, metric={"name": "accuracy", "higher_is_better": True},
                  submission={"id_columns": ["id"], "answer_columns": ["y"]})
    # Three classes: v1's scikit-learn compared the texts with the numbers, none equal -> valid, 0.
    report = grade(synthetic, "acc3", "id,y\n1,1\n2,two\n3,3\n4,1\n")
    assert report.valid_submission and report.score == 0.0
    # Two classes on both sides: v1 raised ("same type") -> invalid.
    synthetic.add("acc2", answers.assign(y=[1, 2, 1, 2]), BOARD,
                  metric={"name": "accuracy", "higher_is_better": True},
                  submission={"id_columns": ["id"], "answer_columns": ["y"]})
    two = grade(synthetic, "acc2", "id,y\n1,a\n2,b\n3,a\n4,b\n")
    assert not two.valid_submission and "must hold numbers" in two.reason
    # Quadratic kappa always refused text against numbers.
    assert metrics.METRICS["accuracy"](answers[["y"]], pd.DataFrame({"y": ["1", "x", "y", "z"]})) == 0.0
    with pytest.raises(metrics.InvalidSubmission, match="must hold numbers"):
        metrics.METRICS["quadratic-weighted-kappa"](answers[["y"]], pd.DataFrame({"y": ["1", "x", "y", "z"]}))


def test_text_normalization_reads_a_missing_cell_as_nan(synthetic):
    answers = pd.DataFrame({"id": ["0_0", "0_1", "0_2", "0_3"], "after": ["one", "nan", "3", "two"]})
    cid = add_real(synthetic, "text-normalization-challenge-english-language", answers)
    # Row 0_1 left empty is read as NaN, cast to "nan" and equals the answer "nan"; 0_2 holds the number
    # 3, cast to "3"; 0_3 is wrong: 3 of 4 -> 0.75.
    assert grade(synthetic, cid, "id,after\n0_0,one\n0_1,\n0_2,3\n0_3,2\n").score == 0.75


def test_nomad2018_refuses_negatives_and_reads_booleans_in_float16(synthetic):
    answers = pd.DataFrame({"id": [1, 2, 3, 4, 5], "formation_energy_ev_natom": [0.1, 0.2, 0.3, 0.4, 0.5],
                            "bandgap_energy_ev": [1.0, 2.0, 3.0, 4.0, 5.0]})
    cid = add_real(synthetic, "nomad2018-predict-transparent-conductors", answers)
    negative = grade(synthetic, cid, answers.assign(bandgap_energy_ev=[1.0, 2.0, -0.001, 4.0, 5.0]))
    assert not negative.valid_submission and "must not be negative" in negative.reason
    # formation = True, False, True, False, True; bandgap exact. NumPy took log1p of booleans in
    # float16: log1p(True) = 0.6934 (float16) instead of 0.693147..., so the formation RMSLE is
    # 0.3931303728... (0.3929882164... in float64); the mean with 0 -> 0.19656518... -> 0.19657
    # (float64 would give 0.19649 instead).
    booleans = answers.assign(formation_energy_ev_natom=[True, False, True, False, True])
    assert grade(synthetic, cid, booleans).score == 0.19657


def test_boolean_probabilities_are_read_as_0_and_1_as_in_v1(synthetic):
    # v1's checks (pd.to_numeric, min >= 0, max <= 1) and scikit-learn accept booleans as 0 and 1.
    answers = pd.DataFrame({"id": [1, 2, 3, 4], "target": [1, 0, 0, 1]})
    synthetic.add("auc", answers, BOARD)
    report = grade(synthetic, "auc", "id,target\n1,True\n2,False\n3,True\n4,False\n")
    # positives score 1, 0; negatives 0, 1: pairs (1>0) win, (1=1) tie, (0=0) tie, (0<1) loss -> 0.5
    assert report.valid_submission and report.score == 0.5
