"""Box-matching scores of the detection competitions, computed as MLE-bench v1's graders compute them.

v1 scored these four in pure Python loops (one IoU at a time, the 3D one in a process per node CPU).
Here the same arithmetic runs on arrays, in the same order where the rounding depends on it, so a
full-size submission grades in seconds on the caller's CPUs. Every input v1 refused (its explicit
checks, and any exception its code raised on a malformed string) is `InvalidSubmission` with a reason;
inputs v1 scored are scored the same way. The registered metrics live in `hpc_mle.metrics`.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections import defaultdict

import numpy as np
import pandas as pd

from hpc_mle.metric_types import InvalidSubmission

# ---------------------------------------------------------------- v1's pairing of rows by id


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def sorted_pairs(y_true: pd.DataFrame, y_pred: pd.DataFrame, id_column: str,
                 column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, answers, predictions) as v1 pairs them: equal lengths, both sorted by id, ids equal row for row."""
    if len(y_pred) != len(y_true):
        raise InvalidSubmission(f"has {len(y_pred)} rows, expected {len(y_true)} (one per {id_column})")
    try:
        sub = y_pred.sort_values(id_column)
        ans = y_true.sort_values(id_column)
    except TypeError:
        raise InvalidSubmission(f"column '{id_column}' mixes text and numbers") from None
    sub_ids = sub[id_column].to_numpy(dtype=object)
    ans_ids = ans[id_column].to_numpy(dtype=object)
    if any(a != b for a, b in zip(sub_ids, ans_ids, strict=True)):
        raise InvalidSubmission(f"the {id_column} values differ from the test set's (each must appear once)")
    return ans_ids, ans[column].to_numpy(dtype=object), sub[column].to_numpy(dtype=object)


def _text(value, column: str, row: int) -> str:
    """A prediction cell v1 could split; a number or a missing cell made v1's grader raise."""
    if not isinstance(value, str):
        shown = "a missing value" if _is_missing(value) else f"the number {value!r}"
        raise InvalidSubmission(f"column '{column}' row {row}: expected a text of space-separated tokens, "
                                f"got {shown}")
    return value


def _floats(tokens, what: str) -> list[float]:
    try:
        return [float(t) for t in tokens]
    except ValueError:
        bad = next(t for t in tokens if not _parses(t))
        raise InvalidSubmission(f"{what}: {bad!r} is not a number") from None


def _parses(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------- kuzushiji: centre points in boxes


def kuzushiji_f1(y_true: pd.DataFrame, y_pred: pd.DataFrame, id_column: str, column: str) -> float:
    """Global F1 over pages: a truth box (label X Y W H) is found by the first unused prediction
    (label x y) of its label strictly inside it, truth boxes taken in order (Kaggle's metric, v1)."""
    _, truth, preds = sorted_pairs(y_true, y_pred, id_column, column)
    for row, pred in enumerate(preds):  # v1 checks every prediction before scoring any page
        if isinstance(pred, float) and math.isnan(pred):
            continue
        tokens = _text(pred, column, row).split(" ")
        if len(tokens) % 3:
            raise InvalidSubmission(f"row {row}: {len(tokens)} tokens; each character needs 3 (label x y)")
        _floats(tokens[1::3] + tokens[2::3], f"row {row}")
    tp = fp = fn = 0
    for t, p in zip(truth, preds, strict=True):
        a, b, c = _kuzushiji_page(t, p)
        tp, fp, fn = tp + a, fp + b, fn + c
    if tp + fp == 0 or tp + fn == 0:
        return 0.0
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    if precision > 0 and recall > 0:
        return float((2 * precision * recall) / (precision + recall))
    return 0.0


def _kuzushiji_page(truth, preds) -> tuple[int, int, int]:
    """(tp, fp, fn) of one page, as Kaggle's score_page counts them."""
    t_missing, p_missing = _is_missing(truth), _is_missing(preds)
    if t_missing and p_missing:
        return 0, 0, 0
    if t_missing:
        return 0, len(preds.split(" ")) // 3, 0
    if p_missing:
        return 0, 0, len(truth.split(" ")) // 5
    t = truth.split(" ")
    if len(t) % 5:
        raise ValueError("malformed answers string")
    p = preds.split(" ")
    try:
        px, py = np.array(p[1::3]).astype(float), np.array(p[2::3]).astype(float)
    except ValueError as exc:
        raise InvalidSubmission(f"a coordinate is not a number ({exc})") from None
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(p[0::3]):
        by_label[label].append(i)
    groups = {label: np.array(idx) for label, idx in by_label.items()}
    unused = np.ones(len(px), dtype=bool)
    xmin, ymin = np.array(t[1::5]).astype(float), np.array(t[2::5]).astype(float)
    xmax, ymax = xmin + np.array(t[3::5]).astype(float), ymin + np.array(t[4::5]).astype(float)
    tp = 0
    for label, x0, x1, y0, y1 in zip(t[0::5], xmin, xmax, ymin, ymax, strict=True):
        idx = groups.get(label)
        if idx is None:
            continue
        x, y = px[idx], py[idx]
        hit = (x0 < x) & (x1 > x) & (y0 < y) & (y1 > y) & unused[idx]
        if hit.any():
            tp += 1
            unused[idx[np.argmax(hit)]] = False
    n_truth = len(t) // 5
    return tp, int(unused.sum()), n_truth - tp


# ---------------------------------------------------------------- siim-covid19: VOC-style mAP@0.5


def _siim_boxes(text, row: int, column: str) -> list[tuple]:
    """v1's parse: whitespace-split 6-tuples (label conf xmin ymin xmax ymax); anything else raised."""
    tokens = _text(text, column, row).strip().split()
    if len(tokens) % 6:
        raise InvalidSubmission(f"row {row}: {len(tokens)} tokens; each box needs 6 "
                                f"(label confidence xmin ymin xmax ymax)")
    out = []
    for i in range(0, len(tokens), 6):
        out.append((tokens[i], *_floats(tokens[i + 1:i + 6], f"row {row}")))
    return out


def _siim_ious(preds: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """IoU matrix (predictions x truths) with v1's arithmetic: 0.0 unless the union is positive."""
    x1, y1, x2, y2 = (preds[:, k:k + 1] for k in range(4))
    gx1, gy1, gx2, gy2 = (gts[None, :, k] for k in range(4))
    inter_w = np.fmax(0, np.fmin(x2, gx2) - np.fmax(x1, gx1))
    inter_h = np.fmax(0, np.fmin(y2, gy2) - np.fmax(y1, gy1))
    inter = inter_w * inter_h
    union = (x2 - x1) * (y2 - y1) + (gx2 - gx1) * (gy2 - gy1) - inter
    with np.errstate(all="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def siim_map(y_true: pd.DataFrame, y_pred: pd.DataFrame, id_column: str, column: str) -> float:
    """Mean over the answers' labels of average precision over (truth, confidence) pairs built by greedy
    matching at IoU > 0.5 per row (v1's own reading of the competition's PASCAL VOC mAP)."""
    _, truth, preds = sorted_pairs(y_true, y_pred, id_column, column)
    sub = [_siim_boxes(v, i, column) for i, v in enumerate(preds)]
    ans = [_siim_boxes(v, i, "answers") for i, v in enumerate(truth)]
    if not sub:
        return 0.0
    classes = sorted({box[0] for boxes in ans for box in boxes})
    aps = []
    for cls in classes:
        y, scores = [], []
        for img_preds, img_gts in zip(sub, ans, strict=True):
            img_preds.sort(key=lambda b: b[1], reverse=True)  # v1 re-sorts in place for every class
            _siim_pairs(img_preds, img_gts, cls, y, scores)
        if all(v == 1 for v in y):
            raise InvalidSubmission(f"label {cls!r}: every (truth, confidence) pair is a positive, so v1's "
                                    f"average precision is undefined (its grader stopped here)")
        aps.append(average_precision_v1(np.array(y), np.array(scores, dtype=np.float64), cls))
    return np.mean(aps) if aps else 0.0


def _siim_pairs(img_preds: list[tuple], img_gts: list[tuple], cls: str, y: list, scores: list) -> None:
    gts = np.array([g[2:] for g in img_gts if g[0] == cls], dtype=np.float64).reshape(-1, 4)
    mine = [p for p in img_preds if p[0] == cls]
    matched = np.zeros(len(gts), dtype=bool)
    before = len(y)
    if mine and len(gts):
        ious = _siim_ious(np.array([p[2:] for p in mine], dtype=np.float64), gts)
        for p, row in zip(mine, ious, strict=True):
            ok = (row > 0.5) & ~matched
            if ok.any():
                matched[int(np.argmax(np.where(ok, row, -np.inf)))] = True
                y.append(1)
            else:
                y.append(0)
            scores.append(p[1])
    else:
        y.extend([0] * len(mine))
        scores.extend(p[1] for p in mine)
    missed = int((~matched).sum())
    y.extend([1] * missed)
    scores.extend([0] * missed)
    if len(y) == before:
        y.append(0)
        scores.append(0)


def average_precision_v1(y_true: np.ndarray, y_score: np.ndarray, what: str) -> np.float64:
    """scikit-learn 1.5.1's `average_precision_score` for binary 0/1 truths (v1's version, fixed here)."""
    if not np.isfinite(y_score).all():
        raise InvalidSubmission(f"label {what!r}: a confidence is missing or infinite")
    order = np.argsort(y_score, kind="mergesort")[::-1]
    score, truth = y_score[order], (y_true[order] == 1) * 1.0
    distinct = np.where(np.diff(score))[0]
    idx = np.r_[distinct, truth.size - 1]
    tps = np.cumsum(truth, dtype=np.float64)[idx]
    fps = 1 + idx - tps
    total = tps + fps
    precision = np.zeros_like(tps)
    np.divide(tps, total, out=precision, where=(total != 0))
    recall = tps / tps[-1]
    precision = np.hstack((precision[::-1], 1))
    recall = np.hstack((recall[::-1], 0))
    return np.float64(-np.sum(np.diff(recall) * np.array(precision)[:-1]))


# ---------------------------------------------------------------- vinbigdata: COCO AP at IoU 0.4


def _vinbig_rows(texts: np.ndarray, column: str) -> list[np.ndarray]:
    out = []
    for row, text in enumerate(texts):
        values = _floats(_text(text, column, row).split(" "), f"row {row}")
        if len(values) % 6:
            raise InvalidSubmission(f"row {row}: {len(values)} numbers; each box needs 6 "
                                    f"(class_id confidence x_min y_min x_max y_max)")
        boxes = np.array(values, dtype=np.float64).reshape(-1, 6)
        if not np.isfinite(boxes[:, 0]).all():
            raise InvalidSubmission(f"row {row}: a class_id is missing or infinite (v1 reads it as an integer)")
        out.append(boxes)
    return out


def vinbig_coco_map(y_true: pd.DataFrame, y_pred: pd.DataFrame, id_column: str, column: str,
                    iou_threshold: float = 0.4, *, xywh: bool = False, unique_ids: bool = False,
                    one_based_ids: bool = False) -> np.float64:
    """COCO bbox AP (pycocotools, all areas, 100 detections) at one IoU threshold, boxes passed as
    [x_min, y_min, x_max, y_max] where COCO reads [x, y, w, h] (v1's community metric, kept).

    v1 compares only the sets of image ids: a repeated image row adds its boxes to that image's. v1
    numbers the boxes from 0, and pycocotools reads a match to id 0 as no match: the first truth box
    can never be found (and the first detection never marks its truth as taken). The corrected grade
    sets `xywh` (COCO's [x, y, w, h] boxes), `unique_ids` (one row per image, as Kaggle required)
    and `one_based_ids` (boxes numbered from 1).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if set(y_pred[id_column]) != set(y_true[id_column]):
        raise InvalidSubmission(f"the set of {id_column} values must equal the test set's")
    if unique_ids and y_pred[id_column].duplicated().any():
        raise InvalidSubmission(f"{int(y_pred[id_column].duplicated().sum())} repeated {id_column}(s); "
                                f"give each image one row with all its boxes")
    image_ids = y_true[id_column].unique()
    index = {image_id: i for i, image_id in enumerate(image_ids)}
    images = [{"id": i} for i in range(len(image_ids))]
    categories = _vinbig_categories(y_true)
    parsed = _vinbig_rows(y_pred[column].to_numpy(dtype=object), column)
    gt, dt = COCO(), COCO()
    truth = _vinbig_truth(y_true, index, id_column)
    found = _vinbig_detections(y_pred[id_column].to_numpy(dtype=object), parsed, index)
    if one_based_ids:
        for ann in truth + found:
            ann["id"] += 1
    if xywh:
        for ann in truth + found:
            ann["bbox"] = np.array([*ann["bbox"][:2], ann["bbox"][2] - ann["bbox"][0], ann["bbox"][3] - ann["bbox"][1]])
    gt.dataset = {"images": images, "categories": categories, "annotations": truth}
    dt.dataset = {"images": list(images), "categories": list(categories), "annotations": found}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt.createIndex()
        ev = COCOeval(gt, dt, "bbox")
        p = ev.params
        p.imgIds, p.useCats, p.iouThrs = sorted(gt.getImgIds()), True, np.array([iou_threshold])
        # stats[0] reads only the "all" area range at 100 detections; the other ranges change nothing in it.
        p.areaRng, p.areaRngLbl, p.maxDets = [[0**2, 1e5**2]], ["all"], [100]
        ev.evaluate()
        ev.accumulate()
    s = ev.eval["precision"][:, :, :, 0, 0]
    return np.float64(-1) if not (s > -1).any() else np.mean(s[s > -1])


def _vinbig_categories(y_true: pd.DataFrame) -> list[dict]:
    names = y_true["class_name"] if "class_name" in y_true.columns else y_true["class_id"]
    cats = pd.DataFrame({"class_name": names, "class_id": y_true["class_id"]})
    cats = cats.drop_duplicates().sort_values(by="class_id").to_numpy(dtype=object)
    return [{"id": c[1], "name": c[0], "supercategory": "none"} for c in cats]


def _vinbig_truth(y_true: pd.DataFrame, index: dict, id_column: str) -> list[dict]:
    """Truth boxes numbered image by image (first appearance), rows of an image in file order."""
    order = np.argsort(y_true[id_column].map(index).to_numpy(), kind="stable")
    rows = y_true.iloc[order]
    x0, y0 = rows["x_min"].to_numpy(np.float64), rows["y_min"].to_numpy(np.float64)
    x1, y1 = rows["x_max"].to_numpy(np.float64), rows["y_max"].to_numpy(np.float64)
    area = (x1 - x0) * (y1 - y0)
    images, cats = rows[id_column].map(index).to_numpy(), rows["class_id"].to_numpy()
    return [{"id": k, "image_id": int(images[k]), "category_id": int(cats[k]),
             "bbox": np.array([x0[k], y0[k], x1[k], y1[k]]), "segmentation": [], "ignore": 0,
             "area": float(area[k]), "iscrowd": 0} for k in range(len(rows))]


def _vinbig_detections(ids: np.ndarray, parsed: list[np.ndarray], index: dict) -> list[dict]:
    out, k = [], 0
    for image_id, boxes in zip(ids, parsed, strict=True):
        img = index[image_id]
        area = (boxes[:, 4] - boxes[:, 2]) * (boxes[:, 5] - boxes[:, 3])
        for b, a in zip(boxes, area, strict=True):
            out.append({"id": k, "image_id": img, "category_id": int(b[0]), "bbox": b[2:6].copy(),
                        "segmentation": [], "ignore": 0, "area": a, "iscrowd": 0, "score": b[1]})
            k += 1
    return out


# ---------------------------------------------------------------- 3d-object: Lyft's 3D mAP

LYFT_THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
LYFT_TOKENS = 9  # confidence cx cy cz width length height yaw class


def _lyft_row(text: str, row: int, column: str) -> tuple[np.ndarray, list[str]]:
    """(n x 8 numbers, n class names) of one row, split on single spaces as v1 did."""
    if text.strip() == "":
        return np.zeros((0, 8)), []
    tokens = text.split(" ")
    if len(tokens) % LYFT_TOKENS:
        raise InvalidSubmission(f"row {row}: {len(tokens)} tokens; each object needs {LYFT_TOKENS} "
                                f"(confidence center_x center_y center_z width length height yaw class)")
    grid = np.array(tokens, dtype=object).reshape(-1, LYFT_TOKENS)
    values = np.array(_floats(grid[:, :8].ravel(), f"row {row}"), dtype=np.float64).reshape(-1, 8)
    if np.isinf(values[:, 7]).any():  # pyquaternion's math.cos raised on it, whatever the class
        raise InvalidSubmission(f"row {row}: a yaw is infinite")
    return values, list(grid[:, 8])


def _fma_minus_square(c: np.ndarray, z: np.ndarray) -> np.ndarray:
    """c - z*z rounded once, as the fused multiply-add in the BLAS kernel of pyquaternion's matrix
    product gives it (Dekker's exact product, then a two-sum)."""
    s = 134217729.0 * z
    hi = s - (s - z)
    lo = z - hi
    p = z * z
    e = ((hi * hi - p) + 2 * hi * lo) + lo * lo
    d = c - p
    bb = d - c
    t = (c - (d - bb)) + (-p - bb)
    return d + (t - e)


def _yaw_cos_sin(yaw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rotation-matrix entries [0, 0] and [1, 0] of pyquaternion's Quaternion(axis=z, radians=yaw)."""
    half = yaw / 2.0
    w = np.fromiter((math.cos(h) if math.isfinite(h) else math.nan for h in half), np.float64, len(half))
    z = np.fromiter((math.sin(h) if math.isfinite(h) else math.nan for h in half), np.float64, len(half))
    return _fma_minus_square(w * w, z), z * w + w * z


def _ground_corners(box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the four base corners (n x 4 each), in the order and arithmetic of v1's Box3D."""
    cx, cy, w, length = box[:, 1], box[:, 2], box[:, 4], box[:, 5]
    cos, sin = _yaw_cos_sin(box[:, 7])
    lc, ls, wc, ws = length / 2 * cos, length / 2 * sin, w / 2 * cos, w / 2 * sin
    xs = np.stack([cx + lc + ws, cx + lc - ws, cx - lc - ws, cx - lc + ws], axis=1)
    ys = np.stack([cy + ls - wc, cy + ls + wc, cy - ls + wc, cy - ls - wc], axis=1)
    return xs, ys


def _lyft_refused(box: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Boxes v1's Box3D raised on: a missing number, a size not above 0, or base corners whose
    right angles fail its np.isclose check (infinite or huge values)."""
    bad = np.isnan(box[:, 1:8]).any(axis=1) | ~(box[:, 4:7] > 0).all(axis=1)

    def right_angle(a: int, b: int, c: int) -> np.ndarray:
        dot = (xs[:, b] - xs[:, a]) * (xs[:, c] - xs[:, a]) + (ys[:, b] - ys[:, a]) * (ys[:, c] - ys[:, a])
        return np.isclose(dot, 0)

    with np.errstate(all="ignore"):
        ok = right_angle(0, 1, 3) & right_angle(1, 0, 2) & right_angle(2, 1, 3) & right_angle(3, 0, 2)
    return bad | ~ok


def lyft_map(y_true: pd.DataFrame, y_pred: pd.DataFrame, id_column: str, column: str) -> np.float64:
    """Mean over test samples and IoU thresholds 0.50..0.95 of the mean over the sample's truth classes
    of Lyft's average precision (3D IoU of yaw-rotated boxes, greedy by confidence), as v1 grades.

    The work is vectorised in the calling process: unlike v1's Pool(cpu_count()), nothing here starts a
    process per CPU of the node, so a grading job uses only the CPUs its allocation gave it.
    """
    y_pred = y_pred.copy()
    cells = y_pred[column].astype(object)
    y_pred[column] = cells.where(cells.notna(), "")  # v1's fillna(""): numbers stay numbers (then invalid)
    _, truth, preds = sorted_pairs(y_true, y_pred, id_column, column)
    sub = [_lyft_row(_text(v, column, i), i, column) for i, v in enumerate(preds)]
    ans = [_lyft_row(v, i, "answers") for i, v in enumerate(truth)]
    gt, pr = _stack(ans), _stack(sub)
    keep = _in_truth_classes(pr, gt)
    pr = {k: v[keep] for k, v in pr.items()}
    xs, ys = _ground_corners(pr["box"])
    refused = _lyft_refused(pr["box"], xs, ys)
    if refused.any():
        i = int(np.argmax(refused))
        raise InvalidSubmission(f"row {int(pr['sample'][i])}: a {pr['name'][i]!r} box has a missing value, a "
                                f"size not above 0, or a non-finite or huge value (v1's Box3D refused it)")
    per_sample = _lyft_sample_aps(gt, pr, _shapes(gt["box"]), _shapes(pr["box"]), len(ans))
    return np.mean([m for sample in per_sample for m in sample])


def _stack(rows: list[tuple[np.ndarray, list[str]]]) -> dict[str, np.ndarray]:
    boxes = [r[0] for r in rows]
    return {"box": np.concatenate(boxes) if boxes else np.zeros((0, 8)),
            "name": np.array([n for r in rows for n in r[1]], dtype=object),
            "sample": np.repeat(np.arange(len(rows)), [len(b) for b in boxes]).astype(np.int64)}


def _in_truth_classes(pr: dict, gt: dict) -> np.ndarray:
    """Predictions v1 looked at: those of a class that has a truth box in the same sample."""
    wanted = set(zip(gt["sample"].tolist(), gt["name"].tolist(), strict=True))
    return np.fromiter(((s, n) in wanted for s, n in zip(pr["sample"].tolist(), pr["name"].tolist(), strict=True)),
                       bool, len(pr["name"]))


def _shapes(box: np.ndarray) -> dict[str, np.ndarray]:
    """What the IoU needs of each box, computed once: base corners and polygon, extents, z range, volume."""
    import shapely

    xs, ys = _ground_corners(box)
    with np.errstate(all="ignore"):
        return {"xs": xs, "ys": ys, "x0": xs.min(1), "x1": xs.max(1), "y0": ys.min(1), "y1": ys.max(1),
                "z0": box[:, 3] - box[:, 6] / 2, "z1": box[:, 3] + box[:, 6] / 2,
                "volume": box[:, 4] * box[:, 5] * box[:, 6],
                "polygon": shapely.polygons(np.stack([xs, ys], axis=2)) if len(box) else np.array([])}


def _lyft_ious(p_idx: np.ndarray, g_idx: np.ndarray, ps: dict, gs: dict) -> np.ndarray:
    """3D IoU of prediction/truth pairs: ground-polygon overlap (shapely, as v1) times height overlap.

    Python's max(truth, pred), min(truth, pred) and max(0, d) keep the first value where the other is
    NaN, as np.fmax/np.fmin do. Pairs whose extents do not overlap have no area (GEOS gives 0.0 too).
    """
    import shapely

    height = np.fmax(0, np.fmin(gs["z1"][g_idx], ps["z1"][p_idx]) - np.fmax(gs["z0"][g_idx], ps["z0"][p_idx]))
    near = ((ps["x0"][p_idx] < gs["x1"][g_idx]) & (gs["x0"][g_idx] < ps["x1"][p_idx])
            & (ps["y0"][p_idx] < gs["y1"][g_idx]) & (gs["y0"][g_idx] < ps["y1"][p_idx]) & (height > 0))
    area = np.zeros(len(p_idx))
    if near.any():
        area[near] = shapely.area(shapely.intersection(ps["polygon"][p_idx[near]], gs["polygon"][g_idx[near]]))
    inter = height * area
    with np.errstate(all="ignore"):
        return np.clip(inter / (ps["volume"][p_idx] + gs["volume"][g_idx] - inter), 0, 1)


LYFT_PAIR_BATCH = 1 << 21  # prediction/truth pairs held at once: memory stays bounded for huge submissions


def _lyft_sample_aps(gt: dict, pr: dict, gs: dict, ps: dict, n_samples: int) -> list[list[np.float64]]:
    """Per sample, the 10 per-threshold means of per-class AP (0 for a truth class without predictions).

    Samples are taken in order and their pairs' IoUs computed a batch of samples at a time."""
    g_groups = _groups(gt["sample"], gt["name"])
    p_groups = _groups(pr["sample"], pr["name"])
    classes: dict[int, list[str]] = defaultdict(list)
    for s, name in g_groups:
        classes[s].append(name)
    keys_of: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for key in p_groups:
        keys_of[key[0]].append(key)
    out: list[list[np.float64]] = []
    pending: list[int] = []
    budget = 0
    for s in range(n_samples + 1):
        pairs = sum(len(p_groups[k]) * len(g_groups[k]) for k in keys_of.get(s, []))
        if s == n_samples or (pending and budget + pairs > LYFT_PAIR_BATCH):
            matrices = _group_ious([k for t in pending for k in keys_of.get(t, [])], p_groups, g_groups, ps, gs)
            out.extend(_sample_aps(t, sorted(classes.get(t, [])), matrices, p_groups, g_groups, pr) for t in pending)
            pending, budget = [], 0
        pending.append(s)
        budget += pairs
    return out


def _group_ious(keys: list, p_groups: dict, g_groups: dict, ps: dict, gs: dict) -> dict:
    """IoU matrix (predictions x truths) of each (sample, class) group in `keys`."""
    if not keys:
        return {}
    p = np.concatenate([np.repeat(p_groups[k], len(g_groups[k])) for k in keys])
    g = np.concatenate([np.tile(g_groups[k], len(p_groups[k])) for k in keys])
    flat, out, start = _lyft_ious(p, g, ps, gs), {}, 0
    for k in keys:
        n_p, n_g = len(p_groups[k]), len(g_groups[k])
        out[k] = flat[start:start + n_p * n_g].reshape(n_p, n_g)
        start += n_p * n_g
    return out


def _sample_aps(s: int, names: list[str], matrices: dict, p_groups: dict, g_groups: dict, pr: dict) -> list:
    aps = np.zeros((len(LYFT_THRESHOLDS), len(names)))
    for c, name in enumerate(names):
        if (s, name) in matrices:
            aps[:, c] = _lyft_group_aps(matrices[(s, name)], pr["box"][p_groups[(s, name)], 0],
                                        len(g_groups[(s, name)]))
    with np.errstate(all="ignore"), _quiet_mean():
        return [np.mean(aps[t]) for t in range(len(LYFT_THRESHOLDS))]


@contextlib.contextmanager
def _quiet_mean():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a sample without truth boxes: NaN, as in v1
        yield


def _groups(samples: np.ndarray, names: np.ndarray) -> dict[tuple[int, str], np.ndarray]:
    groups: dict[tuple[int, str], list[int]] = defaultdict(list)
    for i, key in enumerate(zip(samples.tolist(), names.tolist(), strict=True)):
        groups[key].append(i)
    return {k: np.array(v, dtype=np.int64) for k, v in groups.items()}


def _lyft_group_aps(ious: np.ndarray, scores: np.ndarray, n_truth: int) -> np.ndarray:
    """Lyft's recall_precision + get_ap for one class of one sample, at each threshold.

    Going down the predictions by confidence, each takes its best-overlapping truth box; it is a true
    positive at threshold t when that overlap is above t and no earlier prediction above t took the
    same box, i.e. when (the best overlap of earlier predictions on that box) <= t < (its own).
    """
    order = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)  # v1's sort, NaN included
    ious = ious[order]
    best, jmax = ious.max(axis=1), ious.argmax(axis=1)
    before = np.full(len(order), -np.inf)
    seen: dict[int, float] = {}
    for i, (j, b) in enumerate(zip(jmax.tolist(), best.tolist(), strict=True)):
        if j in seen:
            before[i] = seen[j]
        if b == b:  # a NaN overlap is never above a threshold, so it takes no box
            seen[j] = max(seen.get(j, -np.inf), b)
    thresholds = np.array(LYFT_THRESHOLDS)[:, None]
    hit = (best[None, :] > thresholds) & ~(before[None, :] > thresholds)
    tp = np.cumsum(hit * 1.0, axis=1)
    fp = np.cumsum(1.0 - hit, axis=1)
    recalls = tp / float(n_truth)
    precisions = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    out = np.zeros(len(LYFT_THRESHOLDS))
    for t in range(len(LYFT_THRESHOLDS)):  # a higher threshold often keeps the same hits: the same AP
        if not hit[t].any():
            break  # no hit here nor above: AP (1 - 0) * 0.0 = 0.0, as already set
        same = t > 0 and np.array_equal(hit[t], hit[t - 1])
        out[t] = out[t - 1] if same else _lyft_ap(recalls[t], precisions[t])
    return out


def _lyft_ap(recalls: np.ndarray, precisions: np.ndarray) -> np.float64:
    """Lyft's get_ap: area under the precision envelope where recall steps (its np.sum, same order)."""
    recalls = np.concatenate(([0.0], recalls, [1.0]))
    precisions = np.concatenate(([0.0], precisions, [0.0]))
    precisions = np.maximum.accumulate(precisions[::-1])[::-1]
    i = np.where(recalls[1:] != recalls[:-1])[0]
    return np.sum((recalls[i + 1] - recalls[i]) * precisions[i + 1])
