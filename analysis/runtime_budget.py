"""Runtime budgets side by side (e.g. 24h vs 100h): any-medal % per budget, and the medal-over-time curves.

    python analysis/runtime_budget.py runs/<sweep-24h> runs/<sweep-100h> [--split lite] [--png runtime.png]
"""

from __future__ import annotations

from _common import load, parse, save, show

from hpc_mle import analysis, report

if __name__ == "__main__":
    args = parse(__doc__.splitlines()[0], figure=True)
    results, split = load(args)
    board = analysis.leaderboard(results, splits=[split])
    print(f"## Any medal % of {split} by runtime budget\n")
    show(analysis.runtime_budgets(board))
    print(f"\n## Any medal % of {split} by time T, per budget\n")
    show(report.display_time(analysis.medal_over_time(results, split)))
    if board["runtime"].nunique() > 1:
        save(report.fig_grouped_bars(board, "runtime", "any medal % by runtime budget"), args.png)
    elif args.png:
        print("one runtime budget only: no figure")
