"""Helpers for tests: small competitions written to disk."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from hpc_mle import plan


def write_spec(root: Path, cid: str, **overrides) -> Path:
    """A valid implemented spec under `root/<cid>/spec.yaml`; `overrides` replace top-level fields."""
    spec = {
        "id": cid,
        "name": f"Synthetic {cid}",
        "version": 3,
        "split": "mini",
        "category": "Tabular",
        "metric": {"name": "auc-roc", "higher_is_better": True},
        "submission": {"id_columns": ["id"], "answer_columns": ["target"]},
        "files": {"answers": "private/test.csv", "sample_submission": "public/sample_submission.csv"},
        "leaderboard": {"source": "reference-panel"},
        "status": {"state": "ok"},
        "implemented": True,
        "preparer": "hpc_mle.prepare.mini:unused",
    }
    spec.update(overrides)
    folder = root / cid
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder / "spec.yaml"


class Synthetic:
    """A competitions root + data dir in tmp, with helpers to add competitions and submissions."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = tmp / "competitions"
        self.data = tmp / "data"
        self.root.mkdir()
        monkeypatch.setenv("HPC_MLE_COMPETITIONS", str(self.root))

    def add(self, cid: str, answers: pd.DataFrame, leaderboard: list[float] | None = None, **spec) -> str:
        write_spec(self.root, cid, **spec)
        private = self.data / cid / "prepared" / "private"
        private.mkdir(parents=True)
        answers.to_csv(private / "test.csv", index=False)
        if leaderboard is not None:
            pd.DataFrame({"teamId": range(1, len(leaderboard) + 1), "score": leaderboard}).to_csv(
                self.root / cid / "leaderboard.csv", index=False)
        return cid

    def submission(self, name: str, content: str | bytes | pd.DataFrame) -> Path:
        path = self.data.parent / "subs" / name
        path.parent.mkdir(exist_ok=True)
        if isinstance(content, pd.DataFrame):
            content.to_csv(path, index=False)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path


def prepare_tiny(raw: Path, public: Path, private: Path) -> None:
    """A preparer for tests: four rows, split 2/2."""
    pd.DataFrame({"id": [1, 2], "x": [0.1, 0.9], "target": [0, 1]}).to_csv(public / "train.csv", index=False)
    pd.DataFrame({"id": [3, 4], "x": [0.2, 0.8]}).to_csv(public / "test.csv", index=False)
    pd.DataFrame({"id": [3, 4], "target": [0.5, 0.5]}).to_csv(public / "sample_submission.csv", index=False)
    pd.DataFrame({"id": [3, 4], "target": [0, 1]}).to_csv(private / "test.csv", index=False)


CRASH_AFTER: dict[str, int | None] = {"files": None}  # tests set it to kill prepare_images half-way


def prepare_images(raw: Path, public: Path, private: Path) -> None:
    """A preparer for tests: copies raw/images/*.png one by one with the shared (resumable) step."""
    from hpc_mle.prepare.common import copy_files

    names = sorted(p.name for p in (raw / "images").iterdir())
    for i, name in enumerate(names):
        if CRASH_AFTER["files"] is not None and i == CRASH_AFTER["files"]:
            raise KeyboardInterrupt("killed half-way")  # as a job killed by Slurm
        copy_files([name], raw / "images", public / "images")
    prepare_tiny(raw, public, private)


def prepare_crash(raw: Path, public: Path, private: Path) -> None:
    """A preparer that dies half-way, as a killed job or a full disk would."""
    (public / "train.csv").write_text("id,x\n1,0.1\n")
    raise OSError(28, "No space left on device")


def plan_sweep(overrides: list[str], tmp_path: Path, write: bool = False) -> tuple[list, list[plan.Attempt], Path]:
    """Configs, attempts and sweep folder of one launch's overrides; the plan is written only with `write`."""
    jobs = plan.expand([*overrides, f"output_root={tmp_path}"], True)
    cfgs = plan.compose_all(jobs)
    attempts = plan.plan_attempts(cfgs)
    sweep = tmp_path / plan.sweep_name(cfgs, jobs)
    if write:
        plan.write_plan(sweep, cfgs, jobs, attempts)
    return cfgs, attempts, sweep
