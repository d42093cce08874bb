"""`hpc-mle export-leaderboard`: a sweep's results as a leaderboard submission to openai/mle-bench.

    <out>/runs/<stamp>_run-group_<setting>_pos<NNN>_seed<k>/<time>-GMT_grading_report.json
    <out>/runs/run_group_experiments.csv      experiment_id,run_group (one experiment per setting)
    <out>/experiments/splits/<split>.txt      the competitions of each split covered (low = Lite, split75 = All)
    <out>/README_rows.md                      the README table rows, one per setting
    <out>/provenance.json                     what ran and where (`provenance`)
    <out>/DISCLOSURE.md                       the same for people, and the deviations from the canonical setup

One run group holds one seed position of one setting, so upstream's aggregator (run groups sorted by
name, reports read in that order, seeds formed by position) rebuilds exactly our seeds: the stamp is
the setting's first grade, the position is zero-padded. `aggregate_reports` recomputes upstream's
numbers from the exported files; the tests check they equal the report's.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpc_mle import analysis as an
from hpc_mle import plan
from hpc_mle.files import atomic_write_json, atomic_write_text

PUBLISHED_SOURCE = "https://github.com/openai/mle-bench/blob/main/README.md#leaderboard"
PUBLISHED_FILE = "published_leaderboard.csv"
UPSTREAM_SPLIT_NAMES = {"lite": "low", "all": "split75"}  # our split -> upstream's experiments/splits/<name>.txt
CANONICAL = "24 h runtime, 36 vCPUs, 440 GB RAM, one 24 GB A10 GPU (upstream README, Benchmarking)"
MEDAL_FIELDS = ("gold_medal", "silver_medal", "bronze_medal")
SEED_FIELDS = {"submission_exists_percentage": ("submission_exists",),
               "valid_submissions_percentage": ("valid_submission",),
               "above_median_percentage": ("above_median",), "gold_medal_percentage": ("gold_medal",),
               "silver_medal_percentage": ("silver_medal",), "bronze_medal_percentage": ("bronze_medal",),
               "any_medal_percentage": MEDAL_FIELDS}
OUR_METRIC = {"submission_exists_percentage": "made_submission", "valid_submissions_percentage": "valid_submission",
              "above_median_percentage": "above_median", "gold_medal_percentage": "gold",
              "silver_medal_percentage": "silver", "bronze_medal_percentage": "bronze",
              "any_medal_percentage": "any_medal"}


# ---------------------------------------------------------------- published rows


def published_leaderboard() -> pd.DataFrame:
    """Upstream README's leaderboard rows (as of the file's last update), with date and hardware where stated."""
    text = resources.files("hpc_mle").joinpath(PUBLISHED_FILE).read_text(encoding="utf-8")
    frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    frame["source"] = PUBLISHED_SOURCE
    return frame


# ---------------------------------------------------------------- upstream's aggregation, on files


def _stamp(value: Any, fmt: str) -> str:
    """An ISO time as upstream's folder and file stamps write it; zeros when there is none."""
    try:
        moment = datetime.fromisoformat(str(value)).astimezone(UTC)
    except (TypeError, ValueError):
        return "0000-00-00T00-00-00"
    return moment.strftime(fmt)


def read_reports(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Competition reports in upstream's read order: paths sorted as strings, each file's reports by id."""
    out = []
    for path in sorted(str(p) for p in paths):
        body = json.loads(Path(path).read_text(encoding="utf-8"))
        out += sorted(body["competition_reports"], key=lambda r: str(r["competition_id"]))
    return out


def aggregate_reports(paths: Sequence[Path], competition_ids: Sequence[str], pad_missing: bool = True,
                      num_seeds: int = -1) -> dict[str, Any]:
    """Upstream's aggregate over grading-report files: seeds by position, the whole split as denominator,
    mean and SEM (n-1, 0 for one seed) per metric. Raises ValueError where upstream's script does."""
    per_comp: dict[str, list[dict]] = defaultdict(list)
    for report in read_reports(paths):
        per_comp[str(report["competition_id"])].append(report)
    counts = [len(per_comp.get(c, [])) for c in competition_ids]
    if not counts:
        raise ValueError("no competitions given")
    if not pad_missing and min(counts) == 0:
        raise ValueError("a competition of the split has no report; cannot build complete seeds")
    available = max(counts) if pad_missing else min(counts)
    if available == 0:
        raise ValueError("no reports to form any seed")
    n = available if num_seeds == -1 else min(num_seeds, available)
    seeds = [_seed_metrics([per_comp[c][i] if i < len(per_comp.get(c, [])) else {} for c in competition_ids])
             for i in range(n)]
    metrics = {}
    for key in [*SEED_FIELDS, "total_competitions"]:
        values = [s[key] for s in seeds]
        mean = float(np.mean(values))
        err = float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
        metrics[key] = {"mean": mean, "ci_lower": mean - 1.96 * err, "ci_upper": mean + 1.96 * err,
                        "standard_error": err}
    return {"num_seeds_averaged": n, "num_competitions_per_seed": len(competition_ids), "metrics": metrics}


def _seed_metrics(reports: list[dict]) -> dict[str, float]:
    """One seed's percentages; an empty dict is a missing cell (a failure on every count)."""
    total = len(reports)
    out: dict[str, float] = {"total_competitions": float(total)}
    for key, fields in SEED_FIELDS.items():
        out[key] = sum(1 for r in reports if any(bool(r.get(f)) for f in fields)) / total * 100
    return out


# ---------------------------------------------------------------- provenance


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _sampling(config: dict[str, Any]) -> dict[str, Any]:
    """The model and its sampling settings as the attempt composed them (no keys, no endpoints' secrets)."""
    model = config.get("model_config") or {}
    keep = ("name", "provider", "model", "temperature", "top_p", "max_tokens", "reasoning_effort", "seed")
    return {k: model[k] for k in keep if k in model} if isinstance(model, dict) else {}


def attempt_provenance(sweep_dir: Path, aid: str) -> dict[str, Any]:
    """What one attempt ran and where, from its config.json and status.json (the harness's own files)."""
    out = plan.attempt_dir(sweep_dir, aid)
    config, status = _read(out / "config.json"), _read(out / "status.json")
    telemetry = status.get("telemetry") or {}
    seen = telemetry.get("hardware") if isinstance(telemetry.get("hardware"), dict) else {}  # telemetry.hardware()
    gpus_seen = seen.get("gpu_count", len([k for k in telemetry if k.startswith("gpu") and k.endswith("_util_percent_mean")]))
    cpus = status.get("cpus")
    return {
        "attempt_id": aid, "host": status.get("host"), "slurm_job_id": status.get("slurm_job_id"),
        "hardware": config.get("hardware"), "gpus_granted": config.get("gpus"), "gpus_seen": gpus_seen,
        "gpu_seen": seen.get("gpu_label"), "gpu_names": seen.get("gpu_names"), "gpu_driver": seen.get("driver_version"),
        "cuda_visible_devices": seen.get("cuda_visible_devices"), "cpus_seen": seen.get("cpu_count"),
        "memory_mib_seen": seen.get("memory_mib"), "node": seen.get("node"),
        "cpus": len(cpus) if isinstance(cpus, list) else None, "memory_gb": config.get("memory_gb"),
        "rss_mib_max": telemetry.get("rss_mib_max"), "agent_elapsed_s": status.get("agent_elapsed_s"),
        "time_limit_s": config.get("time_limit_s"), "sandbox": config.get("sandbox") or status.get("sandbox"),
        "network": config.get("network", status.get("network")), "test_set_feedback": "none",
        "image_digest": config.get("image_digest"), "code_version": config.get("code_version"),
        "scaffold": config.get("scaffold"), "model": config.get("model"), "sampling": _sampling(config),
        "state": status.get("state"),
    }


def provenance(sweep_dirs: Sequence[Path], results: pd.DataFrame, missing: str) -> dict[str, Any]:
    """Per attempt and per sweep: hardware seen, limits, sandbox, network, feedback, versions, usage, padding."""
    attempts = [attempt_provenance(Path(d), aid) for d in sweep_dirs
                for aid in results.loc[results["sweep"] == Path(d).name, "attempt_id"]]
    board = an.leaderboard(results, missing=missing) if len(results) else pd.DataFrame()

    def distinct(key: str) -> list[Any]:
        return sorted({json.dumps(a[key], sort_keys=True) for a in attempts if a[key] not in (None, {}, [])})

    usage = {k: float(results[k].sum()) for k in an.USAGE if k in results and results[k].notna().any()}
    padded = int(board.loc[board["view"] == "all", "padded"].sum()) if len(board) else 0
    return {
        "sweeps": [Path(d).name for d in sweep_dirs], "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "attempts_planned": len(results), "attempts_graded": int(results["graded"].sum()) if len(results) else 0,
        "hardware": [json.loads(v) for v in distinct("hardware")],
        "hardware_settings": _labels(results, "hardware"), "gpu_types": _labels(results, "gpu_type"),
        "gpus_seen_max": max((a["gpus_seen"] for a in attempts), default=0),
        "gpus_seen": [json.loads(v) for v in distinct("gpu_seen")],
        "gpu_drivers": [json.loads(v) for v in distinct("gpu_driver")],
        "cpus": [json.loads(v) for v in distinct("cpus")], "sandbox": [json.loads(v) for v in distinct("sandbox")],
        "network": [json.loads(v) for v in distinct("network")], "test_set_feedback": "none",
        "image_digests": [json.loads(v) for v in distinct("image_digest")],
        "code_versions": [json.loads(v) for v in distinct("code_version")],
        "models": [json.loads(v) for v in distinct("model")], "sampling": [json.loads(v) for v in distinct("sampling")],
        "runtime_s_max": max((a["agent_elapsed_s"] or 0.0 for a in attempts), default=0.0),
        "usage": usage, "missing": missing, "missing_meaning": an.MISSING_MODES[missing], "padded_cells": padded,
        "attempts": attempts,
    }


def _labels(results: pd.DataFrame, column: str) -> list[str]:
    """The distinct values the sweep planned for a column (the launcher's labels), as text."""
    return sorted({str(v) for v in results[column].dropna()}) if column in results else []


def disclosure(prov: dict[str, Any]) -> str:
    """The provenance in sentences, for a submission's README entry or pull request."""
    usage = prov["usage"]
    planned = prov["hardware_settings"] + prov["gpu_types"] + [str(h) for h in prov["hardware"]]  # labels, not seen
    lines = [
        "# Disclosure", "",
        f"Sweeps: {', '.join(prov['sweeps'])}; {prov['attempts_graded']} of {prov['attempts_planned']} planned "
        "attempts graded.",
        f"Hardware: GPUs seen by the attempts at their start: {', '.join(prov['gpus_seen']) or 'not recorded'}"
        + (f" (driver {', '.join(prov['gpu_drivers'])})" if prov["gpu_drivers"] else "")
        + f"; planned as {', '.join(planned) or '-'}; at most {prov['gpus_seen_max']} GPU(s) seen; CPUs per "
        f"attempt: {', '.join(map(str, prov['cpus'])) or 'not recorded'}.",
        f"Longest agent runtime: {prov['runtime_s_max'] / 3600:.2f} h ({prov['runtime_s_max']:.0f} s). "
        f"Canonical setup: {CANONICAL}.",
        f"Sandbox: {', '.join(map(str, prov['sandbox'])) or 'not recorded'}; network: "
        f"{', '.join(map(str, prov['network'])) or 'not recorded'}.",
        "Test-set feedback: none (agents see public/ only; the validator checks format, never the score).",
        f"Images: {', '.join(prov['image_digests']) or 'none recorded'}; code: "
        f"{', '.join(prov['code_versions']) or 'not recorded'}.",
        f"Models: {', '.join(map(str, prov['models'])) or 'none'}; tokens in/out "
        f"{usage.get('input_tokens', 0):.0f}/{usage.get('output_tokens', 0):.0f}, cost "
        f"${usage.get('cost_usd', 0):.2f}.",
        f"Missing cells: {prov['missing']} ({prov['missing_meaning']}); {prov['padded_cells']} cell(s) padded.",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the export


def _setting_name(row: dict[str, Any]) -> str:
    return "_".join(str(row[k]) for k in an.SETTING)


def run_groups(results: pd.DataFrame) -> list[dict[str, Any]]:
    """One run group per setting and seed position: its folder, report file name and report body."""
    pos = an.positioned(results)
    if pos.empty:
        return []
    ordered = pos.sort_values([*an.SETTING, "position", "competition_id"], kind="stable")
    width = max(3, len(str(int(ordered["position"].max()))))
    stamps = ordered["graded_at"] if "graded_at" in ordered else pd.Series(None, index=ordered.index)
    ordered = ordered.assign(_stamp=stamps.astype(object).where(stamps.notna(), None))
    groups = []
    for setting, rows in ordered.groupby(an.SETTING, sort=True):
        name = _setting_name(dict(zip(an.SETTING, setting, strict=True)))
        first = min((s for s in rows["_stamp"] if s), default=None)
        for position, seed_rows in rows.groupby("position", sort=True):
            last = max((s for s in seed_rows["_stamp"] if s), default=None)
            folder = (f"{_stamp(first, '%Y-%m-%dT%H-%M-%S-UTC')}_run-group_"
                      f"{an.run_group_name(name, int(position), seed_rows['seed'], width)}")
            groups.append({"experiment_id": name, "run_group": folder,
                           "file": f"{_stamp(last, '%Y-%m-%dT%H-%M-%S-GMT')}_grading_report.json",
                           "body": an.run_group(an.report_records(seed_rows))})
    return groups


def export_leaderboard(sweep_dirs: Sequence[Path], out: Path, missing: str = an.DEFAULT_MISSING,
                       catalogue: an.Catalogue | None = None) -> dict[str, Any]:
    """Write the submission folder (see the module docstring); return what was written and the numbers."""
    out, catalogue = Path(out), catalogue or an.default_catalogue()
    results = an.load_many([Path(d) for d in sweep_dirs])
    if results.empty:
        raise ValueError(f"{', '.join(map(str, sweep_dirs))}: no planned attempts. Fix: pass sweep folders "
                         "(runs/<sweep>) that hold a manifest.csv.")
    # What the report's leaderboard counts: obfuscated-description attempts would be extra seeds to upstream.
    results = an.original_view(results)
    groups = run_groups(results)
    for g in groups:
        atomic_write_text(out / "runs" / g["run_group"] / g["file"], an.report_json(g["body"]))
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["experiment_id", "run_group"])
    writer.writerows([g["experiment_id"], g["run_group"]] for g in groups)
    atomic_write_text(out / "runs" / "run_group_experiments.csv", table.getvalue())
    splits = an.covering_splits(results, catalogue)
    for split in splits:
        name = UPSTREAM_SPLIT_NAMES.get(split, split)
        atomic_write_text(out / "experiments" / "splits" / f"{name}.txt", "\n".join(catalogue.splits[split]) + "\n")
    board = an.leaderboard(results, catalogue, missing=missing)
    rows = an.readme_rows(board, results, catalogue)
    if len(rows):
        rows["Grading Reports Available"] = "yes (runs/)"
    atomic_write_text(out / "README_rows.md", _markdown(rows))
    prov = provenance(sweep_dirs, results, missing)
    atomic_write_json(out / "provenance.json", prov)
    atomic_write_text(out / "DISCLOSURE.md", disclosure(prov))
    return {"run_groups": len(groups), "splits": splits, "board": board, "readme_rows": rows, "provenance": prov,
            "checks": check_commands(out, sorted({g["experiment_id"] for g in groups}), splits, missing)}


def check_commands(out: Path, experiments: Sequence[str], splits: Sequence[str], missing: str) -> list[str]:
    """How to recompute each setting's numbers with upstream's own script, in a clone of openai/mle-bench."""
    root = Path(out).resolve()
    pad = " --pad-missing" if missing == "pad" else ""
    return [f"python experiments/aggregate_grading_reports.py --split "
            f"{root}/experiments/splits/{UPSTREAM_SPLIT_NAMES.get(split, split)}.txt --grading-reports "
            f"{root}/runs/*_run-group_{name}_pos*/*grading_report*.json{pad}"
            for name in experiments for split in splits]


def _markdown(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "(no results)\n"
    head = "| " + " | ".join(rows.columns) + " |\n|" + "---|" * len(rows.columns) + "\n"
    return head + "".join("| " + " | ".join(str(v) for v in r) + " |\n" for r in rows.itertuples(index=False))


# ---------------------------------------------------------------- report sections


def provenance_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per setting, what the results record of where they ran: the report's small provenance table."""
    def first(col: str) -> pd.Series:
        return results[col] if col in results else pd.Series(np.nan, index=results.index)

    seen = pd.to_numeric(first("gpus_seen") if "gpus_seen" in results else first("gpus_measured"),  # older: telemetry
                         errors="coerce").astype("Int64")
    frame = pd.DataFrame({**{k: results[k] for k in an.SETTING}, "gpus granted": first("gpus"),
                          "gpus seen": seen, "GPU model seen": first("gpu_seen"), "cpus": first("cpus"),
                          "cpus seen": pd.to_numeric(first("cpus_seen"), errors="coerce").astype("Int64"),
                          "memory GB": first("mem_gb"), "memory GiB seen": first("memory_gib_seen"),
                          "network": first("network"), "unsandboxed": first("unsandboxed"),
                          "runtime h": pd.to_numeric(first("agent_elapsed_s"), errors="coerce") / 3600})
    agg = frame.groupby(an.SETTING, sort=True, dropna=False).agg(
        **{c: (c, lambda s: ", ".join(sorted({str(v) for v in s.dropna()})) or "-")
           for c in ("gpus granted", "gpus seen", "GPU model seen", "cpus", "cpus seen", "memory GB",
                     "memory GiB seen", "network", "unsandboxed")},
        **{"runtime h (max)": ("runtime h", "max")})
    out = agg.reset_index()
    hours = out["runtime h (max)"].round(2).astype(object)
    out["runtime h (max)"] = hours.where(hours.notna(), "-")
    out["test-set feedback"] = "none"
    return out


SPLIT_COLUMNS = ("lite", "medium", "high", "all")


def standing_table(readme: pd.DataFrame) -> pd.DataFrame:
    """The published README rows beside the user's own, in one table (any-medal %)."""
    pub = published_leaderboard()
    cells = {k: pub[k] for k in SPLIT_COLUMNS}  # mean ± SEM, no number of seeds: the report's caption says so
    theirs = pd.DataFrame({"source": "published", "Agent": pub["agent"], "LLM(s)": pub["llm"],
                           "Low == Lite (%)": cells["lite"], "Medium (%)": cells["medium"], "High (%)": cells["high"],
                           "All (%)": cells["all"], "Running Time (hours)": pub["runtime_h"], "Date": pub["date"],
                           "Hardware": pub["hardware"]})
    if readme.empty:
        return theirs
    keep = [c for c in theirs.columns if c in readme.columns]
    mine = readme[keep].assign(source="yours")
    return pd.concat([mine, theirs], ignore_index=True)[theirs.columns]
