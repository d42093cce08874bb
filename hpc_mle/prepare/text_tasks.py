"""Preparers of the text competitions beyond Lite: preference prediction, question answering, tagging,
cell ordering, word imputation.

Each `prepare(raw, public, private)` turns the extracted Kaggle download in `raw` into the split
MLE-bench v1 makes (facts §4.4): same file names, columns, row order, `random_state=0` and test
sizes, files in `public/` or `private/` as v1 places them. They write only into the staging folders
they are given; `hpc_mle.prepare` renames those into place when the whole preparation succeeded.
"""

from __future__ import annotations

from pathlib import Path

from hpc_mle.prepare.common import EXACT_FLOATS, read_csv, split, write_csv

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
