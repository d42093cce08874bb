"""Preparers of the medical-image competitions: radiographs, dermoscopy, scans (DICOM, JPEG, TFRecord).

As for the other image families, v1's test set is cut from Kaggle's labelled training data
(`random_state=0`, facts §4.4) and the CSVs must equal v1's byte for byte. Scans are copied as they are,
one file at a time, never decoded; where v1 picks test images by the TFRecord shard that holds them, the
record files are read with `hpc_mle.prepare.tfrecord` (no TensorFlow).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from hpc_mle.prepare import tfrecord
from hpc_mle.prepare.common import (
    copy_files,
    copy_tree,
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


# ---------------------------------------------------------------- rsna-2022-cervical-spine-fracture-detection

CERVICAL_COLUMNS = ("StudyInstanceUID", "patient_overall", "C1", "C2", "C3", "C4", "C5", "C6", "C7")
CERVICAL_BOX_COLUMNS = ("StudyInstanceUID", "x", "y", "width", "height", "slice_number")
# v1 keeps this fraction of the studies (and of the boxed, segmented and overlapping ones) as TRAIN;
# the other ~90 % become the test set (its comment meant the reverse; kept for v1, flagged in the spec).
CERVICAL_TRAIN_RATIO = 0.1


def _without(population: list[str], taken: list[str]) -> list[str]:
    """`population` in its order, less the ids in `taken` (v1's list comprehensions, with a set)."""
    drop = set(taken)
    return [uid for uid in population if uid not in drop]


def cervical_train_studies(studies: list[str], boxed: list[str], segmented: list[str]) -> tuple[list[str], list[str], list[str]]:
    """v1's draws with Python's `random.Random(0)`, in its order: the train studies, the boxed ones
    among them and the segmented ones among them.

    The fraction of boxed, segmented and both is kept: first the overlap, then segmented-only, then
    boxed-only, then any other study, each `random.sample` from the sorted (or file-order) remainder.
    """
    import random

    rng = random.Random(0)
    segmented_set = set(segmented)
    overlap = [uid for uid in boxed if uid in segmented_set]
    picked = rng.sample(overlap, round(len(overlap) * CERVICAL_TRAIN_RATIO))
    more_segmented = rng.sample(_without(segmented, overlap),
                                round(len(segmented) * CERVICAL_TRAIN_RATIO) - len(picked))
    more_boxed = rng.sample(_without(boxed, overlap), round(len(boxed) * CERVICAL_TRAIN_RATIO) - len(picked))
    train = picked + more_segmented + more_boxed
    train += rng.sample(_without(studies, train), round(len(studies) * CERVICAL_TRAIN_RATIO) - len(train))
    return train, picked + more_boxed, picked + more_segmented


def rsna_2022_cervical_spine(raw: Path, public: Path, private: Path) -> None:
    """CT studies of the cervical spine; v1 keeps 10 % of Kaggle's labelled studies as train and makes
    the other 90 % the test set, one answer row per study and target (`<StudyInstanceUID>_<target>`).

    The answers are the test studies melted target by target (all patient_overall rows, then C1, ...);
    public/test.csv is them without `fractured`; the sample predicts 0.5. Train bounding boxes and
    segmentations (`.nii`, copied unread) are kept for train studies only. Each study's DICOM folder
    is copied from Kaggle's train_images/ to public/train_images or public/test_images.
    """
    table = read_exact(raw / "train.csv")
    require_columns(table, CERVICAL_COLUMNS, raw / "train.csv")
    boxes = read_exact(raw / "train_bounding_boxes.csv")
    require_columns(boxes, CERVICAL_BOX_COLUMNS, raw / "train_bounding_boxes.csv")
    segmented = sorted(p.stem for p in (raw / "segmentations").glob("*.nii"))
    boxed = sorted(boxes["StudyInstanceUID"].unique())
    train_ids, boxed_ids, segmented_ids = cervical_train_studies(table["StudyInstanceUID"].tolist(), boxed, segmented)

    is_train = table["StudyInstanceUID"].isin(train_ids)
    answers = table[~is_train].melt(id_vars="StudyInstanceUID", var_name="prediction_type", value_name="fractured")
    answers["row_id"] = answers["StudyInstanceUID"] + "_" + answers["prediction_type"]
    write_csv(table[is_train], public / "train.csv")
    write_csv(boxes[boxes["StudyInstanceUID"].isin(boxed_ids)], public / "train_bounding_boxes.csv")
    write_csv(answers, private / "answers.csv")
    write_csv(answers[["row_id"]].assign(fractured=0.5), public / "sample_submission.csv")
    write_csv(answers.drop(columns=["fractured"]), public / "test.csv")

    copy_files(files_of(segmented_ids, ".nii"), raw / "segmentations", public / "segmentations")
    for part, studies in (("train", table.loc[is_train, "StudyInstanceUID"]),
                          ("test", answers["StudyInstanceUID"].unique())):
        (public / f"{part}_images").mkdir(exist_ok=True)
        for study in studies:
            copy_tree(raw / "train_images" / study, public / f"{part}_images" / study)


# ---------------------------------------------------------------- rsna-breast-cancer-detection

BREAST_COLUMNS = ("site_id", "patient_id", "image_id", "laterality", "view", "age", "cancer", "biopsy",
                  "invasive", "BIRADS", "implant", "density", "machine_id", "difficult_negative_case")
BREAST_TEST_COLUMNS = ("site_id", "patient_id", "image_id", "laterality", "view", "age", "implant", "machine_id")
BREAST_SEED = 42  # v1 splits patients with random_state=42 (not the usual 0)


def _copy_patient_images(rows: pd.DataFrame, raw_images: Path, dst: Path) -> None:
    """`<patient_id>/<image_id>.dcm` for every row, one file at a time, a folder per patient."""
    dst.mkdir(parents=True, exist_ok=True)
    for patient, images in rows.groupby("patient_id", sort=False)["image_id"]:
        copy_files(files_of(images, ".dcm"), raw_images / str(patient), dst / str(patient))


def rsna_breast_cancer(raw: Path, public: Path, private: Path) -> None:
    """Screening mammograms; 10 % of Kaggle's patients (train_test_split of the unique patient_id values
    in order of first appearance, random_state=42) and all their images become the test set.

    public/test.csv lists the test images (Kaggle's test columns plus `prediction_id` =
    `<patient_id>_<laterality>`); the answers hold one row per prediction_id (its first image's label),
    sorted; the sample predicts the train set's cancer rate everywhere.
    """
    table = read_exact(raw / "train.csv")
    require_columns(table, BREAST_COLUMNS, raw / "train.csv")
    train_patients, test_patients = split(table["patient_id"].unique(), random_state=BREAST_SEED)
    train = table[table["patient_id"].isin(train_patients)]
    test = table[table["patient_id"].isin(test_patients)][[*BREAST_TEST_COLUMNS, "cancer"]].copy()
    test["prediction_id"] = test["patient_id"].astype(str) + "_" + test["laterality"]
    answers = test[["prediction_id", "cancer"]].groupby("prediction_id").first().reset_index()
    write_csv(train, public / "train.csv")
    write_csv(test.drop(columns=["cancer"]), public / "test.csv")
    write_csv(answers, private / "answers.csv")
    write_csv(answers.assign(cancer=train["cancer"].mean()), public / "sample_submission.csv")
    _copy_patient_images(train, raw / "train_images", public / "train_images")
    _copy_patient_images(test, raw / "train_images", public / "test_images")


# ---------------------------------------------------------------- rsna-miccai-brain-tumor-radiogenomic-classification


def rsna_miccai_brain_tumor(raw: Path, public: Path, private: Path) -> None:
    """MRI scans (FLAIR, T1w, T1wCE, T2w DICOM series per case); 10 % of Kaggle's labelled cases become
    the test set (random_state=0). Ids are read as text so `00012` keeps its zeros in the files (pandas
    reads them back as numbers when grading, as v1's grader did). Each case folder is copied whole
    from Kaggle's train/ to public/train or public/test; the sample predicts 0.5.
    """
    table = read_exact(raw / "train_labels.csv", dtype={"BraTS21ID": str, "MGMT_value": int})
    require_columns(table, ["BraTS21ID", "MGMT_value"], raw / "train_labels.csv")
    train, test = split(table)
    for part, cases in (("train", train["BraTS21ID"]), ("test", test["BraTS21ID"])):
        (public / part).mkdir(exist_ok=True)
        for case in cases:
            copy_tree(raw / "train" / case, public / part / case)
    write_csv(train, public / "train_labels.csv")
    write_csv(test, private / "test.csv")
    write_csv(test.assign(MGMT_value=0.5), public / "sample_submission.csv")
