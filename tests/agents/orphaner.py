"""Test agent: writes a submission, leaves an orphaned daemon behind (double fork) and exits at once."""

import os
import shutil
import subprocess
import sys

marker = sys.argv[1]
sample = os.path.join(os.environ["DATA_DIR"], "sample_submission.csv")
shutil.copyfile(sample, os.path.join(os.environ["SUBMISSION_DIR"], "submission.csv"))
sleeper = [sys.executable, "-c", "import time; time.sleep(1000)", marker]
daemon = f"import subprocess; subprocess.Popen({sleeper!r}, start_new_session=True)"
subprocess.run([sys.executable, "-c", daemon], check=True)  # its parent exits: the sleep is an orphan
