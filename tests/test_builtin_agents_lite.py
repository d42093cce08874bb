"""The dummy agent makes a valid submission on every MLE-bench Lite competition (synthetic data).

Each competition is prepared by its real preparer from the synthetic Kaggle download its own test
module writes; the dummy agent's script then runs as in the sandbox (a separate Python, the standard
library only, only the public folder as its data) and its submission is graded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from lite_support import prepare_from_raw
from test_lite_audio_text import (
    EN_SPECIAL,
    EN_WORDS,
    RU_SPECIAL,
    RU_WORDS,
    TEXT_EN,
    TEXT_RU,
    make_raw_mlsp,
    make_raw_text,
    make_raw_whale,
)
from test_lite_images_a import (
    make_raw_aerial_cactus,
    make_raw_aptos,
    make_raw_denoising,
    make_raw_dog_breed,
    make_raw_dogs_vs_cats,
)
from test_lite_images_b import (
    make_raw_histopathologic,
    make_raw_leaf,
    make_raw_plant,
    make_raw_ranzcr,
    make_raw_siim,
)
from test_lite_tabular import (
    make_insults,
    make_jigsaw,
    make_nomad,
    make_pizza,
    make_spooky,
    make_taxi,
    make_tps_dec,
    make_tps_may,
)

from hpc_mle import competitions, grading, paths
from hpc_mle.agents import sample_submission
from hpc_mle.prepare import tabular

AGENTS = Path(__file__).resolve().parents[1] / "hpc_mle" / "agents"
MAKERS = {
    "aerial-cactus-identification": make_raw_aerial_cactus,
    "aptos2019-blindness-detection": make_raw_aptos,
    "denoising-dirty-documents": make_raw_denoising,
    "detecting-insults-in-social-commentary": make_insults,
    "dog-breed-identification": make_raw_dog_breed,
    "dogs-vs-cats-redux-kernels-edition": make_raw_dogs_vs_cats,
    "histopathologic-cancer-detection": make_raw_histopathologic,
    "jigsaw-toxic-comment-classification-challenge": make_jigsaw,
    "leaf-classification": make_raw_leaf,
    "mlsp-2013-birds": make_raw_mlsp,
    "new-york-city-taxi-fare-prediction": make_taxi,
    "nomad2018-predict-transparent-conductors": make_nomad,
    "plant-pathology-2020-fgvc7": make_raw_plant,
    "random-acts-of-pizza": make_pizza,
    "ranzcr-clip-catheter-line-classification": make_raw_ranzcr,
    "siim-isic-melanoma-classification": make_raw_siim,
    "spooky-author-identification": make_spooky,
    "tabular-playground-series-dec-2021": make_tps_dec,
    "tabular-playground-series-may-2022": make_tps_may,
    TEXT_EN: make_raw_text("en", EN_WORDS, EN_SPECIAL),
    TEXT_RU: make_raw_text("ru", RU_WORDS, RU_SPECIAL),
    "the-icml-2013-whale-challenge-right-whale-redux": make_raw_whale,
}


def run_dummy(public: Path, out: Path, cid: str) -> dict:
    """The dummy agent's script with the agent contract's variables, as the sandbox starts it."""
    for sub in ("submission", "logs", "tmp"):
        (out / sub).mkdir(parents=True)
    env = {"PATH": os.environ["PATH"], "DATA_DIR": str(public), "SUBMISSION_DIR": str(out / "submission"),
           "LOGS_DIR": str(out / "logs"), "COMPETITION_ID": cid, "TMPDIR": str(out / "tmp"),
           "HPC_MLE_VALIDATE_SCRIPT": str(out / "no-validator.sh")}
    done = subprocess.run([sys.executable, "-I", str(AGENTS / "dummy.py")], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, f"{cid}: {done.stdout}{done.stderr}"
    return json.loads((out / "logs" / "dummy.json").read_text())


def test_the_lite_split_is_covered():
    assert sorted(MAKERS) == competitions.split_ids("lite")


@pytest.mark.slow
def test_dummy_agent_submits_a_valid_file_on_every_lite_competition(tmp_path, monkeypatch):
    monkeypatch.setattr(tabular, "NYC_TEST_ROWS", 37)  # as the competitions' own tests do
    monkeypatch.setattr(tabular, "TPS_MAY_TEST_ROWS", 50)
    data, found = tmp_path / "data", {}
    for cid, make_raw in MAKERS.items():
        p = prepare_from_raw(cid, make_raw, data)
        record = run_dummy(p.public, tmp_path / "attempts" / cid, cid)
        found[cid] = os.path.relpath(record["sample_submission"], p.public)
        report = grading.grade_submission(tmp_path / "attempts" / cid / "submission" / "submission.csv", cid, data)
        assert report.valid_submission, f"{cid}: {report.reason}"
    # The text-normalization samples are public only as a zip: unpacked into the agent's scratch.
    assert found[TEXT_EN].startswith("..") and found[TEXT_EN].endswith("ensamplesubmission2.csv")
    assert found["detecting-insults-in-social-commentary"] == "sample_submission_null.csv"
    assert found["denoising-dirty-documents"] == "sampleSubmission.csv"
    assert paths.public_dir(TEXT_RU, data).joinpath("ru_sample_submission_2.csv.zip").is_file()


def test_sample_is_found_however_it_is_shipped(tmp_path):
    """Nested, zipped (with a decoy member), gzipped, other names; the shallowest plain CSV wins."""
    nested = tmp_path / "nested"
    (nested / "inputs" / "extra").mkdir(parents=True)
    (nested / "inputs" / "extra" / "kaggle_sample_submission.csv").write_text("id,y\n1,0\n")
    assert sample_submission.find_sample(str(nested)).endswith("inputs/extra/kaggle_sample_submission.csv")
    (nested / "randomPredictions.csv").write_text("id,y\n1,0\n")
    assert sample_submission.find_sample(str(nested)).endswith("/nested/randomPredictions.csv")

    zipped = tmp_path / "zipped"
    zipped.mkdir()
    with zipfile.ZipFile(zipped / "sampleSubmission.zip", "w") as archive:
        archive.writestr("__MACOSX/._sampleSubmission.csv", "junk")
        archive.writestr("readme.txt", "not a csv")
        archive.writestr("sampleSubmission.csv", "clip,probability\na.aif,0.5\n")
    (zipped / "train.csv").write_text("clip,label\nb.aif,1\n")
    found = sample_submission.find_sample(str(zipped), str(tmp_path / "scratch-z"))
    assert Path(found).read_text() == "clip,probability\na.aif,0.5\n"

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "a_sample_submission.csv.zip").write_bytes(b"PK\x03\x04 not really")
    import gzip

    with gzip.open(damaged / "sample_submission.csv.gz", "wt") as fh:
        fh.write("id,y\n7,1\n")
    assert Path(sample_submission.find_sample(str(damaged), str(tmp_path / "scratch-d"))).read_text() == "id,y\n7,1\n"
    assert sample_submission.find_sample(str(tmp_path / "scratch-none-here")) is None

    # statoil ships its public sample only as a .7z (v1); unpacked when py7zr is importable, as in our sandboxes.
    import py7zr

    sevenzip = tmp_path / "sevenzip"
    sevenzip.mkdir()
    (sevenzip / "damaged_sample_submission.csv.7z").write_bytes(b"7z\xbc\xaf not really")
    (tmp_path / "sample_submission.csv").write_text("id,is_iceberg\nab12,0.5\n")
    with py7zr.SevenZipFile(sevenzip / "sample_submission.csv.7z", "w") as archive:
        archive.write(tmp_path / "sample_submission.csv", "sample_submission.csv")
    found = sample_submission.find_sample(str(sevenzip), str(tmp_path / "scratch-7z"))
    assert Path(found).read_text() == "id,is_iceberg\nab12,0.5\n"
