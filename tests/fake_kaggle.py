"""A local stand-in for Kaggle's API, for tests only: this machine cannot reach kaggle.com.

It speaks what the `kaggle` package (2.x, through kagglesdk) sends: JSON POSTs to
`/api/v1/competitions.CompetitionApiService/<Method>` with HTTP Basic auth, a 302 from
DownloadDataFiles to the file, and a file GET with ETag, Last-Modified and Range support. Errors
come as JSON `{"code": ..., "message": ...}` as Kaggle sends them.

The package is pointed here through its own switch, KAGGLE_API_ENVIRONMENT=LOCALHOST (which makes
it call http://localhost), and the standard HTTP_PROXY variable, which `requests` honours: the
server is the proxy for http://localhost, so it runs on any free port without root.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SERVICE = "/api/v1/competitions.CompetitionApiService/"
LAST_MODIFIED = "Mon, 01 Jan 2024 00:00:00 GMT"


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """Clients that hang up (a killed download, a probe that reads only the headers) are normal here."""


@dataclass
class Competition:
    data: bytes
    rules_accepted: bool = True
    etag: str = '"v1"'


@dataclass
class Seen:
    method: str
    path: str
    status: int
    range: str | None = None
    auth: str | None = None


@dataclass
class FakeKaggle:
    username: str = "tester"
    key: str = "k3y-0f-the-tester-000"
    competitions: dict[str, Competition] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    # Statuses to answer instead of the real thing, consumed in order: (method name or "file", id) -> [503, 429]
    failures: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    # Stop sending a file after this many bytes on its next full GET, and hang until `release` is set.
    stall_after: dict[str, int] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)
    sent: dict[str, int] = field(default_factory=dict)

    def start(self) -> FakeKaggle:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                fake._post(self)

            def do_GET(self) -> None:
                fake._get(self)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def env(self) -> dict[str, str]:
        """Environment that points the kaggle package here."""
        return {"KAGGLE_API_ENVIRONMENT": "LOCALHOST", "HTTP_PROXY": self.url, "http_proxy": self.url,
                "NO_PROXY": "", "no_proxy": ""}

    def add(self, cid: str, data: bytes, rules_accepted: bool = True) -> None:
        self.competitions[cid] = Competition(data, rules_accepted)

    def requests_for(self, path_part: str) -> list[Seen]:
        return [s for s in self.seen if path_part in s.path]

    # ---------------------------------------------------------------- handlers

    def _authorized(self, h: BaseHTTPRequestHandler) -> bool:
        want = "Basic " + base64.b64encode(f"{self.username}:{self.key}".encode()).decode()
        return h.headers.get("Authorization") == want

    def _json(self, h: BaseHTTPRequestHandler, status: int, body: dict, extra: dict | None = None) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _error(self, h: BaseHTTPRequestHandler, status: int, message: str, path: str) -> None:
        self.seen.append(Seen(h.command, path, status))
        extra = {"Retry-After": "0"} if status == 429 else None
        self._json(h, status, {"code": status, "message": message}, extra)

    def _injected(self, kind: str, cid: str) -> int | None:
        queue = self.failures.get((kind, cid))
        return queue.pop(0) if queue else None

    def _post(self, h: BaseHTTPRequestHandler) -> None:
        path = urlsplit(h.path).path
        body = json.loads(h.rfile.read(int(h.headers.get("Content-Length") or 0)) or b"{}")
        if not self._authorized(h):
            return self._error(h, 401, "Unauthenticated", path)
        method = path.removeprefix(SERVICE)
        cid = body.get("competitionName", "")
        if (status := self._injected(method, cid)) is not None:
            return self._error(h, status, "Service temporarily unavailable", path)
        if method == "ListCompetitions":
            comps = [{"ref": f"https://www.kaggle.com/competitions/{c}", "title": c,
                      "userHasEntered": comp.rules_accepted} for c, comp in self.competitions.items()]
            self.seen.append(Seen("POST", path, 200))
            return self._json(h, 200, {"competitions": comps[: body.get("pageSize") or 20]})
        if cid not in self.competitions:
            return self._error(h, 404, f"Competition {cid} not found", path)
        comp = self.competitions[cid]
        if method == "ListDataFiles":
            self.seen.append(Seen("POST", path, 200))
            return self._json(h, 200, {"files": [{"name": f"{cid}.zip", "totalBytes": len(comp.data)}]})
        if method == "DownloadDataFiles":
            if not comp.rules_accepted:
                return self._error(h, 403, "You must accept this competition's rules before you'll be able "
                                           "to download files.", path)
            self.seen.append(Seen("POST", path, 302))
            h.send_response(302)
            h.send_header("Location", f"http://localhost/files/{cid}.zip?token=signed")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return None
        return self._error(h, 404, f"no such method {method}", path)

    def _get(self, h: BaseHTTPRequestHandler) -> None:
        path = urlsplit(h.path).path
        cid = path.removeprefix("/files/").removesuffix(".zip")
        if not path.startswith("/files/") or cid not in self.competitions:
            return self._error(h, 404, "not found", path)
        if (status := self._injected("file", cid)) is not None:
            return self._error(h, status, "backend error", path)
        comp = self.competitions[cid]
        data, start = comp.data, 0
        rng = h.headers.get("Range")
        if rng and (h.headers.get("If-Range") in (None, comp.etag)):
            start = int(rng.removeprefix("bytes=").split("-")[0])
        status = 206 if start else 200
        self.seen.append(Seen("GET", path, status, rng, h.headers.get("Authorization")))
        h.send_response(status)
        h.send_header("Content-Type", "application/zip")
        h.send_header("Content-Length", str(len(data) - start))
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("ETag", comp.etag)
        h.send_header("Last-Modified", LAST_MODIFIED)
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.end_headers()
        stall = self.stall_after.pop(cid, None) if not start else None
        try:
            chunk = 64 * 1024
            for pos in range(start, len(data), chunk):
                if stall is not None and pos >= stall:
                    self.release.wait(60)
                    h.close_connection = True
                    return None
                h.wfile.write(data[pos:pos + chunk])
                self.sent[cid] = self.sent.get(cid, 0) + len(data[pos:pos + chunk])
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True
        return None
