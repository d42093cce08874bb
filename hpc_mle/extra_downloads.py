"""Files a preparation needs from outside Kaggle (spec `extra_downloads`), fetched into `raw/`.

freesound-audio-tagging-2019's test labels were published on Zenodo after the competition, so v1's
preparer downloads them itself. Here the spec names the file (URL, name, MD5 where known, size), the
preflight (`hpc-mle prepare --check`) says it is needed and that compute nodes have no internet, and
`prepare` fetches it before running the preparer unless the file is already in `raw/` (placed there
by hand, or by an earlier run). The download is streamed to `<data>/<id>/.download-extra/`, resumed
with an HTTP Range request after an interruption, retried on transient errors, MD5-checked when the
spec gives one, and only a complete file is moved into `raw/`.
"""

from __future__ import annotations

import http.client
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hpc_mle.competitions import CompetitionSpec, ExtraDownload
from hpc_mle.files import md5sum
from hpc_mle.prepare_errors import Unavailable

STAGING_SUBDIR = ".download-extra"
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0
USER_AGENT = "hpc-mle (MLE-bench preparation)"
MB = 1024**2


@dataclass(frozen=True)
class Retry:
    attempts: int = 5
    base_s: float = 2.0
    max_s: float = 60.0

    def delay(self, attempt: int) -> float:
        return min(self.base_s * 2 ** (attempt - 1), self.max_s)


class _Transient(Exception):
    """A failure worth another try (dropped connection, short body, HTTP 429 or 5xx)."""


class _NoNetwork(Exception):
    """The host name does not resolve: no internet here (a compute node); retrying cannot help."""


def _manual_fetch(item: ExtraDownload, raw: Path) -> str:
    return f"curl -L -o {raw / item.file} '{item.url}'"


def missing(spec: CompetitionSpec, raw: Path) -> list[ExtraDownload]:
    """The spec's extra files not yet in `raw/`."""
    return [item for item in spec.extra_downloads if not (raw / item.file).is_file()]


def preflight_notes(spec: CompetitionSpec, raw: Path) -> list[str]:
    """One line per extra file for `prepare --check`: present, or where it comes from and how to get it."""
    notes = []
    for item in spec.extra_downloads:
        if (raw / item.file).is_file():
            notes.append(f"{item.source} file {item.file}: present in {raw}")
            continue
        size = f" (~{item.size_bytes / MB:.1f} MB)" if item.size_bytes else ""
        notes.append(f"needs the {item.source} file {item.file}{size} from {item.url}, which `prepare` downloads; "
                     f"compute nodes have no internet: prepare on a login node, or fetch it there with "
                     f"`{_manual_fetch(item, raw)}`")
    return notes


def missing_bytes(spec: CompetitionSpec, raw: Path) -> int:
    """Approximate bytes still to download (for the preflight's disk estimate)."""
    return sum(item.size_bytes or 0 for item in missing(spec, raw))


def fetch_all(spec: CompetitionSpec, raw: Path, download_root: Path, *, retry: Retry | None = None,
              log: Callable[[str], None] = lambda _m: None) -> list[Path]:
    """Every extra file of the spec in `raw/`: checked where present, else downloaded."""
    return [fetch(item, raw, download_root / STAGING_SUBDIR, retry=retry, log=log) for item in spec.extra_downloads]


def fetch(item: ExtraDownload, raw: Path, staging: Path, *, retry: Retry | None = None,
          log: Callable[[str], None] = lambda _m: None) -> Path:
    """`raw/<file>`: the file already there (MD5 checked when known), or downloaded and then moved there."""
    target = raw / item.file
    if target.is_file():
        _check_md5(item, target, f"Fix: delete {target} and prepare again to download it anew.")
        return target
    staging.mkdir(parents=True, exist_ok=True)
    partial = staging / item.file
    retry = retry or Retry()
    for attempt in range(1, retry.attempts + 1):
        try:
            _download(item, partial, log)
            break
        except (_Transient, _NoNetwork) as exc:
            if attempt == retry.attempts or isinstance(exc, _NoNetwork):
                tries = f"after {attempt} tries " if isinstance(exc, _Transient) else ""
                raise Unavailable(f"{item.file}: could not be downloaded from {item.source} {tries}({exc}). "
                                  "Compute nodes usually have no internet: run `hpc-mle prepare` on a login "
                                  f"node, or fetch the file there with `{_manual_fetch(item, raw)}`.",
                                  "network") from None
            wait = retry.delay(attempt)
            log(f"{item.file}: {exc}; retry {attempt}/{retry.attempts - 1} in {wait:.1f} s")
            time.sleep(wait)
    try:
        _check_md5(item, partial, "Fix: prepare again to download it anew; if it differs again, the file "
                                  f"at {item.url} has changed and results would not be comparable.")
    except Exception:
        partial.unlink(missing_ok=True)
        raise
    raw.mkdir(parents=True, exist_ok=True)
    os.replace(partial, target)
    try:
        staging.rmdir()
    except OSError:
        pass  # other partial files remain
    log(f"{item.file}: downloaded from {item.source} ({target.stat().st_size} bytes)")
    return target


def _check_md5(item: ExtraDownload, path: Path, fix: str) -> None:
    if item.md5 and (got := md5sum(path)) != item.md5:
        raise Unavailable(f"{path}: MD5 {got} differs from the expected {item.md5} of the {item.source} file. "
                          f"{fix}", "checksum")


def _download(item: ExtraDownload, partial: Path, log: Callable[[str], None]) -> None:
    """Stream the URL into `partial`, continuing after the bytes it already has when the server allows."""
    have = partial.stat().st_size if partial.is_file() else 0
    request = urllib.request.Request(item.url, headers={"User-Agent": USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)  # noqa: S310 -- the spec's https URL
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left after what we have, or the file changed: start over
            partial.unlink()
            raise _Transient("the server refused to resume; starting over") from None
        if exc.code == 429 or exc.code >= 500:
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
        raise Unavailable(f"{item.file}: {item.source} answered HTTP {exc.code} {exc.reason} for {item.url}. "
                          "Fix: check the URL in the spec's extra_downloads; if the record moved, place the file "
                          f"in raw/ by hand.", "not-found" if exc.code == 404 else "refused") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, socket.gaierror):
            raise _NoNetwork(f"cannot resolve the host of {item.url}: {exc.reason}") from None
        raise _Transient(f"{type(exc).__name__}: {exc.reason}") from None
    except OSError as exc:
        raise _Transient(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None
    with response:
        resumed = have and response.status == 206
        if have and not resumed:
            log(f"{item.file}: the server does not resume; downloading from the start")
        expected = _expected_size(response, have if resumed else 0)
        try:
            with partial.open("ab" if resumed else "wb") as fh:
                while chunk := response.read(CHUNK_BYTES):
                    fh.write(chunk)
        except (OSError, http.client.HTTPException) as exc:
            raise _Transient(f"connection dropped ({type(exc).__name__})") from None
    if expected is not None and partial.stat().st_size != expected:
        raise _Transient(f"got {partial.stat().st_size} of {expected} bytes")


def _expected_size(response, offset: int) -> int | None:
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None
