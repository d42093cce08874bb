"""The registry of synthetic downloads (tests/synthetic_downloads.py): complete, and its CLI prepares for real."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import synthetic_downloads

from hpc_mle import competitions, prepare

SCRIPT = Path(__file__).resolve().parent / "synthetic_downloads.py"
CHEAP = ["playground-series-s3e18", "spaceship-titanic"]


def test_every_implemented_competition_has_a_synthetic_download():
    """The guard that keeps the registry complete: a competition implemented without a maker fails here."""
    makers, problems = synthetic_downloads.discover()
    assert not problems, problems
    implemented = {cid for cid, spec in competitions.registry().items() if spec.implemented and spec.split != "mini"}
    missing = sorted(implemented - set(makers))
    assert not missing, (f"{len(missing)} implemented competitions have no MAKERS entry in any tests/test_*.py: "
                         f"{missing}")
    not_implemented = sorted(set(makers) - implemented)
    assert not not_implemented, f"MAKERS entries for competitions that are not implemented: {not_implemented}"


def test_a_constant_the_preparer_lacks_is_named(tmp_path):
    with_bad_constant = synthetic_downloads.Synthetic(CHEAP[1], lambda raw, rng: None, "test_x", {"NO_SUCH": 1})
    outcome = synthetic_downloads.prepare_synthetic(with_bad_constant, tmp_path)
    assert outcome.result == "failed" and "NO_SUCH" in outcome.detail and "PREPARER_CONSTANTS" in outcome.detail


def test_cli_writes_the_downloads_and_prepares_them_once(tmp_path, capsys):
    first = subprocess.run([sys.executable, str(SCRIPT), "--data-dir", str(tmp_path), *CHEAP, "no-such-competition"],
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 1, first.stdout + first.stderr  # the unknown id fails, the others are prepared
    lines = first.stdout.splitlines()
    assert any(line.startswith("failed") and "no-such-competition" in line for line in lines)
    for cid in CHEAP:
        assert any(line.startswith("prepared") and cid in line for line in lines), first.stdout
        assert prepare.verify(cid, tmp_path) == []
    raw = tmp_path / CHEAP[0] / "raw"
    before = {p.name: p.stat().st_mtime_ns for p in raw.iterdir()}

    assert synthetic_downloads.main(["--data-dir", str(tmp_path), *CHEAP]) == 0  # again, in this process
    again = capsys.readouterr().out
    assert all(line.startswith("already-prepared") for line in again.splitlines()[:2]), again
    assert {p.name: p.stat().st_mtime_ns for p in raw.iterdir()} == before  # the raw files are kept as they were
