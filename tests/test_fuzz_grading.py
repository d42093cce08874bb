"""Grading fuzz: thousands of malformed submissions against every implemented grader.

Each mutation below is invalid *by construction* for the metric it targets (structural damage for
all; value damage only where the metric's type makes it invalid). The bar: zero exceptions, zero
grader errors, every single one invalid with a reason.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import pytest

from hpc_mle import competitions, grading, paths

PER_COMPETITION = 420
NUMERIC_METRICS = {"auc-roc", "log-loss", "multi-class-log-loss", "root-mean-squared-error",
                   "root-mean-squared-log-error", "mean-column-wise-rmsle", "mean-column-wise-roc-auc",
                   "rounded-mean-absolute-error", "weighted-multi-label-log-loss", "lwlrap"}
PROBABILITY_METRICS = {"auc-roc", "log-loss", "multi-class-log-loss", "weighted-multi-label-log-loss"}

Mutation = Callable[[pd.DataFrame, np.random.Generator], bytes]


def csv_bytes(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode()


def structural_mutations(ids: list[str], cols: list[str]) -> list[Mutation]:
    def drop_column(df, rng):
        return csv_bytes(df.drop(columns=[rng.choice(ids + cols)]))

    def rename_column(df, rng):
        col = rng.choice(ids + cols)
        return csv_bytes(df.rename(columns={col: col + "_x"}))

    def drop_rows(df, rng):
        k = int(rng.integers(1, max(2, len(df) // 2)))
        return csv_bytes(df.drop(index=rng.choice(df.index, size=k, replace=False)))

    def extra_rows(df, rng):
        extra = df.sample(n=int(rng.integers(1, 5)), random_state=int(rng.integers(1 << 30)))
        extra[ids[0]] = [f"new-{i}" for i in range(len(extra))]
        return csv_bytes(pd.concat([df, extra]))

    def duplicate_id(df, rng):
        out = df.copy()
        i, j = rng.choice(len(out), size=2, replace=False)
        out.iloc[j, out.columns.get_loc(ids[0])] = out.iloc[i][ids[0]]
        return csv_bytes(out)

    def bogus_id(df, rng):
        out = df.copy().astype({ids[0]: object})
        out.iloc[int(rng.integers(len(out))), out.columns.get_loc(ids[0])] = "not-an-id"
        return csv_bytes(out)

    def missing_id(df, rng):
        out = df.copy().astype({ids[0]: object})
        out.iloc[int(rng.integers(len(out))), out.columns.get_loc(ids[0])] = None
        return csv_bytes(out)

    def empty(df, rng):
        return b""

    def header_only(df, rng):
        return csv_bytes(df.iloc[:0])

    def binary_garbage(df, rng):
        return rng.integers(0, 256, size=int(rng.integers(1, 4096)), dtype=np.uint8).tobytes() + b"\x00"

    def utf16(df, rng):
        return df.to_csv(index=False).encode("utf-16")

    def latin1_bytes(df, rng):
        text = csv_bytes(df)
        cut = int(rng.integers(len(text) // 2, len(text)))
        return text[:cut] + b"\xe9\xff" + text[cut:]

    def truncated_rows(df, rng):
        text = csv_bytes(df)
        lines = text.splitlines(keepends=True)
        keep = int(rng.integers(1, max(2, len(lines) - 1)))
        return b"".join(lines[:keep])

    def not_csv(df, rng):
        return b'{"this": "is json", "not": ["a", "csv"]}\n'

    return [drop_column, rename_column, drop_rows, extra_rows, duplicate_id, bogus_id, missing_id, empty,
            header_only, binary_garbage, utf16, latin1_bytes, truncated_rows, not_csv]


def value_mutations(metric: str, cols: list[str]) -> list[Mutation]:
    """Cell values that the metric must refuse."""
    if metric in NUMERIC_METRICS:
        bad = [np.nan, np.inf, -np.inf, "abc", "1,5"]
        if metric in PROBABILITY_METRICS or metric == "root-mean-squared-log-error":
            bad += [-1.0, -1e-9]
        if metric in PROBABILITY_METRICS:
            bad += [1.5, 1e300]
    elif metric == "accuracy":
        # Text among numeric labels is not here: v1 scores it (no row matches) when there are 3+ classes.
        bad = [np.nan, np.inf, 2.5]
    elif metric in ("macro-f1", "top-1-error"):
        # v1 passes each label through int(): missing, infinite and non-numeric text fail (2.5 is truncated).
        bad = [np.nan, np.inf, "abc"]
    else:  # label sets: any text is a valid (if wrong) set of labels
        return []

    def corrupt(value) -> Mutation:
        def mutate(df, rng):
            out = df.copy().astype({c: object for c in cols})
            row, col = int(rng.integers(len(out))), out.columns.get_loc(rng.choice(cols))
            out.iloc[row, col] = value
            return csv_bytes(out)

        mutate.__name__ = f"value_{value!r}"
        return mutate

    return [corrupt(v) for v in bad]


def mutations_for(spec, sample: pd.DataFrame, cols: list[str]) -> Iterator[tuple[str, bytes]]:
    ids = list(spec.submission.id_columns)
    kinds = structural_mutations(ids, cols) + value_mutations(spec.metric.name, cols)
    rng = np.random.default_rng(zlib.crc32(spec.id.encode()))
    for i in range(PER_COMPETITION):
        mutate = kinds[i % len(kinds)]
        yield mutate.__name__, mutate(sample, rng)


@pytest.mark.slow
@pytest.mark.parametrize("cid", competitions.split_ids("mini"))
def test_fuzzed_submissions_are_all_invalid_with_reasons(cid, mini_data, tmp_path):
    spec = competitions.get(cid)
    sample = pd.read_csv(paths.prepared_dir(cid, mini_data) / spec.files.sample_submission)
    answers = grading.load_answers(spec, mini_data)
    cols = grading.scored_columns(spec, answers)
    assert grading.grade_submission(paths.prepared_dir(cid, mini_data) / spec.files.sample_submission,
                                    cid, mini_data).valid_submission

    failures, counted = [], 0
    for i, (kind, content) in enumerate(mutations_for(spec, sample, cols)):
        path = tmp_path / f"{i}.csv"
        path.write_bytes(content)
        report = grading.grade_submission(path, cid, mini_data)
        counted += 1
        if report.valid_submission or not report.reason or report.grader_error:
            failures.append((kind, report.reason, content[:200]))
    assert counted == PER_COMPETITION
    assert not failures, f"{len(failures)} fuzzed submissions were not cleanly invalid: {failures[:5]}"


def test_fuzz_mutations_parse_back_as_intended():
    """The generator itself: a structural mutation really changes what pandas reads."""
    df = pd.DataFrame({"id": [1, 2, 3, 4], "y": [0.1, 0.2, 0.3, 0.4]})
    rng = np.random.default_rng(0)
    by_name = {m.__name__: m for m in structural_mutations(["id"], ["y"])}
    assert len(pd.read_csv(io.BytesIO(by_name["drop_rows"](df, rng)))) < 4
    assert pd.read_csv(io.BytesIO(by_name["duplicate_id"](df, rng)))["id"].duplicated().any()
    assert b"\x00" in by_name["utf16"](df, rng)


def fuzz_problems(prepared, competition_id: str, folder, cols: list[str], must_fail: set[str], n: int
                  ) -> list[tuple]:
    """Grade `n` mutations of a prepared competition's sample; return those that broke a rule: a grader error,
    an invalid verdict without a reason, or a mutation in `must_fail` graded valid. Used by the family tests."""
    sample = pd.read_csv(prepared.sample_path())
    ids = list(prepared.spec.submission.id_columns)
    kinds = structural_mutations(ids, cols) + value_mutations(prepared.spec.metric.name, cols)
    rng = np.random.default_rng(0)
    problems = []
    for i in range(n):
        mutate = kinds[i % len(kinds)]
        path = folder / f"{i}.csv"
        path.write_bytes(mutate(sample, rng))
        report = grading.grade_submission(path, competition_id, prepared.data_dir)
        if report.grader_error or (not report.valid_submission and not report.reason) or \
                (mutate.__name__ in must_fail and report.valid_submission):
            problems.append((mutate.__name__, report.valid_submission, report.reason))
    return problems
