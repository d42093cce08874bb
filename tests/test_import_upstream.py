"""`hpc-mle competitions import-upstream`: leaderboards, descriptions and checksums from a (fake) upstream clone."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml
from click.testing import CliRunner

from hpc_mle import competitions, grading, paths, prepare, upstream
from hpc_mle.cli import main
from hpc_mle.files import md5sum
from support import write_spec

LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize 4242\n".format("a" * 64)


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def make_clone(root: Path, ids: list[str]) -> Path:
    """The layout of openai/mle-bench after `git lfs pull`, with our own made-up content."""
    base = root / "mle-bench" / "mlebench" / "competitions"
    for cid in ids:
        folder = base / cid
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text(f"id: {cid}\n")
        pd.DataFrame({"teamId": range(1, 11), "score": [0.9 - i * 0.05 for i in range(10)]}).to_csv(
            folder / "leaderboard.csv", index=False)
        (folder / "description.md").write_text(f"# Original description of {cid}\n")
        (folder / "description_obfuscated.md").write_text("# Obfuscated\n")
    return root / "mle-bench"


def write_upstream_checksums(clone: Path, cid: str, sums: dict) -> None:
    path = clone / "mlebench" / "competitions" / cid / "checksums.yaml"
    path.write_text(yaml.safe_dump(sums))


def prepared_tiny(synthetic, cid: str) -> None:
    """A test competition with raw files present (no download), prepared with support:prepare_tiny."""
    write_spec(synthetic.root, cid, split="low", download="kaggle", preparer="support:prepare_tiny",
               leaderboard={"source": "kaggle"})
    raw = paths.raw_dir(cid, synthetic.data)
    raw.mkdir(parents=True)
    (raw / "train.csv").write_text("id\n1\n")
    prepare.prepare(cid, synthetic.data)


def test_import_copies_leaderboards_and_verifies_prepared_files(synthetic, tmp_path):
    data = synthetic.data
    for cid in ("comp-match", "comp-differs"):
        prepared_tiny(synthetic, cid)
    write_spec(synthetic.root, "comp-later", split="low", download="kaggle", preparer="support:prepare_tiny")
    clone = make_clone(tmp_path, ["comp-match", "comp-differs", "comp-later", "comp-not-ours"])
    ours = upstream.checksum_dict(paths.public_dir("comp-match", data), paths.private_dir("comp-match", data))
    assert set(ours["public"]) == {"train.csv", "test.csv", "sample_submission.csv"}  # no description.md
    write_upstream_checksums(clone, "comp-match", {**ours, "zip": "f" * 32})
    differs = {"public": dict(ours["public"], **{"test.csv": "0" * 32}), "private": {}, "zip": "f" * 32}
    write_upstream_checksums(clone, "comp-differs", differs)
    write_upstream_checksums(clone, "comp-later", {**ours, "zip": "f" * 32})

    assert grading.leaderboard_thresholds(competitions.get("comp-match"), data) is None  # medals unknown before
    out = cli("competitions", "import-upstream", str(clone), "--benchmark", "lite", "--data-dir", str(data))
    assert out.exit_code == 1, out.output  # a mismatch is an error
    rows = {line.split("│")[1].strip(): line for line in out.stdout.splitlines() if line.count("│") > 3}
    assert "match" in rows["comp-match"] and "mismatch" not in rows["comp-match"]
    assert "mismatch" in rows["comp-differs"] and "public/test.csv" in rows["comp-differs"]
    assert "private/test.csv" in out.stdout  # missing upstream -> reported as extra
    assert "not prepared" in rows["comp-later"] and "comp-not-ours" not in rows
    assert "10 rows" in rows["comp-match"]

    assert (data / "comp-match" / "leaderboard.csv").is_file()
    thresholds = grading.leaderboard_thresholds(competitions.get("comp-match"), data)
    assert thresholds is not None and thresholds.teams == 10
    assert (data / "comp-later" / "upstream" / "description_obfuscated.md").is_file()
    assert upstream.verify("comp-match", data).state == "match"
    assert not (Path(paths.competitions_root()) / "comp-match" / "leaderboard.csv").exists()  # not in the repo


def test_lfs_pointers_stop_the_import_before_anything_is_written(synthetic, tmp_path):
    write_spec(synthetic.root, "comp-a", split="low")
    write_spec(synthetic.root, "comp-b", split="low")
    clone = make_clone(tmp_path, ["comp-a", "comp-b"])
    (clone / "mlebench" / "competitions" / "comp-b" / "leaderboard.csv").write_text(LFS_POINTER)
    out = cli("competitions", "import-upstream", str(clone), "--data-dir", str(synthetic.data))
    text = " ".join(out.stderr.split())
    assert out.exit_code == 2 and "git lfs pull" in text and str(clone) in text
    assert not synthetic.data.exists()

    not_a_clone = cli("competitions", "import-upstream", str(tmp_path), "--data-dir", str(synthetic.data))
    assert not_a_clone.exit_code == 2 and "mlebench/competitions" in not_a_clone.stderr


def test_description_upstream_replaces_ours_and_stays_verifiable(synthetic, tmp_path):
    data = synthetic.data
    prepared_tiny(synthetic, "comp-a")
    (synthetic.root / "comp-a" / "description.md").write_text("# Our description\n")
    ours = cli("prepare", "-c", "comp-a", "--force", "--data-dir", str(data))
    assert ours.exit_code == 0, ours.output
    public_description = paths.public_dir("comp-a", data) / "description.md"
    assert public_description.read_text() == "# Our description\n"

    missing = cli("prepare", "-c", "comp-a", "--description", "upstream", "--data-dir", str(data))
    assert missing.exit_code == 1 and "import-upstream" in " ".join(missing.stdout.split())

    clone = make_clone(tmp_path, ["comp-a"])
    assert cli("competitions", "import-upstream", str(clone), "-c", "comp-a", "--data-dir", str(data)).exit_code == 0
    switched = cli("prepare", "-c", "comp-a", "--description", "upstream", "--data-dir", str(data))
    assert switched.exit_code == 0 and "already-prepared" in switched.stdout
    assert public_description.read_text() == "# Original description of comp-a\n"
    assert prepare.verify("comp-a", data) == []  # checksums.json follows the swap
    assert prepare.recorded_checksums("comp-a", data)["description"] == "upstream"

    fresh = cli("prepare", "-c", "comp-a", "--force", "--description", "upstream", "--data-dir", str(data))
    assert fresh.exit_code == 0 and public_description.read_text().startswith("# Original")
    assert cli("prepare", "-c", "comp-a", "--data-dir", str(data)).exit_code == 0
    assert public_description.read_text() == "# Our description\n"
    assert md5sum(public_description) == prepare.recorded_checksums("comp-a", data)["public"]["description.md"]


def test_checksums_of_issue_13_competitions_prepared_from_synthetic_downloads(tmp_path):
    """Upstream's layout: only top-level csv/json/jsonl/parquet/bson files count. billion-word's public
    holds only re-zipped files (public: {} upstream), TF2-QA's answers are .jsonl, icecube's parquet files
    were written by fastparquet (#58: their MD5 cannot match ours, so they are not comparable by bytes) and
    its pulse batches lie in sub-folders, which upstream's checksums never list."""
    import hashlib

    import synthetic_downloads

    ids = ["billion-word-imputation", "tensorflow2-question-answering", "icecube-neutrinos-in-deep-ice"]
    data = tmp_path / "data"
    makers, _ = synthetic_downloads.discover()
    for cid in ids:
        assert synthetic_downloads.prepare_synthetic(makers[cid], data).result == "prepared"
    clone = make_clone(tmp_path, ids)

    def upstream_sums(cid: str) -> dict:
        """MD5 of the top-level data files, as v1's data.py lists them (written here independently)."""
        sums = {}
        for part in ("public", "private"):
            folder = paths.prepared_dir(cid, data) / part
            sums[part] = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()
                          if p.is_file() and p.suffix in (".csv", ".json", ".jsonl", ".parquet", ".bson")}
        return {**sums, "zip": "f" * 32}

    sums = {cid: upstream_sums(cid) for cid in ids}
    assert sums["billion-word-imputation"]["public"] == {}  # as upstream's own checksums.yaml
    assert set(sums["tensorflow2-question-answering"]["private"]) == {"test.jsonl", "gold_submission.csv"}
    assert any(p.is_dir() for p in paths.public_dir(ids[2], data).iterdir())  # train/ and test/ batches
    icecube = sums[ids[2]]
    icecube["public"].update({"train_meta.parquet": "1" * 32, "test_meta.parquet": "2" * 32})  # fastparquet's
    for cid in ids:
        write_upstream_checksums(clone, cid, sums[cid])

    out = cli("competitions", "import-upstream", str(clone), *[a for c in ids for a in ("-c", c)],
              "--data-dir", str(data))
    assert out.exit_code == 0, out.output
    for cid in ids[:2]:
        assert upstream.verify(cid, data).text() == "match"
    verdict = upstream.verify(ids[2], data)
    assert verdict.state == "match" and verdict.not_comparable == ["public/test_meta.parquet",
                                                                  "public/train_meta.parquet"]
    assert "compare content" in verdict.text()

    answers = sums["tensorflow2-question-answering"]
    answers["private"]["test.jsonl"] = "0" * 32
    write_upstream_checksums(clone, "tensorflow2-question-answering", answers)
    out = cli("competitions", "import-upstream", str(clone), "-c", "tensorflow2-question-answering",
              "--data-dir", str(data))
    assert out.exit_code == 1 and "private/test.jsonl" in out.output
