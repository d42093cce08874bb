"""The embedded mini benchmark: real package data, prepared reproducibly, graded against a reference panel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hpc_mle import competitions, grading, medals, paths
from hpc_mle.prepare import current_checksums, expected_checksums, prepare, verify
from hpc_mle.prepare.panel import LEADERBOARD_COLUMNS, PIXELS, _orientation_histograms, build_panel, solutions

MINI = [
    "mini-ames-housing",
    "mini-churn",
    "mini-digits",
    "mini-fine-food-reviews",
    "mini-leaf-species",
    "mini-movie-genres",
]
REBUILT = "mini-churn"
REBUILT_SOLUTIONS = 3


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """Every mini competition prepared once for the whole session."""
    root = tmp_path_factory.mktemp("mini-data")
    for cid in MINI:
        assert prepare(cid, root).action == "prepared"
    return root


def public_csv(cid: str, data_dir: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(paths.public_dir(cid, data_dir) / name)


def answers(cid: str, data_dir: Path) -> pd.DataFrame:
    return pd.read_csv(paths.private_dir(cid, data_dir) / "test.csv")


def leaderboard(cid: str) -> pd.DataFrame:
    spec = competitions.get(cid)
    return pd.read_csv(spec.folder / "leaderboard.csv")


def test_the_mini_split_holds_the_six_competitions():
    assert competitions.split_ids("mini") == MINI
    for cid in MINI:
        spec = competitions.get(cid)
        assert spec.implemented and spec.leaderboard.source == "reference-panel"
        assert spec.preparer.startswith("hpc_mle.prepare.mini:")


@pytest.mark.parametrize("cid", MINI)
def test_prepared_files_match_the_shipped_checksums(cid, data_dir):
    spec = competitions.get(cid)
    assert verify(cid, data_dir) == []
    want = expected_checksums(spec)
    assert want is not None, f"{cid}: no checksums.yaml shipped"
    assert current_checksums(cid, data_dir) == {"public": want["public"], "private": want["private"]}


@pytest.mark.parametrize("cid", MINI)
def test_preparing_twice_is_a_no_op(cid, data_dir):
    assert prepare(cid, data_dir).action == "already-prepared"


@pytest.mark.parametrize("cid", MINI)
def test_public_files_hold_no_answers(cid, data_dir):
    spec = competitions.get(cid)
    public = paths.public_dir(cid, data_dir)
    for name in ("train.csv", "test.csv", "sample_submission.csv", "description.md"):
        assert (public / name).is_file(), name
    train, test = public_csv(cid, data_dir, "train.csv"), public_csv(cid, data_dir, "test.csv")
    scored = grading.scored_columns(spec, answers(cid, data_dir))
    assert not set(scored) & set(test.columns)
    assert set(test.columns) < set(train.columns), "test.csv must be train.csv without its target"
    assert not set(train["id"]) & set(test["id"])


@pytest.mark.parametrize("cid", MINI)
def test_answers_and_sample_submission_cover_exactly_the_test_ids(cid, data_dir):
    test, ans = public_csv(cid, data_dir, "test.csv"), answers(cid, data_dir)
    sample = public_csv(cid, data_dir, "sample_submission.csv")
    assert len(ans) == len(test) == len(sample)
    assert ans["id"].tolist() == test["id"].tolist() == sample["id"].tolist()
    assert list(sample.columns) == list(ans.columns)


def test_digit_images_exist_for_every_row(data_dir):
    public = paths.public_dir("mini-digits", data_dir)
    for part in ("train", "test"):
        ids = public_csv("mini-digits", data_dir, f"{part}.csv")["id"]
        assert sorted(p.name for p in (public / part).iterdir()) == sorted(f"{i}.png" for i in ids)


@pytest.mark.parametrize("cid", MINI)
def test_sample_submission_scores_below_the_median_and_wins_nothing(cid, data_dir):
    spec = competitions.get(cid)
    path = paths.prepared_dir(cid, data_dir) / spec.files.sample_submission
    report = grading.grade_submission(path, cid, data_dir)
    assert report.valid_submission, report.reason
    assert report.leaderboard_source == "reference-panel"
    worse = report.score > report.median_threshold if report.is_lower_better else report.score < report.median_threshold
    assert worse and not report.above_median and not report.any_medal
    assert report.score == spec.sample_score


@pytest.mark.parametrize("cid", MINI)
def test_the_answers_themselves_earn_gold(cid, data_dir):
    spec = competitions.get(cid)
    report = grading.grade_submission(paths.prepared_dir(cid, data_dir) / spec.files.answers, cid, data_dir)
    assert report.valid_submission, report.reason
    assert report.gold_medal


@pytest.mark.parametrize("cid", MINI)
def test_leaderboard_is_a_kaggle_shaped_panel_of_at_least_100(cid):
    spec = competitions.get(cid)
    board = leaderboard(cid)
    assert list(board.columns) == LEADERBOARD_COLUMNS
    assert len(board) >= 100 and len(board) == spec.leaderboard.teams
    assert board["teamId"].tolist() == list(range(1, len(board) + 1))
    assert sorted(board["solution"]) == sorted(s.name for s in solutions(cid))
    ordered = board["score"].is_monotonic_increasing if not spec.metric.higher_is_better \
        else board["score"].is_monotonic_decreasing
    assert ordered, "best first"
    assert medals.is_lower_better(board["score"]) == (not spec.metric.higher_is_better)


def test_panel_solutions_rebuild_the_shipped_scores(data_dir):
    rebuilt = build_panel(REBUILT, data_dir, limit=REBUILT_SOLUTIONS)
    assert len(rebuilt) == REBUILT_SOLUTIONS
    shipped = leaderboard(REBUILT).set_index("solution")["score"]
    for name, score in zip(rebuilt["solution"], rebuilt["score"], strict=True):
        assert shipped[name] == pytest.approx(score, rel=0, abs=1e-12), name  # equal up to CSV parsing


STRONG_LABEL = r"^(?:tuned |blend\()"
REBUILT_STRONG = "mini-digits"
CHEAP_BASES = ["knn(k=3,weights=distance) features=pca(30)", "logreg(C=1.0) features=hog+pixels"]


@pytest.mark.parametrize("cid", MINI)
def test_strong_group_holds_the_top_and_the_weak_tail_the_bottom(cid):
    """Kaggle's shape: the medal places go to tuned models and blends, the bottom half to ordinary work."""
    board = leaderboard(cid)
    strong = board["solution"].str.contains(STRONG_LABEL)
    gold, _, bronze = medals.medal_positions(len(board))
    assert strong.iloc[:gold].mean() >= 0.8, board.loc[:gold - 1, "solution"][~strong.iloc[:gold]].tolist()
    assert strong.iloc[:bronze].mean() >= 0.75
    assert (~strong.iloc[len(board) // 2:]).mean() >= 0.6
    assert board["solution"].is_unique and board["solution"].str.len().gt(0).all()


def test_strong_entries_and_their_blend_rebuild_the_shipped_scores(data_dir):
    names = [f"tuned {CHEAP_BASES[0]}", f"tuned {CHEAP_BASES[1]}", f"blend({CHEAP_BASES[0]} + {CHEAP_BASES[1]})"]
    rebuilt = build_panel(REBUILT_STRONG, data_dir, names=names).set_index("solution")["score"]
    shipped = leaderboard(REBUILT_STRONG).set_index("solution")["score"]
    assert sorted(rebuilt.index) == sorted(names)
    for name in names:
        assert shipped[name] == pytest.approx(rebuilt[name], rel=0, abs=1e-12), name


def test_orientation_histograms_put_a_vertical_edge_in_the_horizontal_bin():
    """A dark-to-bright step across columns has a purely horizontal gradient: orientation 0, bin 0."""
    image = np.zeros((8, 8))
    image[:, 4:] = 16.0
    frame = pd.DataFrame(image.reshape(1, 64), columns=PIXELS)
    features = _orientation_histograms(frame)
    cells = features[0, :32].reshape(4, 8)
    assert features.shape == (1, 32 + 64)
    # central differences: columns 3 and 4 each get a gradient of 16 / 2, in all 8 rows
    assert cells[:, 1:].sum() == 0 and cells[:, 0].sum() == pytest.approx(8 * 2 * 8.0)
    assert features[0, 32:].tolist() == image.reshape(64).tolist()
