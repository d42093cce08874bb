"""Test agent: talks to its model through the attempt's metering proxy with the official OpenAI and
Anthropic clients (addresses and token from the environment only), keeps calling until its budget
is refused, records what it saw and its whole environment, then submits the sample submission."""

import json
import os
import shutil

import anthropic
import openai

model = os.environ["HPC_MLE_MODEL"]
sampling = json.loads(os.environ["HPC_MLE_SAMPLING"])
messages = [{"role": "user", "content": "hello from the sandbox"}]
record = {"env": dict(os.environ), "answers": [], "stream": [], "budget_error": None, "calls": 0}

client = openai.OpenAI(max_retries=0)  # OPENAI_BASE_URL and OPENAI_API_KEY from the environment
reply = client.chat.completions.create(model=model, messages=messages, **sampling)
record["answers"].append(reply.choices[0].message.content)
stream = client.chat.completions.create(model=model, messages=messages, stream=True, **sampling)
record["stream"] = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
claude = anthropic.Anthropic(max_retries=0)  # ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY likewise
record["answers"].append(claude.messages.create(model=model, max_tokens=64, messages=messages).content[0].text)
record["calls"] = 3
for _ in range(100):
    try:
        client.chat.completions.create(model=model, messages=messages, **sampling)
        record["calls"] += 1
    except openai.PermissionDeniedError as exc:
        record["budget_error"] = exc.message
        break

with open(os.path.join(os.environ["LOGS_DIR"], "llm_client.json"), "w") as fh:
    json.dump(record, fh, indent=2)
shutil.copyfile(os.path.join(os.environ["DATA_DIR"], "sample_submission.csv"),
                os.path.join(os.environ["SUBMISSION_DIR"], "submission.csv"))
