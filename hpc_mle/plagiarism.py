"""Plagiarism check: each attempt's code against the competition's top public notebooks, with Dolos.

The MLE-bench paper compared agents' code with the 50 most voted public notebooks of each competition using
Dolos and flagged more than 60 % similarity. The corpus lives in `<data>/<id>/reference_notebooks/` as plain
scripts (fetched once with `fetch_reference_notebooks` on a node that reaches Kaggle). Dolos runs through
Node.js and its library package `@dodona/dolos-lib` (`hpc_mle/dolos_pairs.mjs`), found under `$HPC_MLE_DOLOS`
(an npm prefix), `~/.local/share/hpc-mle/dolos`, `/opt/dolos` or npm's global root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from hpc_mle import files, paths, plan

THRESHOLD = 0.60  # the paper's flag: more than 60 % similarity with a public notebook
TOP_N = 50  # the paper's corpus size per competition
CORPUS = "reference_notebooks"
SCRIPT = Path(__file__).with_name("dolos_pairs.mjs")
LIB = Path("@dodona") / "dolos-lib" / "dist" / "index.js"
INSTALL_HINT = ("Fix: install Node.js >= 18 (`apt-get install -y nodejs npm`) and Dolos's library "
                "(`npm install --prefix ~/.local/share/hpc-mle/dolos @dodona/dolos-lib`), or set HPC_MLE_DOLOS "
                "to the npm prefix where @dodona/dolos-lib is installed.")
LANGUAGE = "python"
SUFFIXES = (".py",)
MAX_SCRIPT_BYTES = 8 << 20  # a larger "script" is data, not code to compare


class DolosMissing(RuntimeError):
    """Node.js or the Dolos library is not installed here."""


@dataclass(frozen=True)
class Dolos:
    node: str
    modules: Path  # a node_modules folder holding @dodona/dolos-lib


def _candidates() -> list[Path]:
    prefixes = [os.environ.get("HPC_MLE_DOLOS"), Path.home() / ".local/share/hpc-mle/dolos", "/opt/dolos"]
    found = [Path(p) / "node_modules" for p in prefixes if p]
    npm = shutil.which("npm")
    if npm:
        root = subprocess.run([npm, "root", "-g"], capture_output=True, text=True, timeout=60)
        if root.returncode == 0 and root.stdout.strip():
            found.append(Path(root.stdout.strip()))
    return found


def find_dolos() -> Dolos:
    """Node and the Dolos library, or DolosMissing naming how to install them."""
    node = shutil.which("node")
    if node is None:
        raise DolosMissing(f"the plagiarism check needs Node.js (`node` is not on PATH). {INSTALL_HINT}")
    for modules in _candidates():
        if (modules / LIB).is_file():
            return Dolos(node, modules)
    raise DolosMissing(f"the plagiarism check needs Dolos (@dodona/dolos-lib is in none of "
                       f"{', '.join(map(str, _candidates()))}). {INSTALL_HINT}")


def similarities(files: list[Path], dolos: Dolos | None = None) -> pd.DataFrame:
    """Dolos's similarity (0..1) for every pair of `files`: columns left, right, similarity."""
    dolos = dolos or find_dolos()
    proc = subprocess.run([dolos.node, str(SCRIPT), str(dolos.modules), LANGUAGE, *map(str, files)],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"Dolos failed on {len(files)} files: {proc.stderr.strip()[-2000:]}")
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return pd.DataFrame(rows, columns=["left", "right", "similarity"])


# ---------------------------------------------------------------- the reference corpus


def corpus_dir(competition_id: str, data_dir=None) -> Path:
    return paths.competition_dir(competition_id, data_dir) / CORPUS


def notebook_to_script(notebook: Path) -> str:
    """A notebook's code cells as one script (magics and shell lines dropped: they are not Python)."""
    cells = json.loads(notebook.read_text(encoding="utf-8", errors="replace")).get("cells", [])
    code = ["".join(c.get("source", [])) if isinstance(c.get("source"), list) else str(c.get("source", ""))
            for c in cells if c.get("cell_type") == "code"]
    lines = [ln for block in code for ln in block.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    return "\n".join(lines) + "\n"


def convert_corpus(folder: Path) -> list[Path]:
    """Every notebook in `folder` beside its script (`<name>.py`); the scripts, sorted."""
    for nb in sorted(folder.glob("*.ipynb")):
        nb.with_suffix(".py").write_text(notebook_to_script(nb), encoding="utf-8")
    return sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES)


class KernelsApi(Protocol):
    def kernels_list(self, **kwargs: Any) -> list[Any]: ...
    def kernels_pull(self, kernel: str, path: str, **kwargs: Any) -> Any: ...


def fetch_reference_notebooks(competition_id: str, data_dir=None, top_n: int = TOP_N,
                              api: KernelsApi | None = None) -> list[Path]:
    """The competition's `top_n` most voted public notebooks, pulled with the kaggle package and converted."""
    if api is None:
        from hpc_mle import kaggle

        api = kaggle._api()
    folder = corpus_dir(competition_id, data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    kernels = api.kernels_list(competition=competition_id, sort_by="voteCount", page_size=min(top_n, 100),
                               language=LANGUAGE) or []
    for kernel in [k for k in kernels if k is not None][:top_n]:
        api.kernels_pull(kernel.ref, path=str(folder), metadata=False, quiet=True)
    return convert_corpus(folder)


# ---------------------------------------------------------------- attempts of a sweep


@dataclass(frozen=True)
class Finding:
    attempt: str
    competition_id: str
    similarity: float | None  # the highest over the attempt's scripts and the corpus; None: nothing to compare
    closest: str | None  # the corpus notebook it is closest to
    attempt_file: str | None
    flagged: bool
    note: str = ""


def check_attempt(attempt_id: str, competition_id: str, code: Path, corpus: Path,
                  dolos: Dolos | None = None) -> Finding:
    """The attempt's scripts against the corpus: the closest pair, flagged over THRESHOLD.

    The agent wrote code/: its scripts are copied through `files.read_untrusted` (no link followed, no FIFO or
    device opened, at most MAX_SCRIPT_BYTES each) into a harness-private folder, and Dolos reads the copies."""
    refs = sorted(p for p in corpus.iterdir() if p.suffix in SUFFIXES) if corpus.is_dir() else []
    with tempfile.TemporaryDirectory(prefix="hpc-mle-plagiarism-") as tmp:
        copies = _copy_scripts(code, Path(tmp))
        if not copies or not refs:
            why = "no code in the attempt" if not copies else f"no reference corpus in {corpus}"
            return Finding(attempt_id, competition_id, None, None, None, False, why)
        return _closest(attempt_id, competition_id, copies, refs, dolos)


def _copy_scripts(code: Path, into: Path) -> dict[Path, str]:
    """Copies of the attempt's scripts (regular files only, walked without following links): copy -> its name."""
    copies: dict[Path, str] = {}
    if code.is_symlink() or not code.is_dir():
        return copies
    into.mkdir(parents=True, exist_ok=True)
    for root, _dirs, names in os.walk(code, followlinks=False):
        for name in sorted(names):
            rel = (Path(root) / name).relative_to(code)
            if rel.suffix not in SUFFIXES:
                continue
            try:
                data = files.read_untrusted(code, rel, MAX_SCRIPT_BYTES)
            except (OSError, files.UnsafeFile, ValueError):
                continue  # a link, FIFO, device, hard link or oversized file: not the agent's code to compare
            target = into / f"{len(copies):05d}{rel.suffix}"
            target.write_bytes(data)
            copies[target] = rel.as_posix()
    return copies


def _closest(attempt_id: str, competition_id: str, copies: dict[Path, str], refs: list[Path],
             dolos: Dolos | None) -> Finding:
    mine = sorted(copies)
    pairs = similarities(mine + refs, dolos)
    ref_names, my_names = {str(p) for p in refs}, {str(p) for p in mine}
    cross = pairs[(pairs["left"].isin(my_names) & pairs["right"].isin(ref_names))
                  | (pairs["right"].isin(my_names) & pairs["left"].isin(ref_names))]
    if cross.empty:
        return Finding(attempt_id, competition_id, 0.0, None, None, False, "no shared fingerprints")
    top = cross.loc[cross["similarity"].idxmax()]
    ref, own = (top["right"], top["left"]) if top["right"] in ref_names else (top["left"], top["right"])
    sim = float(top["similarity"])
    return Finding(attempt_id, competition_id, sim, Path(ref).name, copies[Path(own)], sim > THRESHOLD)


def check_sweep(sweep_dir: Path, data_dir=None) -> pd.DataFrame:
    """One Finding per attempt of the sweep, written to analysis/plagiarism.csv."""
    manifest = plan.read_manifest(sweep_dir)
    if manifest is None:
        raise FileNotFoundError(f"{sweep_dir} has no {plan.MANIFEST}. Fix: give a sweep folder (runs/<sweep>).")
    dolos = find_dolos()
    rows = []
    for _, row in manifest.iterrows():
        where = data_dir or plan.planned(sweep_dir, row["id"])["config"].get("data_dir")
        code = plan.attempt_dir(sweep_dir, row["id"]) / "code"
        rows.append(asdict(check_attempt(row["id"], row["competition_id"], code,
                                         corpus_dir(row["competition_id"], where), dolos)))
    table = pd.DataFrame(rows, columns=[f for f in Finding.__dataclass_fields__])
    out = Path(sweep_dir) / "analysis" / "plagiarism.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table


def summary(table: pd.DataFrame, sweep_dir: Path) -> list[str]:
    """One line per attempt (similarity, closest notebook, flag), then the count flagged."""
    lines = []
    for r in table.to_dict("records"):
        sim = r["similarity"]
        shown = "-" if sim is None or pd.isna(sim) else f"{100 * sim:.0f} %"
        lines.append(f"{r['attempt']} {r['competition_id']}: {shown}"
                     + (f" closest {r['closest']} ({r['attempt_file']})" if isinstance(r["closest"], str) else "")
                     + (" FLAGGED" if r["flagged"] else "") + (f" [{r['note']}]" if isinstance(r["note"], str)
                                                                and r["note"] else ""))
    lines.append(f"{int(table['flagged'].sum())} of {len(table)} attempts flagged (> {100 * THRESHOLD:.0f} %); "
                 f"wrote {Path(sweep_dir) / 'analysis' / 'plagiarism.csv'}")
    return lines
