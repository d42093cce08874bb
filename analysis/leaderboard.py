"""The leaderboard as upstream aggregates it, with and without flagged competitions, and README rows.

    python analysis/leaderboard.py runs/<sweep> [runs/<sweep> ...] [--split lite] [--png leaderboard.png]
"""

from __future__ import annotations

from _common import load, parse, save, show

from hpc_mle import analysis, report

if __name__ == "__main__":
    args = parse(__doc__.splitlines()[0], figure=True)
    results, _ = load(args)
    board = analysis.leaderboard(results, splits=[args.split] if args.split else None)
    for view, title in (("all", "every competition of the split"),
                        ("clean", "without known-issue, leaky and excluded competitions")):
        part = board[board["view"] == view]
        if len(part):
            print(f"\n## Leaderboard: {title}\n")
            show(report.display_board(part))
    print("\n## Upstream README rows\n")
    show(analysis.readme_rows(board, results))
    save(report.fig_leaderboard(board), args.png)
