"""export-leaderboard: upstream's layout, its aggregation on the exported files = the report's numbers;
provenance, the published rows and the paired bootstrap between settings."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hpc_mle import analysis as an
from hpc_mle import export, report


@pytest.fixture(scope="module")
def mini_sweep(tmp_path_factory, mini_data) -> Path:
    """A real sweep by the launcher: dummy and baseline, 2 seeds, original and obfuscated descriptions, on one
    mini competition."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    root = tmp_path_factory.mktemp("runs")
    args = ["-m", "scaffold=dummy,baseline", "seed=range(2)", "benchmark.competitions=[mini-churn]",
            "benchmark.description=original,obfuscated",
            "runtime.time_limit=20s", "runtime.snapshot_interval=10s", f"output_root={root}", f"data_dir={mini_data}"]
    out = subprocess.run([sys.executable, "-m", "hpc_mle.launch", *args], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    (sweep,) = root.iterdir()
    return sweep


def _experiments(out: Path) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    with open(out / "runs" / "run_group_experiments.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            groups.setdefault(row["experiment_id"], []).append(row["run_group"])
    return groups


def _reports(out: Path, run_groups: list[str]) -> list[Path]:
    """As upstream resolves an experiment: each run group's folder holds exactly one *grading_report*.json."""
    paths = []
    for group in sorted(run_groups):
        (found,) = sorted((out / "runs" / group).glob("*grading_report*.json"))
        paths.append(found)
    return paths


@pytest.mark.slow
def test_export_round_trips_through_upstreams_aggregation(mini_sweep, tmp_path):
    out = tmp_path / "export"
    cli = subprocess.run([sys.executable, "-m", "hpc_mle.cli", "export-leaderboard", str(mini_sweep), "--out",
                          str(out)], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    # obfuscated-description attempts are not extra seeds: 2 settings x 2 seeds, as the report counts them
    assert "wrote 4 run group(s)" in cli.stdout
    everything = an.load_results(mini_sweep)
    assert len(everything) == 8 and everything["graded"].all()
    assert (everything["description"] == "obfuscated").sum() == 4
    results = an.original_view(everything)
    assert len(results) == 4
    board = an.leaderboard(results)
    board = board[board["view"] == "all"]
    mini = (out / "experiments" / "splits" / "mini.txt").read_text().split()
    assert mini == list(an.default_catalogue().splits["mini"])
    experiments = _experiments(out)
    names = {"_".join(str(r[k]) for k in an.SETTING) for r in results.to_dict("records")}
    assert set(experiments) == names and len(names) == 2
    assert sum("check in a clone of openai/mle-bench" in line for line in cli.stdout.splitlines()) == 2
    for name, groups in experiments.items():
        assert len(groups) == 2 and all("_run-group_" in g for g in groups)
        assert [g.rsplit("_pos", 1)[1] for g in sorted(groups)] == ["000_seed0", "001_seed1"]
        row = next(r for r in board.to_dict("records") if "_".join(str(r[k]) for k in an.SETTING) == name)
        reports = _reports(out, groups)
        _same(export.aggregate_reports(reports, mini), row, name)
        with pytest.raises(ValueError, match="no report"):  # upstream refuses unpadded seeds over the whole split
            export.aggregate_reports(reports, mini, pad_missing=False)
        planned = ["mini-churn"]
        hits = [f"hit_{m}" for m in an.METRICS]
        ours = an.aggregate(an.positioned(results), planned, hits, "complete-seeds")
        ours = ours.rename(columns=lambda c: c[4:] if c.startswith("hit_") else c)
        mine = next(r for r in ours.to_dict("records") if "_".join(str(r[k]) for k in an.SETTING) == name)
        _same(export.aggregate_reports(reports, planned, pad_missing=False), mine, name)
    # the report's own numbers are the leaderboard's: the README rows carry the same any-medal cells
    readme = (out / "README_rows.md").read_text()
    built = report.build_report(everything, "t")
    assert _rows(readme) == _rows(_table(built.tables["readme_rows"]))
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["attempts_graded"] == 4 and prov["test_set_feedback"] == "none"
    assert prov["sandbox"] == ["bwrap"] and prov["network"] and prov["code_versions"]
    assert {a["scaffold"] for a in prov["attempts"]} == {"dummy", "baseline"}
    assert all(a["cpus"] and a["agent_elapsed_s"] is not None for a in prov["attempts"])
    assert prov["hardware_settings"] == sorted(set(results["hardware"].astype(str)))
    text = (out / "DISCLOSURE.md").read_text()
    assert "Test-set feedback: none" in text and "4 of 4 planned attempts graded" in text
    assert "yes (runs/)" in readme and "Hardware: " in text
    titles = [s.title for s in built.sections]
    assert "Provenance" in titles and "Where you stand" in titles
    assert any(t.startswith("Item analysis") for t in titles)


def _table(frame: pd.DataFrame) -> str:
    return "".join("| " + " | ".join(map(str, r)) + " |\n" for r in [list(frame.columns), *frame.values.tolist()])


def _rows(markdown: str) -> list[dict[str, str]]:
    """A markdown table's rows as dicts, less the column that says where the reports are (runs/ vs analysis/)."""
    lines = [[c.strip() for c in line.strip().strip("|").split("|")] for line in markdown.splitlines()
             if line.startswith("|") and not line.startswith("|---")]
    return [{k: v for k, v in zip(lines[0], r, strict=True) if k != "Grading Reports Available"} for r in lines[1:]]


def _same(got: dict, row: dict, name: str) -> None:
    """Upstream's aggregate of the exported files equals our leaderboard row, metric by metric."""
    assert got["num_seeds_averaged"] == row["seeds"] == 2
    for key, ours in export.OUR_METRIC.items():
        assert got["metrics"][key]["mean"] == pytest.approx(row[f"{ours}_mean"], abs=1e-9), (name, key)
        assert got["metrics"][key]["standard_error"] == pytest.approx(row[f"{ours}_sem"], abs=1e-9), (name, key)


def _graded(setting: str, comp: str, seed: int, medal: bool) -> dict:
    return {"attempt_id": f"{setting}-{comp}-{seed}", "competition_id": comp, "seed": seed, "scaffold": setting,
            "model": "m", "runtime": "1h", "hardware": "cpu", "graded": True, "time_limit_s": 3600.0,
            "gold_medal": False, "silver_medal": False, "bronze_medal": medal, "any_medal": medal,
            "above_median": medal, "submission_exists": True, "valid_submission": True, "score": 1.0}


def test_upstream_aggregation_pads_or_keeps_complete_seeds(tmp_path):
    """a: 2 reports, b: 1 report, c: none; 3 competitions. Seed 1 = a, b medals = 66.7; seed 2 = a only = 33.3."""
    paths = []
    for i, comps in enumerate([("a", "b"), ("a",)]):
        body = an.run_group([{"competition_id": c, "gold_medal": False, "silver_medal": False, "bronze_medal": True,
                              "above_median": True, "submission_exists": True, "valid_submission": True}
                             for c in comps])
        path = tmp_path / f"g{i}" / "grading_report.json"
        path.parent.mkdir()
        path.write_text(an.report_json(body))
        paths.append(path)
    got = export.aggregate_reports(paths, ["a", "b", "c"])
    assert got["num_seeds_averaged"] == 2
    assert got["metrics"]["any_medal_percentage"]["mean"] == pytest.approx(50.0)
    assert got["metrics"]["any_medal_percentage"]["standard_error"] == pytest.approx(np.std([200 / 3, 100 / 3],
                                                                                            ddof=1) / np.sqrt(2))
    with pytest.raises(ValueError, match="no report"):
        export.aggregate_reports(paths, ["a", "b", "c"], pad_missing=False)
    assert export.aggregate_reports(paths, ["a", "b"], pad_missing=False)["num_seeds_averaged"] == 1


def test_paired_bootstrap_is_seeded_and_brackets_the_difference():
    """X medals on p and q, Y only on p, both fail r and s: X - Y is 100 on q and 0 elsewhere (mean 25)."""
    rows = [_graded(s, c, k, medal) for s, wins in (("x", {"p", "q"}), ("y", {"p"}))
            for c in ("p", "q", "r", "s") for k in (0, 1) for medal in [c in wins]]
    results = an.normalise(pd.DataFrame(rows))
    first = {"scaffold": "y", "model": "m", "runtime": "1h", "hardware": "cpu"}
    second = {**first, "scaffold": "x"}
    items = an.item_analysis(results, first, second, ["p", "q", "r", "s"])
    assert items.set_index("competition_id")["item"].to_dict() == {"p": "ceiling", "q": "separates", "r": "floor",
                                                                   "s": "floor"}
    assert items["difference"].tolist() == [0.0, 100.0, 0.0, 0.0]
    boot = an.paired_bootstrap(items, n_boot=500, seed=3)
    assert boot == an.paired_bootstrap(items, n_boot=500, seed=3)
    assert boot["difference"] == 25.0 and boot["low"] <= 25.0 <= boot["high"]
    assert boot["low"] == 0.0 and boot["high"] <= 100.0


def test_published_rows_carry_date_hardware_and_source():
    pub = export.published_leaderboard()
    assert len(pub) == 17 and (pub["source"] == export.PUBLISHED_SOURCE).all()
    aide = pub[(pub["agent"] == "AIDE") & (pub["llm"] == "o1-preview")].iloc[0]
    assert (aide["lite"], aide["all"], aide["date"]) == ("34.3 ± 2.4", "16.9 ± 1.1", "2024-10-08")
    assert "A10" in aide["hardware"]
    assert pub["date"].str.match(r"\d{4}-\d\d-\d\d$").all()
    standing = export.standing_table(pd.DataFrame())
    assert standing["source"].eq("published").all()
