"""A served model's relay of server jobs on the dev cluster, run to the jobs' real time limits.

The suite's test (tests/test_serve_relay.py) stops job 1 with scancel once job 2 has taken over, to stay short;
this waits instead for Slurm to end each job at its limit. A relay of `--jobs` fake_vllm servers on the short
partition (MaxTime=2 min, each `after:<previous>+1`), a metering proxy as an attempt has, and a client that calls
the model through it every 0.2 s until the last job has answered after the previous one ended. Prints which job
answered when, every failed call, when address.json moved and when each job ended; then the teardown cancels the
relay. About 1 + jobs minutes.

    source slurm/dev/env.sh && python benchmarks/serve_relay.py [--jobs 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from omegaconf import OmegaConf

from hpc_mle import plan, slurm
from hpc_mle.llm import proxy as llm_proxy
from hpc_mle.llm import serve

FAKE = Path(__file__).resolve().parent.parent / "tests" / "agents" / "fake_vllm.py"
NAME = "llama-3.1-70b-vllm"


def read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def call(proxy: llm_proxy.MeteringProxy) -> tuple[int, str]:
    """One chat call through the proxy: (status, the answering server's fingerprint or the error)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{proxy.port}/v1/chat/completions", method="POST",
        data=json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode(),
        headers={"Authorization": f"Bearer {proxy.token}", "Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=120) as resp:
            return resp.status, json.loads(resp.read()).get("system_fingerprint", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")[:300]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3, help="server jobs in the relay (each 2 min, 1 min apart)")
    args = parser.parse_args()
    (cfg,) = plan.compose_all([[f"model={NAME}", "cluster=dev", "cluster.partition=short",
                                f'model.serve_conf.command=["{sys.executable}","{FAKE}"]', "model.serve_conf.gpus=0",
                                "model.serve_conf.cpus=1", "model.serve_conf.mem_gb=1", "model.serve_conf.wait=60s",
                                f"model.serve_conf.time={args.jobs + 1}m", "model.serve_conf.args=[--fake-delay,5]"]])
    model = OmegaConf.to_container(cfg.model, resolve=True)
    sweep = Path(tempfile.mkdtemp(prefix="serve-relay-"))
    folder = serve.serve_dir(sweep, NAME)
    t0 = time.monotonic()

    def now() -> str:
        return f"{time.monotonic() - t0:6.1f} s"

    ids, _ = slurm._submit_server(sweep / "slurm", sweep, "bench", model, cfg.cluster, [])
    print(f"{now()}  submitted relay {ids} (sweep {sweep})")
    while serve.health_problem(read(folder / serve.ADDRESS) or {"host": "-", "port": 0}) is not None:
        time.sleep(0.5)
    seen: list[tuple[str, int, str]] = []
    moves: list[tuple[str, str]] = [(now(), read(folder / serve.ADDRESS)["job_id"])]
    print(f"{now()}  job {moves[0][1]} healthy")
    stop = threading.Event()
    model_config = {"name": NAME, "provider": "vllm", "model": "m", "api_key_env": None,
                    "base_url": read(folder / serve.ADDRESS)["base_url"], "price": "local-vllm",
                    "api_key_file": str(serve.key_path(sweep, NAME)), "address_file": str(folder / serve.ADDRESS)}
    cfg_proxy = llm_proxy.config_from_model(model_config, sweep / "calls.jsonl")  # an attempt's retries and backoff
    try:
        with llm_proxy.MeteringProxy(cfg_proxy, sweep / "llm.sock", tcp=True) as proxy:
            def loop() -> None:
                while not stop.is_set():
                    status, who = call(proxy)
                    seen.append((now(), status, who))
                    time.sleep(0.2)

            caller = threading.Thread(target=loop, daemon=True)
            caller.start()
            last = f"job {ids[-1]}"
            while not any(who.startswith(last) for _, _, who in seen) or f"job {ids[-2]} ended" not in \
                    (folder / serve.LOG).read_text():
                job = read(folder / serve.ADDRESS).get("job_id")
                if job and job != moves[-1][1]:
                    moves.append((now(), job))
                    print(f"{now()}  address.json now names job {job}")
                if time.monotonic() - t0 > 120 + 60 * len(ids):
                    print(f"{now()}  gave up waiting")
                    break
                time.sleep(0.5)
            time.sleep(2)
            stop.set()
            caller.join(150)
    finally:
        entry = serve.teardown_task(sweep, NAME, [])
        print(f"{now()}  teardown: {entry['action']} {entry.get('relay_jobs')} -> {entry['in_queue_after']}")
    spans: dict[str, list[str]] = {}
    for at, status, who in seen:
        if status == 200:
            spans.setdefault(who.split(" pid")[0], []).append(at)
    for who, times in spans.items():
        print(f"  {who}: {len(times)} answers, from {times[0]} to {times[-1]}")
    failed = [(at, status, who) for at, status, who in seen if status != 200]
    print(f"  calls: {len(seen)}, failed: {len(failed)}")
    for at, status, who in failed:
        print(f"    {at} {status} {who}")
    print("  server.log:")
    for line in (folder / serve.LOG).read_text().splitlines():
        if not line.startswith("fake_vllm argv"):
            print(f"    {line}")


if __name__ == "__main__":
    main()
