"""The familiarity study: how well the model knows each competition's text, against how agents did on it.

The MLE-bench paper asks whether agents do better on competitions their model may have memorised: per
competition it measures the model's familiarity with the competition's text and plots the agents' medal
rate against it; no correlation is evidence against memorisation. Here familiarity is the mean
log-probability per token that the model gives the text, read from an OpenAI-compatible
`/v1/completions` endpoint in one of two forms (`FORMS`):

- vLLM's `prompt_logprobs` (an extra body field) with `max_tokens: 1`;
- the legacy OpenAI `echo: true` with `logprobs: 0` and `max_tokens: 0`.

A short probe finds which form the endpoint accepts before any competition is measured; an endpoint that
accepts neither (hosted chat models such as gpt-4o) is a `NoPromptLogprobs` error quoting both answers, and
nothing is written. Only the first `max_tokens` tokens of a text are scored (the text is cut at
`CHARS_PER_TOKEN` characters a token before it is sent, so it stays within the model's context), and the
output says which texts were cut. The first token has no context and is never scored.

The key (the model config's `api_key_env`, or a served model's per-sweep key file) goes only into the
Authorization header: it is written nowhere, and every error text is redacted of it. These calls do not
pass the attempts' metering proxy, which serves chat, responses and messages only: one call per
competition plus the probe, with the tokens counted in familiarity.csv.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpc_mle import analysis, competitions, paths, upstream
from hpc_mle.files import atomic_write_bytes, atomic_write_text, read_json
from hpc_mle.textsafe import md_cell, md_row

STUDY_DIR = Path("analysis") / "familiarity"  # under the sweep folder: where report_section looks
CSV, PNG, MD = "familiarity.csv", "familiarity.png", "familiarity.md"
TEXTS = ("description", "original", "ours", "obfuscated")
DEFAULT_MAX_TOKENS = 2048
CHARS_PER_TOKEN = 8  # prose averages about 4 characters a token: the cut text still holds max_tokens tokens
MAX_TEXT_BYTES = 4 * 1024**2
MAX_REPLY_BYTES = 256 * 1024**2
TIMEOUT_S = 300.0
FORMS = ("vllm-prompt-logprobs", "openai-echo")
REFUSED = (400, 404, 405, 422, 501)  # how servers say a field or an endpoint is not supported
RETRY_STATUSES = (429, 500, 502, 503, 504)
RETRIES = 3
RETRY_WAIT_S = 2.0  # the first wait; doubled for each further try
PROBE = "The quick brown fox jumps over the lazy dog."
MIN_POINTS = 3  # fewer competitions with a medal rate: no correlation is given
COLUMNS = ["competition", "text", "tokens", "mean_logprob", "truncated", "max_tokens", "model", "endpoint_form",
           "attempts_of", "graded", "medals", "any_medal_pct"]


class FamiliarityError(RuntimeError):
    """The study cannot run as asked (no model, no key, no text, a failed call); the message says the fix."""


class NoPromptLogprobs(FamiliarityError):
    """The endpoint returns no per-token log-probabilities of a prompt in any form this study knows."""


@dataclass(frozen=True)
class Endpoint:
    """Where the model answers: its config name, the exact name it serves, the API root and the key."""

    name: str
    model: str
    base_url: str
    key: str | None = field(default=None, repr=False)
    direct: bool = False  # a served model's own address: never through a site HTTP proxy

    def redact(self, text: str) -> str:
        return text.replace(self.key, "***") if self.key else text

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/completions"


# ---------------------------------------------------------------- the model


def sweep_models(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    """The language models a sweep ran ({name: composed model config}, from its configs/*.json)."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted((Path(sweep_dir) / "configs").glob("*.json")):
        model = (read_json(path) or {}).get("model")
        if isinstance(model, dict) and model.get("provider") not in (None, "none"):
            out.setdefault(str(model.get("name")), model)
    return out


def model_config(sweep_dir: Path, name_or_path: str | None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The model to ask: the sweep's own config of that name (with the sweep's overrides), a conf/model entry
    or a YAML file; without a name, the one language model the sweep ran."""
    from hpc_mle import audit

    ran = sweep_models(sweep_dir)
    if name_or_path is None and len(ran) != 1:
        which = f"it ran {', '.join(sorted(ran))}" if ran else "it ran no language model"
        raise FamiliarityError(f"{sweep_dir}: which model? {which}. Fix: --model NAME (a conf/model name such as "
                               "llama-3.1-8b-vllm, or a model YAML)")
    if name_or_path is None or name_or_path in ran:
        config = dict(ran[name_or_path or next(iter(ran))])
    else:
        try:
            config = audit.load_model_config(name_or_path)
        except FileNotFoundError as exc:
            raise FamiliarityError(f"model {name_or_path!r}: no such file and no conf/model/{name_or_path}.yaml. "
                                   "Fix: --model llama-3.1-8b-vllm (a conf/model name) or --model path/to/model.yaml"
                                   ) from exc
    config.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return config


def _served_address(sweep_dir: Path, config: dict[str, Any]) -> str:
    """The base URL of the sweep's running server of this model (its address.json)."""
    from hpc_mle.llm import serve

    path = serve.serve_dir(sweep_dir, str(config["name"])) / serve.ADDRESS
    address = read_json(path) or {}
    if not address.get("base_url") or address.get("ended_at"):
        state = f"ended at {address['ended_at']}" if address.get("ended_at") else "has no address"
        raise FamiliarityError(f"model {config['name']}: the sweep's model server {state} ({path}). Fix: relaunch "
                               "the sweep's server, or give a running vLLM server with --base-url URL")
    return str(address["base_url"])


def _key(config: dict[str, Any], served_key: Path | None) -> str | None:
    """The API key: a served model's key file, else the variable `api_key_env` names; None for no key."""
    from hpc_mle.llm import serve

    key_file = served_key or (Path(config["api_key_file"]) if config.get("api_key_file") else None)
    if key_file is not None:
        try:
            return serve.read_key(key_file)
        except serve.ServeError as exc:
            raise FamiliarityError(str(exc)) from exc
    var = config.get("api_key_env")
    if not var:
        return None
    if not os.environ.get(str(var)):
        raise FamiliarityError(f"model {config.get('name')}: ${var} is not set. Fix: export {var}=... "
                               "(or --api-key-env VAR for another variable)")
    return os.environ[str(var)]


def endpoint(config: dict[str, Any], sweep_dir: Path) -> Endpoint:
    """Where and how to reach the model of `config` (a served model through the sweep's running server)."""
    from hpc_mle.llm import serve
    from hpc_mle.llm.proxy import DEFAULT_BASE_URLS

    name = str(config.get("name") or config.get("model"))
    if config.get("provider") == "anthropic":
        raise NoPromptLogprobs(f"model {name}: Anthropic's Messages API returns no log-probabilities. The familiarity "
                               "study needs a model served with vLLM or a completions endpoint with echo+logprobs")
    if not config.get("model"):
        raise FamiliarityError(f"model {name}: no `model` (the name the endpoint serves). Fix: --model-id NAME")
    served = bool(config.get("serve")) and not config.get("base_url")
    base_url = _served_address(sweep_dir, config) if served else (
        config.get("base_url") or DEFAULT_BASE_URLS.get(str(config.get("provider"))))
    if not base_url:
        raise FamiliarityError(f"model {name}: no base_url. Fix: --base-url https://host/v1")
    key = _key(config, serve.key_path(sweep_dir, name) if served else None)
    return Endpoint(name, str(config["model"]), str(base_url), key, direct=served)


# ---------------------------------------------------------------- one call


def _request_body(form: str, model: str, text: str) -> dict[str, Any]:
    if form == "vllm-prompt-logprobs":
        return {"model": model, "prompt": text, "max_tokens": 1, "temperature": 0, "prompt_logprobs": 0}
    return {"model": model, "prompt": text, "max_tokens": 0, "temperature": 0, "echo": True, "logprobs": 0}


def _post(ep: Endpoint, body: dict[str, Any]) -> tuple[int, Any]:
    """As `_post_once`, tried again after a busy or failing server's 429/5xx (RETRIES times, waits doubling)."""
    status, reply = _post_once(ep, body)
    for attempt in range(RETRIES):
        if status not in RETRY_STATUSES:
            break
        time.sleep(RETRY_WAIT_S * 2**attempt)
        status, reply = _post_once(ep, body)
    return status, reply


def _post_once(ep: Endpoint, body: dict[str, Any]) -> tuple[int, Any]:
    """(HTTP status, the reply's JSON or, for an error, its text); FamiliarityError when nothing answers."""
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {ep.key}"} if ep.key else {})}
    request = urllib.request.Request(ep.url, json.dumps(body).encode(), headers, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({})) if ep.direct else \
        urllib.request.build_opener()
    try:
        with opener.open(request, timeout=TIMEOUT_S) as reply:
            return reply.status, json.loads(reply.read(MAX_REPLY_BYTES))
    except urllib.error.HTTPError as exc:
        return exc.code, ep.redact(exc.read(4096).decode("utf-8", "replace"))[:400]
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise FamiliarityError(f"{ep.url} ({ep.model}): {ep.redact(str(getattr(exc, 'reason', exc)))}") from exc


def _choice(reply: Any) -> dict[str, Any]:
    choices = reply.get("choices") if isinstance(reply, dict) else None
    return choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def vllm_logprobs(reply: Any) -> list[float | None] | None:
    """Per prompt token (None first), from vLLM's `prompt_logprobs`: each position's first entry is the prompt's
    own token (better-ranked ones follow it); None when the reply has no such field."""
    positions = _choice(reply).get("prompt_logprobs")
    if not isinstance(positions, list):
        return None
    out: list[float | None] = []
    for position in positions:
        entry = next(iter(position.values()), None) if isinstance(position, dict) else None
        out.append(_number(entry.get("logprob")) if isinstance(entry, dict) else None)
    return out


def echo_logprobs(reply: Any) -> list[float | None] | None:
    """Per prompt token (None first), from the legacy `logprobs.token_logprobs` of an echoed prompt; the tokens
    past `usage.prompt_tokens` (generated, when the server does not honour max_tokens 0) are dropped."""
    values = (_choice(reply).get("logprobs") or {}).get("token_logprobs")
    if not isinstance(values, list):
        return None
    used = (reply.get("usage") or {}).get("prompt_tokens")
    kept = values[:used] if isinstance(used, int) and used > 0 else values
    return [_number(v) for v in kept]


PARSERS = {"vllm-prompt-logprobs": vllm_logprobs, "openai-echo": echo_logprobs}


def prompt_logprobs(ep: Endpoint, form: str, text: str) -> tuple[list[float | None] | None, str]:
    """The text's per-token log-probabilities in one form, or None and why the endpoint refused that form."""
    status, reply = _post(ep, _request_body(form, ep.model, text))
    if status in (401, 403):
        raise FamiliarityError(f"{ep.url} refused the key ({status}: {reply}). Fix: the key variable of the model "
                               "config (--api-key-env VAR)")
    if status in REFUSED:
        return None, f"{status}: {reply}"
    if status != 200:
        raise FamiliarityError(f"{ep.url} ({ep.model}) answered {status}: {reply}")
    try:
        values = PARSERS[form](reply)
    except (AttributeError, TypeError, ValueError) as exc:
        raise FamiliarityError(f"{ep.url}: an unreadable {form} reply ({exc})") from exc
    return values, "" if values is not None else "200 without per-token prompt log-probabilities"


def detect_form(ep: Endpoint) -> str:
    """The first form of FORMS the endpoint answers with prompt log-probabilities (asked with a short probe)."""
    reasons = []
    for form in FORMS:
        values, why = prompt_logprobs(ep, form, PROBE)
        if values is not None:
            return form
        reasons.append(f"{form}: {why}")
    raise NoPromptLogprobs(f"model {ep.model} at {ep.url} returns no per-token log-probabilities of a prompt "
                           f"({'; '.join(reasons)}). The familiarity study needs a model served with vLLM (e.g. "
                           "--model llama-3.1-8b-vllm while the sweep's server runs, or --model openai-compatible "
                           "--base-url URL --model-id NAME) or a completions endpoint that supports echo with logprobs")


# ---------------------------------------------------------------- texts and scores


def text_candidates(competition_id: str, which: str, data_dir: Path | None) -> list[tuple[str, Path]]:
    """(label, path) of the files that may hold a competition's text, in order of preference."""
    original = ("original", upstream.upstream_dir(competition_id, data_dir) / "description.md")
    ours = ("ours", competitions.get(competition_id).description_path)
    return {"description": [original, ours], "original": [original], "ours": [ours],
            "obfuscated": [("obfuscated", p) for p in paths.obfuscated_description_candidates(competition_id, data_dir)],
            }[which]


def competition_text(competition_id: str, which: str, data_dir: Path | None) -> tuple[str, str]:
    """(text, which one it is): `description` is the original Kaggle text where it was imported, else ours."""
    for label, path in text_candidates(competition_id, which, data_dir):
        if path.is_file():
            with open(path, "rb") as fh:
                return fh.read(MAX_TEXT_BYTES).decode("utf-8", "replace"), label
    fix = ("`hpc-mle competitions import-upstream CLONE` imports the original descriptions"
           if which in ("original", "obfuscated") else "choose another --text")
    raise FamiliarityError(f"{competition_id}: no {which} text. Fix: {fix}")


def score(values: list[float | None], max_tokens: int) -> tuple[float, int]:
    """(mean log-probability, tokens scored) over the first max_tokens tokens, the first one left out."""
    scored = [v for v in values[1:max_tokens] if v is not None]
    return (float(np.mean(scored)) if scored else math.nan), len(scored)


def measure(ep: Endpoint, form: str, text: str, max_tokens: int, competition_id: str) -> dict[str, Any]:
    """One competition's row: tokens scored, mean log-probability, whether the text was cut."""
    bound = max_tokens * CHARS_PER_TOKEN
    values, why = prompt_logprobs(ep, form, text[:bound])
    if values is None:
        raise FamiliarityError(f"{competition_id}: {ep.url} refused its text ({why}). If it is too long for the "
                               "model's context, lower --max-tokens")
    mean, tokens = score(values, max_tokens)
    return {"competition": competition_id, "tokens": tokens, "mean_logprob": mean,
            "truncated": len(text) > bound or len(values) > max_tokens}


# ---------------------------------------------------------------- medal rates and correlation


def medal_rates(sweep_dir: Path, model_name: str) -> tuple[pd.DataFrame, list[str], str]:
    """(per competition: graded attempts, medals, any-medal %; the sweep's competitions; whose attempts).

    As the report counts them: attempts given the original description; those of the measured model when
    the sweep ran it, else all of them. Attempts not graded are left out (no rate without a grade)."""
    results = analysis.original_view(analysis.load_results(sweep_dir))
    if results.empty:
        raise FamiliarityError(f"{sweep_dir}: no manifest, so no attempts. Fix: give a sweep folder (runs/<sweep>)")
    planned = sorted(results["competition_id"].astype(str).unique())
    mine = results["model"].astype(str) == model_name
    if mine.any():
        results, scope = results[mine], f"model {model_name}"
    else:
        scope = "all models"
    graded = results[results["graded"]]
    medal = graded.get("any_medal", pd.Series(False, index=graded.index)).fillna(False).astype(bool)
    table = (pd.DataFrame({"competition": graded["competition_id"].astype(str), "graded": 1, "medals": medal.astype(int)})
             .groupby("competition", as_index=False).sum())
    table["any_medal_pct"] = 100.0 * table["medals"] / table["graded"]
    return table, planned, scope


def correlation(x: Any, y: Any) -> dict[str, Any]:
    """Pearson and Spearman (r, p) over the finite pairs, with n; None where they are undefined (fewer than
    MIN_POINTS points, or a constant side)."""
    from scipy import stats

    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[keep], ys[keep]
    out: dict[str, Any] = {"n": int(keep.sum()), "pearson": None, "spearman": None}
    if out["n"] < MIN_POINTS or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return out
    pearson, spearman = stats.pearsonr(xs, ys), stats.spearmanr(xs, ys)
    out["pearson"] = (float(pearson.statistic), float(pearson.pvalue))
    out["spearman"] = (float(spearman.statistic), float(spearman.pvalue))
    return out


def correlation_text(corr: dict[str, Any]) -> str:
    if corr["pearson"] is None:
        return f"no correlation: n = {corr['n']} (it needs {MIN_POINTS} competitions with differing values)"
    (r, pr), (rho, ps) = corr["pearson"], corr["spearman"]
    return f"Pearson r = {r:.2f} (p = {pr:.2g}), Spearman ρ = {rho:.2f} (p = {ps:.2g}), n = {corr['n']}"


# ---------------------------------------------------------------- outputs


def figure(table: pd.DataFrame, corr: dict[str, Any]) -> Any:
    """The paper's scatter: mean log-probability (x) against any-medal % (y), one labelled point per competition."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    points = table.dropna(subset=["mean_logprob", "any_medal_pct"])
    ax.scatter(points["mean_logprob"], points["any_medal_pct"], color="tab:blue")
    for row in points.itertuples():
        ax.annotate(str(row.competition), (row.mean_logprob, row.any_medal_pct), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    first = table.iloc[0]
    ax.set_xlabel(f"mean token log-probability of the {_texts(table)} text under {first['model']}")
    ax.set_ylabel(f"any-medal % ({first['attempts_of']})")
    ax.set_ylim(-5, 105)
    ax.margins(x=0.2)  # room for the labels of the outermost points
    ax.set_title(correlation_text(corr), fontsize=9)
    fig.tight_layout()
    return fig


def figure_png(table: pd.DataFrame, corr: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    figure(table, corr).savefig(buf, format="png")
    return buf.getvalue()


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _texts(table: pd.DataFrame) -> str:
    """Which texts were scored: one label, or several joined (a mixed study compares unlike texts)."""
    return " + ".join(sorted(set(table["text"].astype(str))))


def section_markdown(table: pd.DataFrame) -> str:
    """The report's text: what was measured, the correlation, one row per competition, and the caveat."""
    first = table.iloc[0]
    texts = _texts(table)
    cut = int(table["truncated"].astype(bool).sum())
    corr = correlation(table["mean_logprob"], table["any_medal_pct"])
    lines = ["## Familiarity with the competitions' text", "",
             f"Mean log-probability per token that {md_cell(first['model'])} gives each competition's text "
             f"({md_cell(texts)}), against the any-medal % of the attempts of {md_cell(first['attempts_of'])} "
             f"(graded attempts given the original description). The endpoint returned them as "
             f"{md_cell(first['endpoint_form'])}. Only the first {int(first['max_tokens'])} tokens of a text are "
             f"scored ({cut} of {len(table)} texts were cut there); the first token, which has no context, is not.",
             "", f"**{correlation_text(corr)}.**", "",
             md_row(["competition", "text", "tokens", "mean log-prob", "cut", "graded", "medals", "any medal %"]),
             md_row(["---"] * 8)]
    for r in table.itertuples():
        lines.append(md_row([r.competition, r.text, int(r.tokens), _fmt(r.mean_logprob, ".3f"),
                             "yes" if r.truncated else "no", int(r.graded), int(r.medals), _fmt(r.any_medal_pct, ".1f")]))
    if "+" in texts:
        lines += ["", "The texts are of different kinds (the original Kaggle description was imported for some "
                  "competitions only): compare like with like, e.g. `--text ours` or import the originals."]
    lines += ["", "A higher (less negative) mean means the model finds the text more predictable: it may have "
              "seen it in training. With few competitions a correlation, or its absence, is weak evidence "
              f"either way (n = {corr['n']}: look at the p-values). A chat-tuned model's log-probabilities "
              "of raw text are less informative than a base model's, and the description alone is a narrower probe "
              "than the paper's description and discussion posts."]
    return "\n".join(lines) + "\n"


def study_dir(sweep_dir: Path) -> Path:
    return Path(sweep_dir) / STUDY_DIR


def report_section(sweep_dir: Path) -> str | None:
    """The Markdown section of a sweep's familiarity study (from its familiarity.csv), or None without one."""
    path = study_dir(sweep_dir) / CSV
    if not path.is_file():
        return None
    table = pd.read_csv(path)
    return section_markdown(table) if len(table) else None


def write_outputs(table: pd.DataFrame, out_dir: Path, title: str) -> dict[str, Path]:
    """familiarity.csv, familiarity.png and familiarity.md in out_dir, each written atomically."""
    out_dir = Path(out_dir)
    corr = correlation(table["mean_logprob"], table["any_medal_pct"])
    written = {"csv": atomic_write_text(out_dir / CSV, table[COLUMNS].to_csv(index=False)),
               "png": atomic_write_bytes(out_dir / PNG, figure_png(table, corr))}
    body = f"# {md_cell(title)}\n\n{section_markdown(table)}\n![familiarity against medal rate]({PNG})\n"
    written["md"] = atomic_write_text(out_dir / MD, body)
    return written


def run_study(sweep_dir: Path, config: dict[str, Any], text: str = "description", ids: list[str] | None = None,
              out_dir: Path | None = None, max_tokens: int = DEFAULT_MAX_TOKENS,
              data_dir: Path | None = None) -> dict[str, Any]:
    """Measure every competition of the sweep (or `ids`), write the three files; returns their paths, the table
    and the correlation. Every text is read and the endpoint's form found before anything is written."""
    if text not in TEXTS:
        raise FamiliarityError(f"unknown text {text!r}. Fix: --text one of {', '.join(TEXTS)}")
    sweep_dir = Path(sweep_dir)
    ep = endpoint(config, sweep_dir)
    rates, planned, scope = medal_rates(sweep_dir, ep.name)
    chosen = list(ids) if ids else planned
    try:
        texts = {cid: competition_text(cid, text, data_dir) for cid in chosen}
    except KeyError as exc:
        raise FamiliarityError(str(exc.args[0] if exc.args else exc)) from exc
    form = detect_form(ep)
    rows = [{**measure(ep, form, body, max_tokens, cid), "text": label}
            for cid, (body, label) in texts.items()]
    table = pd.DataFrame(rows).merge(rates, on="competition", how="left")
    table = table.assign(max_tokens=max_tokens, model=ep.model, endpoint_form=form, attempts_of=scope)
    table[["graded", "medals"]] = table[["graded", "medals"]].fillna(0).astype(int)
    written = write_outputs(table, Path(out_dir) if out_dir else study_dir(sweep_dir),
                            f"Familiarity study of sweep {sweep_dir.name}")
    return {"files": written, "table": table[COLUMNS],
            "correlation": correlation(table["mean_logprob"], table["any_medal_pct"])}
