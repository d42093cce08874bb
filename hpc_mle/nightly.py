"""Nightly sweeps: `hpc-mle nightly CONFIG` from scrontab or cron, safe to run any number of times.

CONFIG (YAML):
    name: mini-nightly                 # sweeps are named <name>-<YYYY-MM-DD>
    output_root: runs/nightly          # where they go
    overrides: ["-m", "scaffold=dummy,baseline", "seed=range(2)", "cluster=dev"]

Each call launches tonight's sweep (the launcher skips what is done or queued, so a second call the
same night submits nothing) and records the previous night in it; when a night's analysis is done
(by its analysis job, or here) it is compared with the night before: `analysis/compare.md`
(`analysis.write_comparison`).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import yaml

from hpc_mle import analysis, launch, plan
from hpc_mle.files import atomic_write_json


def load(config: Path) -> dict:
    data = yaml.safe_load(Path(config).read_text()) or {}
    if not isinstance(data.get("name"), str) or not data["name"]:
        raise ValueError(f"{config}: field 'name' is required (sweeps are named <name>-<date>)")
    overrides = data.get("overrides", [])
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ValueError(f"{config}: field 'overrides' must be a list of strings, as on the command line")
    unknown = set(data) - {"name", "output_root", "overrides"}
    if unknown:
        raise ValueError(f"{config}: unknown field(s) {sorted(unknown)}; use name, output_root, overrides")
    return {"name": data["name"], "output_root": data.get("output_root", "runs/nightly"), "overrides": overrides}


def nights(root: Path, name: str) -> list[Path]:
    """This nightly's sweep folders, oldest first (names end in ISO dates, so they sort by date)."""
    return sorted(p for p in Path(root).glob(f"{name}-????-??-??") if (p / plan.MANIFEST).is_file())


def run(config: Path, day: str | None = None) -> list[str]:
    cfg = load(config)
    day = day or date.today().isoformat()
    root = Path(cfg["output_root"]).resolve()
    sweep_dir = root / f"{cfg['name']}-{day}"
    earlier = [p for p in nights(root, cfg["name"]) if p.name < sweep_dir.name]
    launch.launch([*cfg["overrides"], f"sweep_name={sweep_dir.name}", f"output_root={root}"])
    messages = [f"tonight: {sweep_dir}"]
    if earlier and (sweep_dir / plan.SWEEP_FILE).is_file():
        sweep = plan.read_sweep(sweep_dir) or {}
        sweep["compare_with"] = str(earlier[-1])
        atomic_write_json(sweep_dir / plan.SWEEP_FILE, sweep)
    analysed = [p for p in nights(root, cfg["name"]) if (p / "analysis" / "results.csv").is_file()]
    if len(analysed) >= 2:
        path = analysis.write_comparison(analysed[-1], analysed[-2])
        messages.append(f"compared {analysed[-1].name} with {analysed[-2].name}: {path}")
    return messages
