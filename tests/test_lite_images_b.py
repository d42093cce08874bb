"""Five Lite image competitions, prepared from synthetic Kaggle-shaped downloads and graded.

histopathologic-cancer-detection, leaf-classification, plant-pathology-2020-fgvc7,
ranzcr-clip-catheter-line-classification, siim-isic-melanoma-classification. Each `make_raw_*`
writes what extracting Kaggle's zip gives (names, folders, columns, dtypes), with tiny images in the
real formats; siim-isic's TFRecords are real TFRecord files of tf.train.Example records, written by
the small encoder below, so the preparer's reader is tested against the wire format.
"""

from __future__ import annotations

import io
import math
import struct
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lite_support import Prepared, run_checks
from PIL import Image
from sklearn.model_selection import train_test_split

from hpc_mle import grading
from hpc_mle.prepare import tfrecord
from hpc_mle.prepare.images import LEAF_SPECIES, PLANT_LABELS
from hpc_mle.prepare.medical import RANZCR_LABELS, RANZCR_SCORED

# ---------------------------------------------------------------- tiny files in the real formats


def image_bytes(fmt: str, value: int, mode: str = "RGB", size: int = 8) -> bytes:
    """A small image whose first 16 pixels spell `value` in black and white, so each file is distinct."""
    bits = [(value >> k) & 1 for k in range(16)]
    pixels = np.full(size * size, 128, dtype=np.uint8)
    pixels[:16] = np.array(bits, dtype=np.uint8) * 255
    image = Image.fromarray(pixels.reshape(size, size), mode="L").convert(mode)
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def write_images(folder: Path, names: list[str], fmt: str, suffix: str, mode: str = "RGB", start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (folder / f"{name}{suffix}").write_bytes(image_bytes(fmt, start + i, mode))


def fake_dicom(name: str) -> bytes:
    """Not a decodable DICOM: the preamble, magic and a name are enough for a preparer that only copies."""
    return b"\0" * 128 + b"DICM" + name.encode()


def zip_members(archive: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def hex_ids(rng: np.random.Generator, n: int, nbytes: int = 20) -> list[str]:
    ids = {rng.bytes(nbytes).hex() for _ in range(n)}
    assert len(ids) == n
    return sorted(ids, key=lambda _: rng.random())


def files_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# ---------------------------------------------------------------- histopathologic-cancer-detection

HISTO_TRAIN, HISTO_TEST = 230, 57


def make_raw_histopathologic(raw: Path, rng: np.random.Generator) -> None:
    """train/ and test/ of .tif patches, train_labels.csv (id,label), sample_submission.csv."""
    ids = hex_ids(rng, HISTO_TRAIN + HISTO_TEST)
    train_ids, test_ids = ids[:HISTO_TRAIN], ids[HISTO_TRAIN:]
    pd.DataFrame({"id": train_ids, "label": rng.integers(0, 2, HISTO_TRAIN)}).to_csv(
        raw / "train_labels.csv", index=False)
    pd.DataFrame({"id": test_ids, "label": 0}).to_csv(raw / "sample_submission.csv", index=False)
    write_images(raw / "train", train_ids, "TIFF", ".tif")
    write_images(raw / "test", test_ids, "TIFF", ".tif", start=HISTO_TRAIN)


def test_histopathologic_cancer_detection(tmp_path):
    # v1: test share = |Kaggle test| / (|train| + |Kaggle test|); sklearn rounds the test count up.
    n_test = math.ceil(HISTO_TRAIN * HISTO_TEST / (HISTO_TRAIN + HISTO_TEST))
    p = run_checks("histopathologic-cancer-detection", make_raw_histopathologic, tmp_path,
                   public={"train_labels.csv", "sample_submission.csv", "train", "test"},
                   private={"answers.csv"}, test_rows=n_test, sample_score=0.5, perfect_score=1.0)
    raw = pd.read_csv(p.data_dir / "histopathologic-cancer-detection" / "raw" / "train_labels.csv")
    answers, train = p.answers(), pd.read_csv(p.public / "train_labels.csv")
    assert len(train) + len(answers) == HISTO_TRAIN
    # Both parts keep the order of train_labels.csv (v1 filters it with isin).
    for part in (answers, train):
        assert list(part["id"]) == [i for i in raw["id"] if i in set(part["id"])]
    assert files_in(p.public / "test") == {f"{i}.tif" for i in answers["id"]}
    assert files_in(p.public / "train") == {f"{i}.tif" for i in train["id"]}
    assert (pd.read_csv(p.sample_path())["label"] == 0).all()


# ---------------------------------------------------------------- leaf-classification

LEAF_TRAIN, LEAF_TEST = 300, 100
LEAF_FEATURES = [f"{kind}{i}" for kind in ("margin", "shape", "texture") for i in range(1, 65)]


def leaf_frame(ids: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    values = np.round(rng.random((len(ids), len(LEAF_FEATURES))) * 0.1, 6)
    return pd.DataFrame(values, columns=LEAF_FEATURES).assign(id=ids)[["id", *LEAF_FEATURES]]


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def make_raw_leaf(raw: Path, rng: np.random.Generator) -> None:
    """Kaggle nests zips: train.csv.zip, test.csv.zip, sample_submission.csv.zip, images.zip (images/<id>.jpg)."""
    ids = rng.permutation(np.arange(1, LEAF_TRAIN + LEAF_TEST + 1))
    train_ids, test_ids = np.sort(ids[:LEAF_TRAIN]), np.sort(ids[LEAF_TRAIN:])
    train = leaf_frame(train_ids, rng)
    train.insert(1, "species", rng.choice(LEAF_SPECIES, LEAF_TRAIN))
    sample = pd.DataFrame({"id": test_ids, **{s: 1 / len(LEAF_SPECIES) for s in LEAF_SPECIES}})
    zip_members(raw / "train.csv.zip", {"train.csv": csv_bytes(train)})
    zip_members(raw / "test.csv.zip", {"test.csv": csv_bytes(leaf_frame(test_ids, rng))})
    zip_members(raw / "sample_submission.csv.zip", {"sample_submission.csv": csv_bytes(sample)})
    zip_members(raw / "images.zip", {f"images/{i}.jpg": image_bytes("JPEG", int(i), "L") for i in ids})


def test_leaf_classification(tmp_path):
    p = run_checks("leaf-classification", make_raw_leaf, tmp_path,
                   public={"train.csv", "test.csv", "sample_submission.csv", "images"},
                   private={"test.csv"}, test_rows=LEAF_TRAIN // 10, sample_score=4.59512, perfect_score=0.0)
    raw_train = pd.read_csv(p.data_dir / "leaf-classification" / "raw" / "train.csv")
    answers, train, test = p.answers(), pd.read_csv(p.public / "train.csv"), pd.read_csv(p.public / "test.csv")
    # Rows in train_test_split(test_size=0.1, random_state=0) order, as v1 writes them.
    want_train, want_test = train_test_split(raw_train, test_size=0.1, random_state=0)
    assert list(answers["id"]) == list(test["id"]) == list(want_test["id"])
    assert list(train["id"]) == list(want_train["id"])
    assert list(answers.columns) == ["id", *LEAF_SPECIES] and (answers[list(LEAF_SPECIES)].sum(axis=1) == 1).all()
    assert list(test.columns) == ["id", *LEAF_FEATURES]
    # Floats are written back with the digits they were read with.
    raw_lines = set((p.data_dir / "leaf-classification" / "raw" / "train.csv").read_text().splitlines())
    assert set((p.public / "train.csv").read_text().splitlines()[1:]) <= raw_lines
    assert "0.010101010101010102" in p.sample_path().read_text().splitlines()[1]
    # Images of the new train and test rows only; none of Kaggle's own test leaves.
    assert files_in(p.public / "images") == {f"{i}.jpg" for i in raw_train["id"]}


# ---------------------------------------------------------------- plant-pathology-2020-fgvc7

PLANT_TRAIN, PLANT_TEST = 300, 60


def make_raw_plant(raw: Path, rng: np.random.Generator) -> None:
    """images/Train_<n>.jpg and Test_<n>.jpg, train.csv (one-hot labels), test.csv, sample_submission.csv."""
    train_ids = [f"Train_{i}" for i in range(PLANT_TRAIN)]
    test_ids = [f"Test_{i}" for i in range(PLANT_TEST)]
    label = rng.choice(len(PLANT_LABELS), PLANT_TRAIN, p=[0.3, 0.15, 0.3, 0.25])
    onehot = {name: (label == j).astype(np.int64) for j, name in enumerate(PLANT_LABELS)}
    pd.DataFrame({"image_id": train_ids, **onehot}).to_csv(raw / "train.csv", index=False)
    pd.DataFrame({"image_id": test_ids}).to_csv(raw / "test.csv", index=False)
    pd.DataFrame({"image_id": test_ids, **{c: 0.25 for c in PLANT_LABELS}}).to_csv(
        raw / "sample_submission.csv", index=False)
    write_images(raw / "images", train_ids + test_ids, "JPEG", ".jpg")


def test_plant_pathology_2020_fgvc7(tmp_path):
    p = run_checks("plant-pathology-2020-fgvc7", make_raw_plant, tmp_path,
                   public={"train.csv", "test.csv", "sample_submission.csv", "images"},
                   private={"test.csv"}, test_rows=PLANT_TRAIN // 10, sample_score=0.5, perfect_score=1.0)
    raw = p.data_dir / "plant-pathology-2020-fgvc7" / "raw"
    old = pd.read_csv(raw / "train.csv").set_index("image_id")
    answers, train = p.answers(), pd.read_csv(p.public / "train.csv")
    # New names in split order; each image copied under its new name with its own labels.
    assert list(answers["image_id"]) == [f"Test_{i}" for i in range(len(answers))]
    assert list(train["image_id"]) == [f"Train_{i}" for i in range(len(train))]
    assert list(pd.read_csv(p.public / "test.csv")["image_id"]) == list(answers["image_id"])
    by_bytes = {(raw / "images" / f"{i}.jpg").read_bytes(): i for i in old.index}
    assert files_in(p.public / "images") == {f"{i}.jpg" for i in [*answers["image_id"], *train["image_id"]]}
    for frame in (answers, train):
        for row in frame.itertuples(index=False):
            original = by_bytes[(p.public / "images" / f"{row.image_id}.jpg").read_bytes()]
            assert tuple(old.loc[original]) == tuple(row[1:])
    # No range check in v1's grader: scores outside [0, 1] are ranked as they are.
    scaled = p.gold().assign(**{c: p.gold()[c] * 10 - 3 for c in PLANT_LABELS})
    assert grade(p, scaled, tmp_path).score == 1.0


def grade(p: Prepared, frame: pd.DataFrame, tmp: Path, name: str = "sub") -> grading.CompetitionReport:
    path = tmp / f"{name}.csv"
    frame.to_csv(path, index=False)
    return grading.grade_submission(path, p.spec.id, p.data_dir)


# ---------------------------------------------------------------- ranzcr-clip-catheter-line-classification

RANZCR_TRAIN, RANZCR_TEST = 300, 20


def study_uids(rng: np.random.Generator, n: int) -> list[str]:
    uids = {"1.2.826.0.1.3680043.8.498." + str(rng.integers(1, 10)) + "".join(map(str, rng.integers(0, 10, 37)))
            for _ in range(n)}
    assert len(uids) == n
    return sorted(uids)


def make_raw_ranzcr(raw: Path, rng: np.random.Generator) -> None:
    """train/ and test/ JPEGs, train.csv (11 labels + PatientID), train_annotations.csv, sample_submission.csv."""
    uids = study_uids(rng, RANZCR_TRAIN + RANZCR_TEST)
    train_uids, test_uids = uids[:RANZCR_TRAIN], uids[RANZCR_TRAIN:]
    labels = {name: rng.binomial(1, 0.4, RANZCR_TRAIN) for name in RANZCR_LABELS}
    patients = [rng.bytes(5).hex()[:9] for _ in range(RANZCR_TRAIN)]
    pd.DataFrame({"StudyInstanceUID": train_uids, **labels, "PatientID": patients}).to_csv(
        raw / "train.csv", index=False)
    annotated = rng.choice(train_uids, 120)
    pd.DataFrame({
        "StudyInstanceUID": annotated,
        "label": rng.choice(RANZCR_LABELS[:9], len(annotated)),
        "data": [str([[int(x), int(y)] for x, y in rng.integers(0, 3000, (3, 2))]) for _ in annotated],
    }).to_csv(raw / "train_annotations.csv", index=False)
    pd.DataFrame({"StudyInstanceUID": test_uids, **{c: 0 for c in RANZCR_LABELS}}).to_csv(
        raw / "sample_submission.csv", index=False)
    write_images(raw / "train", train_uids, "JPEG", ".jpg", "L")
    write_images(raw / "test", test_uids, "JPEG", ".jpg", "L")


def test_ranzcr_clip_catheter_line_classification(tmp_path):
    p = run_checks("ranzcr-clip-catheter-line-classification", make_raw_ranzcr, tmp_path,
                   public={"train.csv", "train_annotations.csv", "sample_submission.csv", "train", "test"},
                   private={"test.csv"}, test_rows=RANZCR_TRAIN // 10, sample_score=0.5, perfect_score=1.0)
    assert p.spec.status.state == "known-issue" and p.spec.status.upstream_issue == 30
    answers, train = p.answers(), pd.read_csv(p.public / "train.csv")
    # Known issue #30: answers keep all 11 labels, the sample asks for (and the grader scores) 9.
    assert list(answers.columns) == ["StudyInstanceUID", *RANZCR_LABELS, "PatientID"]
    assert list(pd.read_csv(p.sample_path()).columns) == ["StudyInstanceUID", *RANZCR_SCORED]
    assert files_in(p.public / "test") == {f"{u}.jpg" for u in answers["StudyInstanceUID"]}
    assert files_in(p.public / "train") == {f"{u}.jpg" for u in train["StudyInstanceUID"]}
    raw = pd.read_csv(p.data_dir / p.spec.id / "raw" / "train_annotations.csv")
    public_ann = pd.read_csv(p.public / "train_annotations.csv")
    assert public_ann.equals(raw[raw["StudyInstanceUID"].isin(train["StudyInstanceUID"])].reset_index(drop=True))

    gold = answers[["StudyInstanceUID", *RANZCR_SCORED]]
    unscored = gold.assign(**{"CVC - Normal": 0.5, "Swan Ganz Catheter Present": 0.5})
    assert grade(p, unscored, tmp_path).score == 1.0  # the 2 extra labels are ignored
    out_of_range = gold.assign(**{"ETT - Normal": gold["ETT - Normal"] * 2.0})
    report = grade(p, out_of_range, tmp_path)
    assert not report.valid_submission and "[0, 1]" in report.reason


# ---------------------------------------------------------------- siim-isic-melanoma-classification

SIIM_SHARDS, SIIM_PER_SHARD, SIIM_KAGGLE_TEST = 8, 12, 20


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def tf_example(features: dict[str, bytes | int]) -> bytes:
    """A serialized tf.train.Example: bytes -> Feature.bytes_list (1) = BytesList{value (1)}, int ->
    Feature.int64_list (3) = Int64List{value (1), packed: one length-delimited run of varints}."""
    entries = b""
    for key, value in features.items():
        if isinstance(value, bytes):
            feature = pb_field(1, pb_field(1, value))
        else:
            feature = pb_field(3, pb_field(1, varint(value & (2**64 - 1))))  # int64: two's complement
        entries += pb_field(1, pb_field(1, key.encode()) + pb_field(2, feature))
    return pb_field(1, entries)


def write_tfrecord(path: Path, examples: list[bytes]) -> None:
    with open(path, "wb") as fh:
        for data in examples:
            length = struct.pack("<Q", len(data))
            fh.write(length + struct.pack("<I", tfrecord.masked_crc32c(length)))
            fh.write(data + struct.pack("<I", tfrecord.masked_crc32c(data)))


def siim_frame(names: list[str], rng: np.random.Generator) -> pd.DataFrame:
    n = len(names)
    age = rng.choice([25.0, 40.0, 55.0, 70.0], n)
    age[rng.random(n) < 0.1] = np.nan
    site = rng.choice(["torso", "lower extremity", "head/neck"], n).astype(object)
    site[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({"image_name": names, "patient_id": [f"IP_{rng.integers(10**6, 10**7)}" for _ in names],
                         "sex": rng.choice(["male", "female"], n), "age_approx": age,
                         "anatom_site_general_challenge": site})


def make_raw_siim(raw: Path, rng: np.random.Generator) -> None:
    """train/ test/ (.dcm), jpeg/train jpeg/test (.jpg), tfrecords/train<nn>-<k>.tfrec and test<nn>-<k>.tfrec,
    train.csv, test.csv, sample_submission.csv. Images are spread over the shards in random order."""
    n_train = SIIM_SHARDS * SIIM_PER_SHARD
    names = [f"ISIC_{i:07d}" for i in rng.choice(10**7, n_train + SIIM_KAGGLE_TEST, replace=False)]
    train_names, test_names = names[:n_train], names[n_train:]
    train = siim_frame(train_names, rng)
    target = (rng.random(n_train) < 0.25).astype(np.int64)
    train["diagnosis"] = np.where(target == 1, "melanoma", "nevus")
    train["benign_malignant"] = np.where(target == 1, "malignant", "benign")
    train["target"] = target
    train.to_csv(raw / "train.csv", index=False)
    siim_frame(test_names, rng).to_csv(raw / "test.csv", index=False)
    pd.DataFrame({"image_name": test_names, "target": 0}).to_csv(raw / "sample_submission.csv", index=False)

    for part, part_names in (("train", train_names), ("test", test_names)):
        (raw / part).mkdir()
        for name in part_names:
            (raw / part / f"{name}.dcm").write_bytes(fake_dicom(name))
        write_images(raw / "jpeg" / part, part_names, "JPEG", ".jpg")

    (raw / "tfrecords").mkdir()
    order = rng.permutation(n_train)
    for s in range(SIIM_SHARDS):
        rows = train.iloc[order[s * SIIM_PER_SHARD:(s + 1) * SIIM_PER_SHARD]]
        write_tfrecord(raw / "tfrecords" / f"train{s:02d}-{SIIM_PER_SHARD}.tfrec", [
            tf_example({"image": image_bytes("JPEG", s), "image_name": r.image_name.encode(),
                        "patient_id": r.patient_id.encode(), "target": int(r.target), "width": 8})
            for r in rows.itertuples()])
    write_tfrecord(raw / "tfrecords" / f"test00-{SIIM_KAGGLE_TEST}.tfrec",
                   [tf_example({"image": b"x", "image_name": n.encode()}) for n in test_names])


def test_siim_isic_melanoma_classification(tmp_path):
    p = run_checks("siim-isic-melanoma-classification", make_raw_siim, tmp_path,
                   public={"train.csv", "test.csv", "sample_submission.csv", "train", "test", "jpeg", "tfrecords"},
                   private={"test.csv"}, test_rows=2 * SIIM_PER_SHARD, sample_score=0.5, perfect_score=1.0)
    raw = p.data_dir / p.spec.id / "raw"
    shard_names = {s: set(tfrecord.string_feature(raw / "tfrecords" / f"train{s:02d}-{SIIM_PER_SHARD}.tfrec",
                                                  "image_name")) for s in range(SIIM_SHARDS)}
    answers, train = p.answers(), pd.read_csv(p.public / "train.csv")
    assert set(answers["image_name"]) == shard_names[0] | shard_names[6]
    old = pd.read_csv(raw / "train.csv")
    assert list(answers["image_name"]) == [n for n in old["image_name"] if n in set(answers["image_name"])]
    assert list(pd.read_csv(p.public / "test.csv").columns) == list(old.columns[:5])
    assert list(train.columns) == list(old.columns)
    # Every image in the folders of its part, in both formats.
    for part, names in (("test", answers["image_name"]), ("train", train["image_name"])):
        assert files_in(p.public / part) == {f"{n}.dcm" for n in names}
        assert files_in(p.public / "jpeg" / part) == {f"{n}.jpg" for n in names}
    # Shards renumbered in sorted order; Kaggle's own test shard is not copied.
    k = SIIM_PER_SHARD
    renamed = {"test00": "train00", "test01": "train06", **{f"train{i:02d}": f"train{s:02d}"
               for i, s in enumerate(s for s in range(SIIM_SHARDS) if s not in (0, 6))}}
    assert files_in(p.public / "tfrecords") == {f"{new}-{k}.tfrec" for new in renamed}
    for new, old_name in renamed.items():
        assert (p.public / "tfrecords" / f"{new}-{k}.tfrec").read_bytes() == \
            (raw / "tfrecords" / f"{old_name}-{k}.tfrec").read_bytes()


# ---------------------------------------------------------------- the TFRecord reader on its own


def example_class():
    """tf.train.Example's schema (tensorflow/core/example/{example,feature}.proto) built with protobuf
    itself, the parser TensorFlow uses, so the fixture's records are checked without TensorFlow."""
    protobuf = pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    del protobuf
    f = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="fixture_example.proto", package="fixture", syntax="proto3")
    for name, kind in (("BytesList", f.TYPE_BYTES), ("FloatList", f.TYPE_FLOAT), ("Int64List", f.TYPE_INT64)):
        proto.message_type.add(name=name).field.add(name="value", number=1, type=kind, label=f.LABEL_REPEATED)
    feature = proto.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, name, kind in ((1, "bytes_list", "BytesList"), (2, "float_list", "FloatList"),
                               (3, "int64_list", "Int64List")):
        feature.field.add(name=name, number=number, type=f.TYPE_MESSAGE, type_name=f".fixture.{kind}",
                          label=f.LABEL_OPTIONAL, oneof_index=0)
    features = proto.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=f.TYPE_MESSAGE, type_name=".fixture.Feature", label=f.LABEL_OPTIONAL)
    features.field.add(name="feature", number=1, type=f.TYPE_MESSAGE, type_name=".fixture.Features.FeatureEntry",
                       label=f.LABEL_REPEATED)
    proto.message_type.add(name="Example").field.add(name="features", number=1, type=f.TYPE_MESSAGE,
                                                     type_name=".fixture.Features", label=f.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("fixture.Example"))


def test_fixture_records_parse_as_tf_train_example(tmp_path):
    """The siim fixture's records are what TensorFlow writes: ints in a packed Int64List.value."""
    Example = example_class()
    record = tf_example({"image_name": b"ISIC_0000001", "target": 1, "width": 300, "offset": -2})
    parsed = Example.FromString(record)  # strict: a malformed Int64List raises DecodeError
    feature = parsed.features.feature
    assert feature["image_name"].bytes_list.value == [b"ISIC_0000001"]
    assert [feature[k].int64_list.value[0] for k in ("target", "width", "offset")] == [1, 300, -2]
    # Hand-encoded: Feature{3: Int64List{1: packed [1]}} = 1a 03 0a 01 01
    assert bytes.fromhex("1a030a0101") in record
    # Our reader on the same, valid, records inside a TFRecord file.
    path = tmp_path / "train00-2.tfrec"
    write_tfrecord(path, [record, tf_example({"image_name": b"ISIC_0000002", "target": 0})])
    assert tfrecord.string_feature(path, "image_name") == ["ISIC_0000001", "ISIC_0000002"]
    assert [Example.FromString(r).features.feature["target"].int64_list.value[0]
            for r in tfrecord.records(path)] == [1, 0]


def test_crc32c_matches_the_standard_check_value():
    assert tfrecord.crc32c(b"123456789") == 0xE3069283


def test_tfrecord_reader_reads_names_and_refuses_damaged_files(tmp_path):
    path = tmp_path / "train00-3.tfrec"
    examples = [tf_example({"image": bytes(300), "image_name": f"ISIC_{i}".encode(), "target": i}) for i in range(3)]
    write_tfrecord(path, examples)
    assert tfrecord.string_feature(path, "image_name") == ["ISIC_0", "ISIC_1", "ISIC_2"]
    with pytest.raises(tfrecord.TFRecordError, match="no feature 'patient_id'"):
        tfrecord.string_feature(path, "patient_id")

    data = path.read_bytes()
    (tmp_path / "cut.tfrec").write_bytes(data[:-10])
    with pytest.raises(tfrecord.TFRecordError, match="truncated"):
        tfrecord.string_feature(tmp_path / "cut.tfrec", "image_name")
    (tmp_path / "bad.tfrec").write_bytes(data[:3] + b"\xff" + data[4:])
    with pytest.raises(tfrecord.TFRecordError, match="bad length checksum"):
        tfrecord.string_feature(tmp_path / "bad.tfrec", "image_name")


# The synthetic downloads of this module, for tests/synthetic_downloads.py.
MAKERS = {
    "histopathologic-cancer-detection": make_raw_histopathologic,
    "leaf-classification": make_raw_leaf,
    "plant-pathology-2020-fgvc7": make_raw_plant,
    "ranzcr-clip-catheter-line-classification": make_raw_ranzcr,
    "siim-isic-melanoma-classification": make_raw_siim,
}
