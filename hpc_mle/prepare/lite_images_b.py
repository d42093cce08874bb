"""Preparers of five MLE-bench Lite image competitions, reproducing upstream v1's splits.

histopathologic-cancer-detection, leaf-classification, plant-pathology-2020-fgvc7,
ranzcr-clip-catheter-line-classification and siim-isic-melanoma-classification. `raw` holds the
extracted Kaggle zip. The aim is CSVs byte-identical to v1's (facts §4.4): the same split
(`random_state=0`), the same rows in the same order (split order where v1 writes the split frames,
file order where v1 filters the original with `isin`), the same columns and pandas' float repr.
Images, DICOMs and TFRecords are copied as they are, never decoded.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from hpc_mle.prepare import tfrecord
from hpc_mle.prepare.common import (
    EXACT_FLOATS,
    copy_files,
    copy_renamed,
    extract_nested,
    one_hot,
    read_csv,
    split,
    write_csv,
)

# ---------------------------------------------------------------- shared steps


def read_raw(path: Path) -> pd.DataFrame:
    """A raw CSV parsed as v1 parses it."""
    return read_csv(path, **EXACT_FLOATS)


def require_columns(frame: pd.DataFrame, expected: Iterable[str], path: Path) -> None:
    """Fail early, naming the file, when the download's columns are not the ones v1 was built on."""
    expected = list(expected)
    if list(frame.columns) != expected:
        raise ValueError(f"{path}: columns {list(frame.columns)} differ from the expected {expected}. "
                         "Fix: re-download the competition; Kaggle may have changed the files.")


def images_of(ids: Iterable[str], suffix: str) -> list[str]:
    return [f"{i}{suffix}" for i in ids]


def unzipped(raw: Path, name: str) -> Path:
    """`raw/<name>`, extracting `raw/<name>.zip` into `raw` first when only the archive is there."""
    target = raw / name
    if not target.exists():
        archive = raw / f"{name}.zip"
        if not archive.is_file():
            raise FileNotFoundError(f"{raw}: neither {name} nor {archive.name} is in the Kaggle download. "
                                    f"Fix: delete {raw} and prepare again to re-extract the archive.")
        extract_nested(archive, raw)
        if not target.exists():
            raise FileNotFoundError(f"{archive}: does not contain {name}; the download's layout has changed.")
    return target


# ---------------------------------------------------------------- histopathologic-cancer-detection


def histopathologic_cancer_detection(raw: Path, public: Path, private: Path) -> None:
    """96x96 lymph-node patches: the new test takes the same share of rows as Kaggle's test had.

    test_ratio = |test/*.tif| / (|train_labels| + |test/*.tif|) (about 0.207); both parts keep the
    order of train_labels.csv. Kaggle's own (unlabelled) test images are not used.
    """
    labels = read_raw(raw / "train_labels.csv")
    require_columns(labels, ["id", "label"], raw / "train_labels.csv")
    n_test = sum(1 for _ in (raw / "test").glob("*.tif"))
    if n_test == 0:
        raise FileNotFoundError(f"{raw / 'test'}: no .tif images; the test share is defined by their count.")
    train_part, test_part = split(labels, test_size=n_test / (len(labels) + n_test))
    train = labels[labels["id"].isin(train_part["id"])]
    test = labels[labels["id"].isin(test_part["id"])]

    copy_files(images_of(train["id"], ".tif"), raw / "train", public / "train")
    copy_files(images_of(test["id"], ".tif"), raw / "train", public / "test")
    write_csv(train, public / "train_labels.csv")
    write_csv(test.assign(label=0), public / "sample_submission.csv")
    write_csv(test, private / "answers.csv")


# ---------------------------------------------------------------- leaf-classification

# The 99 species, in the column order of Kaggle's sample submission (and of v1's answers).
LEAF_SPECIES = (
    "Acer_Capillipes", "Acer_Circinatum", "Acer_Mono", "Acer_Opalus", "Acer_Palmatum", "Acer_Pictum",
    "Acer_Platanoids", "Acer_Rubrum", "Acer_Rufinerve", "Acer_Saccharinum", "Alnus_Cordata",
    "Alnus_Maximowiczii", "Alnus_Rubra", "Alnus_Sieboldiana", "Alnus_Viridis", "Arundinaria_Simonii",
    "Betula_Austrosinensis", "Betula_Pendula", "Callicarpa_Bodinieri", "Castanea_Sativa",
    "Celtis_Koraiensis", "Cercis_Siliquastrum", "Cornus_Chinensis", "Cornus_Controversa",
    "Cornus_Macrophylla", "Cotinus_Coggygria", "Crataegus_Monogyna", "Cytisus_Battandieri",
    "Eucalyptus_Glaucescens", "Eucalyptus_Neglecta", "Eucalyptus_Urnigera", "Fagus_Sylvatica",
    "Ginkgo_Biloba", "Ilex_Aquifolium", "Ilex_Cornuta", "Liquidambar_Styraciflua",
    "Liriodendron_Tulipifera", "Lithocarpus_Cleistocarpus", "Lithocarpus_Edulis", "Magnolia_Heptapeta",
    "Magnolia_Salicifolia", "Morus_Nigra", "Olea_Europaea", "Phildelphus", "Populus_Adenopoda",
    "Populus_Grandidentata", "Populus_Nigra", "Prunus_Avium", "Prunus_X_Shmittii",
    "Pterocarya_Stenoptera", "Quercus_Afares", "Quercus_Agrifolia", "Quercus_Alnifolia",
    "Quercus_Brantii", "Quercus_Canariensis", "Quercus_Castaneifolia", "Quercus_Cerris",
    "Quercus_Chrysolepis", "Quercus_Coccifera", "Quercus_Coccinea", "Quercus_Crassifolia",
    "Quercus_Crassipes", "Quercus_Dolicholepis", "Quercus_Ellipsoidalis", "Quercus_Greggii",
    "Quercus_Hartwissiana", "Quercus_Ilex", "Quercus_Imbricaria", "Quercus_Infectoria_sub",
    "Quercus_Kewensis", "Quercus_Nigra", "Quercus_Palustris", "Quercus_Phellos",
    "Quercus_Phillyraeoides", "Quercus_Pontica", "Quercus_Pubescens", "Quercus_Pyrenaica",
    "Quercus_Rhysophylla", "Quercus_Rubra", "Quercus_Semecarpifolia", "Quercus_Shumardii",
    "Quercus_Suber", "Quercus_Texana", "Quercus_Trojana", "Quercus_Variabilis", "Quercus_Vulcanica",
    "Quercus_x_Hispanica", "Quercus_x_Turneri", "Rhododendron_x_Russellianum", "Salix_Fragilis",
    "Salix_Intergra", "Sorbus_Aria", "Tilia_Oliveri", "Tilia_Platyphyllos", "Tilia_Tomentosa",
    "Ulmus_Bergmanniana", "Viburnum_Tinus", "Viburnum_x_Rhytidophylloides", "Zelkova_Serrata",
)


def leaf_classification(raw: Path, public: Path, private: Path) -> None:
    """Leaf shape/margin/texture features plus binary leaf images; 10 % of Kaggle's train becomes test.

    The download nests its files as zips (train.csv.zip, images.zip, ...); only the two v1 uses are
    extracted. public/images holds the images of the new train and test rows, none of Kaggle's test.
    Answers are one-hot over the 99 species; the sample gives each species 1/99.
    """
    old_train = read_raw(unzipped(raw, "train.csv"))
    images = unzipped(raw, "images")
    train, test = split(old_train)

    copy_files(images_of(old_train["id"], ".jpg"), images, public / "images")  # the train and test rows
    answers = one_hot(test, "id", "species", LEAF_SPECIES)
    sample = answers.copy()
    sample[list(LEAF_SPECIES)] = 1 / len(LEAF_SPECIES)
    write_csv(train, public / "train.csv")
    write_csv(test.drop(columns=["species"]), public / "test.csv")
    write_csv(sample, public / "sample_submission.csv")
    write_csv(answers, private / "test.csv")


# ---------------------------------------------------------------- plant-pathology-2020-fgvc7

PLANT_LABELS = ("healthy", "multiple_diseases", "rust", "scab")


def plant_pathology_2020_fgvc7(raw: Path, public: Path, private: Path) -> None:
    """Apple-leaf photos; 10 % of Kaggle's train becomes test, and every image gets a new name.

    v1 renames ids so the original name says nothing: new train rows are Train_0.. and test rows
    Test_0.. in split order, and each image is copied under its new name to public/images.
    """
    old_train = read_raw(raw / "train.csv")
    require_columns(old_train, ["image_id", *PLANT_LABELS], raw / "train.csv")
    train, answers = split(old_train)
    new_id = {old: f"Train_{i}" for i, old in enumerate(train["image_id"].unique())}
    new_id |= {old: f"Test_{i}" for i, old in enumerate(answers["image_id"].unique())}
    train = train.assign(image_id=train["image_id"].map(new_id))
    answers = answers.assign(image_id=answers["image_id"].map(new_id))

    copy_renamed(((f"{old}.jpg", f"{new_id[old]}.jpg") for old in old_train["image_id"]),
                 raw / "images", public / "images")
    sample = answers[["image_id"]].assign(**{label: 0.25 for label in PLANT_LABELS})
    write_csv(answers, private / "test.csv")
    write_csv(sample, public / "sample_submission.csv")
    write_csv(answers[["image_id"]], public / "test.csv")
    write_csv(train, public / "train.csv")


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
    old_train = read_raw(raw / "train.csv")
    require_columns(old_train, ["StudyInstanceUID", *RANZCR_LABELS, "PatientID"], raw / "train.csv")
    train, test = split(old_train)
    annotations = read_raw(raw / "train_annotations.csv")
    train_annotations = annotations[annotations["StudyInstanceUID"].isin(train["StudyInstanceUID"])]

    copy_files(images_of(train["StudyInstanceUID"], ".jpg"), raw / "train", public / "train")
    copy_files(images_of(test["StudyInstanceUID"], ".jpg"), raw / "train", public / "test")
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
    old_train = read_raw(raw / "train.csv")
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
        copy_files(images_of(rows["image_name"], ".dcm"), raw / "train", public / part)
        copy_files(images_of(rows["image_name"], ".jpg"), raw / "jpeg" / "train", public / "jpeg" / part)
    copy_siim_tfrecords(tfrecords, public / "tfrecords")
