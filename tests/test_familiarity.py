"""The familiarity study against the scripted server: both prompt log-probability forms, the refusal, the files,
and the metering proxy every call goes through (its ledger, and how it meters `/v1/completions`).

The sweep is written by hand as the jobs write it (configs, manifest, grading records); the texts are the
original descriptions in a data dir, as `competitions import-upstream` leaves them. The scripted server gives
each word a fixed log-probability, so every competition's mean is worked out below by hand:

    mini-churn         "alpha beta gamma delta"   beta -2, gamma -4, delta -6     -> -4.0 over 3 tokens
    mini-digits        "alpha beta beta beta"     -2 three times                  -> -2.0 over 3 tokens
    mini-ames-housing  "gamma alpha alpha"        alpha -1 twice                  -> -1.0 over 2 tokens
    mini-leaf-species  "delta" x 40, cut at 10 tokens                             -> -6.0 over 9 tokens, cut

(the first token has no context and is never scored). Medals of model `llama-test`: churn 1 of 2, digits
2 of 2, ames 0 of 2, leaf 0 of 1; a medal of another model on leaf is not counted.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from openai import BadRequestError, OpenAI
from scipy import stats

from hpc_mle import cli, familiarity, grading
from hpc_mle.llm import prices, serve, testserver

KEY = "sk-familiarity-SECRET-0123456789abcdef"
PRICE = "llama-3.1-405b-instruct"  # a prices.csv row the test model is priced by
WORDS = {"alpha": -1.0, "beta": -2.0, "gamma": -4.0, "delta": -6.0}
TEXTS = {"mini-churn": "alpha beta gamma delta", "mini-digits": "alpha beta beta beta",
         "mini-ames-housing": "gamma alpha alpha", "mini-leaf-species": "delta " * 40}
EXPECTED = {"mini-churn": (-4.0, 3, False, 50.0), "mini-digits": (-2.0, 3, False, 100.0),
            "mini-ames-housing": (-1.0, 2, False, 0.0), "mini-leaf-species": (-6.0, 9, True, 0.0)}
# (competition, seed, model, medal)
ATTEMPTS = [("mini-churn", 0, "llama-test", True), ("mini-churn", 1, "llama-test", False),
            ("mini-digits", 0, "llama-test", True), ("mini-digits", 1, "llama-test", True),
            ("mini-ames-housing", 0, "llama-test", False), ("mini-ames-housing", 1, "llama-test", False),
            ("mini-leaf-species", 0, "llama-test", False), ("mini-leaf-species", 0, "none", True)]


def script(accepts: str) -> dict:
    return {"default": {"content": "fine", "logprob": -3.0, "word_logprobs": WORDS, "prompt_logprobs": accepts}}


def write_sweep(sweep: Path, base_url: str | None, **model_fields) -> None:
    """configs (the sweep's model pointing at the test server), manifest and one grading record per attempt."""
    (sweep / "configs").mkdir(parents=True)
    (sweep / "grading").mkdir()
    model = {"name": "llama-test", "provider": "openai-compatible", "model": "served-llama", "base_url": base_url,
             "api_key_env": "FAMILIARITY_TEST_KEY", **model_fields}
    (sweep / "configs" / "c0.json").write_text(json.dumps({"benchmark": {"split": "mini"}, "model": model}))
    (sweep / "configs" / "c1.json").write_text(json.dumps({"benchmark": {"split": "mini"},
                                                           "model": {"name": "none", "provider": "none"}}))
    rows = []
    for n, (comp, seed, name, medal) in enumerate(ATTEMPTS):
        aid = f"a{n}"
        rows.append({"id": aid, "competition_id": comp, "scaffold": "dummy", "model": name, "seed": seed,
                     "runtime": "10m", "hardware": "cpu", "benchmark": "mini", "time_limit_s": 600.0,
                     "config_id": "c0" if name != "none" else "c1"})
        rep = grading.CompetitionReport(
            competition_id=comp, score=0.5, gold_threshold=0.9, silver_threshold=0.8, bronze_threshold=0.7,
            median_threshold=0.4, any_medal=medal, gold_medal=False, silver_medal=False, bronze_medal=medal,
            above_median=True, submission_exists=True, valid_submission=True, is_lower_better=False,
            created_at="t", submission_path="s.csv", leaderboard_source="reference-panel")
        (sweep / "grading" / f"{aid}.json").write_text(json.dumps({"attempt_id": aid, "state": "done",
                                                                   "report": rep.to_dict()}))
    pd.DataFrame(rows).to_csv(sweep / "manifest.csv", index=False)


def write_texts(data: Path) -> None:
    for comp, text in TEXTS.items():
        (data / comp / "upstream").mkdir(parents=True)
        (data / comp / "upstream" / "description.md").write_text(text)


@pytest.fixture
def study(tmp_path, monkeypatch):
    """(start(accepts) -> (server, sweep folder), data dir); the key only in the environment."""
    monkeypatch.setenv("FAMILIARITY_TEST_KEY", KEY)
    write_texts(tmp_path / "data")
    servers = []

    def start(accepts: str) -> tuple[testserver.TestServer, Path]:
        server = testserver.start(script(accepts), api_key=KEY)
        servers.append(server)
        sweep = tmp_path / f"sweep-{accepts}"
        write_sweep(sweep, server.base_url, price=PRICE)
        return server, sweep

    yield start, tmp_path / "data"
    for server in servers:
        server.stop()


def invoke(sweep: Path, data: Path, *extra: str):
    return CliRunner().invoke(cli.main, ["familiarity", str(sweep), "--text", "original", "--max-tokens", "10",
                                         "--data-dir", str(data), *extra])


def ledger(folder: Path) -> list[dict]:
    path = folder / familiarity.CALLS
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def no_secret_in(folder: Path, *secrets: str) -> None:
    """Neither the key nor any proxy token (they start `hpcmle-`) is in a file of `folder`."""
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"hpcmle-" not in data, path
            for secret in secrets:
                assert secret.encode() not in data, path


@pytest.mark.parametrize(("accepts", "form"), [("vllm", "vllm-prompt-logprobs"), ("echo", "openai-echo")])
def test_each_form_gives_the_scripted_means_and_the_files(study, accepts, form):
    start, data = study
    server, sweep = start(accepts)
    result = invoke(sweep, data)
    assert result.exit_code == 0, result.output
    out = sweep / "analysis" / "familiarity"
    table = pd.read_csv(out / familiarity.CSV).set_index("competition")
    for comp, (mean, tokens, cut, medal) in EXPECTED.items():
        row = table.loc[comp]
        assert (row["mean_logprob"], row["tokens"], bool(row["truncated"]), row["any_medal_pct"]) == \
            pytest.approx((mean, tokens, cut, medal)), comp
    assert set(table["endpoint_form"]) == {form} and set(table["model"]) == {"served-llama"}
    assert set(table["attempts_of"]) == {"model llama-test"} and set(table["text"]) == {"original"}
    # the request form the server saw, and the probe before the competitions
    bodies = [r["body"] for r in server.requests if r["path"] == "/v1/completions"]
    assert bodies[-1]["prompt"] == TEXTS["mini-leaf-species"][:10 * familiarity.CHARS_PER_TOKEN]
    assert ("prompt_logprobs" in bodies[-1]) == (form == "vllm-prompt-logprobs")
    assert bodies[-1].get("echo") is (True if form == "openai-echo" else None)
    assert len(bodies) == 4 + (1 if form == "vllm-prompt-logprobs" else 2)

    x, y = [EXPECTED[c][0] for c in table.index], [EXPECTED[c][3] for c in table.index]
    r, rho = stats.pearsonr(x, y), stats.spearmanr(x, y)
    corr = familiarity.correlation(table["mean_logprob"], table["any_medal_pct"])
    assert corr["n"] == 4
    assert corr["pearson"] == pytest.approx((r.statistic, r.pvalue))
    assert corr["spearman"] == pytest.approx((rho.statistic, rho.pvalue))
    assert corr["pearson"][0] == pytest.approx(np.corrcoef(x, y)[0, 1])
    md = (out / familiarity.MD).read_text()
    assert f"Pearson r = {r.statistic:.2f}" in md and f"Spearman ρ = {rho.statistic:.2f}" in md and "n = 4" in md
    assert "| mini-leaf-species | original | 9 | -6.000 | yes | 1 | 0 | 0.0 |" in md
    assert "weak evidence" in md and "first 10 tokens" in md and "1 of 4 texts were cut" in md
    section = familiarity.report_section(sweep)
    assert section.startswith("## Familiarity") and section in md

    fig = familiarity.figure(table.reset_index(), corr)
    ax = fig.axes[0]
    assert sorted(map(tuple, ax.collections[0].get_offsets())) == sorted(zip(x, y, strict=True))
    assert ax.get_title() == familiarity.correlation_text(corr)
    assert (out / familiarity.PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # every call metered: the probe(s) and one per competition, each booked at the server's own usage
    booked = ledger(out)
    assert [c["endpoint"] for c in booked] == ["/v1/completions"] * len(bodies)
    statuses = [c["status"] for c in booked]
    assert statuses == ([200] * 5 if form == "vllm-prompt-logprobs" else [400] + [200] * 5)
    answered = [(b, status == 200) for b, status in zip(bodies, statuses, strict=True)]  # a refusal has no usage
    assert [c["input_tokens"] for c in booked] == [len(b["prompt"].split()) if ok else None for b, ok in answered]
    assert [c["output_tokens"] for c in booked] == [int("prompt_logprobs" in b) if ok else None for b, ok in answered]
    assert {(c["usage"], c["model"]) for c in booked} == {("reported", "served-llama")}
    tokens_in, tokens_out = (sum(c[k] or 0 for c in booked) for k in ("input_tokens", "output_tokens"))
    dollars = sum(prices.lookup(PRICE).cost(c["input_tokens"] or 0, c["output_tokens"] or 0) for c in booked)
    assert sum(c["cost_usd"] or 0 for c in booked) == pytest.approx(dollars) and dollars > 0
    assert f"{len(bodies)} calls ({len(bodies) - 5} answered an error), {tokens_in} prompt tokens, " \
           f"{tokens_out} generated tokens, ${dollars:.4f}." in " ".join(md.split())
    assert str(out / familiarity.CALLS) in " ".join(result.output.split())
    no_secret_in(out, KEY)
    assert KEY not in result.output


def test_an_endpoint_without_prompt_logprobs_is_a_named_refusal(study, tmp_path):
    start, data = study
    _, sweep = start("none")
    result = invoke(sweep, data)
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "returns no per-token log-probabilities of a prompt" in text
    assert "vllm-prompt-logprobs: 400" in text and "openai-echo: 400" in text and "served with vLLM" in text
    assert KEY not in result.output
    out = sweep / "analysis" / "familiarity"  # the two refused probes are booked, and nothing else is written
    assert [p.name for p in out.iterdir()] == [familiarity.CALLS]
    assert [(c["status"], c["input_tokens"], c["output_tokens"]) for c in ledger(out)] == [(400, None, None)] * 2
    no_secret_in(out, KEY)

    assert familiarity.report_section(sweep) is None
    with pytest.raises(familiarity.NoPromptLogprobs, match="Anthropic"):
        familiarity.forwarded_config({"name": "claude", "provider": "anthropic", "model": "claude-x"}, sweep)


def model(server, **fields) -> dict:
    return {"name": "llama-test", "provider": "openai-compatible", "model": "served-llama",
            "base_url": server.base_url, "api_key_env": "FAMILIARITY_TEST_KEY", **fields}


def test_a_busy_server_is_asked_again_by_the_proxy(monkeypatch, tmp_path):
    """Two scripted 503s, then the answer: the study's proxy retries (without waiting here), one call is booked."""
    monkeypatch.setenv("FAMILIARITY_TEST_KEY", KEY)
    busy = {"rules": [{"match": ".", "status": 503, "times": 2}], "default": script("both")["default"]}
    calls = tmp_path / "out" / familiarity.CALLS
    with testserver.start(busy, api_key=KEY) as server, \
            familiarity.metered(model(server), tmp_path, calls, backoff_s=0.0) as (ep, _):
        values, why = familiarity.prompt_logprobs(ep, "vllm-prompt-logprobs", TEXTS["mini-churn"])
        assert (values, why) == ([None, -2.0, -4.0, -6.0], "") and len(server.requests) == 3
        assert KEY not in repr(ep) and ep.key not in repr(ep) and ep.where == server.base_url + "/completions"
    assert [(c["status"], c["retries"], c["input_tokens"]) for c in ledger(tmp_path / "out")] == [(200, 2, 4)]


def test_missing_key_text_and_model_are_clear_errors(study, monkeypatch):
    start, data = study
    _, sweep = start("both")
    monkeypatch.delenv("FAMILIARITY_TEST_KEY")
    result = invoke(sweep, data)
    assert result.exit_code == 2 and "$FAMILIARITY_TEST_KEY is not set" in result.output
    monkeypatch.setenv("FAMILIARITY_TEST_KEY", KEY)
    result = invoke(sweep, data, "--text", "obfuscated", "-c", "mini-churn", "--data-dir", str(data / "none"))
    assert result.exit_code == 0, result.output  # ours beside the spec: the mini competitions ship one
    assert pd.read_csv(sweep / "analysis" / "familiarity" / familiarity.CSV)["text"].tolist() == ["obfuscated"]
    result = invoke(sweep, data, "--model", "no-such-model")
    assert result.exit_code == 2 and "no conf/model/no-such-model.yaml" in result.output


def test_a_served_model_is_reached_through_the_sweeps_server_files(tmp_path):
    """model=<vllm config>: base_url from the sweep's address.json, the key from its 0600 key file."""
    sweep = tmp_path / "served"
    write_sweep(sweep, None, provider="vllm", serve="vllm", api_key_env=None)
    write_texts(tmp_path / "data")
    key = serve.read_key(serve.ensure_key(sweep, "llama-test"))
    address = serve.serve_dir(sweep, "llama-test") / serve.ADDRESS
    with testserver.start(script("both"), api_key=key) as server:
        address.write_text(json.dumps({"base_url": server.base_url, "host": "127.0.0.1"}))
        result = invoke(sweep, tmp_path / "data", "-c", "mini-churn")
        assert result.exit_code == 0, result.output
        assert server.requests[-1]["headers"]["Authorization"] == f"Bearer {key}"
    table = pd.read_csv(sweep / "analysis" / "familiarity" / familiarity.CSV)
    assert table[["competition", "mean_logprob", "any_medal_pct"]].values.tolist() == [["mini-churn", -4.0, 50.0]]
    out = sweep / "analysis" / "familiarity"
    assert [(c["status"], c["input_tokens"]) for c in ledger(out)] == [(200, 9), (200, 4)]  # probe, mini-churn
    md = " ".join((out / familiarity.MD).read_text().split())
    assert "cost unknown (no price row for served-llama in prices.csv)" in md
    no_secret_in(out, key)
    address.write_text(json.dumps({"base_url": "http://127.0.0.1:9/v1", "ended_at": "2026-11-30T10:00:00"}))
    result = invoke(sweep, tmp_path / "data")
    assert result.exit_code == 2 and "model server ended at 2026-11-30T10:00:00" in " ".join(result.output.split())


def test_scripted_completions_speak_both_real_shapes():
    """The openai client reads the legacy echo shape; vLLM's prompt_logprobs arrive as an extra field, the
    prompt's own token first in each position; a server without the form answers 400 naming it."""
    with testserver.start(script("both"), api_key=KEY) as server:
        client = OpenAI(base_url=server.base_url, api_key=KEY)
        legacy = client.completions.create(model="m", prompt="alpha beta gamma", echo=True, logprobs=0, max_tokens=0)
        assert legacy.choices[0].logprobs.token_logprobs == [None, -2.0, -4.0]
        assert legacy.choices[0].logprobs.tokens == ["alpha", " beta", " gamma"]
        assert legacy.choices[0].logprobs.text_offset == [0, 5, 10] and legacy.usage.prompt_tokens == 3
        vllm = client.completions.create(model="m", prompt="alpha beta gamma", max_tokens=1,
                                         extra_body={"prompt_logprobs": 2})
        positions = vllm.choices[0].model_extra["prompt_logprobs"]
        assert positions[0] is None and len(positions) == 3
        first = [next(iter(p.values())) for p in positions[1:]]
        assert first == [{"logprob": -2.0, "rank": 3, "decoded_token": " beta"},
                         {"logprob": -4.0, "rank": 5, "decoded_token": " gamma"}]
        assert [e["rank"] for e in positions[2].values()] == [5, 1, 2]
        hashed = testserver.token_logprob(" omega", {})
        assert hashed == testserver.token_logprob("omega", {}) != testserver.token_logprob("zeta", {})
    with testserver.start(script("echo"), api_key=KEY) as server:
        client = OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
        with pytest.raises(BadRequestError, match="prompt_logprobs is not supported"):
            client.completions.create(model="m", prompt="x y", max_tokens=1, extra_body={"prompt_logprobs": 0})


def test_the_proxy_meters_completions_and_passes_them_through(monkeypatch, tmp_path):
    """Legacy echo with `max_tokens: 0`, vLLM's `prompt_logprobs`, a reply without `completion_tokens`, a batch and
    a stream, through the study's proxy with a token budget: replies as the server gives them (every
    log-probability), extra fields forwarded untouched, each call booked at the server's usage."""
    monkeypatch.setenv("FAMILIARITY_TEST_KEY", KEY)
    scripted = {"rules": [{"match": "silent", "content": "fine", "omit_usage": ["completion_tokens"]}],
                "default": script("both")["default"]}
    calls = tmp_path / "out" / familiarity.CALLS
    with testserver.start(scripted, api_key=KEY) as server, \
            familiarity.metered(model(server, budget={"max_tokens": 10_000}), tmp_path, calls) as (ep, proxy):
        direct = OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
        metered = OpenAI(base_url=ep.base_url, api_key=ep.key, max_retries=0)
        echo = {"model": "served-llama", "prompt": "alpha beta gamma", "echo": True, "logprobs": 1, "max_tokens": 0}
        vllm = {"model": "served-llama", "prompt": "alpha beta gamma", "max_tokens": 1,
                "extra_body": {"prompt_logprobs": 2, "top_k": -1}}
        for asked in (echo, vllm):
            got, want = metered.completions.create(**asked), direct.completions.create(**asked)
            assert got.model_dump(exclude={"id", "created"}) == want.model_dump(exclude={"id", "created"})
        assert server.requests[-2]["body"] == {**{k: v for k, v in vllm.items() if k != "extra_body"},
                                               "prompt_logprobs": 2, "top_k": -1}
        assert got.choices[0].model_extra["prompt_logprobs"][1] == want.choices[0].model_extra["prompt_logprobs"][1]
        silent = metered.completions.create(model="served-llama", prompt="silent words", max_tokens=0, echo=True,
                                            logprobs=0)
        assert silent.usage.completion_tokens is None and silent.usage.prompt_tokens == 2
        batch = metered.completions.create(model="served-llama", prompt=["one two", "three"], max_tokens=3, n=2)
        assert len(batch.choices) == 4 and batch.usage.completion_tokens == 4
        pieces = list(metered.completions.create(model="served-llama", prompt="a stream", stream=True))
        assert "max_tokens" not in server.requests[-1]["body"]  # the servers' own default of 16 is reserved
        assert "".join(c.choices[0].text for c in pieces) == " fine" and all(c.choices for c in pieces)
        assert server.requests[-1]["body"]["stream_options"] == {"include_usage": True}
        for bad in (-1, True):
            with pytest.raises(BadRequestError, match="non-negative integer"):
                metered.completions.create(model="served-llama", prompt="x", max_tokens=bad)
        summary = proxy.summary()
        ids = json.dumps({"model": "served-llama", "prompt": [0] * 10_500, "max_tokens": 1}, separators=(",", ":"))
        asked = urllib.request.Request(ep.url, ids.encode(), {"authorization": f"Bearer {ep.key}",
                                                              "content-type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:  # 2 bytes a token id: counted by id, over budget
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(asked, timeout=30)
        assert refused.value.code == 403 and b"budget cannot cover" in refused.value.read()
        assert len(server.requests) == 7
    booked = ledger(tmp_path / "out")[:-1]  # echo, vllm, silent, batch, stream, then the two refused before forwarding
    assert [(c["status"], c["input_tokens"], c["output_tokens"], c.get("usage")) for c in booked] == [
        (200, 3, 0, "reported"), (200, 3, 1, "reported"), (200, 2, 0, "reported"), (200, 3, 4, "reported"),
        (200, 2, 1, "reported"), (400, None, None, None), (400, None, None, None)]
    assert [c["stream"] for c in booked] == [False] * 4 + [True] + [False] * 2
    assert [c.get("refused") for c in booked[-2:]] == [True, True] and "non-negative" in booked[-1]["error"]
    assert (summary["calls"], summary["input_tokens"], summary["output_tokens"]) == (7, 13, 6)
    no_secret_in(tmp_path / "out", KEY)
