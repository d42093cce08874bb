"""The five segmentation competitions on synthetic Kaggle-shaped downloads.

Each `make_*` writes what extracting the competition's Kaggle download gives (file names, folders,
formats: .npy bands, TIFF slides, PNG scans in zips and case folders, TIF layers) with tiny made-up
images; `lite_support.run_checks` prepares it with the real preparer and checks layout, leaks, grading
and medals. Each test then pins v1's split, and grades many submissions against `v1_*` below: a plain
re-statement of v1's graders on full pixel masks (the facts' rules, one image at a time), which the
run-based graders must match to the last digit.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path

import lite_support
import numpy as np
import pandas as pd
from lite_support import Prepared, run_checks
from PIL import Image
from scipy.spatial.distance import directed_hausdorff
from sklearn.metrics import fbeta_score
from sklearn.model_selection import train_test_split
from test_fuzz_grading import structural_mutations
from test_rle_masks import oracle

from hpc_mle import grading
from hpc_mle.grading import round_score


def _grade(p: Prepared, frame: pd.DataFrame, tmp: Path, mode: str = "v1") -> grading.CompetitionReport:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "sub.csv"
    frame.to_csv(path, index=False)
    return grading.grade_submission(path, p.spec.id, p.data_dir, mode)


def _rle(mask: np.ndarray) -> str:
    """Column-major "start length" pairs, written out independently of hpc_mle.rle."""
    flat = mask.T.ravel().astype(bool).tolist()
    out, i = [], 0
    while i < len(flat):
        if flat[i]:
            j = i
            while j < len(flat) and flat[j]:
                j += 1
            out += [i + 1, j - i]
            i = j
        else:
            i += 1
    return " ".join(map(str, out))


def _blob(rng: np.random.Generator, h: int, w: int, empty: float = 0.2) -> np.ndarray:
    mask = np.zeros((h, w), dtype=np.uint8)
    if rng.random() >= empty:
        y, x = rng.integers(0, h - 1), rng.integers(0, w - 1)
        mask[y:y + int(rng.integers(1, h)), x:x + int(rng.integers(1, w))] = 1
    return mask


def _v1_mask(text, h: int, w: int) -> np.ndarray:
    """v1's decoder on one cell (None where it raised): column-major, shape (h, w)."""
    flat = oracle(text, h * w) if isinstance(text, str) else None
    return None if flat is None else flat.reshape(w, h).T


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _mutants(gold: pd.DataFrame, column: str, sizes: list[tuple[int, int]], rng: np.random.Generator) -> list:
    """Submissions around the gold one: emptied, filled, shifted, random and malformed masks."""
    out = []
    for k in range(8):
        sub = gold.copy().astype({column: object})
        for i, (h, w) in enumerate(sizes):
            pick = (k + i) % 6
            if pick == 0:
                sub.loc[sub.index[i], column] = ""
            elif pick == 1:
                sub.loc[sub.index[i], column] = f"1 {h * w}"
            elif pick == 2:
                sub.loc[sub.index[i], column] = _rle(_blob(rng, h, w, empty=0.0))
            elif pick == 3:
                sub.loc[sub.index[i], column] = f"{int(rng.integers(1, h * w))} {h * w}"  # runs past the image
        out.append(sub)
    return out


def _check_against_v1(p: Prepared, subs: list[pd.DataFrame], v1, tmp: Path) -> None:
    for sub in subs:
        report = _grade(p, sub, tmp)
        want = v1(pd.read_csv(tmp / "sub.csv"), p.answers())  # the file as both graders read it
        if want is None:
            assert not report.valid_submission and report.reason and not report.grader_error, report.reason
        else:
            assert report.valid_submission, report.reason
            assert report.score == round_score(want) or (np.isnan(want) and np.isnan(report.score)), (report, want)


def _fuzz(p: Prepared, tmp: Path, valid_ok: set[str] = frozenset()) -> None:
    """The grading fuzz's structural mutations plus malformed masks: never a grader error; invalid ones
    say why; valid only where v1 is lax."""
    tmp.mkdir(parents=True, exist_ok=True)
    sample = pd.read_csv(p.sample_path())
    ids, cols = list(p.spec.submission.id_columns), list(p.spec.submission.answer_columns)
    rng = np.random.default_rng(0)
    failures = []
    for mutate in structural_mutations(ids, cols):
        try:
            content = mutate(sample, rng)
        except ValueError:  # a mutation that needs more rows than the file has
            continue
        path = tmp / f"{mutate.__name__}.csv"
        path.write_bytes(content)
        report = grading.grade_submission(path, p.spec.id, p.data_dir)
        if report.grader_error or (report.valid_submission and mutate.__name__ not in valid_ok) \
                or (not report.valid_submission and not report.reason):
            failures.append((mutate.__name__, report.reason))
    for bad in ("1.5 2", "0 3", "3 0", "-2 2", "4 2 1 1", "1 5 3 2", "1 2 3 4 5", "abc", "1 2e3", "0x10 2"):
        frame = sample.copy().astype({cols[0]: object})
        frame.loc[frame.index[0], cols[0]] = bad
        report = _grade(p, frame, tmp)
        if report.valid_submission or report.grader_error or not report.reason:
            failures.append((bad, report.reason))
    assert not failures, failures[:5]


# ---------------------------------------------------------------- google-research-identify-contrails

CONTRAILS = "google-research-identify-contrails-reduce-global-warming"


def _contrail_record(folder: Path, rng: np.random.Generator, labelled: bool, empty: bool = False) -> None:
    folder.mkdir(parents=True)
    for band in range(8, 17):
        np.save(folder / f"band_{band:02}.npy", rng.normal(280, 5, size=(8, 8, 2)).astype(np.float32))
    if labelled:
        mask = _blob(rng, 8, 8, empty=1.0 if empty else 0.0)
        np.save(folder / "human_pixel_masks.npy", mask[:, :, None].astype(np.int32))
        np.save(folder / "human_individual_masks.npy", np.stack([mask, mask], axis=-1)[:, :, None, :].astype(np.int32))


def make_contrails(raw: Path, rng: np.random.Generator) -> None:
    def meta(n: int) -> list[dict]:
        return [{"record_id": str(int(rng.integers(10**18, 9 * 10**18))), "projection_wkt": "PROJCS[\"unknown\"]",
                 "row_min": float(rng.uniform(-3e6, 3e6)), "row_size": 2000.5, "col_min": -1e6, "col_size": 2000.0,
                 "timestamp": "2019-05-01 12:00:00"} for _ in range(n)]

    train, validation = meta(14), meta(3)
    for folder, records, labelled in (("train", train, True), ("validation", validation, True),
                                      ("test", meta(2), False)):
        for k, record in enumerate(records):
            _contrail_record(raw / folder / record["record_id"], rng, labelled, empty=k % 5 == 1)
    (raw / "train_metadata.json").write_text(json.dumps(train))
    (raw / "validation_metadata.json").write_text(json.dumps(validation))
    pd.DataFrame({"record_id": [1000834164244036115, 1002653297254493116], "encoded_pixels": ["1 3 10 5", "-"]}
                 ).to_csv(raw / "sample_submission.csv", index=False)


def v1_contrails(sub: pd.DataFrame, answers: pd.DataFrame) -> float | None:
    if len(sub) != len(answers) or not {"record_id", "encoded_pixels"} <= set(sub.columns):
        return None
    sub, answers = sub.sort_values("record_id"), answers.sort_values("record_id")
    if (sub["record_id"].to_numpy() != answers["record_id"].to_numpy()).any():
        return None
    inter = total = 0
    for pred, truth, h, w in zip(sub["encoded_pixels"], answers["encoded_pixels"], answers["height"],
                                 answers["width"], strict=True):
        p = _v1_mask("" if pred == "-" else pred, h, w)
        t = _v1_mask("" if truth == "-" else truth, h, w)
        if p is None:
            return None
        inter, total = inter + int((p & t).sum()), total + int(p.sum() + t.sum())
    return np.nan if total == 0 else 2 * inter / total


def test_contrails(tmp_path, monkeypatch):
    # Only record_id and encoded_pixels are read; the sample's height and width columns may go.
    monkeypatch.setattr(lite_support, "broken", lambda frame: frame.drop(columns=["encoded_pixels"]))
    p = run_checks(CONTRAILS, make_contrails, tmp_path,
                   public={"train", "test", "validation", "train_metadata.json", "validation_metadata.json",
                           "sample_submission.csv"},
                   private={"answers.csv"}, test_rows=3, perfect_score=1.0)
    raw = p.data_dir / CONTRAILS / "raw"
    meta = json.loads((raw / "train_metadata.json").read_text())
    want_train, want_test = train_test_split(meta, test_size=3, random_state=0)
    assert (p.public / "train_metadata.json").read_text() == json.dumps(want_train)
    answers = p.answers()
    assert answers["record_id"].astype(str).tolist() == [m["record_id"] for m in want_test]
    assert list(answers.columns) == ["record_id", "encoded_pixels", "height", "width"]
    for m, text in zip(want_test, answers["encoded_pixels"], strict=True):
        mask = np.load(raw / "train" / m["record_id"] / "human_pixel_masks.npy")[:, :, 0]
        assert text == (_rle(mask) or "-")
        assert sorted(x.name for x in (p.public / "test" / m["record_id"]).iterdir()) == \
            [f"band_{b:02}.npy" for b in range(8, 17)]
    assert len(list((p.public / "train" / want_train[0]["record_id"]).iterdir())) == 11
    assert sorted(x.name for x in (p.public / "validation").iterdir()) == sorted(x.name for x in (raw / "validation").iterdir())
    sample = pd.read_csv(p.sample_path())
    assert set(sample["encoded_pixels"]) <= {"1 3 10 5", "-"} and list(sample.columns) == list(answers.columns)
    assert _grade(p, sample, tmp_path / "s").score == round_score(v1_contrails(sample, answers))

    gold, subs = answers[["record_id", "encoded_pixels"]], tmp_path / "subs2"
    assert _grade(p, gold.iloc[::-1], subs).score == 1.0  # rows paired by sorted record_id
    # '-' is the empty mask; an empty cell is invalid; every mask empty on both sides: NaN, valid.
    assert not _grade(p, gold.assign(encoded_pixels=np.nan), subs).valid_submission
    all_empty = gold.assign(encoded_pixels="-")
    monkeypatch.setattr(grading, "load_answers", lambda spec, data_dir=None: all_empty.assign(height=8, width=8))
    report = _grade(p, all_empty, subs)
    assert report.valid_submission and np.isnan(report.score) and not report.any_medal
    monkeypatch.undo()
    sizes = [(8, 8)] * len(gold)
    _check_against_v1(p, _mutants(gold, "encoded_pixels", sizes, np.random.default_rng(1)), v1_contrails, subs)
    _fuzz(p, tmp_path / "fuzz")


# ---------------------------------------------------------------- hubmap-kidney-segmentation

HUBMAP = "hubmap-kidney-segmentation"


def _tiff(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="TIFF")
    return buf.getvalue()


def _polygons(name: str) -> str:
    return json.dumps([{"type": "Feature", "id": "PathAnnotationObject",
                        "geometry": {"type": "Polygon", "coordinates": [[[1, 1], [4, 1], [4, 3], [1, 1]]]},
                        "properties": {"classification": {"name": name, "colorRGB": -3140401}, "isLocked": False}}])


def make_hubmap(raw: Path, rng: np.random.Generator) -> None:
    ids = [f"{int(v):09x}" for v in rng.choice(16**9, size=20, replace=False)]
    labelled, kaggle_test = ids[:15], ids[15:]
    rows, info = [], []
    for image_id in ids:
        h, w = int(rng.integers(5, 9)), int(rng.integers(6, 10))
        folder = raw / ("train" if image_id in labelled else "test")
        folder.mkdir(exist_ok=True)
        (folder / f"{image_id}.tiff").write_bytes(_tiff(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)))
        (folder / f"{image_id}.json").write_text(_polygons("glomerulus"))
        (folder / f"{image_id}-anatomical-structure.json").write_text(_polygons("Cortex"))
        if image_id in labelled:
            rows.append({"id": image_id, "encoding": _rle(_blob(rng, h, w, empty=0.0))})
        info.append({"image_file": f"{image_id}.tiff", "width_pixels": w, "height_pixels": h,
                     "anatomical_structures_segmention_file": f"{image_id}-anatomical-structure.json",
                     "glomerulus_segmentation_file": f"{image_id}.json", "patient_number": int(rng.integers(60000, 70000)),
                     "race": "White", "ethnicity": "Not Hispanic or Latino", "sex": "Male", "age": int(rng.integers(30, 80)),
                     "weight_kilograms": 90.7, "height_centimeters": 182.9, "bmi_kg/m^2": round(float(rng.uniform(20, 35)), 1),
                     "laterality": "Left", "percent_cortex": 80, "percent_medulla": 20})
    pd.DataFrame(rows).to_csv(raw / "train.csv", index=False)
    pd.DataFrame(info).sample(frac=1, random_state=1).to_csv(raw / "HuBMAP-20-dataset_information.csv", index=False)
    pd.DataFrame({"id": kaggle_test, "predicted": ""}).to_csv(raw / "sample_submission.csv", index=False)


def v1_hubmap(sub: pd.DataFrame, answers: pd.DataFrame) -> float | None:
    if len(sub) != len(answers) or set(sub["id"]) != set(answers["id"]):
        return None
    sub, answers = sub.sort_values("id"), answers.sort_values("id")
    scores = []
    for pred, truth, h, w in zip(sub["predicted"].fillna(""), answers["encoding"], answers["height_pixels"],
                                 answers["width_pixels"], strict=True):
        p, t = _v1_mask(pred, h, w), _v1_mask(truth, h, w)
        if p is None:
            return None
        scores.append(1.0 if p.sum() + t.sum() == 0 else 2 * (p & t).sum() / (p.sum() + t.sum()))
    return np.mean(scores)


def test_hubmap(tmp_path, monkeypatch):
    def no_answers_in_public(p: Prepared) -> None:  # the answers' masks are 'encoding', the sample's 'predicted'
        train = pd.read_csv(p.public / "train.csv")
        assert set(train["id"]).isdisjoint(p.answers()["id"])
        assert pd.read_csv(p.public / "test" / "sample_submission.csv")["predicted"].isna().all()

    monkeypatch.setattr(lite_support, "check_no_answers_in_public", no_answers_in_public)
    p = run_checks(HUBMAP, make_hubmap, tmp_path,
                   public={"train.csv", "HuBMAP-20-dataset_information.csv", "train", "test", "sample_submission.csv"},
                   private={"test.csv", "gold_submission.csv"}, test_rows=3, sample_score=0.0, perfect_score=1.0)
    raw = p.data_dir / HUBMAP / "raw"
    labels = pd.read_csv(raw / "train.csv")
    want_train, want_test = train_test_split(labels, train_size=12, test_size=3, random_state=0)
    pd.testing.assert_frame_equal(pd.read_csv(p.public / "train.csv"), want_train.reset_index(drop=True))
    answers = p.answers()
    assert list(answers.columns) == ["id", "encoding", "width_pixels", "height_pixels"]
    assert answers["id"].tolist() == want_test["id"].tolist()
    info = pd.read_csv(raw / "HuBMAP-20-dataset_information.csv")
    kept = info[info["image_file"].str.replace(".tiff", "").isin(labels["id"])]
    assert (p.public / "HuBMAP-20-dataset_information.csv").read_text() == kept.to_csv(index=False)
    # v1 copies each test slide with its glomerulus polygons (the leak flagged in the spec), and the sample.
    assert sorted(x.name for x in (p.public / "test").iterdir()) == sorted(
        [f"{i}{s}" for i in want_test["id"] for s in (".tiff", ".json", "-anatomical-structure.json")]
        + ["sample_submission.csv"])
    assert Image.open(p.public / "test" / f"{want_test['id'].iloc[0]}.tiff").size[0] > 0
    assert p.spec.status.state == "leaky" and p.spec.status.upstream_issue == 98

    gold, subs = p.gold(), tmp_path / "subs2"
    assert _grade(p, gold.iloc[::-1], subs).score == 1.0
    sizes = list(zip(answers.set_index("id").loc[gold["id"], "height_pixels"],
                     answers.set_index("id").loc[gold["id"], "width_pixels"], strict=True))
    _check_against_v1(p, _mutants(gold, "predicted", sizes, np.random.default_rng(2)), v1_hubmap, subs)
    _fuzz(p, tmp_path / "fuzz")


# ---------------------------------------------------------------- tgs-salt-identification-challenge

TGS = "tgs-salt-identification-challenge"


def make_tgs(raw: Path, rng: np.random.Generator) -> None:
    ids = [f"{int(v):010x}" for v in rng.choice(16**10, size=23, replace=False)]
    labelled, kaggle_test = ids[:20], ids[20:]
    members, rows = {}, []
    for k, image_id in enumerate(labelled):
        mask = _blob(rng, 101, 101, empty=0.3) if k % 5 else np.ones((101, 101), np.uint8)  # some all salt
        members[f"competition_data/train/images/{image_id}.png"] = _png(rng.integers(0, 256, (101, 101), np.uint8))
        members[f"competition_data/train/masks/{image_id}.png"] = _png(mask * 255)
        rows.append({"id": image_id, "rle_mask": _rle(mask)})
    for image_id in kaggle_test:
        members[f"competition_data/test/images/{image_id}.png"] = _png(rng.integers(0, 256, (101, 101), np.uint8))
    buf = io.StringIO()
    pd.DataFrame(rows).to_csv(buf, index=False)
    members["competition_data/train.csv"] = buf.getvalue().encode()
    with zipfile.ZipFile(raw / "competition_data.zip", "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    pd.DataFrame({"id": ids, "z": rng.integers(50, 960, len(ids))}).sample(frac=1, random_state=0).to_csv(
        raw / "depths.csv", index=False)
    pd.DataFrame({"id": kaggle_test, "rle_mask": "1 1"}).to_csv(raw / "sample_submission.csv", index=False)


def _v1_salt_iou(t: np.ndarray, p: np.ndarray) -> float:
    """v1's IoU of one image from NumPy's 2x2 histograms, then the thresholds 0.5, 0.55, ..., 0.95."""
    if t.sum() == 0:
        return 1.0 if p.sum() == 0 else 0.0
    inter = np.histogram2d(t.ravel(), p.ravel(), bins=(2, 2))[0]
    union = np.histogram(t, bins=2)[0][:, None] + np.histogram(p, bins=2)[0][None, :] - inter
    iou = inter[1, 1] / union[1, 1]
    return np.mean([1.0 if iou > th else 0.0 for th in np.arange(0.5, 1.0, 0.05)])


def v1_tgs(sub: pd.DataFrame, answers: pd.DataFrame) -> float | None:
    sub, answers = sub.fillna(""), answers.fillna("")
    if len(sub) != len(answers) or set(sub.columns) != {"id", "rle_mask"}:
        return None
    if not all(isinstance(v, str) for v in sub.to_numpy().ravel()):
        return None
    sub, answers = sub.sort_values("id"), answers.sort_values("id")
    if (sub["id"].to_numpy() != answers["id"].to_numpy()).any():
        return None
    scores = []
    for pred, truth in zip(sub["rle_mask"], answers["rle_mask"], strict=True):
        p, t = _v1_mask(pred, 101, 101), _v1_mask(truth, 101, 101)
        if p is None:
            return None
        scores.append(_v1_salt_iou(t.astype(int), p.astype(int)))
    return np.mean(scores)


def test_tgs(tmp_path):
    p = run_checks(TGS, make_tgs, tmp_path, public={"train.csv", "depths.csv", "train", "test", "sample_submission.csv"},
                   private={"test.csv"}, test_rows=5, sample_score=0.0, perfect_score=1.0)
    labels = pd.read_csv(p.data_dir / TGS / "raw" / "competition_data" / "train.csv").fillna("")
    want_train, want_test = train_test_split(labels, test_size=0.25, random_state=0)
    assert (p.private / "test.csv").read_text() == want_test.sort_values("id").to_csv(index=False)
    assert (p.public / "train.csv").read_text() == want_train.sort_values("id").to_csv(index=False)
    depths = pd.read_csv(p.public / "depths.csv")
    assert depths["id"].tolist() == sorted(want_train["id"])  # v1 keeps the new train ids only
    assert sorted(x.stem for x in (p.public / "test" / "images").iterdir()) == sorted(want_test["id"])
    assert not (p.public / "test" / "masks").exists()
    assert Image.open(p.public / "train" / "masks" / f"{want_train['id'].iloc[0]}.png").size == (101, 101)

    answers, subs = p.answers(), tmp_path / "subs2"
    gold = answers.fillna("")
    # v1's histogram quirk: an empty prediction counts as the whole image, so it scores 1 on an all-salt image.
    full = answers["rle_mask"].fillna("").map(lambda s: s == "1 10201")
    empty_all = gold.assign(rle_mask="")
    want = np.mean([1.0 if f else (1.0 if not t else 0.0) for f, t in zip(full, gold["rle_mask"], strict=True)])
    assert _grade(p, empty_all, subs).score == round_score(want)
    assert _grade(p, gold.assign(id=gold["id"].str.upper()), subs).valid_submission is False
    sizes = [(101, 101)] * len(gold)
    _check_against_v1(p, _mutants(gold, "rle_mask", sizes, np.random.default_rng(3)), v1_tgs, subs)
    _fuzz(p, tmp_path / "fuzz")


# ---------------------------------------------------------------- uw-madison-gi-tract-image-segmentation

UW = "uw-madison-gi-tract-image-segmentation"
UW_CLASSES = ("large_bowel", "small_bowel", "stomach")
UW_CASES = {"case7": ((8, 6), [0, 13]), "case19": ((6, 6), [1, 2, 3, 4, 5, 6]), "case101": ((8, 6), [20, 22]),
            "case36": ((7, 5), [14]), "case123": ((8, 6), [0, 1]), "case2": ((6, 6), [3, 10, 11, 12, 25])}


def make_uw(raw: Path, rng: np.random.Generator) -> None:
    rows = []
    for case, ((w, h), days) in UW_CASES.items():
        for day in rng.permutation(days).tolist():  # rows not in day order: v1 sorts days by number
            scans = raw / "train" / case / f"{case}_day{day}" / "scans"
            scans.mkdir(parents=True)
            for s in (1, 2, 3):
                pixels = rng.integers(0, 4000, size=(h, w)).astype(np.uint16)
                Image.fromarray(pixels).save(scans / f"slice_{s:04}_{w}_{h}_1.50_1.50.png")
                for organ in UW_CLASSES:
                    mask = _blob(rng, h, w, empty=0.5)
                    rows.append({"id": f"{case}_day{day}_slice_{s:04}", "class": organ,
                                 "segmentation": _rle(mask) or np.nan})
    pd.DataFrame(rows).to_csv(raw / "train.csv", index=False)
    pd.DataFrame(columns=["id", "class", "predicted"]).to_csv(raw / "sample_submission.csv", index=False)


def v1_uw(sub: pd.DataFrame, answers: pd.DataFrame) -> float | None:
    sizes = list(zip(answers["image_height"].astype(int), answers["image_width"].astype(int), strict=True))
    preds = [_v1_mask(text, h, w) for text, (h, w) in zip(sub["predicted"].fillna(""), sizes, strict=False)]
    truths = [_v1_mask(text, h, w) for text, (h, w) in zip(answers["predicted"].fillna(""), sizes, strict=True)]
    if any(m is None for m in preds) or not all(isinstance(i, str) for i in sub["id"]):
        return None
    dice = [np.nan if p.sum() + t.sum() == 0 else 2 * (p & t).sum() / (p.sum() + t.sum())
            for p, t in zip(preds, truths, strict=False)]

    def volumes(masks, ids):
        days: dict[str, dict[str, list]] = {}
        for mask, i in sorted(zip(masks, ids, strict=False), key=lambda x: x[1]):
            days.setdefault(i.split("_slice_")[0], {}).setdefault(i, []).append(mask)
        try:
            return [np.stack([np.logical_or.reduce(m) for m in slices.values()]) for slices in days.values()]
        except ValueError:
            return None

    pv, tv = volumes(preds, list(sub["id"])), volumes(truths, list(answers["id"]))
    if pv is None:
        return None
    distances = []
    for p, t in zip(pv, tv, strict=False):
        if p.sum() == 0 and t.sum() == 0:
            distances.append(np.nan)
        elif np.array_equal(p, t):
            distances.append(0)
        elif p.sum() == 0 or t.sum() == 0 or p.sum() > 10 * t.sum():
            distances.append(1)
        else:
            a, b = np.argwhere(t) / t.shape, np.argwhere(p) / t.shape
            distances.append(max(directed_hausdorff(a, b)[0], directed_hausdorff(b, a)[0]) / np.sqrt(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return 0.4 * np.nanmean(np.array(dice, dtype=float)) + 0.6 * (1 - np.nanmean(np.array(distances, dtype=float)))


def test_uw_madison(tmp_path):
    raw_train = {}

    def make(raw: Path, rng: np.random.Generator) -> None:
        make_uw(raw, rng)
        raw_train["frame"] = pd.read_csv(raw / "train.csv")

    p = run_checks(UW, make, tmp_path, public={"train.csv", "test.csv", "train", "test", "sample_submission.csv"},
                   private={"test.csv"}, perfect_score=1.0)
    frame = raw_train["frame"]
    case = frame["id"].str.split("_").str[0]
    _, test_cases = train_test_split(case.unique(), test_size=0.1, random_state=42)
    day = frame["id"].str.split("_").str[1]
    moved = {(c, f"day{d}") for c, (_, days) in UW_CASES.items() if c not in test_cases for d in sorted(days)[4:]}
    in_test = case.isin(test_cases) | pd.Series([(c, d) in moved for c, d in zip(case, day, strict=True)])
    answers = p.answers()
    assert answers["id"].tolist() == frame[in_test]["id"].tolist() and moved
    assert list(answers.columns) == ["id", "class", "predicted", "image_width", "image_height"]
    first = (p.private / "test.csv").read_text().splitlines()[1]
    w, h = UW_CASES[first.split("_")[0]][0]
    assert first.endswith(f",{float(w)},{float(h)}")  # v1 wrote the sizes as floats
    assert (p.public / "train.csv").read_text() == frame[~in_test].to_csv(index=False)
    assert pd.read_csv(p.public / "test.csv").columns.tolist() == ["id", "class"]
    for c, d in moved:
        assert (p.public / "test" / c / f"{c}_{d}" / "scans").is_dir() and not (p.public / "train" / c / f"{c}_{d}").exists()
    sample = pd.read_csv(p.sample_path())
    assert (sample["predicted"] == "1 1 5 2").all()
    assert _grade(p, sample, tmp_path / "s").score == round_score(v1_uw(sample, answers))

    gold, subs = sample.assign(predicted=answers["predicted"]), tmp_path / "subs2"
    # Row order matters and the row count is not checked (v1): a prefix is scored on its own rows.
    head = gold.iloc[: len(gold) // 2]
    report = _grade(p, head, subs, mode="corrected")
    assert report.v1_valid and report.v1_score == round_score(v1_uw(head, answers))
    assert not report.valid_submission and report.corrected_reason
    report = _grade(p, gold.iloc[::-1], subs)
    assert report.valid_submission and report.score == round_score(v1_uw(gold.iloc[::-1], answers))
    sizes = list(zip(answers["image_height"].astype(int), answers["image_width"].astype(int), strict=True))
    _check_against_v1(p, _mutants(gold, "predicted", sizes, np.random.default_rng(4)) + [gold.iloc[:0], gold.iloc[::-1]],
                      v1_uw, subs)
    _fuzz(p, tmp_path / "fuzz", valid_ok={"drop_rows", "extra_rows", "duplicate_id", "bogus_id", "header_only",
                                          "truncated_rows"})


# ---------------------------------------------------------------- vesuvius-challenge-ink-detection

VESUVIUS = "vesuvius-challenge-ink-detection"
INK_W, INK_H = 9, 6


def _row_major_rle(mask: np.ndarray) -> str:
    return _rle(mask.T)  # row-major pairs are the column-major pairs of the transpose


def make_vesuvius(raw: Path, rng: np.random.Generator) -> None:
    for folder in ("train/1", "train/2", "train/3", "test/a", "test/b"):
        root = raw / folder
        (root / "surface_volume").mkdir(parents=True)
        for layer in range(5):
            Image.fromarray(rng.integers(0, 60000, (INK_H, INK_W)).astype(np.uint16)).save(
                root / "surface_volume" / f"{layer:02}.tif")
        Image.fromarray(np.full((INK_H, INK_W), 255, np.uint8)).save(root / "mask.png")
        if folder.startswith("train"):
            ink = np.zeros((INK_H, INK_W), np.uint8)
            ink[2:5, 3:8] = 1
            ink[1, 1] = rng.integers(0, 2)
            Image.fromarray(ink * 255).save(root / "inklabels.png")
            Image.fromarray(rng.integers(0, 256, (INK_H, INK_W), np.uint8)).save(root / "ir.png")
            pd.DataFrame({"Id": [folder[-1]], "Predicted": [_row_major_rle(ink)]}).to_csv(root / "inklabels_rle.csv",
                                                                                        index=False)
    pd.DataFrame({"Id": ["a", "b"], "Predicted": ["1 1 5 1", "1 1 5 1"]}).to_csv(raw / "sample_submission.csv", index=False)


def v1_vesuvius(sub: pd.DataFrame, answers: pd.DataFrame) -> float | None:
    if len(sub) != len(answers) or len(sub.columns) != 2 or set(sub.columns) != {"Id", "Predicted"}:
        return None
    scores = []
    for (_, s), (_, a) in zip(sub.iterrows(), answers.iterrows(), strict=True):
        if s["Id"] != a["Id"] or not isinstance(s["Predicted"], str):
            return None
        flat_p, flat_t = oracle(s["Predicted"], a["width"] * a["height"]), oracle(a["Predicted"], a["width"] * a["height"])
        if flat_p is None:
            return None
        scores.append(fbeta_score(flat_t, flat_p, beta=0.5, zero_division=0.0))
    return np.mean(scores)


def test_vesuvius(tmp_path):
    p = run_checks(VESUVIUS, make_vesuvius, tmp_path, public={"train", "test", "sample_submission.csv"},
                   private={"inklabels_rle.csv", "gold_submission.csv"}, test_rows=1, sample_score=0.0,
                   perfect_score=1.0)
    raw = p.data_dir / VESUVIUS / "raw"
    answers = p.answers()
    assert answers.to_dict("records") == [{"Id": "a", "Predicted": pd.read_csv(raw / "train/3/inklabels_rle.csv")["Predicted"][0],
                                           "width": INK_W, "height": INK_H}]
    assert sorted(str(x.relative_to(p.public / "test" / "a")) for x in (p.public / "test" / "a").rglob("*")) == \
        ["mask.png", "surface_volume"] + [f"surface_volume/{k:02}.tif" for k in range(5)]
    assert sorted(x.name for x in (p.public / "train").iterdir()) == ["1", "2"]
    assert Image.open(p.public / "test" / "a" / "surface_volume" / "00.tif").size == (INK_W, INK_H)

    gold, subs = p.gold(), tmp_path / "subs2"
    ink = np.zeros((INK_H, INK_W), np.uint8)
    ink[2:4, 3:8] = 1  # the top two of the three ink rows: precision 1, recall 10/15 (or 10/16)
    report = _grade(p, gold.assign(Predicted=_row_major_rle(ink)), subs)
    assert report.score == round_score(v1_vesuvius(gold.assign(Predicted=_row_major_rle(ink)), answers))
    assert report.score in (round(1.25 * 10 / (0.25 * 15 + 10), 5), round(1.25 * 10 / (0.25 * 16 + 10), 5))
    for bad in (gold.assign(Id="b"), gold.assign(Predicted=np.nan), gold.assign(extra=1), gold.assign(Id=1)):
        report = _grade(p, bad, subs)
        assert not report.valid_submission and report.reason and not report.grader_error, report.reason
    _check_against_v1(p, _mutants(gold, "Predicted", [(INK_W, INK_H)], np.random.default_rng(5)), v1_vesuvius, subs)
    _fuzz(p, tmp_path / "fuzz")


# The synthetic downloads of this module, for tests/synthetic_downloads.py.
MAKERS = {
    CONTRAILS: make_contrails,
    HUBMAP: make_hubmap,
    TGS: make_tgs,
    UW: make_uw,
    VESUVIUS: make_vesuvius,
}


TELLTALE = {CONTRAILS: ("contrail", "GOES", "aircraft"), HUBMAP: ("glomerul", "kidney"), TGS: ("salt", "seismic"),
            UW: ("UW-Madison", "stomach", "bowel"), VESUVIUS: ("Vesuvius", "Herculaneum", "papyrus")}


def test_descriptions_exist_and_obfuscated_hides_the_name():
    from hpc_mle import competitions

    for cid, words in TELLTALE.items():
        spec = competitions.get(cid)
        plain, hidden = spec.description_path.read_text(), (spec.folder / "description_obfuscated.md").read_text()
        assert plain.strip() and hidden.strip() and "## Submission format" in hidden
        for word in (spec.name, "Kaggle", cid, *words):
            assert word.lower() not in hidden.lower(), (cid, word)
