"""One function per metric, as MLE-bench v1 computes it.

Every metric takes two frames of the same shape and row order, built by `hpc_mle.grading`:
`y_true` (the answers' scored columns) and `y_pred` (the submission's same columns, rows matched by
id or by position as the spec says). It checks what only it can check (ranges, row sums, types) and
raises `InvalidSubmission` with a reason a person can act on. Any other exception raised here is a
bug in the metric; grading turns it into "invalid" as upstream does, but says it was a grader error.

Adding one of the other upstream metrics = one function decorated with `@metric(...)`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hpc_mle.metric_types import V1_RESULTS, InvalidSubmission

# scikit-learn is imported inside the metrics that use it: planning a sweep loads the registry (which
# checks metric names) and should not pay a second for importing it.

# scikit-learn >= 1.5 clips log-loss probabilities to the float64 machine epsilon (not Kaggle's 1e-15)
# and no longer renormalises rows. MLE-bench v1 results were graded that way; we fix it here so the
# score does not move with the installed scikit-learn.
LOG_LOSS_EPS = float(np.finfo(np.float64).eps)


MetricFn = Callable[..., float]


# `Metric.v1_result`: what v1's grader returned under the published runs' libraries (scikit-learn 1.5.1,
# NumPy 1.26.4): "numpy" (a NumPy float64, which Python's round() rounds as NumPy does) or "python"
# (a float: accuracy_score and log_loss). `grading.round_score` rounds accordingly.


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    fn: MetricFn
    summary: str
    v1_result: str = "numpy"

    def __call__(self, y_true: pd.DataFrame, y_pred: pd.DataFrame, **options) -> float:
        return self.fn(y_true, y_pred, **options)


METRICS: dict[str, Metric] = {}


def metric(name: str, *, higher_is_better: bool, v1_result: str = "numpy") -> Callable[[MetricFn], MetricFn]:
    """Register a metric under its spec name; `v1_result` is the type v1's grader returned (V1_RESULTS)."""
    assert v1_result in V1_RESULTS, v1_result

    def register(fn: MetricFn) -> MetricFn:
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else name
        METRICS[name] = Metric(name, higher_is_better, fn, summary, v1_result)
        return fn

    return register


# ---------------------------------------------------------------- input checks shared by metrics


def _numbers_or_nan(frame: pd.DataFrame) -> np.ndarray:
    """Float matrix where missing cells stay NaN (v1's SciPy correlations propagate them to a NaN score);
    a cell that is text is invalid with a reason."""
    out = np.empty(frame.shape, dtype=np.float64)
    for j, col in enumerate(frame.columns):
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = values.isna() & frame[col].notna()
        if bad.any():
            raise InvalidSubmission(f"column '{col}' must be numeric; found {frame[col][bad].iloc[0]!r}")
        out[:, j] = values.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def _numeric(frame: pd.DataFrame, what: str = "submission") -> np.ndarray:
    """Float matrix of `frame`, or InvalidSubmission naming the first bad column and value (text, missing, inf)."""
    out = _numbers_or_nan(frame)
    missing = np.isnan(out).sum(axis=0)
    if missing.any():
        j = int(np.flatnonzero(missing)[0])
        raise InvalidSubmission(f"column '{frame.columns[j]}' has {int(missing[j])} missing value(s) in the {what}")
    if not np.isfinite(out).all():
        col = frame.columns[np.where(~np.isfinite(out))[1][0]]
        raise InvalidSubmission(f"column '{col}' has infinite values")
    return out


def _probabilities(frame: pd.DataFrame) -> np.ndarray:
    values = _numeric(frame)
    if values.size and (values.min() < 0 or values.max() > 1):
        col = frame.columns[np.where((values < 0) | (values > 1))[1][0]]
        raise InvalidSubmission(f"column '{col}' must hold probabilities in [0, 1]")
    return values


def _check_row_sums(values: np.ndarray, columns: pd.Index, atol: float) -> None:
    sums = values.sum(axis=1)
    bad = ~np.isclose(sums, 1.0, atol=atol)
    if bad.any():
        raise InvalidSubmission(
            f"each row's probabilities over {len(columns)} columns must sum to 1 (within {atol}); "
            f"row {int(np.argmax(bad))} sums to {sums[bad][0]:.6g}"
        )


def _single(frame: pd.DataFrame) -> pd.Series:
    if frame.shape[1] != 1:
        raise InvalidSubmission(f"expected one answer column, got {list(frame.columns)}")
    return frame.iloc[:, 0]


def _label_values(series: pd.Series) -> np.ndarray:
    """A label column as v1's grader saw it: numbers (int, float, bool) or an object array of texts."""
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return series.to_numpy()
    return series.to_numpy(dtype=object, na_value=np.nan)


def _label_kind(values: np.ndarray, column: str) -> str:
    """'binary' or 'multiclass', as scikit-learn 1.5.1 (v1) classed a label column.

    Where v1's scikit-learn raised (missing or infinite values, fractional labels, missing values
    among texts), the submission is invalid with that reason instead of a grader error.
    """
    if values.dtype == object:
        if not all(isinstance(v, str) for v in values):
            raise InvalidSubmission(f"column '{column}' has missing values or numbers among its text labels")
    elif values.dtype.kind == "f":
        if not np.isfinite(values).all():
            raise InvalidSubmission(f"column '{column}' has missing or infinite values; class labels are needed")
        fractional = values != np.floor(values)
        if fractional.any():
            raise InvalidSubmission(f"column '{column}' must hold whole class labels; found {values[fractional][0]!r}")
    return "binary" if np.unique(values).size <= 2 else "multiclass"


def _is_text(values: np.ndarray) -> bool:
    return values.dtype == object


def _v1_labels(y_true: pd.Series, y_pred: pd.Series, *, mixed_ok: bool) -> tuple[np.ndarray, np.ndarray]:
    """Label arrays checked as v1's scikit-learn checked them (`_check_targets`, `unique_labels`).

    Text against numbers: accuracy (`mixed_ok`) accepted it when either side had more than two
    classes, and no row matched; two-class sides, and every confusion-matrix metric, raised.
    """
    t, p = _label_values(y_true), _label_values(y_pred)
    kinds = {_label_kind(t, str(y_true.name)), _label_kind(p, str(y_pred.name))}
    if _is_text(t) != _is_text(p) and (not mixed_ok or kinds == {"binary"}):
        kind = "text labels" if _is_text(t) else "numbers"
        raise InvalidSubmission(f"column '{y_pred.name}' must hold {kind} like the answers")
    return t, p


# ---------------------------------------------------------------- classification / label agreement


@metric("accuracy", higher_is_better=True, v1_result="python")
def accuracy(y_true: pd.DataFrame, y_pred: pd.DataFrame, *, as_string: bool = False,
             missing_as_empty: bool = False, mixed_ok: bool = True,
             answer_map: dict[str, str] | None = None, answer_other: str | None = None) -> float:
    """Fraction of rows whose label equals the answer (upstream: sklearn accuracy_score).

    `as_string`: cast both sides with `astype(str)` first, so NaN becomes "nan" (text-normalization).
    `missing_as_empty`: a missing prediction is the label "" (paddy v1: `fillna("")`), never right.
    `mixed_ok=False`: text against numbers is always invalid, as v1's micro-F1 graders (plant-seedlings)
    raised on it, while accuracy_score accepted it for more than two classes.
    `answer_map` / `answer_other`: the answers relabelled first, a label missing from the map becoming
    `answer_other` (tensorflow-speech's corrected grade folds the raw word folders into Kaggle's 12 classes).
    """
    t, p = _single(y_true), _single(y_pred)
    if answer_map is not None:
        t = t.map(lambda label: answer_map.get(label, label if answer_other is None else answer_other))
    if as_string:
        return float(np.mean(_as_text(t) == _as_text(p)))
    if missing_as_empty and p.isna().any():
        p = p.astype(object).where(p.notna(), "")
    t_values, p_values = _v1_labels(t, p, mixed_ok=mixed_ok)
    if _is_text(t_values) != _is_text(p_values):
        return 0.0  # v1: a text label never equals a number
    return float(np.mean(t_values == p_values))


@metric("quadratic-weighted-kappa", higher_is_better=True)
def quadratic_weighted_kappa(y_true: pd.DataFrame, y_pred: pd.DataFrame) -> float:
    """Cohen's kappa with quadratic weights (upstream passes predictions first; kappa is symmetric)."""
    t, p = _v1_labels(_single(y_true), _single(y_pred), mixed_ok=False)
    from sklearn.metrics import cohen_kappa_score

    return float(cohen_kappa_score(p, t, weights="quadratic"))


def _as_text(series: pd.Series) -> np.ndarray:
    """`astype(str)` as pandas 2 did it: a missing value is the text "nan" whatever the dtype."""
    return series.astype(object).where(series.notna(), "nan").astype(str).to_numpy()


def _label_text(value) -> str:
    """A cell as label text: pandas reads a column of single numeric labels as numbers (5 or 5.0)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _label_sets(series: pd.Series) -> list[list[str]]:
    # to_numpy first: iterating pandas' arrow-backed strings one by one is several times slower.
    return [v.split() if isinstance(v, str) else _label_text(v).split()
            for v in series.to_numpy(dtype=object, na_value=None)]


@metric("micro-f1-label-sets", higher_is_better=True)
def micro_f1_label_sets(y_true: pd.DataFrame, y_pred: pd.DataFrame, *, text_only: bool = False) -> float:
    """Micro-F1 over space-separated label sets (upstream's imet/facebook/plant-pathology-2021 grader).

    Empty or missing cells are "no labels"; repeated labels count once. As in v1 (MultiLabelBinarizer
    fitted on the answers), predicted labels that never occur in the answers are dropped before
    scoring, so they cost nothing: a known upstream quirk, kept for comparability. Counting over sets
    gives the same value as the binarised matrices without building them.

    `text_only`: a prediction cell pandas read as a number or a boolean is invalid (facebook's v1
    split the cells with pandas' `.str`, which fails on them) instead of being read as a label.
    """
    if text_only:
        values = _single(y_pred).to_numpy(dtype=object, na_value=None)
        bad = [v for v in values if v is not None and not isinstance(v, str)]
        if bad:
            raise InvalidSubmission(f"column '{y_pred.columns[0]}' must hold space-separated labels as text; "
                                    f"found {bad[0]!r}")
    true_sets = [set(labels) for labels in _label_sets(_single(y_true))]
    known = set().union(*true_sets)
    tp = fp = fn = 0
    for truth, labels in zip(true_sets, _label_sets(_single(y_pred)), strict=True):
        pred = known.intersection(labels)
        hits = len(truth & pred)
        tp, fp, fn = tp + hits, fp + len(pred) - hits, fn + len(truth) - hits
    return 0.0 if tp == 0 else float(2 * tp / (2 * tp + fp + fn))


# ---------------------------------------------------------------- probabilistic


def _log_loss(onehot: np.ndarray, proba: np.ndarray) -> float:
    clipped = np.clip(proba, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_row = -(onehot * np.log(clipped)).sum(axis=1)
    return float(per_row.mean())


@metric("log-loss", higher_is_better=False, v1_result="python")
def binary_log_loss(y_true: pd.DataFrame, y_pred: pd.DataFrame) -> float:
    """Binary log loss of P(class 1), natural log, probabilities clipped to float64 eps."""
    p = _probabilities(y_pred)[:, 0]
    t = _numeric(y_true, "answers")[:, 0]
    onehot = np.column_stack([1 - t, t])
    return _log_loss(onehot, np.column_stack([1 - p, p]))


@metric("multi-class-log-loss", higher_is_better=False, v1_result="python")
def multiclass_log_loss(y_true: pd.DataFrame, y_pred: pd.DataFrame, *, row_sum_atol: float = 1e-6,
                        row_sum_decimals: int | None = None) -> float:
    """Multi-class log loss over one probability column per class (answers are one-hot).

    Rows must lie in [0, 1] and sum to 1 within `row_sum_atol` (upstream: np.isclose, atol 1e-6);
    with `row_sum_decimals`, the row sum rounded to that many decimals must equal 1 instead
    (lmsys: `round(6) == 1`). Nothing is renormalised.
    """
    p = _probabilities(y_pred)
    if row_sum_decimals is None:
        _check_row_sums(p, y_pred.columns, row_sum_atol)
    else:
        sums = np.round(p.sum(axis=1), row_sum_decimals)
        if (sums != 1).any():
            row = int(np.argmax(sums != 1))
            raise InvalidSubmission(f"each row's probabilities over {len(y_pred.columns)} columns must sum to 1 "
                                    f"(rounded to {row_sum_decimals} decimals); row {row} sums to {p[row].sum():.9g}")
    t = _numeric(y_true, "answers")
    return _log_loss(t, p)


# ---------------------------------------------------------------- ranking / AUC


def _auc(t: np.ndarray, p: np.ndarray, column: str) -> float:
    if np.unique(t).size < 2:
        raise InvalidSubmission(f"AUC is undefined for '{column}': the answers hold only one class")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(t, p))


@metric("auc-roc", higher_is_better=True)
def roc_auc(y_true: pd.DataFrame, y_pred: pd.DataFrame) -> float:
    """Area under the ROC curve of one score column; predictions must lie in [0, 1] (as upstream)."""
    p = _probabilities(y_pred)[:, 0]
    t = _numeric(y_true, "answers")[:, 0]
    return _auc(t, p, y_pred.columns[0])


def unscored_answer_rows(t: np.ndarray) -> np.ndarray:
    """Answer rows jigsaw-toxic did not score: labelled -1 throughout, so their label sum is negative."""
    return t.sum(axis=1) < 0


@metric("mean-column-wise-roc-auc", higher_is_better=True)
def mean_columnwise_roc_auc(
    y_true: pd.DataFrame, y_pred: pd.DataFrame, *, check_range: bool = False, drop_negative_answers: bool = False
) -> float:
    """Mean over columns of ROC-AUC (jigsaw-toxic, plant-pathology-2020, ranzcr).

    `drop_negative_answers`: drop answer rows whose label sum is negative (jigsaw-toxic's -1 = unscored).
    `check_range`: require predictions in [0, 1] (ranzcr does; plant-pathology and jigsaw do not).
    """
    p = _probabilities(y_pred) if check_range else _numeric(y_pred)
    t = _numeric(y_true, "answers")
    if drop_negative_answers:
        keep = ~unscored_answer_rows(t)
        t, p = t[keep], p[keep]
    return float(np.mean([_auc(t[:, j], p[:, j], col) for j, col in enumerate(y_pred.columns)]))


# ---------------------------------------------------------------- regression


@metric("root-mean-squared-error", higher_is_better=False)
def rmse(y_true: pd.DataFrame, y_pred: pd.DataFrame, *, bounds: list[float] | None = None) -> float:
    """Root mean squared error of one numeric column.

    `bounds` [low, high]: predictions outside them are invalid (petfinder v1: Pawpularity in [1, 100]).
    """
    t, p = _numeric(y_true, "answers")[:, 0], _numeric(y_pred)[:, 0]
    if bounds is not None and ((p < bounds[0]) | (p > bounds[1])).any():
        raise InvalidSubmission(f"column '{y_pred.columns[0]}' must lie in [{bounds[0]:g}, {bounds[1]:g}]")
    return float(np.sqrt(np.mean((t - p) ** 2)))


def _rmsle(t: np.ndarray, p: np.ndarray, column: str, *, boolean: bool = False) -> float:
    """v1 (scikit-learn 1.5.1) refuses any negative value; newer versions accept down to -1.

    `boolean`: the submission column held True/False, on which v1's NumPy took log(1 + x) in float16.
    """
    if (p < 0).any() or (t < 0).any():
        raise InvalidSubmission(f"column '{column}' must not be negative (RMSLE takes log(1 + x))")
    log_p = np.log1p(p.astype(np.float16)) if boolean else np.log1p(p)
    return float(np.sqrt(np.mean((np.log1p(t) - log_p) ** 2)))


@metric("root-mean-squared-log-error", higher_is_better=False)
def rmsle(y_true: pd.DataFrame, y_pred: pd.DataFrame) -> float:
    """Root mean squared logarithmic error of one non-negative column."""
    return _rmsle(_numeric(y_true, "answers")[:, 0], _numeric(y_pred)[:, 0], y_pred.columns[0],
                  boolean=pd.api.types.is_bool_dtype(y_pred.iloc[:, 0]))


@metric("mean-column-wise-rmsle", higher_is_better=False)
def mean_columnwise_rmsle(y_true: pd.DataFrame, y_pred: pd.DataFrame) -> float:
    """Mean over columns of RMSLE (nomad2018: formation and bandgap energy)."""
    t, p = _numeric(y_true, "answers"), _numeric(y_pred)
    return float(np.mean([_rmsle(t[:, j], p[:, j], col, boolean=pd.api.types.is_bool_dtype(y_pred[col]))
                          for j, col in enumerate(y_pred.columns)]))


# ---------------------------------------------------------------- text competitions (pearson, spearman, jaccard)


@metric("pearson-correlation", higher_is_better=True)
def pearson_correlation(y_true: pd.DataFrame, y_pred: pd.DataFrame) -> float:
    """Pearson correlation of one numeric column with the answers (upstream: scipy.stats.pearsonr).

    Constant predictions (the sample's zeros) or missing values give NaN, which v1 counts as a valid
    grade that wins nothing.
    """
    t = _numbers_or_nan(y_true)[:, 0]
    p = _numbers_or_nan(y_pred)[:, 0]
    if not np.isfinite(p).all() or np.all(p == p[0]) or np.all(t == t[0]):
        return float("nan")
    from scipy.stats import pearsonr

    return float(pearsonr(t, p)[0])


@metric("mean-column-wise-spearman", higher_is_better=True)
def mean_columnwise_spearman(y_true: pd.DataFrame, y_pred: pd.DataFrame) -> float:
    """Mean over columns of Spearman's rank correlation (google-quest; upstream: scipy.stats.spearmanr).

    A constant column, or one with a missing value, has an undefined correlation, so the mean is
    NaN: v1 counts that as a valid grade that wins nothing.
    """
    t, p = _numbers_or_nan(y_true), _numbers_or_nan(y_pred)
    from scipy.stats import spearmanr

    rhos = []
    for j in range(t.shape[1]):
        a, b = p[:, j], t[:, j]
        if np.isnan(a).any() or np.isnan(b).any() or np.all(a == a[0]) or np.all(b == b[0]):
            rhos.append(float("nan"))
        else:
            rhos.append(float(spearmanr(a, b).correlation))
    return float(np.mean(rhos))


def _texts_or_empty(series: pd.Series) -> list[str]:
    """v1's `fillna("").astype(str)`: missing cells are "", numbers their str() (a float column: "5.0")."""
    return series.astype(object).where(series.notna(), "").astype(str).tolist()


def _word_set(text: str) -> set[str]:
    return set(text.lower().split())


@metric("word-jaccard", higher_is_better=True, v1_result="python")
def mean_word_jaccard(y_true: pd.DataFrame, y_pred: pd.DataFrame) -> float:
    """Mean over rows of the Jaccard index of lower-cased whitespace word sets (tweet-sentiment).

    Missing cells are empty texts (v1: `fillna("")`, then `astype(str)`); a row where both the answer
    and the prediction are empty has no Jaccard index, and v1's division by zero made the whole
    submission invalid.
    """
    truth, preds = _texts_or_empty(_single(y_true)), _texts_or_empty(_single(y_pred))
    scores = []
    for i, (pred, answer) in enumerate(zip(preds, truth, strict=True)):
        a, b = _word_set(pred), _word_set(answer)
        common = len(a & b)
        union = len(a) + len(b) - common
        if union == 0:
            raise InvalidSubmission(f"row {i}: both the prediction and the answer are empty, so the Jaccard "
                                    "index is undefined (v1 fails on it); predict at least one word")
        scores.append(common / union)
    return float(np.mean(scores))


@metric("word-jaccard-samples", higher_is_better=True)
def word_jaccard_samples(y_true: pd.DataFrame, y_pred: pd.DataFrame) -> float:
    """Mean over rows of the Jaccard index of lower-cased whitespace word sets; both empty scores 0 (chaii).

    v1 (chaii) binarises the word sets and calls scikit-learn's `jaccard_score(average="samples")`:
    a row where answer and prediction are both empty scores 0, and a file without a single word on
    either side fails. Missing cells are empty texts (`fillna("")`); any other non-text cell (a column
    pandas read as numbers) made v1's `.lower()` fail, so it is invalid here.
    """
    sets = []
    for frame, what in ((y_true, "answers"), (y_pred, "submission")):
        values = _single(frame).to_numpy(dtype=object, na_value=None)
        bad = [v for v in values if v is not None and not isinstance(v, str)]
        if bad:
            raise InvalidSubmission(f"column '{frame.columns[0]}' of the {what} must hold text; found {bad[0]!r}")
        sets.append([set(v.lower().split()) if v is not None else set() for v in values])
    truth, preds = sets
    if not any(truth) and not any(preds):
        raise InvalidSubmission("no words in any prediction or answer: the score is undefined (v1 fails on it)")
    scores = np.zeros(len(truth), dtype=np.float64)
    for i, (t, p) in enumerate(zip(truth, preds, strict=True)):
        union = len(t | p)
        if union:
            scores[i] = len(t & p) / union
    return float(np.mean(scores)) if len(scores) else 0.0


# ---------------------------------------------------------------- tabular competitions (ventilator)


@metric("masked-mean-absolute-error", higher_is_better=False)
def masked_mae(y_true: pd.DataFrame, y_pred: pd.DataFrame, *, mask_column: str = "u_out") -> float:
    """Mean absolute error over the answer rows whose `mask_column` is 0 (ventilator: inspiration only).

    `y_true` holds the scored column, then `mask_column` (a context column of the answers). As in v1,
    only the predictions of scored rows are read: a missing or non-numeric value in a row with
    `mask_column` != 0 is ignored. No scored row: invalid (v1's scikit-learn failed on empty input).
    """
    scored = (pd.to_numeric(y_true[mask_column], errors="coerce") == 0).to_numpy()
    if not scored.any():
        raise InvalidSubmission(f"no answer row has {mask_column} = 0: nothing to score")
    t = _numeric(y_true[[c for c in y_true.columns if c != mask_column]][scored], "answers")[:, 0]
    p = _numeric(_single(y_pred)[scored].to_frame())[:, 0]
    return float(np.mean(np.abs(t - p)))


@metric("rounded-mean-absolute-error", higher_is_better=False)
def rounded_mae(y_true: pd.DataFrame, y_pred: pd.DataFrame) -> int:
    """Mean absolute error of one numeric column, rounded to the nearest integer (half to even).

    predict-volcanic v1 returns `int(round(MAE))`; a mean too large for an integer failed there.
    """
    t, p = _numeric(y_true, "answers")[:, 0], _numeric(y_pred)[:, 0]
    mae = float(np.mean(np.abs(p - t)))
    if not math.isfinite(mae):
        raise InvalidSubmission("the mean absolute error overflows (predictions far too large)")
    return int(round(mae))


@metric("mcrmse", higher_is_better=False)
def mean_columnwise_rmse(y_true: pd.DataFrame, y_pred: pd.DataFrame, *, columns: list[str] | None = None,
                         mask_column: str | None = None) -> float:
    """Mean over columns of RMSE (stanford-covid-vaccine's MCRMSE).

    `columns`: the scored ones among the submission's (default all); `mask_column`: a boolean column
    of y_true (context), only rows where it is true are scored and checked, as v1 filtered before
    scikit-learn saw the values.
    """
    if mask_column is not None:
        keep = y_true[mask_column].to_numpy(dtype=bool)
        y_true, y_pred = y_true.drop(columns=[mask_column])[keep], y_pred[keep]
    scored = list(columns) if columns else list(y_pred.columns)
    t, p = _numeric(y_true[scored], "answers"), _numeric(y_pred[scored])
    if not len(t):
        raise InvalidSubmission("no scored rows to compare")
    return float(np.mean(np.sqrt(np.mean((t - p) ** 2, axis=0))))


@metric("mean-group-log-mae", higher_is_better=False)
def mean_group_log_mae(y_true: pd.DataFrame, y_pred: pd.DataFrame, *, group_column: str = "type") -> float:
    """Mean over groups (y_true's context column `group_column`) of ln(MAE) (champs-scalar-coupling).

    As v1: no floor, so a group predicted exactly gives -inf (a valid score).
    Groups are taken in sorted order, as pandas' groupby gave them to v1.
    """
    groups = y_true[group_column].to_numpy()
    t = _numeric(y_true.drop(columns=[group_column]), "answers")[:, 0]
    p = _numeric(y_pred)[:, 0]
    if not len(t):
        raise InvalidSubmission("no rows to compare")
    err = np.abs(p - t)
    keys, codes = np.unique(groups.astype(str) if groups.dtype == object else groups, return_inverse=True)
    with np.errstate(divide="ignore"):
        logs = [np.log(np.mean(err[codes == k])) for k in range(len(keys))]
    return float(np.mean(logs))


# ---------------------------------------------------------------- tabular competitions (osic)


@metric("modified-laplace-log-likelihood", higher_is_better=True)
def modified_laplace_log_likelihood(y_true: pd.DataFrame, y_pred: pd.DataFrame, *, id_column: str = "Patient_Week",
                                    group_column: str = "Patient", last: int = 3) -> float:
    """Mean of -sqrt(2) * min(|FVC error|, 1000) / max(Confidence, 70) - ln(sqrt(2) * max(Confidence, 70)).

    osic v1 (row order `by-metric`: `y_true` is the whole answers file, `y_pred` the submission's
    id, FVC and Confidence): every submission id must be a test id and FVC and Confidence numeric
    columns; a missing Confidence counts as 0. Only each patient's `last` latest weeks with a known
    FVC are scored; submission rows of other weeks are dropped, and a subset is allowed. Both sides
    are then sorted by id and paired by position, as v1 pairs them (a repeated submission id shifts
    the pairing; lengths that cannot be paired are invalid). A missing FVC gives a NaN score (valid).
    """
    sub_ids = y_pred[id_column]
    unknown = ~sub_ids.isin(y_true[id_column].to_numpy())
    if unknown.any():
        raise InvalidSubmission(f"{id_column} {sub_ids[unknown].iloc[0]!r} in the submission is not a test id")
    for col in ("FVC", "Confidence"):
        if not pd.api.types.is_numeric_dtype(y_pred[col]):
            raise InvalidSubmission(f"column '{col}' must be numeric")
    sub = y_pred.assign(Confidence=y_pred["Confidence"].fillna(0))
    answers = y_true.dropna(subset=["FVC"])
    week = answers[id_column].map(lambda key: int(str(key).split("_")[-1]))
    answers = answers.assign(_week=week).sort_values("_week").groupby(group_column).tail(last)
    sub = sub[sub[id_column].isin(answers[id_column])].sort_values(by=id_column)
    answers = answers.sort_values(by=id_column)
    fvc_true = answers.loc[answers[id_column].isin(sub[id_column]), "FVC"].to_numpy(dtype=np.float64)
    fvc_pred = sub["FVC"].to_numpy(dtype=np.float64)
    sd = np.maximum(sub["Confidence"].to_numpy(dtype=np.float64), 70)
    try:
        delta = np.minimum(np.abs(fvc_true - fvc_pred), 1000)
        values = -np.sqrt(2) * delta / sd - np.log(np.sqrt(2) * sd)
    except ValueError:
        raise InvalidSubmission(f"{len(fvc_pred)} submission rows of scored weeks cannot be paired with the "
                                f"{len(fvc_true)} scored answers (an id repeated?)") from None
    return float(np.mean(values)) if values.size else math.nan  # v1: the mean of nothing, NaN (valid)


@metric("matthews-correlation", higher_is_better=True)
def matthews_correlation(y_true: pd.DataFrame, y_pred: pd.DataFrame) -> float:
    """Matthews correlation coefficient of one label column (nfl-player-contact-detection).

    As v1's scikit-learn 1.5.1 `matthews_corrcoef`: labels checked like its `_check_targets` (whole
    numbers or texts, not mixed), the multi-class form over the union of both sides' labels, and 0.0
    where a side has a single label (a zero denominator).
    """
    t, p = _v1_labels(_single(y_true), _single(y_pred), mixed_ok=False)
    _, codes = np.unique(np.concatenate([t, p]), return_inverse=True)
    k, n = int(codes.max()) + 1, len(t)
    confusion = np.zeros((k, k), dtype=np.float64)
    np.add.at(confusion, (codes[:n], codes[n:]), 1.0)
    t_sum, p_sum = confusion.sum(axis=1), confusion.sum(axis=0)
    n_correct, n_samples = np.trace(confusion), p_sum.sum()
    cov_tp = n_correct * n_samples - np.dot(t_sum, p_sum)
    cov_pp = n_samples**2 - np.dot(p_sum, p_sum)
    cov_tt = n_samples**2 - np.dot(t_sum, t_sum)
    if cov_pp * cov_tt == 0:
        return 0.0
    return cov_tp / np.sqrt(cov_tt * cov_pp)



def _inversions(ranks: list[int]) -> int:
    """Pairs i < j with ranks[i] > ranks[j] (a Fenwick tree over the ranks 0..n-1)."""
    n = len(ranks)
    tree = [0] * (n + 1)
    inversions = 0
    for seen, r in enumerate(ranks):
        k, below = r + 1, 0
        while k:
            below += tree[k]
            k -= k & -k
        inversions += seen - below
        k = r + 1
        while k <= n:
            tree[k] += 1
            k += k & -k
    return inversions


@metric("kendall-tau", higher_is_better=True, v1_result="python")
def kendall_tau_orders(y_true: pd.DataFrame, y_pred: pd.DataFrame) -> float:
    """Kendall tau over item orders pooled across rows: 1 - 4·Σ inversions / Σ n(n-1) (AI4Code).

    Each cell holds space-separated item ids (`astype(str)` first, so a missing cell is the one item
    "nan"). As in v1, a predicted order must have as many items as the true one and contain every
    true item, else the submission is invalid; the pooled score is v1's Python float.
    """
    inversions = pairs = 0
    for i, (truth, pred) in enumerate(zip(_as_text(_single(y_true)), _as_text(_single(y_pred)), strict=True)):
        true_items, pred_items = truth.split(), pred.split()
        if len(true_items) != len(pred_items):
            raise InvalidSubmission(f"row {i}: the predicted order has {len(pred_items)} items, the notebook "
                                    f"has {len(true_items)}; list every cell id exactly once")
        position = {item: k for k, item in reversed(list(enumerate(pred_items)))}  # first occurrence, as .index
        missing = [item for item in true_items if item not in position]
        if missing:
            raise InvalidSubmission(f"row {i}: cell id {missing[0]!r} is missing from the predicted order")
        inversions += _inversions([position[item] for item in true_items])
        pairs += len(true_items) * (len(true_items) - 1)
    if pairs == 0:
        raise InvalidSubmission("every order has fewer than two items: Kendall tau is undefined (v1 divides by zero)")
    return 1 - 4 * inversions / pairs


# ---------------------------------------------------------------- ranking (MAP@k)


def _average_precision_at_k(actual: set[str], predicted: list[str], k: int) -> float:
    """AP@k as v1 computes it: the first k predictions; a hit counts once, at its first rank."""
    hits, total = 0, 0.0
    for rank, item in enumerate(predicted[:k]):
        if item in actual and item not in predicted[:rank]:
            hits += 1
            total += hits / (rank + 1)
    return total / min(len(actual), k) if actual else 0.0


def _tokens(series: pd.Series) -> list[list[str]]:
    """v1's `astype(str).str.split(" ")`: one space separates, so "a  b" has an empty token; NaN is "nan"."""
    return [str(v).split(" ") for v in series.astype(str).to_numpy(dtype=object)]


@metric("map-at-k", higher_is_better=True)
def map_at_k(y_true: pd.DataFrame, y_pred: pd.DataFrame, *, k: int, id_column: str | None = None) -> float:
    """Mean over rows of AP@k of space-separated predictions against the answer's space-separated set.

    `id_column` (H&M v1, row order `by-metric`: `y_true`/`y_pred` hold the id and the label column):
    the submission's ids must include every answer id; rows of other ids are dropped, both sides are
    sorted by id and paired by position, pairs counted up to the shorter side (a repeated id shifts
    the pairing, as in v1). Without it, rows are already paired and the one column is scored.
    """
    if id_column is not None:
        missing = set(y_true[id_column]) - set(y_pred[id_column])
        if missing:
            raise InvalidSubmission(f"{len(missing)} {id_column}(s) of the test set are missing; the submission "
                                    f"must include every {id_column} of the sample submission")
        y_pred = y_pred[y_pred[id_column].isin(y_true[id_column])].sort_values(id_column)
        y_true = y_true.sort_values(id_column)
        y_true, y_pred = y_true.drop(columns=[id_column]), y_pred.drop(columns=[id_column])
    actual = [set(tokens) for tokens in _tokens(_single(y_true))]
    predicted = _tokens(_single(y_pred))
    pairs = zip(actual, predicted, strict=False)  # v1 pairs up to the shorter side
    return float(np.mean([_average_precision_at_k(a, p, k) for a, p in pairs]))


# ---------------------------------------------------------------- jigsaw-unintended-bias (bias-weighted AUC)


def _at_least_half(series: pd.Series, what: str) -> np.ndarray:
    """v1's `1 if x >= 0.5 else 0` on each cell: a missing value is 0, text is invalid."""
    if not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)):
        raise InvalidSubmission(f"column '{series.name}' must be numeric in the {what}; "
                                f"found {series[pd.to_numeric(series, errors='coerce').isna()].iloc[0]!r}")
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        return (values >= 0.5).astype(np.int64)


def _subset_auc(t: np.ndarray, p: np.ndarray, keep: np.ndarray, what: str) -> np.float64:
    if np.unique(t[keep]).size < 2:
        raise InvalidSubmission(f"AUC of {what} is undefined: its test rows hold only one class (v1 fails on it)")
    from sklearn.metrics import roc_auc_score

    return np.float64(roc_auc_score(t[keep], p[keep]))


@metric("jigsaw-bias-auc", higher_is_better=True)
def jigsaw_bias_auc(y_true: pd.DataFrame, y_pred: pd.DataFrame, *, identity_columns: list[str],
                    power: int = -5, weight: float = 0.25) -> float:
    """Jigsaw's bias-weighted AUC as v1 computes it: w * overall AUC + w * (power mean over identities of
    the subgroup, BPSN and BNSP AUCs), each of the three a generalised mean with p = -5.

    `y_true`: toxicity then the identity columns (context); `y_pred`: the toxicity prediction. As in v1,
    predictions, toxicity and identities are binarised at >= 0.5 (missing = 0) BEFORE the AUCs, so
    only which side of 0.5 a prediction falls counts: a known v1 departure from Kaggle's metric.
    """
    tox = _at_least_half(y_true.iloc[:, 0], "answers")
    pred = _at_least_half(_single(y_pred), "submission")
    everyone = np.ones(len(tox), dtype=bool)
    overall = _subset_auc(tox, pred, everyone, "the whole test set")
    per_identity = []
    for col in identity_columns:
        member = _at_least_half(y_true[col], "answers") == 1
        per_identity.append([
            _subset_auc(tox, pred, member, f"subgroup '{col}'"),
            _subset_auc(tox, pred, (member & (tox == 0)) | (~member & (tox == 1)), f"BPSN '{col}'"),
            _subset_auc(tox, pred, (member & (tox == 1)) | (~member & (tox == 0)), f"BNSP '{col}'"),
        ])
    means = [(sum(aucs[k] ** power for aucs in per_identity) / len(identity_columns)) ** (1 / power)
             for k in range(3)]
    return weight * overall + sum(weight * m for m in means)



@metric("mean-levenshtein-distance", higher_is_better=False)
def mean_levenshtein_distance(y_true: pd.DataFrame, y_pred: pd.DataFrame, *, as_string: bool = False) -> float:
    """Mean over rows of the character edit distance between prediction and answer (billion-word).

    v1 calls python-Levenshtein's `distance` on the cells as pandas read them, so an empty cell
    (NaN) or a column read as numbers failed there: invalid here with the reason. rapidfuzz computes
    the same integer distances (python-Levenshtein is built on it); the mean is v1's NumPy float.
    `as_string`: both columns cast with `astype(str)` first, so an empty cell is the text "nan" and
    a number its pandas text (bms v1).
    """
    from rapidfuzz.distance import Levenshtein

    if as_string:
        truth, preds = _as_text(_single(y_true)), _as_text(_single(y_pred))
        return float(np.mean([Levenshtein.distance(t, p) for t, p in zip(truth, preds, strict=True)]))
    truth = _single(y_true).to_numpy(dtype=object, na_value=None)
    preds = _single(y_pred).to_numpy(dtype=object, na_value=None)
    for values, frame, what in ((preds, y_pred, "submission"), (truth, y_true, "answers")):
        bad = [i for i, v in enumerate(values) if not isinstance(v, str)]
        if bad:
            raise InvalidSubmission(f"column '{frame.columns[0]}' of the {what} must hold text in every row; "
                                    f"row {bad[0]} has {values[bad[0]]!r}")
    return float(np.mean([Levenshtein.distance(t, p) for t, p in zip(truth, preds, strict=True)]))


@metric("kl-divergence", higher_is_better=False)
def kl_divergence(y_true: pd.DataFrame, y_pred: pd.DataFrame, *, epsilon: float = 1e-15) -> float:
    """Kaggle's KL divergence (hms v1): answers' vote counts divided by their row sum, predictions
    clipped to [epsilon, 1 - epsilon], per cell y·ln(y/p) where y > 0 (else 0), summed per row, mean over rows.

    v1's checks, in its order: each row's predictions summed (missing cells skipped) must round to 1 at
    5 decimals, every value must lie in [0, 1], and the sums must be close to 1 (np.allclose). A missing
    prediction passes those checks when the rest of its row sums to 1; its cell then adds nothing to the
    row's sum (pandas skips it), as in v1.
    """
    # Columns of y_pred beyond y_true's are the submission's other non-id columns (row order id-set-sorted):
    # v1 did not score them but checked them with the rest, as numbers in [0, 1] inside the row sums.
    p = _numbers_or_nan(y_pred)
    k = y_true.shape[1]
    sums = np.nansum(p[:, :k], axis=1)
    off = [i for i, s in enumerate(sums.tolist()) if round(s, 5) != 1]
    if off:
        raise InvalidSubmission(f"each row's probabilities must add to 1 (rounded to 5 decimals); row {off[0]} "
                                f"adds to {sums[off[0]]:.9g}")
    if (p < 0).any() or (p > 1).any():
        raise InvalidSubmission("every value of every non-id column must lie in [0, 1]")
    if not np.allclose(np.nansum(p, axis=1), 1):
        raise InvalidSubmission("each row's values over all non-id columns must add to 1")
    p = p[:, :k]
    votes = _numeric(y_true, "answers")
    y = votes / votes.sum(axis=1, keepdims=True)
    clipped = np.clip(p, epsilon, 1 - epsilon)
    with np.errstate(divide="ignore", invalid="ignore"):
        cells = np.where(y != 0, y * np.log(y / clipped), 0.0)
    return np.average(np.nansum(cells, axis=1))


@metric("mean-angular-error", higher_is_better=False)
def mean_angular_error(y_true: pd.DataFrame, y_pred: pd.DataFrame) -> float:
    """Mean angle (radians) between true and predicted directions given as (azimuth, zenith) in radians
    (icecube; the host's formula): unit vectors, their dot product clipped to [-1, 1], arccos, mean.

    v1 needs both columns numeric (not booleans or texts) and finite.
    """
    for col in y_pred.columns:
        values = y_pred[col]
        if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
            raise InvalidSubmission(f"column '{col}' must hold numbers")
        if not np.isfinite(values.to_numpy(dtype=np.float64, na_value=np.nan)).all():
            raise InvalidSubmission(f"column '{col}' has missing or infinite values")
    t, p = _numeric(y_true, "answers"), y_pred.to_numpy(dtype=np.float64)
    az1, zen1, az2, zen2 = t[:, 0], t[:, 1], p[:, 0], p[:, 1]
    dot = np.sin(zen1) * np.sin(zen2) * (np.cos(az1) * np.cos(az2) + np.sin(az1) * np.sin(az2)) \
        + np.cos(zen1) * np.cos(zen2)
    return np.average(np.abs(np.arccos(np.clip(dot, -1, 1))))



def _nq_answer(pred: str, row: int):
    """A tensorflow2-QA prediction as v1 parsed it: (start, end) from "start:end", or YES, NO, ""."""
    if ":" in pred and len(pred.split(":")) == 2:
        start, end = pred.split(":")
        try:
            return int(start), int(end)
        except ValueError:
            raise InvalidSubmission(f"row {row}: {pred!r} is not 'start_token:end_token' with whole numbers") from None
    if pred in ("YES", "NO", ""):
        return pred
    raise InvalidSubmission(f"row {row}: {pred!r} is not 'start:end', YES, NO or empty")


@metric("answer-presence-micro-f1", higher_is_better=True)
def answer_presence_micro_f1(y_true: pd.DataFrame, y_pred: pd.DataFrame, *, answered_f1: bool = False) -> float:
    """tensorflow2-QA as v1 grades it: micro-F1 of "answered" flags over two rows per example (= accuracy).

    `y_true` holds the answer records (`example_id`, `annotations`), `y_pred` the submission
    (`example_id` = `<id>_long` / `<id>_short`, `PredictionString`). Per row, the prediction is 1 when
    non-empty; the truth is 1 when a non-empty prediction is one of the valid answers (long: the long
    answer's span; short: every short span, plus YES/NO), or when an empty prediction leaves a valid
    answer unanswered. Only the first annotation counts. With binary labels scikit-learn's micro-F1
    (v1) equals the share of rows where both flags agree; the value is the same NumPy float.

    `answered_f1` (the corrected grade): F1 of the answered class, as Kaggle defined the metric and v1's
    own docstring describes it: TP a right answer, FP a wrong one or an answer where none exists, FN no
    answer where one exists; 2·TP / (2·TP + FP + FN), 0 when there is nothing to count.
    """
    if len(y_pred) != 2 * len(y_true):
        raise InvalidSubmission(f"has {len(y_pred)} rows, expected {2 * len(y_true)} (a _long and a _short row "
                                "per example)")
    sub = y_pred.astype(object).fillna("").astype(str)  # as v1: empty cells are empty answers, all text
    annotations = {str(eid): ann[0] for eid, ann in zip(y_true["example_id"], y_true["annotations"], strict=True)}
    expected = {f"{eid}{suffix}" for eid in annotations for suffix in ("_long", "_short")}
    ids = sub["example_id"].tolist()
    if set(ids) != expected:
        unknown = sorted(set(ids) - expected)[:1] or sorted(expected - set(ids))[:1]
        raise InvalidSubmission(f"example_ids must be each test example's <id>_long and <id>_short; e.g. {unknown[0]!r}"
                                " is extra or missing")
    if len(set(ids)) != len(ids):
        raise InvalidSubmission("example_ids are not unique")
    agree = tp = fp = fn = 0
    for row, (sample_id, raw) in enumerate(zip(ids, sub["PredictionString"].tolist(), strict=True)):
        pred = _nq_answer(raw.strip(), row)
        if sample_id.endswith("_long"):
            ann = annotations[sample_id.split("_long")[0]]
            span = ann["long_answer"]
            valid = [(int(span["start_token"]), int(span["end_token"]))] if span["start_token"] != -1 else []
        elif sample_id.endswith("_short"):
            ann = annotations[sample_id.split("_short")[0]]
            valid = [(int(s["start_token"]), int(s["end_token"])) for s in ann["short_answers"]]
            if ann["yes_no_answer"] != "NONE":
                valid.append(ann["yes_no_answer"])
        else:  # unreachable once the id set matched; v1 checks it here
            raise InvalidSubmission(f"example_id {sample_id!r} does not end with '_long' or '_short'")
        flag = 1 if raw.strip() else 0
        truth = (1 if pred in valid else 0) if pred else (1 if valid else 0)
        agree += truth == flag
        tp, fp, fn = tp + (flag and truth), fp + (flag and not truth), fn + (truth and not flag)
    if answered_f1:
        return 0.0 if tp + fp + fn == 0 else float(2 * tp / (2 * tp + fp + fn))
    n = len(ids)
    return float(np.float64(2 * agree) / np.float64(2 * n))  # v1: 2·TP / (2·TP + FP + FN) over both classes


def _int_sequences(series: pd.Series, what: str) -> list[list[int]]:
    """Cells as v1 read them (`astype(str)`, so a missing cell is "nan"), split on whitespace into ints."""
    out = []
    for row, text in enumerate(str(v) for v in series.tolist()):  # pandas 3's astype(str) keeps NaN missing
        try:
            out.append([int(tok) for tok in text.split()])
        except ValueError:
            raise InvalidSubmission(f"{what} row {row}: 'Sequence' must be whole numbers separated by spaces, "
                                    f"got {text[:40]!r}") from None
    return out


@metric("levenshtein-error-rate", higher_is_better=False)
def levenshtein_error_rate(y_true: pd.DataFrame, y_pred: pd.DataFrame) -> float:
    """Sum over rows of the edit distance between the true and predicted integer sequences (tokens,
    not characters), divided by the total length of the true sequences (multi-modal-gesture v1)."""
    from rapidfuzz.distance import Levenshtein

    truth = _int_sequences(_single(y_true), "answers")
    preds = _int_sequences(_single(y_pred), "submission")
    total = np.sum([Levenshtein.distance(t, p) for t, p in zip(truth, preds, strict=True)])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.int64(total) / sum(len(t) for t in truth)


HAVERSINE_RADIUS_M = 6_371_000


@metric("mean-haversine-p50-p95", higher_is_better=False)
def mean_haversine_p50_p95(y_true: pd.DataFrame, y_pred: pd.DataFrame, *, trip_column: str = "tripId",
                           lat_column: str = "LatitudeDegrees", lng_column: str = "LongitudeDegrees") -> float:
    """smartphone-decimeter v1 (row order `by-metric`): per trip (in order of first appearance in the
    answers), haversine distances in metres between the answers' rows and the submission's rows of that
    trip, paired by position in each file; the trip scores the mean of the distances' 50th and 95th
    percentiles (linear), and the score is the mean over trips.

    v1 needs as many rows as the answers overall and per trip; it never compares UnixTimeMillis. A
    missing coordinate makes the score NaN (valid in v1, no medal).
    """
    if len(y_pred) != len(y_true):
        raise InvalidSubmission(f"has {len(y_pred)} rows, expected {len(y_true)}")
    coords = {}
    for col in (lat_column, lng_column):
        values = y_pred[col]
        if not (pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)):
            numbers = pd.to_numeric(values, errors="coerce")
            bad = numbers.isna() & values.notna()
            if bad.any():
                raise InvalidSubmission(f"column '{col}' must be numeric; found {values[bad].iloc[0]!r}")
            values = numbers
        coords[col] = values.to_numpy(dtype=np.float64, na_value=np.nan)
    pred_trips = y_pred[trip_column].to_numpy(dtype=object)
    true_trips = y_true[trip_column].to_numpy(dtype=object)
    scores, wrong = [], 0
    for trip in pd.unique(true_trips):
        t_rows, p_rows = true_trips == trip, pred_trips == trip
        if t_rows.sum() != p_rows.sum():
            wrong += 1
            continue
        lat1, lng1 = np.deg2rad(coords[lat_column][p_rows]), np.deg2rad(coords[lng_column][p_rows])
        lat2 = np.deg2rad(y_true[lat_column].to_numpy(dtype=np.float64)[t_rows])
        lng2 = np.deg2rad(y_true[lng_column].to_numpy(dtype=np.float64)[t_rows])
        a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lng2 - lng1) / 2) ** 2
        d = 2 * HAVERSINE_RADIUS_M * np.arcsin(np.sqrt(a))
        scores.append(np.mean([np.quantile(d, 0.50), np.quantile(d, 0.95)]))
    if wrong:
        raise InvalidSubmission(f"{wrong} trip(s) have a different number of rows than the test set's "
                                f"(one row per answer row of each tripId)")
    return np.mean(scores)


# ---------------------------------------------------------------- segmentation masks (run-length encoded)
# The five segmentation graders of v1 pair rows their own way, so their specs use row order `by-metric`:
# `y_true` is the whole answers file (with the image sizes) and `y_pred` the submission's id and mask
# columns. Masks are compared as runs (hpc_mle.rle), never as full images: the counts are the same
# integers v1 summed over its decoded masks, so the scores are the same floats.


def _text_cells(series: pd.Series, what: str, *, blank_is_empty: bool, expected: str = "run-length text") -> list:
    """Cells as v1 saw them: texts stay; missing cells become "" where v1 called `fillna("")`."""
    values = series.to_numpy(dtype=object, na_value=np.nan)
    out = []
    for i, value in enumerate(values):
        if isinstance(value, str):
            out.append(value)
        elif blank_is_empty and isinstance(value, float) and math.isnan(value):
            out.append("")
        else:
            raise InvalidSubmission(f"{what} row {i + 1}: expected {expected}, found {value!r:.30}")
    return out


def _runs(text: str, n_pixels: int, where: str):
    from hpc_mle import rle

    try:
        return rle.parse(text, n_pixels)
    except rle.RLEError as exc:
        raise InvalidSubmission(f"{where}: {exc}") from None


def _answer_runs(text, n_pixels: int):
    from hpc_mle import rle

    return rle.parse("" if isinstance(text, float) and math.isnan(text) else text, n_pixels)


def _sorted_by_id(frame: pd.DataFrame, column: str, what: str) -> pd.DataFrame:
    """Rows sorted by `column` (v1's `sort_values`; test ids are unique, so any sort pairs the same)."""
    try:
        return frame.sort_values(column, kind="stable").reset_index(drop=True)
    except TypeError:
        raise InvalidSubmission(f"the {what}'s '{column}' column mixes text and numbers") from None


def _ids_as_v1(series: pd.Series) -> np.ndarray:
    return series.to_numpy() if pd.api.types.is_numeric_dtype(series) else series.to_numpy(dtype=object)


def _same_sorted_ids(sub: pd.Series, answers: pd.Series) -> bool:
    """v1: `(submission[id].values != answers[id].values).any()` is False, after both are sorted."""
    a, b = _ids_as_v1(sub), _ids_as_v1(answers)
    if (a.dtype == object) != (b.dtype == object):
        return False
    return not bool((a != b).any())


def _dice(inter: int, a: int, b: int, both_empty: float) -> float:
    return both_empty if a + b == 0 else np.float64(2 * inter / (a + b))


@metric("global-dice", higher_is_better=True)
def global_dice(y_true: pd.DataFrame, y_pred: pd.DataFrame, *, id_column: str = "record_id",
                mask_column: str = "encoded_pixels", empty_mark: str = "-") -> float:
    """Dice of all images' pixels pooled, 2|X and Y| / (|X| + |Y|); NaN (valid) when both are empty.

    contrails v1: as many rows as the answers; both sorted by record_id, which must then be equal row
    for row; a mask is `empty_mark` when empty ("-" exactly; an empty cell is invalid); each mask is
    decoded with the answers' height and width, column-major.
    """
    if len(y_pred) != len(y_true):
        raise InvalidSubmission(f"has {len(y_pred)} rows, expected {len(y_true)} (one per test record)")
    answers = _sorted_by_id(y_true, id_column, "answers")
    sub = _sorted_by_id(y_pred, id_column, "submission")
    if not _same_sorted_ids(sub[id_column], answers[id_column]):
        raise InvalidSubmission(f"the {id_column} values differ from the test set's")
    preds = _text_cells(sub[mask_column], mask_column, blank_is_empty=False)
    sizes = answers["height"].astype(int).to_numpy() * answers["width"].astype(int).to_numpy()
    inter = total_true = total_pred = 0
    for i, (truth, pred, n) in enumerate(zip(answers[mask_column], preds, sizes.tolist(), strict=True)):
        t = _answer_runs("" if truth == empty_mark else truth, n)
        p = _runs("" if pred == empty_mark else pred, n, f"{mask_column} of {id_column} {sub[id_column][i]!r}")
        inter, total_true, total_pred = inter + _overlap(t, p), total_true + t.size, total_pred + p.size
    return _dice(inter, total_true, total_pred, math.nan)


def _overlap(a, b) -> int:
    from hpc_mle import rle

    return rle.overlap(a, b)


@metric("mean-dice", higher_is_better=True)
def mean_dice(y_true: pd.DataFrame, y_pred: pd.DataFrame, *, id_column: str = "id", mask_column: str = "predicted",
              answer_column: str = "encoding", height_column: str = "height_pixels",
              width_column: str = "width_pixels") -> float:
    """Mean over images of Dice, 2|X and Y| / (|X| + |Y|), 1 where both masks are empty.

    hubmap v1: as many rows as the answers and the same set of ids; rows paired after sorting by id; an
    empty cell is an empty mask; masks decoded with the answers' image sizes.
    """
    if len(y_pred) != len(y_true):
        raise InvalidSubmission(f"has {len(y_pred)} rows, expected {len(y_true)} (one per test image)")
    if set(y_pred[id_column].tolist()) != set(y_true[id_column].tolist()):
        raise InvalidSubmission(f"the {id_column} values differ from the test set's")
    answers = _sorted_by_id(y_true, id_column, "answers")
    sub = _sorted_by_id(y_pred, id_column, "submission")
    preds = _text_cells(sub[mask_column], mask_column, blank_is_empty=True)
    scores = []
    for i, (truth, pred) in enumerate(zip(answers[answer_column], preds, strict=True)):
        n = int(answers[height_column][i]) * int(answers[width_column][i])
        t, p = _answer_runs(truth, n), _runs(pred, n, f"{mask_column} of {id_column} {sub[id_column][i]!r}")
        scores.append(_dice(_overlap(t, p), t.size, p.size, 1.0))
    return np.mean(scores)


# v1's thresholds, as NumPy's arange gives them (0.6000000000000001, ...): an IoU of 0.6 does not pass 0.6.
IOU_THRESHOLDS = np.arange(0.5, 1.0, 0.05)


def _salt_iou(inter: int, t: int, p: int, n: int) -> float:
    """v1's IoU of one image (a 2x2 histogram of the two masks). A constant mask's pixels all land in
    NumPy's upper bin, so an empty prediction counts as the whole image against a non-empty truth."""
    if p == 0:
        inter, p = t, n
    return np.float64(inter) / np.float64(t + p - inter)


@metric("mean-iou-threshold-precision", higher_is_better=True)
def mean_iou_threshold_precision(y_true: pd.DataFrame, y_pred: pd.DataFrame, *, id_column: str = "id",
                                 mask_column: str = "rle_mask", height: int = 101, width: int = 101) -> float:
    """Mean over images of the share of IoU thresholds 0.50, 0.55, ..., 0.95 that the mask's IoU exceeds.

    tgs v1: an empty truth scores 1 for an empty prediction and 0 otherwise; otherwise the IoU comes
    from v1's histograms (an empty prediction against a truth covering over half the image passes some
    thresholds). As many rows as the answers, every cell text (a missing cell is ""), rows paired by
    sorted id. v1 ran this under pandas 2.2; its `applymap` is gone in pandas 3, which made every
    submission invalid there: we grade as under pandas 2.2.
    """
    if len(y_pred) != len(y_true):
        raise InvalidSubmission(f"has {len(y_pred)} rows, expected {len(y_true)} (one per test image)")
    ids = _text_cells(y_pred[id_column], id_column, blank_is_empty=True, expected="a text id")
    sub = _sorted_by_id(y_pred.assign(**{id_column: ids}), id_column, "submission")
    answers = y_true.assign(**{id_column: _text_cells(y_true[id_column], id_column, blank_is_empty=True,
                                                      expected="a text id")})
    answers = _sorted_by_id(answers, id_column, "answers")
    preds = _text_cells(sub[mask_column], mask_column, blank_is_empty=True)
    if not _same_sorted_ids(sub[id_column], answers[id_column]):
        raise InvalidSubmission(f"the {id_column} values differ from the test set's")
    n = height * width
    scores = np.empty(len(preds), dtype=np.float64)
    for i, (truth, pred) in enumerate(zip(answers[mask_column], preds, strict=True)):
        t, p = _answer_runs(truth, n), _runs(pred, n, f"{mask_column} of {id_column} {sub[id_column][i]!r}")
        if t.size == 0:
            scores[i] = 1.0 if p.size == 0 else 0.0
        else:
            iou = _salt_iou(_overlap(t, p), t.size, p.size, n)
            scores[i] = int((iou > IOU_THRESHOLDS).sum()) / len(IOU_THRESHOLDS)
    return np.mean(scores)


@metric("mean-pixel-f05", higher_is_better=True)
def mean_pixel_f05(y_true: pd.DataFrame, y_pred: pd.DataFrame, *, id_column: str = "Id",
                   mask_column: str = "Predicted", beta: float = 0.5) -> float:
    """Mean over rows of the pixel F-beta (beta 0.5) of the masks, 0 where neither has a pixel.

    vesuvius v1: rows paired by position (same count), each submission row's Id equal to the answers'
    row's; the mask text is row-major over the answers' width x height; F-beta as scikit-learn 1.5.1
    computes it from the counts: (1 + b^2) tp / (b^2 |truth| + |prediction|).
    """
    if len(y_pred) != len(y_true):
        raise InvalidSubmission(f"has {len(y_pred)} rows, expected {len(y_true)} (one per test fragment)")
    beta2 = beta**2
    scores = []
    for i in range(len(y_true)):
        want, got = y_true[id_column].iloc[i], y_pred[id_column].iloc[i]
        if not (isinstance(got, str) and got == want):
            raise InvalidSubmission(f"row {i + 1}: {id_column} must be {want!r} (rows in the test set's order), "
                                    f"found {got!r:.30}")
        pred = _text_cells(y_pred[mask_column].iloc[[i]], mask_column, blank_is_empty=False)[0]
        n = int(y_true["width"].iloc[i]) * int(y_true["height"].iloc[i])
        t, p = _answer_runs(y_true[mask_column].iloc[i], n), _runs(pred, n, f"{mask_column} of row {i + 1}")
        denom = beta2 * np.float64(t.size) + np.float64(p.size)
        scores.append((1 + beta2) * np.float64(_overlap(t, p)) / denom if denom else 0.0)
    return np.mean(scores)


UNIT_CUBE_DIAGONAL = np.sqrt(3)


def _nanmean(values: list) -> np.float64:
    """NumPy's nanmean, as v1 took it; NaN (a valid score in v1) where every value is NaN or none is left."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.array(values, dtype=np.float64))


def _boundary(volume: np.ndarray) -> np.ndarray:
    """Voxels of the mask with a face neighbour outside it (or outside the volume): the nearest mask voxel
    to any point not in the mask is one of these (a step towards the point from any other would be
    closer), so a Hausdorff distance needs no others."""
    from scipy.ndimage import binary_erosion

    return volume & ~binary_erosion(volume, border_value=0)


def _directed_hausdorff(a: np.ndarray, b: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> float:
    """SciPy's directed Hausdorff distance from mask `a` to mask `b` (voxel index + `offset`, divided by
    `scale`), computed on a's voxels not in b (the others are at distance 0) and b's boundary: the same
    pair attains the maximum. v1 called `directed_hausdorff`, whose early exit is slowest exactly when
    the prediction is close to the truth; a k-d tree finds each nearest neighbour with the same
    floating-point sums (checked equal, bit for bit), in seconds on a full-size test set."""
    from scipy.spatial import cKDTree

    if a.shape == b.shape:
        points = np.argwhere(a & ~b)
    else:  # v1 stacked the submission's rows as its ids said: a volume may differ in shape from the truth's
        points = np.argwhere(a)
        inside = (points < np.asarray(b.shape)).all(axis=1)
        covered = np.zeros(len(points), dtype=bool)
        covered[inside] = b[tuple(points[inside].T)]
        points = points[~covered]
    if not len(points):
        return 0.0
    tree = cKDTree((np.argwhere(_boundary(b)) + offset) / scale, leafsize=32, balanced_tree=False, compact_nodes=False)
    nearest, _ = tree.query((points + offset) / scale, k=1)
    return nearest.max()


def _hausdorff_3d(pred: np.ndarray, truth: np.ndarray, boxes: list) -> float:
    """v1's normalised symmetric Hausdorff distance of two stacked volumes (its rules first). Volumes of
    one shape are first cut to the box holding both masks (`boxes`: each mask's [low, high] corners, None
    when empty); nothing lies outside it, so sums and equality are the same, and coordinates keep their
    place through `offset`."""
    scale = np.asarray(truth.shape)  # v1 divides both sets of coordinates by the true volume's shape
    offset = np.zeros(3, dtype=np.int64)
    found = [box for box in boxes if box is not None]
    if not found:
        return math.nan
    if pred.shape == truth.shape:
        offset = np.min([box[0] for box in found], axis=0)
        high = np.max([box[1] for box in found], axis=0)
        cut = tuple(slice(lo, hi + 1) for lo, hi in zip(offset, high, strict=True))
        pred, truth = np.ascontiguousarray(pred[cut]), np.ascontiguousarray(truth[cut])
    p_sum, t_sum = int(pred.sum()), int(truth.sum())
    if np.array_equal(pred, truth):
        return 0
    if p_sum == 0 or t_sum == 0 or p_sum > 10 * t_sum:
        return 1
    forward = _directed_hausdorff(truth, pred, scale, offset)
    backward = _directed_hausdorff(pred, truth, scale, offset)
    return max(forward, backward) / UNIT_CUBE_DIAGONAL


def _volumes(ids: list[str], masks: list, sizes: list[tuple[int, int]], what: str) -> tuple[list[str], dict]:
    """v1's grouping: rows sorted by id (stable), masks of one slice id OR-ed, slices stacked per
    case_day (the id before "_slice_"). Returns the case_days in that order and, per case_day, the
    (slice rows, shape) to build its volume from."""
    for value in ids:
        if not isinstance(value, str):
            raise InvalidSubmission(f"the {what}'s id column must be text like 'case1_day2_slice_0003', found {value!r}")
    order = np.argsort(np.asarray(ids, dtype=object), kind="stable")
    days: dict[str, list[list[int]]] = {}
    last_slice = None
    for row in order.tolist():
        if ids[row] != last_slice:
            days.setdefault(ids[row].split("_slice_")[0], []).append([])
            last_slice = ids[row]
        days[ids[row].split("_slice_")[0]][-1].append(row)
    for day, slices in days.items():
        shapes = {sizes[r] for rows in slices for r in rows}
        if len(shapes) > 1:
            raise InvalidSubmission(f"the {what}'s slices of {day!r} cannot be stacked: their rows stand where "
                                    f"the test set has images of different sizes {sorted(shapes)} (rows out of order?)")
    return list(days), days


def _stack(slices: list[list[int]], runs: list, sizes: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray | None]:
    """The (slices, height, width) volume, each slice the OR of its rows' column-major masks, and the
    [low, high] corners of the box holding them (None when empty), found from the runs."""
    from hpc_mle import rle

    height, width = sizes[slices[0][0]]
    n = height * width
    starts = np.concatenate([runs[r].starts + k * n for k, rows in enumerate(slices) for r in rows])
    ends = np.concatenate([runs[r].ends + k * n for k, rows in enumerate(slices) for r in rows])
    volume = rle.paint(starts, ends, len(slices) * n).reshape(len(slices), width, height).transpose(0, 2, 1)
    if not starts.size:
        return volume, None
    first, last = starts % n, (ends - 1) % n  # a run never leaves its slice
    col_lo, col_hi = first // height, last // height
    one_column = col_lo == col_hi
    row_lo = np.where(one_column, first % height, 0)
    row_hi = np.where(one_column, last % height, height - 1)
    return volume, np.array([[starts.min() // n, row_lo.min(), col_lo.min()],
                             [starts.max() // n, row_hi.max(), col_hi.max()]])


@metric("dice-hausdorff-combo", higher_is_better=True)
def dice_hausdorff_combo(y_true: pd.DataFrame, y_pred: pd.DataFrame, *, id_column: str = "id",
                         mask_column: str = "predicted", same_rows: bool = False) -> float:
    """0.4 x mean 2D Dice + 0.6 x (1 - mean normalised 3D Hausdorff distance per case_day).

    uw-madison v1 pairs rows by position only: the submission's row i is decoded with the answers' row
    i's image size and compared with it (Dice; both empty: skipped); extra rows are ignored and a
    shorter file is scored on its first rows. For the 3D part each file is grouped by its own ids
    (slices OR-ed over classes, stacked per case_day in id order) and the case_days are paired in that
    order. `same_rows` (the corrected grade) first requires the answers' row count and ids, in order.
    """
    if same_rows:
        if len(y_pred) != len(y_true):
            raise InvalidSubmission(f"has {len(y_pred)} rows, expected {len(y_true)} (one per id and class)")
        if y_pred[id_column].astype(str).tolist() != y_true[id_column].astype(str).tolist():
            raise InvalidSubmission("rows must list the test set's ids in its order")
    n = min(len(y_pred), len(y_true))
    sizes = list(zip(y_true["image_height"].astype(int).tolist(), y_true["image_width"].astype(int).tolist(), strict=True))
    preds = _text_cells(y_pred[mask_column], mask_column, blank_is_empty=True)[:n]
    pred_runs = [_runs(text, h * w, f"{mask_column} of row {i + 1}") for i, (text, (h, w)) in enumerate(zip(preds, sizes, strict=False))]
    true_runs = [_answer_runs(text, h * w) for text, (h, w) in zip(y_true[mask_column], sizes, strict=True)]
    dice = _nanmean([_dice(_overlap(t, p), t.size, p.size, math.nan) for p, t in zip(pred_runs, true_runs, strict=False)])
    pred_ids = y_pred[id_column].to_numpy(dtype=object, na_value=np.nan)[:n].tolist()
    pred_days, pred_slices = _volumes(pred_ids, pred_runs, sizes[:n], "submission")
    true_days, true_slices = _volumes(y_true[id_column].astype(str).tolist(), true_runs, sizes, "answers")
    distances = []
    for p, t in zip(pred_days, true_days, strict=False):
        (pred, pred_box), (truth, true_box) = _stack(pred_slices[p], pred_runs, sizes), _stack(true_slices[t], true_runs, sizes)
        distances.append(_hausdorff_3d(pred, truth, [pred_box, true_box]))
    hausdorff = _nanmean(distances)
    return 0.4 * dice + 0.6 * (1 - hausdorff)


# ---------------------------------------------------------------- medical images (issue 14)

# rsna-2022-cervical: Kaggle's per-study targets in v1's column order, and the weight of each target
# when its label is negative / positive (patient_overall counts seven times a vertebra).
CERVICAL_TARGETS = ("patient_overall", "C1", "C2", "C3", "C4", "C5", "C6", "C7")
CERVICAL_WEIGHTS_NEGATIVE = (7, 1, 1, 1, 1, 1, 1, 1)
CERVICAL_WEIGHTS_POSITIVE = (14, 2, 2, 2, 2, 2, 2, 2)


def _per_study(frame: pd.DataFrame, study_column: str, target_column: str, values: np.ndarray) -> np.ndarray:
    """One row per study (sorted), one column per target in CERVICAL_TARGETS order: v1 pivots its long
    rows back to Kaggle's wide table, so the arrays (and their summation order) are the same as v1's."""
    long = pd.DataFrame({"study": frame[study_column].to_numpy(), "target": frame[target_column].to_numpy(),
                         "value": values})
    wide = long.pivot(index="study", columns="target", values="value").reset_index().sort_values("study")
    missing = [t for t in CERVICAL_TARGETS if t not in wide.columns]
    if missing:
        raise ValueError(f"answers lack the target(s) {missing} for some study")
    return wide[list(CERVICAL_TARGETS)].to_numpy()


@metric("weighted-multi-label-log-loss", higher_is_better=False)
def weighted_multi_label_log_loss(y_true: pd.DataFrame, y_pred: pd.DataFrame, *,
                                  study_column: str = "StudyInstanceUID",
                                  target_column: str = "prediction_type", epsilon: float = 1e-15) -> float:
    """rsna-2022-cervical's weighted binary log loss, as v1 computes it.

    Predictions (clipped to [eps, 1 - eps], eps = 1e-15, not scikit-learn's) are pivoted to one row per
    study; each of the 8 targets gets weight 7/1 (negative) or 14/2 (positive, patient_overall first);
    a study's loss is its weighted sum over its weight sum; the score is the mean over studies.
    `y_true`: the label, then the study and target columns of each row (context); `y_pred`: the label.
    """
    p = _probabilities(y_pred)[:, 0]
    t = _numeric(y_true.iloc[:, [0]], "answers")[:, 0].astype(np.int64)
    truth = _per_study(y_true, study_column, target_column, t)
    pred = np.clip(_per_study(y_true, study_column, target_column, p), epsilon, 1 - epsilon)
    loss = -(truth * np.log(pred) + (1 - truth) * np.log(1 - pred))
    positive = np.array(CERVICAL_WEIGHTS_POSITIVE, dtype=np.float32)  # v1's weights are float32
    negative = np.array(CERVICAL_WEIGHTS_NEGATIVE, dtype=np.float32)
    weights = truth * positive + (1 - truth) * negative
    per_study = np.sum(loss * weights, axis=1) / weights.sum(axis=1)
    return np.mean(per_study)


def _clipped_prediction(value: float) -> float:
    """v1's `min(max(p, 0), 1)` in Python: a NaN stays NaN (it then makes the score 0)."""
    return min(max(value, 0.0), 1.0)


@metric("probabilistic-f1", higher_is_better=True)
def probabilistic_f1(y_true: pd.DataFrame, y_pred: pd.DataFrame, *, beta: float = 1) -> float | int:
    """rsna-breast's probabilistic F-beta (Kaggle's pF1, beta = 1), as v1 computes it.

    Each prediction is clipped to [0, 1] (so -1 and inf are scored); ctp sums it over the positive
    rows and cfp over the negative ones, in id order; precision = ctp / (ctp + cfp), recall =
    ctp / positives. v1 returns the int 0 unless both are > 0, which a missing prediction (NaN)
    forces: such a submission is valid and scores 0. Text is invalid (v1's comparison raised).
    """
    column = _single(y_pred)
    if not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
        raise InvalidSubmission(f"column '{column.name}' must be numeric (probabilities)")
    labels = _numeric(y_true.iloc[:, [0]], "answers")[:, 0]
    predictions = column.to_numpy(dtype=np.float64, na_value=np.nan)
    positives, ctp, cfp = 0, 0.0, 0.0
    for label, value in zip(labels.tolist(), predictions.tolist(), strict=True):
        clipped = _clipped_prediction(value)
        if label:
            positives += 1
            ctp += clipped
        else:
            cfp += clipped
    if positives == 0:
        raise InvalidSubmission("probabilistic F1 is undefined: the answers hold no positive case (v1: division by zero)")
    with np.errstate(all="ignore"):  # v1 divided NumPy floats: 0/0 gave NaN, not an error
        precision = np.float64(ctp) / np.float64(ctp + cfp)
        recall = np.float64(ctp) / positives
    if not (precision > 0 and recall > 0):
        return 0
    squared = beta * beta
    return (1 + squared) * (precision * recall) / (squared * precision + recall)


# ---------------------------------------------------------------- alaska2: ROC area weighted by TPR band

ALASKA_TPR_LEVELS = (0.0, 0.4, 1.0)  # the bands [0, 0.4] and [0.4, 1] of the true-positive rate
ALASKA_BAND_WEIGHTS = (2, 1)


def _with_tpr_levels(fpr: np.ndarray, tpr: np.ndarray, levels: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The ROC points plus one point at each TPR level the curve lacks, placed before the first point
    above the level, its FPR interpolated linearly from that point and the one before (v1's insertion)."""
    fprs, tprs = fpr.tolist(), tpr.tolist()
    for level in levels:
        if level in tprs:
            continue
        above = next((i for i, value in enumerate(tprs) if value > level), None)
        if above is None:
            continue
        lo = above - 1
        fprs.insert(above, fprs[lo] + (fprs[above] - fprs[lo]) * (level - tprs[lo]) / (tprs[above] - tprs[lo]))
        tprs.insert(above, level)
    return np.array(fprs), np.array(tprs)


@metric("weighted-auc-roc", higher_is_better=True)
def weighted_auc_roc(y_true: pd.DataFrame, y_pred: pd.DataFrame) -> float:
    """alaska2's weighted AUC: ROC area in the TPR band [0, 0.4] counted twice, over 1.4.

    Each band's area is taken between the curve's points inside the band (plus a closing point at
    FPR 1 on the band's top), measured from the band's floor; the points come from scikit-learn's
    `roc_curve` with v1's inserted points at TPR 0.4 and 1. Any number is accepted (no range check).
    """
    from sklearn.metrics import auc, roc_curve

    t, p = _numeric(y_true, "answers")[:, 0], _numeric(y_pred)[:, 0]
    if np.unique(t).size < 2:
        raise InvalidSubmission(f"AUC is undefined for '{y_pred.columns[0]}': the answers hold only one class")
    fpr, tpr, _ = roc_curve(t, p, pos_label=1)
    fpr, tpr = _with_tpr_levels(fpr, tpr, ALASKA_TPR_LEVELS)
    levels = np.array(ALASKA_TPR_LEVELS)
    total = 0.0
    for low, high, weight in zip(levels[:-1], levels[1:], ALASKA_BAND_WEIGHTS, strict=True):
        inside = (tpr >= low) & (tpr <= high)
        if not inside.any():
            continue
        xs = np.append(fpr[inside], 1.0)
        ys = np.append(tpr[inside], high) - low
        total += auc(xs, ys) * weight
    return total / np.dot(levels[1:] - levels[:-1], ALASKA_BAND_WEIGHTS)


# ---------------------------------------------------------------- detection boxes (hpc_mle.boxes)
# The four detection graders of v1 pair rows their own way, so their specs use row order `by-metric`:
# `y_true` is the whole answers file and `y_pred` the submission's id and prediction columns. The box
# arithmetic (parsing, IoU, matching, AP) lives in hpc_mle.boxes, imported when a grade needs it.


@metric("point-in-box-f1", higher_is_better=True, v1_result="python")
def point_in_box_f1(y_true: pd.DataFrame, y_pred: pd.DataFrame, *, id_column: str = "image_id",
                    column: str = "labels") -> float:
    """kuzushiji v1: F1 of predicted character centres (label x y) strictly inside same-label truth boxes."""
    from hpc_mle import boxes

    return boxes.kuzushiji_f1(y_true, y_pred, id_column, column)


@metric("detection-map-at-iou-50", higher_is_better=True)
def detection_map_at_iou_50(y_true: pd.DataFrame, y_pred: pd.DataFrame, *, id_column: str = "id",
                            column: str = "PredictionString") -> float:
    """siim-covid19 v1: mean over the answers' labels of AP over greedy IoU > 0.5 matches per row."""
    from hpc_mle import boxes

    return boxes.siim_map(y_true, y_pred, id_column, column)


@metric("coco-map-at-iou-40", higher_is_better=True)
def coco_map_at_iou_40(y_true: pd.DataFrame, y_pred: pd.DataFrame, *, id_column: str = "image_id",
                       column: str = "PredictionString", xywh: bool = False, unique_ids: bool = False,
                       one_based_ids: bool = False) -> float:
    """vinbigdata v1: pycocotools bbox AP at IoU 0.4 (boxes given as x_min y_min x_max y_max).

    `xywh`, `unique_ids`, `one_based_ids` (the corrected grade): COCO's own box format, one row per
    image, boxes numbered from 1 (pycocotools reads id 0 as "unmatched")."""
    from hpc_mle import boxes

    return boxes.vinbig_coco_map(y_true, y_pred, id_column, column, xywh=xywh, unique_ids=unique_ids,
                                 one_based_ids=one_based_ids)


@metric("mean-average-precision-3d", higher_is_better=True)
def mean_average_precision_3d(y_true: pd.DataFrame, y_pred: pd.DataFrame, *, id_column: str = "Id",
                              column: str = "PredictionString") -> float:
    """3d-object v1: Lyft's 3D mAP over IoU 0.50..0.95, averaged per sample, then over samples."""
    from hpc_mle import boxes

    return boxes.lyft_map(y_true, y_pred, id_column, column)


# ---------------------------------------------------------------- multi-label ranking (freesound-audio-tagging-2019)


@metric("lwlrap", higher_is_better=True)
def label_weighted_lrap(y_true: pd.DataFrame, y_pred: pd.DataFrame) -> float:
    """Label-weighted label-ranking average precision (freesound v1): scikit-learn's LRAP of the
    answers' 0/1 matrix against the scores, each clip weighted by its number of true labels.

    Clips without a true label are left out, as v1 leaves them out (scikit-learn would count them
    as 1). v1 converted the scores with `pd.to_numeric` and scikit-learn refused missing or infinite
    values: invalid here with the reason. Tied scores share the worst rank, as in scikit-learn.
    """
    from sklearn.metrics import label_ranking_average_precision_score

    truth = _numeric(y_true, "answers") > 0
    scores = _numeric(y_pred)
    weights = truth.sum(axis=1)
    keep = np.flatnonzero(weights > 0)
    if keep.size == 0:
        raise InvalidSubmission("no test clip has a true label; the answers file looks damaged")
    return label_ranking_average_precision_score(truth[keep], scores[keep], sample_weight=weights[keep])


# ---------------------------------------------------------------- integer class labels (herbaria, iwildcam-2019, inaturalist-2019)


def _v1_ints(series: pd.Series, *, first_token: bool = False) -> list[int]:
    """Each cell through Python's `int()`, as these v1 graders convert labels (so 3.0 and "3" are 3,
    and 3.7 is truncated to 3). `first_token` (inaturalist): a cell that is not an int is split on
    whitespace and its first token converted; a float cell has no `split` there. Anything v1's
    conversion raised on is invalid with the reason."""
    out = []
    for value in series.tolist():  # Python scalars, as iterating a pandas column gives them to v1
        try:
            out.append(int(value if not first_token or isinstance(value, int) else value.split()[0]))
        except (TypeError, ValueError, OverflowError, AttributeError, IndexError):
            need = "an integer class id, or text whose first token is one" if first_token else "an integer class id"
            raise InvalidSubmission(f"column '{series.name}' must hold {need}; found {value!r}") from None
    return out


@metric("macro-f1", higher_is_better=True)
def macro_f1(y_true: pd.DataFrame, y_pred: pd.DataFrame) -> float:
    """Macro-averaged F1 over the classes seen in the answers or the predictions (herbaria and
    iwildcam-2019 v1: scikit-learn's f1_score on int() labels; a class never predicted scores 0)."""
    import warnings

    from sklearn.metrics import f1_score

    t, p = _v1_ints(_single(y_true)), _v1_ints(_single(y_pred))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(f1_score(t, p, average="macro"))


@metric("top-1-error", higher_is_better=False, v1_result="python")
def top_1_error(y_true: pd.DataFrame, y_pred: pd.DataFrame) -> float:
    """1 - accuracy of the first predicted class (inaturalist-2019 v1: a cell may list several classes
    separated by spaces; only the first counts)."""
    t = np.asarray(_v1_ints(_single(y_true)), dtype=object)
    p = np.asarray(_v1_ints(_single(y_pred), first_token=True), dtype=object)
    return 1 - float(np.mean(t == p))
