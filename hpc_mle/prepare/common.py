"""Steps the Kaggle preparers share: reading the raw download, splitting, writing byte-stable files.

Upstream's preparers are the contract (facts §4.4): `train_test_split(..., random_state=0)`, mostly
`test_size=0.1`, files written by pandas without the index. Writing through these helpers keeps
that in one place, so a difference in line ends or float format cannot creep in per competition.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from hpc_mle.files import copy_file

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
    """Copy files `src/<name>` to `dst/<name>` (folders created), e.g. the images of one split.

    Files a killed run already copied whole are skipped (`files.copy_file`), so a resumed preparation
    of a large download copies only the rest.
    """
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        copy_file(src / name, dst / name)


def copy_renamed(pairs: Iterable[tuple[str, str]], src: Path, dst: Path) -> None:
    """Copy `src/<old>` to `dst/<new>` for each (old, new) file name (folders created); resumable as copy_files."""
    dst.mkdir(parents=True, exist_ok=True)
    for old, new in pairs:
        copy_file(src / old, dst / new)


def copy_tree(src: Path, dst: Path) -> None:
    """A whole folder copied file by file; resumable as copy_files (a folder a killed run began is completed)."""
    shutil.copytree(src, dst, copy_function=copy_file, dirs_exist_ok=True)


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


# ---------------------------------------------------------------- reading the download


def read_exact(path: Path, **kwargs) -> pd.DataFrame:
    """A raw CSV parsed as v1's `read_csv` parses it (floats round-trip, so they are written back unchanged)."""
    return read_csv(path, **EXACT_FLOATS, **kwargs)


def zip_member(zf: zipfile.ZipFile, name: str) -> str:
    """The archive entry whose file name is `name` (Kaggle sometimes nests it in a folder)."""
    for member in zf.namelist():
        if PurePosixPath(member).name == name and not member.startswith("__MACOSX"):
            return member
    raise FileNotFoundError(f"{zf.filename}: has no entry '{name}'. Fix: delete the raw folder and "
                            "prepare again to re-download the Kaggle archive.")


def csv_in_download(raw: Path, name: str, archive: str | None = None, **kwargs) -> pd.DataFrame:
    """`raw/<name>` if extracted, else the entry `name` of the zip `raw/<archive>` read in place
    (Kaggle ships big tables zipped inside the download; reading the entry saves unpacking it)."""
    if (raw / name).is_file() or archive is None or not (raw / archive).is_file():
        return read_csv(raw / name, **kwargs)
    with zipfile.ZipFile(raw / archive) as zf, zf.open(zip_member(zf, name)) as fh:
        return pd.read_csv(fh, **kwargs)


def raw_csv(raw: Path, name: str, archive: str | None = None) -> pd.DataFrame:
    """`raw/<name>` or the same entry of Kaggle's nested zip, parsed as v1 parses it (exact floats)."""
    return csv_in_download(raw, name, archive, **EXACT_FLOATS)


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


@contextmanager
def scratch(public: Path) -> Iterator[Path]:
    """A folder beside `public/` for unpacked archives: same disk, gone when the preparer ends."""
    with tempfile.TemporaryDirectory(dir=public.parent, prefix=".scratch-") as tmp:
        yield Path(tmp)


def require_columns(frame: pd.DataFrame, expected: Iterable[str], path: Path) -> None:
    """Fail early, naming the file, when the download's columns are not the ones v1 was built on."""
    expected = list(expected)
    if list(frame.columns) != expected:
        raise ValueError(f"{path}: columns {list(frame.columns)} differ from the expected {expected}. "
                         "Fix: re-download the competition; Kaggle may have changed the files.")


# ---------------------------------------------------------------- folders of files (images, audio, scans)


def require_files(names: Iterable[str], folder: Path) -> None:
    """Fail before writing anything when the download lacks files that the labels name."""
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: {len(missing)} file(s) named in the labels are missing, e.g. "
                                f"{missing[0]}. Fix: delete {folder.parent} and prepare again to re-extract it.")


def files_of(ids: Iterable[str], suffix: str) -> list[str]:
    """File names `<id><suffix>` of the given ids, in their order."""
    return [f"{i}{suffix}" for i in ids]


def sorted_names(folder: Path, pattern: str = "*.png") -> list[str]:
    """Names of the files in `folder` matching `pattern`, sorted (v1 lists folders sorted)."""
    return sorted(p.name for p in folder.glob(pattern))


def split_names(names: list[str], test_size: float) -> tuple[list[str], list[str]]:
    """v1 splits a sorted list of file paths; a frame of the names gives the same permutation."""
    train, test = split(pd.DataFrame({"name": names}), test_size=test_size)
    return train["name"].tolist(), test["name"].tolist()


def zip_flat(names: Iterable[str], folder: Path, archive: Path) -> None:
    """Zip `folder/<name>` as top-level entries, sorted: v1's archives have no folder inside."""
    zip_files({name: folder / name for name in sorted(names)}, archive)


# ---------------------------------------------------------------- 7z archives (py7zr, as v1)


def extract_7z(archive: Path, dest: Path, members: Iterable[str] | None = None) -> Path:
    """Unpack a 7z archive of the download (all of it, or only `members`) into `dest`."""
    import py7zr

    dest.mkdir(parents=True, exist_ok=True)
    with py7zr.SevenZipFile(require_raw(archive), "r") as sz:
        sz.extract(path=dest, targets=list(members) if members is not None else None)
    return dest


def sevenzip_files(files: dict[str, Path], archive: Path) -> None:
    """A 7z archive holding `files` ({entry name: file}), one file read at a time (v1 writes 7z with py7zr)."""
    import py7zr

    archive.parent.mkdir(parents=True, exist_ok=True)
    with py7zr.SevenZipFile(archive, "w") as sz:
        for arcname, path in files.items():
            sz.write(path, arcname)
