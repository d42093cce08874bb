"""The baseline agent: a small AutoML without a language model, to put a floor under every score.

It runs inside the sandbox as `python3 /home/agent/baseline.py` with the standard library, numpy,
pandas, scikit-learn and Pillow only (the hpc_mle package is not in the sandbox). It
1. copies the sample submission to $SUBMISSION_DIR/submission.csv, so a valid file exists from the start;
2. finds the training and test files and works out the task from them (multi-class probabilities, a
   binary probability, label sets, labels or a number) and the metric the description names;
3. builds features by data type (tabular columns, free text, images referenced by the ids) and
   cross-validates a few classic models while its time budget lasts;
4. refits the best (or the blend of the best two) on all training rows, writes the submission, and has
   the validator check it; whenever something fails, the sample submission stays.
What it did goes to $LOGS_DIR/baseline.json; a copy of this script goes to $CODE_DIR.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# One thread per library, set before numpy loads: on a shared node, OpenMP's spinning threads make
# gradient boosting ten times slower, and the budget is for a baseline, not for speed.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge, RidgeCV
from sklearn.metrics import cohen_kappa_score, roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # sample_submission.py sits beside this file
from sample_submission import find_sample  # noqa: E402

TABLE_SUFFIXES = (".csv", ".tsv", ".csv.zip", ".tsv.zip", ".csv.gz", ".tsv.gz", ".parquet")  # as Kaggle ships them
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")
POSITIVE_WORDS = ("1", "true", "yes", "y", "t", "positive", "pos")
LOG_ERROR_WORDS = ("logarithmic error", "rmsle", "log error")
REGRESSION_WORDS = (*LOG_ERROR_WORDS, "squared error", "rmse", "absolute error", "mae")
TEXT_MIN_CHARS = 40          # a string column this long on average is free text, not a category
IMAGE_SIDE = 16              # images become IMAGE_SIDE x IMAGE_SIDE grey levels
MAX_TRAIN_ROWS = 200_000     # above this, train on a random sample: the budget is for a baseline
MAX_IMAGE_ROWS = 30_000
PROBA_EPS = 1e-6             # keeps log losses finite when a model is sure and wrong
SEARCH_SHARE = 0.3           # share of the time limit for cross-validation (half that on short limits)
START = time.monotonic()


def log(message: str) -> None:
    print(f"[baseline {time.monotonic() - START:7.1f}s] {message}", flush=True)


def elapsed() -> float:
    return round(time.monotonic() - START, 2)


# ---------------------------------------------------------------- files


def read_csv(path: str, id_col: str) -> pd.DataFrame:
    """Ids are read as text, so they are matched and written back exactly as the files spell them."""
    header = pd.read_csv(path, nrows=0).columns
    return pd.read_csv(path, dtype={id_col: str} if id_col in header else None, low_memory=False)


def table_stem(path: str) -> str:
    """'train.tsv.zip' -> 'train'; '' for a file that is not a table."""
    name = os.path.basename(path).lower()
    return next((name[: -len(s)] for s in TABLE_SUFFIXES if name.endswith(s)), "")


def table_files(data_dir: str) -> list[str]:
    """The top-level tables of the data folder, sorted."""
    return sorted(p for p in glob.glob(os.path.join(data_dir, "*")) if os.path.isfile(p) and table_stem(p))


def read_table(path: str, id_col: str, nrows: int | None = None) -> pd.DataFrame:
    """A CSV or TSV (plain, zipped or gzipped: pandas unpacks by the name) or a parquet file, ids as text.
    A parquet file can be far larger than memory: `nrows` (or MAX_TRAIN_ROWS) of its first rows are read."""
    if path.lower().endswith(".parquet"):
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        batch = next(parquet.iter_batches(batch_size=nrows or MAX_TRAIN_ROWS), None)
        frame = (batch if batch is not None else parquet.schema_arrow.empty_table()).to_pandas()
        if id_col in frame.columns:
            frame[id_col] = frame[id_col].astype(str)
        return frame
    sep = "\t" if os.path.basename(path).lower().endswith((".tsv", ".tsv.zip", ".tsv.gz")) else ","
    header = pd.read_csv(path, sep=sep, nrows=0).columns
    return pd.read_csv(path, sep=sep, nrows=nrows, dtype={id_col: str} if id_col in header else None,
                       low_memory=False)


def label_text(value: Any) -> str:
    """How a class value is spelled as a column name (1.0 and 1 are the same class)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def class_column(frame: pd.DataFrame, names: list[str], skip: set[str]) -> str | None:
    """The column whose distinct values are the prediction columns' names (a multi-class target)."""
    wanted = set(names)
    for col in frame.columns:
        if col in skip:
            continue
        values = {label_text(v) for v in frame[col].dropna().unique()[: len(wanted) + 1]}
        if values and values <= wanted and len(values) >= max(2, len(wanted) // 2):
            return col
    return None


def find_train(data_dir: str, id_col: str, pred_cols: list[str], sample_path: str) -> str:
    """The train table (train.csv, train.tsv.zip, train_meta.parquet, ...) when it holds the targets, else
    another table that holds them next to the ids."""
    tables = table_files(data_dir)
    paths = [os.path.join(data_dir, "train.csv")]
    paths += [p for p in tables if table_stem(p).startswith("train") and p not in paths]
    paths += [p for p in tables if p not in paths]
    skip = {os.path.abspath(sample_path), os.path.abspath(test_path(data_dir) or sample_path)}
    for path in paths:
        if not os.path.isfile(path) or os.path.abspath(path) in skip:
            continue
        head = read_table(path, id_col, nrows=200)
        if all(c in head.columns for c in pred_cols):
            return path
        if id_col in head.columns and (len(pred_cols) > 1 and class_column(head, pred_cols, {id_col})
                                       or len(head.columns) == 2):
            return path
    if os.path.isfile(paths[0]):
        return paths[0]
    raise FileNotFoundError(f"no training file in {data_dir} holds the columns {pred_cols[:5]}")


def test_path(data_dir: str) -> str | None:
    """test.csv, else the table named test (test.tsv.zip), else one named test_... (test_meta.parquet)."""
    tables = table_files(data_dir)
    exact = [p for p in tables if table_stem(p) == "test"]
    named = [p for p in tables if table_stem(p).startswith("test")]
    plain = os.path.join(data_dir, "test.csv")
    return plain if os.path.isfile(plain) else next(iter(exact + named), None)


def read_test(data_dir: str, id_col: str, sample: pd.DataFrame) -> pd.DataFrame:
    """The test table gives the features of the rows to predict; without it, the sample's ids are all there is."""
    path = test_path(data_dir)
    if path is not None:
        rows = len(sample) or None if path.lower().endswith(".parquet") else None  # parquet: one row per id
        test = read_table(path, id_col, nrows=rows)
        if id_col in test.columns:
            return test
    return sample[[id_col]].copy()


# ---------------------------------------------------------------- the task


@dataclass
class Task:
    """One model to fit: a train column to learn and the submission columns it fills.

    `kind` is multiclass, binary, multilabel, labels or regression. `classes` holds, for multiclass,
    the train values in the submission's column order; for binary, [negative, positive]; for labels,
    the values to predict; for multilabel, the label vocabulary.
    """

    kind: str
    target: str
    columns: list[str]
    metric: str
    higher_is_better: bool
    classes: list[Any] = field(default_factory=list)
    log_target: bool = False     # fit log1p(target): for positive, skewed numbers and log-scale metrics
    non_negative: bool = False   # never predict below zero

    def describe(self) -> dict[str, Any]:
        shown = [label_text(c) for c in self.classes[:50]]
        return {"kind": self.kind, "target": self.target, "columns": self.columns[:50], "metric": self.metric,
                "higher_is_better": self.higher_is_better, "classes": shown, "log_target": self.log_target}


METRICS = {"auc": True, "log-loss": False, "multi-log-loss": False, "accuracy": True, "kappa": True,
           "micro-f1": True, "rmse": False, "rmsle": False, "mae": False}


def mentions(description: str, *phrases: str) -> bool:
    """Whole-word search, so that "sauce" does not mention AUC."""
    return any(re.search(rf"\b{re.escape(p)}\b", description) for p in phrases)


def pick_metric(kind: str, description: str) -> str:
    """The description usually names the metric; each kind has a sensible default when it does not."""
    if kind == "binary":
        return "auc" if mentions(description, "auc", "area under", "roc curve") else "log-loss"
    if kind == "multiclass":
        return "multi-log-loss"
    if kind == "labels":
        return "kappa" if mentions(description, "kappa") else "accuracy"
    if kind == "multilabel":
        return "micro-f1"
    if mentions(description, *LOG_ERROR_WORDS):
        return "rmsle"
    if mentions(description, "absolute error", "mae"):
        return "mae"
    return "rmse"


def looks_like_label_sets(values: pd.Series) -> bool:
    """Space-separated labels that combine freely: more distinct sets than labels, and few labels."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return False
    text = values.dropna().astype(str)
    if len(text) == 0:
        return False
    tokens = text.str.split()
    vocab = Counter(t for labels in tokens for t in labels)
    several = float((tokens.str.len() > 1).mean())
    recurring = float(np.median(list(vocab.values()))) >= 3 if vocab else False
    return several >= 0.02 and len(vocab) <= 2000 and text.nunique() > len(vocab) and recurring


def is_probability_column(sample_col: pd.Series, description: str) -> bool:
    """A sample column of numbers in [0, 1] asks for probabilities when they are fractional, or when
    the description talks of probabilities or of a metric that scores them."""
    numbers = pd.to_numeric(sample_col, errors="coerce")
    if numbers.isna().any() or not ((numbers >= 0) & (numbers <= 1)).all():
        return False
    fractional = bool((numbers != numbers.round()).any())
    return fractional or mentions(description, "probability", "probabilities", "auc", "area under", "log loss",
                                  "logloss", "cross-entropy")


def positive_class(values: list[Any], column: str, description: str) -> Any:
    """Which of two classes (rarest first) the probability is about: the one named like the column,
    a 'yes'-like value, the one the description pairs with 'probability', else the rarer one."""
    by_name = {label_text(v).strip().lower(): v for v in values}
    if column.lower() in by_name:
        return by_name[column.lower()]
    for word in POSITIVE_WORDS:
        if word in by_name:
            return by_name[word]
    sentences = [s for s in re.split(r"[.\n]", description) if "probab" in s]
    named = [v for name, v in by_name.items() if any(re.search(rf"\b{re.escape(name)}\b", s) for s in sentences)]
    if len(named) == 1:
        return named[0]
    return values[0]


def single_task(train: pd.DataFrame, sample_col: pd.Series, column: str, target: str, description: str
                ) -> Task:
    """The task of one prediction column, from the train target's values and the sample's values."""
    y = train[target]
    values = y.dropna()
    counts = values.value_counts()
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)

    def task(kind: str, **extra: Any) -> Task:
        metric = pick_metric(kind, description)
        return Task(kind, target, [column], metric, METRICS[metric], **extra)

    if len(counts) == 2 and is_probability_column(sample_col, description):
        rare_first = list(counts.index[::-1])
        positive = positive_class(rare_first, column, description)
        return task("binary", classes=[v for v in counts.index if v != positive] + [positive])
    if looks_like_label_sets(y) and not is_probability_column(sample_col, description):
        vocab = list(dict.fromkeys(t for labels in values.astype(str).str.split() for t in labels))
        return task("multilabel", classes=vocab)
    sample_values = {label_text(v) for v in sample_col.dropna().unique()}
    train_values = {label_text(v) for v in counts.index}
    integral = numeric and bool((values == values.round()).all())
    scored_as_number = mentions(description, *REGRESSION_WORDS)
    if not numeric or (integral and len(counts) <= 30 and sample_values <= train_values and not scored_as_number):
        return task("labels", classes=sorted(counts.index, key=label_text))
    positive_only = bool((values >= 0).all())
    metric = pick_metric("regression", description)
    log_target = positive_only and (metric == "rmsle" or float(values.skew()) > 1)
    return Task("regression", target, [column], metric, METRICS[metric], log_target=log_target,
                non_negative=positive_only)


def plan_tasks(train: pd.DataFrame, test: pd.DataFrame, sample: pd.DataFrame, description: str) -> list[Task]:
    """One task for a multi-class sample (columns = classes), else one task per prediction column."""
    id_col, pred_cols = sample.columns[0], list(sample.columns[1:])
    if len(pred_cols) > 1:
        target = class_column(train, pred_cols, {id_col, *test.columns})
        if target is not None:
            mapping = {label_text(v): v for v in train[target].dropna().unique()}
            return [Task("multiclass", target, pred_cols, "multi-log-loss", False,
                         classes=[mapping.get(c, c) for c in pred_cols])]
    tasks = []
    for col in pred_cols:
        target = col if col in train.columns else None
        if target is None:
            extra = [c for c in train.columns if c not in test.columns and c != id_col]
            if len(extra) != 1:
                raise ValueError(f"cannot tell which train column gives the submission column {col!r}")
            target = extra[0]
        tasks.append(single_task(train, sample[col], col, target, description))
    return tasks


def encode_target(task: Task, values: pd.Series) -> np.ndarray:
    """The target in the model's terms: class codes, a 0/1 indicator matrix, or (log) numbers."""
    if task.kind == "multilabel":
        index = {label: j for j, label in enumerate(task.classes)}
        matrix = np.zeros((len(values), len(task.classes)), dtype=int)
        for i, labels in enumerate(values.fillna("").astype(str).str.split()):
            for label in labels:
                if label in index:
                    matrix[i, index[label]] = 1
        return matrix
    if task.kind == "regression":
        y = values.astype(float).to_numpy()
        return np.log1p(np.clip(y, 0, None)) if task.log_target else y
    index = {label_text(v): j for j, v in enumerate(task.classes)}
    return values.map(lambda v: index[label_text(v)]).to_numpy(dtype=int)


# ---------------------------------------------------------------- features


def text_columns(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """String columns long enough on average to be free text."""
    found = []
    for col in columns:
        if pd.api.types.is_numeric_dtype(frame[col]) or pd.api.types.is_bool_dtype(frame[col]):
            continue
        if frame[col].dropna().astype(str).str.len().mean() > TEXT_MIN_CHARS:
            found.append(col)
    return found


def split_tabular(frame: pd.DataFrame, columns: list[str]) -> tuple[list[str], list[str]]:
    """Numeric and categorical columns; near-unique strings (names, codes) carry no pattern and are dropped."""
    numeric, categorical = [], []
    for col in columns:
        values = frame[col]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            numeric.append(col)
        elif values.nunique() <= max(50, 0.5 * len(values)):
            categorical.append(col)
    return numeric, categorical


def tabular_frame(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """Numbers as floats, categories as plain strings with missing as its own value."""
    out = pd.DataFrame(index=frame.index)
    for col in numeric:
        out[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    for col in categorical:
        out[col] = frame[col].astype(object).where(frame[col].notna(), "__missing__").astype(str)
    return out


def index_images(data_dir: str) -> dict[str, dict[str, str]]:
    """Image files by folder (up to two levels deep), each as {name without extension: path}."""
    folders: dict[str, dict[str, str]] = {}
    for root, dirs, files in os.walk(data_dir):
        if root[len(data_dir):].count(os.sep) >= 2:
            dirs[:] = []
        for name in files:
            stem, ext = os.path.splitext(name)
            if ext.lower() in IMAGE_EXTENSIONS:
                folder = folders.setdefault(root, {})
                folder[stem] = os.path.join(root, name)
                folder[name] = os.path.join(root, name)
    return folders


def image_paths(ids: list[str], folders: dict[str, dict[str, str]], prefer: str) -> list[str] | None:
    """The folder whose files are named by (nearly) all these ids; one named like `prefer` wins ties."""
    probe = ids[:200]
    best, best_key = None, (0.0, False)
    for folder, files in folders.items():
        hit = sum(i in files for i in probe) / max(1, len(probe))
        key = (hit, prefer in os.path.basename(folder).lower())
        if key > best_key:
            best, best_key = folder, key
    if best is None or best_key[0] < 0.9 or not all(i in folders[best] for i in ids):
        return None
    return [folders[best][i] for i in ids]


def pixel_features(paths: list[str]) -> np.ndarray:
    """Each image as small grey levels plus colour means and spreads: cheap and often enough."""
    rows = np.zeros((len(paths), IMAGE_SIDE * IMAGE_SIDE + 6), dtype=np.float32)
    for i, path in enumerate(paths):
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB").resize((64, 64)), dtype=np.float32) / 255.0
            grey = img.convert("L").resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.BILINEAR)
        rows[i, : IMAGE_SIDE * IMAGE_SIDE] = np.asarray(grey, dtype=np.float32).ravel() / 255.0
        rows[i, -6:-3] = rgb.mean(axis=(0, 1))
        rows[i, -3:] = rgb.std(axis=(0, 1))
    return rows


def text_vectorizer() -> FeatureUnion:
    """TF-IDF of words, word pairs and character n-grams (which catch spelling variants and word
    endings). It is fitted once on train and test text together: that uses no labels, and saves
    refitting it in every fold."""
    words = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=60_000, sublinear_tf=True,
                            strip_accents="unicode", dtype=np.float32)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=3, max_features=100_000,
                            sublinear_tf=True, strip_accents="unicode", dtype=np.float32)
    return FeatureUnion([("words", words), ("chars", chars)])


@dataclass
class Views:
    """The same rows seen three ways; a candidate model uses one of them."""

    tabular: pd.DataFrame | None = None
    text: Any = None                  # a sparse TF-IDF matrix
    pixels: np.ndarray | None = None
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    skewed: list[str] = field(default_factory=list)


def build_views(train: pd.DataFrame, test: pd.DataFrame, id_col: str, folders: dict[str, dict[str, str]]
                ) -> tuple[Views, Views, dict[str, Any]]:
    """Features for train and test by data type: images named by the ids, free text, table columns."""
    columns = [c for c in train.columns if c in test.columns and c != id_col]
    info: dict[str, Any] = {}
    views_train, views_test = Views(), Views()
    if folders:
        train_paths = image_paths(train[id_col].astype(str).tolist(), folders, "train")
        test_paths = image_paths(test[id_col].astype(str).tolist(), folders, "test")
        if train_paths and test_paths:
            views_train.pixels = pixel_features(train_paths)
            views_test.pixels = pixel_features(test_paths)
            info["images"] = {"train_folder": os.path.dirname(train_paths[0]),
                              "test_folder": os.path.dirname(test_paths[0]), "side": IMAGE_SIDE}
    texts = text_columns(train, columns)
    if texts:
        t = time.monotonic()
        documents = pd.concat([train[texts], test[texts]]).fillna("").astype(str).agg(" \n ".join, axis=1)
        matrix = text_vectorizer().fit_transform(documents).tocsr()
        views_train.text, views_test.text = matrix[: len(train)], matrix[len(train):]
        info["text"] = {"columns": texts, "features": matrix.shape[1], "seconds": round(time.monotonic() - t, 2)}
    numeric, categorical = split_tabular(train, [c for c in columns if c not in texts])
    if numeric or categorical:
        views_train.tabular = tabular_frame(train, numeric, categorical)
        views_test.tabular = tabular_frame(test, numeric, categorical)
        skews = views_train.tabular[numeric].skew() if numeric else pd.Series(dtype=float)
        low = views_train.tabular[numeric].min() if numeric else pd.Series(dtype=float)
        skewed = [c for c in numeric if skews[c] > 2 and low[c] >= 0]
        for views in (views_train, views_test):
            views.numeric, views.categorical, views.skewed = numeric, categorical, skewed
        info["tabular"] = {"numeric": len(numeric), "categorical": len(categorical), "log_scaled": len(skewed)}
    return views_train, views_test, info


# ---------------------------------------------------------------- candidate models


@dataclass
class Candidate:
    name: str
    view: str            # which of Views' fields it reads
    estimator: Any


def hgb(task: Task, early_stop: bool, categorical_mask: list[bool] | None = None, light: bool = False) -> Any:
    """Gradient-boosted trees: strong on tables, handle missing values, need no scaling.

    Every round grows one tree per class, so with many classes (or, `light`, many similar features
    such as pixels) fewer, bolder rounds on coarser bins keep the cost within a baseline's budget.
    Early stopping holds out a stratified tenth, which fails when a class has too few rows.
    """
    many = light or (task.kind in ("multiclass", "labels") and len(task.classes) > 10)
    common = dict(learning_rate=0.2 if many else 0.1, max_iter=70 if many else 200,
                  max_leaf_nodes=15 if light else 31, max_bins=32 if light else 255, min_samples_leaf=20,
                  l2_regularization=1.0, early_stopping=early_stop, validation_fraction=0.1, n_iter_no_change=15,
                  random_state=0, categorical_features=categorical_mask)
    if task.kind == "regression":
        return HistGradientBoostingRegressor(**common)
    return HistGradientBoostingClassifier(**common)


def linear(task: Task, strength: float | None = None) -> Any:
    """A regularised linear model: fast, well calibrated, hard to overfit. `strength` is the inverse
    of the penalty; without it, ridge regression picks its own and classifiers take a moderate one."""
    if task.kind == "regression":
        return RidgeCV(alphas=(0.1, 1.0, 10.0, 100.0)) if strength is None else Ridge(alpha=1.0 / strength)
    two_classes = task.kind in ("binary", "multilabel") or len(task.classes) <= 2
    return LogisticRegression(C=0.5 if strength is None else strength, max_iter=2000,
                              solver="liblinear" if two_classes else "lbfgs")


def as_final(task: Task, estimator: Any) -> Any:
    """Multi-label: one binary classifier per label."""
    return OneVsRestClassifier(estimator) if task.kind == "multilabel" else estimator


def tabular_candidates(task: Task, views: Views, early_stop: bool) -> list[Candidate]:
    num, cat, skewed = views.numeric, views.categorical, views.skewed
    assert views.tabular is not None
    small = [c for c in cat if views.tabular[c].nunique() <= 250]  # trees take at most 255 categories
    large = [c for c in cat if c not in small]
    ordinal = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                             encoded_missing_value=np.nan)
    trees_prep = ColumnTransformer([("cat", ordinal, small + large), ("num", "passthrough", num)])
    mask = [True] * len(small) + [False] * (len(large) + len(num))
    trees = Pipeline([("prep", trees_prep), ("model", as_final(task, hgb(task, early_stop, mask)))])
    plain = [c for c in num if c not in skewed]
    parts = [("cat", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=3), cat),
             ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), plain),
             ("log", make_pipeline(SimpleImputer(strategy="median", add_indicator=True),
                                   FunctionTransformer(np.log1p), StandardScaler()), skewed)]
    linear_prep = ColumnTransformer([p for p in parts if p[2]])
    lin = Pipeline([("prep", linear_prep), ("model", as_final(task, linear(task)))])
    return [Candidate("tabular-hgb", "tabular", trees), Candidate("tabular-linear", "tabular", lin)]


def text_candidates(task: Task) -> list[Candidate]:
    """A linear model on the TF-IDF features, at two regularisation strengths."""
    return [Candidate(f"tfidf-linear-C{c:g}", "text", as_final(task, linear(task, c))) for c in (4.0, 1.0, 16.0)]


def pixel_candidates(task: Task, early_stop: bool) -> list[Candidate]:
    lin = make_pipeline(StandardScaler(), as_final(task, linear(task, 0.1)))
    return [Candidate("pixels-linear", "pixels", lin),
            Candidate("pixels-hgb", "pixels", as_final(task, hgb(task, early_stop, light=True)))]


def smallest_class(task: Task, y: np.ndarray) -> int:
    """Rows of the rarest class (or label value); regression has no classes to run short of."""
    if task.kind == "regression":
        return len(y)
    if task.kind == "multilabel":
        positives = y.sum(axis=0)
        return int(min(positives.min(), (len(y) - positives).min()))
    counts = np.bincount(y)
    return int(counts[counts > 0].min())


def candidates_for(task: Task, views: Views, y: np.ndarray) -> list[Candidate]:
    """The main data type's models first: images, then text, then table columns."""
    early_stop = smallest_class(task, y) >= 20
    found: list[Candidate] = []
    if views.pixels is not None:
        found += pixel_candidates(task, early_stop)
    if views.text is not None:
        found += text_candidates(task)
    if views.tabular is not None and (views.text is None or views.tabular.shape[1] >= 3):
        found += tabular_candidates(task, views, early_stop)
    return found


def take(data: Any, rows: np.ndarray) -> Any:
    return data.iloc[rows] if hasattr(data, "iloc") else data[rows]


# ---------------------------------------------------------------- scoring


def expand_proba(classes: np.ndarray, proba: np.ndarray, k: int) -> np.ndarray:
    """Probabilities for all k classes, also those a fold never saw."""
    out = np.zeros((proba.shape[0], k))
    out[:, np.asarray(classes, dtype=int)] = proba
    return out


def model_scores(model: Any, X: Any, task: Task) -> np.ndarray:
    """What a fitted model says, in the model's space (class probabilities, log numbers)."""
    if task.kind == "regression":
        return np.asarray(model.predict(X), dtype=float)
    if task.kind == "multilabel":
        return np.asarray(model.predict_proba(X), dtype=float)
    proba = expand_proba(model.classes_, model.predict_proba(X), 2 if task.kind == "binary" else len(task.classes))
    return proba[:, 1] if task.kind == "binary" else proba


def to_output(scores: np.ndarray, task: Task) -> np.ndarray:
    """Model space to submission space: back from logs, clipped to what the metric accepts."""
    if task.kind == "regression":
        values = np.expm1(scores) if task.log_target else scores
        return np.clip(values, 0, None) if task.non_negative else values
    if task.kind == "binary":
        return np.clip(scores, PROBA_EPS, 1 - PROBA_EPS)
    if task.kind == "multiclass":
        clipped = np.clip(scores, PROBA_EPS, 1)
        return clipped / clipped.sum(axis=1, keepdims=True)
    return scores


def micro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    tp = float((truth & predicted).sum())
    return 0.0 if tp == 0 else 2 * tp / (truth.sum() + predicted.sum())


def best_threshold(truth: np.ndarray, proba: np.ndarray) -> tuple[float, float]:
    """Micro-F1 rewards a lower cut than 0.5; pick it on out-of-fold probabilities."""
    grid = np.arange(0.05, 0.71, 0.025)
    scores = [micro_f1(truth.astype(bool), proba >= t) for t in grid]
    best = int(np.argmax(scores))
    return float(grid[best]), float(scores[best])


def score(task: Task, y: np.ndarray, scores: np.ndarray) -> tuple[float, float | None]:
    """The metric on out-of-fold predictions (and, for label sets, the threshold that achieves it)."""
    out = to_output(scores, task)
    if task.metric == "micro-f1":
        return best_threshold(y, out)[::-1]
    if task.metric == "auc":
        return float(roc_auc_score(y, out)), None
    if task.metric == "log-loss":
        return float(-np.mean(y * np.log(out) + (1 - y) * np.log(1 - out))), None
    if task.metric == "multi-log-loss":
        return float(-np.mean(np.log(out[np.arange(len(y)), y]))), None
    if task.metric in ("accuracy", "kappa"):
        labels = out.argmax(axis=1)
        if task.metric == "kappa":
            return float(cohen_kappa_score(y, labels, weights="quadratic")), None
        return float((labels == y).mean()), None
    truth = np.expm1(y) if task.log_target else y
    if task.metric == "rmsle":
        return float(np.sqrt(np.mean((np.log1p(np.clip(out, 0, None)) - np.log1p(np.clip(truth, 0, None))) ** 2))), None
    if task.metric == "mae":
        return float(np.mean(np.abs(out - truth))), None
    return float(np.sqrt(np.mean((out - truth) ** 2))), None


def better(task: Task, a: float, b: float | None) -> bool:
    return b is None or (a > b if task.higher_is_better else a < b)


# ---------------------------------------------------------------- cross-validation


def make_folds(task: Task, y: np.ndarray, n_splits: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified for classes (when every class has enough rows), plain shuffled folds otherwise."""
    rows = np.arange(len(y))
    if task.kind in ("binary", "multiclass", "labels") and np.bincount(y).min(initial=n_splits) >= n_splits:
        return list(StratifiedKFold(n_splits, shuffle=True, random_state=0).split(rows, y))
    return list(KFold(n_splits, shuffle=True, random_state=0).split(rows))


@dataclass
class Result:
    name: str
    members: list[Candidate]
    oof: np.ndarray | None = None
    covered: np.ndarray | None = None
    score: float | None = None
    threshold: float | None = None
    fit_s: float = 0.0           # mean time of one fold's fit and prediction
    cv_s: float = 0.0
    status: str = "ok"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "cv_score": self.score, "threshold": self.threshold,
                "cv_seconds": round(self.cv_s, 2), "fold_seconds": round(self.fit_s, 2), "status": self.status}


def cross_validate(candidate: Candidate, X: Any, y: np.ndarray, task: Task, folds: list, soft: float,
                   hard: float, first: bool) -> Result:
    """Out-of-fold predictions, stopping early when the rest would not fit in the time left.

    The first candidate may run until the hard deadline and then counts on the folds it finished,
    so there is always a model; the others give way at the soft deadline.
    """
    result = Result(candidate.name, [candidate])
    covered = np.zeros(len(y), dtype=bool)
    times: list[float] = []
    started = time.monotonic()
    for i, (fit_rows, val_rows) in enumerate(folds):
        t = time.monotonic()
        model = clone(candidate.estimator).fit(take(X, fit_rows), y[fit_rows])
        pred = model_scores(model, take(X, val_rows), task)
        if result.oof is None:
            result.oof = np.zeros((len(y), *pred.shape[1:]))
        result.oof[val_rows] = pred
        covered[val_rows] = True
        times.append(time.monotonic() - t)
        per_fold = float(np.mean(times))
        finish = time.monotonic() + per_fold * (len(folds) - i - 1) + 1.5 * per_fold
        if i + 1 < len(folds) and finish > (hard if first else soft):
            result.status = f"stopped after {i + 1} of {len(folds)} folds: out of time"
            if not first:
                result.fit_s, result.cv_s = per_fold, time.monotonic() - started
                return result
            break
    result.fit_s, result.cv_s, result.covered = float(np.mean(times)), time.monotonic() - started, covered
    result.score, result.threshold = score(task, y[covered], result.oof[covered])
    return result


def blend(results: list[Result], y: np.ndarray, task: Task) -> Result | None:
    """The average of the two best models, which often beats both."""
    done = [r for r in results if r.score is not None and r.covered is not None and r.covered.all()]
    if len(done) < 2:
        return None
    top = sorted(done, key=lambda r: r.score if task.higher_is_better else -r.score, reverse=True)[:2]
    mixed = Result(f"blend({top[0].name}+{top[1].name})", top[0].members + top[1].members,
                   oof=(top[0].oof + top[1].oof) / 2, covered=top[0].covered, fit_s=top[0].fit_s + top[1].fit_s)
    mixed.score, mixed.threshold = score(task, y, mixed.oof)
    return mixed


def n_folds(n_rows: int, budget_s: float) -> int:
    """Fewer folds when the data is large or the budget small."""
    if n_rows > 50_000 or budget_s < 30:
        return 3
    return 5 if n_rows <= 20_000 else 4


# ---------------------------------------------------------------- one task, end to end


def solve_task(task: Task, train: pd.DataFrame, views_train: Views, views_test: Views, soft: float,
               hard: float) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Cross-validate the candidates, refit the best on every training row, predict the test rows."""
    keep = np.arange(len(train)) if task.kind == "multilabel" else np.flatnonzero(train[task.target].notna())
    y = encode_target(task, train[task.target].iloc[keep])
    report: dict[str, Any] = {"target": task.target, "kind": task.kind, "metric": task.metric,
                              "train_rows": int(len(keep)), "candidates": []}
    cands = candidates_for(task, views_train, y)
    if not cands:
        raise ValueError("no usable features: no table columns, text or images")
    folds = make_folds(task, y, n_folds(len(keep), soft - time.monotonic()))
    report["folds"] = len(folds)
    results: list[Result] = []
    for cand in cands:
        if results and time.monotonic() >= soft:
            report["candidates"].append({"name": cand.name, "status": "skipped: out of time"})
            continue
        log(f"{task.target}: cross-validating {cand.name} ({len(folds)} folds)")
        try:
            result = cross_validate(cand, take(getattr(views_train, cand.view), keep), y, task, folds, soft, hard,
                                    first=not results)
        except Exception as exc:
            log(f"{cand.name} failed: {type(exc).__name__}: {exc}")
            report["candidates"].append({"name": cand.name, "status": f"failed: {type(exc).__name__}: {exc}"})
            continue
        report["candidates"].append(result.describe())
        log(f"{cand.name}: {task.metric} {result.score} ({result.status}, {result.cv_s:.1f}s)")
        if result.score is not None:
            results.append(result)
    if not results:
        raise RuntimeError("every candidate failed")
    mixed = blend(results, y, task)
    if mixed is not None:
        report["candidates"].append(mixed.describe())
        log(f"{mixed.name}: {task.metric} {mixed.score}")
        results.append(mixed)
    chosen = results[0]
    for r in results[1:]:
        if better(task, r.score, chosen.score) and time.monotonic() + 1.5 * r.fit_s < hard:
            chosen = r
    report["chosen"] = chosen.name
    report["cv_score"] = chosen.score
    t = time.monotonic()
    preds = []
    for member in chosen.members:
        model = clone(member.estimator).fit(take(getattr(views_train, member.view), keep), y)
        preds.append(model_scores(model, getattr(views_test, member.view), task))
    report["refit_seconds"] = round(time.monotonic() - t, 2)
    log(f"{task.target}: refit {chosen.name} on {len(keep)} rows in {report['refit_seconds']}s")
    return submission_columns(task, to_output(np.mean(preds, axis=0), task), chosen.threshold), report


def submission_columns(task: Task, out: np.ndarray, threshold: float | None) -> dict[str, Any]:
    """The task's predictions as submission columns."""
    if task.kind == "multiclass":
        return {col: out[:, j] for j, col in enumerate(task.columns)}
    if task.kind == "labels":
        return {task.columns[0]: np.asarray(task.classes, dtype=object)[out.argmax(axis=1)]}
    if task.kind == "multilabel":
        cut = 0.5 if threshold is None else threshold
        vocab = np.asarray(task.classes, dtype=object)
        return {task.columns[0]: [" ".join(vocab[row >= cut]) for row in out]}
    return {task.columns[0]: out}


# ---------------------------------------------------------------- the agent


def settings() -> dict[str, Any]:
    """The agent contract's environment, with the harness's defaults."""
    env = os.environ
    return {
        "data": env.get("DATA_DIR", "/home/data"),
        "submission": env.get("SUBMISSION_DIR", "/home/submission"),
        "logs": env.get("LOGS_DIR", "/home/logs"),
        "code": env.get("CODE_DIR", "/home/code"),
        "time_limit": float(env.get("TIME_LIMIT_SECS") or 3600),
        "validator": env.get("HPC_MLE_VALIDATE_SCRIPT", "/home/validate_submission.sh"),
    }


def validate(script: str, path: str) -> tuple[bool | None, str]:
    """The validator's verdict: True or False, or None when there is no validator to ask."""
    if not os.path.isfile(script):
        return None, f"no validator at {script}"
    try:
        out = subprocess.run(["sh", script, path], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"validator did not answer: {exc}"
    try:
        reply = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None, f"unreadable validator answer (exit {out.returncode}): {out.stdout[-300:]}{out.stderr[-300:]}"
    if out.returncode == 2:
        return None, str(reply.get("result"))
    return bool(reply.get("valid")) and out.returncode == 0, str(reply.get("result"))


def check_shape(frame: pd.DataFrame, sample: pd.DataFrame) -> None:
    """Our own check before the validator's: same columns, ids and order as the sample, no gaps."""
    if list(frame.columns) != list(sample.columns) or len(frame) != len(sample):
        raise ValueError("submission columns or row count differ from the sample")
    if not (frame.iloc[:, 0].astype(str).to_numpy() == sample.iloc[:, 0].astype(str).to_numpy()).all():
        raise ValueError("submission ids differ from the sample's")
    numeric = frame.select_dtypes("number")
    if numeric.isna().any().any() or not np.isfinite(numeric.to_numpy(dtype=float)).all():
        raise ValueError("submission holds missing or infinite numbers")


def load_data(cfg: dict[str, Any], report: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    """Sample, train and test frames, and the description in lower case."""
    sample_path = cfg["sample"]
    header = pd.read_csv(sample_path, nrows=0).columns
    id_col, pred_cols = header[0], list(header[1:])
    sample = read_csv(sample_path, id_col)
    train_path = find_train(cfg["data"], id_col, pred_cols, sample_path)
    train = read_table(train_path, id_col)
    test = read_test(cfg["data"], id_col, sample)
    description = ""
    for name in ("description.md", "description.txt", "overview.md"):
        path = os.path.join(cfg["data"], name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as fh:
                description = fh.read().lower()
            break
    report["files"] = {"sample": sample_path, "train": train_path, "train_rows": len(train), "test_rows": len(test)}
    return sample, train, test, description


def search_budget(time_limit: float) -> float:
    """Seconds for cross-validation. A short limit gets a smaller share: loading, refitting and
    writing take a fixed time, and the submission must be written well before the limit."""
    return time_limit * (SEARCH_SHARE / 2 if time_limit <= 600 else SEARCH_SHARE)


def solve(cfg: dict[str, Any], report: dict[str, Any]) -> pd.DataFrame:
    """Everything from the files to the finished submission frame."""
    sample, train, test, description = load_data(cfg, report)
    id_col = sample.columns[0]
    tasks = plan_tasks(train, test, sample, description)
    report["tasks"] = [t.describe() for t in tasks]
    log(f"tasks: {[(t.kind, t.target, t.metric) for t in tasks]}")
    train = train.dropna(subset=[id_col]) if id_col in train.columns else train
    folders = index_images(cfg["data"])
    limit = MAX_IMAGE_ROWS if folders else MAX_TRAIN_ROWS
    if len(train) > limit:
        train = train.sample(limit, random_state=0)
        report["subsampled_train_to"] = limit
    train = train.reset_index(drop=True)
    t = time.monotonic()
    views_train, views_test, report["features"] = build_views(train, test, id_col, folders)
    report["timings"]["features"] = round(time.monotonic() - t, 2)
    log(f"features: {report['features']}")
    columns: dict[str, Any] = {id_col: test[id_col].to_numpy()}
    report["models"] = []
    search_s = search_budget(cfg["time_limit"])
    report["search_budget_s"] = round(search_s, 1)
    for i, task in enumerate(tasks):
        share = (i + 1) / len(tasks)
        soft, hard = START + search_s * share, START + 2 * search_s * share
        try:
            task_columns, task_report = solve_task(task, train, views_train, views_test, soft, hard)
        except Exception as exc:  # one target no model could learn keeps the sample's values; the rest go on
            if len(tasks) == 1:
                raise
            log(f"{task.target}: {type(exc).__name__}: {exc}; its columns keep the sample's values")
            report["models"].append({"target": task.target, "metric": task.metric, "chosen": "the sample's values",
                                     "status": f"failed: {type(exc).__name__}: {exc}"})
            continue
        columns.update(task_columns)
        report["models"].append(task_report)
    if len(columns) == 1:
        raise RuntimeError("no target could be modelled")
    predicted = pd.DataFrame(columns).drop_duplicates(subset=[id_col]).set_index(id_col)
    missing = sample[id_col][~sample[id_col].isin(predicted.index)]
    if len(missing):
        raise ValueError(f"{len(missing)} sample ids have no test row, e.g. {missing.iloc[0]!r}")
    out = predicted.reindex(sample[id_col]).reset_index()
    for col in sample.columns[1:]:
        if col not in out.columns:
            out[col] = sample[col].to_numpy()
    out = out[list(sample.columns)]
    if sums_to_one(sample):
        out[list(sample.columns[1:])] = normalise_rows(out[sample.columns[1:]], sample[sample.columns[1:]])
    check_shape(out, sample)
    return out


def sums_to_one(sample: pd.DataFrame) -> bool:
    """Two or more number columns that add to 1 on every sample row ask for a distribution per row."""
    values = sample.iloc[:, 1:].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    return values.shape[1] >= 2 and bool(np.isfinite(values).all()) and bool(np.allclose(values.sum(axis=1), 1))


def normalise_rows(predicted: pd.DataFrame, sample: pd.DataFrame) -> np.ndarray:
    """Per-column predictions (counts, scores) as rows that add to 1; a row with nothing left keeps the sample's."""
    values = np.clip(predicted.to_numpy(dtype=float), 0, None)
    totals = values.sum(axis=1, keepdims=True)
    return np.where(totals > 0, values / np.where(totals > 0, totals, 1), sample.to_numpy(dtype=float))


def save_code(cfg: dict[str, Any], report: dict[str, Any]) -> None:
    """The code that made the submission, and which model it chose, for whoever reads the attempt."""
    os.makedirs(cfg["code"], exist_ok=True)
    for source in (__file__, sys.modules[find_sample.__module__].__file__):
        shutil.copyfile(os.path.abspath(source), os.path.join(cfg["code"], os.path.basename(source)))
    chosen = [f"{m['target']}: {m.get('chosen')} (cv {m['metric']} {m.get('cv_score')})"
              for m in report.get("models", [])]
    with open(os.path.join(cfg["code"], "MODEL.txt"), "w") as fh:
        fh.write("Made by baseline.py (this folder). Chosen models:\n" + "\n".join(chosen or ["none"]) + "\n")


def main() -> int:
    global START
    START = time.monotonic()  # the budget counts from here, also when this file is imported first
    warnings.simplefilter("ignore")  # convergence and constant-label notices would bury the log
    cfg = settings()
    report: dict[str, Any] = {"agent": "baseline", "competition": os.environ.get("COMPETITION_ID"),
                              "time_limit_secs": cfg["time_limit"], "timings": {}, "outcome": None}
    for folder in (cfg["submission"], cfg["logs"]):
        os.makedirs(folder, exist_ok=True)
    final = os.path.join(cfg["submission"], "submission.csv")
    sample_path = cfg["sample"] = find_sample(cfg["data"])
    if sample_path is None:
        report["outcome"] = "no sample submission found"
        log(report["outcome"])
    else:
        shutil.copyfile(sample_path, final)
        report["timings"]["sample_copied"] = elapsed()
        candidate = os.path.join(cfg["submission"], "submission.candidate.csv")
        try:
            frame = solve(cfg, report)
            frame.to_csv(candidate, index=False)
            report["timings"]["written"] = elapsed()
            valid, message = validate(cfg["validator"], candidate)
            report["validator"] = {"valid": valid, "message": message}
            log(f"validator: {valid} {message}")
            if valid is False:
                report["outcome"] = "validator rejected the submission: kept the sample submission"
            else:
                os.replace(candidate, final)
                report["outcome"] = "submitted the model's predictions"
        except Exception:
            report["error"] = traceback.format_exc()
            report["outcome"] = "failed: kept the sample submission"
            log(report["error"])
        if report["outcome"] != "submitted the model's predictions":
            shutil.copyfile(sample_path, final)
        if os.path.exists(candidate):
            os.remove(candidate)
    report["timings"]["total"] = elapsed()
    log(f"{report['outcome']} after {report['timings']['total']}s")
    try:
        save_code(cfg, report)
    except OSError as exc:
        log(f"could not save the code: {exc}")
    with open(os.path.join(cfg["logs"], "baseline.json"), "w") as fh:
        json.dump(report, fh, indent=2, default=str)
    return 0 if sample_path else 1


if __name__ == "__main__":
    sys.exit(main())
