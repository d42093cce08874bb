"""The competition registry: one `competitions/<id>/spec.yaml` per competition, loaded and checked.

A spec is data only. Grading reads the metric, columns and file names from it; `prepare` reads the
preparer; reports copy its status and version so every result says which benchmark it came from.
A malformed spec fails loading with the file and the field named, and says how to fix it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hpc_mle import paths
from hpc_mle.metric_types import V1_RESULTS

SPEC_FILE = "spec.yaml"
SPLITS = ("low", "medium", "high", "dev", "mini")
# Names a user may pass as a benchmark; each maps to the spec splits it contains.
SPLIT_ALIASES: dict[str, tuple[str, ...]] = {
    "lite": ("low",),
    "low": ("low",),
    "medium": ("medium",),
    "high": ("high",),
    "all": ("low", "medium", "high"),
    "split75": ("low", "medium", "high"),
    "dev": ("dev",),
    "mini": ("mini",),
}
STATUSES = ("ok", "known-issue", "leaky", "excluded")
LEADERBOARD_SOURCES = ("kaggle", "reference-panel", "none")
# How a submission's rows are paired with the answers (v1's per-competition grader behaviour):
#   id: sorted by id, ids must equal the answers' ids; positional: file order, ids neither needed nor read;
#   sorted: both sorted by id and paired by position, ids never compared (nyc-taxi);
#   id-columns-by-position: as id, but scored columns are paired by position in the file;
#   sorted-columns-by-position: both sorted by id and paired by position; submission ids must be test ids
#   but are not compared (one repeated, another missing passes), columns paired by position (jigsaw-toxic v1);
#   merge: the set of submission ids must equal the answers' set, then the answers are inner-merged with the
#   submission on the ids (a repeated id adds rows; the row count is not checked) (predict-volcanic v1).
ROW_ORDERS = ("id", "positional", "sorted", "id-columns-by-position", "sorted-columns-by-position", "merge")
#   id-mask-by-file-position: as id, but the answers' row mask (metric option `mask_column`) picks the
#   submission's rows by their position in the file, not by id (stanford-covid-vaccine v1).
ROW_ORDERS += ("id-mask-by-file-position",)
#   by-metric: the metric pairs rows itself from the whole answers and the submission's id and scored
#   columns; no row count or id-set check here (osic v1: a subset is allowed, unknown ids are not).
ROW_ORDERS += ("by-metric",)
#   id-set-sorted: equal id sets and row counts, then both sorted by id and paired by position; a repeated
#   id may repeat a different number of times than in the answers (hms v1, whose answers repeat eeg_ids);
#   the submission's other non-id columns follow the scored ones in y_pred (v1's hms metric checks them).
ROW_ORDERS += ("id-set-sorted",)
DOWNLOADS = ("none", "kaggle")  # where `prepare` gets the raw files: nowhere (packages) or the Kaggle API


class SpecError(ValueError):
    """A spec file is malformed; the message names the file, the field and the fix."""


@dataclass(frozen=True)
class MetricSpec:
    name: str
    higher_is_better: bool
    options: dict[str, Any] = field(default_factory=dict)
    upstream_grader_name: str | None = None
    # The type v1's grader returned, where it differs from the metric's (null: the metric's own).
    v1_result: str | None = None
    # Where v1's metric is plainly wrong: options merged over `options` for the corrected grade
    # (grading.mode=corrected), e.g. tensorflow2-QA's F1 of the answered rows instead of accuracy.
    corrected_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SubmissionSpec:
    id_columns: tuple[str, ...]
    # Empty: every non-id column of the answers file is scored.
    answer_columns: tuple[str, ...] = ()
    # True: the submission must have exactly the id + answer columns (upstream checks this for some).
    exact_columns: bool = False
    # "id": rows are matched by id; the others are upstream quirks of a few graders (see ROW_ORDERS).
    row_order: str = "id"
    # Set where v1's row order is plainly wrong: the corrected grade uses this one (grading.mode=corrected).
    corrected_row_order: str | None = None
    # A column v1 requires first (spooky reads every column after the first as probabilities).
    first_column: str | None = None
    # Answer columns the metric also reads (a group or a row mask), passed after the scored ones in
    # y_true and never asked of the submission (id, merge and id-mask-by-file-position pairings).
    context_columns: tuple[str, ...] = ()
    # Submission columns v1 renames before reading them ({old: new}): jigsaw-unintended reads its
    # `prediction` column as `toxicity`, and also takes a file that already names it `toxicity`.
    renamed_columns: dict[str, str] = field(default_factory=dict)
    # True: the header must be exactly the id columns then the scored columns, in the answers' order
    # (freesound v1 compares the header with its class list, so a reordered header is refused).
    exact_header: bool = False


@dataclass(frozen=True)
class FilesSpec:
    """Paths relative to `<data>/<id>/prepared/`."""

    answers: str
    sample_submission: str
    gold_submission: str | None = None
    public: tuple[str, ...] = ()
    # For answers in JSON lines (`.jsonl`): the keys grading keeps from each record (empty: all of them).
    answers_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExtraDownload:
    """A file the preparer needs from outside Kaggle (freesound's test labels on Zenodo), fetched into raw/."""

    file: str  # its name in raw/
    url: str
    source: str  # who serves it, for messages ("Zenodo")
    md5: str | None = None  # checked after the download and on a file placed by hand; null where unknown
    size_bytes: int | None = None  # approximate, for the preflight's disk estimate


@dataclass(frozen=True)
class StatusSpec:
    state: str = "ok"
    reason: str | None = None
    upstream_issue: int | None = None


@dataclass(frozen=True)
class LeaderboardSpec:
    source: str = "kaggle"
    teams: int | None = None


@dataclass(frozen=True)
class CompetitionSpec:
    id: str
    name: str
    version: int
    split: str
    category: str
    metric: MetricSpec
    submission: SubmissionSpec
    files: FilesSpec
    leaderboard: LeaderboardSpec
    status: StatusSpec
    implemented: bool
    competition_type: str = "simple"
    awards_medals: bool = False
    dataset_size_gb: float | None = None
    # What one preparation of the real data needs at its peak: memory (RSS) and disk (download, extracted
    # files and prepared output together). `prepare --check` refuses early and `prepare --slurm` asks for them.
    prepare_memory_gb: float | None = None
    prepare_disk_gb: float | None = None
    preparer: str | None = None
    download: str = "none"
    sample_score: float | None = None
    description: str = "description.md"
    # Files from elsewhere than Kaggle that `prepare` downloads into raw/ (hpc_mle.extra_downloads).
    extra_downloads: tuple[ExtraDownload, ...] = ()
    spec_path: Path | None = None

    @property
    def folder(self) -> Path:
        return self.spec_path.parent if self.spec_path else paths.competitions_root() / self.id

    @property
    def description_path(self) -> Path:
        return self.folder / self.description

    def as_dict(self) -> dict[str, Any]:
        """Plain data for `competitions show` and manifests."""
        from dataclasses import asdict

        d = asdict(self)
        d["spec_path"] = str(self.spec_path) if self.spec_path else None
        return d


# ---------------------------------------------------------------- parsing with named errors


class _Reader:
    """Reads one mapping of a spec, naming `file` and the dotted field in every error."""

    def __init__(self, data: Any, file: Path, prefix: str = "") -> None:
        self.file, self.prefix = file, prefix
        if not isinstance(data, dict):
            where = f"field '{prefix.rstrip('.')}'" if prefix else "the top level"
            raise SpecError(f"{file}: {where} must be a mapping (key: value lines), got {type(data).__name__}.")
        self.data = dict(data)
        self.seen: set[str] = set()

    def fail(self, key: str, message: str) -> SpecError:
        return SpecError(f"{self.file}: field '{self.prefix}{key}': {message}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., choices: tuple | None = None) -> Any:
        self.seen.add(key)
        if key not in self.data or self.data[key] is None:
            if default is ...:
                raise self.fail(key, f"is required. Fix: add '{key}:' to the spec.")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # YAML reads 1 as int where a float is expected; bool is an int subclass and must not pass as a number.
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
            names = " or ".join(k.__name__ for k in kinds)
            raise self.fail(key, f"must be {names}, got {value!r}.")
        if choices is not None and value not in choices:
            raise self.fail(key, f"{value!r} is not allowed. Fix: use one of {', '.join(map(str, choices))}.")
        return value

    def strings(self, key: str, default: Any = ...) -> tuple[str, ...]:
        value = self.get(key, (list, str), default)
        if isinstance(value, str):
            value = [value]
        if not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, f"must be a list of non-empty strings, got {value!r}.")
        if default is ... and not value:
            raise self.fail(key, "needs at least one entry.")
        return tuple(value)

    def sub(self, key: str, default: Any = ...) -> _Reader:
        self.seen.add(key)
        if key not in self.data or self.data[key] is None:
            if default is ...:
                raise self.fail(key, f"is required. Fix: add a '{key}:' section to the spec.")
            return _Reader(default, self.file, f"{self.prefix}{key}.")
        return _Reader(self.data[key], self.file, f"{self.prefix}{key}.")

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise self.fail(unknown[0], f"is not a known field (a typo?). Fix: remove it or use one of "
                                        f"{', '.join(sorted(self.seen))}.")


def parse_spec(data: Any, file: Path) -> CompetitionSpec:
    r = _Reader(data, file)
    cid = r.get("id", str).strip()
    if file.parent.name != cid and file.name == SPEC_FILE:
        raise r.fail("id", f"{cid!r} differs from the folder name {file.parent.name!r}. Fix: make them equal.")
    name, version = r.get("name", str), r.get("version", int, 1)
    split, category = r.get("split", str, choices=SPLITS), r.get("category", str)

    m = r.sub("metric")
    metric = MetricSpec(
        name=m.get("name", str),
        higher_is_better=m.get("higher_is_better", bool),
        options=m.get("options", dict, {}),
        upstream_grader_name=m.get("upstream_grader_name", str, None),
        v1_result=m.get("v1_result", str, None, choices=V1_RESULTS),
        corrected_options=m.get("corrected_options", dict, {}),
    )
    m.done()

    s = r.sub("submission")
    submission = SubmissionSpec(
        id_columns=s.strings("id_columns"),
        answer_columns=s.strings("answer_columns", ()),
        exact_columns=s.get("exact_columns", bool, False),
        row_order=s.get("row_order", str, "id", choices=ROW_ORDERS),
        corrected_row_order=s.get("corrected_row_order", str, None, choices=ROW_ORDERS),
        first_column=s.get("first_column", str, None),
        context_columns=s.strings("context_columns", ()),
        renamed_columns=s.get("renamed_columns", dict, {}),
        exact_header=s.get("exact_header", bool, False),
    )
    s.done()

    f = r.sub("files")
    files = FilesSpec(
        answers=f.get("answers", str),
        sample_submission=f.get("sample_submission", str),
        gold_submission=f.get("gold_submission", str, None),
        public=f.strings("public", ()),
        answers_fields=f.strings("answers_fields", ()),
    )
    f.done()

    lb = r.sub("leaderboard", {})
    leaderboard = LeaderboardSpec(
        source=lb.get("source", str, "kaggle", choices=LEADERBOARD_SOURCES),
        teams=lb.get("teams", int, None),
    )
    lb.done()

    st = r.sub("status", {})
    status = StatusSpec(
        state=st.get("state", str, "ok", choices=STATUSES),
        reason=st.get("reason", str, None),
        upstream_issue=st.get("upstream_issue", int, None),
    )
    st.done()
    if status.state != "ok" and not status.reason:
        raise st.fail("reason", f"is required when the state is {status.state!r}. Fix: say why, in a sentence.")

    spec = CompetitionSpec(
        id=cid,
        name=name,
        version=version,
        split=split,
        category=category,
        metric=metric,
        submission=submission,
        files=files,
        leaderboard=leaderboard,
        status=status,
        implemented=r.get("implemented", bool, False),
        competition_type=r.get("competition_type", str, "simple", choices=("simple", "code")),
        awards_medals=r.get("awards_medals", bool, False),
        dataset_size_gb=r.get("dataset_size_gb", float, None),
        prepare_memory_gb=r.get("prepare_memory_gb", float, None),
        prepare_disk_gb=r.get("prepare_disk_gb", float, None),
        preparer=r.get("preparer", str, None),
        download=r.get("download", str, "none", choices=DOWNLOADS),
        sample_score=r.get("sample_score", float, None),
        description=r.get("description", str, "description.md"),
        extra_downloads=_extra_downloads(r),
        spec_path=file,
    )
    r.done()

    if spec.implemented:
        from hpc_mle.metrics import METRICS

        if metric.name not in METRICS:
            raise m.fail("name", f"{metric.name!r} is not an implemented metric. Fix: use one of "
                                 f"{', '.join(sorted(METRICS))}, or set implemented: false.")
        if METRICS[metric.name].higher_is_better != metric.higher_is_better:
            raise m.fail("higher_is_better", f"contradicts metric {metric.name!r}. Fix: set it to "
                                             f"{METRICS[metric.name].higher_is_better}.")
        if not spec.preparer:
            raise r.fail("preparer", "is required when implemented is true. Fix: name 'module:function'.")
    return spec


def _extra_downloads(r: _Reader) -> tuple[ExtraDownload, ...]:
    """The `extra_downloads:` list: each entry names file, url and source; md5 and size_bytes optional."""
    items = r.get("extra_downloads", list, [])
    out = []
    for i, item in enumerate(items):
        e = _Reader(item, r.file, f"extra_downloads[{i}].")
        out.append(ExtraDownload(file=e.get("file", str), url=e.get("url", str), source=e.get("source", str),
                                 md5=e.get("md5", str, None), size_bytes=e.get("size_bytes", int, None)))
        e.done()
        if "/" in out[-1].file or out[-1].file in ("", ".", ".."):
            raise e.fail("file", f"{out[-1].file!r} must be a plain file name (it lands in raw/).")
    return tuple(out)


def load_spec(path: str | Path) -> CompetitionSpec:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML ({exc}). Fix: correct the syntax at the line shown.") from exc
    except OSError as exc:
        raise SpecError(f"{path}: cannot be read ({exc.strerror}).") from exc
    return parse_spec(data, path)


# ---------------------------------------------------------------- the registry


@functools.lru_cache(maxsize=4)
def _load_registry(files: tuple[tuple[Path, int], ...]) -> dict[str, CompetitionSpec]:
    specs: dict[str, CompetitionSpec] = {}
    for path, _mtime in files:
        spec = load_spec(path)
        specs[spec.id] = spec
    return specs


def registry() -> dict[str, CompetitionSpec]:
    """All specs under `competitions/`, by id (sorted); re-read when a spec file is added or edited."""
    root = paths.competitions_root().resolve()
    files = tuple((p, p.stat().st_mtime_ns) for p in sorted(root.glob(f"*/{SPEC_FILE}")))
    return _load_registry(files)


def get(competition_id: str) -> CompetitionSpec:
    specs = registry()
    if competition_id not in specs:
        import difflib

        close = difflib.get_close_matches(competition_id, specs, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else " See `hpc-mle competitions list`."
        raise KeyError(f"Unknown competition {competition_id!r}.{hint}")
    return specs[competition_id]


def split_ids(name: str) -> list[str]:
    """Competition ids of a benchmark split by name (`lite`, `medium`, `all`, `mini`, ...), sorted."""
    key = name.lower()
    if key not in SPLIT_ALIASES:
        raise KeyError(f"Unknown split {name!r}. Fix: use one of {', '.join(SPLIT_ALIASES)}.")
    wanted = SPLIT_ALIASES[key]
    return [cid for cid, spec in registry().items() if spec.split in wanted]
