"""The baseline agent: how it reads a task from the files, and that it beats the sample submission
on every mini competition when run for real in the sandbox."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from hpc_mle import competitions, grading, paths, runner

SCRIPT = Path(__file__).resolve().parents[1] / "hpc_mle" / "agents" / "baseline.py"


@pytest.fixture(scope="module")
def baseline():
    """The agent script as a module (it is a standalone script, not part of the package's imports)."""
    spec = importlib.util.spec_from_file_location("baseline_agent", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    # Only this one entry is added and removed: patch.dict(sys.modules) would also drop every module imported
    # meanwhile (pandas' pyarrow extension types among them), and importing those again fails elsewhere.
    sys.modules["baseline_agent"] = module
    try:
        with mock.patch.dict(os.environ):
            spec.loader.exec_module(module)  # dataclasses look their module up in sys.modules
            yield module
    finally:
        sys.modules.pop("baseline_agent", None)


def frames(train: dict, sample: dict, test_extra: dict | None = None) -> tuple[pd.DataFrame, ...]:
    train_df = pd.DataFrame(train)
    test_df = pd.DataFrame({"id": sample["id"], **(test_extra or {})})
    return train_df, test_df, pd.DataFrame(sample)


def test_species_columns_make_one_multiclass_task(baseline):
    train, test, sample = frames(
        {"id": ["1", "2", "3", "4"], "size": [1.0, 2, 3, 4], "species": ["oak", "ash", "oak", "elm"]},
        {"id": ["5", "6"], "ash": [1 / 3] * 2, "elm": [1 / 3] * 2, "oak": [1 / 3] * 2}, {"size": [1.5, 3.5]})
    (task,) = baseline.plan_tasks(train, test, sample, "")
    assert (task.kind, task.target, task.metric) == ("multiclass", "species", "multi-log-loss")
    assert task.columns == ["ash", "elm", "oak"]
    assert baseline.encode_target(task, train["species"]).tolist() == [2, 0, 2, 1]


@pytest.mark.parametrize(("values", "column", "description", "positive"), [
    (["great", "other", "other", "great", "other"], "great", "", "great"),
    (["no", "yes", "no", "no", "yes"], "churn", "", "yes"),
    ([0, 1, 0, 0, 0], "target", "", 1),
    (["ham", "spam", "ham", "spam", "spam"], "label", "give the probability that a message is spam.", "spam"),
    (["cat", "dog", "dog", "dog", "cat"], "label", "", "cat"),  # nothing to go by: the rarer class
])
def test_binary_probability_picks_the_positive_class(baseline, values, column, description, positive):
    train, test, sample = frames({"id": list("abcde"), "x": range(5), column: values},
                                 {"id": ["f", "g"], column: [0.5, 0.5]}, {"x": [1, 2]})
    (task,) = baseline.plan_tasks(train, test, sample, description)
    assert task.kind == "binary" and task.classes[-1] == positive
    assert baseline.encode_target(task, train[column]).tolist() == [int(v == positive) for v in values]


def test_several_target_columns_make_one_task_each(baseline):
    train, test, sample = frames({"id": list("abcd"), "text": ["w"] * 4, "toxic": [0, 1, 0, 1],
                                  "insult": [1, 0, 0, 0]},
                                 {"id": ["e"], "toxic": [0.5], "insult": [0.5]}, {"text": ["w"]})
    tasks = baseline.plan_tasks(train, test, sample, "")
    assert [(t.kind, t.target, t.columns, t.classes[-1]) for t in tasks] == [
        ("binary", "toxic", ["toxic"], 1), ("binary", "insult", ["insult"], 1)]


def test_metric_comes_from_whole_words_of_the_description(baseline):
    assert baseline.pick_metric("binary", "scored with the area under the roc curve") == "auc"
    assert baseline.pick_metric("binary", "a sauce review; lower log loss is better") == "log-loss"
    assert baseline.pick_metric("regression", "root mean squared logarithmic error") == "rmsle"
    assert baseline.pick_metric("regression", "mean absolute error") == "mae"


def test_label_sets_labels_and_numbers(baseline):
    genres = ["Drama", "Comedy Drama", "Action", "", "Comedy", "Action Comedy", "Drama", "Short Comedy",
              "Short", "Drama Romance", "Romance", "Action Drama"] * 3
    train, test, sample = frames({"id": [str(i) for i in range(36)], "x": range(36), "genres": genres},
                                 {"id": ["a"], "genres": ["Drama"]}, {"x": [1]})
    (task,) = baseline.plan_tasks(train, test, sample, "")
    assert task.kind == "multilabel" and task.metric == "micro-f1"
    assert set(task.classes) == {"Drama", "Comedy", "Action", "Short", "Romance"}
    assert baseline.encode_target(task, train["genres"]).sum(axis=1)[:4].tolist() == [1, 2, 1, 0]

    digits = pd.DataFrame({"id": [str(i) for i in range(50)], "label": np.arange(50) % 10})
    (task,) = baseline.plan_tasks(digits, digits[["id"]], pd.DataFrame({"id": ["x"], "label": [1]}), "")
    assert task.kind == "labels" and task.metric == "accuracy" and len(task.classes) == 10

    prices = pd.DataFrame({"id": [str(i) for i in range(50)], "area": range(50),
                           "price": np.exp(np.linspace(10, 14, 50)).round()})
    sample = pd.DataFrame({"id": ["x"], "price": [160000.0]})
    (task,) = baseline.plan_tasks(prices, prices[["id", "area"]], sample, "root mean squared logarithmic error")
    assert task.kind == "regression" and task.metric == "rmsle" and task.log_target
    assert baseline.to_output(np.array([-1.0, 12.0]), task).min() >= 0


def test_agent_writes_a_submission_in_the_samples_order(baseline, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    x = rng.normal(size=300)
    pd.DataFrame({"id": range(200), "x": x[:200], "colour": rng.choice(["red", "blue"], 200),
                  "target": (x[:200] > 0).astype(int)}).to_csv(data / "train.csv", index=False)
    pd.DataFrame({"id": range(200, 300), "x": x[200:], "colour": "red"}).to_csv(data / "test.csv", index=False)
    order = list(range(299, 199, -1))
    pd.DataFrame({"id": order, "target": 0.5}).to_csv(data / "sample_submission.csv", index=False)
    for name in ("submission", "logs", "code"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(f"{name.upper()}_DIR", str(tmp_path / name))
    monkeypatch.setenv("DATA_DIR", str(data))
    monkeypatch.setenv("TIME_LIMIT_SECS", "60")
    monkeypatch.setenv("HPC_MLE_VALIDATE_SCRIPT", str(tmp_path / "no-validator.sh"))

    with threadpool_limits(1):  # as in the sandbox, where the script sets this before numpy loads
        assert baseline.main() == 0
    sub = pd.read_csv(tmp_path / "submission" / "submission.csv")
    assert list(sub.columns) == ["id", "target"] and sub["id"].tolist() == order
    assert sub["target"].between(0, 1).all()
    assert np.corrcoef(sub["target"], x[200:][::-1])[0, 1] > 0.5  # it learned that x decides the target
    report = json.loads((tmp_path / "logs" / "baseline.json").read_text())
    assert report["outcome"] == "submitted the model's predictions"
    assert (tmp_path / "code" / "baseline.py").is_file()
    assert not (tmp_path / "submission" / "submission.candidate.csv").exists()


def test_agent_keeps_the_sample_when_it_cannot_solve_the_task(baseline, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    pd.DataFrame({"id": [1, 2], "answer": [0.5, 0.5]}).to_csv(data / "sample_submission.csv", index=False)
    for name in ("submission", "logs", "code"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(f"{name.upper()}_DIR", str(tmp_path / name))
    monkeypatch.setenv("DATA_DIR", str(data))

    assert baseline.main() == 0
    assert (tmp_path / "submission" / "submission.csv").read_bytes() == (data / "sample_submission.csv").read_bytes()
    report = json.loads((tmp_path / "logs" / "baseline.json").read_text())
    assert report["outcome"].startswith("failed") and "Traceback" in report["error"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
@pytest.mark.parametrize("cid", competitions.split_ids("mini"))
def test_baseline_beats_the_sample_submission(cid, mini_data, tmp_path):
    cfg = runner.AttemptConfig(competition_id=cid, scaffold="baseline", out=tmp_path / cid, sandbox="bwrap",
                               time_limit_s=120, data_dir=mini_data, telemetry_interval_s=1)
    status = runner.run_attempt(cfg)
    assert status["state"] == "done", status

    report = json.loads((tmp_path / cid / "logs" / "baseline.json").read_text())
    assert report["outcome"] == "submitted the model's predictions", report
    assert report["validator"]["valid"] is True
    ours = grading.grade_submission(tmp_path / cid / "submission" / "submission.csv", cid, mini_data)
    spec = competitions.get(cid)
    sample = grading.grade_submission(paths.prepared_dir(cid, mini_data) / spec.files.sample_submission, cid,
                                      mini_data)
    assert ours.valid_submission, ours.reason
    if spec.metric.higher_is_better:
        assert ours.score > sample.score
    else:
        assert ours.score < sample.score


def test_rows_that_add_to_one_and_a_target_no_model_learns(baseline, tmp_path, monkeypatch):
    """Per-column vote counts become distributions, as a sample adding to 1 asks; a target no model can learn
    (one positive row in the train set) keeps the sample's values instead of sinking the whole submission."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    x = rng.normal(size=60)
    rare = np.zeros(40)
    rare[7] = 1
    pd.DataFrame({"id": range(40), "x": x[:40], "a": np.where(x[:40] > 0, 3, 0), "b": np.where(x[:40] > 0, 0, 2),
                  "c": rare}).to_csv(data / "train.csv", index=False)
    pd.DataFrame({"id": range(40, 60), "x": x[40:]}).to_csv(data / "test.csv", index=False)
    pd.DataFrame({"id": range(40, 60), "a": 0.25, "b": 0.25, "c": 0.5}).to_csv(data / "sample_submission.csv",
                                                                               index=False)
    for name in ("submission", "logs", "code"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(f"{name.upper()}_DIR", str(tmp_path / name))
    monkeypatch.setenv("DATA_DIR", str(data))
    monkeypatch.setenv("TIME_LIMIT_SECS", "60")
    monkeypatch.setenv("HPC_MLE_VALIDATE_SCRIPT", str(tmp_path / "no-validator.sh"))

    with threadpool_limits(1):
        assert baseline.main() == 0
    report = json.loads((tmp_path / "logs" / "baseline.json").read_text())
    assert report["outcome"] == "submitted the model's predictions", report
    failed = [m for m in report["models"] if str(m.get("status", "")).startswith("failed")]
    assert [m["target"] for m in failed] == ["c"]
    sub = pd.read_csv(tmp_path / "submission" / "submission.csv")
    assert np.allclose(sub[["a", "b", "c"]].sum(axis=1), 1) and (sub[["a", "b", "c"]] >= 0).all().all()
    assert np.corrcoef(sub["a"], x[40:])[0, 1] > 0.5  # still learned from x, after normalising


def test_normalise_rows_keeps_the_sample_where_nothing_is_left(baseline):
    sample = pd.DataFrame({"id": [1, 2], "p": [0.5, 0.2], "q": [0.5, 0.8]})
    assert baseline.sums_to_one(sample) and not baseline.sums_to_one(sample.assign(q=[0.5, 0.5]))
    assert not baseline.sums_to_one(sample[["id", "p"]])
    got = baseline.normalise_rows(pd.DataFrame({"p": [3.0, -1.0], "q": [1.0, 0.0]}), sample[["p", "q"]])
    assert got.tolist() == [[0.75, 0.25], [0.2, 0.8]]


def test_tables_are_found_zipped_tab_separated_or_parquet(baseline, tmp_path):
    """Kaggle ships train.tsv.zip / test.tsv.zip (movie reviews) and train_meta.parquet (icecube)."""
    tsv = tmp_path / "tsv"
    tsv.mkdir()
    pd.DataFrame({"PhraseId": [1, 2], "Phrase": ["a b", "c"], "Sentiment": [0, 4]}).to_csv(
        tsv / "train.tsv.zip", sep="\t", index=False)
    pd.DataFrame({"PhraseId": [3], "Phrase": ["d"]}).to_csv(tsv / "test.tsv.zip", sep="\t", index=False)
    pd.DataFrame({"PhraseId": [3], "Sentiment": [2]}).to_csv(tsv / "sampleSubmission.csv", index=False)
    sample = str(tsv / "sampleSubmission.csv")
    assert baseline.find_train(str(tsv), "PhraseId", ["Sentiment"], sample) == str(tsv / "train.tsv.zip")
    train = baseline.read_table(str(tsv / "train.tsv.zip"), "PhraseId")
    assert train["PhraseId"].tolist() == ["1", "2"] and train["Phrase"].tolist() == ["a b", "c"]
    test = baseline.read_test(str(tsv), "PhraseId", baseline.read_csv(sample, "PhraseId"))
    assert test.columns.tolist() == ["PhraseId", "Phrase"]

    pq = tmp_path / "parquet"
    pq.mkdir()
    pd.DataFrame({"event_id": [1, 2], "f": [0.5, 0.1], "zenith": [1.0, 2.0]}).to_parquet(pq / "train_meta.parquet")
    pd.DataFrame({"event_id": [7], "f": [0.3]}).to_parquet(pq / "test_meta.parquet")
    pd.DataFrame({"event_id": [7], "zenith": [1.5]}).to_csv(pq / "sample_submission.csv", index=False)
    found = baseline.find_train(str(pq), "event_id", ["zenith"], str(pq / "sample_submission.csv"))
    assert found == str(pq / "train_meta.parquet")
    assert baseline.read_table(found, "event_id")["event_id"].tolist() == ["1", "2"]
    assert baseline.test_path(str(pq)) == str(pq / "test_meta.parquet")
