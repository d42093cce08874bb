"""The metering proxy against the scripted test server, driven by the official OpenAI and Anthropic
clients: accounting, budgets, streaming, retries, the token check, and an attempt in bubblewrap whose
agent calls the model from inside the sandbox, after which the key is found nowhere."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import anthropic
import openai
import pytest
import yaml

from hpc_mle import runner
from hpc_mle.llm import prices, testserver
from hpc_mle.llm.proxy import MeteringProxy, config_from_model

KEY = "sk-test-SECRET-5e1f0c9a7b3d4e2f"  # distinctive, so a scan for it cannot miss
KEY_ENV = "HPC_MLE_TEST_LLM_KEY"
MODEL = "gpt-4o-2024-08-06"
AGENTS = Path(__file__).parent / "agents"
SCRIPT = {
    "rules": [
        {"match": "slowly", "content": "one two three four five six", "tool_call": None, "status": 200,
         "times": None, "delay_s": 0.15},
        {"match": "submit_review", "content": "", "tool_call": {"name": "submit_review",
                                                                "arguments": {"is_bug": False, "summary": "ok"}}},
        {"match": "hello", "content": "hello back from the model", "tool_call": None, "status": 200, "times": None},
    ],
    "default": {"content": "default answer"},
}


@pytest.fixture
def upstream():
    with testserver.start(SCRIPT, api_key=KEY) as server:
        yield server


@pytest.fixture
def make_proxy(tmp_path, monkeypatch):
    """A started proxy in front of `server`: make_proxy(server, provider=, budget=, model=, price=, **ProxyConfig fields)."""
    monkeypatch.setenv(KEY_ENV, KEY)
    started: list[MeteringProxy] = []

    def make(server, provider="openai", budget=None, model=MODEL, price=None, **overrides) -> MeteringProxy:
        model = {"name": "t", "provider": provider, "model": model, "api_key_env": KEY_ENV, "price": price,
                 "base_url": server.base_url if provider != "anthropic" else server.url, "budget": budget or {}}
        cfg = config_from_model(model, tmp_path / "llm_calls.jsonl", **{"backoff_s": 0.05, **overrides})
        proxy = MeteringProxy(cfg, tmp_path / f"llm{len(started)}.sock", tcp=True).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.close()


def base(proxy: MeteringProxy) -> str:
    return f"http://127.0.0.1:{proxy.port}"


def oai(proxy: MeteringProxy, token: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(api_key=token or proxy.token, base_url=base(proxy) + "/v1", max_retries=0)


def claude(proxy: MeteringProxy, token: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=token or proxy.token, base_url=base(proxy), max_retries=0)


def calls(tmp_path: Path, expect: int | None = None) -> list[dict]:
    """The proxy's log; with `expect`, wait (briefly) for that many lines: a streamed call is logged
    just after its last chunk is relayed, so the client can finish a moment before the line lands."""
    path = tmp_path / "llm_calls.jsonl"
    for _ in range(100):
        lines = path.read_text().splitlines() if path.exists() else []
        if expect is None or len(lines) >= expect:
            break
        time.sleep(0.05)
    return [json.loads(line) for line in lines]


def hello(text: str = "hello there, model") -> list[dict]:
    return [{"role": "system", "content": "You are terse."}, {"role": "user", "content": text}]


def test_accounting_matches_the_server_and_the_price_table(upstream, make_proxy, tmp_path):
    proxy = make_proxy(upstream)
    client = oai(proxy)
    chat = client.chat.completions.create(model=MODEL, messages=hello())
    review = client.chat.completions.create(model=MODEL, messages=hello("judge this"), tools=[
        {"type": "function", "function": {"name": "submit_review", "parameters": {"type": "object"}}}])
    resp = client.responses.create(model=MODEL, input="hello via responses")
    assert [m.id for m in client.models.list()] == ["test-model"]

    assert chat.choices[0].message.content == "hello back from the model"
    call = review.choices[0].message.tool_calls[0].function
    assert call.name == "submit_review" and json.loads(call.arguments) == {"is_bug": False, "summary": "ok"}
    assert resp.output_text == "hello back from the model"
    reported = [(chat.usage.prompt_tokens, chat.usage.completion_tokens),
                (review.usage.prompt_tokens, review.usage.completion_tokens),
                (resp.usage.input_tokens, resp.usage.output_tokens)]
    assert reported[0] == (6, 5)  # the server counts words: "You are terse." + "hello there, model"; the answer

    log = calls(tmp_path)
    assert [c["endpoint"] for c in log] == ["/v1/chat/completions"] * 2 + ["/v1/responses", "/v1/models"]
    price = prices.load()[MODEL]
    for entry, (tokens_in, tokens_out) in zip(log, reported, strict=False):
        assert (entry["input_tokens"], entry["output_tokens"]) == (tokens_in, tokens_out)
        assert entry["cost_usd"] == pytest.approx((tokens_in * 2.50 + tokens_out * 10.00) / 1e6)
        assert entry["cost_usd"] == pytest.approx(price.cost(tokens_in, tokens_out))
        assert entry["status"] == 200 and entry["model"] == MODEL and entry["stream"] is False
        assert entry["latency_s"] >= 0 and entry["error"] is None
    assert log[3]["input_tokens"] == 0 and log[3]["cost_usd"] == 0.0
    summary = proxy.summary()
    assert summary["input_tokens"] == sum(i for i, _ in reported)
    assert summary["output_tokens"] == sum(o for _, o in reported)
    assert summary["cost_usd"] == pytest.approx(sum(c["cost_usd"] for c in log))
    assert summary["price_read_on"] == price.read_on and summary["calls"] == 4
    # the provider got the real key, never the attempt's token
    assert {r["headers"]["Authorization"] for r in upstream.requests} == {f"Bearer {KEY}"}
    assert all(proxy.token not in json.dumps(r) for r in upstream.requests)


def test_unknown_price_counts_tokens_with_cost_null(upstream, make_proxy, tmp_path):
    proxy = make_proxy(upstream, price="no-such-model-price")
    oai(proxy).chat.completions.create(model=MODEL, messages=hello())
    (entry,) = calls(tmp_path)
    assert entry["input_tokens"] > 0 and entry["cost_usd"] is None
    assert proxy.summary()["cost_usd"] is None and proxy.warnings


def test_streaming_passes_through_chunk_by_chunk(upstream, make_proxy, tmp_path):
    proxy = make_proxy(upstream)
    client = oai(proxy)
    whole = client.chat.completions.create(model=MODEL, messages=hello("slowly please")).choices[0].message.content
    started = time.monotonic()
    arrivals, pieces, usage_chunks = [], [], 0
    for chunk in client.chat.completions.create(model=MODEL, messages=hello("slowly please"), stream=True):
        arrivals.append(time.monotonic() - started)
        usage_chunks += chunk.usage is not None
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == whole == "one two three four five six" and len(pieces) == 6
    # the server pauses 0.15 s before each chunk: relayed one by one, they arrive spread out
    assert arrivals[-1] - arrivals[0] > 0.8 and arrivals[0] < arrivals[-1] / 2
    assert usage_chunks == 0  # the proxy asked for usage; this client did not, so it never sees it

    asked = client.chat.completions.create(model=MODEL, messages=hello(), stream=True,
                                           stream_options={"include_usage": True})
    assert [c.usage.completion_tokens for c in asked if c.usage] == [5]
    first, second, third = calls(tmp_path, expect=3)
    assert (second["input_tokens"], second["output_tokens"]) == (first["input_tokens"], first["output_tokens"])
    assert second["stream"] is True and third["output_tokens"] == 5
    assert upstream.requests[1]["body"]["stream_options"] == {"include_usage": True}


def test_a_client_hanging_up_mid_stream_is_logged(upstream, make_proxy, tmp_path):
    proxy = make_proxy(upstream)
    stream = oai(proxy).chat.completions.create(model=MODEL, messages=hello("slowly please"), stream=True)
    first = next(iter(stream))
    stream.close()
    assert first.choices[0].delta.role == "assistant"
    for _ in range(50):  # the proxy notices at its next write
        if (tmp_path / "llm_calls.jsonl").exists():
            break
        time.sleep(0.1)
    (entry,) = calls(tmp_path)
    assert entry["stream"] and entry["error"].startswith("stream cut") and entry["usage"] == "estimated"
    assert entry["output_tokens"] == proxy.cfg.default_max_output_tokens and entry["input_tokens"] > 0
    assert oai(proxy).chat.completions.create(model=MODEL, messages=hello()).choices[0].message.content


def test_anthropic_messages_and_streaming(upstream, make_proxy, tmp_path):
    proxy = make_proxy(upstream, provider="anthropic")
    client = claude(proxy)
    message = client.messages.create(model=MODEL, max_tokens=100, system="You are terse.",
                                     messages=[{"role": "user", "content": "hello there, model"}])
    assert message.content[0].text == "hello back from the model"
    with client.messages.stream(model=MODEL, max_tokens=100, system="You are terse.",
                                messages=[{"role": "user", "content": "hello there, model"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "hello back from the model"
    tool = client.messages.create(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "judge"}],
                                  tools=[{"name": "submit_review", "input_schema": {"type": "object"}}])
    assert tool.content[0].name == "submit_review" and tool.content[0].input["summary"] == "ok"

    log = calls(tmp_path, expect=3)
    assert [c["stream"] for c in log] == [False, True, False]
    for entry, reply in zip(log, (message, final, tool), strict=True):
        assert (entry["input_tokens"], entry["output_tokens"]) == (reply.usage.input_tokens,
                                                                   reply.usage.output_tokens)
        assert entry["cost_usd"] == pytest.approx(prices.load()[MODEL].cost(entry["input_tokens"],
                                                                            entry["output_tokens"]))
    assert {r["headers"]["x-api-key"] for r in upstream.requests} == {KEY}
    assert not any("Authorization" in r["headers"] for r in upstream.requests)


def test_token_budget_stops_the_agent_with_a_clear_error(upstream, make_proxy, tmp_path):
    proxy = make_proxy(upstream, budget={"max_tokens": 150})
    client = oai(proxy)
    done = 0
    with pytest.raises(openai.PermissionDeniedError) as refused:
        for _ in range(40):  # 1 + 5 tokens a call; each reserves its input estimate (~33) plus an output bound
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello"}])
            done += 1
    assert refused.value.status_code == 403 and "budget cannot cover this call" in refused.value.message
    assert len(upstream.requests) == done and 10 < done < 20  # the refused call never reached the provider
    # no bound from the client: the proxy set one, lowered to what was left, on every forwarded call
    bounds = [r["body"]["max_completion_tokens"] for r in upstream.requests]
    assert bounds[0] < 150 and bounds == sorted(bounds, reverse=True) and bounds[-1] >= 16
    assert proxy.summary()["input_tokens"] + proxy.summary()["output_tokens"] == 6 * done <= 150
    with pytest.raises(anthropic.PermissionDeniedError, match="budget cannot cover"):
        claude(proxy).messages.create(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "hello"}])
    log = calls(tmp_path)
    assert [c["status"] for c in log] == [200] * done + [403, 403] and log[-1]["refused"]
    assert {c["usage"] for c in log[:done]} == {"reported"} and proxy.summary()["refused_calls"] == 2
    assert proxy.summary()["budget_spent"]  # what is left cannot cover another call


def test_cost_budget_stops_an_anthropic_agent(upstream, make_proxy, tmp_path):
    sonnet = "claude-3-5-sonnet-20241022"
    proxy = make_proxy(upstream, provider="anthropic", model=sonnet, budget={"max_cost_usd": 0.001})
    client = claude(proxy)
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        for _ in range(20):  # 1 token in, 5 out: $0.000078 a call at $3/$15 per million; ~$0.0003 reserved
            client.messages.create(model=sonnet, max_tokens=10, messages=[{"role": "user", "content": "hello"}])
    assert refused.value.status_code == 403 and refused.value.body["error"]["type"] == "permission_error"
    assert "budget cannot cover this call" in refused.value.message and "$0.000298 left" in refused.value.message
    assert len(upstream.requests) == 9 and proxy.summary()["cost_usd"] == pytest.approx(9 * 7.8e-05)


def test_anthropic_cache_writes_are_priced_at_the_cache_write_rate(make_proxy, tmp_path):
    sonnet = "claude-3-5-sonnet-20241022"
    price = prices.load()[sonnet]
    assert (price.input_usd_per_mtok, price.cached_input_usd_per_mtok, price.cache_write_usd_per_mtok,
            price.output_usd_per_mtok) == (3.00, 0.30, 3.75, 15.00)
    # 100 tokens in, of which 20 read from the cache and 30 written to it; 10 out
    assert price.cost(100, 10, 20, 30) == pytest.approx((50 * 3.00 + 20 * 0.30 + 30 * 3.75 + 10 * 15.00) / 1e6)
    assert prices.load()[MODEL].cost(100, 10, 0, 30) == prices.load()[MODEL].cost(100, 10)  # no write rate: input
    old_table = tmp_path / "old_prices.csv"  # a table from before the column still loads
    old_table.write_text("price_key,provider,input_usd_per_mtok,cached_input_usd_per_mtok,output_usd_per_mtok,"
                         "read_on,source\nm,p,3.00,0.30,15.00,2026-11-22,somewhere\n")
    assert prices.load(old_table)["m"].cache_write_usd_per_mtok is None

    read, written = 1200, 3400
    script = {"rules": [{"match": "hello", "content": "hello back",
                         "cache_read_input_tokens": read, "cache_creation_input_tokens": written}]}
    with testserver.start(script, api_key=KEY) as server:
        proxy = make_proxy(server, provider="anthropic", model=sonnet)
        client = claude(proxy)
        message = client.messages.create(model=sonnet, max_tokens=100,
                                         messages=[{"role": "user", "content": "hello there, model"}])
        with client.messages.stream(model=sonnet, max_tokens=100,
                                    messages=[{"role": "user", "content": "hello there, model"}]) as stream:
            final = stream.get_final_message()
    log = calls(tmp_path, expect=2)
    assert [c["stream"] for c in log] == [False, True]
    for entry, reply in zip(log, (message, final), strict=True):
        uncached, out = reply.usage.input_tokens, reply.usage.output_tokens
        assert (uncached, out) == (3, 2)
        assert (reply.usage.cache_read_input_tokens, reply.usage.cache_creation_input_tokens) == (read, written)
        assert (entry["input_tokens"], entry["cached_input_tokens"], entry["cache_write_input_tokens"],
                entry["output_tokens"]) == (uncached + read + written, read, written, out)
        assert entry["cost_usd"] == pytest.approx((uncached * 3.00 + read * 0.30 + written * 3.75 + out * 15.00) / 1e6)
    summary = proxy.summary()
    assert (summary["cached_input_tokens"], summary["cache_write_input_tokens"]) == (2 * read, 2 * written)
    assert summary["cost_usd"] == pytest.approx(sum(c["cost_usd"] for c in log))


def test_rate_limits_are_retried_honouring_retry_after(make_proxy, tmp_path):
    script = {"rules": [{"match": ".", "status": 429, "times": 1, "retry_after": 1},
                        {"match": ".", "status": 503, "times": 1},
                        {"match": "hello", "content": "finally"}]}
    with testserver.start(script, api_key=KEY) as server:
        proxy = make_proxy(server)
        started = time.monotonic()
        reply = oai(proxy).chat.completions.create(model=MODEL, messages=hello())
        elapsed = time.monotonic() - started
    assert reply.choices[0].message.content == "finally"
    assert 1.0 <= elapsed < 5 and len(server.requests) == 3  # Retry-After: 1, then a short backoff
    (entry,) = calls(tmp_path)
    assert entry["retries"] == 2 and entry["status"] == 200 and entry["output_tokens"] == 1


def test_retries_are_bounded_then_the_error_passes_through(make_proxy, tmp_path):
    with testserver.start({"rules": [{"match": ".", "status": 429}]}, api_key=KEY) as server:
        proxy = make_proxy(server, max_retries=2, backoff_s=0.01)
        with pytest.raises(openai.RateLimitError):
            oai(proxy).chat.completions.create(model=MODEL, messages=hello())
    assert len(server.requests) == 3
    (entry,) = calls(tmp_path)
    assert entry["status"] == 429 and entry["retries"] == 2 and "scripted status 429" in entry["error"]


def test_a_wrong_token_is_rejected_and_keys_are_redacted(upstream, make_proxy, tmp_path):
    proxy = make_proxy(upstream)
    with pytest.raises(openai.AuthenticationError, match="wrong or missing attempt token"):
        oai(proxy, token="hpcmle-guessed").chat.completions.create(model=MODEL, messages=hello())
    with pytest.raises(anthropic.AuthenticationError):
        claude(proxy, token=KEY).messages.create(model=MODEL, max_tokens=5, messages=hello()[1:])
    assert upstream.requests == [] and [c["status"] for c in calls(tmp_path)] == [401, 401]
    masked = "Incorrect API key provided: sk-test-****************4e2f."  # what providers echo back
    assert "4e2f" not in proxy.redact(masked) and KEY not in proxy.redact(f"key={KEY}")


# ---------------------------------------------------------------- one attempt, in bubblewrap


@pytest.mark.parametrize("sandbox", [
    pytest.param("bwrap", marks=pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")),
    "none",  # no own loopback: the proxy also listens on a TCP port of the host's
])
def test_attempt_agent_calls_the_proxy_from_the_sandbox_and_the_key_is_nowhere(tmp_path, mini_data, monkeypatch,
                                                                               sandbox):
    monkeypatch.setenv(KEY_ENV, KEY)
    scaffold = tmp_path / "llm_client.yaml"
    scaffold.write_text(yaml.safe_dump({"name": "llm_client", "agent_files": [str(AGENTS / "llm_client.py")],
                                        "command": ["python3", "/home/agent/llm_client.py"]}))
    with testserver.start(SCRIPT, api_key=KEY) as server:
        model = {"name": "gpt4o", "provider": "openai", "model": MODEL, "api_key_env": KEY_ENV,
                 "base_url": server.base_url, "sampling": {"temperature": 0.5}, "price": MODEL,
                 "budget": {"max_tokens": 150, "max_cost_usd": None}}
        out = tmp_path / "attempt"
        cfg = runner.AttemptConfig(competition_id="mini-churn", scaffold=str(scaffold), out=out, data_dir=mini_data,
                                   sandbox=sandbox, time_limit_s=60, grace_s=2, telemetry_interval_s=0.5, model_config=model)
        status = runner.run_attempt(cfg)
    assert status["state"] == "done", status
    seen = json.loads((out / "logs" / "llm_client.json").read_text())
    assert seen["answers"] == ["hello back from the model"] * 2
    assert "".join(seen["stream"]) == "hello back from the model"
    # 4 + 5 tokens a call, each reserving ~40 input and 16+ output: refused once less than that is left
    done = seen["calls"]
    assert 7 <= done <= 13 and "budget cannot cover this call" in seen["budget_error"]
    env = seen["env"]
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    (started,) = [e for e in events if e["event"] == "llm-proxy"]
    assert started["upstream"] == server.base_url and started["warnings"] == []
    address = "http://127.0.0.1:4000" if sandbox == "bwrap" else f"http://127.0.0.1:{started['port']}"
    assert env["OPENAI_BASE_URL"] == address + "/v1" and env["ANTHROPIC_BASE_URL"] == address
    assert env["OPENAI_API_KEY"] == env["ANTHROPIC_API_KEY"] != KEY
    assert env["HPC_MLE_MODEL"] == MODEL and json.loads(env["HPC_MLE_SAMPLING"]) == {"temperature": 0.5}
    assert KEY_ENV not in env and KEY not in json.dumps(env)

    log = [json.loads(line) for line in (out / "llm_calls.jsonl").read_text().splitlines()]
    llm = status["llm"]
    assert llm["calls"] == len(log) == done + 1 and llm["refused_calls"] == 1 and llm["budget_spent"]
    assert llm["input_tokens"] == done * 4 and llm["output_tokens"] == done * 5 <= 150
    assert llm["cost_usd"] == pytest.approx(done * prices.load()[MODEL].cost(4, 5))
    assert json.loads((out / "status.json").read_text())["llm"] == llm

    # the proxy put the key in on the host side (x-api-key on Anthropic's path, Bearer everywhere for this host)
    assert {r["headers"]["Authorization"] for r in server.requests} == {f"Bearer {KEY}"}
    assert [r["headers"]["x-api-key"] for r in server.requests if r["path"] == "/v1/messages"] == [KEY]
    for path in [p for p in out.rglob("*") if p.is_file()]:
        assert KEY.encode() not in path.read_bytes(), f"{path} holds the key"
