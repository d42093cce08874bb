"""`hpc-mle`: the command line. Thin: each command parses, calls one module, prints."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from hpc_mle import __version__, competitions, grading, paths
from hpc_mle.competitions import SpecError
from hpc_mle.files import disk_full_message, is_disk_full, read_json
from hpc_mle.textsafe import cell, terminal

# Piped output (logs, CI, `| less`) gets wide tables instead of rich's 80-column default.
_WIDTH = None if sys.stdout.isatty() else 160
console = Console(highlight=False, width=_WIDTH, soft_wrap=True)
err = Console(stderr=True, highlight=False, width=_WIDTH, soft_wrap=True)

data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Prepared data root (default: $HPC_MLE_DATA or the user cache dir).",
)


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/red] {terminal(message)}")
    sys.exit(code)


def _dumps(obj) -> str:
    return json.dumps(obj, indent=2, default=str)


def _print_fields(fields: dict) -> None:
    """`key  value` lines for people (scripts read the JSON files the command writes and names)."""
    width = max(map(len, fields), default=0)
    for key, value in fields.items():
        console.print(terminal(f"{key:<{width}}  {'-' if value is None else value}"))


class _Group(click.Group):
    """A full disk under any command is one line naming the file system and the fix, not a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            _fail(disk_full_message(exc.filename or Path.cwd(), "free space there, or use another file system "
                                    "(--data-dir / HPC_MLE_DATA for data, output_root for sweeps)"), code=1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hpc-mle")
def main() -> None:
    """MLE-bench on Slurm clusters: competitions, preparation, grading."""


# ---------------------------------------------------------------- competitions


@main.group("competitions")
def competitions_group() -> None:
    """The competition registry."""


def _registry_or_fail():
    try:
        return competitions.registry()
    except SpecError as exc:
        _fail(str(exc))


@competitions_group.command("list")
@click.option("--benchmark", "--split", "split", default=None, help="Only this split: lite, medium, high, all, dev, mini.")
@click.option("--implemented", is_flag=True, help="Only competitions that can be prepared and graded.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def competitions_list(split: str | None, implemented: bool, as_json: bool) -> None:
    """All known competitions: split, category, metric, status."""
    specs = _registry_or_fail()
    ids = list(specs)
    if split:
        try:
            ids = competitions.split_ids(split)
        except KeyError as exc:
            _fail(exc.args[0])
    rows = [specs[i] for i in ids if specs[i].implemented or not implemented]
    if as_json:
        console.print_json(_dumps([s.as_dict() for s in rows]))
        return
    table = Table(title=f"{len(rows)} competitions", show_lines=False)
    for col in ("id", "split", "category", "metric", "status", "implemented", "leaderboard"):
        table.add_column(col)
    for s in rows:
        arrow = "↑" if s.metric.higher_is_better else "↓"
        status = s.status.state if s.status.state == "ok" else f"[yellow]{s.status.state}[/yellow]"
        table.add_row(s.id, s.split, s.category, f"{s.metric.name} {arrow}", status,
                      "yes" if s.implemented else "no", s.leaderboard.source)
    console.print(table)


@competitions_group.command("show")
@click.argument("competition_id")
@data_dir_option
def competitions_show(competition_id: str, data_dir: Path | None) -> None:
    """A competition's spec, files, metric, leaderboard and medal thresholds."""
    from hpc_mle import prepare

    _registry_or_fail()
    try:
        spec = competitions.get(competition_id)
    except KeyError as exc:
        _fail(exc.args[0])
    console.print(f"[bold]{spec.name}[/bold] ({spec.id}), split {spec.split}, {spec.category}, spec v{spec.version}")
    direction = "higher is better" if spec.metric.higher_is_better else "lower is better"
    opts = f" {spec.metric.options}" if spec.metric.options else ""
    console.print(f"metric: {spec.metric.name}{opts} ({direction}); upstream grader name: "
                  f"{spec.metric.upstream_grader_name or '-'}")
    cols = list(spec.submission.answer_columns) or ["<every non-id column of the answers>"]
    console.print(f"submission: {', '.join(spec.submission.id_columns)} | {', '.join(cols)}"
                  f"{' (exact columns)' if spec.submission.exact_columns else ''}; rows matched by "
                  f"{spec.submission.row_order}")
    console.print(f"files (under prepared/): answers {spec.files.answers}, sample {spec.files.sample_submission}"
                  + (f", gold {spec.files.gold_submission}" if spec.files.gold_submission else ""))
    if spec.files.public:
        console.print(f"public files: {', '.join(spec.files.public)}")
    status = spec.status.state + (f": {spec.status.reason}" if spec.status.reason else "")
    if spec.status.upstream_issue:
        status += f" (upstream #{spec.status.upstream_issue})"
    console.print(f"status: {status}")
    console.print(f"implemented: {'yes' if spec.implemented else 'no (data preparation comes later)'}")
    if spec.sample_score is not None:
        origin = "reference value" if spec.split == "mini" else "upstream's reference value"
        console.print(f"sample-submission score: {spec.sample_score} ({origin})")
    t = grading.leaderboard_thresholds(spec, data_dir)
    if t is None:
        console.print(f"leaderboard: none available (source {spec.leaderboard.source}); medals unknown")
    else:
        label = " [magenta]reference-panel, not human teams[/magenta]" if spec.leaderboard.source == "reference-panel" else ""
        console.print(f"leaderboard: {t.teams} entries{label}; {'lower' if t.is_lower_better else 'higher'} is better")
        console.print(f"thresholds: gold {t.gold}  silver {t.silver}  bronze {t.bronze}  median {t.median}")
    if spec.implemented:
        problems = prepare.verify(spec.id, data_dir)
        state = "prepared" if not problems else "; ".join(problems[:3])
        console.print(f"data: {paths.prepared_dir(spec.id, data_dir)} ({state})")


@competitions_group.command("samples")
@click.option("--benchmark", "--split", "split", required=True, help="Which competitions: mini, lite, all, ...")
@click.option("--kind", type=click.Choice(["sample", "gold"]), default="sample",
              help="sample: the naive sample submission; gold: the answers (should win gold).")
@data_dir_option
def competitions_samples(split: str, kind: str, data_dir: Path | None) -> None:
    """Print a submissions JSONL (for `hpc-mle grade`) of each prepared competition's sample or gold file."""
    from hpc_mle import prepare

    specs = _registry_or_fail()
    try:
        ids = competitions.split_ids(split)
    except KeyError as exc:
        _fail(exc.args[0])
    for cid in ids:
        spec = specs[cid]
        if not (spec.implemented and prepare.is_prepared(cid, data_dir)):
            err.print(f"skipping {cid}: not prepared")
            continue
        rel = spec.files.sample_submission if kind == "sample" else (spec.files.gold_submission or spec.files.answers)
        click.echo(json.dumps({"competition_id": cid, "submission_path": str(paths.prepared_dir(cid, data_dir) / rel)}))


@competitions_group.command("import-upstream")
@click.argument("clone", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-c", "--competition", "--competition-id", "ids", multiple=True,
              help="Only this competition (repeatable).")
@click.option("--benchmark", "--split", "split", default=None,
              help="Only this split (lite, all, ...); default every known one.")
@data_dir_option
def competitions_import_upstream(clone: Path, ids: tuple[str, ...], split: str | None, data_dir: Path | None) -> None:
    """Copy leaderboards, descriptions and checksums from a clone of openai/mle-bench; verify our data."""
    from hpc_mle import upstream

    specs = _registry_or_fail()
    try:
        wanted = list(ids) or (competitions.split_ids(split) if split else list(specs))
    except KeyError as exc:
        _fail(exc.args[0])
    try:
        results = upstream.import_upstream(clone, wanted, data_dir)
    except upstream.UpstreamError as exc:
        _fail(str(exc))
    table = Table(title=f"imported from {clone} into {paths.data_root(data_dir)}")
    for col in ("competition", "leaderboard", "description", "checksums.yaml", "our prepared files"):
        table.add_column(col)
    colour = {"match": "green", "mismatch": "red"}
    for r in results:
        v = r.verification.text()
        state = r.verification.state
        table.add_row(r.competition_id, "-" if r.leaderboard_rows is None else f"{r.leaderboard_rows} rows",
                      "yes" if "description.md" in r.files else "-", "yes" if "checksums.yaml" in r.files else "-",
                      f"[{colour[state]}]{v}[/{colour[state]}]" if state in colour else v)
    console.print(table)
    missing = sorted(set(wanted) - {r.competition_id for r in results})
    if missing:
        console.print(f"{len(missing)} competition(s) not in the clone: {', '.join(missing[:8])}"
                      + (" ..." if len(missing) > 8 else ""))
    mismatched = [r.competition_id for r in results if r.verification.state == "mismatch"]
    if mismatched:
        _fail(f"prepared files differ from upstream's checksums for {', '.join(mismatched)}", code=1)


# ---------------------------------------------------------------- prepare


@main.command("prepare")
@click.option("-c", "--competition", "--competition-id", "ids", multiple=True, help="Competition id (repeatable).")
@click.option("--benchmark", "--split", "split", default=None, help="A whole split: mini, lite, medium, high, all, dev.")
@click.option("--lite", "split", flag_value="lite", help="As upstream's `mlebench prepare --lite`: --benchmark lite.")
@click.option("-a", "--all", "split", flag_value="all", help="As upstream's `--all`: --benchmark all.")
@click.option("-l", "--list", "id_list", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="As upstream's `--list`: a text file of competition ids, one a line.")
@click.option("--force", is_flag=True, help="Prepare again even if already prepared.")
@click.option("--check", is_flag=True,
              help="Preflight only: Kaggle credentials, rules accepted, free disk; writes nothing.")
@click.option("--description", type=click.Choice(["ours", "upstream"]), default="ours", show_default=True,
              help="description.md in public/: ours, or the original one imported with import-upstream.")
@click.option("--slurm", is_flag=True, help="Run it as a job on the cluster's data partition and return.")
@click.option("--cluster", "cluster_name", default="slurm", show_default=True,
              help="With --slurm: conf/cluster/NAME.yaml (data_partition, data_time) or a path to one.")
@click.option("--job-cpus", type=click.IntRange(min=1), default=2, show_default=True, help="With --slurm: CPUs.")
@click.option("--job-mem-gb", type=click.IntRange(min=1), default=None,
              help="With --slurm (or --check): memory in GB. Default: the most any chosen spec's "
                   "prepare_memory_gb asks for, plus a quarter, at least 16.")
@click.option("--write-checksums", is_flag=True, hidden=True, help="Maintainers: record reference checksums.")
@click.option("--allow-home-data", is_flag=True,
              help="With --slurm: accept a data dir under $HOME (refused by default: jobs on every node read it).")
@data_dir_option
def prepare_cmd(ids: tuple[str, ...], split: str | None, id_list: Path | None, force: bool, check: bool,
                description: str, slurm: bool, cluster_name: str, job_cpus: int, job_mem_gb: int | None,
                write_checksums: bool, allow_home_data: bool, data_dir: Path | None) -> None:
    """Download (Kaggle), extract and build competitions' public and private files into the data dir."""
    from hpc_mle import kaggle, prepare

    specs = _registry_or_fail()
    if id_list is not None:
        ids = (*ids, *(line.strip() for line in id_list.read_text().splitlines() if line.strip()))
    if bool(ids) == bool(split):
        _fail("give either -c/--competition ID (repeatable; or -l FILE of ids) or --benchmark SPLIT (--lite, --all)")
    if split:
        try:
            ids = tuple(competitions.split_ids(split))
        except KeyError as exc:
            _fail(exc.args[0])
    known = [c for c in ids if c in specs]
    if slurm and job_mem_gb is None:
        job_mem_gb = kaggle.slurm_memory_gb(known)
    if check:
        _prepare_check(known, [c for c in ids if c not in specs], data_dir, job_mem_gb)
        return
    if not slurm:
        for cid in known:
            if (need := specs[cid].prepare_memory_gb) and need > (have := kaggle.usable_memory_gb()):
                err.print(f"[yellow]warning:[/yellow] {cid}: a preparation needs about {need:g} GB of memory, this "
                          f"node has {have:.0f} GB; it may be killed. `hpc-mle prepare --slurm` asks for enough.")
    try:
        cluster = kaggle.load_cluster(cluster_name) if slurm else None
        home = paths.home_data_problem(paths.data_root(data_dir)) if cluster is not None else None
        if home and not (allow_home_data or cluster.allow_home_data):
            _fail(home)
        if any(kaggle.needs_download(c, data_dir) for c in ids if c in specs):
            creds = kaggle.find_credentials()
            for warning in creds.warnings:
                err.print(f"[yellow]warning:[/yellow] {warning}")
        if cluster is not None:
            job = prepare.submit_prepare(known, data_dir, cluster,
                                         description=description, force=force, cpus=job_cpus, mem_gb=job_mem_gb)
            root = paths.data_root(data_dir)
            console.print(f"submitted prepare job {job.job_id} (partition "
                          f"{cluster.data_partition or cluster.partition or 'default'}, --time {cluster.data_time}, "
                          f"--mem {job_mem_gb}G); "
                          f"log: {root / '.slurm' / str(job.job_id)}; results: {root / 'prepare-report.json'}")
            return
        outcomes = prepare.prepare_many(
            ids, data_dir, force=force, write_checksums=write_checksums, description=description,
            log=lambda m: err.print(m), on_start=lambda c: console.print(f"preparing {c}", style="dim"))
    except prepare.PrepareError as exc:  # credentials, cluster config: nothing was written
        _fail(str(exc))
    table = Table(title=f"prepare into {paths.data_root(data_dir)}")
    for col in ("competition", "result", "files / reason"):
        table.add_column(col)
    colour = {"unavailable": "yellow", "failed": "red", "unknown": "red"}
    for o in outcomes:
        label = f"[{colour[o.result]}]{o.result}[/{colour[o.result]}]" if o.result in colour else o.result
        table.add_row(o.competition_id, label, o.detail)
    console.print(table)
    failed = sum(o.result not in ("prepared", "already-prepared") for o in outcomes)
    if failed:
        _fail(f"{failed} of {len(ids)} competition(s) not prepared", code=1)


def _memory_summary(rows, memory_gb: int | None) -> str:
    """The largest memory one preparation still to run needs, what it will have, and what --slurm asks for."""
    from hpc_mle import kaggle

    todo = [r for r in rows if r.state != "prepared" and r.memory_gb]
    if not todo:
        return "memory: no preparation to run states prepare_memory_gb"
    top = max(todo, key=lambda r: r.memory_gb)
    have = f"the job has {memory_gb} GB" if memory_gb else f"this node has {kaggle.usable_memory_gb():.1f} GB"
    return (f"memory: one preparation at a time, at most {top.memory_gb:g} GB ({top.competition_id}); {have}; "
            f"`prepare --slurm` would ask for {kaggle.slurm_memory_gb([r.competition_id for r in todo])} GB")


def _prepare_check(ids: list[str], unknown: list[str], data_dir: Path | None, memory_gb: int | None) -> None:
    """The preflight table; exit 1 when something would block `prepare`, 2 for credentials."""
    from hpc_mle import kaggle

    kaggle_error = None
    try:
        result = kaggle.preflight(ids, data_dir, memory_gb)
    except kaggle.KaggleError as exc:  # no usable credentials or no Kaggle: still show what the specs say
        kaggle_error = exc
        result = kaggle.preflight(ids, data_dir, memory_gb, ask_kaggle=False)
    if result.credentials:
        console.print(f"Kaggle credentials: {result.credentials.kind} from {result.credentials.source}"
                      + (f" (user {result.credentials.username})" if result.credentials.username else ""))
        for warning in result.credentials.warnings:
            err.print(f"[yellow]warning:[/yellow] {warning}")
    table = Table(title=f"preflight for {result.data_root}")
    for col in ("competition", "download", "state", "rules", "size GB", "needs GB", "memory GB", "blocker"):
        table.add_column(col)
    for r in result.rows:
        rules = r.rules if r.rules != "not accepted" else "[red]not accepted[/red]"
        table.add_row(r.competition_id, r.download, r.state, rules,
                      "-" if r.size_gb is None else f"{r.size_gb:.2f}", f"{r.need_gb:.2f}",
                      "-" if r.memory_gb is None else f"{r.memory_gb:g}",
                      f"[red]{r.blocker}[/red]" if r.blocker else "")
    for cid in unknown:
        table.add_row(cid, "-", "unknown", "-", "-", "0.00", "-", "[red]not in the registry[/red]")
    console.print(table)
    for r in result.rows:
        for note in r.notes:
            console.print(f"{r.competition_id}: {note}", soft_wrap=True)
    console.print(f"disk: {result.free_gb:.1f} GB free at {result.data_root}, about {result.need_gb:.1f} GB needed "
                  f"(each spec's prepare_disk_gb, else {kaggle.DISK_FACTOR:g} x each dataset to download: zip, "
                  "extracted, prepared)")
    console.print(_memory_summary(result.rows, memory_gb))
    for problem in result.problems:
        err.print(f"[red]blocked:[/red] {problem}")
    if kaggle_error is not None:
        _fail(f"{kaggle_error} (Kaggle was not asked: rules and download sizes above are unchecked)")
    blocked = sum(bool(r.blocker) for r in result.rows) + len(unknown)
    if blocked or result.problems:
        _fail(f"{blocked} competition(s) blocked" + ("; not enough disk" if result.problems else ""), code=1)
    console.print("ready: `hpc-mle prepare` can run")


# ---------------------------------------------------------------- grading


def _print_report(report: grading.CompetitionReport) -> None:
    """Plain JSON on stdout (NaN written as upstream writes it), so it can be piped."""
    click.echo(_dumps(report.to_dict()))


mode_option = click.option(
    "--mode", type=click.Choice(grading.GRADING_MODES), default="v1", show_default=True,
    help="v1: as MLE-bench v1 graded; corrected: v1's plainly wrong rules fixed. Reports keep both where they differ.")


@main.command("grade-sample")
@click.argument("submission", type=click.Path(path_type=Path))
@click.argument("competition_id")
@data_dir_option
@mode_option
def grade_sample(submission: Path, competition_id: str, data_dir: Path | None, mode: str) -> None:
    """Grade one submission CSV and print its report."""
    _registry_or_fail()
    try:
        report = grading.grade_submission(submission, competition_id, data_dir, mode)
    except (KeyError, grading.NotPrepared) as exc:
        _fail(str(exc).strip("'\""))
    _print_report(report)


@main.command("grade")
@click.option("--submissions", "--submission", "jsonl", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSONL: one {competition_id, submission_path} per line (MLE-bench's format).")
@click.option("--output-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@data_dir_option
@mode_option
def grade_cmd(jsonl: Path, output_dir: Path, data_dir: Path | None, mode: str) -> None:
    """Grade many submissions into an MLE-bench-compatible run-group report."""
    _registry_or_fail()
    try:
        rows = grading.read_submissions_jsonl(jsonl)
    except ValueError as exc:
        _fail(str(exc))
    reports = grading.grade_many(rows, data_dir, mode)
    out = grading.write_run_group_report(reports, output_dir)
    summary = {k: v for k, v in grading.run_group_report(reports).items() if k != "competition_reports"}
    table = Table(title=f"{len(reports)} submissions graded")
    for col in ("competition", "score", "valid", "medal", "reason"):
        table.add_column(col)
    for r in reports:
        medal = next((m for m in ("gold", "silver", "bronze") if getattr(r, f"{m}_medal")), "-")
        table.add_row(cell(r.competition_id), cell("-" if r.score is None else r.score),
                      "yes" if r.valid_submission else "[red]no[/red]", medal, cell(r.reason or ""))
    console.print(table)
    _print_fields(summary)
    console.print(f"report: {terminal(out)}")


# ---------------------------------------------------------------- one attempt


def _duration(text: str) -> float:
    """'90', '90s', '10m', '1.5h', '24h' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    try:
        return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError):
        raise click.BadParameter(f"{text!r} is not a duration; use e.g. 90s, 10m, 24h") from None


@main.command("run-attempt")
@click.option("-c", "--competition", "--competition-id", "competition_id", required=True)
@click.option("--scaffold", required=True, help="A scaffold in conf/scaffold/ (dummy, baseline, ...).")
@click.option("--sandbox", "sandbox_kind", type=click.Choice(["bwrap", "apptainer", "none"]), default="bwrap")
@click.option("--time-limit", default="10m", help="Agent budget: 90s, 10m, 24h ...")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Attempt directory.")
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Apptainer image (.sif).")
@click.option("--network/--no-network", default=False, help="Let the agent reach the network (default: no).")
@click.option("--hardware", default=None, help="What HARDWARE tells the agent (default: detected).")
@click.option("--obfuscate", is_flag=True, help="Give the obfuscated instructions and description (contamination study).")
@click.option("--snapshot-interval", default="10m", help="How often the submission is snapshotted.")
@click.option("--telemetry-interval", default="10s")
@click.option("--grace", default="10s", help="Between TERM and KILL at the time limit.")
@click.option("--status-interval", default="30s",
              help="How often the agent time used is saved to status.json (a crash loses at most this much).")
@click.option("--stop-bound", default="20s", help="The whole stop (TERM, grace, KILL, final status) ends within this.")
@click.option("--disk-quota", type=float, default=None,
              help="GiB the agent's writable folders and /tmp may use together (default: conf/sandbox limits.disk_gb).")
@click.option("--memory", type=float, default=None, help="GiB of resident memory the agent may use (default: no limit).")
@click.option("--max-processes", type=int, default=None,
              help="Processes and threads of the agent's uid (RLIMIT_NPROC; default: conf/sandbox limits.processes).")
@click.option("--max-open-files", type=int, default=None,
              help="Open files per agent process (RLIMIT_NOFILE; default: conf/sandbox limits.open_files).")
@click.option("--max-files", type=int, default=None,
              help="Files and folders in the agent's writable folders (default: conf/sandbox limits.files).")
@click.option("--shm", type=float, default=None, help="GiB of /dev/shm (memory; default: conf/sandbox limits.shm_gb).")
@data_dir_option
@click.argument("agent_args", nargs=-1)
def run_attempt_cmd(competition_id, scaffold, sandbox_kind, time_limit, out, image, network, hardware, obfuscate,
                    snapshot_interval, telemetry_interval, grace, status_interval, stop_bound, disk_quota, memory, max_processes, max_open_files,
                    max_files, shm, data_dir, agent_args) -> None:
    """Run one agent on one competition in a sandbox; results land in --out. Extra args go to the agent."""
    from hpc_mle import runner

    _registry_or_fail()
    cfg = runner.AttemptConfig(
        competition_id=competition_id, scaffold=scaffold, out=out, sandbox=sandbox_kind,
        time_limit_s=_duration(time_limit), data_dir=data_dir, image=image, network=network, hardware=hardware,
        obfuscate=obfuscate, snapshot_interval_s=_duration(snapshot_interval),
        telemetry_interval_s=_duration(telemetry_interval), grace_s=_duration(grace), agent_args=tuple(agent_args),
        status_interval_s=_duration(status_interval), stop_bound_s=_duration(stop_bound),
        **({"disk_quota_gb": disk_quota} if disk_quota is not None else {}), memory_gb=memory,
        **({"max_processes": max_processes} if max_processes is not None else {}),
        **({"max_open_files": max_open_files} if max_open_files is not None else {}),
        **({"max_files": max_files} if max_files is not None else {}),
        **({"shm_gb": shm} if shm is not None else {}),
    )
    try:
        status = runner.run_attempt(cfg)
    except (runner.AttemptError, KeyError, ValueError) as exc:
        _fail(str(exc).strip("'\""))
    summary = {k: status.get(k) for k in ("state", "exit_code", "reason", "agent_elapsed_s", "starts",
                                          "submission_exists", "snapshots", "validator_calls")}
    _print_fields(summary)
    console.print(f"attempt directory: {out}\nnext: hpc-mle grade-sample {out}/submission/submission.csv "
                  f"{competition_id}" + (f" --data-dir {data_dir}" if data_dir else ""))
    sys.exit(0 if status["state"] in ("done", "timeout") else 1)


# ---------------------------------------------------------------- containers


@main.command("doctor")
@click.option("--on-node", is_flag=True, help="Also run the local checks as a tiny Slurm job on a compute node.")
@click.option("--cluster", "cluster_name", default="slurm", show_default=True,
              help="With --on-node: the cluster config (conf/cluster/) the job is submitted with.")
@click.option("--partition", default=None, help="With --on-node: the partition of that job (default: the cluster's).")
@click.option("--folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --on-node: where submitit keeps the job's files (default: a temporary folder here).")
@click.option("--no-slurm", is_flag=True, help="Only this machine's checks (namespaces, bwrap, apptainer).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def doctor_cmd(on_node: bool, cluster_name: str, partition: str | None, folder: Path | None, no_slurm: bool,
               as_json: bool) -> None:
    """What this site allows (namespaces, runtimes, GPU binding, Slurm settings), each with its fallback.

    Exit 0 when every check is ok or a warning, 1 on a fail."""
    import tempfile
    from dataclasses import asdict

    from hpc_mle import doctor, kaggle, prepare

    checks = [doctor.Check(f"{c.name} [here]", c.state, c.seen, c.fix) for c in doctor.run_all(slurm=not no_slurm)]
    if on_node:
        where = folder or Path(tempfile.mkdtemp(prefix="hpc-mle-doctor-", dir=Path.cwd()))
        try:
            cluster = kaggle.load_cluster(cluster_name)
        except prepare.PrepareError as exc:
            _fail(str(exc))
        checks += doctor.on_node(where, cluster, partition)
    if as_json:
        console.print_json(_dumps([asdict(c) for c in checks]))
        sys.exit(doctor.exit_code(checks))
    colors = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "dim"}
    table = Table(title="hpc-mle doctor", show_lines=False)
    for col in ("check", "state", "seen", "fallback / setting to change"):
        table.add_column(col, overflow="fold")
    for c in checks:
        table.add_row(cell(c.name), f"[{colors[c.state]}]{c.state}[/{colors[c.state]}]", cell(c.seen), cell(c.fix))
    console.print(table)
    sys.exit(doctor.exit_code(checks))


@main.group("containers")
def containers_group() -> None:
    """Apptainer images from containers/*.def."""


@containers_group.command("check")
def containers_check() -> None:
    """Parse every definition file and check its base and %files sources."""
    from hpc_mle import containers

    problems = []
    for name, definition in containers.definitions().items():
        found = containers.check(definition)
        problems += found
        console.print(f"{name}: {definition.header.get('bootstrap')} {definition.header.get('from')} "
                      f"({'ok' if not found else 'problems'}; build order {' -> '.join(containers.build_order(name))})")
    for p in problems:
        err.print(f"[red]{p}[/red]")
    sys.exit(1 if problems else 0)


@containers_group.command("build")
@click.argument("name")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("images"),
              help="Where the .sif files go (shared storage on a cluster).")
@click.option("--fakeroot/--no-fakeroot", default=True, help="Build without root through fakeroot (default).")
def containers_build(name: str, output_dir: Path, fakeroot: bool) -> None:
    """Build an image (and the images it builds on) with `apptainer build`."""
    from hpc_mle import containers

    try:
        built = containers.build(name, output_dir, fakeroot)
    except (containers.DefinitionError, RuntimeError) as exc:
        _fail(str(exc))
    for path in built:
        console.print(f"built {path}")


@containers_group.command("check-pins")
@click.argument("names", nargs=-1)
@click.option("--python", "pip_python", default=sys.executable, show_default=True,
              help="The Python whose pip resolves (a pip too old to read only metadata is refused).")
@click.option("--find-links", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Resolve offline from this folder of wheels (--no-index) instead of PyPI.")
@click.option("--allow-downloads", is_flag=True, help="Let an older pip fetch whole wheels (GBs; none is kept).")
def containers_check_pins(names: tuple[str, ...], pip_python: str, find_links: Path | None,
                          allow_downloads: bool) -> None:
    """Resolve each image's pip steps for its Python and platform: conflicts, unpinned packages, unmet requirements."""
    import shutil as _shutil

    from hpc_mle import containers

    index = ["--no-index", "--find-links", str(find_links)] if find_links else None
    try:
        reports = containers.check_pins(list(names) or list(containers.definitions()), pip_python, index,
                                        _shutil.which("uv"), allow_downloads)
    except (containers.DefinitionError, RuntimeError) as exc:
        _fail(str(exc))
    for report in reports:
        console.print("\n".join(containers.format_report(report)), markup=False, highlight=False)
    sys.exit(0 if all(r.ok for r in reports) else 1)


# ---------------------------------------------------------------- sweeps


def _sweep_or_fail(sweep_dir: Path) -> Path:
    from hpc_mle import plan

    if plan.read_manifest(sweep_dir) is None:
        _fail(f"{sweep_dir} is not a sweep folder (no {plan.MANIFEST}). Sweeps are under runs/ by default.")
    return sweep_dir.resolve()


@main.command("status")
@click.argument("sweep_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--by", type=click.Choice(["competition_id", "model", "scaffold", "hardware", "seed"]),
              default="competition_id", help="Rows of the table.")
@click.option("--failures", is_flag=True, help="Also list every failed, lost, damaged or unknown attempt.")
def status_cmd(sweep_dir: Path, by: str, failures: bool) -> None:
    """Counts by state, read from the attempts' own status files (Slurm is asked once, if at all).

    Exits 1 when some attempts are `unknown` (squeue failed): the counts are then incomplete."""
    from hpc_mle import jobs, status

    table = status.sweep_status(_sweep_or_fail(sweep_dir))
    counts = status.counts(table, by)
    out = Table(title=f"{terminal(sweep_dir.name)}: {len(table)} attempts")
    out.add_column(by)
    for col in counts.columns:
        out.add_column(cell(col), justify="right")
    for idx, row in counts.iterrows():
        out.add_row(cell(idx), *[cell(v) for v in row])
    console.print(out)
    bad = table[table["state"].isin(["failed", "lost", "damaged", "unknown"])]
    if failures and len(bad):
        for _, r in bad.iterrows():
            console.print(terminal(f"{r['id']} {r['competition_id']} {r['scaffold']}/{r['model']} seed {r['seed']}: "
                                   f"{r['state']}{_failure(r['failure'])} {r['reason'] or ''}"))
    elif len(bad):
        which = ", ".join(f"{n} {state}" for state, n in bad["state"].value_counts().items())
        console.print(f"{which}: `hpc-mle status {sweep_dir} --failures` lists them" + _rerun_hint(bad, sweep_dir))
    partial = read_json(sweep_dir / "analysis" / jobs.PARTIAL)
    if isinstance(partial, dict) and partial.get("left_out"):
        console.print(f"the analysis is partial: {len(partial['left_out'])} attempt(s) had not ended when it ran "
                      f"(analysis/PARTIAL); it is redone when the last of them ends")
    ungraded = status.grading_note(sweep_dir)
    if ungraded:
        console.print(terminal(ungraded))
    unknown = table[table["state"] == "unknown"]
    if len(unknown):
        err.print(f"[yellow]warning:[/yellow] {len(unknown)} attempt(s) unknown: {terminal(unknown['reason'].iloc[0])}")
        sys.exit(1)


def _rerun_hint(bad, sweep_dir: Path) -> str:
    """What `resume` would do with these attempts: it reruns lost ones and infrastructure failures on its own;
    an agent's failure is the agent's result, rerun only when asked."""
    agent = (bad["state"] == "failed") & (bad["failure"] == "agent")
    again = bad["state"].isin(["failed", "lost"]) & ~agent
    hints = []
    if again.any():
        hints.append(f"`hpc-mle resume {sweep_dir}` runs the {int(again.sum())} lost or infrastructure-failed again")
    if agent.any():
        hints.append(f"`hpc-mle resume {sweep_dir} --retry-agent-failures` also reruns the {int(agent.sum())} whose "
                     "agent failed (its own result otherwise)")
    return "; " + "; ".join(hints) + "." if hints else "."


def _failure(kind) -> str:
    return f" ({kind})" if isinstance(kind, str) and kind else ""


@main.command("resume")
@click.argument("sweep_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--retry-agent-failures", is_flag=True, help="Also rerun attempts whose agent failed.")
@click.option("--rerun-damaged", is_flag=True, help="Also rerun attempts whose status.json is damaged.")
def resume_cmd(sweep_dir: Path, retry_agent_failures: bool, rerun_damaged: bool) -> None:
    """Run again what was never submitted, was lost or failed for infrastructure reasons; then grade and analyse.

    Never submits an attempt that is queued, running, unknown (squeue failed: exit 2) or finished."""
    from omegaconf import OmegaConf

    from hpc_mle import jobs, launch, plan, status
    from hpc_mle.plan import PlanError

    sweep_dir = _sweep_or_fail(sweep_dir)
    try:
        with plan.sweep_lock(sweep_dir):
            manifest = plan.read_manifest(sweep_dir)
            fields = [f.name for f in plan.Attempt.__dataclass_fields__.values()]
            attempts = [plan.Attempt(**{k: (None if pd_isna(r[k]) else r[k]) for k in fields if k in r})
                        for r in manifest.to_dict("records")]
            cluster = OmegaConf.create(plan.planned(sweep_dir, attempts[0].id)["config"]["cluster"])
            reconciled = launch.reconcile(sweep_dir, cluster)
            todo, table = launch.pending_attempts(sweep_dir, attempts, retry_agent_failures, rerun_damaged)
            console.print(terminal(status.summary(table)))
            launch.refuse_unknown(table)
            console.print(f"{len(todo)} attempt(s) to run again")
            launch.preflight_sweep(sweep_dir, todo)
            launch.mark_for_retry(sweep_dir, todo)
            if cluster.kind == "local":
                if todo:
                    launch.run_local(sweep_dir, todo, cluster.max_parallel, cluster.max_restarts)
                if todo or launch.tail_needed(sweep_dir):  # also ended attempts left ungraded, a stale analysis
                    jobs.grade_task(sweep_dir)
                    console.print(terminal(jobs.analysis_task(sweep_dir)["table"]))
                return
            submission = launch.submit_todo(sweep_dir, todo, cluster, reconciled)
    except PlanError as exc:
        _fail(str(exc))
    if submission is not None and not todo:
        console.print(f"no attempt to run; submitted grading {submission.grading} and analysis {submission.analysis} "
                      "(ended attempts not graded yet, an analysis older than a grade, or a killed launch's tail)")
    elif submission is not None:
        arrays = "; ".join(f"{g}: {' '.join(ids)}" for g, ids in submission.arrays.items()) or "-"
        console.print(f"submitted {len(todo)} attempt(s): agent arrays {arrays}; grading {submission.grading}; "
                      f"analysis {submission.analysis}")


def pd_isna(value) -> bool:
    import pandas as pd

    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


@main.command("cancel")
@click.argument("sweep_dir", type=click.Path(file_okay=False, path_type=Path))
def cancel_cmd(sweep_dir: Path) -> None:
    """scancel the sweep's jobs still queued or running (model servers, agents, teardowns, grading, analysis)."""
    from hpc_mle import plan, slurm

    sweep_dir = _sweep_or_fail(sweep_dir)
    sweep = plan.read_sweep(sweep_dir) or {}
    ids = {i for launch in sweep.get("launches", []) for i in
           [*[x for ids in launch["arrays"].values() for x in ids], *(launch.get("servers") or {}).values(),
            *(launch.get("teardowns") or {}).values(), launch.get("grading"), launch.get("analysis")] if i}
    ids |= set(slurm.recorded_jobs(slurm.read_log(sweep_dir)))
    try:
        queue = slurm.queue_jobs()
    except slurm.QueueUnavailable as exc:
        _fail(f"nothing cancelled: {exc}")
    live = sorted({q.job.split("_")[0] for q in queue if q.job.split("_")[0] in ids}
                  | {q.job.split("_")[0] for q in slurm.sweep_jobs(sweep_dir, queue)}, key=lambda j: (len(j), j))
    slurm.cancel(live)
    console.print(f"cancelled {len(live)} job(s) still queued or running: {' '.join(live) or '-'}")


@main.command("compare")
@click.argument("old_sweep", type=click.Path(file_okay=False, path_type=Path))
@click.argument("new_sweep", type=click.Path(file_okay=False, path_type=Path))
def compare_cmd(old_sweep: Path, new_sweep: Path) -> None:
    """Per competition: what gained or lost a medal between two sweeps, with the score change."""
    from hpc_mle import analysis

    table = analysis.compare(_sweep_or_fail(old_sweep), _sweep_or_fail(new_sweep))
    click.echo(analysis.format_comparison(old_sweep, new_sweep, table))


@main.command("audit")
@click.argument("sweep", type=click.Path(file_okay=False, path_type=Path))
@click.option("--judge", default=None, help="Judge model: a conf/model name (gpt4o) or a model YAML; "
              "without it only the deterministic checks run.")
@click.option("--judge-base-url", default=None, help="Override the judge model's base_url.")
@click.option("--judge-model", default=None, help="Override the judge model's `model` (exact provider name).")
@data_dir_option
def audit_cmd(sweep: Path, judge: str | None, judge_base_url: str | None, judge_model: str | None,
              data_dir: Path | None) -> None:
    """Rule-violation audit of every attempt: deterministic checks, then a judge model; writes audit.json."""
    from hpc_mle import audit
    from hpc_mle.llm.proxy import ProxyError

    sweep_dir = _sweep_or_fail(sweep)
    try:
        config = audit.load_model_config(judge, {"base_url": judge_base_url, "model": judge_model}) if judge else None
        body = audit.audit_sweep(sweep_dir, config, data_dir)
    except (FileNotFoundError, ProxyError) as exc:
        _fail(str(exc))
    for a in body["attempts"]:
        line = f"{a['attempt_id']}: {a['verdict']}" + (f" ({a['rubric_item']})" if a["rubric_item"] else "")
        console.print(terminal(line))
        for f in a["findings"]:
            console.print(terminal(f"  {f['source']} {f['check']} [{f['rubric_item']}]: {f['detail']}"))
            for quote in f["evidence"]:
                console.print(terminal(f"    > {quote}"))
    judged = body["judge"] or {}
    console.print(terminal(f"{len(body['flagged'])} of {len(body['attempts'])} attempts flagged; wrote "
                           f"{sweep_dir / audit.AUDIT_FILE}" + (f"; judge {judged.get('model')}: {judged.get('calls')} "
                           f"calls, {judged.get('input_tokens')}+{judged.get('output_tokens')} tokens, "
                           f"cost {judged.get('cost_usd')} USD" if judged else "")))


@main.command("familiarity")
@click.argument("sweep", type=click.Path(file_okay=False, path_type=Path))
@click.option("--model", "model_name", default=None, help="The model whose familiarity is measured: a conf/model "
              "name or a model YAML (default: the one language model the sweep ran).")
@click.option("--base-url", default=None, help="Override the model's base_url (e.g. a vLLM server's http://host:8000/v1).")
@click.option("--model-id", default=None, help="Override the model's `model` (the exact name the endpoint serves).")
@click.option("--api-key-env", default=None, help="Override the variable that holds the endpoint's key.")
@click.option("--text", default="description", show_default=True,
              help="Which text: description (the original Kaggle one where imported, else ours), original, ours, "
                   "obfuscated.")
@click.option("-c", "--competition", "--competition-id", "ids", multiple=True,
              help="Only these competitions (repeatable; default: the sweep's).")
@click.option("--max-tokens", type=click.IntRange(min=2), default=None,
              help="Score the first N tokens of each text (default 2048); longer texts are cut and marked.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: <sweep>/analysis/familiarity).")
@data_dir_option
def familiarity_cmd(sweep: Path, model_name: str | None, base_url: str | None, model_id: str | None,
                    api_key_env: str | None, text: str, ids: tuple[str, ...], max_tokens: int | None, out: Path | None,
                    data_dir: Path | None) -> None:
    """The model's familiarity with each competition's text (mean token log-probability) against its medal rate."""
    from hpc_mle import familiarity

    sweep_dir = _sweep_or_fail(sweep)
    limit = {"max_tokens": max_tokens} if max_tokens else {}
    try:
        config = familiarity.model_config(sweep_dir, model_name, {"base_url": base_url, "model": model_id,
                                                                  "api_key_env": api_key_env})
        done = familiarity.run_study(sweep_dir, config, text, list(ids), out, data_dir=data_dir, **limit)
    except familiarity.FamiliarityError as exc:
        _fail(str(exc))
    for row in done["table"].itertuples():
        medal = "no graded attempt" if pd_isna(row.any_medal_pct) else f"any medal {row.any_medal_pct:.1f} %"
        console.print(terminal(f"{row.competition}: {row.mean_logprob:.3f} over {row.tokens} tokens"
                               f"{' (cut)' if row.truncated else ''}, {medal}"))
    console.print(terminal(f"{familiarity.correlation_text(done['correlation'])}; wrote "
                           f"{', '.join(str(p) for p in done['files'].values())}"))


@main.command("plagiarism")
@click.argument("sweep", type=click.Path(file_okay=False, path_type=Path))
@data_dir_option
def plagiarism_cmd(sweep: Path, data_dir: Path | None) -> None:
    """Each attempt's code against its competition's public notebooks with Dolos; over 60 % is flagged."""
    from hpc_mle import plagiarism

    sweep_dir = _sweep_or_fail(sweep)
    try:
        table = plagiarism.check_sweep(sweep_dir, data_dir)
    except (plagiarism.DolosMissing, FileNotFoundError, RuntimeError) as exc:
        _fail(str(exc))
    for line in plagiarism.summary(table, sweep_dir):
        console.print(terminal(line))


@main.command("reference-notebooks")
@click.option("-c", "--competition", "--competition-id", "ids", multiple=True, required=True,
              help="Competition id (repeatable).")
@click.option("--top", type=click.IntRange(min=1, max=100), default=50, show_default=True,
              help="How many of the most voted public Python notebooks.")
@data_dir_option
def reference_notebooks_cmd(ids: tuple[str, ...], top: int, data_dir: Path | None) -> None:
    """Fetch the plagiarism check's corpus with the kaggle package (on a node that reaches Kaggle)."""
    from hpc_mle import kaggle, plagiarism

    for cid in ids:
        try:
            scripts = plagiarism.fetch_reference_notebooks(cid, data_dir, top)
        except Exception as exc:  # the kaggle package's errors have no common base; the CLI says which and why
            why = kaggle.scrub(str(exc)).rstrip(".")
            _fail(f"{cid}: fetching public notebooks failed: {why}." + ("" if "Fix:" in why else
                  " Fix: run it where Kaggle is reachable, with Kaggle credentials (`hpc-mle doctor` checks them)."))
        console.print(terminal(f"{cid}: {len(scripts)} scripts in {plagiarism.corpus_dir(cid, data_dir)}"))


@main.command("nightly")
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--date", "day", default=None, help="The night to launch (YYYY-MM-DD); default today.")
def nightly_cmd(config: Path, day: str | None) -> None:
    """Launch tonight's sweep (idempotent) and compare the latest analysed night with the one before."""
    from hpc_mle import nightly

    try:
        messages = nightly.run(config, day)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    for m in messages:
        console.print(terminal(m))


# ---------------------------------------------------------------- report


@main.command("report")
@click.argument("sweeps", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--benchmark", "--split", "split", default=None, help="Only this split: lite, medium, high, all, mini, dev.")
@click.option("--format", "fmt", type=click.Choice(["md", "html", "csv"]), default="md", show_default=True,
              help="md: the summary; html: the full report with figures; csv: the leaderboard's numbers.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here instead of printing.")
@click.option("--missing", default="pad", show_default=True,
              help="Missing (competition, seed) cells: pad = counted as failures (upstream's --pad-missing); "
                   "complete-seeds = only the seeds every competition completed (upstream's default).")
def report_cmd(sweeps: tuple[Path, ...], split: str | None, fmt: str, output: Path | None, missing: str) -> None:
    """Leaderboard, scaling studies and figures of one or more sweeps (combined: later sweeps add seeds)."""
    from hpc_mle import analysis, audit, report

    dirs = [_sweep_or_fail(s) for s in sweeps]
    split = {"low": "lite", "split75": "all"}.get(split, split)
    if split is not None and split not in analysis.SPLITS:
        _fail(f"unknown split {split!r}; use one of {', '.join(analysis.SPLITS)}")
    if missing not in analysis.MISSING_MODES:
        _fail(f"--missing {missing!r} is unknown; use one of {', '.join(analysis.MISSING_MODES)}")
    results = audit.mark_flagged(analysis.load_many(dirs), dirs)
    built = report.build_report(results, "Sweeps " + ", ".join(d.name for d in dirs), split, missing=missing,
                                sweep_dirs=dirs)  # with each sweep's audit status (audit.json) and familiarity study
    text = {"md": lambda: report.render_markdown(built, figure_dir=None), "html": lambda: report.render_html(built),
            "csv": lambda: report.render_csv(built)}[fmt]()
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {terminal(output)}")
    else:
        click.echo(text)


@main.command("export-leaderboard")
@click.argument("sweeps", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for runs/, experiments/splits/, README_rows.md, provenance.json and DISCLOSURE.md.")
@click.option("--missing", default="pad", show_default=True,
              help="Missing (competition, seed) cells in README_rows.md: pad or complete-seeds (as `report`).")
def export_leaderboard_cmd(sweeps: tuple[Path, ...], out: Path, missing: str) -> None:
    """Upstream's leaderboard submission layout for one or more sweeps, with provenance and disclosure."""
    from hpc_mle import analysis, export

    dirs = [_sweep_or_fail(s) for s in sweeps]
    if missing not in analysis.MISSING_MODES:
        _fail(f"--missing {missing!r} is unknown; use one of {', '.join(analysis.MISSING_MODES)}")
    try:
        done = export.export_leaderboard(dirs, out, missing)
    except ValueError as exc:
        _fail(str(exc))
    console.print(terminal(f"wrote {done['run_groups']} run group(s) for split(s) {', '.join(done['splits'])} "
                           f"into {out}"))
    for line in done["checks"]:
        console.print(terminal(f"  check in a clone of openai/mle-bench: {line}"))


@main.command("launch", context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                          "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def launch_cmd(args: tuple[str, ...]) -> None:
    """Plan and run or submit a study: the same as `python -m hpc_mle.launch ARGS` (--help lists its options)."""
    from hpc_mle import launch

    launch.main(list(args))


# `hpc-mle scaffolds venv NAME`: a scaffold's own environment (AIDE's pins clash with ours).
from hpc_mle.scaffold_env import scaffolds as _scaffolds  # noqa: E402

main.add_command(_scaffolds)


if __name__ == "__main__":
    main()
