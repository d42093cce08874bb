"""The validation endpoint an agent may call: outside the sandbox, on a per-attempt Unix socket.

It checks a submission with the competition's own grader but answers only "valid" or "invalid" and
the reason, never a score (MLE-bench's contract). Every call is logged to `validator.jsonl`. Being
a Unix socket bound into the sandbox, it needs no network and two attempts on one node never
collide; inside a sandbox with its own network namespace a forwarder also serves it at
`http://localhost:5000/validate`, the address MLE-bench agents expect.

Endpoints (as upstream): `GET /health`, `POST /validate` with the CSV as multipart field `file` (or as
the raw body). Reply: `{"result": "<message>", "valid": bool}`.

The agent is an adversary and this runs outside its sandbox: one validation at a time per attempt (a
concurrent request waits for the one before it), uploads capped by grading's size rule and streamed
to disk in chunks (multipart too), reads under a timeout, and no answer, path or exception text in a
reply (those go to validator.jsonl, which the agent cannot read).
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import tempfile
import threading
import time
from email.parser import BytesHeaderParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from hpc_mle import grading
from hpc_mle.files import human_size

CHUNK = 1 << 20
READ_TIMEOUT_S = 60.0  # no byte from the client for this long ends the request
REQUEST_DEADLINE_S = 900.0  # a whole upload, however slowly it trickles in
BUSY_WAIT_S = 300.0  # a second concurrent request waits this long for the first, then gets 429
MULTIPART_SLACK = 64 * 1024  # headers and boundaries around the file in a multipart body
MAX_PART_HEADERS = 16 * 1024
LINGER_S = 2.0  # after a reply, how long the server reads (and drops) what the client still sends
LINGER_BYTES = 1 << 20


class UploadError(Exception):
    """The upload cannot be checked; `status` is the HTTP status and the message is safe to show the agent."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    competition_id: str
    data_dir: Path | None
    log_path: Path
    upload_dir: Path
    max_upload: int
    lock: threading.Lock
    busy: threading.Lock  # one validation at a time per attempt: the memory of one parse, never two

    def shutdown_request(self, request) -> None:
        """Close as HTTP servers do after refusing a body: send our end, drop what is still coming, then close.

        Closing a socket with unread bytes resets it, and the client may then lose the 413/429 reply it was
        sent before reading it. The drain is bounded by LINGER_S and LINGER_BYTES.
        """
        try:
            request.shutdown(socket.SHUT_WR)
            request.settimeout(LINGER_S)
            deadline, left = time.monotonic() + LINGER_S, LINGER_BYTES
            while left > 0 and time.monotonic() < deadline:
                data = request.recv(min(CHUNK, left))
                if not data:
                    break
                left -= len(data)
        except OSError:
            pass
        self.close_request(request)
    calls: int = 0


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = READ_TIMEOUT_S  # socket timeout for every read (StreamRequestHandler applies it)

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
        if not self.server.busy.acquire(timeout=BUSY_WAIT_S):  # requests queue here, their bodies unread
            self.close_connection = True
            self._refuse(started, 0, UploadError(429, f"another validation of this attempt ran for over "
                                                      f"{BUSY_WAIT_S:g} s; send one submission at a time"))
            return
        try:
            self._validate(started)
        finally:
            self.server.busy.release()

    def _validate(self, started: float) -> None:
        with self.server.lock:
            self.server.calls += 1
            n = self.server.calls
        upload = self.server.upload_dir / f"validate-{n:05d}.csv"
        try:
            size = self._receive(upload, started)
        except UploadError as exc:
            upload.unlink(missing_ok=True)
            self.close_connection = True
            self._refuse(started, 0, exc)
            return
        try:
            valid, message = grading.validate_submission(upload, self.server.competition_id, self.server.data_dir)
        except Exception as exc:  # a setup problem: logged for the operator, never shown to the agent
            self._log(started, size, False, f"server error: {type(exc).__name__}: {exc}")
            self._reply(500, {"error": "An unexpected error occurred."})
            return
        finally:
            upload.unlink(missing_ok=True)
        self._log(started, size, valid, message)
        self._reply(200, {"result": message, "valid": valid})

    def _receive(self, upload: Path, started: float) -> int:
        """Stream the uploaded file to `upload` in chunks; return its size. Never holds the body in memory."""
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.strip().isdigit():
            raise UploadError(411, "send the submission with a Content-Length (no chunked uploads)")
        length, cap = int(length_text), self.server.max_upload
        if length > cap + MULTIPART_SLACK:
            raise UploadError(413, f"upload is {human_size(length)}, over this competition's "
                                   f"{human_size(cap)} limit")
        body = _BodyReader(self.rfile, length, started + REQUEST_DEADLINE_S)
        content_type = self.headers.get("Content-Type", "")
        fd = os.open(upload, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            sink = _CappedSink(out, cap)
            if content_type.startswith("multipart/form-data"):
                _copy_multipart_field(body, _boundary(content_type), sink)
            else:
                while block := body.read(CHUNK):
                    sink.write(block)
        return sink.written

    def _refuse(self, started: float, size: int, exc: UploadError) -> None:
        message = f"Submission not checked: {exc}"
        self._log(started, size, False, message)
        self._reply(exc.status, {"result": message, "valid": False})

    def _log(self, started: float, size: int, valid: bool, message: str) -> None:
        line = json.dumps({"time": started, "duration_s": round(time.time() - started, 4), "bytes": size,
                           "valid": valid, "result": message})
        with self.server.lock, open(self.server.log_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


class _BodyReader:
    """At most `length` bytes of the request body, each read under the socket timeout and a whole-request deadline."""

    def __init__(self, rfile, length: int, deadline: float) -> None:
        self.rfile, self.left, self.deadline = rfile, length, deadline

    def read(self, n: int) -> bytes:
        if self.left <= 0:
            return b""
        if time.time() > self.deadline:
            raise UploadError(408, f"upload took longer than {REQUEST_DEADLINE_S:g} s")
        try:
            data = self.rfile.read1(min(n, self.left)) if hasattr(self.rfile, "read1") else self.rfile.read(
                min(n, self.left))
        except TimeoutError:
            raise UploadError(408, f"no data for {READ_TIMEOUT_S:g} s; upload abandoned") from None
        except OSError:
            raise UploadError(400, "the connection broke during the upload") from None
        if not data:
            raise UploadError(400, "the upload ended before its Content-Length")
        self.left -= len(data)
        return data


class _CappedSink:
    """Writes to a file, refusing more than `cap` bytes in all."""

    def __init__(self, out, cap: int) -> None:
        self.out, self.cap, self.written = out, cap, 0

    def write(self, data: bytes) -> None:
        self.written += len(data)
        if self.written > self.cap:
            raise UploadError(413, f"submission is over this competition's {human_size(self.cap)} limit")
        self.out.write(data)


def _boundary(content_type: str) -> bytes:
    message = BytesHeaderParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode())
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not boundary or len(boundary) > 200:
        raise UploadError(400, "multipart upload without a valid boundary")
    return boundary.encode()


def _copy_multipart_field(body: _BodyReader, boundary: bytes, sink: _CappedSink, field: str = "file") -> None:
    """Stream the content of the multipart field `field` (curl -F file=@x.csv) into `sink`, chunk by chunk.

    Memory stays at one chunk plus a boundary: content is written as soon as it cannot be the start of the
    next boundary. Raises UploadError when the body is not multipart or has no such field.
    """
    delim, sep = b"--" + boundary, b"\r\n--" + boundary
    buf, found = b"", False
    while (at := buf.find(delim)) < 0:  # the preamble, if any
        buf = buf[-len(delim):] + _more(body)
    buf = buf[at + len(delim):]
    while True:
        while len(buf) < 2:
            buf += _more(body)
        if buf.startswith(b"--"):  # the closing boundary
            break
        while (end := buf.find(b"\r\n\r\n")) < 0:
            if len(buf) > MAX_PART_HEADERS:
                raise UploadError(400, "multipart part headers are too long")
            buf += _more(body)
        headers = BytesHeaderParser(policy=HTTP).parsebytes(buf[:end].lstrip(b"\r\n") + b"\r\n\r\n")
        wanted = not found and headers.get_param("name", header="content-disposition") == field
        buf = buf[end + 4:]
        while (at := buf.find(sep)) < 0:
            keep = len(sep) - 1
            if wanted and len(buf) > keep:
                sink.write(buf[:-keep])
            buf = buf[-keep:] + _more(body)
        if wanted:
            sink.write(buf[:at])
            found = True
        buf = buf[at + len(sep):]
    if not found:
        raise UploadError(400, f"multipart upload has no field named '{field}'")


def _more(body: _BodyReader) -> bytes:
    data = body.read(CHUNK)
    if not data:
        raise UploadError(400, "multipart upload ends before its closing boundary")
    return data


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
        self.server.max_upload = grading.submission_size_limit(competition_id, data_dir)
        self.server.lock = threading.Lock()
        self.server.busy = threading.Lock()
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
