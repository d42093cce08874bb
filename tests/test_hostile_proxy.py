"""Hostile agents against the metering proxy and the report writers: another model, bursts against the
token and dollar budgets, streams cut before their usage, forbidden headers, huge and malformed bodies,
the attempt's token fished for through the harness's files, and markup in submitted text.

Most tries drive the proxy directly (fast, no sandbox) with the scripted test server as the provider,
and check what that server received; the markup try runs a real agent in bubblewrap (as root and as an
ordinary user, `tests/hostile.py`) and then `hpc-mle grade` and the report writers on what it wrote."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import anthropic
import openai
import pandas as pd
import pytest
import yaml

from hpc_mle import analysis, report, runner
from hpc_mle.llm import prices, testserver
from hpc_mle.llm.proxy import MeteringProxy, ProxyError, config_from_model

KEY = "sk-hostile-proxy-KEY-9d8c7b6a5f4e3d2c"
KEY_ENV = "HPC_MLE_TEST_HOSTILE_KEY"
MODEL = "gpt-4o-2024-08-06"
SONNET = "claude-3-5-sonnet-20241022"
MARKUP = "[/x] [bold]b[/bold] <script>alert(1)</script> | col | `tick` *em* _u_ [link](http://x) \x1b]0;pwned\x07"
SCRIPT = {"rules": [
    {"match": "slowly", "content": "one two three four five six", "delay_s": 0.3},  # ~2 s: the burst overlaps
    {"match": "cut", "content": "one two three four five six", "cut_after": 3},
    {"match": "headers", "content": "ok", "headers": {"Set-Cookie": "session=stolen", "OpenAI-Organization": "org-x",
                                                      "OpenAI-Project": "proj-x", "x-ratelimit-remaining-requests": "9"}},
], "default": {"content": "fine"}}


@pytest.fixture
def upstream():
    with testserver.start(SCRIPT, api_key=KEY) as server:
        yield server


@pytest.fixture
def make_proxy(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    started: list[MeteringProxy] = []

    def make(server, provider="openai", model=MODEL, budget=None, price=None, extra=None) -> MeteringProxy:
        conf = {"name": "t", "provider": provider, "model": model, "api_key_env": KEY_ENV, "price": price,
                "base_url": server.url if provider == "anthropic" else server.base_url, "budget": budget or {},
                "extra": extra or {}}
        proxy = MeteringProxy(config_from_model(conf, tmp_path / "llm_calls.jsonl", backoff_s=0.01),
                              tmp_path / f"p{len(started)}.sock", tcp=True).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.close()


def url(proxy: MeteringProxy) -> str:
    return f"http://127.0.0.1:{proxy.port}"


def oai(proxy: MeteringProxy, **kw) -> openai.OpenAI:
    return openai.OpenAI(api_key=proxy.token, base_url=url(proxy) + "/v1", max_retries=0, **kw)


def ledger(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "llm_calls.jsonl").read_text().splitlines()]


def post(proxy: MeteringProxy, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], dict]:
    """A raw chat call with exactly these headers: status, reply headers (lower-cased), JSON body."""
    request = urllib.request.Request(url(proxy) + "/v1/chat/completions", body, {
        "Authorization": f"Bearer {proxy.token}", "Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, {k.lower(): v for k, v in reply.headers.items()}, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, json.loads(exc.read())


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def burst(n: int, call) -> list[int]:
    """`n` calls started together from their own threads; the HTTP status each ended with."""
    gate, statuses = threading.Barrier(n), []

    def one() -> None:
        gate.wait()
        try:
            call()
            statuses.append(200)
        except (openai.APIStatusError, anthropic.APIStatusError) as exc:
            statuses.append(exc.status_code)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return statuses


def test_only_the_configured_model_and_metered_features_reach_the_provider(upstream, make_proxy, tmp_path):
    proxy = make_proxy(upstream)
    client = oai(proxy)
    asks = [{"model": "gpt-4o"}, {"model": "o1-2024-12-17"}, {"model": MODEL.upper()}, {"extra_body": {"model": None}},
            {"extra_body": {"model": [MODEL]}}, {"extra_body": {"previous_response_id": {"x": 1}}},
            {"tools": [{"type": "web_search_preview"}]}, {"service_tier": "priority"}, {"web_search_options": {}}]
    for ask in asks:
        with pytest.raises(openai.PermissionDeniedError) as refused:
            client.chat.completions.create(messages=user("hello"), **{"model": MODEL, **ask})
        assert refused.value.status_code == 403
    assert "model 'gpt-4o' is not this attempt's model 'gpt-4o-2024-08-06'" in ledger(tmp_path)[0]["error"]
    with pytest.raises(openai.PermissionDeniedError, match="previous_response_id"):
        client.responses.create(model=MODEL, input="hello", previous_response_id="resp_of_another_attempt")
    with pytest.raises(openai.PermissionDeniedError, match="background"):
        client.responses.create(model=MODEL, input="hello", background=True)
    claude = anthropic.Anthropic(api_key=proxy.token, base_url=url(proxy), max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError, match="hosted tool 'web_search_20250305'"):
        claude.messages.create(model=MODEL, max_tokens=20, messages=user("hello"),
                               tools=[{"type": "web_search_20250305", "name": "web_search"}])
    image = {"type": "image_url", "image_url": {"url": "https://example.org/answers.png"}}
    with pytest.raises(openai.PermissionDeniedError, match="remote URL 'https://example.org/answers.png'"):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [image]}])
    with pytest.raises(anthropic.PermissionDeniedError, match="remote URL"):
        claude.messages.create(model=MODEL, max_tokens=20, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": "http://example.org/a.png"}}]}])
    listing = urllib.request.Request(url(proxy) + "/v1/chat/completions", headers={  # stored completions
        "Authorization": f"Bearer {proxy.token}"}, method="GET")
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(listing, timeout=10)
    assert upstream.requests == []  # nothing refused was forwarded
    # the continuation of a response this attempt made is allowed, and reserves what that response carried
    first = client.responses.create(model=MODEL, input="hello")
    client.responses.create(model=MODEL, input="more", previous_response_id=first.id)
    assert [r["path"] for r in upstream.requests] == ["/v1/responses"] * 2
    assert proxy.summary()["refused_calls"] == 14 and all(e["refused"] for e in ledger(tmp_path)[:14])


def test_unpriced_model_with_a_cost_budget_does_not_start(upstream, make_proxy, tmp_path):
    with pytest.raises(ProxyError) as refused:
        make_proxy(upstream, model="gpt-9-unpriced", budget={"max_cost_usd": 5})
    message = str(refused.value)
    assert "'gpt-9-unpriced' is not a price_key of" in message and "prices.csv" in message and "Fix:" in message
    unbudgeted = make_proxy(upstream, model="gpt-9-unpriced")  # no cost budget: counted in tokens, cost null
    oai(unbudgeted).chat.completions.create(model="gpt-9-unpriced", messages=user("hello"))
    assert unbudgeted.summary()["cost_usd"] is None and unbudgeted.summary()["input_tokens"] == 1
    with pytest.raises(ProxyError, match="'o3-unpriced' is not a price_key"):
        make_proxy(upstream, budget={"max_cost_usd": 5}, extra={"also_models": ["o3-unpriced"]})
    # a second model the config allows (AIDE's feedback model upstream) is served and priced by its own row
    o1 = "o1-2024-12-17"
    both = make_proxy(upstream, budget={"max_cost_usd": 5}, extra={"also_models": [o1]})
    for model in (MODEL, o1):
        oai(both).chat.completions.create(model=model, messages=user("hello"))
    with pytest.raises(openai.PermissionDeniedError, match="or one of its also_models"):
        oai(both).chat.completions.create(model="gpt-4o-mini", messages=user("hello"))
    assert [(e["model"], e["cost_usd"]) for e in ledger(tmp_path)[1:3]] == [
        (MODEL, prices.load()[MODEL].cost(1, 1)), (o1, prices.load()[o1].cost(1, 1))]


def test_a_burst_stays_within_the_token_budget(upstream, make_proxy, tmp_path):
    proxy = make_proxy(upstream, budget={"max_tokens": 320})  # each call reserves ~41 in + 20 out: 5 fit
    client = oai(proxy)

    def call() -> None:
        for _ in client.chat.completions.create(model=MODEL, messages=user("slowly"), max_tokens=20, stream=True):
            pass

    statuses = burst(20, call)
    forwarded = len(upstream.requests)  # 5 hold the whole budget; a thread late by ~2 s could find one settled
    assert sorted(set(statuses)) == [200, 429] and statuses.count(200) == forwarded and 5 <= forwarded <= 7
    summary = proxy.summary()
    assert summary["input_tokens"] + summary["output_tokens"] == forwarded * 7 <= 320
    refused = [e for e in ledger(tmp_path) if e.get("refused")]
    assert len(refused) == 20 - forwarded and "calls in flight hold" in refused[0]["error"]
    assert [r["body"]["max_tokens"] for r in upstream.requests] == [20] * forwarded  # the client's bound, kept


def test_a_burst_stays_within_the_cost_budget(upstream, make_proxy, tmp_path):
    proxy = make_proxy(upstream, provider="anthropic", model=SONNET, budget={"max_cost_usd": 0.003})
    client = anthropic.Anthropic(api_key=proxy.token, base_url=url(proxy), max_retries=0)

    def call() -> None:
        with client.messages.stream(model=SONNET, max_tokens=40, messages=user("slowly")) as stream:
            stream.until_done()

    statuses = burst(20, call)
    forwarded = len(upstream.requests)
    assert statuses.count(200) == forwarded and 2 <= forwarded <= 6 and set(statuses) <= {200, 429}
    price = prices.load()[SONNET]
    assert proxy.summary()["cost_usd"] == pytest.approx(forwarded * price.cost(1, 6)) and \
        proxy.summary()["cost_usd"] <= 0.003


def test_streams_cut_before_their_usage_are_charged_their_reservation(upstream, make_proxy, tmp_path):
    proxy = make_proxy(upstream, budget={"max_tokens": 10_000})
    with pytest.raises(openai.APIError):
        for _ in oai(proxy).chat.completions.create(model=MODEL, messages=user("cut"), stream=True):
            pass
    claude = make_proxy(upstream, provider="anthropic", budget={"max_tokens": 10_000})
    client = anthropic.Anthropic(api_key=claude.token, base_url=url(claude), max_retries=0)
    with pytest.raises(Exception, match="incomplete chunked read"), client.messages.stream(model=MODEL, max_tokens=300,
                                                                   messages=user("cut")) as stream:
        stream.until_done()
    chat, message = ledger(tmp_path)
    for entry in (chat, message):
        assert entry["usage"] == "estimated" and entry["error"].startswith("upstream stream failed")
        assert entry["input_tokens"] > 10 and entry["cost_usd"] > 0
    # no bound from the chat client: the proxy set its default and charged it; the Anthropic client's 300 kept
    assert upstream.requests[0]["body"]["max_completion_tokens"] == chat["output_tokens"] == 4096
    assert message["output_tokens"] == 300 and proxy.summary()["estimated_calls"] == 1
    assert proxy.summary()["input_tokens"] + proxy.summary()["output_tokens"] > 4096


def test_forbidden_headers_go_neither_way(upstream, make_proxy):
    proxy = make_proxy(upstream)
    sent = {"OpenAI-Organization": "org-evil", "OpenAI-Project": "proj-evil", "Cookie": "a=b",
            "X-Forwarded-For": "10.0.0.1", "Forwarded": "for=10.0.0.1", "anthropic-beta": "context-1m-2025-08-07",
            "x-api-key": proxy.token, "Proxy-Authorization": "Basic eA==", "X-Custom": "1"}
    status, back, body = post(proxy, json.dumps({"model": MODEL, "messages": user("headers")}).encode(), sent)
    assert status == 200 and body["choices"][0]["message"]["content"] == "ok"
    got = {k.lower(): v for k, v in upstream.requests[0]["headers"].items()}
    assert not {k.lower() for k in sent} & set(got)
    assert got["authorization"] == f"Bearer {KEY}" and got["content-type"] == "application/json"
    assert not set(back) & {"set-cookie", "openai-organization", "openai-project"}
    assert back["x-ratelimit-remaining-requests"] == "9"


def test_huge_and_malformed_bodies_are_refused_before_forwarding(upstream, make_proxy, tmp_path):
    proxy = make_proxy(upstream)
    huge = b'{"model": "' + MODEL.encode() + b'", "messages": [{"role": "user", "content": "' + b"a" * (17 << 20)
    replies = [post(proxy, body, {}) for body in (huge + b'"}]}', b"[" * 200_000, b"{not json", json.dumps(
        {"model": MODEL, "messages": user("hello"), "max_tokens": "lots"}).encode())]
    assert [status for status, _, _ in replies] == [413, 400, 400, 400]
    assert "capped at 16777216 bytes" in replies[0][2]["error"]["message"]
    assert upstream.requests == []
    assert oai(proxy).chat.completions.create(model=MODEL, messages=user("hello")).choices[0].message.content


TOKEN_FISHER = '''
import json, os, urllib.request
token, base = os.environ["OPENAI_API_KEY"], os.environ["OPENAI_BASE_URL"]
def call(body, headers=None):
    req = urllib.request.Request(base + "/chat/completions", json.dumps(body).encode(),
                                 {"Authorization": "Bearer " + token, "Content-Type": "application/json",
                                  **(headers or {})})
    try:
        return urllib.request.urlopen(req, timeout=10).status
    except urllib.error.HTTPError as exc:
        return exc.code
seen = [call({"model": token, "messages": [{"role": "user", "content": "hi"}]}),
        call({"model": os.environ["HPC_MLE_MODEL"], "messages": [{"role": "user", "content": token}]},
             {"OpenAI-Organization": token, "X-Title": token}),
        call({"model": os.environ["HPC_MLE_MODEL"], "messages": "x", "max_tokens": token})]
with open(os.path.join(os.environ["LOGS_DIR"], "fisher.json"), "w") as fh:
    json.dump({"statuses": seen, "reversed": token[::-1]}, fh)
'''


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_the_attempt_token_is_written_nowhere(tmp_path, mini_data, monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, KEY)
    agent = tmp_path / "fisher.py"
    agent.write_text(TOKEN_FISHER)
    scaffold = tmp_path / "fisher.yaml"
    scaffold.write_text(yaml.safe_dump({"name": "fisher", "agent_files": [str(agent)],
                                        "command": ["python3", "/home/agent/fisher.py"]}))
    caplog.set_level(logging.DEBUG)
    with testserver.start(SCRIPT, api_key=KEY) as server:
        model = {"name": "gpt4o", "provider": "openai", "model": MODEL, "api_key_env": KEY_ENV,
                 "base_url": server.base_url, "price": MODEL, "budget": {"max_tokens": 5000}}
        out = tmp_path / "attempt"
        cfg = runner.AttemptConfig(competition_id="mini-churn", scaffold=str(scaffold), out=out, data_dir=mini_data,
                                   sandbox="bwrap", time_limit_s=60, grace_s=2, model_config=model)
        runner.run_attempt(cfg)
    fished = json.loads((out / "logs" / "fisher.json").read_text())
    token = fished["reversed"][::-1]
    assert token.startswith("hpcmle-") and fished["statuses"] == [403, 200, 400]
    assert [r["body"]["messages"][0]["content"] for r in server.requests] == [token]  # the agent's own choice
    assert "org-x" not in json.dumps(server.requests) and "X-Title" not in server.requests[0]["headers"]
    assert "[redacted]" in ledger(out)[0]["error"]
    holding = [p for p in out.rglob("*") if p.is_file() and not p.is_symlink() and p.name != "fisher.json"
               and token.encode() in p.read_bytes()]
    assert holding == [], f"the token is written in {holding}"
    assert token not in caplog.text and KEY not in caplog.text


HOSTILE_SUBMITTER = f'''
import csv, os
rows = list(csv.reader(open(os.path.join(os.environ["DATA_DIR"], "sample_submission.csv"))))
rows[1][1] = {MARKUP!r}  # a prediction that is not a number: the grader's reason quotes it
with open(os.path.join(os.environ["SUBMISSION_DIR"], "submission.csv"), "w", newline="") as fh:
    csv.writer(fh).writerows(rows)
'''


def test_markup_in_submitted_text_is_shown_literally(hostile):
    result = hostile.run(HOSTILE_SUBMITTER, time_limit="60s")
    assert result.status.get("state") == "done", result.proc.stderr
    jsonl = hostile.base / "submissions.jsonl"
    jsonl.write_text(json.dumps({"competition_id": "mini-churn",
                                 "submission_path": str(result.out / "submission" / "submission.csv")}) + "\n")
    graded = subprocess.run([sys.executable, "-m", "hpc_mle.cli", "grade", "--submissions", str(jsonl),
                             "--output-dir", str(hostile.base / "graded"), "--data-dir", str(hostile.data)],
                            capture_output=True, text=True, timeout=120)
    assert graded.returncode == 0, graded.stderr
    assert "[/x]" in graded.stdout and "[bold]b[/bold]" in graded.stdout and "<script>" in graded.stdout, graded.stdout
    (written,) = (hostile.base / "graded").glob("*grading_report.json")
    reason = json.loads(written.read_text())["competition_reports"][0]["reason"]
    assert "[/x]" in reason  # the grader quotes the agent's id: the text every renderer must keep inert

    table = pd.DataFrame([{"competition": "mini-churn", "why not valid": reason + "\nsecond line", MARKUP: 1}])
    built = report.Report("t", [report.Section("Attempts", [], [("per attempt", table)])], {}, {})
    markdown = report.render_markdown(built)
    row = markdown.splitlines()[-1]
    assert row.count(" | ") == 2 and "<script>" not in markdown and "\\<script\\>" in row
    assert "\\[/x\\]" in row and "\\| col \\|" in row and "\\`tick\\`" in row and "second line" in row
    page = report.render_html(built)
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "\x1b" not in markdown + graded.stdout and "\\\\x1b\\]0;pwned\\\\x07" in row  # shown, not acted on
    comparison = analysis.format_comparison(Path("old"), Path("night <b> | col |"), pd.DataFrame(
        [{"competition_id": "c", "scaffold": MARKUP, "model": "m", "runtime": "r", "hardware": "h", "seed": 0,
          "medal_old": "none", "medal_new": "gold", "change": "gained medal", "score_old": 0.1, "score_new": 0.9,
          "score_change": 0.8}]))
    assert "<script>" not in comparison and "<b>" not in comparison and "\\| col \\|" in comparison.splitlines()[0]
    assert "| c | \\[/x\\] \\[bold\\]" in comparison
