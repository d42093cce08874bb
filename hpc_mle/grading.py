"""Grading: a pure function of (competition, submission file) -> report.

Any problem with a submission (missing, not CSV, not UTF-8, binary, huge, wrong columns, ids, row
count, NaN, out-of-range values) makes it *invalid with a reason*; nothing here raises for a bad
submission, so one bad file never stops the grading of others. Scores are rounded to 5 decimals and
placed on the leaderboard with `hpc_mle.medals`, as MLE-bench v1 does.

Reports keep MLE-bench's 16 fields, in its order, so upstream tools read them; our fields follow.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpc_mle import __version__, competitions, medals, paths
from hpc_mle.competitions import CompetitionSpec
from hpc_mle.files import UnsafeFile, atomic_write_text, open_untrusted_file
from hpc_mle.metrics import METRICS, InvalidSubmission, unscored_answer_rows

# A submission larger than this many times the answers file (and above the floor) is refused unread.
SIZE_FACTOR = 50
SIZE_FLOOR = 256 * 1024 * 1024
SCORE_DECIMALS = 5
# v1: upstream's graders as its published runs graded; corrected: v1 with its plainly wrong rules fixed
# (per competition: `submission.corrected_row_order`). The report keeps both grades where they differ.
GRADING_MODES = ("v1", "corrected")
# v1 reads CSVs with float_precision="round_trip"; pandas >= 3 parses exactly by default and deprecates it.
_EXACT_FLOATS = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}


class NotPrepared(RuntimeError):
    """The competition's private answers are missing: a setup problem, not a bad submission."""


@dataclass(frozen=True)
class CompetitionReport:
    # --- MLE-bench v1's fields, in its order
    competition_id: str
    score: float | None
    gold_threshold: float | None
    silver_threshold: float | None
    bronze_threshold: float | None
    median_threshold: float | None
    any_medal: bool | None
    gold_medal: bool | None
    silver_medal: bool | None
    bronze_medal: bool | None
    above_median: bool | None
    submission_exists: bool
    valid_submission: bool
    is_lower_better: bool | None
    created_at: str
    submission_path: str
    # --- ours
    reason: str | None = None  # why the submission is invalid (or why medals are unknown)
    grader_error: bool = False  # True when a metric raised something other than InvalidSubmission
    leaderboard_source: str = "none"  # kaggle | reference-panel | none (then medals are unknown: null)
    competition_status: str = "ok"
    spec_version: int = 1
    hpc_mle_version: str = __version__
    # Which grade `score`, `valid_submission` and the medals are (GRADING_MODES). Where the other
    # mode grades differently, both grades are kept below (null where the two agree).
    grading_mode: str = "v1"
    v1_score: float | None = None
    v1_valid: bool | None = None
    v1_reason: str | None = None
    corrected_score: float | None = None
    corrected_valid: bool | None = None
    corrected_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- reading files


def _size_limit(answers_path: Path) -> int:
    """The most bytes a submission (or a validator upload) may have: the one size rule of the harness."""
    try:
        return max(SIZE_FLOOR, SIZE_FACTOR * answers_path.stat().st_size)
    except OSError:
        return SIZE_FLOOR


def submission_size_limit(competition_id: str, data_dir: str | os.PathLike | None = None) -> int:
    """`_size_limit` for a competition (the validator's upload cap and the snapshots' cap)."""
    spec = competitions.get(competition_id)
    return _size_limit(paths.prepared_dir(spec.id, data_dir) / spec.files.answers)


def read_submission(path: Path, max_bytes: int) -> pd.DataFrame:
    """Parse a submission CSV, or raise InvalidSubmission saying what is wrong with the file.

    The file is opened without following a link (its folder may be the agent's) and must be a
    regular file with one link and at most `max_bytes`; pandas reads only from that descriptor.
    """
    path = Path(path)
    try:
        with open_untrusted_file(path.parent, path.name, max_bytes) as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                raise InvalidSubmission("file is empty")
            if b"\x00" in fh.peek(1 << 16)[: 1 << 16]:
                raise InvalidSubmission("file is binary (contains NUL bytes), not a CSV text file")
            return _parse_csv(fh)
    except UnsafeFile as exc:
        raise InvalidSubmission(str(exc)) from None
    except FileNotFoundError:
        raise InvalidSubmission(f"no submission file named {path.name}") from None


def _parse_csv(fh) -> pd.DataFrame:
    try:
        return pd.read_csv(fh, low_memory=False, encoding="utf-8", **_EXACT_FLOATS)
    except UnicodeDecodeError as exc:
        raise InvalidSubmission(f"file is not UTF-8 text (bad byte at position {exc.start})") from None
    except pd.errors.EmptyDataError:
        raise InvalidSubmission("file has no header row") from None
    except (pd.errors.ParserError, ValueError, OverflowError) as exc:
        raise InvalidSubmission(f"file is not a well-formed CSV ({str(exc).strip().splitlines()[0]})") from None


@functools.lru_cache(maxsize=8)
def _answers_cached(path: str, mtime_ns: int) -> pd.DataFrame:
    return pd.read_csv(path, low_memory=False, **_EXACT_FLOATS)


def load_answers(spec: CompetitionSpec, data_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    path = paths.prepared_dir(spec.id, data_dir) / spec.files.answers
    if not path.is_file():
        raise NotPrepared(f"{spec.id}: answers {path} are missing. Fix: run `hpc-mle prepare -c {spec.id}`"
                          + (f" --data-dir {data_dir}" if data_dir else ""))
    if path.suffix.lower() == ".jsonl":
        return _jsonl_answers_cached(str(path), path.stat().st_mtime_ns, spec.files.answers_fields)
    if path.suffix.lower() != ".csv":
        raise NotPrepared(f"{spec.id}: answers {path} are not CSV; this grader is not implemented yet")
    return _answers_cached(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _jsonl_answers_cached(path: str, mtime_ns: int, fields: tuple[str, ...]) -> pd.DataFrame:
    """JSON-lines answers (tensorflow2-QA's test.jsonl), one record per line, values as JSON gives
    them (ids stay text, as v1's `load_answers` read them); only `fields` kept when the spec names them."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                record = json.loads(line)
                rows.append({k: record.get(k) for k in fields} if fields else record)
    return pd.DataFrame.from_records(rows, columns=list(fields) or None)


@functools.lru_cache(maxsize=64)
def _thresholds_cached(path: str, mtime_ns: int) -> medals.Thresholds:
    return medals.thresholds(medals.read_leaderboard(path))


def leaderboard_thresholds(spec: CompetitionSpec, data_dir=None) -> medals.Thresholds | None:
    """Thresholds from the first leaderboard found (imported upstream board, else a shipped panel)."""
    for path in paths.leaderboard_candidates(spec.id, data_dir):
        if path.is_file():
            return _thresholds_cached(str(path), path.stat().st_mtime_ns)
    return None


# ---------------------------------------------------------------- validation and scoring


def scored_columns(spec: CompetitionSpec, answers: pd.DataFrame) -> list[str]:
    if spec.submission.answer_columns:
        return list(spec.submission.answer_columns)
    return [c for c in answers.columns if c not in spec.submission.id_columns]


def _ids_match(sub_ids: pd.DataFrame, ans_ids: pd.DataFrame) -> str | None:
    """None if both hold the same ids (order aside), else a reason with an example."""
    for col in ans_ids.columns:
        a, s = ans_ids[col], sub_ids[col]
        a_num, s_num = pd.api.types.is_numeric_dtype(a), pd.api.types.is_numeric_dtype(s)
        if a_num != s_num:
            kind = "numbers" if a_num else "text"
            return f"id column '{col}' must hold {kind} like the sample submission (e.g. {a.iloc[0]!r})"
    missing = ans_ids.merge(sub_ids.drop_duplicates(), how="left", indicator=True)
    missing = missing[missing["_merge"] == "left_only"]
    if len(missing):
        example = missing.iloc[0][list(ans_ids.columns)].to_dict()
        return f"{len(missing)} id(s) of the test set are missing from the submission, e.g. {example}"
    extra = sub_ids.merge(ans_ids, how="left", indicator=True)
    extra = extra[extra["_merge"] == "left_only"]
    if len(extra):
        example = extra.iloc[0][list(ans_ids.columns)].to_dict()
        return f"{len(extra)} id(s) are not in the test set, e.g. {example}"
    return None


def validate_and_align(spec: CompetitionSpec, sub: pd.DataFrame, answers: pd.DataFrame,
                       row_order: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check the submission's shape against the answers; return (y_true, y_pred) aligned row for row.

    `row_order` (default `spec.submission.row_order`) says how rows (and, for two quirks, columns)
    are paired, as v1's grader of that competition does; see `competitions.ROW_ORDERS`.
    """
    ids = list(spec.submission.id_columns)
    cols = scored_columns(spec, answers)
    order = row_order or spec.submission.row_order
    needed = cols if order == "positional" else ids + cols  # v1's positional graders never read ids
    renamed = spec.submission.renamed_columns
    if renamed:  # v1 renames these first; a file that has both the old and the new name then repeats a column
        sub = sub.rename(columns=renamed)
    missing = [c for c in needed if c not in sub.columns]
    if missing:
        shown = {new: old for old, new in renamed.items()}  # name the columns as the submission should
        raise InvalidSubmission(f"missing column(s) {[shown.get(c, c) for c in missing]}; "
                                f"expected {[shown.get(c, c) for c in needed]}")
    if sub.columns.duplicated().any():
        raise InvalidSubmission(f"duplicate column name(s) {list(sub.columns[sub.columns.duplicated()])}")
    if spec.submission.exact_columns and set(sub.columns) != set(ids + cols):
        extra = [c for c in sub.columns if c not in ids + cols]
        raise InvalidSubmission(f"unexpected column(s) {extra}; this competition requires exactly {ids + cols}")
    if spec.submission.exact_header and list(sub.columns) != ids + cols:
        raise InvalidSubmission(_header_difference(list(sub.columns), ids + cols))
    first = spec.submission.first_column
    if first and sub.columns[0] != first:
        raise InvalidSubmission(f"column '{first}' must come first (v1 reads every column after the first "
                                f"as predictions); the file starts with '{sub.columns[0]}'")
    context = list(spec.submission.context_columns)
    if order == "merge":
        return _merge_on_id_set(sub, answers, ids, cols, context)
    if order == "by-metric":  # the metric pairs the rows (osic v1); it gets every answers column
        return answers, sub[ids + cols]
    if len(sub) != len(answers):
        raise InvalidSubmission(f"has {len(sub)} rows, expected {len(answers)} (one per test id)")

    if order == "positional":
        # Upstream quirk (e.g. nomad2018): rows are scored in file order and ids are not compared.
        return answers[cols].reset_index(drop=True), sub[cols].reset_index(drop=True)
    if order == "id-set-sorted":  # hms v1: the same id sets, then paired by position after sorting by id
        want, got = set(answers[ids].itertuples(index=False, name=None)), set(sub[ids].itertuples(index=False, name=None))
        if want != got:
            raise InvalidSubmission(f"the submission's ids differ from the test set's: {len(want - got)} test id(s) "
                                    f"missing and {len(got - want)} id(s) not in the test set")
        extra = [c for c in sub.columns if c not in ids + cols]  # hms v1 checks these as probabilities too
        return _sorted_by(answers, ids)[cols], _sorted_by(sub, ids)[cols + extra]
    if order == "sorted":
        # Upstream quirk (nyc-taxi): both files sorted by id and paired by position, ids never compared.
        return _sorted_by(answers, ids)[cols], _sorted_by(sub, ids)[cols]
    if order == "sorted-columns-by-position":
        return _pair_sorted_unchecked(spec, sub, answers, ids, cols)

    if sub[ids].isna().any().any():
        raise InvalidSubmission(f"id column(s) {ids} have missing values")
    dup = sub.duplicated(subset=ids)
    # Where the answers repeat an id (detecting-insults' comment texts), v1 accepts the same repeats.
    if dup.any() and not answers.duplicated(subset=ids).any():
        raise InvalidSubmission(f"{int(dup.sum())} duplicate id(s), e.g. {sub.loc[dup, ids].iloc[0].to_dict()}")
    sub_sorted = _sorted_by(sub, ids)
    ans_sorted = _sorted_by(answers, ids)
    if not _same_values(sub_sorted[ids], ans_sorted[ids]):
        raise InvalidSubmission(_ids_match(sub[ids], answers[ids]) or "ids differ from the test set's ids "
                                "(the same ids, repeated a different number of times)")
    if order == "id-columns-by-position":
        return ans_sorted[cols], _in_file_order(sub_sorted, cols)
    if order == "id-mask-by-file-position":
        return ans_sorted[cols + context], _mask_by_file_position(spec, sub, answers, ans_sorted, sub_sorted,
                                                                  ids, cols)
    return ans_sorted[cols + context], sub_sorted[cols]


def _header_difference(got: list[str], want: list[str]) -> str:
    """Why a header is not exactly `want` (spec `exact_header`): the first column that differs."""
    at = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), min(len(got), len(want)))
    found = repr(got[at]) if at < len(got) else "missing"
    expected = repr(want[at]) if at < len(want) else "no further column"
    return (f"the header must be exactly {want[0]!r} then the {len(want) - 1} columns of the sample submission, "
            f"in its order; column {at + 1} is {found}, expected {expected}")


def _mask_by_file_position(spec: CompetitionSpec, sub: pd.DataFrame, answers: pd.DataFrame,
                           ans_sorted: pd.DataFrame, sub_sorted: pd.DataFrame, ids: list[str],
                           cols: list[str]) -> pd.DataFrame:
    """stanford-covid-vaccine's v1 pairing: the submission's rows in the order that makes the metric's mask
    (answers column `mask_column`, true = scored) pair them as v1 did.

    v1 sorted both files by id, then indexed the sorted submission with the sorted answers' mask, which
    pandas aligns by row label: the submission row read from file line p is kept when the answers' row on
    file line p is scored. The kept rows then meet the scored answers in id order. Same file order as the
    answers: the correct pairing; another order: the score of other rows (still valid, as in v1).
    """
    mask = spec.metric.options["mask_column"]
    keep_by_line = answers[mask].to_numpy(dtype=bool)
    line_of_sorted_row = sub.sort_values(ids, kind="stable").index.to_numpy()  # ids are unique here
    sub_keep = keep_by_line[line_of_sorted_row]
    ans_keep = ans_sorted[mask].to_numpy(dtype=bool)
    rows = np.empty(len(sub_sorted), dtype=np.int64)
    rows[ans_keep] = np.flatnonzero(sub_keep)  # as many kept rows on each side: same mask, permuted
    rows[~ans_keep] = np.flatnonzero(~sub_keep)
    return sub_sorted[cols].iloc[rows].reset_index(drop=True)


def _in_file_order(sub: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """The scored columns in the submission's own order, named as the answers' (v1 pairs by position)."""
    return sub[[c for c in sub.columns if c in cols]].set_axis(cols, axis=1)


def _merge_on_id_set(sub: pd.DataFrame, answers: pd.DataFrame, ids: list[str],
                     cols: list[str], context: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The `merge` pairing (predict-volcanic v1): equal id sets, then answers inner-merged with the submission.

    A repeated submission id passes and adds rows, as in v1. The reason names counts only, never an id:
    v1 listed the missing answer ids in its message, which the validator must not echo to an agent.
    """
    want = set(answers[ids].itertuples(index=False, name=None))
    got = set(sub[ids].itertuples(index=False, name=None))
    if want != got:
        raise InvalidSubmission(f"the submission's ids differ from the test set's: {len(want - got)} test id(s) "
                                f"missing and {len(got - want)} id(s) not in the test set")
    try:
        merged = answers[ids + cols + (context or [])].merge(sub[ids + cols], on=ids, suffixes=("_true", "_pred"))
    except (ValueError, TypeError) as exc:
        raise InvalidSubmission(f"id column(s) {ids} cannot be matched with the test ids ({exc})") from None
    y_true = merged[[f"{c}_true" for c in cols] + (context or [])].set_axis(cols + (context or []), axis=1)
    y_pred = merged[[f"{c}_pred" for c in cols]].set_axis(cols, axis=1)
    return y_true, y_pred


def _pair_sorted_unchecked(spec: CompetitionSpec, sub: pd.DataFrame, answers: pd.DataFrame,
                           ids: list[str], cols: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """jigsaw-toxic's v1 pairing: both sorted by id and paired by position, ids never compared.

    Every submission id must be a test id (v1's pandas failed otherwise), but one may repeat while
    another is missing. Answer rows the metric leaves unscored are dropped, and so are the submission
    rows whose id names one of them; the two must then have as many rows.
    """
    sub_sorted, ans_sorted = _sorted_by(sub, ids), _sorted_by(answers, ids)
    sub_ids, ans_ids = sub_sorted[ids[0]], ans_sorted[ids[0]]
    unknown = ~sub_ids.isin(ans_ids)
    if unknown.any():
        raise InvalidSubmission(f"{int(unknown.sum())} id(s) are not in the test set, e.g. {sub_ids[unknown].iloc[0]!r}")
    if spec.metric.options.get("drop_negative_answers"):
        unscored = pd.Series(unscored_answer_rows(ans_sorted[cols].to_numpy(dtype=float)), index=ans_ids.to_numpy())
        sub_sorted = sub_sorted[~unscored.reindex(sub_ids.to_numpy()).to_numpy()]
        ans_sorted = ans_sorted[~unscored.to_numpy()]
        if len(sub_sorted) != len(ans_sorted):
            raise InvalidSubmission(f"after dropping the unscored test rows, {len(sub_sorted)} submission rows "
                                    f"remain for {len(ans_sorted)} answers (ids repeated or missing)")
    return ans_sorted[cols].reset_index(drop=True), _in_file_order(sub_sorted, cols).reset_index(drop=True)


def _sorted_by(frame: pd.DataFrame, ids: list[str]) -> pd.DataFrame:
    """Rows sorted by id as v1's pandas 2.2 sorted them. Where an id repeats (detecting-insults'
    comment texts, a repeated jigsaw id), that was NumPy's quicksort, whose order among equal ids
    differs from a stable sort's; unique ids sort the same either way, and the stable sort is faster."""
    try:
        keys = frame[ids[0]]
        if len(ids) > 1 or not keys.duplicated().any():
            return frame.sort_values(ids, kind="stable").reset_index(drop=True)
        values = keys.to_numpy() if pd.api.types.is_numeric_dtype(keys) else keys.to_numpy(dtype=object)
        return frame.iloc[np.argsort(values, kind="quicksort")].reset_index(drop=True)
    except TypeError:  # mixed text and numbers (or missing values among texts) in an id column
        raise InvalidSubmission(f"id column(s) {ids} mix text and numbers, or have missing values") from None


def _same_values(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Equal ids row for row (the fast path; `_ids_match` explains a mismatch)."""
    for col in a.columns:
        x, y = a[col], b[col]
        if pd.api.types.is_numeric_dtype(x) != pd.api.types.is_numeric_dtype(y):
            return False
        if not np.array_equal(x.to_numpy(), y.to_numpy()):
            return False
    return True


def score_frame(spec: CompetitionSpec, sub: pd.DataFrame, answers: pd.DataFrame,
                row_order: str | None = None, options: dict[str, Any] | None = None) -> float:
    """Score a parsed submission; raises InvalidSubmission (bad input) or anything else (grader bug).

    `options` are merged over the spec's metric options (the corrected grade's `corrected_options`)."""
    y_true, y_pred = validate_and_align(spec, sub, answers, row_order)
    metric = METRICS[spec.metric.name]
    with np.errstate(all="ignore"):
        return metric(y_true, y_pred, **{**spec.metric.options, **(options or {})})


def v1_result(spec: CompetitionSpec) -> str:
    """The type v1's grader of this competition returned: the spec's word, else the metric's."""
    return spec.metric.v1_result or METRICS[spec.metric.name].v1_result


def round_score(score: float | int, result: str = "numpy") -> float | int:
    """v1's `round(score, 5)`: ints stay ints, NaN and infinities stay as they are.

    On a NumPy float64 (`result` "numpy") Python's round() is NumPy's: the value times 10**5, rounded
    half to even on that binary product, divided back (0.465625 -> 0.46562). On a Python float
    ("python") it is correctly rounded decimal (0.465625 -> 0.46563). Computed here the same way
    whatever NumPy is installed.
    """
    if isinstance(score, (int, np.integer)) and not isinstance(score, bool):
        return int(score)
    score = float(score)
    if not math.isfinite(score):
        return score
    if result == "python":
        return round(score, SCORE_DECIMALS)
    scale = 10.0**SCORE_DECIMALS
    return float(np.rint(np.float64(score) * scale) / scale)


@dataclass(frozen=True)
class Grade:
    """One mode's grade of a submission: a rounded score, or None and the reason."""

    score: float | None
    reason: str | None = None
    grader_error: bool = False

    def same_as(self, other: Grade) -> bool:
        both_nan = isinstance(self.score, float) and isinstance(other.score, float) \
            and math.isnan(self.score) and math.isnan(other.score)
        return (self.score is None) == (other.score is None) and (both_nan or self.score == other.score)


def check_mode(mode: str) -> str:
    if mode not in GRADING_MODES:
        raise ValueError(f"grading mode {mode!r} is unknown. Fix: use one of {', '.join(GRADING_MODES)} "
                         f"(grading.mode=v1 grades as MLE-bench v1 did).")
    return mode


def _grade_frame(spec: CompetitionSpec, sub: pd.DataFrame, answers: pd.DataFrame, row_order: str | None,
                 options: dict[str, Any] | None = None) -> Grade:
    try:
        return Grade(round_score(score_frame(spec, sub, answers, row_order, options), v1_result(spec)))
    except InvalidSubmission as exc:
        return Grade(None, str(exc))
    except Exception as exc:  # a grader bug must not stop other gradings (v1: any exception = invalid)
        return Grade(None, f"grader error: {type(exc).__name__}: {exc}", grader_error=True)


def _grade_file(spec: CompetitionSpec, path: Path, answers: pd.DataFrame, data_dir) -> tuple[Grade, Grade]:
    """(v1, corrected) grades of a present .csv file; the same grade twice where the spec corrects nothing."""
    try:
        sub = read_submission(path, _size_limit(paths.prepared_dir(spec.id, data_dir) / spec.files.answers))
    except InvalidSubmission as exc:
        return Grade(None, str(exc)), Grade(None, str(exc))
    except Exception as exc:  # v1: any exception = invalid; say it was ours
        failed = Grade(None, f"grader error: {type(exc).__name__}: {exc}", grader_error=True)
        return failed, failed
    v1 = _grade_frame(spec, sub, answers, None)
    fixed_order, fixed_options = spec.submission.corrected_row_order, spec.metric.corrected_options
    if not fixed_order and not fixed_options:
        return v1, v1
    return v1, _grade_frame(spec, sub, answers, fixed_order, fixed_options)


def _both_grades(v1: Grade, corrected: Grade) -> dict[str, Any]:
    """The report's v1_* and corrected_* fields: both grades where they differ, else nothing."""
    if v1.same_as(corrected):
        return {}
    return dict(v1_score=v1.score, v1_valid=v1.score is not None, v1_reason=v1.reason,
                corrected_score=corrected.score, corrected_valid=corrected.score is not None,
                corrected_reason=corrected.reason)


def grade_submission(
    submission_path: str | os.PathLike | None,
    competition_id: str,
    data_dir: str | os.PathLike | None = None,
    mode: str = "v1",
) -> CompetitionReport:
    """Grade one submission file in `mode` (GRADING_MODES); the report also keeps the other mode's
    grade where it differs. Raises only for setup problems (unknown or unprepared competition)."""
    check_mode(mode)
    spec = competitions.get(competition_id)
    if not spec.implemented:
        raise NotPrepared(f"{competition_id}: grading is not implemented yet (spec says implemented: false)")
    answers = load_answers(spec, data_dir)
    path = Path(str(submission_path)) if submission_path is not None else Path("None")
    present = os.path.lexists(path)  # never stat through a link: read_submission says what is there instead
    exists = present and path.suffix.lower() == ".csv"

    if not present:
        v1 = corrected = Grade(None, f"no submission file at {path}")
    elif not exists:
        v1 = corrected = Grade(None, f"submission must be a .csv file, got '{path.name}'")
    else:
        v1, corrected = _grade_file(spec, path, answers, data_dir)
    chosen = corrected if mode == "corrected" else v1
    report = make_report(spec, path, exists, chosen.score, chosen.reason, chosen.grader_error, data_dir)
    return replace(report, grading_mode=mode, **_both_grades(v1, corrected))


def make_report(spec, path, exists, score, reason, grader_error, data_dir=None) -> CompetitionReport:
    t = leaderboard_thresholds(spec, data_dir)
    valid = score is not None
    if t is None:
        medal_fields: dict[str, Any] = dict.fromkeys(
            ["gold_threshold", "silver_threshold", "bronze_threshold", "median_threshold", "any_medal",
             "gold_medal", "silver_medal", "bronze_medal", "above_median", "is_lower_better"])
        source = "none"
        if valid and reason is None:
            reason = "no leaderboard available: medals unknown (import one with `hpc-mle competitions import-upstream`)"
    else:
        m = medals.award(score, t)
        medal_fields = dict(
            gold_threshold=t.gold, silver_threshold=t.silver, bronze_threshold=t.bronze,
            median_threshold=t.median, any_medal=m.any, gold_medal=m.gold, silver_medal=m.silver,
            bronze_medal=m.bronze, above_median=m.above_median, is_lower_better=t.is_lower_better,
        )
        source = spec.leaderboard.source
    return CompetitionReport(
        competition_id=spec.id,
        score=score,
        submission_exists=exists,
        valid_submission=valid,
        created_at=datetime.now().isoformat(),
        submission_path=str(path),
        reason=reason,
        grader_error=grader_error,
        leaderboard_source=source,
        competition_status=spec.status.state,
        spec_version=spec.version,
        **medal_fields,
    )


def validate_submission(submission_path: str | os.PathLike, competition_id: str, data_dir=None) -> tuple[bool, str]:
    """What an agent's validator may learn: valid or not, and why. Never the score."""
    report = grade_submission(submission_path, competition_id, data_dir)
    if report.valid_submission:
        return True, "Submission is valid."
    return False, f"Submission invalid: {report.reason}"


# ---------------------------------------------------------------- run-group reports


def read_submissions_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Upstream's JSONL: one {competition_id, submission_path} per line; '#', '//' and blanks skipped."""
    rows = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith(("#", "//")):
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg}). Fix: one JSON object per line.") from None
        if not isinstance(row, dict) or "competition_id" not in row or "submission_path" not in row:
            raise ValueError(f"{path}:{lineno}: needs the keys 'competition_id' and 'submission_path' "
                             f"(submission_path may be null).")
        rows.append(row)
    return rows


def grade_many(rows: list[dict[str, Any]], data_dir=None, mode: str = "v1") -> list[CompetitionReport]:
    """Grade every row; a row whose competition is unknown or unprepared gets an invalid report with the reason."""
    reports = []
    for row in rows:
        cid, sub = str(row["competition_id"]), row["submission_path"]
        try:
            reports.append(grade_submission(sub, cid, data_dir, mode))
        except (KeyError, NotPrepared) as exc:
            reports.append(setup_failure_report(cid, sub, str(exc).strip("'\"")))
    return reports


def setup_failure_report(competition_id: str, submission_path, reason: str) -> CompetitionReport:
    path = Path(str(submission_path))
    return CompetitionReport(
        competition_id=competition_id, score=None, gold_threshold=None, silver_threshold=None,
        bronze_threshold=None, median_threshold=None, any_medal=False, gold_medal=False, silver_medal=False,
        bronze_medal=False, above_median=False, submission_exists=path.is_file() and path.suffix.lower() == ".csv",
        valid_submission=False, is_lower_better=None, created_at=datetime.now().isoformat(),
        submission_path=str(path), reason=reason, grader_error=False,
    )


def run_group_report(reports: list[CompetitionReport]) -> dict[str, Any]:
    """Upstream's totals (facts §2.7), then the per-competition reports in input order."""
    def count(field: str) -> int:
        return sum(bool(getattr(r, field)) for r in reports)

    return {
        "total_runs": len(reports),
        "total_runs_with_submissions": count("submission_exists"),
        "total_valid_submissions": count("valid_submission"),
        "total_medals": count("gold_medal") + count("silver_medal") + count("bronze_medal"),
        "total_gold_medals": count("gold_medal"),
        "total_silver_medals": count("silver_medal"),
        "total_bronze_medals": count("bronze_medal"),
        "total_above_median": count("above_median"),
        "competition_reports": [r.to_dict() for r in reports],
    }


def write_run_group_report(reports: list[CompetitionReport], output_dir: str | os.PathLike) -> Path:
    """`<output_dir>/<YYYY-MM-DDTHH-MM-SS-GMT>_grading_report.json`, as upstream names it."""
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S-GMT", time.gmtime())
    out = Path(output_dir) / f"{stamp}_grading_report.json"
    buf = io.StringIO()
    json.dump(run_group_report(reports), buf, indent=2)  # NaN scores stay the bare token NaN, as upstream
    return atomic_write_text(out, buf.getvalue() + "\n")
