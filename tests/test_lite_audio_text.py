"""Lite competitions with audio and text: mlsp-2013-birds, icml-2013 whale, text normalisation (en, ru).

Each `make_raw_*` writes what extracting Kaggle's download gives (nested zips, folders, file names,
headers, quoting), at toy size: a few dozen tiny WAV/AIFF clips or a few hundred tokens. The shared
checks of `lite_support` run on them, plus checks that matter for each preparation: mlsp's Id
encoding and renumbering, the whale's split by recording day, and that the zipped public text
files hold no answer.
"""

from __future__ import annotations

import csv
import io
import struct
import wave
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from lite_support import run_checks
from PIL import Image

MLSP = "mlsp-2013-birds"
WHALE = "the-icml-2013-whale-challenge-right-whale-redux"
TEXT_EN = "text-normalization-challenge-english-language"
TEXT_RU = "text-normalization-challenge-russian-language"


# ---------------------------------------------------------------- small file writers


def wav_bytes(rng: np.random.Generator, rate: int = 16000, frames: int = 32) -> bytes:
    """A valid mono 16-bit WAV of random noise (mlsp ships 16 kHz recordings)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(rng.integers(-2000, 2000, frames).astype("<i2").tobytes())
    return buf.getvalue()


def _extended80(value: int) -> bytes:
    """An integer as the 80-bit IEEE extended float AIFF uses for its sample rate."""
    exponent = value.bit_length() - 1
    return struct.pack(">HQ", 16383 + exponent, value << (63 - exponent))


def aiff_bytes(rng: np.random.Generator, rate: int = 2000, frames: int = 20) -> bytes:
    """A valid mono 16-bit AIFF (FORM/COMM/SSND), written by hand: `aifc` leaves the stdlib in 3.13."""
    samples = rng.integers(-2000, 2000, frames).astype(">i2").tobytes()
    comm = struct.pack(">hLh", 1, frames, 16) + _extended80(rate)
    ssnd = struct.pack(">LL", 0, 0) + samples
    body = b"AIFF" + b"COMM" + struct.pack(">L", len(comm)) + comm + b"SSND" + struct.pack(">L", len(ssnd)) + ssnd
    return b"FORM" + struct.pack(">L", len(body)) + body


def bmp_bytes(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (4, 6), dtype=np.uint8), mode="L").save(buf, format="BMP")
    return buf.getvalue()


def write_zip(archive: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def read_zip(archive: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(archive) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def quoted_csv(frame: pd.DataFrame) -> bytes:
    """Kaggle's text-normalisation CSVs quote every text field."""
    return frame.to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n").encode()


# ---------------------------------------------------------------- mlsp-2013-birds

MLSP_RECORDINGS = 45  # original ids 0..44; every third is in Kaggle's (unlabelled) test fold


def _mlsp_labels(rng: np.random.Generator, rec_ids: range, test: set[int]) -> dict[int, str]:
    """Label text per recording: `?` for Kaggle's test fold, '' (none) for a few, else species numbers."""
    labels = {}
    for r in rec_ids:
        if r in test:
            labels[r] = "?"
        elif r % 7 == 0:
            labels[r] = ""
        else:
            labels[r] = ",".join(str(s) for s in sorted(rng.choice(19, rng.integers(1, 4), replace=False)))
    return labels


def _mlsp_label_lines(labels: dict[int, str]) -> str:
    """A recording without species appears as `id` or as `id,` (both forms are handled)."""
    lines = ["rec_id,[labels]"]
    for r, text in labels.items():
        lines.append(f"{r},{text}" if text or r % 2 else f"{r}")
    return "\n".join(lines) + "\n"


def _mlsp_segment_lines(header: str, rec_ids, rng: np.random.Generator, per_rec: int, width: int) -> str:
    lines = [header]
    for r in rec_ids:
        for seg in range(per_rec):
            values = ",".join(f"{v:.6f}" for v in rng.random(width))
            lines.append(f"{r},{seg},{values}" if per_rec > 1 else f"{r},{values}")
    return "\n".join(lines) + "\n"


def make_raw_mlsp(raw: Path, rng: np.random.Generator) -> None:
    """Kaggle's download: `mlsp_contest_dataset.zip` (folder mlsp_contest_dataset/) and the PDF."""
    recs = range(MLSP_RECORDINGS)
    test = {r for r in recs if r % 3 == 2}
    names = {r: f"PC{r % 13 + 1}_2009{r % 12 + 1:02d}06_0500{r:02d}_0010" for r in recs}
    top = "mlsp_contest_dataset"
    ess, sup = f"{top}/essential_data", f"{top}/supplemental_data"
    labels = _mlsp_labels(rng, recs, test)
    members = {
        f"{top}/README.txt": b"MLSP 2013 bird challenge data\n",
        f"{ess}/CVfolds_2.txt": ("rec_id,fold\n" + "".join(f"{r},{int(r in test)}\n" for r in recs)).encode(),
        f"{ess}/rec_id2filename.txt": ("rec_id,filename\n" + "".join(f"{r},{names[r]}\n" for r in recs)).encode(),
        f"{ess}/rec_labels_test_hidden.txt": _mlsp_label_lines(labels).encode(),
        f"{ess}/species_list.txt": ("class_id,code,species\n"
                                    + "".join(f"{s},SP{s:02d},Species {s}\n" for s in range(19))).encode(),
        f"{sup}/segment_clusters.bmp": bmp_bytes(rng),
        f"{sup}/segment_mosaic.bmp": bmp_bytes(rng),
        f"{sup}/histogram_of_segments.txt": _mlsp_segment_lines(
            "rec_id,[histogram of segment features]", recs, rng, 1, 5).encode(),
        f"{sup}/segment_features.txt": _mlsp_segment_lines(
            "rec_id,segment_id,[feature vector]", [r for r in recs if r % 4], rng, 2, 4).encode(),
        f"{sup}/segment_rectangles.txt": _mlsp_segment_lines(
            "rec_id,segment_id,min_x,max_x,min_y,max_y,", [r for r in recs if r % 4], rng, 2, 4).encode(),
    }
    for r in recs:
        members[f"{ess}/src_wavs/{names[r]}.wav"] = wav_bytes(rng)
        for folder in ("filtered_spectrograms", "spectrograms", "supervised_segmentation"):
            members[f"{sup}/{folder}/{names[r]}.bmp"] = bmp_bytes(rng)
        if r % 5 == 0 and r not in test:
            members[f"{sup}/segmentation_examples/{names[r]}.bmp"] = bmp_bytes(rng)
    write_zip(raw / "mlsp_contest_dataset.zip", members)
    (raw / "mlsp13birdchallenge_documentation.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")


def _raw_mlsp_labels(raw: Path) -> dict[str, set[int]]:
    """Species per recording *file name*, read back from the synthetic download (test fold left out)."""
    ess = raw / "mlsp_contest_dataset" / "essential_data"
    names = pd.read_csv(ess / "rec_id2filename.txt").set_index("rec_id")["filename"]
    out = {}
    for line in (ess / "rec_labels_test_hidden.txt").read_text().splitlines()[1:]:
        rec, _, text = line.partition(",")
        if text != "?":
            out[names[int(rec)]] = {int(s) for s in text.split(",") if s}
    return out


def test_mlsp_2013_birds(tmp_path):
    fold0 = sum(1 for r in range(MLSP_RECORDINGS) if r % 3 != 2)  # 30 recordings
    n_test = round(0.2 * fold0)
    p = run_checks(MLSP, make_raw_mlsp, tmp_path, public={"essential_data", "supplemental_data",
                                                           "sample_submission.csv"},
                   private={"answers.csv"}, test_rows=n_test * 19, sample_score=0.5)
    ess, sup = p.public / "essential_data", p.public / "supplemental_data"
    folds = pd.read_csv(ess / "CVfolds_2.txt")
    assert list(folds["rec_id"]) == list(range(fold0)) and (folds["fold"] == 1).sum() == n_test
    test_ids = list(folds.loc[folds["fold"] == 1, "rec_id"])

    # Id = rec_id * 100 + species, 19 per test recording, in the sample and the answers alike.
    expected = [r * 100 + s for r in test_ids for s in range(19)]
    assert list(pd.read_csv(p.sample_path())["Id"]) == expected
    answers = p.answers()
    assert list(answers["Id"]) == expected and set(answers["Probability"]) == {0, 1}

    # Renumbering keeps each recording's labels: answers (test) and public labels (train) match the raw.
    truth = _raw_mlsp_labels(p.data_dir / MLSP / "raw")
    names = pd.read_csv(ess / "rec_id2filename.txt").set_index("rec_id")["filename"]
    for r in test_ids:
        got = answers.loc[answers["Id"] // 100 == r]
        assert set(got.loc[got["Probability"] == 1, "Id"] % 100) == truth[names[r]]
    for line in (ess / "rec_labels_test_hidden.txt").read_text().splitlines()[1:]:
        rec, _, text = line.partition(",")
        assert text == "?" if int(rec) in test_ids else {int(s) for s in text.split(",") if s} == truth[names[int(rec)]]

    # As v1: a probability outside [0, 1] makes the submission invalid.
    from hpc_mle import grading

    path = tmp_path / "out_of_range.csv"
    answers.assign(Probability=answers["Probability"] * 2.0).to_csv(path, index=False)
    assert not grading.grade_submission(path, MLSP, p.data_dir).valid_submission

    # Only Kaggle's fold-0 recordings reach public/, under their original file names.
    assert sorted(x.stem for x in (ess / "src_wavs").iterdir()) == sorted(names)
    assert len(list((sup / "spectrograms").iterdir())) == fold0
    for txt in ("histogram_of_segments.txt", "segment_features.txt", "segment_rectangles.txt"):
        rows = (sup / txt).read_text().splitlines()
        assert rows[0] == "rec_id,[histogram of segment features]"
        assert {int(r.split(",")[0]) for r in rows[1:]} <= set(range(fold0))


# ---------------------------------------------------------------- icml-2013 whale

WHALE_TRAIN_DAYS = ("20090328", "20090329", "20090330", "20090331")
WHALE_TEST_DAYS = ("20090401", "20090402", "20090403")
WHALE_CLIPS_PER_DAY = 12


def _whale_offsets(rng: np.random.Generator, n: int) -> list[str]:
    """Distinct `<s>s<ms>ms` offsets within a recording hour, as in Kaggle's names."""
    tenths = sorted(rng.choice(36000, n, replace=False))
    return [f"{t // 10:03d}s{t % 10}ms" for t in tenths]


def make_raw_whale(raw: Path, rng: np.random.Generator) -> None:
    """Kaggle's download: train2.zip (4 labelled days), test2.zip (3 unlabelled days), sampleSubmission.csv."""
    n_train = len(WHALE_TRAIN_DAYS) * WHALE_CLIPS_PER_DAY
    order = rng.permutation(n_train)  # Kaggle's TRAIN numbers do not follow time
    train, k = {}, 0
    for day in WHALE_TRAIN_DAYS:
        for j, offset in enumerate(_whale_offsets(rng, WHALE_CLIPS_PER_DAY)):
            label = j % 3 == 0 if j < 6 else int(rng.integers(0, 2))
            train[f"train2/{day}_000000_{offset}_TRAIN{order[k]}_{int(label)}.aif"] = aiff_bytes(rng)
            k += 1
    write_zip(raw / "train2.zip", train)
    test = {}
    for day in WHALE_TEST_DAYS:
        for offset in _whale_offsets(rng, 4):
            test[f"test2/{day}_000000_{offset}_Test{len(test)}.aif"] = aiff_bytes(rng)
    write_zip(raw / "test2.zip", test)
    clips = [name.split("/")[1] for name in test]
    pd.DataFrame({"clip": clips, "probability": 0}).to_csv(raw / "sampleSubmission.csv", index=False)


def test_whale_redux(tmp_path):
    n_test = 2 * WHALE_CLIPS_PER_DAY
    p = run_checks(WHALE, make_raw_whale, tmp_path, public={"train2.zip", "test2.zip", "sampleSubmission.csv"},
                   private={"test.csv"}, test_rows=n_test, sample_score=0.5)
    raw = read_zip(p.data_dir / WHALE / "raw" / "train2.zip")
    raw_by_time = {name.split("/")[1].split("_TRAIN")[0]: (name, data) for name, data in raw.items()}
    train, test = read_zip(p.public / "train2.zip"), read_zip(p.public / "test2.zip")

    # Split by day: the first two days train, the next two test; no day on both sides.
    train_days = {n.split("/")[1][:8] for n in train}
    test_days = {n.split("/")[1][:8] for n in test}
    assert train_days == set(WHALE_TRAIN_DAYS[:2]) and test_days == set(WHALE_TRAIN_DAYS[2:])

    # Renumbered in time order; train keeps its label suffix, test hides it; audio bytes unchanged.
    train_names = [n.split("/")[1] for n in train]
    assert sorted(train_names) == train_names
    assert [int(n.split("_TRAIN")[1].split("_")[0]) for n in train_names] == list(range(len(train)))
    for name, data in train.items():
        raw_name, raw_data = raw_by_time[name.split("/")[1].split("_TRAIN")[0]]
        assert data == raw_data and name[-6:] == raw_name[-6:]
    answers = p.answers()
    assert list(answers["clip"]) == [n.split("/")[1] for n in test]
    for i, (clip, label) in enumerate(zip(answers["clip"], answers["probability"], strict=True)):
        assert clip.endswith(f"_Test{i}.aif") and "TRAIN" not in clip
        raw_name, raw_data = raw_by_time[clip.split("_Test")[0]]
        assert test[f"test2/{clip}"] == raw_data and raw_name.endswith(f"_{label}.aif")
    assert not (p.data_dir / WHALE / "raw" / "train2").exists()


def test_synthetic_aiff_is_readable():
    """The hand-written AIFF header is valid (checked with the stdlib reader while 3.11 still has it)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import aifc

        with aifc.open(io.BytesIO(aiff_bytes(np.random.default_rng(0))), "rb") as clip:
            assert (clip.getnchannels(), clip.getsampwidth(), clip.getframerate(), clip.getnframes()) == (1, 2, 2000, 20)


# ---------------------------------------------------------------- text normalisation

TEXT_SENTENCES = 40
EN_WORDS = ("the", "a", "station", "river", "is", "was", "built", "in", "of", "and", "Brillantaisia", "NA")
EN_SPECIAL = (("CARDINAL", "12", "twelve"), ("DATE", "Dec. 3", "december third"),
              ("MEASURE", "5 kg", "five kilograms"), ("LETTERS", "BBC", "b b c"), ("MONEY", "$3", "three dollars"))
RU_WORDS = ("в", "году", "река", "станция", "была", "построена", "и", "на", "Ёлка", "объём")
RU_SPECIAL = (("CARDINAL", "12", "двенадцать"), ("DATE", "1 мая", "первого мая"),
              ("MEASURE", "5 км", "пять километров"), ("LATIN", "Kaggle", "к_trans а_trans г_trans г_trans л_trans"),
              ("ORDINAL", "3-й", "третий"))


def _corpus(rng: np.random.Generator, words: tuple[str, ...], special: tuple) -> pd.DataFrame:
    """Sentences of plain words, a normalised token or two, and a full stop; every sentence differs."""
    rows = []
    for sid in range(TEXT_SENTENCES):
        tokens = [("PLAIN", w, w) for w in rng.choice(words, rng.integers(4, 9))]
        tokens.insert(int(rng.integers(0, len(tokens))), special[sid % len(special)])
        tokens.insert(0, ("PLAIN", f"s{sid}", f"s{sid}"))  # keeps sentences distinct
        tokens.append(("PUNCT", ".", "."))
        rows += [(sid, tid, c, b, a) for tid, (c, b, a) in enumerate(tokens)]
    return pd.DataFrame(rows, columns=["sentence_id", "token_id", "class", "before", "after"])


def make_raw_text(lang: str, words: tuple[str, ...], special: tuple):
    """Kaggle's download: every CSV in its own zip, the first-stage and the second-stage test files."""

    def make_raw(raw: Path, rng: np.random.Generator) -> None:
        train = _corpus(rng, words, special)
        test = _corpus(rng, words, special).drop(columns=["class", "after"])
        sample = pd.DataFrame({"id": test["sentence_id"].astype(str) + "_" + test["token_id"].astype(str),
                               "after": test["before"]})
        for name, frame in ((f"{lang}_train.csv", train), (f"{lang}_test.csv", test), (f"{lang}_test_2.csv", test),
                            (f"{lang}_sample_submission.csv", sample),
                            (f"{lang}_sample_submission_2.csv", sample)):
            write_zip(raw / f"{name}.zip", {name: quoted_csv(frame)})

    return make_raw


def _unzip_csv(archive: Path) -> tuple[bytes, pd.DataFrame]:
    [(name, data)] = read_zip(archive).items()
    assert archive.name == f"{name}.zip"
    return data, pd.read_csv(io.BytesIO(data))


def _check_text(cid: str, lang: str, words: tuple[str, ...], special: tuple, tmp_path: Path) -> None:
    make_raw = make_raw_text(lang, words, special)
    n_test_sentences = int(np.ceil(0.1 * TEXT_SENTENCES))
    p = run_checks(cid, make_raw, tmp_path,
                   public={f"{lang}_train.csv.zip", f"{lang}_test_2.csv.zip", f"{lang}_sample_submission_2.csv.zip"},
                   private={"answers.csv", "sample_submission.csv"}, test_rows=None)
    train_bytes, train = _unzip_csv(p.public / f"{lang}_train.csv.zip")
    _, test = _unzip_csv(p.public / f"{lang}_test_2.csv.zip")
    sample_bytes, _ = _unzip_csv(p.public / f"{lang}_sample_submission_2.csv.zip")
    answers = p.answers()
    raw_train = pd.read_csv(p.data_dir / cid / "raw" / f"{lang}_train.csv")

    # No answer in public: the test file has no `after` (nor `class`), and no test sentence is in train.
    assert list(test.columns) == ["sentence_id", "token_id", "before"]
    assert list(train.columns) == ["sentence_id", "token_id", "class", "before", "after"]
    sentences = lambda f: {tuple(g["before"]) for _, g in f.groupby("sentence_id")}  # noqa: E731
    assert not sentences(test) & sentences(train)
    assert test["sentence_id"].nunique() == n_test_sentences and len(train) + len(answers) == len(raw_train)
    assert list(test["sentence_id"].unique()) == list(range(n_test_sentences))

    # The agent's zipped sample is the private one, byte for byte; ids are `<sentence>_<token>`.
    assert sample_bytes == p.sample_path().read_bytes()
    assert list(answers["id"]) == [f"{s}_{t}" for s, t in zip(test["sentence_id"], test["token_id"], strict=True)]
    assert p.sample_path().read_text(encoding="utf-8").startswith('"id","after"\n"0_0",')
    assert train_bytes.startswith(b'"sentence_id","token_id","class","before","after"\n0,0,"PLAIN",')

    # The sample copies `before`: right on plain tokens, wrong on the normalised ones. As in v1, a
    # missing value (the token "NA" is read as one) compares as the text "nan" on both sides.
    as_text = lambda s: s.fillna("nan").astype(str).to_numpy()  # noqa: E731
    is_plain = as_text(answers["after"]) == as_text(test["before"])
    assert 0 < is_plain.mean() < 1
    from hpc_mle import grading

    report = grading.grade_submission(p.sample_path(), cid, p.data_dir)
    assert report.valid_submission and abs(report.score - round(float(is_plain.mean()), 5)) < 1e-9

    # v1 quirks: rows are matched by id (any order), and a missing answer is matched by the text "nan".
    gold = answers.sample(frac=1.0, random_state=1)
    gold["after"] = gold["after"].fillna("nan")
    assert answers["after"].isna().any() == ("NA" in words)  # pandas reads the token "NA" as missing
    path = tmp_path / "shuffled.csv"
    gold.to_csv(path, index=False)
    assert grading.grade_submission(path, cid, p.data_dir).score == 1.0


def test_text_normalization_english(tmp_path):
    _check_text(TEXT_EN, "en", EN_WORDS, EN_SPECIAL, tmp_path)


def test_text_normalization_russian(tmp_path):
    _check_text(TEXT_RU, "ru", RU_WORDS, RU_SPECIAL, tmp_path)


# The synthetic downloads of this module, for tests/synthetic_downloads.py.
MAKERS = {
    MLSP: make_raw_mlsp,
    WHALE: make_raw_whale,
    TEXT_EN: make_raw_text("en", EN_WORDS, EN_SPECIAL),
    TEXT_RU: make_raw_text("ru", RU_WORDS, RU_SPECIAL),
}
