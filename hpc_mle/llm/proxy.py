"""The metering proxy: one per attempt, outside the sandbox, between the agent and its model provider.

The agent gets a base URL and a random per-attempt token; this proxy checks the token, puts the real
key (read from its own environment, variable `api_key_env`) in its place and forwards the call. So
the key never enters the sandbox, and every call passes one place that can count it:

- each call is appended to `llm_calls.jsonl` (time, model, endpoint, status, tokens in/out, latency,
  cost, stream, retries, error) the moment it ends;
- the attempt's token and dollar budgets (`budget.max_tokens`, `budget.max_cost_usd`) are checked
  before each call; once spent, calls are refused with HTTP 403 in the provider's own error format
  (clients do not retry a 403). A call already under way when the budget runs out finishes, so a
  budget can be overshot by at most the calls in flight;
- upstream 429 and 5xx replies (and connection failures) are retried with exponential backoff that
  honours Retry-After, a bounded number of times; then the error is passed through;
- streams (SSE) are relayed event by event. OpenAI chat streams only report usage when asked, so the
  proxy asks (`stream_options.include_usage`) and removes that extra chunk if the client had not.

Protocols: OpenAI chat completions, responses and models (`/v1/chat/completions`, `/v1/responses`,
`/v1/models`) and Anthropic messages (`/v1/messages`, `/v1/messages/count_tokens`).

It runs as a thread of the attempt runner rather than a subprocess: the runner kills every process
descended from it when the agent stops (orphans included), it needs the proxy's totals for
status.json, and it already serves the validator the same way. For trying an agent by hand:
`python -m hpc_mle.llm.proxy --model-config conf/model/gpt4o.yaml --port 4000 --calls calls.jsonl`.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import hmac
import json
import logging
import os
import random
import re
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from hpc_mle.llm import prices, usage
from hpc_mle.llm.serving import BackgroundApp, tcp_socket, unix_socket

log = logging.getLogger(__name__)

DEFAULT_BASE_URLS = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}
METERED = ("/v1/chat/completions", "/v1/responses", "/v1/messages")
FREE = ("/v1/models", "/v1/messages/count_tokens")  # forwarded and logged, never charged
RETRY_STATUSES = (429, 500, 502, 503, 504, 529)  # 529: Anthropic "overloaded"
DROP_REQUEST_HEADERS = {"authorization", "x-api-key", "api-key", "host", "content-length", "connection",
                        "transfer-encoding", "accept-encoding", "keep-alive", "proxy-authorization"}
PASS_REPLY_PREFIXES = ("x-", "openai-", "anthropic-", "request-id", "retry-after", "content-type")
KEYLIKE = re.compile(r"\b(sk|pk|rk)-[A-Za-z0-9_\-*.]{4,}")


class ProxyError(RuntimeError):
    """The proxy cannot be set up (no key in the environment, no base URL): a user or site problem."""


@dataclass(frozen=True)
class ProxyConfig:
    """What one attempt's proxy needs; holds the *name* of the key's variable, never the key."""

    provider: str
    model: str | None
    base_url: str
    api_key_env: str | None
    calls_path: Path
    price_key: str | None = None
    sampling: dict[str, Any] | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_retries: int = 5
    backoff_s: float = 1.0  # first wait without Retry-After; doubled each retry, with jitter
    max_wait_s: float = 60.0  # a longer wait (Retry-After or backoff) passes the error through instead
    read_timeout_s: float = 900.0  # silence from upstream that ends a call (reasoning models think long)


def config_from_model(model_config: dict[str, Any], calls_path: Path, **overrides: Any) -> ProxyConfig:
    """A ProxyConfig from a composed `conf/model` entry."""
    provider = str(model_config.get("provider"))
    base_url = model_config.get("base_url") or DEFAULT_BASE_URLS.get(provider)
    if not base_url:
        raise ProxyError(f"model {model_config.get('name')!r} has no base_url: set model.base_url "
                         f"(for serve: vllm, the server's address is filled in before the attempt)")
    budget = model_config.get("budget") or {}
    return ProxyConfig(provider=provider, model=model_config.get("model"), base_url=str(base_url),
                       api_key_env=model_config.get("api_key_env"), calls_path=Path(calls_path),
                       price_key=prices.price_key(model_config), sampling=dict(model_config.get("sampling") or {}),
                       max_tokens=budget.get("max_tokens"), max_cost_usd=budget.get("max_cost_usd"), **overrides)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Ledger:
    """Every call of the attempt: appended to llm_calls.jsonl, summed for budgets and status.json.

    An attempt restarted after preemption continues its budget: the calls of earlier starts are read
    back from the file first.
    """

    def __init__(self, cfg: ProxyConfig, price: prices.Price | None) -> None:
        self.cfg, self.price = cfg, price
        self.lock = threading.Lock()
        self.calls = self.errors = self.unpriced = 0
        self.input_tokens = self.output_tokens = self.cached_input_tokens = self.cache_write_input_tokens = 0
        self.cost_usd = 0.0
        self.refused = 0
        self.table_version = prices.table_version()
        for entry in self._earlier():
            self._add(entry)

    def _earlier(self) -> list[dict[str, Any]]:
        try:
            lines = self.cfg.calls_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []
        entries = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and "status" in entry:
                entries.append(entry)
        return entries

    def _add(self, entry: dict[str, Any]) -> None:
        self.calls += 1
        self.errors += int(entry["status"] is None or entry["status"] >= 400)
        self.refused += int(entry.get("refused", False))
        self.input_tokens += entry.get("input_tokens") or 0
        self.output_tokens += entry.get("output_tokens") or 0
        self.cached_input_tokens += entry.get("cached_input_tokens") or 0
        self.cache_write_input_tokens += entry.get("cache_write_input_tokens") or 0  # absent in older logs
        if entry.get("cost_usd") is not None:
            self.cost_usd += entry["cost_usd"]
        elif entry.get("input_tokens") or entry.get("output_tokens"):
            self.unpriced += 1

    def spent(self) -> str | None:
        """Why no further call is allowed, or None while budget is left."""
        with self.lock:
            used = self.input_tokens + self.output_tokens
            if self.cfg.max_tokens is not None and used >= self.cfg.max_tokens:
                return (f"hpc-mle: this attempt's budget of {self.cfg.max_tokens} tokens is spent ({used} used); "
                        f"no further model calls are allowed")
            if self.cfg.max_cost_usd is not None and self.cost_usd >= self.cfg.max_cost_usd:
                return (f"hpc-mle: this attempt's budget of ${self.cfg.max_cost_usd:g} is spent "
                        f"(${self.cost_usd:.4f} used); no further model calls are allowed")
        return None

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self._add(entry)
            with open(self.cfg.calls_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")

    def summary(self) -> dict[str, Any]:
        """Totals for status.json `llm` (cost is None when a call could not be priced)."""
        spent = self.spent()
        with self.lock:
            return {
                "provider": self.cfg.provider, "model": self.cfg.model, "calls": self.calls, "errors": self.errors,
                "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cached_input_tokens": self.cached_input_tokens,
                "cache_write_input_tokens": self.cache_write_input_tokens,
                "cost_usd": None if self.unpriced else round(self.cost_usd, 8), "unpriced_calls": self.unpriced,
                "price_key": self.cfg.price_key, "price_read_on": self.price.read_on if self.price else None,
                "price_table": self.table_version,
                "budget": {"max_tokens": self.cfg.max_tokens, "max_cost_usd": self.cfg.max_cost_usd},
                "budget_spent": spent is not None, "refused_calls": self.refused,
            }


# ---------------------------------------------------------------- replies in the provider's format


def _style(path: str) -> str:
    return "anthropic" if path.startswith("/v1/messages") else "openai"


def error_reply(style: str, status: int, message: str, kind: str) -> web.Response:
    if style == "anthropic":
        body = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        body = {"error": {"message": message, "type": kind, "param": None, "code": kind}}
    return web.json_response(body, status=status)


def _retry_after(headers: Any) -> float | None:
    """Seconds to wait as the server asks: `retry-after-ms`, `Retry-After` in seconds or as a date."""
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        value = headers.get("Retry-After")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _sse_data(event: bytes) -> Any:
    """The JSON of one SSE event's data lines (None for `[DONE]`, comments or non-JSON)."""
    lines = [ln[5:].lstrip() for ln in event.decode("utf-8", "replace").splitlines() if ln.startswith("data:")]
    if not lines or lines == ["[DONE]"]:
        return None
    try:
        return json.loads("\n".join(lines))
    except ValueError:
        return None


EVENT_END = re.compile(rb"\r?\n\r?\n")


class MeteringProxy:
    """One attempt's proxy: bound on creation (Unix socket, and a TCP port if asked), served after `start()`."""

    def __init__(self, cfg: ProxyConfig, socket_path: Path, tcp: bool = False, token: str | None = None) -> None:
        self.cfg = cfg
        self._key = None
        if cfg.api_key_env:
            self._key = os.environ.get(cfg.api_key_env)
            if not self._key:
                raise ProxyError(f"model {cfg.model!r} reads its key from ${cfg.api_key_env}, which is not set "
                                 f"in this job's environment. Fix: export {cfg.api_key_env}=... before launching")
        self.token = token or "hpcmle-" + secrets.token_urlsafe(24)
        self.warnings: list[str] = []
        price = prices.lookup(cfg.price_key)
        if price is None:
            self.warnings.append(f"no price for {cfg.price_key!r} in prices.csv: tokens are counted, cost is null")
            if cfg.max_cost_usd is not None:
                self.warnings.append("budget.max_cost_usd cannot be enforced without a price")
        self.ledger = Ledger(cfg, price)
        self.socket_path = Path(socket_path)
        sockets = [unix_socket(self.socket_path)]
        if tcp:
            sockets.append(tcp_socket())
        self.port: int | None = sockets[1].getsockname()[1] if tcp else None
        app = web.Application(client_max_size=256 * 1024**2)
        app.router.add_get("/health", self._health)
        app.router.add_route("*", "/{path:.*}", self._handle)
        app.on_startup.append(self._open_session)
        app.on_cleanup.append(self._close_session)
        self.session: aiohttp.ClientSession | None = None
        self.server = BackgroundApp(app, sockets, "llm-proxy")

    # ------------------------------------------------------------ lifecycle

    def start(self) -> MeteringProxy:
        self.server.start()
        return self

    def close(self) -> None:
        self.server.stop()
        try:
            self.socket_path.unlink()
        except OSError:
            pass

    def __enter__(self) -> MeteringProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def summary(self) -> dict[str, Any]:
        return self.ledger.summary()

    def agent_env(self, base: str) -> dict[str, str]:
        """What the agent's environment says about the model: addresses of this proxy and the token."""
        return {
            "OPENAI_BASE_URL": f"{base}/v1", "OPENAI_API_BASE": f"{base}/v1", "OPENAI_API_KEY": self.token,
            "ANTHROPIC_BASE_URL": base, "ANTHROPIC_API_KEY": self.token,
            "HPC_MLE_MODEL": self.cfg.model or "", "HPC_MLE_PROVIDER": self.cfg.provider,
            "HPC_MLE_SAMPLING": json.dumps(self.cfg.sampling or {}, sort_keys=True),
        }

    async def _open_session(self, _app: web.Application) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=self.cfg.read_timeout_s)
        # trust_env: a site's HTTPS_PROXY is how compute nodes without internet reach a provider
        self.session = aiohttp.ClientSession(timeout=timeout, trust_env=True)

    async def _close_session(self, _app: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    # ------------------------------------------------------------ helpers

    def redact(self, text: str) -> str:
        """The key, and anything shaped like one (providers echo masked keys in 401s), removed."""
        if self._key:
            text = text.replace(self._key, "[redacted]")
        return KEYLIKE.sub("[redacted]", text)

    def _authorised(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        presented = [auth[7:].strip() if auth.lower().startswith("bearer ") else "",
                     request.headers.get("x-api-key", ""), request.headers.get("api-key", "")]
        return any(p and hmac.compare_digest(p.encode(), self.token.encode()) for p in presented)

    def _upstream_url(self, request: web.Request) -> str:
        base = self.cfg.base_url.rstrip("/")
        path = request.path[3:] if base.endswith("/v1") else request.path
        return base + path + (f"?{request.query_string}" if request.query_string else "")

    def _upstream_headers(self, request: web.Request) -> dict[str, str]:
        """The agent's headers, its token swapped for the key: x-api-key on Anthropic's paths, else Bearer
        (an OpenAI-compatible host serving Anthropic's paths, e.g. vLLM, gets both)."""
        headers = {k: v for k, v in request.headers.items() if k.lower() not in DROP_REQUEST_HEADERS}
        anthropic_path = _style(request.path) == "anthropic"
        if anthropic_path:
            headers.setdefault("anthropic-version", "2023-06-01")
        if self._key and anthropic_path:
            headers["x-api-key"] = self._key
        if self._key and (not anthropic_path or self.cfg.provider != "anthropic"):
            headers["Authorization"] = f"Bearer {self._key}"
        return headers

    def _price_for(self, requested: str | None) -> prices.Price | None:
        if requested in (None, self.cfg.model, self.cfg.price_key):
            return self.ledger.price
        return prices.lookup(requested)  # the agent chose another model: price it as that one, if known

    def _log(self, request: web.Request, requested: str | None, status: int | None, started: float,
             stream: bool, got: usage.Usage | None = None, retries: int = 0, error: str | None = None,
             refused: bool = False) -> None:
        free = request.path in FREE
        got = got or usage.Usage()
        in_tok, out_tok = (0, 0) if free else (got.input_tokens, got.output_tokens)
        entry = {
            "time": _now(), "model": got.model or requested, "endpoint": request.path, "status": status,
            "input_tokens": in_tok, "output_tokens": out_tok, "cached_input_tokens": got.cached_input_tokens,
            "cache_write_input_tokens": got.cache_write_input_tokens,
            "latency_s": round(time.monotonic() - started, 3),
            "cost_usd": 0.0 if free else prices.cost_usd(self._price_for(requested), in_tok, out_tok,
                                                         got.cached_input_tokens, got.cache_write_input_tokens),
            "stream": stream, "retries": retries, "error": self.redact(error)[:500] if error else None,
        }
        if refused:
            entry["refused"] = True
        self.ledger.record(entry)

    async def _send(self, method: str, url: str, headers: dict[str, str], data: bytes | None
                    ) -> tuple[aiohttp.ClientResponse, int]:
        """Send upstream, retrying 429/5xx and connection failures (bounded); the last reply is returned."""
        assert self.session is not None
        retries = 0
        while True:
            try:
                resp = await self.session.request(method, url, headers=headers, data=data, allow_redirects=False)
            except (TimeoutError, aiohttp.ClientConnectionError):
                if retries >= self.cfg.max_retries:
                    raise
                delay = self._backoff(retries)
            else:
                if resp.status not in RETRY_STATUSES or retries >= self.cfg.max_retries:
                    return resp, retries
                asked = _retry_after(resp.headers)
                delay = self._backoff(retries) if asked is None else asked
                if delay > self.cfg.max_wait_s:
                    return resp, retries
                resp.release()
            retries += 1
            await asyncio.sleep(delay)

    def _backoff(self, retries: int) -> float:
        return min(self.cfg.max_wait_s, self.cfg.backoff_s * 2**retries * random.uniform(0.8, 1.2))

    # ------------------------------------------------------------ handlers

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        style = _style(request.path)
        if request.path not in METERED + FREE:
            return error_reply(style, 404, f"hpc-mle proxy: no route {request.path}; it serves "
                                           f"{', '.join(METERED + FREE)}", "not_found_error")
        if not self._authorised(request):
            self._log(request, None, 401, started, False, error="wrong or missing attempt token")
            return error_reply(style, 401, "hpc-mle: wrong or missing attempt token (use the OPENAI_API_KEY / "
                                           "ANTHROPIC_API_KEY of this attempt's environment)",
                               "authentication_error")
        body = await request.read()
        payload: dict[str, Any] = {}
        if body:
            try:
                payload = json.loads(body)
            except ValueError:
                return error_reply(style, 400, "hpc-mle proxy: the request body is not JSON", "invalid_request_error")
            if not isinstance(payload, dict):
                payload = {}
        requested = payload.get("model")
        stream = bool(payload.get("stream"))
        if request.path in METERED and (why := self.ledger.spent()):
            self._log(request, requested, 403, started, stream, error="budget spent", refused=True)
            kind = "permission_error" if style == "anthropic" else "budget_exceeded"
            return error_reply(style, 403, why, kind)
        strip_usage = False
        if stream and request.path == "/v1/chat/completions":
            options = payload.get("stream_options") or {}
            if not options.get("include_usage"):
                payload["stream_options"] = {**options, "include_usage": True}
                body, strip_usage = json.dumps(payload).encode(), True
        try:
            resp, retries = await self._send(request.method, self._upstream_url(request),
                                             self._upstream_headers(request), body or None)
        except (TimeoutError, aiohttp.ClientError) as exc:
            message = self.redact(f"hpc-mle proxy: the provider could not be reached ({type(exc).__name__}: {exc})")
            self._log(request, requested, 502, started, stream, retries=self.cfg.max_retries, error=message)
            return error_reply(style, 502, message, "api_error")
        try:
            if stream and resp.status == 200 and resp.content_type == "text/event-stream":
                return await self._relay_stream(request, resp, requested, started, retries, strip_usage)
            return await self._relay_whole(request, resp, requested, started, stream, retries)
        finally:
            resp.release()

    def _reply_headers(self, resp: aiohttp.ClientResponse) -> dict[str, str]:
        return {k: v for k, v in resp.headers.items() if k.lower().startswith(PASS_REPLY_PREFIXES)}

    async def _relay_whole(self, request, resp, requested, started, stream, retries) -> web.Response:
        data = await resp.read()
        error = None
        got = usage.Usage()
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = None
        if resp.status >= 400:
            data = self.redact(data.decode("utf-8", "replace")).encode()
            detail = parsed.get("error") if isinstance(parsed, dict) else None
            error = (detail.get("message") if isinstance(detail, dict) else None) or data.decode()[:300]
            error = f"upstream {resp.status}: {error}"
        else:
            got = usage.from_body(parsed)
        self._log(request, requested, resp.status, started, stream, got, retries, error)
        return web.Response(status=resp.status, body=data, headers=self._reply_headers(resp))

    async def _relay_stream(self, request, resp, requested, started, retries, strip_usage) -> web.StreamResponse:
        out = web.StreamResponse(status=200, headers=self._reply_headers(resp))
        await out.prepare(request)
        seen = usage.StreamUsage()
        buffer, error = b"", None
        try:
            async for chunk in resp.content.iter_any():
                buffer += chunk
                while match := EVENT_END.search(buffer):
                    event, buffer = buffer[:match.start()], buffer[match.end():]
                    data = _sse_data(event)
                    seen.feed(data)
                    if strip_usage and isinstance(data, dict) and data.get("choices") == [] and data.get("usage"):
                        continue  # the usage chunk we asked for; this client did not
                    await out.write(event + b"\n\n")
            if buffer.strip():
                await out.write(buffer)
            await out.write_eof()
        except (ConnectionResetError, aiohttp.ClientConnectionError) as exc:
            error = f"stream cut: {type(exc).__name__}: {exc}"
        except (TimeoutError, aiohttp.ClientPayloadError) as exc:
            error = f"upstream stream failed: {type(exc).__name__}: {exc}"
        self._log(request, requested, 200, started, True, seen.result(), retries, error)
        return out


# ---------------------------------------------------------------- by hand


def main(argv: list[str] | None = None) -> None:
    import yaml

    parser = argparse.ArgumentParser(description="Run a metering proxy in front of a model config, by hand.")
    parser.add_argument("--model-config", required=True, type=Path, help="a conf/model/*.yaml file")
    parser.add_argument("--calls", type=Path, default=Path("llm_calls.jsonl"))
    parser.add_argument("--socket", type=Path, default=Path("llm.sock"))
    parser.add_argument("--port", type=int, default=None, help="also listen on 127.0.0.1:PORT")
    args = parser.parse_args(argv)
    cfg = config_from_model(yaml.safe_load(args.model_config.read_text()), args.calls)
    proxy = MeteringProxy(cfg, args.socket, tcp=False)
    if args.port is not None:
        proxy.server.sockets.append(tcp_socket(port=args.port))
    with proxy:
        where = f"http://127.0.0.1:{args.port}" if args.port is not None else f"unix:{args.socket}"
        print(f"proxy for {cfg.model} at {where}; token {proxy.token}; calls in {args.calls}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print(json.dumps(proxy.summary(), indent=2), file=sys.stderr)


if __name__ == "__main__":
    main()
