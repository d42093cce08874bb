"""Where a sweep stands, from the files its attempts wrote; Slurm is asked once, and only about the rest.

`status.json` written by an attempt is the truth (Slurm says COMPLETED for a Python task that failed).
Only attempts that have no final word in their files are looked up, in one batched `squeue` call;
accounting (`sacct`) is never needed.

Effective states: done, timeout, failed (with `failure`: agent or infrastructure), running, queued,
requeued, preempted (waiting for its requeue), and lost (submitted, never started, no longer queued).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from hpc_mle import plan, slurm

FINAL = ("done", "timeout", "failed")
UNSETTLED = ("running", "preempted", "requeued")


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def sweep_status(sweep_dir: Path, ask_slurm: bool = True) -> pd.DataFrame:
    """One row per attempt: its effective state, reason and where it runs."""
    sweep_dir = Path(sweep_dir)
    manifest = plan.read_manifest(sweep_dir)
    if manifest is None:
        raise FileNotFoundError(f"{sweep_dir} has no {plan.MANIFEST}: not a sweep folder")
    rows = []
    for _, m in manifest.iterrows():
        st = _read(Path(m["path"]) / "status.json")
        job = f"{m['array_job_id']}_{m['task_id']}" if pd.notna(m.get("array_job_id")) else None
        rows.append({"id": m["id"], "competition_id": m["competition_id"], "scaffold": m["scaffold"],
                     "model": m["model"], "seed": m["seed"], "hardware": m["hardware"], "job": job,
                     "file_state": st.get("state"), "state": st.get("state") or "pending",
                     "failure": st.get("failure"), "reason": st.get("reason"), "starts": st.get("starts", 0),
                     "agent_elapsed_s": st.get("agent_elapsed_s")})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    unsettled = table["state"].isin(("pending", *UNSETTLED)) & table["job"].notna()
    if ask_slurm and unsettled.any():
        queue = slurm.queue_states(list(table.loc[unsettled, "job"]))
        for i in table.index[unsettled]:
            in_queue = queue.get(table.at[i, "job"])
            table.at[i, "state"] = _effective(table.loc[i], in_queue)
            if table.at[i, "state"] == "failed" and table.at[i, "failure"] is None:
                table.at[i, "failure"] = "infrastructure"
                last = table.at[i, "reason"] or table.at[i, "file_state"]
                table.at[i, "reason"] = f"the job ended before the attempt finished (last: {last})"
            elif table.at[i, "state"] == "lost":
                table.at[i, "reason"] = "submitted but never started, and no longer in the queue (cancelled?)"
    return table


def _effective(row: pd.Series, in_queue: str | None) -> str:
    if in_queue in ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED"):
        return "queued" if row["file_state"] is None else "requeued"
    if in_queue in ("RUNNING", "COMPLETING"):
        return "running"
    if row["file_state"] is None:
        return "lost"
    return "failed"  # running/preempted/requeued in the files, but Slurm no longer has the job


def counts(table: pd.DataFrame, by: str) -> pd.DataFrame:
    """States as columns, one row per value of `by` (competition_id, model, ...), with totals."""
    if table.empty:
        return pd.DataFrame()
    out = pd.crosstab(table[by], table["state"], margins=True, margins_name="total")
    return out


def to_resume(table: pd.DataFrame, retry_agent_failures: bool = False) -> pd.DataFrame:
    """Attempts to submit again: lost ones, infrastructure failures (and agent failures if asked)."""
    failed = table["state"] == "failed"
    agent = table["failure"] == "agent"
    pick = (table["state"] == "lost") | (failed & ~agent) | (failed & agent & retry_agent_failures)
    return table[pick]
