"""Full-benchmark audio competitions on synthetic Kaggle-shaped downloads: freesound-audio-tagging-2019
(test labels from Zenodo) and tensorflow-speech-recognition-challenge (train.7z, v1's raw-folder labels).

Each `make_*` writes what extracting the competition's Kaggle zip gives (file names, nested zip/7z
archives, real 16 kHz WAV clips of a few hundred samples); `lite_support.run_checks` prepares it with the
real preparer and checks layout, leaks, grading and medals. The Zenodo download is tested against a
local HTTP server started here (resume, MD5, refusals) and with the file placed in raw/ beforehand.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import py7zr
import pytest
from click.testing import CliRunner
from lite_support import Prepared, run_checks
from sklearn.metrics import label_ranking_average_precision_score
from sklearn.model_selection import train_test_split
from test_lite_audio_text import wav_bytes
from test_signals_full import fuzz

from hpc_mle import competitions, extra_downloads, grading, kaggle, paths
from hpc_mle.cli import main
from hpc_mle.prepare import prepare
from hpc_mle.prepare.audio import FREESOUND_CLASSES, freesound_audio_tagging_2019

FREESOUND = "freesound-audio-tagging-2019"
SPEECH = "tensorflow-speech-recognition-challenge"
META_ZIP = "FSDKaggle2019.meta.zip"
CLIP_SAMPLES = 320  # 20 ms at 16 kHz


def _grade(p: Prepared, frame: pd.DataFrame, tmp: Path, mode: str = "v1") -> grading.CompetitionReport:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "sub.csv"
    frame.to_csv(path, index=False)
    return grading.grade_submission(path, p.spec.id, p.data_dir, mode)


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


# ---------------------------------------------------------------- freesound-audio-tagging-2019

# 16 one-label and 25 two-label Private clips: an all-zero sample ties every class, so each clip scores
# (its labels)/80 and the label-weighted mean is (16 + 25*4) / (80 * (16 + 25*2)) = 0.0219697, which
# rounds to v1's recorded sample score 0.02197 (facts §1.5).
FREESOUND_ONE, FREESOUND_TWO, FREESOUND_PUBLIC = 16, 25, 5


def _freesound_meta(rng: np.random.Generator, private: list[str], public: list[str]) -> bytes:
    """Zenodo's FSDKaggle2019.meta.zip: test_post_competition.csv (Public and Private rows) and a train file."""
    rows = []
    for i, fname in enumerate(private + public):
        k = 1 if i < FREESOUND_ONE or i >= len(private) else 2
        labels = ",".join(rng.choice(FREESOUND_CLASSES, size=k, replace=False))
        rows.append({"fname": fname, "labels": labels, "usage": "Private" if fname in private else "Public",
                     "freesound_id": int(rng.integers(1, 400_000)), "license": "CC-BY"})
    order = rng.permutation(len(rows))
    test = pd.DataFrame([rows[i] for i in order]).to_csv(index=False)
    curated = pd.DataFrame({"fname": ["a.wav"], "labels": ["Bark"], "freesound_id": [1], "license": ["CC0"]})
    return _zip({"FSDKaggle2019.meta/test_post_competition.csv": test.encode(),
                 "FSDKaggle2019.meta/train_curated_post_competition.csv": curated.to_csv(index=False).encode()})


def make_freesound(raw: Path, rng: np.random.Generator) -> None:
    names = [f"{int(v):08x}.wav" for v in rng.choice(2**32, size=61, replace=False)]
    private = names[:FREESOUND_ONE + FREESOUND_TWO]
    public = names[len(private):len(private) + FREESOUND_PUBLIC]
    curated, noisy = names[-10:-5], names[-5:]
    for csv_name, zip_name, clips in (("train_curated.csv", "train_curated.zip", curated),
                                      ("train_noisy.csv", "train_noisy.zip", noisy)):
        labels = [",".join(rng.choice(FREESOUND_CLASSES, size=int(rng.integers(1, 3)), replace=False)) for _ in clips]
        pd.DataFrame({"fname": clips, "labels": labels}).to_csv(raw / csv_name, index=False)
        (raw / zip_name).write_bytes(_zip({c: wav_bytes(rng, frames=CLIP_SAMPLES) for c in clips}))
    (raw / "test.zip").write_bytes(_zip({c: wav_bytes(rng, frames=CLIP_SAMPLES) for c in sorted(private)}))
    sample = pd.DataFrame(0, index=range(len(private)), columns=list(FREESOUND_CLASSES))
    sample.insert(0, "fname", sorted(private))
    sample.to_csv(raw / "sample_submission.csv", index=False)
    (raw / META_ZIP).write_bytes(_freesound_meta(rng, private, public))  # pre-placed, as a login node leaves it


def _freesound_expected(raw: Path) -> pd.DataFrame:
    """The answers computed independently: Private rows in file order, one 0/1 column per class."""
    with zipfile.ZipFile(raw / META_ZIP) as zf:
        labels = pd.read_csv(zf.open("FSDKaggle2019.meta/test_post_competition.csv"))
    private = labels[labels["usage"] == "Private"].reset_index(drop=True)
    out = pd.DataFrame({"fname": private["fname"]})
    for name in FREESOUND_CLASSES:
        out[name] = [int(name in text.split(",")) for text in private["labels"]]
    return out


def test_freesound(tmp_path):
    public = {"sample_submission.csv", "test.zip", "train_curated.csv", "train_curated.zip", "train_noisy.csv",
              "train_noisy.zip"}
    p = run_checks(FREESOUND, make_freesound, tmp_path, public=public, private={"test.csv"},
                   test_rows=FREESOUND_ONE + FREESOUND_TWO, sample_score=0.02197, perfect_score=1.0)
    raw = paths.raw_dir(FREESOUND, p.data_dir)
    pd.testing.assert_frame_equal(p.answers(), _freesound_expected(raw))
    assert (raw / META_ZIP).is_file()  # kept for a re-preparation, never copied to public/
    for name in public - {"description.md"}:
        assert (p.public / name).read_bytes() == (raw / name).read_bytes()

    answers, subs = p.answers(), tmp_path / "subs2"
    rng = np.random.default_rng(3)
    scores = answers.copy()
    scores[list(FREESOUND_CLASSES)] = rng.random((len(answers), 80)).round(4)
    want = label_ranking_average_precision_score(answers.iloc[:, 1:].to_numpy() > 0, scores.iloc[:, 1:].to_numpy(),
                                                 sample_weight=answers.iloc[:, 1:].sum(axis=1).to_numpy())
    report = _grade(p, scores.iloc[::-1], subs)  # row order is free (sorted by fname)
    assert report.valid_submission and report.score == pytest.approx(round(want, 5), abs=1e-12), report
    # v1: the header must be fname then the 80 classes in vocabulary order; extra columns are refused.
    cols = list(scores.columns)
    for bad in (scores[[cols[0], cols[2], cols[1], *cols[3:]]], scores[cols[1:2] + cols[:1] + cols[2:]],
                scores.assign(extra=0.0)):
        report = _grade(p, bad, subs)
        assert not report.valid_submission and not report.grader_error and report.reason, report.reason
    for value in (np.nan, np.inf, "high"):
        bad = scores.astype({"Bark": object})
        bad.loc[bad.index[0], "Bark"] = value
        report = _grade(p, bad, subs)
        assert not report.valid_submission and not report.grader_error and "Bark" in report.reason, report.reason
    fuzz(p, tmp_path / "fuzz")


# ---------------------------------------------------------------- the Zenodo download


class _Server:
    """A local HTTP server for one file that honours Range requests and can fail on purpose."""

    def __init__(self, body: bytes) -> None:
        self.body, self.ranges, self.fail_next, self.status = body, [], 0, 200
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 -- the stdlib's name
                server.ranges.append(self.headers.get("Range"))
                if server.status != 200:
                    self.send_error(server.status)
                    return
                start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
                data = server.body[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if server.fail_next:  # promise the whole body, send half of it, hang up
                    server.fail_next -= 1
                    self.wfile.write(data[: len(data) // 2])
                    return
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{META_ZIP}?download=1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def zenodo() -> Iterator[_Server]:
    body = _freesound_meta(np.random.default_rng(1), ["a.wav"], ["b.wav"]) * 50  # some kilobytes
    server = _Server(body)
    yield server
    server.close()


def _item(server: _Server, md5: str | None = "right"):
    spec = competitions.get(FREESOUND)
    real = hashlib.md5(server.body).hexdigest()  # noqa: S324 -- a checksum
    return replace(spec.extra_downloads[0], url=server.url, md5=real if md5 == "right" else md5)


FAST = extra_downloads.Retry(attempts=3, base_s=0.0)


def test_zenodo_download_resumes_and_checks_md5(zenodo, tmp_path):
    raw, staging = tmp_path / "raw", tmp_path / ".download-extra"
    item = _item(zenodo)
    # An interrupted earlier run left the first 1,000 bytes: only the rest is asked for.
    staging.mkdir()
    (staging / META_ZIP).write_bytes(zenodo.body[:1000])
    got = extra_downloads.fetch(item, raw, staging, retry=FAST)
    assert got == raw / META_ZIP and got.read_bytes() == zenodo.body
    assert zenodo.ranges == ["bytes=1000-"] and not staging.exists()
    # Already in raw/: nothing is asked of the server.
    assert extra_downloads.fetch(item, raw, staging, retry=FAST) == got and len(zenodo.ranges) == 1

    # A connection dropped mid-body is retried from where it stopped.
    (raw / META_ZIP).unlink()
    zenodo.fail_next = 1
    extra_downloads.fetch(item, raw, staging, retry=FAST)
    assert (raw / META_ZIP).read_bytes() == zenodo.body
    assert zenodo.ranges[-2:] == [None, f"bytes={len(zenodo.body) // 2}-"]


def test_zenodo_download_failures_say_why(zenodo, tmp_path):
    raw, staging = tmp_path / "raw", tmp_path / "stage"
    with pytest.raises(kaggle.Unavailable, match="MD5") as exc:
        extra_downloads.fetch(_item(zenodo, md5="0" * 32), raw, staging, retry=FAST)
    assert exc.value.kind == "checksum" and not (raw / META_ZIP).exists() and not (staging / META_ZIP).exists()
    # A file placed by hand is checked too when the MD5 is known.
    raw.mkdir()
    (raw / META_ZIP).write_bytes(b"not the file")
    with pytest.raises(kaggle.Unavailable, match=f"delete {raw / META_ZIP}"):
        extra_downloads.fetch(_item(zenodo), raw, staging, retry=FAST)
    (raw / META_ZIP).unlink()
    zenodo.status = 404
    with pytest.raises(kaggle.Unavailable, match="HTTP 404") as exc:
        extra_downloads.fetch(_item(zenodo), raw, staging, retry=FAST)
    assert exc.value.kind == "not-found" and len(zenodo.ranges) == 2  # a refusal is not retried
    zenodo.status = 503
    with pytest.raises(kaggle.Unavailable, match="login node") as exc:
        extra_downloads.fetch(_item(zenodo), raw, staging, retry=FAST)
    assert exc.value.kind == "network" and len(zenodo.ranges) == 2 + FAST.attempts
    # A host name that does not resolve (a compute node without internet) fails at once, with the fix.
    offline = replace(_item(zenodo), url="http://zenodo.invalid/FSDKaggle2019.meta.zip")
    with pytest.raises(kaggle.Unavailable, match="cannot resolve") as exc:
        extra_downloads.fetch(offline, raw, staging, retry=extra_downloads.Retry(attempts=5, base_s=60.0))
    assert exc.value.kind == "network" and "curl -L -o" in str(exc.value)


def test_freesound_prepare_downloads_labels_and_preflight_says_so(zenodo, tmp_path, monkeypatch):
    """raw/ holds Kaggle's files but not Zenodo's: --check names the file, prepare fetches it."""
    data = tmp_path / "data"
    raw = paths.raw_dir(FREESOUND, data)
    raw.mkdir(parents=True)
    make_freesound(raw, np.random.default_rng(0))
    zenodo.body = (raw / META_ZIP).read_bytes()
    (raw / META_ZIP).unlink()
    spec = competitions.get(FREESOUND)
    patched = replace(spec, extra_downloads=(_item(zenodo),))
    real_get = competitions.get
    monkeypatch.setattr(competitions, "get", lambda cid: patched if cid == FREESOUND else real_get(cid))

    result = CliRunner().invoke(main, ["prepare", "--check", "-c", FREESOUND, "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"needs the Zenodo file {META_ZIP}" in text and "no internet" in text and "login node" in text

    prepare(FREESOUND, data)
    assert (raw / META_ZIP).read_bytes() == zenodo.body and zenodo.ranges == [None]
    assert len(pd.read_csv(paths.private_dir(FREESOUND, data) / "test.csv")) == FREESOUND_ONE + FREESOUND_TWO
    assert META_ZIP not in {x.name for x in paths.public_dir(FREESOUND, data).iterdir()}


def test_freesound_refuses_a_sample_that_is_not_the_private_clips(tmp_path):
    """v1 asserts Kaggle's sample lists exactly Zenodo's Private clips, 80 classes in order: a clear error here."""
    raw, public, private = tmp_path / "raw", tmp_path / "public", tmp_path / "private"
    for folder in (raw, public, private):
        folder.mkdir()
    make_freesound(raw, np.random.default_rng(0))
    sample = pd.read_csv(raw / "sample_submission.csv")
    sample.iloc[1:].to_csv(raw / "sample_submission.csv", index=False)
    with pytest.raises(ValueError, match="not the 41 Private clips"):
        freesound_audio_tagging_2019(raw, public, private)
    cols = list(sample.columns)
    sample[[cols[0], cols[2], cols[1], *cols[3:]]].to_csv(raw / "sample_submission.csv", index=False)
    with pytest.raises(ValueError, match="columns differ"):
        freesound_audio_tagging_2019(raw, public, private)
    assert not any(public.iterdir()) and not any(private.iterdir())


# ---------------------------------------------------------------- tensorflow-speech-recognition-challenge

SPEECH_WORDS = {"yes": 10, "go": 10, "bed": 12, "marvin": 12, "_background_noise_": 6}  # 50 clips: 5 test


def _seven_zip(path: Path, entries: dict[str, bytes]) -> None:
    with py7zr.SevenZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(data, name)


def make_speech(raw: Path, rng: np.random.Generator) -> None:
    """train.7z (train/audio/<word>/<speaker>_nohash_<n>.wav, the noise folder with its README, the lists),
    test.7z and sample_submission.7z (Kaggle's own test, unused by v1) and the credits note."""
    entries: dict[str, bytes] = {}
    for word, count in SPEECH_WORDS.items():
        for k in range(count):
            name = f"{word}_{k}.wav" if word.startswith("_") else f"{int(rng.integers(2**32)):08x}_nohash_{k}.wav"
            frames = 4 * CLIP_SAMPLES if word.startswith("_") else CLIP_SAMPLES
            entries[f"train/audio/{word}/{name}"] = wav_bytes(rng, frames=frames)
    entries["train/audio/_background_noise_/README.md"] = b"Noise recordings.\n"
    entries["train/testing_list.txt"] = b"yes/0.wav\n"
    entries["train/validation_list.txt"] = b"go/0.wav\n"
    _seven_zip(raw / "train.7z", entries)
    kaggle_test = {f"test/audio/clip_{int(rng.integers(2**32)):09x}.wav": wav_bytes(rng) for _ in range(3)}
    _seven_zip(raw / "test.7z", kaggle_test)
    sample = pd.DataFrame({"fname": [Path(n).name for n in kaggle_test], "label": "silence"})
    _seven_zip(raw / "sample_submission.7z", {"sample_submission.csv": sample.to_csv(index=False).encode()})
    (raw / "link_to_gcp_credits_form.txt").write_text("https://example.invalid/credits\n")


def _speech_expected(raw: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """v1's split computed here: (word, file name) sorted by "<word>_<name>", train_test_split 90/10."""
    with py7zr.SevenZipFile(raw / "train.7z") as zf:
        names = [n for n in zf.getnames() if n.endswith(".wav")]
    clips = sorted(((Path(n).parent.name, Path(n).name) for n in names), key=lambda c: f"{c[0]}_{c[1]}")
    train, test = train_test_split(clips, test_size=0.1, random_state=0)
    return train, test


def test_speech(tmp_path):
    p = run_checks(SPEECH, make_speech, tmp_path, public={"train", "test", "sample_submission.csv"},
                   private={"test.csv"}, test_rows=5, sample_score=0.0)
    raw = paths.raw_dir(SPEECH, p.data_dir)
    train, test = _speech_expected(raw)
    answers = p.answers()
    assert list(answers["fname"]) == [f"clip_{i:08d}.wav" for i in range(len(test))]
    assert list(answers["label"]) == [word for word, _ in test]  # v1: raw folder names, not the 12 classes
    for (word, name), clip in zip(test, answers["fname"], strict=True):
        assert (p.public / "test" / "audio" / clip).read_bytes() == (raw / "train" / "audio" / word / name).read_bytes()
    got_train = sorted((f.parent.name, f.name) for f in (p.public / "train" / "audio").rglob("*.wav"))
    assert got_train == sorted(train) and not list((p.public / "train").glob("*.txt"))
    assert list((p.public / "test" / "audio").iterdir()) and len(list((p.public / "test" / "audio").iterdir())) == 5
    assert set(pd.read_csv(p.sample_path())["label"]) == {"silence"}

    # v1 against the corrected grade: a Kaggle-style submission (12 classes) against the raw labels.
    subs = tmp_path / "subs2"
    commands = {"yes", "go"}
    kaggle_style = answers.assign(label=[w if w in commands else "silence" if w.startswith("_") else "unknown"
                                         for w in answers["label"]])
    v1_want = float(np.mean([w in commands for w in answers["label"]]))
    report = _grade(p, kaggle_style, subs)
    assert report.score == pytest.approx(v1_want) and report.grading_mode == "v1"
    corrected = _grade(p, kaggle_style, subs, mode="corrected")
    assert corrected.score == 1.0 and corrected.valid_submission
    if v1_want != 1.0:
        assert report.v1_score == report.score and report.corrected_score == 1.0
    # The raw-label gold is perfect under v1 and wrong under the corrected grade for non-command words.
    gold = _grade(p, answers, subs, mode="corrected")
    assert gold.v1_score in (None, 1.0) and gold.score == pytest.approx(v1_want)
    report = _grade(p, answers.assign(label=[None, "yes", "go", "bed", "yes"]), subs)
    assert not report.valid_submission and not report.grader_error and report.reason
    fuzz(p, tmp_path / "fuzz", valid_ok={"value_inf", "value_2.5"})  # text labels: any text is a label


# The synthetic downloads of this module, for tests/synthetic_downloads.py.
MAKERS = {
    FREESOUND: make_freesound,
    SPEECH: make_speech,
}
