"""`competitions import-upstream`: take what we may not ship from the user's clone of openai/mle-bench.

Kaggle's human leaderboards, the original descriptions and upstream's `checksums.yaml` live in the
user's clone (after `git lfs pull`). They are copied into the data dir, never into this repo:

    <data>/<id>/leaderboard.csv                  grading looks here first (paths.leaderboard_candidates)
    <data>/<id>/upstream/description.md          `prepare --description upstream` puts it in public/
    <data>/<id>/upstream/description_obfuscated.md
    <data>/<id>/upstream/checksums.yaml          the zip's MD5 for downloads; our prepared files are checked
    <data>/<id>/upstream/source.json             which clone and commit they came from

Everything is read and checked before anything is written, so a clone with Git LFS pointers instead
of files leaves the data dir as it was.

Verification recomputes upstream's checksum dict for our prepared folder: MD5 of the top-level files
of public/ and private/ with extensions csv, json, jsonl, parquet or bson, as v1 lists them. Files in
sub-folders and archives (v1's re-zipped `.zip`, `.tar.gz`, `.7z`) are not in upstream's checksums, so
they can be neither confirmed nor refuted by them (and a zip's bytes hold its members' times: no two
preparations agree on them anyway). A parquet file's bytes depend on the library that wrote it (v1's
icecube wrote them with fastparquet, so upstream's own check fails there, #58): a differing parquet MD5
is reported as not comparable by bytes, never as a mismatch; compare such files by content.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml

from hpc_mle import download_record, paths
from hpc_mle.files import atomic_write_bytes, atomic_write_json, md5sum

LFS_MAGIC = b"version https://git-lfs"
CHECKSUM_EXTENSIONS = ("csv", "json", "jsonl", "parquet", "bson")
WRITER_DEPENDENT = ("parquet",)  # bytes vary with the writing library and its version; the content does not
FILES = ("leaderboard.csv", "description.md", "description_obfuscated.md", "checksums.yaml")
SUBDIR = "upstream"


class UpstreamError(ValueError):
    """The path is not a usable upstream clone; the message says what to do."""


def upstream_dir(cid: str, data_dir=None) -> Path:
    return paths.competition_dir(cid, data_dir) / SUBDIR


def imported_description(cid: str, data_dir=None) -> Path | None:
    path = upstream_dir(cid, data_dir) / "description.md"
    return path if path.is_file() else None


def imported_checksums(cid: str, data_dir=None) -> dict | None:
    path = upstream_dir(cid, data_dir) / "checksums.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def is_lfs_pointer(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(LFS_MAGIC)) == LFS_MAGIC


def competitions_dir(clone: Path) -> Path:
    """`mlebench/competitions/` of a clone (or the folder itself when it already is that)."""
    clone = Path(clone).expanduser()
    for candidate in (clone / "mlebench" / "competitions", clone):
        if candidate.is_dir() and any(candidate.glob("*/config.yaml")):
            return candidate.resolve()
    raise UpstreamError(f"{clone}: no mlebench/competitions/<id>/config.yaml found. Fix: pass the root of a clone "
                        "of https://github.com/openai/mle-bench (after `git lfs pull` in it).")


def _commit(clone: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


# ---------------------------------------------------------------- verification


def checksum_dict(public: Path, private: Path) -> dict[str, dict[str, str]]:
    """Upstream's checksum layout for a prepared folder (top-level data files only)."""

    def part(folder: Path) -> dict[str, str]:
        if not folder.is_dir():
            return {}
        return {p.name: md5sum(p) for p in sorted(folder.iterdir())
                if p.is_file() and p.suffix.lstrip(".") in CHECKSUM_EXTENSIONS}

    return {"public": part(public), "private": part(private)}


@dataclass
class Verification:
    state: str  # match | mismatch | not prepared | no checksums
    files: list[str] = field(default_factory=list)  # what differs: public/train.csv (missing|extra|md5), zip
    not_comparable: list[str] = field(default_factory=list)  # writer-dependent files whose MD5 differs

    def text(self) -> str:
        text = self.state + (f": {', '.join(self.files)}" if self.files else "")
        if self.not_comparable:
            text += f" (not comparable by bytes, compare content: {', '.join(self.not_comparable)})"
        return text


def verify(cid: str, data_dir=None) -> Verification:
    """Our prepared files against the imported upstream checksums.yaml."""
    want = imported_checksums(cid, data_dir)
    if want is None:
        return Verification("no checksums")
    if not paths.checksum_file(cid, data_dir).is_file():
        return Verification("not prepared")
    got = checksum_dict(paths.public_dir(cid, data_dir), paths.private_dir(cid, data_dir))
    diffs, not_comparable = [], []
    for part in ("public", "private"):
        w, g = want.get(part) or {}, got[part]
        for name in sorted(set(w) | set(g)):
            if name not in g:
                diffs.append(f"{part}/{name} (missing)")
            elif name not in w:
                diffs.append(f"{part}/{name} (extra)")
            elif str(w[name]) != g[name] and name.rpartition(".")[2] in WRITER_DEPENDENT:
                not_comparable.append(f"{part}/{name}")
            elif str(w[name]) != g[name]:
                diffs.append(f"{part}/{name} (md5)")
    if want.get("zip"):
        recorded = download_record.recorded_md5(cid, data_dir)
        if recorded and recorded != str(want["zip"]):
            diffs.append("zip (md5)")
    return Verification("mismatch" if diffs else "match", diffs, not_comparable)


# ---------------------------------------------------------------- import


@dataclass
class Imported:
    competition_id: str
    files: list[str]  # which of FILES were copied
    leaderboard_rows: int | None
    verification: Verification


def _scan(source: Path, ids: list[str]) -> dict[str, dict[str, bytes]]:
    """Read what to copy for each id; raise UpstreamError on LFS pointers before anything is written."""
    found: dict[str, dict[str, bytes]] = {}
    pointers: list[Path] = []
    for cid in ids:
        folder = source / cid
        if not folder.is_dir():
            continue
        found[cid] = {}
        for name in FILES:
            path = folder / name
            if not path.is_file():
                continue
            if is_lfs_pointer(path):
                pointers.append(path)
            else:
                found[cid][name] = path.read_bytes()
    if pointers:
        clone = source.parent.parent if source.parent.name == "mlebench" else source
        raise UpstreamError(f"{len(pointers)} file(s) are Git LFS pointers, not the files themselves (e.g. "
                            f"{pointers[0]}). Fix: run `git lfs pull` in {clone}, then import again. "
                            "Nothing was imported.")
    return found


def _rows(csv_bytes: bytes) -> int:
    lines = [line for line in csv_bytes.decode("utf-8", errors="replace").splitlines() if line.strip()]
    return max(0, len(lines) - 1)


def import_upstream(clone: str | Path, ids: list[str], data_dir=None) -> list[Imported]:
    """Copy leaderboards, descriptions and checksums for `ids` from the clone, then verify each."""
    source = competitions_dir(Path(clone))
    found = _scan(source, ids)
    commit = _commit(source)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    results = []
    for cid, files in found.items():
        for name, data in files.items():
            target = paths.competition_dir(cid, data_dir) / name if name == "leaderboard.csv" \
                else upstream_dir(cid, data_dir) / name
            atomic_write_bytes(target, data)
        if files:
            atomic_write_json(upstream_dir(cid, data_dir) / "source.json",
                              {"clone": str(source), "commit": commit, "imported_at": now, "files": sorted(files)})
        rows = _rows(files["leaderboard.csv"]) if "leaderboard.csv" in files else None
        results.append(Imported(cid, sorted(files), rows, verify(cid, data_dir)))
    return results
