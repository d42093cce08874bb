"""Kaggle: credentials, the preflight, and the competition download (resumable, retried, MD5-checked).

Downloads go through the `kaggle` package (the same API calls as `kaggle competitions download`).
Its package-level `import kaggle` authenticates at import time and exits without credentials, so only
`kaggle.api.kaggle_api_extended.KaggleApi` is imported, and only when a download or probe is needed.

A download lands in `<data>/<id>/.download/` first; the package appends to a partial file there with
an HTTP Range request (its `.kaggle-partial` marker proves the bytes belong to the same remote
file), so an interrupted job resumes instead of starting over. Only a complete file is moved to
`<data>/<id>/<id>.zip`, where upstream MLE-bench keeps it. Errors that may pass (HTTP 429, 5xx,
dropped connections) are retried with exponential backoff; refused rules, unknown competitions and
rejected credentials are not, because retrying cannot fix them.

The API key never reaches a message, manifest or report: messages pass through `scrub()`.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import stat
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hpc_mle import competitions, paths, prepared
from hpc_mle.download_record import MANIFEST
from hpc_mle.files import atomic_write_json, md5sum, resumable_dir
from hpc_mle.prepare_errors import CredentialsError, KaggleError, PrepareError, Unavailable  # re-exported

RULES_URL = "https://www.kaggle.com/c/{id}/rules"
TOKEN_URL = "https://www.kaggle.com/settings"
# Disk needed per competition = dataset size x this: the zip, its extracted files, the prepared split.
DISK_FACTOR = 3.0
PREPARE_JOB_MEM_GB = 16  # a prepare job's memory when no spec asks for more
DOWNLOAD_SUBDIR = ".download"
GB = 1024**3


# ---------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Credentials:
    """Where the credentials come from; the key itself is deliberately not kept here."""

    kind: str  # legacy-key | access-token
    source: str
    username: str | None = None
    warnings: tuple[str, ...] = ()


def config_dir(env: dict[str, str] | None = None) -> Path:
    """The folder the kaggle package reads kaggle.json from (same rule as the package)."""
    env = os.environ if env is None else env
    if env.get("KAGGLE_CONFIG_DIR"):
        return Path(env["KAGGLE_CONFIG_DIR"]).expanduser()
    home = Path(env.get("HOME") or Path.home())
    legacy = home / ".kaggle"
    if legacy.exists():
        return legacy
    return Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle"


def config_file(env: dict[str, str] | None = None) -> Path:
    return config_dir(env) / "kaggle.json"


def _fix_hint(path: Path) -> str:
    return (f"Fix: create an API token at {TOKEN_URL} (API, Create New Token), save the downloaded kaggle.json "
            f"as {path} and run `chmod 600 {path}`; or export KAGGLE_USERNAME and KAGGLE_KEY "
            "(or KAGGLE_API_TOKEN for a new-style token).")


def _token_file(env: dict[str, str]) -> Path | None:
    home = Path(env.get("HOME") or Path.home())
    for name in ("access_token", "access_token.txt"):
        p = home / ".kaggle" / name
        if p.is_file() and p.read_text(errors="replace").strip():
            return p
    return None


def find_credentials(env: dict[str, str] | None = None) -> Credentials:
    """The credentials the kaggle package would use, checked locally (no network); else CredentialsError.

    Order as in the package: an access token (KAGGLE_API_TOKEN, ~/.kaggle/access_token), then the
    legacy username and key from kaggle.json, where KAGGLE_USERNAME / KAGGLE_KEY override the file.
    """
    env = dict(os.environ if env is None else env)
    token = env.get("KAGGLE_API_TOKEN", "").strip()
    if token:
        if "/" in token and not Path(token).is_file():
            raise CredentialsError(f"KAGGLE_API_TOKEN names a file, {token}, that does not exist. "
                                   "Fix: point it at the token file or set it to the token itself.")
        return Credentials("access-token", "environment variable KAGGLE_API_TOKEN")
    if token_path := _token_file(env):
        return Credentials("access-token", str(token_path))

    path = config_file(env)
    values: dict[str, Any] = {}
    warnings: list[str] = []
    env_user, env_key = env.get("KAGGLE_USERNAME", "").strip(), env.get("KAGGLE_KEY", "").strip()
    if path.is_file():
        mode = path.stat().st_mode
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            warnings.append(f"{path} is readable by other users. Fix: chmod 600 {path}")
        if not (env_user and env_key):
            try:
                values = json.loads(path.read_text(encoding="utf-8") or "null")
            except UnicodeDecodeError as exc:
                raise CredentialsError(f"{path}: not a text file ({exc.reason}). {_fix_hint(path)}") from None
            except json.JSONDecodeError as exc:
                raise CredentialsError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}). "
                                       f"It must look like {{\"username\": \"...\", \"key\": \"...\"}}. "
                                       f"{_fix_hint(path)}") from None
            except OSError as exc:
                raise CredentialsError(f"{path}: cannot be read ({exc.strerror}). Fix: chmod 600 {path} "
                                       "as its owner.") from None
            if not isinstance(values, dict):
                raise CredentialsError(f"{path}: must be a JSON object with fields 'username' and 'key', "
                                       f"got {type(values).__name__}. {_fix_hint(path)}")
    elif not (env_user or env_key):
        home = Path(env.get("HOME") or Path.home())
        # Where to put it: KAGGLE_CONFIG_DIR if set, else ~/.kaggle (once it exists the package reads it).
        suggested = path if env.get("KAGGLE_CONFIG_DIR") else home / ".kaggle" / "kaggle.json"
        looked = f"{path} does not exist" if path == suggested else f"neither {suggested} nor {path} exists"
        raise CredentialsError(f"no Kaggle credentials: {looked}, and KAGGLE_USERNAME / KAGGLE_KEY "
                               f"are not set. {_fix_hint(suggested)}")
    user = env_user or str(values.get("username") or "").strip()
    key = env_key or str(values.get("key") or "").strip()
    for name, value, var in (("username", user, "KAGGLE_USERNAME"), ("key", key, "KAGGLE_KEY")):
        if not value:
            where = f"{path}: field '{name}' is missing or empty" if path.is_file() else f"{var} is not set"
            raise CredentialsError(f"{where}. {_fix_hint(path)}")
    if env_user and env_key:
        source = "environment variables KAGGLE_USERNAME / KAGGLE_KEY"
    elif env_user or env_key:
        source = f"{path} with {'KAGGLE_USERNAME' if env_user else 'KAGGLE_KEY'} from the environment"
    else:
        source = str(path)
    return Credentials("legacy-key", source, user, tuple(warnings))


def _secrets() -> list[str]:
    """The secret values in use, only to blank them out of messages."""
    found = [os.environ.get(v, "") for v in ("KAGGLE_KEY", "KAGGLE_API_TOKEN")]
    try:
        data = json.loads(config_file().read_text(encoding="utf-8"))
        if isinstance(data, dict):
            found.append(str(data.get("key") or ""))
    except (OSError, ValueError):
        pass
    return [s for s in found if len(s) >= 6]


def scrub(text: str) -> str:
    for secret in _secrets():
        text = text.replace(secret, "***")
    return text


# ---------------------------------------------------------------- the package's client


def _api():
    """An authenticated KaggleApi (imported here, not at module import, so nothing authenticates early)."""
    find_credentials()  # our clear message first; the package would print help and exit(1)
    from kaggle.api.kaggle_api_extended import KaggleApi

    api = KaggleApi()
    # The package fixes these when first imported; follow the environment as it is now.
    api.config_dir = str(config_dir())
    api.config = str(config_file())
    if os.environ.get("KAGGLE_API_ENVIRONMENT") == "LOCALHOST" and "--local" not in api.args:
        api.args = [*api.args, "--local"]
    try:
        api.authenticate()
    except SystemExit:
        raise CredentialsError(f"the kaggle package found no usable credentials. {_fix_hint(config_file())}") from None
    return api


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    value = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: rate limits, server errors, dropped connections, a short file."""
    import requests

    status = _status(exc)
    if status is not None:
        return status == 429 or status >= 500
    return isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout
                      | requests.exceptions.ChunkedEncodingError | ValueError)


def classify(exc: BaseException, cid: str) -> KaggleError:
    """A package or HTTP error as our error, with the reason and the fix."""
    status, message = _status(exc), scrub(str(exc))
    if status == 401:
        creds = find_credentials()
        return CredentialsError(f"Kaggle rejected the credentials from {creds.source} (HTTP 401: {message}). "
                                f"Fix: create a new API token at {TOKEN_URL} and replace the old one.")
    if status == 403 and "accept" in message.lower():
        return Unavailable(f"rules not accepted ({message}). Fix: open {RULES_URL.format(id=cid)}, accept the rules "
                           "with the account of your API token, then run again.", "rules")
    if status == 403:
        return Unavailable(f"access refused (HTTP 403: {message}). Fix: check the competition page "
                           f"{RULES_URL.format(id=cid)} with the account of your API token.", "refused")
    if status == 404:
        return Unavailable(f"Kaggle does not know competition {cid!r} (HTTP 404).", "not-found")
    return Unavailable(f"download failed: {type(exc).__name__}: {message}", "failed")


@dataclass
class RetryPolicy:
    attempts: int = 5
    base_s: float = 2.0
    max_s: float = 120.0

    def delay(self, attempt: int, exc: BaseException) -> float:
        hinted = _retry_after(exc)
        if hinted is not None:
            return min(hinted, self.max_s)
        return min(self.base_s * 2 ** (attempt - 1) * (1 + random.random() / 4), self.max_s)


DEFAULT_RETRY = RetryPolicy()


def with_retries(fn: Callable[[], Any], cid: str, policy: RetryPolicy | None = None,
                 log: Callable[[str], None] = lambda _m: None) -> Any:
    policy = policy or DEFAULT_RETRY
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn()
        except KaggleError:
            raise
        except Exception as exc:  # noqa: BLE001 -- the package raises requests, urllib3 and plain errors
            if not is_transient(exc) or attempt == policy.attempts:
                raise classify(exc, cid) from None
            wait = policy.delay(attempt, exc)
            log(f"{cid}: {scrub(str(exc))[:200]}; retry {attempt}/{policy.attempts - 1} in {wait:.1f} s")
            time.sleep(wait)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- download and extraction


def zip_path(cid: str, data_dir=None) -> Path:
    return paths.competition_dir(cid, data_dir) / f"{cid}.zip"


def expected_zip_md5(cid: str, data_dir=None) -> str | None:
    """The zip's MD5 from an imported upstream checksums.yaml, if any."""
    from hpc_mle import upstream

    sums = upstream.imported_checksums(cid, data_dir)
    value = (sums or {}).get("zip")
    return str(value) if value else None


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def needs_download(cid: str, data_dir=None) -> bool:
    """True when preparing would call Kaggle: a kaggle spec, not prepared, no raw files, no complete zip."""
    spec = competitions.get(cid)
    # The cheap checks first: is_prepared hashes every prepared file.
    return (spec.download == "kaggle" and spec.implemented and not _has_files(paths.raw_dir(cid, data_dir))
            and not zip_path(cid, data_dir).is_file() and not prepared.is_prepared(cid, data_dir))


def download(cid: str, data_dir=None, policy: RetryPolicy | None = None,
             log: Callable[[str], None] = lambda _m: None) -> Path:
    """`<data>/<id>/<id>.zip` from Kaggle, resuming a partial download left in `.download/`."""
    final = zip_path(cid, data_dir)
    if final.is_file():
        return final
    api = _api()
    staging = final.parent / DOWNLOAD_SUBDIR
    staging.mkdir(parents=True, exist_ok=True)
    partial = staging / final.name
    if partial.is_file():
        log(f"{cid}: resuming {partial} from {partial.stat().st_size} bytes")

    def attempt() -> None:
        api.competition_download_files(cid, path=str(staging), quiet=True)
        if not partial.is_file() or (staging / f"{final.name}.kaggle-partial").exists():
            raise ValueError(f"download of {cid} ended without a complete {partial.name}")

    try:
        with_retries(attempt, cid, policy, log)
    except KaggleError:
        if not any(staging.iterdir()):
            staging.rmdir()  # nothing to resume: leave no trace
        raise
    os.replace(partial, final)
    shutil.rmtree(staging, ignore_errors=True)
    return final


def check_zip(cid: str, archive: Path, data_dir=None) -> str:
    """MD5 of the zip, compared with upstream's when imported; returns the MD5."""
    got = md5sum(archive)
    want = expected_zip_md5(cid, data_dir)
    if want and got != want:
        raise Unavailable(f"{archive}: MD5 {got} differs from upstream's {want} (imported checksums.yaml). The file "
                          f"is damaged or Kaggle changed the data since MLE-bench recorded it. Fix: delete {archive} "
                          "and run again to download it anew; if it differs again, results are not comparable.",
                          "checksum")
    return got


def extract(archive: Path, raw: Path) -> None:
    """Unpack into `raw/` atomically: a staging folder renamed into place, so raw/ is never half-full.

    A killed extraction (hundreds of GB for the largest downloads) is resumed: members already unpacked
    whole are kept; the staging folder is trusted only for the same archive (name, size, time).
    """
    stat_ = archive.stat()
    key = {"archive": archive.name, "bytes": stat_.st_size, "mtime_ns": stat_.st_mtime_ns}
    with resumable_dir(raw, "raw", key) as staging:
        if archive.suffix == ".zip":
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    if not _already_extracted(info, staging):
                        zf.extract(info, staging)
        elif archive.suffix == ".7z":
            try:
                import py7zr
            except ImportError:
                raise PrepareError(f"{archive}: a 7z archive needs py7zr. Fix: pip install py7zr") from None
            with py7zr.SevenZipFile(archive) as zf:
                zf.extractall(staging)
        else:
            raise PrepareError(f"{archive}: cannot extract {archive.suffix} archives (zip and 7z only).")


def _already_extracted(info: zipfile.ZipInfo, staging: Path) -> bool:
    """Whether a member is on disk whole from a killed run (only plain relative names: zipfile cleans others)."""
    parts = Path(info.filename).parts
    if info.is_dir() or not parts or Path(info.filename).is_absolute() or ".." in parts:
        return False
    target = staging.joinpath(*parts)
    return target.is_file() and not target.is_symlink() and target.stat().st_size == info.file_size


def fetch(cid: str, data_dir=None, policy: RetryPolicy | None = None,
          log: Callable[[str], None] = lambda _m: None) -> Path | None:
    """Make `raw/` hold the extracted Kaggle download; None when raw files are already there."""
    raw = paths.raw_dir(cid, data_dir)
    if _has_files(raw):
        return None
    archive = download(cid, data_dir, policy, log)
    md5 = check_zip(cid, archive, data_dir)
    extract(archive, raw)
    atomic_write_json(archive.parent / MANIFEST, {
        "competition_id": cid, "zip": archive.name, "bytes": archive.stat().st_size, "md5": md5,
        "md5_expected": expected_zip_md5(cid, data_dir), "kaggle_package": _package_version(),
        "extracted_at": datetime.now(UTC).isoformat(timespec="seconds"),
    })
    return raw


def _package_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kaggle")
    except PackageNotFoundError:
        return None


# ---------------------------------------------------------------- preflight


@dataclass
class Probe:
    rules: str  # accepted | not accepted | unknown
    size_bytes: int | None = None
    reason: str | None = None


def probe(api, cid: str) -> Probe:
    """Ask Kaggle for the download without reading it: a 403 means the rules are not accepted."""
    from kagglesdk.competitions.types.competition_api_service import ApiDownloadDataFilesRequest

    def ask() -> Probe:
        with api.build_kaggle_client() as client:
            request = ApiDownloadDataFilesRequest()
            request.competition_name = cid
            response = client.competitions.competition_api_client.download_data_files(request)
            size = response.headers.get("Content-Length")
            response.close()
        return Probe("accepted", int(size) if size and size.isdigit() else None)

    try:
        return with_retries(ask, cid, RetryPolicy(attempts=3, base_s=1.0, max_s=10.0))
    except CredentialsError:
        raise
    except Unavailable as exc:
        return Probe("not accepted" if exc.kind == "rules" else "unknown", None, str(exc))


@dataclass
class CheckRow:
    competition_id: str
    download: str
    state: str  # prepared | raw files present | downloaded | partial download | to download | no preparer yet
    rules: str = "-"
    size_gb: float | None = None
    need_gb: float = 0.0
    memory_gb: float | None = None  # the spec's peak memory of one preparation
    blocker: str | None = None
    notes: list[str] = field(default_factory=list)  # files from outside Kaggle (spec extra_downloads)


@dataclass
class Preflight:
    rows: list[CheckRow]
    credentials: Credentials | None
    data_root: Path
    free_gb: float
    need_gb: float
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not any(r.blocker for r in self.rows)


def free_bytes(root: Path) -> int:
    """Free space where `root` is (or would be created): its nearest existing ancestor."""
    probe_at = root
    while not probe_at.exists() and probe_at != probe_at.parent:
        probe_at = probe_at.parent
    return shutil.disk_usage(probe_at).free


def usable_memory_gb() -> float:
    """Memory a preparation here may use: the node's total, or less where a cgroup (a Slurm job) caps it."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total / GB


def slurm_memory_gb(ids: list[str], floor_gb: int = PREPARE_JOB_MEM_GB) -> int:
    """What a prepare job asks Slurm for: the largest spec figure plus a quarter for safety, at least the floor."""
    specs = competitions.registry()
    need = max((specs[c].prepare_memory_gb or 0.0 for c in ids if c in specs), default=0.0)
    return max(floor_gb, math.ceil(need * 1.25))


def _memory_blocker(spec, memory_gb: float, where: str) -> str | None:
    if spec.prepare_memory_gb is None or spec.prepare_memory_gb <= memory_gb:
        return None
    return (f"a preparation needs about {spec.prepare_memory_gb:g} GB of memory, {where} has {memory_gb:.1f} GB. "
            f"Fix: `hpc-mle prepare --slurm` (asks for it) or a node with more memory.")


def preflight(ids: list[str], data_dir=None, memory_gb: float | None = None, ask_kaggle: bool = True) -> Preflight:
    """What `prepare` would do for each competition and what would stop it; writes nothing.

    `memory_gb` is what the preparation will have (a Slurm job's --mem); by default this node's memory.
    Raises CredentialsError when a download is needed and no usable credentials exist. With `ask_kaggle`
    false, Kaggle is not asked (rules "?", sizes from the specs): what can be said before credentials exist.
    """
    specs = competitions.registry()
    rows: list[CheckRow] = []
    to_probe: list[CheckRow] = []
    for cid in ids:
        spec = specs[cid]
        row = CheckRow(cid, spec.download, "", size_gb=spec.dataset_size_gb, memory_gb=spec.prepare_memory_gb)
        if not spec.implemented:
            row.state, row.blocker = "no preparer yet", "its data preparation is not written yet"
        elif prepared.is_prepared(cid, data_dir):
            row.state = "prepared"
        elif spec.download != "kaggle" or _has_files(paths.raw_dir(cid, data_dir)):
            row.state = "raw files present" if spec.download == "kaggle" else "packaged data"
        elif zip_path(cid, data_dir).is_file():
            row.state = "downloaded"
            row.need_gb = _disk_gb(spec) - (spec.dataset_size_gb or 0.0)
        else:
            partial = paths.competition_dir(cid, data_dir) / DOWNLOAD_SUBDIR / f"{cid}.zip"
            row.state = "partial download" if partial.is_file() else "to download"
            to_probe.append(row)
        if spec.implemented and spec.extra_downloads and row.state != "prepared":
            from hpc_mle import extra_downloads

            row.notes = extra_downloads.preflight_notes(spec, paths.raw_dir(cid, data_dir))
            row.need_gb += extra_downloads.missing_bytes(spec, paths.raw_dir(cid, data_dir)) / GB
        rows.append(row)
    creds = find_credentials() if to_probe and ask_kaggle else None
    if to_probe and ask_kaggle:
        api = _api()
        try:
            api.competitions_list(page_size=1)  # one authenticated call: are the credentials accepted?
        except Exception as exc:  # noqa: BLE001
            raise classify(exc, "-") from None
        for row in to_probe:
            found = probe(api, row.competition_id)
            row.rules = found.rules
            if found.reason:
                row.blocker = found.reason
            if row.size_gb is None and found.size_bytes:
                row.size_gb = found.size_bytes / GB
    for row in to_probe:
        row.rules = row.rules if ask_kaggle else "?"
        row.need_gb += specs[row.competition_id].prepare_disk_gb or (row.size_gb or 0.0) * DISK_FACTOR
    memory = usable_memory_gb() if memory_gb is None else memory_gb
    where = "this node" if memory_gb is None else "the job"
    for row in rows:
        if row.state != "prepared" and not row.blocker:
            row.blocker = _memory_blocker(specs[row.competition_id], memory, where)
    root = paths.data_root(data_dir)
    free = free_bytes(root) / GB
    need = sum(r.need_gb for r in rows)
    problems = []
    if need > free:
        problems.append(f"not enough disk at {root}: about {need:.1f} GB needed (each spec's prepare_disk_gb, else "
                        f"{DISK_FACTOR:g} x each dataset: zip, extracted, prepared), {free:.1f} GB free. Fix: free "
                        "space or use --data-dir on a larger disk.")
    return Preflight(rows, creds, root, free, need, problems)


def _disk_gb(spec) -> float:
    """Peak disk of one preparation: the spec's figure, else the download times DISK_FACTOR."""
    return spec.prepare_disk_gb or (spec.dataset_size_gb or 0.0) * DISK_FACTOR


# ---------------------------------------------------------------- Slurm


def load_cluster(name: str):
    """A cluster config (an option of conf/cluster/ or the user conf dir, as the launcher finds it, or a path
    to a YAML) over the typed schema."""
    from omegaconf import OmegaConf

    from hpc_mle.config import ClusterConf, config_dirs, group_options

    options = group_options(config_dirs()).get("cluster", {})
    path = Path(name) if name.endswith((".yaml", ".yml")) else options.get(name, Path(f"conf/cluster/{name}.yaml"))
    if not path.is_file():
        raise PrepareError(f"no cluster config {path}. Fix: pass --cluster NAME of one of {', '.join(sorted(options))} "
                           f"(conf/cluster/ or {paths.user_conf_dir() / 'cluster'}), or a path to a YAML file.")
    cluster = OmegaConf.merge(OmegaConf.structured(ClusterConf), OmegaConf.load(path))
    if cluster.kind != "slurm":
        raise PrepareError(f"{path}: field 'kind' is {cluster.kind!r}; --slurm needs a Slurm cluster (kind: slurm).")
    return cluster


def prepare_job_name(ids: list[str]) -> str:
    """`prepare-<first id>[+N]`: squeue's first characters say what is being prepared."""
    return f"prepare-{ids[0] if ids else 'none'}" + (f"+{len(ids) - 1}" if len(ids) > 1 else "")
