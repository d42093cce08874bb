"""The data directory: atomic, idempotent preparation with checksums that catch tampering."""

import pytest

from hpc_mle import paths, prepare
from support import write_spec


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    root = tmp_path / "competitions"
    monkeypatch.setenv("HPC_MLE_COMPETITIONS", str(root))
    write_spec(root, "tiny", preparer="support:prepare_tiny")
    (root / "tiny" / "description.md").write_text("# Tiny\n")
    write_spec(root, "crashy", preparer="support:prepare_crash")
    return tmp_path / "data"


def test_prepare_lays_out_public_private_and_checksums(tiny):
    result = prepare.prepare("tiny", tiny)
    assert result.action == "prepared" and result.files == 5
    public = paths.public_dir("tiny", tiny)
    assert sorted(p.name for p in public.iterdir()) == ["description.md", "sample_submission.csv", "test.csv",
                                                        "train.csv"]
    assert (paths.private_dir("tiny", tiny) / "test.csv").is_file()
    recorded = prepare.recorded_checksums("tiny", tiny)
    assert set(recorded["public"]) == {"description.md", "sample_submission.csv", "test.csv", "train.csv"}
    assert prepare.verify("tiny", tiny) == []


def test_preparing_twice_is_a_no_op(tiny):
    prepare.prepare("tiny", tiny)
    mtime = paths.checksum_file("tiny", tiny).stat().st_mtime_ns
    assert prepare.prepare("tiny", tiny).action == "already-prepared"
    assert paths.checksum_file("tiny", tiny).stat().st_mtime_ns == mtime
    assert prepare.prepare("tiny", tiny, force=True).action == "prepared"


def test_tampering_is_detected_and_repaired_by_preparing_again(tiny):
    prepare.prepare("tiny", tiny)
    answers = paths.private_dir("tiny", tiny) / "test.csv"
    answers.write_text("id,target\n3,1\n4,1\n")
    (paths.public_dir("tiny", tiny) / "extra.csv").write_text("leak\n")
    problems = prepare.verify("tiny", tiny)
    assert any("private/test.csv: changed since preparation" in p for p in problems)
    assert any("public/extra.csv: not part of the preparation" in p for p in problems)
    assert not prepare.is_prepared("tiny", tiny)
    # The quick check of a launch (names and sizes, no MD5) sees the extra file and the changed size.
    quick = prepare.verify("tiny", tiny, quick=True)
    assert "public/extra.csv: not part of the preparation" in quick
    assert any(p.startswith("private/test.csv: changed since preparation") for p in quick) == (
        answers.stat().st_size != prepare.recorded_checksums("tiny", tiny)["sizes"]["private"]["test.csv"])
    assert prepare.prepare("tiny", tiny).action == "prepared"
    assert prepare.verify("tiny", tiny) == [] and prepare.verify("tiny", tiny, quick=True) == []


def test_an_interrupted_preparation_leaves_nothing_that_looks_prepared(tiny):
    # The preparer dies of a full disk half-way: one error naming the data root and the fix, nothing half-made.
    with pytest.raises(prepare.PrepareError, match=r"crashy: no space left on .*--data-dir DIR or HPC_MLE_DATA"):
        prepare.prepare("crashy", tiny)
    comp = paths.competition_dir("crashy", tiny)
    assert not paths.prepared_dir("crashy", tiny).exists()
    # Only the hidden partial folder a resumed run finishes (and its lock) is left beside raw/.
    assert sorted(p.name for p in comp.iterdir()) == [".prepared.lock", ".prepared.partial", "raw"]
    assert prepare.verify("crashy", tiny) == [f"crashy: not prepared (no {paths.checksum_file('crashy', tiny)})"]


def test_a_killed_preparation_resumes_without_copying_again_and_equals_a_clean_one(tiny, tmp_path, monkeypatch):
    import fcntl

    from PIL import Image

    import support

    write_spec(tmp_path / "competitions", "pics", preparer="support:prepare_images")
    for data in (tiny, tmp_path / "clean"):
        images = paths.raw_dir("pics", data) / "images"
        images.mkdir(parents=True)
        for i in range(6):
            Image.new("L", (8, 8), color=i * 40).save(images / f"{i}.png")
    monkeypatch.setitem(support.CRASH_AFTER, "files", 4)
    with pytest.raises(KeyboardInterrupt):
        prepare.prepare("pics", tiny)
    partial = paths.competition_dir("pics", tiny) / ".prepared.partial" / "public" / "images"
    kept = {p.name: p.stat().st_mtime_ns for p in partial.iterdir()}
    assert sorted(kept) == ["0.png", "1.png", "2.png", "3.png"] and not paths.prepared_dir("pics", tiny).exists()

    with open(paths.competition_dir("pics", tiny) / ".prepared.lock", "a") as lock:  # another job preparing it
        fcntl.flock(lock, fcntl.LOCK_EX)
        monkeypatch.setitem(support.CRASH_AFTER, "files", None)
        with pytest.raises(prepare.PrepareError, match="another process is preparing it now"):
            prepare.prepare("pics", tiny)
    assert prepare.prepare("pics", tiny).action == "prepared"
    done = paths.public_dir("pics", tiny) / "images"
    assert {n: (done / n).stat().st_mtime_ns for n in kept} == kept  # not copied again
    assert len(list(done.iterdir())) == 6 and prepare.verify("pics", tiny) == []
    prepare.prepare("pics", tmp_path / "clean")
    assert prepare.recorded_checksums("pics", tiny)["public"] == prepare.recorded_checksums(
        "pics", tmp_path / "clean")["public"]
    assert not (paths.competition_dir("pics", tiny) / ".prepared.partial").exists()

    # Raw files changed since the killed run: the partial folder is not trusted, it starts afresh.
    monkeypatch.setitem(support.CRASH_AFTER, "files", 2)
    with pytest.raises(KeyboardInterrupt):
        prepare.prepare("pics", tiny, force=True)
    Image.new("L", (8, 8), color=255).save(paths.raw_dir("pics", tiny) / "images" / "0.png")
    monkeypatch.setitem(support.CRASH_AFTER, "files", None)
    assert prepare.prepare("pics", tiny, force=True).action == "prepared"
    assert (done / "0.png").read_bytes() == (paths.raw_dir("pics", tiny) / "images" / "0.png").read_bytes()


def test_output_must_match_the_reference_checksums(tiny, tmp_path):
    spec_dir = tmp_path / "competitions" / "tiny"
    prepare.prepare("tiny", tiny, write_checksums=True)
    assert (spec_dir / "checksums.yaml").is_file()
    prepare.prepare("tiny", tmp_path / "other-data")  # same preparer, same bytes: passes
    (spec_dir / "checksums.yaml").write_text((spec_dir / "checksums.yaml").read_text().replace(
        "test.csv: ", "test.csv: 0", 1))
    with pytest.raises(prepare.PrepareError, match="differ from the reference checksums"):
        prepare.prepare("tiny", tmp_path / "third-data")
    assert not paths.prepared_dir("tiny", tmp_path / "third-data").exists()


def test_unimplemented_competition_says_so(tmp_path, monkeypatch):
    root = tmp_path / "competitions"
    monkeypatch.setenv("HPC_MLE_COMPETITIONS", str(root))
    write_spec(root, "later", implemented=False, preparer=None)
    with pytest.raises(prepare.PrepareError, match="no preparer yet"):
        prepare.prepare("later", tmp_path / "data")
