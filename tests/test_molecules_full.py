"""The molecular competitions (stanford-covid-vaccine, champs-scalar-coupling) on synthetic
Kaggle-shaped downloads, with the Lite checks of `lite_support` and the v1 quirks each grader keeps."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lite_support import run_checks

from hpc_mle import grading, metrics

# ---------------------------------------------------------------- helpers


def _grade(p, frame: pd.DataFrame, tmp: Path, name: str = "sub.csv", mode: str = "v1") -> grading.CompetitionReport:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / name
    frame.to_csv(path, index=False)
    return grading.grade_submission(path, p.spec.id, p.data_dir, mode)


# ---------------------------------------------------------------- stanford-covid-vaccine

COVID_TARGETS = ["reactivity", "deg_Mg_pH10", "deg_pH10", "deg_Mg_50C", "deg_50C"]
COVID_LENGTH, COVID_SCORED = 12, 8


def _bases(rng, n, alphabet):
    return "".join(rng.choice(list(alphabet), size=n))


def make_covid(raw: Path, rng: np.random.Generator) -> None:
    """train.json / test.json as Kaggle ships them (JSON lines), a sample submission, a bpps/ folder."""
    rows = []
    for i in range(40):
        sn = float(np.round(rng.uniform(0.5, 9), 3))
        row = {"index": i, "id": f"id_{rng.integers(16**9):09x}", "sequence": _bases(rng, COVID_LENGTH, "ACGU"),
               "structure": _bases(rng, COVID_LENGTH, "(.)"), "predicted_loop_type": _bases(rng, COVID_LENGTH, "SEHBXIM"),
               "signal_to_noise": sn, "SN_filter": int(i % 3 != 0), "seq_length": COVID_LENGTH,
               "seq_scored": COVID_SCORED}
        for t in ["reactivity_error", "deg_error_Mg_pH10", "deg_error_pH10", "deg_error_Mg_50C", "deg_error_50C"]:
            row[t] = [float(v) for v in np.round(rng.uniform(0, 0.3, COVID_SCORED), 4)]
        for t in COVID_TARGETS:
            row[t] = [float(v) for v in np.round(rng.normal(0.5, 0.4, COVID_SCORED), 4)]
        rows.append(row)
    (raw / "train.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    test_rows = [{"index": i, "id": f"id_t{i:07d}", "sequence": _bases(rng, 16, "ACGU"),
                  "structure": _bases(rng, 16, "(.)"), "predicted_loop_type": _bases(rng, 16, "SEHBXIM"),
                  "seq_length": 16, "seq_scored": 10} for i in range(5)]
    (raw / "test.json").write_text("".join(json.dumps(r) + "\n" for r in test_rows))
    sample = pd.DataFrame({"id_seqpos": [f"{r['id']}_{j}" for r in test_rows for j in range(16)]})
    for t in COVID_TARGETS:
        sample[t] = 0.0
    sample.to_csv(raw / "sample_submission.csv", index=False)
    (raw / "bpps").mkdir()
    for r in rows[:3]:
        np.save(raw / "bpps" / f"{r['id']}.npy", np.zeros((COVID_LENGTH, COVID_LENGTH)))


def _covid_expected(raw: Path) -> tuple[list[str], float]:
    """The test ids and the all-zero sample's MCRMSE, computed here from the raw JSON (hand check)."""
    train = [json.loads(line) for line in (raw / "train.json").read_text().splitlines()]
    n_test = int(len(train) * 0.1)
    frame = pd.DataFrame(train)
    chosen = set(frame[frame["SN_filter"] > 0].sample(n=n_test, random_state=0)["id"])
    test = [r for r in train if r["id"] in chosen]  # file order
    rmses = [math.sqrt(sum(v * v for r in test for v in r[t]) / (len(test) * COVID_SCORED))
             for t in ["reactivity", "deg_Mg_pH10", "deg_Mg_50C"]]
    return [r["id"] for r in test], sum(rmses) / 3


def test_stanford_covid_vaccine(tmp_path):
    ref = tmp_path / "ref"
    ref.mkdir()
    make_covid(ref, np.random.default_rng(0))
    test_ids, sample_score = _covid_expected(ref)
    p = run_checks("stanford-covid-vaccine", make_covid, tmp_path,
                   public={"train.json", "test.json", "sample_submission.csv"}, private={"test.csv"},
                   test_rows=len(test_ids) * COVID_LENGTH, sample_score=round(sample_score, 5), perfect_score=0.0)
    answers = p.answers()
    assert list(answers.columns) == ["id_seqpos", *COVID_TARGETS, "keep"]
    assert answers["id_seqpos"].tolist() == [f"{i}_{j}" for i in test_ids for j in range(COVID_LENGTH)]
    assert answers["keep"].tolist() == ([True] * COVID_SCORED + [False] * (COVID_LENGTH - COVID_SCORED)) * len(test_ids)
    text = (p.private / "test.csv").read_text().splitlines()
    assert text[1].split(",")[1].count(".") == 1 and len(text[1].split(",")[1].split(".")[1]) == 10  # %.10f
    train = pd.read_json(p.public / "train.json", lines=True)
    test = pd.read_json(p.public / "test.json", lines=True)
    assert train["index"].tolist() == list(range(len(train))) and test["index"].tolist() == list(range(len(test)))
    assert test["id"].tolist() == test_ids and not set(COVID_TARGETS) & set(test.columns)
    assert set(test_ids).isdisjoint(train["id"]) and len(train) + len(test) == 40

    tmp = tmp_path / "more"
    gold = answers[["id_seqpos", *COVID_TARGETS]]
    # v1 needs deg_pH10 and deg_50C though it does not score them; NaN in unscored rows is fine.
    assert "missing column" in _grade(p, gold.drop(columns=["deg_pH10"]), tmp).reason
    holes = gold.copy()
    holes.loc[~answers["keep"], "reactivity"] = np.nan
    holes["deg_50C"] = np.nan
    assert _grade(p, holes, tmp).score == 0.0
    holes.loc[0, "reactivity"] = np.nan
    assert "missing value" in _grade(p, holes, tmp).reason
    # v1's quirk: the keep mask picks submission rows by file line. Shuffled perfect rows: v1 scores
    # other rows (not 0, still valid); the corrected grade is 0.
    shuffled = gold.sample(frac=1, random_state=1)
    v1 = _grade(p, shuffled, tmp)
    assert v1.valid_submission and v1.score > 0 and v1.corrected_score == 0.0 and v1.v1_score == v1.score
    assert _grade(p, shuffled, tmp, mode="corrected").score == 0.0


def test_covid_v1_pairing_matches_pandas_label_alignment():
    """The v1 pairing, built as v1's pandas code does it, on a tiny frame in an odd order."""
    answers = pd.DataFrame({"id_seqpos": ["a_0", "a_1", "a_2", "b_0", "b_1", "b_2"],
                            "reactivity": [1.0, 2.0, 0.0, 3.0, 4.0, 0.0], "keep": [True, True, False] * 2})
    sub = pd.DataFrame({"id_seqpos": ["b_2", "a_0", "b_0", "a_2", "a_1", "b_1"],
                        "reactivity": [10.0, 1.5, 2.5, 20.0, 4.0, 3.0]})
    s_sorted, a_sorted = sub.sort_values("id_seqpos"), answers.sort_values("id_seqpos")
    mask = a_sorted["keep"]
    with pytest.warns(UserWarning):  # pandas: "Boolean Series key will be reindexed"
        picked = s_sorted[mask]["reactivity"].to_numpy()
    want = math.sqrt(np.mean((a_sorted[mask]["reactivity"].to_numpy() - picked) ** 2))

    from hpc_mle import competitions
    spec = competitions.get("stanford-covid-vaccine")
    spec = spec.__class__(**{**spec.__dict__, "submission": spec.submission.__class__(
        id_columns=("id_seqpos",), answer_columns=("reactivity",), context_columns=("keep",),
        row_order="id-mask-by-file-position")})
    y_true, y_pred = grading.validate_and_align(spec, sub, answers)
    got = metrics.mean_columnwise_rmse(y_true, y_pred, mask_column="keep")
    assert got == pytest.approx(want)
    y_true, y_pred = grading.validate_and_align(spec, sub, answers, "id")
    assert metrics.mean_columnwise_rmse(y_true, y_pred, mask_column="keep") == pytest.approx(
        math.sqrt((0.25 + 4 + 0.25 + 1) / 4))


def test_mcrmse_by_hand():
    t = pd.DataFrame({"a": [1.0, 2.0, 9.0], "b": [0.0, 0.0, 9.0], "keep": [True, True, False]})
    p = pd.DataFrame({"a": [2.0, 2.0, 0.0], "b": [3.0, 4.0, np.nan]})
    # a: sqrt((1 + 0) / 2); b: sqrt((9 + 16) / 2); the third row is masked out (its NaN unchecked).
    want = (math.sqrt(0.5) + math.sqrt(12.5)) / 2
    assert metrics.mean_columnwise_rmse(t, p, mask_column="keep") == pytest.approx(want)
    assert metrics.mean_columnwise_rmse(t, p, columns=["a"], mask_column="keep") == pytest.approx(math.sqrt(0.5))
    with pytest.raises(metrics.InvalidSubmission):
        metrics.mean_columnwise_rmse(t, p.assign(a=["x", 1, 2]), mask_column="keep")
