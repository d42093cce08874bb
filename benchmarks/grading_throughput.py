"""Grading throughput: rows/s and peak memory for 10k and 1M-row submissions, per metric family.

Target (issue #2): a 1M-row two-column submission graded in under 3 s on the 2-core dev machine.
Each case runs in a fresh child process so its peak RSS is its own. Synthetic competitions are
written to a temporary folder; nothing outside it is touched.

    python benchmarks/grading_throughput.py            # all families, 10k and 1M rows
    python benchmarks/grading_throughput.py --rows 10000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

FAMILIES = {
    # name: (metric, higher_is_better, number of answer columns)
    "binary-auc": ("auc-roc", True, 1),
    "binary-log-loss": ("log-loss", False, 1),
    "regression-rmse": ("root-mean-squared-error", False, 1),
    "accuracy": ("accuracy", True, 1),
    "label-sets-micro-f1": ("micro-f1-label-sets", True, 1),
    "multiclass-log-loss-10": ("multi-class-log-loss", False, 10),
}


def make_case(root: Path, family: str, rows: int) -> tuple[str, Path, Path]:
    """Write spec, answers, a leaderboard and a valid (shuffled) submission; return (id, data dir, submission)."""
    metric, higher, ncols = FAMILIES[family]
    cid = f"bench-{family}"
    rng = np.random.default_rng(0)
    ids = np.arange(rows)
    if family == "multiclass-log-loss-10":
        cols = [f"class_{i}" for i in range(ncols)]
        onehot = np.eye(ncols, dtype=int)[rng.integers(ncols, size=rows)]
        answers = pd.DataFrame(onehot, columns=cols)
        proba = rng.dirichlet(np.ones(ncols), size=rows)
        sub = pd.DataFrame(proba, columns=cols)
    else:
        cols = ["target"]
        if family in ("binary-auc", "binary-log-loss"):
            answers, sub = pd.DataFrame({"target": rng.integers(2, size=rows)}), pd.DataFrame({"target": rng.random(rows)})
        elif family == "regression-rmse":
            answers, sub = pd.DataFrame({"target": rng.normal(size=rows)}), pd.DataFrame({"target": rng.normal(size=rows)})
        elif family == "accuracy":
            answers = pd.DataFrame({"target": rng.integers(10, size=rows)})
            sub = pd.DataFrame({"target": rng.integers(10, size=rows)})
        else:
            labels = np.array(["a", "b", "c", "d", "e", "a b", "c d e", ""])
            answers = pd.DataFrame({"target": labels[rng.integers(len(labels), size=rows)]})
            sub = pd.DataFrame({"target": labels[rng.integers(len(labels), size=rows)]})
    answers.insert(0, "id", ids)
    sub.insert(0, "id", ids)
    sub = sub.sample(frac=1.0, random_state=0)  # graders must match rows by id

    spec = {
        "id": cid, "name": cid, "split": "mini", "category": "Benchmark",
        "metric": {"name": metric, "higher_is_better": higher},
        "submission": {"id_columns": ["id"], "answer_columns": cols},
        "files": {"answers": "private/test.csv", "sample_submission": "public/sample_submission.csv"},
        "leaderboard": {"source": "reference-panel"}, "implemented": True, "preparer": "unused:unused",
    }
    (root / "competitions" / cid).mkdir(parents=True)
    (root / "competitions" / cid / "spec.yaml").write_text(yaml.safe_dump(spec))
    scores = np.linspace(1.0, 0.0, 200) if higher else np.linspace(0.0, 1.0, 200)
    pd.DataFrame({"score": scores}).to_csv(root / "competitions" / cid / "leaderboard.csv", index=False)
    private = root / "data" / cid / "prepared" / "private"
    private.mkdir(parents=True)
    answers.to_csv(private / "test.csv", index=False)
    path = root / f"{cid}-{rows}.csv"
    sub.to_csv(path, index=False)
    return cid, root / "data", path


def run_case(family: str, rows: int) -> dict:
    """Child process: build the case, grade it twice (cold: answers read; warm: answers cached), report."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["HPC_MLE_COMPETITIONS"] = str(root / "competitions")
        cid, data, sub = make_case(root, family, rows)
        from hpc_mle import grading

        base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        report = grading.grade_submission(sub, cid, data)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        grading.grade_submission(sub, cid, data)
        warm = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert report.valid_submission, report.reason
        return {
            "family": family, "rows": rows, "size_mib": sub.stat().st_size / 2**20,
            "cold_s": cold, "warm_s": warm, "rows_per_s": rows / cold,
            "peak_rss_mib": peak / 1024, "grading_rss_mib": (peak - base_rss) / 1024,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="*", default=[10_000, 1_000_000])
    parser.add_argument("--family", nargs="*", default=list(FAMILIES))
    parser.add_argument("--child", nargs=2, metavar=("FAMILY", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child[0], int(args.child[1]))))
        return

    print(f"{'family':<24}{'rows':>10}{'MiB':>8}{'cold s':>9}{'warm s':>9}{'rows/s':>13}{'peak RSS MiB':>14}")
    results = []
    for rows in args.rows:
        for family in args.family:
            out = subprocess.run([sys.executable, __file__, "--child", family, str(rows)],
                                 check=True, capture_output=True, text=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(r)
            print(f"{r['family']:<24}{r['rows']:>10,}{r['size_mib']:>8.1f}{r['cold_s']:>9.2f}{r['warm_s']:>9.2f}"
                  f"{r['rows_per_s']:>13,.0f}{r['peak_rss_mib']:>14.0f}")
    target = [r for r in results if r["rows"] == 1_000_000 and r["family"] in ("binary-auc", "regression-rmse")]
    for r in target:
        verdict = "OK" if r["cold_s"] < 3 else "OVER TARGET"
        print(f"target: 1M-row two-column ({r['family']}) graded in {r['cold_s']:.2f} s (< 3 s): {verdict}")


if __name__ == "__main__":
    main()
