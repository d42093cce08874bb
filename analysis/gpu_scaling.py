"""Hardware compared (e.g. gpu1 vs gpu2): scores beside measured GPU utilisation and memory, CPU and RSS.

    python analysis/gpu_scaling.py runs/<sweep> [...] [--split lite] [--png gpu.png]
"""

from __future__ import annotations

from _common import load, parse, save, show

from hpc_mle import analysis, report

if __name__ == "__main__":
    args = parse(__doc__.splitlines()[0], figure=True)
    results, split = load(args)
    board = analysis.leaderboard(results, splits=[split])
    table = analysis.gpu_scaling(results, board)
    print(f"## {split}: scores and measured use by hardware\n")
    show(report.display_gpu(table))
    if board["hardware"].nunique() > 1:
        save(report.fig_grouped_bars(board, "hardware", "any medal % by hardware"), args.png)
    elif args.png:
        print("one hardware setting only: no figure")
