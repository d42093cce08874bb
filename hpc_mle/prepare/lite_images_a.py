"""Preparers of five MLE-bench Lite image competitions, reproducing upstream v1's splits.

Kaggle keeps the test labels of these competitions, so, as in v1, a new test set is cut from the
labelled training data with `train_test_split(random_state=0)` (facts §4.4). What must match v1
byte for byte are the CSV files (upstream checks their MD5s): same columns, same row order (the
splitter's order, never re-sorted), same values and float format. Images are copied unchanged; only
denoising decodes its cleaned test images, because its answers are their pixels.

Where v1 re-zips images (aerial-cactus, dogs-vs-cats), it stores the files at the top of the archive
(no folder inside), and so do we; the entries are sorted by name so the same input gives the same
archive. Nested Kaggle archives are unpacked into a hidden scratch folder that is removed afterwards.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from hpc_mle.prepare.common import (
    copy_files,
    copy_renamed,
    extract_nested,
    one_hot,
    read_csv,
    split,
    write_csv,
    zip_files,
)

AERIAL_CACTUS_TEST_SIZE = 0.19  # v1: about 4000 / (4000 + 17500), the size of Kaggle's own test set
DENOISING_TEST_SIZE = 0.2
DOG_BREEDS = 120


# ---------------------------------------------------------------- shared steps


@contextmanager
def scratch(public: Path) -> Iterator[Path]:
    """A folder beside `public/` for unpacked archives: same disk, gone when the preparer ends."""
    with tempfile.TemporaryDirectory(dir=public.parent, prefix=".scratch-") as tmp:
        yield Path(tmp)


def require_files(names: Iterable[str], folder: Path) -> None:
    """Fail before writing anything when the download lacks images that the labels name."""
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: {len(missing)} image(s) named in the labels are missing, e.g. "
                                f"{missing[0]}. Fix: delete {folder.parent} and prepare again to re-extract it.")


def zip_flat(names: Iterable[str], folder: Path, archive: Path) -> None:
    """Zip `folder/<name>` as top-level entries, sorted: v1's archives have no folder inside."""
    zip_files({name: folder / name for name in sorted(names)}, archive)


def split_names(names: list[str], test_size: float) -> tuple[list[str], list[str]]:
    """v1 splits a sorted list of file paths; a frame of the names gives the same permutation."""
    train, test = split(pd.DataFrame({"name": names}), test_size=test_size)
    return train["name"].tolist(), test["name"].tolist()


def png_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.png"))


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
        train_names, test_names = split_names(png_names(noisy), DENOISING_TEST_SIZE)
        require_files(test_names, clean)
        copy_files(train_names, noisy, public / "train")
        copy_files(test_names, noisy, public / "test")
        held_out = set(test_names)
        copy_files([n for n in png_names(clean) if n not in held_out], clean, public / "train_cleaned")
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
