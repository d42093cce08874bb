"""Serving a model with vLLM for a sweep: the command line, a local server, and the Slurm server job.

There is no GPU and no vLLM here, so tests/agents/fake_vllm.py stands in for `vllm serve` through
`model.serve_conf.command` (a field meant for tests) and `model.serve_conf.gpus=0`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from slurm_cluster import slurm_env, wait_for  # noqa: F401  (session fixture)

from hpc_mle import launch, plan, runner, slurm, slurm_queue
from hpc_mle.llm import proxy as llm_proxy
from hpc_mle.llm import serve, testserver

FAKE = Path(__file__).parent / "agents" / "fake_vllm.py"
SERVED = ["model=llama-3.1-70b-vllm", "scaffold=dummy", "benchmark.competitions=[mini-churn]",
          f'model.serve_conf.command=["{sys.executable}","{FAKE}"]', "model.serve_conf.gpus=0",
          "model.serve_conf.args=[--fake-delay,2]"]


def read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def the_attempt(sweep: Path) -> Path:
    (aid,) = plan.read_manifest(sweep)["id"]
    return plan.attempt_dir(sweep, aid)


def get_json(url: str, key: str | None = None) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with opener.open(urllib.request.Request(url, headers=headers), timeout=10) as resp:
        return json.loads(resp.read())


def assert_key_only_in_its_file(sweep: Path, launcher_output: str) -> None:
    """The sweep's server key is in its 0600 file and nowhere else: not in configs, manifest, events, logs,
    reports or the launcher's output; the attempt's config names the file, not the key."""
    name = "llama-3.1-70b-vllm"
    path = serve.key_path(sweep, name)
    key = serve.read_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    leaks = [f for f in sweep.rglob("*") if f.is_file() and f != path and key.encode() in f.read_bytes()]
    assert leaks == [] and key not in launcher_output
    assert read(the_attempt(sweep) / "config.json")["model_config"]["api_key_file"] == str(path)


AWQ = "hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4"


def test_vllm_command_line_and_server_job_resources(monkeypatch):
    (cfg,) = plan.compose_all([["model=llama-3.1-70b-vllm", "cluster=slurm"]])
    model = OmegaConf.to_container(cfg.model, resolve=True)
    assert serve.server_command(model, 8123, "10.1.2.3") == [
        "vllm", "serve", AWQ, "--host", "10.1.2.3", "--port", "8123",
        "--tensor-parallel-size", "2", "--max-model-len", "32768", "--gpu-memory-utilization", "0.90"]
    # Under Apptainer the model cache on shared storage is bound, so HF_HUB_OFFLINE=1 finds the weights.
    monkeypatch.setenv("HF_HOME", "/home/u/.cache/hf")
    model["serve_conf"].update(image="/shared/vllm.sif", args=["--dtype", "bfloat16"], gpus=8, gpu_type="h100",
                               env={"HF_HOME": "/shared/hf", "HF_HUB_OFFLINE": "1"})
    assert serve.server_command(model, 8000) == [
        "apptainer", "exec", "--nv", "--bind", "/shared/hf:/shared/hf", "/shared/vllm.sif", "vllm", "serve", AWQ,
        "--host", "0.0.0.0", "--port", "8000", "--tensor-parallel-size", "8", "--dtype", "bfloat16"]
    model["serve_conf"]["env"] = {}
    assert "/home/u/.cache/hf:/home/u/.cache/hf" in serve.server_command(model, 8000)  # the job's own $HF_HOME
    params = slurm.server_parameters(model, cfg.cluster)
    assert {k: params[k] for k in ("cpus_per_task", "mem_gb", "slurm_gres")} == {
        "cpus_per_task": 8, "mem_gb": 96, "slurm_gres": "gpu:h100:8"}
    assert params["slurm_additional_parameters"]["no_requeue"] is True
    cfg.cluster.gpu_syntax = "gpus-per-node"
    assert slurm.server_parameters(model, cfg.cluster)["slurm_gpus_per_node"] == "h100:8"
    # Attempts may wait for the server before their budget starts: Slurm's --time covers that wait.
    (attempt,) = plan.plan_attempts(plan.compose_all([["model=llama-3.1-70b-vllm",
                                                       "benchmark.competitions=[mini-churn]"]]))
    assert attempt.slurm_minutes == 10 + 15 + 30


def test_server_time_covers_the_waves_and_relays_past_max_time():
    (cfg,) = plan.compose_all([["model=llama-3.1-70b-vllm", "cluster=slurm", "cluster.array_throttle=64",
                                "benchmark.competitions=[mini-churn]"]])
    model = OmegaConf.to_container(cfg.model, resolve=True)
    (one,) = plan.plan_attempts([cfg])
    attempts = [dataclasses.replace(one, id=f"a{i}") for i in range(130)]  # 130 / 64 at once: 3 waves
    attempts.append(dataclasses.replace(one, id="other", model="gpt4o"))  # not this server's
    sized = slurm.server_time(model, attempts, cfg.cluster)
    assert (sized.waves, sized.minutes) == (3, 3 * 55 + slurm.SERVER_MARGIN_MIN) and sized.note("m") is None
    limits = slurm.parse_partitions("PartitionName=gpu Default=YES MaxTime=02:00:00 DefaultTime=01:00:00\n")
    # Past MaxTime: a relay of 120-min jobs overlapping by the server's start (wait=30m > 10 % of 120)
    relay = slurm.server_time(model, attempts, cfg.cluster, limits)
    assert (relay.minutes, relay.wanted, relay.relay, relay.offset_min) == (120, 195, 2, 90) and relay.note("m") is None
    assert relay.describe() == ("served by a relay of 2 jobs of at most MaxTime (120 min) for the 195 min it needs, "
                                "each starting 90 min after the previous one started")
    assert slurm.server_parameters(model, cfg.cluster, attempts, limits)["timeout_min"] == 120
    model["serve_conf"]["time"] = "48h"  # an explicit time is kept, in a relay past MaxTime
    assert slurm.server_time(model, attempts, cfg.cluster).minutes == 2880
    long = slurm.server_time(model, attempts, cfg.cluster, limits)
    assert (long.minutes, long.relay, long.offset_min) == (120, 32, 90)  # 120 + 31 x 90 >= 2880
    one_minute = slurm.parse_partitions("PartitionName=gpu Default=YES MaxTime=1 DefaultTime=1\n")
    capped = slurm.server_time(model, attempts, cfg.cluster, one_minute)  # no room for an overlap: capped
    assert (capped.minutes, capped.relay) == (1, 1) and "too short for a relay of server jobs: capped" in capped.note("m")


def test_dry_run_shows_the_server_job(capsys, tmp_path):
    code = launch.launch(["model=llama-3.1-70b-vllm", "cluster=slurm", "--dry-run", f"output_root={tmp_path}"])
    out = capsys.readouterr().out
    assert code == (0 if "verdict: ready" in out else launch.PREFLIGHT_FAILED)
    assert "model server llama-3.1-70b-vllm: a Slurm job" in out
    server = out.split("serve-llama-3.1-70b-vllm (one job")[1].split("agents0-0")[0]
    agents = out.split("agents0-0 (")[1].split("teardown-llama-3.1-70b-vllm (")[0]
    for line in (f"--time={55 + slurm.SERVER_MARGIN_MIN}", "--cpus-per-task=8", "--mem=96GB", "--gres=gpu:2",
                 "--no-requeue"):
        assert f"#SBATCH {line}\n" in server
    assert "--requeue" not in server.replace("--no-requeue", "")
    assert "#SBATCH --dependency='after:<serve-llama-3.1-70b-vllm job>'\n" in agents  # starts after the server
    assert f"command: vllm serve {AWQ} --host 0.0.0.0 --port 8000 --tensor-parallel-size 2" in out
    assert "teardown job (afterany on the agent arrays)" in out
    with pytest.raises(plan.PlanError, match="model.model, model.base_url must be set"):
        launch.launch(["model=openai-compatible", "--dry-run", f"output_root={tmp_path}"])


def test_api_key_file_is_private_and_kept(tmp_path):
    path = serve.ensure_key(tmp_path, "llama")
    key = serve.read_key(path)
    assert len(key) >= 40 and path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert serve.ensure_key(tmp_path, "llama") == path and serve.read_key(path) == key  # one key per sweep
    path.write_text("")
    with pytest.raises(serve.ServeError, match=r"api_key is empty; delete it and relaunch"):
        serve.read_key(path)


STAND_IN = """import json, os, socket, sys
host, port = sys.argv[sys.argv.index('--host') + 1], int(sys.argv[sys.argv.index('--port') + 1])
s = socket.socket(); s.bind((host, port))  # as vLLM: the port is bound before the weights load
open(sys.argv[1], 'w').write(json.dumps({'key': os.environ.get('VLLM_API_KEY'), 'argv': sys.argv}))
"""


def test_server_gets_the_key_by_env_and_moves_off_a_taken_port(tmp_path, monkeypatch):
    """The port checked free is taken before vLLM binds it: it exits with EADDRINUSE and is started again
    on another port; the key reaches it in $VLLM_API_KEY, never in argv or the log."""
    taken = socket.socket()
    taken.bind(("0.0.0.0", 0))
    taken.listen()
    busy = taken.getsockname()[1]
    real = serve.free_port
    monkeypatch.setattr(serve, "free_port", lambda preferred, host: busy if preferred == 8000 else real(0, host))
    report = tmp_path / "report.json"
    model = {"name": "llama", "model": "m", "serve": "vllm",
             "serve_conf": {"gpus": 1, "port": 8000, "command": [sys.executable, "-c", STAND_IN, str(report)]}}
    try:
        assert serve.run_server(tmp_path, model, job_id="9") == 0
    finally:
        taken.close()
    address = read(serve.serve_dir(tmp_path, "llama") / serve.ADDRESS)
    assert address["port"] != busy and address["port_tries"] == 2 and address["host"] in address["base_url"]
    key = serve.read_key(serve.key_path(tmp_path, "llama"))
    assert read(report)["key"] == key and key not in json.dumps(read(report)["argv"])
    log = (serve.serve_dir(tmp_path, "llama") / serve.LOG).read_text()
    assert f"port {busy} was taken (EADDRINUSE)" in log and key not in log
    assert address["bind"] == serve.bind_host() and not address["bind"].startswith("127.")


def test_proxy_uses_the_key_file_and_follows_a_moved_server(tmp_path):
    """A restarted server at a new host:port: the proxy's call to the old address fails to connect, it
    re-reads address.json and the call goes through, with the sweep's key from the 0600 file."""
    key_file = serve.ensure_key(tmp_path, "llama")
    key = serve.read_key(key_file)
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    old = f"http://127.0.0.1:{dead.getsockname()[1]}/v1"
    dead.close()
    address = serve.serve_dir(tmp_path, "llama") / serve.ADDRESS
    with testserver.start({"default": {"content": "moved and found"}}, api_key=key) as server:
        address.write_text(json.dumps({"base_url": f"{server.base_url.rstrip('/')}"}))
        model = {"name": "llama", "provider": "vllm", "model": "m", "base_url": old, "api_key_env": None,
                 "api_key_file": str(key_file), "address_file": str(address), "price": "local-vllm"}
        cfg = llm_proxy.config_from_model(model, tmp_path / "calls.jsonl", backoff_s=0.05)
        with llm_proxy.MeteringProxy(cfg, tmp_path / "llm.sock", tcp=True) as proxy:
            request = urllib.request.Request(
                f"http://127.0.0.1:{proxy.port}/v1/chat/completions", method="POST",
                data=json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode(),
                headers={"Authorization": f"Bearer {proxy.token}", "Content-Type": "application/json"})
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(request, timeout=30) as resp:
                answer = json.loads(resp.read())
            assert proxy.redact(f"key {key}") == "key [redacted]"
    assert answer["choices"][0]["message"]["content"] == "moved and found"
    assert proxy.base_url == json.loads(address.read_text())["base_url"]
    assert key not in (tmp_path / "calls.jsonl").read_text()


def test_waiting_attempt_fails_clearly_when_no_server_comes(tmp_path):
    with pytest.raises(serve.ServeError, match=r"model server did not come up in 1 s: no .*address.json yet"):
        serve.wait_for_server(tmp_path, "llama", timeout_s=1, poll_s=0.2)
    folder = serve.serve_dir(tmp_path, "llama")
    folder.mkdir(parents=True)
    (folder / serve.ADDRESS).write_text(json.dumps({"host": "127.0.0.1", "port": 1, "job_id": "7",
                                                    "ended_at": "2025-01-01T00:00:00+00:00", "exit_code": 1}))
    with pytest.raises(serve.ServeError, match=r"model server llama \(job 7\) ended .*\(exit code 1\)"):
        serve.wait_for_server(tmp_path, "llama", timeout_s=30)  # at once: no point waiting on an ended server


def test_missing_vllm_fails_waiting_attempts_at_once(tmp_path):
    model = {"name": "llama", "model": "m", "serve": "vllm",
             "serve_conf": {"gpus": 1, "port": 8000, "command": ["/nonexistent/vllm-binary"]}}
    with pytest.raises(serve.ServeError, match="cannot start the model server"):
        serve.run_server(tmp_path, model, job_id="42")
    with pytest.raises(serve.ServeError, match=r"job 42\) ended .*cannot start /nonexistent/vllm-binary"):
        serve.wait_for_server(tmp_path, "llama", timeout_s=30)


def test_teardown_keeps_a_server_that_a_later_launch_still_uses(tmp_path, monkeypatch):
    cancelled: list[list[str]] = []
    queue = {"300_0": "RUNNING"}  # array 300 (a later launch) still runs; array 200 ended
    monkeypatch.setattr(slurm_queue, "queue_states", lambda ids: {k: v for k, v in queue.items()
                                                                  if k.split("_")[0] in set(ids)})
    monkeypatch.setattr(slurm_queue, "cancel", lambda ids: cancelled.append(list(ids)) or queue.clear())
    serve.record_job(tmp_path, "llama", "100", ["200"])
    serve.record_job(tmp_path, "llama", "100", ["300"])
    assert serve.teardown_task(tmp_path, "llama", ["200"])["action"].startswith("kept: agent arrays 300")
    assert cancelled == []
    assert serve.teardown_task(tmp_path, "llama", ["300"])["action"] == "cancelled" and cancelled == [["100"]]
    assert len(read(serve.serve_dir(tmp_path, "llama") / serve.TEARDOWN)["teardowns"]) == 2


@pytest.mark.slow
def test_local_launch_serves_the_model_while_attempts_run(mini_data, tmp_path):
    out = subprocess.run([sys.executable, "-m", "hpc_mle.launch", *SERVED, "sandbox=none",
                          f"output_root={tmp_path}", f"data_dir={mini_data}"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    (sweep,) = [p for p in tmp_path.iterdir() if (p / plan.MANIFEST).is_file()]
    folder = serve.serve_dir(sweep, "llama-3.1-70b-vllm")
    address = read(folder / serve.ADDRESS)
    config = read(the_attempt(sweep) / "config.json")
    assert runner.read_status(the_attempt(sweep))["state"] == "done"
    assert config["model_config"]["base_url"] == f"http://{address['host']}:{address['port']}/v1"
    assert config["model_config"]["api_key_env"] is None
    assert_key_only_in_its_file(sweep, out.stdout + out.stderr)
    assert address["stopped_by"] == "SIGTERM" and address["ended_at"]  # ended with the launch
    assert read(folder / serve.TEARDOWN)["teardowns"][0]["action"] == "terminated"
    assert '"--tensor-parallel-size", "1", "--fake-delay", "2"' in (folder / serve.LOG).read_text()


@pytest.mark.slow
def test_slurm_server_job_attempt_and_teardown(slurm_env, mini_data, tmp_path):  # noqa: F811
    args = [*SERVED, "cluster=dev", "hardware.cpus=1", "hardware.mem_gb=1", "cluster.grading_tasks=1",
            "model.serve_conf.cpus=1", "model.serve_conf.mem_gb=1", "model.serve_conf.time=10m",
            "model.serve_conf.wait=180s", "scaffold.command=[python3,/home/agent/dummy.py,--sleep,6]",
            f"output_root={tmp_path}", f"data_dir={mini_data}"]
    out = subprocess.run([sys.executable, "-m", "hpc_mle.launch", *args], capture_output=True, text=True,
                         env=slurm_env, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    server = re.search(r"model server\s+llama-3.1-70b-vllm: (\d+)", out.stdout).group(1)
    teardown = re.search(r"teardown job\s+llama-3.1-70b-vllm: (\d+)", out.stdout).group(1)
    (sweep,) = [p for p in tmp_path.iterdir() if (p / plan.MANIFEST).is_file()]
    folder = serve.serve_dir(sweep, "llama-3.1-70b-vllm")

    def squeue(job: str) -> str:
        return subprocess.run(["squeue", "-h", "-j", job, "-o", "%T %r"], capture_output=True, text=True,
                              env=slurm_env).stdout.strip()

    try:
        assert "Dependency" in squeue(teardown)  # waits for the agent array
        wait_for("the server's address.json", lambda: read(folder / serve.ADDRESS).get("port"))
        address = read(folder / serve.ADDRESS)
        assert address["job_id"] == server and squeue(server).startswith("RUNNING")
        wait_for("the server's /health", lambda: serve.health_problem(address) is None, 60)
        with pytest.raises(urllib.error.HTTPError, match="401"):  # the server wants the sweep's key
            get_json(f"{address['base_url']}/models")
        models = get_json(f"{address['base_url']}/models", serve.read_key(serve.key_path(sweep, address["model"])))
        assert models["data"][0]["id"] == AWQ
        scripts = {f.name: f.read_text() for f in (sweep / "slurm").rglob("*_submission.sh")}
        assert "#SBATCH --no-requeue\n" in scripts[f"{server}_submission.sh"]
        assert any(f"#SBATCH --dependency=after:{server}\n" in text for text in scripts.values())

        wait_for("the attempt", lambda: (runner.read_status(the_attempt(sweep)) or {}).get("state") == "done")
        config = read(the_attempt(sweep) / "config.json")
        assert config["model_config"]["base_url"] == address["base_url"]
        events = (the_attempt(sweep) / "events.jsonl").read_text()
        assert '"event": "model-server-ready"' in events

        wait_for("the teardown", lambda: read(folder / serve.TEARDOWN).get("teardowns"))
        (record,) = read(folder / serve.TEARDOWN)["teardowns"]
        assert record["action"] == "cancelled" and record["server_job"] == server
        assert record["in_queue_after"] == "gone" and squeue(server) == ""
        wait_for("the server to mark its address ended", lambda: read(folder / serve.ADDRESS).get("ended_at"), 60)
        sacct = subprocess.run(["sacct", "-n", "-X", "-j", server, "-o", "State"], capture_output=True, text=True,
                               env=slurm_env)
        if sacct.returncode == 0 and sacct.stdout.strip():  # accounting may be off on some dev clusters
            assert sacct.stdout.split()[0].startswith("CANCELLED"), sacct.stdout
        launches = read(sweep / plan.SWEEP_FILE)["launches"]
        assert launches[0]["servers"] == {"llama-3.1-70b-vllm": server}
        assert_key_only_in_its_file(sweep, out.stdout + out.stderr)
    finally:  # a failure must not leave this test's jobs on the shared cluster
        launched = read(sweep / plan.SWEEP_FILE).get("launches", [])
        mine = [j for e in launched for j in [*(i for ids in e["arrays"].values() for i in ids), e["grading"],
                                              e["analysis"], *e["servers"].values(), *e["teardowns"].values()] if j]
        subprocess.run(["scancel", *mine], env=slurm_env, capture_output=True)


def test_teardown_when_squeue_fails_cancels_and_says_why(tmp_path, monkeypatch):
    """squeue failing (controller down) is not 'no later array uses it': the teardown still cancels the server,
    records the queue error, and never crashes with the server left running for its whole --time."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text("#!/bin/sh\necho 'slurm_load_jobs error: Unable to contact slurm controller' >&2\n"
                                    "exit 1\n")
    (bin_dir / "scancel").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'scancelled'}\n")
    for tool in ("squeue", "scancel"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    serve.record_job(tmp_path, "llama", "100", ["200"])
    serve.record_job(tmp_path, "llama", "100", ["300"])
    entry = serve.teardown_task(tmp_path, "llama", ["200"])
    assert entry["action"] == "cancelled" and "Unable to contact" in entry["queue_error"]
    assert entry["in_queue_after"] == "unknown"
    assert (tmp_path / "scancelled").read_text().split() == ["100"]
