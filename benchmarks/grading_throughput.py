"""Grading throughput: rows/s and peak memory for 10k and 1M-row submissions, per metric family.

Target (issue #2): a 1M-row two-column submission graded in under 3 s on the 2-core dev machine.
Each case runs in a fresh child process so its peak RSS is its own. Synthetic competitions are
written to a temporary folder; nothing outside it is touched.

    python benchmarks/grading_throughput.py            # all families, 10k and 1M rows
    python benchmarks/grading_throughput.py --rows 10000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

FAMILIES = {
    # name: (metric, higher_is_better, number of answer columns)
    "binary-auc": ("auc-roc", True, 1),
    "binary-log-loss": ("log-loss", False, 1),
    "regression-rmse": ("root-mean-squared-error", False, 1),
    "accuracy": ("accuracy", True, 1),
    "label-sets-micro-f1": ("micro-f1-label-sets", True, 1),
    "multiclass-log-loss-10": ("multi-class-log-loss", False, 10),
}


def make_case(root: Path, family: str, rows: int) -> tuple[str, Path, Path]:
    """Write spec, answers, a leaderboard and a valid (shuffled) submission; return (id, data dir, submission)."""
    metric, higher, ncols = FAMILIES[family]
    cid = f"bench-{family}"
    rng = np.random.default_rng(0)
    ids = np.arange(rows)
    if family == "multiclass-log-loss-10":
        cols = [f"class_{i}" for i in range(ncols)]
        onehot = np.eye(ncols, dtype=int)[rng.integers(ncols, size=rows)]
        answers = pd.DataFrame(onehot, columns=cols)
        proba = rng.dirichlet(np.ones(ncols), size=rows)
        sub = pd.DataFrame(proba, columns=cols)
    else:
        cols = ["target"]
        if family in ("binary-auc", "binary-log-loss"):
            answers, sub = pd.DataFrame({"target": rng.integers(2, size=rows)}), pd.DataFrame({"target": rng.random(rows)})
        elif family == "regression-rmse":
            answers, sub = pd.DataFrame({"target": rng.normal(size=rows)}), pd.DataFrame({"target": rng.normal(size=rows)})
        elif family == "accuracy":
            answers = pd.DataFrame({"target": rng.integers(10, size=rows)})
            sub = pd.DataFrame({"target": rng.integers(10, size=rows)})
        else:
            labels = np.array(["a", "b", "c", "d", "e", "a b", "c d e", ""])
            answers = pd.DataFrame({"target": labels[rng.integers(len(labels), size=rows)]})
            sub = pd.DataFrame({"target": labels[rng.integers(len(labels), size=rows)]})
    answers.insert(0, "id", ids)
    sub.insert(0, "id", ids)
    sub = sub.sample(frac=1.0, random_state=0)  # graders must match rows by id

    spec = {
        "id": cid, "name": cid, "split": "mini", "category": "Benchmark",
        "metric": {"name": metric, "higher_is_better": higher},
        "submission": {"id_columns": ["id"], "answer_columns": cols},
        "files": {"answers": "private/test.csv", "sample_submission": "public/sample_submission.csv"},
        "leaderboard": {"source": "reference-panel"}, "implemented": True, "preparer": "unused:unused",
    }
    (root / "competitions" / cid).mkdir(parents=True)
    (root / "competitions" / cid / "spec.yaml").write_text(yaml.safe_dump(spec))
    scores = np.linspace(1.0, 0.0, 200) if higher else np.linspace(0.0, 1.0, 200)
    pd.DataFrame({"score": scores}).to_csv(root / "competitions" / cid / "leaderboard.csv", index=False)
    private = root / "data" / cid / "prepared" / "private"
    private.mkdir(parents=True)
    answers.to_csv(private / "test.csv", index=False)
    path = root / f"{cid}-{rows}.csv"
    sub.to_csv(path, index=False)
    return cid, root / "data", path


def run_case(family: str, rows: int) -> dict:
    """Child process: build the case, grade it twice (cold: answers read; warm: answers cached), report."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["HPC_MLE_COMPETITIONS"] = str(root / "competitions")
        cid, data, sub = make_case(root, family, rows)
        from hpc_mle import grading

        base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        report = grading.grade_submission(sub, cid, data)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        grading.grade_submission(sub, cid, data)
        warm = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert report.valid_submission, report.reason
        return {
            "family": family, "rows": rows, "size_mib": sub.stat().st_size / 2**20,
            "cold_s": cold, "warm_s": warm, "rows_per_s": rows / cold,
            "peak_rss_mib": peak / 1024, "grading_rss_mib": (peak - base_rss) / 1024,
        }


# ---------------------------------------------------------------- full-size detection submissions
# One case per detection grader, as many rows and boxes as the real test set (v1's split of Kaggle's
# data), graded through the real spec (its metric, options and row order). Target: < 30 s, < 4 GiB.

def _boxes_text(groups: list[np.ndarray], fmt) -> list[str]:
    return [" ".join(fmt(row) for row in g) for g in groups]


def _full_kuzushiji(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """389 test pages (10% of 3,881) with ~176 characters each; every character predicted, some moved off."""
    codes = np.array([f"U+{c:04X}" for c in range(0x3041, 0x3041 + 400)])
    pages, truth, preds = [f"page_{i:05d}" for i in range(389)], [], []
    for _ in pages:
        n = int(rng.integers(120, 230))
        xy, wh, label = rng.integers(0, 3000, (n, 2)), rng.integers(20, 120, (n, 2)), codes[rng.integers(0, 400, n)]
        truth.append(" ".join(f"{c} {x} {y} {w} {h}" for c, (x, y), (w, h) in zip(label, xy, wh, strict=True)))
        centre = xy + wh // 2 + rng.integers(-40, 40, (n, 2))
        preds.append(" ".join(f"{c} {x} {y}" for c, (x, y) in zip(label, centre, strict=True)))
    return pd.DataFrame({"image_id": pages, "labels": truth}), pd.DataFrame({"image_id": pages, "labels": preds})


def _full_siim(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """606 study rows (4 labels predicted each) and 634 image rows (10 opacity boxes + none predicted)."""
    ids, truth, preds = [], [], []
    labels = ["negative", "typical", "indeterminate", "atypical"]
    for i in range(606):
        ids.append(f"{i:012x}_study")
        truth.append(f"{labels[rng.integers(4)]} 1 0 0 1 1")
        preds.append(" ".join(f"{lab} {rng.random():.4f} 0 0 1 1" for lab in labels))
    for i in range(634):
        ids.append(f"{i:012x}_image")
        k = int(rng.integers(0, 4))
        xy = rng.uniform(0, 3000, (max(k, 1), 2))
        wh = rng.uniform(200, 1200, (max(k, 1), 2))
        truth.append(" ".join(f"opacity 1 {x:.5f} {y:.5f} {x + w:.5f} {y + h:.5f}" for (x, y), (w, h) in zip(xy, wh, strict=True))
                     if k else "none 1 0 0 1 1")
        guess = np.concatenate([xy, xy + wh], axis=1)[rng.integers(0, len(xy), 10)] + rng.normal(0, 60, (10, 4))
        preds.append(" ".join(f"opacity {rng.random():.4f} {a:.2f} {b:.2f} {c:.2f} {d:.2f}" for a, b, c, d in guess)
                     + f" none {rng.random():.4f} 0 0 1 1")
    return pd.DataFrame({"id": ids, "PredictionString": truth}), pd.DataFrame({"id": ids, "PredictionString": preds})


def _full_vinbig(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """1,500 test images (v1's 10%), ~2 consensus boxes each, 60 predicted boxes per image over 15 classes."""
    rows, preds = [], []
    for i in range(1500):
        image = f"{i:032x}"
        classes = [14] if rng.random() < 0.7 else sorted(rng.choice(14, size=int(rng.integers(1, 5)), replace=False))
        for c in classes:
            x, y = rng.uniform(0, 2500, 2)
            box = (0.0, 0.0, 1.0, 1.0) if c == 14 else (x, y, x + rng.uniform(50, 900), y + rng.uniform(50, 900))
            rows.append((image, f"class {c}", int(c), "R8", *box))
        guess = np.column_stack([rng.integers(0, 15, 60), rng.random(60), rng.uniform(0, 2500, (60, 2))])
        guess = np.column_stack([guess, guess[:, 2:4] + rng.uniform(50, 900, (60, 2))])
        preds.append((image, " ".join(f"{int(c)} {s:.4f} {a:.1f} {b:.1f} {d:.1f} {e:.1f}" for c, s, a, b, d, e in guess)))
    answers = pd.DataFrame(rows, columns=["image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max"])
    return answers, pd.DataFrame(preds, columns=["image_id", "PredictionString"])


def _full_lyft(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """4,536 test samples (v1's 20% of logs) with ~25 truth boxes each; 50 predicted boxes per sample,
    most of them near a truth box (the hard case: many overlapping pairs)."""
    names = np.array(["car", "pedestrian", "bicycle", "truck", "bus", "other_vehicle", "motorcycle", "animal",
                      "emergency_vehicle"])
    ids, truth, preds = [], [], []
    for i in range(4536):
        n = int(rng.integers(10, 40))
        box = np.column_stack([rng.uniform(900, 1100, n), rng.uniform(1600, 1800, n), rng.uniform(-25, -15, n),
                               rng.uniform(0.5, 2.5, n), rng.uniform(0.5, 6, n), rng.uniform(1, 2.5, n),
                               rng.uniform(-3.1, 3.1, n)])
        label = names[rng.choice(9, n, p=[0.7, 0.1, 0.04, 0.04, 0.03, 0.05, 0.02, 0.01, 0.01])]
        ids.append(f"{i:064x}")
        truth.append(" ".join("1.0 " + " ".join(f"{v:.6f}" for v in b) + f" {c}" for b, c in zip(box, label, strict=True)))
        pick = rng.integers(0, n, 50)
        guess = box[pick] + rng.normal(0, 0.3, (50, 7)) * [1, 1, 0.2, 0.1, 0.2, 0.1, 0.1]
        guess[:, 3:6] = np.abs(guess[:, 3:6]) + 0.1
        preds.append(" ".join(f"{rng.random():.4f} " + " ".join(f"{v:.6f}" for v in b) + f" {c}"
                              for b, c in zip(guess, label[pick], strict=True)))
    return pd.DataFrame({"Id": ids, "PredictionString": truth}), pd.DataFrame({"Id": ids, "PredictionString": preds})


FULL_SIZE = {
    # name: (competition whose spec is graded, maker of (answers, submission), tokens per predicted object)
    "kuzushiji-recognition": ("kuzushiji-recognition", _full_kuzushiji, 3),
    "siim-covid19-detection": ("siim-covid19-detection", _full_siim, 6),
    "vinbigdata-chest-xray": ("vinbigdata-chest-xray-abnormalities-detection", _full_vinbig, 6),
    "3d-object-detection": ("3d-object-detection-for-autonomous-vehicles", _full_lyft, 9),
}


# ---------------------------------------------------------------- full-size segmentation submissions
# One case per segmentation grader (issue 15), as many rows and mask pixels as v1's real test set: image
# sizes from upstream's code and the competitions' data pages, made-up masks of realistic run counts.
# An "object" below is one run of the run-length masks (2 tokens).

HUBMAP_SLIDES = [(38160, 42360), (39960, 50680), (36800, 43780)]  # (height, width): ~1.6-2 gigapixels each
UW_CASE_DAYS, UW_SLICES = 60, 144  # ~26,000 rows (3 organs per slice) of 266 x 266 scans: a generous estimate
VESUVIUS_SHAPE = (7606, 5249)  # fragment 3, v1's one test fragment (height, width)


def _runs_text(starts: np.ndarray, lengths: np.ndarray) -> str:
    order = np.argsort(starts, kind="stable")
    return " ".join(map(str, np.column_stack([starts[order] + 1, lengths[order]]).ravel().tolist()))


def _ellipse_runs(height: int, cy: float, cx: float, ry: float, rx: float) -> tuple[np.ndarray, np.ndarray]:
    """Column-major runs (0-based starts, lengths) of a filled ellipse: one run per column it covers."""
    xs = np.arange(int(np.ceil(cx - rx)), int(np.floor(cx + rx)) + 1)
    half = np.floor(ry * np.sqrt(np.clip(1 - ((xs - cx) / rx) ** 2, 0, 1))).astype(np.int64)
    top = np.clip(round(cy) - half, 0, height - 1)
    return xs * height + top, np.clip(round(cy) + half, 0, height - 1) - top + 1


def _ellipses(height: int, width: int, cell: int, radius: tuple[int, int], rng: np.random.Generator,
              shift: int = 0, keep: float = 1.0) -> str:
    """At most one ellipse per `cell`-sized square of the image (so none overlap), as column-major run text."""
    starts, lengths = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for y in range(cell // 2, height - cell // 2, cell):
        for x in range(cell // 2, width - cell // 2, cell):
            if rng.random() < keep:
                s, n = _ellipse_runs(height, y + shift, x + shift, *rng.integers(*radius, size=2))
                starts.append(s)
                lengths.append(n)
    return _runs_text(np.concatenate(starts), np.concatenate(lengths))


def _full_contrails(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """1,856 records of 256 x 256 (as many as Kaggle's validation set); a third of the squares hold a mask."""
    ids = rng.choice(10**18, 1856, replace=False) + 10**18
    truth = [_ellipses(256, 256, 64, (2, 12), rng, keep=0.3) or "-" for _ in ids]
    pred = [_ellipses(256, 256, 64, (2, 12), rng, shift=1, keep=0.3) or "-" for _ in ids]
    answers = pd.DataFrame({"record_id": ids, "encoded_pixels": truth, "height": 256, "width": 256})
    return answers, answers[["record_id"]].assign(encoded_pixels=pred)


def _full_hubmap(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """3 slides of 1.6-2 gigapixels with ~1,000 glomeruli each (~270,000 runs a slide)."""
    ids = ["2f6ecfcdf", "aaa6a05cc", "cb2d976f4"]
    truth = [_ellipses(h, w, 1400, (80, 200), rng) for h, w in HUBMAP_SLIDES]
    pred = [_ellipses(h, w, 1400, (70, 190), rng, shift=5, keep=0.9) for h, w in HUBMAP_SLIDES]
    answers = pd.DataFrame({"id": ids, "encoding": truth, "width_pixels": [w for _, w in HUBMAP_SLIDES],
                            "height_pixels": [h for h, _ in HUBMAP_SLIDES]})
    return answers, answers[["id"]].assign(predicted=pred)


def _full_tgs(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """1,000 images of 101 x 101 (a quarter of Kaggle's 4,000)."""
    ids = [f"{v:010x}" for v in rng.choice(16**10, 1000, replace=False)]
    truth = [_ellipses(101, 101, 50, (5, 24), rng, keep=0.6) for _ in ids]
    pred = [_ellipses(101, 101, 50, (5, 24), rng, shift=2, keep=0.6) for _ in ids]
    return pd.DataFrame({"id": ids, "rle_mask": truth}), pd.DataFrame({"id": ids, "rle_mask": pred})


def _full_uw(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """60 case-days of 144 slices x 3 organs (~26,000 rows), organs in the middle slices, predicted 1-2 px off."""
    rows = []
    for day in range(UW_CASE_DAYS):
        for s in range(1, UW_SLICES + 1):
            for k, organ in enumerate(("large_bowel", "small_bowel", "stomach")):
                present = 40 < s < 110 and rng.random() < 0.8
                cy, cx = 133 + 20 * np.sin(s / 20), 70 + 60 * k
                truth = _runs_text(*_ellipse_runs(266, cy, cx, 25, 30)) if present else ""
                pred = _runs_text(*_ellipse_runs(266, cy + 2, cx + 1, 24, 31)) if present else ""
                rows.append((f"case{day}_day{day % 7}_slice_{s:04}", organ, truth, pred))
    frame = pd.DataFrame(rows, columns=["id", "class", "truth", "pred"])
    answers = frame[["id", "class"]].assign(predicted=frame["truth"], image_width=266.0, image_height=266.0)
    return answers, frame[["id"]].assign(predicted=frame["pred"], **{"class": frame["class"]})  # masks 2nd: counted


def _full_vesuvius(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fragment 3's ~40 megapixels in one row: ink strokes on 30% of the rows (~45,000 runs), row-major."""
    height, width = VESUVIUS_SHAPE
    texts = []
    for shift in (0, 2):
        rows = np.flatnonzero(rng.random(height) < 0.3)
        cells = np.arange(0, width - 250, 250)
        offsets = rng.integers(0, 200, size=(len(rows), len(cells))) + shift
        lengths = rng.integers(5, 40, size=(len(rows), len(cells)))
        texts.append(_runs_text((rows[:, None] * width + cells[None, :] + offsets).ravel(), lengths.ravel()))
    answers = pd.DataFrame({"Id": ["a"], "Predicted": [texts[0]], "width": [width], "height": [height]})
    return answers, pd.DataFrame({"Id": ["a"], "Predicted": [texts[1]]})


FULL_SIZE.update({
    "google-research-contrails": ("google-research-identify-contrails-reduce-global-warming", _full_contrails, 2),
    "hubmap-kidney": ("hubmap-kidney-segmentation", _full_hubmap, 2),
    "tgs-salt": ("tgs-salt-identification-challenge", _full_tgs, 2),
    "uw-madison-gi-tract": ("uw-madison-gi-tract-image-segmentation", _full_uw, 2),
    "vesuvius-ink": ("vesuvius-challenge-ink-detection", _full_vesuvius, 2),
})


def run_full_size(name: str) -> dict:
    """Child process: a copy of the real spec under a bench id, full-size answers and submission, one grade."""
    source, make, per_object = FULL_SIZE[name]
    real = Path(__file__).resolve().parents[1] / "competitions" / source / "spec.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec = yaml.safe_load(real.read_text())
        cid = f"bench-{name}"
        spec.update(id=cid, name=cid, split="mini", leaderboard={"source": "reference-panel"}, download="none")
        spec["files"].pop("gold_submission", None)
        (root / "competitions" / cid).mkdir(parents=True)
        (root / "competitions" / cid / "spec.yaml").write_text(yaml.safe_dump(spec))
        pd.DataFrame({"score": np.linspace(1.0, 0.0, 200)}).to_csv(root / "competitions" / cid / "leaderboard.csv",
                                                                  index=False)
        os.environ["HPC_MLE_COMPETITIONS"] = str(root / "competitions")
        answers, sub = make(np.random.default_rng(0))
        answers_path = root / "data" / cid / "prepared" / spec["files"]["answers"]
        answers_path.parent.mkdir(parents=True)
        answers.to_csv(answers_path, index=False)
        path = root / f"{cid}.csv"
        sub.sample(frac=1.0, random_state=0).to_csv(path, index=False)
        objects = int((sub.iloc[:, 1].str.count(" ") + 1).sum()) // per_object
        del answers, sub
        from hpc_mle import grading

        base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0, cpu0 = time.perf_counter(), time.process_time()
        report = grading.grade_submission(path, cid, root / "data")
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert report.valid_submission, report.reason
        return {"family": name, "rows": int(pd.read_csv(path, usecols=[0]).shape[0]), "objects": objects,
                "size_mib": path.stat().st_size / 2**20, "seconds": elapsed, "cpu_s": cpu, "score": report.score,
                "peak_rss_mib": peak / 1024, "grading_rss_mib": (peak - base_rss) / 1024}


def full_size_main(names: list[str]) -> None:
    """Run each full-size case in its own process and print time and peak memory against the target."""
    # CPU seconds beside wall seconds: on a loaded shared machine the wall time also counts others' work.
    print(f"{'full-size case':<26}{'rows':>8}{'objects':>9}{'MiB':>7}{'seconds':>9}{'CPU s':>7}{'peak RSS MiB':>14}"
          f"{'score':>10}  target <30 s, <4 GiB")
    for name in names:
        out = subprocess.run([sys.executable, __file__, "--full-size-child", name], check=True, capture_output=True, text=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        ok = "OK" if r["seconds"] < 30 and r["peak_rss_mib"] < 4096 else "OVER TARGET"
        print(f"{r['family']:<26}{r['rows']:>8,}{r['objects']:>9,}{r['size_mib']:>7.1f}{r['seconds']:>9.2f}"
              f"{r['cpu_s']:>7.1f}{r['peak_rss_mib']:>14.0f}{r['score']:>10}  {ok}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="*", default=[10_000, 1_000_000])
    parser.add_argument("--family", nargs="*", default=list(FAMILIES))
    parser.add_argument("--child", nargs=2, metavar=("FAMILY", "ROWS"), help=argparse.SUPPRESS)
    parser.add_argument("--full-size", nargs="*", metavar="CASE", choices=list(FULL_SIZE),
                        help=f"full-size detection and segmentation submissions instead ({', '.join(FULL_SIZE)}; none named: all)")
    parser.add_argument("--full-size-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.full_size_child:
        print(json.dumps(run_full_size(args.full_size_child)))
        return
    if args.full_size is not None:
        full_size_main(args.full_size or list(FULL_SIZE))
        return
    if args.child:
        print(json.dumps(run_case(args.child[0], int(args.child[1]))))
        return

    print(f"{'family':<24}{'rows':>10}{'MiB':>8}{'cold s':>9}{'warm s':>9}{'rows/s':>13}{'peak RSS MiB':>14}")
    results = []
    for rows in args.rows:
        for family in args.family:
            out = subprocess.run([sys.executable, __file__, "--child", family, str(rows)],
                                 check=True, capture_output=True, text=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(r)
            print(f"{r['family']:<24}{r['rows']:>10,}{r['size_mib']:>8.1f}{r['cold_s']:>9.2f}{r['warm_s']:>9.2f}"
                  f"{r['rows_per_s']:>13,.0f}{r['peak_rss_mib']:>14.0f}")
    target = [r for r in results if r["rows"] == 1_000_000 and r["family"] in ("binary-auc", "regression-rmse")]
    for r in target:
        verdict = "OK" if r["cold_s"] < 3 else "OVER TARGET"
        print(f"target: 1M-row two-column ({r['family']}) graded in {r['cold_s']:.2f} s (< 3 s): {verdict}")


if __name__ == "__main__":
    main()
