"""AIDE end to end: a real aideml 0.2.2 run in a bwrap sandbox, driven by the scripted test server.

The server answers AIDE's drafting prompt with a fixed plan and a short correct solution for
mini-churn and its review call (`submit_review`) with a good metric; AIDE executes the code, which
writes ./working/submission.csv, our driver publishes it to /home/submission, the grader finds it
valid, and the metering proxy's llm_calls.jsonl, the attempt's status and the analysis show tokens.

AIDE runs in its own venv (`hpc-mle scaffolds venv aide`, cached in ~/.cache/hpc-mle/venvs): the first
run builds it (about 1-3 minutes from PyPI), later runs reuse it.
"""

from __future__ import annotations

import json
import shutil
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from hpc_mle import analysis, grading, paths, runner, scaffold_env

CID = "mini-churn"
MODEL = "gpt-4o-2024-08-06"
KEY = "sk-test-aide-upstream-key-0123456789"
STEPS = 1

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")]

SOLUTION = textwrap.dedent('''\
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import cross_val_score

    train = pd.read_csv("./input/train.csv")
    test = pd.read_csv("./input/test.csv")
    y = train.pop("churn")
    features = pd.get_dummies(pd.concat([train, test]).drop(columns=["id"]), dtype=float)
    x_train, x_test = features.iloc[: len(train)], features.iloc[len(train):]
    model = HistGradientBoostingClassifier(max_iter=50, random_state=0)
    auc = cross_val_score(model, x_train, y, cv=3, scoring="roc_auc").mean()
    print(f"Validation AUC: {auc:.4f}")
    model.fit(x_train, y)
    pd.DataFrame({"id": test["id"], "churn": model.predict_proba(x_test)[:, 1]}).to_csv(
        "./working/submission.csv", index=False)
''')
PLAN = ("Gradient-boosted trees on one-hot encoded features, scored by 3-fold ROC AUC on the training "
        "data, then fitted on all of it to predict the churn probability of each test customer.")
REVIEW = {"is_bug": False, "summary": "The script ran, printed the validation AUC and wrote the submission.",
          "metric": 0.91, "lower_is_better": False}  # a float: AIDE treats an int metric as missing

# AIDE 0.2.2's prompts: drafting, improving and debugging all open with "Kaggle grandmaster" and ask
# for a plan then one code block; the review offers the `submit_review` tool.
SCRIPT = {
    "rules": [
        {"match": "submit_review", "content": None, "tool_call": {"name": "submit_review", "arguments": REVIEW}},
        {"match": "Solution sketch guideline", "content": f"{PLAN}\n\n```python\n{SOLUTION}```\n"},
    ],
    "default": {"content": f"{PLAN}\n\n```python\n{SOLUTION}```\n"},
}


@pytest.fixture(scope="module")
def aide_venv() -> Path:
    """The AIDE venv, built once (or found in the cache); skipped with the reason if it cannot be built."""
    try:
        built = scaffold_env.build("aide")
    except (scaffold_env.VenvError, OSError) as exc:
        pytest.skip(f"the AIDE venv cannot be built here: {str(exc)[:500]}")
    print(f"aide venv {built.path}: {'reused' if built.reused else f'built in {built.seconds:.0f} s'}, "
          f"{built.size_bytes / 2**20:.0f} MiB")
    return built.path


def test_aide_attempt_end_to_end(tmp_path, mini_data, aide_venv, monkeypatch):
    from hpc_mle.llm import testserver

    monkeypatch.setenv("HPC_MLE_TEST_LLM_KEY", KEY)
    scaffold = yaml.safe_load((paths.REPO_ROOT / "conf" / "scaffold" / "aide.yaml").read_text())
    scaffold["env"].update(STEP_LIMIT=str(STEPS))
    sweep = tmp_path / "sweep"
    aid = "aide-e2e"
    out = sweep / "attempts" / aid
    server = testserver.start(SCRIPT, api_key=KEY)
    try:
        model = {"name": "scripted", "provider": "openai-compatible", "model": MODEL, "base_url": server.base_url,
                 "api_key_env": "HPC_MLE_TEST_LLM_KEY", "api": "chat", "sampling": {"temperature": 0.5}}
        cfg = runner.AttemptConfig(competition_id=CID, scaffold="aide", scaffold_config=scaffold, out=out,
                                   data_dir=mini_data, sandbox="bwrap", time_limit_s=240, grace_s=5,
                                   telemetry_interval_s=2, model_config=model)
        t0 = time.monotonic()
        status = runner.run_attempt(cfg)
        elapsed = time.monotonic() - t0
    finally:
        server.stop()
    log = (out / "agent.log").read_text(errors="replace")
    print(f"attempt took {elapsed:.1f} s\n{log[-3000:]}")
    assert status["state"] == "done", (status, log[-3000:])

    # AIDE ran the scripted code in the sandbox: each step wrote a submission and was judged good.
    steps = [json.loads(line) for line in (out / "logs" / "aide" / "aide_steps.jsonl").read_text().splitlines()]
    assert len(steps) == STEPS and all(s["wrote_submission"] and not s["buggy"] for s in steps), steps
    assert steps[0]["stage"] == "draft" and steps[0]["metric"] == pytest.approx(0.91)
    assert (out / "logs" / "aide" / "0-exp" / "journal.json").is_file()
    assert "HistGradientBoostingClassifier" in (out / "code" / "solution.py").read_text()

    report = grading.grade_submission(out / "submission" / "submission.csv", CID, mini_data)
    assert report.valid_submission, report.reason
    assert report.score > 0.8  # a real model, not the sample submission's 0.5

    # Every LLM call went through the metering proxy and was counted.
    calls = [json.loads(line) for line in (out / "llm_calls.jsonl").read_text().splitlines()]
    assert len(calls) == 2 * STEPS  # one draft and one review per step
    assert all(c["model"] == MODEL and c["input_tokens"] > 0 and c["output_tokens"] > 0 for c in calls), calls
    assert status["llm"]["input_tokens"] == sum(c["input_tokens"] for c in calls)
    for path in out.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), f"{path} holds the provider key"

    # The analysis reads the tokens (and the cost at gpt-4o's price) back for the report.
    pd.DataFrame([{"id": aid, "competition_id": CID, "scaffold": "aide", "model": "scripted", "seed": 0}]
                 ).to_csv(sweep / "manifest.csv", index=False)
    row = analysis.load_results(sweep).iloc[0]
    assert row["input_tokens"] == status["llm"]["input_tokens"] and row["output_tokens"] > 0
    assert row["cost_usd"] > 0
