"""Preparers of the large image collections: herbaria, iNaturalist, camera traps, hotels, museum art, Cdiscount.

Each `name(raw, public, private)` turns the extracted Kaggle download in `raw` into the split MLE-bench v1
makes (facts §4.4), from tens of thousands to millions of images. Images are copied (or streamed into an
archive) one at a time and never decoded; folders are never listed.

Memory does not grow with the images. The COCO-style metadata that v1 rewrites with its records regrouped
by category (herbaria, iNaturalist; herbarium-2021's is about a gigabyte) is streamed with ijson: each
record is parsed once and spilled to a scratch file, only its category and file offset stay in memory,
and the new JSON is written by `json.dump` itself from lists that fetch their records back one at a
time, so the bytes are v1's. iWildCam 2020's JSONs go through pandas as in v1 (the spec states the
memory). cdiscount's train.bson is streamed twice; only two integer columns of it are held.
"""

from __future__ import annotations

import json
import random
import shutil
import tarfile
import zipfile
from array import array
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from hpc_mle.prepare.common import SEED, read_exact, require_columns, require_raw, scratch, split, write_csv

# ---------------------------------------------------------------- shared steps

COPY_CHUNK = 1 << 20  # bytes per read when streaming an image into an archive


def _copy(src: Path, dst: Path) -> None:
    """One image, with an error that names the missing file (folders created as needed)."""
    if not src.is_file():
        raise FileNotFoundError(f"{src}: named in the metadata but missing from the Kaggle download. "
                                f"Fix: delete {src.parent} and prepare again to re-extract it.")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _load_json(path: Path, encoding: str = "utf-8") -> Any:
    with open(require_raw(path), encoding=encoding) as fh:
        return json.load(fh)


def _dump_json(obj: Any, path: Path, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        json.dump(obj, fh, **kwargs)


def _pretty_json(obj: Any, path: Path) -> None:
    """v1's metadata format for the herbaria and iNaturalist: indent 4, keys sorted, ASCII escapes."""
    _dump_json(obj, path, indent=4, sort_keys=True)


# ---------------------------------------------------------------- COCO-style metadata, streamed


class _Latin1AsUtf8:
    """A binary file read as v1 read herbarium 2020's metadata (Latin-1), re-encoded for ijson (UTF-8)."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh

    def read(self, size: int = -1) -> bytes:
        return self.fh.read(size).decode("latin-1").encode("utf-8")


@contextmanager
def _json_source(path: Path, latin1: bool) -> Iterator[Any]:
    with open(require_raw(path), "rb") as fh:
        yield _Latin1AsUtf8(fh) if latin1 else fh


def _ijson(backend: str):
    """ijson's fast C parser ("yajl2_c"), or its pure-Python one, which also takes integers beyond 64 bits."""
    import ijson

    return ijson.get_backend(backend)


def _json_items(path: Path, prefix: str, latin1: bool, backend: str) -> Iterator[Any]:
    """The values at `prefix`, one at a time, parsed as json.load parses them (floats, not Decimals)."""
    with _json_source(path, latin1) as src:
        yield from _ijson(backend).items(src, prefix, use_float=True)


def _top_level_keys(path: Path, latin1: bool, backend: str) -> list[str]:
    with _json_source(path, latin1) as src:
        return [value for prefix, event, value in _ijson(backend).parse(src) if prefix == "" and event == "map_key"]


class _Spill:
    """Records kept on disk as one JSON line each; memory holds only their offsets."""

    def __init__(self, path: Path) -> None:
        self.fh = open(path, "w+b")  # noqa: SIM115 -- closed by the _Coco that owns it
        self.offsets = array("q")

    def add(self, record: dict) -> None:
        self.offsets.append(self.fh.tell())
        self.fh.write(json.dumps(record).encode("ascii") + b"\n")

    def __getitem__(self, position: int) -> dict:
        self.fh.seek(self.offsets[position])
        return json.loads(self.fh.readline())


class _Lazy(list):
    """A list that `json.dump` (its pure-Python encoder, used whenever it writes to a file) walks one
    element at a time: `get(k)` builds element k when the encoder reaches it."""

    def __init__(self, size: int, get: Callable[[int], Any]) -> None:
        super().__init__()
        self._size, self._get = size, get

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Any]:
        return (self._get(k) for k in range(self._size))


@dataclass
class _Coco:
    """A COCO-style metadata file: its other top-level values, and per (annotation, image) pair its
    category (in memory) and both records (spilled)."""

    path: Path
    extras: dict[str, Any]
    categories: array
    annotations: _Spill
    images: _Spill

    def close(self) -> None:
        self.annotations.fh.close()
        self.images.fh.close()


def _stream_coco(path: Path, tmp: Path, image_key: str, latin1: bool, backend: str) -> _Coco:
    """Stream `annotations` and `images` side by side (v1 zips them and asserts each pair names the same
    image); every other top-level value is small and read whole."""
    keys = _top_level_keys(path, latin1, backend)
    extras = {key: next(_json_items(path, key, latin1, backend))
              for key in keys if key not in ("annotations", "images")}
    coco = _Coco(path, extras, array("q"), _Spill(tmp / "annotations.jsonl"), _Spill(tmp / "images.jsonl"))
    try:
        pairs = zip(_json_items(path, "annotations.item", latin1, backend),
                    _json_items(path, "images.item", latin1, backend), strict=False)  # v1's zip stops at the shorter
        for annotation, image in pairs:
            if annotation["image_id"] != image[image_key]:
                raise ValueError(f"{path}: annotation for image {annotation['image_id']!r} is paired with image "
                                 f"{image[image_key]!r}; v1 needs 'annotations' and 'images' in the same order.")
            coco.categories.append(annotation["category_id"])
            coco.annotations.add(annotation)
            coco.images.add(image)
        coco.annotations.fh.flush()
        coco.images.fh.flush()
    except BaseException:
        coco.close()
        raise
    return coco


@contextmanager
def _read_coco(path: Path, tmp: Path, image_key: str, latin1: bool = False) -> Iterator[_Coco]:
    """The metadata streamed by ijson's C parser, or by its Python parser where the C one overflows (an
    integer beyond 64 bits). NaN and Infinity, which json.load (v1) accepts, are not JSON: refused by name."""
    from ijson.common import JSONError

    try:
        coco = _stream_coco(path, tmp, image_key, latin1, "yajl2_c")
    except JSONError:
        try:
            coco = _stream_coco(path, tmp, image_key, latin1, "python")
        except JSONError as exc:
            raise ValueError(f"{path}: not parseable as standard JSON ({exc}). Fix: re-download the "
                             "competition; NaN or Infinity values are not supported by the streaming reader.") from None
    try:
        yield coco
    finally:
        coco.close()


def _split_per_category(coco: _Coco, test_size: float, small_rule: bool) -> tuple[dict[int, list[int]], list[int]]:
    """v1's per-category split of a COCO-style training set into record positions.

    Categories in order of first appearance; within one, `train_test_split(random_state=0)`. With
    `small_rule` (herbarium 2020/21, iNaturalist) a single record stays in train and fewer than five
    put their last `max(1, int(n * test_size))` in test. The test positions of all categories, in
    category order, are then shuffled with `random.Random(0)`. Returns (train positions per category,
    test positions in their new order).
    """
    by_category: dict[int, list[int]] = {}
    for i, category in enumerate(coco.categories):
        by_category.setdefault(category, []).append(i)
    train: dict[int, list[int]] = {}
    test: list[int] = []
    for category, rows in by_category.items():
        n = len(rows)
        if small_rule and n == 1:
            keep, held = rows, []
        elif small_rule and n < 5:
            k = max(1, int(n * test_size))
            keep, held = rows[:-k], rows[-k:]
        else:
            if n < 2:
                raise ValueError(f"{coco.path}: category {category} has a single image; v1's split (test_size="
                                 f"{test_size}) cannot put it in both train and test.")
            keep, held = train_test_split(rows, test_size=test_size, random_state=SEED)
        train[category] = list(keep)
        test.extend(held)
    random.Random(SEED).shuffle(test)
    return train, test


def _category_subdir(category: int) -> str:
    """v1's nested folder of a category: 15504 -> '155/04', 3 -> '000/03'."""
    return f"{category // 100:03d}/{category % 100:02d}"


def _renamed(record: dict, **changes: Any) -> dict:
    out = dict(record)
    out.update(changes)
    return out


def _records(spill: _Spill, positions: list[int], **changes: Callable[[int], Any]) -> _Lazy:
    """The spilled records at `positions`, in that order; `changes[field](k)` overrides a field of the k-th."""
    def get(k: int) -> dict:
        return _renamed(spill[positions[k]], **{name: fn(k) for name, fn in changes.items()})

    return _Lazy(len(positions), get)


# ---------------------------------------------------------------- herbarium-2020-fgvc7 / herbarium-2021-fgvc8


def _herbarium_v1(raw_train: Path, public_train: Path, public_test: Path, private: Path, public: Path,
                  latin1: bool, dropped: tuple[str, ...]) -> None:
    """The 2020 and 2021 preparers (same steps, different folders and dropped keys).

    Train keeps every record and file name as they were, grouped by category; test images are renamed
    `images/<idx // 1000:03d>/<idx>.jpg` with id `str(idx)`. The public test metadata keeps only images,
    info and licenses. Answers: Id, Predicted (the category); the sample predicts 0.
    """
    with scratch(public) as tmp, _read_coco(raw_train / "metadata.json", tmp, "id", latin1) as coco:
        train, test = _split_per_category(coco, test_size=0.2, small_rule=True)
        order = [i for rows in train.values() for i in rows]
        for i in order:
            name = coco.images[i]["file_name"]
            _copy(raw_train / name, public_train / name)
        _pretty_json({**coco.extras, "annotations": _records(coco.annotations, order),
                      "images": _records(coco.images, order)}, public_train / "metadata.json")

        def test_name(k: int) -> str:
            return f"images/{k // 1000:03d}/{k}.jpg"

        for k, i in enumerate(test):
            _copy(raw_train / coco.images[i]["file_name"], public_test / test_name(k))
        public_meta = {key: v for key, v in coco.extras.items() if key not in dropped}
        public_meta["images"] = _records(coco.images, test, id=str, file_name=test_name)
        _pretty_json(public_meta, public_test / "metadata.json")
        ids = [str(k) for k in range(len(test))]
        answers = [coco.categories[i] for i in test]
    write_csv(pd.DataFrame({"Id": ids, "Predicted": answers}), private / "answers.csv")
    write_csv(pd.DataFrame({"Id": ids, "Predicted": 0}), public / "sample_submission.csv")


def herbarium_2020(raw: Path, public: Path, private: Path) -> None:
    """nybg2020/train/metadata.json re-split 80/20 per category into public/nybg2020/{train,test}.

    v1 reads the metadata as Latin-1 (UTF-8 failed on it), so non-ASCII names are written back as the
    \\u escapes of their Latin-1 reading, as v1 wrote them. Kaggle's own test images are not used.
    """
    _herbarium_v1(raw / "nybg2020" / "train", public / "nybg2020" / "train", public / "nybg2020" / "test",
                  private, public, latin1=True, dropped=("categories", "regions"))


def herbarium_2021(raw: Path, public: Path, private: Path) -> None:
    """train/metadata.json re-split 80/20 per category into public/train and public/test."""
    _herbarium_v1(raw / "train", public / "train", public / "test", private, public,
                  latin1=False, dropped=("categories", "institutions"))


# ---------------------------------------------------------------- herbarium-2022-fgvc9

HERBARIUM_2022_SAMPLE = 42  # v1's constant prediction


def herbarium_2022(raw: Path, public: Path, private: Path) -> None:
    """train_metadata.json re-split 80/20 per category (every category split by train_test_split).

    Train images are renumbered per category (`<category:05d>__<n:03d>`, file
    `<ccc>/<cc>/<id>.jpg`); test images become `<idx // 1000:03d>/test-<idx:06d>.jpg` with id `str(idx)`.
    public/test_metadata.json is the list of test image records only.
    """
    with scratch(public) as tmp, _read_coco(raw / "train_metadata.json", tmp, "image_id") as coco:
        train, test = _split_per_category(coco, test_size=0.2, small_rule=False)
        order = [i for rows in train.values() for i in rows]
        train_ids = [f"{category:05d}__{n:03d}" for category, rows in train.items() for n in range(1, len(rows) + 1)]

        def train_name(k: int) -> str:
            return f"{_category_subdir(coco.categories[order[k]])}/{train_ids[k]}.jpg"

        for k, i in enumerate(order):
            _copy(raw / "train_images" / coco.images[i]["file_name"], public / "train_images" / train_name(k))
        new_id = train_ids.__getitem__
        _pretty_json({**coco.extras, "annotations": _records(coco.annotations, order, image_id=new_id),
                      "images": _records(coco.images, order, image_id=new_id, file_name=train_name)},
                     public / "train_metadata.json")

        def test_name(k: int) -> str:
            return f"{k // 1000:03d}/test-{k:06d}.jpg"

        for k, i in enumerate(test):
            _copy(raw / "train_images" / coco.images[i]["file_name"], public / "test_images" / test_name(k))
        _pretty_json(_records(coco.images, test, image_id=str, file_name=test_name), public / "test_metadata.json")
        ids = [str(k) for k in range(len(test))]
        answers = [coco.categories[i] for i in test]
    write_csv(pd.DataFrame({"Id": ids, "Predicted": answers}), private / "answers.csv")
    write_csv(pd.DataFrame({"Id": ids, "Predicted": HERBARIUM_2022_SAMPLE}), public / "sample_submission.csv")


# ---------------------------------------------------------------- inaturalist-2019-fgvc6

INATURALIST_TEST_SIZE = 0.12  # v1: 35,400 / (268,243 + 35,400), Kaggle's own test share
INATURALIST_CLASSES = 1010


def _inaturalist_images(raw: Path) -> Path:
    """raw/train_val2019/, unpacked from train_val2019.tar.gz into raw (as v1 does) when not there yet.

    It is unpacked beside and renamed when complete, so an interrupted preparation unpacks it again.
    """
    folder = raw / "train_val2019"
    if not folder.is_dir():
        partial = raw / ".train_val2019.partial"
        shutil.rmtree(partial, ignore_errors=True)
        with tarfile.open(require_raw(raw / "train_val2019.tar.gz")) as tar:
            tar.extractall(partial, filter="data")
        (partial / "train_val2019").rename(folder)
        shutil.rmtree(partial)
    return raw


def _tar_files(members: Iterable[tuple[Path, str]], out: Path) -> None:
    """An uncompressed tar of (file, name in the archive); v1 names it .tar.gz without compressing."""
    with tarfile.open(out, "w") as tar:
        for src, arcname in members:
            if not src.is_file():
                raise FileNotFoundError(f"{src}: named in train2019.json but missing from the unpacked "
                                        "train_val2019/. Fix: delete that folder and prepare again to re-extract it.")
            tar.add(src, arcname=arcname)


def inaturalist_2019(raw: Path, public: Path, private: Path) -> None:
    """train2019.json re-split 88/12 per category; images go into two uncompressed tars named .tar.gz.

    public/train_val2019.tar.gz holds the train images under their own paths (less the leading
    `train_val2019/`), public/test2019.tar.gz the test images by base name; test2019.json renames them
    `test2019/<base name>` and keeps their ids. val2019.json is copied. The sample predicts
    `random.Random(42).randint(0, 1009)` on every row: v1 seeds a new generator per row, so one class.
    """
    root = _inaturalist_images(raw)
    with scratch(public) as tmp, _read_coco(raw / "train2019.json", tmp, "id") as coco:
        train, test = _split_per_category(coco, test_size=INATURALIST_TEST_SIZE, small_rule=True)
        order = [i for rows in train.values() for i in rows]
        _pretty_json({**coco.extras, "annotations": _records(coco.annotations, order),
                      "images": _records(coco.images, order)}, public / "train2019.json")
        shutil.copyfile(require_raw(raw / "val2019.json"), public / "val2019.json")

        def test_name(k: int) -> str:
            return "test2019/" + coco.images[test[k]]["file_name"].split("/")[-1]

        public_meta = {key: v for key, v in coco.extras.items() if key != "categories"}
        _pretty_json({**public_meta, "images": _records(coco.images, test, file_name=test_name)},
                     public / "test2019.json")
        ids = [coco.images[i]["id"] for i in test]
        answers = pd.DataFrame({"id": ids, "predicted": [coco.categories[i] for i in test]})
        write_csv(answers, private / "answers.csv")
        sample = random.Random(42).randint(0, INATURALIST_CLASSES - 1)
        write_csv(answers.assign(predicted=sample), public / "kaggle_sample_submission.csv")
        names = (coco.images[i]["file_name"] for i in order)
        _tar_files(((root / name, name.split("/", 1)[1]) for name in names), public / "train_val2019.tar.gz")
        names = (coco.images[i]["file_name"] for i in test)
        _tar_files(((root / name, name.split("/")[-1]) for name in names), public / "test2019.tar.gz")


# ---------------------------------------------------------------- iwildcam-2019-fgvc6

IWILDCAM_2019_SEED = 8  # v1 tried seeds until the test share of rows was near Kaggle's


def _zip_stream(names: Iterable[str], source: Path | zipfile.ZipFile, out: Path) -> None:
    """A flat zip of the named images, read one at a time from a folder or from Kaggle's zip."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for name in names:
            if isinstance(source, Path):
                dst.write(source / name, arcname=name)
                continue
            info = zipfile.ZipInfo(name, date_time=source.getinfo(name).date_time)
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            with source.open(name) as fin, dst.open(info, "w") as fout:
                shutil.copyfileobj(fin, fout, COPY_CHUNK)


def _zipped_images(names: list[str], folder: Path, archive: Path, out: dict[str, list[str]]) -> None:
    """Write out[zip name] = image names as flat zips, from `folder` if extracted, else from `archive`."""
    if folder.is_dir():
        for target, subset in out.items():
            _zip_stream(subset, folder, target)
        return
    with zipfile.ZipFile(require_raw(archive)) as zf:
        present = set(zf.namelist())
        missing = [n for n in names if n not in present]
        if missing:
            raise FileNotFoundError(f"{archive}: {len(missing)} image(s) named in train.csv are missing, e.g. "
                                    f"{missing[0]}. Fix: delete it and prepare again to re-download.")
        for target, subset in out.items():
            _zip_stream(subset, zf, target)


def iwildcam_2019(raw: Path, public: Path, private: Path) -> None:
    """10% of the camera locations (train_test_split of the unique locations in order of first
    appearance, random_state=8) and all their images become the test set.

    private/test.csv keeps the full rows, private/answers.csv is (Id, Category); public/test.csv drops
    category_id; the sample predicts 0 and, as in v1, is written with pandas' index as a first unnamed
    column. train_images.zip and test_images.zip are flat zips of `<id>.jpg`, streamed from Kaggle's zip.
    """
    table = read_exact(raw / "train.csv")
    train_locations, test_locations = split(np.asarray(table["location"].unique()), random_state=IWILDCAM_2019_SEED)
    in_test = table["location"].isin(test_locations)
    train, answers = table[~in_test], table[in_test]
    write_csv(answers, private / "test.csv")
    write_csv(answers[["id", "category_id"]].rename(columns={"id": "Id", "category_id": "Category"}),
              private / "answers.csv")
    write_csv(train, public / "train.csv")
    write_csv(answers.drop(columns=["category_id"]), public / "test.csv")
    sample = pd.DataFrame({"Id": answers["id"], "Category": 0}, index=answers.index)
    sample.to_csv(public / "sample_submission.csv", index=True, lineterminator="\n")
    names = [f"{i}.jpg" for i in table["id"]]
    _zipped_images(names, raw / "train_images", raw / "train_images.zip",
                   {public / "train_images.zip": [f"{i}.jpg" for i in train["id"]],
                    public / "test_images.zip": [f"{i}.jpg" for i in answers["id"]]})


# ---------------------------------------------------------------- iwildcam-2020-fgvc7

IWILDCAM_2020_TEST_SHARE = 0.22  # v1: 62,894 / (217,959 + 62,894)
IWILDCAM_2020_CLASSES = 676


def _iwildcam_2020_locations(images: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """v1's location split, then its adjustment loops, which move the last location of one side to the
    other while `test rows / (all rows + test rows)` is below, then above, 0.22 (v1's own ratio)."""
    train_loc, test_loc = split(np.asarray(images["location"].unique()), test_size=IWILDCAM_2020_TEST_SHARE)
    total = len(images)

    def share(locations: np.ndarray) -> float:
        n = int(images["location"].isin(locations).sum())
        return n / (total + n)

    while share(test_loc) < IWILDCAM_2020_TEST_SHARE:
        train_loc, test_loc = train_loc[:-1], np.append(test_loc, train_loc[-1])
    while share(test_loc) > IWILDCAM_2020_TEST_SHARE:
        test_loc, train_loc = test_loc[:-1], np.append(train_loc, test_loc[-1])
    return train_loc, test_loc


def iwildcam_2020(raw: Path, public: Path, private: Path) -> None:
    """Images of ~22% of the camera locations become the test set; the COCO-style JSONs are rebuilt.

    As v1, the JSON lists go through pandas (`DataFrame(...).to_dict("records")`), so a field missing
    from some records comes back as NaN in all of them, and are written with `json.dump` defaults.
    Answers: (Id, Category) of the test annotations in file order; the sample draws
    `np.random.seed(0); randint(0, 676)`. Images are copied from raw/train/ one at a time.
    """
    train_json = _load_json(raw / "iwildcam2020_train_annotations.json")
    test_json = _load_json(raw / "iwildcam2020_test_information.json")
    annotations = pd.DataFrame(train_json["annotations"])
    images = pd.DataFrame(train_json["images"])
    train_loc, test_loc = _iwildcam_2020_locations(images)
    train_images = images[images["location"].isin(train_loc)]
    test_images = images[images["location"].isin(test_loc)]
    train_ids, test_ids = train_images["id"].unique(), test_images["id"].unique()
    test_annotations = annotations[annotations["image_id"].isin(test_ids)]
    answers = test_annotations[["image_id", "category_id"]].rename(columns={"image_id": "Id", "category_id": "Category"})
    write_csv(answers, private / "answers.csv")
    draws = np.random.RandomState(0).randint(0, IWILDCAM_2020_CLASSES, size=len(answers))
    write_csv(answers.assign(Category=draws), public / "sample_submission.csv")
    _dump_json({"annotations": annotations[annotations["image_id"].isin(train_ids)].to_dict(orient="records"),
                "images": train_images.to_dict(orient="records"),
                "categories": pd.DataFrame(train_json["categories"]).to_dict(orient="records"),
                "info": train_json["info"]}, public / "iwildcam2020_train_annotations.json")
    _dump_json({"images": test_images.to_dict(orient="records"),
                "categories": pd.DataFrame(test_json["categories"]).to_dict(orient="records"),
                "info": test_json["info"]}, public / "iwildcam2020_test_information.json")
    del train_json, test_json, annotations
    shutil.copyfile(require_raw(raw / "iwildcam2020_megadetector_results.json"),
                    public / "iwildcam2020_megadetector_results.json")
    for part, ids in (("train", train_ids), ("test", test_ids)):
        (public / part).mkdir(exist_ok=True)
        for image_id in ids:
            _copy(raw / "train" / f"{image_id}.jpg", public / part / f"{image_id}.jpg")


# ---------------------------------------------------------------- hotel-id-2021-fgvc8

HOTEL_DUPLICATE_IMAGE = "ce27d36c9147cc19.jpg"  # v1 drops it: listed twice, it could land on both sides
HOTEL_SAMPLE = "36363 53586 18807 64314 60181"
HOTEL_COLUMNS = ["image", "chain", "hotel_id", "timestamp"]


def hotel_id_2021(raw: Path, public: Path, private: Path) -> None:
    """train.csv (without the twice-listed image) split 90/10 by row, random_state=0.

    Train images keep `train_images/<chain>/<image>`; test images go flat into test_images/. There is
    no public test table: the full test rows are the answers (private/test.csv). The sample predicts
    the same five hotels for every image.
    """
    table = read_exact(raw / "train.csv")
    require_columns(table, HOTEL_COLUMNS, raw / "train.csv")
    table = table[table["image"] != HOTEL_DUPLICATE_IMAGE]
    train, test = split(table)
    write_csv(train, public / "train.csv")
    write_csv(pd.DataFrame({"image": test["image"], "hotel_id": HOTEL_SAMPLE}), public / "sample_submission.csv")
    write_csv(test, private / "test.csv")
    for image, chain in zip(train["image"], train["chain"], strict=True):
        _copy(raw / "train_images" / str(chain) / image, public / "train_images" / str(chain) / image)
    (public / "test_images").mkdir(exist_ok=True)
    for image, chain in zip(test["image"], test["chain"], strict=True):
        _copy(raw / "train_images" / str(chain) / image, public / "test_images" / image)


# ---------------------------------------------------------------- imet-2020-fgvc7

IMET_TEST_SIZE = 0.15  # v1: 25,958 / (142,119 + 25,958), Kaggle's test share
IMET_SAMPLE = "0 1 2"


def imet_2020(raw: Path, public: Path, private: Path) -> None:
    """train.csv (id, attribute_ids) split 85/15 by row, random_state=0; labels.csv copied; images
    `<id>.png` copied from raw/train/ into public/train or public/test. The sample predicts "0 1 2"."""
    table = read_exact(raw / "train.csv")
    require_columns(table, ["id", "attribute_ids"], raw / "train.csv")
    train, answers = split(table, test_size=IMET_TEST_SIZE)
    write_csv(answers, private / "answers.csv")
    write_csv(train, public / "train.csv")
    write_csv(answers.assign(attribute_ids=IMET_SAMPLE), public / "sample_submission.csv")
    shutil.copyfile(require_raw(raw / "labels.csv"), public / "labels.csv")
    for part, frame in (("train", train), ("test", answers)):
        (public / part).mkdir(exist_ok=True)
        for image_id in frame["id"]:
            _copy(raw / "train" / f"{image_id}.png", public / part / f"{image_id}.png")


# ---------------------------------------------------------------- cdiscount-image-classification-challenge

CDISCOUNT_SAMPLE = 1000010653  # v1's constant category
CDISCOUNT_EXAMPLE_ROWS = 100  # train_example.bson: the first products of the new train.bson


def _bson_products(path: Path) -> Iterator[dict]:
    import bson  # pymongo's package, as v1 imports it

    with open(require_raw(path), "rb") as fh:
        yield from bson.decode_file_iter(fh)


def _bson_ids(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(_id, category_id) of every product, as two packed integer arrays (8 bytes a value, not a frame of
    dicts: train.bson has 7 M products)."""
    ids, categories = array("q"), array("q")
    for product in _bson_products(path):
        ids.append(product["_id"])
        categories.append(product["category_id"])
    return np.frombuffer(ids, dtype=np.int64), np.frombuffer(categories, dtype=np.int64)


def cdiscount(raw: Path, public: Path, private: Path) -> None:
    """10% of train.bson's products (train_test_split by position, random_state=0) become the test set.

    A second pass over train.bson writes each product, decoded and re-encoded by pymongo's bson as v1
    does, to public/train.bson or, without category_id, to public/test.bson (file order kept); the first
    100 train products also go to train_example.bson. Answers are sorted by _id; the sample predicts
    one category. Kaggle's own test.bson is not used.
    """
    import bson

    ids, categories = _bson_ids(raw / "train.bson")
    train_rows, test_rows = train_test_split(np.arange(len(ids)), test_size=0.1, random_state=SEED)
    answers = pd.DataFrame({"_id": ids[test_rows], "category_id": categories[test_rows]}).sort_values(by="_id")
    write_csv(answers, private / "answers.csv")
    write_csv(pd.DataFrame({"_id": answers["_id"], "category_id": CDISCOUNT_SAMPLE}), public / "sample_submission.csv")
    in_test = np.zeros(len(ids), dtype=bool)
    in_test[test_rows] = True
    del ids, categories, answers
    written = 0
    with open(public / "train.bson", "wb") as train, open(public / "test.bson", "wb") as test, \
            open(public / "train_example.bson", "wb") as example:
        for position, product in enumerate(_bson_products(raw / "train.bson")):
            if in_test[position]:
                product.pop("category_id", None)
                test.write(bson.encode(product))
                continue
            data = bson.encode(product)
            train.write(data)
            if written < CDISCOUNT_EXAMPLE_ROWS:
                example.write(data)
                written += 1
    shutil.copyfile(require_raw(raw / "category_names.csv"), public / "category_names.csv")
