"""MLE-bench run-group grading reports, one folder per setting and seed, for upstream's aggregator.

    python analysis/upstream_reports.py runs/<sweep> [...] --out upstream/
    # then, in mle-bench: python experiments/aggregate_grading_reports.py --grading-reports upstream/*/*.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hpc_mle import analysis

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweeps", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    for stem, body in analysis.run_group_reports(analysis.load_many(args.sweeps)).items():
        if not stem.startswith("run_groups/"):
            continue
        path = args.out / Path(stem).parent.name / "grading_report.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(analysis.report_json(body))
        print(f"{path}: {body['total_runs']} runs, {body['total_medals']} medals")
