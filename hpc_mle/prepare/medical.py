"""Preparers of the medical-image competitions: radiographs, dermoscopy, scans (DICOM, JPEG, TFRecord).

As for the other image families, v1's test set is cut from Kaggle's labelled training data
(`random_state=0`, facts §4.4) and the CSVs must equal v1's byte for byte. Scans are copied as they are,
one file at a time, never decoded; where v1 picks test images by the TFRecord shard that holds them, the
record files are read with `hpc_mle.prepare.tfrecord` (no TensorFlow).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hpc_mle.prepare import tfrecord
from hpc_mle.prepare.common import (
    copy_files,
    files_of,
    read_exact,
    require_columns,
    split,
    write_csv,
)

# ---------------------------------------------------------------- ranzcr-clip-catheter-line-classification

RANZCR_LABELS = (
    "ETT - Abnormal", "ETT - Borderline", "ETT - Normal",
    "NGT - Abnormal", "NGT - Borderline", "NGT - Incompletely Imaged", "NGT - Normal",
    "CVC - Abnormal", "CVC - Borderline", "CVC - Normal", "Swan Ganz Catheter Present",
)
# Known issue #30: v1's sample submission and grader cover only these 9 of the 11 labels
# ("CVC - Normal" and "Swan Ganz Catheter Present" are neither asked for nor scored). Kept for v1.
RANZCR_SCORED = RANZCR_LABELS[:9]


def ranzcr_clip_catheter_line_classification(raw: Path, public: Path, private: Path) -> None:
    """Chest X-rays with catheter labels; 10 % of Kaggle's train becomes test.

    The answers keep all 11 labels and PatientID (v1 writes the test rows whole); the sample
    submission has only the 9 scored labels, all 0. Annotations of train rows stay public, in file order.
    """
    old_train = read_exact(raw / "train.csv")
    require_columns(old_train, ["StudyInstanceUID", *RANZCR_LABELS, "PatientID"], raw / "train.csv")
    train, test = split(old_train)
    annotations = read_exact(raw / "train_annotations.csv")
    train_annotations = annotations[annotations["StudyInstanceUID"].isin(train["StudyInstanceUID"])]

    copy_files(files_of(train["StudyInstanceUID"], ".jpg"), raw / "train", public / "train")
    copy_files(files_of(test["StudyInstanceUID"], ".jpg"), raw / "train", public / "test")
    sample = test[["StudyInstanceUID"]].assign(**{label: 0 for label in RANZCR_SCORED})
    write_csv(train, public / "train.csv")
    write_csv(train_annotations, public / "train_annotations.csv")
    write_csv(test, private / "test.csv")
    write_csv(sample, public / "sample_submission.csv")


# ---------------------------------------------------------------- siim-isic-melanoma-classification

SIIM_COLUMNS = ("image_name", "patient_id", "sex", "age_approx", "anatom_site_general_challenge",
                "diagnosis", "benign_malignant", "target")
SIIM_TEST_COLUMNS = SIIM_COLUMNS[:5]
# v1's test set: the images stored in these two of Kaggle's 16 train TFRecord files (~10 % of rows).
SIIM_TEST_SHARDS = ("train00", "train06")


def shard(path: Path) -> str:
    """`train06` of `train06-2071.tfrec` (the part after the dash is the record count)."""
    return path.stem.split("-")[0]


def siim_test_ids(tfrecords: list[Path]) -> set[str]:
    """Image names stored in the test shards, read from their `image_name` feature."""
    test_files = [p for p in tfrecords if shard(p) in SIIM_TEST_SHARDS]
    if sorted(shard(p) for p in test_files) != sorted(SIIM_TEST_SHARDS):
        raise FileNotFoundError(f"expected TFRecords {', '.join(SIIM_TEST_SHARDS)} in the download's "
                                f"tfrecords/, found {[p.name for p in tfrecords]}")
    return {name for path in test_files for name in tfrecord.string_feature(path, "image_name")}


def copy_siim_tfrecords(tfrecords: list[Path], dst: Path) -> None:
    """v1 renumbers the train shards in sorted order: the test ones become test00/test01, the rest
    train00..train13; the record count after the dash is kept. Kaggle's test shards are not copied."""
    dst.mkdir(parents=True, exist_ok=True)
    counts = {"train": 0, "test": 0}
    for path in tfrecords:
        part = "test" if shard(path) in SIIM_TEST_SHARDS else "train"
        records = path.stem.split("-")[1]
        shutil.copyfile(path, dst / f"{part}{counts[part]:02d}-{records}.tfrec")
        counts[part] += 1


def siim_isic_melanoma_classification(raw: Path, public: Path, private: Path) -> None:
    """Skin-lesion images as DICOM, JPEG and TFRecords; the test set is the rows in two TFRecord shards.

    Both parts keep train.csv's order. Each image goes to the public folder of its part in both
    formats (train/ or test/ for .dcm, jpeg/train or jpeg/test for .jpg). Kaggle's own test images and
    test TFRecords are not used.
    """
    old_train = read_exact(raw / "train.csv")
    require_columns(old_train, SIIM_COLUMNS, raw / "train.csv")
    tfrecords = sorted((raw / "tfrecords").glob("train*.tfrec"))
    is_test = old_train["image_name"].isin(siim_test_ids(tfrecords))
    if not is_test.any():
        raise ValueError(f"{raw}: no image of the test TFRecords is listed in train.csv")
    train, test = old_train[~is_test], old_train[is_test]

    answers = test[["image_name", "target"]]
    write_csv(train, public / "train.csv")
    write_csv(test[list(SIIM_TEST_COLUMNS)], public / "test.csv")
    write_csv(answers.assign(target=0), public / "sample_submission.csv")
    write_csv(answers, private / "test.csv")

    for part, rows in (("train", train), ("test", test)):
        copy_files(files_of(rows["image_name"], ".dcm"), raw / "train", public / part)
        copy_files(files_of(rows["image_name"], ".jpg"), raw / "jpeg" / "train", public / "jpeg" / part)
    copy_siim_tfrecords(tfrecords, public / "tfrecords")
