#!/usr/bin/env bash
# Does upstream's own aggregator, run on `hpc-mle export-leaderboard`'s files, print the numbers our report prints?
#
#   benchmarks/upstream_aggregation_check.sh UPSTREAM_CLONE SWEEP [SWEEP ...]
#
# UPSTREAM_CLONE is a clone of https://github.com/openai/mle-bench that you made yourself: this script cannot
# fetch GitHub (compute nodes and many sites have no route to it) and ships none of upstream's code. It only
# needs the clone's experiments/aggregate_grading_reports.py, which it copies, unchanged, into each export so
# that the script's own project root is the export (its --experiment-id reads <root>/runs/, its --split names
# <root>/experiments/splits/); the clone is never written.
#
# For each missing-cell mode (pad = upstream's --pad-missing, complete-seeds = its default), each exported
# experiment (one per setting) and each exported split, it runs upstream's script and compares the seed count
# and every metric's mean and standard error with `hpc-mle report --format csv`, and the README rows' any-medal
# cells with upstream's any_medal_percentage. Where upstream refuses (a split competition without any report),
# our report must show no seeds. Exit 0: all agree; 1: a difference (printed); 2: a usage error.
#
# Environment:
#   UPSTREAM_PYTHON  a Python with NumPy and SciPy for upstream's script (default python3). Its published runs
#                    used numpy 1.26.4 and scipy 1.14.1: python -m venv v && v/bin/pip install numpy==1.26.4
#                    scipy==1.14.1
#   PYTHON           the Python with hpc-mle installed (default python)
#   MISSING          pad, complete-seeds or both (default both)
#   KEEP_DIR         write the exports and upstream's outputs here and keep them (default: a temporary folder,
#                    removed at the end)
set -euo pipefail

usage() { sed -n '3p' "$0" | sed 's/^#  */usage: /' >&2; exit 2; }
[ $# -ge 2 ] || usage
clone=$1; shift
script=$clone/experiments/aggregate_grading_reports.py
if [ ! -f "$script" ]; then
    echo "$script: not found. Fix: pass the root of a clone of openai/mle-bench (git clone" \
         "https://github.com/openai/mle-bench, on a machine that reaches GitHub)." >&2
    exit 2
fi
for sweep in "$@"; do
    [ -f "$sweep/manifest.csv" ] || { echo "$sweep/manifest.csv: not found. Fix: pass sweep folders (runs/<sweep>)." >&2; exit 2; }
done
UPSTREAM_PYTHON=${UPSTREAM_PYTHON:-python3}
PYTHON=${PYTHON:-python}
if ! "$UPSTREAM_PYTHON" -c 'import numpy, scipy' 2>/dev/null; then
    echo "UPSTREAM_PYTHON=$UPSTREAM_PYTHON cannot import numpy and scipy. Fix: point it at a venv that has them" \
         "(see this script's header)." >&2
    exit 2
fi
case ${MISSING:-both} in
    both) modes="pad complete-seeds" ;;
    pad|complete-seeds) modes=$MISSING ;;
    *) echo "MISSING=$MISSING: use pad, complete-seeds or both." >&2; exit 2 ;;
esac
if [ -n "${KEEP_DIR:-}" ]; then
    work=$KEEP_DIR; mkdir -p "$work"
else
    work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
fi

for mode in $modes; do
    out=$work/$mode
    rm -rf "$out"
    "$PYTHON" -m hpc_mle.cli export-leaderboard "$@" --out "$out" --missing "$mode" > "$out.export.txt"
    "$PYTHON" -m hpc_mle.cli report "$@" --format csv --missing "$mode" --output "$out/ours.csv" > /dev/null
    cp "$script" "$out/experiments/aggregate_grading_reports.py"
    mkdir -p "$out/upstream"
    pad=(); [ "$mode" = pad ] && pad=(--pad-missing)
    for experiment in $(tail -n +2 "$out/runs/run_group_experiments.csv" | cut -d, -f1 | sort -u); do
        for split_file in "$out"/experiments/splits/*.txt; do
            split=$(basename "$split_file" .txt)
            log=$out/upstream/$experiment@$split
            if ! "$UPSTREAM_PYTHON" "$out/experiments/aggregate_grading_reports.py" --experiment-id "$experiment" \
                    --split "$split" "${pad[@]}" > "$log.txt" 2> "$log.err"; then
                touch "$log.refused"
            fi
        done
    done
done

"$PYTHON" - "$work" $modes <<'EOF'
"""Compare upstream's printed aggregates with our report's CSV and README rows; print one line per check."""
import json
import math
import os
import re
import sys
from pathlib import Path

import pandas as pd

from hpc_mle import analysis as an
from hpc_mle import export

work, modes = Path(sys.argv[1]), sys.argv[2:]
ours_split = {v: k for k, v in export.UPSTREAM_SPLIT_NAMES.items()}
readme_column = {"lite": "Low == Lite (%)", "medium": "Medium (%)", "high": "High (%)", "all": "All (%)"}
bad = 0


def upstream(path: Path) -> dict:
    text = path.read_text()
    return json.loads(text.split("Average metrics across seeds:", 1)[1])


def readme_cells(path: Path) -> dict[str, dict[str, str]]:
    lines = [[c.strip() for c in line.strip().strip("|").split("|")] for line in path.read_text().splitlines()
             if line.startswith("|") and not line.startswith("|---")]
    rows = [dict(zip(lines[0], r)) for r in lines[1:]] if lines else []
    return {f"{r['Agent']}_{r['LLM(s)']}": r for r in rows}


for mode in modes:
    out = work / mode
    ours = pd.read_csv(out / "ours.csv")
    ours = ours[ours["view"] == "all"]
    readme = readme_cells(out / "README_rows.md")
    for log in sorted((out / "upstream").glob("*.txt")):
        experiment, split_name = log.stem.split("@")
        split = ours_split.get(split_name, split_name)
        names = ours[an.SETTING].astype(str).agg("_".join, axis=1)
        row = ours[(names == experiment) & (ours["split"] == split)]
        where = f"{mode:14} {experiment} on {split_name}"
        if log.with_suffix(".refused").exists():
            seeds = int(row["seeds"].iloc[0]) if len(row) else 0
            ok = seeds == 0
            bad += not ok
            reason = log.with_suffix(".err").read_text().strip().splitlines()[-1:]
            print(f"{'ok  ' if ok else 'DIFF'} {where}: upstream refused ({' '.join(reason)}); ours: {seeds} seed(s)")
            continue
        got = upstream(log)
        if len(row) != 1:
            bad += 1
            print(f"DIFF {where}: upstream averaged {got['num_seeds_averaged']} seed(s); our report has no row")
            continue
        mine = row.iloc[0]
        diffs = [] if int(mine["seeds"]) == got["num_seeds_averaged"] else [
            f"seeds {got['num_seeds_averaged']} vs {int(mine['seeds'])}"]
        for key, name in export.OUR_METRIC.items():
            for theirs_field, our_field in (("mean", f"{name}_mean"), ("standard_error", f"{name}_sem")):
                theirs, value = got["metrics"][key][theirs_field], float(mine[our_field])
                if not math.isclose(theirs, value, rel_tol=1e-9, abs_tol=1e-9):
                    diffs.append(f"{key} {theirs_field} {theirs!r} vs {value!r}")
        medal = got["metrics"]["any_medal_percentage"]
        cell = readme.get(f"{mine['scaffold']}_{mine['model']}", {}).get(readme_column.get(split, ""), "-")
        if cell != "-":
            shown = re.match(r"(-?[\d.]+) ± ([\d.]+|n/a)", cell)
            want = (f"{medal['mean']:.1f}", f"{medal['standard_error']:.1f}" if got["num_seeds_averaged"] > 1 else "n/a")
            if not shown or shown.groups() != want:
                diffs.append(f"README cell {cell!r} vs upstream {want[0]} ± {want[1]}")
        bad += bool(diffs)
        print(f"{'DIFF' if diffs else 'ok  '} {where}: upstream any medal {medal['mean']:.4f} ± "
              f"{medal['standard_error']:.4f} over {got['num_seeds_averaged']} seed(s), valid "
              f"{got['metrics']['valid_submissions_percentage']['mean']:.4f}; ours "
              f"{mine['any_medal_mean']:.4f} ± {mine['any_medal_sem']:.4f} (n={int(mine['seeds'])}), valid "
              f"{mine['valid_submission_mean']:.4f}; README cell {cell}" + "".join(f"\n     {d}" for d in diffs))
kept = f" (outputs in {work})" if os.environ.get("KEEP_DIR") else ""
print(f"{'all numbers agree' if not bad else f'{bad} check(s) differ'}{kept}")
sys.exit(1 if bad else 0)
EOF
