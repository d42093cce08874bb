"""The cluster's nodes as `sinfo` reports them, and Slurm's time format, read without planning anything.

The preflight (does each job fit a node?), the doctor (which partitions, GPUs) and `hpc_mle.slurm`
(partition time limits) all read these; living under all three, none of them imports a higher one
for them. `hpc_mle.preflight` re-exports the names.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

SINFO_FORMAT = "%N|%P|%c|%m|%G|%l|%T"
SLURM_FIX = ("run on a login node of the cluster, or use cluster=local "
             "(dev cluster: bash slurm/dev/up.sh && source slurm/dev/env.sh)")


@dataclass(frozen=True)
class Node:
    """One node in one partition, as sinfo shows it."""

    name: str
    partition: str
    default: bool  # the cluster's default partition
    cpus: int
    mem_mb: int
    gpus: dict[str, int]  # gpu type ('' when untyped) -> count
    max_time_min: float | None  # the partition's MaxTime; None = unlimited
    state: str


def parse_time_min(text: str) -> float | None:
    """Slurm's time (`infinite`, `30:00`, `2:00:00`, `1-00:00:00`, `45`) in minutes; None when unlimited."""
    t = text.strip().lower()
    if t in ("infinite", "unlimited", "n/a", ""):
        return None
    days, _, rest = t.rpartition("-")
    parts = [float(x) for x in rest.split(":")]
    if days:  # days-hours[:minutes[:seconds]]
        parts += [0.0] * (3 - len(parts))
        h, m, s = parts
    else:  # minutes | minutes:seconds | hours:minutes:seconds
        h, m, s = {1: (0, parts[0], 0), 2: (0, *parts), 3: tuple(parts)}[len(parts)]
    return float(days or 0) * 1440 + h * 60 + m + s / 60


def parse_gres(text: str) -> dict[str, int]:
    """`gpu:2`, `gpu:a100:4(S:0-1)`, `gpu:a100:2,gpu:v100:1`, `(null)` -> {type: count} of the GPUs."""
    out: dict[str, int] = {}
    for item in re.sub(r"\([^)]*\)", "", text).split(","):
        parts = item.strip().split(":")
        if parts[0] != "gpu" or len(parts) < 2:
            continue
        try:
            count = int(parts[-1])
        except ValueError:
            continue
        kind = parts[1] if len(parts) > 2 else ""
        out[kind] = out.get(kind, 0) + count
    return out


def parse_sinfo(text: str) -> list[Node]:
    """The lines of `sinfo -N -h -o SINFO_FORMAT`, one per node and partition."""
    nodes = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 7:
            continue
        name, part, cpus, mem, gres, limit, state = parts
        try:
            nodes.append(Node(name, part.rstrip("*"), part.endswith("*"), int(cpus), int(float(mem.rstrip("+"))),
                              parse_gres(gres), parse_time_min(limit), state))
        except ValueError:
            continue
    return nodes


def query_nodes() -> list[Node]:
    """Every node of every partition, in one `sinfo` call; RuntimeError naming the fix when it fails."""
    if shutil.which("sinfo") is None:
        raise RuntimeError(f"sinfo is not on PATH here. Fix: {SLURM_FIX}")
    try:
        out = subprocess.run(["sinfo", "-N", "-h", "-o", SINFO_FORMAT], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"sinfo did not answer ({exc}). Fix: check that slurmctld is up and SLURM_CONF") from None
    if out.returncode != 0:
        why = (out.stderr.strip() or "no message").splitlines()[-1]
        raise RuntimeError(f"sinfo failed (exit {out.returncode}: {why}). Fix: check SLURM_CONF and that the "
                           "controller answers")
    return parse_sinfo(out.stdout)
