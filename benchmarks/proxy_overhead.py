"""What the metering proxy adds to each LLM call: latency, streamed time to first chunk, memory.

The same scripted server (`hpc_mle.llm.testserver`) is called directly and through a proxy (TCP on
127.0.0.1, as with sandbox=none), with the official `openai` client, sequentially. Target: under 5 ms
added per call; an LLM call itself takes seconds, so the proxy must stay invisible in attempt time.

    python benchmarks/proxy_overhead.py [--calls 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import openai
import psutil

from hpc_mle.llm import testserver
from hpc_mle.llm.proxy import MeteringProxy, config_from_model

KEY = "sk-bench-not-a-real-key"
MODEL = "gpt-4o-2024-08-06"
SCRIPT = {"rules": [{"match": "stream", "content": " ".join(["token"] * 50)}],
          "default": {"content": "a short answer of a few words"}}


def timed_calls(client: openai.OpenAI, n: int, stream: bool = False) -> list[float]:
    """Seconds per call (to the first content chunk when streaming)."""
    out = []
    messages = [{"role": "user", "content": "stream please" if stream else "hello"}]
    for _ in range(n):
        t0 = time.perf_counter()
        if stream:
            for chunk in client.chat.completions.create(model=MODEL, messages=messages, stream=True):
                if chunk.choices and chunk.choices[0].delta.content:
                    out.append(time.perf_counter() - t0)
                    break
        else:
            client.chat.completions.create(model=MODEL, messages=messages)
            out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    n = parser.parse_args().calls
    os.environ["HPC_MLE_BENCH_KEY"] = KEY
    rss0 = psutil.Process().memory_info().rss
    with testserver.start(SCRIPT, api_key=KEY) as server, tempfile.TemporaryDirectory() as tmp:
        model = {"name": "bench", "provider": "openai", "model": MODEL, "api_key_env": "HPC_MLE_BENCH_KEY",
                 "base_url": server.base_url}
        proxy = MeteringProxy(config_from_model(model, Path(tmp) / "llm_calls.jsonl"),
                              Path(tmp) / "llm.sock", tcp=True).start()
        try:
            direct = openai.OpenAI(api_key=KEY, base_url=server.base_url, max_retries=0)
            proxied = openai.OpenAI(api_key=proxy.token, base_url=f"http://127.0.0.1:{proxy.port}/v1", max_retries=0)
            timed_calls(direct, 20), timed_calls(proxied, 20)  # warm-up: connections, imports
            rows = {
                "call, direct": timed_calls(direct, n),
                "call, through the proxy": timed_calls(proxied, n),
                "stream first chunk, direct": timed_calls(direct, n // 3, stream=True),
                "stream first chunk, through the proxy": timed_calls(proxied, n // 3, stream=True),
            }
            logged = sum(1 for _ in (Path(tmp) / "llm_calls.jsonl").open())
        finally:
            proxy.close()
    print(f"{n} sequential calls each (streams: {n // 3}); median / p95 in milliseconds")
    for name, secs in rows.items():
        ms = sorted(s * 1000 for s in secs)
        print(f"  {name:40s} {statistics.median(ms):7.2f} / {ms[int(0.95 * (len(ms) - 1))]:7.2f}")
    added = statistics.median(rows["call, through the proxy"]) - statistics.median(rows["call, direct"])
    added_stream = (statistics.median(rows["stream first chunk, through the proxy"])
                    - statistics.median(rows["stream first chunk, direct"]))
    print(f"added by the proxy: {added * 1000:.2f} ms per call, {added_stream * 1000:.2f} ms to the first "
          f"streamed chunk (target < 5 ms); {logged} calls logged")
    print(f"memory of this process (server, proxy, client): +{(psutil.Process().memory_info().rss - rss0) / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
