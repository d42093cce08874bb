"""The four detection metrics on tiny boxes, computed by hand, plus property tests (hypothesis).

Cases: empty against empty, empty against non-empty, touching and overlapping boxes, IoU exactly at
a threshold (v1 needs strictly above), duplicates, labels the answers lack, and each grader's
v1 quirks (pycocotools' id 0, COCO reading x_max/y_max as width/height, repeated image rows).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpc_mle import boxes
from hpc_mle.metrics import METRICS, InvalidSubmission

F1, SIIM, VIN, LYFT = (METRICS[n] for n in ("point-in-box-f1", "detection-map-at-iou-50", "coco-map-at-iou-40",
                                            "mean-average-precision-3d"))
FAST = settings(max_examples=30, deadline=None, derandomize=True)  # the same examples on every run


def kz(truth: list, preds: list) -> float:
    ids = [f"p{i}" for i in range(len(truth))]
    return F1(pd.DataFrame({"image_id": ids, "labels": truth}), pd.DataFrame({"image_id": ids, "labels": preds}))


# ---------------------------------------------------------------- kuzushiji (F1 of centre points)


def test_kuzushiji_by_hand():
    box = "A 0 0 10 10"
    assert kz([np.nan], [np.nan]) == 0.0  # nothing at all: tp + fp = 0 -> 0
    assert kz([np.nan], ["A 5 5"]) == 0.0  # one false positive, no truth
    assert kz([box], [np.nan]) == 0.0  # one miss
    assert kz([box], ["A 5 5"]) == 1.0
    assert kz([box], ["B 5 5"]) == 0.0  # right place, wrong character
    assert kz([box], ["A 10 5"]) == 0.0  # on the edge: strictly inside only
    assert kz([box], ["A 0.001 9.999"]) == 1.0
    # Two boxes, one point: precision 1, recall 1/2 -> F1 2/3. Two points on one box: 1 tp, 1 fp.
    assert kz([box + " " + box], ["A 5 5"]) == pytest.approx(2 / 3, abs=0)
    assert kz([box], ["A 5 5 A 6 6"]) == pytest.approx(2 / 3, abs=0)
    # Overlapping boxes: the first box takes the first point inside it, the second box then misses.
    assert kz(["A 0 0 10 10 A 5 5 10 10"], ["A 7 7"]) == pytest.approx(2 / 3, abs=0)
    assert kz(["A 0 0 10 10 A 5 5 10 10"], ["A 2 2 A 7 7"]) == 1.0
    # Pages add up: 2 tp + 1 fp on page 1, 1 fn on page 2 -> P = R = 2/3.
    assert kz(["A 0 0 10 10 B 20 20 5 5", "C 0 0 3 3"], ["A 1 1 B 21 21 B 50 50", np.nan]) == pytest.approx(2 / 3)


@pytest.mark.parametrize("bad", ["A 1", "A 1 1 ", " A 1 1", "A x 1", "A 1 1 B 2"])
def test_kuzushiji_malformed_is_invalid(bad):
    with pytest.raises(InvalidSubmission):
        kz(["A 0 0 10 10"], [bad])


def test_kuzushiji_ids_and_lengths():
    truth = pd.DataFrame({"image_id": ["a", "b"], "labels": ["A 0 0 9 9", "A 0 0 9 9"]})
    assert F1(truth, pd.DataFrame({"image_id": ["b", "a"], "labels": ["A 1 1", "A 1 1"]})) == 1.0
    for sub in (truth.iloc[:1], truth.assign(image_id=["a", "a"]), truth.assign(labels=[3.0, 4.0])):
        with pytest.raises(InvalidSubmission):
            F1(truth, sub)


# ---------------------------------------------------------------- siim-covid19 (mAP at IoU > 0.5)


def siim(truth: list[str], preds: list[str]) -> float:
    ids = [f"r{i}" for i in range(len(truth))]
    return SIIM(pd.DataFrame({"id": ids, "PredictionString": truth}), pd.DataFrame({"id": ids, "PredictionString": preds}))


STUDY, IMAGE = "negative 1 0 0 1 1", "opacity 1 0 0 10 10"


def test_siim_by_hand():
    assert siim([STUDY, IMAGE], ["negative 0.9 0 0 1 1", "opacity 0.8 0 0 10 10"]) == 1.0
    # Touching box (IoU 0): opacity pairs (0, .8) (1, 0) (0, 0) -> AP 1/3; negative AP 1 -> 2/3.
    assert siim([STUDY, IMAGE], ["negative 0.9 0 0 1 1", "opacity 0.8 10 0 20 10"]) == pytest.approx(2 / 3)
    # IoU exactly 0.5 is not a match (v1: strictly above).
    assert siim([STUDY, IMAGE], ["negative 0.9 0 0 1 1", "opacity 0.8 0 0 10 5"]) == pytest.approx(2 / 3)
    # A duplicate box: one true positive ranked first, then a false positive -> AP still 1.
    assert siim([STUDY, IMAGE], ["negative 0.9 0 0 1 1", "opacity 0.9 0 0 10 10 opacity 0.8 0 0 10 10"]) == 1.0
    # Nothing predicted (a blank cell): each label's truth (1, 0) against a (0, 0) row -> AP 1/2.
    assert siim([STUDY, IMAGE], [" ", " "]) == 0.5
    # A label the answers lack is ignored (v1 takes its classes from the answers).
    assert siim([STUDY, IMAGE], ["negative 0.9 0 0 1 1 typical 1 0 0 1 1", "opacity 0.8 0 0 10 10"]) == 1.0


def test_siim_refusals():
    for preds in (["negative 0.9 0 0 1", IMAGE], ["negative high 0 0 1 1", IMAGE], ["negative nan 0 0 1 1", IMAGE]):
        with pytest.raises(InvalidSubmission):
            siim([STUDY, IMAGE], preds)
    with pytest.raises(InvalidSubmission):  # every pair a positive: v1's AP is undefined, its grader stopped
        siim([IMAGE], [" "])


def test_average_precision_matches_scikit_learn():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    for _ in range(5):
        y = rng.integers(0, 2, 30)
        y[0] = 1
        s = rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], 30)
        assert boxes.average_precision_v1(y, s, "x") == average_precision_score(y, s)


@FAST
@given(st.lists(st.tuples(*[st.floats(0, 100)] * 2, *[st.floats(0.5, 50)] * 2), min_size=1, max_size=6))
def test_siim_iou_is_symmetric_and_bounded(raw):
    xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in raw])
    forward, backward = boxes._siim_ious(xyxy, xyxy), boxes._siim_ious(xyxy, xyxy).T
    assert np.allclose(forward, backward) and (forward >= 0).all() and (forward <= 1 + 1e-12).all()
    assert np.allclose(np.diag(forward), 1.0)


# ---------------------------------------------------------------- vinbigdata (COCO AP at IoU 0.4)

VIN_TRUTH = pd.DataFrame({"image_id": ["a", "b"], "class_name": ["Nodule", "Nodule"], "class_id": [0, 0],
                          "rad_id": ["R1", "R1"], "x_min": [10.0, 10.0], "y_min": [10.0, 10.0],
                          "x_max": [20.0, 20.0], "y_max": [20.0, 20.0]})


def vin(rows: list[tuple[str, str]], **options) -> float:
    return VIN(VIN_TRUTH, pd.DataFrame(rows, columns=["image_id", "PredictionString"]), **options)


CORRECTED = {"xywh": True, "unique_ids": True, "one_based_ids": True}


def test_vinbig_by_hand():
    exact = [("a", "0 1.0 10 10 20 20"), ("b", "0 1.0 10 10 20 20")]
    # v1: truth box id 0 (image a) is never matched, so a's detection is a false positive ranked first:
    # precision 1/2 up to recall 1/2 over 101 recall points -> 51 * 0.5 / 101.
    assert vin(exact) == pytest.approx(51 / 202, abs=1e-15)
    assert vin(exact, **CORRECTED) == 1.0
    # COCO reads [10, 10, 20, 20] as x, y, w, h: [14, 14, 19, 19] overlaps 0.507 there (a match at 0.4),
    # 0.25 as the corner box it is (no match) -> corrected: a TP (recall 1/2, precision 1), b FP.
    shrunk = [("a", "0 1.0 10 10 20 20"), ("b", "0 0.9 14 14 19 19")]
    assert vin(shrunk) == pytest.approx(51 / 202, abs=1e-15)
    assert vin(shrunk, **CORRECTED) == pytest.approx(51 / 101, abs=1e-15)
    # A repeated image row adds its boxes (v1), here a far-off false positive ranked above b's match:
    # precision 1/3 up to recall 1/2 -> 51 / 303.
    repeated = [exact[0], ("b", "0 0.5 10 10 20 20"), ("b", "0 1.0 500 500 600 600")]
    assert vin(repeated) == pytest.approx(51 / 303, abs=1e-15)
    with pytest.raises(InvalidSubmission):
        vin(repeated, **CORRECTED)
    # A class the answers lack and a box of negative area are scored as pycocotools scores them.
    assert vin([*exact[:1], ("b", "0 1.0 10 10 20 20 5 0.3 1 1 2 2")]) == pytest.approx(51 / 202, abs=1e-15)


@pytest.mark.parametrize("bad", ["0 1 10 10 20", "zero 1 10 10 20 20", "nan 1 10 10 20 20", "inf 1 1 1 2 2",
                                 "0 1  10 10 20 20"])
def test_vinbig_malformed_is_invalid(bad):
    with pytest.raises(InvalidSubmission):
        vin([("a", bad), ("b", "0 1.0 10 10 20 20")])
    with pytest.raises(InvalidSubmission):  # an image missing: the id sets differ
        vin([("a", "0 1.0 10 10 20 20")])


# ---------------------------------------------------------------- 3d-object (Lyft 3D mAP over IoU 0.5..0.95)

CAR = "0 0 0 2 4 1.5 0 car"  # centre (0, 0, 0), width 2 (y), length 4 (x), height 1.5, yaw 0


def lyft(truth: list[str], preds: list) -> float:
    ids = [f"s{i}" for i in range(len(truth))]
    return LYFT(pd.DataFrame({"Id": ids, "PredictionString": truth}), pd.DataFrame({"Id": ids, "PredictionString": preds}))


def test_lyft_by_hand():
    truth = [f"1.0 {CAR}"]
    assert lyft(truth, [f"0.9 {CAR}"]) == 1.0
    assert lyft(truth, [np.nan]) == 0.0  # empty prediction: AP 0
    # Shifted 1 m along its length: overlap 3 x 2 x 1.5 = 9, union 24 - 9 = 15 -> IoU 0.6, above 0.5 and
    # 0.55 only (0.6 is not above 0.6): 2 of 10 thresholds.
    assert lyft(truth, ["0.9 1 0 0 2 4 1.5 0 car"]) == pytest.approx(0.2, abs=1e-15)
    # Turned 90 degrees: overlap 2 x 2 x 1.5 = 6 -> IoU 1/3; touching end to end: 0; lifted 0.75 m: 1/3.
    assert lyft(truth, [f"0.9 0 0 0 2 4 1.5 {math.pi / 2} car"]) == 0.0
    assert lyft(truth, ["0.9 4 0 0 2 4 1.5 0 car"]) == 0.0
    assert lyft(truth, ["0.9 0 0 0.75 2 4 1.5 0 car"]) == 0.0
    # A duplicate after the true positive is a false positive at recall 1: AP stays 1.
    assert lyft(truth, [f"0.9 {CAR} 0.8 {CAR}"]) == 1.0
    # Ranked first, the duplicate-free false positive halves precision at recall 1 (AP 1/2).
    assert lyft(truth, [f"0.9 {CAR} 0.95 9 9 0 2 4 1.5 0 car"]) == 0.5
    # Two truth classes, one found: per threshold mean of [1, 0]; an unknown class is never looked at.
    assert lyft([f"1.0 {CAR} 1.0 9 9 0 1 1 1 0 pedestrian"], [f"0.9 {CAR} 0.9 0 0 0 -1 1 1 0 truck"]) == 0.5
    # Two coinciding truth boxes: both predictions pick the first (argmax), the second is a false
    # positive, so even the answers themselves score 1/2 (v1's greedy matching, kept).
    assert lyft([f"1.0 {CAR} 1.0 {CAR}"], [f"1.0 {CAR} 1.0 {CAR}"]) == 0.5
    # A sample without truth gives NaN (np.mean of nothing), which makes the whole score NaN, as in v1.
    assert math.isnan(lyft(["", f"1.0 {CAR}"], [np.nan, f"0.9 {CAR}"]))


@pytest.mark.parametrize("bad", [f"0.9 {CAR} 0.5", "0.9 0 0 0 -2 4 1.5 0 car", "0.9 0 0 0 nan 4 1.5 0 car",
                                 "0.9 0 0 0 1e12 4 1.5 0.3 car", "0.9 0 0 0 2 4 1.5 inf truck", "x 0 0 0 2 4 1.5 0 car",
                                 f" 0.9 {CAR}"])
def test_lyft_malformed_is_invalid(bad):
    with pytest.raises(InvalidSubmission):
        lyft([f"1.0 {CAR}"], [bad])


def test_lyft_yaw_matrix_is_pyquaternions():
    """cos/sin of the base corners are pyquaternion's rotation-matrix entries, fused multiply-add included."""
    from fractions import Fraction

    yaws = np.random.default_rng(1).uniform(-7, 7, 2000)
    cos, sin = boxes._yaw_cos_sin(yaws)
    for y, c, s in zip(yaws, cos, sin, strict=True):
        w, z = math.cos(y / 2.0), math.sin(y / 2.0)
        assert c == float(Fraction(w * w) - Fraction(z) ** 2) and s == z * w + w * z


lyft_box = st.tuples(*[st.floats(-20, 20)] * 3, *[st.floats(0.5, 6)] * 3, st.floats(-3.2, 3.2),
                     st.sampled_from(["car", "bus"]))


@FAST
@given(st.lists(lyft_box, min_size=1, max_size=5), st.lists(lyft_box, min_size=0, max_size=5))
def test_lyft_properties(truth_boxes, pred_boxes):
    def text(items, conf):
        return " ".join(f"{conf} {' '.join(repr(float(v)) for v in b[:7])} {b[7]}" for b in items)

    truth_boxes = [(x + 20 * i, *rest) for i, (x, *rest) in enumerate(truth_boxes)]  # apart: see by-hand test
    truth = text(truth_boxes, 1.0)
    assert lyft([truth], [truth]) == 1.0  # the answers score themselves perfectly
    score = lyft([truth], [text(pred_boxes, 0.5) or np.nan])
    assert 0.0 <= score <= 1.0
    both = {"truth": truth_boxes, "pred": pred_boxes}
    pr = boxes._stack([(np.array([[1.0, *b[:7]] for b in both["pred"]]).reshape(-1, 8), [b[7] for b in both["pred"]])])
    gt = boxes._stack([(np.array([[1.0, *b[:7]] for b in both["truth"]]).reshape(-1, 8), [b[7] for b in both["truth"]])])
    if len(pr["name"]):
        p_idx = np.repeat(np.arange(len(pr["name"])), len(gt["name"]))
        g_idx = np.tile(np.arange(len(gt["name"])), len(pr["name"]))
        ps, gs = boxes._shapes(pr["box"]), boxes._shapes(gt["box"])
        forward, backward = boxes._lyft_ious(p_idx, g_idx, ps, gs), boxes._lyft_ious(g_idx, p_idx, gs, ps)
        assert np.allclose(forward, backward, atol=1e-9) and (forward >= 0).all() and (forward <= 1).all()


@FAST
@given(st.lists(st.tuples(st.sampled_from("AB"), *[st.integers(0, 50)] * 2, *[st.integers(1, 20)] * 2),
                min_size=1, max_size=8))
def test_kuzushiji_properties(chars):
    truth = " ".join(f"{c} {x} {y} {w} {h}" for c, x, y, w, h in chars)
    centres = " ".join(f"{c} {x + w / 2} {y + h / 2}" for c, x, y, w, h in chars)
    assert kz([truth], [centres]) == 1.0
    swapped = " ".join(f"{'B' if c == 'A' else 'A'} {x + w / 2} {y + h / 2}" for c, x, y, w, h in chars)
    assert 0.0 <= kz([truth], [swapped]) <= 1.0
