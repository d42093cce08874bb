"""The analysis as files a researcher can publish from: summary.md, report.html, CSV, parquet, PNG.

`build_report` turns a results frame into sections (text, tables of display strings, figures);
the renderers only lay them out. report.html opens offline: the CSS is inline and every figure is
a PNG embedded as a base64 data URI. Figures use matplotlib's Agg canvas directly (no pyplot, so
no global backend state and nothing that needs a display).
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpc_mle import analysis as an
from hpc_mle.files import atomic_write_bytes, atomic_write_json, atomic_write_text, read_untrusted
from hpc_mle.textsafe import md_cell, md_row

ATTEMPT_ROWS = 300  # the per-attempt table lists this many; results.parquet has them all
PANEL_NOTE = ("Medals marked *reference-panel* are placements among the reference solutions that ship with a "
              "competition (the mini benchmark), not places on a Kaggle leaderboard: they are not comparable "
              "with MLE-bench medals.")


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)


@dataclass
class Report:
    title: str
    sections: list[Section]
    figures: dict[str, bytes]
    tables: dict[str, pd.DataFrame]  # the numbers behind the sections, for CSV


# ---------------------------------------------------------------- figures


def _figure(width: float = 8.0, height: float = 4.0, left: float = 0.9, bottom: float = 0.6, right: float = 0.25):
    """A figure with fixed margins in inches (automatic layout costs seconds on big figures)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - 0.4 / height)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _setting_label(row: dict[str, Any] | pd.Series) -> str:
    return " / ".join(str(row[k]) for k in an.SETTING)


def percent_limits(values: Any) -> tuple[float, float]:
    """Axis limits for percentages with a margin on both sides, so a line or bar at 0 (or 100) is not hidden
    under the axis; at least 0-10 so all-zero data gets a readable scale instead of matplotlib's 0-0.06."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    top = min(100.0, max(10.0, 1.1 * float(finite.max()) if finite.size else 0.0))
    margin = 0.03 * top
    return -margin, top + margin


def _seeds_label(seeds: Any) -> str:
    return "1 seed" if int(seeds) < 2 else f"n={int(seeds)}"


def plot_leaderboard(board: pd.DataFrame):
    """Any-medal % per setting and split, with SEM error bars and the value and seed count at each bar
    (a 0 % bar has no width: the label still shows it)."""
    view = board[board["view"] == "all"].head(40)
    labels = [f"{_setting_label(r)} [{r['split']}]" for r in view.to_dict("records")]
    left = 0.3 + 0.065 * max(map(len, labels), default=10)
    fig = _figure(left + 6, 1.2 + 0.3 * len(view), left=left)
    ax = fig.add_subplot()
    y = np.arange(len(view))
    means, errs = view["any_medal_mean"].fillna(0), view["any_medal_sem"].fillna(0)
    ax.barh(y, means, xerr=errs, color="#c8961e", capsize=3)
    for yi, mean, err, seeds in zip(y, means, errs, view["seeds"], strict=True):
        ax.annotate(f"{mean:.1f} ({_seeds_label(seeds)})", (mean + err, yi), xytext=(4, 0),
                    textcoords="offset points", va="center", fontsize=7)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("any medal % of the split (mean ± SEM over seeds; no error bar for one seed)")
    low, high = percent_limits(means + errs)
    ax.set_xlim(low, high * 1.15)  # room for the labels
    return fig


def fig_leaderboard(board: pd.DataFrame) -> bytes:
    return _png(plot_leaderboard(board))


def _curves(frame: pd.DataFrame, x: str, y: str, err: str | None, xlabel: str, ylabel: str,
            scale: float = 1.0, integer_x: bool = False):
    """One line per setting (SEM band when `err`), the legend beside the plot, up to 20 distinct colours;
    percentage limits with a margin so lines at 0 stay visible; a single x gets a unit-wide axis and big markers."""
    from matplotlib import colormaps

    groups = list(frame.groupby(an.SETTING, sort=True))
    legend_w = 0.3 + 0.065 * max((len(" / ".join(map(str, k))) for k, _ in groups), default=10)
    fig = _figure(7 + legend_w, 4.2, right=legend_w)
    ax = fig.add_subplot()
    colours = colormaps["tab20" if len(groups) > 10 else "tab10"].colors
    for i, (setting, group) in enumerate(groups):
        xs, ys, colour = group[x] / scale, group[y], colours[i % len(colours)]
        ax.plot(xs, ys, color=colour, marker="o" if len(group) <= 30 else None, ms=3 if len(group) > 1 else 7,
                label=" / ".join(map(str, setting)))
        if err:
            ax.fill_between(xs, ys - group[err], ys + group[err], color=colour, alpha=0.15, linewidth=0)
    if integer_x:
        ax.xaxis.get_major_locator().set_params(integer=True)
    xs = (frame[x] / scale).unique()
    if len(xs) == 1:  # one x (pass@1 only): a unit-wide axis with its one tick, not matplotlib's 0.96-1.04
        ax.set_xlim(float(xs[0]) - 0.5, float(xs[0]) + 0.5)
        ax.set_xticks([float(xs[0])])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(percent_limits(frame[y] + (frame[err] if err else 0)))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def plot_pass_at_k(overall: pd.DataFrame):
    """pass@k curves; with one seed there is no curve, and the plot says so beside its single point."""
    fig = _curves(overall, "k", "pass_at_k", None, "k (seeds drawn)", "pass@k, any medal % of the split",
                  integer_x=True)
    if int(overall["n"].max()) < 2:
        fig.axes[0].set_title("pass@k needs >= 2 seeds: with 1 seed only pass@1 (the any-medal mean) exists",
                              fontsize=9)
    return fig


def fig_pass_at_k(overall: pd.DataFrame) -> bytes:
    return _png(plot_pass_at_k(overall))


def plot_medal_over_time(curves: pd.DataFrame):
    hours = curves["budget_s"].max() >= 7200
    return _curves(curves, "t_s", "any_medal_mean", "any_medal_sem",
                   f"time since the agent started ({'hours' if hours else 'minutes'})",
                   "any medal % of the split (± SEM)", 3600 if hours else 60)


def fig_medal_over_time(curves: pd.DataFrame) -> bytes:
    return _png(plot_medal_over_time(curves))


def plot_grouped_bars(board: pd.DataFrame, by: str, title: str, annotate: dict[tuple, str] | None = None):
    """Any-medal % with SEM, one group per setting without `by`, one bar per value of `by`."""
    view = board[board["view"] == "all"]
    rest = [k for k in an.SETTING if k != by] + ["split"]
    groups = list(view.groupby(rest, sort=True))[:12]
    values = sorted(view[by].unique(), key=str)
    fig = _figure(8, 4.6, bottom=1.2)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(values))
    for j, value in enumerate(values):
        means, errs = [], []
        for _, group in groups:
            match = group[group[by] == value]
            means.append(float(match["any_medal_mean"].iloc[0]) if len(match) else 0.0)
            errs.append(float(match["any_medal_sem"].iloc[0]) if len(match) else 0.0)
        xs = np.arange(len(groups)) + j * width
        bars = ax.bar(xs, means, width, yerr=errs, capsize=3, label=str(value))
        for (key, _), bar in zip(groups, bars, strict=True):
            text = (annotate or {}).get((*key, value))
            if text:
                ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                            va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(np.arange(len(groups)) + width * (len(values) - 1) / 2,
                  ["\n".join(map(str, key)) for key, _ in groups], fontsize=7)
    ax.set_ylabel("any medal % of the split (± SEM)")
    ax.set_ylim(percent_limits(view["any_medal_mean"] + view["any_medal_sem"].fillna(0)))
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, title=by, title_fontsize=7)
    return fig


def fig_grouped_bars(board: pd.DataFrame, by: str, title: str, annotate: dict[tuple, str] | None = None) -> bytes:
    return _png(plot_grouped_bars(board, by, title, annotate))


def fig_heatmap(cells: pd.DataFrame, panel: bool, max_settings: int = 12, max_seeds: int = 40) -> bytes:
    """Competitions (rows) x seed positions, one block of columns per setting, in a single image.

    Colours: gold, silver, bronze; blue valid without medal; red no valid submission; grey not run."""
    from matplotlib.colors import ListedColormap

    settings = list(cells.groupby(an.SETTING, sort=True))[:max_settings]
    comps = sorted(cells["competition_id"].unique())[:100]
    seeds = min(max_seeds, int(cells["position"].max()) + 1)
    width = len(settings) * (seeds + 1) - 1
    grid = np.full((len(comps), width), np.nan)
    centres, names = [], []
    for i, (setting, group) in enumerate(settings):
        group = group[group["competition_id"].isin(comps) & (group["position"] < seeds)]
        start = i * (seeds + 1)
        grid[:, start:start + seeds] = -2
        grid[pd.Index(comps).get_indexer(group["competition_id"]), start + group["position"].to_numpy()] = group["code"]
        centres.append(start + (seeds - 1) / 2)
        names.append("\n".join(map(str, setting)))
    from matplotlib.patches import Patch

    colours = ["#e4e4e4", "#d9534f", "#9fb8d0", "#cd7f32", "#a8a9ad", "#d4af37"]
    left, legend = 0.3 + 0.06 * max(map(len, comps), default=10), 2.3
    plot_w = min(14.0, max(2.5, 0.16 * width + 0.4 * len(settings)))
    fig = _figure(left + plot_w + legend, 1.8 + 0.17 * len(comps), left=left, bottom=0.9, right=legend)
    ax = fig.add_subplot()
    cmap = ListedColormap(colours).with_extremes(bad="white")
    ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=-2.5, vmax=3.5, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(comps)), comps, fontsize=7)
    ax.set_xticks(centres, names, fontsize=7)
    ax.vlines(np.arange(0.5, width - 1), -0.5, len(comps) - 0.5, colors="white", linewidth=0.6)
    ax.hlines(np.arange(0.5, len(comps) - 1), -0.5, width - 0.5, colors="white", linewidth=0.6)
    ax.tick_params(length=0)
    ax.set_title("medals per seed position" + (" (reference-panel medals)" if panel else ""), fontsize=8)
    labels = ["not run (padded)", "no valid submission", "valid, no medal", "bronze", "silver", "gold"]
    ax.legend(handles=[Patch(color=c, label=t) for c, t in zip(colours, labels, strict=True)][::-1], fontsize=7,
              loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return _png(fig)


# ---------------------------------------------------------------- display tables


def display_board(board: pd.DataFrame, key: str = "split") -> pd.DataFrame:
    """The leaderboard as strings, leading columns as in `analysis.format_table`."""
    rows = []
    for r in board.to_dict("records"):
        row = {k: r[k] for k in an.SETTING}
        row[key] = r[key]
        row["seeds"] = r["seeds"]
        for m in ("valid_submission", "above_median", "any_medal", "made_submission", "gold", "silver", "bronze"):
            row[an.LABELS[m]] = an.cell(r.get(f"{m}_mean"), r.get(f"{m}_sem"), r["seeds"])
        row["competitions"] = f"{r['attempted']}/{r['competitions']}"
        row["padded"] = r["padded"]
        row["missing"] = an.missing_label(r)
        row["notes"] = an.notes(r)
        rows.append(row)
    return pd.DataFrame(rows)


def _k_columns(n: int) -> list[int]:
    return list(range(1, n + 1)) if n <= 12 else sorted({1, 2, 3, 4, 5, 8, 10, 16, 32, 64, 128, n} & set(range(1, n + 1)))


def display_pass_at_k(overall: pd.DataFrame, per_comp: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """pass@k in wide form: one column per k (all k up to 12 seeds, a spread of k beyond)."""
    def wide(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
        if frame.empty:
            return frame
        table = frame.pivot_table(index=keys, columns="k", values="pass_at_k", sort=True)
        ks = _k_columns(int(frame["n"].max()))
        shown = table[[k for k in ks if k in table.columns]]
        text = shown.map(lambda v: "" if pd.isna(v) else f"{v:.1f}")
        text.columns = [f"pass@{k}" for k in shown.columns]
        return text.reset_index()

    extra = ["c"] if "c" in per_comp else []
    return (wide(overall, [*an.SETTING, "split", "n"]),
            wide(per_comp, [*an.SETTING, "competition_id", "n", *extra]))


def display_time(curves: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for setting, group in curves.groupby(an.SETTING, sort=True):
        row = dict(zip(an.SETTING, setting, strict=True))
        row["seeds"] = int(group["seeds"].iloc[0])
        points = group.to_dict("records")
        if len(points) > 14:  # a long budget: every few hours, and the end
            points = points[:: max(1, len(points) // 12)] + ([points[-1]] if len(points) % 12 else [])
        for p in points:
            row[p["t"]] = an.cell(p["any_medal_mean"], p["any_medal_sem"], row["seeds"])
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


def display_gpu(table: pd.DataFrame) -> pd.DataFrame:
    out = table[[*an.SETTING, "split", "seeds"]].copy()
    if "gpus" in table:
        out.insert(4, "gpus", table["gpus"].map(lambda v: "-" if pd.isna(v) else int(v)))
    seeds = table["seeds"]
    out["any medal %"] = [an.cell(m, e, n) for m, e, n in zip(table["any_medal_mean"], table["any_medal_sem"], seeds,
                                                              strict=True)]
    out["valid %"] = [an.cell(m, e, n) for m, e, n in zip(table["valid_submission_mean"],
                                                          table["valid_submission_sem"], seeds, strict=True)]
    for col, label, fmt in (("gpu_util_percent_mean", "GPU util % (mean)", "{:.0f}"),
                            ("gpu_mem_mib_max", "GPU mem MiB (max)", "{:.0f}"),
                            ("cpu_percent_mean", "CPU % (mean)", "{:.0f}"), ("rss_mib_max", "RSS MiB (max)", "{:.0f}")):
        out[label] = table[col].map(lambda v, f=fmt: "-" if pd.isna(v) else f.format(v)) if col in table else "-"
    return out


def _labels(frame: pd.DataFrame) -> pd.Series:
    """'scaffold / model / runtime / hardware' per row, built column-wise (fast on big frames)."""
    out = frame[an.SETTING[0]].astype(str)
    for key in an.SETTING[1:]:
        out = out + " / " + frame[key].astype(str)
    return out


def display_heatmap(cells: pd.DataFrame, max_seeds: int = 64) -> pd.DataFrame:
    """One line per setting and competition: a character per seed position (G S B · ×, - not run)."""
    marks = np.array(["-", "×", "·", "B", "S", "G"])  # index = code + 2; -2 = not run
    keys = pd.MultiIndex.from_arrays([_labels(cells), cells["competition_id"]])
    index = keys.unique().sort_values()
    width = min(max_seeds, int(cells["position"].max()) + 1)
    grid = np.full((len(index), width), 0)
    shown = (cells["position"] < width).to_numpy()
    grid[index.get_indexer(keys[shown]), cells["position"].to_numpy()[shown]] = cells["code"].to_numpy()[shown] + 2
    medals = (cells["code"] > 0).groupby(keys).sum().reindex(index)
    return pd.DataFrame({"setting": index.get_level_values(0), "competition": index.get_level_values(1),
                         "seeds": ["".join(row) for row in marks[grid]], "medals": medals.to_numpy()})


def _usage_cells(r: dict) -> dict[str, str]:
    """Tokens and $ of one attempt, only where attempts recorded them (no empty columns otherwise)."""
    cells = {}
    for key, label, fmt in (("input_tokens", "tokens in", "{:.0f}"), ("output_tokens", "tokens out", "{:.0f}"),
                            ("cost_usd", "$", "{:.4f}")):
        if key in r:
            value = r[key]
            cells[label] = "-" if value is None or pd.isna(value) else fmt.format(value)
    return cells


def shared_network(graded: pd.DataFrame) -> int:
    """Sandboxed attempts that shared their node's network (`network: shared` in their records)."""
    if "network" not in graded:
        return 0
    boxed = ~graded.get("unsandboxed", pd.Series(False, index=graded.index)).fillna(False).astype(bool)
    return int(((graded["network"] == "shared") & boxed).sum())


def display_attempts(results: pd.DataFrame, limit: int = ATTEMPT_ROWS) -> pd.DataFrame:
    frame = results.sort_values(["competition_id", *an.SETTING, "seed"]).head(limit)
    rows = []
    for r in frame.to_dict("records"):
        medal = next((m for m in ("gold", "silver", "bronze") if r.get(f"{m}_medal") is True), "-")
        if medal != "-" and r.get("leaderboard_source") == "reference-panel":
            medal += " (reference panel)"
        score = r.get("score")
        state = str(r.get("state") or "-") + (" (unsandboxed)" if r.get("unsandboxed") is True else "")
        reason = "" if r.get("valid_submission") is True else str(r.get("reason") or r.get("failure") or "")
        rows.append({"competition": r["competition_id"], **{k: r[k] for k in an.SETTING}, "seed": r["seed"],
                     "state": state, "score": "-" if score is None or pd.isna(score) else f"{score:.5g}",
                     "medal": medal, "status": r.get("competition_status") or "-", "why not valid": reason[:80],
                     **_usage_cells(r)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- building


def _audit_status_text(status: dict[str, Any]) -> list[str]:
    """What the analysis job's audit step did (`audit.run_step`), in sentences: ran, reused, failed and why."""
    mode = status.get("mode")
    sweep = f"Sweep {status['sweep']}: " if status.get("sweep") else ""
    if not status.get("ok"):
        return [f"{sweep}The rule-violation audit (`analysis.audit={mode}`) failed: {status.get('error')}. This report "
                "is built without it; flags below, if any, come from an earlier `audit.json`. Run it again with "
                "`hpc-mle audit SWEEP` once the cause is fixed."]
    how = f"`analysis.audit={mode}`: " if not status.get("by") else ""
    text = [f"{sweep}{status.get('by') or 'The analysis job'} audited {status.get('audited', 0)} ended attempt(s) "
            f"for rule violations ({how}deterministic checks of logs and code"
            + (", then a judge model" if mode == "judge" else "") + f"; `audit.json`, `audit.md`); "
            f"{status.get('flagged', 0)} flagged." + (f" {status['reused']} verdict(s) reused from the previous "
                                                      "audit: those attempts have not run since."
                                                      if status.get("reused") else "")]
    judge = status.get("judge") or {}
    if judge:
        cost = judge.get("cost_usd")
        text.append(f"Judge {judge.get('model')}: {judge.get('calls', 0)} call(s) this time, "
                    f"{judge.get('input_tokens', 0)}+{judge.get('output_tokens', 0)} tokens, cost "
                    f"{'-' if cost is None else f'{cost:.4f}'} USD (ledger `{judge.get('calls_file')}`).")
    if status.get("judge_error"):
        text.append(f"The judge did not run: {status['judge_error']}. Only the deterministic checks count.")
    if status.get("judge_failed"):
        text.append(f"The judge gave no usable answer for {status['judge_failed']} attempt(s) (first: "
                    f"{status.get('judge_failure')}); their deterministic checks stand.")
    return text


def audit_section(results: pd.DataFrame, split: str | None, missing: str, catalogue: an.Catalogue | None = None,
                  status: dict[str, Any] | list[dict[str, Any]] | None = None) -> Section | None:
    """The leaderboard without the attempts the audit flagged (results' `audit_flag`), how many and which,
    after what the audit did (`status`: the analysis job's step, or `analysis.audit_status` of each sweep);
    None when there is nothing to say."""
    flagged = results["audit_flag"].notna() if "audit_flag" in results else pd.Series(False, index=results.index)
    said = [st for st in ([status] if isinstance(status, dict) else status or []) if st and st.get("mode") != "off"]
    if not said and not flagged.any():
        return None
    text = [line for st in said for line in _audit_status_text(st)]
    if not flagged.any():
        return Section("Without attempts flagged by the audit", text + ["No attempt was flagged: the leaderboard "
                                                                       "above stands as it is."])
    kept = results[~flagged].reset_index(drop=True)
    catalogue = catalogue or an.default_catalogue()
    board = an.leaderboard(kept, catalogue, [split] if split else None, an.positioned(kept), missing)
    listed = results.loc[flagged, ["attempt_id", "competition_id", "audit_flag"]].rename(
        columns={"attempt_id": "attempt", "competition_id": "competition", "audit_flag": "rubric item"})
    text.append(f"{int(flagged.sum())} of {len(results)} attempts were flagged by the rule-violation audit "
                "(`audit.json`) and are excluded here; their cells count as missing. The leaderboard above still "
                "includes them.")
    tables = [("flagged attempts", listed)]
    if "view" in board and len(board):
        tables.insert(0, ("all competitions, flagged attempts excluded", display_board(board[board["view"] == "all"])))
    else:
        text.append("Every attempt was flagged: no leaderboard is left without them.")
    return Section("Without attempts flagged by the audit", text, tables)


def build_report(results: pd.DataFrame, title: str, split: str | None = None,
                 catalogue: an.Catalogue | None = None, run_group_files: list[str] | None = None,
                 missing: str = an.DEFAULT_MISSING, audit: dict[str, Any] | None = None,
                 sweep_dirs: Sequence[Path] = ()) -> Report:
    """Every table and figure of the analysis for these results (optionally one split only);
    `missing` says how missing (competition, seed) cells count (`analysis.MISSING_MODES`); `audit`: what the
    analysis job's audit step did (`audit.run_step`), shown with the view without flagged attempts; without it,
    what each of `sweep_dirs` records of its audit (`analysis.audit_status`). `sweep_dirs` also give the
    familiarity studies (`hpc-mle familiarity`) a section."""
    an.check_missing(missing)
    catalogue = catalogue or an.default_catalogue()
    sections: list[Section] = []
    figures: dict[str, bytes] = {}
    tables: dict[str, pd.DataFrame] = {}
    if results.empty:
        return Report(title, [Section("No results", ["No attempt was planned in these sweeps."])], {}, {})
    contamination = an.description_comparison(results, catalogue, missing)
    not_counted = ungraded_notes(results, missing)  # of every attempt, obfuscated descriptions included
    results = an.original_view(results)

    pos = an.positioned(results)
    board = an.leaderboard(results, catalogue, [split] if split else None, pos, missing)
    tables["leaderboard"] = board
    graded = results[results["graded"]]
    states = results["state"].fillna("planned").value_counts().to_dict()
    overview = Section("Overview", [
        f"{len(results)} attempts planned in {results['sweep'].nunique()} sweep(s) "
        f"({', '.join(sorted(map(str, results['sweep'].unique())))}); {len(graded)} graded. States: "
        + ", ".join(f"{k} {v}" for k, v in sorted(states.items())) + ".",
        "Percentages are of the whole split: a competition that was not run, failed or has no valid submission "
        "counts as a failure. Seeds are formed by position (the i-th graded attempt of each competition, in sweep "
        "then seed order) and each number is the mean ± standard error (n-1) over seeds, as upstream's aggregator "
        "computes it, with the number of seeds beside it (n=...; one seed has no standard error: ± n/a). "
        f"Missing cells: {missing} ({an.MISSING_MODES[missing]}); the `padded` column counts padded "
        "cells, and the notes say which cells a complete-seeds table left out."])
    overview.text += not_counted
    if len(graded) and _from_panel(graded):
        overview.text.append(PANEL_NOTE)
    unsandboxed = int(graded["unsandboxed"].fillna(False).sum()) if "unsandboxed" in graded else 0
    if unsandboxed:
        overview.text.append(f"{unsandboxed} graded attempts ran without a sandbox (`sandbox=none`): the agent could "
                             "read anything the user can, so their results are marked `unsandboxed`.")
    shared = shared_network(graded)
    if shared:
        overview.text.append(f"{shared} graded attempts ran sandboxed but on their node's network "
                             "(`sandbox.network=true`, the fallback where a site turns network namespaces off: "
                             "`hpc-mle doctor`): the agent could reach the network; they are marked `network: shared`.")
    flagged = sorted(set(catalogue.flagged(results["competition_id"].unique())))
    if flagged:
        overview.text.append("Competitions with a known issue, leakage or exclusion in these results: "
                             + ", ".join(f"{c} ({catalogue.status[c]})" for c in flagged)
                             + ". The leaderboard is shown with and without them.")
    sections.append(overview)

    lead = Section("Leaderboard", ["Every competition of each split (upstream's numbers)."])
    if len(board):
        lead.tables.append(("all competitions", display_board(board[board["view"] == "all"])))
        figures["leaderboard.png"] = fig_leaderboard(board)
        lead.figures.append("leaderboard.png")
        clean = board[board["view"] == "clean"]
        if len(clean):
            lead.tables.append(("without competitions whose status is known-issue, leaky or excluded",
                                display_board(clean)))
    sections.append(lead)
    if len(contamination):
        tables["description_comparison"] = contamination
        sections.append(Section("Original vs obfuscated descriptions", [
            "The contamination study (`benchmark.description=original,obfuscated`): the same settings given each "
            "competition's own description or a rewritten one without its name or wording. A model that had "
            "memorised the competitions would do worse with the obfuscated ones. The other tables count only the "
            "attempts given the original description."],
            [("any medal and valid submission, % of the split", an.format_description_comparison(contamination))]))
    planned = an.planned_board(results, catalogue, pos, missing)
    if len(planned):
        sections.append(Section("Planned competitions only", [
            "These sweeps planned part of a split (`benchmark.competitions` or `exclude_status`). Here the "
            "percentages are of the competitions they planned, which answers what was asked but is not comparable "
            "with upstream numbers."], [("planned competitions", display_board(planned, key="benchmark"))]))

    readme = an.readme_rows(board, results, catalogue)
    tables["readme_rows"] = readme
    if len(readme):
        sections.append(Section("Upstream README rows", [
            "In the format of MLE-bench's README leaderboard (any-medal %). '-' marks a split not fully attempted; "
            "† marks values with padded seeds; splits upstream does not list (mini, dev) are only in the leaderboard "
            "above. Per-seed run-group grading reports for upstream's aggregator are in `analysis/run_groups/`."],
            [("README format", readme)]))

    statuses = audit if audit is not None else saved_audits(sweep_dirs) if sweep_dirs else None
    audited = audit_section(results, split, missing, catalogue, statuses) if statuses is not None else None
    if audited is not None:
        sections.insert(min(2, len(sections)), audited)
    study_split = split or an.primary_split(results, catalogue)
    sections += _standing(results, readme, catalogue, study_split, tables)
    if study_split:
        sections += _studies(results, pos, board, study_split, catalogue, figures, tables)
    sections += familiarity_sections(sweep_dirs, figures)
    usage = an.usage_table(results, pos)
    if len(usage):
        tables["usage"] = usage
        per_competition = an.usage_by_competition(results)
        tables["usage_by_competition"] = per_competition
        sections.append(Section("Tokens and cost", ["As recorded by the attempts' metering proxies (missing where "
                                                    "they did not record any)."],
                                [("per setting", usage.round(3)), ("per competition", per_competition.round(4))]))
    attempts = Section("Attempts", [f"The first {ATTEMPT_ROWS} of {len(results)} attempts; every field of every "
                                    "attempt is in `results.parquet`."] if len(results) > ATTEMPT_ROWS else [],
                       [("per attempt", display_attempts(results))])
    if run_group_files:
        attempts.text.append("Run-group grading reports: " + ", ".join(f"`{p}`" for p in run_group_files[:20])
                             + (f" and {len(run_group_files) - 20} more" if len(run_group_files) > 20 else "") + ".")
    sections.append(attempts)
    return Report(title, sections, figures, tables)


def ungraded_notes(results: pd.DataFrame, missing: str) -> list[str]:
    """What the medal figures could not count: attempts that ended but have no grade of that end (the grading
    was cut or cancelled), said with their number rather than left silently out of the cells."""
    if "ungraded" not in results:
        return []
    ungraded = results["ungraded"].fillna(False).astype(bool)
    graded = results["graded"].fillna(False).astype(bool)
    notes = []
    never = int((ungraded & ~graded).sum())
    if never:
        notes.append(f"**{never} attempt(s) ended but are not graded**, so the medal figures could not count them: "
                     f"their cells are missing ({missing}: {an.MISSING_MODES[missing]}). `hpc-mle resume <sweep>` "
                     "grades them and redoes this analysis.")
    stale = int((ungraded & graded).sum())
    if stale:
        notes.append(f"{stale} attempt(s) ended again after they were graded (resumed): they count with the grade "
                     "of their earlier end until `hpc-mle resume <sweep>` grades them again.")
    return notes


def saved_audits(sweep_dirs: Sequence[Path]) -> list[dict[str, Any]]:
    """What each sweep records of its audit (`analysis.audit_status`), named by sweep when there are several."""
    out = []
    for d in sweep_dirs:
        status = an.audit_status(d)
        if status is not None:
            out.append({**status, "sweep": Path(d).name} if len(sweep_dirs) > 1 else status)
    return out


FIGURE_BYTES = 20 * 1024**2  # a familiarity figure read at most this far


def familiarity_sections(sweep_dirs: Sequence[Path], figures: dict[str, bytes]) -> list[Section]:
    """Each sweep's familiarity study (`familiarity.report_section`) as a section, with its figure embedded."""
    from hpc_mle import familiarity

    out = []
    for d in sweep_dirs:
        text = familiarity.report_section(Path(d))
        if not text:
            continue
        section = markdown_section(text)
        if len(sweep_dirs) > 1:
            section.title += f" (sweep {Path(d).name})"
        name = "familiarity.png" if len(sweep_dirs) == 1 else f"familiarity-{Path(d).name}.png"
        try:
            figures[name] = read_untrusted(familiarity.study_dir(d), familiarity.PNG, FIGURE_BYTES)
            section.figures.append(name)
        except OSError:
            section.text.append(f"(`{familiarity.STUDY_DIR / familiarity.PNG}` could not be read: the figure is "
                                "missing; `hpc-mle familiarity` writes it again.)")
        out.append(section)
    return out


MD_CELL_SPLIT = re.compile(r"(?<!\\)\|")
MD_UNESCAPE = re.compile(r"\\(.)")


def markdown_section(text: str) -> Section:
    """A section from the Markdown another module writes (a `## ` title, paragraphs, pipe tables of `md_row`s), so
    both renderers lay it out as their own: tables become frames, escapes are undone (each renderer escapes)."""
    lines = text.strip().splitlines()
    title = lines[0].removeprefix("## ").strip() if lines and lines[0].startswith("## ") else "Familiarity"
    section = Section(title)
    for block in re.split(r"\n\s*\n", "\n".join(lines[1:] if lines[0].startswith("## ") else lines)):
        rows = [ln.strip() for ln in block.strip().splitlines()]
        if rows and all(r.startswith("|") for r in rows):
            cells = [[MD_UNESCAPE.sub(r"\1", c.strip()) for c in MD_CELL_SPLIT.split(r.strip("|"))] for r in rows]
            body = [c for c in cells[1:] if not all(set(x) <= set("-: ") for x in c)]
            section.tables.append(("per competition", pd.DataFrame(body, columns=cells[0])))
        elif rows:
            section.text.append(" ".join(rows))
    return section


def _standing(results: pd.DataFrame, readme: pd.DataFrame, catalogue: an.Catalogue, split: str | None,
              tables: dict[str, pd.DataFrame]) -> list[Section]:
    """Provenance, the published leaderboard beside the user's rows, and item analysis between settings."""
    from hpc_mle import export

    prov = display_provenance(export.provenance_table(results), results)
    tables["provenance"] = prov
    out = [Section("Provenance", [
        "Where each setting ran, from the attempts' own records: the GPUs (model and count) each attempt's harness "
        "saw at its start, 'none' where no GPU was visible, '-' where an attempt recorded nothing. Memory seen is "
        "the cgroup's limit where the attempt ran under one (Slurm, a container), else the whole machine's memory, "
        "marked 'machine': a local run sets no memory limit, so that figure is not a grant. Agents got no test-set "
        "feedback. `hpc-mle export-leaderboard` writes all of it per attempt into provenance.json."],
        [("per setting", prov)])]
    standing = export.standing_table(readme)
    tables["where_you_stand"] = standing
    out.append(Section("Where you stand", [
        f"Your README rows beside the published ones (any-medal %, {export.PUBLISHED_SOURCE}; hardware as the "
        "README or paper states it). Published rows used their own hardware and runtimes: compare with care.",
        *_no_published_split(standing, results)],
        [("published and yours (the README gives mean ± SEM without the number of seeds: n is not stated for "
          "any published cell)", standing)]))
    for i, (title, text, shown) in enumerate(item_sections(results, catalogue, split)):
        tables[f"item_analysis_{i}"] = shown[0][1] if shown else pd.DataFrame()
        out.append(Section(title, text, shown))
    return out


def _no_published_split(standing: pd.DataFrame, results: pd.DataFrame) -> list[str]:
    """One sentence when every split cell of the user's rows is '-': why, instead of a column of dashes."""
    split_columns = [c for c in an.README_SPLIT_COLUMNS.values() if c in standing]
    yours = standing.loc[standing["source"] == "yours", split_columns]
    if yours.empty or not (yours == "-").all().all():
        return []
    ran = sorted({str(v) for v in results.get("benchmark_split", pd.Series(dtype=object)).dropna()}) or ["other"]
    return [f"Your rows are '-' in every split column: the published leaderboard has only the Lite (Low), Medium, "
            f"High and All splits, each counted when every one of its competitions was attempted, and these results "
            f"ran {', '.join(ran)}, which it does not list. Run e.g. `benchmark=lite` to get comparable cells."]


def _duration(seconds: Any) -> str:
    """A run's length readable at any scale: seconds or minutes below an hour, hours above."""
    if seconds is None or pd.isna(seconds):
        return "-"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.2f} h"


def _yes_no(values: pd.Series) -> str:
    """'yes', 'no', 'k of n' for a setting's boolean records; '-' where none recorded it."""
    known = values.dropna().astype(bool)
    if known.empty:
        return "-"
    return "yes" if known.all() else "no" if not known.any() else f"{int(known.sum())} of {len(known)}"


def _memory_seen(group: pd.DataFrame) -> str:
    """The memory figures a setting's attempts saw, each with what it is (cgroup limit or the machine's memory)."""
    if "memory_gib_seen" not in group:
        return "-"
    source = group["memory_seen_source"] if "memory_seen_source" in group else pd.Series(None, index=group.index)
    seen = {f"{float(v):g}" + (" (machine, no limit)" if src == "machine" else " (cgroup limit)"
                               if src == "cgroup limit" else "")
            for v, src in zip(group["memory_gib_seen"], source, strict=True) if v is not None and not pd.isna(v)}
    return ", ".join(sorted(seen)) or "-"


def display_provenance(prov: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """The export's provenance table as a reader wants it: yes/no, a run's length in minutes below an hour, memory
    seen marked with what it is; one row per setting, in the table's own order."""
    groups = dict(iter(results.groupby(an.SETTING, sort=True, dropna=False)))
    keys = list(zip(*(prov[k] for k in an.SETTING), strict=True))
    out = prov.drop(columns=["runtime h (max)"], errors="ignore")
    if "unsandboxed" in out:
        out["unsandboxed"] = [_yes_no(groups[k].get("unsandboxed", pd.Series(dtype=object))) for k in keys]
    if "memory GiB seen" in out:
        out["memory GiB seen"] = [_memory_seen(groups[k]) for k in keys]
    longest = [groups[k]["agent_elapsed_s"].max() if "agent_elapsed_s" in groups[k] else None for k in keys]
    out.insert(out.columns.get_loc("test-set feedback"), "longest run", [_duration(v) for v in longest])
    return out


def item_sections(results: pd.DataFrame, catalogue: an.Catalogue, split: str | None,
                  n_boot: int = 2000) -> list[tuple[str, list[str], list[tuple[str, pd.DataFrame]]]]:
    """Item analysis and a paired bootstrap for each pair of settings on `split` (the first 3 pairs), on any medal;
    when no attempt won a medal (every competition at floor) on above median instead, or valid submission, and
    said so, since a table of medals would be empty."""
    if not split or results.empty:
        return []
    comps = catalogue.splits[split]
    pos = an.positioned(results)
    mine = pos[pos["competition_id"].isin(comps)] if len(pos) else pos
    metric = next((m for m in ("any_medal", "above_median", "valid_submission")
                   if len(mine) and bool(mine[f"hit_{m}"].any())), None)
    settings = results[an.SETTING].drop_duplicates().sort_values(an.SETTING).to_dict("records")
    pairs = list(zip(settings, settings[1:], strict=False))[:3]
    if metric is None:
        return [("Item analysis", [f"No attempt on {split} won a medal, beat the median or made a valid submission: "
                                   "every competition is at floor for every setting, so no item analysis."], [])]
    label = an.LABELS[metric].removesuffix(" %")
    note = [] if metric == "any_medal" else [
        f"No attempt on {split} won a medal, so every competition is at floor on any medal and an item analysis of "
        f"medals says nothing. This one counts *{label}* instead: it is not the leaderboard's measure."]
    out = []
    for first, second in pairs:
        items = an.item_analysis(results, first, second, comps, metric)
        boot = an.paired_bootstrap(items, n_boot=n_boot)
        a, b = ("/".join(str(s[k]) for k in an.SETTING) for s in (first, second))
        counts = items["item"].value_counts().to_dict()
        text = [*note, f"{b} minus {a} on {split}, {label}: {boot['difference']:+.1f} points, 95% paired bootstrap "
                f"interval [{boot['low']:+.1f}, {boot['high']:+.1f}] ({boot['n_boot']} resamples of the "
                f"{len(comps)} competitions, seed 0). Competitions that separate them: {counts.get('separates', 0)}; "
                f"at floor: {counts.get('floor', 0)}; at ceiling: {counts.get('ceiling', 0)}."]
        shown = items[items["item"] != "floor"].rename(columns={"first": f"{a} %", "second": f"{b} %"})
        title = f"Item analysis: {b} vs {a}" + ("" if metric == "any_medal" else f" ({label}, no medals)")
        out.append((title, text, [(f"competitions not at floor, {label} %", shown.round(1))]))
    return out


def _studies(results: pd.DataFrame, pos: pd.DataFrame, board: pd.DataFrame, split: str, catalogue: an.Catalogue,
             figures: dict[str, bytes], tables: dict[str, pd.DataFrame]) -> list[Section]:
    """The scaling studies on one split: pass@k, medal over time, runtime, GPUs, the heatmap."""
    out = []
    size = len(catalogue.splits[split])
    per_comp, overall = an.pass_at_k_tables(results, split, catalogue, pos)
    if len(overall):
        tables["pass_at_k"], tables["pass_at_k_per_competition"] = overall, per_comp
        wide_overall, wide_comp = display_pass_at_k(overall, per_comp)
        figures["pass_at_k.png"] = fig_pass_at_k(overall)
        out.append(Section(f"pass@k on {split}", [
            f"Unbiased estimator 1 - C(n-c, k) / C(n, k) per competition (n seeds, c with a medal), averaged over "
            f"all {size} competitions of the split. Missing seeds count as failures, so pass@1 equals the "
            "leaderboard's any-medal mean."], [("overall", wide_overall), ("per competition", wide_comp)],
            ["pass_at_k.png"]))
        if int(overall["n"].max()) < 2:
            out[-1].text.append("pass@k needs >= 2 seeds per competition: these results have 1, so only pass@1 "
                                "exists. Run more seeds (e.g. `'seed=range(4)'`) to see how it grows with k.")
    curves = an.medal_over_time(results, split, catalogue, pos)
    if len(curves):
        tables["medal_over_time"] = curves
        figures["medal_over_time.png"] = fig_medal_over_time(curves)
        out.append(Section(f"Medals over time on {split}", [
            "Any-medal % of the split if each attempt had stopped at time T: the medal of its latest graded "
            "snapshot at or before T (mean ± SEM over seeds)."], [("any medal % by T", display_time(curves))],
            ["medal_over_time.png"]))
    view = board[(board["view"] == "all") & (board["split"] == split)] if len(board) else board
    budgets = an.runtime_budgets(view)
    if len(budgets):
        tables["runtime_budgets"] = budgets
        section = Section(f"Runtime budgets on {split}", [], [("any medal % by runtime", budgets)])
        if view["runtime"].nunique() > 1:
            figures["runtime_budgets.png"] = fig_grouped_bars(view, "runtime", "any medal % by runtime budget")
            section.figures.append("runtime_budgets.png")
        else:
            section.text.append("These results have one runtime budget; add e.g. `runtime=24h,100h` to compare.")
        out.append(section)
    gpu = an.gpu_scaling(results, view)
    if len(gpu):
        tables["gpu_scaling"] = gpu
        section = Section(f"Hardware and measured use on {split}", [
            "Scores beside what the attempts used, from their telemetry: mean GPU utilisation over the GPUs granted "
            "(sampled by device), the busiest GPU's peak memory, mean CPU % and peak RSS of the agent's processes."],
            [("by hardware", display_gpu(gpu))])
        if view["hardware"].nunique() > 1:
            notes = {(*[r[k] for k in an.SETTING if k != "hardware"], r["split"], r["hardware"]):
                     f"{r['gpu_util_percent_mean']:.0f}% util" for r in gpu.to_dict("records")
                     if not pd.isna(r.get("gpu_util_percent_mean", np.nan))}
            figures["gpu_scaling.png"] = fig_grouped_bars(view, "hardware", "any medal % by hardware (GPU util above)",
                                                       notes)
            section.figures.append("gpu_scaling.png")
        out.append(section)
    cells = an.heatmap(results, split, catalogue, pos)
    if len(cells):
        tables["heatmap"] = cells
        panel = _from_panel(results)
        figures["heatmap.png"] = fig_heatmap(cells, panel)
        out.append(Section(f"Medals per competition and seed on {split}", [
            "G gold, S silver, B bronze, · valid without medal, × no valid submission, - not run (padded)."
            + (" Medals here are reference-panel placements." if panel else "")],
            [("per competition", display_heatmap(cells))], ["heatmap.png"]))
    return out


# ---------------------------------------------------------------- rendering


def markdown_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(none)"
    lines = [md_row(frame.columns), "|" + "---|" * len(frame.columns)]
    for row in frame.itertuples(index=False):  # cells can quote agent text (reasons): never markup
        lines.append(md_row(row))
    return "\n".join(lines)


def render_markdown(report: Report, figure_dir: str | None = "figures") -> str:
    parts = [f"# {report.title}\n"]
    for s in report.sections:
        parts.append(f"## {s.title}\n")
        parts += [f"{t}\n" for t in s.text]
        if figure_dir:
            parts += [f"![{name}]({figure_dir}/{name})\n" for name in s.figures]
        for caption, frame in s.tables:
            parts.append(f"**{md_cell(caption)}**\n\n{markdown_table(frame)}\n")
    return "\n".join(parts)


CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1300px;color:#222;
padding:0 1em}
h1{font-size:1.6em;border-bottom:2px solid #c8961e;padding-bottom:.2em}
h2{font-size:1.25em;margin-top:1.8em;color:#333}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.82em}
th,td{border:1px solid #d0d0d0;padding:3px 7px;text-align:left;vertical-align:top}
td.text{overflow-wrap:break-word;hyphens:manual}
td.nowrap{white-space:nowrap}
th{background:#f3f0e6}
tr:nth-child(even) td{background:#fafafa}
caption{caption-side:top;text-align:left;font-weight:600;padding:.3em 0}
code{background:#f2f2f2;padding:0 3px;border-radius:3px}
.note{background:#fff6dd;border-left:4px solid #c8961e;padding:.5em .8em}
.scroll{overflow-x:auto}
img{max-width:100%;border:1px solid #e5e5e5;margin:.4em 0}
"""


MD_ESCAPE = re.compile(r"\\([\\`*_\[\]<>|#!~])")  # the characters textsafe.md_cell escapes


def _inline(text: str) -> str:
    """Escape, then the bits of markdown the section texts use: `code`, **strong**, *emphasis* and backslash
    escapes (`textsafe.md_cell`'s), which show their character literally and start no markup."""
    escaped: list[str] = []

    def hold(match: re.Match[str]) -> str:
        escaped.append(html.escape(match.group(1)))
        return f"\x00{len(escaped) - 1}\x00"

    out = html.escape(MD_ESCAPE.sub(hold, text.replace("\x00", "")))
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"\*([^*]+)\*", r"<em>\1</em>", out)
    return re.sub("\x00(\\d+)\x00", lambda m: escaped[int(m.group(1))], out)


NUMBER_CELL = re.compile(r"-|[-+]?\d[\d.,/]*( ?%)?( ± (\d[\d.]*|n/a))?( \((n=\d+|1 seed)\))?( †)?")


def text_columns(frame: pd.DataFrame) -> list[bool]:
    """Per column: True where a value is not a number or 'mean ± SEM (n=...)' cell. Those cells may wrap
    anywhere (long ids, notes, reasons) so a wide table fits its box; numbers wrap only before '(n=...)'."""
    return [not all(NUMBER_CELL.fullmatch(str(v)) or str(v) in ("", "nan") for v in frame.iloc[:, i])
            for i in range(frame.shape[1])]


DATE_CELL = re.compile(r"\d{4}-\d{2}-\d{2}|-|")


def date_columns(frame: pd.DataFrame) -> list[bool]:
    """Per column: True where every value is an ISO date (or '-'), with at least one date: such cells never wrap
    (a browser breaks '2026-11-30' at its hyphens), they stay ISO text in CSV and Markdown."""
    return [frame.iloc[:, i].map(lambda v: bool(DATE_CELL.fullmatch(str(v)))).all()
            and frame.iloc[:, i].map(lambda v: len(str(v)) == 10).any() for i in range(frame.shape[1])]


def _html_cell(td: str, value: Any) -> str:
    """Escaped text; in a number cell 'mean ± SEM' and '(1 seed)' stay on one line (non-breaking spaces)."""
    text = html.escape(str(value))
    return text if "text" in td else text.replace(" ± ", "&nbsp;±&nbsp;").replace("(1 seed)", "(1&nbsp;seed)")


def _html_table(caption: str, frame: pd.DataFrame) -> str:
    """A table inside a box that scrolls sideways when the table cannot fit even with its text wrapped."""
    if frame.empty:
        return "<p>(none)</p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    opens = ['<td class="nowrap">' if date else '<td class="text">' if text else "<td>"
             for text, date in zip(text_columns(frame), date_columns(frame), strict=True)]
    body = "".join("<tr>" + "".join(f"{td}{_html_cell(td, v)}</td>" for td, v in zip(opens, row, strict=True))
                   + "</tr>" for row in frame.itertuples(index=False))
    return (f'<div class="scroll"><table><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def render_html(report: Report) -> str:
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(report.title)}"
             f"</title><style>{CSS}</style></head><body><h1>{html.escape(report.title)}</h1>"]
    for s in report.sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        for t in s.text:
            cls = ' class="note"' if t == PANEL_NOTE or "unsandboxed" in t else ""
            parts.append(f"<p{cls}>{_inline(t)}</p>")
        for name in s.figures:
            data = base64.b64encode(report.figures[name]).decode("ascii")
            parts.append(f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">')
        parts += [_html_table(caption, frame) for caption, frame in s.tables]
    parts.append("</body></html>")
    return "\n".join(parts)


def render_csv(report: Report) -> str:
    """The leaderboard's numbers (every split and view), one row per setting and split."""
    board = report.tables.get("leaderboard", pd.DataFrame())
    return board.to_csv(index=False)


def results_for_files(results: pd.DataFrame) -> pd.DataFrame:
    """results with the snapshot lists as JSON text, so CSV holds one value per cell."""
    out = results.copy()
    out["snapshots"] = [json.dumps(s) for s in out["snapshots"]]
    return out


def parquet_bytes(results: pd.DataFrame) -> bytes:
    """results.parquet: one row per attempt; the graded snapshots as a list of structs (JSON text
    if their fields do not fit one struct type)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    if "snapshots" not in results:
        results.to_parquet(buf, index=False)
        return buf.getvalue()
    table = pa.Table.from_pandas(results.drop(columns=["snapshots"]), preserve_index=False)
    try:
        snaps = pa.array(results["snapshots"].tolist())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        snaps = pa.array([json.dumps(s) for s in results["snapshots"]])
    pq.write_table(table.append_column("snapshots", snaps), buf)
    return buf.getvalue()


def write_report(results: pd.DataFrame, out_dir: Path, title: str, split: str | None = None,
                 catalogue: an.Catalogue | None = None, missing: str = an.DEFAULT_MISSING,
                 audit: dict[str, Any] | None = None, sweep_dirs: Sequence[Path] = ()) -> dict[str, Any]:
    """Everything into `out_dir`: summary.md, report.html, results.parquet/.csv, tables/*.csv, figures/*.png
    and the run-group reports (one per setting, and one per setting and seed under run_groups/), these of the
    attempts the leaderboard counts (`analysis.original_view`: obfuscated descriptions are not extra seeds)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reports = []
    bodies = an.run_group_reports(an.original_view(results))
    remove_stale_run_groups(out_dir, bodies)
    for stem, body in bodies.items():
        reports.append(atomic_write_text(out_dir / f"{stem}.json", an.report_json(body)))
    report = build_report(results, title, split, catalogue,
                          [str(p.relative_to(out_dir.parent)) for p in reports if "run_groups" not in p.parts], missing,
                          audit, sweep_dirs)
    for name, png in report.figures.items():
        atomic_write_bytes(out_dir / "figures" / name, png)
    for name, frame in report.tables.items():
        atomic_write_text(out_dir / "tables" / f"{name}.csv", frame.to_csv(index=False))
    atomic_write_text(out_dir / "results.csv", results_for_files(results).to_csv(index=False) if len(results) else "")
    atomic_write_text(out_dir / "leaderboard.csv", render_csv(report))
    parquet = atomic_write_bytes(out_dir / "results.parquet", parquet_bytes(results))
    summary = atomic_write_text(out_dir / "summary.md", render_markdown(report))
    page = atomic_write_text(out_dir / "report.html", render_html(report))
    atomic_write_json(out_dir / "files.json", {"figures": sorted(report.figures), "tables": sorted(report.tables),
                                               "reports": [str(p.relative_to(out_dir)) for p in reports]})
    return {"summary": summary, "html": page, "parquet": parquet, "reports": reports, "report": report}


def remove_stale_run_groups(out_dir: Path, bodies: dict[str, Any]) -> None:
    """Per-seed run-group folders an earlier analysis wrote that this one does not (fewer seed positions now), so
    upstream's aggregator, globbing run_groups/, never reads a stale seed. Only folders holding nothing but a
    grading report go; a symlink is never followed."""
    folder = out_dir / "run_groups"
    keep = {stem.split("/")[1] for stem in bodies if stem.startswith("run_groups/")}
    if not folder.is_dir() or folder.is_symlink():
        return
    for entry in folder.iterdir():
        if entry.name in keep or entry.is_symlink() or not entry.is_dir():
            continue
        inside = list(entry.iterdir())
        if [p.name for p in inside] == ["grading_report.json"] and inside[0].is_file() and not inside[0].is_symlink():
            inside[0].unlink()
            entry.rmdir()


def analyse_sweep(sweep_dir: Path, exclude: Collection[str] = (), audit: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """The analysis job's files: `analysis/` (summary.md, report.html, results.parquet/.csv, figures, run-group
    reports). `exclude`: attempts left out (still queued or running: `jobs.analysis_task` says which and why);
    `audit`: what the audit step before it did (`audit.run_step`)."""
    sweep_dir = Path(sweep_dir)
    results = an.load_results(sweep_dir)
    if len(results) and exclude:
        results = results[~results["attempt_id"].isin(list(exclude))].reset_index(drop=True)
    missing = an.sweep_missing_mode(sweep_dir)
    if audit is not None:
        an.write_audit_step(sweep_dir, audit)
    written = write_report(results, sweep_dir / "analysis", title=f"Sweep {sweep_dir.name}", missing=missing,
                           audit=audit, sweep_dirs=[sweep_dir])
    return {"attempts": len(results), "table": an.headline(results, missing=missing),
            "summary": str(written["summary"]),
            "reports": [str(p) for p in written["reports"] if "run_groups" not in p.parts],
            "run_groups": str(sweep_dir / "analysis" / "run_groups"), "html": str(written["html"]),
            "parquet": str(written["parquet"]), "audit": audit}


def _from_panel(frame) -> bool:
    """Whether any row's medals come from a reference panel (a frame without the column has none)."""
    return "leaderboard_source" in frame and bool((frame["leaderboard_source"] == "reference-panel").any())
