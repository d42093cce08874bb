"""Preparation memory of a large image collection: peak RSS must not grow with the number of images.

    python benchmarks/prepare_memory.py [--images 5000,20000,40000] [--competition imet-2020-fgvc7]

For each size, builds a synthetic Kaggle-shaped download (imet-2020: train.csv, labels.csv and one small
real PNG per row in train/; herbarium-2021-fgvc8: train/metadata.json in COCO style, 20 images per
category, one small real JPEG per record under train/images/), then runs the competition's real preparer
in a fresh child process, which reports its own peak resident memory (ru_maxrss), its resident memory
after imports (the floor every size pays), and the wall time. Images are copied one at a time and the
metadata is streamed, so the peak should stay nearly flat while the time grows with the count; what does
grow is the index (a label table; per record a category and two offsets), tens to hundreds of bytes a row.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

PREPARERS = {"imet-2020-fgvc7": "hpc_mle.prepare.image_collections:imet_2020",
             "herbarium-2021-fgvc8": "hpc_mle.prepare.image_collections:herbarium_2021"}
DISTINCT_IMAGES = 64  # encoded once, written round-robin: building the download stays fast


def png_variants(rng: np.random.Generator, count: int) -> list[bytes]:
    out = []
    for _ in range(count):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def build_imet(raw: Path, images: int, rng: np.random.Generator) -> None:
    """iMet's download at `images` rows: train.csv (id, attribute_ids), labels.csv, train/<id>.png."""
    ids = [f"{k:032x}" for k in range(images)]
    labels = [" ".join(map(str, sorted(rng.choice(3474, size=3, replace=False)))) for _ in range(images)]
    pd.DataFrame({"id": ids, "attribute_ids": labels}).to_csv(raw / "train.csv", index=False)
    pd.DataFrame({"attribute_id": range(3474), "attribute_name": [f"tag::t{k}" for k in range(3474)]}).to_csv(
        raw / "labels.csv", index=False)
    (raw / "train").mkdir()
    variants = png_variants(rng, DISTINCT_IMAGES)
    for k, image_id in enumerate(ids):
        (raw / "train" / f"{image_id}.png").write_bytes(variants[k % DISTINCT_IMAGES])


def build_herbarium_2021(raw: Path, images: int, rng: np.random.Generator) -> None:
    """Herbarium 2021's download at `images` records: train/metadata.json and train/images/<ccc>/<cc>/<id>.jpg."""
    categories = rng.permutation(np.repeat(np.arange(max(1, images // 20)), 20))[:images]
    variants = png_variants(rng, DISTINCT_IMAGES)  # the preparer copies files unread: any image bytes do
    annotations, records = [], []
    for k, c in enumerate(categories.tolist()):
        name = f"images/{c // 100:03d}/{c % 100:02d}/{k}.jpg"
        annotations.append({"category_id": c, "id": k, "image_id": k, "institution_id": k % 5})
        records.append({"file_name": name, "height": 1000, "id": k, "license": 0, "width": 680})
        path = raw / "train" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(variants[k % DISTINCT_IMAGES])
    meta = {"annotations": annotations, "categories": [{"id": int(c), "name": f"species {c}"}
                                                       for c in np.unique(categories)],
            "images": records, "info": {"year": 2021}, "licenses": [{"id": 0}], "institutions": [{"id": 0}]}
    (raw / "train" / "metadata.json").write_text(json.dumps(meta))


BUILDERS = {"imet-2020-fgvc7": build_imet, "herbarium-2021-fgvc8": build_herbarium_2021}


def child(preparer: str, root: Path) -> None:
    """Runs in the child: import, note the floor, prepare, print the figures as one JSON line."""
    import importlib

    module, _, name = preparer.partition(":")
    fn = getattr(importlib.import_module(module), name)
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    (root / "public").mkdir()
    (root / "private").mkdir()
    start = time.perf_counter()
    fn(raw=root / "raw", public=root / "public", private=root / "private")
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"floor_mib": floor / 1024, "peak_mib": peak / 1024, "seconds": seconds}))


def measure(competition: str, images: int, workdir: Path) -> dict:
    root = workdir / f"{competition}-{images}"
    (root / "raw").mkdir(parents=True)
    BUILDERS[competition](root / "raw", images, np.random.default_rng(0))
    out = subprocess.run([sys.executable, __file__, "--child", PREPARERS[competition], str(root)],
                         check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    copied = sum(1 for p in (root / "public").rglob("*") if p.suffix in (".png", ".jpg"))
    if copied != images:
        raise RuntimeError(f"{root}: prepared {copied} images, expected {images}")
    return {"images": images, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="5000,20000,40000", help="comma-separated image counts")
    parser.add_argument("--competition", default="imet-2020-fgvc7", choices=sorted(PREPARERS))
    parser.add_argument("--child", nargs=2, metavar=("PREPARER", "ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    sizes = [int(x) for x in args.images.split(",")]
    print(f"{args.competition}: preparer in a fresh process per size (peak = ru_maxrss of that process)")
    print(f"{'images':>8} {'floor MiB':>10} {'peak MiB':>9} {'peak-floor':>11} {'seconds':>8}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="prepare-memory-") as tmp:
        for n in sizes:
            row = measure(args.competition, n, Path(tmp))
            rows.append(row)
            print(f"{n:>8} {row['floor_mib']:>10.1f} {row['peak_mib']:>9.1f} "
                  f"{row['peak_mib'] - row['floor_mib']:>11.1f} {row['seconds']:>8.2f}", flush=True)
    growth = rows[-1]["peak_mib"] - rows[0]["peak_mib"]
    print(f"peak growth from {sizes[0]} to {sizes[-1]} images: {growth:+.1f} MiB "
          f"({growth / max(sizes[-1] - sizes[0], 1) * 1024:.2f} KiB per image)")


if __name__ == "__main__":
    main()
