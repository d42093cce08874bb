"""Where a sweep stands, from the files its attempts wrote; Slurm is asked once, and only about the rest.

`status.json` written by an attempt is the truth (Slurm says COMPLETED for a Python task that failed).
Only attempts that have no final word in their files are looked up, in one `squeue` call; accounting
(`sacct`) is never needed. The job of each attempt comes from `launches.jsonl` (written before the next
sbatch), else the manifest; a job is matched by its id as squeue shows it (`<array>_<i>` or a plain
`<job>`), and an array that a killed launcher never recorded is recognised by its job name.

The one vocabulary of states (status, report and results.csv use these words):
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from hpc_mle import plan, slurm

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
WAITING = ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED", "RESV_DEL_HOLD")
ACTIVE = ("RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "STOPPED")
_DAMAGED = "damaged"


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
    return {"state": _DAMAGED, "reason": f"{file} is damaged (not JSON) and events.jsonl has no end event",
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


def _job_of(m: dict[str, Any], recorded: dict[str, str]) -> str | None:
    if m["id"] in recorded:
        return recorded[m["id"]]
    for key in ("job_id", "array_job_id"):
        value = m.get(key)
        if value is not None and not pd.isna(value) and str(value) not in ("", "nan"):
            if key == "job_id":
                return str(value)
            task = m.get("task_id")
            return f"{value}_{task}" if task is not None and not pd.isna(task) else str(value)
    return None


def sweep_status(sweep_dir: Path, ask_slurm: bool = True, rows: list[dict[str, Any]] | None = None) -> pd.DataFrame:
    """One row per attempt: its state (STATES), reason and job. `rows`: the planned attempts, when the
    manifest may be missing (a relaunch rebuilds it; the attempts' own files are the truth)."""
    sweep_dir = Path(sweep_dir)
    if rows is None:
        manifest = plan.read_manifest(sweep_dir)
        if manifest is None:
            raise FileNotFoundError(f"{sweep_dir} has no {plan.MANIFEST}: not a sweep folder")
        rows = manifest.to_dict("records")  # plain dicts: row access in pandas costs ~0.3 ms each
    entries = slurm.read_log(sweep_dir)
    recorded = slurm.recorded_tasks(entries)
    out = [_row(m, read_attempt(m.get("path") or plan.attempt_dir(sweep_dir, m["id"])), _job_of(m, recorded))
           for m in rows]
    unrecorded = {a for e in entries if e.get("event") == "intent" for a in e.get("attempts") or []}
    unsettled = [r for r in out if (r["job"] and r["file_state"] in (None, _DAMAGED, *UNSETTLED))
                 or (r["file_state"] is None and r["id"] in unrecorded and not r["job"])]
    if ask_slurm and unsettled:
        _settle(sweep_dir, unsettled, entries)
    return pd.DataFrame(out, columns=list(_row({"id": ""}, {}, None)))


def _row(m: dict[str, Any], st: dict[str, Any], job: str | None) -> dict[str, Any]:
    file_state = st.get("state")
    return {"id": m["id"], "competition_id": m.get("competition_id"), "scaffold": m.get("scaffold"),
            "model": m.get("model"), "seed": m.get("seed"), "hardware": m.get("hardware"), "job": job,
            "file_state": file_state, "state": _offline(file_state, job), "failure": st.get("failure"),
            "reason": st.get("reason"), "starts": st.get("starts", 0), "agent_elapsed_s": st.get("agent_elapsed_s"),
            "damaged": bool(st.get("damaged")), "path": m.get("path")}


def _offline(file_state: str | None, job: str | None) -> str:
    """The state without asking Slurm (what a local sweep, or the analysis job, can know)."""
    if file_state is None:
        return "queued" if job else "planned"
    return "queued" if file_state == "requeued" else file_state


def file_state(st: dict[str, Any] | None, submitted: bool) -> str:
    """The vocabulary's word for an attempt from its files alone (report and results.csv use this)."""
    return _offline((st or {}).get("state"), "submitted" if submitted else None)


def _settle(sweep_dir: Path, rows: list[dict[str, Any]], entries: list[dict[str, Any]]) -> None:
    try:
        queue = slurm.queue_jobs()
    except slurm.QueueUnavailable as exc:
        for r in rows:
            r.update(state="unknown", reason=str(exc))
        return
    by_id = {q.job: q for q in queue}
    by_name = _unrecorded_by_attempt(sweep_dir, queue, entries)
    for r in rows:
        q = _match(r["job"], by_id) or by_name.get(r["id"])
        if q is None and r["file_state"] in (None, _DAMAGED, *UNSETTLED):
            fresh = read_attempt(r["path"] or plan.attempt_dir(sweep_dir, r["id"]))  # it may have just ended
            r.update(file_state=fresh.get("state"), failure=fresh.get("failure"), reason=fresh.get("reason"),
                     starts=fresh.get("starts", r["starts"]), agent_elapsed_s=fresh.get("agent_elapsed_s"))
        _apply(r, q)


def _match(job: str | None, by_id: dict[str, slurm.QueuedJob]) -> slurm.QueuedJob | None:
    """By id as squeue shows it; `<job>_0` also matches a plain `<job>` (older manifests recorded that)."""
    if not job:
        return None
    if job in by_id:
        return by_id[job]
    base, _, task = job.partition("_")
    return by_id.get(base) if task == "0" else None


def _unrecorded_by_attempt(sweep_dir: Path, queue: list[slurm.QueuedJob],
                           entries: list[dict[str, Any]]) -> dict[str, slurm.QueuedJob]:
    """Queue entries of arrays whose intent was logged but whose ids never were, by attempt (job name + index)."""
    recorded = {e["name"] for e in entries if e.get("event") == "submitted"}
    cancelled = {j for e in entries if e.get("event") == "cancelled" for j in e.get("jobs") or []}
    intents = {e["name"]: e.get("attempts") or [] for e in entries if e.get("event") == "intent"}
    out = {}
    for q in slurm.sweep_jobs(sweep_dir, queue):
        members = intents.get(q.name) if q.name not in recorded and q.job.split("_")[0] not in cancelled else None
        if members:
            _, _, task = q.job.partition("_")
            index = int(task) if task.isdigit() else 0
            if index < len(members):
                out[members[index]] = q
    return out


def _apply(r: dict[str, Any], q: slurm.QueuedJob | None) -> None:
    fs = r["file_state"]
    if q is not None and q.state in WAITING:
        waiting = f"waiting in the queue ({q.reason or q.state}), job {q.job}"
        r.update(state="queued", reason=waiting if fs is None else f"{waiting}; restarts after {fs}")
    elif q is not None and q.state in ACTIVE:
        r.update(state="running", reason=f"job {q.job} {q.state.lower()}")
    elif q is not None:
        r.update(state="queued", reason=f"job {q.job} is {q.state}")
    elif fs is None and not r["job"]:
        r.update(state="planned", reason="its array was never recorded and is not in the queue")
    elif fs is None:
        r.update(state="lost", reason=STATES["lost"])
    elif fs == _DAMAGED:
        r.update(state=_DAMAGED)
    elif fs in UNSETTLED:
        r.update(state="failed", failure=r["failure"] or "infrastructure",
                 reason=f"the job ended before the attempt finished (last: {r['reason'] or fs})")
    else:
        r.update(state=fs)


def settle_states(sweep_dir: Path, results: pd.DataFrame, id_col: str = "attempt_id") -> pd.DataFrame:
    """`results` with `state` (and `failure`, `reason`) in this vocabulary, as `hpc-mle status` says them.

    Only rows without a final state are looked up (one squeue call at most), so the report, results.csv
    and status agree: a cancelled attempt is `lost` everywhere, never `pending` in one place."""
    if results.empty or "state" not in results:
        return results
    open_ids = set(results.loc[~results["state"].isin(FINAL), id_col])
    manifest = plan.read_manifest(sweep_dir)
    if not open_ids or manifest is None:
        return results
    rows = [m for m in manifest.to_dict("records") if m["id"] in open_ids]
    table = sweep_status(sweep_dir, rows=rows).set_index("id")
    out = results.copy()
    pick = out[id_col].isin(table.index)
    for col in [c for c in ("state", "failure", "reason") if c in out]:
        out[col] = out[col].astype(object)
        out.loc[pick, col] = list(table.loc[out.loc[pick, id_col], col])
    return out


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
            | ((table["state"] == _DAMAGED) & rerun_damaged))
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
