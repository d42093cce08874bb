"""The metering proxy: one per attempt, outside the sandbox, between the agent and its model provider.

The agent gets a base URL and a random per-attempt token; this proxy checks the token, puts the real
key (read from its own environment, variable `api_key_env`) in its place and forwards the call. So
the key never enters the sandbox, and every call passes one place that can count it:

- each call is appended to `llm_calls.jsonl` (time, model, endpoint, status, tokens in/out, latency,
  cost, stream, retries, error) the moment it ends;
- only the attempt's configured `model` is served (plus `extra.also_models`, each priced by its own
  prices.csv row, for scaffolds that ran a second model upstream, such as AIDE's gpt-4o feedback):
  a request naming any other string gets 403 with the reason. The match is exact: an alias ("gpt-4o") is refused when the config names a snapshot
  ("gpt-4o-2024-08-06") and the other way round, because the price row and the results name that
  string; the provider may answer with a dated name of its own, which is logged as it comes;
- budgets (`budget.max_tokens`, `budget.max_cost_usd`) hold under any burst: before a call is forwarded
  it reserves its input (request bytes / 3, a conservative estimate) plus its output bound
  (`max_tokens` / `max_completion_tokens` / `max_output_tokens`, times `n`) against what is left after
  the calls in flight. With a budget and no bound from the client, the proxy sets one on the forwarded
  request (`extra.max_output_tokens` of the model config, default 4096, lowered to what is left), so
  the reservation is a true bound (legacy completions have their own default bound, 16, which is
  reserved instead). A call that does not fit is refused before it is forwarded: 429 (with
  `Retry-After`) while calls in flight hold the budget it needs, 403 when even they would not free
  enough. After the reply the call settles to the provider's usage; a reply or stream that ends before
  its usage (client hang-up, upstream drop, shutdown) is charged its whole reservation and logged
  `usage: estimated`. A model config with `budget.max_cost_usd` and no row in prices.csv does not start;
- what the proxy cannot meter is refused (403): hosted tools that run on the provider's side (web
  search, code execution, MCP: network access and fees outside prices.csv), http(s) URLs the provider
  would fetch (images, files: network access by proxy; inline data: URLs are fine), background
  responses, conversations, `previous_response_id`s this proxy did not hand out, non-default service tiers;
- request headers are allow-listed (content type, accept, user agent, `anthropic-version`): the
  client's credentials, organisation and project headers, cookies, forwarded-for and beta flags
  (which can switch on features priced above prices.csv) never reach the provider; reply headers are
  allow-listed too (no cookies, no organisation ids);
- bodies are capped (`max_request_bytes`, 16 MiB: 413 above it) and at most `max_concurrent` calls are
  read and relayed at once (the rest wait), so the proxy's memory stays bounded; refusals past the
  first 1000 are counted but no longer logged one by one, so a refused loop cannot fill the disk;
- the per-attempt token is compared in constant time and is written nowhere: `agent_env` is the one
  place that hands it out, and error texts are redacted of it and of the key;
- upstream 429 and 5xx replies (and connection failures) are retried with exponential backoff that
  honours Retry-After, a bounded number of times; then the error is passed through;
- streams (SSE) are relayed event by event. OpenAI chat and completions streams only report usage when
  asked, so the proxy asks (`stream_options.include_usage`) and removes that extra chunk if the client had not.

Protocols: OpenAI chat completions, legacy completions, responses and models (`/v1/chat/completions`,
`/v1/completions`, `/v1/responses`, `/v1/models`) and Anthropic messages (`/v1/messages`,
`/v1/messages/count_tokens`). Completions bodies pass as they come (vLLM's `prompt_logprobs`, `echo` with
`logprobs`, `max_tokens: 0` included), and so do their replies with every log-probability.

The harness's own model calls (the audit judge, the familiarity study) use the same proxy with a ledger of
their own: `private_proxy`.

It runs as a thread of the attempt runner rather than a subprocess: the runner kills every process
descended from it when the agent stops (orphans included), it needs the proxy's totals for
status.json, and it already serves the validator the same way. For trying an agent by hand:
`python -m hpc_mle.llm.proxy --model-config conf/model/gpt4o.yaml --port 4000 --calls calls.jsonl`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import email.utils
import hmac
import json
import logging
import math
import os
import random
import re
import secrets
import shlex
import shutil
import sys
import tempfile
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
METERED = ("/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages")
FREE = ("/v1/models", "/v1/messages/count_tokens")  # forwarded and logged, never charged
# One method per route: a GET on /v1/chat/completions would list the account's stored completions (other
# attempts' conversations included), so nothing but these is forwarded.
METHODS = {"/v1/models": "GET", **{path: "POST" for path in (*METERED, "/v1/messages/count_tokens")}}
RETRY_STATUSES = (429, 500, 502, 503, 504, 529)  # 529: Anthropic "overloaded"
PASS_REQUEST_HEADERS = {"content-type", "accept", "user-agent", "anthropic-version"}
PASS_REPLY_HEADERS = {"content-type", "retry-after", "retry-after-ms", "request-id", "x-request-id", "x-should-retry"}
PASS_REPLY_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")  # pacing hints for the agent's client
KEYLIKE = re.compile(r"\b(sk|pk|rk)-[A-Za-z0-9_\-*.]{4,}")
OUTPUT_FIELDS = {"/v1/chat/completions": ("max_completion_tokens", "max_tokens"), "/v1/completions": ("max_tokens",),
                 "/v1/responses": ("max_output_tokens",), "/v1/messages": ("max_tokens",)}
ZERO_OUTPUT = ("/v1/completions",)  # `max_tokens: 0` with `echo` scores a prompt and generates nothing
IMPLIED_OUTPUT = {"/v1/completions": 16}  # the bound OpenAI and vLLM apply when the client sets none
USAGE_STREAMS = ("/v1/chat/completions", "/v1/completions")  # streams that report usage only when asked
BYTES_PER_TOKEN = 3  # input estimate: fewer bytes per token than any tokenizer averages on text, so it over-reserves
MIN_OUTPUT_TOKENS = 16  # a cap the proxy would lower below this refuses the call instead
MAX_LOGGED_REFUSALS = 1000
LOCAL_TOOL_TYPES = ("function", "custom")  # tools the client runs; Anthropic's client tools carry no type
ANTHROPIC_CLIENT_TOOL_PREFIXES = ("bash_", "text_editor_", "custom")
PLAIN_SERVICE_TIERS = (None, "auto", "default", "standard_only")
URL_KEYS = ("url", "image_url", "file_url")  # OpenAI image/file parts, Anthropic `source: {type: url}`


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
    default_max_output_tokens: int = 4096  # the output bound set when the client sets none and a budget is on
    also_models: tuple[str, ...] = ()  # further exact model names the agent may call (e.g. AIDE's feedback model)
    max_request_bytes: int = 16 * 1024**2
    max_concurrent: int = 32
    api_key_file: Path | None = None  # a served model's key (a 0600 file), read here only, never the agent
    address_file: Path | None = None  # a served model's address.json, re-read when a connection fails


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
                       max_tokens=budget.get("max_tokens"), max_cost_usd=budget.get("max_cost_usd"),
                       **_served(model_config), **_from_extra(model_config), **overrides)


def _served(model_config: dict[str, Any]) -> dict[str, Any]:
    """A served model's key file and address file, as the attempt filled them in (hpc_mle.jobs)."""
    return {key: Path(model_config[key]) for key in ("api_key_file", "address_file") if model_config.get(key)}


def _from_extra(model_config: dict[str, Any]) -> dict[str, Any]:
    """`extra.max_output_tokens` (the default 4096 fits every model's own limit, but reasoning models,
    whose thinking counts as output, want more) and `extra.also_models` (upstream ran AIDE's feedback on
    gpt-4o whatever the main model was) of a model config."""
    extra = model_config.get("extra") or {}
    out: dict[str, Any] = {}
    if extra.get("max_output_tokens") is not None:
        out["default_max_output_tokens"] = int(extra["max_output_tokens"])
    if extra.get("also_models"):
        out["also_models"] = tuple(str(m) for m in extra["also_models"])
    return out


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class Hold:
    """Budget a call holds from before it is forwarded until it settles: its input estimate and its
    output bound; `cap` is the bound the proxy sets on the request (None: the client's own, or none)."""

    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    cap: int | None = None
    price: prices.Price | None = None  # of the model the call names


@dataclass(frozen=True)
class Ask:
    """What a call asks of the budget: its input estimate, the client's output bound (None: none), `n`
    choices, and the price of the model it names."""

    input_tokens: int
    asked: int | None
    choices: int
    price: prices.Price | None


def _rates(price: prices.Price | None) -> tuple[float, float]:
    """$ per token of input (the dearest input rate: cache writes cost more) and of output."""
    if price is None:
        return 0.0, 0.0
    return max(price.input_usd_per_mtok, price.cache_write_usd_per_mtok or 0.0) / 1e6, price.output_usd_per_mtok / 1e6


@dataclass(frozen=True)
class Refusal:
    status: int
    kind: str
    message: str


class Ledger:
    """Every call of the attempt: appended to llm_calls.jsonl, summed for budgets and status.json.

    An attempt restarted after preemption continues its budget: the calls of earlier starts are read
    back from the file first. Calls in flight hold their reservation (`held_*`) until they settle.
    """

    def __init__(self, cfg: ProxyConfig, price: prices.Price | None) -> None:
        self.cfg, self.price = cfg, price
        self.lock = threading.Lock()
        self.calls = self.errors = self.unpriced = self.estimated = 0
        self.input_tokens = self.output_tokens = self.cached_input_tokens = self.cache_write_input_tokens = 0
        self.cost_usd = 0.0
        self.refused = 0
        self.held_tokens, self.held_cost = 0, 0.0
        self.budget_refused = False  # a call was refused because the budget left could not cover it
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
        self.estimated += int(entry.get("usage") == "estimated")
        self.input_tokens += entry.get("input_tokens") or 0
        self.output_tokens += entry.get("output_tokens") or 0
        self.cached_input_tokens += entry.get("cached_input_tokens") or 0
        self.cache_write_input_tokens += entry.get("cache_write_input_tokens") or 0  # absent in older logs
        if entry.get("cost_usd") is not None:
            self.cost_usd += entry["cost_usd"]
        elif entry.get("input_tokens") or entry.get("output_tokens"):
            self.unpriced += 1

    def budgeted(self) -> bool:
        return self.cfg.max_tokens is not None or self.cfg.max_cost_usd is not None

    def spent(self) -> str | None:
        """Why no further call is allowed, or None while budget is left."""
        with self.lock:
            return self._spent()

    def _spent(self) -> str | None:
        used = self.input_tokens + self.output_tokens
        if self.cfg.max_tokens is not None and used >= self.cfg.max_tokens:
            return (f"hpc-mle: this attempt's budget of {self.cfg.max_tokens} tokens is spent ({used} used); "
                    f"no further model calls are allowed")
        if self.cfg.max_cost_usd is not None and self.cost_usd >= self.cfg.max_cost_usd:
            return (f"hpc-mle: this attempt's budget of ${self.cfg.max_cost_usd:g} is spent "
                    f"(${self.cost_usd:.4f} used); no further model calls are allowed")
        return None

    # ------------------------------------------------------------ reservations

    def _largest_output(self, ask: Ask, with_held: bool) -> float:
        """The largest output bound this call could reserve now (inf without a budget)."""
        largest = math.inf
        if self.cfg.max_tokens is not None:
            left = self.cfg.max_tokens - self.input_tokens - self.output_tokens - (self.held_tokens if with_held else 0)
            largest = (left - ask.input_tokens) / ask.choices
        in_rate, out_rate = _rates(ask.price)
        if self.cfg.max_cost_usd is not None and out_rate > 0:
            left_usd = self.cfg.max_cost_usd - self.cost_usd - (self.held_cost if with_held else 0.0)
            largest = min(largest, (left_usd - ask.input_tokens * in_rate) / (out_rate * ask.choices))
        return largest

    def reserve(self, ask: Ask) -> Hold | Refusal:
        """Hold budget for one call before it is forwarded, or say why it may not go."""
        with self.lock:
            if self.budgeted() and (why := self._spent()):
                self.budget_refused = True
                return Refusal(403, "budget_exceeded", why)
            bound = ask.asked if ask.asked is not None else self._own_bound(ask, with_held=True)
            if self.budgeted() and not self._fits(ask, bound, with_held=True):
                return self._refusal(ask, bound)
            in_rate, out_rate = _rates(ask.price)
            output = bound * ask.choices
            hold = Hold(ask.input_tokens, output,
                        None if ask.price is None else ask.input_tokens * in_rate + output * out_rate,
                        bound if ask.asked is None and self.budgeted() else None, ask.price)
            self.held_tokens += hold.input_tokens + hold.output_tokens
            self.held_cost += hold.cost_usd or 0.0
            return hold

    def _own_bound(self, ask: Ask, with_held: bool) -> int:
        """The output bound the proxy sets when the client sets none: the default, lowered to what is left."""
        if not self.budgeted():
            return self.cfg.default_max_output_tokens
        return int(min(self.cfg.default_max_output_tokens, self._largest_output(ask, with_held)))

    def _fits(self, ask: Ask, bound: int, with_held: bool) -> bool:
        if ask.asked is None:
            return bound >= MIN_OUTPUT_TOKENS
        return ask.asked <= self._largest_output(ask, with_held)

    def _refusal(self, ask: Ask, bound: int) -> Refusal:
        """429 when the calls in flight hold what this one needs (it may go once they settle), else 403."""
        alone = ask.asked if ask.asked is not None else self._own_bound(ask, with_held=False)
        asks = (f"up to ~{ask.input_tokens} input tokens and "
                f"{bound if ask.asked is not None else MIN_OUTPUT_TOKENS}+ output")
        if self.held_tokens and self._fits(ask, alone, with_held=False):
            return Refusal(429, "rate_limit_error",
                           f"hpc-mle: calls in flight hold this attempt's remaining budget; this call ({asks}) "
                           f"must wait until they finish: retry shortly")
        left = (f"{self.cfg.max_tokens - self.input_tokens - self.output_tokens} tokens"
                if self.cfg.max_tokens is not None else "")
        if self.cfg.max_cost_usd is not None:
            left += f"{', ' if left else ''}${self.cfg.max_cost_usd - self.cost_usd:.6f}"
        self.budget_refused = True
        return Refusal(403, "budget_exceeded",
                       f"hpc-mle: this attempt's budget cannot cover this call ({asks}); {left} left. "
                       f"A smaller max_tokens or a shorter input may fit")

    def settle(self, hold: Hold | None, entry: dict[str, Any]) -> None:
        """Release the call's hold and book what it really used (or, for an estimate, the hold itself)."""
        with self.lock:
            if hold is not None:
                self.held_tokens -= hold.input_tokens + hold.output_tokens
                self.held_cost -= hold.cost_usd or 0.0
            self._add(entry)
            if entry.get("refused") and self.refused > MAX_LOGGED_REFUSALS:
                return
            with open(self.cfg.calls_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")

    def record(self, entry: dict[str, Any]) -> None:
        self.settle(None, entry)

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
                "budget_spent": spent is not None or self.budget_refused, "refused_calls": self.refused, "estimated_calls": self.estimated,
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


def _completion_usage(got: usage.Usage, parsed: Any) -> usage.Usage:
    """A completions reply's usage with its output worked out where the reply leaves `completion_tokens` out (a
    prompt scored with `echo` and `max_tokens: 0` generates nothing): `total_tokens` less the prompt's."""
    total = ((parsed.get("usage") or {}) if isinstance(parsed, dict) else {}).get("total_tokens")
    if got.output_tokens is not None or got.input_tokens is None or not isinstance(total, int):
        return got
    return dataclasses.replace(got, output_tokens=max(total - got.input_tokens, 0))


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
        self.base_url = cfg.base_url  # a served model's may move (a restarted server): see _follow_address
        self._key = None
        if cfg.api_key_file:
            self._key = _key_from_file(cfg.api_key_file)
        elif cfg.api_key_env:
            self._key = os.environ.get(cfg.api_key_env)
            if not self._key:
                raise ProxyError(f"model {cfg.model!r} reads its key from ${cfg.api_key_env}, which is not set "
                                 f"in this job's environment. Fix: export {cfg.api_key_env}=... before launching")
        self.token = token or "hpcmle-" + secrets.token_urlsafe(24)
        self.warnings: list[str] = []
        price = prices.lookup(cfg.price_key)
        # the models this attempt may name, each with its price (also_models are priced by their own name)
        self.prices = {cfg.model: price, **{m: prices.lookup(m) for m in cfg.also_models}}
        for model, key in [(cfg.model, cfg.price_key), *[(m, m) for m in cfg.also_models]]:
            if self.prices[model] is None and cfg.max_cost_usd is not None:
                raise ProxyError(f"model {model!r} has a cost budget (budget.max_cost_usd={cfg.max_cost_usd:g}) but "
                                 f"no price: {key!r} is not a price_key of {prices.PRICES}. Fix: add its row there, "
                                 f"point the model config's `price` at an existing row, or drop the cost budget")
            if self.prices[model] is None:
                self.warnings.append(f"no price for {key!r} in prices.csv: tokens are counted, cost is null")
        self.ledger = Ledger(cfg, price)
        self.responses: dict[str, int] = {}  # response id -> tokens it carries into a continuation
        self._slots = asyncio.Semaphore(cfg.max_concurrent)
        self.socket_path = Path(socket_path)
        sockets = [unix_socket(self.socket_path)]
        if tcp:
            sockets.append(tcp_socket())
        self.port: int | None = sockets[1].getsockname()[1] if tcp else None
        app = web.Application(client_max_size=cfg.max_request_bytes)
        app.router.add_get("/health", self._health)
        app.router.add_route("*", "/{path:.*}", self._handle)
        app.on_startup.append(self._open_session)
        app.on_cleanup.append(self._close_session)
        self.session: aiohttp.ClientSession | None = None
        self.server = BackgroundApp(app, sockets, "llm-proxy")
        self.scratch: Path | None = None  # a private proxy's socket folder, removed on close

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
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    @property
    def local_url(self) -> str:
        """Where a client on this machine reaches the proxy over TCP (a proxy made with `tcp=True`)."""
        return f"http://127.0.0.1:{self.port}"

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
        """The key, the attempt's token, and anything shaped like a key (providers echo masked keys in
        401s) removed."""
        for secret in (self._key, self.token):
            if secret:
                text = text.replace(secret, "[redacted]")
        return KEYLIKE.sub("[redacted]", text)

    def _authorised(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        presented = [auth[7:].strip() if auth.lower().startswith("bearer ") else "",
                     request.headers.get("x-api-key", ""), request.headers.get("api-key", "")]
        return any(p and hmac.compare_digest(p.encode(), self.token.encode()) for p in presented)

    def _upstream_url(self, request: web.Request) -> str:
        base = self.base_url.rstrip("/")
        path = request.path[3:] if base.endswith("/v1") else request.path
        return base + path + (f"?{request.query_string}" if request.query_string else "")

    def _upstream_headers(self, request: web.Request) -> dict[str, str]:
        """The allow-listed client headers plus the key: x-api-key on Anthropic's paths, else Bearer (an
        OpenAI-compatible host serving Anthropic's paths, e.g. vLLM, gets both)."""
        headers = {k: v for k, v in request.headers.items() if k.lower() in PASS_REQUEST_HEADERS}
        anthropic_path = _style(request.path) == "anthropic"
        if anthropic_path and not any(k.lower() == "anthropic-version" for k in headers):
            headers["anthropic-version"] = "2023-06-01"
        if self._key and anthropic_path:
            headers["x-api-key"] = self._key
        if self._key and (not anthropic_path or self.cfg.provider != "anthropic"):
            headers["Authorization"] = f"Bearer {self._key}"
        return headers

    def _entry(self, request: web.Request, status: int | None, started: float, stream: bool,
               got: usage.Usage | None = None, retries: int = 0, error: str | None = None,
               hold: Hold | None = None) -> dict[str, Any]:
        """One line of llm_calls.jsonl. With a `hold` and no complete usage (`got` None on a metered path),
        the call is charged its whole reservation and marked `usage: estimated`."""
        free = request.path in FREE
        estimated = hold is not None and got is None and not free
        got = got or usage.Usage()
        in_tok, out_tok = (0, 0) if free else (got.input_tokens, got.output_tokens)
        price = hold.price if hold is not None else self.ledger.price
        cost = 0.0 if free else prices.cost_usd(price, in_tok, out_tok, got.cached_input_tokens,
                                                got.cache_write_input_tokens)
        if estimated:
            in_tok, out_tok, cost = hold.input_tokens, hold.output_tokens, hold.cost_usd
        entry = {
            "time": _now(), "model": got.model or self.cfg.model, "endpoint": request.path, "status": status,
            "input_tokens": in_tok, "output_tokens": out_tok, "cached_input_tokens": got.cached_input_tokens,
            "cache_write_input_tokens": got.cache_write_input_tokens,
            "latency_s": round(time.monotonic() - started, 3), "cost_usd": cost,
            "stream": stream, "retries": retries, "error": self.redact(error)[:500] if error else None,
        }
        if hold is not None and not free:
            entry["usage"] = "estimated" if estimated else "reported"
        return entry

    def _refuse(self, request: web.Request, started: float, refusal: Refusal, stream: bool = False
                ) -> web.Response:
        """Log a call refused before it was forwarded and answer it in the provider's format."""
        entry = self._entry(request, refusal.status, started, stream, error=refusal.message)
        entry["refused"] = True
        self.ledger.record(entry)
        style = _style(request.path)
        kind = refusal.kind
        if style == "anthropic":
            kind = {403: "permission_error", 429: "rate_limit_error", 413: "request_too_large"}.get(
                refusal.status, "invalid_request_error")
        reply = error_reply(style, refusal.status, refusal.message, kind)
        if refusal.status == 429:
            reply.headers["Retry-After"] = "1"
        return reply

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
                url = self._follow_address(url)
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

    def _follow_address(self, url: str) -> str:
        """After a connection failure: a served model's server may have restarted at another host:port;
        re-read its address file and point this and later calls there (the key file is re-read too)."""
        if self.cfg.address_file is None:
            return url
        try:
            moved = json.loads(self.cfg.address_file.read_text()).get("base_url")
        except (OSError, ValueError, AttributeError):
            return url
        old = self.base_url.rstrip("/")
        if not moved or moved.rstrip("/") == old or not url.startswith(old):
            return url
        self.base_url = str(moved)
        if self.cfg.api_key_file:
            with contextlib.suppress(ProxyError):
                self._key = _key_from_file(self.cfg.api_key_file)
        return self.base_url.rstrip("/") + url[len(old):]

    def _backoff(self, retries: int) -> float:
        return min(self.cfg.max_wait_s, self.cfg.backoff_s * 2**retries * random.uniform(0.8, 1.2))

    # ------------------------------------------------------------ handlers

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        style = _style(request.path)
        if METHODS.get(request.path) != request.method:
            return error_reply(style, 404, f"hpc-mle proxy: no route {request.method} {request.path}; it serves "
                                           f"{', '.join(f'{m} {p}' for p, m in METHODS.items())}", "not_found_error")
        if not self._authorised(request):
            return self._refuse(request, started, Refusal(
                401, "authentication_error", "hpc-mle: wrong or missing attempt token (use the OPENAI_API_KEY / "
                                             "ANTHROPIC_API_KEY of this attempt's environment)"))
        async with self._slots:
            return await self._call(request, started)

    async def _call(self, request: web.Request, started: float) -> web.StreamResponse:
        """Read, check and reserve; forward; settle. Whatever ends the call, its hold is settled once."""
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(request, started, Refusal(
                413, "request_too_large", f"hpc-mle proxy: request bodies are capped at "
                                          f"{self.cfg.max_request_bytes} bytes"))
        payload = _payload(body)
        if isinstance(payload, Refusal):
            return self._refuse(request, started, payload)
        stream = payload.get("stream") is True
        why = self._policy(request.path, payload)
        if why is not None:
            return self._refuse(request, started, why, stream)
        hold = None
        if request.path in METERED:
            hold = self._reserve(request.path, body, payload)
            if isinstance(hold, Refusal):
                return self._refuse(request, started, hold, stream)
        body, strip_usage = _rewrite(request.path, body, payload, hold, self.cfg.provider)
        settled: list[dict[str, Any]] = []
        try:
            return await self._forward(request, body, stream, strip_usage, started, hold, settled)
        finally:
            if not settled:  # cancelled (shutdown) or failed before it could settle: charge the hold
                self.ledger.settle(hold, self._entry(request, None, started, stream, hold=hold,
                                                     error="hpc-mle proxy: the call ended before its usage"))

    def _policy(self, path: str, payload: dict[str, Any]) -> Refusal | None:
        """Why this request may not go to the provider at all (another model, unmetered features)."""
        if path == "/v1/models":
            return None
        requested = payload.get("model")
        if self.cfg.model is not None and (not isinstance(requested, str) or requested not in self.prices):
            also = f" (or one of its also_models {list(self.cfg.also_models)})" if self.cfg.also_models else ""
            return Refusal(403, "model_not_allowed", f"hpc-mle: model {requested!r} is not this attempt's model "
                                                     f"{self.cfg.model!r}{also}; only that exact name is served")
        return _unmetered(path, payload, self.responses)

    def _reserve(self, path: str, body: bytes, payload: dict[str, Any]) -> Hold | Refusal:
        asked = _output_bound(path, payload)
        if isinstance(asked, Refusal):
            return asked
        choices = _choices(path, payload)
        if isinstance(choices, Refusal):
            return choices
        previous = payload.get("previous_response_id")
        carried = self.responses.get(previous, 0) if isinstance(previous, str) else 0
        estimate = max(len(body) // BYTES_PER_TOKEN, _token_ids(payload.get("prompt"))) + 8 + carried
        return self.ledger.reserve(Ask(estimate, asked, choices, self.prices.get(payload.get("model"))))

    async def _forward(self, request: web.Request, body: bytes, stream: bool, strip_usage: bool, started: float,
                       hold: Hold | None, settled: list) -> web.StreamResponse:
        try:
            resp, retries = await self._send(request.method, self._upstream_url(request),
                                             self._upstream_headers(request), body or None)
        except (TimeoutError, aiohttp.ClientError) as exc:
            message = self.redact(f"hpc-mle proxy: the provider could not be reached ({type(exc).__name__}: {exc})")
            # never connected: nothing was billed; dropped after sending: it may have been, so charge the hold
            got = usage.Usage() if isinstance(exc, aiohttp.ClientConnectorError) else None
            self._settle(settled, hold, self._entry(request, 502, started, stream, got, self.cfg.max_retries,
                                                    message, hold))
            return error_reply(_style(request.path), 502, message, "api_error")
        try:
            if stream and resp.status == 200 and resp.content_type == "text/event-stream":
                return await self._relay_stream(request, resp, started, retries, strip_usage, hold, settled)
            return await self._relay_whole(request, resp, started, stream, retries, hold, settled)
        finally:
            resp.release()

    def _settle(self, settled: list, hold: Hold | None, entry: dict[str, Any]) -> None:
        settled.append(entry)
        self.ledger.settle(hold, entry)

    def _reply_headers(self, resp: aiohttp.ClientResponse) -> dict[str, str]:
        return {k: v for k, v in resp.headers.items()
                if k.lower() in PASS_REPLY_HEADERS or k.lower().startswith(PASS_REPLY_PREFIXES)}

    def _remember(self, response_id: Any, got: usage.Usage | None) -> None:
        """What a responses-API reply carries into a continuation that names it (`previous_response_id`)."""
        if isinstance(response_id, str) and got is not None:
            self.responses[response_id] = (got.input_tokens or 0) + (got.output_tokens or 0)

    async def _relay_whole(self, request, resp, started, stream, retries, hold, settled) -> web.Response:
        try:
            data = await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            message = f"hpc-mle proxy: the provider's reply broke off ({type(exc).__name__})"
            self._settle(settled, hold, self._entry(request, 502, started, stream, None, retries, message, hold))
            return error_reply(_style(request.path), 502, message, "api_error")
        error = None
        got: usage.Usage | None = usage.Usage()
        try:
            parsed = json.loads(data) if data else None
        except (ValueError, RecursionError):
            parsed = None
        if resp.status >= 400:
            data = self.redact(data.decode("utf-8", "replace")).encode()
            detail = parsed.get("error") if isinstance(parsed, dict) else None
            error = (detail.get("message") if isinstance(detail, dict) else None) or data.decode()[:300]
            error = f"upstream {resp.status}: {error}"
        else:
            got = usage.from_body(parsed)
            if request.path == "/v1/completions":
                got = _completion_usage(got, parsed)
            if got.input_tokens is None or got.output_tokens is None:
                got = None  # a success without usage: charged its reservation
            if request.path == "/v1/responses" and isinstance(parsed, dict):
                self._remember(parsed.get("id"), got)
        self._settle(settled, hold, self._entry(request, resp.status, started, stream, got, retries, error, hold))
        return web.Response(status=resp.status, body=data, headers=self._reply_headers(resp))

    async def _relay_stream(self, request, resp, started, retries, strip_usage, hold, settled
                            ) -> web.StreamResponse:
        out = web.StreamResponse(status=200, headers=self._reply_headers(resp))
        seen = usage.StreamUsage()
        buffer, error = b"", None

        def settle() -> None:
            """Book the call once: at its final usage event, before the client is sent the end (so its next
            call finds this one's hold released), or when the stream ends without one."""
            if settled:
                return
            got = seen.result() if seen.final else None
            if request.path == "/v1/responses":
                self._remember(seen.response_id, got)
            self._settle(settled, hold, self._entry(request, 200, started, True, got, retries, error, hold))

        try:
            await out.prepare(request)
            async for chunk in resp.content.iter_any():
                buffer += chunk
                while match := EVENT_END.search(buffer):
                    event, buffer = buffer[:match.start()], buffer[match.end():]
                    data = _sse_data(event)
                    seen.feed(data)
                    if seen.final:
                        settle()
                    if strip_usage and isinstance(data, dict) and data.get("choices") == [] and data.get("usage"):
                        continue  # the usage chunk we asked for; this client did not
                    await out.write(event + b"\n\n")
        except (ConnectionResetError, aiohttp.ClientConnectionError) as exc:
            error = f"stream cut: {type(exc).__name__}: {exc}"
        except (TimeoutError, aiohttp.ClientPayloadError) as exc:
            error = f"upstream stream failed: {type(exc).__name__}: {exc}"
        settle()
        if error is None:
            with contextlib.suppress(ConnectionResetError, aiohttp.ClientConnectionError):
                if buffer.strip():
                    await out.write(buffer)
                await out.write_eof()
        elif request.transport is not None:  # broken off upstream: the client must see a broken stream too
            request.transport.abort()
        return out


def private_proxy(model_config: dict[str, Any], calls_path: Path, prefix: str = "hpcmle-proxy-",
                  **overrides: Any) -> MeteringProxy:
    """A proxy for a call the harness makes itself (the audit judge, the familiarity study): the model config's
    key, prices and budget, its own ledger at `calls_path`, served on 127.0.0.1 (`local_url`) once started.

    Its socket lies in a short temporary folder, removed on close: a sweep's path can pass the 108-byte limit
    of socket addresses. Raises ProxyError where the model cannot be reached (no key, no base URL)."""
    cfg = config_from_model(model_config, calls_path, **overrides)
    scratch = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        proxy = MeteringProxy(cfg, scratch / "proxy.sock", tcp=True)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    proxy.scratch = scratch
    return proxy


# ---------------------------------------------------------------- what a request asks for


def _key_from_file(path: Path) -> str:
    """A served model's key from its 0600 file (read as the server job reads it); ProxyError otherwise."""
    from hpc_mle.llm import serve

    try:
        return serve.read_key(path)
    except serve.ServeError as exc:
        raise ProxyError(str(exc)) from exc


def _payload(body: bytes) -> dict[str, Any] | Refusal:
    """The request's JSON object ({} for an empty body), or why it is refused."""
    if not body:
        return {}
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return Refusal(400, "invalid_request_error", "hpc-mle proxy: the request body is not JSON")
    return payload if isinstance(payload, dict) else {}


def _whole(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _output_bound(path: str, payload: dict[str, Any]) -> int | None | Refusal:
    """The output bound the client set (the largest, if it set two; 0 only on completions), else the one the
    provider implies (completions: 16, so the proxy need not set one), else None."""
    bounds = []
    least = 0 if path in ZERO_OUTPUT else 1
    for name in OUTPUT_FIELDS[path]:
        value = payload.get(name)
        if value is None:
            continue
        if not _whole(value, least):
            kind = "a non-negative" if least == 0 else "a positive"
            return Refusal(400, "invalid_request_error", f"hpc-mle proxy: `{name}` must be {kind} integer")
        bounds.append(value)
    return max(bounds) if bounds else IMPLIED_OUTPUT.get(path)


def _choices(path: str, payload: dict[str, Any]) -> int | Refusal:
    """How many outputs one call generates: chat's `n`; on completions the larger of `n` and `best_of` (each
    candidate is billed) for each prompt of a batch; 1 elsewhere."""
    if path not in ("/v1/chat/completions", "/v1/completions"):
        return 1
    names = ("n",) if path == "/v1/chat/completions" else ("n", "best_of")
    each = 1
    for name in names:
        value = payload.get(name)
        if value is None:
            continue
        if not _whole(value, 1):
            return Refusal(400, "invalid_request_error", f"hpc-mle proxy: `{name}` must be a positive integer")
        each = max(each, value)
    return each * (_prompts(payload.get("prompt")) if path == "/v1/completions" else 1)


def _token_ids(prompt: Any) -> int:
    """Tokens a completions prompt gives as ids (a list, or a batch of lists): "1," is fewer bytes than
    BYTES_PER_TOKEN, so these are counted one by one."""
    if not isinstance(prompt, list):
        return 0
    return sum(len(p) if isinstance(p, list) else int(isinstance(p, int)) for p in prompt)


def _prompts(prompt: Any) -> int:
    """Prompts in a completions request: a list of strings or of token lists is a batch; anything else is one."""
    if isinstance(prompt, list) and prompt and all(isinstance(p, str | list) for p in prompt):
        return len(prompt)
    return 1


def _unmetered(path: str, payload: dict[str, Any], responses: dict[str, int]) -> Refusal | None:
    """Features whose cost or reach the proxy cannot meter: tools the provider runs, background and
    stored-conversation calls, continuations of responses it never saw, dearer service tiers."""
    def refuse(what: str) -> Refusal:
        return Refusal(403, "feature_not_allowed", f"hpc-mle: {what} is not allowed through the metering proxy")

    if payload.get("service_tier") not in PLAIN_SERVICE_TIERS:
        return refuse(f"service_tier {payload.get('service_tier')!r}")
    for key in ("web_search_options", "mcp_servers", "container"):
        if payload.get(key) is not None:
            return refuse(f"`{key}`")
    if payload.get("background") or payload.get("conversation") is not None:
        return refuse("a background or stored-conversation response")
    previous = payload.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or previous not in responses):
        return refuse(f"previous_response_id {previous!r} (not a response of this attempt)")
    if (remote := _remote_url(payload)) is not None:
        return refuse(f"the remote URL {remote[:80]!r} (the provider would fetch it: network access from the "
                      f"sandbox; send the content inline, e.g. as a data: URL)")
    tools = payload.get("tools") or []
    for tool in tools if isinstance(tools, list) else [tools]:
        kind = tool.get("type") if isinstance(tool, dict) else "?"
        anthropic_client = path.startswith("/v1/messages") and (
            kind is None or str(kind).startswith(ANTHROPIC_CLIENT_TOOL_PREFIXES))
        if not anthropic_client and kind not in LOCAL_TOOL_TYPES:
            return refuse(f"the hosted tool {kind!r} (it runs at the provider, unmetered and with network access)")
    return None


def _remote_url(payload: Any) -> str | None:
    """The first http(s) URL the request asks the provider to fetch (images, files, documents), if any."""
    todo = [payload]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in URL_KEYS and isinstance(value, str) and value.lower().startswith(("http:", "https:")):
                    return value
                todo.append(value)
        elif isinstance(item, list):
            todo.extend(item)
    return None


def _rewrite(path: str, body: bytes, payload: dict[str, Any], hold: Hold | None, provider: str
             ) -> tuple[bytes, bool]:
    """The body to forward: with the proxy's output bound, and with usage asked for on chat streams.
    Returns it and whether the usage chunk must be kept from the client (who did not ask for it)."""
    changed, strip_usage = False, False
    if hold is not None and hold.cap is not None:
        # OpenAI's reasoning models refuse `max_tokens`; OpenAI-compatible hosts may ignore the newer name
        chat_field = "max_completion_tokens" if provider == "openai" else "max_tokens"
        payload[chat_field if path == "/v1/chat/completions" else OUTPUT_FIELDS[path][0]] = hold.cap
        changed = True
    if payload.get("stream") is True and path in USAGE_STREAMS:
        options = payload.get("stream_options") or {}
        if not isinstance(options, dict):
            options = {}
        if not options.get("include_usage"):
            payload["stream_options"] = {**options, "include_usage": True}
            changed = strip_usage = True
    return (json.dumps(payload).encode() if changed else body), strip_usage


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
        print(f"# proxy for {cfg.model} at {where}; calls in {args.calls}. For the agent's shell:", flush=True)
        for name, value in proxy.agent_env(where).items():  # the terminal only, never a file
            print(f"export {name}={shlex.quote(value)}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print(json.dumps(proxy.summary(), indent=2), file=sys.stderr)


if __name__ == "__main__":
    main()
