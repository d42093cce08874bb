"""The validation endpoint an agent may call: outside the sandbox, on a per-attempt Unix socket.

It checks a submission with the competition's own grader but answers only "valid" or "invalid" and
the reason, never a score (MLE-bench's contract). Every call is logged to `validator.jsonl`. Being
a Unix socket bound into the sandbox, it needs no network and two attempts on one node never
collide; inside a sandbox with its own network namespace a forwarder also serves it at
`http://localhost:5000/validate`, the address MLE-bench agents expect.

Endpoints (as upstream): `GET /health`, `POST /validate` with the CSV as multipart field `file` (or as
the raw body). Reply: `{"result": "<message>", "valid": bool}`.
"""

from __future__ import annotations

import json
import os
import socketserver
import tempfile
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from hpc_mle import grading
from hpc_mle.files import atomic_write_bytes

MAX_UPLOAD = 2 * 1024**3


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    competition_id: str
    data_dir: Path | None
    log_path: Path
    upload_dir: Path
    lock: threading.Lock
    calls: int = 0


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format, *args):  # the access log is validator.jsonl, not stderr
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (http.server's naming)
        if self.path.rstrip("/") == "/health":
            self._reply(200, {"status": "running"})
        else:
            self._reply(404, {"error": "unknown path; use POST /validate or GET /health"})

    def do_POST(self):  # noqa: N802
        if self.path.rstrip("/") != "/validate":
            self._reply(404, {"error": "unknown path; use POST /validate"})
            return
        started = time.time()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_UPLOAD:
            self._log(started, length, False, "upload too large")
            self._reply(413, {"result": "Submission invalid: upload too large", "valid": False})
            return
        body = self.rfile.read(length)
        payload = _file_from_body(self.headers.get("Content-Type", ""), body)
        with self.server.lock:
            self.server.calls += 1
            n = self.server.calls
        upload = self.server.upload_dir / f"validate-{n:05d}.csv"
        atomic_write_bytes(upload, payload)
        try:
            valid, message = grading.validate_submission(upload, self.server.competition_id, self.server.data_dir)
        except Exception as exc:  # a setup problem: say so, as upstream's 500
            self._log(started, len(payload), False, f"server error: {exc}")
            self._reply(500, {"error": "An unexpected error occurred.", "details": str(exc)})
            return
        finally:
            upload.unlink(missing_ok=True)
        self._log(started, len(payload), valid, message)
        self._reply(200, {"result": message, "valid": valid})

    def _log(self, started: float, size: int, valid: bool, message: str) -> None:
        line = json.dumps({"time": started, "duration_s": round(time.time() - started, 4), "bytes": size,
                           "valid": valid, "result": message})
        with self.server.lock, open(self.server.log_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def _file_from_body(content_type: str, body: bytes) -> bytes:
    """The uploaded file: multipart field `file` (curl -F file=@x.csv) or the raw body."""
    if not content_type.startswith("multipart/form-data"):
        return body
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            return part.get_payload(decode=True) or b""
    return b""


class Validator:
    """A running validator; `stop()` (or leaving the `with` block) shuts it down."""

    def __init__(self, socket_path: Path, competition_id: str, data_dir, log_path: Path) -> None:
        socket_path = Path(socket_path)
        socket_path.unlink(missing_ok=True)
        self.socket_path = socket_path
        self.server = _Server(str(socket_path), _Handler)
        os.chmod(socket_path, 0o666)  # an agent running as another uid (apptainer fakeroot) may connect
        self.server.competition_id = competition_id
        self.server.data_dir = data_dir
        self.server.log_path = Path(log_path)
        self.server.upload_dir = Path(tempfile.mkdtemp(prefix="hpcmle-uploads-"))
        self.server.lock = threading.Lock()
        self.thread = threading.Thread(target=self.server.serve_forever, name="validator", daemon=True)
        self.thread.start()

    @property
    def calls(self) -> int:
        return self.server.calls

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.socket_path.unlink(missing_ok=True)
        try:
            self.server.upload_dir.rmdir()
        except OSError:
            pass

    def __enter__(self) -> Validator:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
