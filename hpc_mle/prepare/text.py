"""Preparers of the text-classification and text-regression competitions: insults, toxicity, authorship,
requests, sentiment, phrase similarity, essays, tweet spans, question-answer quality.

Each turns the extracted Kaggle download in `raw` into upstream v1's split (facts §4.4) and writes
into the staging folders `public` and `private` it is given; `prepare` makes the result atomic.
Where v1 reads a raw table with its own `read_csv` (exact float round trip), so do we, so the
written floats keep their digits.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from hpc_mle.prepare.common import (
    EXACT_FLOATS,
    extract_nested,
    raw_csv,
    read_csv,
    read_exact,
    require_raw,
    split,
    write_csv,
    zip_files,
)


def _label_split(raw_table: pd.DataFrame, label: str, test_size: float = 0.1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """v1's usual split: (train, answers) with `random_state=0`; checks that no row is lost."""
    train, answers = split(raw_table, test_size=test_size)
    if len(train) + len(answers) != len(raw_table) or label not in answers.columns:
        raise ValueError(f"split of {len(raw_table)} rows lost rows or has no column {label!r}")
    return train, answers


# ---------------------------------------------------------------- movie-review-sentiment-analysis-kernels-only

MOVIE_TEST_SIZE = 0.3  # Kaggle's own test is 66,293 of 222,354 phrases: v1 keeps that share


def _write_zipped_tsv(frame: pd.DataFrame, name: str, public: Path) -> None:
    """`name` written tab-separated, then replaced by `name.zip` holding it (Kaggle ships them zipped)."""
    path = public / name
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, sep="\t", index=False, lineterminator="\n")
    zip_files({name: path}, public / f"{name}.zip")
    path.unlink()


def movie_review_sentiment_analysis_kernels_only(raw: Path, public: Path, private: Path) -> None:
    """Kaggle's labelled train.tsv split 70/30 (random_state 0); the whole held-out rows are the answers.

    The answers keep every column (PhraseId, SentenceId, Phrase, Sentiment), as v1 writes them; the
    sample predicts the neutral class 2 everywhere. Phrases of one sentence may fall on both sides,
    as in v1.
    """
    extract_nested(raw / "train.tsv.zip", raw)
    phrases = read_csv(raw / "train.tsv", sep="\t")  # v1 reads this one with plain pandas
    train, answers = _label_split(phrases, "Sentiment", MOVIE_TEST_SIZE)
    test = answers.drop(columns=["Sentiment"])
    if not train["PhraseId"].is_unique or not test["PhraseId"].is_unique:
        raise ValueError("train.tsv repeats a PhraseId")

    write_csv(answers, private / "answers.csv")
    write_csv(answers[["PhraseId"]].assign(Sentiment=2), public / "sampleSubmission.csv")
    _write_zipped_tsv(train, "train.tsv", public)
    _write_zipped_tsv(test, "test.tsv", public)


# ---------------------------------------------------------------- us-patent-phrase-to-phrase-matching


def us_patent_phrase_to_phrase_matching(raw: Path, public: Path, private: Path) -> None:
    """Kaggle's train.csv split 90/10 (random_state 0); the held-out rows with their score are the answers.

    The sample predicts 0 everywhere, so its Pearson correlation is undefined (NaN, a valid grade in v1).
    """
    pairs = read_exact(raw / "train.csv")
    train, answers = _label_split(pairs, "score")
    write_csv(train, public / "train.csv")
    write_csv(answers, private / "test.csv")
    write_csv(answers.drop(columns=["score"]), public / "test.csv")
    write_csv(answers[["id"]].assign(score=0), public / "sample_submission.csv")


# ---------------------------------------------------------------- learning-agency-lab-automated-essay-scoring-2

ESSAY_SAMPLE_SEED = 42  # v1 draws the sample's scores 1..6 from NumPy's legacy RandomState(42)


def learning_agency_lab_automated_essay_scoring_2(raw: Path, public: Path, private: Path) -> None:
    """Kaggle's 17,307 scored essays split 90/10 (random_state 0); Kaggle's hidden test is not used.

    The sample holds random scores 1..6 (RandomState(42).randint(1, 7)), as v1's does.
    """
    essays = read_exact(raw / "train.csv")
    train, answers = _label_split(essays, "score")
    sample = answers[["essay_id"]].copy()
    sample["score"] = np.random.RandomState(ESSAY_SAMPLE_SEED).randint(1, 7, size=len(sample))
    write_csv(answers, private / "answers.csv")
    write_csv(train, public / "train.csv")
    write_csv(answers.drop(columns=["score"]), public / "test.csv")
    write_csv(sample, public / "sample_submission.csv")


# ---------------------------------------------------------------- tweet-sentiment-extraction


def tweet_sentiment_extraction(raw: Path, public: Path, private: Path) -> None:
    """Kaggle's train.csv split 90/10 (random_state 0); `selected_text` of the held-out tweets is the answer.

    The sample leaves `selected_text` empty (a Jaccard of 0 on every tweet with a non-empty answer).
    """
    tweets = read_exact(raw / "train.csv")
    train, answers = _label_split(tweets, "selected_text")
    write_csv(train, public / "train.csv")
    write_csv(answers, private / "test.csv")
    write_csv(answers.drop(columns=["selected_text"]), public / "test.csv")
    write_csv(answers[["textID"]].assign(selected_text=""), public / "sample_submission.csv")


# ---------------------------------------------------------------- google-quest-challenge

QUEST_TARGETS = (
    "question_asker_intent_understanding", "question_body_critical", "question_conversational",
    "question_expect_short_answer", "question_fact_seeking", "question_has_commonly_accepted_answer",
    "question_interestingness_others", "question_interestingness_self", "question_multi_intent",
    "question_not_really_a_question", "question_opinion_seeking", "question_type_choice",
    "question_type_compare", "question_type_consequence", "question_type_definition",
    "question_type_entity", "question_type_instructions", "question_type_procedure",
    "question_type_reason_explanation", "question_type_spelling", "question_well_written",
    "answer_helpful", "answer_level_of_information", "answer_plausible", "answer_relevance",
    "answer_satisfaction", "answer_type_instructions", "answer_type_procedure",
    "answer_type_reason_explanation", "answer_well_written",
)
QUEST_RARE = "question_type_spelling"  # almost always 0: a split can leave it constant in the test


def _quest_ensure_varied(train: pd.DataFrame, test: pd.DataFrame) -> None:
    """Where the test's spelling target is constant, exchange the test's first row (by position) with
    the first train row (in split order) whose spelling target is non-zero, in place, as v1 does.

    The rows' values move; both frames keep their index labels, so the files' row order is unchanged.
    """
    if test[QUEST_RARE].nunique() != 1:
        return
    donor = train.index[train[QUEST_RARE] != 0][0]
    first_test_row = test.iloc[0].copy()
    test.iloc[0] = train.loc[donor].copy()
    train.loc[donor] = first_test_row


def google_quest_challenge(raw: Path, public: Path, private: Path) -> None:
    """Kaggle's 6,079 labelled question-answer pairs split 90/10 (random_state 0); the 30 targets of
    the held-out pairs are the answers (qa_id + targets).

    The sample gives every target the same ramp 0..1 down the rows (so no column is constant).
    """
    pairs = read_exact(raw / "train.csv")
    train, test = split(pairs)
    _quest_ensure_varied(train, test)
    targets = list(QUEST_TARGETS)
    answers = test[["qa_id", *targets]]
    constant = [c for c in targets if answers[c].nunique() <= 1]
    if constant:
        raise ValueError(f"google-quest: target(s) {constant} are constant in the new test set")
    sample = answers.copy()
    sample[targets] = np.tile(np.linspace(0, 1, len(sample))[:, None], (1, len(targets)))

    write_csv(answers, private / "test.csv")
    write_csv(train, public / "train.csv")
    write_csv(test.drop(columns=targets), public / "test.csv")
    write_csv(sample, public / "sample_submission.csv")


# ---------------------------------------------------------------- jigsaw-unintended-bias-in-toxicity-classification

JIGSAW_ANSWER_COLUMNS = 45  # id, comment_text, metadata, toxicity and its sub-labels, 24 identities, counts


def jigsaw_unintended_bias_in_toxicity_classification(raw: Path, public: Path, private: Path) -> None:
    """No split: Kaggle's released private test set (test_private_expanded.csv, with labels) is the test.

    The labelled file is copied unchanged as the answers and Kaggle's train.csv unchanged to public/;
    the public test keeps only `id` and `comment_text`. Only those two columns are read, so memory
    stays far below the 1.8 million training comments' size (train.csv is copied, never parsed).
    """
    labelled = raw / "test_private_expanded.csv"
    header = read_csv(labelled, nrows=0)
    if len(header.columns) != JIGSAW_ANSWER_COLUMNS:
        raise ValueError(f"{labelled}: expected {JIGSAW_ANSWER_COLUMNS} columns, found {len(header.columns)}")
    test = read_exact(labelled, usecols=["id", "comment_text"])[["id", "comment_text"]]
    private.mkdir(parents=True, exist_ok=True)
    public.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(labelled, private / "test.csv")
    shutil.copyfile(require_raw(raw / "train.csv"), public / "train.csv")
    write_csv(test, public / "test.csv")
    write_csv(test[["id"]].assign(prediction=0.0), public / "sample_submission.csv")


# ---------------------------------------------------------------- Lite: insults, jigsaw toxic, spooky, pizza

JIGSAW_CLASSES = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]
SPOOKY_CLASSES = ["EAP", "HPL", "MWS"]
# The sample submission's constant predictions, as v1 writes them.
SPOOKY_SAMPLE = {"EAP": 0.403493538995863, "HPL": 0.287808366106543, "MWS": 0.308698094897594}


def _write_json(obj: object, path: Path) -> None:
    """As v1: `json.dump(..., indent=4)` with its defaults (ASCII only, so the bytes are stable)."""
    path.write_text(json.dumps(obj, indent=4), encoding="utf-8", newline="\n")


def _read_json(path: Path) -> list[dict]:
    return json.loads(require_raw(path).read_text(encoding="utf-8"))


# ---------------------------------------------------------------- original test labels (no resplit)


def detecting_insults(raw: Path, public: Path, private: Path) -> None:
    """Kaggle's labelled test set is the test set; the comment text is the id.

    The public test and sample submission are rebuilt from it (Kaggle's current public test is the
    later verification set, which v1 ignores). Train and the answers are byte copies of the download.
    """
    train_csv, answers_csv = require_raw(raw / "train.csv"), require_raw(raw / "test_with_solutions.csv")
    shutil.copyfile(train_csv, public / "train.csv")
    shutil.copyfile(answers_csv, private / "test.csv")
    gold = read_csv(private / "test.csv", **EXACT_FLOATS)[["Insult", "Date", "Comment"]]
    write_csv(gold, private / "gold_submission.csv")
    write_csv(gold.drop(columns=["Insult"]), public / "test.csv")
    write_csv(gold.assign(Insult=0), public / "sample_submission_null.csv")


def jigsaw_toxic(raw: Path, public: Path, private: Path) -> None:
    """Kaggle's test labels are the answers; rows labelled -1 (not scored by Kaggle) stay in them."""
    train = raw_csv(raw, "train.csv", "train.csv.zip")
    test = raw_csv(raw, "test.csv", "test.csv.zip")
    answers = raw_csv(raw, "test_labels.csv", "test_labels.csv.zip")
    sample = raw_csv(raw, "sample_submission.csv", "sample_submission.csv.zip")
    sample[JIGSAW_CLASSES] = 0.5
    write_csv(train, public / "train.csv")
    write_csv(test, public / "test.csv")
    write_csv(sample, public / "sample_submission.csv")
    write_csv(answers, private / "test.csv")


# ---------------------------------------------------------------- new splits of the labelled train set


def spooky_author(raw: Path, public: Path, private: Path) -> None:
    """10% of train is the test set; the answers are one-hot (id, EAP, HPL, MWS) like a submission."""
    train, test = split(raw_csv(raw, "train.csv", "train.zip"))
    answers = pd.DataFrame({"id": test["id"].to_numpy()})
    for author in SPOOKY_CLASSES:
        answers[author] = (test["author"].to_numpy() == author).astype(np.int64)
    write_csv(train, public / "train.csv")
    write_csv(test.drop(columns=["author"]), public / "test.csv")
    write_csv(answers.assign(**SPOOKY_SAMPLE), public / "sample_submission.csv")
    write_csv(answers, private / "test.csv")


def random_acts_of_pizza(raw: Path, public: Path, private: Path) -> None:
    """Train is resplit with Kaggle's test share; test requests keep only Kaggle's test fields.

    Kept as in v1: the test field `giver_username_if_known` leaks the outcome (upstream #108).
    """
    old_train, old_test = _read_json(raw / "train.json"), _read_json(raw / "test.json")
    test_share = len(old_test) / (len(old_train) + len(old_test))
    test_fields = list(old_test[0])
    train, test = split(old_train, test_size=test_share)
    _write_json(train, public / "train.json")
    _write_json([{key: row[key] for key in test_fields} for row in test], public / "test.json")
    zip_files({"train.json": public / "train.json"}, public / "train.zip")
    zip_files({"test.json": public / "test.json"}, public / "test.zip")
    answers = pd.DataFrame({"request_id": [row["request_id"] for row in test],
                            "requester_received_pizza": [int(row["requester_received_pizza"]) for row in test]})
    write_csv(answers, private / "test.csv")
    write_csv(answers.assign(requester_received_pizza=0), public / "sampleSubmission.csv")


