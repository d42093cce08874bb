"""Preparers of the molecular competitions: RNA degradation (stanford-covid-vaccine), NMR scalar
couplings (champs-scalar-coupling) and structure images to InChI strings (bms-molecular-translation).

Each `prepare(raw, public, private)` turns the extracted Kaggle download in `raw` into the split
MLE-bench v1 uses, writing into the staging folders it is given (the caller makes it atomic). Row
order, columns and float formats follow v1's output; v1's known defects are kept and flagged in the
specs (champs: the test molecules' structures are left out, upstream #70).
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from hpc_mle.prepare.common import EXACT_FLOATS, read_csv, require_raw, split, write_csv

# ---------------------------------------------------------------- stanford-covid-vaccine

COVID_TARGETS = ["reactivity", "deg_Mg_pH10", "deg_pH10", "deg_Mg_50C", "deg_50C"]
COVID_TEST_SHARE = 0.1
COVID_FLOAT_FORMAT = "%.10f"  # v1 writes the answers and the sample submission with 10 decimals


def _covid_answer_rows(test: pd.DataFrame) -> pd.DataFrame:
    """One row per (sequence, position): the first `seq_scored` positions carry the measured values
    (keep=True); the rest up to `seq_length` are zeros that are never scored (keep=False)."""
    cols: dict[str, list] = {"id_seqpos": [], **{t: [] for t in COVID_TARGETS}, "keep": []}
    for row in test.itertuples(index=False):
        rec = row._asdict()
        scored, length = int(rec["seq_scored"]), int(rec["seq_length"])
        for t in COVID_TARGETS:
            if len(rec[t]) != scored:
                raise ValueError(f"train.json: sequence {rec['id']} has {len(rec[t])} values of {t} for "
                                 f"seq_scored={scored}; the download looks damaged")
        if scored >= length:
            raise ValueError(f"train.json: sequence {rec['id']} scores {scored} of {length} positions; "
                             "v1 expects fewer scored positions than bases")
        cols["id_seqpos"] += [f"{rec['id']}_{j}" for j in range(length)]
        for t in COVID_TARGETS:
            cols[t] += list(rec[t]) + [0.0] * (length - scored)
        cols["keep"] += [True] * scored + [False] * (length - scored)
    return pd.DataFrame(cols)


def stanford_covid_vaccine(raw: Path, public: Path, private: Path) -> None:
    """10% of the train sequences (as a count of all of them), drawn only among those passing the
    signal-to-noise filter (`SN_filter > 0`) with `DataFrame.sample(random_state=0)`, become the test set.

    Train and test keep the download's row order and get a fresh 0-based `index`; the public test
    keeps only Kaggle's test fields. The answers (`private/test.csv`) have one row per base of each
    test sequence with a `keep` flag for the scored positions. Kaggle's `bpps/` folder is not
    copied, as in v1. The JSON files are small (tens of MB): read whole.
    """
    old_train = pd.read_json(require_raw(raw / "train.json"), lines=True)
    old_test = pd.read_json(require_raw(raw / "test.json"), lines=True)
    sample_columns = list(read_csv(raw / "sample_submission.csv", nrows=0).columns)
    n_test = int(len(old_train) * COVID_TEST_SHARE)
    chosen = old_train[old_train["SN_filter"] > 0].sample(n=n_test, random_state=0).index
    is_test = old_train.index.isin(chosen)
    new_train, new_test = old_train[~is_test].copy(), old_train[is_test].copy()

    answers = _covid_answer_rows(new_test)
    answers.to_csv(private / "test.csv", index=False, float_format=COVID_FLOAT_FORMAT)

    new_train["index"] = range(len(new_train))
    new_train.to_json(public / "train.json", orient="records", lines=True)
    public_test = new_test[old_test.columns].copy()
    public_test["index"] = range(len(public_test))
    public_test.to_json(public / "test.json", orient="records", lines=True)

    sample = answers[["id_seqpos", *COVID_TARGETS]].copy()
    sample.loc[:, COVID_TARGETS] = 0.0
    if set(sample.columns) != set(sample_columns):
        raise ValueError(f"sample_submission.csv has columns {sample_columns}, expected {list(sample.columns)}")
    sample.to_csv(public / "sample_submission.csv", index=False, float_format=COVID_FLOAT_FORMAT)


# ---------------------------------------------------------------- champs-scalar-coupling

CHAMPS_TARGET = "scalar_coupling_constant"
# Per-atom / per-molecule tables v1 filters to the new train molecules. structures.csv is one of them:
# v1 leaves the test molecules' geometry out (upstream #70), kept here for comparability.
CHAMPS_TRAIN_ONLY = ["structures", "dipole_moments", "magnetic_shielding_tensors", "mulliken_charges",
                     "potential_energy", "scalar_coupling_contributions"]
CHUNK_ROWS = 1_000_000  # rows per chunk when filtering the large tables (tests shrink it)


def _rows_of_groups(frame: pd.DataFrame, codes: np.ndarray, groups: np.ndarray, n_groups: int) -> pd.DataFrame:
    """The rows of `groups` (indices into the sorted group names), group after group in that order,
    rows of a group in file order: what concatenating pandas' groupby groups in that order gives."""
    rank = np.full(n_groups + 1, -1, dtype=np.int64)  # the last slot: rows without a group (NaN name)
    rank[groups] = np.arange(len(groups))
    row_rank = rank[codes]
    picked = np.flatnonzero(row_rank >= 0)
    return frame.iloc[picked[np.argsort(row_rank[picked], kind="stable")]]


def _filter_by_molecule(src: Path, dst: Path, keep: set[str]) -> set[str]:
    """Copy the rows of `src` whose molecule_name is in `keep` to `dst`, as `to_csv(index=False)` of the
    filtered whole table writes them, reading `CHUNK_ROWS` rows at a time; returns the molecules written.

    If a chunk's column types differ from the first one's (a column parsed as int in one chunk and
    float in another would print differently), the table is read whole instead.
    """
    require_raw(src)
    kept = pd.Index(sorted(keep))
    seen: set[str] = set()
    dtypes = None
    with dst.open("w", encoding="utf-8", newline="") as fh:
        for i, chunk in enumerate(pd.read_csv(src, chunksize=CHUNK_ROWS, **EXACT_FLOATS)):
            if dtypes is None:
                dtypes = chunk.dtypes
            elif not chunk.dtypes.equals(dtypes):
                break
            part = chunk[chunk["molecule_name"].isin(kept)]
            seen.update(part["molecule_name"].unique())
            part.to_csv(fh, index=False, header=i == 0, lineterminator="\n")
        else:
            return seen
    whole = pd.read_csv(src, **EXACT_FLOATS)
    part = whole[whole["molecule_name"].isin(kept)]
    write_csv(part, dst)
    return set(part["molecule_name"].unique())


def _copy_xyz(raw: Path, names: list[str], dst: Path) -> None:
    """`structures/<molecule>.xyz` of each molecule, from the unpacked folder or Kaggle's structures.zip."""
    dst.mkdir(parents=True, exist_ok=True)
    folder = raw / "structures"
    if folder.is_dir() or not (raw / "structures.zip").is_file():
        for name in names:
            shutil.copyfile(require_raw(folder / f"{name}.xyz"), dst / f"{name}.xyz")
        return
    with zipfile.ZipFile(raw / "structures.zip") as zf:
        members = {Path(m).name: m for m in zf.namelist() if m.endswith(".xyz") and not m.startswith("__MACOSX")}
        for name in names:
            if f"{name}.xyz" not in members:
                raise FileNotFoundError(f"{raw / 'structures.zip'}: has no {name}.xyz. Fix: delete {raw} and "
                                        "prepare again to re-download the Kaggle archive.")
            (dst / f"{name}.xyz").write_bytes(zf.read(members[f"{name}.xyz"]))


def champs_scalar_coupling(raw: Path, public: Path, private: Path) -> None:
    """Molecules of train.csv split 90/10 (`train_test_split` over the molecules sorted by name,
    random_state=0); rows grouped molecule after molecule in the split's order.

    Kept as in v1 (upstream #70): structures.csv, structures/ and the other per-molecule tables hold the
    new train molecules only, so the test molecules have no geometry. train.csv (~4.7M rows) is read
    whole; the large per-atom tables are filtered in chunks. Real data: about 2 GB of CSVs and 130k
    small .xyz files in the download, as much again prepared, and ~4 GB of memory.
    """
    train = read_csv(raw / "train.csv", **EXACT_FLOATS)
    names = np.unique(train["molecule_name"].dropna().to_numpy(dtype=str))
    codes = pd.Categorical(train["molecule_name"], categories=names).codes.astype(np.int64)
    codes[codes < 0] = len(names)
    train_groups, test_groups = split(np.arange(len(names)))
    new_train = _rows_of_groups(train, codes, train_groups, len(names))
    answers = _rows_of_groups(train, codes, test_groups, len(names))
    del train
    new_test = answers.drop(columns=[CHAMPS_TARGET])
    sample = new_test[["id"]].copy()
    sample[CHAMPS_TARGET] = 0

    train_names = [str(n) for n in names[train_groups]]
    keep = set(train_names)
    for table in CHAMPS_TRAIN_ONLY:
        seen = _filter_by_molecule(raw / f"{table}.csv", public / f"{table}.csv", keep)
        if seen != keep:
            raise ValueError(f"{table}.csv lacks {len(keep - seen)} of the train molecules; the download "
                             "looks incomplete (v1 requires every train molecule in it)")
    _copy_xyz(raw, train_names, public / "structures")

    write_csv(answers, private / "answers.csv")
    write_csv(new_train, public / "train.csv")
    write_csv(new_test, public / "test.csv")
    write_csv(sample, public / "sample_submission.csv")


# ---------------------------------------------------------------- bms-molecular-translation

BMS_TEST_SIZE = 0.2
BMS_SAMPLE_INCHI = "InChI=1S/H2O/h1H2"  # v1's constant prediction (water) for every test image


def _bms_image(image_id: str) -> Path:
    """Kaggle's layout: `<c0>/<c1>/<c2>/<image_id>.png` from the id's first three characters."""
    return Path(image_id[0], image_id[1], image_id[2], f"{image_id}.png")


def _bms_copy_images(image_ids, src: Path, dst: Path) -> None:
    """Copy each image into the same nested layout under `dst`, one file at a time."""
    for image_id in image_ids:
        rel = _bms_image(image_id)
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(src / rel, dst / rel)
        except FileNotFoundError:
            raise FileNotFoundError(f"{src / rel}: named in train_labels.csv but missing from the download. Fix: "
                                    f"delete {src.parent} and prepare again to re-extract it.") from None


def bms_molecular_translation(raw: Path, public: Path, private: Path) -> None:
    """80/20 split of Kaggle's labelled images (`train_test_split(test_size=0.2, random_state=0)` over
    train_labels.csv); the held-out images move from train/ to public/test/ in the same nested layout.

    Kaggle's own test images and sample submission are not used. train_labels.csv (~2.4M rows) is read
    whole; the ~2.4M images are copied one at a time. extra_approved_InChIs.csv is copied unchanged.
    """
    labels = read_csv(raw / "train_labels.csv")
    new_train, new_test = split(labels, test_size=BMS_TEST_SIZE)
    write_csv(new_train, public / "train_labels.csv")
    write_csv(new_test, private / "test.csv")
    write_csv(new_test.assign(InChI=BMS_SAMPLE_INCHI), public / "sample_submission.csv")
    shutil.copyfile(require_raw(raw / "extra_approved_InChIs.csv"), public / "extra_approved_InChIs.csv")
    _bms_copy_images(new_train["image_id"], raw / "train", public / "train")
    _bms_copy_images(new_test["image_id"], raw / "train", public / "test")
