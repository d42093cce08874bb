"""Send a submission to this attempt's validator and print its answer (valid or not, never a score).

Runs inside the sandbox with any Python 3; standard library only.
Usage: python3 validate.py [PATH]   (default: $SUBMISSION_DIR/submission.csv)
Exit code 0 = valid, 1 = invalid or missing, 2 = validator unreachable.
"""

import http.client
import json
import os
import socket
import sys
import uuid

SOCKET = os.environ.get("VALIDATOR_SOCKET", "/run/hpc-mle/validator.sock")


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=600)
        self.unix_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.unix_path)
        self.sock = sock


def main():
    default = os.path.join(os.environ.get("SUBMISSION_DIR", "/home/submission"), "submission.csv")
    path = sys.argv[1] if len(sys.argv) > 1 else default
    if not os.path.isfile(path):
        print(json.dumps({"result": f"File {path} does not exist.", "valid": False}))
        return 1
    with open(path, "rb") as fh:
        content = fh.read()
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"submission.csv\"\r\n"
            "Content-Type: text/csv\r\n\r\n").encode()
    body = head + content + f"\r\n--{boundary}--\r\n".encode()
    try:
        conn = UnixConnection(SOCKET)
        conn.request("POST", "/validate", body=body,
                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        reply = json.loads(conn.getresponse().read() or b"{}")
    except OSError as exc:
        print(json.dumps({"result": f"validator unreachable at {SOCKET}: {exc}", "valid": False}))
        return 2
    print(json.dumps(reply))
    return 0 if reply.get("valid") else 1


if __name__ == "__main__":
    sys.exit(main())
