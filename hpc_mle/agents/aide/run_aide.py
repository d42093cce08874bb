"""Drive aideml 0.2.2's search loop under the MLE-bench agent contract.

Runs inside the AIDE venv (never hpc-mle's). `aide` itself (aide.run:run) is a full-screen terminal UI
that keeps only the best *code*; MLE-bench needs the best *submission* on disk at every moment, since
the attempt may be stopped at its time limit. So this driver runs the same pieces (config, workspace,
Agent, Interpreter, Journal) step by step and, after each step:

- keeps the submission the step wrote (`./working/submission.csv`, where AIDE's prompt asks for it);
- copies the best good node's submission to $SUBMISSION_DIR/submission.csv and its code to $CODE_DIR;
- saves the journal (AIDE's own files) under the log dir and appends a line to aide_steps.jsonl.

It stops at `agent.steps` or when TIME_LIMIT_SECS runs out, whichever comes first, and caps each
execution at the time left (`exec.timeout` is upstream's per-step limit).

LLM calls go to the metering proxy only: chat completions at $OPENAI_BASE_URL for OpenAI-style providers
(upstream's AIDE used chat completions; 0.2.2 would send gpt-* models to api.openai.com's responses API,
ignoring the base URL), and AIDE's Anthropic backend (which honours $ANTHROPIC_BASE_URL) for Anthropic.
Arguments are AIDE's own `key=value` overrides (agent.steps=..., exec.timeout=...).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import aide.backend as backend
import openai
from aide.agent import Agent
from aide.interpreter import Interpreter
from aide.journal import Journal, Node
from aide.utils.config import load_cfg, load_task_desc, prep_agent_workspace, save_run
from omegaconf import OmegaConf

SUBMISSION_DIR = Path(os.environ.get("SUBMISSION_DIR", "/home/submission"))
CODE_DIR = Path(os.environ.get("CODE_DIR", "/home/code"))
MAX_FAILED_STEPS = 3  # consecutive steps that raise (LLM errors, a dead interpreter) before giving up

_client: openai.OpenAI | None = None


def _sampling() -> dict[str, Any]:
    """The model config's sampling settings (temperature, top_p, max_tokens, ...), passed by the runner."""
    try:
        value = json.loads(os.environ.get("HPC_MLE_SAMPLING") or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def chat_query(system_message: str | None, user_message: str | None, func_spec=None, **model_kwargs):
    """AIDE's backend interface over chat completions at $OPENAI_BASE_URL (the metering proxy)."""
    global _client
    if _client is None:
        _client = openai.OpenAI(base_url=os.environ["OPENAI_BASE_URL"], api_key=os.environ.get("OPENAI_API_KEY"),
                                max_retries=3, timeout=float(os.environ.get("HPC_MLE_LLM_TIMEOUT", "600")))
    messages = [{"role": role, "content": text} for role, text in (("system", system_message),
                                                                    ("user", user_message)) if text]
    kwargs = {k: v for k, v in {**model_kwargs, **_sampling()}.items() if v is not None}
    if kwargs.get("model", "").startswith(("o1", "o3", "o4")):
        kwargs.pop("temperature", None)  # reasoning models accept only their default
    if func_spec is not None:
        kwargs["tools"] = [func_spec.as_openai_tool_dict]
        kwargs["tool_choice"] = func_spec.openai_tool_choice_dict
    t0 = time.monotonic()
    response = _client.chat.completions.create(messages=messages, **kwargs)
    elapsed = time.monotonic() - t0
    message = response.choices[0].message
    output: Any = message.content
    if func_spec is not None:
        calls = [c for c in (message.tool_calls or []) if c.function.name == func_spec.name]
        if calls:
            output = json.loads(calls[0].function.arguments)
        else:  # some servers put the arguments in the text: take them if they parse, else fail loudly
            try:
                output = json.loads(message.content or "")
            except ValueError as exc:
                raise RuntimeError(f"the model did not call {func_spec.name}: {message.content!r:.300}") from exc
    usage = response.usage
    tokens_in, tokens_out = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
    return output, elapsed, tokens_in, tokens_out, {"model": response.model}


def route_llm_calls() -> None:
    """Send every AIDE query through the proxy, whatever the model's name looks like."""
    provider = os.environ.get("HPC_MLE_PROVIDER", "openai")
    backend.provider_to_query_func["hpc-mle-chat"] = chat_query
    if provider == "anthropic":
        backend.determine_provider = lambda _model: "anthropic"
    else:
        backend.determine_provider = lambda _model: "hpc-mle-chat"
    if provider != "anthropic" and not os.environ.get("OPENAI_BASE_URL"):
        sys.exit("run_aide: OPENAI_BASE_URL is not set; the scaffold needs a model (model=... in the launch)")


def _replace(src: Path, dst: Path) -> None:
    """Copy so that a reader (the runner's snapshots, the grader) never sees half a file."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


class Keeper:
    """Keeps each step's submission and publishes the best good node's submission and code."""

    def __init__(self, workspace: Path, log_dir: Path) -> None:
        self.produced = workspace / "working" / "submission.csv"
        self.store = log_dir / "submissions"
        self.store.mkdir(parents=True, exist_ok=True)
        self.published: str | None = None

    def before_step(self) -> None:
        self.produced.unlink(missing_ok=True)  # a stale file must not be credited to the next node

    def after_step(self, node: Node, journal: Journal) -> bool:
        wrote = self.produced.is_file()
        if wrote:
            shutil.move(self.produced, self.store / f"{node.id}.csv")
        good = [n for n in journal.good_nodes if (self.store / f"{n.id}.csv").is_file()]
        if good:
            best = max(good, key=lambda n: n.metric)
            if best.id != self.published:
                _replace(self.store / f"{best.id}.csv", SUBMISSION_DIR / "submission.csv")
                (CODE_DIR / "solution.py").write_text(best.code)
                self.published = best.id
        return wrote


def main() -> int:
    started = time.monotonic()
    budget = float(os.environ.get("TIME_LIMIT_SECS", "86400"))
    reserve = min(60.0, 0.05 * budget)  # time kept back to save the journal and copy files
    route_llm_calls()
    cfg = load_cfg()  # AIDE's config.yaml + our key=value arguments
    print(f"run_aide: {cfg.exp_name}, steps={cfg.agent.steps}, budget={budget:.0f}s, "
          f"exec.timeout={cfg.exec.timeout}s, code model={cfg.agent.code.model}", flush=True)
    task_desc = load_task_desc(cfg)
    prep_agent_workspace(cfg)
    journal = Journal()
    agent = Agent(task_desc=task_desc, cfg=cfg, journal=journal)
    interpreter = Interpreter(cfg.workspace_dir, **OmegaConf.to_container(cfg.exec))  # type: ignore[arg-type]
    keeper = Keeper(Path(cfg.workspace_dir), Path(cfg.log_dir))
    steps_log = Path(cfg.log_dir).parent / "aide_steps.jsonl"

    def stop(signum, _frame):  # the runner's TERM at the time limit: save the journal on the way out
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    failures = 0
    try:
        while len(journal) < cfg.agent.steps:
            left = budget - (time.monotonic() - started) - reserve
            if left <= 1:
                print("run_aide: time budget spent, stopping", flush=True)
                break
            interpreter.timeout = int(max(1, min(cfg.exec.timeout, left)))
            keeper.before_step()
            t0 = time.monotonic()
            try:
                agent.step(exec_callback=interpreter.run)
            except Exception:  # an LLM or interpreter error: AIDE would end the run; retry a few times
                failures += 1
                print(f"run_aide: step failed ({failures}/{MAX_FAILED_STEPS}):\n{traceback.format_exc()}", flush=True)
                if failures >= MAX_FAILED_STEPS:
                    return 1
                continue
            failures = 0
            node = journal.nodes[-1]
            wrote = keeper.after_step(node, journal)
            save_run(cfg, journal)
            record = {"step": len(journal), "node": node.id, "stage": node.stage_name, "buggy": node.is_buggy,
                      "metric": node.metric.value, "exec_time_s": node.exec_time, "wrote_submission": wrote,
                      "step_s": round(time.monotonic() - t0, 2), "published": keeper.published}
            with open(steps_log, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            print(f"run_aide: {json.dumps(record)}", flush=True)
    finally:
        interpreter.cleanup_session()
        if len(journal):
            save_run(cfg, journal)
    if keeper.published is None:
        print("run_aide: no good node wrote a submission", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
