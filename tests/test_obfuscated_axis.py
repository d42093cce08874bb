"""The description axis: every implemented competition has an obfuscated description, and a sweep over
`benchmark.description=original,obfuscated` mounts the right one and compares the two in the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from hpc_mle import competitions, paths, plan

COMPS = ["mini-churn", "mini-digits"]


def test_every_implemented_competition_has_its_own_obfuscated_description() -> None:
    missing, naming = [], []
    for cid, spec in competitions.registry().items():
        if not spec.implemented:
            continue
        path = paths.competitions_root() / cid / "description_obfuscated.md"
        if not path.is_file() or len(path.read_text(encoding="utf-8").split()) < 20:
            missing.append(cid)
            continue
        text = path.read_text(encoding="utf-8")
        if cid in text or text == (path.parent / "description.md").read_text(encoding="utf-8"):
            naming.append(cid)
    assert not missing, f"write competitions/<id>/description_obfuscated.md for: {', '.join(missing)}"
    assert not naming, f"these obfuscated descriptions name the competition or copy the original: {naming}"


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(plan.CONF_DIR), version_base=None):
        return compose("config", overrides=["benchmark=mini", "scaffold=dummy", *overrides])


def test_description_is_part_of_the_attempt_identity_and_checked() -> None:
    only = f"benchmark.competitions=[{','.join(COMPS)}]"
    original = plan.plan_attempts([_compose(only)])
    both = plan.plan_attempts([_compose(only), _compose(only, "benchmark.description=obfuscated")])
    assert [a.description for a in both] == ["original"] * 2 + ["obfuscated"] * 2
    assert [a.id for a in both[:2]] == [a.id for a in original]  # ids planned before the axis keep theirs
    assert len({a.id for a in both}) == 4
    assert "description" not in original[0].identity and both[2].identity["description"] == "obfuscated"
    with pytest.raises(plan.PlanError, match="benchmark.description='plain' is unknown"):
        plan.plan_attempts([_compose(only, "benchmark.description=plain")])


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    from hpc_mle import prepare

    data = tmp_path_factory.mktemp("data")
    for cid in COMPS:
        prepare.prepare(cid, data)
    out = tmp_path_factory.mktemp("runs")
    args = ["-m", "scaffold=dummy", "benchmark=mini", f"benchmark.competitions=[{','.join(COMPS)}]",
            "benchmark.description=original,obfuscated", "runtime.time_limit=30s", "runtime.snapshot_interval=5s",
            f"output_root={out}", f"data_dir={data}"]
    proc = subprocess.run([sys.executable, "-m", "hpc_mle.launch", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (folder,) = out.iterdir()
    return folder


def test_the_mounted_description_follows_the_axis(sweep) -> None:
    manifest = plan.read_manifest(sweep)
    assert sorted(manifest["description"]) == ["obfuscated"] * 2 + ["original"] * 2
    for row in manifest.to_dict("records"):
        seen = json.loads((plan.attempt_dir(sweep, row["id"]) / "logs" / "dummy.json").read_text())
        ours = paths.competitions_root() / row["competition_id"]
        name = "description.md" if row["description"] == "original" else "description_obfuscated.md"
        assert seen["description_title"] == (ours / name).read_text(encoding="utf-8").splitlines()[0]
    titles = {(r["competition_id"], r["description"]) for r in manifest.to_dict("records")}
    assert len(titles) == 4


def test_the_report_compares_original_and_obfuscated(sweep) -> None:
    results = pd.read_parquet(sweep / "analysis" / "results.parquet")
    assert sorted(results["description"]) == ["obfuscated"] * 2 + ["original"] * 2 and results["graded"].all()
    page = (sweep / "analysis" / "report.html").read_text()
    assert "<h2>Original vs obfuscated descriptions</h2>" in page
    assert "any medal % (original)" in page and "any medal % (obfuscated)" in page
    assert "valid % (original)" in page and "valid % (obfuscated)" in page

    from hpc_mle import analysis as an

    table = an.description_comparison(an.load_results(sweep))
    assert list(table["description"]) == ["original", "obfuscated"] and set(table["split"]) == {"mini"}
    # the dummy's sample is valid on both competitions: 2 of mini's 6 competitions, one seed each (no SEM)
    assert table["valid_submission_mean"].tolist() == pytest.approx([100 * 2 / 6] * 2)
    assert table["seeds"].tolist() == [1, 1] and table["valid_submission_sem"].tolist() == [0.0, 0.0]
    board = an.leaderboard(an.original_view(an.load_results(sweep)))
    mini = board[(board["split"] == "mini") & (board["view"] == "all")]
    assert mini["seeds"].tolist() == [1] and mini["cells"].tolist() == [2]  # obfuscated are not extra seeds
