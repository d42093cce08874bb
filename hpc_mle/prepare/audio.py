"""Preparers of the audio competitions (bird song, whale calls, sound-event tags, spoken commands).

Each turns the extracted Kaggle download in `raw` into upstream v1's split (facts §4.4), aiming at
byte-identical CSVs: the same rows in the same order, the same random states, the same quoting.
Audio is only copied or re-zipped, one file at a time, never decoded. Where upstream re-zips public
data, our archives hold the same member files but not the same archive bytes (timestamps and
compression differ); upstream's checksums cover only CSVs, so `import-upstream` verification holds.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from hpc_mle.prepare.common import (
    copy_files,
    copy_tree,
    extract_nested,
    read_csv,
    require_raw,
    split,
    write_csv,
    zip_files,
    zip_member,
)

# ---------------------------------------------------------------- mlsp-2013-birds

MLSP_SPECIES = 19  # species 0..18; submission Id = rec_id * 100 + species
MLSP_TEST_FRACTION = 0.2
MLSP_SEGMENT_HEADER = "rec_id,[histogram of segment features]"  # upstream writes it for all three files
MLSP_BMP_FOLDERS = ("filtered_spectrograms", "spectrograms", "supervised_segmentation")


def _mlsp_new_folds(raw_folds: pd.DataFrame) -> tuple[pd.DataFrame, dict[int, int]]:
    """Keep the original training fold, mark 20% of it as the new test fold, renumber rec ids 0..N-1.

    Kaggle's fold 1 has no public labels, so only fold 0 can be split; the new ids follow file order.
    """
    folds = raw_folds[raw_folds["fold"] == 0].reset_index(drop=True)
    folds.loc[folds.sample(frac=MLSP_TEST_FRACTION, random_state=0).index, "fold"] = 1
    old_to_new = {int(old): new for new, old in enumerate(folds["rec_id"].to_numpy())}
    folds["rec_id"] = folds.index
    return folds, old_to_new


def _mlsp_labels(path: Path, old_to_new: dict[int, int]) -> list[tuple[int, str]]:
    """(new rec_id, label text) in file order; a line without labels may be `id` or `id,`."""
    pairs = []
    for line in path.read_text().splitlines()[1:]:
        rec_id, _, labels = line.partition(",")
        if int(rec_id) in old_to_new:
            pairs.append((old_to_new[int(rec_id)], labels))
    return pairs


def _mlsp_write_public_labels(pairs: list[tuple[int, str]], test_ids: set[int], path: Path) -> None:
    """The label file with `?` for the new test recordings, as Kaggle marks its own test set."""
    lines = ["rec_id,[labels]"]
    for rec_id, labels in pairs:
        shown = "?" if rec_id in test_ids else labels
        lines.append(f"{rec_id},{shown}" if shown else f"{rec_id}")
    path.write_text("\n".join(lines) + "\n")


def _mlsp_answers(pairs: list[tuple[int, str]], test_ids: set[int]) -> pd.DataFrame:
    """One row per (test recording, species), in label-file order: 1 if the species is present."""
    ids, present = [], []
    for rec_id, labels in pairs:
        if rec_id not in test_ids:
            continue
        species = {int(s) for s in labels.split(",") if s != ""}
        for s in range(MLSP_SPECIES):
            ids.append(rec_id * 100 + s)
            present.append(int(s in species))
    return pd.DataFrame({"Id": ids, "Probability": present})


def _mlsp_filter_segments(src: Path, dst: Path, old_to_new: dict[int, int]) -> None:
    """A per-segment text file restricted to kept recordings, rec ids renumbered (header replaced)."""
    lines = [MLSP_SEGMENT_HEADER]
    for line in src.read_text().splitlines()[1:]:
        fields = line.split(",")
        if int(fields[0]) in old_to_new:
            lines.append(f"{old_to_new[int(fields[0])]},{','.join(fields[1:])}")
    dst.write_text("\n".join(lines) + "\n")


def _mlsp_copy_supplemental(src: Path, dst: Path, filenames: Iterable[str]) -> None:
    """Spectrogram images of the kept recordings (segmentation examples exist for only a few)."""
    bmps = [f"{name}.bmp" for name in filenames]
    for folder in MLSP_BMP_FOLDERS:
        copy_files(bmps, src / folder, dst / folder)
    examples = [b for b in bmps if (src / "segmentation_examples" / b).is_file()]
    copy_files(examples, src / "segmentation_examples", dst / "segmentation_examples")
    copy_files(["segment_clusters.bmp", "segment_mosaic.bmp"], src, dst)


def mlsp_2013_birds(raw: Path, public: Path, private: Path) -> None:
    """Fold 0 of Kaggle's CV split re-split 80/20; labels of the new test recordings become answers."""
    extract_nested(raw / "mlsp_contest_dataset.zip", raw)
    src = raw / "mlsp_contest_dataset"
    essential, supplemental = src / "essential_data", src / "supplemental_data"
    pub_ess, pub_sup = public / "essential_data", public / "supplemental_data"
    pub_ess.mkdir(parents=True, exist_ok=True)
    pub_sup.mkdir(parents=True, exist_ok=True)

    folds, old_to_new = _mlsp_new_folds(read_csv(essential / "CVfolds_2.txt"))
    write_csv(folds, pub_ess / "CVfolds_2.txt")
    test_order = [int(r) for r in folds.loc[folds["fold"] == 1, "rec_id"]]
    test_ids = set(test_order)

    names = read_csv(essential / "rec_id2filename.txt")
    names = names[names["rec_id"].isin(list(old_to_new))].copy()
    names["rec_id"] = names["rec_id"].map(old_to_new)
    write_csv(names, pub_ess / "rec_id2filename.txt")

    pairs = _mlsp_labels(essential / "rec_labels_test_hidden.txt", old_to_new)
    _mlsp_write_public_labels(pairs, test_ids, pub_ess / "rec_labels_test_hidden.txt")
    write_csv(_mlsp_answers(pairs, test_ids), private / "answers.csv")
    sample_ids = [r * 100 + s for r in test_order for s in range(MLSP_SPECIES)]
    write_csv(pd.DataFrame({"Id": sample_ids, "Probability": 0}), public / "sample_submission.csv")

    copy_files(["species_list.txt"], essential, pub_ess)
    copy_files([f"{n}.wav" for n in names["filename"]], essential / "src_wavs", pub_ess / "src_wavs")
    _mlsp_copy_supplemental(supplemental, pub_sup, names["filename"])
    for txt in ("histogram_of_segments.txt", "segment_features.txt", "segment_rectangles.txt"):
        _mlsp_filter_segments(supplemental / txt, pub_sup / txt, old_to_new)


# ---------------------------------------------------------------- the-icml-2013-whale-challenge-right-whale-redux

WHALE_TRAIN_INDEX = re.compile(r"TRAIN\d+")


def _whale_days(clips: Iterable[Path]) -> dict[str, list[Path]]:
    """Clips grouped by recording date, the `YYYYMMDD` before the first underscore of the name."""
    days: dict[str, list[Path]] = {}
    for clip in clips:
        days.setdefault(clip.name.split("_")[0], []).append(clip)
    return days


def _whale_zip(folder: str, members: dict[str, Path], public: Path) -> None:
    """`<folder>.zip` holding `<folder>/<name>` entries, as Kaggle ships train2.zip and test2.zip."""
    zip_files({f"{folder}/{name}": path for name, path in members.items()}, public / f"{folder}.zip")


def the_icml_2013_whale_challenge_right_whale_redux(raw: Path, public: Path, private: Path) -> None:
    """Kaggle's 4 labelled days: the first 2 become train, the next 2 test (Kaggle's test has no labels).

    Clips are renumbered in name (time) order: train keeps its `_TRAIN{i}_{label}` suffix, test names
    end in `_Test{i}.aif` so the label is no longer visible.
    """
    extracted = extract_nested(raw / "train2.zip", raw) / "train2"
    days = _whale_days(p for p in extracted.iterdir() if p.suffix == ".aif")
    if len(days) != 4:
        raise ValueError(f"{extracted}: expected clips from 4 recording days, found {len(days)}")
    dates = sorted(days)
    train = sorted(days[dates[0]] + days[dates[1]], key=lambda p: p.name)
    test = sorted(days[dates[2]] + days[dates[3]], key=lambda p: p.name)

    train_members = {WHALE_TRAIN_INDEX.sub(f"TRAIN{i}", clip.name): clip for i, clip in enumerate(train)}
    test_members = {clip.name.split("TRAIN")[0] + f"Test{i}.aif": clip for i, clip in enumerate(test)}
    _whale_zip("train2", train_members, public)
    _whale_zip("test2", test_members, public)

    labels = [1 if clip.stem.endswith("_1") else 0 for clip in test]
    answers = pd.DataFrame({"clip": list(test_members), "probability": labels})
    write_csv(answers, private / "test.csv")
    write_csv(answers.assign(probability=0), public / "sampleSubmission.csv")
    shutil.rmtree(extracted)  # as upstream: the unzipped copy in raw/ is not kept




# ---------------------------------------------------------------- freesound-audio-tagging-2019

# The 80 classes in the column order of Kaggle's sample submission (v1's vocabulary; the header must match).
FREESOUND_CLASSES = (
    "Accelerating_and_revving_and_vroom", "Accordion", "Acoustic_guitar", "Applause", "Bark", "Bass_drum",
    "Bass_guitar", "Bathtub_(filling_or_washing)", "Bicycle_bell", "Burping_and_eructation", "Bus", "Buzz",
    "Car_passing_by", "Cheering", "Chewing_and_mastication", "Child_speech_and_kid_speaking", "Chink_and_clink",
    "Chirp_and_tweet", "Church_bell", "Clapping", "Computer_keyboard", "Crackle", "Cricket", "Crowd",
    "Cupboard_open_or_close", "Cutlery_and_silverware", "Dishes_and_pots_and_pans", "Drawer_open_or_close",
    "Drip", "Electric_guitar", "Fart", "Female_singing", "Female_speech_and_woman_speaking", "Fill_(with_liquid)",
    "Finger_snapping", "Frying_(food)", "Gasp", "Glockenspiel", "Gong", "Gurgling", "Harmonica", "Hi-hat", "Hiss",
    "Keys_jangling", "Knock", "Male_singing", "Male_speech_and_man_speaking", "Marimba_and_xylophone",
    "Mechanical_fan", "Meow", "Microwave_oven", "Motorcycle", "Printer", "Purr", "Race_car_and_auto_racing",
    "Raindrop", "Run", "Scissors", "Screaming", "Shatter", "Sigh", "Sink_(filling_or_washing)", "Skateboard",
    "Slam", "Sneeze", "Squeak", "Stream", "Strum", "Tap", "Tick-tock", "Toilet_flush",
    "Traffic_noise_and_roadway_noise", "Trickle_and_dribble", "Walk_and_footsteps", "Water_tap_and_faucet",
    "Waves_and_surf", "Whispering", "Writing", "Yell", "Zipper_(clothing)",
)
# Zenodo's post-competition metadata (the spec's extra_downloads): raw items with this in their name
# are not copied to public/, as in v1.
FREESOUND_META = "FSDKaggle2019.meta"
FREESOUND_META_ZIP = f"{FREESOUND_META}.zip"
FREESOUND_TEST_LABELS = "test_post_competition.csv"


def _freesound_answers(meta_zip: Path) -> pd.DataFrame:
    """The Private-usage clips of Zenodo's test labels as fname + one 0/1 column per class, in file order.

    A clip's `labels` is a comma-separated list of class names; names outside the 80 are ignored, as in v1.
    """
    with zipfile.ZipFile(require_raw(meta_zip)) as zf, zf.open(zip_member(zf, FREESOUND_TEST_LABELS)) as fh:
        labels = pd.read_csv(fh)
    private = labels[labels["usage"] == "Private"]
    if private["labels"].isna().any():
        raise ValueError(f"{meta_zip}: {FREESOUND_TEST_LABELS} has Private clips without labels; the file looks "
                         "damaged. Fix: delete it and prepare again to download it anew.")
    sets = [set(text.split(",")) for text in private["labels"]]
    hot = [[int(name in chosen) for name in FREESOUND_CLASSES] for chosen in sets]
    answers = pd.DataFrame(hot, columns=list(FREESOUND_CLASSES), dtype="int64")
    answers.insert(0, "fname", private["fname"].to_numpy())
    return answers


def _freesound_check_sample(sample_path: Path, answers: pd.DataFrame) -> None:
    """v1's checks: Kaggle's sample submission lists exactly the Private clips, with the 80 classes in order."""
    sample = read_csv(sample_path)
    if list(sample.columns) != list(answers.columns):
        raise ValueError(f"{sample_path}: columns differ from fname + the 80 classes in v1's order. Fix: "
                         "re-download the competition; Kaggle may have changed the files.")
    if len(sample) != len(answers) or sorted(sample["fname"]) != sorted(answers["fname"]):
        raise ValueError(f"{sample_path}: its {len(sample)} clips are not the {len(answers)} Private clips of "
                         f"{FREESOUND_META_ZIP}. Fix: re-download both files.")


def freesound_audio_tagging_2019(raw: Path, public: Path, private: Path) -> None:
    """No new split: Kaggle's download is public as it is, and the test labels Zenodo published after
    the competition (Private-usage rows) become the answers.

    Every item of the download is copied unchanged (train_curated/train_noisy CSVs and zips, test.zip,
    the sample submission), one file at a time; the Zenodo archive is read in place, never copied.
    """
    answers = _freesound_answers(raw / FREESOUND_META_ZIP)
    _freesound_check_sample(raw / "sample_submission.csv", answers)
    for item in sorted(raw.iterdir()):
        if FREESOUND_META in item.name:
            continue
        if item.is_dir():
            copy_tree(item, public / item.name)
        else:
            shutil.copyfile(item, public / item.name)
    write_csv(answers, private / "test.csv")


# ---------------------------------------------------------------- tensorflow-speech-recognition-challenge

SPEECH_TEST_SIZE = 0.1
SPEECH_SAMPLE_LABEL = "silence"


def _speech_train_audio(raw: Path) -> Path:
    """`raw/train/audio`, extracting Kaggle's train.7z into raw/ first (as v1 does; kept for a re-run).

    The archive is unpacked into a scratch folder inside raw/ and renamed into place, so an interrupted
    extraction never leaves a half-filled train/ behind.
    """
    audio = raw / "train" / "audio"
    if audio.is_dir():
        return audio
    archive = require_raw(raw / "train.7z")
    try:
        import py7zr
    except ImportError:
        raise RuntimeError(f"{archive}: a 7z archive needs py7zr. Fix: pip install py7zr") from None
    with tempfile.TemporaryDirectory(dir=raw, prefix=".extract-") as tmp:
        with py7zr.SevenZipFile(archive) as zf:
            zf.extractall(tmp)
        if not (Path(tmp) / "train" / "audio").is_dir():
            raise FileNotFoundError(f"{archive}: has no train/audio/ folder; the download's layout has changed.")
        if (raw / "train").exists():
            shutil.rmtree(raw / "train")  # a train/ without audio/: not ours to keep
        (Path(tmp) / "train").rename(raw / "train")
    return audio


def tensorflow_speech_recognition_challenge(raw: Path, public: Path, private: Path) -> None:
    """v1's split of Kaggle's labelled clips: every `train/audio/<word>/*.wav` (the long
    `_background_noise_` recordings included), sorted by "<word>_<file name>", split 90/10 with
    `train_test_split(random_state=0)`.

    Train clips keep their folders; test clips are renamed `clip_<8-digit index>.wav` in split order.
    The answers keep the raw folder name as the label (v1's known issue #63: not Kaggle's 12 classes);
    the sample submission says "silence" for every clip. Kaggle's own test.7z is not used.
    """
    audio = _speech_train_audio(raw)
    clips = sorted(((p.parent.name, p) for p in audio.rglob("*.wav")), key=lambda c: f"{c[0]}_{c[1].name}")
    if not clips:
        raise FileNotFoundError(f"{audio}: no .wav clips. Fix: delete {raw / 'train'} and prepare again.")
    train_rows, test_rows = split(pd.DataFrame({"i": range(len(clips))}), test_size=SPEECH_TEST_SIZE)
    for i in train_rows["i"]:
        label, path = clips[i]
        dst = public / "train" / "audio" / label
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dst / path.name)
    test_dir = public / "test" / "audio"
    test_dir.mkdir(parents=True, exist_ok=True)
    names, labels = [], []
    for n, i in enumerate(test_rows["i"]):
        label, path = clips[i]
        names.append(f"clip_{n:08d}.wav")
        labels.append(label)
        shutil.copyfile(path, test_dir / names[-1])
    answers = pd.DataFrame({"fname": names, "label": labels})
    write_csv(answers, private / "test.csv")
    write_csv(answers.assign(label=SPEECH_SAMPLE_LABEL), public / "sample_submission.csv")
