"""The large image-collection competitions on synthetic Kaggle-shaped downloads (a few dozen 8x8 images each).

Each `make_*` writes what extracting the competition's Kaggle zip gives: the metadata JSONs (COCO-style),
label CSVs, image folders, zips and tars, and cdiscount's BSON, in the real formats (JPEG/PNG that
Pillow reads, BSON that pymongo's reader decodes). `lite_support.run_checks` prepares each with the real
preparer and checks layout, leaks, grading and medals; the extra asserts recompute v1's split here,
independently of the preparer, and pin v1's file names, renumbering and grader quirks.
"""

from __future__ import annotations

import io
import json
import random
import shutil
import tarfile
import zipfile
from pathlib import Path

import bson
import numpy as np
import pandas as pd
import pytest
from lite_support import Prepared, run_checks
from PIL import Image
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split
from test_signals_full import fuzz

from hpc_mle import grading
from hpc_mle.prepare.image_collections import herbarium_2021


def jpeg(rng: np.random.Generator, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def dump(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")  # raw UTF-8, as Kaggle ships it


def grade(p: Prepared, frame: pd.DataFrame, tmp: Path) -> grading.CompetitionReport:
    tmp.mkdir(parents=True, exist_ok=True)
    frame.to_csv(tmp / "sub.csv", index=False)
    return grading.grade_submission(tmp / "sub.csv", p.spec.id, p.data_dir)


def v1_category_split(categories: list[int], test_size: float, small_rule: bool) -> tuple[list[int], list[int]]:
    """v1's per-category split of record positions, written out here: (train in category order, test shuffled)."""
    groups: dict[int, list[int]] = {}
    for i, c in enumerate(categories):
        groups.setdefault(c, []).append(i)
    train, test = [], []
    for rows in groups.values():
        if small_rule and len(rows) == 1:
            a, b = rows, []
        elif small_rule and len(rows) < 5:
            k = max(1, int(len(rows) * test_size))
            a, b = rows[:-k], rows[-k:]
        else:
            a, b = train_test_split(rows, test_size=test_size, random_state=0)
        train += a
        test += b
    random.Random(0).shuffle(test)
    return train, test


def is_image(path: Path) -> bool:
    with Image.open(path) as im:
        return im.size == (8, 8)


# ---------------------------------------------------------------- herbarium 2020 / 2021 (COCO metadata, nested folders)

HERB_COUNTS = {101: 1, 7: 3, 15504: 4, 12: 6, 230: 9, 44: 7, 3: 2}  # 1 and <5 exercise v1's small-category rule


def coco(rng: np.random.Generator, counts: dict[int, int], name_of, image_key: str = "id") -> tuple[list, list]:
    """(annotations, images), records interleaved across categories as Kaggle lists them."""
    cats = [c for c, n in counts.items() for _ in range(n)]
    rng.shuffle(cats)
    annotations, images = [], []
    for i, c in enumerate(cats):
        image_id = 500000 + 7 * i
        annotations.append({"id": image_id, "image_id": image_id, "category_id": int(c), "region_id": i % 3})
        images.append({image_key: image_id, "file_name": name_of(int(c), image_id), "height": 8, "width": 8,
                       "license": 0, "aspect": 0.1 + 0.3 * i, "note": None if i % 2 else "é"})
    return annotations, images


def make_herbarium(raw: Path, rng: np.random.Generator, top: Path, extra_key: str) -> None:
    annotations, images = coco(rng, HERB_COUNTS, lambda c, i: f"images/{c // 100:03d}/{c % 100:02d}/{i}.jpg")
    meta = {"annotations": annotations, "images": images,
            "categories": [{"id": c, "name": f"Acacia ×hybrida {c}", "family": "Fabaceae"} for c in HERB_COUNTS],
            "info": {"year": 2020, "version": "1.0", "scale": 1e20, "tiny": 5e-324, "ok": True}, "licenses": [{"id": 0, "name": "CC BY-NC"}],
            extra_key: [{"id": 0, "name": "New York Botanical Garden"}]}
    dump(meta, top / "train" / "metadata.json")
    for image in images:
        write(top / "train" / image["file_name"], jpeg(rng))
    dump({"images": [{"id": 0, "file_name": "images/000/0.jpg"}], "info": {}, "licenses": []},
         top / "test" / "metadata.json")
    write(top / "test" / "images" / "000" / "0.jpg", jpeg(rng))


def make_herbarium_2020(raw: Path, rng: np.random.Generator) -> None:
    make_herbarium(raw, rng, raw / "nybg2020", "regions")


def make_herbarium_2021(raw: Path, rng: np.random.Generator) -> None:
    make_herbarium(raw, rng, raw, "institutions")


def check_herbarium_v1(p: Prepared, raw_train: Path, public_train: Path, public_test: Path, encoding: str,
                       dropped: str) -> None:
    old = json.loads((raw_train / "metadata.json").read_text(encoding=encoding))
    train, test = v1_category_split([a["category_id"] for a in old["annotations"]], 0.2, small_rule=True)
    new_train = json.loads((public_train / "metadata.json").read_text())
    assert [im["id"] for im in new_train["images"]] == [old["images"][i]["id"] for i in train]
    assert new_train["annotations"] == [old["annotations"][i] for i in train]
    assert set(new_train) == set(old)
    assert (public_train / "metadata.json").read_text().startswith('{\n    "annotations": [\n        {')
    new_test = json.loads((public_test / "metadata.json").read_text())
    assert set(new_test) == {"images", "info", "licenses"} and dropped not in new_test
    assert [im["file_name"] for im in new_test["images"]] == [f"images/000/{k}.jpg" for k in range(len(test))]
    assert [im["id"] for im in new_test["images"]] == [str(k) for k in range(len(test))]
    answers = p.answers()
    assert list(answers["Predicted"]) == [old["annotations"][i]["category_id"] for i in test]
    assert list(answers["Id"]) == list(range(len(test)))
    for k, i in enumerate(test):  # each test image is the train image it came from
        src = raw_train / old["images"][i]["file_name"]
        assert (public_test / "images" / "000" / f"{k}.jpg").read_bytes() == src.read_bytes()
    assert all(is_image(public_train / old["images"][i]["file_name"]) for i in train)
    assert (p.sample_path().read_text().splitlines()[1]) == "0,0"


def herbarium_test_rows() -> int:
    return len(v1_category_split([c for c, n in HERB_COUNTS.items() for _ in range(n)], 0.2, True)[1])


def test_herbarium_2020(tmp_path):
    p = run_checks("herbarium-2020-fgvc7", make_herbarium_2020, tmp_path, public={"nybg2020", "sample_submission.csv"},
                   private={"answers.csv"}, test_rows=herbarium_test_rows(), sample_score=0.0, perfect_score=1.0)
    raw = p.data_dir / p.spec.id / "raw" / "nybg2020" / "train"
    check_herbarium_v1(p, raw, p.public / "nybg2020" / "train", p.public / "nybg2020" / "test", "latin-1", "regions")
    # v1 reads the metadata as Latin-1: "×" (UTF-8 c3 97) comes back as two escaped Latin-1 characters.
    assert "Acacia \\u00c3\\u0097hybrida" in (p.public / "nybg2020" / "train" / "metadata.json").read_text()
    assert {x.name for x in (p.public / "nybg2020").iterdir()} == {"train", "test"}
    answers, subs = p.answers(), tmp_path / "subs"
    # Labels go through int(): 7.0 and "7" are 7; fractional labels are truncated, as v1's int() does.
    as_float = answers.assign(Predicted=answers["Predicted"].astype(float) + 0.4)
    assert grade(p, as_float, subs).score == 1.0
    wrong = answers.assign(Predicted=answers["Predicted"].where(answers.index != 0, 999))
    want = f1_score(answers["Predicted"], wrong["Predicted"], average="macro")
    assert abs(grade(p, wrong, subs).score - round(want, 5)) < 1e-9
    for bad in ("seven", np.nan, np.inf):
        frame = answers.astype({"Predicted": object})
        frame.loc[0, "Predicted"] = bad
        report = grade(p, frame, subs)
        assert not report.valid_submission and not report.grader_error and "integer" in report.reason, report
    fuzz(p, tmp_path / "fuzz")


def test_herbarium_2021(tmp_path):
    p = run_checks("herbarium-2021-fgvc8", make_herbarium_2021, tmp_path,
                   public={"train", "test", "sample_submission.csv"}, private={"answers.csv"},
                   test_rows=herbarium_test_rows(), sample_score=0.0, perfect_score=1.0)
    raw = p.data_dir / p.spec.id / "raw" / "train"
    check_herbarium_v1(p, raw, p.public / "train", p.public / "test", "utf-8", "institutions")
    assert "Acacia \\u00d7hybrida" in (p.public / "train" / "metadata.json").read_text()
    fuzz(p, tmp_path / "fuzz")


# ---------------------------------------------------------------- herbarium-2022 (renumbered train, test list)

HERB22_COUNTS = {0: 2, 15504: 5, 12: 3, 230: 6, 44: 4}


def make_herbarium_2022(raw: Path, rng: np.random.Generator) -> None:
    def name_of(c: int, i: int) -> str:
        return f"{c // 100:03d}/{c % 100:02d}/{c:05d}__{i:06d}.jpg"

    annotations, images = coco(rng, HERB22_COUNTS, name_of, image_key="image_id")
    for a, im in zip(annotations, images, strict=True):
        a["image_id"] = im["image_id"] = im["file_name"].split("/")[-1][:-4]
        a["genus_id"], a["institution_id"] = 1, 0
    meta = {"annotations": annotations, "images": images, "categories": [{"category_id": c} for c in HERB22_COUNTS],
            "genera": [{"genus_id": 1, "genus": "Acacia"}], "distances": [], "licenses": [],
            "institutions": [{"institution_id": 0}]}
    dump(meta, raw / "train_metadata.json")
    for image in images:
        write(raw / "train_images" / image["file_name"], jpeg(rng))
    dump([{"image_id": "test-000000", "file_name": "000/test-000000.jpg"}], raw / "test_metadata.json")
    write(raw / "test_images" / "000" / "test-000000.jpg", jpeg(rng))
    pd.DataFrame({"Id": [0], "Predicted": [42]}).to_csv(raw / "sample_submission.csv", index=False)


def test_herbarium_2022(tmp_path):
    cats = [c for c, n in HERB22_COUNTS.items() for _ in range(n)]
    p = run_checks("herbarium-2022-fgvc9", make_herbarium_2022, tmp_path,
                   public={"train_metadata.json", "test_metadata.json", "train_images", "test_images",
                           "sample_submission.csv"}, private={"answers.csv"},
                   test_rows=len(v1_category_split(cats, 0.2, False)[1]), sample_score=0.0, perfect_score=1.0)
    raw = p.data_dir / p.spec.id / "raw"
    old = json.loads((raw / "train_metadata.json").read_text())
    train, test = v1_category_split([a["category_id"] for a in old["annotations"]], 0.2, small_rule=False)
    new = json.loads((p.public / "train_metadata.json").read_text())
    # Train renumbered per category: <category:05d>__<n:03d>, file <ccc>/<cc>/<id>.jpg.
    first = new["images"][0]
    c = old["annotations"][train[0]]["category_id"]
    assert first["image_id"] == f"{c:05d}__001" and first["file_name"] == f"{c // 100:03d}/{c % 100:02d}/{c:05d}__001.jpg"
    assert (p.public / "train_images" / first["file_name"]).read_bytes() == \
        (raw / "train_images" / old["images"][train[0]]["file_name"]).read_bytes()
    assert [a["category_id"] for a in new["annotations"]] == [old["annotations"][i]["category_id"] for i in train]
    test_meta = json.loads((p.public / "test_metadata.json").read_text())
    assert isinstance(test_meta, list) and [im["file_name"] for im in test_meta] == \
        [f"000/test-{k:06d}.jpg" for k in range(len(test))]
    assert "category_id" not in json.dumps(test_meta)
    assert list(p.answers()["Predicted"]) == [old["annotations"][i]["category_id"] for i in test]
    assert set(pd.read_csv(p.sample_path())["Predicted"]) == {42}
    fuzz(p, tmp_path / "fuzz")


# ---------------------------------------------------------------- inaturalist-2019-fgvc6 (tar.gz of images, plain tars out)

INAT_SAMPLE = random.Random(42).randint(0, 1009)  # v1's sample class (one generator per row: always this one)
INAT_COUNTS = {INAT_SAMPLE: 6, 3: 1, 17: 4, 200: 8, 999: 5}


def make_inaturalist(raw: Path, rng: np.random.Generator) -> None:
    def name_of(c: int, i: int) -> str:
        return f"train_val2019/Plants/{c}/{i:08x}abc.jpg"

    annotations, images = coco(rng, INAT_COUNTS, name_of)
    meta = {"annotations": annotations, "images": images, "categories": [{"id": c, "name": str(c)} for c in INAT_COUNTS],
            "info": {"year": 2019}, "licenses": [{"id": 0}]}
    dump(meta, raw / "train2019.json")
    dump({**meta, "annotations": annotations[:1], "images": images[:1]}, raw / "val2019.json")
    dump({"images": [], "info": {}, "licenses": []}, raw / "test2019.json")
    with tarfile.open(raw / "train_val2019.tar.gz", "w:gz") as tar:
        for image in images:
            data = jpeg(rng)
            info = tarfile.TarInfo(image["file_name"])
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    pd.DataFrame({"id": [1], "predicted": ["1 2 3"]}).to_csv(raw / "kaggle_sample_submission.csv", index=False)


def test_inaturalist(tmp_path):
    cats = [c for c, n in INAT_COUNTS.items() for _ in range(n)]
    n_test = len(v1_category_split(cats, 0.12, True)[1])
    probe = tmp_path / "probe"
    probe.mkdir()
    make_inaturalist(probe, np.random.default_rng(0))
    old = json.loads((probe / "train2019.json").read_text())
    train, test = v1_category_split([a["category_id"] for a in old["annotations"]], 0.12, small_rule=True)
    truth = [old["annotations"][i]["category_id"] for i in test]
    sample_score = 1 - float(np.mean([t == INAT_SAMPLE for t in truth]))
    p = run_checks("inaturalist-2019-fgvc6", make_inaturalist, tmp_path,
                   public={"train2019.json", "val2019.json", "test2019.json", "train_val2019.tar.gz", "test2019.tar.gz",
                           "kaggle_sample_submission.csv"}, private={"answers.csv"}, test_rows=n_test,
                   sample_score=round(sample_score, 5), perfect_score=0.0)
    answers = p.answers()
    assert list(answers["id"]) == [old["images"][i]["id"] for i in test] and list(answers["predicted"]) == truth
    test_meta = json.loads((p.public / "test2019.json").read_text())
    assert set(test_meta) == {"images", "info", "licenses"}
    assert [im["file_name"] for im in test_meta["images"]] == \
        ["test2019/" + old["images"][i]["file_name"].split("/")[-1] for i in test]
    # The archives are plain tars (v1 names them .tar.gz without compressing), image paths as v1 writes them.
    with tarfile.open(p.public / "test2019.tar.gz", "r:") as tar:
        assert sorted(tar.getnames()) == sorted(old["images"][i]["file_name"].split("/")[-1] for i in test)
    with tarfile.open(p.public / "train_val2019.tar.gz", "r:") as tar:
        names = tar.getnames()
        assert sorted(names) == sorted(old["images"][i]["file_name"][len("train_val2019/"):] for i in train)
        Image.open(tar.extractfile(names[0])).verify()
    assert [im["id"] for im in json.loads((p.public / "train2019.json").read_text())["images"]] == \
        [old["images"][i]["id"] for i in train]
    subs = tmp_path / "subs"
    # Only the first space-separated class counts; a float column has no first token in v1.
    several = answers.assign(predicted=answers["predicted"].astype(str) + " 5 6")
    assert grade(p, several, subs).score == 0.0
    floats = answers.assign(predicted=answers["predicted"].astype(float))
    report = grade(p, floats, subs)
    assert not report.valid_submission and not report.grader_error and report.reason
    fuzz(p, tmp_path / "fuzz")


# ---------------------------------------------------------------- iwildcam-2019-fgvc6 (locations, zipped images)

IWC19_COLUMNS = ["category_id", "date_captured", "file_name", "frame_num", "id", "location", "rights_holder",
                 "seq_id", "seq_num_frames", "width", "height"]


def make_iwildcam_2019(raw: Path, rng: np.random.Generator) -> None:
    n = 60
    ids = [f"5998cfa4-23d2-11e8-a6a3-{k:012x}" for k in rng.choice(10**9, size=n, replace=False)]
    frame = pd.DataFrame({
        "category_id": rng.choice([0, 0, 0, 1, 3, 8, 10, 11], size=n), "date_captured": "2012-03-17 03:48:44",
        "file_name": [f"{i}.jpg" for i in ids], "frame_num": rng.integers(1, 4, n), "id": ids,
        "location": rng.choice([33, 115, 96, 57, 46, 43, 120, 18, 62, 100, 90, 51], size=n),
        "rights_holder": "Justin Brown", "seq_id": [f"6f084ccc-5567-11e8-bc84-{k:012x}" for k in range(n)],
        "seq_num_frames": 3, "width": 1024, "height": 747})
    frame[IWC19_COLUMNS].to_csv(raw / "train.csv", index=False)
    with zipfile.ZipFile(raw / "train_images.zip", "w") as zf:
        for i in ids:
            zf.writestr(f"{i}.jpg", jpeg(rng))
    with zipfile.ZipFile(raw / "test_images.zip", "w") as zf:
        zf.writestr("t0.jpg", jpeg(rng))
    frame.iloc[:1].drop(columns=["category_id"]).assign(id="t0").to_csv(raw / "test.csv", index=False)
    pd.DataFrame({"Id": ["t0"], "Category": [0]}).to_csv(raw / "sample_submission.csv", index=False)


def test_iwildcam_2019(tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    make_iwildcam_2019(probe, np.random.default_rng(0))
    old = pd.read_csv(probe / "train.csv")
    _, test_loc = train_test_split(old["location"].unique(), test_size=0.1, random_state=8)
    want_test = old[old["location"].isin(test_loc)]
    sample_score = f1_score(want_test["category_id"], [0] * len(want_test), average="macro")
    p = run_checks("iwildcam-2019-fgvc6", make_iwildcam_2019, tmp_path,
                   public={"train.csv", "test.csv", "train_images.zip", "test_images.zip", "sample_submission.csv"},
                   private={"answers.csv", "test.csv"}, test_rows=len(want_test),
                   sample_score=round(sample_score, 5), perfect_score=1.0)
    pd.testing.assert_frame_equal(pd.read_csv(p.private / "test.csv"), want_test.reset_index(drop=True))
    pd.testing.assert_frame_equal(pd.read_csv(p.public / "test.csv"),
                                  want_test.drop(columns=["category_id"]).reset_index(drop=True))
    assert list(pd.read_csv(p.public / "train.csv")["id"]) == list(old.loc[~old.index.isin(want_test.index), "id"])
    # v1 wrote the sample with pandas' index: an unnamed first column of the original row numbers.
    lines = p.sample_path().read_text().splitlines()
    assert lines[0] == ",Id,Category" and lines[1] == f"{want_test.index[0]},{want_test['id'].iloc[0]},0"
    with zipfile.ZipFile(p.public / "test_images.zip") as zf:
        assert zf.namelist() == [f"{i}.jpg" for i in want_test["id"]]
        Image.open(io.BytesIO(zf.read(zf.namelist()[0]))).verify()
    with zipfile.ZipFile(p.public / "train_images.zip") as zf:
        assert len(zf.namelist()) == len(old) - len(want_test)
    fuzz(p, tmp_path / "fuzz")


# ---------------------------------------------------------------- iwildcam-2020-fgvc7 (COCO JSON through pandas)


def make_iwildcam_2020(raw: Path, rng: np.random.Generator) -> None:
    n = 80
    ids = [f"{k:08x}-21bc-11ea-a13a-137349068a90" for k in rng.choice(10**8, size=n, replace=False)]
    locations = rng.choice(np.arange(1, 21), size=n)
    images = [{"seq_num_frames": 1, "location": int(loc), "datetime": "2013-06-09 16:17:56.000", "id": i,
               "frame_num": 1, "seq_id": f"s{k}", "width": 8, "height": 8, "file_name": f"{i}.jpg"}
              for k, (i, loc) in enumerate(zip(ids, locations, strict=True))]
    images[5]["corrupt"] = True  # a field only some records have: v1's pandas round trip gives NaN elsewhere
    annotations = [{"count": 1, "image_id": i, "id": f"a{k}", "category_id": int(c)}
                   for k, (i, c) in enumerate(zip(ids, rng.choice([0, 1, 2, 372, 675], size=n), strict=True))]
    categories = [{"count": 10, "id": c, "name": f"species {c}"} for c in (0, 1, 2, 372, 675)]
    dump({"annotations": annotations, "images": images, "categories": categories, "info": {"version": "1"}},
         raw / "iwildcam2020_train_annotations.json")
    dump({"images": [{"id": "t0", "location": 99, "file_name": "t0.jpg"}], "categories": categories,
          "info": {"version": "1"}}, raw / "iwildcam2020_test_information.json")
    dump({"info": {}, "detection_categories": {"1": "animal"}, "images": []},
         raw / "iwildcam2020_megadetector_results.json")
    for i in ids:
        write(raw / "train" / f"{i}.jpg", jpeg(rng))
    write(raw / "test" / "t0.jpg", jpeg(rng))
    pd.DataFrame({"Id": ["t0"], "Category": [0]}).to_csv(raw / "sample_submission.csv", index=False)


def v1_iwildcam_2020_locations(images: pd.DataFrame) -> np.ndarray:
    train, test = train_test_split(images["location"].unique(), test_size=0.22, random_state=0)
    n = len(images)

    def ratio(locs):
        k = images["location"].isin(locs).sum()
        return k / (n + k)

    while ratio(test) < 0.22:
        test, train = np.append(test, train[-1]), train[:-1]
    while ratio(test) > 0.22:
        train, test = np.append(train, test[-1]), test[:-1]
    return test


def test_iwildcam_2020(tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    make_iwildcam_2020(probe, np.random.default_rng(0))
    old = json.loads((probe / "iwildcam2020_train_annotations.json").read_text())
    images, annotations = pd.DataFrame(old["images"]), pd.DataFrame(old["annotations"])
    test_ids = images.loc[images["location"].isin(v1_iwildcam_2020_locations(images)), "id"]
    want = annotations[annotations["image_id"].isin(test_ids)]
    draws = np.random.RandomState(0).randint(0, 676, size=len(want))
    p = run_checks("iwildcam-2020-fgvc7", make_iwildcam_2020, tmp_path,
                   public={"iwildcam2020_train_annotations.json", "iwildcam2020_test_information.json",
                           "iwildcam2020_megadetector_results.json", "train", "test", "sample_submission.csv"},
                   private={"answers.csv"}, test_rows=len(want),
                   sample_score=round(float(np.mean(draws == want["category_id"].to_numpy())), 5), perfect_score=1.0)
    assert list(p.answers()["Id"]) == list(want["image_id"])
    assert list(pd.read_csv(p.sample_path())["Category"]) == list(draws)
    text = (p.public / "iwildcam2020_train_annotations.json").read_text()
    new = json.loads(text)
    assert list(new) == ["annotations", "images", "categories", "info"] and ", " in text and "\n" not in text
    public_test = json.loads((p.public / "iwildcam2020_test_information.json").read_text())
    # v1's pandas round trip: a field one record has appears in every record of both files, NaN elsewhere.
    flags = [im["corrupt"] for im in new["images"] + public_test["images"]]
    assert len(flags) == len(images) and sum(f is True for f in flags) == 1
    assert sum(isinstance(f, float) and np.isnan(f) for f in flags) == len(images) - 1
    assert list(public_test) == ["images", "categories", "info"] and "annotations" not in public_test
    assert sorted(im["id"] for im in public_test["images"]) == sorted(test_ids)
    assert sorted(x.name for x in (p.public / "test").iterdir()) == sorted(f"{i}.jpg" for i in test_ids)
    assert not {im["location"] for im in new["images"]} & {im["location"] for im in public_test["images"]}
    fuzz(p, tmp_path / "fuzz")


# ---------------------------------------------------------------- hotel-id-2021-fgvc8 (chains, MAP@5)


def make_hotel_id(raw: Path, rng: np.random.Generator) -> None:
    n = 50
    images = [f"{k:016x}.jpg" for k in rng.choice(2**60, size=n, replace=False)]
    chains = rng.choice([0, 1, 5, 88], size=n)
    hotels = rng.choice([36363, 53586, 18807, 111, 222, 333, 444], size=n)
    frame = pd.DataFrame({"image": images, "chain": chains, "hotel_id": hotels,
                          "timestamp": "2018-04-19 23:21:29"})
    twice = pd.DataFrame({"image": ["ce27d36c9147cc19.jpg"] * 2, "chain": [0, 5], "hotel_id": [111, 222],
                          "timestamp": "2018-04-19 23:21:29"})
    frame = pd.concat([frame.iloc[:10], twice, frame.iloc[10:]], ignore_index=True)
    frame.to_csv(raw / "train.csv", index=False)
    for image, chain in zip(frame["image"], frame["chain"], strict=True):
        write(raw / "train_images" / str(chain) / image, jpeg(rng))
    write(raw / "test_images" / "abc.jpg", jpeg(rng))
    pd.DataFrame({"image": ["abc.jpg"], "hotel_id": ["36363 53586 18807 64314 60181"]}).to_csv(
        raw / "sample_submission.csv", index=False)


def ap5(actual: str, predicted: str) -> float:
    truth, guesses, hits, total = {actual}, predicted.split(" ")[:5], 0, 0.0
    for rank, g in enumerate(guesses):
        if g in truth and g not in guesses[:rank]:
            hits += 1
            total += hits / (rank + 1)
    return total / min(len(truth), 5)


def test_hotel_id(tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    make_hotel_id(probe, np.random.default_rng(0))
    old = pd.read_csv(probe / "train.csv")
    train, test = train_test_split(old[old["image"] != "ce27d36c9147cc19.jpg"], test_size=0.1, random_state=0)
    sample = "36363 53586 18807 64314 60181"
    sample_score = float(np.mean([ap5(str(h), sample) for h in test["hotel_id"]]))
    p = run_checks("hotel-id-2021-fgvc8", make_hotel_id, tmp_path,
                   public={"train.csv", "train_images", "test_images", "sample_submission.csv"},
                   private={"test.csv"}, test_rows=len(test), sample_score=round(sample_score, 5), perfect_score=1.0)
    pd.testing.assert_frame_equal(p.answers(), test.reset_index(drop=True))
    pd.testing.assert_frame_equal(pd.read_csv(p.public / "train.csv"), train.reset_index(drop=True))
    assert "ce27d36c9147cc19.jpg" not in set(p.answers()["image"]) | set(train["image"])
    assert sorted(x.name for x in (p.public / "test_images").iterdir()) == sorted(test["image"])
    row = train.iloc[0]
    assert is_image(p.public / "train_images" / str(row["chain"]) / row["image"])
    # MAP@5 rewards the right hotel at rank 2 with 1/2; a doubled space is an empty guess that takes a rank.
    answers, subs = p.answers(), tmp_path / "subs"
    second = answers.assign(hotel_id="1 " + answers["hotel_id"].astype(str))
    assert grade(p, second[["image", "hotel_id"]], subs).score == 0.5
    spaced = answers.assign(hotel_id="1  " + answers["hotel_id"].astype(str))
    assert abs(grade(p, spaced[["image", "hotel_id"]], subs).score - 1 / 3) < 1e-5
    fuzz(p, tmp_path / "fuzz")


# ---------------------------------------------------------------- imet-2020-fgvc7 (label sets)


def make_imet(raw: Path, rng: np.random.Generator) -> None:
    n = 40
    ids = [f"{k:032x}" for k in rng.choice(2**62, size=n, replace=False)]
    labels = [" ".join(str(x) for x in sorted(rng.choice(12, size=int(rng.integers(1, 4)), replace=False)))
              for _ in range(n)]
    pd.DataFrame({"id": ids, "attribute_ids": labels}).to_csv(raw / "train.csv", index=False)
    pd.DataFrame({"attribute_id": range(12), "attribute_name": [f"tag::t{k}" for k in range(12)]}).to_csv(
        raw / "labels.csv", index=False)
    for i in ids:
        write(raw / "train" / f"{i}.png", jpeg(rng, "PNG"))
    write(raw / "test" / "x.png", jpeg(rng, "PNG"))
    pd.DataFrame({"id": ["x"], "attribute_ids": ["0 1 2"]}).to_csv(raw / "sample_submission.csv", index=False)


def micro_f1(truth: list[str], pred: list[str]) -> float:
    known = {x for t in truth for x in t.split()}
    tp = fp = fn = 0
    for t, q in zip(truth, pred, strict=True):
        a, b = set(t.split()), set(q.split()) & known
        tp, fp, fn = tp + len(a & b), fp + len(b - a), fn + len(a - b)
    return 2 * tp / (2 * tp + fp + fn)


def test_imet(tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    make_imet(probe, np.random.default_rng(0))
    old = pd.read_csv(probe / "train.csv")
    train, test = train_test_split(old, test_size=0.15, random_state=0)
    p = run_checks("imet-2020-fgvc7", make_imet, tmp_path,
                   public={"train.csv", "labels.csv", "train", "test", "sample_submission.csv"},
                   private={"answers.csv"}, test_rows=len(test),
                   sample_score=round(micro_f1(list(test["attribute_ids"]), ["0 1 2"] * len(test)), 5),
                   perfect_score=1.0)
    pd.testing.assert_frame_equal(p.answers(), test.reset_index(drop=True))
    pd.testing.assert_frame_equal(pd.read_csv(p.public / "train.csv"), train.reset_index(drop=True))
    assert sorted(x.name for x in (p.public / "test").iterdir()) == sorted(f"{i}.png" for i in test["id"])
    assert is_image(p.public / "test" / f"{test['id'].iloc[0]}.png")
    answers, subs = p.answers(), tmp_path / "subs"
    # v1 ignores predicted attributes that never occur in the answers (spamming them is free).
    spam = answers.assign(attribute_ids=answers["attribute_ids"] + " 9999 8888")
    assert grade(p, spam, subs).score == 1.0
    numbers = answers.assign(attribute_ids=1)
    report = grade(p, numbers, subs)
    assert not report.valid_submission and not report.grader_error and report.reason
    fuzz(p, tmp_path / "fuzz")


# ---------------------------------------------------------------- cdiscount-image-classification-challenge (BSON)

CDISCOUNT_SAMPLE = 1000010653


def make_cdiscount(raw: Path, rng: np.random.Generator) -> None:
    n = 120
    ids = sorted(int(x) for x in rng.choice(10**6, size=n, replace=False))
    cats = rng.choice([CDISCOUNT_SAMPLE, 1000010667, 1000004079, 1000018290], size=n)
    with open(raw / "train.bson", "wb") as fh:
        for i, c in zip(ids, cats, strict=True):
            pictures = [{"picture": jpeg(rng)} for _ in range(int(rng.integers(1, 3)))]
            fh.write(bson.encode({"_id": i, "imgs": pictures, "category_id": int(c)}))
    with open(raw / "train_example.bson", "wb") as fh:
        fh.write(bson.encode({"_id": 0, "imgs": [{"picture": jpeg(rng)}], "category_id": CDISCOUNT_SAMPLE}))
    with open(raw / "test.bson", "wb") as fh:
        fh.write(bson.encode({"_id": 10, "imgs": [{"picture": jpeg(rng)}]}))
    pd.DataFrame({"category_id": [CDISCOUNT_SAMPLE, 1000010667, 1000004079, 1000018290],
                  "category_level1": "ABONNEMENT / SERVICES", "category_level2": "CARTE PREPAYEE",
                  "category_level3": "CARTE PREPAYEE MULTIMEDIA"}).to_csv(raw / "category_names.csv", index=False)
    pd.DataFrame({"_id": [10], "category_id": [CDISCOUNT_SAMPLE]}).to_csv(raw / "sample_submission.csv", index=False)


def read_bson(path: Path) -> list[dict]:
    with open(path, "rb") as fh:
        return list(bson.decode_file_iter(fh))


def test_cdiscount(tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    make_cdiscount(probe, np.random.default_rng(0))
    old = read_bson(probe / "train.bson")
    frame = pd.DataFrame({"_id": [d["_id"] for d in old], "category_id": [d["category_id"] for d in old]})
    train, test = train_test_split(frame, test_size=0.1, random_state=0)
    answers = test.sort_values(by="_id")
    p = run_checks("cdiscount-image-classification-challenge", make_cdiscount, tmp_path,
                   public={"train.bson", "train_example.bson", "test.bson", "category_names.csv",
                           "sample_submission.csv"}, private={"answers.csv"}, test_rows=len(test),
                   sample_score=round(float(np.mean(answers["category_id"] == CDISCOUNT_SAMPLE)), 5),
                   perfect_score=1.0)
    pd.testing.assert_frame_equal(p.answers(), answers.reset_index(drop=True))
    public_train, public_test = read_bson(p.public / "train.bson"), read_bson(p.public / "test.bson")
    train_ids = set(train["_id"])
    # Both keep train.bson's order; test products lose category_id and keep their images byte for byte.
    assert [d["_id"] for d in public_train] == [d["_id"] for d in old if d["_id"] in train_ids]
    assert [d["_id"] for d in public_test] == [d["_id"] for d in old if d["_id"] not in train_ids]
    assert all(set(d) == {"_id", "imgs"} for d in public_test)
    by_id = {d["_id"]: d for d in old}
    assert all(d["imgs"] == by_id[d["_id"]]["imgs"] for d in public_test)
    Image.open(io.BytesIO(public_test[0]["imgs"][0]["picture"])).verify()
    assert read_bson(p.public / "train_example.bson") == public_train[:100]
    fuzz(p, tmp_path / "fuzz")


MAKERS = {
    "herbarium-2020-fgvc7": make_herbarium_2020,
    "herbarium-2021-fgvc8": make_herbarium_2021,
    "herbarium-2022-fgvc9": make_herbarium_2022,
    "inaturalist-2019-fgvc6": make_inaturalist,
    "iwildcam-2019-fgvc6": make_iwildcam_2019,
    "iwildcam-2020-fgvc7": make_iwildcam_2020,
    "hotel-id-2021-fgvc8": make_hotel_id,
    "imet-2020-fgvc7": make_imet,
    "cdiscount-image-classification-challenge": make_cdiscount,
}


def test_coco_metadata_beyond_the_fast_parser(tmp_path):
    """An integer beyond 64 bits (json.load takes it; ijson's C parser overflows) is read by the Python
    parser, with v1's output; NaN, which is not JSON, is refused with the file's name."""

    raw = tmp_path / "raw"
    make_herbarium_2021(raw, np.random.default_rng(0))
    meta_path = raw / "train" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["info"]["big"] = 2**70
    meta_path.write_text(json.dumps(meta))
    public, private = tmp_path / "pub", tmp_path / "priv"
    public.mkdir(), private.mkdir()
    herbarium_2021(raw, public, private)
    assert json.loads((public / "train" / "metadata.json").read_text())["info"]["big"] == 2**70
    meta_path.write_text(json.dumps(meta).replace('"year": 2020', '"year": NaN'))
    for folder in (public, private):
        shutil.rmtree(folder)
        folder.mkdir()
    with pytest.raises(ValueError, match="metadata.json: not parseable as standard JSON"):
        herbarium_2021(raw, public, private)
