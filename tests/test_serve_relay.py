"""A served model's relay of server jobs past the partition's MaxTime (hpc_mle.slurm.server_time, run_server).

The planned jobs and their sbatch lines; then the hand-over itself with real fake_vllm servers and a real metering
proxy: first as two local processes (seconds), then as two Slurm jobs on the dev cluster's short partition
(MaxTime=2 min, job 2 `after:<job 1>+1`), where a client keeps calling through the proxy across the hand-over.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf
from slurm_cluster import slurm_env, wait_for  # noqa: F401  (session fixture)

from hpc_mle import plan, preflight, slurm
from hpc_mle.llm import proxy as llm_proxy
from hpc_mle.llm import serve

FAKE = Path(__file__).parent / "agents" / "fake_vllm.py"
NAME = "llama-3.1-70b-vllm"
SHORT = "PartitionName=short MaxTime=2 DefaultTime=NONE Default=NO\n"


def served_model(*overrides: str, cluster: str = "dev") -> tuple[dict[str, Any], Any]:
    """The 70B vLLM config with fake_vllm in place of `vllm serve`, CPU-only, and its cluster config."""
    (cfg,) = plan.compose_all([[f"model={NAME}", f"cluster={cluster}", "cluster.partition=short",
                                f'model.serve_conf.command=["{sys.executable}","{FAKE}"]', "model.serve_conf.gpus=0",
                                "model.serve_conf.cpus=1", "model.serve_conf.mem_gb=1", *overrides]])
    return OmegaConf.to_container(cfg.model, resolve=True), cfg.cluster


def read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def test_relay_jobs_chain_after_plus_offset_with_the_same_resources(tmp_path):
    """5 min needed on a MaxTime=2 partition, server start <= 1 min: 4 jobs of 2 min, each `after:<previous>+1`."""
    assert slurm.relay_shape(195, 120, 30) == (2, 90)  # overlap: the start (30) over 10 % of MaxTime (12)
    assert slurm.relay_shape(5000, 2880, 10) == (2, 2592)  # 10 % of 48 h over a 10-min start
    assert slurm.relay_shape(100, 120, 30) == (1, 0) and slurm.relay_shape(5, 1, 1) == (1, 0)
    assert slurm.relay_shape(3, 2, 5) == (2, 1)  # an overlap never takes more than half of MaxTime
    assert slurm.relay_shape(600, 30, 30) == (39, 15)  # 30 + 38 x 15 >= 600, not 571 jobs 1 min apart
    model, cluster = served_model("model.serve_conf.time=5m", "model.serve_conf.wait=60s")
    limits = slurm.parse_partitions(SHORT)
    (attempt,) = plan.plan_attempts(plan.compose_all([[f"model={NAME}", "benchmark.competitions=[mini-churn]"]]))
    jobs = slurm.planned_jobs(tmp_path, [attempt], cluster, {NAME: model}, "abc123", limits=limits)
    servers = [j for j in jobs if j.group == f"serve-{NAME}"]
    assert [j.role for j in servers] == [f"serve-{NAME}", *(f"serve-{NAME}-relay{k}" for k in (2, 3, 4))]
    for k, job in enumerate(servers):
        lines = job.sbatch_lines()
        assert {"#SBATCH --no-requeue", "#SBATCH --time=2", "#SBATCH --partition=short", "#SBATCH --cpus-per-task=1",
                "#SBATCH --mem=1GB"} <= set(lines)
        after = [x for x in lines if x.startswith("#SBATCH --dependency")]
        assert after == ([f"#SBATCH --dependency='after:<{servers[k - 1].role} job>+1'"] if k else [])
        assert {x for x in lines if "--dependency" not in x and "--job-name" not in x and "--output" not in x
                and "--error" not in x} == {x for x in servers[0].sbatch_lines() if "--job-name" not in x
                                            and "--output" not in x and "--error" not in x}
    (agents,) = [j for j in jobs if j.role.startswith("agents")]
    assert f"#SBATCH --dependency='after:<serve-{NAME} job>'" in agents.sbatch_lines()  # after the first only
    text = "\n".join(preflight.jobs_section(jobs, "abc123").lines)
    assert ("served by a relay of 4 jobs of at most MaxTime (2 min) for the 5 min it needs, each starting 1 min "
            "after the previous one started") in text
    assert text.count("served by a relay") == 1


# ---------------------------------------------------------------- the hand-over, with real servers and a proxy


class Caller(threading.Thread):
    """An attempt's agent in miniature: keeps calling the model through the metering proxy and records, for each
    call, the HTTP status and which server answered (fake_vllm's system_fingerprint)."""

    def __init__(self, proxy: llm_proxy.MeteringProxy, every_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.proxy, self.every_s = proxy, every_s
        self.seen: list[tuple[int, str]] = []
        self.stop = threading.Event()

    def call(self) -> tuple[int, str]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.proxy.port}/v1/chat/completions", method="POST",
            data=json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode(),
            headers={"Authorization": f"Bearer {self.proxy.token}", "Content-Type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=60) as resp:
                return resp.status, json.loads(resp.read()).get("system_fingerprint", "")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")[:200]

    def run(self) -> None:
        while not self.stop.is_set():
            self.seen.append(self.call())
            time.sleep(self.every_s)

    def servers(self) -> list[str]:
        """The answering servers in order of first answer."""
        return list(dict.fromkeys(who for _, who in self.seen))


def start_proxy(sweep: Path, tmp_path: Path) -> llm_proxy.MeteringProxy:
    folder = serve.serve_dir(sweep, NAME)
    model = {"name": NAME, "provider": "vllm", "model": "m", "base_url": read(folder / serve.ADDRESS)["base_url"],
             "api_key_env": None, "api_key_file": str(serve.key_path(sweep, NAME)),
             "address_file": str(folder / serve.ADDRESS), "price": "local-vllm"}
    cfg = llm_proxy.config_from_model(model, tmp_path / "calls.jsonl", backoff_s=0.2)
    return llm_proxy.MeteringProxy(cfg, tmp_path / "llm.sock", tcp=True)


SERVER = ("import json, sys\nfrom hpc_mle.llm import serve\n"
          "sys.exit(serve.run_server(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4] == 'next'))")


def local_server(sweep: Path, model: dict[str, Any], job: str, successor: bool) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return subprocess.Popen([sys.executable, "-c", SERVER, str(sweep), json.dumps(model), job,
                             "next" if successor else "first"], env=env, stdin=subprocess.DEVNULL)


def test_local_hand_over_keeps_every_call(tmp_path):
    """Job 2 of a relay comes up while job 1 serves, takes address.json over once healthy (not before), job 1
    then ends at its limit (TERM) without marking the address ended, and the proxy's calls move to job 2:
    answers from both, none lost."""
    model, _ = served_model("model.serve_conf.args=[--fake-delay,1.5]")
    sweep = tmp_path / "sweep"
    serve.ensure_key(sweep, NAME)
    serve.record_job(sweep, NAME, "1", [], relay=["1", "2"])
    folder = serve.serve_dir(sweep, NAME)
    first = local_server(sweep, model, "1", successor=False)
    second = None
    try:
        wait_for("job 1's address", lambda: read(folder / serve.ADDRESS).get("port"), 30, 0.1)
        wait_for("job 1's /health", lambda: serve.health_problem(read(folder / serve.ADDRESS)) is None, 30, 0.1)
        pid1 = read(folder / serve.ADDRESS)["pid"]
        with start_proxy(sweep, tmp_path) as proxy:
            caller = Caller(proxy, every_s=0.1)
            caller.start()
            second = local_server(sweep, model, "2", successor=True)
            wait_for("job 2's start", lambda: "job 2 on" in (folder / serve.LOG).read_text(), 30, 0.1)
            time.sleep(0.5)  # job 2 is up but loading (--fake-delay 1.5): job 1 keeps the address
            assert read(folder / serve.ADDRESS)["job_id"] == "1"
            wait_for("job 2 to take over", lambda: read(folder / serve.ADDRESS).get("job_id") == "2", 30, 0.1)
            first.send_signal(signal.SIGTERM)  # job 1 reaches its time limit
            first.wait(30)
            wait_for("an answer from job 2", lambda: len(caller.servers()) == 2, 30, 0.1)
            time.sleep(0.5)
            caller.stop.set()
            caller.join(30)
        address = read(folder / serve.ADDRESS)
        assert address["job_id"] == "2" and "ended_at" not in address
        assert "job 1 ended; address.json left to the relay job that took over" in (folder / serve.LOG).read_text()
        assert [status for status, _ in caller.seen if status != 200] == []  # none lost beyond the proxy's retries
        order = [f"job - pid {pid1}", f"job - pid {address['pid']}"]
        assert caller.servers() == order  # every answer of job 1 came before every answer of job 2
        assert [who for _, who in caller.seen] == sorted((who for _, who in caller.seen), key=order.index)
        second.send_signal(signal.SIGTERM)  # the last job of the relay ends: the address is marked ended
        second.wait(30)
        ended = read(folder / serve.ADDRESS)
        assert ended["ended_at"] and "next_job" not in ended
        with pytest.raises(serve.ServeError, match=r"job 2\) ended"):
            serve.wait_for_server(sweep, NAME, timeout_s=5)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()


def test_waiting_attempt_waits_for_the_next_relay_job(tmp_path):
    """A job that ends before its successor published leaves `next_job`: attempts keep waiting, not fail."""
    folder = serve.serve_dir(tmp_path, NAME)
    folder.mkdir(parents=True)
    (folder / serve.ADDRESS).write_text(json.dumps({"host": "127.0.0.1", "port": 1, "job_id": "7", "next_job": "8",
                                                    "ended_at": "2025-01-01T00:00:00+00:00", "exit_code": 0}))
    with pytest.raises(serve.ServeError, match=r"did not come up in 1 s: server job 7 ended; the next job of its "
                                               r"relay, 8, has not published its address yet"):
        serve.wait_for_server(tmp_path, NAME, timeout_s=1, poll_s=0.2)


def test_record_job_keeps_the_relay_and_its_users(tmp_path):
    serve.record_job(tmp_path, NAME, "10", [], relay=["10"])
    serve.record_job(tmp_path, NAME, "10", [], relay=["10", "11", "12"])
    serve.record_job(tmp_path, NAME, "10", ["200"])
    serve.record_job(tmp_path, NAME, "11", ["300"])  # a later launch reuses the relay's live job 11
    job = read(serve.serve_dir(tmp_path, NAME) / serve.JOB)
    assert (job["job_id"], job["relay"], job["arrays"]) == ("10", ["10", "11", "12"], ["200", "300"])
    assert serve.next_in_relay(tmp_path, NAME, "11") == "12" and serve.next_in_relay(tmp_path, NAME, "12") is None
    serve.record_job(tmp_path, NAME, "20", [])  # a new server: a new record
    assert read(serve.serve_dir(tmp_path, NAME) / serve.JOB)["relay"] == ["20"]


@pytest.mark.slow
def test_slurm_relay_hand_over_on_the_short_partition(slurm_env, tmp_path, monkeypatch):  # noqa: F811
    """Two server jobs on the short partition (MaxTime=2): job 2 starts 1 min after job 1 (`after:<1>+1`), takes
    address.json over once healthy, and a client calling through the proxy gets answers from both jobs with no
    call lost. Job 1 is then cancelled as its time limit would end it (not waited for: ~1 min more), and the
    teardown cancels the relay."""
    for key, value in slurm_env.items():
        monkeypatch.setenv(key, value)
    model, cluster = served_model("model.serve_conf.time=3m", "model.serve_conf.wait=60s",
                                  "model.serve_conf.args=[--fake-delay,1]")
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    folder = serve.serve_dir(sweep, NAME)
    ids, calls = slurm._submit_server(sweep / "slurm", sweep, "relay1", model, cluster, [])
    try:
        assert calls == len(ids) == 2
        scripts = {f.name: f.read_text() for f in (sweep / "slurm").rglob("*_submission.sh")}
        assert f"#SBATCH --dependency=after:{ids[0]}+1\n" in scripts[f"{ids[1]}_submission.sh"]
        assert all("#SBATCH --no-requeue\n" in text and "#SBATCH --time=2\n" in text for text in scripts.values())
        assert read(folder / serve.JOB)["relay"] == ids
        wait_for("job 1's /health", lambda: read(folder / serve.ADDRESS).get("job_id") == ids[0]
                 and serve.health_problem(read(folder / serve.ADDRESS)) is None, 90, 0.5)
        started = time.monotonic()
        with start_proxy(sweep, tmp_path) as proxy:
            caller = Caller(proxy)
            caller.start()
            wait_for("job 2 to take over", lambda: read(folder / serve.ADDRESS).get("job_id") == ids[1], 150, 0.5)
            handed_over_s = time.monotonic() - started
            subprocess.run(["scancel", ids[0]], env=slurm_env, check=True)  # job 1's end at its limit
            wait_for("an answer from job 2", lambda: len(caller.servers()) == 2, 60, 0.2)
            caller.stop.set()
            caller.join(60)
        assert [f"job {j}" for j in ids] == [who.split(" pid")[0] for who in caller.servers()]
        assert [status for status, _ in caller.seen if status != 200] == []
        wait_for("job 1's end", lambda: "left to the relay job" in (folder / serve.LOG).read_text(), 60, 0.5)
        assert read(folder / serve.ADDRESS)["job_id"] == ids[1] and "ended_at" not in read(folder / serve.ADDRESS)
        entry = serve.teardown_task(sweep, NAME, [])
        assert (entry["action"], entry["relay_jobs"], entry["in_queue_after"]) == ("cancelled", ids, "gone")
        print(f"relay hand-over: job 2 took over {handed_over_s:.0f} s after job 1 was healthy; "
              f"{len(caller.seen)} calls, all answered")
    finally:
        subprocess.run(["scancel", *ids], env=slurm_env, capture_output=True)


def test_a_relaunch_reuses_the_live_jobs_of_the_relay(tmp_path, monkeypatch):
    """Jobs 11 and 12 of a relay are still queued or running: a relaunch submits no server and its agents start
    after job 11; with none left in the queue a new server is submitted (not done here: no sbatch)."""
    serve.record_job(tmp_path, NAME, "10", ["200"], relay=["10", "11", "12"])
    monkeypatch.setattr(slurm, "queue_states", lambda ids: {j: s for j, s in
                                                            {"11": "RUNNING", "12": "PENDING"}.items() if j in ids})
    model, cluster = served_model("model.serve_conf.time=5m")
    assert slurm._submit_server(tmp_path / "slurm", tmp_path, "again", model, cluster, []) == (["11", "12"], 0)
    serve.record_job(tmp_path, NAME, "11", ["300"])  # as submit() records the relaunch's arrays
    job = read(serve.serve_dir(tmp_path, NAME) / serve.JOB)
    assert (job["relay"], job["arrays"]) == (["10", "11", "12"], ["200", "300"])
    monkeypatch.setattr(slurm, "queue_states", lambda ids: {})
    assert slurm._live_relay(tmp_path, NAME) == []
