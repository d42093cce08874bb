"""pass@k for k = 1..n seeds (unbiased estimator), overall and per competition.

    python analysis/pass_at_k.py runs/<sweep> [...] [--split lite] [--png pass_at_k.png]
"""

from __future__ import annotations

from _common import load, parse, save, show

from hpc_mle import analysis, report

if __name__ == "__main__":
    args = parse(__doc__.splitlines()[0], figure=True)
    results, split = load(args)
    per_comp, overall = analysis.pass_at_k_tables(results, split)
    wide_overall, wide_comp = report.display_pass_at_k(overall, per_comp)
    print(f"## pass@k on {split} (any medal, % of the split)\n")
    show(wide_overall)
    print("\n## per competition\n")
    show(wide_comp)
    save(report.fig_pass_at_k(overall), args.png)
