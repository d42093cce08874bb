"""Test agent: writes a first submission, improves it twice, a second apart, then stops."""

import os
import shutil
import time

import pandas as pd

sample = pd.read_csv(os.path.join(os.environ["DATA_DIR"], "sample_submission.csv"))
path = os.path.join(os.environ["SUBMISSION_DIR"], "submission.csv")
for step in range(3):
    sample.iloc[:, 1] = 0.5 + 0.01 * step
    sample.to_csv(path + ".tmp", index=False)
    shutil.move(path + ".tmp", path)
    time.sleep(1.2)
