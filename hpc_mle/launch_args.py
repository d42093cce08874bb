"""The launcher's command line, the way Hydra users type it: flags, site config dirs, composition, `--cfg`.

Hydra's grammar and composer do the work; this module adds what a Hydra app would give for free
(`--cfg job`, `--config-dir`, `--help` with the config groups) and what it would not (suggestions for
misspelled keys and options, numbers and durations checked, site configs given as a file path).
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from hpc_mle import config, paths, plan
from hpc_mle.plan import PlanError

CFG_CHOICES = ("job", "hydra", "all")
EXAMPLES = """usage: python -m hpc_mle.launch [-m|--multirun] [KEY=VALUE ...] [--dry-run] [--cfg job|hydra|all]
                              [--config-dir DIR]

  python -m hpc_mle.launch                                  # mini benchmark, baseline agent, this machine
  python -m hpc_mle.launch -m scaffold=dummy,baseline 'seed=range(2)'
  python -m hpc_mle.launch -m scaffold=aide model=gpt4o runtime=24h 'seed=range(3)' benchmark=lite \\
      hardware=gpu1 cluster=slurm                           # the paper's setup, on a Slurm cluster
  python -m hpc_mle.launch cluster=/path/to/mysite.yaml --dry-run   # a site config outside the clone
Quote 'seed=range(8)': unquoted, the shell rejects the parentheses."""
FLAGS = """options:
  -m, --multirun          sweep: values a,b / range(n) / glob(...) make one job each
  --dry-run               plan and check everything (the preflight), write and submit nothing
  -c, --cfg job|hydra|all print the composed config as YAML and exit (hydra: the launcher's own settings)
  -p, --package KEY       with --cfg: only this part, e.g. -p cluster
  --resolve               with --cfg: resolve ${...} interpolations
  -cd, --config-dir DIR   another config dir (DIR/cluster/mysite.yaml ...); later ones win
  -h, --help              this help"""
# Flags that take a value, by every spelling; the value is the next argument or follows `=`.
VALUE_FLAGS = {"-c": "cfg", "--cfg": "cfg", "-p": "package", "--package": "package",
               "-cd": "config_dirs", "--config-dir": "config_dirs"}
SWITCHES = {"-m": "multirun", "--multirun": "multirun", "--dry-run": "dry_run", "--resolve": "resolve",
            "-h": "help", "--help": "help", "-r": "run", "--run": "run"}
NOT_HERE = {"-cn": "--config-dir DIR holding your own config.yaml", "--config-name": "--config-dir DIR holding "
            "your own config.yaml", "-cp": "--config-dir DIR", "--config-path": "--config-dir DIR",
            "--info": "--cfg all (the composed config and where its groups come from)", "-i": "--cfg all",
            "--hydra-help": "--help", "--shell-completion": "nothing (no shell completion yet)"}


@dataclass
class Args:
    """What the command line asked for, before anything is composed."""

    overrides: list[str] = field(default_factory=list)
    multirun: bool = False
    dry_run: bool = False
    cfg: str | None = None
    package: str | None = None
    resolve: bool = False
    help: bool = False
    run: bool = False
    config_dirs: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_argv(argv: list[str]) -> Args:
    """Flags out, `hydra.*` keys applied or refused, KEY=VALUE overrides kept in order."""
    args, rest = Args(), list(argv)
    while rest:
        arg = rest.pop(0)
        flag, eq, inline = arg.partition("=") if arg.startswith("-") else (arg, "", "")
        if flag in VALUE_FLAGS:
            value = inline if eq else (rest.pop(0) if rest else "")
            if not value or (value.startswith("-") and not eq):
                raise PlanError(f"{flag} needs a value, e.g. {flag} {'job' if VALUE_FLAGS[flag] == 'cfg' else 'X'}")
            _set_value(args, VALUE_FLAGS[flag], value)
        elif arg in SWITCHES:
            setattr(args, SWITCHES[arg], True)
        elif flag in NOT_HERE:
            raise PlanError(f"{flag} is a Hydra app flag this launcher does not take. Use {NOT_HERE[flag]}")
        elif arg.startswith("-"):
            close = difflib.get_close_matches(flag, [*VALUE_FLAGS, *SWITCHES], n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]}?" if close else ""
            raise PlanError(f"unknown option {arg}.{hint} The options and config groups: --help")
        else:
            args.overrides.append(arg)
    args.overrides, hydra = config.take_hydra_keys(args.overrides)
    args.config_dirs += hydra.searchpath
    args.multirun = args.multirun or hydra.multirun
    args.notes += hydra.notes
    if args.dry_run:
        args.overrides.append("dry_run=true")
    return args


def _set_value(args: Args, name: str, value: str) -> None:
    if name == "config_dirs":
        args.config_dirs.append(Path(value))
    elif name == "cfg" and value not in CFG_CHOICES:
        raise PlanError(f"--cfg {value}: use one of {', '.join(CFG_CHOICES)} (job: the composed config)")
    else:
        setattr(args, name, value)


@dataclass
class Composed:
    """The sweep's configs, one per job, with the overrides that made each and where options came from."""

    cfgs: list[DictConfig]
    jobs: list[list[str]]
    dirs: list[Path]
    site: list[str]  # `group=option: file` for each option used that is not in conf/


def compose(args: Args) -> Composed:
    """Check every key and option (with suggestions), compose through the site config dirs, validate values."""
    dirs = config.config_dirs(args.config_dirs)
    overrides, files = config.take_group_files(args.overrides, set(config.group_options(dirs)))
    options = config.group_options(dirs, files)
    jobs = plan.expand(overrides, args.multirun)
    config.check_overrides(jobs, options)
    with config.overlay(dirs, files) as conf_dir:
        cfgs = plan.compose_all(jobs, conf_dir)
    for cfg in cfgs:
        config.validate(cfg)
    return Composed(cfgs, jobs, dirs, site_options(jobs, dirs, options))


def site_options(jobs: list[list[str]], dirs: list[Path], options: dict[str, dict[str, Path]]) -> list[str]:
    """The options used that come from outside conf/ (a site config may shadow one of ours): say which file."""
    defaults = config.primary_defaults(dirs)
    used: set[tuple[str, str]] = set()
    for job in jobs:
        chosen = dict(defaults)
        chosen.update(tuple(o.split("=", 1)) for o in job if o.split("=", 1)[0] in options and "=" in o)
        used |= set(chosen.items())
    builtin = (paths.REPO_ROOT / "conf").resolve()
    lines = sorted(f"{g}={v}: {options[g][v]}" for g, v in used
                   if v in options.get(g, {}) and not options[g][v].resolve().is_relative_to(builtin))
    primary = config.primary_config(dirs)
    if primary is not None and not primary.resolve().is_relative_to(builtin):
        lines.insert(0, f"primary config: {primary}")
    return lines


def print_cfg(args: Args, composed: Composed) -> None:
    """`--cfg`: each job's composed config as YAML (a header line per job when there are several)."""
    sweep = plan.sweep_name(composed.cfgs, composed.jobs)
    for i, (cfg, job) in enumerate(zip(composed.cfgs, composed.jobs, strict=True), 1):
        node = _cfg_node(args, cfg, job, composed.dirs, Path(cfg.output_root) / sweep)
        if len(composed.cfgs) > 1:
            print(f"# job {i}/{len(composed.cfgs)}: {' '.join(job) or '(defaults)'}")
        print(OmegaConf.to_yaml(node, resolve=args.resolve), end="")


def _cfg_node(args: Args, cfg: DictConfig, job: list[str], dirs: list[Path], sweep_dir: Path):
    launcher = {"mode": "MULTIRUN" if args.multirun else "RUN", "searchpath": [str(d) for d in dirs],
                "overrides": list(job), "sweep_dir": str(sweep_dir)}
    node = OmegaConf.to_container(cfg) if args.cfg != "hydra" else {}
    if args.cfg in ("hydra", "all"):
        node["hydra"] = launcher
    node = OmegaConf.create(node)
    if args.package:
        picked = OmegaConf.select(node, args.package, default=None)
        if picked is None:
            close = difflib.get_close_matches(args.package, [str(k) for k in node], n=1)
            raise PlanError(f"--package {args.package}: not in the composed config."
                            + (f" Did you mean -p {close[0]}?" if close else ""))
        node = picked if OmegaConf.is_config(picked) else OmegaConf.create({args.package: picked})
    return node


def help_text(args: Args) -> str:
    """The usage, the flags, every config group with its options (* = default), and the useful settings."""
    dirs = config.config_dirs(args.config_dirs)
    options = config.group_options(dirs)
    defaults = config.primary_defaults(dirs)
    width = max(map(len, options), default=8)
    groups = [f"  {g:<{width}}  " + ", ".join(f"{o}*" if defaults.get(g) == o else o for o in sorted(names))
              for g, names in sorted(options.items())]
    key_width = max(map(len, config.SETTINGS))
    settings = [f"  {k:<{key_width}}  {v}" for k, v in config.SETTINGS.items()]
    sources = "\n".join(f"  {d}" for d in dirs)
    return (f"{EXAMPLES}\n\n{FLAGS}\n\nconfig groups (GROUP=OPTION, * = default; a sweep: -m GROUP=a,b):\n"
            + "\n".join(groups)
            + "\n\nsettings (KEY=VALUE; every field of a group: --cfg job):\n" + "\n".join(settings)
            + f"\n\nconfig dirs (later ones win):\n{sources}\n"
            f"site configs: put cluster/mysite.yaml in {paths.user_conf_dir()} (or --config-dir DIR) and use "
            "cluster=mysite, or give the file: cluster=/path/to/mysite.yaml")


def print_notes(args: Args, composed: Composed | None = None) -> None:
    """Ignored `hydra.*` keys and the site configs used, on stderr (stdout stays clean for --cfg)."""
    for note in args.notes:
        print(f"note: {note}", file=sys.stderr)
    for line in composed.site if composed else []:
        print(f"site config: {line}", file=sys.stderr)
