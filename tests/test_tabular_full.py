"""The full benchmark's tabular competitions on synthetic Kaggle-shaped downloads.

Each `make_*` writes what extracting the competition's Kaggle zip gives (file names, folders,
columns, dtypes) with a few dozen made-up rows. `lite_support.run_checks` prepares it with the real
preparer and checks layout, leaks, grading and medals. Each test also rebuilds v1's split on its own
(`train_test_split(..., random_state=0)`, pandas' writer) and compares the prepared files byte for
byte, and pins the v1 grader rules that matter for the competition.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from lite_support import Prepared, run_checks
from sklearn.model_selection import train_test_split

from hpc_mle import grading
from hpc_mle.prepare.common import EXACT_FLOATS


def _grade(p: Prepared, frame: pd.DataFrame, tmp: Path, name: str = "sub.csv") -> grading.CompetitionReport:
    path = tmp / name
    frame.to_csv(path, index=False)
    return grading.grade_submission(path, p.spec.id, p.data_dir)


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False, lineterminator="\n").encode()


def _with_missing(rng: np.random.Generator, values: list, share: float = 0.1) -> list:
    return [None if rng.random() < share else v for v in values]


# ---------------------------------------------------------------- spaceship-titanic


def make_spaceship(raw: Path, rng: np.random.Generator) -> None:
    n = 80
    groups = np.sort(rng.choice(9000, size=n, replace=False)) + 1
    ids = [f"{g:04d}_{rng.integers(1, 4):02d}" for g in groups]
    frame = pd.DataFrame({
        "PassengerId": ids,
        "HomePlanet": _with_missing(rng, list(rng.choice(["Earth", "Europa", "Mars"], n))),
        "CryoSleep": _with_missing(rng, [bool(v) for v in rng.integers(0, 2, n)]),
        "Cabin": _with_missing(rng, [f"{rng.choice(list('ABCDEFG'))}/{rng.integers(0, 1800)}/{rng.choice(['P', 'S'])}"
                                     for _ in range(n)]),
        "Destination": _with_missing(rng, list(rng.choice(["TRAPPIST-1e", "PSO J318.5-22", "55 Cancri e"], n))),
        "Age": _with_missing(rng, [float(v) for v in rng.integers(0, 80, n)]),
        "VIP": _with_missing(rng, [bool(v) for v in rng.random(n) < 0.05]),
    })
    for col in ["RoomService", "FoodCourt", "ShoppingMall", "Spa", "VRDeck"]:
        frame[col] = _with_missing(rng, [float(v) if v > 600 else 0.0 for v in rng.integers(0, 3000, n)])
    frame["Name"] = _with_missing(rng, [f"Name{i} Family{i % 7}" for i in range(n)])
    frame["Transported"] = rng.random(n) < 0.5
    frame.to_csv(raw / "train.csv", index=False)
    test = frame.drop(columns=["Transported"]).assign(PassengerId=[f"{9100 + i:04d}_01" for i in range(n // 2)] * 2)
    test.head(n // 2).to_csv(raw / "test.csv", index=False)
    test.head(n // 2)[["PassengerId"]].assign(Transported=False).to_csv(raw / "sample_submission.csv", index=False)


def test_spaceship_titanic(tmp_path):
    expect = tmp_path / "expect"
    expect.mkdir()
    make_spaceship(expect, np.random.default_rng(0))
    train, test = train_test_split(pd.read_csv(expect / "train.csv"), test_size=0.1, random_state=0)
    sample_score = round(float((~test["Transported"].astype(bool)).mean()), 5)
    p = run_checks("spaceship-titanic", make_spaceship, tmp_path,
                   public={"train.csv", "test.csv", "sample_submission.csv"}, private={"test.csv"},
                   test_rows=8, sample_score=sample_score, perfect_score=1.0)
    assert (p.public / "train.csv").read_bytes() == _csv_bytes(train)
    assert (p.private / "test.csv").read_bytes() == _csv_bytes(test)
    assert (p.public / "test.csv").read_bytes() == _csv_bytes(test.drop(columns="Transported"))
    sample = pd.read_csv(p.public / "sample_submission.csv")
    assert list(sample.columns) == ["PassengerId", "Transported"] and not sample["Transported"].any()
    gold = p.answers()[["PassengerId", "Transported"]]
    # v1 sorts by PassengerId: order is free; 0/1 equals False/True as pandas compares them.
    shuffled = gold.sample(frac=1.0, random_state=3).astype({"Transported": int})
    assert _grade(p, shuffled, tmp_path).score == 1.0
    assert _grade(p, gold.assign(extra=1), tmp_path).score == 1.0  # extra columns are ignored
    renamed = gold.copy()
    renamed.loc[0, "PassengerId"] = "9999_99"
    assert "missing from the submission" in _grade(p, renamed, tmp_path).reason
    assert "rows" in _grade(p, gold.head(5), tmp_path).reason
    assert not _grade(p, gold.assign(Transported=None), tmp_path).valid_submission


# ---------------------------------------------------------------- playground-series-s3e18

S3E18_FEATURES = [
    "BertzCT", "Chi1", "Chi1n", "Chi1v", "Chi2n", "Chi2v", "Chi3v", "Chi4n", "EState_VSA1", "EState_VSA2",
    "ExactMolWt", "FpDensityMorgan1", "FpDensityMorgan2", "FpDensityMorgan3", "HallKierAlpha",
    "HeavyAtomMolWt", "Kappa3", "MaxAbsEStateIndex", "MinEStateIndex", "NumHeteroatoms", "PEOE_VSA10",
    "PEOE_VSA14", "PEOE_VSA6", "PEOE_VSA7", "PEOE_VSA8", "SMR_VSA10", "SMR_VSA5", "SlogP_VSA3",
    "VSA_EState9", "fr_COO", "fr_COO2",
]
S3E18_TARGETS = ["EC1", "EC2", "EC3", "EC4", "EC5", "EC6"]


def make_s3e18(raw: Path, rng: np.random.Generator) -> None:
    n = 100
    frame = pd.DataFrame({"id": np.arange(n)})
    for i, col in enumerate(S3E18_FEATURES):
        frame[col] = rng.integers(0, 12, n) if col.startswith(("Num", "fr_")) else rng.normal(10 * i, 3.3, n)
    for col in S3E18_TARGETS:
        frame[col] = rng.integers(0, 2, n)
    frame.to_csv(raw / "train.csv", index=False)
    test = frame.drop(columns=S3E18_TARGETS).head(40).assign(id=np.arange(n, n + 40))
    test.to_csv(raw / "test.csv", index=False)
    test[["id"]].assign(EC1=0.5, EC2=0.5).to_csv(raw / "sample_submission.csv", index=False)


def test_playground_s3e18(tmp_path):
    expect = tmp_path / "expect"
    expect.mkdir()
    make_s3e18(expect, np.random.default_rng(0))
    train, test = train_test_split(pd.read_csv(expect / "train.csv", **EXACT_FLOATS),
                                   test_size=0.1, random_state=0)
    p = run_checks("playground-series-s3e18", make_s3e18, tmp_path,
                   public={"train.csv", "test.csv", "sample_submission.csv"}, private={"test.csv"},
                   test_rows=10, sample_score=0.5, perfect_score=1.0)
    assert (p.public / "train.csv").read_bytes() == _csv_bytes(train)
    assert (p.private / "test.csv").read_bytes() == _csv_bytes(test)
    public_test = pd.read_csv(p.public / "test.csv")
    assert list(public_test.columns) == ["id", *S3E18_FEATURES]  # 32 columns, as v1 asserts
    assert list(pd.read_csv(p.public / "sample_submission.csv").columns) == ["id", "EC1", "EC2"]
    answers = p.answers()
    # Macro AUC over EC1 and EC2: a perfect EC1 and a constant EC2 give (1 + 0.5) / 2.
    half = answers[["id", "EC1", "EC2"]].astype(float).assign(EC2=0.3)
    assert _grade(p, half, tmp_path).score == 0.75
    # No [0, 1] range check in v1 (AUC ranks only): scores outside [0, 1] are valid.
    scaled = answers[["id", "EC1", "EC2"]].astype(float).assign(EC1=lambda f: f["EC1"] * 7 - 3)
    assert _grade(p, scaled, tmp_path).score == 1.0
    assert "missing column" in _grade(p, answers[["id", "EC1"]], tmp_path).reason
    nan = answers[["id", "EC1", "EC2"]].astype(float)
    nan.loc[0, "EC1"] = np.nan
    assert "missing value" in _grade(p, nan, tmp_path).reason


# ---------------------------------------------------------------- ml2021spring-hw2


def make_timit(raw: Path, rng: np.random.Generator) -> None:
    folder = raw / "timit_11" / "timit_11"
    folder.mkdir(parents=True)
    n_train, n_test = 90, 33
    np.save(folder / "train_11.npy", rng.normal(0, 1, (n_train, 429)).astype(np.float32))
    np.save(folder / "train_label_11.npy", np.array([str(v) for v in rng.integers(0, 39, n_train)]))
    np.save(folder / "test_11.npy", rng.normal(0, 1, (n_test, 429)).astype(np.float32))


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_ml2021spring_hw2(tmp_path, monkeypatch):
    from hpc_mle.prepare import tabular

    monkeypatch.setattr(tabular, "TIMIT_CHUNK_ROWS", 7)  # several chunks, one of them partial
    expect = tmp_path / "expect"
    expect.mkdir()
    make_timit(expect, np.random.default_rng(0))
    src = expect / "timit_11" / "timit_11"
    features, labels = np.load(src / "train_11.npy"), np.load(src / "train_label_11.npy")
    share = 33 / (90 + 33)
    train_idx, test_idx = train_test_split(range(90), test_size=share, random_state=0)
    p = run_checks("ml2021spring-hw2", make_timit, tmp_path,
                   public={"timit_11", "sampleSubmission.csv"}, private={"answers.csv"},
                   test_rows=len(test_idx), perfect_score=1.0)
    out = p.public / "timit_11" / "timit_11"
    assert sorted(x.name for x in out.iterdir()) == ["test_11.npy", "train_11.npy", "train_label_11.npy"]
    assert (out / "train_11.npy").read_bytes() == _npy_bytes(features[train_idx])
    assert (out / "test_11.npy").read_bytes() == _npy_bytes(features[test_idx])
    assert (out / "train_label_11.npy").read_bytes() == _npy_bytes(labels[train_idx])
    answers = pd.DataFrame({"Id": range(len(test_idx)), "ClassId": labels[test_idx]})
    assert (p.private / "answers.csv").read_bytes() == _csv_bytes(answers)
    assert (p.public / "sampleSubmission.csv").read_bytes() == _csv_bytes(answers.assign(ClassId=0))
    gold = p.answers()
    assert _grade(p, gold.iloc[::-1], tmp_path).score == 1.0
    as_text = gold.assign(ClassId="c" + gold["ClassId"].astype(str))
    report = _grade(p, as_text, tmp_path)  # v1: text labels never equal the numeric answers
    assert report.valid_submission and report.score == 0.0
    assert "id(s)" in _grade(p, gold.assign(Id=gold["Id"] + 1), tmp_path).reason
