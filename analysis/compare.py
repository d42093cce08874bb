"""Two sweeps side by side (e.g. a nightly against the night before): medals gained or lost, score change.

    python analysis/compare.py runs/<old-sweep> runs/<new-sweep>
"""

from __future__ import annotations

import sys
from pathlib import Path

from hpc_mle import analysis

if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    old, new = Path(sys.argv[1]), Path(sys.argv[2])
    print(analysis.format_comparison(old, new, analysis.compare(old, new)))
