"""A scripted stand-in for a model provider: OpenAI- and Anthropic-compatible, deterministic, offline.

No paid API is reachable from tests or compute nodes, so proxy tests and end-to-end agent runs talk to
this server instead. It speaks OpenAI chat completions (`/v1/chat/completions`, streaming, tool and
function calls), the responses API (`/v1/responses`, streaming), legacy completions (`/v1/completions`,
with per-token prompt log-probabilities: see below), `/v1/models`, vLLM's `/health`, and Anthropic
messages (`/v1/messages`, streaming, tool use).

    python -m hpc_mle.llm.testserver --host 127.0.0.1 --port 0 --script script.json --port-file port.txt

In tests: `with testserver.start(script_dict_or_path, api_key="sk-...") as server: server.base_url`.

The script (JSON):

    {"rules": [{"match": "<python regex>",
                "content": "the answer's text",
                "tool_call": {"name": "submit_review", "arguments": {"is_bug": false}} or null,
                "status": 200,
                "times": null}],
     "default": {"content": "...", "tool_call": null, "status": 200}}

For each request the rules are tried in order and the first whose `match` is found (re.search with
DOTALL) in the request's text wins; the request's text is every message's content (system prompts,
instructions and tool results included), one per line, followed by the names of the tools or
functions offered. `times` (null = unlimited) limits how often a rule fires; after that it is skipped.
No rule matching: `default` (itself defaulting to the content "OK"). A `tool_call` makes the answer a
call of that tool (OpenAI `tool_calls`, or `function_call` if the request used legacy `functions`;
Anthropic `tool_use`), after any `content`. A `status` other than 200 answers with an error in the
protocol's format; optional extras: `retry_after` (seconds, sent as Retry-After) for such errors,
`delay_s` (a pause before each streamed chunk, to see streams arrive piece by piece), `cut_after` (a
stream drops its connection after that many chunks, before its usage: an upstream failure), `headers`
(extra reply headers of a whole chat completion, e.g. what a provider adds about the account), and for Anthropic
`cache_read_input_tokens` / `cache_creation_input_tokens` (reported in usage as given, apart from
`input_tokens` as Anthropic does, so prompt-cache accounting can be tested).

Completions (`/v1/completions`): `prompt` is a string or a list of them (`n` choices each); the answer's
`content`, cut to `max_tokens` words, is the generated text. Usage is reported as OpenAI and vLLM report it
(`prompt_tokens` of every prompt, `completion_tokens` of every choice, `total_tokens`); the answer's
`omit_usage` (a list of those names) leaves some out, as a server that reports no output for `max_tokens: 0`
may. Streamed (`stream: true`), each choice's text comes a word a chunk without log-probabilities, then its
finish, then, with `stream_options.include_usage`, a chunk with no choices and the usage. Tokens are
whitespace-separated words, each with the whitespace before it (as BPE tokenisers attach it). Each token's
log-probability is the answer's `word_logprobs[word]` when given (the word without its whitespace), else its
`logprob`: a number for every token, or "hash" (the default): -(n % 1000 + 1) / 100 with n the first 4 bytes
of the word's SHA-256, so different texts get different means. Two request forms return them for the prompt:
vLLM's `prompt_logprobs: k` (each choice's `prompt_logprobs`: None for the first token, then per token a dict
token id -> {logprob, rank, decoded_token}, the prompt's own token first, then up to k better-ranked ones) and
the legacy OpenAI `echo: true` with `logprobs: k` (`choices[i].logprobs`: `tokens`, `token_logprobs` with None
first, `top_logprobs`, `text_offset`; the generated tokens follow the prompt's). The answer's
`prompt_logprobs` says which forms the endpoint accepts: "both" (the default, as vLLM), "vllm", "echo", or
"none" (as hosted chat models); a form it does not accept is answered 400 naming the field.

Usage is deterministic: input tokens = whitespace-separated words of the request's text, output
tokens = words of the content plus the tool's name and its JSON arguments. With an `api_key`, every
model endpoint requires it (Bearer for OpenAI paths, x-api-key for Anthropic's) and answers 401 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from hpc_mle.llm.serving import BackgroundApp, tcp_socket

DEFAULT_ANSWER = {"content": "OK", "tool_call": None, "status": 200}
PROMPT_LOGPROB_FORMS = ("both", "vllm", "echo", "none")


# ---------------------------------------------------------------- the script


@dataclass
class Script:
    rules: list[dict[str, Any]]
    default: dict[str, Any]
    models: list[str]
    fired: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, script: dict[str, Any] | str | Path) -> Script:
        data = script if isinstance(script, dict) else json.loads(Path(script).read_text())
        rules = list(data.get("rules") or [])
        for i, rule in enumerate(rules):
            if "match" not in rule:
                raise ValueError(f"script rule {i} has no 'match'")
            re.compile(rule["match"])
        return cls(rules, {**DEFAULT_ANSWER, **(data.get("default") or {})},
                   list(data.get("models") or ["test-model"]), [0] * len(rules))

    def answer(self, text: str) -> dict[str, Any]:
        """The first rule that matches `text` and has not fired its `times`, else the default."""
        with self.lock:
            for i, rule in enumerate(self.rules):
                if rule.get("times") is not None and self.fired[i] >= rule["times"]:
                    continue
                if re.search(rule["match"], text, re.DOTALL):
                    self.fired[i] += 1
                    return {**DEFAULT_ANSWER, "content": "", **rule, "rule": i}
        return {**self.default, "rule": None}


def _words(text: str) -> int:
    return len(text.split())


def _pieces(text: str) -> list[str]:
    """Streaming chunks: one word (with its trailing space) each; joined they give `text` back."""
    return re.findall(r"\S+\s*|\s+", text)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # parts (OpenAI) or blocks (Anthropic)
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict):
                parts.append(_content_text(part.get("text") or part.get("content") or ""))
        return "\n".join(p for p in parts if p)
    return ""


def request_text(body: dict[str, Any]) -> str:
    """Every message content (and a completion's prompt), one per line, then the names of the tools/functions
    offered."""
    texts = [_content_text(body.get("system")), _content_text(body.get("instructions")),
             _content_text(body.get("prompt"))]
    items = body.get("messages") or body.get("input") or []
    if isinstance(items, str):
        items = [{"content": items}]
    texts += [_content_text(m.get("content")) if isinstance(m, dict) else _content_text(m) for m in items]
    for tool in (body.get("tools") or []) + (body.get("functions") or []):
        if isinstance(tool, dict):
            texts.append(str(tool.get("name") or (tool.get("function") or {}).get("name") or ""))
    return "\n".join(t for t in texts if t)


def _arguments(answer: dict[str, Any]) -> str:
    return json.dumps((answer.get("tool_call") or {}).get("arguments") or {})


def _output_words(answer: dict[str, Any]) -> int:
    n = _words(answer.get("content") or "")
    if answer.get("tool_call"):
        n += _words(str(answer["tool_call"]["name"])) + _words(_arguments(answer))
    return n


def _digest(word: str, salt: str = "") -> int:
    return int.from_bytes(hashlib.sha256((salt + word).encode()).digest()[:4], "big")


def prompt_tokens(text: str) -> list[str]:
    """The scripted tokenisation: words, each with the whitespace before it; joined they give `text` (less
    any trailing whitespace) back."""
    return re.findall(r"\s*\S+", text)


def token_logprob(token: str, answer: dict[str, Any]) -> float:
    """A token's scripted log-probability: `word_logprobs[word]`, else `logprob` (a number, or "hash")."""
    word = token.strip()
    fixed = answer.get("word_logprobs") or {}
    if word in fixed:
        return float(fixed[word])
    rule = answer.get("logprob", "hash")
    return -(_digest(word) % 1000 + 1) / 100 if rule == "hash" else float(rule)


def _token_id(token: str) -> int:
    return _digest(token, "id:") % 100_000


def _vllm_position(token: str, answer: dict[str, Any], k: int) -> dict[str, dict[str, Any]]:
    """One prompt position as vLLM gives it: the prompt's own token first, then up to k better-ranked ones."""
    lp = token_logprob(token, answer)
    rank = 1 + int(-lp)
    out = {str(_token_id(token)): {"logprob": lp, "rank": rank, "decoded_token": token}}
    for better in range(1, min(k, rank - 1) + 1):
        out[str(100_000 + better)] = {"logprob": lp * better / rank, "rank": better, "decoded_token": f"<top{better}>"}
    return out


def _legacy_logprobs(tokens: list[str], answer: dict[str, Any], k: int, first_none: bool) -> dict[str, Any]:
    """OpenAI's legacy `logprobs` object over `tokens` (None for the first when it starts the prompt)."""
    lps: list[float | None] = [token_logprob(t, answer) for t in tokens]
    tops: list[dict[str, float] | None] = [{t: lp} if k else {} for t, lp in zip(tokens, lps, strict=True)]
    if first_none and tokens:
        lps[0] = tops[0] = None
    offsets, at = [], 0
    for t in tokens:
        offsets.append(at)
        at += len(t)
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}


def _id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    body = data if isinstance(data, str) else json.dumps(data)
    return f"{head}data: {body}\n\n".encode()


# ---------------------------------------------------------------- the server


class TestServer:
    """The application and what it has seen (`requests`: path, headers, body of each call)."""

    __test__ = False  # not a pytest class

    def __init__(self, script: dict[str, Any] | str | Path, api_key: str | None = None) -> None:
        self.script = Script.load(script)
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.app = web.Application(client_max_size=256 * 1024**2)
        self.app.router.add_get("/health", self._health)
        self.app.router.add_get("/v1/models", self._models)
        self.app.router.add_post("/v1/chat/completions", self._chat)
        self.app.router.add_post("/v1/completions", self._completions)
        self.app.router.add_post("/v1/responses", self._responses)
        self.app.router.add_post("/v1/messages", self._messages)
        self.background: BackgroundApp | None = None
        self.url = self.base_url = ""

    # ------------------------------------------------------------ in-process use

    def start(self, host: str = "127.0.0.1", port: int = 0) -> TestServer:
        sock = tcp_socket(host, port)
        self.url = f"http://{host}:{sock.getsockname()[1]}"
        self.base_url = self.url + "/v1"
        self.background = BackgroundApp(self.app, [sock], "llm-testserver")
        self.background.start()
        return self

    def stop(self) -> None:
        if self.background is not None:
            self.background.stop()

    def __enter__(self) -> TestServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ shared steps

    async def _begin(self, request: web.Request, anthropic: bool) -> tuple[dict, dict] | web.Response:
        """Record the request, check the key, pick the answer; or the error reply to send instead."""
        body = await request.json() if request.can_read_body else {}
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
        if self.api_key is not None:
            auth = request.headers.get("x-api-key") if anthropic else request.headers.get("Authorization")
            if auth != (self.api_key if anthropic else f"Bearer {self.api_key}"):
                return self._error(anthropic, 401, "testserver: wrong API key", "authentication_error")
        answer = self.script.answer(request_text(body))
        if answer.get("status", 200) != 200:
            headers = {"Retry-After": str(answer["retry_after"])} if answer.get("retry_after") is not None else {}
            kind = "rate_limit_error" if answer["status"] == 429 else "api_error"
            return self._error(anthropic, answer["status"], f"testserver: scripted status {answer['status']}",
                               kind, headers)
        return body, answer

    @staticmethod
    def _error(anthropic: bool, status: int, message: str, kind: str, headers: dict | None = None) -> web.Response:
        body = ({"type": "error", "error": {"type": kind, "message": message}} if anthropic
                else {"error": {"message": message, "type": kind, "param": None, "code": None}})
        return web.json_response(body, status=status, headers=headers)

    async def _stream(self, request: web.Request, chunks: list[bytes], answer: dict[str, Any]) -> web.StreamResponse:
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await out.prepare(request)
        delay, cut = float(answer.get("delay_s") or 0), answer.get("cut_after")
        try:
            for n, chunk in enumerate(chunks):
                if cut is not None and n >= cut:
                    assert request.transport is not None
                    request.transport.abort()  # mid-body: the client sees the stream break off
                    return out
                if delay:
                    await asyncio.sleep(delay)
                await out.write(chunk)
            await out.write_eof()
        except ConnectionResetError:  # the client hung up mid-stream
            pass
        return out

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({})

    async def _models(self, request: web.Request) -> web.Response:
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._error(False, 401, "testserver: wrong API key", "authentication_error")
        return web.json_response({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "testserver"} for m in self.script.models]})

    # ------------------------------------------------------------ OpenAI chat completions

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        begun = await self._begin(request, anthropic=False)
        if isinstance(begun, web.Response):
            return begun
        body, answer = begun
        model, content, call = body.get("model") or self.script.models[0], answer.get("content") or "", \
            answer.get("tool_call")
        legacy = bool(body.get("functions")) and not body.get("tools")
        usage = {"prompt_tokens": _words(request_text(body)), "completion_tokens": _output_words(answer)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        finish = ("function_call" if legacy else "tool_calls") if call else "stop"
        call_id = _id("call_")
        base = {"id": _id("chatcmpl-"), "created": int(time.time()), "model": model}
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": content or None}
            if call and legacy:
                message["function_call"] = {"name": call["name"], "arguments": _arguments(answer)}
            elif call:
                message["tool_calls"] = [{"id": call_id, "type": "function",
                                          "function": {"name": call["name"], "arguments": _arguments(answer)}}]
            return web.json_response({**base, "object": "chat.completion", "usage": usage, "choices": [
                {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}]},
                headers=answer.get("headers"))

        def chunk(delta: dict, finish_reason: str | None = None) -> bytes:
            return _sse({**base, "object": "chat.completion.chunk",
                         "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})

        chunks = [chunk({"role": "assistant", "content": ""})]
        chunks += [chunk({"content": p}) for p in _pieces(content)]
        if call:
            args = _arguments(answer)
            halves = [args[: len(args) // 2], args[len(args) // 2:]]
            if legacy:
                chunks.append(chunk({"function_call": {"name": call["name"], "arguments": ""}}))
                chunks += [chunk({"function_call": {"arguments": h}}) for h in halves]
            else:
                chunks.append(chunk({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                                                     "function": {"name": call["name"], "arguments": ""}}]}))
                chunks += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": h}}]}) for h in halves]
        chunks.append(chunk({}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append(_sse({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}))
        chunks.append(_sse("[DONE]"))
        return await self._stream(request, chunks, answer)

    # ------------------------------------------------------------ OpenAI legacy completions (and vLLM's)

    @staticmethod
    def _refused_form(body: dict[str, Any], answer: dict[str, Any]) -> str | None:
        """The prompt log-probability field this endpoint does not accept, if the request uses one."""
        accepts = answer.get("prompt_logprobs") or "both"
        if accepts not in PROMPT_LOGPROB_FORMS:
            raise ValueError(f"script: prompt_logprobs must be one of {PROMPT_LOGPROB_FORMS}, not {accepts!r}")
        if body.get("prompt_logprobs") is not None and accepts not in ("both", "vllm"):
            return "prompt_logprobs"
        if body.get("echo") and body.get("logprobs") is not None and accepts not in ("both", "echo"):
            return "echo"
        return None

    @staticmethod
    def _generated(body: dict[str, Any], answer: dict[str, Any]) -> list[str]:
        """The answer's words as generated tokens (space first), at most `max_tokens` (default 16) of them."""
        limit = body.get("max_tokens")
        words = [f" {w}" for w in (answer.get("content") or "").split()]
        return words[: 16 if limit is None else max(int(limit), 0)]

    def _choice(self, index: int, prompt: str, body: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        """One completion choice: the generated words, and log-probabilities in the form the request asked."""
        generated = self._generated(body, answer)
        tokens, echo = prompt_tokens(prompt), bool(body.get("echo"))
        k = body.get("logprobs")
        cut = len(generated) < len((answer.get("content") or "").split())
        choice: dict[str, Any] = {"index": index, "text": (prompt if echo else "") + "".join(generated),
                                  "logprobs": None, "stop_reason": None, "finish_reason": "length" if cut else "stop"}
        if k is not None:
            choice["logprobs"] = _legacy_logprobs((tokens if echo else []) + generated, answer, int(k), echo)
        if body.get("prompt_logprobs") is not None:
            kp = int(body["prompt_logprobs"])
            choice["prompt_logprobs"] = [None] + [_vllm_position(t, answer, kp) for t in tokens[1:]]
        return choice

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        begun = await self._begin(request, anthropic=False)
        if isinstance(begun, web.Response):
            return begun
        body, answer = begun
        prompts = body.get("prompt")
        prompts = [prompts] if isinstance(prompts, str) else prompts
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            return self._error(False, 400, "testserver: prompt must be a string or a list of strings",
                               "invalid_request_error")
        refused = self._refused_form(body, answer)
        if refused:
            return self._error(False, 400, f"testserver: this model does not return prompt log-probabilities "
                               f"({refused} is not supported)", "invalid_request_error")
        n = int(body.get("n") or 1)
        choices = [self._choice(i * n + j, p, body, answer) for i, p in enumerate(prompts) for j in range(n)]
        used = sum(len(prompt_tokens(p)) for p in prompts)
        made = len(self._generated(body, answer)) * len(choices)
        usage = {"prompt_tokens": used, "completion_tokens": made, "total_tokens": used + made}
        usage = {k: v for k, v in usage.items() if k not in (answer.get("omit_usage") or ())}
        base = {"id": _id("cmpl-"), "object": "text_completion", "created": int(time.time()),
                "model": body.get("model") or self.script.models[0]}
        if not body.get("stream"):
            return web.json_response({**base, "choices": choices, "usage": usage})
        return await self._stream(request, self._completion_chunks(base, choices, body, usage), answer)

    @staticmethod
    def _completion_chunks(base: dict[str, Any], choices: list[dict[str, Any]], body: dict[str, Any],
                           usage: dict[str, Any]) -> list[bytes]:
        """A streamed completion: each choice's text a word a chunk, its finish, the usage chunk when asked."""
        def chunk(index: int, text: str, finish: str | None = None) -> bytes:
            return _sse({**base, "choices": [{"index": index, "text": text, "logprobs": None,
                                              "finish_reason": finish}]})

        chunks = []
        for choice in choices:
            chunks += [chunk(choice["index"], p) for p in _pieces(choice["text"])]
            chunks.append(chunk(choice["index"], "", choice["finish_reason"]))
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append(_sse({**base, "choices": [], "usage": usage}))
        return [*chunks, _sse("[DONE]")]

    # ------------------------------------------------------------ OpenAI responses

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        begun = await self._begin(request, anthropic=False)
        if isinstance(begun, web.Response):
            return begun
        body, answer = begun
        content, call = answer.get("content") or "", answer.get("tool_call")
        inp, outp = _words(request_text(body)), _output_words(answer)
        output: list[dict[str, Any]] = []
        msg_id = _id("msg_")
        if content or not call:
            output.append({"type": "message", "id": msg_id, "status": "completed", "role": "assistant",
                           "content": [{"type": "output_text", "text": content, "annotations": []}]})
        if call:
            output.append({"type": "function_call", "id": _id("fc_"), "call_id": _id("call_"), "name": call["name"],
                           "arguments": _arguments(answer), "status": "completed"})
        response = {"id": _id("resp_"), "object": "response", "created_at": int(time.time()), "status": "completed",
                    "model": body.get("model") or self.script.models[0], "output": output,
                    "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
                    "usage": {"input_tokens": inp, "output_tokens": outp, "total_tokens": inp + outp,
                              "input_tokens_details": {"cached_tokens": 0},
                              "output_tokens_details": {"reasoning_tokens": 0}}}
        if not body.get("stream"):
            return web.json_response(response)
        seq = iter(range(10**6))

        def event(kind: str, **fields: Any) -> bytes:
            return _sse({"type": kind, "sequence_number": next(seq), **fields}, kind)

        started = {**response, "status": "in_progress", "output": [], "usage": None}
        chunks = [event("response.created", response=started)]
        for index, item in enumerate(output):
            if item["type"] != "message":
                chunks.append(event("response.output_item.added", output_index=index, item=item))
                chunks.append(event("response.output_item.done", output_index=index, item=item))
                continue
            where = {"item_id": msg_id, "output_index": index, "content_index": 0}
            empty = {"type": "output_text", "text": "", "annotations": []}
            chunks.append(event("response.output_item.added", output_index=index,
                                item={**item, "status": "in_progress", "content": []}))
            chunks.append(event("response.content_part.added", **where, part=empty))
            chunks += [event("response.output_text.delta", **where, delta=p) for p in _pieces(content)]
            chunks.append(event("response.output_text.done", **where, text=content))
            chunks.append(event("response.content_part.done", **where, part={**empty, "text": content}))
            chunks.append(event("response.output_item.done", output_index=index, item=item))
        chunks.append(event("response.completed", response=response))
        return await self._stream(request, chunks, answer)

    # ------------------------------------------------------------ Anthropic messages

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        begun = await self._begin(request, anthropic=True)
        if isinstance(begun, web.Response):
            return begun
        body, answer = begun
        content, call = answer.get("content") or "", answer.get("tool_call")
        inp, outp = _words(request_text(body)), _output_words(answer)
        cache = {k: answer[k] for k in ("cache_read_input_tokens", "cache_creation_input_tokens")
                 if k in answer}
        blocks: list[dict[str, Any]] = []
        if content or not call:
            blocks.append({"type": "text", "text": content})
        if call:
            blocks.append({"type": "tool_use", "id": _id("toolu_"), "name": call["name"],
                           "input": call.get("arguments") or {}})
        message = {"id": _id("msg_"), "type": "message", "role": "assistant",
                   "model": body.get("model") or self.script.models[0], "content": blocks,
                   "stop_reason": "tool_use" if call else "end_turn", "stop_sequence": None,
                   "usage": {"input_tokens": inp, "output_tokens": outp, **cache}}
        if not body.get("stream"):
            return web.json_response(message)

        def event(kind: str, **fields: Any) -> bytes:
            return _sse({"type": kind, **fields}, kind)

        start = {**message, "content": [], "stop_reason": None,
                 "usage": {"input_tokens": inp, "output_tokens": 1, **cache}}
        chunks = [event("message_start", message=start), event("ping")]
        for index, block in enumerate(blocks):
            if block["type"] == "text":
                chunks.append(event("content_block_start", index=index, content_block={"type": "text", "text": ""}))
                chunks += [event("content_block_delta", index=index, delta={"type": "text_delta", "text": p})
                           for p in _pieces(block["text"])]
            else:
                chunks.append(event("content_block_start", index=index, content_block={**block, "input": {}}))
                chunks.append(event("content_block_delta", index=index,
                                    delta={"type": "input_json_delta", "partial_json": _arguments(answer)}))
            chunks.append(event("content_block_stop", index=index))
        chunks.append(event("message_delta", delta={"stop_reason": message["stop_reason"], "stop_sequence": None},
                            usage={"output_tokens": outp}))
        chunks.append(event("message_stop"))
        return await self._stream(request, chunks, answer)


def start(script: dict[str, Any] | str | Path, api_key: str | None = None, host: str = "127.0.0.1",
          port: int = 0) -> TestServer:
    """A test server answering from `script`, serving from a background thread until `.stop()`."""
    return TestServer(script, api_key).start(host, port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Scripted OpenAI/Anthropic-compatible server for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (see --port-file)")
    parser.add_argument("--script", required=True, type=Path)
    parser.add_argument("--port-file", type=Path, help="write the port here once listening")
    parser.add_argument("--api-key", help="require this key")
    args = parser.parse_args(argv)
    server = TestServer(args.script, args.api_key)
    sock = tcp_socket(args.host, args.port)
    if args.port_file:
        tmp = args.port_file.with_suffix(".tmp")
        tmp.write_text(str(sock.getsockname()[1]))
        tmp.replace(args.port_file)
    web.run_app(server.app, sock=sock, print=None, access_log=None)


if __name__ == "__main__":
    main()
