"""Serving a model with vLLM for a sweep: the command line, a local server, and the Slurm server job.

There is no GPU and no vLLM here, so tests/agents/fake_vllm.py stands in for `vllm serve` through
`model.serve_conf.command` (a field meant for tests) and `model.serve_conf.gpus=0`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from slurm_cluster import slurm_env, wait_for  # noqa: F401  (session fixture)

from hpc_mle import launch, plan, runner, slurm
from hpc_mle.llm import serve

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


def get_json(url: str) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as resp:
        return json.loads(resp.read())


def test_vllm_command_line_and_server_job_resources():
    (cfg,) = plan.compose_all([["model=llama-3.1-70b-vllm", "cluster=slurm"]])
    model = OmegaConf.to_container(cfg.model, resolve=True)
    assert serve.server_command(model, 8123) == [
        "vllm", "serve", "meta-llama/Llama-3.1-70B-Instruct", "--host", "0.0.0.0", "--port", "8123",
        "--tensor-parallel-size", "4", "--max-model-len", "32768", "--gpu-memory-utilization", "0.90"]
    model["serve_conf"].update(image="/shared/vllm.sif", args=["--dtype", "bfloat16"], gpus=8, gpu_type="h100")
    assert serve.server_command(model, 8000) == [
        "apptainer", "exec", "--nv", "/shared/vllm.sif", "vllm", "serve", "meta-llama/Llama-3.1-70B-Instruct",
        "--host", "0.0.0.0", "--port", "8000", "--tensor-parallel-size", "8", "--dtype", "bfloat16"]
    assert slurm.server_parameters(model, cfg.cluster) == {
        "timeout_min": 48 * 60, "cpus_per_task": 16, "mem_gb": 256, "slurm_gres": "gpu:h100:8"}
    cfg.cluster.gpu_syntax = "gpus-per-node"
    assert slurm.server_parameters(model, cfg.cluster)["gpus_per_node"] == 8
    # Attempts may wait for the server before their budget starts: Slurm's --time covers that wait.
    (attempt,) = plan.plan_attempts(plan.compose_all([["model=llama-3.1-70b-vllm",
                                                       "benchmark.competitions=[mini-churn]"]]))
    assert attempt.slurm_minutes == 10 + 15 + 30


def test_dry_run_shows_the_server_job(capsys, tmp_path):
    code = launch.launch(["model=llama-3.1-70b-vllm", "cluster=slurm", "--dry-run", f"output_root={tmp_path}"])
    out = capsys.readouterr().out
    assert code == (0 if "verdict: ready" in out else launch.PREFLIGHT_FAILED)
    assert "model server llama-3.1-70b-vllm: a Slurm job" in out
    server = out.split("serve-llama-3.1-70b-vllm (one job")[1].split("agents0-0")[0]
    for line in ("--time=2880", "--cpus-per-task=16", "--mem=256GB", "--gres=gpu:4"):
        assert f"#SBATCH {line}\n" in server
    assert "command: vllm serve meta-llama/Llama-3.1-70B-Instruct --host 0.0.0.0 --port 8000 " \
           "--tensor-parallel-size 4" in out
    assert "teardown job (afterany on the agent arrays)" in out
    with pytest.raises(plan.PlanError, match="model.model, model.base_url must be set"):
        launch.launch(["model=openai-compatible", "--dry-run", f"output_root={tmp_path}"])


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
    monkeypatch.setattr(slurm, "queue_states", lambda ids: {k: v for k, v in queue.items()
                                                            if k.split("_")[0] in set(ids)})
    monkeypatch.setattr(slurm, "cancel", lambda ids: cancelled.append(list(ids)) or queue.clear())
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
        models = get_json(f"{address['base_url']}/models")
        assert models["data"][0]["id"] == "meta-llama/Llama-3.1-70B-Instruct"

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
