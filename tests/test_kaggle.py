"""Kaggle downloads, preflight and credentials, against a local fake of Kaggle's API (tests/fake_kaggle.py).

The real `kaggle` package does the talking; only the server is a stand-in, because kaggle.com cannot
be reached here. Competitions are test specs (`download: kaggle`, preparer `support:prepare_tiny`).
"""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from fake_kaggle import FakeKaggle
from slurm_cluster import slurm_env  # noqa: F401  (session fixture)

from hpc_mle import files, kaggle, paths, prepare
from hpc_mle.cli import main
from hpc_mle.files import md5sum
from support import write_spec

TESTS = Path(__file__).resolve().parent
ZIP_MIB = 3


def kaggle_zip(extra_mib: int = 0) -> bytes:
    """A Kaggle-style download: CSVs plus (optionally) incompressible bulk, so it streams in chunks."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("train.csv", "id,x,target\n1,0.1,0\n2,0.9,1\n")
        zf.writestr("test.csv", "id,x\n3,0.2\n4,0.8\n")
        if extra_mib:
            zf.writestr("images/blob.bin", os.urandom(extra_mib << 20))
    return buf.getvalue()


@pytest.fixture
def fake(tmp_path, monkeypatch, synthetic):
    """A running fake Kaggle, credentials in a private kaggle.json, fast retries, test specs in `synthetic.root`."""
    server = FakeKaggle().start()
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home / ".kaggle"))
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    write_credentials(home / ".kaggle", {"username": server.username, "key": server.key})
    monkeypatch.setattr(kaggle, "DEFAULT_RETRY", kaggle.RetryPolicy(attempts=4, base_s=0.01, max_s=0.05))
    server.synthetic = synthetic
    yield server
    server.stop()


def write_credentials(folder: Path, content, mode: int = 0o600) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "kaggle.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    path.chmod(mode)
    return path


def add_competition(server: FakeKaggle, cid: str, data: bytes | None = None, rules: bool = True, **spec) -> str:
    fields = {"split": "low", "download": "kaggle", "preparer": "support:prepare_tiny", "dataset_size_gb": 0.001,
              "leaderboard": {"source": "kaggle"}, **spec}
    write_spec(server.synthetic.root, cid, **fields)
    if data is not None:
        server.add(cid, data, rules_accepted=rules)
    return cid


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# ---------------------------------------------------------------- credentials and preflight


def test_credentials_problems_name_the_file_the_field_and_the_fix(fake, tmp_path, monkeypatch):
    add_competition(fake, "comp-a", kaggle_zip())
    data = tmp_path / "data"
    folder = Path(os.environ["KAGGLE_CONFIG_DIR"])
    (folder / "kaggle.json").unlink()
    cases = [
        (None, "does not exist", "KAGGLE_USERNAME"),
        ("{not json", "not valid JSON (line 1", "chmod 600"),
        (json.dumps({"username": "tester"}), "field 'key' is missing", "Create New Token"),
        (json.dumps(["tester", "key"]), "must be a JSON object", "kaggle.json"),
    ]
    for content, problem, fix in cases:
        if content is not None:
            write_credentials(folder, content)
        for args in (["--check"], []):
            out = cli("prepare", "--benchmark", "lite", "--data-dir", str(data), *args)
            text = " ".join(out.stderr.split())
            assert out.exit_code == 2, out.output
            assert str(folder / "kaggle.json") in text and problem in text and fix in text
            assert not data.exists()  # nothing half-written, not even the data dir
    assert not fake.seen  # never reached the network

    # The environment variables are the alternative; a readable file only warns.
    monkeypatch.setenv("KAGGLE_USERNAME", fake.username)
    monkeypatch.setenv("KAGGLE_KEY", fake.key)
    assert kaggle.find_credentials().source.startswith("environment variables")
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    write_credentials(folder, {"username": fake.username, "key": fake.key}, mode=0o644)
    creds = kaggle.find_credentials()
    assert creds.kind == "legacy-key" and "chmod 600" in creds.warnings[0]
    assert fake.key not in repr(creds)
    monkeypatch.setenv("KAGGLE_API_TOKEN", "KGAT_0123456789")
    assert kaggle.find_credentials().kind == "access-token"


def test_wrong_key_is_rejected_by_kaggle_with_a_fix(fake, tmp_path):
    add_competition(fake, "comp-a", kaggle_zip())
    write_credentials(Path(os.environ["KAGGLE_CONFIG_DIR"]), {"username": fake.username, "key": "wrong-key-123456"})
    out = cli("prepare", "--benchmark", "lite", "--check", "--data-dir", str(tmp_path / "data"))
    text = " ".join(out.stderr.split())
    assert out.exit_code == 2 and "rejected the credentials" in text and "HTTP 401" in text
    assert "wrong-key-123456" not in out.output


def test_check_reports_rules_missing_preparers_and_disk(fake, tmp_path):
    add_competition(fake, "comp-a", kaggle_zip())
    add_competition(fake, "comp-rules", kaggle_zip(), rules=False)
    add_competition(fake, "comp-todo", implemented=False, preparer=None)
    data = tmp_path / "data"
    out = cli("prepare", "--benchmark", "lite", "--check", "--data-dir", str(data))
    assert out.exit_code == 1, out.output
    rows = {line.split("│")[1].strip(): line for line in out.stdout.splitlines() if line.count("│") > 3}
    assert "accepted" in rows["comp-a"] and "to download" in rows["comp-a"]
    assert "not accepted" in rows["comp-rules"] and "no preparer yet" in rows["comp-todo"]
    assert "kaggle.com/c/comp-rules/rules" in " ".join(out.stdout.split())
    assert "3 x each dataset" in out.stdout and not data.exists()
    assert fake.key not in out.output

    ok = cli("prepare", "-c", "comp-a", "--check", "--data-dir", str(data))
    assert ok.exit_code == 0 and "ready" in ok.stdout
    add_competition(fake, "comp-huge", kaggle_zip(), dataset_size_gb=1e7)
    full = cli("prepare", "-c", "comp-huge", "--check", "--data-dir", str(data))
    assert full.exit_code == 1 and "not enough disk" in " ".join(full.stderr.split())
    assert not any(s.method == "GET" and s.status == 200 and fake.sent.get(s.path) for s in fake.seen)


def test_check_refuses_a_preparation_that_needs_more_memory_or_disk_than_the_spec_allows(fake, tmp_path):
    """The spec's prepare_memory_gb / prepare_disk_gb: --check refuses early; a Slurm job asks for enough."""
    data = tmp_path / "data"
    node_gb = kaggle.usable_memory_gb()
    add_competition(fake, "comp-big", kaggle_zip(), prepare_memory_gb=round(node_gb * 4), prepare_disk_gb=1e7)
    add_competition(fake, "comp-small", kaggle_zip(), prepare_memory_gb=1, dataset_size_gb=0.001)
    out = cli("prepare", "-c", "comp-big", "-c", "comp-small", "--check", "--data-dir", str(data))
    rows = {line.split("│")[1].strip(): line for line in out.stdout.splitlines() if line.count("│") > 3}
    text = " ".join(out.stdout.split())
    assert out.exit_code == 1 and "1 competition(s) blocked; not enough disk" in " ".join(out.stderr.split())
    assert f"needs about {round(node_gb * 4)} GB of memory, this node has" in text and "--slurm" in text
    assert "10000000.00" in rows["comp-big"]  # the spec's disk figure, not 3 x the download
    assert "1" in rows["comp-small"].split("│")[7] and "memory" not in rows["comp-small"]
    # A job with enough memory unblocks it; the default job memory is the spec's figure plus a quarter.
    assert kaggle.slurm_memory_gb(["comp-small"]) == kaggle.PREPARE_JOB_MEM_GB
    assert kaggle.slurm_memory_gb(["comp-big", "comp-small"]) == math.ceil(round(node_gb * 4) * 1.25)
    roomy = kaggle.preflight(["comp-big"], data, memory_gb=kaggle.slurm_memory_gb(["comp-big"]))
    assert roomy.rows[0].blocker is None and roomy.problems  # memory fits the job; the disk still does not
    assert not data.exists()


def test_check_without_credentials_still_shows_disk_and_memory_from_the_specs(fake, tmp_path):
    """No kaggle.json yet: the table still gives each spec's disk and memory (rules unknown), then the fix."""
    (Path(os.environ["KAGGLE_CONFIG_DIR"]) / "kaggle.json").unlink()
    add_competition(fake, "comp-a", kaggle_zip(), prepare_memory_gb=3, prepare_disk_gb=0.5)
    add_competition(fake, "comp-b", kaggle_zip(), prepare_memory_gb=1.5, dataset_size_gb=0.002)
    data = tmp_path / "data"
    out = cli("prepare", "-c", "comp-a", "-c", "comp-b", "--check", "--data-dir", str(data))
    rows = {line.split("│")[1].strip(): line.split("│") for line in out.stdout.splitlines() if line.count("│") > 3}
    assert out.exit_code == 2 and "no Kaggle credentials" in " ".join(out.stderr.split())
    assert [c.strip() for c in rows["comp-a"][4:8]] == ["?", "0.00", "0.50", "3"]  # rules, size, disk, memory
    assert [c.strip() for c in rows["comp-b"][4:8]] == ["?", "0.00", "0.01", "1.5"]  # 3 x the download
    assert "at most 3 GB (comp-a)" in " ".join(out.stdout.split()) and f"ask for {kaggle.PREPARE_JOB_MEM_GB} GB" in out.stdout
    assert not fake.seen and not data.exists()


# ---------------------------------------------------------------- download, retry, resume, checksum


def test_prepare_downloads_retries_and_reports_the_unavailable(fake, tmp_path):
    add_competition(fake, "comp-a", kaggle_zip())
    add_competition(fake, "comp-rules", kaggle_zip(), rules=False)
    fake.failures[("DownloadDataFiles", "comp-a")] = [503, 429]  # transient: retried with backoff
    data = tmp_path / "data"
    out = cli("prepare", "--benchmark", "lite", "--data-dir", str(data))
    assert out.exit_code == 1, out.output  # one competition unavailable; the other went on
    text = " ".join(out.stdout.split())
    assert "unavailable" in text and "rules not accepted" in text
    assert prepare.is_prepared("comp-a", data) and not prepare.is_prepared("comp-rules", data)
    assert not (data / "comp-rules" / kaggle.DOWNLOAD_SUBDIR).exists()
    assert (paths.raw_dir("comp-a", data) / "train.csv").is_file()
    assert kaggle.zip_path("comp-a", data).is_file() and not (data / "comp-a" / ".download").exists()
    posts = [s.status for s in fake.requests_for("DownloadDataFiles") if s.status != 403]
    assert posts == [503, 429, 302]
    manifest = json.loads((data / "comp-a" / kaggle.MANIFEST).read_text())
    assert manifest["md5"] == md5sum(kaggle.zip_path("comp-a", data)) and manifest["md5_expected"] is None
    for path in data.rglob("*"):
        assert not path.is_file() or fake.key.encode() not in path.read_bytes()
    assert fake.key not in out.output

    again = cli("prepare", "-c", "comp-a", "--data-dir", str(data))
    assert again.exit_code == 0 and "already-prepared" in again.stdout
    assert len(fake.requests_for("DownloadDataFiles")) == 4  # nothing asked the second time


def test_a_killed_extraction_resumes_with_the_members_already_unpacked(tmp_path):
    archive = tmp_path / "comp.zip"
    members = {"train.csv": b"id,y\n1,0\n", "images/a.png": b"a" * 5000, "images/b.png": b"b" * 7000}
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    raw = tmp_path / "data" / "comp" / "raw"
    with pytest.raises(RuntimeError), files.resumable_dir(raw, "raw", {"archive": "comp.zip", "bytes": 0}):
        raise RuntimeError("a key of another archive: this partial folder must not be trusted")
    partial = raw.with_name(".raw.partial")
    stat_ = archive.stat()
    key = {"archive": archive.name, "bytes": stat_.st_size, "mtime_ns": stat_.st_mtime_ns}
    with pytest.raises(KeyboardInterrupt), files.resumable_dir(raw, "raw", key) as staging:
        (staging / "images").mkdir()
        (staging / "images" / "a.png").write_bytes(members["images/a.png"])  # unpacked whole
        (staging / "images" / "b.png").write_bytes(b"b" * 100)  # cut short by the kill
        raise KeyboardInterrupt
    whole = (partial / "images" / "a.png").stat().st_mtime_ns
    time.sleep(0.01)
    kaggle.extract(archive, raw)
    assert {p.relative_to(raw).as_posix(): p.read_bytes() for p in raw.rglob("*") if p.is_file()} == members
    assert (raw / "images" / "a.png").stat().st_mtime_ns == whole and not partial.exists()


def test_raw_files_present_means_no_download(fake, tmp_path):
    add_competition(fake, "comp-a")  # not even known to the server
    raw = paths.raw_dir("comp-a", tmp_path / "data")
    raw.mkdir(parents=True)
    (raw / "train.csv").write_text("id\n1\n")
    assert prepare.prepare("comp-a", tmp_path / "data").action == "prepared"
    assert not fake.seen


def test_zip_md5_is_checked_when_upstream_checksums_are_imported(fake, tmp_path):
    data = tmp_path / "data"
    payload = kaggle_zip()
    add_competition(fake, "comp-a", payload)
    sums = data / "comp-a" / "upstream" / "checksums.yaml"
    sums.parent.mkdir(parents=True)
    sums.write_text(yaml.safe_dump({"zip": "0" * 32, "public": {}, "private": {}}))
    outcome = prepare.prepare_many(["comp-a"], data)[0]
    assert outcome.result == "unavailable" and "MD5" in outcome.detail and "0" * 32 in outcome.detail
    assert not paths.raw_dir("comp-a", data).exists()  # a wrong zip is not extracted
    sums.write_text(yaml.safe_dump({"zip": md5sum(kaggle.zip_path("comp-a", data)), "public": {}, "private": {}}))
    assert prepare.prepare_many(["comp-a"], data)[0].result == "prepared"
    assert len(fake.requests_for("DownloadDataFiles")) == 1  # the zip was kept, not fetched again


def test_interrupted_download_resumes_with_a_range_request(fake, tmp_path):
    data = tmp_path / "data"
    payload = kaggle_zip(ZIP_MIB)
    add_competition(fake, "comp-a", payload)
    fake.stall_after["comp-a"] = (ZIP_MIB << 20) // 2  # the first transfer hangs half-way ...
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    proc = subprocess.Popen([sys.executable, "-m", "hpc_mle.cli", "prepare", "-c", "comp-a", "--data-dir", str(data)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    partial = data / "comp-a" / kaggle.DOWNLOAD_SUBDIR / "comp-a.zip"
    deadline = time.monotonic() + 30
    while not (partial.is_file() and partial.stat().st_size >= 1 << 20):
        assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read() if proc.poll() else "timeout"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # ... and the job dies (node failure, scancel)
    proc.wait()
    fake.release.set()
    have = partial.stat().st_size
    assert 0 < have < len(payload) and not kaggle.zip_path("comp-a", data).exists()

    result = prepare.prepare("comp-a", data)
    assert result.action == "prepared"
    ranges = [s for s in fake.requests_for("/files/") if s.range]
    assert ranges and ranges[-1].range == f"bytes={have}-" and ranges[-1].status == 206
    assert md5sum(kaggle.zip_path("comp-a", data)) == __import__("hashlib").md5(payload).hexdigest()
    assert (paths.raw_dir("comp-a", data) / "images" / "blob.bin").stat().st_size == ZIP_MIB << 20


def test_importing_our_modules_does_not_import_the_kaggle_package():
    code = ("import sys, hpc_mle.cli, hpc_mle.kaggle, hpc_mle.prepare, hpc_mle.upstream; "
            "print('kaggle' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


# ---------------------------------------------------------------- on the dev Slurm cluster


def test_prepare_as_a_slurm_job(fake, tmp_path, monkeypatch, slurm_env):  # noqa: F811
    for key in ("SLURM_CONF", "PATH"):
        monkeypatch.setenv(key, slurm_env[key])
    monkeypatch.setenv("PYTHONPATH", str(TESTS))  # the job imports support:prepare_tiny
    add_competition(fake, "comp-a", kaggle_zip())
    data = tmp_path / "data"
    out = cli("prepare", "-c", "comp-a", "--slurm", "--cluster", "dev", "--job-cpus", "1", "--job-mem-gb", "1",
              "--data-dir", str(data))
    assert out.exit_code == 0 and "submitted prepare job" in out.stdout, out.output
    job = out.stdout.split("submitted prepare job ")[1].split()[0]
    deadline = time.monotonic() + 300  # the dev cluster is shared: the job may queue behind others
    report = data / "prepare-report.json"
    while not report.is_file():
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job], env=slurm_env)
            pytest.fail(f"the prepare job {job} did not finish in 300 s")
        time.sleep(1)
    rows = json.loads(report.read_text())["competitions"]
    assert [(r["competition_id"], r["result"]) for r in rows] == [("comp-a", "prepared")]
    assert prepare.is_prepared("comp-a", data) and fake.requests_for("DownloadDataFiles")
