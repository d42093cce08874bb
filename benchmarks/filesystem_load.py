"""Load on a shared filesystem: metadata operations per attempt-hour, and a launch's data check (issue 17).

Lustre and GPFS serve every create, rename, unlink and fsync through a metadata server that the whole
cluster shares; 64 attempts each rewriting status.json once a second with fsync is 64 such operations a
second for days. Two measurements:

    python benchmarks/filesystem_load.py status [--sleep 60] [--before REV]
        runs a dummy attempt that sleeps --sleep seconds (sandbox none: only the harness's own file
        operations are of interest) in a child process whose os.replace/rename/unlink/fsync/mkdir and
        opens for writing are counted, once with this checkout and once with the source of commit REV
        (`git archive`, the code before the change). A second attempt that does not sleep gives the fixed
        cost of a start and an end; the difference is the running rate, and one attempt-hour is the fixed
        cost plus an hour at that rate.

    python benchmarks/filesystem_load.py launch --data-dir D [--repeat 3]
        times `hpc-mle launch benchmark=lite --dry-run` (the preflight, which checks every prepared
        competition) over data prepared by `python tests/synthetic_downloads.py --split lite --data-dir D`,
        with the quick check (names and sizes) and with the full MD5 check the launch used before; and
        measures this machine's MD5 throughput to extrapolate the full check to Lite's real size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LITE_REAL_GB = 158.0  # Lite's prepared size on disk (issue 17; docs/competitions.md)
FLEET = 64  # attempts running at once in the example

# Runs in the child: count the file operations that reach a metadata server, by op and by file.
COUNTER = r'''
import builtins, collections, io, json, os, sys, time
from pathlib import Path

counts = collections.Counter()

def kind(path):
    name = os.path.basename(str(path))
    for known in ("status.json", "config.json", "events.jsonl", "telemetry.csv", "validator.jsonl"):
        if name == known or name.startswith("." + known + "."):
            return known
    return "snapshots" if "/snapshots" in str(path) else "other"

def fd_path(fd):
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"

def wrap(module, name, op, path_of):
    real = getattr(module, name)
    def counted(*args, **kwargs):
        counts[(op, kind(path_of(*args, **kwargs)))] += 1
        return real(*args, **kwargs)
    setattr(module, name, counted)

for name in ("replace", "rename"):
    wrap(os, name, "rename", lambda src, dst, *a, **k: dst)
for name in ("unlink", "remove"):
    wrap(os, name, "unlink", lambda p, *a, **k: p)
wrap(os, "mkdir", "mkdir", lambda p, *a, **k: p)
wrap(os, "fsync", "fsync", lambda fd: fd_path(fd if isinstance(fd, int) else fd.fileno()))

real_os_open = os.open
def os_open(path, flags, *args, **kwargs):
    if flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR):
        counts[("open-write", kind(path))] += 1
    return real_os_open(path, flags, *args, **kwargs)
os.open = os_open

real_open = builtins.open
def any_open(file, mode="r", *args, **kwargs):
    if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
        counts[("open-write", kind(file))] += 1
    return real_open(file, mode, *args, **kwargs)
builtins.open = io.open = any_open

from hpc_mle import runner
params = json.loads(sys.argv[1])
cfg = runner.AttemptConfig(competition_id=params["competition"], scaffold="dummy", out=Path(params["out"]),
                           sandbox="none", time_limit_s=params["sleep"] + 120, data_dir=params["data"],
                           agent_args=("--sleep", str(params["sleep"])))
t0 = time.monotonic()
status = runner.run_attempt(cfg)
print(json.dumps({"state": status["state"], "agent_elapsed_s": status["agent_elapsed_s"],
                  "wall_s": time.monotonic() - t0,
                  "counts": [[op, k, n] for (op, k), n in sorted(counts.items())]}))
'''


def count_attempt(source: Path, data: Path, out: Path, sleep: float, competition: str) -> dict:
    """One dummy attempt run by the code in `source`, with its file operations counted."""
    params = json.dumps({"competition": competition, "out": str(out), "sleep": sleep, "data": str(data)})
    env = {**os.environ, "PYTHONPATH": str(source)}
    done = subprocess.run([sys.executable, "-c", COUNTER, params], env=env, capture_output=True, text=True,
                          cwd=source, timeout=sleep + 300)
    if done.returncode != 0:
        raise SystemExit(f"the counted attempt ({source}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def source_of(rev: str, into: Path) -> Path:
    """The checkout's tree at `rev`, extracted (the code before the change, run as it was)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "hpc_mle", "competitions", "conf"],
                             capture_output=True, check=True).stdout
    into.mkdir(parents=True)
    archive_path = into / "src.tar"
    archive_path.write_bytes(archive)
    with tarfile.open(archive_path) as tar:
        tar.extractall(into, filter="data")
    return into


def _tally(result: dict) -> dict[str, int]:
    counts = result["counts"]
    return {"total": sum(n for _, _, n in counts), "status": sum(n for _, k, n in counts if k == "status.json"),
            "fsync": sum(n for op, _, n in counts if op == "fsync")}


def per_hour(short: dict, long: dict) -> dict[str, float]:
    """An attempt-hour's operations: the fixed cost (the attempt that does not sleep) plus an hour at the rate
    measured between the two attempts."""
    a, b = _tally(short), _tally(long)
    seconds = max(long["agent_elapsed_s"] - short["agent_elapsed_s"], 1e-9)
    return {**b, **{f"{k}_per_hour": a[k] + (b[k] - a[k]) / seconds * 3600 for k in a}}


def status_benchmark(args: argparse.Namespace) -> None:
    from hpc_mle import prepare

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        prepare.prepare(args.competition, data)
        runs = {"before": source_of(args.before, Path(tmp) / "before"), "after": ROOT}
        rows = {}
        for label, source in runs.items():
            short = count_attempt(source, data, Path(tmp) / f"short-{label}", 0, args.competition)
            result = count_attempt(source, data, Path(tmp) / f"attempt-{label}", args.sleep, args.competition)
            rows[label] = (result, per_hour(short, result))
    print(f"dummy attempt, sandbox none, --sleep {args.sleep:g} s; before = {args.before}, after = this checkout")
    print(f"{'':8} {'agent s':>8} {'ops':>6} {'status.json':>12} {'fsync':>6} | per attempt-hour: "
          f"{'all ops':>8} {'status.json':>12} {'fsync':>7} | {FLEET} attempts: ops/s")
    for label, (result, h) in rows.items():
        print(f"{label:8} {result['agent_elapsed_s']:8.1f} {h['total']:6d} {h['status']:12d} {h['fsync']:6d} | "
              f"{'':17}{h['total_per_hour']:8.0f} {h['status_per_hour']:12.0f} {h['fsync_per_hour']:7.0f} | "
              f"{h['total_per_hour'] * FLEET / 3600:.2f}")
    for label, (result, _) in rows.items():
        print(f"{label}: " + ", ".join(f"{op} {k} {n}" for op, k, n in result["counts"]))
    print("(per attempt-hour: the fixed cost of one start and end, plus an hour at the measured running rate)")


def launch_seconds(data_dir: Path, output_root: Path, full: bool, checked: list[str]) -> float:
    """Wall time of a dry-run launch of Lite (planning and the preflight), in this process; the competitions
    whose data the preflight checked are appended to `checked`."""
    from hpc_mle import launch, prepare

    real = prepare.verify

    def verify(cid, data_dir=None, quick=False):
        checked.append(cid)
        return real(cid, data_dir, quick=quick and not full)  # full: as before, every byte read and MD5-hashed

    prepare.verify = verify
    try:
        t0 = time.perf_counter()
        code = launch.launch(["benchmark=lite", "scaffold=dummy", "cluster=local", f"data_dir={data_dir}",
                              f"output_root={output_root}", "--dry-run"])
        took = time.perf_counter() - t0
    finally:
        prepare.verify = real
    if code != 0:
        raise SystemExit(f"the dry run refused the launch (exit {code}): is {data_dir} prepared for Lite?")
    return took


def md5_rate(size_mb: int = 256) -> float:
    """MB/s of the full check's MD5 on one file already in the page cache: the hashing alone, an upper bound
    for the rate on a real (cold, shared) filesystem."""
    from hpc_mle import prepare

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "block"
        path.write_bytes(os.urandom(1 << 20) * size_mb)
        t0 = time.perf_counter()
        prepare.md5sum(path)
        return size_mb * (1 << 20) / 1e6 / (time.perf_counter() - t0)


def launch_benchmark(args: argparse.Namespace) -> None:
    import contextlib
    import io

    data_dir = args.data_dir.resolve()
    times: dict[str, list[float]] = {"quick": [], "full": []}
    checked: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            for label in times:
                with contextlib.redirect_stdout(io.StringIO()):
                    times[label].append(launch_seconds(data_dir, Path(tmp) / f"{label}{i}", label == "full", checked))
    mbps = md5_rate()
    size = sum(p.stat().st_size for p in data_dir.rglob("*") if p.is_file() and "/prepared/" in str(p))
    print(f"Lite dry-run launch over {data_dir}: {len(set(checked))} competitions checked, {size / 1e6:.1f} MB "
          f"prepared (synthetic), {args.repeat} runs each, page cache warm")
    for label, values in times.items():
        print(f"  {label:5} check: median {statistics.median(values):.2f} s  (min {min(values):.2f}, "
              f"max {max(values):.2f})")
    print(f"  MD5 here: {mbps:.0f} MB/s (one core, file in the page cache): the full check of Lite's real "
          f"~{LITE_REAL_GB:g} GB takes at least {LITE_REAL_GB * 1e3 / mbps / 60:.0f} min at that rate, longer when "
          "the shared filesystem delivers less; the quick check reads no byte (one stat per file)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    status = sub.add_parser("status", help="metadata operations per attempt-hour, before and after")
    status.add_argument("--sleep", type=float, default=60.0, help="seconds the dummy agent sleeps")
    status.add_argument("--before", default="f670f83", help="the commit whose code is 'before' (git archive)")
    status.add_argument("--competition", default="mini-churn")
    launch = sub.add_parser("launch", help="Lite launch time, quick vs full data check")
    launch.add_argument("--data-dir", type=Path, required=True)
    launch.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    (status_benchmark if args.what == "status" else launch_benchmark)(args)


if __name__ == "__main__":
    main()
