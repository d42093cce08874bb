"""Text competitions beyond Lite (hpc_mle/prepare/text.py) on synthetic Kaggle-shaped downloads.

Each `make_raw_*` writes what extracting Kaggle's download gives (file names, nested zips, columns,
id formats), a few dozen rows. The shared Lite checks run on each, plus the rules that matter for
one competition: the zipped TSVs of movie-review, the sample seed of the essays, the row swap of
google-quest, NaN-valid grades (us-patent's sample), and the v1 quirks each grader keeps.
"""

from __future__ import annotations

import string
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lite_support import run_checks
from sklearn.model_selection import train_test_split

from hpc_mle import grading, paths
from hpc_mle.prepare.text import QUEST_TARGETS

MOVIE = "movie-review-sentiment-analysis-kernels-only"
PATENT = "us-patent-phrase-to-phrase-matching"
ESSAY = "learning-agency-lab-automated-essay-scoring-2"
TWEET = "tweet-sentiment-extraction"
QUEST = "google-quest-challenge"

WORDS = ["good", "bad", "film", "plot", "great", "dull", "actor", "scene", "funny", "sad", "movie", "story"]


def _hex(rng: np.random.Generator, n: int, width: int) -> list[str]:
    """Unique lower-case hex ids with at least one letter (pandas must read them as text)."""
    out: list[str] = []
    while len(out) < n:
        s = "".join(rng.choice(list("0123456789abcdef"), width))
        if s not in out and any(c in string.ascii_letters for c in s):
            out.append(s)
    return out


def _sentence(rng: np.random.Generator, k: int) -> str:
    return " ".join(rng.choice(WORDS, k))


def _grade(cid: str, data_dir: Path, frame: pd.DataFrame, tmp: Path, mode: str = "v1"):
    path = tmp / "sub.csv"
    frame.to_csv(path, index=False)
    return grading.grade_submission(path, cid, data_dir, mode=mode)


def _public_csv(p, name: str) -> pd.DataFrame:
    return pd.read_csv(p.public / name)


# ---------------------------------------------------------------- movie-review-sentiment-analysis-kernels-only


def make_raw_movie(raw: Path, rng: np.random.Generator) -> None:
    rows = [(i + 1, 1 + i // 5, _sentence(rng, 1 + i % 5), int(rng.integers(0, 5))) for i in range(40)]
    train = pd.DataFrame(rows, columns=["PhraseId", "SentenceId", "Phrase", "Sentiment"])
    test = pd.DataFrame({"PhraseId": range(41, 51), "SentenceId": 9, "Phrase": "a quiet film"})
    for name, frame in (("train.tsv", train), ("test.tsv", test)):
        with zipfile.ZipFile(raw / f"{name}.zip", "w") as zf:
            zf.writestr(name, frame.to_csv(sep="\t", index=False))
    pd.DataFrame({"PhraseId": range(41, 51), "Sentiment": 2}).to_csv(raw / "sampleSubmission.csv", index=False)


def test_movie_review(tmp_path):
    p = run_checks(MOVIE, make_raw_movie, tmp_path, public={"train.tsv.zip", "test.tsv.zip", "sampleSubmission.csv"},
                   private={"answers.csv"}, test_rows=12)
    raw = pd.read_csv(paths.raw_dir(MOVIE, p.data_dir) / "train.tsv", sep="\t")
    train_exp, test_exp = train_test_split(raw, test_size=0.3, random_state=0)
    answers = p.answers()
    assert list(answers.columns) == ["PhraseId", "SentenceId", "Phrase", "Sentiment"]
    assert answers["PhraseId"].tolist() == test_exp["PhraseId"].tolist()
    with zipfile.ZipFile(p.public / "test.tsv.zip") as zf:
        assert zf.namelist() == ["test.tsv"]
        test = pd.read_csv(zf.open("test.tsv"), sep="\t")
    assert list(test.columns) == ["PhraseId", "SentenceId", "Phrase"]
    with zipfile.ZipFile(p.public / "train.tsv.zip") as zf:
        train = pd.read_csv(zf.open("train.tsv"), sep="\t")
    assert train["PhraseId"].tolist() == train_exp["PhraseId"].tolist()
    sample = pd.read_csv(p.sample_path())
    assert (sample["Sentiment"] == 2).all()
    expected = float(np.mean(answers["Sentiment"] == 2))
    assert grading.grade_submission(p.sample_path(), MOVIE, p.data_dir).score == round(expected, 5)


# ---------------------------------------------------------------- us-patent-phrase-to-phrase-matching


def make_raw_patent(raw: Path, rng: np.random.Generator) -> None:
    n = 40
    pd.DataFrame({
        "id": _hex(rng, n, 16), "anchor": [_sentence(rng, 2) for _ in range(n)],
        "target": [_sentence(rng, 3) for _ in range(n)], "context": rng.choice(["A47", "B60", "H04"], n),
        "score": rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], n),
    }).to_csv(raw / "train.csv", index=False)
    pd.DataFrame({"id": _hex(rng, 5, 16), "anchor": "x", "target": "y", "context": "A47"}).to_csv(
        raw / "test.csv", index=False)
    pd.DataFrame({"id": _hex(rng, 5, 16), "score": 0}).to_csv(raw / "sample_submission.csv", index=False)


def test_us_patent(tmp_path):
    # The sample's constant zeros give a NaN Pearson score: valid in v1, with no medal.
    data_dir = tmp_path / "data"
    from lite_support import check_layout, check_no_answers_in_public, prepare_from_raw

    p = prepare_from_raw(PATENT, make_raw_patent, data_dir)
    check_layout(p, {"train.csv", "test.csv", "sample_submission.csv"}, {"test.csv"})
    check_no_answers_in_public(p)
    answers = p.answers()
    assert len(answers) == 4 and list(answers.columns) == ["id", "anchor", "target", "context", "score"]
    assert "score" not in _public_csv(p, "test.csv").columns

    sample = grading.grade_submission(p.sample_path(), PATENT, data_dir)
    assert sample.valid_submission and np.isnan(sample.score)
    gold = _grade(PATENT, data_dir, answers[["id", "score"]], tmp_path)
    assert gold.valid_submission and gold.score == 1.0
    shuffled = answers[["id", "score"]].iloc[::-1]
    assert _grade(PATENT, data_dir, shuffled, tmp_path).score == 1.0  # matched by id, not by position
    for bad in (answers[["id"]], answers[["id", "score"]].iloc[:-1],
                answers[["id", "score"]].assign(id="0123456789abcdef"),
                answers[["id", "score"]].assign(score="high")):
        report = _grade(PATENT, data_dir, bad, tmp_path)
        assert not report.valid_submission and report.reason and not report.grader_error, report.reason

    board = paths.competition_dir(PATENT, data_dir) / "leaderboard.csv"
    pd.DataFrame({"teamId": range(1, 101), "score": np.linspace(0.99, 0.0, 100)}).to_csv(board, index=False)
    assert _grade(PATENT, data_dir, answers[["id", "score"]], tmp_path).gold_medal
    nan_report = grading.grade_submission(p.sample_path(), PATENT, data_dir)
    assert nan_report.valid_submission and nan_report.any_medal is False and nan_report.above_median is False


# ---------------------------------------------------------------- learning-agency-lab-automated-essay-scoring-2


def make_raw_essay(raw: Path, rng: np.random.Generator) -> None:
    n = 60
    pd.DataFrame({
        "essay_id": _hex(rng, n, 7), "full_text": [_sentence(rng, 12) + "\n\n" + _sentence(rng, 8) for _ in range(n)],
        "score": rng.integers(1, 7, n),
    }).to_csv(raw / "train.csv", index=False)
    pd.DataFrame({"essay_id": _hex(rng, 3, 7), "full_text": "short essay"}).to_csv(raw / "test.csv", index=False)
    pd.DataFrame({"essay_id": _hex(rng, 3, 7), "score": 3}).to_csv(raw / "sample_submission.csv", index=False)


def test_essay_scoring(tmp_path):
    p = run_checks(ESSAY, make_raw_essay, tmp_path, public={"train.csv", "test.csv", "sample_submission.csv"},
                   private={"answers.csv"}, test_rows=6, perfect_score=1.0)
    sample = pd.read_csv(p.sample_path())
    assert sample["score"].tolist() == np.random.RandomState(42).randint(1, 7, size=6).tolist()
    assert list(_public_csv(p, "test.csv").columns) == ["essay_id", "full_text"]
    answers = p.answers()
    text_scores = answers[["essay_id", "score"]].astype({"score": str}).assign(score=lambda f: "s" + f["score"])
    report = _grade(ESSAY, p.data_dir, text_scores, tmp_path)
    assert not report.valid_submission and not report.grader_error  # text against numeric labels: v1 raised


# ---------------------------------------------------------------- tweet-sentiment-extraction


def make_raw_tweet(raw: Path, rng: np.random.Generator) -> None:
    n = 40
    texts = [_sentence(rng, 6) for _ in range(n)]
    selected = [" ".join(t.split()[1:4]) for t in texts]
    pd.DataFrame({"textID": _hex(rng, n, 10), "text": texts, "selected_text": selected,
                  "sentiment": rng.choice(["neutral", "positive", "negative"], n)}).to_csv(raw / "train.csv", index=False)
    pd.DataFrame({"textID": _hex(rng, 3, 10), "text": "hi there", "sentiment": "neutral"}).to_csv(
        raw / "test.csv", index=False)
    pd.DataFrame({"textID": _hex(rng, 3, 10), "selected_text": ""}).to_csv(raw / "sample_submission.csv", index=False)


def test_tweet_sentiment(tmp_path):
    p = run_checks(TWEET, make_raw_tweet, tmp_path, public={"train.csv", "test.csv", "sample_submission.csv"},
                   private={"test.csv"}, test_rows=4, sample_score=0.0, perfect_score=1.0)
    assert list(_public_csv(p, "test.csv").columns) == ["textID", "text", "sentiment"]
    answers = p.answers()
    # Case and repeated words do not matter: word sets of lower-cased whitespace tokens.
    upper = answers[["textID", "selected_text"]].assign(selected_text=lambda f: f["selected_text"].str.upper() + " ")
    assert _grade(TWEET, p.data_dir, upper, tmp_path).score == 1.0
    # An empty prediction against an empty answer has no Jaccard index: v1 failed, so invalid.
    answers_path = paths.prepared_dir(TWEET, p.data_dir) / "private" / "test.csv"
    answers.assign(selected_text=[""] + answers["selected_text"].tolist()[1:]).to_csv(answers_path, index=False)
    report = grading.grade_submission(p.sample_path(), TWEET, p.data_dir)
    assert not report.valid_submission and "empty" in report.reason and not report.grader_error


# ---------------------------------------------------------------- google-quest-challenge


QUEST_TEXT = ["question_title", "question_body", "question_user_name", "question_user_page", "answer",
              "answer_user_name", "answer_user_page", "url", "category", "host"]


def make_raw_quest(raw: Path, rng: np.random.Generator) -> None:
    n = 60
    frame = pd.DataFrame({"qa_id": rng.choice(np.arange(1000, 9000), n, replace=False)})
    for col in QUEST_TEXT:
        frame[col] = [_sentence(rng, 3) for _ in range(n)]
    for col in QUEST_TARGETS:
        frame[col] = rng.choice([0.0, 1 / 3, 0.5, 2 / 3, 0.777777777777778, 1.0], n)
    spelling = np.zeros(n)
    spelling[[5, 20]] = 1 / 3  # rare: with this seed neither row falls in the 6 test rows
    frame["question_type_spelling"] = spelling
    frame.to_csv(raw / "train.csv", index=False)
    frame.iloc[:4][["qa_id", *QUEST_TEXT]].to_csv(raw / "test.csv", index=False)
    frame.iloc[:4][["qa_id", *QUEST_TARGETS]].to_csv(raw / "sample_submission.csv", index=False)


def test_google_quest(tmp_path):
    p = run_checks(QUEST, make_raw_quest, tmp_path, public={"train.csv", "test.csv", "sample_submission.csv"},
                   private={"test.csv"}, test_rows=6, perfect_score=1.0)
    answers = p.answers()
    raw = pd.read_csv(paths.raw_dir(QUEST, p.data_dir) / "train.csv")
    train_exp, test_exp = train_test_split(raw, test_size=0.1, random_state=0)
    assert test_exp["question_type_spelling"].nunique() == 1  # the synthetic split needs the swap
    assert answers["question_type_spelling"].nunique() == 2
    swapped_in = train_exp[train_exp["question_type_spelling"] != 0].iloc[0]
    assert answers["qa_id"].iloc[0] == swapped_in["qa_id"]
    train = _public_csv(p, "train.csv")
    assert test_exp["qa_id"].iloc[0] in train["qa_id"].tolist() and len(train) == 54
    assert list(answers.columns) == ["qa_id", *QUEST_TARGETS]
    assert list(_public_csv(p, "test.csv").columns) == ["qa_id", *QUEST_TEXT]
    sample = pd.read_csv(p.sample_path())
    assert np.allclose(sample[QUEST_TARGETS[0]], np.linspace(0, 1, 6))

    gold = answers.copy()
    # v1 never compares qa_ids: wrong ids pass, paired by sorted position; the corrected grade refuses them.
    wrong_ids = gold.assign(qa_id=gold["qa_id"] + 100000)
    v1 = _grade(QUEST, p.data_dir, wrong_ids, tmp_path)
    assert v1.valid_submission and v1.score == 1.0 and v1.corrected_valid is False
    assert not _grade(QUEST, p.data_dir, wrong_ids, tmp_path, mode="corrected").valid_submission
    # A constant column makes the mean NaN: valid in v1.
    constant = _grade(QUEST, p.data_dir, gold.assign(answer_helpful=0.5), tmp_path)
    assert constant.valid_submission and np.isnan(constant.score)
    for bad in (gold.assign(extra=1), gold.drop(columns=["qa_id"]), gold.iloc[:-1],
                gold.assign(answer_helpful="high")):
        report = _grade(QUEST, p.data_dir, bad, tmp_path)
        assert not report.valid_submission and report.reason and not report.grader_error, report.reason


@pytest.mark.parametrize("cid", [MOVIE, PATENT, ESSAY, TWEET, QUEST, "jigsaw-unintended-bias-in-toxicity-classification"])
def test_descriptions_exist_and_obfuscated_hides_the_name(cid):
    from hpc_mle import competitions

    spec = competitions.get(cid)
    plain = spec.description_path.read_text()
    hidden = (spec.folder / "description_obfuscated.md").read_text()
    assert plain.strip() and hidden.strip()
    for word in (spec.name, "Kaggle", cid):
        assert word.lower() not in hidden.lower()


# ---------------------------------------------------------------- jigsaw-unintended-bias-in-toxicity-classification

JIGSAW = "jigsaw-unintended-bias-in-toxicity-classification"
JIGSAW_IDENTITIES = ["male", "female", "homosexual_gay_or_lesbian", "christian", "jewish", "muslim", "black",
                     "white", "psychiatric_or_mental_illness"]
JIGSAW_OTHER_IDENTITIES = ["transgender", "other_gender", "heterosexual", "bisexual", "other_sexual_orientation",
                           "hindu", "buddhist", "atheist", "other_religion", "asian", "latino",
                           "other_race_or_ethnicity", "physical_disability", "intellectual_or_learning_disability",
                           "other_disability"]
JIGSAW_META = ["created_date", "publication_id", "parent_id", "article_id", "rating", "funny", "wow", "sad", "likes",
               "disagree"]
JIGSAW_SUBLABELS = ["severe_toxicity", "obscene", "sexual_explicit", "identity_attack", "insult", "threat"]


def make_raw_jigsaw(raw: Path, rng: np.random.Generator) -> None:
    n = 36
    frame = pd.DataFrame({"id": np.arange(7000000, 7000000 + n), "comment_text": [_sentence(rng, 5) for _ in range(n)]})
    for col in JIGSAW_META:
        frame[col] = rng.integers(0, 5, n)
    frame["rating"] = rng.choice(["approved", "rejected"], n)
    frame["toxicity"] = [0.8 if i % 2 == 0 else (0.5 if i % 7 == 0 else 0.1) for i in range(n)]
    for col in JIGSAW_SUBLABELS:
        frame[col] = rng.random(n).round(6)
    for j, col in enumerate(JIGSAW_IDENTITIES + JIGSAW_OTHER_IDENTITIES):
        member = np.array([(i // 2 + j) % 3 == 0 for i in range(n)])
        frame[col] = np.where(member, 0.75, np.where(np.arange(n) % 5 == 0, np.nan, 0.0))
    frame["identity_annotator_count"] = 4
    frame["toxicity_annotator_count"] = 10
    assert len(frame.columns) == 45
    frame.to_csv(raw / "test_private_expanded.csv", index=False)
    frame.iloc[:5].to_csv(raw / "test_public_expanded.csv", index=False)
    train = pd.DataFrame({"id": np.arange(59848, 59848 + 20), "target": rng.random(20).round(6),
                          "comment_text": [_sentence(rng, 6) for _ in range(20)]})
    train.to_csv(raw / "train.csv", index=False)
    frame[["id", "comment_text"]].iloc[:5].to_csv(raw / "test.csv", index=False)
    frame[["id"]].iloc[:5].assign(prediction=0.0).to_csv(raw / "sample_submission.csv", index=False)


def test_jigsaw_unintended_bias(tmp_path):
    from lite_support import check_layout, check_no_answers_in_public, prepare_from_raw

    data_dir = tmp_path / "data"
    p = prepare_from_raw(JIGSAW, make_raw_jigsaw, data_dir)
    check_layout(p, {"train.csv", "test.csv", "sample_submission.csv"}, {"test.csv"})
    check_no_answers_in_public(p)
    raw = paths.raw_dir(JIGSAW, data_dir)
    assert (p.private / "test.csv").read_bytes() == (raw / "test_private_expanded.csv").read_bytes()
    assert (p.public / "train.csv").read_bytes() == (raw / "train.csv").read_bytes()
    assert list(_public_csv(p, "test.csv").columns) == ["id", "comment_text"]
    answers = p.answers()
    assert len(answers) == 36

    sample = grading.grade_submission(p.sample_path(), JIGSAW, data_dir)
    assert sample.valid_submission and sample.score == 0.5  # every AUC of constant predictions is 0.5
    gold = answers[["id"]].assign(prediction=answers["toxicity"])
    assert _grade(JIGSAW, data_dir, gold, tmp_path).score == 1.0
    # v1 binarises at 0.5: any value on the right side of 0.5 is as good as the truth.
    assert _grade(JIGSAW, data_dir, gold.assign(prediction=(gold["prediction"] >= 0.5) * 0.51), tmp_path).score == 1.0
    # v1 also takes the answers' own column name, and reads a missing prediction as 0.
    assert _grade(JIGSAW, data_dir, gold.rename(columns={"prediction": "toxicity"}), tmp_path).score == 1.0
    assert _grade(JIGSAW, data_dir, gold.iloc[::-1], tmp_path).score == 1.0
    with_nan = _grade(JIGSAW, data_dir, gold.assign(prediction=gold["prediction"].where(gold["prediction"] < 0.5)),
                      tmp_path)
    assert with_nan.valid_submission and with_nan.score == 0.5
    for bad in (gold[["id"]], gold.assign(toxicity=0.1), gold.iloc[:-1], gold.assign(prediction="toxic"),
                gold.assign(id=gold["id"] + 1)):
        report = _grade(JIGSAW, data_dir, bad, tmp_path)
        assert not report.valid_submission and report.reason and not report.grader_error, report.reason
    assert "prediction" in _grade(JIGSAW, data_dir, gold[["id"]], tmp_path).reason

    board = paths.competition_dir(JIGSAW, data_dir) / "leaderboard.csv"
    pd.DataFrame({"teamId": range(1, 101), "score": np.linspace(0.98, 0.5, 100)}).to_csv(board, index=False)
    assert _grade(JIGSAW, data_dir, gold, tmp_path).gold_medal
    again = grading.grade_submission(p.sample_path(), JIGSAW, data_dir)
    assert again.any_medal is False and again.above_median is False


# ---------------------------------------------------------------- fuzz: malformed files never break these graders

FUZZ_PER_COMPETITION = 40
# Every grader here checks the row count and the columns; only google-quest's v1 never reads the ids.
ALWAYS_INVALID = {"drop_column", "rename_column", "drop_rows", "extra_rows", "empty", "header_only",
                  "binary_garbage", "utf16", "latin1_bytes", "truncated_rows", "not_csv"}
ID_MUTATIONS = {"duplicate_id", "bogus_id", "missing_id"}


@pytest.mark.parametrize(("cid", "make_raw"), [
    (MOVIE, make_raw_movie), (PATENT, make_raw_patent), (ESSAY, make_raw_essay), (TWEET, make_raw_tweet),
    (QUEST, make_raw_quest), (JIGSAW, make_raw_jigsaw),
])
def test_fuzzed_submissions_never_break_the_grader(cid, make_raw, tmp_path):
    from lite_support import prepare_from_raw
    from test_fuzz_grading import fuzz_problems

    p = prepare_from_raw(cid, make_raw, tmp_path / "data")
    ids = list(p.spec.submission.id_columns)
    cols = [c for c in pd.read_csv(p.sample_path()).columns if c not in ids]
    must_fail = ALWAYS_INVALID | (set() if cid == QUEST else ID_MUTATIONS)
    problems = fuzz_problems(p, cid, tmp_path, cols, must_fail, FUZZ_PER_COMPETITION)
    assert not problems, problems[:5]


# The synthetic downloads of this module, for tests/synthetic_downloads.py.
MAKERS = {
    MOVIE: make_raw_movie,
    PATENT: make_raw_patent,
    ESSAY: make_raw_essay,
    TWEET: make_raw_tweet,
    QUEST: make_raw_quest,
    JIGSAW: make_raw_jigsaw,
}
