"""Test agent: copies the description and instructions it was given to its logs, and submits the sample."""

import os
import shutil

data, logs = os.environ["DATA_DIR"], os.environ["LOGS_DIR"]
shutil.copyfile(os.path.join(data, "description.md"), os.path.join(logs, "description.md"))
shutil.copyfile("/home/instructions.txt", os.path.join(logs, "instructions.txt"))
shutil.copyfile(os.path.join(data, "sample_submission.csv"), os.path.join(os.environ["SUBMISSION_DIR"], "submission.csv"))
