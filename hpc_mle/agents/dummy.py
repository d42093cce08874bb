"""The dummy agent: submits the sample submission, and checks that the sandbox holds.

It runs inside the sandbox with the standard library only. It
1. copies the competition's sample submission to $SUBMISSION_DIR/submission.csv (found by
   sample_submission.py, beside this file, wherever and however the data folder holds it);
2. tries to read the private answers (every path given with --probe, plus the usual places) and
   records, for each, that it could not (the isolation self-test);
3. lists which of the host's secrets and Slurm variables it can see in its environment;
4. calls the validator and records its answer;
5. with --sleep, stays busy a while (to exercise time limits, requeues and cancellation).
Everything it saw goes to $LOGS_DIR/dummy.json, so tests and users can check the sandbox.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # sample_submission.py sits beside this file
from sample_submission import find_sample  # noqa: E402

DEFAULT_PROBES = ("/private", "/home/data/../private", "/home/private", "/root/.cache/hpc-mle/data",
                  "/data", "/root/.kaggle/kaggle.json")
SECRET_HINTS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "SLURM_", "KAGGLE")


def probe(path: str) -> dict:
    """Try to list or read `path`; report what happened, never the content."""
    result = {"path": path}
    try:
        if os.path.isdir(path):
            result["readable"] = True
            result["entries"] = len(os.listdir(path))
        else:
            with open(path, "rb") as fh:
                fh.read(16)
            result["readable"] = True
    except OSError as exc:
        result["readable"] = False
        result["error"] = exc.strerror or type(exc).__name__
    return result


def first_line(path: str) -> str | None:
    """The description's title line: says whether the original or the obfuscated one was mounted."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.readline().strip()
    except OSError:
        return None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--probe", action="append", default=[], help="another path that must be unreadable")
    parser.add_argument("--sleep", type=float, default=0.0,
                        help="stay busy this long after submitting (to exercise time limits and requeues)")
    args = parser.parse_args()

    data = os.environ.get("DATA_DIR", "/home/data")
    submission_dir = os.environ.get("SUBMISSION_DIR", "/home/submission")
    logs = os.environ.get("LOGS_DIR", "/home/logs")
    record = {"uid": os.getuid(), "python": sys.executable, "competition": os.environ.get("COMPETITION_ID"),
              "hardware": os.environ.get("HARDWARE"), "time_limit_secs": os.environ.get("TIME_LIMIT_SECS"),
              "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}

    sample = find_sample(data)
    record["sample_submission"] = sample
    if sample:
        shutil.copyfile(sample, os.path.join(submission_dir, "submission.csv"))

    record["probes"] = [probe(p) for p in [*DEFAULT_PROBES, *args.probe]]
    record["private_readable"] = any(p["readable"] for p in record["probes"])
    record["suspicious_env"] = sorted(k for k in os.environ if any(h in k.upper() for h in SECRET_HINTS))
    record["data_writable"] = os.access(data, os.W_OK)
    record["description_title"] = first_line(os.path.join(data, "description.md"))  # which variant it was given

    script = os.environ.get("HPC_MLE_VALIDATE_SCRIPT", "/home/validate_submission.sh")
    try:
        out = subprocess.run(["sh", script], capture_output=True, text=True, timeout=300)
        record["validator"] = {"exit_code": out.returncode, "output": out.stdout.strip()}
    except (OSError, subprocess.TimeoutExpired) as exc:
        record["validator"] = {"exit_code": None, "output": str(exc)}

    for name in ("CODE_DIR", "AGENT_DIR"):
        directory = os.environ.get(name)
        if directory:
            with open(os.path.join(directory, "dummy-was-here.txt"), "w") as fh:
                fh.write("written by the dummy agent\n")
    with open(os.path.join(logs, "dummy.json"), "w") as fh:
        json.dump(record, fh, indent=2)
    print(json.dumps({"private_readable": record["private_readable"], "validator": record["validator"]}), flush=True)
    if args.sleep:
        time.sleep(args.sleep)
    return 0 if sample else 1


if __name__ == "__main__":
    sys.exit(main())
