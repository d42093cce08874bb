"""What every study script shares: read sweep folders from the command line, pick the split."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from hpc_mle import analysis, report


def parse(description: str, figure: bool = False) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("sweeps", nargs="+", type=Path, help="sweep folders (runs/<sweep>); later ones add seeds")
    ap.add_argument("--split", default=None, help="lite, medium, high, all, mini or dev (default: the smallest "
                                                  "split that holds every competition run)")
    if figure:
        ap.add_argument("--png", type=Path, default=None, help="also write the figure here")
    return ap.parse_args()


def load(args: argparse.Namespace) -> tuple[pd.DataFrame, str]:
    """The combined results and the split to study; exits with a message when there is nothing."""
    missing = [str(s) for s in args.sweeps if not (s / "manifest.csv").is_file()]
    if missing:
        raise SystemExit(f"not a sweep folder (no manifest.csv): {', '.join(missing)}")
    results = analysis.load_many(args.sweeps)
    split = args.split or analysis.primary_split(results, analysis.default_catalogue())
    if results.empty or split is None:
        raise SystemExit("no attempts in these sweeps")
    return results, split


def show(frame: pd.DataFrame) -> None:
    print(report.markdown_table(frame))


def save(png: bytes, path: Path | None) -> None:
    if path:
        path.write_bytes(png)
        print(f"figure: {path}")
