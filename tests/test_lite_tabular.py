"""Eight MLE-bench Lite competitions (tabular and short text) on synthetic Kaggle-shaped downloads.

Each `make_*` writes what extracting the competition's Kaggle zip gives: the same file names, nested
zips and folders, columns and types, with a few hundred made-up rows. `lite_support.run_checks`
prepares it with the real preparer and checks layout, leaks, grading and medals; the extra asserts
pin the v1 grader quirks that matter for each competition.
"""

from __future__ import annotations

import io
import json
import math
import string
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lite_support import Prepared, run_checks

from hpc_mle import grading
from hpc_mle.prepare import common, tabular
from hpc_mle.prepare import text as text_prep

# ---------------------------------------------------------------- helpers for fake downloads


def _zip_csv(frame: pd.DataFrame, archive: Path, member: str) -> None:
    """A Kaggle-style nested zip holding one CSV."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, frame.to_csv(index=False))


def _words(rng: np.random.Generator, n: int) -> str:
    vocab = ["the", "night", "was", "dark", "and", "cold", "you", "idiot", "lovely", "house", "raven",
             "door", "said", "he", "she", "never", "more", "sea", "ancient", "whisper"]
    return " ".join(rng.choice(vocab, size=n))


def _hex_ids(rng: np.random.Generator, n: int) -> list[str]:
    return [f"{v:016x}" for v in rng.choice(2**62, size=n, replace=False)]


def _grade(p: Prepared, frame: pd.DataFrame, tmp: Path, name: str = "sub.csv") -> grading.CompetitionReport:
    path = tmp / name
    frame.to_csv(path, index=False)
    return grading.grade_submission(path, p.spec.id, p.data_dir)


# ---------------------------------------------------------------- detecting-insults


def make_insults(raw: Path, rng: np.random.Generator) -> None:
    def comments(prefix: str, n: int) -> list[str]:
        # Kaggle's comments carry literal quotes and escaped characters inside the text.
        return [f'"{prefix} {i} {_words(rng, 6)}, \\xa0ok"' for i in range(n)]

    def dates(n: int) -> list[str | None]:
        return [None if i % 7 == 0 else f"2012{rng.integers(1, 13):02d}{rng.integers(1, 28):02d}120000Z"
                for i in range(n)]

    train = pd.DataFrame({"Insult": rng.integers(0, 2, 300), "Date": dates(300), "Comment": comments("tr", 300)})
    text = comments("te", 120)
    text[7] = text[3]  # the test set repeats a comment (the id) with the same label
    insult = rng.integers(0, 2, 120)
    insult[7] = insult[3]
    solutions = pd.DataFrame({"Insult": insult, "Date": dates(120), "Comment": text,
                              "Usage": np.where(np.arange(120) % 2, "PrivateTest", "PublicTest")})
    train.to_csv(raw / "train.csv", index=False)
    solutions.to_csv(raw / "test_with_solutions.csv", index=False)
    verification = pd.DataFrame({"id": range(1, 41), "Date": dates(40), "Comment": comments("ver", 40)})
    verification.to_csv(raw / "impermium_verification_set.csv", index=False)
    verification.assign(Insult=0, Usage="")[["id", "Insult", "Date", "Comment", "Usage"]].to_csv(
        raw / "impermium_verification_labels.csv", index=False)
    solutions.drop(columns=["Insult", "Usage"]).rename_axis("id").reset_index().to_csv(raw / "test.csv", index=False)
    solutions[["Insult", "Date", "Comment"]].assign(Insult=0).to_csv(raw / "sample_submission_null.csv", index=False)


def test_detecting_insults(tmp_path):
    p = run_checks("detecting-insults-in-social-commentary", make_insults, tmp_path,
                   public={"train.csv", "test.csv", "sample_submission_null.csv"},
                   private={"test.csv", "gold_submission.csv"}, test_rows=120, sample_score=0.5,
                   perfect_score=1.0)
    raw = tmp_path / "data" / p.spec.id / "raw"
    assert (p.private / "test.csv").read_bytes() == (raw / "test_with_solutions.csv").read_bytes()
    assert (p.public / "train.csv").read_bytes() == (raw / "train.csv").read_bytes()
    assert list(pd.read_csv(p.public / "test.csv").columns) == ["Date", "Comment"]
    # The comment text is the id; a repeated comment in the answers may be repeated in the submission.
    gold = pd.read_csv(p.private / "gold_submission.csv")
    assert gold["Comment"].duplicated().sum() == 1
    shuffled = gold.sample(frac=1.0, random_state=1)
    assert _grade(p, shuffled, tmp_path).score == 1.0
    bad = gold.copy()
    bad.loc[0, "Comment"] = "not a test comment"
    assert "missing from the submission" in _grade(p, bad, tmp_path).reason


# ---------------------------------------------------------------- jigsaw-toxic


def make_jigsaw(raw: Path, rng: np.random.Generator) -> None:
    classes = text_prep.JIGSAW_CLASSES
    n_train, n_test = 300, 150
    ids = _hex_ids(rng, n_train + n_test)
    text = [f'{_words(rng, 8)}, "quoted"\nsecond line {i}' for i in range(n_train + n_test)]
    labels = (rng.random((n_train + n_test, len(classes))) < 0.3).astype(int)
    labels[:2] = [[0] * 6, [1] * 6]  # every class has both values among train and scored test rows
    labels[n_train:n_train + 2] = [[0] * 6, [1] * 6]
    train = pd.DataFrame({"id": ids[:n_train], "comment_text": text[:n_train]})
    train[classes] = labels[:n_train]
    test_ids = ids[n_train:]
    test_labels = pd.DataFrame(labels[n_train:], columns=classes)
    test_labels[rng.random(n_test) < 0.4] = -1  # Kaggle's unscored rows
    test_labels.iloc[:2] = [[0] * 6, [1] * 6]
    test_labels.insert(0, "id", test_ids)
    _zip_csv(train, raw / "train.csv.zip", "train.csv")
    _zip_csv(pd.DataFrame({"id": test_ids, "comment_text": text[n_train:]}), raw / "test.csv.zip", "test.csv")
    _zip_csv(test_labels, raw / "test_labels.csv.zip", "test_labels.csv")
    sample = pd.DataFrame({"id": test_ids, **{c: 0.5 for c in classes}})
    _zip_csv(sample, raw / "sample_submission.csv.zip", "sample_submission.csv")


def test_jigsaw_toxic(tmp_path):
    p = run_checks("jigsaw-toxic-comment-classification-challenge", make_jigsaw, tmp_path,
                   public={"train.csv", "test.csv", "sample_submission.csv"}, private={"test.csv"},
                   test_rows=150, sample_score=0.5, perfect_score=1.0)
    answers = p.answers()
    classes = text_prep.JIGSAW_CLASSES
    unscored = answers[classes].sum(axis=1) < 0
    assert unscored.any(), "the answers keep Kaggle's -1 rows"
    # Rows labelled -1 are not scored: garbage there leaves a perfect score perfect.
    sub = answers.astype({c: float for c in classes})
    sub.loc[unscored, classes] = 0.123
    assert _grade(p, sub, tmp_path).score == 1.0
    # v1 pairs columns by position: swapping two columns in the file changes the score.
    swapped = sub[["id", "severe_toxic", "toxic", *classes[2:]]]
    report = _grade(p, swapped, tmp_path)
    assert report.valid_submission and report.score < 1.0
    extra = sub.assign(note=0.5)
    assert "unexpected column(s) ['note']" in _grade(p, extra, tmp_path).reason


# ---------------------------------------------------------------- spooky-author


def make_spooky(raw: Path, rng: np.random.Generator) -> None:
    n = 300
    ids = [f"id{v:05d}" for v in rng.choice(30000, size=n, replace=False)]
    train = pd.DataFrame({"id": ids, "text": [_words(rng, 12) + "." for _ in range(n)],
                          "author": rng.choice(["EAP", "HPL", "MWS"], size=n, p=[0.4, 0.29, 0.31])})
    test_ids = [f"id{v:05d}" for v in range(30000, 30080)]
    with zipfile.ZipFile(raw / "train.zip", "w") as zf:
        zf.writestr("train.csv", train.to_csv(index=False))
    with zipfile.ZipFile(raw / "test.zip", "w") as zf:
        zf.writestr("test.csv", pd.DataFrame({"id": test_ids, "text": "x"}).to_csv(index=False))
    with zipfile.ZipFile(raw / "sample_submission.zip", "w") as zf:
        sample = pd.DataFrame({"id": test_ids, **text_prep.SPOOKY_SAMPLE})
        zf.writestr("sample_submission.csv", sample.to_csv(index=False))


def test_spooky_author(tmp_path):
    data = tmp_path / "expect"
    data.mkdir()
    make_spooky(data, np.random.default_rng(0))
    with zipfile.ZipFile(data / "train.zip") as zf:
        train = pd.read_csv(io.BytesIO(zf.read("train.csv")))
    _, test = common.split(train)
    expected = -np.mean([math.log(text_prep.SPOOKY_SAMPLE[a]) for a in test["author"]])
    p = run_checks("spooky-author-identification", make_spooky, tmp_path,
                   public={"train.csv", "test.csv", "sample_submission.csv"}, private={"test.csv"},
                   test_rows=30, sample_score=round(expected, 5), perfect_score=0.0)
    answers = p.answers()
    assert list(answers.columns) == ["id", "EAP", "HPL", "MWS"]
    assert (answers[["EAP", "HPL", "MWS"]].sum(axis=1) == 1).all()
    assert answers["id"].tolist() == test["id"].tolist()  # the split's row order, as v1
    # v1 requires the exact shape and rows summing to 1 within 1e-6.
    sub = answers.astype({c: float for c in ["EAP", "HPL", "MWS"]})
    assert "unexpected column(s)" in _grade(p, sub.assign(extra=1), tmp_path).reason
    sub.loc[0, "EAP"] += 1e-3
    assert "sum to 1" in _grade(p, sub, tmp_path).reason


# ---------------------------------------------------------------- random-acts-of-pizza

PIZZA_TEST_FIELDS = [
    "giver_username_if_known", "request_id", "request_text_edit_aware", "request_title",
    "requester_account_age_in_days_at_request", "requester_days_since_first_post_on_raop_at_request",
    "requester_number_of_comments_at_request", "requester_number_of_comments_in_raop_at_request",
    "requester_number_of_posts_at_request", "requester_number_of_posts_on_raop_at_request",
    "requester_number_of_subreddits_at_request", "requester_subreddits_at_request",
    "requester_upvotes_minus_downvotes_at_request", "requester_upvotes_plus_downvotes_at_request",
    "requester_username", "unix_timestamp_of_request", "unix_timestamp_of_request_utc",
]
PIZZA_TRAIN_ONLY = [
    "number_of_downvotes_of_request_at_retrieval", "number_of_upvotes_of_request_at_retrieval",
    "post_was_edited", "request_number_of_comments_at_retrieval", "request_text",
    "requester_account_age_in_days_at_retrieval", "requester_days_since_first_post_on_raop_at_retrieval",
    "requester_number_of_comments_at_retrieval", "requester_number_of_comments_in_raop_at_retrieval",
    "requester_number_of_posts_at_retrieval", "requester_number_of_posts_on_raop_at_retrieval",
    "requester_received_pizza", "requester_upvotes_minus_downvotes_at_retrieval",
    "requester_upvotes_plus_downvotes_at_retrieval", "requester_user_flair",
]


def _pizza_request(rng: np.random.Generator, i: int, fields: list[str]) -> dict:
    received = bool(rng.random() < 0.25)
    values = {
        "giver_username_if_known": f"giver{i}" if received and rng.random() < 0.5 else "N/A",
        "request_id": f"t3_{i:05x}", "request_title": f"[Request] {_words(rng, 5)}",
        "request_text": f"{_words(rng, 20)} caf\u00e9", "request_text_edit_aware": _words(rng, 20),
        "requester_subreddits_at_request": ["AskReddit", "pizza"][: int(rng.integers(0, 3))],
        "requester_username": f"user{i}", "requester_received_pizza": received,
        "requester_user_flair": "shroom" if received else None, "post_was_edited": False,
        "unix_timestamp_of_request": 1.3e9 + float(i), "unix_timestamp_of_request_utc": 1.3e9 + i - 3600.0,
        "requester_account_age_in_days_at_request": float(rng.random() * 900),
    }
    return {f: values.get(f, int(rng.integers(0, 100))) for f in fields}


def make_pizza(raw: Path, rng: np.random.Generator) -> None:
    train_fields = sorted(PIZZA_TEST_FIELDS + PIZZA_TRAIN_ONLY)
    train = [_pizza_request(rng, i, train_fields) for i in range(200)]
    test = [_pizza_request(rng, 1000 + i, PIZZA_TEST_FIELDS) for i in range(80)]
    for name, rows in (("train", train), ("test", test)):
        (raw / f"{name}.json").write_text(json.dumps(rows, indent=4))
        with zipfile.ZipFile(raw / f"{name}.zip", "w") as zf:
            zf.write(raw / f"{name}.json", f"{name}.json")
    pd.DataFrame({"request_id": [r["request_id"] for r in test], "requester_received_pizza": 0}).to_csv(
        raw / "sampleSubmission.csv", index=False)


def test_random_acts_of_pizza(tmp_path):
    n_test = math.ceil(200 * 80 / 280)  # Kaggle's test share of all requests, applied to train
    p = run_checks("random-acts-of-pizza", make_pizza, tmp_path,
                   public={"train.json", "test.json", "train.zip", "test.zip", "sampleSubmission.csv"},
                   private={"test.csv"}, test_rows=n_test, sample_score=0.5, perfect_score=1.0)
    test = json.loads((p.public / "test.json").read_text())
    train = json.loads((p.public / "train.json").read_text())
    assert len(test) == n_test and len(train) == 200 - n_test
    assert all(list(row) == PIZZA_TEST_FIELDS for row in test)  # Kaggle's test fields only, in its order
    assert "giver_username_if_known" in test[0]  # the known leak (upstream #108), kept as in v1
    assert {r["request_id"] for r in test} == set(p.answers()["request_id"])
    assert not {r["request_id"] for r in test} & {r["request_id"] for r in train}
    with zipfile.ZipFile(p.public / "test.zip") as zf:
        assert zf.read("test.json") == (p.public / "test.json").read_bytes()
    assert (p.public / "test.json").read_text().startswith("[\n    {\n")  # json.dump(indent=4), as v1


# ---------------------------------------------------------------- new-york-city-taxi-fare


def _taxi_rides(rng: np.random.Generator, n: int, start: int) -> pd.DataFrame:
    minutes = rng.integers(0, 10**6, n)
    stamps = pd.Timestamp("2012-01-01") + pd.to_timedelta(np.sort(minutes), unit="min")
    return pd.DataFrame({
        "key": [f"{t:%Y-%m-%d %H:%M:%S}.{start + i:07d}" for i, t in enumerate(stamps)],
        "pickup_datetime": [f"{t:%Y-%m-%d %H:%M:%S} UTC" for t in stamps],
        "pickup_longitude": -73.98 + rng.normal(0, 0.02, n), "pickup_latitude": 40.75 + rng.normal(0, 0.02, n),
        "dropoff_longitude": -73.97 + rng.normal(0, 0.02, n), "dropoff_latitude": 40.76 + rng.normal(0, 0.02, n),
        "passenger_count": rng.integers(1, 7, n),
    })


def make_taxi(raw: Path, rng: np.random.Generator) -> None:
    train = _taxi_rides(rng, 300, 1)
    train.insert(1, "fare_amount", np.round(rng.gamma(2.0, 5.5, 300) + 2.5, 2))
    train.to_csv(raw / "train.csv", index=False)
    test = _taxi_rides(rng, 60, 1000)
    test.to_csv(raw / "test.csv", index=False)
    test[["key"]].assign(fare_amount=11.35).to_csv(raw / "sample_submission.csv", index=False)
    (raw / "GCP-Coupons-Instructions.rtf").write_text("{\\rtf1\\ansi Coupons for Google Cloud.}\n")


def test_nyc_taxi_fare(tmp_path, monkeypatch):
    monkeypatch.setattr(tabular, "NYC_TEST_ROWS", 37)
    expect = tmp_path / "expect"
    expect.mkdir()
    make_taxi(expect, np.random.default_rng(0))
    _, test = common.split(pd.read_csv(expect / "train.csv"), test_size=37)
    sample_score = round(float(np.sqrt(np.mean((test["fare_amount"] - 11.35) ** 2))), 5)
    p = run_checks("new-york-city-taxi-fare-prediction", make_taxi, tmp_path,
                   public={"labels.csv", "test.csv", "sample_submission.csv", "GCP-Coupons-Instructions.rtf"},
                   private={"test.csv"}, test_rows=37, sample_score=sample_score, perfect_score=0.0)
    assert len(pd.read_csv(p.public / "labels.csv")) == 300 - 37
    assert list(p.answers().columns)[:2] == ["key", "fare_amount"] and p.answers().shape[1] == 8
    gold = p.answers()[["key", "fare_amount"]]
    assert _grade(p, gold.iloc[::-1], tmp_path).score == 0.0  # rows are sorted by key first
    # v1 never compares keys: the same number of rows with other keys is scored, not refused.
    other = gold.assign(key=[f"k{i:03d}" for i in range(len(gold))])
    report = _grade(p, other, tmp_path)
    assert report.valid_submission and report.score > 0


# ---------------------------------------------------------------- nomad2018


NOMAD_COLUMNS = ["id", "spacegroup", "number_of_total_atoms", "percent_atom_al", "percent_atom_ga",
                 "percent_atom_in", "lattice_vector_1_ang", "lattice_vector_2_ang", "lattice_vector_3_ang",
                 "lattice_angle_alpha_degree", "lattice_angle_beta_degree", "lattice_angle_gamma_degree"]


def _nomad_rows(rng: np.random.Generator, n: int) -> pd.DataFrame:
    al = np.round(rng.random(n) * 0.5, 4)
    ga = np.round(rng.random(n) * 0.5, 4)
    return pd.DataFrame({
        "id": np.arange(1, n + 1), "spacegroup": rng.choice([12, 33, 167, 194, 206, 227], n),
        "number_of_total_atoms": rng.choice([10.0, 20.0, 30.0, 40.0, 60.0, 80.0], n),
        "percent_atom_al": al, "percent_atom_ga": ga, "percent_atom_in": np.round(1 - al - ga, 4),
        # unique per row, so a geometry file can be traced back to its row
        "lattice_vector_1_ang": 3.0 + np.arange(n) / 1000 + rng.random(n) / 10**6,
        "lattice_vector_2_ang": 5.0 + rng.random(n), "lattice_vector_3_ang": 9.0 + rng.random(n) * 5,
        "lattice_angle_alpha_degree": 90.0 + rng.normal(0, 0.01, n),
        "lattice_angle_beta_degree": 90.0 + rng.normal(0, 0.01, n),
        "lattice_angle_gamma_degree": rng.choice([90.0, 120.0], n),
    })


def _xyz(row: pd.Series) -> str:
    return (f"#=======================================================\n# Created using the Atomic "
            f"Simulation Environment (ASE)\n# lattice {row['lattice_vector_1_ang']!r}\n"
            f"lattice_vector 9.0 0.0 0.0 \natom 1.0 2.0 3.0 Ga\natom 0.5 0.5 0.5 O\n")


def make_nomad(raw: Path, rng: np.random.Generator) -> None:
    train = _nomad_rows(rng, 200)
    train["formation_energy_ev_natom"] = np.round(rng.random(200) * 0.5, 4)
    train["bandgap_energy_ev"] = np.round(rng.random(200) * 5, 4)
    test = _nomad_rows(rng, 50)
    _zip_csv(train, raw / "train.csv.zip", "train.csv")
    _zip_csv(test, raw / "test.csv.zip", "test.csv")
    _zip_csv(pd.DataFrame({"id": test["id"], **tabular.NOMAD_SAMPLE}), raw / "sample_submission.csv.zip",
             "sample_submission.csv")
    for name, frame in (("train", train), ("test", test)):
        with zipfile.ZipFile(raw / f"{name}.zip", "w") as zf:
            for _, row in frame.iterrows():
                zf.writestr(f"{name}/{int(row['id'])}/geometry.xyz", _xyz(row))
            zf.writestr(f"__MACOSX/{name}/1/._geometry.xyz", b"\x00\x05\x16\x07")  # must be skipped


def _rmsle(t: pd.Series, p: float) -> float:
    return float(np.sqrt(np.mean((np.log1p(t) - np.log1p(p)) ** 2)))


def test_nomad2018(tmp_path):
    expect = tmp_path / "expect"
    expect.mkdir()
    make_nomad(expect, np.random.default_rng(0))
    with zipfile.ZipFile(expect / "train.csv.zip") as zf:
        _, test = common.split(pd.read_csv(io.BytesIO(zf.read("train.csv"))))
    sample = tabular.NOMAD_SAMPLE
    sample_score = round((_rmsle(test["formation_energy_ev_natom"], sample["formation_energy_ev_natom"])
                          + _rmsle(test["bandgap_energy_ev"], sample["bandgap_energy_ev"])) / 2, 5)
    p = run_checks("nomad2018-predict-transparent-conductors", make_nomad, tmp_path,
                   public={"train.csv", "test.csv", "sample_submission.csv", "train", "test"},
                   private={"test.csv"}, test_rows=20, sample_score=sample_score, perfect_score=0.0)
    answers, train = p.answers(), pd.read_csv(p.public / "train.csv")
    assert answers["id"].tolist() == list(range(1, 21)) and train["id"].tolist() == list(range(1, 181))
    assert answers["lattice_vector_1_ang"].tolist() == test["lattice_vector_1_ang"].tolist()
    # Each renumbered row got the geometry file of its original row.
    for part, frame in (("train", train), ("test", answers)):
        assert len(list((p.public / part).glob("*/geometry.xyz"))) == len(frame)
        for _, row in frame.sample(5, random_state=0).iterrows():
            text = (p.public / part / str(int(row["id"])) / "geometry.xyz").read_text()
            assert f"# lattice {row['lattice_vector_1_ang']!r}\n" in text
    # v1 pairs rows by position and never reads ids: order matters, the id column does not.
    gold = answers[["id", *tabular.NOMAD_TARGETS]]
    assert _grade(p, gold.iloc[::-1], tmp_path).score > 0
    assert _grade(p, gold.drop(columns=["id"]), tmp_path).score == 0.0


# ---------------------------------------------------------------- tabular-playground-series-dec-2021


TPS_DEC_FEATURES = ["Elevation", "Aspect", "Slope", "Horizontal_Distance_To_Hydrology",
                    "Vertical_Distance_To_Hydrology", "Horizontal_Distance_To_Roadways", "Hillshade_9am",
                    "Hillshade_Noon", "Hillshade_3pm", "Horizontal_Distance_To_Fire_Points",
                    *(f"Wilderness_Area{i}" for i in range(1, 5)), *(f"Soil_Type{i}" for i in range(1, 41))]


def _forest(rng: np.random.Generator, ids: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({"Id": ids})
    for col in TPS_DEC_FEATURES:
        high = 2 if col.startswith(("Wilderness", "Soil")) else 4000
        frame[col] = rng.integers(0, high, len(ids))
    return frame


def make_tps_dec(raw: Path, rng: np.random.Generator) -> None:
    train = _forest(rng, np.arange(300))
    train["Cover_Type"] = rng.choice([1, 2, 3, 4, 6, 7], 300, p=[0.37, 0.5, 0.08, 0.01, 0.01, 0.03])
    train.to_csv(raw / "train.csv", index=False)
    test = _forest(rng, np.arange(4_000_000, 4_000_100))
    test.to_csv(raw / "test.csv", index=False)
    pd.DataFrame({"Id": test["Id"], "Cover_Type": 2}).to_csv(raw / "sample_submission.csv", index=False)


def test_tps_dec_2021(tmp_path):
    expect = tmp_path / "expect"
    expect.mkdir()
    make_tps_dec(expect, np.random.default_rng(0))
    _, test = common.split(pd.read_csv(expect / "train.csv"))
    p = run_checks("tabular-playground-series-dec-2021", make_tps_dec, tmp_path,
                   public={"train.csv", "test.csv", "sample_submission.csv"}, private={"test.csv"},
                   test_rows=30, sample_score=round(float((test["Cover_Type"] == 2).mean()), 5),
                   perfect_score=1.0)
    assert list(p.answers().columns) == ["Id", *TPS_DEC_FEATURES, "Cover_Type"]
    assert list(pd.read_csv(p.public / "test.csv").columns) == ["Id", *TPS_DEC_FEATURES]
    labels_as_text = p.answers()[["Id", "Cover_Type"]].astype({"Cover_Type": str}).assign(
        Cover_Type=lambda f: "type" + f["Cover_Type"])
    as_text = _grade(p, labels_as_text, tmp_path)  # v1: text never equals a number; valid, score 0
    assert as_text.valid_submission and as_text.score == 0.0


# ---------------------------------------------------------------- tabular-playground-series-may-2022


def _tps_may_rows(rng: np.random.Generator, ids: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({"id": ids})
    for i in range(31):
        col = f"f_{i:02d}"
        if i == 27:
            frame[col] = ["".join(rng.choice(list(string.ascii_uppercase[:20]), 10)) for _ in ids]
        elif 7 <= i <= 18 or i == 29 or i == 30:
            frame[col] = rng.integers(0, 15 if i < 29 else 3, len(ids))
        else:
            frame[col] = rng.normal(0, 1.5, len(ids))
    return frame


def make_tps_may(raw: Path, rng: np.random.Generator) -> None:
    train = _tps_may_rows(rng, np.arange(400))
    train["target"] = rng.integers(0, 2, 400)
    train.to_csv(raw / "train.csv", index=False)
    test = _tps_may_rows(rng, np.arange(900_000, 900_120))
    test.to_csv(raw / "test.csv", index=False)
    pd.DataFrame({"id": test["id"], "target": 0.5}).to_csv(raw / "sample_submission.csv", index=False)


def test_tps_may_2022(tmp_path, monkeypatch):
    monkeypatch.setattr(tabular, "TPS_MAY_TEST_ROWS", 50)
    p = run_checks("tabular-playground-series-may-2022", make_tps_may, tmp_path,
                   public={"train.csv", "test.csv", "sample_submission.csv"},
                   private={"test.csv", "gold_submission.csv"}, test_rows=50, sample_score=0.5, perfect_score=1.0)
    train, answers = pd.read_csv(p.public / "train.csv"), p.answers()
    # Ids are renumbered: train 0..349 in split order, then test 350..399.
    assert train["id"].tolist() == list(range(350)) and answers["id"].tolist() == list(range(350, 400))
    assert list(answers.columns) == list(train.columns) and answers.columns[-1] == "target"
    gold = pd.read_csv(p.private / "gold_submission.csv")
    assert gold.equals(answers[["id", "target"]])


# ---------------------------------------------------------------- the row orders these graders need


@pytest.mark.parametrize(("row_order", "content", "score"), [
    # sorted: rows paired after sorting both by id; ids are never compared (nyc-taxi)
    ("sorted", "id,target\n9,0.1\n8,0.2\n7,0.8\n6,0.9\n", 1.0),
    ("sorted", "id,target\n1,0.9\n1,0.8\n,0.2\n3,0.1\n", 1.0),
    # positional: file order; no id column needed (nomad2018)
    ("positional", "target\n0.9\n0.8\n0.2\n0.1\n", 1.0),
    # id-columns-by-position: as id, but with one scored column the name still must match
    ("id-columns-by-position", "id,target\n4,0.1\n3,0.2\n2,0.8\n1,0.9\n", 1.0),
])
def test_row_orders_of_v1_quirks(synthetic, row_order, content, score):
    answers = pd.DataFrame({"id": [1, 2, 3, 4], "target": [1, 1, 0, 0]})
    synthetic.add("q", answers, submission={"id_columns": ["id"], "answer_columns": ["target"],
                                            "row_order": row_order})
    report = grading.grade_submission(synthetic.submission("s.csv", content), "q", synthetic.data)
    assert report.valid_submission and report.score == score, report.reason


def test_repeated_ids_are_accepted_only_where_the_answers_repeat_them(synthetic):
    answers = pd.DataFrame({"id": ["a", "b", "b", "c"], "target": [1, 0, 0, 1]})
    synthetic.add("rep", answers)
    ok = grading.grade_submission(synthetic.submission("ok.csv", "id,target\nb,0.1\na,0.9\nc,0.8\nb,0.2\n"),
                                  "rep", synthetic.data)
    assert ok.valid_submission and ok.score == 1.0
    wrong = grading.grade_submission(synthetic.submission("w.csv", "id,target\na,0.1\na,0.9\nc,0.8\nb,0.2\n"),
                                     "rep", synthetic.data)
    assert not wrong.valid_submission and "repeated a different number of times" in wrong.reason


# The synthetic downloads of this module, for tests/synthetic_downloads.py, and the preparer constants
# (on the preparer's module) that must shrink to fit them, as the tests above shrink them.
MAKERS = {
    "detecting-insults-in-social-commentary": make_insults,
    "jigsaw-toxic-comment-classification-challenge": make_jigsaw,
    "spooky-author-identification": make_spooky,
    "random-acts-of-pizza": make_pizza,
    "new-york-city-taxi-fare-prediction": make_taxi,
    "nomad2018-predict-transparent-conductors": make_nomad,
    "tabular-playground-series-dec-2021": make_tps_dec,
    "tabular-playground-series-may-2022": make_tps_may,
}
PREPARER_CONSTANTS = {
    "new-york-city-taxi-fare-prediction": {"NYC_TEST_ROWS": 37},
    "tabular-playground-series-may-2022": {"TPS_MAY_TEST_ROWS": 50},
}
