"""Preparers of the object-detection competitions (boxes in 2D images, X-ray DICOMs and 3D lidar scenes).

Each `name(raw, public, private)` turns the extracted Kaggle download in `raw` into the split MLE-bench
v1 makes (facts §4.4): the same rows, row order, columns, float format and files in `public/` or
`private/`. Image, DICOM and lidar files are copied (or re-zipped) one at a time; only the index tables
are held in memory.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from hpc_mle.prepare.common import (
    EXACT_FLOATS,
    SEED,
    ZIP_DATE,
    copy_files,
    copy_tree,
    read_csv,
    require_raw,
    split,
    write_csv,
)

# ---------------------------------------------------------------- kuzushiji-recognition

KUZUSHIJI_SAMPLE = "U+003F 1 1 U+FF2F 2 2"  # v1's guess for every page, as in Kaggle's sample


def kuzushiji_recognition(raw: Path, public: Path, private: Path) -> None:
    """10% of Kaggle's labelled pages (train_test_split, random_state=0) become the test set.

    Both page sets are re-zipped from `train_images.zip` member by member (never extracted whole) as
    public train_images.zip and test_images.zip. The gold submission moves each box's corner one pixel
    in (`label x+1 y+1`), as v1's did.
    """
    table = read_csv(raw / "train.csv", **EXACT_FLOATS)
    train, test = split(table)
    write_csv(train, public / "train.csv")
    write_csv(test, private / "test.csv")
    shutil.copyfile(require_raw(raw / "unicode_translation.csv"), public / "unicode_translation.csv")
    with zipfile.ZipFile(require_raw(raw / "train_images.zip")) as source:
        members = {PurePosixPath(n).name: n for n in source.namelist() if not n.endswith("/")}
        for frame, name in ((train, "train_images.zip"), (test, "test_images.zip")):
            _rezip(source, members, [f"{i}.jpg" for i in frame["image_id"]], public / name)
    write_csv(test.assign(labels=KUZUSHIJI_SAMPLE), public / "sample_submission.csv")
    write_csv(test.assign(labels=[_centre_points(v) for v in test["labels"]]), private / "gold_submission.csv")


def _rezip(source: zipfile.ZipFile, members: dict[str, str], names: list[str], archive: Path) -> None:
    """A zip of `names` (flat, fixed timestamps), each streamed from `source` in 1 MiB pieces."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for name in names:
            if name not in members:
                raise FileNotFoundError(f"{source.filename}: no member {name}. Fix: download the competition again")
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            with source.open(members[name]) as src, out.open(info, "w") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)


def _centre_points(labels) -> str:
    """`label X Y W H ...` -> `label X+1 Y+1 ...` (v1's gold: a point just inside each box)."""
    if not isinstance(labels, str):
        return ""
    tokens = labels.split()
    return " ".join(f"{c} {int(x) + 1} {int(y) + 1}" for c, x, y in zip(tokens[0::5], tokens[1::5], tokens[2::5],
                                                                        strict=True))


# ---------------------------------------------------------------- siim-covid19-detection

SIIM_STUDY_LABELS = ["negative", "typical", "indeterminate", "atypical"]  # the study columns, in order


def siim_covid19(raw: Path, public: Path, private: Path) -> None:
    """10% of Kaggle's training studies (train_test_split of train_study_level.csv, random_state=0)
    become the test set, with their images; both tables sorted by id.

    Each study folder (`<study>/<series>/<image>.dcm`) is copied file by file from raw/train to
    public/train or public/test. The answers hold one row per test study (`<label> 1 0 0 1 1`, the
    label of its 1 column) then one per test image (Kaggle's `label` string); the sample predicts
    `negative 1 0 0 1 1` and `none 1 0 0 1 1`.
    """
    studies = read_csv(raw / "train_study_level.csv", **EXACT_FLOATS)
    train_studies, test_studies = split(studies)
    train_studies, test_studies = train_studies.sort_values(by="id"), test_studies.sort_values(by="id")
    write_csv(train_studies, public / "train_study_level.csv")
    images = read_csv(raw / "train_image_level.csv", **EXACT_FLOATS)
    image_study = images["StudyInstanceUID"] + "_study"
    train_images = images[image_study.isin(train_studies["id"])].sort_values(by="id")
    test_images = images[image_study.isin(test_studies["id"])].sort_values(by="id")
    if len(train_images) + len(test_images) != len(images):
        raise ValueError(f"{raw / 'train_image_level.csv'}: {len(images) - len(train_images) - len(test_images)} "
                         f"image rows belong to no study of train_study_level.csv")
    write_csv(train_images, public / "train_image_level.csv")
    for part, frame in (("train", train_studies), ("test", test_studies)):
        for study in frame["id"]:
            study = study.replace("_study", "")
            copy_tree(raw / "train" / study, public / part / study)
    labels = np.array(SIIM_STUDY_LABELS)[test_studies.iloc[:, 1:].to_numpy().argmax(axis=1)]
    answers = pd.DataFrame({"id": [*test_studies["id"], *test_images["id"]],
                            "PredictionString": [f"{label} 1 0 0 1 1" for label in labels] + list(test_images["label"])})
    write_csv(answers, private / "test.csv")
    sample = ["negative 1 0 0 1 1"] * len(test_studies) + ["none 1 0 0 1 1"] * len(test_images)
    write_csv(pd.DataFrame({"id": answers["id"], "PredictionString": sample}), public / "sample_submission.csv")


# ---------------------------------------------------------------- vinbigdata-chest-xray-abnormalities-detection

VINBIG_NO_FINDING = 14  # class_id of "No finding": v1 gives it the box (0, 0, 1, 1)


def vinbigdata_chest_xray(raw: Path, public: Path, private: Path) -> None:
    """10% of Kaggle's training images (train_test_split of the unique image_id values in order of
    first appearance, random_state=0) become the test set; every annotation row of them leaves train.csv.

    The answers keep one box per (image, class): pandas' groupby(...).first() of the radiologists'
    rows (sorted by image_id, class_id), missing boxes 0 and "No finding" (0, 0, 1, 1). DICOMs are
    copied from raw/train one at a time. The sample predicts `14 1 0 0 1 1` for each test image.
    """
    table = read_csv(raw / "train.csv", **EXACT_FLOATS)
    train_ids, test_ids = split(np.asarray(table["image_id"].unique(), dtype=object))  # v1's pandas 2 array
    train = table[table["image_id"].isin(train_ids)]
    answers = table[table["image_id"].isin(test_ids)]
    answers = answers.groupby(by=["image_id", "class_id"]).first().reset_index().fillna(0)
    answers.loc[answers["class_id"] == VINBIG_NO_FINDING, ["x_max", "y_max"]] = 1.0
    gold = answers[["image_id", "class_id", "x_min", "y_min", "x_max", "y_max"]].copy()
    gold["PredictionString"] = [f"{c} 1.0 {x0} {y0} {x1} {y1}" for c, x0, y0, x1, y1 in
                                gold[["class_id", "x_min", "y_min", "x_max", "y_max"]].itertuples(index=False)]
    gold = gold.groupby("image_id")["PredictionString"].agg(" ".join).reset_index()
    write_csv(train, public / "train.csv")
    write_csv(pd.DataFrame({"image_id": test_ids, "PredictionString": "14 1 0 0 1 1"}), public / "sample_submission.csv")
    write_csv(answers, private / "answers.csv")
    write_csv(gold, private / "gold_submission.csv")
    copy_files((f"{i}.dicom" for i in train_ids), raw / "train", public / "train")
    copy_files((f"{i}.dicom" for i in test_ids), raw / "train", public / "test")


# ---------------------------------------------------------------- 3d-object-detection-for-autonomous-vehicles

LYFT_TEST_SIZE = 0.2  # of the logs (scenes): v1 splits by log so correlated frames stay together
LYFT_MAP = "map_raster_palo_alto.png"
LYFT_SHARED = ("attribute.json", "category.json", "sensor.json", "visibility.json")  # copied to both sides


def _load(path: Path) -> list[dict]:
    with open(require_raw(path), encoding="utf-8") as fh:
        return json.load(fh)


def _dump(records, path: Path) -> None:
    """As v1 wrote its tables: json.dump's defaults (ASCII, ', ' and ': ' separators, one line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(records, fh)


def lyft_3d_objects(raw: Path, public: Path, private: Path) -> None:
    """20% of Kaggle's training logs (train_test_split of log.json's tokens, random_state=0) and every
    sample, annotation, image and lidar sweep of them become the test set.

    As v1: samples follow their `scene_token` looked up among the log tokens; the answers add a
    confidence 1.0 before each 8-token box of train.csv; the sample submission is empty; both
    map.json files list the *test* log tokens (v1 edited one shared dict for both); test_data/ has no
    sample_annotation.json or instance.json. Files are copied one at a time.
    """
    data = raw / "train_data"
    logs = _load(data / "log.json")
    log_ids = [log["token"] for log in logs]
    train_logs, test_logs = train_test_split(log_ids, test_size=LYFT_TEST_SIZE, random_state=SEED)
    sides = {"train": set(train_logs), "test": set(test_logs)}
    for side, keep in sides.items():
        _dump([log for log in logs if log["token"] in keep], public / f"{side}_data" / "log.json")
    samples = _load(data / "sample.json")
    stray = [s["token"] for s in samples if s["scene_token"] not in sides["train"] | sides["test"]]
    if stray:
        raise ValueError(f"{data / 'sample.json'}: {len(stray)} sample(s) whose scene_token is no log token "
                         f"(v1 splits samples by it), e.g. {stray[0]}")
    tokens = {side: {s["token"] for s in samples if s["scene_token"] in keep} for side, keep in sides.items()}
    for side, keep in sides.items():
        _dump([s for s in samples if s["scene_token"] in keep], public / f"{side}_data" / "sample.json")
    _lyft_tables(raw, public, private, tokens)
    sample_data = _load(data / "sample_data.json")
    _lyft_sample_data(data, public, sample_data, tokens)
    _lyft_shared(raw, public, train_logs, test_logs)
    _lyft_scenes(data, public, sides)
    _lyft_annotations(data, public, tokens)
    _lyft_copy_sensor_files(raw, public, sample_data, tokens["test"])


def _lyft_tables(raw: Path, public: Path, private: Path, tokens: dict[str, set[str]]) -> None:
    table = read_csv(raw / "train.csv")
    train, test = table[table["Id"].isin(tokens["train"])], table[table["Id"].isin(tokens["test"])]
    if len(train) != len(tokens["train"]) or len(test) != len(tokens["test"]):
        raise ValueError(f"{raw / 'train.csv'}: expected one row per sample of sample.json")
    write_csv(train, public / "train.csv")
    write_csv(test.assign(PredictionString=[_with_confidence(v) for v in test["PredictionString"]]),
              private / "test.csv")
    write_csv(pd.DataFrame({"Id": test["Id"], "PredictionString": ""}), public / "sample_submission.csv")


def _with_confidence(boxes: str) -> str:
    """`cx cy cz w l h yaw class ...` -> `1.0 cx cy cz w l h yaw class ...` (v1's answers)."""
    tokens = boxes.split(" ")
    if len(tokens) % 8:
        raise ValueError(f"train.csv: a PredictionString has {len(tokens)} tokens, not 8 per box")
    return " ".join(" ".join(["1.0", *tokens[i:i + 8]]) for i in range(0, len(tokens), 8))


def _lyft_sample_data(data: Path, public: Path, sample_data: list[dict], tokens: dict[str, set[str]]) -> None:
    """sample_data.json, calibrated_sensor.json (first use order, once each) and ego_pose.json (one per
    sample datum) of each side."""
    by_side: dict[str, list[dict]] = {"train": [], "test": []}
    for datum in sample_data:
        side = "train" if datum["sample_token"] in tokens["train"] else "test"
        if datum["sample_token"] not in tokens[side]:
            raise ValueError(f"{data / 'sample_data.json'}: sample {datum['sample_token']} is in no split")
        by_side[side].append(datum)
    calibrations = {c["token"]: c for c in _load(data / "calibrated_sensor.json")}
    poses = {p["token"]: p for p in _load(data / "ego_pose.json")}
    for side, rows in by_side.items():
        _dump(rows, public / f"{side}_data" / "sample_data.json")
        used = dict.fromkeys(d["calibrated_sensor_token"] for d in rows)
        _dump([calibrations[t] for t in used], public / f"{side}_data" / "calibrated_sensor.json")
        _dump([poses[d["ego_pose_token"]] for d in rows], public / f"{side}_data" / "ego_pose.json")


def _lyft_shared(raw: Path, public: Path, train_logs: list[str], test_logs: list[str]) -> None:
    for side in ("train", "test"):
        (public / f"{side}_maps").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(require_raw(raw / "train_maps" / LYFT_MAP), public / f"{side}_maps" / LYFT_MAP)
        for name in LYFT_SHARED:
            shutil.copyfile(require_raw(raw / "train_data" / name), public / f"{side}_data" / name)
    maps = _load(raw / "train_data" / "map.json")
    if len(maps) != 1:
        raise ValueError(f"{raw / 'train_data' / 'map.json'}: expected one map, found {len(maps)}")
    maps[0]["log_tokens"] = test_logs  # v1 set train's, then test's on the same dict: both files say test
    for side in ("train", "test"):
        _dump(maps, public / f"{side}_data" / "map.json")


def _lyft_scenes(data: Path, public: Path, sides: dict[str, set[str]]) -> None:
    scenes = _load(data / "scene.json")
    for side, keep in sides.items():
        _dump([s for s in scenes if s["log_token"] in keep], public / f"{side}_data" / "scene.json")


def _lyft_annotations(data: Path, public: Path, tokens: dict[str, set[str]]) -> None:
    """Train's sample_annotation.json and instance.json (the test side gets neither, as on Kaggle)."""
    annotations = _load(data / "sample_annotation.json")
    train = [a for a in annotations if a["sample_token"] in tokens["train"]]
    _dump(train, public / "train_data" / "sample_annotation.json")
    used = {a["instance_token"] for a in train}
    del annotations
    _dump([i for i in _load(data / "instance.json") if i["token"] in used], public / "train_data" / "instance.json")


def _lyft_copy_sensor_files(raw: Path, public: Path, sample_data: list[dict], test_tokens: set[str]) -> None:
    """Each camera image and lidar sweep once, to <side>_images/ or <side>_lidar/ by its sample's side."""
    folders = {"jpeg": ("train_images", "images"), "bin": ("train_lidar", "lidar")}
    for side in ("train", "test"):
        for _, kind in folders.values():
            (public / f"{side}_{kind}").mkdir(parents=True, exist_ok=True)
    for datum in sample_data:
        if datum["fileformat"] not in folders:
            raise ValueError(f"sample_data.json: unexpected fileformat {datum['fileformat']!r}")
        source, kind = folders[datum["fileformat"]]
        name = PurePosixPath(datum["filename"]).name
        side = "test" if datum["sample_token"] in test_tokens else "train"
        target = public / f"{side}_{kind}" / name
        if not target.exists():
            shutil.copyfile(require_raw(raw / source / name), target)
