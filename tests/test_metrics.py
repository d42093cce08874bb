"""Every implemented metric against values computed by hand in the comments."""

import math

import numpy as np
import pandas as pd
import pytest

from hpc_mle.metrics import LOG_LOSS_EPS, METRICS, InvalidSubmission


def frame(**cols) -> pd.DataFrame:
    return pd.DataFrame(cols)


def score(name: str, y_true: pd.DataFrame, y_pred: pd.DataFrame, **options) -> float:
    return METRICS[name](y_true, y_pred, **options)


def test_accuracy():
    # 3 of 4 labels agree.
    assert score("accuracy", frame(y=[1, 2, 3, 4]), frame(y=[1, 2, 3, 0])) == 0.75
    assert score("accuracy", frame(y=["a", "b"]), frame(y=["a", "a"])) == 0.5


def test_accuracy_as_string_counts_nan_as_the_text_nan():
    # text-normalization: both sides cast with astype(str); NaN == NaN as the string "nan".
    y_true = frame(after=["one", None, "3"])
    y_pred = frame(after=["one", None, 3])
    assert score("accuracy", y_true, y_pred, as_string=True) == 1.0


def test_accuracy_refuses_text_against_numbers():
    with pytest.raises(InvalidSubmission, match="must hold numbers"):
        score("accuracy", frame(y=[1, 2]), frame(y=["1", "x"]))


def test_quadratic_weighted_kappa():
    # Perfect agreement = 1. For y=[0,1,2], p=[0,2,1]: observed weighted disagreement with
    # w_ij=(i-j)^2/4: two cells off by one -> sum O*w = 2*(1/4)=0.5; expected under independence
    # E_ij = 1/3*1/3*3 = 1/3 each, sum E*w = (1/3)*(2*(1/4)*2 + 2*1*... ) computed below by hand:
    # weights: |i-j|=1 -> .25 (4 cells), |i-j|=2 -> 1 (2 cells); sum E*w = 1/3*(4*.25 + 2*1) = 1.
    # kappa = 1 - 0.5/1 = 0.5
    assert score("quadratic-weighted-kappa", frame(d=[0, 1, 2]), frame(d=[0, 1, 2])) == 1.0
    assert score("quadratic-weighted-kappa", frame(d=[0, 1, 2]), frame(d=[0, 2, 1])) == pytest.approx(0.5)


def test_micro_f1_label_sets_ignores_labels_unseen_in_answers():
    # Row 1: true {a,b}, pred {a,z}; z never occurs in the answers and is dropped -> pred {a}.
    # Row 2: true {c}, pred {c,b}. TP = a + c = 2, FP = b = 1, FN = b (row 1) = 1.
    # micro-F1 = 2*2 / (2*2 + 1 + 1) = 4/6
    y_true = frame(tags=["a b", "c"])
    y_pred = frame(tags=["a z", "c b"])
    assert score("micro-f1-label-sets", y_true, y_pred) == pytest.approx(4 / 6)


def test_micro_f1_label_sets_treats_empty_and_missing_as_no_labels():
    y_true = frame(tags=["a", "b"])
    y_pred = frame(tags=[None, "b"])  # TP=1, FN=1, FP=0 -> 2/3
    assert score("micro-f1-label-sets", y_true, y_pred) == pytest.approx(2 / 3)


def test_binary_log_loss():
    # -(ln 0.8 + ln 0.6) / 2 for labels 1, 0 with P(1) = 0.8, 0.4
    expected = -(math.log(0.8) + math.log(0.6)) / 2
    assert score("log-loss", frame(y=[1, 0]), frame(y=[0.8, 0.4])) == pytest.approx(expected)


def test_log_loss_clips_to_float64_eps_like_sklearn_1_5():
    # A confident wrong answer costs -ln(eps), about 36.04, not Kaggle's -ln(1e-15) = 34.54.
    got = score("log-loss", frame(y=[1]), frame(y=[0.0]))
    assert got == pytest.approx(-math.log(LOG_LOSS_EPS))
    assert got == pytest.approx(36.0437, abs=1e-4)


def test_log_loss_rejects_values_outside_0_1():
    with pytest.raises(InvalidSubmission, match=r"probabilities in \[0, 1\]"):
        score("log-loss", frame(y=[1, 0]), frame(y=[1.2, 0.1]))


def test_multiclass_log_loss():
    # Row 1 true class a with p=0.7; row 2 true class c with p=0.5 -> -(ln .7 + ln .5)/2
    y_true = frame(a=[1, 0], b=[0, 0], c=[0, 1])
    y_pred = frame(a=[0.7, 0.25], b=[0.2, 0.25], c=[0.1, 0.5])
    assert score("multi-class-log-loss", y_true, y_pred) == pytest.approx(-(math.log(0.7) + math.log(0.5)) / 2)


def test_multiclass_log_loss_uniform_is_ln_k():
    y_true = frame(a=[1, 0, 0], b=[0, 1, 0], c=[0, 0, 1])
    y_pred = frame(a=[1 / 3] * 3, b=[1 / 3] * 3, c=[1 / 3] * 3)
    assert score("multi-class-log-loss", y_true, y_pred) == pytest.approx(math.log(3))


def test_multiclass_log_loss_rows_must_sum_to_one():
    y_true = frame(a=[1], b=[0])
    with pytest.raises(InvalidSubmission, match="sum to 1"):
        score("multi-class-log-loss", y_true, frame(a=[0.5], b=[0.6]))
    # within 1e-6 is accepted and not renormalised: -ln(0.5000004)
    assert score("multi-class-log-loss", y_true, frame(a=[0.5000004], b=[0.5])) == pytest.approx(
        -math.log(0.5000004))


def test_roc_auc():
    # Positives scored 0.9, 0.4; negatives 0.5, 0.1. Pairs (pos > neg): (0.9>0.5), (0.9>0.1), (0.4>0.1) = 3 of 4.
    assert score("auc-roc", frame(y=[1, 1, 0, 0]), frame(y=[0.9, 0.4, 0.5, 0.1])) == 0.75
    assert score("auc-roc", frame(y=[1, 0]), frame(y=[0.5, 0.5])) == 0.5  # a tie counts half


def test_roc_auc_needs_both_classes_in_the_answers():
    with pytest.raises(InvalidSubmission, match="only one class"):
        score("auc-roc", frame(y=[1, 1]), frame(y=[0.2, 0.3]))


def test_mean_columnwise_roc_auc_drops_unscored_rows():
    # Column a: rows 0-3 (row 4 is -1 in every column -> dropped): pos 0.9, 0.4 vs neg 0.5, 0.1 -> 0.75.
    # Column b: pos 0.8 vs negs 0.1, 0.2, 0.3 -> 1.0. Mean = 0.875.
    y_true = frame(a=[1, 1, 0, 0, -1], b=[1, 0, 0, 0, -1])
    y_pred = frame(a=[0.9, 0.4, 0.5, 0.1, 0.99], b=[0.8, 0.1, 0.2, 0.3, 0.0])
    assert score("mean-column-wise-roc-auc", y_true, y_pred, drop_negative_answers=True) == 0.875


def test_mean_columnwise_roc_auc_range_check_is_optional():
    y_true = frame(a=[1, 0], b=[0, 1])
    y_pred = frame(a=[5.0, -1.0], b=[0.0, 2.0])
    assert score("mean-column-wise-roc-auc", y_true, y_pred) == 1.0  # ranks only, as plant-pathology
    with pytest.raises(InvalidSubmission):
        score("mean-column-wise-roc-auc", y_true, y_pred, check_range=True)  # as ranzcr


def test_rmse():
    # errors 1, -1, 2 -> sqrt((1 + 1 + 4) / 3) = sqrt(2)
    assert score("root-mean-squared-error", frame(y=[1.0, 2.0, 3.0]), frame(y=[2.0, 1.0, 5.0])) == pytest.approx(
        math.sqrt(2))


def test_rmsle():
    # log1p(e-1) = 1, log1p(0) = 0 -> sqrt(((1-0)^2 + 0) / 2) = sqrt(0.5)
    y_true = frame(y=[math.e - 1, 0.0])
    y_pred = frame(y=[0.0, 0.0])
    assert score("root-mean-squared-log-error", y_true, y_pred) == pytest.approx(math.sqrt(0.5))


def test_rmsle_rejects_negative_predictions():
    with pytest.raises(InvalidSubmission, match="must not be negative"):
        score("root-mean-squared-log-error", frame(y=[1.0]), frame(y=[-0.5]))


def test_mean_columnwise_rmsle():
    # column a as in test_rmsle (sqrt .5), column b perfect (0) -> mean sqrt(.5)/2
    y_true = frame(a=[math.e - 1, 0.0], b=[3.0, 4.0])
    y_pred = frame(a=[0.0, 0.0], b=[3.0, 4.0])
    assert score("mean-column-wise-rmsle", y_true, y_pred) == pytest.approx(math.sqrt(0.5) / 2)


@pytest.mark.parametrize("bad", [np.nan, np.inf, "x"])
def test_numeric_metrics_reject_nan_inf_and_text(bad):
    with pytest.raises(InvalidSubmission):
        score("root-mean-squared-error", frame(y=[1.0, 2.0]), frame(y=[1.0, bad]))


def test_every_metric_has_a_direction_and_summary():
    for m in METRICS.values():
        assert isinstance(m.higher_is_better, bool)
        assert m.summary


def test_micro_f1_label_sets_reads_numeric_cells_as_labels():
    # A column of single numeric labels is parsed as numbers (with NaN: floats 3.0); they still match "3".
    y_true = frame(tags=["3", "4 5"])
    y_pred = frame(tags=[3.0, float("nan")])  # TP=1 (3), FN=2 (4, 5) -> 2/(2+2) = 0.5
    assert score("micro-f1-label-sets", y_true, y_pred) == pytest.approx(0.5)


def test_pearson_correlation():
    # t = [1,2,3], p = [1,2,4]: deviations [-1,0,1] and [-4/3,-1/3,5/3]; cov sum 3, var sums 2 and 42/9
    # -> r = 3 / sqrt(2 * 42/9) = 9 / sqrt(84)
    assert score("pearson-correlation", frame(s=[1.0, 2.0, 3.0]), frame(s=[1.0, 2.0, 4.0])) == pytest.approx(9 / math.sqrt(84))
    assert score("pearson-correlation", frame(s=[1.0, 2.0, 3.0]), frame(s=[3.0, 2.0, 1.0])) == pytest.approx(-1.0)


def test_pearson_correlation_is_nan_for_constant_or_missing_and_invalid_for_text():
    # v1 (scipy.stats.pearsonr) returns NaN for both, a valid grade that wins nothing.
    assert math.isnan(score("pearson-correlation", frame(s=[1.0, 2.0, 3.0]), frame(s=[0, 0, 0])))
    assert math.isnan(score("pearson-correlation", frame(s=[1.0, 2.0, 3.0]), frame(s=[1.0, np.nan, 3.0])))
    with pytest.raises(InvalidSubmission):
        score("pearson-correlation", frame(s=[1.0, 2.0, 3.0]), frame(s=[1.0, "high", 3.0]))


def test_mean_columnwise_spearman():
    # column a: ranks reversed -> -1; column b: same order -> +1; mean 0. A constant column -> NaN mean.
    y_true = frame(a=[1.0, 2.0, 3.0], b=[0.1, 0.5, 0.9])
    assert score("mean-column-wise-spearman", y_true, frame(a=[3.0, 2.0, 1.0], b=[10, 20, 30])) == pytest.approx(0.0)
    # ties: t = [1,2,3], p = [1,1,2] -> ranks [1.5,1.5,3]; Pearson of ranks [1,2,3] vs [1.5,1.5,3] = 1.5/sqrt(2*1.5)
    tied = score("mean-column-wise-spearman", frame(a=[1.0, 2.0, 3.0]), frame(a=[1.0, 1.0, 2.0]))
    assert tied == pytest.approx(1.5 / math.sqrt(3))
    assert math.isnan(score("mean-column-wise-spearman", y_true, frame(a=[3.0, 2.0, 1.0], b=[5, 5, 5])))


def test_word_jaccard():
    # "Good Day" vs "good day sir": {good, day} / {good, day, sir} = 2/3; "" vs "x": 0; NaN is "": mean 1/3.
    y_true = frame(t=["good day sir", "x"])
    assert score("word-jaccard", y_true, frame(t=["Good  Day", ""])) == pytest.approx(1 / 3)
    assert score("word-jaccard", y_true, frame(t=["Good  Day", np.nan])) == pytest.approx(1 / 3)
    assert score("word-jaccard", frame(t=["5", "a b"]), frame(t=[5, 7])) == pytest.approx(0.5)  # numbers as text
    with pytest.raises(InvalidSubmission, match="empty"):
        score("word-jaccard", frame(t=["", "x"]), frame(t=[np.nan, "x"]))  # v1: division by zero


def test_jigsaw_bias_auc():
    # Binarised at >= 0.5 (missing = 0): toxicity [1,1,0,0], identity g [1,0,1,0], predictions [1,0,0,0].
    # Overall AUC: pairs (0,2),(0,3) won, (1,2),(1,3) tied -> 3/4. Subgroup g (rows 0,2) -> 1;
    # BPSN (rows 1,2: toxic without g, non-toxic with g) tied -> 0.5; BNSP (rows 0,3) -> 1.
    # One identity: each power mean is the AUC itself. 0.25*0.75 + 0.25*(1 + 0.5 + 1) = 0.8125.
    y_true = frame(toxicity=[0.9, 0.5, 0.4, np.nan], g=[0.6, np.nan, 0.5, 0.0])
    y_pred = frame(prediction=[0.9, 0.2, 0.4, np.nan])
    assert score("jigsaw-bias-auc", y_true, y_pred, identity_columns=["g"]) == pytest.approx(0.8125)
    # Power mean p=-5 over two identities with subgroup AUCs 1 and 0.5: ((1 + 32)/2)^(-1/5).
    two = frame(toxicity=[1, 0, 1, 0, 1, 0], g=[1, 1, 0, 0, 0, 0], h=[0, 0, 1, 1, 0, 0])
    pred = frame(prediction=[1, 0, 0, 0, 1, 0])
    # overall: positives (p 1,0,1) against 3 negatives (p 0): two win 3 pairs each, one ties 3 -> 7.5/9 = 5/6. g: subgroup 1, BPSN rows 1,2,4 (t 0,1,1; p 0,0,1) -> (0.5 + 1)/2 = 0.75,
    # BNSP rows 0,3,5 -> 1. h: subgroup rows 2,3 (t 1,0; p 0,0) -> 0.5, BPSN rows 0,3,4 (t 1,0,1; p 1,0,1) -> 1,
    # BNSP rows 1,2,5 (t 0,1,0; p 0,0,0) -> 0.5.
    m = lambda a, b: ((a ** -5 + b ** -5) / 2) ** (-1 / 5)  # noqa: E731
    expected = 0.25 * 5 / 6 + 0.25 * (m(1, 0.5) + m(0.75, 1) + m(1, 0.5))
    assert score("jigsaw-bias-auc", two, pred, identity_columns=["g", "h"]) == pytest.approx(expected)
    with pytest.raises(InvalidSubmission):
        score("jigsaw-bias-auc", y_true, frame(prediction=["a", "b", "c", "d"]), identity_columns=["g"])


# ---------------------------------------------------------------- medical images (issue 14)


def _cervical(labels: dict[str, list[int]], preds: dict[str, list[float]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Long rows (label, study, target) as the rsna-2022 grader passes them, one per study and target."""
    targets = ["patient_overall", *(f"C{i}" for i in range(1, 8))]
    rows = [(labels[s][k], s, t, preds[s][k]) for s in labels for k, t in enumerate(targets)]
    y_true = pd.DataFrame([r[:3] for r in rows], columns=["fractured", "StudyInstanceUID", "prediction_type"])
    return y_true, pd.DataFrame({"fractured": [r[3] for r in rows]})


def test_weighted_multi_label_log_loss():
    # Study a: all 8 labels 0, every prediction 0.5 -> each loss ln 2, so its weighted mean is ln 2.
    # Study b: patient_overall and C1 positive (weights 14 and 2), the rest negative (weight 1 each, sum 22).
    # Predictions 1.0 and 0.5 for the positives, 0 for the negatives: clipping to 1e-15 makes the exact
    # hits cost -ln(1 - 1e-15) ~ 1e-15; C1 costs 2 ln 2 -> (2 ln 2 + ~0) / 22. Mean: (ln 2 + ln 2 / 11) / 2.
    y_true, y_pred = _cervical({"a": [0] * 8, "b": [1, 1, 0, 0, 0, 0, 0, 0]},
                               {"a": [0.5] * 8, "b": [1.0, 0.5, 0, 0, 0, 0, 0, 0]})
    expected = (math.log(2) + math.log(2) / 11) / 2
    assert score("weighted-multi-label-log-loss", y_true, y_pred) == pytest.approx(expected, rel=1e-12)
    # Rows are grouped by their study and target columns, not by position.
    order = np.random.default_rng(0).permutation(len(y_true))
    shuffled = score("weighted-multi-label-log-loss", y_true.iloc[order], y_pred.iloc[order])
    assert shuffled == pytest.approx(expected, rel=1e-12)
    # A confident miss costs -ln(1e-15) = 34.5388 (v1's own eps, not scikit-learn's 2.2e-16).
    y_true, y_pred = _cervical({"a": [1, 0, 0, 0, 0, 0, 0, 0]}, {"a": [0.0] + [0.0] * 7})
    # weights 14 (positive patient_overall) + 7 * 1: (14 * 34.5388 + 7 * ~1e-15) / 21
    assert score("weighted-multi-label-log-loss", y_true, y_pred) == pytest.approx(14 * -math.log(1e-15) / 21)
    for bad in (1.5, -0.1, np.nan, "x"):
        broken = y_pred.astype(object)
        broken.iloc[3, 0] = bad
        with pytest.raises(InvalidSubmission):
            score("weighted-multi-label-log-loss", y_true, broken)


def test_probabilistic_f1():
    # labels [1, 0, 1, 0], predictions clipped to [0.8, 0.4, 0.6, 0]: ctp = 1.4, cfp = 0.4.
    # precision = 1.4 / 1.8 = 7/9, recall = 1.4 / 2 = 0.7, F1 = 2PR / (P + R) = (98/90) / (133/90) = 14/19.
    y_true = frame(cancer=[1, 0, 1, 0])
    assert score("probabilistic-f1", y_true, frame(cancer=[0.8, 0.4, 0.6, -1.0])) == pytest.approx(14 / 19)
    # Above 1 and +inf clip to 1: ctp = 2, cfp = 1 -> P = 2/3, R = 1, F1 = (4/3) / (5/3) = 0.8.
    assert score("probabilistic-f1", y_true, frame(cancer=[1.5, np.inf, 1.0, 0.0])) == pytest.approx(0.8)
    # v1 returns the int 0 when precision or recall is not > 0: all-zero predictions, or any NaN.
    zero = score("probabilistic-f1", y_true, frame(cancer=[0.0, 0.3, 0.0, 0.2]))
    assert zero == 0 and isinstance(zero, int)
    assert score("probabilistic-f1", y_true, frame(cancer=[0.9, np.nan, 0.9, 0.1])) == 0
    with pytest.raises(InvalidSubmission, match="numeric"):
        score("probabilistic-f1", y_true, frame(cancer=["a", 0.1, 0.2, 0.3]))
    with pytest.raises(InvalidSubmission, match="no positive"):
        score("probabilistic-f1", frame(cancer=[0, 0]), frame(cancer=[0.5, 0.5]))


# ---------------------------------------------------------------- integer class labels (herbaria, iwildcam-2019, inaturalist-2019)


def test_macro_f1_by_hand():
    # truth [1, 1, 2, 3], predictions [1, 2, 2, 2]:
    # class 1: P = 1/1, R = 1/2 -> F1 = 2/3; class 2: P = 1/3, R = 1 -> F1 = 1/2; class 3: never predicted -> 0.
    # macro = (2/3 + 1/2 + 0) / 3 = 7/18
    y_true = frame(Predicted=[1, 1, 2, 3])
    assert score("macro-f1", y_true, frame(Predicted=[1, 2, 2, 2])) == pytest.approx(7 / 18)
    # v1 converts each cell with int(): 2.9 is 2, "2" is 2, so the same labels score the same.
    assert score("macro-f1", y_true, frame(Predicted=[1.0, 2.9, 2.0, "2"])) == pytest.approx(7 / 18)
    # A class only predicted counts too (union of labels): truth [1, 1], predictions [1, 4]:
    # class 1: P = 1, R = 1/2 -> 2/3; class 4: 0 -> macro = 1/3.
    assert score("macro-f1", frame(Predicted=[1, 1]), frame(Predicted=[1, 4])) == pytest.approx(1 / 3)
    for bad in (np.nan, np.inf, "cat", "1.5"):
        with pytest.raises(InvalidSubmission, match="integer"):
            score("macro-f1", y_true, frame(Predicted=[1, 2, 2, bad]))


def test_top_1_error_by_hand():
    y_true = frame(predicted=[5, 7, 9, 11])
    # Only the first space-separated class counts: 5, 1, 9, 11 -> 3 of 4 right -> error 1/4.
    assert score("top-1-error", y_true, frame(predicted=["5 7", "1 7", "9", "11 3 4"])) == pytest.approx(0.25)
    assert score("top-1-error", y_true, frame(predicted=[5, 7, 0, 0])) == pytest.approx(0.5)
    # A float column has no first token in v1 (it splits only non-int cells): invalid, as are empty cells.
    for bad in ([5.0, 7.0, 9.0, 11.0], ["5", " ", "9", "11"], ["5", "x", "9", "11"]):
        with pytest.raises(InvalidSubmission, match="integer"):
            score("top-1-error", y_true, frame(predicted=bad))


# ---------------------------------------------------------------- audio and molecule images (issue 14: freesound,
# tensorflow-speech, bms)


def test_lwlrap_by_hand():
    truth = frame(a=[1, 0, 0], b=[0, 1, 0], c=[0, 1, 0])
    pred = frame(a=[0.9, 0.2, 0.5], b=[0.5, 0.8, 0.5], c=[0.1, 0.1, 0.5])
    # Clip 1: 'a' ranked first -> 1. Clip 2: 'b' first (1/1), 'c' third with 2 true at or above it (2/3),
    # weighted by its 2 labels. Clip 3 has no label: left out. (1 + 2 * (1 + 2/3) / 2) / 3 = 8/9.
    assert score("lwlrap", truth, pred) == pytest.approx(8 / 9)
    # All scores tied: every class shares the last rank 3, so a true class has precision (true labels)/3.
    tied = pred.assign(a=0.0, b=0.0, c=0.0)
    assert score("lwlrap", truth, tied) == pytest.approx((1 * (1 / 3) + 2 * (2 / 3)) / 3)
    for bad in (np.nan, np.inf, "x"):
        with pytest.raises(InvalidSubmission, match="column 'a'"):
            score("lwlrap", truth, pred.assign(a=[bad, 0.1, 0.1]))


def test_accuracy_answer_map_folds_the_answers():
    # tensorflow-speech's corrected grade: raw folder names folded into Kaggle's classes before comparing.
    truth = frame(label=["yes", "bed", "_background_noise_", "wow"])
    pred = frame(label=["yes", "unknown", "silence", "bed"])
    assert score("accuracy", truth, pred) == 0.25  # v1: only 'yes' equals a raw folder name
    folding = {"answer_map": {"yes": "yes", "_background_noise_": "silence"}, "answer_other": "unknown"}
    # yes == yes, bed -> unknown, noise -> silence; wow -> unknown != bed: 3 of 4.
    assert score("accuracy", truth, pred, **folding) == 0.75


def test_levenshtein_as_string_scores_empty_and_numeric_cells():
    truth = frame(InChI=["InChI=1S/H2O/h1H2", "abc"])
    # bms v1 casts with astype(str): 'InChI=1S/H2O/h1H2' -> 'InChI=1S/H2O' deletes 5 characters; an
    # empty cell is the text 'nan', 3 substitutions from 'abc'. Mean (5 + 3) / 2.
    assert score("mean-levenshtein-distance", truth, frame(InChI=["InChI=1S/H2O", None]), as_string=True) == 4.0
    # A float column prints as pandas prints it: 7 is '7.0', 3 edits from 'abc'; '1.5' against the
    # 17-character answer: 14 deletions, and of its 3 characters only '1' matches, so 2 more edits: 16.
    # Mean (16 + 3) / 2.
    assert score("mean-levenshtein-distance", truth, frame(InChI=[1.5, 7]), as_string=True) == 9.5
    # Without the cast (billion-word v1), an empty cell is refused.
    with pytest.raises(InvalidSubmission):
        score("mean-levenshtein-distance", truth, frame(InChI=["InChI=1S/H2O", None]))


# ---------------------------------------------------------------- segmentation masks (run-length text)


def test_global_dice_pools_every_image():
    # Two 2x2 images (4 pixels each). Record 1: truth {1,2}, prediction {2,3}: 1 shared. Record 2: truth
    # empty ('-'), prediction {1}. Pooled: 2 * 1 / (2 + 3) = 0.4 (a per-image mean would give (0.5 + 0) / 2).
    truth = frame(record_id=[2, 1], encoded_pixels=["-", "1 2"], height=[2, 2], width=[2, 2])
    pred = frame(record_id=[1, 2], encoded_pixels=["2 2", "1 1"])
    assert score("global-dice", truth, pred) == 0.4
    assert math.isnan(score("global-dice", truth.assign(encoded_pixels="-"), pred.assign(encoded_pixels="-")))
    # A missing cell (how pandas reads an empty one) is invalid: v1 wants '-'.
    for bad in (pred.assign(encoded_pixels=[np.nan, "-"]), pred.assign(record_id=[1, 3]), pred.iloc[:1],
                pred.assign(encoded_pixels=["2 1 1 1", "-"])):
        with pytest.raises(InvalidSubmission):
            score("global-dice", truth, bad)


def test_mean_dice_per_image_both_empty_is_one():
    # Image a (3x1): truth {1,2,3}, prediction {3} -> 2*1/(3+1) = 0.5. Image b: both empty -> 1. Mean 0.75.
    truth = frame(id=["a", "b"], encoding=["1 3", np.nan], width_pixels=[1, 2], height_pixels=[3, 2])
    pred = frame(id=["b", "a"], predicted=[np.nan, "3 1"])
    assert score("mean-dice", truth, pred) == 0.75
    # A run past the image is cut at its end: "3 9" is pixel 3 only.
    assert score("mean-dice", truth, pred.assign(predicted=[np.nan, "3 9"])) == 0.75
    with pytest.raises(InvalidSubmission):
        score("mean-dice", truth, pred.assign(id=["b", "c"]))


def test_iou_threshold_precision_by_hand():
    # 10x10 images (100 pixels). Truth of 60 pixels: a prediction of its first 48 has IoU 0.8, above
    # 0.5, 0.55, ..., 0.75 but not above 0.8: 6 of 10 thresholds. An empty prediction counts as the
    # whole image (v1's histograms): IoU 60/100 = 0.6, above 0.5 and 0.55 only (0.6 < 0.6000000000000001).
    truth = frame(id=["x", "y", "z"], rle_mask=["1 60", "", "5 5"])
    pred = frame(id=["x", "y", "z"], rle_mask=["1 48", "", ""])
    # x: 0.6; y: both empty, 1; z: empty prediction on 5 pixels, IoU 0.05: 0. Mean 1.6 / 3.
    assert score("mean-iou-threshold-precision", truth, pred, height=10, width=10) == np.mean([0.6, 1.0, 0.0])
    got = score("mean-iou-threshold-precision", truth, pred.assign(rle_mask=["", "", ""]), height=10, width=10)
    assert got == np.mean([0.2, 1.0, 0.0])
    # Empty truth: any predicted pixel scores 0.
    assert score("mean-iou-threshold-precision", truth.iloc[[1]], pred.iloc[[1]].assign(rle_mask="7 1"),
                 height=10, width=10) == 0.0
    with pytest.raises(InvalidSubmission):
        score("mean-iou-threshold-precision", truth, pred.assign(id=[1, 2, 3]), height=10, width=10)


def test_pixel_f05_by_hand():
    # A 4x2 fragment (8 pixels, row-major). Truth {1..4}, prediction {3..6}: tp 2, |truth| 4, |pred| 4:
    # 1.25 * 2 / (0.25 * 4 + 4) = 0.5. Both empty: 0 (scikit-learn's zero-division value).
    truth = frame(Id=["a"], Predicted=["1 4"], width=[4], height=[2])
    assert score("mean-pixel-f05", truth, frame(Id=["a"], Predicted=["3 4"])) == 0.5
    assert score("mean-pixel-f05", truth.assign(Predicted=""), frame(Id=["a"], Predicted=[""])) == 0.0
    for bad in (frame(Id=["b"], Predicted=["3 4"]), frame(Id=["a"], Predicted=[np.nan]), frame(Id=["a"], Predicted=["1 2 3 4 5"])):
        with pytest.raises(InvalidSubmission):
            score("mean-pixel-f05", truth, bad)


def test_dice_hausdorff_combo_by_hand():
    # One case_day of two 2x2 slices, one class. Truth: pixel (0,0) of slice 1; prediction: pixel (1,0)
    # of slice 1 (column-major pixel 2). Dice: slice 1 has 0 shared -> 0; slice 2 both empty -> skipped.
    # 3D: points (0,0,0) and (0,1,0), divided by the shape (2,2,2): distance 0.5, over sqrt(3).
    truth = frame(id=["c1_day1_slice_0001", "c1_day1_slice_0002"], **{"class": ["stomach"] * 2},
                  predicted=["1 1", np.nan], image_height=[2.0, 2.0], image_width=[2.0, 2.0])
    pred = truth[["id", "class"]].assign(predicted=["2 1", np.nan])
    want = 0.4 * 0.0 + 0.6 * (1 - 0.5 / np.sqrt(3))
    assert score("dice-hausdorff-combo", truth, pred) == want
    # Identical volumes: Hausdorff 0; Dice 1: score 1. A prediction more than 10x the truth: distance 1.
    assert score("dice-hausdorff-combo", truth, truth[["id", "class", "predicted"]]) == 1.0
    big = frame(id=["c1_day1_slice_0001"] * 1, **{"class": ["stomach"]}, predicted=["1 100"],
                image_height=[10.0], image_width=[10.0])
    assert score("dice-hausdorff-combo", big.assign(predicted="1 1"), big) == 0.4 * (2 / 101) + 0.6 * 0
    # Rows are paired by position, never by id: a shorter file is scored on its first rows (v1).
    assert score("dice-hausdorff-combo", truth, pred.iloc[:1]) == want
    with pytest.raises(InvalidSubmission):
        score("dice-hausdorff-combo", truth, pred.iloc[:1], same_rows=True)


# ---------------------------------------------------------------- issue 14 images: alaska2, paddy, plant-seedlings, petfinder


def test_weighted_auc_roc_by_hand():
    truth = frame(Label=[0, 0, 1, 1])
    # ROC points (0,0) (0,.5) (.5,.5) (.5,1) (1,1), plus (0,.4) inserted at TPR 0.4. Band [0,.4]: the area
    # under y=.4 from x=0 to 1 is .4, weight 2 -> .8. Band [.4,1], shifted down .4: .1 * .5 + .6 * .5 = .35.
    assert score("weighted-auc-roc", truth, frame(Label=[0.1, 0.4, 0.35, 0.8])) == pytest.approx((0.8 + 0.35) / 1.4)
    # Constant scores: the diagonal. Band 1: .08 + .24 = .32 (x2); band 2: .18 -> .82 / 1.4 (v1's sample score).
    assert score("weighted-auc-roc", truth, frame(Label=[0, 0, 0, 0])) == pytest.approx(0.82 / 1.4)
    # Perfect, and perfectly reversed (the curve runs along FPR = 1: no area). Any numbers: no range check.
    assert score("weighted-auc-roc", truth, frame(Label=[-5, -5, 40, 41])) == 1.0
    assert score("weighted-auc-roc", truth, frame(Label=[1, 1, 0, 0])) == 0.0
    for bad in (frame(Label=[0, np.nan, 1, 1]), frame(Label=["a", "b", "c", "d"])):
        with pytest.raises(InvalidSubmission):
            score("weighted-auc-roc", truth, bad)


def test_accuracy_missing_as_empty_and_strict_types():
    truth = frame(label=["blast", "normal", "tungro", "blast"])
    # paddy v1: fillna("") -> a missing prediction is wrong, not invalid; all missing scores 0.
    assert score("accuracy", truth, frame(label=["blast", np.nan, "tungro", np.nan]), missing_as_empty=True) == 0.5
    assert score("accuracy", truth, frame(label=[np.nan] * 4), missing_as_empty=True) == 0.0
    with pytest.raises(InvalidSubmission):
        score("accuracy", truth, frame(label=["blast", np.nan, "tungro", "blast"]))
    # plant-seedlings v1 (f1_score): numbers against text labels raise even with 3+ classes.
    assert score("accuracy", truth, frame(label=[1, 2, 3, 4])) == 0.0
    with pytest.raises(InvalidSubmission):
        score("accuracy", truth, frame(label=[1, 2, 3, 4]), mixed_ok=False)


def test_rmse_bounds():
    truth = frame(Pawpularity=[10.0, 50.0])
    # sqrt(((1 - 10)^2 + (100 - 50)^2) / 2) = sqrt((81 + 2500) / 2)
    assert score("root-mean-squared-error", truth, frame(Pawpularity=[1, 100]), bounds=[1, 100]) == math.sqrt(1290.5)
    for bad in ([0.99, 50], [1, 100.5]):
        with pytest.raises(InvalidSubmission, match=r"\[1, 100\]"):
            score("root-mean-squared-error", truth, frame(Pawpularity=bad), bounds=[1, 100])


# ---------------------------------------------------------------- detection (more cases: tests/test_box_metrics.py)


def test_detection_metrics_v1_result_types():
    assert METRICS["point-in-box-f1"].v1_result == "python"  # v1 returned float(kuzushiji_f1(...))
    for name in ("detection-map-at-iou-50", "coco-map-at-iou-40", "mean-average-precision-3d"):
        assert METRICS[name].v1_result == "numpy" and METRICS[name].higher_is_better


def test_point_in_box_f1_two_pages():
    truth = frame(image_id=["p1", "p2"], labels=["A 0 0 10 10 B 20 0 10 10", "C 0 0 4 4"])
    # p1: A(5,5) in A's box; B(5,5) outside B's box [20, 30]; B(25,5) inside -> 2 tp, 1 fp. p2: 1 fp, 1 fn.
    # P = 2/4, R = 2/3 -> F1 = (2 * 1/2 * 2/3) / (1/2 + 2/3) = 4/7.
    sub = frame(image_id=["p2", "p1"], labels=["C 9 9", "A 5 5 B 5 5 B 25 5"])
    assert score("point-in-box-f1", truth, sub) == pytest.approx(4 / 7, abs=1e-15)
