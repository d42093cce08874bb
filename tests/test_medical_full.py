"""Full-benchmark medical-image and radio-telescope competitions on synthetic Kaggle-shaped downloads.

rsna-2022-cervical-spine-fracture-detection, rsna-breast-cancer-detection,
rsna-miccai-brain-tumor-radiogenomic-classification and seti-breakthrough-listen. Each `make_*` writes
what extracting the Kaggle zip gives: the same file names, folder layout and columns, with real files
in the real formats (8x8-pixel DICOMs written and read by pydicom, a NIfTI-1 volume, float16 .npy
cadences) and a few dozen rows. `lite_support.run_checks` prepares each once with the real preparer and
checks layout, leaks, grading and medals; the extra asserts pin v1's split and grader quirks.
"""

from __future__ import annotations

import io
import random
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from lite_support import Prepared, run_checks
from sklearn.model_selection import train_test_split
from test_fuzz_grading import fuzz_problems, structural_mutations, value_mutations

from hpc_mle import grading

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MAMMOGRAPHY_STORAGE = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray Image Storage (presentation)
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
UID_ROOT = "1.2.826.0.1.3680043.8.498"  # a test root; each file gets <root>.<serial>


def dicom_bytes(patient: str, number: int, sop_class: str, modality: str, rng: np.random.Generator) -> bytes:
    """A Part-10 DICOM file with an 8x8 16-bit monochrome image, written with pydicom's own API."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    instance = f"{UID_ROOT}.{int(rng.integers(1, 10**12))}"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, instance
    ds.PatientID, ds.Modality, ds.InstanceNumber = patient, modality, number
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = rng.integers(0, 4096, size=(8, 8), dtype=np.uint16).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def read_dicom(path: Path):
    """The file as pydicom reads it, with its pixels decoded (so it is a real, complete image)."""
    ds = pydicom.dcmread(path)
    assert ds.pixel_array.shape == (8, 8)
    return ds


def _grade(p: Prepared, frame: pd.DataFrame, tmp: Path) -> grading.CompetitionReport:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "sub.csv"
    frame.to_csv(path, index=False)
    return grading.grade_submission(path, p.spec.id, p.data_dir)


def fuzz(p: Prepared, tmp: Path, n: int = 30) -> None:
    """The grading fuzz's mutations of the sample: never a grader error, and every one invalid with a
    reason (none of these four v1 graders accepts fewer, extra, repeated or unknown ids)."""
    tmp.mkdir()
    ids, cols = list(p.spec.submission.id_columns), list(p.spec.submission.answer_columns)
    every = {m.__name__ for m in structural_mutations(ids, cols) + value_mutations(p.spec.metric.name, cols)}
    problems = fuzz_problems(p, p.spec.id, tmp, cols, every, n)
    assert not problems, problems[:5]


# ---------------------------------------------------------------- rsna-2022-cervical-spine-fracture-detection

CERVICAL = "rsna-2022-cervical-spine-fracture-detection"
TARGETS = ["patient_overall", *(f"C{i}" for i in range(1, 8))]


def nifti_bytes(labels: np.ndarray) -> bytes:
    """A single-file NIfTI-1 volume (`.nii`: 348-byte header, empty extension, uint8 voxels)."""
    header = bytearray(348)
    struct.pack_into("<i", header, 0, 348)  # sizeof_hdr
    struct.pack_into("<8h", header, 40, 3, *labels.shape, 1, 1, 1, 1)  # dim
    struct.pack_into("<hh", header, 70, 2, 8)  # datatype DT_UINT8, bitpix
    struct.pack_into("<8f", header, 76, 1.0, 1.0, 1.0, 1.0, 0, 0, 0, 0)  # pixdim (qfac 1, 1 mm voxels)
    struct.pack_into("<f", header, 108, 352.0)  # vox_offset
    struct.pack_into("<f", header, 112, 1.0)  # scl_slope
    header[344:348] = b"n+1\0"
    return bytes(header) + b"\0\0\0\0" + labels.astype(np.uint8).tobytes(order="F")


def read_nifti(data: bytes) -> np.ndarray:
    """The voxels of `nifti_bytes`'s files, read back through the header's own fields."""
    assert struct.unpack_from("<i", data, 0)[0] == 348 and data[344:348] == b"n+1\0"
    ndim, *dims = struct.unpack_from("<8h", data, 40)
    assert struct.unpack_from("<hh", data, 70) == (2, 8)
    offset = int(struct.unpack_from("<f", data, 108)[0])
    shape = tuple(dims[:ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=offset, count=int(np.prod(shape))).reshape(shape, order="F")


def make_cervical(raw: Path, rng: np.random.Generator) -> None:
    """40 labelled studies (25 boxed, 20 segmented, 10 of them both: v1's round(25 * 0.1) is 2, half to even),
    two CT slices each; Kaggle's own three test studies and sample are there but unused."""
    numbers = rng.choice(np.arange(10_000, 40_000), size=43, replace=False)
    studies = [f"1.2.826.0.1.3680043.{n}" for n in numbers]
    train, kaggle_test = studies[:40], studies[40:]
    labels = (rng.random((40, 7)) < 0.2).astype(int)
    table = pd.DataFrame(labels, columns=TARGETS[1:])
    table.insert(0, "patient_overall", labels.max(axis=1))
    table.insert(0, "StudyInstanceUID", train)
    table.to_csv(raw / "train.csv", index=False)
    order = rng.permutation(40)
    both, boxed_only, segmented_only = order[:10], order[10:25], order[25:35]
    boxes = [{"StudyInstanceUID": train[i], "x": round(float(rng.uniform(50, 300)), 1),
              "y": round(float(rng.uniform(50, 300)), 1), "width": round(float(rng.uniform(10, 60)), 2),
              "height": float(rng.integers(10, 60)), "slice_number": int(rng.integers(1, 3))}
             for i in [*both, *boxed_only] for _ in range(int(rng.integers(1, 3)))]
    pd.DataFrame(boxes).to_csv(raw / "train_bounding_boxes.csv", index=False)
    (raw / "segmentations").mkdir()
    for i in [*both, *segmented_only]:
        (raw / "segmentations" / f"{train[i]}.nii").write_bytes(nifti_bytes(rng.integers(0, 8, size=(8, 8, 2))))
    for folder, uids in (("train_images", train), ("test_images", kaggle_test)):
        for uid in uids:
            (raw / folder / uid).mkdir(parents=True)
            for n in (1, 2):
                (raw / folder / uid / f"{n}.dcm").write_bytes(dicom_bytes(uid, n, CT_IMAGE_STORAGE, "CT", rng))
    test_rows = [(f"{u}_{t}", u, t) for u in kaggle_test for t in TARGETS]
    pd.DataFrame(test_rows, columns=["row_id", "StudyInstanceUID", "prediction_type"]).to_csv(raw / "test.csv", index=False)
    pd.DataFrame({"row_id": [r[0] for r in test_rows], "fractured": 0.5}).to_csv(raw / "sample_submission.csv",
                                                                                  index=False)


def expected_cervical_train(studies: list[str], boxed: list[str], segmented: list[str]) -> tuple[list, list, list]:
    """v1's draws, written out again step by step: Random(0); overlap, segmented-only, boxed-only, rest."""
    rng = random.Random(0)
    overlap = [u for u in boxed if u in segmented]
    first = rng.sample(overlap, round(len(overlap) * 0.1))
    seg = rng.sample([u for u in segmented if u not in overlap], round(len(segmented) * 0.1) - len(first))
    box = rng.sample([u for u in boxed if u not in overlap], round(len(boxed) * 0.1) - len(first))
    train = first + seg + box
    train = train + rng.sample([u for u in studies if u not in train], round(len(studies) * 0.1) - len(train))
    return train, first + box, first + seg


def test_cervical(tmp_path):
    p = run_checks(CERVICAL, make_cervical, tmp_path,
                   public={"train.csv", "test.csv", "train_bounding_boxes.csv", "train_images", "test_images",
                           "segmentations", "sample_submission.csv"},
                   private={"answers.csv"}, test_rows=36 * 8, sample_score=0.69315, perfect_score=0.0)
    raw = p.data_dir / CERVICAL / "raw"
    table, boxes = pd.read_csv(raw / "train.csv"), pd.read_csv(raw / "train_bounding_boxes.csv")
    segmented = sorted(x.stem for x in (raw / "segmentations").iterdir())
    train_ids, boxed_ids, seg_ids = expected_cervical_train(table["StudyInstanceUID"].tolist(),
                                                           sorted(boxes["StudyInstanceUID"].unique()), segmented)
    # v1 keeps 10% as TRAIN: 4 of 40 studies; 2 segmented, 2 boxed (Python's round(2.5) = 2), 1 of them both.
    assert (len(train_ids), len(boxed_ids), len(seg_ids), len(set(boxed_ids) & set(seg_ids))) == (4, 2, 2, 1)
    pd.testing.assert_frame_equal(pd.read_csv(p.public / "train.csv"),
                                  table[table["StudyInstanceUID"].isin(train_ids)].reset_index(drop=True))
    pd.testing.assert_frame_equal(pd.read_csv(p.public / "train_bounding_boxes.csv"),
                                  boxes[boxes["StudyInstanceUID"].isin(boxed_ids)].reset_index(drop=True))
    # Answers: the test studies melted target by target (every patient_overall row first), in file order.
    answers = p.answers()
    assert list(answers.columns) == ["StudyInstanceUID", "prediction_type", "fractured", "row_id"]
    test_table = table[~table["StudyInstanceUID"].isin(train_ids)]
    assert answers["prediction_type"].tolist() == [t for t in TARGETS for _ in range(36)]
    assert answers["StudyInstanceUID"].tolist() == test_table["StudyInstanceUID"].tolist() * 8
    assert answers["fractured"].tolist() == test_table[TARGETS].to_numpy().T.ravel().tolist()
    assert list(pd.read_csv(p.public / "test.csv").columns) == ["StudyInstanceUID", "prediction_type", "row_id"]
    assert (p.public / "sample_submission.csv").read_text().splitlines()[1].endswith(",0.5")
    # Files: segmentations of the train draw, each study's DICOM folder from Kaggle's train_images/.
    assert sorted(x.stem for x in (p.public / "segmentations").iterdir()) == sorted(seg_ids)
    nii = (p.public / "segmentations" / f"{seg_ids[0]}.nii").read_bytes()
    assert nii == (raw / "segmentations" / f"{seg_ids[0]}.nii").read_bytes() and read_nifti(nii).shape == (8, 8, 2)
    assert sorted(x.name for x in (p.public / "train_images").iterdir()) == sorted(train_ids)
    assert sorted(x.name for x in (p.public / "test_images").iterdir()) == sorted(test_table["StudyInstanceUID"])
    study = test_table["StudyInstanceUID"].iloc[0]
    assert read_dicom(p.public / "test_images" / study / "2.dcm").PatientID == study

    subs, gold = tmp_path / "subs2", answers[["row_id", "fractured"]]
    # Row order is free; rows are regrouped per study by their ids.
    assert _grade(p, gold.sample(frac=1, random_state=1), subs).score == 0.0
    # A confident miss on patient_overall of one study: 14 * -ln(1e-15) / weight sum, over 36 studies.
    miss = gold.astype({"fractured": float})
    row = miss.index[0]  # patient_overall of the first test study
    truth = int(miss.loc[row, "fractured"])
    miss.loc[row, "fractured"] = 1.0 - truth
    weights = 7 + 7 * truth + sum(1 + v for v in test_table[TARGETS[1:]].iloc[0])
    expected = (7 + 7 * truth) * -np.log(1e-15) / weights / 36
    assert _grade(p, miss, subs).score == pytest.approx(expected, abs=1e-5)
    for value in (1.01, -0.5, np.nan, "high"):
        bad = gold.astype({"fractured": object})
        bad.loc[bad.index[3], "fractured"] = value
        report = _grade(p, bad, subs)
        assert not report.valid_submission and report.reason and not report.grader_error, (value, report.reason)
    fuzz(p, tmp_path / "fuzz")


# ---------------------------------------------------------------- rsna-breast-cancer-detection

BREAST = "rsna-breast-cancer-detection"
BREAST_PATIENTS = 40


def _breast_rows(rng: np.random.Generator, patients: np.ndarray, *, labelled: bool) -> list[dict]:
    rows = []
    for patient in patients:
        site, age, machine = int(rng.integers(1, 3)), rng.choice([np.nan, *range(40, 80)]), int(rng.choice([21, 49]))
        for side in ("L", "R"):
            cancer = int(rng.random() < 0.35)
            for view in ("CC", "MLO"):
                row = {"site_id": site, "patient_id": int(patient), "image_id": int(rng.integers(10**6, 2 * 10**9)),
                       "laterality": side, "view": view, "age": age}
                if labelled:
                    row.update(cancer=cancer, biopsy=cancer, invasive=cancer if rng.random() < 0.5 else 0,
                               BIRADS=rng.choice([np.nan, 0.0, 1.0, 2.0]), implant=0,
                               density=rng.choice(["A", "B", "C", "D", np.nan]), machine_id=machine,
                               difficult_negative_case=bool(rng.random() < 0.1))
                else:
                    row.update(implant=0, machine_id=machine, prediction_id=f"{patient}_{side}")
                rows.append(row)
    return rows


def make_breast(raw: Path, rng: np.random.Generator) -> None:
    """40 patients x 2 breasts x 2 views; Kaggle's one-patient test set and sample are there but unused."""
    patients = rng.choice(np.arange(10_000, 65_000), size=BREAST_PATIENTS + 1, replace=False)
    train = pd.DataFrame(_breast_rows(rng, patients[:-1], labelled=True))
    train.to_csv(raw / "train.csv", index=False)
    test = pd.DataFrame(_breast_rows(rng, patients[-1:], labelled=False))
    test.to_csv(raw / "test.csv", index=False)
    pd.DataFrame({"prediction_id": test["prediction_id"].unique(), "cancer": 0}).to_csv(
        raw / "sample_submission.csv", index=False)
    for folder, frame in (("train_images", train), ("test_images", test)):
        for patient, image in zip(frame["patient_id"], frame["image_id"], strict=True):
            (raw / folder / str(patient)).mkdir(parents=True, exist_ok=True)
            (raw / folder / str(patient) / f"{image}.dcm").write_bytes(
                dicom_bytes(str(patient), int(image) % 1000, MAMMOGRAPHY_STORAGE, "MG", rng))


def test_breast(tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    make_breast(probe, np.random.default_rng(0))
    table = pd.read_csv(probe / "train.csv")
    train_patients, test_patients = train_test_split(table["patient_id"].unique(), test_size=0.1, random_state=42)
    train, test = table[table["patient_id"].isin(train_patients)], table[table["patient_id"].isin(test_patients)]
    # Sample: the train cancer rate c everywhere. ctp = c * positives, cfp = c * negatives:
    # precision = positives / rows, recall = c, F1 = 2PR / (P + R).
    per_breast = test.groupby([test["patient_id"].astype(str) + "_" + test["laterality"]])["cancer"].first()
    c, positives = train["cancer"].mean(), int(per_breast.sum())
    assert positives > 0
    precision = positives / len(per_breast)
    sample_score = round(2 * precision * c / (precision + c), 5)

    p = run_checks(BREAST, make_breast, tmp_path, public={"train.csv", "test.csv", "train_images", "test_images",
                                                          "sample_submission.csv"},
                   private={"answers.csv"}, test_rows=8, sample_score=sample_score, perfect_score=1.0)
    raw = p.data_dir / BREAST / "raw"
    pd.testing.assert_frame_equal(pd.read_csv(p.public / "train.csv"), train.reset_index(drop=True))
    public_test = pd.read_csv(p.public / "test.csv")
    assert list(public_test.columns) == ["site_id", "patient_id", "image_id", "laterality", "view", "age", "implant",
                                         "machine_id", "prediction_id"]
    assert public_test["image_id"].tolist() == test["image_id"].tolist()
    # One answer per breast (its first image's label), sorted by prediction_id as groupby writes them.
    answers = p.answers()
    assert answers["prediction_id"].tolist() == sorted(per_breast.index) and answers["cancer"].tolist() == \
        per_breast.sort_index().tolist()
    assert pd.read_csv(p.sample_path())["cancer"].eq(c).all()
    for part, frame in (("train_images", train), ("test_images", test)):
        got = {f"{x.parent.name}/{x.name}" for x in (p.public / part).rglob("*.dcm")}
        assert got == {f"{pid}/{iid}.dcm" for pid, iid in zip(frame["patient_id"], frame["image_id"], strict=True)}
    pid, iid = test["patient_id"].iloc[0], test["image_id"].iloc[0]
    copied = p.public / "test_images" / str(pid) / f"{iid}.dcm"
    assert copied.read_bytes() == (raw / "train_images" / str(pid) / f"{iid}.dcm").read_bytes()
    assert read_dicom(copied).Modality == "MG"

    subs, gold = tmp_path / "subs2", answers.astype({"cancer": float})
    # v1's quirks: values outside [0, 1] are clipped, not refused; a single NaN makes the score 0 (valid).
    stretched = gold.assign(cancer=gold["cancer"].map({1.0: 7.0, 0.0: -3.0}))
    assert _grade(p, stretched, subs).score == 1.0
    holed = gold.copy()
    holed.loc[holed.index[0], "cancer"] = np.nan
    report = _grade(p, holed, subs)
    assert report.valid_submission and report.score == 0, report
    texted = gold.astype({"cancer": object})
    texted.loc[texted.index[0], "cancer"] = "yes"
    report = _grade(p, texted, subs)
    assert not report.valid_submission and "numeric" in report.reason and not report.grader_error
    fuzz(p, tmp_path / "fuzz")


# ---------------------------------------------------------------- rsna-miccai-brain-tumor-radiogenomic-classification

BRAIN = "rsna-miccai-brain-tumor-radiogenomic-classification"
SERIES = ("FLAIR", "T1w", "T1wCE", "T2w")


def make_brain(raw: Path, rng: np.random.Generator) -> None:
    """40 labelled cases (ids zero-padded to five digits, as Kaggle's), 4 MRI series (FLAIR of two slices)."""
    ids = [f"{n:05d}" for n in sorted(rng.choice(1000, size=42, replace=False))]
    labelled, kaggle_test = ids[:40], ids[40:]
    pd.DataFrame({"BraTS21ID": labelled, "MGMT_value": rng.integers(0, 2, 40)}).to_csv(raw / "train_labels.csv",
                                                                                       index=False)
    pd.DataFrame({"BraTS21ID": kaggle_test, "MGMT_value": 0.5}).to_csv(raw / "sample_submission.csv", index=False)
    for folder, cases in (("train", labelled), ("test", kaggle_test)):
        for case in cases:
            for series in SERIES:
                (raw / folder / case / series).mkdir(parents=True)
                for n in range(1, 3 if series == "FLAIR" else 2):
                    (raw / folder / case / series / f"Image-{n}.dcm").write_bytes(
                        dicom_bytes(case, n, MR_IMAGE_STORAGE, "MR", rng))


def test_brain(tmp_path):
    p = run_checks(BRAIN, make_brain, tmp_path, public={"train_labels.csv", "train", "test", "sample_submission.csv"},
                   private={"test.csv"}, test_rows=4, sample_score=0.5, perfect_score=1.0)
    raw = p.data_dir / BRAIN / "raw"
    table = pd.read_csv(raw / "train_labels.csv", dtype={"BraTS21ID": str})
    train, test = train_test_split(table, test_size=0.1, random_state=0)
    # Ids keep their zeros in every file; the folders are whole copies of Kaggle's train cases.
    assert (p.private / "test.csv").read_text() == test.to_csv(index=False)
    assert (p.public / "train_labels.csv").read_text() == train.to_csv(index=False)
    assert (p.public / "sample_submission.csv").read_text() == test.assign(MGMT_value=0.5).to_csv(index=False)
    assert sorted(x.name for x in (p.public / "test").iterdir()) == sorted(test["BraTS21ID"])
    case = test["BraTS21ID"].iloc[0]
    copied = sorted(x.relative_to(p.public / "test" / case) for x in (p.public / "test" / case).rglob("*.dcm"))
    assert copied == sorted(x.relative_to(raw / "train" / case) for x in (raw / "train" / case).rglob("*.dcm"))
    assert read_dicom(p.public / "test" / case / "T1wCE" / "Image-1.dcm").PatientID == case

    subs, answers = tmp_path / "subs2", pd.read_csv(p.private / "test.csv", dtype={"BraTS21ID": str})
    # v1 reads ids as numbers on both sides: "7" matches "00007".
    unpadded = answers.assign(BraTS21ID=answers["BraTS21ID"].astype(int))
    assert _grade(p, unpadded, subs).score == 1.0
    assert _grade(p, answers.assign(MGMT_value=1 - answers["MGMT_value"]), subs).score == 0.0
    fuzz(p, tmp_path / "fuzz")


# ---------------------------------------------------------------- seti-breakthrough-listen

SETI = "seti-breakthrough-listen"


def _hex_ids(rng: np.random.Generator, n: int) -> list[str]:
    """Kaggle-like ids: 15 hex digits, with at least one letter (so pandas keeps them as text)."""
    ids: set[str] = set()
    while len(ids) < n:
        candidate = "".join(rng.choice(list("0123456789abcdef"), size=15))
        if any(ch.isalpha() for ch in candidate):
            ids.add(candidate)
    return sorted(ids)


def _write_cadences(folder: Path, ids: list[str], rng: np.random.Generator) -> None:
    for file_id in ids:
        (folder / file_id[0]).mkdir(parents=True, exist_ok=True)
        np.save(folder / file_id[0] / f"{file_id}.npy", rng.standard_normal((6, 8, 8)).astype(np.float16))


def make_seti(raw: Path, rng: np.random.Generator) -> None:
    """50 labelled cadences (6 x 8 x 8 float16 instead of 6 x 273 x 256), Kaggle's test, old_leaky_data/."""
    ids = _hex_ids(rng, 60)
    labelled, kaggle_test, old = ids[:50], ids[50:53], ids[53:]
    pd.DataFrame({"id": labelled, "target": (rng.random(50) < 0.3).astype(int)}).to_csv(raw / "train_labels.csv",
                                                                                       index=False)
    pd.DataFrame({"id": kaggle_test, "target": 0.5}).to_csv(raw / "sample_submission.csv", index=False)
    _write_cadences(raw / "train", labelled, rng)
    _write_cadences(raw / "test", kaggle_test, rng)
    (raw / "old_leaky_data").mkdir()
    pd.DataFrame({"id": old, "target": rng.integers(0, 2, len(old))}).to_csv(
        raw / "old_leaky_data" / "train_labels_old.csv", index=False)
    _write_cadences(raw / "old_leaky_data" / "train_old", old, rng)


def test_seti(tmp_path):
    p = run_checks(SETI, make_seti, tmp_path, public={"train_labels.csv", "train", "test", "old_leaky_data",
                                                      "sample_submission.csv"},
                   private={"test.csv"}, test_rows=5, sample_score=0.5, perfect_score=1.0)
    raw = p.data_dir / SETI / "raw"
    train, test = train_test_split(pd.read_csv(raw / "train_labels.csv"), test_size=0.1, random_state=0)
    pd.testing.assert_frame_equal(p.answers(), test.reset_index(drop=True))
    pd.testing.assert_frame_equal(pd.read_csv(p.public / "train_labels.csv"), train.reset_index(drop=True))
    # Test cadences come from Kaggle's train/, in <first character>/<id>.npy; old_leaky_data/ is copied whole.
    got = {f"{x.parent.name}/{x.name}" for x in (p.public / "test").rglob("*.npy")}
    assert got == {f"{i[0]}/{i}.npy" for i in test["id"]}
    first = test["id"].iloc[0]
    cadence = np.load(p.public / "test" / first[0] / f"{first}.npy")
    assert cadence.dtype == np.float16 and cadence.shape == (6, 8, 8)
    np.testing.assert_array_equal(cadence, np.load(raw / "train" / first[0] / f"{first}.npy"))
    old = {x.relative_to(raw / "old_leaky_data") for x in (raw / "old_leaky_data").rglob("*") if x.is_file()}
    assert old == {x.relative_to(p.public / "old_leaky_data") for x in (p.public / "old_leaky_data").rglob("*")
                   if x.is_file()}
    fuzz(p, tmp_path / "fuzz")


# The synthetic downloads of this module, for tests/synthetic_downloads.py.
MAKERS = {
    CERVICAL: make_cervical,
    BREAST: make_breast,
    BRAIN: make_brain,
    SETI: make_seti,
}
