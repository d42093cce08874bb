"""Find a competition's sample submission in the agent's data folder, however upstream ships it.

The built-in agents import this inside the sandbox, where only the standard library and the public
files exist, so it must discover the file from the folder alone. Upstream's public samples are named
sample_submission.csv, sampleSubmission.csv, sample_submission_null.csv,
kaggle_sample_submission.csv or randomPredictions.csv; text-normalization ships
`<lang>_sample_submission_2.csv.zip`; other competitions keep theirs in a sub-folder, a .zip or a
.gz. An archived sample is unpacked into a scratch folder and that copy's path is returned.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import tempfile
import zipfile

NAME_HINTS = ("samplesubmission", "randompredictions")  # in the lower-case name, separators removed
ARCHIVES = (".zip", ".gz", ".7z")  # .7z only where py7zr is importable (statoil ships its sample so)
MAX_DEPTH = 2  # /home/data/<folder>/<folder>/file at most: image folders below are not searched
MAX_CSV_BYTES = 4 << 30  # an unpacked sample larger than this is not a sample


def _stem(name: str) -> str:
    """'en_sample_submission_2.csv.zip' -> 'ensamplesubmission2'."""
    lower = name.lower()
    for suffix in (".zip", ".gz", ".7z", ".csv"):
        lower = lower.removesuffix(suffix)
    return re.sub(r"[^a-z0-9]", "", lower)


def _is_sample_name(name: str) -> bool:
    lower = name.lower()
    if not (lower.endswith(".csv") or lower.endswith(ARCHIVES)):
        return False
    return any(hint in _stem(name) for hint in NAME_HINTS)


def _rank(path: str, data_dir: str) -> tuple:
    """Shallow first, a plain CSV before an archive, Kaggle's usual name first, then by name."""
    rel = os.path.relpath(path, data_dir)
    name = os.path.basename(path).lower()
    return (rel.count(os.sep), not name.endswith(".csv"), not name.startswith("sample_submission"), rel)


def candidates(data_dir: str) -> list[str]:
    """Every file under `data_dir` (up to MAX_DEPTH folders down) named like a sample submission, best first."""
    found = []
    for root, dirs, names in os.walk(data_dir):
        depth = os.path.relpath(root, data_dir).count(os.sep) + (root != data_dir)
        if depth >= MAX_DEPTH:
            dirs[:] = []
        dirs.sort()
        found += [os.path.join(root, n) for n in names if _is_sample_name(n)]
    return sorted(found, key=lambda p: _rank(p, data_dir))


def _unpack(path: str, scratch: str) -> str | None:
    """The CSV inside a .zip (the sample-named member first) or a .gz, copied into `scratch`."""
    target = os.path.join(scratch, _stem(os.path.basename(path)) + ".csv")
    if path.lower().endswith(".gz"):
        with gzip.open(path, "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
        return target
    if path.lower().endswith(".7z"):
        return _unpack_7z(path, scratch)
    with zipfile.ZipFile(path) as archive:
        members = [m for m in archive.infolist() if m.filename.lower().endswith(".csv") and not m.is_dir()
                   and m.file_size <= MAX_CSV_BYTES and "__macosx" not in m.filename.lower()]
        if not members:
            return None
        members.sort(key=lambda m: (not _is_sample_name(os.path.basename(m.filename)), m.filename))
        with archive.open(members[0]) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return target


def _unpack_7z(path: str, scratch: str) -> str | None:
    """The first CSV of a .7z, when the sandbox's Python has py7zr; None otherwise (the next candidate is tried)."""
    try:
        import py7zr
    except ImportError:
        return None
    try:
        with py7zr.SevenZipFile(path) as archive:
            names = sorted((n for n in archive.getnames() if n.lower().endswith(".csv")),
                           key=lambda n: (not _is_sample_name(os.path.basename(n)), n))
            if not names:
                return None
            archive.extract(path=scratch, targets=[names[0]])
    except Exception:  # noqa: BLE001 -- a damaged archive: try the next candidate
        return None
    found = os.path.join(scratch, names[0])
    return found if os.path.isfile(found) and not os.path.islink(found) else None


def find_sample(data_dir: str, scratch: str | None = None) -> str | None:
    """Path of a CSV holding the sample submission, or None. Archives are unpacked into `scratch`
    (a new temporary folder when not given); a damaged archive is skipped for the next candidate."""
    for path in candidates(data_dir):
        if path.lower().endswith(".csv"):
            return path
        scratch = scratch or tempfile.mkdtemp(prefix="sample-submission-")
        try:
            os.makedirs(scratch, exist_ok=True)
            unpacked = _unpack(path, scratch)
        except (OSError, zipfile.BadZipFile, EOFError):
            continue
        if unpacked:
            return unpacked
    return None
