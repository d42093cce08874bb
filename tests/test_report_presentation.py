"""The report reads right: tables fit their box, charts make sense for one seed and all-zero data,
every ± says how many seeds it rests on, and telemetry counts CPU from the first sample.

Checked on the rendered Markdown/HTML and on the figures' data (axis limits, plotted points), not on
pixels; the Chromium layout check runs only where Chromium is installed.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from hpc_mle import analysis as an
from hpc_mle import report, telemetry

LONG = "a-competition-with-an-identifier-far-longer-than-any-column-should-be-wide"
CAT = an.Catalogue(splits={"lite": ("a", "b", LONG)}, status={})
MANY = {"scaffold": "aide", "model": "gpt4o", "runtime": "10m", "hardware": "gpu1"}
ONE = {**MANY, "scaffold": "solo"}


def attempt(comp: str, seed: int, medal: str | None, setting: dict, **extra) -> dict:
    return {"attempt_id": f"{comp}-{seed}-{setting['scaffold']}", "competition_id": comp, "seed": seed, **setting,
            "benchmark": "lite", "benchmark_split": "lite", "time_limit_s": 600.0, "graded": True, "state": "done",
            "unsandboxed": False, "score": 0.5, "submission_exists": True, "valid_submission": True,
            "gold_medal": medal == "gold", "silver_medal": False, "bronze_medal": medal == "bronze",
            "any_medal": medal is not None, "above_median": medal is not None, "leaderboard_source": "kaggle",
            "snapshots": [], "graded_at": "2026-11-22T10:00:00+00:00", **extra}


def results(rows: list[dict]) -> pd.DataFrame:
    return an.normalise(pd.DataFrame(rows))


@pytest.fixture(scope="module")
def mixed() -> report.Report:
    """`aide` with 2 seeds (a: gold then nothing; b: bronze at seed 1), `solo` with 1 seed and no medal."""
    rows = [attempt("a", 0, "gold", MANY), attempt("a", 1, None, MANY), attempt("b", 1, "bronze", MANY),
            attempt(LONG, 0, None, MANY), attempt("a", 0, None, ONE), attempt(LONG, 0, None, ONE)]
    return report.build_report(results(rows), "presentation", catalogue=CAT)


def section(rep: report.Report, title: str) -> report.Section:
    return next(s for s in rep.sections if s.title == title)


# ---------------------------------------------------------------- ± with its seeds


def test_cell_names_the_seeds_and_one_seed_has_no_spread():
    assert an.cell(12.5, 3.125, 8) == "12.5 ± 3.1 (n=8)"
    assert an.cell(25.0, 0.0, 1) == "25.0 ± n/a (1 seed)"
    assert an.cell(float("nan"), 0.0, 0) == "-"


def test_every_plus_minus_in_the_report_says_how_many_seeds(mixed):
    board = section(mixed, "Leaderboard").tables[0][1].set_index("scaffold")
    # aide over 3 competitions: p0 = a seed 0 gold, b seed 1 bronze, LONG -> 66.7; p1 = a seed 1 -> 0.
    # Mean 33.3, SEM |66.7 - 0| / 2 = 33.3, over 2 seeds.
    assert board.loc["aide", "any medal %"] == "33.3 ± 33.3 (n=2)"
    assert board.loc["solo", "any medal %"] == "0.0 ± n/a (1 seed)"
    ours = report.Report(mixed.title, [s for s in mixed.sections if s.title != "Where you stand"], mixed.figures,
                         mixed.tables)
    texts = [report.render_markdown(ours), report.render_html(ours), an.format_table(mixed.tables["leaderboard"])]
    for text in texts:
        numbers = re.findall(r"\d ± [^|<]*", text.replace("&nbsp;", " "))
        assert numbers, text[:500]
        for found in numbers:
            assert re.fullmatch(r"\d ± (\d+\.\d \(n=\d+\)|n/a \(1 seed\))( †)?\s*", found), found
    # The published rows: upstream states no n. Said once, in the table's caption; the cells stay short.
    (caption, standing), = section(mixed, "Where you stand").tables
    published = standing[standing["source"] == "published"]
    assert "n is not stated for any published cell" in caption
    assert published["Low == Lite (%)"].str.fullmatch(r"\d+(\.\d+)? ± \d+(\.\d+)?").all()
    for text in (report.render_markdown(mixed), report.render_html(mixed)):
        assert "(n not stated)" not in text and text.count("n is not stated") == 1


# ---------------------------------------------------------------- tables that fit


def test_tables_sit_in_a_scrolling_box_and_only_text_columns_wrap(mixed):
    page = report.render_html(mixed)
    assert re.search(r"\.scroll\{[^}]*overflow-x:auto", page)
    assert re.search(r"td\.text\{[^}]*overflow-wrap:break-word", page)
    assert re.search(r"td\.nowrap\{white-space:nowrap\}", page)
    # dates never break at their hyphens ("2026-11-" / "30"): their cells do not wrap, and only theirs
    nowrap = re.findall(r'<td class="nowrap">([^<]*)</td>', page)
    assert nowrap and all(re.fullmatch(r"\d{4}-\d{2}-\d{2}|-", c) for c in nowrap), nowrap
    assert "<td class=\"nowrap\">2026-11-22</td>" in page and "2025-11-10</td>" in page
    assert not re.search(r'<td(?! class="nowrap")[^>]*>\d{4}-\d{2}-\d{2}</td>', page)
    assert page.count("<table>") == page.count('<div class="scroll"><table>') > 3
    long_cells = re.findall(rf"<td[^>]*>{LONG}</td>", page)
    assert long_cells and all(c.startswith('<td class="text">') for c in long_cells)
    assert "<td>33.3&nbsp;±&nbsp;33.3 (n=2)</td>" in page  # wraps only before (n=2)
    assert "<td>0.0&nbsp;±&nbsp;n/a (1&nbsp;seed)</td>" in page
    board = section(mixed, "Leaderboard").tables[0][1]
    wraps = dict(zip(board.columns, report.text_columns(board), strict=True))
    assert wraps["notes"] and wraps["scaffold"] and not wraps["any medal %"] and not wraps["competitions"]
    assert not wraps["seeds"] and not wraps["padded"]


# ---------------------------------------------------------------- charts


def test_percent_limits_keep_zero_and_full_lines_off_the_axis():
    assert report.percent_limits([0.0, 0.0]) == pytest.approx((-0.3, 10.3))
    assert report.percent_limits([50.0, float("nan")]) == pytest.approx((-1.65, 56.65))
    assert report.percent_limits([100.0]) == pytest.approx((-3.0, 103.0))


def test_one_seed_pass_at_k_has_a_sensible_axis_and_says_it_needs_two_seeds():
    rows = [attempt("a", 0, "gold", ONE), attempt("b", 0, None, ONE)]
    rep = report.build_report(results(rows), "one seed", catalogue=CAT)
    assert any("needs >= 2 seeds" in t for t in section(rep, "pass@k on lite").text)
    overall = rep.tables["pass_at_k"]
    ax = report.plot_pass_at_k(overall).axes[0]
    assert ax.get_xlim() == pytest.approx((0.5, 1.5)) and list(ax.get_xticks()) == [1]  # not 0.96-1.04
    assert ax.get_ylim() == pytest.approx((-1.1, 37.77), abs=0.01)  # top 33.3 % x 1.1 = 36.67, 3 % margins
    assert list(ax.lines[0].get_xdata()) == [1] and ax.lines[0].get_ydata()[0] == pytest.approx(100 / 3)
    assert "needs >= 2 seeds" in ax.get_title()


def test_all_zero_curves_and_bars_stay_visible(mixed):
    rows = [attempt("a", s, None, MANY) for s in range(2)]
    rep = report.build_report(results(rows), "zeros", catalogue=CAT)
    ax = report.plot_medal_over_time(rep.tables["medal_over_time"]).axes[0]
    low, high = ax.get_ylim()
    assert (ax.lines[0].get_ydata() == 0).all() and low < 0 and high >= 10  # the 0 line is above the axis
    assert not any("needs >= 2 seeds" in t for t in section(rep, "pass@k on lite").text)
    bars = report.plot_leaderboard(rep.tables["leaderboard"]).axes[0]
    assert bars.get_xlim()[0] < 0 and [t.get_text() for t in bars.texts] == ["0.0 (n=2)"]
    labels = [t.get_text() for t in report.plot_leaderboard(mixed.tables["leaderboard"]).axes[0].texts]
    assert labels == ["33.3 (n=2)", "0.0 (1 seed)"]


def test_grouped_bars_of_zero_have_a_readable_scale():
    rows = [attempt("a", 0, None, MANY), attempt("a", 0, None, {**MANY, "runtime": "1h"})]
    board = an.leaderboard(results(rows), CAT)
    ax = report.plot_grouped_bars(board, "runtime", "zeros").axes[0]
    assert ax.get_ylim()[0] < 0 and ax.get_ylim()[1] >= 10


# ---------------------------------------------------------------- telemetry


BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5:\n    pass\n"


def test_cpu_of_a_process_born_after_the_first_sample_is_counted(tmp_path):
    """The agent's training starts after the sandbox and lives less than an interval: its CPU seconds
    must show in the samples (psutil's first cpu_percent() per process says 0, so it would count none)."""
    parent = (f"import subprocess, sys, time\ntime.sleep(0.3)\nsubprocess.run([sys.executable, '-c', {BURN!r}])\n"
              "time.sleep(2.4)\n")
    proc = subprocess.Popen([sys.executable, "-c", parent])
    t0 = time.monotonic()
    sampler = telemetry.Sampler(tmp_path / "telemetry.csv", proc.pid, (), 1.5, lambda: time.monotonic() - t0)
    sampler.start()
    proc.wait(timeout=60)
    sampler.stop()
    rows = sampler.rows
    assert len(rows) >= 2
    times = [0.0] + [r["elapsed_s"] for r in rows]
    seconds = sum(r["cpu_percent"] / 100 * (b - a) for r, a, b in zip(rows, times[:-1], times[1:], strict=True))
    assert 0.45 < seconds < 1.5, rows  # the child's 0.5 s, plus two interpreter start-ups
    assert sampler.summary()["cpu_percent_mean"] > 10
    written = pd.read_csv(tmp_path / "telemetry.csv")
    assert written["cpu_percent"].tolist() == [r["cpu_percent"] for r in rows]


# ---------------------------------------------------------------- in a browser


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_the_page_never_scrolls_sideways_in_chromium(mixed, tmp_path):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "report_screenshot.py"
    spec = importlib.util.spec_from_file_location("report_screenshot", path)
    shot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shot)
    page = tmp_path / "report.html"
    page.write_text(report.render_html(mixed), encoding="utf-8")
    narrow, wide = shot.layout(page, 700), shot.layout(page, 1400)
    for width, layout in ((700, narrow), (1400, wide)):
        assert layout["tables"] > 3 and layout["page"] <= width, layout  # wide tables scroll in their box
    assert "all competitions" in narrow["scrolling"]  # the leaderboard scrolls in a narrow window
    assert wide["scrolling"] == []  # and fits a wide one: its text wraps


# ---------------------------------------------------------------- issue 18: a real mini sweep's report


MINI = an.Catalogue(splits={"mini": ("m1", "m2")}, status={})
DUMMY, BASE = ({**MANY, "scaffold": s, "model": "none", "hardware": "cpu"} for s in ("dummy", "base"))


@pytest.fixture(scope="module")
def mini() -> pd.DataFrame:
    """A mini sweep as `make run` leaves it: no medal anywhere; base beats the median, dummy does not; local runs
    (machine memory, no limit) of 2 min and 13 s, one of base's unsandboxed."""
    hw = {"memory_gib_seen": 23.5, "memory_seen_source": "machine", "agent_elapsed_s": 13.0}
    rows = [attempt(c, s, None, DUMMY, benchmark="mini", benchmark_split="mini", **hw) for c in ("m1", "m2")
            for s in (0, 1)]
    rows += [attempt(c, s, None, BASE, benchmark="mini", benchmark_split="mini", above_median=True,
                     **{**hw, "agent_elapsed_s": 120.0, "unsandboxed": s == 1}) for c in ("m1", "m2") for s in (0, 1)]
    return results(rows)


@pytest.fixture(scope="module")
def mini_report(mini) -> report.Report:
    return report.build_report(mini, "mini", catalogue=MINI)


def test_a_mini_sweep_says_once_why_it_has_no_published_split(mini_report, mini, mixed):
    rep = mini_report
    stand = section(rep, "Where you stand")
    yours = stand.tables[0][1].query("source == 'yours'")
    assert (yours[list(an.README_SPLIT_COLUMNS.values())] == "-").all().all()
    (why,) = [t for t in stand.text if "'-' in every split column" in t]
    assert "Lite (Low), Medium, High and All" in why and "ran mini" in why
    assert not [t for t in section(mixed, "Where you stand").text if "every split column" in t]  # lite: covered


def test_provenance_says_yes_no_minutes_and_what_memory_it_saw(mini_report, mini):
    rep = mini_report
    prov = section(rep, "Provenance").tables[0][1].set_index("scaffold")
    assert prov.loc["dummy", "unsandboxed"] == "no" and prov.loc["base", "unsandboxed"] == "2 of 4"
    assert prov.loc["dummy", "longest run"] == "13 s" and prov.loc["base", "longest run"] == "2.0 min"
    assert prov.loc["dummy", "memory GiB seen"] == "23.5 (machine, no limit)"
    assert "runtime h (max)" not in prov and "False" not in prov.to_string()
    assert report._duration(5400) == "1.50 h" and report._duration(float("nan")) == "-"
    limited = an._hardware({"telemetry": {"hardware": {"gpu_label": "none", "memory_mib": 8192,
                                                       "memory_limit_mib": 8192, "memory_total_mib": 24064}}})
    machine = an._hardware({"telemetry": {"hardware": {"gpu_label": "none", "memory_mib": 24064,
                                                       "memory_limit_mib": None, "memory_total_mib": 24064}}})
    assert (limited["memory_seen_source"], machine["memory_seen_source"]) == ("cgroup limit", "machine")
    assert limited["memory_gib_seen"] == 8.0


def test_item_analysis_without_any_medal_counts_above_median_and_says_so(mini_report, mini, mixed):
    rep = mini_report
    (items,) = [s for s in rep.sections if s.title.startswith("Item analysis")]
    assert items.title == "Item analysis: dummy/none/10m/cpu vs base/none/10m/cpu (above median, no medals)"
    assert "No attempt on mini won a medal" in items.text[0] and "*above median* instead" in items.text[0]
    assert "above median: -100.0 points" in items.text[1] and "separate them: 2" in items.text[1]
    (caption, table), = items.tables
    assert caption == "competitions not at floor, above median %" and table["difference"].tolist() == [-100.0, -100.0]
    (medals,) = [s for s in mixed.sections if s.title.startswith("Item analysis")]  # medals exist: any medal
    assert medals.title == "Item analysis: solo/gpt4o/10m/gpu1 vs aide/gpt4o/10m/gpu1" and "any medal:" in medals.text[0]
    floor = mini.assign(above_median=False, valid_submission=False)
    (none,) = report.item_sections(floor, MINI, "mini")
    assert none[2] == [] and "every competition is at floor" in none[1][0]
