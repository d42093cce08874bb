"""Text competitions beyond Lite (hpc_mle.prepare.text_tasks) on synthetic Kaggle-shaped downloads.

Each `make_*` writes what extracting the competition's Kaggle zip gives (file names, columns, types),
with a few dozen made-up rows. `lite_support.run_checks` prepares it with the real preparer and
checks layout, leaks, grading and medals; the extra asserts pin v1's split and grader rules.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from lite_support import Prepared, check_grading, check_layout, prepare_from_raw, run_checks
from test_fuzz_grading import mutations_for

from hpc_mle import grading
from hpc_mle.prepare import common, text_tasks


def _grade(p: Prepared, frame: pd.DataFrame, tmp: Path, name: str = "sub.csv") -> grading.CompetitionReport:
    path = tmp / name
    frame.to_csv(path, index=False)
    return grading.grade_submission(path, p.spec.id, p.data_dir)


def _fuzz(p: Prepared, tmp: Path, rounds: int = 42) -> None:
    """The fuzz test's mutations of the sample submission (structural, and values where the metric's
    type refuses them): always invalid with a reason, never a grader error."""
    sample = pd.read_csv(p.sample_path())
    cols = list(p.spec.submission.answer_columns)
    for i, (kind, content) in enumerate(mutations_for(p.spec, sample, cols)):
        if i == rounds:
            break
        path = tmp / f"fuzz{i}.csv"
        path.write_bytes(content)
        report = grading.grade_submission(path, p.spec.id, p.data_dir)
        assert not report.valid_submission and report.reason and not report.grader_error, (kind, report.reason)


def _sentences(rng: np.random.Generator, n: int, vocab: list[str]) -> list[str]:
    return [" ".join(rng.choice(vocab, size=int(rng.integers(3, 9)))) for _ in range(n)]


WORDS = ["the", "model", "answer", "is", "correct", "why", "how", "write", "poem", "code", "über", "naïve",
         "a, b", 'say "hi"', "line\nbreak"]

# ---------------------------------------------------------------- lmsys-chatbot-arena


def make_lmsys(raw: Path, rng: np.random.Generator) -> None:
    n = 60
    winners = rng.integers(0, 3, size=n)
    train = pd.DataFrame({
        "id": rng.choice(4_000_000_000, size=n, replace=False),
        "model_a": rng.choice(["gpt-4-1106-preview", "claude-2.1", "llama-2-70b-chat"], size=n),
        "model_b": rng.choice(["gpt-3.5-turbo-0613", "mixtral-8x7b-instruct-v0.1", "vicuna-13b"], size=n),
        "prompt": [json.dumps(_sentences(rng, int(rng.integers(1, 3)), WORDS)) for _ in range(n)],
        "response_a": [json.dumps(_sentences(rng, 1, WORDS)) for _ in range(n)],
        "response_b": [json.dumps(_sentences(rng, 1, WORDS)) if i % 9 else '[null]' for i in range(n)],
        "winner_model_a": (winners == 0).astype(int),
        "winner_model_b": (winners == 1).astype(int),
        "winner_tie": (winners == 2).astype(int),
    })
    train.to_csv(raw / "train.csv", index=False)
    test = train.head(3)[["id", "prompt", "response_a", "response_b"]]
    test.to_csv(raw / "test.csv", index=False)
    pd.DataFrame({"id": test["id"], "winner_model_a": 1 / 3, "winner_model_b": 1 / 3,
                  "winner_tie": 1 / 3}).to_csv(raw / "sample_submission.csv", index=False)


def test_lmsys_chatbot_arena(tmp_path):
    expect = tmp_path / "expect"
    expect.mkdir()
    make_lmsys(expect, np.random.default_rng(0))
    original = pd.read_csv(expect / "train.csv")
    train, test = common.split(original)

    p = run_checks("lmsys-chatbot-arena", make_lmsys, tmp_path,
                   public={"train.csv", "test.csv", "sample_submission.csv"}, private={"answers.csv"},
                   test_rows=6, sample_score=1.09861, perfect_score=0.0)
    answers = p.answers()
    assert list(answers.columns) == list(original.columns)
    assert answers["id"].tolist() == test["id"].tolist()  # the split's row order, as v1
    public_train = pd.read_csv(p.public / "train.csv")
    assert public_train["id"].tolist() == train["id"].tolist()
    assert public_train["prompt"].tolist() == train["prompt"].tolist()  # quotes, commas, newlines survive
    public_test = pd.read_csv(p.public / "test.csv")
    assert list(public_test.columns) == ["id", "prompt", "response_a", "response_b"]
    assert (p.public / "sample_submission.csv").read_text().splitlines()[1].endswith(
        ",0.3333333333333333,0.3333333333333333,0.3333333333333333")

    gold = answers[["id", "winner_model_a", "winner_model_b", "winner_tie"]].astype(
        {c: float for c in ["winner_model_a", "winner_model_b", "winner_tie"]})
    # v1: the row sum rounded to 6 decimals must be 1 (4e-7 off passes, 1e-5 off does not).
    near = gold.copy()
    near.loc[0, "winner_tie"] += 4e-7
    assert _grade(p, near, tmp_path).valid_submission
    off = gold.copy()
    off.loc[0, "winner_tie"] += 1e-5
    assert "sum to 1" in _grade(p, off, tmp_path).reason
    # values outside [0, 1], NaN and text are invalid with a reason
    for value in (-0.1, 1.5, np.nan, "high"):
        bad = gold.astype({"winner_model_a": object})
        bad.loc[1, "winner_model_a"] = value
        report = _grade(p, bad, tmp_path)
        assert not report.valid_submission and report.reason and not report.grader_error
    # extra columns are ignored; the order of rows does not matter (rows are matched by id)
    shuffled = gold.sample(frac=1, random_state=1).assign(note="x")
    assert _grade(p, shuffled, tmp_path).score == 0.0
    # a confident wrong answer on one row of 6: -ln(eps)/6
    wrong = gold.copy()
    wrong.loc[0, ["winner_model_a", "winner_model_b", "winner_tie"]] = (
        1 - gold.loc[0, ["winner_model_a", "winner_model_b", "winner_tie"]]) / 2
    assert _grade(p, wrong, tmp_path).score == round(-float(np.log(np.finfo(float).eps)) / 6, 5)
    _fuzz(p, tmp_path)


# ---------------------------------------------------------------- chaii-hindi-and-tamil-question-answering

HINDI = ["भारत", "की", "राजधानी", "नई", "दिल्ली", "है", "नदी", "गंगा", "सबसे", "लंबी"]
TAMIL = ["தமிழ்", "நாடு", "சென்னை", "தலைநகரம்", "ஆகும்", "கடல்", "மலை"]


def make_chaii(raw: Path, rng: np.random.Generator) -> None:
    rows = []
    for i in range(50):
        language = "hindi" if i % 3 else "tamil"
        vocab = HINDI if language == "hindi" else TAMIL
        context = " ".join(rng.choice(vocab, size=30)) + ", 1947."
        start = int(rng.integers(0, 20))
        answer = "1947" if i % 10 == 0 else " ".join(context.split()[start:start + 2])
        rows.append({"id": f"{int(rng.integers(1 << 35)):09x}", "context": context,
                     "question": " ".join(rng.choice(vocab, size=6)) + "?", "answer_text": answer,
                     "answer_start": context.find(answer), "language": language})
    pd.DataFrame(rows).to_csv(raw / "train.csv", index=False)
    test = pd.DataFrame(rows[:5]).drop(columns=["answer_text", "answer_start"])
    test.to_csv(raw / "test.csv", index=False)
    pd.DataFrame({"id": test["id"], "PredictionString": ""}).to_csv(raw / "sample_submission.csv", index=False)


def test_chaii_question_answering(tmp_path):
    expect = tmp_path / "expect"
    expect.mkdir()
    make_chaii(expect, np.random.default_rng(0))
    original = pd.read_csv(expect / "train.csv")
    train, test = common.split(original)

    p = run_checks("chaii-hindi-and-tamil-question-answering", make_chaii, tmp_path,
                   public={"train.csv", "test.csv", "sample_submission.csv"}, private={"test.csv"},
                   test_rows=5, sample_score=0.0, perfect_score=1.0)
    answers = p.answers()
    assert list(answers.columns) == ["id", "PredictionString"]
    assert answers["id"].tolist() == test["id"].tolist()
    assert answers["PredictionString"].astype(str).tolist() == test["answer_text"].astype(str).tolist()
    assert list(pd.read_csv(p.public / "test.csv").columns) == ["id", "context", "question", "language"]
    assert pd.read_csv(p.public / "train.csv")["id"].tolist() == train["id"].tolist()
    assert set(pd.read_csv(p.sample_path())["PredictionString"]) == {"dummy text"}

    gold = answers.astype({"PredictionString": str})
    # Per row |common| / |union| of lower-cased word sets: one row of five gets half its words.
    half = gold.copy()
    words = half.loc[0, "PredictionString"].split()
    half.loc[0, "PredictionString"] = " ".join([words[0].upper(), "extra"] + words[1:]) if len(words) == 2 \
        else words[0] + " extra"
    expected = (4 + (2 / 3 if len(words) == 2 else 1 / 2)) / 5
    assert _grade(p, half, tmp_path).score == round(expected, 5)
    # An empty prediction scores 0 on its row (not invalid, unlike tweet-sentiment).
    empty = gold.copy()
    empty.loc[1, "PredictionString"] = np.nan
    assert _grade(p, empty, tmp_path).score == 0.8
    # A column pandas reads as numbers made v1's .lower() fail.
    numbers = gold.assign(PredictionString=range(len(gold)))
    report = _grade(p, numbers, tmp_path)
    assert not report.valid_submission and "must hold text" in report.reason and not report.grader_error
    _fuzz(p, tmp_path)


def test_word_jaccard_samples_by_hand_and_as_scikit_learn():
    from hpc_mle.metrics import METRICS, InvalidSubmission

    jaccard = METRICS["word-jaccard-samples"]
    truth = pd.DataFrame({"PredictionString": ["a b c", np.nan, "X y", np.nan]})
    preds = pd.DataFrame({"PredictionString": ["A b", np.nan, "z", "q"]})
    # rows: {a,b}/{a,b,c} = 2/3; both empty = 0; {} of {x,y,z} = 0; {} of {q} = 0
    assert jaccard(truth, preds) == (2 / 3) / 4
    assert METRICS["word-jaccard-samples"].v1_result == "numpy"  # jaccard_score returned np.float64 in 1.5.1
    try:
        jaccard(truth.iloc[[1]], preds.iloc[[1]])
        raise AssertionError("no words at all must be invalid")
    except InvalidSubmission as exc:
        assert "undefined" in str(exc)

    from sklearn.metrics import jaccard_score
    from sklearn.preprocessing import MultiLabelBinarizer

    rng = np.random.default_rng(3)
    vocab = ["a", "B", "b", "c", "दिल्ली", "x"]
    t = [" ".join(rng.choice(vocab, size=int(rng.integers(0, 4)))) for _ in range(200)]
    q = [" ".join(rng.choice(vocab, size=int(rng.integers(0, 4)))) for _ in range(200)]
    t_sets, q_sets = [set(s.lower().split()) for s in t], [set(s.lower().split()) for s in q]
    mlb = MultiLabelBinarizer(classes=sorted(set.union(*t_sets, *q_sets)), sparse_output=True)
    expected = jaccard_score(mlb.fit_transform(t_sets), mlb.transform(q_sets), average="samples", zero_division=0)
    got = jaccard(pd.DataFrame({"P": t}), pd.DataFrame({"P": q}))
    assert got == expected


# ---------------------------------------------------------------- facebook-recruiting-iii-keyword-extraction

TAGS = ["javascript", "c#", "python", "php", "java", "regex", "asp.net-mvc", "c++", "jquery", ".net"]


def make_facebook(raw: Path, rng: np.random.Generator) -> None:
    n = 60
    train = pd.DataFrame({
        "Id": rng.choice(6_000_000, size=n, replace=False) + 1,
        "Title": [f"How do I {' '.join(rng.choice(WORDS, size=4))}?" for _ in range(n)],
        "Body": [f'<p>I tried "{rng.choice(WORDS)}", then</p>\n<pre><code>x = 1, y = 2\n</code></pre>' for _ in range(n)],
        "Tags": [" ".join(rng.choice(TAGS, size=int(rng.integers(1, 4)), replace=False)) for _ in range(n)],
    })
    train.loc[7, "Tags"] = np.nan  # Kaggle's Train.csv has a few questions without tags
    with zipfile.ZipFile(raw / "Train.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("Train.csv", train.to_csv(index=False))
    with zipfile.ZipFile(raw / "Test.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("Test.csv", train.drop(columns=["Tags"]).head(3).to_csv(index=False))
    with zipfile.ZipFile(raw / "SampleSubmission.zip", "w") as zf:
        zf.writestr("SampleSubmission.csv", "Id,Tags\n1,javascript\n")


def _v1_micro_f1(answers: pd.Series, predictions: pd.Series) -> float:
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import MultiLabelBinarizer

    classes = sorted({tag for tags in answers if isinstance(tags, str) for tag in tags.split()})
    mlb = MultiLabelBinarizer(classes=classes, sparse_output=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f1_score(mlb.fit_transform(answers.fillna("").str.split()),
                        mlb.transform(predictions.fillna("").str.split()), average="micro")


def test_facebook_keyword_extraction(tmp_path):
    expect = tmp_path / "expect"
    expect.mkdir()
    make_facebook(expect, np.random.default_rng(0))
    with zipfile.ZipFile(expect / "Train.zip") as zf:
        original = pd.read_csv(io.BytesIO(zf.read("Train.csv")), dtype={"Id": str, "Tags": str})
    train, test = common.split(original)
    sample_tags = pd.Series(["javascript c# python php java"] * len(test))
    expected = grading.round_score(_v1_micro_f1(test["Tags"].reset_index(drop=True), sample_tags))

    p = run_checks("facebook-recruiting-iii-keyword-extraction", make_facebook, tmp_path,
                   public={"train.csv", "test.csv", "sample_submission.csv"}, private={"test.csv"},
                   test_rows=6, sample_score=expected, perfect_score=1.0)
    answers = p.answers()
    assert list(answers.columns) == ["Id", "Title", "Body", "Tags"]
    assert answers["Id"].astype(str).tolist() == test["Id"].tolist()
    assert (p.public / "train.csv").read_bytes() == train.to_csv(index=False).encode()
    sample = pd.read_csv(p.sample_path())
    assert list(sample.columns) == ["Id", "Title", "Body", "Tags"]  # v1's sample keeps the question text

    gold = answers[["Id", "Tags"]]
    # Tags the answers never use cost nothing (v1); repeated tags count once; rows matched by Id.
    spam = gold.assign(Tags=gold["Tags"].fillna("") + " never-a-tag c#").sample(frac=1, random_state=2)
    report = _grade(p, spam, tmp_path)
    assert report.score == grading.round_score(_v1_micro_f1(gold["Tags"], gold["Tags"].fillna("") + " c#"))
    # A Tags column pandas reads as numbers made v1's .str fail: invalid with a reason.
    numbers = gold.assign(Tags=range(len(gold)))
    report = _grade(p, numbers, tmp_path)
    assert not report.valid_submission and "as text" in report.reason and not report.grader_error
    # All-empty predictions are valid and score 0.
    assert _grade(p, gold.assign(Tags=np.nan), tmp_path).score == 0.0
    _fuzz(p, tmp_path)


# ---------------------------------------------------------------- AI4Code


def make_ai4code(raw: Path, rng: np.random.Generator) -> None:
    """40 notebooks in 30 ancestor families (some forked), stored as Kaggle stores them."""
    (raw / "train").mkdir()
    (raw / "test").mkdir()
    ids = [f"{v:014x}" for v in rng.choice(1 << 52, size=44, replace=False)]
    ancestors = [f"{v:08x}" for v in rng.choice(1 << 31, size=30, replace=False)]
    family = [ancestors[i] if i < 30 else ancestors[int(rng.integers(0, 5))] for i in range(40)]
    orders = []
    for k, notebook in enumerate(ids):
        n = int(rng.integers(2, 9))
        cells = [f"{v:08x}" for v in rng.choice(1 << 31, size=n, replace=False)]
        kinds = ["code" if rng.random() < 0.6 else "markdown" for _ in cells]
        code = [c for c, t in zip(cells, kinds, strict=True) if t == "code"]
        markdown = [c for c, t in zip(cells, kinds, strict=True) if t == "markdown"]
        stored = code + list(rng.permutation(markdown))
        kind = dict(zip(cells, kinds, strict=True))
        body = {"cell_type": {c: kind[c] for c in stored},
                "source": {c: ("import numpy as np\nx = 1" if kind[c] == "code" else "## Plot, \"quoted\"")
                           for c in stored}}
        folder = raw / ("train" if k < 40 else "test")
        (folder / f"{notebook}.json").write_text(json.dumps(body))
        if k < 40:
            orders.append({"id": notebook, "cell_order": " ".join(cells)})
    pd.DataFrame(orders).to_csv(raw / "train_orders.csv", index=False)
    pd.DataFrame({"id": ids[:40], "ancestor_id": family,
                  "parent_id": [None if i < 30 else ids[i - 30] for i in range(40)]}).to_csv(
        raw / "train_ancestors.csv", index=False)
    pd.DataFrame({"id": ids[40:], "cell_order": "x"}).to_csv(raw / "sample_submission.csv", index=False)


def _v1_kendall(truth: list[str], preds: list[str]) -> float:
    """The pooled tau as v1 counts it (bisect inversions), for the checks."""
    import bisect

    inversions = pairs = 0
    for t, p in zip(truth, preds, strict=True):
        gt, pred = p.split(), t.split()  # v1 names the submission "ground truth"; tau is symmetric
        ranks = [gt.index(x) for x in pred]
        seen: list[int] = []
        for i, r in enumerate(ranks):
            j = bisect.bisect(seen, r)
            inversions += i - j
            seen.insert(j, r)
        pairs += len(gt) * (len(gt) - 1)
    return 1 - 4 * inversions / pairs


def test_ai4code(tmp_path, monkeypatch):
    monkeypatch.setattr(text_tasks, "AI4CODE_TEST_NOTEBOOKS", 8)
    expect = tmp_path / "expect"
    expect.mkdir()
    make_ai4code(expect, np.random.default_rng(0))
    shuffled = pd.read_csv(expect / "train_ancestors.csv").sample(frac=1, random_state=0).reset_index(drop=True)
    _, test_ids = text_tasks._ancestor_split(shuffled, 8)

    p = run_checks("AI4Code", make_ai4code, tmp_path,
                   public={"train_orders.csv", "train_ancestors.csv", "train", "test", "sample_submission.csv"},
                   private={"test_orders.csv"}, test_rows=8, perfect_score=1.0)
    answers = p.answers()
    orders = pd.read_csv(expect / "train_orders.csv")
    assert answers["id"].tolist() == orders[orders["id"].isin(test_ids)]["id"].tolist()  # train_orders' order
    assert sorted(x.name for x in (p.public / "test").iterdir()) == sorted(f"{i}.json" for i in test_ids)
    assert len(list((p.public / "train").iterdir())) == 32
    public_ancestors = pd.read_csv(p.public / "train_ancestors.csv")
    assert public_ancestors["id"].tolist() == shuffled[~shuffled["id"].isin(test_ids)]["id"].tolist()
    # No family is split: every test notebook's ancestor is absent from the public table.
    test_families = set(shuffled[shuffled["id"].isin(test_ids)]["ancestor_id"])
    assert not test_families & set(public_ancestors["ancestor_id"])

    sample = pd.read_csv(p.sample_path())
    expected = _v1_kendall(answers["cell_order"].tolist(), sample["cell_order"].tolist())
    assert _grade(p, sample, tmp_path).score == round(expected, 5)
    # The reverse of every order scores -1; one row missing a cell id, or with one too many, is invalid.
    reverse = answers.assign(cell_order=[" ".join(reversed(o.split())) for o in answers["cell_order"]])
    assert _grade(p, reverse, tmp_path).score == -1.0
    short = answers.copy()
    short.loc[0, "cell_order"] = " ".join(short.loc[0, "cell_order"].split()[:-1])
    assert "items" in _grade(p, short, tmp_path).reason
    swapped = answers.copy()
    cells = swapped.loc[0, "cell_order"].split()
    swapped.loc[0, "cell_order"] = " ".join(cells[:-1] + [cells[0]])
    report = _grade(p, swapped, tmp_path)
    assert "missing from the predicted order" in report.reason and not report.grader_error
    _fuzz(p, tmp_path)


def test_kendall_tau_by_hand():
    from hpc_mle.metrics import METRICS

    tau = METRICS["kendall-tau"]
    truth = pd.DataFrame({"o": ["a b c", "x y"]})
    # row 1: c a b against a b c = 2 inversions of 3 pairs; row 2: y x = 1 of 1. 1 - 4*3/(6+2) = -0.5
    assert tau(truth, pd.DataFrame({"o": ["c a b", "y x"]})) == -0.5
    assert tau(truth, pd.DataFrame({"o": ["a b c", "x y"]})) == 1.0
    assert tau(truth, pd.DataFrame({"o": ["b a c", "x y"]})) == 1 - 4 * 1 / 8
    assert text_tasks._ancestor_split(pd.DataFrame({"id": list("abcde"), "ancestor_id": [1, 2, 1, 3, 3]}), 3) == (
        ["d", "e"], ["a", "c", "b"])  # families 1 (a, c) and 2 (b) fit in 3; family 3 goes to train


# ---------------------------------------------------------------- billion-word-imputation

BW_LINES = 300


def make_billion_word(raw: Path, rng: np.random.Generator) -> None:
    vocab = ["the", "market", "rose", "by", "3.5", "%", "on", "Tuesday", ",", "analysts", "said", "'s", "\"",
             "Zürich", "--", "n't", "(", ")"]
    lines = []
    for i in range(BW_LINES):
        n = 2 if i % 25 == 0 else int(rng.integers(3, 14))
        lines.append(" ".join(rng.choice(vocab, size=n)) + " .")
    with zipfile.ZipFile(raw / "train_v2.txt.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("train_v2.txt", "\n".join(lines) + "\n")
    with zipfile.ZipFile(raw / "test_v2.txt.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("test_v2.txt", '"id","sentence"\n1,"the market by ."\n')


def _levenshtein(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def test_billion_word_imputation(tmp_path, monkeypatch):
    monkeypatch.setattr(text_tasks, "BILLION_WORD_LINES", BW_LINES)
    monkeypatch.setattr(text_tasks, "BILLION_WORD_TEST_SHARE", 0.1)  # more test rows from a small file
    expect = tmp_path / "expect"
    expect.mkdir()
    make_billion_word(expect, np.random.default_rng(0))
    with zipfile.ZipFile(expect / "train_v2.txt.zip") as zf:
        original = zf.read("train_v2.txt").decode().splitlines(keepends=True)
    # v1's draws: one uniform per line; a randint for the dropped word of each test line.
    rs = np.random.RandomState(0)
    test_lines, train_lines, given = [], [], []
    for line in original:
        if rs.uniform() <= 0.1 and len(line.split()) > 2:
            words = line.strip().split()
            k = rs.randint(1, len(words) - 1)
            test_lines.append(line.strip())
            given.append(" ".join(words[:k] + words[k + 1:]))
        else:
            train_lines.append(line)

    p = run_checks("billion-word-imputation", make_billion_word, tmp_path,
                   public={"train_v2.txt.zip", "test_v2.txt.zip"}, private={"test.csv", "sample_submission.csv"},
                   test_rows=len(test_lines), perfect_score=0.0)
    answers = p.answers()
    assert answers["id"].tolist() == list(range(len(test_lines)))
    assert answers["sentence"].tolist() == test_lines  # quotes doubled in the file, read back as one
    with zipfile.ZipFile(p.public / "train_v2.txt.zip") as zf:
        assert zf.namelist() == ["train_v2.txt"]
        assert zf.read("train_v2.txt").decode() == "".join(train_lines)
    with zipfile.ZipFile(p.public / "test_v2.txt.zip") as zf:
        public_test = zf.read("test_v2.txt")
    assert public_test == p.sample_path().read_bytes()
    assert public_test.startswith(b'"id","sentence"\n0,"')
    sample = pd.read_csv(p.sample_path())
    assert sample["sentence"].tolist() == given
    expected = np.mean([_levenshtein(t, g) for t, g in zip(test_lines, given, strict=True)])
    assert _grade(p, sample, tmp_path).score == grading.round_score(expected)
    assert any('"' in s for s in test_lines) and all(len(s.split()) > 2 for s in test_lines)
    # An empty sentence (NaN) made v1's Levenshtein call fail: invalid with a reason.
    empty = answers.copy()
    empty.loc[0, "sentence"] = np.nan
    report = _grade(p, empty, tmp_path)
    assert not report.valid_submission and "must hold text" in report.reason and not report.grader_error
    _fuzz(p, tmp_path)


def test_billion_word_checks_the_line_count(tmp_path, monkeypatch):
    monkeypatch.setattr(text_tasks, "BILLION_WORD_LINES", BW_LINES + 1)
    make_billion_word(tmp_path, np.random.default_rng(0))
    (tmp_path / "pub").mkdir()
    (tmp_path / "priv").mkdir()
    try:
        text_tasks.billion_word_imputation(tmp_path, tmp_path / "pub", tmp_path / "priv")
        raise AssertionError("a short train_v2.txt must fail")
    except ValueError as exc:
        assert f"has {BW_LINES} lines" in str(exc)


def test_mean_levenshtein_by_hand():
    from hpc_mle.metrics import METRICS

    lev = METRICS["mean-levenshtein-distance"]
    truth = pd.DataFrame({"s": ["kitten", "a b c", "Zürich"]})
    # kitten -> sitting = 3; "a b c" -> "a c" = 2; Zürich -> Zurich = 1 (one code point): mean 2
    assert lev(truth, pd.DataFrame({"s": ["sitting", "a c", "Zurich"]})) == 2.0
    assert _levenshtein("kitten", "sitting") == 3


# ---------------------------------------------------------------- tensorflow2-question-answering

NQ_LINES, NQ_CHUNK = 50, 20


def _nq_record(rng: np.random.Generator, k: int) -> dict:
    tokens = ["<P>"] + list(rng.choice(["The", "river", "flows", "north", "«quoted»", "1,200", "km", "."], size=30)) \
        + ["</P>", "<Table>", "x", "</Table>"]
    candidates = [{"start_token": 0, "end_token": 32, "top_level": True},
                  {"start_token": 32, "end_token": 35, "top_level": True}]
    kind = k % 4
    long = candidates[k % 2] if kind else {"start_token": -1, "end_token": -1, "candidate_index": -1}
    short = [{"start_token": 3, "end_token": 5}] if kind == 1 else []
    if kind == 3:
        short = [{"start_token": 2, "end_token": 3}, {"start_token": 7, "end_token": 9}]
    return {
        "document_text": " ".join(tokens),
        "long_answer_candidates": candidates,
        "question_text": f"where does the river {k} flow",
        "annotations": [{"yes_no_answer": "YES" if kind == 2 else "NONE", "long_answer": long,
                         "short_answers": short, "annotation_id": int(rng.integers(1 << 60))}],
        "document_url": f"https://en.wikipedia.org//w/index.php?title=River_{k}",
        "example_id": int(rng.integers(-(1 << 62), 1 << 62)),
    }


def make_nq(raw: Path, rng: np.random.Generator) -> None:
    with open(raw / "simplified-nq-train.jsonl", "w") as fh:
        for k in range(NQ_LINES):
            fh.write(json.dumps(_nq_record(rng, k)) + "\n")
    with open(raw / "simplified-nq-test.jsonl", "w") as fh:
        record = _nq_record(rng, 0)
        fh.write(json.dumps({k: record[k] for k in text_tasks.TF2QA_TEST_KEYS + ["document_url"]}) + "\n")
    pd.DataFrame({"example_id": ["1_long", "1_short"], "PredictionString": ""}).to_csv(
        raw / "sample_submission.csv", index=False)


def test_tensorflow2_question_answering(tmp_path, monkeypatch):
    monkeypatch.setattr(text_tasks, "TF2QA_CHUNK", NQ_CHUNK)
    expect = tmp_path / "expect"
    expect.mkdir()
    make_nq(expect, np.random.default_rng(0))
    records = [json.loads(line) for line in (expect / "simplified-nq-train.jsonl").read_text().splitlines()]
    test_ids = []  # v1 splits every chunk on its own
    for start in range(0, NQ_LINES, NQ_CHUNK):
        chunk = pd.DataFrame({"example_id": [str(r["example_id"]) for r in records[start:start + NQ_CHUNK]]})
        test_ids += common.split(chunk)[1]["example_id"].tolist()
    by_id = {str(r["example_id"]): r["annotations"][0] for r in records}

    def has_answer(ann: dict, part: str) -> bool:
        if part == "long":
            return ann["long_answer"]["start_token"] != -1
        return bool(ann["short_answers"]) or ann["yes_no_answer"] != "NONE"

    sample_expected = np.mean([not has_answer(by_id[i], part) for i in test_ids for part in ("short", "long")])

    data_dir = tmp_path / "data"
    p = prepare_from_raw("tensorflow2-question-answering", make_nq, data_dir)
    check_layout(p, {"simplified-nq-train.jsonl", "simplified-nq-test.jsonl", "sample_submission.csv"},
                 {"test.jsonl", "gold_submission.csv"})
    answers = [json.loads(line) for line in (p.private / "test.jsonl").read_text().splitlines()]
    assert [a["example_id"] for a in answers] == test_ids  # ids as text, in the split's order
    public_test = [json.loads(line) for line in (p.public / "simplified-nq-test.jsonl").read_text().splitlines()]
    assert [sorted(r) for r in public_test] == [sorted(text_tasks.TF2QA_TEST_KEYS)] * len(test_ids)
    public_train = (p.public / "simplified-nq-train.jsonl").read_text()
    assert not any(f'"example_id":"{i}"' in public_train for i in test_ids)
    assert len(public_train.splitlines()) == NQ_LINES - len(test_ids)
    gold = p.gold()
    assert gold["example_id"].tolist() == [f"{i}{s}" for i in test_ids for s in ("_short", "_long")]
    check_grading(p, tmp_path / "subs", sample_score=grading.round_score(sample_expected), perfect_score=1.0)

    subs = tmp_path / "more"
    subs.mkdir()
    gold = gold.astype({"PredictionString": object})
    # Every short row answered YES: right only where YES is the answer; rows pair by id, not position.
    yes = gold.copy()
    short = yes["example_id"].str.endswith("_short")
    yes.loc[short, "PredictionString"] = "YES"
    right = [by_id[i]["yes_no_answer"] == "YES" for i in test_ids] + \
            [True] * len(test_ids)  # the long rows stay gold
    assert _grade(p, yes.iloc[::-1], subs).score == grading.round_score(np.mean(right))
    for bad, reason in (("3-5", "is not 'start:end'"), ("a:b", "whole numbers"), ("yes", "is not 'start:end'")):
        broken_one = gold.copy()
        broken_one.loc[0, "PredictionString"] = bad
        report = _grade(p, broken_one, subs)
        assert not report.valid_submission and reason in report.reason and not report.grader_error, report.reason
    dup = gold.copy()
    dup.loc[1, "example_id"] = dup.loc[0, "example_id"]
    assert not _grade(p, dup, subs).valid_submission
    assert "rows, expected" in _grade(p, gold.iloc[:-1], subs).reason
    # The corrected grade beside v1's: F1 of the answered rows (Kaggle's metric). The empty sample answers
    # nothing, so it has no true positive: 0 where v1 gave it the share of unanswerable rows.
    assert grading.grade_submission(p.sample_path(), p.spec.id, p.data_dir, mode="corrected").score == 0.0
    tp = sum(by_id[i]["yes_no_answer"] == "YES" for i in test_ids) + sum(has_answer(by_id[i], "long") for i in test_ids)
    fp = len(test_ids) - sum(by_id[i]["yes_no_answer"] == "YES" for i in test_ids)
    fn = 0  # every short row is answered, and the long rows are gold
    corrected = _grade(p, yes, subs)
    assert corrected.corrected_score == grading.round_score(2 * tp / (2 * tp + fp + fn)) != corrected.v1_score
    assert corrected.v1_score == corrected.score == grading.round_score(np.mean(right))
    # v1's validator read the answers with read_csv, which cannot give the records its grader needs.
    try:
        as_csv = pd.read_csv(p.private / "test.jsonl")
        assert "annotations" not in as_csv.columns
    except (pd.errors.ParserError, ValueError):
        pass
    _fuzz(p, subs)


def test_answer_presence_f1_by_hand():
    from hpc_mle.metrics import METRICS

    f1 = METRICS["answer-presence-micro-f1"]
    answers = pd.DataFrame({"example_id": ["7", "8"], "annotations": [
        [{"long_answer": {"start_token": 3, "end_token": 9}, "short_answers": [{"start_token": 4, "end_token": 5}],
          "yes_no_answer": "NONE"}],
        [{"long_answer": {"start_token": -1, "end_token": -1}, "short_answers": [], "yes_no_answer": "NONE"}]]})
    sub = pd.DataFrame({"example_id": ["7_long", "7_short", "8_long", "8_short"],
                        "PredictionString": ["3:9", "1:2", np.nan, "NO"]})
    # rows: right answer (TP), wrong span (FP), nothing to find and nothing said (TN), NO where none (FP)
    assert f1(answers, sub) == 0.5  # v1: 2 of 4 rows agree
    assert f1(answers, sub, answered_f1=True) == 2 * 1 / (2 * 1 + 2 + 0)


# The synthetic downloads of this module, for tests/synthetic_downloads.py, and the preparer constants
# (on the preparer's module) that must shrink to fit them, as the tests above shrink them.
MAKERS = {
    "lmsys-chatbot-arena": make_lmsys,
    "chaii-hindi-and-tamil-question-answering": make_chaii,
    "facebook-recruiting-iii-keyword-extraction": make_facebook,
    "AI4Code": make_ai4code,
    "billion-word-imputation": make_billion_word,
    "tensorflow2-question-answering": make_nq,
}
PREPARER_CONSTANTS = {
    "AI4Code": {"AI4CODE_TEST_NOTEBOOKS": 8},
    "billion-word-imputation": {"BILLION_WORD_LINES": BW_LINES, "BILLION_WORD_TEST_SHARE": 0.1},
    "tensorflow2-question-answering": {"TF2QA_CHUNK": NQ_CHUNK},
}
