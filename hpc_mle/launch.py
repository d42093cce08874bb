"""`python -m hpc_mle.launch [-m] [overrides] [--dry-run] [--cfg job]`: plan a study and run or submit it.

Hydra's grammar and composition (conf/, site config dirs, the typed schema of hpc_mle/config.py; the
command line in hpc_mle/launch_args.py); our own expansion
so the whole sweep is seen at once: sweep x competitions -> attempts -> one array per resource
group -> grading -> analysis. With `cluster=local` it runs everything here (a bounded number at
once), waits, grades, analyses and prints the table. With a Slurm cluster it submits and returns.
Relaunching the same command submits only what is not done or queued.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from hpc_mle import (
    competitions,
    containers,
    jobs,
    launch_args,
    plan,
    preflight,
    prepare,
    runner,
    slurm,
    status,
)
from hpc_mle.config import ConfigError
from hpc_mle.files import disk_full_message, is_disk_full
from hpc_mle.llm import serve
from hpc_mle.plan import Attempt, PlanError

OUTPUT_FULL_FIX = "free space there, or write the sweep elsewhere with output_root=DIR"
PREFLIGHT_FAILED = 2  # the exit status of a dry run whose preflight found problems (as a refused launch)


def planned_rows(sweep_dir: Path, attempts: list[Attempt]) -> list[dict]:
    """The planned attempts as status rows, with the job columns of the manifest where it has them."""
    manifest = plan.read_manifest(sweep_dir)
    known = {} if manifest is None else {m["id"]: m for m in manifest.to_dict("records")}
    return [{**asdict(a), **known.get(a.id, {}), "path": str(plan.attempt_dir(sweep_dir, a.id))} for a in attempts]


def pending_attempts(sweep_dir: Path, attempts: list[Attempt], retry_agent_failures: bool,
                     rerun_damaged: bool = False) -> tuple[list[Attempt], pd.DataFrame]:
    """Attempts still to run (never one queued, running, unknown or finished), and the sweep's state table.

    The attempts' own files are the truth, so a deleted manifest.csv reruns nothing that is done."""
    table = status.sweep_status(sweep_dir, rows=planned_rows(sweep_dir, attempts))
    pick = set(status.to_resume(table, retry_agent_failures, rerun_damaged)["id"])
    return [a for a in attempts if a.id in pick], table


def refuse_unknown(table: pd.DataFrame) -> None:
    """Submitting while Slurm cannot say what is queued could queue an attempt twice: stop instead."""
    unknown = table[table["state"] == "unknown"]
    if len(unknown):
        raise PlanError(f"{len(unknown)} attempt(s) are in state unknown, so nothing was submitted: "
                        f"{unknown['reason'].iloc[0]}")


def reconcile(sweep_dir: Path, cluster: DictConfig) -> slurm.Reconciled | None:
    """Before a Slurm submission: cancel what a killed launch submitted but never recorded (slurm.reconcile)."""
    if cluster.kind != "slurm" or not slurm.read_log(sweep_dir):
        return None
    try:
        done = slurm.reconcile(sweep_dir, slurm.queue_jobs())
    except slurm.QueueUnavailable as exc:
        raise PlanError(f"nothing was submitted: {exc}") from None
    if done.cancelled:
        print(f"cancelled job(s) {' '.join(done.cancelled)}: submitted by a launch that was killed before "
              "recording them (their attempts are submitted again)", flush=True)
    return done


def submit_todo(sweep_dir: Path, todo: list[Attempt], cluster: DictConfig,
                reconciled: slurm.Reconciled | None) -> slurm.Submission | None:
    """Submit the attempts, plus grading and analysis; these also when a killed launch left none, and alone when
    ended attempts are ungraded or the analysis predates a grade and no grading job of the sweep is queued."""
    unfinished = reconciled.unfinished if reconciled else []
    if todo or unfinished:
        after = list(reconciled.live_agents) if reconciled and unfinished else None
    elif _grading_wanted(sweep_dir):  # grading and analysis alone (after agents still running, if any)
        after = list(reconciled.live_agents) if reconciled else []
    else:
        return None
    submission = slurm.submit(sweep_dir, todo, cluster, after=after)
    slurm.record_launch(sweep_dir, submission)
    slurm.finish_launches(sweep_dir, unfinished, by=submission.launch)
    return submission


def tail_needed(sweep_dir: Path) -> bool:
    """Grading and analysis have work with no attempt to run: ended attempts not graded (a grading job cut, lost
    or cancelled), or grades newer than the analysis."""
    return bool(status.ungraded(sweep_dir)) or status.analysis_stale(sweep_dir)


def _grading_wanted(sweep_dir: Path) -> bool:
    """`tail_needed`, and no grading or analysis job of this sweep queued to do it (one squeue)."""
    if not tail_needed(sweep_dir):
        return False
    try:
        return not status.grading_jobs(sweep_dir, slurm.queue_jobs())
    except slurm.QueueUnavailable as exc:
        raise PlanError(f"ended attempts wait for grading, but whether a grading job is queued is unknown, so none "
                        f"was submitted: {exc}") from None


def ensure_prepared(attempts: list[Attempt], data_dir) -> None:
    """The embedded mini competitions are prepared on the fly. The others were verified by the preflight just
    before (a second checksum pass over a whole benchmark's data would double the launch's wait)."""
    reg = competitions.registry()
    minis = sorted({a.competition_id for a in attempts if reg[a.competition_id].split == "mini"})
    for cid in [c for c in minis if not prepare.is_prepared(c, data_dir)]:
        print(f"preparing {cid} (embedded data) ...", flush=True)
        try:
            prepare.prepare(cid, data_dir)
        except prepare.PrepareError as exc:  # a full data directory: one line naming it and the fix
            raise PlanError(str(exc)) from None


def mark_for_retry(sweep_dir: Path, attempts: list[Attempt]) -> None:
    """A failed attempt that runs again continues with the budget it has left."""
    from hpc_mle.files import atomic_write_json

    for a in attempts:
        out = plan.attempt_dir(sweep_dir, a.id)
        st = runner.read_status(out)
        if st and st.get("state") not in (None, "requeued", "preempted", "running"):
            st.update(state="requeued", reason=f"relaunched (was {st.get('state')}: {st.get('reason')})")
            atomic_write_json(out / "status.json", st)


def check_models(cfgs: list[DictConfig]) -> dict[str, dict]:
    """Refuse model configs that cannot work (a field left for the user); return the served models by name."""
    needs = {"openai": ("model", "base_url", "api_key_env"), "anthropic": ("model", "base_url", "api_key_env"),
             "openai-compatible": ("model", "base_url"), "vllm": ("model",), "none": ()}
    for cfg in cfgs:
        m = cfg.model
        if m.provider not in needs:
            raise PlanError(f"model {m.name}: provider={m.provider!r}; use one of {', '.join(needs)}")
        missing = [f"model.{k}" for k in needs[m.provider] if not m.get(k)]
        if missing:
            raise PlanError(f"model {m.name}: {', '.join(missing)} must be set (conf/model/{m.name}.yaml). Fix: "
                            "e.g. model.base_url=https://host/v1 model.model=NAME model.api_key_env=VARIABLE_WITH_KEY")
        if m.serve not in (None, "vllm") or (m.serve == "vllm") != (m.provider == "vllm"):
            raise PlanError(f"model {m.name}: serve={m.serve!r} with provider={m.provider!r}; a served model has "
                            "serve: vllm and provider: vllm, any other serve: null")
    try:
        return serve.served_models(OmegaConf.to_container(c.model, resolve=True) for c in cfgs)
    except serve.ServeError as exc:
        raise PlanError(str(exc)) from None


def describe_servers(served: dict[str, dict], cluster: DictConfig) -> list[str]:
    lines = []
    for name, model in served.items():
        where = "a Slurm job" if cluster.kind == "slurm" else "a subprocess here"
        lines.append(f"  model server {name}: {where}; attempts wait up to {model['serve_conf']['wait']} for it")
        lines.append(f"    command: {' '.join(serve.server_command(model, model['serve_conf']['port']))}")
        if cluster.kind == "slurm":
            lines.append("    then a teardown job (afterany on the agent arrays) cancels it")
    return lines


def describe(sweep_dir: Path, attempts: list[Attempt], todo: list[Attempt], cluster: DictConfig,
             served: dict[str, dict] | None = None) -> str:
    lines = [f"sweep: {sweep_dir}", f"attempts: {len(attempts)} planned, {len(todo)} to run"]
    if todo and served:
        lines += describe_servers({n: m for n, m in served.items() if n in {a.model for a in todo}}, cluster)
    for group, members in slurm.group_attempts(todo).items():
        comps = len({a.competition_id for a in members})
        lines.append(f"  group {group}: {len(members)} attempts ({comps} competitions)")
    if cluster.kind == "slurm" and todo:
        lines.append(f"  then a grading array ({min(cluster.grading_tasks, len(todo))} tasks, afterany) "
                     "and an analysis job (afterany)")
    return "\n".join(lines)


def run_local(sweep_dir: Path, todo: list[Attempt], max_parallel: int, max_restarts: int) -> None:
    """Run the attempts here; a served model's server runs as a subprocess for as long as they do.

    (Starting it here rather than refusing: a GPU workstation can serve a model, and the attempts
    then wait on it exactly as they do on a cluster.)"""
    servers = {name: serve.start_local(sweep_dir, name)
               for name in serve.sweep_models(sweep_dir, [a.config_id for a in todo])}
    try:
        _run_attempts_here(sweep_dir, todo, max_parallel, max_restarts)
    finally:
        for name, proc in servers.items():
            serve.stop_local(proc, name, sweep_dir)


def cpu_slices(cpus: list[int], workers: int) -> list[list[int]]:
    """Disjoint CPU sets, one per local worker, the way Slurm gives each job its own CPUs.

    Without them every parallel attempt sizes its math libraries' thread pools for the whole machine;
    OpenMP's spinning threads then fight over the cores and an attempt can run tens of times slower.
    With fewer CPUs than workers, workers share single CPUs round-robin."""
    if workers <= 1:
        return [list(cpus)]
    if len(cpus) < workers:
        return [[cpus[i % len(cpus)]] for i in range(workers)]
    size = len(cpus) // workers
    return [cpus[i * size:(i + 1) * size] for i in range(workers)]


def _pin_worker(slots) -> None:
    """Pool initializer: take one CPU set and keep to it (the attempts and their agents inherit it)."""
    os.sched_setaffinity(0, slots.get())


def _run_attempts_here(sweep_dir: Path, todo: list[Attempt], max_parallel: int, max_restarts: int) -> None:
    started = time.monotonic()
    workers = max(1, max_parallel)
    slots = multiprocessing.get_context().Queue()
    for cpus in cpu_slices(sorted(os.sched_getaffinity(0)), workers):
        slots.put(cpus)
    with ProcessPoolExecutor(max_workers=workers, initializer=_pin_worker, initargs=(slots,)) as pool:
        futures = {pool.submit(jobs.agent_task, str(sweep_dir), a.id, max_restarts): a for a in todo}
        for n, future in enumerate(as_completed(futures), 1):
            a = futures[future]
            st = future.result()
            print(f"[{n}/{len(todo)}] {a.competition_id} {a.scaffold}/{a.model} seed {a.seed}: {st.get('state')}"
                  f"{' (' + st['reason'] + ')' if st.get('reason') else ''} in {st.get('agent_elapsed_s', 0):.1f} s",
                  flush=True)
    print(f"ran {len(todo)} attempt(s) in {time.monotonic() - started:.0f} s", flush=True)


def refuse_if_failed(report: preflight.Report) -> None:
    """A real launch runs the dry run's checks first: on any problem it stops before writing or submitting."""
    if not report.ok:
        print(report.text(), flush=True)
        raise PlanError(f"preflight refused the launch ({len(report.problems)} problem(s), each with its fix, "
                        "listed above): nothing was written or submitted. See everything with --dry-run")
    if any(s.title == "jobs" for s in report.sections):  # a Slurm launch: what is submitted, exactly
        print(report.text(only=("site", "jobs")), flush=True)
    for w in report.warnings:
        print(f"warning: {w.what}\n    fix: {w.fix}", flush=True)


def sweep_images(cfgs: list[DictConfig]) -> set[Path]:
    """The Apptainer images the sweep's attempts run in (the sandbox's, else the scaffold's)."""
    found = {c.sandbox.get("image") or c.scaffold.get("image") for c in cfgs if c.sandbox.kind == "apptainer"}
    return {Path(str(i)).expanduser() for i in found if i}


def preflight_sweep(sweep_dir: Path, todo: list[Attempt]) -> None:
    """`hpc-mle resume`: the launch's checks on the sweep's recorded configs (this shell's keys, today's nodes)."""
    if not todo:
        return
    configs = Path(sweep_dir) / "configs"
    cfgs = [OmegaConf.create(json.loads((configs / f"{cid}.json").read_text()))
            for cid in sorted({a.config_id for a in todo})]
    refuse_if_failed(preflight.run(Path(sweep_dir), todo, cfgs, check_models(cfgs)))


def launch(argv: list[str]) -> int:
    args = launch_args.parse_argv(argv)
    if args.help:
        print(launch_args.help_text(args))
        return 0
    composed = launch_args.compose(args)
    launch_args.print_notes(args, composed)
    if args.cfg:
        launch_args.print_cfg(args, composed)
        return 0
    cfgs, job_overrides = composed.cfgs, composed.jobs
    if len({c.cluster.name for c in cfgs}) > 1 or len({c.output_root for c in cfgs}) > 1:
        raise PlanError("one launch uses one cluster and one output_root: do not sweep over them")
    cluster, first = cfgs[0].cluster, cfgs[0]
    served = check_models(cfgs)
    attempts = plan.plan_attempts(cfgs)
    sweep_dir = (Path(first.output_root) / plan.sweep_name(cfgs, job_overrides)).resolve()
    todo, table = pending_attempts(sweep_dir, attempts, first.retry_agent_failures)
    report = preflight.run(sweep_dir, todo, cfgs, served)
    if first.dry_run:
        print(describe(sweep_dir, attempts, todo, cluster, served), flush=True)
        print(status.summary(table))
        print(f"\n{report.text()}\n\ndry run: nothing written, nothing submitted", flush=True)
        return 0 if report.ok else PREFLIGHT_FAILED
    refuse_if_failed(report)
    if cluster.kind == "slurm" and not slurm.available():
        raise PlanError("cluster=slurm but sbatch/squeue are not on PATH here. Run on a login node, or use "
                        "cluster=local. For the development cluster: bash slurm/dev/up.sh && source slurm/dev/env.sh")
    with plan.sweep_lock(sweep_dir):
        return _launch_locked(sweep_dir, cfgs, job_overrides, attempts, served)


def _launch_locked(sweep_dir: Path, cfgs: list[DictConfig], job_overrides: list[list[str]],
                   attempts: list[Attempt], served: dict[str, dict]) -> int:
    """The launch proper, under the sweep's lock: settle, plan, run or submit."""
    cluster, first = cfgs[0].cluster, cfgs[0]
    reconciled = reconcile(sweep_dir, cluster)
    todo, table = pending_attempts(sweep_dir, attempts, first.retry_agent_failures)
    print(describe(sweep_dir, attempts, todo, cluster, served), flush=True)
    refuse_unknown(table)
    ensure_prepared(todo, first.data_dir)
    plan.write_plan(sweep_dir, cfgs, job_overrides, attempts)
    containers.record_digests(sweep_dir, sweep_images(cfgs))  # once here, not at every attempt start
    recorded = slurm.recorded_tasks(slurm.read_log(sweep_dir))
    if recorded:  # a rebuilt manifest gets its job ids back from launches.jsonl
        plan.update_manifest(sweep_dir, recorded, slurm.now())
    mark_for_retry(sweep_dir, todo)

    if cluster.kind == "local":
        if todo:
            run_local(sweep_dir, todo, cluster.max_parallel, cluster.max_restarts)
        jobs.grade_task(sweep_dir)
        result = jobs.analysis_task(sweep_dir)
        print(f"\n{result['table']}\n\nsummary: {result['summary']}")
        for report in result["reports"]:
            print(f"grading report: {report}")
        return 0

    submission = submit_todo(sweep_dir, todo, cluster, reconciled)
    if submission is None:
        print(f"nothing to submit: every attempt is done, failed by the agent, or already queued ({status.summary(table)})")
        return 0
    arrays = ", ".join(f"{g}: {' '.join(ids)}" for g, ids in submission.arrays.items()) or "-"
    servers = "".join(f"  model server   {n}: {j} (address: {serve.serve_dir(sweep_dir, n) / serve.ADDRESS})\n"
                      f"  teardown job   {n}: {submission.teardowns.get(n)}\n" for n, j in submission.servers.items())
    print(f"submitted {len(todo)} attempts with {submission.sbatch_calls} sbatch calls\n{servers}"
          f"  agent arrays   {arrays}\n  grading array  {submission.grading}\n  analysis job   {submission.analysis}\n"
          f"next:\n  hpc-mle status {sweep_dir}\n  hpc-mle resume {sweep_dir}   # after failures\n"
          f"  hpc-mle cancel {sweep_dir}\n  results: {sweep_dir}/analysis/summary.md")
    return 0


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        sys.exit(launch(argv))
    except (PlanError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        from hydra.errors import HydraException

        if isinstance(exc, HydraException):  # before OSError: Hydra's MissingConfigException is an IOError
            print(f"error: {str(exc).strip()}", file=sys.stderr)
            sys.exit(2)
        if isinstance(exc, OSError) and is_disk_full(exc):
            print(f"error: {disk_full_message(exc.filename or Path.cwd(), OUTPUT_FULL_FIX)}", file=sys.stderr)
            sys.exit(1)
        raise


if __name__ == "__main__":
    main()
