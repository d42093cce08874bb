"""Where a score lands on a leaderboard, with Kaggle's medal rules exactly as MLE-bench v1 applies them.

The one place for these facts (facts §2):
- thresholds are read by *position* in the leaderboard file (best first, never re-sorted), with
  Kaggle's team-count bands (<100, 100-249, 250-999, >=1000 teams);
- the direction is inferred from the first and last rows (first < last means lower is better);
- medal comparisons are inclusive (a tie with the threshold team earns the medal), "above median"
  is strict against the median of all scores;
- a NaN score is a valid submission that earns nothing; an invalid one (None) earns nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


class LeaderboardError(ValueError):
    pass


@dataclass(frozen=True)
class Thresholds:
    gold: float
    silver: float
    bronze: float
    median: float
    is_lower_better: bool
    teams: int


@dataclass(frozen=True)
class Medals:
    gold: bool
    silver: bool
    bronze: bool
    above_median: bool

    @property
    def any(self) -> bool:
        return self.gold or self.silver or self.bronze


NO_MEDALS = Medals(False, False, False, False)


def medal_positions(teams: int) -> tuple[int, int, int]:
    """1-based leaderboard positions of the gold, silver and bronze thresholds for `teams` rows."""
    if teams < 1:
        raise LeaderboardError("a leaderboard needs at least one team")
    if teams < 100:
        return max(1, int(0.1 * teams)), max(1, int(0.2 * teams)), max(1, int(0.4 * teams))
    if teams < 250:
        return 10, max(1, int(0.2 * teams)), max(1, int(0.4 * teams))
    if teams < 1000:
        return 10 + int(0.002 * teams), 50, 100
    return 10 + int(0.002 * teams), max(1, int(0.05 * teams)), max(1, int(0.1 * teams))


def is_lower_better(scores: pd.Series) -> bool:
    """First row strictly below the last row; NaN at either end reads as higher-is-better (as v1)."""
    return bool(scores.iloc[0] < scores.iloc[-1])


def thresholds(scores: pd.Series) -> Thresholds:
    """Thresholds from leaderboard scores in file order (all rows count, NaN ones included)."""
    scores = pd.to_numeric(pd.Series(scores).reset_index(drop=True), errors="coerce")
    gold, silver, bronze = medal_positions(len(scores))
    return Thresholds(
        gold=float(scores.iloc[gold - 1]),
        silver=float(scores.iloc[silver - 1]),
        bronze=float(scores.iloc[bronze - 1]),
        median=float(scores.median()),
        is_lower_better=is_lower_better(scores),
        teams=len(scores),
    )


def award(score: float | None, t: Thresholds) -> Medals:
    """Mutually exclusive medals for a (rounded) score; None means an invalid submission."""
    if score is None or (isinstance(score, float) and math.isnan(score)):
        return NO_MEDALS
    if t.is_lower_better:
        gold, silver, bronze = score <= t.gold, score <= t.silver, score <= t.bronze
        above = score < t.median
    else:
        gold, silver, bronze = score >= t.gold, score >= t.silver, score >= t.bronze
        above = score > t.median
    return Medals(gold=gold, silver=silver and not gold, bronze=bronze and not (gold or silver), above_median=above)


def read_leaderboard(path: str | Path) -> pd.Series:
    """The `score` column of a Kaggle-shaped leaderboard CSV, in file order."""
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except Exception as exc:  # pandas raises many types for unreadable files
        raise LeaderboardError(f"{path}: cannot be read as CSV ({exc})") from exc
    if "score" not in frame.columns:
        raise LeaderboardError(f"{path}: has no 'score' column (columns: {', '.join(frame.columns)})")
    if frame.empty:
        raise LeaderboardError(f"{path}: has no rows")
    return frame["score"]
