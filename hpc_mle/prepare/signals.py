"""Preparers of the time-series, sensor and physics-signal competitions (full MLE-bench).

Each `name(raw, public, private)` turns the extracted Kaggle download in `raw` into the split
MLE-bench v1 makes (facts §4.4): the same rows, row order, columns, float format and files in
`public/` or `private/`. `prepare` hands them staging folders, so a failure leaves nothing behind.
Signal files are copied one at a time; no preparer here holds more than its index tables in memory.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePath

import numpy as np
import pandas as pd

from hpc_mle.prepare.common import EXACT_FLOATS, copy_files, copy_tree, read_csv, split, write_csv

# ---------------------------------------------------------------- predict-volcanic-eruptions-ingv-oe


def predict_volcanic_eruptions(raw: Path, public: Path, private: Path) -> None:
    """10% of Kaggle's labelled segments become the test set (random_state=0).

    Kaggle's own test segments are not used: both new folders are filled from `raw/train/`, one
    `<segment_id>.csv` per row of the new train and test tables. The sample submission predicts 0.
    """
    table = read_csv(raw / "train.csv", **EXACT_FLOATS)
    if list(table.columns) != ["segment_id", "time_to_eruption"]:
        raise ValueError(f"{raw / 'train.csv'}: expected the columns segment_id, time_to_eruption; "
                         f"got {list(table.columns)}")
    train, test = split(table)
    write_csv(test, private / "test.csv")
    write_csv(train, public / "train.csv")
    write_csv(test.assign(time_to_eruption=0), public / "sample_submission.csv")
    copy_files((f"{sid}.csv" for sid in train["segment_id"]), raw / "train", public / "train")
    copy_files((f"{sid}.csv" for sid in test["segment_id"]), raw / "train", public / "test")


# ---------------------------------------------------------------- nfl-player-contact-detection

NFL_VIEWS = ("All29", "Endzone", "Sideline")
# Tables split by game_play, written as `train_<name>.csv` and `test_<name>.csv` in public/.
NFL_TABLES = ("baseline_helmets", "player_tracking", "video_metadata")


def nfl_player_contact(raw: Path, public: Path, private: Path) -> None:
    """10% of Kaggle's labelled game plays (train_test_split of the unique game_play values in order
    of first appearance, random_state=0) become the test set; every table keeps its row order.

    Tables are read whole with pandas' default float parser, as v1 did, so their floats are written
    back as v1 wrote them. The three videos of each game play come from `raw/train/`.
    """
    labels = read_csv(raw / "train_labels.csv")
    plays = np.asarray(labels["game_play"].unique(), dtype=object)  # v1's pandas 2 gave an object array
    train_plays, test_plays = split(plays)
    train_rows = labels["game_play"].isin(train_plays)
    test_labels = labels[labels["game_play"].isin(test_plays)]
    write_csv(labels[train_rows], public / "train_labels.csv")
    write_csv(test_labels, private / "test.csv")
    train_used, test_used = labels.loc[train_rows, "game_play"].unique(), test_labels["game_play"].unique()
    del labels
    for name in NFL_TABLES:
        table = read_csv(raw / f"train_{name}.csv")
        write_csv(table[table["game_play"].isin(train_plays)], public / f"train_{name}.csv")
        write_csv(table[table["game_play"].isin(test_plays)], public / f"test_{name}.csv")
        del table
    for view in NFL_VIEWS:
        copy_files((f"{gp}_{view}.mp4" for gp in train_used), raw / "train", public / "train")
        copy_files((f"{gp}_{view}.mp4" for gp in test_used), raw / "train", public / "test")
    write_csv(pd.DataFrame({"contact_id": test_labels["contact_id"], "contact": 0}), public / "sample_submission.csv")


# ---------------------------------------------------------------- hms-harmful-brain-activity-classification

HMS_VOTES = ["seizure_vote", "lpd_vote", "gpd_vote", "lrda_vote", "grda_vote", "other_vote"]


def hms_brain_activity(raw: Path, public: Path, private: Path) -> None:
    """10% of Kaggle's spectrograms (train_test_split of the unique spectrogram_id values in order of
    first appearance, random_state=0) and every label window on them become the test set.

    public/test.csv keeps only spectrogram_id, eeg_id, patient_id; private/ holds the labelled rows and
    a gold submission (votes divided by their row sum); the sample predicts 1/6 everywhere. EEG and
    spectrogram parquet files are copied from Kaggle's train folders, one at a time, unread.
    """
    table = read_csv(raw / "train.csv", **EXACT_FLOATS)
    train_specs, test_specs = split(table["spectrogram_id"].unique())
    train = table[table["spectrogram_id"].isin(train_specs)]
    test = table[table["spectrogram_id"].isin(test_specs)]
    write_csv(train, public / "train.csv")
    write_csv(test, private / "test.csv")
    write_csv(test[["spectrogram_id", "eeg_id", "patient_id"]], public / "test.csv")
    gold = test[["eeg_id", *HMS_VOTES]].copy()
    gold[HMS_VOTES] = gold[HMS_VOTES].div(gold[HMS_VOTES].sum(axis=1), axis=0)
    write_csv(gold, private / "gold_submission.csv")
    sample = gold.copy()
    sample[HMS_VOTES] = 1 / len(HMS_VOTES)
    write_csv(sample, public / "sample_submission.csv")
    copy_tree(raw / "example_figures", public / "example_figures")
    for part, frame in (("train", train), ("test", test)):
        copy_files((f"{i}.parquet" for i in frame["eeg_id"].unique()), raw / "train_eegs", public / f"{part}_eegs")
        copy_files((f"{i}.parquet" for i in frame["spectrogram_id"].unique()), raw / "train_spectrograms",
                   public / f"{part}_spectrograms")


# ---------------------------------------------------------------- icecube-neutrinos-in-deep-ice

ICECUBE_ROWS_PER_READ = 1 << 21  # meta rows read at a time (train_meta.parquet has about 130 million)


def icecube_neutrinos(raw: Path, public: Path, private: Path) -> None:
    """10% of Kaggle's training batches (train_test_split of the unique batch_id values in order of first
    appearance, random_state=0) become the test set; `train/batch_<n>.parquet` pulse files go to
    public/train or public/test unread.

    train_meta.parquet is streamed in slices, never held whole: public/train_meta.parquet and
    public/test_meta.parquet (without azimuth and zenith) keep its columns and row order, and the
    answers (event_id, azimuth, zenith) are appended to private/test.csv slice by slice. v1 wrote its
    parquet files with fastparquet, whose bytes depend on the installed versions (upstream #58): ours are
    written by pyarrow, so compare their content, not their checksums.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(raw / "train_meta.parquet")
    seen: dict[int, None] = {}
    for piece in meta.iter_batches(batch_size=ICECUBE_ROWS_PER_READ, columns=["batch_id"]):
        seen.update(dict.fromkeys(pc.unique(piece.column(0)).to_pylist()))
    train_ids, test_ids = split(np.array(list(seen), dtype=np.int64))
    train_set, test_set = pa.array(train_ids), pa.array(test_ids)

    schema = meta.schema_arrow
    test_schema = pa.schema([f for f in schema if f.name not in ("azimuth", "zenith")])
    answers_path = private / "test.csv"
    with pq.ParquetWriter(public / "train_meta.parquet", schema) as train_out, \
            pq.ParquetWriter(public / "test_meta.parquet", test_schema) as test_out:
        header = True
        for piece in meta.iter_batches(batch_size=ICECUBE_ROWS_PER_READ):
            table = pa.Table.from_batches([piece], schema=schema)
            train_out.write_table(table.filter(pc.is_in(table["batch_id"], value_set=train_set)))
            test = table.filter(pc.is_in(table["batch_id"], value_set=test_set))
            test_out.write_table(test.select(test_schema.names))
            answers = test.select(["event_id", "azimuth", "zenith"]).to_pandas()
            answers.to_csv(answers_path, mode="w" if header else "a", header=header, index=False, lineterminator="\n")
            header = False
    answers = pd.read_csv(answers_path, usecols=["event_id"])
    write_csv(answers.assign(azimuth=1, zenith=1), public / "sample_submission.csv")
    del answers
    shutil.copyfile(raw / "sensor_geometry.csv", public / "sensor_geometry.csv")
    train_keep, test_keep = set(train_ids.tolist()), set(test_ids.tolist())
    (public / "train").mkdir(exist_ok=True)
    (public / "test").mkdir(exist_ok=True)
    for batch_file in sorted((raw / "train").glob("*.parquet")):
        batch_id = int(batch_file.stem.split("_")[-1])
        if batch_id in train_keep:
            shutil.copyfile(batch_file, public / "train" / batch_file.name)
        elif batch_id in test_keep:
            shutil.copyfile(batch_file, public / "test" / batch_file.name)


# ---------------------------------------------------------------- multi-modal-gesture-recognition

GESTURE_PUBLIC_ARCHIVES = ("training1.tar.gz", "training2.tar.gz", "training3.tar.gz", "validation1.tar.gz",
                           "validation2.tar.gz", "validation3.tar.gz", "devel01-40.7z",
                           "valid_all_files_combined.7z", "sample_code_mmrgc.zip")


def _top_level_zips(archive: Path) -> list[str]:
    """Names of the `.zip` files at the top level of a tar archive, read from its index (not unpacked)."""
    import tarfile
    from pathlib import PurePosixPath

    with tarfile.open(archive) as tar:
        names = [PurePosixPath(m.name) for m in tar.getmembers() if m.isfile()]
    return [n.name for n in names if n.suffix == ".zip" and str(n.parent) in ("", ".")]


def multi_modal_gesture(raw: Path, public: Path, private: Path) -> None:
    """Kaggle's fourth training archive becomes the test set (public/test.tar.gz, unchanged).

    Its samples (`SampleNNNNN.zip`, id = the last four digits) leave training.csv for private/test.csv;
    public/test.csv lists the sorted ids, and randomPredictions.csv gives each a random order of the
    gestures 1-20 (Python's `random.seed(0)`). The other archives are copied as they are. As in v1, the
    test archive keeps each sample's labels inside its .mat file (a known leak, upstream #77).
    """
    import random

    test_ids = sorted(PurePath(name).stem[-4:] for name in _top_level_zips(raw / "training4.tar.gz"))
    training = read_csv(raw / "training.csv", dtype={"Id": str, "Sequence": str})
    is_test = training["Id"].isin(test_ids)
    if int(is_test.sum()) != len(test_ids):
        raise ValueError(f"{raw / 'training.csv'}: {int(is_test.sum())} rows match the {len(test_ids)} samples "
                         f"of training4.tar.gz (v1 requires one each)")
    write_csv(training[~is_test], public / "training.csv")
    write_csv(training[is_test], private / "test.csv")
    write_csv(pd.DataFrame({"Id": test_ids}), public / "test.csv")
    rng = random.Random(0)
    orders = [" ".join(str(x) for x in rng.sample(range(1, 21), 20)) for _ in test_ids]
    write_csv(pd.DataFrame({"Id": test_ids, "Sequence": orders}), public / "randomPredictions.csv")
    shutil.copyfile(raw / "training4.tar.gz", public / "test.tar.gz")
    for name in GESTURE_PUBLIC_ARCHIVES:
        shutil.copyfile(raw / name, public / name)


# ---------------------------------------------------------------- smartphone-decimeter-2022

SMARTPHONE_SAMPLE = {"LatitudeDegrees": 37.904611315634504, "LongitudeDegrees": -86.48107806249548}


def _drive_date(drive_id: str) -> str:
    """`YYYY-MM-DD` from a drive folder named `YYYY-M-D-<anything>` (month and day zero-padded)."""
    parts = drive_id.split("-")
    if len(parts) < 3 or not all(p.isdigit() for p in parts[:3]):
        raise ValueError(f"train/{drive_id}: expected a drive folder named YYYY-MM-DD-..., as Kaggle's")
    return f"{parts[0]}-{parts[1].zfill(2)}-{parts[2].zfill(2)}"


def smartphone_decimeter(raw: Path, public: Path, private: Path) -> None:
    """10% of the recording dates (train_test_split of the sorted unique dates, random_state=0) and every
    drive on them become the test set; drive folders are copied whole to public/train or public/test.

    The answers are every test `<drive>/<phone>/ground_truth.csv` (in path order) as tripId
    (`<drive>-<phone>`), UnixTimeMillis, LatitudeDegrees, LongitudeDegrees; those files are then removed
    from public/test. As in v1, the rest stays, including each phone's supplemental/span_log.nmea, a
    high-precision reference track that gives the answers away (upstream #93).
    """
    drives = sorted(p.name for p in (raw / "train").iterdir() if p.is_dir())
    dates = sorted({_drive_date(d) for d in drives})
    train_dates, test_dates = split(dates)
    test_drives = sorted(d for d in drives if _drive_date(d) in set(test_dates))
    for drive in drives:
        part = "test" if drive in test_drives else "train"
        copy_tree(raw / "train" / drive, public / part / drive)
    trips = []
    truth_files = sorted((public / "test").rglob("ground_truth.csv"), key=lambda p: p.parts)
    for path in truth_files:
        drive, phone = path.parent.parent.name, path.parent.name
        truth = pd.read_csv(path)
        truth.loc[:, "tripId"] = f"{drive}-{phone}"
        trips.append(truth[["tripId", "UnixTimeMillis", "LatitudeDegrees", "LongitudeDegrees"]])
    answers = pd.concat(trips, ignore_index=True)
    write_csv(answers, private / "test.csv")
    for path in truth_files:
        path.unlink()
    copy_tree(raw / "metadata", public / "metadata")
    write_csv(answers.assign(**SMARTPHONE_SAMPLE), public / "sample_submission.csv")


# ---------------------------------------------------------------- seti-breakthrough-listen


def _cadence_files(ids, src: Path, dst: Path) -> None:
    """Copy `<first character>/<id>.npy` cadences (Kaggle's layout) one at a time, unread."""
    for file_id in ids:
        name = f"{file_id[0]}/{file_id}.npy"
        (dst / file_id[0]).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / name, dst / name)


def seti_breakthrough_listen(raw: Path, public: Path, private: Path) -> None:
    """Radio-telescope cadences (one .npy array of 6 spectrograms per id); 10 % of Kaggle's labelled
    ids become the test set (random_state=0), both folders filled from Kaggle's train/.

    As in v1, Kaggle's `old_leaky_data/` (the first release of the data) is copied to public/ whole;
    Kaggle's own test cadences are not used. The sample predicts 0.5.
    """
    table = read_csv(raw / "train_labels.csv", **EXACT_FLOATS)
    if list(table.columns) != ["id", "target"]:
        raise ValueError(f"{raw / 'train_labels.csv'}: expected the columns id, target; got {list(table.columns)}. "
                         "Fix: re-download the competition; Kaggle may have changed the files.")
    train, test = split(table)
    write_csv(train, public / "train_labels.csv")
    write_csv(test, private / "test.csv")
    write_csv(test.assign(target=0.5), public / "sample_submission.csv")
    copy_tree(raw / "old_leaky_data", public / "old_leaky_data")
    _cadence_files(train["id"], raw / "train", public / "train")
    _cadence_files(test["id"], raw / "train", public / "test")
