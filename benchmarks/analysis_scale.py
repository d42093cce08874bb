"""Analysis at paper scale and beyond: 100,000 synthetic attempts through every table and figure.

    python benchmarks/analysis_scale.py [--rows 100000] [--out DIR]

16 settings (2 scaffolds x 2 models x 24h/100h x gpu1/gpu2) on the 75 competitions of `all`, about
84 seeds each, a few graded snapshots per attempt, telemetry, tokens; some cells dropped so padding
is exercised. Times building the report (all tables and figures) and rendering md/HTML/CSV, then
writing results.parquet; prints the peak memory of the process. Target here: under 10 s. With
--out it also writes everything the analysis job writes, and times that.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hpc_mle import analysis, report


def synthetic_results(rows: int, seed: int = 0) -> pd.DataFrame:
    """A results frame shaped like `analysis.load_results`, with medals drawn at random."""
    rng = np.random.default_rng(seed)
    comps = list(analysis.default_catalogue().splits["all"])
    settings = [(s, m, r, h) for s in ("aide", "mlab") for m in ("gpt4o", "o1") for r in ("24h", "100h")
                for h in ("gpu1", "gpu2")]
    per_seed = len(settings) * len(comps)
    seeds = -(-rows // per_seed)
    grid = pd.MultiIndex.from_product([range(len(settings)), comps, range(seeds)],
                                      names=["setting", "competition_id", "seed"]).to_frame(index=False)
    frame = grid.sample(n=rows, random_state=seed).sort_index().reset_index(drop=True)
    setting = np.array(settings, dtype=object)[frame["setting"].to_numpy()]
    for i, key in enumerate(analysis.SETTING):
        frame[key] = setting[:, i]
    frame = frame.drop(columns="setting")
    n = len(frame)
    budget = np.where(frame["runtime"] == "24h", 86400.0, 360000.0)
    quality = rng.random(n) + np.where(frame["hardware"] == "gpu2", 0.05, 0.0)
    exists = rng.random(n) < 0.9
    valid = exists & (rng.random(n) < 0.85)
    gold, silver, bronze = valid & (quality > 0.95), valid & (quality > 0.9), valid & (quality > 0.82)
    silver &= ~gold
    bronze &= ~(gold | silver)
    frame = frame.assign(
        attempt_id=[f"{i:016x}" for i in range(n)], sweep="synthetic", sweep_order=0, benchmark="all",
        benchmark_split="all", spec_version=1, competition_status="ok", time_limit_s=budget,
        gpus=np.where(frame["hardware"] == "gpu2", 2, 1), graded=True, state="done", failure=None,
        unsandboxed=False, agent_elapsed_s=budget * rng.uniform(0.3, 1.0, n), starts=1,
        graded_at="2026-11-22T00:00:00+00:00", score=np.where(valid, quality, np.nan),
        gold_threshold=0.95, silver_threshold=0.9, bronze_threshold=0.82, median_threshold=0.5,
        any_medal=gold | silver | bronze, gold_medal=gold, silver_medal=silver, bronze_medal=bronze,
        above_median=valid & (quality > 0.5), submission_exists=exists, valid_submission=valid,
        is_lower_better=False, created_at="2026-11-22T00:00:00", submission_path="submission.csv",
        reason=None, grader_error=False, leaderboard_source="kaggle", hpc_mle_version="0",
        gpu_util_percent_mean=rng.uniform(10, 90, n), gpu_mem_mib_max=rng.uniform(1000, 20000, n),
        cpu_percent_mean=rng.uniform(50, 800, n), rss_mib_max=rng.uniform(500, 9000, n),
        input_tokens=rng.integers(10**5, 10**7, n).astype(float), output_tokens=rng.integers(10**4, 10**6, n)
        .astype(float), cost_usd=rng.uniform(1, 60, n))
    medal = frame["any_medal"].to_numpy()
    times = np.sort(rng.uniform(0, 1, (n, 4)), axis=1) * frame["agent_elapsed_s"].to_numpy()[:, None]
    late = rng.random((n, 4)) < np.array([0.1, 0.3, 0.6, 1.0])  # medals tend to come late
    frame["snapshots"] = [[{"elapsed_s": int(t), "any_medal": bool(m and ok), "gold": False,
                            "silver": False, "bronze": bool(m and ok)} for t, ok in zip(ts, lt, strict=True)]
                          for ts, lt, m in zip(times, late, medal, strict=True)]
    return analysis.normalise(frame)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=None, help="Also write the report files here.")
    args = ap.parse_args()
    results = synthetic_results(args.rows)
    print(f"{len(results)} attempts, {results['competition_id'].nunique()} competitions, "
          f"{results.groupby(analysis.SETTING).ngroups} settings")
    started = time.perf_counter()
    built = report.build_report(results, "scale benchmark")
    after_build = time.perf_counter()
    md, page, csv = report.render_markdown(built), report.render_html(built), report.render_csv(built)
    after_render = time.perf_counter()
    parquet = report.parquet_bytes(results)
    done = time.perf_counter()
    print(f"tables and figures: {after_build - started:.2f} s ({len(built.tables)} tables, "
          f"{len(built.figures)} figures)")
    print(f"render md/html/csv:  {after_render - after_build:.2f} s ({len(md) // 1024} KiB md, "
          f"{len(page) // 1024} KiB html, {len(csv) // 1024} KiB csv)")
    print(f"results.parquet:     {done - after_render:.2f} s ({len(parquet) // 1024} KiB)")
    print(f"total:               {done - started:.2f} s (target < 10 s)")
    print(f"peak memory (RSS):   {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if args.out:
        started = time.perf_counter()
        written = report.write_report(results, args.out, "scale benchmark")
        print(f"every file of analysis/ (report, CSV, parquet, {len(written['reports'])} run-group reports): "
              f"{time.perf_counter() - started:.2f} s -> {args.out}")


if __name__ == "__main__":
    main()
