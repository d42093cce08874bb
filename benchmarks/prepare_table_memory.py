"""Preparation memory of the preparers that read a big table whole: measured small, scaled to the real size.

    python benchmarks/prepare_table_memory.py [--scale 0.1] [COMPETITION ...]

For each competition, writes a synthetic Kaggle-shaped download with `scale` x the real row count (same
columns, similar string widths), runs the real preparer on it in a fresh child process, and prints its
peak RSS (ru_maxrss) over the floor after imports. The growth is linear in the rows (pandas holds each
cell), so the real peak is about floor + growth / scale: the figure the specs' `prepare_memory_gb`
rounds up. Slow on purpose at real scale; the default 1/10 takes a few minutes on 2 cores.
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
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

WORDS = np.array(["the", "of", "and", "2015", "Dr.", "government", "a", "12:30", "Kansas", "century", "."])
RU_WORDS = np.array(["правительство", "и", "в", "2015", "года", "."])


def nyc_taxi(raw: Path, rows: int, rng: np.random.Generator) -> None:
    """train.csv: key and pickup_datetime as Kaggle writes them, four coordinates, fare, passengers."""
    stamps = (pd.Timestamp("2012-01-01") + pd.to_timedelta(rng.integers(0, 10**8, rows), unit="s"))
    text = stamps.strftime("%Y-%m-%d %H:%M:%S")
    frame = pd.DataFrame({"key": text + ".000000" + rng.integers(1, 9, rows).astype(str),
                          "fare_amount": rng.uniform(2, 60, rows).round(2), "pickup_datetime": text + " UTC"})
    for column in ("pickup_longitude", "pickup_latitude", "dropoff_longitude", "dropoff_latitude"):
        frame[column] = rng.uniform(40.5, 40.9, rows)
    frame["passenger_count"] = rng.integers(1, 6, rows)
    frame.to_csv(raw / "train.csv", index=False)
    (raw / "GCP-Coupons-Instructions.rtf").write_text("coupons")


def tps_dec_2021(raw: Path, rows: int, rng: np.random.Generator) -> None:
    """train.csv: Id, 10 integer features, 44 binary soil/area flags, Cover_Type."""
    columns = {"Id": np.arange(rows)}
    columns |= {f"f{k}": rng.integers(0, 4000, rows) for k in range(10)}
    columns |= {f"b{k}": rng.integers(0, 2, rows) for k in range(44)}
    pd.DataFrame({**columns, "Cover_Type": rng.integers(1, 8, rows)}).to_csv(raw / "train.csv", index=False)


def _text_normalization(raw: Path, rows: int, rng: np.random.Generator, lang: str, words: np.ndarray) -> None:
    """<lang>_train.csv.zip: sentences of 10 tokens (sentence_id, token_id, class, before, after)."""
    token = words[rng.integers(0, len(words), rows)]
    frame = pd.DataFrame({"sentence_id": np.arange(rows) // 10, "token_id": np.arange(rows) % 10,
                          "class": np.where(rng.random(rows) < 0.7, "PLAIN", "PUNCT"), "before": token, "after": token})
    with zipfile.ZipFile(raw / f"{lang}_train.csv.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{lang}_train.csv", frame.to_csv(index=False))


def facebook(raw: Path, rows: int, rng: np.random.Generator) -> None:
    """Train.zip holding Train.csv: Id, Title, a ~1 KB HTML Body, Tags."""
    bodies = ["<p>" + " ".join(WORDS[rng.integers(0, len(WORDS), 150)]) + "</p>" for _ in range(2000)]
    frame = pd.DataFrame({"Id": np.arange(1, rows + 1), "Title": [f"How do I do thing {i}" for i in range(rows)],
                          "Body": [bodies[i % 2000] + str(i) for i in range(rows)], "Tags": "c# java .net"})
    with zipfile.ZipFile(raw / "Train.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("Train.csv", frame.to_csv(index=False))


def ventilator(raw: Path, rows: int, rng: np.random.Generator) -> None:
    """train.csv: breaths of 80 time steps (id, breath_id, R, C, time_step, u_in, u_out, pressure)."""
    breaths = max(rows // 80, 10)
    n = breaths * 80
    pd.DataFrame({"id": np.arange(1, n + 1), "breath_id": np.repeat(np.arange(1, breaths + 1), 80),
                  "R": np.repeat(rng.choice([5, 20, 50], breaths), 80), "C": np.repeat(rng.choice([10, 20, 50], breaths), 80),
                  "time_step": np.tile(np.arange(80) * 0.0333, breaths), "u_in": rng.uniform(0, 100, n),
                  "u_out": np.tile((np.arange(80) > 30).astype(int), breaths),
                  "pressure": rng.uniform(-2, 64, n)}).to_csv(raw / "train.csv", index=False)


def champs(raw: Path, rows: int, rng: np.random.Generator, pairs: int = 55, atoms: int = 18) -> None:
    """train/test.csv (55 pairs a molecule), structures.csv and .xyz files, the per-atom/per-molecule tables."""
    molecules = max(rows // pairs, 20)
    names = np.array([f"dsgdb9nsd_{i:06d}" for i in range(molecules + molecules // 9)])
    train_names = names[:molecules]

    def pairs_of(mols: np.ndarray) -> pd.DataFrame:
        m = np.repeat(mols, pairs)
        return pd.DataFrame({"molecule_name": m, "atom_index_0": rng.integers(0, atoms, len(m)),
                             "atom_index_1": rng.integers(0, atoms, len(m)),
                             "type": np.array(["1JHC", "2JHH", "2JHC", "3JHC", "3JHH", "1JHN"])[rng.integers(0, 6, len(m))]})

    train = pairs_of(train_names)
    train.insert(0, "id", np.arange(len(train)))
    train["scalar_coupling_constant"] = rng.normal(20, 30, len(train)).round(5)
    train.to_csv(raw / "train.csv", index=False)
    test = pairs_of(names[molecules:])
    test.insert(0, "id", np.arange(len(train), len(train) + len(test)))
    test.to_csv(raw / "test.csv", index=False)
    structures = pd.DataFrame({"molecule_name": np.repeat(names, atoms), "atom_index": np.tile(np.arange(atoms), len(names)),
                               "atom": np.array(["C", "H", "N", "O"])[rng.integers(0, 4, len(names) * atoms)]})
    for axis in "xyz":
        structures[axis] = rng.normal(size=len(structures)).round(6)
    structures.to_csv(raw / "structures.csv", index=False)
    (raw / "structures").mkdir()
    for name in names:
        (raw / "structures" / f"{name}.xyz").write_text(f"{atoms}\n\n" + "C 0.1 0.2 0.3\n" * atoms)
    per_molecule = pd.DataFrame({"molecule_name": train_names})
    per_molecule.assign(X=0.1, Y=0.0, Z=0.2).to_csv(raw / "dipole_moments.csv", index=False)
    per_molecule.assign(potential_energy=-400.5).to_csv(raw / "potential_energy.csv", index=False)
    atom_rows = structures[structures["molecule_name"].isin(train_names)][["molecule_name", "atom_index"]]
    tensor = {k: rng.normal(size=len(atom_rows)).round(4) for k in ("XX", "YX", "ZX", "XY", "YY", "ZY", "XZ", "YZ", "ZZ")}
    atom_rows.assign(**tensor).to_csv(raw / "magnetic_shielding_tensors.csv", index=False)
    atom_rows.assign(mulliken_charge=0.1).to_csv(raw / "mulliken_charges.csv", index=False)
    parts = {k: rng.normal(size=len(train)).round(5) for k in ("fc", "sd", "pso", "dso")}
    train[["molecule_name", "atom_index_0", "atom_index_1", "type"]].assign(**parts).to_csv(
        raw / "scalar_coupling_contributions.csv", index=False)


def denoising(raw: Path, rows: int, rng: np.random.Generator) -> None:
    """train.zip and train_cleaned.zip: 144 grey pages 540 pixels wide (258 or 420 high); rows is ignored."""
    for folder in ("train", "train_cleaned"):
        with zipfile.ZipFile(raw / f"{folder}.zip", "w") as zf:
            for page in range(1, 145):
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (420 if page % 2 else 258, 540), dtype=np.uint8)).save(buf, "PNG")
                zf.writestr(f"{folder}/{page}.png", buf.getvalue())


# competition: (preparer, writer, real row count; 0 = written at full size whatever the scale)
CASES = {
    "new-york-city-taxi-fare-prediction": ("hpc_mle.prepare.tabular:nyc_taxi_fare", nyc_taxi, 55_423_856),
    "tabular-playground-series-dec-2021": ("hpc_mle.prepare.tabular:tps_dec_2021", tps_dec_2021, 4_000_000),
    "text-normalization-challenge-english-language": (
        "hpc_mle.prepare.text_tasks:text_normalization_challenge_english_language",
        lambda raw, rows, rng: _text_normalization(raw, rows, rng, "en", WORDS), 9_918_441),
    "text-normalization-challenge-russian-language": (
        "hpc_mle.prepare.text_tasks:text_normalization_challenge_russian_language",
        lambda raw, rows, rng: _text_normalization(raw, rows, rng, "ru", RU_WORDS), 10_574_516),
    "facebook-recruiting-iii-keyword-extraction": ("hpc_mle.prepare.text_tasks:facebook_keyword_extraction", facebook,
                                                   6_034_195),
    "ventilator-pressure-prediction": ("hpc_mle.prepare.tabular:ventilator_pressure", ventilator, 6_036_000),
    "champs-scalar-coupling": ("hpc_mle.prepare.molecules:champs_scalar_coupling", champs, 4_658_147),
    "denoising-dirty-documents": ("hpc_mle.prepare.images:denoising_dirty_documents", denoising, 0),
}


def child(preparer: str, root: Path) -> None:
    """Runs in the child: import, note the floor, prepare, print the figures as one JSON line."""
    import importlib

    module, _, name = preparer.partition(":")
    fn = getattr(importlib.import_module(module), name)
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    fn(raw=root / "raw", public=root / "public", private=root / "private")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"floor_mib": floor / 1024, "peak_mib": peak / 1024, "seconds": time.perf_counter() - start}))


def measure(competition: str, scale: float, workdir: Path) -> dict:
    preparer, _, real_rows = CASES[competition]
    root = workdir / competition
    for part in ("raw", "public", "private"):
        (root / part).mkdir(parents=True)
    rows = int(real_rows * scale) if real_rows else 0
    # The download is written by another child: Linux carries a parent's peak RSS into a child's ru_maxrss.
    subprocess.run([sys.executable, __file__, "--write", competition, str(rows), str(root / "raw")], check=True)
    out = subprocess.run([sys.executable, __file__, "--child", preparer, str(root)],
                         check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    growth = (result["peak_mib"] - result["floor_mib"]) / (scale if real_rows else 1.0)
    return {"rows": rows, "real_gib": (result["floor_mib"] + growth) / 1024, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("competitions", nargs="*", metavar="COMPETITION", help=f"default: all of {', '.join(CASES)}")
    parser.add_argument("--scale", type=float, default=0.1, help="share of the real row count to write")
    parser.add_argument("--child", nargs=2, metavar=("PREPARER", "ROOT"), help=argparse.SUPPRESS)
    parser.add_argument("--write", nargs=3, metavar=("COMPETITION", "ROWS", "RAW"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    if args.write:
        CASES[args.write[0]][1](Path(args.write[2]), int(args.write[1]), np.random.default_rng(0))
        return
    unknown = sorted(set(args.competitions) - set(CASES))
    if unknown:
        parser.error(f"no table case for {', '.join(unknown)}; choose from {', '.join(CASES)}")
    print(f"{'competition':46} {'rows':>10} {'floor MiB':>10} {'peak MiB':>9} {'seconds':>8} {'real GiB':>9}")
    with tempfile.TemporaryDirectory(prefix="prepare-table-memory-") as tmp:
        for competition in args.competitions or CASES:
            r = measure(competition, args.scale, Path(tmp))
            print(f"{competition:46} {r['rows'] or 'full':>10} {r['floor_mib']:>10.0f} {r['peak_mib']:>9.0f} "
                  f"{r['seconds']:>8.1f} {r['real_gib']:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
