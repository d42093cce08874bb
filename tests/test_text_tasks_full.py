"""Text competitions beyond Lite (hpc_mle.prepare.text_tasks) on synthetic Kaggle-shaped downloads.

Each `make_*` writes what extracting the competition's Kaggle zip gives (file names, columns, types),
with a few dozen made-up rows. `lite_support.run_checks` prepares it with the real preparer and
checks layout, leaks, grading and medals; the extra asserts pin v1's split and grader rules.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from lite_support import Prepared, run_checks
from test_fuzz_grading import structural_mutations

from hpc_mle import grading
from hpc_mle.prepare import common


def _grade(p: Prepared, frame: pd.DataFrame, tmp: Path, name: str = "sub.csv") -> grading.CompetitionReport:
    path = tmp / name
    frame.to_csv(path, index=False)
    return grading.grade_submission(path, p.spec.id, p.data_dir)


def _fuzz(p: Prepared, tmp: Path, rounds: int = 40) -> None:
    """Structural damage to the sample submission: always invalid with a reason, never a grader error."""
    sample = pd.read_csv(p.sample_path())
    ids = list(p.spec.submission.id_columns)
    cols = grading.scored_columns(p.spec, p.answers())
    kinds = structural_mutations(ids, cols)
    rng = np.random.default_rng(0)
    for i in range(rounds):
        mutate = kinds[i % len(kinds)]
        path = tmp / f"fuzz{i}.csv"
        path.write_bytes(mutate(sample, rng))
        report = grading.grade_submission(path, p.spec.id, p.data_dir)
        assert not report.valid_submission and report.reason and not report.grader_error, (mutate.__name__,
                                                                                              report.reason)


def _sentences(rng: np.random.Generator, n: int, vocab: list[str]) -> list[str]:
    return [" ".join(rng.choice(vocab, size=int(rng.integers(3, 9)))) for _ in range(n)]


WORDS = ["the", "model", "answer", "is", "correct", "why", "how", "write", "poem", "code", "über", "naïve",
         "a, b", 'say "hi"', "line\nbreak"]

# ---------------------------------------------------------------- lmsys-chatbot-arena


def make_lmsys(raw: Path, rng: np.random.Generator) -> None:
    n = 60
    winners = rng.integers(0, 3, size=n)
    train = pd.DataFrame({
        "id": rng.choice(4_000_000_000, size=n, replace=False),
        "model_a": rng.choice(["gpt-4-1106-preview", "claude-2.1", "llama-2-70b-chat"], size=n),
        "model_b": rng.choice(["gpt-3.5-turbo-0613", "mixtral-8x7b-instruct-v0.1", "vicuna-13b"], size=n),
        "prompt": [json.dumps(_sentences(rng, int(rng.integers(1, 3)), WORDS)) for _ in range(n)],
        "response_a": [json.dumps(_sentences(rng, 1, WORDS)) for _ in range(n)],
        "response_b": [json.dumps(_sentences(rng, 1, WORDS)) if i % 9 else '[null]' for i in range(n)],
        "winner_model_a": (winners == 0).astype(int),
        "winner_model_b": (winners == 1).astype(int),
        "winner_tie": (winners == 2).astype(int),
    })
    train.to_csv(raw / "train.csv", index=False)
    test = train.head(3)[["id", "prompt", "response_a", "response_b"]]
    test.to_csv(raw / "test.csv", index=False)
    pd.DataFrame({"id": test["id"], "winner_model_a": 1 / 3, "winner_model_b": 1 / 3,
                  "winner_tie": 1 / 3}).to_csv(raw / "sample_submission.csv", index=False)


def test_lmsys_chatbot_arena(tmp_path):
    expect = tmp_path / "expect"
    expect.mkdir()
    make_lmsys(expect, np.random.default_rng(0))
    original = pd.read_csv(expect / "train.csv")
    train, test = common.split(original)

    p = run_checks("lmsys-chatbot-arena", make_lmsys, tmp_path,
                   public={"train.csv", "test.csv", "sample_submission.csv"}, private={"answers.csv"},
                   test_rows=6, sample_score=1.09861, perfect_score=0.0)
    answers = p.answers()
    assert list(answers.columns) == list(original.columns)
    assert answers["id"].tolist() == test["id"].tolist()  # the split's row order, as v1
    public_train = pd.read_csv(p.public / "train.csv")
    assert public_train["id"].tolist() == train["id"].tolist()
    assert public_train["prompt"].tolist() == train["prompt"].tolist()  # quotes, commas, newlines survive
    public_test = pd.read_csv(p.public / "test.csv")
    assert list(public_test.columns) == ["id", "prompt", "response_a", "response_b"]
    assert (p.public / "sample_submission.csv").read_text().splitlines()[1].endswith(
        ",0.3333333333333333,0.3333333333333333,0.3333333333333333")

    gold = answers[["id", "winner_model_a", "winner_model_b", "winner_tie"]].astype(
        {c: float for c in ["winner_model_a", "winner_model_b", "winner_tie"]})
    # v1: the row sum rounded to 6 decimals must be 1 (4e-7 off passes, 1e-5 off does not).
    near = gold.copy()
    near.loc[0, "winner_tie"] += 4e-7
    assert _grade(p, near, tmp_path).valid_submission
    off = gold.copy()
    off.loc[0, "winner_tie"] += 1e-5
    assert "sum to 1" in _grade(p, off, tmp_path).reason
    # values outside [0, 1], NaN and text are invalid with a reason
    for value in (-0.1, 1.5, np.nan, "high"):
        bad = gold.astype({"winner_model_a": object})
        bad.loc[1, "winner_model_a"] = value
        report = _grade(p, bad, tmp_path)
        assert not report.valid_submission and report.reason and not report.grader_error
    # extra columns are ignored; the order of rows does not matter (rows are matched by id)
    shuffled = gold.sample(frac=1, random_state=1).assign(note="x")
    assert _grade(p, shuffled, tmp_path).score == 0.0
    # a confident wrong answer on one row of 6: -ln(eps)/6
    wrong = gold.copy()
    wrong.loc[0, ["winner_model_a", "winner_model_b", "winner_tie"]] = (
        1 - gold.loc[0, ["winner_model_a", "winner_model_b", "winner_tie"]]) / 2
    assert _grade(p, wrong, tmp_path).score == round(-float(np.log(np.finfo(float).eps)) / 6, 5)
    _fuzz(p, tmp_path)
