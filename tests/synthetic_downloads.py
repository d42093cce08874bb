"""Synthetic Kaggle-shaped downloads of every competition, collected from the test modules, and a CLI.

Each `tests/test_*.py` module that writes synthetic downloads defines, at module level,
`MAKERS = {"<competition-id>": make_fn}` where `make_fn(raw: Path, rng: np.random.Generator)` writes what
extracting Kaggle's zip would give. A module may also define `PREPARER_CONSTANTS = {"<id>": {"NAME": value}}`:
constants of the preparer's own module (the one the spec's `preparer` names) that must shrink to fit the
tiny download, as its tests shrink them (v1's fixed test sizes, exact line counts). Discovery reads the
files, so a module added later is found without editing this one.

    python tests/synthetic_downloads.py --data-dir DIR [--split lite|medium|high|dev|all] [ID ...]

writes each chosen competition's download into `DIR/<id>/raw/` (seed 0; a raw folder that already holds
files is kept) and runs the real preparation on it, one line per competition; exit 1 if any failed.
`HPC_MLE_DATA=DIR python -m hpc_mle.launch ...` then runs agents over the prepared data.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent
if str(TESTS.parent) not in sys.path:
    sys.path.insert(0, str(TESTS.parent))  # the checkout's hpc_mle, when run as a script
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))  # test modules import their helpers (lite_support, ...) by name

from hpc_mle import competitions, paths  # noqa: E402
from hpc_mle.prepare import Outcome, prepare_many  # noqa: E402

SEED = 0
_DEFINES_MAKERS = re.compile(r"^MAKERS\s*[:=]", re.MULTILINE)

Maker = Callable[[Path, np.random.Generator], None]


@dataclass(frozen=True)
class Synthetic:
    """One competition's synthetic download: its maker, the test module that owns it, constants to shrink."""

    competition_id: str
    make: Maker
    module: str
    constants: dict[str, object] = field(default_factory=dict)


def maker_modules(tests_dir: Path = TESTS, mentioning: list[str] | None = None) -> list[str]:
    """Test modules that define MAKERS at module level, read as text so that other test modules are not
    imported; with `mentioning`, only those whose text names one of these competition ids."""
    found = []
    for path in sorted(tests_dir.glob("test_*.py")):
        text = path.read_text("utf-8")
        if _DEFINES_MAKERS.search(text) and (mentioning is None or any(cid in text for cid in mentioning)):
            found.append(path.stem)
    return found


def discover(tests_dir: Path = TESTS, mentioning: list[str] | None = None) -> tuple[dict[str, Synthetic], list[str]]:
    """Every competition with a synthetic maker, by id, and the problems found (a module that does not
    import, an id that two modules define). A module may re-export another's maker (the same function,
    or one built by a function of that module): the module that defines it owns the entry."""
    found: dict[str, Synthetic] = {}
    problems: list[str] = []
    for name in maker_modules(tests_dir, mentioning):
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 -- one broken test module must not hide the others' makers
            problems.append(f"tests/{name}.py does not import: {type(exc).__name__}: {exc}")
            continue
        constants = getattr(module, "PREPARER_CONSTANTS", {})
        if extra := set(constants) - set(module.MAKERS):
            problems.append(f"tests/{name}.py: PREPARER_CONSTANTS names {sorted(extra)} without a maker. "
                            "Fix: add them to MAKERS or drop them.")
        for cid, make in module.MAKERS.items():
            entry, kept = Synthetic(cid, make, name, dict(constants.get(cid, {}))), found.get(cid)
            if kept is None or (_owner(entry) == name and _owner(kept) != kept.module):
                found[cid] = entry
            elif _owner(entry) == name:
                problems.append(f"tests/{name}.py: MAKERS defines {cid!r}, already defined in "
                                f"tests/{found[cid].module}.py. Fix: keep one maker per competition.")
    return found, problems


def _owner(entry: Synthetic) -> str:
    """The module whose code the maker is (a closure counts for the module of the function that built it)."""
    return getattr(entry.make, "__module__", entry.module)


@contextlib.contextmanager
def preparer_constants(cid: str, constants: dict[str, object]) -> Iterator[None]:
    """Set constants on the module of the competition's preparer for one preparation, then restore them."""
    if not constants:
        yield
        return
    spec = competitions.get(cid)
    module = importlib.import_module(spec.preparer.partition(":")[0])
    missing = [name for name in constants if not hasattr(module, name)]
    if missing:
        raise AttributeError(f"{cid}: the preparer's module {module.__name__} has no {', '.join(missing)} "
                             "(PREPARER_CONSTANTS in the test module). Fix: rename them there.")
    saved = {name: getattr(module, name) for name in constants}
    try:
        for name, value in constants.items():
            setattr(module, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def write_raw(synthetic: Synthetic, data_dir: Path) -> bool:
    """Write the download into `<data>/<id>/raw/` unless files are there; False when kept as it was.

    The files are written beside it and renamed into place, so an interrupted run never leaves a partial
    raw folder that a later run would take as complete.
    """
    raw = paths.raw_dir(synthetic.competition_id, data_dir)
    if raw.is_dir() and any(raw.iterdir()):
        return False
    staging = raw.with_name(".raw-synthetic")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    synthetic.make(staging, np.random.default_rng(SEED))
    if raw.is_dir():
        raw.rmdir()
    staging.rename(raw)
    return True


def prepare_synthetic(synthetic: Synthetic, data_dir: Path) -> Outcome:
    """Write the download (when absent) and run the real preparation; failures are an Outcome, not an error."""
    cid = synthetic.competition_id
    try:
        write_raw(synthetic, data_dir)
        with preparer_constants(cid, synthetic.constants):
            [outcome] = prepare_many([cid], data_dir)
    except Exception as exc:  # noqa: BLE001 -- one broken maker must not stop the others
        return Outcome(cid, "failed", f"{type(exc).__name__}: {exc}")
    return outcome


def chosen(makers: dict[str, Synthetic], split: str | None, ids: list[str]) -> tuple[list[str], list[str]]:
    """(ids to prepare, ids asked for by name that have no maker); no split and no ids means every maker."""
    wanted = list(ids)
    if split:
        wanted += [cid for cid in competitions.split_ids(split) if cid in makers and cid not in wanted]
    elif not ids:
        wanted = sorted(makers)
    return [c for c in wanted if c in makers], [c for c in ids if c not in makers]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, type=Path, help="data root to write <id>/raw and prepare into")
    parser.add_argument("--split", choices=("lite", "medium", "high", "dev", "all"),
                        help="the split's competitions that have a maker")
    parser.add_argument("ids", nargs="*", help="competition ids (added to --split's)")
    args = parser.parse_args(argv)
    makers, problems = discover(mentioning=None if args.split or not args.ids else args.ids)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr, flush=True)
    todo, unknown = chosen(makers, args.split, args.ids)
    failed = 0
    for cid in unknown:
        print(f"failed            {cid}: no synthetic maker (no MAKERS entry in any tests/test_*.py)", flush=True)
        failed += 1
    for cid in todo:
        outcome = prepare_synthetic(makers[cid], args.data_dir)
        ok = outcome.result in ("prepared", "already-prepared")
        failed += not ok
        print(f"{outcome.result:<17} {cid}: {outcome.detail}", flush=True)
    print(f"{len(todo) + len(unknown) - failed} prepared, {failed} failed, data in {args.data_dir}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
