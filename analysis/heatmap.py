"""Medals per competition and seed position, per setting (G S B · × and - for not run).

    python analysis/heatmap.py runs/<sweep> [...] [--split lite] [--png heatmap.png]
"""

from __future__ import annotations

from _common import load, parse, save, show

from hpc_mle import analysis, report

if __name__ == "__main__":
    args = parse(__doc__.splitlines()[0], figure=True)
    results, split = load(args)
    cells = analysis.heatmap(results, split)
    print(f"## Medals on {split}: G gold, S silver, B bronze, · valid, × no valid submission, - not run\n")
    show(report.display_heatmap(cells))
    panel = bool((results.get("leaderboard_source") == "reference-panel").any())
    save(report.fig_heatmap(cells, panel), args.png)
