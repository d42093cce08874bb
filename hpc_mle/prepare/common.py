"""Steps the Kaggle preparers share: reading the raw download, splitting, writing byte-stable files.

Upstream's preparers are the contract (facts §4.4): `train_test_split(..., random_state=0)`, mostly
`test_size=0.1`, files written by pandas without the index. Writing through these helpers keeps
that in one place, so a difference in line ends or float format cannot creep in per competition.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

SEED = 0
TEST_SIZE = 0.1
# A fixed timestamp for files we zip, so the same input gives the same archive bytes.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
# Upstream reads raw CSVs with float_precision="round_trip" (the shortest repr then writes the same
# digits back); pandas >= 3 parses floats exactly by default and deprecates the option.
EXACT_FLOATS = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}


def require_raw(path: Path) -> Path:
    """`path`, or an error that names it when the Kaggle download lacks that file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: expected in the Kaggle download but missing. Fix: delete "
                                f"{path.parent} and prepare again to re-extract the archive.")
    return path


def read_csv(path: Path, **kwargs) -> pd.DataFrame:
    """A raw CSV, with an error that names the file when the download lacks it."""
    return pd.read_csv(require_raw(path), **kwargs)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """As upstream writes: no index, pandas' default float repr, Unix line ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, lineterminator="\n")


def split(frame: pd.DataFrame, test_size: float | int = TEST_SIZE, random_state: int = SEED,
          **kwargs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`train_test_split` as upstream calls it; rows keep the order the splitter gives them."""
    train, test = train_test_split(frame, test_size=test_size, random_state=random_state, **kwargs)
    return train, test


def copy_files(names, src: Path, dst: Path) -> None:
    """Copy files `src/<name>` to `dst/<name>` (folders created), e.g. the images of one split."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(src / name, dst / name)


def copy_renamed(pairs: Iterable[tuple[str, str]], src: Path, dst: Path) -> None:
    """Copy `src/<old>` to `dst/<new>` for each (old, new) file name (folders created)."""
    dst.mkdir(parents=True, exist_ok=True)
    for old, new in pairs:
        shutil.copyfile(src / old, dst / new)


def one_hot(frame: pd.DataFrame, id_column: str, label_column: str, classes: Sequence[str]) -> pd.DataFrame:
    """The id column plus one 0/1 int column per class, in `classes` order (v1's answers format).

    Rows keep the frame's order and index; the files are written without the index.
    """
    labels = frame[label_column].to_numpy(dtype=object)
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise ValueError(f"{label_column} labels {unknown[:5]} are not among the {len(classes)} known classes")
    hot = (labels[:, None] == np.array(classes, dtype=object)[None, :]).astype(np.int64)
    out = pd.DataFrame(hot, columns=list(classes), index=frame.index)
    out.insert(0, id_column, frame[id_column])
    return out


def zip_files(files: dict[str, Path], archive: Path) -> None:
    """A deterministic zip: entries in the given order, fixed timestamps, deflated."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for arcname, path in files.items():
            info = zipfile.ZipInfo(arcname, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())


def extract_nested(archive: Path, dest: Path) -> Path:
    """Unpack an archive found inside the download (Kaggle often zips folders in the zip)."""
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(dest)
    return dest
