"""What each job of a sweep runs, on a compute node or here: an attempt, a grading slice, the analysis.

These are plain functions of (sweep folder, index) so submitit pickles almost nothing and a task can
be re-run by hand: `python -c "from hpc_mle import jobs; jobs.agent_task('runs/x', '<id>')"`.
Every outcome is written to files under the sweep folder; return values are only a convenience.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hpc_mle import grading, plan, runner
from hpc_mle.files import atomic_write_json, is_disk_full
from hpc_mle.llm import serve

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
        model_config=cfg["model"],
        gpus=None if cfg["hardware"]["gpus"] else (),
    )


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
    return dataclasses.replace(cfg, model_config={**model, "base_url": base_url, "api_key_env": None})


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
    """Run (or continue) one attempt, never raising: problems end in status.json."""
    sweep_dir = Path(sweep_dir)
    out = plan.attempt_dir(sweep_dir, attempt_id)
    previous = runner.read_status(out) or {}
    if previous.get("state") in RETRYABLE and int(previous.get("starts", 0)) > max_restarts:
        return _mark_failed(out, f"gave up after {previous['starts']} starts (max_restarts={max_restarts}); "
                                 f"last: {previous.get('reason') or previous.get('state')}")
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
    left = status.get("time_limit_s", 0) - status.get("agent_elapsed_s", 0)
    warned = status.get("state") == "preempted" and "SIGUSR2" in (status.get("reason") or "")
    if warned and left > 1 and status.get("starts", 1) <= max_restarts and _requeue_self():
        status.update(state="requeued", reason=f"requeued by the attempt with {left:.0f} s of budget left")
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
    status = runner.read_status(out) or {"state": "pending"}
    try:
        report = grading.grade_submission(out / "submission" / "submission.csv", a["competition_id"], data_dir)
    except (KeyError, grading.NotPrepared) as exc:
        report = grading.setup_failure_report(a["competition_id"], out / "submission" / "submission.csv", str(exc))
    snapshots = []
    for snap in sorted((out / "snapshots").glob("*.csv"), key=lambda p: int(p.stem)):
        try:
            r = grading.grade_submission(snap, a["competition_id"], data_dir)
            snapshots.append({"elapsed_s": int(snap.stem), "score": r.score, "valid": r.valid_submission,
                              "any_medal": r.any_medal, "gold": r.gold_medal, "silver": r.silver_medal,
                              "bronze": r.bronze_medal, "above_median": r.above_median})
        except (KeyError, grading.NotPrepared):
            break
    record = {"attempt_id": attempt_id, **{k: a[k] for k in ("competition_id", "scaffold", "model", "seed",
                                                             "runtime", "hardware", "benchmark", "spec_version")},
              "state": status.get("state"), "failure": status.get("failure"), "unsandboxed": status.get("unsandboxed"),
              "agent_elapsed_s": status.get("agent_elapsed_s"), "starts": status.get("starts"),
              "report": report.to_dict(), "snapshots": snapshots, "graded_at": _now()}
    atomic_write_json(sweep_dir / "grading" / f"{attempt_id}.json", record)
    return record


def grade_task(sweep_dir: str | Path, index: int = 0, count: int = 1) -> int:
    """Grade every `count`-th attempt starting at `index` (one task of the grading array)."""
    sweep_dir = Path(sweep_dir)
    ids = _attempt_ids(sweep_dir)[index::count]
    for aid in ids:
        grade_attempt(sweep_dir, aid)
    return len(ids)


def analysis_task(sweep_dir: str | Path) -> dict[str, Any]:
    """Tables and the MLE-bench run-group report from the grading files."""
    from hpc_mle import analysis

    sweep_dir = Path(sweep_dir)
    missing = [aid for aid in _attempt_ids(sweep_dir) if not (sweep_dir / "grading" / f"{aid}.json").is_file()]
    for aid in missing:  # a grading task that died: grade here rather than report holes
        grade_attempt(sweep_dir, aid)
    result = analysis.analyse_sweep(sweep_dir)
    previous = (plan.read_sweep(sweep_dir) or {}).get("compare_with")
    if previous and Path(previous, "analysis", "results.csv").is_file():
        from hpc_mle import nightly

        result["comparison"] = str(nightly.write_comparison(sweep_dir, Path(previous)))
    return result
