"""Preparers of the text tasks beyond classification: preference prediction, question answering, tagging,
cell ordering, word imputation, text normalisation.

Each `prepare(raw, public, private)` turns the extracted Kaggle download in `raw` into the split
MLE-bench v1 makes (facts §4.4): same file names, columns, row order, `random_state=0` and test
sizes, files in `public/` or `private/` as v1 places them. They write only into the staging folders
they are given; `hpc_mle.prepare` renames those into place when the whole preparation succeeded.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from hpc_mle.prepare.common import (
    EXACT_FLOATS,
    ZIP_DATE,
    csv_in_download,
    extract_nested,
    read_csv,
    require_raw,
    split,
    write_csv,
    zip_files,
    zip_member,
)

# ---------------------------------------------------------------- lmsys-chatbot-arena

LMSYS_CLASSES = ["winner_model_a", "winner_model_b", "winner_tie"]
LMSYS_TEST_COLUMNS = ["id", "prompt", "response_a", "response_b"]
# v1's sample submission: the float 1/3 written as its shortest repr in every class column.
LMSYS_SAMPLE = 0.3333333333333333


def lmsys_chatbot_arena(raw: Path, public: Path, private: Path) -> None:
    """10% of Kaggle's train is the test set; the answers are the held-out train rows, all columns.

    The public test keeps the conversation only (id, prompt, both responses): the model names and
    the three one-hot outcome columns stay in `private/answers.csv`.
    """
    old_train = read_csv(raw / "train.csv", **EXACT_FLOATS)
    train, answers = split(old_train)
    sample = answers[["id"]].copy()
    for col in LMSYS_CLASSES:
        sample[col] = LMSYS_SAMPLE
    write_csv(answers, private / "answers.csv")
    write_csv(train, public / "train.csv")
    write_csv(answers[LMSYS_TEST_COLUMNS], public / "test.csv")
    write_csv(sample, public / "sample_submission.csv")


# ---------------------------------------------------------------- chaii-hindi-and-tamil-question-answering

CHAII_SAMPLE_ANSWER = "dummy text"


def chaii_question_answering(raw: Path, public: Path, private: Path) -> None:
    """10% of Kaggle's train is the test set; its answer texts become `PredictionString` answers.

    The public test keeps id, context, question and language (the answer and its start are dropped).
    """
    old_train = read_csv(raw / "train.csv", **EXACT_FLOATS)
    train, test = split(old_train)
    answers = test[["id", "answer_text"]].set_axis(["id", "PredictionString"], axis=1)
    write_csv(train, public / "train.csv")
    write_csv(test.drop(columns=["answer_start", "answer_text"]), public / "test.csv")
    write_csv(answers, private / "test.csv")
    write_csv(answers.assign(PredictionString=CHAII_SAMPLE_ANSWER), public / "sample_submission.csv")


# ---------------------------------------------------------------- facebook-recruiting-iii-keyword-extraction

# v1's sample submission predicts these five tags for every question.
FACEBOOK_SAMPLE_TAGS = "javascript c# python php java"


def facebook_keyword_extraction(raw: Path, public: Path, private: Path) -> None:
    """10% of Kaggle's Train.csv (Id, Title, Body, Tags) is the test set; answers keep all four columns.

    Ids and tags are read as text, as v1 reads them, so ids are written back unchanged. The table is
    read whole (~7 GB of text): v1's split permutes all rows, so there is no streaming shortcut.
    """
    old_train = csv_in_download(raw, "Train.csv", "Train.zip", dtype={"Id": str, "Tags": str})
    train, test = split(old_train)
    del old_train
    test_public = test.drop(columns=["Tags"])
    write_csv(train, public / "train.csv")
    del train
    write_csv(test_public, public / "test.csv")
    write_csv(test_public.assign(Tags=FACEBOOK_SAMPLE_TAGS), public / "sample_submission.csv")
    write_csv(test, private / "test.csv")


# ---------------------------------------------------------------- AI4Code

AI4CODE_TEST_NOTEBOOKS = 20_000  # v1's test size; a module constant so tests can shrink it


def _ancestor_split(ancestors: pd.DataFrame, test_size: int) -> tuple[list[str], list[str]]:
    """v1's greedy split: ancestor groups in order of first appearance go to test while they fit.

    Notebooks forked from the same ancestor stay on one side, so no relative of a test notebook is
    in train. The test set must come out at exactly `test_size` notebooks, as v1 asserts.
    """
    groups: dict[object, list[str]] = {}
    for notebook, ancestor in zip(ancestors["id"].tolist(), ancestors["ancestor_id"].tolist(), strict=True):
        groups.setdefault(ancestor, []).append(notebook)
    train_ids, test_ids = [], []
    for members in groups.values():
        if len(test_ids) + len(members) <= test_size:
            test_ids.extend(members)
        else:
            train_ids.extend(members)
    if len(test_ids) != test_size:
        raise ValueError(f"the ancestor groups filled {len(test_ids)} test notebooks, not {test_size}; "
                         "is train_ancestors.csv complete?")
    return train_ids, test_ids


def _copy_notebooks(ids: list[str], src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for notebook in ids:
        shutil.copyfile(require_raw(src / f"{notebook}.json"), dst / f"{notebook}.json")


def ai4code(raw: Path, public: Path, private: Path) -> None:
    """20,000 notebooks of Kaggle's train, whole ancestor groups, are the test set (v1's greedy split).

    `train_ancestors.csv` is shuffled with `sample(frac=1, random_state=0)`; its groups (by
    `ancestor_id`, in order of first appearance) fill the test set while they fit. Notebook JSON files
    are copied to `public/train/` and `public/test/`; `train_orders.csv` (original row order) goes to
    public for train and to `private/test_orders.csv` for test; the public `train_ancestors.csv` is the
    shuffled table without the test notebooks. The sample submission lists each test notebook's cells
    in the order its JSON stores them (code cells in order, then markdown cells shuffled).
    """
    ancestors = read_csv(raw / "train_ancestors.csv", **EXACT_FLOATS)
    ancestors = ancestors.sample(frac=1, random_state=0).reset_index(drop=True)
    train_ids, test_ids = _ancestor_split(ancestors, AI4CODE_TEST_NOTEBOOKS)

    _copy_notebooks(train_ids, raw / "train", public / "train")
    _copy_notebooks(test_ids, raw / "train", public / "test")

    orders = read_csv(raw / "train_orders.csv", **EXACT_FLOATS)
    write_csv(orders[orders["id"].isin(train_ids)], public / "train_orders.csv")
    test_orders = orders[orders["id"].isin(test_ids)]
    write_csv(test_orders, private / "test_orders.csv")
    write_csv(ancestors[~ancestors["id"].isin(test_ids)], public / "train_ancestors.csv")

    rows = []
    for notebook in test_orders["id"].tolist():
        with open(public / "test" / f"{notebook}.json", encoding="utf-8") as fh:
            cells = json.load(fh)["cell_type"]
        rows.append({"id": notebook, "cell_order": " ".join(cells)})
    sample = pd.DataFrame(rows, columns=["id", "cell_order"])
    if len(sample) != len(test_ids):
        raise ValueError(f"train_orders.csv has {len(sample)} of the {len(test_ids)} test notebooks")
    write_csv(sample, public / "sample_submission.csv")


# ---------------------------------------------------------------- billion-word-imputation

# The number of lines v1 reads from train_v2.txt (it stops there and checks the count); a module
# constant so tests can set it to the size of their synthetic file.
BILLION_WORD_LINES = 30_301_028
BILLION_WORD_TEST_SHARE = 0.01


@contextlib.contextmanager
def _text_in_download(raw: Path, name: str, archive: str) -> Iterator[io.TextIOBase]:
    """`raw/<name>` opened as text, else the entry `name` of the zip `raw/<archive>`, streamed.

    Both read with universal newlines and UTF-8, as v1's `open(path, "r")` did on its machines.
    """
    if (raw / name).is_file() or not (raw / archive).is_file():
        with open(require_raw(raw / name), encoding="utf-8") as fh:
            yield fh
        return
    with zipfile.ZipFile(raw / archive) as zf, io.TextIOWrapper(zf.open(zip_member(zf, name)), encoding="utf-8") as fh:
        yield fh


def _zip_entry(zf: zipfile.ZipFile, name: str):
    """A writable, deflated entry with a fixed timestamp, so big files stream into the archive."""
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return io.TextIOWrapper(zf.open(info, "w", force_zip64=True), encoding="utf-8", newline="")


def billion_word_imputation(raw: Path, public: Path, private: Path) -> None:
    """About 1% of train_v2.txt's sentences, each with one inner word removed, are the test set.

    As v1: one `RandomState(0)` draws `uniform()` per line; a line goes to test when the draw is
    <= 0.01 and it has more than two words, and then `randint(1, words - 1)` picks the word to drop
    (never the first or last). Test ids count from 0. The answers (`private/test.csv`) and the public
    `test_v2.txt` are written by hand with quotes doubled; train lines are copied unchanged. Public
    files are zipped as Kaggle ships them (`train_v2.txt.zip`, `test_v2.txt.zip`), so the sample
    submission (the test sentences as given) lives in `private/`. Everything streams: memory stays flat.
    """
    rng = np.random.RandomState(0)
    header = '"id","sentence"\n'
    lines = test_count = 0
    with (
        _text_in_download(raw, "train_v2.txt", "train_v2.txt.zip") as old_train,
        zipfile.ZipFile(public / "train_v2.txt.zip", "w") as train_zip,
        zipfile.ZipFile(public / "test_v2.txt.zip", "w") as test_zip,
        _zip_entry(train_zip, "train_v2.txt") as public_train,
        _zip_entry(test_zip, "test_v2.txt") as public_test,
        open(private / "test.csv", "w", encoding="utf-8", newline="") as answers,
        open(private / "sample_submission.csv", "w", encoding="utf-8", newline="") as sample,
    ):
        for out in (public_test, answers, sample):
            out.write(header)
        for sentence in old_train:
            if rng.uniform() <= BILLION_WORD_TEST_SHARE and len(sentence.strip().split()) > 2:
                sentence = sentence.strip().replace('"', '""')
                words = sentence.split()
                drop = rng.randint(1, len(words) - 1)
                given = " ".join(words[:drop] + words[drop + 1:])
                answers.write(f'{test_count},"{sentence}"\n')
                public_test.write(f'{test_count},"{given}"\n')
                sample.write(f'{test_count},"{given}"\n')
                test_count += 1
            else:
                public_train.write(sentence)
            lines += 1
            if lines >= BILLION_WORD_LINES:
                break
    if lines != BILLION_WORD_LINES:
        raise ValueError(f"train_v2.txt has {lines} lines; v1 reads exactly {BILLION_WORD_LINES}. "
                         "Fix: delete the raw folder and download the competition again.")


# ---------------------------------------------------------------- tensorflow2-question-answering

TF2QA_CHUNK = 1_000  # v1 splits each chunk of 1,000 lines on its own; a module constant for tests
TF2QA_TEST_KEYS = ["example_id", "question_text", "document_text", "long_answer_candidates"]


def _nq_gold_rows(example_id: str, annotations: list) -> list[dict]:
    """v1's gold rows of one test example: the short answer first, then the long one."""
    if len(annotations) != 1:
        raise ValueError(f"example {example_id} has {len(annotations)} annotations; v1 expects exactly one")
    ann = annotations[0]
    if ann["yes_no_answer"] != "NONE":
        short = ann["yes_no_answer"]
    elif len(ann["short_answers"]) > 0:
        short = f"{ann['short_answers'][0]['start_token']}:{ann['short_answers'][0]['end_token']}"
    else:
        short = ""
    span = ann["long_answer"]
    long = f"{span['start_token']}:{span['end_token']}" if span["start_token"] != -1 else ""
    return [{"example_id": f"{example_id}_short", "PredictionString": short},
            {"example_id": f"{example_id}_long", "PredictionString": long}]


def tensorflow2_question_answering(raw: Path, public: Path, private: Path) -> None:
    """10% of each 1,000-line chunk of simplified-nq-train.jsonl is test, as v1 splits it.

    Chunks are read with pandas' `read_json(lines=True, chunksize=1000)`, ids cast to text, split with
    `train_test_split(test_size=0.1, random_state=0)` and appended with `to_json(lines=True)`, so the
    files match v1's bytes and memory stays at one chunk. `private/test.jsonl` keeps whole test records
    (the answers); the public test keeps id, question, document and long-answer candidates. The gold
    submission (first short answer or YES/NO, and the long answer, per example) is private; the sample
    submission has the same ids with empty predictions.
    """
    source = require_raw(raw / "simplified-nq-train.jsonl")
    gold_rows: list[dict] = []
    with (
        open(public / "simplified-nq-train.jsonl", "w", encoding="utf-8") as train_out,
        open(private / "test.jsonl", "w", encoding="utf-8") as answers_out,
        open(public / "simplified-nq-test.jsonl", "w", encoding="utf-8") as test_out,
        pd.read_json(source, orient="records", lines=True, chunksize=TF2QA_CHUNK) as chunks,
    ):
        for chunk in chunks:
            chunk["example_id"] = chunk["example_id"].astype(str)
            train, test = split(chunk)
            train_out.write(train.to_json(orient="records", lines=True))
            answers_out.write(test.to_json(orient="records", lines=True))
            test_out.write(test[TF2QA_TEST_KEYS].to_json(orient="records", lines=True))
            for example_id, annotations in zip(test["example_id"], test["annotations"], strict=True):
                gold_rows.extend(_nq_gold_rows(example_id, annotations))
    gold = pd.DataFrame(gold_rows, columns=["example_id", "PredictionString"])
    write_csv(gold, private / "gold_submission.csv")
    write_csv(gold.assign(PredictionString=""), public / "sample_submission.csv")


# ---------------------------------------------------------------- text normalization (en, ru)


def _write_quoted_csv(frame: pd.DataFrame, path: Path) -> None:
    """Upstream writes these with every non-numeric field quoted (csv.QUOTE_NONNUMERIC)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")


def _renumber_sentences(frame: pd.DataFrame) -> pd.DataFrame:
    """Sentence ids 0..K-1 in order of first appearance, so an id says nothing about the original corpus."""
    mapping = {old: new for new, old in enumerate(frame["sentence_id"].unique())}
    out = frame.copy()
    out["sentence_id"] = out["sentence_id"].map(mapping)
    return out


def _token_ids(frame: pd.DataFrame) -> pd.Series:
    """The submission id `<sentence_id>_<token_id>`."""
    return frame["sentence_id"].astype(str) + "_" + frame["token_id"].astype(str)


def _zip_public_csv(frame: pd.DataFrame, name: str, public: Path) -> None:
    """Write `name` and replace it by `name.zip`, the form in which Kaggle ships these files."""
    path = public / name
    _write_quoted_csv(frame, path)
    zip_files({name: path}, public / f"{name}.zip")
    path.unlink()


def _text_normalization(lang: str, raw: Path, public: Path, private: Path) -> None:
    """Split Kaggle's training corpus by sentence (10% test); the test's `after` column becomes the answers.

    Only `<lang>_train.csv.zip` is used: Kaggle's test sets have no answers. The public files keep
    Kaggle's names (`*_test_2.csv`, `*_sample_submission_2.csv`, the second-stage names) and are zipped.
    """
    extract_nested(raw / f"{lang}_train.csv.zip", raw)
    corpus = read_csv(raw / f"{lang}_train.csv")
    train_ids, test_ids = split(corpus["sentence_id"].unique())
    train = _renumber_sentences(corpus[corpus["sentence_id"].isin(train_ids)])
    held_out = _renumber_sentences(corpus[corpus["sentence_id"].isin(test_ids)])

    test = held_out.drop(columns=["after", "class"])
    answers = pd.DataFrame({"id": _token_ids(held_out), "after": held_out["after"]})
    sample = pd.DataFrame({"id": _token_ids(test), "after": test["before"]})

    _write_quoted_csv(answers, private / "answers.csv")
    _write_quoted_csv(sample, private / "sample_submission.csv")
    _zip_public_csv(train, f"{lang}_train.csv", public)
    _zip_public_csv(test, f"{lang}_test_2.csv", public)
    _zip_public_csv(sample, f"{lang}_sample_submission_2.csv", public)


def text_normalization_challenge_english_language(raw: Path, public: Path, private: Path) -> None:
    """English corpus: see `_text_normalization`."""
    _text_normalization("en", raw, public, private)


def text_normalization_challenge_russian_language(raw: Path, public: Path, private: Path) -> None:
    """Russian corpus: the same preparation as the English one."""
    _text_normalization("ru", raw, public, private)
