"""Where a sweep stands, from the files its attempts wrote; Slurm is asked once, and only about the rest.

`status.json` written by an attempt is the truth (Slurm says COMPLETED for a Python task that failed).
Only attempts that have no final word in their files are looked up, in one batched `squeue` call;
accounting (`sacct`) is never needed.

Effective states: done, timeout, failed (with `failure`: agent or infrastructure), running, queued,
requeued, preempted (waiting for its requeue), and lost (submitted, never started, no longer queued).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from hpc_mle import plan, slurm
from hpc_mle.files import read_json

FINAL = ("done", "timeout", "failed")
UNSETTLED = ("running", "preempted", "requeued")


def sweep_status(sweep_dir: Path, ask_slurm: bool = True) -> pd.DataFrame:
    """One row per attempt: its effective state, reason and where it runs."""
    sweep_dir = Path(sweep_dir)
    manifest = plan.read_manifest(sweep_dir)
    if manifest is None:
        raise FileNotFoundError(f"{sweep_dir} has no {plan.MANIFEST}: not a sweep folder")
    rows = []
    for m in manifest.to_dict("records"):  # plain dicts: row access in pandas costs ~0.3 ms each
        st = read_json(os.path.join(m["path"], "status.json"), {})
        has_job = m.get("array_job_id") is not None and not pd.isna(m["array_job_id"])
        rows.append({"id": m["id"], "competition_id": m["competition_id"], "scaffold": m["scaffold"],
                     "model": m["model"], "seed": m["seed"], "hardware": m["hardware"],
                     "job": f"{m['array_job_id']}_{m['task_id']}" if has_job else None,
                     "file_state": st.get("state"), "state": st.get("state") or "pending",
                     "failure": st.get("failure"), "reason": st.get("reason"), "starts": st.get("starts", 0),
                     "agent_elapsed_s": st.get("agent_elapsed_s")})
    unsettled = [r for r in rows if r["job"] and r["state"] in ("pending", *UNSETTLED)]
    if ask_slurm and unsettled:
        queue = slurm.queue_states([r["job"] for r in unsettled])
        for r in unsettled:
            r["state"] = _effective(r["file_state"], queue.get(r["job"]))
            if r["state"] == "failed" and r["failure"] is None:
                r["failure"] = "infrastructure"
                r["reason"] = f"the job ended before the attempt finished (last: {r['reason'] or r['file_state']})"
            elif r["state"] == "lost":
                r["reason"] = "submitted but never started, and no longer in the queue (cancelled?)"
    return pd.DataFrame(rows)


def _effective(file_state: str | None, in_queue: str | None) -> str:
    if in_queue in ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED"):
        return "queued" if file_state is None else "requeued"
    if in_queue in ("RUNNING", "COMPLETING"):
        return "running"
    if file_state is None:
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
