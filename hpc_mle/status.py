"""Where a sweep stands, from the files its attempts wrote; Slurm is asked once, and only about the rest.

An attempt's own files are the truth (`hpc_mle.attempt_state`: its word, and the one vocabulary of states,
re-exported here). Only attempts that have no final word in their files are looked up, in one `squeue` call;
accounting (`sacct`) is never needed. The job of each attempt comes from `launches.jsonl` (written before
the next sbatch), else the manifest; a job is matched by its id as squeue shows it (`<array>_<i>` or a plain
`<job>`), and an array that a killed launcher never recorded is recognised by its job name.

Below hpc_mle.slurm: it reads the queue (slurm_queue) and the launch log (launch_log), never the submitter,
so the analysis job that slurm submits settles states as `hpc-mle status` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from hpc_mle import plan
from hpc_mle.attempt_state import DAMAGED, FINAL, UNSETTLED, offline_state, read_attempt
from hpc_mle.attempt_state import STATES as STATES  # re-exported: callers use status.*
from hpc_mle.attempt_state import counts as counts
from hpc_mle.attempt_state import file_state as file_state
from hpc_mle.attempt_state import summary as summary
from hpc_mle.attempt_state import to_resume as to_resume
from hpc_mle.files import read_json
from hpc_mle.launch_log import read_log, recorded_tasks, sweep_jobs
from hpc_mle.slurm_queue import QueuedJob, QueueUnavailable, queue_jobs

WAITING = ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED", "RESV_DEL_HOLD")
ACTIVE = ("RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "STOPPED")
GRADING_DIR = "grading"  # <sweep>/grading/<attempt id>.json: one attempt's grade (jobs.grade_attempt writes it)


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
    entries = read_log(sweep_dir)
    recorded = recorded_tasks(entries)
    out = [_row(m, read_attempt(m.get("path") or plan.attempt_dir(sweep_dir, m["id"])), _job_of(m, recorded))
           for m in rows]
    unrecorded = {a for e in entries if e.get("event") == "intent" for a in e.get("attempts") or []}
    unsettled = [r for r in out if (r["job"] and r["file_state"] in (None, DAMAGED, *UNSETTLED))
                 or (r["file_state"] is None and r["id"] in unrecorded and not r["job"])]
    if ask_slurm and unsettled:
        _settle(sweep_dir, unsettled, entries)
    return pd.DataFrame(out, columns=list(_row({"id": ""}, {}, None)))


def _row(m: dict[str, Any], st: dict[str, Any], job: str | None) -> dict[str, Any]:
    own = st.get("state")
    return {"id": m["id"], "competition_id": m.get("competition_id"), "scaffold": m.get("scaffold"),
            "model": m.get("model"), "seed": m.get("seed"), "hardware": m.get("hardware"), "job": job,
            "file_state": own, "state": offline_state(own, job), "failure": st.get("failure"),
            "reason": st.get("reason"), "starts": st.get("starts", 0), "agent_elapsed_s": st.get("agent_elapsed_s"),
            "damaged": bool(st.get("damaged")), "path": m.get("path")}


def _settle(sweep_dir: Path, rows: list[dict[str, Any]], entries: list[dict[str, Any]]) -> None:
    try:
        queue = queue_jobs()
    except QueueUnavailable as exc:
        for r in rows:
            r.update(state="unknown", reason=str(exc))
        return
    by_id = {q.job: q for q in queue}
    by_name = _unrecorded_by_attempt(sweep_dir, queue, entries)
    for r in rows:
        q = _match(r["job"], by_id) or by_name.get(r["id"])
        if q is None and r["file_state"] in (None, DAMAGED, *UNSETTLED):
            fresh = read_attempt(r["path"] or plan.attempt_dir(sweep_dir, r["id"]))  # it may have just ended
            r.update(file_state=fresh.get("state"), failure=fresh.get("failure"), reason=fresh.get("reason"),
                     starts=fresh.get("starts", r["starts"]), agent_elapsed_s=fresh.get("agent_elapsed_s"))
        _apply(r, q)


def _match(job: str | None, by_id: dict[str, QueuedJob]) -> QueuedJob | None:
    """By id as squeue shows it; `<job>_0` also matches a plain `<job>` (older manifests recorded that)."""
    if not job:
        return None
    if job in by_id:
        return by_id[job]
    base, _, task = job.partition("_")
    return by_id.get(base) if task == "0" else None


def _unrecorded_by_attempt(sweep_dir: Path, queue: list[QueuedJob],
                           entries: list[dict[str, Any]]) -> dict[str, QueuedJob]:
    """Queue entries of arrays whose intent was logged but whose ids never were, by attempt (job name + index)."""
    recorded = {e["name"] for e in entries if e.get("event") == "submitted"}
    cancelled = {j for e in entries if e.get("event") == "cancelled" for j in e.get("jobs") or []}
    intents = {e["name"]: e.get("attempts") or [] for e in entries if e.get("event") == "intent"}
    out = {}
    for q in sweep_jobs(sweep_dir, queue):
        members = intents.get(q.name) if q.name not in recorded and q.job.split("_")[0] not in cancelled else None
        if members:
            _, _, task = q.job.partition("_")
            index = int(task) if task.isdigit() else 0
            if index < len(members):
                out[members[index]] = q
    return out


def _apply(r: dict[str, Any], q: QueuedJob | None) -> None:
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
    elif fs == DAMAGED:
        r.update(state=DAMAGED)
    elif fs in UNSETTLED:
        r.update(state="failed", failure=r["failure"] or "infrastructure",
                 reason=f"the job ended before the attempt finished (last: {r['reason'] or fs})")
    else:
        r.update(state=fs)


def needs_grade(st: dict[str, Any] | None, record: dict[str, Any] | None) -> bool:
    """An attempt is graded once it has ended, and again when it ended again since (a resumed attempt): its
    grading record must name the state and end time its status.json has now."""
    st, record = st or {}, record or {}
    if st.get("state") not in FINAL:
        return False
    return (record.get("state"), record.get("attempt_ended_at")) != (st.get("state"), st.get("ended_at"))


def grading_record(sweep_dir: Path, attempt_id: str) -> dict[str, Any] | None:
    """grading/<id>.json, the grade of one attempt (None: not graded, or unreadable)."""
    record = read_json(Path(sweep_dir) / GRADING_DIR / f"{attempt_id}.json")
    return record if isinstance(record, dict) else None


def ungraded(sweep_dir: Path) -> list[str]:
    """The ended attempts (manifest order) whose grade is missing or older than their end."""
    manifest = plan.read_manifest(sweep_dir)
    ids = [] if manifest is None else list(manifest["id"])
    return [aid for aid in ids if needs_grade(read_json(plan.attempt_dir(sweep_dir, aid) / "status.json"),
                                              grading_record(sweep_dir, aid))]


def analysis_stale(sweep_dir: Path) -> bool:
    """Some grade is newer than the analysis (or there is none yet): the report does not show it."""
    grades = [p.stat().st_mtime for p in (Path(sweep_dir) / GRADING_DIR).glob("*.json")]
    summary_md = Path(sweep_dir) / "analysis" / "summary.md"
    return bool(grades) and (not summary_md.is_file() or summary_md.stat().st_mtime < max(grades))


GRADING_ROLES = ("grading", "analysis")  # the jobs that grade ended attempts (the analysis grades what is left)


def grading_jobs(sweep_dir: Path, queue: list[QueuedJob]) -> list[QueuedJob]:
    """This sweep's grading and analysis jobs in the queue (by the names launches.jsonl recorded for them)."""
    names = {e.get("name") for e in read_log(sweep_dir) if e.get("event") == "submitted"
             and e.get("role") in GRADING_ROLES}
    return [q for q in sweep_jobs(sweep_dir, queue) if q.name in names]


def grading_note(sweep_dir: Path) -> str | None:
    """`hpc-mle status`'s line on ended attempts not graded yet: which queued job grades them, else what to run.
    The queue is read (one squeue) only for a sweep that was submitted to Slurm and has ungraded attempts."""
    left = ungraded(sweep_dir)
    if not left:
        return None
    head = f"{len(left)} ended attempt(s) not graded yet"
    fix = f"`hpc-mle resume {sweep_dir}` grades them and redoes the analysis"
    if not read_log(sweep_dir):  # run here: a launch or resume still running grades them once its attempts end
        return f"{head}: {fix} (a launch or resume of it still running here grades them when its attempts end)"
    try:
        live = grading_jobs(sweep_dir, queue_jobs())
    except QueueUnavailable as exc:
        return f"{head}; whether a grading job is queued is unknown ({exc}); if none is, {fix}"
    if live:
        states: dict[tuple[int, str], set[str]] = {}  # (role, job) -> states of its tasks: an array once
        for q in live:
            states.setdefault((GRADING_ROLES.index(q.name.rsplit("-", 1)[-1]), q.job.split("_")[0]), set()).add(
                q.state.lower())
        jobs = ", then ".join(f"{GRADING_ROLES[i]} job {job} ({', '.join(sorted(states[i, job]))})"
                              for i, job in sorted(states)[:4])
        return f"{head}: this sweep's {jobs} grade them"
    return f"{head} and no grading job of this sweep is queued: {fix} (on Slurm it submits one, then the analysis)"


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

