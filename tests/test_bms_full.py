"""bms-molecular-translation on a synthetic Kaggle-shaped download: tiny PNG drawings in Kaggle's
three-level folders, InChI labels with commas (quoted in the CSV), v1's 80/20 split and its
astype(str) Levenshtein grader.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lite_support import Prepared, run_checks
from PIL import Image
from sklearn.model_selection import train_test_split
from test_signals_full import fuzz

from hpc_mle import grading, paths

BMS = "bms-molecular-translation"
ROWS = 40  # 8 test images
WATER = "InChI=1S/H2O/h1H2"


def _png(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _inchi(rng: np.random.Generator) -> str:
    c, h = int(rng.integers(2, 20)), int(rng.integers(2, 30))
    return f"InChI=1S/C{c}H{h}O/c1-{c}-{int(rng.integers(3, 9))}/h{int(rng.integers(1, 5))},{int(rng.integers(5, 9))}H,1H3"


def _put_image(folder: Path, image_id: str, data: bytes) -> None:
    path = folder / image_id[0] / image_id[1] / image_id[2] / f"{image_id}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def make_bms(raw: Path, rng: np.random.Generator) -> None:
    """train/ and test/ PNGs in <c0>/<c1>/<c2>/<id>.png, train_labels.csv, Kaggle's sample, extra InChIs."""
    ids = [f"{int(v):012x}" for v in rng.choice(2**48, size=ROWS + 3, replace=False)]
    train_ids, kaggle_test = ids[:ROWS], ids[ROWS:]
    for image_id in train_ids:
        _put_image(raw / "train", image_id, _png(rng))
    for image_id in kaggle_test:
        _put_image(raw / "test", image_id, _png(rng))
    pd.DataFrame({"image_id": train_ids, "InChI": [_inchi(rng) for _ in train_ids]}).to_csv(
        raw / "train_labels.csv", index=False)
    pd.DataFrame({"image_id": kaggle_test, "InChI": "InChI=1S/H2O/h1H2"}).to_csv(raw / "sample_submission.csv",
                                                                                index=False)
    pd.DataFrame({"InChI": [_inchi(rng) for _ in range(5)]}).to_csv(raw / "extra_approved_InChIs.csv", index=False)


def _levenshtein(a: str, b: str) -> int:
    """Plain dynamic-programming edit distance, independent of the grader's library."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def _grade(p: Prepared, frame: pd.DataFrame, tmp: Path) -> grading.CompetitionReport:
    tmp.mkdir(parents=True, exist_ok=True)
    frame.to_csv(tmp / "sub.csv", index=False)
    return grading.grade_submission(tmp / "sub.csv", p.spec.id, p.data_dir)


def test_bms(tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    make_bms(probe, np.random.default_rng(0))
    labels = pd.read_csv(probe / "train_labels.csv")
    want_train, want_test = train_test_split(labels, test_size=0.2, random_state=0)
    sample_score = round(float(np.mean([_levenshtein(t, WATER) for t in want_test["InChI"]])), 5)

    p = run_checks(BMS, make_bms, tmp_path, private={"test.csv"}, test_rows=8, sample_score=sample_score,
                   perfect_score=0.0,
                   public={"train_labels.csv", "extra_approved_InChIs.csv", "train", "test", "sample_submission.csv"})
    raw = paths.raw_dir(BMS, p.data_dir)
    # v1's split: train_test_split(test_size=0.2, random_state=0), rows in the splitter's order, written
    # as pandas writes them (InChIs with commas quoted).
    assert (p.public / "train_labels.csv").read_text() == want_train.to_csv(index=False)
    assert (p.private / "test.csv").read_text() == want_test.to_csv(index=False)
    assert '"' in (p.private / "test.csv").read_text()
    sample = pd.read_csv(p.sample_path())
    assert list(sample["image_id"]) == list(want_test["image_id"]) and set(sample["InChI"]) == {WATER}
    assert (p.public / "extra_approved_InChIs.csv").read_bytes() == (raw / "extra_approved_InChIs.csv").read_bytes()
    for folder, ids in (("train", want_train["image_id"]), ("test", want_test["image_id"])):
        got = sorted(x.relative_to(p.public / folder).as_posix() for x in (p.public / folder).rglob("*.png"))
        assert got == sorted(f"{i[0]}/{i[1]}/{i[2]}/{i}.png" for i in ids)
    i = want_test["image_id"].iloc[0]
    rel = Path(i[0], i[1], i[2], f"{i}.png")
    assert (p.public / "test" / rel).read_bytes() == (raw / "train" / rel).read_bytes()
    Image.open(p.public / "test" / rel).verify()

    answers, subs = p.answers(), tmp_path / "subs2"
    # v1 casts with astype(str): an empty cell is scored as the text "nan", not refused.
    holes = answers.copy().astype({"InChI": object})
    holes.loc[0, "InChI"] = None
    report = _grade(p, holes.iloc[::-1], subs)
    assert report.valid_submission and report.score == pytest.approx(
        round(_levenshtein(answers["InChI"][0], "nan") / len(answers), 5)), report
    # A column of numbers is scored as their text; extra columns are ignored; row order is free.
    numbers = answers.assign(InChI=range(len(answers)), note="x")
    want = np.mean([_levenshtein(t, str(k)) for k, t in enumerate(answers["InChI"])])
    assert _grade(p, numbers, subs).score == pytest.approx(round(want, 5))
    for bad in (answers.iloc[1:], answers.assign(image_id=answers["image_id"].str.upper()),
                answers.rename(columns={"InChI": "inchi"})):
        report = _grade(p, bad, subs)
        assert not report.valid_submission and not report.grader_error and report.reason, report.reason
    fuzz(p, tmp_path / "fuzz")


# The synthetic downloads of this module, for tests/synthetic_downloads.py.
MAKERS = {BMS: make_bms}
