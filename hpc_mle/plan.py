"""From configs to a plan: the sweep's attempts, their stable ids, resource groups, the manifest.

An attempt is (competition, scaffold, model, seed, runtime, hardware, benchmark version); its id is
a hash of exactly those, and its folder `attempts/<id>/` follows from the id, never from a job
number, so relaunching the same sweep finds the same folders and skips what is done.
"""

from __future__ import annotations

import copy
import difflib
import fcntl
import hashlib
import itertools
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import OverrideType
from omegaconf import DictConfig, OmegaConf

from hpc_mle import competitions, paths
from hpc_mle.config import (
    AUDIT_MODES,
    DESCRIPTIONS,
    MISSING_MODES,
    PlanError,  # re-exported with duration_s and format_duration: callers use plan.*
    duration_s,
    format_duration,
)
from hpc_mle.config import register as _register_schema
from hpc_mle.files import atomic_write_json, atomic_write_text
from hpc_mle.grading import GRADING_MODES

CONF_DIR = paths.REPO_ROOT / "conf"
MANIFEST = "manifest.csv"
SWEEP_FILE = "sweep.json"
LOCK_FILE = ".lock"
# Options that change how a launch behaves, not what it studies: they do not change the sweep's folder.
NOT_IDENTIFYING = {"dry_run", "retry_agent_failures", "cluster.max_parallel", "cluster.array_throttle"}


def runtime_label(name: str, budget_s: float) -> str:
    """The runtime label an attempt is filed under, from the budget it actually gets.

    `runtime=10m runtime.time_limit=30s` is a 30 s study, not a 10-minute one: a label that names a
    duration other than the budget is replaced by the budget ('30s'); a named runtime (conf/runtime/NAME.yaml)
    whose time limit was overridden gets the budget appended ('long-30s'). Different budgets never share a label.
    """
    try:
        return name if duration_s(name) == budget_s else format_duration(budget_s)
    except PlanError:
        pass
    conf = CONF_DIR / "runtime" / f"{name}.yaml"
    try:
        default = duration_s(OmegaConf.load(conf)["time_limit"]) if conf.is_file() else budget_s
    except (PlanError, KeyError, ValueError):
        default = None
    return name if default == budget_s else f"{name}-{format_duration(budget_s)}"


# ---------------------------------------------------------------- sweeps


def expand(overrides: list[str], multirun: bool) -> list[list[str]]:
    """Hydra's sweep grammar (a,b / range(n) / glob) expanded to one override list per job."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    axes: list[list[str]] = []
    for o in parsed:
        if o.is_sweep_override():
            if not multirun:
                raise PlanError(f"'{o.input_line}' sweeps over values: add -m (multirun) to sweep")
            key = o.get_key_element()
            axes.append([f"{key}={v}" for v in o.sweep_string_iterator()])
        else:
            axes.append([o.input_line])
    return [list(combo) for combo in itertools.product(*axes)] if axes else [[]]


def _is_plain_value(o, conf_dir: Path = CONF_DIR) -> bool:
    """`key=value` that sets a field (not a config group choice, not +/~): OmegaConf can apply it."""
    return o.type == OverrideType.CHANGE and o.package is None and not (conf_dir / o.key_or_group).is_dir()


def compose_all(jobs: list[list[str]], conf_dir: Path = CONF_DIR) -> list[DictConfig]:
    """One config per job. Hydra composes once per distinct set of group choices (it costs ~0.2 s);
    plain value overrides such as `seed=3` are applied to a copy, with the schema's type checks.
    `conf_dir`: conf/, or an overlay of it with site configs (config.overlay)."""
    _register_schema()
    parser = OverridesParser.create()
    cache: dict[tuple[str, ...], DictConfig] = {}
    out = []
    with initialize_config_dir(config_dir=str(conf_dir), version_base=None):
        for job in jobs:
            parsed = parser.parse_overrides(job)
            plain = [o for o in parsed if _is_plain_value(o, conf_dir)]
            rest = tuple(o.input_line for o in parsed if not _is_plain_value(o, conf_dir))
            if rest not in cache:
                cache[rest] = compose(config_name="config", overrides=list(rest))
            cfg = copy.deepcopy(cache[rest])
            for o in plain:
                try:
                    OmegaConf.update(cfg, o.key_or_group, o.value(), merge=False)
                except Exception as exc:  # OmegaConf names the key and the expected type
                    raise PlanError(f"override '{o.input_line}': {exc}".splitlines()[0]) from None
            out.append(cfg)
    return out


# ---------------------------------------------------------------- attempts


@dataclass(frozen=True)
class Attempt:
    id: str
    competition_id: str
    scaffold: str
    model: str
    seed: int
    runtime: str
    hardware: str
    spec_version: int
    benchmark: str
    competition_status: str
    time_limit_s: float
    snapshot_interval_s: float
    slurm_minutes: int
    gpus: int
    cpus: int
    mem_gb: int
    gpu_type: str | None
    group: str
    config_id: str  # its composed config: configs/<config_id>.json in the sweep folder
    description: str = "original"  # benchmark.description: which description the agent is given

    @property
    def identity(self) -> dict[str, Any]:
        return identity(self.competition_id, self.scaffold, self.model, self.seed, self.runtime, self.hardware,
                        self.spec_version, self.description)


def identity(competition_id, scaffold, model, seed, runtime, hardware, spec_version,
             description: str = "original") -> dict[str, Any]:
    """What makes an attempt itself; the original description is left out so ids planned before the
    description axis existed stay the same."""
    ident = {"competition": competition_id, "scaffold": scaffold, "model": model, "seed": int(seed),
             "runtime": runtime, "hardware": hardware, "benchmark_version": int(spec_version)}
    if description != "original":
        ident["description"] = description
    return ident


def attempt_id(ident: dict[str, Any]) -> str:
    blob = json.dumps(ident, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def group_key(cfg: DictConfig, slurm_minutes: int) -> str:
    """Attempts that share resources share one array: GPUs, CPUs, memory, time, partition, image."""
    parts = [f"gpu{cfg.hardware.gpus}", f"cpu{cfg.hardware.cpus}", f"mem{cfg.hardware.mem_gb}g",
             f"t{slurm_minutes}m", cfg.cluster.partition or "default"]
    if cfg.hardware.gpu_type:
        parts.append(cfg.hardware.gpu_type)
    return "-".join(str(p) for p in parts)


def benchmark_ids(cfg: DictConfig) -> list[str]:
    try:
        ids = competitions.split_ids(cfg.benchmark.split)
    except KeyError as exc:
        raise PlanError(f"benchmark.split: {exc.args[0]}") from None
    if cfg.benchmark.competitions:
        unknown = [c for c in cfg.benchmark.competitions if c not in ids]
        if unknown:
            close = {c: difflib.get_close_matches(c, ids, n=1) for c in unknown}
            hint = "; ".join(f"{c}: did you mean {m[0]}?" for c, m in close.items() if m)
            raise PlanError(f"benchmark.competitions: {', '.join(unknown)} are not in split {cfg.benchmark.split!r}"
                            + (f" ({hint})" if hint else f"; it has {', '.join(ids[:8])}"
                               + (" ..." if len(ids) > 8 else "")))
        ids = [c for c in ids if c in set(cfg.benchmark.competitions)]
    reg = competitions.registry()
    return [c for c in ids if reg[c].status.state not in set(cfg.benchmark.exclude_status)]


def config_id(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def plan_attempts(cfgs: list[DictConfig]) -> list[Attempt]:
    """Every (sweep job x competition) attempt, deduplicated by id, in a stable order."""
    reg = competitions.registry()
    seen: dict[str, Attempt] = {}
    for cfg in cfgs:
        plain = OmegaConf.to_container(cfg, resolve=True)  # read once: OmegaConf attribute access is slow
        hw, rt = plain["hardware"], plain["runtime"]
        for key, allowed in (("grading.mode", GRADING_MODES), ("analysis.missing", tuple(MISSING_MODES)),
                             ("benchmark.description", DESCRIPTIONS), ("analysis.audit", AUDIT_MODES)):
            group, name = key.split(".")
            if plain[group][name] not in allowed:
                raise PlanError(f"{key}={plain[group][name]!r} is unknown. Fix: use one of {', '.join(allowed)}.")
        if plain["analysis"]["audit"] == "judge" and not plain["analysis"]["audit_judge"]:
            raise PlanError("analysis.audit=judge needs a judge model. Fix: analysis.audit_judge=gpt4o (a conf/model "
                            "name) or analysis.audit_judge=/path/to/model.yaml")
        budget = duration_s(rt["time_limit"])
        # An attempt on a served model may first wait for its server (serve_conf.wait), outside its budget.
        serve_wait = duration_s(plain["model"]["serve_conf"]["wait"]) if plain["model"].get("serve") else 0
        minutes = math.ceil((budget + duration_s(rt["margin"]) + serve_wait) / 60)
        shared = dict(
            scaffold=plain["scaffold"]["name"], model=plain["model"]["name"], seed=int(plain["seed"]),
            runtime=runtime_label(rt["name"], budget), hardware=hw["name"], benchmark=plain["benchmark"]["name"], time_limit_s=budget,
            snapshot_interval_s=duration_s(rt["snapshot_interval"]), slurm_minutes=minutes, gpus=hw["gpus"],
            cpus=hw["cpus"], mem_gb=hw["mem_gb"], gpu_type=hw["gpu_type"], group=group_key(cfg, minutes),
            config_id=config_id(plain), description=plain["benchmark"]["description"],
        )
        for cid in benchmark_ids(cfg):
            spec = reg[cid]
            aid = attempt_id(identity(cid, shared["scaffold"], shared["model"], shared["seed"], shared["runtime"],
                                      shared["hardware"], spec.version, shared["description"]))
            if aid not in seen:
                seen[aid] = Attempt(id=aid, competition_id=cid, spec_version=spec.version,
                                    competition_status=spec.status.state, **shared)
    return list(seen.values())


def sweep_name(cfgs: list[DictConfig], jobs: list[list[str]]) -> str:
    """The configured name, else one derived from the sweep itself: same command, same folder."""
    if cfgs[0].sweep_name:
        return str(cfgs[0].sweep_name)
    def identifying(job: list[str]) -> list[str]:
        return sorted(o for o in job if o.split("=", 1)[0].lstrip("+~") not in NOT_IDENTIFYING)

    digest = hashlib.sha256(json.dumps(sorted(map(identifying, jobs))).encode()).hexdigest()[:8]
    scaffolds = "+".join(sorted({str(c.scaffold.name) for c in cfgs}))
    return f"{cfgs[0].benchmark.name}-{scaffolds}-{digest}"


# ---------------------------------------------------------------- files of a sweep


def attempt_dir(sweep_dir: Path, aid: str) -> Path:
    return Path(sweep_dir) / "attempts" / aid


def write_plan(sweep_dir: Path, cfgs: list[DictConfig], jobs: list[list[str]], attempts: list[Attempt]) -> None:
    """The manifest (one row per attempt) and each distinct composed config once, atomically."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    for cfg in cfgs:
        plain = OmegaConf.to_container(cfg, resolve=True)
        path = sweep_dir / "configs" / f"{config_id(plain)}.json"
        if not path.is_file():
            atomic_write_json(path, plain)
    old = read_manifest(sweep_dir)
    rows = pd.DataFrame([asdict(a) for a in attempts])
    if old is not None and len(old):
        keep = ["id", "array_job_id", "task_id", "job_id", "submitted_at"]
        rows = rows.merge(old[[c for c in keep if c in old.columns]], on="id", how="left")
        rows = pd.concat([rows, old[~old["id"].isin(rows["id"])]], ignore_index=True)  # earlier launches' attempts
    for col in ("array_job_id", "task_id", "job_id", "submitted_at"):
        if col not in rows.columns:
            rows[col] = None
    rows["path"] = [str(attempt_dir(sweep_dir, i)) for i in rows["id"]]
    atomic_write_text(sweep_dir / MANIFEST, rows.to_csv(index=False))
    sweep = read_sweep(sweep_dir) or {"launches": []}
    sweep.update(jobs=jobs, name=sweep_dir.name)
    atomic_write_json(sweep_dir / SWEEP_FILE, sweep)


def planned(sweep_dir: Path, attempt_id: str) -> dict[str, Any]:
    """An attempt's manifest row with its composed config under "config"."""
    manifest = read_manifest(sweep_dir)
    rows = manifest[manifest["id"] == attempt_id]
    if rows.empty:
        raise KeyError(f"attempt {attempt_id} is not in {Path(sweep_dir) / MANIFEST}")
    row = {k: (None if not isinstance(v, str) and pd.isna(v) else v) for k, v in rows.iloc[0].to_dict().items()}
    row["config"] = json.loads((Path(sweep_dir) / "configs" / f"{row['config_id']}.json").read_text())
    return row


def read_manifest(sweep_dir: Path) -> pd.DataFrame | None:
    path = Path(sweep_dir) / MANIFEST
    if not path.is_file():
        return None
    # Hashes are text: a config id such as 64e862241214 would otherwise be read as a float (inf).
    return pd.read_csv(path, dtype={"id": str, "config_id": str, "array_job_id": str, "task_id": "Int64",
                                    "job_id": str})


def read_sweep(sweep_dir: Path) -> dict | None:
    try:
        return json.loads((Path(sweep_dir) / SWEEP_FILE).read_text())
    except (OSError, ValueError):
        return None


def update_manifest(sweep_dir: Path, submitted: dict[str, str], when: str) -> None:
    """Record which job runs each submitted attempt: `<array>_<i>`, or `<job>` for a plain job."""
    rows = read_manifest(sweep_dir)
    jobs = rows["id"].map(submitted)
    mask = jobs.notna()
    for col in ("array_job_id", "job_id", "submitted_at"):
        rows[col] = rows[col].astype(object) if col in rows else None
    rows.loc[mask, "job_id"] = list(jobs[mask])
    rows.loc[mask, "array_job_id"] = [j.split("_")[0] for j in jobs[mask]]
    rows.loc[mask, "task_id"] = pd.array([int(j.split("_")[1]) if "_" in j else None for j in jobs[mask]],
                                         dtype="Int64")
    rows.loc[mask, "submitted_at"] = when
    atomic_write_text(Path(sweep_dir) / MANIFEST, rows.to_csv(index=False))


@contextmanager
def sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """Held by launch and resume: two at once on one sweep could both submit the same attempts."""
    path = Path(sweep_dir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise PlanError(f"another launch/resume of this sweep is running (pid {holder}; lock {path}). "
                            "Fix: wait for it to finish, then run this again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
