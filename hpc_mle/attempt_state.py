"""An attempt's own word on where it stands, and the one vocabulary of states, without asking Slurm.

`status.json` written by an attempt is the truth (Slurm says COMPLETED for a Python task that failed);
when it is unreadable, the `end` event of `events.jsonl` stands in. This module only reads those files,
so the analysis, the report and the jobs can use it; `hpc_mle.status` settles what the files leave open
against the queue.

The one vocabulary of states (status, report and results.csv use these words):
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

STATES: dict[str, str] = {
    "planned": "in the plan, never submitted",
    "queued": "waiting in the Slurm queue (first start or a restart)",
    "running": "its job runs now",
    "done": "finished within its budget",
    "timeout": "stopped at its time limit (its last submission counts)",
    "failed": "ended without finishing: `failure` says agent or infrastructure",
    "preempted": "stopped by preemption or Slurm's warning, waiting to be requeued",
    "lost": "submitted, never started, and no longer in the queue (cancelled?)",
    "unknown": "its job could not be looked up: squeue failed",
    "damaged": "status.json is unreadable and events.jsonl has no end: left alone (resume --rerun-damaged)",
}
__doc__ += "".join(f"\n- {k}: {v}" for k, v in STATES.items())
FINAL = ("done", "timeout", "failed")
UNSETTLED = ("running", "preempted", "requeued")  # states in status.json that only the queue can settle
DAMAGED = "damaged"


def read_attempt(path: str | os.PathLike) -> dict[str, Any]:
    """An attempt's own word: status.json; when that is unreadable, the `end` event of events.jsonl."""
    file = Path(path) / "status.json"
    try:
        st = json.loads(file.read_text())
        if isinstance(st, dict):
            return st
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        pass
    end = _end_event(Path(path) / "events.jsonl")
    if end:
        return {"state": end.get("state"), "reason": f"{file} is damaged; state from its end event in events.jsonl",
                "agent_elapsed_s": end.get("agent_elapsed_s"), "damaged": True,
                # the end event names the kind of failure; an older one without it is taken as final (agent)
                "failure": (end.get("failure") or "agent") if end.get("state") == "failed" else None}
    return {"state": DAMAGED, "reason": f"{file} is damaged (not JSON) and events.jsonl has no end event",
            "damaged": True}


def _end_event(events: Path) -> dict[str, Any] | None:
    try:
        lines = events.read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict) and e.get("event") == "end":
            return e
        if isinstance(e, dict) and e.get("event") == "start":
            return None  # a later start: the attempt ran again after that end
    return None


def offline_state(state: str | None, job: str | None) -> str:
    """The state without asking Slurm (what a local sweep, or the analysis job, can know)."""
    if state is None:
        return "queued" if job else "planned"
    return "queued" if state == "requeued" else state


def file_state(st: dict[str, Any] | None, submitted: bool) -> str:
    """The vocabulary's word for an attempt from its files alone (report and results.csv use this)."""
    return offline_state((st or {}).get("state"), "submitted" if submitted else None)


def counts(table: pd.DataFrame, by: str) -> pd.DataFrame:
    """States as columns (in the vocabulary's order), one row per value of `by`, with totals."""
    if table.empty:
        return pd.DataFrame()
    out = pd.crosstab(table[by], table["state"], margins=True, margins_name="total")
    order = [s for s in STATES if s in out.columns] + [c for c in out.columns if c not in STATES]
    return out[order]


def to_resume(table: pd.DataFrame, retry_agent_failures: bool = False, rerun_damaged: bool = False) -> pd.DataFrame:
    """Attempts to submit: planned, lost, infrastructure failures (agent failures and damaged ones if asked).

    Never anything queued, running or unknown, and never a finished attempt."""
    failed = table["state"] == "failed"
    agent = table["failure"] == "agent"
    pick = (table["state"].isin(["planned", "lost"]) | (failed & ~agent) | (failed & agent & retry_agent_failures)
            | ((table["state"] == DAMAGED) & rerun_damaged))
    return table[pick]


def summary(table: pd.DataFrame) -> str:
    """'12 attempts: 8 done, 2 queued, 1 failed (infrastructure), 1 unknown' in the vocabulary's order."""
    if table.empty:
        return "0 attempts"
    parts = []
    for state in [*STATES, *sorted(set(table["state"]) - set(STATES))]:
        sub = table[table["state"] == state]
        if len(sub) and state == "failed":
            kinds = sub["failure"].fillna("infrastructure").value_counts()
            parts += [f"{n} failed ({kind})" for kind, n in kinds.items()]
        elif len(sub):
            parts.append(f"{len(sub)} {state}")
    return f"{len(table)} attempts: " + ", ".join(parts)
