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
nothing but the ledger of those calls is written. Only the first `max_tokens` tokens of a text are scored
(the text is cut at `CHARS_PER_TOKEN` characters a token before it is sent, so it stays within the model's
context), and the output says which texts were cut. The first token has no context and is never scored.

Every call (the probe, then one per competition) goes through a metering proxy of the study's own, as the
audit judge's do (`hpc_mle.llm.proxy.private_proxy`): the model config's key, prices and budget, and a ledger
in the output folder (`CALLS`, appended to by every run of the study there, so its budget spans them);
familiarity.md says what this run's calls cost. The key (the model config's `api_key_env`, or a served model's
per-sweep key file) is read by the proxy alone and written nowhere; this module holds only the proxy's token.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hpc_mle import analysis, competitions, paths, upstream
from hpc_mle.files import atomic_write_bytes, atomic_write_text, read_json
from hpc_mle.textsafe import md_cell, md_row

if TYPE_CHECKING:
    from hpc_mle.llm.proxy import MeteringProxy

STUDY_DIR = Path("analysis") / "familiarity"  # under the sweep folder: where report_section looks
CSV, PNG, MD = "familiarity.csv", "familiarity.png", "familiarity.md"
CALLS = "familiarity_calls.jsonl"  # the study's ledger, beside its outputs
TEXTS = ("description", "original", "ours", "obfuscated")
DEFAULT_MAX_TOKENS = 2048
CHARS_PER_TOKEN = 8  # prose averages about 4 characters a token: the cut text still holds max_tokens tokens
MAX_TEXT_BYTES = 4 * 1024**2
MAX_REPLY_BYTES = 256 * 1024**2
TIMEOUT_S = 300.0
FORMS = ("vllm-prompt-logprobs", "openai-echo")
REFUSED = (400, 404, 405, 422, 501)  # how servers say a field or an endpoint is not supported
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
    """Where the model answers: its config name, the exact name it serves, the API root and the key (for the
    study, the metering proxy's root and token), and the model's own root that messages name."""

    name: str
    model: str
    base_url: str
    key: str | None = field(default=None, repr=False)
    direct: bool = False  # never through a site HTTP proxy (the study's own proxy on 127.0.0.1)
    upstream: str | None = None  # the model's own API root, behind the proxy at base_url

    def redact(self, text: str) -> str:
        return text.replace(self.key, "***") if self.key else text

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/completions"

    @property
    def where(self) -> str:
        """The model's own completions URL, for messages (the proxy's local one means nothing to a user)."""
        return (self.upstream or self.base_url).rstrip("/") + "/completions"


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
    ran = sweep_models(sweep_dir)
    if name_or_path is None and len(ran) != 1:
        which = f"it ran {', '.join(sorted(ran))}" if ran else "it ran no language model"
        raise FamiliarityError(f"{sweep_dir}: which model? {which}. Fix: --model NAME (a conf/model name such as "
                               "llama-3.1-8b-vllm, or a model YAML)")
    if name_or_path is None or name_or_path in ran:
        config = dict(ran[name_or_path or next(iter(ran))])
    else:
        try:
            config = analysis.load_model_config(name_or_path)  # not audit's: audit imports report, which imports us
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


def _check_key_var(config: dict[str, Any]) -> None:
    """The variable `api_key_env` names is set (the proxy reads it); a key file is read by the proxy itself."""
    var = config.get("api_key_env")
    if var and not config.get("api_key_file") and not os.environ.get(str(var)):
        raise FamiliarityError(f"model {config.get('name')}: ${var} is not set. Fix: export {var}=... "
                               "(or --api-key-env VAR for another variable)")


def forwarded_config(config: dict[str, Any], sweep_dir: Path) -> dict[str, Any]:
    """The model config the study's proxy forwards to: its base URL resolved (a served model's from the sweep's
    running server, with that server's key and address files), after the checks that name a fix."""
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
    target = {**config, "name": name, "base_url": str(base_url)}
    if served:
        target.update(api_key_file=str(serve.key_path(sweep_dir, name)),
                      address_file=str(serve.serve_dir(sweep_dir, name) / serve.ADDRESS))
    _check_key_var(target)
    return target


@contextlib.contextmanager
def metered(config: dict[str, Any], sweep_dir: Path, calls_path: Path, **proxy_settings: Any
            ) -> Iterator[tuple[Endpoint, MeteringProxy]]:
    """The model of `config` behind a started metering proxy of the study's own, its ledger at `calls_path`:
    (the Endpoint to call, the proxy whose `summary()` holds the totals). `proxy_settings`: ProxyConfig fields."""
    from hpc_mle.llm.proxy import ProxyError, private_proxy

    target = forwarded_config(config, sweep_dir)
    Path(calls_path).parent.mkdir(parents=True, exist_ok=True)
    try:
        proxy = private_proxy(target, Path(calls_path), prefix="hpcmle-familiarity-", **proxy_settings)
    except ProxyError as exc:
        raise FamiliarityError(f"model {target['name']}: {exc}") from exc
    with proxy:
        yield Endpoint(target["name"], str(target["model"]), proxy.local_url + "/v1", proxy.token, direct=True,
                       upstream=target["base_url"]), proxy


# ---------------------------------------------------------------- one call


def _request_body(form: str, model: str, text: str) -> dict[str, Any]:
    if form == "vllm-prompt-logprobs":
        return {"model": model, "prompt": text, "max_tokens": 1, "temperature": 0, "prompt_logprobs": 0}
    return {"model": model, "prompt": text, "max_tokens": 0, "temperature": 0, "echo": True, "logprobs": 0}


def _post(ep: Endpoint, body: dict[str, Any]) -> tuple[int, Any]:
    """(HTTP status, the reply's JSON or, for an error, its text); FamiliarityError when nothing answers. A busy
    or failing server's 429/5xx is retried by the metering proxy, with backoff, before it reaches here."""
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
        raise FamiliarityError(f"{ep.where} ({ep.model}): {ep.redact(str(getattr(exc, 'reason', exc)))}") from exc


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
    if status == 403 and "budget_exceeded" in str(reply):
        raise FamiliarityError(f"{ep.where}: the study's budget is spent ({reply}). Fix: raise the model config's "
                               f"budget (budget.max_tokens, budget.max_cost_usd; it spans every run in {CALLS})")
    if status in (401, 403):
        raise FamiliarityError(f"{ep.where} refused the key ({status}: {reply}). Fix: the key variable of the model "
                               "config (--api-key-env VAR)")
    if status in REFUSED:
        return None, f"{status}: {reply}"
    if status != 200:
        raise FamiliarityError(f"{ep.where} ({ep.model}) answered {status}: {reply}")
    try:
        values = PARSERS[form](reply)
    except (AttributeError, TypeError, ValueError) as exc:
        raise FamiliarityError(f"{ep.where}: an unreadable {form} reply ({exc})") from exc
    return values, "" if values is not None else "200 without per-token prompt log-probabilities"


def detect_form(ep: Endpoint) -> str:
    """The first form of FORMS the endpoint answers with prompt log-probabilities (asked with a short probe)."""
    reasons = []
    for form in FORMS:
        values, why = prompt_logprobs(ep, form, PROBE)
        if values is not None:
            return form
        reasons.append(f"{form}: {why}")
    raise NoPromptLogprobs(f"model {ep.model} at {ep.where} returns no per-token log-probabilities of a prompt "
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
        raise FamiliarityError(f"{competition_id}: {ep.where} refused its text ({why}). If it is too long for the "
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


def spent(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What one run of the study used: the difference of its ledger's totals (`MeteringProxy.summary()`) before
    and after; `cost_usd` None where a call had no price, `ledger_calls` the ledger's calls over every run."""
    used = {k: after[k] - before[k] for k in ("calls", "errors", "input_tokens", "output_tokens")}
    priced = before["cost_usd"] is not None and after["cost_usd"] is not None
    return {**used, "cost_usd": round(after["cost_usd"] - before["cost_usd"], 8) if priced else None,
            "price_key": after.get("price_key"), "ledger_calls": after["calls"]}


def calls_markdown(calls: dict[str, Any]) -> str:
    """familiarity.md's line on the model calls of this run, as the study's metering proxy booked them."""
    cost = (f"${calls['cost_usd']:.4f}" if calls["cost_usd"] is not None else
            f"cost unknown (no price row for {md_cell(calls['price_key'])} in prices.csv)")
    ledger = f"; the ledger holds {calls['ledger_calls']} over every run" if calls["ledger_calls"] != calls["calls"] \
        else ""
    return (f"Model calls of this run, metered (ledger `{CALLS}`{ledger}): {calls['calls']} calls "
            f"({calls['errors']} answered an error), {calls['input_tokens']} prompt tokens, "
            f"{calls['output_tokens']} generated tokens, {cost}.")


def write_outputs(table: pd.DataFrame, out_dir: Path, title: str,
                  calls: dict[str, Any] | None = None) -> dict[str, Path]:
    """familiarity.csv, familiarity.png and familiarity.md in out_dir, each written atomically; `calls` (from
    `spent`) adds the line on what the study's model calls used."""
    out_dir = Path(out_dir)
    corr = correlation(table["mean_logprob"], table["any_medal_pct"])
    written = {"csv": atomic_write_text(out_dir / CSV, table[COLUMNS].to_csv(index=False)),
               "png": atomic_write_bytes(out_dir / PNG, figure_png(table, corr))}
    used = f"\n{calls_markdown(calls)}\n" if calls else ""
    body = f"# {md_cell(title)}\n\n{section_markdown(table)}{used}\n![familiarity against medal rate]({PNG})\n"
    written["md"] = atomic_write_text(out_dir / MD, body)
    return written


def run_study(sweep_dir: Path, config: dict[str, Any], text: str = "description", ids: list[str] | None = None,
              out_dir: Path | None = None, max_tokens: int = DEFAULT_MAX_TOKENS,
              data_dir: Path | None = None) -> dict[str, Any]:
    """Measure every competition of the sweep (or `ids`) through the study's metering proxy, write the three files;
    returns their paths (and the ledger's), the table, the correlation and what this run's calls used. Every text
    is read before any call, and the endpoint's form found before anything but the ledger is written."""
    if text not in TEXTS:
        raise FamiliarityError(f"unknown text {text!r}. Fix: --text one of {', '.join(TEXTS)}")
    sweep_dir = Path(sweep_dir)
    out = Path(out_dir) if out_dir else study_dir(sweep_dir)
    forwarded_config(config, sweep_dir)  # the checks that name a fix, before the sweep and the texts are read
    rates, planned, scope = medal_rates(sweep_dir, str(config.get("name") or config.get("model")))
    chosen = list(ids) if ids else planned
    try:
        texts = {cid: competition_text(cid, text, data_dir) for cid in chosen}
    except KeyError as exc:
        raise FamiliarityError(str(exc.args[0] if exc.args else exc)) from exc
    with metered(config, sweep_dir, out / CALLS) as (ep, proxy):
        before = proxy.summary()
        form = detect_form(ep)
        rows = [{**measure(ep, form, body, max_tokens, cid), "text": label}
                for cid, (body, label) in texts.items()]
        calls = spent(before, proxy.summary())
    table = pd.DataFrame(rows).merge(rates, on="competition", how="left")
    table = table.assign(max_tokens=max_tokens, model=ep.model, endpoint_form=form, attempts_of=scope)
    table[["graded", "medals"]] = table[["graded", "medals"]].fillna(0).astype(int)
    written = write_outputs(table, out, f"Familiarity study of sweep {sweep_dir.name}", calls)
    return {"files": {**written, "calls": out / CALLS}, "table": table[COLUMNS], "calls": calls,
            "correlation": correlation(table["mean_logprob"], table["any_medal_pct"])}
