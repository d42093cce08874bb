"""Reference leaderboards for the `mini` benchmark, built from a panel of ordinary solutions.

The mini data sets were never Kaggle competitions, so there are no human teams to rank an agent
against. Instead, each competition gets 150+ reference solutions of the kind people submit. The
long tail is ordinary work: linear models, forests, boosting, neighbours, naive Bayes, constant
baselines, with different hyperparameters, feature subsets and fractions of the training data. The
top is what a Kaggle top-10 does on a CPU: engineered features, tuned boosting and extra trees,
tf-idf word and character models with tuned C, SVMs on pixels and gradient-orientation features,
and plain averages of pairs and triples of those ("tuned ..." and "blend(...)" entries). The strong
group is sized so that a simple AutoML (the `baseline` agent) lands between the median and bronze:
a medal needs real work. Medal thresholds follow with the usual rules in `hpc_mle.medals`.

Every solution sees only `public/train.csv` and `public/test.csv` (for `mini-digits` with the PNG
pixels added as columns `p0..p63`), is seeded, single-threaded and small, and is scored exactly as
an agent's file would be (written to CSV text, read back, `score_frame`, `round_score`), so the board
rebuilds bit for bit on the same library versions.

    python -m hpc_mle.prepare.panel [IDS...] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Lasso, LinearRegression, LogisticRegression, Ridge, SGDClassifier
from sklearn.model_selection import train_test_split
from sklearn.multioutput import MultiOutputClassifier
from sklearn.naive_bayes import BernoulliNB, ComplementNB, GaussianNB, MultinomialNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor, NearestCentroid
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from threadpoolctl import threadpool_limits

from hpc_mle import competitions, grading, medals, paths
from hpc_mle.prepare import prepare
from hpc_mle.prepare.mini import MOVIE_GENRES

SEED = 0
FRACTIONS = (0.05, 0.1, 0.25, 0.5)
SUBMISSION_DATE = "2025-01-01 00:00:00"
LEADERBOARD_COLUMNS = ["scoreNullable", "teamId", "hasTeamName", "submissionDate", "score", "hasScore", "solution"]
PIXELS = [f"p{i}" for i in range(64)]

Predict = Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]


@dataclass(frozen=True)
class Solution:
    """One reference entry: a readable description and a function from (train, test) to a submission."""

    name: str
    predict: Predict


@dataclass(frozen=True)
class Model:
    """An estimator recipe; `make` returns a fresh, seeded, single-threaded estimator each call."""

    label: str
    make: Callable[[], Any]
    scale: bool = False
    multi_output: bool = False


@dataclass(frozen=True)
class Features:
    """A feature-set recipe; `make` returns a fresh transformer from the raw frame to a matrix."""

    label: str
    make: Callable[[], Any]


# ---------------------------------------------------------------- estimators


def _classifier(kind: str, p: dict[str, Any]) -> Any:
    """Classifiers by short name; every random one gets SEED, none runs threads of its own."""
    builders: dict[str, Callable[[], Any]] = {
        "logreg": lambda: LogisticRegression(C=p.get("C", 1.0), max_iter=3000),
        "rf": lambda: RandomForestClassifier(n_estimators=p.get("trees", 100), max_depth=p.get("depth"),
                                             min_samples_leaf=p.get("leaf", 1), random_state=SEED, n_jobs=1),
        "et": lambda: ExtraTreesClassifier(n_estimators=p.get("trees", 100), max_depth=p.get("depth"),
                                           min_samples_leaf=p.get("leaf", 1), max_features=p.get("feat", "sqrt"),
                                           random_state=p.get("seed", SEED), n_jobs=1),
        "hgb": lambda: HistGradientBoostingClassifier(learning_rate=p.get("lr", 0.1), max_depth=p.get("depth"),
                                                      max_iter=p.get("iters", 100), early_stopping=False,
                                                      max_leaf_nodes=p.get("leaves", 31),
                                                      min_samples_leaf=p.get("leaf", 20),
                                                      l2_regularization=p.get("l2", 0.0), random_state=SEED),
        "knn": lambda: KNeighborsClassifier(n_neighbors=p.get("k", 5), weights=p.get("weights", "uniform"),
                                            n_jobs=1),
        "tree": lambda: DecisionTreeClassifier(max_depth=p.get("depth"), min_samples_leaf=p.get("leaf", 1),
                                               random_state=SEED),
        "gnb": GaussianNB,
        "lda": LinearDiscriminantAnalysis,
        "svc": lambda: SVC(C=p.get("C", 1.0), kernel=p.get("kernel", "rbf"), gamma="scale",
                           probability=p.get("prob", False), random_state=SEED),
        "centroid": NearestCentroid,
        "mlp": lambda: MLPClassifier(hidden_layer_sizes=(p.get("hidden", 32),), alpha=p.get("alpha", 1e-4),
                                     max_iter=p.get("iters", 200), random_state=SEED),
        "sgd": lambda: SGDClassifier(loss=p.get("loss", "log_loss"), alpha=p.get("alpha", 1e-4),
                                     random_state=SEED),
        "mnb": lambda: MultinomialNB(alpha=p.get("alpha", 1.0)),
        "cnb": lambda: ComplementNB(alpha=p.get("alpha", 1.0)),
        "bnb": lambda: BernoulliNB(alpha=p.get("alpha", 1.0)),
    }
    return builders[kind]()


def _regressor(kind: str, p: dict[str, Any]) -> Any:
    """Regressors by short name, seeded and single-threaded like the classifiers."""
    builders: dict[str, Callable[[], Any]] = {
        "ridge": lambda: Ridge(alpha=p.get("alpha", 1.0)),
        "lasso": lambda: Lasso(alpha=p.get("alpha", 0.001), max_iter=20000),
        "ols": LinearRegression,
        "rf": lambda: RandomForestRegressor(n_estimators=p.get("trees", 100), max_depth=p.get("depth"),
                                            min_samples_leaf=p.get("leaf", 1), max_features=p.get("feat", 1.0),
                                            random_state=SEED, n_jobs=1),
        "et": lambda: ExtraTreesRegressor(n_estimators=p.get("trees", 100), max_depth=p.get("depth"),
                                          min_samples_leaf=p.get("leaf", 1), max_features=p.get("feat", 1.0),
                                          random_state=SEED, n_jobs=1),
        "hgb": lambda: HistGradientBoostingRegressor(learning_rate=p.get("lr", 0.1), max_depth=p.get("depth"),
                                                     max_iter=p.get("iters", 100), early_stopping=False,
                                                     max_leaf_nodes=p.get("leaves", 31),
                                                     min_samples_leaf=p.get("leaf", 20),
                                                     l2_regularization=p.get("l2", 0.0), random_state=SEED),
        "knn": lambda: KNeighborsRegressor(n_neighbors=p.get("k", 5), weights=p.get("weights", "uniform"),
                                           n_jobs=1),
        "tree": lambda: DecisionTreeRegressor(max_depth=p.get("depth"), min_samples_leaf=p.get("leaf", 1),
                                              random_state=SEED),
    }
    return builders[kind]()


SCALED = {"logreg", "knn", "svc", "mlp", "sgd", "ridge", "lasso", "ols", "centroid", "lda"}
NATIVE_MULTI_OUTPUT = {"rf", "et", "tree", "knn"}


def _label(kind: str, params: dict[str, Any]) -> str:
    inner = ",".join(f"{k}={v}" for k, v in params.items())
    return f"{kind}({inner})"


def clf(kind: str, scale: bool | None = None, **params: Any) -> Model:
    """A classifier recipe named like `hgb(lr=0.1,depth=3)`."""
    return Model(_label(kind, params), partial(_classifier, kind, params),
                 scale=kind in SCALED if scale is None else scale, multi_output=kind in NATIVE_MULTI_OUTPUT)


def reg(kind: str, **params: Any) -> Model:
    """A regressor recipe named like `ridge(alpha=10)`."""
    return Model(_label(kind, params), partial(_regressor, kind, params), scale=kind in SCALED)


def pipeline(features: Features, model: Model) -> Pipeline:
    """Features, then scaling for scale-sensitive models (not for text: tf-idf rows are already normalised)."""
    steps: list[Any] = [features.make()]
    if model.scale and not features.label.startswith("text"):
        steps.append(StandardScaler())
    steps.append(model.make())
    return make_pipeline(*steps)


# ---------------------------------------------------------------- features


def _tabular(numeric: Sequence[str], categorical: Sequence[str]) -> ColumnTransformer:
    """Median-imputed numbers and one-hot categories (unseen ones ignored) as one dense matrix."""
    parts: list[tuple[str, Any, list[str]]] = []
    if numeric:
        parts.append(("num", SimpleImputer(strategy="median"), list(numeric)))
    if categorical:
        cat = make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"),
                            OneHotEncoder(handle_unknown="ignore", sparse_output=False))
        parts.append(("cat", cat, list(categorical)))
    return ColumnTransformer(parts, sparse_threshold=0.0)


def tabular(label: str, numeric: Sequence[str], categorical: Sequence[str] = ()) -> Features:
    return Features(label, partial(_tabular, tuple(numeric), tuple(categorical)))


def columns_of(frame: pd.DataFrame, exclude: Sequence[str]) -> tuple[list[str], list[str]]:
    """(numeric, categorical) feature columns of a frame, in file order."""
    cols = [c for c in frame.columns if c not in exclude]
    numeric = [c for c in cols if pd.api.types.is_numeric_dtype(frame[c])]
    return numeric, [c for c in cols if c not in numeric]


# ---------------------------------------------------------------- shared prediction helpers


def subsample(train: pd.DataFrame, frac: float, stratify: str | None = None) -> pd.DataFrame:
    """A fixed part of the training rows (stratified where the target is a class)."""
    if frac >= 1:
        return train
    part, _ = train_test_split(train, train_size=frac, random_state=SEED,
                               stratify=train[stratify] if stratify else None)
    return part


def name_of(model: str, frac: float, features: str) -> str:
    return f"{model} frac={frac:g} features={features}"


def binary_predict(features: Features, model: Model, frac: float, target: str,
                   train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """P(target = 1) for each test row."""
    part = subsample(train, frac, target)
    pipe = pipeline(features, model).fit(part.drop(columns=target), part[target])
    proba = pipe.predict_proba(test)
    positive = list(pipe.classes_).index(1)
    return pd.DataFrame({"id": test["id"], target: proba[:, positive]})


def constant_predict(column: str, value_of: Callable[[pd.Series], Any],
                     train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """The same value for every test row, computed from the training target."""
    return pd.DataFrame({"id": test["id"], column: value_of(train[column])})


def binary_solutions(target: str, feature_sets: Sequence[Features], models: Sequence[Model],
                     frac_models: Sequence[Model], frac_features: Features) -> list[Solution]:
    """Every model on every feature set with all the data, plus some models on less data."""
    out = [Solution(name_of(m.label, 1, f.label), partial(binary_predict, f, m, 1.0, target))
           for f in feature_sets for m in models]
    out += [Solution(name_of(m.label, frac, frac_features.label),
                     partial(binary_predict, frac_features, m, frac, target))
            for m in frac_models for frac in FRACTIONS]
    out.append(Solution("constant(p=0.5)", partial(constant_predict, target, lambda y: 0.5)))
    out.append(Solution("constant(p=train rate)", partial(constant_predict, target, lambda y: float(y.mean()))))
    return out


# ---------------------------------------------------------------- mini-churn


CHURN_USAGE = [f"total_{part}_{what}" for part in ("day", "eve", "night", "intl")
               for what in ("minutes", "calls", "charge")]


def column_score(column: str, sign: int, train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """A one-feature rule: the column scaled to [0, 1] by the training range (reversed if sign < 0)."""
    lo, hi = float(train[column].min()), float(train[column].max())
    p = ((test[column] - lo) / (hi - lo)).clip(0, 1)
    return pd.DataFrame({"id": test["id"], "churn": p if sign > 0 else 1 - p})


def churn_solutions() -> list[Solution]:
    numeric = ["account_length", "number_vmail_messages", *CHURN_USAGE, "number_customer_service_calls"]
    categorical = ["state", "area_code", "international_plan", "voice_mail_plan"]
    everything = tabular("all", numeric, categorical)
    feature_sets = [
        everything,
        tabular("no-state", numeric, categorical[1:]),
        tabular("numeric", numeric),
        tabular("usage", CHURN_USAGE),
    ]
    models = [
        clf("logreg", C=1.0), clf("hgb", lr=0.1, depth=3), clf("rf", trees=100, depth=8),
        clf("logreg", C=0.01), clf("logreg", C=0.1), clf("logreg", C=10.0),
        clf("rf", trees=100), clf("rf", trees=50, depth=4), clf("et", trees=100), clf("et", trees=100, depth=8),
        clf("hgb", lr=0.05, iters=200), clf("hgb", lr=0.3, depth=2), clf("hgb", lr=0.1, iters=50),
        clf("knn", k=5), clf("knn", k=25), clf("knn", k=75), clf("gnb"),
        clf("tree", depth=3), clf("tree", depth=6), clf("tree", depth=12),
    ]
    frac_models = [clf("logreg", C=1.0), clf("rf", trees=100), clf("hgb", lr=0.1, depth=3),
                   clf("knn", k=25), clf("gnb"), clf("tree", depth=6)]
    out = binary_solutions("churn", feature_sets, models, frac_models, everything)
    rules = [("number_customer_service_calls", 1), ("total_day_minutes", 1), ("total_day_charge", 1),
             ("total_intl_minutes", 1), ("number_vmail_messages", -1), ("total_eve_minutes", 1),
             ("account_length", 1), ("total_night_calls", -1)]
    out += [Solution(f"rule({'+' if s > 0 else '-'}{c})", partial(column_score, c, s)) for c, s in rules]
    return out


def churn_engineered(frame: pd.DataFrame) -> pd.DataFrame:
    """What churn notebooks add: totals over the day parts, a 4+ service calls flag, plan flags and the
    international plan's interactions (few or long international calls)."""
    f = frame.copy()
    for what in ("charge", "minutes", "calls"):
        f[f"all_{what}"] = f[[c for c in CHURN_USAGE if c.endswith(what)]].sum(axis=1)
    f["service_4plus"] = (f["number_customer_service_calls"] >= 4).astype(float)
    f["intl_plan"] = (f["international_plan"] == "yes").astype(float)
    f["vmail_plan"] = (f["voice_mail_plan"] == "yes").astype(float)
    f["intl_plan_minutes"] = f["intl_plan"] * f["total_intl_minutes"]
    f["intl_plan_few_calls"] = f["intl_plan"] * (f["total_intl_calls"] < 3)
    f["service_x_charge"] = f["number_customer_service_calls"] * f["all_charge"]
    return f


CHURN_ENGINEERED = ["all_charge", "all_minutes", "all_calls", "service_4plus", "intl_plan", "vmail_plan",
                    "intl_plan_minutes", "intl_plan_few_calls", "service_x_charge"]


def _churn_engineered_features() -> Pipeline:
    numeric = ["account_length", "number_vmail_messages", *CHURN_USAGE, "number_customer_service_calls",
               *CHURN_ENGINEERED]
    return make_pipeline(FunctionTransformer(churn_engineered),
                         _tabular(numeric, ["area_code", "international_plan", "voice_mail_plan"]))


def churn_strong() -> list[Solution]:
    engineered = Features("engineered", _churn_engineered_features)
    models = [clf("et", trees=500, leaf=leaf, seed=seed) for leaf in (1, 2, 3) for seed in (0, 1, 2)]
    models += [clf("et", trees=300, leaf=2, feat=0.5, seed=seed) for seed in (0, 1)]
    models += [clf("hgb", lr=0.1, leaves=15, leaf=20, iters=150), clf("hgb", lr=0.1, leaves=31, leaf=40, iters=150),
               clf("hgb", lr=0.05, leaves=15, leaf=40, l2=1.0, iters=300)]
    return strong_solutions(binary_bases([engineered], models, "churn"), partial(finish_binary, "churn"))


# ---------------------------------------------------------------- mini-leaf-species


def multiclass_predict(features: Features, model: Model, frac: float, target: str, smooth: float,
                       train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """One probability column per class (sorted), mixed with `smooth` of the uniform distribution."""
    classes = sorted(train[target].unique())
    part = subsample(train, frac, target)
    pipe = pipeline(features, model).fit(part.drop(columns=target), part[target])
    proba = pipe.predict_proba(test)
    full = np.zeros((len(test), len(classes)))
    for j, c in enumerate(pipe.classes_):
        full[:, classes.index(c)] = proba[:, j]
    full = full / full.sum(axis=1, keepdims=True)
    full = (1 - smooth) * full + smooth / len(classes)
    return pd.concat([test[["id"]].reset_index(drop=True), pd.DataFrame(full, columns=classes)], axis=1)


def class_rates_predict(target: str, uniform: bool, train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """The uniform distribution, or the training class frequencies, for every row."""
    rates = train[target].value_counts(normalize=True).sort_index()
    values = np.full(len(rates), 1 / len(rates)) if uniform else rates.to_numpy()
    frame = pd.DataFrame(np.tile(values, (len(test), 1)), columns=list(rates.index))
    return pd.concat([test[["id"]].reset_index(drop=True), frame], axis=1)


LEAF_CATEGORICAL = ["apex", "base", "shape", "denate_edge", "lobed_edge", "smooth_edge", "toothed_edge",
                    "undulate_edge"]
LEAF_COLOUR = ["contrast", "correlation_texture", "inverse_difference_moments", "entropy", "mean_red_val",
               "mean_green_val", "mean_blue_val", "std_red_val", "std_green_val", "std_blue_val", "correlation"]
LEAF_SHAPE = [f"{kind}_{where}" for where in ("polar", "contour")
              for kind in ("outlying", "skewed", "clumpy", "sparse", "striated", "convex", "skinny", "stringy",
                           "monotonic")]
LEAF_GEOMETRY = ["num_max_ponits", "num_min_points", "diameter", "area", "perimeter", "physiological_length",
                 "physiological_width", "aspect_ratio", "rectangularity", "circularity", "compactness",
                 "narrow_factor", "perimeter_ratio_diameter", "perimeter_ratio_length", "perimeter_ratio_lw",
                 "num_convex_points", "perimeter_convexity", "area_convexity", "area_ratio_convexity",
                 "equivalent_diameter", "eccentriciry"]


def leaf_solutions() -> list[Solution]:
    numeric = LEAF_SHAPE + LEAF_GEOMETRY + LEAF_COLOUR
    everything = tabular("all", numeric, LEAF_CATEGORICAL)
    feature_sets = [everything, tabular("numeric", numeric), tabular("shape", LEAF_SHAPE + LEAF_GEOMETRY),
                    tabular("colour-texture", LEAF_COLOUR), tabular("traits", [], LEAF_CATEGORICAL)]
    smooth_models = [  # overconfident models, submitted raw and with a little uniform mass mixed in
        clf("rf", trees=100), clf("et", trees=100), clf("knn", k=10, weights="distance"), clf("gnb"),
        clf("tree", depth=10),
    ]
    calibrated = [
        clf("logreg", C=1.0), clf("logreg", C=0.1), clf("logreg", C=10.0), clf("logreg", C=100.0),
        clf("lda"), clf("knn", k=25), clf("rf", trees=100, depth=8, leaf=3),
        clf("et", trees=100, depth=10, leaf=3),
    ]

    def entry(f: Features, m: Model, frac: float, smooth: float) -> Solution:
        suffix = f" smooth={smooth:g}" if smooth else ""
        return Solution(name_of(m.label, frac, f.label) + suffix,
                        partial(multiclass_predict, f, m, frac, "species", smooth))

    out = [entry(f, m, 1.0, 0.0) for m in calibrated for f in feature_sets]
    out += [entry(f, m, 1.0, s) for m in smooth_models for f in feature_sets[:3] for s in (0.0, 0.02)]
    out += [entry(f, m, 1.0, 0.02) for m in (clf("knn", k=3, weights="distance"), clf("knn", k=5, weights="distance"))
            for f in feature_sets[:2]]
    fractions = ((clf("logreg", C=10.0), 0.0), (clf("logreg", C=1.0), 0.0), (clf("rf", trees=100), 0.02),
                 (clf("et", trees=100), 0.02), (clf("lda"), 0.0), (clf("knn", k=10, weights="distance"), 0.02))
    out += [entry(everything, m, frac, s) for m, s in fractions for frac in FRACTIONS]
    out += [entry(f, clf("mlp", hidden=64, iters=300), 1.0, 0.0) for f in feature_sets[:2]]
    out.append(entry(everything, clf("hgb", lr=0.1, depth=3, iters=40), 1.0, 0.0))
    out.append(Solution("constant(uniform)", partial(class_rates_predict, "species", True)))
    out.append(Solution("constant(class rates)", partial(class_rates_predict, "species", False)))
    return out


# ---------------------------------------------------------------- mini-ames-housing


def regression_predict(features: Features, model: Model, frac: float, target: str, log_target: bool,
                       train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """Predicted target, fitted on log1p(target) when asked; never below the smallest training value."""
    part = subsample(train, frac)
    y = np.log1p(part[target]) if log_target else part[target]
    pred = pipeline(features, model).fit(part.drop(columns=target), y).predict(test)
    pred = np.expm1(pred) if log_target else pred
    return pd.DataFrame({"id": test["id"], target: np.clip(pred, float(train[target].min()), None)})


def group_median_predict(target: str, group: str, train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """The training median of the test row's group (overall median for unseen groups)."""
    medians = train.groupby(group)[target].median()
    pred = test[group].map(medians).fillna(train[target].median()).astype(float)
    return pd.DataFrame({"id": test["id"], target: pred})


AMES_CATEGORICAL = [
    "MS_SubClass", "MS_Zoning", "Street", "Alley", "Lot_Shape", "Land_Contour", "Utilities", "Lot_Config",
    "Land_Slope", "Neighborhood", "Condition_1", "Condition_2", "Bldg_Type", "House_Style", "Overall_Cond",
    "Roof_Style", "Roof_Matl", "Exterior_1st", "Exterior_2nd", "Mas_Vnr_Type", "Exter_Cond", "Foundation",
    "Bsmt_Cond", "Bsmt_Exposure", "BsmtFin_Type_1", "BsmtFin_Type_2", "Heating", "Heating_QC", "Central_Air",
    "Electrical", "Functional", "Garage_Type", "Garage_Finish", "Garage_Cond", "Paved_Drive", "Pool_QC",
    "Fence", "Misc_Feature", "Sale_Type", "Sale_Condition",
]
AMES_NUMERIC = [
    "Lot_Frontage", "Lot_Area", "Year_Built", "Year_Remod_Add", "Mas_Vnr_Area", "BsmtFin_SF_1", "BsmtFin_SF_2",
    "Bsmt_Unf_SF", "Total_Bsmt_SF", "First_Flr_SF", "Second_Flr_SF", "Gr_Liv_Area", "Bsmt_Full_Bath",
    "Bsmt_Half_Bath", "Full_Bath", "Half_Bath", "Bedroom_AbvGr", "Kitchen_AbvGr", "TotRms_AbvGrd", "Fireplaces",
    "Garage_Cars", "Garage_Area", "Wood_Deck_SF", "Open_Porch_SF", "Enclosed_Porch", "Three_season_porch",
    "Screen_Porch", "Pool_Area", "Misc_Val", "Mo_Sold", "Year_Sold", "Longitude", "Latitude",
]
AMES_SIZE = ["Gr_Liv_Area", "Lot_Area", "Total_Bsmt_SF", "First_Flr_SF", "Garage_Area", "TotRms_AbvGrd"]
AMES_KEY = AMES_SIZE + ["Year_Built", "Year_Remod_Add", "Garage_Cars", "Full_Bath", "Fireplaces"]


def ames_solutions() -> list[Solution]:
    numeric, categorical = AMES_NUMERIC, AMES_CATEGORICAL
    everything = tabular("all", numeric, categorical)
    feature_sets = [everything, tabular("numeric", numeric), tabular("key", AMES_KEY, ["Neighborhood"]),
                    tabular("size", AMES_SIZE)]
    forest = {"trees": 100, "feat": 0.3}
    models = [
        (reg("ridge", alpha=10.0), True), (reg("hgb", lr=0.1, depth=3), True), (reg("rf", **forest), True),
        (reg("ridge", alpha=1.0), True), (reg("ridge", alpha=100.0), True), (reg("lasso", alpha=0.001), True),
        (reg("lasso", alpha=0.01), True), (reg("rf", trees=100, depth=8, feat=0.3), True),
        (reg("et", **forest), True), (reg("hgb", lr=0.05, iters=200), True), (reg("hgb", lr=0.3, depth=2), True),
        (reg("knn", k=10), True), (reg("knn", k=30), True), (reg("tree", depth=6), True),
        (reg("tree", depth=12), True), (reg("ridge", alpha=10.0), False), (reg("ols"), False),
        (reg("rf", **forest), False), (reg("hgb", lr=0.1, depth=3), False), (reg("knn", k=10), False),
        (reg("tree", depth=4), False),
    ]

    def entry(f: Features, m: Model, log: bool, frac: float) -> Solution:
        name = name_of(m.label, frac, f.label) + (" target=log" if log else " target=raw")
        return Solution(name, partial(regression_predict, f, m, frac, "Sale_Price", log))

    out = [entry(f, m, log, 1.0) for m, log in models for f in feature_sets]
    out += [entry(everything, m, True, frac) for m in (reg("ridge", alpha=10.0), reg("hgb", lr=0.1, depth=3),
                                                        reg("rf", **forest), reg("knn", k=10))
            for frac in FRACTIONS]
    out.append(Solution("constant(median)", partial(constant_predict, "Sale_Price", lambda y: float(y.median()))))
    out.append(Solution("constant(mean)", partial(constant_predict, "Sale_Price", lambda y: float(y.mean()))))
    out += [Solution(f"group-median({g})", partial(group_median_predict, "Sale_Price", g))
            for g in ("Neighborhood", "MS_SubClass", "Overall_Cond", "House_Style")]
    return out


# ---------------------------------------------------------------- mini-fine-food-reviews


def _text_stats(frame: pd.DataFrame) -> np.ndarray:
    """Surface statistics of a review: length, words, '!' count, capitals share, negations."""
    text = frame["review"].fillna("").astype(str)
    words = text.str.split().str.len().astype(float)
    caps = text.str.count(r"[A-Z]") / text.str.len().clip(lower=1)
    negations = text.str.lower().str.count(r"\b(?:not|no|never|don't|didn't|disappoint\w*)\b")
    return np.column_stack([np.log1p(text.str.len()), np.log1p(words), text.str.count("!"), caps, negations])


def text_features(label: str, vectorizer: Callable[[], Any]) -> Features:
    """A vectorizer applied to the review column alone."""
    return Features(f"text-{label}", lambda: ColumnTransformer([("review", vectorizer(), "review")]))


def review_features() -> dict[str, Features]:
    return {
        "tfidf-word": text_features("tfidf(word,1-1)", lambda: TfidfVectorizer(min_df=2, sublinear_tf=True)),
        "tfidf-bigram": text_features("tfidf(word,1-2)", lambda: TfidfVectorizer(min_df=2, ngram_range=(1, 2),
                                                                                   sublinear_tf=True)),
        "tfidf-2k": text_features("tfidf(word,1-1,max=2000)", lambda: TfidfVectorizer(max_features=2000)),
        "tfidf-char": text_features("tfidf(char_wb,2-4,max=20000)", lambda: TfidfVectorizer(
            analyzer="char_wb", ngram_range=(2, 4), max_features=20000, sublinear_tf=True)),
        "counts": text_features("counts(word,1-1)", lambda: CountVectorizer(min_df=2)),
        "binary": text_features("counts(word,1-2,binary)", lambda: CountVectorizer(min_df=2, ngram_range=(1, 2),
                                                                                    binary=True)),
        "tfidf-stop": text_features("tfidf(word,1-1,stop=english)", lambda: TfidfVectorizer(
            min_df=2, stop_words="english", sublinear_tf=True)),
        "tfidf-trigram": text_features("tfidf(word,1-3)", lambda: TfidfVectorizer(min_df=2, ngram_range=(1, 3),
                                                                                    sublinear_tf=True)),
        "stats": Features("stats", lambda: FunctionTransformer(_text_stats)),
    }


def review_solutions() -> list[Solution]:
    f = review_features()
    logregs = [clf("logreg", C=c) for c in (0.3, 1.0, 3.0, 10.0, 30.0)]
    grid: list[tuple[Features, Model]] = []
    grid += [(f[k], m) for m in logregs for k in ("tfidf-word", "tfidf-bigram", "tfidf-2k", "binary")]
    grid.append((f["tfidf-char"], clf("logreg", C=10.0)))
    grid += [(f[k], clf("sgd", alpha=a)) for k in ("tfidf-word", "tfidf-bigram") for a in (1e-5, 1e-4, 1e-3)]
    grid += [(f[k], clf("sgd", loss="modified_huber", alpha=a)) for k in ("tfidf-word", "tfidf-bigram")
             for a in (1e-4, 1e-3)]
    grid += [(f[k], clf(nb, alpha=a)) for nb in ("mnb", "cnb") for k in ("counts", "binary", "tfidf-word")
             for a in (0.1, 1.0)]
    grid += [(f["binary"], clf("bnb", alpha=a)) for a in (0.1, 1.0)]
    grid += [(f[k], clf("rf", trees=50, leaf=l_)) for k in ("tfidf-2k", "counts") for l_ in (1, 5)]
    grid += [(f["tfidf-word"], clf("knn", k=k)) for k in (15, 50)]
    grid += [(f["tfidf-word"], clf("tree", depth=d)) for d in (5, 20)]
    grid += [(f["tfidf-stop"], m) for m in logregs]
    grid += [(f["tfidf-stop"], clf("sgd", loss="modified_huber", alpha=1e-3)), (f["tfidf-stop"], clf("mnb"))]
    grid += [(f["tfidf-trigram"], m) for m in (clf("logreg", C=10.0), clf("sgd", alpha=1e-4))]
    grid += [(f["stats"], m) for m in (clf("logreg", C=1.0), clf("logreg", C=0.1), clf("hgb", lr=0.1, depth=3),
                                        clf("gnb"), clf("rf", trees=100, leaf=10), clf("knn", k=25),
                                        clf("tree", depth=4))]
    out = [Solution(name_of(m.label, 1, fs.label), partial(binary_predict, fs, m, 1.0, "great")) for fs, m in grid]
    frac_grid = [(f["tfidf-bigram"], clf("logreg", C=10.0)), (f["tfidf-word"], clf("logreg", C=3.0)),
                 (f["counts"], clf("mnb", alpha=1.0)), (f["tfidf-word"], clf("sgd", alpha=1e-4)),
                 (f["binary"], clf("bnb", alpha=1.0)), (f["tfidf-2k"], clf("logreg", C=3.0)),
                 (f["tfidf-word"], clf("mnb", alpha=0.1)), (f["tfidf-bigram"], clf("sgd", alpha=1e-5))]
    out += [Solution(name_of(m.label, frac, fs.label), partial(binary_predict, fs, m, frac, "great"))
            for fs, m in frac_grid for frac in FRACTIONS]
    out.append(Solution("constant(p=0.5)", partial(constant_predict, "great", lambda y: 0.5)))
    out.append(Solution("constant(p=train rate)", partial(constant_predict, "great", lambda y: float(y.mean()))))
    return out


# ---------------------------------------------------------------- mini-digits


def _pixels(frame: pd.DataFrame) -> np.ndarray:
    return frame[PIXELS].to_numpy(dtype=np.float64)


def _pooled(frame: pd.DataFrame) -> np.ndarray:
    """Mean of each 2x2 block: a 4x4 thumbnail."""
    return _pixels(frame).reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(-1, 16)


def _profiles(frame: pd.DataFrame) -> np.ndarray:
    """Row and column ink sums: 16 numbers that ignore where ink sits within a row."""
    img = _pixels(frame).reshape(-1, 8, 8)
    return np.hstack([img.sum(axis=2), img.sum(axis=1)])


def _top_half(frame: pd.DataFrame) -> np.ndarray:
    return _pixels(frame)[:, :32]


def digit_features() -> list[Features]:
    return [
        Features("pixels", lambda: FunctionTransformer(_pixels)),
        Features("pca(20)", lambda: make_pipeline(FunctionTransformer(_pixels),
                                                   PCA(n_components=20, random_state=SEED))),
        Features("pool(4x4)", lambda: FunctionTransformer(_pooled)),
        Features("profiles", lambda: FunctionTransformer(_profiles)),
        Features("top-half", lambda: FunctionTransformer(_top_half)),
    ]


def label_predict(features: Features, model: Model, frac: float, target: str,
                  train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """One predicted class label per test row."""
    part = subsample(train, frac, target)
    pipe = pipeline(features, model).fit(part.drop(columns=target), part[target])
    return pd.DataFrame({"id": test["id"], target: pipe.predict(test).astype(np.int64)})


def digit_solutions() -> list[Solution]:
    feature_sets = digit_features()
    pixels, pooled = feature_sets[0], feature_sets[2]
    models = [
        clf("svc", C=10.0), clf("knn", k=3), clf("logreg", C=1.0), clf("svc", C=1.0), clf("svc", kernel="linear"),
        clf("knn", k=1), clf("knn", k=15), clf("logreg", C=0.01), clf("rf", trees=100), clf("et", trees=100),
        clf("rf", trees=30, depth=6), clf("hgb", lr=0.1, iters=30), clf("gnb"), clf("lda"), clf("tree", depth=8),
        clf("tree", depth=4), clf("centroid"), clf("mlp", hidden=32), clf("sgd", loss="hinge", alpha=1e-3),
    ]
    out = [Solution(name_of(m.label, 1, f.label), partial(label_predict, f, m, 1.0, "label"))
           for m in models for f in feature_sets[:4]]
    out += [Solution(name_of(m.label, 1, feature_sets[4].label),
                     partial(label_predict, feature_sets[4], m, 1.0, "label")) for m in models[:6]]
    frac_models = [clf("svc", C=10.0), clf("knn", k=3), clf("logreg", C=1.0), clf("rf", trees=100),
                   clf("gnb"), clf("tree", depth=8)]
    out += [Solution(name_of(m.label, frac, f.label), partial(label_predict, f, m, frac, "label"))
            for m in frac_models for f in (pixels, pooled) for frac in FRACTIONS[:2]]
    out.append(Solution("constant(most frequent)",
                        partial(constant_predict, "label", lambda y: int(y.value_counts().sort_index().idxmax()))))
    return out


# ---------------------------------------------------------------- mini-movie-genres


def genre_matrix(sets: pd.Series) -> np.ndarray:
    """Space-separated genre sets -> 0/1 matrix with one column per MOVIE_GENRES entry."""
    lists = sets.fillna("").astype(str).str.split()
    return np.array([[int(g in labels) for g in MOVIE_GENRES] for labels in lists], dtype=np.int64)


def genre_strings(matrix: np.ndarray) -> list[str]:
    return [" ".join(g for g, on in zip(MOVIE_GENRES, row, strict=True) if on) for row in matrix]


def _positive_column(proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """P(label = 1) from one output's predict_proba (all zeros if 1 never occurred in training)."""
    hits = np.flatnonzero(classes == 1)
    return proba[:, hits[0]] if hits.size else np.zeros(len(proba))


def multilabel_predict(features: Features, model: Model, frac: float, threshold: float,
                       train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """Every genre whose predicted probability reaches `threshold`."""
    part = subsample(train, frac)
    steps = pipeline(features, model)
    if not model.multi_output:
        steps.steps[-1] = (steps.steps[-1][0], MultiOutputClassifier(steps.steps[-1][1]))
    steps.fit(part.drop(columns="genres"), genre_matrix(part["genres"]))
    probas = steps.predict_proba(test)
    estimator = steps.steps[-1][1]
    classes = ([e.classes_ for e in estimator.estimators_] if not model.multi_output else estimator.classes_)
    p = np.column_stack([_positive_column(pr, np.asarray(c)) for pr, c in zip(probas, classes, strict=True)])
    return pd.DataFrame({"id": test["id"], "genres": genre_strings(p >= threshold)})


def fixed_genres_predict(genres: str, train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"id": test["id"], "genres": genres})


def frequent_genres_predict(share: float, train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """Every genre carried by at least `share` of the training films, for every film."""
    rates = genre_matrix(train["genres"]).mean(axis=0)
    return fixed_genres_predict(genre_strings((rates >= share)[None, :])[0], train, test)


def length_rule_predict(train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """Short films under 40 minutes, and a short cartoon guess under 15; everything else Drama."""
    genres = np.where(test["length"] < 15, "Animation Short", np.where(test["length"] < 40, "Short", "Drama"))
    return pd.DataFrame({"id": test["id"], "genres": genres})


MOVIE_NUMERIC = ["year", "length", "budget", "rating", "votes", *(f"r{i}" for i in range(1, 11))]


def _movie_title_features(min_df: int) -> ColumnTransformer:
    """Title words next to the numeric and rating columns (sparse)."""
    return ColumnTransformer([
        ("title", TfidfVectorizer(min_df=min_df), "title"),
        ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()),
         MOVIE_NUMERIC),
        ("mpaa", make_pipeline(SimpleImputer(strategy="constant", fill_value="none"),
                               OneHotEncoder(handle_unknown="ignore")), ["mpaa"]),
    ])


def movie_solutions() -> list[Solution]:
    everything = tabular("all", MOVIE_NUMERIC, ["mpaa"])
    feature_sets = [everything, tabular("ratings", ["rating", "votes", *(f"r{i}" for i in range(1, 11))]),
                    tabular("year-length", ["year", "length"])]
    titles = Features("text-title+all", partial(_movie_title_features, 3))
    title_only = Features("text-title", lambda: ColumnTransformer([("title", TfidfVectorizer(min_df=2), "title")]))
    models = [
        clf("rf", trees=50, leaf=2), clf("hgb", lr=0.1, depth=4, iters=40), clf("logreg", C=1.0),
        clf("rf", trees=50, depth=10), clf("et", trees=50, leaf=2), clf("knn", k=15), clf("knn", k=50),
        clf("tree", depth=6), clf("tree", leaf=5), clf("logreg", C=0.01),
    ]

    def entry(f: Features, m: Model, frac: float, t: float) -> Solution:
        return Solution(f"{name_of(m.label, frac, f.label)} threshold={t:g}",
                        partial(multilabel_predict, f, m, frac, t))

    out = [entry(f, m, 1.0, t) for m in models for f in feature_sets for t in (0.3, 0.5)]
    out += [entry(everything, m, 1.0, 0.4) for m in models]
    out += [entry(everything, m, 1.0, 0.2) for m in models[:3]]
    out += [entry(titles, clf("logreg", C=c, scale=False), 1.0, t) for c in (0.3, 3.0) for t in (0.2, 0.3, 0.4, 0.5)]
    out += [entry(title_only, clf("logreg", C=c, scale=False), 1.0, 0.3) for c in (1.0, 10.0)]
    out += [entry(everything, m, frac, t) for m, t in ((clf("rf", trees=50, leaf=2), 0.4), (clf("logreg", C=1.0), 0.4),
                                                       (clf("knn", k=15), 0.4),
                                                       (clf("hgb", lr=0.1, depth=4, iters=40), 0.3))
            for frac in FRACTIONS]
    out += [Solution(f"constant({g or 'no genres'})", partial(fixed_genres_predict, g))
            for g in ("Drama", "Comedy", "Comedy Drama", "")]
    out += [Solution(f"constant(genres with share>={s:g})", partial(frequent_genres_predict, s)) for s in (0.3, 0.15)]
    out.append(Solution("rule(length)", length_rule_predict))
    return out


# ---------------------------------------------------------------- strong entries: tuned models and their blends
#
# The top of a Kaggle board is tuned models and blends of them. Each competition gets a handful of
# strong base models (engineered features, tuned boosting, tf-idf word+char, SVMs on pixels); every base
# is an entry, and so is the average of every pair of bases. A base's raw output (probabilities, or
# log prices) is computed once per build and shared by the blends that use it.

Raw = Callable[[pd.DataFrame, pd.DataFrame], np.ndarray]
Finish = Callable[[np.ndarray, pd.DataFrame, pd.DataFrame], pd.DataFrame]
_RAW_CACHE: dict[tuple[str, str], np.ndarray] = {}


def _data_key(train: pd.DataFrame, test: pd.DataFrame) -> str:
    """Identifies the data a raw output was computed on, so a cached one is never reused on other data."""
    digests = [int(pd.util.hash_pandas_object(frame.astype(str), index=False).sum()) for frame in (train, test)]
    return f"{len(train)}:{len(test)}:{digests[0]}:{digests[1]}"


def cached_raw(name: str, raw: Raw, train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    key = (name, _data_key(train, test))
    if key not in _RAW_CACHE:
        _RAW_CACHE[key] = np.asarray(raw(train, test), dtype=np.float64)
    return _RAW_CACHE[key]


def blend_predict(bases: Sequence[tuple[str, Raw]], finish: Finish,
                  train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """The plain average of the bases' raw outputs, turned into a submission by `finish`."""
    mean = np.mean([cached_raw(name, raw, train, test) for name, raw in bases], axis=0)
    return finish(mean, train, test)


def strong_solutions(bases: Sequence[tuple[str, Raw]], finish: Finish, suffix: str = "",
                     sizes: Sequence[int] = (1, 2)) -> list[Solution]:
    """Every base alone, then the average of every pair (and triple, when `sizes` says so), in base order."""
    out = []
    for size in sizes:
        for group in combinations(bases, size):
            name = group[0][0] if size == 1 else " + ".join(n for n, _ in group)
            label = f"tuned {name}" if size == 1 else f"blend({name})"
            out.append(Solution(label + suffix, partial(blend_predict, list(group), finish)))
    return out


def fitted_proba(features: Features, model: Model, target: str,
                 train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """predict_proba of a pipeline fitted on all training rows, columns in sorted class order."""
    classes = sorted(train[target].unique())
    pipe = pipeline(features, model).fit(train.drop(columns=target), train[target])
    proba = pipe.predict_proba(test)
    full = np.zeros((len(test), len(classes)))
    for j, c in enumerate(pipe.classes_):
        full[:, classes.index(c)] = proba[:, j]
    return full


def positive_proba(features: Features, model: Model, target: str,
                   train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    return fitted_proba(features, model, target, train, test)[:, -1]


def finish_binary(target: str, p: np.ndarray, train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"id": test["id"].to_numpy(), target: p})


def finish_classes(target: str, p: np.ndarray, train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    classes = sorted(train[target].unique())
    return pd.concat([test[["id"]].reset_index(drop=True), pd.DataFrame(p, columns=classes)], axis=1)


def finish_label(target: str, p: np.ndarray, train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    classes = np.array(sorted(train[target].unique()))
    return pd.DataFrame({"id": test["id"].to_numpy(), target: classes[p.argmax(axis=1)].astype(np.int64)})


def binary_bases(features: Sequence[Features], models: Sequence[Model], target: str) -> list[tuple[str, Raw]]:
    return [(f"{m.label} features={f.label}", partial(positive_proba, f, m, target)) for f in features for m in models]


def class_bases(features: Sequence[Features], models: Sequence[Model], target: str) -> list[tuple[str, Raw]]:
    return [(f"{m.label} features={f.label}", partial(fitted_proba, f, m, target)) for f in features for m in models]



def leaf_strong() -> list[Solution]:
    everything = tabular("all", LEAF_SHAPE + LEAF_GEOMETRY + LEAF_COLOUR, LEAF_CATEGORICAL)
    models = [clf("logreg", C=5.0), clf("logreg", C=10.0), clf("logreg", C=20.0), clf("logreg", C=50.0),
              clf("mlp", hidden=64, iters=300), clf("mlp", hidden=128, alpha=1e-3, iters=300),
              clf("mlp", hidden=128, iters=300), clf("logreg", C=200.0)]
    return strong_solutions(class_bases([everything], models, "species"), partial(finish_classes, "species"),
                            sizes=(1, 2, 3))


def ames_engineered(frame: pd.DataFrame) -> pd.DataFrame:
    """House-price notebook features: total and log areas, ages, bathrooms."""
    f = frame.copy()
    f["total_sf"] = f["Total_Bsmt_SF"] + f["First_Flr_SF"] + f["Second_Flr_SF"]
    f["house_age"] = f["Year_Sold"] - f["Year_Built"]
    f["remod_age"] = f["Year_Sold"] - f["Year_Remod_Add"]
    f["bathrooms"] = f["Full_Bath"] + 0.5 * f["Half_Bath"] + f["Bsmt_Full_Bath"] + 0.5 * f["Bsmt_Half_Bath"]
    f["porch_sf"] = f[["Wood_Deck_SF", "Open_Porch_SF", "Enclosed_Porch", "Three_season_porch", "Screen_Porch"]].sum(axis=1)
    for col in ("Lot_Area", "Gr_Liv_Area", "total_sf", "First_Flr_SF", "Lot_Frontage", "Mas_Vnr_Area"):
        f[f"log_{col}"] = np.log1p(f[col].clip(lower=0))
    return f


AMES_ENGINEERED = ["total_sf", "house_age", "remod_age", "bathrooms", "porch_sf",
                   *(f"log_{c}" for c in ("Lot_Area", "Gr_Liv_Area", "total_sf", "First_Flr_SF", "Lot_Frontage",
                                          "Mas_Vnr_Area"))]


def _ames_engineered_features() -> Pipeline:
    return make_pipeline(FunctionTransformer(ames_engineered),
                         _tabular([*AMES_NUMERIC, *AMES_ENGINEERED], AMES_CATEGORICAL))


def log_prediction(features: Features, model: Model, target: str,
                   train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """Prediction of log1p(target): blends of prices are averaged on the log scale the metric uses."""
    return pipeline(features, model).fit(train.drop(columns=target), np.log1p(train[target])).predict(test)


def finish_price(target: str, log_pred: np.ndarray, train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"id": test["id"].to_numpy(),
                         target: np.clip(np.expm1(log_pred), float(train[target].min()), None)})


def ames_strong() -> list[Solution]:
    engineered = Features("engineered", _ames_engineered_features)
    models = [reg("lasso", alpha=0.0005), reg("lasso", alpha=0.001), reg("ridge", alpha=30.0), reg("ridge", alpha=100.0),
              reg("hgb", lr=0.05, leaves=15, leaf=10, iters=600), reg("hgb", lr=0.03, leaves=7, leaf=10, l2=1.0, iters=1000),
              reg("hgb", lr=0.05, depth=4, leaf=20, iters=800), reg("lasso", alpha=0.0003),
              reg("hgb", lr=0.05, depth=3, leaf=20, iters=600)]
    bases = [(f"{m.label} features=engineered target=log", partial(log_prediction, engineered, m, "Sale_Price"))
             for m in models]
    return strong_solutions(bases, partial(finish_price, "Sale_Price"), sizes=(1, 2, 3))


def review_strong() -> list[Solution]:
    def union(word: tuple[int, int], char: tuple[int, int]) -> Features:
        label = f"text-tfidf(word,{word[0]}-{word[1]})+tfidf(char_wb,{char[0]}-{char[1]})"
        return Features(label, lambda: ColumnTransformer([
            ("word", TfidfVectorizer(min_df=2, ngram_range=word, sublinear_tf=True), "review"),
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=char, min_df=3, sublinear_tf=True), "review")]))

    both = union((1, 2), (2, 5))
    word = text_features("tfidf(word,1-3)", lambda: TfidfVectorizer(min_df=2, ngram_range=(1, 3), sublinear_tf=True))
    char = text_features("tfidf(char_wb,1-5)", lambda: TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 5),
                                                                       min_df=3, sublinear_tf=True))
    pairs = [(both, clf("logreg", C=c)) for c in (1.5, 3.0)]
    pairs += [(word, clf("logreg", C=c)) for c in (8.0, 12.0, 16.0, 24.0)] + [(char, clf("logreg", C=4.0))]
    pairs.append((text_features("tfidf(word,1-2)", lambda: TfidfVectorizer(min_df=2, ngram_range=(1, 2),
                                                                           sublinear_tf=True)), clf("logreg", C=10.0)))
    bases = [(f"{m.label} features={f.label}", partial(positive_proba, f, m, "great")) for f, m in pairs]
    return strong_solutions(bases, partial(finish_binary, "great"), sizes=(1, 2, 3))


def _orientation_histograms(frame: pd.DataFrame) -> np.ndarray:
    """HOG-like features: gradient orientations (8 bins, magnitude-weighted) in each 4x4 cell of the 8x8 image."""
    img = _pixels(frame).reshape(-1, 8, 8)
    gy, gx = np.gradient(img, axis=(1, 2))
    magnitude, angle = np.hypot(gx, gy), np.mod(np.arctan2(gy, gx), np.pi)
    bins = np.minimum((angle / np.pi * 8).astype(int), 7)
    cells = []
    for r in (0, 4):
        for c in (0, 4):
            m, b = magnitude[:, r:r + 4, c:c + 4].reshape(len(img), -1), bins[:, r:r + 4, c:c + 4].reshape(len(img), -1)
            cells.append(np.stack([(m * (b == k)).sum(axis=1) for k in range(8)], axis=1))
    return np.hstack([*cells, _pixels(frame)])


def digit_strong() -> list[Solution]:
    pixels = Features("pixels", lambda: FunctionTransformer(_pixels))
    pca = Features("pca(30)", lambda: make_pipeline(FunctionTransformer(_pixels), PCA(n_components=30, random_state=SEED)))
    hog = Features("hog+pixels", lambda: FunctionTransformer(_orientation_histograms))
    pairs = [(pixels, clf("svc", C=10.0, prob=True)), (pca, clf("svc", C=10.0, prob=True)),
             (hog, clf("svc", C=10.0, prob=True)), (pca, clf("knn", k=3, weights="distance")),
             (pixels, clf("mlp", hidden=128, alpha=1e-3, iters=400)), (hog, clf("logreg", C=1.0)),
             (pixels, clf("et", trees=300)), (hog, clf("mlp", hidden=128, alpha=1e-3, iters=400)),
             (hog, clf("svc", C=3.0, prob=True)), (pixels, clf("svc", C=3.0, prob=True))]
    return strong_solutions(class_bases_of(pairs, "label"), partial(finish_label, "label"))


def class_bases_of(pairs: Sequence[tuple[Features, Model]], target: str) -> list[tuple[str, Raw]]:
    return [(f"{m.label} features={f.label}", partial(fitted_proba, f, m, target)) for f, m in pairs]


def genre_proba(features: Features, model: Model, train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """P(genre) for every test film and MOVIE_GENRES entry, one model per genre."""
    steps = pipeline(features, model)
    steps.steps[-1] = (steps.steps[-1][0], MultiOutputClassifier(steps.steps[-1][1]))
    steps.fit(train.drop(columns="genres"), genre_matrix(train["genres"]))
    estimator = steps.steps[-1][1]
    return np.column_stack([_positive_column(p, np.asarray(e.classes_))
                            for p, e in zip(steps.predict_proba(test), estimator.estimators_, strict=True)])


def finish_genres(threshold: float, p: np.ndarray, train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"id": test["id"].to_numpy(), "genres": genre_strings(p >= threshold)})


def movie_strong() -> list[Solution]:
    everything = tabular("all", MOVIE_NUMERIC, ["mpaa"])
    titles = Features("text-title+all", partial(_movie_title_features, 3))
    pairs = [(everything, clf("hgb", lr=0.05, leaves=15, leaf=20, iters=200)),
             (everything, clf("hgb", lr=0.1, depth=4, leaf=40, l2=1.0, iters=80)),
             (everything, clf("hgb", lr=0.05, depth=6, leaf=20, iters=150)),
             (everything, clf("hgb", lr=0.1, leaves=15, leaf=40, iters=100)),
             (everything, clf("hgb", lr=0.05, leaves=7, leaf=20, l2=1.0, iters=300)),
             (titles, clf("logreg", C=0.5, scale=False)), (titles, clf("logreg", C=1.0, scale=False)),
             (titles, clf("logreg", C=3.0, scale=False))]
    bases = [(f"{m.label} features={f.label}", partial(genre_proba, f, m)) for f, m in pairs]
    return strong_solutions(bases, partial(finish_genres, 0.3), " threshold=0.3", sizes=(1, 2, 3))


STRONG: dict[str, Callable[[], list[Solution]]] = {
    "mini-churn": churn_strong,
    "mini-leaf-species": leaf_strong,
    "mini-ames-housing": ames_strong,
    "mini-fine-food-reviews": review_strong,
    "mini-digits": digit_strong,
    "mini-movie-genres": movie_strong,
}



# ---------------------------------------------------------------- panel and leaderboard


SOLUTIONS: dict[str, Callable[[], list[Solution]]] = {
    "mini-churn": churn_solutions,
    "mini-leaf-species": leaf_solutions,
    "mini-ames-housing": ames_solutions,
    "mini-fine-food-reviews": review_solutions,
    "mini-digits": digit_solutions,
    "mini-movie-genres": movie_solutions,
}


def solutions(competition_id: str) -> list[Solution]:
    """The reference solutions of a mini competition, in a fixed order."""
    if competition_id not in SOLUTIONS:
        raise KeyError(f"{competition_id!r} has no reference panel; known: {', '.join(SOLUTIONS)}")
    return SOLUTIONS[competition_id]() + STRONG[competition_id]()


def read_digit_pixels(frame: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """`frame` with the 64 grey levels of `<folder>/<id>.png` appended as columns p0..p63."""
    pixels = np.stack([np.asarray(Image.open(folder / f"{i}.png"), dtype=np.uint8).reshape(64) for i in frame["id"]])
    return pd.concat([frame.reset_index(drop=True), pd.DataFrame(pixels, columns=PIXELS)], axis=1)


def load_public(competition_id: str, data_dir: str | os.PathLike | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) as a participant reads them from `public/`."""
    public = paths.public_dir(competition_id, data_dir)
    train, test = pd.read_csv(public / "train.csv"), pd.read_csv(public / "test.csv")
    if competition_id == "mini-digits":
        train, test = read_digit_pixels(train, public / "train"), read_digit_pixels(test, public / "test")
    if competition_id == "mini-movie-genres":
        train["genres"] = train["genres"].fillna("")
        for frame in (train, test):
            frame["title"] = frame["title"].fillna("").astype(str)
    return train, test


def as_submitted(submission: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Write the submission to `path` and read it back with the grader's own reader."""
    submission.to_csv(path, index=False, lineterminator="\n")
    return grading.read_submission(path, grading.SIZE_FLOOR)


def build_panel(competition_id: str, data_dir: str | os.PathLike | None = None,
                limit: int | None = None, names: Collection[str] | None = None) -> pd.DataFrame:
    """Run the first `limit` (default all) solutions, or only those `names`; one row per solution:
    `solution`, `score`, `seconds`."""
    spec = competitions.get(competition_id)
    prepare(competition_id, data_dir)
    answers = grading.load_answers(spec, data_dir)
    train, test = load_public(competition_id, data_dir)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hpc-mle-panel-") as scratch:
        file = Path(scratch) / "submission.csv"
        chosen = [s for s in solutions(competition_id) if names is None or s.name in names][:limit]
        for solution in chosen:
            start = time.perf_counter()
            # One BLAS/OpenMP thread: busy-waiting threads crawl on a shared 2-core node, and results
            # must not depend on the thread count.
            with warnings.catch_warnings(), threadpool_limits(limits=1):
                warnings.simplefilter("ignore")
                submission = as_submitted(solution.predict(train.copy(), test.copy()), file)
            score = grading.round_score(grading.score_frame(spec, submission, answers))
            rows.append({"solution": solution.name, "score": score, "seconds": time.perf_counter() - start})
    return pd.DataFrame(rows)


def leaderboard_frame(panel: pd.DataFrame, higher_is_better: bool) -> pd.DataFrame:
    """Kaggle's leaderboard columns, best first (ties by solution name), plus the `solution` description."""
    ranked = panel.sort_values(["score", "solution"], ascending=[not higher_is_better, True], kind="stable")
    ranked = ranked.reset_index(drop=True)
    return pd.DataFrame({
        "scoreNullable": ranked["score"],
        "teamId": np.arange(1, len(ranked) + 1),
        "hasTeamName": True,
        "submissionDate": SUBMISSION_DATE,
        "score": ranked["score"],
        "hasScore": True,
        "solution": ranked["solution"],
    })[LEADERBOARD_COLUMNS]


def write_leaderboard(competition_id: str, panel: pd.DataFrame, path: str | os.PathLike | None = None) -> Path:
    """Write the panel as `competitions/<id>/leaderboard.csv` (or `path`)."""
    spec = competitions.get(competition_id)
    out = Path(path) if path else spec.folder / "leaderboard.csv"
    leaderboard_frame(panel, spec.metric.higher_is_better).to_csv(out, index=False, lineterminator="\n")
    return out


def summary(competition_id: str, data_dir: str | os.PathLike | None, board: Path) -> str:
    """Thresholds of the written board and where the sample submission and the answers land on it."""
    spec = competitions.get(competition_id)
    t = medals.thresholds(medals.read_leaderboard(board))
    prepared = paths.prepared_dir(competition_id, data_dir)
    sample = grading.grade_submission(prepared / spec.files.sample_submission, competition_id, data_dir)
    perfect = grading.grade_submission(prepared / spec.files.answers, competition_id, data_dir)
    return (f"{competition_id}: {t.teams} entries; gold {t.gold} silver {t.silver} bronze {t.bronze} "
            f"median {t.median}; sample {sample.score} (above median: {sample.above_median}); "
            f"answers {perfect.score} (gold: {perfect.gold_medal})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpc_mle.prepare.panel",
                                     description="Build the mini competitions' reference leaderboards.")
    parser.add_argument("ids", nargs="*", help="competition ids (default: every competition of the mini split)")
    parser.add_argument("--data-dir", help="where to prepare the data (default: a temporary folder)")
    parser.add_argument("--limit", type=int, help="only the first N solutions of each panel (for trying out)")
    args = parser.parse_args(argv)
    ids = args.ids or competitions.split_ids("mini")
    with tempfile.TemporaryDirectory(prefix="hpc-mle-panel-") as scratch:
        data_dir = args.data_dir or scratch
        for cid in ids:
            start = time.perf_counter()
            panel = build_panel(cid, data_dir, args.limit)
            board = write_leaderboard(cid, panel)
            print(f"{summary(cid, data_dir, board)}; built in {time.perf_counter() - start:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
