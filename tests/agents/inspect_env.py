"""Test agent: records its environment, what it can see, and the validator over localhost:5000."""

import json
import os
import shutil
import sys
import urllib.request
import uuid

logs = os.environ["LOGS_DIR"]
sample = os.path.join(os.environ["DATA_DIR"], "sample_submission.csv")
submission = os.path.join(os.environ["SUBMISSION_DIR"], "submission.csv")
shutil.copyfile(sample, submission)

reply = None
url = os.environ.get("VALIDATION_URL")
if url:
    boundary = uuid.uuid4().hex
    with open(submission, "rb") as fh:
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"s.csv\"\r\n\r\n").encode()
        body += fh.read() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    for _ in range(50):  # the forwarder starts alongside the agent
        try:
            reply = json.loads(urllib.request.urlopen(request, timeout=30).read())
            break
        except OSError:
            import time

            time.sleep(0.1)

with open(os.path.join(logs, "inspect.json"), "w") as fh:
    json.dump({"env": dict(os.environ), "validator_reply": reply, "root": sorted(os.listdir("/")),
               "home": sorted(os.listdir("/home")),
               "exists": {p: os.path.exists(p) for p in sys.argv[1:]}}, fh, indent=2)
