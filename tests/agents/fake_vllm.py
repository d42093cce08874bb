"""A stand-in for `vllm serve` in tests (no GPU, no vLLM here): same arguments, same three endpoints.

    python fake_vllm.py MODEL --host H --port P --tensor-parallel-size N [--fake-delay S] [other vLLM args]

GET /health (200 once "loaded", after --fake-delay seconds), GET /v1/models (the model),
POST /v1/chat/completions (a fixed answer with usage; its system_fingerprint names the
Slurm job and pid that answered). Its argv goes to stderr (the server log).
As vLLM, with $VLLM_API_KEY set the /v1 paths answer 401 unless `Authorization: Bearer <key>`.
Standard library only.
"""

import argparse
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--fake-delay", type=float, default=0.0, help="seconds before /health says ready")
    args, other = parser.parse_known_args()
    print(f"fake_vllm argv: {json.dumps(sys.argv[1:])}", file=sys.stderr, flush=True)
    ready_at = time.monotonic() + args.fake_delay
    key = os.environ.get("VLLM_API_KEY")
    served_by = f"job {os.environ.get('SLURM_JOB_ID') or '-'} pid {os.getpid()}"  # which server of a relay answered

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: dict | None = None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def refused(self) -> bool:
            if key and self.path.startswith("/v1") and self.headers.get("Authorization") != f"Bearer {key}":
                self._send(401, {"error": "Unauthorized"})
                return True
            return False

        def do_GET(self) -> None:  # noqa: N802
            if self.refused():
                return
            if self.path == "/health":
                self._send(200 if time.monotonic() >= ready_at else 503)
            elif self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": args.model, "object": "model",
                                                             "owned_by": "fake_vllm"}],
                                 "tensor_parallel_size": args.tensor_parallel_size, "other_args": other})
            else:
                self._send(404, {"error": f"no {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            request = json.loads(self.rfile.read(length) or b"{}")
            if self.refused():
                return
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": f"no {self.path}"})
                return
            self._send(200, {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                             "model": request.get("model", args.model), "system_fingerprint": served_by,
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": "hello from fake_vllm"}}],
                             "usage": {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}})

        def log_message(self, *_args) -> None:
            pass

    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
