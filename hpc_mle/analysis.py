"""A sweep's results as the paper reports them: the leaderboard, the scaling studies, comparisons.

Everything is a function of a *results frame* (one row per planned attempt, `load_results`), so the
same code serves one sweep, several sweeps combined, or synthetic rows in tests and benchmarks.

The leaderboard follows upstream's aggregator (facts §3): an attempt's place among the attempts of
the same setting and competition is its seed *position* (ordered by sweep, then seed); per
position, each metric is a percentage of the *whole* split, so a competition that was not run or
failed counts as a failure; then mean ± SEM (n-1; 0 with one seed) over positions. Missing
(competition, position) cells are handled as `MISSING_MODES` says: padded as failures up to the most
seeds any competition has (the default, upstream's --pad-missing), or only the positions every
competition completed are kept (upstream's default). Every table names the mode.
`report.py` renders all of it; `report.analyse_sweep` (the analysis job) writes it into `analysis/`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from hpc_mle import competitions, grading, paths, plan
from hpc_mle import status as sweep_state  # one vocabulary of states (status.STATES), as `hpc-mle status`
from hpc_mle.config import DESCRIPTIONS, MISSING_MODES  # re-exported: callers use analysis.*
from hpc_mle.files import atomic_write_json, atomic_write_text, read_json
from hpc_mle.textsafe import md_cell, md_row

SETTING = ["scaffold", "model", "runtime", "hardware"]
METRICS = {  # our name -> the report field it counts (any_medal is gold | silver | bronze, as upstream)
    "made_submission": "submission_exists",
    "valid_submission": "valid_submission",
    "above_median": "above_median",
    "bronze": "bronze_medal",
    "silver": "silver_medal",
    "gold": "gold_medal",
    "any_medal": "any_medal",
}
LABELS = {"made_submission": "made submission %", "valid_submission": "valid %", "above_median": "above median %",
          "bronze": "bronze %", "silver": "silver %", "gold": "gold %", "any_medal": "any medal %"}
SPLITS = ("lite", "medium", "high", "all", "mini", "dev")
FLAGGED = ("known-issue", "leaky", "excluded")
REPORT_FIELDS = [f.name for f in dataclasses.fields(grading.CompetitionReport)]
BOOL_FIELDS = ["any_medal", "gold_medal", "silver_medal", "bronze_medal", "above_median", "submission_exists",
               "valid_submission", "is_lower_better", "grader_error", "unsandboxed"]
USAGE = ["input_tokens", "output_tokens", "cost_usd"]
DEFAULT_MISSING = "pad"
AUDIT_FILE = "audit.json"  # the sweep's rule-violation audit (hpc_mle.audit writes it)
AUDIT_STEP = Path("analysis") / "audit_step.json"  # what the analysis job's audit step did (report.analyse_sweep)
COMPARISON = "compare.md"  # analysis/compare.md: this sweep against the one it names as `compare_with`


# ---------------------------------------------------------------- what the splits hold


@dataclasses.dataclass(frozen=True)
class Catalogue:
    """The competitions of each split and each competition's status: denominators and integrity views."""

    splits: dict[str, tuple[str, ...]]
    status: dict[str, str]

    def flagged(self, ids: Iterable[str]) -> list[str]:
        return [c for c in ids if self.status.get(c, "ok") in FLAGGED]


@lru_cache(maxsize=1)
def default_catalogue() -> Catalogue:
    reg = competitions.registry()
    return Catalogue({s: tuple(competitions.split_ids(s)) for s in SPLITS},
                     {cid: spec.status.state for cid, spec in reg.items()})


def covering_splits(results: pd.DataFrame, catalogue: Catalogue) -> list[str]:
    """The splits that hold at least one of the competitions in these results, in SPLITS order."""
    ids = set(results["competition_id"].unique()) if len(results) else set()
    return [s for s, members in catalogue.splits.items() if ids & set(members)]


def primary_split(results: pd.DataFrame, catalogue: Catalogue) -> str | None:
    """Where the scaling studies are computed: the smallest split holding every competition run."""
    ids = set(results["competition_id"].unique()) if len(results) else set()
    candidates = covering_splits(results, catalogue)
    whole = [s for s in candidates if ids <= set(catalogue.splits[s])]
    pool = whole or candidates
    if not pool:
        return None
    return min(pool, key=lambda s: (len(catalogue.splits[s]) if whole else -len(ids & set(catalogue.splits[s]))))


# ---------------------------------------------------------------- loading


def _usage(attempt_dir: Path, status: dict[str, Any]) -> dict[str, float]:
    """Tokens and cost from the harness's own ledger (status.json `llm`, else the proxy's llm_calls.jsonl at the
    attempt folder's top level); else nothing. Never from the agent's folders: an agent can write anything
    under logs/, a negative cost included."""
    names = {"input_tokens": ("input_tokens", "prompt_tokens"), "output_tokens": ("output_tokens", "completion_tokens"),
             "cost_usd": ("cost_usd", "cost")}
    recorded = status.get("llm") if isinstance(status.get("llm"), dict) else None
    calls: list[dict] = [recorded] if recorded else []
    ledger = attempt_dir / "llm_calls.jsonl"
    if not calls and ledger.is_file():
        for line in ledger.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                calls.append(json.loads(line))
            except ValueError:
                continue
    out = {}
    for key, aliases in names.items():
        values = [c.get(a) for c in calls if isinstance(c, dict) for a in aliases if isinstance(c.get(a), int | float)]
        if values:
            out[key] = float(sum(values))
    return out


def _telemetry(status: dict[str, Any]) -> dict[str, float]:
    """The attempt's measured use, GPUs folded together: mean utilisation, peak memory of the busiest GPU."""
    t = status.get("telemetry") or {}
    utils = [v for k, v in t.items() if k.startswith("gpu") and k.endswith("_util_percent_mean")]
    mems = [v for k, v in t.items() if k.startswith("gpu") and k.endswith("_mem_mib_max")]
    out = {k: t[k] for k in ("cpu_percent_mean", "rss_mib_max") if k in t}
    if utils:
        out.update(gpu_util_percent_mean=float(np.mean(utils)), gpu_mem_mib_max=float(max(mems, default=np.nan)),
                   gpus_measured=len(utils))
    return out


def _hardware(status: dict[str, Any]) -> dict[str, Any]:
    """What the attempt's harness recorded of its node at the start (telemetry `hardware`): the GPUs it saw, not
    the planned label; nothing for an attempt that recorded none (older attempts, a start that never ran)."""
    hw = (status.get("telemetry") or {}).get("hardware")
    if not isinstance(hw, dict) or "gpu_label" not in hw:
        return {}
    memory = hw.get("memory_mib")
    return {"gpu_seen": hw.get("gpu_label"), "gpus_seen": hw.get("gpu_count"), "gpu_driver": hw.get("driver_version"),
            "cuda_visible_devices": hw.get("cuda_visible_devices"), "node": hw.get("node"),
            "cpus_seen": hw.get("cpu_count"), "memory_gib_seen": round(memory / 1024, 1) if memory else None,
            "memory_seen_source": _memory_source(hw) if memory else None}


def _memory_source(hw: dict[str, Any]) -> str:
    """What `memory_mib` is: the cgroup's limit (Slurm, a container) or, with no limit below it, the whole
    machine's memory (a local run sets none), so a report does not read the latter as a grant."""
    limit, total = hw.get("memory_limit_mib"), hw.get("memory_total_mib")
    return "cgroup limit" if limit and (not total or limit <= total) else "machine"


def _planned_splits(sweep_dir: Path, config_ids: Iterable[str]) -> dict[str, str]:
    out = {}
    for cid in set(config_ids):
        try:
            out[cid] = json.loads((sweep_dir / "configs" / f"{cid}.json").read_text())["benchmark"]["split"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def load_results(sweep_dir: Path) -> pd.DataFrame:
    """One row per planned attempt, graded or not: manifest, grade, snapshots, telemetry, the hardware it saw,
    tokens, and `audit_flag` (the rubric item) where the sweep's audit flagged it."""
    sweep_dir = Path(sweep_dir)
    manifest = plan.read_manifest(sweep_dir)
    if manifest is None or manifest.empty:
        return pd.DataFrame()
    split_of = _planned_splits(sweep_dir, manifest.get("config_id", pd.Series(dtype=str)).dropna())
    keep = ["competition_id", *SETTING, "benchmark", "seed", "spec_version", "competition_status", "time_limit_s",
            "gpus", "cpus", "mem_gb", "gpu_type", "description"]
    rows = []
    for m in manifest.to_dict("records"):
        aid = m["id"]
        row = {"attempt_id": aid, "sweep": sweep_dir.name, **{k: m.get(k) for k in keep},
               "benchmark_split": split_of.get(m.get("config_id")), "graded": False}
        try:
            record = json.loads((sweep_dir / sweep_state.GRADING_DIR / f"{aid}.json").read_text())
        except (OSError, ValueError):
            record = None
        if record:
            row.update({k: record.get(k) for k in ("state", "failure", "unsandboxed", "network", "agent_elapsed_s",
                                                   "starts", "segments", "graded_at")})
            row.update(record.get("report", {}))
            row.update(graded=True, snapshots=record.get("snapshots") or [])
        out = plan.attempt_dir(sweep_dir, aid)
        try:
            status = json.loads((out / "status.json").read_text())
        except (OSError, ValueError):
            status = {}
        row.setdefault("state", status.get("state"))
        row["ungraded"] = sweep_state.needs_grade(status, record)  # ended, with no grade of that end
        row.update(_telemetry(status))
        row.update(_hardware(status))
        row.update(_usage(out, status))
        rows.append(row)
    results = normalise(sweep_state.settle_states(sweep_dir, pd.DataFrame(rows)))
    return mark_flagged(results, [sweep_dir])


def flagged_attempts(sweep_dir: Path) -> dict[str, str]:
    """{attempt id: rubric item} of the attempts `audit.json` flags; {} when the sweep was not audited."""
    data = read_json(Path(sweep_dir) / AUDIT_FILE, default=None)
    if not isinstance(data, dict):
        return {}
    return {str(a.get("attempt_id")): str(a.get("rubric_item") or "?") for a in data.get("attempts") or []
            if isinstance(a, dict) and a.get("verdict") == "flagged"}


def mark_flagged(results: pd.DataFrame, sweep_dirs: Sequence[Path]) -> pd.DataFrame:
    """results with an `audit_flag` column (the rubric item of attempts `audit.json` flags, else None),
    so a report can show a view without them; unchanged when no sweep was audited."""
    flagged = {(Path(d).name, aid): item for d in sweep_dirs for aid, item in flagged_attempts(d).items()}
    if not flagged or results.empty:
        return results
    out = results.copy()
    out["audit_flag"] = [flagged.get((str(s), str(a))) for s, a in zip(out["sweep"], out["attempt_id"], strict=True)]
    return out


def normalise(results: pd.DataFrame) -> pd.DataFrame:
    """Dtypes every function here relies on: nullable booleans, float scores, int seeds, a sweep order."""
    results = results.copy()
    for col in BOOL_FIELDS:
        if col in results:
            results[col] = results[col].astype("boolean")
    if "graded" in results:
        results["graded"] = results["graded"].fillna(False).astype(bool)
    if "score" in results:
        results["score"] = pd.to_numeric(results["score"], errors="coerce").astype(float)
    results["seed"] = results["seed"].astype(int)
    for col, default in (("sweep_order", 0), ("sweep", ""), ("benchmark", ""), ("benchmark_split", None),
                         ("time_limit_s", np.nan)):
        if col not in results:
            results[col] = default
    results["description"] = (results["description"].fillna(DESCRIPTIONS[0]) if "description" in results
                              else DESCRIPTIONS[0])  # a plan written before the axis existed: original
    if "snapshots" not in results:
        results["snapshots"] = [[] for _ in range(len(results))]
    results["snapshots"] = [s if isinstance(s, list) else [] for s in results["snapshots"]]
    results["budget_s"] = pd.to_numeric(results["time_limit_s"], errors="coerce").astype(float)
    if "runtime" in results:
        results["runtime"] = budget_labels(results["runtime"], results["budget_s"])
    return results


def budget_labels(labels: pd.Series, budgets: pd.Series) -> pd.Series:
    """Runtime labels that key on the budget actually used (`budget_s`), so results of different budgets never
    share a row: a label naming another duration becomes the budget's ('10m' run for 30 s -> '30s', as
    `plan.runtime_label` labels new sweeps), and a label still covering several budgets gets '@<budget>'."""
    pairs = pd.DataFrame({"label": labels.astype(str), "budget": budgets})
    fixed: dict[tuple[str, float | None], str] = {}
    out = []
    for lab, b in pairs.itertuples(index=False):
        key = (lab, None if pd.isna(b) else float(b))
        if key not in fixed:
            fixed[key] = lab if key[1] is None else plan.runtime_label(lab, key[1])
        out.append(fixed[key])
    pairs["label"] = out
    mixed = pairs.dropna().groupby("label")["budget"].nunique()
    for label in mixed[mixed > 1].index:
        rows = (pairs["label"] == label) & pairs["budget"].notna()
        pairs.loc[rows, "label"] = [f"{label}@{plan.format_duration(b)}" for b in pairs.loc[rows, "budget"]]
    return pd.Series(pairs["label"].to_numpy(), index=labels.index, name=labels.name)


def load_many(sweep_dirs: Sequence[Path]) -> pd.DataFrame:
    """Several sweeps as one results frame; earlier sweeps take the earlier seed positions."""
    frames = []
    for i, d in enumerate(sweep_dirs):
        frame = load_results(Path(d))
        if len(frame):
            frame["sweep_order"] = i
            frames.append(frame)
    return normalise(pd.concat(frames, ignore_index=True)) if frames else pd.DataFrame()


# ---------------------------------------------------------------- seeds by position


def positioned(results: pd.DataFrame) -> pd.DataFrame:
    """Graded attempts with their seed position and one 0/1 column `hit_<metric>` per metric."""
    if results.empty or "graded" not in results:
        return pd.DataFrame(columns=[*SETTING, "competition_id", "position"])
    graded = results[results["graded"]]
    order = graded.sort_values([*SETTING, "competition_id", "sweep_order", "seed", "attempt_id"], kind="stable")
    order = order.copy()
    order["position"] = order.groupby([*SETTING, "competition_id"], sort=False).cumcount()
    for name, field in METRICS.items():
        if name == "any_medal":
            continue
        col = order[field] if field in order else pd.Series(False, index=order.index)
        order[f"hit_{name}"] = col.fillna(False).astype(bool).astype(np.int8)
    order["hit_any_medal"] = (order["hit_gold"] | order["hit_silver"] | order["hit_bronze"]).astype(np.int8)
    return order


def sem(values: Sequence[float]) -> float:
    """Standard error of the mean with n-1, 0 for a single value (scipy.stats.sem, as upstream)."""
    return float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0


def check_missing(missing: str) -> str:
    if missing not in MISSING_MODES:
        raise ValueError(f"missing={missing!r} is unknown. Fix: use one of {', '.join(MISSING_MODES)}.")
    return missing


def complete_seeds(rows: pd.DataFrame, comps: Sequence[str]) -> pd.Series:
    """Per setting, how many positions every one of `comps` has (0 when one has no graded attempt)."""
    cells = rows.groupby([*SETTING, "competition_id"], sort=True).size().unstack("competition_id")
    return cells.reindex(columns=list(comps)).fillna(0).min(axis=1).astype(int)


def aggregate(pos: pd.DataFrame, competitions_: Sequence[str], columns: Sequence[str],
              missing: str = DEFAULT_MISSING) -> pd.DataFrame:
    """Per setting: each 0/1 column as % of `competitions_`, mean and SEM over seed positions.

    Also `seeds` (positions averaged), `cells` (graded attempts used), `attempted` (competitions with
    any graded attempt), `padded` (missing cells counted as failures: seeds x competitions - cells)
    and `dropped` (graded cells beyond the complete seeds, left out with missing="complete-seeds")."""
    comps, columns = list(dict.fromkeys(competitions_)), list(columns)
    rows = pos[pos["competition_id"].isin(comps)] if len(pos) else pos
    if not len(rows) or not comps:
        names = [f"{c}_{s}" for s in ("mean", "sem") for c in columns]
        return pd.DataFrame(columns=[*SETTING, *names, "cells", "attempted", "seeds", "padded", "dropped"])
    attempted = rows.groupby(SETTING, sort=True).agg(graded=("position", "size"),
                                                     attempted=("competition_id", "nunique"))
    if check_missing(missing) == "complete-seeds":
        keep = complete_seeds(rows, comps)
        rows = rows[rows["position"] < keep.reindex(pd.MultiIndex.from_frame(rows[SETTING])).to_numpy()]
    per_position = rows.groupby([*SETTING, "position"], sort=True)[columns].sum() * (100.0 / len(comps))
    by_setting = per_position.groupby(level=SETTING, sort=True)
    mean = by_setting.mean().add_suffix("_mean")
    spread = by_setting.std(ddof=1).div(np.sqrt(by_setting.size()), axis=0).fillna(0.0).add_suffix("_sem")
    out = pd.concat([mean, spread, rows.groupby(SETTING, sort=True).size().rename("cells"), attempted], axis=1)
    out["seeds"] = by_setting.size().reindex(out.index).fillna(0).astype(int)
    out["cells"] = out["cells"].fillna(0).astype(int)
    out["padded"] = out["seeds"] * len(comps) - out["cells"]
    out["dropped"] = out.pop("graded") - out["cells"]
    return out.reset_index()


# ---------------------------------------------------------------- the leaderboard


def per_competition_counts(results: pd.DataFrame) -> pd.DataFrame:
    """Per setting and competition: attempts planned and graded, and what qualifies their numbers.

    Computed once; a split's counts are then sums over its competitions."""
    frame = pd.DataFrame({k: results[k] for k in [*SETTING, "competition_id"]})
    graded = results["graded"].astype(bool)
    src = results.get("leaderboard_source", pd.Series("none", index=results.index)).fillna("none")
    valid = results.get("valid_submission", pd.Series(False, index=results.index)).fillna(False).astype(bool)
    unsandboxed = results.get("unsandboxed", pd.Series(False, index=results.index)).fillna(False).astype(bool)
    frame = frame.assign(attempts=1, graded=graded.astype(int), unsandboxed=(graded & unsandboxed).astype(int),
                         reference_panel=(graded & (src == "reference-panel")).astype(int),
                         medals_unknown=(graded & valid & (src == "none")).astype(int),
                         budget_s=results.get("budget_s", results["time_limit_s"]).astype(float))
    sums = {c: "sum" for c in ("attempts", "graded", "unsandboxed", "reference_panel", "medals_unknown")}
    grouped = frame.groupby([*SETTING, "competition_id"], sort=True)
    out = grouped.agg({**sums, "budget_s": "max"})
    usage = [k for k in USAGE if k in results and results[k].notna().any()]
    if usage:
        out = out.join(results[usage].groupby([frame[k] for k in [*SETTING, "competition_id"]], sort=True)
                       .sum(min_count=1))
    return out.reset_index()


def board_for(counts: pd.DataFrame, pos: pd.DataFrame, comps: Sequence[str], catalogue: Catalogue,
              missing: str = DEFAULT_MISSING) -> pd.DataFrame:
    """One leaderboard block: every setting that planned any of `comps`, aggregated over them."""
    hits = [f"hit_{m}" for m in METRICS]
    mine = counts[counts["competition_id"].isin(list(comps))]
    if mine.empty:
        return pd.DataFrame()
    sums = {c: "sum" for c in mine.columns if c not in (*SETTING, "competition_id", "budget_s")}
    info = mine.groupby(SETTING, sort=True).agg({**sums, "budget_s": "max"}).reset_index()
    for key in USAGE:
        if key in info:
            info[key] = mine.groupby(SETTING, sort=True)[key].sum(min_count=1).to_numpy()
    agg = aggregate(pos, comps, hits, missing).rename(columns=lambda c: c[4:] if c.startswith("hit_") else c)
    out = info.merge(agg, on=SETTING, how="left")
    out["competitions"] = len(comps)
    out["flagged"] = len(catalogue.flagged(comps))
    for col in ("seeds", "cells", "padded", "attempted", "dropped"):
        out[col] = out[col].fillna(0).astype(int)
    out["missing"] = missing
    return out


def leaderboard(results: pd.DataFrame, catalogue: Catalogue | None = None,
                splits: Sequence[str] | None = None, pos: pd.DataFrame | None = None,
                missing: str = DEFAULT_MISSING) -> pd.DataFrame:
    """Per setting, split and view: upstream's numbers with seeds, padding and integrity counts.

    View `all` counts every competition of the split; view `clean` leaves out those whose status is
    known-issue, leaky or excluded (only for splits that have some). `pos`: `positioned(results)`,
    when the caller has it already (so do the other studies). `missing`: MISSING_MODES."""
    if results.empty:
        return pd.DataFrame()
    catalogue = catalogue or default_catalogue()
    pos = positioned(results) if pos is None else pos
    counts = per_competition_counts(results)
    blocks = []
    for split in splits or covering_splits(results, catalogue):
        members = catalogue.splits[split]
        flagged = set(catalogue.flagged(members))
        views = [("all", members)] + ([("clean", [c for c in members if c not in flagged])] if flagged else [])
        for view, comps in views:
            block = board_for(counts, pos, comps, catalogue, missing)
            if len(block):
                block.insert(len(SETTING), "split", split)
                block.insert(len(SETTING) + 1, "view", view)
                blocks.append(block)
    return pd.concat(blocks, ignore_index=True) if blocks else pd.DataFrame()


def planned_board(results: pd.DataFrame, catalogue: Catalogue | None = None,
                  pos: pd.DataFrame | None = None, missing: str = DEFAULT_MISSING) -> pd.DataFrame:
    """Per setting and configured benchmark, over the competitions the sweep planned, for the sweeps
    that planned part of a split only (`benchmark.competitions`, `exclude_status`); empty otherwise.

    The leaderboard gives the upstream number for the whole split; this one answers what was asked."""
    if results.empty:
        return pd.DataFrame()
    catalogue = catalogue or default_catalogue()
    keys = [*SETTING, "benchmark", "benchmark_split"]
    frame = results[[*keys, "competition_id", "attempt_id"]].assign(benchmark_split=results["benchmark_split"]
                                                                   .fillna(results["benchmark"]))
    planned = frame.groupby(keys, sort=True)["competition_id"].agg(lambda c: tuple(sorted(set(c))))
    subsets = {k: comps for k, comps in planned.items() if set(comps) != set(catalogue.splits.get(k[-1], ()))}
    if not subsets:
        return pd.DataFrame()
    pos, blocks = positioned(results) if pos is None else pos, []
    for key, comps in subsets.items():
        mine = frame[(frame[keys] == list(key)).all(axis=1)]
        ids = set(mine["attempt_id"])
        rows = results[results["attempt_id"].isin(ids)]
        block = board_for(per_competition_counts(rows), pos[pos["attempt_id"].isin(ids)], comps, catalogue,
                          missing)
        block.insert(len(SETTING), "benchmark", key[len(SETTING)])
        block["subset"] = True
        blocks.append(block)
    return pd.concat(blocks, ignore_index=True)


def cell(mean: float, err: float, seeds: int | None = None) -> str:
    """'mean ± SEM (n=seeds)': the count says how much the ± rests on; one seed has no spread to show."""
    if mean is None or pd.isna(mean):
        return "-"
    if seeds is None:
        return f"{mean:.1f} ± {err:.1f}"
    if int(seeds) < 2:
        return f"{mean:.1f} ± n/a (1 seed)"
    return f"{mean:.1f} ± {err:.1f} (n={int(seeds)})"


def notes(row: pd.Series | dict) -> str:
    """What qualifies a leaderboard row, in words: padding, reference panels, sandboxing, statuses."""
    out = []
    if row.get("padded"):
        out.append(f"{row['padded']} missing cells padded as failures")
    if row.get("dropped"):
        out.append(f"{row['dropped']} cells beyond the complete seeds left out")
    if row.get("missing") == "complete-seeds" and not row.get("seeds") and row.get("graded"):
        out.append("no complete seed: a competition has no graded attempt")
    if row.get("reference_panel"):
        out.append("reference-panel medals")
    if row.get("medals_unknown"):
        out.append(f"{row['medals_unknown']} without leaderboard")
    if row.get("unsandboxed"):
        out.append(f"{row['unsandboxed']} unsandboxed")
    if row.get("view") == "all" and row.get("flagged"):
        out.append(f"includes {row['flagged']} flagged competitions")
    return "; ".join(out) or "-"


def format_table(board: pd.DataFrame, key: str = "split") -> str:
    """Markdown: the leading columns (setting, split or benchmark, seeds, valid, above median, any medal)
    are what the launcher prints and tests grep; the rest follow."""
    if board.empty:
        return "(no results)"
    head = ["scaffold", "model", "runtime", "hardware", key, "seeds", LABELS["valid_submission"],
            LABELS["above_median"], LABELS["any_medal"], LABELS["made_submission"], LABELS["gold"], LABELS["silver"],
            LABELS["bronze"], "competitions", "padded", "missing", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in board.to_dict("records"):
        cells = [r["scaffold"], r["model"], r["runtime"], r["hardware"], r[key], r["seeds"],
                 *(cell(r.get(f"{m}_mean"), r.get(f"{m}_sem"), r["seeds"]) for m in
                   ("valid_submission", "above_median", "any_medal", "made_submission", "gold", "silver", "bronze")),
                 f"{r['attempted']}/{r['competitions']}", r["padded"], missing_label(r), notes(r)]
        lines.append(md_row(cells))
    return "\n".join(lines)


def missing_label(row: pd.Series | dict) -> str:
    """The row's missing-cell mode as a table shows it; the default is marked."""
    mode = row.get("missing") or DEFAULT_MISSING
    return f"{mode} (default)" if mode == DEFAULT_MISSING else mode


def headline(results: pd.DataFrame, catalogue: Catalogue | None = None, missing: str = DEFAULT_MISSING) -> str:
    """The tables the launcher prints: the leaderboard over whole splits, and over the planned subset if any."""
    board = leaderboard(results, catalogue, missing=missing)
    text = format_table(board[board["view"] == "all"]) if len(board) else "(no results)"
    planned = planned_board(results, catalogue, missing=missing)
    if len(planned) and planned["subset"].any():
        text += ("\n\nOver the competitions this sweep planned (a subset of the split, so the percentages are of "
                 "the planned competitions, not of the split):\n\n"
                 + format_table(planned[planned["subset"]], key="benchmark"))
    return text


README_SPLIT_COLUMNS = {"lite": "Low == Lite (%)", "medium": "Medium (%)", "high": "High (%)", "all": "All (%)"}


def readme_rows(board: pd.DataFrame, results: pd.DataFrame, catalogue: Catalogue | None = None) -> pd.DataFrame:
    """Upstream README leaderboard rows: any-medal % per split; '-' where a split was not covered.

    A split counts as covered when every competition of it was attempted at least once; a dagger
    marks values that include padded (missing) seeds, as upstream's footnote does."""
    if board.empty:
        return pd.DataFrame()
    catalogue = catalogue or default_catalogue()
    view = board[board["view"] == "all"]
    columns = README_SPLIT_COLUMNS
    graded = results.loc[results["graded"], [*SETTING, "competition_id", "graded_at"]
                         if "graded_at" in results else [*SETTING, "competition_id"]]
    dates = graded.groupby(SETTING)["graded_at"].max().to_dict() if "graded_at" in graded else {}
    leaky = graded[graded["competition_id"].map(catalogue.status).eq("leaky")] \
        .groupby(SETTING)["competition_id"].nunique().to_dict()
    cells = {(*(r[k] for k in SETTING), r["split"]): r for r in view.to_dict("records")}
    budgets = view.groupby(SETTING)["budget_s"].max().to_dict() if "budget_s" in view else {}
    rows = []
    for setting in sorted({key[:-1] for key in cells}):
        key = dict(zip(SETTING, setting, strict=True))
        row = {"Agent": key["scaffold"], "LLM(s)": key["model"]}
        for split, label in columns.items():
            match = cells.get((*setting, split))
            if not match or match["attempted"] < match["competitions"]:
                row[label] = "-"
            else:
                dagger = " †" if match["padded"] else ""
                row[label] = cell(match["any_medal_mean"], match["any_medal_sem"], match["seeds"]) + dagger
        budget = budgets.get(setting, np.nan)
        row["Running Time (hours)"] = "-" if pd.isna(budget) else f"{budget / 3600:.3g}"
        stamp = dates.get(setting)
        row["Date"] = str(stamp)[:10] if isinstance(stamp, str) else "-"
        n_leaky = int(leaky.get(setting, 0))
        row["Known Leakage"] = f"includes {n_leaky} leaky competitions" if n_leaky else "none known"
        row["Source Code Available"] = "-"
        row["Grading Reports Available"] = "yes (analysis/run_groups)"
        row["Hardware"] = key["hardware"]
        row["Missing cells"] = missing_label(next(r for k, r in cells.items() if k[:-1] == setting))
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- run-group reports


def report_records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Graded rows back into the per-competition report dicts they came from: the fields of
    `grading.CompetitionReport` in its order, NaN and NA back to null (a valid NaN score stays NaN)."""
    defaults = {f.name: None if f.default is dataclasses.MISSING else f.default
                for f in dataclasses.fields(grading.CompetitionReport)}
    valid = rows["valid_submission"].fillna(False).astype(bool).tolist() if "valid_submission" in rows \
        else [False] * len(rows)
    columns = []
    for key in REPORT_FIELDS:
        if key not in rows:
            columns.append([defaults[key]] * len(rows))
        elif key == "score":
            scores = pd.to_numeric(rows[key], errors="coerce").astype(float).tolist()
            columns.append([None if v != v and not ok else v for v, ok in zip(scores, valid, strict=True)])
        elif key in BOOL_FIELDS:
            columns.append([None if v is None or v is pd.NA else bool(v) for v in rows[key].astype(object).tolist()])
        else:
            values = rows[key].astype(object)
            columns.append(values.where(values.notna(), None).tolist())
    return [dict(zip(REPORT_FIELDS, values, strict=True)) for values in zip(*columns, strict=True)]


def run_group(records: list[dict[str, Any]]) -> dict[str, Any]:
    """`grading.run_group_report` for report dicts: upstream's totals, then the reports in order."""
    def count(field: str) -> int:
        return sum(bool(r[field]) for r in records)

    medals = {m: count(f"{m}_medal") for m in ("gold", "silver", "bronze")}
    return {"total_runs": len(records), "total_runs_with_submissions": count("submission_exists"),
            "total_valid_submissions": count("valid_submission"), "total_medals": sum(medals.values()),
            "total_gold_medals": medals["gold"], "total_silver_medals": medals["silver"],
            "total_bronze_medals": medals["bronze"], "total_above_median": count("above_median"),
            "competition_reports": records}


def report_json(body: dict[str, Any]) -> str:
    """A run-group report as JSON: the totals indented, one competition report per line (the C
    encoder: fast at 100,000 reports). NaN scores stay the bare token NaN, as upstream writes them."""
    head = [f'  "{k}": {json.dumps(v)}' for k, v in body.items() if k != "competition_reports"]
    reports = ",\n".join(f"    {json.dumps(r)}" for r in body["competition_reports"])
    return "{\n" + ",\n".join(head) + ',\n  "competition_reports": [\n' + reports + "\n  ]\n}\n"


def run_group_name(setting_name: str, position: int, seeds: Iterable[Any], width: int = 3) -> str:
    """`<setting>_pos<NNN>_seed<k>`: the zero-padded position first, so sorting the names as strings
    (as upstream's aggregator does) gives seed order; then the launched seed(s) of that position."""
    launched = "+".join(str(s) for s in sorted({int(s) for s in seeds}))
    return f"{setting_name}_pos{position:0{width}d}_seed{launched}"


def run_group_reports(results: pd.DataFrame, pos: pd.DataFrame | None = None) -> dict[str, dict[str, Any]]:
    """Upstream run-group reports: one per setting with every seed, and one per setting and seed position.

    Keys are file stems: `<setting>_grading_report` and `run_groups/<run_group_name>/grading_report`;
    each per-seed folder holds exactly one `*grading_report*.json`, as upstream's aggregator wants."""
    pos = positioned(results) if pos is None else pos
    if pos.empty:
        return {}
    ordered = pos.sort_values([*SETTING, "position", "competition_id"], kind="stable")
    records = report_records(ordered)
    width = max(3, len(str(int(ordered["position"].max()))))
    rows = zip(zip(*(ordered[k].tolist() for k in SETTING), strict=True), ordered["position"].tolist(),
               ordered["seed"].tolist(), records, strict=True)
    out: dict[str, dict[str, Any]] = {}
    for setting, group in itertools.groupby(rows, key=lambda r: r[0]):
        group = list(group)
        name = "_".join(str(v) for v in setting)
        out[f"{name}_grading_report"] = run_group([r[3] for r in group])
        for k, seed in itertools.groupby(group, key=lambda r: r[1]):
            seed = list(seed)
            folder = run_group_name(name, int(k), [r[2] for r in seed], width)
            out[f"run_groups/{folder}/grading_report"] = run_group([r[3] for r in seed])
    return out


# ---------------------------------------------------------------- scaling studies


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k: the chance that k of n seeds, drawn without replacement, include a success."""
    if k > n:
        raise ValueError(f"k={k} > n={n}")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _pass_curve(n: int, c: int) -> np.ndarray:
    """pass@k for k = 1..n in one go: 1 - prod_{i=n-c+1..n} (1 - k/i), exact zeros where k > n-c."""
    ks = np.arange(1, n + 1, dtype=float)
    if c == 0:
        return np.zeros(n)
    terms = 1.0 - ks[:, None] / np.arange(n - c + 1, n + 1, dtype=float)[None, :]
    return 1.0 - np.prod(np.clip(terms, 0.0, None), axis=1)


def pass_at_k_tables(results: pd.DataFrame, split: str, catalogue: Catalogue | None = None,
                     pos: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per competition, overall) pass@k in % for k = 1..n, n = the setting's seed positions.

    Missing seeds are failures, as in the leaderboard, so overall pass@1 equals the any-medal mean.
    Overall = mean over every competition of the split (the ones not run count 0)."""
    catalogue = catalogue or default_catalogue()
    comps = list(catalogue.splits[split])
    pos = positioned(results) if pos is None else pos
    pos = pos[pos["competition_id"].isin(comps)] if len(pos) else pos
    per_comp, overall = [], []
    if pos.empty:
        return pd.DataFrame(), pd.DataFrame()
    for setting, group in pos.groupby(SETTING, sort=True):
        key = dict(zip(SETTING, setting, strict=True))
        n = int(group["position"].max()) + 1
        medals = group.groupby("competition_id")["hit_any_medal"].sum()
        curves = {c: _pass_curve(n, c) for c in set(medals.tolist()) | {0}}
        matrix = np.array([curves[c] for c in medals.tolist()]).reshape(len(medals), n)
        per_comp.append(pd.DataFrame({
            **key, "competition_id": np.repeat(medals.index.to_numpy(), n),
            "n": n, "c": np.repeat(medals.to_numpy(), n), "k": np.tile(np.arange(1, n + 1), len(medals)),
            "pass_at_k": 100.0 * matrix.ravel()}))
        total = matrix.sum(axis=0) / len(comps)  # competitions not run add 0
        overall.append(pd.DataFrame({**key, "split": split, "n": n, "k": np.arange(1, n + 1),
                                     "pass_at_k": 100.0 * total}))
    return pd.concat(per_comp, ignore_index=True), pd.concat(overall, ignore_index=True)


def time_grid(budget_s: float) -> list[float]:
    """Checkpoints in seconds: every hour for budgets of 2 h or more, else about ten round steps."""
    if budget_s >= 7200:
        return [3600.0 * h for h in range(1, math.ceil(budget_s / 3600) + 1)]
    steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800]
    step = next((s for s in steps if budget_s / s <= 12), 3600)
    return [float(step * i) for i in range(1, math.ceil(budget_s / step) + 1)]


def time_label(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    return f"{seconds / 60:g}m" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g}s"


def _floats(results: pd.DataFrame, column: str) -> np.ndarray:
    if column not in results:
        return np.full(len(results), np.nan)
    return pd.to_numeric(results[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def snapshot_frame(results: pd.DataFrame) -> pd.DataFrame:
    """One row per graded snapshot: `row` (the attempt's position in `results`), elapsed seconds and
    whether it earned any medal.

    An attempt with no snapshot at all contributes its final grade, at the time its agent stopped
    (or at its budget when that is unknown)."""
    finals = results["any_medal"].fillna(False).astype(bool).tolist() if "any_medal" in results \
        else [False] * len(results)
    stopped = np.where(np.isnan(_floats(results, "agent_elapsed_s")), _floats(results, "time_limit_s"),
                       _floats(results, "agent_elapsed_s"))
    lists = results["snapshots"].tolist()
    counts = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    flat = list(itertools.chain.from_iterable(lists))
    bare = np.flatnonzero(counts == 0)  # no snapshot: the final grade when the agent stopped
    rows = np.concatenate([np.repeat(np.arange(len(lists)), counts), bare])
    when = np.concatenate([np.fromiter((x.get("elapsed_s") or 0 for x in flat), dtype=float, count=len(flat)),
                           np.nan_to_num(stopped[bare], nan=0.0)])
    medal = np.concatenate([np.fromiter((bool(x.get("gold") or x.get("silver") or x.get("bronze")) for x in flat),
                                        dtype=bool, count=len(flat)), np.asarray(finals, dtype=bool)[bare]])
    return pd.DataFrame({"row": rows, "elapsed_s": when, "any_medal": medal})


def medal_matrix(rows: np.ndarray, elapsed: np.ndarray, medal: np.ndarray, n: int,
                 grid: Sequence[float]) -> np.ndarray:
    """n attempts x checkpoints: 1 where the latest snapshot at or before the checkpoint has a medal.

    A snapshot counts from the first checkpoint at or after it; one taken after the last checkpoint
    (the final copy of an agent stopped at its budget) counts at the last one."""
    width = len(grid)
    col = np.minimum(np.searchsorted(np.asarray(grid, dtype=float), elapsed, "left"), width - 1)
    order = np.lexsort((elapsed, rows))
    key = (rows * width + col)[order]
    _, first_from_end = np.unique(key[::-1], return_index=True)
    last = len(key) - 1 - first_from_end  # the latest snapshot in each (attempt, checkpoint) cell
    out = np.full(n * width, -1.0)
    out[key[last]] = medal[order][last].astype(float)
    out = out.reshape(n, width)
    seen = np.where(out >= 0, np.arange(width), 0)
    np.maximum.accumulate(seen, axis=1, out=seen)  # forward fill: the last checkpoint with a snapshot
    filled = np.take_along_axis(out, seen, axis=1)
    return np.where(filled < 0, 0.0, filled)


def medal_over_time(results: pd.DataFrame, split: str, catalogue: Catalogue | None = None,
                    pos: pd.DataFrame | None = None) -> pd.DataFrame:
    """Any-medal % of the split reached by T (per setting, mean ± SEM over seed positions), T on the
    setting's own grid (`time_grid` of its budget)."""
    catalogue = catalogue or default_catalogue()
    comps = list(catalogue.splits[split])
    pos = positioned(results) if pos is None else pos
    pos = pos[pos["competition_id"].isin(comps)].reset_index(drop=True) if len(pos) else pos
    if pos.empty:
        return pd.DataFrame()
    snaps = snapshot_frame(pos)
    snap_rows, elapsed, medal = snaps["row"].to_numpy(), snaps["elapsed_s"].to_numpy(), snaps["any_medal"].to_numpy()
    budgets = pd.Series(_floats(pos, "time_limit_s")).fillna(0.0)
    blocks = []
    for budget, group in pos.groupby(budgets.to_numpy(), sort=True):
        grid = time_grid(budget) if budget > 0 else [float(elapsed.max() or 1.0)]
        mapping = np.full(len(pos), -1)
        mapping[group.index.to_numpy()] = np.arange(len(group))
        sel = mapping[snap_rows] >= 0
        matrix = medal_matrix(mapping[snap_rows[sel]], elapsed[sel], medal[sel], len(group), grid)
        cols = [f"t{j}" for j in range(len(grid))]
        frame = pd.concat([group[[*SETTING, "competition_id", "position"]].reset_index(drop=True),
                           pd.DataFrame(matrix, columns=cols)], axis=1)
        agg = aggregate(frame, comps, cols)
        k = len(agg)
        blocks.append(pd.DataFrame({
            **{key: np.tile(agg[key].to_numpy(), len(grid)) for key in [*SETTING, "seeds"]},
            "split": split, "t_s": np.repeat(grid, k), "t": np.repeat([time_label(t) for t in grid], k),
            "budget_s": budget, "any_medal_mean": agg[[f"{c}_mean" for c in cols]].to_numpy().T.ravel(),
            "any_medal_sem": agg[[f"{c}_sem" for c in cols]].to_numpy().T.ravel()}))
    return pd.concat(blocks, ignore_index=True).sort_values([*SETTING, "t_s"], ignore_index=True)


def runtime_budgets(board: pd.DataFrame) -> pd.DataFrame:
    """Settings that differ only in runtime, side by side: one row per (scaffold, model, hardware, split)."""
    if board.empty:
        return pd.DataFrame()
    view = board[board["view"] == "all"].sort_values("budget_s")
    rows = []
    for key, group in view.groupby(["scaffold", "model", "hardware", "split"], sort=True):
        row = dict(zip(["scaffold", "model", "hardware", "split"], key, strict=True))
        for r in group.to_dict("records"):
            row[f"{r['runtime']} any medal %"] = cell(r["any_medal_mean"], r["any_medal_sem"], r["seeds"])
            row[f"{r['runtime']} seeds"] = r["seeds"]
        rows.append(row)
    return pd.DataFrame(rows)


def gpu_scaling(results: pd.DataFrame, board: pd.DataFrame) -> pd.DataFrame:
    """Per hardware setting: GPUs, scores, and measured use (GPU utilisation and memory, CPU, RSS)."""
    if board.empty:
        return pd.DataFrame()
    view = board[board["view"] == "all"]
    graded = results[results["graded"]]
    measured = [c for c in ("gpu_util_percent_mean", "gpu_mem_mib_max", "cpu_percent_mean", "rss_mib_max")
                if c in graded]
    extra = graded.groupby(SETTING).agg(
        gpus=("gpus", "max"), **{c: (c, "max" if c.endswith("_max") else "mean") for c in measured}).reset_index() \
        if "gpus" in graded else graded[SETTING].drop_duplicates()
    keep = [*SETTING, "split", "seeds", "any_medal_mean", "any_medal_sem", "valid_submission_mean",
            "valid_submission_sem"]
    out = view[keep].merge(extra, on=SETTING, how="left")
    return out.sort_values(["scaffold", "model", "runtime", "split", "hardware"], ignore_index=True)


def heatmap(results: pd.DataFrame, split: str, catalogue: Catalogue | None = None,
            pos: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per setting, competition and seed position: 3 gold, 2 silver, 1 bronze, 0 valid without medal,
    -1 no valid submission; padded (missing) cells are absent."""
    catalogue = catalogue or default_catalogue()
    pos = positioned(results) if pos is None else pos
    pos = pos[pos["competition_id"].isin(catalogue.splits[split])] if len(pos) else pos
    if pos.empty:
        return pd.DataFrame(columns=[*SETTING, "competition_id", "position", "code"])
    code = np.select([pos["hit_gold"] == 1, pos["hit_silver"] == 1, pos["hit_bronze"] == 1,
                      pos["hit_valid_submission"] == 1], [3, 2, 1, 0], default=-1)
    out = pos[[*SETTING, "competition_id", "position"]].copy()
    out["code"] = code
    return out.reset_index(drop=True)


def usage_table(results: pd.DataFrame, pos: pd.DataFrame | None = None) -> pd.DataFrame:
    """Tokens and cost per setting when attempts recorded them (empty otherwise)."""
    present = [c for c in USAGE if c in results and results[c].notna().any()]
    if not present:
        return pd.DataFrame()
    graded = results[results["graded"]]
    pos = positioned(results) if pos is None else pos
    medals = pos.groupby(SETTING)["hit_any_medal"].sum().rename("medals")
    out = graded.groupby(SETTING).agg(
        attempts=("attempt_id", "size"), recorded=(present[0], "count"),
        **{f"{c}_total": (c, "sum") for c in present}, **{f"{c}_mean": (c, "mean") for c in present})
    out = out.join(medals)
    if "cost_usd" in present:
        out["cost_per_medal_usd"] = out["cost_usd_total"] / out["medals"].replace(0, np.nan)
    return out.reset_index()


def usage_by_competition(results: pd.DataFrame) -> pd.DataFrame:
    """Tokens and cost per setting and competition, summed over seeds, with the mean per attempt."""
    present = [c for c in USAGE if c in results and results[c].notna().any()]
    if not present:
        return pd.DataFrame()
    graded = results[results["graded"]]
    out = graded.groupby([*SETTING, "competition_id"]).agg(
        attempts=("attempt_id", "size"), **{f"{c}_total": (c, lambda v: v.sum(min_count=1)) for c in present},
        **{f"{c}_mean": (c, "mean") for c in present})
    return out.reset_index()


# ---------------------------------------------------------------- two sweeps


def compare_results(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Per (competition, setting, seed) graded in both: medal and score then and now."""
    if old.empty or new.empty or "score" not in old or "score" not in new:
        return pd.DataFrame()
    keys = ["competition_id", *SETTING, "seed"]
    cols = keys + ["score", "gold_medal", "silver_medal", "bronze_medal"]
    both = old[old["graded"]][cols].merge(new[new["graded"]][cols], on=keys, suffixes=("_old", "_new"))

    def medal(frame: pd.DataFrame, side: str) -> pd.Series:
        picks = [frame[f"{m}_medal_{side}"].fillna(False).astype(bool) for m in ("gold", "silver", "bronze")]
        return pd.Series(np.select(picks, ["gold", "silver", "bronze"], default="none"), index=frame.index)

    both["medal_old"], both["medal_new"] = medal(both, "old"), medal(both, "new")
    had, has = both["medal_old"] != "none", both["medal_new"] != "none"
    both["change"] = np.select([had & ~has, ~had & has, both["medal_old"] != both["medal_new"]],
                               ["lost medal", "gained medal", "medal changed"], default="same")
    both["score_change"] = both["score_new"] - both["score_old"]
    return both[keys + ["medal_old", "medal_new", "change", "score_old", "score_new", "score_change"]] \
        .sort_values(keys, ignore_index=True)


def compare(old_dir: Path, new_dir: Path) -> pd.DataFrame:
    """Two sweep folders compared attempt by attempt (`compare_results`)."""
    return compare_results(load_results(Path(old_dir)), load_results(Path(new_dir)))


def competition_changes(table: pd.DataFrame) -> pd.DataFrame:
    """Per competition and setting, over the seeds in both: medals then and now, mean score change."""
    if table.empty:
        return pd.DataFrame()
    frame = table.assign(had=table["medal_old"] != "none", has=table["medal_new"] != "none")
    out = frame.groupby(["competition_id", *SETTING], sort=True).agg(
        seeds=("seed", "size"), medals_old=("had", "sum"), medals_new=("has", "sum"),
        mean_score_old=("score_old", "mean"), mean_score_new=("score_new", "mean"),
        mean_score_change=("score_change", "mean")).reset_index()
    out["change"] = np.sign(out["medals_new"] - out["medals_old"]).map({1: "gained", -1: "lost", 0: "same"})
    return out


def _num(value: Any, sign: bool = False) -> str:
    if value is None or pd.isna(value):
        return "-"
    return f"{value:+.5g}" if sign else f"{value:.5g}"


def format_comparison(old_dir: Path, new_dir: Path, table: pd.DataFrame) -> str:
    """Markdown: counts, what moved per competition over all seeds, then the attempts that moved."""
    head = f"# {md_cell(Path(new_dir).name)} compared with {md_cell(Path(old_dir).name)}\n"
    if table.empty:
        return head + "No attempt appears in both sweeps with a grade.\n"
    moved = table[table["change"] != "same"]
    lines = [head, f"{len(table)} attempts in both; {int((table['change'] == 'gained medal').sum())} gained a medal, "
             f"{int((table['change'] == 'lost medal').sum())} lost one, "
             f"{int((table['change'] == 'medal changed').sum())} changed medal.\n",
             "## Per competition (seeds in both sweeps)\n",
             "| competition | scaffold | model | runtime | hardware | seeds | medals then | medals now | change | "
             "mean score then | mean score now | mean Δ score |", "|" + "---|" * 12]
    for r in competition_changes(table).to_dict("records"):
        lines.append(md_row([r["competition_id"], r["scaffold"], r["model"], r["runtime"], r["hardware"], r["seeds"],
                              r["medals_old"], r["medals_new"], r["change"], _num(r["mean_score_old"]),
                              _num(r["mean_score_new"]), _num(r["mean_score_change"], sign=True)]))
    lines += ["", "## Per attempt" + (" (only those whose medal changed)" if len(moved) else "") + "\n",
              "| competition | scaffold | model | seed | medal then | medal now | change | score then | score now | "
              "Δ score |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in (moved if len(moved) else table).to_dict("records"):
        lines.append(md_row([r["competition_id"], r["scaffold"], r["model"], r["seed"], r["medal_old"], r["medal_new"],
                              r["change"], _num(r["score_old"]), _num(r["score_new"]),
                              _num(r["score_change"], sign=True)]))
    return "\n".join(lines) + "\n"



# ---------------------------------------------------------------- item analysis between two settings


def item_analysis(results: pd.DataFrame, first: dict[str, Any], second: dict[str, Any], comps: Sequence[str],
                  metric: str = "any_medal") -> pd.DataFrame:
    """Per competition: each setting's hit rate (% of its graded seeds; none graded = 0), the difference
    second - first, and whether the competition separates them or sits at floor (both 0) or ceiling (both 100)."""
    pos = positioned(results)

    def rates(setting: dict[str, Any]) -> pd.Series:
        mine = pos[(pos[list(setting)] == pd.Series(setting)).all(axis=1)] if len(pos) else pos
        got = mine.groupby("competition_id")[f"hit_{metric}"].mean() * 100.0 if len(mine) else pd.Series(dtype=float)
        return got.reindex(list(comps)).fillna(0.0)

    a, b = rates(first), rates(second)
    out = pd.DataFrame({"competition_id": list(comps), "first": a.to_numpy(), "second": b.to_numpy()})
    out["difference"] = out["second"] - out["first"]
    out["item"] = np.select([out["difference"] != 0, out["first"] == 100.0, out["first"] == 0.0],
                            ["separates", "ceiling", "floor"], "tied")
    return out


def paired_bootstrap(items: pd.DataFrame, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """Mean difference over competitions with a percentile interval from resampling competitions (paired:
    both settings keep the same draw). Seeded, so a report's interval is reproducible."""
    diffs = items["difference"].to_numpy(dtype=float)
    if not len(diffs):
        return {"difference": float("nan"), "low": float("nan"), "high": float("nan"), "n_boot": n_boot}
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), size=(n_boot, len(diffs)))].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"difference": float(diffs.mean()), "low": float(low), "high": float(high), "n_boot": n_boot}


# ---------------------------------------------------------------- the contamination study (descriptions)


def original_view(results: pd.DataFrame) -> pd.DataFrame:
    """The attempts the leaderboard counts: those given the original description, so obfuscated attempts never
    pass for extra seeds of the same setting; a sweep that ran only obfuscated attempts keeps them all."""
    if results.empty or "description" not in results:
        return results
    original = results["description"] == DESCRIPTIONS[0]
    return results[original].reset_index(drop=True) if original.any() else results


def description_comparison(results: pd.DataFrame, catalogue: Catalogue | None = None,
                           missing: str = DEFAULT_MISSING) -> pd.DataFrame:
    """The paper's contamination statistic: per setting, any-medal and valid-submission % of the primary split
    (mean ± SEM over seed positions) with the original and with the obfuscated description, side by side.
    Empty unless the results hold both descriptions."""
    catalogue = catalogue or default_catalogue()
    if results.empty or "description" not in results or results["description"].nunique() < 2:
        return pd.DataFrame()
    split = primary_split(results, catalogue)
    if split is None:
        return pd.DataFrame()
    blocks = []
    for description in DESCRIPTIONS:
        mine = results[results["description"] == description]
        agg = aggregate(positioned(mine), catalogue.splits[split], ["hit_any_medal", "hit_valid_submission"],
                        missing)
        agg.insert(len(SETTING), "description", description)
        blocks.append(agg)
    out = pd.concat(blocks, ignore_index=True).rename(columns=lambda c: c[4:] if c.startswith("hit_") else c)
    out.insert(len(SETTING), "split", split)
    return out.sort_values([*SETTING, "description"], key=_description_order, ignore_index=True)


def _description_order(col: pd.Series) -> pd.Series:
    return col.map({d: i for i, d in enumerate(DESCRIPTIONS)}) if col.name == "description" else col


def format_description_comparison(table: pd.DataFrame) -> pd.DataFrame:
    """The comparison as the report shows it: one row per setting, 'mean ± SEM (n=seeds)' per description."""
    rows = []
    for setting, group in table.groupby(SETTING, sort=True):
        row = {**dict(zip(SETTING, setting, strict=True)), "split": group["split"].iloc[0]}
        for r in group.to_dict("records"):
            row[f"any medal % ({r['description']})"] = cell(r["any_medal_mean"], r["any_medal_sem"], r["seeds"])
            row[f"valid % ({r['description']})"] = cell(r["valid_submission_mean"], r["valid_submission_sem"],
                                                        r["seeds"])
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- the analysis job


def sweep_analysis_conf(sweep_dir: Path) -> dict[str, Any]:
    """The sweep's `analysis` settings and `data_dir` as its latest launch planned them (the config of the
    manifest's first row: a relaunch with other settings writes a new config beside the old); {} without configs."""
    manifest = plan.read_manifest(sweep_dir)
    ids = manifest["config_id"].dropna() if manifest is not None and "config_id" in manifest else []
    latest = [Path(sweep_dir) / "configs" / f"{i}.json" for i in list(ids)[:1]]
    for path in latest + sorted((Path(sweep_dir) / "configs").glob("*.json")):
        config = read_json(path)
        if isinstance(config, dict):
            analysis = config.get("analysis") if isinstance(config.get("analysis"), dict) else {}
            return {**analysis, "data_dir": config.get("data_dir")}
    return {}


def write_audit_step(sweep_dir: Path, status: dict[str, Any]) -> Path:
    """analysis/audit_step.json: what the analysis job's audit step did (`audit.run_step`), including what
    `audit.json` cannot say (the mode, a judge that did not start, a step that failed), for `hpc-mle report`."""
    return atomic_write_json(Path(sweep_dir) / AUDIT_STEP, status)


def audit_status(sweep_dir: Path) -> dict[str, Any] | None:
    """What the sweep's audit did, as the report says it: the analysis job's step record where it is not older than
    `audit.json` (a later `hpc-mle audit` by hand replaces it), else what `audit.json` alone tells; None when the
    sweep was never audited and its analysis did not run an audit step."""
    sweep_dir = Path(sweep_dir)
    body, step = read_json(sweep_dir / AUDIT_FILE, default=None), read_json(sweep_dir / AUDIT_STEP, default=None)
    body = body if isinstance(body, dict) else None
    step = step if isinstance(step, dict) and isinstance(step.get("mode"), str) else None
    if step is not None and body is not None and _mtime(sweep_dir / AUDIT_FILE) > _mtime(sweep_dir / AUDIT_STEP):
        step = None
    if step is not None and (step["mode"] == "off" or not step.get("ok")):
        return step
    if body is None:
        return step
    by_hand = {"mode": "judge" if body.get("judge") else "checks", "ok": True, "by": "`hpc-mle audit`"}
    return {**(step or by_hand), **audit_counts(body)}


def audit_counts(body: dict[str, Any]) -> dict[str, Any]:
    """The counts of an `audit.json` body the report states: attempts covered, reused, flagged, the judge's use and
    its first unusable answer."""
    attempts = [a for a in body.get("attempts") or [] if isinstance(a, dict)]
    failed_ids = set(map(str, body.get("judge_failed") or []))
    failed = [a for a in attempts if str(a.get("attempt_id")) in failed_ids]
    judge = failed[0].get("judge") if failed and isinstance(failed[0].get("judge"), dict) else {}
    return {"audited": len(attempts), "reused": int(body.get("reused") or 0), "flagged": len(body.get("flagged") or []),
            "judge": body.get("judge") if isinstance(body.get("judge"), dict) else None, "judge_failed": len(failed),
            "judge_failure": str(judge.get("answer") or "")[:300] if failed else None}


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def load_model_config(name_or_path: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """A `conf/model` entry by name (gpt4o) or a model YAML's path, with overrides: the models the analysis tools
    ask (`analysis.audit_judge`, `hpc-mle familiarity --model`). Here, below both, so neither imports the other."""
    path = Path(name_or_path)
    if not path.is_file():
        path = paths.REPO_ROOT / "conf" / "model" / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"model {name_or_path!r}: no such file and no conf/model/{name_or_path}.yaml. "
                                "Fix: a conf/model name (gpt4o) or the path of a model YAML")
    config = yaml.safe_load(path.read_text()) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a model config is a mapping (name, provider, model, api_key_env, ...), not "
                         f"{type(config).__name__}. Fix: write it as conf/model/gpt4o.yaml is written")
    config.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return config


def sweep_missing_mode(sweep_dir: Path) -> str:
    """The sweep's `analysis.missing` setting, else the default."""
    mode = sweep_analysis_conf(sweep_dir).get("missing")
    return mode if mode in MISSING_MODES else DEFAULT_MISSING


def write_comparison(sweep_dir: Path, previous: Path) -> Path:
    """analysis/compare.md: what gained or lost a medal since `previous` (a nightly's night before)."""
    table = compare(previous, sweep_dir)
    return atomic_write_text(Path(sweep_dir) / "analysis" / COMPARISON, format_comparison(previous, sweep_dir, table))
