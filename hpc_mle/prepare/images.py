"""Preparers of the image-classification competitions: photos, micrographs, scans of documents and leaves.

Each `name(raw, public, private)` turns the extracted Kaggle download in `raw` into the split MLE-bench
v1 makes (facts §4.4). Kaggle keeps most test labels, so, as in v1, a new test set is cut from the
labelled training data with `train_test_split(random_state=0)`. What must match v1 byte for byte are
the CSV files (upstream checks their MD5s): same columns, same row order (the splitter's order where v1
writes the split frames, file order where it filters the original with `isin`), same values and float
format. Images are copied one at a time and never decoded, except where the answers are pixels
(denoising). Where v1 re-zips images it stores them at the top of the archive, sorted by name, as we do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from hpc_mle.prepare.common import (
    copy_files,
    copy_renamed,
    extract_nested,
    files_of,
    one_hot,
    read_csv,
    read_exact,
    require_columns,
    require_files,
    scratch,
    sorted_names,
    split,
    split_names,
    unzipped,
    write_csv,
    zip_flat,
)

AERIAL_CACTUS_TEST_SIZE = 0.19  # v1: about 4000 / (4000 + 17500), the size of Kaggle's own test set
DENOISING_TEST_SIZE = 0.2
DOG_BREEDS = 120


# ---------------------------------------------------------------- aerial-cactus-identification


def aerial_cactus_identification(raw: Path, public: Path, private: Path) -> None:
    """train.csv (id, has_cactus) split 81/19; Kaggle's train.zip re-zipped into train.zip and test.zip."""
    labels = read_csv(raw / "train.csv")
    train, test = split(labels, test_size=AERIAL_CACTUS_TEST_SIZE)
    with scratch(public) as tmp:
        images = extract_nested(raw / "train.zip", tmp) / "train"
        require_files(labels["id"], images)
        zip_flat(train["id"], images, public / "train.zip")
        zip_flat(test["id"], images, public / "test.zip")
    write_csv(train, public / "train.csv")
    write_csv(test.assign(has_cactus=0.5), public / "sample_submission.csv")
    write_csv(test, private / "test.csv")


# ---------------------------------------------------------------- aptos2019-blindness-detection


def aptos2019_blindness_detection(raw: Path, public: Path, private: Path) -> None:
    """train.csv (id_code, diagnosis 0-4) split 90/10; images copied to train_images/ and test_images/."""
    labels = read_csv(raw / "train.csv")
    train, test = split(labels)
    source = raw / "train_images"
    require_files((f"{i}.png" for i in labels["id_code"]), source)
    copy_files((f"{i}.png" for i in train["id_code"]), source, public / "train_images")
    copy_files((f"{i}.png" for i in test["id_code"]), source, public / "test_images")
    write_csv(train, public / "train.csv")
    write_csv(test.drop(columns="diagnosis"), public / "test.csv")
    write_csv(test.assign(diagnosis=0), public / "sample_submission.csv")
    write_csv(test, private / "test.csv")


# ---------------------------------------------------------------- denoising-dirty-documents


def pixel_rows(image: Path) -> pd.DataFrame:
    """One row per pixel, row-major: id `<stem>_<row>_<col>` (1-based), value = grey level / 255."""
    values = np.asarray(Image.open(image).convert("L")) / 255.0
    rows, cols = values.shape
    col_text = [str(c) for c in range(1, cols + 1)]  # a page has ~230,000 pixels: join, not format
    ids = [prefix + c for prefix in (f"{image.stem}_{r}_" for r in range(1, rows + 1)) for c in col_text]
    return pd.DataFrame({"id": ids, "value": values.ravel()})


def denoising_dirty_documents(raw: Path, public: Path, private: Path) -> None:
    """Kaggle's 144 training pages split 80/20; the cleaned test pages become per-pixel answers."""
    with scratch(public) as tmp:
        noisy = extract_nested(raw / "train.zip", tmp) / "train"
        clean = extract_nested(raw / "train_cleaned.zip", tmp) / "train_cleaned"
        train_names, test_names = split_names(sorted_names(noisy), DENOISING_TEST_SIZE)
        require_files(test_names, clean)
        copy_files(train_names, noisy, public / "train")
        copy_files(test_names, noisy, public / "test")
        held_out = set(test_names)
        copy_files([n for n in sorted_names(clean) if n not in held_out], clean, public / "train_cleaned")
        answers = pd.concat([pixel_rows(clean / n) for n in sorted(test_names)], ignore_index=True)
    write_csv(answers, private / "answers.csv")
    write_csv(answers.assign(value=1), public / "sampleSubmission.csv")


# ---------------------------------------------------------------- dog-breed-identification


def breed_columns(sample_submission: Path) -> list[str]:
    """The 120 breeds, in v1's order: Kaggle's sample-submission names, sorted (v1's list is sorted)."""
    breeds = sorted(c for c in read_csv(sample_submission, nrows=0).columns if c != "id")
    if len(breeds) != DOG_BREEDS:
        raise ValueError(f"{sample_submission}: expected {DOG_BREEDS} breed columns after 'id', found "
                         f"{len(breeds)}. Fix: delete {sample_submission.parent} and prepare again.")
    return breeds


def dog_breed_identification(raw: Path, public: Path, private: Path) -> None:
    """labels.csv (id, breed) split 90/10; one-hot answers; the sample gives 1/120 to every breed.

    Known issue kept from v1 (upstream #128): the test images come from Stanford Dogs, whose public
    labels give the answers away.
    """
    labels = read_csv(raw / "labels.csv")
    breeds = breed_columns(raw / "sample_submission.csv")
    train, test = split(labels)
    answers = one_hot(test, "id", "breed", breeds)
    sample = answers.astype({b: np.float64 for b in breeds})
    sample[breeds] = 1 / DOG_BREEDS
    require_files((f"{i}.jpg" for i in labels["id"]), raw / "train")
    copy_files((f"{i}.jpg" for i in train["id"]), raw / "train", public / "train")
    copy_files((f"{i}.jpg" for i in test["id"]), raw / "train", public / "test")
    write_csv(train, public / "labels.csv")
    write_csv(sample, public / "sample_submission.csv")
    write_csv(answers, private / "test.csv")


# ---------------------------------------------------------------- dogs-vs-cats-redux-kernels-edition


def train_names_renumbered(names: list[str]) -> list[str]:
    """cat.<k>.jpg / dog.<k>.jpg numbered from 0 per animal in split order, as v1 renames them."""
    counters = {"cat": 0, "dog": 0}
    renamed = []
    for name in names:
        animal = "cat" if "cat" in name else "dog"
        renamed.append(f"{animal}.{counters[animal]}.jpg")
        counters[animal] += 1
    return renamed


def dogs_vs_cats_redux_kernels_edition(raw: Path, public: Path, private: Path) -> None:
    """Kaggle's 25,000 labelled photos split 90/10; test photos renamed 1.jpg.. so names hide the label.

    As in v1, public/ keeps both the image folders and their zips (train.zip, test.zip).
    """
    with scratch(public) as tmp:
        photos = extract_nested(raw / "train.zip", tmp) / "train"
        train_names, test_names = split_names(sorted(p.name for p in photos.glob("*.jpg")), 0.1)
        train_new = train_names_renumbered(train_names)
        test_new = [f"{i}.jpg" for i in range(1, len(test_names) + 1)]
        copy_renamed(zip(train_names, train_new, strict=True), photos, public / "train")
        copy_renamed(zip(test_names, test_new, strict=True), photos, public / "test")
    zip_flat(train_new, public / "train", public / "train.zip")
    zip_flat(test_new, public / "test", public / "test.zip")
    ids = np.arange(1, len(test_names) + 1)
    write_csv(pd.DataFrame({"id": ids, "label": [int("dog" in n) for n in test_names]}), private / "answers.csv")
    write_csv(pd.DataFrame({"id": ids, "label": 0.5}), public / "sample_submission.csv")


# ---------------------------------------------------------------- histopathologic-cancer-detection


def histopathologic_cancer_detection(raw: Path, public: Path, private: Path) -> None:
    """96x96 lymph-node patches: the new test takes the same share of rows as Kaggle's test had.

    test_ratio = |test/*.tif| / (|train_labels| + |test/*.tif|) (about 0.207); both parts keep the
    order of train_labels.csv. Kaggle's own (unlabelled) test images are not used.
    """
    labels = read_exact(raw / "train_labels.csv")
    require_columns(labels, ["id", "label"], raw / "train_labels.csv")
    n_test = sum(1 for _ in (raw / "test").glob("*.tif"))
    if n_test == 0:
        raise FileNotFoundError(f"{raw / 'test'}: no .tif images; the test share is defined by their count.")
    train_part, test_part = split(labels, test_size=n_test / (len(labels) + n_test))
    train = labels[labels["id"].isin(train_part["id"])]
    test = labels[labels["id"].isin(test_part["id"])]

    copy_files(files_of(train["id"], ".tif"), raw / "train", public / "train")
    copy_files(files_of(test["id"], ".tif"), raw / "train", public / "test")
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
    old_train = read_exact(unzipped(raw, "train.csv"))
    images = unzipped(raw, "images")
    train, test = split(old_train)

    copy_files(files_of(old_train["id"], ".jpg"), images, public / "images")  # the train and test rows
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
    old_train = read_exact(raw / "train.csv")
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


