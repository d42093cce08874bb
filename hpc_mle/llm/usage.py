"""Token counts as providers report them, read from a whole reply or from a stream of SSE events.

The three protocols name the same things differently: chat completions say prompt/completion
tokens, the responses API and Anthropic say input/output tokens, and Anthropic counts prompt-cache
reads and writes apart from `input_tokens`. Everything is reduced to one `Usage` whose
`input_tokens` is all input (cached included), so budgets and costs mean the same for every provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    model: str | None = None
    cache_write_input_tokens: int | None = None  # Anthropic's cache_creation_input_tokens, billed above input


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def from_usage(usage: dict[str, Any] | None, model: str | None = None) -> Usage:
    """One provider `usage` object as a Usage (any of the three protocols)."""
    if not isinstance(usage, dict):
        return Usage(model=model)
    base = _int(usage.get("prompt_tokens"))
    if base is None:
        base = _int(usage.get("input_tokens"))
    cache_write = _int(usage.get("cache_creation_input_tokens"))  # Anthropic: not in input_tokens
    cache_read = _int(usage.get("cache_read_input_tokens"))
    details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else None
    if cached is None:
        cached = cache_read
    total_in = None if base is None else base + (cache_write or 0) + (cache_read or 0)
    output = _int(usage.get("completion_tokens"))
    if output is None:
        output = _int(usage.get("output_tokens"))
    return Usage(total_in, output, cached, model, cache_write_input_tokens=cache_write)


def from_body(body: Any) -> Usage:
    """Usage of a whole (non-streamed) reply."""
    if not isinstance(body, dict):
        return Usage()
    return from_usage(body.get("usage"), body.get("model"))


class StreamUsage:
    """Collects usage from a stream's events: OpenAI's final usage chunk, the responses API's
    `response.completed`, Anthropic's `message_start` (input, cache reads and writes) and `message_delta`
    (output so far; newer API versions repeat the cache counts there, which merge to the same values)."""

    def __init__(self) -> None:
        self.raw: dict[str, Any] = {}
        self.model: str | None = None
        self.response_id: str | None = None
        self.final = False  # the event that carries the whole call's usage has been seen

    def feed(self, event: Any) -> None:
        if not isinstance(event, dict):
            return
        holder = event
        for key in ("response", "message"):  # responses API and Anthropic wrap the object
            if isinstance(event.get(key), dict):
                holder = event[key]
        self.model = holder.get("model") or event.get("model") or self.model
        if holder is event.get("response") and isinstance(holder.get("id"), str):
            self.response_id = holder["id"]
        for usage in (event.get("usage"), holder.get("usage")):
            if isinstance(usage, dict):
                self.raw.update({k: v for k, v in usage.items() if v is not None})
                self.final = self.final or _final(event)

    def result(self) -> Usage:
        return from_usage(self.raw, self.model) if self.raw else Usage(model=self.model)


def _final(event: dict[str, Any]) -> bool:
    """Whether an event with usage reports the whole call: Anthropic's `message_start` only has the input
    (its `message_delta` closes the count); a chat stream's own usage chunk has no choices (vLLM can put
    running counts in every chunk, which must not pass for the total)."""
    kind = event.get("type")
    if kind is None:
        return event.get("choices") == []
    return kind in ("message_delta", "response.completed", "response.incomplete",
                                    "response.failed")
