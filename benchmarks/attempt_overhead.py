"""Harness overhead of one attempt: wall time of `run_attempt` minus the agent's own time.

Target (issue #3): under 1 s for a dummy attempt in bubblewrap. The dummy copies the sample
submission and calls the validator once, so the agent time is small and the rest is the harness:
staging, sandbox start and teardown, validator, snapshots, status files.

    python benchmarks/attempt_overhead.py [--runs 10] [--sandbox bwrap] [--competition mini-churn]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from hpc_mle import prepare, runner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--sandbox", default="bwrap", choices=["bwrap", "none"])
    parser.add_argument("--competition", default="mini-churn")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        prepare.prepare(args.competition, data)
        walls, agents = [], []
        for i in range(args.runs + 1):  # the first run warms caches and is not counted
            cfg = runner.AttemptConfig(competition_id=args.competition, scaffold="dummy", out=Path(tmp) / f"a{i}",
                                       sandbox=args.sandbox, time_limit_s=60, data_dir=data,
                                       telemetry_interval_s=10)
            t0 = time.perf_counter()
            status = runner.run_attempt(cfg)
            wall = time.perf_counter() - t0
            assert status["state"] == "done", status
            if i:
                walls.append(wall)
                agents.append(status["agent_elapsed_s"])
    overheads = [w - a for w, a in zip(walls, agents, strict=True)]
    print(f"sandbox={args.sandbox} competition={args.competition} runs={args.runs}")
    print(f"wall time        median {statistics.median(walls):.3f} s  max {max(walls):.3f} s")
    print(f"agent time       median {statistics.median(agents):.3f} s (dummy: copy sample, one validator call)")
    print(f"harness overhead median {statistics.median(overheads):.3f} s  max {max(overheads):.3f} s"
          f"  -> target < 1 s: {'OK' if statistics.median(overheads) < 1 else 'OVER TARGET'}")


if __name__ == "__main__":
    main()
