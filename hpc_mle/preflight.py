"""The preflight: what a launch would submit, and whether it can run, checked before anything is submitted.

`--dry-run` prints the whole report; a real launch runs the same checks first and refuses, listing
every problem with its fix, before it writes or submits anything. Data flows one way: the checks read
the plan, the composed configs, the data folder, the environment and (one batched `sinfo` call) the
cluster's nodes; they never submit, write or start anything.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig

from hpc_mle import competitions, paths, prepare, scaffold_env, slurm
from hpc_mle.plan import Attempt
from hpc_mle.slurm_nodes import SLURM_FIX, Node, parse_gres, query_nodes
from hpc_mle.slurm_nodes import parse_sinfo as parse_sinfo  # re-exported: callers and tests use preflight.*
from hpc_mle.slurm_nodes import parse_time_min as parse_time_min

# Scaffolds that never call a language model: `model=` does not change what they do.
NO_MODEL_SCAFFOLDS = ("dummy", "baseline")
KEYED_PROVIDERS = ("openai", "anthropic", "openai-compatible")
CRED_EXPIRE_DEFAULT_S = 120  # Slurm's default job credential lifetime (slurm.conf AuthInfo cred_expire)
DEFAULT_HOLD_S = CRED_EXPIRE_DEFAULT_S + 1  # what Slurm then holds a requeued job (requeue_hold_s)


@dataclass(frozen=True)
class Problem:
    """Something that would make the launch fail or wait forever, and the one-line fix."""

    what: str
    fix: str
    warning: bool = False  # shown, but the launch goes ahead


@dataclass(frozen=True)
class Section:
    title: str
    lines: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class Report:
    sections: list[Section]

    @property
    def problems(self) -> list[Problem]:
        return [p for s in self.sections for p in s.problems if not p.warning]

    @property
    def warnings(self) -> list[Problem]:
        return [p for s in self.sections for p in s.problems if p.warning]

    @property
    def ok(self) -> bool:
        return not self.problems

    def verdict(self) -> str:
        lines = [f"PROBLEM: {p.what}\n    fix: {p.fix}" for p in self.problems]
        lines += [f"WARNING: {p.what}\n    fix: {p.fix}" for p in self.warnings]
        head = ("verdict: ready" if self.ok else f"verdict: REFUSED, {len(self.problems)} problem(s)") + (
            f", {len(self.warnings)} warning(s)" if self.warnings else "")
        return "\n".join([head, *("  " + line for line in lines)])

    def text(self, only: tuple[str, ...] | None = None) -> str:
        """The report as grouped human text; `only`: just those sections, without the verdict."""
        blocks = [s.title + "\n" + "\n".join("  " + line for line in s.lines) for s in self.sections
                  if only is None or s.title in only]
        return "\n\n".join(blocks if only else [*blocks, self.verdict()])


# ---------------------------------------------------------------- jobs and their requests


@dataclass(frozen=True)
class Request:
    cpus: int
    mem_mb: int
    gpus: int
    gpu_type: str
    minutes: float
    partition: str | None

    def describe(self) -> str:
        gpus = f", {self.gpus} GPU{'s' if self.gpus != 1 else ''}{' ' + self.gpu_type if self.gpu_type else ''}"
        return (f"{self.cpus} CPU{'s' if self.cpus != 1 else ''}, {self.mem_mb / 1024:g} GB"
                f"{gpus if self.gpus else ''}, {self.minutes:g} min")


def mem_mb(text: Any) -> int:
    """submitit's `--mem` (`8GB`, `512MB`) in MB, as Slurm reads it (G = 1024 M)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)B?", str(text).strip().upper())
    if not match:
        return 0
    scale = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}[match.group(2)]
    return int(float(match.group(1)) * scale)


def request_of(job: slurm.PlannedJob) -> Request:
    """What the job asks Slurm for, read from the parameters its script is written from."""
    p = job.parameters
    gres = parse_gres(str(p.get("gres") or ""))
    kind = next(iter(gres), "") if gres else ""
    gpus = sum(gres.values())
    if p.get("gpus_per_node"):  # N, or type:N (gpu_syntax=gpus-per-node with a gpu_type)
        kind, _, count = str(p["gpus_per_node"]).rpartition(":")
        gpus = int(count)
    extra = p.get("additional_parameters") or {}
    cpus = int(p.get("cpus_per_task") or 1)
    mem = mem_mb(p.get("mem") or 0)
    if gpus and extra.get("cpus_per_gpu"):  # per-GPU requests (cluster.per_gpu_requests)
        cpus = int(extra["cpus_per_gpu"]) * gpus
    if gpus and extra.get("mem_per_gpu"):
        mem = mem_mb(extra["mem_per_gpu"]) * gpus
    return Request(cpus, mem, gpus, kind, float(p.get("time") or 0), p.get("partition"))


def fits(req: Request, node: Node) -> bool:
    gpus = node.gpus.get(req.gpu_type, 0) if req.gpu_type else sum(node.gpus.values())
    return node.cpus >= req.cpus and node.mem_mb >= req.mem_mb and gpus >= req.gpus


def resize_fix(job: slurm.PlannedJob, req: Request, biggest: Node) -> str:
    """The overrides that make this kind of job fit the largest node: only the fields that are too big."""
    prefix = {"agents": "hardware.", "serve-": "model.serve_conf."}
    key = next((v for k, v in prefix.items() if job.role.startswith(k)), None)
    if key is None:  # grading, analysis, teardown: fixed small jobs
        return f"cluster.partition=<one whose nodes have {job.parameters.get('mem')} and a CPU>"
    gpus = biggest.gpus.get(req.gpu_type, 0) if req.gpu_type else sum(biggest.gpus.values())
    over = [f"{key}cpus={biggest.cpus}"] if req.cpus > biggest.cpus else []
    over += [f"{key}mem_gb={biggest.mem_mb // 1024}"] if req.mem_mb > biggest.mem_mb else []
    over += [f"{key}gpus={gpus}"] if req.gpus > gpus else []
    return f"{' '.join(over)} (or cluster.partition=<one with bigger nodes>)"


def check_request(job: slurm.PlannedJob, nodes: list[Node], hold_s: int = DEFAULT_HOLD_S
                  ) -> tuple[str, list[Problem]]:
    """One resource group's request against the nodes of its partition: a line and its problems. `hold_s`:
    Slurm's hold of a requeued job (requeue_hold_s), named on the line of a job run in segments."""
    req = request_of(job)
    partitions = sorted({n.partition for n in nodes})
    part = req.partition or next((n.partition for n in nodes if n.default), None)
    members = [n for n in nodes if n.partition == part]
    label = f"{job.group}: asks {req.describe()} on partition {part or '(none)'}"
    if not members:
        return label + ": no such partition", [Problem(
            f"{job.group}: partition {part or '(default)'} is not on this cluster (partitions: "
            f"{', '.join(partitions) or 'none'})", f"cluster.partition=<one of {', '.join(partitions) or '?'}>")]
    problems = []
    fit = [n for n in members if fits(req, n)]
    biggest = max(members, key=lambda n: (n.cpus, n.mem_mb, sum(n.gpus.values())))
    if not fit:
        problems.append(Problem(
            f"{job.group} ({job.role}): asks {req.describe()}, but no node of partition {part} has that "
            f"(largest: {biggest.name} with {biggest.cpus} CPUs, {biggest.mem_mb} MB, "
            f"{sum(biggest.gpus.values())} GPUs); it would wait in the queue forever", resize_fix(job, req, biggest)))
    limit = members[0].max_time_min
    if limit is not None and req.minutes > limit:
        problems.append(Problem(
            f"{job.group} ({job.role}): --time={req.minutes:g} min is above partition {part}'s MaxTime "
            f"({limit:g} min); Slurm rejects or never starts it",
            "cluster.over_max_time=segment (run it in segments of MaxTime), a shorter runtime (runtime=... or "
            "runtime.time_limit=...), or cluster.partition=<one with a longer MaxTime>"))
    max_time = "unlimited" if limit is None else f"{limit:g} min"
    return f"{label}: fits {len(fit)} of {len(members)} node(s) (MaxTime {max_time}){segment_text(job, hold_s)}", \
        problems


def requeue_hold_s(config_text: str | None = None) -> int:
    """How long Slurm holds a requeued job before it may start again (squeue: Reason=BeginTime): the job
    credential's lifetime plus a second (slurm.conf(5), AuthInfo cred_expire: "how long a requeued job must
    wait"), so a restart never meets its own revoked credential. Read from `scontrol show config`; Slurm's
    default where it cannot be read. A segmented attempt pays it at every segment, in queue time."""
    if config_text is None:
        try:
            config_text = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                                         timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            config_text = ""
    found = re.search(r"cred_expire=(\d+)", config_text)
    return (int(found.group(1)) if found else CRED_EXPIRE_DEFAULT_S) + 1


def _about(seconds: float) -> str:
    return f"~{seconds / 60:.0f} min" if seconds >= 90 else f"~{seconds:.0f} s"


def segment_text(job: slurm.PlannedJob, hold_s: int) -> str:
    """The segments of an agent job, and the queue time they cost: each requeue is held hold_s by Slurm."""
    if job.segments <= 1:
        return ""
    return (f"; runs in {job.segments} segments of at most MaxTime, each requeued with the budget left; Slurm "
            f"holds each requeued job {_about(hold_s)} before it may start again (AuthInfo cred_expire), so at "
            f"least {_about(hold_s * (job.segments - 1))} of queue time in all (never counted against the budget)")


# ---------------------------------------------------------------- the sections


def jobs_section(jobs: list[slurm.PlannedJob], launch_id: str) -> Section:
    lines = [f"{len(jobs)} sbatch call(s); job names carry this launch's id ({launch_id}, new at each launch); "
             "ids in --dependency are filled in at submission"]
    for job in jobs:
        shape = f"array of {job.tasks} tasks" if job.tasks > 1 else "one job"
        lines += [f"{job.role} ({shape}, group {job.group})", *("  " + x for x in job.sbatch_lines())]
        lines += [f"  setup: {x}" for x in job.setup_lines()] + ([f"  {job.relay}"] if job.relay else [])
    return Section("jobs", lines)


def site_section(cluster: DictConfig) -> Section:
    def show(key: str) -> str:
        return str(cluster.get(key) or "-")

    setup = list(cluster.get("setup") or [])
    lines = [f"cluster {cluster.name} ({cluster.kind})"]
    if cluster.kind == "slurm":
        lines += [f"partition {show('partition')}, account {show('account')}, qos {show('qos')}, "
                  f"constraint {show('constraint')}, GPUs as {cluster.gpu_syntax}",
                  f"setup lines: {'; '.join(setup) if setup else '(none)'}"]
    return Section("site", lines)


def describe_node(n: Node) -> str:
    gpus = ", ".join(f"{kind or 'gpu'}:{count}" for kind, count in n.gpus.items()) or "none"
    default = " (default)" if n.default else ""
    return f"node {n.name} [{n.partition}{default}]: {n.cpus} CPUs, {n.mem_mb} MB, GPUs {gpus}, {n.state}"


def resources_section(cluster: DictConfig, jobs: list[slurm.PlannedJob], nodes: list[Node] | None = None) -> Section:
    """Each resource group (first job of each group) against the cluster's nodes by partition."""
    if cluster.kind != "slurm":
        return Section("resources vs nodes", [f"cluster={cluster.name}: runs on this machine; Slurm checks skipped"])
    if nodes is None:
        try:
            nodes = query_nodes()
        except RuntimeError as exc:
            what, _, fix = str(exc).partition(" Fix: ")
            return Section("resources vs nodes", ["the cluster's nodes could not be read"],
                           [Problem(what, fix or SLURM_FIX)])
    lines = [describe_node(n) for n in nodes]
    problems: list[Problem] = []
    seen: set[str] = set()
    hold_s = requeue_hold_s() if any(job.segments > 1 for job in jobs) else DEFAULT_HOLD_S
    for job in jobs:
        if job.group in seen:
            continue
        seen.add(job.group)
        line, found = check_request(job, nodes, hold_s)
        lines.append(line)
        problems += found
    return Section("resources vs nodes", lines, problems)


def data_section(attempts: list[Attempt], data_dir: str | None) -> Section:
    """Every competition of the plan prepared (the embedded mini ones are prepared at launch)."""
    reg = competitions.registry()
    ids = sorted({a.competition_id for a in attempts})
    root = paths.data_root(data_dir)
    lines, problems, missing_gb = [f"data folder {root}"], [], 0.0
    hint = f" --data-dir {data_dir}" if data_dir else ""
    for cid in ids:
        found = prepare.verify(cid, data_dir, quick=True)  # names and sizes: seconds, not an hour of MD5s
        if not found:
            continue
        if reg[cid].split == "mini":
            lines.append(f"{cid}: embedded data, prepared at launch")
            continue
        gb = reg[cid].prepare_disk_gb
        missing_gb += gb or 0
        need = f"; its preparation needs about {gb:g} GB of disk" if gb else ""
        first = found[0] if found[0].startswith(f"{cid}:") else f"{cid}: {found[0]}"
        problems.append(Problem(f"{first}{' (and more)' if len(found) > 1 else ''}{need}",
                                f"hpc-mle prepare -c {cid}{hint}   (on a node that can reach Kaggle)"))
    lines.append(f"{len(ids)} competition(s): {len(ids) - len(problems)} ready, {len(problems)} not prepared"
                 + (f" (about {missing_gb:g} GB of disk to prepare them)" if missing_gb else ""))
    return Section("data", lines, problems)


def _models(cfgs: list[DictConfig]) -> dict[tuple[str, str], DictConfig]:
    """(scaffold, model) pairs of the plan, each once."""
    return {(str(c.scaffold.name), str(c.model.name)): c for c in cfgs}


def keys_section(cfgs: list[DictConfig], env: dict[str, str] | None = None) -> Section:
    """API keys and endpoints for the scaffolds that call a model (never a key's value)."""
    env = dict(os.environ) if env is None else env
    lines, problems, seen = [], [], set()
    for (scaffold, model), cfg in _models(cfgs).items():
        m = cfg.model
        uses_model = scaffold not in NO_MODEL_SCAFFOLDS
        if not uses_model and m.provider != "none":
            problems.append(Problem(f"model={model} is set, but scaffold {scaffold} uses no model: the model "
                                    "changes nothing but the sweep's name", "drop model= (or use an LLM scaffold: "
                                    "scaffold=aide)", warning=True))
        if uses_model and m.provider == "none":
            problems.append(Problem(f"scaffold {scaffold} needs a model, but model=none",
                                    "model=gpt4o (or another conf/model/ entry)"))
        if not uses_model or model in seen:
            continue
        seen.add(model)
        if m.get("serve"):
            lines.append(f"{model}: served by a job of this launch ({m.model}); its key is generated per sweep")
        elif m.provider in KEYED_PROVIDERS:
            lines.append(f"{model}: {m.provider} endpoint {m.base_url or '(none)'}, model {m.model or '(none)'}")
            var = m.get("api_key_env")
            if var:
                present = bool(env.get(var))
                lines.append(f"  key from ${var}: {'set' if present else 'NOT SET'}")
                if not present and var not in seen:
                    seen.add(var)
                    problems.append(Problem(f"model {model} reads its API key from ${var}, which is not set here "
                                            "(every attempt would fail after its queue wait)",
                                            f"export {var}=<your key> before launching"))
            elif m.provider != "openai-compatible":
                problems.append(Problem(f"model {model}: no model.api_key_env", "model.api_key_env=VARIABLE_WITH_KEY"))
    if not lines:
        lines.append("no scaffold of this plan calls a model")
    return Section("keys and endpoints", lines, problems)


def judge_section(cfg: DictConfig, env: dict[str, str] | None = None) -> Section | None:
    """The analysis job's audit judge (`analysis.audit=judge`): its model config resolves and its key's variable is
    set here, where the launch runs and the analysis job gets its environment (never the key's value); None when
    no judge is asked for. Without its key the job would audit with the deterministic checks alone."""
    conf = cfg.get("analysis") or {}
    if conf.get("audit") != "judge":
        return None
    from hpc_mle.analysis import load_model_config

    env = dict(os.environ) if env is None else env
    name = str(conf.get("audit_judge"))
    fix = "analysis.audit=checks (no judge), or "
    try:
        judge = load_model_config(name)
        provider = str(judge.get("provider") or "")
    except (OSError, ValueError, AttributeError, yaml.YAMLError) as exc:
        return Section("audit judge", [f"analysis.audit_judge={name}: does not resolve"], [Problem(
            f"the audit judge analysis.audit_judge={name} does not resolve to a model config: {exc}",
            fix + "analysis.audit_judge=gpt4o (a conf/model name) or the path of a model YAML")])
    lines = [f"judge {name}: {provider or '(no provider)'} endpoint {judge.get('base_url') or '(none)'}, "
             f"model {judge.get('model') or '(none)'}"]
    var = judge.get("api_key_env")
    if var:
        present = bool(env.get(str(var)))
        lines.append(f"  key from ${var}: {'set' if present else 'NOT SET'}")
        problems = [] if present else [Problem(
            f"the audit judge {name} reads its API key from ${var}, which is not set here (the analysis job would "
            "audit with the deterministic checks only)", fix + f"export {var}=<your key> before launching")]
    else:
        problems = [] if provider == "openai-compatible" else [Problem(
            f"the audit judge {name} names no api_key_env", fix + "api_key_env: VARIABLE_WITH_KEY in its model YAML")]
    return Section("audit judge", lines, problems)


def _image_problem(scaffold: str, image: str | None) -> tuple[str, Problem | None]:
    build = f"hpc-mle containers build {scaffold} --output-dir DIR"
    if not image:
        return f"{scaffold}: apptainer image not set", Problem(
            f"scaffold {scaffold} with sandbox=apptainer has no image", f"{build}, then sandbox.image=DIR/{scaffold}.sif")
    if not Path(image).expanduser().is_file():
        return f"{scaffold}: image {image} MISSING", Problem(f"scaffold {scaffold}: image {image} does not exist",
                                                             f"{build}, then sandbox.image=DIR/{scaffold}.sif")
    return f"{scaffold}: image {image}", None


def _venv_problem(scaffold: str, venv: str) -> tuple[str, Problem | None]:
    try:
        found = scaffold_env.find(venv)
        where = scaffold_env.venv_path(scaffold_env.spec(venv))
    except scaffold_env.VenvError as exc:
        return f"{scaffold}: venv {venv} unknown", Problem(str(exc), "sandbox=apptainer with the scaffold's image")
    if found is None:
        return f"{scaffold}: venv {venv} NOT BUILT ({where})", Problem(
            f"scaffold {scaffold} runs in its own venv, which is not built ({where})", f"hpc-mle scaffolds venv {venv}")
    return f"{scaffold}: venv {found}", None


def envs_section(cfgs: list[DictConfig]) -> Section:
    """Scaffold venvs (bwrap/none) or Apptainer images (apptainer), and served models' images."""
    lines, problems, seen = [], [], set()
    for cfg in cfgs:
        sc, kind = cfg.scaffold, str(cfg.sandbox.kind)
        image = cfg.sandbox.get("image") or sc.get("image")
        key = (str(sc.name), kind, image, sc.get("venv"))
        if key in seen:
            continue
        seen.add(key)
        if kind == "apptainer":
            line, problem = _image_problem(str(sc.name), image)
        elif sc.get("venv"):
            line, problem = _venv_problem(str(sc.name), str(sc.venv))
        elif str(sc.name) in NO_MODEL_SCAFFOLDS:
            line, problem = f"{sc.name}: runs on this Python in the {kind} sandbox", None
        else:
            line, problem = f"{sc.name}: needs its image", Problem(
                f"scaffold {sc.name} runs from its Apptainer image (containers/{sc.name}.def), not in sandbox={kind}",
                f"sandbox=apptainer sandbox.image=DIR/{sc.name}.sif (hpc-mle containers build {sc.name} --output-dir DIR)")
        lines.append(line)
        problems += [problem] if problem else []
        served_image = cfg.model.get("serve") and cfg.model.serve_conf.get("image")
        if served_image and not Path(served_image).expanduser().is_file() and served_image not in seen:
            seen.add(served_image)
            problems.append(Problem(f"model {cfg.model.name}: server image {served_image} does not exist",
                                    "model.serve_conf.image=<an Apptainer .sif with vLLM> (or null: vllm on PATH)"))
    return Section("scaffold environments", lines, problems)


BWRAP_FIX = ("install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; RHEL/Fedora: dnf install bubblewrap; "
             "or ask your admins), or choose sandbox=apptainer, or sandbox=none (no isolation: results marked unsandboxed)")


def sandbox_check(cfgs: list[DictConfig], cluster_kind: str, env: dict[str, str] | None = None,
                  ) -> tuple[list[str], list[Problem]]:
    """bubblewrap on PATH, checked once here rather than failing every attempt. Slurm attempts run on compute
    nodes, whose PATH may differ from the login node's: there a missing bwrap is a warning."""
    if not any(str(c.sandbox.kind) == "bwrap" for c in cfgs):
        return [], []
    found = shutil.which("bwrap", path=(dict(os.environ) if env is None else env).get("PATH", ""))
    if found:
        return [f"sandbox bwrap: {found}"], []
    where = "on this node's PATH" if cluster_kind == "local" else "on this login node's PATH (compute nodes may differ)"
    return ["sandbox bwrap: NOT FOUND"], [
        Problem(f"sandbox=bwrap but bubblewrap (bwrap) is not {where}", BWRAP_FIX, warning=cluster_kind != "local")]


def namespace_check(cfgs: list[DictConfig], cluster_kind: str, env: dict[str, str] | None = None,
                    ) -> tuple[list[str], list[Problem]]:
    """The doctor's cheap namespace probes (hpc_mle/doctor.py), run here for bwrap sandboxes: a kernel without
    network namespaces fails every attempt at its start. On Slurm the compute nodes may differ: a warning that
    names `hpc-mle doctor --on-node`."""
    from hpc_mle import doctor

    boxed = [c for c in cfgs if str(c.sandbox.kind) == "bwrap"]
    path = (dict(os.environ) if env is None else env).get("PATH", "")
    if not boxed or shutil.which("bwrap", path=path) is None:
        return [], []
    checks = [doctor.user_namespaces()]
    if any(not c.sandbox.get("network") for c in boxed):
        checks.append(doctor.network_namespaces())
    lines = [f"{c.name}: {c.state} ({c.seen})" for c in checks]
    where = "" if cluster_kind == "local" else " on this login node (hpc-mle doctor --on-node checks a compute node)"
    problems = [Problem(f"{c.name}: {c.seen}{where}", c.fix, warning=c.state == "warn" or cluster_kind != "local")
                for c in checks if c.state in ("fail", "warn")]
    return lines, problems


def run(sweep_dir: Path, todo: list[Attempt], cfgs: list[DictConfig], served: dict[str, dict[str, Any]],
        nodes: list[Node] | None = None, env: dict[str, str] | None = None) -> Report:
    """Every check for the attempts still to run; `nodes` skips the sinfo call (already read)."""
    first, cluster = cfgs[0], cfgs[0].cluster
    launch_id = slurm.new_launch_id()
    limits = None if nodes is None else {n.partition: slurm.PartitionLimit(n.max_time_min, None, n.default)
                                         for n in nodes}
    site_max = slurm.max_array_size() if nodes is None and cluster.kind == "slurm" else slurm.DEFAULT_MAX_ARRAY_SIZE
    planned = slurm.planned_jobs(sweep_dir, todo, cluster, served, launch_id, limit=site_max, limits=limits) \
        if cluster.kind == "slurm" else []
    sections = [site_section(cluster)]
    if cluster.kind == "slurm":
        sections.append(jobs_section(planned, launch_id))
    if cluster.kind == "slurm" and not todo:
        sections.append(Section("resources vs nodes", ["nothing to submit"]))
    else:
        sections.append(resources_section(cluster, planned, nodes))
    envs, (box_lines, box_problems) = envs_section(cfgs), sandbox_check(cfgs, str(cluster.kind), env)
    ns_lines, ns_problems = namespace_check(cfgs, str(cluster.kind), env)
    envs = Section(envs.title, [*envs.lines, *box_lines, *ns_lines], [*envs.problems, *box_problems, *ns_problems])
    sections += [home_data_check(data_section(todo, first.data_dir), first.data_dir, cluster, env),
                 keys_section(cfgs, env), envs]
    judge = judge_section(first, env)
    return Report(sections + ([judge] if judge else []))


def home_data_check(section: Section, data_dir: str | None, cluster: DictConfig,
                    env: dict[str, str] | None = None) -> Section:
    """Under Slurm, prepared data in $HOME is refused unless the cluster config allows it (allow_home_data);
    scaffold venvs there are named (each attempt imports thousands of files from them), not refused."""
    if cluster.kind != "slurm" or cluster.get("allow_home_data"):
        return section
    lines = list(section.lines)
    if paths.under_home(venvs := paths.venvs_root(), env):
        lines.append(f"scaffold venvs in {venvs}, under $HOME: HPC_MLE_VENVS=DIR on project or scratch storage "
                     "moves them (then `hpc-mle scaffolds venv NAME` for each scaffold)")
    problem = paths.home_data_problem(paths.data_root(data_dir), env)
    if problem is None:
        return Section(section.title, lines, section.problems)
    what, _, fix = problem.partition(" Fix: ")
    return Section(section.title, lines, [*section.problems, Problem(what, fix)])
