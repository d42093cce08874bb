"""The checks every MLE-bench Lite competition must pass, on synthetic Kaggle-shaped raw files.

A test module per group of competitions supplies `make_raw(raw_dir, rng)`: it writes what
extracting Kaggle's zip would give (same file names, folder layout, columns and types; a few
hundred rows, tiny images or audio). `check_competition` then prepares it with the real preparer
and checks the layout, that no answer reaches `public/`, and grading: the sample submission, a
perfect one, a broken one, and medals from a synthetic leaderboard (none without one).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hpc_mle import competitions, grading, paths
from hpc_mle.competitions import CompetitionSpec
from hpc_mle.prepare import prepare

MakeRaw = Callable[[Path, np.random.Generator], None]


@dataclass
class Prepared:
    spec: CompetitionSpec
    data_dir: Path

    @property
    def public(self) -> Path:
        return paths.public_dir(self.spec.id, self.data_dir)

    @property
    def private(self) -> Path:
        return paths.private_dir(self.spec.id, self.data_dir)

    def answers(self) -> pd.DataFrame:
        return pd.read_csv(paths.prepared_dir(self.spec.id, self.data_dir) / self.spec.files.answers)

    def sample_path(self) -> Path:
        return paths.prepared_dir(self.spec.id, self.data_dir) / self.spec.files.sample_submission

    def gold(self) -> pd.DataFrame:
        """A perfect submission: the gold file where the spec names one, else the answers' scored columns."""
        if self.spec.files.gold_submission:
            return pd.read_csv(paths.prepared_dir(self.spec.id, self.data_dir) / self.spec.files.gold_submission)
        answers = self.answers()
        sample_columns = list(pd.read_csv(self.sample_path(), nrows=0).columns)
        return answers[[c for c in sample_columns if c in answers.columns]]


def prepare_from_raw(cid: str, make_raw: MakeRaw, data_dir: Path, seed: int = 0) -> Prepared:
    """Write the synthetic download into `<data>/<id>/raw/` and run the real preparation."""
    raw = paths.raw_dir(cid, data_dir)
    raw.mkdir(parents=True, exist_ok=True)
    make_raw(raw, np.random.default_rng(seed))
    prepare(cid, data_dir)
    return Prepared(competitions.get(cid), data_dir)


def _csv_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.csv") if p.name != "description.md")


def check_layout(p: Prepared, public: set[str], private: set[str]) -> None:
    """Exactly these top-level names in public/ and private/ (description.md is added by prepare)."""
    assert {x.name for x in p.public.iterdir()} == public | {"description.md"}
    assert {x.name for x in p.private.iterdir()} == private
    assert p.spec.implemented and p.spec.download == "kaggle"
    assert (p.public / "description.md").read_text().strip()


def check_no_answers_in_public(p: Prepared) -> None:
    """No public CSV (but the sample submission) pairs a test id with that test row's answers.

    A row counts as a leak when its id and every answer column it has equal one answers row, so
    ids that are renumbered per file (nomad2018: 1..N in train and in test) are not a leak by themselves.
    """
    answers = p.answers()
    id_col = p.spec.submission.id_columns[0]
    scored = [c for c in grading.scored_columns(p.spec, answers) if c != id_col]
    for path in _csv_files(p.public):
        if path.resolve() == p.sample_path().resolve():
            continue
        head = list(pd.read_csv(path, nrows=0).columns)
        shared = [c for c in scored if c in head]
        if id_col not in head or not shared:
            continue
        public = pd.read_csv(path, usecols=[id_col, *shared]).astype(str)
        leaked = public.merge(answers[[id_col, *shared]].astype(str), on=[id_col, *shared])
        assert leaked.empty, f"{path.name} holds answers of test rows, e.g. {leaked.iloc[0].to_dict()}"


def _grade(p: Prepared, frame_or_path, tmp: Path, name: str) -> grading.CompetitionReport:
    if isinstance(frame_or_path, pd.DataFrame):
        path = tmp / f"{name}.csv"
        frame_or_path.to_csv(path, index=False)
    else:
        path = frame_or_path
    return grading.grade_submission(path, p.spec.id, p.data_dir)


def broken(frame: pd.DataFrame) -> pd.DataFrame:
    """A submission missing its last scored column: every grader must refuse it."""
    return frame.drop(columns=frame.columns[-1])


def check_grading(p: Prepared, tmp: Path, *, sample_score: float | None = None,
                  perfect_score: float | None = None) -> None:
    """Sample, perfect and broken submissions; then medals from a synthetic 100-team leaderboard."""
    tmp.mkdir(parents=True, exist_ok=True)
    board_path = paths.competition_dir(p.spec.id, p.data_dir) / "leaderboard.csv"
    board_path.unlink(missing_ok=True)

    sample = _grade(p, p.sample_path(), tmp, "sample")
    assert sample.valid_submission, sample.reason
    assert sample.any_medal is None and "medals unknown" in (sample.reason or "")
    if sample_score is not None:
        assert sample.score == sample_score or abs(sample.score - sample_score) < 1e-5, sample.score

    perfect = _grade(p, p.gold(), tmp, "perfect")
    assert perfect.valid_submission, perfect.reason
    if perfect_score is not None:
        assert abs(perfect.score - perfect_score) < 1e-5, perfect.score

    bad = _grade(p, broken(p.gold()), tmp, "broken")
    assert not bad.valid_submission and bad.reason and not bad.grader_error, bad.reason

    # 100 teams spread between the perfect and the sample score, best first (as Kaggle lists them).
    lower = p.spec.metric.higher_is_better is False
    best, worst = perfect.score, sample.score
    scores = np.linspace(best + (0.02 if lower else -0.02) * abs(best - worst), worst, 100)
    pd.DataFrame({"teamId": range(1, 101), "score": scores}).to_csv(board_path, index=False)
    try:
        gold = _grade(p, p.gold(), tmp, "perfect")
        assert gold.gold_medal and gold.any_medal and gold.is_lower_better == lower
        again = _grade(p, p.sample_path(), tmp, "sample")
        assert again.any_medal is False and again.above_median is False
    finally:
        board_path.unlink()


def run_checks(cid: str, make_raw: MakeRaw, tmp: Path, *, public: set[str], private: set[str],
               test_rows: int | None = None, sample_score: float | None = None,
               perfect_score: float | None = None) -> Prepared:
    """The whole list for one competition; returns the prepared competition for extra checks."""
    data_dir = tmp / "data"
    p = prepare_from_raw(cid, make_raw, data_dir)
    check_layout(p, public, private)
    check_no_answers_in_public(p)
    if test_rows is not None:
        assert len(p.answers()) == test_rows
    check_grading(p, tmp / "subs", sample_score=sample_score, perfect_score=perfect_score)
    # Preparing again is a no-op; raw files are kept for a re-preparation.
    assert prepare(cid, data_dir).action == "already-prepared"
    shutil.rmtree(tmp / "subs", ignore_errors=True)
    return p
