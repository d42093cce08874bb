"""What each job of a sweep runs, on a compute node or here: an attempt, a grading slice, the analysis.

These are plain functions of (sweep folder, index) so submitit pickles almost nothing and a task can
be re-run by hand: `python -c "from hpc_mle import jobs; jobs.agent_task('runs/x', '<id>')"`.
Every outcome is written to files under the sweep folder; return values are only a convenience.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hpc_mle import containers, grading, plan, runner
from hpc_mle import status as status_  # `status` names status.json dicts here
from hpc_mle.files import atomic_write_json, atomic_write_text, is_disk_full
from hpc_mle.llm import serve

PARTIAL = "PARTIAL"  # analysis/PARTIAL: the attempts an analysis left out, while it is partial
RETRYABLE = ("preempted", "requeued", "running")  # running = the last start died without a word (node failure)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def attempt_config(sweep_dir: Path, attempt_id: str) -> runner.AttemptConfig:
    a = plan.planned(sweep_dir, attempt_id)
    cfg = a["config"]
    sandbox = cfg["sandbox"]
    return runner.AttemptConfig(
        competition_id=a["competition_id"], scaffold=cfg["scaffold"]["name"], out=plan.attempt_dir(sweep_dir, attempt_id),
        sandbox=sandbox["kind"], time_limit_s=a["time_limit_s"], data_dir=cfg.get("data_dir"),
        image=sandbox.get("image") or cfg["scaffold"].get("image"), network=bool(sandbox.get("network")),
        hardware=cfg["hardware"].get("label"), snapshot_interval_s=a["snapshot_interval_s"],
        model=cfg["model"]["name"], seed=a["seed"], scaffold_config=cfg["scaffold"],
        obfuscate=(cfg["benchmark"].get("description") or "original") == "obfuscated",
        model_config=cfg["model"],
        image_digest=containers.recorded_digest(sweep_dir, sandbox.get("image") or cfg["scaffold"].get("image")),
        **_cluster_timing(cfg.get("cluster") or {}),
        gpus=None if cfg["hardware"]["gpus"] else (),
        **_limits(sandbox.get("limits") or {}),
    )


# conf/sandbox `limits` (config.LimitsConf) -> AttemptConfig; a plan written before limits existed keeps the defaults.
_LIMIT_FIELDS = {"disk_gb": "disk_quota_gb", "file_size_gb": "max_file_size_gb", "processes": "max_processes",
                 "open_files": "max_open_files", "memory_gb": "memory_gb", "agent_uid": "agent_uid",
                 "files": "max_files", "shm_gb": "shm_gb"}


def _cluster_timing(cluster: dict[str, Any]) -> dict[str, Any]:
    """The cluster's status interval and stop bound; a plan written before they existed keeps the defaults."""
    return {k: float(cluster[k]) for k in ("status_interval_s", "stop_bound_s") if cluster.get(k) is not None}


def _limits(limits: dict[str, Any]) -> dict[str, Any]:
    return {field: limits[key] for key, field in _LIMIT_FIELDS.items() if key in limits}


def with_model_server(sweep_dir: Path, cfg: runner.AttemptConfig) -> runner.AttemptConfig:
    """Wait for the sweep's server of this model (not on the agent's clock) and point the model at it."""
    model = cfg.model_config or {}
    timeout = plan.duration_s(model["serve_conf"]["wait"])
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    events = runner.Events(Path(cfg.out) / "events.jsonl")
    events("model-server-wait", model=model["name"], timeout_s=timeout)
    t0 = time.monotonic()
    try:
        address = serve.wait_for_server(sweep_dir, model["name"], timeout)
    except serve.ServeError as exc:
        events("model-server-unavailable", reason=str(exc))
        raise
    base_url = address["base_url"]
    events("model-server-ready", base_url=base_url, server_job=address.get("job_id"),
           waited_s=round(time.monotonic() - t0, 1))
    # The proxy (outside the sandbox) reads the key file and follows address.json if the server moves.
    folder = serve.serve_dir(sweep_dir, model["name"])
    return dataclasses.replace(cfg, model_config={**model, "base_url": base_url, "api_key_env": None,
                                                  "api_key_file": str(serve.key_path(sweep_dir, model["name"])),
                                                  "address_file": str(folder / serve.ADDRESS)})


def _mark_failed(out: Path, reason: str, failure: str = "infrastructure", **extra: Any) -> dict[str, Any]:
    """Record a failure the attempt itself could not write (set-up errors, a full disk, a server that never came)."""
    status = runner.read_status(out) or {}
    status.update(state="failed", failure=failure, reason=reason, ended_at=_now(), **extra)
    runner.write_status(out, status)
    return status


def _requeue_self() -> bool:
    """Put this Slurm task back in the queue; it restarts with the budget it has left."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    target = f"{job}_{task}" if job and task else os.environ.get("SLURM_JOB_ID")
    if not target:
        return False
    return subprocess.run(["scontrol", "requeue", target], capture_output=True).returncode == 0


def agent_task(sweep_dir: str | Path, attempt_id: str, max_restarts: int = 3) -> dict[str, Any]:
    """Run (or continue) one attempt, never raising: problems end in status.json. The last attempt to end after
    a partial analysis (the grading array was cancelled) analyses the sweep again."""
    status = _agent(Path(sweep_dir), attempt_id, max_restarts)
    if status.get("state") in runner.TERMINAL:
        reanalyse_if_complete(Path(sweep_dir), attempt_id)
    return status


OUT_OF_RESTARTS = "out_of_restarts"  # status.json: no requeue is left; only a new submission runs it again
MIN_SEGMENT_S = 10.0  # budget left at Slurm's warning below which no new segment starts: the attempt ends there


def _restarts(status: dict[str, Any]) -> int:
    """Starts counted against max_restarts: those since the last `hpc-mle resume` of an attempt out of them."""
    return int(status.get("starts", 0)) - int(status.get("restart_base") or 0)


def _resumed(out: Path, previous: dict[str, Any]) -> dict[str, Any]:
    """An attempt that ran out of restarts is run again only by a new submission (`hpc-mle resume`): its restarts
    count anew from here (the runner carries restart_base), else it would give up before it starts."""
    if not previous.get(OUT_OF_RESTARTS) or previous.get("state") not in RETRYABLE:
        return previous
    resumed = {k: v for k, v in previous.items() if k != OUT_OF_RESTARTS}
    resumed["restart_base"] = int(previous.get("starts", 0))
    runner.write_status(out, resumed)
    return resumed


def _agent(sweep_dir: Path, attempt_id: str, max_restarts: int) -> dict[str, Any]:
    out = plan.attempt_dir(sweep_dir, attempt_id)
    previous = _resumed(out, runner.read_status(out) or {})
    if previous.get("state") in RETRYABLE and _restarts(previous) > max_restarts:
        return _mark_failed(out, f"gave up after {previous['starts']} starts (max_restarts={max_restarts}); "
                                 f"last: {previous.get('reason') or previous.get('state')}; `hpc-mle resume "
                                 f"{sweep_dir}` runs it again with the budget left", **{OUT_OF_RESTARTS: True})
    try:
        cfg = attempt_config(sweep_dir, attempt_id)
        if serve.is_served(cfg.model_config) and previous.get("state") not in runner.TERMINAL:
            cfg = with_model_server(sweep_dir, cfg)
        status = runner.run_attempt(cfg)
    except serve.ServeError as exc:  # the server never answered: an infrastructure failure, resumable
        return _mark_failed(out, str(exc))
    except Exception as exc:  # set-up problems (data not prepared, bad image, unknown scaffold), a full disk
        reason = runner.harness_reason(exc, out) if is_disk_full(exc) else f"{type(exc).__name__}: {exc}"
        return _mark_failed(out, reason, traceback=traceback.format_exc(limit=5))
    warned = status.get("state") == "preempted" and "SIGUSR2" in (status.get("reason") or "")
    return _after_warning(sweep_dir, out, status, max_restarts) if warned else status


def _after_warning(sweep_dir: Path, out: Path, status: dict[str, Any], max_restarts: int) -> dict[str, Any]:
    """Slurm's warning ended this segment: the next one, or the truthful end when no segment is worth starting
    (the budget is spent) or allowed (the restarts ran out)."""
    left = float(status.get("time_limit_s", 0)) - float(status.get("agent_elapsed_s", 0))
    if left < MIN_SEGMENT_S:
        return _end_at_warning(out, status, left)
    if _restarts(status) > max_restarts:
        return _out_of_restarts(sweep_dir, out, status, left, max_restarts)
    return _next_segment(out, status, left)


def _end_at_warning(out: Path, status: dict[str, Any], left: float) -> dict[str, Any]:
    """Too little budget left for a new segment (each costs a requeue, Slurm's hold and a start-up): the attempt
    ends as a timeout and its submission is graded now, not left preempted until someone resumes it."""
    reason = (f"time budget spent: {max(left, 0):.1f} s of {float(status.get('time_limit_s', 0)):g} s were left at "
              f"Slurm's warning (SIGUSR2), too little for another segment (< {MIN_SEGMENT_S:g} s)")
    ended = {**status, "state": "timeout", "reason": reason, "failure": None, "ended_at": _now()}
    runner.write_status(out, ended)
    runner.Events(out / "events.jsonl")("end", state="timeout", exit_code=ended.get("exit_code"), reason=reason,
                                        failure=None, agent_elapsed_s=ended.get("agent_elapsed_s"))
    Path(out, runner.RESERVE).unlink(missing_ok=True)  # as the runner does for every final state
    return ended


def _out_of_restarts(sweep_dir: Path, out: Path, status: dict[str, Any], left: float, max_restarts: int
                     ) -> dict[str, Any]:
    """Budget left but no restart: not requeued. The reason says so and what continues it; `hpc-mle status`
    shows it once the job has gone (failed, infrastructure, with this reason), and resume picks it up."""
    reason = (f"stopped by SIGUSR2 (Slurm's warning) with {left:.0f} s of budget left, but no restart is left "
              f"({status.get('starts')} starts, max_restarts={max_restarts}): not requeued; `hpc-mle resume "
              f"{sweep_dir}` continues it with the budget left")
    stopped = {**status, "reason": reason, OUT_OF_RESTARTS: True}
    runner.write_status(out, stopped)
    return stopped


def _next_segment(out: Path, status: dict[str, Any], left: float) -> dict[str, Any]:
    """SIGUSR2 comes signal_delay_s before --time: requeue this task so the attempt goes on in a new segment
    (slurm.time_plan). The new segment is recorded before the requeue: Slurm signals every process of the job
    as it requeues it (KILL after KillWait), so a write after `scontrol requeue` could be lost."""
    requeued = {**status, "state": "requeued", "reason": f"requeued by the attempt with {left:.0f} s of budget left",
                "segments": int(status.get("segments") or 1) + 1}
    runner.write_status(out, requeued)
    if _requeue_self():
        return requeued
    if os.environ.get("SLURM_JOB_ID"):  # Slurm refused the requeue: say what brings it back
        status = {**status, "reason": f"stopped by SIGUSR2; {runner.requeue_hint(out)}"}
    runner.write_status(out, status)
    return status


def _attempt_ids(sweep_dir: Path) -> list[str]:
    manifest = plan.read_manifest(sweep_dir)
    return [] if manifest is None else list(manifest["id"])


def grade_attempt(sweep_dir: Path, attempt_id: str) -> dict[str, Any]:
    """Grade the final submission and every snapshot of one attempt into grading/<id>.json."""
    a = plan.planned(sweep_dir, attempt_id)
    out = plan.attempt_dir(sweep_dir, attempt_id)
    data_dir = a["config"].get("data_dir")
    mode = (a["config"].get("grading") or {}).get("mode", "v1")
    status = runner.read_status(out) or {"state": "pending"}
    try:
        report = grading.grade_submission(out / "submission" / "submission.csv", a["competition_id"], data_dir, mode)
    except (KeyError, grading.NotPrepared) as exc:
        report = grading.setup_failure_report(a["competition_id"], out / "submission" / "submission.csv", str(exc))
    snapshots = []
    for snap in sorted((out / "snapshots").glob("*.csv"), key=lambda p: int(p.stem)):
        try:
            r = grading.grade_submission(snap, a["competition_id"], data_dir, mode)
            snapshots.append({"elapsed_s": int(snap.stem), "score": r.score, "valid": r.valid_submission,
                              "any_medal": r.any_medal, "gold": r.gold_medal, "silver": r.silver_medal,
                              "bronze": r.bronze_medal, "above_median": r.above_median})
        except (KeyError, grading.NotPrepared):
            break
    record = {"attempt_id": attempt_id, **{k: a[k] for k in ("competition_id", "scaffold", "model", "seed",
                                                             "runtime", "hardware", "benchmark", "spec_version")},
              "state": status.get("state"), "failure": status.get("failure"), "unsandboxed": status.get("unsandboxed"),
              "network": status.get("network"),
              "agent_elapsed_s": status.get("agent_elapsed_s"), "starts": status.get("starts"),
              "segments": status.get("segments") or 1,
              "attempt_ended_at": status.get("ended_at"),
              "report": report.to_dict(), "snapshots": snapshots, "graded_at": _now()}
    atomic_write_json(sweep_dir / status_.GRADING_DIR / f"{attempt_id}.json", record)
    return record


def needs_grading(sweep_dir: Path, attempt_id: str) -> bool:
    """Whether this attempt has ended and has no grade of that end (`status.needs_grade`)."""
    return status_.needs_grade(runner.read_status(plan.attempt_dir(sweep_dir, attempt_id)),
                               status_.grading_record(sweep_dir, attempt_id))


def grade_task(sweep_dir: str | Path, index: int = 0, count: int = 1) -> int:
    """Grade every `count`-th attempt starting at `index` (one task of the grading array) that has ended and is
    not graded yet; return how many were graded. Slurm's warning (SIGUSR2, a job capped at a short partition's
    MaxTime) or a TERM stops it between two attempts, never inside one (`_grade_until_stopped`)."""
    sweep_dir = Path(sweep_dir)
    ids = [aid for aid in _attempt_ids(sweep_dir)[index::count] if needs_grading(sweep_dir, aid)]
    graded, _ = _grade_until_stopped(sweep_dir, ids, "the sweep's analysis job grades them, or by hand: python -c "
                                     f"\"from hpc_mle import jobs; jobs.grade_task('{sweep_dir}')\"")
    return graded


STOP_SIGNALS = (signal.SIGUSR2, signal.SIGTERM)


def _grade_until_stopped(sweep_dir: Path, ids: list[str], otherwise: str, may_requeue: bool = True
                         ) -> tuple[int, bool]:
    """Grade `ids` in turn; return how many were graded and whether this job requeued itself. At Slurm's warning
    or a TERM the attempt in hand is finished and no other begun (submitit's own handler would raise in the middle
    of it); at the warning, after some progress, the job requeues itself and its next start grades the rest
    (`otherwise` says who grades them when it does not, or may not: `may_requeue`); a TERM is then raised again
    for the process's own handler (submitit's, or the default: exit)."""
    graded = 0
    with _stop_signals() as stop:
        for aid in ids:
            if stop:
                break
            grade_attempt(sweep_dir, aid)
            graded += 1
    requeued = bool(stop) and graded < len(ids) and _grading_cut(stop[0], graded, len(ids), otherwise, may_requeue)
    if "SIGTERM" in stop:  # now that no grading is half done, the TERM does what it would have done
        signal.raise_signal(signal.SIGTERM)
    return graded, requeued


@contextlib.contextmanager
def _stop_signals():
    """While grading, Slurm's warning or a TERM is only noted (the list yielded). Signals reach the main thread
    only, so elsewhere nothing is caught."""
    stop: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    old = {s: signal.signal(s, lambda signum, _frame: stop.append(signal.Signals(signum).name)) for s in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _grading_cut(why: str, graded: int, total: int, otherwise: str, may_requeue: bool) -> bool:
    """A grading job stopped before its last attempt: at Slurm's warning, after some progress, it requeues itself
    (without progress a requeue could repeat forever); say what happens to the rest. Returns whether it requeued."""
    requeued = may_requeue and why == "SIGUSR2" and graded > 0 and _requeue_self()
    then = "requeued: its next start grades them" if requeued else otherwise
    print(f"hpc-mle: grading stopped by {why} after {graded} of {total} attempt(s); {total - graded} left ungraded, "
          f"{then}", file=sys.stderr, flush=True)
    return requeued


def outstanding(sweep_dir: Path) -> list[dict[str, Any]]:
    """Attempts whose own status does not say they ended (queued, never started, running, requeued): the
    analysis leaves them out rather than publish them as failures."""
    manifest = plan.read_manifest(sweep_dir)
    rows = [] if manifest is None else manifest[["id", "competition_id"]].to_dict("records")
    left = []
    for row in rows:
        status = runner.read_status(plan.attempt_dir(sweep_dir, row["id"])) or {}
        state = status.get("state") or "not started"
        if state not in runner.TERMINAL:
            left.append({"attempt_id": row["id"], "competition_id": row["competition_id"], "state": state,
                         "why": f"{state} when the analysis ran: not ended, so not graded"})
    return left


@contextlib.contextmanager
def _analysis_lock(sweep_dir: Path):
    """One analysis of a sweep at a time (the analysis job, and the last attempt to end after a partial one)."""
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(sweep_dir) / ".analysis.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _mark_partial(sweep_dir: Path, left: list[dict[str, Any]], result: dict[str, Any]) -> None:
    """analysis/PARTIAL lists the attempts left out; summary.md says so first. A complete analysis removes both."""
    marker = sweep_dir / "analysis" / PARTIAL
    if not left:
        marker.unlink(missing_ok=True)
        return
    atomic_write_json(marker, {"partial": True, "written_at": _now(), "left_out": left})
    lines = [f"**Partial analysis**: {len(left)} attempt(s) had not ended and are left out (listed in "
             f"analysis/{PARTIAL}). It is redone when the last of them ends; if one was lost, `hpc-mle resume "
             f"{sweep_dir}` runs it again.", ""]
    lines += [f"- {r['attempt_id']} ({r['competition_id']}): {r['state']}" for r in left[:20]]
    lines += [f"- ... and {len(left) - 20} more"] if len(left) > 20 else []
    summary = Path(result["summary"])
    atomic_write_text(summary, "\n".join(lines) + "\n\n" + summary.read_text(encoding="utf-8"))
    result.update(partial=True, left_out=[r["attempt_id"] for r in left])


def analysis_task(sweep_dir: str | Path) -> dict[str, Any]:
    """Tables and the MLE-bench run-group report from the grading files, over the attempts that have ended.

    Attempts still queued or running (the grading array was cancelled, so this job ran early) are left out and
    the analysis is marked partial; the last of them to end runs the analysis again (`reanalyse_if_complete`).
    Cut by Slurm's warning while it grades what the grading array left, it requeues itself as a grading task does
    (nothing depends on it), or, when it cannot, reports what is graded and counts the rest as ungraded."""
    sweep_dir = Path(sweep_dir)
    with _analysis_lock(sweep_dir):
        return _analyse(sweep_dir, may_requeue=True)


def _analyse(sweep_dir: Path, may_requeue: bool = False) -> dict[str, Any]:
    """`analysis_task`'s work, for a caller that holds the sweep's analysis lock: grade what is left, audit the
    ended attempts (`analysis.audit`; it never raises), then the report, which shows the audit. `may_requeue`:
    this is the sweep's analysis job (another caller, an agent's job, must never requeue its own task)."""
    left = outstanding(sweep_dir)
    todo = [aid for aid in _attempt_ids(sweep_dir) if needs_grading(sweep_dir, aid)]  # a grading task that died
    otherwise = f"the report counts them as ungraded; `hpc-mle resume {sweep_dir}` grades them"
    graded, requeued = _grade_until_stopped(sweep_dir, todo, otherwise, may_requeue)
    if requeued:
        return {"requeued": True, "graded": graded, "ungraded": len(todo) - graded}
    with _stop_signals() as late:  # a warning now: the report is finished within its notice (nothing follows it)
        result = _report(sweep_dir, left)
    if "SIGTERM" in late:
        signal.raise_signal(signal.SIGTERM)
    return result


def _report(sweep_dir: Path, left: list[dict[str, Any]]) -> dict[str, Any]:
    """The audit and the report over the ended attempts (`left`: those that had not), marked partial if any."""
    from hpc_mle import analysis, audit, report

    exclude = {r["attempt_id"] for r in left}
    result = report.analyse_sweep(sweep_dir, exclude=exclude, audit=audit.run_step(sweep_dir, exclude))
    _mark_partial(sweep_dir, left, result)
    previous = (plan.read_sweep(sweep_dir) or {}).get("compare_with")
    if not left and previous and Path(previous, "analysis", "results.csv").is_file():
        result["comparison"] = str(analysis.write_comparison(sweep_dir, Path(previous)))
    return result


def reanalyse_if_complete(sweep_dir: Path, attempt_id: str) -> bool:
    """After an attempt ends: if the published analysis is partial, grade this attempt and, when no attempt is
    left outstanding, analyse the sweep again. Returns whether it did; never raises (the attempt's state stands)."""
    sweep_dir = Path(sweep_dir)
    try:
        with _analysis_lock(sweep_dir):  # checked under the lock: an analysis running now already sees this end
            if not (sweep_dir / "analysis" / PARTIAL).is_file():
                return False
            if needs_grading(sweep_dir, attempt_id):
                grade_attempt(sweep_dir, attempt_id)
            if outstanding(sweep_dir):
                return False
            _analyse(sweep_dir)
            return True
    except Exception as exc:  # noqa: BLE001 -- reported with the command that redoes it
        print(f"hpc-mle: re-analysis of {sweep_dir} failed ({type(exc).__name__}: {exc}); analysis/{PARTIAL} "
              f"stays. Redo it: python -c \"from hpc_mle import jobs; jobs.analysis_task('{sweep_dir}')\"",
              file=sys.stderr, flush=True)
        return False
