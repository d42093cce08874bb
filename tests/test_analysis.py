"""The analysis on synthetic grades where every expected number is worked out by hand below.

The catalogue is made up: split `lite` = competitions a, b, c, d (d is leaky), `all` = a..h. The
main setting X has these graded attempts (seed -> outcome):

    a: seed 0 gold, seed 1 valid without medal, seed 2 bronze
    b: seed 0 submission made but invalid, seed 2 silver        (seed 1 missing)
    c: seed 5 valid, above median, no medal
    d: never run

Seeds by position: a -> positions 0, 1, 2 = seeds 0, 1, 2; b -> positions 0, 1 = seeds 0, 2;
c -> position 0 = seed 5. So 3 seeds; lite has 4 competitions, hence 3 x 4 = 12 cells, 6 graded,
6 padded as failures.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from hpc_mle import analysis as an
from hpc_mle import grading, report

CAT = an.Catalogue(splits={"lite": ("a", "b", "c", "d"), "all": tuple("abcdefgh")},
                   status={"d": "leaky"})
X = {"scaffold": "aide", "model": "gpt4o", "runtime": "10m", "hardware": "gpu1"}


def attempt(comp: str, seed: int, outcome: str = "none", setting: dict | None = None, **extra) -> dict:
    """One graded attempt. outcome: gold|silver|bronze|none (valid, no medal)|invalid|missing-file."""
    medal = outcome if outcome in ("gold", "silver", "bronze") else None
    valid = outcome not in ("invalid", "missing-file")
    row = {"attempt_id": f"{comp}-{seed}-{(setting or X)['scaffold']}-{(setting or X)['runtime']}",
           "competition_id": comp, "seed": seed, **(setting or X), "benchmark": "lite", "benchmark_split": "lite",
           "time_limit_s": 600.0, "graded": True, "state": "done", "unsandboxed": False,
           "score": 0.5 if valid else None, "submission_exists": outcome != "missing-file",
           "valid_submission": valid, "gold_medal": medal == "gold", "silver_medal": medal == "silver",
           "bronze_medal": medal == "bronze", "any_medal": medal is not None,
           "above_median": medal is not None or extra.pop("above", False), "leaderboard_source": "kaggle",
           "snapshots": [], "graded_at": "2026-11-22T10:00:00+00:00"}
    row.update(extra)
    return row


def frame(rows: list[dict]) -> pd.DataFrame:
    return an.normalise(pd.DataFrame(rows))


def setting_x() -> list[dict]:
    return [attempt("a", 0, "gold"), attempt("a", 1, "none"), attempt("a", 2, "bronze"),
            attempt("b", 0, "invalid"), attempt("b", 2, "silver"), attempt("c", 5, "none", above=True)]


def row_of(board: pd.DataFrame, split: str, view: str = "all", **setting) -> dict:
    want = {**X, **setting}
    match = board[(board["split"] == split) & (board["view"] == view)
                  & (board[an.SETTING] == [want[k] for k in an.SETTING]).all(axis=1)]
    assert len(match) == 1, match
    return match.iloc[0].to_dict()


# ---------------------------------------------------------------- the leaderboard


def test_seeds_by_position_padding_denominator_and_sem():
    r = row_of(an.leaderboard(frame(setting_x()), CAT), "lite")
    assert (r["seeds"], r["competitions"], r["attempted"], r["cells"], r["padded"]) == (3, 4, 3, 6, 6)
    # any medal per position (of 4): p0 a gold -> 25; p1 b's seed 2 silver -> 25; p2 a bronze -> 25.
    assert r["any_medal_mean"] == pytest.approx(25.0) and r["any_medal_sem"] == pytest.approx(0.0)
    # valid: p0 a, c -> 50; p1 a, b -> 50; p2 a -> 25. mean 41.667; deviations 8.333, 8.333, -16.667,
    # squares sum 416.67, / (3-1) = 208.33, sd 14.434, SEM = 14.434 / sqrt(3) = 8.333.
    assert r["valid_submission_mean"] == pytest.approx(125 / 3)
    assert r["valid_submission_sem"] == pytest.approx(25 / 3)
    # made submission: p0 a, b, c -> 75; p1 a, b -> 50; p2 a -> 25. mean 50, sd 25, SEM 25 / sqrt(3).
    assert r["made_submission_mean"] == pytest.approx(50.0)
    assert r["made_submission_sem"] == pytest.approx(25 / math.sqrt(3))
    # gold only at p0: 25, 0, 0 -> mean 8.333, SEM as for valid = 8.333.
    assert r["gold_mean"] == pytest.approx(25 / 3) and r["gold_sem"] == pytest.approx(25 / 3)
    # above median: p0 a (gold), c -> 50; p1 b (silver) -> 25; p2 a (bronze) -> 25: mean 33.333,
    # deviations 16.667, -8.333, -8.333 -> SEM 8.333.
    assert r["above_median_mean"] == pytest.approx(100 / 3) and r["above_median_sem"] == pytest.approx(25 / 3)
    # By seed *number* instead, seed 2 would hold a bronze and a silver (50 %): positions matter.
    from scipy import stats

    assert an.sem([50, 50, 25]) == pytest.approx(stats.sem([50, 50, 25])) == pytest.approx(25 / 3)
    assert an.sem([25]) == 0.0


def test_denominator_is_the_whole_split_and_the_clean_view_drops_flagged_competitions():
    board = an.leaderboard(frame(setting_x()), CAT)
    everything = row_of(board, "all")  # 8 competitions: one medal per position -> 12.5
    assert everything["any_medal_mean"] == pytest.approx(12.5) and everything["padded"] == 3 * 8 - 6
    clean = row_of(board, "lite", "clean")  # d (leaky) left out: 3 competitions -> 33.333 per position
    assert clean["competitions"] == 3 and clean["any_medal_mean"] == pytest.approx(100 / 3)
    assert clean["padded"] == 3 * 3 - 6
    assert row_of(board, "lite")["flagged"] == 1 and "includes 1 flagged" in an.notes(row_of(board, "lite"))
    assert set(board[board["split"] == "all"]["view"]) == {"all", "clean"}


def test_one_seed_has_zero_sem_and_unrun_settings_show_no_seeds():
    y = {**X, "scaffold": "mlab"}
    rows = setting_x() + [attempt("a", 0, "gold", y), {**attempt("b", 0, "none", y), "graded": False}]
    r = row_of(an.leaderboard(frame(rows), CAT), "lite", scaffold="mlab")
    # one position: a gold -> 25 %; b planned, not graded -> a padded cell (4 - 1 = 3 padded).
    assert (r["seeds"], r["any_medal_mean"], r["any_medal_sem"], r["padded"]) == (1, 25.0, 0.0, 3)
    assert (r["attempts"], r["graded"]) == (2, 1)


def test_integrity_marks_unsandboxed_reference_panel_and_missing_leaderboards():
    rows = setting_x()
    rows[0]["unsandboxed"] = True
    rows[1]["leaderboard_source"] = "reference-panel"
    rows[5]["leaderboard_source"] = "none"
    r = row_of(an.leaderboard(frame(rows), CAT), "lite")
    assert (r["unsandboxed"], r["reference_panel"], r["medals_unknown"]) == (1, 1, 1)
    text = an.notes(r)
    assert "1 unsandboxed" in text and "reference-panel medals" in text and "6 missing cells padded" in text


def test_markdown_table_keeps_the_leading_columns_the_launcher_prints():
    table = an.format_table(an.leaderboard(frame(setting_x()), CAT))
    assert "| aide | gpt4o | 10m | gpu1 | lite | 3 | 41.7 ± 8.3 (n=3) | 33.3 ± 8.3 (n=3) | 25.0 ± 0.0 (n=3) |" in table


def test_planned_subset_uses_the_planned_competitions_as_denominator():
    rows = [attempt("a", 0, "gold"), attempt("b", 0, "none")]  # planned only a, b of lite
    planned = an.planned_board(frame(rows), CAT)
    r = planned.iloc[0]
    assert (r["benchmark"], r["competitions"], r["any_medal_mean"], r["valid_submission_mean"]) == ("lite", 2, 50, 100)
    full = frame([attempt(c, 0) for c in "abcd"])
    assert an.planned_board(full, CAT).empty  # the whole split: the leaderboard already says it


def test_readme_rows_dash_for_uncovered_splits_and_dagger_for_padding():
    w = {**X, "scaffold": "full"}
    rows = setting_x() + [attempt(c, 0, "gold" if c == "a" else "none", w) for c in "abcd"] + \
        [attempt("a", 1, "none", w)]
    rows = [{**r, "time_limit_s": 86400.0} if r["scaffold"] == "full" else r for r in rows]
    readme = an.readme_rows(an.leaderboard(frame(rows), CAT), frame(rows), CAT).set_index("Agent")
    # full: lite fully attempted, 2 positions: p0 a gold -> 25, p1 nothing -> 0; mean 12.5, SEM 12.5
    # ([25, 0]: sd 17.678 / sqrt(2)); p1 has 3 padded cells -> dagger.
    assert readme.loc["full", "Low == Lite (%)"] == "12.5 ± 12.5 (n=2) †"
    assert readme.loc["full", "All (%)"] == "-" and readme.loc["aide", "Low == Lite (%)"] == "-"
    assert readme.loc["full", "Running Time (hours)"] == "24"
    assert readme.loc["full", "Known Leakage"] == "includes 1 leaky competitions"
    assert readme.loc["full", "Missing cells"] == "pad (default)"
    assert list(readme.reset_index().columns[:8]) == ["Agent", "LLM(s)", "Low == Lite (%)", "Medium (%)", "High (%)",
                                                     "All (%)", "Running Time (hours)", "Date"]


def test_run_group_reports_one_per_seed_position_in_upstream_format():
    rows = [{**r, **{k: None for k in ("gold_threshold", "silver_threshold", "bronze_threshold",
                                          "median_threshold", "is_lower_better")},
             "created_at": "t", "submission_path": f"{r['competition_id']}.csv"} for r in setting_x()]
    reports = an.run_group_reports(frame(rows))
    name = "aide_gpt4o_10m_gpu1"
    # Folders: the zero-padded position, then the launched seed(s) of the attempts at that position.
    folders = [f"{name}_pos000_seed0+5", f"{name}_pos001_seed1+2", f"{name}_pos002_seed2"]
    assert sorted(reports) == [f"{name}_grading_report", *(f"run_groups/{f}/grading_report" for f in folders)]
    seed1 = reports[f"run_groups/{name}_pos001_seed1+2/grading_report"]  # a seed 1 (valid), b seed 2 (silver)
    assert [r["competition_id"] for r in seed1["competition_reports"]] == ["a", "b"]
    assert (seed1["total_runs"], seed1["total_valid_submissions"], seed1["total_medals"],
            seed1["total_silver_medals"]) == (2, 2, 1, 1)
    assert list(seed1) == ["total_runs", "total_runs_with_submissions", "total_valid_submissions", "total_medals",
                           "total_gold_medals", "total_silver_medals", "total_bronze_medals", "total_above_median",
                           "competition_reports"]
    assert reports[f"{name}_grading_report"]["total_runs"] == 6
    # The same dicts and totals as hpc_mle.grading builds from CompetitionReport objects; the JSON
    # text parses back to them, a valid NaN score included (upstream writes the bare token NaN).
    body = reports[f"{name}_grading_report"]
    body["competition_reports"][0]["score"] = float("nan")
    again = grading.run_group_report([grading.CompetitionReport(**r) for r in body["competition_reports"]])
    assert json.dumps(again, sort_keys=False) == json.dumps(body, sort_keys=False)
    assert "NaN" in an.report_json(body) and json.dumps(json.loads(an.report_json(body))) == json.dumps(body)


def twelve_seeds() -> list[dict]:
    """Split `lite3` = a, b, c; 12 seeds (0..11) launched, some cells missing:
    a: all 12 graded, gold on seeds 0-5; b: seeds 0-9 graded (10, 11 missing), silver on 0 and 1;
    c: seeds 0-10 but seed 4 graded (4 and 11 missing), bronze on seed 10 (its position 9)."""
    rows = [attempt("a", k, "gold" if k < 6 else "none") for k in range(12)]
    rows += [attempt("b", k, "silver" if k < 2 else "none") for k in range(10)]
    rows += [attempt("c", k, "bronze" if k == 10 else "none") for k in range(11) if k != 4]
    return rows


def test_twelve_seeds_with_missing_cells_in_both_modes():
    cat = an.Catalogue(splits={"lite3": ("a", "b", "c")}, status={})
    results = frame(twelve_seeds())
    # Medals per position, of 3 competitions: p0 a+b = 2, p1 a+b = 2, p2-p5 a = 1 each, p6-p8 0,
    # p9 c's seed 10 = 1, p10-p11 0 (only a has them).
    pad = row_of(an.leaderboard(results, cat, missing="pad"), "lite3")
    # pad: 12 positions; counts 2,2,1,1,1,1,0,0,0,1,0,0 -> mean 9/12 = 0.75 -> 25 %. Deviations from
    # 0.75: 1.25 x2, 0.25 x5, -0.75 x5 -> squares 3.125 + 0.3125 + 2.8125 = 6.25; SEM = sqrt(6.25/11)/sqrt(12).
    assert (pad["seeds"], pad["cells"], pad["padded"], pad["dropped"]) == (12, 32, 36 - 32, 0)
    assert pad["any_medal_mean"] == pytest.approx(25.0)
    assert pad["any_medal_sem"] == pytest.approx(100 / 3 * math.sqrt(6.25 / 11) / math.sqrt(12))
    complete = row_of(an.leaderboard(results, cat, missing="complete-seeds"), "lite3")
    # complete-seeds: b and c have 10 positions each -> positions 0-9; a's p10, p11 dropped.
    # counts 2,2,1,1,1,1,0,0,0,1 -> mean 0.9 -> 30 %; deviations 1.1 x2, 0.1 x5, -0.9 x3 -> squares
    # 2.42 + 0.05 + 2.43 = 4.9; SEM = sqrt(4.9/9)/sqrt(10) = 7/30 -> 7/30 * 100/3 = 70/9 %.
    assert (complete["seeds"], complete["cells"], complete["padded"], complete["dropped"]) == (10, 30, 0, 2)
    assert complete["any_medal_mean"] == pytest.approx(30.0)
    assert complete["any_medal_sem"] == pytest.approx(70 / 9)
    # Valid: every graded cell is valid, so pad = 32 / 36 cells -> 88.889 %; complete = 100 %.
    assert pad["valid_submission_mean"] == pytest.approx(3200 / 36)
    assert complete["valid_submission_mean"] == pytest.approx(100.0) and complete["valid_submission_sem"] == 0
    # Every table names the mode, the default marked; a split where a competition never ran has
    # no complete seed at all (upstream's default refuses it).
    assert "| pad (default) |" in an.format_table(an.leaderboard(results, cat))
    assert "| complete-seeds |" in an.format_table(an.leaderboard(results, cat, missing="complete-seeds"))
    without_c = frame([r for r in twelve_seeds() if r["competition_id"] != "c"])
    none = row_of(an.leaderboard(without_c, cat, missing="complete-seeds"), "lite3")
    assert none["seeds"] == 0 and math.isnan(none["any_medal_mean"]) and "no complete seed" in an.notes(none)
    with pytest.raises(ValueError, match="missing='both' is unknown"):
        an.leaderboard(results, cat, missing="both")
    built = report.build_report(results, "twelve", catalogue=cat, missing="complete-seeds")
    assert "Missing cells: complete-seeds" in report.render_markdown(built, figure_dir=None)
    assert set(report.display_board(built.tables["leaderboard"])["missing"]) == {"complete-seeds"}


def test_run_group_folders_sort_as_strings_in_seed_order():
    rows = [{**r, "submission_path": f"{r['competition_id']}-{r['seed']}.csv"} for r in twelve_seeds()]
    reports = an.run_group_reports(frame(rows))
    folders = [k.split("/")[1] for k in reports if k.startswith("run_groups/")]
    assert len(folders) == 12 and sorted(folders) == folders  # string order = position order
    name = "aide_gpt4o_10m_gpu1"
    # c's position 4 holds its seed 5 (seed 4 missing), so that position mixes seeds 4 and 5.
    assert folders[:5] == [f"{name}_pos000_seed0", f"{name}_pos001_seed1", f"{name}_pos002_seed2",
                           f"{name}_pos003_seed3", f"{name}_pos004_seed4+5"]
    assert folders[-1] == f"{name}_pos011_seed11"
    # Upstream's aggregator reads them in sorted order: seed i = the i-th folder, a's seed i in each.
    by_folder = [reports[f"run_groups/{f}/grading_report"]["competition_reports"] for f in sorted(folders)]
    assert [next(r for r in reps if r["competition_id"] == "a")["submission_path"] for reps in by_folder] == \
        [f"a-{k}.csv" for k in range(12)]


# ---------------------------------------------------------------- scaling studies


def test_pass_at_k_estimator_and_tables():
    assert an.pass_at_k(3, 2, 1) == pytest.approx(2 / 3)  # 1 - C(1,1)/C(3,1) = 1 - 1/3
    assert an.pass_at_k(3, 1, 2) == pytest.approx(2 / 3)  # 1 - C(2,2)/C(3,2) = 1 - 1/3
    assert an.pass_at_k(5, 2, 2) == pytest.approx(0.7)    # 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert an.pass_at_k(3, 2, 2) == 1.0                   # C(1,2) = 0
    for n in range(1, 9):
        for c in range(n + 1):
            assert an._pass_curve(n, c) == pytest.approx([an.pass_at_k(n, c, k) for k in range(1, n + 1)])
    per_comp, overall = an.pass_at_k_tables(frame(setting_x()), "lite", CAT)
    # n = 3 positions. a: c = 2 (gold, bronze); b: c = 1 (silver); c: c = 0; d not run.
    a = per_comp[per_comp["competition_id"] == "a"].set_index("k")["pass_at_k"]
    b = per_comp[per_comp["competition_id"] == "b"].set_index("k")["pass_at_k"]
    assert list(a) == pytest.approx([200 / 3, 100, 100]) and list(b) == pytest.approx([100 / 3, 200 / 3, 100])
    # overall over 4 competitions: k=1 (2/3 + 1/3) / 4 = 25 % (the any-medal mean); k=2 (1 + 2/3) / 4;
    # k=3 (1 + 1) / 4.
    assert list(overall["pass_at_k"]) == pytest.approx([25.0, 500 / 12, 50.0])


def test_time_grid():
    assert an.time_grid(600) == [60.0 * i for i in range(1, 11)]  # 600 / 60 = 10 steps of a minute
    assert an.time_grid(3600) == [300.0 * i for i in range(1, 13)]  # 5-minute steps
    assert an.time_grid(24 * 3600) == [3600.0 * h for h in range(1, 25)]
    assert an.time_label(7200) == "2h" and an.time_label(300) == "5m" and an.time_label(5) == "5s"


def test_medal_after_t_from_snapshots():
    z = {**X, "scaffold": "snap"}
    rows = [
        attempt("a", 0, "gold", z, snapshots=[{"elapsed_s": 30}, {"elapsed_s": 150, "bronze": True},
                                             {"elapsed_s": 400, "gold": True}]),
        attempt("a", 1, "gold", z, agent_elapsed_s=200.0),  # no snapshot: its final grade at 200 s
        attempt("b", 0, "silver", z, snapshots=[{"elapsed_s": 610, "silver": True}]),  # after the last checkpoint
    ]
    curves = an.medal_over_time(frame(rows), "lite", CAT).set_index("t")
    # positions: p0 = a seed 0 and b seed 0, p1 = a seed 1. Checkpoints every minute to 10 minutes.
    assert list(curves.index) == [f"{m}m" for m in range(1, 11)]
    # 1m, 2m: nothing yet -> [0, 0].
    assert curves.loc["2m", ["any_medal_mean", "any_medal_sem"]].tolist() == [0.0, 0.0]
    # 3m: p0 a bronze (150 s) -> 25; p1 not yet (200 s) -> 0: mean 12.5, SEM sd(25, 0)/sqrt 2 = 12.5.
    assert curves.loc["3m", ["any_medal_mean", "any_medal_sem"]].tolist() == pytest.approx([12.5, 12.5])
    # 4m: p0 25, p1 25 -> 25 ± 0.
    assert curves.loc["4m", ["any_medal_mean", "any_medal_sem"]].tolist() == pytest.approx([25.0, 0.0])
    # 10m: b's silver at 610 s counts at the last checkpoint: p0 50, p1 25 -> 37.5 ± 12.5.
    assert curves.loc["10m", ["any_medal_mean", "any_medal_sem"]].tolist() == pytest.approx([37.5, 12.5])
    board = row_of(an.leaderboard(frame(rows), CAT), "lite", scaffold="snap")
    assert board["any_medal_mean"] == pytest.approx(37.5)  # the end of the curve is the leaderboard


def test_runtime_and_gpu_comparisons_sit_side_by_side():
    long, gpu2 = {**X, "runtime": "100h"}, {**X, "hardware": "gpu2"}
    rows = [attempt("a", 0, "gold", time_limit_s=600.0, gpus=1, gpu_util_percent_mean=40.0),
            attempt("a", 0, "gold", long, time_limit_s=360000.0, gpus=1, gpu_util_percent_mean=50.0),
            attempt("b", 0, "gold", long, time_limit_s=360000.0, gpus=1, gpu_util_percent_mean=70.0),
            attempt("a", 0, "none", gpu2, gpus=2, gpu_util_percent_mean=30.0, gpu_mem_mib_max=900.0)]
    rows = [{**r, "attempt_id": f"{r['attempt_id']}-{r['hardware']}"} for r in rows]
    board = an.leaderboard(frame(rows), CAT, ["lite"])
    budgets = an.runtime_budgets(board).set_index("hardware")
    # gpu1: 10m a gold -> 25 %; 100h a and b gold -> 50 %.
    assert budgets.loc["gpu1", "10m any medal %"] == "25.0 ± n/a (1 seed)"
    assert budgets.loc["gpu1", "100h any medal %"] == "50.0 ± n/a (1 seed)"
    gpu = an.gpu_scaling(frame(rows), board).set_index(["runtime", "hardware"])
    assert gpu.loc[("100h", "gpu1"), "gpu_util_percent_mean"] == pytest.approx(60.0)  # (50 + 70) / 2
    assert gpu.loc[("10m", "gpu2"), "gpus"] == 2 and gpu.loc[("10m", "gpu2"), "gpu_mem_mib_max"] == 900.0
    assert gpu.loc[("10m", "gpu2"), "any_medal_mean"] == 0.0


def test_heatmap_codes_and_usage_columns():
    cells = an.heatmap(frame(setting_x()), "lite", CAT)
    got = {(r.competition_id, r.position): r.code for r in cells.itertuples()}
    assert got == {("a", 0): 3, ("a", 1): 0, ("a", 2): 1, ("b", 0): -1, ("b", 1): 2, ("c", 0): 0}
    shown = report.display_heatmap(cells).set_index("competition")
    assert shown.loc["a", "seeds"] == "G·B" and shown.loc["b", "seeds"] == "×S-" and shown.loc["c", "seeds"] == "·--"
    assert an.usage_table(frame(setting_x())).empty  # nothing recorded: no columns invented
    rows = setting_x()
    rows[0]["cost_usd"], rows[1]["cost_usd"] = 3.0, 5.0
    usage = an.usage_table(frame(rows)).iloc[0]
    # 8 USD over the 3 medals of X (a gold, a bronze, b silver).
    assert (usage["recorded"], usage["cost_usd_total"], usage["cost_per_medal_usd"]) == (2, 8.0, pytest.approx(8 / 3))
    per_comp = an.usage_by_competition(frame(rows)).set_index("competition_id")
    assert per_comp.loc["a", "cost_usd_total"] == 8.0 and per_comp.loc["a", "cost_usd_mean"] == 4.0  # rows 0, 1: a
    shown = report.display_attempts(frame(rows)).set_index(["competition", "seed"])
    assert shown["$"].tolist().count("-") == len(shown) - 2 and "3.0000" in shown["$"].tolist()


def test_usage_read_from_status_or_llm_calls(tmp_path):
    (tmp_path / "llm_calls.jsonl").write_text('{"prompt_tokens": 10, "completion_tokens": 2, "cost_usd": 0.5}\n'
                                              'not json\n{"input_tokens": 5, "output_tokens": 1}\n')
    assert an._usage(tmp_path, {}) == {"input_tokens": 15.0, "output_tokens": 3.0, "cost_usd": 0.5}
    assert an._usage(tmp_path, {"llm": {"cost_usd": 2}}) == {"cost_usd": 2.0}
    assert an._usage(tmp_path / "nothing", {}) == {}


# ---------------------------------------------------------------- comparisons


def test_compare_two_sweeps_with_several_seeds():
    old = frame([attempt("a", 0, "gold", score=0.9), attempt("a", 1, "none", score=0.5),
                 attempt("b", 0, "bronze", score=0.7)])
    new = frame([attempt("a", 0, "none", score=0.6), attempt("a", 1, "silver", score=0.8),
                 attempt("b", 0, "gold", score=0.95), attempt("c", 0, "gold", score=1.0)])
    table = an.compare_results(old, new).set_index(["competition_id", "seed"])
    assert len(table) == 3  # c is only in the new sweep
    assert table.loc[("a", 0), "change"] == "lost medal" and table.loc[("a", 0), "score_change"] == pytest.approx(-0.3)
    assert table.loc[("a", 1), "change"] == "gained medal" and table.loc[("a", 1), "score_change"] == pytest.approx(0.3)
    assert table.loc[("b", 0), "change"] == "medal changed" and table.loc[("b", 0), "medal_new"] == "gold"
    per_comp = an.competition_changes(table.reset_index()).set_index("competition_id")
    # a: one medal then (seed 0), one now (seed 1) -> same; mean score (0.9 + 0.5) / 2 = 0.7 then,
    # (0.6 + 0.8) / 2 = 0.7 now.
    assert (per_comp.loc["a", "medals_old"], per_comp.loc["a", "medals_new"], per_comp.loc["a", "change"]) == \
        (1, 1, "same")
    assert per_comp.loc["a", "mean_score_change"] == pytest.approx(0.0)
    assert per_comp.loc["b", "mean_score_change"] == pytest.approx(0.25)
    text = an.format_comparison(Path("old"), Path("new"), table.reset_index())
    assert "3 attempts in both; 1 gained a medal, 1 lost one, 1 changed medal." in text
    assert "| a | aide | gpt4o | 0 | gold | none | lost medal | 0.9 | 0.6 | -0.3 |" in text


# ---------------------------------------------------------------- files


def _write_sweep(sweep: Path, attempts: list[dict]) -> None:
    """A sweep folder by hand: configs, manifest and grading records as the jobs write them."""
    (sweep / "configs").mkdir(parents=True)
    (sweep / "grading").mkdir()
    (sweep / "configs" / "c0.json").write_text(json.dumps({"benchmark": {"split": "mini"}}))
    manifest = []
    for a in attempts:
        manifest.append({"id": a["id"], "competition_id": a["comp"], "scaffold": "dummy", "model": "none",
                         "seed": a["seed"], "runtime": "10m", "hardware": "cpu", "spec_version": 1, "benchmark": "mini",
                         "competition_status": "ok", "time_limit_s": 600.0, "gpus": 0, "config_id": "c0"})
        rep = grading.CompetitionReport(
            competition_id=a["comp"], score=0.5, gold_threshold=0.9, silver_threshold=0.8, bronze_threshold=0.7,
            median_threshold=0.4, any_medal=a["bronze"], gold_medal=False, silver_medal=False,
            bronze_medal=a["bronze"], above_median=True, submission_exists=True, valid_submission=True,
            is_lower_better=False, created_at="t", submission_path="s.csv", leaderboard_source="reference-panel")
        (sweep / "grading" / f"{a['id']}.json").write_text(json.dumps({
            "attempt_id": a["id"], "state": "done", "unsandboxed": a.get("unsandboxed", False),
            "agent_elapsed_s": 5.0, "report": rep.to_dict(),
            "snapshots": [{"elapsed_s": 5, "bronze": a["bronze"], "valid": True}]}))
    pd.DataFrame(manifest).to_csv(sweep / "manifest.csv", index=False)


def test_analyse_sweep_writes_every_file(tmp_path):
    sweep = tmp_path / "s"
    _write_sweep(sweep, [{"id": "i1", "comp": "mini-churn", "seed": 0, "bronze": True},
                         {"id": "i2", "comp": "mini-churn", "seed": 1, "bronze": False, "unsandboxed": True},
                         {"id": "i3", "comp": "mini-digits", "seed": 0, "bronze": False}])
    out = report.analyse_sweep(sweep)
    folder = sweep / "analysis"
    # mini has 6 competitions. Positions: p0 = churn seed 0 (bronze) and digits seed 0, p1 = churn seed 1.
    # valid (and above median): p0 2/6 = 33.3, p1 1/6 = 16.7 -> mean 25.0, SEM |33.3 - 16.7| / 2 = 8.3.
    # any medal: p0 16.7, p1 0 -> 8.3 ± 8.3. Padded: 2 x 6 - 3 = 9.
    assert "| dummy | none | 10m | cpu | mini | 2 | 25.0 ± 8.3 (n=2) | 25.0 ± 8.3 (n=2) | 8.3 ± 8.3 (n=2) |" in out["table"]
    # over the 2 planned competitions: p0 50, p1 0 -> 25 ± 25; valid p0 100, p1 50 -> 75 ± 25.
    assert "| dummy | none | 10m | cpu | mini | 2 | 75.0 ± 25.0 (n=2) | 75.0 ± 25.0 (n=2) | 25.0 ± 25.0 (n=2) |" in out["table"]
    summary = (folder / "summary.md").read_text()
    assert "reference-panel" in summary and "unsandboxed" in summary and "9 missing cells padded" in summary
    assert pd.read_parquet(folder / "results.parquet")["attempt_id"].tolist() == ["i1", "i2", "i3"]
    assert (folder / "results.csv").is_file() and (folder / "leaderboard.csv").is_file()
    assert {p.name for p in (folder / "figures").iterdir()} >= {"leaderboard.png", "pass_at_k.png",
                                                                "medal_over_time.png", "heatmap.png"}
    per_seed = sorted((folder / "run_groups").glob("*/grading_report.json"))
    assert [p.parent.name for p in per_seed] == ["dummy_none_10m_cpu_pos000_seed0", "dummy_none_10m_cpu_pos001_seed1"]
    assert json.loads(per_seed[1].read_text())["total_runs"] == 1
    page = (folder / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 4 and "<script" not in page and 'src="http' not in page
    assert "<link" not in page
    both = an.load_many([sweep, sweep])  # the same sweep twice: the second copy takes positions 2, 3
    assert int(an.leaderboard(both)["seeds"].max()) == 4


def test_report_cli_prints_markdown_html_and_csv(tmp_path):
    sweep = tmp_path / "s"
    _write_sweep(sweep, [{"id": "i1", "comp": "mini-churn", "seed": 0, "bronze": True}])
    cli = [sys.executable, "-m", "hpc_mle.cli", "report", str(sweep)]
    md = subprocess.run(cli, capture_output=True, text=True)
    assert md.returncode == 0, md.stderr
    assert "| dummy | none | 10m | cpu | mini | 1 |" in md.stdout
    page = subprocess.run([*cli, "--format", "html", "--output", str(tmp_path / "r.html")], capture_output=True,
                          text=True)
    assert page.returncode == 0 and (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    csv = subprocess.run([*cli, "--format", "csv", "--split", "mini"], capture_output=True, text=True)
    assert csv.returncode == 0 and csv.stdout.startswith("scaffold,model,runtime,hardware,split,view")
    missing = subprocess.run([*cli[:-1], str(tmp_path / "nope")], capture_output=True, text=True)
    assert missing.returncode == 2 and "is not a sweep folder" in missing.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_report_of_a_real_mini_sweep(tmp_path, mini_data):
    """Two scaffolds, two seeds, run by the launcher; the HTML has tables and images."""
    args = ["-m", "scaffold=dummy,baseline", "seed=range(2)", "benchmark.competitions=[mini-churn]",
            "runtime.time_limit=30s", "runtime.snapshot_interval=5s", f"output_root={tmp_path}",
            f"data_dir={mini_data}"]
    out = subprocess.run([sys.executable, "-m", "hpc_mle.launch", *args], capture_output=True, text=True,
                         timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert out.returncode == 0, out.stderr
    (sweep,) = tmp_path.iterdir()
    page = (sweep / "analysis" / "report.html").read_text()
    for heading in ("Leaderboard", "Upstream README rows", "pass@k on mini", "Medals over time on mini",
                    "Medals per competition and seed on mini", "Attempts"):
        assert f"<h2>{heading}</h2>" in page
    assert '<td class="text">baseline</td>' in page and '<td class="text">dummy</td>' in page
    assert "reference-panel" in page
    assert page.count('src="data:image/png;base64,') >= 4
    results = pd.read_parquet(sweep / "analysis" / "results.parquet")
    assert len(results) == 4 and results["graded"].all()


STUDIES = ["leaderboard", "pass_at_k", "medal_over_time", "runtime_budget", "gpu_scaling", "heatmap"]


@pytest.mark.parametrize("study", STUDIES)
def test_each_study_script_reproduces_its_table_and_figure(study, tmp_path, monkeypatch, capsys):
    import runpy

    sweep = tmp_path / "s"
    _write_sweep(sweep, [{"id": "i1", "comp": "mini-churn", "seed": 0, "bronze": True},
                         {"id": "i2", "comp": "mini-digits", "seed": 0, "bronze": False}])
    scripts = Path(__file__).resolve().parents[1] / "analysis"
    monkeypatch.syspath_prepend(str(scripts))
    monkeypatch.setattr(sys, "argv", [f"{study}.py", str(sweep), "--png", str(tmp_path / "f.png")])
    runpy.run_path(str(scripts / f"{study}.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "| dummy | none | 10m | cpu |" in out or "dummy / none / 10m / cpu" in out, out
    if study in ("leaderboard", "pass_at_k", "medal_over_time", "heatmap"):
        assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (scripts / "README.md").read_text().count(f"`{study}.py`") == 1


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_report_renders_offline_in_headless_chromium(tmp_path):
    """The HTML opens with networking off and draws tables and figures (not a blank page)."""
    import importlib.util

    from PIL import Image

    sweep = tmp_path / "s"
    _write_sweep(sweep, [{"id": "i1", "comp": "mini-churn", "seed": 0, "bronze": True},
                         {"id": "i2", "comp": "mini-digits", "seed": 1, "bronze": False}])
    report.analyse_sweep(sweep)
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "report_screenshot.py"
    spec = importlib.util.spec_from_file_location("report_screenshot", path)
    shot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shot)
    png = shot.screenshot(sweep / "analysis" / "report.html", tmp_path / "report.png", "1000,1600")
    image = Image.open(png).convert("L")
    assert image.size == (1000, 1600)
    histogram = image.histogram()
    assert sum(histogram[:128]) > 5000  # dark pixels: text, table rules, plotted lines
    assert sum(histogram[129:250]) > 5000  # mid tones: bars, header shading, figures


def test_a_sweep_with_nothing_graded_still_gets_its_report(tmp_path):
    sweep = tmp_path / "s"
    _write_sweep(sweep, [{"id": "i1", "comp": "mini-churn", "seed": 0, "bronze": True}])
    shutil.rmtree(sweep / "grading")
    out = report.analyse_sweep(sweep)
    assert "| dummy | none | 10m | cpu | mini | 0 | - | - | - |" in out["table"]
    assert "States: planned 1." in (sweep / "analysis" / "summary.md").read_text()  # status.STATES
    assert out["reports"] == []


# ---------------------------------------------------------------- issue 18: report follow-ups


def test_run_groups_count_original_descriptions_only_and_stale_seed_folders_go(tmp_path):
    """2 seeds run with both descriptions: 2 seed positions in run_groups/, not 4 (obfuscated attempts are the
    contamination study's, never extra seeds), and a folder an earlier analysis left for position 2 is removed."""
    sweep = tmp_path / "s"
    _write_sweep(sweep, [{"id": f"{d[:3]}{seed}", "comp": "mini-churn", "seed": seed, "bronze": d == "original"}
                         for d in ("original", "obfuscated") for seed in (0, 1)])
    manifest = pd.read_csv(sweep / "manifest.csv")
    manifest["description"] = ["original", "original", "obfuscated", "obfuscated"]
    manifest.to_csv(sweep / "manifest.csv", index=False)
    groups = sweep / "analysis" / "run_groups"
    stale, foreign = groups / "dummy_none_10m_cpu_pos002_seed0", groups / "notes"
    stale.mkdir(parents=True)
    (stale / "grading_report.json").write_text("{}")
    foreign.mkdir()
    (foreign / "mine.txt").write_text("a user's file")
    report.analyse_sweep(sweep)
    assert sorted(p.name for p in groups.iterdir()) == ["dummy_none_10m_cpu_pos000_seed0",
                                                        "dummy_none_10m_cpu_pos001_seed1", "notes"]
    for folder in ("dummy_none_10m_cpu_pos000_seed0", "dummy_none_10m_cpu_pos001_seed1"):
        body = json.loads((groups / folder / "grading_report.json").read_text())
        assert body["total_runs"] == 1 and body["total_medals"] == 1  # the original attempt: bronze
    assert (foreign / "mine.txt").is_file()


def _audit(sweep: Path, flagged: list[str], judge: dict | None = None, failed: dict | None = None) -> None:
    attempts = [{"attempt_id": a, "competition_id": "mini-churn", "verdict": "flagged", "rubric_item": "R3",
                 "findings": [], "judge": None} for a in flagged]
    if failed:
        attempts.append({"attempt_id": failed["id"], "competition_id": "mini-churn", "verdict": "clean",
                         "rubric_item": None, "findings": [], "judge": {"verdict": "error", "answer": failed["answer"]}})
    (sweep / an.AUDIT_FILE).write_text(json.dumps({
        "attempts": attempts, "reused": 0, "flagged": flagged, "judge": judge,
        "judge_failed": [failed["id"]] if failed else []}))


def test_report_cli_shows_what_the_audit_did(tmp_path):
    """`hpc-mle report` says what the analysis job's audit step did, from audit.json and analysis/audit_step.json:
    how many attempts it covered, that the judge did not run and why; a later hand audit replaces the step."""
    from click.testing import CliRunner

    from hpc_mle import cli

    sweep = tmp_path / "s"
    _write_sweep(sweep, [{"id": "i1", "comp": "mini-churn", "seed": 0, "bronze": True},
                         {"id": "i2", "comp": "mini-churn", "seed": 1, "bronze": False}])
    _audit(sweep, ["i1"], judge={"model": "gpt-x", "calls_file": "audit_judge_calls.jsonl", "calls": 1,
                                  "input_tokens": 10, "output_tokens": 2, "cost_usd": None},
           failed={"id": "i2", "answer": "the judge answered 500"})
    an.write_audit_step(sweep, {"mode": "judge", "ok": True, "judge_error": "OPENAI_API_KEY is not set"})

    def page() -> str:
        result = CliRunner().invoke(cli.main, ["report", str(sweep)])
        assert result.exit_code == 0, result.output
        return " ".join(result.output.split())

    text = page()
    assert "The analysis job audited 2 ended attempt(s) for rule violations (`analysis.audit=judge`" in text
    assert "1 flagged." in text and "The judge did not run: OPENAI_API_KEY is not set." in text
    assert "Judge gpt-x: 1 call(s) this time" in text
    assert "no usable answer for 1 attempt(s) (first: the judge answered 500)" in text
    assert "1 of 2 attempts were flagged" in text
    an.write_audit_step(sweep, {"mode": "checks", "ok": False, "error": "OSError: disk full"})
    assert "The rule-violation audit (`analysis.audit=checks`) failed: OSError: disk full." in page()
    os.utime(sweep / an.AUDIT_FILE, (os.stat(sweep / an.AUDIT_STEP).st_mtime + 10,) * 2)  # audited by hand since
    text = page()
    assert "`hpc-mle audit` audited 2 ended attempt(s) for rule violations (deterministic checks" in text
    assert "disk full" not in text


def test_the_familiarity_study_is_a_section_of_the_report_with_its_figure(tmp_path):
    from hpc_mle import familiarity

    sweep = tmp_path / "s"
    _write_sweep(sweep, [{"id": "i1", "comp": "mini-churn", "seed": 0, "bronze": True}])
    table = pd.DataFrame({"competition": ["mini-churn", "mini-digits", "mini-leaf-species"], "text": "description",
                          "tokens": [40, 50, 60], "mean_logprob": [-1.5, -2.5, -3.0], "truncated": [False, True, False],
                          "max_tokens": 50, "model": "llama|8b", "endpoint_form": "vllm-prompt-logprobs",
                          "attempts_of": "dummy", "graded": [1, 0, 0], "medals": [1, 0, 0],
                          "any_medal_pct": [100.0, 0.0, 0.0]})
    written = familiarity.write_outputs(table, familiarity.study_dir(sweep), "study")
    out = report.analyse_sweep(sweep)
    summary = Path(out["summary"]).read_text()
    assert "## Familiarity with the competitions' text" in summary and "figures/familiarity.png" in summary
    assert "| mini-digits | description | 50 | -2.500 | yes | 0 | 0 | 0.0 |" in summary
    assert (sweep / "analysis" / "figures" / "familiarity.png").read_bytes() == written["png"].read_bytes()
    page = Path(out["html"]).read_text()
    rows = re.findall(r"<tr><td[^>]*>(mini-[\w-]+)</td><td[^>]*>description</td><td[^>]*>\d+</td><td[^>]*>(-[\d.]+)<", page)
    assert rows == [("mini-churn", "-1.500"), ("mini-digits", "-2.500"), ("mini-leaf-species", "-3.000")]
    assert "<h2>Familiarity with the competitions&#x27; text</h2>" in page and "<strong>Pearson r = " in page
    assert 'alt="familiarity.png"' in page and "llama|8b" in page and "llama\\|8b" not in page
