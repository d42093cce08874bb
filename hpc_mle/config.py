"""The typed schema of `conf/`: Hydra composes YAML groups into these dataclasses.

Because the primary config starts from this schema, a typo (`hardware.gpu=2`, `cluster.partiton=`)
fails at once with the key named, before anything is planned or submitted.
"""

from __future__ import annotations

import difflib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, get_origin, get_type_hints

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class BudgetConf:
    """Per-attempt limits the metering proxy enforces (null = no limit)."""

    max_tokens: int | None = None  # input + output tokens over the whole attempt
    max_cost_usd: float | None = None


@dataclass
class ServeConf:
    """How to serve an open model on the cluster (`serve: vllm`): one server job per model per sweep.

    The server job writes `<sweep>/serve/<model name>/address.json`; attempts wait (up to `wait`) for
    it and the server's /health, then talk to `http://host:port/v1`. A teardown job cancels it.
    """

    gpus: int = 1  # also vLLM's --tensor-parallel-size
    gpu_type: str | None = None
    cpus: int = 8
    mem_gb: int = 64
    # the server job's --time: auto = the attempts' waves (ceil(attempts / cluster.array_throttle) x their
    # --time) + 30 min, capped at the partition's MaxTime; a teardown job cancels it when the attempts end
    time: str = "auto"
    port: int = 8000  # a free one is chosen at start if this one is taken on the node
    image: str | None = None  # an Apptainer image with vLLM; null = `vllm` on the node's PATH
    args: list[str] = field(default_factory=list)  # extra `vllm serve` arguments
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the server, e.g. HF_HOME
    wait: str = "30m"  # how long an attempt waits for the server; added to the attempts' Slurm --time
    # For tests only: a program run in place of `vllm serve` (it gets the same arguments). null = vLLM.
    command: list[str] | None = None


@dataclass
class ModelConf:
    """An LLM the scaffold drives (`none` for agents without one).

    The key never leaves the host: the metering proxy reads `api_key_env` from its own environment
    and the sandbox only gets the proxy's address and a per-attempt token.
    """

    name: str = "none"
    provider: str = "none"  # none | openai | anthropic | openai-compatible | vllm
    model: str | None = None
    api_key_env: str | None = None  # the variable holding the key; its value never leaves the host
    base_url: str | None = None
    api: str = "chat"  # chat (chat completions) | responses | messages (Anthropic)
    sampling: dict[str, Any] = field(default_factory=dict)  # temperature, top_p, max_tokens, ...
    price: str | None = None  # key of hpc_mle/llm/prices.csv; null = `model`
    budget: BudgetConf = field(default_factory=BudgetConf)
    serve: str | None = None  # null | vllm
    serve_conf: ServeConf = field(default_factory=ServeConf)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScaffoldConf:
    name: str = MISSING
    command: list[str] = MISSING
    agent_files: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    image: str | None = None
    venv: str | None = None  # a scaffold venv built by `hpc-mle scaffolds venv NAME` (bwrap/none sandboxes)


@dataclass
class BenchmarkConf:
    name: str = MISSING
    split: str = MISSING  # lite | medium | high | all | dev | mini
    competitions: list[str] | None = None  # a subset of the split; null = all of it
    exclude_status: list[str] = field(default_factory=lambda: ["excluded"])
    # original | obfuscated: the competition's own description, or our rewrite without its name (the
    # contamination study; sweep both with benchmark.description=original,obfuscated)
    description: str = "original"


@dataclass
class RuntimeConf:
    name: str = MISSING
    time_limit: str = MISSING  # the agent's budget: 10m, 24h, 100h
    snapshot_interval: str = "1h"
    margin: str = "15m"  # added to the budget for Slurm's --time: staging, teardown, the warning signal


@dataclass
class HardwareConf:
    name: str = MISSING
    gpus: int = 0
    cpus: int = 2
    mem_gb: int = 8
    gpu_type: str | None = None  # a gres type (a100, h100) where the site needs one
    label: str | None = None  # what HARDWARE tells the agent; null = detected on the node


@dataclass
class LimitsConf:
    """What one attempt may use of the host, whoever starts it (enforced outside the agent's reach)."""

    disk_gb: float = 50.0  # all of its writable folders together (submission, logs, code, agent, /tmp)
    file_size_gb: float = 20.0  # any one file it writes (RLIMIT_FSIZE)
    processes: int = 4096  # processes and threads of the agent's uid (RLIMIT_NPROC)
    open_files: int = 65536  # per process (RLIMIT_NOFILE)
    memory_gb: float | None = None  # null: Slurm's cgroup on a cluster, else the whole machine
    files: int = 1_000_000  # files and folders in its writable folders (a quota counts bytes, not inodes)
    shm_gb: float = 16.0  # /dev/shm, which is memory (DataLoader workers use it); the rest of / is read-only
    agent_uid: int = 65534  # started as root, the agent runs as this unprivileged uid (nobody)


@dataclass
class SandboxConf:
    kind: str = "bwrap"  # bwrap | apptainer | none
    image: str | None = None  # apptainer: the .sif (else the scaffold's image)
    network: bool = False
    limits: LimitsConf = field(default_factory=LimitsConf)


@dataclass
class ClusterConf:
    name: str = MISSING
    kind: str = "local"  # local: run here and wait; slurm: submit and return
    max_parallel: int = 2  # local: attempts at once
    partition: str | None = None
    data_partition: str | None = None  # `prepare --slurm`: a partition whose nodes reach the internet
    data_time: str = "12h"  # `prepare --slurm`: the download job's --time
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gpu_syntax: str = "gres"  # gres (--gres=gpu[:type]:N) | gpus-per-node (--gpus-per-node=N)
    setup: list[str] = field(default_factory=list)  # lines run before the task, e.g. module load apptainer
    array_throttle: int = 64  # at most this many agent tasks of the sweep at once (%N, shared by its arrays)
    max_restarts: int = 3  # requeues of one attempt (preemption, node failure) before giving up
    signal_delay_s: int = 120  # Slurm warns this long before --time so the attempt can save its work
    grading_tasks: int = 8  # the grading array's size (each grades a slice of the attempts)
    additional: dict[str, Any] = field(default_factory=dict)  # any other #SBATCH --key=value
    wckey: str | None = None  # null or "": no --wckey (submitit's default `submitit` is dropped); else this value
    max_array_tasks: int | None = None  # tasks per agent array at most (also below the site's MaxArraySize)
    per_gpu_requests: bool = False  # GPU jobs ask --cpus-per-gpu/--mem-per-gpu instead of --cpus-per-task/--mem
    over_max_time: str = "segment"  # --time above MaxTime: segment (cap, requeue with the budget left) | refuse
    allow_home_data: bool = False  # keep prepared data under $HOME (refused by default: paths.home_data_problem)
    status_interval_s: float = 30.0  # agent time persisted this often (no fsync): a crash loses at most this much
    stop_bound_s: float = 20.0  # the whole stop (TERM, grace, KILL, final status) ends within this: < KillWait


@dataclass
class GradingConf:
    """How a sweep's submissions are graded: v1 (as MLE-bench v1) or corrected (grading.GRADING_MODES)."""

    mode: str = "v1"


MISSING_MODES = {  # how missing (competition, seed) cells count; the first is the default
    "pad": "missing (competition, seed) cells padded as failures (upstream's --pad-missing)",
    "complete-seeds": "only the seeds every competition completed (upstream's default; none if a competition "
                      "has no graded attempt)",
}
DESCRIPTIONS = ("original", "obfuscated")  # benchmark.description: the contamination study's axis
AUDIT_MODES = ("off", "checks", "judge")  # analysis.audit: none; deterministic checks; checks and a judge model


@dataclass
class AnalysisConf:
    """How the analysis job aggregates missing (competition, seed) cells (MISSING_MODES), and whether it audits
    the attempts for rule violations first (AUDIT_MODES; `audit_judge`: a conf/model name or a model YAML)."""

    missing: str = "pad"
    audit: str = "checks"
    audit_judge: str | None = None


@dataclass
class Config:
    model: ModelConf = MISSING
    scaffold: ScaffoldConf = MISSING
    benchmark: BenchmarkConf = MISSING
    runtime: RuntimeConf = MISSING
    hardware: HardwareConf = MISSING
    sandbox: SandboxConf = MISSING
    cluster: ClusterConf = MISSING
    grading: GradingConf = field(default_factory=GradingConf)
    analysis: AnalysisConf = field(default_factory=AnalysisConf)
    seed: int = 0
    output_root: str = "runs"
    sweep_name: str | None = None  # null: derived from the sweep, so relaunching finds the same folder
    data_dir: str | None = None  # null: $HPC_MLE_DATA or the user cache dir
    dry_run: bool = False
    retry_agent_failures: bool = False


def register() -> None:
    ConfigStore.instance().store(name="config_schema", node=Config)


register()


# ---------------------------------------------------------------- where configs come from, and their mistakes


class ConfigError(ValueError):
    """A config mistake worded for the user: the key or file, what is wrong, and the fix."""


class PlanError(ValueError):
    """The sweep cannot be planned as asked. Defined here, under `hpc_mle.plan` (which re-exports it),
    because `duration_s` raises it and config validation reads durations."""


def duration_s(text: str | int | float) -> float:
    """'90', '90s', '10m', '1.5h', '24h', '2d' -> seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = str(text).strip().lower()
    try:
        return float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise PlanError(f"{text!r} is not a duration; use e.g. 90s, 10m, 24h") from None


def format_duration(seconds: float) -> str:
    """600 -> '10m', 30 -> '30s', 86400 -> '24h': the shortest exact spelling, in the units of conf/runtime."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


GROUP_FILE_SUFFIXES = (".yaml", ".yml")


def config_dirs(extra: list[Path] | tuple[Path, ...] = ()) -> list[Path]:
    """Where options are looked up, lowest priority first: conf/, the user conf dir, then each --config-dir.

    A later directory's `cluster/slurm.yaml` replaces an earlier one's: a site config may shadow ours."""
    from hpc_mle import paths

    dirs = [paths.REPO_ROOT / "conf"]
    user = paths.user_conf_dir()
    if user.is_dir():
        dirs.append(user)
    for d in extra:
        d = Path(d).expanduser().resolve()
        if not d.is_dir():
            raise ConfigError(f"--config-dir {d}: no such directory. Fix: a folder holding group folders such as "
                              f"cluster/mysite.yaml (or put them in {user})")
        dirs.append(d)
    return dirs


def group_options(dirs: list[Path], files: dict[tuple[str, str], Path] | None = None) -> dict[str, dict[str, Path]]:
    """group -> option name -> the file that provides it (the highest-priority one)."""
    groups: dict[str, dict[str, Path]] = {}
    for d in dirs:
        for sub in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for f in sorted(sub.iterdir()):
                if f.suffix in GROUP_FILE_SUFFIXES and f.is_file():
                    groups.setdefault(sub.name, {})[f.stem] = f
    for (group, name), f in (files or {}).items():
        groups.setdefault(group, {})[name] = f
    return groups


def take_group_files(args: list[str], groups: set[str]) -> tuple[list[str], dict[tuple[str, str], Path]]:
    """`cluster=/abs/mysite.yaml` -> `cluster=mysite`, with the file remembered for the composition.

    Hydra's grammar has no file paths as options; the stem becomes the option's name (and so the sweep's)."""
    out, files = [], {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or key not in groups or not (value.endswith(GROUP_FILE_SUFFIXES) or "/" in value):
            out.append(arg)
            continue
        path = Path(value).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"{arg}: no such file {path}. Fix: a YAML file with the fields of conf/{key}/*.yaml, "
                              f"or {key}=NAME of an option (python -m hpc_mle.launch --help lists them)")
        if files.get((key, path.stem), path) != path:
            raise ConfigError(f"{arg}: another {key} file named {path.stem}.yaml is already used "
                              f"({files[(key, path.stem)]}). Fix: rename one of them")
        files[(key, path.stem)] = path
        out.append(f"{key}={path.stem}")
    return out, files


@contextmanager
def overlay(dirs: list[Path], files: dict[tuple[str, str], Path]) -> Iterator[Path]:
    """One temporary config dir of links, later sources replacing earlier ones, for Hydra to compose from."""
    with tempfile.TemporaryDirectory(prefix="hpcmle-conf-") as tmp:
        root = Path(tmp)
        for d in dirs:
            for f in d.rglob("*"):
                if f.is_file() and f.suffix in GROUP_FILE_SUFFIXES:
                    _link(root / f.relative_to(d), f)
        for (group, name), f in files.items():
            _link(root / group / f"{name}.yaml", f)
        yield root


def _link(at: Path, target: Path) -> None:
    """`at` as `.yaml` (the only suffix Hydra reads), replacing what an earlier source put there."""
    at = at.with_suffix(".yaml")
    at.parent.mkdir(parents=True, exist_ok=True)
    at.unlink(missing_ok=True)
    at.symlink_to(target.resolve())


# ---------------------------------------------------------------- Hydra's own keys

# Keys of Hydra's app config that mean something else here: what to use instead.
HYDRA_INSTEAD = {
    "hydra.run.dir": "output_root=DIR (each sweep is written to <output_root>/<sweep_name>)",
    "hydra.sweep.dir": "output_root=DIR and sweep_name=NAME (the sweep folder is <output_root>/<sweep_name>)",
    "hydra.sweep.subdir": "nothing: each attempt has its own folder <sweep>/attempts/<id>",
    "hydra.job.name": "sweep_name=NAME",
    "hydra.launcher.partition": "cluster.partition=NAME",
    "hydra.launcher.account": "cluster.account=NAME",
    "hydra.launcher.qos": "cluster.qos=NAME",
    "hydra.launcher.constraint": "cluster.constraint=FEATURE",
    "hydra.launcher.timeout_min": "runtime.time_limit=DURATION (Slurm's --time adds runtime.margin)",
    "hydra.launcher.cpus_per_task": "hardware.cpus=N",
    "hydra.launcher.gpus_per_node": "hardware.gpus=N",
    "hydra.launcher.mem_gb": "hardware.mem_gb=N",
    "hydra.launcher.array_parallelism": "cluster.array_throttle=N",
    "hydra.launcher.setup": "cluster.setup='[module load apptainer]'",
    "hydra.launcher.additional_parameters": "cluster.additional='{key: value}'",
    "hydra.launcher": "cluster=slurm (or your site config), with cluster.partition/account/qos",
    "hydra/launcher": "cluster=slurm (or your site config): this launcher submits Slurm arrays itself",
    "hydra/sweeper": "-m with Hydra's basic sweep values: a,b  range(n)  glob(*)",
    "hydra.sweeper": "-m with Hydra's basic sweep values: a,b  range(n)  glob(*)",
}
# Keys that change nothing here: accepted with a note.
HYDRA_HARMLESS = {
    "hydra.job.chdir": "the launcher never changes directory",
    "hydra.verbose": "the launcher's messages are not Hydra logging",
    "hydra.output_subdir": "no .hydra folder is written; <sweep>/configs/ keeps every composed config",
    "hydra/job_logging": "the launcher configures no Python logging",
    "hydra/hydra_logging": "the launcher configures no Python logging",
    "hydra.job_logging": "the launcher configures no Python logging",
    "hydra.hydra_logging": "the launcher configures no Python logging",
}


@dataclass
class HydraKeys:
    """What `hydra.*` arguments asked for: extra config dirs, multirun, and notes for the user."""

    searchpath: list[Path] = field(default_factory=list)
    multirun: bool = False
    notes: list[str] = field(default_factory=list)


def take_hydra_keys(args: list[str]) -> tuple[list[str], HydraKeys]:
    """Remove `hydra.*` / `hydra/*` arguments: apply the ones with a meaning here, note the harmless ones,
    and refuse the rest naming what to use instead."""
    keys, rest = HydraKeys(), []
    for arg in args:
        key, _, value = arg.partition("=")
        key = key.lstrip("+~")
        if not key.startswith(("hydra.", "hydra/")):
            rest.append(arg)
        elif key == "hydra.searchpath":
            keys.searchpath += [_search_dir(arg, v) for v in _list_value(value)]
        elif key == "hydra.mode":
            keys.multirun = value.strip().upper() == "MULTIRUN"
        elif (why := _longest_prefix(key, HYDRA_HARMLESS)) is not None:
            keys.notes.append(f"{arg}: ignored ({why})")
        elif (instead := _longest_prefix(key, HYDRA_INSTEAD)) is not None:
            raise ConfigError(f"{arg}: this launcher runs no Hydra app, so {key} has no effect. Use {instead}")
        else:
            known = [*HYDRA_INSTEAD, *HYDRA_HARMLESS, "hydra.searchpath", "hydra.mode"]
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]}?" if close else ""
            raise ConfigError(f"{arg}: {key} is not used by this launcher (it runs no Hydra app).{hint} Sweep "
                              "settings are top-level: output_root, sweep_name, data_dir; see --help")
    return rest, keys


def _longest_prefix(key: str, table: dict[str, str]) -> str | None:
    hits = [k for k in table if key == k or key.startswith(k + ".")]
    return table[max(hits, key=len)] if hits else None


def _list_value(value: str) -> list[str]:
    inner = value.strip().removeprefix("[").removesuffix("]")
    return [v.strip().strip("'\"") for v in inner.split(",") if v.strip()]


def _search_dir(arg: str, entry: str) -> Path:
    if entry.startswith("pkg://"):
        raise ConfigError(f"{arg}: {entry} is a Python package path. Fix: a folder, e.g. "
                          "hydra.searchpath=[/path/to/conf] or --config-dir /path/to/conf")
    return Path(entry.removeprefix("file://"))


# ---------------------------------------------------------------- misspelled keys and options


def _schema_fields(cls: type) -> dict[str, Any]:
    """Field name -> its type (the annotations are strings under `from __future__ import annotations`)."""
    return get_type_hints(cls)


def _is_open(tp: Any) -> bool:
    """A dict or Any field: any sub-key is allowed (sampling, env, extra, additional)."""
    return tp is Any or get_origin(tp) is dict or tp is dict


def check_key(key: str, line: str, groups: set[str]) -> None:
    """Refuse a key the schema does not have, suggesting the closest ones (`modle` -> `model`)."""
    cls: type = Config
    parts = key.split(".")
    for i, part in enumerate(parts):
        hints = _schema_fields(cls)
        if part not in hints:
            where = ".".join(parts[:i]) or "the top level"
            names = sorted(hints) + (sorted(groups - set(hints)) if i == 0 else [])
            close = difflib.get_close_matches(part, names, n=3, cutoff=0.6)
            owner = "Config" if i == 0 else cls.__name__
            fixed = [line.replace(key, ".".join([*parts[:i], c, *parts[i + 1:]]), 1) for c in close]
            hint = f" Did you mean {' or '.join(fixed)}?" if fixed else f" Keys of {where}: {', '.join(names)}"
            raise ConfigError(f"override '{line}': Key '{part}' not in '{owner}'.{hint}")
        tp = hints[part]
        if _is_open(tp):
            return
        if not is_dataclass(tp):
            if i < len(parts) - 1:
                raise ConfigError(f"override '{line}': {'.'.join(parts[:i + 1])} is a value, not a section; "
                                  f"set it as {'.'.join(parts[:i + 1])}=VALUE")
            return
        cls = tp


def check_option(group: str, value: str, line: str, options: dict[str, dict[str, Path]]) -> None:
    """Refuse an option no config dir has (`model=gpt-4o`), listing the closest and where options come from."""
    names = sorted(options.get(group, {}))
    if value in names:
        return
    close = difflib.get_close_matches(value, names, n=3, cutoff=0.5)
    hint = f"Did you mean {' or '.join(f'{group}={c}' for c in close)}? " if close else ""
    raise ConfigError(f"override '{line}': Could not find '{group}/{value}'. {hint}Options: {', '.join(names)}. "
                      f"A site config: {group}=/path/to/{value}.yaml, or put {value}.yaml in a {group}/ folder of "
                      "the user conf dir or --config-dir")


def check_overrides(jobs: list[list[str]], options: dict[str, dict[str, Path]]) -> None:
    """Every distinct override of the sweep names a known key or option, before anything is composed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    seen: set[str] = set()
    for job in jobs:
        for o in parser.parse_overrides([x for x in job if x not in seen]):
            seen.add(o.input_line)
            key = o.key_or_group
            if key in options and o.package is None:
                if isinstance(o.value(), str):
                    check_option(key, o.value(), o.input_line, options)
            elif not o.input_line.startswith("+"):  # `+key=` adds a key on purpose
                check_key(key, o.input_line, set(options))


# ---------------------------------------------------------------- numbers and durations

# Durations: (the smallest allowed in seconds, why).
DURATIONS = {
    "runtime.time_limit": (1, "the agent's budget"),
    "runtime.snapshot_interval": (1, "how often the submission is snapshotted"),
    "runtime.margin": (0, "added to the budget for Slurm's --time"),
    "cluster.data_time": (60, "the download job's --time"),
    "model.serve_conf.time": (60, "the model server job's --time"),
    "model.serve_conf.wait": (1, "how long an attempt waits for the server"),
}
# Numbers: (the smallest allowed, why). null stays allowed where the schema allows it.
MINIMUMS = {
    "cluster.max_parallel": (1, "attempts at once on this machine"),
    "cluster.array_throttle": (1, "array tasks at once"),
    "cluster.max_restarts": (0, "requeues of one attempt"),
    "cluster.signal_delay_s": (0, "seconds of warning before --time"),
    "cluster.grading_tasks": (1, "the grading array's size"),
    "cluster.max_array_tasks": (1, "tasks per agent array"),
    "cluster.status_interval_s": (1, "seconds between saves of the agent time used"),
    "cluster.stop_bound_s": (5, "seconds for the whole stop (TERM, grace, KILL, final status)"),
    "hardware.gpus": (0, "GPUs per attempt"),
    "hardware.cpus": (1, "CPUs per attempt"),
    "hardware.mem_gb": (1, "memory per attempt in GB"),
    "seed": (0, "the attempt's seed"),
    "model.serve_conf.gpus": (0, "the model server's GPUs"),
    "model.serve_conf.cpus": (1, "the model server's CPUs"),
    "model.serve_conf.mem_gb": (1, "the model server's memory in GB"),
    "model.budget.max_tokens": (1, "tokens per attempt"),
    "model.budget.max_cost_usd": (0.01, "dollars per attempt"),
    "sandbox.limits.disk_gb": (0.01, "GB the agent may write"),
    "sandbox.limits.file_size_gb": (0.01, "GB of one file"),
    "sandbox.limits.processes": (16, "processes and threads of the agent"),
    "sandbox.limits.open_files": (64, "open files per process"),
    "sandbox.limits.memory_gb": (0.1, "GB of memory"),
    "sandbox.limits.files": (100, "files in the agent's folders"),
    "sandbox.limits.shm_gb": (0.01, "GB of /dev/shm"),
}


AUTO_DURATIONS = {"model.serve_conf.time"}  # may be `auto` (hpc_mle.slurm.server_time)


def validate(cfg: Any) -> None:
    """Refuse numbers and durations that cannot work (`runtime.time_limit=-5m`, `cluster.max_parallel=0`)."""
    from omegaconf import OmegaConf

    for key, (least, why) in DURATIONS.items():
        value = OmegaConf.select(cfg, key)
        if value is None or (key in AUTO_DURATIONS and value == "auto"):
            continue
        try:
            seconds = duration_s(value)
        except PlanError:
            raise ConfigError(f"{key}={value}: not a duration ({why}). Fix: e.g. {key}=30m (s, m, h, d)") from None
        if seconds < least:
            raise ConfigError(f"{key}={value}: {why} must be at least {least} s. Fix: e.g. {key}=30m")
    for key, (least, why) in MINIMUMS.items():
        value = OmegaConf.select(cfg, key)
        if value is not None and value < least:
            raise ConfigError(f"{key}={value}: {why}, at least {least:g}. Fix: {key}={least:g} or more")


# ---------------------------------------------------------------- what --help lists

# The settings a user most often changes; the groups' fields are in their conf/<group>/*.yaml.
SETTINGS = {
    "seed": "the seed of the attempts (sweep: -m 'seed=range(8)')",
    "output_root": "where sweeps are written (default runs/; the sweep folder is <output_root>/<sweep_name>)",
    "sweep_name": "the sweep folder's name (default: derived from the command, so a relaunch resumes it)",
    "data_dir": "prepared data (default: $HPC_MLE_DATA or ~/.cache/hpc-mle/data)",
    "runtime.time_limit": "the agent's budget, e.g. 30m, 24h (Slurm's --time adds runtime.margin)",
    "benchmark.competitions": "a subset of the split, e.g. '[mini-churn,mini-digits]'",
    "hardware.gpus|cpus|mem_gb": "what each attempt asks Slurm for",
    "cluster.partition|account|qos": "your site's Slurm settings (or write a site config)",
    "cluster.max_parallel": "cluster=local: attempts at once on this machine",
    "cluster.setup": "lines run in each job before the task, e.g. '[module load apptainer]'",
    "model.budget.max_cost_usd": "stop an attempt's LLM calls past this cost",
    "grading.mode": "v1 (as MLE-bench v1 graded) or corrected",
    "retry_agent_failures": "a relaunch also reruns attempts whose agent failed",
}


def primary_config(dirs: list[Path]) -> Path | None:
    """The config.yaml that will be used: the last config dir that has one (a site may replace ours)."""
    return next((d / "config.yaml" for d in reversed(dirs) if (d / "config.yaml").is_file()), None)


def primary_defaults(dirs: list[Path]) -> dict[str, str]:
    """group -> the default option of the primary config.yaml that will be used."""
    from omegaconf import OmegaConf

    primary = primary_config(dirs)
    if primary is None:
        return {}
    out = {}
    for entry in OmegaConf.to_container(OmegaConf.load(primary)).get("defaults", []):
        if isinstance(entry, dict):
            out.update({str(k): str(v) for k, v in entry.items()})
    return out
