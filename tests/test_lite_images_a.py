"""Five Lite image competitions on synthetic Kaggle-shaped downloads.

Each `make_raw_*` writes what extracting the competition's Kaggle zip gives: the same file names,
nested archives and folders, CSV columns and types, with tiny random images in the real format.
Besides the shared checks (`lite_support.run_checks`), each test recomputes v1's split directly
with scikit-learn, so a changed test size, seed or row order fails here, and checks where every
image went.
"""

from __future__ import annotations

import hashlib
import io
import math
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from lite_support import run_checks
from PIL import Image
from sklearn.model_selection import train_test_split

# ---------------------------------------------------------------- tiny files


def image_bytes(rng: np.random.Generator, fmt: str, shape: tuple[int, ...] = (8, 8, 3)) -> bytes:
    """A small random image encoded as `fmt` (JPEG or PNG); noise makes every file distinct."""
    pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def write_zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def write_folder(folder: Path, members: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in members.items():
        (folder / name).write_bytes(data)


def hex_ids(rng: np.random.Generator, n: int, length: int) -> list[str]:
    ids = {"".join(rng.choice(list("0123456789abcdef"), size=length)) for _ in range(2 * n)}
    return sorted(ids)[:n]


def zip_entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def v1_split(frame, test_size: float):
    """What upstream's preparers call, written out here rather than through our helper."""
    return train_test_split(frame, test_size=test_size, random_state=0)


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


# ---------------------------------------------------------------- aerial-cactus-identification

CACTUS_ROWS = 200


def make_raw_aerial_cactus(raw: Path, rng: np.random.Generator) -> None:
    """train.csv, sample_submission.csv, and train.zip / test.zip with a `train/` / `test/` folder inside."""
    ids = [f"{h}.jpg" for h in hex_ids(rng, CACTUS_ROWS + 20, 32)]
    train_ids, test_ids = ids[:CACTUS_ROWS], ids[CACTUS_ROWS:]
    pd.DataFrame({"id": train_ids, "has_cactus": rng.integers(0, 2, CACTUS_ROWS)}).to_csv(
        raw / "train.csv", index=False)
    pd.DataFrame({"id": test_ids, "has_cactus": 0.5}).to_csv(raw / "sample_submission.csv", index=False)
    write_zip(raw / "train.zip", {f"train/{i}": image_bytes(rng, "JPEG") for i in train_ids})
    write_zip(raw / "test.zip", {f"test/{i}": image_bytes(rng, "JPEG") for i in test_ids})


def test_aerial_cactus_identification(tmp_path):
    cid = "aerial-cactus-identification"
    p = run_checks(cid, make_raw_aerial_cactus, tmp_path, test_rows=math.ceil(CACTUS_ROWS * 0.19),
                   public={"train.csv", "train.zip", "test.zip", "sample_submission.csv"},
                   private={"test.csv"}, sample_score=0.5)
    raw = tmp_path / "data" / cid / "raw"
    labels = read(raw / "train.csv")
    train, test = v1_split(labels, 0.19)
    pd.testing.assert_frame_equal(read(p.public / "train.csv"), train.reset_index(drop=True))
    pd.testing.assert_frame_equal(p.answers(), test.reset_index(drop=True))
    sample = read(p.public / "sample_submission.csv")
    assert list(sample["id"]) == list(test["id"]) and (sample["has_cactus"] == 0.5).all()

    # Kaggle's test.zip is unlabelled and unused; both new zips come from its train.zip, files at the top.
    originals = {name.removeprefix("train/"): data for name, data in zip_entries(raw / "train.zip").items()}
    train_zip, test_zip = zip_entries(p.public / "train.zip"), zip_entries(p.public / "test.zip")
    assert sorted(train_zip) == sorted(train["id"]) and sorted(test_zip) == sorted(test["id"])
    assert all(originals[n] == data for n, data in {**train_zip, **test_zip}.items())
    assert not list(p.public.parent.glob(".scratch-*"))  # the unpacked archive is gone


# ---------------------------------------------------------------- aptos2019-blindness-detection

APTOS_ROWS = 150


def make_raw_aptos(raw: Path, rng: np.random.Generator) -> None:
    """train.csv (id_code, diagnosis), test.csv, sample_submission.csv, train_images/ and test_images/."""
    ids = hex_ids(rng, APTOS_ROWS + 12, 12)
    train_ids, test_ids = ids[:APTOS_ROWS], ids[APTOS_ROWS:]
    pd.DataFrame({"id_code": train_ids, "diagnosis": rng.integers(0, 5, APTOS_ROWS)}).to_csv(
        raw / "train.csv", index=False)
    pd.DataFrame({"id_code": test_ids}).to_csv(raw / "test.csv", index=False)
    pd.DataFrame({"id_code": test_ids, "diagnosis": 0}).to_csv(raw / "sample_submission.csv", index=False)
    write_folder(raw / "train_images", {f"{i}.png": image_bytes(rng, "PNG") for i in train_ids})
    write_folder(raw / "test_images", {f"{i}.png": image_bytes(rng, "PNG") for i in test_ids})


def test_aptos2019_blindness_detection(tmp_path):
    cid = "aptos2019-blindness-detection"
    p = run_checks(cid, make_raw_aptos, tmp_path, test_rows=math.ceil(APTOS_ROWS * 0.1),
                   public={"train.csv", "test.csv", "sample_submission.csv", "train_images", "test_images"},
                   private={"test.csv"}, sample_score=0.0, perfect_score=1.0)
    raw = tmp_path / "data" / cid / "raw"
    train, test = v1_split(read(raw / "train.csv"), 0.1)
    pd.testing.assert_frame_equal(read(p.public / "train.csv"), train.reset_index(drop=True))
    pd.testing.assert_frame_equal(p.answers(), test.reset_index(drop=True))
    assert list(read(p.public / "test.csv").columns) == ["id_code"]
    assert list(read(p.public / "test.csv")["id_code"]) == list(test["id_code"])
    sample = read(p.public / "sample_submission.csv")
    assert list(sample["id_code"]) == list(test["id_code"]) and (sample["diagnosis"] == 0).all()

    originals = folder_files(raw / "train_images")
    train_imgs, test_imgs = folder_files(p.public / "train_images"), folder_files(p.public / "test_images")
    assert set(test_imgs) == {f"{i}.png" for i in test["id_code"]}
    assert set(train_imgs) == {f"{i}.png" for i in train["id_code"]}
    assert all(originals[n] == data for n, data in {**train_imgs, **test_imgs}.items())


# ---------------------------------------------------------------- denoising-dirty-documents

DENOISING_PAGES = 30
PAGE_SHAPES = ((6, 8), (5, 7))  # height x width: two page sizes, as Kaggle's pages come in two


def make_raw_denoising(raw: Path, rng: np.random.Generator) -> None:
    """train.zip, train_cleaned.zip, test.zip (folders inside) of greyscale PNG pages; zipped sample."""
    numbers = sorted(rng.choice(np.arange(1, 217), size=DENOISING_PAGES + 6, replace=False).tolist())
    train_numbers, test_numbers = numbers[:DENOISING_PAGES], numbers[DENOISING_PAGES:]
    shapes = {n: PAGE_SHAPES[n % 2] for n in numbers}
    write_zip(raw / "train.zip", {f"train/{n}.png": image_bytes(rng, "PNG", shapes[n]) for n in train_numbers})
    write_zip(raw / "train_cleaned.zip",
              {f"train_cleaned/{n}.png": image_bytes(rng, "PNG", shapes[n]) for n in train_numbers})
    write_zip(raw / "test.zip", {f"test/{n}.png": image_bytes(rng, "PNG", shapes[n]) for n in test_numbers})
    ids = [f"{n}_{r}_{c}" for n in test_numbers for r in range(1, shapes[n][0] + 1)
           for c in range(1, shapes[n][1] + 1)]
    write_zip(raw / "sampleSubmission.csv.zip",
              {"sampleSubmission.csv": pd.DataFrame({"id": ids, "value": 1}).to_csv(index=False).encode()})


def cleaned_pixels(folder: Path, names: list[str]) -> pd.DataFrame:
    """The expected answers, computed the slow way: pixel by pixel."""
    rows = []
    for name in sorted(names):
        grey = np.array(Image.open(folder / name).convert("L")) / 255.0
        for r in range(grey.shape[0]):
            for c in range(grey.shape[1]):
                rows.append((f"{Path(name).stem}_{r + 1}_{c + 1}", grey[r, c]))
    return pd.DataFrame(rows, columns=["id", "value"])


def test_denoising_dirty_documents(tmp_path):
    cid = "denoising-dirty-documents"
    raw = tmp_path / "data" / cid / "raw"

    def make_and_expect(raw_dir: Path, rng: np.random.Generator) -> None:
        make_raw_denoising(raw_dir, rng)
        with zipfile.ZipFile(raw_dir / "train_cleaned.zip") as zf:
            zf.extractall(tmp_path / "expected")

    # The sample score is RMSE(1, clean pixels); we compute it from the prepared answers below.
    p = run_checks(cid, make_and_expect, tmp_path, public={"train", "train_cleaned", "test", "sampleSubmission.csv"},
                   private={"answers.csv"})
    pages = sorted(Path(n).name for n in zip_entries(raw / "train.zip"))
    train_pages, test_pages = v1_split(pages, 0.2)
    assert len(test_pages) == math.ceil(DENOISING_PAGES * 0.2)
    assert set(folder_files(p.public / "train")) == set(train_pages)
    assert set(folder_files(p.public / "test")) == set(test_pages)
    assert set(folder_files(p.public / "train_cleaned")) == set(train_pages)

    answers = p.answers()
    expected = cleaned_pixels(tmp_path / "expected" / "train_cleaned", test_pages)
    pd.testing.assert_frame_equal(answers, expected)  # every pixel, row-major, pages in name order
    sample = read(p.public / "sampleSubmission.csv")
    assert list(sample["id"]) == list(answers["id"]) and (sample["value"] == 1).all()
    assert (p.private / "answers.csv").read_text().splitlines()[0] == "id,value"

    from hpc_mle import grading
    report = grading.grade_submission(p.sample_path(), cid, p.data_dir)
    assert report.score == round(float(np.sqrt(np.mean((1 - answers["value"]) ** 2))), 5)


# ---------------------------------------------------------------- dog-breed-identification

DOG_ROWS = 300
BREEDS = sorted({f"{a}{s}{b}" for a in ("alpine", "basset", "collie", "terrier", "hound", "spaniel")
                 for s in ("_", "-") for b in ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j")})[:120]


def make_raw_dog_breed(raw: Path, rng: np.random.Generator) -> None:
    """labels.csv (id, breed), sample_submission.csv (id + 120 breeds), train/ and test/ JPEG folders."""
    ids = hex_ids(rng, DOG_ROWS + 10, 32)
    train_ids, test_ids = ids[:DOG_ROWS], ids[DOG_ROWS:]
    pd.DataFrame({"id": train_ids, "breed": rng.choice(BREEDS, DOG_ROWS)}).to_csv(raw / "labels.csv", index=False)
    shuffled = list(rng.permutation(BREEDS))  # the preparer must not depend on the header's order
    sample = pd.DataFrame(1 / 120, index=range(len(test_ids)), columns=shuffled)
    sample.insert(0, "id", test_ids)
    sample.to_csv(raw / "sample_submission.csv", index=False)
    write_folder(raw / "train", {f"{i}.jpg": image_bytes(rng, "JPEG") for i in train_ids})
    write_folder(raw / "test", {f"{i}.jpg": image_bytes(rng, "JPEG") for i in test_ids})


def test_dog_breed_identification(tmp_path):
    cid = "dog-breed-identification"
    assert len(BREEDS) == 120
    p = run_checks(cid, make_raw_dog_breed, tmp_path, test_rows=math.ceil(DOG_ROWS * 0.1),
                   public={"labels.csv", "train", "test", "sample_submission.csv"},
                   private={"test.csv"}, sample_score=4.78749)
    raw = tmp_path / "data" / cid / "raw"
    train, test = v1_split(read(raw / "labels.csv"), 0.1)
    pd.testing.assert_frame_equal(read(p.public / "labels.csv"), train.reset_index(drop=True))

    answers = p.answers()
    assert list(answers.columns) == ["id", *BREEDS] and list(answers["id"]) == list(test["id"])
    assert (answers[BREEDS].dtypes == np.int64).all() and (answers[BREEDS].sum(axis=1) == 1).all()
    assert list(answers[BREEDS].idxmax(axis=1)) == list(test["breed"])
    sample = read(p.public / "sample_submission.csv")
    assert list(sample.columns) == list(answers.columns) and list(sample["id"]) == list(test["id"])
    assert np.allclose(sample[BREEDS].sum(axis=1), 1, atol=1e-6)
    assert (p.public / "sample_submission.csv").read_text().splitlines()[1].endswith(",0.008333333333333333")

    originals = folder_files(raw / "train")
    train_imgs, test_imgs = folder_files(p.public / "train"), folder_files(p.public / "test")
    assert set(test_imgs) == {f"{i}.jpg" for i in test["id"]} and set(train_imgs) == {f"{i}.jpg" for i in train["id"]}
    assert all(originals[n] == data for n, data in {**train_imgs, **test_imgs}.items())

    # v1: a row that does not sum to 1 is refused, not renormalised.
    from hpc_mle import grading
    skewed = sample.copy()
    skewed[BREEDS[0]] = 0.5
    skewed.to_csv(tmp_path / "skewed.csv", index=False)
    report = grading.grade_submission(tmp_path / "skewed.csv", cid, p.data_dir)
    assert not report.valid_submission and "sum to 1" in report.reason


# ---------------------------------------------------------------- dogs-vs-cats-redux-kernels-edition

PER_ANIMAL = 60


def make_raw_dogs_vs_cats(raw: Path, rng: np.random.Generator) -> None:
    """train.zip (train/cat.<k>.jpg, train/dog.<k>.jpg), test.zip (test/<n>.jpg), sample_submission.csv."""
    members = {f"train/{animal}.{k}.jpg": image_bytes(rng, "JPEG")
               for animal in ("cat", "dog") for k in range(PER_ANIMAL)}
    write_zip(raw / "train.zip", members)
    write_zip(raw / "test.zip", {f"test/{n}.jpg": image_bytes(rng, "JPEG") for n in range(1, 21)})
    pd.DataFrame({"id": range(1, 21), "label": 0.5}).to_csv(raw / "sample_submission.csv", index=False)


def test_dogs_vs_cats_redux_kernels_edition(tmp_path):
    cid = "dogs-vs-cats-redux-kernels-edition"
    total = 2 * PER_ANIMAL
    p = run_checks(cid, make_raw_dogs_vs_cats, tmp_path, test_rows=math.ceil(total * 0.1),
                   public={"train", "test", "train.zip", "test.zip", "sample_submission.csv"},
                   private={"answers.csv"}, sample_score=0.69315)
    raw = tmp_path / "data" / cid / "raw"
    originals = {n.removeprefix("train/"): data for n, data in zip_entries(raw / "train.zip").items()}
    train_names, test_names = v1_split(sorted(originals), 0.1)

    answers = p.answers()
    assert list(answers["id"]) == list(range(1, len(test_names) + 1))
    assert list(answers["label"]) == [int(n.startswith("dog")) for n in test_names]
    sample = read(p.public / "sample_submission.csv")
    assert list(sample["id"]) == list(answers["id"]) and (sample["label"] == 0.5).all()

    test_imgs = folder_files(p.public / "test")
    assert test_imgs == zip_entries(p.public / "test.zip")  # zip entries at the top level, same bytes
    assert all(test_imgs[f"{i}.jpg"] == originals[n] for i, n in enumerate(test_names, start=1))
    train_imgs = folder_files(p.public / "train")
    assert train_imgs == zip_entries(p.public / "train.zip")
    cats = [n for n in train_names if n.startswith("cat")]
    dogs = [n for n in train_names if n.startswith("dog")]
    assert set(train_imgs) == {f"cat.{k}.jpg" for k in range(len(cats))} | {f"dog.{k}.jpg" for k in range(len(dogs))}
    assert all(train_imgs[f"cat.{k}.jpg"] == originals[n] for k, n in enumerate(cats))
    assert all(train_imgs[f"dog.{k}.jpg"] == originals[n] for k, n in enumerate(dogs))
    assert not {md5(d) for d in train_imgs.values()} & {md5(d) for d in test_imgs.values()}


# ---------------------------------------------------------------- a broken download


def test_missing_image_is_named_before_anything_is_written(tmp_path):
    from hpc_mle.prepare.images import aptos2019_blindness_detection

    raw, public, private = tmp_path / "raw", tmp_path / "out" / "public", tmp_path / "out" / "private"
    for folder in (raw, public, private):
        folder.mkdir(parents=True)
    make_raw_aptos(raw, np.random.default_rng(1))
    victim = sorted((raw / "train_images").iterdir())[3]
    victim.unlink()
    try:
        aptos2019_blindness_detection(raw, public, private)
    except FileNotFoundError as exc:
        assert victim.name in str(exc) and "prepare again" in str(exc)
    else:
        raise AssertionError("a missing image must fail the preparation")
    assert not any(public.iterdir()) and not any(private.iterdir())


# The synthetic downloads of this module, for tests/synthetic_downloads.py.
MAKERS = {
    "aerial-cactus-identification": make_raw_aerial_cactus,
    "aptos2019-blindness-detection": make_raw_aptos,
    "denoising-dirty-documents": make_raw_denoising,
    "dog-breed-identification": make_raw_dog_breed,
    "dogs-vs-cats-redux-kernels-edition": make_raw_dogs_vs_cats,
}
