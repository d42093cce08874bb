"""Test agent: writes a submission, then ignores SIGTERM (as does its child) and never stops: only KILL ends it."""

import os
import shutil
import signal
import subprocess
import sys
import time

marker = sys.argv[1]
signal.signal(signal.SIGTERM, signal.SIG_IGN)
sample = os.path.join(os.environ["DATA_DIR"], "sample_submission.csv")
shutil.copyfile(sample, os.path.join(os.environ["SUBMISSION_DIR"], "submission.csv"))
subprocess.Popen(["sh", "-c", f"trap '' TERM; sleep 1000; : {marker}"])
print("ignoring TERM", flush=True)
while True:
    time.sleep(0.2)
