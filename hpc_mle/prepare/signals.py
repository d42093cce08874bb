"""Preparers of the time-series, sensor and physics-signal competitions (full MLE-bench).

Each `name(raw, public, private)` turns the extracted Kaggle download in `raw` into the split
MLE-bench v1 makes (facts §4.4): the same rows, row order, columns, float format and files in
`public/` or `private/`. `prepare` hands them staging folders, so a failure leaves nothing behind.
Signal files are copied one at a time; no preparer here holds more than its index tables in memory.
"""

from __future__ import annotations

from pathlib import Path

from hpc_mle.prepare.common import EXACT_FLOATS, copy_files, read_csv, split, write_csv

# ---------------------------------------------------------------- predict-volcanic-eruptions-ingv-oe


def predict_volcanic_eruptions(raw: Path, public: Path, private: Path) -> None:
    """10% of Kaggle's labelled segments become the test set (random_state=0).

    Kaggle's own test segments are not used: both new folders are filled from `raw/train/`, one
    `<segment_id>.csv` per row of the new train and test tables. The sample submission predicts 0.
    """
    table = read_csv(raw / "train.csv", **EXACT_FLOATS)
    if list(table.columns) != ["segment_id", "time_to_eruption"]:
        raise ValueError(f"{raw / 'train.csv'}: expected the columns segment_id, time_to_eruption; "
                         f"got {list(table.columns)}")
    train, test = split(table)
    write_csv(test, private / "test.csv")
    write_csv(train, public / "train.csv")
    write_csv(test.assign(time_to_eruption=0), public / "sample_submission.csv")
    copy_files((f"{sid}.csv" for sid in train["segment_id"]), raw / "train", public / "train")
    copy_files((f"{sid}.csv" for sid in test["segment_id"]), raw / "train", public / "test")
