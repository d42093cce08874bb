"""Full-benchmark signal competitions (time series, sensors, physics) on synthetic Kaggle-shaped downloads.

Each `make_*` writes what extracting the competition's Kaggle zip gives (file names, folders, columns,
types) with a few dozen made-up rows; `lite_support.run_checks` prepares it with the real preparer and
checks layout, leaks, grading and medals. The extra asserts pin v1's split and grader quirks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lite_support import Prepared, run_checks
from sklearn.metrics import matthews_corrcoef
from sklearn.model_selection import train_test_split
from test_fuzz_grading import mutations_for

from hpc_mle import grading
from hpc_mle.metrics import METRICS, InvalidSubmission


def _grade(p: Prepared, frame: pd.DataFrame, tmp: Path, mode: str = "v1") -> grading.CompetitionReport:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "sub.csv"
    frame.to_csv(path, index=False)
    return grading.grade_submission(path, p.spec.id, p.data_dir, mode)


# ---------------------------------------------------------------- predict-volcanic-eruptions-ingv-oe

VOLCANO = "predict-volcanic-eruptions-ingv-oe"


def _segment(rng: np.random.Generator, rows: int = 12) -> pd.DataFrame:
    data = {f"sensor_{k}": rng.integers(-600, 600, rows).astype(float) for k in range(1, 11)}
    frame = pd.DataFrame(data)
    frame.loc[rng.integers(0, rows, 3), "sensor_2"] = np.nan  # a sensor that drops out
    frame["sensor_8"] = np.nan  # a sensor silent for the whole segment
    return frame


def make_volcano(raw: Path, rng: np.random.Generator) -> None:
    ids = rng.choice(2**31 - 1, size=46, replace=False)
    train_ids, test_ids = ids[:40], ids[40:]
    pd.DataFrame({"segment_id": train_ids, "time_to_eruption": rng.integers(6000, 49_000_000, 40)}).to_csv(
        raw / "train.csv", index=False)
    pd.DataFrame({"segment_id": test_ids, "time_to_eruption": 0}).to_csv(raw / "sample_submission.csv", index=False)
    for folder, segment_ids in (("train", train_ids), ("test", test_ids)):
        (raw / folder).mkdir()
        for sid in segment_ids:
            _segment(rng).to_csv(raw / folder / f"{sid}.csv", index=False)


def test_volcano(tmp_path):
    raw_train = pd.DataFrame()

    def make(raw: Path, rng: np.random.Generator) -> None:
        nonlocal raw_train
        make_volcano(raw, rng)
        raw_train = pd.read_csv(raw / "train.csv")

    # Precompute the expected sample score from the same synthetic draw.
    probe = tmp_path / "probe"
    probe.mkdir()
    make_volcano(probe, np.random.default_rng(0))
    _, expected_test = train_test_split(pd.read_csv(probe / "train.csv"), test_size=0.1, random_state=0)
    sample_score = int(round(float(np.mean(np.abs(expected_test["time_to_eruption"].to_numpy(float))))))

    p = run_checks(VOLCANO, make, tmp_path, public={"train.csv", "train", "test", "sample_submission.csv"},
                   private={"test.csv"}, test_rows=4, sample_score=sample_score, perfect_score=0)

    # v1's split: train_test_split(test_size=0.1, random_state=0), rows in the splitter's order.
    want_train, want_test = train_test_split(raw_train, test_size=0.1, random_state=0)
    pd.testing.assert_frame_equal(p.answers(), want_test.reset_index(drop=True))
    pd.testing.assert_frame_equal(pd.read_csv(p.public / "train.csv"), want_train.reset_index(drop=True))
    sample = pd.read_csv(p.sample_path())
    assert list(sample["segment_id"]) == list(want_test["segment_id"]) and (sample["time_to_eruption"] == 0).all()
    assert (p.public / "sample_submission.csv").read_text().splitlines()[1].endswith(",0")
    # Both folders come from Kaggle's train segments; Kaggle's own test segments are dropped.
    raw = p.data_dir / VOLCANO / "raw"
    assert sorted(x.name for x in (p.public / "test").iterdir()) == sorted(f"{s}.csv" for s in want_test["segment_id"])
    assert sorted(x.name for x in (p.public / "train").iterdir()) == sorted(f"{s}.csv" for s in want_train["segment_id"])
    sid = want_test["segment_id"].iloc[0]
    assert (p.public / "test" / f"{sid}.csv").read_bytes() == (raw / "train" / f"{sid}.csv").read_bytes()

    answers, subs = p.answers(), tmp_path / "subs2"
    gold = answers.copy()
    # v1: a repeated id passes and adds a row to the mean; the corrected grade refuses it.
    dup = pd.concat([gold.assign(time_to_eruption=gold["time_to_eruption"] + 10), gold.iloc[[0]]]).reset_index(drop=True)
    dup.loc[dup.index[-1], "time_to_eruption"] += 1000  # the repeat is off by 1000
    report = _grade(p, dup, subs)
    assert report.valid_submission and report.score == int(round((10 * 4 + 1000) / 5)), report
    assert report.corrected_valid is False and report.corrected_reason
    assert isinstance(report.score, int)
    # Row order is free; extra columns are ignored.
    shuffled = gold.iloc[::-1].assign(note="x")
    assert _grade(p, shuffled, subs).score == 0
    # Missing or foreign ids: invalid, and the reason (what the validator shows) names no id.
    for bad in (gold.iloc[1:], pd.concat([gold, gold.iloc[[0]].assign(segment_id=1)]),
                gold.assign(segment_id=gold["segment_id"].astype(str) + "x")):
        report = _grade(p, bad, subs)
        assert not report.valid_submission and not report.grader_error, report.reason
        assert not any(str(s) in report.reason for s in answers["segment_id"]), report.reason
        ok, message = grading.validate_submission(subs / "sub.csv", VOLCANO, p.data_dir)
        assert not ok and not any(str(s) in message for s in answers["segment_id"]), message
    for value in (np.nan, "soon", np.inf, 1e308):
        bad = gold.astype({"time_to_eruption": object})
        bad.loc[bad.index[0], "time_to_eruption"] = value
        bad.loc[bad.index[1], "time_to_eruption"] = -1e308 if value == 1e308 else 0
        report = _grade(p, bad, subs)
        assert not report.valid_submission and not report.grader_error and report.reason, (value, report)

    fuzz(p, tmp_path / "fuzz", valid_ok={"duplicate_id"})


def fuzz(p: Prepared, tmp: Path, valid_ok: set[str] = frozenset()) -> None:
    """The grading fuzz's mutations: never a grader error; invalid ones say why; valid only where v1 is lax."""
    tmp.mkdir()
    sample = pd.read_csv(p.sample_path())
    cols = grading.scored_columns(p.spec, p.answers())
    failures = []
    for i, (kind, content) in enumerate(mutations_for(p.spec, sample, cols)):
        if i >= 60:
            break
        path = tmp / f"{i}.csv"
        path.write_bytes(content)
        report = grading.grade_submission(path, p.spec.id, p.data_dir)
        if report.grader_error or (report.valid_submission and kind not in valid_ok) \
                or (not report.valid_submission and not report.reason):
            failures.append((kind, report.reason))
    assert not failures, failures[:5]


def test_rounded_mae_by_hand():
    fn = METRICS["rounded-mean-absolute-error"]
    t = pd.DataFrame({"y": [10.0, 20.0, 30.0, 40.0]})
    # |12-10| + |20-20| + |25-30| + |41-40| = 8, / 4 = 2
    assert fn(t, pd.DataFrame({"y": [12, 20, 25, 41]})) == 2
    # 2.5 rounds half to even -> 2; 3.5 -> 4 (Python's round, as v1)
    assert fn(t.iloc[:2], pd.DataFrame({"y": [10.0, 25.0]})) == 2
    assert fn(t.iloc[:2], pd.DataFrame({"y": [10.0, 27.0]})) == 4
    with pytest.raises(InvalidSubmission):
        fn(t.iloc[:1], pd.DataFrame({"y": ["x"]}))


# ---------------------------------------------------------------- nfl-player-contact-detection

NFL = "nfl-player-contact-detection"


def _mp4(tag: str) -> bytes:
    """A minimal ISO base-media file: an `ftyp` box and a `free` box naming the clip (no frames)."""
    ftyp = b"ftypisom" + (512).to_bytes(4, "big") + b"isomiso2mp41"
    free = b"free" + tag.encode()
    return (len(ftyp) + 4).to_bytes(4, "big") + ftyp + (len(free) + 4).to_bytes(4, "big") + free


def make_nfl(raw: Path, rng: np.random.Generator) -> None:
    plays = [f"{58100 + g}_{rng.integers(100, 4000):06d}" for g in range(20)]
    labels, tracking, helmets, meta = [], [], [], []
    for gp in plays:
        game, play = gp.split("_")
        players = rng.choice(np.arange(30000, 50000), size=3, replace=False)
        start = pd.Timestamp("2020-09-11T03:01:48.100Z")
        for step in range(2):
            when = (start + pd.Timedelta(milliseconds=100 * step)).isoformat().replace("+00:00", "Z")
            pairs = [(players[0], players[1]), (players[0], players[2]), (players[1], "G")]
            for a, b in pairs:
                labels.append({"contact_id": f"{gp}_{step}_{a}_{b}", "game_play": gp, "datetime": when,
                               "step": step, "nfl_player_id_1": a, "nfl_player_id_2": b,
                               "contact": int(rng.random() < 0.3)})
            for pid in players:
                tracking.append({"game_play": gp, "game_key": int(game), "play_id": int(play), "nfl_player_id": pid,
                                 "step": step, "team": "home", "position": "TE", "jersey_number": 80,
                                 "datetime": when, "x_position": round(rng.uniform(0, 120), 2),
                                 "y_position": round(rng.uniform(0, 53), 2), "speed": round(rng.uniform(0, 9), 2),
                                 "distance": round(rng.uniform(0, 1), 2), "direction": round(rng.uniform(0, 360), 2),
                                 "orientation": round(rng.uniform(0, 360), 2),
                                 "acceleration": round(rng.uniform(0, 5), 2), "sa": round(rng.uniform(-5, 5), 2)})
        for view in ("Endzone", "Sideline"):
            helmets.append({"game_play": gp, "game_key": int(game), "play_id": int(play), "view": view,
                            "video": f"{gp}_{view}.mp4", "frame": 1, "nfl_player_id": players[0],
                            "player_label": f"H{players[0] % 100}", "left": 100, "width": 20, "top": 50, "height": 22})
        for view in ("All29", "Endzone", "Sideline"):
            meta.append({"game_play": gp, "game_key": int(game), "play_id": int(play), "view": view,
                         "start_time": "2020-09-11T03:01:43.134Z", "end_time": "2020-09-11T03:01:54.971Z",
                         "snap_time": "2020-09-11T03:01:48.134Z"})
    (raw / "train").mkdir()
    (raw / "test").mkdir()
    for gp in plays:
        for view in ("All29", "Endzone", "Sideline"):
            (raw / "train" / f"{gp}_{view}.mp4").write_bytes(_mp4(f"{gp}_{view}"))
    (raw / "test" / f"58200_000001_{'All29'}.mp4").write_bytes(_mp4("test"))
    pd.DataFrame(labels).to_csv(raw / "train_labels.csv", index=False)
    pd.DataFrame(tracking).to_csv(raw / "train_player_tracking.csv", index=False)
    pd.DataFrame(helmets).to_csv(raw / "train_baseline_helmets.csv", index=False)
    pd.DataFrame(meta).to_csv(raw / "train_video_metadata.csv", index=False)
    for name in ("player_tracking", "baseline_helmets", "video_metadata"):  # Kaggle's own test tables: unused
        pd.DataFrame(tracking[:1]).to_csv(raw / f"test_{name}.csv", index=False)
    pd.DataFrame({"contact_id": ["58200_000001_0_1_2"], "contact": [0]}).to_csv(raw / "sample_submission.csv",
                                                                                 index=False)


def test_nfl(tmp_path):
    public = {"train_labels.csv", "train_baseline_helmets.csv", "test_baseline_helmets.csv",
              "train_player_tracking.csv", "test_player_tracking.csv", "train_video_metadata.csv",
              "test_video_metadata.csv", "train", "test", "sample_submission.csv"}
    p = run_checks(NFL, make_nfl, tmp_path, public=public, private={"test.csv"}, test_rows=12,
                   sample_score=0.0, perfect_score=1.0)
    raw = p.data_dir / NFL / "raw"
    labels = pd.read_csv(raw / "train_labels.csv")
    train_plays, test_plays = train_test_split(np.asarray(labels["game_play"].unique(), dtype=object), test_size=0.1, random_state=0)
    want = labels[labels["game_play"].isin(test_plays)].reset_index(drop=True)
    pd.testing.assert_frame_equal(p.answers(), want)
    assert list(pd.read_csv(p.public / "train_labels.csv")["game_play"].unique()) == \
        [g for g in labels["game_play"].unique() if g in set(train_plays)]
    for name in ("player_tracking", "baseline_helmets", "video_metadata"):
        assert set(pd.read_csv(p.public / f"test_{name}.csv")["game_play"]) == set(test_plays)
        assert set(pd.read_csv(p.public / f"train_{name}.csv")["game_play"]) == set(train_plays)
    assert (p.public / "train_player_tracking.csv").read_text().splitlines()[0] == \
        (raw / "train_player_tracking.csv").read_text().splitlines()[0]
    assert sorted(x.name for x in (p.public / "test").iterdir()) == \
        sorted(f"{g}_{v}.mp4" for g in test_plays for v in ("All29", "Endzone", "Sideline"))
    assert len(list((p.public / "train").iterdir())) == 3 * len(train_plays)
    sample = pd.read_csv(p.sample_path())
    assert list(sample.columns) == ["contact_id", "contact"] and list(sample["contact_id"]) == list(want["contact_id"])

    gold, subs = p.gold(), tmp_path / "subs2"
    # Matched by id: any row order; v1's MCC takes any whole-number labels (multi-class form).
    assert _grade(p, gold.iloc[::-1], subs).score == 1.0
    three = gold.assign(contact=np.where(gold["contact"] == 1, 2, 0))
    assert _grade(p, three, subs).score == round(matthews_corrcoef(p.answers()["contact"], three["contact"]), 5)
    for bad in (gold.assign(contact=0.5), gold.assign(contact="yes"), gold.iloc[1:],
                pd.concat([gold.iloc[1:], gold.iloc[[1]]]), gold.assign(contact=np.nan)):
        report = _grade(p, bad, subs)
        assert not report.valid_submission and report.reason and not report.grader_error, report.reason
    fuzz(p, tmp_path / "fuzz")


def test_mcc_by_hand():
    fn = METRICS["matthews-correlation"]
    t = pd.DataFrame({"c": [1, 1, 0, 0]})
    # TP 1, FN 1, TN 2, FP 0: (1*2 - 0*1) / sqrt(1 * 2 * 2 * 3) = 2 / sqrt(12)
    assert fn(t, pd.DataFrame({"c": [1, 0, 0, 0]})) == pytest.approx(2 / 12**0.5)
    assert fn(t, pd.DataFrame({"c": [0, 0, 0, 0]})) == 0.0  # one predicted class: zero denominator
    assert fn(t, pd.DataFrame({"c": [0, 0, 1, 1]})) == pytest.approx(-1.0)
    with pytest.raises(InvalidSubmission):
        fn(t, pd.DataFrame({"c": [0.5, 0, 1, 1]}))


# ---------------------------------------------------------------- hms-harmful-brain-activity-classification

HMS = "hms-harmful-brain-activity-classification"
HMS_VOTES = ["seizure_vote", "lpd_vote", "gpd_vote", "lrda_vote", "grda_vote", "other_vote"]


def _parquet(frame: pd.DataFrame, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)


def make_hms(raw: Path, rng: np.random.Generator) -> None:
    rows, label_id = [], 0
    for _ in range(20):
        spec_id, patient = int(rng.integers(10**6, 2**31)), int(rng.integers(1000, 60000))
        for _ in range(int(rng.integers(1, 3))):
            eeg_id = int(rng.integers(10**6, 2**32))
            for sub in range(int(rng.integers(1, 4))):
                votes = rng.integers(0, 4, 6)
                votes[rng.integers(6)] += 1  # at least one vote
                rows.append({"eeg_id": eeg_id, "eeg_sub_id": sub, "eeg_label_offset_seconds": 2.0 * sub,
                             "spectrogram_id": spec_id, "spectrogram_sub_id": sub,
                             "spectrogram_label_offset_seconds": 2.0 * sub + 0.5, "label_id": label_id,
                             "patient_id": patient,
                             "expert_consensus": ["Seizure", "LPD", "GPD", "LRDA", "GRDA", "Other"][int(np.argmax(votes))],
                             **dict(zip(HMS_VOTES, votes.tolist(), strict=True))})
                label_id += 1
    train = pd.DataFrame(rows)
    train.to_csv(raw / "train.csv", index=False)
    for folder in ("train_eegs", "train_spectrograms", "test_eegs", "test_spectrograms", "example_figures"):
        (raw / folder).mkdir()
    for eeg_id in train["eeg_id"].unique():
        _parquet(pd.DataFrame({ch: rng.normal(size=8).astype(np.float32) for ch in ("Fp1", "F3", "C3", "EKG")}),
                 raw / "train_eegs" / f"{eeg_id}.parquet")
    for spec_id in train["spectrogram_id"].unique():
        _parquet(pd.DataFrame({"time": [1, 3], "LL_0.59": [1.5, 2.5], "RP_19.92": [0.1, 0.2]}),
                 raw / "train_spectrograms" / f"{spec_id}.parquet")
    _parquet(pd.DataFrame({"Fp1": [0.0]}), raw / "test_eegs" / "3911565283.parquet")
    _parquet(pd.DataFrame({"time": [1]}), raw / "test_spectrograms" / "853520.parquet")
    (raw / "example_figures" / "Seizure.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    pd.DataFrame({"spectrogram_id": [853520], "eeg_id": [3911565283], "patient_id": [6885]}).to_csv(
        raw / "test.csv", index=False)
    pd.DataFrame({"eeg_id": [3911565283], **{c: [1 / 6] for c in HMS_VOTES}}).to_csv(
        raw / "sample_submission.csv", index=False)


def test_hms(tmp_path):
    import pyarrow.parquet as pq

    raw_train = pd.DataFrame()

    def make(raw: Path, rng: np.random.Generator) -> None:
        nonlocal raw_train
        make_hms(raw, rng)
        raw_train = pd.read_csv(raw / "train.csv")

    probe = tmp_path / "probe"
    probe.mkdir()
    make_hms(probe, np.random.default_rng(0))
    table = pd.read_csv(probe / "train.csv")
    _, test_specs = train_test_split(table["spectrogram_id"].unique(), test_size=0.1, random_state=0)
    test = table[table["spectrogram_id"].isin(test_specs)]
    y = test[HMS_VOTES].to_numpy(float)
    y = y / y.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        sample_score = round(float(np.mean(np.where(y > 0, y * np.log(y * 6), 0).sum(axis=1))), 5)

    p = run_checks(HMS, make, tmp_path,
                   public={"train.csv", "test.csv", "example_figures", "train_eegs", "train_spectrograms",
                           "test_eegs", "test_spectrograms", "sample_submission.csv"},
                   private={"test.csv", "gold_submission.csv"}, test_rows=len(test), sample_score=sample_score,
                   perfect_score=0.0)
    train_specs, test_specs = train_test_split(raw_train["spectrogram_id"].unique(), test_size=0.1, random_state=0)
    want = raw_train[raw_train["spectrogram_id"].isin(test_specs)].reset_index(drop=True)
    pd.testing.assert_frame_equal(p.answers(), want)
    public_test = pd.read_csv(p.public / "test.csv")
    assert list(public_test.columns) == ["spectrogram_id", "eeg_id", "patient_id"] and len(public_test) == len(want)
    assert sorted(x.name for x in (p.public / "test_eegs").iterdir()) == sorted(f"{i}.parquet" for i in want["eeg_id"].unique())
    assert sorted(x.name for x in (p.public / "test_spectrograms").iterdir()) == \
        sorted(f"{i}.parquet" for i in test_specs)
    assert len(list((p.public / "train_spectrograms").iterdir())) == len(train_specs)
    assert pq.read_table(next((p.public / "test_eegs").iterdir())).num_columns == 4
    assert (p.public / "example_figures" / "Seizure.png").is_file()
    sample = pd.read_csv(p.sample_path())
    assert list(sample.columns) == ["eeg_id", *HMS_VOTES] and (sample[HMS_VOTES] == 1 / 6).all().all()

    gold, subs = p.gold(), tmp_path / "subs2"
    # v1 compares id sets and lengths only: a repeated eeg_id may give a row to another test eeg_id.
    repeated = want["eeg_id"][want["eeg_id"].duplicated()].iloc[0]
    moved = gold.copy()
    moved.loc[int(np.flatnonzero(moved["eeg_id"] == repeated)[-1]), "eeg_id"] = want["eeg_id"][want["eeg_id"] != repeated].iloc[0]
    report = _grade(p, moved, subs)
    assert report.valid_submission and report.score >= 0, report.reason
    # v1 skips a missing probability when its row's others add to 1 (and the cell then adds nothing).
    holed = gold.copy()
    zero_row = int(np.flatnonzero(want["seizure_vote"].to_numpy() == 0)[0])
    holed.loc[zero_row, "seizure_vote"] = np.nan
    report = _grade(p, holed, subs)
    assert report.valid_submission and report.score == 0.0, report.reason
    # Extra columns are checked as v1 did: zeros pass, an id-like column does not.
    assert _grade(p, gold.assign(note=0.0), subs).score == 0.0
    for bad in (gold.assign(spectrogram_id=want["spectrogram_id"]), gold.assign(note="x"),
                gold.assign(seizure_vote=gold["seizure_vote"] + 0.01),   # rows no longer add to 1
                gold.assign(seizure_vote=-0.5, lpd_vote=gold["lpd_vote"] + 0.5 + gold["seizure_vote"]),
                gold.assign(seizure_vote="x"), gold.iloc[1:], gold.drop(columns="other_vote")):
        report = _grade(p, bad, subs)
        assert not report.valid_submission and report.reason and not report.grader_error, report.reason
    fuzz(p, tmp_path / "fuzz", valid_ok={"value_nan", "duplicate_id"})


def test_kl_divergence_by_hand():
    fn = METRICS["kl-divergence"]
    votes = pd.DataFrame({"a": [0, 3], "b": [2, 1]})  # distributions (0, 1) and (0.75, 0.25)
    pred = pd.DataFrame({"a": [0.5, 0.5], "b": [0.5, 0.5]})
    # row 1: 1*ln(1/0.5) = ln 2; row 2: 0.75 ln(1.5) + 0.25 ln(0.5); mean of the two
    want = (np.log(2) + 0.75 * np.log(1.5) + 0.25 * np.log(0.5)) / 2
    assert fn(votes, pred) == pytest.approx(want)
    assert fn(votes, pd.DataFrame({"a": [0.0, 0.75], "b": [1.0, 0.25]})) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(InvalidSubmission):
        fn(votes, pd.DataFrame({"a": [0.5, 0.5], "b": [0.6, 0.5]}))
    # A column beyond the answers' (a submission's extra column) is checked, not scored.
    assert fn(votes, pred.assign(extra=0.0)) == pytest.approx(want)
    with pytest.raises(InvalidSubmission):
        fn(votes, pred.assign(extra=0.5))


# ---------------------------------------------------------------- icecube-neutrinos-in-deep-ice

ICECUBE = "icecube-neutrinos-in-deep-ice"


def make_icecube(raw: Path, rng: np.random.Generator) -> None:
    meta, event_id = [], 24
    order = rng.permutation(np.arange(1, 21))  # batches listed out of numeric order
    (raw / "train").mkdir()
    (raw / "test").mkdir()
    for batch in order.tolist():
        pulses, first = [], 0
        for _ in range(3):
            n = int(rng.integers(2, 5))
            meta.append({"batch_id": batch, "event_id": event_id, "first_pulse_index": first,
                         "last_pulse_index": first + n - 1, "azimuth": rng.uniform(0, 2 * np.pi),
                         "zenith": rng.uniform(0, np.pi)})
            pulses.append(pd.DataFrame({"event_id": event_id, "sensor_id": rng.integers(0, 5160, n).astype(np.int16),
                                        "time": rng.integers(5000, 20000, n), "charge": rng.uniform(0.2, 3, n),
                                        "auxiliary": rng.random(n) < 0.5}))
            first, event_id = first + n, event_id + int(rng.integers(1, 9))
        _parquet(pd.concat(pulses).set_index("event_id").reset_index(), raw / "train" / f"batch_{batch}.parquet")
    _parquet(pd.DataFrame(meta), raw / "train_meta.parquet")
    _parquet(pd.DataFrame(meta[:2]).drop(columns=["azimuth", "zenith"]).assign(batch_id=661), raw / "test_meta.parquet")
    _parquet(pd.DataFrame({"event_id": [1], "sensor_id": [3], "time": [6000], "charge": [1.0], "auxiliary": [True]}),
             raw / "test" / "batch_661.parquet")
    pd.DataFrame({"sensor_id": range(5), "x": rng.uniform(-500, 500, 5), "y": rng.uniform(-500, 500, 5),
                  "z": rng.uniform(-500, 500, 5)}).to_csv(raw / "sensor_geometry.csv", index=False)
    _parquet(pd.DataFrame({"event_id": [2092], "azimuth": [1.0], "zenith": [1.0]}), raw / "sample_submission.parquet")


def test_icecube(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from hpc_mle.prepare import signals

    monkeypatch.setattr(signals, "ICECUBE_ROWS_PER_READ", 7)  # several slices, as on the real file
    probe = tmp_path / "probe"
    probe.mkdir()
    make_icecube(probe, np.random.default_rng(0))
    meta = pd.read_parquet(probe / "train_meta.parquet")
    train_ids, test_ids = train_test_split(meta["batch_id"].unique(), test_size=0.1, random_state=0)
    test = meta[meta["batch_id"].isin(test_ids)].reset_index(drop=True)
    want_sample = float(METRICS["mean-angular-error"](test[["azimuth", "zenith"]],
                                                      pd.DataFrame({"azimuth": [1] * len(test), "zenith": 1})))

    p = run_checks(ICECUBE, make_icecube, tmp_path,
                   public={"train_meta.parquet", "test_meta.parquet", "sensor_geometry.csv", "train", "test",
                           "sample_submission.csv"},
                   private={"test.csv"}, test_rows=len(test), sample_score=round(want_sample, 5), perfect_score=0.0)
    pd.testing.assert_frame_equal(p.answers(), test[["event_id", "azimuth", "zenith"]])
    assert (p.private / "test.csv").read_text() == test[["event_id", "azimuth", "zenith"]].to_csv(index=False)
    pd.testing.assert_frame_equal(pd.read_parquet(p.public / "train_meta.parquet"),
                                  meta[meta["batch_id"].isin(train_ids)].reset_index(drop=True))
    pd.testing.assert_frame_equal(pd.read_parquet(p.public / "test_meta.parquet"),
                                  test.drop(columns=["azimuth", "zenith"]))
    assert pq.read_schema(p.public / "test_meta.parquet").names == ["batch_id", "event_id", "first_pulse_index",
                                                                     "last_pulse_index"]
    assert sorted(x.name for x in (p.public / "test").iterdir()) == sorted(f"batch_{b}.parquet" for b in test_ids)
    assert len(list((p.public / "train").iterdir())) == len(train_ids)
    assert (p.public / "sample_submission.csv").read_text().splitlines()[:2] == \
        ["event_id,azimuth,zenith", f"{test['event_id'][0]},1,1"]

    gold, subs = p.gold(), tmp_path / "subs2"
    assert _grade(p, gold.iloc[::-1], subs).score == 0.0
    for bad in (gold.assign(extra=1), gold.assign(azimuth=True), gold.assign(zenith="x"),
                gold.assign(zenith=np.nan), gold.iloc[1:], gold.rename(columns={"zenith": "Zenith"})):
        report = _grade(p, bad, subs)
        assert not report.valid_submission and report.reason and not report.grader_error, report.reason
    fuzz(p, tmp_path / "fuzz")


def test_mean_angular_error_by_hand():
    fn = METRICS["mean-angular-error"]
    truth = pd.DataFrame({"azimuth": [0.0, 0.0], "zenith": [np.pi / 2, 0.0]})  # +x and +z
    # +y (90 degrees from +x) and -z (180 degrees from +z): mean (pi/2 + pi) / 2
    pred = pd.DataFrame({"azimuth": [np.pi / 2, 1.0], "zenith": [np.pi / 2, np.pi]})
    assert fn(truth, pred) == pytest.approx(3 * np.pi / 4)
    assert fn(truth, truth) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(InvalidSubmission):
        fn(truth, pred.assign(zenith=[np.inf, 0.0]))


# ---------------------------------------------------------------- multi-modal-gesture-recognition

GESTURE = "multi-modal-gesture-recognition"


def _empty_7z() -> bytes:
    """A valid empty 7z archive: the signature header with no next header (what 7-Zip writes for nothing)."""
    import struct
    import zlib

    tail = struct.pack("<QQI", 0, 0, 0)
    return b"7z\xbc\xaf\x27\x1c\x00\x04" + struct.pack("<I", zlib.crc32(tail)) + tail


def _tar_gz(path: Path, members: dict[str, bytes]) -> None:
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _gesture_sample(number: int, labels: list[int]) -> bytes:
    """A SampleNNNNN.zip as Kaggle ships it: a .mat data file (with the labels, the leak) and a CSV."""
    import io
    import zipfile

    import scipy.io

    mat = io.BytesIO()
    scipy.io.savemat(mat, {"Video": {"NumFrames": 10, "Labels": np.array(labels, dtype=np.int32)}})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr(f"Sample{number:05d}_data.mat", mat.getvalue())
        zf.writestr(f"Sample{number:05d}_labels.csv", "\n".join(f"{g},1,10" for g in labels))
    return out.getvalue()


def make_gesture(raw: Path, rng: np.random.Generator) -> None:
    numbers = list(range(1, 31))
    sequences = {n: rng.choice(np.arange(1, 21), size=int(rng.integers(1, 5)), replace=False).tolist() for n in numbers}
    order = rng.permutation(numbers).tolist()  # training.csv is not in id order
    pd.DataFrame({"Id": [f"{n:04d}" for n in order],
                  "Sequence": [" ".join(map(str, sequences[n])) for n in order]}).to_csv(raw / "training.csv", index=False)
    groups = {"training1.tar.gz": numbers[:8], "training2.tar.gz": numbers[8:16], "training3.tar.gz": numbers[16:22],
              "training4.tar.gz": numbers[22:]}
    for archive, members in groups.items():
        _tar_gz(raw / archive, {f"Sample{n:05d}.zip": _gesture_sample(n, sequences[n]) for n in members})
    for k in (1, 2, 3):
        _tar_gz(raw / f"validation{k}.tar.gz", {f"Sample{400 + k:05d}.zip": _gesture_sample(400 + k, [])})
    (raw / "devel01-40.7z").write_bytes(_empty_7z())
    (raw / "valid_all_files_combined.7z").write_bytes(_empty_7z())
    import zipfile

    with zipfile.ZipFile(raw / "sample_code_mmrgc.zip", "w") as zf:
        zf.writestr("main.m", "% sample code\n")
    pd.DataFrame({"Id": ["0410"], "Sequence": ["1 2 3"]}).to_csv(raw / "randomPredictions.csv", index=False)
    pd.DataFrame({"Id": ["0410"]}).to_csv(raw / "test.csv", index=False)


def test_gesture(tmp_path):
    import random

    public = {"training.csv", "test.csv", "randomPredictions.csv", "test.tar.gz", "training1.tar.gz",
              "training2.tar.gz", "training3.tar.gz", "validation1.tar.gz", "validation2.tar.gz",
              "validation3.tar.gz", "devel01-40.7z", "valid_all_files_combined.7z", "sample_code_mmrgc.zip"}
    probe = tmp_path / "probe"
    probe.mkdir()
    make_gesture(probe, np.random.default_rng(0))
    training = pd.read_csv(probe / "training.csv", dtype=str)
    test_ids = [f"{n:04d}" for n in range(23, 31)]
    answers = training[training["Id"].isin(test_ids)]
    random.seed(0)
    orders = [" ".join(str(x) for x in random.sample(range(1, 21), 20)) for _ in test_ids]
    by_id = dict(zip(test_ids, orders, strict=True))
    truth = [list(map(int, s.split())) for s in answers["Sequence"]]
    guess = [list(map(int, by_id[i].split())) for i in answers["Id"]]
    from rapidfuzz.distance import Levenshtein

    sample_score = round(sum(Levenshtein.distance(t, g) for t, g in zip(truth, guess, strict=True))
                         / sum(map(len, truth)), 5)

    p = run_checks(GESTURE, make_gesture, tmp_path, public=public, private={"test.csv"}, test_rows=8,
                   sample_score=sample_score, perfect_score=0.0)
    private_text = (p.private / "test.csv").read_text()
    assert private_text == answers.to_csv(index=False)  # zero-padded ids, training.csv's row order
    assert (p.public / "test.csv").read_text().split() == ["Id", *test_ids]
    assert pd.read_csv(p.public / "randomPredictions.csv", dtype=str)["Sequence"].tolist() == orders
    assert len(pd.read_csv(p.public / "training.csv")) == 22
    raw = p.data_dir / GESTURE / "raw"
    assert (p.public / "test.tar.gz").read_bytes() == (raw / "training4.tar.gz").read_bytes()

    gold, subs = p.gold(), tmp_path / "subs2"
    assert _grade(p, gold.iloc[::-1], subs).score == 0.0
    padded = gold.assign(Id=[f"{i:04d}" for i in gold["Id"]])
    assert _grade(p, padded, subs).score == 0.0
    one_off = gold.copy()
    one_off.loc[0, "Sequence"] = str(one_off.loc[0, "Sequence"]) + " 20"
    assert _grade(p, one_off, subs).score == round(1 / sum(map(len, truth)), 5)
    for bad in (gold.assign(Sequence="1, 2"), gold.assign(Sequence=np.nan), gold.assign(Sequence=1.5), gold.iloc[1:]):
        report = _grade(p, bad, subs)
        assert not report.valid_submission and report.reason and not report.grader_error, report.reason
    fuzz(p, tmp_path / "fuzz")


def test_levenshtein_error_rate_by_hand():
    fn = METRICS["levenshtein-error-rate"]
    truth = pd.DataFrame({"Sequence": ["1 2 3", "4 5"]})
    # "1 3": one deletion; "4 5 6": one insertion; 2 edits over 5 true gestures
    assert fn(truth, pd.DataFrame({"Sequence": ["1 3", "4 5 6"]})) == pytest.approx(0.4)
    # tokens, not characters: 10 vs 1 is one substitution
    assert fn(pd.DataFrame({"Sequence": ["10 2"]}), pd.DataFrame({"Sequence": ["1 2"]})) == pytest.approx(0.5)
    with pytest.raises(InvalidSubmission):
        fn(truth, pd.DataFrame({"Sequence": ["1 x", "4"]}))


# ---------------------------------------------------------------- smartphone-decimeter-2022

PHONE = "smartphone-decimeter-2022"


def make_smartphone(raw: Path, rng: np.random.Generator) -> None:
    drives = [f"2021-{m:02d}-{d:02d}-US-MTV-1" for m, d in ((1, 4), (3, 16), (4, 2), (4, 22), (5, 13), (7, 19),
                                                               (8, 24), (12, 7))]
    drives += ["2021-4-2-US-SJC-2", "2022-01-11-US-LAX-3", "2022-01-11-US-LAX-4", "2022-02-08-US-SJC-1"]
    for k, drive in enumerate(drives):
        for phone in (["GooglePixel4", "GooglePixel4XL"] if k % 3 == 0 else ["SamsungGalaxyS20Ultra"]):
            folder = raw / "train" / drive / phone
            (folder / "supplemental").mkdir(parents=True)
            n = int(rng.integers(3, 7))
            times = 1273608785432 + 1000 * np.arange(n)
            lat, lng = 37.4 + rng.normal(0, 0.01, n), -122.1 + rng.normal(0, 0.01, n)
            pd.DataFrame({"MessageType": "Fix", "Provider": "GT", "LatitudeDegrees": lat, "LongitudeDegrees": lng,
                          "AltitudeMeters": rng.uniform(0, 50, n), "SpeedMps": rng.uniform(0, 30, n),
                          "AccuracyMeters": 0.1, "BearingDegrees": rng.uniform(0, 360, n),
                          "UnixTimeMillis": times}).to_csv(folder / "ground_truth.csv", index=False)
            pd.DataFrame({"utcTimeMillis": times, "Svid": rng.integers(1, 32, n),
                          "WlsPositionXEcefMeters": rng.normal(-2.7e6, 10, n)}).to_csv(folder / "device_gnss.csv",
                                                                                         index=False)
            pd.DataFrame({"MessageType": "UncalAccel", "utcTimeMillis": times,
                          "MeasurementX": rng.normal(0, 1, n)}).to_csv(folder / "device_imu.csv", index=False)
            (folder / "supplemental" / "span_log.nmea").write_text(
                "".join(f"$GPGGA,{t},{la:.8f},N,{-lo:.8f},W,4,*00\n" for t, la, lo in zip(times, lat, lng, strict=True)))
    (raw / "metadata").mkdir()
    (raw / "metadata" / "accumulated_delta_range_error.csv").write_text("Phone,Year\nGooglePixel4,2021\n")
    test_trip = raw / "test" / "2022-04-25-US-OAK-1" / "GooglePixel4"
    test_trip.mkdir(parents=True)
    (test_trip / "device_gnss.csv").write_text("utcTimeMillis,Svid\n1,2\n")
    pd.DataFrame({"tripId": ["2022-04-25-US-OAK-1-GooglePixel4"], "UnixTimeMillis": [1], "LatitudeDegrees": [37.5],
                  "LongitudeDegrees": [-122.2]}).to_csv(raw / "sample_submission.csv", index=False)


def test_smartphone(tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    make_smartphone(probe, np.random.default_rng(0))
    drives = sorted(p.name for p in (probe / "train").iterdir())
    dates = sorted({"-".join(f"{int(x):02d}" if i else x for i, x in enumerate(d.split("-")[:3])) for d in drives})
    _, test_dates = train_test_split(dates, test_size=0.1, random_state=0)
    test_drives = [d for d in drives if "-".join(f"{int(x):02d}" if i else x
                                                  for i, x in enumerate(d.split("-")[:3])) in test_dates]
    frames = []
    for drive in test_drives:
        for phone in sorted(p.name for p in (probe / "train" / drive).iterdir()):
            gt = pd.read_csv(probe / "train" / drive / phone / "ground_truth.csv")
            frames.append(gt.assign(tripId=f"{drive}-{phone}")[["tripId", "UnixTimeMillis", "LatitudeDegrees",
                                                                   "LongitudeDegrees"]])
    answers = pd.concat(frames, ignore_index=True)

    def haversine(lat1, lng1, lat2, lng2):
        lat1, lng1, lat2, lng2 = map(np.deg2rad, (lat1, lng1, lat2, lng2))
        a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lng2 - lng1) / 2) ** 2
        return 2 * 6_371_000 * np.arcsin(np.sqrt(a))

    per_trip = []
    for _, trip in answers.groupby("tripId", sort=False):
        d = haversine(37.904611315634504, -86.48107806249548, trip["LatitudeDegrees"], trip["LongitudeDegrees"])
        per_trip.append((np.quantile(d, 0.5) + np.quantile(d, 0.95)) / 2)

    p = run_checks(PHONE, make_smartphone, tmp_path, public={"train", "test", "metadata", "sample_submission.csv"},
                   private={"test.csv"}, test_rows=len(answers), sample_score=round(float(np.mean(per_trip)), 5),
                   perfect_score=0.0)
    assert (p.private / "test.csv").read_text() == answers.to_csv(index=False)
    assert sorted(x.name for x in (p.public / "test").iterdir()) == test_drives
    assert not list((p.public / "test").rglob("ground_truth.csv"))
    assert len(list((p.public / "train").rglob("ground_truth.csv"))) + answers["tripId"].nunique() == \
        len(list((p.data_dir / PHONE / "raw" / "train").rglob("ground_truth.csv")))
    assert list((p.public / "test").rglob("span_log.nmea"))  # v1's leak, kept
    assert (p.public / "metadata" / "accumulated_delta_range_error.csv").is_file()

    gold, subs = p.gold(), tmp_path / "subs2"
    assert list(gold.columns) == ["tripId", "UnixTimeMillis", "LatitudeDegrees", "LongitudeDegrees"]
    # Trips may come in any order, but within a trip rows pair by position (time stamps are not read).
    by_trip = pd.concat([g for _, g in gold.groupby("tripId", sort=False)][::-1])
    assert _grade(p, by_trip, subs).score == 0.0
    assert _grade(p, gold.assign(UnixTimeMillis=0), subs).score == 0.0
    assert _grade(p, gold.iloc[::-1], subs).score > 0
    report = _grade(p, gold.assign(LatitudeDegrees=np.nan), subs)
    assert report.valid_submission and report.score != report.score  # NaN: valid in v1, never a medal
    renamed = gold.rename(columns={"tripId": "phone"})  # the column upstream's description names
    first_trip = gold["tripId"].iloc[0]
    for bad in (renamed, gold.drop(columns="UnixTimeMillis"), gold.iloc[1:], gold.assign(LatitudeDegrees="north"),
                gold.assign(tripId=gold["tripId"].where(gold["tripId"] != first_trip, gold["tripId"].iloc[-1]))):
        report = _grade(p, bad, subs)
        assert not report.valid_submission and report.reason and not report.grader_error, report.reason
        assert "rows in the answers" not in report.reason
    fuzz(p, tmp_path / "fuzz", valid_ok={"value_nan", "duplicate_id"})  # tripIds repeat: a row may stay in its trip


def test_mean_haversine_by_hand():
    fn = METRICS["mean-haversine-p50-p95"]
    truth = pd.DataFrame({"tripId": ["a", "a", "b"], "LatitudeDegrees": [0.0, 0.0, 10.0],
                          "LongitudeDegrees": [0.0, 0.0, 20.0]})
    # trip a: 0 m and one degree of latitude (R * pi / 180); P50 = half of it (linear), P95 = 0.95 of it;
    # trip b exact. Score = ((0.5 + 0.95) / 2 * deg + 0) / 2.
    deg = 6_371_000 * np.pi / 180
    pred = pd.DataFrame({"tripId": ["a", "b", "a"], "LatitudeDegrees": [0.0, 10.0, 1.0],
                         "LongitudeDegrees": [0.0, 20.0, 0.0]})
    assert fn(truth, pred) == pytest.approx((0.5 + 0.95) / 2 * deg / 2)
    with pytest.raises(InvalidSubmission):
        fn(truth, pred.assign(tripId=["a", "b", "b"]))


# The synthetic downloads of this module, for tests/synthetic_downloads.py.
MAKERS = {
    VOLCANO: make_volcano,
    NFL: make_nfl,
    HMS: make_hms,
    ICECUBE: make_icecube,
    GESTURE: make_gesture,
    PHONE: make_smartphone,
}
