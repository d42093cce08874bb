"""Test agent: writes a submission, starts children (one detached into its own session), never stops."""

import os
import shutil
import subprocess
import sys
import time

marker = sys.argv[1]
sample = os.path.join(os.environ["DATA_DIR"], "sample_submission.csv")
shutil.copyfile(sample, os.path.join(os.environ["SUBMISSION_DIR"], "submission.csv"))
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)", marker])  # an ordinary child
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)", marker], start_new_session=True)  # daemon
subprocess.Popen(["sh", "-c", f"trap '' TERM; sleep 1000; : {marker}"])  # ignores TERM: needs KILL
print("working forever", flush=True)
while True:
    time.sleep(1)
