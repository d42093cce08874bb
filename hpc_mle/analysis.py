"""A sweep's results: one row per attempt, the leaderboard table, and MLE-bench run-group reports.

The table follows upstream's aggregation (facts §3): per seed, percentages over the *whole*
benchmark split (a missing or invalid attempt counts as a failure), then mean ± SEM (n-1) over seeds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpc_mle import grading, plan
from hpc_mle.files import atomic_write_text

SETTING = ["scaffold", "model", "runtime", "hardware", "benchmark"]
METRICS = {
    "made_submission": "submission_exists",
    "valid_submission": "valid_submission",
    "above_median": "above_median",
    "bronze": "bronze_medal",
    "silver": "silver_medal",
    "gold": "gold_medal",
    "any_medal": "any_medal",
}


def load_results(sweep_dir: Path) -> pd.DataFrame:
    """One row per planned attempt, graded or not (ungraded rows have no report fields)."""
    sweep_dir = Path(sweep_dir)
    manifest = plan.read_manifest(sweep_dir)
    graded = {}
    for path in (sweep_dir / "grading").glob("*.json"):
        try:
            record = json.loads(path.read_text())
        except ValueError:
            continue
        graded[record["attempt_id"]] = record
    rows = []
    for _, m in (manifest.iterrows() if manifest is not None else []):
        record = graded.get(m["id"])
        row = {"attempt_id": m["id"], "competition_id": m["competition_id"], **{k: m[k] for k in SETTING},
               "seed": int(m["seed"]), "competition_status": m.get("competition_status"), "graded": record is not None}
        if record:
            row.update({k: record.get(k) for k in ("state", "failure", "unsandboxed", "agent_elapsed_s", "starts")})
            row.update(record["report"])
        rows.append(row)
    return pd.DataFrame(rows)


def _sem(values: list[float]) -> float:
    return float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0


def leaderboard(results: pd.DataFrame) -> pd.DataFrame:
    """Per setting: each metric's % of the split, mean ± SEM over seeds."""
    out = []
    if results.empty:
        return pd.DataFrame()
    for setting, group in results.groupby(SETTING, dropna=False):
        n_comp = group["competition_id"].nunique()
        per_seed = []
        for seed, s in group.groupby("seed"):
            row = {"seed": seed}
            for name, field in METRICS.items():
                hits = s[field].fillna(False).astype(bool).sum() if field in s else 0
                row[name] = 100.0 * hits / n_comp
            per_seed.append(row)
        entry = dict(zip(SETTING, setting, strict=True))
        entry.update(competitions=n_comp, seeds=len(per_seed),
                     graded=int(group["graded"].sum()), attempts=len(group))
        for name in METRICS:
            values = [r[name] for r in per_seed]
            entry[f"{name}_mean"] = float(np.mean(values))
            entry[f"{name}_sem"] = _sem(values)
        out.append(entry)
    return pd.DataFrame(out)


def format_table(board: pd.DataFrame) -> str:
    if board.empty:
        return "(no results)"
    lines = ["| scaffold | model | runtime | hardware | benchmark | seeds | valid % | above median % | any medal % |",
             "|---|---|---|---|---|---|---|---|---|"]
    for _, r in board.iterrows():
        lines.append(f"| {r.scaffold} | {r.model} | {r.runtime} | {r.hardware} | {r.benchmark} | {r.seeds} | "
                     f"{r.valid_submission_mean:.1f} ± {r.valid_submission_sem:.1f} | "
                     f"{r.above_median_mean:.1f} ± {r.above_median_sem:.1f} | "
                     f"{r.any_medal_mean:.1f} ± {r.any_medal_sem:.1f} |")
    return "\n".join(lines)


def per_competition(results: pd.DataFrame) -> str:
    if results.empty or "score" not in results:
        return ""
    lines = ["| competition | scaffold | model | seed | state | score | medal | reason |", "|---|---|---|---|---|---|---|---|"]
    for _, r in results.sort_values(["competition_id", "scaffold", "model", "seed"]).iterrows():
        medal = next((m for m in ("gold", "silver", "bronze") if r.get(f"{m}_medal") is True), "-")
        score = "-" if r.get("score") is None or (isinstance(r.get("score"), float) and math.isnan(r["score"])) \
            else f"{r['score']:.5g}"
        reason = (r.get("reason") or "") if not r.get("valid_submission") else ""
        lines.append(f"| {r.competition_id} | {r.scaffold} | {r.model} | {r.seed} | {r.get('state', '-')} | "
                     f"{score} | {medal} | {str(reason)[:80]} |")
    return "\n".join(lines)


def analyse_sweep(sweep_dir: Path) -> dict[str, Any]:
    """Write analysis/results.csv, leaderboard.csv, summary.md and one run-group report per setting."""
    sweep_dir = Path(sweep_dir)
    out = sweep_dir / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    results = load_results(sweep_dir)
    board = leaderboard(results)
    atomic_write_text(out / "results.csv", results.to_csv(index=False))
    atomic_write_text(out / "leaderboard.csv", board.to_csv(index=False))
    panel = bool(len(results)) and (results.get("leaderboard_source") == "reference-panel").any()
    note = ("\nMedals on `reference-panel` leaderboards are placements among reference solutions, not Kaggle medals.\n"
            if panel else "")
    summary = (f"# Sweep {sweep_dir.name}\n\n{len(results)} attempts, {int(results['graded'].sum()) if len(results) else 0} "
               f"graded. Percentages are of the whole benchmark, mean ± SEM over seeds.\n\n{format_table(board)}\n{note}\n"
               f"## Per attempt\n\n{per_competition(results)}\n")
    atomic_write_text(out / "summary.md", summary)
    reports = []
    if len(results) and "score" in results:
        for setting, group in results[results["graded"]].groupby(SETTING, dropna=False):
            name = "_".join(str(v) for v in setting)
            reps = [json.loads((sweep_dir / "grading" / f"{aid}.json").read_text())["report"]
                    for aid in group.sort_values(["seed", "competition_id"])["attempt_id"]]
            body = grading.run_group_report([grading.CompetitionReport(**r) for r in reps])
            path = out / f"{name}_grading_report.json"
            atomic_write_text(path, json.dumps(body, indent=2) + "\n")
            reports.append(str(path))
    return {"attempts": len(results), "table": format_table(board), "summary": str(out / "summary.md"),
            "reports": reports}


def compare(old_dir: Path, new_dir: Path) -> pd.DataFrame:
    """Per (competition, setting, seed) present in both sweeps: medal and score then and now."""
    old, new = load_results(Path(old_dir)), load_results(Path(new_dir))
    if old.empty or new.empty or "score" not in old or "score" not in new:
        return pd.DataFrame()
    keys = ["competition_id", *SETTING[:-1], "seed"]
    cols = keys + ["score", "any_medal", "gold_medal", "silver_medal", "bronze_medal", "valid_submission",
                   "is_lower_better"]
    both = old[cols].merge(new[cols], on=keys, suffixes=("_old", "_new"))

    def medal(row, side):
        return next((m for m in ("gold", "silver", "bronze") if row[f"{m}_medal_{side}"] is True), "none")

    both["medal_old"] = both.apply(medal, axis=1, side="old")
    both["medal_new"] = both.apply(medal, axis=1, side="new")
    both["change"] = np.select(
        [both["any_medal_old"].fillna(False).astype(bool) & ~both["any_medal_new"].fillna(False).astype(bool),
         ~both["any_medal_old"].fillna(False).astype(bool) & both["any_medal_new"].fillna(False).astype(bool),
         both["medal_old"] != both["medal_new"]],
        ["lost medal", "gained medal", "medal changed"], default="same")
    both["score_change"] = pd.to_numeric(both["score_new"], errors="coerce") - pd.to_numeric(both["score_old"],
                                                                                               errors="coerce")
    return both[keys + ["medal_old", "medal_new", "change", "score_old", "score_new", "score_change"]]


def format_comparison(old_dir: Path, new_dir: Path, table: pd.DataFrame) -> str:
    head = f"# {Path(new_dir).name} compared with {Path(old_dir).name}\n"
    if table.empty:
        return head + "No attempt appears in both sweeps with a grade.\n"
    moved = table[table["change"] != "same"]
    lines = [head, f"{len(table)} attempts in both; {int((table['change'] == 'gained medal').sum())} gained a medal, "
             f"{int((table['change'] == 'lost medal').sum())} lost one, "
             f"{int((table['change'] == 'medal changed').sum())} changed medal.\n",
             "| competition | scaffold | model | seed | medal then | medal now | change | score then | score now | Δ score |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in (moved if len(moved) else table).iterrows():
        lines.append(f"| {r.competition_id} | {r.scaffold} | {r.model} | {r.seed} | {r.medal_old} | {r.medal_new} | "
                     f"{r.change} | {r.score_old} | {r.score_new} | {r.score_change:+.5g} |")
    return "\n".join(lines) + "\n"
