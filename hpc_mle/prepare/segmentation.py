"""Preparers of the segmentation competitions: masks of contrails, kidney glomeruli, salt, organs and ink.

Each `name(raw, public, private)` turns the extracted Kaggle download in `raw` into the split MLE-bench
v1 makes (facts §4.4); the answers are run-length masks (hpc_mle.rle) with the image sizes the graders
need. The CSV files must match v1 byte for byte (same rows, order, columns, float format); the images,
bands and scans are copied one file at a time, never loaded, so memory does not grow with the data.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from hpc_mle import rle
from hpc_mle.prepare.common import (
    copy_files,
    copy_tree,
    extract_nested,
    read_exact,
    require_columns,
    require_files,
    split,
    write_csv,
)

# ---------------------------------------------------------------- google-research-identify-contrails

CONTRAIL_BANDS = [f"band_{k:02}.npy" for k in range(8, 17)]
CONTRAIL_MASKS = ["human_individual_masks.npy", "human_pixel_masks.npy"]
CONTRAIL_SAMPLE_MASKS = ("1 3 10 5", "-")  # v1's sample: one of these per record, random.seed(0)


def _contrail_answer(record: Path) -> dict:
    """The record's pixel mask as column-major runs ("-" when empty) and its band's height and width."""
    mask = np.load(record / "human_pixel_masks.npy")
    height, width, _ = np.load(record / "band_08.npy", mmap_mode="r").shape  # header only
    return {"record_id": record.name, "encoded_pixels": rle.encode(mask) or "-", "height": height, "width": width}


def google_research_identify_contrails(raw: Path, public: Path, private: Path) -> None:
    """Kaggle's train records split so the new test is as large as Kaggle's validation set (random_state=0);
    the validation records are copied as they are."""
    train_meta = json.loads((raw / "train_metadata.json").read_text())
    validation_meta = json.loads((raw / "validation_metadata.json").read_text())
    train, test = split(pd.DataFrame({"i": range(len(train_meta))}), test_size=len(validation_meta))
    new_train = [train_meta[i] for i in train["i"]]
    new_test = [train_meta[i] for i in test["i"]]
    source = raw / "train"
    require_files((f"{m['record_id']}/{name}" for m in train_meta for name in CONTRAIL_BANDS + CONTRAIL_MASKS), source)

    answers = pd.DataFrame([_contrail_answer(source / str(m["record_id"])) for m in new_test],
                           columns=["record_id", "encoded_pixels", "height", "width"])
    for meta in new_train:
        record = str(meta["record_id"])
        copy_files(CONTRAIL_BANDS + CONTRAIL_MASKS, source / record, public / "train" / record)
    for meta in new_test:
        record = str(meta["record_id"])
        copy_files(CONTRAIL_BANDS, source / record, public / "test" / record)
    if (raw / "validation").is_dir():
        copy_tree(raw / "validation", public / "validation")
    else:
        (public / "validation").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(raw / "validation_metadata.json", public / "validation_metadata.json")
    (public / "train_metadata.json").write_text(json.dumps(new_train))
    write_csv(answers, private / "answers.csv")
    draw = random.Random(0)
    write_csv(answers.assign(encoded_pixels=[draw.choice(CONTRAIL_SAMPLE_MASKS) for _ in range(len(answers))]),
              public / "sample_submission.csv")


# ---------------------------------------------------------------- hubmap-kidney-segmentation

HUBMAP_INFO = "HuBMAP-20-dataset_information.csv"


def _hubmap_files(image_id: str) -> list[str]:
    return [f"{image_id}.tiff", f"{image_id}.json", f"{image_id}-anatomical-structure.json"]


def hubmap_kidney_segmentation(raw: Path, public: Path, private: Path) -> None:
    """Kaggle's 15 labelled slides split 12/3 (random_state=0); the answers add each test slide's width
    and height. Kaggle's own test slides are dropped. Like v1, the test slides' glomerulus .json files
    are copied to public/test/ (a known leak, PR #98) and the sample also sits in public/test/."""
    labels = read_exact(raw / "train.csv")
    require_columns(labels, ["id", "encoding"], raw / "train.csv")
    info = read_exact(raw / HUBMAP_INFO)
    train, test = split(labels, train_size=12, test_size=3)
    info_ids = info["image_file"].str.replace(".tiff", "", regex=False)
    info = info[info_ids.isin(labels["id"])]
    test = test.merge(info.assign(id=info_ids)[["id", "width_pixels", "height_pixels"]], on="id")
    require_files((name for i in labels["id"] for name in _hubmap_files(i)), raw / "train")

    write_csv(info, public / HUBMAP_INFO)
    write_csv(train, public / "train.csv")
    write_csv(test, private / "test.csv")
    sample = test[["id"]].assign(predicted="")
    write_csv(sample, public / "sample_submission.csv")
    write_csv(sample.assign(predicted=test["encoding"]), private / "gold_submission.csv")
    for folder, ids in (("train", train["id"]), ("test", test["id"])):
        for image_id in ids:
            copy_files(_hubmap_files(image_id), raw / "train", public / folder)
    shutil.copyfile(public / "sample_submission.csv", public / "test" / "sample_submission.csv")


# ---------------------------------------------------------------- tgs-salt-identification-challenge

TGS_TEST_SIZE = 0.25  # v1: a quarter of Kaggle's 4,000 labelled images


def tgs_salt_identification(raw: Path, public: Path, private: Path) -> None:
    """competition_data.zip's labelled images split 75/25 (random_state=0); CSVs sorted by id; depths.csv
    keeps the new train ids only (as v1)."""
    data = raw / "competition_data"
    if not (data / "train.csv").is_file():
        extract_nested(raw / "competition_data.zip", raw)
    labels = read_exact(data / "train.csv").fillna("")
    require_columns(labels, ["id", "rle_mask"], data / "train.csv")
    train, test = split(labels, test_size=TGS_TEST_SIZE)
    images, masks = data / "train" / "images", data / "train" / "masks"
    names = [f"{i}.png" for i in labels["id"]]
    require_files(names, images)
    require_files(names, masks)

    write_csv(train.sort_values("id", kind="stable"), public / "train.csv")
    write_csv(test.sort_values("id", kind="stable"), private / "test.csv")
    copy_files((f"{i}.png" for i in train["id"]), images, public / "train" / "images")
    copy_files((f"{i}.png" for i in train["id"]), masks, public / "train" / "masks")
    copy_files((f"{i}.png" for i in test["id"]), images, public / "test" / "images")
    write_csv(test[["id"]].assign(rle_mask="1 1").sort_values("id", kind="stable"), public / "sample_submission.csv")
    depths = read_exact(raw / "depths.csv")
    write_csv(depths[depths["id"].isin(set(train["id"]))].sort_values("id", kind="stable"), public / "depths.csv")


# ---------------------------------------------------------------- uw-madison-gi-tract-image-segmentation

UW_TEST_SIZE = 0.1
UW_SEED = 42
UW_KEPT_DAYS = 4  # v1 moves a train case's days after its 4th (by day number) to the test set


def _uw_test_days(frame: pd.DataFrame) -> set[tuple[str, str]]:
    """(case, day) pairs of v1's test set: every day of the held-out cases, plus the days after the
    4th of each train case."""
    cases = frame["case"].unique()
    _, test_cases = split(pd.DataFrame({"case": cases}), test_size=UW_TEST_SIZE, random_state=UW_SEED)
    held_out = set(test_cases["case"])
    pairs = set(zip(frame["case"], frame["day"], strict=True))
    moved = set()
    for case in {c for c, _ in pairs} - held_out:
        days = sorted({d for c, d in pairs if c == case}, key=lambda d: int(d[len("day"):]))
        moved |= {(case, d) for d in days[UW_KEPT_DAYS:]}
    return {(c, d) for c, d in pairs if c in held_out} | moved


def _uw_sizes(scans: Path) -> dict[str, tuple[float, float]]:
    """Slice number -> (width, height), read from the scan file names slice_<n>_<width>_<height>_<px>_<px>.png."""
    sizes = {}
    for path in scans.glob("slice_*.png"):
        parts = path.stem.split("_")
        sizes[parts[1]] = (float(parts[2]), float(parts[3]))
    return sizes


def uw_madison_gi_tract(raw: Path, public: Path, private: Path) -> None:
    """train.csv's cases split 90/10 (random_state=42), then each train case's days after the 4th join
    the test set; case/day scan folders copied to the side of their day. The answers keep the file's
    row order and add the scans' width and height (floats, as v1's row-wise assignment wrote them)."""
    frame = read_exact(raw / "train.csv")
    require_columns(frame, ["id", "class", "segmentation"], raw / "train.csv")
    parts = frame["id"].str.split("_")
    frame = frame.assign(case=parts.str[0], day=parts.str[1], slice=parts.str[-1])
    test_days = _uw_test_days(frame)
    in_test = pd.Series([pair in test_days for pair in zip(frame["case"], frame["day"], strict=True)],
                        index=frame.index)
    source = raw / "train"
    for case_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        for day_dir in sorted(p for p in case_dir.iterdir() if p.is_dir()):
            day = day_dir.name[len(case_dir.name) + 1:]
            side = "test" if (case_dir.name, day) in test_days else "train"
            copy_tree(day_dir, public / side / case_dir.name / day_dir.name)
    (public / "train").mkdir(parents=True, exist_ok=True)
    (public / "test").mkdir(parents=True, exist_ok=True)

    test = frame[in_test.to_numpy()]
    widths, heights = [], []
    sizes: dict[tuple[str, str], dict] = {}
    for case, day, number in zip(test["case"], test["day"], test["slice"], strict=True):
        if (case, day) not in sizes:
            sizes[case, day] = _uw_sizes(source / case / f"{case}_{day}" / "scans")
        if number not in sizes[case, day]:
            raise FileNotFoundError(f"{source / case / f'{case}_{day}' / 'scans'}: no scan for slice {number}. "
                                    "Fix: delete the raw folder and prepare again to re-extract the download.")
        width, height = sizes[case, day][number]
        widths.append(width)
        heights.append(height)
    columns = ["id", "class", "segmentation"]
    answers = test[columns].rename(columns={"segmentation": "predicted"}).assign(image_width=widths,
                                                                                 image_height=heights)
    write_csv(answers.assign(predicted="1 1 5 2")[["id", "class", "predicted"]], public / "sample_submission.csv")
    write_csv(answers, private / "test.csv")
    write_csv(frame[~in_test.to_numpy()][columns], public / "train.csv")
    write_csv(test[["id", "class"]], public / "test.csv")


# ---------------------------------------------------------------- vesuvius-challenge-ink-detection

VESUVIUS_TEST_FRAGMENT = "3"  # v1: train fragment 3 becomes the one test fragment "a"
VESUVIUS_HIDDEN = {"inklabels.png", "inklabels_rle.csv", "ir.png"}


def vesuvius_ink_detection(raw: Path, public: Path, private: Path) -> None:
    """Fragments 1 and 2 stay train; fragment 3 becomes test fragment "a" without its labels and infrared
    photo; the answers are its ink mask (row-major runs) with the photo's width and height."""
    fragment = raw / "train" / VESUVIUS_TEST_FRAGMENT
    labels = read_exact(fragment / "inklabels_rle.csv")
    require_columns(labels, ["Id", "Predicted"], fragment / "inklabels_rle.csv")
    if len(labels) != 1:
        raise ValueError(f"{fragment / 'inklabels_rle.csv'}: expected one row, found {len(labels)}. "
                         "Fix: re-download the competition; Kaggle may have changed the files.")
    with Image.open(fragment / "ir.png") as photo:  # reads the header only
        width, height = photo.size
    for name in ("1", "2"):
        copy_tree(raw / "train" / name, public / "train" / name)
    answers = labels.assign(width=width, height=height, Id="a")
    write_csv(answers, private / "inklabels_rle.csv")
    write_csv(answers.drop(columns=["width", "height"]), private / "gold_submission.csv")
    for path in sorted(fragment.rglob("*")):
        if path.is_file() and path.name not in VESUVIUS_HIDDEN:
            if path.suffix not in (".png", ".csv", ".tif"):
                raise ValueError(f"{path}: unexpected file type in the fragment (v1 expects .png, .csv, .tif).")
            target = public / "test" / "a" / path.relative_to(fragment)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    write_csv(pd.DataFrame({"Id": ["a"], "Predicted": ["1 1 5 1"]}), public / "sample_submission.csv")
