"""Full-benchmark detection competitions on synthetic Kaggle-shaped downloads.

Each `make_*` writes what extracting the competition's Kaggle zip gives (file names, folders, nested
zips, JSON tables, DICOMs pydicom reads, JPEGs Pillow reads) with a few dozen made-up rows;
`lite_support.run_checks` prepares it with the real preparer and checks layout, leaks, grading and
medals. The extra asserts pin v1's split and grader quirks; hand-computed metric cases are in
tests/test_box_metrics.py.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
from lite_support import Prepared, run_checks
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from sklearn.model_selection import train_test_split
from test_fuzz_grading import mutations_for

from hpc_mle import grading
from hpc_mle.prepare import prepare


def _grade(p: Prepared, frame: pd.DataFrame, tmp: Path, mode: str = "v1") -> grading.CompetitionReport:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "sub.csv"
    frame.to_csv(path, index=False)
    return grading.grade_submission(path, p.spec.id, p.data_dir, mode)


def fuzz(p: Prepared, tmp: Path, valid_ok: set[str] = frozenset(), n: int = 40) -> None:
    """The grading fuzz's mutations: never a grader error; invalid ones say why; valid only where v1 is lax."""
    tmp.mkdir()
    sample = pd.read_csv(p.sample_path())
    cols = grading.scored_columns(p.spec, p.answers())
    failures = []
    for i, (kind, content) in enumerate(mutations_for(p.spec, sample, cols)):
        if i >= n:
            break
        path = tmp / f"{i}.csv"
        path.write_bytes(content)
        report = grading.grade_submission(path, p.spec.id, p.data_dir)
        if report.grader_error or (report.valid_submission and kind not in valid_ok) \
                or (not report.valid_submission and not report.reason):
            failures.append((kind, report.reason))
    assert not failures, failures[:5]


def _jpeg(rng: np.random.Generator) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(out, format="JPEG")
    return out.getvalue()


def _hex(rng: np.random.Generator, n: int) -> str:
    return "".join(rng.choice(list("0123456789abcdef"), n))


def _dicom(path: Path, rng: np.random.Generator, **uids: str) -> None:
    """An 8x8 monochrome DICOM file (explicit little endian) that pydicom reads back."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = uids.get("SOPInstanceUID", generate_uid())
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID
    for key, value in uids.items():
        setattr(ds, key, value)
    ds.Modality, ds.PatientID = "DX", _hex(rng, 8)
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = rng.integers(0, 4096, (8, 8)).astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


# ---------------------------------------------------------------- kuzushiji-recognition

KUZUSHIJI = "kuzushiji-recognition"
KZ_CODES = ["U+306F", "U+304C", "U+3044", "U+306B", "U+3057"]


def _kz_labels(rng: np.random.Generator) -> str:
    groups = [f"{rng.choice(KZ_CODES)} {rng.integers(20, 900)} {rng.integers(20, 1400)} "
              f"{rng.integers(20, 90)} {rng.integers(20, 90)}" for _ in range(int(rng.integers(1, 6)))]
    return " ".join(groups)


def make_kuzushiji(raw: Path, rng: np.random.Generator) -> None:
    pages = [f"2000030{k:02d}_{j:05d}" for k in range(3) for j in range(10)]
    pd.DataFrame({"image_id": pages, "labels": [_kz_labels(rng) for _ in pages]}).to_csv(raw / "train.csv", index=False)
    for name, ids in (("train_images.zip", pages), ("test_images.zip", ["test_00001", "test_00002"])):
        with zipfile.ZipFile(raw / name, "w") as zf:
            for i in ids:
                zf.writestr(f"{i}.jpg", _jpeg(rng))
    pd.DataFrame({"Unicode": KZ_CODES, "char": list("はがいにし")}).to_csv(raw / "unicode_translation.csv", index=False)
    pd.DataFrame({"image_id": ["test_00001", "test_00002"], "labels": "U+003F 1 1 U+FF2F 2 2"}).to_csv(
        raw / "sample_submission.csv", index=False)


def test_kuzushiji(tmp_path):
    p = run_checks(KUZUSHIJI, make_kuzushiji, tmp_path,
                   public={"train.csv", "unicode_translation.csv", "train_images.zip", "test_images.zip",
                           "sample_submission.csv"},
                   private={"test.csv", "gold_submission.csv"}, test_rows=3, sample_score=0.0, perfect_score=1.0)
    raw = pd.read_csv(p.data_dir / KUZUSHIJI / "raw" / "train.csv")
    want_train, want_test = train_test_split(raw, test_size=0.1, random_state=0)
    pd.testing.assert_frame_equal(p.answers(), want_test.reset_index(drop=True))
    with zipfile.ZipFile(p.public / "test_images.zip") as zf:
        assert zf.namelist() == [f"{i}.jpg" for i in want_test["image_id"]]
        Image.open(io.BytesIO(zf.read(zf.namelist()[0]))).verify()
    with zipfile.ZipFile(p.public / "train_images.zip") as zf:
        assert len(zf.namelist()) == len(want_train)
    gold = pd.read_csv(p.private / "gold_submission.csv")
    first = want_test["labels"].iloc[0].split()
    assert gold["labels"].iloc[0].split()[:3] == [first[0], str(int(first[1]) + 1), str(int(first[2]) + 1)]

    subs = tmp_path / "subs2"
    # A missing labels cell is "no prediction" (valid); a page's characters out of order still count.
    none = gold.assign(labels=np.nan)
    assert _grade(p, none, subs).score == 0.0
    for bad in ("U+306F 10", "U+306F ten 20", "U+306F 1 1 "):
        report = _grade(p, gold.assign(labels=bad), subs)
        assert not report.valid_submission and not report.grader_error and report.reason, (bad, report)
    fuzz(p, tmp_path / "fuzz")


# ---------------------------------------------------------------- siim-covid19-detection

SIIM = "siim-covid19-detection"
SIIM_COLUMNS = ["Negative for Pneumonia", "Typical Appearance", "Indeterminate Appearance", "Atypical Appearance"]


def make_siim(raw: Path, rng: np.random.Generator) -> None:
    studies, images = [], []
    for _ in range(30):
        study = _hex(rng, 12)
        flags = np.zeros(4, dtype=int)
        flags[rng.integers(0, 4)] = 1
        studies.append([f"{study}_study", *flags])
        series = _hex(rng, 12)
        for _ in range(int(rng.integers(1, 3))):
            image = _hex(rng, 12)
            _dicom(raw / "train" / study / series / f"{image}.dcm", rng, StudyInstanceUID=generate_uid(),
                   SeriesInstanceUID=generate_uid())
            if flags[0]:
                boxes, label = np.nan, "none 1 0 0 1 1"
            else:
                found = [(rng.uniform(0, 2000), rng.uniform(0, 2000), rng.uniform(100, 900), rng.uniform(100, 900))
                         for _ in range(int(rng.integers(1, 3)))]
                boxes = str([{"x": x, "y": y, "width": w, "height": h} for x, y, w, h in found])
                label = " ".join(f"opacity 1 {x} {y} {x + w} {y + h}" for x, y, w, h in found)
            images.append([f"{image}_image", boxes, label, study])
    pd.DataFrame(studies, columns=["id", *SIIM_COLUMNS]).to_csv(raw / "train_study_level.csv", index=False)
    pd.DataFrame(images, columns=["id", "boxes", "label", "StudyInstanceUID"]).to_csv(
        raw / "train_image_level.csv", index=False)
    test_study, test_series, test_image = _hex(rng, 12), _hex(rng, 12), _hex(rng, 12)
    _dicom(raw / "test" / test_study / test_series / f"{test_image}.dcm", rng, StudyInstanceUID=generate_uid())
    pd.DataFrame({"id": [f"{test_study}_study", f"{test_image}_image"],
                  "PredictionString": ["negative 1 0 0 1 1", "none 1 0 0 1 1"]}).to_csv(
        raw / "sample_submission.csv", index=False)


def _siim_sample_score(answers: pd.DataFrame) -> float:
    """The sample's score by hand: 'negative' and 'none' predicted everywhere with confidence 1.

    AP(label) is the precision at recall 1 of one tied block: negative -> negative studies / studies;
    none -> none images / images; a label never predicted (typical, ..., opacity) scores its truth
    pairs (1, 0) among all pairs with score 0: truths / (truths + rows without one).
    """
    study = answers["id"].str.endswith("_study")
    labels = answers["PredictionString"].str.split().str[0]
    aps = {"negative": (labels[study] == "negative").sum() / study.sum(),
           "none": (labels[~study] == "none").sum() / (~study).sum()}
    boxes = answers["PredictionString"].str.split().str.len() // 6
    for cls in set(labels) - set(aps):
        truths = boxes[labels == cls].sum()
        aps[cls] = truths / (truths + (labels != cls).sum())
    return round(float(np.mean([aps[c] for c in sorted(set(labels))])), 5)


def test_siim(tmp_path):
    raw_dir = tmp_path / "data" / SIIM / "raw"
    probe = tmp_path / "probe"
    probe.mkdir()
    make_siim(probe, np.random.default_rng(0))
    studies = pd.read_csv(probe / "train_study_level.csv")
    want_train, want_test = train_test_split(studies, test_size=0.1, random_state=0)
    images = pd.read_csv(probe / "train_image_level.csv")
    test_images = images[(images["StudyInstanceUID"] + "_study").isin(want_test["id"])].sort_values("id")
    p = run_checks(SIIM, make_siim, tmp_path,
                   public={"train_image_level.csv", "train_study_level.csv", "train", "test", "sample_submission.csv"},
                   private={"test.csv"}, test_rows=3 + len(test_images), perfect_score=1.0)
    answers = p.answers()
    assert list(answers["id"]) == sorted(want_test["id"]) + list(test_images["id"])
    report = grading.grade_submission(p.sample_path(), SIIM, p.data_dir)
    assert report.score == _siim_sample_score(answers)
    # Whole study folders move: public/test/<study>/<series>/<image>.dcm, readable DICOMs.
    study = want_test["id"].iloc[0].replace("_study", "")
    files = sorted((p.public / "test" / study).rglob("*.dcm"))
    assert files and pydicom.dcmread(files[0]).Rows == 8
    assert files[0].read_bytes() == (raw_dir / "train" / files[0].relative_to(p.public / "test")).read_bytes()
    assert sorted(x.name for x in (p.public / "train").iterdir()) == sorted(
        s.replace("_study", "") for s in want_train["id"])
    assert raw_dir.is_dir()
    public_train = pd.read_csv(p.public / "train_study_level.csv")
    assert list(public_train["id"]) == sorted(want_train["id"])

    subs = tmp_path / "subs2"
    # A predicted label the answers never use is ignored (v1 takes the classes from the answers).
    extra = answers.assign(PredictionString=answers["PredictionString"] + " unicorn 0.9 0 0 5 5")
    assert _grade(p, extra, subs).score == 1.0
    for bad in ("opacity 0.5 1 2 3", "opacity high 1 2 3 4", "opacity nan 0 0 1 1"):
        report = _grade(p, answers.assign(PredictionString=bad), subs)
        assert not report.valid_submission and not report.grader_error and report.reason, (bad, report)
    fuzz(p, tmp_path / "fuzz")


# ---------------------------------------------------------------- vinbigdata-chest-xray-abnormalities-detection

VINBIG = "vinbigdata-chest-xray-abnormalities-detection"
VINBIG_CLASSES = ["Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Consolidation"]


def make_vinbig(raw: Path, rng: np.random.Generator) -> None:
    rows = []
    for _ in range(30):
        image = _hex(rng, 32)
        _dicom(raw / "train" / f"{image}.dicom", rng)
        healthy = rng.random() < 0.4
        for rad in ("R8", "R9", "R10"):
            if healthy:
                rows.append([image, "No finding", 14, rad, np.nan, np.nan, np.nan, np.nan])
                continue
            for c in rng.choice(len(VINBIG_CLASSES), size=int(rng.integers(1, 3)), replace=False):
                x, y = rng.integers(0, 2000, 2).astype(float)
                rows.append([image, VINBIG_CLASSES[c], int(c), rad, x, y, x + rng.integers(50, 600), y + rng.integers(50, 600)])
    pd.DataFrame(rows, columns=["image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max"]
                 ).to_csv(raw / "train.csv", index=False)
    test_image = _hex(rng, 32)
    _dicom(raw / "test" / f"{test_image}.dicom", rng)
    pd.DataFrame({"image_id": [test_image], "PredictionString": ["14 1 0 0 1 1"]}).to_csv(
        raw / "sample_submission.csv", index=False)


def test_vinbig(tmp_path):
    p = run_checks(VINBIG, make_vinbig, tmp_path, public={"train.csv", "train", "test", "sample_submission.csv"},
                   private={"answers.csv", "gold_submission.csv"})
    raw = pd.read_csv(p.data_dir / VINBIG / "raw" / "train.csv")
    want_train, want_test = train_test_split(np.asarray(raw["image_id"].unique(), dtype=object), test_size=0.1,
                                             random_state=0)
    answers = p.answers()
    # One box per (image, class): the first radiologist's, sorted; "No finding" gets (0, 0, 1, 1).
    first = raw[raw["image_id"].isin(want_test)].groupby(["image_id", "class_id"]).first().reset_index()
    assert len(answers) == len(first) and list(answers.columns) == list(first.columns)
    healthy = answers[answers["class_id"] == 14]
    assert (healthy[["x_min", "y_min", "x_max", "y_max"]].to_numpy() == [0, 0, 1, 1]).all()
    sample = pd.read_csv(p.sample_path())
    assert list(sample["image_id"]) == list(want_test) and (sample["PredictionString"] == "14 1 0 0 1 1").all()
    assert sorted(x.name for x in (p.public / "test").iterdir()) == sorted(f"{i}.dicom" for i in want_test)
    assert pydicom.dcmread(next((p.public / "train").iterdir())).Rows == 8
    assert len(pd.read_csv(p.public / "train.csv")) == raw["image_id"].isin(want_train).sum()

    subs, gold = tmp_path / "subs2", p.gold()
    # v1 numbers the truth boxes from 0 and pycocotools reads a match to box 0 as none: the first truth
    # box (the first "No finding" here, AP 1/2 over 101 recall points) is never found, even by the gold.
    report = _grade(p, gold, subs)
    assert report.score == round((4 + 51 / 202) / 5, 5) and report.corrected_score == 1.0, report
    # v1 quirk kept: a repeated image row adds its boxes (here a far-off false positive); the set of
    # ids is all v1 checks. The corrected grade refuses the repeat.
    box = answers[answers["class_id"] != 14].iloc[0]
    extra = pd.DataFrame({"image_id": [box["image_id"]], "PredictionString": [f"{box['class_id']} 0.99 9000 9000 9100 9100"]})
    report = _grade(p, pd.concat([gold, extra]), subs)
    assert report.valid_submission and report.score < 1.0, report
    assert report.corrected_valid is False and "repeated" in report.corrected_reason
    for bad in ("3 0.5 1 2 3", "three 0.5 1 2 3 4", "nan 0.5 1 2 3 4", "3 0.5  1 2 3 4"):
        report = _grade(p, gold.assign(PredictionString=bad), subs)
        assert not report.valid_submission and not report.grader_error and report.reason, (bad, report)
    fuzz(p, tmp_path / "fuzz")  # a repeated id drops another: the id sets differ, invalid in v1 too


# ---------------------------------------------------------------- 3d-object-detection-for-autonomous-vehicles

LYFT = "3d-object-detection-for-autonomous-vehicles"
LYFT_CLASSES = ["car", "pedestrian", "bicycle"]


def _lyft_objects(rng: np.random.Generator) -> list[list]:
    return [[round(rng.uniform(900, 1100), 3), round(rng.uniform(1600, 1800), 3), round(rng.uniform(-25, -15), 3),
             round(rng.uniform(0.5, 2.5), 3), round(rng.uniform(0.5, 5), 3), round(rng.uniform(1, 2), 3),
             round(rng.uniform(-3.1, 3.1), 6), str(rng.choice(LYFT_CLASSES))] for _ in range(int(rng.integers(1, 5)))]


def make_lyft(raw: Path, rng: np.random.Generator) -> None:
    data = raw / "train_data"
    for folder in ("train_data", "train_images", "train_lidar", "train_maps", "test_data", "test_images",
                   "test_lidar", "test_maps"):
        (raw / folder).mkdir()
    tables: dict[str, list] = {k: [] for k in ("log", "scene", "sample", "sample_data", "ego_pose", "calibrated_sensor",
                                               "sample_annotation", "instance")}
    rows = []
    for k in range(10):
        log = _hex(rng, 64)
        tables["log"].append({"token": log, "vehicle": f"host-a{k:03d}", "date_captured": "2019-05-24",
                              "location": "Palo Alto", "logfile": f"host-a{k:03d}.bag"})
        tables["scene"].append({"token": log, "log_token": log, "name": f"host-a{k:03d}", "nbr_samples": 3})
        sensors = [_hex(rng, 64) for _ in range(2)]
        for s, sensor in enumerate(sensors):
            tables["calibrated_sensor"].append({"token": sensor, "sensor_token": f"sensor{s}", "translation": [0.0, 0.0, 1.5],
                                                "rotation": [1.0, 0.0, 0.0, 0.0], "camera_intrinsic": []})
        for _ in range(3):
            sample = _hex(rng, 64)
            timestamp = int(rng.integers(1.5e15, 1.6e15))
            tables["sample"].append({"token": sample, "scene_token": log, "timestamp": timestamp, "prev": "", "next": ""})
            objects = _lyft_objects(rng)
            rows.append([sample, " ".join(" ".join(map(str, o)) for o in objects)])
            for o in objects:
                instance = _hex(rng, 64)
                tables["instance"].append({"token": instance, "category_token": o[7], "nbr_annotations": 1})
                tables["sample_annotation"].append({"token": _hex(rng, 64), "sample_token": sample, "instance_token": instance,
                                                    "translation": o[:3], "size": o[3:6], "rotation": [1.0, 0.0, 0.0, 0.0],
                                                    "category_name": o[7]})
            for s, (fmt, folder) in enumerate((("jpeg", "train_images"), ("bin", "train_lidar"))):
                name = f"host-a{k:03d}_{'cam0' if fmt == 'jpeg' else 'lidar1'}_{timestamp}.{fmt}"
                pose = _hex(rng, 64)
                tables["ego_pose"].append({"token": pose, "translation": [1000.0, 1700.0, -20.0], "rotation": [1.0, 0, 0, 0]})
                tables["sample_data"].append({"token": _hex(rng, 64), "sample_token": sample, "ego_pose_token": pose,
                                              "calibrated_sensor_token": sensors[s], "filename": f"{folder[6:]}/{name}",
                                              "fileformat": fmt, "timestamp": timestamp})
                content = _jpeg(rng) if fmt == "jpeg" else rng.normal(size=(16, 5)).astype(np.float32).tobytes()
                (raw / folder / name).write_bytes(content)
    for name, records in tables.items():
        (data / f"{name}.json").write_text(json.dumps(records, indent=4))
    for name, records in (("attribute", [{"token": "a1", "name": "object_action_parked"}]),
                          ("category", [{"token": c, "name": c} for c in LYFT_CLASSES]),
                          ("sensor", [{"token": "sensor0", "channel": "CAM_FRONT"}, {"token": "sensor1", "channel": "LIDAR_TOP"}]),
                          ("visibility", [{"token": "1", "level": "v0-40"}])):
        (data / f"{name}.json").write_text(json.dumps(records, indent=4))
        (raw / "test_data" / f"{name}.json").write_text(json.dumps(records, indent=4))
    (data / "map.json").write_text(json.dumps([{"log_tokens": [log["token"] for log in tables["log"]],
                                                "category": "semantic_prior", "filename": "maps/map_raster_palo_alto.png",
                                                "token": _hex(rng, 32)}], indent=4))
    for side in ("train_maps", "test_maps"):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(raw / side / "map_raster_palo_alto.png")
    pd.DataFrame(rows, columns=["Id", "PredictionString"]).to_csv(raw / "train.csv", index=False)
    pd.DataFrame({"Id": [_hex(rng, 64)], "PredictionString": [""]}).to_csv(raw / "sample_submission.csv", index=False)


def test_lyft(tmp_path):
    p = run_checks(LYFT, make_lyft, tmp_path,
                   public={"train.csv", "sample_submission.csv", "train_data", "test_data", "train_images",
                           "test_images", "train_lidar", "test_lidar", "train_maps", "test_maps"},
                   private={"test.csv"}, test_rows=6, sample_score=0.0, perfect_score=1.0)
    raw = p.data_dir / LYFT / "raw"
    logs = json.loads((raw / "train_data" / "log.json").read_text())
    train_logs, test_logs = train_test_split([log["token"] for log in logs], test_size=0.2, random_state=0)
    # v1 edited one map dict for both sides: both map.json files list the test logs.
    for side in ("train_data", "test_data"):
        assert json.loads((p.public / side / "map.json").read_text())[0]["log_tokens"] == test_logs
    assert [log["token"] for log in json.loads((p.public / "test_data" / "log.json").read_text())] == [
        t for t in (log["token"] for log in logs) if t in test_logs]
    assert not (p.public / "test_data" / "sample_annotation.json").exists()
    assert not (p.public / "test_data" / "instance.json").exists()
    test_samples = {s["token"] for s in json.loads((p.public / "test_data" / "sample.json").read_text())}
    assert set(p.answers()["Id"]) == test_samples
    assert len(list((p.public / "test_images").iterdir())) == 6 and len(list((p.public / "train_lidar").iterdir())) == 24
    pose = json.loads((p.public / "test_data" / "ego_pose.json").read_text())
    assert len(pose) == 12 and (p.public / "test_data" / "ego_pose.json").read_text().startswith('[{"token": ')
    # The answers put a confidence 1.0 before each 8-token box of train.csv.
    train = pd.read_csv(raw / "train.csv").set_index("Id")
    row = p.answers().iloc[0]
    assert row["PredictionString"].split(" ")[:9] == ["1.0", *train.loc[row["Id"], "PredictionString"].split(" ")[:8]]
    assert pd.read_csv(p.sample_path())["PredictionString"].isna().all()

    subs, gold = tmp_path / "subs2", p.answers()
    # A class the sample's truth lacks is never looked at, even with a negative size (v1 built no box).
    ghost = gold.assign(PredictionString=gold["PredictionString"] + " 0.5 1 2 3 -1 1 1 0 truck")
    assert _grade(p, ghost, subs).score == 1.0
    cls = gold["PredictionString"].iloc[0].split(" ")[8]
    for bad in (f"0.5 1 2 3 -1 1 1 0 {cls}", f"0.5 1 2 3 nan 1 1 0 {cls}", f"0.5 1 2 3 1e12 1 1 0.3 {cls}",
                "0.5 1 2 3 1 1 1 inf truck", "0.5 1 2 3 1 1 1 car", "0.5 one 2 3 1 1 1 0 car"):
        bad_sub = gold.copy()
        bad_sub.loc[0, "PredictionString"] = bad
        report = _grade(p, bad_sub, subs)
        assert not report.valid_submission and not report.grader_error and report.reason, (bad, report)
    fuzz(p, tmp_path / "fuzz")


def test_import_upstream_checksums(tmp_path):
    """Upstream's checksums list only top-level data files: kuzushiji's re-zipped pages and the Lyft
    folders (JSON tables, images, lidar) are not in them; what is listed matches after import-upstream."""
    import hashlib

    from test_import_upstream import cli, make_clone, write_upstream_checksums

    from hpc_mle import paths, upstream

    ids, data = [KUZUSHIJI, LYFT], tmp_path / "data"
    for cid, make in ((KUZUSHIJI, make_kuzushiji), (LYFT, make_lyft)):
        raw = paths.raw_dir(cid, data)
        raw.mkdir(parents=True)
        make(raw, np.random.default_rng(0))
        assert prepare(cid, data).action == "prepared"
    clone = make_clone(tmp_path, ids)
    for cid in ids:
        sums = {part: {f.name: hashlib.md5(f.read_bytes()).hexdigest()
                       for f in (paths.prepared_dir(cid, data) / part).iterdir() if f.suffix in (".csv", ".json")}
                for part in ("public", "private")}
        write_upstream_checksums(clone, cid, {**sums, "zip": "f" * 32})
    out = cli("competitions", "import-upstream", str(clone), *[a for c in ids for a in ("-c", c)], "--data-dir", str(data))
    assert out.exit_code == 0, out.output
    assert all(upstream.verify(cid, data).text() == "match" for cid in ids)


MAKERS = {
    KUZUSHIJI: make_kuzushiji,
    SIIM: make_siim,
    VINBIG: make_vinbig,
    LYFT: make_lyft,
}
