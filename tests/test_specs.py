"""The competition registry: every upstream competition is listed, and a bad spec names file and field."""

import collections

import pytest
import yaml

from hpc_mle import competitions
from hpc_mle.competitions import SpecError, load_spec
from support import write_spec

UPSTREAM_COUNTS = {"low": 22, "medium": 38, "high": 15, "dev": 7}


def test_all_82_upstream_competitions_are_listed():
    counts = collections.Counter(s.split for s in competitions.registry().values())
    assert {k: counts[k] for k in UPSTREAM_COUNTS} == UPSTREAM_COUNTS
    assert len(competitions.split_ids("all")) == 75
    assert competitions.split_ids("lite") == competitions.split_ids("low")
    assert set(competitions.split_ids("split75")) == set(competitions.split_ids("all"))


def test_splits_by_name_and_unknown_split():
    assert "spaceship-titanic" in competitions.split_ids("dev")
    assert "leaf-classification" in competitions.split_ids("lite")
    assert len(competitions.split_ids("mini")) >= 6
    with pytest.raises(KeyError, match="Unknown split 'tiny'"):
        competitions.split_ids("tiny")


def test_upstream_statuses_record_known_issues():
    reg = competitions.registry()
    assert reg["tensorflow-speech-recognition-challenge"].status.state == "known-issue"
    assert reg["tensorflow-speech-recognition-challenge"].status.upstream_issue == 63
    assert reg["multi-modal-gesture-recognition"].status.state == "leaky"
    assert reg["random-acts-of-pizza"].status.upstream_issue == 108
    assert all(s.status.reason for s in reg.values() if s.status.state != "ok")


def test_unknown_competition_suggests_close_ids():
    with pytest.raises(KeyError, match="Did you mean leaf-classification"):
        competitions.get("leaf-clasification")


def break_spec(tmp_path, **overrides):
    return load_spec(write_spec(tmp_path, "demo", **overrides))


@pytest.mark.parametrize(
    ("overrides", "field", "hint"),
    [
        ({"split": "tiny"}, "split", "Fix: use one of low, medium, high, dev, mini"),
        ({"metric": {"name": "auc-roc"}}, "metric.higher_is_better", "is required"),
        ({"metric": {"name": "aucroc", "higher_is_better": True}}, "metric.name", "not an implemented metric"),
        ({"metric": {"name": "auc-roc", "higher_is_better": False}}, "metric.higher_is_better", "contradicts"),
        ({"submission": {"id_columns": []}}, "submission.id_columns", "needs at least one entry"),
        ({"submission": {"id_columns": ["id"], "row_order": "random"}}, "submission.row_order", "Fix: use one of"),
        ({"version": "two"}, "version", "must be int"),
        ({"implemented": "yes"}, "implemented", "must be bool"),
        ({"status": {"state": "leaky"}}, "status.reason", "is required when the state is 'leaky'"),
        ({"metrik": 1}, "metrik", "is not a known field"),
        ({"preparer": None}, "preparer", "is required when implemented is true"),
        ({"id": "other"}, "id", "differs from the folder name"),
    ],
)
def test_malformed_spec_names_file_field_and_fix(tmp_path, overrides, field, hint):
    with pytest.raises(SpecError) as exc:
        break_spec(tmp_path, **overrides)
    message = str(exc.value)
    assert str(tmp_path / "demo" / "spec.yaml") in message
    assert f"field '{field}'" in message
    assert hint in message


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "demo" / "spec.yaml"
    path.parent.mkdir()
    path.write_text("id: demo\nmetric: [unclosed\n")
    with pytest.raises(SpecError, match=r"demo/spec.yaml: not valid YAML"):
        load_spec(path)


def test_a_bad_spec_stops_the_registry_with_its_name(tmp_path, monkeypatch):
    write_spec(tmp_path, "good")
    bad = write_spec(tmp_path, "bad")
    bad.write_text(yaml.safe_dump({"id": "bad"}))
    monkeypatch.setenv("HPC_MLE_COMPETITIONS", str(tmp_path))
    with pytest.raises(SpecError, match="bad/spec.yaml: field 'name': is required"):
        competitions.registry()


# Issue-14/15 competitions whose engineers were still editing their specs when the preparation figures were
# filled in (prepare_disk_gb / prepare_memory_gb): the guard below does not yet require them. Empty this set
# as they are stated; a listed spec that states them is checked like any other.
SIZES_PENDING: set[str] = set()  # all stated at 16:05 UTC, by their engineers or from this guard's fills


def test_kaggle_specs_state_the_disk_and_memory_a_preparation_needs():
    """`prepare --slurm` asks for these and `prepare --check` refuses early on them, so every Kaggle
    competition states both, positive, and never less disk than its download alone."""
    specs = {cid: s for cid, s in competitions.registry().items() if s.implemented and s.download == "kaggle"}
    unknown = sorted(SIZES_PENDING - set(specs))
    assert not unknown, f"SIZES_PENDING names competitions that are not implemented Kaggle ones: {unknown}"
    missing = sorted(cid for cid, s in specs.items() if cid not in SIZES_PENDING
                     and (s.prepare_disk_gb is None or s.prepare_memory_gb is None))
    assert not missing, f"state prepare_disk_gb and prepare_memory_gb in these specs: {missing}"
    stated = {cid: s for cid, s in specs.items() if s.prepare_disk_gb is not None or s.prepare_memory_gb is not None}
    not_positive = sorted(cid for cid, s in stated.items()
                          if any(v is not None and v <= 0 for v in (s.prepare_disk_gb, s.prepare_memory_gb)))
    assert not not_positive, f"prepare_disk_gb / prepare_memory_gb must be positive: {not_positive}"
    below_download = sorted(cid for cid, s in stated.items() if s.prepare_disk_gb is not None
                            and s.dataset_size_gb is not None and s.prepare_disk_gb < s.dataset_size_gb)
    assert not below_download, f"prepare_disk_gb is below dataset_size_gb (the download alone): {below_download}"
    assert len(specs) - len(SIZES_PENDING) >= 51  # the 22 Lite, the 26 of issue 13, freesound, speech, bms
