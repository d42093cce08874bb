"""Any-medal % of the split after T (hours, or minutes for short budgets), from graded snapshots.

    python analysis/medal_over_time.py runs/<sweep> [...] [--split lite] [--png medal_over_time.png]
"""

from __future__ import annotations

from _common import load, parse, save, show

from hpc_mle import analysis, report

if __name__ == "__main__":
    args = parse(__doc__.splitlines()[0], figure=True)
    results, split = load(args)
    curves = analysis.medal_over_time(results, split)
    print(f"## Any medal % of {split} by time T (mean ± SEM over seeds)\n")
    show(report.display_time(curves))
    save(report.fig_medal_over_time(curves), args.png)
