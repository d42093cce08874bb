"""Medal rules of MLE-bench v1 (facts §2.3, §2.4), each value worked out by hand."""

import math

import pandas as pd
import pytest

from hpc_mle import medals


@pytest.mark.parametrize(
    ("teams", "positions"),
    [
        (1, (1, 1, 1)),  # max(1, int(0.1)) everywhere
        (5, (1, 1, 2)),  # int(0.5)=0 -> 1, int(1.0)=1, int(2.0)=2
        (99, (9, 19, 39)),  # int(9.9), int(19.8), int(39.6)
        (100, (10, 20, 40)),  # band 100-249: gold fixed at 10
        (249, (10, 49, 99)),
        (250, (10, 50, 100)),  # band 250-999: 10 + int(0.5)=10, then fixed 50 and 100
        (999, (11, 50, 100)),  # 10 + int(1.998)
        (1000, (12, 50, 100)),  # band >=1000: 10 + int(2.0), int(50.0), int(100.0)
        (2000, (14, 100, 200)),
    ],
)
def test_medal_positions_follow_kaggle_team_bands(teams, positions):
    assert medals.medal_positions(teams) == positions


def test_no_teams_is_an_error():
    with pytest.raises(medals.LeaderboardError):
        medals.medal_positions(0)


def board(n: int, higher_is_better: bool = True) -> pd.Series:
    """Scores 1..n in rank order: best first."""
    values = list(range(n, 0, -1)) if higher_is_better else list(range(1, n + 1))
    return pd.Series(values, dtype=float)


def test_thresholds_are_read_by_position_with_the_median_of_all_scores():
    t = medals.thresholds(board(100))  # scores 100, 99, ..., 1
    assert (t.gold, t.silver, t.bronze) == (91.0, 81.0, 61.0)  # positions 10, 20, 40
    assert t.median == 50.5  # mean of the two middle values
    assert not t.is_lower_better and t.teams == 100


def test_lower_is_better_is_inferred_from_first_and_last_rows():
    t = medals.thresholds(board(1000, higher_is_better=False))  # 1, 2, ..., 1000
    assert t.is_lower_better
    assert (t.gold, t.silver, t.bronze) == (12.0, 50.0, 100.0)
    assert t.median == 500.5


def test_equal_first_and_last_or_nan_ends_read_as_higher_is_better():
    assert not medals.is_lower_better(pd.Series([1.0, 1.0, 1.0]))
    assert not medals.is_lower_better(pd.Series([float("nan"), 2.0, 3.0]))
    assert not medals.is_lower_better(pd.Series([1.0, 2.0, float("nan")]))


def test_nan_rows_count_as_teams_but_not_for_the_median():
    t = medals.thresholds(pd.Series([5.0, 4.0, 3.0, float("nan"), float("nan")]))
    assert t.teams == 5
    assert t.median == 4.0  # median of 5, 4, 3


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (91.0, (True, False, False, True)),  # tie with the gold threshold earns gold
        (90.99, (False, True, False, True)),
        (81.0, (False, True, False, True)),  # tie with silver
        (61.0, (False, False, True, True)),  # tie with bronze
        (60.99, (False, False, False, True)),
        (50.5, (False, False, False, False)),  # equal to the median is not above it
        (50.50001, (False, False, False, True)),
        (1000.0, (True, False, False, True)),  # medals are mutually exclusive
    ],
)
def test_award_higher_is_better(score, expected):
    m = medals.award(score, medals.thresholds(board(100)))
    assert (m.gold, m.silver, m.bronze, m.above_median) == expected
    assert m.any == any(expected[:3])


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (12.0, (True, False, False, True)),
        (12.5, (False, True, False, True)),
        (50.0, (False, True, False, True)),
        (100.0, (False, False, True, True)),
        (100.01, (False, False, False, True)),
        (500.5, (False, False, False, False)),
        (0.0, (True, False, False, True)),
    ],
)
def test_award_lower_is_better(score, expected):
    m = medals.award(score, medals.thresholds(board(1000, higher_is_better=False)))
    assert (m.gold, m.silver, m.bronze, m.above_median) == expected


@pytest.mark.parametrize("score", [None, float("nan")])
def test_invalid_or_nan_score_earns_nothing(score):
    assert medals.award(score, medals.thresholds(board(100))) == medals.NO_MEDALS


def test_read_leaderboard_needs_a_score_column(tmp_path):
    good = tmp_path / "lb.csv"
    good.write_text("teamId,score\n1,0.9\n2,0.8\n")
    assert list(medals.read_leaderboard(good)) == [0.9, 0.8]
    bad = tmp_path / "bad.csv"
    bad.write_text("teamId,points\n1,3\n")
    with pytest.raises(medals.LeaderboardError, match="no 'score' column"):
        medals.read_leaderboard(bad)


def test_thresholds_are_floats():
    t = medals.thresholds(pd.Series([3, 2, 1]))
    assert all(isinstance(v, float) for v in (t.gold, t.silver, t.bronze, t.median))
    assert not math.isnan(t.median)
